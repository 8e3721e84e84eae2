/*
 * redis_store: the Redis side of distributed mode (contract, key layout and
 * callback rules in redis_store.h): the keys, the commands and Lua scripts
 * of each operation, and the reading of their replies.
 *
 * The connection, the handshake, reconnection and the request plumbing
 * (pipelining, completion exactly once, failing at once while down) are
 * redis_conn's. An operation here is an op_t: a redis_conn request with the
 * user's callback and the result being built, completed by the request's
 * finish hook.
 *
 * Ownership: the store owns its connection and its key strings; its memory
 * goes when the connection's does, after mh_redis_store_free() once the
 * loop runs again, so calls made from late callbacks still find it. What
 * the hub does with the answers, and any retrying of failed commands, is
 * not here.
 */
#include "msghub/redis_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_conn.h"
#include "redis_decode.h"

#define REFRESH_CHUNK 512 /* ids per EVAL: keeps each script run short */

typedef mh_redis_conn_req_ops_t req_ops_t;
typedef mh_redis_conn_req_t req_t;
typedef mh_redis_conn_cmd_t cmd_t;

typedef struct op {
    req_t req; /* first: redis_conn allocates and frees the op through it */
    mh_redis_store_t *rs;
    union {
        mh_redis_u64_fn u64;
        mh_redis_status_fn status;
        mh_redis_routes_fn routes;
        mh_redis_claim_fn claim;
        mh_redis_ids_fn ids;
        mh_redis_secret_fn secret;
    } cb;
    void *ud;
    uint64_t val;  /* scalar result */
    size_t n;      /* ids of a lookup */
    char *str;     /* previous holder of a claim */
    uint64_t *ids; /* ids collected from several replies (refresh) */
    size_t n_ids;
} op_t;

struct mh_redis_store {
    mh_redis_conn_t *conn;
    char *prefix, *key_next_id, *key_presence, *key_route; /* key_route: "<prefix>:route:" */
};

/* ---- store lifetime and small helpers ---- */

static void store_destroy(void *arg)
{
    mh_redis_store_t *rs = arg;
    free(rs->prefix);
    free(rs->key_next_id);
    free(rs->key_presence);
    free(rs->key_route);
    free(rs);
}

mh_redis_store_t *mh_redis_store_new(struct uv_loop_s *loop, const char *url, const char *prefix,
                                     mh_redis_state_fn on_state, void *ud, char *err, size_t errlen)
{
    if (!prefix) {
        if (err && errlen)
            snprintf(err, errlen, "bad redis url: %s", "missing argument");
        return NULL;
    }
    mh_redis_conn_t *conn = mh_redis_conn_new(loop, url, on_state, ud, err, errlen);
    if (!conn)
        return NULL;
    mh_redis_store_t *rs = mh_xcalloc(1, sizeof(*rs));
    rs->conn = conn;
    rs->prefix = mh_xstrdup(prefix);
    rs->key_next_id = mh_xstrcat(prefix, ":next_id");
    rs->key_presence = mh_xstrcat(prefix, ":presence");
    rs->key_route = mh_xstrcat(prefix, ":route:");
    return rs;
}

void mh_redis_store_free(mh_redis_store_t *rs)
{
    if (rs)
        mh_redis_conn_free(rs->conn, store_destroy, rs); /* a second call is a no-op */
}

int mh_redis_store_up(const mh_redis_store_t *rs)
{
    return rs && mh_redis_conn_up(rs->conn);
}

mh_redis_conn_t *mh_redis_store_conn(mh_redis_store_t *rs)
{
    return rs->conn;
}

const char *mh_redis_store_prefix(const mh_redis_store_t *rs)
{
    return rs->prefix;
}

static op_t *op_new(mh_redis_store_t *rs, const req_ops_t *ops, void *ud)
{
    op_t *q = mh_redis_conn_req_new(rs->conn, ops, sizeof(*q));
    q->rs = rs;
    q->ud = ud;
    return q;
}

