/*
 * server: composition root. Creates the libuv loop, the libwebsockets
 * context on it (foreign loop, LWS_SERVER_OPTION_LIBUV: epoll, not lws'
 * own poll loop), the registry, the inbox and the timers, routes lws
 * callbacks to the HTTP and WebSocket adapters, and runs the graceful
 * shutdown on SIGTERM / SIGINT.
 *
 * Shutdown: /readyz turns 503, upgrades are refused, every session is sent
 * close 1001; once none is left (or the deadline passes) the lws context is
 * destroyed and the loop runs until its handles are closed.
 */
#include "msghub/server.h"

#include <libwebsockets.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "msghub/broker_amqp.h"
#include "msghub/cluster.h"
#include "msghub/http_api.h"
#include "msghub/log.h"
#include "msghub/msglog_mem.h"
#include "msghub/session.h"
#include "msghub/token.h"
#include "msghub/ws.h"

#define SWEEP_INTERVAL_MS 10000
#define DRAIN_POLL_MS 50

typedef struct mh_server_priv {
    uv_signal_t sigterm, sigint;
    uv_timer_t sweep; /* retention sweep of a memory log */
    uv_timer_t acks;  /* flushes ?ack=auto acks */
    uv_timer_t drain; /* polls for the last session to go during shutdown */
    uint64_t drain_deadline_ms;
    int finished;
    int exit_code;
} mh_server_priv_t;

int mh_server_ready(const mh_server_t *srv)
{
    if (srv->draining || !srv->secret)
        return 0;
    return !srv->distributed ||
           (srv->redis_up && srv->broker_up && !mh_broker_stalled(srv->broker));
}

unsigned char *mh_server_scratch(mh_server_t *srv, size_t n)
{
    if (n > srv->scratch_cap) {
        free(srv->scratch);
        srv->scratch_cap = n > 2 * srv->scratch_cap ? n : 2 * srv->scratch_cap;
        srv->scratch = mh_xmalloc(MH_FRAME_HEADROOM + srv->scratch_cap);
    }
    return srv->scratch + MH_FRAME_HEADROOM;
}

void mh_server_next_msg_id(mh_server_t *srv, char *out, size_t len)
{
    snprintf(out, len, "%s-%llu", srv->msg_prefix, (unsigned long long)++srv->msg_seq);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    mh_server_t *srv = lws_context_user(lws_get_context(wsi));
    mh_conn_t *conn = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        mh_err_code_t code;
        const char *msg;
        int status = mh_ws_check_upgrade(srv, wsi, &code, &msg);
        return status ? mh_ws_refuse(srv, wsi, status, code, msg) : 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_TIMER:
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return conn ? mh_ws_callback(srv, wsi, (int)reason, conn, in, len) : 0;
    case LWS_CALLBACK_CLOSED:
        if (conn) {
            mh_ws_callback(srv, wsi, (int)reason, conn, in, len);
            mh_http_callback(srv, wsi, LWS_CALLBACK_CLOSED_HTTP, conn, in, len);
        }
        return 0;
    case LWS_CALLBACK_HTTP:
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        return conn ? mh_http_callback(srv, wsi, (int)reason, conn, in, len) : 0;
    default:
        return 0;
    }
}

static void lws_log_emit(int level, const char *line)
{
    char msg[512];
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (n >= sizeof(msg))
        n = sizeof(msg) - 1;
    memcpy(msg, line, n);
    msg[n] = '\0';
    for (char *c = msg; *c; c++)
        if (*c == '"')
            *c = '\'';
    mh_log(level == LLL_ERR ? MH_LOG_ERROR : MH_LOG_WARN, "lws", "msg=\"%s\"", msg);
}

