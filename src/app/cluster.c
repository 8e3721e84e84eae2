/*
 * cluster: distributed mode's wiring (see cluster.h).
 *
 * A delivery from RabbitMQ becomes one shared frame; each receiver still
 * connected here gets (frame, its seq) and the delivery is acknowledged at
 * once: the log in Redis is the truth, so a push is only a shortcut. A
 * receiver that is gone needs nothing (its log has it); a receiver that
 * missed a push finds the gap at its next message, or at the sweep that
 * runs with every presence refresh and after RabbitMQ reconnects (each
 * local session re-reads its log from its cursor).
 */
#include "msghub/cluster.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "msghub/broker_amqp.h"
#include "msghub/log.h"
#include "msghub/msglog_closed.h"
#include "msghub/msglog_redis.h"
#include "msghub/presence_redis.h"
#include "msghub/pubbatch.h"
#include "msghub/redis_store.h"
#include "msghub/relay.h"
#include "msghub/session.h"
#include "msghub/token.h"
#include "msghub/transport_amqp.h"

#define SECRET_BYTES 32 /* random bytes of a generated token secret, stored as hex */

typedef struct mh_cluster_priv {
    uv_timer_t presence;
    mh_pubbatch_t *pubbatch;              /* relay pushes, one message per instance and turn */
    int secret_pending;                   /* a mh_redis_token_secret() is under way */
    char candidate[2 * SECRET_BYTES + 1]; /* what this instance offers when none is set */
} cluster_t;

static cluster_t *cluster_of(mh_server_t *srv);

/* ---- the token secret shared by instances started without one ---- */

static void secret_agreed(void *ud, int status, const char *secret, size_t len)
{
    mh_server_t *srv = ud;
    cluster_t *c = cluster_of(srv);
    if (c)
        c->secret_pending = 0;
    if (status) {
        mh_warn("token_secret_unavailable", "status=%d msg=\"retrying\"", status);
        return;
    }
    if (srv->shared_secret && srv->secret_len == len && !memcmp(srv->secret, secret, len))
        return;
    if (srv->shared_secret)
        mh_warn("token_secret_changed",
                "msg=\"%s:token_secret was replaced; tokens issued "
                "before are refused from now on\"",
                srv->cfg->prefix);
    else
        mh_warn("token_secret_shared",
                "key=%s:token_secret created=%d msg=\"no --token-secret set: using the secret "
                "generated once in Redis and shared by every instance of this prefix\"",
                srv->cfg->prefix, c && strcmp(secret, c->candidate) == 0);
    free(srv->shared_secret);
    srv->shared_secret = mh_xmalloc(len + 1);
    memcpy(srv->shared_secret, secret, len);
    srv->shared_secret[len] = '\0';
    srv->secret = srv->shared_secret;
    srv->secret_len = len;
}

/*
 * Fetches (creating it if absent) the shared secret; again after each
 * reconnection, offering the one in use, so a Redis that lost its data gets
 * the cluster's secret back rather than a new one.
 */
static void agree_secret(mh_server_t *srv)
{
    cluster_t *c = cluster_of(srv);
    if ((srv->cfg->token_secret && *srv->cfg->token_secret) || !c || c->secret_pending ||
        !srv->redis_up)
        return; /* a configured secret always wins */
    c->secret_pending = 1;
    const char *offer = srv->shared_secret ? (const char *)srv->shared_secret : c->candidate;
    mh_redis_token_secret(srv->redis, offer, secret_agreed, srv);
}

static int make_candidate(cluster_t *c)
{
    unsigned char r[SECRET_BYTES];
    if (mh_token_random(r, sizeof(r)))
        return -1;
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(c->candidate + 2 * i, 3, "%02x", r[i]);
    return 0;
}

/* ---- readiness ---- */

static void refresh_presence(mh_server_t *srv);

