/*
 * ws: the libwebsockets side of WebSocket connections: the upgrade checks,
 * the reassembly of fragmented messages, and the requests of the client
 * protocol (identity, list, relay, ping, ack). Queues, the log cursor and
 * closing live in session.c and session_log.c.
 */
#include "msghub/ws.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "msghub/http_api.h"
#include "msghub/log.h"
#include "msghub/redis_store.h"
#include "msghub/relay.h"
#include "msghub/session.h"
#include "msghub/token.h"

#define OVERSIZE_SLACK (64 * 1024)
#define QUERY_ARG_MAX 4100 /* every URI argument fits: lws keeps at most 4096 header bytes */
#define SINCE_DIGITS_MAX 20

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

/*
 * Finds the query argument `name` (as "name=value" or a bare "name") and
 * copies its decoded value into out; returns its length, or -1 when absent.
 */
static int query_arg(struct lws *wsi, const char *name, char *out, size_t len)
{
    char buf[QUERY_ARG_MAX];
    size_t nlen = strlen(name);
    for (int i = 0; lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i) > 0; i++) {
        int n = lws_hdr_copy_fragment(wsi, buf, (int)sizeof(buf), WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0 || strncmp(buf, name, nlen) != 0 || (buf[nlen] != '=' && buf[nlen] != '\0'))
            continue;
        const char *v = buf[nlen] == '=' ? buf + nlen + 1 : buf + nlen;
        size_t vlen = strlen(v);
        if (vlen >= len)
            vlen = len - 1; /* too long for any valid value: still invalid when cut */
        memcpy(out, v, vlen);
        out[vlen] = '\0';
        return (int)vlen;
    }
    return -1;
}

/* ?since: decimal digits, at most 2^64-1; -1 when malformed. */
static int parse_since(const char *v, uint64_t *out)
{
    size_t n = strlen(v);
    if (n == 0 || n > SINCE_DIGITS_MAX)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        unsigned d = (unsigned)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

/* Parses ?since and ?ack into o; the message of the 400 when they are malformed. */
static const char *parse_opts(struct lws *wsi, int has_token, mh_session_opts_t *o)
{
    char v[32];
    memset(o, 0, sizeof(*o));
    int n = query_arg(wsi, "ack", v, sizeof(v));
    if (n >= 0 && strcmp(v, "client") != 0 && strcmp(v, "auto") != 0)
        return "ack must be client or auto";
    o->ack_auto = n >= 0 && strcmp(v, "auto") == 0;
    if (query_arg(wsi, "since", v, sizeof(v)) < 0)
        return NULL;
    if (!has_token)
        return "since needs a token";
    if (parse_since(v, &o->since))
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
    return 400;
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
    if (!srv->secret) { /* a token cannot be checked yet: not a 401 */
        *code = MH_ERR_UNAVAILABLE;
        *msg = "token secret not agreed yet";
        return 503;
    }
    char token[256];
    int tlen = query_token(wsi, token, sizeof(token));
    uint64_t id = 0;
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
    int status = check_opts(srv, wsi, tlen, id, code, msg);
    if (status)
        return status;
    if (!mh_server_ready(srv) || srv->metrics.connections >= srv->cfg->max_connections) {
        *code = MH_ERR_UNAVAILABLE;
        *msg = srv->draining           ? "hub is shutting down"
               : !mh_server_ready(srv) ? "backplane unavailable"
                                       : "too many connections";
        return 503;
    }
    return 0;
}

/* ---- refusals ---- */

#define REFUSAL_HEAD_MAX 512

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 503:
        return "Service Unavailable";
    default:
        return status < 500 ? "Client Error" : "Server Error";
    }
}

/*
 * The whole response is built here, status line included: lws' header
 * helpers take the HTTP version from the request, which lws has not set yet
 * at LWS_CALLBACK_HTTP_CONFIRM_UPGRADE (they would write "HTTP/1.0").
 */
