/*
 * acceptor: our listening socket, bounded accepts per loop turn, and the
 * accepted sockets held until their first byte (see acceptor.h).
 */
#include "msghub/acceptor.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "msghub/dlist.h"
#include "msghub/http_head.h"
#include "msghub/http_status.h"
#include "msghub/util.h"

#define EMFILE_PAUSE_MS 100 /* out of descriptors: listen again after this */
#define DRAIN_MS 1000       /* after a refusal: read and drop input this long, for the answer */
#define DRAIN_READ 65536    /* bytes dropped per read while draining */

typedef struct held {
    uv_poll_t poll;
    mh_timer_t timer; /* idle deadline */
    mh_acceptor_t *a;
    mh_dlink_t link;    /* on the acceptor's held list */
    struct held *qnext; /* in the ready queue */
    int queued;         /* readable: waits for its turn (poll stopped) */
    int fd;
    int adopt;     /* closing the poll to hand fd to lws, not to close it */
    int draining;  /* refused: its answer is written, its input read and dropped until EOF */
    size_t peeked; /* bytes of the head seen at the last look (SO_RCVLOWAT is one more) */
    uint64_t accepted_ms;
} held_t;

struct mh_acceptor {
    mh_acceptor_options_t o;
    int fd;
    uv_poll_t listen;
    uv_timer_t pause;          /* EMFILE back-off */
    uv_check_t turn;           /* renews the per-turn budget, releases the ready queue */
    uv_idle_t busy;            /* active while the queue is not empty: the poll does not block */
    held_t *qhead, *qtail;     /* readable sockets, oldest first: adopt or close them */
    mh_dlist_t held;           /* of held_t: sockets being watched */
    size_t nheld;              /* held, including those whose poll is closing */
    uint32_t accepted, closes; /* accepts in this turn, idle closes in this tick */
    int handles;               /* uv handles not yet closed: the acceptor is freed at 0 */
    int closing;
    char *peek; /* head_max bytes: the head of the socket being looked at */
};

static uint64_t mono_ms(void)
{
    return mh_mono_us() / 1000u;
}

