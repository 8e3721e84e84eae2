/*
 * Unit tests of token: issue and verify round trips, the expiry boundary,
 * tampering, a wrong secret, malformed input, clock skew, the random
 * source and the constant-time comparison.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/token.h"
#include "msghub/util.h"

#define SECRET "correct horse battery staple"
#define SLEN (sizeof(SECRET) - 1)
#define T0 1700000000u
#define TTL 86400u

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int verify(const char *tok, uint64_t now, uint64_t *id)
{
    return mh_token_verify(SECRET, SLEN, tok, strlen(tok), now, TTL, id);
}

static void test_format(void **state)
{
    char tok[MH_TOKEN_LEN + 1];
    memset(tok, 'Z', sizeof(tok));
    mh_token_issue(SECRET, SLEN, 42, T0, tok);
    assert_int_equal(strlen(tok), 64);
    for (size_t i = 0; i < 64; i++)
        assert_non_null(strchr(b64url, tok[i]));
    /* payload is id:u64be | issued:u64be: 42 and 1700000000 (0x6553f100) */
    assert_memory_equal(tok, "AAAAAAAAACoAAAAAZVPxA", 21);
    /* deterministic for the same inputs, different for another issue time */
    char again[MH_TOKEN_LEN + 1], later[MH_TOKEN_LEN + 1];
    mh_token_issue(SECRET, SLEN, 42, T0, again);
    mh_token_issue(SECRET, SLEN, 42, T0 + 1, later);
    assert_string_equal(tok, again);
    assert_string_not_equal(tok, later);
}

static void round_trip(uint64_t want)
{
    char tok[MH_TOKEN_LEN + 1];
    uint64_t id = 0;
    mh_token_issue(SECRET, SLEN, want, T0, tok);
    assert_int_equal(verify(tok, T0, &id), 0);
    assert_true(id == want);
    id = 0;
    assert_int_equal(verify(tok, T0 + TTL - 1, &id), 0);
    assert_true(id == want);
}

static void test_round_trip(void **state)
{
    round_trip(1);
    round_trip(2);
    round_trip(UINT64_C(9007199254740991));
    round_trip(UINT64_MAX);
}

static void test_expiry_boundary(void **state)
{
    char tok[MH_TOKEN_LEN + 1];
    uint64_t id = 99;
    mh_token_issue(SECRET, SLEN, 7, T0, tok);
    assert_int_equal(verify(tok, T0 + TTL - 1, &id), 0);
    assert_int_equal(id, 7);
    id = 99;
    assert_int_equal(verify(tok, T0 + TTL, &id), MH_EEXPIRED);
    assert_int_equal(id, 99); /* untouched on failure */
    assert_int_equal(verify(tok, T0 + TTL + 1, &id), MH_EEXPIRED);
    assert_int_equal(verify(tok, UINT64_MAX, &id), MH_EEXPIRED);
    /* ttl 0: expired the moment it is issued */
    assert_int_equal(mh_token_verify(SECRET, SLEN, tok, 64, T0, 0, &id), MH_EEXPIRED);
    /* a huge ttl does not overflow into "expired" */
    assert_int_equal(mh_token_verify(SECRET, SLEN, tok, 64, T0 + 5, UINT64_MAX, &id), 0);
}

static void test_future_skew(void **state)
{
    char tok[MH_TOKEN_LEN + 1];
    uint64_t id = 0;
    mh_token_issue(SECRET, SLEN, 5, T0 + 300, tok);
    assert_int_equal(verify(tok, T0, &id), 0); /* 300 s ahead: clock skew, accepted */
    assert_int_equal(id, 5);
    mh_token_issue(SECRET, SLEN, 5, T0 + 301, tok);
    assert_int_equal(verify(tok, T0, &id), MH_EINVAL);
    mh_token_issue(SECRET, SLEN, 5, UINT64_MAX, tok);
    assert_int_equal(verify(tok, T0, &id), MH_EINVAL);
}

/* Replaces tok[i] with another valid base64url character. */
static void flip(char *tok, size_t i)
{
    tok[i] = tok[i] == 'A' ? 'B' : 'A';
}

static void test_tampered(void **state)
{
    char good[MH_TOKEN_LEN + 1], tok[MH_TOKEN_LEN + 1];
    uint64_t id = 0;
    mh_token_issue(SECRET, SLEN, 1000, T0, good);
    /* every single-character change, in the payload (0..20) and the MAC (22..63) */
    for (size_t i = 0; i < MH_TOKEN_LEN; i++) {
        memcpy(tok, good, sizeof(tok));
        flip(tok, i);
        int rc = verify(tok, T0, &id);
        if (rc != MH_EBADSIG)
            print_error("flip at %zu: rc %d\n", i, rc);
        assert_int_equal(rc, MH_EBADSIG);
    }
    /* raising the id by one in the payload: the classic forgery */
    char forged[MH_TOKEN_LEN + 1];
    mh_token_issue(SECRET, SLEN, 1001, T0, forged);
    memcpy(tok, good, sizeof(tok));
    memcpy(tok, forged, 21); /* payload of 1001 with the MAC of 1000 */
    assert_int_equal(verify(tok, T0, &id), MH_EBADSIG);
    assert_int_equal(id, 0);
}

