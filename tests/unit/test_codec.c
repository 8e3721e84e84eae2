/*
 * Unit tests of codec: every request type, every refusal documented in
 * docs/PROTOCOL-NOTES.md with its code, the order of the checks and the
 * ref echo, byte-exact body spans, the receiver and body limits at their
 * boundaries, the HTTP relay and sessions bodies, dedupe, and the exact
 * text of every frame and response the hub writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/codec.h"
#include "msghub/json.h"

static const mh_codec_limits_t LIM = {255, 1048576};

/* ---- helpers ---- */

static void assert_in_text(const char *p, size_t len, const char *s, size_t n)
{
    assert_true(p >= s && p + len <= s + n);
}

static void assert_ref(const mh_request_t *req, const char *s, const char *want)
{
    if (!want) {
        assert_null(req->ref);
        return;
    }
    assert_non_null(req->ref);
    assert_int_equal(req->ref_len, strlen(want));
    assert_memory_equal(req->ref, want, req->ref_len);
    assert_in_text(req->ref, req->ref_len, s, strlen(s));
}

static void ws_ok(const char *s, const mh_codec_limits_t *lim, mh_request_t *req)
{
    mh_codec_error_t err;
    memset(&err, 0, sizeof(err));
    if (mh_codec_parse_ws(s, strlen(s), lim, req, &err) != 0)
        fail_msg("refused (%s: %s): %s", mh_err_name(err.code), err.message, s);
}

/* Expects a refusal with code, the ref echoed (NULL: none) and, if given, the message. */
static void ws_err(const char *s, const mh_codec_limits_t *lim, mh_err_code_t code, const char *ref,
                   const char *message)
{
    mh_request_t req;
    mh_codec_error_t err;
    memset(&err, 0, sizeof(err));
    err.code = MH_ERR__COUNT;
    int rc = mh_codec_parse_ws(s, strlen(s), lim, &req, &err);
    if (rc != -1)
        fail_msg("accepted: %s", s);
    if (err.code != code)
        fail_msg("got %s (%s), want %s: %s", mh_err_name(err.code), err.message, mh_err_name(code),
                 s);
    assert_true(err.message[0] != '\0');
    assert_ref(&req, s, ref);
    if (message)
        assert_string_equal(err.message, message);
    mh_codec_request_free(&req);
}

static void http_err(const char *s, const mh_codec_limits_t *lim, mh_err_code_t code,
                     const char *message)
{
    mh_request_t req;
    mh_codec_error_t err;
    memset(&err, 0, sizeof(err));
    err.code = MH_ERR__COUNT;
    int rc = mh_codec_parse_http_relay(s, strlen(s), lim, &req, &err);
    if (rc != -1)
        fail_msg("accepted: %s", s);
    if (err.code != code)
        fail_msg("got %s (%s), want %s: %s", mh_err_name(err.code), err.message, mh_err_name(code),
                 s);
    if (message)
        assert_string_equal(err.message, message);
    assert_int_equal(req.has_from, 0);
    mh_codec_request_free(&req);
}

static void assert_body(const mh_request_t *req, const char *s, const char *want)
{
    assert_non_null(req->body);
    assert_int_equal(req->body_len, strlen(want));
    assert_memory_equal(req->body, want, req->body_len);
    assert_in_text(req->body, req->body_len, s, strlen(s));
}

static char *cat3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc + 1);
    return s;
}

static char *deep_arrays(int n)
{
    char *s = malloc((size_t)n * 2 + 1);
    memset(s, '[', (size_t)n);
    memset(s + n, ']', (size_t)n);
    s[2 * n] = '\0';
    return s;
}

/* "[1,2,...,n]" */
static char *id_list(size_t n, uint64_t first, uint64_t step)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_buf_puts(&b, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            mh_buf_puts(&b, ",");
        mh_buf_u64(&b, first + i * step);
    }
    mh_buf_puts(&b, "]");
    return b.data;
}

/* ---- WebSocket requests ---- */

