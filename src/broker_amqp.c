/*
 * broker_amqp: the RabbitMQ adapter (rabbitmq-c 0.11) on the hub's libuv
 * loop. Contract, topology and confirm semantics: include/msghub/broker_amqp.h.
 *
 * One connection, two channels: CH_PUB in confirm mode for publishing,
 * CH_CONS consuming P.inst.I (consumer tag "inst") and P.stranded
 * ("stranded") with basic.qos prefetch and manual acks. The socket is
 * watched by a uv_poll_t (allocated per connection, freed in its close
 * callback); frames are read with amqp_simple_wait_frame_noblock() and a
 * zero timeout until it reports AMQP_STATUS_TIMEOUT, which covers frames
 * rabbitmq-c queued during an RPC and bytes already in its buffer (neither
 * makes the fd readable). A drain reads at most DRAIN_BUDGET frames and
 * continues on the next loop turn through a uv_idle_t.
 *
 * Blocking, on purpose: connection setup (TCP connect, login, declarations,
 * consumers) runs on the loop as blocking calls, each bounded by
 * SETUP_TIMEOUT_MS. Measured on the loop: a refused port fails in 0.1-0.3 ms,
 * a healthy local RabbitMQ is connected, declared and consuming in 3-9 ms.
 * The cost is a server that accepts TCP but does not answer (or a host that
 * drops SYNs): each attempt then stalls the loop for SETUP_TIMEOUT_MS, one
 * attempt per backoff period (at most every 5 s). Moving the TCP connect to
 * uv_tcp/uv_getaddrinfo and handing the fd to amqp_tcp_socket_set_sockfd()
 * would remove the connect part of that if it matters.
 * Sends (publish, ack, heartbeat) go through rabbitmq-c, which writes the
 * whole frame and waits in poll() if the kernel send buffer is full; frames
 * are small next to that buffer and RabbitMQ reads continuously, so this
 * does not stall the loop in practice. The one case where RabbitMQ stops
 * reading (connection.blocked on a memory or disk alarm) is announced to
 * us, and publishes then fail with MH_EIO instead of being written.
 *
 * Publishes are tracked by delivery tag (1, 2, ... per connection) in a
 * ring. Each publish carries its tag as message_id, so a basic.return
 * (which RabbitMQ sends before the basic.ack of the same publish, possibly
 * inside a multiple ack) marks exactly that publish as MH_ENOENT.
 * Delivery tags handed to on_delivery carry the connection's epoch in the
 * top 24 bits, so acks of deliveries from an earlier connection are
 * recognised and ignored.
 *
 * Heartbeats: 10 s negotiated; a timer every 5 s sends one and declares the
 * server dead when nothing arrived for 2 intervals (rabbitmq-c's own check
 * never fires with zero-timeout reads).
 *
 * Callbacks: publish callbacks, on_delivery and on_state run from loop
 * callbacks (poll, timers, idle); the only exception is a publish while
 * down, whose callback runs at once, inside mh_broker_publish. The drain
 * "after every publish" is therefore on the next loop turn (uv_idle), so a
 * burst of publishes costs one drain and no callback re-enters the caller.
 * Errors met while sending inside mh_broker_publish / mh_broker_ack are
 * handled on the next loop turn. mh_broker_free may be called from any
 * callback: the struct is released in the close callbacks of its handles.
 */
#include "msghub/broker_amqp.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>

#include "msghub/log.h"
#include "msghub/util.h"

enum { CH_PUB = 1, CH_CONS = 2 };

#define SETUP_TIMEOUT_MS 2000
#define CLOSE_TIMEOUT_MS 500
#define HEARTBEAT_S 10
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define DRAIN_BUDGET 256
#define MAX_BODY ((uint64_t)64 << 20)
#define TAG_BITS 40
#define TAG_MASK (((uint64_t)1 << TAG_BITS) - 1)
#define EPOCH_MASK 0xffffffu
#define NAME_MAX_LEN 255
#define STRANDED_TAG "stranded"

typedef struct pending {
    mh_broker_publish_cb cb;
    void *ud;
    int returned;  /* came back with basic.return */
    int confirmed; /* acked or nacked, waiting for earlier publishes */
    int status;    /* when confirmed */
} pending_t;

typedef enum { C_IDLE = 0, C_HEADER, C_BODY } content_state_t;

/* The header and body frames of one message being read on a channel. */
typedef struct content {
    content_state_t state;
    int discard;
    uint64_t size, got;
    unsigned char *body;
    uint64_t tag; /* delivery tag from basic.deliver */
    int stranded;
} content_t;