/* ---- ids ---- */

static void each_int(req_t *req, size_t idx, const redisReply *r)
{
    op_t *q = (op_t *)req;
    if (idx == 0 && mh_redis_decode_int(r, &q->val))
        mh_redis_conn_bad_reply(&q->req, r);
}

/* GET of a counter: nil is 0. */
static void each_get_u64(req_t *req, size_t idx, const redisReply *r)
{
    op_t *q = (op_t *)req;
    if (idx == 0 && mh_redis_decode_counter(r, &q->val))
        mh_redis_conn_bad_reply(&q->req, r);
}

static void finish_u64(req_t *req, const redisReply *last)
{
    op_t *q = (op_t *)req;
    if (q->cb.u64)
        q->cb.u64(q->ud, q->req.status, q->req.status ? 0 : q->val);
}

static void finish_status(req_t *req, const redisReply *last)
{
    op_t *q = (op_t *)req;
    if (q->cb.status)
        q->cb.status(q->ud, q->req.status);
}

static const req_ops_t alloc_ops = {"alloc_id", each_int, finish_u64};
static const req_ops_t last_ops = {"last_id", each_get_u64, finish_u64};

void mh_redis_alloc_id(mh_redis_store_t *rs, mh_redis_u64_fn cb, void *ud)
{
    op_t *q = op_new(rs, &alloc_ops, ud);
    q->cb.u64 = cb;
    mh_redis_conn_send(&q->req, "INCR %s", rs->key_next_id);
    mh_redis_conn_submit(&q->req);
}

void mh_redis_last_id(mh_redis_store_t *rs, mh_redis_u64_fn cb, void *ud)
{
    op_t *q = op_new(rs, &last_ops, ud);
    q->cb.u64 = cb;
    mh_redis_conn_send(&q->req, "GET %s", rs->key_next_id);
    mh_redis_conn_submit(&q->req);
}

/* KEYS: next_id; ARGV: the lowest value it must have. */
static const char raise_id_lua[] = "local v = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
                                   "if v < tonumber(ARGV[1]) then\n"
                                   "  redis.call('SET', KEYS[1], ARGV[1])\n"
                                   "end\n"
                                   "return 0\n";

static const req_ops_t raise_ops = {"raise_id", NULL, finish_status};

void mh_redis_raise_id(mh_redis_store_t *rs, uint64_t min_id, mh_redis_status_fn cb, void *ud)
{
    op_t *q = op_new(rs, &raise_ops, ud);
    q->cb.status = cb;
    mh_redis_conn_send(&q->req, "EVAL %s 1 %s %" PRIu64, raise_id_lua, rs->key_next_id, min_id);
    mh_redis_conn_submit(&q->req);
}

/* ---- the shared token secret ---- */

/* KEYS: token_secret; ARGV: the secret to create it with. Returns the one in force. */
static const char secret_lua[] = "redis.call('SET', KEYS[1], ARGV[1], 'NX')\n"
                                 "return redis.call('GET', KEYS[1])\n";

static void each_secret(req_t *req, size_t idx, const redisReply *r)
{
    op_t *q = (op_t *)req;
    const char *s;
    size_t len;
    if (idx != 0)
        return;
    if (mh_redis_decode_secret(r, &s, &len)) {
        mh_redis_conn_bad_reply(&q->req, r);
        return;
    }
    q->str = mh_xmalloc(len + 1);
    memcpy(q->str, s, len);
    q->str[len] = '\0';
    q->val = len;
}

static void finish_secret(req_t *req, const redisReply *last)
{
    op_t *q = (op_t *)req;
    int ok = q->req.status == 0 && q->str;
    if (q->cb.secret)
        q->cb.secret(q->ud,
                     ok              ? 0
                     : q->req.status ? q->req.status
                                     : MH_EIO,
                     ok ? q->str : NULL, ok ? (size_t)q->val : 0);
    free(q->str);
}

