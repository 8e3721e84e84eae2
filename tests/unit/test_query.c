/*
 * Unit tests of query: matching fragments (name=value, a bare name, other
 * names and prefixes of them, the length rule), and the ack, since and token
 * value rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/query.h"

static int match(const char *frag, const char *name, char *out, size_t len)
{
    return mh_query_match(frag, strlen(frag), name, out, len);
}

static void test_match_value(void **state)
{
    char out[16];
    assert_int_equal(match("token=abc", "token", out, sizeof(out)), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(match("token=", "token", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(match("token", "token", out, sizeof(out)), 0); /* bare: present, empty */
    assert_string_equal(out, "");
    assert_int_equal(match("a=b=c", "a", out, sizeof(out)), 3);
    assert_string_equal(out, "b=c");
}

static void test_match_other(void **state)
{
    char out[16] = "untouched";
    assert_int_equal(match("tokens=abc", "token", out, sizeof(out)), MH_QUERY_ABSENT);
    assert_int_equal(match("tok=abc", "token", out, sizeof(out)), MH_QUERY_ABSENT);
    assert_int_equal(match("", "token", out, sizeof(out)), MH_QUERY_ABSENT);
    assert_int_equal(match("since=1", "token", out, sizeof(out)), MH_QUERY_ABSENT);
    assert_string_equal(out, "untouched");
}

static void test_match_length_rule(void **state)
{
    char out[4];
    assert_int_equal(match("ack=abc", "ack", out, sizeof(out)), 3); /* fits with its NUL */
    assert_int_equal(match("ack=abcd", "ack", out, sizeof(out)), MH_QUERY_TOO_LONG);
    assert_int_equal(match("ack=abcdefgh", "ack", out, 1), MH_QUERY_TOO_LONG);
    assert_int_equal(match("ack=", "ack", out, 1), 0);
}

static void test_ack(void **state)
{
    int a = 7;
    assert_int_equal(mh_query_parse_ack(MH_QUERY_ABSENT, "", &a), 0);
    assert_int_equal(a, 0);
    assert_int_equal(mh_query_parse_ack(4, "auto", &a), 0);
    assert_int_equal(a, 1);
    assert_int_equal(mh_query_parse_ack(6, "client", &a), 0);
    assert_int_equal(a, 0);
    assert_int_equal(mh_query_parse_ack(0, "", &a), -1);
    assert_int_equal(mh_query_parse_ack(5, "autox", &a), -1);
    assert_int_equal(mh_query_parse_ack(3, "aut", &a), -1);
    assert_int_equal(mh_query_parse_ack(6, "auto\0x", &a), -1); /* the whole value counts */
    assert_int_equal(mh_query_parse_ack(MH_QUERY_TOO_LONG, "", &a), -1);
}

static int since(const char *v, uint64_t *out)
{
    return mh_query_parse_since(v, strlen(v), out);
}

static void test_since(void **state)
{
    uint64_t x = 0;
    assert_int_equal(since("0", &x), 0);
    assert_int_equal(x, 0);
    assert_int_equal(since("42", &x), 0);
    assert_int_equal(x, 42);
    assert_int_equal(since("18446744073709551615", &x), 0);
    assert_true(x == UINT64_MAX);
    assert_int_equal(since("00000000000000000007", &x), 0); /* 20 digits */
    assert_int_equal(x, 7);
    assert_int_equal(since("18446744073709551616", &x), -1);
    assert_int_equal(since("000000000000000000007", &x), -1); /* 21 digits */
    assert_int_equal(since("", &x), -1);
    assert_int_equal(since("-1", &x), -1);
    assert_int_equal(since("1 ", &x), -1);
    assert_int_equal(since("0x10", &x), -1);
    assert_int_equal(mh_query_parse_since("5\0001", 3, &x), -1);
}

static void test_token_len(void **state)
{
    assert_int_equal(mh_query_token_len(64), 64);
    assert_int_equal(mh_query_token_len(0), -1);
    assert_int_equal(mh_query_token_len(MH_QUERY_ABSENT), -1);
    assert_int_equal(mh_query_token_len(MH_QUERY_TOO_LONG), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_value),
        cmocka_unit_test(test_match_other),
        cmocka_unit_test(test_match_length_rule),
        cmocka_unit_test(test_ack),
        cmocka_unit_test(test_since),
        cmocka_unit_test(test_token_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
