/*
 * http_status: the HTTP status codes the hub answers with, their RFC 9110
 * reason phrases, and the status line every HTTP answer starts with. One
 * table for the API's answers (http_api.c) and the upgrade refusals (ws.c),
 * so a status reads the same wherever it comes from. Pure: no lws.
 */
#ifndef MSGHUB_HTTP_STATUS_H
#define MSGHUB_HTTP_STATUS_H

#include <stddef.h>

#include "msghub/metrics.h"
#include "msghub/util.h"

#define MH_HTTP_OK 200
#define MH_HTTP_CREATED 201
#define MH_HTTP_NOT_MODIFIED 304
#define MH_HTTP_BAD_REQUEST 400
#define MH_HTTP_UNAUTHORIZED 401
#define MH_HTTP_FORBIDDEN 403
#define MH_HTTP_NOT_FOUND 404
#define MH_HTTP_METHOD_NOT_ALLOWED 405
#define MH_HTTP_LENGTH_REQUIRED 411
#define MH_HTTP_CONTENT_TOO_LARGE 413
#define MH_HTTP_URI_TOO_LONG 414
#define MH_HTTP_UNSUPPORTED_MEDIA_TYPE 415
#define MH_HTTP_TOO_MANY_REQUESTS 429
#define MH_HTTP_HEADERS_TOO_LARGE 431
#define MH_HTTP_INTERNAL_ERROR 500
#define MH_HTTP_UNAVAILABLE 503

/*
 * RFC 9110's reason phrase of status ("URI Too Long"); a status the hub
 * never sends gets its class's generic phrase ("Client Error").
 */
const char *mh_http_reason(int status);

/*
 * Writes "HTTP/1.1 <status> <phrase>\r\n" into out (cap bytes, NUL
 * terminated). Always HTTP/1.1, also to an HTTP/1.0 or versionless
 * request (RFC 9110 2.5: a server sends its own highest version). Returns
 * the length written without the NUL, or -1 when it does not fit.
 */
int mh_http_status_line(char *out, size_t cap, int status);

/*
 * Appends a whole answer that ends the connection: the status line, JSON
 * content type, length, no-store, "www-authenticate: Bearer" for a 401,
 * "connection: close", then the error body {"error":{code,message}}. For
 * the refusals written as raw bytes (upgrade refusals, versionless and
 * non-HTTP requests).
 */
void mh_http_append_refusal(mh_buf_t *out, int status, mh_err_code_t code, const char *message);

#endif
