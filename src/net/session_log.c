/*
 * session_log: a session's cursor over its id's log (see session.h): open
 * and hello, live pushes in seq order, reads that fill gaps and redeliver
 * after a reconnect, client acks and ?ack=auto's batched acks. The
 * decisions are cursor.c's (pure, unit tested); this file does the I/O.
 *
 * Works with logs that call back inside the call (memory) and later
 * (Redis): a read started from inside a read's callback is turned into one
 * more turn of start_read's loop instead of a recursion.
 */
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "msghub/codec.h"
#include "msghub/log.h"
#include "msghub/session.h"
#include "msghub/token.h"

#define READ_SLICE 64   /* log entries read at a time */
#define HOLD_WAIT_MS 50 /* how long a push above the cursor waits for the ones before it */

/* ---- async context: the session's weak handle ---- */

typedef struct lctx {
    mh_server_t *srv;
    mh_handle_t *h;
    uint64_t seq;
    size_t ref_len;
    char ref[]; /* ack: the request's ref, ref_len bytes (0 = none) */
} lctx_t;

static lctx_t *lctx_new(mh_server_t *srv, mh_session_t *s, const char *ref, size_t ref_len)
{
    lctx_t *c = mh_xmalloc(sizeof(*c) + ref_len);
    c->srv = srv;
    c->h = mh_handle_ref(s->handle);
    c->seq = 0;
    c->ref_len = ref ? ref_len : 0;
    if (c->ref_len)
        memcpy(c->ref, ref, ref_len);
    return c;
}

/* Frees the context; returns the session if it is still alive and not closing. */
static mh_session_t *lctx_end(lctx_t *c)
{
    mh_session_t *s = mh_handle_get(c->h);
    mh_handle_unref(c->h);
    free(c);
    return s && !s->closing ? s : NULL;
}

/* ---- reading the log ---- */

static void start_read(mh_server_t *srv, mh_session_t *s);
static void want_tick(mh_server_t *srv, mh_session_t *s);

static int can_read(const mh_server_t *srv, const mh_session_t *s)
{
    return s->cur.backlog && !s->reading && s->opened && !s->closing &&
           s->outq.bytes < srv->cfg->outbound_buffer_bytes / 2;
}

/* The cursor's queue callback: (f, seq) onto the outbound queue; nonzero once closing. */
typedef struct sink {
    mh_server_t *srv;
    mh_session_t *s;
} sink_t;

static int sink_queue(void *ud, mh_frame_t *f, uint64_t seq, int live)
{
    sink_t *k = ud;
    if (!live && seq <= k->s->owed_seq)
        k->srv->metrics.redeliveries_total++;
    mh_session_queue_message(k->srv, k->s, f, seq, live);
    return k->s->closing;
}

/* Log entries are queued while the queue is under half the limit. */
static int sink_room(void *ud)
{
    sink_t *k = ud;
    return k->s->outq.bytes < k->srv->cfg->outbound_buffer_bytes / 2;
}

/* What the cursor asks for next: a read of the log, or a tick for held pushes. */
static void follow(mh_server_t *srv, mh_session_t *s, mh_cursor_action_t a)
{
    if (a == MH_CURSOR_READ)
        start_read(srv, s);
    else if (a == MH_CURSOR_HELD)
        want_tick(srv, s);
}

static void read_done(void *ud, int status, const mh_msglog_entry_t *e, size_t n, uint64_t last_seq)
{
    lctx_t *c = ud;
    mh_server_t *srv = c->srv;
    mh_session_t *s = lctx_end(c);
    if (!s)
        return;
    s->reading = 0;
    if (status) { /* still backlogged: the next push or sweep reads again */
        mh_warn("log_read_failed", "id=%llu status=%d", (unsigned long long)s->id, status);
        return;
    }
    sink_t k = {srv, s};
    mh_cursor_action_t a = mh_cursor_read_done(&s->cur, e, n, last_seq, sink_room, sink_queue, &k);
    if (s->outq.len && !s->closing)
        mh_session_want_write(srv, s);
    follow(srv, s, a);
}

