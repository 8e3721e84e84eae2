/*
 * test_envelope: the envelopes instances exchange through RabbitMQ
 * (codec.h) and the weak handle used by asynchronous operations (util.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/codec.h"
#include "msghub/util.h"

static void test_message_round_trip(void **state)
{
    (void)state;
    const uint64_t ids[] = {7, 18446744073709551615ull, 42};
    const uint64_t seqs[] = {1, 9, 18446744073709551615ull};
    const char frame[] =
        "{\"type\":\"message\",\"id\":\"x-1\",\"from\":3,\"body\":\"a\\nb\",\"ts\":1}";
    mh_frame_t *f = mh_frame_new(frame, strlen(frame));
    f->seq_at = 26;
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_envelope_message(&b, ids, seqs, 3, f);
    const char head[] = "M26 7:1,18446744073709551615:9,42:18446744073709551615\n";
    assert_int_equal(strncmp(b.data, head, strlen(head)), 0);
    assert_int_equal(b.len, strlen(head) + strlen(frame));
    mh_envelope_t env;
    assert_int_equal(mh_codec_envelope_parse(b.data, b.len, &env), 0);
    assert_int_equal(env.type, MH_ENV_MESSAGE);
    assert_int_equal(env.n_ids, 3);
    assert_int_equal(env.seq_at, 26);
    assert_true(env.ids[0] == 7 && env.ids[1] == UINT64_MAX && env.ids[2] == 42);
    assert_true(env.seqs[0] == 1 && env.seqs[1] == 9 && env.seqs[2] == UINT64_MAX);
    assert_int_equal(env.frame_len, strlen(frame));
    assert_memory_equal(env.frame, frame, env.frame_len);
    mh_codec_envelope_free(&env);
    mh_frame_unref(f);
    mh_buf_free(&b);
}

static void test_kick_round_trip(void **state)
{
    (void)state;
    mh_buf_t b;
    mh_buf_init(&b);
    mh_codec_envelope_kick(&b, 99, 1764288000123ull);
    assert_string_equal(b.data, "K99 1764288000123\n");
    mh_envelope_t env;
    assert_int_equal(mh_codec_envelope_parse(b.data, b.len, &env), 0);
    assert_int_equal(env.type, MH_ENV_KICK);
    assert_int_equal(env.n_ids, 1);
    assert_true(env.ids[0] == 99 && env.claimed_ms == 1764288000123ull);
    mh_codec_envelope_free(&env);
    mh_buf_free(&b);
}

static void test_malformed_envelopes(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "M",
        "M1",
        "M\n{}",
        "M1\n{}",          /* v1 shape: no seqs */
        "M1 2\n{\"a\":1}", /* no seq */
        "M1 2:\n{\"a\":1}",
        "M1 2:3,\n{\"a\":1}",
        "M1 ,2:3\n{\"a\":1}",
        "M1 0:3\n{\"a\":1}",
        "M1 2:0\n{\"a\":1}",
        "M0 2:3\n{\"a\":1}", /* seq_at 0 */
        "M7 2:3\n{\"a\":1}", /* seq_at beyond the frame */
        "M1 2:3\n",
        "M1 2:3 4:5\n{\"a\":1}",
        "Mx 2:3\n{}",
        "M1 18446744073709551616:1\n{\"a\":1}",
        "M1 2:18446744073709551616\n{\"a\":1}",
        "K1\n",
        "K1 \n",
        "K 5\n",
        "K1 5 6\n",
        "X1\n{}",
        "K1 99999999999999999999\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mh_envelope_t env;
        if (mh_codec_envelope_parse(bad[i], strlen(bad[i]), &env) == 0)
            fail_msg("accepted malformed envelope #%zu: \"%s\"", i, bad[i]);
        assert_null(env.ids);
    }
}

static void test_batch_walk(void **state)
{
    (void)state;
    mh_buf_t b;
    mh_buf_init(&b);
    const char *envs[] = {"M1\n{\"a\":1}", "K2 5\n", "M1 3:1,4:2\n{}"};
    for (size_t i = 0; i < 3; i++)
        mh_codec_batch_append(&b, envs[i], strlen(envs[i]));
    assert_int_equal(strncmp(b.data, "B\n10\nM1\n", 8), 0);
    size_t pos = 0, len;
    const char *env;
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(mh_codec_batch_next(b.data, b.len, &pos, &env, &len), 1);
        assert_int_equal(len, strlen(envs[i]));
        assert_memory_equal(env, envs[i], len);
    }
    assert_int_equal(mh_codec_batch_next(b.data, b.len, &pos, &env, &len), 0);
    /* truncated by one byte: the last length no longer fits */
    pos = 0;
    int rc;
    while ((rc = mh_codec_batch_next(b.data, b.len - 1, &pos, &env, &len)) == 1)
        ;
    assert_int_equal(rc, -1);
    static const char *const bad[] = {"", "B", "M1\n{}", "B\n0\n", "B\nx\n", "B\n5\nab"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pos = 0;
        rc = mh_codec_batch_next(bad[i], strlen(bad[i]), &pos, &env, &len);
        if (rc != -1)
            fail_msg("accepted malformed batch #%zu", i);
    }
    mh_buf_free(&b);
}

static void test_handle_outlives_object(void **state)
{
    (void)state;
    int obj = 5;
    mh_handle_t *h = mh_handle_new(&obj);
    mh_handle_t *op = mh_handle_ref(h); /* a pending operation */
    assert_int_equal(h->refs, 2);
    assert_ptr_equal(mh_handle_get(op), &obj);
    mh_handle_clear(h); /* the object dies first */
    assert_null(mh_handle_get(op));
    assert_int_equal(op->refs, 1);
    mh_handle_unref(op); /* freed here; ASan checks there is no leak */
    mh_handle_clear(NULL);
    mh_handle_unref(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_round_trip),     cmocka_unit_test(test_kick_round_trip),
        cmocka_unit_test(test_malformed_envelopes),    cmocka_unit_test(test_batch_walk),
        cmocka_unit_test(test_handle_outlives_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
