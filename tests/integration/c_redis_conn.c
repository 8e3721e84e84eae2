/*
 * Integration tests of redis_conn's request plumbing against the shared
 * Redis at MSGHUB_TEST_REDIS_URL (default redis://127.0.0.1:6379): the
 * replies of a MULTI/EXEC pipeline reach each command's reader whole and in
 * order (hiredis 0.14's QUEUED answers are one shared constant there), and
 * one command buffer reused for commands of very different lengths sends
 * each exactly. Keys live under a prefix unique to this run and are deleted
 * by the tests themselves; each test checks that the connection left no uv
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

#include <hiredis/hiredis.h>
#include <unistd.h>
#include <uv.h>

#include "../../src/backplane/redis_conn.h"

#define WAIT_MS 5000u
#define MAX_REPLIES 16u
#define BIG_BYTES 100000u

/* A copy of one reply (and of an array's first elements). */
typedef struct seen {
    int type;
    long long integer;
    char str[32];
    size_t len, elements;
    int el_type[4];
    char el_str[4][32];
    long long el_int[4];
    const void *addr; /* the reply object's address, compared only */
} seen_t;

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t timer;
    int timed_out, ups, freed, finished;
    mh_redis_conn_t *conn;
    char key[96];
    seen_t got[MAX_REPLIES];
    size_t ngot;
    int last_type, status;
    char *big; /* a GET's whole answer, when it was long */
    size_t big_len;
} fx_t;

typedef struct test_req {
    mh_redis_conn_req_t req;
    fx_t *f;
} test_req_t;

static void on_timeout(uv_timer_t *t)
{
    ((fx_t *)t->data)->timed_out = 1;
}

static int run_until(fx_t *f, const int *count, int want)
{
    f->timed_out = 0;
    uv_timer_start(&f->timer, on_timeout, WAIT_MS, 0);
    while (*count < want && !f->timed_out)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->timer);
    return *count >= want;
}

static void on_state(void *ud, int up)
{
    ((fx_t *)ud)->ups += up;
}

static void on_freed(void *arg)
{
    ((fx_t *)arg)->freed = 1;
}

static void copy_str(char *dst, const struct redisReply *r)
{
    size_t n = r->str && r->len < 31 ? r->len : 0;
    memcpy(dst, r->str ? r->str : "", n);
    dst[n] = '\0';
}

static void on_each(mh_redis_conn_req_t *q, size_t idx, const struct redisReply *r)
{
    fx_t *f = ((test_req_t *)q)->f;
    assert_int_equal(idx, f->ngot);
    assert_true(f->ngot < MAX_REPLIES);
    seen_t *s = &f->got[f->ngot++];
    s->type = r->type;
    s->integer = r->integer;
    s->len = r->len;
    s->addr = r;
    copy_str(s->str, r);
    if (r->type == REDIS_REPLY_STRING && r->len >= BIG_BYTES) {
        f->big = malloc(r->len);
        memcpy(f->big, r->str, r->len);
        f->big_len = r->len;
    }
    s->elements = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    for (size_t i = 0; i < s->elements && i < 4; i++) {
        s->el_type[i] = r->element[i]->type;
        s->el_int[i] = r->element[i]->integer;
        copy_str(s->el_str[i], r->element[i]);
    }
}

static void on_finish(mh_redis_conn_req_t *q, const struct redisReply *last)
{
    fx_t *f = ((test_req_t *)q)->f;
    f->finished++;
    f->status = q->status;
    f->last_type = last ? last->type : -1;
}

static const mh_redis_conn_req_ops_t test_ops = {"test", on_each, on_finish};

static int setup(void **state)
{
    static unsigned seq;
    fx_t *f = calloc(1, sizeof(*f));
    const char *url = getenv("MSGHUB_TEST_REDIS_URL");
    char err[160] = "";
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->timer);
    f->timer.data = f;
    snprintf(f->key, sizeof(f->key), "mhtest-conn-%d-%u", (int)getpid(), ++seq);
    f->conn = mh_redis_conn_new(&f->loop, url && *url ? url : "redis://127.0.0.1:6379", on_state, f,
                                err, sizeof(err));
    assert_non_null(f->conn);
    assert_true(run_until(f, &f->ups, 1));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    mh_redis_conn_free(f->conn, on_freed, f);
    assert_true(run_until(f, &f->freed, 1));
    uv_close((uv_handle_t *)&f->timer, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->big);
    free(f);
    return 0;
}

