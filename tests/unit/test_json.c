/*
 * Unit tests of json: validation of every value kind and of whitespace, the
 * rejects of RFC 8259 (numbers, strings, escapes, structure), UTF-8 checks
 * (overlongs, surrogates, out of range, truncated, stray continuation
 * bytes), the nesting cap, the exact spans of the iterators and the id
 * parser's range 1..2^64-1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/json.h"

/* Validates a heap copy of exactly n bytes, so that ASan catches any read past the end. */
static int validate_n(const char *s, size_t n)
{
    char *copy = malloc(n ? n : 1);
    if (n)
        memcpy(copy, s, n);
    int rc = mh_json_validate(n ? copy : s, n, MH_JSON_MAX_DEPTH);
    free(copy);
    return rc;
}

static int validate(const char *s)
{
    return validate_n(s, strlen(s));
}

#define OK(s) assert_int_equal(validate(s), MH_OK)
#define BAD(s) assert_int_equal(validate(s), MH_EINVAL)
#define OKN(s) assert_int_equal(validate_n(s, sizeof(s) - 1), MH_OK)
#define BADN(s) assert_int_equal(validate_n(s, sizeof(s) - 1), MH_EINVAL)

static void test_every_kind(void **state)
{
    OK("{}");
    OK("[]");
    OK("\"\"");
    OK("\"abc\"");
    OK("0");
    OK("-0");
    OK("7");
    OK("-12");
    OK("123456789012345678901234567890");
    OK("0.5");
    OK("-0.0");
    OK("1.25e10");
    OK("1E+2");
    OK("1e-2");
    OK("0e0");
    OK("-1.5E-300");
    OK("true");
    OK("false");
    OK("null");
    OK("{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}");
    OK("[1,\"two\",[3],{\"four\":4},true,false,null,-5.5e5]");
    OK("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uABCD \\u0000\"");
    OK("\"\x7f\""); /* DEL is not a control character in JSON */
}

static void test_whitespace(void **state)
{
    OK(" \t\r\n{ \t\r\n\"a\" \t\r\n: \t\r\n[ \t\r\n1 \t\r\n, \t\r\n2 \t\r\n] \t\r\n} \t\r\n");
    OK("   true");
    OK("null   ");
    OK("\n[\n]\n");
    OK("{ }");
    OK("[ ]");
    /* only the four JSON whitespace characters count */
    BAD("\f1");
    BAD("1\v");
    BAD("\xc2\xa0"
        "1"); /* U+00A0 no-break space */
    OKN("[1]\r\n");
}

static void test_number_rejects(void **state)
{
    BAD("01");
    BAD("-01");
    BAD("00");
    BAD("[01]");
    BAD("-");
    BAD("[-]");
    BAD("1.");
    BAD("[1.]");
    BAD(".5");
    BAD("-.5");
    BAD("+1");
    BAD("1e");
    BAD("1e+");
    BAD("1E-");
    BAD("1.e3");
    BAD("0x10");
    BAD("NaN");
    BAD("Infinity");
    BAD("-Infinity");
    BAD("1 2");
    BAD("- 1");
}

static void test_literal_rejects(void **state)
{
    BAD("tru");
    BAD("True");
    BAD("nul");
    BAD("falsey");
    BAD("truefalse");
    BAD("undefined");
    BAD("'a'");
}

static void test_string_rejects(void **state)
{
    BAD("\"abc");     /* unterminated */
    BAD("\"abc\\\""); /* the quote is escaped: unterminated */
    BAD("\"\\");      /* ends in a backslash */
    BAD("\"\\x\"");   /* unknown escapes */
    BAD("\"\\a\"");
    BAD("\"\\'\"");
    BAD("\"\\U0041\"");
    BAD("\"\\u12\""); /* too few hex digits */
    BAD("\"\\u12G4\"");
    BAD("\"\\u123"); /* cut in the escape */
    BAD("\"\\u\"");
    BAD("\"a\tb\""); /* raw control characters */
    BAD("\"a\nb\"");
    BAD("\"\x01\"");
    BAD("\"\x1f\"");
    BADN("\"a\0b\""); /* raw NUL */
    BAD("\"a\rb\"");
}

