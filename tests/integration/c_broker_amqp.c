/*
 * Integration test of broker_amqp against real RabbitMQ servers: the one at
 * MSGHUB_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/), used
 * with a unique prefix per run whose queues and exchange are deleted at the
 * end, and a private node started and stopped through
 * scripts/private-rabbitmq on a free port for the outage test (skipped if
 * rabbitmq-server is not installed). The test never stops a server it did
 * not start.
 *
 * Each test drives one uv loop until a condition holds or a deadline passes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "msghub/broker_amqp.h"
#include "msghub/util.h"

#define WAIT_MS 5000
#define RABBITMQ_SERVER "/usr/lib/rabbitmq/bin/rabbitmq-server"

typedef struct got {
    uint64_t tag;
    unsigned char *body;
    size_t len;
} got_t;

/* One broker under test and what it reported. */
typedef struct tb {
    mh_broker_t *b;
    int up, ups, downs;
    int auto_ack;
    got_t *dl;
    size_t ndl, cap;
} tb_t;

typedef struct pub {
    int calls, status, order;
} pub_t;

static uv_loop_t loop;
static char prefix[64];
static const char *url;
static tb_t A, B, C, X;
static int pub_order;
static char private_dir[64]; /* set while the test's own RabbitMQ runs */
static pid_t frozen_pid;     /* our private node, while SIGSTOPped */

/* ---- harness ---- */

static void on_state(void *ud, int up)
{
    tb_t *t = ud;
    t->up = up;
    if (up)
        t->ups++;
    else
        t->downs++;
}

static void on_delivery(void *ud, uint64_t tag, const void *body, size_t len)
{
    tb_t *t = ud;
    if (t->ndl == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->dl = mh_xrealloc(t->dl, t->cap * sizeof(*t->dl));
    }
    got_t *g = &t->dl[t->ndl++];
    g->tag = tag;
    g->len = len;
    g->body = mh_xmalloc(len + 1);
    memcpy(g->body, body, len);
    if (t->auto_ack)
        mh_broker_ack(t->b, tag);
}

static int not_stalled(void *arg)
{
    tb_t *t = arg;
    return t->b && mh_broker_up(t->b) && !mh_broker_stalled(t->b);
}

static void on_pub(void *ud, int status)
{
    pub_t *p = ud;
    p->calls++;
    p->status = status;
    p->order = ++pub_order;
}

