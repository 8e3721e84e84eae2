/*
 * relay: carries out one validated relay request. Dedupes receivers, asks
 * the router for a plan, builds the outgoing frame ONCE and hands a
 * reference of it to each local receiver's queue or to the offline inbox.
 *
 * Ownership: the result owns its plan arrays; release with
 * mh_relay_result_free().
 */
#ifndef MSGHUB_RELAY_H
#define MSGHUB_RELAY_H

#include <stdint.h>

#include "msghub/codec.h"
#include "msghub/router.h"
#include "msghub/server.h"

typedef struct mh_relay_result {
    char msg_id[48];
    size_t accepted;
    mh_route_plan_t plan; /* plan.unknown / n_unknown for the reply */
} mh_relay_result_t;

/* Executes req (type relay) from `from` (0 = a service), received at t0_us (mh_mono_us). */
void mh_relay_run(mh_server_t *srv, uint64_t from, mh_request_t *req, uint64_t t0_us,
                  mh_relay_result_t *res);
void mh_relay_result_free(mh_relay_result_t *res);

/* Stores a message frame for an offline id, counting stored and dropped messages. */
void mh_relay_store_offline(mh_server_t *srv, uint64_t id, mh_frame_t *f);

#endif