static void redis_state(void *ud, int up)
{
    mh_server_t *srv = ud;
    srv->redis_up = up;
    mh_info(up ? "redis_up" : "redis_down", "ready=%d", mh_server_ready(srv));
    if (up)
        agree_secret(srv);
    if (up) { /* Redis may have lost everything: keep our ids known, re-register everyone */
        uint64_t *ids;
        size_t n = mh_registry_ids(srv->registry, 0, &ids);
        if (n)
            mh_redis_raise_id(srv->redis, ids[n - 1], NULL, NULL);
        free(ids);
        refresh_presence(srv);
    }
}

/* Every local session re-reads its log from its cursor (pushes may have been lost). */
static void sweep_logs(mh_server_t *srv)
{
    if (!srv->redis_up)
        return;
    size_t cursor = 0;
    uint64_t id;
    void *v;
    while (mh_registry_next(srv->registry, &cursor, &id, &v))
        mh_session_check_log(srv, v);
}

static void broker_state(void *ud, int up)
{
    mh_server_t *srv = ud;
    srv->broker_up = up;
    mh_info(up ? "amqp_up" : "amqp_down", "ready=%d", mh_server_ready(srv));
    if (up) /* pushes published while it was down are lost: the logs have them */
        sweep_logs(srv);
}

/* ---- presence ---- */

static void refreshed(void *ud, int status)
{
    if (status)
        mh_warn("presence_refresh_failed", "status=%d", status);
}

static void refresh_presence(mh_server_t *srv)
{
    if (!srv->redis_up || mh_registry_count(srv->registry) == 0)
        return;
    uint64_t *ids;
    size_t n = mh_registry_ids(srv->registry, 0, &ids);
    mh_redis_refresh(srv->redis, ids, n, srv->cfg->instance_id,
                     (uint64_t)srv->cfg->presence_ttl_s * 1000u, refreshed, srv);
    free(ids);
}

static void on_presence_timer(uv_timer_t *t)
{
    if (!((mh_server_t *)t->data)->secret)
        agree_secret(t->data); /* the first attempt failed */
    refresh_presence(t->data);
    sweep_logs(t->data); /* the safety net for lost pushes */
}

/* ---- deliveries from other instances ---- */

/* Hands (frame, seq) to each receiver still connected here; the others' logs have it. */
static void deliver_message(mh_server_t *srv, const mh_envelope_t *env)
{
    mh_frame_t *f = mh_frame_new(env->frame, env->frame_len);
    f->is_message = 1;
    f->seq_at = env->seq_at;
    f->t0_us = mh_mono_us();
    for (size_t i = 0; i < env->n_ids; i++) {
        mh_session_t *s = mh_registry_get(srv->registry, env->ids[i]);
        if (s) {
            f->local_left++;
            mh_session_deliver(srv, s, f, env->seqs[i]);
        }
    }
    mh_frame_unref(f);
}

static void handle_envelope(mh_server_t *srv, const void *body, size_t len)
{
    mh_envelope_t env;
    if (mh_codec_envelope_parse(body, len, &env)) {
        mh_warn("bad_envelope", "len=%zu msg=\"dropped\"", len);
        return;
    }
    if (env.type == MH_ENV_KICK)
        mh_session_kick(srv, env.ids[0], env.claimed_ms);
    else
        deliver_message(srv, &env);
    mh_codec_envelope_free(&env);
}

/* Acknowledged at once: handed to the local sessions, nothing waits on a socket. */
static void on_delivery(void *ud, uint64_t tag, const void *body, size_t len)
{
    mh_server_t *srv = ud;
    if (len && *(const char *)body == 'B') {
        size_t pos = 0, n;
        const char *env;
        int rc;
        while ((rc = mh_codec_batch_next(body, len, &pos, &env, &n)) == 1)
            handle_envelope(srv, env, n);
        if (rc < 0)
            mh_warn("bad_batch", "len=%zu msg=\"rest dropped\"", len);
    } else
        handle_envelope(srv, body, len);
    mh_broker_ack(srv->broker, tag);
}

/* ---- lifecycle ---- */

/* The hub's readiness hook (hub.h): both connections up, RabbitMQ not stalled. */
static int backplane_ready(const mh_server_t *srv)
{
    return srv->redis_up && srv->broker_up && !mh_broker_stalled(srv->broker);
}