static void test_wrong_secret(void **state)
{
    char tok[MH_TOKEN_LEN + 1];
    uint64_t id = 0;
    mh_token_issue(SECRET, SLEN, 3, T0, tok);
    assert_int_equal(mh_token_verify("other", 5, tok, 64, T0, TTL, &id), MH_EBADSIG);
    assert_int_equal(mh_token_verify(SECRET, SLEN - 1, tok, 64, T0, TTL, &id), MH_EBADSIG);
    assert_int_equal(mh_token_verify(NULL, 0, tok, 64, T0, TTL, &id), MH_EBADSIG);
    assert_int_equal(id, 0);
    /* an empty secret still signs and verifies consistently */
    mh_token_issue(NULL, 0, 3, T0, tok);
    assert_int_equal(mh_token_verify("", 0, tok, 64, T0, TTL, &id), 0);
    assert_int_equal(id, 3);
    assert_int_equal(mh_token_verify(SECRET, SLEN, tok, 64, T0, TTL, &id), MH_EBADSIG);
}

static void test_malformed(void **state)
{
    char tok[MH_TOKEN_LEN + 2];
    uint64_t id = 0;
    mh_token_issue(SECRET, SLEN, 8, T0, tok);
    /* length 63 and 65 */
    assert_int_equal(mh_token_verify(SECRET, SLEN, tok, 63, T0, TTL, &id), MH_EINVAL);
    tok[64] = 'A';
    tok[65] = '\0';
    assert_int_equal(mh_token_verify(SECRET, SLEN, tok, 65, T0, TTL, &id), MH_EINVAL);
    tok[64] = '\0';
    assert_int_equal(mh_token_verify(SECRET, SLEN, tok, 0, T0, TTL, &id), MH_EINVAL);
    assert_int_equal(mh_token_verify(SECRET, SLEN, NULL, 64, T0, TTL, &id), MH_EINVAL);
    assert_int_equal(mh_token_verify(SECRET, SLEN, "", 0, T0, TTL, &id), MH_EINVAL);
    /* characters outside base64url, at the start, middle and end */
    static const char bad[] = {'+', '/', '=', ' ', '.', '\0', '\x80', '%'};
    static const size_t at[] = {0, 31, 63};
    for (size_t b = 0; b < sizeof(bad); b++) {
        for (size_t a = 0; a < 3; a++) {
            char t[MH_TOKEN_LEN + 1];
            memcpy(t, tok, sizeof(t));
            t[at[a]] = bad[b];
            assert_int_equal(mh_token_verify(SECRET, SLEN, t, 64, T0, TTL, &id), MH_EINVAL);
        }
    }
    assert_int_equal(id, 0);
    /* the original still verifies: the checks above did not depend on state */
    assert_int_equal(mh_token_verify(SECRET, SLEN, tok, 64, T0, TTL, &id), 0);
    assert_int_equal(id, 8);
}

static void test_id_zero(void **state)
{
    char tok[MH_TOKEN_LEN + 1];
    uint64_t id = 77;
    mh_token_issue(SECRET, SLEN, 0, T0, tok);
    assert_int_equal(verify(tok, T0, &id), MH_EINVAL);
    assert_int_equal(id, 77);
}

static void test_random(void **state)
{
    unsigned char a[32], b[32], zero[32] = {0};
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    assert_int_equal(mh_token_random(a, sizeof(a)), 0);
    assert_int_equal(mh_token_random(b, sizeof(b)), 0);
    assert_memory_not_equal(a, zero, sizeof(a));
    assert_memory_not_equal(a, b, sizeof(a));
    assert_int_equal(mh_token_random(a, 0), 0);
}

static void test_equal_ct(void **state)
{
    assert_true(mh_token_equal_ct("secret", 6, "secret", 6));
    assert_false(mh_token_equal_ct("secret", 6, "secreT", 6));
    assert_false(mh_token_equal_ct("Secret", 6, "secret", 6));
    /* a prefix is not equal, in either order */
    assert_false(mh_token_equal_ct("secret", 6, "secret-longer", 13));
    assert_false(mh_token_equal_ct("secret-longer", 13, "secret", 6));
    /* differing lengths even when the extra bytes are zero */
    assert_false(mh_token_equal_ct("ab\0", 3, "ab", 2));
    assert_true(mh_token_equal_ct("", 0, "", 0));
    assert_true(mh_token_equal_ct(NULL, 0, NULL, 0));
    assert_false(mh_token_equal_ct("a", 1, NULL, 0));
    assert_true(mh_token_equal_ct("a\0b", 3, "a\0b", 3));
    assert_false(mh_token_equal_ct("a\0b", 3, "a\0c", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),          cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_expiry_boundary), cmocka_unit_test(test_future_skew),
        cmocka_unit_test(test_tampered),        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_malformed),       cmocka_unit_test(test_id_zero),
        cmocka_unit_test(test_random),          cmocka_unit_test(test_equal_ct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
