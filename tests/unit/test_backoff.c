/*
 * test_backoff: the reconnection delay (backoff.h): doubling from min to
 * max within +-20 %, capped, reset after a success, never in step for two
 * seeds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "msghub/backoff.h"

static void test_doubles_within_jitter_and_caps(void **state)
{
    mh_backoff_t b;
    mh_backoff_init(&b, 100, 5000, 42);
    unsigned base = 100;
    for (int i = 0; i < 12; i++) {
        unsigned d = mh_backoff_next(&b);
        assert_true(d >= base * 8 / 10 && d <= base * 12 / 10);
        assert_int_equal(b.attempts, (unsigned)i + 1);
        base = base * 2 > 5000 ? 5000 : base * 2;
    }
}

static void test_reset_starts_over(void **state)
{
    mh_backoff_t b;
    mh_backoff_init(&b, 100, 5000, 0); /* 0 is a valid seed too */
    for (int i = 0; i < 5; i++)
        mh_backoff_next(&b);
    mh_backoff_reset(&b);
    assert_int_equal(b.attempts, 0);
    unsigned d = mh_backoff_next(&b);
    assert_true(d >= 80 && d <= 120);
}

static void test_seeds_differ(void **state)
{
    mh_backoff_t a, b;
    mh_backoff_init(&a, 100, 5000, 1);
    mh_backoff_init(&b, 100, 5000, 2);
    int same = 0;
    for (int i = 0; i < 8; i++)
        same += mh_backoff_next(&a) == mh_backoff_next(&b);
    assert_true(same < 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubles_within_jitter_and_caps),
        cmocka_unit_test(test_reset_starts_over),
        cmocka_unit_test(test_seeds_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
