/*
 * http_api: the HTTP endpoints on libwebsockets (see http_api.h).
 *
 * A request is answered in three steps: the LWS_CALLBACK_HTTP (and, for a
 * POST with a body, the BODY / BODY_COMPLETION callbacks) decide the
 * response into conn->http; the first WRITEABLE writes the headers, the
 * second the body, and then the transaction completes (keep-alive) or the
 * connection closes. Errors decided before the body is read still let the
 * body arrive (and discard it) so the connection stays in step.
 */
#include "msghub/http_api.h"

#include <libwebsockets.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "msghub/conntrack.h"
#include "msghub/http_status.h"
#include "msghub/log.h"
#include "msghub/lws_compat.h"
#include "msghub/relay.h"
#include "msghub/token.h"

extern const unsigned char mh_web_index[];
extern const size_t mh_web_index_len;
extern const unsigned char mh_client_js[];
extern const size_t mh_client_js_len;
extern const char mh_client_js_etag[];

#define BODY_SLACK (64 * 1024)

typedef enum {
    R_INDEX,
    R_CLIENT_JS,
    R_HEALTHZ,
    R_READYZ,
    R_METRICS,
    R_CLIENTS,
    R_RELAY,
    R_SESSIONS,
    R_WS
} route_t;

static const struct {
    const char *path;
    route_t route;
    int post; /* 1: POST, 0: GET */
    int auth; /* needs the API key */
} routes[] = {
    {"/", R_INDEX, 0, 0},        {"/msghub.js", R_CLIENT_JS, 0, 0}, {"/healthz", R_HEALTHZ, 0, 0},
    {"/readyz", R_READYZ, 0, 0}, {"/metrics", R_METRICS, 0, 0},     {"/clients", R_CLIENTS, 0, 1},
    {"/relay", R_RELAY, 1, 1},   {"/sessions", R_SESSIONS, 1, 1},   {"/ws", R_WS, 0, 0},
};

struct mh_http {
    struct lws *wsi;
    mh_handle_t *handle; /* for answers that arrive asynchronously */
    route_t route;
    int has_error; /* an error was decided before the body arrived */
    int status;
    mh_err_code_t err;
    char errmsg[96];
    const char *allow;             /* for 405 */
    int err_status;                /* an HTTP status other than the error code's own (411), or 0 */
    size_t reserved;               /* bytes of the memory budget held for this request's body */
    mh_mem_partial_t body_partial; /* while the body is being read (hub.h) */
    int close_after;
    int handled;   /* the request was dispatched: lws may signal its body's end again */
    int rx_paused; /* input stopped while an asynchronous answer is awaited */
    int phase;     /* 0 idle or reading, 1 headers due, 2 body due */
    const char *ctype;
    const char *cache; /* Cache-Control, NULL: no-store */
    const char *etag;
    mh_buf_t in;
    mh_buf_t out; /* LWS_PRE bytes of headroom, then the body */
};

static void out_reset(struct mh_http *h)
{
    static const unsigned char pre[LWS_PRE];
    mh_buf_reset(&h->out);
    mh_buf_append(&h->out, pre, LWS_PRE);
}

static void respond(struct lws *wsi, struct mh_http *h, int status, const char *ctype)
{
    h->status = status;
    h->ctype = ctype;
    h->phase = 1;
    if (h->rx_paused) {
        /* with its input stopped lws 4.1.6 does not call WRITEABLE either */
        h->rx_paused = 0;
        lws_rx_flow_control(wsi, 1);
    }
    lws_callback_on_writable(wsi);
}

static void respond_json(struct lws *wsi, struct mh_http *h, int status)
{
    respond(wsi, h, status, "application/json");
}

static void respond_error(mh_server_t *srv, struct lws *wsi, struct mh_http *h, mh_err_code_t code,
                          const char *message)
{
    mh_metrics_error(&srv->metrics, code);
    out_reset(h);
    mh_codec_http_error(&h->out, code, message);
    respond_json(wsi, h, h->err_status ? h->err_status : mh_err_http_status(code));
}