static void noop_timer(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until pred(arg) holds or ms pass; returns pred's value. */
static int run_until(int (*pred)(void *), void *arg, unsigned ms)
{
    uint64_t end = mh_mono_us() + (uint64_t)ms * 1000;
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, noop_timer, 5, 5);
    int ok;
    while (!(ok = pred(arg)) && mh_mono_us() < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static int never(void *arg)
{
    (void)arg;
    return 0;
}

static void spin(unsigned ms)
{
    run_until(never, NULL, ms);
}

static int is_up(void *arg)
{
    return ((tb_t *)arg)->up;
}

static int is_down(void *arg)
{
    return ((tb_t *)arg)->downs > 0 && !((tb_t *)arg)->up;
}

static int called(void *arg)
{
    return ((pub_t *)arg)->calls > 0;
}

typedef struct count_arg {
    tb_t *t;
    size_t n;
} count_arg_t;

static int has_deliveries(void *arg)
{
    count_arg_t *c = arg;
    return c->t->ndl >= c->n;
}

typedef struct find_arg {
    tb_t *t;
    size_t from;
    const char *body;
    size_t len;
} find_arg_t;

/* A delivery at index >= from with exactly this body. */
static int has_body(void *arg)
{
    find_arg_t *f = arg;
    for (size_t i = f->from; i < f->t->ndl; i++)
        if (f->t->dl[i].len == f->len && memcmp(f->t->dl[i].body, f->body, f->len) == 0)
            return 1;
    return 0;
}

static void tb_start_url(tb_t *t, const char *u, const char *instance, uint32_t ttl_ms,
                         int auto_ack)
{
    char err[256] = "";
    memset(t, 0, sizeof(*t));
    t->auto_ack = auto_ack;
    mh_broker_options_t o = {
        .url = u,
        .prefix = prefix,
        .instance_id = instance,
        .msg_ttl_ms = ttl_ms,
        .queue_expiry_ms = 120000,
        .prefetch = 64,
        .on_state = on_state,
        .on_delivery = on_delivery,
        .ud = t,
    };
    t->b = mh_broker_new(&loop, &o, err, sizeof(err));
    assert_non_null(t->b);
    assert_true(run_until(is_up, t, WAIT_MS));
}

static void tb_start(tb_t *t, const char *instance, uint32_t ttl_ms)
{
    tb_start_url(t, url, instance, ttl_ms, 1);
}

static void tb_start_manual(tb_t *t, const char *instance)
{
    tb_start_url(t, url, instance, 0, 0);
}

static void tb_stop(tb_t *t)
{
    mh_broker_free(t->b);
    t->b = NULL;
    for (size_t i = 0; i < t->ndl; i++)
        free(t->dl[i].body);
    free(t->dl);
    t->dl = NULL;
    t->ndl = t->cap = 0;
    uv_run(&loop, UV_RUN_NOWAIT); /* close callbacks */
}

static void publish(tb_t *from, const char *to, const void *body, size_t len, pub_t *p)
{
    memset(p, 0, sizeof(*p));
    mh_broker_publish(from->b, to, body, len, on_pub, p);
}

/* Publishes and waits for the confirm; returns the status. */
static int publish_wait(tb_t *from, const char *to, const void *body, size_t len)
{
    pub_t p;
    publish(from, to, body, len, &p);
    assert_true(run_until(called, &p, WAIT_MS));
    spin(20);
    assert_int_equal(p.calls, 1);
    return p.status;
}

static void expect_body(const got_t *g, const void *body, size_t len)
{
    assert_int_equal(g->len, len);
    assert_memory_equal(g->body, body, len);
}

/* ---- cleanup through a separate blocking connection ---- */

static amqp_connection_state_t admin_connect(void)
{
    char *u = mh_xstrdup(url);
    struct amqp_connection_info ci;
    amqp_default_connection_info(&ci);
    amqp_connection_state_t c = NULL;
    if (amqp_parse_url(u, &ci) == AMQP_STATUS_OK) {
        c = amqp_new_connection();
        amqp_socket_t *s = amqp_tcp_socket_new(c);
        amqp_rpc_reply_t r = {0};
        if (amqp_socket_open(s, ci.host, ci.port) == AMQP_STATUS_OK)
            r = amqp_login(c, *ci.vhost ? ci.vhost : "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                           AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            amqp_destroy_connection(c);
            c = NULL;
        }
    }
    free(u);
    return c;
}

static void delete_topology(void)
{
    amqp_connection_state_t c = admin_connect();
    if (!c) {
        fprintf(stderr, "cleanup: cannot connect to %s\n", url);
        return;
    }
    const char *suffixes[] = {".inst.A", ".inst.B", ".inst.C"};
    char name[128];
    amqp_channel_t ch = 1;
    amqp_channel_open(c, ch);
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(*suffixes); i++) {
        snprintf(name, sizeof(name), "%s%s", prefix, suffixes[i]);
        if (!amqp_queue_delete(c, ch, amqp_cstring_bytes(name), 0, 0))
            amqp_channel_open(c, ++ch); /* the failure closed the channel */
    }
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

/* ---- fixtures ---- */

static int group_setup(void **state)
{
    (void)state;
    url = getenv("MSGHUB_TEST_AMQP_URL");
    if (!url || !*url)
        url = "amqp://guest:guest@127.0.0.1:5672/";
    unsigned r = (unsigned)(mh_mono_us() ^ (uint64_t)getpid() << 16);
    snprintf(prefix, sizeof(prefix), "mhtest-%d-%08x", (int)getpid(), r);
    fprintf(stderr, "prefix %s on %s\n", prefix, url);
    return uv_loop_init(&loop);
}

static int group_teardown(void **state)
{
    (void)state;
    delete_topology();
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop);
}

static void stop_private(void);
static void thaw_private(void);

static int teardown_all(void **state)
{
    (void)state;
    thaw_private();
    tb_t *all[] = {&A, &B, &C, &X};
    for (size_t i = 0; i < 4; i++)
        if (all[i]->b)
            tb_stop(all[i]);
    stop_private();
    spin(20);
    return 0;
}

static int setup_ab(void **state)
{
    (void)state;
    tb_start(&A, "A", 0);
    tb_start(&B, "B", 0);
    return 0;
}

/* ---- tests ---- */

static void test_bad_options(void **state)
{
    (void)state;
    char err[256] = "";
    mh_broker_options_t o = {
        .url = "http://example/", .prefix = "p", .instance_id = "i", .on_delivery = on_delivery};
    assert_null(mh_broker_new(&loop, &o, err, sizeof(err)));
    assert_true(strlen(err) > 0);
    o.url = "amqps://example/";
    assert_null(mh_broker_new(&loop, &o, err, sizeof(err)));
    o.url = url;
    o.instance_id = NULL;
    assert_null(mh_broker_new(&loop, &o, err, sizeof(err)));
    mh_broker_free(NULL);
}

/* A port nothing listens on, with port + 20000 free too (for the private node). */
static int free_port(void)
{
    for (int tries = 0; tries < 200; tries++) {
        uint64_t seed = mh_mono_us() / 7 + (uint64_t)getpid() * 104729 + (uint64_t)tries * 7919;
        int port = 21000 + (int)(seed % 20000);
        int ok = 1;
        for (int k = 0; k < 2 && ok; k++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET,
                                     .sin_port = htons((uint16_t)(port + k * 20000))};
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
            close(fd);
        }
        if (ok)
            return port;
    }
    fail_msg("no free port");
    return 0;
}

