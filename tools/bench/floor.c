/* msghub-bench floor: what one-frame-per-send() delivery costs with no hub.
 *
 * N loopback TCP connections; one process (the writer) sends pre-built
 * WebSocket server frames of --frame-bytes each, one frame per send(),
 * round-robin over every socket that is writable (edge-triggered epoll,
 * a socket is skipped until EPOLLOUT once send() says EAGAIN); a forked
 * process (the reader) reads everything with one 256 KiB read() per
 * readable event. frames_per_s counts the frames the writer handed to the
 * kernel inside the window (after --warmup); since the socket buffers are
 * bounded, that is also the rate the reader sustained. A hub that writes
 * one frame per send() cannot deliver more than this on the same cores.
 *
 * At the end the writer closes its sockets and the reader reports the
 * bytes it read up to EOF, which must equal the bytes sent (checked by
 * --self-test). One JSON line on stdout. */
#include "floor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_MAX_CONNECTIONS 9000 /* two ends per connection in this process */
#define FLOOR_READ_BUF (256 * 1024)
#define FLOOR_MAX_FRAME 65535
#define FLOOR_EVENTS 512

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double rusage_s(const struct rusage *ru)
{
    return (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 + (double)ru->ru_stime.tv_sec +
           ru->ru_stime.tv_usec / 1e6;
}

/* A server-to-client text frame (unmasked) of exactly len bytes on the wire. */
static size_t build_frame(unsigned char *f, size_t len)
{
    size_t hdr = len - 2 <= 125 ? 2 : 4;
    size_t plen = len - hdr;
    f[0] = 0x81;
    if (hdr == 2) {
        f[1] = (unsigned char)plen;
    } else {
        f[1] = 126;
        f[2] = (unsigned char)(plen >> 8);
        f[3] = (unsigned char)plen;
    }
    memset(f + hdr, 'x', plen);
    return len;
}

/* n connected pairs over a loopback listener: w[i] writes, r[i] reads. */
static int make_pairs(int n, int *w, int *r)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4096) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) < 0)
        return -1;
    int one = 1;
    for (int i = 0; i < n; i++) {
        w[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (w[i] < 0 || connect(w[i], (struct sockaddr *)&a, sizeof(a)) < 0)
            return -1;
        r[i] = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (r[i] < 0)
            return -1;
        setsockopt(w[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fcntl(w[i], F_SETFL, O_NONBLOCK);
        fcntl(r[i], F_SETFL, O_NONBLOCK);
    }
    close(ls);
    return 0;
}

/* The reader: drains every socket until EOF on all; writes the byte count to out_fd. */
static void reader_main(int n, const int *r, int out_fd)
{
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, r[i], &ev);
    }
    static unsigned char buf[FLOOR_READ_BUF];
    uint64_t total = 0;
    int open_left = n;
    struct epoll_event evs[FLOOR_EVENTS];
    while (open_left > 0) {
        int k = epoll_wait(ep, evs, FLOOR_EVENTS, 1000);
        for (int j = 0; j < k; j++) {
            int fd = r[evs[j].data.u32];
            ssize_t got = read(fd, buf, sizeof(buf));
            if (got > 0) {
                total += (uint64_t)got;
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                open_left--;
            }
        }
    }
    if (write(out_fd, &total, sizeof(total)) != (ssize_t)sizeof(total))
        _exit(1);
    _exit(0);
}

/* Sends one frame on every writable socket in turn; returns how many are still writable. */
static int write_round(const floor_opts_t *o, const int *w, unsigned char *writable,
                       const unsigned char *frame, int counting, floor_result_t *res)
{
    int still = 0;
    for (int i = 0; i < o->connections; i++) {
        if (!writable[i])
            continue;
        ssize_t n = send(w[i], frame, (size_t)o->frame_bytes, MSG_NOSIGNAL | MSG_DONTWAIT);
        res->sends++;
        if (n == o->frame_bytes) {
            res->bytes_sent += (uint64_t)n;
            res->frames_window += counting ? 1 : 0;
            still++;
        } else if (n >= 0) { /* a partial frame: its bytes count, the frame does not */
            res->bytes_sent += (uint64_t)n;
            writable[i] = 0;
        } else {
            res->eagain++;
            writable[i] = 0;
        }
    }
    return still;
}

