/*
 * repl: the text side of `msghub-cli connect`, with no I/O. Turns a line
 * the user typed into the request frame to send, and a frame from the hub
 * into the one line to print. Bodies and ids are handled as JSON spans
 * (msghub/json.h) and copied out byte for byte, never decoded and
 * re-encoded; only error messages and tokens, where exactness does not
 * matter, go through cJSON.
 *
 * Ownership: cli_repl_t is embedded by its user (init/free); every output
 * goes into caller-owned buffers.
 */
#ifndef MSGHUB_CLI_REPL_H
#define MSGHUB_CLI_REPL_H

#include <stddef.h>
#include <stdint.h>

#include "msghub/util.h"

typedef struct cli_repl {
    mh_buf_t to;       /* JSON array text of the last /to or /json receivers, "" when none */
    uint64_t next_ref; /* every request carries a ref so its reply can be counted */
} cli_repl_t;

typedef enum {
    CLI_CMD_NOTHING, /* empty line, or only new receivers */
    CLI_CMD_SEND,    /* frame holds one request; exactly one reply will come */
    CLI_CMD_QUIT,
    CLI_CMD_HELP,  /* frame holds the help text */
    CLI_CMD_ERROR, /* err holds what is wrong with the line; nothing to send */
} cli_cmd_t;

void cli_repl_init(cli_repl_t *r);
void cli_repl_free(cli_repl_t *r);

/* Interprets one input line (without its newline). frame is reset first. */
cli_cmd_t cli_repl_line(cli_repl_t *r, const char *line, size_t len, mh_buf_t *frame, char *err,
                        size_t errlen);

typedef enum {
    CLI_IN_HELLO,
    CLI_IN_MESSAGE,
    CLI_IN_REPLY, /* identity, list, pong, relayed, or an error that echoes a ref */
    CLI_IN_ERROR, /* an error without a ref */
    CLI_IN_OTHER, /* anything else, printed raw */
} cli_in_kind_t;

typedef struct cli_frame_info {
    cli_in_kind_t kind;
    char id[24];     /* hello: the id as sent */
    char token[160]; /* hello: the token (base64url, no escapes) */
    uint64_t seq;    /* message: its seq; hello: the id's highest seq (0 when absent) */
} cli_frame_info_t;

/* Formats a frame from the hub as one printable line (no newline) into out. */
void cli_repl_frame(const char *s, size_t n, mh_buf_t *out, cli_frame_info_t *info);

/* Appends a JSON span to out with its line breaks (only ever insignificant
 * whitespace in valid JSON) written as spaces, so it prints as one line. */
void cli_repl_one_line(mh_buf_t *out, const char *s, size_t n);

#endif
