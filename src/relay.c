/*
 * relay: one relay request from plan to delivery (see relay.h). The frame
 * is built once; each receiver gets a reference, never a copy.
 *
 * Distributed fan-out (fanout_*): receivers not connected here are looked
 * up in Redis in one round trip, grouped by instance and published as ONE
 * envelope per instance; a publish that comes back (the instance's queue is
 * gone) and every receiver without a route are stored in Redis inboxes.
 * A counter of outstanding parts, guarded by one extra count while parts are
 * being issued, finishes the fan-out exactly once.
 */
#include "msghub/relay.h"

#include <stdlib.h>
#include <string.h>

#include "msghub/pubbatch.h"
#include "msghub/log.h"
#include "msghub/redis_store.h"
#include "msghub/router.h"
#include "msghub/session.h"

typedef void (*status_cb)(void *ud, int status);

/* ---- storing for later ---- */

typedef struct store_op {
    mh_server_t *srv;
    status_cb cb;
    void *ud;
} store_op_t;

static void stored(void *ud, int status, uint64_t dropped)
{
    store_op_t *op = ud;
    if (status == 0)
        op->srv->metrics.inbox_dropped_total += dropped;
    if (op->cb)
        op->cb(op->ud, status);
    free(op);
}

static void stored_front(void *ud, int status)
{
    stored(ud, status, 0);
}

void mh_relay_store(mh_server_t *srv, uint64_t id, mh_frame_t *const *frames, size_t n, int front,
                    status_cb cb, void *ud)
{
    srv->metrics.inbox_stored_total += n; /* also frames put back after a failed send */
    if (!srv->distributed) {
        uint64_t now = mh_now_ms();
        for (size_t i = n; i-- > 0 && front;)
            mh_inbox_mem_push_front(srv->inbox, id, frames[i], now);
        for (size_t i = 0; i < n && !front; i++)
            srv->metrics.inbox_dropped_total += mh_inbox_mem_push(srv->inbox, id, frames[i], now);
        if (cb)
            cb(ud, 0);
        return;
    }
    store_op_t *op = mh_xmalloc(sizeof(*op));
    *op = (store_op_t){srv, cb, ud};
    const mh_config_t *cfg = srv->cfg;
    if (front)
        mh_redis_inbox_push_front(srv->redis, id, frames, n, cfg->inbox_ttl_s, stored_front, op);
    else
        mh_redis_inbox_push(srv->redis, id, frames, n, cfg->inbox_max, cfg->inbox_ttl_s, stored,
                            op);
}

void mh_relay_local_done(mh_server_t *srv, mh_frame_t *f)
{
    if (!f->local_left || --f->local_left)
        return;
    if (f->t0_us)
        mh_metrics_observe_latency(&srv->metrics, mh_mono_us() - f->t0_us);
    if (f->on_local_done)
        f->on_local_done(f->local_ud);
}

/* ---- distributed fan-out ---- */

typedef struct fanout {
    mh_server_t *srv;
    mh_frame_t *f;
    size_t parts;
    int failed;
    size_t accepted;
    uint64_t *unknown;
    size_t n_unknown;
    void (*finish)(struct fanout *fo);
    void *ud;
} fanout_t;

typedef struct publish_op {
    fanout_t *fo;
    size_t n;
    uint64_t ids[];
} publish_op_t;

static void part_done(fanout_t *fo, int status)
{
    if (status)
        fo->failed = 1;
    if (--fo->parts)
        return;
    fo->finish(fo);
    mh_frame_unref(fo->f);
    free(fo->unknown);
    free(fo);
}

static void part_status(void *ud, int status)
{
    part_done(ud, status);
}

static void store_part(fanout_t *fo, uint64_t id)
{
    fo->parts++;
    mh_relay_store(fo->srv, id, &fo->f, 1, 0, part_status, fo);
}

static void published(void *ud, int status)
{
    publish_op_t *op = ud;
    fanout_t *fo = op->fo;
    /*
     * MH_ENOENT: the instance is gone, its receivers are offline. MH_EIO: not
     * confirmed (nack, or the connection dropped first): RabbitMQ may or may
     * not hold it, so the receivers' copies also go to their inboxes: a
     * duplicate (same message id) rather than a refusal the sender would retry.
     */
    if (status == MH_ENOENT || status == MH_EIO) {
        mh_debug("publish_unconfirmed", "receivers=%zu status=%d", op->n, status);
        for (size_t i = 0; i < op->n; i++)
            store_part(fo, op->ids[i]);
        status = 0;
    }
    free(op);
    part_done(fo, status);
}