struct mh_broker {
    uv_loop_t *loop;
    char *url;                      /* copy that amqp_parse_url cut up */
    struct amqp_connection_info ci; /* points into url */
    char *q_inst, *q_stranded, *x_dlx, *rk_prefix, *instance;
    uint32_t msg_ttl_ms, queue_expiry_ms, stranded_expiry_ms;
    uint16_t prefetch;
    mh_broker_state_fn on_state;
    mh_broker_delivery_fn on_delivery;
    void *ud;

    amqp_connection_state_t conn; /* NULL while down */
    uv_poll_t *poll;
    uv_timer_t retry, beat;
    uv_idle_t more; /* continue a drain or handle a send error next turn */
    int handles_open;
    int up, closing, blocked, broken;
    uint32_t epoch;
    unsigned attempt;  /* retries scheduled since the last success (backoff) */
    unsigned failures; /* connect attempts failed since the last success (logs) */
    uint64_t rng;
    int heartbeat_s;
    uint64_t last_rx_ms;
    char err[256];

    pending_t *ring; /* ring[(head + i) % cap] holds tag head_tag + i */
    size_t head, len, cap;
    uint64_t head_tag;
    content_t pub_in, cons_in;
};

static void on_more(uv_idle_t *h);
static void connect_now(mh_broker_t *b);

static uint64_t now_ms(void)
{
    return mh_mono_us() / 1000;
}