static test_req_t *new_req(fx_t *f)
{
    test_req_t *t = mh_redis_conn_req_new(f->conn, &test_ops, sizeof(*t));
    t->f = f;
    return t;
}

/* verb key [arg] through the reused buffer c. */
static void key_cmd(test_req_t *t, mh_redis_conn_cmd_t *c, const char *verb, const char *suffix,
                    const char *arg, size_t arg_len)
{
    mh_redis_conn_cmd_reset(c, 3, verb);
    mh_redis_conn_cmd_fmt(c, "%s%s", t->f->key, suffix);
    if (arg)
        mh_redis_conn_cmd_bin(c, arg, arg_len);
    mh_redis_conn_cmd_queue(&t->req, c);
}

static void assert_seen(const seen_t *s, int type, const char *str)
{
    assert_int_equal(s->type, type);
    assert_string_equal(s->str, str);
    assert_int_equal(s->len, strlen(str));
}

static void test_multi_exec_replies(void **state)
{
    fx_t *f = *state;
    test_req_t *t = new_req(f);
    mh_redis_conn_cmd_t c;
    mh_redis_conn_cmd_init(&c, 1, "MULTI");
    mh_redis_conn_cmd_queue(&t->req, &c);
    key_cmd(t, &c, "SET", ":a", "QUEUED", 6); /* a bulk string that reads like the status */
    key_cmd(t, &c, "GET", ":a", NULL, 0);
    key_cmd(t, &c, "INCRBY", ":n", "5", 1);
    mh_redis_conn_cmd_reset(&c, 1, "EXEC");
    mh_redis_conn_cmd_queue(&t->req, &c);
    key_cmd(t, &c, "GET", ":a", NULL, 0);
    mh_redis_conn_cmd_reset(&c, 1, "PING");
    mh_redis_conn_cmd_queue(&t->req, &c);
    key_cmd(t, &c, "DEL", ":a", NULL, 0);
    key_cmd(t, &c, "DEL", ":n", NULL, 0);
    mh_redis_conn_cmd_free(&c);
    mh_redis_conn_submit(&t->req);
    assert_true(run_until(f, &f->finished, 1));

    assert_int_equal(f->status, 0);
    assert_int_equal(f->ngot, 9);
    assert_seen(&f->got[0], REDIS_REPLY_STATUS, "OK");
    for (size_t i = 1; i <= 3; i++)
        assert_seen(&f->got[i], REDIS_REPLY_STATUS, "QUEUED");
#if HIREDIS_MAJOR == 0
    assert_ptr_equal(f->got[1].addr, f->got[3].addr); /* the shared constant */
#endif
    const seen_t *x = &f->got[4];
    assert_int_equal(x->type, REDIS_REPLY_ARRAY);
    assert_int_equal(x->elements, 3);
    assert_int_equal(x->el_type[0], REDIS_REPLY_STATUS);
    assert_string_equal(x->el_str[0], "OK");
    assert_int_equal(x->el_type[1], REDIS_REPLY_STRING);
    assert_string_equal(x->el_str[1], "QUEUED");
    assert_int_equal(x->el_type[2], REDIS_REPLY_INTEGER);
    assert_int_equal(x->el_int[2], 5);
    assert_seen(&f->got[5], REDIS_REPLY_STRING, "QUEUED");
    assert_seen(&f->got[6], REDIS_REPLY_STATUS, "PONG");
    assert_int_equal(f->got[7].type, REDIS_REPLY_INTEGER);
    assert_int_equal(f->got[7].integer, 1);
    assert_int_equal(f->got[8].integer, 1);
    assert_int_equal(f->last_type, REDIS_REPLY_INTEGER);
}

