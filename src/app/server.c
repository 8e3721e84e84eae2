/*
 * server: composition root. Creates the libuv loop, the libwebsockets
 * context on it (foreign loop, LWS_SERVER_OPTION_LIBUV: epoll, not lws'
 * own poll loop), the registry, the per-user log and the timers, routes lws
 * callbacks to the HTTP and WebSocket adapters, and runs the graceful
 * shutdown on SIGTERM / SIGINT.
 *
 * Shutdown: /readyz turns 503, upgrades are refused, every session is sent
 * close 1001; once none is left (or the deadline passes) the lws context is
 * destroyed and the loop runs until its handles are closed.
 */
#include "msghub/server.h"

#include <libwebsockets.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

#include "msghub/acceptor.h"
#include "msghub/cluster.h"
#include "msghub/conn.h"
#include "msghub/conntrack.h"
#include "msghub/hub.h"
#include "msghub/http_api.h"
#include "msghub/liveness.h"
#include "msghub/log.h"
#include "msghub/lws_compat.h"
#include "msghub/msglog_mem.h"
#include "msghub/presence_mem.h"
#include "msghub/session.h"
#include "msghub/token.h"
#include "msghub/ws.h"

#define SWEEP_INTERVAL_MS 10000
#define DRAIN_POLL_MS 50
#define DEADLINE_CLOSES_PER_TICK 100 /* request deadlines closed per wheel tick at most */
#define VERSIONLESS_STALL_MS 500     /* an HTTP/0.9 request line waits this long for a 400 */
#define LOG_FLUSH_EVERY 10           /* wheel ticks: once a second */
#define ACCEPTS_PER_TURN 100         /* a storm of connections is accepted over many loop turns */
#define IDLE_CLOSES_PER_TICK 200     /* sockets that never sent a byte, closed per wheel tick */
/*
 * lws mallocs this (+ LWS_PRE) per WebSocket at the upgrade, keeps it for the
 * connection's life and hands larger frames to ws.c in chunks of it (ws.c
 * reassembles). With 64 KiB each idle connection kept a resident page of it
 * (heaptrack: the largest per-connection cost); 1 KiB is one callback per KiB.
 */
#define WS_RX_CHUNK_BYTES 1024
/*
 * With tx_packet_size 0, lws 4.1 (lws_issue_raw) sends at most
 * rx_buffer_size + LWS_PRE + 4 bytes per send() (1,044 here) and copies the
 * rest of every write into its per-connection buffer, drained 1,044 bytes
 * per POLLOUT; a session's write (one batch, at most MH_SESSION_WRITE_BYTES)
 * goes out in one send() with this.
 */
#define WS_TX_PACKET_BYTES MH_SESSION_WRITE_BYTES

typedef struct mh_server_priv {
    uv_signal_t sigterm, sigint;
    uv_timer_t sweep;        /* retention sweep of a memory log */
    uv_timer_t acks;         /* flushes ?ack=auto acks */
    uv_timer_t drain;        /* polls for the last session to go during shutdown */
    unsigned long ticks;     /* of the wheel timer */
    uv_timer_t wheel;        /* sweeps srv->timers: every per-connection deadline */
    uv_check_t turn;         /* after each loop turn: liveness' accept step */
    uv_prepare_t poll_gap;   /* before each poll: the writes sessions asked for, then the turn's
                                length (msghub_loop_busy_max_seconds) */
    uv_poll_t coalesce;      /* --write-coalesce: a timerfd that ends the hold of the writes */
    int coalesce_fd;         /* -1 when off */
    uint64_t due_since_ns;   /* --write-coalesce: when writes first came due, 0 when none is */
    uint64_t turn_start_ns;  /* uv_hrtime() at the previous poll */
    uint64_t idle_ns;        /* uv_metrics_idle_time() then */
    mh_acceptor_t *acceptor; /* the listening socket (lws has none) */
    uint64_t adopt_since_ms; /* while handing a socket to lws: when it was accepted */
    uint64_t drain_deadline_ms;
    int finished;
    int exit_code;
} mh_server_priv_t;

static void on_coalesce_closed(uv_handle_t *h);

/* Reads one unsigned number from path; 0 when absent or "max". */
static uint64_t read_u64_file(const char *path)
{
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    if (f && fscanf(f, "%llu", &v) != 1)
        v = 0;
    if (f)
        fclose(f);
    return v;
}