static void publish_group(fanout_t *fo, const char *instance, const uint64_t *ids, size_t n)
{
    publish_op_t *op = mh_xmalloc(sizeof(*op) + n * sizeof(uint64_t));
    op->fo = fo;
    op->n = n;
    memcpy(op->ids, ids, n * sizeof(uint64_t));
    mh_buf_t env;
    mh_buf_init(&env);
    mh_codec_envelope_message(&env, ids, n, mh_frame_data(fo->f), fo->f->len);
    fo->parts++;
    mh_pubbatch_add(fo->srv->pubbatch, instance, env.data, env.len, published, op);
    mh_buf_free(&env);
}

typedef struct remote {
    const char *instance;
    uint64_t id;
} remote_t;

static int cmp_remote(const void *a, const void *b)
{
    return strcmp(((const remote_t *)a)->instance, ((const remote_t *)b)->instance);
}

/* Publishes one envelope per instance to the receivers in r[0..n), sorted here. */
static void publish_remotes(fanout_t *fo, remote_t *r, size_t n)
{
    qsort(r, n, sizeof(*r), cmp_remote);
    uint64_t *ids = mh_xmalloc((n ? n : 1) * sizeof(uint64_t));
    for (size_t i = 0; i < n;) {
        size_t j = i, k = 0;
        while (j < n && strcmp(r[j].instance, r[i].instance) == 0)
            ids[k++] = r[j++].id;
        publish_group(fo, r[i].instance, ids, k);
        i = j;
    }
    free(ids);
}

static void local_part_done(void *ud)
{
    part_done(ud, 0);
}

/*
 * A receiver found connected here only after the lookup. The shared frame's
 * local-done hook may already have fired for the receivers handled before,
 * so this one gets its own frame (a rare path) whose hook ends a fan-out part.
 */
static void local_part(fanout_t *fo, mh_session_t *s)
{
    mh_frame_t *f = mh_frame_new(mh_frame_data(fo->f), fo->f->len);
    f->is_message = 1;
    f->local_left = 1;
    f->on_local_done = local_part_done;
    f->local_ud = fo;
    fo->parts++;
    mh_session_deliver(fo->srv, s, f);
    mh_frame_unref(f);
}

static void routes_found(void *ud, int status, uint64_t last_id, const char *const *instances,
                         size_t n)
{
    fanout_t *fo = ud;
    uint64_t *ids = fo->unknown; /* holds the ids looked up until classified */
    fo->unknown = mh_xmalloc((n ? n : 1) * sizeof(uint64_t));
    fo->n_unknown = 0;
    if (status) {
        free(ids);
        part_done(fo, status);
        return;
    }
    mh_server_t *srv = fo->srv;
    remote_t *remote = mh_xmalloc((n ? n : 1) * sizeof(*remote));
    size_t n_remote = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] > last_id) {
            fo->unknown[fo->n_unknown++] = ids[i];
            continue;
        }
        fo->accepted++;
        void *local = mh_registry_get(srv->registry, ids[i]);
        if (local) /* connected here since the lookup was sent */
            local_part(fo, local);
        else if (!instances[i] || strcmp(instances[i], srv->cfg->instance_id) == 0)
            store_part(fo, ids[i]);
        else
            remote[n_remote++] = (remote_t){instances[i], ids[i]};
    }
    publish_remotes(fo, remote, n_remote);
    free(remote);
    free(ids);
    part_done(fo, 0);
}

/* Starts the fan-out of f to ids (not connected here); fo->finish runs once at the end. */
static void fanout_start(fanout_t *fo, const uint64_t *ids, size_t n)
{
    fo->parts = 1; /* held until the route lookup is classified */
    fo->unknown = mh_xmalloc((n ? n : 1) * sizeof(uint64_t));
    memcpy(fo->unknown, ids, n * sizeof(uint64_t));
    mh_redis_lookup_routes(fo->srv->redis, ids, n, routes_found, fo);
}

static fanout_t *fanout_new(mh_server_t *srv, mh_frame_t *f, void (*finish)(fanout_t *), void *ud)
{
    fanout_t *fo = mh_xcalloc(1, sizeof(*fo));
    fo->srv = srv;
    fo->f = mh_frame_ref(f);
    fo->finish = finish;
    fo->ud = ud;
    return fo;
}

/* ---- relay requests ---- */

