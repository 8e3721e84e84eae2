/*
 * Unit tests of timerwheel: expiry order across ticks, never firing early,
 * cancel and re-arm (also of timers already due), 100k timers with random
 * deadlines checked against a brute-force model, deadlines several
 * revolutions away (slot wrap-around), a jump of more than one revolution,
 * and callbacks that re-arm themselves or cancel / re-arm other timers due
 * in the same advance.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/timerwheel.h"

#define T0 1000000000000ull /* an arbitrary wall-clock-like start, ms */
#define TICK 100
#define SLOTS 64
#define LOG_MAX 1024

typedef struct rec {
    mh_timer_t t;
    int id;
    uint64_t deadline;
    uint64_t fired_at; /* 0 = not fired */
    int fires;
} rec_t;

static int fire_log[LOG_MAX];
static size_t nlog;
static uint64_t clock_now;

static void on_fire(mh_timer_t *t, void *ud)
{
    rec_t *r = ud;
    assert_ptr_equal(&r->t, t);
    assert_false(mh_timer_pending(t));
    r->fires++;
    r->fired_at = clock_now;
    if (nlog < LOG_MAX)
        fire_log[nlog++] = r->id;
}

static void rec_init(rec_t *r, int id, mh_timer_fire_fn cb)
{
    memset(r, 0, sizeof(*r));
    r->id = id;
    mh_timer_init(&r->t, cb, r);
}

static size_t advance(mh_timerwheel_t *w, uint64_t now)
{
    clock_now = now;
    return mh_timerwheel_advance(w, now);
}

static int setup(void **state)
{
    nlog = 0;
    clock_now = T0;
    *state = mh_timerwheel_new(T0, TICK, SLOTS);
    return 0;
}

static int teardown(void **state)
{
    mh_timerwheel_free(*state);
    return 0;
}

static void test_order_and_never_early(void **state)
{
    mh_timerwheel_t *w = *state;
    rec_t r[5];
    uint64_t at[5] = {T0 + 950, T0 + 120, T0 + 2000, T0 + 121, T0 + 600};
    for (int i = 0; i < 5; i++) {
        rec_init(&r[i], i, on_fire);
        mh_timerwheel_add(w, &r[i].t, at[i]);
    }
    assert_int_equal(mh_timerwheel_count(w), 5);
    for (uint64_t now = T0; now <= T0 + 2100; now += 7) {
        advance(w, now);
        for (int i = 0; i < 5; i++)
            if (r[i].fires)
                assert_true(r[i].fired_at >= at[i]); /* never early */
            else
                assert_true(now < at[i] + TICK); /* at most one tick late */
    }
    /* 120 and 121 share a tick: armed order within it */
    int want[5] = {1, 3, 4, 0, 2};
    assert_int_equal(nlog, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(fire_log[i], want[i]);
    assert_int_equal(mh_timerwheel_count(w), 0);
}

static void test_cancel(void **state)
{
    mh_timerwheel_t *w = *state;
    rec_t a, b;
    rec_init(&a, 1, on_fire);
    rec_init(&b, 2, on_fire);
    mh_timerwheel_add(w, &a.t, T0 + 500);
    mh_timerwheel_add(w, &b.t, T0 + 500);
    mh_timerwheel_cancel(w, &a.t);
    mh_timerwheel_cancel(w, &a.t); /* twice: a no-op */
    assert_false(mh_timer_pending(&a.t));
    assert_true(mh_timer_pending(&b.t));
    assert_int_equal(advance(w, T0 + 10000), 1);
    assert_int_equal(a.fires, 0);
    assert_int_equal(b.fires, 1);
    mh_timerwheel_cancel(w, &b.t); /* after firing: a no-op */
    assert_int_equal(mh_timerwheel_count(w), 0);
}

static void test_rearm(void **state)
{
    mh_timerwheel_t *w = *state;
    rec_t a;
    rec_init(&a, 1, on_fire);
    mh_timerwheel_add(w, &a.t, T0 + 300);
    mh_timerwheel_add(w, &a.t, T0 + 5000); /* pushed back */
    assert_int_equal(mh_timerwheel_count(w), 1);
    assert_int_equal(advance(w, T0 + 4900), 0);
    mh_timerwheel_add(w, &a.t, T0 + 4950); /* pulled in */
    assert_int_equal(advance(w, T0 + 4949), 0);
    assert_int_equal(advance(w, T0 + 5000), 1);
    assert_int_equal(a.fires, 1);
    /* a deadline already passed fires at the next tick, not never */
    mh_timerwheel_add(w, &a.t, T0);
    assert_int_equal(advance(w, T0 + 5000), 0);
    assert_int_equal(advance(w, T0 + 5100), 1);
    assert_int_equal(a.fires, 2);
}

static void test_wraparound(void **state)
{
    mh_timerwheel_t *w = *state;
    const uint64_t rev = (uint64_t)TICK * SLOTS;
    rec_t r[4];
    uint64_t at[4] = {T0 + 3 * rev + 250, T0 + 250, T0 + rev + 250, T0 + 7 * rev};
    for (int i = 0; i < 4; i++) {
        rec_init(&r[i], i, on_fire);
        mh_timerwheel_add(w, &r[i].t, at[i]); /* 0, 1, 2 share a slot */
    }
    for (uint64_t now = T0; now <= T0 + 8 * rev; now += TICK / 2) {
        advance(w, now);
        for (int i = 0; i < 4; i++)
            assert_int_equal(r[i].fires, now >= at[i] + TICK ? 1 : r[i].fires);
    }
    int want[4] = {1, 2, 0, 3};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].fires, 1);
        assert_true(r[i].fired_at >= at[i]);
        assert_int_equal(fire_log[i], want[i]);
    }
}