/* X with default options against url u, not waiting for it to come up. */
static void start_x(const char *u)
{
    char err[256] = "";
    memset(&X, 0, sizeof(X));
    mh_broker_options_t o = {.url = u,
                             .prefix = prefix,
                             .instance_id = "X",
                             .on_state = on_state,
                             .on_delivery = on_delivery,
                             .ud = &X};
    X.b = mh_broker_new(&loop, &o, err, sizeof(err));
    assert_non_null(X.b);
}

static void test_refused_stays_down(void **state)
{
    (void)state;
    char u[128];
    snprintf(u, sizeof(u), "amqp://guest:guest@127.0.0.1:%d/", free_port());
    start_x(u);
    spin(400); /* a few attempts: 0, ~100, ~200 ms */
    assert_false(mh_broker_up(X.b));
    assert_int_equal(X.ups, 0);
    pub_t p;
    publish(&X, "X", "x", 1, &p);
    assert_int_equal(p.calls, 1); /* at once while down */
    assert_int_equal(p.status, MH_EIO);
    tb_stop(&X);
}

/* The longest gap between two 5 ms ticks: how long the loop was blocked. */
static uint64_t gap_last_us, gap_max_us;

static void gap_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t now = mh_mono_us();
    if (now - gap_last_us > gap_max_us)
        gap_max_us = now - gap_last_us;
    gap_last_us = now;
}

static void spin_measuring_gaps(unsigned ms)
{
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    gap_last_us = mh_mono_us();
    gap_max_us = 0;
    uv_timer_start(&tick, gap_tick, 5, 5);
    spin(ms);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/*
 * A server that accepts TCP and never answers (what a SIGSTOPped RabbitMQ
 * looks like to a new connection): each attempt waits 2 s for the login,
 * on amqp_conn's worker thread; the loop must keep turning meanwhile, and
 * freeing the broker during an attempt must be safe.
 */
static void test_silent_listener_never_blocks_the_loop(void **state)
{
    (void)state;
    int port = free_port();
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 16), 0); /* the kernel completes handshakes; nobody reads */
    char u[128];
    snprintf(u, sizeof(u), "amqp://guest:guest@127.0.0.1:%d/", port);
    start_x(u);
    spin_measuring_gaps(2600); /* one attempt timing out (2 s), the next one started */
    print_message("silent listener: longest loop gap %.1f ms\n", (double)gap_max_us / 1000.0);
    assert_true(gap_max_us < 250 * 1000);
    assert_false(mh_broker_up(X.b));
    assert_int_equal(X.ups, 0);
    pub_t p;
    publish(&X, "X", "x", 1, &p);
    assert_int_equal(p.calls, 1); /* at once while connecting */
    assert_int_equal(p.status, MH_EIO);
    tb_stop(&X); /* during an attempt: it finishes on its thread, then the memory goes */
    spin_measuring_gaps(2500);
    assert_true(gap_max_us < 250 * 1000);
    close(lfd);
}

