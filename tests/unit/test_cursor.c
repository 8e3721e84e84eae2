/*
 * test_cursor: a connection's position in its log (cursor.h) through a fake
 * connection queue and a fake log (mh_msglog_mem): seq order, duplicates,
 * pushes that overtake others, lost pushes, backlog reads in slices,
 * catching up, and retention gaps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/codec.h"
#include "msghub/cursor.h"
#include "msghub/msglog_mem.h"

/* ---- the fake connection: records what was queued ---- */

typedef struct conn {
    uint64_t seqs[256];
    int live[256];
    size_t n;
    size_t room;    /* entries from the log it takes before it is "full" */
    size_t stop_at; /* queue returns stop once this many were queued (0: never) */
} conn_t;

static int q(void *ud, mh_frame_t *f, uint64_t seq, int live)
{
    conn_t *c = ud;
    assert_non_null(f);
    c->seqs[c->n] = seq;
    c->live[c->n++] = live;
    return c->stop_at && c->n >= c->stop_at;
}

static int room(void *ud)
{
    conn_t *c = ud;
    return c->n < c->room;
}

static mh_frame_t *msg(void)
{
    mh_buf_t b;
    mh_buf_init(&b);
    size_t at = mh_codec_message(&b, "m-1", 1, "1", 1, 5);
    mh_frame_t *f = mh_frame_from_buf(&b);
    f->seq_at = (uint32_t)at;
    mh_buf_free(&b);
    return f;
}

static void expect_seqs(const conn_t *c, const uint64_t *want, size_t n)
{
    assert_int_equal(c->n, n);
    for (size_t i = 0; i < n; i++)
        if (c->seqs[i] != want[i])
            fail_msg("queued #%zu has seq %llu, want %llu", i, (unsigned long long)c->seqs[i],
                     (unsigned long long)want[i]);
}

/* ---- a fake log: the memory implementation, read synchronously ---- */

typedef struct rd {
    mh_msglog_entry_t e[64];
    size_t n;
    uint64_t last;
} rd_t;

static void on_read(void *ud, int status, const mh_msglog_entry_t *e, size_t n, uint64_t last)
{
    rd_t *r = ud;
    assert_int_equal(status, 0);
    memcpy(r->e, e, n * sizeof(*e));
    r->n = n;
    r->last = last;
}

static void on_append(void *ud, int status, const mh_msglog_appended_t *res)
{
    assert_int_equal(status, 0);
    *(uint64_t *)ud = res->seqs[0];
}

static uint64_t append(mh_msglog_t *log, mh_frame_t *f)
{
    uint64_t id = 7, seq = 0;
    mh_msglog_append(log, &id, 1, f, 1000, on_append, &seq);
    return seq;
}

/* Reads after the cursor and hands the result to it, as session_log.c does. */
static mh_cursor_action_t read_into(mh_msglog_t *log, mh_cursor_t *cur, size_t max, conn_t *c)
{
    rd_t r;
    mh_msglog_read(log, 7, cur->next_seq - 1, max, on_read, &r);
    return mh_cursor_read_done(cur, r.e, r.n, r.last, room, q, c);
}

static mh_msglog_t new_log(uint32_t max_msgs)
{
    mh_msglog_t log;
    mh_msglog_mem_options_t o = {{max_msgs, 1u << 30, 0}, NULL, NULL, NULL};
    mh_msglog_mem_new(&log, &o);
    return log;
}

/* ---- tests ---- */

static void test_in_order_and_duplicates(void **state)
{
    mh_cursor_t cur = {0};
    conn_t c = {.room = 100};
    mh_frame_t *f = msg();
    assert_int_equal(mh_cursor_open(&cur, 0, 0), MH_CURSOR_DONE);
    for (uint64_t s = 1; s <= 3; s++)
        assert_int_equal(mh_cursor_push(&cur, f, s, 0, q, &c), MH_CURSOR_DONE);
    assert_int_equal(mh_cursor_push(&cur, f, 2, 0, q, &c), MH_CURSOR_DONE); /* duplicate */
    assert_int_equal(mh_cursor_push(&cur, f, 0, 0, q, &c), MH_CURSOR_DONE); /* no seq */
    uint64_t want[] = {1, 2, 3};
    expect_seqs(&c, want, 3);
    assert_true(c.live[0] && c.live[2]);
    assert_true(cur.next_seq == 4);
    assert_int_equal(f->refs, 1); /* nothing kept */
    mh_frame_unref(f);
}

