/*
 * ws: the WebSocket side of a connection on libwebsockets. A session is one
 * connected client: its id, its outbound queue, its rate limiter and the
 * reassembly buffer for fragmented messages. lws owns the session memory
 * (per-session data); the registry borrows it until LWS_CALLBACK_CLOSED.
 */
#ifndef MSGHUB_WS_H
#define MSGHUB_WS_H

#include <stddef.h>

#include "msghub/server.h"

struct lws;
typedef struct mh_session mh_session_t;

/* Handles the WebSocket callback reasons of the hub's lws protocol. */
int mh_ws_callback(mh_server_t *srv, struct lws *wsi, int reason, mh_conn_t *conn, void *in,
                   size_t len);

/*
 * Decides whether an upgrade to /ws may proceed. Returns 0 to accept, or
 * the HTTP status to refuse with, with the error code and message filled.
 */
int mh_ws_check_upgrade(mh_server_t *srv, struct lws *wsi, mh_err_code_t *code, const char **msg);

/* Queues a frame for the session, or stores it in its inbox when it is backlogged or closing. */
void mh_session_deliver(mh_server_t *srv, mh_session_t *s, mh_frame_t *f);

/* Starts closing every session with code (shutdown: 1001). */
void mh_ws_close_all(mh_server_t *srv, int code, const char *reason);

#endif
