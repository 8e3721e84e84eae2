/*
 * session: a connected client's life (claim, attach, close), its queue and
 * its writes (see session.h; the cursor over the log is session_log.c).
 */
#include "msghub/session.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "msghub/liveness.h"
#include "msghub/log.h"
#include "msghub/lws_compat.h"
#include "msghub/codec.h"
#include "msghub/token.h"

_Static_assert(LWS_PRE <= MH_FRAME_HEADROOM, "frame headroom must fit the lws header");

#define CLOSE_DEADLINE_S 5

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

/* ---- asking for WRITEABLE: once per session per loop turn ---- */

void mh_session_want_write(mh_server_t *srv, mh_session_t *s)
{
    if (s->write_due)
        return;
    s->write_due = 1;
    srv->write_due = mh_xgrow(srv->write_due, srv->n_write_due, &srv->cap_write_due,
                              sizeof(*srv->write_due), 64);
    srv->write_due[srv->n_write_due++] = mh_handle_ref(s->handle);
}

static int write_rearm(mh_server_t *srv, mh_session_t *s);

/*
 * A queue that went from empty to not empty in this turn is written at once
 * when nothing of the connection waits (lws holds no rest of an earlier
 * write, no entry is half written): no POLLOUT to arm and disarm (with
 * libuv each is an epoll_ctl DEL and ADD). Only what is left, or a closing
 * session, waits for WRITEABLE.
 */