static struct timeval tv_ms(unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = mh_xmalloc(la + lb + 1);
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

static int bytes_eq(amqp_bytes_t x, const char *s)
{
    return x.len == strlen(s) && memcmp(x.bytes, s, x.len) == 0;
}

/* ---- the ring of publishes awaiting a confirm ---- */

static pending_t *ring_at(mh_broker_t *b, uint64_t tag)
{
    if (tag < b->head_tag || tag - b->head_tag >= b->len)
        return NULL;
    return &b->ring[(b->head + (size_t)(tag - b->head_tag)) % b->cap];
}

static void ring_push(mh_broker_t *b, mh_broker_publish_cb cb, void *ud)
{
    if (b->len == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        pending_t *r = mh_xmalloc(cap * sizeof(*r));
        for (size_t i = 0; i < b->len; i++)
            r[i] = b->ring[(b->head + i) % b->cap];
        free(b->ring);
        b->ring = r;
        b->cap = cap;
        b->head = 0;
    }
    b->ring[(b->head + b->len) % b->cap] = (pending_t){cb, ud, 0, 0, 0};
    b->len++;
}

static pending_t ring_pop(mh_broker_t *b)
{
    pending_t p = b->ring[b->head];
    b->head = (b->head + 1) % b->cap;
    b->len--;
    b->head_tag++;
    return p;
}

static void settle(mh_broker_t *b, pending_t p, int status)
{
    if (status == 0 && p.returned)
        status = MH_ENOENT;
    p.cb(p.ud, status);
}

/* Settles every pending publish: with its confirm if it had one, else status. */
static void fail_pending(mh_broker_t *b, int status)
{
    while (b->len) {
        pending_t p = ring_pop(b);
        settle(b, p, p.confirmed ? p.status : status);
    }
}

/*
 * basic.ack / basic.nack for tag (and every earlier one if multiple).
 * Callbacks run in publish order: a publish confirmed before an earlier one
 * (RabbitMQ confirms an unroutable message at once) waits for it.
 */
static void confirm(mh_broker_t *b, uint64_t tag, int multiple, int status)
{
    pending_t *p = multiple ? NULL : ring_at(b, tag);
    if (p && !p->confirmed) {
        p->confirmed = 1;
        p->status = status;
    }
    while (b->len) {
        pending_t *head = &b->ring[b->head];
        if (!head->confirmed && !(multiple && b->head_tag <= tag))
            break;
        pending_t q = ring_pop(b);
        settle(b, q, q.confirmed ? q.status : status);
        if (b->closing)
            return;
    }
}

/* basic.return: the publish named by message_id comes back unroutable. */
static void mark_returned(mh_broker_t *b, const amqp_basic_properties_t *props)
{
    pending_t *p = NULL;
    if (props && (props->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) && props->message_id.len < 24) {
        char id[24];
        memcpy(id, props->message_id.bytes, props->message_id.len);
        id[props->message_id.len] = '\0';
        p = ring_at(b, strtoull(id, NULL, 10));
    }
    for (size_t i = 0; !p && i < b->len; i++) { /* no id: the oldest unconfirmed */
        pending_t *q = &b->ring[(b->head + i) % b->cap];
        if (!q->confirmed && !q->returned)
            p = q;
    }
    if (p)
        p->returned = 1;
}

/* ---- connection teardown and reconnection ---- */

static void free_on_close(uv_handle_t *h)
{
    free(h);
}

static void content_reset(content_t *c)
{
    free(c->body);
    memset(c, 0, sizeof(*c));
}

/* Closes the socket (no AMQP close handshake) and drops per-connection state. */
static void drop_conn(mh_broker_t *b)
{
    if (b->poll) {
        uv_poll_stop(b->poll);
        uv_close((uv_handle_t *)b->poll, free_on_close);
        b->poll = NULL;
    }
    if (b->conn) {
        amqp_destroy_connection(b->conn);
        b->conn = NULL;
    }
    content_reset(&b->pub_in);
    content_reset(&b->cons_in);
    b->up = b->broken = b->blocked = 0;
    uv_timer_stop(&b->beat);
    uv_idle_stop(&b->more);
}

static unsigned backoff_ms(mh_broker_t *b)
{
    unsigned shift = b->attempt < 6 ? b->attempt : 6;
    unsigned base = BACKOFF_MIN_MS << shift;
    if (base > BACKOFF_MAX_MS)
        base = BACKOFF_MAX_MS;
    b->attempt++;
    b->rng ^= b->rng << 13; /* xorshift64 */
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    double jitter = 0.8 + 0.4 * (double)(b->rng % 10001) / 10000.0; /* +-20 % */
    return (unsigned)(base * jitter);
}

static void on_retry(uv_timer_t *t)
{
    connect_now(t->data);
}

static unsigned schedule_retry(mh_broker_t *b)
{
    unsigned ms = backoff_ms(b);
    uv_timer_start(&b->retry, on_retry, ms, 0);
    return ms;
}

/* The connection failed after setup: fail pending publishes, report, retry. */
static void conn_lost(mh_broker_t *b, const char *why)
{
    if (!b->conn)
        return;
    int was_up = b->up;
    drop_conn(b);
    mh_warn("amqp_connection_lost", "instance=%s pending=%zu err=\"%s\"", b->instance, b->len, why);
    fail_pending(b, MH_EIO);
    if (b->closing)
        return;
    if (was_up && b->on_state)
        b->on_state(b->ud, 0);
    if (b->closing)
        return;
    b->attempt = 0;
    schedule_retry(b);
}

/* A send failed inside an API call: tear down on the next loop turn. */
static void mark_broken(mh_broker_t *b, const char *what, int status)
{
    if (b->broken)
        return;
    b->broken = 1;
    snprintf(b->err, sizeof(b->err), "%s: %s", what, amqp_error_string2(status));
    uv_idle_start(&b->more, on_more);
}

/* ---- connection setup (blocking, bounded by SETUP_TIMEOUT_MS per step) ---- */

/* Text for the last RPC's failure, in b->err; NULL if it succeeded. */
static const char *rpc_error(mh_broker_t *b, amqp_rpc_reply_t r, const char *what)
{
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return NULL;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        snprintf(b->err, sizeof(b->err), "%s: %s", what, amqp_error_string2(r.library_error));
    } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
               r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_connection_close_t *c = r.reply.decoded;
        snprintf(b->err, sizeof(b->err), "%s: connection closed by server: %u %.*s", what,
                 c->reply_code, (int)c->reply_text.len, (char *)c->reply_text.bytes);
    } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
               r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_t *c = r.reply.decoded;
        snprintf(b->err, sizeof(b->err), "%s: channel closed by server: %u %.*s", what,
                 c->reply_code, (int)c->reply_text.len, (char *)c->reply_text.bytes);
    } else {
        snprintf(b->err, sizeof(b->err), "%s: unexpected reply", what);
    }
    return b->err;
}

static const char *last_rpc(mh_broker_t *b, const char *what)
{
    return rpc_error(b, amqp_get_rpc_reply(b->conn), what);
}

static const char *open_socket(mh_broker_t *b)
{
    amqp_socket_t *s = amqp_tcp_socket_new(b->conn);
    if (!s)
        return "tcp socket: out of memory";
    struct timeval tv = tv_ms(SETUP_TIMEOUT_MS);
    int rc = amqp_socket_open_noblock(s, b->ci.host, b->ci.port, &tv);
    if (rc != AMQP_STATUS_OK) {
        snprintf(b->err, sizeof(b->err), "connect: %s", amqp_error_string2(rc));
        return b->err;
    }
    amqp_set_handshake_timeout(b->conn, &tv);
    amqp_set_rpc_timeout(b->conn, &tv);
    return NULL;
}

