/* presence_redis: distributed presence over the Redis store (see presence_redis.h). */
#include "msghub/presence_redis.h"

#include <stdlib.h>

typedef struct presence_redis {
    mh_redis_store_t *rs;
    const char *instance;
    uint64_t ttl_ms;
} presence_redis_t;

static void redis_alloc_id(void *impl, mh_presence_id_fn cb, void *ud)
{
    presence_redis_t *p = impl;
    mh_redis_alloc_id(p->rs, cb, ud);
}

static void redis_note_id(void *impl, uint64_t id)
{
    presence_redis_t *p = impl;
    mh_redis_raise_id(p->rs, id, NULL, NULL);
}

static void redis_claim(void *impl, uint64_t id, mh_presence_claim_fn cb, void *ud)
{
    presence_redis_t *p = impl;
    mh_redis_claim(p->rs, id, p->instance, p->ttl_ms, cb, ud);
}

static void redis_checkout(void *impl, uint64_t id)
{
    presence_redis_t *p = impl;
    mh_redis_checkout(p->rs, id, p->instance, NULL, NULL);
}

static void redis_list(void *impl, uint64_t now_ms, mh_presence_ids_fn cb, void *ud)
{
    presence_redis_t *p = impl;
    mh_redis_list(p->rs, now_ms, cb, ud);
}

static const mh_presence_ops_t redis_ops = {
    .alloc_id = redis_alloc_id,
    .note_id = redis_note_id,
    .claim = redis_claim,
    .checkout = redis_checkout,
    .list = redis_list,
    .free = free,
};

void mh_presence_redis_init(mh_presence_t *out, mh_redis_store_t *rs, const char *instance,
                            uint64_t ttl_ms)
{
    presence_redis_t *p = mh_xmalloc(sizeof(*p));
    p->rs = rs;
    p->instance = instance;
    p->ttl_ms = ttl_ms;
    out->ops = &redis_ops;
    out->impl = p;
}
