/*
 * Unit tests of metrics: the error code table, counters, the latency
 * histogram's bucketing and the Prometheus text rendering.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/metrics.h"
#include "msghub/util.h"

static const struct {
    mh_err_code_t code;
    const char *name;
    int status;
} expected_errs[] = {
    {MH_ERR_BAD_JSON, "bad_json", 400},
    {MH_ERR_BAD_REQUEST, "bad_request", 400},
    {MH_ERR_UNKNOWN_TYPE, "unknown_type", 400},
    {MH_ERR_TOO_MANY_RECEIVERS, "too_many_receivers", 400},
    {MH_ERR_BODY_TOO_LARGE, "body_too_large", 413},
    {MH_ERR_RATE_LIMITED, "rate_limited", 429},
    {MH_ERR_UNAVAILABLE, "unavailable", 503},
    {MH_ERR_INTERNAL, "internal", 500},
    {MH_ERR_UNAUTHORIZED, "unauthorized", 401},
    {MH_ERR_FORBIDDEN, "forbidden", 403},
    {MH_ERR_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", 415},
    {MH_ERR_NOT_FOUND, "not_found", 404},
    {MH_ERR_METHOD_NOT_ALLOWED, "method_not_allowed", 405},
};
#define NERRS (sizeof(expected_errs) / sizeof(expected_errs[0]))

static const char *const le[MH_METRICS_LATENCY_BUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025",  "0.05",    "0.1",    "0.25",  "0.5",    "1",     "2.5",
};

static void test_error_table(void **state)
{
    assert_int_equal(NERRS, MH_ERR__COUNT);
    for (size_t i = 0; i < NERRS; i++) {
        assert_string_equal(mh_err_name(expected_errs[i].code), expected_errs[i].name);
        assert_int_equal(mh_err_http_status(expected_errs[i].code), expected_errs[i].status);
    }
    /* a code out of range is reported as an internal error, never crashes */
    assert_string_equal(mh_err_name(MH_ERR__COUNT), "internal");
    assert_int_equal(mh_err_http_status(MH_ERR__COUNT), 500);
    assert_string_equal(mh_err_name((mh_err_code_t)-1), "internal");
}

static void test_init_and_errors(void **state)
{
    mh_metrics_t m;
    memset(&m, 0xab, sizeof(m));
    mh_metrics_init(&m);
    assert_int_equal(m.connections, 0);
    assert_int_equal(m.latency_count, 0);
    assert_true(m.latency_sum_s == 0.0);
    for (int i = 0; i < MH_ERR__COUNT; i++)
        assert_int_equal(m.errors_total[i], 0);
    mh_metrics_error(&m, MH_ERR_RATE_LIMITED);
    mh_metrics_error(&m, MH_ERR_RATE_LIMITED);
    mh_metrics_error(&m, MH_ERR_NOT_FOUND);
    mh_metrics_error(&m, MH_ERR__COUNT); /* counted as internal */
    assert_int_equal(m.errors_total[MH_ERR_RATE_LIMITED], 2);
    assert_int_equal(m.errors_total[MH_ERR_NOT_FOUND], 1);
    assert_int_equal(m.errors_total[MH_ERR_INTERNAL], 1);
    assert_int_equal(m.errors_total[MH_ERR_BAD_JSON], 0);
}

/* Bucket bounds are inclusive ("le"); beyond 2.5 s only the count grows. */
static void test_observe_buckets(void **state)
{
    mh_metrics_t m;
    mh_metrics_init(&m);
    mh_metrics_observe_latency(&m, 0);       /* 0.0001 */
    mh_metrics_observe_latency(&m, 100);     /* 0.0001, on the bound */
    mh_metrics_observe_latency(&m, 101);     /* 0.00025 */
    mh_metrics_observe_latency(&m, 1000);    /* 0.001 */
    mh_metrics_observe_latency(&m, 2500000); /* 2.5 */
    mh_metrics_observe_latency(&m, 2500001); /* +Inf only */
    mh_metrics_observe_latency(&m, UINT64_C(10000000000));
    const uint64_t want[MH_METRICS_LATENCY_BUCKETS] = {2, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    for (int i = 0; i < MH_METRICS_LATENCY_BUCKETS; i++)
        assert_int_equal(m.latency_buckets[i], want[i]);
    assert_int_equal(m.latency_count, 7);
    double sum = (0 + 100 + 101 + 1000 + 2500000 + 2500001 + 10000000000.0) / 1e6;
    assert_true(m.latency_sum_s > sum - 1e-9 && m.latency_sum_s < sum + 1e-9);
}

static char *render(const mh_metrics_t *m)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_metrics_render(m, &b);
    assert_non_null(b.data);
    assert_int_equal(strlen(b.data), b.len);
    return b.data; /* the caller frees */
}

