/*
 * Unit tests of inbox_mem: FIFO per id, the count cap dropping the oldest
 * (and reporting how many), TTL expiry on pop and on sweep with injected
 * times, push_front ordering and its exemption from the cap, and the
 * reference counts of stored frames (back to 1 once the inbox lets go).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/inbox_mem.h"

#define TTL 1000u

static mh_frame_t *text_frame(const char *s)
{
    return mh_frame_new(s, strlen(s));
}

/* Pops one frame for id at now and checks its text; the popped reference is dropped. */
static void expect_pop(mh_inbox_mem_t *ib, uint64_t id, uint64_t now, const char *want,
                       size_t want_dropped)
{
    size_t dropped = 0;
    mh_frame_t *f = mh_inbox_mem_pop(ib, id, now, &dropped);
    assert_int_equal(dropped, want_dropped);
    if (!want) {
        assert_null(f);
        return;
    }
    assert_non_null(f);
    assert_int_equal(f->len, strlen(want));
    assert_memory_equal(mh_frame_data(f), want, f->len);
    mh_frame_unref(f);
}

static void test_fifo_and_refs(void **state)
{
    mh_inbox_mem_t *ib = mh_inbox_mem_new(100, TTL);
    mh_frame_t *a = text_frame("a"), *b = text_frame("b"), *c = text_frame("c");
    assert_int_equal(mh_inbox_mem_count(ib, 7), 0);
    assert_int_equal(mh_inbox_mem_push(ib, 7, a, 0), 0);
    assert_int_equal(mh_inbox_mem_push(ib, 7, b, 1), 0);
    assert_int_equal(mh_inbox_mem_push(ib, 8, a, 2), 0); /* one frame shared by two ids */
    assert_int_equal(mh_inbox_mem_push(ib, 7, c, 3), 0);
    assert_int_equal(a->refs, 3);
    assert_int_equal(b->refs, 2);
    assert_int_equal(mh_inbox_mem_count(ib, 7), 3);
    assert_int_equal(mh_inbox_mem_count(ib, 8), 1);
    assert_int_equal(mh_inbox_mem_count(ib, 9), 0);

    /* pop hands the inbox's reference to the caller */
    mh_frame_t *f = mh_inbox_mem_pop(ib, 7, 10, NULL);
    assert_ptr_equal(f, a);
    assert_int_equal(a->refs, 3);
    mh_frame_unref(f);
    assert_int_equal(a->refs, 2);
    assert_int_equal(mh_inbox_mem_count(ib, 7), 2);

    expect_pop(ib, 7, 10, "b", 0);
    expect_pop(ib, 7, 10, "c", 0);
    expect_pop(ib, 7, 10, NULL, 0);
    assert_int_equal(mh_inbox_mem_count(ib, 7), 0);
    assert_int_equal(b->refs, 1);
    assert_int_equal(c->refs, 1);
    assert_int_equal(mh_inbox_mem_count(ib, 8), 1); /* other ids untouched */

    /* free drops what is still stored */
    mh_inbox_mem_push(ib, 9, b, 10);
    mh_inbox_mem_push(ib, 9, b, 11);
    assert_int_equal(b->refs, 3);
    mh_inbox_mem_free(ib);
    assert_int_equal(a->refs, 1);
    assert_int_equal(b->refs, 1);
    assert_int_equal(c->refs, 1);
    mh_frame_unref(a);
    mh_frame_unref(b);
    mh_frame_unref(c);
    mh_inbox_mem_free(NULL);
}

static void test_many_in_order(void **state)
{
    enum { N = 5000 };
    mh_inbox_mem_t *ib = mh_inbox_mem_new(N, 0);
    for (size_t i = 0; i < N; i++) {
        char t[16];
        snprintf(t, sizeof(t), "m%zu", i);
        mh_frame_t *f = text_frame(t);
        assert_int_equal(mh_inbox_mem_push(ib, 1, f, i), 0);
        mh_frame_unref(f);
        if (i % 3 == 0) { /* interleave pops so the ring wraps while it grows */
            char w[16];
            snprintf(w, sizeof(w), "m%zu", i / 3);
            expect_pop(ib, 1, i, w, 0);
        }
    }
    for (size_t i = (N + 2) / 3; i < N; i++) {
        char w[16];
        snprintf(w, sizeof(w), "m%zu", i);
        expect_pop(ib, 1, N, w, 0);
    }
    expect_pop(ib, 1, N, NULL, 0);
    mh_inbox_mem_free(ib);
}

