/* presence_mem: standalone presence over the registry (see presence_mem.h). */
#include "msghub/presence_mem.h"

static void mem_alloc_id(void *impl, mh_presence_id_fn cb, void *ud)
{
    cb(ud, 0, mh_registry_alloc_id(impl));
}

static void mem_note_id(void *impl, uint64_t id)
{
    mh_registry_note_id(impl, id);
}

static void mem_claim(void *impl, uint64_t id, mh_presence_claim_fn cb, void *ud)
{
    cb(ud, 0, NULL);
}

static void mem_checkout(void *impl, uint64_t id)
{
}

static void mem_list(void *impl, uint64_t now_ms, mh_presence_ids_fn cb, void *ud)
{
    uint64_t *ids;
    size_t n = mh_registry_ids(impl, 0, &ids);
    cb(ud, 0, ids, n);
}

static void mem_free(void *impl)
{
}

static const mh_presence_ops_t mem_ops = {
    .alloc_id = mem_alloc_id,
    .note_id = mem_note_id,
    .claim = mem_claim,
    .checkout = mem_checkout,
    .list = mem_list,
    .free = mem_free,
};

void mh_presence_mem_init(mh_presence_t *out, mh_registry_t *r)
{
    out->ops = &mem_ops;
    out->impl = r;
}
