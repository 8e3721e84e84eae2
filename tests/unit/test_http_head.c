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

static mh_http_head_t scan(const char *s)
{
    return mh_http_head_scan(s, strlen(s), MAX);
}

static void test_whole_heads_are_ready(void **state)
{
    (void)state;
    assert_int_equal(scan("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), MH_HTTP_HEAD_READY);
    assert_int_equal(scan("GET / HTTP/1.1\n\n"), MH_HTTP_HEAD_READY);
    /* the body or a pipelined request may follow in the same bytes */
    assert_int_equal(scan("POST /relay HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET"),
                     MH_HTTP_HEAD_READY);
}

static void test_partial_heads_wait(void **state)
{
    (void)state;
    assert_int_equal(scan("G"), MH_HTTP_HEAD_WAIT);
    assert_int_equal(scan("GET"), MH_HTTP_HEAD_WAIT);
    assert_int_equal(scan("GET /healthz"), MH_HTTP_HEAD_WAIT);
    assert_int_equal(scan("GET / HTTP/1.1\r\n"), MH_HTTP_HEAD_WAIT);
    assert_int_equal(scan("GET / HTTP/1.1\r\nHost: x\r\n"), MH_HTTP_HEAD_WAIT);
    assert_int_equal(scan("GET / HTTP/1.1\r\nHost: x\r\n\r"), MH_HTTP_HEAD_WAIT);
}

static void test_what_is_not_http11_is_handed_on(void **state)
{
    (void)state;
    assert_int_equal(scan("\x16\x03\x01\x00\xa5"), MH_HTTP_HEAD_READY); /* TLS */
    assert_int_equal(scan("junk junk"), MH_HTTP_HEAD_READY);
    assert_int_equal(scan("get / HTTP/1.1"), MH_HTTP_HEAD_READY);
    assert_int_equal(scan(" GET"), MH_HTTP_HEAD_READY);
    assert_int_equal(scan("GET\t/"), MH_HTTP_HEAD_READY);
    assert_int_equal(scan("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), MH_HTTP_HEAD_READY); /* no method */
    /* HTTP/0.9: a whole request line without a version, answered 400 later */
    assert_int_equal(scan("GET /healthz\r\n"), MH_HTTP_HEAD_READY);
    /* the HTTP/2 preface ends with empty lines */
    assert_int_equal(scan("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), MH_HTTP_HEAD_READY);
}

static void test_header_line_without_colon_is_refused(void **state)
{
    (void)state;
    assert_int_equal(scan("GET / HTTP/1.1\r\nHost x\r\n\r\n"), MH_HTTP_HEAD_NO_COLON);
    assert_int_equal(scan("GET / HTTP/1.1\r\nHost: x\r\nBad\r\n"), MH_HTTP_HEAD_NO_COLON);
    assert_int_equal(scan("GET / HTTP/1.1\nHost x\n"), MH_HTTP_HEAD_NO_COLON);
    /* a line not yet ended may still get its colon */
    assert_int_equal(scan("GET / HTTP/1.1\r\nHost"), MH_HTTP_HEAD_WAIT);
    /* after the empty line it is the body's business */
    assert_int_equal(scan("POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab\r\n"),
                     MH_HTTP_HEAD_READY);
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
