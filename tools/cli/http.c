/*
 * http: a single request through lws' HTTP client on a libuv loop.
 *
 * The flow follows lws' client callbacks: APPEND_HANDSHAKE_HEADER adds our
 * headers and, for a body, marks it pending; CLIENT_HTTP_WRITEABLE writes the
 * body in chunks (the last one LWS_WRITE_HTTP_FINAL); the response status
 * comes with ESTABLISHED_CLIENT_HTTP and the body through
 * RECEIVE_CLIENT_HTTP -> lws_http_client_read() -> RECEIVE_CLIENT_HTTP_READ;
 * COMPLETED_CLIENT_HTTP (or the connection closing after a status) ends it.
 */
#include "http.h"

#include <stdio.h>
#include <string.h>

#include "loop.h"

#define CHUNK 16384
#define MAX_RESPONSE (64u << 20)

typedef struct req {
    cli_loop_t loop;
    uv_timer_t deadline;
    cli_http_t *h;
    const char *host;
    size_t sent;  /* body bytes written */
    int finished; /* response complete, or failed */
} req_t;

static void finish(req_t *r, const char *err)
{
    if (r->finished)
        return;
    r->finished = 1;
    if (err && !r->h->status)
        snprintf(r->h->err, sizeof(r->h->err), "%s", err);
    cli_loop_stop(&r->loop);
}

static int add_headers(struct lws *wsi, req_t *r, unsigned char **p, unsigned char *end)
{
    cli_http_t *h = r->h;
    char v[512];
    if (h->api_key) {
        int n = snprintf(v, sizeof(v), "Bearer %s", h->api_key);
        if (n < 0 || (size_t)n >= sizeof(v) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, (unsigned char *)v, n,
                                         p, end))
            return -1;
    }
    if (strcmp(h->method, "POST"))
        return 0;
    static const char ctype[] = "application/json";
    int n = snprintf(v, sizeof(v), "%zu", h->body ? h->body_len : 0);
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, (const unsigned char *)ctype,
                                     (int)sizeof(ctype) - 1, p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, (unsigned char *)v, n, p,
                                     end))
        return -1;
    if (h->body && h->body_len) {
        lws_client_http_body_pending(wsi, 1);
        lws_callback_on_writable(wsi);
    }
    return 0;
}

static int write_body(struct lws *wsi, req_t *r)
{
    cli_http_t *h = r->h;
    if (!h->body || r->sent >= h->body_len)
        return 0; /* lws may call again after the last chunk */
    unsigned char buf[LWS_PRE + CHUNK];
    size_t n = h->body_len - r->sent;
    if (n > CHUNK)
        n = CHUNK;
    int last = r->sent + n == h->body_len;
    memcpy(buf + LWS_PRE, h->body + r->sent, n);
    if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    r->sent += n;
    if (last)
        lws_client_http_body_pending(wsi, 0);
    else
        lws_callback_on_writable(wsi);
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    req_t *r = lws_context_user(lws_get_context(wsi));
    if (!r)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[256];
        finish(r, cli_connect_error(r->host, in, why, sizeof(why)));
        return 0;
    }
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **p = in;
        return add_headers(wsi, r, p, *p + len);
    }
    case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE:
        return write_body(wsi, r);
    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        r->h->status = (int)lws_http_client_http_response(wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
        if (r->h->resp.len + len > MAX_RESPONSE) {
            r->h->status = 0;
            finish(r, "response larger than 64 MiB");
            return -1;
        }
        mh_buf_append(&r->h->resp, in, len);
        return 0;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
        char buf[LWS_PRE + CHUNK];
        char *p = buf + LWS_PRE;
        int n = (int)sizeof(buf) - LWS_PRE;
        return lws_http_client_read(wsi, &p, &n) < 0 ? -1 : 0;
    }
    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
        finish(r, NULL);
        return 0;
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        /* a status without COMPLETED: the body ended with the connection */
        finish(r, "connection closed before a response arrived");
        return 0;
    default:
        return 0;
    }
}

static void on_deadline(uv_timer_t *t)
{
    req_t *r = t->data;
    char msg[64];
    snprintf(msg, sizeof(msg), "no complete response within %d s", r->h->timeout_s);
    r->h->status = 0;
    finish(r, msg);
}

static void on_stop(cli_loop_t *l)
{
    req_t *r = l->user;
    uv_close((uv_handle_t *)&r->deadline, NULL);
}

int cli_http_do(const cli_url_t *url, cli_http_t *h)
{
    static const struct lws_protocols protocols[] = {
        {"msghub-cli-http", callback, 0, 0, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    req_t r;
    memset(&r, 0, sizeof(r));
    r.h = h;
    r.host = url->host;
    h->status = 0;
    h->err[0] = '\0';
    mh_buf_init(&h->resp);
    if (cli_loop_init(&r.loop, protocols, &r, h->verbose)) {
        snprintf(h->err, sizeof(h->err), "cannot start the client");
        return -1;
    }
    r.loop.on_stop = on_stop;
    uv_timer_init(&r.loop.uv, &r.deadline);
    r.deadline.data = &r;
    uv_timer_start(&r.deadline, on_deadline, (uint64_t)h->timeout_s * 1000u, 0);

    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof(ci));
    ci.context = r.loop.lws;
    ci.address = url->host;
    ci.port = url->port;
    ci.path = h->path;
    ci.host = url->authority;
    ci.method = h->method;
    ci.protocol = protocols[0].name; /* binds our callback; without it lws swallows the body */
    ci.ssl_connection = LCCSCF_HTTP_NO_FOLLOW_REDIRECT;
    ci.alpn = "http/1.1";
    if (!lws_client_connect_via_info(&ci) && !r.finished) {
        char why[256];
        finish(&r, cli_connect_error(url->host, NULL, why, sizeof(why)));
    }
    cli_loop_run(&r.loop);
    if (!h->status && !h->err[0])
        snprintf(h->err, sizeof(h->err), "no response");
    return h->status ? 0 : -1;
}
