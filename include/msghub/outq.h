/*
 * outq: a session's bounded FIFO of outgoing frames (references, never
 * copies) and the byte count the backpressure limit is checked against.
 * Like Redis' client reply list with client-output-buffer-limit.
 *
 * Ownership: the queue holds one reference per queued frame; mh_outq_pop()
 * hands that reference to the caller; mh_outq_clear() drops them all.
 * Embedded by value; mh_outq_free() releases storage.
 */
#ifndef MSGHUB_OUTQ_H
#define MSGHUB_OUTQ_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/util.h"

typedef struct mh_outq {
    mh_frame_t **ring;
    size_t cap; /* power of two, or 0 */
    size_t head;
    size_t len;
    size_t bytes;      /* sum of payload lengths queued */
    uint64_t *account; /* optional: a budget counter that follows bytes (memory limit) */
} mh_outq_t;

void mh_outq_init(mh_outq_t *q);
void mh_outq_free(mh_outq_t *q);
/* Appends f, taking a new reference to it. */
void mh_outq_push(mh_outq_t *q, mh_frame_t *f);
/* Oldest frame without removing it, or NULL. */
mh_frame_t *mh_outq_peek(const mh_outq_t *q);
/* Removes the oldest frame and returns its reference to the caller, or NULL. */
mh_frame_t *mh_outq_pop(mh_outq_t *q);
/* Drops every queued reference. */
void mh_outq_clear(mh_outq_t *q);

#endif
