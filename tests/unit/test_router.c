/*
 * Unit tests of router: the local / offline / unknown split for one relay
 * with a fake session lookup, the last_id boundary, order preservation and
 * the accepted count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/router.h"

/* Fake registry: ids present in `ids` are connected, with session pointer &sessions[i]. */
typedef struct fake {
    const uint64_t *ids;
    size_t n;
    int sessions[16];
    size_t lookups;
    uint64_t looked_up[64];
} fake_t;

static void *lookup(void *ud, uint64_t id)
{
    fake_t *f = ud;
    f->looked_up[f->lookups++ % 64] = id;
    for (size_t i = 0; i < f->n; i++)
        if (f->ids[i] == id)
            return &f->sessions[i];
    return NULL;
}

static void test_split(void **state)
{
    const uint64_t online[] = {2, 5, 9};
    fake_t f = {online, 3, {0}, 0, {0}};
    const uint64_t ids[] = {1, 2, 3, 5, 9, 10, 11, 500};
    mh_route_plan_t plan;
    mh_router_plan_init(&plan, 8);
    mh_router_plan(ids, 8, 10, lookup, &f, &plan);

    assert_int_equal(plan.n_local, 3);
    assert_true(plan.local_ids[0] == 2 && plan.local_ids[1] == 5 && plan.local_ids[2] == 9);
    assert_ptr_equal(plan.local[0], &f.sessions[0]);
    assert_ptr_equal(plan.local[1], &f.sessions[1]);
    assert_ptr_equal(plan.local[2], &f.sessions[2]);
    assert_int_equal(plan.n_offline, 3); /* 10 = last_id is known */
    assert_true(plan.offline[0] == 1 && plan.offline[1] == 3 && plan.offline[2] == 10);
    assert_int_equal(plan.n_unknown, 2);
    assert_true(plan.unknown[0] == 11 && plan.unknown[1] == 500);
    assert_int_equal(mh_router_accepted(&plan), 6);
    /* unknown ids are never looked up */
    assert_int_equal(f.lookups, 6);
    for (size_t i = 0; i < f.lookups; i++)
        assert_true(f.looked_up[i] <= 10);
    mh_router_plan_free(&plan);
    assert_null(plan.local_ids);
    assert_null(plan.local);
    assert_null(plan.offline);
    assert_null(plan.unknown);
}

static void test_last_id_boundary(void **state)
{
    const uint64_t online[] = {7};
    fake_t f = {online, 1, {0}, 0, {0}};
    mh_route_plan_t plan;
    mh_router_plan_init(&plan, 3);

    const uint64_t ids[] = {6, 7, 8};
    mh_router_plan(ids, 3, 7, lookup, &f, &plan); /* 7 is the last id handed out */
    assert_int_equal(plan.n_local, 1);
    assert_true(plan.local_ids[0] == 7);
    assert_int_equal(plan.n_offline, 1);
    assert_true(plan.offline[0] == 6);
    assert_int_equal(plan.n_unknown, 1);
    assert_true(plan.unknown[0] == 8);

    /* one less: 7 becomes unknown even though a session claims it */
    mh_router_plan(ids, 3, 6, lookup, &f, &plan);
    assert_int_equal(plan.n_local, 0);
    assert_int_equal(plan.n_offline, 1);
    assert_int_equal(plan.n_unknown, 2);
    assert_true(plan.unknown[0] == 7 && plan.unknown[1] == 8);
    assert_int_equal(mh_router_accepted(&plan), 1);

    /* nothing handed out yet: everything is unknown */
    mh_router_plan(ids, 3, 0, lookup, &f, &plan);
    assert_int_equal(plan.n_unknown, 3);
    assert_int_equal(mh_router_accepted(&plan), 0);

    /* the top of the range */
    const uint64_t top[] = {UINT64_MAX - 1, UINT64_MAX};
    mh_router_plan(top, 2, UINT64_MAX - 1, lookup, &f, &plan);
    assert_int_equal(plan.n_offline, 1);
    assert_true(plan.offline[0] == UINT64_MAX - 1);
    assert_int_equal(plan.n_unknown, 1);
    assert_true(plan.unknown[0] == UINT64_MAX);
    mh_router_plan(top, 2, UINT64_MAX, lookup, &f, &plan);
    assert_int_equal(plan.n_offline, 2);
    assert_int_equal(plan.n_unknown, 0);
    mh_router_plan_free(&plan);
}

static void test_reuse_and_empty(void **state)
{
    const uint64_t online[] = {1, 2, 3};
    fake_t f = {online, 3, {0}, 0, {0}};
    mh_route_plan_t plan;
    mh_router_plan_init(&plan, 3);
    const uint64_t ids[] = {1, 2, 3};
    mh_router_plan(ids, 3, 3, lookup, &f, &plan);
    assert_int_equal(plan.n_local, 3);
    /* a second plan into the same arrays starts from zero counts */
    mh_router_plan(ids, 1, 3, lookup, &f, &plan);
    assert_int_equal(plan.n_local, 1);
    assert_int_equal(plan.n_offline, 0);
    assert_int_equal(plan.n_unknown, 0);
    mh_router_plan(NULL, 0, 3, lookup, &f, &plan);
    assert_int_equal(plan.n_local + plan.n_offline + plan.n_unknown, 0);
    mh_router_plan_free(&plan);

    mh_router_plan_init(&plan, 0); /* zero receivers still gives freeable arrays */
    mh_router_plan(NULL, 0, 3, lookup, &f, &plan);
    assert_int_equal(mh_router_accepted(&plan), 0);
    mh_router_plan_free(&plan);
}

static void test_all_offline_or_local(void **state)
{
    enum { N = 255 };
    uint64_t ids[N], on[16];
    for (size_t i = 0; i < N; i++)
        ids[i] = i + 1;
    for (size_t i = 0; i < 16; i++)
        on[i] = (i + 1) * 16; /* 16, 32, ..., 256 (the last one is unknown) */
    fake_t f = {on, 16, {0}, 0, {0}};
    mh_route_plan_t plan;
    mh_router_plan_init(&plan, N);
    mh_router_plan(ids, N, 250, lookup, &f, &plan);
    assert_int_equal(plan.n_local, 15);
    assert_int_equal(plan.n_unknown, 5);
    assert_int_equal(plan.n_offline, 250 - 15);
    for (size_t i = 0; i < plan.n_local; i++) {
        assert_true(plan.local_ids[i] == (i + 1) * 16);
        assert_ptr_equal(plan.local[i], &f.sessions[i]);
    }
    for (size_t i = 1; i < plan.n_offline; i++)
        assert_true(plan.offline[i - 1] < plan.offline[i]);
    assert_int_equal(mh_router_accepted(&plan), 250);
    mh_router_plan_free(&plan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_last_id_boundary),
        cmocka_unit_test(test_reuse_and_empty),
        cmocka_unit_test(test_all_offline_or_local),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
