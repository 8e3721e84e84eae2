/*
 * redis_decode: checks the shape of each reply redis_store and msglog_redis
 * read and takes the values out of it (contract in redis_decode.h). Pure:
 * only hiredis' reply struct, never a connection; the callers decide what
 * a malformed reply does to their operation. Ownership: the reply and what
 * points into it stay the caller's; mh_redis_decode_ids() returns a new array.
 */
#include "redis_decode.h"

#include <stdlib.h>

#include <hiredis/hiredis.h>

#include "msghub/util.h"

#define OPEN_REPLY_ELEMENTS 4 /* {0, last, acked, lost} */
#define OPEN_MIN_ELEMENTS 2   /* {-1, last} */
#define APPEND_HEAD 3         /* last_id, dropped, mid_top; then seq, route per receiver */
#define READ_HEAD 1           /* last; then seq, text, seq_at per entry */
#define READ_ENTRY 3

int mh_redis_decode_digits(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > MH_REDIS_U64_DIGITS_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int mh_redis_decode_int(const redisReply *r, uint64_t *out)
{
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < 0)
        return -1;
    *out = (uint64_t)r->integer;
    return 0;
}

int mh_redis_decode_counter(const redisReply *r, uint64_t *out)
{
    if (r && r->type == REDIS_REPLY_NIL) {
        *out = 0;
        return 0;
    }
    if (!r || r->type != REDIS_REPLY_STRING)
        return -1;
    return mh_redis_decode_digits(r->str, r->len, out);
}

int mh_redis_decode_u64(const redisReply *r, uint64_t *out)
{
    if (r && r->type == REDIS_REPLY_INTEGER)
        return mh_redis_decode_int(r, out);
    if (!r || r->type != REDIS_REPLY_STRING)
        return -1;
    return mh_redis_decode_digits(r->str, r->len, out);
}

int mh_redis_decode_secret(const redisReply *r, const char **s, size_t *len)
{
    if (!r || r->type != REDIS_REPLY_STRING || r->len == 0)
        return -1;
    *s = r->str;
    *len = r->len;
    return 0;
}

/* A string (*s its text) or nil (*s NULL). */
static int string_or_nil(const redisReply *r, const char **s)
{
    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL))
        return -1;
    *s = r->type == REDIS_REPLY_STRING ? r->str : NULL;
    return 0;
}

int mh_redis_decode_holder(const redisReply *r, const char **holder)
{
    return string_or_nil(r, holder);
}

int mh_redis_decode_routes(const redisReply *r, size_t n, const char **inst)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != n)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (string_or_nil(r->element[i], &inst[i]))
            return -1;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t *mh_redis_decode_ids(const redisReply *r, size_t *n)
{
    *n = 0;
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return NULL;
    uint64_t *ids = mh_xmalloc((r->elements ? r->elements : 1) * sizeof(*ids));
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING && !mh_redis_decode_digits(e->str, e->len, &ids[*n]))
            (*n)++;
    }
    qsort(ids, *n, sizeof(*ids), cmp_u64);
    return ids;
}

int mh_redis_decode_appended(const redisReply *r, size_t n, uint64_t *last_id, uint64_t *dropped,
                             uint64_t *mid_top, uint64_t *seqs, const char **inst)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != APPEND_HEAD + 2 * n ||
        mh_redis_decode_u64(r->element[0], last_id) ||
        mh_redis_decode_u64(r->element[1], dropped) || mh_redis_decode_u64(r->element[2], mid_top))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (mh_redis_decode_u64(r->element[APPEND_HEAD + 2 * i], &seqs[i]) ||
            string_or_nil(r->element[APPEND_HEAD + 1 + 2 * i], &inst[i]))
            return -1;
    return 0;
}

int mh_redis_decode_read(const redisReply *r, uint64_t *last_seq, size_t *n_entries)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < READ_HEAD ||
        (r->elements - READ_HEAD) % READ_ENTRY || mh_redis_decode_u64(r->element[0], last_seq))
        return -1;
    *n_entries = (r->elements - READ_HEAD) / READ_ENTRY;
    return 0;
}

int mh_redis_decode_entry(const redisReply *r, size_t i, mh_redis_entry_t *e)
{
    const redisReply *const *el =
        (const redisReply *const *)&r->element[READ_HEAD + READ_ENTRY * i];
    uint64_t seq_at;
    if (mh_redis_decode_u64(el[0], &e->seq) || el[1]->type != REDIS_REPLY_STRING ||
        mh_redis_decode_u64(el[2], &seq_at) || seq_at > el[1]->len)
        return -1;
    e->text = el[1]->str;
    e->len = el[1]->len;
    e->seq_at = (uint32_t)seq_at;
    return 0;
}

int mh_redis_decode_open(const redisReply *r, mh_msglog_state_t *st)
{
    uint64_t lost;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < OPEN_MIN_ELEMENTS)
        return MH_EIO;
    if (r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer < 0)
        return MH_EINVAL;
    if (r->elements != OPEN_REPLY_ELEMENTS || mh_redis_decode_u64(r->element[1], &st->last_seq) ||
        mh_redis_decode_u64(r->element[2], &st->acked_seq) ||
        mh_redis_decode_u64(r->element[3], &lost))
        return MH_EIO;
    st->recovered = lost <= st->acked_seq;
    return 0;
}
