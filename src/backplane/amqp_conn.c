/*
 * amqp_conn: the RabbitMQ connection of distributed mode (contract and
 * ownership in amqp_conn.h; the topology, publishes, confirms and
 * deliveries are broker_amqp's).
 *
 * One rabbitmq-c connection at a time, two channels: MH_AMQP_CONN_CH_PUB,
 * put in confirm mode by sending AMQP_CONFIRM_SELECT_METHOD by hand (0.11
 * has no helper), and MH_AMQP_CONN_CH_CONS. The socket is watched by a
 * uv_poll_t (allocated per connection, freed in its close callback); frames
 * are read with amqp_simple_wait_frame_noblock() and a zero timeout until
 * it reports AMQP_STATUS_TIMEOUT, which covers frames rabbitmq-c queued
 * during an RPC and bytes already in its buffer (neither makes the fd
 * readable). A drain reads at most DRAIN_BUDGET frames and continues on the
 * next loop turn through a uv_idle_t. Connection-level methods are handled
 * here; every other frame goes to the owner's frame hook.
 *
 * Blocking, on purpose: connection setup (TCP connect, login, channels,
 * and the owner's declarations and consumers in its setup hook) runs on
 * the loop as blocking calls, each bounded by SETUP_TIMEOUT_MS. Measured on
 * the loop: a refused port fails in 0.1-0.3 ms, a healthy local RabbitMQ is
 * connected, declared and consuming in 3-9 ms. The cost is a server that
 * accepts TCP but does not answer (or a host that drops SYNs): each attempt
 * then stalls the loop for SETUP_TIMEOUT_MS, one attempt per backoff period
 * (at most every 5 s). Moving the TCP connect to uv_tcp/uv_getaddrinfo and
 * handing the fd to amqp_tcp_socket_set_sockfd() would remove the connect
 * part of that if it matters.
 * Sends (publish, ack, heartbeat) go through rabbitmq-c, which writes the
 * whole frame and waits in poll() if the kernel send buffer is full; frames
 * are small next to that buffer and RabbitMQ reads continuously, so this
 * does not stall the loop in practice. The one case where RabbitMQ stops
 * reading (connection.blocked on a memory or disk alarm) is announced to
 * us (we ask for it at login) and shown by mh_amqp_conn_blocked().
 *
 * Heartbeats: 10 s negotiated; a timer every 5 s sends one and declares the
 * server dead when nothing arrived for 2 intervals (rabbitmq-c's own check
 * never fires with zero-timeout reads).
 *
 * Reconnection: exponential backoff from 100 ms doubling to 5 s, +-20 %
 * jitter (xorshift64). Each successful connect takes the next epoch; the
 * first is random, so tags of another connection object differ too.
 * Errors met while the owner sends are handled on the next loop turn
 * (mh_amqp_conn_broken()), never inside the owner's call.
 */
#include "amqp_conn.h"

#include <amqp_tcp_socket.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <uv.h>

#include "msghub/backoff.h"
#include "msghub/log.h"
#include "msghub/util.h"

#define SETUP_TIMEOUT_MS 2000
#define CLOSE_TIMEOUT_MS 500
#define HEARTBEAT_S 10
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define DRAIN_BUDGET 256
#define SEND_BUFFER_BYTES (4 * 1024 * 1024) /* capped by net.core.wmem_max */
#define EPOCH_MASK ((1u << MH_AMQP_CONN_EPOCH_BITS) - 1)

struct mh_amqp_conn {
    uv_loop_t *loop;
    char *url;                      /* copy that amqp_parse_url cut up */
    struct amqp_connection_info ci; /* points into url */
    char *name;
    const mh_amqp_conn_hooks_t *hooks;
    void *ud;

    amqp_connection_state_t amqp; /* NULL while down */
    uv_poll_t *poll;
    uv_timer_t retry, beat;
    uv_idle_t more; /* continue a drain or handle a send error next turn */
    int handles_open;
    int up, closing, blocked, broken;
    uint32_t epoch;
    mh_backoff_t backoff; /* retries scheduled since the last success, jitter */
    unsigned failures;    /* connect attempts failed since the last success (logs) */
    int heartbeat_s;
    uint64_t last_rx_ms;
    char err[256];
    mh_amqp_conn_freed_fn on_freed;
    void *freed_arg;
};

static void on_more(uv_idle_t *h);
static void connect_now(mh_amqp_conn_t *c);

static uint64_t now_ms(void)
{
    return mh_mono_us() / 1000;
}