typedef struct relay_job {
    mh_relay_done_fn done;
    void *ud;
    mh_relay_result_t res;
    size_t n_local;
} relay_job_t;

static void relay_finished(fanout_t *fo)
{
    relay_job_t *job = fo->ud;
    job->res.accepted = job->n_local + fo->accepted;
    job->res.unknown = fo->unknown;
    job->res.n_unknown = fo->n_unknown;
    job->done(job->ud, fo->failed ? MH_EIO : 0, &job->res);
    free(job);
}

static mh_frame_t *build_frame(mh_server_t *srv, uint64_t from, const mh_request_t *req,
                               uint64_t t0_us, const char *msg_id)
{
    mh_buf_t text;
    mh_buf_init(&text);
    mh_codec_message(&text, msg_id, from, req->body, req->body_len, mh_now_ms());
    mh_frame_t *f = mh_frame_from_buf(&text);
    mh_buf_free(&text);
    f->is_message = 1;
    f->t0_us = t0_us;
    return f;
}

static void relay_standalone(mh_server_t *srv, mh_request_t *req, mh_frame_t *f, relay_job_t *job)
{
    mh_route_plan_t plan;
    mh_router_plan_init(&plan, req->n_receivers);
    mh_router_plan(req->receivers, req->n_receivers, mh_registry_last_id(srv->registry),
                   (mh_router_lookup_fn)mh_registry_get, srv->registry, &plan);
    job->res.accepted = mh_router_accepted(&plan);
    job->res.unknown = plan.unknown;
    job->res.n_unknown = plan.n_unknown;
    f->local_left = (uint32_t)plan.n_local;
    for (size_t i = 0; i < plan.n_offline; i++)
        mh_relay_store(srv, plan.offline[i], &f, 1, 0, NULL, NULL);
    for (size_t i = 0; i < plan.n_local; i++)
        mh_session_deliver(srv, plan.local[i], f);
    job->done(job->ud, 0, &job->res);
    mh_router_plan_free(&plan);
    free(job);
}

static void relay_distributed(mh_server_t *srv, mh_request_t *req, mh_frame_t *f, relay_job_t *job)
{
    uint64_t *rest = mh_xmalloc(req->n_receivers * sizeof(uint64_t));
    size_t n_rest = 0;
    for (size_t i = 0; i < req->n_receivers; i++) {
        mh_session_t *s = mh_registry_get(srv->registry, req->receivers[i]);
        if (s) {
            job->n_local++;
            f->local_left++;
            mh_session_deliver(srv, s, f);
        } else
            rest[n_rest++] = req->receivers[i];
    }
    fanout_t *fo = fanout_new(srv, f, relay_finished, job);
    if (n_rest)
        fanout_start(fo, rest, n_rest);
    else {
        fo->parts = 1;
        part_done(fo, 0);
    }
    free(rest);
}

void mh_relay_start(mh_server_t *srv, uint64_t from, mh_request_t *req, uint64_t t0_us,
                    mh_relay_done_fn done, void *ud)
{
    relay_job_t *job = mh_xcalloc(1, sizeof(*job));
    job->done = done;
    job->ud = ud;
    mh_server_next_msg_id(srv, job->res.msg_id, sizeof(job->res.msg_id));
    if (!mh_server_ready(srv)) {
        done(ud, MH_EIO, &job->res);
        free(job);
        return;
    }
    req->n_receivers = mh_codec_dedupe(req->receivers, req->n_receivers);
    srv->metrics.relays_total++;
    mh_frame_t *f = build_frame(srv, from, req, t0_us, job->res.msg_id);
    if (srv->distributed)
        relay_distributed(srv, req, f, job);
    else
        relay_standalone(srv, req, f, job);
    mh_frame_unref(f);
}

/* ---- re-routing for the consumer ---- */

typedef struct reroute_job {
    status_cb cb;
    void *ud;
} reroute_job_t;

static void reroute_finished(fanout_t *fo)
{
    reroute_job_t *job = fo->ud;
    job->cb(job->ud, fo->failed ? MH_EIO : 0);
    free(job);
}

void mh_relay_reroute(mh_server_t *srv, mh_frame_t *f, const uint64_t *ids, size_t n, status_cb cb,
                      void *ud)
{
    reroute_job_t *job = mh_xmalloc(sizeof(*job));
    *job = (reroute_job_t){cb, ud};
    fanout_t *fo = fanout_new(srv, f, reroute_finished, job);
    fanout_start(fo, ids, n);
}