static void test_a_to_b_exact_bytes_and_ack(void **state)
{
    (void)state;
    static const unsigned char body[] = {'h', 'i', 0, 1, 0xff, 0xfe, '\n', '{', '}'};
    assert_int_equal(publish_wait(&A, "B", body, sizeof(body)), 0);
    count_arg_t one = {&B, 1};
    assert_true(run_until(has_deliveries, &one, WAIT_MS));
    spin(50);
    assert_int_equal(B.ndl, 1);
    expect_body(&B.dl[0], body, sizeof(body));
    assert_int_equal(A.ndl, 0);
    /* acked (auto_ack): a new consumer of B's queue gets nothing */
    tb_stop(&B);
    tb_start(&B, "B", 0);
    spin(300);
    assert_int_equal(B.ndl, 0);
}

/* One ack waits for ACK_DELAY_MS; a burst is covered by a few multiple acks; none is lost. */
static void test_acks_wait_and_cover_many(void **state)
{
    (void)state;
    enum { N = 200 };
    uint64_t f0 = mh_broker_ack_frames(B.b);
    pub_t one_pub;
    publish(&A, "B", "w", 1, &one_pub);
    count_arg_t one = {&B, 1};
    assert_true(run_until(has_deliveries, &one, WAIT_MS));
    assert_int_equal(mh_broker_ack_frames(B.b), f0); /* acked by the hub, basic.ack waiting */
    spin(100);
    assert_int_equal(mh_broker_ack_frames(B.b), f0 + 1);

    pub_t *p = mh_xcalloc(N, sizeof(*p));
    for (int i = 0; i < N; i++)
        mh_broker_publish(A.b, "B", "m", 1, on_pub, &p[i]);
    count_arg_t all = {&B, N + 1};
    assert_true(run_until(has_deliveries, &all, 20000));
    spin(100);
    uint64_t frames = mh_broker_ack_frames(B.b) - f0 - 1;
    assert_true(frames >= N / 16); /* a quarter of the prefetch window (64) at most per frame */
    assert_true(frames <= N / 2);  /* one per delivery before */
    free(p);

    tb_stop(&B); /* every one was acked: a new consumer of B's queue gets nothing */
    tb_start(&B, "B", 0);
    spin(300);
    assert_int_equal(B.ndl, 0);
}

static void test_unknown_instance_is_enoent(void **state)
{
    (void)state;
    assert_int_equal(publish_wait(&A, "nobody", "x", 1), MH_ENOENT);
    assert_int_equal(publish_wait(&A, "B", "y", 1), 0);
    assert_int_equal(publish_wait(&A, "nobody", "", 0), MH_ENOENT);
}

static int all_called(void *arg)
{
    pub_t *p = arg;
    for (int i = 0; i < 1000; i++)
        if (!p[i].calls)
            return 0;
    return 1;
}

static void test_many_confirmed_in_order(void **state)
{
    (void)state;
    enum { N = 1000 };
    pub_t *p = mh_xcalloc(N, sizeof(*p));
    pub_order = 0;
    for (int i = 0; i < N; i++) {
        char body[32];
        int n = snprintf(body, sizeof(body), "m%d", i);
        mh_broker_publish(A.b, i % 10 == 9 ? "nobody" : "B", body, (size_t)n, on_pub, &p[i]);
    }
    assert_true(run_until(all_called, p, 20000));
    count_arg_t all = {&B, N - N / 10};
    assert_true(run_until(has_deliveries, &all, 20000));
    spin(100);
    for (int i = 0; i < N; i++) {
        assert_int_equal(p[i].calls, 1);
        assert_int_equal(p[i].order, i + 1);
        assert_int_equal(p[i].status, i % 10 == 9 ? MH_ENOENT : 0);
    }
    assert_int_equal(B.ndl, N - N / 10);
    for (size_t k = 0, i = 0; k < B.ndl; k++, i++) {
        char body[32];
        if (i % 10 == 9)
            i++;
        int n = snprintf(body, sizeof(body), "m%zu", i);
        expect_body(&B.dl[k], body, (size_t)n);
    }
    free(p);
}

