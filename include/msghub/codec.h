/*
 * codec: the wire format. Parses and validates client requests (WebSocket
 * frames and HTTP bodies) into mh_request_t, and writes every frame and
 * response the hub sends. The relay body and the ref are kept as spans of
 * the caller's text and written out verbatim, never re-encoded.
 *
 * Ownership: a parsed request points into the caller's text (which must
 * outlive it) and owns only its receivers array, released by
 * mh_codec_request_free().
 */
#ifndef MSGHUB_CODEC_H
#define MSGHUB_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/metrics.h"
#include "msghub/util.h"

typedef enum {
    MH_REQ_IDENTITY,
    MH_REQ_LIST,
    MH_REQ_RELAY,
    MH_REQ_PING,
    MH_REQ_ACK,
    MH_REQ_SESSIONS, /* HTTP POST /sessions */
} mh_req_type_t;

typedef struct mh_request {
    mh_req_type_t type;
    const char *ref; /* raw JSON text of a valid ref, or NULL */
    size_t ref_len;
    uint64_t *receivers; /* as sent (duplicates kept), owned */
    size_t n_receivers;
    const char *body; /* raw JSON text of the body as sent */
    size_t body_len;
    int has_from; /* HTTP relay only */
    uint64_t from;
    uint64_t seq; /* ack: 1..2^64-1 (the session checks it against what it knows) */
} mh_request_t;

typedef struct mh_codec_limits {
    uint32_t max_receivers;
    uint64_t max_body_bytes;
} mh_codec_limits_t;

typedef struct mh_codec_error {
    mh_err_code_t code;
    char message[128];
} mh_codec_error_t;

/*
 * Parses one WebSocket text message. Returns 0 with *req filled, or -1 with
 * *err set; on error req->ref still holds the ref when one was valid, so the
 * error can echo it. Call mh_codec_request_free() in both cases.
 */
int mh_codec_parse_ws(const char *s, size_t n, const mh_codec_limits_t *lim, mh_request_t *req,
                      mh_codec_error_t *err);

/* Parses the body of POST /relay (receivers, body, optional from). */
int mh_codec_parse_http_relay(const char *s, size_t n, const mh_codec_limits_t *lim,
                              mh_request_t *req, mh_codec_error_t *err);

/* Checks the body of POST /sessions: empty, or a JSON object. */
int mh_codec_parse_http_sessions(const char *s, size_t n, mh_codec_error_t *err);

void mh_codec_request_free(mh_request_t *req);

/* Sorts and removes duplicates in place; returns the new count. */
size_t mh_codec_dedupe(uint64_t *ids, size_t n);

/* ---- frames the hub sends on WebSocket (appended to out) ---- */
typedef struct mh_codec_hello {
    uint64_t id;
    const char *token;
    int resumed;
    int ack_auto;  /* ?ack=auto: "ack":"auto", else "client" */
    uint64_t seq;  /* highest seq assigned to the id */
    int recovered; /* 0: retention dropped something this client had not acknowledged */
} mh_codec_hello_t;

void mh_codec_hello(mh_buf_t *out, const mh_codec_hello_t *h, const mh_codec_limits_t *lim);
/* {"type":"acked"[,"ref":...],"seq":N} */
void mh_codec_acked(mh_buf_t *out, const char *ref, size_t ref_len, uint64_t seq);
void mh_codec_identity(mh_buf_t *out, uint64_t id, const char *ref, size_t ref_len);
void mh_codec_list(mh_buf_t *out, const uint64_t *ids, size_t n, const char *ref, size_t ref_len);
void mh_codec_pong(mh_buf_t *out, const char *ref, size_t ref_len);
void mh_codec_relayed(mh_buf_t *out, const char *ref, size_t ref_len, size_t accepted,
                      const uint64_t *unknown, size_t n_unknown);
void mh_codec_error(mh_buf_t *out, mh_err_code_t code, const char *message, const char *ref,
                    size_t ref_len);
