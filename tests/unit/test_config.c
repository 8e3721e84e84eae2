/*
 * Unit tests of config: defaults, environment versus flags, both flag
 * forms, validation of every option, the open-file bound on
 * max-connections, the origin list and the --help text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "msghub/config.h"
#include "msghub/log.h"
#include "msghub/util.h"

#define NOFILE 4096

/* Every flag of PROTOCOL.md section 7 (plus --web-root) and its variable. */
static const char *const names[][2] = {
    {"--listen", "MSGHUB_LISTEN"},
    {"--redis-url", "MSGHUB_REDIS_URL"},
    {"--amqp-url", "MSGHUB_AMQP_URL"},
    {"--prefix", "MSGHUB_PREFIX"},
    {"--instance-id", "MSGHUB_INSTANCE_ID"},
    {"--api-key", "MSGHUB_API_KEY"},
    {"--token-secret", "MSGHUB_TOKEN_SECRET"},
    {"--token-ttl", "MSGHUB_TOKEN_TTL"},
    {"--require-token", "MSGHUB_REQUIRE_TOKEN"},
    {"--allowed-origins", "MSGHUB_ALLOWED_ORIGINS"},
    {"--max-receivers", "MSGHUB_MAX_RECEIVERS"},
    {"--max-body-bytes", "MSGHUB_MAX_BODY_BYTES"},
    {"--max-connections", "MSGHUB_MAX_CONNECTIONS"},
    {"--outbound-buffer-bytes", "MSGHUB_OUTBOUND_BUFFER_BYTES"},
    {"--rate-limit", "MSGHUB_RATE_LIMIT"},
    {"--ping-interval", "MSGHUB_PING_INTERVAL"},
    {"--pong-timeout", "MSGHUB_PONG_TIMEOUT"},
    {"--idle-timeout", "MSGHUB_IDLE_TIMEOUT"},
    {"--inbox-max", "MSGHUB_INBOX_MAX"},
    {"--inbox-max-bytes", "MSGHUB_INBOX_MAX_BYTES"},
    {"--inbox-ttl", "MSGHUB_INBOX_TTL"},
    {"--shutdown-timeout", "MSGHUB_SHUTDOWN_TIMEOUT"},
    {"--log-level", "MSGHUB_LOG_LEVEL"},
    {"--web-root", "MSGHUB_WEB_ROOT"},
};
#define NNAMES (sizeof(names) / sizeof(names[0]))

/* A fake environment: NULL-terminated list of "NAME=value". */
static const char *fake_getenv(const char *name, void *ud)
{
    const char *const *env = ud;
    size_t n = strlen(name);
    for (; env && *env; env++)
        if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
            return *env + n + 1;
    return NULL;
}

typedef struct {
    mh_config_t cfg;
    char err[256];
    char *out;
    size_t outlen;
    int rc;
} run_t;

/* Loads argv (without program name, NULL-terminated) under env with the given limit. */
static void load_lim(run_t *r, const char *const *env, uint64_t nofile, const char *const *args)
{
    char *argv[64] = {"msghub"};
    int argc = 1;
    for (; args && *args; args++)
        argv[argc++] = (char *)*args;
    FILE *out = open_memstream(&r->out, &r->outlen);
    assert_non_null(out);
    r->err[0] = '\0';
    r->rc = mh_config_load(&r->cfg, argc, argv, fake_getenv, (void *)env, nofile, out, r->err,
                           sizeof(r->err));
    fclose(out);
}

static void load(run_t *r, const char *const *env, const char *const *args)
{
    load_lim(r, env, NOFILE, args);
}