static void start_read(mh_server_t *srv, mh_session_t *s)
{
    if (s->in_read) {
        s->read_again = 1;
        return;
    }
    s->in_read = 1;
    do {
        s->read_again = 0;
        if (!can_read(srv, s))
            break;
        s->reading = 1;
        mh_msglog_read(&srv->log, s->id, s->cur.next_seq - 1, READ_SLICE, read_done,
                       lctx_new(srv, s, NULL, 0));
    } while (s->read_again);
    s->in_read = 0;
}

void mh_session_log_room(mh_server_t *srv, mh_session_t *s)
{
    start_read(srv, s);
}

void mh_session_deliver(mh_server_t *srv, mh_session_t *s, mh_frame_t *f, uint64_t seq)
{
    if (s->closing)
        return;
    sink_t k = {srv, s};
    follow(srv, s, mh_cursor_push(&s->cur, f, seq, mh_now_ms(), sink_queue, &k));
}

void mh_session_check_log(mh_server_t *srv, mh_session_t *s)
{
    if (!s->opened || s->closing)
        return;
    mh_cursor_recheck(&s->cur);
    start_read(srv, s);
}

/* ---- open: since, hello, redelivery ---- */

static void send_hello(mh_server_t *srv, mh_session_t *s, const mh_msglog_state_t *st)
{
    char token[MH_TOKEN_LEN + 1];
    mh_token_issue(srv->secret, srv->secret_len, s->id, mh_now_ms() / 1000, token);
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_hello_t h = {s->id, token, s->resumed, s->opts.ack_auto, st->last_seq, st->recovered};
    mh_codec_hello(&b, &h, &srv->limits);
    mh_session_send_text(srv, s, &b);
    mh_buf_free(&b);
}

static void refuse_since(mh_server_t *srv, mh_session_t *s)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_error(&b, MH_ERR_BAD_REQUEST, "since is above this id's highest seq", NULL, 0);
    mh_session_send_text(srv, s, &b);
    mh_buf_free(&b);
    mh_metrics_error(&srv->metrics, MH_ERR_BAD_REQUEST);
    mh_session_close(srv, s, MH_CLOSE_POLICY);
}

static void opened(void *ud, int status, const mh_msglog_state_t *st)
{
    lctx_t *c = ud;
    mh_server_t *srv = c->srv;
    mh_session_t *s = lctx_end(c);
    if (!s)
        return;
    if (status == MH_EINVAL) { /* checked after the upgrade where the log is remote */
        refuse_since(srv, s);
        return;
    }
    if (status) {
        mh_session_close(srv, s, MH_CLOSE_BACKPLANE);
        return;
    }
    if (s->opts.since && st->acked_seq == s->opts.since)
        srv->metrics.acks_total++;
    s->opened = 1;
    s->acked_seq = st->acked_seq;
    s->known_seq = s->owed_seq = st->last_seq;
    send_hello(srv, s, st);
    lws_rx_flow_control(s->wsi, 1);
    follow(srv, s, mh_cursor_open(&s->cur, st->acked_seq, st->last_seq));
}

void mh_session_log_open(mh_server_t *srv, mh_session_t *s)
{
    mh_msglog_open(&srv->log, s->id, s->opts.since, opened, lctx_new(srv, s, NULL, 0));
}

/* ---- client acks ---- */

static void send_acked(mh_server_t *srv, mh_session_t *s, const char *ref, size_t ref_len,
                       uint64_t seq)
{
    if (!ref || !ref_len)
        return;
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_acked(&b, ref, ref_len, seq);
    mh_session_send_text(srv, s, &b);
    mh_buf_free(&b);
}

