/*
 * backoff: the reconnection delay of the Redis and RabbitMQ connections:
 * exponential from min_ms doubling up to max_ms (at most 6 doublings),
 * with +-20 % jitter from a per-connection xorshift64 generator so that
 * instances restarted together do not retry in step.
 *
 * Layer 0 (src/base).
 */
#ifndef MSGHUB_BACKOFF_H
#define MSGHUB_BACKOFF_H

#include <stdint.h>

typedef struct mh_backoff {
    unsigned min_ms, max_ms;
    unsigned attempts; /* retries scheduled since the last success */
    uint64_t rng;      /* xorshift64 state, never 0 */
} mh_backoff_t;

/* seed: any value (0 is replaced by a fixed odd constant). */
void mh_backoff_init(mh_backoff_t *b, unsigned min_ms, unsigned max_ms, uint64_t seed);
/* The delay before the next attempt; counts it (b->attempts is then >= 1). */
unsigned mh_backoff_next(mh_backoff_t *b);
/* A connection succeeded: the next delay starts from min_ms again. */
void mh_backoff_reset(mh_backoff_t *b);
/* The next value of the generator (also for other per-connection randomness). */
uint64_t mh_backoff_rand(mh_backoff_t *b);

#endif
