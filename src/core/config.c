/*
 * config: parses the hub's options from defaults, MSGHUB_* environment
 * variables and command-line flags (in that order of increasing priority),
 * validates every value and prints --help.
 *
 * One table (opts[] below) describes every option: its flag, variable,
 * default, limits and help text, so parsing, defaults and --help cannot
 * drift apart. Defaults are strings fed through the same parser as user
 * input. Does no I/O besides writing usage to the caller's stream and
 * asking for the host name (for the default instance id).
 *
 * Ownership: the strings and the origin list in mh_config_t are heap copies
 * owned by the config; mh_config_free() releases them. On any non-zero
 * return of mh_config_load() the config is already freed and zeroed.
 */
#include "msghub/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "msghub/log.h"
#include "msghub/token.h"
#include "msghub/util.h"

#ifndef MSGHUB_VERSION /* CMake's PROJECT_VERSION, the only place it is written */
#error "MSGHUB_VERSION is defined by CMakeLists.txt from PROJECT_VERSION"
#endif

/* Longest accepted --prefix / --instance-id: they end up in Redis keys and queue names. */
#define NAME_MAX_LEN 100
/* TTLs are capped at 100 years so that seconds * 1000 never overflows. */
#define TTL_MAX 3153600000ull
/* lws keeps ping and hang-up delays in 16 bits; one hour each is plenty. */
#define PING_MAX 3600
#define BODY_MAX (1ull << 30)

typedef enum {
    K_STR,     /* optional string, empty = unset */
    K_NAME,    /* required identifier-like string */
    K_U32,     /* integer in [min, max], stored as uint32_t */
    K_U64,     /* integer in [min, max], stored as uint64_t */
    K_BOOL,    /* 1/0, true/false, yes/no, on/off; bare flag = on */
    K_LISTEN,  /* HOST:PORT */
    K_RATE,    /* RATE[:BURST] */
    K_ORIGINS, /* comma-separated list */
    K_LEVEL,   /* log level name */
} kind_t;

typedef struct {
    const char *flag; /* without the leading "--" */
    const char *env;
    const char *metavar; /* NULL for booleans */
    kind_t kind;
    size_t off; /* offset of the field in mh_config_t */
    uint64_t min, max;
    const char *def;  /* default, parsed like user input; NULL = none or computed */
    const char *show; /* default as printed by --help when def is NULL */
    const char *help;
} opt_t;

#define OFF(f) offsetof(mh_config_t, f)