static amqp_table_entry_t bool_entry(const char *key)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    e.value.value.boolean = 1;
    return e;
}

static const char *login(mh_broker_t *b)
{
    /* connection.blocked: RabbitMQ tells us before it stops reading. */
    amqp_table_entry_t caps[] = {bool_entry("connection.blocked"),
                                 bool_entry("consumer_cancel_notify")};
    amqp_table_entry_t props[2] = {{.key = amqp_cstring_bytes("capabilities")},
                                   {.key = amqp_cstring_bytes("connection_name")}};
    props[0].value.kind = AMQP_FIELD_KIND_TABLE;
    props[0].value.value.table = (amqp_table_t){2, caps};
    props[1].value.kind = AMQP_FIELD_KIND_UTF8;
    props[1].value.value.bytes = amqp_cstring_bytes(b->instance);
    amqp_table_t table = {2, props};
    amqp_rpc_reply_t r =
        amqp_login_with_properties(b->conn, b->ci.vhost, 0, AMQP_DEFAULT_FRAME_SIZE, HEARTBEAT_S,
                                   &table, AMQP_SASL_METHOD_PLAIN, b->ci.user, b->ci.password);
    return rpc_error(b, r, "login");
}

static const char *open_channels(mh_broker_t *b)
{
    if (!amqp_channel_open(b->conn, CH_PUB))
        return last_rpc(b, "channel.open");
    if (!amqp_channel_open(b->conn, CH_CONS))
        return last_rpc(b, "channel.open");
    amqp_confirm_select_t req = {.nowait = 0};
    if (!amqp_simple_rpc_decoded(b->conn, CH_PUB, AMQP_CONFIRM_SELECT_METHOD,
                                 AMQP_CONFIRM_SELECT_OK_METHOD, &req))
        return last_rpc(b, "confirm.select");
    return NULL;
}

static amqp_table_entry_t i64_entry(const char *key, int64_t v)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = v;
    return e;
}

static const char *declare_topology(mh_broker_t *b)
{
    amqp_connection_state_t c = b->conn;
    if (!amqp_exchange_declare(c, CH_CONS, amqp_cstring_bytes(b->x_dlx),
                               amqp_cstring_bytes("fanout"), 0, 1, 0, 0, amqp_empty_table))
        return last_rpc(b, "exchange.declare dlx");
    /* the shared queue goes too once no instance has used it for that long */
    amqp_table_entry_t sargs[1] = {i64_entry("x-expires", b->stranded_expiry_ms)};
    amqp_table_t stable = {b->stranded_expiry_ms ? 1 : 0, sargs};
    if (!amqp_queue_declare(c, CH_CONS, amqp_cstring_bytes(b->q_stranded), 0, 1, 0, 0, stable))
        return last_rpc(b, "queue.declare stranded");
    if (!amqp_queue_bind(c, CH_CONS, amqp_cstring_bytes(b->q_stranded),
                         amqp_cstring_bytes(b->x_dlx), amqp_empty_bytes, amqp_empty_table))
        return last_rpc(b, "queue.bind stranded");
    amqp_table_entry_t args[3] = {i64_entry("x-message-ttl", b->msg_ttl_ms),
                                  i64_entry("x-expires", b->queue_expiry_ms),
                                  {.key = amqp_cstring_bytes("x-dead-letter-exchange")}};
    args[2].value.kind = AMQP_FIELD_KIND_UTF8;
    args[2].value.value.bytes = amqp_cstring_bytes(b->x_dlx);
    if (!amqp_queue_declare(c, CH_CONS, amqp_cstring_bytes(b->q_inst), 0, 1, 0, 0,
                            (amqp_table_t){3, args}))
        return last_rpc(b, "queue.declare instance");
    return NULL;
}

static const char *start_consumers(mh_broker_t *b)
{
    amqp_connection_state_t c = b->conn;
    if (!amqp_basic_qos(c, CH_CONS, 0, b->prefetch, 0))
        return last_rpc(b, "basic.qos");
    if (!amqp_basic_consume(c, CH_CONS, amqp_cstring_bytes(b->q_inst), amqp_cstring_bytes("inst"),
                            0, 0, 0, amqp_empty_table))
        return last_rpc(b, "basic.consume instance");
    if (!amqp_basic_consume(c, CH_CONS, amqp_cstring_bytes(b->q_stranded),
                            amqp_cstring_bytes(STRANDED_TAG), 0, 0, 0, amqp_empty_table))
        return last_rpc(b, "basic.consume stranded");
    return NULL;
}

