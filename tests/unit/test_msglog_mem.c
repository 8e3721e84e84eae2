/*
 * test_msglog_mem: the in-memory per-user log through its port (msglog.h):
 * seq per id, unknown ids, reads after a seq, cumulative acks, since at
 * open, retention by count, bytes and TTL with `recovered`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/codec.h"
#include "msghub/msglog_mem.h"

/* ---- fixture: a log with a fake clock and last id ---- */

typedef struct fx {
    mh_msglog_t log;
    uint64_t now, last_id;
    /* last results */
    int status;
    uint64_t seqs[16];
    size_t n_seqs;
    uint64_t dropped;
    uint64_t read_seqs[64];
    mh_frame_t *read_frames[64];
    size_t n_read;
    uint64_t read_last;
    mh_msglog_state_t st;
    int calls;
} fx_t;

static uint64_t fx_now(void *ud)
{
    return ((fx_t *)ud)->now;
}

static uint64_t fx_last_id(void *ud)
{
    return ((fx_t *)ud)->last_id;
}

static fx_t *fx_new(uint32_t max_msgs, uint64_t max_bytes, uint64_t ttl_ms)
{
    fx_t *x = calloc(1, sizeof(*x));
    x->now = 1000;
    x->last_id = 100;
    mh_msglog_mem_options_t o = {{max_msgs, max_bytes, ttl_ms}, fx_last_id, fx_now, x};
    assert_int_equal(mh_msglog_mem_new(&x->log, &o), 0);
    return x;
}

static void fx_free(fx_t *x)
{
    mh_msglog_free(&x->log);
    free(x);
}

static void on_append(void *ud, int status, const mh_msglog_appended_t *res)
{
    fx_t *x = ud;
    x->calls++;
    x->status = status;
    x->n_seqs = res->n;
    memcpy(x->seqs, res->seqs, res->n * sizeof(uint64_t));
    for (size_t i = 0; i < res->n; i++)
        assert_null(res->instances[i]);
    x->dropped = res->dropped;
}

static void on_read(void *ud, int status, const mh_msglog_entry_t *e, size_t n, uint64_t last)
{
    fx_t *x = ud;
    x->calls++;
    x->status = status;
    x->n_read = n;
    x->read_last = last;
    for (size_t i = 0; i < n; i++) {
        x->read_seqs[i] = e[i].seq;
        x->read_frames[i] = e[i].frame;
    }
}

static void on_state(void *ud, int status, const mh_msglog_state_t *st)
{
    fx_t *x = ud;
    x->calls++;
    x->status = status;
    x->st = *st;
}

static void on_status(void *ud, int status)
{
    fx_t *x = ud;
    x->calls++;
    x->status = status;
}

/* A message frame of exactly `len` bytes of text (seq_at after the id). */
static mh_frame_t *msg(size_t body_len)
{
    mh_buf_t b;
    mh_buf_init(&b);
    char *body = malloc(body_len + 3);
    body[0] = '"';
    memset(body + 1, 'x', body_len);
    body[body_len + 1] = '"';
    size_t at = mh_codec_message(&b, "m-1", 1, body, body_len + 2, 5);
    free(body);
    mh_frame_t *f = mh_frame_from_buf(&b);
    f->seq_at = (uint32_t)at;
    f->is_message = 1;
    mh_buf_free(&b);
    return f;
}

static void append(fx_t *x, const uint64_t *ids, size_t n, mh_frame_t *f)
{
    int before = x->calls;
    mh_msglog_append(&x->log, ids, n, f, x->now, on_append, x);
    assert_int_equal(x->calls, before + 1); /* memory calls back inside the call */
    assert_int_equal(x->status, 0);
}

static void append1(fx_t *x, uint64_t id)
{
    mh_frame_t *f = msg(1);
    append(x, &id, 1, f);
    mh_frame_unref(f);
}

static void read_after(fx_t *x, uint64_t id, uint64_t after, size_t max)
{
    int before = x->calls;
    mh_msglog_read(&x->log, id, after, max, on_read, x);
    assert_int_equal(x->calls, before + 1);
    assert_int_equal(x->status, 0);
}

static int open_id(fx_t *x, uint64_t id, uint64_t since)
{
    mh_msglog_open(&x->log, id, since, on_state, x);
    return x->status;
}

/* ---- tests ---- */