static void assert_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    print_error("missing line: %s\n", line);
    fail();
}

static void test_render_families(void **state)
{
    static const struct {
        const char *name, *type;
    } fam[] = {
        {"msghub_connections", "gauge"},
        {"msghub_connections_total", "counter"},
        {"msghub_frames_received_total", "counter"},
        {"msghub_frames_sent_total", "counter"},
        {"msghub_bytes_received_total", "counter"},
        {"msghub_bytes_sent_total", "counter"},
        {"msghub_relays_total", "counter"},
        {"msghub_deliveries_total", "counter"},
        {"msghub_inbox_stored_total", "counter"},
        {"msghub_inbox_dropped_total", "counter"},
        {"msghub_acks_total", "counter"},
        {"msghub_redeliveries_total", "counter"},
        {"msghub_http_requests_total", "counter"},
        {"msghub_slow_consumer_closes_total", "counter"},
        {"msghub_errors_total", "counter"},
        {"msghub_loop_busy_max_seconds", "gauge"},
        {"msghub_relay_latency_seconds", "histogram"},
    };
    mh_metrics_t m;
    mh_metrics_init(&m);
    char *t = render(&m);
    for (size_t i = 0; i < sizeof(fam) / sizeof(fam[0]); i++) {
        char line[128];
        snprintf(line, sizeof(line), "# TYPE %s %s", fam[i].name, fam[i].type);
        assert_line(t, line);
        const char *type = strstr(t, line);
        snprintf(line, sizeof(line), "# HELP %s ", fam[i].name);
        const char *help = strstr(t, line);
        assert_non_null(help);
        assert_true(help < type); /* HELP first, then TYPE */
    }
    /* every code present even at zero */
    for (size_t i = 0; i < NERRS; i++) {
        char line[128];
        snprintf(line, sizeof(line), "msghub_errors_total{code=\"%s\"} 0", expected_errs[i].name);
        assert_line(t, line);
    }
    assert_line(t, "msghub_connections 0");
    assert_line(t, "msghub_relay_latency_seconds_bucket{le=\"+Inf\"} 0");
    assert_int_equal(t[strlen(t) - 1], '\n');
    free(t);
}

/* Each sample line is "name[{labels}] value" and each family has HELP then TYPE. */
static void test_render_syntax(void **state)
{
    mh_metrics_t m;
    mh_metrics_init(&m);
    m.bytes_sent_total = 12345;
    char *t = render(&m);
    char last_help[128] = "", last_type[128] = "";
    int samples = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "# HELP ", 7) == 0) {
            sscanf(line + 7, "%127s", last_help);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            sscanf(line + 7, "%127s", last_type);
            assert_string_equal(last_type, last_help);
            continue;
        }
        assert_int_not_equal(line[0], '#');
        size_t fl = strlen(last_type);
        assert_memory_equal(line, last_type, fl); /* sample belongs to the declared family */
        const char *sp = strrchr(line, ' ');
        assert_non_null(sp);
        char *end;
        strtod(sp + 1, &end);
        assert_true(end > sp + 1 && *end == '\0');
        samples++;
    }
    /* 21 simple families + 13 error codes + 14 buckets + Inf + sum + count */
    assert_int_equal(samples, 21 + MH_ERR__COUNT + MH_METRICS_LATENCY_BUCKETS + 3);
    free(t);
}

