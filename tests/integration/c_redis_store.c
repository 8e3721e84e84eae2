/*
 * Integration tests of redis_store against real Redis servers: the shared
 * one at MSGHUB_TEST_REDIS_URL (default redis://127.0.0.1:6379), where every
 * key lives under a prefix unique to this run ("mhtest-<pid>-<random>-<n>")
 * and is deleted with SCAN + DEL after each test, and private redis-server
 * processes this test starts on free ports for the outage cases (only those
 * are ever killed). Each test drives its own uv loop until the callbacks
 * arrive, under a timeout, and checks at the end that the store left no uv
 * handle behind (uv_loop_close succeeds).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "msghub/redis_store.h"

#define WAIT_MS 5000u

static const char *g_url;
static char g_run[64]; /* prefix of every key of this run */
static unsigned g_seq;

typedef struct states {
    int ups, downs;
} states_t;

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t timer;
    uv_timer_t thaw; /* SIGCONTs the private server */
    int timed_out;
    mh_redis_store_t *rs;
    states_t st;
    char prefix[96];
    pid_t child; /* private redis-server, 0 when none */
} fx_t;

/* Whatever one callback delivered. */
typedef struct res {
    int calls, status;
    uint64_t u64, last_id, t_us;
    char *str;
    char *inst[8];
    size_t n;
    uint64_t *ids;
} res_t;

/* ---- loop driving ---- */

static void on_timeout(uv_timer_t *t)
{
    ((fx_t *)t->data)->timed_out = 1;
}

/* Runs the loop until *count >= want (count NULL: for ms); returns 1 if reached. */
static int run_until(fx_t *f, const int *count, int want, unsigned ms)
{
    f->timed_out = 0;
    uv_timer_start(&f->timer, on_timeout, ms, 0);
    while (!(count && *count >= want) && !f->timed_out)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->timer);
    return count && *count >= want;
}

static void run_for(fx_t *f, unsigned ms)
{
    run_until(f, NULL, 0, ms);
}

static void wait_res(fx_t *f, res_t *r)
{
    assert_true(run_until(f, &r->calls, 1, WAIT_MS));
    assert_int_equal(r->calls, 1);
}

/* ---- callbacks ---- */

static void on_state(void *ud, int up)
{
    states_t *s = ud;
    if (up)
        s->ups++;
    else
        s->downs++;
}

static void cb_u64(void *ud, int status, uint64_t v)
{
    res_t *r = ud;
    r->calls++;
    r->status = status;
    r->u64 = v;
    r->t_us = uv_hrtime() / 1000;
}

static void cb_status(void *ud, int status)
{
    cb_u64(ud, status, 0);
}

static void cb_claim(void *ud, int status, const char *previous)
{
    res_t *r = ud;
    cb_status(ud, status);
    r->str = previous ? strdup(previous) : NULL;
}

static void cb_routes(void *ud, int status, uint64_t last_id, const char *const *inst, size_t n)
{
    res_t *r = ud;
    cb_status(ud, status);
    r->last_id = last_id;
    r->n = n;
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++)
        r->inst[i] = inst[i] ? strdup(inst[i]) : NULL;
}

static void cb_ids(void *ud, int status, uint64_t *ids, size_t n)
{
    res_t *r = ud;
    cb_status(ud, status);
    r->ids = ids;
    r->n = n;
}

static void res_clear(res_t *r)
{
    free(r->str);
    free(r->ids);
    for (size_t i = 0; i < 8; i++)
        free(r->inst[i]);
    memset(r, 0, sizeof(*r));
}

/* ---- a plain synchronous connection, for checking and cleaning up ---- */

typedef struct addr {
    char host[128], pass[128];
    int port, db;
} addr_t;

static void parse_addr(const char *url, addr_t *a)
{
    const char *p = url + strlen("redis://"), *at = strrchr(p, '@');
    memset(a, 0, sizeof(*a));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        snprintf(a->pass, sizeof(a->pass), "%.*s", (int)(at - colon - 1), colon + 1);
        p = at + 1;
    }
    size_t hl = strcspn(p, ":/");
    snprintf(a->host, sizeof(a->host), "%.*s", (int)hl, p);
    p += hl;
    a->port = *p == ':' ? atoi(p + 1) : 6379;
    const char *slash = strchr(p, '/');
    a->db = slash ? atoi(slash + 1) : 0;
}

