/*
 * Unit tests of http_status: RFC 9110 reason phrases for every status the
 * hub sends (including each error code's), the status line, and the whole
 * refusal answer byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/http_status.h"

static void test_phrases_are_rfc_9110(void **state)
{
    (void)state;
    assert_string_equal(mh_http_reason(200), "OK");
    assert_string_equal(mh_http_reason(201), "Created");
    assert_string_equal(mh_http_reason(304), "Not Modified");
    assert_string_equal(mh_http_reason(400), "Bad Request");
    assert_string_equal(mh_http_reason(401), "Unauthorized");
    assert_string_equal(mh_http_reason(403), "Forbidden");
    assert_string_equal(mh_http_reason(404), "Not Found");
    assert_string_equal(mh_http_reason(405), "Method Not Allowed");
    assert_string_equal(mh_http_reason(411), "Length Required");
    assert_string_equal(mh_http_reason(413), "Content Too Large");
    assert_string_equal(mh_http_reason(414), "URI Too Long");
    assert_string_equal(mh_http_reason(415), "Unsupported Media Type");
    assert_string_equal(mh_http_reason(429), "Too Many Requests");
    assert_string_equal(mh_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(mh_http_reason(500), "Internal Server Error");
    assert_string_equal(mh_http_reason(503), "Service Unavailable");
}

static void test_unknown_status_gets_its_class(void **state)
{
    (void)state;
    assert_string_equal(mh_http_reason(418), "Client Error");
    assert_string_equal(mh_http_reason(599), "Server Error");
    assert_string_equal(mh_http_reason(299), "Success");
}

static void test_every_error_code_has_its_own_phrase(void **state)
{
    (void)state;
    for (int c = 0; c < MH_ERR__COUNT; c++) {
        const char *p = mh_http_reason(mh_err_http_status((mh_err_code_t)c));
        assert_string_not_equal(p, "Client Error");
        assert_string_not_equal(p, "Server Error");
    }
}

static void test_status_line_and_capacity(void **state)
{
    (void)state;
    char b[64];
    assert_int_equal(mh_http_status_line(b, sizeof(b), 414), 27);
    assert_string_equal(b, "HTTP/1.1 414 URI Too Long\r\n");
    assert_int_equal(mh_http_status_line(b, 27, 414), -1); /* no room for the NUL */
    assert_int_equal(mh_http_status_line(b, 28, 414), 27);
}

static void test_refusal_bytes(void **state)
{
    (void)state;
    mh_buf_t b;
    mh_buf_init(&b);
    mh_http_append_refusal(&b, 401, MH_ERR_UNAUTHORIZED, "no");
    const char *want_head = "HTTP/1.1 401 Unauthorized\r\n"
                            "content-type: application/json\r\n";
    assert_memory_equal(b.data, want_head, strlen(want_head));
    char *sep = strstr(b.data, "\r\n\r\n");
    assert_non_null(sep);
    assert_non_null(strstr(b.data, "www-authenticate: Bearer\r\nconnection: close\r\n\r\n"));
    const char *body = sep + 4;
    char len[64];
    snprintf(len, sizeof(len), "content-length: %zu\r\n", strlen(body));
    assert_non_null(strstr(b.data, len));
    assert_string_equal(body, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"no\"}}");
    mh_buf_free(&b);
    mh_buf_init(&b);
    mh_http_append_refusal(&b, 400, MH_ERR_BAD_REQUEST, "x");
    assert_null(strstr(b.data, "www-authenticate"));
    mh_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_phrases_are_rfc_9110),
        cmocka_unit_test(test_unknown_status_gets_its_class),
        cmocka_unit_test(test_every_error_code_has_its_own_phrase),
        cmocka_unit_test(test_status_line_and_capacity),
        cmocka_unit_test(test_refusal_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
