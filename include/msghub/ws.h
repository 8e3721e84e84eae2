/*
 * ws: the WebSocket side of a connection on libwebsockets: upgrade checks,
 * reassembly, and the client requests. Sessions themselves: session.h.
 */
#ifndef MSGHUB_WS_H
#define MSGHUB_WS_H

#include <stddef.h>

#include "msghub/conn.h"
#include "msghub/hub.h"

struct lws;

/* Handles the WebSocket callback reasons of the hub's lws protocol. */
int mh_ws_callback(mh_server_t *srv, struct lws *wsi, int reason, mh_conn_t *conn, void *in,
                   size_t len);

/*
 * Decides whether an upgrade to /ws may proceed. Returns 0 to accept, or
 * the HTTP status to refuse with, with the error code and message filled.
 */
int mh_ws_check_upgrade(mh_server_t *srv, struct lws *wsi, mh_err_code_t *code, const char **msg);

/*
 * Refuses a WebSocket upgrade (from LWS_CALLBACK_HTTP_CONFIRM_UPGRADE) with a
 * complete HTTP/1.1 response: status line, Content-Type application/json,
 * Content-Length, Connection: close, body {"error":{"code":..,"message":..}}.
 * Counts the error in the metrics. Returns what the callback must return
 * (nonzero: lws closes the connection once the response is sent).
 */
int mh_ws_refuse(mh_server_t *srv, struct lws *wsi, int status, mh_err_code_t code,
                 const char *message);

/* Starts closing every registered session with code (shutdown: MH_CLOSE_GOING_AWAY). */
void mh_ws_close_all(mh_server_t *srv, int code);

#endif
