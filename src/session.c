/*
 * session: a connected client's queue, inbox flow, attach and close (see
 * session.h for the rules this file implements).
 */
#include "msghub/session.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "msghub/broker_amqp.h"
#include "msghub/log.h"
#include "msghub/redis_store.h"
#include "msghub/relay.h"
#include "msghub/token.h"

_Static_assert(LWS_PRE <= MH_FRAME_HEADROOM, "frame headroom must fit the lws header");

#define CLOSE_DEADLINE_S 5
#define INBOX_SLICE 64 /* messages read from a Redis inbox at a time */
/* lws 4.1 keeps its close opcode private (lws-write.h: "LWS_WRITE_CLOSE is
 * handled by lws_close_reason()"); its value is 4 in every 4.x release. */
#define MH_LWS_WRITE_CLOSE 4

static void start_peek(mh_server_t *srv, mh_session_t *s);

/* ---- async context: a session handle plus what the operation needs ---- */

typedef struct sctx {
    mh_server_t *srv;
    mh_handle_t *h;
    uint64_t id;
    mh_frame_t *f;
} sctx_t;

static sctx_t *sctx_new(mh_server_t *srv, mh_session_t *s)
{
    sctx_t *c = mh_xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->h = mh_handle_ref(s->handle);
    c->id = s->id;
    return c;
}

/* Frees the context; returns the session if it is still alive. */
static mh_session_t *sctx_end(sctx_t *c)
{
    mh_session_t *s = mh_handle_get(c->h);
    mh_handle_unref(c->h);
    free(c);
    return s;
}

/* ---- storing ---- */

static void stored_one(void *ud, int status)
{
    sctx_t *c = ud;
    if (status)
        mh_warn("inbox_store_failed", "id=%llu", (unsigned long long)c->id);
    mh_relay_local_done(c->srv, c->f);
    mh_frame_unref(c->f);
    free(c);
}

/* Stores f for s->id and reports the local hand-off done once it is stored. */
static void store_message(mh_server_t *srv, mh_session_t *s, mh_frame_t *f, int front)
{
    sctx_t *c = mh_xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->id = s->id;
    c->f = mh_frame_ref(f);
    if (s->backlog)
        s->pushed_since_peek++;
    mh_relay_store(srv, s->id, &f, 1, front, stored_one, c);
}

/* Returns unwritten messages to the head of the inbox, in their order. */
static void requeue_to_inbox(mh_server_t *srv, mh_session_t *s)
{
    size_t n = s->outq.len;
    mh_frame_t **tmp = mh_xmalloc((n ? n : 1) * sizeof(*tmp));
    for (size_t i = 0; i < n; i++)
        tmp[i] = mh_outq_pop(&s->outq);
    for (size_t i = n; i-- > 0;) {
        /* frames read from Redis are still stored there until trimmed */
        if (tmp[i]->is_message && !tmp[i]->from_inbox && s->id) {
            store_message(srv, s, tmp[i], 1);
            s->backlog = 1;
        }
        mh_frame_unref(tmp[i]);
    }
    free(tmp);
    if (srv->distributed && s->inbox_written && s->attached)
        mh_redis_inbox_trim(srv->redis, s->id, s->inbox_written, NULL, NULL);
    s->inbox_written = s->inbox_queued = 0;
}

/* ---- registration ---- */

static void unregister(mh_server_t *srv, mh_session_t *s)
{
    if (!s->registered)
        return;
    s->registered = 0;
    if (mh_registry_remove(srv->registry, s->id, s) && srv->distributed)
        mh_redis_checkout(srv->redis, s->id, srv->cfg->instance_id, NULL, NULL);
}

void mh_session_close(mh_server_t *srv, mh_session_t *s, int code)
{
    if (s->closing)
        return;
    s->closing = code;
    unregister(srv, s); /* checked out of presence now, not when the socket goes */
    requeue_to_inbox(srv, s);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_DEADLINE_S);
    lws_callback_on_writable(s->wsi);
}

