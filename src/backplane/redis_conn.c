/*
 * redis_conn: the Redis connection and request plumbing of distributed mode
 * (contract and ownership in redis_conn.h; the keys and the operations are
 * redis_store's).
 *
 * One hiredis async context at a time hangs off the connection, attached to
 * the hub's uv loop with hiredis' libuv adapter. The connection is in one of
 * three phases: waiting (no context; the retry timer holds the backoff
 * delay), connecting (context made, AUTH / SELECT / PING queued; the same
 * timer is the connect deadline) and up (PING answered). User commands are
 * sent only while up.
 *
 * Every command a request pipelines carries it as privdata, and hiredis
 * calls each command's callback exactly once (with a NULL reply when the
 * connection drops or the context is freed), so the last reply completes
 * the request and calls its finish hook. A request that sent nothing
 * (connection down) is completed from an idle handle on the next loop turn,
 * or at once while the connection is being freed. What the store does with
 * the answers, and any retrying of failed commands, is not here.
 */
#include "redis_conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>
#include <uv.h>

#include "msghub/backoff.h"
#include "msghub/log.h"

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
#define CONNECT_TIMEOUT_MS 5000u
/* a connection that answers nothing for this long while commands wait is dropped */
#define STALL_MS 5000u
#define WATCHDOG_MS 1000u
#define TCP_USER_TIMEOUT_MS 15000u

typedef mh_redis_conn_req_t req_t;

/*
 * hiredis 0.14's libuv adapter ignores a poll callback with an error status,
 * but on POLLERR (a refused connect, a reset) uv_poll reports UV_EBADF and
 * stops watching: the connection would hang. These hooks replace the
 * adapter's four event hooks (its attach and cleanup stay; they rely on its
 * redisLibuvEvents of 0.14: context, handle, events) and hand an error to
 * hiredis as the events it was waiting for, which then reads or writes,
 * sees the socket error and disconnects. hiredis >= 1.0's adapter does the
 * same itself, so there the adapter is used as it is; an older hiredis
 * than 0.14 is not known to us.
 */
#if HIREDIS_MAJOR == 0 && HIREDIS_MINOR == 14
#define OWN_POLL_HOOKS 1
#define OWN_REPLY_FNS 1 /* see reply_string() */
#elif HIREDIS_MAJOR >= 1
#define OWN_POLL_HOOKS 0
#define OWN_REPLY_FNS 0
#else
#error "hiredis older than 0.14: check how its libuv adapter treats a poll error"
#endif

struct mh_redis_conn {
    uv_loop_t *loop;
    redisAsyncContext *ac; /* NULL while waiting */
    uv_timer_t retry;      /* backoff delay, then connect deadline */
    uv_idle_t idle;        /* completes deferred requests, flushes held ones */
    uv_prepare_t flush;    /* writes the turn's commands just before the loop polls */
    int write_due;         /* commands wait for the flush handle, POLLOUT not armed */
    int flushing;          /* inside the flush handle's write: a partial write arms POLLOUT */
    req_t *dq_head, *dq_tail;
    req_t *held; /* held requests, flushed from the idle handle */
    char *host, *user, *password;
    int port, db;
    int up;       /* handshake done: commands are sent */
    int reported; /* the last state given to on_state */
    int closing;
    int handles;          /* uv handles not closed yet */
    mh_backoff_t backoff; /* reconnection delays since the last handshake */
    unsigned generation;  /* handshakes completed */
    size_t inflight;      /* commands sent, replies not yet read */
    uint64_t progress_ms; /* loop time (uv_now) of the last reply, or when inflight left 0 */
    char err[160];        /* last connection error, for the log */
    char hs_err[160];     /* first error reply of the handshake */
    mh_redis_conn_state_fn on_state;
    void *ud;
    mh_redis_conn_freed_fn on_freed;
    void *freed_arg;
#if OWN_REPLY_FNS
    redisReplyObjectFunctions reply_fns; /* the reader's: hiredis' own but for QUEUED */
    void *(*plain_string)(const redisReadTask *, char *, size_t); /* hiredis' createString */
#endif
};