static const req_ops_t secret_ops = {"token_secret", each_secret, finish_secret};

void mh_redis_token_secret(mh_redis_store_t *rs, const char *candidate, mh_redis_secret_fn cb,
                           void *ud)
{
    op_t *q = op_new(rs, &secret_ops, ud);
    q->cb.secret = cb;
    mh_redis_conn_send(&q->req, "EVAL %s 1 %s:token_secret %s", secret_lua, rs->prefix, candidate);
    mh_redis_conn_submit(&q->req);
}

/* ---- routes and presence ---- */

static void finish_routes(req_t *req, const redisReply *last)
{
    op_t *q = (op_t *)req;
    const char **inst = NULL;
    if (!q->req.status && q->n) {
        inst = mh_xmalloc(q->n * sizeof(*inst));
        if (mh_redis_decode_routes(last, q->n, inst))
            mh_redis_conn_bad_reply(&q->req, last);
    }
    int ok = q->req.status == 0;
    if (q->cb.routes)
        q->cb.routes(q->ud, q->req.status, ok ? q->val : 0, ok ? inst : NULL, ok ? q->n : 0);
    free(inst);
}

static const req_ops_t routes_ops = {"lookup_routes", each_get_u64, finish_routes};

void mh_redis_lookup_routes(mh_redis_store_t *rs, const uint64_t *ids, size_t n,
                            mh_redis_routes_fn cb, void *ud)
{
    op_t *q = op_new(rs, &routes_ops, ud);
    q->cb.routes = cb;
    q->n = n;
    mh_redis_conn_send(&q->req, "GET %s", rs->key_next_id);
    if (n && mh_redis_conn_up(rs->conn)) {
        cmd_t c;
        mh_redis_conn_cmd_init(&c, n + 1, "MGET");
        for (size_t i = 0; i < n; i++)
            mh_redis_conn_cmd_u64(&c, rs->key_route, ids[i]);
        mh_redis_conn_cmd_send(&q->req, &c);
    }
    mh_redis_conn_submit(&q->req);
}

/* SET ... GET comes first: its reply is the previous holder. */
static void each_claim(req_t *req, size_t idx, const redisReply *r)
{
    op_t *q = (op_t *)req;
    const char *holder;
    if (idx != 0)
        return;
    if (mh_redis_decode_holder(r, &holder))
        mh_redis_conn_bad_reply(&q->req, r);
    else if (holder)
        q->str = mh_xstrdup(holder);
}

static void finish_claim(req_t *req, const redisReply *last)
{
    op_t *q = (op_t *)req;
    if (q->cb.claim)
        q->cb.claim(q->ud, q->req.status, q->req.status ? NULL : q->str);
    free(q->str);
}

static const req_ops_t claim_ops = {"claim", each_claim, finish_claim};

void mh_redis_claim(mh_redis_store_t *rs, uint64_t id, const char *instance, uint64_t ttl_ms,
                    mh_redis_claim_fn cb, void *ud)
{
    op_t *q = op_new(rs, &claim_ops, ud);
    q->cb.claim = cb;
    ttl_ms = ttl_ms ? ttl_ms : 1;
    /* SET before ZADD: a concurrent checkout by the old holder then finds
     * the route changed and leaves the new presence alone. */
    mh_redis_conn_send(&q->req, "SET %s:route:%" PRIu64 " %s PX %" PRIu64 " GET", rs->prefix, id,
                       instance, ttl_ms);
    mh_redis_conn_send(&q->req, "ZADD %s %" PRIu64 " %" PRIu64, rs->key_presence,
                       mh_now_ms() + ttl_ms, id);
    mh_redis_conn_submit(&q->req);
}