static void set_error(struct mh_http *h, mh_err_code_t code, const char *message)
{
    h->has_error = 1;
    h->err = code;
    snprintf(h->errmsg, sizeof(h->errmsg), "%s", message);
}

/* An error that ends the connection: its body (if any) is not read. */
static void set_fatal(struct mh_http *h, int status, mh_err_code_t code, const char *message)
{
    set_error(h, code, message);
    h->err_status = status;
    h->close_after = 1;
}

/* ---- header checks ---- */

static int is_post(struct lws *wsi)
{
    return lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
}

static int is_get(struct lws *wsi)
{
    return lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
}

static int authorized(mh_server_t *srv, struct lws *wsi)
{
    const char *key = srv->cfg->api_key;
    if (!key || !*key)
        return 1;
    char hdr[512];
    int n = lws_hdr_copy(wsi, hdr, sizeof(hdr), WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n < 7 || strncasecmp(hdr, "Bearer ", 7) != 0)
        return 0;
    return mh_token_equal_ct(hdr + 7, (size_t)n - 7, key, strlen(key));
}

static int json_content_type(struct lws *wsi)
{
    char ct[128];
    if (lws_hdr_copy(wsi, ct, sizeof(ct), WSI_TOKEN_HTTP_CONTENT_TYPE) <= 0)
        return 0;
    const char *want = "application/json";
    size_t n = strlen(want);
    if (strncasecmp(ct, want, n) != 0)
        return 0;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

static long long content_length(struct lws *wsi)
{
    char cl[32];
    if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return 0;
    char *end;
    long long v = strtoll(cl, &end, 10);
    return (*end || v < 0) ? -1 : v;
}

int mh_http_query_arg(struct lws *wsi, const char *name, char *out, size_t len)
{
    char arg[MH_HTTP_MAX_HEADER_BYTES + 1]; /* every fragment fits: no arg is skipped */
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment(wsi, arg, (int)sizeof(arg), WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            return MH_QUERY_ABSENT;
        int r = mh_query_match(arg, (size_t)n, name, out, len);
        if (r != MH_QUERY_ABSENT)
            return r;
    }
}

/* ---- handlers ---- */

/* Appends dir/name to out; 0 on success. */
static int append_file(mh_buf_t *out, const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        mh_buf_append(out, chunk, n);
    fclose(fp);
    return 0;
}

typedef struct http_ctx {
    mh_server_t *srv;
    mh_handle_t *hd;
} http_ctx_t;

static http_ctx_t *http_ctx(mh_server_t *srv, struct mh_http *h)
{
    http_ctx_t *c = mh_xmalloc(sizeof(*c));
    c->srv = srv;
    c->hd = mh_handle_ref(h->handle);
    return c;
}

/* Ends an asynchronous answer: the request if it is still there (else NULL), and the server. */
static struct mh_http *http_ctx_end(void *ud, mh_server_t **srv)
{
    http_ctx_t *c = ud;
    struct mh_http *h = mh_handle_get(c->hd);
    *srv = c->srv;
    mh_handle_unref(c->hd);
    free(c);
    return h;
}

static void clients_listed(void *ud, int status, uint64_t *ids, size_t n)
{
    mh_server_t *srv;
    struct mh_http *h = http_ctx_end(ud, &srv);
    if (h && status)
        respond_error(srv, h->wsi, h, MH_ERR_UNAVAILABLE, "presence store unavailable");
    else if (h) {
        out_reset(h);
        mh_codec_http_ids(&h->out, ids, n);
        respond_json(h->wsi, h, MH_HTTP_OK);
    }
    free(ids);
}

static void list_clients(mh_server_t *srv, struct lws *wsi, struct mh_http *h)
{
    mh_presence_list(&srv->presence, mh_now_ms(), clients_listed, http_ctx(srv, h));
}

/* The client library, cacheable: revalidated with its ETag, 304 when unchanged. */
static void serve_client_js(struct lws *wsi, struct mh_http *h)
{
    char inm[256];
    h->cache = "no-cache";
    h->etag = mh_client_js_etag;
    if (lws_hdr_copy(wsi, inm, sizeof(inm), WSI_TOKEN_HTTP_IF_NONE_MATCH) > 0 &&
        (strstr(inm, mh_client_js_etag) || strcmp(inm, "*") == 0)) {
        respond(wsi, h, MH_HTTP_NOT_MODIFIED, "text/javascript; charset=utf-8");
        return;
    }
    mh_buf_append(&h->out, mh_client_js, mh_client_js_len);
    respond(wsi, h, MH_HTTP_OK, "text/javascript; charset=utf-8");
}

static void handle_get(mh_server_t *srv, struct lws *wsi, struct mh_http *h)
{
    out_reset(h);
    switch (h->route) {
    case R_INDEX:
        if (!srv->cfg->web_root || append_file(&h->out, srv->cfg->web_root, "index.html"))
            mh_buf_append(&h->out, mh_web_index, mh_web_index_len);
        respond(wsi, h, MH_HTTP_OK, "text/html; charset=utf-8");
        return;
    case R_CLIENT_JS:
        serve_client_js(wsi, h);
        return;
    case R_HEALTHZ:
        mh_buf_puts(&h->out, "{\"status\":\"ok\"}");
        respond_json(wsi, h, MH_HTTP_OK);
        return;
    case R_READYZ:
        if (!mh_server_ready(srv)) {
            respond_error(srv, wsi, h, MH_ERR_UNAVAILABLE,
                          srv->draining ? "hub is shutting down" : "backplane unavailable");
            return;
        }
        mh_buf_puts(&h->out, "{\"status\":\"ready\"}");
        respond_json(wsi, h, MH_HTTP_OK);
        return;
    case R_METRICS:
        mh_metrics_render(&srv->metrics, &h->out);
        respond(wsi, h, MH_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8");
        return;
    case R_CLIENTS:
        list_clients(srv, wsi, h);
        return;
    default: {
        /* a browser cannot see why an upgrade failed: it can ask here whether its token is bad */
        char tok[MH_TOKEN_LEN + 1];
        int tlen = mh_http_query_arg(wsi, "token", tok, sizeof(tok));
        uint64_t id;
        if (tlen == MH_QUERY_TOO_LONG ||
            (tlen > 0 && mh_token_verify(srv->secret, srv->secret_len, tok, (size_t)tlen,
                                         mh_now_ms() / 1000, srv->cfg->token_ttl_s, &id) != 0))
            respond_error(srv, wsi, h, MH_ERR_UNAUTHORIZED, "invalid or expired token");
        else
            respond_error(srv, wsi, h, MH_ERR_BAD_REQUEST, "/ws expects a WebSocket upgrade");
        return;
    }
    }
}

static void relay_done(void *ud, int status, const mh_relay_result_t *res)
{
    mh_server_t *srv;
    struct mh_http *h = http_ctx_end(ud, &srv);
    if (!h)
        return;
    if (status) {
        char msg[160];
        mh_relay_refusal(status, res, "message could not be handed off durably, retry later", msg,
                         sizeof(msg));
        respond_error(srv, h->wsi, h, MH_ERR_UNAVAILABLE, msg);
        return;
    }
    out_reset(h);
    mh_codec_http_relayed(&h->out, res->msg_id, res->accepted, res->unknown, res->n_unknown);
    respond_json(h->wsi, h, MH_HTTP_OK);
}

static void handle_relay(mh_server_t *srv, struct lws *wsi, struct mh_http *h)
{
    uint64_t t0 = mh_mono_us();
    mh_request_t req;
    mh_codec_error_t err;
    if (mh_codec_parse_http_relay(h->in.data ? h->in.data : "", h->in.len, &srv->limits, &req,
                                  &err)) {
        mh_codec_request_free(&req);
        respond_error(srv, wsi, h, err.code, err.message);
        return;
    }
    mh_relay_start(srv, req.has_from ? req.from : 0, &req, t0, relay_done, http_ctx(srv, h));
    mh_codec_request_free(&req);
}

static void session_answer(mh_server_t *srv, struct mh_http *h, uint64_t id)
{
    char token[MH_TOKEN_LEN + 1];
    mh_token_issue(srv->secret, srv->secret_len, id, mh_now_ms() / 1000, token);
    out_reset(h);
    mh_codec_http_session(&h->out, id, token);
    respond_json(h->wsi, h, MH_HTTP_CREATED);
}

static void session_allocated(void *ud, int status, uint64_t id)
{
    mh_server_t *srv;
    struct mh_http *h = http_ctx_end(ud, &srv);
    if (h && status)
        respond_error(srv, h->wsi, h, MH_ERR_UNAVAILABLE, "id store unavailable, retry later");
    else if (h)
        session_answer(srv, h, id);
}

static void handle_sessions(mh_server_t *srv, struct lws *wsi, struct mh_http *h)
{
    mh_codec_error_t err;
    if (mh_codec_parse_http_sessions(h->in.data ? h->in.data : "", h->in.len, &err)) {
        respond_error(srv, wsi, h, err.code, err.message);
        return;
    }
    if (!mh_server_ready(srv)) {
        respond_error(srv, wsi, h, MH_ERR_UNAVAILABLE, "hub not ready, retry later");
        return;
    }
    mh_presence_alloc_id(&srv->presence, session_allocated, http_ctx(srv, h));
}

static void handle_complete(mh_server_t *srv, struct lws *wsi, struct mh_http *h)
{
    h->handled = 1;
    if (h->has_error)
        respond_error(srv, wsi, h, h->err, h->errmsg);
    else if (h->route == R_RELAY)
        handle_relay(srv, wsi, h);
    else if (h->route == R_SESSIONS)
        handle_sessions(srv, wsi, h);
    else
        handle_get(srv, wsi, h);
}

int mh_http_headers_have_nul(struct lws *wsi)
{
    char v[MH_HTTP_MAX_HEADER_BYTES + 1];
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        int n = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
        if (n <= 0 || t == WSI_TOKEN_HTTP_URI_ARGS)
            continue;
        n = lws_hdr_copy(wsi, v, (int)sizeof(v), (enum lws_token_indexes)t);
        if (n > 0 && memchr(v, '\0', (size_t)n))
            return 1;
    }
    return 0;
}

static int is_uri_token(int t)
{
    return t == WSI_TOKEN_GET_URI || t == WSI_TOKEN_POST_URI || t == WSI_TOKEN_HTTP_URI_ARGS ||
           t == WSI_TOKEN_OPTIONS_URI || t == WSI_TOKEN_HEAD_URI;
}

/* An HTTP/0.9 request line ("GET /path" and no version) leaves WSI_TOKEN_HTTP empty. */
static int has_version(struct lws *wsi)
{
    return lws_hdr_total_length(wsi, WSI_TOKEN_HTTP) > 0;
}

int mh_http_head_too_long(struct lws *wsi)
{
    int status = 0;
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        if (lws_hdr_total_length(wsi, (enum lws_token_indexes)t) < MH_HTTP_TOKEN_LIMIT)
            continue;
        if (is_uri_token(t))
            return MH_HTTP_URI_TOO_LONG;
        status = MH_HTTP_HEADERS_TOO_LARGE;
    }
    return status;
}

