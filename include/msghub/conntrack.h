/*
 * conntrack: every socket libwebsockets accepted, from accept to close, so
 * that all of them (HTTP, not yet upgraded, WebSocket) count against the
 * connection limit, and every HTTP request has a deadline for its whole
 * head and body (lws re-arms its own body timeout on every chunk, so a
 * client sending 1 byte a second was never cut off).
 *
 * One entry per wsi in a hash map; one sweep per second closes the HTTP
 * connections whose request started longer ago than the deadline. O(1)
 * per connection event; nothing is given to lws' sorted timer list.
 *
 * Ownership: the tracker owns its entries; it only borrows the wsi
 * pointers, which lws owns (an entry goes at LWS_CALLBACK_WSI_DESTROY).
 */
#ifndef MSGHUB_CONNTRACK_H
#define MSGHUB_CONNTRACK_H

#include <stddef.h>
#include <stdint.h>

struct lws;
typedef struct mh_conntrack mh_conntrack_t;

mh_conntrack_t *mh_conntrack_new(void);
void mh_conntrack_free(mh_conntrack_t *ct);

/* A socket was accepted at now_ms: its first request's deadline starts. */
void mh_conntrack_open(mh_conntrack_t *ct, struct lws *wsi, uint64_t now_ms);
/* The socket is gone. */
void mh_conntrack_close(mh_conntrack_t *ct, struct lws *wsi);
/* A keep-alive connection finished a request: the next one's deadline starts at now_ms. */
void mh_conntrack_restart(mh_conntrack_t *ct, struct lws *wsi, uint64_t now_ms);
/* The connection became a WebSocket: no request deadline any more (idle timeout instead). */
void mh_conntrack_upgraded(mh_conntrack_t *ct, struct lws *wsi);
/* lws parsed the head of the connection's current request (it reached a callback). */
void mh_conntrack_dispatched(mh_conntrack_t *ct, struct lws *wsi);
/* Sockets open now. */
size_t mh_conntrack_count(const mh_conntrack_t *ct);
/*
 * Closes at most max HTTP connections whose current request began more
 * than timeout_ms before now_ms (the rest wait for the next sweep, so a
 * crowd that expires together does not stall the loop); returns how many.
 */
size_t mh_conntrack_sweep(mh_conntrack_t *ct, uint64_t now_ms, uint64_t timeout_ms, size_t max);
/*
 * For at most max connections whose current request began more than
 * stall_ms before now_ms and was not dispatched yet, asks refuse(wsi)
 * (which answers it, returning 1, or returns 0) and closes the refused
 * ones; returns how many.
 */
size_t mh_conntrack_sweep_stalled(mh_conntrack_t *ct, uint64_t now_ms, uint64_t stall_ms,
                                  int (*refuse)(struct lws *wsi), size_t max);

#endif
