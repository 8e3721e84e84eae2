/*
 * ws: the libwebsockets side of WebSocket connections: the upgrade checks,
 * the reassembly of fragmented messages, and the requests of the client
 * protocol (identity, list, relay, ping, ack). Queues, the log cursor and
 * closing live in session.c and session_log.c; ping / pong and idle
 * deadlines in liveness.c.
 */
#include "msghub/ws.h"

#include <libwebsockets.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "msghub/http_api.h"
#include "msghub/http_status.h"
#include "msghub/json.h"
#include "msghub/liveness.h"
#include "msghub/log.h"
#include "msghub/lws_compat.h"
#include "msghub/query.h"
#include "msghub/relay.h"
#include "msghub/session.h"
#include "msghub/token.h"

#define OVERSIZE_SLACK (64 * 1024)
#define RX_KEEP_BYTES (64 * 1024) /* a reassembly buffer bigger than this is freed after use */
#define MH_CLOSE_MAX_PAYLOAD 125

/* ---- upgrade checks ---- */

/* The value of ?token= in out and query.h's token length rule. */
static int query_token(struct lws *wsi, char *out, size_t len)
{
    return mh_query_token_len(mh_http_query_arg(wsi, "token", out, len));
}

/* Parses ?since and ?ack into o; the message of the 400 when they are malformed. */
static const char *parse_opts(struct lws *wsi, int has_token, mh_session_opts_t *o)
{
    char v[32];
    memset(o, 0, sizeof(*o));
    int n = mh_http_query_arg(wsi, "ack", v, sizeof(v));
    if (mh_query_parse_ack(n, v, &o->ack_auto))
        return "ack must be client or auto";
    n = mh_http_query_arg(wsi, "since", v, sizeof(v));
    if (n == MH_QUERY_ABSENT)
        return NULL;
    if (!has_token)
        return "since needs a token";
    if (n < 0 || mh_query_parse_since(v, (size_t)n, &o->since))
        return "since must be a decimal seq from 0 to the id's highest seq";
    return NULL;
}

/* 400 for a malformed since / ack, or a since above the id's seq when the log can tell now. */
static int check_opts(mh_server_t *srv, struct lws *wsi, int tlen, uint64_t id, mh_err_code_t *code,
                      const char **msg)
{
    mh_session_opts_t o;
    uint64_t last;
    *msg = parse_opts(wsi, tlen > 0, &o);
    if (!*msg && o.since && mh_msglog_last_seq_now(&srv->log, id, &last) == 0 && o.since > last)
        *msg = "since is above this id's highest seq";
    if (!*msg)
        return 0;
    *code = MH_ERR_BAD_REQUEST;
    return MH_HTTP_BAD_REQUEST;
}

int mh_ws_check_upgrade(mh_server_t *srv, struct lws *wsi, mh_err_code_t *code, const char **msg)
{
    int too_long = mh_http_head_too_long(wsi);
    if (too_long) {
        *code = MH_ERR_BAD_REQUEST;
        *msg = too_long == MH_HTTP_URI_TOO_LONG ? "URI too long" : "request header too large";
        return too_long;
    }
    if (mh_http_headers_have_nul(wsi)) {
        *code = MH_ERR_BAD_REQUEST;
        *msg = "NUL byte in a header";
        return MH_HTTP_BAD_REQUEST;
    }
    char uri[64];
    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) < 0 || strcmp(uri, "/ws") != 0) {
        *code = MH_ERR_NOT_FOUND;
        *msg = "WebSocket endpoint is /ws";
        return MH_HTTP_NOT_FOUND;
    }
    char origin[256];
    if (srv->cfg->allowed_origins &&
        lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) > 0 &&
        !mh_config_origin_allowed(srv->cfg, origin)) {
        *code = MH_ERR_FORBIDDEN;
        *msg = "origin not allowed";
        return MH_HTTP_FORBIDDEN;
    }
    if (!srv->secret) { /* a token cannot be checked yet: not a 401 */
        *code = MH_ERR_UNAVAILABLE;
        *msg = "token secret not agreed yet";
        return MH_HTTP_UNAVAILABLE;
    }
    char token[256];
    int tlen = query_token(wsi, token, sizeof(token));
    uint64_t id = 0;
    if (tlen == 0 ||
        (tlen > 0 && mh_token_verify(srv->secret, srv->secret_len, token, (size_t)tlen,
                                     mh_now_ms() / 1000, srv->cfg->token_ttl_s, &id) != 0)) {
        *code = MH_ERR_UNAUTHORIZED;
        *msg = "invalid or expired token";
        return MH_HTTP_UNAUTHORIZED;
    }
    if (tlen <= 0 && srv->cfg->require_token) {
        *code = MH_ERR_UNAUTHORIZED;
        *msg = "a session token is required";
        return MH_HTTP_UNAUTHORIZED;
    }
    int status = check_opts(srv, wsi, tlen, id, code, msg);
    if (status)
        return status;
    if (!mh_server_ready(srv) || srv->metrics.connections >= srv->cfg->max_connections) {
        *code = MH_ERR_UNAVAILABLE;
        *msg = srv->draining           ? "hub is shutting down"
               : !mh_server_ready(srv) ? "backplane unavailable"
                                       : "too many connections";
        return MH_HTTP_UNAVAILABLE;
    }
    return 0;
}

