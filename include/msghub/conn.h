/*
 * conn: the per-connection user data of the hub's lws protocol, which
 * server.c sizes and hands to the HTTP (http_api) or WebSocket (ws,
 * session) side of the connection.
 *
 * Layer 3 (src/net).
 */
#ifndef MSGHUB_CONN_H
#define MSGHUB_CONN_H

#include <stdint.h>

#include "msghub/timerwheel.h"

struct lws;
struct mh_http;
struct mh_session;

/*
 * Per-connection user data of the lws protocol: HTTP state or a session,
 * and the connection's one deadline on srv->timers (liveness.h). lws owns
 * and zero-fills it; the timer is cancelled before lws frees it.
 */
typedef struct mh_conn {
    struct mh_http *http;
    struct mh_session *ws;
    struct lws *wsi;
    mh_timer_t timer;      /* ping / pong / idle deadline of a WebSocket */
    uint64_t valid_ms;     /* last pong (or the upgrade), monotonic ms */
    uint64_t ping_sent_ms; /* ping awaiting its pong, 0 = none */
    uint8_t live_state;    /* liveness.c: none or open */
    uint8_t ping_due;      /* the next WRITEABLE writes a ping */
} mh_conn_t;

#endif
