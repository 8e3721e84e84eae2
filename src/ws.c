/*
 * ws: WebSocket sessions on libwebsockets (see ws.h).
 *
 * Writes: a session's frames wait in its outq; queueing onto an empty queue
 * asks lws for a WRITEABLE callback, which writes exactly one frame and
 * asks again while more wait. Messages stored while the client was away
 * are pulled from the inbox into the queue in slices (half the outbound
 * limit), and while any remain, new messages for the session join the
 * inbox tail, so the client sees them oldest first.
 *
 * Closing: a session that must close (slow consumer, takeover, idle,
 * shutdown) is marked; its queued messages go back to the head of its inbox
 * at once; the next WRITEABLE sends the close frame. A deadline drops the
 * TCP connection if the close frame cannot be written.
 */
#include "msghub/ws.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "msghub/http_api.h"
#include "msghub/log.h"
#include "msghub/outq.h"
#include "msghub/ratelimit.h"
#include "msghub/relay.h"
#include "msghub/token.h"

_Static_assert(LWS_PRE <= MH_FRAME_HEADROOM, "frame headroom must fit the lws header");

#define CLOSE_DEADLINE_S 5
/* lws 4.1 keeps its close opcode private (lws-write.h: "LWS_WRITE_CLOSE is
 * handled by lws_close_reason()"); its value is 4 in every 4.x release. */
#define MH_LWS_WRITE_CLOSE 4
#define OVERSIZE_SLACK (64 * 1024)

struct mh_session {
    struct lws *wsi;
    uint64_t id;
    int resumed;
    int registered;
    int backlog; /* inbox holds messages to deliver before anything new */
    int closing; /* close code to send, 0 while open */
    int close_sent;
    int rx_binary;
    mh_outq_t outq;
    mh_rate_t rate;
    mh_buf_t rx;
    uint64_t last_app_us;
};

static void queue_frame(mh_server_t *srv, mh_session_t *s, mh_frame_t *f);

/* ---- upgrade checks ---- */

/* Copies the value of ?token= into out; returns its length, or -1 when absent or empty. */
static int query_token(struct lws *wsi, char *out, size_t len)
{
    char buf[300];
    const char *v = lws_get_urlarg_by_name(wsi, "token=", buf, (int)sizeof(buf));
    if (!v || !*v || strlen(v) >= len)
        return v && *v ? 0 : -1;
    size_t n = strlen(v);
    memcpy(out, v, n + 1);
    return (int)n;
}

int mh_ws_check_upgrade(mh_server_t *srv, struct lws *wsi, mh_err_code_t *code, const char **msg)
{
    char uri[64];
    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) < 0 || strcmp(uri, "/ws") != 0) {
        *code = MH_ERR_NOT_FOUND;
        *msg = "WebSocket endpoint is /ws";
        return 404;
    }
    char origin[256];
    if (srv->cfg->allowed_origins &&
        lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) > 0 &&
        !mh_config_origin_allowed(srv->cfg, origin)) {
        *code = MH_ERR_FORBIDDEN;
        *msg = "origin not allowed";
        return 403;
    }
    char token[256];
    int tlen = query_token(wsi, token, sizeof(token));
    uint64_t id;
    if (tlen == 0 ||
        (tlen > 0 && mh_token_verify(srv->secret, srv->secret_len, token, (size_t)tlen,
                                     mh_now_ms() / 1000, srv->cfg->token_ttl_s, &id) != 0)) {
        *code = MH_ERR_UNAUTHORIZED;
        *msg = "invalid or expired token";
        return 401;
    }
    if (tlen <= 0 && srv->cfg->require_token) {
        *code = MH_ERR_UNAUTHORIZED;
        *msg = "a session token is required";
        return 401;
    }
    if (srv->draining || srv->metrics.connections >= srv->cfg->max_connections) {
        *code = MH_ERR_UNAVAILABLE;
        *msg = srv->draining ? "hub is shutting down" : "too many connections";
        return 503;
    }
    return 0;
}

/* ---- sending ---- */

static void send_text(mh_server_t *srv, mh_session_t *s, mh_buf_t *b)
{
    mh_frame_t *f = mh_frame_from_buf(b);
    queue_frame(srv, s, f);
    mh_frame_unref(f);
}