static void test_one_mib_body(void **state)
{
    (void)state;
    size_t len = 1 << 20;
    unsigned char *body = mh_xmalloc(len);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        body[i] = (unsigned char)x;
    }
    assert_int_equal(publish_wait(&A, "B", body, len), 0);
    count_arg_t one = {&B, 1};
    assert_true(run_until(has_deliveries, &one, WAIT_MS));
    expect_body(&B.dl[0], body, len);
    free(body);
}

/* A push that waited past the message TTL in a queue nobody consumes is dropped, not re-routed. */
static void test_expired_message_is_dropped(void **state)
{
    (void)state;
    tb_start(&C, "C", 500);
    tb_stop(&C); /* its queue stays, without a consumer */
    spin(50);
    assert_int_equal(publish_wait(&A, "C", "for C", 5), 0);
    spin(800);
    tb_start(&C, "C", 500);
    spin(500);
    assert_int_equal(C.ndl, 0);
    assert_int_equal(A.ndl + B.ndl, 0);
    tb_stop(&C);
}

static void test_unacked_is_redelivered(void **state)
{
    (void)state;
    B.auto_ack = 0;
    assert_int_equal(publish_wait(&A, "B", "again", 5), 0);
    count_arg_t one = {&B, 1};
    assert_true(run_until(has_deliveries, &one, WAIT_MS));
    uint64_t old_tag = B.dl[0].tag;
    tb_stop(&B); /* the connection drops with the delivery unacked */

    tb_start_manual(&B, "B");
    assert_true(run_until(has_deliveries, &one, WAIT_MS));
    expect_body(&B.dl[0], "again", 5);
    mh_broker_ack(B.b, old_tag); /* from the previous connection: ignored */
    spin(100);
    assert_true(mh_broker_up(B.b));
    tb_stop(&B);

    tb_start_manual(&B, "B"); /* still there, so the stale ack did nothing */
    assert_true(run_until(has_deliveries, &one, WAIT_MS));
    expect_body(&B.dl[0], "again", 5);
    mh_broker_ack(B.b, B.dl[0].tag);
    tb_stop(&B);

    tb_start(&B, "B", 0);
    spin(300);
    assert_int_equal(B.ndl, 0);
}

/* ---- outage: a private RabbitMQ we start and stop ---- */

static const char *script_path(void)
{
    static char path[512];
    const char *env = getenv("MSGHUB_PRIVATE_RABBITMQ");
    if (env && *env)
        return env;
    /* __FILE__ is tests/integration/c_broker_amqp.c in the source tree */
    snprintf(path, sizeof(path), "%s", __FILE__);
    char *cut = strstr(path, "tests/integration/");
    if (!cut)
        return NULL;
    snprintf(cut, sizeof(path) - (size_t)(cut - path), "scripts/private-rabbitmq");
    return path;
}

/* Runs the script; for start, the URL it prints goes to out. */
static int run_script(const char *args, char *out, size_t outlen)
{
    char cmd[1024];
    const char *script = script_path();
    int n = script ? snprintf(cmd, sizeof(cmd), "%s %s", script, args) : -1;
    if (n < 0 || (size_t)n >= sizeof(cmd))
        return -1; /* no script, or a command line that would be cut */
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char line[256] = "";
    while (fgets(line, sizeof(line), f))
        if (out && strncmp(line, "amqp://", 7) == 0)
            snprintf(out, outlen, "%.*s", (int)strcspn(line, "\n"), line);
    return pclose(f);
}

static void thaw_private(void)
{
    if (frozen_pid > 0)
        kill(frozen_pid, SIGCONT);
    frozen_pid = 0;
}