/* Connects, declares, consumes; NULL on success, else why (conn destroyed). */
static const char *setup(mh_broker_t *b)
{
    b->conn = amqp_new_connection();
    if (!b->conn)
        return "out of memory";
    const char *why = open_socket(b);
    if (!why)
        why = login(b);
    if (!why)
        why = open_channels(b);
    if (!why)
        why = declare_topology(b);
    if (!why)
        why = start_consumers(b);
    if (why) {
        amqp_destroy_connection(b->conn);
        b->conn = NULL;
    }
    return why;
}

static void on_poll(uv_poll_t *h, int status, int events);
static void on_beat(uv_timer_t *t);

/* Starts watching the socket and the heartbeat; NULL or why not. */
static const char *go_up(mh_broker_t *b)
{
    amqp_maybe_release_buffers(b->conn);
    b->poll = mh_xmalloc(sizeof(*b->poll));
    int rc = uv_poll_init_socket(b->loop, b->poll, amqp_get_sockfd(b->conn));
    if (rc != 0) {
        free(b->poll);
        b->poll = NULL;
        amqp_destroy_connection(b->conn);
        b->conn = NULL;
        snprintf(b->err, sizeof(b->err), "uv_poll_init: %s", uv_strerror(rc));
        return b->err;
    }
    b->poll->data = b;
    uv_poll_start(b->poll, UV_READABLE | UV_DISCONNECT, on_poll);
    b->heartbeat_s = amqp_get_heartbeat(b->conn);
    b->last_rx_ms = now_ms();
    if (b->heartbeat_s > 0) {
        uint64_t every = (uint64_t)b->heartbeat_s * 500;
        uv_timer_start(&b->beat, on_beat, every, every);
    }
    b->epoch = (b->epoch + 1) & EPOCH_MASK;
    b->head_tag = 1;
    b->attempt = b->failures = 0;
    b->up = 1;
    return NULL;
}

static void connect_now(mh_broker_t *b)
{
    uint64_t t0 = mh_mono_us();
    const char *why = setup(b);
    if (!why)
        why = go_up(b);
    double ms = (double)(mh_mono_us() - t0) / 1000.0;
    if (why) {
        b->failures++;
        unsigned retry = schedule_retry(b);
        mh_warn("amqp_connect_failed", "host=%s port=%d attempt=%u ms=%.1f retry_ms=%u err=\"%s\"",
                b->ci.host, b->ci.port, b->failures, ms, retry, why);
        return;
    }
    mh_info("amqp_connected", "host=%s port=%d instance=%s ms=%.1f heartbeat_s=%d epoch=%" PRIu32,
            b->ci.host, b->ci.port, b->instance, ms, b->heartbeat_s, b->epoch);
    if (b->on_state)
        b->on_state(b->ud, 1);
    if (!b->closing && b->up) /* deliveries may have been queued during setup */
        uv_idle_start(&b->more, on_more);
}

/* ---- incoming frames ---- */

static content_t *content_of(mh_broker_t *b, amqp_channel_t ch)
{
    return ch == CH_PUB ? &b->pub_in : ch == CH_CONS ? &b->cons_in : NULL;
}

static int protocol_error(mh_broker_t *b, const char *what, amqp_channel_t ch)
{
    snprintf(b->err, sizeof(b->err), "unexpected %s on channel %u", what, ch);
    return -1;
}

static int server_closed(mh_broker_t *b, amqp_method_t *m, amqp_channel_t ch)
{
    amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION, .reply = *m};
    rpc_error(b, r, ch ? "channel" : "connection");
    if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_connection_close_ok_t ok = {0};
        amqp_send_method(b->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok); /* best effort */
    }
    return -1;
}

static void set_blocked(mh_broker_t *b, int blocked, amqp_bytes_t reason)
{
    b->blocked = blocked;
    if (blocked)
        mh_warn("amqp_blocked",
                "instance=%s reason=\"%.*s\" msg=\"publishes fail until unblocked\"", b->instance,
                (int)reason.len, (char *)reason.bytes);
    else
        mh_info("amqp_unblocked", "instance=%s", b->instance);
}

static int on_content_method(mh_broker_t *b, amqp_channel_t ch, amqp_method_t *m)
{
    content_t *c = content_of(b, ch);
    if (!c || c->state != C_IDLE)
        return protocol_error(b, "content method", ch);
    if (m->id == AMQP_BASIC_DELIVER_METHOD) {
        amqp_basic_deliver_t *d = m->decoded;
        c->tag = d->delivery_tag;
        c->stranded = bytes_eq(d->consumer_tag, STRANDED_TAG);
    }
    c->state = C_HEADER;
    return 0;
}

