/* inbox_mem: per-id rings of (frame, stored_ms), see inbox_mem.h. */
#include "msghub/inbox_mem.h"

#include <stdlib.h>

#include "msghub/u64map.h"

typedef struct entry {
    mh_frame_t *frame;
    uint64_t stored_ms;
} entry_t;

typedef struct box {
    entry_t *ring;
    size_t cap, head, len;
    uint64_t *account; /* the inbox's budget counter, or NULL */
} box_t;

struct mh_inbox_mem {
    mh_u64map_t *boxes;
    uint32_t max;
    uint64_t ttl_ms;
    uint64_t *account; /* mh_inbox_mem_set_account() */
};

mh_inbox_mem_t *mh_inbox_mem_new(uint32_t max_per_id, uint64_t ttl_ms)
{
    mh_inbox_mem_t *ib = mh_xmalloc(sizeof(*ib));
    ib->boxes = mh_u64map_new();
    ib->max = max_per_id ? max_per_id : 1;
    ib->ttl_ms = ttl_ms;
    ib->account = NULL;
    return ib;
}

void mh_inbox_mem_set_account(mh_inbox_mem_t *ib, uint64_t *account)
{
    ib->account = account;
}

static entry_t box_shift(box_t *b)
{
    entry_t e = b->ring[b->head];
    b->head = (b->head + 1) % b->cap;
    b->len--;
    if (b->account)
        *b->account -= e.frame->len;
    return e;
}

static void box_free(box_t *b)
{
    while (b->len)
        mh_frame_unref(box_shift(b).frame);
    free(b->ring);
    free(b);
}

void mh_inbox_mem_free(mh_inbox_mem_t *ib)
{
    if (!ib)
        return;
    size_t cursor = 0;
    uint64_t id;
    void *b;
    while (mh_u64map_next(ib->boxes, &cursor, &id, &b))
        box_free(b);
    mh_u64map_free(ib->boxes);
    free(ib);
}

static box_t *box_of(mh_inbox_mem_t *ib, uint64_t id)
{
    box_t *b = mh_u64map_get(ib->boxes, id);
    if (!b) {
        b = mh_xcalloc(1, sizeof(*b));
        b->account = ib->account;
        mh_u64map_put(ib->boxes, id, b);
    }
    return b;
}

/* Stores a new reference to f at slot i of b. */
static void box_store(box_t *b, size_t i, mh_frame_t *f, uint64_t now_ms)
{
    b->ring[i] = (entry_t){mh_frame_ref(f), now_ms};
    b->len++;
    if (b->account)
        *b->account += f->len;
}

static void box_grow(box_t *b)
{
    size_t cap = b->cap ? b->cap * 2 : 4;
    entry_t *ring = mh_xmalloc(cap * sizeof(*ring));
    for (size_t i = 0; i < b->len; i++)
        ring[i] = b->ring[(b->head + i) % b->cap];
    free(b->ring);
    b->ring = ring;
    b->cap = cap;
    b->head = 0;
}

size_t mh_inbox_mem_push(mh_inbox_mem_t *ib, uint64_t id, mh_frame_t *f, uint64_t now_ms)
{
    box_t *b = box_of(ib, id);
    size_t dropped = 0;
    while (b->len >= ib->max) {
        mh_frame_unref(box_shift(b).frame);
        dropped++;
    }
    if (b->len == b->cap)
        box_grow(b);
    box_store(b, (b->head + b->len) % b->cap, f, now_ms);
    return dropped;
}

void mh_inbox_mem_push_front(mh_inbox_mem_t *ib, uint64_t id, mh_frame_t *f, uint64_t now_ms)
{
    box_t *b = box_of(ib, id);
    /*
     * The frame was stored before everything behind it, so it gets no later a
     * store time than the current head: times stay ascending from head to tail
     * and mh_inbox_mem_expire() can stop at the first unexpired entry.
     */
    if (b->len && b->ring[b->head].stored_ms < now_ms)
        now_ms = b->ring[b->head].stored_ms;
    if (b->len == b->cap)
        box_grow(b);
    b->head = (b->head + b->cap - 1) % b->cap;
    box_store(b, b->head, f, now_ms);
}

static int expired(const mh_inbox_mem_t *ib, const entry_t *e, uint64_t now_ms)
{
    return ib->ttl_ms && now_ms >= e->stored_ms + ib->ttl_ms;
}

mh_frame_t *mh_inbox_mem_pop(mh_inbox_mem_t *ib, uint64_t id, uint64_t now_ms, size_t *dropped)
{
    box_t *b = mh_u64map_get(ib->boxes, id);
    mh_frame_t *f = NULL;
    while (b && b->len && !f) {
        entry_t e = box_shift(b);
        if (expired(ib, &e, now_ms)) {
            mh_frame_unref(e.frame);
            if (dropped)
                (*dropped)++;
        } else
            f = e.frame;
    }
    if (b && !b->len) {
        mh_u64map_del(ib->boxes, id);
        box_free(b);
    }
    return f;
}

size_t mh_inbox_mem_count(const mh_inbox_mem_t *ib, uint64_t id)
{
    box_t *b = mh_u64map_get(ib->boxes, id);
    return b ? b->len : 0;
}

size_t mh_inbox_mem_expire(mh_inbox_mem_t *ib, uint64_t now_ms)
{
    size_t dropped = 0, cursor = 0, n_empty = 0;
    uint64_t id;
    void *v;
    uint64_t *empty = mh_xmalloc((mh_u64map_size(ib->boxes) + 1) * sizeof(uint64_t));
    while (mh_u64map_next(ib->boxes, &cursor, &id, &v)) {
        box_t *b = v;
        while (b->len && expired(ib, &b->ring[b->head], now_ms)) {
            mh_frame_unref(box_shift(b).frame);
            dropped++;
        }
        if (!b->len)
            empty[n_empty++] = id;
    }
    for (size_t i = 0; i < n_empty; i++)
        box_free(mh_u64map_del(ib->boxes, empty[i]));
    free(empty);
    return dropped;
}