static void done(run_t *r)
{
    mh_config_free(&r->cfg);
    free(r->out);
    r->out = NULL;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ENV(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Expects the load to fail with a message containing each of the given words. */
static void expect_fail(const char *const *env, const char *const *args, const char *w1,
                        const char *w2)
{
    run_t r = {0};
    load(&r, env, args);
    if (r.rc != MH_EINVAL || !strstr(r.err, w1) || (w2 && !strstr(r.err, w2)))
        print_error("args %s: rc %d err '%s'\n", args ? args[0] : "-", r.rc, r.err);
    assert_int_equal(r.rc, MH_EINVAL);
    assert_non_null(strstr(r.err, w1));
    if (w2)
        assert_non_null(strstr(r.err, w2));
    assert_null(strchr(r.err, '\n'));
    /* a failed load leaves nothing to free */
    assert_null(r.cfg.listen_host);
    assert_null(r.cfg.prefix);
    assert_null(r.cfg.instance_id);
    done(&r);
}

static void test_defaults(void **state)
{
    run_t r = {0};
    load(&r, NULL, NULL);
    assert_int_equal(r.rc, 0);
    mh_config_t *c = &r.cfg;
    assert_string_equal(c->listen_host, "0.0.0.0");
    assert_int_equal(c->listen_port, 8080);
    assert_null(c->redis_url);
    assert_null(c->amqp_url);
    assert_string_equal(c->prefix, "msghub");
    assert_null(c->api_key);
    assert_null(c->token_secret);
    assert_int_equal(c->token_ttl_s, 86400);
    assert_int_equal(c->require_token, 0);
    assert_null(c->allowed_origins);
    assert_int_equal(c->allowed_origins_n, 0);
    assert_int_equal(c->max_receivers, 255);
    assert_int_equal(c->max_body_bytes, 1048576);
    assert_int_equal(c->max_connections, NOFILE - MH_CONFIG_FD_RESERVE);
    assert_int_equal(c->outbound_buffer_bytes, 8388608);
    assert_int_equal(c->write_coalesce_us, 0);
    assert_true(c->rate_per_s == 200.0);
    assert_true(c->rate_burst == 400.0);
    assert_int_equal(c->ping_interval_s, 20);
    assert_int_equal(c->pong_timeout_s, 10);
    assert_int_equal(c->idle_timeout_s, 600);
    assert_int_equal(c->inbox_max, 10000);
    assert_int_equal(c->inbox_max_bytes, 16777216);
    assert_int_equal(c->inbox_ttl_s, 86400);
    assert_int_equal(c->shutdown_timeout_s, 10);
    assert_int_equal(c->log_level, MH_LOG_INFO);
    assert_null(c->web_root);
    assert_string_equal(r.out, "");
    done(&r);
}

/* hostname + "-" + 6 hex characters, different on each load. */
static void test_default_instance_id(void **state)
{
    run_t a = {0}, b = {0};
    load(&a, NULL, NULL);
    load(&b, NULL, NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    const char *id = a.cfg.instance_id;
    size_t n = strlen(id);
    assert_true(n > 7);
    assert_int_equal(id[n - 7], '-');
    for (size_t i = n - 6; i < n; i++)
        assert_non_null(strchr("0123456789abcdef", id[i]));
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    if (host[0] && strlen(host) < 90)
        assert_memory_equal(id, host, strlen(host));
    /* 1 in 16M chance of a false failure */
    assert_string_not_equal(a.cfg.instance_id, b.cfg.instance_id);
    done(&a);
    done(&b);
}

static void test_env_applies(void **state)
{
    run_t r = {0};
    load(&r,
         ENV("MSGHUB_LISTEN=127.0.0.1:9000", "MSGHUB_REDIS_URL=redis://r:6379/0",
             "MSGHUB_AMQP_URL=amqp://u:p@q:5672/v", "MSGHUB_PREFIX=hub2",
             "MSGHUB_INSTANCE_ID=node-a", "MSGHUB_API_KEY=k1", "MSGHUB_TOKEN_SECRET=s1",
             "MSGHUB_TOKEN_TTL=60", "MSGHUB_REQUIRE_TOKEN=yes",
             "MSGHUB_ALLOWED_ORIGINS=https://a.example", "MSGHUB_MAX_RECEIVERS=7",
             "MSGHUB_MAX_BODY_BYTES=2048", "MSGHUB_MAX_CONNECTIONS=100",
             "MSGHUB_OUTBOUND_BUFFER_BYTES=4096", "MSGHUB_RATE_LIMIT=10:15",
             "MSGHUB_PING_INTERVAL=5", "MSGHUB_PONG_TIMEOUT=3", "MSGHUB_IDLE_TIMEOUT=0",
             "MSGHUB_INBOX_MAX=5", "MSGHUB_INBOX_MAX_BYTES=70000", "MSGHUB_INBOX_TTL=30",
             "MSGHUB_SHUTDOWN_TIMEOUT=0", "MSGHUB_LOG_LEVEL=debug", "MSGHUB_WEB_ROOT=/srv/www"),
         NULL);
    assert_int_equal(r.rc, 0);
    mh_config_t *c = &r.cfg;
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 9000);
    assert_string_equal(c->redis_url, "redis://r:6379/0");
    assert_string_equal(c->amqp_url, "amqp://u:p@q:5672/v");
    assert_string_equal(c->prefix, "hub2");
    assert_string_equal(c->instance_id, "node-a");
    assert_string_equal(c->api_key, "k1");
    assert_string_equal(c->token_secret, "s1");
    assert_int_equal(c->token_ttl_s, 60);
    assert_int_equal(c->require_token, 1);
    assert_int_equal(c->allowed_origins_n, 1);
    assert_string_equal(c->allowed_origins[0], "https://a.example");
    assert_int_equal(c->max_receivers, 7);
    assert_int_equal(c->max_body_bytes, 2048);
    assert_int_equal(c->max_connections, 100);
    assert_int_equal(c->outbound_buffer_bytes, 4096);
    assert_true(c->rate_per_s == 10.0 && c->rate_burst == 15.0);
    assert_int_equal(c->ping_interval_s, 5);
    assert_int_equal(c->pong_timeout_s, 3);
    assert_int_equal(c->idle_timeout_s, 0);
    assert_int_equal(c->inbox_max, 5);
    assert_int_equal(c->inbox_max_bytes, 70000);
    assert_int_equal(c->inbox_ttl_s, 30);
    assert_int_equal(c->shutdown_timeout_s, 0);
    assert_int_equal(c->log_level, MH_LOG_DEBUG);
    assert_string_equal(c->web_root, "/srv/www");
    done(&r);
}

static void test_flag_wins_over_env(void **state)
{
    run_t r = {0};
    load(&r, ENV("MSGHUB_MAX_RECEIVERS=7", "MSGHUB_PREFIX=envp", "MSGHUB_LOG_LEVEL=error"),
         ARGS("--max-receivers", "9", "--prefix=flagp"));
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.max_receivers, 9);
    assert_string_equal(r.cfg.prefix, "flagp");
    assert_int_equal(r.cfg.log_level, MH_LOG_ERROR); /* env still applies elsewhere */
    done(&r);

    /* an invalid env value does not matter when the flag overrides it */
    load(&r, ENV("MSGHUB_MAX_RECEIVERS=abc"), ARGS("--max-receivers=3"));
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.max_receivers, 3);
    done(&r);

    /* the last occurrence of a flag wins */
    load(&r, NULL, ARGS("--inbox-max", "1", "--inbox-max=2"));
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.inbox_max, 2);
    done(&r);
}