/* ---- refusals ---- */

/*
 * The whole response is built by mh_http_append_refusal, status line
 * included: lws' header helpers take the HTTP version from the request,
 * which lws has not set yet at LWS_CALLBACK_HTTP_CONFIRM_UPGRADE (they
 * would write "HTTP/1.0").
 */
int mh_ws_refuse(mh_server_t *srv, struct lws *wsi, int status, mh_err_code_t code,
                 const char *message)
{
    mh_metrics_error(&srv->metrics, code);
    mh_buf_t out;
    mh_buf_init(&out);
    static const unsigned char pre[LWS_PRE];
    mh_buf_append(&out, pre, LWS_PRE);
    mh_http_append_refusal(&out, status, code, message);
    size_t len = out.len - LWS_PRE;
    int n = lws_write(wsi, (unsigned char *)out.data + LWS_PRE, len, LWS_WRITE_HTTP_HEADERS);
    mh_buf_free(&out);
    return n == (int)len ? 1 : -1;
}

/* ---- requests ---- */

/* An asynchronous reply: the session's handle and a copy of the request's ref. */
typedef struct reply_ctx {
    mh_server_t *srv;
    mh_handle_t *h;
    uint64_t id;
    size_t ref_len;
    char ref[]; /* ref_len bytes, not NUL-terminated; ref_len 0 = no ref */
} reply_ctx_t;

static reply_ctx_t *reply_ctx_new(mh_server_t *srv, mh_session_t *s, const mh_request_t *req)
{
    size_t n = req->ref ? req->ref_len : 0;
    reply_ctx_t *c = mh_xmalloc(sizeof(*c) + n);
    c->srv = srv;
    c->h = mh_handle_ref(s->handle);
    c->id = s->id;
    c->ref_len = n;
    if (n)
        memcpy(c->ref, req->ref, n);
    return c;
}

static const char *ctx_ref(const reply_ctx_t *c)
{
    return c->ref_len ? c->ref : NULL;
}

static void send_list(mh_server_t *srv, mh_session_t *s, const uint64_t *ids, size_t n,
                      const char *ref, size_t ref_len)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_list(&b, ids, n, ref, ref_len);
    mh_session_send_text(srv, s, &b);
    mh_buf_free(&b);
}

static void listed(void *ud, int status, uint64_t *ids, size_t n)
{
    reply_ctx_t *c = ud;
    mh_session_t *s = mh_handle_get(c->h);
    if (s && status)
        mh_session_send_error(c->srv, s, MH_ERR_UNAVAILABLE,
                              "presence store unavailable, retry later", ctx_ref(c), c->ref_len);
    else if (s) {
        size_t w = 0; /* drop the requester */
        for (size_t i = 0; i < n; i++)
            if (ids[i] != c->id)
                ids[w++] = ids[i];
        send_list(c->srv, s, ids, w, ctx_ref(c), c->ref_len);
    }
    free(ids);
    mh_handle_unref(c->h);
    free(c);
}

static void do_list(mh_server_t *srv, mh_session_t *s, const mh_request_t *req)
{
    mh_presence_list(&srv->presence, mh_now_ms(), listed, reply_ctx_new(srv, s, req));
}

static void relayed(void *ud, int status, const mh_relay_result_t *res)
{
    reply_ctx_t *c = ud;
    mh_session_t *s = mh_handle_get(c->h);
    if (s && status) {
        char msg[160];
        mh_relay_refusal(status, res, "backplane unavailable: not relayed, retry later", msg,
                         sizeof(msg));
        mh_session_send_error(c->srv, s, MH_ERR_UNAVAILABLE, msg, ctx_ref(c), c->ref_len);
    } else if (s && c->ref_len) {
        mh_buf_t b;
        mh_buf_init(&b);
        mh_codec_relayed(&b, c->ref, c->ref_len, res->accepted, res->unknown, res->n_unknown);
        mh_session_send_text(c->srv, s, &b);
        mh_buf_free(&b);
    }
    mh_handle_unref(c->h);
    free(c);
}

