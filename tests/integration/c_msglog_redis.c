/*
 * Integration tests of msglog_redis against real Redis servers: the shared
 * one at MSGHUB_TEST_REDIS_URL (default redis://127.0.0.1:6379), where every
 * key lives under a prefix unique to this run ("mhlogtest-<pid>-<random>-<n>")
 * and is deleted with SCAN + DEL after each test, and private redis-server
 * processes this test starts on free ports for what must not disturb the
 * shared server or must measure it alone (memory, SCRIPT FLUSH, outages);
 * only those are ever stopped. Each test drives its own uv loop under a
 * timeout and checks that no uv handle is left behind.
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

#include "msghub/msglog_redis.h"
#include "msghub/redis_store.h"

#define WAIT_MS 5000u
#define MAX_READ 64
#define BIG_BODY (1024u * 1024u)
#define FANOUT 255u
#define MANY 1201u /* receivers past one MGET chunk (1000) */
#define MIB (1024.0 * 1024.0)

static const char *g_url;
static char g_run[64];
static unsigned g_seq;

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t timer;
    int timed_out, ups, downs;
    mh_redis_store_t *rs;
    mh_msglog_t log;
    char prefix[96];
    char url[96];          /* the server in use */
    pid_t child;           /* private redis-server, 0 when none */
    uint64_t tidy_dropped; /* mh_msglog_redis_count_drops() */
} fx_t;

/* Whatever one callback delivered (arrays copied). */
typedef struct res {
    int calls, status;
    uint64_t seqs[MANY];
    char *inst[8];
    char *inst_last; /* the last receiver's */
    size_t n;
    uint64_t dropped, last_seq;
    mh_msglog_state_t st;
    uint64_t eseq[MAX_READ];
    char *etext[MAX_READ];
    uint32_t eat[MAX_READ];
} res_t;

/* ---- loop driving ---- */

static void on_timeout(uv_timer_t *t)
{
    ((fx_t *)t->data)->timed_out = 1;
}

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
    run_for(f, 1); /* a second callback would show here */
    assert_int_equal(r->calls, 1);
}

/* ---- callbacks ---- */

static void on_state(void *ud, int up)
{
    fx_t *f = ud;
    if (up)
        f->ups++;
    else
        f->downs++;
}

static void cb_append(void *ud, int status, const mh_msglog_appended_t *a)
{
    res_t *r = ud;
    r->calls++;
    r->status = status;
    if (status) {
        assert_null(a);
        return;
    }
    assert_true(a->n <= MANY);
    r->n = a->n;
    r->dropped = a->dropped;
    for (size_t i = 0; i < a->n; i++) {
        r->seqs[i] = a->seqs[i];
        if (i < 8)
            r->inst[i] = a->instances[i] ? strdup(a->instances[i]) : NULL;
    }
    if (a->n && a->instances[a->n - 1])
        r->inst_last = strdup(a->instances[a->n - 1]);
}

static void cb_read(void *ud, int status, const mh_msglog_entry_t *es, size_t n, uint64_t last)
{
    res_t *r = ud;
    r->calls++;
    r->status = status;
    r->n = n;
    r->last_seq = last;
    assert_true(n <= MAX_READ);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(es[i].frame->refs, 1);
        assert_int_equal(es[i].frame->is_message, 1);
        r->eseq[i] = es[i].seq;
        r->eat[i] = es[i].frame->seq_at;
        r->etext[i] = strndup((const char *)mh_frame_data(es[i].frame), es[i].frame->len);
    }
}

static void cb_state(void *ud, int status, const mh_msglog_state_t *st)
{
    res_t *r = ud;
    r->calls++;
    r->status = status;
    if (st)
        r->st = *st;
    else
        assert_int_not_equal(status, 0);
}

static void cb_status(void *ud, int status)
{
    res_t *r = ud;
    r->calls++;
    r->status = status;
}

static void res_clear(res_t *r)
{
    for (size_t i = 0; i < 8; i++)
        free(r->inst[i]);
    for (size_t i = 0; i < MAX_READ; i++)
        free(r->etext[i]);
    free(r->inst_last);
    memset(r, 0, sizeof(*r));
}

/* ---- a plain synchronous connection, for checking and cleaning up ---- */

static redisContext *sync_connect(const char *url)
{
    const char *p = url + strlen("redis://");
    char host[128];
    size_t hl = strcspn(p, ":/");
    snprintf(host, sizeof(host), "%.*s", (int)hl, p);
    int port = p[hl] == ':' ? atoi(p + hl + 1) : 6379;
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    const char *slash = strchr(p + hl, '/');
    if (slash && atoi(slash + 1))
        freeReplyObject(redisCommand(c, "SELECT %d", atoi(slash + 1)));
    return c;
}

/* Runs a command on the fixture's server: an integer reply, or a string copied to buf. */
static long long sync_cmd(fx_t *f, char *buf, size_t cap, const char *fmt, ...)
{
    redisContext *c = sync_connect(f->url);
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
    redisFree(c);
    return v;
}

/* A field of INFO <section> as a number. */
static double info_field(fx_t *f, const char *section, const char *field)
{
    static char buf[65536];
    sync_cmd(f, buf, sizeof(buf), "INFO %s", section);
    char key[96];
    snprintf(key, sizeof(key), "\n%s", field);
    const char *p = strstr(buf, key);
    assert_non_null(p);
    return atof(p + strlen(key));
}

