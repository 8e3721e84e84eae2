/* Minimal non-blocking WebSocket client; see wsc.h. */
#include "wsc.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define WSC_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WSC_READ_CHUNK 65536
#define WSC_MAX_MESSAGE (64u << 20) /* larger incoming messages are a protocol error */
#define WSC_MAX_HEADER 8192         /* HTTP response head */

uint64_t wsc_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

void wsc_base64(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    char *o = out;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = tab[v >> 6 & 63];
        *o++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
}

/* ---- buffers ---- */

static int buf_reserve(wsc_buf_t *b, size_t extra)
{
    if (b->off > 0 && (b->off == b->len || b->cap - b->len < extra)) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_append(wsc_buf_t *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static void buf_consume(wsc_buf_t *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

static void buf_free(wsc_buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

size_t wsc_pending(const wsc_conn_t *c)
{
    return c->out.len - c->out.off;
}

void wsc_drop(wsc_conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = WSC_CLOSED;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->msg);
    c->in_msg = 0;
}

/* Closes the socket but keeps the input buffers: a callback may be running
 * on a message that lives in them. wsc_drop frees them later. */
static void fail(wsc_conn_t *c, int code, const char *why)
{
    if (c->state == WSC_CLOSED)
        return;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = WSC_CLOSED;
    buf_free(&c->out);
    if (c->ops && c->ops->on_close)
        c->ops->on_close(c, code, why);
}

/* ---- writing ---- */

static int flush(wsc_conn_t *c)
{
    while (c->out.off < c->out.len) {
        ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0; /* EPOLLOUT (edge) tells us when to go on */
        fail(c, 0, "write");
        return -1;
    }
    return 0;
}

int wsc_send(wsc_conn_t *c, int opcode, const void *p, size_t n)
{
    if (c->state != WSC_OPEN)
        return -1;
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (n < 126) {
        hdr[h++] = (uint8_t)(0x80 | n);
    } else if (n <= 0xffff) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(n >> 8);
        hdr[h++] = (uint8_t)n;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    uint32_t key = (uint32_t)wsc_rand(&c->rng);
    uint8_t mask[4];
    memcpy(mask, &key, 4);
    memcpy(hdr + h, mask, 4);
    h += 4;
    if (buf_reserve(&c->out, h + n) < 0) {
        fail(c, 0, "oom");
        return -1;
    }
    uint8_t *dst = c->out.p + c->out.len;
    memcpy(dst, hdr, h);
    dst += h;
    const uint8_t *src = p;
    size_t i = 0;
    uint64_t m8;
    uint8_t m8b[8];
    for (int k = 0; k < 8; k++)
        m8b[k] = mask[k & 3];
    memcpy(&m8, m8b, 8);
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= m8;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ mask[i & 3];
    c->out.len += h + n;
    c->frames_out++;
    return flush(c);
}

/* ---- connecting and the handshake ---- */

int wsc_connect(wsc_conn_t *c, int epfd, const struct sockaddr_in *addr,
                const struct sockaddr_in *src, const char *host, const char *path)
{
    c->host = host;
    c->path = path;
    c->in_msg = 0;
    if (!c->rng)
        c->rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)(c->index + 1) * 0xBF58476D1CE4E5B9ULL);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->state = WSC_CLOSED;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (src) { /* the port is picked at connect: one per (source, destination) pair */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(c->fd, (const struct sockaddr *)src, sizeof(*src)) < 0) {
            wsc_drop(c);
            return -1;
        }
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        wsc_drop(c);
        return -1;
    }
    c->state = WSC_CONNECTING;
    if (connect(c->fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 && errno != EINPROGRESS) {
        wsc_drop(c);
        return -1;
    }
    return 0;
}

static void send_upgrade(wsc_conn_t *c)
{
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = wsc_rand(&c->rng);
        memcpy(raw + i, &r, 8);
    }
    char key[32];
    wsc_base64(raw, sizeof(raw), key);
    char cat[96];
    int cl = snprintf(cat, sizeof(cat), "%s%s", key, WSC_GUID);
    uint8_t dig[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)cat, (size_t)cl, dig);
    wsc_base64(dig, sizeof(dig), c->accept);

    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nUser-Agent: msghub-bench\r\n\r\n",
                     c->path, c->host, key);
    if (n <= 0 || (size_t)n >= sizeof(req) || buf_append(&c->out, req, (size_t)n) < 0) {
        fail(c, 0, "request");
        return;
    }
    c->state = WSC_HANDSHAKE;
    flush(c);
}

/* Finds header `name` in the response head; copies its trimmed value. */
static int header_value(const char *head, const char *name, char *val, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p && p[2] != '\r') {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = strstr(v, "\r\n");
            if (!e)
                return -1;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            size_t n = (size_t)(e - v);
            if (n >= cap)
                return -1;
            memcpy(val, v, n);
            val[n] = '\0';
            return 0;
        }
        p = strstr(p, "\r\n");
    }
    return -1;
}

/* Returns 1 when the head was complete and accepted, 0 when more bytes are
 * needed, -1 after failing the connection. */
