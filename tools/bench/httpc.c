/* Minimal HTTP/1.1 keep-alive client; see httpc.h. */
#include "httpc.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTPC_HEAD_SLACK 64 /* room for the Content-Length line and the blank line */

void httpc_drop(httpc_conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = HTTPC_CLOSED;
    c->busy = 0;
}

static void fail(httpc_conn_t *c, const char *why)
{
    if (c->state == HTTPC_CLOSED)
        return;
    httpc_drop(c);
    if (c->ops && c->ops->on_close)
        c->ops->on_close(c, why);
}

int httpc_connect(httpc_conn_t *c, int epfd, const struct sockaddr_in *addr)
{
    c->out_off = c->out_len = c->in_len = 0;
    c->busy = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->state = HTTPC_CLOSED;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0 ||
        (connect(c->fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 &&
         errno != EINPROGRESS)) {
        httpc_drop(c);
        return -1;
    }
    c->state = HTTPC_CONNECTING;
    return 0;
}

static int flush(httpc_conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0; /* EPOLLOUT (edge) tells us when to go on */
        fail(c, "write");
        return -1;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

int httpc_request(httpc_conn_t *c, const char *head, const char *body, size_t n)
{
    size_t hl = strlen(head);
    if (c->state != HTTPC_OPEN || c->busy || hl + n + HTTPC_HEAD_SLACK > sizeof(c->out))
        return -1;
    memcpy(c->out, head, hl);
    size_t len =
        hl + (size_t)snprintf(c->out + hl, HTTPC_HEAD_SLACK, "\r\nContent-Length: %zu\r\n\r\n", n);
    memcpy(c->out + len, body, n);
    c->out_off = 0;
    c->out_len = len + n;
    c->busy = 1;
    return flush(c);
}

/* ---- responses ---- */

/* The value of header `name` in the head's lines (after the status line), or NULL. */
static const char *header(const char *head, size_t hl, const char *name, size_t *vl)
{
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', hl), *end = head + hl;
    while (p && ++p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *vl = (size_t)(ve - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

static int has_token(const char *v, size_t vl, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; v && i + tl <= vl; i++)
        if (strncasecmp(v + i, tok, tl) == 0)
            return 1;
    return 0;
}

/* Chunked body at p[0..n): returns the bytes taken, 0 incomplete, -1 malformed. */
static long dechunk(const char *p, size_t n, char *out, size_t cap, size_t *outlen)
{
    size_t i = 0, o = 0;
    for (;;) {
        const char *eol = memchr(p + i, '\n', n - i);
        if (!eol)
            return 0;
        char *e;
        unsigned long sz = strtoul(p + i, &e, 16);
        if (e == p + i)
            return -1;
        i = (size_t)(eol - p) + 1;
        if (sz == 0) { /* trailers, then the blank line */
            for (;;) {
                const char *t = memchr(p + i, '\n', n - i);
                if (!t)
                    return 0;
                size_t tl = (size_t)(t - (p + i));
                i += tl + 1;
                if (tl == 0 || (tl == 1 && p[i - 2] == '\r'))
                    break;
            }
            *outlen = o;
            return (long)i;
        }
        if (n - i < sz + 2)
            return 0;
        if (o + sz > cap || p[i + sz] != '\r' || p[i + sz + 1] != '\n')
            return -1;
        memcpy(out + o, p + i, sz);
        o += sz;
        i += sz + 2;
    }
}

long httpc_parse(const char *p, size_t n, char *body_buf, size_t cap, httpc_response_t *r)
{
    const char *blank = memmem(p, n, "\r\n\r\n", 4);
    if (!blank)
        return n >= HTTPC_BUF ? -1 : 0;
    size_t hl = (size_t)(blank - p) + 2, start = hl + 2;
    const char *eol = memchr(p, '\r', hl);
    if (hl < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
        return -1;
    memset(r, 0, sizeof(*r));
    r->status = atoi(p + 9);
    r->status_line = p;
    r->status_len = (size_t)(eol - p);
    size_t vl = 0;
    const char *v = header(p, hl, "connection", &vl);
    r->close = has_token(v, vl, "close");
    v = header(p, hl, "transfer-encoding", &vl);
    if (has_token(v, vl, "chunked")) {
        long used = dechunk(p + start, n - start, body_buf, cap, &r->body_len);
        r->body = body_buf;
        return used <= 0 ? used : (long)start + used;
    }
    v = header(p, hl, "content-length", &vl);
    size_t len = v ? (size_t)strtoul(v, NULL, 10) : 0;
    if (len > cap)
        return -1;
    if (n - start < len)
        return 0;
    memcpy(body_buf, p + start, len);
    r->body = body_buf;
    r->body_len = len;
    return (long)(start + len);
}

static void parse_responses(httpc_conn_t *c)
{
    size_t off = 0;
    while (c->state == HTTPC_OPEN && off < c->in_len) {
        httpc_response_t r;
        long used = httpc_parse(c->in + off, c->in_len - off, c->body, sizeof(c->body), &r);
        if (used == 0)
            break;
        if (used < 0) {
            fail(c, "bad response");
            return;
        }
        off += (size_t)used;
        c->busy = 0;
        if (c->ops && c->ops->on_response)
            c->ops->on_response(c, &r);
        if (r.close) {
            fail(c, "connection: close");
            return;
        }
    }
    if (c->state != HTTPC_OPEN)
        return;
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static void on_readable(httpc_conn_t *c)
{
    while (c->state == HTTPC_OPEN) {
        if (c->in_len == sizeof(c->in)) {
            fail(c, "response too large");
            return;
        }
        ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
            parse_responses(c);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        fail(c, n == 0 ? "eof" : "read");
        return;
    }
}

void httpc_handle(httpc_conn_t *c, uint32_t events)
{
    if (c->state == HTTPC_CLOSED || c->state == HTTPC_IDLE)
        return;
    if (c->state == HTTPC_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
            fail(c, "refused");
            return;
        }
        c->state = HTTPC_OPEN;
        if (c->ops && c->ops->on_open)
            c->ops->on_open(c);
        if (c->state != HTTPC_OPEN)
            return;
    }
    if ((events & EPOLLOUT) && flush(c) < 0)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        on_readable(c);
}