static void test_empty_env_is_unset(void **state)
{
    run_t r = {0};
    load(&r, ENV("MSGHUB_REDIS_URL=", "MSGHUB_MAX_RECEIVERS=", "MSGHUB_PREFIX="), NULL);
    assert_int_equal(r.rc, 0);
    assert_null(r.cfg.redis_url);
    assert_int_equal(r.cfg.max_receivers, 255);
    assert_string_equal(r.cfg.prefix, "msghub");
    done(&r);

    /* an empty flag value unsets an optional string over the environment */
    load(&r, ENV("MSGHUB_API_KEY=secret"), ARGS("--api-key="));
    assert_int_equal(r.rc, 0);
    assert_null(r.cfg.api_key);
    done(&r);
}

static void test_bad_env_value_named(void **state)
{
    run_t r = {0};
    load(&r, ENV("MSGHUB_PING_INTERVAL=soon"), NULL);
    assert_int_equal(r.rc, MH_EINVAL);
    assert_string_equal(r.err, "MSGHUB_PING_INTERVAL: expected a positive integer, got 'soon'");
    done(&r);
}

static void test_exact_error_message(void **state)
{
    run_t r = {0};
    load(&r, NULL, ARGS("--max-receivers", "abc"));
    assert_int_equal(r.rc, MH_EINVAL);
    assert_string_equal(r.err, "--max-receivers: expected a positive integer, got 'abc'");
    done(&r);
}

