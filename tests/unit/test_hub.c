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
        cmocka_unit_test(test_latency_once_last_local_wrote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