static const opt_t opts[] = {
    {"listen", "MSGHUB_LISTEN", "HOST:PORT", K_LISTEN, 0, 0, 0, "0.0.0.0:8080", NULL,
     "Address and port to listen on; IPv6 as [::]:8080."},
    {"redis-url", "MSGHUB_REDIS_URL", "URL", K_STR, OFF(redis_url), 0, 0, NULL, "none: standalone",
     "redis://[:password@]host:port[/db]; with --amqp-url: distributed mode."},
    {"amqp-url", "MSGHUB_AMQP_URL", "URL", K_STR, OFF(amqp_url), 0, 0, NULL, "none: standalone",
     "amqp://user:pass@host:port/vhost of the RabbitMQ broker."},
    {"prefix", "MSGHUB_PREFIX", "NAME", K_NAME, OFF(prefix), 0, 0, "msghub", NULL,
     "Prefix of every Redis key and RabbitMQ name."},
    {"instance-id", "MSGHUB_INSTANCE_ID", "NAME", K_NAME, OFF(instance_id), 0, 0, NULL,
     "hostname-XXXXXX, random suffix", "This instance's name, unique among the instances."},
    {"api-key", "MSGHUB_API_KEY", "KEY", K_STR, OFF(api_key), 0, 0, NULL, "none: open",
     "Bearer key for POST /relay, POST /sessions and GET /clients."},
    {"token-secret", "MSGHUB_TOKEN_SECRET", "SECRET", K_STR, OFF(token_secret), 0, 0, NULL,
     "random per process", "HMAC secret for session tokens; share it between instances."},
    {"token-ttl", "MSGHUB_TOKEN_TTL", "SECONDS", K_U64, OFF(token_ttl_s), 1, TTL_MAX, "86400", NULL,
     "Lifetime of a session token."},
    {"require-token", "MSGHUB_REQUIRE_TOKEN", NULL, K_BOOL, OFF(require_token), 0, 0, "off", NULL,
     "Refuse /ws without a valid token; BOOL is on/off, true/false, yes/no, 1/0."},
    {"allowed-origins", "MSGHUB_ALLOWED_ORIGINS", "LIST", K_ORIGINS, 0, 0, 0, NULL, "any",
     "Comma-separated browser Origins (scheme://host[:port]) allowed on /ws."},
    {"max-receivers", "MSGHUB_MAX_RECEIVERS", "N", K_U32, OFF(max_receivers), 1, UINT32_MAX, "255",
     NULL, "Most receivers in one message."},
    {"max-body-bytes", "MSGHUB_MAX_BODY_BYTES", "BYTES", K_U64, OFF(max_body_bytes), 1, BODY_MAX,
     "1048576", NULL, "Largest message body (its JSON text) accepted."},
    {"max-connections", "MSGHUB_MAX_CONNECTIONS", "N", K_U32, OFF(max_connections), 1, UINT32_MAX,
     NULL, NULL, "Most simultaneous WebSocket connections (see below)."},
    {"outbound-buffer-bytes", "MSGHUB_OUTBOUND_BUFFER_BYTES", "BYTES", K_U64,
     OFF(outbound_buffer_bytes), 1024, UINT64_MAX, "8388608", NULL,
     "Unsent bytes per connection before it is closed as a slow consumer."},
    {"write-coalesce", "MSGHUB_WRITE_COALESCE", "MICROSECONDS", K_U32, OFF(write_coalesce_us), 0,
     100000, "0", NULL,
     "Hold writes this long after the first is due, so each send() carries more."},
    {"rate-limit", "MSGHUB_RATE_LIMIT", "RATE[:BURST]", K_RATE, 0, 0, 0, "200:400", NULL,
     "Messages per second per connection and burst (default BURST: 2 * RATE)."},
    {"ping-interval", "MSGHUB_PING_INTERVAL", "SECONDS", K_U32, OFF(ping_interval_s), 1, PING_MAX,
     "20", NULL, "Idle time before the hub sends a WebSocket ping."},
    {"pong-timeout", "MSGHUB_PONG_TIMEOUT", "SECONDS", K_U32, OFF(pong_timeout_s), 1, PING_MAX,
     "10", NULL, "Time to wait for a pong before closing the connection."},
    {"idle-timeout", "MSGHUB_IDLE_TIMEOUT", "SECONDS", K_U32, OFF(idle_timeout_s), 0, UINT32_MAX,
     "600", NULL, "Close a connection sending no application frame for this long; 0 = off."},
    {"inbox-max", "MSGHUB_INBOX_MAX", "N", K_U32, OFF(inbox_max), 1, UINT32_MAX, "10000", NULL,
     "Messages kept in one id's log; the oldest are dropped beyond it."},
    {"inbox-max-bytes", "MSGHUB_INBOX_MAX_BYTES", "BYTES", K_U64, OFF(inbox_max_bytes), 1,
     UINT64_MAX, "16777216", NULL,
     "Bytes of message frames kept in one id's log; the oldest go first."},
    {"inbox-ttl", "MSGHUB_INBOX_TTL", "SECONDS", K_U64, OFF(inbox_ttl_s), 1, TTL_MAX, "86400", NULL,
     "How long a message is kept in its receiver's log."},
    {"shutdown-timeout", "MSGHUB_SHUTDOWN_TIMEOUT", "SECONDS", K_U32, OFF(shutdown_timeout_s), 0,
     UINT32_MAX, "10", NULL, "Time to drain connections on SIGTERM before exiting."},
    {"presence-ttl", "MSGHUB_PRESENCE_TTL", "SECONDS", K_U32, OFF(presence_ttl_s), 2, 86400, "15",
     NULL, "Distributed: presence lifetime (refreshed every third of it)."},
    {"queue-message-ttl", "MSGHUB_QUEUE_MESSAGE_TTL", "SECONDS", K_U32, OFF(queue_msg_ttl_s), 1,
     86400, "10", NULL, "Distributed: a push older than this is dropped (the log has it)."},
    {"queue-expiry", "MSGHUB_QUEUE_EXPIRY", "SECONDS", K_U32, OFF(queue_expiry_s), 2, 86400 * 30,
     "60", NULL, "Distributed: an instance queue unused this long is deleted by RabbitMQ."},
    {"log-level", "MSGHUB_LOG_LEVEL", "LEVEL", K_LEVEL, 0, 0, 0, "info", NULL,
     "One of debug, info, warn, error."},
    {"web-root", "MSGHUB_WEB_ROOT", "DIR", K_STR, OFF(web_root), 0, 0, NULL, "built-in page",
     "Serve DIR/index.html at / instead of the built-in chat page."},
    {"request-timeout", "MSGHUB_REQUEST_TIMEOUT", "SECONDS", K_U32, OFF(request_timeout_s), 1, 3600,
     "10", NULL, "Time allowed for a whole HTTP request, head and body."},
    {"memory-limit", "MSGHUB_MEMORY_LIMIT", "BYTES", K_U64, OFF(memory_limit), 1048576, UINT64_MAX,
     NULL, "half the cgroup limit or of RAM",
     "Budget: reassembly, queues, HTTP bodies, logs (503 / 1013 past it)."},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* Writes "name: message" into err. */
static int fail(char *err, size_t errlen, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, const char *name, const char *fmt, ...)
{
    if (err && errlen) {
        int n = name ? snprintf(err, errlen, "%s: ", name) : 0;
        if (n < 0 || (size_t)n >= errlen)
            return MH_EINVAL;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return MH_EINVAL;
}

/* Decimal digits only: strtoull alone would accept spaces, signs and wrap "-1". */
static int parse_u64(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* A non-negative decimal "D+[.D+]" (no sign, exponent, hex, inf or nan). */
static int parse_decimal(const char *s, double *out)
{
    size_t i = 0;
    if (!isdigit((unsigned char)s[0]))
        return -1;
    while (isdigit((unsigned char)s[i]))
        i++;
    if (s[i] == '.' && isdigit((unsigned char)s[i + 1])) {
        i++;
        while (isdigit((unsigned char)s[i]))
            i++;
    }
    if (s[i] != '\0')
        return -1;
    *out = strtod(s, NULL);
    return 0;
}

static int set_uint(mh_config_t *cfg, const opt_t *o, const char *name, const char *val, char *err,
                    size_t errlen)
{
    uint64_t v;
    if (parse_u64(val, &v) != 0)
        return fail(err, errlen, name, "expected a %s integer, got '%s'",
                    o->min ? "positive" : "non-negative", val);
    if (v < o->min || v > o->max)
        return fail(err, errlen, name, "%s is out of range (%llu..%llu)", val,
                    (unsigned long long)o->min, (unsigned long long)o->max);
    if (o->kind == K_U32)
        *(uint32_t *)((char *)cfg + o->off) = (uint32_t)v;
    else
        *(uint64_t *)((char *)cfg + o->off) = v;
    return 0;
}

/* Parses 1/0, true/false, yes/no, on/off (any case); -1 if none of those. */
static int parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

static int set_bool(mh_config_t *cfg, const opt_t *o, const char *name, const char *val, char *err,
                    size_t errlen)
{
    int b = parse_bool(val);
    if (b < 0)
        return fail(err, errlen, name,
                    "expected a boolean (1/0, true/false, yes/no, on/off), got '%s'", val);
    *(int *)((char *)cfg + o->off) = b;
    return 0;
}

static void set_string(char **field, const char *val)
{
    free(*field);
    *field = val[0] ? mh_xstrdup(val) : NULL;
}

/* Names go into Redis keys, queue names and message ids: keep them tame. */
static int set_name(mh_config_t *cfg, const opt_t *o, const char *name, const char *val, char *err,
                    size_t errlen)
{
    size_t n = strlen(val);
    if (n == 0 || n > NAME_MAX_LEN)
        return fail(err, errlen, name, "expected 1 to %d characters, got '%s'", NAME_MAX_LEN, val);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)val[i];
        if (!isalnum(c) && !strchr("._:-", c))
            return fail(err, errlen, name, "only letters, digits and . _ : - are allowed, got '%s'",
                        val);
    }
    set_string((char **)((char *)cfg + o->off), val);
    return 0;
}

/* "host:port", "[v6addr]:port"; the brackets are not stored. */
static int set_listen(mh_config_t *cfg, const char *name, const char *val, char *err, size_t errlen)
{
    const char *colon = strrchr(val, ':');
    const char *host = val, *host_end = colon;
    if (val[0] == '[') {
        const char *rb = strchr(val, ']');
        if (!rb || rb[1] != ':')
            return fail(err, errlen, name, "expected [ADDR]:PORT, got '%s'", val);
        host = val + 1, host_end = rb, colon = rb + 1;
    } else if (colon && memchr(val, ':', (size_t)(colon - val))) {
        return fail(err, errlen, name, "write an IPv6 address as [ADDR]:PORT, got '%s'", val);
    }
    if (!colon || host_end == host)
        return fail(err, errlen, name, "expected HOST:PORT, got '%s'", val);
    uint64_t port;
    if (parse_u64(colon + 1, &port) != 0 || port < 1 || port > 65535)
        return fail(err, errlen, name, "port must be 1..65535, got '%s'", colon + 1);
    free(cfg->listen_host);
    size_t hl = (size_t)(host_end - host);
    cfg->listen_host = mh_xmalloc(hl + 1);
    memcpy(cfg->listen_host, host, hl);
    cfg->listen_host[hl] = '\0';
    cfg->listen_port = (int)port;
    return 0;
}

static int set_rate(mh_config_t *cfg, const char *name, const char *val, char *err, size_t errlen)
{
    char tmp[64];
    double rate, burst;
    if (strlen(val) >= sizeof(tmp))
        return fail(err, errlen, name, "expected RATE[:BURST], got '%s'", val);
    strcpy(tmp, val);
    char *colon = strchr(tmp, ':');
    if (colon)
        *colon = '\0';
    if (parse_decimal(tmp, &rate) != 0 || rate <= 0)
        return fail(err, errlen, name, "expected RATE[:BURST] with RATE > 0, got '%s'", val);
    burst = rate * 2 < 1 ? 1 : rate * 2;
    if (colon && (parse_decimal(colon + 1, &burst) != 0 || burst < 1))
        return fail(err, errlen, name, "expected RATE[:BURST] with BURST >= 1, got '%s'", val);
    cfg->rate_per_s = rate;
    cfg->rate_burst = burst;
    return 0;
}

static void free_origins(mh_config_t *cfg)
{
    for (size_t i = 0; i < cfg->allowed_origins_n; i++)
        free(cfg->allowed_origins[i]);
    free(cfg->allowed_origins);
    cfg->allowed_origins = NULL;
    cfg->allowed_origins_n = 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits on commas, trims blanks, skips empty items; "" means any origin. */
static int set_origins(mh_config_t *cfg, const char *name, const char *val, char *err,
                       size_t errlen)
{
    free_origins(cfg);
    if (val[0] == '\0')
        return 0;
    size_t cap = 1;
    for (const char *p = val; *p; p++)
        cap += *p == ',';
    char **list = mh_xcalloc(cap + 1, sizeof(*list));
    size_t n = 0;
    for (const char *p = val; *p;) {
        const char *end = strchr(p, ',');
        const char *next = end ? end + 1 : p + strlen(p);
        if (!end)
            end = next;
        while (p < end && is_blank(*p))
            p++;
        while (end > p && is_blank(end[-1]))
            end--;
        if (end > p) {
            list[n] = mh_xmalloc((size_t)(end - p) + 1);
            memcpy(list[n], p, (size_t)(end - p));
            list[n++][end - p] = '\0';
        }
        p = next;
    }
    cfg->allowed_origins = list;
    cfg->allowed_origins_n = n;
    if (n == 0) {
        free_origins(cfg);
        return fail(err, errlen, name, "no origin in '%s'", val);
    }
    return 0;
}

static int set_level(mh_config_t *cfg, const char *name, const char *val, char *err, size_t errlen)
{
    int level = mh_log_parse_level(val);
    if (level < 0)
        return fail(err, errlen, name, "expected debug, info, warn or error, got '%s'", val);
    cfg->log_level = level;
    return 0;
}

/* Applies one value to its option; name (flag or variable) is used in errors. */
static int apply(mh_config_t *cfg, const opt_t *o, const char *name, const char *val, char *err,
                 size_t errlen)
{
    switch (o->kind) {
    case K_STR:
        set_string((char **)((char *)cfg + o->off), val);
        return 0;
    case K_NAME:
        return set_name(cfg, o, name, val, err, errlen);
    case K_U32:
    case K_U64:
        return set_uint(cfg, o, name, val, err, errlen);
    case K_BOOL:
        return set_bool(cfg, o, name, val, err, errlen);
    case K_LISTEN:
        return set_listen(cfg, name, val, err, errlen);
    case K_RATE:
        return set_rate(cfg, name, val, err, errlen);
    case K_ORIGINS:
        return set_origins(cfg, name, val, err, errlen);
    case K_LEVEL:
        return set_level(cfg, name, val, err, errlen);
    }
    return fail(err, errlen, name, "internal: unknown option kind");
}

static const opt_t *find_opt(const char *flag, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opts[i].flag) == len && strncmp(opts[i].flag, flag, len) == 0)
            return &opts[i];
    return NULL;
}