/* Values no integer option accepts. */
static const char *const not_numbers[] = {
    "abc", "-1", "", "12x", " 5", "+5", "0x10", "1.5", "1e3", "18446744073709551616",
};

static void test_numbers_bad_values(void **state)
{
    static const char *const flags[] = {
        "--token-ttl",       "--max-receivers",         "--max-body-bytes",
        "--max-connections", "--outbound-buffer-bytes", "--ping-interval",
        "--pong-timeout",    "--idle-timeout",          "--inbox-max",
        "--inbox-ttl",       "--shutdown-timeout",      "--inbox-max-bytes",
    };
    for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
        for (size_t v = 0; v < sizeof(not_numbers) / sizeof(not_numbers[0]); v++) {
            char arg[128];
            snprintf(arg, sizeof(arg), "%s=%s", flags[f], not_numbers[v]);
            expect_fail(NULL, ARGS(arg), flags[f], "integer");
            /* the same through the space form */
            expect_fail(NULL, ARGS(flags[f], not_numbers[v]), flags[f], "integer");
        }
    }
}

static void test_numbers_ranges(void **state)
{
    /* zero where at least 1 is required */
    expect_fail(NULL, ARGS("--max-receivers=0"), "--max-receivers", "out of range");
    expect_fail(NULL, ARGS("--max-body-bytes=0"), "--max-body-bytes", "out of range");
    expect_fail(NULL, ARGS("--ping-interval=0"), "--ping-interval", "out of range");
    expect_fail(NULL, ARGS("--pong-timeout=0"), "--pong-timeout", "out of range");
    expect_fail(NULL, ARGS("--token-ttl=0"), "--token-ttl", "out of range");
    expect_fail(NULL, ARGS("--inbox-max=0"), "--inbox-max", "out of range");
    expect_fail(NULL, ARGS("--inbox-ttl=0"), "--inbox-ttl", "out of range");
    expect_fail(NULL, ARGS("--max-connections=0"), "--max-connections", "out of range");
    expect_fail(NULL, ARGS("--outbound-buffer-bytes=1023"), "--outbound-buffer-bytes",
                "out of range");
    /* uint32 options do not wrap */
    expect_fail(NULL, ARGS("--max-receivers=4294967296"), "--max-receivers", "out of range");
    expect_fail(NULL, ARGS("--idle-timeout=4294967296"), "--idle-timeout", "out of range");
    expect_fail(NULL, ARGS("--ping-interval=3601"), "--ping-interval", "out of range");
    expect_fail(NULL, ARGS("--write-coalesce=100001"), "--write-coalesce", "out of range");

    run_t r = {0};
    load(&r, NULL,
         ARGS("--outbound-buffer-bytes=1024", "--max-receivers=4294967295", "--idle-timeout=0",
              "--shutdown-timeout=0", "--max-body-bytes=1", "--write-coalesce=100000"));
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.write_coalesce_us, 100000);
    assert_int_equal(r.cfg.outbound_buffer_bytes, 1024);
    assert_int_equal(r.cfg.max_receivers, 4294967295u);
    assert_int_equal(r.cfg.idle_timeout_s, 0);
    assert_int_equal(r.cfg.shutdown_timeout_s, 0);
    assert_int_equal(r.cfg.max_body_bytes, 1);
    done(&r);
}