static long long count_keys(fx_t *f, const char *pattern_suffix)
{
    redisContext *c = sync_connect(f->url);
    char cursor[32] = "0";
    long long n = 0;
    do {
        redisReply *r =
            redisCommand(c, "SCAN %s MATCH %s%s COUNT 1000", cursor, f->prefix, pattern_suffix);
        assert_true(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        n += (long long)r->element[1]->elements;
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    redisFree(c);
    return n;
}

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

static void start_redis(fx_t *f, int port)
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
               "--appendonly", "no", "--daemonize", "no", (char *)NULL);
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
    f->timer.data = f;
    snprintf(f->prefix, sizeof(f->prefix), "%s-%u", g_run, ++g_seq);
    snprintf(f->url, sizeof(f->url), "%s", g_url);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    mh_msglog_free(&f->log);
    mh_redis_store_free(f->rs);
    kill_redis(f);
    uv_close((uv_handle_t *)&f->timer, NULL);
    for (int i = 0; i < 10 && uv_loop_alive(&f->loop); i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(&f->loop);
    if (rc)
        uv_print_all_handles(&f->loop, stderr);
    else
        free(f);
    delete_run_keys();
    return rc ? -1 : 0;
}

/* Opens the store and the log on f->url; waits for the connection when wait_up. */
static void open_log(fx_t *f, uint32_t max_msgs, uint64_t max_bytes, uint64_t ttl_ms, int wait_up)
{
    char err[128] = "";
    f->rs = mh_redis_store_new(&f->loop, f->url, f->prefix, on_state, f, err, sizeof(err));
    assert_non_null(f->rs);
    mh_msglog_limits_t lim = {max_msgs, max_bytes, ttl_ms};
    assert_int_equal(mh_msglog_redis_new(&f->log, f->rs, &lim), 0);
    mh_msglog_redis_count_drops(&f->log, &f->tidy_dropped);
    if (wait_up)
        assert_true(run_until(f, &f->ups, 1, 8000));
}

static void open_private(fx_t *f, uint32_t max_msgs, uint64_t max_bytes, uint64_t ttl_ms)
{
    int port = free_port();
    snprintf(f->url, sizeof(f->url), "redis://127.0.0.1:%d", port);
    start_redis(f, port);
    open_log(f, max_msgs, max_bytes, ttl_ms, 1);
}

static void set_last_id(fx_t *f, uint64_t id)
{
    sync_cmd(f, NULL, 0, "SET %s:next_id %llu", f->prefix, (unsigned long long)id);
}

/* ---- operations, issued and waited for ---- */

static mh_frame_t *msg_frame(const char *text, uint32_t seq_at)
{
    mh_frame_t *fr = mh_frame_new(text, strlen(text));
    fr->is_message = 1;
    fr->seq_at = seq_at;
    return fr;
}

/* Appends text to ids; r holds the result (status checked by the caller). */
static void append_r(fx_t *f, const uint64_t *ids, size_t n, const char *text, res_t *r)
{
    mh_frame_t *fr = msg_frame(text, (uint32_t)strlen(text) - 1);
    mh_msglog_append(&f->log, ids, n, fr, mh_now_ms(), cb_append, r);
    mh_frame_unref(fr); /* the log keeps its own reference while the call runs */
    wait_res(f, r);
}

static void cb_read(void *ud, int status, const mh_msglog_entry_t *es, size_t n, uint64_t last);

/*
 * Retention drops since the last call: those reported with appends (the
 * script's) and, after a read that follows whatever the appends sent (one
 * connection answers in order), the tidy script's (mh_msglog_redis_count_drops).
 */
static uint64_t drops_after(fx_t *f, uint64_t reported)
{
    res_t r = {0};
    mh_msglog_read(&f->log, 1, 0, 0, cb_read, &r);
    wait_res(f, &r);
    assert_int_equal(r.status, 0);
    uint64_t later = f->tidy_dropped;
    f->tidy_dropped = 0;
    return reported + later;
}

/* Appends text to one id; returns its seq; *dropped: the retention drops it caused. */
static uint64_t append1(fx_t *f, uint64_t id, const char *text, uint64_t *dropped)
{
    res_t r = {0};
    append_r(f, &id, 1, text, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.n, 1);
    if (dropped)
        *dropped = drops_after(f, r.dropped);
    uint64_t seq = r.seqs[0];
    res_clear(&r);
    return seq;
}

static void read_r(fx_t *f, uint64_t id, uint64_t after, size_t max, res_t *r)
{
    mh_msglog_read(&f->log, id, after, max, cb_read, r);
    wait_res(f, r);
    assert_int_equal(r->status, 0);
}

/* The seqs read after `after` must be exactly want[0..n). */
static void check_read(fx_t *f, uint64_t id, uint64_t after, const uint64_t *want, size_t n)
{
    res_t r = {0};
    read_r(f, id, after, MAX_READ, &r);
    assert_int_equal(r.n, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(r.eseq[i], want[i]);
    res_clear(&r);
}

static mh_msglog_state_t open_id(fx_t *f, uint64_t id, uint64_t since, int want_status)
{
    res_t r = {0};
    mh_msglog_open(&f->log, id, since, cb_state, &r);
    wait_res(f, &r);
    assert_int_equal(r.status, want_status);
    return r.st;
}

static void ack(fx_t *f, uint64_t id, uint64_t seq)
{
    res_t r = {0};
    mh_msglog_ack(&f->log, id, seq, cb_status, &r);
    wait_res(f, &r);
    assert_int_equal(r.status, 0);
}

static void claim(fx_t *f, uint64_t id, const char *inst)
{
    sync_cmd(f, NULL, 0, "SET %s:route:%llu %s PX 10000", f->prefix, (unsigned long long)id, inst);
}

/* ---- tests ---- */

/* Seqs per id continue across appends with different receiver sets; routes come back. */
static void test_append_seq_routes(void **state)
{
    fx_t *f = *state;
    open_log(f, 10000, 16u << 20, 60000, 1);
    set_last_id(f, 3);
    claim(f, 1, "inst-a");
    claim(f, 3, "inst-b");
    uint64_t ids[] = {1, 2, 3, 99, 0};
    res_t r = {0};
    append_r(f, ids, 5, "{\"type\":\"message\",\"body\":\"hi\"}", &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.n, 5);
    uint64_t want[] = {1, 1, 1, 0, 0};
    for (int i = 0; i < 5; i++)
        assert_int_equal(r.seqs[i], want[i]);
    assert_string_equal(r.inst[0], "inst-a");
    assert_null(r.inst[1]);
    assert_string_equal(r.inst[2], "inst-b");
    assert_null(r.inst[3]);
    assert_null(r.inst[4]);
    assert_int_equal(r.dropped, 0);
    res_clear(&r);
    uint64_t next[4] = {0, 2, 2, 2}; /* by id */
    for (int i = 0; i < 300; i++) {  /* id 1 every time, 2 every other, 3 every third */
        uint64_t some[3];
        size_t n = 0;
        some[n++] = 1;
        if (i % 2 == 0)
            some[n++] = 2;
        if (i % 3 == 0)
            some[n++] = 3;
        append_r(f, some, n, "{\"type\":\"message\",\"body\":\"x\"}", &r);
        assert_int_equal(r.status, 0);
        for (size_t k = 0; k < n; k++)
            assert_int_equal(r.seqs[k], next[some[k]]++);
        res_clear(&r);
    }
    assert_int_equal(open_id(f, 1, 0, 0).last_seq, 301);
    assert_int_equal(open_id(f, 2, 0, 0).last_seq, 151);
    assert_int_equal(open_id(f, 3, 0, 0).last_seq, 101);
    /* nothing of the unknown id was stored */
    assert_int_equal(count_keys(f, ":log*:99"), 0);
    assert_int_equal(open_id(f, 99, 0, 0).last_seq, 0);
}

/* Read returns entries after a seq, ascending, with text and seq_at as appended. */
static void test_read_after(void **state)
{
    fx_t *f = *state;
    open_log(f, 10000, 16u << 20, 60000, 1);
    set_last_id(f, 1);
    char text[64], a[16], want_at[16];
    for (int i = 1; i <= 5; i++) {
        snprintf(text, sizeof(text), "{\"type\":\"message\",\"body\":\"m%d\"}", i);
        assert_int_equal(append1(f, 1, text, NULL), (uint64_t)i);
    }
    res_t r = {0};
    read_r(f, 1, 2, MAX_READ, &r);
    assert_int_equal(r.last_seq, 5);
    assert_int_equal(r.n, 3);
    for (int i = 0; i < 3; i++) {
        snprintf(text, sizeof(text), "{\"type\":\"message\",\"body\":\"m%d\"}", i + 3);
        assert_int_equal(r.eseq[i], 3 + (uint64_t)i);
        assert_string_equal(r.etext[i], text);
        assert_int_equal(r.eat[i], strlen(text) - 1);
    }
    res_clear(&r);
    uint64_t first2[] = {1, 2};
    res_t m = {0};
    read_r(f, 1, 0, 2, &m);
    assert_int_equal(m.n, 2);
    assert_memory_equal(m.eseq, first2, sizeof(first2));
    res_clear(&m);
    check_read(f, 1, 5, NULL, 0);
    check_read(f, 1, 500, NULL, 0);
    check_read(f, 42, 0, NULL, 0); /* an id with no log */
    /* the body is stored without seq, with its seq_at */
    snprintf(text, sizeof(text), "{\"type\":\"message\",\"body\":\"m1\"}");
    snprintf(want_at, sizeof(want_at), "%zu", strlen(text) - 1);
    sync_cmd(f, a, sizeof(a), "HGET %s:msg:1 a", f->prefix);
    assert_string_equal(a, want_at);
    sync_cmd(f, a, sizeof(a), "HGET %s:msg:1 t", f->prefix);
    assert_int_equal(strlen(a), sizeof(a) - 1); /* the text, cut to fit */
    assert_memory_equal(a, text, sizeof(a) - 1);
}

/* Two sessions of one id on two "instances" (stores) acking interleaved: by seq, never by count. */
static void test_ack_by_seq(void **state)
{
    fx_t *f = *state;
    open_log(f, 10000, 16u << 20, 60000, 1);
    set_last_id(f, 1);
    char err[128];
    mh_redis_store_t *rs_b =
        mh_redis_store_new(&f->loop, f->url, f->prefix, on_state, f, err, sizeof(err));
    mh_msglog_limits_t lim = {10000, 16u << 20, 60000};
    mh_msglog_t log_b;
    assert_int_equal(mh_msglog_redis_new(&log_b, rs_b, &lim), 0);
    assert_true(run_until(f, &f->ups, 2, 8000));
    for (int i = 0; i < 10; i++)
        append1(f, 1, "{\"type\":\"message\",\"body\":\"a\"}", NULL);
    ack(f, 1, 4); /* session A */
    for (int i = 0; i < 5; i++)
        append1(f, 1, "{\"type\":\"message\",\"body\":\"b\"}", NULL);
    res_t b1 = {0}, a1 = {0}, b2 = {0};
    mh_msglog_ack(&log_b, 1, 7, cb_status, &b1); /* B and A at once, A's late ack repeated */
    mh_msglog_ack(&f->log, 1, 4, cb_status, &a1);
    mh_msglog_ack(&log_b, 1, 2, cb_status, &b2);
    wait_res(f, &b1);
    wait_res(f, &a1);
    wait_res(f, &b2);
    assert_int_equal(b1.status + a1.status + b2.status, 0);
    uint64_t want[] = {8, 9, 10, 11, 12, 13, 14, 15};
    check_read(f, 1, 0, want, 8);
    check_read(f, 1, 9, want + 2, 6);
    mh_msglog_state_t st = open_id(f, 1, 0, 0);
    assert_int_equal(st.last_seq, 15);
    assert_int_equal(st.acked_seq, 7);
    assert_int_equal(st.recovered, 1);
    mh_msglog_free(&log_b);
    mh_redis_store_free(rs_b);
    ack(f, 1, 1000); /* above the last seq: counts as the last, nothing more */
    check_read(f, 1, 0, NULL, 0);
    assert_int_equal(open_id(f, 1, 0, 0).acked_seq, 15);
    assert_int_equal(append1(f, 1, "{\"type\":\"message\",\"body\":\"c\"}", NULL), 16);
    uint64_t w16[] = {16};
    check_read(f, 1, 0, w16, 1);
    /* acked bodies are gone: only the one of seq 16 is left */
    assert_int_equal(count_keys(f, ":msg:*"), 1);
    ack(f, 7, 3); /* an id with no log: nothing created */
    assert_int_equal(count_keys(f, ":log*:7"), 0);
}

/* One caller of a batched ack. */
typedef struct ackr {
    int calls, status;
} ackr_t;

static void cb_ackr(void *ud, int status)
{
    ackr_t *a = ud;
    a->calls++;
    a->status = status;
}

static int all_called(const ackr_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i].calls == 0)
            return 0;
    }
    return 1;
}

