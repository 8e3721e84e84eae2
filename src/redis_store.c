/*
 * redis_store: the Redis side of distributed mode (contract, key layout and
 * callback rules in redis_store.h).
 *
 * One hiredis async context at a time hangs off the store, attached to the
 * hub's uv loop with hiredis' libuv adapter. The connection is in one of
 * three phases: waiting (no context; the retry timer holds the backoff
 * delay), connecting (context made, AUTH / SELECT / PING queued; the same
 * timer is the connect deadline) and up (PING answered). User commands are
 * sent only while up.
 *
 * An operation is a req_t: every command it pipelines carries it as
 * privdata, and hiredis calls each command's callback exactly once (with a
 * NULL reply when the connection drops or the context is freed), so the
 * last reply completes the request and calls the user's callback. A request
 * that sent nothing (store down) is completed from an idle handle on the
 * next loop turn, or at once while the store is being freed.
 *
 * Ownership: the store owns its context, its two uv handles and its
 * requests; the memory goes when both handles are closed, after
 * mh_redis_store_free() once the loop runs again. What the hub does with
 * the answers, and any retrying of failed commands, is not here.
 */
#include "msghub/redis_store.h"

#include <inttypes.h>
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

#include "msghub/log.h"

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
#define CONNECT_TIMEOUT_MS 5000u
#define TCP_USER_TIMEOUT_MS 15000u
#define REFRESH_CHUNK 512 /* ids per EVAL: keeps each script run short */
#define NO_OFF ((size_t)-1)

typedef struct req req_t;

typedef struct req_ops {
    const char *name; /* for the log */
    /* Reads reply idx of the pipeline (not an error reply); may set status. */
    void (*each)(req_t *q, size_t idx, const redisReply *r);
    /* Calls the user's callback; last: the final reply, NULL on failure or if nothing was sent. */
    void (*finish)(req_t *q, const redisReply *last);
} req_ops_t;

struct req {
    mh_redis_store_t *rs;
    const req_ops_t *ops;
    req_t *next; /* in the deferred list */
    union {
        mh_redis_u64_cb u64;
        mh_redis_status_cb status;
        mh_redis_routes_cb routes;
        mh_redis_claim_cb claim;
        mh_redis_ids_cb ids;
        mh_redis_frames_cb frames;
    } cb;
    void *ud;
    int status;
    unsigned pending; /* commands sent and not answered */
    unsigned seen;    /* replies received */
    uint64_t val;     /* scalar result */
    uint64_t max;     /* inbox cap of a push */
    size_t n;         /* ids of a lookup */
    char *str;        /* previous holder of a claim */
};

struct mh_redis_store {
    uv_loop_t *loop;
    redisAsyncContext *ac; /* NULL while waiting */
    uv_timer_t retry;      /* backoff delay, then connect deadline */
    uv_idle_t idle;        /* completes deferred requests */
    req_t *dq_head, *dq_tail;
    char *host, *user, *password, *prefix, *key_next_id, *key_presence;
    int port, db;
    int up;       /* handshake done: commands are sent */
    int reported; /* the last state given to on_state */
    int closing;
    int handles; /* uv handles not closed yet */
    unsigned attempts;
    uint64_t rnd;
    char err[160];    /* last connection error, for the log */
    char hs_err[160]; /* first error reply of the handshake */
    mh_redis_state_fn on_state;
    void *ud;
};

/* ---- URL ---- */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Copy of s[0..n) with %XX decoded (a malformed escape stays as is). */
static char *decode(const char *s, size_t n)
{
    char *out = mh_xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        int hi = i + 2 < n && s[i] == '%' ? hexval(s[i + 1]) : -1;
        int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
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

static const char *parse_userinfo(mh_redis_store_t *rs, const char *p, const char *at)
{
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (!colon)
        return "expected [user]:password@ before the host";
    if (colon > p)
        rs->user = decode(p, (size_t)(colon - p));
    if (at > colon + 1)
        rs->password = decode(colon + 1, (size_t)(at - colon - 1));
    return NULL;
}

/* host[:port][/db] or [v6]:port...: returns an error text or NULL. */
static const char *parse_hostpart(mh_redis_store_t *rs, const char *p)
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
    rs->host = decode(h, (size_t)(e - h));
    rs->port = 6379;
    if (*p == ':') {
        e = p + 1 + strcspn(p + 1, "/");
        if (parse_num(p + 1, e, 65535, &rs->port) || rs->port == 0)
            return "bad port";
        p = e;
    }
    if (*p == '/' && p[1] && parse_num(p + 1, p + strlen(p), 0x7fffffffL, &rs->db))
        return "bad database number";
    if (*p && *p != '/')
        return "unexpected text after the host";
    return NULL;
}

