/*
 * append_native: one loop turn's appends as one MULTI/EXEC (contract in
 * append_native.h). Redis spends about 4.5 us of Lua per delivery on the
 * append script whatever its shape (docs/BENCHMARKS.md); the same writes
 * as plain commands cost it a third of that. What needs a decision (caps,
 * ages, an expired log) is rare and goes to the tidy script after EXEC.
 */
#include "append_native.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_decode.h"

#include "msghub/u64map.h"
#include "msghub/util.h"

#define SEQ_KEY_BYTES 7u  /* ,"seq": before the digits, counted in every stored size */
#define MGET_CHUNK 1000u  /* routes per MGET */
#define RCV_REPLIES 4u    /* HINCRBY last, RPUSH, HINCRBY bytes, PEXPIRE: one receiver */
#define DUE_REPLIES 2u    /* PEXPIRE of the meta, LINDEX 0: a due receiver's more */
#define BODY_ARGS 8u      /* HSET key t text a seq_at r count */
#define RCV_FIXED_ARGS 2u /* RPUSH key, before the entries */
#define CMD_BUF_ARGS 64u  /* the batch's command buffer starts with room for this many arguments */

/* One receiver of the batch. */
typedef struct rcv {
    uint64_t id, top, n, bytes, sum, head_ms;
    uint32_t k, used, off; /* entries; seqs handed out; its first in order[] */
    size_t pos;            /* its first answer in EXEC's */
    int due, has_head, tidy;
    unsigned flags;
    uint64_t stale;
    size_t route; /* 1 + its offset in route_text; 0: none */
} rcv_t;

struct mh_append_native {
    const mh_append_native_keys_t *keys;
    mh_msglog_limits_t lim;
    uint64_t now;
    const mh_append_native_relay_t *relays; /* the caller's */
    size_t nrelays, nids;
    const unsigned char *due;
    uint64_t first_mid;
    rcv_t *rcv;
    size_t nrcv;
    uint32_t *slot;    /* per id of every relay: its receiver */
    uint32_t *order;   /* per entry, grouped by receiver, relay order within: its relay */
    mh_buf_t entries;  /* per relay with receivers: its entry, one after the other */
    size_t *entry_off; /* per relay: where its entry starts in entries, and its length */
    size_t *entry_len;
    size_t queued; /* commands between MULTI and EXEC */
    uint64_t *seqs;
    const char **routes;
    mh_buf_t route_text; /* copies of the routes */
    size_t ntidy;
};

static char *key_prefix(const char *prefix, const char *kind)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_buf_printf(&b, "%s:%s", prefix, kind);
    return b.data; /* the buffer's block, NUL-terminated: the caller frees it */
}

void mh_append_native_keys_init(mh_append_native_keys_t *k, const char *prefix)
{
    k->logm = key_prefix(prefix, "logm:");
    k->log = key_prefix(prefix, "log:");
    k->msg = key_prefix(prefix, "msg:");
    k->route = key_prefix(prefix, "route:");
    k->next_id = key_prefix(prefix, "next_id");
}

void mh_append_native_keys_free(mh_append_native_keys_t *k)
{
    free(k->logm);
    free(k->log);
    free(k->msg);
    free(k->route);
    free(k->next_id);
}

size_t mh_append_native_bodies(const mh_append_native_relay_t *relays, size_t nrelays)
{
    size_t n = 0;
    for (size_t r = 0; r < nrelays; r++)
        n += relays[r].n > 0;
    return n;
}

uint64_t mh_append_native_digits(uint64_t a, uint64_t b)
{
    uint64_t s = 0, lo = 1;
    for (unsigned d = 1; d <= 20 && lo <= b; d++) {
        uint64_t hi = d == 20 ? UINT64_MAX : lo * 10 - 1;
        uint64_t x = a > lo ? a : lo, y = b < hi ? b : hi;
        if (x <= y)
            s += (y - x + 1) * d;
        if (d == 20)
            break;
        lo *= 10;
    }
    return s;
}

