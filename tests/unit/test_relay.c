/*
 * test_relay: one relay request through the ports (relay.h), no socket:
 * the memory log or a fake log that reports routes, the memory presence's
 * registry, a fake transport that records envelopes and a fake deliver
 * hook that records local hand-overs. Dedupe, unknown ids, one append, one
 * envelope per other instance and none to this one, not ready, log down.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/codec.h"
#include "msghub/hub.h"
#include "msghub/msglog_mem.h"
#include "msghub/relay.h"

/* ---- fakes ---- */

typedef struct handed {
    void *session;
    uint64_t seq;
} handed_t;

typedef struct world {
    mh_server_t srv;
    mh_config_t cfg;
    handed_t handed[16];
    size_t n_handed;
    char pushed_to[8][16];
    mh_envelope_t pushed[8];
    size_t n_pushed;
    int done_calls, done_status;
    size_t accepted, n_unknown;
    uint64_t unknown[16];
    /* the fake log: routes to report, status to answer */
    const char *routes[16];
    int log_status;
    size_t appends;
} world_t;

static void deliver(mh_server_t *srv, void *session, mh_frame_t *f, uint64_t seq)
{
    world_t *w = (world_t *)srv;
    assert_non_null(f);
    w->handed[w->n_handed++] = (handed_t){session, seq};
}

static void fake_push(void *impl, const char *instance, const void *env, size_t len,
                      mh_transport_status_fn cb, void *ud)
{
    world_t *w = impl;
    strncpy(w->pushed_to[w->n_pushed], instance, sizeof(w->pushed_to[0]) - 1);
    assert_int_equal(mh_codec_envelope_parse(env, len, &w->pushed[w->n_pushed]), 0);
    w->n_pushed++;
    cb(ud, 0);
}

static void fake_free(void *impl)
{
}

static const mh_transport_ops_t fake_transport = {fake_push, fake_push, fake_free};

/* A log that gives seq = 10 + position and the configured routes. */
static void fake_append(void *impl, const uint64_t *ids, size_t n, mh_frame_t *f, uint64_t now_ms,
                        mh_msglog_append_fn cb, void *ud)
{
    world_t *w = impl;
    uint64_t seqs[16];
    for (size_t i = 0; i < n; i++)
        seqs[i] = 10 + i;
    w->appends++;
    mh_msglog_appended_t res = {seqs, w->routes, n, 0};
    cb(ud, w->log_status, w->log_status ? NULL : &res);
}

static const mh_msglog_ops_t fake_log = {.append = fake_append, .free = fake_free};

static uint64_t last_id(void *ud)
{
    return mh_registry_last_id(ud);
}

static void done(void *ud, int status, const mh_relay_result_t *res)
{
    world_t *w = ud;
    w->done_calls++;
    w->done_status = status;
    w->accepted = res->accepted;
    w->n_unknown = res->n_unknown;
    for (size_t i = 0; i < res->n_unknown; i++)
        w->unknown[i] = res->unknown[i];
}

static world_t *world_new(int memory_log)
{
    world_t *w = calloc(1, sizeof(*w));
    w->cfg.instance_id = "self";
    w->srv.cfg = &w->cfg;
    w->srv.registry = mh_registry_new();
    w->srv.secret = (const unsigned char *)"secret";
    w->srv.secret_len = 6;
    w->srv.deliver = deliver;
    w->srv.transport = (mh_transport_t){&fake_transport, w};
    snprintf(w->srv.msg_prefix, sizeof(w->srv.msg_prefix), "t");
    mh_metrics_init(&w->srv.metrics);
    if (memory_log) {
        mh_msglog_mem_options_t o = {{100, 1 << 20, 0}, last_id, NULL, w->srv.registry, NULL};
        mh_msglog_mem_new(&w->srv.log, &o);
    } else
        w->srv.log = (mh_msglog_t){&fake_log, w};
    return w;
}

static void world_free(world_t *w)
{
    mh_msglog_free(&w->srv.log);
    mh_registry_free(w->srv.registry);
    for (size_t i = 0; i < w->n_pushed; i++)
        mh_codec_envelope_free(&w->pushed[i]);
    free(w);
}

static void relay(world_t *w, const uint64_t *to, size_t n)
{
    mh_request_t req = {.type = MH_REQ_RELAY, .body = "{\"a\":1}", .body_len = 7};
    req.receivers = malloc(n * sizeof(uint64_t));
    memcpy(req.receivers, to, n * sizeof(uint64_t));
    req.n_receivers = n;
    mh_relay_start(&w->srv, 1, &req, 0, done, w);
    free(req.receivers);
}

/* ---- tests ---- */

