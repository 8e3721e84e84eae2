/*
 * Unit tests of util: the growable buffer (append, printf, u64, JSON string
 * escaping, NUL termination, reset and reuse), the reference-counted frame
 * (copy, headroom, take-over of a buffer, ref/unref), error strings and
 * the allocators.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "msghub/util.h"

static void assert_buf(const mh_buf_t *b, const char *want, size_t n)
{
    assert_int_equal(b->len, n);
    assert_non_null(b->data);
    assert_memory_equal(b->data, want, n);
    assert_int_equal(b->data[n], '\0');
    assert_true(b->cap > b->len);
}

static void test_buf_append(void **state)
{
    mh_buf_t b;
    mh_buf_init(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);

    mh_buf_append(&b, "", 0);
    assert_buf(&b, "", 0); /* even an empty write leaves a C string */
    mh_buf_append(&b, "abc", 3);
    mh_buf_puts(&b, "def");
    mh_buf_append(&b, "g\0h", 3); /* embedded NUL kept */
    assert_buf(&b, "abcdefg\0h", 9);

    /* growth across many reallocations keeps every byte */
    mh_buf_reset(&b);
    assert_buf(&b, "", 0);
    char expect[5000];
    for (size_t i = 0; i < sizeof(expect); i++) {
        char c = (char)('a' + i % 26);
        expect[i] = c;
        mh_buf_append(&b, &c, 1);
    }
    assert_buf(&b, expect, sizeof(expect));

    /* reserve gives room without changing the content */
    size_t len = b.len;
    mh_buf_reserve(&b, 100000);
    assert_true(b.cap >= len + 100000 + 1);
    assert_buf(&b, expect, sizeof(expect));

    mh_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    mh_buf_free(&b); /* freeing a freed buffer is harmless */
    mh_buf_reset(&b);
    assert_null(b.data);
}

static void test_buf_printf(void **state)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_buf_printf(&b, "%s=%d", "x", -5);
    assert_buf(&b, "x=-5", 4);
    mh_buf_printf(&b, ",%zu,%05.1f,%c", (size_t)12, 3.14159, 'z');
    assert_buf(&b, "x=-5,12,003.1,z", 15);
    mh_buf_printf(&b, "%s", "");
    assert_buf(&b, "x=-5,12,003.1,z", 15);

    /* longer than any initial capacity */
    mh_buf_reset(&b);
    char big[3001];
    memset(big, 'q', 3000);
    big[3000] = '\0';
    mh_buf_printf(&b, "<%s>", big);
    assert_int_equal(b.len, 3002);
    assert_int_equal(b.data[0], '<');
    assert_int_equal(b.data[3001], '>');
    assert_int_equal(b.data[3002], '\0');
    assert_memory_equal(b.data + 1, big, 3000);
    mh_buf_free(&b);

    /* an empty printf into a fresh buffer still leaves a C string */
    mh_buf_init(&b);
    mh_buf_printf(&b, "%s", "");
    assert_buf(&b, "", 0);
    mh_buf_free(&b);
}

static void test_buf_u64(void **state)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_buf_u64(&b, 0);
    assert_buf(&b, "0", 1);
    mh_buf_reset(&b);
    mh_buf_u64(&b, UINT64_MAX);
    assert_buf(&b, "18446744073709551615", 20);
    mh_buf_reset(&b);
    mh_buf_u64(&b, 9007199254740993ULL); /* not representable as a double */
    assert_buf(&b, "9007199254740993", 16);
    mh_buf_reset(&b);
    mh_buf_u64(&b, 10);
    mh_buf_puts(&b, ",");
    mh_buf_u64(&b, 1);
    mh_buf_puts(&b, ",");
    mh_buf_u64(&b, 1ULL << 63);
    assert_buf(&b, "10,1,9223372036854775808", 24);
    mh_buf_free(&b);
}

