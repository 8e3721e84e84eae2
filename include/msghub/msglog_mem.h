/*
 * msglog_mem: the per-user log (msglog.h) in memory, for standalone mode.
 * Survives client drops and reconnects, not the hub's own crash.
 *
 * Per id: the last seq handed out, the acknowledged seq, the highest seq
 * retention dropped before it was acknowledged (for `recovered`), and a ring
 * of (seq, frame reference, store time, size) in seq order. Appends go to
 * the tail; acks, the caps and the TTL remove from the head, so the ring
 * always holds consecutive seqs and a read is an index computation.
 *
 * Every callback runs before the call returns. Arrays passed to callbacks
 * are allocated per call (a callback may call the log again).
 *
 * Ownership: the log holds one reference per stored frame; mh_msglog_free()
 * drops them all. An id's seq state stays for the life of the process (a
 * few dozen bytes per id that ever got a message), its ring is freed when
 * it empties.
 */
#ifndef MSGHUB_MSGLOG_MEM_H
#define MSGHUB_MSGLOG_MEM_H

#include <stdint.h>

#include "msghub/msglog.h"

typedef struct mh_msglog_mem_options {
    mh_msglog_limits_t limits;
    /* highest id handed out: appends to ids above it get seq 0; NULL = every id is known */
    uint64_t (*last_id)(void *ud);
    /* clock for the TTL on reads and opens; NULL = mh_now_ms() */
    uint64_t (*now_ms)(void *ud);
    void *ud;
} mh_msglog_mem_options_t;

/* Fills *out with a new memory log; 0 (cannot fail: allocation aborts). */
int mh_msglog_mem_new(mh_msglog_t *out, const mh_msglog_mem_options_t *opts);

/*
 * Drops every entry older than the TTL at now_ms; returns how many entries
 * retention's TTL removed since the previous call (including those met and
 * removed by reads). out must come from mh_msglog_mem_new().
 */
uint64_t mh_msglog_mem_expire(mh_msglog_t *l, uint64_t now_ms);

#endif
