/*
 * acceptor: the hub's own listening socket. libwebsockets 4.1.6 accepts
 * the whole backlog in one callback and gives every socket a wsi and a
 * header table at once; each later close then walks the list of all
 * header tables (rops_destroy_role_h1), so 10,000 idle sockets cost
 * O(n^2) when they go and stalled the loop for seconds.
 *
 * Here a socket is accepted (at most per_turn per loop turn, so a storm is
 * spread over turns and the loop keeps serving), held on a uv_poll until
 * its whole request head has come (peeked, not read: http_head.h), and
 * only then handed to lws (adopt); bytes that are no HTTP/1.x request line
 * go to lws at once, as they are. A socket that sends nothing or only part
 * of a head costs a poll handle and a timer on the wheel (the kernel keeps
 * the bytes; SO_RCVLOWAT wakes the poll only when more come): it is closed
 * idle_timeout_ms after accept, and a peer that closes first is closed by
 * us at its EOF, neither ever reaching lws. A head longer than head_max is
 * answered 414 (the request line did not end) or 431 here, in the JSON
 * error shape, and closed after its input is drained (at most DRAIN_MS).
 *
 * Ownership: the acceptor owns its listening socket and the held ones
 * until they are adopted (then lws owns them); it borrows the loop and the
 * wheel, which must outlive it (mh_acceptor_close, then the loop runs its
 * close callbacks, which free it).
 */
#ifndef MSGHUB_ACCEPTOR_H
#define MSGHUB_ACCEPTOR_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "msghub/timerwheel.h"

typedef struct mh_acceptor mh_acceptor_t;

/* A socket was accepted: 1 keeps it, 0 closes it at once (the socket limit). */
typedef int (*mh_acceptor_admit_fn)(void *ud);
/* fd has bytes to read: hand it to lws (which then owns it); accepted_ms is when it came. */
typedef void (*mh_acceptor_adopt_fn)(void *ud, int fd, uint64_t accepted_ms);

typedef struct mh_acceptor_options {
    uv_loop_t *loop;
    mh_timerwheel_t *wheel; /* monotonic ms (mh_mono_us() / 1000) */
    const char *host;       /* numeric or a name; "0.0.0.0" for every IPv4 address */
    int port;
    uint32_t per_turn;        /* accepts, and adoptions plus EOF closes, per loop turn at most */
    uint32_t closes_per_tick; /* idle closes per wheel sweep at most */
    uint64_t idle_timeout_ms; /* a held socket without a whole request head is closed after this */
    size_t head_max;          /* a request head longer than this is refused (414 / 431); 0:
                                 hand a socket over at its first byte */
    mh_acceptor_admit_fn admit;
    mh_acceptor_adopt_fn adopt;
    void *ud;
} mh_acceptor_options_t;

/* Binds and listens; NULL (and errno set) when it cannot. */
mh_acceptor_t *mh_acceptor_new(const mh_acceptor_options_t *o);
/* Stops listening and closes every held socket; freed by the loop's close callbacks. */
void mh_acceptor_close(mh_acceptor_t *a);
/* Sockets accepted and held, not yet handed to lws. */
size_t mh_acceptor_held(const mh_acceptor_t *a);
/* After each advance of the wheel: returns how many held sockets it closed for their
 * deadline since the last call, and renews the close budget. */
size_t mh_acceptor_end_tick(mh_acceptor_t *a);

#endif
