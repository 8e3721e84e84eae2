/*
 * repl: input lines to request frames, hub frames to output lines; see
 * repl.h. Commands:
 *
 *   /to IDS [TEXT]   remember IDS; send {"text":TEXT} when TEXT is given
 *   /json IDS JSON   remember IDS; send JSON as the body
 *   TEXT             send {"text":TEXT} to the remembered IDS
 *   //TEXT           same, for a TEXT that starts with '/'
 *   /list /id /ping /help /quit
 */
#include "repl.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "msghub/json.h"
#include "url.h"

/* Frames wrap bodies the hub accepted at up to 64 levels; leave room. */
#define FRAME_MAX_DEPTH 256

static const char help_text[] =
    "commands:\n"
    "  /to IDS [TEXT]   send {\"text\":TEXT} to IDS (e.g. /to 7,9 hi); IDS are remembered\n"
    "  /json IDS JSON   send JSON as the body to IDS (e.g. /json 7 {\"n\":1})\n"
    "  TEXT             send {\"text\":TEXT} to the last IDS (//TEXT for a TEXT starting with /)\n"
    "  /list            ids online now (you excluded)\n"
    "  /id              your id\n"
    "  /ping            round trip to the hub\n"
    "  /quit            close the connection (so does end of input)\n"
    "  /help            this text";

void cli_repl_init(cli_repl_t *r)
{
    mh_buf_init(&r->to);
    r->next_ref = 1;
}

void cli_repl_free(cli_repl_t *r)
{
    mh_buf_free(&r->to);
}

static void begin(cli_repl_t *r, mh_buf_t *frame, const char *type)
{
    mh_buf_printf(frame, "{\"type\":\"%s\",\"ref\":", type);
    mh_buf_u64(frame, r->next_ref++);
}

static void relay(cli_repl_t *r, mh_buf_t *frame, const char *body, size_t n, int as_text)
{
    begin(r, frame, "relay");
    mh_buf_puts(frame, ",\"receivers\":");
    mh_buf_append(frame, r->to.data, r->to.len);
    mh_buf_puts(frame, ",\"body\":");
    if (as_text) {
        mh_buf_puts(frame, "{\"text\":");
        mh_buf_json_string(frame, body, n);
        mh_buf_puts(frame, "}");
    } else {
        mh_buf_append(frame, body, n);
    }
    mh_buf_puts(frame, "}");
}

/* "IDS REST": parses IDS into ids (a JSON array); *rest points past the blanks after it. */
static int take_ids(const char *s, size_t n, mh_buf_t *ids, const char **rest, size_t *rest_len,
                    char *err, size_t errlen)
{
    size_t i = 0;
    while (i < n && s[i] != ' ' && s[i] != '\t')
        i++;
    if (i == 0) {
        snprintf(err, errlen, "missing receiver ids (e.g. 7,9)");
        return -1;
    }
    if (cli_ids_parse(s, i, ids, err, errlen) < 0)
        return -1;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    *rest = s + i;
    *rest_len = n - i;
    return 0;
}

/* Makes ids the remembered receivers (ids is left empty). */
static void set_receivers(cli_repl_t *r, mh_buf_t *ids)
{
    mh_buf_free(&r->to);
    r->to = *ids;
    mh_buf_init(ids);
}

/* Is the line exactly `cmd`, or `cmd` followed by blanks and arguments? */
static int is_cmd(const char *line, size_t len, const char *cmd, const char **args,
                  size_t *args_len)
{
    size_t n = strlen(cmd);
    if (len < n || memcmp(line, cmd, n) || (len > n && line[n] != ' ' && line[n] != '\t'))
        return 0;
    while (n < len && (line[n] == ' ' || line[n] == '\t'))
        n++;
    *args = line + n;
    *args_len = len - n;
    return 1;
}