static void test_structure_rejects(void **state)
{
    BAD("");
    BAD("   ");
    BAD("\n\t");
    BAD("[1,]");
    BAD("[,1]");
    BAD("[1,,2]");
    BAD("{\"a\":1,}");
    BAD("{,\"a\":1}");
    BAD("{\"a\" 1}");
    BAD("{\"a\":}");
    BAD("{\"a\"}");
    BAD("{a:1}");
    BAD("{1:1}");
    BAD("{'a':1}");
    BAD("[1 2]");
    BAD("{\"a\":1 \"b\":2}");
    BAD("[");
    BAD("]");
    BAD("{");
    BAD("}");
    BAD("[1");
    BAD("[1,");
    BAD("{\"a\":1");
    BAD("{\"a\":");
    BAD("{\"a\"");
    BAD("[[]");
    BAD("[}");
    BAD("{]");
    BAD("[1]]");
    BAD("{}}");
    BAD("{}{}");
    BAD("[][]");
    BAD("1 2");
    BAD("\"a\" \"b\"");
    BAD("null null");
    BAD("true,");
    BAD("[1]x");
    BADN("1\0");
    /* validate only the given length: the text after n is not looked at */
    assert_int_equal(validate_n("[1]]]]", 3), MH_OK);
    assert_int_equal(validate_n("[1]", 2), MH_EINVAL);
    assert_int_equal(validate_n(NULL, 0), MH_EINVAL);
}

static void test_utf8_valid(void **state)
{
    OK("\"\xc2\x80\"");                                    /* U+0080, smallest 2-byte */
    OK("\"\xc3\xa9\"");                                    /* e acute */
    OK("\"\xdf\xbf\"");                                    /* U+07FF, largest 2-byte */
    OK("\"\xe0\xa0\x80\"");                                /* U+0800, smallest 3-byte */
    OK("\"\xe2\x82\xac\"");                                /* euro sign */
    OK("\"\xed\x9f\xbf\"");                                /* U+D7FF, just below the surrogates */
    OK("\"\xee\x80\x80\"");                                /* U+E000, just above */
    OK("\"\xef\xbf\xbf\"");                                /* U+FFFF */
    OK("\"\xf0\x90\x80\x80\"");                            /* U+10000, smallest 4-byte */
    OK("\"\xf0\x9f\x98\x80\"");                            /* emoji */
    OK("\"\xf4\x8f\xbf\xbf\"");                            /* U+10FFFF, the last code point */
    OK("{\"\xc3\xa9\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"}"); /* in keys too */
}

static void test_utf8_invalid(void **state)
{
    BAD("\"\xc0\x80\"");                 /* overlong NUL */
    BAD("\"\xc1\xbf\"");                 /* overlong 2-byte */
    BAD("\"\xe0\x80\x80\"");             /* overlong 3-byte */
    BAD("\"\xe0\x9f\xbf\"");             /* overlong U+07FF */
    BAD("\"\xf0\x80\x80\x80\"");         /* overlong 4-byte */
    BAD("\"\xf0\x8f\xbf\xbf\"");         /* overlong U+FFFF */
    BAD("\"\xed\xa0\x80\"");             /* U+D800 */
    BAD("\"\xed\xbf\xbf\"");             /* U+DFFF */
    BAD("\"\xed\xa0\xbd\xed\xb8\x80\""); /* CESU-8 surrogate pair */
    BAD("\"\xf4\x90\x80\x80\"");         /* U+110000 */
    BAD("\"\xf5\x80\x80\x80\"");
    BAD("\"\xf8\x88\x80\x80\x80\"");
    BAD("\"\xfe\"");
    BAD("\"\xff\"");
    BAD("\"\x80\""); /* lone continuation bytes */
    BAD("\"\xbf\"");
    BAD("\"a\x80z\"");
    BAD("\"\xc3\""); /* truncated before the closing quote */
    BAD("\"\xe2\x82\"");
    BAD("\"\xf0\x9f\x98\"");
    BAD("\"\xc3"); /* truncated at the end of the text */
    BAD("\"\xe2\x82");
    BAD("\"\xf0\x9f\x98");
    BAD("\"\xc3\x28\""); /* second byte not a continuation */
    BAD("\"\xe2\x28\xa1\"");
    BAD("\"\xe2\x82\x28\"");
    BAD("\"\xf0\x9f\x28\x80\"");
    BAD("\"\xf0\x9f\x98\x28\"");
    BAD("\"\xc3\xa9\xa9\""); /* one continuation too many */
    BAD("{\"\xff\":1}");     /* in a key */
    BAD("\xc3\xa9");         /* outside a string */
}

