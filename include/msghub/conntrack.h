/*
 * conntrack: every socket libwebsockets accepted, from accept to close, so
 * that all of them (HTTP, not yet upgraded, WebSocket) count against the
 * connection limit, and every HTTP request has a deadline for its whole
 * head and body (lws re-arms its own body timeout on every chunk, so a
 * client sending 1 byte a second was never cut off).
 *
 * One entry per wsi in a hash map, each with one mh_timer_t on the
 * server's timing wheel (timerwheel.h): nothing walks every connection,
 * and nothing is given to lws' sorted timer list. An entry's timer is due
 * at the earliest of:
 *  - the request deadline: timeout_ms after the request began (accept, or
 *    the end of the previous keep-alive request) closes the connection;
 *  - the HTTP/0.9 check, while lws has not parsed the head: stall_ms after
 *    the request began, then again after 2, 4, 8 ... times stall_ms, the
 *    refuse hook is asked whether the head is a request line without a
 *    version (lws waits for more headers then); a refused one is closed.
 *    The doubling keeps an idle socket's cost at a few checks per request.
 *
 * Closes happen from the wheel's sweep (outside every lws callback); at
 * most kills_per_tick per sweep, the rest a tick later, so a crowd that
 * expires together does not stall the loop.
 *
 * Ownership: the tracker owns its entries; it only borrows the wsi
 * pointers, which lws owns (an entry goes at LWS_CALLBACK_WSI_DESTROY),
 * and the wheel, which must outlive it.
 */
#ifndef MSGHUB_CONNTRACK_H
#define MSGHUB_CONNTRACK_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/timerwheel.h"

struct lws;
typedef struct mh_conntrack mh_conntrack_t;

/* Answers an HTTP/0.9 request line on wsi and returns 1, or returns 0 (not one, or not yet). */
typedef int (*mh_conntrack_refuse_fn)(struct lws *wsi);

typedef struct mh_conntrack_options {
    mh_timerwheel_t *wheel;        /* driven by the owner, monotonic ms (mh_mono_us() / 1000) */
    uint64_t timeout_ms;           /* whole request deadline */
    uint64_t stall_ms;             /* first HTTP/0.9 check; 0: none */
    mh_conntrack_refuse_fn refuse; /* NULL: no HTTP/0.9 check */
    uint32_t kills_per_tick;       /* closes per sweep at most */
} mh_conntrack_options_t;

mh_conntrack_t *mh_conntrack_new(const mh_conntrack_options_t *o);
/* Cancels every entry's timer and frees them (call before freeing the wheel). */
void mh_conntrack_free(mh_conntrack_t *ct);

/* A socket came to lws; its first request began at since_ms (its accept, monotonic). */
void mh_conntrack_open(mh_conntrack_t *ct, struct lws *wsi, uint64_t since_ms);
/* The socket is gone. */
void mh_conntrack_close(mh_conntrack_t *ct, struct lws *wsi);
/* A keep-alive connection finished a request: the next one's deadline starts now. */
void mh_conntrack_restart(mh_conntrack_t *ct, struct lws *wsi);
/* The connection became a WebSocket: no request deadline any more (idle timeout instead). */
void mh_conntrack_upgraded(mh_conntrack_t *ct, struct lws *wsi);
/* lws parsed the head of the connection's current request (it reached a callback). */
void mh_conntrack_dispatched(mh_conntrack_t *ct, struct lws *wsi);
/* Sockets open now. */
size_t mh_conntrack_count(const mh_conntrack_t *ct);
/*
 * After each advance of the wheel: returns how many requests were closed
 * for their deadline since the last call, and renews the close budget.
 */
size_t mh_conntrack_end_tick(mh_conntrack_t *ct);

#endif
