/*
 * json: a strict RFC 8259 scanner that validates JSON text (including the
 * UTF-8 of its strings and a nesting cap) and reports where values start
 * and end, without building a tree. The hub uses the spans to forward a
 * relay body byte for byte, and parses ids itself so that every integer up
 * to 2^64-1 is exact (a double-based parser would round above 2^53).
 *
 * Pure functions over caller-owned text; nothing is allocated.
 */
#ifndef MSGHUB_JSON_H
#define MSGHUB_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/util.h"

typedef enum {
    MH_JSON_OBJECT,
    MH_JSON_ARRAY,
    MH_JSON_STRING,
    MH_JSON_NUMBER,
    MH_JSON_TRUE,
    MH_JSON_FALSE,
    MH_JSON_NULL,
} mh_json_kind_t;

#define MH_JSON_MAX_DEPTH 64

/*
 * Validates s[0..n) as exactly one JSON value with optional surrounding
 * whitespace: MH_OK, MH_EINVAL (not valid JSON or not valid UTF-8) or
 * MH_EDEPTH (nested deeper than max_depth).
 */
int mh_json_validate(const char *s, size_t n, int max_depth);

/* A value's span in the text and its kind. */
typedef struct mh_json_span {
    const char *p;
    size_t len;
    mh_json_kind_t kind;
} mh_json_span_t;

/*
 * Iterates the members of the object in obj (which must be validated JSON).
 * *pos starts at 0; each call fills key (raw text between the quotes,
 * escapes not decoded) and value, and returns 1, or 0 after the last member.
 */
int mh_json_object_next(const mh_json_span_t *obj, size_t *pos, mh_json_span_t *key,
                        mh_json_span_t *value);

/* Same for the elements of a validated array. */
int mh_json_array_next(const mh_json_span_t *arr, size_t *pos, mh_json_span_t *value);

/* Span of the whole (validated) document, whitespace trimmed. */
mh_json_span_t mh_json_root(const char *s, size_t n);

/*
 * Parses a number span as an unsigned integer in 1..2^64-1 written in plain
 * digits (no sign, fraction or exponent). Returns 0 and sets *out, or -1.
 */
int mh_json_parse_id(const mh_json_span_t *num, uint64_t *out);

/*
 * Finds the top-level member `key` of an object WITHOUT validating the
 * document (used when validation failed only on depth). Nested values are
 * skipped iteratively, so any depth is safe. The value is reported only when
 * it is a well-formed string or number. Returns 0 when found, -1 otherwise.
 */
int mh_json_find_shallow(const char *s, size_t n, const char *key, mh_json_span_t *value);

/* 1 when text[0..n) is valid UTF-8 (RFC 3629: no overlongs, no surrogates), else 0. */
int mh_json_utf8_valid(const void *text, size_t n);

#endif