static void write_due(mh_server_t *srv, mh_session_t *s)
{
    if (s->closing || !s->outq.len || s->tx_off || lws_partial_buffered(s->wsi)) {
        lws_callback_on_writable(s->wsi);
        return;
    }
    if (write_rearm(srv, s)) /* the log keeps the message; lws closes on its next pass */
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

void mh_session_arm_writes(mh_server_t *srv)
{
    for (size_t i = 0; i < srv->n_write_due; i++) {
        mh_session_t *s = mh_handle_get(srv->write_due[i]);
        if (s) {
            s->write_due = 0;
            write_due(srv, s);
        }
        mh_handle_unref(srv->write_due[i]);
    }
    srv->n_write_due = 0;
}

/* ---- registration ---- */

static void unregister(mh_server_t *srv, mh_session_t *s)
{
    if (!s->registered)
        return;
    s->registered = 0;
    if (mh_registry_remove(srv->registry, s->id, s))
        mh_presence_checkout(&srv->presence, s->id);
}

/* Keeps the replies queued (an error explaining the close goes out before it). */
static void drop_messages(mh_session_t *s)
{
    mh_outq_t *q = &s->outq;
    mh_outq_entry_t e;
    size_t n = q->len;
    if (s->tx_off && n && mh_outq_pop_entry(q, &e)) { /* half written: finish its frame */
        if (e.seq) /* the queue rotates once: it goes back to the head */
            mh_outq_push_seq(q, e.f, e.seq, e.live);
        else
            mh_outq_push(q, e.f);
        mh_frame_unref(e.f);
        n--;
    }
    for (; n > 0 && mh_outq_pop_entry(q, &e); n--) {
        if (!e.seq)
            mh_outq_push(q, e.f);
        mh_frame_unref(e.f);
    }
}

void mh_session_close(mh_server_t *srv, mh_session_t *s, int code)
{
    if (s->closing)
        return;
    s->closing = code;
    unregister(srv, s); /* checked out of presence now, not when the socket goes */
    mh_session_log_close(srv, s);
    drop_messages(s); /* the log holds whatever was not acknowledged */
    mh_live_closing(srv, s->wsi, CLOSE_DEADLINE_S); /* O(1), not lws' sorted list */
    mh_session_want_write(srv, s);
}

/* ---- queueing ---- */

/* The queue grew from was_empty: close a slow consumer, or ask for a write. */
static void queued(mh_server_t *srv, mh_session_t *s, int was_empty)
{
    if (s->outq.bytes > srv->cfg->outbound_buffer_bytes) {
        srv->metrics.slow_consumer_closes_total++;
        mh_info("slow_consumer", "id=%llu queued_bytes=%zu", (unsigned long long)s->id,
                s->outq.bytes);
        mh_session_close(srv, s, MH_CLOSE_SLOW_CONSUMER);
        return;
    }
    if (was_empty)
        mh_session_want_write(srv, s);
}

static void queue_frame(mh_server_t *srv, mh_session_t *s, mh_frame_t *f)
{
    int was_empty = s->outq.len == 0;
    mh_outq_push(&s->outq, f);
    queued(srv, s, was_empty);
}

void mh_session_queue_message(mh_server_t *srv, mh_session_t *s, mh_frame_t *f, uint64_t seq,
                              int live)
{
    int was_empty = s->outq.len == 0;
    mh_outq_push_seq(&s->outq, f, seq, live);
    if (seq > s->known_seq)
        s->known_seq = seq;
    queued(srv, s, was_empty);
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

void mh_session_send_error(mh_server_t *srv, mh_session_t *s, mh_err_code_t code, const char *msg,
                           const char *ref, size_t ref_len)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_error(&b, code, msg, ref, ref_len);
    mh_session_send_text(srv, s, &b);
    mh_buf_free(&b);
    mh_metrics_error(&srv->metrics, code);
}

/* ---- writing ---- */

static const char *close_reason(int code)
{
    switch (code) {
    case MH_CLOSE_SLOW_CONSUMER:
        return "slow consumer";
    case MH_CLOSE_TAKEN_OVER:
        return "session taken over";
    case MH_CLOSE_IDLE:
        return "idle timeout";
    case MH_CLOSE_TOO_BIG:
        return "message too big";
    case MH_CLOSE_TRY_AGAIN_LATER:
        return "try again later";
    case MH_CLOSE_BACKPLANE:
        return "backplane unavailable";
    case MH_CLOSE_POLICY:
        return "policy violation";
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

static void note_written(mh_server_t *srv, mh_session_t *s, const mh_outq_entry_t *e)
{
    srv->metrics.frames_sent_total++;
    srv->metrics.bytes_sent_total += e->size;
    if (!e->seq)
        return;
    srv->metrics.deliveries_total++;
    if (e->live)
        mh_server_local_done(srv, e->f);
    mh_session_log_written(srv, s, e->seq);
}

/*
 * Coalesced writes: the queued entries that fit go out as one raw write of
 * ready-framed WebSocket frames (one send() for many deliveries instead of
 * one each, and one POLLOUT cycle). lws 4.1 hands LWS_WRITE_HTTP (RAW) on a
 * ws connection straight to lws_issue_raw(), which keeps what the kernel
 * did not take and sends it before the next WRITEABLE: every byte handed
 * over is as written as with LWS_WRITE_TEXT, so accounting is unchanged.
 * An entry bigger than one batch goes out in batch-sized raw writes of its
 * frame (write_big), so lws never holds more than one batch of it.
 */
#define BATCH_BYTES MH_SESSION_WRITE_BYTES
#define BATCH_ENTRIES 512
#define WS_FIN_TEXT 0x81 /* FIN + opcode 1 (RFC 6455 5.2) */
#define WS_LEN16 126     /* payload length in the next 2 bytes */
#define WS_LEN64 127     /* payload length in the next 8 bytes */
#define WS_HEADER_MAX 10

/* Writes the server frame header (unmasked) for a text payload of n bytes. */
static size_t frame_header(unsigned char *p, size_t n)
{
    p[0] = WS_FIN_TEXT;
    if (n < WS_LEN16) {
        p[1] = (unsigned char)n;
        return 2;
    }
    if (n <= 0xffff) {
        p[1] = WS_LEN16;
        p[2] = (unsigned char)(n >> 8);
        p[3] = (unsigned char)n;
        return 4;
    }
    p[1] = WS_LEN64;
    for (int i = 0; i < 8; i++)
        p[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    return WS_HEADER_MAX;
}

/* Appends e's payload (a message composed with its seq) at p; returns its length. */
static size_t put_payload(unsigned char *p, const mh_outq_entry_t *e)
{
    if (e->seq)
        return mh_codec_message_seq_into(p, e->f, e->seq);
    memcpy(p, mh_frame_data(e->f), e->f->len);
    return e->f->len;
}

/* Copies wire bytes [off, off + n) of segment (p, len) that lie in [at, at + len) to dst. */
static size_t copy_part(unsigned char *dst, size_t off, size_t n, size_t at, const unsigned char *p,
                        size_t len)
{
    size_t lo = off > at ? off : at, hi = off + n < at + len ? off + n : at + len;
    if (lo >= hi)
        return 0;
    memcpy(dst + (lo - off), p + (lo - at), hi - lo);
    return hi - lo;
}

/*
 * Writes the next BATCH_BYTES (or fewer) of an entry bigger than a batch:
 * its frame header and payload are copied piece by piece, the seq spliced
 * in, so neither the whole message nor lws' copy of what a full socket did
 * not take ever exceeds one batch per connection.
 */
static int write_big(mh_server_t *srv, mh_session_t *s, const mh_outq_entry_t *e)
{
    unsigned char head[WS_HEADER_MAX], seq[MH_CODEC_SEQ_FIELD_MAX];
    size_t hl = frame_header(head, e->size), total = hl + e->size, off = s->tx_off;
    size_t n = total - off < BATCH_BYTES ? total - off : BATCH_BYTES;
    size_t cut = e->seq ? e->f->seq_at : e->f->len;
    size_t sl = e->seq ? mh_codec_seq_field((char *)seq, e->seq) : 0;
    const unsigned char *body = mh_frame_data(e->f);
    unsigned char *buf = mh_server_scratch(srv, BATCH_BYTES);
    size_t got = copy_part(buf, off, n, 0, head, hl);
    got += copy_part(buf, off, n, hl, body, cut);
    got += copy_part(buf, off, n, hl + cut, seq, sl);
    got += copy_part(buf, off, n, hl + cut + sl, body + cut, e->f->len - cut);
    if (got != n || lws_write(s->wsi, buf, n, LWS_WRITE_RAW) < (int)n)
        return -1;
    s->tx_off = off + n == total ? 0 : off + n; /* 0: the entry is written whole */
    return 0;
}

/* Writes the next entry alone, or a batch of those that fit; 0, or -1 on failure. */
static int write_some(mh_server_t *srv, mh_session_t *s)
{
    mh_outq_entry_t batch[BATCH_ENTRIES];
    const mh_outq_entry_t *next = mh_outq_peek_entry(&s->outq);
    if (s->tx_off || next->size + WS_HEADER_MAX > BATCH_BYTES) {
        if (write_big(srv, s, next))
            return -1; /* a failed write drops the connection: the log keeps the message */
        if (!s->tx_off) {
            mh_outq_pop_entry(&s->outq, &batch[0]);
            note_written(srv, s, &batch[0]);
            mh_frame_unref(batch[0].f);
        }
        return 0;
    }
    unsigned char *buf = mh_server_scratch(srv, BATCH_BYTES);
    size_t used = 0, n = 0;
    while (n < BATCH_ENTRIES && (next = mh_outq_peek_entry(&s->outq)) &&
           used + next->size + WS_HEADER_MAX <= BATCH_BYTES) {
        mh_outq_pop_entry(&s->outq, &batch[n]);
        used += frame_header(buf + used, batch[n].size);
        used += put_payload(buf + used, &batch[n]);
        n++;
    }
    int rc = lws_write(s->wsi, buf, used, LWS_WRITE_RAW) < (int)used ? -1 : 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            note_written(srv, s, &batch[i]);
        mh_frame_unref(batch[i].f);
    }
    return rc;
}

/*
 * Writes what fits now (write_some), lets the log refill a queue below half
 * its limit, and asks for WRITEABLE while anything is left (or a close is
 * due); 0, or -1 when the write failed.
 */
static int write_rearm(mh_server_t *srv, mh_session_t *s)
{
    if (write_some(srv, s))
        return -1;
    if (s->outq.bytes < srv->cfg->outbound_buffer_bytes / 2)
        mh_session_log_room(srv, s);
    if (s->outq.len || s->closing) /* the rest waits for the socket */
        lws_callback_on_writable(s->wsi);
    return 0;
}

int mh_session_writeable(mh_server_t *srv, mh_session_t *s)
{
    if (s->closing && !s->outq.len)
        return send_close(s);
    if (!s->outq.len) {
        mh_session_log_room(srv, s);
        return 0;
    }
    return write_rearm(srv, s);
}

/* ---- attach: id known, registered, hello ---- */

static void attach(mh_server_t *srv, mh_session_t *s)
{
    mh_session_t *old = mh_registry_put(srv->registry, s->id, s);
    if (old) {
        mh_info("takeover", "id=%llu", (unsigned long long)s->id);
        old->registered = 0; /* the registry already names s */
        mh_session_close(srv, old, MH_CLOSE_TAKEN_OVER);
    }
    s->registered = 1;
    s->attached = 1;
    mh_session_log_open(srv, s);
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
    mh_transport_send(&srv->transport, instance, b.data, b.len, kick_sent, mh_xstrdup(instance));
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
            mh_presence_checkout(&srv->presence, id);
        return;
    }
    if (status) {
        mh_session_close(srv, s, MH_CLOSE_BACKPLANE);
        return;
    }
    if (previous && strcmp(previous, srv->cfg->instance_id) != 0)
        send_kick(srv, previous, id, s->claimed_ms);
    attach(srv, s); /* requests flow again once the log is open (session_log.c) */
}

static void claim(mh_server_t *srv, mh_session_t *s)
{
    s->claimed_ms = mh_now_ms();
    mh_presence_claim(&srv->presence, s->id, claimed, sctx_new(srv, s));
}

static void got_id(void *ud, int status, uint64_t id)
{
    sctx_t *c = ud;
    mh_server_t *srv = c->srv;
    mh_session_t *s = sctx_end(c);
    if (!s)
        return;
    if (status) {
        mh_session_close(srv, s, MH_CLOSE_BACKPLANE);
        return;
    }
    s->id = id;
    claim(srv, s);
}

mh_session_t *mh_session_open(mh_server_t *srv, struct lws *wsi, uint64_t resumed_id,
                              const mh_session_opts_t *opts)
{
    mh_session_t *s = mh_xcalloc(1, sizeof(*s));
    s->wsi = wsi;
    s->opts = *opts;
    s->handle = mh_handle_new(s);
    mh_outq_init(&s->outq);
    s->outq.account = &srv->metrics.memory_bytes; /* --memory-limit */
    mh_buf_init(&s->rx);
    s->last_app_us = mh_mono_us();
    mh_rate_init(&s->rate, srv->cfg->rate_per_s, srv->cfg->rate_burst, s->last_app_us);
    s->resumed = resumed_id != 0;
    srv->metrics.connections++;
    srv->metrics.connections_total++;
    s->id = resumed_id;
    if (resumed_id) { /* a valid token proves the id was handed out */
        mh_presence_note_id(&srv->presence, resumed_id);
        claim(srv, s);
    } else
        mh_presence_alloc_id(&srv->presence, got_id, sctx_new(srv, s));
    if (!s->attached) /* presence answers later: requests wait until the log is open */
        lws_rx_flow_control(wsi, 0);
    return s;
}

void mh_session_closed(mh_server_t *srv, mh_session_t *s)
{
    unregister(srv, s);
    mh_session_log_close(srv, s);
    mh_outq_free(&s->outq);
    mh_buf_free(&s->rx);
    srv->metrics.connections--;
    mh_debug("ws_close", "id=%llu", (unsigned long long)s->id);
    mh_handle_clear(s->handle);
    free(s);
}

void mh_session_kick(mh_server_t *srv, uint64_t id, uint64_t claimed_ms)
{
    mh_session_t *s = mh_registry_get(srv->registry, id);
    if (s && s->claimed_ms <= claimed_ms) {
        mh_info("takeover", "id=%llu by=another_instance", (unsigned long long)id);
        mh_session_close(srv, s, MH_CLOSE_TAKEN_OVER);
    }
}
