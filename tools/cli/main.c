/*
 * msghub-cli: a command-line client for msghub. `connect` chats over
 * WebSocket (connect.c); `relay`, `list` and `session` are one HTTP request
 * each (http.c) to the service API. This file parses the command line,
 * prints help, and formats the HTTP answers.
 *
 * Exit codes: 0 success, 1 failure (network, HTTP error, session ended by
 * the hub), 2 usage error.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connect.h"
#include "http.h"
#include "msghub/json.h"
#include "url.h"

#define CLI_VERSION "0.1.0"
#define DEFAULT_URL "http://127.0.0.1:8080"
#define DEFAULT_TIMEOUT_S 10
#define EXIT_USAGE 2

enum {
    O_URL = 1 << 0,
    O_TOKEN = 1 << 1,
    O_API_KEY = 1 << 2,
    O_TO = 1 << 3,
    O_FROM = 1 << 4,
    O_JSON = 1 << 5,
    O_TIMEOUT = 1 << 6,
    O_VERBOSE = 1 << 7,
    O_SINCE = 1 << 8,
    O_STATE = 1 << 9,
    O_RECONNECT = 1 << 10,
};

static const struct {
    const char *name;
    int bit;
    int has_value;
} optdefs[] = {
    {"url", O_URL, 1},         {"token", O_TOKEN, 1},         {"api-key", O_API_KEY, 1},
    {"to", O_TO, 1},           {"from", O_FROM, 1},           {"json", O_JSON, 0},
    {"timeout", O_TIMEOUT, 1}, {"verbose", O_VERBOSE, 0},     {"since", O_SINCE, 1},
    {"state", O_STATE, 1},     {"reconnect", O_RECONNECT, 0},
};

typedef struct opts {
    const char *cmd;
    const char *url, *token, *api_key, *from, *timeout, *since, *state;
    mh_buf_t to; /* every --to value, joined with ',' */
    int json, verbose, help, reconnect;
    const char *pos[4];
    int npos;
    cli_url_t parsed_url;
    int timeout_s;
} opts_t;

static const char usage_main[] =
    "usage: msghub-cli COMMAND [OPTIONS]\n"
    "\n"
    "A command-line client for msghub.\n"
    "\n"
    "commands:\n"
    "  connect   chat over WebSocket: prints the hello and every message, reads\n"
    "            commands and text from standard input\n"
    "  relay     POST /relay: send a JSON body to users, as a service\n"
    "  list      GET /clients: ids connected now\n"
    "  session   POST /sessions: mint a user id and its token\n"
    "\n"
    "'msghub-cli COMMAND --help' describes a command and its options.\n"
    "\n"
    "URLs: http://HOST[:PORT][/PREFIX] or ws://... (either scheme works for every\n"
    "command; a trailing /ws is ignored). Default: $MSGHUB_URL, else " DEFAULT_URL ".\n"
    "The API key defaults to $MSGHUB_API_KEY (the hub's own variable).\n"
    "\n"
    "exit codes: 0 success, 1 failure (cannot connect, HTTP error, session closed\n"
    "by the hub, timeout), 2 usage error\n";

static const char usage_connect[] =
    "usage: msghub-cli connect [--url URL] [--token TOKEN [--since SEQ]] [--state FILE]\n"
    "                          [--reconnect] [--timeout S] [--verbose]\n"
    "\n"
    "Connects to URL/ws and prints, one line each:\n"
    "  hello id=7 token=... resumed=false   on connecting (keep the token to resume)\n"
    "  [from 9] {\"text\":\"hi\"}               a message; the body exactly as received\n"
    "                                       (line breaks between JSON tokens as spaces)\n"
    "  online: 3 9 | id 7 | pong            answers to /list, /id, /ping\n"
    "  relayed accepted=2 unknown=12        answer to a send\n"
    "  error bad_request: ...               an error from the hub\n"
    "  closed 4409 session taken over       the hub closed the session\n"
    "\n"
    "Reads standard input (a terminal, pipe or file), one command per line:\n"
    "  /to IDS [TEXT]   send {\"text\":TEXT} to IDS (e.g. /to 7,9 hi there)\n"
    "  /json IDS JSON   send JSON as the body (e.g. /json 7 {\"n\":1})\n"
    "  TEXT             send {\"text\":TEXT} to the last IDS (//TEXT sends /TEXT)\n"
    "  /list  /id  /ping  /help  /quit\n"
    "End of input or /quit closes normally (1000) once every request sent has\n"
    "been answered; Ctrl-C does the same (twice: at once).\n"
    "\n"
    "options:\n"
    "  --url URL        hub address [$MSGHUB_URL or ws://127.0.0.1:8080]\n"
    "  --token TOKEN    resume the session this token belongs to (same id,\n"
    "                   unacknowledged messages delivered after the hello)\n"
    "  --since SEQ      with --token: messages up to SEQ were already received\n"
    "  --state FILE     keep the token and the last acknowledged seq in FILE and\n"
    "                   resume from them on the next run\n"
    "  --reconnect      after a dropped connection or a close by the hub (not\n"
    "                   1000 or 4409), connect again with the token and since\n"
    "                   (backoff 0.5 s doubling to 15 s, +-20 % jitter)\n"
    "Messages are acknowledged in batches (100 messages or 100 ms); a message\n"
    "whose seq was already printed (a redelivery) is not printed again.\n"
    "  --timeout S      seconds to wait for the hello [10]\n"
    "  --verbose        libwebsockets' own log on stderr\n"
    "\n"
    "exit codes: 0 we closed it, or the hub closed with 1000; 1 cannot connect,\n"
    "refused (e.g. HTTP 401 for a bad token), timeout, or closed by the hub with\n"
    "another code; 2 usage error\n";

