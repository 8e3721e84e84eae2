/*
 * input: line reader over a tty, pipe or file descriptor; see input.h.
 *
 * Bytes land in one buffer; complete lines are cut from its front. Delivery
 * stops as soon as the consumer pauses or closes, leaving the rest buffered.
 * The reader is freed only when every handle's close callback has run and no
 * file read is in flight, so a callback that closes it is always safe.
 */
#include "input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msghub/util.h"

#define READ_SIZE 65536

enum { MODE_STREAM, MODE_FILE };

struct cli_input {
    int mode;
    int fd;
    uv_loop_t *loop;
    union {
        uv_tty_t tty;
        uv_pipe_t pipe;
    } h;
    uv_stream_t *stream; /* MODE_STREAM */
    uv_fs_t fs;          /* MODE_FILE: the read in flight */
    int fs_busy;
    uv_timer_t kick; /* resumes delivery on a fresh loop turn */
    mh_buf_t buf;
    size_t off; /* first undelivered byte of buf */
    int paused, closing, eof, ended, reading;
    int open_handles;
    cli_input_line_cb on_line;
    cli_input_end_cb on_end;
    void *ud;
};

static void start_reading(cli_input_t *in);

static void maybe_free(cli_input_t *in)
{
    if (in->closing && in->open_handles == 0 && !in->fs_busy) {
        mh_buf_free(&in->buf);
        free(in);
    }
}

static void on_closed(uv_handle_t *h)
{
    cli_input_t *in = h->data;
    in->open_handles--;
    maybe_free(in);
}

static void end(cli_input_t *in, const char *error)
{
    if (in->ended || in->closing)
        return;
    in->ended = 1;
    in->on_end(in->ud, error);
}

/* Delivers buffered complete lines (and at EOF the last partial one). */
static void deliver(cli_input_t *in)
{
    while (!in->paused && !in->closing && !in->ended) {
        char *start = in->buf.data + in->off;
        size_t avail = in->buf.len - in->off;
        char *nl = avail ? memchr(start, '\n', avail) : NULL;
        size_t n;
        if (nl) {
            n = (size_t)(nl - start);
            in->off += n + 1;
        } else if (in->eof && avail) {
            n = avail;
            in->off += n;
        } else {
            break;
        }
        if (n && start[n - 1] == '\r')
            n--;
        start[n] = '\0';
        in->on_line(in->ud, start, n);
    }
    if (in->closing || in->ended)
        return;
    if (in->off == in->buf.len) {
        in->off = 0;
        mh_buf_reset(&in->buf);
    }
    if (in->eof && in->off == in->buf.len && !in->paused) {
        end(in, NULL);
        return;
    }
    if (in->buf.len - in->off > CLI_INPUT_MAX_LINE) {
        end(in, "input line too long");
        return;
    }
    if (!in->paused && !in->eof)
        start_reading(in);
}

/* Moves the undelivered bytes to the front before a read appends more;
 * never called while a line handed to on_line is still in use. */
static void compact(cli_input_t *in)
{
    if (!in->off)
        return;
    size_t left = in->buf.len - in->off;
    memmove(in->buf.data, in->buf.data + in->off, left);
    in->buf.len = left;
    in->buf.data[left] = '\0';
    in->off = 0;
}

/* ---- streams: tty, pipe, socket ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    cli_input_t *in = h->data;
    compact(in);
    mh_buf_reserve(&in->buf, READ_SIZE);
    b->base = in->buf.data + in->buf.len;
    b->len = in->buf.cap - in->buf.len - 1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    cli_input_t *in = s->data;
    if (n > 0) {
        in->buf.len += (size_t)n;
        in->buf.data[in->buf.len] = '\0';
    } else if (n == UV_EOF) {
        in->eof = 1;
    } else if (n < 0) {
        uv_read_stop(s);
        in->reading = 0;
        end(in, uv_strerror((int)n));
        return;
    }
    if (in->eof || in->paused) {
        uv_read_stop(s);
        in->reading = 0;
    }
    deliver(in);
}

/* ---- files: reads on the thread pool ---- */

