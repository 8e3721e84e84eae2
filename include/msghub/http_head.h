/*
 * http_head: how far the first bytes of a new connection are from a whole
 * HTTP request head, as a pure function of the bytes (the acceptor peeks
 * them before libwebsockets ever sees the socket; see acceptor.h). A head
 * that does not end within the limit is refused by the hub itself, so
 * libwebsockets never holds a partial or oversized head.
 */
#ifndef MSGHUB_HTTP_HEAD_H
#define MSGHUB_HTTP_HEAD_H

#include <stddef.h>

typedef enum mh_http_head {
    MH_HTTP_HEAD_WAIT,           /* an HTTP request line begun, the head not ended: more to come */
    MH_HTTP_HEAD_READY,          /* ended, or not HTTP/1.x at all (lws answers), or no version */
    MH_HTTP_HEAD_URI_TOO_LONG,   /* max bytes without the end of the request line: 414 */
    MH_HTTP_HEAD_FIELDS_TOO_BIG, /* the request line ended, the head did not within max: 431 */
    MH_HTTP_HEAD_NO_COLON        /* a header line without ':' (lws would wait forever): 400 */
} mh_http_head_t;

/*
 * p[n], the bytes the connection sent so far (n <= max), against a head of
 * at most max bytes. READY for a head ended by an empty line, for bytes
 * that do not start "METHOD " (a TLS or HTTP/2 preface, junk: handed on as
 * they are) and for a request line without " HTTP/" (HTTP/0.9, answered
 * 400 later). NO_COLON as soon as a whole header line lacks ':'.
 */
mh_http_head_t mh_http_head_scan(const char *p, size_t n, size_t max);

#endif