static struct timeval tv_ms(unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* ---- teardown and reconnection ---- */

static void free_on_close(uv_handle_t *h)
{
    free(h);
}

/* Closes the socket (no AMQP close handshake) and drops per-connection state. */
static void drop_conn(mh_amqp_conn_t *c)
{
    if (c->poll) {
        uv_poll_stop(c->poll);
        uv_close((uv_handle_t *)c->poll, free_on_close);
        c->poll = NULL;
    }
    if (c->amqp) {
        amqp_destroy_connection(c->amqp);
        c->amqp = NULL;
    }
    c->up = c->broken = c->blocked = 0;
    uv_timer_stop(&c->beat);
    uv_idle_stop(&c->more);
}

static void on_retry(uv_timer_t *t)
{
    connect_now(t->data);
}

static unsigned schedule_retry(mh_amqp_conn_t *c)
{
    unsigned ms = mh_backoff_next(&c->backoff);
    uv_timer_start(&c->retry, on_retry, ms, 0);
    return ms;
}

/* The connection failed after setup: tell the owner, retry. */
static void conn_lost(mh_amqp_conn_t *c, const char *why)
{
    if (!c->amqp)
        return;
    int was_up = c->up;
    drop_conn(c);
    c->hooks->lost(c->ud, was_up, why);
    if (c->closing)
        return;
    mh_backoff_reset(&c->backoff);
    schedule_retry(c);
}

void mh_amqp_conn_broken(mh_amqp_conn_t *c, const char *what, int status)
{
    if (c->broken)
        return;
    c->broken = 1;
    snprintf(c->err, sizeof(c->err), "%s: %s", what, amqp_error_string2(status));
    /*
     * rabbitmq-c may have closed the socket already: stop watching its fd
     * now, before the loop runs again and the number can be reused by
     * another socket; the teardown on the next turn closes the handle.
     */
    if (c->poll)
        uv_poll_stop(c->poll);
    uv_idle_start(&c->more, on_more);
}

/* ---- connection setup (blocking, bounded by SETUP_TIMEOUT_MS per step) ---- */

/* Text for an RPC's failure, in c->err; NULL if it succeeded. */
static const char *rpc_error(mh_amqp_conn_t *c, amqp_rpc_reply_t r, const char *what)
{
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return NULL;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        snprintf(c->err, sizeof(c->err), "%s: %s", what, amqp_error_string2(r.library_error));
    } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
               r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_connection_close_t *m = r.reply.decoded;
        snprintf(c->err, sizeof(c->err), "%s: connection closed by server: %u %.*s", what,
                 m->reply_code, (int)m->reply_text.len, (char *)m->reply_text.bytes);
    } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
               r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_t *m = r.reply.decoded;
        snprintf(c->err, sizeof(c->err), "%s: channel closed by server: %u %.*s", what,
                 m->reply_code, (int)m->reply_text.len, (char *)m->reply_text.bytes);
    } else {
        snprintf(c->err, sizeof(c->err), "%s: unexpected reply", what);
    }
    return c->err;
}

const char *mh_amqp_conn_rpc_error(mh_amqp_conn_t *c, const char *what)
{
    return rpc_error(c, amqp_get_rpc_reply(c->amqp), what);
}

static const char *open_socket(mh_amqp_conn_t *c)
{
    amqp_socket_t *s = amqp_tcp_socket_new(c->amqp);
    if (!s)
        return "tcp socket: out of memory";
    struct timeval tv = tv_ms(SETUP_TIMEOUT_MS);
    int rc = amqp_socket_open_noblock(s, c->ci.host, c->ci.port, &tv);
    if (rc != AMQP_STATUS_OK) {
        snprintf(c->err, sizeof(c->err), "connect: %s", amqp_error_string2(rc));
        return c->err;
    }
    amqp_set_handshake_timeout(c->amqp, &tv);
    amqp_set_rpc_timeout(c->amqp, &tv);
    /* room for big publishes: the broker adapter sends only what fits without waiting */
    int sndbuf = SEND_BUFFER_BYTES;
    setsockopt(amqp_get_sockfd(c->amqp), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    return NULL;
}

static amqp_table_entry_t bool_entry(const char *key)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    e.value.value.boolean = 1;
    return e;
}