static cli_cmd_t slash_command(cli_repl_t *r, const char *line, size_t len, mh_buf_t *frame,
                               char *err, size_t errlen)
{
    const char *a;
    size_t an;
    int json = 0;
    if (is_cmd(line, len, "/to", &a, &an) || (json = is_cmd(line, len, "/json", &a, &an))) {
        mh_buf_t ids;
        mh_buf_init(&ids);
        if (take_ids(a, an, &ids, &a, &an, err, errlen)) {
            mh_buf_free(&ids);
            return CLI_CMD_ERROR;
        }
        if (json && (!an || mh_json_validate(a, an, MH_JSON_MAX_DEPTH) == MH_JSON_EBAD)) {
            mh_buf_free(&ids);
            snprintf(err, errlen, "/json needs a valid JSON body after the ids");
            return CLI_CMD_ERROR;
        }
        set_receivers(r, &ids);
        if (!an)
            return CLI_CMD_NOTHING;
        relay(r, frame, a, an, !json);
        return CLI_CMD_SEND;
    }
    struct {
        const char *cmd, *type;
    } simple[] = {{"/list", "list"}, {"/id", "identity"}, {"/ping", "ping"}};
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        if (is_cmd(line, len, simple[i].cmd, &a, &an)) {
            begin(r, frame, simple[i].type);
            mh_buf_puts(frame, "}");
            return CLI_CMD_SEND;
        }
    }
    if (is_cmd(line, len, "/quit", &a, &an) || is_cmd(line, len, "/exit", &a, &an))
        return CLI_CMD_QUIT;
    if (is_cmd(line, len, "/help", &a, &an) || is_cmd(line, len, "/?", &a, &an)) {
        mh_buf_puts(frame, help_text);
        return CLI_CMD_HELP;
    }
    size_t w = 0;
    while (w < len && line[w] != ' ' && line[w] != '\t')
        w++;
    snprintf(err, errlen, "unknown command '%.*s' (try /help)", (int)(w > 40 ? 40 : w), line);
    return CLI_CMD_ERROR;
}

cli_cmd_t cli_repl_line(cli_repl_t *r, const char *line, size_t len, mh_buf_t *frame, char *err,
                        size_t errlen)
{
    mh_buf_reset(frame);
    size_t blank = 0;
    while (blank < len && (line[blank] == ' ' || line[blank] == '\t'))
        blank++;
    if (blank == len)
        return CLI_CMD_NOTHING;
    if (line[0] == '/' && !(len > 1 && line[1] == '/'))
        return slash_command(r, line, len, frame, err, errlen);
    if (line[0] == '/') { /* "//text" sends "/text" */
        line++;
        len--;
    }
    if (!r->to.len) {
        snprintf(err, errlen, "no receivers yet: start with /to IDS TEXT (e.g. /to 7 hello)");
        return CLI_CMD_ERROR;
    }
    relay(r, frame, line, len, 1);
    return CLI_CMD_SEND;
}

/* ---- frames from the hub ---- */

void cli_repl_one_line(mh_buf_t *out, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' || s[i] == '\r') {
            mh_buf_append(out, s + start, i - start);
            mh_buf_append(out, " ", 1);
            start = i + 1;
        }
    }
    mh_buf_append(out, s + start, n - start);
}

/* Appends the decoded text of a JSON string span (for messages and tokens). */
static void put_string(mh_buf_t *out, const mh_json_span_t *v)
{
    cJSON *j = v->kind == MH_JSON_STRING ? cJSON_ParseWithLength(v->p, v->len) : NULL;
    if (j && cJSON_IsString(j))
        cli_repl_one_line(out, j->valuestring, strlen(j->valuestring));
    else
        cli_repl_one_line(out, v->p, v->len);
    cJSON_Delete(j);
}

/* Appends the elements of an array span separated by sep (numbers as sent). */
static void put_list(mh_buf_t *out, const mh_json_span_t *arr, const char *sep)
{
    size_t pos = 0;
    mh_json_span_t e;
    int first = 1;
    while (arr->kind == MH_JSON_ARRAY && mh_json_array_next(arr, &pos, &e)) {
        if (!first)
            mh_buf_puts(out, sep);
        mh_buf_append(out, e.p, e.len);
        first = 0;
    }
}

typedef struct fields {
    mh_json_span_t type, id, from, body, token, resumed, ids, code, message, ref, accepted, unknown;
    mh_json_span_t seq;
} fields_t;

static int span_is(const mh_json_span_t *s, const char *lit)
{
    size_t n = strlen(lit);
    return s->p && s->len == n && !memcmp(s->p, lit, n);
}