/*
 * Framing that could make us and a proxy in front disagree on where a
 * request ends: a header lws had to cut (414 / 431), a NUL inside a header
 * value, or Transfer-Encoding (lws 4.1.6 does not decode chunked request
 * bodies). Returns 1 when refused.
 */
static int framing_refused(struct lws *wsi, struct mh_http *h)
{
    int too_long = mh_http_head_too_long(wsi);
    if (!too_long && !has_version(wsi))
        set_fatal(h, MH_HTTP_BAD_REQUEST, MH_ERR_BAD_REQUEST,
                  "request line without an HTTP version");
    else if (too_long)
        set_fatal(h, too_long, MH_ERR_BAD_REQUEST,
                  too_long == MH_HTTP_URI_TOO_LONG ? "URI too long" : "request header too large");
    else if (mh_http_headers_have_nul(wsi))
        set_fatal(h, MH_HTTP_BAD_REQUEST, MH_ERR_BAD_REQUEST, "NUL byte in a header");
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) <= 0)
        return 0;
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
        set_fatal(h, MH_HTTP_BAD_REQUEST, MH_ERR_BAD_REQUEST,
                  "Content-Length and Transfer-Encoding together");
    else
        set_fatal(h, MH_HTTP_LENGTH_REQUIRED, MH_ERR_BAD_REQUEST,
                  "chunked request bodies are not supported: send Content-Length");
    return 1;
}

