/*
 * broker_amqp: the RabbitMQ adapter (rabbitmq-c 0.11) on the hub's libuv
 * loop. Contract, topology and confirm semantics: include/msghub/broker_amqp.h.
 *
 * The connection (URL, connect and login, the two channels and confirm
 * mode, the uv_poll watcher and the frame drain, heartbeats,
 * connection.blocked, reconnection with backoff) is amqp_conn's; its
 * blocking setup runs on a uv worker thread (amqp_conn.c). Here: the
 * topology and the consumers, declared from amqp_conn's setup hook on
 * every connect (on that thread: it reads only names and options);
 * publishes and their confirms and returns; deliveries and their acks,
 * from the frames amqp_conn hands to the frame hook.
 *
 * CH_PUB is in confirm mode, for publishing; CH_CONS consumes P.inst.I
 * (consumer tag "inst") with basic.qos prefetch and manual acks.
 *
 * Publishes are tracked by delivery tag (1, 2, ... per connection) in a
 * ring. Each publish carries its tag as message_id, so a basic.return
 * (which RabbitMQ sends before the basic.ack of the same publish, possibly
 * inside a multiple ack) marks exactly that publish as MH_ENOENT.
 * Delivery tags handed to on_delivery carry the connection's epoch in the
 * top 24 bits, so acks of deliveries from an earlier connection are
 * recognised and ignored.
 *
 * Callbacks: publish callbacks, on_delivery and on_state run from loop
 * callbacks (poll, timers, idle); the only exception is a publish while
 * down, whose callback runs at once, inside mh_broker_publish. Confirms
 * are read when they arrive (the connection's poll watcher), or on the
 * next loop turn (uv_idle) when rabbitmq-c already holds frames after a
 * publish: never inside mh_broker_publish, so no callback re-enters the
 * caller.
 * Errors met while sending inside mh_broker_publish / mh_broker_ack are
 * handled on the next loop turn.
 *
 * Ownership: the broker owns its connection, its names, the ring and the
 * content being read. mh_broker_free may be called from any callback: the
 * struct is released by the connection's on_freed hook, once its handles
 * are closed, so late callbacks still find it.
 */
#include "msghub/broker_amqp.h"

#include <amqp.h>
#include <inttypes.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "amqp_conn.h"
#include "msghub/log.h"
#include "msghub/util.h"

enum { CH_PUB = MH_AMQP_CONN_CH_PUB, CH_CONS = MH_AMQP_CONN_CH_CONS };

#define MAX_BODY ((uint64_t)64 << 20)
#define TAG_BITS (64 - MH_AMQP_CONN_EPOCH_BITS)
#define TAG_MASK (((uint64_t)1 << TAG_BITS) - 1)
#define NAME_MAX_LEN 255
#define PUSH_DELIVERY_MODE 1 /* AMQP transient: the logs, not the queue, keep messages */

/*
 * rabbitmq-c 0.11 sends with poll() and no deadline when the socket buffer
 * is full (a frozen broker): a publish or ack that would not fit now fails
 * at once instead (mh_amqp_conn_would_block()). A publish unconfirmed for
 * STALL_MS makes the broker stalled: /readyz 503, publishes fail fast until
 * the confirms come; one unconfirmed for CONFIRM_DEADLINE_MS drops the
 * connection (a new one is set up on a worker thread).
 */
#define STALL_MS 1500
#define CONFIRM_DEADLINE_MS 5000
#define ACK_BYTES 64
/*
 * Deliveries are acked in order, so one basic.ack with multiple covers all
 * before it: an ack waits up to ACK_DELAY_MS for later ones, or goes once
 * a quarter of the prefetch window waits. At 1,000 relays/s (one push
 * each) an ack per delivery was about a tenth of RabbitMQ's CPU
 * (docs/BENCHMARKS.md, eleventh session); the wait only keeps deliveries
 * unacked a little longer, redelivered if this connection drops first.
 */
#define ACK_DELAY_MS 20u
#define ACK_WINDOW_SHARE 4u

typedef struct pending {
    mh_broker_publish_fn cb;
    void *ud;
    int returned;  /* came back with basic.return */
    int confirmed; /* acked or nacked, waiting for earlier publishes */
    int status;    /* when confirmed */
    uint64_t sent_ms;
} pending_t;

typedef enum { C_IDLE = 0, C_HEADER, C_BODY } content_state_t;

/* The header and body frames of one message being read on a channel. */
typedef struct content {
    content_state_t state;
    int discard;
    uint64_t size, got;
    unsigned char *body;
    uint64_t tag; /* delivery tag from basic.deliver */
} content_t;

