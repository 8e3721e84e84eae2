/*
 * input: reads lines from a file descriptor (stdin) on a libuv loop,
 * whatever it is: a terminal (uv_tty_t), a pipe or socket (uv_pipe_t), or a
 * regular file or device (uv_fs_read on the thread pool, since epoll cannot
 * watch those). Lines are delivered without their "\n" / "\r\n"; a last
 * line without a newline is delivered before the end.
 *
 * Flow control: cli_input_pause() stops delivery (and reading) until
 * cli_input_resume(); delivery after a resume starts on a later loop turn,
 * never inside the caller.
 *
 * Ownership: the caller creates the reader and calls cli_input_close() once;
 * the reader frees itself when libuv has let go of its handles. No callback
 * runs after cli_input_close().
 */
#ifndef MSGHUB_CLI_INPUT_H
#define MSGHUB_CLI_INPUT_H

#include <stddef.h>
#include <uv.h>

typedef struct cli_input cli_input_t;

/* A line, NUL-terminated, writable; valid only during the call. */
typedef void (*cli_input_line_cb)(void *ud, char *line, size_t len);
/* No more lines: error is NULL at end of input, else what went wrong. */
typedef void (*cli_input_end_cb)(void *ud, const char *error);

/* Longest line accepted; a longer one ends the input with an error. */
#define CLI_INPUT_MAX_LINE (64u << 20)

/* Starts reading fd. Returns NULL (and prints why) if fd cannot be read. */
cli_input_t *cli_input_new(uv_loop_t *loop, int fd, cli_input_line_cb on_line,
                           cli_input_end_cb on_end, void *ud);
void cli_input_pause(cli_input_t *in);
void cli_input_resume(cli_input_t *in);
void cli_input_close(cli_input_t *in);

#endif
