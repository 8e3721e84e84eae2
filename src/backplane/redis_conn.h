/*
 * redis_conn: the connection and request plumbing under redis_store. One
 * hiredis async connection at a time, attached to the hub's libuv loop,
 * with the handshake (AUTH / SELECT / PING), reconnection with backoff and
 * jitter, and requests: a request pipelines one or more commands and is
 * completed, exactly once, when the last reply arrives, when the connection
 * drops, or (if it sent nothing) from a uv_idle handle on the next loop turn.
 * A request may also be held open for the rest of a loop turn, to batch
 * work (the log's acks), and is sent from the same idle handle.
 *
 * Internal header: only redis_store.c and msglog_redis.c use it. The rules
 * redis_store.h promises its callers (the URL format, MH_EIO for every
 * failure, no queueing while down, the backoff figures, on_state never from
 * inside _new() or _free()) are kept here; this module knows no key, no command
 * beyond the handshake and no result type.
 *
 * Ownership: the connection owns its hiredis context, its two uv handles
 * and every request from mh_redis_conn_req_new() until the request's finish
 * hook has returned, then frees it. Its memory goes once the uv handles are
 * closed, after mh_redis_conn_free() when the loop runs again; the on_freed
 * hook given to _free() says when. Replies handed to the hooks belong to
 * hiredis and are valid only during the hook.
 */
#ifndef MSGHUB_REDIS_CONN_H
#define MSGHUB_REDIS_CONN_H

#include <stddef.h>

#include "msghub/util.h"

struct uv_loop_s;
struct redisReply;
typedef struct mh_redis_conn mh_redis_conn_t;
typedef struct mh_redis_conn_req mh_redis_conn_req_t;

/* up is 1 once AUTH / SELECT succeeded, 0 when the connection is lost. */
typedef void (*mh_redis_conn_state_fn)(void *ud, int up);
/* The connection's memory is gone (mh_redis_conn_free). */
typedef void (*mh_redis_conn_freed_fn)(void *arg);

/*
 * Parses url (see mh_redis_store_new()) and starts connecting. Returns NULL
 * with "bad redis url: <why>" in err (never the password) when loop or url
 * is NULL or the URL is malformed. on_state (may be NULL) gets each change,
 * never from inside _new() or _free().
 */
mh_redis_conn_t *mh_redis_conn_new(struct uv_loop_s *loop, const char *url,
                                   mh_redis_conn_state_fn on_state, void *ud, char *err,
                                   size_t errlen);
/*
 * Fails every pending and deferred request with MH_EIO (hiredis' pending
 * ones right after the current hiredis callback, when called from one),
 * closes the connection and the uv handles. on_freed(arg) (may be NULL)
 * runs once the memory is gone, when the loop runs again. Requests made
 * from here on complete synchronously with MH_EIO. NULL, or a second call,
 * is a no-op.
 */
void mh_redis_conn_free(mh_redis_conn_t *c, mh_redis_conn_freed_fn on_freed, void *arg);
/* 1 when connected (AUTH / SELECT done): only then are commands sent. */
int mh_redis_conn_up(const mh_redis_conn_t *c);
/*
 * Counts the connections made so far (1 after the first handshake): a
 * change means a new server session, whose script cache may be empty.
 */
unsigned mh_redis_conn_generation(const mh_redis_conn_t *c);

/* What a kind of request does with its replies. */
typedef struct mh_redis_conn_req_ops {
    const char *name; /* for the log */
    /* Reads reply idx of the pipeline (not an error reply); may set status. May be NULL. */
    void (*each)(mh_redis_conn_req_t *q, size_t idx, const struct redisReply *r);
    /*
     * Calls the user's callback and releases what the request owns besides
     * itself; last: the final reply, NULL on failure or if nothing was sent.
     */
    void (*finish)(mh_redis_conn_req_t *q, const struct redisReply *last);
} mh_redis_conn_req_ops_t;

/*
 * An error reply to command idx of q: returns 1 when handled (for example by
 * sending a replacement command on q, which then completes with that
 * command's reply), 0 to fail q with MH_EIO (logged).
 */
typedef int (*mh_redis_conn_error_fn)(mh_redis_conn_req_t *q, size_t idx,
                                      const struct redisReply *r);

/* Issues a held request's commands and submits it (mh_redis_conn_hold). */
typedef void (*mh_redis_conn_flush_fn)(mh_redis_conn_req_t *q);