static void test_listen(void **state)
{
    run_t r = {0};
    load(&r, NULL, ARGS("--listen", "[::1]:65535"));
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.cfg.listen_host, "::1");
    assert_int_equal(r.cfg.listen_port, 65535);
    done(&r);
    load(&r, NULL, ARGS("--listen=localhost:1"));
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.cfg.listen_host, "localhost");
    assert_int_equal(r.cfg.listen_port, 1);
    done(&r);

    expect_fail(NULL, ARGS("--listen=0.0.0.0:0"), "--listen", "1..65535");
    expect_fail(NULL, ARGS("--listen=0.0.0.0:65536"), "--listen", "1..65535");
    expect_fail(NULL, ARGS("--listen=0.0.0.0:-1"), "--listen", "1..65535");
    expect_fail(NULL, ARGS("--listen=0.0.0.0:http"), "--listen", "1..65535");
    expect_fail(NULL, ARGS("--listen=0.0.0.0:"), "--listen", "1..65535");
    expect_fail(NULL, ARGS("--listen=8080"), "--listen", "HOST:PORT");
    expect_fail(NULL, ARGS("--listen=:8080"), "--listen", "HOST:PORT");
    expect_fail(NULL, ARGS("--listen=::1:8080"), "--listen", "[ADDR]:PORT");
    expect_fail(NULL, ARGS("--listen=[::1]8080"), "--listen", "[ADDR]:PORT");
    expect_fail(ENV("MSGHUB_LISTEN=x:99999"), NULL, "MSGHUB_LISTEN", "1..65535");
}

static void expect_rate(const char *arg, double rate, double burst)
{
    run_t r = {0};
    load(&r, NULL, ARGS("--rate-limit", arg));
    assert_int_equal(r.rc, 0);
    assert_true(r.cfg.rate_per_s == rate);
    assert_true(r.cfg.rate_burst == burst);
    done(&r);
}

static void test_rate_limit(void **state)
{
    expect_rate("100", 100, 200);
    expect_rate("100:150", 100, 150);
    expect_rate("100:1", 100, 1);
    expect_rate("2.5", 2.5, 5);
    expect_rate("0.25", 0.25, 1); /* a burst below one frame would never admit anything */
    expect_rate("50:7.5", 50, 7.5);

    static const char *const bad[] = {"0",     "0:10",    "-1",  "abc", "100:", ":5",
                                      "100:0", "100:0.5", "1e3", "inf", "nan",  "100:x",
                                      "1:2:3", " 10",     ".5",  "5.",  "",     "0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char arg[64];
        snprintf(arg, sizeof(arg), "--rate-limit=%s", bad[i]);
        expect_fail(NULL, ARGS(arg), "--rate-limit", "RATE[:BURST]");
    }
    expect_fail(ENV("MSGHUB_RATE_LIMIT=fast"), NULL, "MSGHUB_RATE_LIMIT", "fast");
}