static void release_body(mh_server_t *srv, struct mh_http *h);

/*
 * Past the memory budget, the oldest partial message goes (hub.h): a body
 * being read gives its reservation back, the rest of it is read and
 * discarded, and the request is answered 503 at its end, then closed.
 */
static void body_drop(mh_server_t *srv, mh_mem_partial_t *p)
{
    struct mh_http *h = MH_CONTAINER_OF(p, struct mh_http, body_partial);
    release_body(srv, h);
    mh_buf_free(&h->in);
    set_fatal(h, MH_HTTP_UNAVAILABLE, MH_ERR_UNAVAILABLE,
              "hub memory budget exhausted: the body was dropped to make room, retry later");
}

/*
 * Holds the whole declared body against the memory budget before reading
 * it, after dropping older partial messages (WebSocket reassembly, other
 * bodies) if need be; 0 when refused.
 */
static int reserve_body(mh_server_t *srv, struct mh_http *h, size_t cl)
{
    if (!mh_mem_make_room(srv, cl, cl, NULL))
        return 0;
    mh_mem_add(srv, cl);
    h->reserved = cl;
    if (cl)
        mh_mem_partial_begin(srv, &h->body_partial, body_drop);
    return 1;
}

/* Checks route, method, auth and body headers; returns 1 when a body must be read first. */
static int on_request(mh_server_t *srv, struct lws *wsi, struct mh_http *h, const char *path)
{
    if (framing_refused(wsi, h))
        return 0;
    size_t i, n = sizeof(routes) / sizeof(routes[0]);
    for (i = 0; i < n && strcmp(routes[i].path, path) != 0; i++)
        ;
    long long cl = is_post(wsi) ? content_length(wsi) : 0;
    if (i == n) {
        set_error(h, MH_ERR_NOT_FOUND, "no such endpoint");
    } else {
        h->route = routes[i].route;
        if (routes[i].post ? !is_post(wsi) : !is_get(wsi)) {
            set_error(h, MH_ERR_METHOD_NOT_ALLOWED, "method not allowed");
            h->allow = routes[i].post ? "POST" : "GET";
        } else if (routes[i].auth && !authorized(srv, wsi)) {
            set_error(h, MH_ERR_UNAUTHORIZED, "missing or wrong API key");
        } else if (cl < 0) {
            set_error(h, MH_ERR_BAD_REQUEST, "bad Content-Length");
            h->close_after = 1;
        } else if ((unsigned long long)cl > srv->cfg->max_body_bytes + BODY_SLACK) {
            set_error(h, MH_ERR_BODY_TOO_LARGE, "request body too large");
            h->close_after = 1; /* the body is not read */
        } else if (routes[i].post && (cl > 0 || h->route == R_RELAY) && !json_content_type(wsi)) {
            set_error(h, MH_ERR_UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json");
        } else if (!reserve_body(srv, h, (size_t)cl)) {
            set_fatal(h, MH_HTTP_UNAVAILABLE, MH_ERR_UNAVAILABLE,
                      "hub memory budget exhausted, retry later");
        }
    }
    return cl > 0 && !h->close_after;
}

/* Gives the body's reservation back to the memory budget. */
static void release_body(mh_server_t *srv, struct mh_http *h)
{
    mh_mem_partial_end(srv, &h->body_partial);
    mh_mem_sub(srv, h->reserved);
    h->reserved = 0;
}

static void http_reset(mh_server_t *srv, struct mh_http *h)
{
    release_body(srv, h);
    h->has_error = 0;
    h->err_status = 0;
    h->allow = NULL;
    h->cache = h->etag = NULL;
    h->close_after = 0;
    h->handled = 0;
    h->phase = 0;
    mh_buf_reset(&h->in);
    out_reset(h);
}

/*
 * lws 4.1.6 signals BODY_COMPLETION again on every service pass while bytes
 * that followed the body (a pipelined request, a stray CRLF, chunk framing)
 * sit unread in its buffer. The request was handled once already: the
 * connection closes once the answer is written (Connection: close), and
 * while an asynchronous answer is awaited its input is stopped so lws does
 * not spin on the repeats.
 */
static void after_body(struct lws *wsi, struct mh_http *h)
{
    h->close_after = 1;
    if (h->phase == 0 && !h->rx_paused) {
        h->rx_paused = 1;
        lws_rx_flow_control(wsi, 0);
    }
}

/*
 * The status line, always ours (http_status.c): lws 4.1 has no reason
 * phrase for 431 (it writes "HTTP/1.1 431 "), answers "HTTP/1.0 414" for a
 * URI it had to cut (it never saw the version) and HTTP/1.0 to a request
 * without a version; one table keeps every answer, and the upgrade
 * refusals of ws.c, alike.
 */
static int put_status(unsigned status, unsigned char **p, unsigned char *end)
{
    int n = mh_http_status_line((char *)*p, (size_t)(end - *p), (int)status);
    if (n < 0)
        return -1;
    *p += n;
    return 0;
}

static int write_headers(struct lws *wsi, struct mh_http *h)
{
    unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start,
                                       *end = buf + sizeof(buf) - 1;
    size_t len = h->out.len - LWS_PRE;
    if (put_status((unsigned)h->status, &p, end) ||
        (h->ctype && lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                                  (const unsigned char *)h->ctype,
                                                  (int)strlen(h->ctype), &p, end)) ||
        lws_add_http_header_content_length(wsi, len, &p, end))
        return -1;
    const char *cache = h->cache ? h->cache : "no-store";
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)cache, (int)strlen(cache), &p, end))
        return -1;
    if (h->etag && lws_add_http_header_by_name(
                       wsi, (const unsigned char *)"etag:", (const unsigned char *)h->etag,
                       (int)strlen(h->etag), &p, end))
        return -1;
    if (h->allow && lws_add_http_header_by_name(
                        wsi, (const unsigned char *)"allow:", (const unsigned char *)h->allow,
                        (int)strlen(h->allow), &p, end))
        return -1;
    if (h->status == MH_HTTP_UNAUTHORIZED &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"www-authenticate:",
                                    (const unsigned char *)"Bearer", 6, &p, end))
        return -1;
    if (h->close_after && lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                                      (const unsigned char *)"close", 5, &p, end))
        return -1;
    return lws_finalize_write_http_header(wsi, start, &p, end) ? -1 : 0;
}

