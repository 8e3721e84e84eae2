/*
 * pubbatch: per-instance batches of envelopes, flushed once per loop turn
 * (see pubbatch.h). Instances are few, so batches live in a small array
 * searched linearly.
 */
#include "msghub/pubbatch.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "msghub/codec.h"
#include "msghub/util.h"

typedef struct waiter {
    mh_broker_publish_fn cb;
    void *ud;
} waiter_t;

typedef struct batch {
    char *instance;
    mh_buf_t body;     /* codec batch of every envelope added */
    const char *first; /* the only envelope, when there is one: published bare */
    size_t first_len;
    waiter_t *waiters;
    size_t n, cap;
} batch_t;

/* What one published message must report back to. */
typedef struct sent {
    waiter_t *waiters;
    size_t n;
} sent_t;

struct mh_pubbatch {
    mh_broker_t *broker;
    uv_prepare_t prepare;
    size_t max_bytes;
    batch_t *batches;
    size_t n_batches;
};

static void on_sent(void *ud, int status)
{
    sent_t *s = ud;
    for (size_t i = 0; i < s->n; i++)
        s->waiters[i].cb(s->waiters[i].ud, status);
    free(s->waiters);
    free(s);
}

static void flush_batch(mh_pubbatch_t *pb, batch_t *b)
{
    if (!b->n)
        return;
    sent_t *s = mh_xmalloc(sizeof(*s));
    s->waiters = b->waiters;
    s->n = b->n;
    /* a single envelope needs no batch framing: skip its "B\n<len>\n" header */
    const char *p = b->body.data;
    size_t len = b->body.len;
    if (b->n == 1) {
        p = b->first;
        len = b->first_len;
    }
    b->waiters = NULL;
    b->n = b->cap = 0;
    mh_broker_publish(pb->broker, b->instance, p, len, on_sent, s);
    mh_buf_reset(&b->body);
}

static void on_prepare(uv_prepare_t *h)
{
    mh_pubbatch_t *pb = h->data;
    for (size_t i = 0; i < pb->n_batches; i++)
        flush_batch(pb, &pb->batches[i]);
    uv_prepare_stop(h);
}

static batch_t *batch_for(mh_pubbatch_t *pb, const char *instance)
{
    for (size_t i = 0; i < pb->n_batches; i++)
        if (strcmp(pb->batches[i].instance, instance) == 0)
            return &pb->batches[i];
    pb->batches = mh_xrealloc(pb->batches, (pb->n_batches + 1) * sizeof(batch_t));
    batch_t *b = &pb->batches[pb->n_batches++];
    memset(b, 0, sizeof(*b));
    b->instance = mh_xstrdup(instance);
    mh_buf_init(&b->body);
    return b;
}

void mh_pubbatch_add(mh_pubbatch_t *pb, const char *instance, const void *env, size_t len,
                     mh_broker_publish_fn cb, void *ud)
{
    batch_t *b = batch_for(pb, instance);
    b->waiters = mh_xgrow(b->waiters, b->n, &b->cap, sizeof(waiter_t), 8);
    b->waiters[b->n++] = (waiter_t){cb, ud};
    mh_codec_batch_append(&b->body, env, len);
    b->first_len = len; /* meaningful only while n == 1: it is the tail of body */
    b->first = b->body.data + b->body.len - len;
    if (b->body.len >= pb->max_bytes)
        flush_batch(pb, b);
    else
        uv_prepare_start(&pb->prepare, on_prepare);
}

mh_pubbatch_t *mh_pubbatch_new(struct uv_loop_s *loop, mh_broker_t *broker, size_t max_bytes)
{
    mh_pubbatch_t *pb = mh_xcalloc(1, sizeof(*pb));
    pb->broker = broker;
    pb->max_bytes = max_bytes;
    uv_prepare_init(loop, &pb->prepare);
    pb->prepare.data = pb;
    return pb;
}

static void free_on_close(uv_handle_t *h)
{
    free(h->data);
}

void mh_pubbatch_free(mh_pubbatch_t *pb)
{
    if (!pb)
        return;
    for (size_t i = 0; i < pb->n_batches; i++) {
        batch_t *b = &pb->batches[i];
        for (size_t k = 0; k < b->n; k++)
            b->waiters[k].cb(b->waiters[k].ud, MH_EIO);
        free(b->waiters);
        free(b->instance);
        mh_buf_free(&b->body);
    }
    free(pb->batches);
    uv_prepare_stop(&pb->prepare);
    uv_close((uv_handle_t *)&pb->prepare, free_on_close);
}