int mh_ws_refuse(mh_server_t *srv, struct lws *wsi, int status, mh_err_code_t code,
                 const char *message)
{
    mh_metrics_error(&srv->metrics, code);
    mh_buf_t body, out;
    mh_buf_init(&body);
    mh_buf_init(&out);
    mh_codec_http_error(&body, code, message);
    static const unsigned char pre[LWS_PRE];
    mh_buf_reserve(&out, LWS_PRE + REFUSAL_HEAD_MAX + body.len);
    mh_buf_append(&out, pre, LWS_PRE);
    mh_buf_printf(&out,
                  "HTTP/1.1 %d %s\r\n"
                  "content-type: application/json\r\n"
                  "content-length: %zu\r\n"
                  "cache-control: no-store\r\n"
                  "%s"
                  "connection: close\r\n\r\n",
                  status, reason_phrase(status), body.len,
                  status == 401 ? "www-authenticate: Bearer\r\n" : "");
    mh_buf_append(&out, body.data, body.len);
    size_t len = out.len - LWS_PRE;
    int n = lws_write(wsi, (unsigned char *)out.data + LWS_PRE, len, LWS_WRITE_HTTP_HEADERS);
    mh_buf_free(&body);
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

static void send_error(mh_server_t *srv, mh_session_t *s, mh_err_code_t code, const char *msg,
                       const char *ref, size_t ref_len)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_error(&b, code, msg, ref, ref_len);
    mh_session_send_text(srv, s, &b);
    mh_buf_free(&b);
    mh_metrics_error(&srv->metrics, code);
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
        send_error(c->srv, s, MH_ERR_UNAVAILABLE, "presence store unavailable, retry later",
                   ctx_ref(c), c->ref_len);
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
    if (srv->distributed) {
        mh_redis_list(srv->redis, mh_now_ms(), listed, reply_ctx_new(srv, s, req));
        return;
    }
    uint64_t *ids;
    size_t n = mh_registry_ids(srv->registry, s->id, &ids);
    send_list(srv, s, ids, n, req->ref, req->ref_len);
    free(ids);
}

static void relayed(void *ud, int status, const mh_relay_result_t *res)
{
    reply_ctx_t *c = ud;
    mh_session_t *s = mh_handle_get(c->h);
    if (s && status)
        send_error(c->srv, s, MH_ERR_UNAVAILABLE, "backplane unavailable: not relayed, retry later",
                   ctx_ref(c), c->ref_len);
    else if (s && c->ref_len) {
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
        send_error(srv, s, MH_ERR_RATE_LIMITED, "rate limit exceeded", req.ref, req.ref_len);
    else if (rc)
        send_error(srv, s, err.code, err.message, req.ref, req.ref_len);
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

static int on_receive(mh_server_t *srv, mh_session_t *s, struct lws *wsi, const void *in,
                      size_t len)
{
    if (s->closing)
        return 0; /* input after we decided to close is ignored */
    if (lws_is_first_fragment(wsi)) {
        mh_buf_reset(&s->rx);
        s->rx_binary = lws_frame_is_binary(wsi);
    }
    if (s->rx.len + len > srv->cfg->max_body_bytes + OVERSIZE_SLACK) {
        mh_buf_free(&s->rx);
        mh_session_close(srv, s, 1009);
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
    if (!s->opened)
        send_error(srv, s, MH_ERR_UNAVAILABLE, "session not ready yet", NULL, 0);
    else
        handle_message(srv, s, s->rx.data ? s->rx.data : "", s->rx.len);
    mh_buf_reset(&s->rx);
    return 0;
}

/* ---- liveness ---- */

static void arm_idle_timer(mh_server_t *srv, mh_session_t *s, uint64_t after_us)
{
    if (srv->cfg->idle_timeout_s)
        lws_set_timer_usecs(s->wsi, (lws_usec_t)after_us);
}

static void on_timer(mh_server_t *srv, mh_session_t *s)
{
    uint64_t idle_us = (uint64_t)srv->cfg->idle_timeout_s * 1000000u;
    uint64_t quiet = mh_mono_us() - s->last_app_us;
    if (!idle_us || s->closing)
        return;
    if (quiet >= idle_us) {
        mh_info("idle_timeout", "id=%llu", (unsigned long long)s->id);
        mh_session_close(srv, s, 4000);
    } else
        arm_idle_timer(srv, s, idle_us - quiet);
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
    arm_idle_timer(srv, conn->ws, (uint64_t)srv->cfg->idle_timeout_s * 1000000u);
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
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return conn->ws ? mh_session_writeable(srv, conn->ws) : 0;
    case LWS_CALLBACK_TIMER:
        if (conn->ws)
            on_timer(srv, conn->ws);
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* the peer answers the close frame we wrote ourselves: lws must not send another */
        return conn->ws && conn->ws->close_sent ? -1 : 0;
    case LWS_CALLBACK_CLOSED:
        if (conn->ws)
            mh_session_closed(srv, conn->ws);
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
