/*
 * relay: one relay request from plan to delivery (see relay.h). The frame
 * is built once; each receiver gets a reference, never a copy.
 */
#include "msghub/relay.h"

#include <string.h>

#include "msghub/log.h"
#include "msghub/ws.h"

static void *lookup_local(void *ud, uint64_t id)
{
    return mh_registry_get(((mh_server_t *)ud)->registry, id);
}

void mh_relay_store_offline(mh_server_t *srv, uint64_t id, mh_frame_t *f)
{
    size_t dropped = mh_inbox_mem_push(srv->inbox, id, f, mh_now_ms());
    srv->metrics.inbox_stored_total++;
    srv->metrics.inbox_dropped_total += dropped;
}

void mh_relay_run(mh_server_t *srv, uint64_t from, mh_request_t *req, uint64_t t0_us,
                  mh_relay_result_t *res)
{
    size_t n = mh_codec_dedupe(req->receivers, req->n_receivers);
    req->n_receivers = n;
    mh_router_plan_init(&res->plan, n);
    mh_router_plan(req->receivers, n, mh_registry_last_id(srv->registry), lookup_local, srv,
                   &res->plan);
    res->accepted = mh_router_accepted(&res->plan);
    mh_server_next_msg_id(srv, res->msg_id, sizeof(res->msg_id));
    srv->metrics.relays_total++;
    if (res->accepted == 0)
        return;

    mh_buf_t text;
    mh_buf_init(&text);
    mh_codec_message(&text, res->msg_id, from, req->body, req->body_len, mh_now_ms());
    mh_frame_t *f = mh_frame_from_buf(&text);
    mh_buf_free(&text);
    f->is_message = 1;
    f->t0_us = t0_us;
    f->local_left = (uint32_t)res->plan.n_local;

    for (size_t i = 0; i < res->plan.n_offline; i++)
        mh_relay_store_offline(srv, res->plan.offline[i], f);
    for (size_t i = 0; i < res->plan.n_local; i++)
        mh_session_deliver(srv, res->plan.local[i], f);
    mh_frame_unref(f);
}

void mh_relay_result_free(mh_relay_result_t *res)
{
    mh_router_plan_free(&res->plan);
}