/* Receivers in the order they first appear; slot[] per id; entries grouped per receiver. */
static void group(mh_append_native_t *b)
{
    mh_u64map_t *at = mh_u64map_new();
    size_t cap = 0, f = 0;
    b->slot = mh_xmalloc((b->nids ? b->nids : 1) * sizeof(*b->slot));
    for (size_t r = 0; r < b->nrelays; r++) {
        const mh_append_native_relay_t *w = &b->relays[r];
        for (size_t i = 0; i < w->n; i++, f++) {
            uintptr_t x = (uintptr_t)mh_u64map_get(at, w->ids[i]);
            if (!x) {
                b->rcv = mh_xgrow(b->rcv, b->nrcv, &cap, sizeof(*b->rcv), 16);
                b->rcv[b->nrcv] = (rcv_t){.id = w->ids[i]};
                x = ++b->nrcv;
                mh_u64map_put(at, w->ids[i], (void *)x);
            }
            rcv_t *c = &b->rcv[x - 1];
            c->k++;
            c->due |= b->due[f];
            b->slot[f] = (uint32_t)(x - 1);
        }
    }
    mh_u64map_free(at);
    uint32_t off = 0;
    for (size_t j = 0; j < b->nrcv; j++) {
        b->rcv[j].off = off;
        off += b->rcv[j].k;
    }
    b->order = mh_xmalloc((b->nids ? b->nids : 1) * sizeof(*b->order));
    f = 0;
    for (size_t r = 0; r < b->nrelays; r++) {
        for (size_t i = 0; i < b->relays[r].n; i++, f++) {
            rcv_t *c = &b->rcv[b->slot[f]];
            b->order[c->off + c->used++] = (uint32_t)r;
        }
    }
}

/* Each relay's entry "<size>:<now>:<m>", the same for all of its receivers. */
static void make_entries(mh_append_native_t *b)
{
    uint64_t mid = b->first_mid;
    size_t n = b->nrelays ? b->nrelays : 1;
    b->entry_off = mh_xmalloc(n * sizeof(*b->entry_off));
    b->entry_len = mh_xmalloc(n * sizeof(*b->entry_len));
    mh_buf_init(&b->entries);
    for (size_t r = 0; r < b->nrelays; r++) {
        b->entry_off[r] = b->entries.len;
        if (b->relays[r].n) {
            mh_buf_u64(&b->entries, b->relays[r].len + SEQ_KEY_BYTES);
            mh_buf_append(&b->entries, ":", 1);
            mh_buf_u64(&b->entries, b->now);
            mh_buf_append(&b->entries, ":", 1);
            mh_buf_u64(&b->entries, mid++);
        }
        b->entry_len[r] = b->entries.len - b->entry_off[r];
    }
}

mh_append_native_t *mh_append_native_new(const mh_append_native_keys_t *keys,
                                         const mh_msglog_limits_t *lim, uint64_t now_ms,
                                         const mh_append_native_relay_t *relays, size_t nrelays,
                                         const unsigned char *due, uint64_t first_mid)
{
    mh_append_native_t *b = mh_xcalloc(1, sizeof(*b));
    b->keys = keys;
    b->lim = *lim;
    b->now = now_ms;
    b->relays = relays;
    b->nrelays = nrelays;
    b->due = due;
    b->first_mid = first_mid;
    for (size_t r = 0; r < nrelays; r++)
        b->nids += relays[r].n;
    mh_buf_init(&b->route_text);
    group(b);
    make_entries(b);
    return b;
}

void mh_append_native_free(mh_append_native_t *b)
{
    if (!b)
        return;
    free(b->rcv);
    free(b->slot);
    free(b->order);
    mh_buf_free(&b->entries);
    free(b->entry_off);
    free(b->entry_len);
    free(b->seqs);
    free(b->routes);
    mh_buf_free(&b->route_text);
    free(b);
}

/* ---- sending ---- */

