/* Minimal WebSocket client for the load generator: non-blocking TCP on an
 * epoll set we do not own, the RFC 6455 opening handshake (the server's
 * Sec-WebSocket-Accept is checked), masked frames out, frames in with
 * fragmentation reassembly, ping answered with pong, close answered.
 * Single-threaded; every call returns without blocking. */
#ifndef MSGHUB_BENCH_WSC_H
#define MSGHUB_BENCH_WSC_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wsc_buf {
    uint8_t *p;
    size_t off; /* first unconsumed byte */
    size_t len; /* end of data */
    size_t cap;
} wsc_buf_t;

enum wsc_state {
    WSC_IDLE = 0,
    WSC_CONNECTING, /* TCP connect in progress */
    WSC_HANDSHAKE,  /* upgrade request sent, waiting for 101 */
    WSC_OPEN,       /* frames flow */
    WSC_CLOSED
};

enum {
    WSC_OP_CONT = 0,
    WSC_OP_TEXT = 1,
    WSC_OP_BINARY = 2,
    WSC_OP_CLOSE = 8,
    WSC_OP_PING = 9,
    WSC_OP_PONG = 10
};

struct wsc_conn;

typedef struct wsc_ops {
    void (*on_open)(struct wsc_conn *c);                             /* after the 101 */
    void (*on_message)(struct wsc_conn *c, const char *p, size_t n); /* whole text message */
    /* The connection is gone: code is the close code the server sent (or 0),
     * why a short reason of ours ("refused", "handshake", "eof", ...). */
    void (*on_close)(struct wsc_conn *c, int code, const char *why);
} wsc_ops_t;

typedef struct wsc_conn {
    int fd;
    enum wsc_state state;
    wsc_buf_t in;  /* bytes read, not yet parsed */
    wsc_buf_t out; /* bytes queued, not yet written */
    wsc_buf_t msg; /* fragments of the message being reassembled */
    int in_msg;    /* a fragmented message is in progress */
    char accept[32];
    const char *host; /* Host header, kept by the caller */
    const char *path; /* request target, kept by the caller */
    uint64_t rng;
    const wsc_ops_t *ops;
    void *user;
    int index; /* owner's slot number */
    uint64_t frames_in, frames_out, pings;
} wsc_conn_t;

/* Starts a non-blocking connect from src (NULL: the kernel picks the local
 * address) and registers the socket with epfd (edge-triggered, the event's
 * data.ptr = c). The handshake is sent when the socket becomes writable.
 * Returns 0, or -1 with c->state == WSC_CLOSED. */
int wsc_connect(wsc_conn_t *c, int epfd, const struct sockaddr_in *addr,
                const struct sockaddr_in *src, const char *host, const char *path);

/* Handles an epoll event for c. Calls ops as things happen. */
void wsc_handle(wsc_conn_t *c, uint32_t events);

/* Queues one masked frame and tries to write. Returns 0, -1 when closed. */
int wsc_send(wsc_conn_t *c, int opcode, const void *p, size_t n);

/* Bytes queued and not yet accepted by the kernel. */
size_t wsc_pending(const wsc_conn_t *c);

/* Closes the socket now (no close handshake) and frees the buffers;
 * on_close is not called. */
void wsc_drop(wsc_conn_t *c);

/* Helpers shared with the load generator. */
void wsc_base64(const uint8_t *in, size_t n, char *out); /* out: 4*ceil(n/3)+1 bytes */
uint64_t wsc_rand(uint64_t *state);                      /* xorshift64* */

#endif