/* Runs the loop until every caller of a[0..n) was called; each must be called once with want. */
static void wait_ackrs(fx_t *f, const ackr_t *a, size_t n, int want)
{
    static int done;
    done = 0;
    uint64_t t0 = uv_hrtime();
    while (!all_called(a, n) && uv_hrtime() - t0 < (uint64_t)WAIT_MS * 1000000u)
        run_until(f, &done, 1, 10);
    run_for(f, 1); /* a second callback would show here */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].status, want);
    }
}

static long long hget_num(fx_t *f, const char *key_fmt, uint64_t id, const char *field)
{
    char key[160], buf[32] = "";
    snprintf(key, sizeof(key), key_fmt, f->prefix, (unsigned long long)id);
    sync_cmd(f, buf, sizeof(buf), "HGET %s %s", key, field);
    return atoll(buf);
}

/* A field of the body that entry idx of id's log refers to (an entry ends in ":<body id>"). */
static long long body_num(fx_t *f, uint64_t id, int idx, const char *field)
{
    char e[160] = "", buf[32] = "";
    sync_cmd(f, e, sizeof(e), "LINDEX %s:log:%llu %d", f->prefix, (unsigned long long)id, idx);
    const char *m = strrchr(e, ':');
    assert_non_null(m);
    sync_cmd(f, buf, sizeof(buf), "HGET %s:msg:%s %s", f->prefix, m + 1, field);
    return atoll(buf);
}

/* Calls of a command since the server's stats were last reset ("exec", "evalsha", ...). */
static long long cmd_calls(fx_t *f, const char *cmd)
{
    static char buf[65536];
    char key[64];
    snprintf(key, sizeof(key), "cmdstat_%s:calls=", cmd);
    sync_cmd(f, buf, sizeof(buf), "INFO commandstats");
    const char *p = strstr(buf, key);
    return p ? atoll(p + strlen(key)) : 0;
}

/*
 * Acks of many ids (and repeats for some) in one loop turn: a few EVALSHA in
 * all (one per batch of up to 1024 acks), every caller called once, every id
 * acknowledged exactly up to the highest seq asked for it, never further;
 * a body loses exactly the references of the acked entries.
 */
static void test_ack_batch(void **state)
{
    enum { MSGS = 3 };
    fx_t *f = *state;
    open_private(f, 10000, 16u << 20, 60000);
    set_last_id(f, MANY - 1);
    static uint64_t ids[MANY - 1];
    static ackr_t a[2 * (MANY - 1)];
    for (size_t i = 0; i < MANY - 1; i++)
        ids[i] = i + 1;
    for (int k = 0; k < MSGS; k++) {
        res_t r = {0};
        append_r(f, ids, MANY - 1, "{\"type\":\"message\",\"body\":\"b\"}", &r);
        assert_int_equal(r.status, 0);
        res_clear(&r);
    }
    long long before = cmd_calls(f, "evalsha");
    size_t n = 0;
    for (size_t i = 0; i < MANY - 1; i++) { /* id i+1 wants seq (i % 3) + 1 ... */
        memset(&a[n], 0, sizeof(a[n]));
        mh_msglog_ack(&f->log, ids[i], (i % MSGS) + 1, cb_ackr, &a[n++]);
    }
    for (size_t i = 0; i < MANY - 1; i += 2) { /* ... and a lower repeat from another session */
        memset(&a[n], 0, sizeof(a[n]));
        mh_msglog_ack(&f->log, ids[i], i % MSGS, cb_ackr, &a[n++]);
    }
    assert_int_equal(a[0].calls, 0); /* never from inside */
    wait_ackrs(f, a, n, 0);
    long long calls = cmd_calls(f, "evalsha") - before;
    print_message("%zu acks of %u ids in one turn: %lld EVALSHA\n", n, MANY - 1, calls);
    assert_true(calls >= 2 && calls <= 3); /* 1800 acks: two batches */
    long long left[MSGS + 1] = {0};
    for (size_t i = 0; i < MANY - 1; i++) {
        long long want = (long long)(i % MSGS) + 1;
        assert_int_equal(hget_num(f, "%s:logm:%llu", ids[i], "acked"), want);
        char key[160];
        snprintf(key, sizeof(key), "%s:log:%llu", f->prefix, (unsigned long long)ids[i]);
        assert_int_equal(sync_cmd(f, NULL, 0, "LLEN %s", key), MSGS - want);
        for (long long m = want + 1; m <= MSGS; m++)
            left[m]++;
    }
    for (uint64_t m = 1; m <= MSGS; m++) /* bodies 1..3: refs of the entries not acked */
        assert_int_equal(hget_num(f, "%s:msg:%llu", m, "r"), left[m]);
    for (size_t i = 0; i < MANY - 1; i++) {
        memset(&a[i], 0, sizeof(a[i]));
        mh_msglog_ack(&f->log, ids[i], MSGS, cb_ackr, &a[i]);
    }
    wait_ackrs(f, a, MANY - 1, 0);
    assert_int_equal(count_keys(f, ":msg:*"), 0); /* the last references went */
    assert_int_equal(count_keys(f, ":log:*"), 0);
    assert_int_equal(open_id(f, ids[0], 0, 0).acked_seq, MSGS);
}