/* One command of fixed words: verb, key prefix + id, then up to two more words. */
static void send_key_cmd(mh_redis_conn_req_t *q, mh_redis_conn_cmd_t *c, const char *verb,
                         const char *kp, uint64_t id, const char *a1, uint64_t a2, int nargs)
{
    mh_redis_conn_cmd_reset(c, (size_t)nargs, verb);
    mh_redis_conn_cmd_u64(c, kp, id);
    if (a1)
        mh_redis_conn_cmd_bin(c, a1, strlen(a1));
    if (nargs > (a1 ? 3 : 2))
        mh_redis_conn_cmd_u64(c, "", a2);
    mh_redis_conn_cmd_queue(q, c);
}

static void send_bodies(mh_append_native_t *b, mh_redis_conn_req_t *q, mh_redis_conn_cmd_t *c)
{
    uint64_t mid = b->first_mid;
    for (size_t r = 0; r < b->nrelays; r++) {
        const mh_append_native_relay_t *w = &b->relays[r];
        if (!w->n)
            continue;
        mh_redis_conn_cmd_reset(c, BODY_ARGS, "HSET");
        mh_redis_conn_cmd_u64(c, b->keys->msg, mid);
        mh_redis_conn_cmd_bin(c, "t", 1);
        mh_redis_conn_cmd_bin(c, w->text, w->len);
        mh_redis_conn_cmd_bin(c, "a", 1);
        mh_redis_conn_cmd_u64(c, "", w->seq_at);
        mh_redis_conn_cmd_bin(c, "r", 1);
        mh_redis_conn_cmd_u64(c, "", w->n);
        mh_redis_conn_cmd_queue(q, c);
        b->queued++;
        if (b->lim.ttl_ms) {
            send_key_cmd(q, c, "PEXPIRE", b->keys->msg, mid, NULL, b->lim.ttl_ms, 3);
            b->queued++;
        }
        mid++;
    }
}

static void send_receiver(mh_append_native_t *b, rcv_t *r, mh_redis_conn_req_t *q,
                          mh_redis_conn_cmd_t *c)
{
    const mh_append_native_keys_t *k = b->keys;
    r->pos = b->queued;
    send_key_cmd(q, c, "HINCRBY", k->logm, r->id, "last", r->k, 4);
    mh_redis_conn_cmd_reset(c, RCV_FIXED_ARGS + r->k, "RPUSH");
    mh_redis_conn_cmd_u64(c, k->log, r->id);
    for (uint32_t x = 0; x < r->k; x++) {
        size_t e = b->order[r->off + x];
        mh_redis_conn_cmd_bin(c, b->entries.data + b->entry_off[e], b->entry_len[e]);
        r->sum += b->relays[e].len + SEQ_KEY_BYTES;
    }
    mh_redis_conn_cmd_queue(q, c);
    send_key_cmd(q, c, "HINCRBY", k->logm, r->id, "bytes", r->sum, 4);
    b->queued += 3;
    if (!b->lim.ttl_ms)
        return;
    b->queued++;
    /* a list created anew (its log was acked empty) gets its TTL, others keep theirs */
    if (!r->due) {
        mh_redis_conn_cmd_reset(c, 4, "PEXPIRE");
        mh_redis_conn_cmd_u64(c, k->log, r->id);
        mh_redis_conn_cmd_u64(c, "", b->lim.ttl_ms);
        mh_redis_conn_cmd_bin(c, "NX", 2);
        mh_redis_conn_cmd_queue(q, c);
        return;
    }
    send_key_cmd(q, c, "PEXPIRE", k->log, r->id, NULL, b->lim.ttl_ms, 3);
    send_key_cmd(q, c, "PEXPIRE", k->logm, r->id, NULL, 2 * b->lim.ttl_ms, 3);
    send_key_cmd(q, c, "LINDEX", k->log, r->id, NULL, 0, 3);
    b->queued += DUE_REPLIES;
}

static void send_routes(mh_append_native_t *b, mh_redis_conn_req_t *q, mh_redis_conn_cmd_t *c)
{
    for (size_t j = 0; j < b->nrcv; j += MGET_CHUNK) {
        size_t m = b->nrcv - j < MGET_CHUNK ? b->nrcv - j : MGET_CHUNK;
        mh_redis_conn_cmd_reset(c, 1 + m, "MGET");
        for (size_t x = 0; x < m; x++)
            mh_redis_conn_cmd_u64(c, b->keys->route, b->rcv[j + x].id);
        mh_redis_conn_cmd_queue(q, c);
        b->queued++;
    }
}

