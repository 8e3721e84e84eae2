/*
 * router: the pure routing decision for one relay. Given the distinct
 * receivers, the highest id handed out and a lookup of local sessions, it
 * sorts receivers into local (write now), offline (store in the inbox) and
 * unknown (never assigned). No I/O; the relay module carries out the plan.
 */
#ifndef MSGHUB_ROUTER_H
#define MSGHUB_ROUTER_H

#include <stddef.h>
#include <stdint.h>

typedef void *(*mh_router_lookup_fn)(void *ud, uint64_t id);

typedef struct mh_route_plan {
    uint64_t *local_ids; /* each array has room for n entries (caller-provided) */
    void **local;        /* sessions, parallel to local_ids */
    size_t n_local;
    uint64_t *offline;
    size_t n_offline;
    uint64_t *unknown;
    size_t n_unknown;
} mh_route_plan_t;

/* Allocates the plan's arrays for up to n receivers; mh_router_plan_free releases them. */
void mh_router_plan_init(mh_route_plan_t *plan, size_t n);
void mh_router_plan_free(mh_route_plan_t *plan);

/* ids must be sorted and distinct (mh_codec_dedupe). Fills plan. */
void mh_router_plan(const uint64_t *ids, size_t n, uint64_t last_id, mh_router_lookup_fn lookup,
                    void *ud, mh_route_plan_t *plan);

/* Receivers that count as accepted: every known one, local or offline. */
static inline size_t mh_router_accepted(const mh_route_plan_t *plan)
{
    return plan->n_local + plan->n_offline;
}

#endif