static const char *parse_url(mh_redis_store_t *rs, const char *url)
{
    static const char scheme[] = "redis://";
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return "expected redis://";
    const char *p = url + sizeof(scheme) - 1;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *why = parse_userinfo(rs, p, at);
        if (why)
            return why;
        p = at + 1;
    }
    return parse_hostpart(rs, p);
}

/* ---- store lifetime and small helpers ---- */

static char *join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = mh_xmalloc(na + nb + 1);
    memcpy(s, a, na);
    memcpy(s + na, b, nb + 1);
    return s;
}

static void store_destroy(mh_redis_store_t *rs)
{
    free(rs->host);
    free(rs->user);
    free(rs->password);
    free(rs->prefix);
    free(rs->key_next_id);
    free(rs->key_presence);
    free(rs);
}

static void on_handle_closed(uv_handle_t *h)
{
    mh_redis_store_t *rs = h->data;
    if (--rs->handles == 0)
        store_destroy(rs);
}

/* Copies s into dst for a logfmt value in quotes: no quotes, no control bytes. */
static void copy_err(char *dst, size_t cap, const char *s, size_t n)
{
    size_t i = 0;
    for (; s && i < n && i + 1 < cap && s[i]; i++)
        dst[i] = s[i] == '"' ? '\'' : (unsigned char)s[i] < 0x20 ? ' ' : s[i];
    dst[i] = '\0';
}

static void set_err(mh_redis_store_t *rs, const char *s)
{
    copy_err(rs->err, sizeof(rs->err), s ? s : "unknown error", SIZE_MAX);
}

static uint32_t next_rand(mh_redis_store_t *rs)
{
    rs->rnd ^= rs->rnd << 13; /* xorshift64 */
    rs->rnd ^= rs->rnd >> 7;
    rs->rnd ^= rs->rnd << 17;
    return (uint32_t)(rs->rnd >> 32);
}

/* ---- requests ---- */

static req_t *req_new(mh_redis_store_t *rs, const req_ops_t *ops, void *ud)
{
    req_t *q = mh_xcalloc(1, sizeof(*q));
    q->rs = rs;
    q->ops = ops;
    q->ud = ud;
    return q;
}

static void complete(req_t *q, const redisReply *last)
{
    q->ops->finish(q, q->status ? NULL : last);
    free(q->str);
    free(q);
}

static req_t *dq_pop(mh_redis_store_t *rs)
{
    req_t *q = rs->dq_head;
    if (q && !(rs->dq_head = q->next))
        rs->dq_tail = NULL;
    return q;
}

static void on_idle(uv_idle_t *h)
{
    mh_redis_store_t *rs = h->data;
    req_t *last = rs->dq_tail; /* requests deferred from these callbacks wait a turn */
    req_t *q;
    int more = last != NULL;
    while (more && (q = dq_pop(rs))) {
        more = q != last;
        complete(q, NULL);
    }
    if (!rs->dq_head && !rs->closing)
        uv_idle_stop(h);
}

