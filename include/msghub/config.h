/*
 * config: every option of the hub, from command-line flags and MSGHUB_*
 * environment variables (the flag wins), with the defaults and names of
 * PROTOCOL.md section 7. Pure: the environment is read through a getter so
 * tests can supply their own.
 *
 * Ownership: strings in mh_config_t are heap copies owned by the config and
 * released by mh_config_free().
 */
#ifndef MSGHUB_CONFIG_H
#define MSGHUB_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct mh_config {
    char *listen_host;      /* "0.0.0.0" */
    int listen_port;        /* 8080 */
    char *redis_url;        /* NULL: standalone */
    char *amqp_url;         /* NULL: standalone */
    char *prefix;           /* "msghub" */
    char *instance_id;      /* hostname + "-" + 6 random hex chars */
    char *api_key;          /* NULL: service endpoints open */
    char *token_secret;     /* NULL: random per process (warned) */
    uint64_t token_ttl_s;   /* 86400 */
    int require_token;      /* 0 */
    char **allowed_origins; /* NULL-terminated list; NULL: any */
    size_t allowed_origins_n;
    uint32_t max_receivers;         /* 255 */
    uint64_t max_body_bytes;        /* 1048576 */
    uint32_t max_connections;       /* 0 before parse: then open-file limit - reserve */
    uint64_t outbound_buffer_bytes; /* 8388608 */
    uint32_t write_coalesce_us;     /* 0: writes go before the next poll */
    double rate_per_s;              /* 200 */
    double rate_burst;              /* 400 */
    uint32_t ping_interval_s;       /* 20 */
    uint32_t pong_timeout_s;        /* 10 */
    uint32_t idle_timeout_s;        /* 600, 0 = off */
    uint32_t inbox_max;             /* 10000 */
    uint64_t inbox_max_bytes;       /* 16777216 */
    uint64_t inbox_ttl_s;           /* 86400 */
    uint32_t shutdown_timeout_s;    /* 10 */
    int log_level;                  /* MH_LOG_INFO */
    uint32_t presence_ttl_s;    /* 15: a dead instance's clients vanish from lists within this */
    uint32_t queue_msg_ttl_s;   /* 10: a message waits this long in a dead instance's queue */
    uint32_t queue_expiry_s;    /* 60: an instance queue without consumer is deleted after */
    char *web_root;             /* NULL: serve the built-in chat page; else a dir with index.html */
    uint32_t request_timeout_s; /* 10: whole HTTP request (head and body) */
    uint64_t memory_limit;      /* bytes; 0 before startup: then sized from the machine */
} mh_config_t;

/* Returns the value of an environment variable or NULL (getenv-like). */
typedef const char *(*mh_config_getenv_fn)(const char *name, void *ud);

/*
 * Fills cfg with defaults, then the environment, then argv (argv[0] is the
 * program name). Returns 0 on success; 1 when --help or --version was given
 * (usage already printed to `out`); a negative MH_E* code with a message in
 * err[0..errlen) on a bad option or value. nofile_limit is the process's
 * open-file limit, used to bound max_connections.
 */
int mh_config_load(mh_config_t *cfg, int argc, char **argv, mh_config_getenv_fn getenv_fn, void *ud,
                   uint64_t nofile_limit, FILE *out, char *err, size_t errlen);

/* Releases the strings owned by cfg. */
void mh_config_free(mh_config_t *cfg);

/* Prints --help: every option, its variable, its default and meaning. */
void mh_config_usage(FILE *out, uint64_t nofile_limit);

/* Descriptors the hub reserves for itself (logs, listen socket, backplane). */
#define MH_CONFIG_FD_RESERVE 64
/*
 * Sockets accepted beyond max_connections (out of the reserve above), so
 * that an upgrade at the limit still gets its 503 and HTTP keeps working.
 */
#define MH_CONFIG_SOCKET_SLACK 16

/* True if origin (exact, case-sensitive scheme://host[:port]) is allowed. */
int mh_config_origin_allowed(const mh_config_t *cfg, const char *origin);

#endif
