/*
 * append_native: one loop turn's appends to the per-user log as a single
 * MULTI/EXEC of plain Redis commands, without Lua (msglog_redis.c decides
 * when a batch may go this way and runs the scripts for the rest). Builds
 * the commands, reads EXEC's answer into each receiver's seqs and route,
 * and says which receivers need the tidy script (retention, an expired
 * log's leftovers, TTLs of a new meta, ids the store no longer has).
 *
 * Per relay with receivers: HSET P:msg:<m> t <text> a <seq_at> r <count>
 * and PEXPIRE, m from a block of body ids the append script reserved. Per
 * receiver, in the order receivers first appear: HINCRBY P:logm:<id> last k
 * (the answer is the top; the seqs are top - k + 1 .. top, in relay
 * order), RPUSH P:log:<id> of k entries "<size>:<now ms>:<m>" (size: text
 * + 7, the seq's digits left out, as the scripts count them), HINCRBY
 * bytes; when due (the TTL touch, about once a second per id), PEXPIRE of
 * the list and the meta and LINDEX 0 (the head's age), else PEXPIRE NX of
 * the list (one the batch created anew). First GET P:next_id (ids above it
 * get no log), last MGET of the routes. Needs Redis 7.0 (PEXPIRE NX).
 *
 * Internal header: only msglog_redis.c uses it. Ownership: the batch
 * borrows the relays' texts and ids until it is freed; mh_append_native_seqs()
 * and _routes() point into the batch (routes: copies of EXEC's strings).
 */
#ifndef MSGHUB_APPEND_NATIVE_H
#define MSGHUB_APPEND_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#include "redis_conn.h"

#include "msghub/msglog.h"

struct redisReply;

#define MH_APPEND_NATIVE_TIDY_AGE 1u    /* check the head's age (and renew the TTLs) */
#define MH_APPEND_NATIVE_TIDY_TOUCH 2u  /* renew the TTLs (a meta the batch created) */
#define MH_APPEND_NATIVE_TIDY_FORGET 4u /* the id is above next_id: its keys go */

/* One relay of the batch (borrowed). */
typedef struct mh_append_native_relay {
    const char *text;
    size_t len;
    uint32_t seq_at;
    const uint64_t *ids;
    size_t n;
} mh_append_native_relay_t;

typedef struct mh_append_native mh_append_native_t;

/* The key prefixes a batch names keys with ("<prefix>:logm:", ...): built once per log. */
typedef struct mh_append_native_keys {
    char *logm, *log, *msg, *route, *next_id;
} mh_append_native_keys_t;

void mh_append_native_keys_init(mh_append_native_keys_t *k, const char *prefix);
void mh_append_native_keys_free(mh_append_native_keys_t *k);

/*
 * A batch of nrelays relays (every id issued, as the caller knows), due[]
 * per id of every relay in order (1: renew its TTLs and check its head's
 * age), bodies named first_mid, first_mid + 1, ... (one per relay with
 * receivers). keys (borrowed) must outlive the batch.
 */
mh_append_native_t *mh_append_native_new(const mh_append_native_keys_t *keys,
                                         const mh_msglog_limits_t *lim, uint64_t now_ms,
                                         const mh_append_native_relay_t *relays, size_t nrelays,
                                         const unsigned char *due, uint64_t first_mid);
void mh_append_native_free(mh_append_native_t *b);
/* Bodies the batch stores (relays with receivers): the body ids it uses. */
size_t mh_append_native_bodies(const mh_append_native_relay_t *relays, size_t nrelays);
/* Sends MULTI, the commands and EXEC on q; returns the index of EXEC's reply among q's. */
size_t mh_append_native_send(mh_append_native_t *b, mh_redis_conn_req_t *q);
/*
 * Reads EXEC's answer: the seqs and routes, P:next_id into *next_id (ids
 * above it get seq 0 and no route, and are tidied away), and what needs
 * the tidy script. -1 when the answer has another shape or a command in
 * it failed (then the batch ran in part, or not at all: in doubt).
 */
int mh_append_native_read(mh_append_native_t *b, const struct redisReply *r, uint64_t *next_id);
/* After _read(): seq and route (NULL: none) per id of every relay, in order. */
const uint64_t *mh_append_native_seqs(const mh_append_native_t *b);
const char **mh_append_native_routes(const mh_append_native_t *b);
/* After _read(): receivers the tidy script must see (0: none). */
size_t mh_append_native_tidy_count(const mh_append_native_t *b);
/* Adds their ARGV (id, flags, stale, base each) to c: see tidy_lua in msglog_redis.c. */
void mh_append_native_tidy_args(const mh_append_native_t *b, mh_redis_conn_cmd_t *c);
/* The decimal digits of the seqs a..b (0 when a > b): what the stored sizes leave out. */
uint64_t mh_append_native_digits(uint64_t a, uint64_t b);

#endif