static void finish(mh_server_t *srv)
{
    mh_server_priv_t *p = srv->priv;
    if (p->finished)
        return;
    p->finished = 1;
    mh_info("shutdown", "sessions_left=%llu", (unsigned long long)srv->metrics.connections);
    uv_timer_stop(&p->drain);
    uv_timer_stop(&p->sweep);
    uv_timer_stop(&p->acks);
    mh_session_flush_auto_acks(srv);
    uv_signal_stop(&p->sigterm);
    uv_signal_stop(&p->sigint);
    uv_close((uv_handle_t *)&p->drain, NULL);
    uv_close((uv_handle_t *)&p->sweep, NULL);
    uv_close((uv_handle_t *)&p->acks, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    uv_close((uv_handle_t *)&p->sigint, NULL);
    lws_context_destroy(srv->lws); /* first stage; lws NULLs srv->lws when done */
    if (srv->distributed)
        mh_cluster_stop(srv);
}

static void on_drain_tick(uv_timer_t *t)
{
    mh_server_t *srv = t->data;
    if (srv->metrics.connections == 0 || mh_now_ms() >= srv->priv->drain_deadline_ms)
        finish(srv);
}

static void on_signal(uv_signal_t *h, int signum)
{
    mh_server_t *srv = h->data;
    if (srv->draining) {
        mh_warn("signal_again", "signal=%d action=exit_now", signum);
        finish(srv);
        return;
    }
    srv->draining = 1;
    mh_info("draining", "signal=%d sessions=%llu deadline_s=%u", signum,
            (unsigned long long)srv->metrics.connections, srv->cfg->shutdown_timeout_s);
    srv->priv->drain_deadline_ms = mh_now_ms() + (uint64_t)srv->cfg->shutdown_timeout_s * 1000u;
    mh_ws_close_all(srv, 1001);
    uv_timer_start(&srv->priv->drain, on_drain_tick, 0, DRAIN_POLL_MS);
}

static void on_sweep(uv_timer_t *t)
{
    mh_server_t *srv = t->data;
    if (srv->log_sweep)
        srv->metrics.inbox_dropped_total += srv->log_sweep(&srv->log, mh_now_ms());
}

static void on_acks(uv_timer_t *t)
{
    mh_session_flush_auto_acks(t->data);
}

static void init_secret(mh_server_t *srv)
{
    if (srv->cfg->token_secret && *srv->cfg->token_secret) {
        srv->secret = (const unsigned char *)srv->cfg->token_secret;
        srv->secret_len = strlen(srv->cfg->token_secret);
        return;
    }
    if (srv->cfg->redis_url && srv->cfg->amqp_url)
        return; /* distributed: cluster.c agrees on one with the other instances */
    if (mh_token_random(srv->random_secret, sizeof(srv->random_secret))) {
        mh_error("random_failed", "what=token_secret");
        abort();
    }
    srv->secret = srv->random_secret;
    srv->secret_len = sizeof(srv->random_secret);
    mh_warn("token_secret_random",
            "msg=\"no --token-secret set: tokens will not survive a restart of this process\"");
}

static void init_limits(mh_server_t *srv)
{
    const mh_config_t *cfg = srv->cfg;
    srv->log_limits =
        (mh_msglog_limits_t){cfg->inbox_max, cfg->inbox_max_bytes, cfg->inbox_ttl_s * 1000u};
}

static uint64_t last_id_of(void *ud)
{
    return mh_registry_last_id(ud);
}

/* Standalone: the per-user logs live in memory, swept for the TTL. */
static void start_memory_log(mh_server_t *srv)
{
    mh_msglog_mem_options_t o = {srv->log_limits, last_id_of, NULL, srv->registry};
    mh_msglog_mem_new(&srv->log, &o);
    srv->log_sweep = mh_msglog_mem_expire;
}

static void init_msg_prefix(mh_server_t *srv)
{
    unsigned char r[6];
    mh_token_random(r, sizeof(r));
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(srv->msg_prefix + 2 * i, 3, "%02x", r[i]);
}

static struct lws_context *create_lws(mh_server_t *srv, const lws_retry_bo_t *retry,
                                      const struct lws_protocols *protocols)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *loops[1] = {srv->loop};
    info.port = srv->cfg->listen_port;
    info.iface = strcmp(srv->cfg->listen_host, "0.0.0.0") ? srv->cfg->listen_host : NULL;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = loops;
    info.user = srv;
    info.retry_and_idle_policy = retry;
    info.pcontext = &srv->lws; /* lws sets it to NULL once fully destroyed */
    info.max_http_header_data = 4096;
    /* one read per socket event fills this shared buffer (4 KiB by default) */
    info.pt_serv_buf_size = 256 * 1024;
    return lws_create_context(&info);
}