/* A batch in flight when Redis dies, and one made while it is down: every caller gets MH_EIO once.
 */
static void test_ack_batch_outage(void **state)
{
    enum { N = 50 };
    fx_t *f = *state;
    open_private(f, 10000, 16u << 20, 60000);
    set_last_id(f, N);
    static ackr_t a[N], b[N];
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    for (uint64_t id = 1; id <= N; id++)
        assert_int_equal(append1(f, id, "{\"type\":\"message\",\"body\":\"1\"}", NULL), 1);
    for (uint64_t id = 1; id <= N; id++)
        mh_msglog_ack(&f->log, id, 1, cb_ackr, &a[id - 1]);
    kill_redis(f);
    wait_ackrs(f, a, N, MH_EIO);
    assert_true(run_until(f, &f->downs, 1, WAIT_MS));
    for (uint64_t id = 1; id <= N; id++)
        mh_msglog_ack(&f->log, id, 1, cb_ackr, &b[id - 1]);
    assert_int_equal(b[0].calls, 0);
    wait_ackrs(f, b, N, MH_EIO);
}

/*
 * Appends of one loop turn go as one batch: one EVALSHA for all of them;
 * each caller gets its own seqs and routes, called once, in the order the
 * appends came; a receiver named by several appends gets contiguous seqs in
 * that order, and the entries read back carry each append's text.
 */
static void test_append_batch(void **state)
{
    enum { N = 40 };
    fx_t *f = *state;
    open_log(f, 10000, 16u << 20, 60000, 1);
    set_last_id(f, 3);
    claim(f, 2, "inst-b");
    append1(f, 1, "{\"type\":\"message\",\"body\":\"first\"}", NULL); /* scripts loaded */
    static res_t r[N];
    memset(r, 0, sizeof(r));
    char texts[N][64];
    long long before = cmd_calls(f, "evalsha");
    for (int i = 0; i < N; i++) { /* i even: ids 1, 2; i odd: 2, 99 (unknown), 3 */
        uint64_t even[] = {1, 2}, odd[] = {2, 99, 3};
        snprintf(texts[i], sizeof(texts[i]), "{\"type\":\"message\",\"body\":\"m%d\"}", i);
        mh_frame_t *fr = msg_frame(texts[i], (uint32_t)strlen(texts[i]) - 1);
        mh_msglog_append(&f->log, i % 2 ? odd : even, i % 2 ? 3 : 2, fr, mh_now_ms(), cb_append,
                         &r[i]);
        mh_frame_unref(fr);
    }
    assert_int_equal(r[0].calls, 0); /* never from inside */
    assert_true(run_until(f, &r[N - 1].calls, 1, WAIT_MS));
    run_for(f, 1);
    assert_int_equal(cmd_calls(f, "evalsha") - before, 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, 0);
        if (i % 2 == 0) {
            assert_int_equal(r[i].n, 2);
            assert_int_equal(r[i].seqs[0], 2 + i / 2); /* id 1: seq 1 was the first append */
            assert_int_equal(r[i].seqs[1], i + 1);     /* id 2: every append */
            assert_null(r[i].inst[0]);
            assert_string_equal(r[i].inst[1], "inst-b");
        } else {
            assert_int_equal(r[i].n, 3);
            assert_int_equal(r[i].seqs[0], i + 1);
            assert_int_equal(r[i].seqs[1], 0);
            assert_int_equal(r[i].seqs[2], 1 + i / 2);
            assert_string_equal(r[i].inst[0], "inst-b");
            assert_null(r[i].inst[1]);
            assert_null(r[i].inst[2]);
        }
        res_clear(&r[i]);
    }
    res_t rd = {0};
    read_r(f, 2, 0, MAX_READ, &rd);
    assert_int_equal(rd.n, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(rd.eseq[i], i + 1);
        assert_string_equal(rd.etext[i], texts[i]);
    }
    res_clear(&rd);
    assert_int_equal(count_keys(f, ":msg:*"), N + 1); /* one body per append */
    assert_int_equal(body_num(f, 1, 1, "r"), 2);      /* the batch's first: ids 1, 2 */
    assert_int_equal(body_num(f, 3, 0, "r"), 2);      /* its second: 2, 3 (99 unknown) */
    assert_int_equal(count_keys(f, ":log*:99"), 0);
}

/*
 * A group commit: while a batch is unanswered (Redis stopped with SIGSTOP),
 * the appends and acks of the following loop turns wait in one batch each,
 * which goes as soon as the one out is answered: for 6 turns, 2 MULTI/EXEC
 * of appends and 2 EVALSHA of acks, every caller called once, seqs in the
 * order of the turns.
 */
static void test_group_commit(void **state)
{
    enum { TURNS = 6 };
    fx_t *f = *state;
    open_private(f, 10000, 16u << 20, 60000);
    set_last_id(f, 2);
    for (uint64_t id = 1; id <= 2; id++) /* scripts loaded; something to ack */
        assert_int_equal(append1(f, id, "{\"type\":\"message\",\"body\":\"0\"}", NULL), 1);
    long long before = cmd_calls(f, "evalsha"), execs = cmd_calls(f, "exec");
    static res_t r[TURNS];
    static ackr_t a[TURNS];
    memset(r, 0, sizeof(r));
    memset(a, 0, sizeof(a));
    uint64_t id = 1;
    mh_frame_t *fr = msg_frame("{\"type\":\"message\"}", 17);
    kill(f->child, SIGSTOP);
    for (int t = 0; t < TURNS; t++) {
        mh_msglog_append(&f->log, &id, 1, fr, mh_now_ms(), cb_append, &r[t]);
        mh_msglog_ack(&f->log, 2, 1, cb_ackr, &a[t]);
        run_for(f, 20); /* the turn ends: the first batches go, the later ones wait */
    }
    mh_frame_unref(fr);
    for (int t = 0; t < TURNS; t++)
        assert_int_equal(r[t].calls + a[t].calls, 0);
    kill(f->child, SIGCONT);
    assert_true(run_until(f, &r[TURNS - 1].calls, 1, WAIT_MS));
    wait_ackrs(f, a, TURNS, 0);
    run_for(f, 20);
    assert_int_equal(cmd_calls(f, "exec") - execs, 2);     /* appends 1 + 1 */
    assert_int_equal(cmd_calls(f, "evalsha") - before, 2); /* acks 1 + 1 */
    for (int t = 0; t < TURNS; t++) {
        assert_int_equal(r[t].calls, 1);
        assert_int_equal(r[t].status, 0);
        assert_int_equal(r[t].seqs[0], 2 + t);
        res_clear(&r[t]);
    }
    assert_int_equal(hget_num(f, "%s:logm:%llu", 2, "acked"), 1);
}

/*
 * TTL touches: a log appended to again within 1 % of the TTL (600 ms of
 * 60 s) keeps the TTL its first append gave; after that, or when the
 * append creates the list anew (acked empty), the TTL is renewed.
 */