struct mh_broker {
    mh_amqp_conn_t *conn;
    char *q_inst, *rk_prefix, *instance;
    uint32_t msg_ttl_ms, queue_expiry_ms;
    uint16_t prefetch;
    mh_broker_state_fn on_state;
    mh_broker_delivery_fn on_delivery;
    void *ud;
    int closing;
    char err[64]; /* a protocol error, for the connection's log */

    pending_t *ring; /* ring[(head + i) % cap] holds tag head_tag + i */
    size_t head, len, cap;
    uint64_t head_tag;
    content_t pub_in, cons_in;
    uint64_t fast_fails;  /* publishes refused because the socket was full */
    uv_timer_t ack_timer; /* sends the waiting ack after ACK_DELAY_MS */
    uint64_t ack_tag;     /* the latest delivery acked by the hub, with its epoch */
    unsigned acks_due;    /* deliveries acked by the hub since the last basic.ack */
    uint64_t ack_frames;  /* basic.ack frames sent */
    int handles;          /* the connection and the timer, until both are closed */
};

static amqp_connection_state_t amqp(const mh_broker_t *b)
{
    return mh_amqp_conn_state(b->conn);
}

/* ---- the ring of publishes awaiting a confirm ---- */

static pending_t *ring_at(mh_broker_t *b, uint64_t tag)
{
    if (tag < b->head_tag || tag - b->head_tag >= b->len)
        return NULL;
    return &b->ring[(b->head + (size_t)(tag - b->head_tag)) % b->cap];
}

static void ring_push(mh_broker_t *b, mh_broker_publish_fn cb, void *ud)
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
    b->ring[(b->head + b->len) % b->cap] = (pending_t){cb, ud, 0, 0, 0, mh_now_ms()};
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

/* ---- the connection's hooks: topology, up, lost ---- */

static amqp_table_entry_t i64_entry(const char *key, int64_t v)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = v;
    return e;
}

static const char *declare_topology(const mh_broker_t *b, mh_amqp_setup_t *s)
{
    amqp_connection_state_t c = mh_amqp_setup_state(s);
    /* pushes are shortcuts (the log is the truth): a stale one is simply dropped */
    amqp_table_entry_t args[2] = {i64_entry("x-message-ttl", b->msg_ttl_ms),
                                  i64_entry("x-expires", b->queue_expiry_ms)};
    if (!amqp_queue_declare(c, CH_CONS, amqp_cstring_bytes(b->q_inst), 0, 1, 0, 0,
                            (amqp_table_t){2, args}))
        return mh_amqp_setup_rpc_error(s, "queue.declare instance");
    return NULL;
}

static const char *start_consumers(const mh_broker_t *b, mh_amqp_setup_t *s)
{
    amqp_connection_state_t c = mh_amqp_setup_state(s);
    if (!amqp_basic_qos(c, CH_CONS, 0, b->prefetch, 0))
        return mh_amqp_setup_rpc_error(s, "basic.qos");
    if (!amqp_basic_consume(c, CH_CONS, amqp_cstring_bytes(b->q_inst), amqp_cstring_bytes("inst"),
                            0, 0, 0, amqp_empty_table))
        return mh_amqp_setup_rpc_error(s, "basic.consume instance");
    return NULL;
}

/*
 * On every connect, after the channels: declares, consumes; NULL or why.
 * On amqp_conn's worker thread: reads only the names and options.
 */
static const char *hook_setup(void *ud, mh_amqp_setup_t *s)
{
    const mh_broker_t *b = ud;
    const char *why = declare_topology(b, s);
    if (!why)
        why = start_consumers(b, s);
    return why;
}

static void hook_up(void *ud)
{
    mh_broker_t *b = ud;
    b->head_tag = 1; /* delivery tags restart with the connection */
    b->acks_due = 0;
    if (b->on_state)
        b->on_state(b->ud, 1);
}

static void content_reset(content_t *c)
{
    free(c->body);
    memset(c, 0, sizeof(*c));
}

/* The connection dropped: fail pending publishes, report; it retries. */
static void hook_lost(void *ud, int was_up, const char *why)
{
    mh_broker_t *b = ud;
    content_reset(&b->pub_in);
    content_reset(&b->cons_in);
    mh_warn("amqp_connection_lost", "instance=%s pending=%zu err=\"%s\"", b->instance, b->len, why);
    b->acks_due = 0; /* RabbitMQ delivers them again on the next connection */
    uv_timer_stop(&b->ack_timer);
    fail_pending(b, MH_EIO);
    if (b->closing)
        return;
    if (was_up && b->on_state)
        b->on_state(b->ud, 0);
}

/* ---- incoming frames ---- */

static content_t *content_of(mh_broker_t *b, amqp_channel_t ch)
{
    return ch == CH_PUB ? &b->pub_in : ch == CH_CONS ? &b->cons_in : NULL;
}

static const char *protocol_error(mh_broker_t *b, const char *what, amqp_channel_t ch)
{
    snprintf(b->err, sizeof(b->err), "unexpected %s on channel %u", what, ch);
    return b->err;
}

