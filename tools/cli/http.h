/*
 * http: one HTTP/1.1 request to the hub with the libwebsockets client
 * (GET, or POST with a JSON body written from CLIENT_HTTP_WRITEABLE), run on
 * its own loop to completion or to a deadline.
 *
 * Ownership: the caller owns every request field; the response body in
 * h->resp belongs to the caller after the call (mh_buf_free it, also when
 * the call failed).
 */
#ifndef MSGHUB_CLI_HTTP_H
#define MSGHUB_CLI_HTTP_H

#include <stddef.h>

#include "msghub/util.h"
#include "url.h"

typedef struct cli_http {
    /* request */
    const char *method;  /* "GET" or "POST" */
    const char *path;    /* request target, URL prefix included */
    const char *api_key; /* sent as "Authorization: Bearer ..." unless NULL */
    const char *body;    /* POST: sent as application/json; NULL or empty: no body */
    size_t body_len;
    int timeout_s; /* whole request, connect included */
    int verbose;
    /* response */
    int status;    /* HTTP status, 0 when no response arrived */
    mh_buf_t resp; /* response body */
    char err[256]; /* why no response arrived */
} cli_http_t;

/* Performs the request. Returns 0 when a response (any status) arrived, -1 otherwise. */
int cli_http_do(const cli_url_t *url, cli_http_t *h);

#endif
