/*
 * redis_store: everything distributed mode keeps in Redis, over one hiredis
 * async connection attached to the hub's libuv loop (redisLibuvAttach).
 *
 * Keys (P = the configured prefix):
 *   P:next_id              INCR counter; ids <= its value are known
 *   P:presence             ZSET member "<id>", score = presence expiry (Unix ms)
 *   P:route:<id>           STRING instance id holding <id>, PX = presence TTL
 *   P:token_secret         STRING token secret of instances started without one (no expiry)
 * The per-user logs (P:log:*, P:logm:*, P:msg:*) are msglog_redis' keys, over
 * this store's connection (mh_redis_store_conn()).
 *
 * Every operation calls its callback exactly once: status 0 with the result,
 * or a negative MH_E* (MH_EIO when Redis is unreachable or the connection
 * drops with the command pending, also during mh_redis_store_free(); also
 * MH_EIO, logged, when Redis answers with an error). Any callback may be
 * NULL: the result is then discarded (and freed).
 * Commands issued while disconnected (or still connecting) fail at once with
 * MH_EIO; they are never queued for later. "At once" means on the next loop
 * turn (from a uv_idle handle), never from inside the mh_redis_* call, except
 * for calls made from callbacks run by mh_redis_store_free(), which fail
 * synchronously. Callers must not rely on either: write callbacks that work
 * when called from inside the call that issued them. Reconnection runs by
 * itself with exponential backoff and jitter (100 ms doubling to 5 s,
 * +-20 %; a connect + AUTH/SELECT attempt that takes over 5 s is given up);
 * on_state reports each change (1 once AUTH/SELECT succeeded, 0 when the
 * connection is lost), never from inside mh_redis_store_new() or _free().
 * The process must ignore SIGPIPE (hiredis writes with write(2)).
 *
 * Ownership: the store copies every input it needs; buffers passed to
 * callbacks are valid only during the callback unless stated otherwise.
 */
#ifndef MSGHUB_REDIS_STORE_H
#define MSGHUB_REDIS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/util.h"

struct uv_loop_s;
typedef struct mh_redis_store mh_redis_store_t;

typedef void (*mh_redis_state_fn)(void *ud, int up);
typedef void (*mh_redis_status_fn)(void *ud, int status);
typedef void (*mh_redis_u64_fn)(void *ud, int status, uint64_t value);

/*
 * Parses url (redis://[[user]:password@]host[:port][/db]; port 6379 by
 * default, [v6addr] accepted, %XX escapes decoded in user and password) and
 * starts connecting: AUTH when a password is given, SELECT when db is not 0.
 * Returns NULL with a message in err (which never repeats the password) when
 * the URL is malformed. The host name is resolved synchronously at each
 * connection attempt (hiredis).
 */
mh_redis_store_t *mh_redis_store_new(struct uv_loop_s *loop, const char *url, const char *prefix,
                                     mh_redis_state_fn on_state, void *ud, char *err,
                                     size_t errlen);
/*
 * Fails every pending callback with MH_EIO, closes the connection, frees.
 * NULL is a no-op. May be called from any callback of the store: pending
 * hiredis callbacks then fail right after that callback returns. The uv
 * handles close, and the memory goes, when the loop runs again.
 */
void mh_redis_store_free(mh_redis_store_t *rs);
/* 1 when connected (AUTH/SELECT done). */
int mh_redis_store_up(const mh_redis_store_t *rs);
/*
 * The store's connection and key prefix, for adapters that run their own
 * requests over it (msglog_redis). Both stay the store's and live as long
 * as it does.
 */
struct mh_redis_conn *mh_redis_store_conn(mh_redis_store_t *rs);
const char *mh_redis_store_prefix(const mh_redis_store_t *rs);

/* INCR P:next_id: a new id, unique across every instance sharing the Redis. */
void mh_redis_alloc_id(mh_redis_store_t *rs, mh_redis_u64_fn cb, void *ud);
/* GET P:next_id (0 when absent): ids above it were never handed out. */
void mh_redis_last_id(mh_redis_store_t *rs, mh_redis_u64_fn cb, void *ud);

/*
 * Raises P:next_id to at least min_id (never lowers it): after Redis lost its
 * data, ids still held by connected or resuming clients must stay known and
 * must not be handed out again.
 */
void mh_redis_raise_id(mh_redis_store_t *rs, uint64_t min_id, mh_redis_status_fn cb, void *ud);

/*
 * The token secret shared by instances without a configured one: SET
 * P:token_secret candidate NX, then GET (one atomic script). The callback
 * gets the secret in force (candidate when this call created it), a string
 * valid during the callback; MH_EIO with NULL on error or an empty value.
 */
typedef void (*mh_redis_secret_fn)(void *ud, int status, const char *secret, size_t len);
void mh_redis_token_secret(mh_redis_store_t *rs, const char *candidate, mh_redis_secret_fn cb,
                           void *ud);

/*
 * One round trip (pipelined GET P:next_id + MGET P:route:<id>...): the
 * highest id handed out, and for each id its instance or NULL (offline).
 */
typedef void (*mh_redis_routes_fn)(void *ud, int status, uint64_t last_id,
                                   const char *const *instances, size_t n);
void mh_redis_lookup_routes(mh_redis_store_t *rs, const uint64_t *ids, size_t n,
                            mh_redis_routes_fn cb, void *ud);

/*
 * Claims id for instance: SET P:route:<id> instance PX ttl GET, ZADD P:presence.
 * The callback gets the instance that held the route before (NULL if none),
 * so a takeover on another instance can be signalled.
 */
typedef void (*mh_redis_claim_fn)(void *ud, int status, const char *previous);
void mh_redis_claim(mh_redis_store_t *rs, uint64_t id, const char *instance, uint64_t ttl_ms,
                    mh_redis_claim_fn cb, void *ud);
/*
 * Refreshes presence and routes of many ids held by instance, pipelined (a
 * route held by another instance is left alone).
 */
void mh_redis_refresh(mh_redis_store_t *rs, const uint64_t *ids, size_t n, const char *instance,
                      uint64_t ttl_ms, mh_redis_status_fn cb, void *ud);
/* Checks id out (route and presence) only if instance still holds it (atomic, Lua). */
void mh_redis_checkout(mh_redis_store_t *rs, uint64_t id, const char *instance,
                       mh_redis_status_fn cb, void *ud);
typedef void (*mh_redis_ids_fn)(void *ud, int status, uint64_t *ids, size_t n);
/*
 * Ids present now (score > now_ms), ascending, in a malloc'ed array the
 * callback takes over (it must free() it; NULL on error). Also drops expired
 * members (ZREMRANGEBYSCORE) in the same round trip.
 */
void mh_redis_list(mh_redis_store_t *rs, uint64_t now_ms, mh_redis_ids_fn cb, void *ud);

#endif