/*
 * A request. Callers embed it as the first member of their own struct
 * (allocated by mh_redis_conn_req_new()) and may read and set status and
 * on_error; the other fields are the connection's.
 */
struct mh_redis_conn_req {
    mh_redis_conn_t *conn;
    const mh_redis_conn_req_ops_t *ops;
    int status;                      /* 0, or MH_EIO once anything failed */
    mh_redis_conn_error_fn on_error; /* NULL: every error reply fails the request */
    mh_redis_conn_req_t *next;       /* in the deferred or the held list */
    mh_redis_conn_flush_fn flush;    /* while held */
    unsigned pending;                /* commands sent and not answered */
    unsigned seen;                   /* replies received */
    unsigned lost;                   /* commands sent whose answer never came: they may have run */
};

/*
 * A zeroed request of size bytes (>= sizeof(mh_redis_conn_req_t), the
 * request first), owned by the connection: issue its commands, then
 * mh_redis_conn_submit() it.
 */
void *mh_redis_conn_req_new(mh_redis_conn_t *c, const mh_redis_conn_req_ops_t *ops, size_t size);
/*
 * Sends one command, pipelined after the request's earlier ones, from a
 * hiredis format: printf conversions only, each one argument even when the
 * value has spaces. Nothing is sent once the request failed or while down.
 */
void mh_redis_conn_send(mh_redis_conn_req_t *q, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * After the last command. A request that sent nothing completes on the next
 * loop turn (with MH_EIO if the connection is down), or at once while the
 * connection is being freed; the others complete with their last reply.
 */
void mh_redis_conn_submit(mh_redis_conn_req_t *q);
/*
 * Instead of commands and _submit(): holds q, which collects work for the
 * rest of this loop turn, until the next turn (idle phase) or the
 * connection's free, then calls flush(q), which issues q's commands and
 * submits it. A request held while the connection is being freed is
 * flushed at once.
 */
void mh_redis_conn_hold(mh_redis_conn_req_t *q, mh_redis_conn_flush_fn flush);
/* Ends the hold of q (held by _hold, not flushed yet) now: calls its flush hook. */
void mh_redis_conn_release(mh_redis_conn_req_t *q);
/* Logs a reply of an unexpected shape (r may be NULL) and fails q with MH_EIO. */
void mh_redis_conn_bad_reply(mh_redis_conn_req_t *q, const struct redisReply *r);

/*
 * A command of variable length, every argument binary safe, written as
 * RESP while it is built (the arguments are copied; nothing is borrowed).
 * On the caller's stack: _init, add arguments, then _send, which frees it.
 * A caller that sends many commands in a row keeps one: _init once, then
 * per command _reset, arguments and _queue, and _free at the end (one
 * buffer, grown to the longest command, instead of one per command).
 */
typedef struct mh_redis_conn_cmd {
    int argc;
    mh_buf_t resp; /* the bulk strings, after room for the "*<argc>" header */
} mh_redis_conn_cmd_t;

/* About nargs arguments (a hint for the buffer), the verb included. */
void mh_redis_conn_cmd_init(mh_redis_conn_cmd_t *c, size_t nargs, const char *verb);
/* Starts the next command in c's buffer (c made by _init): as _init, without an allocation. */
void mh_redis_conn_cmd_reset(mh_redis_conn_cmd_t *c, size_t nargs, const char *verb);
/* Appends p[0..n) (copied). */
void mh_redis_conn_cmd_bin(mh_redis_conn_cmd_t *c, const void *p, size_t n);
/* Appends an argument formatted with printf (copied). */
void mh_redis_conn_cmd_fmt(mh_redis_conn_cmd_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends prefix (copied: a sign, a key prefix, "" for none) and v in decimal: no printf. */
void mh_redis_conn_cmd_u64(mh_redis_conn_cmd_t *c, const char *prefix, uint64_t v);
/* Sends c like mh_redis_conn_send() (hiredis copies it); c stays for _reset. */
void mh_redis_conn_cmd_queue(mh_redis_conn_req_t *q, mh_redis_conn_cmd_t *c);
/* Frees c's buffer. */
void mh_redis_conn_cmd_free(mh_redis_conn_cmd_t *c);
/* _queue, then _free. */
void mh_redis_conn_cmd_send(mh_redis_conn_req_t *q, mh_redis_conn_cmd_t *c);

#endif
