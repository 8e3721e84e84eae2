/*
 * msglog: the per-user message log port (PROTOCOL.md v2, section 5).
 *
 * Every message to a user id is appended to that id's log with the next
 * seq for the id (1, 2, 3, ...). An entry stays until the id acknowledges
 * it (cumulative, by seq) or retention drops it: older than the TTL, or
 * beyond the per-id caps in messages and in bytes (the oldest go first).
 * A message dropped by retention before it was acknowledged is "lost":
 * the next open() of the id reports recovered = 0.
 *
 * The port is an ops table so that standalone mode (msglog_mem, in memory)
 * and distributed mode (msglog_redis, in Redis, one Lua round trip per
 * append) differ only in the implementation plugged in by the server.
 *
 * Frames: a message frame is stored once however many receivers it has.
 * Its text is the message JSON *without* the receiver's seq; f->seq_at is
 * the byte offset where `,"seq":N` goes (mh_codec_message_seq() writes the
 * wire text for one receiver). The entry's size for the byte cap is the
 * length of that wire text.
 *
 * Every operation calls its callback exactly once, with status 0 or a
 * negative MH_E* (MH_EIO: the store is unreachable; nothing was changed or
 * it is unknown whether it was). An implementation may call the callback
 * from inside the call (memory) or later (Redis): callers must work with
 * both. Arrays passed to callbacks belong to the implementation and are
 * valid only during the callback; frame references in them are borrowed
 * (take mh_frame_ref() to keep one).
 */
#ifndef MSGHUB_MSGLOG_H
#define MSGHUB_MSGLOG_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/util.h"

typedef struct mh_msglog_limits {
    uint32_t max_msgs;  /* --inbox-max [10000], 0 counts as 1 */
    uint64_t max_bytes; /* --inbox-max-bytes [16 MiB], 0 counts as 1 message */
    uint64_t ttl_ms;    /* --inbox-ttl [24 h], 0 = no expiry */
} mh_msglog_limits_t;

typedef struct mh_msglog_entry {
    uint64_t seq;
    mh_frame_t *frame; /* borrowed; message text without seq, see above */
} mh_msglog_entry_t;

/* Result of append, one slot per receiver, in the order given. */
typedef struct mh_msglog_appended {
    const uint64_t *seqs;         /* assigned seq, 0 when the id was never handed out */
    const char *const *instances; /* instance holding the id now, or NULL (offline or memory) */
    size_t n;
    uint64_t dropped; /* entries dropped by retention to make room, all receivers */
} mh_msglog_appended_t;

/* State of one id at open(). */
typedef struct mh_msglog_state {
    uint64_t last_seq;  /* highest seq assigned to the id, 0 for none */
    uint64_t acked_seq; /* everything <= this is acknowledged (after applying since) */
    int recovered;      /* 0 when an unacknowledged entry was dropped by retention */
} mh_msglog_state_t;

typedef void (*mh_msglog_append_fn)(void *ud, int status, const mh_msglog_appended_t *res);
typedef void (*mh_msglog_read_fn)(void *ud, int status, const mh_msglog_entry_t *entries, size_t n,
                                  uint64_t last_seq);
typedef void (*mh_msglog_state_fn)(void *ud, int status, const mh_msglog_state_t *st);
typedef void (*mh_msglog_status_fn)(void *ud, int status);

typedef struct mh_msglog_ops {
    /*
     * Appends f to the logs of ids[0..n) (distinct ids), assigning each its
     * next seq, in one atomic step; also reports where each id is connected
     * (distributed). Ids above the last id handed out get seq 0 and are not
     * stored. On status != 0 nothing may be assumed stored; MH_EINDOUBT
     * says the request reached the store and its answer was lost (the
     * append may have happened and the entries may still be delivered),
     * any other error that nothing was stored.
     */
    void (*append)(void *impl, const uint64_t *ids, size_t n, mh_frame_t *f, uint64_t now_ms,
                   mh_msglog_append_fn cb, void *ud);
    /*
     * Reads up to max entries of id's log with seq > after, ascending, and
     * the id's last seq. Entries expired or dropped are skipped.
     */
    void (*read)(void *impl, uint64_t id, uint64_t after, size_t max, mh_msglog_read_fn cb,
                 void *ud);
    /*
     * A connection of id opens: acknowledges everything <= since first
     * (since 0: nothing), then reports the state. MH_EINVAL when since is
     * above the id's last seq (nothing changed).
     */
    void (*open)(void *impl, uint64_t id, uint64_t since, mh_msglog_state_fn cb, void *ud);
    /* Acknowledges every entry of id with seq <= seq (trims by seq, never by count). */
    void (*ack)(void *impl, uint64_t id, uint64_t seq, mh_msglog_status_fn cb, void *ud);
    void (*free)(void *impl);
    /*
     * Optional (may be NULL): the id's last seq when the implementation
     * knows it without I/O (memory); MH_ENOENT otherwise. Lets the upgrade
     * refuse a `since` above it with 400 before the WebSocket exists.
     */
    int (*last_seq_now)(void *impl, uint64_t id, uint64_t *out);
} mh_msglog_ops_t;

typedef struct mh_msglog {
    const mh_msglog_ops_t *ops;
    void *impl;
} mh_msglog_t;

static inline void mh_msglog_append(mh_msglog_t *l, const uint64_t *ids, size_t n, mh_frame_t *f,
                                    uint64_t now_ms, mh_msglog_append_fn cb, void *ud)
{
    l->ops->append(l->impl, ids, n, f, now_ms, cb, ud);
}
static inline void mh_msglog_read(mh_msglog_t *l, uint64_t id, uint64_t after, size_t max,
                                  mh_msglog_read_fn cb, void *ud)
{
    l->ops->read(l->impl, id, after, max, cb, ud);
}
static inline void mh_msglog_open(mh_msglog_t *l, uint64_t id, uint64_t since,
                                  mh_msglog_state_fn cb, void *ud)
{
    l->ops->open(l->impl, id, since, cb, ud);
}
static inline void mh_msglog_ack(mh_msglog_t *l, uint64_t id, uint64_t seq, mh_msglog_status_fn cb,
                                 void *ud)
{
    l->ops->ack(l->impl, id, seq, cb, ud);
}
/* The id's last seq without I/O, or MH_ENOENT when the implementation cannot tell now. */
static inline int mh_msglog_last_seq_now(mh_msglog_t *l, uint64_t id, uint64_t *out)
{
    return l->ops->last_seq_now ? l->ops->last_seq_now(l->impl, id, out) : MH_ENOENT;
}
/* Frees the implementation; NULL is a no-op. */
static inline void mh_msglog_free(mh_msglog_t *l)
{
    if (l && l->ops)
        l->ops->free(l->impl);
}

#endif
