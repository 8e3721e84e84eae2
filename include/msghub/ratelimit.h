/*
 * ratelimit: a token bucket per connection. `rate` tokens per second refill
 * up to `burst`; each request takes one. Pure: the caller passes the time.
 * Embedded by value in its owner; nothing to free.
 */
#ifndef MSGHUB_RATELIMIT_H
#define MSGHUB_RATELIMIT_H

#include <stdint.h>

typedef struct mh_rate {
    double tokens;
    double rate;
    double burst;
    uint64_t last_us;
} mh_rate_t;

/* Starts full (burst tokens available). rate <= 0 disables limiting. */
void mh_rate_init(mh_rate_t *r, double rate, double burst, uint64_t now_us);
/* Takes one token; returns 1 when allowed, 0 when over the limit. */
int mh_rate_take(mh_rate_t *r, uint64_t now_us);

#endif
