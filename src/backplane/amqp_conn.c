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
 * Connection setup (TCP connect, login, channels, confirm.select and
 * the owner's declarations and consumers in its setup hook) is blocking
 * rabbitmq-c code, each step bounded by SETUP_TIMEOUT_MS; it runs on a uv
 * worker thread (uv_queue_work), never on the loop, so a broker that
 * accepts TCP and then does not answer (frozen, SIGSTOPped) costs the loop
 * nothing. Ownership: while an attempt is in flight (c->job set), its
 * rabbitmq-c state and error text are the job's, touched only by the
 * worker; the loop keeps c->amqp NULL and neither reads nor writes the
 * job's fields until the after-work callback, which adopts the finished
 * state (uv_queue_work orders the two). The worker reads only what never
 * changes after _new() (the parsed URL, the name, the hooks). A _free()
 * during an attempt cancels it if it has not started, or lets it finish
 * and destroys its state; the memory waits for it like for a uv handle.
 * Sends (publish, ack, heartbeat, close) go through rabbitmq-c, which
 * writes the whole frame and waits in poll() with no deadline when the
 * kernel send buffer is full: a broker that stops reading (frozen,
 * connection.blocked) would stall the loop. Every send from the loop is
 * therefore preceded by mh_amqp_conn_would_block() (POLLOUT with a zero
 * timeout, and SIOCOUTQ against the send buffer) and is skipped or failed
 * when it says so.
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
#include <linux/sockios.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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
#define FRAME_OVERHEAD 512                  /* frame headers around a send's payload */
#define HEARTBEAT_BYTES 8
#define EPOCH_MASK ((1u << MH_AMQP_CONN_EPOCH_BITS) - 1)

/* One connection attempt: the worker's until its after-work callback runs. */
struct mh_amqp_setup {
    uv_work_t req;
    mh_amqp_conn_t *c;
    amqp_connection_state_t amqp;
    const char *why; /* NULL when connected and set up */
    uint64_t t0_us;
    char err[256];
};

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
    uv_idle_t more;       /* continue a drain or handle a send error next turn */
    mh_amqp_setup_t *job; /* the attempt in flight on a worker thread, or NULL */
    int handles_open;     /* uv handles, and the job, not yet finished */
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

/* ---- connection setup (worker thread; blocking, SETUP_TIMEOUT_MS per step) ---- */

/* Text for an RPC's failure, in err (256 bytes); NULL if it succeeded. */
static const char *rpc_error(char *err, amqp_rpc_reply_t r, const char *what)
{
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return NULL;
    const size_t errlen = 256;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        snprintf(err, errlen, "%s: %s", what, amqp_error_string2(r.library_error));
    } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
               r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_connection_close_t *m = r.reply.decoded;
        snprintf(err, errlen, "%s: connection closed by server: %u %.*s", what, m->reply_code,
                 (int)m->reply_text.len, (char *)m->reply_text.bytes);
    } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
               r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_t *m = r.reply.decoded;
        snprintf(err, errlen, "%s: channel closed by server: %u %.*s", what, m->reply_code,
                 (int)m->reply_text.len, (char *)m->reply_text.bytes);
    } else {
        snprintf(err, errlen, "%s: unexpected reply", what);
    }
    return err;
}

amqp_connection_state_t mh_amqp_setup_state(mh_amqp_setup_t *s)
{
    return s->amqp;
}

const char *mh_amqp_setup_rpc_error(mh_amqp_setup_t *s, const char *what)
{
    return rpc_error(s->err, amqp_get_rpc_reply(s->amqp), what);
}