/* ---- queueing ---- */

static void queue_frame(mh_server_t *srv, mh_session_t *s, mh_frame_t *f)
{
    int was_empty = s->outq.len == 0;
    mh_outq_push(&s->outq, f);
    if (s->outq.bytes > srv->cfg->outbound_buffer_bytes) {
        srv->metrics.slow_consumer_closes_total++;
        mh_info("slow_consumer", "id=%llu queued_bytes=%zu", (unsigned long long)s->id,
                s->outq.bytes);
        mh_session_close(srv, s, 4008);
        return;
    }
    if (was_empty)
        lws_callback_on_writable(s->wsi);
}

void mh_session_send_text(mh_server_t *srv, mh_session_t *s, mh_buf_t *b)
{
    if (s->closing) {
        mh_buf_reset(b);
        return;
    }
    mh_frame_t *f = mh_frame_from_buf(b);
    queue_frame(srv, s, f);
    mh_frame_unref(f);
}

void mh_session_deliver(mh_server_t *srv, mh_session_t *s, mh_frame_t *f)
{
    if (s->closing || s->backlog || !s->attached) {
        store_message(srv, s, f, 0);
        if (!s->closing && s->attached && s->outq.len == 0)
            lws_callback_on_writable(s->wsi);
        return;
    }
    queue_frame(srv, s, f);
}

/* ---- inbox flow ---- */

static void refill_from_memory(mh_server_t *srv, mh_session_t *s)
{
    uint64_t now = mh_now_ms();
    while (s->backlog && s->outq.bytes < srv->cfg->outbound_buffer_bytes / 2) {
        size_t dropped = 0;
        mh_frame_t *f = mh_inbox_mem_pop(srv->inbox, s->id, now, &dropped);
        srv->metrics.inbox_dropped_total += dropped;
        if (!f) {
            s->backlog = 0;
            break;
        }
        mh_outq_push(&s->outq, f);
        mh_frame_unref(f);
    }
}

static void peeked(void *ud, int status, mh_frame_t **frames, size_t n)
{
    sctx_t *c = ud;
    mh_server_t *srv = c->srv;
    mh_session_t *s = sctx_end(c);
    if (!s || s->closing || status) {
        for (size_t i = 0; i < n; i++)
            mh_frame_unref(frames[i]);
        if (s && !s->closing)
            mh_session_close(srv, s, 1011);
        return;
    }
    s->peeking = 0;
    if (n == 0 && s->pushed_since_peek == 0)
        s->backlog = 0; /* nothing stored and nothing added since we looked */
    for (size_t i = 0; i < n; i++) {
        frames[i]->from_inbox = 1;
        mh_outq_push(&s->outq, frames[i]);
        mh_frame_unref(frames[i]);
    }
    s->inbox_queued = n;
    s->inbox_written = 0;
    lws_callback_on_writable(s->wsi);
}

static void start_peek(mh_server_t *srv, mh_session_t *s)
{
    if (s->peeking || s->inbox_queued || s->closing)
        return;
    s->peeking = 1;
    s->pushed_since_peek = 0;
    mh_redis_inbox_peek(srv->redis, s->id, INBOX_SLICE, peeked, sctx_new(srv, s));
}

/* One frame read from the Redis inbox was written: trim the slice when all are. */
static void inbox_frame_written(mh_server_t *srv, mh_session_t *s)
{
    if (++s->inbox_written < s->inbox_queued)
        return;
    mh_redis_inbox_trim(srv->redis, s->id, s->inbox_written, NULL, NULL);
    s->inbox_written = s->inbox_queued = 0;
    start_peek(srv, s);
}

/* ---- writing ---- */

static const char *close_reason(int code)
{
    switch (code) {
    case 4008:
        return "slow consumer";
    case 4409:
        return "session taken over";
    case 4000:
        return "idle timeout";
    case 1009:
        return "message too big";
    case 1011:
        return "backplane unavailable";
    default:
        return "hub shutting down";
    }
}