/* ---- URL ---- */

/* Copy of s[0..n) with %XX decoded (a malformed escape stays as is). */
static char *decode(const char *s, size_t n)
{
    char *out = mh_xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        int hi = i + 2 < n && s[i] == '%' ? mh_hexval(s[i + 1]) : -1;
        int lo = hi >= 0 ? mh_hexval(s[i + 2]) : -1;
        if (lo >= 0) {
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

/* Decimal in [s, end) of at least one digit, at most max. */
static int parse_num(const char *s, const char *end, long max, int *out)
{
    long v = 0;
    if (s == end)
        return -1;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9' || (v = v * 10 + (*s - '0')) > max)
            return -1;
    }
    *out = (int)v;
    return 0;
}

static const char *parse_userinfo(mh_redis_conn_t *conn, const char *p, const char *at)
{
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (!colon)
        return "expected [user]:password@ before the host";
    if (colon > p)
        conn->user = decode(p, (size_t)(colon - p));
    if (at > colon + 1)
        conn->password = decode(colon + 1, (size_t)(at - colon - 1));
    return NULL;
}

/* host[:port][/db] or [v6]:port...: returns an error text or NULL. */
static const char *parse_hostpart(mh_redis_conn_t *conn, const char *p)
{
    const char *h = p, *e;
    if (*p == '[') {
        if (!(e = strchr(++h, ']')))
            return "unclosed [ in the host";
        p = e + 1;
    } else {
        e = p + strcspn(p, ":/?#");
        p = e;
    }
    if (e == h)
        return "no host";
    conn->host = decode(h, (size_t)(e - h));
    conn->port = 6379;
    if (*p == ':') {
        e = p + 1 + strcspn(p + 1, "/");
        if (parse_num(p + 1, e, 65535, &conn->port) || conn->port == 0)
            return "bad port";
        p = e;
    }
    if (*p == '/' && p[1] && parse_num(p + 1, p + strlen(p), 0x7fffffffL, &conn->db))
        return "bad database number";
    if (*p && *p != '/')
        return "unexpected text after the host";
    return NULL;
}

static const char *parse_url(mh_redis_conn_t *conn, const char *url)
{
    static const char scheme[] = "redis://";
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return "expected redis://";
    const char *p = url + sizeof(scheme) - 1;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *why = parse_userinfo(conn, p, at);
        if (why)
            return why;
        p = at + 1;
    }
    return parse_hostpart(conn, p);
}

/* ---- lifetime and small helpers ---- */

static void conn_destroy(mh_redis_conn_t *conn)
{
    free(conn->host);
    free(conn->user);
    free(conn->password);
    free(conn);
}

static void on_handle_closed(uv_handle_t *h)
{
    mh_redis_conn_t *conn = h->data;
    if (--conn->handles > 0)
        return;
    mh_redis_conn_freed_fn on_freed = conn->on_freed;
    void *arg = conn->freed_arg;
    conn_destroy(conn);
    if (on_freed)
        on_freed(arg);
}

/* Copies s into dst for a logfmt value in quotes: no quotes, no control bytes. */
static void copy_err(char *dst, size_t cap, const char *s, size_t n)
{
    size_t i = 0;
    for (; s && i < n && i + 1 < cap && s[i]; i++)
        dst[i] = s[i] == '"' ? '\'' : (unsigned char)s[i] < 0x20 ? ' ' : s[i];
    dst[i] = '\0';
}

static void set_err(mh_redis_conn_t *conn, const char *s)
{
    copy_err(conn->err, sizeof(conn->err), s ? s : "unknown error", SIZE_MAX);
}

/* ---- requests ---- */