static void test_touch_at_most_once_per_interval(void **state)
{
    fx_t *f = *state;
    open_log(f, 10000, 16u << 20, 60000, 1);
    set_last_id(f, 1);
    char lk[160];
    snprintf(lk, sizeof(lk), "%s:log:1", f->prefix);
    assert_int_equal(append1(f, 1, "{\"type\":\"message\",\"body\":\"1\"}", NULL), 1);
    long long first = sync_cmd(f, NULL, 0, "PTTL %s", lk);
    assert_true(first > 59000 && first <= 60000);
    run_for(f, 200);
    assert_int_equal(append1(f, 1, "{\"type\":\"message\",\"body\":\"2\"}", NULL), 2);
    long long held = sync_cmd(f, NULL, 0, "PTTL %s", lk);
    assert_true(held <= first - 150); /* not renewed */
    run_for(f, 600);
    assert_int_equal(append1(f, 1, "{\"type\":\"message\",\"body\":\"3\"}", NULL), 3);
    long long renewed = sync_cmd(f, NULL, 0, "PTTL %s", lk);
    assert_true(renewed > 59900); /* renewed: the interval passed */
    ack(f, 1, 3);                 /* the list goes */
    assert_int_equal(sync_cmd(f, NULL, 0, "PTTL %s", lk), -2);
    assert_int_equal(append1(f, 1, "{\"type\":\"message\",\"body\":\"4\"}", NULL), 4);
    long long anew = sync_cmd(f, NULL, 0, "PTTL %s", lk);
    assert_true(anew > 59900); /* a list created anew gets its TTL at once */
}

/* Retention over a batch: 5 appends to one id in one turn with max_msgs 3: 2 dropped, once. */
static void test_append_batch_retention(void **state)
{
    enum { N = 5 };
    fx_t *f = *state;
    open_log(f, 3, 16u << 20, 60000, 1);
    set_last_id(f, 1);
    static res_t r[N];
    memset(r, 0, sizeof(r));
    uint64_t id = 1;
    for (int i = 0; i < N; i++) {
        mh_frame_t *fr = msg_frame("{\"type\":\"message\",\"body\":\"r\"}", 27);
        mh_msglog_append(&f->log, &id, 1, fr, mh_now_ms(), cb_append, &r[i]);
        mh_frame_unref(fr);
    }
    assert_true(run_until(f, &r[N - 1].calls, 1, WAIT_MS));
    uint64_t dropped = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].status, 0);
        assert_int_equal(r[i].seqs[0], i + 1);
        dropped += r[i].dropped;
        res_clear(&r[i]);
    }
    assert_int_equal(drops_after(f, dropped), 2);
    uint64_t want[] = {3, 4, 5};
    check_read(f, 1, 0, want, 3);
    assert_int_equal(count_keys(f, ":msg:*"), 3); /* the dropped entries' bodies went */
    assert_int_equal(open_id(f, 1, 0, 0).recovered, 0);
    assert_int_equal(open_id(f, 1, 2, 0).recovered, 1);
}

/* open(since) acknowledges, refuses a since above the last seq. */
static void test_open_since(void **state)
{
    fx_t *f = *state;
    open_log(f, 10000, 16u << 20, 60000, 1);
    set_last_id(f, 1);
    mh_msglog_state_t st = open_id(f, 1, 0, 0);
    assert_int_equal(st.last_seq, 0);
    assert_int_equal(st.acked_seq, 0);
    assert_int_equal(st.recovered, 1);
    open_id(f, 1, 1, MH_EINVAL);
    for (int i = 0; i < 5; i++)
        append1(f, 1, "{\"type\":\"message\",\"body\":\"s\"}", NULL);
    st = open_id(f, 1, 3, 0);
    assert_int_equal(st.last_seq, 5);
    assert_int_equal(st.acked_seq, 3);
    assert_int_equal(st.recovered, 1);
    uint64_t want[] = {4, 5};
    check_read(f, 1, 0, want, 2);
    open_id(f, 1, 6, MH_EINVAL);
    assert_int_equal(open_id(f, 1, 2, 0).acked_seq, 3); /* acked only rises */
    assert_int_equal(open_id(f, 1, 5, 0).acked_seq, 5);
    check_read(f, 1, 0, NULL, 0);
}

/* Retention by count: the oldest go, are counted, and recovered turns 0 until acked past. */
static void test_retention_count(void **state)
{
    fx_t *f = *state;
    open_log(f, 3, 16u << 20, 60000, 1);
    set_last_id(f, 2);
    uint64_t dropped = 0, total = 0;
    for (int i = 0; i < 5; i++) {
        append1(f, 1, "{\"type\":\"message\",\"body\":\"r\"}", &dropped);
        total += dropped;
    }
    assert_int_equal(total, 2);
    uint64_t want[] = {3, 4, 5};
    check_read(f, 1, 0, want, 3);
    assert_int_equal(count_keys(f, ":msg:*"), 3); /* dropped bodies are deleted */
    mh_msglog_state_t st = open_id(f, 1, 0, 0);
    assert_int_equal(st.recovered, 0);
    st = open_id(f, 1, 2, 0); /* the client had everything up to 2: nothing lost for it */
    assert_int_equal(st.recovered, 1);
    /* acked entries are trimmed before retention could count them */
    for (int i = 0; i < 3; i++)
        append1(f, 2, "{\"type\":\"message\",\"body\":\"r\"}", NULL);
    ack(f, 2, 3);
    append1(f, 2, "{\"type\":\"message\",\"body\":\"r\"}", &dropped);
    assert_int_equal(dropped, 0);
    assert_int_equal(open_id(f, 2, 0, 0).recovered, 1);
}

/* Retention by bytes: sizes count `,"seq":N` as the receiver gets it. */
static void test_retention_bytes(void **state)
{
    fx_t *f = *state;
    const char *text = "{\"type\":\"message\",\"b\":1}"; /* 24 bytes: 32 with ,"seq":N */
    open_log(f, 10000, 3 * 32 - 1, 60000, 1);
    set_last_id(f, 1);
    uint64_t dropped = 0;
    append1(f, 1, text, &dropped);
    append1(f, 1, text, &dropped);
    assert_int_equal(dropped, 0);
    append1(f, 1, text, &dropped); /* 96 > 95 */
    assert_int_equal(dropped, 1);
    uint64_t want[] = {2, 3};
    check_read(f, 1, 0, want, 2);
    char b[32]; /* stored sizes leave the seq's digits out: retention adds them by position */
    sync_cmd(f, b, sizeof(b), "HGET %s:logm:1 bytes", f->prefix);
    assert_string_equal(b, "62");
    assert_int_equal(open_id(f, 1, 0, 0).recovered, 0);
    /* one message bigger than the cap stays alone */
    char big[200];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    append1(f, 1, big, &dropped);
    assert_int_equal(dropped, 2);
    uint64_t w4[] = {4};
    check_read(f, 1, 0, w4, 1);
}

/*
 * Retention of a whole batch over the count cap, on receivers sharing the
 * bodies: each log keeps the newest 4, reports 10 lost, and lets its head go
 * with one LTRIM (no entry by entry LPOP); the dropped bodies are deleted.
 */
static void test_retention_batch_shared(void **state)
{
    enum { CAP = 4, N = 10, RCV = 3 };
    fx_t *f = *state;
    open_private(f, CAP, 16u << 20, 60000);
    set_last_id(f, RCV);
    const uint64_t ids[RCV] = {1, 2, 3};
    const char *text = "{\"type\":\"message\",\"body\":\"r\"}";
    for (int i = 0; i < CAP; i++) {
        res_t r = {0};
        append_r(f, ids, RCV, text, &r);
        assert_int_equal(r.status, 0);
        res_clear(&r);
    }
    long long lpop = cmd_calls(f, "lpop"), ltrim = cmd_calls(f, "ltrim");
    static res_t r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        mh_frame_t *fr = msg_frame(text, (uint32_t)strlen(text) - 1);
        mh_msglog_append(&f->log, ids, RCV, fr, mh_now_ms(), cb_append, &r[i]);
        mh_frame_unref(fr);
    }
    assert_true(run_until(f, &r[N - 1].calls, 1, WAIT_MS));
    uint64_t dropped = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].status, 0);
        for (int k = 0; k < RCV; k++)
            assert_int_equal(r[i].seqs[k], CAP + i + 1);
        dropped += r[i].dropped;
        res_clear(&r[i]);
    }
    assert_int_equal(drops_after(f, dropped), RCV * N);
    assert_int_equal(cmd_calls(f, "lpop"), lpop);
    assert_int_equal(cmd_calls(f, "ltrim") - ltrim, RCV);
    uint64_t want[CAP] = {11, 12, 13, 14};
    char b[32];
    for (int k = 0; k < RCV; k++) {
        check_read(f, ids[k], 0, want, CAP);
        sync_cmd(f, b, sizeof(b), "HGET %s:logm:%d lost", f->prefix, k + 1);
        assert_string_equal(b, "10");
        sync_cmd(f, b, sizeof(b), "HGET %s:logm:%d bytes", f->prefix, k + 1);
        assert_int_equal(atoi(b), CAP * ((int)strlen(text) + 7));
    }
    assert_int_equal(count_keys(f, ":msg:*"), CAP); /* each dropped body deleted once */
    assert_int_equal(open_id(f, 1, 10, 0).recovered, 1);
    assert_int_equal(open_id(f, 2, 9, 0).recovered, 0);
}

