/*
 * session_log: a session's cursor over its id's log (see session.h): open
 * and hello, live pushes in seq order, reads that fill gaps and redeliver
 * after a reconnect, client acks and ?ack=auto's batched acks.
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

#define READ_SLICE 64     /* log entries read at a time */
#define EMPTY_READS_MAX 2 /* empty reads in a row before the cursor trusts the log */

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

static int can_read(const mh_server_t *srv, const mh_session_t *s)
{
    return s->backlog && !s->reading && s->opened && !s->closing &&
           s->outq.bytes < srv->cfg->outbound_buffer_bytes / 2;
}

/* Queues the entries read that are still owed, while the queue is under half the limit. */
static void queue_entries(mh_server_t *srv, mh_session_t *s, const mh_msglog_entry_t *e, size_t n)
{
    uint64_t half = srv->cfg->outbound_buffer_bytes / 2;
    for (size_t i = 0; i < n && !s->closing; i++) {
        if (e[i].seq < s->next_seq)
            continue;
        if (s->outq.bytes >= half)
            break; /* the rest is read again once the queue drains */
        if (e[i].seq <= s->owed_seq)
            srv->metrics.redeliveries_total++;
        mh_session_queue_message(srv, s, e[i].frame, e[i].seq, 0);
    }
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
    queue_entries(srv, s, e, n);
    if (n == 0 && last_seq >= s->next_seq)
        s->next_seq = last_seq + 1; /* acknowledged elsewhere or dropped by retention */
    uint64_t want = last_seq > s->seen_seq ? last_seq : s->seen_seq;
    /*
     * Caught up: live pushes flow again. A push seen while the read was in
     * flight may be newer than the read's snapshot: read once more (at most
     * EMPTY_READS_MAX times, so a log that lost its seqs cannot loop us).
     */
    s->empty_reads = n ? 0 : s->empty_reads + 1;
    if (s->next_seq > want || s->empty_reads > EMPTY_READS_MAX) {
        s->backlog = 0;
        s->empty_reads = 0;
    }
    if (s->outq.len)
        lws_callback_on_writable(s->wsi);
    start_read(srv, s);
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
        mh_msglog_read(&srv->log, s->id, s->next_seq - 1, READ_SLICE, read_done,
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
    if (s->closing || !seq)
        return;
    if (seq > s->seen_seq)
        s->seen_seq = seq;
    if (!s->opened)
        return; /* the open reads the log from the acknowledged seq on */
    if (seq < s->next_seq)
        return; /* a duplicate: already queued */
    if (s->backlog || seq > s->next_seq) {
        s->backlog = 1; /* a gap (a lost or late push): the log fills it, in order */
        start_read(srv, s);
        return;
    }
    mh_session_queue_message(srv, s, f, seq, 1);
}

void mh_session_check_log(mh_server_t *srv, mh_session_t *s)
{
    if (!s->opened || s->closing)
        return;
    s->backlog = 1;
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
    mh_session_close(srv, s, 1008);
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
        mh_session_close(srv, s, 1011);
        return;
    }
    if (s->opts.since && st->acked_seq == s->opts.since)
        srv->metrics.acks_total++;
    s->opened = 1;
    s->acked_seq = st->acked_seq;
    s->next_seq = st->acked_seq + 1;
    s->known_seq = s->owed_seq = st->last_seq;
    send_hello(srv, s, st);
    lws_rx_flow_control(s->wsi, 1);
    if (st->last_seq >= s->next_seq || s->seen_seq >= s->next_seq)
        mh_session_check_log(srv, s);
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

static void send_ack_error(mh_server_t *srv, mh_session_t *s, mh_err_code_t code, const char *msg,
                           const char *ref, size_t ref_len)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_error(&b, code, msg, ref, ref_len);
    mh_session_send_text(srv, s, &b);
    mh_buf_free(&b);
    mh_metrics_error(&srv->metrics, code);
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
        send_ack_error(srv, s, MH_ERR_UNAVAILABLE, "log unavailable: not acknowledged, retry later",
                       r, r ? ref_len : 0);
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
        send_ack_error(srv, s, MH_ERR_BAD_REQUEST,
                       "'seq' is above the highest seq sent to this connection", ref, ref_len);
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

void mh_session_log_written(mh_server_t *srv, mh_session_t *s, uint64_t seq)
{
    if (!s->opts.ack_auto)
        return;
    s->written_seq = seq;
    if (++s->written_unacked >= MH_SESSION_ACK_BATCH) {
        flush_auto_ack(srv, s);
        return;
    }
    if (s->ack_pending)
        return;
    s->ack_pending = 1;
    if (srv->n_ack_pending == srv->cap_ack_pending) {
        srv->cap_ack_pending = srv->cap_ack_pending ? srv->cap_ack_pending * 2 : 64;
        srv->ack_pending =
            mh_xrealloc(srv->ack_pending, srv->cap_ack_pending * sizeof(*srv->ack_pending));
    }
    srv->ack_pending[srv->n_ack_pending++] = mh_handle_ref(s->handle);
}

void mh_session_flush_auto_acks(mh_server_t *srv)
{
    size_t n = srv->n_ack_pending;
    mh_handle_t **list = srv->ack_pending;
    srv->ack_pending = NULL;
    srv->n_ack_pending = srv->cap_ack_pending = 0;
    for (size_t i = 0; i < n; i++) {
        mh_session_t *s = mh_handle_get(list[i]);
        if (s) {
            s->ack_pending = 0;
            flush_auto_ack(srv, s);
        }
        mh_handle_unref(list[i]);
    }
    free(list);
}

void mh_session_log_close(mh_server_t *srv, mh_session_t *s)
{
    if (s->opts.ack_auto && s->opened)
        flush_auto_ack(srv, s);
}