static void test_render_values(void **state)
{
    mh_metrics_t m;
    mh_metrics_init(&m);
    m.connections = 3;
    m.connections_total = 10;
    m.frames_received_total = 11;
    m.frames_sent_total = 12;
    m.bytes_received_total = 13;
    m.bytes_sent_total = UINT64_MAX;
    m.relays_total = 15;
    m.deliveries_total = 16;
    m.inbox_stored_total = 17;
    m.inbox_dropped_total = 18;
    m.acks_total = 31;
    m.redeliveries_total = 32;
    m.http_requests_total = 19;
    m.slow_consumer_closes_total = 20;
    m.loop_busy_max_us = 1234567;
    mh_metrics_error(&m, MH_ERR_BODY_TOO_LARGE);
    mh_metrics_error(&m, MH_ERR_BODY_TOO_LARGE);
    char *t = render(&m);
    assert_line(t, "msghub_connections 3");
    assert_line(t, "msghub_connections_total 10");
    assert_line(t, "msghub_frames_received_total 11");
    assert_line(t, "msghub_frames_sent_total 12");
    assert_line(t, "msghub_bytes_received_total 13");
    assert_line(t, "msghub_bytes_sent_total 18446744073709551615");
    assert_line(t, "msghub_relays_total 15");
    assert_line(t, "msghub_deliveries_total 16");
    assert_line(t, "msghub_inbox_stored_total 17");
    assert_line(t, "msghub_inbox_dropped_total 18");
    assert_line(t, "msghub_acks_total 31");
    assert_line(t, "msghub_redeliveries_total 32");
    assert_line(t, "msghub_http_requests_total 19");
    assert_line(t, "msghub_slow_consumer_closes_total 20");
    assert_line(t, "msghub_loop_busy_max_seconds 1.234567");
    assert_line(t, "msghub_errors_total{code=\"body_too_large\"} 2");
    assert_line(t, "msghub_errors_total{code=\"bad_json\"} 0");
    free(t);
}

static void test_render_histogram(void **state)
{
    mh_metrics_t m;
    mh_metrics_init(&m);
    /* 3 x 50us, 1 x 300us, 2 x 0.02s, 1 x 1s, 1 x 3s */
    const uint64_t obs[] = {50, 50, 50, 300, 20000, 20000, 1000000, 3000000};
    for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
        mh_metrics_observe_latency(&m, obs[i]);
    const uint64_t cum[MH_METRICS_LATENCY_BUCKETS] = {3, 3, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 7, 7};
    char *t = render(&m);
    const char *prev = t;
    for (int i = 0; i < MH_METRICS_LATENCY_BUCKETS; i++) {
        char line[128];
        snprintf(line, sizeof(line), "msghub_relay_latency_seconds_bucket{le=\"%s\"} %llu\n", le[i],
                 (unsigned long long)cum[i]);
        const char *at = strstr(t, line);
        if (!at)
            print_error("missing: %s", line);
        assert_non_null(at);
        assert_true(at >= prev); /* buckets in increasing order */
        prev = at;
    }
    assert_line(t, "msghub_relay_latency_seconds_bucket{le=\"+Inf\"} 8");
    assert_line(t, "msghub_relay_latency_seconds_count 8");
    assert_line(t, "msghub_relay_latency_seconds_sum 4.040450");
    free(t);
}

/* Rendering appends: what the buffer held stays in front. */
static void test_render_appends(void **state)
{
    mh_metrics_t m;
    mh_metrics_init(&m);
    mh_buf_t b;
    mh_buf_init(&b);
    mh_buf_puts(&b, "prefix\n");
    mh_metrics_render(&m, &b);
    assert_memory_equal(b.data, "prefix\n# HELP ", 14);
    size_t once = b.len;
    mh_metrics_render(&m, &b);
    assert_int_equal(b.len, once + (once - 7));
    mh_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_table),      cmocka_unit_test(test_init_and_errors),
        cmocka_unit_test(test_observe_buckets),  cmocka_unit_test(test_render_families),
        cmocka_unit_test(test_render_syntax),    cmocka_unit_test(test_render_values),
        cmocka_unit_test(test_render_histogram), cmocka_unit_test(test_render_appends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