static const char usage_relay[] =
    "usage: msghub-cli relay --to IDS [--from ID] [--url URL] [--api-key KEY] BODY\n"
    "\n"
    "POSTs {\"receivers\":[IDS],\"body\":BODY} to URL/relay. BODY is JSON text, sent\n"
    "as written; text that is not valid JSON is sent as a JSON string. BODY '-'\n"
    "reads it from standard input. Prints the hub's answer, e.g.\n"
    "{\"id\":\"...\",\"accepted\":2,\"unknown\":[]}.\n"
    "\n"
    "options:\n"
    "  --to IDS         receivers, comma-separated (7,9); may be repeated\n"
    "  --from ID        sender id shown to receivers [0: the service]\n"
    "  --url URL        hub address [$MSGHUB_URL or " DEFAULT_URL "]\n"
    "  --api-key KEY    bearer key when the hub has one [$MSGHUB_API_KEY]\n"
    "  --timeout S      seconds for the whole request [10]\n"
    "  --verbose        libwebsockets' own log on stderr\n"
    "\n"
    "exit codes: 0 HTTP 2xx; 1 any other answer (the error on stderr) or no\n"
    "answer; 2 usage error\n";

static const char usage_list[] =
    "usage: msghub-cli list [--url URL] [--api-key KEY] [--json]\n"
    "\n"
    "GET URL/clients: prints the ids connected now, space-separated on one line\n"
    "(an empty line when nobody is), or the hub's JSON answer with --json.\n"
    "\n"
    "options:\n"
    "  --url URL        hub address [$MSGHUB_URL or " DEFAULT_URL "]\n"
    "  --api-key KEY    bearer key when the hub has one [$MSGHUB_API_KEY]\n"
    "  --json           print {\"ids\":[...]} as received\n"
    "  --timeout S      seconds for the whole request [10]\n"
    "  --verbose        libwebsockets' own log on stderr\n"
    "\n"
    "exit codes: 0 HTTP 200; 1 any other answer or none; 2 usage error\n";

static const char usage_session[] =
    "usage: msghub-cli session [--url URL] [--api-key KEY] [--json]\n"
    "\n"
    "POST URL/sessions: mints a user id and prints 'id=N token=T' (or the hub's\n"
    "JSON answer with --json). 'msghub-cli connect --token T' then connects as N.\n"
    "\n"
    "options:\n"
    "  --url URL        hub address [$MSGHUB_URL or " DEFAULT_URL "]\n"
    "  --api-key KEY    bearer key when the hub has one [$MSGHUB_API_KEY]\n"
    "  --json           print {\"id\":N,\"token\":\"...\"} as received\n"
    "  --timeout S      seconds for the whole request [10]\n"
    "  --verbose        libwebsockets' own log on stderr\n"
    "\n"
    "exit codes: 0 HTTP 201; 1 any other answer or none; 2 usage error\n";