/*
 * Writes the close frame ourselves (lws_close_reason + return -1 drops the
 * TCP connection without it in lws 4.1 here), then waits for the peer's
 * close reply; the deadline set when closing began drops a silent peer.
 */
static int send_close(mh_session_t *s)
{
    if (s->close_sent)
        return 0;
    const char *why = close_reason(s->closing);
    unsigned char buf[LWS_PRE + 64], *p = buf + LWS_PRE;
    size_t n = strlen(why);
    p[0] = (unsigned char)(s->closing >> 8);
    p[1] = (unsigned char)(s->closing & 0xff);
    memcpy(p + 2, why, n);
    s->close_sent = 1;
    return lws_write(s->wsi, p, n + 2, (enum lws_write_protocol)MH_LWS_WRITE_CLOSE) < 0 ? -1 : 0;
}

static void note_written(mh_server_t *srv, mh_session_t *s, mh_frame_t *f)
{
    srv->metrics.frames_sent_total++;
    srv->metrics.bytes_sent_total += f->len;
    if (!f->is_message)
        return;
    srv->metrics.deliveries_total++;
    if (f->from_inbox)
        inbox_frame_written(srv, s);
    else
        mh_relay_local_done(srv, f);
}

int mh_session_writeable(mh_server_t *srv, mh_session_t *s)
{
    if (s->closing)
        return send_close(s);
    if (s->outq.len == 0 && s->backlog) {
        if (srv->distributed)
            start_peek(srv, s);
        else
            refill_from_memory(srv, s);
    }
    mh_frame_t *f = mh_outq_pop(&s->outq);
    if (!f)
        return 0;
    int n = lws_write(s->wsi, mh_frame_data(f), f->len, LWS_WRITE_TEXT);
    if (n < (int)f->len) { /* the connection failed: keep the message for the next one */
        if (f->is_message && !f->from_inbox)
            store_message(srv, s, f, 1);
        mh_frame_unref(f);
        return -1;
    }
    note_written(srv, s, f);
    mh_frame_unref(f);
    if (s->outq.len || (s->backlog && !s->peeking))
        lws_callback_on_writable(s->wsi);
    return 0;
}

/* ---- attach: id known, registered, hello ---- */

static void send_hello(mh_server_t *srv, mh_session_t *s)
{
    char token[MH_TOKEN_LEN + 1];
    mh_token_issue(srv->secret, srv->secret_len, s->id, mh_now_ms() / 1000, token);
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_hello_t h = {s->id, token, s->resumed, 0, 0, 1};
    mh_codec_hello(&b, &h, &srv->limits);
    mh_session_send_text(srv, s, &b);
    mh_buf_free(&b);
}

static void attach(mh_server_t *srv, mh_session_t *s)
{
    mh_session_t *old = mh_registry_put(srv->registry, s->id, s);
    if (old) {
        mh_info("takeover", "id=%llu", (unsigned long long)s->id);
        old->registered = 0; /* the registry already names s */
        mh_session_close(srv, old, 4409);
    }
    s->registered = 1;
    s->attached = 1;
    send_hello(srv, s);
    if (srv->distributed) {
        s->backlog = 1;
        start_peek(srv, s);
    } else {
        s->backlog = mh_inbox_mem_count(srv->inbox, s->id) > 0;
        if (s->backlog)
            lws_callback_on_writable(s->wsi);
    }
    mh_debug("ws_open", "id=%llu resumed=%d", (unsigned long long)s->id, s->resumed);
}

static void kick_sent(void *ud, int status)
{
    if (status)
        mh_warn("takeover_signal_failed", "instance=%s", (const char *)ud);
    free(ud);
}

