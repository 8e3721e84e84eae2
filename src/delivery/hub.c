/*
 * hub: the helpers over the hub's shared state (see hub.h): readiness and
 * whether relays are accepted, the loop's write buffer, the memory budget, message ids, relay
 * latency.
 */
#include "msghub/hub.h"

#include <stdio.h>
#include <stdlib.h>

int mh_server_ready(const mh_server_t *srv)
{
    if (srv->draining || !srv->secret)
        return 0;
    return !srv->backplane_ready || srv->backplane_ready(srv);
}

int mh_server_can_relay(const mh_server_t *srv)
{
    if (srv->draining || !srv->secret)
        return 0;
    return !srv->backplane_can_relay || srv->backplane_can_relay(srv);
}

unsigned char *mh_server_scratch(mh_server_t *srv, size_t n)
{
    if (n > srv->scratch_cap) {
        free(srv->scratch);
        srv->scratch_cap = n > 2 * srv->scratch_cap ? n : 2 * srv->scratch_cap;
        srv->scratch = mh_xmalloc(MH_FRAME_HEADROOM + srv->scratch_cap);
    }
    return srv->scratch + MH_FRAME_HEADROOM;
}

void mh_mem_add(mh_server_t *srv, size_t n)
{
    srv->metrics.memory_bytes += n;
}

void mh_mem_sub(mh_server_t *srv, size_t n)
{
    srv->metrics.memory_bytes -= n < srv->metrics.memory_bytes ? n : srv->metrics.memory_bytes;
}

int mh_mem_allows(mh_server_t *srv, size_t total, size_t more)
{
    if (total <= MH_MEM_SMALL ||
        srv->metrics.memory_bytes + more <= srv->metrics.memory_limit_bytes)
        return 1;
    srv->metrics.memory_refusals_total++;
    return 0;
}

void mh_mem_partial_begin(mh_server_t *srv, mh_mem_partial_t *p, mh_mem_drop_fn drop)
{
    if (mh_dlist_has(&srv->partials, &p->link))
        return;
    p->drop = drop;
    mh_dlist_push_back(&srv->partials, &p->link);
}

void mh_mem_partial_end(mh_server_t *srv, mh_mem_partial_t *p)
{
    if (mh_dlist_has(&srv->partials, &p->link))
        mh_dlist_unlink(&srv->partials, &p->link);
}

int mh_mem_make_room(mh_server_t *srv, size_t total, size_t more, const mh_mem_partial_t *self)
{
    while (total > MH_MEM_SMALL &&
           srv->metrics.memory_bytes + more > srv->metrics.memory_limit_bytes) {
        mh_dlink_t *n = srv->partials.head;
        if (n && self && n == &self->link) /* self may be NULL: no &NULL->link */
            n = n->next;
        if (!n)
            break;
        mh_mem_partial_t *v = MH_CONTAINER_OF(n, mh_mem_partial_t, link);
        srv->metrics.memory_refusals_total++;
        mh_mem_partial_end(srv, v); /* first: the walk moves on, and v may go inside drop() */
        v->drop(srv, v);
    }
    return mh_mem_allows(srv, total, more);
}

void mh_server_next_msg_id(mh_server_t *srv, char *out, size_t len)
{
    snprintf(out, len, "%s-%llu", srv->msg_prefix, (unsigned long long)++srv->msg_seq);
}

void mh_server_local_done(mh_server_t *srv, mh_frame_t *f)
{
    if (!f->local_left || --f->local_left)
        return;
    if (f->t0_us)
        mh_metrics_observe_latency(&srv->metrics, mh_mono_us() - f->t0_us);
}