/* A command of one word. */
static void send_verb(mh_redis_conn_req_t *q, mh_redis_conn_cmd_t *c, const char *verb)
{
    mh_redis_conn_cmd_reset(c, 1, verb);
    mh_redis_conn_cmd_queue(q, c);
}

size_t mh_append_native_send(mh_append_native_t *b, mh_redis_conn_req_t *q)
{
    mh_redis_conn_cmd_t c; /* one buffer for all of the batch's commands */
    mh_redis_conn_cmd_init(&c, CMD_BUF_ARGS, "MULTI");
    mh_redis_conn_cmd_queue(q, &c);
    mh_redis_conn_cmd_reset(&c, 2, "GET");
    mh_redis_conn_cmd_bin(&c, b->keys->next_id, strlen(b->keys->next_id));
    mh_redis_conn_cmd_queue(q, &c);
    b->queued = 1;
    send_bodies(b, q, &c);
    for (size_t j = 0; j < b->nrcv; j++)
        send_receiver(b, &b->rcv[j], q, &c);
    send_routes(b, q, &c);
    send_verb(q, &c, "EXEC");
    mh_redis_conn_cmd_free(&c);
    return b->queued + 1; /* MULTI's answer is 0 */
}

/* ---- reading ---- */

static int int_at(const redisReply *r, size_t i, uint64_t *v)
{
    const redisReply *e = r->element[i];
    if (e->type != REDIS_REPLY_INTEGER || e->integer < 0)
        return -1;
    *v = (uint64_t)e->integer;
    return 0;
}

/* The stored ms of an entry "<seq>:<size>:<ms>:<m>" or "<size>:<ms>:<m>": its last field but one.
 */
static int entry_ms(const redisReply *e, uint64_t *ms)
{
    const char *end = e->str + e->len, *p = end;
    while (p > e->str && p[-1] != ':')
        p--;
    if (p == e->str)
        return -1;
    const char *q = --p;
    while (q > e->str && q[-1] != ':')
        q--;
    return mh_redis_decode_digits(q, (size_t)(p - q), ms);
}

/* A receiver's answers: top, length, bytes; the head when due. */
static int read_receiver(mh_append_native_t *b, rcv_t *c, const redisReply *r)
{
    if (int_at(r, c->pos, &c->top) || int_at(r, c->pos + 1, &c->n) ||
        int_at(r, c->pos + 2, &c->bytes) || c->top < c->k || c->n < c->k)
        return -1;
    if (!c->due || !b->lim.ttl_ms)
        return 0;
    const redisReply *h = r->element[c->pos + RCV_REPLIES + 1];
    if (h->type == REDIS_REPLY_STRING) {
        if (entry_ms(h, &c->head_ms))
            return -1;
        c->has_head = 1;
    } else if (h->type != REDIS_REPLY_NIL) {
        return -1;
    }
    return 0;
}

/* Copies the routes out of the MGET answers (the reply goes when the hook returns). */
static int read_routes(mh_append_native_t *b, const redisReply *r, size_t at)
{
    size_t total = 0;
    for (size_t j = 0; j < b->nrcv; j += MGET_CHUNK) {
        const redisReply *g = r->element[at + j / MGET_CHUNK];
        size_t m = b->nrcv - j < MGET_CHUNK ? b->nrcv - j : MGET_CHUNK;
        if (g->type != REDIS_REPLY_ARRAY || g->elements != m)
            return -1;
        for (size_t x = 0; x < m; x++) {
            const redisReply *v = g->element[x];
            if (v->type != REDIS_REPLY_STRING && v->type != REDIS_REPLY_NIL)
                return -1;
            total += v->type == REDIS_REPLY_STRING ? v->len + 1 : 0;
        }
    }
    mh_buf_reserve(&b->route_text, total + 1);
    for (size_t j = 0; j < b->nrcv; j++) {
        const redisReply *v = r->element[at + j / MGET_CHUNK]->element[j % MGET_CHUNK];
        if (v->type != REDIS_REPLY_STRING)
            continue;
        b->rcv[j].route = 1 + b->route_text.len;
        mh_buf_append(&b->route_text, v->str, v->len);
        mh_buf_append(&b->route_text, "", 1);
    }
    return 0;
}