/*
 * Message frames are shared by every receiver of a relay, so their text has
 * no seq: mh_codec_message() writes {"type":"message","id":...,"from":...,
 * "body":...,"ts":...} and returns the offset (after the id) where a
 * receiver's `,"seq":N` goes (store it in the frame's seq_at). The wire text
 * for one receiver is head + `,"seq":N` + tail.
 */
size_t mh_codec_message(mh_buf_t *out, const char *msg_id, uint64_t from, const char *body,
                        size_t body_len, uint64_t ts_ms);
#define MH_CODEC_SEQ_FIELD_MAX 28 /* strlen(",\"seq\":") + 20 digits, rounded up */
/* Writes `,"seq":N` (no NUL) into out[MH_CODEC_SEQ_FIELD_MAX]; returns its length. */
size_t mh_codec_seq_field(char *out, uint64_t seq);
/* Length of f's wire text for the receiver with seq. */
size_t mh_codec_message_seq_len(const mh_frame_t *f, uint64_t seq);
/* Writes f's wire text for seq into dst (room for mh_codec_message_seq_len()); returns it. */
size_t mh_codec_message_seq_into(unsigned char *dst, const mh_frame_t *f, uint64_t seq);
/* Appends f's wire text for seq to out. */
void mh_codec_message_seq(mh_buf_t *out, const mh_frame_t *f, uint64_t seq);

/* ---- HTTP response bodies ---- */
void mh_codec_http_error(mh_buf_t *out, mh_err_code_t code, const char *message);
void mh_codec_http_relayed(mh_buf_t *out, const char *msg_id, size_t accepted,
                           const uint64_t *unknown, size_t n_unknown);
void mh_codec_http_session(mh_buf_t *out, uint64_t id, const char *token);
void mh_codec_http_ids(mh_buf_t *out, const uint64_t *ids, size_t n);

/* ---- envelopes between instances (AMQP message bodies) ----
 *   "M<seq_at> <id>:<seq>,<id>:<seq>,...\n<message frame text without seq>"
 *                                           a message for those local receivers, each
 *                                           with its seq; seq_at as in the frame
 *   "K<id> <claimed_ms>\n"                   close <id> here (4409) if it connected before
 */
typedef enum { MH_ENV_MESSAGE = 'M', MH_ENV_KICK = 'K' } mh_env_type_t;

typedef struct mh_envelope {
    mh_env_type_t type;
    uint64_t *ids;  /* MESSAGE: receivers, owned; KICK: one id */
    uint64_t *seqs; /* MESSAGE: each receiver's seq, owned */
    size_t n_ids;
    uint32_t seq_at;   /* MESSAGE: where `,"seq":N` goes in frame */
    const char *frame; /* MESSAGE: points into the parsed body */
    size_t frame_len;
    uint64_t claimed_ms; /* KICK */
} mh_envelope_t;

void mh_codec_envelope_message(mh_buf_t *out, const uint64_t *ids, const uint64_t *seqs, size_t n,
                               const mh_frame_t *f);
void mh_codec_envelope_kick(mh_buf_t *out, uint64_t id, uint64_t claimed_ms);
/* Parses an envelope; 0 on success (free with mh_codec_envelope_free), -1 if malformed. */
int mh_codec_envelope_parse(const void *body, size_t len, mh_envelope_t *env);
void mh_codec_envelope_free(mh_envelope_t *env);

/*
 * Batches: several envelopes for one instance in one AMQP message
 *   "B\n" then, per envelope, "<length>\n<envelope bytes>"
 * mh_codec_batch_append() starts the batch when out is empty.
 * mh_codec_batch_next() walks one: *pos starts at 0; returns 1 with the next
 * envelope in (*env, *len), 0 at the end, -1 if malformed (or not a batch).
 */
void mh_codec_batch_append(mh_buf_t *out, const void *env, size_t len);
int mh_codec_batch_next(const void *body, size_t n, size_t *pos, const char **env, size_t *len);

#endif