/* Retention by bytes across more than one read of the head: 100 entries give way to one. */
static void test_retention_bytes_long_head(void **state)
{
    enum { N = 100, BIG = 3970 }; /* 3980 on the wire: 20 bytes left, less than any entry */
    fx_t *f = *state;
    const char *text = "{\"type\":\"message\",\"b\":1}"; /* 24 bytes: 31 + the seq's digits */
    open_log(f, 10000, 4000, 60000, 1);
    set_last_id(f, 1);
    uint64_t dropped = 0, total = 0;
    for (int i = 0; i < N; i++) {
        append1(f, 1, text, &dropped);
        total += dropped;
    }
    assert_int_equal(total, 0); /* 100 * 31 + 192 digits = 3292 <= 4000 */
    static char big[BIG + 1];
    memset(big, 'x', BIG);
    assert_int_equal(append1(f, 1, big, &dropped), N + 1);
    assert_int_equal(dropped, N);
    uint64_t want[] = {N + 1};
    check_read(f, 1, 0, want, 1);
    char b[32];
    sync_cmd(f, b, sizeof(b), "HGET %s:logm:1 bytes", f->prefix);
    assert_int_equal(atoi(b), BIG + 7);
    sync_cmd(f, b, sizeof(b), "HGET %s:logm:1 lost", f->prefix);
    assert_int_equal(atoi(b), N);
    assert_int_equal(count_keys(f, ":msg:*"), 1);
}

/* Retention by age, and keys expiring: the loss is reported, seqs continue. */
static void test_retention_ttl(void **state)
{
    fx_t *f = *state;
    const uint64_t ttl = 600;
    open_log(f, 10000, 16u << 20, ttl, 1);
    set_last_id(f, 2);
    append1(f, 1, "{\"type\":\"message\",\"body\":\"old\"}", NULL);
    long long pttl = sync_cmd(f, NULL, 0, "PTTL %s:log:1", f->prefix);
    assert_true(pttl > 0 && pttl <= (long long)ttl);
    pttl = sync_cmd(f, NULL, 0, "PTTL %s:msg:1", f->prefix);
    assert_true(pttl > 0 && pttl <= (long long)ttl);
    run_for(f, 400);
    append1(f, 1, "{\"type\":\"message\",\"body\":\"mid\"}", NULL); /* the log lives on */
    run_for(f, 300); /* the first entry and its body are past the TTL now */
    uint64_t w2[] = {2};
    check_read(f, 1, 0, w2, 1); /* its body expired: skipped */
    assert_int_equal(open_id(f, 1, 0, 0).recovered, 0);
    uint64_t dropped = 9;
    assert_int_equal(append1(f, 1, "{\"type\":\"message\",\"body\":\"new\"}", &dropped), 3);
    assert_int_equal(dropped, 1); /* the aged entry left the log */
    uint64_t w23[] = {2, 3};
    check_read(f, 1, 0, w23, 2);

    /* id 2: the whole log expires; the meta outlives it and reports the loss */
    append1(f, 2, "{\"type\":\"message\",\"body\":\"gone\"}", NULL);
    run_for(f, (unsigned)ttl + 150);
    mh_msglog_state_t st = open_id(f, 2, 0, 0);
    assert_int_equal(st.last_seq, 1);
    assert_int_equal(st.recovered, 0);
    assert_int_equal(append1(f, 2, "{\"type\":\"message\",\"body\":\"again\"}", NULL), 2);
}

static void append_big(fx_t *f, const uint64_t *ids, size_t n, mh_frame_t *fr)
{
    res_t r = {0};
    mh_msglog_append(&f->log, ids, n, fr, mh_now_ms(), cb_append, &r);
    wait_res(f, &r);
    assert_int_equal(r.status, 0);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(r.seqs[i], 1);
    res_clear(&r);
}

/* One 1 MiB body to 255 receivers adds about 1 MiB, with one command per append. */
static void test_body_once(void **state)
{
    fx_t *f = *state;
    open_private(f, 10000, 16u << 20, 60000);
    set_last_id(f, FANOUT);
    uint64_t ids[FANOUT];
    for (size_t i = 0; i < FANOUT; i++)
        ids[i] = i + 1;
    char *body = malloc(BIG_BODY + 1);
    memset(body, 'b', BIG_BODY);
    memcpy(body, "{\"type\":\"message\",\"body\":\"", 26);
    memcpy(body + BIG_BODY - 2, "\"}", 2);
    mh_frame_t *fr = mh_frame_new(body, BIG_BODY);
    fr->is_message = 1;
    fr->seq_at = BIG_BODY - 1;
    free(body);
    append1(f, 1, "{\"type\":\"message\"}", NULL); /* the scripts' first run: loaded */
    sync_cmd(f, NULL, 0, "CONFIG RESETSTAT");
    run_for(f, 2500); /* Redis shrinks idle query buffers in its cron */
    double before = info_field(f, "memory", "used_memory:");
    double clients0 = info_field(f, "memory", "mem_clients_normal:");
    append_big(f, ids, FANOUT, fr);
    run_for(f, 2500);
    double after = info_field(f, "memory", "used_memory:");
    double clients = info_field(f, "memory", "mem_clients_normal:") - clients0;
    double body_b = (double)sync_cmd(f, NULL, 0, "MEMORY USAGE %s:msg:2", f->prefix);
    double delta = (after - before) / MIB;
    print_message("used_memory: 1 MiB body to %u receivers added %.3f MiB "
                  "(body key %.3f MiB, client buffers %.3f MiB)\n",
                  FANOUT, delta, body_b / MIB, clients / MIB);
    assert_true(delta > 0.9 && delta < 2.0);
    /* since the reset: one MULTI/EXEC (one round trip), no script */
    assert_int_equal(cmd_calls(f, "exec"), 1);
    char stats[8192];
    sync_cmd(f, stats, sizeof(stats), "INFO commandstats");
    assert_null(strstr(stats, "cmdstat_evalsha:"));
    assert_null(strstr(stats, "cmdstat_eval:"));
    assert_null(strstr(stats, "cmdstat_script"));
    mh_frame_unref(fr);
    /* every receiver acks: the bodies go with the last reference */
    for (size_t i = 0; i < FANOUT; i++)
        ack(f, ids[i], 2);
    assert_int_equal(count_keys(f, ":msg:*"), 0);
    double end = info_field(f, "memory", "used_memory:");
    print_message("after every ack: %.3f MiB less than after the append\n", (after - end) / MIB);
    assert_true(after - end > 1.0 * MIB); /* the body went with its last reference */
}