static void test_local_offline_unknown(void **state)
{
    world_t *w = world_new(1);
    int s2, s3;
    for (int i = 0; i < 4; i++) /* ids 1..4 handed out */
        mh_registry_alloc_id(w->srv.registry);
    mh_registry_put(w->srv.registry, 2, &s2);
    mh_registry_put(w->srv.registry, 3, &s3);
    const uint64_t to[] = {2, 3, 3, 4, 9};
    relay(w, to, 5);
    assert_int_equal(w->done_calls, 1); /* a memory log answers inside the call */
    assert_int_equal(w->done_status, 0);
    assert_int_equal(w->accepted, 3); /* 2, 3 (once), 4 (offline: in its log) */
    assert_int_equal(w->n_unknown, 1);
    assert_int_equal(w->unknown[0], 9);
    assert_int_equal(w->n_handed, 2);
    assert_ptr_equal(w->handed[0].session, &s2);
    assert_int_equal(w->handed[0].seq, 1);
    assert_ptr_equal(w->handed[1].session, &s3);
    assert_int_equal(w->n_pushed, 0); /* no routes from a memory log */
    assert_int_equal(w->srv.metrics.relays_total, 1);
    assert_int_equal(w->srv.metrics.inbox_stored_total, 3);
    world_free(w);
}

static void test_one_envelope_per_other_instance(void **state)
{
    world_t *w = world_new(0);
    const char *routes[] = {"B", "self", "A", "B", NULL};
    memcpy(w->routes, routes, sizeof(routes));
    const uint64_t to[] = {5, 6, 7, 8, 9};
    relay(w, to, 5);
    assert_int_equal(w->appends, 1);
    assert_int_equal(w->done_status, 0);
    assert_int_equal(w->accepted, 5);
    assert_int_equal(w->n_handed, 0); /* "self" but not in the registry: its log has it */
    assert_int_equal(w->n_pushed, 2); /* sorted by instance: A, then B with both ids */
    assert_string_equal(w->pushed_to[0], "A");
    assert_int_equal(w->pushed[0].n_ids, 1);
    assert_int_equal(w->pushed[0].ids[0], 7);
    assert_int_equal(w->pushed[0].seqs[0], 12);
    assert_string_equal(w->pushed_to[1], "B");
    assert_int_equal(w->pushed[1].n_ids, 2);
    world_free(w);
}

static void test_no_transport_pushes_nothing(void **state)
{
    world_t *w = world_new(0);
    w->srv.transport = (mh_transport_t){0};
    w->routes[0] = "B";
    const uint64_t to[] = {5};
    relay(w, to, 1);
    assert_int_equal(w->done_status, 0);
    assert_int_equal(w->n_pushed, 0);
    world_free(w);
}

static void test_not_ready_is_eio_without_append(void **state)
{
    world_t *w = world_new(0);
    w->srv.draining = 1;
    const uint64_t to[] = {5};
    relay(w, to, 1);
    assert_int_equal(w->done_calls, 1);
    assert_int_equal(w->done_status, MH_EIO);
    assert_int_equal(w->appends, 0);
    world_free(w);
}

static void test_log_down_accepts_nothing(void **state)
{
    world_t *w = world_new(0);
    w->log_status = MH_EIO;
    const uint64_t to[] = {5, 6};
    relay(w, to, 2);
    assert_int_equal(w->done_calls, 1);
    assert_int_equal(w->done_status, MH_EIO);
    assert_int_equal(w->accepted, 0);
    assert_int_equal(w->n_handed + w->n_pushed, 0);
    world_free(w);
}

/* A lost answer stays "in doubt" up to the caller, whose message names the id. */
static void test_log_answer_lost_is_in_doubt(void **state)
{
    world_t *w = world_new(0);
    w->log_status = MH_EINDOUBT;
    const uint64_t to[] = {5};
    relay(w, to, 1);
    assert_int_equal(w->done_calls, 1);
    assert_int_equal(w->done_status, MH_EINDOUBT);
    assert_int_equal(w->n_handed + w->n_pushed, 0);
    world_free(w);
    mh_relay_result_t res = {.msg_id = "ab12-7"};
    char msg[160];
    mh_relay_refusal(MH_EINDOUBT, &res, "plain", msg, sizeof(msg));
    assert_string_equal(msg, "backplane lost the answer: message ab12-7 may have been accepted "
                             "and may still arrive; retry later");
    mh_relay_refusal(MH_EIO, &res, "plain", msg, sizeof(msg));
    assert_string_equal(msg, "plain");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_offline_unknown),
        cmocka_unit_test(test_one_envelope_per_other_instance),
        cmocka_unit_test(test_no_transport_pushes_nothing),
        cmocka_unit_test(test_not_ready_is_eio_without_append),
        cmocka_unit_test(test_log_down_accepts_nothing),
        cmocka_unit_test(test_log_answer_lost_is_in_doubt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
