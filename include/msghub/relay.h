/*
 * relay: carries out one validated relay request. Dedupes receivers, builds
 * the outgoing frame ONCE (text without seq), appends it to every
 * receiver's log in one mh_msglog_append (seqs, unknown ids and, in
 * distributed mode, routes in the same round trip), then hands (frame, seq)
 * to each receiver connected here and publishes ONE envelope per other
 * instance holding receivers.
 *
 * The relay is accepted only when the append succeeded: every known
 * receiver's copy is in its log. `done` runs exactly once with 0 (accepted)
 * or MH_EIO (the log is unreachable: answer `unavailable`, nothing was
 * accepted); with a memory log it runs before mh_relay_start returns.
 * Pushes that fail later cost latency, never data.
 */
#ifndef MSGHUB_RELAY_H
#define MSGHUB_RELAY_H

#include <stdint.h>

#include "msghub/codec.h"
#include "msghub/server.h"

typedef struct mh_relay_result {
    char msg_id[48];
    size_t accepted;
    const uint64_t *unknown;
    size_t n_unknown;
} mh_relay_result_t;

/* res is valid only during the call. */
typedef void (*mh_relay_done_fn)(void *ud, int status, const mh_relay_result_t *res);

/* Executes req (type relay) from `from` (0 = a service), received at t0_us (mh_mono_us). */
void mh_relay_start(mh_server_t *srv, uint64_t from, mh_request_t *req, uint64_t t0_us,
                    mh_relay_done_fn done, void *ud);

/* One local receiver wrote f: observes the relay latency when it was the last. */
void mh_relay_local_done(mh_server_t *srv, mh_frame_t *f);

#endif
