/*
 * relay: carries out one validated relay request. Dedupes receivers, builds
 * the outgoing frame ONCE, hands a reference of it to each local receiver's
 * queue, and (distributed mode) looks the others up in Redis in one round
 * trip, publishes ONE message per destination instance and stores the
 * offline ones' copies in their Redis inboxes.
 *
 * The relay is accepted only when every part is durable: written to a local
 * queue, confirmed by RabbitMQ, or stored. `done` runs exactly once with 0
 * (accepted) or MH_EIO (backplane failure: answer `unavailable`); in
 * standalone mode it runs before mh_relay_start returns.
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

/*
 * Stores message frames for an id that is not connected here: in memory
 * (standalone) or in its Redis inbox (distributed; cb may be NULL). Counts
 * stored and dropped messages. cb(ud, status) runs once, always.
 */
void mh_relay_store(mh_server_t *srv, uint64_t id, mh_frame_t *const *frames, size_t n, int front,
                    void (*cb)(void *ud, int status), void *ud);

/* One local receiver is done with f (written, or stored for later). */
void mh_relay_local_done(mh_server_t *srv, mh_frame_t *f);

/*
 * Delivers a message frame to receivers that are not (or no longer) here:
 * looks up their routes, publishes to their instances, stores the offline
 * ones. Used by the consumer for receivers that moved. cb runs once.
 */
void mh_relay_reroute(mh_server_t *srv, mh_frame_t *f, const uint64_t *ids, size_t n,
                      void (*cb)(void *ud, int status), void *ud);

#endif
