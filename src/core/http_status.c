/*
 * http_status: reason phrases and status lines (see http_status.h).
 */
#include "msghub/http_status.h"

#include <stdio.h>

#include "msghub/codec.h"

static const struct {
    int status;
    const char *phrase;
} phrases[] = {
    {MH_HTTP_OK, "OK"},
    {MH_HTTP_CREATED, "Created"},
    {MH_HTTP_NOT_MODIFIED, "Not Modified"},
    {MH_HTTP_BAD_REQUEST, "Bad Request"},
    {MH_HTTP_UNAUTHORIZED, "Unauthorized"},
    {MH_HTTP_FORBIDDEN, "Forbidden"},
    {MH_HTTP_NOT_FOUND, "Not Found"},
    {MH_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed"},
    {MH_HTTP_LENGTH_REQUIRED, "Length Required"},
    {MH_HTTP_CONTENT_TOO_LARGE, "Content Too Large"},
    {MH_HTTP_URI_TOO_LONG, "URI Too Long"},
    {MH_HTTP_UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type"},
    {MH_HTTP_TOO_MANY_REQUESTS, "Too Many Requests"},
    {MH_HTTP_HEADERS_TOO_LARGE, "Request Header Fields Too Large"},
    {MH_HTTP_INTERNAL_ERROR, "Internal Server Error"},
    {MH_HTTP_UNAVAILABLE, "Service Unavailable"},
};

const char *mh_http_reason(int status)
{
    for (size_t i = 0; i < sizeof(phrases) / sizeof(phrases[0]); i++)
        if (phrases[i].status == status)
            return phrases[i].phrase;
    switch (status / 100) {
    case 1:
        return "Informational";
    case 2:
        return "Success";
    case 3:
        return "Redirection";
    case 4:
        return "Client Error";
    default:
        return "Server Error";
    }
}

int mh_http_status_line(char *out, size_t cap, int status)
{
    int n = snprintf(out, cap, "HTTP/1.1 %d %s\r\n", status, mh_http_reason(status));
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

void mh_http_append_refusal(mh_buf_t *out, int status, mh_err_code_t code, const char *message)
{
    mh_buf_t body;
    mh_buf_init(&body);
    mh_codec_http_error(&body, code, message);
    mh_buf_printf(out,
                  "HTTP/1.1 %d %s\r\n"
                  "content-type: application/json\r\n"
                  "content-length: %zu\r\n"
                  "cache-control: no-store\r\n"
                  "%s"
                  "connection: close\r\n\r\n",
                  status, mh_http_reason(status), body.len,
                  status == MH_HTTP_UNAUTHORIZED ? "www-authenticate: Bearer\r\n" : "");
    mh_buf_append(out, body.data, body.len);
    mh_buf_free(&body);
}