static const char *login(mh_amqp_conn_t *c)
{
    /* connection.blocked: RabbitMQ tells us before it stops reading. */
    amqp_table_entry_t caps[] = {bool_entry("connection.blocked"),
                                 bool_entry("consumer_cancel_notify")};
    amqp_table_entry_t props[2] = {{.key = amqp_cstring_bytes("capabilities")},
                                   {.key = amqp_cstring_bytes("connection_name")}};
    props[0].value.kind = AMQP_FIELD_KIND_TABLE;
    props[0].value.value.table = (amqp_table_t){2, caps};
    props[1].value.kind = AMQP_FIELD_KIND_UTF8;
    props[1].value.value.bytes = amqp_cstring_bytes(c->name);
    amqp_table_t table = {2, props};
    amqp_rpc_reply_t r =
        amqp_login_with_properties(c->amqp, c->ci.vhost, 0, AMQP_DEFAULT_FRAME_SIZE, HEARTBEAT_S,
                                   &table, AMQP_SASL_METHOD_PLAIN, c->ci.user, c->ci.password);
    return rpc_error(c, r, "login");
}

static const char *open_channels(mh_amqp_conn_t *c)
{
    if (!amqp_channel_open(c->amqp, MH_AMQP_CONN_CH_PUB))
        return mh_amqp_conn_rpc_error(c, "channel.open");
    if (!amqp_channel_open(c->amqp, MH_AMQP_CONN_CH_CONS))
        return mh_amqp_conn_rpc_error(c, "channel.open");
    amqp_confirm_select_t req = {.nowait = 0};
    if (!amqp_simple_rpc_decoded(c->amqp, MH_AMQP_CONN_CH_PUB, AMQP_CONFIRM_SELECT_METHOD,
                                 AMQP_CONFIRM_SELECT_OK_METHOD, &req))
        return mh_amqp_conn_rpc_error(c, "confirm.select");
    return NULL;
}

/* Connects, logs in, opens the channels, runs the owner's setup; NULL or why (conn destroyed). */
static const char *setup(mh_amqp_conn_t *c)
{
    c->amqp = amqp_new_connection();
    if (!c->amqp)
        return "out of memory";
    const char *why = open_socket(c);
    if (!why)
        why = login(c);
    if (!why)
        why = open_channels(c);
    if (!why)
        why = c->hooks->setup(c->ud);
    if (why) {
        amqp_destroy_connection(c->amqp);
        c->amqp = NULL;
    }
    return why;
}

static void on_poll(uv_poll_t *h, int status, int events);
static void on_beat(uv_timer_t *t);

/* Starts watching the socket and the heartbeat; NULL or why not. */
static const char *go_up(mh_amqp_conn_t *c)
{
    amqp_maybe_release_buffers(c->amqp);
    c->poll = mh_xmalloc(sizeof(*c->poll));
    int rc = uv_poll_init_socket(c->loop, c->poll, amqp_get_sockfd(c->amqp));
    if (rc != 0) {
        free(c->poll);
        c->poll = NULL;
        amqp_destroy_connection(c->amqp);
        c->amqp = NULL;
        snprintf(c->err, sizeof(c->err), "uv_poll_init: %s", uv_strerror(rc));
        return c->err;
    }
    c->poll->data = c;
    uv_poll_start(c->poll, UV_READABLE | UV_DISCONNECT, on_poll);
    c->heartbeat_s = amqp_get_heartbeat(c->amqp);
    c->last_rx_ms = now_ms();
    if (c->heartbeat_s > 0) {
        uint64_t every = (uint64_t)c->heartbeat_s * 500;
        uv_timer_start(&c->beat, on_beat, every, every);
    }
    c->epoch = (c->epoch + 1) & EPOCH_MASK;
    c->failures = 0;
    mh_backoff_reset(&c->backoff);
    c->up = 1;
    return NULL;
}

static void connect_now(mh_amqp_conn_t *c)
{
    uint64_t t0 = mh_mono_us();
    const char *why = setup(c);
    if (!why)
        why = go_up(c);
    double ms = (double)(mh_mono_us() - t0) / 1000.0;
    if (why) {
        c->failures++;
        unsigned retry = schedule_retry(c);
        mh_warn("amqp_connect_failed", "host=%s port=%d attempt=%u ms=%.1f retry_ms=%u err=\"%s\"",
                c->ci.host, c->ci.port, c->failures, ms, retry, why);
        return;
    }
    mh_info("amqp_connected", "host=%s port=%d instance=%s ms=%.1f heartbeat_s=%d epoch=%" PRIu32,
            c->ci.host, c->ci.port, c->name, ms, c->heartbeat_s, c->epoch);
    c->hooks->up(c->ud);
    if (!c->closing && c->up) /* deliveries may have been queued during setup */
        uv_idle_start(&c->more, on_more);
}

