/*
 * connect: WebSocket session with stdin on the same loop; see connect.h.
 *
 * Outgoing requests wait in a FIFO and leave one per CLIENT_WRITEABLE (lws
 * allows one lws_write per callback). Reading stdin starts after the hello
 * and pauses while more than OUT_HIGH bytes wait, so a large piped file
 * cannot pile up in memory. Every request carries a ref; `awaiting` counts
 * those without a reply yet, so end of input can wait for the answers
 * before closing.
 *
 * Delivery v2: every message's seq is remembered; one at or below the last
 * seq seen is a duplicate (a redelivery after a resume) and is not printed.
 * Messages are acknowledged in batches ({"type":"ack","seq":N} without a
 * ref, so no answer is awaited): after ACK_BATCH messages or ACK_DELAY_MS
 * after the first unacknowledged one, and before closing. With --state, the
 * token and the last acknowledged seq are kept in a file and the next run
 * resumes with ?token=...&since=....
 */
#include "connect.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "input.h"
#include "loop.h"
#include "repl.h"

#define OUT_HIGH (1u << 20)
#define OUT_LOW (256u << 10)
#define CLOSE_GRACE_MS 5000
#define MAX_INCOMING ((1ull << 30) + (1ull << 20))
#define RX_CHUNK CLI_LOOP_READ_SIZE
#define ACK_BATCH 100
#define ACK_DELAY_MS 100
#define REDIAL_MIN_MS 500
#define REDIAL_MAX_MS 15000

enum { S_CONNECTING, S_OPEN, S_CLOSING, S_DONE };

typedef struct outmsg {
    struct outmsg *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE + len */
} outmsg_t;

typedef struct sess {
    cli_loop_t loop;
    const cli_connect_opts_t *o;
    struct lws *wsi;
    cli_input_t *input;
    uv_timer_t timer; /* connect deadline, then the close grace */
    uv_timer_t ack_timer;
    uv_timer_t redial_timer; /* --reconnect */
    unsigned redials;        /* attempts since the last hello */
    int close_code;          /* the hub's last close code */
    mh_buf_t path;
    uv_signal_t sigint, sigterm;
    outmsg_t *head, *tail;
    size_t out_bytes;
    mh_buf_t rx;   /* message being reassembled */
    mh_buf_t line; /* output line being built */
    cli_repl_t repl;
    unsigned awaiting; /* requests written or queued without a reply yet */
    int state;
    int want_close;  /* end of input, /quit or a signal: close once drained */
    int close_sent;  /* we sent close 1000 */
    int peer_closed; /* the hub's close code was printed */
    int exit_code;
    char token[160];   /* the session's token, from the hello */
    uint64_t last_seq; /* highest seq printed */
    uint64_t acked;    /* highest seq acknowledged */
    unsigned unacked;  /* messages printed since the last ack */
} sess_t;

static void send_ack(sess_t *s);
static int redial(sess_t *s, int code);

/* ---- output ---- */