/* Returns 0, or -1 with b->err set when the connection must go. */
static int on_method(mh_broker_t *b, amqp_channel_t ch, amqp_method_t *m)
{
    switch (m->id) {
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *a = m->decoded;
        confirm(b, a->delivery_tag, a->multiple, 0);
        return 0;
    }
    case AMQP_BASIC_NACK_METHOD: {
        amqp_basic_nack_t *n = m->decoded;
        confirm(b, n->delivery_tag, n->multiple, MH_EIO);
        return 0;
    }
    case AMQP_BASIC_RETURN_METHOD:
    case AMQP_BASIC_DELIVER_METHOD:
        return on_content_method(b, ch, m);
    case AMQP_CONNECTION_BLOCKED_METHOD:
        set_blocked(b, 1, ((amqp_connection_blocked_t *)m->decoded)->reason);
        return 0;
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        set_blocked(b, 0, amqp_empty_bytes);
        return 0;
    case AMQP_CONNECTION_CLOSE_METHOD:
    case AMQP_CHANNEL_CLOSE_METHOD:
        return server_closed(b, m, ch);
    case AMQP_BASIC_CANCEL_METHOD:
        snprintf(b->err, sizeof(b->err), "consumer cancelled by server (queue deleted?)");
        return -1;
    default:
        mh_debug("amqp_method_ignored", "channel=%u method=%s", ch, amqp_method_name(m->id));
        return 0;
    }
}

static void content_done(mh_broker_t *b, amqp_channel_t ch, content_t *c)
{
    c->state = C_IDLE;
    if (ch == CH_PUB)
        return; /* a returned message: its publish is already marked */
    if (c->discard) {
        mh_warn("amqp_delivery_too_large", "size=%" PRIu64 " max=%" PRIu64 " msg=\"rejected\"",
                c->size, MAX_BODY);
        int rc = amqp_basic_reject(b->conn, CH_CONS, c->tag, 0);
        if (rc != AMQP_STATUS_OK)
            mark_broken(b, "basic.reject", rc);
        return;
    }
    unsigned char *body = c->body;
    c->body = NULL;
    uint64_t tag = ((uint64_t)b->epoch << TAG_BITS) | (c->tag & TAG_MASK);
    b->on_delivery(b->ud, tag, c->stranded, body, (size_t)c->size);
    free(body);
}

static int on_header(mh_broker_t *b, amqp_channel_t ch, amqp_frame_t *f)
{
    content_t *c = content_of(b, ch);
    if (!c || c->state != C_HEADER)
        return protocol_error(b, "content header", ch);
    c->size = f->payload.properties.body_size;
    c->got = 0;
    c->discard = ch == CH_PUB || c->size > MAX_BODY;
    if (ch == CH_PUB)
        mark_returned(b, f->payload.properties.decoded);
    else if (!c->discard)
        c->body = mh_xmalloc((size_t)c->size + 1);
    c->state = C_BODY;
    if (c->size == 0)
        content_done(b, ch, c);
    return 0;
}

static int on_body(mh_broker_t *b, amqp_channel_t ch, amqp_frame_t *f)
{
    content_t *c = content_of(b, ch);
    amqp_bytes_t frag = f->payload.body_fragment;
    if (!c || c->state != C_BODY || frag.len > c->size - c->got)
        return protocol_error(b, "content body", ch);
    if (!c->discard)
        memcpy(c->body + c->got, frag.bytes, frag.len);
    c->got += frag.len;
    if (c->got == c->size)
        content_done(b, ch, c);
    return 0;
}

static int on_frame(mh_broker_t *b, amqp_frame_t *f)
{
    switch (f->frame_type) {
    case AMQP_FRAME_METHOD:
        return on_method(b, f->channel, &f->payload.method);
    case AMQP_FRAME_HEADER:
        return on_header(b, f->channel, f);
    case AMQP_FRAME_BODY:
        return on_body(b, f->channel, f);
    default:
        return 0; /* heartbeats are consumed by rabbitmq-c */
    }
}

/*
 * Reads every complete frame available without blocking: queued by an RPC,
 * already in rabbitmq-c's buffer, or readable on the socket.
 */
