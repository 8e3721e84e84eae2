/*
 * timerwheel: hashed timing wheel (see timerwheel.h for the contract).
 *
 * Each slot is a circular doubly linked list with a sentinel node, so a
 * timer unlinks itself in O(1) from whichever list holds it: a slot, or the
 * "due" list of the slot being swept. Sweeping a slot first moves its whole
 * list onto the due list; timers due fire one by one, timers of a later
 * revolution go back to the slot. A callback that cancels or re-arms
 * another timer still on the due list just unlinks it from there.
 *
 * Timers armed for a tick already swept (a deadline in the past, or one
 * armed by a callback for "now") are put on the next tick, so every armed
 * timer fires in some later advance and a callback that re-arms itself for
 * now cannot loop forever.
 */
#include "msghub/timerwheel.h"

#include <stdlib.h>

#include "msghub/util.h"

struct mh_timerwheel {
    mh_timer_t *slots; /* sentinels */
    uint64_t mask;     /* nslots - 1 */
    uint64_t cur;      /* last tick swept */
    uint32_t tick_ms;
    size_t count;
};

static void list_init(mh_timer_t *head)
{
    head->next = head->prev = head;
}

static void list_push(mh_timer_t *head, mh_timer_t *t)
{
    t->prev = head->prev;
    t->next = head;
    head->prev->next = t;
    head->prev = t;
}

static void list_unlink(mh_timer_t *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->next = t->prev = NULL;
}

/* Moves every node of from onto the empty list to. */
static void list_move(mh_timer_t *from, mh_timer_t *to)
{
    if (from->next == from) {
        list_init(to);
        return;
    }
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    list_init(from);
}

mh_timerwheel_t *mh_timerwheel_new(uint64_t now_ms, uint32_t tick_ms, uint32_t nslots)
{
    mh_timerwheel_t *w = mh_xcalloc(1, sizeof(*w));
    uint64_t n = 1;
    while (n < nslots)
        n <<= 1;
    w->slots = mh_xmalloc(n * sizeof(*w->slots));
    for (uint64_t i = 0; i < n; i++)
        list_init(&w->slots[i]);
    w->mask = n - 1;
    w->tick_ms = tick_ms ? tick_ms : 1;
    w->cur = now_ms / w->tick_ms;
    return w;
}

void mh_timerwheel_free(mh_timerwheel_t *w)
{
    if (!w)
        return;
    free(w->slots);
    free(w);
}

void mh_timer_init(mh_timer_t *t, mh_timer_fire_fn cb, void *ud)
{
    t->next = t->prev = NULL;
    t->tick = 0;
    t->cb = cb;
    t->ud = ud;
}

int mh_timer_pending(const mh_timer_t *t)
{
    return t->next != NULL;
}

void mh_timerwheel_cancel(mh_timerwheel_t *w, mh_timer_t *t)
{
    if (!mh_timer_pending(t))
        return;
    list_unlink(t);
    w->count--;
}

void mh_timerwheel_add(mh_timerwheel_t *w, mh_timer_t *t, uint64_t at_ms)
{
    mh_timerwheel_cancel(w, t);
    uint64_t tick = at_ms / w->tick_ms + (at_ms % w->tick_ms != 0); /* round up: never early */
    if (tick <= w->cur)
        tick = w->cur + 1;
    t->tick = tick;
    list_push(&w->slots[tick & w->mask], t);
    w->count++;
}

/* Fires the timers of slot due at or before tick `upto`; the rest stay. */
static size_t sweep_slot(mh_timerwheel_t *w, mh_timer_t *slot, uint64_t upto)
{
    mh_timer_t due;
    size_t fired = 0;
    list_move(slot, &due);
    while (due.next != &due) {
        mh_timer_t *t = due.next;
        list_unlink(t);
        if (t->tick > upto) { /* a later revolution */
            list_push(slot, t);
            continue;
        }
        w->count--;
        fired++;
        t->cb(t, t->ud);
    }
    return fired;
}

size_t mh_timerwheel_advance(mh_timerwheel_t *w, uint64_t now_ms)
{
    uint64_t target = now_ms / w->tick_ms;
    size_t fired = 0;
    if (target <= w->cur)
        return 0;
    if (target - w->cur > w->mask) {
        /* a whole revolution or more passed (a stalled loop): one pass over every slot */
        w->cur = target;
        for (uint64_t i = 0; i <= w->mask; i++)
            fired += sweep_slot(w, &w->slots[i], target);
        return fired;
    }
    while (w->cur < target) {
        w->cur++;
        fired += sweep_slot(w, &w->slots[w->cur & w->mask], w->cur);
    }
    return fired;
}

size_t mh_timerwheel_count(const mh_timerwheel_t *w)
{
    return w->count;
}