/* Largest accepted max_connections for this open-file limit. */
static uint64_t max_conn_bound(uint64_t nofile_limit)
{
    if (nofile_limit <= MH_CONFIG_FD_RESERVE)
        return 1;
    uint64_t b = nofile_limit - MH_CONFIG_FD_RESERVE;
    return b > UINT32_MAX ? UINT32_MAX : b;
}

static void print_limit(FILE *out, uint64_t nofile_limit)
{
    if (nofile_limit == UINT64_MAX)
        fputs("unlimited", out);
    else
        fprintf(out, "%llu", (unsigned long long)nofile_limit);
}

static void print_opt(FILE *out, const opt_t *o, uint64_t nofile_limit)
{
    fprintf(out, "  --%s%s%s\n", o->flag, o->metavar ? " " : "[=BOOL]",
            o->metavar ? o->metavar : "");
    fprintf(out, "      %s\n", o->help);
    fprintf(out, "      env %s, default ", o->env);
    if (o->def)
        fputs(o->def, out);
    else if (o->show)
        fputs(o->show, out);
    else
        fprintf(out, "open-file limit - %d = %llu", MH_CONFIG_FD_RESERVE,
                (unsigned long long)max_conn_bound(nofile_limit));
    fputs("\n", out);
}

void mh_config_usage(FILE *out, uint64_t nofile_limit)
{
    fputs("Usage: msghub [OPTION]...\n"
          "Real-time WebSocket message hub: clients connect to /ws, get a user id and\n"
          "exchange JSON messages; services use the HTTP API. Standalone unless both\n"
          "--redis-url and --amqp-url are set.\n"
          "\n"
          "Every option can also be set with the environment variable shown; a flag on\n"
          "the command line wins over the environment. Give values as --flag VALUE or\n"
          "--flag=VALUE.\n"
          "\n"
          "Options:\n",
          out);
    for (size_t i = 0; i < NOPTS; i++)
        print_opt(out, &opts[i], nofile_limit);
    fputs("  -h, --help\n      Print this help and exit.\n"
          "  --version\n      Print the version and exit.\n"
          "\n"
          "Connections and the open-file limit:\n"
          "  Every WebSocket connection holds one file descriptor, so --max-connections\n"
          "  is bounded by this process's open-file limit (RLIMIT_NOFILE, now ",
          out);
    print_limit(out, nofile_limit);
    fprintf(out,
            ")\n"
            "  minus %d descriptors the hub keeps for itself (logs, listening socket,\n"
            "  Redis, RabbitMQ): at most %llu here. That bound is the default; a larger\n"
            "  value is refused. To allow more connections raise the limit first, e.g.\n"
            "  'ulimit -n 65536' in the shell or LimitNOFILE= in a systemd unit.\n",
            MH_CONFIG_FD_RESERVE, (unsigned long long)max_conn_bound(nofile_limit));
}