/* Returns queued messages to the head of the inbox, newest first so order is kept. */
static void requeue_to_inbox(mh_server_t *srv, mh_session_t *s)
{
    size_t n = s->outq.len;
    mh_frame_t **tmp = mh_xmalloc((n ? n : 1) * sizeof(*tmp));
    for (size_t i = 0; i < n; i++)
        tmp[i] = mh_outq_pop(&s->outq);
    uint64_t now = mh_now_ms();
    for (size_t i = n; i-- > 0;) {
        if (tmp[i]->is_message && s->id) {
            mh_inbox_mem_push_front(srv->inbox, s->id, tmp[i], now);
            s->backlog = 1;
        }
        mh_frame_unref(tmp[i]);
    }
    free(tmp);
}

static void start_close(mh_server_t *srv, mh_session_t *s, int code)
{
    if (s->closing)
        return;
    s->closing = code;
    if (s->registered) /* checked out of presence now, not when the socket goes */
        mh_registry_remove(srv->registry, s->id, s);
    s->registered = 0;
    requeue_to_inbox(srv, s);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_DEADLINE_S);
    lws_callback_on_writable(s->wsi);
}

static void queue_frame(mh_server_t *srv, mh_session_t *s, mh_frame_t *f)
{
    if (s->closing)
        return;
    int was_empty = s->outq.len == 0;
    mh_outq_push(&s->outq, f);
    if (s->outq.bytes > srv->cfg->outbound_buffer_bytes) {
        srv->metrics.slow_consumer_closes_total++;
        mh_info("slow_consumer", "id=%llu queued_bytes=%zu", (unsigned long long)s->id,
                s->outq.bytes);
        start_close(srv, s, 4008);
        return;
    }
    if (was_empty)
        lws_callback_on_writable(s->wsi);
}

void mh_session_deliver(mh_server_t *srv, mh_session_t *s, mh_frame_t *f)
{
    if (s->closing || s->backlog) {
        mh_relay_store_offline(srv, s->id, f);
        if (f->local_left)
            f->local_left--;
        if (!s->closing && s->outq.len == 0)
            lws_callback_on_writable(s->wsi);
        return;
    }
    queue_frame(srv, s, f);
}

/* Moves stored messages into the queue until half the outbound limit is queued. */
static void refill_from_inbox(mh_server_t *srv, mh_session_t *s)
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

static void note_written(mh_server_t *srv, mh_frame_t *f)
{
    srv->metrics.frames_sent_total++;
    srv->metrics.bytes_sent_total += f->len;
    if (!f->is_message)
        return;
    srv->metrics.deliveries_total++;
    if (f->local_left && --f->local_left == 0 && f->t0_us)
        mh_metrics_observe_latency(&srv->metrics, mh_mono_us() - f->t0_us);
}

/*
 * Writes the close frame ourselves (lws_close_reason + return -1 drops the
 * TCP connection without it in lws 4.1 here), then waits for the peer's
 * close reply; the deadline set by start_close drops a peer that never answers.
 */
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
    default:
        return "hub shutting down";
    }
}

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
    if (lws_write(s->wsi, p, n + 2, (enum lws_write_protocol)MH_LWS_WRITE_CLOSE) < 0)
        return -1;
    return 0;
}

static int on_writeable(mh_server_t *srv, mh_session_t *s)
{
    if (s->closing)
        return send_close(s);
    if (s->outq.len == 0 && s->backlog)
        refill_from_inbox(srv, s);
    mh_frame_t *f = mh_outq_pop(&s->outq);
    if (!f)
        return 0;
    int n = lws_write(s->wsi, mh_frame_data(f), f->len, LWS_WRITE_TEXT);
    if (n < (int)f->len) {
        /* the connection failed: keep the message for the next session */
        if (f->is_message)
            mh_inbox_mem_push_front(srv->inbox, s->id, f, mh_now_ms());
        mh_frame_unref(f);
        return -1;
    }
    note_written(srv, f);
    mh_frame_unref(f);
    if (s->outq.len || s->backlog)
        lws_callback_on_writable(s->wsi);
    return 0;
}

/* ---- lifecycle ---- */

