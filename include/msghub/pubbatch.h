/*
 * pubbatch: coalesces the envelopes published to the same instance during
 * one loop turn into ONE AMQP message (a codec batch), flushed from a
 * uv_prepare handle just before the loop waits for I/O, or earlier when a
 * batch reaches its size cap. RabbitMQ's per-message cost (persistence,
 * confirm) is then paid once per instance per turn instead of once per
 * relay. A batch of one is published as the bare envelope.
 *
 * Each added envelope keeps its own callback, called exactly once with the
 * status of the message that carried it (0, MH_ENOENT, MH_EIO). Order is
 * kept: envelopes for one instance are published in the order added.
 *
 * Ownership: envelopes are copied; mh_pubbatch_free() publishes nothing
 * more and fails what is still waiting with MH_EIO.
 */
#ifndef MSGHUB_PUBBATCH_H
#define MSGHUB_PUBBATCH_H

#include <stddef.h>

#include "msghub/broker_amqp.h"

struct uv_loop_s;
typedef struct mh_pubbatch mh_pubbatch_t;

mh_pubbatch_t *mh_pubbatch_new(struct uv_loop_s *loop, mh_broker_t *broker, size_t max_bytes);
void mh_pubbatch_free(mh_pubbatch_t *pb);

/* Queues env for instance; cb(ud, status) runs once its message is confirmed or failed. */
void mh_pubbatch_add(mh_pubbatch_t *pb, const char *instance, const void *env, size_t len,
                     mh_broker_publish_fn cb, void *ud);

#endif
