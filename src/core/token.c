/*
 * token: issues and verifies session tokens with HMAC-SHA256 (OpenSSL
 * libcrypto), encodes them as unpadded base64url, and provides the
 * cryptographic random bytes and the constant-time comparison the hub uses
 * for secrets.
 *
 * Layout before encoding (48 bytes -> exactly 64 characters):
 *   id:u64be | issued_at_s:u64be | HMAC-SHA256(secret, first 16 bytes)
 * Does not read the clock or keep any state. Ownership: all buffers are the
 * caller's.
 */
#include "msghub/token.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "msghub/util.h"

#define PAYLOAD_LEN 16
#define MAC_LEN 32
#define RAW_LEN (PAYLOAD_LEN + MAC_LEN)
/* Clocks of instances sharing a secret may disagree a little, not more. */
#define MAX_FUTURE_S 300

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void put_u64be(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

static uint64_t get_u64be(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* HMAC-SHA256 of the 16 payload bytes; 0 on success. */
static int compute_mac(const void *secret, size_t secret_len, const unsigned char *payload,
                       unsigned char mac[MAC_LEN])
{
    static const unsigned char empty_key = 0; /* OpenSSL wants a non-NULL key */
    unsigned int mac_len = 0;
    if (secret_len > INT_MAX)
        return -1;
    if (!secret || secret_len == 0)
        secret = &empty_key, secret_len = 0;
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, payload, PAYLOAD_LEN, mac, &mac_len))
        return -1;
    return mac_len == MAC_LEN ? 0 : -1;
}

/* Encodes n (a multiple of 3) bytes; writes 4n/3 characters and a NUL. */
static void b64url_encode(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = b64url[v >> 18 & 63];
        *out++ = b64url[v >> 12 & 63];
        *out++ = b64url[v >> 6 & 63];
        *out++ = b64url[v & 63];
    }
    *out = '\0';
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes n (a multiple of 4) characters into 3n/4 bytes; -1 on a bad character. */
static int b64url_decode(const char *in, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int d = b64url_value((unsigned char)in[i + j]);
            if (d < 0)
                return -1;
            v = v << 6 | (uint32_t)d;
        }
        *out++ = (unsigned char)(v >> 16);
        *out++ = (unsigned char)(v >> 8);
        *out++ = (unsigned char)v;
    }
    return 0;
}

void mh_token_issue(const void *secret, size_t secret_len, uint64_t id, uint64_t issued_at_s,
                    char out[MH_TOKEN_LEN + 1])
{
    unsigned char raw[RAW_LEN];
    put_u64be(raw, id);
    put_u64be(raw + 8, issued_at_s);
    if (compute_mac(secret, secret_len, raw, raw + PAYLOAD_LEN) != 0) {
        /* Cannot happen with a working libcrypto; a token we cannot sign must not exist. */
        fprintf(stderr, "level=error event=hmac_failed\n");
        abort();
    }
    b64url_encode(raw, RAW_LEN, out);
    OPENSSL_cleanse(raw, sizeof(raw));
}

static int check_times(uint64_t issued, uint64_t now_s, uint64_t ttl_s)
{
    if (issued > now_s)
        return issued - now_s > MAX_FUTURE_S ? MH_EINVAL : 0;
    return now_s - issued >= ttl_s ? MH_EEXPIRED : 0;
}

int mh_token_verify(const void *secret, size_t secret_len, const char *token, size_t len,
                    uint64_t now_s, uint64_t ttl_s, uint64_t *id)
{
    unsigned char raw[RAW_LEN], mac[MAC_LEN];
    if (!token || len != MH_TOKEN_LEN || b64url_decode(token, len, raw) != 0)
        return MH_EINVAL;
    if (compute_mac(secret, secret_len, raw, mac) != 0 ||
        CRYPTO_memcmp(mac, raw + PAYLOAD_LEN, MAC_LEN) != 0)
        return MH_EBADSIG;
    uint64_t uid = get_u64be(raw);
    if (uid == 0)
        return MH_EINVAL;
    int rc = check_times(get_u64be(raw + 8), now_s, ttl_s);
    if (rc == 0 && id)
        *id = uid;
    return rc;
}

int mh_token_random(void *out, size_t n)
{
    unsigned char *p = out;
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(p, chunk) != 1)
            return MH_EIO;
        p += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

/* Time depends only on the lengths, never on the bytes. */
int mh_token_equal_ct(const void *a, size_t alen, const void *b, size_t blen)
{
    const volatile unsigned char *pa = a, *pb = b;
    size_t n = alen > blen ? alen : blen;
    unsigned char diff = alen != blen;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < alen ? pa[i] : 0;
        unsigned char y = i < blen ? pb[i] : 0;
        diff |= x ^ y;
    }
    return diff == 0;
}