/* The default --memory-limit: half of the cgroup's limit, or of the machine's RAM. */
static uint64_t default_memory_limit(void)
{
    uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t cg = read_u64_file("/sys/fs/cgroup/memory.max");
    if (!cg)
        cg = read_u64_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    uint64_t limit = cg && cg < ram ? cg : ram;
    return limit / 2;
}

/* At the socket limit a new socket is closed right after accept (no EMFILE, no busy loop). */
static size_t sockets_open(mh_server_t *srv)
{
    return mh_conntrack_count(srv->conntrack) + mh_acceptor_held(srv->priv->acceptor);
}

static int accept_allowed(mh_server_t *srv)
{
    size_t limit = (size_t)srv->cfg->max_connections + MH_CONFIG_SOCKET_SLACK;
    if (sockets_open(srv) < limit)
        return 1;
    srv->metrics.sockets_refused_total++;
    mh_warn("socket_refused", "reason=limit sockets=%zu", sockets_open(srv));
    return 0;
}

static int on_admit(void *ud)
{
    return accept_allowed(ud);
}

/* A held socket has its first bytes: lws takes it (and closes it if it cannot). */
static void on_adopt(void *ud, int fd, uint64_t accepted_ms)
{
    mh_server_t *srv = ud;
    srv->priv->adopt_since_ms = accepted_ms; /* read at LWS_CALLBACK_WSI_CREATE */
    if (!lws_adopt_socket_vhost(lws_get_vhost_by_name(srv->lws, "default"), fd))
        mh_warn("adopt_failed", "fd=%d", fd);
    srv->priv->adopt_since_ms = 0;
}

/* Socket lifecycle: counted from accept to destroy, whatever protocol it speaks. */
static int track(mh_server_t *srv, struct lws *wsi, int reason)
{
    if (reason == LWS_CALLBACK_FILTER_NETWORK_CONNECTION)
        return accept_allowed(srv) ? 0 : 1;
    uint64_t since = srv->priv->adopt_since_ms;
    if (reason == LWS_CALLBACK_WSI_CREATE)
        mh_conntrack_open(srv->conntrack, wsi, since ? since : mh_mono_us() / 1000u);
    else
        mh_conntrack_close(srv->conntrack, wsi);
    srv->metrics.sockets = sockets_open(srv);
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    mh_server_t *srv = lws_context_user(lws_get_context(wsi));
    mh_conn_t *conn = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
    case LWS_CALLBACK_WSI_CREATE:
        return track(srv, wsi, (int)reason);
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        mh_live_accepted(srv, wsi);
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        mh_live_headers_done(srv, wsi);
        mh_conntrack_dispatched(srv->conntrack, wsi);
        mh_err_code_t code;
        const char *msg;
        int status = mh_ws_check_upgrade(srv, wsi, &code, &msg);
        return status ? mh_ws_refuse(srv, wsi, status, code, msg) : 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        mh_conntrack_upgraded(srv->conntrack, wsi);
        return conn ? mh_ws_callback(srv, wsi, (int)reason, conn, in, len) : 0;
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_RECEIVE_PONG:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return conn ? mh_ws_callback(srv, wsi, (int)reason, conn, in, len) : 0;
    case LWS_CALLBACK_CLOSED:
        if (conn) {
            mh_ws_callback(srv, wsi, (int)reason, conn, in, len);
            mh_http_callback(srv, wsi, LWS_CALLBACK_CLOSED_HTTP, conn, in, len);
        }
        return 0;
    case LWS_CALLBACK_HTTP:
        mh_live_headers_done(srv, wsi);
        mh_conntrack_dispatched(srv->conntrack, wsi);
        return conn ? mh_http_callback(srv, wsi, (int)reason, conn, in, len) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (conn)
            mh_live_gone(srv, conn); /* lws may free or replace conn's memory next */
        return conn ? mh_http_callback(srv, wsi, (int)reason, conn, in, len) : 0;
    case LWS_CALLBACK_WSI_DESTROY: /* the last callback with conn's memory intact */
        mh_live_destroyed(srv, wsi, conn);
        return track(srv, wsi, (int)reason);
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return conn ? mh_http_callback(srv, wsi, (int)reason, conn, in, len) : 0;
    default:
        return 0;
    }
}

