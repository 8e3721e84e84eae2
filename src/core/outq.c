/* outq: ring buffer of frame references with a byte count (see outq.h). */
#include "msghub/outq.h"

#include <stdlib.h>

#include "msghub/codec.h"

void mh_outq_init(mh_outq_t *q)
{
    q->ring = NULL;
    q->cap = q->head = q->len = q->bytes = 0;
    q->account = NULL;
}

void mh_outq_free(mh_outq_t *q)
{
    mh_outq_clear(q);
    free(q->ring);
    mh_outq_init(q);
}

static void grow(mh_outq_t *q)
{
    size_t cap = q->cap ? q->cap * 2 : 8;
    mh_outq_entry_t *ring = mh_xmalloc(cap * sizeof(*ring));
    for (size_t i = 0; i < q->len; i++)
        ring[i] = q->ring[(q->head + i) & (q->cap - 1)];
    free(q->ring);
    q->ring = ring;
    q->cap = cap;
    q->head = 0;
}

static void push(mh_outq_t *q, mh_outq_entry_t e)
{
    if (q->len == q->cap)
        grow(q);
    q->ring[(q->head + q->len) & (q->cap - 1)] = e;
    q->len++;
    q->bytes += e.size;
    if (q->account)
        *q->account += e.size;
}

void mh_outq_push(mh_outq_t *q, mh_frame_t *f)
{
    push(q, (mh_outq_entry_t){mh_frame_ref(f), 0, (uint32_t)f->len, 0});
}

size_t mh_outq_push_seq(mh_outq_t *q, mh_frame_t *f, uint64_t seq, int live)
{
    size_t size = mh_codec_message_seq_len(f, seq);
    push(q, (mh_outq_entry_t){mh_frame_ref(f), seq, (uint32_t)size, live});
    return size;
}

const mh_outq_entry_t *mh_outq_peek_entry(const mh_outq_t *q)
{
    return q->len ? &q->ring[q->head] : NULL;
}

mh_frame_t *mh_outq_peek(const mh_outq_t *q)
{
    return q->len ? q->ring[q->head].f : NULL;
}

int mh_outq_pop_entry(mh_outq_t *q, mh_outq_entry_t *e)
{
    if (!q->len)
        return 0;
    *e = q->ring[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->len--;
    q->bytes -= e->size;
    if (q->account)
        *q->account -= e->size;
    return 1;
}

mh_frame_t *mh_outq_pop(mh_outq_t *q)
{
    mh_outq_entry_t e;
    return mh_outq_pop_entry(q, &e) ? e.f : NULL;
}

void mh_outq_clear(mh_outq_t *q)
{
    mh_frame_t *f;
    while ((f = mh_outq_pop(q)))
        mh_frame_unref(f);
}