static void test_ws_simple_types(void **state)
{
    struct {
        const char *text;
        mh_req_type_t type;
        const char *ref;
    } cases[] = {
        {"{\"type\":\"identity\"}", MH_REQ_IDENTITY, NULL},
        {"{\"type\":\"list\"}", MH_REQ_LIST, NULL},
        {"{\"type\":\"ping\"}", MH_REQ_PING, NULL},
        {" {\"type\" : \"ping\" } ", MH_REQ_PING, NULL},
        {"{\"type\":\"identity\",\"ref\":\"id-1\"}", MH_REQ_IDENTITY, "\"id-1\""},
        {"{\"ref\":5,\"type\":\"list\"}", MH_REQ_LIST, "5"},
        {"{\"type\":\"ping\",\"ref\":-1.5e3}", MH_REQ_PING, "-1.5e3"},
        /* unknown fields are ignored, whatever they hold */
        {"{\"type\":\"ping\",\"x\":[1,{\"y\":null}],\"body\":{}}", MH_REQ_PING, NULL},
        /* relay fields on other types are not looked at */
        {"{\"type\":\"identity\",\"receivers\":\"junk\",\"body\":1}", MH_REQ_IDENTITY, NULL},
        {"{\"type\":\"list\",\"receivers\":[0,-1]}", MH_REQ_LIST, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mh_request_t req;
        ws_ok(cases[i].text, &LIM, &req);
        assert_int_equal(req.type, cases[i].type);
        assert_ref(&req, cases[i].text, cases[i].ref);
        assert_null(req.receivers);
        assert_int_equal(req.n_receivers, 0);
        assert_null(req.body);
        mh_codec_request_free(&req);
    }
}

static void test_ws_relay(void **state)
{
    const char *s = "{\"type\":\"relay\",\"receivers\":[7, 19,7 ,18446744073709551615],"
                    "\"body\":\"hi\"}";
    mh_request_t req;
    ws_ok(s, &LIM, &req);
    assert_int_equal(req.type, MH_REQ_RELAY);
    assert_null(req.ref);
    assert_int_equal(req.n_receivers, 4); /* duplicates kept as sent */
    assert_true(req.receivers[0] == 7);
    assert_true(req.receivers[1] == 19);
    assert_true(req.receivers[2] == 7);
    assert_true(req.receivers[3] == UINT64_MAX);
    assert_body(&req, s, "\"hi\"");
    assert_int_equal(req.has_from, 0);
    mh_codec_request_free(&req);
    assert_null(req.receivers);
    assert_int_equal(req.n_receivers, 0);
    mh_codec_request_free(&req); /* twice is harmless */

    /* any order of members, ref kept verbatim */
    s = "{\"body\":null,\"ref\":\"r\\\"1\",\"receivers\":[3],\"type\":\"relay\"}";
    ws_ok(s, &LIM, &req);
    assert_int_equal(req.type, MH_REQ_RELAY);
    assert_ref(&req, s, "\"r\\\"1\"");
    assert_int_equal(req.n_receivers, 1);
    assert_true(req.receivers[0] == 3);
    assert_body(&req, s, "null");
    mh_codec_request_free(&req);
}

static void test_ws_body_is_byte_exact(void **state)
{
    const char *body = "{\"a\": 123456789012345678901234567890, \"b\":\"\\u0000\"}";
    char *s = cat3("{\"type\":\"relay\",\"receivers\":[1],\"body\":  ", body, "  ,\"ref\":\"e\"}");
    mh_request_t req;
    ws_ok(s, &LIM, &req);
    assert_body(&req, s, body);
    assert_ptr_equal(req.body, s + strlen("{\"type\":\"relay\",\"receivers\":[1],\"body\":  "));
    assert_ref(&req, s, "\"e\"");
    mh_codec_request_free(&req);
    free(s);

    const char *bodies[] = {
        "0",
        "-0.0e-0",
        "18446744073709551616",
        "true",
        "false",
        "\"\"",
        "\"\\ud83d\\ude00 \xf0\x9f\x98\x80 \\\\ \\/\"",
        "[ ]",
        "[1, \"]\", {\"}\": \"[\\\"\"}, [[[]]]]",
        "{ \"body\" : { \"body\" : 1 } }",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        s = cat3("{\"type\":\"relay\",\"body\":\n", bodies[i], "\t,\"receivers\":[2]}");
        ws_ok(s, &LIM, &req);
        assert_body(&req, s, bodies[i]);
        mh_codec_request_free(&req);
        free(s);
    }
}

static void test_ws_bad_json(void **state)
{
    const char *cases[] = {
        "",
        " ",
        "{",
        "{\"type\":\"ping\"",
        "{\"type\":\"ping\",}",
        "{\"type\":'ping'}",
        "{\"type\":\"ping\"} {}",
        "{\"type\":\"ping\"}x",
        "{\"type\":\"relay\",\"receivers\":[1],\"body\":01}",
        "{\"type\":\"relay\",\"receivers\":[1],\"body\":\"\xfe\xff\"}",
        "{\"type\":\"relay\",\"receivers\":[1],\"body\":\"\xed\xa0\x80\"}",
        "{\"type\":\"ping\",\"ref\":\"\xc0\x80\"}",
        "{\"type\":\"ping\",\"ref\":\"r\",", /* looks like it has a ref */
        "{\"ref\":\"r\",\"type\":\"ping\",\"x\":tru}",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ws_err(cases[i], &LIM, MH_ERR_BAD_JSON, NULL, NULL);
}

#define DEPTH_MSG "JSON nested deeper than 64 levels"

static void test_ws_depth(void **state)
{
    char *d63 = deep_arrays(63), *d64 = deep_arrays(64), *d100 = deep_arrays(100);
    /* the object is level 1: 63 more arrays are level 64, allowed */
    char *s = cat3("{\"type\":\"ping\",\"ref\":\"ok\",\"x\":", d63, "}");
    mh_request_t req;
    ws_ok(s, &LIM, &req);
    assert_int_equal(req.type, MH_REQ_PING);
    mh_codec_request_free(&req);
    free(s);

    s = cat3("{\"type\":\"ping\",\"x\":", d64, "}");
    ws_err(s, &LIM, MH_ERR_BAD_REQUEST, NULL, DEPTH_MSG);
    free(s);
    ws_err(d100, &LIM, MH_ERR_BAD_REQUEST, NULL, DEPTH_MSG);

    /* inside the body too, with the ref echoed wherever it stands */
    s = cat3("{\"type\":\"relay\",\"ref\":\"deep\",\"receivers\":[1],\"body\":", d100, "}");
    ws_err(s, &LIM, MH_ERR_BAD_REQUEST, "\"deep\"", DEPTH_MSG);
    free(s);
    s = cat3("{\"type\":\"relay\",\"receivers\":[1],\"body\":[\"]]\",", d100, "],\"ref\":17}");
    ws_err(s, &LIM, MH_ERR_BAD_REQUEST, "17", DEPTH_MSG);
    free(s);
    /* a ref that is not a string or number is not echoed; the error stays depth */
    s = cat3("{\"type\":\"ping\",\"ref\":[1],\"x\":", d100, "}");
    ws_err(s, &LIM, MH_ERR_BAD_REQUEST, NULL, DEPTH_MSG);
    free(s);
    /* a nested "ref" is not the request's ref */
    s = cat3("{\"type\":\"ping\",\"x\":{\"ref\":\"inner\",\"y\":", d100, "}}");
    ws_err(s, &LIM, MH_ERR_BAD_REQUEST, NULL, DEPTH_MSG);
    free(s);
    /* too deep and not an object at the top */
    s = cat3("[{\"ref\":1},", d100, "]");
    ws_err(s, &LIM, MH_ERR_BAD_REQUEST, NULL, DEPTH_MSG);
    free(s);
    free(d63);
    free(d64);
    free(d100);
}

static void test_ws_not_object(void **state)
{
    const char *cases[] = {"[]",       "\"ping\"", "1", "null", "true", "[{\"type\":\"ping\"}]",
                           "  \"x\"  "};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ws_err(cases[i], &LIM, MH_ERR_BAD_REQUEST, NULL, NULL);
}

static void test_ws_type(void **state)
{
    const char *bad[] = {"{}",
                         "{\"typ\":\"ping\"}",
                         "{\"type\":5}",
                         "{\"type\":null}",
                         "{\"type\":[\"ping\"]}",
                         "{\"type\":true}",
                         "{\"type\":{\"t\":\"ping\"}}",
                         "{\"Type\":\"ping\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ws_err(bad[i], &LIM, MH_ERR_BAD_REQUEST, NULL, NULL);
    /* a valid ref is echoed by a type error */
    ws_err("{\"ref\":\"r9\"}", &LIM, MH_ERR_BAD_REQUEST, "\"r9\"", NULL);
    ws_err("{\"type\":5,\"ref\":7}", &LIM, MH_ERR_BAD_REQUEST, "7", NULL);

    const char *unknown[] = {"Ping",  "PING", "",      "hello",        "message", "relayed",
                             "error", "pong", "ping ", "relay\\u0000", "acked",   "Ack"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        char *s = cat3("{\"type\":\"", unknown[i], "\"}");
        ws_err(s, &LIM, MH_ERR_UNKNOWN_TYPE, NULL, NULL);
        free(s);
    }
    ws_err("{\"type\":\"nope\",\"ref\":\"u1\"}", &LIM, MH_ERR_UNKNOWN_TYPE, "\"u1\"", NULL);
    ws_err("{\"ref\":-12,\"type\":\"nope\"}", &LIM, MH_ERR_UNKNOWN_TYPE, "-12", NULL);
}

static void test_ws_ref(void **state)
{
    const char *good[] = {"1.50",
                          "123456789012345678901234567890",
                          "-0",
                          "1e3",
                          "0",
                          "\"\"",
                          "\"a\\u00e9\\\"b\\u0000\"",
                          "\"caf\xc3\xa9 \xf0\x9f\x98\x80\""};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char *s = cat3("{\"type\":\"nope\",\"ref\":", good[i], "}");
        ws_err(s, &LIM, MH_ERR_UNKNOWN_TYPE, good[i], NULL);
        free(s);
        s = cat3("{\"type\":\"identity\",\"ref\":  ", good[i], "  }");
        mh_request_t req;
        ws_ok(s, &LIM, &req);
        assert_ref(&req, s, good[i]);
        mh_codec_request_free(&req);
        free(s);
    }

    const char *bad[] = {"true", "false", "null", "[1]", "{\"r\":1}", "[]"};
    const char *types[] = {"ping", "identity", "list", "relay", "nope"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
            char head[64];
            snprintf(head, sizeof(head), "{\"type\":\"%s\",\"ref\":", types[t]);
            char *s = cat3(head, bad[i], ",\"receivers\":[1],\"body\":1}");
            ws_err(s, &LIM, MH_ERR_BAD_REQUEST, NULL, "'ref' must be a string or a number");
            free(s);
        }
    }
    /* ref is checked before type */
    ws_err("{\"ref\":null}", &LIM, MH_ERR_BAD_REQUEST, NULL, "'ref' must be a string or a number");
}

static void test_ws_receivers_refused(void **state)
{
    const char *shape[] = {"",
                           ",\"receivers\":7",
                           ",\"receivers\":\"1\"",
                           ",\"receivers\":{}",
                           ",\"receivers\":null",
                           ",\"receivers\":[]",
                           ",\"receivers\":[ ]"};
    for (size_t i = 0; i < sizeof(shape) / sizeof(shape[0]); i++) {
        char *s = cat3("{\"type\":\"relay\",\"ref\":\"a\"", shape[i], ",\"body\":1}");
        ws_err(s, &LIM, MH_ERR_BAD_REQUEST, "\"a\"", NULL);
        free(s);
    }
    const char *values[] = {"0",
                            "-1",
                            "-0",
                            "1.5",
                            "1.0",
                            "1e3",
                            "1E0",
                            "\"7\"",
                            "18446744073709551616",
                            "99999999999999999999",
                            "null",
                            "true",
                            "[1]",
                            "{}"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char *s =
            cat3("{\"type\":\"relay\",\"ref\":2,\"receivers\":[1,", values[i], ",3],\"body\":1}");
        ws_err(s, &LIM, MH_ERR_BAD_REQUEST, "2",
               "receiver ids must be integers from 1 to 18446744073709551615");
        free(s);
    }
}

static void test_ws_receivers_limit(void **state)
{
    mh_codec_limits_t lim = {3, 100};
    mh_request_t req;
    ws_ok("{\"type\":\"relay\",\"receivers\":[1,2,3],\"body\":1}", &lim, &req);
    assert_int_equal(req.n_receivers, 3);
    mh_codec_request_free(&req);
    ws_err("{\"type\":\"relay\",\"ref\":\"m\",\"receivers\":[1,2,3,4],\"body\":1}", &lim,
           MH_ERR_TOO_MANY_RECEIVERS, "\"m\"", "at most 3 receivers");
    /* counted before duplicates are removed */
    ws_err("{\"type\":\"relay\",\"receivers\":[5,5,5,5],\"body\":1}", &lim,
           MH_ERR_TOO_MANY_RECEIVERS, NULL, "at most 3 receivers");
    /* the count is checked before the values */
    ws_err("{\"type\":\"relay\",\"receivers\":[0,0,0,0],\"body\":1}", &lim,
           MH_ERR_TOO_MANY_RECEIVERS, NULL, NULL);

    /* the default 255 */
    char *ids = id_list(255, 1, 1);
    char *s = cat3("{\"type\":\"relay\",\"receivers\":", ids, ",\"body\":0}");
    ws_ok(s, &LIM, &req);
    assert_int_equal(req.n_receivers, 255);
    assert_true(req.receivers[0] == 1 && req.receivers[254] == 255);
    mh_codec_request_free(&req);
    free(s);
    free(ids);
    ids = id_list(256, 1, 1);
    s = cat3("{\"type\":\"relay\",\"receivers\":", ids, ",\"body\":0}");
    ws_err(s, &LIM, MH_ERR_TOO_MANY_RECEIVERS, NULL, "at most 255 receivers");
    free(s);
    free(ids);
    ids = id_list(256, 9, 0); /* 256 times the same id */
    s = cat3("{\"type\":\"relay\",\"receivers\":", ids, ",\"body\":0}");
    ws_err(s, &LIM, MH_ERR_TOO_MANY_RECEIVERS, NULL, "at most 255 receivers");
    free(s);
    free(ids);
}

static void test_ws_body_refused(void **state)
{
    /* missing body, after valid receivers; receivers are checked first */
    ws_err("{\"type\":\"relay\",\"ref\":\"b\",\"receivers\":[1]}", &LIM, MH_ERR_BAD_REQUEST,
           "\"b\"", "missing field 'body'");
    ws_err("{\"type\":\"relay\",\"receivers\":[0]}", &LIM, MH_ERR_BAD_REQUEST, NULL,
           "receiver ids must be integers from 1 to 18446744073709551615");
    ws_err("{\"type\":\"relay\",\"body\":1}", &LIM, MH_ERR_BAD_REQUEST, NULL,
           "missing field 'receivers'");

    /* size limit: 10 bytes of JSON text, surrounding whitespace not counted */
    mh_codec_limits_t lim = {255, 10};
    mh_request_t req;
    const char *s = "{\"type\":\"relay\",\"receivers\":[1],\"body\":   \"12345678\"   }";
    ws_ok(s, &lim, &req);
    assert_body(&req, s, "\"12345678\"");
    mh_codec_request_free(&req);
    s = "{\"type\":\"relay\",\"receivers\":[1],\"body\":[1, 2,3,4]}";
    ws_ok(s, &lim, &req);
    assert_body(&req, s, "[1, 2,3,4]");
    mh_codec_request_free(&req);
    ws_err("{\"type\":\"relay\",\"ref\":3,\"receivers\":[1],\"body\":\"123456789\"}", &lim,
           MH_ERR_BODY_TOO_LARGE, "3", "body larger than 10 bytes");
    ws_err("{\"type\":\"relay\",\"receivers\":[1],\"body\":12345678901}", &lim,
           MH_ERR_BODY_TOO_LARGE, NULL, NULL);
    /* too many receivers wins over a large body; the body size over nothing else */
    mh_codec_limits_t tight = {1, 10};
    ws_err("{\"type\":\"relay\",\"receivers\":[1,2],\"body\":\"123456789\"}", &tight,
           MH_ERR_TOO_MANY_RECEIVERS, NULL, NULL);
    ws_err("{\"type\":\"relay\",\"receivers\":[0],\"body\":\"123456789\"}", &tight,
           MH_ERR_BAD_REQUEST, NULL, NULL);
}

/* ---- HTTP bodies ---- */

static void test_http_relay(void **state)
{
    const char *s = "{\"receivers\":[4,2,4],\"body\": {\"x\": 1e400} }";
    mh_request_t req;
    mh_codec_error_t err;
    assert_int_equal(mh_codec_parse_http_relay(s, strlen(s), &LIM, &req, &err), 0);
    assert_int_equal(req.type, MH_REQ_RELAY);
    assert_int_equal(req.n_receivers, 3);
    assert_true(req.receivers[0] == 4 && req.receivers[1] == 2 && req.receivers[2] == 4);
    assert_body(&req, s, "{\"x\": 1e400}");
    assert_int_equal(req.has_from, 0);
    assert_true(req.from == 0);
    mh_codec_request_free(&req);

    /* type and other members are ignored on HTTP */
    s = "{\"type\":\"nope\",\"from\":42,\"receivers\":[1],\"body\":\"b\",\"extra\":[]}";
    assert_int_equal(mh_codec_parse_http_relay(s, strlen(s), &LIM, &req, &err), 0);
    assert_int_equal(req.type, MH_REQ_RELAY);
    assert_int_equal(req.has_from, 1);
    assert_true(req.from == 42);
    mh_codec_request_free(&req);

    s = "{\"from\":18446744073709551615,\"receivers\":[1],\"body\":0}";
    assert_int_equal(mh_codec_parse_http_relay(s, strlen(s), &LIM, &req, &err), 0);
    assert_int_equal(req.has_from, 1);
    assert_true(req.from == UINT64_MAX);
    mh_codec_request_free(&req);

    const char *bad_from[] = {"0",   "-1",  "\"7\"", "1.5", "null", "18446744073709551616",
                              "1e3", "[1]", "{}",    "true"};
    for (size_t i = 0; i < sizeof(bad_from) / sizeof(bad_from[0]); i++) {
        char *t = cat3("{\"receivers\":[1],\"body\":0,\"from\":", bad_from[i], "}");
        http_err(t, &LIM, MH_ERR_BAD_REQUEST,
                 "'from' must be an integer from 1 to 18446744073709551615");
        free(t);
    }

    http_err("", &LIM, MH_ERR_BAD_JSON, NULL);
    http_err("{\"receivers\":[1],\"body\":", &LIM, MH_ERR_BAD_JSON, NULL); /* truncated */
    http_err("{\"receivers\":[1],\"body\":\"\xff\"}", &LIM, MH_ERR_BAD_JSON, NULL);
    http_err("[{\"receivers\":[1],\"body\":0}]", &LIM, MH_ERR_BAD_REQUEST, NULL);
    http_err("{\"body\":0}", &LIM, MH_ERR_BAD_REQUEST, "missing field 'receivers'");
    http_err("{\"receivers\":[],\"body\":0}", &LIM, MH_ERR_BAD_REQUEST, NULL);
    http_err("{\"receivers\":[1]}", &LIM, MH_ERR_BAD_REQUEST, "missing field 'body'");
    mh_codec_limits_t lim = {2, 4};
    http_err("{\"receivers\":[1,2,3],\"body\":0}", &lim, MH_ERR_TOO_MANY_RECEIVERS,
             "at most 2 receivers");
    http_err("{\"receivers\":[1],\"body\":\"abc\"}", &lim, MH_ERR_BODY_TOO_LARGE, NULL);
    s = "{\"receivers\":[1,2],\"body\":\"ab\"}";
    assert_int_equal(mh_codec_parse_http_relay(s, strlen(s), &lim, &req, &err), 0);
    assert_body(&req, s, "\"ab\"");
    mh_codec_request_free(&req);
    char *d = deep_arrays(65);
    char *t = cat3("{\"receivers\":[1],\"body\":", d, "}");
    http_err(t, &LIM, MH_ERR_BAD_REQUEST, DEPTH_MSG);
    free(t);
    free(d);
}

static void test_http_sessions(void **state)
{
    mh_codec_error_t err;
    const char *ok[] = {"", " ", " \t\r\n ", "{}", " { } ", "{\"name\":\"x\",\"n\":[1]}"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_int_equal(mh_codec_parse_http_sessions(ok[i], strlen(ok[i]), &err), 0);
    assert_int_equal(mh_codec_parse_http_sessions(NULL, 0, &err), 0);

    struct {
        const char *text;
        mh_err_code_t code;
    } bad[] = {
        {"[]", MH_ERR_BAD_REQUEST},   {"1", MH_ERR_BAD_REQUEST},      {"\"x\"", MH_ERR_BAD_REQUEST},
        {"null", MH_ERR_BAD_REQUEST}, {" [{}] ", MH_ERR_BAD_REQUEST}, {"garbage", MH_ERR_BAD_JSON},
        {"{", MH_ERR_BAD_JSON},       {"{}x", MH_ERR_BAD_JSON},       {"{} {}", MH_ERR_BAD_JSON},
        {"\xff", MH_ERR_BAD_JSON},    {"\f", MH_ERR_BAD_JSON},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.code = MH_ERR__COUNT;
        assert_int_equal(mh_codec_parse_http_sessions(bad[i].text, strlen(bad[i].text), &err), -1);
        if (err.code != bad[i].code)
            fail_msg("%s: got %s", bad[i].text, mh_err_name(err.code));
    }
}

static void test_dedupe(void **state)
{
    uint64_t a[] = {5, 3, 5, 1, 3, 3, UINT64_MAX, 1, UINT64_MAX};
    size_t n = mh_codec_dedupe(a, sizeof(a) / sizeof(a[0]));
    assert_int_equal(n, 4);
    assert_true(a[0] == 1 && a[1] == 3 && a[2] == 5 && a[3] == UINT64_MAX);

    uint64_t one[] = {9};
    assert_int_equal(mh_codec_dedupe(one, 1), 1);
    assert_true(one[0] == 9);
    assert_int_equal(mh_codec_dedupe(NULL, 0), 0);

    uint64_t same[] = {7, 7, 7, 7};
    assert_int_equal(mh_codec_dedupe(same, 4), 1);
    assert_true(same[0] == 7);

    /* values that differ only above 2^63 stay apart and sort unsigned */
    uint64_t big[] = {UINT64_MAX, 1ULL << 63, 2, (1ULL << 63) + 1};
    assert_int_equal(mh_codec_dedupe(big, 4), 4);
    assert_true(big[0] == 2 && big[1] == 1ULL << 63 && big[2] == (1ULL << 63) + 1 &&
                big[3] == UINT64_MAX);

    /* 1000 ids in reverse with each repeated */
    uint64_t many[2000];
    for (size_t i = 0; i < 1000; i++)
        many[2 * i] = many[2 * i + 1] = 1000 - i;
    assert_int_equal(mh_codec_dedupe(many, 2000), 1000);
    for (size_t i = 0; i < 1000; i++)
        assert_true(many[i] == i + 1);
}

/* ---- writers ---- */

#define EXPECT(buf, want)                                                                          \
    do {                                                                                           \
        assert_string_equal((buf).data, want);                                                     \
        assert_int_equal((buf).len, strlen(want));                                                 \
        assert_int_equal(mh_json_validate((buf).data, (buf).len, MH_JSON_MAX_DEPTH), 0);           \
        mh_buf_reset(&(buf));                                                                      \
    } while (0)

static void test_write_ws_frames(void **state)
{
    mh_buf_t b;
    mh_buf_init(&b);

    mh_codec_hello_t h1 = {42, "abc-_DEF", 0, 0, 0, 1};
    mh_codec_hello(&b, &h1, &LIM);
    EXPECT(b, "{\"type\":\"hello\",\"id\":42,\"token\":\"abc-_DEF\",\"resumed\":false,"
              "\"ack\":\"client\",\"seq\":0,\"recovered\":true,"
              "\"limits\":{\"max_receivers\":255,\"max_body_bytes\":1048576}}");
    mh_codec_limits_t lim = {7, 18446744073709551615ULL};
    mh_codec_hello_t h2 = {UINT64_MAX, "t", 1, 1, UINT64_MAX, 0};
    mh_codec_hello(&b, &h2, &lim);
    EXPECT(b, "{\"type\":\"hello\",\"id\":18446744073709551615,\"token\":\"t\",\"resumed\":true,"
              "\"ack\":\"auto\",\"seq\":18446744073709551615,\"recovered\":false,"
              "\"limits\":{\"max_receivers\":7,\"max_body_bytes\":18446744073709551615}}");

    mh_codec_acked(&b, NULL, 0, 17);
    EXPECT(b, "{\"type\":\"acked\",\"seq\":17}");
    mh_codec_acked(&b, "\"a1\"", 4, UINT64_MAX);
    EXPECT(b, "{\"type\":\"acked\",\"ref\":\"a1\",\"seq\":18446744073709551615}");

    mh_codec_identity(&b, 42, NULL, 0);
    EXPECT(b, "{\"type\":\"identity\",\"id\":42}");
    mh_codec_identity(&b, 1, "\"r\"", 3);
    EXPECT(b, "{\"type\":\"identity\",\"id\":1,\"ref\":\"r\"}");
    mh_codec_identity(&b, 1, "12345xyz", 5); /* ref_len is honoured */
    EXPECT(b, "{\"type\":\"identity\",\"id\":1,\"ref\":12345}");

    uint64_t ids[] = {3, 7, 19};
    mh_codec_list(&b, ids, 3, NULL, 0);
    EXPECT(b, "{\"type\":\"list\",\"ids\":[3,7,19]}");
    mh_codec_list(&b, NULL, 0, NULL, 0);
    EXPECT(b, "{\"type\":\"list\",\"ids\":[]}");
    mh_codec_list(&b, ids, 1, "\"L\"", 3);
    EXPECT(b, "{\"type\":\"list\",\"ids\":[3],\"ref\":\"L\"}");

    mh_codec_pong(&b, NULL, 0);
    EXPECT(b, "{\"type\":\"pong\"}");
    mh_codec_pong(&b, "5", 1);
    EXPECT(b, "{\"type\":\"pong\",\"ref\":5}");

    mh_codec_relayed(&b, "\"x\"", 3, 2, NULL, 0);
    EXPECT(b, "{\"type\":\"relayed\",\"ref\":\"x\",\"accepted\":2,\"unknown\":[]}");
    uint64_t unknown[] = {999999, UINT64_MAX};
    mh_codec_relayed(&b, NULL, 0, 0, unknown, 2);
    EXPECT(b, "{\"type\":\"relayed\",\"accepted\":0,\"unknown\":[999999,18446744073709551615]}");

    mh_codec_error(&b, MH_ERR_TOO_MANY_RECEIVERS, "at most 255 receivers", "-1.5e3", 6);
    EXPECT(b, "{\"type\":\"error\",\"code\":\"too_many_receivers\","
              "\"message\":\"at most 255 receivers\",\"ref\":-1.5e3}");
    mh_codec_error(&b, MH_ERR_BAD_JSON, "not \"valid\"\n\\", NULL, 0);
    EXPECT(b, "{\"type\":\"error\",\"code\":\"bad_json\","
              "\"message\":\"not \\\"valid\\\"\\u000a\\\\\"}");
    mh_codec_error(&b, MH_ERR_RATE_LIMITED, "rate limit exceeded", "\"a\\u0000\"", 9);
    EXPECT(b, "{\"type\":\"error\",\"code\":\"rate_limited\",\"message\":\"rate limit exceeded\","
              "\"ref\":\"a\\u0000\"}");

    const char *body = "{\"a\": 123456789012345678901234567890, \"b\":\"\\u0000\"}";
    size_t at = mh_codec_message(&b, "hub-1:7", 42, body, strlen(body), 1764288000123ULL);
    assert_int_equal(at, strlen("{\"type\":\"message\",\"id\":\"hub-1:7\""));
    EXPECT(b, "{\"type\":\"message\",\"id\":\"hub-1:7\",\"from\":42,"
              "\"body\":{\"a\": 123456789012345678901234567890, \"b\":\"\\u0000\"},"
              "\"ts\":1764288000123}");
    at = mh_codec_message(&b, "m", 0, "[1]xyz", 3, 0);
    assert_int_equal(at, strlen("{\"type\":\"message\",\"id\":\"m\""));
    EXPECT(b, "{\"type\":\"message\",\"id\":\"m\",\"from\":0,\"body\":[1],\"ts\":0}");

    /* writers append to what the buffer holds */
    mh_codec_pong(&b, NULL, 0);
    mh_codec_pong(&b, "1", 1);
    assert_string_equal(b.data, "{\"type\":\"pong\"}{\"type\":\"pong\",\"ref\":1}");
    mh_buf_free(&b);
}

static void test_message_seq(void **state)
{
    mh_buf_t b, w;
    mh_buf_init(&b);
    mh_buf_init(&w);
    size_t at = mh_codec_message(&b, "x-9", 5, "{\"k\":[1,2]}", 11, 77);
    mh_frame_t *f = mh_frame_from_buf(&b);
    f->seq_at = (uint32_t)at;
    static const struct {
        uint64_t seq;
        const char *want;
    } cases[] = {
        {1, "{\"type\":\"message\",\"id\":\"x-9\",\"seq\":1,\"from\":5,\"body\":{\"k\":[1,2]},"
            "\"ts\":77}"},
        {1234567890, "{\"type\":\"message\",\"id\":\"x-9\",\"seq\":1234567890,\"from\":5,"
                     "\"body\":{\"k\":[1,2]},\"ts\":77}"},
        {UINT64_MAX, "{\"type\":\"message\",\"id\":\"x-9\",\"seq\":18446744073709551615,"
                     "\"from\":5,\"body\":{\"k\":[1,2]},\"ts\":77}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mh_codec_message_seq(&w, f, cases[i].seq);
        assert_int_equal(mh_codec_message_seq_len(f, cases[i].seq), strlen(cases[i].want));
        EXPECT(w, cases[i].want);
    }
    /* the shared frame is untouched */
    assert_int_equal(f->len, strlen("{\"type\":\"message\",\"id\":\"x-9\",\"from\":5,"
                                    "\"body\":{\"k\":[1,2]},\"ts\":77}"));
    char field[MH_CODEC_SEQ_FIELD_MAX];
    assert_int_equal(mh_codec_seq_field(field, 0), 8);
    assert_memory_equal(field, ",\"seq\":0", 8);
    mh_frame_unref(f);
    mh_buf_free(&b);
    mh_buf_free(&w);
}

static void test_ws_ack(void **state)
{
    mh_request_t req;
    ws_ok("{\"type\":\"ack\",\"seq\":17}", &LIM, &req);
    assert_int_equal(req.type, MH_REQ_ACK);
    assert_true(req.seq == 17 && req.ref == NULL);
    mh_codec_request_free(&req);
    ws_ok("{\"seq\":18446744073709551615,\"type\":\"ack\",\"ref\":\"q\"}", &LIM, &req);
    assert_true(req.seq == UINT64_MAX && req.ref_len == 3);
    mh_codec_request_free(&req);
    const char *bad[] = {"{\"type\":\"ack\"}",
                         "{\"type\":\"ack\",\"seq\":0}",
                         "{\"type\":\"ack\",\"seq\":-1}",
                         "{\"type\":\"ack\",\"seq\":1.5}",
                         "{\"type\":\"ack\",\"seq\":\"3\"}",
                         "{\"type\":\"ack\",\"seq\":null}",
                         "{\"type\":\"ack\",\"seq\":18446744073709551616}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ws_err(bad[i], &LIM, MH_ERR_BAD_REQUEST, NULL, NULL);
    ws_err("{\"type\":\"ack\",\"seq\":1e2,\"ref\":4}", &LIM, MH_ERR_BAD_REQUEST, "4", NULL);
}

static void test_write_http(void **state)
{
    mh_buf_t b;
    mh_buf_init(&b);
    static const struct {
        mh_err_code_t code;
        const char *name;
    } codes[] = {
        {MH_ERR_BAD_JSON, "bad_json"},
        {MH_ERR_BAD_REQUEST, "bad_request"},
        {MH_ERR_UNKNOWN_TYPE, "unknown_type"},
        {MH_ERR_TOO_MANY_RECEIVERS, "too_many_receivers"},
        {MH_ERR_BODY_TOO_LARGE, "body_too_large"},
        {MH_ERR_RATE_LIMITED, "rate_limited"},
        {MH_ERR_UNAVAILABLE, "unavailable"},
        {MH_ERR_INTERNAL, "internal"},
        {MH_ERR_UNAUTHORIZED, "unauthorized"},
        {MH_ERR_FORBIDDEN, "forbidden"},
        {MH_ERR_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"},
        {MH_ERR_NOT_FOUND, "not_found"},
        {MH_ERR_METHOD_NOT_ALLOWED, "method_not_allowed"},
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        char want[160];
        snprintf(want, sizeof(want), "{\"error\":{\"code\":\"%s\",\"message\":\"m \\\"q\\\"\"}}",
                 codes[i].name);
        mh_codec_http_error(&b, codes[i].code, "m \"q\"");
        EXPECT(b, want);
    }

    uint64_t unknown[] = {5, 6};
    mh_codec_http_relayed(&b, "hub-a:1", 3, unknown, 2);
    EXPECT(b, "{\"id\":\"hub-a:1\",\"accepted\":3,\"unknown\":[5,6]}");
    mh_codec_http_relayed(&b, "x\"y", 0, NULL, 0);
    EXPECT(b, "{\"id\":\"x\\\"y\",\"accepted\":0,\"unknown\":[]}");

    mh_codec_http_session(&b, 9, "tok");
    EXPECT(b, "{\"id\":9,\"token\":\"tok\"}");
    mh_codec_http_session(&b, UINT64_MAX, "");
    EXPECT(b, "{\"id\":18446744073709551615,\"token\":\"\"}");

    uint64_t ids[] = {1, 2, 18446744073709551615ULL};
    mh_codec_http_ids(&b, ids, 3);
    EXPECT(b, "{\"ids\":[1,2,18446744073709551615]}");
    mh_codec_http_ids(&b, NULL, 0);
    EXPECT(b, "{\"ids\":[]}");
    mh_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_simple_types),
        cmocka_unit_test(test_ws_relay),
        cmocka_unit_test(test_ws_body_is_byte_exact),
        cmocka_unit_test(test_ws_bad_json),
        cmocka_unit_test(test_ws_depth),
        cmocka_unit_test(test_ws_not_object),
        cmocka_unit_test(test_ws_type),
        cmocka_unit_test(test_ws_ref),
        cmocka_unit_test(test_ws_receivers_refused),
        cmocka_unit_test(test_ws_receivers_limit),
        cmocka_unit_test(test_ws_body_refused),
        cmocka_unit_test(test_http_relay),
        cmocka_unit_test(test_http_sessions),
        cmocka_unit_test(test_dedupe),
        cmocka_unit_test(test_write_ws_frames),
        cmocka_unit_test(test_message_seq),
        cmocka_unit_test(test_ws_ack),
        cmocka_unit_test(test_write_http),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
