/*
 * conn: the per-connection user data of the hub's lws protocol, which
 * server.c sizes and hands to the HTTP (http_api) or WebSocket (ws,
 * session) side of the connection.
 *
 * Layer 3 (src/net).
 */
#ifndef MSGHUB_CONN_H
#define MSGHUB_CONN_H

struct mh_http;
struct mh_session;

/* Per-connection user data of the lws protocol: HTTP state or a session. */
typedef struct mh_conn {
    struct mh_http *http;
    struct mh_session *ws;
} mh_conn_t;

#endif
