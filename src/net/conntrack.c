/*
 * conntrack: accepted sockets and their request deadlines on the timing
 * wheel (see conntrack.h). Entries are keyed by the wsi's address; a
 * WebSocket keeps its entry (it still counts) with its timer disarmed.
 */
#include "msghub/conntrack.h"

#include <libwebsockets.h>
#include <stdlib.h>

#include "msghub/u64map.h"
#include "msghub/util.h"

struct mh_conntrack {
    mh_conntrack_options_t o;
    mh_u64map_t *map; /* wsi address -> entry */
    uint32_t kills;   /* closes in the current sweep */
    size_t timeouts;  /* closed for the deadline since mh_conntrack_end_tick */
};

typedef struct entry {
    mh_timer_t timer;
    mh_conntrack_t *ct;
    struct lws *wsi;
    uint64_t since_ms;     /* start of the current request */
    uint64_t check_gap_ms; /* HTTP/0.9 check: the next one this long after the last */
    int dispatched;        /* lws parsed the current request's head */
    int refused;           /* answered as HTTP/0.9: waits for its close */
} entry_t;

static uint64_t key_of(struct lws *wsi)
{
    return (uint64_t)(uintptr_t)wsi;
}

static uint64_t mono_ms(void)
{
    return mh_mono_us() / 1000u;
}

mh_conntrack_t *mh_conntrack_new(const mh_conntrack_options_t *o)
{
    mh_conntrack_t *ct = mh_xcalloc(1, sizeof(*ct));
    ct->o = *o;
    ct->map = mh_u64map_new();
    return ct;
}

void mh_conntrack_free(mh_conntrack_t *ct)
{
    if (!ct)
        return;
    size_t cursor = 0;
    uint64_t k;
    void *v;
    while (mh_u64map_next(ct->map, &cursor, &k, &v)) {
        entry_t *e = v;
        mh_timerwheel_cancel(ct->o.wheel, &e->timer);
        free(e);
    }
    mh_u64map_free(ct->map);
    free(ct);
}

/* The entry's next due time: its deadline, or an earlier HTTP/0.9 check. */
static void arm(mh_conntrack_t *ct, entry_t *e, uint64_t now_ms)
{
    uint64_t at = e->since_ms + ct->o.timeout_ms;
    if (!e->dispatched && ct->o.refuse && e->check_gap_ms && now_ms + e->check_gap_ms < at)
        at = now_ms + e->check_gap_ms;
    mh_timerwheel_add(ct->o.wheel, &e->timer, at);
}

/* From the wheel's sweep, outside every lws callback: lws closes it now. */
static int kill_now(mh_conntrack_t *ct, entry_t *e)
{
    if (ct->kills >= ct->o.kills_per_tick) {
        mh_timerwheel_add(ct->o.wheel, &e->timer, mono_ms()); /* a past time: the next tick */
        return 0;
    }
    ct->kills++;
    lws_set_timeout(e->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC); /* frees e */
    return 1;
}

static void on_due(mh_timer_t *t, void *ud)
{
    entry_t *e = ud;
    mh_conntrack_t *ct = e->ct;
    uint64_t now = mono_ms();
    (void)t;
    if (now - e->since_ms >= ct->o.timeout_ms) {
        if (kill_now(ct, e))
            ct->timeouts++;
        return;
    }
    if (e->refused || (!e->dispatched && ct->o.refuse && ct->o.refuse(e->wsi))) {
        e->refused = 1; /* answered once; past the budget the close waits a tick */
        kill_now(ct, e);
        return;
    }
    e->check_gap_ms *= 2;
    arm(ct, e, now);
}

static void begin_request(mh_conntrack_t *ct, entry_t *e, uint64_t since_ms)
{
    e->since_ms = since_ms;
    e->dispatched = 0;
    e->refused = 0;
    e->check_gap_ms = ct->o.stall_ms;
    arm(ct, e, mono_ms());
}

void mh_conntrack_open(mh_conntrack_t *ct, struct lws *wsi, uint64_t since_ms)
{
    entry_t *e = mh_u64map_get(ct->map, key_of(wsi));
    if (!e) {
        e = mh_xcalloc(1, sizeof(*e));
        e->ct = ct;
        e->wsi = wsi;
        mh_timer_init(&e->timer, on_due, e);
        mh_u64map_put(ct->map, key_of(wsi), e);
    }
    begin_request(ct, e, since_ms);
}

void mh_conntrack_close(mh_conntrack_t *ct, struct lws *wsi)
{
    entry_t *e = mh_u64map_del(ct->map, key_of(wsi));
    if (!e)
        return;
    mh_timerwheel_cancel(ct->o.wheel, &e->timer);
    free(e);
}

void mh_conntrack_restart(mh_conntrack_t *ct, struct lws *wsi)
{
    entry_t *e = mh_u64map_get(ct->map, key_of(wsi));
    if (e && mh_timer_pending(&e->timer)) /* not a WebSocket, not being closed */
        begin_request(ct, e, mono_ms());
}

void mh_conntrack_dispatched(mh_conntrack_t *ct, struct lws *wsi)
{
    entry_t *e = mh_u64map_get(ct->map, key_of(wsi));
    if (e)
        e->dispatched = 1; /* a pending check finds it and re-arms for the deadline */
}

void mh_conntrack_upgraded(mh_conntrack_t *ct, struct lws *wsi)
{
    entry_t *e = mh_u64map_get(ct->map, key_of(wsi));
    if (e)
        mh_timerwheel_cancel(ct->o.wheel, &e->timer);
}

size_t mh_conntrack_count(const mh_conntrack_t *ct)
{
    return mh_u64map_size(ct->map);
}

size_t mh_conntrack_end_tick(mh_conntrack_t *ct)
{
    size_t n = ct->timeouts;
    ct->timeouts = 0;
    ct->kills = 0;
    return n;
}
