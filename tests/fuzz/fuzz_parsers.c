/*
 * fuzz_parsers: one libFuzzer target for every parser of outside input:
 * the JSON scanner and its span walkers, WebSocket and HTTP request
 * validation, session tokens, query strings, and the envelopes and batches
 * instances send each other (the Redis replies: fuzz_redis.c). It checks invariants as it goes
 * (spans inside the input, ids in range, a parsed relay's body within the limit) and aborts on a
 * breach.
 *
 * Built with clang -fsanitize=fuzzer when MSGHUB_FUZZ is on, once with
 * every parser (fuzz_parsers) and once per parser (fuzz_json, fuzz_requests,
 * fuzz_envelopes, fuzz_token, fuzz_utf8, fuzz_query: MH_FUZZ_ONLY picks it), which
 * scripts/fuzz runs; otherwise driver.c replays the seed corpus plus
 * deterministic mutations in ctest.
 */
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "msghub/codec.h"
#include "msghub/json.h"
#include "msghub/query.h"
#include "msghub/token.h"

/* 0: every parser; 1..7: only one (the per-parser binaries of scripts/fuzz) */
#ifdef MH_FUZZ_ONLY
#define ONLY MH_FUZZ_ONLY
#else
#define ONLY 0
#endif

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static int inside(const char *base, size_t n, const char *p, size_t len)
{
    return p >= base && len <= n && (size_t)(p - base) <= n - len;
}

static void walk_json(const char *s, size_t n)
{
    if (mh_json_validate(s, n, MH_JSON_MAX_DEPTH) != MH_OK) {
        mh_json_span_t v;
        if (mh_json_find_shallow(s, n, "ref", &v) == 0)
            CHECK(inside(s, n, v.p, v.len));
        return;
    }
    mh_json_span_t root = mh_json_root(s, n), k, v;
    CHECK(inside(s, n, root.p, root.len));
    size_t pos = 0;
    if (root.kind == MH_JSON_OBJECT)
        while (mh_json_object_next(&root, &pos, &k, &v))
            CHECK(inside(s, n, k.p, k.len) && inside(s, n, v.p, v.len));
    else if (root.kind == MH_JSON_ARRAY)
        while (mh_json_array_next(&root, &pos, &v)) {
            uint64_t id;
            CHECK(inside(s, n, v.p, v.len));
            if (mh_json_parse_id(&v, &id) == 0)
                CHECK(id > 0);
        }
}

/*
 * Limits well under scripts/fuzz's -max_len, so inputs over each limit
 * (too many receivers, too big a body) are reachable too.
 */
#define FUZZ_MAX_RECEIVERS 64
#define FUZZ_MAX_BODY 1024

static void parse_requests(const char *s, size_t n)
{
    mh_codec_limits_t lim = {FUZZ_MAX_RECEIVERS, FUZZ_MAX_BODY};
    mh_request_t req;
    mh_codec_error_t err;
    if (mh_codec_parse_ws(s, n, &lim, &req, &err) == 0 && req.type == MH_REQ_RELAY) {
        CHECK(req.n_receivers >= 1 && req.n_receivers <= lim.max_receivers);
        CHECK(req.body_len <= lim.max_body_bytes && inside(s, n, req.body, req.body_len));
        for (size_t i = 0; i < req.n_receivers; i++)
            CHECK(req.receivers[i] > 0);
        size_t m = mh_codec_dedupe(req.receivers, req.n_receivers);
        for (size_t i = 1; i < m; i++)
            CHECK(req.receivers[i - 1] < req.receivers[i]);
    }
    if (req.ref)
        CHECK(inside(s, n, req.ref, req.ref_len));
    mh_codec_request_free(&req);
    if (mh_codec_parse_http_relay(s, n, &lim, &req, &err) == 0)
        CHECK(!req.has_from || req.from > 0);
    mh_codec_request_free(&req);
    (void)mh_codec_parse_http_sessions(s, n, &err);
}

static void parse_envelopes(const char *s, size_t n)
{
    mh_envelope_t env;
    if (mh_codec_envelope_parse(s, n, &env) == 0) {
        CHECK(env.n_ids >= 1);
        if (env.type == MH_ENV_MESSAGE)
            CHECK(env.frame_len > 0 && inside(s, n, env.frame, env.frame_len));
        mh_codec_envelope_free(&env);
    }
    size_t pos = 0, len;
    const char *sub;
    while (mh_codec_batch_next(s, n, &pos, &sub, &len) == 1)
        CHECK(inside(s, n, sub, len) && pos <= n);
}