static void collect(const mh_json_span_t *root, fields_t *f)
{
    static const struct {
        const char *name;
        size_t off;
    } names[] = {
        {"type", offsetof(fields_t, type)},         {"id", offsetof(fields_t, id)},
        {"from", offsetof(fields_t, from)},         {"body", offsetof(fields_t, body)},
        {"token", offsetof(fields_t, token)},       {"resumed", offsetof(fields_t, resumed)},
        {"ids", offsetof(fields_t, ids)},           {"code", offsetof(fields_t, code)},
        {"message", offsetof(fields_t, message)},   {"ref", offsetof(fields_t, ref)},
        {"accepted", offsetof(fields_t, accepted)}, {"unknown", offsetof(fields_t, unknown)},
        {"seq", offsetof(fields_t, seq)},
    };
    memset(f, 0, sizeof(*f));
    size_t pos = 0;
    mh_json_span_t k, v;
    while (mh_json_object_next(root, &pos, &k, &v)) {
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (span_is(&k, names[i].name))
                *(mh_json_span_t *)((char *)f + names[i].off) = v;
    }
}

static int format_known(const fields_t *f, mh_buf_t *out, cli_frame_info_t *info)
{
    const mh_json_span_t *t = &f->type;
    if (span_is(t, "\"message\"") && f->body.p && f->from.p) {
        info->kind = CLI_IN_MESSAGE;
        if (f->seq.kind == MH_JSON_NUMBER && mh_json_parse_id(&f->seq, &info->seq))
            info->seq = 0;
        mh_buf_puts(out, "[from ");
        mh_buf_append(out, f->from.p, f->from.len);
        mh_buf_puts(out, "] ");
        cli_repl_one_line(out, f->body.p, f->body.len);
    } else if (span_is(t, "\"hello\"") && f->id.kind == MH_JSON_NUMBER && f->token.p) {
        info->kind = CLI_IN_HELLO;
        snprintf(info->id, sizeof(info->id), "%.*s", (int)f->id.len, f->id.p);
        if (f->token.len < sizeof(info->token) + 2)
            snprintf(info->token, sizeof(info->token), "%.*s", (int)f->token.len - 2,
                     f->token.p + 1);
        if (f->seq.kind == MH_JSON_NUMBER && mh_json_parse_id(&f->seq, &info->seq))
            info->seq = 0;
        mh_buf_printf(out, "hello id=%s token=", info->id);
        put_string(out, &f->token);
        mh_buf_printf(out, " resumed=%s", f->resumed.kind == MH_JSON_TRUE ? "true" : "false");
    } else if (span_is(t, "\"identity\"") && f->id.p) {
        mh_buf_puts(out, "id ");
        mh_buf_append(out, f->id.p, f->id.len);
    } else if (span_is(t, "\"list\"") && f->ids.kind == MH_JSON_ARRAY) {
        mh_buf_puts(out, "online:");
        size_t mark = out->len;
        mh_buf_puts(out, " ");
        put_list(out, &f->ids, " ");
        if (out->len == mark + 1)
            mh_buf_puts(out, "none");
    } else if (span_is(t, "\"pong\"")) {
        mh_buf_puts(out, "pong");
    } else if (span_is(t, "\"relayed\"") && f->accepted.p) {
        mh_buf_puts(out, "relayed accepted=");
        mh_buf_append(out, f->accepted.p, f->accepted.len);
        static const char label[] = " unknown=";
        size_t mark = out->len;
        mh_buf_puts(out, label);
        put_list(out, &f->unknown, ",");
        if (out->len == mark + sizeof(label) - 1) { /* none unknown: drop the label */
            out->len = mark;
            out->data[mark] = '\0';
        }
    } else if (span_is(t, "\"error\"") && f->code.p) {
        mh_buf_puts(out, "error ");
        put_string(out, &f->code);
        mh_buf_puts(out, ": ");
        if (f->message.p)
            put_string(out, &f->message);
        if (!f->ref.p)
            info->kind = CLI_IN_ERROR;
    } else {
        return -1;
    }
    return 0;
}

void cli_repl_frame(const char *s, size_t n, mh_buf_t *out, cli_frame_info_t *info)
{
    memset(info, 0, sizeof(*info));
    info->kind = CLI_IN_REPLY;
    mh_buf_reset(out);
    if (mh_json_validate(s, n, FRAME_MAX_DEPTH) == MH_JSON_OK) {
        mh_json_span_t root = mh_json_root(s, n);
        fields_t f;
        if (root.kind == MH_JSON_OBJECT) {
            collect(&root, &f);
            if (!format_known(&f, out, info))
                return;
        }
    }
    info->kind = CLI_IN_OTHER;
    mh_buf_reset(out);
    cli_repl_one_line(out, s, n);
}
