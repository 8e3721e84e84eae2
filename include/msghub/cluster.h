/*
 * cluster: distributed mode's wiring. Owns the Redis store and the
 * RabbitMQ broker of the server, tracks their readiness, refreshes the
 * presence of this instance's sessions every third of the presence TTL,
 * and handles what other instances send: messages for local receivers
 * (acknowledged only once each local receiver wrote it or it was stored,
 * and re-routed when a receiver is no longer here) and takeover signals.
 */
#ifndef MSGHUB_CLUSTER_H
#define MSGHUB_CLUSTER_H

#include "msghub/hub.h"

/* Connects to Redis and RabbitMQ (asynchronously); 0, or -1 on a bad URL (logged). */
int mh_cluster_start(mh_server_t *srv);
/* Stops the presence timer, closes both connections; pending work fails. */
void mh_cluster_stop(mh_server_t *srv);

#endif