static void drain(mh_broker_t *b)
{
    uv_idle_stop(&b->more);
    if (b->closing || !b->conn)
        return;
    if (b->broken) {
        conn_lost(b, b->err);
        return;
    }
    for (int n = 0; n < DRAIN_BUDGET; n++) {
        amqp_frame_t f;
        struct timeval zero = {0, 0};
        int rc = amqp_simple_wait_frame_noblock(b->conn, &f, &zero);
        if (rc == AMQP_STATUS_TIMEOUT)
            return;
        if (rc != AMQP_STATUS_OK) {
            snprintf(b->err, sizeof(b->err), "read: %s", amqp_error_string2(rc));
            conn_lost(b, b->err);
            return;
        }
        b->last_rx_ms = now_ms();
        int r = on_frame(b, &f);
        if (b->closing)
            return;
        if (r < 0 || b->broken) {
            conn_lost(b, b->err);
            return;
        }
        amqp_maybe_release_buffers_on_channel(b->conn, f.channel);
    }
    uv_idle_start(&b->more, on_more); /* budget spent: go on next turn */
}

/* Next loop turn after a publish, a spent drain budget or a failed send. */
static void on_more(uv_idle_t *h)
{
    drain(h->data);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    mh_broker_t *b = h->data;
    if (status < 0) {
        snprintf(b->err, sizeof(b->err), "poll: %s", uv_strerror(status));
        conn_lost(b, b->err);
        return;
    }
    b->last_rx_ms = now_ms();
    drain(b);
}

/* True if bytes from the server wait to be read (the loop may have been busy). */
static int rx_pending(mh_broker_t *b)
{
    struct pollfd p = {.fd = amqp_get_sockfd(b->conn), .events = POLLIN};
    return amqp_data_in_buffer(b->conn) || poll(&p, 1, 0) > 0;
}

/* Every half heartbeat interval: sends one, and gives up on a silent server. */
static void on_beat(uv_timer_t *t)
{
    mh_broker_t *b = t->data;
    if (rx_pending(b))
        b->last_rx_ms = now_ms();
    if (now_ms() - b->last_rx_ms > (uint64_t)b->heartbeat_s * 2000) {
        snprintf(b->err, sizeof(b->err), "no frame from the server for %d s", 2 * b->heartbeat_s);
        conn_lost(b, b->err);
        return;
    }
    amqp_frame_t hb = {.frame_type = AMQP_FRAME_HEARTBEAT, .channel = 0};
    int rc = amqp_send_frame(b->conn, &hb);
    if (rc != AMQP_STATUS_OK) {
        snprintf(b->err, sizeof(b->err), "heartbeat: %s", amqp_error_string2(rc));
        conn_lost(b, b->err);
    }
}

/* ---- public API ---- */

static int parse_options(mh_broker_t *b, const mh_broker_options_t *o, char *err, size_t errlen)
{
    if (!o->url || !o->prefix || !*o->prefix || !o->instance_id || !*o->instance_id) {
        snprintf(err, errlen, "url, prefix and instance_id are required");
        return -1;
    }
    if (!o->on_delivery) {
        snprintf(err, errlen, "on_delivery is required");
        return -1;
    }
    if (strlen(o->prefix) + strlen(o->instance_id) + 6 > NAME_MAX_LEN) {
        snprintf(err, errlen, "prefix and instance id too long for a queue name");
        return -1;
    }
    b->url = mh_xstrdup(o->url);
    amqp_default_connection_info(&b->ci);
    int rc = amqp_parse_url(b->url, &b->ci);
    if (rc != AMQP_STATUS_OK || b->ci.ssl) {
        snprintf(err, errlen, "bad AMQP URL (amqp://user:pass@host:port/vhost): %s",
                 rc ? amqp_error_string2(rc) : "amqps is not supported");
        return -1;
    }
    if (!*b->ci.vhost) /* "amqp://host/" means the default vhost, as most clients read it */
        b->ci.vhost = "/";
    return 0;
}

static void init_names(mh_broker_t *b, const mh_broker_options_t *o)
{
    char *dot = join(o->prefix, ".");
    b->rk_prefix = join(dot, "inst.");
    b->q_inst = join(b->rk_prefix, o->instance_id);
    b->q_stranded = join(dot, "stranded");
    b->x_dlx = join(dot, "dlx");
    b->instance = mh_xstrdup(o->instance_id);
    free(dot);
    b->msg_ttl_ms = o->msg_ttl_ms ? o->msg_ttl_ms : 10000;
    b->queue_expiry_ms = o->queue_expiry_ms ? o->queue_expiry_ms : 60000;
    b->stranded_expiry_ms = o->stranded_expiry_ms;
    b->prefetch = o->prefetch ? o->prefetch : 256;
    b->on_state = o->on_state;
    b->on_delivery = o->on_delivery;
    b->ud = o->ud;
}