static void test_cap_drops_oldest(void **state)
{
    mh_inbox_mem_t *ib = mh_inbox_mem_new(3, TTL);
    mh_frame_t *f[6];
    const char *names[6] = {"1", "2", "3", "4", "5", "6"};
    for (size_t i = 0; i < 6; i++)
        f[i] = text_frame(names[i]);
    assert_int_equal(mh_inbox_mem_push(ib, 5, f[0], 0), 0);
    assert_int_equal(mh_inbox_mem_push(ib, 5, f[1], 0), 0);
    assert_int_equal(mh_inbox_mem_push(ib, 5, f[2], 0), 0);
    assert_int_equal(mh_inbox_mem_count(ib, 5), 3);
    assert_int_equal(mh_inbox_mem_push(ib, 5, f[3], 0), 1);
    assert_int_equal(f[0]->refs, 1); /* the dropped frame's reference is released at once */
    assert_int_equal(mh_inbox_mem_count(ib, 5), 3);
    assert_int_equal(mh_inbox_mem_push(ib, 5, f[4], 0), 1);
    assert_int_equal(f[1]->refs, 1);
    /* the cap is per id */
    assert_int_equal(mh_inbox_mem_push(ib, 6, f[5], 0), 0);
    expect_pop(ib, 5, 1, "3", 0);
    expect_pop(ib, 5, 1, "4", 0);
    expect_pop(ib, 5, 1, "5", 0);
    expect_pop(ib, 5, 1, NULL, 0);
    expect_pop(ib, 6, 1, "6", 0);
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(f[i]->refs, 1);
        mh_frame_unref(f[i]);
    }
    mh_inbox_mem_free(ib);
}

static void test_ttl_on_pop(void **state)
{
    mh_inbox_mem_t *ib = mh_inbox_mem_new(100, TTL);
    mh_frame_t *a = text_frame("a"), *b = text_frame("b"), *c = text_frame("c");
    mh_inbox_mem_push(ib, 1, a, 0);
    mh_inbox_mem_push(ib, 1, b, 500);
    mh_inbox_mem_push(ib, 1, c, 900);
    /* an entry lives for TTL ms: at stored + TTL - 1 it is still there */
    expect_pop(ib, 1, TTL - 1, "a", 0);
    /* at 1500, b (stored at 500) has just expired; c has not */
    assert_int_equal(mh_inbox_mem_count(ib, 1), 2);
    expect_pop(ib, 1, 500 + TTL, "c", 1);
    assert_int_equal(b->refs, 1);
    assert_int_equal(mh_inbox_mem_count(ib, 1), 0);

    /* all expired: nothing returned, every one counted */
    mh_inbox_mem_push(ib, 2, a, 100);
    mh_inbox_mem_push(ib, 2, b, 200);
    mh_inbox_mem_push(ib, 2, c, 300);
    size_t dropped = 5; /* added to, not overwritten */
    assert_null(mh_inbox_mem_pop(ib, 2, 5000, &dropped));
    assert_int_equal(dropped, 8);
    assert_int_equal(mh_inbox_mem_count(ib, 2), 0);
    /* a NULL counter is allowed */
    mh_inbox_mem_push(ib, 3, a, 0);
    assert_null(mh_inbox_mem_pop(ib, 3, TTL, NULL));
    assert_int_equal(a->refs, 1);
    assert_int_equal(b->refs, 1);
    assert_int_equal(c->refs, 1);
    mh_frame_unref(a);
    mh_frame_unref(b);
    mh_frame_unref(c);
    mh_inbox_mem_free(ib);

    /* TTL 0: nothing expires */
    ib = mh_inbox_mem_new(10, 0);
    a = text_frame("old");
    mh_inbox_mem_push(ib, 1, a, 0);
    assert_int_equal(mh_inbox_mem_expire(ib, UINT64_MAX / 2), 0);
    expect_pop(ib, 1, UINT64_MAX / 2, "old", 0);
    mh_frame_unref(a);
    mh_inbox_mem_free(ib);
}

