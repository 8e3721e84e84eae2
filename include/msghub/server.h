/*
 * server: the composition root. One mh_server_t owns the loop, the
 * libwebsockets context, the registry, the inbox, the metrics and the
 * timers; every adapter gets it passed explicitly (no globals).
 *
 * Layer 6: may include every other module.
 */
#ifndef MSGHUB_SERVER_H
#define MSGHUB_SERVER_H

#include <stdint.h>

#include "msghub/codec.h"
#include "msghub/config.h"
#include "msghub/inbox_mem.h"
#include "msghub/metrics.h"
#include "msghub/registry.h"
#include "msghub/timerwheel.h"
#include "msghub/util.h"

struct lws_context;
struct uv_loop_s;
struct mh_redis_store;
struct mh_broker;
struct mh_pubbatch;
struct mh_session;
struct mh_http;

typedef struct mh_server {
    const mh_config_t *cfg;
    struct uv_loop_s *loop;
    struct lws_context *lws;
    mh_registry_t *registry;
    mh_inbox_mem_t *inbox;
    mh_metrics_t metrics;
    mh_codec_limits_t limits;
    const unsigned char *secret; /* token secret (config, random, or shared); NULL: not yet */
    size_t secret_len;
    unsigned char random_secret[32];
    unsigned char *shared_secret; /* distributed without --token-secret: agreed in Redis */
    uint64_t msg_seq;             /* message ids: "<msg_prefix>-<seq>" */
    char msg_prefix[24];
    int draining;                 /* SIGTERM seen: refuse new work, close sessions */
    int distributed;              /* Redis + RabbitMQ configured */
    struct mh_redis_store *redis; /* distributed mode only */
    struct mh_broker *broker;     /* distributed mode only */
    struct mh_pubbatch *pubbatch; /* per-instance publish batching over broker */
    int redis_up, broker_up;
    void *cluster; /* cluster.c's state, distributed mode only */
    uint64_t started_ms;
    mh_timerwheel_t *timers; /* per-connection deadlines (liveness.c), swept by server.c */
    struct lws **fresh;      /* sockets accepted in this loop turn (liveness.c) */
    size_t nfresh, fresh_cap;
    uint32_t live_kills;         /* connections liveness.c dropped in this sweep */
    struct mh_server_priv *priv; /* timers and signal handles (server.c) */
} mh_server_t;

/*
 * Per-connection user data of the lws protocol: HTTP state or a session,
 * and the connection's one deadline on srv->timers (liveness.h). lws owns
 * and zero-fills it; the timer is cancelled before lws frees it.
 */
typedef struct mh_conn {
    struct mh_http *http;
    struct mh_session *ws;
    struct lws *wsi;
    mh_timer_t timer;      /* ping / pong / idle deadline of a WebSocket */
    uint64_t valid_ms;     /* last pong (or the upgrade), monotonic ms */
    uint64_t ping_sent_ms; /* ping awaiting its pong, 0 = none */
    uint8_t live_state;    /* liveness.c: none or open */
    uint8_t ping_due;      /* the next WRITEABLE writes a ping */
} mh_conn_t;

/* Builds the server from cfg and runs the loop until shutdown; returns the exit status. */
int mh_server_run(const mh_config_t *cfg);

/*
 * 1 when the hub accepts work: not draining, the token secret is known and,
 * if distributed, Redis and RabbitMQ are up.
 */
int mh_server_ready(const mh_server_t *srv);

/* Next message id for a relay, written into out[len]. */
void mh_server_next_msg_id(mh_server_t *srv, char *out, size_t len);

#endif