/* Per-option value given on the command line (the last occurrence wins). */
typedef struct {
    const char *val[NOPTS];
} cmdline_t;

/* The value of a boolean flag given as "--flag VALUE": only if VALUE is a boolean word. */
static void take_bool_arg(int argc, char **argv, int *i, const char **val)
{
    if (*i + 1 < argc && parse_bool(argv[*i + 1]) >= 0)
        *val = argv[++*i];
    else
        *val = "on";
}

/* Handles argv[*i], a "--flag[=value]" argument. */
static int scan_flag(cmdline_t *cl, int argc, char **argv, int *i, char *err, size_t errlen)
{
    const char *arg = argv[*i];
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) - 2 : strlen(arg) - 2;
    const opt_t *o = find_opt(arg + 2, len);
    if (!o)
        return fail(err, errlen, NULL, "unknown option '%.*s' (try --help)", (int)len + 2, arg);
    size_t k = (size_t)(o - opts);
    if (eq)
        cl->val[k] = eq + 1;
    else if (o->kind == K_BOOL)
        take_bool_arg(argc, argv, i, &cl->val[k]);
    else if (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0)
        return fail(err, errlen, NULL, "--%s: missing value (%s)", o->flag, o->metavar);
    else
        cl->val[k] = argv[++*i];
    return 0;
}