/* ---- incoming frames ---- */

static const char *server_closed(mh_amqp_conn_t *c, amqp_method_t *m, amqp_channel_t ch)
{
    amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION, .reply = *m};
    rpc_error(c, r, ch ? "channel" : "connection");
    if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_connection_close_ok_t ok = {0};
        amqp_send_method(c->amqp, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok); /* best effort */
    }
    return c->err;
}

static void set_blocked(mh_amqp_conn_t *c, int blocked, amqp_bytes_t reason)
{
    c->blocked = blocked;
    if (blocked)
        mh_warn("amqp_blocked",
                "instance=%s reason=\"%.*s\" msg=\"publishes fail until unblocked\"", c->name,
                (int)reason.len, (char *)reason.bytes);
    else
        mh_info("amqp_unblocked", "instance=%s", c->name);
}

/* Connection-level methods here, the owner's frames to its hook; NULL or why to drop. */
static const char *on_frame(mh_amqp_conn_t *c, amqp_frame_t *f)
{
    if (f->frame_type == AMQP_FRAME_METHOD) {
        amqp_method_t *m = &f->payload.method;
        switch (m->id) {
        case AMQP_CONNECTION_BLOCKED_METHOD:
            set_blocked(c, 1, ((amqp_connection_blocked_t *)m->decoded)->reason);
            return NULL;
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            set_blocked(c, 0, amqp_empty_bytes);
            return NULL;
        case AMQP_CONNECTION_CLOSE_METHOD:
        case AMQP_CHANNEL_CLOSE_METHOD:
            return server_closed(c, m, f->channel);
        default:
            break;
        }
    } else if (f->frame_type != AMQP_FRAME_HEADER && f->frame_type != AMQP_FRAME_BODY) {
        return NULL; /* heartbeats are consumed by rabbitmq-c */
    }
    return c->hooks->frame(c->ud, f);
}

/*
 * Reads every complete frame available without blocking: queued by an RPC,
 * already in rabbitmq-c's buffer, or readable on the socket.
 */
static void drain(mh_amqp_conn_t *c)
{
    uv_idle_stop(&c->more);
    if (c->closing || !c->amqp)
        return;
    if (c->broken) {
        conn_lost(c, c->err);
        return;
    }
    for (int n = 0; n < DRAIN_BUDGET; n++) {
        amqp_frame_t f;
        struct timeval zero = {0, 0};
        int rc = amqp_simple_wait_frame_noblock(c->amqp, &f, &zero);
        if (rc == AMQP_STATUS_TIMEOUT)
            return;
        if (rc != AMQP_STATUS_OK) {
            snprintf(c->err, sizeof(c->err), "read: %s", amqp_error_string2(rc));
            conn_lost(c, c->err);
            return;
        }
        c->last_rx_ms = now_ms();
        const char *why = on_frame(c, &f);
        if (c->closing)
            return;
        if (why || c->broken) {
            conn_lost(c, why ? why : c->err);
            return;
        }
        amqp_maybe_release_buffers_on_channel(c->amqp, f.channel);
    }
    uv_idle_start(&c->more, on_more); /* budget spent: go on next turn */
}

/* Next loop turn after a publish, a spent drain budget or a failed send. */
static void on_more(uv_idle_t *h)
{
    drain(h->data);
}

void mh_amqp_conn_drain_soon(mh_amqp_conn_t *c)
{
    uv_idle_start(&c->more, on_more);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    mh_amqp_conn_t *c = h->data;
    if (status < 0) {
        snprintf(c->err, sizeof(c->err), "poll: %s", uv_strerror(status));
        conn_lost(c, c->err);
        return;
    }
    c->last_rx_ms = now_ms();
    drain(c);
}

/* True if bytes from the server wait to be read (the loop may have been busy). */
static int rx_pending(mh_amqp_conn_t *c)
{
    struct pollfd p = {.fd = amqp_get_sockfd(c->amqp), .events = POLLIN};
    return amqp_data_in_buffer(c->amqp) || poll(&p, 1, 0) > 0;
}

