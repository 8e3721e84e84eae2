/* registry: id -> session map plus the standalone id counter (see registry.h). */
#include "msghub/registry.h"

#include <stdlib.h>

#include "msghub/codec.h"
#include "msghub/u64map.h"
#include "msghub/util.h"

struct mh_registry {
    mh_u64map_t *sessions;
    uint64_t last_id;
};

mh_registry_t *mh_registry_new(void)
{
    mh_registry_t *r = mh_xmalloc(sizeof(*r));
    r->sessions = mh_u64map_new();
    r->last_id = 0;
    return r;
}

void mh_registry_free(mh_registry_t *r)
{
    if (!r)
        return;
    mh_u64map_free(r->sessions);
    free(r);
}

uint64_t mh_registry_alloc_id(mh_registry_t *r)
{
    return ++r->last_id;
}

uint64_t mh_registry_last_id(const mh_registry_t *r)
{
    return r->last_id;
}

void mh_registry_note_id(mh_registry_t *r, uint64_t id)
{
    if (id > r->last_id)
        r->last_id = id;
}

void *mh_registry_get(const mh_registry_t *r, uint64_t id)
{
    return mh_u64map_get(r->sessions, id);
}

void *mh_registry_put(mh_registry_t *r, uint64_t id, void *sess)
{
    return mh_u64map_put(r->sessions, id, sess);
}

int mh_registry_remove(mh_registry_t *r, uint64_t id, void *sess)
{
    /* an absent id reads as NULL: do not report a removal for sess == NULL */
    if (!sess || mh_u64map_get(r->sessions, id) != sess)
        return 0;
    mh_u64map_del(r->sessions, id);
    return 1;
}

size_t mh_registry_count(const mh_registry_t *r)
{
    return mh_u64map_size(r->sessions);
}

size_t mh_registry_ids(const mh_registry_t *r, uint64_t exclude, uint64_t **out)
{
    size_t cap = mh_u64map_size(r->sessions);
    uint64_t *ids = mh_xmalloc((cap ? cap : 1) * sizeof(*ids));
    size_t n = 0, cursor = 0;
    uint64_t id;
    while (mh_u64map_next(r->sessions, &cursor, &id, NULL))
        if (id != exclude)
            ids[n++] = id;
    n = mh_codec_dedupe(ids, n); /* sorts; ids are already unique */
    *out = ids;
    return n;
}

int mh_registry_next(const mh_registry_t *r, size_t *cursor, uint64_t *id, void **sess)
{
    return mh_u64map_next(r->sessions, cursor, id, sess);
}
