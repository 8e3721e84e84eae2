/* transport_amqp: distributed transport over RabbitMQ (see transport_amqp.h). */
#include "msghub/transport_amqp.h"

#include <stdlib.h>

typedef struct transport_amqp {
    mh_broker_t *broker;
    mh_pubbatch_t *pb;
} transport_amqp_t;

static void amqp_push(void *impl, const char *instance, const void *env, size_t len,
                      mh_transport_status_fn cb, void *ud)
{
    transport_amqp_t *t = impl;
    mh_pubbatch_add(t->pb, instance, env, len, cb, ud);
}

static void amqp_send(void *impl, const char *instance, const void *env, size_t len,
                      mh_transport_status_fn cb, void *ud)
{
    transport_amqp_t *t = impl;
    mh_broker_publish(t->broker, instance, env, len, cb, ud);
}

static const mh_transport_ops_t amqp_ops = {
    .push = amqp_push,
    .send = amqp_send,
    .free = free,
};

void mh_transport_amqp_init(mh_transport_t *out, mh_broker_t *broker, mh_pubbatch_t *pb)
{
    transport_amqp_t *t = mh_xmalloc(sizeof(*t));
    t->broker = broker;
    t->pb = pb;
    out->ops = &amqp_ops;
    out->impl = t;
}