static int raw_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    return mh_http_raw_callback(wsi, (int)reason, user, in, len);
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
    uv_timer_stop(&p->wheel);
    uv_check_stop(&p->turn);
    uv_prepare_stop(&p->poll_gap);
    mh_session_arm_writes(srv); /* lws writes what is left while it closes */
    uv_signal_stop(&p->sigterm);
    uv_signal_stop(&p->sigint);
    mh_acceptor_close(p->acceptor);
    uv_close((uv_handle_t *)&p->drain, NULL);
    uv_close((uv_handle_t *)&p->sweep, NULL);
    uv_close((uv_handle_t *)&p->acks, NULL);
    uv_close((uv_handle_t *)&p->wheel, NULL);
    uv_close((uv_handle_t *)&p->turn, NULL);
    uv_close((uv_handle_t *)&p->poll_gap, NULL);
    if (p->coalesce_fd >= 0)
        uv_close((uv_handle_t *)&p->coalesce, on_coalesce_closed);
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
    mh_ws_close_all(srv, MH_CLOSE_GOING_AWAY);
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

/* Liveness' and conntrack's deadlines, all on srv->timers. */
static void on_wheel_tick(uv_timer_t *t)
{
    mh_server_t *srv = t->data;
    if (++srv->priv->ticks % LOG_FLUSH_EVERY == 0)
        mh_log_flush();
    mh_live_tick(srv, mh_mono_us() / 1000u);
    size_t n = mh_acceptor_end_tick(srv->priv->acceptor); /* silent sockets */
    srv->metrics.sockets = sockets_open(srv);
    n += mh_conntrack_end_tick(srv->conntrack);
    srv->metrics.request_timeouts_total += n;
    if (n)
        mh_info("request_timeout", "closed=%zu timeout_s=%u", n, srv->cfg->request_timeout_s);
}

static void on_loop_turn(uv_check_t *c)
{
    mh_live_loop_turn(c->data);
}