static void send_error(mh_server_t *srv, mh_session_t *s, mh_err_code_t code, const char *msg,
                       const char *ref, size_t ref_len)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_error(&b, code, msg, ref, ref_len);
    send_text(srv, s, &b);
    mh_buf_free(&b);
    mh_metrics_error(&srv->metrics, code);
}

static void send_hello(mh_server_t *srv, mh_session_t *s)
{
    char token[MH_TOKEN_LEN + 1];
    mh_token_issue(srv->secret, srv->secret_len, s->id, mh_now_ms() / 1000, token);
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_hello(&b, s->id, token, s->resumed, &srv->limits);
    send_text(srv, s, &b);
    mh_buf_free(&b);
}

static void arm_idle_timer(mh_server_t *srv, mh_session_t *s, uint64_t after_us)
{
    if (srv->cfg->idle_timeout_s)
        lws_set_timer_usecs(s->wsi, (lws_usec_t)after_us);
}

static int on_established(mh_server_t *srv, struct lws *wsi, mh_conn_t *conn)
{
    mh_session_t *s = mh_xcalloc(1, sizeof(*s));
    conn->ws = s;
    s->wsi = wsi;
    mh_outq_init(&s->outq);
    mh_buf_init(&s->rx);
    s->last_app_us = mh_mono_us();
    mh_rate_init(&s->rate, srv->cfg->rate_per_s, srv->cfg->rate_burst, s->last_app_us);

    char token[256];
    int tlen = query_token(wsi, token, sizeof(token));
    uint64_t id = 0;
    if (tlen > 0 && mh_token_verify(srv->secret, srv->secret_len, token, (size_t)tlen,
                                    mh_now_ms() / 1000, srv->cfg->token_ttl_s, &id) == 0) {
        s->resumed = 1;
        mh_registry_note_id(srv->registry, id);
    } else
        id = mh_registry_alloc_id(srv->registry);
    s->id = id;

    mh_session_t *old = mh_registry_put(srv->registry, id, s);
    if (old) {
        mh_info("takeover", "id=%llu", (unsigned long long)id);
        start_close(srv, old, 4409);
    }
    s->registered = 1;
    srv->metrics.connections++;
    srv->metrics.connections_total++;
    send_hello(srv, s);
    s->backlog = mh_inbox_mem_count(srv->inbox, id) > 0;
    if (s->backlog)
        lws_callback_on_writable(wsi);
    arm_idle_timer(srv, s, (uint64_t)srv->cfg->idle_timeout_s * 1000000u);
    mh_debug("ws_open", "id=%llu resumed=%d", (unsigned long long)id, s->resumed);
    return 0;
}

static void on_closed(mh_server_t *srv, mh_conn_t *conn)
{
    mh_session_t *s = conn->ws;
    if (!s)
        return;
    if (s->registered)
        mh_registry_remove(srv->registry, s->id, s);
    requeue_to_inbox(srv, s);
    mh_outq_free(&s->outq);
    mh_buf_free(&s->rx);
    srv->metrics.connections--;
    mh_debug("ws_close", "id=%llu", (unsigned long long)s->id);
    free(s);
    conn->ws = NULL;
}

/* ---- requests ---- */

static void do_list(mh_server_t *srv, mh_session_t *s, const mh_request_t *req)
{
    uint64_t *ids;
    size_t n = mh_registry_ids(srv->registry, s->id, &ids);
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_list(&b, ids, n, req->ref, req->ref_len);
    free(ids);
    send_text(srv, s, &b);
    mh_buf_free(&b);
}

static void do_relay(mh_server_t *srv, mh_session_t *s, mh_request_t *req, uint64_t t0)
{
    mh_relay_result_t res;
    mh_relay_run(srv, s->id, req, t0, &res);
    if (req->ref && !s->closing) {
        mh_buf_t b;
        mh_buf_init(&b);
        mh_codec_relayed(&b, req->ref, req->ref_len, res.accepted, res.plan.unknown,
                         res.plan.n_unknown);
        send_text(srv, s, &b);
        mh_buf_free(&b);
    }
    mh_relay_result_free(&res);
}