static void test_ttl_sweep(void **state)
{
    mh_inbox_mem_t *ib = mh_inbox_mem_new(100, TTL);
    mh_frame_t *f = text_frame("x");
    for (uint64_t id = 1; id <= 50; id++)
        for (uint64_t t = 0; t < 10; t++)
            mh_inbox_mem_push(ib, id, f, id * 10 + t); /* id n stored from 10n to 10n+9 */
    assert_int_equal(f->refs, 501);
    assert_int_equal(mh_inbox_mem_expire(ib, TTL + 9), 0 + 0); /* nothing before 10 + TTL */
    assert_int_equal(mh_inbox_mem_expire(ib, TTL + 10), 1);    /* id 1's first */
    assert_int_equal(mh_inbox_mem_count(ib, 1), 9);
    assert_int_equal(mh_inbox_mem_expire(ib, TTL + 10), 0); /* nothing twice */
    /* by TTL + 255 everything stored up to 255 is gone: ids 1..24 fully, id 25 up to 255 */
    assert_int_equal(mh_inbox_mem_expire(ib, TTL + 255), 245);
    for (uint64_t id = 1; id <= 24; id++)
        assert_int_equal(mh_inbox_mem_count(ib, id), 0);
    assert_int_equal(mh_inbox_mem_count(ib, 25), 4); /* 256..259 left */
    assert_int_equal(mh_inbox_mem_count(ib, 26), 10);
    assert_int_equal(f->refs, 1 + 254); /* 500 stored, 246 dropped */
    /* what is left still pops in order, expired checks applied */
    size_t dropped = 0;
    mh_frame_t *g = mh_inbox_mem_pop(ib, 25, TTL + 257, &dropped);
    assert_ptr_equal(g, f);
    assert_int_equal(dropped, 2); /* 256 and 257 expired, 258 returned */
    mh_frame_unref(g);
    assert_int_equal(mh_inbox_mem_count(ib, 25), 1);
    /* a sweep far in the future empties everything */
    assert_int_equal(mh_inbox_mem_expire(ib, 1000000), 1 + 25 * 10);
    for (uint64_t id = 1; id <= 50; id++)
        assert_int_equal(mh_inbox_mem_count(ib, id), 0);
    assert_int_equal(f->refs, 1);
    /* the inbox still works after being emptied */
    mh_inbox_mem_push(ib, 3, f, 2000000);
    assert_int_equal(mh_inbox_mem_count(ib, 3), 1);
    mh_inbox_mem_free(ib);
    assert_int_equal(f->refs, 1);
    mh_frame_unref(f);
}

static void test_push_front(void **state)
{
    mh_inbox_mem_t *ib = mh_inbox_mem_new(2, TTL);
    mh_frame_t *a = text_frame("a"), *b = text_frame("b"), *x = text_frame("x"),
               *y = text_frame("y"), *c = text_frame("c");
    /* onto an empty id */
    mh_inbox_mem_push_front(ib, 4, x, 0);
    assert_int_equal(x->refs, 2);
    assert_int_equal(mh_inbox_mem_count(ib, 4), 1);
    expect_pop(ib, 4, 1, "x", 0);

    mh_inbox_mem_push(ib, 4, a, 10);
    mh_inbox_mem_push(ib, 4, b, 11);
    /* frames put back newest first end up in their original order, ahead of the rest */
    mh_inbox_mem_push_front(ib, 4, y, 12);
    mh_inbox_mem_push_front(ib, 4, x, 12);
    assert_int_equal(mh_inbox_mem_count(ib, 4), 4); /* not subject to the cap */
    assert_int_equal(a->refs, 2);
    expect_pop(ib, 4, 13, "x", 0);
    expect_pop(ib, 4, 13, "y", 0);
    expect_pop(ib, 4, 13, "a", 0);
    /* a later push makes room down to the cap again */
    mh_inbox_mem_push_front(ib, 4, x, 14);
    mh_inbox_mem_push_front(ib, 4, y, 14);
    assert_int_equal(mh_inbox_mem_count(ib, 4), 3); /* y x b */
    assert_int_equal(mh_inbox_mem_push(ib, 4, c, 15), 2);
    expect_pop(ib, 4, 16, "b", 0);
    expect_pop(ib, 4, 16, "c", 0);
    expect_pop(ib, 4, 16, NULL, 0);

    /* push_front into a ring whose head is mid-array, growing it */
    mh_inbox_mem_t *big = mh_inbox_mem_new(100, 0);
    const char *seq[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    mh_frame_t *n[10];
    for (int i = 0; i < 10; i++)
        n[i] = text_frame(seq[i]);
    for (int i = 3; i < 7; i++)
        mh_inbox_mem_push(big, 1, n[i], 0);
    expect_pop(big, 1, 0, "3", 0);
    mh_inbox_mem_push(big, 1, n[7], 0);
    mh_inbox_mem_push(big, 1, n[3], 0); /* 4 5 6 7 3 */
    for (int i = 2; i >= 0; i--)
        mh_inbox_mem_push_front(big, 1, n[i], 0);
    const char *want[] = {"0", "1", "2", "4", "5", "6", "7", "3"};
    for (size_t i = 0; i < 8; i++)
        expect_pop(big, 1, 0, want[i], 0);
    expect_pop(big, 1, 0, NULL, 0);
    mh_inbox_mem_free(big);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(n[i]->refs, 1);
        mh_frame_unref(n[i]);
    }

    mh_inbox_mem_free(ib);
    assert_int_equal(a->refs, 1);
    assert_int_equal(b->refs, 1);
    assert_int_equal(c->refs, 1);
    assert_int_equal(x->refs, 1);
    assert_int_equal(y->refs, 1);
    mh_frame_unref(a);
    mh_frame_unref(b);
    mh_frame_unref(c);
    mh_frame_unref(x);
    mh_frame_unref(y);
}

