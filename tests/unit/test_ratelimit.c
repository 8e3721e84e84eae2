/*
 * Unit tests of ratelimit: the burst at start, refill with injected time
 * (exact at token boundaries, capped at the burst), time that does not
 * move or goes back, fractional rates, and rate <= 0 disabling the limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "msghub/ratelimit.h"

#define T0 1000000000ULL /* an arbitrary monotonic start, in microseconds */

static int take_n(mh_rate_t *r, int n, uint64_t now)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += mh_rate_take(r, now);
    return ok;
}

static void test_burst(void **state)
{
    mh_rate_t r;
    mh_rate_init(&r, 200, 400, T0);
    /* the full burst at one instant, then nothing */
    assert_int_equal(take_n(&r, 400, T0), 400);
    assert_int_equal(mh_rate_take(&r, T0), 0);
    assert_int_equal(take_n(&r, 10, T0), 0);
    /* refused takes consume nothing: 5 ms later exactly one token (200/s) */
    assert_int_equal(mh_rate_take(&r, T0 + 4999), 0);
    assert_int_equal(mh_rate_take(&r, T0 + 5000), 1);
    assert_int_equal(mh_rate_take(&r, T0 + 5000), 0);
}

static void test_refill(void **state)
{
    mh_rate_t r;
    mh_rate_init(&r, 10, 5, T0); /* one token per 100 ms */
    assert_int_equal(take_n(&r, 5, T0), 5);
    assert_int_equal(mh_rate_take(&r, T0 + 50000), 0);
    assert_int_equal(mh_rate_take(&r, T0 + 100000), 1); /* the half token above was kept */
    assert_int_equal(mh_rate_take(&r, T0 + 100000), 0);
    /* 350 ms: 3.5 tokens */
    assert_int_equal(take_n(&r, 10, T0 + 450000), 3);
    assert_int_equal(mh_rate_take(&r, T0 + 500000), 1); /* 0.5 + 0.5 */
    /* a long pause refills only up to the burst */
    assert_int_equal(take_n(&r, 100, T0 + 3600000000ULL), 5);

    /* steady sending at exactly the rate is always allowed */
    mh_rate_init(&r, 200, 1, T0);
    for (uint64_t i = 0; i < 1000; i++)
        assert_int_equal(mh_rate_take(&r, T0 + i * 5000), 1);
    /* twice the rate: about half refused */
    mh_rate_init(&r, 200, 1, T0);
    int ok = 0;
    for (uint64_t i = 0; i < 1000; i++)
        ok += mh_rate_take(&r, T0 + i * 2500);
    assert_in_range(ok, 499, 501);
}

static void test_clock_oddities(void **state)
{
    mh_rate_t r;
    mh_rate_init(&r, 100, 2, T0);
    assert_int_equal(take_n(&r, 2, T0), 2);
    /* time going back gives no tokens and does not break later refills */
    assert_int_equal(mh_rate_take(&r, T0 - 500000), 0);
    assert_int_equal(mh_rate_take(&r, T0 + 9999), 0);
    assert_int_equal(mh_rate_take(&r, T0 + 10000), 1);

    /* fractional rates: 0.5/s gives one token every 2 s */
    mh_rate_init(&r, 0.5, 1, T0);
    assert_int_equal(mh_rate_take(&r, T0), 1);
    assert_int_equal(mh_rate_take(&r, T0 + 1999999), 0);
    assert_int_equal(mh_rate_take(&r, T0 + 2000000), 1);

    /* a burst below one still allows one request */
    mh_rate_init(&r, 100, 0, T0);
    assert_int_equal(mh_rate_take(&r, T0), 1);
    assert_int_equal(mh_rate_take(&r, T0), 0);
}

static void test_disabled(void **state)
{
    const double rates[] = {0, -1, -1000};
    for (size_t k = 0; k < 3; k++) {
        mh_rate_t r;
        mh_rate_init(&r, rates[k], 1, T0);
        assert_int_equal(take_n(&r, 100000, T0), 100000);
        assert_int_equal(take_n(&r, 10, 0), 10);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst),
        cmocka_unit_test(test_refill),
        cmocka_unit_test(test_clock_oddities),
        cmocka_unit_test(test_disabled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
