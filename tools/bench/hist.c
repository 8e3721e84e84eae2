/* Log-linear histogram; see hist.h. */
#include "hist.h"

#include <math.h>

static int index_of(uint64_t v)
{
    if (v < HIST_SUB)
        return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int g = msb - HIST_SUB_BITS + 1; /* >= 1; v >> g lies in [SUB/2, SUB) */
    return HIST_SUB + (g - 1) * (HIST_SUB / 2) + (int)((v >> g) - HIST_SUB / 2);
}

static uint64_t lower_of(int i, uint64_t *width)
{
    if (i < HIST_SUB) {
        *width = 1;
        return (uint64_t)i;
    }
    int g = (i - HIST_SUB) / (HIST_SUB / 2) + 1;
    uint64_t sub = (uint64_t)((i - HIST_SUB) % (HIST_SUB / 2) + HIST_SUB / 2);
    *width = 1ULL << g;
    return sub << g;
}

void hist_add(hist_t *h, uint64_t v)
{
    h->b[index_of(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

uint64_t hist_quantile(const hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t w, lo = lower_of(i, &w);
            uint64_t mid = lo + (w - 1) / 2;
            return mid > h->max ? h->max : mid;
        }
    }
    return h->max;
}
