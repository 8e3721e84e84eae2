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
 *
 * Layer 2 (src/delivery): works through the log and transport ports and
 * the hub's deliver hook, never on a socket.
 */
#ifndef MSGHUB_RELAY_H
#define MSGHUB_RELAY_H

#include <stdint.h>

#include "msghub/codec.h"
#include "msghub/hub.h"

typedef struct mh_relay_result {
    char msg_id[48];
    size_t accepted;
    const uint64_t *unknown;
    size_t n_unknown;
} mh_relay_result_t;

/*
 * res is valid only during the call. status: 0 (accepted), MH_EIO (not
 * accepted) or MH_EINDOUBT (the log's answer was lost: res->msg_id may
 * have been accepted and may still arrive).
 */
typedef void (*mh_relay_done_fn)(void *ud, int status, const mh_relay_result_t *res);

/*
 * The error message of a relay refused with status (!= 0): for
 * MH_EINDOUBT it names res->msg_id, so a client can tell the message if it
 * arrives; else `plain`. Written into out (len bytes).
 */
void mh_relay_refusal(int status, const mh_relay_result_t *res, const char *plain, char *out,
                      size_t len);

/* Executes req (type relay) from `from` (0 = a service), received at t0_us (mh_mono_us). */
void mh_relay_start(mh_server_t *srv, uint64_t from, mh_request_t *req, uint64_t t0_us,
                    mh_relay_done_fn done, void *ud);

#endif