static void writer_loop(const floor_opts_t *o, const int *w, floor_result_t *res)
{
    unsigned char frame[FLOOR_MAX_FRAME];
    build_frame(frame, (size_t)o->frame_bytes);
    unsigned char *writable = calloc((size_t)o->connections, 1);
    int ep = epoll_create1(0);
    for (int i = 0; i < o->connections; i++) {
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, w[i], &ev);
    }
    struct rusage ru;
    int64_t t0 = mono_ns();
    int64_t t_start = t0 + (int64_t)(o->warmup * 1e9),
            t_end = t_start + (int64_t)(o->duration * 1e9);
    double cpu0 = 0;
    int counting = 0, still = 0;
    struct epoll_event evs[FLOOR_EVENTS];
    for (int64_t now = t0; now < t_end; now = mono_ns()) {
        if (!counting && now >= t_start) {
            counting = 1;
            getrusage(RUSAGE_SELF, &ru);
            cpu0 = rusage_s(&ru);
        }
        int k = epoll_wait(ep, evs, FLOOR_EVENTS, still ? 0 : 10);
        for (int j = 0; j < k; j++)
            writable[evs[j].data.u32] = 1;
        still = write_round(o, w, writable, frame, counting, res);
    }
    getrusage(RUSAGE_SELF, &ru);
    res->writer_cpu_s = rusage_s(&ru) - cpu0;
    res->window_s = o->duration;
    free(writable);
    close(ep);
}

int floor_run(const floor_opts_t *o, floor_result_t *res)
{
    memset(res, 0, sizeof(*res));
    int n = o->connections;
    int *w = calloc((size_t)n, sizeof(int)), *r = calloc((size_t)n, sizeof(int)), pfd[2];
    if (!w || !r || make_pairs(n, w, r) < 0 || pipe(pfd) < 0) {
        fprintf(stderr, "msghub-bench floor: setup failed: %s\n", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < n; i++)
            close(w[i]);
        close(pfd[0]);
        reader_main(n, r, pfd[1]);
    }
    for (int i = 0; i < n; i++)
        close(r[i]);
    close(pfd[1]);
    writer_loop(o, w, res);
    for (int i = 0; i < n; i++)
        close(w[i]);
    ssize_t got = read(pfd[0], &res->bytes_read, sizeof(res->bytes_read));
    int status = 0;
    struct rusage ru;
    wait4(pid, &status, 0, &ru);
    res->reader_cpu_s = rusage_s(&ru);
    res->ok = got == (ssize_t)sizeof(res->bytes_read) && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0 && res->bytes_read == res->bytes_sent;
    close(pfd[0]);
    free(w);
    free(r);
    return res->ok ? 0 : -1;
}

void floor_report(FILE *f, const floor_opts_t *o, const floor_result_t *res)
{
    double win = res->window_s > 0 ? res->window_s : 1;
    fprintf(f,
            "{\"label\":\"%s\",\"mode\":\"floor\",\"connections\":%d,\"frame_bytes\":%d,"
            "\"duration_s\":%.1f,\"warmup_s\":%.1f,\"frames_per_s\":%.1f,\"mb_per_s\":%.1f,"
            "\"sends\":%" PRIu64 ",\"eagain\":%" PRIu64 ",\"bytes_sent\":%" PRIu64
            ",\"bytes_read\":%" PRIu64 ",\"writer_cpu_pct\":%.1f,\"reader_cpu_pct\":%.1f,"
            "\"ok\":%s}\n",
            o->label ? o->label : "", o->connections, o->frame_bytes, o->duration, o->warmup,
            res->frames_window / win, res->frames_window * (double)o->frame_bytes / win / 1e6,
            res->sends, res->eagain, res->bytes_sent, res->bytes_read,
            100.0 * res->writer_cpu_s / win, 100.0 * res->reader_cpu_s / win,
            res->ok ? "true" : "false");
    fflush(f);
}

static double floor_num(const char *name, const char *v, double lo, double hi)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d >= lo && d <= hi)) {
        fprintf(stderr, "msghub-bench floor: %s wants a number in [%g, %g]\n", name, lo, hi);
        exit(2);
    }
    return d;
}

int floor_main(int argc, char **argv)
{
    floor_opts_t o = {.connections = 200, .frame_bytes = 184, .duration = 5, .warmup = 1};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("Usage: msghub-bench floor [--connections N] [--frame-bytes B] [--duration D]\n"
                   "                          [--warmup W] [--label TEXT]\n"
                   "  defaults: 200 connections, 184-byte frames, 1 s warmup, 5 s window\n");
            return 0;
        }
        if (!v) {
            fprintf(stderr, "msghub-bench floor: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--connections"))
            o.connections = (int)floor_num(a, v, 1, FLOOR_MAX_CONNECTIONS);
        else if (!strcmp(a, "--frame-bytes"))
            o.frame_bytes = (int)floor_num(a, v, 2, FLOOR_MAX_FRAME);
        else if (!strcmp(a, "--duration"))
            o.duration = floor_num(a, v, 0.1, 3600);
        else if (!strcmp(a, "--warmup"))
            o.warmup = floor_num(a, v, 0, 3600);
        else if (!strcmp(a, "--label"))
            o.label = v;
        else {
            fprintf(stderr, "msghub-bench floor: unknown option %s\n", a);
            return 2;
        }
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)o.connections * 2 + 32 > rl.rlim_cur) {
        fprintf(stderr, "msghub-bench floor: %d connections need %d files\n", o.connections,
                o.connections * 2 + 32);
        return 2;
    }
    floor_result_t res;
    int rc = floor_run(&o, &res);
    floor_report(stdout, &o, &res);
    return rc ? 1 : 0;
}
