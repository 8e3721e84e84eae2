/*
 * liveness: handshake, ping / pong, idle and close deadlines of every
 * connection on the server's timing wheel (see liveness.h for what and why).
 *
 * Closing from the wheel's sweep: the sweep runs from a uv timer, outside
 * any lws callback, so a connection that must go is closed synchronously
 * (LWS_TO_KILL_SYNC, as lws' own validity timer does); lws then calls
 * CLOSED / CLOSED_HTTP, which frees the session and conn's memory may be
 * freed too, so nothing touches conn after the kill.
 */
#include "msghub/liveness.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "msghub/log.h"
#include "msghub/lws_compat.h"
#include "msghub/util.h"

#define PING_PAYLOAD "mh"

enum { LIVE_NONE, LIVE_OPEN, LIVE_CLOSING };

static uint64_t mono_ms(void)
{
    return mh_mono_us() / 1000u;
}

static void kill_now(struct lws *wsi)
{
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}

/*
 * Closing a connection costs lws tens of microseconds (more while it holds
 * many header tables), and deadlines armed together expire together: 10,000
 * sockets opened at once would stall the loop for a second in one sweep.
 * Past MH_LIVE_KILLS_PER_TICK in one sweep, t is put on the next tick
 * instead; returns 1 then.
 */
static int defer_kill(mh_server_t *srv, mh_timer_t *t)
{
    if (srv->live_kills < MH_LIVE_KILLS_PER_TICK) {
        srv->live_kills++;
        return 0;
    }
    mh_timerwheel_add(srv->timers, t, mono_ms()); /* a past deadline: the next tick */
    return 1;
}

/* The earliest deadline of an open connection: the next ping, the pong's, or idle. */
static uint64_t next_deadline(const mh_server_t *srv, const mh_conn_t *conn)
{
    const mh_config_t *cfg = srv->cfg;
    uint64_t at = conn->ping_sent_ms ? conn->ping_sent_ms + (uint64_t)cfg->pong_timeout_s * 1000u
                                     : conn->valid_ms + (uint64_t)cfg->ping_interval_s * 1000u;
    if (conn->ws) {
        uint64_t idle = srv->live_ops->idle_at_ms(srv, conn);
        if (idle && idle < at)
            at = idle;
    }
    return at;
}

/* Returns 1 when the session was closed for idleness. */
static int check_idle(mh_server_t *srv, mh_conn_t *conn, uint64_t now)
{
    uint64_t at = srv->live_ops->idle_at_ms(srv, conn);
    if (!at || now < at)
        return 0;
    srv->live_ops->idle(srv, conn);
    return 1;
}

static void on_open_deadline(mh_server_t *srv, mh_conn_t *conn, uint64_t now)
{
    if (!conn->ws || srv->live_ops->closing(conn) || check_idle(srv, conn, now))
        return; /* closing: mh_live_closing armed the close deadline */
    if (conn->ping_sent_ms &&
        now >= conn->ping_sent_ms + (uint64_t)srv->cfg->pong_timeout_s * 1000u) {
        if (defer_kill(srv, &conn->timer))
            return;
        mh_info("pong_timeout", "id=%llu", (unsigned long long)srv->live_ops->id(conn));
        kill_now(conn->wsi);
        return;
    }
    if (!conn->ping_sent_ms &&
        now >= conn->valid_ms + (uint64_t)srv->cfg->ping_interval_s * 1000u) {
        conn->ping_sent_ms = now;
        conn->ping_due = 1;
        lws_callback_on_writable(conn->wsi);
    }
    mh_timerwheel_add(srv->timers, &conn->timer, next_deadline(srv, conn));
}

static void on_deadline(mh_timer_t *t, void *ud)
{
    mh_conn_t *conn = ud;
    mh_server_t *srv = lws_context_user(lws_get_context(conn->wsi));
    if (conn->live_state == LIVE_OPEN)
        on_open_deadline(srv, conn, mono_ms());
    else if (conn->live_state == LIVE_CLOSING && !defer_kill(srv, t))
        kill_now(conn->wsi); /* the peer never answered our close frame */
}

/* ---- handshake: before lws allocates conn, a record of our own on the wsi ---- */

typedef struct hs {
    mh_timer_t timer;
    struct lws *wsi;
} hs_t;

static void hs_free(struct lws *wsi, hs_t *hs)
{
    lws_set_opaque_user_data(wsi, NULL);
    free(hs);
}

static void on_handshake_deadline(mh_timer_t *t, void *ud)
{
    hs_t *hs = ud;
    struct lws *wsi = hs->wsi;
    if (defer_kill(lws_context_user(lws_get_context(wsi)), t))
        return;
    hs_free(wsi, hs);
    mh_debug("handshake_timeout", "after_s=%d", MH_LIVE_HANDSHAKE_S);
    kill_now(wsi);
}

