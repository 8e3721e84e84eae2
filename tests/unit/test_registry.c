/*
 * Unit tests of registry: the standalone id allocator and last_id, holders
 * by id with take-over and guarded removal, the sorted id listing with an
 * exclusion, and iteration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/registry.h"

static void test_ids(void **state)
{
    mh_registry_t *r = mh_registry_new();
    assert_true(mh_registry_last_id(r) == 0);
    assert_true(mh_registry_alloc_id(r) == 1);
    assert_true(mh_registry_alloc_id(r) == 2);
    assert_true(mh_registry_last_id(r) == 2);

    /* a token proves an id was handed out: last_id rises, never falls */
    mh_registry_note_id(r, 10);
    assert_true(mh_registry_last_id(r) == 10);
    mh_registry_note_id(r, 5);
    assert_true(mh_registry_last_id(r) == 10);
    assert_true(mh_registry_alloc_id(r) == 11); /* no id is handed out twice */
    assert_true(mh_registry_last_id(r) == 11);
    mh_registry_note_id(r, 11);
    assert_true(mh_registry_last_id(r) == 11);
    mh_registry_note_id(r, UINT64_MAX - 1);
    assert_true(mh_registry_alloc_id(r) == UINT64_MAX);
    mh_registry_free(r);
    mh_registry_free(NULL);
}

static void test_holders(void **state)
{
    mh_registry_t *r = mh_registry_new();
    int s1, s2, s3;
    assert_null(mh_registry_get(r, 1));
    assert_int_equal(mh_registry_count(r), 0);

    assert_null(mh_registry_put(r, 1, &s1));
    assert_null(mh_registry_put(r, 2, &s2));
    assert_ptr_equal(mh_registry_get(r, 1), &s1);
    assert_ptr_equal(mh_registry_get(r, 2), &s2);
    assert_int_equal(mh_registry_count(r), 2);

    /* take-over: the new session holds the id, the old one is returned */
    assert_ptr_equal(mh_registry_put(r, 1, &s3), &s1);
    assert_ptr_equal(mh_registry_get(r, 1), &s3);
    assert_int_equal(mh_registry_count(r), 2);

    /* the old holder going away later must not remove the new one */
    assert_int_equal(mh_registry_remove(r, 1, &s1), 0);
    assert_ptr_equal(mh_registry_get(r, 1), &s3);
    assert_int_equal(mh_registry_remove(r, 1, &s3), 1);
    assert_null(mh_registry_get(r, 1));
    assert_int_equal(mh_registry_count(r), 1);
    assert_int_equal(mh_registry_remove(r, 1, &s3), 0); /* already removed */

    /* nothing is removed for an id nobody holds, whatever session is named */
    assert_int_equal(mh_registry_remove(r, 99, &s2), 0);
    assert_int_equal(mh_registry_remove(r, 99, NULL), 0);
    assert_int_equal(mh_registry_remove(r, 2, NULL), 0);
    assert_ptr_equal(mh_registry_get(r, 2), &s2);
    assert_int_equal(mh_registry_count(r), 1);
    mh_registry_free(r); /* sessions are borrowed: nothing of theirs is freed */
}

static void test_list(void **state)
{
    mh_registry_t *r = mh_registry_new();
    uint64_t *ids = NULL;
    assert_int_equal(mh_registry_ids(r, 0, &ids), 0);
    assert_non_null(ids);
    free(ids);

    int s;
    const uint64_t put[] = {19, 3, 7, UINT64_MAX, 1000000, 1};
    for (size_t i = 0; i < 6; i++)
        mh_registry_put(r, put[i], &s);

    size_t n = mh_registry_ids(r, 0, &ids);
    assert_int_equal(n, 6);
    const uint64_t all[] = {1, 3, 7, 19, 1000000, UINT64_MAX};
    for (size_t i = 0; i < n; i++)
        assert_true(ids[i] == all[i]);
    free(ids);

    n = mh_registry_ids(r, 7, &ids);
    assert_int_equal(n, 5);
    const uint64_t but7[] = {1, 3, 19, 1000000, UINT64_MAX};
    for (size_t i = 0; i < n; i++)
        assert_true(ids[i] == but7[i]);
    free(ids);

    n = mh_registry_ids(r, 12345, &ids); /* excluding someone absent changes nothing */
    assert_int_equal(n, 6);
    free(ids);

    /* the only connected id asking for the list gets an empty one */
    mh_registry_t *one = mh_registry_new();
    mh_registry_put(one, 4, &s);
    assert_int_equal(mh_registry_ids(one, 4, &ids), 0);
    free(ids);
    mh_registry_free(one);

    /* many ids come back sorted */
    for (uint64_t i = 5000; i > 0; i--)
        mh_registry_put(r, i * 31 + 100, &s);
    n = mh_registry_ids(r, 0, &ids);
    assert_int_equal(n, mh_registry_count(r));
    for (size_t i = 1; i < n; i++)
        assert_true(ids[i - 1] < ids[i]);
    free(ids);
    mh_registry_free(r);
}

static void test_iteration(void **state)
{
    mh_registry_t *r = mh_registry_new();
    int sess[50];
    for (uint64_t i = 1; i <= 50; i++)
        mh_registry_put(r, i, &sess[i - 1]);
    mh_registry_remove(r, 10, &sess[9]);
    unsigned char seen[51] = {0};
    size_t cursor = 0, visits = 0;
    uint64_t id;
    void *s;
    while (mh_registry_next(r, &cursor, &id, &s)) {
        assert_true(id >= 1 && id <= 50 && id != 10);
        assert_int_equal(seen[id], 0);
        seen[id] = 1;
        assert_ptr_equal(s, &sess[id - 1]);
        visits++;
    }
    assert_int_equal(visits, 49);
    mh_registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_holders),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_iteration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