static void on_fs_read(uv_fs_t *req)
{
    cli_input_t *in = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    in->fs_busy = 0;
    in->reading = 0;
    if (in->closing) {
        maybe_free(in);
        return;
    }
    if (n > 0) {
        in->buf.len += (size_t)n;
        in->buf.data[in->buf.len] = '\0';
    } else if (n == 0) {
        in->eof = 1;
    } else {
        end(in, uv_strerror((int)n));
        return;
    }
    deliver(in);
}

static void start_reading(cli_input_t *in)
{
    if (in->reading || in->closing)
        return;
    in->reading = 1;
    if (in->mode == MODE_STREAM) {
        uv_read_start(in->stream, on_alloc, on_read);
        return;
    }
    compact(in);
    mh_buf_reserve(&in->buf, READ_SIZE);
    uv_buf_t b = uv_buf_init(in->buf.data + in->buf.len, READ_SIZE);
    in->fs.data = in;
    in->fs_busy = 1;
    if (uv_fs_read(in->loop, &in->fs, in->fd, &b, 1, -1, on_fs_read)) {
        in->fs_busy = 0;
        in->reading = 0;
        end(in, "cannot read standard input");
    }
}

static void on_kick(uv_timer_t *t)
{
    deliver(t->data);
}

/* Opens fd as a libuv stream when epoll can watch it; 0 or a libuv error. */
static int open_stream(cli_input_t *in, uv_loop_t *loop, int fd)
{
    int rc;
    switch (uv_guess_handle(fd)) {
    case UV_TTY:
        in->stream = (uv_stream_t *)&in->h.tty;
        if ((rc = uv_tty_init(loop, &in->h.tty, fd, 1)))
            return rc;
        break;
    case UV_NAMED_PIPE:
    case UV_TCP:
        in->stream = (uv_stream_t *)&in->h.pipe;
        if ((rc = uv_pipe_init(loop, &in->h.pipe, 0)))
            return rc;
        in->stream->data = in;
        in->open_handles++;
        return uv_pipe_open(&in->h.pipe, fd);
    default:
        in->mode = MODE_FILE; /* regular file or device: epoll cannot watch it */
        return 0;
    }
    in->stream->data = in;
    in->open_handles++;
    return 0;
}

cli_input_t *cli_input_new(uv_loop_t *loop, int fd, cli_input_line_cb on_line,
                           cli_input_end_cb on_end, void *ud)
{
    cli_input_t *in = mh_xcalloc(1, sizeof(*in));
    in->loop = loop;
    in->fd = fd;
    in->on_line = on_line;
    in->on_end = on_end;
    in->ud = ud;
    mh_buf_init(&in->buf);
    uv_timer_init(loop, &in->kick);
    in->kick.data = in;
    in->open_handles = 1;
    int rc = open_stream(in, loop, fd);
    if (rc) {
        fprintf(stderr, "msghub-cli: cannot read standard input: %s\n", uv_strerror(rc));
        cli_input_close(in);
        return NULL;
    }
    start_reading(in);
    return in;
}

void cli_input_pause(cli_input_t *in)
{
    if (in->paused || in->closing)
        return;
    in->paused = 1;
    uv_timer_stop(&in->kick);
    if (in->mode == MODE_STREAM && in->reading) {
        uv_read_stop(in->stream);
        in->reading = 0;
    }
    /* a file read in flight completes into the buffer; delivery waits */
}

void cli_input_resume(cli_input_t *in)
{
    if (!in->paused || in->closing)
        return;
    in->paused = 0;
    uv_timer_start(&in->kick, on_kick, 0, 0);
}

void cli_input_close(cli_input_t *in)
{
    if (!in || in->closing)
        return;
    in->closing = 1;
    if (in->mode == MODE_STREAM && in->open_handles > 1) {
        if (in->reading)
            uv_read_stop(in->stream);
        uv_close((uv_handle_t *)in->stream, on_closed);
    }
    if (in->fs_busy)
        uv_cancel((uv_req_t *)&in->fs); /* may fail if running; on_fs_read frees then */
    uv_close((uv_handle_t *)&in->kick, on_closed);
}
