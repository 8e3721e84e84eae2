/*
 * outq: a session's bounded FIFO of outgoing frames (references, never
 * copies) and the byte count the backpressure limit is checked against.
 * Like Redis' client reply list with client-output-buffer-limit.
 *
 * An entry is (frame, seq): a message frame is shared by every receiver
 * and its text has no seq; the entry's seq is the receiver's, inserted at
 * f->seq_at when written (codec.h). seq 0: the frame is written as is (a
 * reply). The byte count is of the wire text (frame plus `,"seq":N`).
 *
 * Ownership: the queue holds one reference per queued frame; mh_outq_pop()
 * hands that reference to the caller; mh_outq_clear() drops them all.
 * Embedded by value; mh_outq_free() releases storage.
 */
#ifndef MSGHUB_OUTQ_H
#define MSGHUB_OUTQ_H

#include <stddef.h>
#include <stdint.h>

#include <stdint.h>

#include "msghub/util.h"

typedef struct mh_outq_entry {
    mh_frame_t *f;
    uint64_t seq;  /* 0: not a message with seq */
    uint32_t size; /* wire bytes */
    int live;      /* pushed when relayed (counts for the relay latency), not read from a log */
} mh_outq_entry_t;

typedef struct mh_outq {
    mh_outq_entry_t *ring;
    size_t cap; /* power of two, or 0 */
    size_t head;
    size_t len;
    size_t bytes;      /* sum of payload lengths queued */
    uint64_t *account; /* optional: a budget counter that follows bytes (memory limit) */
} mh_outq_t;

void mh_outq_init(mh_outq_t *q);
void mh_outq_free(mh_outq_t *q);
/* Appends f (seq 0), taking a new reference to it. */
void mh_outq_push(mh_outq_t *q, mh_frame_t *f);
/* Appends (f, seq) with seq > 0, taking a new reference to f; returns its wire size. */
size_t mh_outq_push_seq(mh_outq_t *q, mh_frame_t *f, uint64_t seq, int live);
/* Removes the oldest entry into *e (its reference goes to the caller); 0 when empty. */
int mh_outq_pop_entry(mh_outq_t *q, mh_outq_entry_t *e);
/* The oldest entry without removing it (no reference moves): NULL when empty. */
const mh_outq_entry_t *mh_outq_peek_entry(const mh_outq_t *q);
/* Oldest frame without removing it, or NULL. */
mh_frame_t *mh_outq_peek(const mh_outq_t *q);
/* Removes the oldest frame and returns its reference to the caller, or NULL. */
mh_frame_t *mh_outq_pop(mh_outq_t *q);
/* Drops every queued reference. */
void mh_outq_clear(mh_outq_t *q);

#endif