/* The hold of --write-coalesce ended: the poll returns, the next prepare writes. */
static void on_coalesce_due(uv_poll_t *h, int status, int events)
{
    mh_server_priv_t *p = h->data;
    uint64_t expirations;
    (void)status;
    (void)events;
    if (read(p->coalesce_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
        mh_warn("coalesce_timer_failed", "err=\"%s\"", strerror(errno));
}

static void on_coalesce_closed(uv_handle_t *h)
{
    mh_server_priv_t *p = h->data;
    close(p->coalesce_fd);
    p->coalesce_fd = -1;
}

/* --write-coalesce: a timerfd (libuv's timers are whole milliseconds) watched by the loop. */
static void coalesce_init(mh_server_t *srv)
{
    mh_server_priv_t *p = srv->priv;
    p->coalesce_fd = -1;
    if (!srv->cfg->write_coalesce_us)
        return;
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0 || uv_poll_init(srv->loop, &p->coalesce, fd)) {
        mh_warn("coalesce_off", "err=\"%s\"", strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    p->coalesce_fd = fd;
    p->coalesce.data = p;
    uv_poll_start(&p->coalesce, UV_READABLE, on_coalesce_due);
}

/*
 * 1 when the writes due may go now: always without --write-coalesce; with
 * it, once the first has waited that long (the timerfd wakes the poll then).
 */
static int writes_may_go(mh_server_t *srv, uint64_t now_ns)
{
    mh_server_priv_t *p = srv->priv;
    if (!srv->n_write_due) {
        p->due_since_ns = 0; /* also when a direct mh_session_arm_writes() (shutdown) emptied it */
        return 1;
    }
    if (p->coalesce_fd < 0)
        return 1;
    uint64_t hold_ns = (uint64_t)srv->cfg->write_coalesce_us * 1000u;
    if (!p->due_since_ns) {
        p->due_since_ns = now_ns;
        uint64_t at = now_ns + hold_ns; /* uv_hrtime() is CLOCK_MONOTONIC */
        struct itimerspec its = {{0, 0}, {(time_t)(at / 1000000000u), (long)(at % 1000000000u)}};
        timerfd_settime(p->coalesce_fd, TFD_TIMER_ABSTIME, &its, NULL);
    }
    if (now_ns - p->due_since_ns < hold_ns)
        return 0;
    p->due_since_ns = 0;
    return 1;
}

/*
 * Before each poll: the batches of sessions whose queue filled this turn
 * (mh_session_arm_writes; with --write-coalesce, those of the turns within
 * its hold), then the time since the previous poll, less the time spent
 * waiting, was work.
 */
static void on_before_poll(uv_prepare_t *h)
{
    mh_server_t *srv = h->data;
    mh_server_priv_t *p = srv->priv;
    if (writes_may_go(srv, uv_hrtime()))
        mh_session_arm_writes(srv);
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(srv->loop);
    if (p->turn_start_ns) {
        uint64_t busy_us = (now - p->turn_start_ns - (idle - p->idle_ns)) / 1000u;
        if (busy_us > srv->metrics.loop_busy_max_us)
            srv->metrics.loop_busy_max_us = busy_us;
    }
    p->turn_start_ns = now;
    p->idle_ns = idle;
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

/* The hub's hook for relay (hub.h): sessions in the registry are net's mh_session_t. */
static void deliver_local(mh_server_t *srv, void *session, mh_frame_t *f, uint64_t seq)
{
    mh_session_deliver(srv, session, f, seq);
}

/* Standalone: the per-user logs live in memory, swept for the TTL; presence is the registry. */
static void start_memory_log(mh_server_t *srv)
{
    mh_presence_mem_init(&srv->presence, srv->registry);
    mh_msglog_mem_options_t o = {srv->log_limits, last_id_of, NULL, srv->registry,
                                 &srv->metrics.memory_bytes};
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
    info.port = CONTEXT_PORT_NO_LISTEN; /* acceptor.c listens and hands sockets over */
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DISABLE_IPV6 |
                   LWS_SERVER_OPTION_FALLBACK_TO_APPLY_LISTEN_ACCEPT_CONFIG;
    /* a first line that is not HTTP goes to the raw protocol, which answers 400 */
    info.listen_accept_role = "raw-skt";
    info.listen_accept_protocol = MH_HTTP_RAW_PROTOCOL;
    info.foreign_loops = loops;
    info.user = srv;
    info.retry_and_idle_policy = retry;
    info.pcontext = &srv->lws; /* lws sets it to NULL once fully destroyed */
    info.max_http_header_data = MH_HTTP_MAX_HEADER_BYTES;
    static struct lws_token_limits limits; /* read by lws for the context's life */
    for (int i = 0; i < WSI_TOKEN_COUNT; i++)
        limits.token_limit[i] = MH_HTTP_TOKEN_LIMIT;
    info.token_limits = &limits;
    /* one read per socket event fills this shared buffer (4 KiB by default) */
    info.pt_serv_buf_size = 256 * 1024;
    return lws_create_context(&info);
}

static mh_acceptor_t *start_acceptor(mh_server_t *srv)
{
    const mh_config_t *cfg = srv->cfg;
    /* a silent socket: the request deadline, or liveness' handshake deadline if shorter */
    uint64_t idle_ms = (uint64_t)cfg->request_timeout_s * 1000u;
    if (idle_ms > MH_LIVE_HANDSHAKE_S * 1000u)
        idle_ms = MH_LIVE_HANDSHAKE_S * 1000u;
    mh_acceptor_options_t o = {
        .loop = srv->loop,
        .wheel = srv->timers,
        .host = cfg->listen_host,
        .port = cfg->listen_port,
        .per_turn = ACCEPTS_PER_TURN,
        .closes_per_tick = IDLE_CLOSES_PER_TICK,
        .idle_timeout_ms = idle_ms,
        .head_max = MH_HTTP_MAX_HEADER_BYTES, /* what lws can hold: it never sees a longer head */
        .admit = on_admit,
        .adopt = on_adopt,
        .ud = srv,
    };
    return mh_acceptor_new(&o);
}

static int run_loop(mh_server_t *srv)
{
    const mh_config_t *cfg = srv->cfg;
    /* No lws validity timer: with both 0 lws 4.1 arms none (_lws_validity_confirmed_role);
     * pings, pong timeout and idle are on srv->timers (liveness.c). Without a policy lws would
     * use its default (a ping after 300 s). Static: lws keeps the pointer. */
    static const lws_retry_bo_t retry = {
        .secs_since_valid_ping = 0,
        .secs_since_valid_hangup = 0,
    };
    struct lws_protocols protocols[] = {
        {"msghub", callback, sizeof(mh_conn_t), WS_RX_CHUNK_BYTES, 0, NULL, WS_TX_PACKET_BYTES},
        {MH_HTTP_RAW_PROTOCOL, raw_callback, 0, 0, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
    srv->lws = create_lws(srv, &retry, protocols);
    mh_server_priv_t *p = srv->priv;
    if (srv->lws)
        p->acceptor = start_acceptor(srv);
    if (!p->acceptor) { /* a context without the acceptor is destroyed by mh_server_run */
        mh_error("listen_failed", "addr=%s:%d error=\"%s\"", cfg->listen_host, cfg->listen_port,
                 strerror(errno));
        if (srv->distributed)
            mh_cluster_stop(srv);
        return 1;
    }
    uv_signal_init(srv->loop, &p->sigterm);
    uv_signal_init(srv->loop, &p->sigint);
    uv_timer_init(srv->loop, &p->sweep);
    uv_timer_init(srv->loop, &p->drain);
    uv_timer_init(srv->loop, &p->acks);
    uv_timer_init(srv->loop, &p->wheel);
    uv_check_init(srv->loop, &p->turn);
    uv_prepare_init(srv->loop, &p->poll_gap);
    p->sigterm.data = p->sigint.data = p->sweep.data = p->drain.data = p->acks.data = srv;
    p->wheel.data = p->turn.data = p->poll_gap.data = srv;
    uv_signal_start(&p->sigterm, on_signal, SIGTERM);
    uv_signal_start(&p->sigint, on_signal, SIGINT);
    uv_timer_start(&p->sweep, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
    uv_timer_start(&p->acks, on_acks, MH_SESSION_ACK_FLUSH_MS, MH_SESSION_ACK_FLUSH_MS);
    uv_timer_start(&p->wheel, on_wheel_tick, MH_LIVE_TICK_MS, MH_LIVE_TICK_MS);
    uv_check_start(&p->turn, on_loop_turn);
    /* after mh_cluster_start: libuv runs it before the Redis connections' flush (redis_conn.c) */
    uv_prepare_start(&p->poll_gap, on_before_poll);
    coalesce_init(srv);
    mh_info("listening", "addr=%s:%d mode=%s instance=%s max_connections=%u memory_limit=%llu",
            cfg->listen_host, cfg->listen_port, srv->distributed ? "distributed" : "standalone",
            cfg->instance_id, cfg->max_connections,
            (unsigned long long)srv->metrics.memory_limit_bytes);
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
    uv_loop_configure(&loop, UV_METRICS_IDLE_TIME); /* for msghub_loop_busy_max_seconds */
    srv.cfg = cfg;
    srv.loop = &loop;
    srv.priv = &priv;
    srv.registry = mh_registry_new();
    srv.deliver = deliver_local;
    srv.live_ops = mh_session_live_ops();
    init_limits(&srv);
    srv.timers = mh_timerwheel_new(mh_mono_us() / 1000u, MH_LIVE_TICK_MS, MH_LIVE_SLOTS);
    mh_conntrack_options_t cto = {srv.timers, (uint64_t)cfg->request_timeout_s * 1000u,
                                  VERSIONLESS_STALL_MS, mh_http_refuse_versionless,
                                  DEADLINE_CLOSES_PER_TICK};
    srv.conntrack = mh_conntrack_new(&cto);
    srv.limits.max_receivers = cfg->max_receivers;
    srv.limits.max_body_bytes = cfg->max_body_bytes;
    srv.started_ms = mh_now_ms();
    mh_metrics_init(&srv.metrics);
    srv.metrics.memory_limit_bytes = cfg->memory_limit ? cfg->memory_limit : default_memory_limit();
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
    mh_conntrack_free(srv.conntrack); /* cancels its timers: before the wheel goes */
    mh_timerwheel_free(srv.timers);
    free(srv.fresh);
    mh_registry_free(srv.registry);
    free(srv.shared_secret);
    free(srv.scratch);
    for (size_t i = 0; i < srv.n_ack_pending; i++)
        mh_handle_unref(srv.ack_pending[i]);
    free(srv.ack_pending);
    for (size_t i = 0; i < srv.n_write_due; i++)
        mh_handle_unref(srv.write_due[i]);
    free(srv.write_due);
    if (!rc)
        mh_info("stopped", "%s", "");
    return rc;
}