/* What the tidy script must do for c (see tidy_lua), from EXEC's answers. */
static void decide(mh_append_native_t *b, rcv_t *c, uint64_t next_id)
{
    const mh_msglog_limits_t *lim = &b->lim;
    if (c->id > next_id) {
        c->flags = MH_APPEND_NATIVE_TIDY_FORGET;
        c->tidy = 1;
        b->ntidy++;
        return;
    }
    uint64_t bytes = c->bytes;
    if (c->n == c->k && bytes > c->sum) { /* the list was gone, its meta's bytes were not */
        c->stale = bytes - c->sum;
        bytes = c->sum;
    }
    uint64_t maxn = lim->max_msgs ? lim->max_msgs : 1;
    uint64_t wire = bytes + mh_append_native_digits(c->top - c->n + 1, c->top);
    int over = c->n > maxn || wire > lim->max_bytes;
    if (c->has_head && c->head_ms + lim->ttl_ms <= b->now)
        c->flags |= MH_APPEND_NATIVE_TIDY_AGE;
    if (c->top == c->k && !c->due && lim->ttl_ms)
        c->flags |= MH_APPEND_NATIVE_TIDY_TOUCH;
    c->tidy = over || c->stale || c->flags;
    b->ntidy += (size_t)c->tidy;
}

int mh_append_native_read(mh_append_native_t *b, const redisReply *r, uint64_t *next_id)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != b->queued)
        return -1;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_ERROR)
            return -1;
    const redisReply *g = r->element[0];
    *next_id = 0;
    if (g->type == REDIS_REPLY_STRING ? mh_redis_decode_digits(g->str, g->len, next_id)
                                      : g->type != REDIS_REPLY_NIL)
        return -1;
    for (size_t j = 0; j < b->nrcv; j++)
        if (read_receiver(b, &b->rcv[j], r))
            return -1;
    if (read_routes(b, r, b->queued - (b->nrcv + MGET_CHUNK - 1) / MGET_CHUNK))
        return -1;
    b->seqs = mh_xcalloc(b->nids ? b->nids : 1, sizeof(*b->seqs));
    b->routes = mh_xcalloc(b->nids ? b->nids : 1, sizeof(*b->routes));
    for (size_t j = 0; j < b->nrcv; j++) {
        b->rcv[j].used = 0;
        decide(b, &b->rcv[j], *next_id);
    }
    for (size_t f = 0; f < b->nids; f++) {
        rcv_t *c = &b->rcv[b->slot[f]];
        if (c->flags & MH_APPEND_NATIVE_TIDY_FORGET)
            continue; /* seq 0, no route: unknown after all */
        b->seqs[f] = c->top - c->k + ++c->used;
        b->routes[f] = c->route ? b->route_text.data + c->route - 1 : NULL;
    }
    return 0;
}

const uint64_t *mh_append_native_seqs(const mh_append_native_t *b)
{
    return b->seqs;
}

const char **mh_append_native_routes(const mh_append_native_t *b)
{
    return b->routes;
}

size_t mh_append_native_tidy_count(const mh_append_native_t *b)
{
    return b->ntidy;
}

void mh_append_native_tidy_args(const mh_append_native_t *b, mh_redis_conn_cmd_t *c)
{
    for (size_t j = 0; j < b->nrcv; j++) {
        const rcv_t *x = &b->rcv[j];
        if (!x->tidy)
            continue;
        mh_redis_conn_cmd_u64(c, "", x->id);
        mh_redis_conn_cmd_u64(c, "", x->flags);
        mh_redis_conn_cmd_u64(c, "", x->stale);
        mh_redis_conn_cmd_u64(c, "", x->top - x->k);
    }
}
