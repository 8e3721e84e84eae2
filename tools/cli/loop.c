/*
 * loop: libuv loop plus client lws context, and their orderly teardown.
 * See loop.h. lws_context_destroy() must not run inside an lws callback, so
 * a stop request only arms a 0 ms timer; the timer's callback does the work.
 */
#include "loop.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static void lws_log_emit(int level, const char *line)
{
    fprintf(stderr, "msghub-cli: lws: %s", line);
}

int cli_loop_init(cli_loop_t *l, const struct lws_protocols *protocols, void *user, int verbose)
{
    memset(l, 0, sizeof(*l));
    l->user = user;
    if (uv_loop_init(&l->uv)) {
        fprintf(stderr, "msghub-cli: cannot create the event loop\n");
        return -1;
    }
    uv_timer_init(&l->uv, &l->stopper);
    l->stopper.data = l;
    lws_set_log_level(verbose ? LLL_ERR | LLL_WARN | LLL_NOTICE : 0, lws_log_emit);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *loops[1] = {&l->uv};
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.foreign_loops = loops;
    info.user = user;
    info.pcontext = &l->lws; /* lws NULLs it once fully destroyed */
    info.fd_limit_per_thread = 8;
    /* lws reads at most this much per service call (default 4 KiB): reading must keep up
     * with writing, or a busy session falls behind and the hub closes it with 4008 */
    info.pt_serv_buf_size = CLI_LOOP_READ_SIZE;
    l->lws = lws_create_context(&info);
    if (!l->lws) {
        fprintf(stderr, "msghub-cli: cannot create the libwebsockets context "
                        "(is libwebsockets-evlib-uv installed?)\n");
        uv_close((uv_handle_t *)&l->stopper, NULL);
        uv_run(&l->uv, UV_RUN_DEFAULT);
        uv_loop_close(&l->uv);
        return -1;
    }
    return 0;
}

static void on_stopper(uv_timer_t *t)
{
    cli_loop_t *l = t->data;
    uv_close((uv_handle_t *)&l->stopper, NULL);
    if (l->on_stop)
        l->on_stop(l);
    if (l->lws)
        lws_context_destroy(l->lws); /* first stage on a foreign loop */
}

void cli_loop_stop(cli_loop_t *l)
{
    if (l->stopping)
        return;
    l->stopping = 1;
    uv_timer_start(&l->stopper, on_stopper, 0, 0);
}

void cli_loop_run(cli_loop_t *l)
{
    uv_run(&l->uv, UV_RUN_DEFAULT);
    /* with a foreign loop lws finishes destroying itself in a second call */
    for (int i = 0; i < 2 && l->lws; i++) {
        lws_context_destroy(l->lws);
        uv_run(&l->uv, UV_RUN_DEFAULT);
    }
    if (uv_loop_close(&l->uv))
        fprintf(stderr, "msghub-cli: warning: event loop handles still open at exit\n");
}

const char *cli_connect_error(const char *host, const char *lws_reason, char *buf, size_t n)
{
    if (lws_reason && strstr(lws_reason, "closed before established")) {
        snprintf(buf, n, "connection refused or closed (is the hub running there?)");
    } else if (lws_reason) {
        snprintf(buf, n, "%s", lws_reason);
    } else {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(host, NULL, &hints, &res);
        if (rc)
            snprintf(buf, n, "cannot resolve '%s': %s", host, gai_strerror(rc));
        else
            snprintf(buf, n, "connection failed");
        freeaddrinfo(res);
    }
    return buf;
}
