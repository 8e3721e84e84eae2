/* Log-linear latency histogram: values in nanoseconds, buckets of under
 * 0.8 % relative width, exact count and maximum. */
#ifndef MSGHUB_BENCH_HIST_H
#define MSGHUB_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 8
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB + (64 - HIST_SUB_BITS) * (HIST_SUB / 2))

typedef struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t sum;
    uint64_t b[HIST_BUCKETS];
} hist_t;

void hist_add(hist_t *h, uint64_t v);
/* The value at quantile q (0..1): the middle of its bucket, at most max. */
uint64_t hist_quantile(const hist_t *h, double q);

#endif
