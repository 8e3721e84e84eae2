/*
 * Unit tests of outq: FIFO order through ring growth and wraparound, the
 * byte count, and the reference counts of the queued frames (push takes a
 * reference, pop hands it over, clear and free drop them).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/outq.h"

/* A frame whose payload is "#<i>" padded with 'x' to i % 7 + 3 bytes. */
static mh_frame_t *numbered(size_t i)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "#%zu", i);
    size_t len = (size_t)n > i % 7 + 3 ? (size_t)n : i % 7 + 3;
    memset(text + n, 'x', len - (size_t)n);
    return mh_frame_new(text, len);
}

static size_t number_of(mh_frame_t *f)
{
    return (size_t)strtoul((const char *)mh_frame_data(f) + 1, NULL, 10);
}

static void test_empty(void **state)
{
    mh_outq_t q;
    mh_outq_init(&q);
    assert_null(mh_outq_peek(&q));
    assert_null(mh_outq_pop(&q));
    assert_int_equal(q.len, 0);
    assert_int_equal(q.bytes, 0);
    mh_outq_clear(&q);
    mh_outq_free(&q);
    mh_outq_free(&q);
}

static void test_refs(void **state)
{
    mh_outq_t q;
    mh_outq_init(&q);
    mh_frame_t *f = mh_frame_new("abc", 3);
    mh_outq_push(&q, f);
    assert_int_equal(f->refs, 2); /* ours and the queue's */
    mh_outq_push(&q, f);          /* the same frame twice: two references */
    assert_int_equal(f->refs, 3);
    assert_int_equal(q.len, 2);
    assert_int_equal(q.bytes, 6);

    assert_ptr_equal(mh_outq_peek(&q), f);
    assert_int_equal(f->refs, 3); /* peek takes nothing */

    mh_frame_t *p = mh_outq_pop(&q);
    assert_ptr_equal(p, f);
    assert_int_equal(f->refs, 3); /* the queue's reference is now the caller's */
    assert_int_equal(q.len, 1);
    assert_int_equal(q.bytes, 3);
    mh_frame_unref(p);
    assert_int_equal(f->refs, 2);

    mh_outq_clear(&q);
    assert_int_equal(f->refs, 1);
    assert_int_equal(q.len, 0);
    assert_int_equal(q.bytes, 0);
    assert_null(mh_outq_peek(&q));

    /* free drops what is still queued */
    mh_frame_t *g = mh_frame_new("defg", 4);
    mh_outq_push(&q, f);
    mh_outq_push(&q, g);
    mh_outq_push(&q, g);
    assert_int_equal(g->refs, 3);
    mh_outq_free(&q);
    assert_int_equal(f->refs, 1);
    assert_int_equal(g->refs, 1);
    assert_null(q.ring);
    assert_int_equal(q.len, 0);
    assert_int_equal(q.bytes, 0);
    mh_frame_unref(f);
    mh_frame_unref(g);
}

static void test_fifo_growth(void **state)
{
    enum { N = 1000 };
    mh_outq_t q;
    mh_outq_init(&q);
    mh_frame_t *frames[N];
    size_t bytes = 0;
    for (size_t i = 0; i < N; i++) {
        frames[i] = numbered(i);
        mh_outq_push(&q, frames[i]);
        bytes += frames[i]->len;
        assert_int_equal(q.len, i + 1);
        assert_int_equal(q.bytes, bytes);
        assert_ptr_equal(mh_outq_peek(&q), frames[0]);
    }
    assert_true(q.cap >= N);
    assert_int_equal(q.cap & (q.cap - 1), 0); /* a power of two */
    for (size_t i = 0; i < N; i++) {
        mh_frame_t *f = mh_outq_pop(&q);
        assert_ptr_equal(f, frames[i]);
        assert_int_equal(number_of(f), i);
        assert_int_equal(f->refs, 2);
        bytes -= f->len;
        assert_int_equal(q.bytes, bytes);
        mh_frame_unref(f);
        mh_frame_unref(frames[i]);
    }
    assert_int_equal(q.len, 0);
    assert_int_equal(q.bytes, 0);
    assert_null(mh_outq_pop(&q));
    mh_outq_free(&q);
}

/*
 * Keeps the queue partly full while pushing and popping so the head walks
 * around the ring many times, growing at different head positions.
 */
static void test_fifo_wraparound(void **state)
{
    mh_outq_t q;
    mh_outq_init(&q);
    size_t next_in = 0, next_out = 0, bytes = 0;
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        seed = seed * 1103515245u + 12345u;
        /* bias towards pushes early on, towards pops later, so len rises and falls */
        unsigned r = (seed >> 16) % 100;
        int push = round < 10000 ? r < 60 : r < 40;
        if (push || q.len == 0) {
            mh_frame_t *f = numbered(next_in++);
            mh_outq_push(&q, f);
            bytes += f->len;
            mh_frame_unref(f); /* the queue holds the only reference now */
            assert_int_equal(f->refs, 1);
        } else {
            mh_frame_t *f = mh_outq_pop(&q);
            assert_non_null(f);
            assert_int_equal(number_of(f), next_out);
            assert_int_equal(f->refs, 1);
            next_out++;
            bytes -= f->len;
            mh_frame_unref(f);
        }
        assert_int_equal(q.len, next_in - next_out);
        assert_int_equal(q.bytes, bytes);
        if (q.len)
            assert_int_equal(number_of(mh_outq_peek(&q)), next_out);
        assert_true(q.head < q.cap);
    }
    assert_true(next_out > 5000);
    /* drain what is left, still in order */
    mh_frame_t *f;
    while ((f = mh_outq_pop(&q))) {
        assert_int_equal(number_of(f), next_out++);
        mh_frame_unref(f);
    }
    assert_int_equal(next_out, next_in);
    assert_int_equal(q.bytes, 0);
    mh_outq_free(&q);
}