static void test_overtaking_push_is_held_then_drained(void **state)
{
    mh_cursor_t cur = {0};
    conn_t c = {.room = 100};
    mh_frame_t *f = msg();
    mh_cursor_open(&cur, 10, 10);
    assert_int_equal(mh_cursor_push(&cur, f, 13, 100, q, &c), MH_CURSOR_HELD);
    assert_int_equal(mh_cursor_push(&cur, f, 12, 101, q, &c), MH_CURSOR_HELD);
    assert_int_equal(mh_cursor_push(&cur, f, 13, 102, q, &c), MH_CURSOR_HELD); /* dup held */
    assert_int_equal(c.n, 0);
    assert_int_equal(f->refs, 3);
    assert_int_equal(mh_cursor_tick(&cur, 140, 50), MH_CURSOR_HELD); /* not yet 50 ms */
    assert_int_equal(mh_cursor_push(&cur, f, 11, 120, q, &c), MH_CURSOR_DONE);
    uint64_t want[] = {11, 12, 13};
    expect_seqs(&c, want, 3);
    assert_int_equal(f->refs, 1);
    assert_int_equal(mh_cursor_tick(&cur, 1000, 50), MH_CURSOR_DONE);
    /* a gap that stays: 15 held, 14 never comes */
    assert_int_equal(mh_cursor_push(&cur, f, 15, 2000, q, &c), MH_CURSOR_HELD);
    assert_int_equal(mh_cursor_push(&cur, f, 16, 2010, q, &c), MH_CURSOR_HELD);
    assert_int_equal(mh_cursor_tick(&cur, 2049, 50), MH_CURSOR_HELD);
    assert_int_equal(mh_cursor_tick(&cur, 2050, 50), MH_CURSOR_READ);
    assert_true(cur.backlog && cur.n_held == 0);
    assert_int_equal(f->refs, 1); /* released: the read brings them */
    mh_frame_unref(f);
}

static void test_hold_full_reads_the_log(void **state)
{
    mh_cursor_t cur = {0};
    conn_t c = {.room = 100};
    mh_frame_t *f = msg();
    mh_cursor_open(&cur, 0, 0);
    for (uint64_t s = 2; s < 2 + MH_CURSOR_HOLD_MAX; s++)
        assert_int_equal(mh_cursor_push(&cur, f, s, 0, q, &c), MH_CURSOR_HELD);
    assert_int_equal(mh_cursor_push(&cur, f, 99, 0, q, &c), MH_CURSOR_READ);
    assert_int_equal(f->refs, 1);
    /* while backlogged, pushes are left to the log */
    assert_int_equal(mh_cursor_push(&cur, f, 1, 0, q, &c), MH_CURSOR_READ);
    assert_int_equal(c.n, 0);
    mh_frame_unref(f);
}