/* Completes a request that sent nothing: next loop turn, or now while closing. */
static void defer(req_t *q)
{
    mh_redis_store_t *rs = q->rs;
    if (rs->closing) {
        complete(q, NULL);
        return;
    }
    q->next = NULL;
    if (rs->dq_tail)
        rs->dq_tail->next = q;
    else
        rs->dq_head = q;
    rs->dq_tail = q;
    uv_idle_start(&rs->idle, on_idle);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    req_t *q = priv;
    const redisReply *r = reply;
    size_t idx = q->seen++;
    if (!r) {
        q->rs->up = 0; /* the context is going: refuse commands from the callbacks */
        q->status = MH_EIO;
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

/* After the last command: a request that sent nothing completes on the next turn. */
static void submit(req_t *q)
{
    if (q->pending)
        return;
    if (!q->status && !q->rs->up)
        q->status = MH_EIO;
    defer(q);
}

static void bad_reply(req_t *q, const redisReply *r)
{
    mh_warn("redis_bad_reply", "op=%s type=%d", q->ops->name, r ? r->type : -1);
    q->status = MH_EIO;
}

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* ---- sending ---- */

static void sent(req_t *q, int rc)
{
    if (rc == REDIS_OK)
        q->pending++;
    else
        q->status = MH_EIO;
}

/*
 * Sends one command, pipelined after the request's earlier ones, from a
 * hiredis format: printf conversions only, each one argument even when the
 * value has spaces. Nothing is sent once the request failed or while down.
 */
static void send_fmt(req_t *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_fmt(req_t *q, const char *fmt, ...)
{
    va_list ap;
    if (q->status || !q->rs->up)
        return;
    va_start(ap, fmt);
    sent(q, redisvAsyncCommand(q->rs->ac, on_reply, q, fmt, ap));
    va_end(ap);
}

/* A command of variable length: argv with lengths, every argument binary safe. */
typedef struct cmd {
    int argc;
    const char **argv;
    size_t *len;
    size_t *off; /* offset of a formatted argument in text, NO_OFF for borrowed bytes */
    mh_buf_t text;
} cmd_t;

static void cmd_init(cmd_t *c, size_t nargs, const char *verb)
{
    c->argc = 1;
    c->argv = mh_xmalloc(nargs * sizeof(*c->argv));
    c->len = mh_xmalloc(nargs * sizeof(*c->len));
    c->off = mh_xmalloc(nargs * sizeof(*c->off));
    c->argv[0] = verb;
    c->len[0] = strlen(verb);
    c->off[0] = NO_OFF;
    mh_buf_init(&c->text);
}

/* Borrows p[0..n) until cmd_send. */
static void cmd_bin(cmd_t *c, const void *p, size_t n)
{
    c->argv[c->argc] = p;
    c->len[c->argc] = n;
    c->off[c->argc++] = NO_OFF;
}

static void cmd_fmt(cmd_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cmd_fmt(cmd_t *c, const char *fmt, ...)
{
    va_list ap;
    size_t start = c->text.len;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    size_t len = n > 0 ? (size_t)n : 0;
    mh_buf_reserve(&c->text, len);
    va_start(ap, fmt);
    vsnprintf(c->text.data + start, len + 1, fmt, ap);
    va_end(ap);
    c->text.len += len;
    c->len[c->argc] = len;
    c->off[c->argc++] = start;
}

/* Sends c like send_fmt and frees it. */
static void cmd_send(req_t *q, cmd_t *c)
{
    for (int i = 0; i < c->argc; i++) {
        if (c->off[i] != NO_OFF)
            c->argv[i] = c->text.data + c->off[i];
    }
    if (!q->status && q->rs->up)
        sent(q, redisAsyncCommandArgv(q->rs->ac, on_reply, q, c->argc, c->argv, c->len));
    free(c->argv);
    free(c->len);
    free(c->off);
    mh_buf_free(&c->text);
}

/* ---- connection ---- */

/*
 * hiredis 0.14's libuv adapter ignores a poll callback with an error status,
 * but on POLLERR (a refused connect, a reset) uv_poll reports UV_EBADF and
 * stops watching: the connection would hang. These hooks replace the
 * adapter's four event hooks (its attach and cleanup stay) and hand an error
 * to hiredis as the events it was waiting for, which then reads or writes,
 * sees the socket error and disconnects (what hiredis >= 1.0 does).
 */
static void on_poll(uv_poll_t *h, int status, int events)
{
    redisLibuvEvents *p = h->data;
    int ev = status ? p->events : events;
    if (p->context && (ev & UV_READABLE))
        redisAsyncHandleRead(p->context);
    if (p->context && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
}

static void poll_update(redisLibuvEvents *p, int events)
{
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

static void ev_add_write(void *priv)
{
    redisLibuvEvents *p = priv;
    poll_update(p, p->events | UV_WRITABLE);
}

static void ev_del_write(void *priv)
{
    redisLibuvEvents *p = priv;
    poll_update(p, p->events & ~UV_WRITABLE);
}

static int attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (redisLibuvAttach(ac, loop) != REDIS_OK)
        return -1;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    return 0;
}

static void conn_start(mh_redis_store_t *rs);

static void on_retry_timer(uv_timer_t *t);

static void schedule_retry(mh_redis_store_t *rs)
{
    unsigned shift = rs->attempts < 6 ? rs->attempts : 6;
    unsigned base = BACKOFF_MIN_MS << shift;
    if (base > BACKOFF_MAX_MS)
        base = BACKOFF_MAX_MS;
    unsigned delay = base * (80u + next_rand(rs) % 41u) / 100u; /* +-20 % */
    if (++rs->attempts == 1)
        mh_warn("redis_down", "addr=%s:%d err=\"%s\" retry_ms=%u", rs->host, rs->port, rs->err,
                delay);
    else
        mh_debug("redis_retry", "addr=%s:%d err=\"%s\" attempt=%u retry_ms=%u", rs->host, rs->port,
                 rs->err, rs->attempts, delay);
    uv_timer_start(&rs->retry, on_retry_timer, delay, 0);
}

static void become_up(mh_redis_store_t *rs)
{
    uv_timer_stop(&rs->retry);
    rs->up = 1;
    rs->attempts = 0;
    mh_info("redis_up", "addr=%s:%d db=%d", rs->host, rs->port, rs->db);
    if (!rs->reported) {
        rs->reported = 1;
        if (rs->on_state)
            rs->on_state(rs->ud, 1);
    }
}

static void on_hs_step(redisAsyncContext *ac, void *reply, void *priv)
{
    mh_redis_store_t *rs = priv;
    const redisReply *r = reply;
    if (r && rs->ac == ac && r->type == REDIS_REPLY_ERROR && !rs->hs_err[0])
        copy_err(rs->hs_err, sizeof(rs->hs_err), r->str, r->len);
}

/* The PING after AUTH / SELECT: the connection is usable unless one failed. */
static void on_hs_done(redisAsyncContext *ac, void *reply, void *priv)
{
    mh_redis_store_t *rs = priv;
    if (!reply || rs->ac != ac)
        return; /* this attempt was given up */
    on_hs_step(ac, reply, priv);
    if (rs->hs_err[0]) {
        set_err(rs, rs->hs_err);
        redisAsyncDisconnect(ac); /* done by hiredis after we return; on_disconnect retries */
        return;
    }
    become_up(rs);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    mh_redis_store_t *rs = ac->data;
    if (status == REDIS_OK || rs->closing || rs->ac != ac)
        return;
    rs->ac = NULL; /* hiredis frees it when we return */
    set_err(rs, ac->errstr);
    schedule_retry(rs);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    mh_redis_store_t *rs = ac->data;
    if (rs->closing || rs->ac != ac)
        return;
    rs->ac = NULL; /* gone when we return */
    rs->up = 0;
    if (status != REDIS_OK)
        set_err(rs, ac->errstr);
    schedule_retry(rs);
    if (rs->reported) {
        rs->reported = 0;
        if (rs->on_state)
            rs->on_state(rs->ud, 0);
    }
}

static void send_handshake(mh_redis_store_t *rs)
{
    rs->hs_err[0] = '\0';
    if (rs->password && rs->user)
        redisAsyncCommand(rs->ac, on_hs_step, rs, "AUTH %s %s", rs->user, rs->password);
    else if (rs->password)
        redisAsyncCommand(rs->ac, on_hs_step, rs, "AUTH %s", rs->password);
    if (rs->db)
        redisAsyncCommand(rs->ac, on_hs_step, rs, "SELECT %d", rs->db);
    redisAsyncCommand(rs->ac, on_hs_done, rs, "PING");
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

static void conn_start(mh_redis_store_t *rs)
{
    redisAsyncContext *ac = redisAsyncConnect(rs->host, rs->port);
    if (!ac || ac->err || attach(ac, rs->loop)) {
        set_err(rs, ac && ac->err ? ac->errstr : "cannot set up the connection");
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(rs);
        return;
    }
    ac->data = rs;
    rs->ac = ac;
    tune_socket(ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    send_handshake(rs);
    uv_timer_start(&rs->retry, on_retry_timer, CONNECT_TIMEOUT_MS, 0);
}

static void on_retry_timer(uv_timer_t *t)
{
    mh_redis_store_t *rs = t->data;
    if (!rs->ac) {
        conn_start(rs);
        return;
    }
    redisAsyncContext *ac = rs->ac; /* connecting took too long: give it up */
    rs->ac = NULL;
    set_err(rs, "connect timeout");
    redisAsyncFree(ac);
    schedule_retry(rs);
}

mh_redis_store_t *mh_redis_store_new(struct uv_loop_s *loop, const char *url, const char *prefix,
                                     mh_redis_state_fn on_state, void *ud, char *err, size_t errlen)
{
    mh_redis_store_t *rs = mh_xcalloc(1, sizeof(*rs));
    const char *why = !loop || !url || !prefix ? "missing argument" : parse_url(rs, url);
    if (why) {
        if (err && errlen)
            snprintf(err, errlen, "bad redis url: %s", why);
        store_destroy(rs);
        return NULL;
    }
    rs->loop = loop;
    rs->prefix = mh_xstrdup(prefix);
    rs->key_next_id = join(prefix, ":next_id");
    rs->key_presence = join(prefix, ":presence");
    rs->on_state = on_state;
    rs->ud = ud;
    rs->rnd = (mh_mono_us() ^ (uint64_t)(uintptr_t)rs ^ ((uint64_t)getpid() << 32)) | 1u;
    uv_timer_init(loop, &rs->retry);
    uv_idle_init(loop, &rs->idle);
    rs->retry.data = rs->idle.data = rs;
    rs->handles = 2;
    conn_start(rs);
    return rs;
}

void mh_redis_store_free(mh_redis_store_t *rs)
{
    if (!rs || rs->closing)
        return;
    rs->closing = 1;
    rs->up = 0;
    uv_timer_stop(&rs->retry);
    if (rs->ac) {
        redisAsyncContext *ac = rs->ac;
        rs->ac = NULL;
        /* Pending callbacks get NULL replies now, or, inside a hiredis
         * callback, as soon as it returns (hiredis defers the free). */
        redisAsyncFree(ac);
    }
    req_t *q;
    while ((q = dq_pop(rs)))
        complete(q, NULL);
    uv_close((uv_handle_t *)&rs->retry, on_handle_closed);
    uv_close((uv_handle_t *)&rs->idle, on_handle_closed);
}

int mh_redis_store_up(const mh_redis_store_t *rs)
{
    return rs && rs->up;
}

/* ---- ids ---- */

static void each_int(req_t *q, size_t idx, const redisReply *r)
{
    if (idx != 0)
        return;
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
        bad_reply(q, r);
    else
        q->val = (uint64_t)r->integer;
}

/* GET of a counter: nil is 0. */
static void each_get_u64(req_t *q, size_t idx, const redisReply *r)
{
    if (idx != 0 || r->type == REDIS_REPLY_NIL)
        return;
    if (r->type != REDIS_REPLY_STRING || parse_u64(r->str, r->len, &q->val))
        bad_reply(q, r);
}

static void finish_u64(req_t *q, const redisReply *last)
{
    if (q->cb.u64)
        q->cb.u64(q->ud, q->status, q->status ? 0 : q->val);
}

static void finish_status(req_t *q, const redisReply *last)
{
    if (q->cb.status)
        q->cb.status(q->ud, q->status);
}

static const req_ops_t alloc_ops = {"alloc_id", each_int, finish_u64};
static const req_ops_t last_ops = {"last_id", each_get_u64, finish_u64};

void mh_redis_alloc_id(mh_redis_store_t *rs, mh_redis_u64_cb cb, void *ud)
{
    req_t *q = req_new(rs, &alloc_ops, ud);
    q->cb.u64 = cb;
    send_fmt(q, "INCR %s", rs->key_next_id);
    submit(q);
}

void mh_redis_last_id(mh_redis_store_t *rs, mh_redis_u64_cb cb, void *ud)
{
    req_t *q = req_new(rs, &last_ops, ud);
    q->cb.u64 = cb;
    send_fmt(q, "GET %s", rs->key_next_id);
    submit(q);
}

/* KEYS: next_id; ARGV: the lowest value it must have. */
static const char raise_id_lua[] = "local v = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
                                   "if v < tonumber(ARGV[1]) then\n"
                                   "  redis.call('SET', KEYS[1], ARGV[1])\n"
                                   "end\n"
                                   "return 0\n";

static const req_ops_t raise_ops = {"raise_id", NULL, finish_status};

void mh_redis_raise_id(mh_redis_store_t *rs, uint64_t min_id, mh_redis_status_cb cb, void *ud)
{
    req_t *q = req_new(rs, &raise_ops, ud);
    q->cb.status = cb;
    send_fmt(q, "EVAL %s 1 %s %" PRIu64, raise_id_lua, rs->key_next_id, min_id);
    submit(q);
}

/* ---- routes and presence ---- */

static void finish_routes(req_t *q, const redisReply *last)
{
    const char **inst = NULL;
    if (!q->status && q->n) {
        if (!last || last->type != REDIS_REPLY_ARRAY || last->elements != q->n)
            bad_reply(q, last);
        else
            inst = mh_xmalloc(q->n * sizeof(*inst));
        for (size_t i = 0; inst && i < q->n; i++) {
            const redisReply *e = last->element[i];
            if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_NIL)
                bad_reply(q, e);
            inst[i] = e->type == REDIS_REPLY_STRING ? e->str : NULL;
        }
    }
    int ok = q->status == 0;
    if (q->cb.routes)
        q->cb.routes(q->ud, q->status, ok ? q->val : 0, ok ? inst : NULL, ok ? q->n : 0);
    free(inst);
}

static const req_ops_t routes_ops = {"lookup_routes", each_get_u64, finish_routes};

void mh_redis_lookup_routes(mh_redis_store_t *rs, const uint64_t *ids, size_t n,
                            mh_redis_routes_cb cb, void *ud)
{
    req_t *q = req_new(rs, &routes_ops, ud);
    q->cb.routes = cb;
    q->n = n;
    send_fmt(q, "GET %s", rs->key_next_id);
    if (n && rs->up) {
        cmd_t c;
        cmd_init(&c, n + 1, "MGET");
        for (size_t i = 0; i < n; i++)
            cmd_fmt(&c, "%s:route:%" PRIu64, rs->prefix, ids[i]);
        cmd_send(q, &c);
    }
    submit(q);
}

/* SET ... GET comes first: its reply is the previous holder. */
static void each_claim(req_t *q, size_t idx, const redisReply *r)
{
    if (idx != 0 || r->type == REDIS_REPLY_NIL)
        return;
    if (r->type != REDIS_REPLY_STRING)
        bad_reply(q, r);
    else
        q->str = mh_xstrdup(r->str);
}

static void finish_claim(req_t *q, const redisReply *last)
{
    if (q->cb.claim)
        q->cb.claim(q->ud, q->status, q->status ? NULL : q->str);
}

static const req_ops_t claim_ops = {"claim", each_claim, finish_claim};

void mh_redis_claim(mh_redis_store_t *rs, uint64_t id, const char *instance, uint64_t ttl_ms,
                    mh_redis_claim_cb cb, void *ud)
{
    req_t *q = req_new(rs, &claim_ops, ud);
    q->cb.claim = cb;
    ttl_ms = ttl_ms ? ttl_ms : 1;
    /* SET before ZADD: a concurrent checkout by the old holder then finds
     * the route changed and leaves the new presence alone. */
    send_fmt(q, "SET %s:route:%" PRIu64 " %s PX %" PRIu64 " GET", rs->prefix, id, instance, ttl_ms);
    send_fmt(q, "ZADD %s %" PRIu64 " %" PRIu64, rs->key_presence, mh_now_ms() + ttl_ms, id);
    submit(q);
}

/* KEYS: presence, route keys; ARGV: instance, ttl ms, expiry score, ids. */
static const char refresh_lua[] = "for i = 2, #KEYS do\n"
                                  "  local v = redis.call('GET', KEYS[i])\n"
                                  "  if v == false or v == ARGV[1] then\n"
                                  "    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])\n"
                                  "    redis.call('ZADD', KEYS[1], ARGV[3], ARGV[i + 2])\n"
                                  "  end\n"
                                  "end\n"
                                  "return 0\n";

static const req_ops_t refresh_ops = {"refresh", NULL, finish_status};

static void send_refresh_chunk(req_t *q, const uint64_t *ids, size_t k, const char *instance,
                               uint64_t ttl_ms, uint64_t score)
{
    const mh_redis_store_t *rs = q->rs;
    cmd_t c;
    cmd_init(&c, 7 + 2 * k, "EVAL");
    cmd_bin(&c, refresh_lua, sizeof(refresh_lua) - 1);
    cmd_fmt(&c, "%zu", k + 1);
    cmd_bin(&c, rs->key_presence, strlen(rs->key_presence));
    for (size_t i = 0; i < k; i++)
        cmd_fmt(&c, "%s:route:%" PRIu64, rs->prefix, ids[i]);
    cmd_bin(&c, instance, strlen(instance));
    cmd_fmt(&c, "%" PRIu64, ttl_ms);
    cmd_fmt(&c, "%" PRIu64, score);
    for (size_t i = 0; i < k; i++)
        cmd_fmt(&c, "%" PRIu64, ids[i]);
    cmd_send(q, &c);
}

void mh_redis_refresh(mh_redis_store_t *rs, const uint64_t *ids, size_t n, const char *instance,
                      uint64_t ttl_ms, mh_redis_status_cb cb, void *ud)
{
    req_t *q = req_new(rs, &refresh_ops, ud);
    q->cb.status = cb;
    ttl_ms = ttl_ms ? ttl_ms : 1;
    uint64_t score = mh_now_ms() + ttl_ms;
    for (size_t i = 0; i < n && rs->up; i += REFRESH_CHUNK) {
        size_t k = n - i < REFRESH_CHUNK ? n - i : REFRESH_CHUNK;
        send_refresh_chunk(q, ids + i, k, instance, ttl_ms, score);
    }
    submit(q);
}

/* KEYS: route, presence; ARGV: instance, id. */
static const char checkout_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                   "  redis.call('DEL', KEYS[1])\n"
                                   "  redis.call('ZREM', KEYS[2], ARGV[2])\n"
                                   "  return 1\n"
                                   "end\n"
                                   "return 0\n";

static const req_ops_t checkout_ops = {"checkout", NULL, finish_status};

void mh_redis_checkout(mh_redis_store_t *rs, uint64_t id, const char *instance,
                       mh_redis_status_cb cb, void *ud)
{
    req_t *q = req_new(rs, &checkout_ops, ud);
    q->cb.status = cb;
    send_fmt(q, "EVAL %s 2 %s:route:%" PRIu64 " %s %s %" PRIu64, checkout_lua, rs->prefix, id,
             rs->key_presence, instance, id);
    submit(q);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void finish_ids(req_t *q, const redisReply *last)
{
    uint64_t *ids = NULL;
    size_t n = 0;
    if (!q->status && (!last || last->type != REDIS_REPLY_ARRAY))
        bad_reply(q, last);
    if (!q->status) {
        ids = mh_xmalloc((last->elements ? last->elements : 1) * sizeof(*ids));
        for (size_t i = 0; i < last->elements; i++) {
            const redisReply *e = last->element[i];
            if (e->type == REDIS_REPLY_STRING && !parse_u64(e->str, e->len, &ids[n]))
                n++; /* a member that is no id is not ours: skipped */
        }
        qsort(ids, n, sizeof(*ids), cmp_u64);
    }
    if (q->cb.ids)
        q->cb.ids(q->ud, q->status, ids, n);
    else
        free(ids);
}

static const req_ops_t list_ops = {"list", NULL, finish_ids};

void mh_redis_list(mh_redis_store_t *rs, uint64_t now_ms, mh_redis_ids_cb cb, void *ud)
{
    req_t *q = req_new(rs, &list_ops, ud);
    q->cb.ids = cb;
    send_fmt(q, "ZREMRANGEBYSCORE %s -inf %" PRIu64, rs->key_presence, now_ms);
    send_fmt(q, "ZRANGEBYSCORE %s (%" PRIu64 " +inf", rs->key_presence, now_ms);
    submit(q);
}

/* ---- inboxes ---- */

/* RPUSH comes first: its reply is the new length, before LTRIM. */
static void each_push(req_t *q, size_t idx, const redisReply *r)
{
    if (idx != 0)
        return;
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
        bad_reply(q, r);
    else if ((uint64_t)r->integer > q->max)
        q->val = (uint64_t)r->integer - q->max;
}

static const req_ops_t push_ops = {"inbox_push", each_push, finish_u64};
static const req_ops_t push_front_ops = {"inbox_push_front", NULL, finish_status};

/* RPUSH / LPUSH of the payloads (binary safe), then EXPIRE unless ttl_s is 0. */
static void send_frames(req_t *q, const char *verb, uint64_t id, mh_frame_t *const *frames,
                        size_t n, int reverse)
{
    cmd_t c;
    cmd_init(&c, n + 2, verb);
    cmd_fmt(&c, "%s:inbox:%" PRIu64, q->rs->prefix, id);
    for (size_t i = 0; i < n; i++) {
        mh_frame_t *f = frames[reverse ? n - 1 - i : i];
        cmd_bin(&c, mh_frame_data(f), f->len);
    }
    cmd_send(q, &c);
}

void mh_redis_inbox_push(mh_redis_store_t *rs, uint64_t id, mh_frame_t *const *frames, size_t n,
                         uint32_t max, uint64_t ttl_s, mh_redis_u64_cb cb, void *ud)
{
    req_t *q = req_new(rs, &push_ops, ud);
    q->cb.u64 = cb;
    q->max = max ? max : 1;
    if (n && rs->up) {
        send_frames(q, "RPUSH", id, frames, n, 0);
        send_fmt(q, "LTRIM %s:inbox:%" PRIu64 " -%" PRIu64 " -1", rs->prefix, id, q->max);
        if (ttl_s)
            send_fmt(q, "EXPIRE %s:inbox:%" PRIu64 " %" PRIu64, rs->prefix, id, ttl_s);
    }
    submit(q);
}

void mh_redis_inbox_push_front(mh_redis_store_t *rs, uint64_t id, mh_frame_t *const *frames,
                               size_t n, uint64_t ttl_s, mh_redis_status_cb cb, void *ud)
{
    req_t *q = req_new(rs, &push_front_ops, ud);
    q->cb.status = cb;
    if (n && rs->up) {
        send_frames(q, "LPUSH", id, frames, n, 1);
        if (ttl_s)
            send_fmt(q, "EXPIRE %s:inbox:%" PRIu64 " %" PRIu64, rs->prefix, id, ttl_s);
    }
    submit(q);
}

static void finish_frames(req_t *q, const redisReply *last)
{
    mh_frame_t **frames = NULL;
    size_t n = 0;
    if (last && !q->status && last->type != REDIS_REPLY_ARRAY)
        bad_reply(q, last);
    if (last && !q->status) {
        frames = mh_xmalloc((last->elements ? last->elements : 1) * sizeof(*frames));
        for (; n < last->elements && last->element[n]->type == REDIS_REPLY_STRING; n++) {
            frames[n] = mh_frame_new(last->element[n]->str, last->element[n]->len);
            frames[n]->is_message = 1;
        }
    }
    if (q->cb.frames)
        q->cb.frames(q->ud, q->status, frames, n);
    else
        for (size_t i = 0; i < n; i++)
            mh_frame_unref(frames[i]);
    free(frames);
}

static const req_ops_t peek_ops = {"inbox_peek", NULL, finish_frames};
static const req_ops_t trim_ops = {"inbox_trim", NULL, finish_status};
static const req_ops_t count_ops = {"inbox_count", each_int, finish_u64};

/* LRANGE / LTRIM indexes are signed 64-bit. */
static uint64_t clamp_index(size_t n)
{
    return n > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : (uint64_t)n;
}

void mh_redis_inbox_peek(mh_redis_store_t *rs, uint64_t id, size_t max_n, mh_redis_frames_cb cb,
                         void *ud)
{
    req_t *q = req_new(rs, &peek_ops, ud);
    q->cb.frames = cb;
    if (max_n)
        send_fmt(q, "LRANGE %s:inbox:%" PRIu64 " 0 %" PRIu64, rs->prefix, id,
                 clamp_index(max_n - 1));
    submit(q);
}

void mh_redis_inbox_trim(mh_redis_store_t *rs, uint64_t id, size_t n, mh_redis_status_cb cb,
                         void *ud)
{
    req_t *q = req_new(rs, &trim_ops, ud);
    q->cb.status = cb;
    if (n)
        send_fmt(q, "LTRIM %s:inbox:%" PRIu64 " %" PRIu64 " -1", rs->prefix, id, clamp_index(n));
    submit(q);
}

void mh_redis_inbox_count(mh_redis_store_t *rs, uint64_t id, mh_redis_u64_cb cb, void *ud)
{
    req_t *q = req_new(rs, &count_ops, ud);
    q->cb.u64 = cb;
    send_fmt(q, "LLEN %s:inbox:%" PRIu64, rs->prefix, id);
    submit(q);
}