static void test_buf_json_string(void **state)
{
    struct {
        const char *in;
        size_t n;
        const char *out;
    } cases[] = {
        {"", 0, "\"\""},
        {"abc", 3, "\"abc\""},
        {"a\"b", 3, "\"a\\\"b\""},
        {"a\\b", 3, "\"a\\\\b\""},
        {"\\\"", 2, "\"\\\\\\\"\""},
        {"\n\r\t\b\f", 5, "\"\\u000a\\u000d\\u0009\\u0008\\u000c\""},
        {"\x01\x1f", 2, "\"\\u0001\\u001f\""},
        {"a\0b", 3, "\"a\\u0000b\""},
        {" \x7f", 2, "\" \x7f\""},                                       /* DEL and space pass */
        {"/", 1, "\"/\""},                                               /* no need to escape '/' */
        {"\xc3\xa9\xf0\x9f\x98\x80", 6, "\"\xc3\xa9\xf0\x9f\x98\x80\""}, /* UTF-8 as is */
        {"abcdef", 3, "\"abc\""},                                        /* only n bytes */
    };
    mh_buf_t b;
    mh_buf_init(&b);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mh_buf_reset(&b);
        mh_buf_json_string(&b, cases[i].in, cases[i].n);
        assert_buf(&b, cases[i].out, strlen(cases[i].out));
    }
    /* appends after what is there */
    mh_buf_reset(&b);
    mh_buf_puts(&b, "x=");
    mh_buf_json_string(&b, "\"", 1);
    assert_buf(&b, "x=\"\\\"\"", 6);

    /* every control character is escaped as \u00XX */
    static const char hex[] = "0123456789abcdef";
    for (unsigned c = 0; c < 0x20; c++) {
        char in = (char)c;
        char want[9] = {'"', '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], '"', '\0'};
        mh_buf_reset(&b);
        mh_buf_json_string(&b, &in, 1);
        assert_buf(&b, want, 8);
    }
    mh_buf_free(&b);
}

static void test_frame_new(void **state)
{
    mh_frame_t *f = mh_frame_new("hello", 5);
    assert_int_equal(f->refs, 1);
    assert_int_equal(f->len, 5);
    assert_int_equal(f->local_left, 0);
    assert_true(f->t0_us == 0);
    assert_int_equal(f->is_message, 0);
    assert_int_equal(mh_frame_data(f) - f->mem, MH_FRAME_HEADROOM);
    assert_memory_equal(mh_frame_data(f), "hello", 5);
    assert_int_equal(mh_frame_data(f)[5], '\0');
    /* the headroom is writable (the transport puts the WS header there) */
    memset(f->mem, 0xAB, MH_FRAME_HEADROOM);
    assert_memory_equal(mh_frame_data(f), "hello", 5);

    /* a copy, not a borrow */
    char src[] = "abc";
    mh_frame_t *g = mh_frame_new(src, 3);
    src[0] = 'X';
    assert_memory_equal(mh_frame_data(g), "abc", 3);

    mh_frame_t *e = mh_frame_new(NULL, 0);
    assert_int_equal(e->len, 0);
    assert_int_equal(mh_frame_data(e)[0], '\0');
    assert_int_equal(e->refs, 1);

    mh_frame_unref(f);
    mh_frame_unref(g);
    mh_frame_unref(e);
    mh_frame_unref(NULL);
}

static void test_frame_refs(void **state)
{
    mh_frame_t *f = mh_frame_new("x", 1);
    assert_ptr_equal(mh_frame_ref(f), f);
    assert_int_equal(f->refs, 2);
    mh_frame_ref(f);
    assert_int_equal(f->refs, 3);
    mh_frame_unref(f);
    assert_int_equal(f->refs, 2);
    mh_frame_unref(f);
    assert_int_equal(f->refs, 1);
    assert_memory_equal(mh_frame_data(f), "x", 1);
    mh_frame_unref(f); /* last one frees (leak or double free shows under ASan) */
}

