/* backoff: exponential reconnection delay with jitter (see backoff.h). */
#include "msghub/backoff.h"

void mh_backoff_init(mh_backoff_t *b, unsigned min_ms, unsigned max_ms, uint64_t seed)
{
    b->min_ms = min_ms;
    b->max_ms = max_ms;
    b->attempts = 0;
    b->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
}

uint64_t mh_backoff_rand(mh_backoff_t *b)
{
    b->rng ^= b->rng << 13; /* xorshift64 */
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return b->rng;
}

unsigned mh_backoff_next(mh_backoff_t *b)
{
    unsigned shift = b->attempts < 6 ? b->attempts : 6;
    unsigned base = b->min_ms << shift;
    if (base > b->max_ms)
        base = b->max_ms;
    b->attempts++;
    uint64_t r = mh_backoff_rand(b) >> 32;
    return (unsigned)((uint64_t)base * (80u + r % 41u) / 100u); /* +-20 % */
}

void mh_backoff_reset(mh_backoff_t *b)
{
    b->attempts = 0;
}