static int usage_error(const opts_t *o, const char *fmt, const char *arg)
{
    fprintf(stderr, "msghub-cli %s: ", o->cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (try 'msghub-cli %s --help')\n", o->cmd);
    return EXIT_USAGE;
}

/* Options start with "--"; "-", "-5" (a JSON number) and everything after "--" are positional. */
static int is_option(const char *a)
{
    return a[0] == '-' && a[1] && !isdigit((unsigned char)a[1]);
}

static int set_option(opts_t *o, int bit, const char *v)
{
    switch (bit) {
    case O_URL:
        o->url = v;
        break;
    case O_TOKEN:
        o->token = v;
        break;
    case O_API_KEY:
        o->api_key = v;
        break;
    case O_FROM:
        o->from = v;
        break;
    case O_TIMEOUT:
        o->timeout = v;
        break;
    case O_SINCE:
        o->since = v;
        break;
    case O_STATE:
        o->state = v;
        break;
    case O_RECONNECT:
        o->reconnect = 1;
        break;
    case O_TO:
        if (o->to.len)
            mh_buf_puts(&o->to, ",");
        mh_buf_puts(&o->to, v);
        break;
    case O_JSON:
        o->json = 1;
        break;
    case O_VERBOSE:
        o->verbose = 1;
        break;
    }
    return 0;
}

/* One "--name[=value]" at argv[*i]; advances *i past a separate value. */
static int parse_option(opts_t *o, int allowed, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
        o->help = 1;
        return 0;
    }
    if (a[1] != '-')
        return usage_error(o, "unknown option '%s'", a);
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    for (size_t k = 0; k < sizeof(optdefs) / sizeof(optdefs[0]); k++) {
        if (strlen(optdefs[k].name) != nlen || strncmp(optdefs[k].name, name, nlen))
            continue;
        if (!(allowed & optdefs[k].bit))
            break;
        if (!optdefs[k].has_value) {
            if (eq)
                return usage_error(o, "option '--%s' takes no value", optdefs[k].name);
            return set_option(o, optdefs[k].bit, NULL);
        }
        if (eq)
            return set_option(o, optdefs[k].bit, eq + 1);
        if (*i + 1 >= argc)
            return usage_error(o, "option '--%s' needs a value", optdefs[k].name);
        return set_option(o, optdefs[k].bit, argv[++*i]);
    }
    return usage_error(o, "unknown option '%s'", a);
}

static int parse_args(opts_t *o, int allowed, int max_pos, int argc, char **argv)
{
    int only_pos = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && !strcmp(a, "--")) {
            only_pos = 1;
        } else if (!only_pos && is_option(a)) {
            int rc = parse_option(o, allowed, argc, argv, &i);
            if (rc)
                return rc;
        } else if (o->npos < max_pos) {
            o->pos[o->npos++] = a;
        } else {
            return usage_error(o, "unexpected argument '%s'", a);
        }
    }
    if (o->help)
        return 0;
    const char *env_url = getenv("MSGHUB_URL");
    const char *url = o->url ? o->url : env_url && *env_url ? env_url : DEFAULT_URL;
    char err[256];
    if (cli_url_parse(url, &o->parsed_url, err, sizeof(err)))
        return usage_error(o, "%s", err);
    if (allowed & O_API_KEY && !o->api_key) {
        const char *k = getenv("MSGHUB_API_KEY");
        o->api_key = k && *k ? k : NULL;
    }
    o->timeout_s = DEFAULT_TIMEOUT_S;
    if (o->timeout) {
        uint64_t t;
        if (cli_id_parse(o->timeout, strlen(o->timeout), &t) || t > 3600)
            return usage_error(o, "--timeout wants whole seconds in 1..3600, not '%s'", o->timeout);
        o->timeout_s = (int)t;
    }
    return 0;
}

/* ---- HTTP answers ---- */

/* Prints an HTTP error answer ({"error":{"code","message"}}) on stderr. */
static void print_http_error(const char *what, const cli_http_t *h)
{
    cJSON *doc = cJSON_ParseWithLength(h->resp.data ? h->resp.data : "", h->resp.len);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
    cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    if (cJSON_IsString(code))
        fprintf(stderr, "msghub-cli: %s failed: HTTP %d %s: %s\n", what, h->status,
                code->valuestring, cJSON_IsString(msg) ? msg->valuestring : "");
    else
        fprintf(stderr, "msghub-cli: %s failed: HTTP %d %.*s\n", what, h->status,
                (int)(h->resp.len > 500 ? 500 : h->resp.len), h->resp.data ? h->resp.data : "");
    cJSON_Delete(doc);
}

/* Runs one request; returns 0 on a 2xx answer, else prints why and returns 1. */
static int http_call(const opts_t *o, const char *what, cli_http_t *h, const char *method,
                     const char *api_path)
{
    char path[sizeof(o->parsed_url.prefix) + 32];
    snprintf(path, sizeof(path), "%s%s", o->parsed_url.prefix, api_path);
    h->method = method;
    h->path = path;
    h->api_key = o->api_key;
    h->timeout_s = o->timeout_s;
    h->verbose = o->verbose;
    if (cli_http_do(&o->parsed_url, h)) {
        fprintf(stderr, "msghub-cli: %s failed: http://%s%s: %s\n", what, o->parsed_url.authority,
                path, h->err);
        return 1;
    }
    if (h->status < 200 || h->status > 299) {
        print_http_error(what, h);
        return 1;
    }
    return 0;
}