/* n arrays nested, the innermost holding inner (may be empty) */
static char *nest(int n, char open, char close, const char *inner)
{
    size_t il = strlen(inner);
    char *s = malloc((size_t)n * 2 + il + 1);
    memset(s, open, (size_t)n);
    memcpy(s + n, inner, il);
    memset(s + n + il, close, (size_t)n);
    s[2 * (size_t)n + il] = '\0';
    return s;
}

static char *nest_objects(int n)
{
    /* {"a":{"a":...1...}} */
    char *s = malloc((size_t)n * 6 + 2);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        memcpy(s + k, "{\"a\":", 5);
        k += 5;
    }
    s[k++] = '1';
    for (int i = 0; i < n; i++)
        s[k++] = '}';
    s[k] = '\0';
    return s;
}

static void test_depth(void **state)
{
    char *s = nest(MH_JSON_MAX_DEPTH, '[', ']', "");
    assert_int_equal(validate(s), MH_OK);
    free(s);
    s = nest(MH_JSON_MAX_DEPTH, '[', ']', "1,\"x\",{}");
    assert_int_equal(validate(s), MH_EDEPTH); /* the {} is level 65 */
    free(s);
    s = nest(MH_JSON_MAX_DEPTH, '[', ']', "1,\"x\",null");
    assert_int_equal(validate(s), MH_OK); /* scalars add no level */
    free(s);
    s = nest(MH_JSON_MAX_DEPTH + 1, '[', ']', "");
    assert_int_equal(validate(s), MH_EDEPTH);
    free(s);
    s = nest(1000, '[', ']', "");
    assert_int_equal(validate(s), MH_EDEPTH);
    free(s);

    s = nest_objects(MH_JSON_MAX_DEPTH);
    assert_int_equal(validate(s), MH_OK);
    free(s);
    s = nest_objects(MH_JSON_MAX_DEPTH + 1);
    assert_int_equal(validate(s), MH_EDEPTH);
    free(s);

    /* the cap is the caller's */
    assert_int_equal(mh_json_validate("[[1]]", 5, 2), MH_OK);
    assert_int_equal(mh_json_validate("[[1]]", 5, 1), MH_EDEPTH);
    assert_int_equal(mh_json_validate("{\"a\":[]}", 8, 1), MH_EDEPTH);
    assert_int_equal(mh_json_validate("1", 1, 0), MH_OK);
    assert_int_equal(mh_json_validate("[]", 2, 0), MH_EDEPTH);

    /* brackets inside strings are not nesting */
    char deep_str[300];
    deep_str[0] = '"';
    memset(deep_str + 1, '[', 200);
    deep_str[201] = '"';
    deep_str[202] = '\0';
    OK(deep_str);
}

static void assert_span(const mh_json_span_t *v, const char *text, mh_json_kind_t kind)
{
    assert_int_equal(v->len, strlen(text));
    assert_memory_equal(v->p, text, v->len);
    assert_int_equal(v->kind, kind);
}

