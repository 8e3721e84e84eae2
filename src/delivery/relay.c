/*
 * relay: one relay request from the log append to delivery (see relay.h).
 *
 * The frame is built once (its text without seq) and appended to every
 * receiver's log in ONE mh_msglog_append call, which also gives each
 * receiver's seq and, in distributed mode, the instance holding it. Only
 * then is the relay accepted. Receivers connected here get (frame, seq)
 * references (through the hub's deliver hook); receivers on other
 * instances get ONE envelope per instance (ids and seqs, frame once)
 * through the transport port; offline receivers need nothing: the log has
 * it. A lost push costs latency, not data: the receiving session fills
 * gaps from the log.
 *
 * Layer 2 (src/delivery): only the ports and the hub, unit tested with
 * fakes (tests/unit/test_relay.c).
 */
#include "msghub/relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msghub/log.h"

typedef struct relay_job {
    mh_server_t *srv;
    mh_relay_done_fn done;
    void *ud;
    mh_frame_t *f;
    uint64_t *ids;
    size_t n;
    mh_relay_result_t res;
} relay_job_t;

/* ---- pushes to other instances ---- */

static void published(void *ud, int status)
{
    (void)ud;
    if (status) /* the log has the message; the receiver's instance fills the gap */
        mh_debug("push_failed", "status=%d", status);
}

typedef struct remote {
    const char *instance;
    uint64_t id, seq;
} remote_t;

static int cmp_remote(const void *a, const void *b)
{
    return strcmp(((const remote_t *)a)->instance, ((const remote_t *)b)->instance);
}

/* One envelope per instance to the receivers in r[0..n) (sorted here). */
static void publish_remotes(mh_server_t *srv, mh_frame_t *f, remote_t *r, size_t n)
{
    if (!n || mh_transport_none(&srv->transport))
        return;
    qsort(r, n, sizeof(*r), cmp_remote);
    uint64_t *ids = mh_xmalloc(n * sizeof(uint64_t)), *seqs = mh_xmalloc(n * sizeof(uint64_t));
    mh_buf_t env;
    mh_buf_init(&env);
    for (size_t i = 0; i < n;) {
        size_t j = i, k = 0;
        for (; j < n && strcmp(r[j].instance, r[i].instance) == 0; j++, k++) {
            ids[k] = r[j].id;
            seqs[k] = r[j].seq;
        }
        mh_buf_reset(&env);
        mh_codec_envelope_message(&env, ids, seqs, k, f);
        mh_transport_push(&srv->transport, r[i].instance, env.data, env.len, published, NULL);
        i = j;
    }
    mh_buf_free(&env);
    free(ids);
    free(seqs);
}

/* ---- after the append ---- */

/* Hands (f, seq) to the receivers connected here and pushes to the others' instances. */
static void deliver_all(relay_job_t *job, const mh_msglog_appended_t *res)
{
    mh_server_t *srv = job->srv;
    void **local = mh_xmalloc(job->n * sizeof(*local));
    uint64_t *local_seq = mh_xmalloc(job->n * sizeof(uint64_t));
    remote_t *remote = mh_xmalloc(job->n * sizeof(*remote));
    size_t n_local = 0, n_remote = 0;
    for (size_t i = 0; i < res->n; i++) {
        if (!res->seqs[i])
            continue;
        void *s = mh_registry_get(srv->registry, job->ids[i]);
        const char *inst = res->instances[i];
        if (s) {
            local[n_local] = s;
            local_seq[n_local++] = res->seqs[i];
        } else if (inst && strcmp(inst, srv->cfg->instance_id) != 0)
            remote[n_remote++] = (remote_t){inst, job->ids[i], res->seqs[i]};
    }
    job->f->local_left = (uint32_t)n_local;
    for (size_t i = 0; i < n_local; i++)
        srv->deliver(srv, local[i], job->f, local_seq[i]);
    publish_remotes(srv, job->f, remote, n_remote);
    free(local);
    free(local_seq);
    free(remote);
}

static void appended(void *ud, int status, const mh_msglog_appended_t *res)
{
    relay_job_t *job = ud;
    mh_server_t *srv = job->srv;
    uint64_t *unknown = mh_xmalloc(job->n * sizeof(uint64_t));
    if (status == 0) {
        for (size_t i = 0; i < res->n; i++) {
            if (res->seqs[i])
                job->res.accepted++;
            else
                unknown[job->res.n_unknown++] = job->ids[i];
        }
        srv->metrics.inbox_stored_total += job->res.accepted;
        srv->metrics.inbox_dropped_total += res->dropped;
        job->res.unknown = unknown;
        deliver_all(job, res);
    }
    job->done(job->ud, status == MH_EINDOUBT ? MH_EINDOUBT : status ? MH_EIO : 0, &job->res);
    free(unknown);
    mh_frame_unref(job->f);
    free(job->ids);
    free(job);
}

static mh_frame_t *build_frame(mh_server_t *srv, uint64_t from, const mh_request_t *req,
                               uint64_t t0_us, const char *msg_id)
{
    mh_buf_t text;
    mh_buf_init(&text);
    size_t seq_at = mh_codec_message(&text, msg_id, from, req->body, req->body_len, mh_now_ms());
    mh_frame_t *f = mh_frame_from_buf(&text);
    mh_buf_free(&text);
    f->is_message = 1;
    f->seq_at = (uint32_t)seq_at;
    f->t0_us = t0_us;
    return f;
}

void mh_relay_start(mh_server_t *srv, uint64_t from, mh_request_t *req, uint64_t t0_us,
                    mh_relay_done_fn done, void *ud)
{
    relay_job_t *job = mh_xcalloc(1, sizeof(*job));
    job->srv = srv;
    job->done = done;
    job->ud = ud;
    mh_server_next_msg_id(srv, job->res.msg_id, sizeof(job->res.msg_id));
    if (!mh_server_can_relay(srv)) {
        done(ud, MH_EIO, &job->res);
        free(job);
        return;
    }
    job->n = mh_codec_dedupe(req->receivers, req->n_receivers);
    job->ids = mh_xmalloc(job->n * sizeof(uint64_t));
    memcpy(job->ids, req->receivers, job->n * sizeof(uint64_t));
    srv->metrics.relays_total++;
    job->f = build_frame(srv, from, req, t0_us, job->res.msg_id);
    mh_msglog_append(&srv->log, job->ids, job->n, job->f, mh_now_ms(), appended, job);
}

void mh_relay_refusal(int status, const mh_relay_result_t *res, const char *plain, char *out,
                      size_t len)
{
    if (status == MH_EINDOUBT)
        snprintf(out, len,
                 "backplane lost the answer: message %s may have been accepted and may still "
                 "arrive; retry later",
                 res->msg_id);
    else
        snprintf(out, len, "%s", plain);
}