static redisContext *sync_connect(const char *url)
{
    addr_t a;
    parse_addr(url, &a);
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(a.host, a.port, tv);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    if (a.pass[0])
        freeReplyObject(redisCommand(c, "AUTH %s", a.pass));
    if (a.db)
        freeReplyObject(redisCommand(c, "SELECT %d", a.db));
    return c;
}

/* Runs a command and returns its reply as an integer or a string (copied to buf). */
static long long sync_cmd(redisContext *c, char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer
                  : r->type == REDIS_REPLY_NIL   ? -99
                                                 : 0;
    if (buf)
        snprintf(buf, cap, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return v;
}

/* Deletes every key of this run (SCAN + DEL): nothing else in that Redis. */
static void delete_run_keys(void)
{
    redisContext *c = sync_connect(g_url);
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH %s* COUNT 1000", cursor, g_run);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            redisReply *k = r->element[1]->element[i];
            freeReplyObject(redisCommand(c, "DEL %b", k->str, k->len));
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    redisFree(c);
}

/* ---- private redis-server processes ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void start_redis(fx_t *f, int port, const char *pass)
{
    char ports[16];
    snprintf(ports, sizeof(ports), "%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("redis-server", "redis-server", "--port", ports, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--requirepass", pass, (char *)NULL);
        _exit(127);
    }
    f->child = pid;
}

static void kill_redis(fx_t *f)
{
    if (f->child <= 0)
        return;
    kill(f->child, SIGKILL);
    waitpid(f->child, NULL, 0);
    f->child = 0;
}

/* ---- fixture ---- */

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    uv_timer_init(&f->loop, &f->timer);
    uv_timer_init(&f->loop, &f->thaw);
    f->timer.data = f->thaw.data = f;
    snprintf(f->prefix, sizeof(f->prefix), "%s-%u", g_run, ++g_seq);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    mh_redis_store_free(f->rs);
    kill_redis(f);
    uv_close((uv_handle_t *)&f->timer, NULL);
    uv_close((uv_handle_t *)&f->thaw, NULL);
    for (int i = 0; i < 10 && uv_loop_alive(&f->loop); i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(&f->loop);
    if (rc)
        uv_print_all_handles(&f->loop, stderr); /* a handle left open: fail */
    else
        free(f);
    delete_run_keys();
    return rc ? -1 : 0;
}

static mh_redis_store_t *open_store(fx_t *f, const char *url, states_t *st)
{
    char err[128] = "";
    mh_redis_store_t *rs =
        mh_redis_store_new(&f->loop, url, f->prefix, on_state, st, err, sizeof(err));
    assert_non_null(rs);
    return rs;
}

static void open_main(fx_t *f)
{
    f->rs = open_store(f, g_url, &f->st);
    assert_true(run_until(f, &f->st.ups, 1, WAIT_MS));
    assert_true(mh_redis_store_up(f->rs));
}

/* The store on a private redis-server of its own (one the test may stop), up. */
static void open_private(fx_t *f)
{
    int port = free_port();
    char url[80];
    snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d", port);
    f->rs = open_store(f, url, &f->st);
    start_redis(f, port, "s3cret");
    assert_true(run_until(f, &f->st.ups, 1, 8000));
}

/* ---- operations, issued and waited for ---- */

static uint64_t alloc_id(fx_t *f)
{
    res_t r = {0};
    mh_redis_alloc_id(f->rs, cb_u64, &r);
    wait_res(f, &r);
    assert_int_equal(r.status, 0);
    return r.u64;
}

static uint64_t last_id(fx_t *f)
{
    res_t r = {0};
    mh_redis_last_id(f->rs, cb_u64, &r);
    wait_res(f, &r);
    assert_int_equal(r.status, 0);
    return r.u64;
}

static void claim(fx_t *f, uint64_t id, const char *inst, uint64_t ttl_ms, const char *want_prev)
{
    res_t r = {0};
    mh_redis_claim(f->rs, id, inst, ttl_ms, cb_claim, &r);
    wait_res(f, &r);
    assert_int_equal(r.status, 0);
    if (want_prev)
        assert_string_equal(r.str, want_prev);
    else
        assert_null(r.str);
    res_clear(&r);
}

static void wait_status(fx_t *f, res_t *r)
{
    wait_res(f, r);
    assert_int_equal(r->status, 0);
    res_clear(r);
}

/* The listed ids must be exactly want[0..n). */
static void check_list(fx_t *f, const uint64_t *want, size_t n)
{
    res_t r = {0};
    mh_redis_list(f->rs, mh_now_ms(), cb_ids, &r);
    wait_res(f, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(r.ids);
    assert_int_equal(r.n, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(r.ids[i], want[i]);
    res_clear(&r);
}

/* One route looked up alone: its instance, or NULL. */
static void check_route(fx_t *f, uint64_t id, const char *want)
{
    res_t r = {0};
    mh_redis_lookup_routes(f->rs, &id, 1, cb_routes, &r);
    wait_res(f, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.n, 1);
    if (want)
        assert_string_equal(r.inst[0], want);
    else
        assert_null(r.inst[0]);
    res_clear(&r);
}

static long long key_cmd(fx_t *f, const char *verb, const char *kind, uint64_t id, char *buf)
{
    redisContext *c = sync_connect(g_url);
    long long v = sync_cmd(c, buf, buf ? 64 : 0, "%s %s:%s:%llu", verb, f->prefix, kind,
                           (unsigned long long)id);
    redisFree(c);
    return v;
}

/* ---- tests ---- */

static void test_url(void **state)
{
    fx_t *f = *state;
    static const char *const bad[] = {
        "http://127.0.0.1:6379", "redis://",        "redis://:6379", "redis://h:0",
        "redis://h:65536",       "redis://h:12x",   "redis://h/abc", "redis://secret@h",
        "redis://[::1",          "redis://h:1/0/x",
    };
    char err[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_null(mh_redis_store_new(&f->loop, bad[i], "p", NULL, NULL, err, sizeof(err)));
        assert_true(err[0] != '\0');
        assert_null(strstr(err, "secret"));
    }
    mh_redis_store_t *rs = mh_redis_store_new(&f->loop, "redis://u%3A:p%40ss@[::1]:1/2", "p", NULL,
                                              NULL, err, sizeof(err));
    assert_non_null(rs);
    mh_redis_store_free(rs);
    mh_redis_store_free(NULL);
    if (strcmp(g_url, "redis://127.0.0.1:6379") == 0) { /* the port defaults to 6379 */
        f->rs = open_store(f, "redis://127.0.0.1", &f->st);
        assert_true(run_until(f, &f->st.ups, 1, WAIT_MS));
    }
}

static void test_ids(void **state)
{
    fx_t *f = *state;
    open_main(f);
    assert_int_equal(last_id(f), 0);
    uint64_t prev = 0;
    for (int i = 0; i < 5; i++) {
        uint64_t id = alloc_id(f);
        assert_true(id > prev);
        prev = id;
    }
    assert_int_equal(prev, 5);
    assert_int_equal(last_id(f), 5);
    res_t r[20] = {{0}};
    for (int i = 0; i < 20; i++) /* pipelined: answered in order */
        mh_redis_alloc_id(f->rs, cb_u64, &r[i]);
    wait_res(f, &r[19]);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].u64, 6 + (uint64_t)i);
    }
    assert_int_equal(last_id(f), 25);
}

