/*
 * transport_amqp: the transport port (transport.h) of distributed mode:
 * relay pushes through pubbatch (one AMQP message per instance and loop
 * turn), takeover signals straight through the broker.
 *
 * Layer 3 (src/backplane).
 */
#ifndef MSGHUB_TRANSPORT_AMQP_H
#define MSGHUB_TRANSPORT_AMQP_H

#include "msghub/broker_amqp.h"
#include "msghub/pubbatch.h"
#include "msghub/transport.h"

/* Fills *out with the AMQP transport over broker and pb (both borrowed: they must outlive it). */
void mh_transport_amqp_init(mh_transport_t *out, mh_broker_t *broker, mh_pubbatch_t *pb);

#endif