static const char *on_content_method(mh_broker_t *b, amqp_channel_t ch, amqp_method_t *m)
{
    content_t *c = content_of(b, ch);
    if (!c || c->state != C_IDLE)
        return protocol_error(b, "content method", ch);
    if (m->id == AMQP_BASIC_DELIVER_METHOD) {
        amqp_basic_deliver_t *d = m->decoded;
        c->tag = d->delivery_tag;
    }
    c->state = C_HEADER;
    return NULL;
}

/* NULL, or why the connection must go. */
static const char *on_method(mh_broker_t *b, amqp_channel_t ch, amqp_method_t *m)
{
    switch (m->id) {
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *a = m->decoded;
        confirm(b, a->delivery_tag, a->multiple, 0);
        return NULL;
    }
    case AMQP_BASIC_NACK_METHOD: {
        amqp_basic_nack_t *n = m->decoded;
        confirm(b, n->delivery_tag, n->multiple, MH_EIO);
        return NULL;
    }
    case AMQP_BASIC_RETURN_METHOD:
    case AMQP_BASIC_DELIVER_METHOD:
        return on_content_method(b, ch, m);
    case AMQP_BASIC_CANCEL_METHOD:
        return "consumer cancelled by server (queue deleted?)";
    default:
        mh_debug("amqp_method_ignored", "channel=%u method=%s", ch, amqp_method_name(m->id));
        return NULL;
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
        int rc = mh_amqp_conn_would_block(b->conn, ACK_BYTES)
                     ? AMQP_STATUS_OK /* redelivered after a reconnect, rejected then */
                     : amqp_basic_reject(amqp(b), CH_CONS, c->tag, 0);
        if (rc != AMQP_STATUS_OK)
            mh_amqp_conn_broken(b->conn, "basic.reject", rc);
        return;
    }
    unsigned char *body = c->body;
    c->body = NULL;
    uint64_t tag = ((uint64_t)mh_amqp_conn_epoch(b->conn) << TAG_BITS) | (c->tag & TAG_MASK);
    b->on_delivery(b->ud, tag, body, (size_t)c->size);
    free(body);
}

static const char *on_header(mh_broker_t *b, amqp_channel_t ch, amqp_frame_t *f)
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
    return NULL;
}

static const char *on_body(mh_broker_t *b, amqp_channel_t ch, amqp_frame_t *f)
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
    return NULL;
}

static const char *hook_frame(void *ud, amqp_frame_t *f)
{
    mh_broker_t *b = ud;
    switch (f->frame_type) {
    case AMQP_FRAME_METHOD:
        return on_method(b, f->channel, &f->payload.method);
    case AMQP_FRAME_HEADER:
        return on_header(b, f->channel, f);
    case AMQP_FRAME_BODY:
        return on_body(b, f->channel, f);
    default:
        return NULL;
    }
}

static const mh_amqp_conn_hooks_t hooks = {
    .setup = hook_setup,
    .up = hook_up,
    .frame = hook_frame,
    .lost = hook_lost,
};

/* ---- public API ---- */

static int check_options(const mh_broker_options_t *o, char *err, size_t errlen)
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
    return 0;
}

static void init_names(mh_broker_t *b, const mh_broker_options_t *o)
{
    char *dot = mh_xstrcat(o->prefix, ".");
    b->rk_prefix = mh_xstrcat(dot, "inst.");
    b->q_inst = mh_xstrcat(b->rk_prefix, o->instance_id);
    b->instance = mh_xstrdup(o->instance_id);
    free(dot);
    b->msg_ttl_ms = o->msg_ttl_ms ? o->msg_ttl_ms : 10000;
    b->queue_expiry_ms = o->queue_expiry_ms ? o->queue_expiry_ms : 60000;
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
    free(b->rk_prefix);
    free(b->q_inst);
    free(b->instance);
    free(b);
}

/* The connection's on_freed hook and the timer's close callback: the last one frees b. */
static void handle_gone(mh_broker_t *b)
{
    if (--b->handles == 0)
        destroy(b);
}

static void on_conn_freed(void *arg)
{
    handle_gone(arg);
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_gone(h->data);
}

mh_broker_t *mh_broker_new(struct uv_loop_s *loop, const mh_broker_options_t *opts, char *err,
                           size_t errlen)
{
    mh_broker_t *b = mh_xcalloc(1, sizeof(*b));
    if (check_options(opts, err, errlen) != 0) {
        destroy(b);
        return NULL;
    }
    /* connects on the loop, not in here: the names are set before setup runs */
    b->conn = mh_amqp_conn_new(loop, opts->url, opts->instance_id, &hooks, b, err, errlen);
    if (!b->conn) {
        destroy(b);
        return NULL;
    }
    init_names(b, opts);
    uv_timer_init(loop, &b->ack_timer);
    b->ack_timer.data = b;
    b->handles = 2;
    return b;
}