/* Walks argv. Returns 1 after printing help or the version, 0, or MH_EINVAL. */
static int scan_args(cmdline_t *cl, int argc, char **argv, uint64_t nofile_limit, FILE *out,
                     char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            mh_config_usage(out, nofile_limit);
            return 1;
        }
        if (strcmp(a, "--version") == 0) {
            fputs("msghub " MSGHUB_VERSION "\n", out);
            return 1;
        }
        if (strcmp(a, "--") == 0 && i + 1 == argc)
            return 0;
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0' || a[2] == '-')
            return fail(err, errlen, NULL, "unexpected argument '%s' (try --help)",
                        strcmp(a, "--") == 0 ? argv[i + 1] : a);
        int rc = scan_flag(cl, argc, argv, &i, err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/*
 * Flag, else non-empty environment variable, else the default. An empty flag
 * value is applied as given: it unsets an optional string, fails a number.
 */
static int apply_all(mh_config_t *cfg, const cmdline_t *cl, mh_config_getenv_fn getenv_fn, void *ud,
                     char *err, size_t errlen)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const opt_t *o = &opts[i];
        char flagname[64];
        const char *val = cl->val[i], *name = o->env;
        if (val) {
            snprintf(flagname, sizeof(flagname), "--%s", o->flag);
            name = flagname;
        } else if (getenv_fn) {
            val = getenv_fn(o->env, ud);
            if (val && !val[0])
                val = NULL; /* VAR= in a compose file means unset */
        }
        if (!val)
            val = o->def, name = "default";
        if (!val)
            continue;
        int rc = apply(cfg, o, name, val, err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* "hostname-" + 6 random hex characters. */
static int default_instance_id(mh_config_t *cfg, char *err, size_t errlen)
{
    char host[NAME_MAX_LEN - 6] = "msghub";
    unsigned char rnd[3];
    if (gethostname(host, sizeof(host)) != 0)
        strcpy(host, "msghub");
    host[sizeof(host) - 1] = '\0';
    for (char *p = host; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-", *p))
            *p = '-';
    if (mh_token_random(rnd, sizeof(rnd)) != 0)
        return fail(err, errlen, "--instance-id", "no randomness for the default");
    char id[NAME_MAX_LEN + 1];
    snprintf(id, sizeof(id), "%s-%02x%02x%02x", host[0] ? host : "msghub", rnd[0], rnd[1], rnd[2]);
    cfg->instance_id = mh_xstrdup(id);
    return 0;
}

static int finish(mh_config_t *cfg, const cmdline_t *cl, uint64_t nofile_limit, char *err,
                  size_t errlen)
{
    uint64_t bound = max_conn_bound(nofile_limit);
    if (cfg->max_connections == 0) {
        cfg->max_connections = (uint32_t)bound;
    } else if (cfg->max_connections > bound) {
        const opt_t *o = find_opt("max-connections", strlen("max-connections"));
        const char *name = cl->val[o - opts] ? "--max-connections" : o->env;
        return fail(err, errlen, name,
                    "%llu exceeds the open-file limit (%llu) minus %d reserved descriptors; "
                    "at most %llu (raise the limit with ulimit -n)",
                    (unsigned long long)cfg->max_connections, (unsigned long long)nofile_limit,
                    MH_CONFIG_FD_RESERVE, (unsigned long long)bound);
    }
    if (!cfg->instance_id)
        return default_instance_id(cfg, err, errlen);
    return 0;
}

int mh_config_load(mh_config_t *cfg, int argc, char **argv, mh_config_getenv_fn getenv_fn, void *ud,
                   uint64_t nofile_limit, FILE *out, char *err, size_t errlen)
{
    cmdline_t cl;
    memset(&cl, 0, sizeof(cl));
    memset(cfg, 0, sizeof(*cfg));
    if (err && errlen)
        err[0] = '\0';
    int rc = scan_args(&cl, argc, argv, nofile_limit, out, err, errlen);
    if (rc == 0)
        rc = apply_all(cfg, &cl, getenv_fn, ud, err, errlen);
    if (rc == 0)
        rc = finish(cfg, &cl, nofile_limit, err, errlen);
    if (rc != 0)
        mh_config_free(cfg);
    return rc;
}

void mh_config_free(mh_config_t *cfg)
{
    if (!cfg)
        return;
    free(cfg->listen_host);
    free(cfg->redis_url);
    free(cfg->amqp_url);
    free(cfg->prefix);
    free(cfg->instance_id);
    free(cfg->api_key);
    free(cfg->token_secret);
    free(cfg->web_root);
    free_origins(cfg);
    memset(cfg, 0, sizeof(*cfg));
}

int mh_config_origin_allowed(const mh_config_t *cfg, const char *origin)
{
    if (!cfg->allowed_origins)
        return 1;
    if (!origin)
        return 0;
    for (size_t i = 0; i < cfg->allowed_origins_n; i++)
        if (strcmp(cfg->allowed_origins[i], origin) == 0)
            return 1;
    return 0;
}
