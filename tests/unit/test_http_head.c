/*
 * test_http_head: the classification of a new connection's first bytes
 * (src/core/http_head.c): wait for more, hand on, or refuse 414 / 431.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/http_head.h"

#define MAX 64

typedef struct head_case {
    const char *in;
    mh_http_head_t want;
} head_case_t;

/* Scans every case's input with the MAX limit; a failure names the input. */
static void check_cases(const head_case_t *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mh_http_head_t got = mh_http_head_scan(c[i].in, strlen(c[i].in), MAX);
        if (got != c[i].want)
            fail_msg("\"%s\": got %d, want %d", c[i].in, (int)got, (int)c[i].want);
    }
}

static void test_whole_heads_are_ready(void **state)
{
    (void)state;
    static const head_case_t cases[] = {
        {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", MH_HTTP_HEAD_READY},
        {"GET / HTTP/1.1\n\n", MH_HTTP_HEAD_READY},
        /* the body or a pipelined request may follow in the same bytes */
        {"POST /relay HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET", MH_HTTP_HEAD_READY},
    };
    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_partial_heads_wait(void **state)
{
    (void)state;
    static const head_case_t cases[] = {
        {"G", MH_HTTP_HEAD_WAIT},
        {"GET", MH_HTTP_HEAD_WAIT},
        {"GET /healthz", MH_HTTP_HEAD_WAIT},
        {"GET / HTTP/1.1\r\n", MH_HTTP_HEAD_WAIT},
        {"GET / HTTP/1.1\r\nHost: x\r\n", MH_HTTP_HEAD_WAIT},
        {"GET / HTTP/1.1\r\nHost: x\r\n\r", MH_HTTP_HEAD_WAIT},
    };
    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_what_is_not_http11_is_handed_on(void **state)
{
    (void)state;
    static const head_case_t cases[] = {
        {"\x16\x03\x01\x00\xa5", MH_HTTP_HEAD_READY}, /* TLS */
        {"junk junk", MH_HTTP_HEAD_READY},
        {"get / HTTP/1.1", MH_HTTP_HEAD_READY},
        {" GET", MH_HTTP_HEAD_READY},
        {"GET\t/", MH_HTTP_HEAD_READY},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZ", MH_HTTP_HEAD_READY}, /* no method */
        /* HTTP/0.9: a whole request line without a version, answered 400 later */
        {"GET /healthz\r\n", MH_HTTP_HEAD_READY},
        /* the HTTP/2 preface ends with empty lines */
        {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", MH_HTTP_HEAD_READY},
    };
    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_header_line_without_colon_is_refused(void **state)
{
    (void)state;
    static const head_case_t cases[] = {
        {"GET / HTTP/1.1\r\nHost x\r\n\r\n", MH_HTTP_HEAD_NO_COLON},
        {"GET / HTTP/1.1\r\nHost: x\r\nBad\r\n", MH_HTTP_HEAD_NO_COLON},
        {"GET / HTTP/1.1\nHost x\n", MH_HTTP_HEAD_NO_COLON},
        /* a line not yet ended may still get its colon */
        {"GET / HTTP/1.1\r\nHost", MH_HTTP_HEAD_WAIT},
        /* after the empty line it is the body's business */
        {"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab\r\n", MH_HTTP_HEAD_READY},
    };
    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_heads_past_the_limit_are_refused(void **state)
{
    (void)state;
    char buf[MAX + 1];
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "GET /", 5);
    assert_int_equal(mh_http_head_scan(buf, MAX, MAX), MH_HTTP_HEAD_URI_TOO_LONG);
    assert_int_equal(mh_http_head_scan(buf, MAX - 1, MAX), MH_HTTP_HEAD_WAIT);
    const char *line = "GET / HTTP/1.1\r\nX: ";
    memcpy(buf, line, strlen(line));
    assert_int_equal(mh_http_head_scan(buf, MAX, MAX), MH_HTTP_HEAD_FIELDS_TOO_BIG);
    assert_int_equal(mh_http_head_scan(buf, MAX - 1, MAX), MH_HTTP_HEAD_WAIT);
    memcpy(buf + MAX - 4, "\r\n\r\n", 4); /* ends exactly at the limit: fits */
    assert_int_equal(mh_http_head_scan(buf, MAX, MAX), MH_HTTP_HEAD_READY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_heads_are_ready),
        cmocka_unit_test(test_partial_heads_wait),
        cmocka_unit_test(test_what_is_not_http11_is_handed_on),
        cmocka_unit_test(test_header_line_without_colon_is_refused),
        cmocka_unit_test(test_heads_past_the_limit_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