static void test_resume_reads_in_slices_then_live(void **state)
{
    mh_msglog_t log = new_log(1000);
    mh_frame_t *f = msg();
    for (int i = 0; i < 10; i++)
        append(&log, f);
    mh_cursor_t cur = {0};
    conn_t c = {.room = 4};
    /* a push that comes before the open is only noted */
    uint64_t s11 = append(&log, f);
    assert_int_equal(mh_cursor_push(&cur, f, s11, 0, q, &c), MH_CURSOR_DONE);
    assert_int_equal(c.n, 0);
    assert_int_equal(mh_cursor_open(&cur, 3, 10), MH_CURSOR_READ);   /* acked 3 */
    assert_int_equal(read_into(&log, &cur, 64, &c), MH_CURSOR_READ); /* room for 4 */
    uint64_t want4[] = {4, 5, 6, 7};
    expect_seqs(&c, want4, 4);
    assert_false(c.live[0]);
    /* a live push meanwhile: left to the log */
    uint64_t s12 = append(&log, f);
    assert_int_equal(mh_cursor_push(&cur, f, s12, 0, q, &c), MH_CURSOR_READ);
    c.room = 100;
    assert_int_equal(read_into(&log, &cur, 3, &c), MH_CURSOR_READ); /* a slice of 3 */
    assert_int_equal(read_into(&log, &cur, 64, &c), MH_CURSOR_DONE);
    uint64_t want[] = {4, 5, 6, 7, 8, 9, 10, 11, 12};
    expect_seqs(&c, want, 9);
    assert_false(cur.backlog);
    /* caught up: live pushes flow again */
    uint64_t s13 = append(&log, f);
    assert_int_equal(mh_cursor_push(&cur, f, s13, 0, q, &c), MH_CURSOR_DONE);
    assert_true(c.n == 10 && c.seqs[9] == 13 && c.live[9]);
    mh_msglog_free(&log);
    mh_frame_unref(f);
}

static void test_retention_gap_and_empty_reads(void **state)
{
    mh_msglog_t log = new_log(3);
    mh_frame_t *f = msg();
    for (int i = 0; i < 6; i++)
        append(&log, f); /* 1..3 dropped by the cap */
    mh_cursor_t cur = {0};
    conn_t c = {.room = 100};
    assert_int_equal(mh_cursor_open(&cur, 0, 6), MH_CURSOR_READ);
    assert_int_equal(read_into(&log, &cur, 64, &c), MH_CURSOR_DONE);
    uint64_t want[] = {4, 5, 6};
    expect_seqs(&c, want, 3);
    /* a push newer than the log's snapshot (in flight): read again, but not forever */
    mh_cursor_recheck(&cur);
    cur.seen_seq = 7;
    assert_int_equal(read_into(&log, &cur, 64, &c), MH_CURSOR_READ);
    assert_int_equal(read_into(&log, &cur, 64, &c), MH_CURSOR_READ);
    assert_int_equal(read_into(&log, &cur, 64, &c), MH_CURSOR_DONE);
    assert_false(cur.backlog);
    /* everything acknowledged elsewhere (another session of the id): skip ahead */
    append(&log, f);
    append(&log, f); /* 7, 8 */
    mh_msglog_ack(&log, 7, 8, NULL, NULL);
    mh_cursor_recheck(&cur);
    assert_int_equal(read_into(&log, &cur, 64, &c), MH_CURSOR_DONE);
    assert_true(cur.next_seq == 9 && c.n == 3);
    mh_msglog_free(&log);
    mh_frame_unref(f);
}

static void test_queue_stop_halts(void **state)
{
    mh_cursor_t cur = {0};
    conn_t c = {.room = 100, .stop_at = 2};
    mh_frame_t *f = msg();
    mh_cursor_open(&cur, 0, 0);
    mh_cursor_push(&cur, f, 2, 0, q, &c);
    mh_cursor_push(&cur, f, 3, 0, q, &c);
    mh_cursor_push(&cur, f, 1, 0, q, &c); /* 1 and 2 queued, then the connection closes */
    uint64_t want[] = {1, 2};
    expect_seqs(&c, want, 2);
    mh_cursor_release(&cur);
    assert_int_equal(f->refs, 1);
    mh_frame_unref(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_and_duplicates),
        cmocka_unit_test(test_overtaking_push_is_held_then_drained),
        cmocka_unit_test(test_hold_full_reads_the_log),
        cmocka_unit_test(test_resume_reads_in_slices_then_live),
        cmocka_unit_test(test_retention_gap_and_empty_reads),
        cmocka_unit_test(test_queue_stop_halts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
