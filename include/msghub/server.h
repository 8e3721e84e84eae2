/*
 * server: the composition root. Builds the hub (hub.h) from the
 * configuration, plugs in the memory or the Redis/RabbitMQ implementations,
 * creates the libwebsockets context on the libuv loop and runs it.
 *
 * Layer 4 (src/app): may include every other module; no header includes
 * this one but main.c's.
 */
#ifndef MSGHUB_SERVER_H
#define MSGHUB_SERVER_H

#include "msghub/config.h"

/* Builds the server from cfg and runs the loop until shutdown; returns the exit status. */
int mh_server_run(const mh_config_t *cfg);

#endif