static void test_frame_from_buf(void **state)
{
    mh_buf_t b;
    mh_buf_init(&b);
    mh_buf_puts(&b, "{\"type\":\"pong\"}");
    mh_frame_t *f = mh_frame_from_buf(&b);
    assert_int_equal(f->refs, 1);
    assert_int_equal(f->len, 15);
    assert_memory_equal(mh_frame_data(f), "{\"type\":\"pong\"}", 16); /* with the NUL */
    assert_int_equal(mh_frame_data(f) - f->mem, MH_FRAME_HEADROOM);
    /* the buffer is reset and reusable */
    assert_int_equal(b.len, 0);
    mh_buf_puts(&b, "next");
    assert_buf(&b, "next", 4);
    assert_memory_equal(mh_frame_data(f), "{\"type\":\"pong\"}", 15);
    mh_frame_t *g = mh_frame_from_buf(&b);
    assert_memory_equal(mh_frame_data(g), "next", 5);
    mh_frame_unref(f);
    mh_frame_unref(g);

    /* a never-written buffer gives an empty frame */
    mh_buf_t empty;
    mh_buf_init(&empty);
    mh_frame_t *e = mh_frame_from_buf(&empty);
    assert_int_equal(e->len, 0);
    assert_int_equal(mh_frame_data(e)[0], '\0');
    mh_frame_unref(e);
    mh_buf_free(&b);
    mh_buf_free(&empty);
}

static void test_strerror_and_alloc(void **state)
{
    assert_string_equal(mh_strerror(MH_OK), "success");
    int codes[] = {MH_EINVAL, MH_ENOMEM, MH_ENOENT, MH_EEXPIRED, MH_EBADSIG, MH_EIO};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_non_null(mh_strerror(codes[i]));
        assert_string_not_equal(mh_strerror(codes[i]), "unknown error");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(mh_strerror(codes[i]), mh_strerror(codes[j]));
    }
    assert_string_equal(mh_strerror(-999), "unknown error");
    assert_string_equal(mh_strerror(7), "unknown error");

    char *s = mh_xstrdup("dup me");
    assert_string_equal(s, "dup me");
    free(s);
    unsigned char *z = mh_xcalloc(64, 4);
    for (size_t i = 0; i < 256; i++)
        assert_int_equal(z[i], 0);
    z = mh_xrealloc(z, 1024);
    for (size_t i = 0; i < 256; i++)
        assert_int_equal(z[i], 0); /* kept across realloc */
    free(z);
    free(mh_xmalloc(0)); /* zero-size requests give a valid pointer */
    free(mh_xcalloc(0, 0));

    /* clocks: the wall clock is in ms since 1970 (after 2020), monotonic never goes back */
    assert_true(mh_now_ms() > 1577836800000ULL);
    uint64_t a = mh_mono_us(), b = mh_mono_us();
    assert_true(b >= a);
}

/* mh_xgrow: first room, doubling, kept contents, no realloc while there is room */
static void test_xgrow(void **state)
{
    (void)state;
    size_t cap = 0, n = 0;
    uint32_t *a = NULL;
    a = mh_xgrow(a, n, &cap, sizeof(*a), 4);
    assert_int_equal(cap, 4);
    for (; n < 4; n++)
        a[n] = (uint32_t)n * 7u;
    uint32_t *same = mh_xgrow(a, 3, &cap, sizeof(*a), 4);
    assert_ptr_equal(same, a); /* room left: untouched */
    assert_int_equal(cap, 4);
    for (; n < 100; n++) {
        a = mh_xgrow(a, n, &cap, sizeof(*a), 4);
        a[n] = (uint32_t)n * 7u;
    }
    assert_int_equal(cap, 128); /* 4, 8, ..., 128 */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(a[i], i * 7u);
    free(a);
    size_t c2 = 0;
    char *b = mh_xgrow(NULL, 0, &c2, 1, 0); /* first 0: room for one anyway */
    assert_int_equal(c2, 1);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_append),     cmocka_unit_test(test_buf_printf),
        cmocka_unit_test(test_buf_u64),        cmocka_unit_test(test_buf_json_string),
        cmocka_unit_test(test_frame_new),      cmocka_unit_test(test_frame_refs),
        cmocka_unit_test(test_frame_from_buf), cmocka_unit_test(test_strerror_and_alloc),
        cmocka_unit_test(test_xgrow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