static int on_writeable(mh_server_t *srv, struct lws *wsi, struct mh_http *h)
{
    if (h->phase == 1) {
        if (write_headers(wsi, h))
            return -1;
        h->phase = 2;
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (h->phase != 2)
        return 0;
    size_t len = h->out.len - LWS_PRE;
    if (lws_write(wsi, (unsigned char *)h->out.data + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) <
        (int)len)
        return -1;
    h->phase = 0;
    release_body(srv, h); /* answered: the body's memory goes back now, not at the next request */
    mh_buf_free(&h->in);
    if (h->close_after)
        return -1;
    mh_conntrack_restart(srv->conntrack, wsi); /* the next request's deadline */
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static void http_free(mh_server_t *srv, mh_conn_t *conn)
{
    if (!conn->http)
        return;
    release_body(srv, conn->http);
    mh_handle_clear(conn->http->handle);
    mh_buf_free(&conn->http->in);
    mh_buf_free(&conn->http->out);
    free(conn->http);
    conn->http = NULL;
}

static struct mh_http *http_of(mh_conn_t *conn)
{
    if (!conn->http) {
        conn->http = mh_xcalloc(1, sizeof(struct mh_http));
        conn->http->handle = mh_handle_new(conn->http);
        mh_buf_init(&conn->http->in);
        mh_buf_init(&conn->http->out);
    }
    return conn->http;
}

int mh_http_callback(mh_server_t *srv, struct lws *wsi, int reason, mh_conn_t *conn, void *in,
                     size_t len)
{
    struct mh_http *h;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        h = http_of(conn);
        h->wsi = wsi;
        http_reset(srv, h);
        srv->metrics.http_requests_total++;
        if (!on_request(srv, wsi, h, (const char *)in))
            handle_complete(srv, wsi, h);
        return 0;
    case LWS_CALLBACK_HTTP_BODY:
        h = http_of(conn);
        if (h->handled) /* bytes after a request without Content-Length: not a body of ours */
            after_body(wsi, h);
        else if (!h->has_error) {
            if (h->in.len + len > srv->cfg->max_body_bytes + BODY_SLACK)
                set_error(h, MH_ERR_BODY_TOO_LARGE, "request body too large");
            else
                mh_buf_append(&h->in, in, len);
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        h = http_of(conn);
        mh_mem_partial_end(srv, &h->body_partial); /* read whole: it is work now, not droppable */
        if (h->handled)
            after_body(wsi, h);
        else
            handle_complete(srv, wsi, h);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return conn->http ? on_writeable(srv, wsi, conn->http) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        http_free(srv, conn);
        return 0;
    default:
        return 0;
    }
}

/* Formats a whole HTTP/1.1 400 in the error shape after LWS_PRE bytes of headroom. */
static void format_400(mh_buf_t *b, const char *message)
{
    static const unsigned char pre[LWS_PRE];
    mh_buf_append(b, pre, LWS_PRE);
    mh_http_append_refusal(b, MH_HTTP_BAD_REQUEST, MH_ERR_BAD_REQUEST, message);
}

int mh_http_refuse_versionless(struct lws *wsi)
{
    int uri = 0;
    for (int t = 0; t < WSI_TOKEN_COUNT && !uri; t++)
        uri = is_uri_token(t) && lws_hdr_total_length(wsi, (enum lws_token_indexes)t) > 0;
    if (!uri || has_version(wsi))
        return 0;
    mh_buf_t b;
    mh_buf_init(&b);
    format_400(&b, "request line without an HTTP version");
    /* a fresh socket's send buffer takes these few bytes whole; lws is not writing to it */
    ssize_t n = send(lws_get_socket_fd(wsi), b.data + LWS_PRE, b.len - LWS_PRE,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    mh_buf_free(&b);
    mh_server_t *srv = lws_context_user(lws_get_context(wsi));
    mh_metrics_error(&srv->metrics, MH_ERR_BAD_REQUEST);
    return 1;
}

/* Writes a whole HTTP/1.1 400 in the error shape as raw bytes; 0 on success. */
static int raw_refuse(mh_server_t *srv, struct lws *wsi)
{
    mh_buf_t b;
    mh_buf_init(&b);
    format_400(&b, "not an HTTP request");
    size_t len = b.len - LWS_PRE;
    int rc = lws_write(wsi, (unsigned char *)b.data + LWS_PRE, len, LWS_WRITE_RAW) == (int)len;
    mh_buf_free(&b);
    mh_metrics_error(&srv->metrics, MH_ERR_BAD_REQUEST);
    return rc ? 0 : -1;
}

int mh_http_raw_callback(struct lws *wsi, int reason, void *user, void *in, size_t len)
{
    mh_server_t *srv = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_RAW_ADOPT:
    case LWS_CALLBACK_RAW_RX: /* what it sent is not read: it gets one answer */
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_RAW_WRITEABLE:
        raw_refuse(srv, wsi);
        return -1;
    default:
        return 0;
    }
}
