/*
 * token: session tokens. A token binds a user id to its issue time and is
 * signed with HMAC-SHA256 under the hub's secret:
 *   base64url( id:u64be | issued_at_s:u64be | hmac-sha256(secret, those 16 bytes) )
 * 64 characters, no padding. Verification recomputes the MAC and compares in
 * constant time, then checks the expiry. Pure: the caller passes "now".
 */
#ifndef MSGHUB_TOKEN_H
#define MSGHUB_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define MH_TOKEN_LEN 64 /* characters, without the NUL */

/* Writes the token for (id, issued_at_s) into out[MH_TOKEN_LEN + 1]. */
void mh_token_issue(const void *secret, size_t secret_len, uint64_t id, uint64_t issued_at_s,
                    char out[MH_TOKEN_LEN + 1]);

/*
 * Checks a token. Returns 0 and sets *id on success; MH_EINVAL when it is
 * malformed, MH_EBADSIG when the signature does not match (tampered or another
 * secret), MH_EEXPIRED when now_s >= issued_at_s + ttl_s.
 */
int mh_token_verify(const void *secret, size_t secret_len, const char *token, size_t len,
                    uint64_t now_s, uint64_t ttl_s, uint64_t *id);

/* Fills out[n] with cryptographically random bytes; 0 on success. */
int mh_token_random(void *out, size_t n);

/* Constant-time equality of two byte strings (lengths may differ). */
int mh_token_equal_ct(const void *a, size_t alen, const void *b, size_t blen);

#endif