/*
 * The hub's relay hook (hub.h): Redis, the log, is up. RabbitMQ down or
 * stalled does not refuse relays: the log has them, and the receivers'
 * instances re-read it after their reconnect to RabbitMQ (sweep_logs).
 */
static int backplane_can_relay(const mh_server_t *srv)
{
    return srv->redis_up;
}

static cluster_t *cluster_of(mh_server_t *srv)
{
    return (cluster_t *)srv->cluster;
}

int mh_cluster_start(mh_server_t *srv)
{
    const mh_config_t *cfg = srv->cfg;
    char err[256];
    if (cfg->queue_msg_ttl_s >= cfg->queue_expiry_s) {
        mh_error("bad_config", "msg=\"--queue-message-ttl must be shorter than --queue-expiry\"");
        return -1;
    }
    srv->redis = mh_redis_store_new(srv->loop, cfg->redis_url, cfg->prefix, redis_state, srv, err,
                                    sizeof(err));
    if (!srv->redis) {
        mh_error("bad_redis_url", "msg=\"%s\"", err);
        return -1;
    }
    mh_msglog_redis_new(&srv->log, srv->redis, &srv->log_limits);
    mh_msglog_redis_count_drops(&srv->log, &srv->metrics.inbox_dropped_total);
    mh_presence_redis_init(&srv->presence, srv->redis, cfg->instance_id,
                           (uint64_t)cfg->presence_ttl_s * 1000u);
    mh_broker_options_t opts = {
        .url = cfg->amqp_url,
        .prefix = cfg->prefix,
        .instance_id = cfg->instance_id,
        .msg_ttl_ms = cfg->queue_msg_ttl_s * 1000u,
        .queue_expiry_ms = cfg->queue_expiry_s * 1000u,
        .prefetch = 256,
        .on_state = broker_state,
        .on_delivery = on_delivery,
        .ud = srv,
    };
    srv->broker = mh_broker_new(srv->loop, &opts, err, sizeof(err));
    if (!srv->broker) {
        mh_error("bad_amqp_url", "msg=\"%s\"", err);
        return -1;
    }
    mh_pubbatch_t *pb = mh_pubbatch_new(srv->loop, srv->broker, 256 * 1024);
    mh_transport_amqp_init(&srv->transport, srv->broker, pb);
    cluster_t *c = mh_xcalloc(1, sizeof(*c));
    c->pubbatch = pb;
    if (make_candidate(c)) {
        mh_error("random_failed", "what=token_secret");
        abort();
    }
    srv->cluster = c;
    uv_timer_init(srv->loop, &c->presence);
    c->presence.data = srv;
    uint64_t every = (uint64_t)cfg->presence_ttl_s * 1000u / 3;
    uv_timer_start(&c->presence, on_presence_timer, every, every);
    srv->distributed = 1;
    srv->backplane_ready = backplane_ready;
    srv->backplane_can_relay = backplane_can_relay;
    return 0;
}

static void free_on_close(uv_handle_t *h)
{
    free(h->data);
}

void mh_cluster_stop(mh_server_t *srv)
{
    cluster_t *c = cluster_of(srv);
    mh_transport_close(&srv->transport); /* relays push to no one from now on */
    if (c) {
        uv_timer_stop(&c->presence);
        c->presence.data = c;
        uv_close((uv_handle_t *)&c->presence, free_on_close);
        srv->cluster = NULL;
        mh_pubbatch_free(c->pubbatch);
    }
    mh_broker_free(srv->broker);
    srv->broker = NULL;
    mh_msglog_free(&srv->log);   /* before the store: calls pending on it fail when it goes */
    mh_msglog_closed(&srv->log); /* sessions closing later meet a log that fails, not a freed one */
    mh_presence_close(&srv->presence); /* before the store: later calls fail, none reach it */
    mh_redis_store_free(srv->redis);
    srv->redis = NULL;
    srv->redis_up = srv->broker_up = 0;
}
