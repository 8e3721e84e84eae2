/* u64map: linear-probing hash map, see u64map.h. Load factor kept <= 1/2. */
#include "msghub/u64map.h"

#include <stdlib.h>

#include "msghub/util.h"

typedef struct slot {
    uint64_t key; /* 0 = empty */
    void *value;
} slot_t;

struct mh_u64map {
    slot_t *slots;
    size_t mask;
    size_t size;
};

static size_t hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

mh_u64map_t *mh_u64map_new(void)
{
    mh_u64map_t *m = mh_xmalloc(sizeof(*m));
    m->mask = 15;
    m->size = 0;
    m->slots = mh_xcalloc(m->mask + 1, sizeof(slot_t));
    return m;
}

void mh_u64map_free(mh_u64map_t *m)
{
    if (!m)
        return;
    free(m->slots);
    free(m);
}

size_t mh_u64map_size(const mh_u64map_t *m)
{
    return m->size;
}

static slot_t *find(const mh_u64map_t *m, uint64_t key)
{
    for (size_t i = hash(key) & m->mask;; i = (i + 1) & m->mask) {
        slot_t *s = &m->slots[i];
        if (s->key == key || s->key == 0)
            return s;
    }
}

void *mh_u64map_get(const mh_u64map_t *m, uint64_t key)
{
    slot_t *s = find(m, key);
    return s->key ? s->value : NULL;
}

static void rehash(mh_u64map_t *m)
{
    slot_t *old = m->slots;
    size_t n = m->mask + 1;
    m->mask = n * 2 - 1;
    m->slots = mh_xcalloc(n * 2, sizeof(slot_t));
    for (size_t i = 0; i < n; i++)
        if (old[i].key)
            *find(m, old[i].key) = old[i];
    free(old);
}

void *mh_u64map_put(mh_u64map_t *m, uint64_t key, void *value)
{
    slot_t *s = find(m, key);
    if (s->key) {
        void *prev = s->value;
        s->value = value;
        return prev;
    }
    s->key = key;
    s->value = value;
    if (++m->size * 2 > m->mask + 1)
        rehash(m);
    return NULL;
}

void *mh_u64map_del(mh_u64map_t *m, uint64_t key)
{
    slot_t *s = find(m, key);
    if (!s->key)
        return NULL;
    void *value = s->value;
    size_t i = (size_t)(s - m->slots);
    /* backward-shift: move later entries of the probe run into the hole */
    for (size_t j = (i + 1) & m->mask; m->slots[j].key; j = (j + 1) & m->mask) {
        size_t home = hash(m->slots[j].key) & m->mask;
        if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = 0;
    m->slots[i].value = NULL;
    m->size--;
    return value;
}

int mh_u64map_next(const mh_u64map_t *m, size_t *cursor, uint64_t *key, void **value)
{
    for (size_t i = *cursor; i <= m->mask; i++) {
        if (m->slots[i].key) {
            *key = m->slots[i].key;
            if (value)
                *value = m->slots[i].value;
            *cursor = i + 1;
            return 1;
        }
    }
    *cursor = m->mask + 1;
    return 0;
}
