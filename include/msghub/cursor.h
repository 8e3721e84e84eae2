/*
 * cursor: a connection's position in its id's log (PROTOCOL.md section 5)
 * and every decision about pushes and log reads, without I/O, so that seq
 * order, duplicates, gaps and catching up are unit tested (test_cursor.c).
 *
 * next_seq is the next seq to queue. A push with exactly that seq is
 * queued (then any held pushes that follow it); a lower one is a
 * duplicate; a higher one is held (a push that overtook an earlier one)
 * until the gap fills, or, when the buffer is full or the gap outlives the
 * wait, the cursor turns "backlogged": the owner reads the log after
 * next_seq - 1 and hands the entries to mh_cursor_read_done() until the
 * cursor has caught up. Live pushes that arrive while backlogged are left
 * to the log.
 *
 * Ownership: embedded by value; holds one frame reference per held push
 * (mh_cursor_release() drops them). The queue callback gets borrowed
 * frames (take a reference to keep one) and returns nonzero to stop (the
 * connection is closing).
 */
#ifndef MSGHUB_CURSOR_H
#define MSGHUB_CURSOR_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/msglog.h"
#include "msghub/util.h"

#define MH_CURSOR_HOLD_MAX 16   /* pushes kept aside while an earlier one is late */
#define MH_CURSOR_EMPTY_READS 2 /* empty reads in a row before the cursor trusts the log */

typedef struct mh_cursor_held {
    mh_frame_t *f;
    uint64_t seq;
} mh_cursor_held_t;

typedef struct mh_cursor {
    uint64_t next_seq; /* next seq to queue; 0 before open */
    uint64_t seen_seq; /* highest seq pushed, queued or not */
    int backlog;       /* the log owes messages before any live one */
    int empty_reads;
    mh_cursor_held_t held[MH_CURSOR_HOLD_MAX];
    size_t n_held;
    uint64_t held_since_ms;
} mh_cursor_t;

/* Queues (f, seq) on the connection; live: a push (not read from the log). Nonzero: stop. */
typedef int (*mh_cursor_queue_fn)(void *ud, mh_frame_t *f, uint64_t seq, int live);
/* Nonzero while the owner's queue has room for another message. */
typedef int (*mh_cursor_room_fn)(void *ud);

typedef enum {
    MH_CURSOR_DONE, /* queued, dropped as a duplicate, or nothing to do */
    MH_CURSOR_HELD, /* held: call mh_cursor_tick() until it is resolved */
    MH_CURSOR_READ, /* backlogged: read the log after next_seq - 1 */
} mh_cursor_action_t;

/* Log opened: everything <= acked_seq is acknowledged, last_seq the id's highest. */
mh_cursor_action_t mh_cursor_open(mh_cursor_t *c, uint64_t acked_seq, uint64_t last_seq);

/* A push of (f, seq) before open is only noted (the open reads from the ack on). */
mh_cursor_action_t mh_cursor_push(mh_cursor_t *c, mh_frame_t *f, uint64_t seq, uint64_t now_ms,
                                  mh_cursor_queue_fn q, void *ud);

/*
 * A log read after next_seq - 1 returned e[0..n) (ascending) and the id's
 * last seq. Queues what is owed while room(ud) is nonzero (the rest is read
 * again). Returns MH_CURSOR_READ while the log owes more, else DONE.
 */
mh_cursor_action_t mh_cursor_read_done(mh_cursor_t *c, const mh_msglog_entry_t *e, size_t n,
                                       uint64_t last_seq, mh_cursor_room_fn room,
                                       mh_cursor_queue_fn q, void *ud);

/* Held pushes older than wait_ms: released, backlogged, READ; still waiting: HELD. */
mh_cursor_action_t mh_cursor_tick(mh_cursor_t *c, uint64_t now_ms, uint64_t wait_ms);

/* Re-read the log from the cursor (sweeps, reconnects): releases held pushes. */
void mh_cursor_recheck(mh_cursor_t *c);

/* Drops the held pushes. */
void mh_cursor_release(mh_cursor_t *c);

#endif
