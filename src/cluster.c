/*
 * cluster: distributed mode's wiring (see cluster.h).
 *
 * A delivery from RabbitMQ becomes one shared frame. Local receivers get a
 * reference each; the frame's local-done hook fires when the last of them
 * wrote it or stored it. Receivers no longer here are re-routed through
 * relay.c (Redis lookup, publish, or inbox). The delivery is acknowledged
 * when both are done; if re-routing failed it stays unacknowledged and
 * RabbitMQ redelivers it when the connection is re-established.
 */
#include "msghub/cluster.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "msghub/broker_amqp.h"
#include "msghub/log.h"
#include "msghub/pubbatch.h"
#include "msghub/redis_store.h"
#include "msghub/relay.h"
#include "msghub/session.h"
#include "msghub/token.h"

#define SECRET_BYTES 32 /* random bytes of a generated token secret, stored as hex */

typedef struct mh_cluster_priv {
    uv_timer_t presence;
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

static void broker_state(void *ud, int up)
{
    mh_server_t *srv = ud;
    srv->broker_up = up;
    mh_info(up ? "amqp_up" : "amqp_down", "ready=%d", mh_server_ready(srv));
    if (up) /* messages stored for connected clients during the outage: fetch them */
        refresh_presence(srv);
}

/* ---- presence ---- */

/* Sessions whose inbox got messages while they were connected fetch them now. */
static void refreshed(void *ud, int status, uint64_t *stored, size_t n)
{
    mh_server_t *srv = ud;
    if (status)
        mh_warn("presence_refresh_failed", "status=%d", status);
    for (size_t i = 0; i < n; i++) {
        mh_session_t *s = mh_registry_get(srv->registry, stored[i]);
        if (s)
            mh_session_check_inbox(srv, s);
    }
    free(stored);
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
}

/* ---- deliveries from other instances ---- */

typedef struct delivery {
    mh_server_t *srv;
    uint64_t tag;
    int stranded;
    size_t parts;
    int failed;
} delivery_t;

static void delivery_part_done(delivery_t *d, int status)
{
    if (status)
        d->failed = 1;
    if (--d->parts)
        return;
    if (!d->failed)
        mh_broker_ack(d->srv->broker, d->tag, d->stranded);
    else
        mh_warn("delivery_unacked", "tag=%llu msg=\"re-routing failed; RabbitMQ will redeliver\"",
                (unsigned long long)d->tag);
    free(d);
}

static void locals_done(void *ud)
{
    delivery_part_done(ud, 0);
}

static void rerouted(void *ud, int status)
{
    delivery_part_done(ud, status);
}

static void deliver_message(mh_server_t *srv, delivery_t *d, const mh_envelope_t *env)
{
    mh_frame_t *f = mh_frame_new(env->frame, env->frame_len);
    f->is_message = 1;
    f->t0_us = mh_mono_us();
    mh_session_t **local = mh_xmalloc(env->n_ids * sizeof(*local));
    uint64_t *away = mh_xmalloc(env->n_ids * sizeof(uint64_t));
    size_t n_local = 0, n_away = 0;
    for (size_t i = 0; i < env->n_ids; i++) {
        mh_session_t *s = mh_registry_get(srv->registry, env->ids[i]);
        if (s)
            local[n_local++] = s;
        else
            away[n_away++] = env->ids[i];
    }
    if (n_local) {
        d->parts++;
        f->local_left = (uint32_t)n_local;
        f->on_local_done = locals_done;
        f->local_ud = d;
        for (size_t i = 0; i < n_local; i++)
            mh_session_deliver(srv, local[i], f);
    }
    if (n_away) {
        d->parts++;
        mh_relay_reroute(srv, f, away, n_away, rerouted, d);
    }
    mh_frame_unref(f);
    free(local);
    free(away);
}

/* One envelope of a delivery; parts of d cover the work it starts. */
static void handle_envelope(mh_server_t *srv, delivery_t *d, const void *body, size_t len)
{
    mh_envelope_t env;
    if (mh_codec_envelope_parse(body, len, &env)) {
        mh_warn("bad_envelope", "len=%zu msg=\"dropped\"", len);
        return;
    }
    if (env.type == MH_ENV_KICK) {
        /* a stranded kick was meant for a dead instance: its sessions are gone */
        if (!d->stranded)
            mh_session_kick(srv, env.ids[0], env.claimed_ms);
    } else
        deliver_message(srv, d, &env);
    mh_codec_envelope_free(&env);
}

static void on_delivery(void *ud, uint64_t tag, int stranded, const void *body, size_t len)
{
    mh_server_t *srv = ud;
    delivery_t *d = mh_xcalloc(1, sizeof(*d));
    *d = (delivery_t){srv, tag, stranded, 1, 0}; /* the guard held while parts are issued */
    if (len && *(const char *)body == 'B') {
        size_t pos = 0, n;
        const char *env;
        int rc;
        while ((rc = mh_codec_batch_next(body, len, &pos, &env, &n)) == 1)
            handle_envelope(srv, d, env, n);
        if (rc < 0)
            mh_warn("bad_batch", "len=%zu msg=\"rest dropped\"", len);
    } else
        handle_envelope(srv, d, body, len);
    delivery_part_done(d, 0);
}

/* ---- lifecycle ---- */

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
    mh_broker_options_t opts = {
        .url = cfg->amqp_url,
        .prefix = cfg->prefix,
        .instance_id = cfg->instance_id,
        .msg_ttl_ms = cfg->queue_msg_ttl_s * 1000u,
        .queue_expiry_ms = cfg->queue_expiry_s * 1000u,
        /* stranded messages may wait as long as an inbox would keep them */
        .stranded_expiry_ms =
            (uint32_t)(cfg->inbox_ttl_s * 1000u > UINT32_MAX / 2 ? UINT32_MAX / 2
                                                                 : cfg->inbox_ttl_s * 1000u),
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
    srv->pubbatch = mh_pubbatch_new(srv->loop, srv->broker, 256 * 1024);
    cluster_t *c = mh_xcalloc(1, sizeof(*c));
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
    return 0;
}

static void free_on_close(uv_handle_t *h)
{
    free(h->data);
}

void mh_cluster_stop(mh_server_t *srv)
{
    cluster_t *c = cluster_of(srv);
    if (c) {
        uv_timer_stop(&c->presence);
        c->presence.data = c;
        uv_close((uv_handle_t *)&c->presence, free_on_close);
        srv->cluster = NULL;
    }
    mh_pubbatch_free(srv->pubbatch);
    srv->pubbatch = NULL;
    mh_broker_free(srv->broker);
    srv->broker = NULL;
    mh_redis_store_free(srv->redis);
    srv->redis = NULL;
    srv->redis_up = srv->broker_up = 0;
}