static void test_origins(void **state)
{
    run_t r = {0};
    load(&r, NULL,
         ARGS("--allowed-origins", " https://a.example ,https://b.example:8443,, \thttp://c "));
    assert_int_equal(r.rc, 0);
    mh_config_t *c = &r.cfg;
    assert_int_equal(c->allowed_origins_n, 3);
    assert_string_equal(c->allowed_origins[0], "https://a.example");
    assert_string_equal(c->allowed_origins[1], "https://b.example:8443");
    assert_string_equal(c->allowed_origins[2], "http://c");
    assert_null(c->allowed_origins[3]);
    assert_true(mh_config_origin_allowed(c, "https://a.example"));
    assert_true(mh_config_origin_allowed(c, "https://b.example:8443"));
    assert_true(mh_config_origin_allowed(c, "http://c"));
    assert_false(mh_config_origin_allowed(c, "https://b.example"));
    assert_false(mh_config_origin_allowed(c, "https://a.example/"));
    assert_false(mh_config_origin_allowed(c, "HTTPS://A.EXAMPLE"));
    assert_false(mh_config_origin_allowed(c, "https://evil.example"));
    assert_false(mh_config_origin_allowed(c, ""));
    assert_false(mh_config_origin_allowed(c, NULL));
    done(&r);

    /* no list: any origin, also a missing one */
    load(&r, NULL, NULL);
    assert_true(mh_config_origin_allowed(&r.cfg, "https://anything.example"));
    assert_true(mh_config_origin_allowed(&r.cfg, NULL));
    done(&r);

    /* an explicit empty flag over the environment means any */
    load(&r, ENV("MSGHUB_ALLOWED_ORIGINS=https://a.example"), ARGS("--allowed-origins="));
    assert_int_equal(r.rc, 0);
    assert_null(r.cfg.allowed_origins);
    assert_true(mh_config_origin_allowed(&r.cfg, "https://z.example"));
    done(&r);

    /* only separators: surely a mistake, not "any" */
    expect_fail(NULL, ARGS("--allowed-origins= , ,"), "--allowed-origins", "no origin");
}

static void expect_require(const char *const *env, const char *const *args, int want)
{
    run_t r = {0};
    load(&r, env, args);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.require_token, want);
    done(&r);
}

static void test_require_token(void **state)
{
    expect_require(NULL, ARGS("--require-token"), 1);
    expect_require(NULL, ARGS("--require-token=false"), 0);
    expect_require(NULL, ARGS("--require-token=ON"), 1);
    expect_require(NULL, ARGS("--require-token", "no"), 0);
    expect_require(NULL, ARGS("--require-token", "yes"), 1);
    expect_require(ENV("MSGHUB_REQUIRE_TOKEN=1"), ARGS("--require-token=0"), 0);

    /* a bare flag followed by another option does not eat it */
    run_t r = {0};
    load(&r, NULL, ARGS("--require-token", "--max-receivers", "4"));
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.require_token, 1);
    assert_int_equal(r.cfg.max_receivers, 4);
    done(&r);

    static const char *const on[] = {"1", "true", "yes", "on", "TRUE"};
    static const char *const off[] = {"0", "false", "no", "off", "Off"};
    for (size_t i = 0; i < 5; i++) {
        char e[64];
        snprintf(e, sizeof(e), "MSGHUB_REQUIRE_TOKEN=%s", on[i]);
        expect_require(ENV(e), NULL, 1);
        snprintf(e, sizeof(e), "MSGHUB_REQUIRE_TOKEN=%s", off[i]);
        expect_require(ENV(e), NULL, 0);
    }
    expect_fail(ENV("MSGHUB_REQUIRE_TOKEN=maybe"), NULL, "MSGHUB_REQUIRE_TOKEN", "'maybe'");
    expect_fail(NULL, ARGS("--require-token=2"), "--require-token", "boolean");
    expect_fail(NULL, ARGS("--require-token="), "--require-token", "boolean");
}

static void test_log_level(void **state)
{
    static const char *const lv[] = {"debug", "info", "warn", "error"};
    static const int want[] = {MH_LOG_DEBUG, MH_LOG_INFO, MH_LOG_WARN, MH_LOG_ERROR};
    for (size_t i = 0; i < 4; i++) {
        run_t r = {0};
        load(&r, ENV("MSGHUB_LOG_LEVEL=error"), ARGS("--log-level", lv[i]));
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.cfg.log_level, want[i]);
        done(&r);
    }
    expect_fail(NULL, ARGS("--log-level=verbose"), "--log-level", "'verbose'");
    expect_fail(NULL, ARGS("--log-level="), "--log-level", "debug, info, warn or error");
}

