/*
 * http_api: the HTTP endpoints (POST /relay, POST /sessions, GET /clients,
 * /healthz, /readyz, /metrics, /) on libwebsockets. Each request's state
 * lives in an mh_http allocated on first use and freed when the
 * connection closes.
 */
#ifndef MSGHUB_HTTP_API_H
#define MSGHUB_HTTP_API_H

#include <stddef.h>

#include "msghub/server.h"

struct lws;

/* Handles the HTTP callback reasons of the hub's lws protocol. */
int mh_http_callback(mh_server_t *srv, struct lws *wsi, int reason, mh_conn_t *conn, void *in,
                     size_t len);

#endif
