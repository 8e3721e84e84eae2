/*
 * msglog_mem: per-id rings of (seq, frame, store time, size), see
 * msglog_mem.h. Everything happens inside the call; the callbacks run
 * before each operation returns.
 */
#include "msghub/msglog_mem.h"

#include <stdlib.h>

#include "msghub/codec.h"
#include "msghub/u64map.h"

#define FIRST_RING_CAP 4

typedef struct entry {
    uint64_t seq;
    mh_frame_t *frame;
    uint64_t stored_ms;
    uint64_t size; /* wire bytes as this receiver gets them */
} entry_t;

typedef struct idlog {
    entry_t *ring;
    size_t cap, head, len;
    uint64_t bytes;
    uint64_t last_seq;  /* highest seq handed out */
    uint64_t acked_seq; /* everything <= is acknowledged */
    uint64_t lost_seq;  /* highest seq dropped by retention */
} idlog_t;

typedef struct memlog {
    mh_u64map_t *logs;
    mh_msglog_mem_options_t o;
    uint64_t expired; /* TTL drops not yet reported by mh_msglog_mem_expire() */
} memlog_t;

static uint64_t now_of(const memlog_t *m)
{
    return m->o.now_ms ? m->o.now_ms(m->o.ud) : mh_now_ms();
}

static entry_t *at(idlog_t *g, size_t i)
{
    return &g->ring[(g->head + i) % g->cap];
}

static entry_t shift(memlog_t *m, idlog_t *g)
{
    entry_t e = g->ring[g->head];
    if (--e.frame->log_refs == 0 && m->o.account)
        *m->o.account -= e.frame->len;
    g->head = (g->head + 1) % g->cap;
    g->len--;
    g->bytes -= e.size;
    mh_frame_unref(e.frame);
    if (!g->len) { /* an empty ring costs nothing but the seq state */
        free(g->ring);
        g->ring = NULL;
        g->cap = g->head = 0;
    }
    return e;
}

static void push(memlog_t *m, idlog_t *g, entry_t e)
{
    if (e.frame->log_refs++ == 0 && m->o.account) /* a shared body counts once */
        *m->o.account += e.frame->len;
    if (g->len == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : FIRST_RING_CAP;
        entry_t *ring = mh_xmalloc(cap * sizeof(*ring));
        for (size_t i = 0; i < g->len; i++)
            ring[i] = *at(g, i);
        free(g->ring);
        g->ring = ring;
        g->cap = cap;
        g->head = 0;
    }
    g->ring[(g->head + g->len) % g->cap] = e;
    g->len++;
    g->bytes += e.size;
}

/* Drops expired entries at the head (store times ascend from head to tail). */
static uint64_t expire_log(memlog_t *m, idlog_t *g, uint64_t now_ms)
{
    uint64_t n = 0, ttl = m->o.limits.ttl_ms;
    while (ttl && g->len && now_ms >= at(g, 0)->stored_ms + ttl) {
        g->lost_seq = shift(m, g).seq;
        n++;
    }
    return n;
}

static idlog_t *get_log(memlog_t *m, uint64_t id, int create)
{
    idlog_t *g = mh_u64map_get(m->logs, id);
    if (!g && create) {
        g = mh_xcalloc(1, sizeof(*g));
        mh_u64map_put(m->logs, id, g);
    }
    return g;
}

/* Appends f as id's next seq, dropping the oldest beyond the caps; returns the seq. */
static uint64_t append_one(memlog_t *m, idlog_t *g, mh_frame_t *f, uint64_t now_ms,
                           uint64_t *dropped)
{
    uint64_t seq = ++g->last_seq;
    uint64_t size = mh_codec_message_seq_len(f, seq);
    uint32_t max_msgs = m->o.limits.max_msgs ? m->o.limits.max_msgs : 1;
    *dropped += expire_log(m, g, now_ms);
    while (g->len && (g->len >= max_msgs || g->bytes + size > m->o.limits.max_bytes)) {
        g->lost_seq = shift(m, g).seq;
        (*dropped)++;
    }
    push(m, g, (entry_t){seq, mh_frame_ref(f), now_ms, size});
    return seq;
}