static void verify_token(const char *s, size_t n)
{
    uint64_t id;
    static const char secret[] = "fuzz";
    if (mh_token_verify(secret, 4, s, n, 1764288000, 86400, &id) == 0)
        CHECK(id > 0);
}

/* The UTF-8 check close reasons go through (ws.c): agrees with the JSON scanner on strings. */
static void check_utf8(const char *s, size_t n)
{
    int ok = mh_json_utf8_valid(s, n);
    if (memchr(s, '"', n) || memchr(s, '\\', n) || memchr(s, 0, n))
        return; /* not a plain JSON string body */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return;
    char *q = malloc(n + 2);
    q[0] = '"';
    memcpy(q + 1, s, n);
    q[n + 1] = '"';
    CHECK((mh_json_validate(q, n + 2, MH_JSON_MAX_DEPTH) == MH_OK) == ok);
    free(q);
}

/* 1 when d[n] is 1..20 digits not above 2^64-1: what ?since must accept. */
static int since_ok(const char *d, size_t n)
{
    static const char max[] = "18446744073709551615";
    if (n == 0 || n > MH_QUERY_SINCE_DIGITS_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (d[i] < '0' || d[i] > '9')
            return 0;
    return n < sizeof(max) - 1 || memcmp(d, max, n) <= 0;
}

/* One fragment against one name, out of cap bytes: the result agrees with the fragment. */
static void query_fragment(const char *f, size_t n, const char *name, size_t cap)
{
    char out[256];
    size_t nlen = strlen(name);
    int named = n >= nlen && memcmp(f, name, nlen) == 0, bare = named && n == nlen;
    int valued = named && n > nlen && f[nlen] == '=';
    int r = mh_query_match(f, n, name, out, cap);
    if (r == MH_QUERY_ABSENT) {
        CHECK(!bare && !valued);
        return;
    }
    CHECK(bare || valued);
    if (r == MH_QUERY_TOO_LONG) {
        CHECK(valued && n - nlen - 1 >= cap);
        return;
    }
    CHECK(r >= 0 && (size_t)r < cap && out[r] == '\0');
    CHECK(bare ? r == 0 : (size_t)r == n - nlen - 1 && memcmp(out, f + nlen + 1, (size_t)r) == 0);
    int a = -1;
    if (mh_query_parse_ack(r, out, &a) == 0)
        CHECK((a == 1 && r == 4 && !memcmp(out, "auto", 4)) ||
              (a == 0 && r == 6 && !memcmp(out, "client", 6)));
    uint64_t since;
    int ok = mh_query_parse_since(out, (size_t)r, &since) == 0;
    CHECK(ok == since_ok(out, (size_t)r) && (!ok || fuzz_reprints(since, out, (size_t)r)));
    int t = mh_query_token_len(r);
    CHECK(r > 0 ? t == r : t == -1);
}

/*
 * A query string: the first byte picks the value buffer size (1..256), the
 * rest is split at '&' as libwebsockets does, each fragment tried against
 * the names the hub reads.
 */
static void parse_query(const char *s, size_t n)
{
    static const char *const names[] = {"token", "ack", "since", ""};
    if (n == 0)
        return;
    size_t cap = 1 + (unsigned char)s[0];
    const char *p = s + 1, *end = s + n;
    for (;;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *fe = amp ? amp : end;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            query_fragment(p, (size_t)(fe - p), names[i], cap);
        if (!amp)
            break;
        p = amp + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy, so reading past the end is caught by ASan */
    char *s = malloc(size ? size : 1);
    if (size)
        memcpy(s, data, size);
    if (!ONLY || ONLY == 1)
        walk_json(s, size);
    if (!ONLY || ONLY == 2)
        parse_requests(s, size);
    if (!ONLY || ONLY == 3)
        parse_envelopes(s, size);
    if (!ONLY || ONLY == 4)
        verify_token(s, size);
    if (!ONLY || ONLY == 5)
        check_utf8(s, size);
    if (!ONLY || ONLY == 6)
        parse_query(s, size);
    free(s);
    return 0;
}