static void test_names(void **state)
{
    run_t r = {0};
    load(&r, NULL, ARGS("--instance-id=hub-1.eu_west:a", "--prefix", "app:hub"));
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.cfg.instance_id, "hub-1.eu_west:a");
    assert_string_equal(r.cfg.prefix, "app:hub");
    done(&r);
    expect_fail(NULL, ARGS("--instance-id=a b"), "--instance-id", "'a b'");
    expect_fail(NULL, ARGS("--prefix=a/b"), "--prefix", "'a/b'");
    expect_fail(NULL, ARGS("--prefix="), "--prefix", "characters");
    char longname[128];
    memset(longname, 'x', 101);
    longname[101] = '\0';
    expect_fail(NULL, ARGS("--instance-id", longname), "--instance-id", "1 to 100");
}

static void test_strings(void **state)
{
    run_t r = {0};
    load(&r, NULL,
         ARGS("--redis-url", "redis://:pw@h:6379/2", "--amqp-url=amqp://u:p@h:5672/%2f",
              "--api-key", "k=v", "--token-secret=x=y", "--web-root", "./web"));
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.cfg.redis_url, "redis://:pw@h:6379/2");
    assert_string_equal(r.cfg.amqp_url, "amqp://u:p@h:5672/%2f");
    assert_string_equal(r.cfg.api_key, "k=v");
    assert_string_equal(r.cfg.token_secret, "x=y"); /* split at the first '=' only */
    assert_string_equal(r.cfg.web_root, "./web");
    done(&r);
}

static void test_max_connections_bound(void **state)
{
    run_t r = {0};
    load_lim(&r, NULL, 1024, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.max_connections, 960);
    done(&r);

    load_lim(&r, NULL, 1024, ARGS("--max-connections=960"));
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.max_connections, 960);
    done(&r);

    load_lim(&r, NULL, 1024, ARGS("--max-connections", "961"));
    assert_int_equal(r.rc, MH_EINVAL);
    assert_non_null(strstr(r.err, "--max-connections"));
    assert_non_null(strstr(r.err, "open-file limit (1024)"));
    assert_non_null(strstr(r.err, "at most 960"));
    assert_null(r.cfg.listen_host);
    done(&r);

    load_lim(&r, ENV("MSGHUB_MAX_CONNECTIONS=5000"), 1024, NULL);
    assert_int_equal(r.rc, MH_EINVAL);
    assert_non_null(strstr(r.err, "MSGHUB_MAX_CONNECTIONS"));
    assert_non_null(strstr(r.err, "open-file limit"));
    done(&r);

    /* a tiny limit still allows one connection */
    load_lim(&r, NULL, 10, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.max_connections, 1);
    done(&r);
    load_lim(&r, NULL, 10, ARGS("--max-connections=2"));
    assert_int_equal(r.rc, MH_EINVAL);
    done(&r);

    /* an unlimited limit is capped to the field's range */
    load_lim(&r, NULL, UINT64_MAX, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.max_connections, UINT32_MAX);
    done(&r);
}

static void test_bad_arguments(void **state)
{
    expect_fail(NULL, ARGS("--bogus"), "unknown option '--bogus'", NULL);
    expect_fail(NULL, ARGS("--bogus=1"), "unknown option '--bogus'", NULL);
    expect_fail(NULL, ARGS("--listenx=1"), "unknown option", NULL);
    expect_fail(NULL, ARGS("-x"), "unexpected argument '-x'", NULL);
    expect_fail(NULL, ARGS("serve"), "unexpected argument 'serve'", NULL);
    expect_fail(NULL, ARGS("--", "serve"), "unexpected argument 'serve'", NULL);
    expect_fail(NULL, ARGS("--max-receivers"), "--max-receivers: missing value", NULL);
    expect_fail(NULL, ARGS("--api-key", "--prefix=x"), "--api-key: missing value", NULL);
}

