/*
 * presence_redis: the presence port (presence.h) of distributed mode, over
 * the Redis store (redis_store.h): ids from P:next_id, routes and presence
 * with a TTL, shared by every instance. Calls back later (hiredis), or at
 * once with MH_EIO when the store is down.
 *
 * Layer 3 (src/backplane).
 */
#ifndef MSGHUB_PRESENCE_REDIS_H
#define MSGHUB_PRESENCE_REDIS_H

#include <stdint.h>

#include "msghub/presence.h"
#include "msghub/redis_store.h"

/*
 * Fills *out with the Redis presence of instance over rs (borrowed: rs and
 * instance must outlive it); claims hold a route for ttl_ms.
 */
void mh_presence_redis_init(mh_presence_t *out, mh_redis_store_t *rs, const char *instance,
                            uint64_t ttl_ms);

#endif