static void test_root(void **state)
{
    const char *s = " \n {\"a\" : 1}\t ";
    assert_int_equal(validate(s), MH_OK);
    mh_json_span_t r = mh_json_root(s, strlen(s));
    assert_ptr_equal(r.p, s + 3);
    assert_span(&r, "{\"a\" : 1}", MH_JSON_OBJECT);

    struct {
        const char *text, *want;
        mh_json_kind_t kind;
    } cases[] = {
        {"[1, 2] ", "[1, 2]", MH_JSON_ARRAY},  {" \"a]\\\"\" ", "\"a]\\\"\"", MH_JSON_STRING},
        {"-1.5e3 ", "-1.5e3", MH_JSON_NUMBER}, {"0", "0", MH_JSON_NUMBER},
        {" true", "true", MH_JSON_TRUE},       {"false\n", "false", MH_JSON_FALSE},
        {"\tnull", "null", MH_JSON_NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(validate(cases[i].text), MH_OK);
        r = mh_json_root(cases[i].text, strlen(cases[i].text));
        assert_span(&r, cases[i].want, cases[i].kind);
    }
}

static void test_object_iteration(void **state)
{
    const char *s = "{ \"k\" : [1, \"]\", {\"x\":\"\\\"}\"}] , \"s\":\"a\\\"b]}\" ,\"n\":-1.5e+3,"
                    "\"e\\\"sc\":{},\"t\":true,\"f\":false,\"z\":null,\"o\":{\"in\":[[],{}]} }";
    assert_int_equal(validate(s), MH_OK);
    mh_json_span_t root = mh_json_root(s, strlen(s));
    assert_int_equal(root.kind, MH_JSON_OBJECT);

    struct {
        const char *key, *value;
        mh_json_kind_t kind;
    } want[] = {
        {"k", "[1, \"]\", {\"x\":\"\\\"}\"}]", MH_JSON_ARRAY},
        {"s", "\"a\\\"b]}\"", MH_JSON_STRING},
        {"n", "-1.5e+3", MH_JSON_NUMBER},
        {"e\\\"sc", "{}", MH_JSON_OBJECT},
        {"t", "true", MH_JSON_TRUE},
        {"f", "false", MH_JSON_FALSE},
        {"z", "null", MH_JSON_NULL},
        {"o", "{\"in\":[[],{}]}", MH_JSON_OBJECT},
    };
    size_t pos = 0, i = 0;
    mh_json_span_t k, v;
    while (mh_json_object_next(&root, &pos, &k, &v)) {
        assert_true(i < sizeof(want) / sizeof(want[0]));
        assert_span(&k, want[i].key, MH_JSON_STRING);
        assert_span(&v, want[i].value, want[i].kind);
        /* spans point into the text itself */
        assert_true(v.p > s && v.p + v.len < s + strlen(s));
        i++;
    }
    assert_int_equal(i, sizeof(want) / sizeof(want[0]));
    /* stays at the end */
    assert_int_equal(mh_json_object_next(&root, &pos, &k, &v), 0);

    /* nested iteration over the value of "o" */
    pos = 0;
    mh_json_span_t inner_v = {0};
    for (size_t j = 0; j < 8; j++)
        assert_int_equal(mh_json_object_next(&root, &pos, &k, &inner_v), 1);
    size_t p2 = 0;
    assert_int_equal(mh_json_object_next(&inner_v, &p2, &k, &v), 1);
    assert_span(&k, "in", MH_JSON_STRING);
    assert_span(&v, "[[],{}]", MH_JSON_ARRAY);
    mh_json_span_t arr = v;
    size_t p3 = 0;
    assert_int_equal(mh_json_array_next(&arr, &p3, &v), 1);
    assert_span(&v, "[]", MH_JSON_ARRAY);
    assert_int_equal(mh_json_array_next(&arr, &p3, &v), 1);
    assert_span(&v, "{}", MH_JSON_OBJECT);
    assert_int_equal(mh_json_array_next(&arr, &p3, &v), 0);
    assert_int_equal(mh_json_object_next(&inner_v, &p2, &k, &v), 0);
}

static void test_empty_containers(void **state)
{
    const char *texts[] = {"{}", "{ \n }", "[]", "[\t]"};
    for (size_t i = 0; i < 4; i++) {
        mh_json_span_t root = mh_json_root(texts[i], strlen(texts[i]));
        size_t pos = 0;
        mh_json_span_t k, v;
        if (root.kind == MH_JSON_OBJECT)
            assert_int_equal(mh_json_object_next(&root, &pos, &k, &v), 0);
        else
            assert_int_equal(mh_json_array_next(&root, &pos, &v), 0);
    }
}

static void test_array_iteration(void **state)
{
    const char *s = "[ 1 ,\"a,b]\" , [ [\"]\"], {} ] ,{\"q\":\"\\\\\"},-0.5e-1,true ,false, null,"
                    "\"\\\"[{\" ,\"\xe2\x82\xac\",18446744073709551616 ]";
    assert_int_equal(validate(s), MH_OK);
    mh_json_span_t root = mh_json_root(s, strlen(s));
    struct {
        const char *value;
        mh_json_kind_t kind;
    } want[] = {
        {"1", MH_JSON_NUMBER},
        {"\"a,b]\"", MH_JSON_STRING},
        {"[ [\"]\"], {} ]", MH_JSON_ARRAY},
        {"{\"q\":\"\\\\\"}", MH_JSON_OBJECT},
        {"-0.5e-1", MH_JSON_NUMBER},
        {"true", MH_JSON_TRUE},
        {"false", MH_JSON_FALSE},
        {"null", MH_JSON_NULL},
        {"\"\\\"[{\"", MH_JSON_STRING},
        {"\"\xe2\x82\xac\"", MH_JSON_STRING},
        {"18446744073709551616", MH_JSON_NUMBER},
    };
    size_t pos = 0, i = 0;
    mh_json_span_t v;
    while (mh_json_array_next(&root, &pos, &v)) {
        assert_true(i < sizeof(want) / sizeof(want[0]));
        assert_span(&v, want[i].value, want[i].kind);
        i++;
    }
    assert_int_equal(i, sizeof(want) / sizeof(want[0]));
}

static int parse_id(const char *text, uint64_t *out)
{
    assert_int_equal(validate(text), MH_OK);
    mh_json_span_t v = mh_json_root(text, strlen(text));
    return mh_json_parse_id(&v, out);
}

static void test_parse_id(void **state)
{
    uint64_t v = 0;
    assert_int_equal(parse_id("1", &v), 0);
    assert_true(v == 1);
    assert_int_equal(parse_id("42", &v), 0);
    assert_true(v == 42);
    assert_int_equal(parse_id("9007199254740993", &v), 0); /* 2^53 + 1, exact */
    assert_true(v == 9007199254740993ULL);
    assert_int_equal(parse_id("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(parse_id("18446744073709551614", &v), 0);
    assert_true(v == UINT64_MAX - 1);
    assert_int_equal(parse_id(" 7 ", &v), 0);
    assert_true(v == 7);

    const char *bad[] = {"0",
                         "-0",
                         "18446744073709551616",
                         "18446744073709551617", /* would wrap around to 1 */
                         "18446744073709551619",
                         "18446744073709551620",
                         "99999999999999999999",
                         "100000000000000000000",
                         "184467440737095516150",
                         "-1",
                         "1.5",
                         "1.0",
                         "1e3",
                         "1E3",
                         "0.0",
                         "\"1\"",
                         "true",
                         "null",
                         "[1]",
                         "{}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 12345;
        assert_int_equal(parse_id(bad[i], &v), -1);
        assert_true(v == 12345); /* untouched on failure */
    }

    /* a span of the wrong kind is refused even with digits in it */
    mh_json_span_t str = {"5", 1, MH_JSON_STRING};
    assert_int_equal(mh_json_parse_id(&str, &v), -1);
    mh_json_span_t empty = {"", 0, MH_JSON_NUMBER};
    assert_int_equal(mh_json_parse_id(&empty, &v), -1);
}

static int find_ref(const char *s, mh_json_span_t *v)
{
    return mh_json_find_shallow(s, strlen(s), "ref", v);
}

static void test_find_shallow(void **state)
{
    mh_json_span_t v;
    assert_int_equal(find_ref("{\"a\":1,\"ref\":\"x\"}", &v), 0);
    assert_span(&v, "\"x\"", MH_JSON_STRING);
    assert_int_equal(find_ref("  { \"ref\" : -12 } ", &v), 0);
    assert_span(&v, "-12", MH_JSON_NUMBER);
    assert_int_equal(find_ref("{\"a\":true,\"b\":-1.5e3,\"c\":null,\"d\":\"}\",\"ref\":2}", &v), 0);
    assert_span(&v, "2", MH_JSON_NUMBER);
    /* brackets and quotes inside skipped strings */
    const char *s = "{\"x\":[\"]]]\", {\"y\":\"[[[\\\"\"}], \"ref\":\"o\\\"k\"}";
    assert_int_equal(find_ref(s, &v), 0);
    assert_span(&v, "\"o\\\"k\"", MH_JSON_STRING);
    /* the first member named ref decides */
    assert_int_equal(find_ref("{\"ref\":1,\"ref\":2}", &v), 0);
    assert_span(&v, "1", MH_JSON_NUMBER);

    /* nesting far beyond any recursion limit, before and after the ref */
    size_t depth = 1000000;
    char *deep = malloc(depth * 2 + 64);
    size_t k = 0;
    k += (size_t)sprintf(deep, "{\"body\":");
    memset(deep + k, '[', depth);
    k += depth;
    memset(deep + k, ']', depth);
    k += depth;
    strcpy(deep + k, ",\"ref\":\"deep\"}");
    assert_int_equal(validate(deep), MH_EDEPTH);
    assert_int_equal(find_ref(deep, &v), 0);
    assert_span(&v, "\"deep\"", MH_JSON_STRING);
    free(deep);

    /* not found */
    const char *none[] = {
        "",
        "[{\"ref\":1}]",
        "\"ref\"",
        "{}",
        "{\"x\":{\"ref\":1}}", /* not at the top level */
        "{\"refs\":1}",
        "{\"re\":1}",
        "{\"ref\":true}", /* not a string or number */
        "{\"ref\":null}",
        "{\"ref\":[1]}",
        "{\"ref\":{\"a\":1}}",
        "{\"ref\":\"\\x\"}", /* malformed string */
        "{\"ref\":\"abc",    /* unterminated */
        "{\"ref\":-}",
        "{\"ref\":x}",
        "{\"ref\":\"\xff\"}",      /* invalid UTF-8 */
        "{\"x\":[[[[",             /* truncated before the ref */
        "{\"x\":[1,2] \"ref\":1}", /* no comma */
        "{\"x\" 1,\"ref\":1}",     /* no colon */
        "{x:1,\"ref\":1}",
    };
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        size_t n = strlen(none[i]);
        char *copy = malloc(n + 1); /* exactly n bytes used: ASan sees any read past them */
        memcpy(copy, none[i], n);
        if (mh_json_find_shallow(copy, n, "ref", &v) != -1)
            fail_msg("found a ref in %s", none[i]);
        free(copy);
    }
}

static void test_utf8_valid_api(void **state)
{
    (void)state;
    assert_true(mh_json_utf8_valid("", 0));
    assert_true(mh_json_utf8_valid("bye \xc3\xa9 \xf0\x9f\x98\x80", 11));
    assert_false(mh_json_utf8_valid("\xff\xfe", 2));
    assert_false(mh_json_utf8_valid("\xc3", 1));             /* truncated */
    assert_false(mh_json_utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(mh_json_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(mh_json_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind),
        cmocka_unit_test(test_whitespace),
        cmocka_unit_test(test_number_rejects),
        cmocka_unit_test(test_literal_rejects),
        cmocka_unit_test(test_string_rejects),
        cmocka_unit_test(test_structure_rejects),
        cmocka_unit_test(test_utf8_valid_api),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_root),
        cmocka_unit_test(test_object_iteration),
        cmocka_unit_test(test_empty_containers),
        cmocka_unit_test(test_array_iteration),
        cmocka_unit_test(test_parse_id),
        cmocka_unit_test(test_find_shallow),
        cmocka_unit_test(test_utf8_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
