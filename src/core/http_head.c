/*
 * http_head: the classification of a request head's first bytes (see
 * http_head.h).
 */
#include "msghub/http_head.h"

#include <string.h>

#define METHOD_MAX 16 /* longer than any method: "OPTIONS", "CONNECT", extension methods */

/* 1: p starts "TOKEN " (upper-case letters); 0: it cannot; -1: too short to tell. */
static int starts_with_method(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && i < METHOD_MAX && p[i] >= 'A' && p[i] <= 'Z')
        i++;
    if (i == n && n < METHOD_MAX)
        return -1;
    return i > 0 && i < n && p[i] == ' ';
}

/* Where the line that starts at p ends (its '\n'), or NULL. */
static const char *line_end(const char *p, size_t n)
{
    return memchr(p, '\n', n);
}

/* 1 when p[n] holds an empty line ("\r\n\r\n" or "\n\n"). */
static int has_empty_line(const char *p, size_t n)
{
    for (const char *e = line_end(p, n); e; e = line_end(e + 1, n - (size_t)(e + 1 - p))) {
        const char *next = e + 1;
        size_t left = n - (size_t)(next - p);
        if ((left >= 1 && next[0] == '\n') || (left >= 2 && next[0] == '\r' && next[1] == '\n'))
            return 1;
    }
    return 0;
}

/*
 * The header lines after the request line (which ends at first): 1 when a
 * whole one lacks ':', 0 otherwise (none, or all have one so far).
 */
static int line_without_colon(const char *p, size_t n, const char *first)
{
    const char *line = first + 1, *end = p + n;
    for (const char *e; line < end && (e = line_end(line, (size_t)(end - line))); line = e + 1) {
        size_t len = (size_t)(e - line);
        if (len && line[len - 1] == '\r')
            len--;
        if (!len)
            return 0; /* the empty line: the head ended */
        if (!memchr(line, ':', len))
            return 1;
    }
    return 0;
}

/* 1 when the request line p[len] names a version ("... HTTP/x.y"). */
static int has_version(const char *p, size_t len)
{
    static const char v[] = " HTTP/";
    for (size_t i = 0; i + sizeof(v) - 1 <= len; i++)
        if (memcmp(p + i, v, sizeof(v) - 1) == 0)
            return 1;
    return 0;
}

mh_http_head_t mh_http_head_scan(const char *p, size_t n, size_t max)
{
    int m = starts_with_method(p, n);
    if (m == 0)
        return MH_HTTP_HEAD_READY;
    const char *e = line_end(p, n);
    if (!e)
        return n >= max && m == 1 ? MH_HTTP_HEAD_URI_TOO_LONG : MH_HTTP_HEAD_WAIT;
    if (!has_version(p, (size_t)(e - p)))
        return MH_HTTP_HEAD_READY;
    if (line_without_colon(p, n, e))
        return MH_HTTP_HEAD_NO_COLON;
    if (has_empty_line(p, n))
        return MH_HTTP_HEAD_READY;
    return n >= max ? MH_HTTP_HEAD_FIELDS_TOO_BIG : MH_HTTP_HEAD_WAIT;
}
