/*
 * fuzz_redis: libFuzzer target over the decoders of the Redis replies the
 * hub reads (src/backplane/redis_decode.c). The input is fed to hiredis'
 * own reader (redisReaderCreate / Feed / GetReply, as the connection does),
 * and every reply it yields goes through every decoder. Invariants: no
 * crash, a decoder accepts exactly the shapes it documents, and what it
 * decodes agrees with the reply (a u64 re-prints to the digits, strings
 * point at the reply's, ids come out sorted). A breach aborts.
 *
 * Built with clang -fsanitize=fuzzer as fuzz_redis when MSGHUB_FUZZ is on
 * (scripts/fuzz), and with driver.c as fuzz_replay_redis for ctest.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "fuzz_check.h"
#include "redis_decode.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

/*
 * Largest array the input may announce: hiredis 0.14 allocates an array's
 * element table from the announced count before its elements arrive, so a
 * huge count is an allocation failure in hiredis, not in the decoders.
 */
#define MAX_ARRAY 4096
#define MAX_REPLIES 64 /* replies decoded per input */

static const char u64_max[] = "18446744073709551615";

/* 1 when the input announces no array above MAX_ARRAY (nor a negative one but nil). */
static int counts_ok(const char *s, size_t n)
{
    for (const char *p = memchr(s, '*', n); p; p = memchr(p, '*', n - (size_t)(p - s))) {
        p++;
        int neg = p < s + n && *p == '-';
        uint64_t v = 0;
        const char *q = p + neg;
        for (; q < s + n && *q >= '0' && *q <= '9' && v <= MAX_ARRAY; q++)
            v = v * 10 + (uint64_t)(*q - '0');
        if (v > MAX_ARRAY || (neg && v > 1))
            return 0;
    }
    return 1;
}

/* 1 when d[n] is 1..20 digits not above 2^64-1. */
static int digits_ok(const char *d, size_t n)
{
    if (n == 0 || n > MH_REDIS_U64_DIGITS_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (d[i] < '0' || d[i] > '9')
            return 0;
    return n < sizeof(u64_max) - 1 || memcmp(d, u64_max, n) <= 0;
}

/* What mh_redis_decode_u64 must do with r: 1 accepted (value checked), 0 refused. */
static int u64_agrees(const redisReply *r, int rc, uint64_t v)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return rc == 0 ? r->integer >= 0 && v == (uint64_t)r->integer : r->integer < 0;
    if (r->type == REDIS_REPLY_STRING)
        return rc == 0 ? digits_ok(r->str, r->len) && fuzz_reprints(v, r->str, r->len)
                       : !digits_ok(r->str, r->len);
    return rc != 0;
}

static int string_or_nil(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL;
}

static void check_scalars(const redisReply *r)
{
    uint64_t v = 0;
    int rc = mh_redis_decode_u64(r, &v); /* apart: v is read after the call */
    CHECK(u64_agrees(r, rc, v));
    rc = mh_redis_decode_int(r, &v);
    CHECK((rc == 0) == (r->type == REDIS_REPLY_INTEGER && r->integer >= 0));
    CHECK(rc || v == (uint64_t)r->integer);
    rc = mh_redis_decode_counter(r, &v);
    if (r->type == REDIS_REPLY_NIL)
        CHECK(rc == 0 && v == 0);
    else if (r->type == REDIS_REPLY_STRING)
        CHECK(u64_agrees(r, rc, v));
    else
        CHECK(rc != 0);
    const char *s = NULL;
    size_t len = 0;
    rc = mh_redis_decode_secret(r, &s, &len);
    CHECK((rc == 0) == (r->type == REDIS_REPLY_STRING && r->len > 0));
    CHECK(rc || (s == r->str && len == r->len));
    rc = mh_redis_decode_holder(r, &s);
    CHECK((rc == 0) == string_or_nil(r));
    CHECK(rc || s == (r->type == REDIS_REPLY_STRING ? r->str : NULL));
}

static void check_routes(const redisReply *r)
{
    size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    static const char *inst[MAX_ARRAY + 1]; /* not malloc: ASan's allocator dominated the run */
    int all = r->type == REDIS_REPLY_ARRAY;
    for (size_t i = 0; all && i < n; i++)
        all = string_or_nil(r->element[i]);
    int rc = mh_redis_decode_routes(r, n, inst);
    CHECK((rc == 0) == all);
    for (size_t i = 0; rc == 0 && i < n; i++)
        CHECK(inst[i] == (r->element[i]->type == REDIS_REPLY_STRING ? r->element[i]->str : NULL));
    CHECK(mh_redis_decode_routes(r, n + 1, inst) != 0); /* another count: refused */
}

