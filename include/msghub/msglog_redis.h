/*
 * msglog_redis: the per-user log port (msglog.h) in Redis, for distributed
 * mode. Every operation is one round trip (the acks of one loop turn share
 * one, sent at the start of the next turn): a Lua script run with EVALSHA
 * over the redis_store's own hiredis connection (loaded with SCRIPT LOAD,
 * pipelined in front, on the first use after each new connection; a
 * NOSCRIPT answer, after SCRIPT FLUSH, is retried once with EVAL). The key
 * layout is at the top of msglog_redis.c and in docs/DISTRIBUTED.md.
 *
 * Callbacks follow redis_store's rules: exactly once, MH_EIO when Redis is
 * down (never queued), drops with the call pending, or answers with an
 * error; never from inside the call that issued them (next loop turn at
 * the earliest), except while the store is being freed.
 *
 * Ownership: the log borrows the store, which must outlive every call made
 * on the log; mh_msglog_free() may come before or after the store's free
 * (calls still pending complete with MH_EIO when the store goes). Frames
 * passed to append are referenced until the call completes; frames handed
 * to a read callback are the log's, unreferenced after the callback.
 */
#ifndef MSGHUB_MSGLOG_REDIS_H
#define MSGHUB_MSGLOG_REDIS_H

#include "msghub/msglog.h"
#include "msghub/redis_store.h"

/*
 * Fills out (ops and impl) with a log over rs with the limits lim (copied).
 * Returns 0, or MH_EINVAL when an argument is NULL.
 */
int mh_msglog_redis_new(mh_msglog_t *out, mh_redis_store_t *rs, const mh_msglog_limits_t *lim);
/*
 * *counter (NULL: none) counts the unacknowledged entries retention drops
 * after their append's callers were answered (the tidy script of a
 * MULTI/EXEC batch: those are not in mh_msglog_appended_t.dropped), for the
 * metrics. No-op for a log of another kind.
 */
void mh_msglog_redis_count_drops(mh_msglog_t *log, uint64_t *counter);

#endif
