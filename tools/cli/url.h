/*
 * url: the command-line values msghub-cli parses before any I/O: the hub's
 * URL (http:// or ws://, the scheme only says which default the user had in
 * mind; every command picks its own), receiver id lists, and the query
 * escaping of a session token.
 *
 * Pure functions over caller-owned text; results go into caller-owned
 * structs and mh_buf_t buffers.
 */
#ifndef MSGHUB_CLI_URL_H
#define MSGHUB_CLI_URL_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/util.h"

typedef struct cli_url {
    char host[256];      /* name or address; an IPv6 address without brackets */
    int port;            /* 1..65535, 80 when the URL has none */
    char authority[300]; /* Host header value: host:port, IPv6 in brackets */
    char prefix[1024];   /* path in front of /ws and the API paths, no trailing '/' */
} cli_url_t;

/*
 * Parses "http://host[:port][/prefix]" or "ws://..." (a trailing "/ws" or
 * "/" is dropped from the prefix, so ws://host:8080/ws and
 * http://host:8080 name the same hub). https://, wss://, user info, query
 * and fragment are refused. Returns 0, or -1 with a message in err.
 */
int cli_url_parse(const char *text, cli_url_t *u, char *err, size_t errlen);

/* Parses one id, plain decimal digits in 1..2^64-1. Returns 0 or -1. */
int cli_id_parse(const char *s, size_t n, uint64_t *out);

/*
 * Parses "7,9,11" (no spaces) and appends the ids to json as the array
 * text "[7,9,11]". Returns the number of ids, or -1 with a message in err
 * (json is then left as it was).
 */
int cli_ids_parse(const char *s, size_t n, mh_buf_t *json, char *err, size_t errlen);

/* Appends s percent-encoded for a query value (RFC 3986 unreserved kept). */
void cli_query_escape(mh_buf_t *out, const char *s);

#endif
