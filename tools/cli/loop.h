/*
 * loop: one libuv loop and a client-only libwebsockets context on it
 * (LWS_SERVER_OPTION_LIBUV with a foreign loop, as the hub does), with a
 * stop that is safe to request from inside any lws or libuv callback and a
 * teardown that leaves no handle or allocation behind.
 *
 * Ownership: cli_loop_t is embedded by its command. The command's own
 * handles (timers, signals, stdin) live on l->uv and are closed by its
 * on_stop hook. Callbacks may still arrive while the context is destroyed
 * (connections closing); l->stopping is set by then.
 */
#ifndef MSGHUB_CLI_LOOP_H
#define MSGHUB_CLI_LOOP_H

#include <libwebsockets.h>
#include <uv.h>

/* Bytes lws reads from a socket per service call. */
#define CLI_LOOP_READ_SIZE (256u << 10)

typedef struct cli_loop cli_loop_t;

struct cli_loop {
    uv_loop_t uv;
    struct lws_context *lws; /* NULL once fully destroyed */
    uv_timer_t stopper;      /* runs the stop outside lws callbacks */
    void (*on_stop)(cli_loop_t *l);
    void *user;
    int stopping;
};

/*
 * Initialises the loop and the lws context (no listening socket); the
 * context's user pointer is `user`. verbose turns lws' own log on (stderr).
 * Returns 0, or -1 after printing why (nothing to clean up then).
 */
int cli_loop_init(cli_loop_t *l, const struct lws_protocols *protocols, void *user, int verbose);

/* Asks the loop to stop: on_stop runs, then the lws context is destroyed. Idempotent. */
void cli_loop_stop(cli_loop_t *l);

/*
 * Words for a failed connection: lws_reason is what lws said (NULL when
 * lws_client_connect_via_info() gave up at once, typically a failed name
 * lookup, which is then retried here to say why). Returns buf.
 */
const char *cli_connect_error(const char *host, const char *lws_reason, char *buf, size_t n);

/* Runs until stopped and everything is closed; then the loop is closed too. */
void cli_loop_run(cli_loop_t *l);

#endif