/*
 * The session flow of ws.c: a backlogged session takes A out of the inbox,
 * B arrives behind it, then the session closes and A is put back at the
 * head "now". A sweep must still drop B once B has expired, and A (received
 * before B) must not outlive B.
 */
static void test_sweep_after_push_front(void **state)
{
    mh_inbox_mem_t *ib = mh_inbox_mem_new(100, TTL);
    mh_frame_t *a = text_frame("A"), *b = text_frame("B");
    mh_inbox_mem_push(ib, 1, a, 0);
    mh_frame_t *taken = mh_inbox_mem_pop(ib, 1, 100, NULL); /* into the outbound queue */
    assert_ptr_equal(taken, a);
    mh_inbox_mem_push(ib, 1, b, 200);
    mh_inbox_mem_push_front(ib, 1, taken, 900); /* the session closed at 900 */
    mh_frame_unref(taken);
    assert_int_equal(mh_inbox_mem_count(ib, 1), 2);

    assert_int_equal(mh_inbox_mem_expire(ib, 200 + TTL - 1), 0);
    assert_int_equal(mh_inbox_mem_expire(ib, 200 + TTL), 2);
    assert_int_equal(mh_inbox_mem_count(ib, 1), 0);
    assert_int_equal(a->refs, 1);
    assert_int_equal(b->refs, 1);

    /* onto an empty inbox, the time given is the store time */
    mh_inbox_mem_push_front(ib, 2, a, 5000);
    assert_int_equal(mh_inbox_mem_expire(ib, 5000 + TTL - 1), 0);
    assert_int_equal(mh_inbox_mem_expire(ib, 5000 + TTL), 1);
    mh_inbox_mem_free(ib);
    mh_frame_unref(a);
    mh_frame_unref(b);
}

/* The budget counter (--memory-limit) follows the stored bytes through every way out. */
static void test_account_follows_bytes(void **state)
{
    (void)state;
    uint64_t account = 0;
    mh_inbox_mem_t *ib = mh_inbox_mem_new(2, TTL);
    mh_inbox_mem_set_account(ib, &account);
    mh_frame_t *a = text_frame("aaaa"), *b = text_frame("bb"), *c = text_frame("c");
    mh_inbox_mem_push(ib, 1, a, 0);
    mh_inbox_mem_push(ib, 1, b, 0);
    assert_int_equal(account, 6);
    assert_int_equal(mh_inbox_mem_push(ib, 1, c, 0), 1); /* the cap drops "aaaa" */
    assert_int_equal(account, 3);
    expect_pop(ib, 1, 0, "bb", 0);
    assert_int_equal(account, 1);
    mh_inbox_mem_push_front(ib, 2, a, 0);
    assert_int_equal(account, 5);
    assert_int_equal(mh_inbox_mem_expire(ib, TTL), 2);
    assert_int_equal(account, 0);
    mh_inbox_mem_push(ib, 3, b, TTL);
    mh_inbox_mem_free(ib); /* what is left goes too */
    assert_int_equal(account, 0);
    mh_frame_unref(a);
    mh_frame_unref(b);
    mh_frame_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_refs),
        cmocka_unit_test(test_many_in_order),
        cmocka_unit_test(test_cap_drops_oldest),
        cmocka_unit_test(test_ttl_on_pop),
        cmocka_unit_test(test_ttl_sweep),
        cmocka_unit_test(test_push_front),
        cmocka_unit_test(test_sweep_after_push_front),
        cmocka_unit_test(test_account_follows_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