/* KEYS: presence, routes...; ARGV: instance, ttl_ms, score, ids... */
static const char refresh_lua[] = "for i = 2, #KEYS do\n"
                                  "  local v = redis.call('GET', KEYS[i])\n"
                                  "  if v == false or v == ARGV[1] then\n"
                                  "    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])\n"
                                  "    redis.call('ZADD', KEYS[1], ARGV[3], ARGV[i + 2])\n"
                                  "  end\n"
                                  "end\n"
                                  "return 0\n";

static const req_ops_t refresh_ops = {"refresh", NULL, finish_status};

static void send_refresh_chunk(op_t *q, const uint64_t *ids, size_t k, const char *instance,
                               uint64_t ttl_ms, uint64_t score)
{
    const mh_redis_store_t *rs = q->rs;
    cmd_t c;
    mh_redis_conn_cmd_init(&c, 7 + 2 * k, "EVAL");
    mh_redis_conn_cmd_bin(&c, refresh_lua, sizeof(refresh_lua) - 1);
    mh_redis_conn_cmd_u64(&c, "", k + 1);
    mh_redis_conn_cmd_bin(&c, rs->key_presence, strlen(rs->key_presence));
    for (size_t i = 0; i < k; i++)
        mh_redis_conn_cmd_u64(&c, rs->key_route, ids[i]);
    mh_redis_conn_cmd_bin(&c, instance, strlen(instance));
    mh_redis_conn_cmd_u64(&c, "", ttl_ms);
    mh_redis_conn_cmd_u64(&c, "", score);
    for (size_t i = 0; i < k; i++)
        mh_redis_conn_cmd_u64(&c, "", ids[i]);
    mh_redis_conn_cmd_send(&q->req, &c);
}

void mh_redis_refresh(mh_redis_store_t *rs, const uint64_t *ids, size_t n, const char *instance,
                      uint64_t ttl_ms, mh_redis_status_fn cb, void *ud)
{
    op_t *q = op_new(rs, &refresh_ops, ud);
    q->cb.status = cb;
    ttl_ms = ttl_ms ? ttl_ms : 1;
    uint64_t score = mh_now_ms() + ttl_ms;
    for (size_t i = 0; i < n && mh_redis_conn_up(rs->conn); i += REFRESH_CHUNK) {
        size_t k = n - i < REFRESH_CHUNK ? n - i : REFRESH_CHUNK;
        send_refresh_chunk(q, ids + i, k, instance, ttl_ms, score);
    }
    mh_redis_conn_submit(&q->req);
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
                       mh_redis_status_fn cb, void *ud)
{
    op_t *q = op_new(rs, &checkout_ops, ud);
    q->cb.status = cb;
    mh_redis_conn_send(&q->req, "EVAL %s 2 %s:route:%" PRIu64 " %s %s %" PRIu64, checkout_lua,
                       rs->prefix, id, rs->key_presence, instance, id);
    mh_redis_conn_submit(&q->req);
}

static void finish_ids(req_t *req, const redisReply *last)
{
    op_t *q = (op_t *)req;
    uint64_t *ids = NULL;
    size_t n = 0;
    if (!q->req.status && !(ids = mh_redis_decode_ids(last, &n)))
        mh_redis_conn_bad_reply(&q->req, last);
    if (q->cb.ids)
        q->cb.ids(q->ud, q->req.status, ids, n);
    else
        free(ids);
}

static const req_ops_t list_ops = {"list", NULL, finish_ids};

void mh_redis_list(mh_redis_store_t *rs, uint64_t now_ms, mh_redis_ids_fn cb, void *ud)
{
    op_t *q = op_new(rs, &list_ops, ud);
    q->cb.ids = cb;
    mh_redis_conn_send(&q->req, "ZREMRANGEBYSCORE %s -inf %" PRIu64, rs->key_presence, now_ms);
    mh_redis_conn_send(&q->req, "ZRANGEBYSCORE %s (%" PRIu64 " +inf", rs->key_presence, now_ms);
    mh_redis_conn_submit(&q->req);
}
