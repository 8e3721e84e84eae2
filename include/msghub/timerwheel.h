/*
 * timerwheel: a hashed timing wheel for per-connection deadlines (handshake,
 * ping interval, pong timeout, idle timeout). Adding, re-arming and
 * cancelling a timer are O(1); advancing costs O(ticks passed + timers in
 * the slots visited). A deadline further away than one revolution stays in
 * its slot and is skipped until its tick comes.
 *
 * Pure: no libuv, no libwebsockets. The owner drives it with
 * mh_timerwheel_advance(now) from one periodic timer (server.c: one
 * uv_timer_t for every connection of the hub).
 *
 * Resolution: a timer fires at the first advance whose tick is at or after
 * its deadline's tick, so never early and at most one tick plus the driving
 * timer's lateness late. Within one tick, timers fire in the order they were
 * armed.
 *
 * Ownership: the caller owns every mh_timer_t (typically embedded in a
 * connection struct) and must cancel it before freeing it; the wheel owns
 * only its slot array. Callbacks may add, re-arm and cancel any timer,
 * including the one firing and others due in the same advance.
 */
#ifndef MSGHUB_TIMERWHEEL_H
#define MSGHUB_TIMERWHEEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct mh_timer mh_timer_t;
typedef struct mh_timerwheel mh_timerwheel_t;

/* Called when t expires; t is no longer pending when this runs. */
typedef void (*mh_timer_fire_fn)(mh_timer_t *t, void *ud);

struct mh_timer {
    mh_timer_t *next, *prev; /* slot list links; NULL when not pending */
    uint64_t tick;           /* the tick it is due at */
    mh_timer_fire_fn cb;
    void *ud;
};

/*
 * A wheel of nslots slots (rounded up to a power of two) of tick_ms each,
 * starting at now_ms. Free with mh_timerwheel_free (pending timers are only
 * forgotten, not called).
 */
mh_timerwheel_t *mh_timerwheel_new(uint64_t now_ms, uint32_t tick_ms, uint32_t nslots);
void mh_timerwheel_free(mh_timerwheel_t *w);

/* Prepares t (not pending) with its callback; call once before any add. */
void mh_timer_init(mh_timer_t *t, mh_timer_fire_fn cb, void *ud);

/* Arms t to fire at or after at_ms; re-arms it if it is pending. */
void mh_timerwheel_add(mh_timerwheel_t *w, mh_timer_t *t, uint64_t at_ms);

/* Disarms t; a no-op when it is not pending. */
void mh_timerwheel_cancel(mh_timerwheel_t *w, mh_timer_t *t);

/* 1 while t is armed and has not fired. */
int mh_timer_pending(const mh_timer_t *t);

/* Fires every timer due at or before now_ms, oldest tick first; returns how many fired. */
size_t mh_timerwheel_advance(mh_timerwheel_t *w, uint64_t now_ms);

/* Number of pending timers. */
size_t mh_timerwheel_count(const mh_timerwheel_t *w);

#endif