static void test_lookup_routes(void **state)
{
    fx_t *f = *state;
    open_main(f);
    for (int i = 0; i < 3; i++)
        alloc_id(f);
    claim(f, 1, "inst-a", 10000, NULL);
    claim(f, 3, "inst-b", 10000, NULL);
    uint64_t ids[] = {1, 2, 3, 99};
    res_t r = {0};
    mh_redis_lookup_routes(f->rs, ids, 4, cb_routes, &r);
    wait_res(f, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.last_id, 3);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.inst[0], "inst-a");
    assert_null(r.inst[1]);
    assert_string_equal(r.inst[2], "inst-b");
    assert_null(r.inst[3]);
    res_clear(&r);
    mh_redis_lookup_routes(f->rs, NULL, 0, cb_routes, &r); /* just the last id */
    wait_res(f, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.last_id, 3);
    assert_int_equal(r.n, 0);
}

static void test_claim_previous(void **state)
{
    fx_t *f = *state;
    open_main(f);
    claim(f, 7, "inst-a", 10000, NULL);
    claim(f, 7, "inst-b", 10000, "inst-a");
    claim(f, 7, "inst-b", 10000, "inst-b");
    check_route(f, 7, "inst-b");
    long long pttl = key_cmd(f, "PTTL", "route", 7, NULL);
    assert_true(pttl > 8000 && pttl <= 10000);
    uint64_t want[] = {7};
    check_list(f, want, 1);
}