void *mh_redis_conn_req_new(mh_redis_conn_t *conn, const mh_redis_conn_req_ops_t *ops, size_t size)
{
    req_t *q = mh_xcalloc(1, size);
    q->conn = conn;
    q->ops = ops;
    return q;
}

static void complete(req_t *q, const redisReply *last)
{
    q->ops->finish(q, q->status ? NULL : last);
    free(q);
}

static req_t *dq_pop(mh_redis_conn_t *conn)
{
    req_t *q = conn->dq_head;
    if (q && !(conn->dq_head = q->next))
        conn->dq_tail = NULL;
    return q;
}

static void on_idle(uv_idle_t *h);

/* Flushes the requests held so far; those held by the flush hooks wait a turn. */
static void flush_held(mh_redis_conn_t *conn)
{
    req_t *q = conn->held;
    conn->held = NULL;
    while (q) {
        req_t *next = q->next;
        q->next = NULL;
        q->flush(q);
        q = next;
    }
}

void mh_redis_conn_hold(mh_redis_conn_req_t *q, mh_redis_conn_flush_fn flush)
{
    mh_redis_conn_t *conn = q->conn;
    q->flush = flush;
    if (conn->closing) {
        flush(q);
        return;
    }
    req_t **p = &conn->held; /* in order: a list of one or two */
    while (*p)
        p = &(*p)->next;
    q->next = NULL;
    *p = q;
    uv_idle_start(&conn->idle, on_idle);
}

void mh_redis_conn_release(mh_redis_conn_req_t *q)
{
    req_t **p = &q->conn->held;
    while (*p && *p != q)
        p = &(*p)->next;
    if (!*p)
        return;
    *p = q->next;
    q->next = NULL;
    q->flush(q);
}

static void on_idle(uv_idle_t *h)
{
    mh_redis_conn_t *conn = h->data;
    req_t *last = conn->dq_tail; /* requests deferred from these callbacks wait a turn */
    req_t *q;
    int more = last != NULL;
    while (more && (q = dq_pop(conn))) {
        more = q != last;
        complete(q, NULL);
    }
    flush_held(conn);
    if (!conn->dq_head && !conn->held && !conn->closing)
        uv_idle_stop(h);
}

/* Completes a request that sent nothing: next loop turn, or now while closing. */
static void defer(req_t *q)
{
    mh_redis_conn_t *conn = q->conn;
    if (conn->closing) {
        complete(q, NULL);
        return;
    }
    q->next = NULL;
    if (conn->dq_tail)
        conn->dq_tail->next = q;
    else
        conn->dq_head = q;
    conn->dq_tail = q;
    uv_idle_start(&conn->idle, on_idle);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    req_t *q = priv;
    const redisReply *r = reply;
    size_t idx = q->seen++;
    if (r && q->conn->inflight) {
        q->conn->inflight--;
        q->conn->progress_ms = uv_now(q->conn->loop);
    }
    if (!r) {
        q->conn->up = 0; /* the context is going: refuse commands from the callbacks */
        q->status = MH_EIO;
        q->lost++;
    } else if (r->type == REDIS_REPLY_ERROR && !q->status && q->on_error &&
               q->on_error(q, idx, r)) {
        /* handled by the request, which may have sent a replacement */
    } else if (r->type == REDIS_REPLY_ERROR) {
        char msg[160];
        copy_err(msg, sizeof(msg), r->str, r->len);
        if (!q->status)
            mh_warn("redis_error", "op=%s err=\"%s\"", q->ops->name, msg);
        q->status = MH_EIO;
    } else if (!q->status && q->ops->each) {
        q->ops->each(q, idx, r);
    }
    if (--q->pending == 0)
        complete(q, r);
}

void mh_redis_conn_submit(mh_redis_conn_req_t *q)
{
    if (q->pending)
        return;
    if (!q->status && !q->conn->up)
        q->status = MH_EIO;
    defer(q);
}