static void stop_private(void)
{
    char cmd[1024];
    if (!private_dir[0])
        return;
    snprintf(cmd, sizeof(cmd), "stop %s", private_dir);
    run_script(cmd, NULL, 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", private_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", private_dir);
    private_dir[0] = '\0';
}

static void start_private(int port, char *u, size_t ulen)
{
    char args[256];
    snprintf(args, sizeof(args), "start %s %d", private_dir, port);
    uint64_t t0 = mh_mono_us();
    assert_int_equal(run_script(args, u, ulen), 0);
    fprintf(stderr, "private RabbitMQ on %d ready in %llu ms\n", port,
            (unsigned long long)((mh_mono_us() - t0) / 1000));
}

/* Starts our own node on a free port in a new directory; skips if impossible. */
static int new_private(char *u, size_t ulen)
{
    const char *script = script_path();
    if (!script || access(script, X_OK) != 0 || access(RABBITMQ_SERVER, X_OK) != 0)
        skip();
    snprintf(private_dir, sizeof(private_dir), "/tmp/mhtest-rmq-XXXXXX");
    assert_non_null(mkdtemp(private_dir));
    int port = free_port();
    start_private(port, u, ulen);
    return port;
}

static pid_t private_pid(void)
{
    char path[128];
    long pid = 0;
    snprintf(path, sizeof(path), "%s/rabbitmq.pid", private_dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%ld", &pid), 1);
    fclose(f);
    assert_true(pid > 1);
    return (pid_t)pid;
}

static void test_outage_and_reconnect(void **state)
{
    (void)state;
    char u[128] = "";
    int port = new_private(u, sizeof(u));

    tb_start_url(&X, u, "X", 120000, 0); /* outlives the restart: nothing re-routes it */
    assert_int_equal(publish_wait(&X, "X", "dropped", 7), 0);
    count_arg_t one = {&X, 1};
    assert_true(run_until(has_deliveries, &one, WAIT_MS)); /* unacked, but transient */

    pub_t in_flight; /* its confirm may or may not beat the shutdown */
    publish(&X, "X", "in flight", 9, &in_flight);
    char args[256];
    snprintf(args, sizeof(args), "stop %s", private_dir);
    assert_int_equal(run_script(args, NULL, 0), 0);
    assert_true(run_until(is_down, &X, WAIT_MS));
    assert_true(run_until(called, &in_flight, WAIT_MS));
    assert_int_equal(in_flight.calls, 1);
    assert_true(in_flight.status == 0 || in_flight.status == MH_EIO);
    assert_false(mh_broker_up(X.b));
    assert_int_equal(publish_wait(&X, "X", "down", 4), MH_EIO);
    spin(300); /* a few refused reconnects */
    assert_int_equal(X.ups, 1);

    size_t before = X.ndl;
    start_private(port, u, sizeof(u)); /* same port and data directory */
    uint64_t t0 = mh_mono_us();
    assert_true(run_until(is_up, &X, 15000));
    fprintf(stderr, "reconnected %llu ms after the restart finished\n",
            (unsigned long long)((mh_mono_us() - t0) / 1000));
    assert_int_equal(X.ups, 2);
    /* pushes are transient (the logs keep messages, and the hub re-reads them when its broker
       is back): the restart dropped the unacked one and the one in flight, the durable queue
       itself is back */
    spin(500);
    assert_int_equal(X.ndl, before);
    mh_broker_ack(X.b, X.dl[0].tag); /* from before the reconnect: ignored */
    spin(100);
    assert_true(mh_broker_up(X.b));
    assert_int_equal(X.downs, 1);

    X.auto_ack = 1;
    find_arg_t after = {&X, X.ndl, "after", 5};
    assert_int_equal(publish_wait(&X, "X", "after", 5), 0); /* topology redeclared */
    assert_true(run_until(has_body, &after, WAIT_MS));
}

/* A server that stops answering (SIGSTOP) is detected by the heartbeat check. */
static void test_silent_server_detected(void **state)
{
    (void)state;
    char u[128] = "";
    new_private(u, sizeof(u));
    tb_start_url(&X, u, "X", 0, 1);
    assert_int_equal(publish_wait(&X, "X", "warm", 4), 0);

    frozen_pid = private_pid();
    assert_int_equal(kill(frozen_pid, SIGSTOP), 0);
    uint64_t t0 = mh_mono_us();
    pub_t pending;
    publish(&X, "X", "pending", 7, &pending);
    spin(200);
    assert_int_equal(pending.calls, 0); /* no confirm from a frozen server */
    assert_true(run_until(is_down, &X, 30000));
    unsigned s_down = (unsigned)((mh_mono_us() - t0) / 1000000);
    fprintf(stderr, "silent server detected after %u s\n", s_down);
    assert_true(s_down >= 15); /* 2 heartbeat intervals of 10 s, checked every 5 s */
    assert_int_equal(pending.calls, 1);
    assert_int_equal(pending.status, MH_EIO);

    thaw_private();
    assert_true(run_until(is_up, &X, 15000));
    assert_int_equal(publish_wait(&X, "X", "thawed", 6), 0);
}

/*
 * A frozen server stops reading: the socket fills and rabbitmq-c would wait
 * in poll() without a deadline. Every publish must return at once instead
 * (MH_EIO inside the call once the socket is full) and the broker reports
 * itself stalled (/readyz 503).
 */
static void test_frozen_server_publish_never_blocks(void **state)
{
    (void)state;
    char u[128] = "";
    new_private(u, sizeof(u));
    tb_start_url(&X, u, "X", 0, 1);
    assert_int_equal(publish_wait(&X, "X", "warm", 4), 0);
    frozen_pid = private_pid();
    assert_int_equal(kill(frozen_pid, SIGSTOP), 0);
    size_t len = 1 << 20;
    char *body = mh_xmalloc(len);
    memset(body, 'f', len);
    pub_t p[64];
    memset(p, 0, sizeof(p));
    uint64_t worst = 0, failed_inside = 0;
    for (size_t i = 0; i < 64; i++) {
        uint64_t t0 = mh_mono_us();
        publish(&X, "X", body, len, &p[i]);
        uint64_t dt = mh_mono_us() - t0;
        worst = dt > worst ? dt : worst;
        failed_inside += p[i].calls == 1 && p[i].status == MH_EIO;
        spin(5);
    }
    free(body);
    fprintf(stderr, "frozen broker: slowest publish %llu us, %llu of 64 refused at once\n",
            (unsigned long long)worst, (unsigned long long)failed_inside);
    assert_true(worst < 200000); /* never waits for the peer */
    assert_true(failed_inside > 0);
    assert_true(mh_broker_stalled(X.b) || !mh_broker_up(X.b));
    thaw_private();
    assert_true(run_until(is_up, &X, 30000));
    assert_true(run_until(not_stalled, &X, 30000));
    assert_int_equal(publish_wait(&X, "X", "thawed", 6), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test_teardown(test_refused_stays_down, teardown_all),
        cmocka_unit_test_teardown(test_silent_listener_never_blocks_the_loop, teardown_all),
        cmocka_unit_test_setup_teardown(test_a_to_b_exact_bytes_and_ack, setup_ab, teardown_all),
        cmocka_unit_test_setup_teardown(test_acks_wait_and_cover_many, setup_ab, teardown_all),
        cmocka_unit_test_setup_teardown(test_unknown_instance_is_enoent, setup_ab, teardown_all),
        cmocka_unit_test_setup_teardown(test_many_confirmed_in_order, setup_ab, teardown_all),
        cmocka_unit_test_setup_teardown(test_one_mib_body, setup_ab, teardown_all),
        cmocka_unit_test_setup_teardown(test_expired_message_is_dropped, setup_ab, teardown_all),
        cmocka_unit_test_setup_teardown(test_unacked_is_redelivered, setup_ab, teardown_all),
        cmocka_unit_test_teardown(test_outage_and_reconnect, teardown_all),
        cmocka_unit_test_teardown(test_silent_server_detected, teardown_all),
        cmocka_unit_test_teardown(test_frozen_server_publish_never_blocks, teardown_all),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