static void client_acked(void *ud, int status)
{
    lctx_t *c = ud;
    mh_server_t *srv = c->srv;
    uint64_t seq = c->seq;
    size_t ref_len = c->ref_len;
    char ref[256];
    const char *r = ref_len && ref_len <= sizeof(ref) ? memcpy(ref, c->ref, ref_len) : NULL;
    mh_session_t *s = lctx_end(c);
    if (!s)
        return;
    if (status) {
        mh_session_send_error(srv, s, MH_ERR_UNAVAILABLE,
                              "log unavailable: not acknowledged, retry later", r, r ? ref_len : 0);
        return;
    }
    srv->metrics.acks_total++;
    if (seq > s->acked_seq)
        s->acked_seq = seq;
    send_acked(srv, s, r, r ? ref_len : 0, seq);
}

void mh_session_ack(mh_server_t *srv, mh_session_t *s, uint64_t seq, const char *ref,
                    size_t ref_len)
{
    if (seq > s->known_seq) {
        mh_session_send_error(srv, s, MH_ERR_BAD_REQUEST,
                              "'seq' is above the highest seq sent to this connection", ref,
                              ref_len);
        return;
    }
    if (seq <= s->acked_seq) { /* changes nothing, still answered */
        send_acked(srv, s, ref, ref_len, seq);
        return;
    }
    lctx_t *c = lctx_new(srv, s, ref, ref_len);
    c->seq = seq;
    mh_msglog_ack(&srv->log, s->id, seq, client_acked, c);
}

/* ---- ?ack=auto: written counts as acknowledged, acked in batches ---- */

static void flush_auto_ack(mh_server_t *srv, mh_session_t *s)
{
    s->written_unacked = 0;
    if (s->written_seq <= s->acked_seq)
        return;
    s->acked_seq = s->written_seq;
    mh_msglog_ack(&srv->log, s->id, s->written_seq, NULL, NULL);
}

/* Puts s on the server's list for the next tick (auto acks, held pushes). */
static void want_tick(mh_server_t *srv, mh_session_t *s)
{
    if (s->tick_pending)
        return;
    s->tick_pending = 1;
    srv->ack_pending = mh_xgrow(srv->ack_pending, srv->n_ack_pending, &srv->cap_ack_pending,
                                sizeof(*srv->ack_pending), 64);
    srv->ack_pending[srv->n_ack_pending++] = mh_handle_ref(s->handle);
}

void mh_session_log_written(mh_server_t *srv, mh_session_t *s, uint64_t seq)
{
    if (!s->opts.ack_auto)
        return;
    s->written_seq = seq;
    if (++s->written_unacked >= MH_SESSION_ACK_BATCH)
        flush_auto_ack(srv, s);
    else
        want_tick(srv, s);
}

/* A gap that pushes did not fill within HOLD_WAIT_MS: the log fills it. */
static void tick_held(mh_server_t *srv, mh_session_t *s, uint64_t now_ms)
{
    follow(srv, s, mh_cursor_tick(&s->cur, now_ms, HOLD_WAIT_MS));
}

void mh_session_flush_auto_acks(mh_server_t *srv)
{
    size_t n = srv->n_ack_pending;
    mh_handle_t **list = srv->ack_pending;
    uint64_t now = mh_now_ms();
    srv->ack_pending = NULL;
    srv->n_ack_pending = srv->cap_ack_pending = 0;
    for (size_t i = 0; i < n; i++) {
        mh_session_t *s = mh_handle_get(list[i]);
        if (s) {
            s->tick_pending = 0;
            if (s->opts.ack_auto)
                flush_auto_ack(srv, s);
            if (!s->closing)
                tick_held(srv, s, now);
        }
        mh_handle_unref(list[i]);
    }
    free(list);
}

void mh_session_log_close(mh_server_t *srv, mh_session_t *s)
{
    if (s->opts.ack_auto && s->opened)
        flush_auto_ack(srv, s);
    mh_cursor_release(&s->cur);
}