static void reply_simple(mh_server_t *srv, mh_session_t *s, const mh_request_t *req)
{
    mh_buf_t b;
    mh_buf_init(&b);
    if (req->type == MH_REQ_IDENTITY)
        mh_codec_identity(&b, s->id, req->ref, req->ref_len);
    else
        mh_codec_pong(&b, req->ref, req->ref_len);
    mh_session_send_text(srv, s, &b);
    mh_buf_free(&b);
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
        mh_session_send_error(srv, s, MH_ERR_RATE_LIMITED, "rate limit exceeded", req.ref,
                              req.ref_len);
    else if (rc)
        mh_session_send_error(srv, s, err.code, err.message, req.ref, req.ref_len);
    else if (req.type == MH_REQ_LIST)
        do_list(srv, s, &req);
    else if (req.type == MH_REQ_RELAY)
        mh_relay_start(srv, s->id, &req, t0, relayed, reply_ctx_new(srv, s, &req));
    else if (req.type == MH_REQ_ACK)
        mh_session_ack(srv, s, req.seq, req.ref, req.ref_len);
    else
        reply_simple(srv, s, &req);
    mh_codec_request_free(&req);
}

/*
 * Gives the reassembly buffer's bytes back to the memory budget and empties
 * it; one that grew past RX_KEEP_BYTES (a big message) is freed, not kept
 * for the connection's life.
 */
static void rx_release(mh_server_t *srv, mh_session_t *s)
{
    if (!s->rx_binary)
        mh_mem_sub(srv, s->rx.len);
    if (s->rx.cap > RX_KEEP_BYTES)
        mh_buf_free(&s->rx);
    else
        mh_buf_reset(&s->rx);
    mh_mem_partial_end(srv, &s->rx_partial);
}

/* Past the memory budget, the oldest partial message goes (hub.h): its connection with it (1013).
 */
static void partial_drop(mh_server_t *srv, mh_mem_partial_t *p)
{
    mh_session_t *s = MH_CONTAINER_OF(p, mh_session_t, rx_partial);
    rx_release(srv, s);
    mh_buf_free(&s->rx);
    mh_session_close(srv, s, MH_CLOSE_TRY_AGAIN_LATER);
}

/*
 * 1 when len more bytes of a text message of total bytes fit the budget,
 * after dropping the oldest partial messages of other connections (and
 * HTTP bodies being read) if need be.
 */
static int rx_fits(mh_server_t *srv, mh_session_t *s, size_t total, size_t len)
{
    return mh_mem_make_room(srv, total, len, &s->rx_partial);
}

/*
 * Buffers one piece of a message; returns 0, or -1 when the session was
 * closed instead: 1009 past the size cap, 1013 when a message larger than
 * MH_MEM_SMALL no longer fits the memory budget.
 */
static int rx_append(mh_server_t *srv, mh_session_t *s, const void *in, size_t len)
{
    int code = 0;
    if (s->rx.len + len > srv->cfg->max_body_bytes + OVERSIZE_SLACK)
        code = MH_CLOSE_TOO_BIG;
    else if (!s->rx_binary && !rx_fits(srv, s, s->rx.len + len, len))
        code = MH_CLOSE_TRY_AGAIN_LATER;
    if (code) {
        rx_release(srv, s);
        mh_buf_free(&s->rx);
        mh_session_close(srv, s, code);
        return -1;
    }
    if (s->rx_binary) {
        s->rx.len += len; /* count only: binary messages are refused whole */
        return 0;
    }
    mh_buf_append(&s->rx, in, len);
    mh_mem_add(srv, len);
    return 0;
}

static void binary_done(mh_server_t *srv, mh_session_t *s)
{
    s->last_app_us = mh_mono_us();
    srv->metrics.frames_received_total++;
    if (!mh_rate_take(&s->rate, s->last_app_us)) /* every frame counts */
        mh_session_send_error(srv, s, MH_ERR_RATE_LIMITED, "rate limit exceeded", NULL, 0);
    else
        mh_session_send_error(srv, s, MH_ERR_BAD_REQUEST, "binary frames are not accepted", NULL,
                              0);
    s->rx.len = 0;
}

