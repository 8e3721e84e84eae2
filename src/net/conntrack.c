/*
 * conntrack: accepted sockets and their request deadlines (see
 * conntrack.h). Entries are keyed by the wsi's address; a WebSocket keeps
 * its entry (it still counts) with no deadline.
 */
#include "msghub/conntrack.h"

#include <libwebsockets.h>
#include <stdlib.h>

#include "msghub/u64map.h"
#include "msghub/util.h"

#define NO_DEADLINE UINT64_MAX

struct mh_conntrack {
    mh_u64map_t *map; /* wsi address -> entry */
};

typedef struct entry {
    struct lws *wsi;
    uint64_t since_ms; /* start of the current request, NO_DEADLINE for a WebSocket */
    int dispatched;    /* lws parsed the current request's head */
} entry_t;

static uint64_t key_of(struct lws *wsi)
{
    return (uint64_t)(uintptr_t)wsi;
}

mh_conntrack_t *mh_conntrack_new(void)
{
    mh_conntrack_t *ct = mh_xcalloc(1, sizeof(*ct));
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
    while (mh_u64map_next(ct->map, &cursor, &k, &v))
        free(v);
    mh_u64map_free(ct->map);
    free(ct);
}

void mh_conntrack_open(mh_conntrack_t *ct, struct lws *wsi, uint64_t now_ms)
{
    entry_t *e = mh_u64map_get(ct->map, key_of(wsi));
    if (!e) {
        e = mh_xmalloc(sizeof(*e));
        e->wsi = wsi;
        mh_u64map_put(ct->map, key_of(wsi), e);
    }
    e->since_ms = now_ms;
    e->dispatched = 0;
}

void mh_conntrack_close(mh_conntrack_t *ct, struct lws *wsi)
{
    free(mh_u64map_del(ct->map, key_of(wsi)));
}

void mh_conntrack_restart(mh_conntrack_t *ct, struct lws *wsi, uint64_t now_ms)
{
    entry_t *e = mh_u64map_get(ct->map, key_of(wsi));
    if (e && e->since_ms != NO_DEADLINE) {
        e->since_ms = now_ms;
        e->dispatched = 0;
    }
}

void mh_conntrack_dispatched(mh_conntrack_t *ct, struct lws *wsi)
{
    entry_t *e = mh_u64map_get(ct->map, key_of(wsi));
    if (e)
        e->dispatched = 1;
}

void mh_conntrack_upgraded(mh_conntrack_t *ct, struct lws *wsi)
{
    entry_t *e = mh_u64map_get(ct->map, key_of(wsi));
    if (e)
        e->since_ms = NO_DEADLINE;
}

size_t mh_conntrack_count(const mh_conntrack_t *ct)
{
    return mh_u64map_size(ct->map);
}

/* Closes the collected connections from this timer (outside every lws callback). */
static void kill_all(struct lws **wsis, size_t n)
{
    for (size_t i = 0; i < n; i++)
        lws_set_timeout(wsis[i], PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    free(wsis);
}

/* What a sweep closes: past its deadline, and (when refuse is set) refused by it. */
typedef struct sweep_rule {
    uint64_t now_ms, after_ms;
    int (*refuse)(struct lws *wsi); /* NULL: every expired request; else undispatched ones */
} sweep_rule_t;

/*
 * Closes up to max connections the rule picks, each once. Closed from this
 * timer (outside every lws callback): a deadline lws keeps is re-armed by
 * each body chunk. Closing removes entries, so it happens after the walk.
 */
static size_t sweep(mh_conntrack_t *ct, const sweep_rule_t *r, size_t max)
{
    size_t cursor = 0, n = 0;
    uint64_t k;
    void *v;
    struct lws **picked = NULL;
    while (n < max && mh_u64map_next(ct->map, &cursor, &k, &v)) {
        entry_t *e = v;
        if (e->since_ms == NO_DEADLINE || r->now_ms - e->since_ms <= r->after_ms ||
            (r->refuse && (e->dispatched || !r->refuse(e->wsi))))
            continue;
        e->since_ms = NO_DEADLINE; /* closed once */
        picked = mh_xrealloc(picked, (n + 1) * sizeof(*picked));
        picked[n++] = e->wsi;
    }
    kill_all(picked, n);
    return n;
}

size_t mh_conntrack_sweep_stalled(mh_conntrack_t *ct, uint64_t now_ms, uint64_t stall_ms,
                                  int (*refuse)(struct lws *wsi), size_t max)
{
    sweep_rule_t r = {now_ms, stall_ms, refuse};
    return sweep(ct, &r, max);
}

size_t mh_conntrack_sweep(mh_conntrack_t *ct, uint64_t now_ms, uint64_t timeout_ms, size_t max)
{
    sweep_rule_t r = {now_ms, timeout_ms, NULL};
    return sweep(ct, &r, max);
}