static void print_body(const cli_http_t *h)
{
    mh_buf_t line;
    mh_buf_init(&line);
    size_t n = h->resp.len;
    while (n && (h->resp.data[n - 1] == '\n' || h->resp.data[n - 1] == '\r'))
        n--;
    mh_buf_append(&line, h->resp.data ? h->resp.data : "", n);
    puts(line.data);
    mh_buf_free(&line);
}

/* The top-level member `key` of a JSON object answer. */
static int answer_member(const cli_http_t *h, const char *key, mh_json_span_t *out)
{
    if (!h->resp.len || mh_json_validate(h->resp.data, h->resp.len, MH_JSON_MAX_DEPTH))
        return -1;
    mh_json_span_t root = mh_json_root(h->resp.data, h->resp.len), k;
    size_t pos = 0, klen = strlen(key);
    if (root.kind != MH_JSON_OBJECT)
        return -1;
    while (mh_json_object_next(&root, &pos, &k, out))
        if (k.len == klen && !memcmp(k.p, key, klen))
            return 0;
    return -1;
}

static int bad_answer(const char *what, const cli_http_t *h)
{
    fprintf(stderr, "msghub-cli: %s: unexpected answer: %.*s\n", what,
            (int)(h->resp.len > 500 ? 500 : h->resp.len), h->resp.data ? h->resp.data : "");
    return 1;
}

/* ---- commands ---- */

static int read_all_stdin(mh_buf_t *b)
{
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        mh_buf_append(b, chunk, n);
    return ferror(stdin) ? -1 : 0;
}

static int cmd_relay(opts_t *o)
{
    if (!o->to.len)
        return usage_error(o, "%s", "--to IDS is required");
    if (o->npos != 1)
        return usage_error(o, "%s", "exactly one BODY is required ('-' reads standard input)");
    mh_buf_t doc, body;
    mh_buf_init(&doc);
    mh_buf_init(&body);
    char err[256];
    int rc = EXIT_USAGE;
    mh_buf_puts(&doc, "{\"receivers\":");
    if (cli_ids_parse(o->to.data, o->to.len, &doc, err, sizeof(err)) < 0) {
        usage_error(o, "%s", err);
        goto out;
    }
    uint64_t from = 0;
    if (o->from && cli_id_parse(o->from, strlen(o->from), &from)) {
        usage_error(o, "--from wants an id in 1..2^64-1, not '%s'", o->from);
        goto out;
    }
    if (!strcmp(o->pos[0], "-")) {
        if (read_all_stdin(&body)) {
            fprintf(stderr, "msghub-cli relay: cannot read standard input\n");
            rc = 1;
            goto out;
        }
    } else {
        mh_buf_puts(&body, o->pos[0]);
    }
    mh_buf_puts(&doc, ",\"body\":");
    if (body.len && mh_json_validate(body.data, body.len, MH_JSON_MAX_DEPTH) != MH_JSON_EBAD) {
        mh_buf_append(&doc, body.data, body.len); /* JSON: exactly as written */
    } else {
        size_t n = body.len;
        while (n && (body.data[n - 1] == '\n' || body.data[n - 1] == '\r'))
            n--;
        mh_buf_json_string(&doc, body.data ? body.data : "", n);
    }
    if (o->from) {
        mh_buf_puts(&doc, ",\"from\":");
        mh_buf_u64(&doc, from);
    }
    mh_buf_puts(&doc, "}");

    cli_http_t h;
    memset(&h, 0, sizeof(h));
    h.body = doc.data;
    h.body_len = doc.len;
    rc = http_call(o, "relay", &h, "POST", "/relay");
    if (!rc)
        print_body(&h);
    mh_buf_free(&h.resp);
out:
    mh_buf_free(&doc);
    mh_buf_free(&body);
    return rc;
}

static int cmd_list(opts_t *o)
{
    cli_http_t h;
    memset(&h, 0, sizeof(h));
    int rc = http_call(o, "list", &h, "GET", "/clients");
    mh_json_span_t ids, e;
    if (rc) {
    } else if (o->json) {
        print_body(&h);
    } else if (answer_member(&h, "ids", &ids) || ids.kind != MH_JSON_ARRAY) {
        rc = bad_answer("list", &h);
    } else {
        mh_buf_t line;
        mh_buf_init(&line);
        size_t pos = 0;
        while (mh_json_array_next(&ids, &pos, &e)) {
            if (line.len)
                mh_buf_puts(&line, " ");
            mh_buf_append(&line, e.p, e.len); /* as sent: exact beyond 2^53 */
        }
        puts(line.data ? line.data : "");
        mh_buf_free(&line);
    }
    mh_buf_free(&h.resp);
    return rc;
}

