/*
 * json: validating scanner. A recursive-descent validator with an explicit
 * depth cap walks the text once; the span iterators rely on text that
 * already passed validation and so skip values without rechecking them.
 */
#include "msghub/json.h"

#include <string.h>

#include "msghub/util.h"

typedef struct scan {
    const unsigned char *s;
    size_t n;
    size_t i;
    int max_depth;
} scan_t;

static void skip_ws(scan_t *c)
{
    while (c->i < c->n) {
        unsigned char ch = c->s[c->i];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r')
            break;
        c->i++;
    }
}

/* Length of the valid UTF-8 sequence at s[i], or 0 (RFC 3629: no overlongs, no surrogates). */
static size_t utf8_len(const unsigned char *s, size_t n, size_t i)
{
    unsigned char c = s[i];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (i + len > n)
        return 0;
    if (s[i + 1] < lo || s[i + 1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if (s[i + k] < 0x80 || s[i + k] > 0xBF)
            return 0;
    return len;
}

int mh_json_utf8_valid(const void *text, size_t n)
{
    const unsigned char *s = text;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_len(s, n, i);
        if (!len)
            return 0;
        i += len;
    }
    return 1;
}

static int scan_string(scan_t *c)
{
    c->i++; /* opening quote */
    while (c->i < c->n) {
        unsigned char ch = c->s[c->i];
        if (ch == '"') {
            c->i++;
            return MH_OK;
        }
        if (ch < 0x20)
            return MH_EINVAL;
        if (ch == '\\') {
            if (c->i + 1 >= c->n)
                return MH_EINVAL;
            unsigned char e = c->s[c->i + 1];
            if (e == 'u') {
                if (c->i + 6 > c->n)
                    return MH_EINVAL;
                for (int k = 2; k < 6; k++)
                    if (mh_hexval(c->s[c->i + k]) < 0)
                        return MH_EINVAL;
                c->i += 6;
            } else if (strchr("\"\\/bfnrt", e) && e) {
                c->i += 2;
            } else
                return MH_EINVAL;
            continue;
        }
        size_t len = utf8_len(c->s, c->n, c->i);
        if (!len)
            return MH_EINVAL;
        c->i += len;
    }
    return MH_EINVAL;
}

static int digits(scan_t *c)
{
    size_t start = c->i;
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9')
        c->i++;
    return c->i > start ? MH_OK : MH_EINVAL;
}

static int scan_number(scan_t *c)
{
    if (c->s[c->i] == '-')
        c->i++;
    if (c->i >= c->n)
        return MH_EINVAL;
    if (c->s[c->i] == '0')
        c->i++;
    else if (digits(c))
        return MH_EINVAL;
    if (c->i < c->n && c->s[c->i] == '.') {
        c->i++;
        if (digits(c))
            return MH_EINVAL;
    }
    if (c->i < c->n && (c->s[c->i] == 'e' || c->s[c->i] == 'E')) {
        c->i++;
        if (c->i < c->n && (c->s[c->i] == '+' || c->s[c->i] == '-'))
            c->i++;
        if (digits(c))
            return MH_EINVAL;
    }
    return MH_OK;
}

static int scan_literal(scan_t *c, const char *lit)
{
    size_t len = strlen(lit);
    if (c->n - c->i < len || memcmp(c->s + c->i, lit, len) != 0)
        return MH_EINVAL;
    c->i += len;
    return MH_OK;
}

static int scan_value(scan_t *c, int depth);

static int scan_container(scan_t *c, int depth, unsigned char close)
{
    if (depth >= c->max_depth)
        return MH_EDEPTH;
    c->i++;
    skip_ws(c);
    if (c->i < c->n && c->s[c->i] == close) {
        c->i++;
        return MH_OK;
    }
    for (;;) {
        int rc;
        if (close == '}') {
            if (c->i >= c->n || c->s[c->i] != '"')
                return MH_EINVAL;
            if ((rc = scan_string(c)))
                return rc;
            skip_ws(c);
            if (c->i >= c->n || c->s[c->i] != ':')
                return MH_EINVAL;
            c->i++;
            skip_ws(c);
        }
        if ((rc = scan_value(c, depth + 1)))
            return rc;
        skip_ws(c);
        if (c->i >= c->n)
            return MH_EINVAL;
        if (c->s[c->i] == close) {
            c->i++;
            return MH_OK;
        }
        if (c->s[c->i] != ',')
            return MH_EINVAL;
        c->i++;
        skip_ws(c);
    }
}

static int scan_value(scan_t *c, int depth)
{
    if (c->i >= c->n)
        return MH_EINVAL;
    switch (c->s[c->i]) {
    case '{':
        return scan_container(c, depth, '}');
    case '[':
        return scan_container(c, depth, ']');
    case '"':
        return scan_string(c);
    case 't':
        return scan_literal(c, "true");
    case 'f':
        return scan_literal(c, "false");
    case 'n':
        return scan_literal(c, "null");
    default:
        if (c->s[c->i] == '-' || (c->s[c->i] >= '0' && c->s[c->i] <= '9'))
            return scan_number(c);
        return MH_EINVAL;
    }
}

int mh_json_validate(const char *s, size_t n, int max_depth)
{
    scan_t c = {(const unsigned char *)s, n, 0, max_depth};
    skip_ws(&c);
    int rc = scan_value(&c, 0);
    if (rc)
        return rc;
    skip_ws(&c);
    return c.i == n ? MH_OK : MH_EINVAL;
}

static mh_json_kind_t kind_of(unsigned char ch)
{
    switch (ch) {
    case '{':
        return MH_JSON_OBJECT;
    case '[':
        return MH_JSON_ARRAY;
    case '"':
        return MH_JSON_STRING;
    case 't':
        return MH_JSON_TRUE;
    case 'f':
        return MH_JSON_FALSE;
    case 'n':
        return MH_JSON_NULL;
    default:
        return MH_JSON_NUMBER;
    }
}

/* Skips one validated value at c->i; depth is irrelevant here. */
static void skip_valid(scan_t *c)
{
    c->max_depth = 1 << 30;
    scan_value(c, 0);
}

static void fill_span(scan_t *c, mh_json_span_t *v)
{
    size_t start = c->i;
    v->kind = kind_of(c->s[start]);
    skip_valid(c);
    v->p = (const char *)c->s + start;
    v->len = c->i - start;
}

mh_json_span_t mh_json_root(const char *s, size_t n)
{
    scan_t c = {(const unsigned char *)s, n, 0, 0};
    skip_ws(&c);
    mh_json_span_t v = {s + c.i, 0, MH_JSON_NULL};
    if (c.i < n)
        fill_span(&c, &v);
    return v;
}

/* Shared walk for objects (with keys) and arrays. */
static int container_next(const mh_json_span_t *box, size_t *pos, mh_json_span_t *key,
                          mh_json_span_t *value)
{
    scan_t c = {(const unsigned char *)box->p, box->len, *pos ? *pos : 1, 0};
    skip_ws(&c);
    if (c.i >= c.n || c.s[c.i] == '}' || c.s[c.i] == ']')
        return 0;
    if (c.s[c.i] == ',') {
        c.i++;
        skip_ws(&c);
    }
    if (key) {
        size_t k0 = c.i;
        skip_valid(&c);
        key->p = box->p + k0 + 1;
        key->len = c.i - k0 - 2;
        key->kind = MH_JSON_STRING;
        skip_ws(&c);
        c.i++; /* ':' */
        skip_ws(&c);
    }
    fill_span(&c, value);
    *pos = c.i;
    return 1;
}

int mh_json_object_next(const mh_json_span_t *obj, size_t *pos, mh_json_span_t *key,
                        mh_json_span_t *value)
{
    return container_next(obj, pos, key, value);
}

int mh_json_array_next(const mh_json_span_t *arr, size_t *pos, mh_json_span_t *value)
{
    return container_next(arr, pos, NULL, value);
}

int mh_json_parse_id(const mh_json_span_t *num, uint64_t *out)
{
    if (num->kind != MH_JSON_NUMBER || num->len == 0 || num->len > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < num->len; i++) {
        unsigned char ch = (unsigned char)num->p[i];
        if (ch < '0' || ch > '9')
            return -1;
        unsigned d = ch - '0';
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v == 0)
        return -1;
    *out = v;
    return 0;
}

/* Skips any value without validating it, iteratively; returns 0 or -1 on truncation. */
static int skip_loose(scan_t *c)
{
    size_t depth = 0;
    do {
        if (c->i >= c->n)
            return -1;
        unsigned char ch = c->s[c->i];
        if (ch == '"') {
            if (scan_string(c))
                return -1;
            continue;
        }
        if (ch == '{' || ch == '[')
            depth++;
        else if (ch == '}' || ch == ']') {
            if (depth == 0)
                return 0; /* end of the enclosing container: an empty value */
            depth--;
        }
        c->i++;
        if (depth == 0 && ch != '{' && ch != '[' && ch != '}' && ch != ']') {
            /* a scalar: run to the next delimiter */
            while (c->i < c->n && !strchr(",}] \t\r\n", c->s[c->i]))
                c->i++;
        }
    } while (depth > 0);
    return 0;
}

int mh_json_find_shallow(const char *s, size_t n, const char *key, mh_json_span_t *value)
{
    scan_t c = {(const unsigned char *)s, n, 0, MH_JSON_MAX_DEPTH};
    size_t klen = strlen(key);
    skip_ws(&c);
    if (c.i >= n || c.s[c.i] != '{')
        return -1;
    c.i++;
    for (;;) {
        skip_ws(&c);
        if (c.i >= n || c.s[c.i] != '"')
            return -1;
        size_t k0 = c.i;
        if (scan_string(&c))
            return -1;
        int match = c.i - k0 - 2 == klen && memcmp(s + k0 + 1, key, klen) == 0;
        skip_ws(&c);
        if (c.i >= n || c.s[c.i] != ':')
            return -1;
        c.i++;
        skip_ws(&c);
        if (match && c.i < n) {
            size_t v0 = c.i;
            mh_json_kind_t kind = kind_of(c.s[v0]);
            if (kind != MH_JSON_STRING && kind != MH_JSON_NUMBER)
                return -1;
            if ((kind == MH_JSON_STRING ? scan_string(&c) : scan_number(&c)) != MH_OK)
                return -1;
            *value = (mh_json_span_t){s + v0, c.i - v0, kind};
            return 0;
        }
        if (skip_loose(&c))
            return -1;
        skip_ws(&c);
        if (c.i >= n || c.s[c.i] != ',')
            return -1;
        c.i++;
    }
}