static void test_seq_per_id_and_unknown(void **state)
{
    fx_t *x = fx_new(100, 1u << 20, 0);
    mh_frame_t *f = msg(3);
    uint64_t ids[] = {7, 9, 101, 7 + 0};
    append(x, ids, 3, f);
    assert_int_equal(x->n_seqs, 3);
    assert_true(x->seqs[0] == 1 && x->seqs[1] == 1 && x->seqs[2] == 0); /* 101 > last id */
    uint64_t only7[] = {7};
    append(x, only7, 1, f);
    assert_true(x->seqs[0] == 2);
    append(x, ids, 2, f);
    assert_true(x->seqs[0] == 3 && x->seqs[1] == 2);
    /* one frame, stored by reference: the test's + one per stored entry */
    assert_int_equal(f->refs, 1 + 5);
    uint64_t last = 0;
    assert_int_equal(mh_msglog_last_seq_now(&x->log, 7, &last), 0);
    assert_true(last == 3);
    assert_int_equal(mh_msglog_last_seq_now(&x->log, 55, &last), 0);
    assert_true(last == 0);
    x->last_id = 200; /* ids handed out later become known */
    uint64_t late[] = {101};
    append(x, late, 1, f);
    assert_true(x->seqs[0] == 1);
    mh_frame_unref(f);
    fx_free(x);
}

static void test_read_after(void **state)
{
    fx_t *x = fx_new(100, 1u << 20, 0);
    for (int i = 0; i < 10; i++)
        append1(x, 5);
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 10);
    assert_true(x->read_last == 10);
    for (size_t i = 0; i < 10; i++)
        assert_true(x->read_seqs[i] == i + 1);
    read_after(x, 5, 7, 64);
    assert_int_equal(x->n_read, 3);
    assert_true(x->read_seqs[0] == 8 && x->read_seqs[2] == 10);
    read_after(x, 5, 2, 4); /* a slice */
    assert_int_equal(x->n_read, 4);
    assert_true(x->read_seqs[0] == 3 && x->read_seqs[3] == 6 && x->read_last == 10);
    read_after(x, 5, 10, 64);
    assert_int_equal(x->n_read, 0);
    assert_true(x->read_last == 10);
    read_after(x, 6, 0, 64); /* an id without a log */
    assert_int_equal(x->n_read, 0);
    assert_true(x->read_last == 0);
    fx_free(x);
}

static void test_cumulative_ack(void **state)
{
    fx_t *x = fx_new(100, 1u << 20, 0);
    for (int i = 0; i < 5; i++)
        append1(x, 5);
    mh_frame_t *f = msg(1);
    uint64_t id = 5;
    append(x, &id, 1, f); /* seq 6 */
    assert_int_equal(f->refs, 2);
    mh_msglog_ack(&x->log, 5, 3, on_status, x);
    assert_int_equal(x->status, 0);
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 3);
    assert_true(x->read_seqs[0] == 4);
    mh_msglog_ack(&x->log, 5, 2, on_status, x); /* below the earlier ack: nothing changes */
    assert_int_equal(x->status, 0);
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 3);
    mh_msglog_ack(&x->log, 5, 7, on_status, x); /* above the last seq */
    assert_int_equal(x->status, MH_EINVAL);
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 3);
    mh_msglog_ack(&x->log, 5, 6, on_status, x);
    assert_int_equal(x->status, 0);
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 0);
    assert_int_equal(f->refs, 1); /* acked entries release their frame */
    /* seqs continue after everything was acknowledged */
    append(x, &id, 1, f);
    assert_true(x->seqs[0] == 7);
    assert_int_equal(open_id(x, 5, 0), 0);
    assert_true(x->st.last_seq == 7 && x->st.acked_seq == 6 && x->st.recovered == 1);
    mh_frame_unref(f);
    fx_free(x);
}

static void test_open_since(void **state)
{
    fx_t *x = fx_new(100, 1u << 20, 0);
    assert_int_equal(open_id(x, 5, 0), 0); /* a new id */
    assert_true(x->st.last_seq == 0 && x->st.acked_seq == 0 && x->st.recovered == 1);
    assert_int_equal(open_id(x, 5, 1), MH_EINVAL);
    for (int i = 0; i < 4; i++)
        append1(x, 5);
    assert_int_equal(open_id(x, 5, 0), 0);
    assert_true(x->st.last_seq == 4 && x->st.acked_seq == 0 && x->st.recovered == 1);
    assert_int_equal(open_id(x, 5, 5), MH_EINVAL); /* above the last seq: nothing changes */
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 4);
    assert_int_equal(open_id(x, 5, 2), 0); /* since acknowledges <= 2 */
    assert_true(x->st.last_seq == 4 && x->st.acked_seq == 2 && x->st.recovered == 1);
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 2);
    assert_true(x->read_seqs[0] == 3);
    assert_int_equal(open_id(x, 5, 1), 0); /* below the ack: still acked up to 2 */
    assert_true(x->st.acked_seq == 2);
    assert_int_equal(open_id(x, 5, 4), 0);
    assert_true(x->st.acked_seq == 4);
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 0);
    fx_free(x);
}

