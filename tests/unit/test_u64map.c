/*
 * Unit tests of u64map: put/get/replace/del, keys at the edges of the range,
 * 100k keys with growth, deletion in random orders that must keep every
 * other key reachable (backward-shift deletion), deletions inside probe
 * runs that wrap around the table, and iteration visiting each entry once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/u64map.h"

/* A value that is not a valid pointer to dereference but is distinct per key. */
static void *val(uint64_t k)
{
    return (void *)(uintptr_t)(k * 2 + 1);
}

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t xorshift(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void shuffle(uint64_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(xorshift() % i);
        uint64_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static void test_basic(void **state)
{
    mh_u64map_t *m = mh_u64map_new();
    assert_int_equal(mh_u64map_size(m), 0);
    assert_null(mh_u64map_get(m, 1));
    assert_null(mh_u64map_del(m, 1));

    int a, b, c;
    assert_null(mh_u64map_put(m, 1, &a));
    assert_null(mh_u64map_put(m, UINT64_MAX, &b));
    assert_null(mh_u64map_put(m, 1ULL << 63, &c));
    assert_int_equal(mh_u64map_size(m), 3);
    assert_ptr_equal(mh_u64map_get(m, 1), &a);
    assert_ptr_equal(mh_u64map_get(m, UINT64_MAX), &b);
    assert_ptr_equal(mh_u64map_get(m, 1ULL << 63), &c);
    assert_null(mh_u64map_get(m, 2));
    assert_null(mh_u64map_get(m, 0)); /* 0 is never a key */

    /* replace returns the old value and keeps the size */
    assert_ptr_equal(mh_u64map_put(m, 1, &c), &a);
    assert_ptr_equal(mh_u64map_get(m, 1), &c);
    assert_int_equal(mh_u64map_size(m), 3);

    assert_ptr_equal(mh_u64map_del(m, UINT64_MAX), &b);
    assert_null(mh_u64map_get(m, UINT64_MAX));
    assert_null(mh_u64map_del(m, UINT64_MAX)); /* already gone */
    assert_int_equal(mh_u64map_size(m), 2);
    assert_ptr_equal(mh_u64map_get(m, 1), &c);
    assert_ptr_equal(mh_u64map_get(m, 1ULL << 63), &c);

    /* re-insert after delete */
    assert_null(mh_u64map_put(m, UINT64_MAX, &a));
    assert_ptr_equal(mh_u64map_get(m, UINT64_MAX), &a);
    assert_int_equal(mh_u64map_size(m), 3);

    /* a NULL value is stored like any other (get cannot tell it apart from absent) */
    assert_null(mh_u64map_put(m, 77, NULL));
    assert_int_equal(mh_u64map_size(m), 4);
    mh_u64map_free(m);
    mh_u64map_free(NULL);
}

static void test_many_keys(void **state)
{
    enum { N = 100000 };
    mh_u64map_t *m = mh_u64map_new();
    uint64_t *keys = malloc(N * sizeof(*keys));
    /* sequential ids (the real pattern) and scattered 64-bit keys */
    for (size_t i = 0; i < N; i++)
        keys[i] = i % 2 ? i + 1 : (xorshift() | 1);
    for (size_t i = 0; i < N; i++) {
        assert_null(mh_u64map_put(m, keys[i], val(keys[i])));
        assert_int_equal(mh_u64map_size(m), i + 1);
    }
    for (size_t i = 0; i < N; i++)
        assert_ptr_equal(mh_u64map_get(m, keys[i]), val(keys[i]));
    /* keys never inserted are absent */
    for (uint64_t k = N + 10; k < N + 1000; k += 2)
        assert_null(mh_u64map_get(m, k));

    /* replacing all of them keeps the size */
    for (size_t i = 0; i < N; i++)
        assert_ptr_equal(mh_u64map_put(m, keys[i], val(keys[i] + 1)), val(keys[i]));
    assert_int_equal(mh_u64map_size(m), N);
    for (size_t i = 0; i < N; i++)
        assert_ptr_equal(mh_u64map_get(m, keys[i]), val(keys[i] + 1));
    free(keys);
    mh_u64map_free(m);
}

/* Deletes in a random order; after each batch every remaining key must still be found. */
static void delete_in_order(uint64_t *keys, size_t n, size_t check_every)
{
    mh_u64map_t *m = mh_u64map_new();
    for (size_t i = 0; i < n; i++)
        mh_u64map_put(m, keys[i], val(keys[i]));
    shuffle(keys, n);
    for (size_t i = 0; i < n; i++) {
        assert_ptr_equal(mh_u64map_del(m, keys[i]), val(keys[i]));
        assert_null(mh_u64map_get(m, keys[i]));
        assert_int_equal(mh_u64map_size(m), n - i - 1);
        if (i % check_every == 0 || n - i < 64)
            for (size_t j = i + 1; j < n; j++)
                if (mh_u64map_get(m, keys[j]) != val(keys[j]))
                    fail_msg("key %llu lost after deleting %zu keys", (unsigned long long)keys[j],
                             i + 1);
    }
    size_t cursor = 0;
    uint64_t k;
    assert_int_equal(mh_u64map_next(m, &cursor, &k, NULL), 0);
    mh_u64map_free(m);
}

static void test_delete_random_orders(void **state)
{
    /* small tables: full check after every delete, many orders */
    for (int round = 0; round < 200; round++) {
        uint64_t keys[40];
        for (size_t i = 0; i < 40; i++)
            keys[i] = round % 2 ? i + 1 : xorshift() | 1;
        delete_in_order(keys, 40, 1);
    }
    /* a larger table, checked every 97 deletes */
    enum { N = 5000 };
    uint64_t *keys = malloc(N * sizeof(*keys));
    for (size_t i = 0; i < N; i++)
        keys[i] = i + 1;
    delete_in_order(keys, N, 97);
    free(keys);
}

/* The map's hash (white box): used to build probe runs that wrap around the table end. */
static size_t home16(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & 15;
}

static void test_delete_wrapped_runs(void **state)
{
    /* 8 keys keep the first 16-slot table; homes 14, 15 and 0 make runs that wrap */
    uint64_t keys[8];
    size_t n = 0;
    const size_t homes[8] = {14, 14, 15, 15, 15, 0, 0, 1};
    for (size_t h = 0; h < 8; h++)
        for (uint64_t k = 1;; k++) {
            int dup = 0;
            for (size_t j = 0; j < n; j++)
                dup |= keys[j] == k;
            if (!dup && home16(k) == homes[h]) {
                keys[n++] = k;
                break;
            }
        }
    for (int round = 0; round < 500; round++) {
        uint64_t order[8];
        memcpy(order, keys, sizeof(order));
        shuffle(order, 8); /* insertion order varies too */
        mh_u64map_t *m = mh_u64map_new();
        for (size_t i = 0; i < 8; i++)
            mh_u64map_put(m, order[i], val(order[i]));
        shuffle(order, 8);
        for (size_t i = 0; i < 8; i++) {
            assert_ptr_equal(mh_u64map_del(m, order[i]), val(order[i]));
            for (size_t j = i + 1; j < 8; j++)
                assert_ptr_equal(mh_u64map_get(m, order[j]), val(order[j]));
            for (size_t j = 0; j <= i; j++)
                assert_null(mh_u64map_get(m, order[j]));
        }
        assert_int_equal(mh_u64map_size(m), 0);
        mh_u64map_free(m);
    }
}

/* Interleaved inserts and deletes against a reference set. */
static void test_churn(void **state)
{
    enum { RANGE = 3000 };
    mh_u64map_t *m = mh_u64map_new();
    static unsigned char present[RANGE + 1];
    memset(present, 0, sizeof(present));
    size_t size = 0;
    for (int op = 0; op < 200000; op++) {
        uint64_t k = xorshift() % RANGE + 1;
        if (xorshift() % 3) {
            void *prev = mh_u64map_put(m, k, val(k));
            assert_ptr_equal(prev, present[k] ? val(k) : NULL);
            size += !present[k];
            present[k] = 1;
        } else {
            void *prev = mh_u64map_del(m, k);
            assert_ptr_equal(prev, present[k] ? val(k) : NULL);
            size -= present[k];
            present[k] = 0;
        }
        assert_int_equal(mh_u64map_size(m), size);
    }
    for (uint64_t k = 1; k <= RANGE; k++)
        assert_ptr_equal(mh_u64map_get(m, k), present[k] ? val(k) : NULL);
    mh_u64map_free(m);
}

static void test_iteration(void **state)
{
    enum { N = 10000 };
    mh_u64map_t *m = mh_u64map_new();
    size_t cursor = 0;
    uint64_t k;
    void *v;
    assert_int_equal(mh_u64map_next(m, &cursor, &k, &v), 0);

    for (uint64_t i = 1; i <= N; i++)
        mh_u64map_put(m, i * 7919, val(i));
    for (uint64_t i = 1; i <= N; i += 3)
        mh_u64map_del(m, i * 7919);
    size_t expected = mh_u64map_size(m);

    static unsigned char seen[N + 1];
    memset(seen, 0, sizeof(seen));
    size_t visits = 0;
    cursor = 0;
    while (mh_u64map_next(m, &cursor, &k, &v)) {
        assert_int_equal(k % 7919, 0);
        uint64_t i = k / 7919;
        assert_true(i >= 1 && i <= N);
        assert_true((i - 1) % 3 != 0); /* deleted keys are not visited */
        assert_int_equal(seen[i], 0);  /* nor anything twice */
        seen[i] = 1;
        assert_ptr_equal(v, val(i));
        visits++;
    }
    assert_int_equal(visits, expected);
    /* stays at the end */
    assert_int_equal(mh_u64map_next(m, &cursor, &k, &v), 0);
    /* value may be NULL when only keys are wanted */
    cursor = 0;
    assert_int_equal(mh_u64map_next(m, &cursor, &k, NULL), 1);
    mh_u64map_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_delete_random_orders),
        cmocka_unit_test(test_delete_wrapped_runs),
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_iteration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
