/* msghub-bench: a single-threaded load generator for msghub and its peers.
 *
 * It opens --connections WebSocket clients (spread round-robin over every
 * --url), learns each one's hub-assigned id, then lets --senders of them
 * relay messages to --receivers-per-relay receivers chosen among all
 * connected ids, either open loop at --rate relays/s in total or closed loop
 * (--rate max: each sender keeps --window relays in flight and sends the next
 * when every receiver of one has got it). Each body carries its send time
 * (CLOCK_MONOTONIC ns), the sender and a sequence number, so the receiving
 * client computes the end-to-end latency. Only relays sent inside the
 * measurement window (after --warmup, for --duration) count. At the end one
 * JSON line goes to stdout.
 *
 * Dialects: msghub (PROTOCOL.md), socketio (Engine.IO v4 / Socket.IO text
 * frames over a plain WebSocket, see ../shared/peers/socketio/server.js) and
 * centrifugo (JSON protocol, personal channels, client publish).
 *
 * --http-connections H: the relays go out as POST /relay over H keep-alive
 * HTTP/1.1 connections to the first --url's host (closed loop: each
 * connection sends the next request when it has the answer), every
 * WebSocket client is a receiver; each answer's status line and body are
 * checked, wrong ones counted apart. --cross: a relay's receivers are
 * clients of another --url than its sender's (HTTP senders: the first).
 *
 * Only loopback addresses are accepted as targets. */
#include "floor.h"
#include "hist.h"
#include "httpc.h"
#include "wsc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_URLS 8
#define MAX_PIDS 8
#define MAX_CONNECTIONS 19000
#define MAX_RECEIVERS 255
#define MAX_BODY (1 << 20)
#define SEND_BACKLOG_LIMIT (4u << 20) /* skip a relay when its sender has this much unsent */
#define OPEN_LOOP_BURST 2000          /* most relays sent in one loop turn when behind */
#define POLL_MAX_WAIT_NS 10000000     /* the loop wakes at least every 10 ms */
#define DRAIN_MAX_S 60                /* the drain ends this long after the window at the latest */
#define MAX_HTTP 256                  /* --http-connections */
#define HTTP_SENDER_BASE (1 << 20)    /* "bs" of HTTP relays: past every WebSocket sender */

enum dialect { D_MSGHUB, D_SOCKETIO, D_CENTRIFUGO };
static const char *const dialect_names[] = {"msghub", "socketio", "centrifugo"};

typedef struct target {
    char url[512];
    char host[128];
    char path[384];
    struct sockaddr_in addr;
} target_t;

static struct options {
    target_t urls[MAX_URLS];
    int nurls;
    enum dialect dialect;
    int connections;
    int senders;
    int receivers;
    int fixed;   /* receiver mode: 1 = fixed per sender, 0 = random per relay */
    double rate; /* relays/s in total; 0 = closed loop ("max") */
    int window;
    int body_bytes;
    double duration, warmup, drain, connect_timeout, relay_timeout;
    int connect_concurrency;
    int pids[MAX_PIDS];
    int npids;
    int aux_pids[MAX_PIDS]; /* backplane processes: CPU only, reported apart */
    int naux;
    const char *label;
    const char *token_secret; /* centrifugo: HS256 key for connection JWTs */
    const char *channel_fmt;  /* centrifugo: personal channel of a user id */
    uint64_t seed;
    int verbose;
    struct sockaddr_in source; /* --source: local address of every client */
    int has_source;
    int http;  /* --http-connections: POST /relay senders, 0 = WebSocket senders */
    int cross; /* receivers on another target than the sender's */
} O = {
    .dialect = D_MSGHUB,
    .connections = 100,
    .senders = 10,
    .receivers = 10,
    .rate = 1000,
    .window = 1,
    .body_bytes = 256,
    .duration = 10,
    .warmup = 2,
    .drain = 3,
    .connect_timeout = 60,
    .relay_timeout = 5,
    .connect_concurrency = 200,
    .label = "",
    .token_secret = "",
    .channel_fmt = "#%llu",
    .seed = 0,
};

typedef struct client {
    wsc_conn_t ws; /* first: the epoll data pointer is the client */
    uint64_t id;
    int target;
    int ready;   /* id known, requests may flow */
    int started; /* connect attempted */
    int done;    /* closed or failed */
    int64_t t_start;
} client_t;

typedef struct slot {
    uint64_t seq;
    int remaining; /* receivers still to get it; 0 = free */
    int64_t t;
} slot_t;

typedef struct sender {
    int client;
    uint64_t seq;
    int *fixed; /* fixed receivers: client indices */
    slot_t *slots;
} sender_t;

typedef struct stats {
    uint64_t relays_sent;      /* all phases */
    uint64_t relays_window;    /* sent inside the measurement window */
    uint64_t expected_window;  /* deliveries those should cause */
    uint64_t delivered_window; /* deliveries of those, received */
    uint64_t delivered_all;
    uint64_t relays_skipped; /* sender backlog over the limit */
    uint64_t relay_timeouts; /* closed loop: a relay not complete in time */
    uint64_t connect_failed;
    uint64_t closed_after_ready;
    uint64_t server_errors;
    uint64_t protocol_errors;
    uint64_t send_failed;
    uint64_t pings;
    hist_t lat;
    hist_t lag; /* open loop: actual send time - scheduled time */
    /* POST /relay (--http-connections), requests sent inside the window */
    uint64_t http_window, http_ok_window; /* sent; answered 200 with the expected body */
    uint64_t http_ok, http_non2xx, http_bad_answer, http_closed, http_send_failed; /* all */
    hist_t http_lat; /* request written -> whole answer read, ok answers in the window */
} stats_t;

typedef struct http_sender {
    uint64_t seq;
    int64_t t;   /* when the request in flight was sent */
    int k;       /* its receivers */
    int counted; /* it was sent inside the window */
} http_sender_t;

static client_t *C;
static sender_t *S;
static int *ready_list;
static int nready;
static int *others[MAX_URLS]; /* --cross: ready clients not on target t */
static int nothers[MAX_URLS];
static httpc_conn_t *H;
static http_sender_t *HS;
static stats_t ST;
static int64_t t_measure_start = INT64_MAX, t_measure_end = INT64_MAX;
static int sending; /* load phase: relays may be sent */
static uint64_t rng_state;
static char *scratch;
static size_t scratch_cap;
static char last_error[160];
static volatile sig_atomic_t interrupted;

/* ---- small helpers ---- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("msghub-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void note_error(const char *fmt, ...)
{
    if (last_error[0])
        return; /* keep the first one: usually the cause */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
}