static void check_ids(const redisReply *r)
{
    size_t n, want = 0;
    uint64_t *ids = mh_redis_decode_ids(r, &n);
    CHECK((ids != NULL) == (r->type == REDIS_REPLY_ARRAY));
    if (!ids)
        return;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        want += e->type == REDIS_REPLY_STRING && digits_ok(e->str, e->len);
    }
    CHECK(n == want);
    for (size_t i = 1; i < n; i++)
        CHECK(ids[i - 1] <= ids[i]);
    free(ids);
}

static void check_appended(const redisReply *r)
{
    size_t n = r->type == REDIS_REPLY_ARRAY && r->elements >= 3 ? (r->elements - 3) / 2 : 0;
    static uint64_t seqs[MAX_ARRAY];
    static const char *inst[MAX_ARRAY];
    uint64_t last_id, dropped, mid_top;
    if (mh_redis_decode_appended(r, n, &last_id, &dropped, &mid_top, seqs, inst) == 0) {
        CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 3 + 2 * n);
        CHECK(u64_agrees(r->element[0], 0, last_id) && u64_agrees(r->element[1], 0, dropped) &&
              u64_agrees(r->element[2], 0, mid_top));
        for (size_t i = 0; i < n; i++) {
            const redisReply *route = r->element[4 + 2 * i];
            CHECK(u64_agrees(r->element[3 + 2 * i], 0, seqs[i]) && string_or_nil(route));
            CHECK(inst[i] == (route->type == REDIS_REPLY_STRING ? route->str : NULL));
        }
    }
}

static void check_read(const redisReply *r)
{
    uint64_t last;
    size_t n;
    if (mh_redis_decode_read(r, &last, &n))
        return;
    CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 1 + 3 * n);
    CHECK(u64_agrees(r->element[0], 0, last));
    for (size_t i = 0; i < n; i++) {
        mh_redis_entry_t e;
        const redisReply *text = r->element[2 + 3 * i];
        if (mh_redis_decode_entry(r, i, &e))
            continue;
        CHECK(text->type == REDIS_REPLY_STRING && e.text == text->str && e.len == text->len);
        CHECK(e.seq_at <= e.len && u64_agrees(r->element[1 + 3 * i], 0, e.seq));
    }
}

static void check_open(const redisReply *r)
{
    mh_msglog_state_t st = {0};
    int rc = mh_redis_decode_open(r, &st);
    CHECK(rc == 0 || rc == MH_EINVAL || rc == MH_EIO);
    if (rc == MH_EINVAL)
        CHECK(r->type == REDIS_REPLY_ARRAY && r->element[0]->type == REDIS_REPLY_INTEGER &&
              r->element[0]->integer < 0);
    if (rc == 0) {
        CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 4);
        CHECK(u64_agrees(r->element[1], 0, st.last_seq));
        CHECK(u64_agrees(r->element[2], 0, st.acked_seq));
        CHECK(st.recovered == 0 || st.recovered == 1);
    }
}

/* Every decoder on r, and on each of its elements (nested replies are replies too). */
static void check_reply(const redisReply *r, int depth)
{
    check_scalars(r);
    check_routes(r);
    check_ids(r);
    check_appended(r);
    check_read(r);
    check_open(r);
    if (r->type == REDIS_REPLY_ARRAY && depth < 2)
        for (size_t i = 0; i < r->elements; i++)
            check_reply(r->element[i], depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    if (!counts_ok(s, size))
        return 0;
    uint64_t v;
    int rc = mh_redis_decode_digits(s, size, &v);
    CHECK((rc == 0) == digits_ok(s, size) && (rc || fuzz_reprints(v, s, size)));
    CHECK(mh_redis_decode_u64(NULL, &v) != 0 && mh_redis_decode_open(NULL, NULL) != 0);
    redisReader *rd = redisReaderCreate();
    CHECK(rd);
    if (redisReaderFeed(rd, s, size) == REDIS_OK) {
        void *reply;
        for (int k = 0; k < MAX_REPLIES; k++) {
            if (redisReaderGetReply(rd, &reply) != REDIS_OK || !reply)
                break;
            check_reply(reply, 0);
            freeReplyObject(reply);
        }
    }
    redisReaderFree(rd);
    return 0;
}