static const char *open_socket(mh_amqp_setup_t *j)
{
    const mh_amqp_conn_t *c = j->c;
    amqp_socket_t *s = amqp_tcp_socket_new(j->amqp);
    if (!s)
        return "tcp socket: out of memory";
    struct timeval tv = tv_ms(SETUP_TIMEOUT_MS);
    int rc = amqp_socket_open_noblock(s, c->ci.host, c->ci.port, &tv);
    if (rc != AMQP_STATUS_OK) {
        snprintf(j->err, sizeof(j->err), "connect: %s", amqp_error_string2(rc));
        return j->err;
    }
    amqp_set_handshake_timeout(j->amqp, &tv);
    amqp_set_rpc_timeout(j->amqp, &tv);
    /* room for big publishes: the broker adapter sends only what fits without waiting */
    int sndbuf = SEND_BUFFER_BYTES;
    setsockopt(amqp_get_sockfd(j->amqp), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    return NULL;
}

static amqp_table_entry_t bool_entry(const char *key)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    e.value.value.boolean = 1;
    return e;
}

static const char *login(mh_amqp_setup_t *j)
{
    const mh_amqp_conn_t *c = j->c;
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
        amqp_login_with_properties(j->amqp, c->ci.vhost, 0, AMQP_DEFAULT_FRAME_SIZE, HEARTBEAT_S,
                                   &table, AMQP_SASL_METHOD_PLAIN, c->ci.user, c->ci.password);
    return rpc_error(j->err, r, "login");
}

static const char *open_channels(mh_amqp_setup_t *j)
{
    if (!amqp_channel_open(j->amqp, MH_AMQP_CONN_CH_PUB))
        return mh_amqp_setup_rpc_error(j, "channel.open");
    if (!amqp_channel_open(j->amqp, MH_AMQP_CONN_CH_CONS))
        return mh_amqp_setup_rpc_error(j, "channel.open");
    amqp_confirm_select_t req = {.nowait = 0};
    if (!amqp_simple_rpc_decoded(j->amqp, MH_AMQP_CONN_CH_PUB, AMQP_CONFIRM_SELECT_METHOD,
                                 AMQP_CONFIRM_SELECT_OK_METHOD, &req))
        return mh_amqp_setup_rpc_error(j, "confirm.select");
    return NULL;
}

/*
 * Worker thread: connects, logs in, opens the channels, runs the owner's
 * setup; j->why NULL, or why with the state destroyed.
 */