void mh_redis_conn_bad_reply(mh_redis_conn_req_t *q, const redisReply *r)
{
    mh_warn("redis_bad_reply", "op=%s type=%d", q->ops->name, r ? r->type : -1);
    q->status = MH_EIO;
}

/* ---- sending ---- */

static void sent(req_t *q, int rc)
{
    if (rc != REDIS_OK) {
        q->status = MH_EIO;
        return;
    }
    q->pending++;
    if (q->conn->inflight++ == 0)
        q->conn->progress_ms = uv_now(q->conn->loop);
}

void mh_redis_conn_send(mh_redis_conn_req_t *q, const char *fmt, ...)
{
    va_list ap;
    if (q->status || !q->conn->up)
        return;
    va_start(ap, fmt);
    sent(q, redisvAsyncCommand(q->conn->ac, on_reply, q, fmt, ap));
    va_end(ap);
}

/* The RESP header "*<argc>\r\n" goes in front of the arguments at _send, into this room. */
#define CMD_HEAD_ROOM 24u
#define CMD_ARG_GUESS 24u /* bytes per argument reserved at _init */
#define BULK_FRAME 25u    /* around an argument: "$", its length's up to 20 digits, two CRLFs */

static size_t dec_digits(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* v in decimal at p; the end. */
static char *put_u64(char *p, uint64_t v)
{
    char *end = p + dec_digits(v), *q = end;
    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* Room for an argument of n bytes and its "$<n>\r\n" written: where its bytes go. */
static char *bulk_begin(mh_redis_conn_cmd_t *c, size_t n)
{
    mh_buf_reserve(&c->resp, n + BULK_FRAME);
    char *p = c->resp.data + c->resp.len;
    *p++ = '$';
    p = put_u64(p, n);
    *p++ = '\r';
    *p++ = '\n';
    c->argc++;
    return p;
}

/* The argument's bytes end at p: its CRLF. */
static void bulk_end(mh_redis_conn_cmd_t *c, char *p)
{
    *p++ = '\r';
    *p++ = '\n';
    *p = '\0'; /* mh_buf's terminator; bulk_begin reserved room for it */
    c->resp.len = (size_t)(p - c->resp.data);
}

void mh_redis_conn_cmd_reset(mh_redis_conn_cmd_t *c, size_t nargs, const char *verb)
{
    c->argc = 0;
    c->resp.len = CMD_HEAD_ROOM;
    mh_buf_reserve(&c->resp, nargs * CMD_ARG_GUESS);
    mh_redis_conn_cmd_bin(c, verb, strlen(verb));
}

void mh_redis_conn_cmd_init(mh_redis_conn_cmd_t *c, size_t nargs, const char *verb)
{
    mh_buf_init(&c->resp);
    mh_redis_conn_cmd_reset(c, nargs, verb);
}

void mh_redis_conn_cmd_free(mh_redis_conn_cmd_t *c)
{
    mh_buf_free(&c->resp);
}

void mh_redis_conn_cmd_bin(mh_redis_conn_cmd_t *c, const void *p, size_t n)
{
    char *at = bulk_begin(c, n);
    if (n)
        memcpy(at, p, n);
    bulk_end(c, at + n);
}

void mh_redis_conn_cmd_fmt(mh_redis_conn_cmd_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    size_t len = n > 0 ? (size_t)n : 0;
    char *at = bulk_begin(c, len); /* room for vsnprintf's NUL, overwritten by the CRLF */
    va_start(ap, fmt);
    vsnprintf(at, len + 1, fmt, ap);
    va_end(ap);
    bulk_end(c, at + len);
}

void mh_redis_conn_cmd_u64(mh_redis_conn_cmd_t *c, const char *prefix, uint64_t v)
{
    size_t plen = strlen(prefix);
    char *at = bulk_begin(c, plen + dec_digits(v));
    memcpy(at, prefix, plen);
    bulk_end(c, put_u64(at + plen, v));
}

void mh_redis_conn_cmd_queue(mh_redis_conn_req_t *q, mh_redis_conn_cmd_t *c)
{
    if (q->status || !q->conn->up)
        return;
    /* RESP by hand, as the arguments came: hiredis' own formatting (sdscatfmt per
       argument) cost a tenth of the hub's CPU in a distributed saturation profile */
    char *start = c->resp.data + CMD_HEAD_ROOM;
    *--start = '\n';
    *--start = '\r';
    uint64_t v = (uint64_t)c->argc;
    do {
        *--start = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    *--start = '*';
    size_t len = c->resp.len - (size_t)(start - c->resp.data);
    sent(q, redisAsyncFormattedCommand(q->conn->ac, on_reply, q, start, len));
}

void mh_redis_conn_cmd_send(mh_redis_conn_req_t *q, mh_redis_conn_cmd_t *c)
{
    mh_redis_conn_cmd_queue(q, c);
    mh_redis_conn_cmd_free(c);
}

/* ---- connection ---- */

#if OWN_POLL_HOOKS
static void on_poll(uv_poll_t *h, int status, int events)
{
    redisLibuvEvents *p = h->data;
    int ev = status ? p->events : events;
    if (p->context && (ev & UV_READABLE))
        redisAsyncHandleRead(p->context);
    if (p->context && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
}

/*
 * hiredis asks for writes once per queued command; libuv 1.44's
 * uv_poll_start() removes the fd from epoll each time it is called (one
 * EPOLL_CTL_DEL, then an ADD on the next poll), so a call that changes
 * nothing is skipped: about 91,000 epoll_ctl a second on one distributed hub
 * before (docs/BENCHMARKS.md).
 */
static void poll_update(redisLibuvEvents *p, int events)
{
    if (events == p->events && uv_is_active((uv_handle_t *)&p->handle))
        return;
    p->events = events;
    if (events)
        uv_poll_start(&p->handle, events, on_poll);
    else
        uv_poll_stop(&p->handle);
}

static void ev_add_read(void *priv)
{
    redisLibuvEvents *p = priv;
    poll_update(p, p->events | UV_READABLE);
}

static void ev_del_read(void *priv)
{
    redisLibuvEvents *p = priv;
    poll_update(p, p->events & ~UV_READABLE);
}

/* The connection whose current context these hooks serve, or NULL. */
static mh_redis_conn_t *hooks_conn(const redisLibuvEvents *p)
{
    redisAsyncContext *ac = p->context;
    mh_redis_conn_t *conn = ac ? ac->data : NULL;
    return conn && conn->ac == ac ? conn : NULL;
}

/*
 * A write request on an established connection is not armed as POLLOUT:
 * the flush handle (a uv_prepare_t, run just before the loop polls) writes
 * the turn's commands at once, and only a write the socket did not take
 * whole (or one while connecting) waits for POLLOUT. Arming and disarming
 * POLLOUT cost four epoll_ctl and a loop turn per batch of commands.
 */
static void ev_add_write(void *priv)
{
    redisLibuvEvents *p = priv;
    mh_redis_conn_t *conn = hooks_conn(p);
    if (conn && !conn->flushing && (p->context->c.flags & REDIS_CONNECTED) &&
        !(p->events & UV_WRITABLE)) {
        conn->write_due = 1;
        return;
    }
    poll_update(p, p->events | UV_WRITABLE);
}

static void ev_del_write(void *priv)
{
    redisLibuvEvents *p = priv;
    mh_redis_conn_t *conn = hooks_conn(p);
    if (conn)
        conn->write_due = 0;
    poll_update(p, p->events & ~UV_WRITABLE);
}

/*
 * The flush handle: started with the connection and never stopped. libuv
 * runs the most recently started prepare handle first, so every prepare
 * handle started later runs before it in a turn and its commands go in
 * this turn's write: pubbatch's (restarted each turn) and the server's
 * before-poll handle (session writes, which may ask the log for its next
 * page; run_loop starts it after mh_cluster_start has made the store's
 * connections). A command queued after the flush waits for the poll to
 * return: a delay, never a loss. Only hiredis 0.14's hooks (above) leave
 * writes to it; with hiredis >= 1.0 the handle is made but not started.
 */
static void on_flush(uv_prepare_t *h)
{
    mh_redis_conn_t *conn = h->data;
    if (!conn->write_due)
        return;
    conn->write_due = 0;
    if (!conn->ac || !(conn->ac->c.flags & REDIS_CONNECTED))
        return; /* hiredis would take a connect in progress for done */
    conn->flushing = 1;
    redisAsyncHandleWrite(conn->ac); /* may drop the context: on_disconnect */
    conn->flushing = 0;
}
#endif

#if OWN_REPLY_FNS
/*
 * A MULTI/EXEC batch gets one "+QUEUED" per command before EXEC's answer:
 * hiredis 0.14 allocates a reply object and a copy of its text for each
 * (two mallocs and two frees per command). The reader's object functions
 * are hiredis' own (copied from the reader at attach) except that a
 * top-level QUEUED status is this one constant, which freeObject skips.
 * Nothing else frees replies here: hiredis frees every reply it hands to a
 * callback through the reader's freeObject.
 */
static const redisReply queued_reply = {
    .type = REDIS_REPLY_STATUS, .len = 6, .str = (char *)"QUEUED"};

static void *reply_string(const redisReadTask *t, char *s, size_t n)
{
    const redisReadTask *root = t;
    while (root->parent)
        root = root->parent;
    const mh_redis_conn_t *conn = root->privdata; /* the reader's, on its first task */
    if (t == root && t->type == REDIS_REPLY_STATUS && n == queued_reply.len &&
        memcmp(s, queued_reply.str, n) == 0)
        return (void *)&queued_reply;
    return conn->plain_string(t, s, n);
}

static void reply_free(void *reply)
{
    if (reply != &queued_reply)
        freeReplyObject(reply);
}

static void use_reply_fns(mh_redis_conn_t *conn, redisReader *reader)
{
    conn->reply_fns = *reader->fn;
    conn->plain_string = reader->fn->createString;
    conn->reply_fns.createString = reply_string;
    conn->reply_fns.freeObject = reply_free;
    reader->fn = &conn->reply_fns;
    reader->privdata = conn;
}
#endif

static int attach(redisAsyncContext *ac, mh_redis_conn_t *conn)
{
    if (redisLibuvAttach(ac, conn->loop) != REDIS_OK)
        return -1;
#if OWN_POLL_HOOKS
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
#endif
#if OWN_REPLY_FNS
    use_reply_fns(conn, ac->c.reader);
#endif
    return 0;
}

static void conn_start(mh_redis_conn_t *conn);

static void on_retry_timer(uv_timer_t *t);

static void schedule_retry(mh_redis_conn_t *conn)
{
    unsigned delay = mh_backoff_next(&conn->backoff);
    if (conn->backoff.attempts == 1)
        mh_warn("redis_down", "addr=%s:%d err=\"%s\" retry_ms=%u", conn->host, conn->port,
                conn->err, delay);
    else
        mh_debug("redis_retry", "addr=%s:%d err=\"%s\" attempt=%u retry_ms=%u", conn->host,
                 conn->port, conn->err, conn->backoff.attempts, delay);
    uv_timer_start(&conn->retry, on_retry_timer, delay, 0);
}

static void on_watchdog(uv_timer_t *t);

static void become_up(mh_redis_conn_t *conn)
{
    conn->up = 1;
    conn->generation++;
    mh_backoff_reset(&conn->backoff);
    conn->inflight = 0;
    uv_timer_start(&conn->retry, on_watchdog, WATCHDOG_MS, WATCHDOG_MS);
    mh_info("redis_up", "addr=%s:%d db=%d", conn->host, conn->port, conn->db);
    if (!conn->reported) {
        conn->reported = 1;
        if (conn->on_state)
            conn->on_state(conn->ud, 1);
    }
}

static void on_hs_step(redisAsyncContext *ac, void *reply, void *priv)
{
    mh_redis_conn_t *conn = priv;
    const redisReply *r = reply;
    if (r && conn->ac == ac && r->type == REDIS_REPLY_ERROR && !conn->hs_err[0])
        copy_err(conn->hs_err, sizeof(conn->hs_err), r->str, r->len);
}

/* The PING after AUTH / SELECT: the connection is usable unless one failed. */
static void on_hs_done(redisAsyncContext *ac, void *reply, void *priv)
{
    mh_redis_conn_t *conn = priv;
    if (!reply || conn->ac != ac)
        return; /* this attempt was given up */
    on_hs_step(ac, reply, priv);
    if (conn->hs_err[0]) {
        set_err(conn, conn->hs_err);
        redisAsyncDisconnect(ac); /* done by hiredis after we return; on_disconnect retries */
        return;
    }
    become_up(conn);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    mh_redis_conn_t *conn = ac->data;
    if (status == REDIS_OK || conn->closing || conn->ac != ac)
        return;
    conn->ac = NULL; /* hiredis frees it when we return */
    set_err(conn, ac->errstr);
    schedule_retry(conn);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    mh_redis_conn_t *conn = ac->data;
    if (conn->closing || conn->ac != ac)
        return;
    conn->ac = NULL; /* gone when we return */
    conn->up = 0;
    if (status != REDIS_OK)
        set_err(conn, ac->errstr);
    schedule_retry(conn);
    if (conn->reported) {
        conn->reported = 0;
        if (conn->on_state)
            conn->on_state(conn->ud, 0);
    }
}

static void send_handshake(mh_redis_conn_t *conn)
{
    conn->hs_err[0] = '\0';
    if (conn->password && conn->user)
        redisAsyncCommand(conn->ac, on_hs_step, conn, "AUTH %s %s", conn->user, conn->password);
    else if (conn->password)
        redisAsyncCommand(conn->ac, on_hs_step, conn, "AUTH %s", conn->password);
    if (conn->db)
        redisAsyncCommand(conn->ac, on_hs_step, conn, "SELECT %d", conn->db);
    redisAsyncCommand(conn->ac, on_hs_done, conn, "PING");
}

/*
 * Keepalive notices an idle connection to a vanished host; the user timeout
 * drops one whose commands stay unacknowledged (partition, dead node), so
 * pending callbacks fail within seconds instead of TCP's ~15 minutes.
 */
static void tune_socket(redisAsyncContext *ac)
{
    redisEnableKeepAlive(&ac->c);
#ifdef TCP_USER_TIMEOUT
    unsigned ms = TCP_USER_TIMEOUT_MS;
    setsockopt(ac->c.fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
#endif
}

static void conn_start(mh_redis_conn_t *conn)
{
    redisAsyncContext *ac = redisAsyncConnect(conn->host, conn->port);
    if (!ac || ac->err || attach(ac, conn)) {
        set_err(conn, ac && ac->err ? ac->errstr : "cannot set up the connection");
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(conn);
        return;
    }
    ac->data = conn;
    conn->ac = ac;
    tune_socket(ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    send_handshake(conn);
    uv_timer_start(&conn->retry, on_retry_timer, CONNECT_TIMEOUT_MS, 0);
}

/*
 * While up, the retry timer watches for a server that stopped answering (a
 * hung or SIGSTOPped Redis keeps the TCP connection open): commands would
 * wait forever. Dropping the connection fails them with MH_EIO, reports the
 * store down, and reconnects with backoff.
 */
static void on_watchdog(uv_timer_t *t)
{
    mh_redis_conn_t *conn = t->data;
    if (!conn->up || !conn->ac || !conn->inflight ||
        uv_now(conn->loop) - conn->progress_ms < STALL_MS)
        return;
    redisAsyncContext *ac = conn->ac;
    conn->ac = NULL; /* on_disconnect ignores a context that is no longer ours */
    conn->up = 0;
    conn->inflight = 0;
    set_err(conn, "no reply for 5 s");
    redisAsyncFree(ac); /* pending callbacks get NULL: MH_EIO */
    schedule_retry(conn);
    if (conn->reported) {
        conn->reported = 0;
        if (conn->on_state)
            conn->on_state(conn->ud, 0);
    }
}

static void on_retry_timer(uv_timer_t *t)
{
    mh_redis_conn_t *conn = t->data;
    if (!conn->ac) {
        conn_start(conn);
        return;
    }
    redisAsyncContext *ac = conn->ac; /* connecting took too long: give it up */
    conn->ac = NULL;
    set_err(conn, "connect timeout");
    redisAsyncFree(ac);
    schedule_retry(conn);
}

/* ---- lifetime ---- */

mh_redis_conn_t *mh_redis_conn_new(struct uv_loop_s *loop, const char *url,
                                   mh_redis_conn_state_fn on_state, void *ud, char *err,
                                   size_t errlen)
{
    mh_redis_conn_t *conn = mh_xcalloc(1, sizeof(*conn));
    const char *why = !loop || !url ? "missing argument" : parse_url(conn, url);
    if (why) {
        if (err && errlen)
            snprintf(err, errlen, "bad redis url: %s", why);
        conn_destroy(conn);
        return NULL;
    }
    conn->loop = loop;
    conn->on_state = on_state;
    conn->ud = ud;
    mh_backoff_init(&conn->backoff, BACKOFF_MIN_MS, BACKOFF_MAX_MS,
                    (mh_mono_us() ^ (uint64_t)(uintptr_t)conn ^ ((uint64_t)getpid() << 32)) | 1u);
    uv_timer_init(loop, &conn->retry);
    uv_idle_init(loop, &conn->idle);
    uv_prepare_init(loop, &conn->flush);
#if OWN_POLL_HOOKS
    uv_prepare_start(&conn->flush, on_flush);
#endif
    uv_unref((uv_handle_t *)&conn->flush); /* it alone does not keep the loop running */
    conn->retry.data = conn->idle.data = conn->flush.data = conn;
    conn->handles = 3;
    conn_start(conn);
    return conn;
}

void mh_redis_conn_free(mh_redis_conn_t *conn, mh_redis_conn_freed_fn on_freed, void *arg)
{
    if (!conn || conn->closing)
        return;
    conn->closing = 1;
    conn->up = 0;
    conn->on_freed = on_freed;
    conn->freed_arg = arg;
    uv_timer_stop(&conn->retry);
    if (conn->ac) {
        redisAsyncContext *ac = conn->ac;
        conn->ac = NULL;
        /* Pending callbacks get NULL replies now, or, inside a hiredis
         * callback, as soon as it returns (hiredis defers the free). */
        redisAsyncFree(ac);
    }
    flush_held(conn); /* they send nothing now: each completes at once */
    req_t *q;
    while ((q = dq_pop(conn)))
        complete(q, NULL);
    uv_close((uv_handle_t *)&conn->retry, on_handle_closed);
    uv_close((uv_handle_t *)&conn->idle, on_handle_closed);
    uv_close((uv_handle_t *)&conn->flush, on_handle_closed);
}

int mh_redis_conn_up(const mh_redis_conn_t *conn)
{
    return conn && conn->up;
}

unsigned mh_redis_conn_generation(const mh_redis_conn_t *conn)
{
    return conn ? conn->generation : 0;
}
