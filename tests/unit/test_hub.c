/*
 * test_hub: the helpers over the hub's shared state (hub.h): readiness
 * (draining, no secret yet, the backplane hook), whether relays are
 * accepted (the log's hook, apart from readiness), the scratch buffer's
 * headroom, the memory budget, message ids, the relay latency observed
 * once the last local receiver wrote.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/hub.h"

static int backplane_up;

static int backplane(const mh_server_t *srv)
{
    return backplane_up;
}

static void test_ready(void **state)
{
    mh_server_t srv;
    memset(&srv, 0, sizeof(srv));
    assert_false(mh_server_ready(&srv)); /* no secret yet */
    srv.secret = (const unsigned char *)"k";
    assert_true(mh_server_ready(&srv));
    srv.backplane_ready = backplane;
    backplane_up = 0;
    assert_false(mh_server_ready(&srv));
    backplane_up = 1;
    assert_true(mh_server_ready(&srv));
    srv.draining = 1;
    assert_false(mh_server_ready(&srv));
}

static int log_up;

static int log_hook(const mh_server_t *srv)
{
    (void)srv;
    return log_up;
}

/* Relays need the log only: not ready (RabbitMQ down) still accepts them. */
static void test_can_relay_apart_from_ready(void **state)
{
    (void)state;
    mh_server_t srv;
    memset(&srv, 0, sizeof(srv));
    assert_false(mh_server_can_relay(&srv)); /* no secret yet */
    srv.secret = (const unsigned char *)"k";
    assert_true(mh_server_can_relay(&srv)); /* standalone: no hooks */
    srv.backplane_ready = backplane;
    srv.backplane_can_relay = log_hook;
    backplane_up = 0;
    log_up = 1;
    assert_false(mh_server_ready(&srv));
    assert_true(mh_server_can_relay(&srv));
    log_up = 0;
    assert_false(mh_server_can_relay(&srv));
    log_up = 1;
    srv.draining = 1;
    assert_false(mh_server_can_relay(&srv));
}

static void test_scratch_and_ids(void **state)
{
    mh_server_t srv;
    memset(&srv, 0, sizeof(srv));
    unsigned char *p = mh_server_scratch(&srv, 100);
    assert_ptr_equal(p, srv.scratch + MH_FRAME_HEADROOM);
    memset(p, 'x', 100);
    p = mh_server_scratch(&srv, 1000);
    assert_true(srv.scratch_cap >= 1000);
    memset(p, 'y', 1000);
    free(srv.scratch);
    strcpy(srv.msg_prefix, "ab");
    char id[48];
    mh_server_next_msg_id(&srv, id, sizeof(id));
    assert_string_equal(id, "ab-1");
    mh_server_next_msg_id(&srv, id, sizeof(id));
    assert_string_equal(id, "ab-2");
}

static void test_memory_budget(void **state)
{
    mh_server_t srv;
    memset(&srv, 0, sizeof(srv));
    srv.metrics.memory_limit_bytes = 1 << 20;
    assert_true(mh_mem_allows(&srv, MH_MEM_SMALL, 2 << 20)); /* small: never refused */
    mh_mem_add(&srv, 1 << 20);
    assert_false(mh_mem_allows(&srv, MH_MEM_SMALL + 1, 1));
    assert_int_equal(srv.metrics.memory_refusals_total, 1);
    mh_mem_sub(&srv, 2 << 20); /* never below 0 */
    assert_int_equal(srv.metrics.memory_bytes, 0);
    assert_true(mh_mem_allows(&srv, MH_MEM_SMALL + 1, 1 << 20));
}

/* A holder of a partial message for the tests: its bytes and whether it was dropped. */
typedef struct holder {
    mh_mem_partial_t p; /* first */
    size_t bytes;
    int dropped;
} holder_t;

static void drop_holder(mh_server_t *srv, mh_mem_partial_t *p)
{
    holder_t *h = (holder_t *)p;
    assert_false(mh_dlist_has(&srv->partials, &p->link)); /* ended before drop() */
    h->dropped++;
    mh_mem_sub(srv, h->bytes);
}

/* Oldest first whatever is asked, never self, each once; a partial begun twice keeps its place. */
static void test_make_room_drops_oldest_partials(void **state)
{
    mh_server_t srv;
    memset(&srv, 0, sizeof(srv));
    srv.metrics.memory_limit_bytes = 1 << 20;
    holder_t h[4];
    memset(h, 0, sizeof(h));
    for (int i = 0; i < 4; i++) {
        h[i].bytes = 256 << 10;
        mh_mem_add(&srv, h[i].bytes);
        mh_mem_partial_begin(&srv, &h[i].p, drop_holder);
    }
    mh_mem_partial_begin(&srv, &h[0].p, drop_holder); /* again: still the oldest */
    /* full: a 300 KiB message of h[0] (self) drops h[1] and h[2], not h[0] */
    assert_true(mh_mem_make_room(&srv, 300 << 10, 300 << 10, &h[0].p));
    assert_int_equal(h[0].dropped, 0);
    assert_int_equal(h[1].dropped, 1);
    assert_int_equal(h[2].dropped, 1);
    assert_int_equal(h[3].dropped, 0);
    assert_int_equal(srv.metrics.memory_refusals_total, 2);
    /* small messages never drop anything */
    mh_mem_add(&srv, 512 << 10);
    assert_true(mh_mem_make_room(&srv, MH_MEM_SMALL, MH_MEM_SMALL, NULL));
    assert_int_equal(h[0].dropped + h[3].dropped, 0);
    /* an ended partial is not dropped; with none left to drop the answer is no */
    mh_mem_partial_end(&srv, &h[0].p);
    mh_mem_partial_end(&srv, &h[0].p); /* twice: no-op */
    assert_false(mh_mem_make_room(&srv, 2 << 20, 2 << 20, NULL));
    assert_int_equal(h[0].dropped, 0);
    assert_int_equal(h[3].dropped, 1);
    assert_null(srv.partials.head);
    assert_null(srv.partials.tail);
}

static void test_latency_once_last_local_wrote(void **state)
{
    mh_server_t srv;
    memset(&srv, 0, sizeof(srv));
    mh_metrics_init(&srv.metrics);
    mh_frame_t *f = mh_frame_new("x", 1);
    f->t0_us = mh_mono_us();
    f->local_left = 2;
    mh_server_local_done(&srv, f);
    assert_int_equal(f->local_left, 1);
    mh_buf_t before, after;
    mh_buf_init(&before);
    mh_buf_init(&after);
    mh_metrics_render(&srv.metrics, &before);
    mh_server_local_done(&srv, f);
    assert_int_equal(f->local_left, 0);
    mh_metrics_render(&srv.metrics, &after);
    assert_true(before.len != after.len || memcmp(before.data, after.data, before.len) != 0);
    mh_server_local_done(&srv, f); /* nothing left: no second observation */
    assert_int_equal(f->local_left, 0);
    mh_buf_free(&before);
    mh_buf_free(&after);
    mh_frame_unref(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready),
        cmocka_unit_test(test_can_relay_apart_from_ready),
        cmocka_unit_test(test_scratch_and_ids),
        cmocka_unit_test(test_memory_budget),
        cmocka_unit_test(test_make_room_drops_oldest_partials),
        cmocka_unit_test(test_latency_once_last_local_wrote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
