/* Minimal HTTP/1.1 keep-alive client for msghub-bench (POST /relay over
 * persistent connections): non-blocking TCP on an epoll set we do not own,
 * one request in flight per connection (no pipelining), responses framed by
 * Content-Length or chunked transfer coding. Single-threaded; every call
 * returns without blocking. */
#ifndef MSGHUB_BENCH_HTTPC_H
#define MSGHUB_BENCH_HTTPC_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define HTTPC_BUF 65536 /* request and response buffers, each */

enum httpc_state { HTTPC_IDLE = 0, HTTPC_CONNECTING, HTTPC_OPEN, HTTPC_CLOSED };

struct httpc_conn;

/* One parsed response: status code, the status line without CRLF, the body
 * (chunked coding removed; valid during the call only). */
typedef struct httpc_response {
    int status;
    const char *status_line;
    size_t status_len;
    const char *body;
    size_t body_len;
    int close; /* the server said "connection: close" */
} httpc_response_t;

typedef struct httpc_ops {
    void (*on_open)(struct httpc_conn *c); /* TCP connected */
    void (*on_response)(struct httpc_conn *c, const httpc_response_t *r);
    void (*on_close)(struct httpc_conn *c, const char *why); /* gone (not after httpc_drop) */
} httpc_ops_t;

typedef struct httpc_conn {
    int fd;
    enum httpc_state state;
    int busy; /* a request is in flight */
    const httpc_ops_t *ops;
    int index; /* owner's slot number */
    size_t out_off, out_len, in_len;
    char out[HTTPC_BUF];
    char in[HTTPC_BUF];
    char body[HTTPC_BUF]; /* de-chunked body of the current response */
} httpc_conn_t;

/* Starts a non-blocking connect and registers the socket with epfd
 * (edge-triggered, data.ptr = c). Returns 0, or -1 (state HTTPC_CLOSED). */
int httpc_connect(httpc_conn_t *c, int epfd, const struct sockaddr_in *addr);

/* Queues one request (head: request line and headers up to, not including,
 * the blank line; Content-Length is added) and writes what the kernel takes.
 * Returns 0, -1 when not open, busy, too large or the write failed. */
int httpc_request(httpc_conn_t *c, const char *head, const char *body, size_t n);

/* Handles an epoll event for c; calls ops as things happen. */
void httpc_handle(httpc_conn_t *c, uint32_t events);

/* Closes the socket now; on_close is not called. */
void httpc_drop(httpc_conn_t *c);

/* Parses one whole response at the start of p[0..n): returns the bytes it
 * takes, 0 when incomplete, -1 when malformed. body_buf (cap bytes) receives
 * the de-chunked body. Exposed for the self-test. */
long httpc_parse(const char *p, size_t n, char *body_buf, size_t cap, httpc_response_t *r);

#endif