static void send_acks(mh_broker_t *b);

void mh_broker_free(mh_broker_t *b)
{
    if (!b || b->closing)
        return;
    send_acks(b); /* so that a successor on this queue does not get them again */
    b->closing = 1;
    fail_pending(b, MH_EIO);
    uv_close((uv_handle_t *)&b->ack_timer, on_timer_closed);
    mh_amqp_conn_free(b->conn, on_conn_freed, b);
}

int mh_broker_up(const mh_broker_t *b)
{
    return b && !b->closing && mh_amqp_conn_up(b->conn);
}

/* The oldest publish has waited longer than ms for its confirm. */
static int unconfirmed_for(const mh_broker_t *b, uint64_t ms)
{
    return b->len && mh_now_ms() - b->ring[b->head].sent_ms > ms;
}

int mh_broker_stalled(const mh_broker_t *b)
{
    if (!b || !mh_broker_up(b))
        return 0;
    return unconfirmed_for(b, STALL_MS) || mh_amqp_conn_would_block(b->conn, 0);
}

/* Fails fast instead of blocking: down, blocked, stalled or no room in the socket. */
static int can_send(mh_broker_t *b, size_t len)
{
    if (!mh_broker_up(b) || mh_amqp_conn_blocked(b->conn))
        return 0;
    if (unconfirmed_for(b, CONFIRM_DEADLINE_MS)) {
        mh_amqp_conn_broken(b->conn, "confirm deadline", AMQP_STATUS_TIMEOUT);
        return 0;
    }
    if (unconfirmed_for(b, STALL_MS) || mh_amqp_conn_would_block(b->conn, len)) {
        b->fast_fails++;
        mh_debug("amqp_publish_would_block", "len=%zu fails=%" PRIu64, len, b->fast_fails);
        return 0;
    }
    return 1;
}

void mh_broker_publish(mh_broker_t *b, const char *instance, const void *body, size_t len,
                       mh_broker_publish_fn cb, void *ud)
{
    if (!can_send(b, len)) {
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
        .delivery_mode = PUSH_DELIVERY_MODE,
        .message_id = amqp_cstring_bytes(id),
    };
    ring_push(b, cb, ud);
    amqp_bytes_t data = {len, (void *)body};
    int rc = amqp_basic_publish(amqp(b), CH_PUB, amqp_empty_bytes, amqp_cstring_bytes(rk), 1, 0,
                                &props, data);
    if (rc != AMQP_STATUS_OK) {
        mh_amqp_conn_broken(b->conn, "publish", rc); /* its callback runs with the teardown */
        return;
    }
    if (mh_amqp_conn_buffered(b->conn))
        mh_amqp_conn_drain_soon(b->conn); /* frames rabbitmq-c took in: read them next turn */
    /* the confirm itself arrives on the socket: the connection's poll watcher reads it */
}

static void send_acks_cb(uv_timer_t *t);

/* The waiting ack, if any, as one basic.ack with multiple: now, or later if the socket is full. */
static void send_acks(mh_broker_t *b)
{
    uv_timer_stop(&b->ack_timer);
    if (!b->acks_due)
        return;
    if (!mh_broker_up(b) || (b->ack_tag >> TAG_BITS) != mh_amqp_conn_epoch(b->conn)) {
        b->acks_due = 0; /* that connection is gone: its deliveries come again */
        return;
    }
    if (mh_amqp_conn_would_block(b->conn, ACK_BYTES)) {
        uv_timer_start(&b->ack_timer, send_acks_cb, ACK_DELAY_MS, 0);
        return;
    }
    b->acks_due = 0;
    b->ack_frames++;
    int rc = amqp_basic_ack(amqp(b), CH_CONS, b->ack_tag & TAG_MASK, 1);
    if (rc != AMQP_STATUS_OK)
        mh_amqp_conn_broken(b->conn, "basic.ack", rc);
}

void mh_broker_ack(mh_broker_t *b, uint64_t tag)
{
    if (!mh_broker_up(b) || (tag >> TAG_BITS) != mh_amqp_conn_epoch(b->conn))
        return;
    b->ack_tag = tag;
    unsigned batch = b->prefetch / ACK_WINDOW_SHARE;
    if (++b->acks_due >= (batch ? batch : 1)) {
        send_acks(b);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&b->ack_timer))
        uv_timer_start(&b->ack_timer, send_acks_cb, ACK_DELAY_MS, 0);
}

static void send_acks_cb(uv_timer_t *t)
{
    send_acks(t->data);
}

uint64_t mh_broker_ack_frames(const mh_broker_t *b)
{
    return b ? b->ack_frames : 0;
}
