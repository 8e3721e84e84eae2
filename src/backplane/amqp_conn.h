/*
 * amqp_conn: the RabbitMQ connection under broker_amqp. One rabbitmq-c 0.11
 * connection at a time on the hub's libuv loop: the URL, the TCP connect
 * and login (blocking, bounded, on a uv worker thread), two channels (MH_AMQP_CONN_CH_PUB in
 * confirm mode, MH_AMQP_CONN_CH_CONS), the socket watched by a uv_poll_t
 * and drained frame by frame, heartbeats and dead-peer detection,
 * connection.blocked, and reconnection with backoff and jitter.
 *
 * Internal header: only broker_amqp.c uses it. The rules broker_amqp.h
 * promises about the connection (amqp:// only, "amqp://host/" meaning the
 * vhost "/", the backoff figures, 10 s heartbeats, a server silent for 20 s
 * counting as lost, hooks never from inside _new() or _free()) are kept
 * here; this module knows no queue, exchange, publish or delivery: the
 * owner declares its topology in the setup hook and reads its channels'
 * frames in the frame hook.
 *
 * Ownership: the connection owns its rabbitmq-c state, its uv handles and
 * its copy of the URL and name. Frames handed to the frame hook belong to
 * rabbitmq-c and are valid only during the hook. Its memory goes once the
 * uv handles are closed, after mh_amqp_conn_free() when the loop runs
 * again; the on_freed hook given to _free() says when, so an owner that
 * frees itself there is still there for late callbacks.
 */
#ifndef MSGHUB_AMQP_CONN_H
#define MSGHUB_AMQP_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <amqp.h>

struct uv_loop_s;
typedef struct mh_amqp_conn mh_amqp_conn_t;
/* One connection attempt, owned by the worker thread that runs it. */
typedef struct mh_amqp_setup mh_amqp_setup_t;
/* The connection's memory is gone (mh_amqp_conn_free). */
typedef void (*mh_amqp_conn_freed_fn)(void *arg);

/* The channels every connection opens; CH_PUB is in confirm mode. */
enum { MH_AMQP_CONN_CH_PUB = 1, MH_AMQP_CONN_CH_CONS = 2 };

/* mh_amqp_conn_epoch() is below 1 << MH_AMQP_CONN_EPOCH_BITS. */
#define MH_AMQP_CONN_EPOCH_BITS 24

/*
 * What the owner does with the connection; each hook gets the ud given to
 * _new() and runs from a loop callback (timer, poll, idle), never from
 * inside an mh_amqp_conn_* call. All four are required.
 */
typedef struct mh_amqp_conn_hooks {
    /*
     * On each connect, after login, the channels and confirm mode: declares
     * what the owner needs and starts its consumers, with blocking RPCs
     * (bounded by the setup timeout) on mh_amqp_setup_state(s). Runs on a
     * uv worker thread, the only hook that does: it may read only what does
     * not change while the connection object lives (names, options) and
     * must call no other mh_amqp_conn_* function. NULL, or why not (the
     * connection is then dropped and retried later).
     */
    const char *(*setup)(void *ud, mh_amqp_setup_t *s);
    /* The connection is up, with a new epoch. */
    void (*up)(void *ud);
    /*
     * A method, content header or body frame the connection does not handle
     * itself (it takes connection.close, channel.close and
     * connection.blocked / unblocked). NULL, or why the connection must go
     * (text valid until the lost hook has returned).
     */
    const char *(*frame)(void *ud, amqp_frame_t *f);
    /*
     * A connection that had been set up is gone (socket closed, rabbitmq-c
     * state destroyed); was_up is 1 if the up hook ran for it. A retry is
     * scheduled after the hook unless _free() was called from it.
     */
    void (*lost)(void *ud, int was_up, const char *why);
} mh_amqp_conn_hooks_t;

/*
 * Parses url (amqp://user:pass@host:port/vhost, amqp:// only) and starts
 * connecting on the next loop turn. name is the connection_name shown by
 * RabbitMQ and the instance= of the log lines. hooks must outlive the
 * connection. NULL with a message in err when the URL is malformed.
 */
mh_amqp_conn_t *mh_amqp_conn_new(struct uv_loop_s *loop, const char *url, const char *name,
                                 const mh_amqp_conn_hooks_t *hooks, void *ud, char *err,
                                 size_t errlen);
/*
 * Closes the connection (AMQP close, at most 500 ms, when up) and the uv
 * handles; no hook runs from here on. on_freed(arg) (may be NULL) runs once
 * the memory is gone, when the loop runs again. May be called from any
 * hook. NULL, or a second call, is a no-op.
 */
void mh_amqp_conn_free(mh_amqp_conn_t *c, mh_amqp_conn_freed_fn on_freed, void *arg);
/* 1 while up (the setup hook succeeded), no send failed and not freed. */
int mh_amqp_conn_up(const mh_amqp_conn_t *c);
/* 1 while RabbitMQ has blocked the connection (memory or disk alarm). */
int mh_amqp_conn_blocked(const mh_amqp_conn_t *c);
/* Changes on each successful connect; tells one connection from another. */
uint32_t mh_amqp_conn_epoch(const mh_amqp_conn_t *c);
/* The rabbitmq-c state, for the owner's calls; NULL while down. */
amqp_connection_state_t mh_amqp_conn_state(const mh_amqp_conn_t *c);

/* The connection being set up, for the setup hook's RPCs (worker thread). */
amqp_connection_state_t mh_amqp_setup_state(mh_amqp_setup_t *s);
/* Text for the setup's failed RPC (amqp_get_rpc_reply()) prefixed with what; NULL if it succeeded.
 */
const char *mh_amqp_setup_rpc_error(mh_amqp_setup_t *s, const char *what);
/* Unsent bytes above this: the broker is not reading (frozen, overloaded). */
#define MH_AMQP_CONN_MAX_UNSENT (256 * 1024)
/*
 * 1 when writing len more bytes to the socket now could wait for the
 * broker (rabbitmq-c would then block in poll() with no deadline): the
 * socket is not writable, the send buffer lacks room, or more than
 * MH_AMQP_CONN_MAX_UNSENT bytes wait for the peer. 1 while down. Every
 * send the loop makes checks this first and fails fast instead.
 */
int mh_amqp_conn_would_block(const mh_amqp_conn_t *c, size_t len);
/* Reads what arrived (confirms after a publish, say) on the next loop turn. */
void mh_amqp_conn_drain_soon(mh_amqp_conn_t *c);
/* 1 when rabbitmq-c holds frames or bytes read from the socket and not yet handed out. */
int mh_amqp_conn_buffered(const mh_amqp_conn_t *c);
/*
 * A send by the owner failed with rabbitmq-c status: the connection is
 * torn down (lost hook) on the next loop turn; mh_amqp_conn_up() is 0 from
 * now on.
 */
void mh_amqp_conn_broken(mh_amqp_conn_t *c, const char *what, int status);

#endif
