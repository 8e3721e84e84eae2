/*
 * url: parsing of the hub URL, id lists and query escaping for msghub-cli.
 * See url.h.
 */
#include "url.h"

#include <stdio.h>
#include <string.h>

#include "msghub/json.h"

static int fail(char *err, size_t errlen, const char *msg, const char *text)
{
    snprintf(err, errlen, "%s: '%s'", msg, text);
    return -1;
}

/* Splits "host[:port]" or "[v6][:port]" into u->host, u->port and u->authority. */
static int parse_authority(const char *a, size_t n, cli_url_t *u, const char *text, char *err,
                           size_t errlen)
{
    const char *host = a, *end = a + n, *port = NULL;
    size_t hlen;
    int v6 = 0;
    if (n && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close)
            return fail(err, errlen, "unterminated '[' in URL", text);
        host = a + 1;
        hlen = (size_t)(close - host);
        v6 = 1;
        if (close + 1 < end) {
            if (close[1] != ':')
                return fail(err, errlen, "bad host in URL", text);
            port = close + 2;
        }
    } else {
        const char *colon = memchr(a, ':', n);
        hlen = colon ? (size_t)(colon - a) : n;
        port = colon ? colon + 1 : NULL;
    }
    if (hlen == 0 || hlen >= sizeof(u->host))
        return fail(err, errlen, "missing or too long host in URL", text);
    if (memchr(host, '@', hlen))
        return fail(err, errlen, "user info in URL is not supported", text);
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    u->port = 80;
    if (port) {
        uint64_t v;
        if (cli_id_parse(port, (size_t)(end - port), &v) || v > 65535)
            return fail(err, errlen, "bad port in URL", text);
        u->port = (int)v;
    }
    snprintf(u->authority, sizeof(u->authority), v6 ? "[%s]:%d" : "%s:%d", u->host, u->port);
    return 0;
}

int cli_url_parse(const char *text, cli_url_t *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    const char *rest;
    if (!strncmp(text, "http://", 7))
        rest = text + 7;
    else if (!strncmp(text, "ws://", 5))
        rest = text + 5;
    else if (!strncmp(text, "https://", 8) || !strncmp(text, "wss://", 6))
        return fail(err, errlen, "TLS URLs are not supported (the hub speaks plain HTTP)", text);
    else
        return fail(err, errlen, "URL must start with http:// or ws://", text);
    if (strpbrk(rest, "?#"))
        return fail(err, errlen, "URL must not carry a query or fragment", text);
    const char *slash = strchr(rest, '/');
    size_t alen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (parse_authority(rest, alen, u, text, err, errlen))
        return -1;
    if (!slash)
        return 0;
    size_t plen = strlen(slash);
    while (plen && slash[plen - 1] == '/')
        plen--;
    if (plen >= 3 && !memcmp(slash + plen - 3, "/ws", 3))
        plen -= 3;
    while (plen && slash[plen - 1] == '/')
        plen--;
    if (plen >= sizeof(u->prefix))
        return fail(err, errlen, "URL path too long", text);
    for (size_t i = 0; i < plen; i++)
        if ((unsigned char)slash[i] <= ' ' || slash[i] == 0x7f)
            return fail(err, errlen, "URL path must not contain spaces or control bytes", text);
    memcpy(u->prefix, slash, plen);
    u->prefix[plen] = '\0';
    return 0;
}

int cli_id_parse(const char *s, size_t n, uint64_t *out)
{
    mh_json_span_t span = {s, n, MH_JSON_NUMBER};
    return mh_json_parse_id(&span, out);
}

int cli_ids_parse(const char *s, size_t n, mh_buf_t *json, char *err, size_t errlen)
{
    size_t mark = json->len;
    int count = 0;
    size_t i = 0;
    mh_buf_puts(json, "[");
    while (i <= n) {
        size_t j = i;
        while (j < n && s[j] != ',')
            j++;
        uint64_t id;
        if (cli_id_parse(s + i, j - i, &id)) {
            snprintf(err, errlen, "bad receiver id '%.*s' in '%.*s' (want ids 1..2^64-1 like 7,9)",
                     (int)(j - i), s + i, (int)n, s);
            json->len = mark;
            if (json->data)
                json->data[mark] = '\0';
            return -1;
        }
        if (count++)
            mh_buf_puts(json, ",");
        mh_buf_u64(json, id);
        i = j + 1;
    }
    mh_buf_puts(json, "]");
    return count;
}

void cli_query_escape(mh_buf_t *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            mh_buf_append(out, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            mh_buf_append(out, e, 3);
        }
    }
}
