/*
 * main: reads the configuration (flags, then MSGHUB_* environment) and
 * runs the hub. Exit status: 0 after a clean shutdown, 1 on a startup
 * failure, 2 on a bad option.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "msghub/config.h"
#include "msghub/log.h"
#include "msghub/server.h"

static const char *env_get(const char *name, void *ud)
{
    (void)ud;
    return getenv(name);
}

int main(int argc, char **argv)
{
    struct rlimit rl;
    uint64_t nofile = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        /* use every descriptor we are allowed: one per connection */
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        nofile = rl.rlim_cur == RLIM_INFINITY ? 1048576 : (uint64_t)rl.rlim_cur;
    }
    mh_config_t cfg;
    char err[256];
    int rc = mh_config_load(&cfg, argc, argv, env_get, NULL, nofile, stdout, err, sizeof(err));
    if (rc == 1) {
        mh_config_free(&cfg);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "msghub: %s\nTry 'msghub --help' for the list of options.\n", err);
        mh_config_free(&cfg);
        return 2;
    }
    mh_log_set_level((mh_log_level_t)cfg.log_level);
    if (!cfg.redis_url != !cfg.amqp_url) {
        fprintf(stderr, "msghub: distributed mode needs both --redis-url and --amqp-url\n");
        mh_config_free(&cfg);
        return 2;
    }
    rc = mh_server_run(&cfg);
    mh_config_free(&cfg);
    return rc;
}
