/*
 * query: matching one decoded query-string fragment against a parameter
 * name, and parsing the ack, since and token values (contract in query.h).
 * Pure: no libwebsockets here; net/http_api.c feeds it lws' fragments.
 * Ownership: every buffer is the caller's.
 */
#include "msghub/query.h"

#include <string.h>

#define ACK_CLIENT "client"
#define ACK_AUTO "auto"

int mh_query_match(const char *frag, size_t n, const char *name, char *out, size_t len)
{
    size_t nlen = strlen(name);
    if (n < nlen || memcmp(frag, name, nlen) != 0)
        return MH_QUERY_ABSENT;
    if (n == nlen) { /* a bare "name": present and empty */
        out[0] = '\0';
        return 0;
    }
    if (frag[nlen] != '=')
        return MH_QUERY_ABSENT;
    size_t vlen = n - nlen - 1;
    if (vlen >= len)
        return MH_QUERY_TOO_LONG;
    memcpy(out, frag + nlen + 1, vlen);
    out[vlen] = '\0';
    return (int)vlen;
}

static int value_is(const char *v, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(v, want, n) == 0;
}

int mh_query_parse_ack(int n, const char *v, int *ack_auto)
{
    *ack_auto = 0;
    if (n == MH_QUERY_ABSENT)
        return 0;
    if (n < 0)
        return -1;
    if (value_is(v, (size_t)n, ACK_AUTO))
        *ack_auto = 1;
    else if (!value_is(v, (size_t)n, ACK_CLIENT))
        return -1;
    return 0;
}

int mh_query_parse_since(const char *v, size_t n, uint64_t *out)
{
    if (n == 0 || n > MH_QUERY_SINCE_DIGITS_MAX)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        unsigned d = (unsigned)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

int mh_query_token_len(int n)
{
    if (n == MH_QUERY_TOO_LONG)
        return 0;
    return n > 0 ? n : -1;
}
