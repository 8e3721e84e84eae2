/*
 * hub: the shared state of one hub process (mh_server_t), what every
 * module above the delivery layer works on: configuration, loop, registry,
 * per-user log, metrics, memory budget, token secret, message ids. server.c
 * (the composition root) creates and wires it; the other modules get it
 * passed explicitly and include this header, never server.h.
 *
 * Layer 2 (src/delivery): the libwebsockets context, the loop and the
 * adapters are opaque pointers here.
 */
#ifndef MSGHUB_HUB_H
#define MSGHUB_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/codec.h"
#include "msghub/config.h"
#include "msghub/dlist.h"
#include "msghub/metrics.h"
#include "msghub/msglog.h"
#include "msghub/presence.h"
#include "msghub/registry.h"
#include "msghub/timerwheel.h"
#include "msghub/transport.h"
#include "msghub/util.h"

struct lws;
struct lws_context;
struct uv_loop_s;
struct mh_redis_store;
struct mh_broker;
struct mh_conntrack;
struct mh_u64map;
struct mh_live_ops;

typedef struct mh_server {
    const mh_config_t *cfg;
    struct uv_loop_s *loop;
    struct lws_context *lws;
    mh_registry_t *registry;
    mh_msglog_t log;               /* per-user logs: memory (standalone) or Redis (distributed) */
    mh_msglog_limits_t log_limits; /* --inbox-max, --inbox-max-bytes, --inbox-ttl */
    mh_presence_t presence;        /* ids and routes: registry (standalone) or Redis */
    mh_transport_t transport;      /* to other instances: none (standalone) or AMQP */
    /* hands (f, seq) to a session of the registry (net's mh_session_deliver, set by server.c) */
    void (*deliver)(struct mh_server *srv, void *session, mh_frame_t *f, uint64_t seq);
    /* retention sweep of a log that needs one (memory); NULL when the store expires itself */
    uint64_t (*log_sweep)(mh_msglog_t *log, uint64_t now_ms);
    unsigned char *scratch; /* per-loop write buffer, MH_FRAME_HEADROOM in front */
    size_t scratch_cap;
    mh_handle_t **ack_pending; /* sessions wanting the next tick: auto acks, held pushes */
    size_t n_ack_pending, cap_ack_pending;
    mh_handle_t **write_due; /* sessions to ask lws a WRITEABLE for, once, before the poll */
    size_t n_write_due, cap_write_due;
    mh_metrics_t metrics;
    mh_codec_limits_t limits;
    const unsigned char *secret; /* token secret (config, random, or shared); NULL: not yet */
    size_t secret_len;
    unsigned char random_secret[32];
    unsigned char *shared_secret; /* distributed without --token-secret: agreed in Redis */
    uint64_t msg_seq;             /* message ids: "<msg_prefix>-<seq>" */
    char msg_prefix[24];
    int draining;    /* SIGTERM seen: refuse new work, close sessions */
    int distributed; /* Redis + RabbitMQ configured */
    /* distributed: 1 while the backplane can take work (cluster.c); NULL: always */
    int (*backplane_ready)(const struct mh_server *srv);
    /*
     * distributed: 1 while relays can be made durable (the log is up), even
     * with the transport between instances down or stalled; NULL: always
     */
    int (*backplane_can_relay)(const struct mh_server *srv);
    struct mh_redis_store *redis; /* distributed mode only */
    struct mh_broker *broker;     /* distributed mode only */
    int redis_up, broker_up;
    void *cluster; /* cluster.c's state, distributed mode only */
    uint64_t started_ms;
    struct mh_conntrack *conntrack; /* every accepted socket, request deadlines */
    mh_dlist_t partials;            /* of mh_mem_partial_t: partial messages, oldest first */
    mh_timerwheel_t *timers;        /* per-connection deadlines (liveness.c), swept by server.c */
    struct lws **fresh;             /* sockets accepted in this loop turn (liveness.c) */
    size_t nfresh, fresh_cap;
    uint32_t live_kills;                /* connections liveness.c dropped in this sweep */
    const struct mh_live_ops *live_ops; /* the session side of liveness (set by server.c) */
    struct mh_server_priv *priv;        /* timers and signal handles (server.c) */
} mh_server_t;

/*
 * 1 when the hub accepts work: not draining, the token secret is known and,
 * if distributed, Redis and RabbitMQ are up.
 */
int mh_server_ready(const mh_server_t *srv);
/*
 * 1 while relays are accepted: not draining and the log can take them.
 * Unlike mh_server_ready(), a transport (RabbitMQ) down or stalled does not
 * count: what is in the log reaches other instances' receivers later.
 */
int mh_server_can_relay(const mh_server_t *srv);

/*
 * The loop's write buffer with room for n bytes after MH_FRAME_HEADROOM
 * bytes of headroom; returns the start of the n bytes. Valid until the next
 * call (one write at a time: the loop is single-threaded).
 */
unsigned char *mh_server_scratch(mh_server_t *srv, size_t n);

/*
 * Memory budget (--memory-limit): metrics.memory_bytes counts what is held
 * in reassembly, outbound queues and HTTP bodies (in-memory logs: to be
 * hooked through mh_mem_add / mh_mem_sub). A message or body of at most
 * MH_MEM_SMALL bytes is never refused.
 */
#define MH_MEM_SMALL (64 * 1024)
void mh_mem_add(mh_server_t *srv, size_t n);
void mh_mem_sub(mh_server_t *srv, size_t n);
/* 1 when a message of total bytes may take more bytes now; counts a refusal otherwise. */
int mh_mem_allows(mh_server_t *srv, size_t total, size_t more);

/*
 * Partial messages: a WebSocket message being reassembled (ws.c) or an HTTP
 * body being read (http_api.c), in the order they began, so that past the
 * budget the oldest goes first whichever kind it is. The holder embeds an
 * mh_mem_partial_t; drop(), called once the partial has ended, gives its
 * bytes back and closes its connection.
 */
typedef struct mh_mem_partial mh_mem_partial_t;
typedef void (*mh_mem_drop_fn)(mh_server_t *srv, mh_mem_partial_t *p);
struct mh_mem_partial {
    mh_dlink_t link; /* on the server's partials */
    mh_mem_drop_fn drop;
};
/* p begins (at the tail; once: a partial already begun keeps its place). */
void mh_mem_partial_begin(mh_server_t *srv, mh_mem_partial_t *p, mh_mem_drop_fn drop);
/* p ends (no-op when it did not begin). */
void mh_mem_partial_end(mh_server_t *srv, mh_mem_partial_t *p);
/*
 * mh_mem_allows() after dropping, oldest first, the partial messages other
 * than self (NULL: none is ours) while more bytes do not fit and the message
 * is larger than MH_MEM_SMALL. O(1) per drop.
 */
int mh_mem_make_room(mh_server_t *srv, size_t total, size_t more, const mh_mem_partial_t *self);

/* Next message id for a relay, written into out[len]. */
void mh_server_next_msg_id(mh_server_t *srv, char *out, size_t len);

/* One local receiver wrote f: observes the relay latency when it was the last. */
void mh_server_local_done(mh_server_t *srv, mh_frame_t *f);

#endif