/* The cost of a fan-out append (printed, for the benchmarks): small bodies to 255 ids. */
static void test_fanout_cost(void **state)
{
    fx_t *f = *state;
    enum { ROUNDS = 50 };
    open_log(f, 10000, 16u << 20, 60000, 1);
    set_last_id(f, FANOUT);
    uint64_t ids[FANOUT];
    for (size_t i = 0; i < FANOUT; i++)
        ids[i] = i + 1;
    uint64_t t0 = uv_hrtime();
    for (int k = 0; k < ROUNDS; k++) {
        res_t r = {0};
        append_r(f, ids, FANOUT, "{\"type\":\"message\",\"body\":\"fan\"}", &r);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.seqs[FANOUT - 1], (uint64_t)k + 1);
        res_clear(&r);
    }
    double ms = (double)(uv_hrtime() - t0) / 1e6 / ROUNDS;
    print_message("append to %u receivers: %.2f ms per call (one round trip)\n", FANOUT, ms);
}

/* More receivers than one MGET chunk: every route lands on its receiver. */
static void test_many_receivers(void **state)
{
    fx_t *f = *state;
    open_log(f, 10000, 16u << 20, 60000, 1);
    set_last_id(f, MANY - 1);
    static uint64_t ids[MANY];
    ids[0] = 5000; /* unknown */
    for (size_t i = 1; i < MANY; i++)
        ids[i] = i;
    claim(f, 3, "inst-c");
    claim(f, MANY - 1, "inst-z");
    res_t r = {0};
    append_r(f, ids, MANY, "{\"type\":\"message\",\"body\":\"many\"}", &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.n, MANY);
    assert_int_equal(r.seqs[0], 0);
    for (size_t i = 1; i < MANY; i++)
        assert_int_equal(r.seqs[i], 1);
    assert_null(r.inst[0]);
    assert_null(r.inst[2]);
    assert_string_equal(r.inst[3], "inst-c");
    assert_string_equal(r.inst_last, "inst-z");
    res_clear(&r);
}

/* SCRIPT FLUSH while connected: NOSCRIPT is answered with EVAL, seqs go on. */
static void test_script_flush(void **state)
{
    fx_t *f = *state;
    open_private(f, 10000, 16u << 20, 60000);
    set_last_id(f, 1);
    assert_int_equal(append1(f, 1, "{\"type\":\"message\",\"body\":\"1\"}", NULL), 1);
    sync_cmd(f, NULL, 0, "SCRIPT FLUSH");
    assert_int_equal(append1(f, 1, "{\"type\":\"message\",\"body\":\"2\"}", NULL), 2);
    assert_int_equal(append1(f, 1, "{\"type\":\"message\",\"body\":\"3\"}", NULL), 3);
    sync_cmd(f, NULL, 0, "SCRIPT FLUSH");
    uint64_t want[] = {1, 2, 3};
    check_read(f, 1, 0, want, 3);
    sync_cmd(f, NULL, 0, "SCRIPT FLUSH");
    assert_int_equal(open_id(f, 1, 2, 0).acked_seq, 2);
    sync_cmd(f, NULL, 0, "SCRIPT FLUSH");
    ack(f, 1, 3);
    check_read(f, 1, 0, NULL, 0);
}

/* Every operation fails once with MH_EIO against a closed port, never queued. */
static void test_unreachable(void **state)
{
    fx_t *f = *state;
    snprintf(f->url, sizeof(f->url), "redis://127.0.0.1:%d", free_port());
    open_log(f, 10000, 16u << 20, 60000, 0);
    run_for(f, 300);
    uint64_t id = 1;
    res_t a = {0}, r = {0}, o = {0}, k = {0};
    mh_frame_t *fr = msg_frame("{\"type\":\"message\"}", 17);
    mh_msglog_append(&f->log, &id, 1, fr, mh_now_ms(), cb_append, &a);
    mh_frame_unref(fr);
    mh_msglog_read(&f->log, 1, 0, 10, cb_read, &r);
    mh_msglog_open(&f->log, 1, 0, cb_state, &o);
    mh_msglog_ack(&f->log, 1, 1, cb_status, &k);
    assert_int_equal(a.calls + r.calls + o.calls + k.calls, 0); /* never from inside */
    res_t *all[] = {&a, &r, &o, &k};
    for (int i = 0; i < 4; i++) {
        wait_res(f, all[i]);
        assert_int_equal(all[i]->status, MH_EIO);
    }
    assert_int_equal(f->ups, 0);
}

/* Redis dies with an append pending, then comes back empty: the scripts are loaded again. */
static void test_outage(void **state)
{
    fx_t *f = *state;
    open_private(f, 10000, 16u << 20, 60000);
    set_last_id(f, 1);
    assert_int_equal(append1(f, 1, "{\"type\":\"message\",\"body\":\"1\"}", NULL), 1);
    res_t pending = {0}, pending2 = {0}, after = {0};
    uint64_t id = 1;
    mh_frame_t *fr = msg_frame("{\"type\":\"message\"}", 17);
    mh_msglog_append(&f->log, &id, 1, fr, mh_now_ms(), cb_append, &pending);
    mh_msglog_append(&f->log, &id, 1, fr, mh_now_ms(), cb_append, &pending2); /* same batch */
    kill_redis(f);
    assert_true(run_until(f, &f->downs, 1, WAIT_MS));
    wait_res(f, &pending);
    wait_res(f, &pending2);
    assert_int_equal(pending.status, MH_EINDOUBT); /* handed to hiredis: it may have run */
    assert_int_equal(pending2.status, MH_EINDOUBT);
    mh_msglog_append(&f->log, &id, 1, fr, mh_now_ms(), cb_append, &after);
    wait_res(f, &after);
    assert_int_equal(after.status, MH_EIO);

    int port = atoi(strrchr(f->url, ':') + 1);
    start_redis(f, port);
    assert_true(run_until(f, &f->ups, 2, 10000));
    set_last_id(f, 1);
    res_t again = {0};
    mh_msglog_append(&f->log, &id, 1, fr, mh_now_ms(), cb_append, &again);
    wait_res(f, &again);
    assert_int_equal(again.status, 0); /* a fresh server without our scripts */
    assert_int_equal(again.seqs[0], 1);
    mh_frame_unref(fr);
    res_clear(&again);
    assert_int_equal(pending.calls + pending2.calls + after.calls, 3);
}

/* Freeing the store fails what is pending, once; the log may go first. */
static void test_free_pending(void **state)
{
    fx_t *f = *state;
    open_log(f, 10000, 16u << 20, 60000, 1);
    set_last_id(f, 1);
    res_t a = {0}, r = {0};
    uint64_t id = 1;
    mh_frame_t *fr = msg_frame("{\"type\":\"message\"}", 17);
    mh_msglog_append(&f->log, &id, 1, fr, mh_now_ms(), cb_append, &a);
    mh_frame_unref(fr);
    mh_msglog_read(&f->log, 1, 0, 10, cb_read, &r);
    ackr_t k = {0}; /* held in this turn's batch when the log and the store go */
    mh_msglog_ack(&f->log, 1, 1, cb_ackr, &k);
    mh_msglog_free(&f->log);
    f->log.ops = NULL;
    mh_redis_store_free(f->rs);
    f->rs = NULL;
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, MH_EINDOUBT);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, MH_EIO);
    assert_int_equal(k.calls, 1);
    assert_int_equal(k.status, MH_EIO);
}

/*
 * Pushes seq `last + 1` of id as an entry without its seq ("<size>:<ms>:<m>",
 * the positional format a native append would write), with its own body m.
 */
static void push_positional(fx_t *f, uint64_t id, const char *m, const char *text)
{
    unsigned long long size = strlen(text) + strlen(",\"seq\":"), uid = id;
    sync_cmd(f, NULL, 0, "HSET %s:msg:%s t %s a %u r 1", f->prefix, m, text,
             (unsigned)strlen(text) - 1);
    sync_cmd(f, NULL, 0, "RPUSH %s:log:%llu %llu:%llu:%s", f->prefix, uid, size,
             (unsigned long long)mh_now_ms(), m);
    sync_cmd(f, NULL, 0, "HINCRBY %s:logm:%llu last 1", f->prefix, uid);
    sync_cmd(f, NULL, 0, "HINCRBY %s:logm:%llu bytes %llu", f->prefix, uid, size);
}