void mh_live_accepted(mh_server_t *srv, struct lws *wsi)
{
    /* lws arms its own header timeout after this callback (when it attaches the header
     * table): mh_live_loop_turn cancels it at the end of this loop turn */
    hs_t *hs = mh_xcalloc(1, sizeof(*hs));
    hs->wsi = wsi;
    mh_timer_init(&hs->timer, on_handshake_deadline, hs);
    mh_timerwheel_add(srv->timers, &hs->timer, mono_ms() + MH_LIVE_HANDSHAKE_S * 1000u);
    lws_set_opaque_user_data(wsi, hs);
    srv->fresh = mh_xgrow(srv->fresh, srv->nfresh, &srv->fresh_cap, sizeof(*srv->fresh), 64);
    srv->fresh[srv->nfresh++] = wsi;
}

void mh_live_tick(mh_server_t *srv, uint64_t now_ms)
{
    srv->live_kills = 0;
    mh_timerwheel_advance(srv->timers, now_ms);
}

void mh_live_loop_turn(mh_server_t *srv)
{
    for (size_t i = 0; i < srv->nfresh; i++)
        if (lws_get_opaque_user_data(srv->fresh[i])) /* else: headers already in */
            /* cancelling is O(1) and keeps lws' sorted list short: the next accept's
             * insertion then does not walk every pending handshake */
            lws_set_timeout(srv->fresh[i], NO_PENDING_TIMEOUT, 0);
    srv->nfresh = 0;
}

void mh_live_headers_done(mh_server_t *srv, struct lws *wsi)
{
    hs_t *hs = lws_get_opaque_user_data(wsi);
    if (!hs)
        return;
    mh_timerwheel_cancel(srv->timers, &hs->timer);
    hs_free(wsi, hs);
}

void mh_live_destroyed(mh_server_t *srv, struct lws *wsi, mh_conn_t *conn)
{
    for (size_t i = 0; i < srv->nfresh; i++) /* only sockets accepted in this turn */
        if (srv->fresh[i] == wsi)
            srv->fresh[i] = srv->fresh[--srv->nfresh];
    mh_live_headers_done(srv, wsi);
    if (conn)
        mh_live_gone(srv, conn);
}

/* ---- open WebSocket connections ---- */

void mh_live_established(mh_server_t *srv, struct lws *wsi, mh_conn_t *conn)
{
    mh_timerwheel_cancel(srv->timers, &conn->timer); /* a no-op unless armed */
    conn->wsi = wsi;
    conn->live_state = LIVE_OPEN;
    conn->valid_ms = mono_ms();
    conn->ping_sent_ms = 0;
    conn->ping_due = 0;
    mh_timer_init(&conn->timer, on_deadline, conn);
    mh_timerwheel_add(srv->timers, &conn->timer, next_deadline(srv, conn));
}

void mh_live_closing(mh_server_t *srv, struct lws *wsi, uint32_t secs)
{
    mh_conn_t *conn = lws_wsi_user(wsi);
    if (!conn) { /* not a session's connection: lws' own timeout */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, (int)secs);
        return;
    }
    mh_timerwheel_cancel(srv->timers, &conn->timer);
    conn->wsi = wsi;
    conn->live_state = LIVE_CLOSING;
    mh_timer_init(&conn->timer, on_deadline, conn);
    mh_timerwheel_add(srv->timers, &conn->timer, mono_ms() + (uint64_t)secs * 1000u);
}

void mh_live_pong(mh_conn_t *conn)
{
    conn->valid_ms = mono_ms();
    conn->ping_sent_ms = 0; /* the timer finds no ping outstanding and re-arms */
}

int mh_live_writeable(mh_server_t *srv, struct lws *wsi, mh_conn_t *conn)
{
    if (!conn->ping_due || (conn->ws && srv->live_ops->closing(conn)))
        return 0;
    /* not empty: lws 4.1 passes an empty pong to no callback, and the pong echoes this */
    unsigned char buf[LWS_PRE + sizeof(PING_PAYLOAD)];
    memcpy(buf + LWS_PRE, PING_PAYLOAD, sizeof(PING_PAYLOAD) - 1);
    conn->ping_due = 0;
    if (lws_write(wsi, buf + LWS_PRE, sizeof(PING_PAYLOAD) - 1, LWS_WRITE_PING) < 0)
        return -1;
    lws_callback_on_writable(wsi); /* the session's queue gets the next WRITEABLE */
    return 1;
}

void mh_live_gone(mh_server_t *srv, mh_conn_t *conn)
{
    mh_timerwheel_cancel(srv->timers, &conn->timer);
    conn->live_state = LIVE_NONE;
}
