/*
 * query: the pure part of reading a request's query string (PROTOCOL.md,
 * "Query parameters"). libwebsockets splits the query at '&' and decodes
 * each fragment ("name=value" or a bare "name"); this module matches one
 * fragment against a parameter name and copies its value, and parses the
 * values the hub takes: ack (client | auto), since (a decimal seq) and
 * token (its length rule). The length rule: a value that does not fit the
 * caller's buffer is an error (MH_QUERY_TOO_LONG), never read as absent.
 */
#ifndef MSGHUB_QUERY_H
#define MSGHUB_QUERY_H

#include <stddef.h>
#include <stdint.h>

/* mh_query_match() results besides a length. */
#define MH_QUERY_ABSENT (-1)
#define MH_QUERY_TOO_LONG (-2)

/* Most digits a since value may have (2^64-1 has 20). */
#define MH_QUERY_SINCE_DIGITS_MAX 20

/*
 * Matches fragment frag[n] against parameter name. When it is "name=value"
 * copies value into out[len] NUL-terminated and returns its length (a bare
 * "name" is present and empty: 0); MH_QUERY_TOO_LONG when the value needs
 * len bytes or more; MH_QUERY_ABSENT when the fragment is another parameter.
 * len must be at least 1.
 */
int mh_query_match(const char *frag, size_t n, const char *name, char *out, size_t len);

/*
 * ?ack from its match result n and value v: 0 and *ack_auto set (absent is
 * client), -1 when it is not exactly "client" or "auto" (or too long).
 */
int mh_query_parse_ack(int n, const char *v, int *ack_auto);

/* ?since value v[n]: 1 to 20 decimal digits, at most 2^64-1; 0 and *out, else -1. */
int mh_query_parse_since(const char *v, size_t n, uint64_t *out);

/*
 * ?token from its match result: its length when it is there and not empty,
 * 0 when it cannot be a token (too long: refused, never read as "no token"),
 * -1 when absent or empty.
 */
int mh_query_token_len(int n);

#endif