static void mem_append(void *impl, const uint64_t *ids, size_t n, mh_frame_t *f, uint64_t now_ms,
                       mh_msglog_append_fn cb, void *ud)
{
    memlog_t *m = impl;
    uint64_t last_id = m->o.last_id ? m->o.last_id(m->o.ud) : UINT64_MAX;
    uint64_t *seqs = mh_xcalloc(n ? n : 1, sizeof(uint64_t));
    const char **instances = mh_xcalloc(n ? n : 1, sizeof(char *));
    mh_msglog_appended_t res = {seqs, instances, n, 0};
    for (size_t i = 0; i < n; i++)
        if (ids[i] && ids[i] <= last_id)
            seqs[i] = append_one(m, get_log(m, ids[i], 1), f, now_ms, &res.dropped);
    cb(ud, 0, &res);
    free(seqs);
    free(instances);
}

static void mem_read(void *impl, uint64_t id, uint64_t after, size_t max, mh_msglog_read_fn cb,
                     void *ud)
{
    memlog_t *m = impl;
    idlog_t *g = get_log(m, id, 0);
    if (!g) {
        cb(ud, 0, NULL, 0, 0);
        return;
    }
    m->expired += expire_log(m, g, now_of(m));
    size_t skip = 0, n = 0;
    if (g->len && after >= at(g, 0)->seq)
        skip = after - at(g, 0)->seq + 1 > g->len ? g->len : (size_t)(after - at(g, 0)->seq + 1);
    n = g->len - skip < max ? g->len - skip : max;
    mh_msglog_entry_t *out = mh_xmalloc((n ? n : 1) * sizeof(*out));
    for (size_t i = 0; i < n; i++)
        out[i] = (mh_msglog_entry_t){at(g, skip + i)->seq, at(g, skip + i)->frame};
    cb(ud, 0, out, n, g->last_seq);
    free(out);
}

/* Acknowledges everything <= seq (seq <= last_seq). */
static void ack_log(memlog_t *m, idlog_t *g, uint64_t seq)
{
    if (seq <= g->acked_seq)
        return;
    g->acked_seq = seq;
    while (g->len && at(g, 0)->seq <= seq)
        shift(m, g);
}

static void mem_open(void *impl, uint64_t id, uint64_t since, mh_msglog_state_fn cb, void *ud)
{
    memlog_t *m = impl;
    idlog_t *g = get_log(m, id, 0);
    mh_msglog_state_t st = {0, 0, 1};
    if (since > (g ? g->last_seq : 0)) {
        cb(ud, MH_EINVAL, &st);
        return;
    }
    if (g) {
        m->expired += expire_log(m, g, now_of(m));
        ack_log(m, g, since);
        st = (mh_msglog_state_t){g->last_seq, g->acked_seq, g->lost_seq <= g->acked_seq};
    }
    cb(ud, 0, &st);
}

static void mem_ack(void *impl, uint64_t id, uint64_t seq, mh_msglog_status_fn cb, void *ud)
{
    memlog_t *m = impl;
    idlog_t *g = get_log(m, id, 0);
    int rc = seq > (g ? g->last_seq : 0) ? MH_EINVAL : 0;
    if (!rc && g)
        ack_log(m, g, seq);
    if (cb)
        cb(ud, rc);
}

static int mem_last_seq_now(void *impl, uint64_t id, uint64_t *out)
{
    idlog_t *g = get_log(impl, id, 0);
    *out = g ? g->last_seq : 0;
    return 0;
}

static void mem_free(void *impl)
{
    memlog_t *m = impl;
    size_t cursor = 0;
    uint64_t id;
    void *v;
    while (mh_u64map_next(m->logs, &cursor, &id, &v)) {
        idlog_t *g = v;
        while (g->len)
            shift(m, g);
        free(g);
    }
    mh_u64map_free(m->logs);
    free(m);
}

static const mh_msglog_ops_t mem_ops = {
    .append = mem_append,
    .read = mem_read,
    .open = mem_open,
    .ack = mem_ack,
    .free = mem_free,
    .last_seq_now = mem_last_seq_now,
};

int mh_msglog_mem_new(mh_msglog_t *out, const mh_msglog_mem_options_t *opts)
{
    memlog_t *m = mh_xcalloc(1, sizeof(*m));
    m->logs = mh_u64map_new();
    m->o = *opts;
    out->ops = &mem_ops;
    out->impl = m;
    return 0;
}

uint64_t mh_msglog_mem_expire(mh_msglog_t *l, uint64_t now_ms)
{
    memlog_t *m = l->impl;
    size_t cursor = 0;
    uint64_t id;
    void *v;
    while (mh_u64map_next(m->logs, &cursor, &id, &v))
        m->expired += expire_log(m, v, now_ms);
    uint64_t n = m->expired;
    m->expired = 0;
    return n;
}