/* Refreshes ids for instance; checks the ids reported as having stored messages. */
static void refresh(fx_t *f, const uint64_t *ids, size_t n, const char *instance)
{
    res_t r = {0};
    mh_redis_refresh(f->rs, ids, n, instance, 10000, cb_status, &r);
    wait_status(f, &r);
}

static void test_refresh(void **state)
{
    fx_t *f = *state;
    open_main(f);
    claim(f, 1, "inst-a", 300, NULL);
    claim(f, 2, "inst-b", 10000, NULL);
    uint64_t ids[] = {1, 2, 3};
    refresh(f, ids, 3, "inst-a");
    run_for(f, 400); /* past the first claim's ttl */
    assert_true(key_cmd(f, "PTTL", "route", 1, NULL) > 8000);
    check_route(f, 1, "inst-a");
    check_route(f, 2, "inst-b"); /* held elsewhere: left alone */
    check_route(f, 3, "inst-a"); /* absent: registered again */
    uint64_t want[] = {1, 2, 3};
    check_list(f, want, 3);
    refresh(f, NULL, 0, "inst-a");
    uint64_t many[1200]; /* several EVAL chunks in one pipeline */
    for (size_t i = 0; i < 1200; i++)
        many[i] = 1000 + i;
    refresh(f, many, 1200, "inst-c");
    check_route(f, 1000, "inst-c");
    check_route(f, 1600, "inst-c");
    check_route(f, 2199, "inst-c");
}

static void test_checkout(void **state)
{
    fx_t *f = *state;
    open_main(f);
    claim(f, 5, "inst-a", 10000, NULL);
    claim(f, 6, "inst-a", 10000, NULL);
    res_t r = {0};
    mh_redis_checkout(f->rs, 5, "inst-b", cb_status, &r); /* not the holder: nothing */
    wait_status(f, &r);
    check_route(f, 5, "inst-a");
    uint64_t both[] = {5, 6};
    check_list(f, both, 2);
    mh_redis_checkout(f->rs, 5, "inst-a", cb_status, &r);
    wait_status(f, &r);
    check_route(f, 5, NULL);
    uint64_t rest[] = {6};
    check_list(f, rest, 1);
    mh_redis_checkout(f->rs, 6, "inst-a", NULL, NULL); /* fire and forget */
    check_list(f, NULL, 0);
}

static void test_list_expiry(void **state)
{
    fx_t *f = *state;
    open_main(f);
    /* expiry order 4, 100, 9, 10: the list is numeric order, not score or text */
    claim(f, 100, "inst-a", 5000, NULL);
    claim(f, 9, "inst-a", 6000, NULL);
    claim(f, 10, "inst-a", 7000, NULL);
    claim(f, 4, "inst-a", 200, NULL);
    uint64_t all[] = {4, 9, 10, 100};
    check_list(f, all, 4);
    run_for(f, 300);
    uint64_t live[] = {9, 10, 100};
    check_list(f, live, 3);
    redisContext *c = sync_connect(g_url);
    assert_int_equal(sync_cmd(c, NULL, 0, "ZCARD %s:presence", f->prefix), 3);
    redisFree(c);
    check_route(f, 4, NULL);
}

static void test_free_fails_pending(void **state)
{
    fx_t *f = *state;
    open_main(f);
    res_t a = {0}, b = {0}, c = {0};
    mh_redis_alloc_id(f->rs, cb_u64, &a);
    mh_redis_last_id(f->rs, cb_u64, &b);
    mh_redis_list(f->rs, mh_now_ms(), cb_ids, &c);
    mh_redis_store_free(f->rs);
    f->rs = NULL;
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, MH_EIO);
    assert_int_equal(b.status, MH_EIO);
    assert_int_equal(c.status, MH_EIO);
    assert_null(c.ids);
    run_for(f, 100);
    assert_int_equal(a.calls + b.calls + c.calls, 3);
    assert_int_equal(f->st.downs, 0); /* free reports nothing */
}

typedef struct freer {
    fx_t *f;
    res_t r;
} freer_t;

