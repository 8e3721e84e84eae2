/*
 * session_live: the session side of liveness (mh_live_ops_t, liveness.h).
 * liveness times pings, pongs and deadlines but does not know sessions;
 * the idle policy (last application frame + --idle-timeout, close with
 * MH_CLOSE_IDLE) is the session's and lives here, so session.c includes
 * liveness.h and liveness.c includes no session module.
 */
#include <stdint.h>

#include "msghub/liveness.h"
#include "msghub/log.h"
#include "msghub/session.h"

static uint64_t live_id(const mh_conn_t *conn)
{
    return conn->ws->id;
}

static int live_closing(const mh_conn_t *conn)
{
    return conn->ws->closing != 0;
}

static uint64_t live_idle_at_ms(const mh_server_t *srv, const mh_conn_t *conn)
{
    uint64_t idle_ms = (uint64_t)srv->cfg->idle_timeout_s * 1000u;
    return idle_ms ? conn->ws->last_app_us / 1000u + idle_ms : 0;
}

static void live_idle(mh_server_t *srv, mh_conn_t *conn)
{
    mh_info("idle_timeout", "id=%llu", (unsigned long long)conn->ws->id);
    mh_session_close(srv, conn->ws, MH_CLOSE_IDLE);
}

static const mh_live_ops_t LIVE_OPS = {
    .id = live_id,
    .closing = live_closing,
    .idle_at_ms = live_idle_at_ms,
    .idle = live_idle,
};

const struct mh_live_ops *mh_session_live_ops(void)
{
    return &LIVE_OPS;
}