static int cmd_session(opts_t *o)
{
    cli_http_t h;
    memset(&h, 0, sizeof(h));
    int rc = http_call(o, "session", &h, "POST", "/sessions");
    mh_json_span_t id, token;
    if (rc) {
    } else if (o->json) {
        print_body(&h);
    } else if (answer_member(&h, "id", &id) || id.kind != MH_JSON_NUMBER ||
               answer_member(&h, "token", &token) || token.kind != MH_JSON_STRING) {
        rc = bad_answer("session", &h);
    } else {
        /* base64url: the token's JSON text is the token between the quotes */
        printf("id=%.*s token=%.*s\n", (int)id.len, id.p, (int)token.len - 2, token.p + 1);
    }
    mh_buf_free(&h.resp);
    return rc;
}

/* --state FILE: "TOKEN SEQ" from an earlier run, when --token is not given. */
static int load_state(opts_t *o, char *token, size_t len, uint64_t *since)
{
    FILE *f = o->state ? fopen(o->state, "r") : NULL;
    if (!f)
        return 0; /* first run: the file is written at the hello */
    char tok[160];
    unsigned long long seq = 0;
    int n = fscanf(f, "%159s %llu", tok, &seq);
    fclose(f);
    if (n != 2)
        return usage_error(o, "--state %s: expected 'TOKEN SEQ'", o->state);
    if (!o->token) {
        snprintf(token, len, "%s", tok);
        o->token = token;
        *since = seq;
    }
    return 0;
}

static int cmd_connect(opts_t *o)
{
    if (o->npos)
        return usage_error(o, "unexpected argument '%s'", o->pos[0]);
    uint64_t since = 0;
    char token[160];
    if (o->since && (cli_id_parse(o->since, strlen(o->since), &since) || !o->token))
        return usage_error(o, "--since wants a seq (1 or more) and --token, not '%s'", o->since);
    if (load_state(o, token, sizeof(token), &since))
        return EXIT_USAGE;
    char text[sizeof(o->parsed_url.prefix) + 320];
    snprintf(text, sizeof(text), "ws://%s%s/ws", o->parsed_url.authority, o->parsed_url.prefix);
    cli_connect_opts_t co = {
        .url = &o->parsed_url,
        .url_text = text,
        .token = o->token,
        .since = since,
        .state_path = o->state,
        .reconnect = o->reconnect,
        .timeout_s = o->timeout_s,
        .verbose = o->verbose,
    };
    return cli_connect_run(&co);
}

static const struct {
    const char *name;
    int allowed, max_pos;
    const char *usage;
    int (*run)(opts_t *o);
} commands[] = {
    {"connect", O_URL | O_TOKEN | O_SINCE | O_STATE | O_RECONNECT | O_TIMEOUT | O_VERBOSE, 0,
     usage_connect, cmd_connect},
    {"relay", O_URL | O_API_KEY | O_TO | O_FROM | O_TIMEOUT | O_VERBOSE, 1, usage_relay, cmd_relay},
    {"list", O_URL | O_API_KEY | O_JSON | O_TIMEOUT | O_VERBOSE, 0, usage_list, cmd_list},
    {"session", O_URL | O_API_KEY | O_JSON | O_TIMEOUT | O_VERBOSE, 0, usage_session, cmd_session},
};

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        for (size_t i = 0; argc > 2 && i < sizeof(commands) / sizeof(commands[0]); i++)
            if (!strcmp(argv[2], commands[i].name)) {
                fputs(commands[i].usage, stdout);
                return 0;
            }
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        puts("msghub-cli " CLI_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(cmd, commands[i].name))
            continue;
        opts_t o;
        memset(&o, 0, sizeof(o));
        o.cmd = cmd;
        mh_buf_init(&o.to);
        int rc = parse_args(&o, commands[i].allowed, commands[i].max_pos, argc, argv);
        if (!rc && o.help)
            fputs(commands[i].usage, stdout);
        else if (!rc)
            rc = commands[i].run(&o);
        mh_buf_free(&o.to);
        return rc;
    }
    fprintf(stderr, "msghub-cli: unknown command '%s' (try 'msghub-cli --help')\n", cmd);
    return EXIT_USAGE;
}