/* Growth when the live entries straddle the end of the ring. */
static void test_grow_while_wrapped(void **state)
{
    mh_outq_t q;
    mh_outq_init(&q);
    mh_frame_t *fr[32];
    for (size_t i = 0; i < 32; i++)
        fr[i] = numbered(i);
    for (size_t i = 0; i < 8; i++)
        mh_outq_push(&q, fr[i]);
    size_t cap = q.cap;
    assert_int_equal(cap, 8); /* the first ring */
    for (size_t i = 0; i < 5; i++)
        mh_frame_unref(mh_outq_pop(&q)); /* head moves to 5 */
    for (size_t i = 8; i < 13; i++)
        mh_outq_push(&q, fr[i]); /* fills slots 0..4: full and wrapped */
    assert_int_equal(q.len, 8);
    assert_int_equal(q.cap, cap);
    mh_outq_push(&q, fr[13]); /* grows while wrapped */
    assert_true(q.cap > cap);
    for (size_t i = 5; i < 14; i++) {
        mh_frame_t *f = mh_outq_pop(&q);
        assert_ptr_equal(f, fr[i]);
        mh_frame_unref(f);
    }
    assert_null(mh_outq_pop(&q));
    for (size_t i = 0; i < 32; i++) {
        assert_int_equal(fr[i]->refs, 1);
        mh_frame_unref(fr[i]);
    }
    mh_outq_free(&q);
}

static void test_bytes_with_empty_frames(void **state)
{
    mh_outq_t q;
    mh_outq_init(&q);
    static char payload[70000];
    memset(payload, 'p', sizeof(payload));
    mh_frame_t *e = mh_frame_new(NULL, 0), *big = mh_frame_new(payload, sizeof(payload));
    mh_outq_push(&q, e);
    mh_outq_push(&q, big);
    mh_outq_push(&q, e);
    assert_int_equal(q.len, 3);
    assert_int_equal(q.bytes, 70000);
    mh_frame_unref(mh_outq_pop(&q));
    assert_int_equal(q.bytes, 70000);
    mh_frame_unref(mh_outq_pop(&q));
    assert_int_equal(q.bytes, 0);
    assert_int_equal(q.len, 1);
    mh_outq_free(&q);
    assert_int_equal(e->refs, 1);
    assert_int_equal(big->refs, 1);
    mh_frame_unref(e);
    mh_frame_unref(big);
}

/* (frame, seq) entries: one shared frame, each entry's size is its wire text with its seq. */
static void test_seq_entries(void **state)
{
    mh_outq_t q;
    mh_outq_init(&q);
    const char text[] = "{\"type\":\"message\",\"id\":\"a\",\"from\":1,\"body\":1,\"ts\":2}";
    mh_frame_t *f = mh_frame_new(text, strlen(text));
    f->seq_at = 26;
    assert_int_equal(mh_outq_push_seq(&q, f, 7, 1), strlen(text) + strlen(",\"seq\":7"));
    assert_int_equal(mh_outq_push_seq(&q, f, 12345, 0), strlen(text) + strlen(",\"seq\":12345"));
    mh_outq_push(&q, f); /* no seq: the frame as is */
    assert_int_equal(f->refs, 4);
    assert_int_equal(q.bytes, 3 * strlen(text) + 8 + 12);
    const mh_outq_entry_t *head = mh_outq_peek_entry(&q); /* the oldest, nothing moves */
    assert_true(head && head->f == f && head->seq == 7 && head->size == strlen(text) + 8);
    assert_int_equal(f->refs, 4);
    assert_int_equal(q.len, 3);
    mh_outq_entry_t e;
    assert_int_equal(mh_outq_pop_entry(&q, &e), 1);
    assert_true(e.f == f && e.seq == 7 && e.live == 1 && e.size == strlen(text) + 8);
    mh_frame_unref(e.f);
    assert_int_equal(mh_outq_pop_entry(&q, &e), 1);
    assert_true(e.seq == 12345 && e.live == 0);
    mh_frame_unref(e.f);
    assert_int_equal(q.bytes, strlen(text));
    assert_int_equal(mh_outq_pop_entry(&q, &e), 1);
    assert_true(e.seq == 0 && e.size == strlen(text));
    mh_frame_unref(e.f);
    assert_int_equal(mh_outq_pop_entry(&q, &e), 0);
    assert_null(mh_outq_peek_entry(&q));
    assert_int_equal(q.bytes, 0);
    assert_int_equal(f->refs, 1);
    mh_outq_free(&q);
    mh_frame_unref(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_fifo_growth),
        cmocka_unit_test(test_fifo_wraparound),
        cmocka_unit_test(test_grow_while_wrapped),
        cmocka_unit_test(test_bytes_with_empty_frames),
        cmocka_unit_test(test_seq_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