static void handle_message(mh_server_t *srv, mh_session_t *s, const char *text, size_t len)
{
    uint64_t t0 = mh_mono_us();
    srv->metrics.frames_received_total++;
    srv->metrics.bytes_received_total += len;
    s->last_app_us = t0;
    mh_request_t req;
    mh_codec_error_t err;
    int rc = mh_codec_parse_ws(text, len, &srv->limits, &req, &err);
    if (!mh_rate_take(&s->rate, t0))
        send_error(srv, s, MH_ERR_RATE_LIMITED, "rate limit exceeded", req.ref, req.ref_len);
    else if (rc)
        send_error(srv, s, err.code, err.message, req.ref, req.ref_len);
    else {
        mh_buf_t b;
        mh_buf_init(&b);
        switch (req.type) {
        case MH_REQ_IDENTITY:
            mh_codec_identity(&b, s->id, req.ref, req.ref_len);
            send_text(srv, s, &b);
            break;
        case MH_REQ_PING:
            mh_codec_pong(&b, req.ref, req.ref_len);
            send_text(srv, s, &b);
            break;
        case MH_REQ_LIST:
            do_list(srv, s, &req);
            break;
        default:
            do_relay(srv, s, &req, t0);
            break;
        }
        mh_buf_free(&b);
    }
    mh_codec_request_free(&req);
}

static int on_receive(mh_server_t *srv, mh_session_t *s, struct lws *wsi, const void *in,
                      size_t len)
{
    if (lws_is_first_fragment(wsi)) {
        mh_buf_reset(&s->rx);
        s->rx_binary = lws_frame_is_binary(wsi);
    }
    if (s->closing)
        return 0; /* input after we decided to close is ignored */
    if (s->rx.len + len > srv->cfg->max_body_bytes + OVERSIZE_SLACK) {
        mh_buf_free(&s->rx);
        start_close(srv, s, 1009);
        return 0;
    }
    if (!s->rx_binary)
        mh_buf_append(&s->rx, in, len);
    else
        s->rx.len += len; /* count only: binary messages are refused whole */
    if (!lws_is_final_fragment(wsi))
        return 0;
    if (s->rx_binary) {
        s->last_app_us = mh_mono_us();
        srv->metrics.frames_received_total++;
        send_error(srv, s, MH_ERR_BAD_REQUEST, "binary frames are not accepted", NULL, 0);
        s->rx.len = 0;
        return 0;
    }
    handle_message(srv, s, s->rx.data ? s->rx.data : "", s->rx.len);
    mh_buf_reset(&s->rx);
    return 0;
}

static void on_timer(mh_server_t *srv, mh_session_t *s)
{
    uint64_t idle_us = (uint64_t)srv->cfg->idle_timeout_s * 1000000u;
    uint64_t quiet = mh_mono_us() - s->last_app_us;
    if (!idle_us || s->closing)
        return;
    if (quiet >= idle_us) {
        mh_info("idle_timeout", "id=%llu", (unsigned long long)s->id);
        start_close(srv, s, 4000);
    } else
        arm_idle_timer(srv, s, idle_us - quiet);
}

int mh_ws_callback(mh_server_t *srv, struct lws *wsi, int reason, mh_conn_t *conn, void *in,
                   size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        return on_established(srv, wsi, conn);
    case LWS_CALLBACK_RECEIVE:
        return conn->ws ? on_receive(srv, conn->ws, wsi, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return conn->ws ? on_writeable(srv, conn->ws) : 0;
    case LWS_CALLBACK_TIMER:
        if (conn->ws)
            on_timer(srv, conn->ws);
        return 0;
    case LWS_CALLBACK_CLOSED:
        on_closed(srv, conn);
        return 0;
    default:
        return 0;
    }
}

void mh_ws_close_all(mh_server_t *srv, int code, const char *reason)
{
    size_t cursor = 0;
    uint64_t id;
    void *v;
    size_t n = 0;
    mh_session_t **all = mh_xmalloc((mh_registry_count(srv->registry) + 1) * sizeof(*all));
    while (mh_registry_next(srv->registry, &cursor, &id, &v))
        all[n++] = v;
    for (size_t i = 0; i < n; i++)
        start_close(srv, all[i], code);
    free(all);
    (void)reason;
}