/* A queued command that Redis refuses: its error, then EXECABORT, both read as errors. */
static void test_multi_refused_command(void **state)
{
    fx_t *f = *state;
    test_req_t *t = new_req(f);
    mh_redis_conn_cmd_t c;
    mh_redis_conn_cmd_init(&c, 1, "MULTI");
    mh_redis_conn_cmd_queue(&t->req, &c);
    key_cmd(t, &c, "SET", ":b", "1", 1);
    mh_redis_conn_cmd_reset(&c, 1, "GET"); /* no key: wrong number of arguments */
    mh_redis_conn_cmd_queue(&t->req, &c);
    mh_redis_conn_cmd_reset(&c, 1, "EXEC");
    mh_redis_conn_cmd_queue(&t->req, &c);
    key_cmd(t, &c, "EXISTS", ":b", NULL, 0);
    mh_redis_conn_cmd_free(&c);
    mh_redis_conn_submit(&t->req);
    assert_true(run_until(f, &f->finished, 1));

    assert_int_equal(f->status, MH_EIO); /* error replies fail the request ... */
    assert_int_equal(f->ngot, 2);        /* ... and only the replies before the first reach each */
    assert_seen(&f->got[0], REDIS_REPLY_STATUS, "OK");
    assert_seen(&f->got[1], REDIS_REPLY_STATUS, "QUEUED");
    assert_int_equal(f->last_type, -1);

    /* the connection still serves: nothing of the aborted transaction ran */
    f->finished = 0;
    f->ngot = 0;
    t = new_req(f);
    mh_redis_conn_cmd_init(&c, 2, "EXISTS");
    mh_redis_conn_cmd_fmt(&c, "%s:b", f->key);
    mh_redis_conn_cmd_send(&t->req, &c);
    mh_redis_conn_submit(&t->req);
    assert_true(run_until(f, &f->finished, 1));
    assert_int_equal(f->status, 0);
    assert_int_equal(f->ngot, 1);
    assert_int_equal(f->got[0].type, REDIS_REPLY_INTEGER);
    assert_int_equal(f->got[0].integer, 0);
}

/* One buffer: a short command, a 100 KB one, then short ones again, each sent exactly. */
static void test_cmd_buffer_reused(void **state)
{
    fx_t *f = *state;
    char *big = malloc(BIG_BYTES);
    for (size_t i = 0; i < BIG_BYTES; i++)
        big[i] = (char)(i % 251); /* every byte value but a few, CR and LF among them */
    test_req_t *t = new_req(f);
    mh_redis_conn_cmd_t c;
    mh_redis_conn_cmd_init(&c, 3, "SET");
    mh_redis_conn_cmd_fmt(&c, "%s:s", f->key);
    mh_redis_conn_cmd_u64(&c, "x", 18446744073709551615u);
    mh_redis_conn_cmd_queue(&t->req, &c);
    key_cmd(t, &c, "SET", ":big", big, BIG_BYTES);
    key_cmd(t, &c, "GET", ":big", NULL, 0);
    key_cmd(t, &c, "GET", ":s", NULL, 0);
    key_cmd(t, &c, "DEL", ":big", NULL, 0);
    key_cmd(t, &c, "DEL", ":s", NULL, 0);
    mh_redis_conn_cmd_free(&c);
    mh_redis_conn_submit(&t->req);
    assert_true(run_until(f, &f->finished, 1));

    assert_int_equal(f->status, 0);
    assert_int_equal(f->ngot, 6);
    assert_seen(&f->got[0], REDIS_REPLY_STATUS, "OK");
    assert_seen(&f->got[1], REDIS_REPLY_STATUS, "OK");
    assert_int_equal(f->got[2].type, REDIS_REPLY_STRING);
    assert_int_equal(f->big_len, BIG_BYTES);
    assert_memory_equal(f->big, big, BIG_BYTES);
    assert_seen(&f->got[3], REDIS_REPLY_STRING, "x18446744073709551615");
    assert_int_equal(f->got[4].integer, 1);
    assert_int_equal(f->got[5].integer, 1);
    free(big);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_multi_exec_replies),
        T(test_multi_refused_command),
        T(test_cmd_buffer_reused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