static void setup_work(uv_work_t *req)
{
    mh_amqp_setup_t *j = req->data;
    j->amqp = amqp_new_connection();
    if (!j->amqp) {
        j->why = "out of memory";
        return;
    }
    const char *why = open_socket(j);
    if (!why)
        why = login(j);
    if (!why)
        why = open_channels(j);
    if (!why)
        why = j->c->hooks->setup(j->c->ud, j);
    if (why) {
        amqp_destroy_connection(j->amqp);
        j->amqp = NULL;
    }
    j->why = why;
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

static void release(mh_amqp_conn_t *c);

/* Loop: the attempt failed (why) or is adopted and goes up. */
static void setup_finished(mh_amqp_conn_t *c, const char *why, double ms)
{
    if (!why)
        why = go_up(c);
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

/* Loop, after setup_work: the job's state becomes the connection's. */
static void setup_done(uv_work_t *req, int status)
{
    mh_amqp_setup_t *j = req->data;
    mh_amqp_conn_t *c = j->c;
    double ms = (double)(mh_mono_us() - j->t0_us) / 1000.0;
    c->job = NULL;
    if (status != 0 && !j->why)
        j->why = "cancelled";
    if (c->closing || j->why) {
        if (j->amqp)
            amqp_destroy_connection(j->amqp);
        if (j->why)
            snprintf(c->err, sizeof(c->err), "%s", j->why);
    } else {
        c->amqp = j->amqp;
    }
    int failed = j->why != NULL;
    free(j);
    if (!c->closing)
        setup_finished(c, failed ? c->err : NULL, ms);
    release(c); /* the job counted like a handle: _free() may be waiting for it */
}

/* Starts an attempt on a worker thread; the loop goes on meanwhile. */
static void connect_now(mh_amqp_conn_t *c)
{
    if (c->job || c->amqp || c->closing)
        return;
    mh_amqp_setup_t *j = mh_xcalloc(1, sizeof(*j));
    j->c = c;
    j->req.data = j;
    j->t0_us = mh_mono_us();
    int rc = uv_queue_work(c->loop, &j->req, setup_work, setup_done);
    if (rc != 0) {
        free(j);
        snprintf(c->err, sizeof(c->err), "uv_queue_work: %s", uv_strerror(rc));
        setup_finished(c, c->err, 0);
        return;
    }
    c->job = j;
    c->handles_open++;
}

/* ---- incoming frames ---- */

static const char *server_closed(mh_amqp_conn_t *c, amqp_method_t *m, amqp_channel_t ch)
{
    amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION, .reply = *m};
    rpc_error(c->err, r, ch ? "channel" : "connection");
    if (m->id == AMQP_CONNECTION_CLOSE_METHOD && !mh_amqp_conn_would_block(c, FRAME_OVERHEAD)) {
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

int mh_amqp_conn_buffered(const mh_amqp_conn_t *c)
{
    return c->amqp && (amqp_frames_enqueued(c->amqp) || amqp_data_in_buffer(c->amqp));
}

/*
 * Reads every complete frame available without blocking: queued by an RPC,
 * already in rabbitmq-c's buffer, or readable on the socket (one read; the
 * uv_poll watcher, level-triggered, calls again while more is there).
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
        if (n > 0 && !mh_amqp_conn_buffered(c))
            return; /* what the socket holds, the poll watcher reports: no recv to learn EAGAIN */
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
    if (mh_amqp_conn_would_block(c, HEARTBEAT_BYTES))
        return; /* the broker is not reading: it would not see it anyway */
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

/* A uv handle closed or the setup job finished: the last one frees the memory. */
static void release(mh_amqp_conn_t *c)
{
    if (--c->handles_open > 0)
        return;
    mh_amqp_conn_freed_fn on_freed = c->on_freed;
    void *arg = c->freed_arg;
    conn_destroy(c);
    if (on_freed)
        on_freed(arg);
}

static void on_handle_closed(uv_handle_t *h)
{
    release(h->data);
}

void mh_amqp_conn_free(mh_amqp_conn_t *c, mh_amqp_conn_freed_fn on_freed, void *arg)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    c->on_freed = on_freed;
    c->freed_arg = arg;
    if (c->job) /* not started yet: cancelled; running: its state is dropped when done */
        uv_cancel((uv_req_t *)&c->job->req);
    if (c->amqp && c->up && !c->broken && !mh_amqp_conn_would_block(c, FRAME_OVERHEAD)) {
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

/* Bytes written to the socket and not yet acknowledged by the peer; -1 if unknown. */
static int unsent_bytes(int fd, int *sndbuf)
{
    int unsent = 0;
    socklen_t sl = sizeof(*sndbuf);
    if (ioctl(fd, SIOCOUTQ, &unsent) < 0 || getsockopt(fd, SOL_SOCKET, SO_SNDBUF, sndbuf, &sl) < 0)
        return -1;
    return unsent;
}

int mh_amqp_conn_would_block(const mh_amqp_conn_t *c, size_t len)
{
    int fd = c && c->amqp ? amqp_get_sockfd(c->amqp) : -1;
    if (fd < 0)
        return 1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT))
        return 1;
    int sndbuf = 0, unsent = unsent_bytes(fd, &sndbuf);
    if (unsent < 0)
        return 0; /* writable, the kernel says no more */
    /* Linux reports twice the payload room in SO_SNDBUF */
    size_t half = (size_t)sndbuf / 2;
    size_t room = half > (size_t)unsent ? half - (size_t)unsent : 0;
    return unsent > MH_AMQP_CONN_MAX_UNSENT || (unsent > 0 && len + FRAME_OVERHEAD > room);
}