static void cb_free_store(void *ud, int status, uint64_t v)
{
    freer_t *fr = ud;
    cb_u64(&fr->r, status, v);
    mh_redis_store_free(fr->f->rs);
    fr->f->rs = NULL;
}

static void test_free_in_callback(void **state)
{
    fx_t *f = *state;
    open_main(f);
    freer_t fr = {f, {0}};
    res_t b = {0};
    mh_redis_alloc_id(f->rs, cb_free_store, &fr);
    mh_redis_last_id(f->rs, cb_u64, &b);
    wait_res(f, &b);
    assert_int_equal(fr.r.calls, 1);
    assert_int_equal(fr.r.status, 0);
    assert_int_equal(b.status, MH_EIO);
    run_for(f, 100);
    assert_int_equal(fr.r.calls + b.calls, 2);
}

static void test_down_fails_fast(void **state)
{
    fx_t *f = *state;
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", free_port());
    f->rs = open_store(f, url, &f->st);
    run_for(f, 400);
    assert_int_equal(f->st.ups + f->st.downs, 0);
    assert_false(mh_redis_store_up(f->rs));
    res_t r = {0}, q = {0};
    uint64_t t0 = uv_hrtime() / 1000;
    mh_redis_alloc_id(f->rs, cb_u64, &r);
    assert_int_equal(r.calls, 0); /* deferred to the next loop turn */
    wait_res(f, &r);
    assert_int_equal(r.status, MH_EIO);
    assert_true(r.t_us - t0 < 100000);
    mh_redis_last_id(f->rs, cb_u64, &q);
    mh_redis_store_free(f->rs); /* a deferred failure is delivered by free */
    f->rs = NULL;
    assert_int_equal(q.calls, 1);
    assert_int_equal(q.status, MH_EIO);
}

/* A peer that accepts but never answers: the attempt is given up after 5 s, then retried. */
static void test_handshake_timeout(void **state)
{
    fx_t *f = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", ntohs(a.sin_port));
    f->rs = open_store(f, url, &f->st);
    run_for(f, 5700);
    assert_int_equal(f->st.ups, 0);
    assert_false(mh_redis_store_up(f->rs));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    int accepted = 0, c;
    while ((c = accept(fd, NULL, NULL)) >= 0) {
        accepted++;
        close(c);
    }
    assert_true(accepted >= 2); /* the first attempt, then a new one */
    close(fd);
}

/* A store with a wrong password stays down while the server is up. */
static void check_wrong_password(fx_t *f, int port)
{
    char url[64];
    states_t st = {0};
    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d", port);
    mh_redis_store_t *rs = open_store(f, url, &st);
    run_for(f, 500);
    assert_int_equal(st.ups, 0);
    assert_false(mh_redis_store_up(rs));
    mh_redis_store_free(rs);
}

static void test_outage(void **state)
{
    fx_t *f = *state;
    int port = free_port();
    char url[80];
    snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d/3", port);
    f->rs = open_store(f, url, &f->st);
    run_for(f, 300);
    assert_int_equal(f->st.ups, 0);
    start_redis(f, port, "s3cret");
    assert_true(run_until(f, &f->st.ups, 1, 8000));
    assert_int_equal(alloc_id(f), 1);
    redisContext *c = sync_connect(url); /* AUTH and SELECT 3 were used */
    char val[64];
    sync_cmd(c, val, sizeof(val), "GET %s:next_id", f->prefix);
    assert_string_equal(val, "1");
    redisFree(c);
    check_wrong_password(f, port);

    res_t pending = {0}, after = {0};
    mh_redis_alloc_id(f->rs, cb_u64, &pending);
    kill_redis(f);
    assert_true(run_until(f, &f->st.downs, 1, WAIT_MS));
    assert_int_equal(pending.calls, 1);
    assert_int_equal(pending.status, MH_EIO);
    assert_false(mh_redis_store_up(f->rs));
    mh_redis_alloc_id(f->rs, cb_u64, &after);
    wait_res(f, &after);
    assert_int_equal(after.status, MH_EIO);

    start_redis(f, port, "s3cret");
    assert_true(run_until(f, &f->st.ups, 2, 10000));
    assert_true(mh_redis_store_up(f->rs));
    assert_int_equal(alloc_id(f), 1); /* a fresh server: nothing persisted */
    assert_int_equal(f->st.downs, 1);
    assert_int_equal(pending.calls + after.calls, 2);
}