static int run_loop(mh_server_t *srv)
{
    const mh_config_t *cfg = srv->cfg;
    lws_retry_bo_t retry = {
        .secs_since_valid_ping = (uint16_t)cfg->ping_interval_s,
        .secs_since_valid_hangup = (uint16_t)(cfg->ping_interval_s + cfg->pong_timeout_s),
    };
    struct lws_protocols protocols[] = {
        {"msghub", callback, sizeof(mh_conn_t), 65536, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
    srv->lws = create_lws(srv, &retry, protocols);
    if (!srv->lws) {
        mh_error("listen_failed", "addr=%s:%d", cfg->listen_host, cfg->listen_port);
        if (srv->distributed)
            mh_cluster_stop(srv);
        return 1;
    }
    mh_server_priv_t *p = srv->priv;
    uv_signal_init(srv->loop, &p->sigterm);
    uv_signal_init(srv->loop, &p->sigint);
    uv_timer_init(srv->loop, &p->sweep);
    uv_timer_init(srv->loop, &p->drain);
    uv_timer_init(srv->loop, &p->acks);
    p->sigterm.data = p->sigint.data = p->sweep.data = p->drain.data = p->acks.data = srv;
    uv_signal_start(&p->sigterm, on_signal, SIGTERM);
    uv_signal_start(&p->sigint, on_signal, SIGINT);
    uv_timer_start(&p->sweep, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
    uv_timer_start(&p->acks, on_acks, MH_SESSION_ACK_FLUSH_MS, MH_SESSION_ACK_FLUSH_MS);
    mh_info("listening", "addr=%s:%d mode=%s instance=%s max_connections=%u", cfg->listen_host,
            cfg->listen_port, srv->distributed ? "distributed" : "standalone", cfg->instance_id,
            cfg->max_connections);
    uv_run(srv->loop, UV_RUN_DEFAULT);
    return 0;
}

int mh_server_run(const mh_config_t *cfg)
{
    signal(SIGPIPE, SIG_IGN);
    mh_server_t srv;
    mh_server_priv_t priv;
    memset(&srv, 0, sizeof(srv));
    memset(&priv, 0, sizeof(priv));
    uv_loop_t loop;
    uv_loop_init(&loop);
    srv.cfg = cfg;
    srv.loop = &loop;
    srv.priv = &priv;
    srv.registry = mh_registry_new();
    init_limits(&srv);
    srv.limits.max_receivers = cfg->max_receivers;
    srv.limits.max_body_bytes = cfg->max_body_bytes;
    srv.started_ms = mh_now_ms();
    mh_metrics_init(&srv.metrics);
    init_secret(&srv);
    init_msg_prefix(&srv);

    int rc = 1;
    if (cfg->redis_url && cfg->amqp_url) {
        if (mh_cluster_start(&srv)) /* plugs in the Redis log */
            mh_cluster_stop(&srv);
        else
            rc = run_loop(&srv);
    } else {
        start_memory_log(&srv);
        rc = run_loop(&srv);
    }
    /* with a foreign loop lws finishes destroying itself in a second call */
    for (int i = 0; i < 2 && srv.lws; i++) {
        lws_context_destroy(srv.lws);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    if (uv_loop_close(&loop))
        mh_warn("loop_close", "msg=\"handles still open at exit\"");
    mh_msglog_free(&srv.log);
    mh_registry_free(srv.registry);
    free(srv.shared_secret);
    free(srv.scratch);
    for (size_t i = 0; i < srv.n_ack_pending; i++)
        mh_handle_unref(srv.ack_pending[i]);
    free(srv.ack_pending);
    if (!rc)
        mh_info("stopped", "%s", "");
    return rc;
}