/*
 * A log holding both entry formats (this version's "<seq>:<size>:<ms>:<m>"
 * and the positional "<size>:<ms>:<m>"): read, ack and retention take every
 * entry's seq from its position (last - LLEN + 1 is the head's), so a
 * rolling upgrade to a writer of the positional format keeps every log
 * readable. Bodies are freed by ack and retention in both formats.
 */
static void test_positional_entries(void **state)
{
    fx_t *f = *state;
    open_log(f, 4, 16u << 20, 60000, 1);
    set_last_id(f, 1);
    const char *a = "{\"type\":\"message\",\"body\":\"a\"}";
    const char *p = "{\"type\":\"message\",\"body\":\"p\"}";
    assert_int_equal(append1(f, 1, a, NULL), 1);
    assert_int_equal(append1(f, 1, a, NULL), 2);
    push_positional(f, 1, "x3", p);
    push_positional(f, 1, "x4", p);
    res_t r = {0};
    read_r(f, 1, 1, MAX_READ, &r);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.last_seq, 4);
    const uint64_t want[] = {2, 3, 4};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(r.eseq[i], want[i]);
        assert_int_equal(r.eat[i], strlen(a) - 1);
        assert_string_equal(r.etext[i], i == 0 ? a : p); /* the text without its seq */
    }
    res_clear(&r);
    ack(f, 1, 3); /* two of this format, one positional */
    const uint64_t w4[] = {4};
    check_read(f, 1, 0, w4, 1);
    assert_int_equal(count_keys(f, ":msg:*"), 1); /* x4's */
    assert_int_equal(sync_cmd(f, NULL, 0, "EXISTS %s:msg:x4", f->prefix), 1);
    /* 5..8 make 5 entries, one past max_msgs: retention drops seq 4 (positional, unacked) */
    uint64_t dropped = 0, total = 0;
    for (uint64_t s = 5; s <= 8; s++) {
        assert_int_equal(append1(f, 1, a, &dropped), s);
        total += dropped;
    }
    assert_int_equal(total, 1);
    const uint64_t w58[] = {5, 6, 7, 8};
    check_read(f, 1, 0, w58, 4);
    check_read(f, 1, 6, w58 + 2, 2);
    assert_int_equal(sync_cmd(f, NULL, 0, "EXISTS %s:msg:x4", f->prefix), 0);
    mh_msglog_state_t st = open_id(f, 1, 3, 0);
    assert_int_equal(st.last_seq, 8);
    assert_int_equal(st.recovered, 0); /* 4 was dropped unacknowledged */
    assert_int_equal(hget_num(f, "%s:logm:%llu", 1, "lost"), 4);
}

/*
 * A MULTI/EXEC batch that finds the log expired apart from its meta (no
 * read or open in between): the stale byte count goes, the unacked entries
 * before it are lost, seqs continue. The appends after the first are plain
 * commands (no script) and the tidy script runs for that one receiver.
 */
static void test_native_expired_log(void **state)
{
    fx_t *f = *state;
    const uint64_t ttl = 600;
    const char *text = "{\"type\":\"message\",\"b\":1}"; /* 24 bytes: 31 stored */
    open_private(f, 10000, 16u << 20, ttl);
    set_last_id(f, 1);
    assert_int_equal(append1(f, 1, text, NULL), 1); /* the script: ids and body ids known */
    sync_cmd(f, NULL, 0, "CONFIG RESETSTAT");
    assert_int_equal(append1(f, 1, text, NULL), 2);
    assert_int_equal(cmd_calls(f, "exec"), 1);
    assert_int_equal(cmd_calls(f, "evalsha"), 0);
    assert_int_equal(hget_num(f, "%s:logm:%llu", 1, "bytes"), 62);
    run_for(f, (unsigned)ttl + 150); /* the list expires, the meta (2 x TTL) lives */
    assert_int_equal(sync_cmd(f, NULL, 0, "EXISTS %s:log:1", f->prefix), 0);
    assert_int_equal(append1(f, 1, text, NULL), 3);
    assert_int_equal(cmd_calls(f, "exec"), 2);
    assert_int_equal(cmd_calls(f, "evalsha") + cmd_calls(f, "eval"), 1); /* the tidy */
    assert_int_equal(hget_num(f, "%s:logm:%llu", 1, "bytes"), 31);
    assert_int_equal(hget_num(f, "%s:logm:%llu", 1, "lost"), 2);
    long long pttl = sync_cmd(f, NULL, 0, "PTTL %s:log:1", f->prefix);
    assert_true(pttl > 0 && pttl <= (long long)ttl);
    const uint64_t w3[] = {3};
    check_read(f, 1, 0, w3, 1);
    assert_int_equal(open_id(f, 1, 0, 0).recovered, 0);
    assert_int_equal(open_id(f, 1, 2, 0).recovered, 1); /* it had 1 and 2 after all */
}

/*
 * The store's ids reset under a running log (P:next_id dropped to 2 while
 * the log knew 5): a MULTI/EXEC batch to ids 1 and 5 gives 5 seq 0 and no
 * route, as an unknown id, and 5's keys go; 1 is appended as ever.
 */
static void test_native_ids_reset(void **state)
{
    fx_t *f = *state;
    open_log(f, 10000, 16u << 20, 60000, 1);
    set_last_id(f, 5);
    claim(f, 5, "inst-5");
    assert_int_equal(append1(f, 5, "{\"type\":\"message\",\"body\":\"a\"}", NULL), 1);
    set_last_id(f, 2);
    res_t r = {0};
    const uint64_t ids[] = {1, 5};
    append_r(f, ids, 2, "{\"type\":\"message\",\"body\":\"b\"}", &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.seqs[0], 1);
    assert_int_equal(r.seqs[1], 0);
    assert_null(r.inst[1]);
    res_clear(&r);
    assert_int_equal(count_keys(f, ":log*:5"), 0);
    const uint64_t w1[] = {1};
    check_read(f, 1, 0, w1, 1);
    /* the log now knows 2: an append to 5 is refused by the script, as for any unknown id */
    append_r(f, &ids[1], 1, "{\"type\":\"message\",\"body\":\"c\"}", &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.seqs[0], 0);
    res_clear(&r);
    assert_int_equal(count_keys(f, ":log*:5"), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    g_url = getenv("MSGHUB_TEST_REDIS_URL");
    if (!g_url || !*g_url)
        g_url = "redis://127.0.0.1:6379";
    snprintf(g_run, sizeof(g_run), "mhlogtest-%d-%llx", (int)getpid(),
             (unsigned long long)(uv_hrtime() ^ ((uint64_t)rand() << 20)));
    const struct CMUnitTest tests[] = {
        T(test_append_seq_routes),
        T(test_append_batch),
        T(test_append_batch_retention),
        T(test_group_commit),
        T(test_touch_at_most_once_per_interval),
        T(test_read_after),
        T(test_ack_by_seq),
        T(test_positional_entries),
        T(test_native_expired_log),
        T(test_native_ids_reset),
        T(test_ack_batch),
        T(test_ack_batch_outage),
        T(test_open_since),
        T(test_retention_count),
        T(test_retention_bytes),
        T(test_retention_batch_shared),
        T(test_retention_bytes_long_head),
        T(test_retention_ttl),
        T(test_body_once),
        T(test_fanout_cost),
        T(test_many_receivers),
        T(test_script_flush),
        T(test_unreachable),
        T(test_outage),
        T(test_free_pending),
    };
    return cmocka_run_group_tests_name("msglog_redis", tests, NULL, NULL);
}