static void send_kick(mh_server_t *srv, const char *instance, uint64_t id, uint64_t claimed_ms)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_envelope_kick(&b, id, claimed_ms);
    mh_broker_publish(srv->broker, instance, b.data, b.len, kick_sent, mh_xstrdup(instance));
    mh_buf_free(&b);
}

static void claimed(void *ud, int status, const char *previous)
{
    sctx_t *c = ud;
    mh_server_t *srv = c->srv;
    uint64_t id = c->id;
    mh_session_t *s = sctx_end(c);
    if (!s) { /* gone while claiming: give the id back */
        if (!status)
            mh_redis_checkout(srv->redis, id, srv->cfg->instance_id, NULL, NULL);
        return;
    }
    if (status) {
        mh_session_close(srv, s, 1011);
        return;
    }
    if (previous && strcmp(previous, srv->cfg->instance_id) != 0)
        send_kick(srv, previous, id, s->claimed_ms);
    attach(srv, s);
    lws_rx_flow_control(s->wsi, 1);
}

static void claim(mh_server_t *srv, mh_session_t *s)
{
    s->claimed_ms = mh_now_ms();
    mh_redis_claim(srv->redis, s->id, srv->cfg->instance_id,
                   (uint64_t)srv->cfg->presence_ttl_s * 1000u, claimed, sctx_new(srv, s));
}

static void got_id(void *ud, int status, uint64_t id)
{
    sctx_t *c = ud;
    mh_server_t *srv = c->srv;
    mh_session_t *s = sctx_end(c);
    if (!s)
        return;
    if (status) {
        mh_session_close(srv, s, 1011);
        return;
    }
    s->id = id;
    claim(srv, s);
}

mh_session_t *mh_session_open(mh_server_t *srv, struct lws *wsi, uint64_t resumed_id)
{
    mh_session_t *s = mh_xcalloc(1, sizeof(*s));
    s->wsi = wsi;
    s->handle = mh_handle_new(s);
    mh_outq_init(&s->outq);
    mh_buf_init(&s->rx);
    s->last_app_us = mh_mono_us();
    mh_rate_init(&s->rate, srv->cfg->rate_per_s, srv->cfg->rate_burst, s->last_app_us);
    s->resumed = resumed_id != 0;
    srv->metrics.connections++;
    srv->metrics.connections_total++;
    if (!srv->distributed) {
        s->id = resumed_id ? resumed_id : mh_registry_alloc_id(srv->registry);
        mh_registry_note_id(srv->registry, s->id);
        s->claimed_ms = mh_now_ms();
        attach(srv, s);
        return s;
    }
    lws_rx_flow_control(wsi, 0); /* requests wait until the id is claimed */
    s->id = resumed_id;
    if (resumed_id) { /* a valid token proves the id was handed out */
        mh_redis_raise_id(srv->redis, resumed_id, NULL, NULL);
        claim(srv, s);
    } else
        mh_redis_alloc_id(srv->redis, got_id, sctx_new(srv, s));
    return s;
}

void mh_session_closed(mh_server_t *srv, mh_session_t *s)
{
    unregister(srv, s);
    requeue_to_inbox(srv, s);
    mh_outq_free(&s->outq);
    mh_buf_free(&s->rx);
    srv->metrics.connections--;
    mh_debug("ws_close", "id=%llu", (unsigned long long)s->id);
    mh_handle_clear(s->handle);
    free(s);
}

void mh_session_check_inbox(mh_server_t *srv, mh_session_t *s)
{
    if (!s->attached || s->closing || s->backlog)
        return;
    s->backlog = 1;
    start_peek(srv, s);
}

void mh_session_kick(mh_server_t *srv, uint64_t id, uint64_t claimed_ms)
{
    mh_session_t *s = mh_registry_get(srv->registry, id);
    if (s && s->claimed_ms <= claimed_ms) {
        mh_info("takeover", "id=%llu by=another_instance", (unsigned long long)id);
        mh_session_close(srv, s, 4409);
    }
}