static void destroy(mh_broker_t *b)
{
    content_reset(&b->pub_in);
    content_reset(&b->cons_in);
    free(b->ring);
    free(b->url);
    free(b->rk_prefix);
    free(b->q_inst);
    free(b->q_stranded);
    free(b->x_dlx);
    free(b->instance);
    free(b);
}

mh_broker_t *mh_broker_new(uv_loop_t *loop, const mh_broker_options_t *opts, char *err,
                           size_t errlen)
{
    mh_broker_t *b = mh_xcalloc(1, sizeof(*b));
    if (parse_options(b, opts, err, errlen) != 0)
        goto fail;
    init_names(b, opts);
    b->loop = loop;
    uint64_t z = mh_mono_us() ^ (uint64_t)(uintptr_t)b ^ ((uint64_t)mh_now_ms() << 20);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u; /* splitmix64 finaliser */
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    b->rng = (z ^ (z >> 31)) | 1;
    b->epoch = (uint32_t)(b->rng >> 20) & EPOCH_MASK; /* tags of another broker object differ too */
    uv_timer_init(loop, &b->retry);
    uv_timer_init(loop, &b->beat);
    uv_idle_init(loop, &b->more);
    b->retry.data = b->beat.data = b->more.data = b;
    b->handles_open = 3;
    uv_timer_start(&b->retry, on_retry, 0, 0); /* connect on the loop, not in here */
    return b;
fail:
    destroy(b);
    return NULL;
}

static void on_handle_closed(uv_handle_t *h)
{
    mh_broker_t *b = h->data;
    if (--b->handles_open == 0)
        destroy(b);
}

void mh_broker_free(mh_broker_t *b)
{
    if (!b || b->closing)
        return;
    b->closing = 1;
    fail_pending(b, MH_EIO);
    if (b->conn && b->up && !b->broken) {
        struct timeval tv = tv_ms(CLOSE_TIMEOUT_MS);
        amqp_set_rpc_timeout(b->conn, &tv);
        amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS); /* best effort */
    }
    drop_conn(b);
    uv_timer_stop(&b->retry);
    uv_close((uv_handle_t *)&b->retry, on_handle_closed);
    uv_close((uv_handle_t *)&b->beat, on_handle_closed);
    uv_close((uv_handle_t *)&b->more, on_handle_closed);
}

int mh_broker_up(const mh_broker_t *b)
{
    return b && b->up && !b->broken && !b->closing;
}

void mh_broker_publish(mh_broker_t *b, const char *instance, const void *body, size_t len,
                       mh_broker_publish_cb cb, void *ud)
{
    if (!mh_broker_up(b) || b->blocked) {
        cb(ud, MH_EIO);
        return;
    }
    char rk[NAME_MAX_LEN + 1], id[24];
    int n = snprintf(rk, sizeof(rk), "%s%s", b->rk_prefix, instance);
    if (n < 0 || (size_t)n >= sizeof(rk)) {
        cb(ud, MH_ENOENT); /* no queue can have that name */
        return;
    }
    snprintf(id, sizeof(id), "%" PRIu64, b->head_tag + b->len);
    amqp_basic_properties_t props = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                  AMQP_BASIC_MESSAGE_ID_FLAG,
        .content_type = amqp_cstring_bytes("application/octet-stream"),
        .delivery_mode = 2,
        .message_id = amqp_cstring_bytes(id),
    };
    ring_push(b, cb, ud);
    amqp_bytes_t data = {len, (void *)body};
    int rc = amqp_basic_publish(b->conn, CH_PUB, amqp_empty_bytes, amqp_cstring_bytes(rk), 1, 0,
                                &props, data);
    if (rc != AMQP_STATUS_OK) {
        mark_broken(b, "publish", rc); /* its callback runs with the teardown */
        return;
    }
    uv_idle_start(&b->more, on_more); /* read confirms on the next turn */
}

void mh_broker_ack(mh_broker_t *b, uint64_t tag, int stranded)
{
    (void)stranded; /* both consumers share CH_CONS and its tag sequence */
    if (!mh_broker_up(b) || (tag >> TAG_BITS) != b->epoch)
        return;
    int rc = amqp_basic_ack(b->conn, CH_CONS, tag & TAG_MASK, 0);
    if (rc != AMQP_STATUS_OK)
        mark_broken(b, "basic.ack", rc);
}
