/*
 * presence_mem: the presence port (presence.h) of standalone mode, over
 * this process's registry: ids from its counter, the ids connected here.
 * Every call calls back before it returns; there are no routes to claim
 * (claim never reports a previous instance) and nothing to check out (the
 * session leaves the registry itself).
 *
 * Layer 2 (src/delivery).
 */
#ifndef MSGHUB_PRESENCE_MEM_H
#define MSGHUB_PRESENCE_MEM_H

#include "msghub/presence.h"
#include "msghub/registry.h"

/* Fills *out with the memory presence over r (borrowed: r must outlive it). */
void mh_presence_mem_init(mh_presence_t *out, mh_registry_t *r);

#endif
