/* ratelimit: token bucket arithmetic (see ratelimit.h). */
#include "msghub/ratelimit.h"

void mh_rate_init(mh_rate_t *r, double rate, double burst, uint64_t now_us)
{
    r->rate = rate;
    r->burst = burst < 1 ? 1 : burst;
    r->tokens = r->burst;
    r->last_us = now_us;
}

int mh_rate_take(mh_rate_t *r, uint64_t now_us)
{
    if (r->rate <= 0)
        return 1;
    if (now_us > r->last_us) {
        r->tokens += (double)(now_us - r->last_us) * r->rate / 1e6;
        if (r->tokens > r->burst)
            r->tokens = r->burst;
        r->last_us = now_us;
    }
    if (r->tokens < 1.0)
        return 0;
    r->tokens -= 1.0;
    return 1;
}