static void test_retention_count(void **state)
{
    fx_t *x = fx_new(3, 1u << 20, 0);
    uint64_t id = 5;
    mh_frame_t *f = msg(1);
    for (int i = 0; i < 5; i++) {
        append(x, &id, 1, f);
        assert_true(x->dropped == (i >= 3 ? 1u : 0u));
    }
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 3);
    assert_true(x->read_seqs[0] == 3 && x->read_seqs[2] == 5);
    assert_int_equal(open_id(x, 5, 0), 0);
    assert_true(x->st.last_seq == 5 && x->st.recovered == 0);
    /* since past the dropped ones: nothing unacknowledged was lost any more */
    assert_int_equal(open_id(x, 5, 2), 0);
    assert_true(x->st.acked_seq == 2 && x->st.recovered == 1);
    mh_frame_unref(f);
    fx_free(x);
}

static void test_retention_bytes(void **state)
{
    mh_frame_t *f = msg(100);
    uint64_t one = mh_codec_message_seq_len(f, 1); /* seqs 1..9: same length */
    fx_t *x = fx_new(1000, one * 3, 0);
    uint64_t id = 5;
    for (int i = 0; i < 3; i++)
        append(x, &id, 1, f);
    assert_true(x->dropped == 0);
    append(x, &id, 1, f);
    assert_true(x->dropped == 1);
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 3);
    assert_true(x->read_seqs[0] == 2);
    /* a bigger message pushes out as many as it needs */
    mh_frame_t *big = msg(100 + (size_t)one);
    append(x, &id, 1, big);
    assert_true(x->dropped == 2);
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 2);
    assert_true(x->read_seqs[0] == 4 && x->read_frames[1] == big);
    assert_int_equal(open_id(x, 5, 0), 0);
    assert_true(x->st.recovered == 0);
    /* a message larger than the cap alone is still kept (the newest one always is) */
    mh_frame_t *huge = msg(4 * (size_t)one);
    append(x, &id, 1, huge);
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 1);
    assert_true(x->read_seqs[0] == 6);
    mh_frame_unref(f);
    mh_frame_unref(big);
    mh_frame_unref(huge);
    fx_free(x);
}

static void test_retention_ttl(void **state)
{
    fx_t *x = fx_new(100, 1u << 20, 1000);
    append1(x, 5); /* stored at 1000 */
    x->now = 1500;
    append1(x, 5); /* stored at 1500 */
    append1(x, 6);
    x->now = 2000; /* seq 1 of id 5 is 1000 ms old: expired */
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 1);
    assert_true(x->read_seqs[0] == 2);
    assert_int_equal(open_id(x, 5, 0), 0);
    assert_true(x->st.last_seq == 2 && x->st.recovered == 0);
    /* the sweep drops the rest and reports every TTL drop once */
    assert_true(mh_msglog_mem_expire(&x->log, 2499) == 1);
    assert_true(mh_msglog_mem_expire(&x->log, 2500) == 2);
    assert_true(mh_msglog_mem_expire(&x->log, 9999) == 0);
    read_after(x, 6, 0, 64);
    assert_int_equal(x->n_read, 0);
    assert_true(x->read_last == 1);
    /* with an ack past them, nothing unacknowledged was lost */
    assert_int_equal(open_id(x, 6, 1), 0);
    assert_true(x->st.recovered == 1);
    fx_free(x);
}

static void test_caps_zero(void **state)
{
    fx_t *x = fx_new(0, 0, 0); /* 0 counts as one message */
    append1(x, 5);
    append1(x, 5);
    assert_true(x->dropped == 1);
    read_after(x, 5, 0, 64);
    assert_int_equal(x->n_read, 1);
    assert_true(x->read_seqs[0] == 2);
    fx_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_per_id_and_unknown), cmocka_unit_test(test_read_after),
        cmocka_unit_test(test_cumulative_ack),         cmocka_unit_test(test_open_since),
        cmocka_unit_test(test_retention_count),        cmocka_unit_test(test_retention_bytes),
        cmocka_unit_test(test_retention_ttl),          cmocka_unit_test(test_caps_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