static void vlog(const char *fmt, ...)
{
    if (!O.verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("msghub-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Parses the unsigned integer right after `key` in p[0..n). */
static int find_u64(const char *p, size_t n, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    const char *k = memmem(p, n, key, kl);
    if (!k)
        return -1;
    const char *q = k + kl, *end = p + n;
    while (q < end && *q == ' ')
        q++;
    if (q >= end || *q < '0' || *q > '9')
        return -1;
    uint64_t v = 0;
    while (q < end && *q >= '0' && *q <= '9')
        v = v * 10 + (uint64_t)(*q++ - '0');
    *out = v;
    return 0;
}

static char *scratch_get(size_t n)
{
    if (n > scratch_cap) {
        free(scratch);
        scratch_cap = n + 4096;
        scratch = malloc(scratch_cap);
        if (!scratch)
            die("out of memory");
    }
    return scratch;
}

/* ---- /proc of the hub processes ---- */

typedef struct proc_sample {
    long rss_kb, hwm_kb;
    double cpu_s;
    int ok;
    double wait_s; /* runnable but waiting for a CPU (/proc/PID/schedstat), main threads */
} proc_sample_t;

/* Seconds the thread of a /proc/.../schedstat file waited on a run queue. */
static double runq_wait_s(const char *path)
{
    FILE *f = fopen(path, "r");
    unsigned long long run = 0, wait = 0;
    if (!f)
        return 0;
    int n = fscanf(f, "%llu %llu", &run, &wait);
    fclose(f);
    return n == 2 ? (double)wait / 1e9 : 0;
}

static proc_sample_t sample_procs(const int *pids, int npids)
{
    proc_sample_t s = {.ok = 1};
    long tick = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < npids; i++) {
        char path[64], line[256];
        snprintf(path, sizeof(path), "/proc/%d/status", pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) {
            s.ok = 0;
            continue;
        }
        while (fgets(line, sizeof(line), f)) {
            long v;
            if (sscanf(line, "VmRSS: %ld", &v) == 1)
                s.rss_kb += v;
            else if (sscanf(line, "VmHWM: %ld", &v) == 1)
                s.hwm_kb += v;
        }
        fclose(f);
        snprintf(path, sizeof(path), "/proc/%d/stat", pids[i]);
        f = fopen(path, "r");
        if (!f) {
            s.ok = 0;
            continue;
        }
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        unsigned long ut = 0, st = 0;
        /* after ") ": state(3) ... utime(14) stime(15) */
        if (rp &&
            sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            s.cpu_s += (double)(ut + st) / (double)tick;
        snprintf(path, sizeof(path), "/proc/%d/schedstat", pids[i]);
        s.wait_s += runq_wait_s(path);
    }
    return s;
}

/* Busy CPU seconds of the whole machine, all cores (from /proc/stat). */
static double machine_busy_s(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 5)
        return 0;
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; /* not idle, iowait */
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

static proc_sample_t sample_pids(void)
{
    return sample_procs(O.pids, O.npids);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- centrifugo connection tokens (HS256 JWT) ---- */

static void b64url(const uint8_t *in, size_t n, char *out)
{
    wsc_base64(in, n, out);
    char *w = out;
    for (char *r = out; *r; r++) {
        if (*r == '=')
            continue;
        *w++ = *r == '+' ? '-' : *r == '/' ? '_' : *r;
    }
    *w = '\0';
}

static void make_jwt(uint64_t sub, char *out, size_t cap)
{
    const char *hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char pl[128], h64[64], p64[192], sig64[64], signing[320];
    long exp = (long)time(NULL) + 86400;
    snprintf(pl, sizeof(pl), "{\"sub\":\"%" PRIu64 "\",\"exp\":%ld}", sub, exp);
    b64url((const uint8_t *)hdr, strlen(hdr), h64);
    b64url((const uint8_t *)pl, strlen(pl), p64);
    int sl = snprintf(signing, sizeof(signing), "%s.%s", h64, p64);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), O.token_secret, (int)strlen(O.token_secret), (const uint8_t *)signing,
         (size_t)sl, mac, &ml);
    b64url(mac, ml, sig64);
    snprintf(out, cap, "%s.%s", signing, sig64);
}

/* ---- the relay ---- */

static size_t make_body(char *out, int64_t t, int sender, uint64_t seq)
{
    int n =
        sprintf(out, "{\"bt\":%" PRId64 ",\"bs\":%d,\"bq\":%" PRIu64 ",\"pad\":\"", t, sender, seq);
    int pad = O.body_bytes - n - 2;
    if (pad < 0)
        pad = 0;
    memset(out + n, 'x', (size_t)pad);
    n += pad;
    out[n++] = '"';
    out[n++] = '}';
    return (size_t)n;
}

/* K distinct clients of list[0..n): a partial Fisher-Yates shuffle of it. */
static void random_from(int *list, int n, int *out, int k)
{
    for (int j = 0; j < k; j++) {
        int r = j + (int)(wsc_rand(&rng_state) % (uint64_t)(n - j));
        int tmp = list[j];
        list[j] = list[r];
        list[r] = tmp;
        out[j] = list[j];
    }
}

/* K distinct receivers for a sender on target t: any ready client, or with
 * --cross one on another target. */
static void random_receivers(int t, int *out, int k)
{
    if (O.cross)
        random_from(others[t], nothers[t], out, k);
    else
        random_from(ready_list, nready, out, k);
}

static int choose_receivers(sender_t *s, int *out)
{
    if (O.fixed)
        memcpy(out, s->fixed, sizeof(int) * (size_t)O.receivers);
    else
        random_receivers(C[s->client].target, out, O.receivers);
    return O.receivers;
}

/*
 * Writes head, the ids of the k receivers recv[], then "],"body":" body[bl]
 * and "}" into buf; returns the length. The caller sized buf.
 */
static size_t put_relay(char *buf, const char *head, const int *recv, int k, const char *body,
                        size_t bl)
{
    size_t n = (size_t)sprintf(buf, "%s", head);
    for (int j = 0; j < k; j++)
        n += (size_t)sprintf(buf + n, "%s%" PRIu64, j ? "," : "", C[recv[j]].id);
    n += (size_t)sprintf(buf + n, "],\"body\":");
    memcpy(buf + n, body, bl);
    n += bl;
    buf[n++] = '}';
    return n;
}

/* Sends one relay from sender si (open loop: scheduled is its due time;
 * closed loop: it fills window slot `slot`). Returns its receiver count, 0
 * when it could not be sent. */
static int send_relay(int si, int64_t scheduled, int slot)
{
    sender_t *s = &S[si];
    client_t *c = &C[s->client];
    if (!c->ready || c->ws.state != WSC_OPEN) {
        ST.send_failed++;
        return 0;
    }
    if (wsc_pending(&c->ws) > SEND_BACKLOG_LIMIT) {
        ST.relays_skipped++;
        return 0;
    }
    int recv[MAX_RECEIVERS];
    int k = choose_receivers(s, recv);
    size_t cap = (size_t)O.body_bytes + 128 + (size_t)k * (40 + strlen(O.channel_fmt));
    if (O.dialect == D_CENTRIFUGO)
        cap += (size_t)k * ((size_t)O.body_bytes + 160);
    char *buf = scratch_get(cap);
    static char body[MAX_BODY + 256];
    uint64_t seq = s->seq++;
    int64_t t = now_ns();
    size_t bl = make_body(body, t, si, seq);
    size_t n = 0;
    if (O.dialect == D_CENTRIFUGO) {
        for (int j = 0; j < k; j++) {
            char ch[96];
            snprintf(ch, sizeof(ch), O.channel_fmt, (unsigned long long)C[recv[j]].id);
            n += (size_t)sprintf(buf + n,
                                 "%s{\"id\":%" PRIu64 ",\"publish\":{\"channel\":\"%s\",\"data\":",
                                 j ? "\n" : "", 1000 + seq * MAX_RECEIVERS + (uint64_t)j, ch);
            memcpy(buf + n, body, bl);
            n += bl;
            buf[n++] = '}';
            buf[n++] = '}';
        }
    } else {
        n = put_relay(buf,
                      O.dialect == D_MSGHUB ? "{\"type\":\"relay\",\"receivers\":["
                                            : "42[\"relay\",{\"receivers\":[",
                      recv, k, body, bl);
        if (O.dialect == D_SOCKETIO)
            buf[n++] = ']';
    }
    if (wsc_send(&c->ws, WSC_OP_TEXT, buf, n) < 0) {
        ST.send_failed++;
        return 0;
    }
    ST.relays_sent++;
    if (t >= t_measure_start && t < t_measure_end) {
        ST.relays_window++;
        ST.expected_window += (uint64_t)k;
    }
    if (scheduled)
        hist_add(&ST.lag, (uint64_t)(t > scheduled ? t - scheduled : 0));
    if (s->slots && slot >= 0) {
        slot_t *sl = &s->slots[slot];
        sl->seq = seq;
        sl->remaining = k;
        sl->t = t;
    }
    return k;
}

/* Closed loop: the relay (si, seq) reached one more receiver. */
static void closed_loop_ack(uint64_t si, uint64_t seq)
{
    if (si >= (uint64_t)O.senders || !S[si].slots)
        return;
    for (int w = 0; w < O.window; w++) {
        slot_t *sl = &S[si].slots[w];
        if (sl->seq != seq || sl->remaining <= 0)
            continue;
        if (--sl->remaining == 0 && sending)
            send_relay((int)si, 0, w);
        return;
    }
}

static void closed_loop_timeouts(int64_t now)
{
    int64_t limit = (int64_t)(O.relay_timeout * 1e9);
    for (int i = 0; i < O.senders; i++)
        for (int w = 0; w < O.window; w++) {
            slot_t *sl = &S[i].slots[w];
            if (sl->remaining > 0 && now - sl->t > limit) {
                sl->remaining = 0;
                ST.relay_timeouts++;
                if (sending)
                    send_relay(i, 0, w);
            }
        }
}

/* ---- POST /relay senders (--http-connections) ---- */

/* Queues the next relay of HTTP sender i when it may send. */
static void http_send(int i)
{
    httpc_conn_t *h = &H[i];
    http_sender_t *hs = &HS[i];
    if (!sending || h->state != HTTPC_OPEN || h->busy)
        return;
    int recv[MAX_RECEIVERS], k = O.receivers;
    random_receivers(0, recv, k);
    static char body[MAX_BODY + 256], head[512];
    char *buf = scratch_get((size_t)O.body_bytes + 128 + (size_t)k * 24);
    uint64_t seq = hs->seq++;
    int64_t t = now_ns();
    size_t bl = make_body(body, t, HTTP_SENDER_BASE + i, seq);
    size_t n = put_relay(buf, "{\"receivers\":[", recv, k, body, bl);
    snprintf(head, sizeof(head),
             "POST /relay HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json", O.urls[0].host);
    if (httpc_request(h, head, buf, n) < 0) {
        ST.http_send_failed++;
        note_error("POST /relay on connection %d could not be sent", i);
        return;
    }
    ST.relays_sent++;
    hs->t = t;
    hs->k = k;
    hs->counted = t >= t_measure_start && t < t_measure_end;
    if (hs->counted) {
        ST.http_window++;
        ST.relays_window++;
        ST.expected_window += (uint64_t)k;
    }
}

/* The answer is exactly what the dialect promises for k known receivers:
 * msghub 200 {"id":"<id>","accepted":k,"unknown":[]}, Socket.IO's peer
 * 200 {"accepted":k}. */
static int http_answer_ok(const httpc_response_t *r, int k)
{
    static const char ok_line[] = "HTTP/1.1 200 OK";
    if (r->status_len != sizeof(ok_line) - 1 || memcmp(r->status_line, ok_line, r->status_len))
        return 0;
    char want[96];
    const char *b = r->body, *rest = b;
    size_t bl = r->body_len;
    if (O.dialect == D_MSGHUB) {
        const char *q = bl > 8 && !memcmp(b, "{\"id\":\"", 7) ? memchr(b + 7, '"', bl - 7) : NULL;
        if (!q || q == b + 7)
            return 0;
        rest = q + 1;
        snprintf(want, sizeof(want), ",\"accepted\":%d,\"unknown\":[]}", k);
    } else {
        snprintf(want, sizeof(want), "{\"accepted\":%d}", k);
    }
    size_t wl = strlen(want);
    return (size_t)(b + bl - rest) == wl && !memcmp(rest, want, wl);
}

static void http_on_response(httpc_conn_t *h, const httpc_response_t *r)
{
    http_sender_t *hs = &HS[h->index];
    int64_t now = now_ns();
    int sl = (int)r->status_len, bl = (int)(r->body_len > 120 ? 120 : r->body_len);
    if (r->status < 200 || r->status > 299) {
        ST.http_non2xx++;
        if (hs->counted) /* not accepted: nobody should get it */
            ST.expected_window -= (uint64_t)hs->k;
        note_error("POST /relay: %.*s %.*s", sl, r->status_line, bl, r->body);
    } else if (!http_answer_ok(r, hs->k)) {
        ST.http_bad_answer++;
        note_error("POST /relay, unexpected answer: %.*s %.*s", sl, r->status_line, bl, r->body);
    } else {
        ST.http_ok++;
        if (hs->counted) {
            ST.http_ok_window++;
            hist_add(&ST.http_lat, (uint64_t)(now > hs->t ? now - hs->t : 0));
        }
    }
    hs->counted = 0;
    http_send(h->index);
}

static void http_on_open(httpc_conn_t *h)
{
    http_send(h->index);
}

static void http_on_close(httpc_conn_t *h, const char *why)
{
    ST.http_closed++;
    note_error("POST /relay connection %d closed: %s", h->index, why);
}

static const httpc_ops_t HTTP_OPS = {http_on_open, http_on_response, http_on_close};

static void http_start(int ep)
{
    H = calloc((size_t)O.http, sizeof(*H));
    HS = calloc((size_t)O.http, sizeof(*HS));
    if (!H || !HS)
        die("out of memory");
    for (int i = 0; i < O.http; i++) {
        H[i].index = i;
        H[i].ops = &HTTP_OPS;
        if (httpc_connect(&H[i], ep, &O.urls[0].addr) < 0) {
            ST.http_closed++;
            note_error("connect for POST /relay: %s", strerror(errno));
        }
    }
}

/* One epoll event: an HTTP sender's or a WebSocket client's. */
static void dispatch(const struct epoll_event *e)
{
    httpc_conn_t *h = e->data.ptr;
    if (H && h >= H && h < H + O.http)
        httpc_handle(h, e->events);
    else
        wsc_handle(&((client_t *)e->data.ptr)->ws, e->events);
}

/* --cross: for every target, the ready clients on the other targets. */
static void build_others(void)
{
    for (int t = 0; t < O.nurls; t++) {
        others[t] = malloc(sizeof(int) * (size_t)(nready ? nready : 1));
        if (!others[t])
            die("out of memory");
        nothers[t] = 0;
        for (int i = 0; i < nready; i++)
            if (C[ready_list[i]].target != t)
                others[t][nothers[t]++] = ready_list[i];
    }
}

/* Every benchmark body inside a message: count it and its latency. */
static void deliveries(const char *p, size_t n)
{
    int64_t now = now_ns();
    const char *end = p + n;
    while (p < end) {
        const char *k = memmem(p, (size_t)(end - p), "\"bt\":", 5);
        if (!k)
            return;
        size_t rest = (size_t)(end - k);
        uint64_t t = 0, si = 0, seq = 0;
        if (find_u64(k, rest, "\"bt\":", &t) < 0 || find_u64(k, rest, "\"bs\":", &si) < 0 ||
            find_u64(k, rest, "\"bq\":", &seq) < 0) {
            ST.protocol_errors++;
            note_error("unparsable delivery");
            return;
        }
        ST.delivered_all++;
        if ((int64_t)t >= t_measure_start && (int64_t)t < t_measure_end) {
            ST.delivered_window++;
            hist_add(&ST.lat, (uint64_t)(now > (int64_t)t ? now - (int64_t)t : 0));
        }
        closed_loop_ack(si, seq);
        p = k + 5;
    }
}

/* ---- dialects ---- */

static void on_open(wsc_conn_t *w)
{
    client_t *c = (client_t *)w;
    if (O.dialect == D_CENTRIFUGO) {
        char tok[512], req[640];
        make_jwt(c->id, tok, sizeof(tok));
        int n = snprintf(req, sizeof(req), "{\"id\":1,\"connect\":{\"token\":\"%s\"}}", tok);
        wsc_send(w, WSC_OP_TEXT, req, (size_t)n);
    }
}

static void became_ready(client_t *c, uint64_t id)
{
    if (c->ready)
        return;
    c->id = id;
    c->ready = 1;
}

static void server_error(client_t *c, const char *p, size_t n)
{
    ST.server_errors++;
    note_error("client %d got: %.*s", c->ws.index, (int)(n > 120 ? 120 : n), p);
}

static void on_msghub(client_t *c, const char *p, size_t n)
{
    if (n > 40 && memmem(p, n < 64 ? n : 64, "\"type\":\"message\"", 16)) {
        deliveries(p, n);
        return;
    }
    uint64_t id;
    if (memmem(p, n < 64 ? n : 64, "\"type\":\"hello\"", 14)) {
        if (find_u64(p, n, "\"id\":", &id) < 0 || id == 0) {
            ST.protocol_errors++;
            note_error("hello without id");
            return;
        }
        became_ready(c, id);
    } else if (memmem(p, n < 64 ? n : 64, "\"type\":\"error\"", 14)) {
        server_error(c, p, n);
    } /* relayed, pong, ...: nothing to do */
}

static void on_socketio(client_t *c, const char *p, size_t n)
{
    if (n == 0) {
        ST.protocol_errors++;
        return;
    }
    switch (p[0]) {
    case '0': /* Engine.IO open: connect to the default namespace */
        wsc_send(&c->ws, WSC_OP_TEXT, "40", 2);
        return;
    case '2': /* Engine.IO ping */
        ST.pings++;
        wsc_send(&c->ws, WSC_OP_TEXT, "3", 1);
        return;
    case '1': /* Engine.IO close */
        server_error(c, p, n);
        return;
    case '6': /* noop */
        return;
    case '4':
        break;
    default:
        ST.protocol_errors++;
        note_error("unknown engine.io packet %.*s", (int)(n > 40 ? 40 : n), p);
        return;
    }
    if (n < 2)
        return;
    if (p[1] == '2') { /* Socket.IO EVENT */
        if (n > 13 && memcmp(p, "42[\"message\"", 12) == 0) {
            deliveries(p, n);
        } else if (n > 10 && memcmp(p, "42[\"hello\"", 10) == 0) {
            uint64_t id;
            if (find_u64(p, n, "\"id\":", &id) < 0 || id == 0) {
                ST.protocol_errors++;
                note_error("hello without id");
                return;
            }
            became_ready(c, id);
        }
    } else if (p[1] == '1' || p[1] == '4') { /* DISCONNECT, CONNECT_ERROR */
        server_error(c, p, n);
    } /* '0' CONNECT ack: the hello follows */
}

static void on_centrifugo(client_t *c, const char *p, size_t n)
{
    /* One frame may hold several newline-separated replies and pushes. */
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (l == 2 && p[0] == '{' && p[1] == '}') {
            ST.pings++;
            wsc_send(&c->ws, WSC_OP_TEXT, "{}", 2); /* ping -> pong */
        } else if (memmem(p, l, "\"bt\":", 5)) {
            deliveries(p, l);
        } else if (memmem(p, l, "\"error\":", 8)) {
            server_error(c, p, l);
        } else if (memmem(p, l, "\"connect\":", 10)) {
            became_ready(c, c->id);
        }
        p += l + 1;
    }
}

static void on_message(wsc_conn_t *w, const char *p, size_t n)
{
    client_t *c = (client_t *)w;
    switch (O.dialect) {
    case D_MSGHUB:
        on_msghub(c, p, n);
        break;
    case D_SOCKETIO:
        on_socketio(c, p, n);
        break;
    case D_CENTRIFUGO:
        on_centrifugo(c, p, n);
        break;
    }
}

static void on_close(wsc_conn_t *w, int code, const char *why)
{
    client_t *c = (client_t *)w;
    c->done = 1;
    if (c->ready) {
        ST.closed_after_ready++;
        note_error("client %d (id %" PRIu64 ") closed: %s %d", w->index, c->id, why, code);
    } else {
        ST.connect_failed++;
        note_error("client %d failed to connect: %s %d", w->index, why, code);
    }
}

static const wsc_ops_t OPS = {on_open, on_message, on_close};

/* ---- options ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: msghub-bench --url ws://127.0.0.1:PORT/PATH [OPTION]...\n"
            "       msghub-bench floor [--help]   one frame per send(), no hub\n"
            "       msghub-bench --self-test      quick checks of the tool itself (CI)\n"
            "Drives a WebSocket hub with relays and prints one JSON line of results.\n\n"
            "  --url URL                 target (repeat: clients are spread round-robin);\n"
            "                            loopback addresses only\n"
            "  --dialect NAME            msghub | socketio | centrifugo [msghub]\n"
            "  --connections N           clients, idle and active [100]\n"
            "  --senders S               clients that relay (the first S) [10]\n"
            "  --receivers-per-relay K   receivers of each relay [10]\n"
            "  --receiver-mode MODE      random (new receivers each relay) | fixed [random]\n"
            "  --rate R|max              relays/s in total, open loop; max = closed loop [1000]\n"
            "  --window W                closed loop: relays in flight per sender, 1..64 [1]\n"
            "  --body-bytes B            JSON text length of each body [256]\n"
            "  --duration D              measurement window, seconds [10]\n"
            "  --warmup W                load before the window, seconds [2]\n"
            "  --drain D                 after the window, wait for late deliveries until all\n"
            "                            are in or none came for D seconds (at most 60 s);\n"
            "                            lost = still missing then [3]\n"
            "  --connect-timeout T       seconds for every client to get its id [60]\n"
            "  --connect-concurrency N   handshakes in flight [200]\n"
            "  --relay-timeout T         closed loop: give a relay up after T s [5]\n"
            "  --pid PID                 hub process to sample (repeat): VmRSS, VmHWM, CPU\n"
            "  --aux-pid PID             backplane process (Redis, RabbitMQ; repeat): CPU\n"
            "  --label TEXT              copied into the JSON line\n"
            "  --token-secret KEY        centrifugo: HS256 key of the connection JWTs\n"
            "  --channel FMT             centrifugo: personal channel, printf of the id [#%%llu]\n"
            "  --http-connections H      relays as POST /relay over H keep-alive HTTP/1.1\n"
            "                            connections to the first url's host, closed loop;\n"
            "                            wants --senders 0 --rate max; requests up to 64 KiB,\n"
            "                            no --relay-timeout [0: WebSocket senders]\n"
            "  --cross                   receivers on another --url than the sender's\n"
            "                            (HTTP senders: the first)\n"
            "  --seed N                  random seed [from the clock]\n"
            "  --source ADDR             local address of the clients (127.x.y.z): more\n"
            "                            than one process of clients get more ports\n"
            "  --verbose                 progress on stderr\n");
}

static void parse_url(const char *u, target_t *t)
{
    if (strlen(u) >= sizeof(t->url))
        die("url too long");
    strcpy(t->url, u);
    if (strncmp(u, "ws://", 5) != 0)
        die("only ws:// urls: %s", u);
    const char *h = u + 5, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0 || hl >= sizeof(t->host))
        die("bad host in %s", u);
    memcpy(t->host, h, hl);
    t->host[hl] = '\0';
    snprintf(t->path, sizeof(t->path), "%s", slash ? slash : "/");
    char name[128];
    strcpy(name, t->host);
    int port = 80;
    char *colon = strrchr(name, ':');
    if (colon) {
        *colon = '\0';
        port = atoi(colon + 1);
    }
    if (port <= 0 || port > 65535)
        die("bad port in %s", u);
    memset(&t->addr, 0, sizeof(t->addr));
    t->addr.sin_family = AF_INET;
    t->addr.sin_port = htons((uint16_t)port);
    if (strcmp(name, "localhost") == 0)
        strcpy(name, "127.0.0.1");
    if (inet_pton(AF_INET, name, &t->addr.sin_addr) != 1)
        die("host must be an IPv4 loopback address or localhost: %s", u);
    if ((ntohl(t->addr.sin_addr.s_addr) >> 24) != 127)
        die("refusing a non-loopback target: %s", u);
}

static double num_arg(const char *name, const char *v, double lo, double hi)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi))
        die("%s wants a number in [%g, %g], got '%s'", name, lo, hi, v);
    return d;
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--verbose")) {
            O.verbose = 1;
            continue;
        }
        if (!strcmp(a, "--cross")) {
            O.cross = 1;
            continue;
        }
        if (i + 1 >= argc)
            die("%s needs a value (try --help)", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--url")) {
            if (O.nurls == MAX_URLS)
                die("at most %d urls", MAX_URLS);
            parse_url(v, &O.urls[O.nurls++]);
        } else if (!strcmp(a, "--dialect")) {
            int found = 0;
            for (int d = 0; d < 3; d++)
                if (!strcmp(v, dialect_names[d])) {
                    O.dialect = (enum dialect)d;
                    found = 1;
                }
            if (!found)
                die("unknown dialect %s", v);
        } else if (!strcmp(a, "--connections")) {
            O.connections = (int)num_arg(a, v, 1, MAX_CONNECTIONS);
        } else if (!strcmp(a, "--senders")) {
            O.senders = (int)num_arg(a, v, 0, MAX_CONNECTIONS);
        } else if (!strcmp(a, "--receivers-per-relay")) {
            O.receivers = (int)num_arg(a, v, 1, MAX_RECEIVERS);
        } else if (!strcmp(a, "--receiver-mode")) {
            if (strcmp(v, "random") && strcmp(v, "fixed"))
                die("--receiver-mode is random or fixed");
            O.fixed = !strcmp(v, "fixed");
        } else if (!strcmp(a, "--rate")) {
            O.rate = !strcmp(v, "max") ? 0 : num_arg(a, v, 0.001, 1e7);
        } else if (!strcmp(a, "--window")) {
            O.window = (int)num_arg(a, v, 1, 64);
        } else if (!strcmp(a, "--body-bytes")) {
            O.body_bytes = (int)num_arg(a, v, 0, MAX_BODY);
        } else if (!strcmp(a, "--duration")) {
            O.duration = num_arg(a, v, 0.1, 3600);
        } else if (!strcmp(a, "--warmup")) {
            O.warmup = num_arg(a, v, 0, 600);
        } else if (!strcmp(a, "--drain")) {
            O.drain = num_arg(a, v, 0, 600);
        } else if (!strcmp(a, "--connect-timeout")) {
            O.connect_timeout = num_arg(a, v, 0.1, 600);
        } else if (!strcmp(a, "--connect-concurrency")) {
            O.connect_concurrency = (int)num_arg(a, v, 1, 10000);
        } else if (!strcmp(a, "--relay-timeout")) {
            O.relay_timeout = num_arg(a, v, 0.01, 600);
        } else if (!strcmp(a, "--pid")) {
            if (O.npids == MAX_PIDS)
                die("at most %d pids", MAX_PIDS);
            O.pids[O.npids++] = (int)num_arg(a, v, 1, 1 << 30);
        } else if (!strcmp(a, "--aux-pid")) {
            if (O.naux == MAX_PIDS)
                die("at most %d aux pids", MAX_PIDS);
            O.aux_pids[O.naux++] = (int)num_arg(a, v, 1, 1 << 30);
        } else if (!strcmp(a, "--label")) {
            O.label = v;
        } else if (!strcmp(a, "--token-secret")) {
            O.token_secret = v;
        } else if (!strcmp(a, "--channel")) {
            const char *pc = strchr(v, '%');
            if (!pc || strncmp(pc, "%llu", 4) != 0 || strchr(pc + 1, '%') || strlen(v) > 64)
                die("--channel wants a printf format with exactly one %%llu");
            O.channel_fmt = v;
        } else if (!strcmp(a, "--source")) {
            O.source.sin_family = AF_INET;
            if (inet_pton(AF_INET, v, &O.source.sin_addr) != 1 ||
                (ntohl(O.source.sin_addr.s_addr) >> 24) != 127)
                die("--source wants a loopback IPv4 address, got '%s'", v);
            O.has_source = 1;
        } else if (!strcmp(a, "--http-connections")) {
            O.http = (int)num_arg(a, v, 0, MAX_HTTP);
        } else if (!strcmp(a, "--seed")) {
            O.seed = (uint64_t)num_arg(a, v, 0, 1e18);
        } else {
            die("unknown option %s (try --help)", a);
        }
    }
    if (O.nurls == 0)
        die("--url is required (try --help)");
    if (O.senders > O.connections)
        die("--senders (%d) is more than --connections (%d)", O.senders, O.connections);
    if (O.http > 0 && (O.senders > 0 || O.rate > 0 || O.dialect == D_CENTRIFUGO))
        die("--http-connections wants --senders 0, --rate max and dialect msghub or socketio");
    if (O.cross && O.nurls < 2)
        die("--cross wants two --url or more");
    if (O.senders > 0 && O.receivers > O.connections)
        die("--receivers-per-relay (%d) is more than --connections (%d)", O.receivers,
            O.connections);
}

/* ---- JSON report ---- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

/* The POST /relay figures of the JSON line. */
static void http_report(FILE *f, double win)
{
    fprintf(f,
            ",\"http_connections\":%d,\"http_requests_window\":%" PRIu64
            ",\"http_ok_window\":%" PRIu64 ",\"requests_per_s\":%.1f,\"http_p50_ms\":%.3f"
            ",\"http_p99_ms\":%.3f,\"http_p999_ms\":%.3f,\"http_max_ms\":%.3f"
            ",\"http_errors\":{\"non_2xx\":%" PRIu64 ",\"bad_answer\":%" PRIu64
            ",\"closed\":%" PRIu64 ",\"send_failed\":%" PRIu64 "}",
            O.http, ST.http_window, ST.http_ok_window, ST.http_ok_window / win,
            ms(hist_quantile(&ST.http_lat, 0.50)), ms(hist_quantile(&ST.http_lat, 0.99)),
            ms(hist_quantile(&ST.http_lat, 0.999)), ms(ST.http_lat.max), ST.http_non2xx,
            ST.http_bad_answer, ST.http_closed, ST.http_send_failed);
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---- self-test (the only part of the bench CI runs) ---- */

/* httpc_parse on one response text: the bytes taken, the status and body. */
static int check_parse(const char *in, long want_used, int want_status, const char *want_body)
{
    static char body[HTTPC_BUF];
    httpc_response_t r;
    long used = httpc_parse(in, strlen(in), body, sizeof(body), &r);
    int ok = used == want_used &&
             (used <= 0 || (r.status == want_status && r.body_len == strlen(want_body) &&
                            !memcmp(r.body, want_body, r.body_len)));
    if (!ok)
        fprintf(stderr, "self-test: httpc_parse(%.40s...) = %ld, want %ld\n", in, used, want_used);
    return ok ? 0 : 1;
}

static int self_test_http(void)
{
    static const char cl[] = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             "content-length: 14\r\n\r\n{\"accepted\":3}";
    static const char ch[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5\r\n{\"acc\r\n9\r\nepted\":3}\r\n0\r\n\r\n";
    int bad = check_parse(cl, (long)strlen(cl), 200, "{\"accepted\":3}");
    bad += check_parse(ch, (long)strlen(ch), 200, "{\"accepted\":3}");
    bad += check_parse("HTTP/1.1 200 OK\r\ncontent-length: 14\r\n\r\n{\"acc", 0, 0, "");
    bad += check_parse("HTTP/1.1 200 OK\r\ncontent-", 0, 0, "");
    bad += check_parse("SMTP/1.1 200 OK\r\n\r\n", -1, 0, "");
    bad += check_parse("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}X", 57, 503,
                       "{}");
    /* the answer checks, per dialect: exact status line and body */
    struct {
        int dialect, k, ok;
        const char *line, *body;
    } a[] = {
        {D_MSGHUB, 3, 1, "HTTP/1.1 200 OK", "{\"id\":\"ab-1\",\"accepted\":3,\"unknown\":[]}"},
        {D_MSGHUB, 3, 0, "HTTP/1.1 200 OK", "{\"id\":\"ab-1\",\"accepted\":2,\"unknown\":[9]}"},
        {D_MSGHUB, 3, 0, "HTTP/1.0 200 OK", "{\"id\":\"ab-1\",\"accepted\":3,\"unknown\":[]}"},
        {D_MSGHUB, 3, 0, "HTTP/1.1 200 OK", "{\"id\":\"\",\"accepted\":3,\"unknown\":[]}"},
        {D_SOCKETIO, 3, 1, "HTTP/1.1 200 OK", "{\"accepted\":3}"},
        {D_SOCKETIO, 3, 0, "HTTP/1.1 200 OK", "{\"accepted\":30}"},
    };
    for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++) {
        O.dialect = (enum dialect)a[i].dialect;
        httpc_response_t r = {.status = 200,
                              .status_line = a[i].line,
                              .status_len = strlen(a[i].line),
                              .body = a[i].body,
                              .body_len = strlen(a[i].body)};
        if (http_answer_ok(&r, a[i].k) != a[i].ok) {
            fprintf(stderr, "self-test: answer check %zu: %s %s\n", i, a[i].line, a[i].body);
            bad++;
        }
    }
    O.dialect = D_MSGHUB;
    return bad;
}

/* --cross: receivers never on the sender's target. */
static int self_test_cross(void)
{
    enum { N = 12, K = 4 };
    client_t c[N] = {{.target = 0}};
    int ready[N], out[K], bad = 0;
    C = c;
    ready_list = ready;
    nready = N;
    O.nurls = 3;
    O.cross = 1;
    for (int i = 0; i < N; i++) {
        c[i].target = i % 3;
        ready[i] = i;
    }
    build_others();
    rng_state = 42;
    for (int round = 0; round < 100; round++)
        for (int t = 0; t < 3; t++) {
            random_receivers(t, out, K);
            for (int j = 0; j < K; j++)
                bad += c[out[j]].target == t;
        }
    if (bad)
        fprintf(stderr, "self-test: --cross chose %d receivers on the sender's target\n", bad);
    for (int t = 0; t < 3; t++)
        free(others[t]);
    C = NULL;
    ready_list = NULL;
    nready = 0;
    O.cross = 0;
    return bad ? 1 : 0;
}

static int self_test(void)
{
    int bad = self_test_http() + self_test_cross();
    hist_t *h = calloc(1, sizeof(*h));
    for (uint64_t v = 1; v <= 100000; v++)
        hist_add(h, v * 1000);
    uint64_t p50 = hist_quantile(h, 0.5), p99 = hist_quantile(h, 0.99),
             p999 = hist_quantile(h, 0.999);
    if (h->count != 100000 || h->max != 100000000 || fabs((double)p50 / 50e6 - 1) > 0.01 ||
        fabs((double)p99 / 99e6 - 1) > 0.01 || fabs((double)p999 / 99.9e6 - 1) > 0.01) {
        fprintf(stderr, "self-test: histogram p50 %" PRIu64 " p99 %" PRIu64 " p99.9 %" PRIu64 "\n",
                p50, p99, p999);
        bad++;
    }
    free(h);
    floor_opts_t fo = {
        .connections = 8, .frame_bytes = 184, .duration = 0.3, .warmup = 0.1, .label = "self-test"};
    floor_result_t fr;
    if (floor_run(&fo, &fr) || fr.frames_window == 0) {
        floor_report(stderr, &fo, &fr);
        fprintf(stderr, "self-test: floor did not deliver every byte it sent\n");
        bad++;
    }
    fo.frame_bytes = 1000; /* the 16-bit length form */
    if (floor_run(&fo, &fr) || fr.frames_window == 0) {
        floor_report(stderr, &fo, &fr);
        bad++;
    }
    printf("self-test: %s\n", bad ? "FAILED" : "ok");
    return bad ? 1 : 0;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "floor"))
        return floor_main(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "--self-test"))
        return self_test();
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    rng_state = O.seed ? O.seed : (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    if (!rng_state)
        rng_state = 1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)O.connections + 32 > rl.rlim_cur)
        die("%d connections need more than the open-file limit %llu", O.connections,
            (unsigned long long)rl.rlim_cur);
    if (O.dialect == D_CENTRIFUGO && !O.token_secret[0])
        die("--dialect centrifugo needs --token-secret");

    C = calloc((size_t)O.connections, sizeof(*C));
    ready_list = calloc((size_t)O.connections, sizeof(int));
    if (!C || !ready_list)
        die("out of memory");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));

    proc_sample_t p0 = sample_pids();
    double wall0 = wall_s();
    int64_t t0 = now_ns();
    int64_t connect_deadline = t0 + (int64_t)(O.connect_timeout * 1e9);
    int started = 0, inflight = 0;
    struct epoll_event evs[512];

    /* Phase 1: connect every client and learn its id. */
    while (!interrupted) {
        while (started < O.connections && inflight < O.connect_concurrency) {
            client_t *c = &C[started];
            c->ws.index = started;
            c->ws.ops = &OPS;
            c->ws.fd = -1;
            c->ws.rng = wsc_rand(&rng_state) | 1;
            c->target = started % O.nurls;
            c->started = 1;
            c->t_start = now_ns();
            if (O.dialect == D_CENTRIFUGO)
                c->id = (uint64_t)started + 1;
            const target_t *t = &O.urls[c->target];
            started++;
            if (wsc_connect(&c->ws, ep, &t->addr, O.has_source ? &O.source : NULL, t->host,
                            t->path) < 0) {
                c->done = 1;
                ST.connect_failed++;
                note_error("connect(%s): %s", t->url, strerror(errno));
                continue;
            }
            inflight++;
        }
        int n = epoll_wait(ep, evs, 512, 20);
        for (int i = 0; i < n; i++) {
            client_t *c = evs[i].data.ptr;
            int was_ready = c->ready, was_done = c->done;
            wsc_handle(&c->ws, evs[i].events);
            if ((!was_ready && c->ready) || (!was_done && c->done && !was_ready))
                inflight--;
        }
        int64_t now = now_ns();
        if (started == O.connections && inflight == 0)
            break;
        if (now > connect_deadline) {
            for (int i = 0; i < started; i++)
                if (!C[i].ready && !C[i].done) {
                    wsc_drop(&C[i].ws);
                    C[i].done = 1;
                    ST.connect_failed++;
                }
            note_error("connect timeout");
            break;
        }
    }
    int64_t t_connected = now_ns();
    double wall_connected = wall_s();
    nready = 0;
    for (int i = 0; i < O.connections; i++)
        if (C[i].ready && !C[i].done)
            ready_list[nready++] = i;
    vlog("%d/%d clients ready in %.2f s", nready, O.connections, (t_connected - t0) / 1e9);
    proc_sample_t p1 = sample_pids();

    /* Senders: the first S ready clients (spread over the targets). */
    int nsenders = O.senders;
    if (nsenders > nready)
        nsenders = nready;
    if ((O.senders > 0 || O.http > 0) && O.receivers > nready) {
        note_error("only %d clients ready, fewer than %d receivers", nready, O.receivers);
        nsenders = 0;
        O.http = 0;
    }
    if (O.cross) {
        build_others();
        for (int t = 0; t < (O.http ? 1 : O.nurls); t++)
            if (nothers[t] < O.receivers) {
                note_error("only %d clients off target %d, fewer than %d receivers", nothers[t], t,
                           O.receivers);
                nsenders = 0;
                O.http = 0;
            }
    }
    O.senders = nsenders;
    S = calloc((size_t)(nsenders ? nsenders : 1), sizeof(*S));
    if (!S)
        die("out of memory");
    for (int i = 0; i < nsenders; i++) {
        S[i].client = ready_list[i];
        if (O.fixed) { /* drawn once, used for every relay of this sender */
            S[i].fixed = malloc(sizeof(int) * (size_t)O.receivers);
            if (!S[i].fixed)
                die("out of memory");
            random_receivers(C[S[i].client].target, S[i].fixed, O.receivers);
        }
        if (O.rate == 0 && !(S[i].slots = calloc((size_t)O.window, sizeof(slot_t))))
            die("out of memory");
    }

    /* Phase 2: load (warmup, then the measurement window), then drain. */
    int64_t t_load = now_ns();
    t_measure_start = t_load + (int64_t)(O.warmup * 1e9);
    t_measure_end = t_measure_start + (int64_t)(O.duration * 1e9);
    /* the drain: until every delivery is in, or none came for O.drain seconds, or DRAIN_MAX_S */
    int64_t drain_deadline = t_measure_end + (int64_t)(O.drain * 1e9);
    int64_t drain_cap = t_measure_end + (int64_t)DRAIN_MAX_S * 1000000000;
    uint64_t drain_seen = 0;
    double interval = O.rate > 0 ? 1e9 / O.rate : 0;
    uint64_t next_i = 0;
    proc_sample_t pm0 = {0}, pm1 = {0}, ax0 = {0}, ax1 = {0};
    double cpu_self0 = 0, cpu_self1 = 0, busy0 = 0, busy1 = 0, wait_self0 = 0, wait_self1 = 0;
    int measuring = 0;
    int64_t last_progress = t_load, last_timeout_check = t_load;
    sending = nsenders > 0 || O.http > 0;
    if (O.rate > 0)
        prctl(PR_SET_TIMERSLACK, 1UL); /* wake-ups on time: the kernel's default slack is 50 us */
    if (O.http > 0)
        http_start(ep); /* each connection sends its first request once connected */
    if (sending && O.rate == 0)
        for (int i = 0; i < nsenders; i++)
            for (int w = 0; w < O.window; w++)
                send_relay(i, 0, w);

    while (!interrupted) {
        int64_t now = now_ns();
        if (!measuring && now >= t_measure_start) {
            measuring = 1;
            pm0 = sample_pids();
            ax0 = sample_procs(O.aux_pids, O.naux);
            cpu_self0 = self_cpu_s();
            wait_self0 = runq_wait_s("/proc/self/schedstat");
            busy0 = machine_busy_s();
        }
        if (measuring == 1 && now >= t_measure_end) {
            measuring = 2;
            sending = 0;
            pm1 = sample_pids();
            ax1 = sample_procs(O.aux_pids, O.naux);
            cpu_self1 = self_cpu_s();
            wait_self1 = runq_wait_s("/proc/self/schedstat");
            busy1 = machine_busy_s();
        }
        if (measuring == 2 && ST.delivered_window > drain_seen) {
            drain_seen = ST.delivered_window; /* still arriving: the quiet period starts again */
            int64_t d = now + (int64_t)(O.drain * 1e9);
            drain_deadline = d < drain_cap ? d : drain_cap;
        }
        if (measuring == 2 && (now >= drain_deadline || ST.delivered_window >= ST.expected_window))
            break;
        if (sending && O.rate > 0) {
            int burst = 0;
            for (;;) {
                int64_t due = t_load + (int64_t)((double)next_i * interval);
                if (due > now || due >= t_measure_end || burst >= OPEN_LOOP_BURST)
                    break;
                send_relay((int)(next_i % (uint64_t)nsenders), due, -1);
                next_i++;
                burst++;
            }
        }
        if (sending && O.rate == 0 && now - last_timeout_check > 50000000) {
            closed_loop_timeouts(now);
            last_timeout_check = now;
        }
        if (O.verbose && now - last_progress >= 1000000000) {
            last_progress = now;
            vlog("t=%.1fs relays=%" PRIu64 " delivered=%" PRIu64 " window: %" PRIu64 "/%" PRIu64,
                 (now - t_load) / 1e9, ST.relays_sent, ST.delivered_all, ST.delivered_window,
                 ST.expected_window);
        }
        /* open loop: wake at the next relay's due time to the nanosecond (epoll_wait's whole
           milliseconds sent each relay up to 1 ms late, and that lateness counted as latency) */
        int64_t wait_ns = POLL_MAX_WAIT_NS;
        if (sending && O.rate > 0) {
            int64_t due = t_load + (int64_t)((double)next_i * interval);
            int64_t wait = due - now_ns();
            wait_ns = wait <= 0 ? 0 : wait < POLL_MAX_WAIT_NS ? wait : POLL_MAX_WAIT_NS;
        }
        struct timespec ts = {(time_t)(wait_ns / 1000000000), (long)(wait_ns % 1000000000)};
        int n = epoll_pwait2(ep, evs, 512, &ts, NULL);
        for (int i = 0; i < n; i++)
            dispatch(&evs[i]);
    }
    double drain_s = measuring == 2 ? (now_ns() - t_measure_end) / 1e9 : 0;
    if (measuring < 2) { /* interrupted */
        pm1 = sample_pids();
        ax1 = sample_procs(O.aux_pids, O.naux);
        cpu_self1 = self_cpu_s();
        wait_self1 = runq_wait_s("/proc/self/schedstat");
        busy1 = machine_busy_s();
        if (!measuring) {
            wait_self0 = wait_self1;
            busy0 = busy1;
            ax0 = ax1;
            pm0 = pm1;
            cpu_self0 = cpu_self1;
        }
    }
    proc_sample_t pend = sample_pids();
    int still_open = 0;
    for (int i = 0; i < O.connections; i++)
        if (C[i].ready && !C[i].done)
            still_open++;
    for (int i = 0; i < O.connections; i++)
        if (C[i].started && C[i].ws.state != WSC_CLOSED)
            wsc_drop(&C[i].ws);
    for (int i = 0; i < O.connections; i++)
        ST.pings += C[i].ws.pings;
    for (int i = 0; i < O.http; i++)
        httpc_drop(&H[i]);

    /* Report. */
    double win = O.duration;
    int64_t lost = (int64_t)ST.expected_window - (int64_t)ST.delivered_window;
    uint64_t errors = ST.connect_failed + ST.closed_after_ready + ST.server_errors +
                      ST.protocol_errors + ST.send_failed + ST.relays_skipped + ST.http_non2xx +
                      ST.http_bad_answer + ST.http_closed + ST.http_send_failed;
    FILE *f = stdout;
    fprintf(f, "{\"label\":");
    json_str(f, O.label);
    fprintf(f, ",\"dialect\":\"%s\",\"targets\":%d,\"url\":", dialect_names[O.dialect], O.nurls);
    json_str(f, O.urls[0].url);
    fprintf(f,
            ",\"connections\":%d,\"connected\":%d,\"senders\":%d,\"receivers_per_relay\":%d,"
            "\"receiver_mode\":\"%s\",\"mode\":\"%s\",\"rate_target\":%.1f,\"window\":%d,"
            "\"body_bytes\":%d,\"duration_s\":%.1f,\"warmup_s\":%.1f,\"connect_s\":%.3f",
            O.connections, nready, nsenders, O.receivers, O.fixed ? "fixed" : "random",
            O.rate > 0 ? "open" : "closed", O.rate, O.window, O.body_bytes, O.duration, O.warmup,
            (t_connected - t0) / 1e9);
    fprintf(f, ",\"start_unix_s\":%.3f,\"connected_unix_s\":%.3f", wall0, wall_connected);
    fprintf(f,
            ",\"relays_sent\":%" PRIu64 ",\"relays_window\":%" PRIu64 ",\"relays_per_s\":%.1f"
            ",\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"delivered_per_s\":%.1f"
            ",\"lost\":%" PRId64 ",\"drain_s\":%.1f",
            ST.relays_sent, ST.relays_window, ST.relays_window / win, ST.expected_window,
            ST.delivered_window, ST.delivered_window / win, lost, drain_s);
    fprintf(f,
            ",\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,"
            "\"mean_ms\":%.3f",
            ms(hist_quantile(&ST.lat, 0.50)), ms(hist_quantile(&ST.lat, 0.90)),
            ms(hist_quantile(&ST.lat, 0.99)), ms(hist_quantile(&ST.lat, 0.999)), ms(ST.lat.max),
            ST.lat.count ? ms(ST.lat.sum / ST.lat.count) : 0.0);
    if (O.rate > 0)
        fprintf(f, ",\"send_lag_p99_ms\":%.3f,\"send_lag_max_ms\":%.3f",
                ms(hist_quantile(&ST.lag, 0.99)), ms(ST.lag.max));
    fprintf(f,
            ",\"errors\":%" PRIu64 ",\"error_detail\":{\"connect_failed\":%" PRIu64
            ",\"closed\":%" PRIu64 ",\"server_errors\":%" PRIu64 ",\"protocol\":%" PRIu64
            ",\"send_failed\":%" PRIu64 ",\"skipped_backlog\":%" PRIu64
            ",\"relay_timeouts\":%" PRIu64 "},\"first_error\":",
            errors, ST.connect_failed, ST.closed_after_ready, ST.server_errors, ST.protocol_errors,
            ST.send_failed, ST.relays_skipped, ST.relay_timeouts);
    json_str(f, last_error);
    fprintf(f, ",\"still_open\":%d,\"pings\":%" PRIu64, still_open, ST.pings);
    double mwin = measuring ? win : 1;
    fprintf(f, ",\"bench_cpu_pct\":%.1f", 100.0 * (cpu_self1 - cpu_self0) / mwin);
    /* time spent runnable but not running (other work on the cores): 100 = the whole window */
    fprintf(f, ",\"bench_runq_wait_pct\":%.1f", 100.0 * (wait_self1 - wait_self0) / mwin);
    if (O.npids > 0) {
        fprintf(f, ",\"hub_pids\":%d,\"hub_ok\":%s", O.npids, pend.ok ? "true" : "false");
        fprintf(f,
                ",\"hub_rss_start_kb\":%ld,\"hub_rss_connected_kb\":%ld,\"hub_rss_kb\":%ld"
                ",\"hub_hwm_kb\":%ld,\"hub_cpu_pct\":%.1f",
                p0.rss_kb, p1.rss_kb, pend.rss_kb, pend.hwm_kb,
                100.0 * (pm1.cpu_s - pm0.cpu_s) / mwin);
        fprintf(f, ",\"hub_runq_wait_pct\":%.1f", 100.0 * (pm1.wait_s - pm0.wait_s) / mwin);
        /* absolute hub CPU (utime + stime) before and once every client was in: with several
         * client processes, scripts/bench takes the last process's figure */
        fprintf(f, ",\"hub_cpu_start_s\":%.3f,\"hub_cpu_connected_s\":%.3f", p0.cpu_s, p1.cpu_s);
        if (nready > 0)
            fprintf(f, ",\"rss_per_conn_b\":%.0f",
                    (double)(pend.rss_kb - p0.rss_kb) * 1024.0 / nready);
    }
    if (O.http > 0)
        http_report(f, win);
    if (O.naux > 0)
        fprintf(f, ",\"backplane_cpu_pct\":%.1f", 100.0 * (ax1.cpu_s - ax0.cpu_s) / mwin);
    /* Everything else the machine did meanwhile: other work competing for the cores. */
    double busy = busy1 - busy0,
           ours = (cpu_self1 - cpu_self0) + (pm1.cpu_s - pm0.cpu_s) + (ax1.cpu_s - ax0.cpu_s);
    fprintf(f, ",\"machine_cpu_pct\":%.1f,\"other_cpu_pct\":%.1f", 100.0 * busy / mwin,
            busy > ours ? 100.0 * (busy - ours) / mwin : 0.0);
    fprintf(f, ",\"interrupted\":%s}\n", interrupted ? "true" : "false");
    fflush(f);
    return interrupted ? 130 : 0;
}
