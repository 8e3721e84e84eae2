/*
 * presence: the presence and routes port. Which ids are connected, and to
 * which instance, and the id counter: memory (presence_mem, standalone:
 * this process's registry) or Redis (presence_redis, distributed: shared by
 * every instance). Sessions, `list` and `/clients` call only this port, so
 * standalone and distributed mode differ only in what server.c plugs in.
 *
 * Every operation with a callback calls it exactly once, with status 0 or
 * MH_EIO (the store is unreachable). An implementation may call back from
 * inside the call (memory) or later (Redis): callers work with both. A
 * port without ops (zeroed, or after mh_presence_close) fails every call
 * with MH_EIO and does nothing otherwise.
 *
 * Layer 2 (src/delivery).
 */
#ifndef MSGHUB_PRESENCE_H
#define MSGHUB_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/util.h"

typedef void (*mh_presence_id_fn)(void *ud, int status, uint64_t id);
/* previous: the instance that held the id's route before (NULL: none); valid during the call. */
typedef void (*mh_presence_claim_fn)(void *ud, int status, const char *previous);
/* ids: malloc'ed, ascending, the callback frees it (NULL on error). */
typedef void (*mh_presence_ids_fn)(void *ud, int status, uint64_t *ids, size_t n);

typedef struct mh_presence_ops {
    /* Hands out a new id, unique among everyone sharing the store. */
    void (*alloc_id)(void *impl, mh_presence_id_fn cb, void *ud);
    /* A valid token proves id was handed out: ids up to it stay known. */
    void (*note_id)(void *impl, uint64_t id);
    /* Routes id to this instance (a connection of it attaches here). */
    void (*claim)(void *impl, uint64_t id, mh_presence_claim_fn cb, void *ud);
    /* id's connection here went: its route goes, if this instance still holds it. */
    void (*checkout)(void *impl, uint64_t id);
    /* The ids connected now, anywhere. */
    void (*list)(void *impl, uint64_t now_ms, mh_presence_ids_fn cb, void *ud);
    void (*free)(void *impl);
} mh_presence_ops_t;

typedef struct mh_presence {
    const mh_presence_ops_t *ops;
    void *impl;
} mh_presence_t;

static inline void mh_presence_alloc_id(mh_presence_t *p, mh_presence_id_fn cb, void *ud)
{
    if (p->ops)
        p->ops->alloc_id(p->impl, cb, ud);
    else
        cb(ud, MH_EIO, 0);
}
static inline void mh_presence_note_id(mh_presence_t *p, uint64_t id)
{
    if (p->ops)
        p->ops->note_id(p->impl, id);
}
static inline void mh_presence_claim(mh_presence_t *p, uint64_t id, mh_presence_claim_fn cb,
                                     void *ud)
{
    if (p->ops)
        p->ops->claim(p->impl, id, cb, ud);
    else
        cb(ud, MH_EIO, NULL);
}
static inline void mh_presence_checkout(mh_presence_t *p, uint64_t id)
{
    if (p->ops)
        p->ops->checkout(p->impl, id);
}
static inline void mh_presence_list(mh_presence_t *p, uint64_t now_ms, mh_presence_ids_fn cb,
                                    void *ud)
{
    if (p->ops)
        p->ops->list(p->impl, now_ms, cb, ud);
    else
        cb(ud, MH_EIO, NULL, 0);
}
/* Frees the implementation and leaves a port that fails every call. */
static inline void mh_presence_close(mh_presence_t *p)
{
    if (p->ops)
        p->ops->free(p->impl);
    p->ops = NULL;
    p->impl = NULL;
}

#endif
