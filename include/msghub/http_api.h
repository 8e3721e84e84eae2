/*
 * http_api: the HTTP endpoints (POST /relay, POST /sessions, GET /clients,
 * /healthz, /readyz, /metrics, /) on libwebsockets. Each request's state
 * lives in an mh_http allocated on first use and freed when the
 * connection closes.
 */
#ifndef MSGHUB_HTTP_API_H
#define MSGHUB_HTTP_API_H

#include <stddef.h>

#include "msghub/conn.h"
#include "msghub/hub.h"
#include "msghub/query.h"

struct lws;

/* Bytes of request headers libwebsockets keeps per connection (URI included). */
#define MH_HTTP_MAX_HEADER_BYTES 4096
/*
 * Longest value lws keeps of one known header (the URI and the query count
 * as headers). lws truncates a longer one and goes on parsing instead of
 * dropping the connection, so the hub can answer 414 / 431: a value this
 * long counts as too long. Below MH_HTTP_MAX_HEADER_BYTES.
 */
#define MH_HTTP_TOKEN_LIMIT 2048

/*
 * Copies the decoded value of query parameter name (e.g. "token") into
 * out[len], NUL-terminated. Returns its length, MH_QUERY_ABSENT, or
 * MH_QUERY_TOO_LONG when it is there but does not fit (never "absent").
 * A bare "name" without '=' counts as present and empty (query.h: the
 * matching of each of lws' fragments).
 */
int mh_http_query_arg(struct lws *wsi, const char *name, char *out, size_t len);

/* 1 when a request header's value holds a NUL byte (refused: 400), else 0. */
int mh_http_headers_have_nul(struct lws *wsi);

/* 414 when the URI or query reached MH_HTTP_TOKEN_LIMIT, 431 for another header, else 0. */
int mh_http_head_too_long(struct lws *wsi);

/*
 * An HTTP/0.9 request line ("GET /path\r\n", no version) leaves lws
 * waiting for headers that never come, without a callback: called for a
 * connection whose request stalled, it writes a 400 straight to the socket
 * and returns 1 when the request has a URI and no version (the caller
 * closes it), else 0.
 */
int mh_http_refuse_versionless(struct lws *wsi);

/* Handles the HTTP callback reasons of the hub's lws protocol. */
int mh_http_callback(mh_server_t *srv, struct lws *wsi, int reason, mh_conn_t *conn, void *in,
                     size_t len);

/*
 * The lws protocol for connections whose first line is not HTTP (junk, a
 * TLS or HTTP/2 preface): answers one 400 in the error shape and closes.
 */
#define MH_HTTP_RAW_PROTOCOL "msghub-raw"
int mh_http_raw_callback(struct lws *wsi, int reason, void *user, void *in, size_t len);

#endif