static int parse_upgrade(wsc_conn_t *c)
{
    size_t avail = c->in.len - c->in.off;
    const char *start = (const char *)c->in.p + c->in.off;
    const char *end = memmem(start, avail, "\r\n\r\n", 4);
    if (!end) {
        if (avail > WSC_MAX_HEADER) {
            fail(c, 0, "handshake");
            return -1;
        }
        return 0;
    }
    size_t hl = (size_t)(end - start) + 4;
    char head[WSC_MAX_HEADER + 8];
    if (hl > WSC_MAX_HEADER) {
        fail(c, 0, "handshake");
        return -1;
    }
    memcpy(head, start, hl);
    head[hl] = '\0';
    char val[128];
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        int status = 0;
        if (sscanf(head, "HTTP/1.%*d %d", &status) != 1)
            status = 0;
        static char why[32];
        snprintf(why, sizeof(why), "http_%d", status);
        fail(c, 0, why);
        return -1;
    }
    if (header_value(head, "Sec-WebSocket-Accept", val, sizeof(val)) < 0 ||
        strcmp(val, c->accept) != 0) {
        fail(c, 0, "bad_accept");
        return -1;
    }
    buf_consume(&c->in, hl);
    c->state = WSC_OPEN;
    if (c->ops && c->ops->on_open)
        c->ops->on_open(c);
    return c->state == WSC_OPEN ? 1 : -1;
}

/* ---- reading frames ---- */

static void control(wsc_conn_t *c, int op, const uint8_t *p, size_t n)
{
    if (op == WSC_OP_PING) {
        c->pings++;
        wsc_send(c, WSC_OP_PONG, p, n);
    } else if (op == WSC_OP_CLOSE) {
        int code = n >= 2 ? (p[0] << 8 | p[1]) : 1005;
        uint8_t reply[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        if (code != 1005)
            wsc_send(c, WSC_OP_CLOSE, reply, 2);
        else
            wsc_send(c, WSC_OP_CLOSE, NULL, 0);
        fail(c, code, "close");
    }
}

/* Parses every complete frame in c->in. */
static void parse_frames(wsc_conn_t *c)
{
    while (c->state == WSC_OPEN) {
        uint8_t *p = c->in.p + c->in.off;
        size_t avail = c->in.len - c->in.off;
        if (avail < 2)
            return;
        int fin = p[0] & 0x80, op = p[0] & 0x0f, masked = p[1] & 0x80;
        uint64_t len = p[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (avail < 4)
                return;
            len = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10)
                return;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | p[2 + i];
            h = 10;
        }
        if (len > WSC_MAX_MESSAGE || (op >= 8 && (len > 125 || !fin))) {
            fail(c, 0, "frame");
            return;
        }
        size_t mh = masked ? 4 : 0;
        if (avail < h + mh + len)
            return;
        uint8_t *pl = p + h + mh;
        if (masked)
            for (uint64_t i = 0; i < len; i++)
                pl[i] ^= p[h + (i & 3)];
        size_t n = (size_t)len;
        c->frames_in++;
        if (op >= 8) {
            control(c, op, pl, n);
        } else if (op == WSC_OP_CONT) {
            if (!c->in_msg || c->msg.len + n > WSC_MAX_MESSAGE || buf_append(&c->msg, pl, n) < 0) {
                fail(c, 0, "fragment");
                return;
            }
            if (fin) {
                c->in_msg = 0;
                /* The callback may send; c->msg is ours until reset below. */
                if (c->ops && c->ops->on_message)
                    c->ops->on_message(c, (const char *)c->msg.p + c->msg.off,
                                       c->msg.len - c->msg.off);
                if (c->state != WSC_OPEN)
                    return;
                c->msg.off = c->msg.len = 0;
            }
        } else if (op == WSC_OP_TEXT || op == WSC_OP_BINARY) {
            if (c->in_msg) {
                fail(c, 0, "fragment");
                return;
            }
            if (fin) {
                if (c->ops && c->ops->on_message)
                    c->ops->on_message(c, (const char *)pl, n);
                if (c->state != WSC_OPEN)
                    return;
            } else {
                c->in_msg = 1;
                c->msg.off = c->msg.len = 0;
                if (buf_append(&c->msg, pl, n) < 0) {
                    fail(c, 0, "oom");
                    return;
                }
            }
        } else {
            fail(c, 0, "opcode");
            return;
        }
        if (c->state != WSC_OPEN)
            return;
        buf_consume(&c->in, h + mh + n);
    }
}

static void on_readable(wsc_conn_t *c)
{
    for (;;) {
        if (buf_reserve(&c->in, WSC_READ_CHUNK) < 0) {
            fail(c, 0, "oom");
            return;
        }
        ssize_t n = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
        if (n > 0) {
            c->in.len += (size_t)n;
            if (c->state == WSC_HANDSHAKE) {
                int r = parse_upgrade(c);
                if (r < 0)
                    return;
                if (r == 0)
                    continue;
            }
            if (c->state == WSC_OPEN)
                parse_frames(c);
            if (c->state != WSC_OPEN)
                return;
            continue;
        }
        if (n == 0) {
            fail(c, 1006, "eof");
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        fail(c, 1006, "read");
        return;
    }
}

void wsc_handle(wsc_conn_t *c, uint32_t events)
{
    if (c->state == WSC_CLOSED || c->state == WSC_IDLE)
        return;
    if (c->state == WSC_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
            fail(c, 0, "refused");
            return;
        }
        send_upgrade(c);
        if (c->state == WSC_CLOSED)
            return;
    }
    if (events & EPOLLOUT)
        if (flush(c) < 0)
            return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        on_readable(c);
}
