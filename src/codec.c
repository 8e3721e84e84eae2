/*
 * codec: request validation and frame writing. Validation runs in the
 * order documented in docs/PROTOCOL-NOTES.md: JSON and UTF-8, depth,
 * object, type, ref, then the fields of the request type.
 */
#include "msghub/codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msghub/json.h"

static int fail(mh_codec_error_t *err, mh_err_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(mh_codec_error_t *err, mh_err_code_t code, const char *fmt, ...)
{
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return -1;
}

static int key_is(const mh_json_span_t *k, const char *name)
{
    return k->len == strlen(name) && memcmp(k->p, name, k->len) == 0;
}

/* The fields any request may carry; absent spans have p == NULL. */
typedef struct fields {
    mh_json_span_t type, ref, receivers, body, from, seq;
} fields_t;

static int parse_root(const char *s, size_t n, fields_t *f, mh_codec_error_t *err)
{
    memset(f, 0, sizeof(*f));
    int rc = mh_json_validate(s, n, MH_JSON_MAX_DEPTH);
    if (rc == MH_JSON_EDEPTH)
        return fail(err, MH_ERR_BAD_REQUEST, "JSON nested deeper than %d levels",
                    MH_JSON_MAX_DEPTH);
    if (rc)
        return fail(err, MH_ERR_BAD_JSON, "not valid JSON (or not valid UTF-8)");
    mh_json_span_t root = mh_json_root(s, n);
    if (root.kind != MH_JSON_OBJECT)
        return fail(err, MH_ERR_BAD_REQUEST, "expected a JSON object");
    size_t pos = 0;
    mh_json_span_t k, v;
    while (mh_json_object_next(&root, &pos, &k, &v)) {
        if (key_is(&k, "type"))
            f->type = v;
        else if (key_is(&k, "ref"))
            f->ref = v;
        else if (key_is(&k, "receivers"))
            f->receivers = v;
        else if (key_is(&k, "body"))
            f->body = v;
        else if (key_is(&k, "from"))
            f->from = v;
        else if (key_is(&k, "seq"))
            f->seq = v;
    }
    return 0;
}

static int parse_receivers(const mh_json_span_t *arr, const mh_codec_limits_t *lim,
                           mh_request_t *req, mh_codec_error_t *err)
{
    if (!arr->p)
        return fail(err, MH_ERR_BAD_REQUEST, "missing field 'receivers'");
    if (arr->kind != MH_JSON_ARRAY)
        return fail(err, MH_ERR_BAD_REQUEST, "'receivers' must be an array of ids");
    size_t pos = 0, count = 0;
    mh_json_span_t v;
    while (mh_json_array_next(arr, &pos, &v))
        count++;
    if (count == 0)
        return fail(err, MH_ERR_BAD_REQUEST, "'receivers' must not be empty");
    if (count > lim->max_receivers)
        return fail(err, MH_ERR_TOO_MANY_RECEIVERS, "at most %u receivers", lim->max_receivers);
    req->receivers = mh_xmalloc(count * sizeof(uint64_t));
    pos = 0;
    while (mh_json_array_next(arr, &pos, &v)) {
        if (mh_json_parse_id(&v, &req->receivers[req->n_receivers]) != 0)
            return fail(err, MH_ERR_BAD_REQUEST,
                        "receiver ids must be integers from 1 to 18446744073709551615");
        req->n_receivers++;
    }
    return 0;
}

static int parse_relay_fields(const fields_t *f, const mh_codec_limits_t *lim, mh_request_t *req,
                              mh_codec_error_t *err)
{
    if (parse_receivers(&f->receivers, lim, req, err))
        return -1;
    if (!f->body.p)
        return fail(err, MH_ERR_BAD_REQUEST, "missing field 'body'");
    if (f->body.len > lim->max_body_bytes)
        return fail(err, MH_ERR_BODY_TOO_LARGE, "body larger than %llu bytes",
                    (unsigned long long)lim->max_body_bytes);
    req->body = f->body.p;
    req->body_len = f->body.len;
    return 0;
}

static int type_from_span(const mh_json_span_t *t, mh_req_type_t *out)
{
    static const struct {
        const char *name;
        mh_req_type_t type;
    } types[] = {{"relay", MH_REQ_RELAY},
                 {"list", MH_REQ_LIST},
                 {"identity", MH_REQ_IDENTITY},
                 {"ping", MH_REQ_PING},
                 {"ack", MH_REQ_ACK}};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (key_is(t, types[i].name)) {
            *out = types[i].type;
            return 0;
        }
    return -1;
}

int mh_codec_parse_ws(const char *s, size_t n, const mh_codec_limits_t *lim, mh_request_t *req,
                      mh_codec_error_t *err)
{
    memset(req, 0, sizeof(*req));
    fields_t f;
    if (parse_root(s, n, &f, err)) {
        /* too deep but otherwise an object: still echo a top-level ref */
        mh_json_span_t ref;
        if (err->code == MH_ERR_BAD_REQUEST && mh_json_find_shallow(s, n, "ref", &ref) == 0 &&
            (ref.kind == MH_JSON_STRING || ref.kind == MH_JSON_NUMBER)) {
            req->ref = ref.p;
            req->ref_len = ref.len;
        }
        return -1;
    }
    if (f.ref.p) {
        if (f.ref.kind != MH_JSON_STRING && f.ref.kind != MH_JSON_NUMBER)
            return fail(err, MH_ERR_BAD_REQUEST, "'ref' must be a string or a number");
        req->ref = f.ref.p;
        req->ref_len = f.ref.len;
    }
    if (!f.type.p || f.type.kind != MH_JSON_STRING)
        return fail(err, MH_ERR_BAD_REQUEST, "'type' must be a string");
    /* compare the text between the quotes */
    mh_json_span_t name = {f.type.p + 1, f.type.len - 2, MH_JSON_STRING};
    if (type_from_span(&name, &req->type))
        return fail(err, MH_ERR_UNKNOWN_TYPE, "unknown type");
    if (req->type == MH_REQ_RELAY)
        return parse_relay_fields(&f, lim, req, err);
    if (req->type == MH_REQ_ACK && (!f.seq.p || mh_json_parse_id(&f.seq, &req->seq) != 0))
        return fail(err, MH_ERR_BAD_REQUEST,
                    "'seq' must be an integer from 1 to the highest seq sent to this id");
    return 0;
}

int mh_codec_parse_http_relay(const char *s, size_t n, const mh_codec_limits_t *lim,
                              mh_request_t *req, mh_codec_error_t *err)
{
    memset(req, 0, sizeof(*req));
    req->type = MH_REQ_RELAY;
    fields_t f;
    if (parse_root(s, n, &f, err))
        return -1;
    if (parse_relay_fields(&f, lim, req, err))
        return -1;
    if (f.from.p) {
        if (mh_json_parse_id(&f.from, &req->from) != 0)
            return fail(err, MH_ERR_BAD_REQUEST,
                        "'from' must be an integer from 1 to 18446744073709551615");
        req->has_from = 1;
    }
    return 0;
}

int mh_codec_parse_http_sessions(const char *s, size_t n, mh_codec_error_t *err)
{
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    if (i == n)
        return 0;
    fields_t f;
    return parse_root(s, n, &f, err);
}

void mh_codec_request_free(mh_request_t *req)
{
    free(req->receivers);
    req->receivers = NULL;
    req->n_receivers = 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

size_t mh_codec_dedupe(uint64_t *ids, size_t n)
{
    if (n < 2)
        return n;
    qsort(ids, n, sizeof(*ids), cmp_u64);
    size_t w = 1;
    for (size_t r = 1; r < n; r++)
        if (ids[r] != ids[w - 1])
            ids[w++] = ids[r];
    return w;
}

/* ---- writers ---- */

static void put_ref(mh_buf_t *out, const char *ref, size_t ref_len)
{
    if (!ref)
        return;
    mh_buf_puts(out, ",\"ref\":");
    mh_buf_append(out, ref, ref_len);
}

/* "1,2,3": the ids separated by commas (JSON arrays and envelope heads). */
static void put_id_list(mh_buf_t *out, const uint64_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            mh_buf_append(out, ",", 1);
        mh_buf_u64(out, ids[i]);
    }
}

static void put_ids(mh_buf_t *out, const uint64_t *ids, size_t n)
{
    mh_buf_append(out, "[", 1);
    put_id_list(out, ids, n);
    mh_buf_append(out, "]", 1);
}

void mh_codec_hello(mh_buf_t *out, const mh_codec_hello_t *h, const mh_codec_limits_t *lim)
{
    mh_buf_puts(out, "{\"type\":\"hello\",\"id\":");
    mh_buf_u64(out, h->id);
    mh_buf_puts(out, ",\"token\":");
    mh_buf_json_string(out, h->token, strlen(h->token));
    mh_buf_printf(out, ",\"resumed\":%s,\"ack\":\"%s\",\"seq\":%llu,\"recovered\":%s",
                  h->resumed ? "true" : "false", h->ack_auto ? "auto" : "client",
                  (unsigned long long)h->seq, h->recovered ? "true" : "false");
    mh_buf_printf(out, ",\"limits\":{\"max_receivers\":%u,\"max_body_bytes\":%llu}}",
                  lim->max_receivers, (unsigned long long)lim->max_body_bytes);
}

void mh_codec_acked(mh_buf_t *out, const char *ref, size_t ref_len, uint64_t seq)
{
    mh_buf_puts(out, "{\"type\":\"acked\"");
    put_ref(out, ref, ref_len);
    mh_buf_puts(out, ",\"seq\":");
    mh_buf_u64(out, seq);
    mh_buf_append(out, "}", 1);
}

void mh_codec_identity(mh_buf_t *out, uint64_t id, const char *ref, size_t ref_len)
{
    mh_buf_puts(out, "{\"type\":\"identity\",\"id\":");
    mh_buf_u64(out, id);
    put_ref(out, ref, ref_len);
    mh_buf_append(out, "}", 1);
}

void mh_codec_list(mh_buf_t *out, const uint64_t *ids, size_t n, const char *ref, size_t ref_len)
{
    mh_buf_puts(out, "{\"type\":\"list\",\"ids\":");
    put_ids(out, ids, n);
    put_ref(out, ref, ref_len);
    mh_buf_append(out, "}", 1);
}

void mh_codec_pong(mh_buf_t *out, const char *ref, size_t ref_len)
{
    mh_buf_puts(out, "{\"type\":\"pong\"");
    put_ref(out, ref, ref_len);
    mh_buf_append(out, "}", 1);
}

void mh_codec_relayed(mh_buf_t *out, const char *ref, size_t ref_len, size_t accepted,
                      const uint64_t *unknown, size_t n_unknown)
{
    mh_buf_puts(out, "{\"type\":\"relayed\"");
    put_ref(out, ref, ref_len);
    mh_buf_printf(out, ",\"accepted\":%zu,\"unknown\":", accepted);
    put_ids(out, unknown, n_unknown);
    mh_buf_append(out, "}", 1);
}

void mh_codec_error(mh_buf_t *out, mh_err_code_t code, const char *message, const char *ref,
                    size_t ref_len)
{
    mh_buf_printf(out, "{\"type\":\"error\",\"code\":\"%s\",\"message\":", mh_err_name(code));
    mh_buf_json_string(out, message, strlen(message));
    put_ref(out, ref, ref_len);
    mh_buf_append(out, "}", 1);
}

size_t mh_codec_message(mh_buf_t *out, const char *msg_id, uint64_t from, const char *body,
                        size_t body_len, uint64_t ts_ms)
{
    mh_buf_reserve(out, body_len + 96);
    mh_buf_puts(out, "{\"type\":\"message\",\"id\":");
    mh_buf_json_string(out, msg_id, strlen(msg_id));
    size_t seq_at = out->len;
    mh_buf_puts(out, ",\"from\":");
    mh_buf_u64(out, from);
    mh_buf_puts(out, ",\"body\":");
    mh_buf_append(out, body, body_len);
    mh_buf_puts(out, ",\"ts\":");
    mh_buf_u64(out, ts_ms);
    mh_buf_append(out, "}", 1);
    return seq_at;
}

size_t mh_codec_seq_field(char *out, uint64_t seq)
{
    static const char head[] = ",\"seq\":";
    char digits[20];
    size_t n = 0;
    do
        digits[n++] = (char)('0' + seq % 10);
    while ((seq /= 10) != 0);
    memcpy(out, head, sizeof(head) - 1);
    for (size_t i = 0; i < n; i++)
        out[sizeof(head) - 1 + i] = digits[n - 1 - i];
    return sizeof(head) - 1 + n;
}

size_t mh_codec_message_seq_len(const mh_frame_t *f, uint64_t seq)
{
    char tmp[MH_CODEC_SEQ_FIELD_MAX];
    return f->len + mh_codec_seq_field(tmp, seq);
}

size_t mh_codec_message_seq_into(unsigned char *dst, const mh_frame_t *f, uint64_t seq)
{
    const unsigned char *src = f->mem + MH_FRAME_HEADROOM;
    memcpy(dst, src, f->seq_at);
    size_t n = mh_codec_seq_field((char *)dst + f->seq_at, seq);
    memcpy(dst + f->seq_at + n, src + f->seq_at, f->len - f->seq_at);
    return f->len + n;
}

void mh_codec_message_seq(mh_buf_t *out, const mh_frame_t *f, uint64_t seq)
{
    mh_buf_reserve(out, f->len + MH_CODEC_SEQ_FIELD_MAX);
    out->len += mh_codec_message_seq_into((unsigned char *)out->data + out->len, f, seq);
    out->data[out->len] = '\0';
}

void mh_codec_http_error(mh_buf_t *out, mh_err_code_t code, const char *message)
{
    mh_buf_printf(out, "{\"error\":{\"code\":\"%s\",\"message\":", mh_err_name(code));
    mh_buf_json_string(out, message, strlen(message));
    mh_buf_puts(out, "}}");
}

void mh_codec_http_relayed(mh_buf_t *out, const char *msg_id, size_t accepted,
                           const uint64_t *unknown, size_t n_unknown)
{
    mh_buf_puts(out, "{\"id\":");
    mh_buf_json_string(out, msg_id, strlen(msg_id));
    mh_buf_printf(out, ",\"accepted\":%zu,\"unknown\":", accepted);
    put_ids(out, unknown, n_unknown);
    mh_buf_append(out, "}", 1);
}

void mh_codec_http_session(mh_buf_t *out, uint64_t id, const char *token)
{
    mh_buf_puts(out, "{\"id\":");
    mh_buf_u64(out, id);
    mh_buf_puts(out, ",\"token\":");
    mh_buf_json_string(out, token, strlen(token));
    mh_buf_append(out, "}", 1);
}

void mh_codec_http_ids(mh_buf_t *out, const uint64_t *ids, size_t n)
{
    mh_buf_puts(out, "{\"ids\":");
    put_ids(out, ids, n);
    mh_buf_append(out, "}", 1);
}

/* ---- envelopes ---- */

void mh_codec_envelope_message(mh_buf_t *out, const uint64_t *ids, const uint64_t *seqs, size_t n,
                               const mh_frame_t *f)
{
    mh_buf_reserve(out, n * 16 + f->len + 16);
    mh_buf_append(out, "M", 1);
    mh_buf_u64(out, f->seq_at);
    for (size_t i = 0; i < n; i++) {
        mh_buf_append(out, i ? "," : " ", 1);
        mh_buf_u64(out, ids[i]);
        mh_buf_append(out, ":", 1);
        mh_buf_u64(out, seqs[i]);
    }
    mh_buf_append(out, "\n", 1);
    mh_buf_append(out, f->mem + MH_FRAME_HEADROOM, f->len);
}

void mh_codec_envelope_kick(mh_buf_t *out, uint64_t id, uint64_t claimed_ms)
{
    mh_buf_append(out, "K", 1);
    mh_buf_u64(out, id);
    mh_buf_append(out, " ", 1);
    mh_buf_u64(out, claimed_ms);
    mh_buf_append(out, "\n", 1);
}

/* Parses a decimal uint64 at p[*i..n) ending at a char in stops; -1 if none. */
static int parse_u64_at(const char *p, size_t n, size_t *i, uint64_t *out)
{
    size_t start = *i;
    uint64_t v = 0;
    while (*i < n && p[*i] >= '0' && p[*i] <= '9') {
        unsigned d = (unsigned)(p[*i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        (*i)++;
    }
    *out = v;
    return *i > start ? 0 : -1;
}

/* "<id>:<seq>,<id>:<seq>" up to head; ids and seqs nonzero. */
static int parse_pairs(const char *p, size_t head, size_t i, mh_envelope_t *env)
{
    for (;;) {
        uint64_t *id = &env->ids[env->n_ids], *seq = &env->seqs[env->n_ids];
        if (parse_u64_at(p, head, &i, id) || *id == 0 || i >= head || p[i++] != ':' ||
            parse_u64_at(p, head, &i, seq) || *seq == 0)
            return -1;
        env->n_ids++;
        if (i == head)
            return 0;
        if (p[i++] != ',')
            return -1;
    }
}

static int parse_message(const char *p, size_t len, size_t head, mh_envelope_t *env)
{
    size_t i = 1;
    uint64_t seq_at;
    if (parse_u64_at(p, head, &i, &seq_at) || i >= head || p[i++] != ' ' ||
        parse_pairs(p, head, i, env))
        return -1;
    env->frame = p + head + 1;
    env->frame_len = len - head - 1;
    if (env->frame_len == 0 || seq_at == 0 || seq_at >= env->frame_len)
        return -1;
    env->seq_at = (uint32_t)seq_at;
    return 0;
}

int mh_codec_envelope_parse(const void *body, size_t len, mh_envelope_t *env)
{
    const char *p = body;
    memset(env, 0, sizeof(*env));
    if (len < 3)
        return -1;
    const char *nl = memchr(p, '\n', len);
    if (!nl)
        return -1;
    size_t head = (size_t)(nl - p), i = 1, commas = 0;
    for (size_t k = 1; k < head; k++)
        commas += p[k] == ',';
    env->ids = mh_xmalloc((commas + 1) * sizeof(uint64_t));
    env->seqs = mh_xmalloc((commas + 1) * sizeof(uint64_t));
    env->type = (mh_env_type_t)p[0];
    if (env->type == MH_ENV_KICK) {
        if (parse_u64_at(p, head, &i, &env->ids[0]) || i >= head || p[i++] != ' ' ||
            parse_u64_at(p, head, &i, &env->claimed_ms) || i != head)
            goto fail;
        env->n_ids = 1;
        return 0;
    }
    if (env->type != MH_ENV_MESSAGE || parse_message(p, len, head, env))
        goto fail;
    return 0;
fail:
    mh_codec_envelope_free(env);
    return -1;
}

void mh_codec_envelope_free(mh_envelope_t *env)
{
    free(env->ids);
    free(env->seqs);
    env->ids = env->seqs = NULL;
    env->n_ids = 0;
}

void mh_codec_batch_append(mh_buf_t *out, const void *env, size_t len)
{
    if (out->len == 0)
        mh_buf_append(out, "B\n", 2);
    mh_buf_u64(out, len);
    mh_buf_append(out, "\n", 1);
    mh_buf_append(out, env, len);
}

int mh_codec_batch_next(const void *body, size_t n, size_t *pos, const char **env, size_t *len)
{
    const char *p = body;
    if (*pos == 0) {
        if (n < 2 || p[0] != 'B' || p[1] != '\n')
            return -1;
        *pos = 2;
    }
    if (*pos == n)
        return 0;
    size_t i = *pos;
    uint64_t v;
    if (parse_u64_at(p, n, &i, &v) || i >= n || p[i] != '\n' || v == 0 || v > n - i - 1)
        return -1;
    *env = p + i + 1;
    *len = (size_t)v;
    *pos = i + 1 + (size_t)v;
    return 1;
}
