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
#include "msghub/metrics.h"
#include "msghub/msglog.h"
#include "msghub/registry.h"
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
    mh_msglog_t log;               /* per-user logs: memory (standalone) or Redis (distributed) */
    mh_msglog_limits_t log_limits; /* --inbox-max, --inbox-max-bytes, --inbox-ttl */
    /* retention sweep of a log that needs one (memory); NULL when the store expires itself */
    uint64_t (*log_sweep)(mh_msglog_t *log, uint64_t now_ms);
    unsigned char *scratch; /* per-loop write buffer, MH_FRAME_HEADROOM in front */
    size_t scratch_cap;
    mh_handle_t **ack_pending; /* sessions wanting the next tick: auto acks, held pushes */
    size_t n_ack_pending, cap_ack_pending;
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
    struct mh_server_priv *priv; /* timers and signal handles (server.c) */
} mh_server_t;

/* Per-connection user data of the lws protocol: HTTP state or a session. */
typedef struct mh_conn {
    struct mh_http *http;
    struct mh_session *ws;
} mh_conn_t;

/* Builds the server from cfg and runs the loop until shutdown; returns the exit status. */
int mh_server_run(const mh_config_t *cfg);

/*
 * 1 when the hub accepts work: not draining, the token secret is known and,
 * if distributed, Redis and RabbitMQ are up.
 */
int mh_server_ready(const mh_server_t *srv);

/*
 * The loop's write buffer with room for n bytes after MH_FRAME_HEADROOM
 * bytes of headroom; returns the start of the n bytes. Valid until the next
 * call (one write at a time: the loop is single-threaded).
 */
unsigned char *mh_server_scratch(mh_server_t *srv, size_t n);

/* Next message id for a relay, written into out[len]. */
void mh_server_next_msg_id(mh_server_t *srv, char *out, size_t len);

#endif