static int listen_socket(const char *host, int port)
{
    struct addrinfo hints = {0}, *res = NULL;
    char portstr[16];
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(portstr, sizeof(portstr), "%d", port);
    if (getaddrinfo(host, portstr, &hints, &res) || !res)
        return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
                    bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, SOMAXCONN))) {
        int e = errno;
        close(fd);
        errno = e;
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static void maybe_free(mh_acceptor_t *a)
{
    if (a->closing && a->handles == 0) {
        free(a->peek);
        free(a);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    mh_acceptor_t *a = h->data;
    a->handles--;
    maybe_free(a);
}

static void on_held_closed(uv_handle_t *uh)
{
    held_t *h = uh->data;
    mh_acceptor_t *a = h->a;
    a->nheld--; /* before adopt: lws counts it from here */
    if (h->adopt && !a->closing) {
        int one = 1;
        setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        a->o.adopt(a->o.ud, h->fd, h->accepted_ms);
    } else {
        close(h->fd);
    }
    free(h);
    a->handles--;
    maybe_free(a);
}

/* Stops watching h; its fd goes to lws (adopt) or is closed, from the close callback. */
static void release(held_t *h, int adopt)
{
    mh_acceptor_t *a = h->a;
    mh_dlist_unlink(&a->held, &h->link);
    mh_timerwheel_cancel(a->o.wheel, &h->timer);
    h->adopt = adopt;
    uv_close((uv_handle_t *)&h->poll, on_held_closed);
}

static void on_busy(uv_idle_t *i)
{
    (void)i; /* only there to keep the poll from blocking */
}

static void release(held_t *h, int adopt);

/* A refused socket's input: read and dropped, closed at EOF or an error. */
static void drain(held_t *h, int status)
{
    char buf[DRAIN_READ];
    ssize_t n = status == 0 ? recv(h->fd, buf, sizeof(buf), MSG_DONTWAIT) : -1;
    if (n > 0 || (n < 0 && status == 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    release(h, 0);
}

/*
 * Readable: its poll stops and it waits in the queue, so the work per turn
 * stays bounded (a crowd of peers closing at once would otherwise be closed
 * in one turn) and a socket waiting its turn does not wake every poll.
 */
static void on_readable(uv_poll_t *p, int status, int events)
{
    held_t *h = p->data;
    mh_acceptor_t *a = h->a;
    (void)events;
    if (h->draining) {
        drain(h, status);
        return;
    }
    char c;
    ssize_t n = status == 0 ? recv(h->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) : -1;
    if (n < 0 && status == 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    h->adopt = n > 0; /* else EOF or an error: closed here, lws never sees it */
    h->queued = 1;
    h->qnext = NULL; /* a socket whose head was partial comes back to the queue */
    uv_poll_stop(&h->poll);
    mh_timerwheel_cancel(a->o.wheel, &h->timer);
    if (a->qtail)
        a->qtail->qnext = h;
    else
        a->qhead = h;
    a->qtail = h;
    uv_idle_start(&a->busy, on_busy);
}

/* Writes the 414 / 431 answer, then drops the rest of the input until EOF or DRAIN_MS. */
static void refuse_head(held_t *h, int status, const char *message)
{
    mh_acceptor_t *a = h->a;
    char buf[DRAIN_READ];
    while (recv(h->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) /* what came: not a reset */
        ;
    mh_buf_t out;
    mh_buf_init(&out);
    mh_http_append_refusal(&out, status, MH_ERR_BAD_REQUEST, message);
    /* a fresh socket's send buffer takes these few hundred bytes whole */
    ssize_t n = send(h->fd, out.data, out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    mh_buf_free(&out);
    shutdown(h->fd, SHUT_WR);
    h->draining = 1;
    mh_timerwheel_add(a->o.wheel, &h->timer, mono_ms() + DRAIN_MS);
    uv_poll_start(&h->poll, UV_READABLE | UV_DISCONNECT, on_readable);
}

/*
 * A socket with bytes to read: handed to lws once its request head is whole
 * (or it is no HTTP/1.x head at all), refused past head_max, else watched
 * again until more bytes come (SO_RCVLOWAT: its poll wakes only then) or its
 * deadline. The bytes are peeked, never read: lws reads them all itself.
 */
static void look_at_head(held_t *h)
{
    mh_acceptor_t *a = h->a;
    size_t max = a->o.head_max;
    ssize_t n = max ? recv(h->fd, a->peek, max, MSG_PEEK | MSG_DONTWAIT) : 1;
    if (n <= 0 || (size_t)n == h->peeked) { /* gone, or EOF after a partial head */
        release(h, 0);
        return;
    }
    mh_http_head_t st = max ? mh_http_head_scan(a->peek, (size_t)n, max) : MH_HTTP_HEAD_READY;
    int lowat = 1;
    if (st == MH_HTTP_HEAD_READY) {
        if (h->peeked)
            setsockopt(h->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
        release(h, 1);
    } else if (st == MH_HTTP_HEAD_URI_TOO_LONG) {
        refuse_head(h, MH_HTTP_URI_TOO_LONG, "URI too long");
    } else if (st == MH_HTTP_HEAD_FIELDS_TOO_BIG) {
        refuse_head(h, MH_HTTP_HEADERS_TOO_LARGE, "request header too large");
    } else if (st == MH_HTTP_HEAD_NO_COLON) {
        refuse_head(h, MH_HTTP_BAD_REQUEST, "header line without a colon");
    } else {
        h->peeked = (size_t)n;
        lowat = (int)n + 1;
        setsockopt(h->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
        mh_timerwheel_add(a->o.wheel, &h->timer, h->accepted_ms + a->o.idle_timeout_ms);
        uv_poll_start(&h->poll, UV_READABLE | UV_DISCONNECT, on_readable);
    }
}

/* Adopts or closes up to per_turn queued sockets (a close costs the kernel about what an
 * adoption costs lws). */
static void release_ready(mh_acceptor_t *a)
{
    for (uint32_t i = 0; i < a->o.per_turn && a->qhead; i++) {
        held_t *h = a->qhead;
        a->qhead = h->qnext;
        if (!a->qhead)
            a->qtail = NULL;
        h->queued = 0;
        if (h->adopt)
            look_at_head(h);
        else
            release(h, 0);
    }
    if (!a->qhead)
        uv_idle_stop(&a->busy);
}

static void on_idle(mh_timer_t *t, void *ud)
{
    held_t *h = ud;
    mh_acceptor_t *a = h->a;
    if (a->closes >= a->o.closes_per_tick) {
        mh_timerwheel_add(a->o.wheel, t, mono_ms()); /* a past time: the next tick */
        return;
    }
    a->closes++;
    release(h, 0);
}

static void hold(mh_acceptor_t *a, int fd)
{
    held_t *h = mh_xcalloc(1, sizeof(*h));
    h->a = a;
    h->fd = fd;
    h->accepted_ms = mono_ms();
    if (uv_poll_init(a->o.loop, &h->poll, fd)) {
        close(fd);
        free(h);
        return;
    }
    h->poll.data = h;
    a->handles++;
    a->nheld++;
    mh_dlist_push_front(&a->held, &h->link);
    mh_timer_init(&h->timer, on_idle, h);
    mh_timerwheel_add(a->o.wheel, &h->timer, h->accepted_ms + a->o.idle_timeout_ms);
    uv_poll_start(&h->poll, UV_READABLE | UV_DISCONNECT, on_readable);
}

static void on_listen(uv_poll_t *p, int status, int events);

static void on_pause_over(uv_timer_t *t)
{
    mh_acceptor_t *a = t->data;
    uv_poll_start(&a->listen, UV_READABLE, on_listen);
}

static void on_listen(uv_poll_t *p, int status, int events)
{
    mh_acceptor_t *a = p->data;
    (void)status;
    (void)events;
    while (a->accepted < a->o.per_turn) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                uv_poll_stop(&a->listen); /* else a readable listener spins the loop */
                uv_timer_start(&a->pause, on_pause_over, EMFILE_PAUSE_MS, 0);
            }
            if (e == ECONNABORTED || e == EINTR)
                continue;
            return; /* EAGAIN: the backlog is empty */
        }
        a->accepted++;
        if (a->o.admit(a->o.ud))
            hold(a, fd);
        else
            close(fd);
    }
}

static void on_turn(uv_check_t *c)
{
    mh_acceptor_t *a = c->data;
    a->accepted = 0;
    release_ready(a);
}

mh_acceptor_t *mh_acceptor_new(const mh_acceptor_options_t *o)
{
    int fd = listen_socket(o->host, o->port);
    if (fd < 0)
        return NULL;
    mh_acceptor_t *a = mh_xcalloc(1, sizeof(*a));
    a->o = *o;
    a->fd = fd;
    a->peek = mh_xmalloc(o->head_max ? o->head_max : 1);
    if (uv_poll_init(o->loop, &a->listen, fd)) {
        close(fd);
        free(a);
        return NULL;
    }
    uv_timer_init(o->loop, &a->pause);
    uv_check_init(o->loop, &a->turn);
    uv_idle_init(o->loop, &a->busy);
    a->listen.data = a->pause.data = a->turn.data = a->busy.data = a;
    a->handles = 4;
    uv_poll_start(&a->listen, UV_READABLE, on_listen);
    uv_check_start(&a->turn, on_turn);
    return a;
}

void mh_acceptor_close(mh_acceptor_t *a)
{
    if (!a || a->closing)
        return;
    a->closing = 1;
    a->qhead = a->qtail = NULL;
    while (a->held.head)
        release(MH_CONTAINER_OF(a->held.head, held_t, link), 0);
    uv_close((uv_handle_t *)&a->listen, on_handle_closed);
    uv_close((uv_handle_t *)&a->pause, on_handle_closed);
    uv_close((uv_handle_t *)&a->turn, on_handle_closed);
    uv_close((uv_handle_t *)&a->busy, on_handle_closed);
    close(a->fd);
}

size_t mh_acceptor_held(const mh_acceptor_t *a)
{
    return a ? a->nheld : 0;
}

size_t mh_acceptor_end_tick(mh_acceptor_t *a)
{
    if (!a)
        return 0;
    size_t n = a->closes;
    a->closes = 0;
    return n;
}