/* Every half heartbeat interval: sends one, and gives up on a silent server. */
static void on_beat(uv_timer_t *t)
{
    mh_amqp_conn_t *c = t->data;
    if (rx_pending(c))
        c->last_rx_ms = now_ms();
    if (now_ms() - c->last_rx_ms > (uint64_t)c->heartbeat_s * 2000) {
        snprintf(c->err, sizeof(c->err), "no frame from the server for %d s", 2 * c->heartbeat_s);
        conn_lost(c, c->err);
        return;
    }
    amqp_frame_t hb = {.frame_type = AMQP_FRAME_HEARTBEAT, .channel = 0};
    int rc = amqp_send_frame(c->amqp, &hb);
    if (rc != AMQP_STATUS_OK) {
        snprintf(c->err, sizeof(c->err), "heartbeat: %s", amqp_error_string2(rc));
        conn_lost(c, c->err);
    }
}

/* ---- lifetime ---- */

static int parse_url(mh_amqp_conn_t *c, const char *url, char *err, size_t errlen)
{
    c->url = mh_xstrdup(url);
    amqp_default_connection_info(&c->ci);
    int rc = amqp_parse_url(c->url, &c->ci);
    if (rc != AMQP_STATUS_OK || c->ci.ssl) {
        snprintf(err, errlen, "bad AMQP URL (amqp://user:pass@host:port/vhost): %s",
                 rc ? amqp_error_string2(rc) : "amqps is not supported");
        return -1;
    }
    if (!*c->ci.vhost) /* "amqp://host/" means the default vhost, as most clients read it */
        c->ci.vhost = "/";
    return 0;
}

static void conn_destroy(mh_amqp_conn_t *c)
{
    free(c->url);
    free(c->name);
    free(c);
}

/* Seeds the jitter and the first epoch: another connection object's tags differ too. */
static void seed(mh_amqp_conn_t *c)
{
    uint64_t z = mh_mono_us() ^ (uint64_t)(uintptr_t)c ^ ((uint64_t)mh_now_ms() << 20);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u; /* splitmix64 finaliser */
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    z = (z ^ (z >> 31)) | 1;
    mh_backoff_init(&c->backoff, BACKOFF_MIN_MS, BACKOFF_MAX_MS, z);
    c->epoch = (uint32_t)(z >> 20) & EPOCH_MASK;
}

mh_amqp_conn_t *mh_amqp_conn_new(struct uv_loop_s *loop, const char *url, const char *name,
                                 const mh_amqp_conn_hooks_t *hooks, void *ud, char *err,
                                 size_t errlen)
{
    mh_amqp_conn_t *c = mh_xcalloc(1, sizeof(*c));
    if (parse_url(c, url, err, errlen) != 0)
        goto fail;
    c->name = mh_xstrdup(name);
    c->hooks = hooks;
    c->ud = ud;
    c->loop = loop;
    seed(c);
    uv_timer_init(loop, &c->retry);
    uv_timer_init(loop, &c->beat);
    uv_idle_init(loop, &c->more);
    c->retry.data = c->beat.data = c->more.data = c;
    c->handles_open = 3;
    uv_timer_start(&c->retry, on_retry, 0, 0); /* connect on the loop, not in here */
    return c;
fail:
    conn_destroy(c);
    return NULL;
}

static void on_handle_closed(uv_handle_t *h)
{
    mh_amqp_conn_t *c = h->data;
    if (--c->handles_open > 0)
        return;
    mh_amqp_conn_freed_fn on_freed = c->on_freed;
    void *arg = c->freed_arg;
    conn_destroy(c);
    if (on_freed)
        on_freed(arg);
}

void mh_amqp_conn_free(mh_amqp_conn_t *c, mh_amqp_conn_freed_fn on_freed, void *arg)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    c->on_freed = on_freed;
    c->freed_arg = arg;
    if (c->amqp && c->up && !c->broken) {
        struct timeval tv = tv_ms(CLOSE_TIMEOUT_MS);
        amqp_set_rpc_timeout(c->amqp, &tv);
        amqp_connection_close(c->amqp, AMQP_REPLY_SUCCESS); /* best effort */
    }
    drop_conn(c);
    uv_timer_stop(&c->retry);
    uv_close((uv_handle_t *)&c->retry, on_handle_closed);
    uv_close((uv_handle_t *)&c->beat, on_handle_closed);
    uv_close((uv_handle_t *)&c->more, on_handle_closed);
}

int mh_amqp_conn_up(const mh_amqp_conn_t *c)
{
    return c && c->up && !c->broken && !c->closing;
}

int mh_amqp_conn_blocked(const mh_amqp_conn_t *c)
{
    return c && c->blocked;
}

uint32_t mh_amqp_conn_epoch(const mh_amqp_conn_t *c)
{
    return c->epoch;
}

amqp_connection_state_t mh_amqp_conn_state(const mh_amqp_conn_t *c)
{
    return c->amqp;
}