static void print_line(const char *s, size_t n)
{
    fwrite(s, 1, n, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

/* ---- ending ---- */

static void stop(sess_t *s, int exit_code)
{
    if (s->state == S_DONE)
        return;
    s->state = S_DONE;
    s->exit_code = exit_code;
    cli_loop_stop(&s->loop);
}

static void on_grace(uv_timer_t *t)
{
    sess_t *s = t->data;
    if (s->close_sent || !s->wsi) {
        stop(s, 0); /* the close handshake did not finish: drop the connection */
        return;
    }
    /* replies overdue: close without waiting for them any longer */
    s->awaiting = 0;
    lws_callback_on_writable(s->wsi);
    uv_timer_start(&s->timer, on_grace, CLOSE_GRACE_MS, 0);
}

/* End of input, /quit or a signal: close with 1000 once the queue is written. */
static void request_close(sess_t *s)
{
    if (s->want_close || s->state == S_DONE)
        return;
    s->want_close = 1;
    if (s->state == S_OPEN)
        send_ack(s); /* what was printed is acknowledged before we go */
    if (s->input) {
        cli_input_close(s->input);
        s->input = NULL;
    }
    if (s->state != S_OPEN) {
        stop(s, s->state == S_CONNECTING ? 1 : 0);
        return;
    }
    s->state = S_CLOSING;
    uv_timer_stop(&s->timer);
    uv_timer_start(&s->timer, on_grace, CLOSE_GRACE_MS, 0);
    lws_callback_on_writable(s->wsi);
}

/* ---- input ---- */

static void enqueue_frame(sess_t *s, const char *p, size_t n, int awaits_reply)
{
    outmsg_t *m = mh_xmalloc(sizeof(*m) + LWS_PRE + n);
    m->next = NULL;
    m->len = n;
    memcpy(m->data + LWS_PRE, p, n);
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    s->out_bytes += n;
    s->awaiting += awaits_reply != 0;
    if (s->out_bytes > OUT_HIGH && s->input)
        cli_input_pause(s->input);
    lws_callback_on_writable(s->wsi);
}

static void enqueue(sess_t *s, const char *p, size_t n)
{
    enqueue_frame(s, p, n, 1);
}

/* ---- acks and the state file ---- */

static void save_state(sess_t *s)
{
    if (!s->o->state_path || !s->token[0])
        return;
    FILE *f = fopen(s->o->state_path, "w");
    if (!f || fprintf(f, "%s %llu\n", s->token, (unsigned long long)s->acked) < 0)
        fprintf(stderr, "msghub-cli: cannot write %s\n", s->o->state_path);
    if (f)
        fclose(f);
}

static void send_ack(sess_t *s)
{
    uv_timer_stop(&s->ack_timer);
    s->unacked = 0;
    if (s->last_seq <= s->acked || !s->wsi)
        return;
    char frame[64];
    int n = snprintf(frame, sizeof(frame), "{\"type\":\"ack\",\"seq\":%llu}",
                     (unsigned long long)s->last_seq);
    enqueue_frame(s, frame, (size_t)n, 0);
    s->acked = s->last_seq;
    save_state(s);
}

static void on_ack_timer(uv_timer_t *t)
{
    send_ack(t->data);
}

/* A message with seq: 0 when it is new (print it), -1 for a duplicate. */
static int note_seq(sess_t *s, uint64_t seq)
{
    if (!seq)
        return 0;
    if (seq <= s->last_seq)
        return -1;
    s->last_seq = seq;
    if (++s->unacked >= ACK_BATCH)
        send_ack(s);
    else if (!uv_is_active((uv_handle_t *)&s->ack_timer))
        uv_timer_start(&s->ack_timer, on_ack_timer, ACK_DELAY_MS, 0);
    return 0;
}

static void on_line(void *ud, char *line, size_t len)
{
    sess_t *s = ud;
    char err[256];
    mh_buf_t frame;
    mh_buf_init(&frame);
    switch (cli_repl_line(&s->repl, line, len, &frame, err, sizeof(err))) {
    case CLI_CMD_SEND:
        enqueue(s, frame.data, frame.len);
        break;
    case CLI_CMD_HELP:
        print_line(frame.data, frame.len);
        break;
    case CLI_CMD_ERROR:
        fprintf(stderr, "msghub-cli: %s\n", err);
        break;
    case CLI_CMD_QUIT:
        request_close(s);
        break;
    case CLI_CMD_NOTHING:
        break;
    }
    mh_buf_free(&frame);
}

static void on_input_end(void *ud, const char *error)
{
    sess_t *s = ud;
    if (error)
        fprintf(stderr, "msghub-cli: standard input: %s\n", error);
    request_close(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    sess_t *s = h->data;
    if (s->want_close || s->state != S_OPEN)
        stop(s, s->state == S_OPEN || s->state == S_CLOSING ? 0 : 1);
    else
        request_close(s);
}

static void on_connect_deadline(uv_timer_t *t)
{
    sess_t *s = t->data;
    fprintf(stderr, "msghub-cli: no hello from %s within %d s\n", s->o->url_text, s->o->timeout_s);
    stop(s, 1);
}

/* ---- WebSocket ---- */

static void on_hello(sess_t *s)
{
    s->state = S_OPEN;
    s->redials = 0;
    s->exit_code = 0; /* a close before a reconnect does not count */
    uv_timer_stop(&s->timer);
    if (s->input) { /* a reconnect: requests queued meanwhile go out now */
        lws_callback_on_writable(s->wsi);
        return;
    }
    if (isatty(STDIN_FILENO))
        fprintf(stderr, "msghub-cli: connected; type /help for commands, Ctrl-D to leave\n");
    s->input = cli_input_new(&s->loop.uv, STDIN_FILENO, on_line, on_input_end, s);
    if (!s->input)
        request_close(s);
}

static void on_frame(sess_t *s, const char *p, size_t n)
{
    cli_frame_info_t info;
    cli_repl_frame(p, n, &s->line, &info);
    if (info.kind == CLI_IN_MESSAGE && note_seq(s, info.seq))
        return; /* a duplicate by seq */
    int hello = info.kind == CLI_IN_HELLO && s->state == S_CONNECTING;
    if (hello) { /* saved before it is printed: whoever reads the line finds the file */
        snprintf(s->token, sizeof(s->token), "%s", info.token);
        save_state(s);
    }
    print_line(s->line.data, s->line.len);
    if (hello)
        on_hello(s);
    else if (info.kind == CLI_IN_REPLY && s->awaiting)
        s->awaiting--;
    if (s->state == S_CLOSING && !s->awaiting)
        lws_callback_on_writable(s->wsi);
}

static int on_receive(sess_t *s, struct lws *wsi, const void *in, size_t len)
{
    if (lws_frame_is_binary(wsi)) {
        if (lws_is_final_fragment(wsi))
            fprintf(stderr, "msghub-cli: ignored a binary frame from the hub\n");
        return 0;
    }
    if (s->rx.len + len > MAX_INCOMING) {
        fprintf(stderr, "msghub-cli: message from the hub larger than 1 GiB\n");
        return -1;
    }
    mh_buf_append(&s->rx, in, len);
    if (lws_is_final_fragment(wsi)) {
        on_frame(s, s->rx.data, s->rx.len);
        mh_buf_reset(&s->rx);
    }
    return 0;
}

static int on_writeable(sess_t *s, struct lws *wsi)
{
    outmsg_t *m = s->head;
    if (m) {
        s->head = m->next;
        if (!s->head)
            s->tail = NULL;
        s->out_bytes -= m->len;
        int n = lws_write(wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT);
        free(m);
        if (n < 0)
            return -1;
        if (s->head || (s->state == S_CLOSING && !s->awaiting))
            lws_callback_on_writable(wsi); /* more to write, or the close is next */
        else if (s->input && s->out_bytes < OUT_LOW)
            cli_input_resume(s->input);
        return 0;
    }
    if (s->state == S_CLOSING && !s->awaiting && !s->close_sent) {
        s->close_sent = 1;
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1; /* lws sends the close frame and waits for the hub's */
    }
    return 0;
}

static void describe_refusal(sess_t *s, struct lws *wsi, const char *why)
{
    char text[256];
    int status = wsi ? (int)lws_http_client_http_response(wsi) : 0;
    if (why && strstr(why, "unauthorized"))
        status = 401;
    const char *hint = status == 401   ? "unauthorized: bad, expired or missing token"
                       : status == 403 ? "forbidden: origin not allowed"
                       : status == 404 ? "not found: no WebSocket endpoint at this path"
                       : status == 503 ? "unavailable: the hub is full, draining or its "
                                         "backplane is down"
                                       : NULL;
    if (status && hint)
        fprintf(stderr, "msghub-cli: %s refused the connection: HTTP %d %s\n", s->o->url_text,
                status, hint);
    else if (status)
        fprintf(stderr, "msghub-cli: %s refused the connection: HTTP %d\n", s->o->url_text, status);
    else
        fprintf(stderr, "msghub-cli: cannot connect to %s: %s\n", s->o->url_text,
                cli_connect_error(s->o->url->host, why ? why : "connection failed", text,
                                  sizeof(text)));
}

static void on_peer_close(sess_t *s, const unsigned char *in, size_t len)
{
    int code = len >= 2 ? (in[0] << 8 | in[1]) : 1005;
    mh_buf_reset(&s->line);
    mh_buf_printf(&s->line, "closed %d", code);
    if (len > 2) {
        mh_buf_puts(&s->line, " ");
        cli_repl_one_line(&s->line, (const char *)in + 2, len - 2);
    }
    print_line(s->line.data, s->line.len);
    s->peer_closed = 1;
    s->close_code = code;
    if (!s->close_sent)
        s->exit_code = code == 1000 ? 0 : 1;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    sess_t *s = lws_context_user(lws_get_context(wsi));
    if (!s)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        int status = wsi ? (int)lws_http_client_http_response(wsi) : 0;
        if (s->state != S_DONE)
            describe_refusal(s, wsi, in);
        s->wsi = NULL;
        /* a 4xx refusal (bad token, bad since) would be refused again */
        if (s->state == S_DONE || (status >= 400 && status < 500) || !redial(s, 0))
            stop(s, 1);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        s->wsi = wsi;
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return s->state == S_DONE ? -1 : on_receive(s, wsi, in, len);
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return s->state == S_DONE ? 0 : on_writeable(s, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (!s->close_sent)
            on_peer_close(s, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (s->wsi == wsi)
            s->wsi = NULL;
        if (s->state == S_DONE)
            return 0;
        if (!s->close_sent && !s->peer_closed) {
            static const char lost[] = "closed 1006 connection lost";
            print_line(lost, sizeof(lost) - 1);
            s->exit_code = 1;
            s->close_code = 1006;
        }
        if (!s->close_sent && redial(s, s->close_code))
            return 0;
        stop(s, s->close_sent ? 0 : s->exit_code);
        return 0;
    default:
        return 0;
    }
}

/* ---- lifecycle ---- */

static void on_stop(cli_loop_t *l)
{
    sess_t *s = l->user;
    cli_input_close(s->input);
    s->input = NULL;
    uv_close((uv_handle_t *)&s->timer, NULL);
    uv_close((uv_handle_t *)&s->ack_timer, NULL);
    uv_close((uv_handle_t *)&s->redial_timer, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

/* /ws with the session's token and, once something was received, since. */
static void build_path(sess_t *s)
{
    mh_buf_reset(&s->path);
    mh_buf_puts(&s->path, s->o->url->prefix);
    mh_buf_puts(&s->path, "/ws");
    if (s->token[0]) {
        mh_buf_puts(&s->path, "?token=");
        cli_query_escape(&s->path, s->token);
        if (s->last_seq) {
            mh_buf_puts(&s->path, "&since=");
            mh_buf_u64(&s->path, s->last_seq);
        }
    }
}

static void dial(sess_t *s)
{
    const cli_connect_opts_t *o = s->o;
    build_path(s);
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof(ci));
    ci.context = s->loop.lws;
    ci.address = o->url->host;
    ci.port = o->url->port;
    ci.path = s->path.data;
    ci.host = o->url->authority;
    ci.ietf_version_or_minus_one = -1;
    ci.pwsi = &s->wsi;
    uv_timer_start(&s->timer, on_connect_deadline, (uint64_t)o->timeout_s * 1000u, 0);
    if (!lws_client_connect_via_info(&ci) && s->state != S_DONE && !redial(s, 0)) {
        char why[256];
        fprintf(stderr, "msghub-cli: cannot connect to %s: %s\n", o->url_text,
                cli_connect_error(o->url->host, NULL, why, sizeof(why)));
        stop(s, 1);
    }
}

static void on_redial(uv_timer_t *t)
{
    dial(t->data);
}

/*
 * --reconnect: after a connection lost or closed by the hub (not 4409, not a
 * refusal with an HTTP 4xx), dial again with the token and since, with
 * exponential backoff and jitter. Returns 1 when a redial was scheduled.
 */
static int redial(sess_t *s, int code)
{
    if (!s->o->reconnect || s->want_close || s->state == S_DONE || code == 4409 || code == 1000 ||
        !s->token[0])
        return 0;
    uint64_t ms = REDIAL_MIN_MS << (s->redials < 5 ? s->redials : 5);
    ms = ms > REDIAL_MAX_MS ? REDIAL_MAX_MS : ms;
    ms = ms * (80 + (uint64_t)(rand() % 41)) / 100; /* +-20 % */
    s->redials++;
    s->state = S_CONNECTING;
    s->wsi = NULL;
    s->close_sent = s->peer_closed = 0;
    uv_timer_stop(&s->timer);
    uv_timer_start(&s->redial_timer, on_redial, ms, 0);
    fprintf(stderr, "msghub-cli: reconnecting in %llu ms (since=%llu)\n", (unsigned long long)ms,
            (unsigned long long)s->last_seq);
    return 1;
}

int cli_connect_run(const cli_connect_opts_t *o)
{
    static const struct lws_protocols protocols[] = {
        {"msghub-cli", callback, 0, RX_CHUNK, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    sess_t *s = mh_xcalloc(1, sizeof(*s));
    s->o = o;
    s->state = S_CONNECTING;
    mh_buf_init(&s->rx);
    mh_buf_init(&s->line);
    mh_buf_init(&s->path);
    cli_repl_init(&s->repl);
    int rc = 1;
    if (cli_loop_init(&s->loop, protocols, s, o->verbose))
        goto out;
    s->loop.on_stop = on_stop;
    uv_timer_init(&s->loop.uv, &s->timer);
    uv_timer_init(&s->loop.uv, &s->ack_timer);
    uv_timer_init(&s->loop.uv, &s->redial_timer);
    s->ack_timer.data = s->redial_timer.data = s;
    s->last_seq = s->acked = o->since;
    if (o->token)
        snprintf(s->token, sizeof(s->token), "%s", o->token);
    uv_signal_init(&s->loop.uv, &s->sigint);
    uv_signal_init(&s->loop.uv, &s->sigterm);
    s->timer.data = s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    dial(s);
    cli_loop_run(&s->loop);
    rc = s->exit_code;
out:
    while (s->head) {
        outmsg_t *m = s->head;
        s->head = m->next;
        free(m);
    }
    mh_buf_free(&s->path);
    mh_buf_free(&s->rx);
    mh_buf_free(&s->line);
    cli_repl_free(&s->repl);
    free(s);
    return rc;
}
