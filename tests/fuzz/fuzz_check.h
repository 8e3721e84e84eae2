/*
 * fuzz_check: invariant helpers shared by the fuzz targets (fuzz_parsers.c,
 * fuzz_redis.c).
 */
#ifndef MSGHUB_FUZZ_CHECK_H
#define MSGHUB_FUZZ_CHECK_H

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The u64 v re-printed in decimal equals the digits d[n] without their leading zeros. */
static inline int fuzz_reprints(uint64_t v, const char *d, size_t n)
{
    char buf[24];
    int k = snprintf(buf, sizeof(buf), "%" PRIu64, v);
    while (n > 1 && d[0] == '0')
        d++, n--;
    return (size_t)k == n && memcmp(buf, d, n) == 0;
}

#endif
