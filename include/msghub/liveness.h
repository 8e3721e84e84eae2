/*
 * liveness: every per-connection deadline of the hub on one timing wheel
 * (srv->timers, timerwheel.h) instead of libwebsockets' per-connection
 * timers, whose sorted list makes each insertion O(connections) in lws 4.1:
 *
 *  - handshake: from accept until the request headers are in (an HTTP
 *    request or a WebSocket upgrade), MH_LIVE_HANDSHAKE_S; lws' own
 *    header timeout is cancelled at the end of the loop turn that
 *    accepted the socket (lws arms it after the last callback of the
 *    accept; srv->fresh lists the sockets accepted in this turn). lws
 *    allocates conn only with the request, so the deadline is a small
 *    record of ours on the wsi (lws_set_opaque_user_data);
 *  - ping: --ping-interval after the last pong (or the upgrade) a
 *    WebSocket ping is written; no pong within --pong-timeout drops the
 *    connection (no close frame: the peer is not answering);
 *  - idle: no application frame for --idle-timeout closes with 4000
 *    (MH_CLOSE_IDLE).
 *
 * One mh_timer_t per connection (in mh_conn_t), armed for the earliest of
 * its deadlines; pongs and application frames only record times, and the
 * timer re-arms itself lazily when it fires early. The same timer holds
 * the close deadline of a closing session (mh_live_closing, session.c).
 * Not here: HTTP request timeouts after the headers (lws, http_api.c).
 *
 * The callbacks are called from server.c's lws callback; none frees conn.
 * liveness does not know the session on a connection: what it needs of it
 * (is it closing, when is it idle, close it for idleness) it asks through
 * srv->live_ops, which session_live.c implements and server.c plugs in,
 * so the idle policy stays with the session and the includes go one way
 * (session -> liveness).
 */
#ifndef MSGHUB_LIVENESS_H
#define MSGHUB_LIVENESS_H

#include "msghub/conn.h"
#include "msghub/hub.h"

struct lws;

#define MH_LIVE_HANDSHAKE_S 10 /* as lws' default header timeout (timeout_secs_ah_idle) */
#define MH_LIVE_TICK_MS 100    /* timer wheel resolution */
#define MH_LIVE_SLOTS 1024     /* one revolution: 102.4 s */
#define MH_LIVE_KILLS_PER_TICK                                                                     \
    200 /* connections dropped per sweep at most, the rest a tick later */

/* The session side of an open connection (conn->ws is not NULL in every call). */
typedef struct mh_live_ops {
    /* The session's id, for the log. */
    uint64_t (*id)(const mh_conn_t *conn);
    /* 1 while the session is closing: its close deadline replaces the others. */
    int (*closing)(const mh_conn_t *conn);
    /* Monotonic ms at which the session is idle, 0 = never (--idle-timeout 0). */
    uint64_t (*idle_at_ms)(const mh_server_t *srv, const mh_conn_t *conn);
    /* The idle deadline passed: close the session (MH_CLOSE_IDLE). */
    void (*idle)(mh_server_t *srv, mh_conn_t *conn);
} mh_live_ops_t;

/* LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED: a socket was accepted (conn is not there yet). */
void mh_live_accepted(mh_server_t *srv, struct lws *wsi);
/* The server's wheel timer, every MH_LIVE_TICK_MS: fires what is due. */
void mh_live_tick(mh_server_t *srv, uint64_t now_ms);
/* After every loop turn (a uv_check handle): ends the accept step of mh_live_accepted. */
void mh_live_loop_turn(mh_server_t *srv);
/* The request headers are complete (LWS_CALLBACK_HTTP or ..._CONFIRM_UPGRADE). */
void mh_live_headers_done(mh_server_t *srv, struct lws *wsi);
/* LWS_CALLBACK_ESTABLISHED, after the session was opened: pings and idle start. */
void mh_live_established(mh_server_t *srv, struct lws *wsi, mh_conn_t *conn);
/*
 * The session on wsi started closing (its close frame is queued): drop the
 * connection if it is still there after secs. Replaces liveness' deadlines.
 */
void mh_live_closing(mh_server_t *srv, struct lws *wsi, uint32_t secs);
/* LWS_CALLBACK_RECEIVE_PONG. */
void mh_live_pong(mh_conn_t *conn);
/*
 * SERVER_WRITEABLE: writes a due ping (and asks for another WRITEABLE).
 * Returns 1 when it wrote (the callback must not write again), 0 when
 * nothing was due, -1 when the write failed.
 */
int mh_live_writeable(mh_server_t *srv, struct lws *wsi, mh_conn_t *conn);
/* The connection or its protocol binding is going: disarms the timer. */
void mh_live_gone(mh_server_t *srv, mh_conn_t *conn);
/* LWS_CALLBACK_WSI_DESTROY (conn may be NULL): forgets wsi, disarms. */
void mh_live_destroyed(mh_server_t *srv, struct lws *wsi, mh_conn_t *conn);

#endif
