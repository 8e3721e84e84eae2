/*
 * redis_decode: the reading of the replies redis_store and msglog_redis get
 * back from Redis, as pure functions of a hiredis reply tree: no
 * connection, no loop, so tests and the fuzz target (tests/fuzz/fuzz_redis.c)
 * call them on replies made by hiredis' own reader. Each returns 0 when the
 * reply has the shape its command answers with, -1 when not (open: see
 * there); a reply may be NULL (nothing came back). Strings handed out point
 * into the reply. Internal to src/backplane.
 */
#ifndef MSGHUB_REDIS_DECODE_H
#define MSGHUB_REDIS_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/msglog.h"

struct redisReply;

/* Most digits a u64 has (2^64-1). */
#define MH_REDIS_U64_DIGITS_MAX 20

/* s[n]: 1 to 20 decimal digits, at most 2^64-1. */
int mh_redis_decode_digits(const char *s, size_t n, uint64_t *out);

/* An integer >= 0 (INCR). */
int mh_redis_decode_int(const struct redisReply *r, uint64_t *out);

/* A counter read by GET: nil is 0, else a string of digits. */
int mh_redis_decode_counter(const struct redisReply *r, uint64_t *out);

/* An integer >= 0 or a string of digits (what Lua numbers come back as). */
int mh_redis_decode_u64(const struct redisReply *r, uint64_t *out);

/* The token secret in force: a non-empty string. */
int mh_redis_decode_secret(const struct redisReply *r, const char **s, size_t *len);

/* SET ... GET of a claim: the previous holder, NULL for nil. */
int mh_redis_decode_holder(const struct redisReply *r, const char **holder);

/* MGET of n routes: an array of n strings or nils; inst[i] NULL for nil. */
int mh_redis_decode_routes(const struct redisReply *r, size_t n, const char **inst);

/*
 * ZRANGEBYSCORE of the presence set: an array. Returns its members that
 * are ids, sorted, in a new array (free()) and their count in *n (members
 * that are no id are not ours: skipped); NULL when r is no array.
 */
uint64_t *mh_redis_decode_ids(const struct redisReply *r, size_t *n);

/* The append script's {last_id, dropped, mid_top, seq, route, ...} for n receivers. */
int mh_redis_decode_appended(const struct redisReply *r, size_t n, uint64_t *last_id,
                             uint64_t *dropped, uint64_t *mid_top, uint64_t *seqs,
                             const char **inst);

/* The read script's {last, seq, text, seq_at, ...}: the last seq and the number of entries. */
int mh_redis_decode_read(const struct redisReply *r, uint64_t *last_seq, size_t *n_entries);

/* Entry i of a reply mh_redis_decode_read() accepted: text points into the reply. */
typedef struct mh_redis_entry {
    uint64_t seq;
    const char *text;
    size_t len;
    uint32_t seq_at; /* offset in text where `,"seq":<seq>` goes; <= len */
} mh_redis_entry_t;

int mh_redis_decode_entry(const struct redisReply *r, size_t i, mh_redis_entry_t *e);

/*
 * The open script's {0, last, acked, lost}: 0 and *st; {-1, last}: MH_EINVAL
 * (since above the last seq); MH_EIO when malformed.
 */
int mh_redis_decode_open(const struct redisReply *r, mh_msglog_state_t *st);

#endif