static void test_jump_past_a_revolution(void **state)
{
    mh_timerwheel_t *w = *state;
    const uint64_t rev = (uint64_t)TICK * SLOTS;
    rec_t r[3];
    uint64_t at[3] = {T0 + 100, T0 + rev / 2, T0 + 10 * rev};
    for (int i = 0; i < 3; i++) {
        rec_init(&r[i], i, on_fire);
        mh_timerwheel_add(w, &r[i].t, at[i]);
    }
    assert_int_equal(advance(w, T0 + 3 * rev), 2); /* a stalled loop */
    assert_int_equal(r[2].fires, 0);
    assert_int_equal(advance(w, T0 + 10 * rev - TICK), 0);
    assert_int_equal(advance(w, T0 + 10 * rev), 1);
}

/* ---- many timers against a brute-force model ---- */

static uint64_t rng = 88172645463325252ull;
static uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define MANY 100000

static void test_many(void **state)
{
    mh_timerwheel_t *w = *state;
    rec_t *r = calloc(MANY, sizeof(*r));
    const uint64_t span = (uint64_t)TICK * SLOTS * 5; /* five revolutions */
    for (int i = 0; i < MANY; i++) {
        rec_init(&r[i], i, on_fire);
        r[i].deadline = T0 + xorshift() % span;
        mh_timerwheel_add(w, &r[i].t, r[i].deadline);
    }
    for (int i = 0; i < MANY; i += 3) /* cancel a third, re-arm a third */
        mh_timerwheel_cancel(w, &r[i].t);
    for (int i = 1; i < MANY; i += 3) {
        r[i].deadline = T0 + xorshift() % span;
        mh_timerwheel_add(w, &r[i].t, r[i].deadline);
    }
    size_t expect = MANY - (MANY + 2) / 3, total = 0;
    assert_int_equal(mh_timerwheel_count(w), expect);
    for (uint64_t now = T0; now <= T0 + span + TICK; now += 37)
        total += advance(w, now);
    assert_int_equal(total, expect);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(r[i].fires, i % 3 == 0 ? 0 : 1);
        if (r[i].fires)
            assert_true(r[i].fired_at >= r[i].deadline &&
                        r[i].fired_at < r[i].deadline + TICK + 37);
    }
    free(r);
}

/* ---- callbacks that change the wheel while it fires ---- */

static mh_timerwheel_t *cb_wheel;
static rec_t *victim, *moved;

/* Fires, then cancels victim and pushes moved 1 s out (both due in this same tick). */
static void on_fire_meddle(mh_timer_t *t, void *ud)
{
    on_fire(t, ud);
    mh_timerwheel_cancel(cb_wheel, &victim->t);
    mh_timerwheel_add(cb_wheel, &moved->t, clock_now + 1000);
}

/* Re-arms itself for "now" up to 3 times: each must land on a later tick. */
static void on_fire_again(mh_timer_t *t, void *ud)
{
    rec_t *r = ud;
    on_fire(t, ud);
    if (r->fires < 3)
        mh_timerwheel_add(cb_wheel, t, clock_now);
}

static void test_callbacks_change_the_wheel(void **state)
{
    mh_timerwheel_t *w = cb_wheel = *state;
    rec_t a, b, c, d, self;
    rec_init(&a, 1, on_fire_meddle);
    rec_init(&b, 2, on_fire);
    rec_init(&c, 3, on_fire);
    rec_init(&d, 4, on_fire);
    rec_init(&self, 5, on_fire_again);
    victim = &b;
    moved = &c;
    mh_timerwheel_add(w, &a.t, T0 + 200); /* all in one tick, a first */
    mh_timerwheel_add(w, &b.t, T0 + 200);
    mh_timerwheel_add(w, &c.t, T0 + 200);
    mh_timerwheel_add(w, &d.t, T0 + 200);
    mh_timerwheel_add(w, &self.t, T0 + 200);
    assert_int_equal(advance(w, T0 + 200), 3); /* a, d, self */
    assert_int_equal(a.fires, 1);
    assert_int_equal(b.fires, 0);
    assert_int_equal(c.fires, 0);
    assert_int_equal(d.fires, 1);
    assert_int_equal(self.fires, 1);
    assert_false(mh_timer_pending(&b.t));
    assert_true(mh_timer_pending(&c.t));
    /* self re-armed for now: once per later tick, even inside one long advance */
    assert_int_equal(advance(w, T0 + 500), 2);
    assert_int_equal(self.fires, 3);
    assert_false(mh_timer_pending(&self.t));
    assert_int_equal(advance(w, T0 + 1199), 0);
    assert_int_equal(advance(w, T0 + 1200), 1);
    assert_int_equal(c.fires, 1);
    assert_int_equal(mh_timerwheel_count(w), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_never_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rearm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wraparound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jump_past_a_revolution, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callbacks_change_the_wheel, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