/* A server that keeps the connection but stops answering (SIGSTOP). */
static void test_stalled_server(void **state)
{
    fx_t *f = *state;
    open_private(f);
    assert_int_equal(alloc_id(f), 1);

    kill(f->child, SIGSTOP);
    res_t pending = {0};
    uint64_t t0 = uv_hrtime();
    mh_redis_alloc_id(f->rs, cb_u64, &pending);
    assert_true(run_until(f, &pending.calls, 1, 9000));
    uint64_t waited_ms = (uv_hrtime() - t0) / 1000000u;
    assert_int_equal(pending.status, MH_EIO); /* failed, not left waiting forever */
    assert_true(waited_ms >= 4000 && waited_ms < 9000);
    assert_true(run_until(f, &f->st.downs, 1, 2000));
    assert_false(mh_redis_store_up(f->rs));

    kill(f->child, SIGCONT); /* it answers again: the store reconnects by itself */
    assert_true(run_until(f, &f->st.ups, 2, 10000));
    /* the stalled INCR may still have run once the server woke: 2 or 3, never 1 */
    uint64_t id = alloc_id(f);
    assert_true(id == 2 || id == 3);
}

/* A lookup of many ids, counted: calls, successes, answers, routes found. */
typedef struct big_lookup {
    int calls, ok;
    size_t n, found;
} big_lookup_t;

static void cb_big_routes(void *ud, int status, uint64_t last_id, const char *const *inst, size_t n)
{
    big_lookup_t *b = ud;
    (void)last_id;
    b->calls++;
    b->ok += status == 0;
    b->n += n;
    for (size_t i = 0; i < n; i++)
        b->found += inst[i] && strcmp(inst[i], "inst-big") == 0;
}

static void on_thaw(uv_timer_t *t)
{
    fx_t *f = t->data;
    kill(f->child, SIGCONT);
}

/*
 * Commands a frozen server does not read fill the socket: hiredis' write is
 * partial, the rest must go out on POLLOUT once the server reads again
 * (the end-of-turn flush alone would leave it waiting for the next command).
 */
static void test_write_larger_than_the_socket(void **state)
{
    enum { IDS = 800000, THAW_MS = 1000 };
    fx_t *f = *state;
    open_private(f);
    alloc_id(f);
    alloc_id(f);
    claim(f, 2, "inst-big", 60000, NULL);

    uint64_t *ids = malloc(IDS * sizeof(*ids));
    for (size_t i = 0; i < IDS; i++)
        ids[i] = i % 2 ? 2 : 1; /* half of them routed */
    kill(f->child, SIGSTOP);
    big_lookup_t b = {0};
    mh_redis_lookup_routes(f->rs, ids, IDS, cb_big_routes, &b); /* an MGET of about 30 MB */
    free(ids);
    uv_timer_start(&f->thaw, on_thaw, THAW_MS, 0);
    /* Redis answers nothing until it has read the whole MGET, and the loop
       wakes for nothing else: without POLLOUT the rest would wait for the
       1 s watchdog ticks and the 5 s stall limit would drop the connection */
    assert_true(run_until(f, &b.calls, 1, 4000));
    assert_int_equal(b.ok, 1);
    assert_int_equal(b.n, IDS);
    assert_int_equal(b.found, IDS / 2);
    assert_int_equal(f->st.downs, 0);
    assert_int_equal(alloc_id(f), 3); /* the connection still serves */
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the hub does: hiredis writes with write(2) */
    g_url = getenv("MSGHUB_TEST_REDIS_URL");
    if (!g_url || !*g_url)
        g_url = "redis://127.0.0.1:6379";
    snprintf(g_run, sizeof(g_run), "mhtest-%d-%llx", (int)getpid(),
             (unsigned long long)(uv_hrtime() ^ ((uint64_t)rand() << 20)));
    const struct CMUnitTest tests[] = {
        T(test_url),
        T(test_ids),
        T(test_lookup_routes),
        T(test_claim_previous),
        T(test_refresh),
        T(test_checkout),
        T(test_list_expiry),
        T(test_free_fails_pending),
        T(test_free_in_callback),
        T(test_down_fails_fast),
        T(test_stalled_server),
        T(test_write_larger_than_the_socket),
        T(test_handshake_timeout),
        T(test_outage),
    };
    return cmocka_run_group_tests_name("redis_store", tests, NULL, NULL);
}
