/*
 * util: aborting allocators, clocks, the growable text buffer and the
 * reference-counted frame. See include/msghub/util.h for ownership rules.
 */
#include "msghub/util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *mh_strerror(int err)
{
    switch (err) {
    case MH_OK:
        return "success";
    case MH_EINVAL:
        return "invalid input";
    case MH_ENOMEM:
        return "limit exceeded";
    case MH_ENOENT:
        return "not found";
    case MH_EEXPIRED:
        return "expired";
    case MH_EBADSIG:
        return "bad signature";
    case MH_EIO:
        return "i/o error";
    case MH_EINDOUBT:
        return "answer lost, outcome unknown";
    case MH_EDEPTH:
        return "nested too deep";
    default:
        return "unknown error";
    }
}

static void oom(size_t n)
{
    fprintf(stderr, "level=error event=out_of_memory bytes=%zu\n", n);
    abort();
}

void *mh_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *mh_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *mh_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

void *mh_xgrow(void *p, size_t n, size_t *cap, size_t size, size_t first)
{
    if (n < *cap)
        return p;
    size_t want = *cap ? 2 * *cap : first;
    if (want <= n)
        want = n + 1;
    if (want > SIZE_MAX / size)
        oom(SIZE_MAX);
    *cap = want;
    return mh_xrealloc(p, want * size);
}

char *mh_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(mh_xmalloc(n), s, n);
}

char *mh_xstrcat(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = mh_xmalloc(na + nb + 1);
    memcpy(s, a, na);
    memcpy(s + na, b, nb + 1);
    return s;
}

int mh_hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

uint64_t mh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t mh_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void mh_buf_init(mh_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void mh_buf_free(mh_buf_t *b)
{
    free(b->data);
    mh_buf_init(b);
}

void mh_buf_reset(mh_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void mh_buf_reserve(mh_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = mh_xrealloc(b->data, cap);
    b->cap = cap;
}

void mh_buf_append(mh_buf_t *b, const void *p, size_t n)
{
    mh_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void mh_buf_puts(mh_buf_t *b, const char *s)
{
    mh_buf_append(b, s, strlen(s));
}

void mh_buf_printf(mh_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    /* n == 0 still goes on, so a fresh buffer ends up a C string like after any write */
    mh_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void mh_buf_u64(mh_buf_t *b, uint64_t v)
{
    char tmp[24];
    int i = (int)sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    mh_buf_append(b, tmp + i, sizeof(tmp) - (size_t)i);
}

void mh_buf_json_string(mh_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    mh_buf_reserve(b, n + 2);
    mh_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            mh_buf_append(b, esc, 2);
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            mh_buf_append(b, esc, 6);
        } else {
            mh_buf_append(b, &s[i], 1);
        }
    }
    mh_buf_append(b, "\"", 1);
}

static void frame_init(mh_frame_t *f, size_t n)
{
    f->refs = 1;
    f->local_left = 0;
    f->t0_us = 0;
    f->is_message = 0;
    f->seq_at = 0;
    f->log_refs = 0;
    f->len = n;
    f->mem[MH_FRAME_HEADROOM + n] = '\0';
}

mh_frame_t *mh_frame_new(const void *p, size_t n)
{
    mh_frame_t *f = mh_xmalloc(sizeof(*f) + MH_FRAME_HEADROOM + n + 1);
    if (n)
        memcpy(f->mem + MH_FRAME_HEADROOM, p, n);
    frame_init(f, n);
    return f;
}

/*
 * The frame is made in b's own memory (grown or shrunk to fit, the text moved
 * up behind the header): a 1 MiB message never exists twice, and a buffer
 * that grew to twice its text gives the rest back.
 */
mh_frame_t *mh_frame_from_buf(mh_buf_t *b)
{
    if (!b->data)
        return mh_frame_new(NULL, 0);
    size_t n = b->len, at = offsetof(mh_frame_t, mem) + MH_FRAME_HEADROOM;
    unsigned char *p = mh_xrealloc(b->data, at + n + 1);
    memmove(p + at, p, n);
    mh_frame_t *f = (mh_frame_t *)(void *)p;
    frame_init(f, n);
    mh_buf_init(b);
    return f;
}

mh_frame_t *mh_frame_ref(mh_frame_t *f)
{
    f->refs++;
    return f;
}

void mh_frame_unref(mh_frame_t *f)
{
    if (f && --f->refs == 0)
        free(f);
}

mh_handle_t *mh_handle_new(void *obj)
{
    mh_handle_t *h = mh_xmalloc(sizeof(*h));
    h->obj = obj;
    h->refs = 1;
    return h;
}

mh_handle_t *mh_handle_ref(mh_handle_t *h)
{
    h->refs++;
    return h;
}

void mh_handle_unref(mh_handle_t *h)
{
    if (h && --h->refs == 0)
        free(h);
}

void mh_handle_clear(mh_handle_t *h)
{
    if (!h)
        return;
    h->obj = NULL;
    mh_handle_unref(h);
}