static void test_help(void **state)
{
    run_t r = {0};
    load(&r, ENV("MSGHUB_MAX_RECEIVERS=bad"), ARGS("--prefix=p", "--help", "--bogus"));
    assert_int_equal(r.rc, 1);
    assert_non_null(r.out);
    for (size_t i = 0; i < NNAMES; i++) {
        if (!strstr(r.out, names[i][0]) || !strstr(r.out, names[i][1]))
            print_error("--help lacks %s / %s\n", names[i][0], names[i][1]);
        assert_non_null(strstr(r.out, names[i][0]));
        assert_non_null(strstr(r.out, names[i][1]));
    }
    static const char *const defaults[] = {"0.0.0.0:8080", "msghub",  "86400", "255",   "1048576",
                                           "8388608",      "200:400", "600",   "10000", "info"};
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        assert_non_null(strstr(r.out, defaults[i]));
    assert_non_null(strstr(r.out, "--help"));
    assert_non_null(strstr(r.out, "--version"));
    assert_non_null(strstr(r.out, "open-file limit"));
    assert_non_null(strstr(r.out, "RLIMIT_NOFILE, now 4096"));
    assert_non_null(strstr(r.out, "at most 4032"));
    assert_non_null(strstr(r.out, "ulimit -n"));
    /* help is printed before anything is validated, and nothing is left allocated */
    assert_null(r.cfg.prefix);
    done(&r);

    load(&r, NULL, ARGS("-h"));
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.out, "Usage: msghub"));
    done(&r);

    /* mh_config_usage prints the limit it is given */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    mh_config_usage(f, 1024);
    fclose(f);
    assert_non_null(strstr(buf, "now 1024"));
    assert_non_null(strstr(buf, "at most 960"));
    free(buf);
}

/* Every line of --help fits in 80 columns. */
static void test_help_width(void **state)
{
    run_t r = {0};
    load(&r, NULL, ARGS("--help"));
    const char *p = r.out;
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        if (nl - p > 80)
            print_error("long line: %.*s\n", (int)(nl - p), p);
        assert_true(nl - p <= 80);
        p = nl + 1;
    }
    done(&r);
}

static void test_version(void **state)
{
    run_t r = {0};
    load(&r, NULL, ARGS("--version"));
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "msghub " MSGHUB_VERSION "\n"); /* CMake: PROJECT_VERSION */
    done(&r);
}

/* Every name of section 7 is accepted in both forms. */
static void test_every_flag_known(void **state)
{
    static const char *const good[NNAMES] = {
        "1.2.3.4:5", "redis://h:1", "amqp://h", "p",   "i", "k",    "s",    "5",
        "on",        "http://o",    "3",        "100", "7", "2048", "9:9",  "4",
        "4",         "4",           "4",        "4",   "4", "4",    "warn", "/w"};
    for (size_t i = 0; i < NNAMES; i++) {
        char eq[128];
        snprintf(eq, sizeof(eq), "%s=%s", names[i][0], good[i]);
        run_t r = {0};
        load(&r, NULL, ARGS(eq));
        if (r.rc != 0)
            print_error("%s: %s\n", eq, r.err);
        assert_int_equal(r.rc, 0);
        done(&r);
        load(&r, NULL, ARGS(names[i][0], good[i]));
        assert_int_equal(r.rc, 0);
        done(&r);
        char env[128];
        snprintf(env, sizeof(env), "%s=%s", names[i][1], good[i]);
        load(&r, ENV(env), NULL);
        assert_int_equal(r.rc, 0);
        done(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_default_instance_id),
        cmocka_unit_test(test_env_applies),
        cmocka_unit_test(test_flag_wins_over_env),
        cmocka_unit_test(test_empty_env_is_unset),
        cmocka_unit_test(test_bad_env_value_named),
        cmocka_unit_test(test_exact_error_message),
        cmocka_unit_test(test_numbers_bad_values),
        cmocka_unit_test(test_numbers_ranges),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_require_token),
        cmocka_unit_test(test_log_level),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_max_connections_bound),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_help_width),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_every_flag_known),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