static int on_receive(mh_server_t *srv, mh_session_t *s, struct lws *wsi, const void *in,
                      size_t len)
{
    if (s->closing)
        return 0; /* input after we decided to close is ignored */
    if (lws_is_first_fragment(wsi)) {
        rx_release(srv, s);
        s->rx_binary = lws_frame_is_binary(wsi);
    }
    if (rx_append(srv, s, in, len))
        return 0;
    if (!lws_is_final_fragment(wsi)) {
        if (!s->rx_binary)
            mh_mem_partial_begin(srv, &s->rx_partial, partial_drop);
        return 0;
    }
    if (s->rx_binary) {
        binary_done(srv, s);
        return 0;
    }
    if (!s->opened && !mh_rate_take(&s->rate, mh_mono_us()))
        mh_session_send_error(srv, s, MH_ERR_RATE_LIMITED, "rate limit exceeded", NULL, 0);
    else if (!s->opened)
        mh_session_send_error(srv, s, MH_ERR_UNAVAILABLE, "session not ready yet", NULL, 0);
    else
        handle_message(srv, s, s->rx.data ? s->rx.data : "", s->rx.len);
    rx_release(srv, s);
    return 0;
}

/* ---- the peer's close frame (RFC 6455 5.5.1, 7.4) ---- */

/* 1 when a close code may be sent by a peer: 1000-1003, 1007-1014 (IANA), 3000-4999. */
static int close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

static int close_payload_valid(const unsigned char *p, size_t len)
{
    if (len == 0)
        return 1;
    if (len == 1 || len > MH_CLOSE_MAX_PAYLOAD)
        return 0;
    return close_code_valid((unsigned)p[0] << 8 | p[1]) && mh_json_utf8_valid(p + 2, len - 2);
}

/*
 * lws 4.1.6 echoes a close payload it does not understand (code 5000, one
 * byte, a reason that is not UTF-8). Answer 1002 ourselves instead and drop
 * the connection; returns the callback's result.
 */
static int on_peer_close(mh_server_t *srv, mh_session_t *s, const void *in, size_t len)
{
    if (s && s->close_sent)
        return -1; /* the peer answers the close frame we wrote: lws must not send another */
    if (close_payload_valid(in, len))
        return 0;
    static const char why[] = "protocol error";
    unsigned char buf[LWS_PRE + 2 + sizeof(why)], *p = buf + LWS_PRE;
    p[0] = MH_CLOSE_PROTOCOL_ERROR >> 8;
    p[1] = MH_CLOSE_PROTOCOL_ERROR & 0xff;
    memcpy(p + 2, why, sizeof(why) - 1);
    if (s) {
        mh_session_close(srv, s, MH_CLOSE_PROTOCOL_ERROR);
        s->close_sent = 1;
        lws_write(s->wsi, p, sizeof(why) + 1, (enum lws_write_protocol)MH_LWS_WRITE_CLOSE);
    }
    return -1;
}

static int on_established(mh_server_t *srv, struct lws *wsi, mh_conn_t *conn)
{
    char token[256];
    int tlen = query_token(wsi, token, sizeof(token));
    uint64_t id = 0;
    if (tlen > 0 && mh_token_verify(srv->secret, srv->secret_len, token, (size_t)tlen,
                                    mh_now_ms() / 1000, srv->cfg->token_ttl_s, &id) != 0)
        id = 0;
    mh_session_opts_t opts;
    if (parse_opts(wsi, id != 0, &opts)) /* checked before the upgrade: cannot happen */
        memset(&opts, 0, sizeof(opts));
    conn->ws = mh_session_open(srv, wsi, id, &opts);
    mh_live_established(srv, wsi, conn);
    return 0;
}

int mh_ws_callback(mh_server_t *srv, struct lws *wsi, int reason, mh_conn_t *conn, void *in,
                   size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        return on_established(srv, wsi, conn);
    case LWS_CALLBACK_RECEIVE:
        return conn->ws ? on_receive(srv, conn->ws, wsi, in, len) : -1;
    case LWS_CALLBACK_RECEIVE_PONG:
        mh_live_pong(conn);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        int rc = mh_live_writeable(srv, wsi, conn);
        if (rc)
            return rc < 0 ? -1 : 0;
        return conn->ws ? mh_session_writeable(srv, conn->ws) : 0;
    }
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return on_peer_close(srv, conn->ws, in, len);
    case LWS_CALLBACK_CLOSED:
        mh_live_gone(srv, conn);
        if (conn->ws) {
            rx_release(srv, conn->ws); /* a partial message goes with its connection */
            mh_session_closed(srv, conn->ws);
        }
        conn->ws = NULL;
        return 0;
    default:
        return 0;
    }
}

void mh_ws_close_all(mh_server_t *srv, int code)
{
    size_t cursor = 0, n = 0;
    uint64_t id;
    void *v;
    mh_session_t **all = mh_xmalloc((mh_registry_count(srv->registry) + 1) * sizeof(*all));
    while (mh_registry_next(srv->registry, &cursor, &id, &v))
        all[n++] = v;
    for (size_t i = 0; i < n; i++)
        mh_session_close(srv, all[i], code);
    free(all);
}
