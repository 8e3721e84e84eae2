/*
 * connect: the interactive session of `msghub-cli connect`. A WebSocket
 * client (lws, on a libuv loop shared with stdin and signals) that prints
 * the hello, every message, reply, error and the close, and turns stdin
 * lines into requests (repl.h).
 *
 * Ending: end of input or /quit closes with 1000 once every request written
 * has had its reply (at most CLOSE_GRACE later); SIGINT/SIGTERM do the same,
 * a second one stops at once.
 */
#ifndef MSGHUB_CLI_CONNECT_H
#define MSGHUB_CLI_CONNECT_H

#include <stdint.h>

#include "url.h"

typedef struct cli_connect_opts {
    const cli_url_t *url;
    const char *url_text;   /* for messages */
    const char *token;      /* resume this session, or NULL */
    uint64_t since;         /* with token: everything <= is already received (acknowledges) */
    const char *state_path; /* --state: token and last acked seq kept here, or NULL */
    int reconnect;          /* --reconnect: dial again after a drop, with token and since */
    int timeout_s;          /* connect + hello */
    int verbose;
} cli_connect_opts_t;

/*
 * Runs the session. Returns the process exit code: 0 when we closed it (end
 * of input, /quit, a signal) or the hub closed it with 1000; 1 when the
 * connection failed or was refused, timed out, or the hub closed it with
 * any other code.
 */
int cli_connect_run(const cli_connect_opts_t *o);

#endif
