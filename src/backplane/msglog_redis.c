/*
 * msglog_redis: the per-user log (msglog.h) in Redis (contract in
 * msglog_redis.h). Appends and acks are batched per loop turn (all
 * sessions): held on the connection and sent at the next turn (or when a
 * batch is full, before a read or an open, or when the store is freed).
 * An append batch goes as one MULTI/EXEC of plain commands
 * (append_native.c) when every receiver is an id the store is known to
 * have issued and reserved body ids cover it; otherwise as the append
 * script, which checks the ids against P:next_id and reserves the next
 * block of body ids. Either way it stores one body per relay and, per
 * receiver, all of the turn's entries with one HINCRBY and one RPUSH, so
 * Redis' work grows with the receivers of a turn rather than with its
 * deliveries; retention and the other rare decisions a MULTI/EXEC cannot
 * make go to the tidy script, sent on the same connection as EXEC's answer
 * is read and before the callers hear of the batch (what they issue next
 * runs after it; its drops are counted apart, mh_msglog_redis_count_drops).
 * Reads, opens and acks are one script run each (acks: one
 * per batch, the highest seq per id). Each caller gets the batch's status
 * and its own slice of the answer.
 *
 * Keys (P = the store's prefix; P:next_id and P:route:<id> are redis_store's):
 *   P:msgid         counter naming message bodies (the append script takes
 *                   its own and a block of NATIVE_BODY_IDS for MULTI/EXEC)
 *   P:msg:<m>       HASH t = message text without seq, a = its seq_at,
 *                   r = log entries still referring to it; PX = inbox TTL
 *                   from its append; deleted when r drops to 0
 *   P:log:<id>      LIST of entries "<size>:<stored ms>:<m>" (this version
 *                   writes them), or "<seq>:<size>:<stored ms>:<m>" (written
 *                   before 2026-12-06; read, acked and trimmed alike); seqs
 *                   contiguous, last - LLEN + 1 .. last (entries only leave
 *                   from the head, every push moves last with it), so an
 *                   entry's seq is its position and the seq field is never
 *                   read; size = text length + 7 (len(`,"seq":`)) in this
 *                   format, + the seq's digits in the older one
 *   P:logm:<id>     HASH last = highest seq assigned, acked = everything
 *                   <= it is acknowledged, bytes = sum of the sizes in the
 *                   log (retention adds the digits of seqs first..last, so
 *                   the cap counts each frame as its receiver gets it),
 *                   lost = highest unacknowledged seq dropped by retention
 *                   (recovered = lost <= acked)
 * P:log:<id> gets the inbox TTL (PEXPIRE) on every open and ack, on an
 * append that creates it and at most every TOUCH_EVERY_MS of appends,
 * P:logm:<id> twice the TTL: a log that expired while its meta lives is
 * reported lost (recovered = 0) and seqs continue; an id idle for twice the
 * TTL is forgotten (seqs restart at 1). The body of an entry expires with
 * the entry's age limit, so no body outlives the entries that refer to it
 * by more than the TTL.
 * An entry older than the TTL, beyond max_msgs, or making the log exceed
 * max_bytes is dropped from the head at the next append (the newest entry
 * always stays); an entry whose body is gone is skipped by read. Both
 * count as lost when unacknowledged.
 *
 * Needs Redis 7.0 (PEXPIRE NX). Ids are known from P:next_id as the
 * append script or a MULTI/EXEC last read it, on the current connection
 * (a new one may be a new server: ids and body ids are read again); a
 * store whose P:next_id went back under a live connection (FLUSHALL) is
 * caught by the next MULTI/EXEC, whose appends to ids above it are undone
 * by the tidy script and reported as to unknown ids.
 * Scripts name keys from the prefix rather than in KEYS: one Redis (or a
 * primary with replicas), not Redis Cluster. After SCRIPT FLUSH on a live
 * connection, calls in flight are retried with EVAL and may run in another
 * order than issued (each still gets its seq in the order it ran).
 *
 * Not here: what the hub does with seqs and routes, retries, metrics.
 * Ownership: the log is reference counted by its pending requests, so
 * mh_msglog_free() may come while calls are in flight.
 */
#include "msghub/msglog_redis.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "append_native.h"
#include "redis_conn.h"
#include "redis_decode.h"

#include "msghub/log.h"
#include "msghub/u64map.h"
#include "msghub/util.h"

#define SHA_HEX_LEN 40
#define APPEND_FIXED_ARGS 11          /* verb, script, numkeys, 2 keys, 6 ARGV before the relays */
#define APPEND_RELAY_ARGS 3           /* text, seq_at, count, before each relay's ids */
#define APPEND_BATCH_MAX 256u         /* relays per batch: bounds one script run and its RPUSH */
#define APPEND_BATCH_BYTES (1u << 20) /* bodies per batch: a batch this big goes at once */
#define KEY_OP_ARGS 8                 /* verb, script, numkeys, 2 keys, 3 ARGV */
#define READ_MAX 1000000u             /* entries per read: keeps one script run and reply bounded */
#define ACK_FIXED_ARGS 5              /* verb, script, numkeys, 2 ARGV before the id, seq pairs */
#define ACK_BATCH_MAX 1024u           /* acks per batch: keeps one script run bounded */
#define TOUCH_EVERY_MS 1000u          /* a receiver's log TTLs are renewed at most this often */
#define BATCH_IN_FLIGHT_MAX 1u /* batches of a kind sent and unanswered: the next one waits */
#define FIRST_WAITS 16u        /* a batch's array of waits starts with room for this many */
#define NATIVE_BODY_IDS 65536u /* body ids the append script reserves for MULTI/EXEC batches */
#define TIDY_FIXED_ARGS 8u     /* verb, script, numkeys, 5 ARGV before the receivers */
#define TIDY_RCV_ARGS 4u       /* id, flags, stale, base */

typedef mh_redis_conn_req_t req_t;
typedef mh_redis_conn_cmd_t cmd_t;

enum { SC_APPEND, SC_READ, SC_OPEN, SC_ACK, SC_TIDY, SC_COUNT };

typedef struct script {
    const char *src;
    char sha[SHA_HEX_LEN + 1];
    unsigned loaded_gen; /* connection generation it was last loaded on */
} script_t;

typedef struct lop lop_t;

/*
 * One kind of batched request (appends, acks). Callers join the open batch:
 * held for the rest of the loop turn, and past it, while BATCH_IN_FLIGHT_MAX
 * of the kind are unanswered, waiting for one to answer (a group commit: the
 * busier Redis is, the more each script run carries).
 */
typedef struct batch {
    lop_t *open;  /* the batch callers join, or NULL */
    unsigned out; /* sent, not answered yet */
} batch_t;

typedef struct rlog {
    mh_redis_store_t *rs;
    mh_redis_conn_t *conn;
    char *prefix;
    mh_append_native_keys_t keys; /* its key prefixes, for the MULTI/EXEC appends */
    mh_msglog_limits_t lim;
    script_t sc[SC_COUNT];
    unsigned refs; /* the owner's, and one per pending request */
    batch_t appends;
    batch_t acks;
    mh_u64map_t *touched; /* ids whose TTLs a batch sent since touched_ms renewed */
    uint64_t touched_ms;  /* when touched was emptied last */
    uint64_t touch_ms;    /* TOUCH_EVERY_MS, or 1 % of the TTL when that is less */
    /* what lets a batch go as MULTI/EXEC (append_native), from the append script's answers */
    uint64_t known_max;         /* ids 1..known_max are issued (P:next_id, as last read) */
    uint64_t mid_next, mid_end; /* reserved body ids left: mid_next .. mid_end - 1 */
    unsigned known_gen;         /* the connection generation both hold for; 0: none */
    uint64_t *tidy_dropped;     /* counts unacked entries the tidy script dropped, or NULL */
} rlog_t;

/* One caller of append, waiting in a batch: one relay. */
typedef struct append_wait {
    mh_frame_t *frame;
    uint64_t *ids;
    size_t n;
    mh_msglog_append_fn cb;
    void *ud;
} append_wait_t;

/* One caller of ack, waiting in a batch. */
typedef struct ack_wait {
    uint64_t id, seq;
    mh_msglog_status_fn cb;
    void *ud;
} ack_wait_t;

typedef struct lop {
    req_t req; /* first: redis_conn allocates and frees the op through it */
    rlog_t *log;
    int script;
    int retried;                    /* NOSCRIPT was answered once with EVAL */
    int waiting;                    /* batched: its hold ended while another was out */
    void (*prepare)(lop_t *);       /* batched: builds the arguments before it goes */
    void (*args)(lop_t *, cmd_t *); /* adds numkeys, keys and ARGV */
    size_t nargs;
    union {
        mh_msglog_append_fn append;
        mh_msglog_read_fn read;
        mh_msglog_state_fn state;
        mh_msglog_status_fn status;
    } cb;
    void *ud;
    uint64_t *ids;          /* ack: id, seq pairs */
    unsigned char *touch;   /* append: per id of every relay, in order: 1 when its TTLs renew */
    size_t n;               /* append: ids of all relays; ack: pairs */
    append_wait_t *appends; /* append: the relays, in the order they came */
    ack_wait_t *waits;      /* ack: the callers, in the order they came */
    size_t nwaits, capwaits;
    size_t bytes; /* append: body bytes */
    uint64_t now, id, arg, max;
    /* append as MULTI/EXEC: the batch, EXEC's place among the answers, whether it was read */
    mh_append_native_t *nat;
    mh_append_native_relay_t *nrelays;
    size_t exec_idx;
    int exec_read;
    unsigned gen; /* append: the connection generation it was sent on */
} lop_t;

/* ---- the scripts ---- */

/* Helpers shared by every script; ARGV[1] is always the prefix. */
#define LUA_COMMON                                                                                 \
    "local pfx = ARGV[1]\n"                                                                        \
    "local function parse(e)\n"                                                                    \
    "  local z, t, m = string.match(e, '^(%d+):(%d+):([^:]+)$')\n"                                 \
    "  if not z then z, t, m = string.match(e, '^%d+:(%d+):(%d+):([^:]+)$') end\n"                 \
    "  return tonumber(z), t, m\n"                                                                 \
    "end\n"                                                                                        \
    "local function num(k, f) return tonumber(redis.call('HGET', k, f) or '0') end\n"              \
    "local function lose(mk, s)\n"                                                                 \
    "  if s > num(mk, 'lost') then redis.call('HSET', mk, 'lost', s) end\n"                        \
    "end\n" /* a log that expired apart from its meta lost every unacked entry */                  \
    "local function check(mk, lk)\n"                                                               \
    "  if redis.call('EXISTS', lk) == 0 and num(mk, 'last') > num(mk, 'acked') then\n"             \
    "    redis.call('HSET', mk, 'bytes', 0)\n"                                                     \
    "    lose(mk, num(mk, 'last'))\n"                                                              \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "local function touch(mk, lk, ttl)\n"                                                          \
    "  if ttl > 0 then\n"                                                                          \
    "    redis.call('PEXPIRE', mk, 2 * ttl)\n"                                                     \
    "    redis.call('PEXPIRE', lk, ttl)\n"                                                         \
    "  end\n"                                                                                      \
    "end\n" /* entries <= seq leave the head (whose seq is above acked: entries only leave         \
               from it) in one LRANGE + LTRIM; drop[m] counts body refs to drop; a log that        \
               expired apart from its meta lost what was unacked; returns last */                  \
    "local function ack(mk, lk, seq, drop)\n"                                                      \
    "  local h = redis.call('HMGET', mk, 'last', 'acked', 'bytes')\n"                              \
    "  local last, acked = tonumber(h[1] or '0'), tonumber(h[2] or '0')\n"                         \
    "  local upto = math.min(seq, last)\n"                                                         \
    "  if upto <= acked then return last end\n"                                                    \
    "  local n, freed, bytes = 0, 0, tonumber(h[3] or '0')\n"                                      \
    "  local take = upto - (last - redis.call('LLEN', lk))\n" /* head seq: last - LLEN + 1 */      \
    "  if take > 0 then\n"                                                                         \
    "    for _, e in ipairs(redis.call('LRANGE', lk, 0, take - 1)) do\n"                           \
    "      local z, t, m = parse(e)\n"                                                             \
    "      n, freed = n + 1, freed + z\n"                                                          \
    "      drop[m] = (drop[m] or 0) + 1\n"                                                         \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  if n > 0 then\n"                                                                            \
    "    redis.call('LTRIM', lk, n, -1)\n"                                                         \
    "  elseif redis.call('EXISTS', lk) == 0 then\n"                                                \
    "    bytes = 0\n"                                                                              \
    "    lose(mk, last)\n"                                                                         \
    "  end\n"                                                                                      \
    "  redis.call('HSET', mk, 'acked', upto, 'bytes', bytes - freed)\n"                            \
    "  return last\n"                                                                              \
    "end\n"                                                                                        \
    "local function unref_all(drop)\n"                                                             \
    "  for m, c in pairs(drop) do\n"                                                               \
    "    local k = pfx .. ':msg:' .. m\n"                                                          \
    "    if redis.call('HINCRBY', k, 'r', -c) <= 0 then redis.call('DEL', k) end\n"                \
    "  end\n"                                                                                      \
    "end\n"

/*
 * Retention, for the append script and the tidy script. digits(a, b): the
 * decimal digits of the seqs a..b, which the stored sizes leave out (an
 * entry's size is its text + 7 for `,"seq":`). retain() drops entries from
 * the head (the newest always stays) while the log holds more than maxn
 * entries, more than maxb bytes as its receiver gets them, or (ttl > 0) a
 * head older than the TTL; unacked ones count as lost. It reads the head
 * with LRANGE (the count cap's excess, plus 64 more at a time when age or
 * bytes decide), drops what goes with one LTRIM and sets bytes and lost by
 * one HSET (bytes is the stored value: scripts run alone); drop[m] counts the body references to
 * let go, which the caller's unref_all() does for the whole script. Returns how many unacked went.
 */
#define LUA_RETAIN                                                                                 \
    "local function digits(a, b)\n"                                                                \
    "  local s, lo, d = 0, 1, 1\n"                                                                 \
    "  while lo <= b do\n"                                                                         \
    "    local x, y = math.max(a, lo), math.min(b, lo * 10 - 1)\n"                                 \
    "    if x <= y then s = s + (y - x + 1) * d end\n"                                             \
    "    lo, d = lo * 10, d + 1\n"                                                                 \
    "  end\n"                                                                                      \
    "  return s\n"                                                                                 \
    "end\n"                                                                                        \
    "local function retain(mk, lk, n, top, bytes, now, ttl, maxn, maxb, drop)\n"                   \
    "  local wire = bytes + digits(top - n + 1, top)\n"                                            \
    "  if ttl == 0 and n <= maxn and wire <= maxb then return 0 end\n"                             \
    "  local first, gone, freed, es, at = top - n + 1, 0, 0, {}, 1\n"                              \
    "  while n - gone > 1 do\n"                                                                    \
    "    local fits = n - gone <= maxn and wire <= maxb\n"                                         \
    "    if fits and ttl == 0 then break end\n"                                                    \
    "    if at > #es then\n" /* the count cap's excess, and a chunk more if age or bytes decide */ \
    "      local more = (ttl > 0 or wire > maxb) and 64 or 0\n"                                    \
    "      local stop = gone + math.max(n - maxn - gone, 0) + more - 1\n"                          \
    "      es, at = redis.call('LRANGE', lk, gone, stop), 1\n"                                     \
    "      if #es == 0 then break end\n"                                                           \
    "    end\n"                                                                                    \
    "    local z, t, m = parse(es[at])\n"                                                          \
    "    if fits and tonumber(t) + ttl > now then break end\n"                                     \
    "    at, gone, freed = at + 1, gone + 1, freed + z\n"                                          \
    "    wire = wire - z - #tostring(first + gone - 1)\n"                                          \
    "    drop[m] = (drop[m] or 0) + 1\n"                                                           \
    "  end\n"                                                                                      \
    "  if gone == 0 then return 0 end\n"                                                           \
    "  redis.call('LTRIM', lk, gone, -1)\n"                                                        \
    "  local h, upto = redis.call('HMGET', mk, 'acked', 'lost'), first + gone - 1\n"               \
    "  local acked = tonumber(h[1] or '0')\n"                                                      \
    "  if upto <= acked or upto <= tonumber(h[2] or '0') then\n"                                   \
    "    redis.call('HSET', mk, 'bytes', bytes - freed)\n"                                         \
    "  else\n"                                                                                     \
    "    redis.call('HSET', mk, 'bytes', bytes - freed, 'lost', upto)\n"                           \
    "  end\n"                                                                                      \
    "  return upto > acked and upto - math.max(acked, first - 1) or 0\n"                           \
    "end\n"

/*
 * The appends of one loop turn, when the caller cannot send them as one
 * MULTI/EXEC (below: an id it does not know to be issued, or no body ids
 * left). KEYS: next_id, msgid. ARGV: prefix, now ms, ttl ms, max_msgs,
 * max_bytes, block, then per relay: text, seq_at, count, and count ids.
 * Each relay with a known receiver gets one body (msgids by one INCRBY);
 * each receiver's entries of the whole batch go in relay order by one
 * HINCRBY of last, one RPUSH, one retention pass and one touch, so a
 * receiver named by k relays of the turn costs about what one did. Only an
 * id sent as -id gets its TTLs renewed and its head entry's age checked
 * (its instance did both for the others within TOUCH_EVERY_MS); keys that
 * the batch creates are always touched, and the count and byte caps are
 * always enforced. Reserves block body ids after its own for the caller's
 * MULTI/EXEC batches: mid_top - block + 1 .. mid_top.
 * Returns {last_id, dropped, mid_top, then seq, route per id of every
 * relay, in order}: an unknown id has seq 0 and route false.
 */
static const char append_lua[] = LUA_COMMON LUA_RETAIN
    /* k new entries; a log that was empty is all acked, unless it expired (then what was unacked
       is lost) */
    "local function push(mk, lk, es, first, sum)\n"
    "  local n = redis.call('RPUSH', lk, unpack(es))\n"
    "  if n > #es then return n, redis.call('HINCRBY', mk, 'bytes', sum) end\n"
    "  if first - 1 > num(mk, 'acked') then lose(mk, first - 1) end\n"
    "  redis.call('HSET', mk, 'bytes', sum)\n"
    "  return n, sum\n"
    "end\n"
    "local now, ttl = ARGV[2], tonumber(ARGV[3])\n"
    "local nowv = tonumber(now)\n"
    "local maxn, maxb, block = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local last_id = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    /* an id sent as -id is due for the touch; each distinct argument is checked once */
    "local seen = {}\n"
    "local function known(a)\n"
    "  local k = seen[a]\n"
    "  if k == nil then\n"
    "    local v = tonumber(a)\n"
    "    if v ~= nil and v < 0 then v = -v end\n"
    "    k = v ~= nil and v >= 1 and v <= last_id\n"
    "    seen[a] = k\n"
    "  end\n"
    "  return k\n"
    "end\n"
    /* pass 1: the relays {at, count, known count}, and how many have a known receiver (a body
       each) */
    "local relays, bodies, i, nargs = {}, 0, 7, #ARGV\n"
    "while i <= nargs do\n"
    "  local cnt, c = tonumber(ARGV[i + 2]), 0\n"
    "  for j = i + 3, i + 2 + cnt do\n"
    "    if known(ARGV[j]) then c = c + 1 end\n"
    "  end\n"
    "  relays[#relays + 1] = {i, cnt, c}\n"
    "  if c > 0 then bodies = bodies + 1 end\n"
    "  i = i + 3 + cnt\n"
    "end\n"
    /* the bodies' ids, then a block of ids the caller's MULTI/EXEC batches name bodies from */
    "local mid_top = redis.call('INCRBY', KEYS[2], bodies + block)\n"
    "local mid = mid_top - block - bodies\n"
    /* pass 2: the bodies; per receiver, flat pairs (relay index, reply slot) in relay order;
       each relay keeps its entries' size without the seq's digits (7 = #',"seq":') and the
       entry itself ("<size>:<now>:<msgid>", the same for each of its receivers) */
    "local out, per, order, nout = {last_id, 0, mid_top}, {}, {}, 3\n"
    "for r, rl in ipairs(relays) do\n"
    "  local at, cnt, m = rl[1], rl[2], nil\n"
    "  if rl[3] > 0 then\n"
    "    mid = mid + 1\n"
    "    m = tostring(mid)\n"
    "    local bk = pfx .. ':msg:' .. m\n"
    "    redis.call('HSET', bk, 't', ARGV[at], 'a', ARGV[at + 1], 'r', rl[3])\n"
    "    if ttl > 0 then redis.call('PEXPIRE', bk, ttl) end\n"
    "    rl[4] = #ARGV[at] + 7\n"
    "    rl[5] = rl[4] .. ':' .. now .. ':' .. m\n"
    "  end\n"
    "  for j = at + 3, at + 2 + cnt do\n"
    "    out[nout + 1], out[nout + 2], nout = 0, false, nout + 2\n"
    "    if m and known(ARGV[j]) then\n"
    "      local id = ARGV[j]\n"
    "      local due = string.byte(id, 1) == 45\n"
    "      if due then id = string.sub(id, 2) end\n"
    "      local p = per[id]\n"
    "      if not p then\n"
    "        p = {}\n"
    "        per[id] = p\n"
    "        order[#order + 1] = id\n"
    "      end\n"
    "      if due then p.touch = true end\n"
    "      p[#p + 1] = r\n"
    "      p[#p + 1] = nout - 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    /* pass 3: per receiver, its seqs, one RPUSH, retention, TTLs */
    "local dropped, routes, drop = 0, {}, {}\n"
    "for _, id in ipairs(order) do\n"
    "  local p = per[id]\n"
    "  local k = #p / 2\n"
    "  local mk, lk = pfx .. ':logm:' .. id, pfx .. ':log:' .. id\n"
    "  local top = redis.call('HINCRBY', mk, 'last', k)\n"
    "  local es, sum, base = {}, 0, top - k\n"
    "  for x = 1, k do\n"
    "    local rl = relays[p[2 * x - 1]]\n"
    "    es[x] = rl[5]\n"
    "    sum = sum + rl[4]\n"
    "    out[p[2 * x]] = base + x\n"
    "  end\n"
    "  local n, bytes = push(mk, lk, es, base + 1, sum)\n"
    /* new keys always get their TTL, known ones when their instance says it is due; the head's
       age is checked then too (entries leave by age at most that late) */
    "  local due = p.touch or n == k or top == k\n"
    "  dropped = dropped + retain(mk, lk, n, top, bytes, nowv, due and ttl or 0, maxn, maxb, "
    "drop)\n"
    "  if due then touch(mk, lk, ttl) end\n"
    "  routes[#routes + 1] = pfx .. ':route:' .. id\n"
    "end\n"
    /* the routes, by MGET in chunks (unpack has a stack limit), into every slot of their id */
    "for c = 1, #routes, 1000 do\n"
    "  local got = redis.call('MGET', unpack(routes, c, math.min(c + 999, #routes)))\n"
    "  for x, v in ipairs(got) do\n"
    "    local p = per[order[c + x - 1]]\n"
    "    for y = 2, #p, 2 do out[p[y] + 1] = v end\n"
    "  end\n"
    "end\n"
    "unref_all(drop)\n"
    "out[2] = dropped\n"
    "return out\n";

/*
 * What a MULTI/EXEC append batch (append_native) could not decide, for the
 * receivers that need it. No KEYS. ARGV: prefix, now ms, ttl ms, max_msgs,
 * max_bytes, then per receiver: id, flags, stale, base. flags: TIDY_AGE
 * (check the head's age, renew both TTLs), TIDY_TOUCH (renew both TTLs),
 * TIDY_FORGET (the id is above next_id: the store was reset under the
 * batch; its keys go if it still is). stale > 0: the batch found the log
 * empty with stale bytes (it expired apart from its meta): they go, and
 * what was unacked up to base (the seq before the batch's) is lost.
 * Returns the entries retention dropped unacknowledged.
 */
static const char tidy_lua[] = LUA_COMMON LUA_RETAIN
    /* MH_APPEND_NATIVE_TIDY_AGE, _TOUCH and _FORGET (append_native.h) */
    "local AGE, TOUCH, FORGET = 1, 2, 4\n"
    "local function has(flags, f) return bit.band(flags, f) ~= 0 end\n"
    "local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local maxn, maxb, dropped, drop = tonumber(ARGV[4]), tonumber(ARGV[5]), 0, {}\n"
    "for i = 6, #ARGV - 3, 4 do\n"
    "  local id, flags = ARGV[i], tonumber(ARGV[i + 1])\n"
    "  local stale, base = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])\n"
    "  local mk, lk = pfx .. ':logm:' .. id, pfx .. ':log:' .. id\n"
    "  if has(flags, FORGET) then\n"
    "    if tonumber(id) > tonumber(redis.call('GET', pfx .. ':next_id') or '0') then\n"
    "      redis.call('DEL', mk, lk)\n"
    "    end\n"
    "  else\n"
    "    if stale > 0 then\n"
    "      redis.call('HINCRBY', mk, 'bytes', -stale)\n"
    "      if base > num(mk, 'acked') then lose(mk, base) end\n"
    "    end\n"
    "    local h = redis.call('HMGET', mk, 'last', 'bytes')\n"
    "    local age = has(flags, AGE) and ttl or 0\n"
    "    dropped = dropped + retain(mk, lk, redis.call('LLEN', lk), tonumber(h[1] or '0'),\n"
    "                               tonumber(h[2] or '0'), now, age, maxn, maxb, drop)\n"
    "    if has(flags, AGE) or has(flags, TOUCH) then touch(mk, lk, ttl) end\n"
    "  end\n"
    "end\n"
    "unref_all(drop)\n"
    "return dropped\n";

/*
 * KEYS: logm, log. ARGV: prefix, after, max. Returns {last, seq, text,
 * seq_at, ...}. The log holds seqs last - LLEN + 1 .. last (contiguous,
 * entries only leave from the head), so seq s is at index s - first.
 */
static const char read_lua[] =
    LUA_COMMON "local mk, lk = KEYS[1], KEYS[2]\n"
               "local after, max = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
               "check(mk, lk)\n"
               "local last, acked = num(mk, 'last'), num(mk, 'acked')\n"
               "local out, len = {last}, redis.call('LLEN', lk)\n"
               "if len == 0 or max <= 0 then return out end\n"
               "local first = last - len + 1\n"
               "local idx, got = math.max(0, after + 1 - first), 0\n"
               "while got < max do\n"
               "  local es = redis.call('LRANGE', lk, idx, idx + (max - got) - 1)\n"
               "  if #es == 0 then break end\n"
               "  for x, e in ipairs(es) do\n"
               "    local s = first + idx + x - 1\n"
               "    local z, t, m = parse(e)\n"
               "    local b = redis.call('HMGET', pfx .. ':msg:' .. m, 't', 'a')\n"
               "    if b[1] then\n"
               "      out[#out + 1] = s\n"
               "      out[#out + 1] = b[1]\n"
               "      out[#out + 1] = b[2]\n"
               "      got = got + 1\n"
               "    elseif s > acked then\n"
               "      lose(mk, s)\n"
               "    end\n"
               "  end\n"
               "  idx = idx + #es\n"
               "end\n"
               "return out\n";

/* KEYS: logm, log. ARGV: prefix, since, ttl. Returns {0, last, acked, lost} or {-1, last}. */
static const char open_lua[] =
    LUA_COMMON "local mk, lk = KEYS[1], KEYS[2]\n"
               "local since, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
               "check(mk, lk)\n"
               "local last = num(mk, 'last')\n"
               "if since > last then return {-1, last} end\n"
               "local drop = {}\n"
               "if since > 0 then ack(mk, lk, since, drop) end\n"
               "unref_all(drop)\n"
               "if last > 0 then touch(mk, lk, ttl) end\n"
               "return {0, last, num(mk, 'acked'), num(mk, 'lost')}\n";

/*
 * No KEYS. ARGV: prefix, ttl, then id, seq pairs (distinct ids): the acks
 * of one loop turn. A body referred to by several of the acked entries
 * loses those references in one HINCRBY. Returns 0.
 */
static const char ack_lua[] = LUA_COMMON "local ttl, drop = tonumber(ARGV[2]), {}\n"
                                         "for i = 3, #ARGV - 1, 2 do\n"
                                         "  local mk = pfx .. ':logm:' .. ARGV[i]\n"
                                         "  local lk = pfx .. ':log:' .. ARGV[i]\n"
                                         "  if ack(mk, lk, tonumber(ARGV[i + 1]), drop) > 0 then\n"
                                         "    touch(mk, lk, ttl)\n"
                                         "  end\n"
                                         "end\n"
                                         "unref_all(drop)\n"
                                         "return 0\n";

/* ---- the log object ---- */

static void sha1_hex(const char *s, char out[SHA_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (!EVP_Digest(s, strlen(s), md, &len, EVP_sha1(), NULL) || len * 2 != SHA_HEX_LEN)
        abort(); /* libcrypto without SHA-1: nothing works, as with malloc */
    for (unsigned i = 0; i < len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[SHA_HEX_LEN] = '\0';
}

static void log_unref(rlog_t *log)
{
    if (--log->refs)
        return;
    mh_u64map_free(log->touched);
    mh_append_native_keys_free(&log->keys);
    free(log->prefix);
    free(log);
}

static void log_free(void *impl)
{
    if (impl)
        log_unref(impl);
}

/* ---- requests ---- */

static int on_error(req_t *req, size_t idx, const redisReply *r);

static lop_t *op_new(rlog_t *log, const mh_redis_conn_req_ops_t *ops, int script, void *ud)
{
    lop_t *q = mh_redis_conn_req_new(log->conn, ops, sizeof(*q));
    q->req.on_error = on_error;
    q->log = log;
    q->script = script;
    q->ud = ud;
    log->refs++;
    return q;
}

/* Sends the script's command: EVALSHA, or EVAL (eval != 0). */
static void send_script(lop_t *q, int eval)
{
    const script_t *sc = &q->log->sc[q->script];
    cmd_t c;
    mh_redis_conn_cmd_init(&c, q->nargs, eval ? "EVAL" : "EVALSHA");
    if (eval)
        mh_redis_conn_cmd_bin(&c, sc->src, strlen(sc->src));
    else
        mh_redis_conn_cmd_bin(&c, sc->sha, SHA_HEX_LEN);
    q->args(q, &c);
    mh_redis_conn_cmd_send(&q->req, &c);
}

/*
 * Issues q: SCRIPT LOAD in front the first time on a connection (Redis
 * restarted, or a new one: its script cache may be empty), then EVALSHA.
 */
static void op_submit(lop_t *q)
{
    script_t *sc = &q->log->sc[q->script];
    unsigned gen = mh_redis_conn_generation(q->log->conn);
    if (mh_redis_conn_up(q->log->conn)) {
        if (sc->loaded_gen != gen) {
            mh_redis_conn_send(&q->req, "SCRIPT LOAD %s", sc->src);
            sc->loaded_gen = gen;
        }
        send_script(q, 0);
    }
    mh_redis_conn_submit(&q->req);
}

/* NOSCRIPT (SCRIPT FLUSH while connected): run the script once more with EVAL. */
static int on_error(req_t *req, size_t idx, const redisReply *r)
{
    lop_t *q = (lop_t *)req;
    if (q->retried || r->len < 8 || strncmp(r->str, "NOSCRIPT", 8) != 0 ||
        !mh_redis_conn_up(q->log->conn))
        return 0;
    unsigned before = q->req.pending;
    q->retried = 1;
    q->log->sc[q->script].loaded_gen = 0; /* the next op loads it again */
    send_script(q, 1);
    return q->req.pending > before;
}

/* Releases what every op holds, after its callback. */
static void op_done(lop_t *q)
{
    for (size_t i = 0; i < q->nwaits && q->appends; i++) {
        mh_frame_unref(q->appends[i].frame);
        free(q->appends[i].ids);
    }
    free(q->appends);
    mh_append_native_free(q->nat);
    free(q->nrelays);
    free(q->touch);
    free(q->ids);
    log_unref(q->log);
}

/* ---- batches: appends and acks ---- */

/* The kind of batch q (an append or an ack) was collected for. */
static batch_t *kind_of(lop_t *q)
{
    return q->script == SC_ACK ? &q->log->acks : &q->log->appends; /* SC_TIDY: an append's */
}

/* Sends q (the open batch of its kind, held or waiting) now. */
static void batch_send(lop_t *q)
{
    batch_t *b = kind_of(q);
    if (b->open == q)
        b->open = NULL;
    q->waiting = 0;
    b->out++;
    if (q->prepare)
        q->prepare(q);
    if (q->nat)
        mh_redis_conn_submit(&q->req); /* append_prepare() sent its MULTI/EXEC */
    else
        op_submit(q);
}

/* The loop turn ended (or the store is being freed): q goes, unless one of its kind is out. */
static void batch_flush(req_t *req)
{
    lop_t *q = (lop_t *)req;
    if (kind_of(q)->out >= BATCH_IN_FLIGHT_MAX && mh_redis_conn_up(q->log->conn)) {
        q->waiting = 1; /* batch_answered() sends it; callers keep joining it meanwhile */
        return;
    }
    batch_send(q);
}

/* Sends b's open batch now, held or waiting (a full one; or a read or open that must follow it). */
static void batch_release(batch_t *b)
{
    lop_t *q = b->open;
    if (!q)
        return;
    if (q->waiting)
        batch_send(q);
    else
        mh_redis_conn_release(&q->req); /* calls batch_flush(): out or not, it goes */
}

/* q was answered (or failed): the batch waiting behind it goes. Call before q's callbacks. */
static void batch_answered(lop_t *q)
{
    batch_t *b = kind_of(q);
    b->out--;
    if (b->open && b->open->waiting)
        batch_send(b->open);
}

/*
 * The open batch of b, a new one (held to the end of the loop turn) when
 * none is; *fresh says which. The caller adds itself, then calls
 * batch_joined().
 */
static lop_t *batch_join(rlog_t *log, batch_t *b, const mh_redis_conn_req_ops_t *ops, int script,
                         int *fresh)
{
    *fresh = !b->open;
    if (*fresh)
        b->open = op_new(log, ops, script, NULL);
    return b->open;
}

/* After the caller joined q: a fresh batch is held (after its first caller, so a store being
 * freed flushes it with that caller in it); a full one goes at once. */
static void batch_joined(lop_t *q, int fresh, int full)
{
    if (fresh)
        mh_redis_conn_hold(&q->req, batch_flush);
    else if (full)
        batch_release(kind_of(q));
}

/* ---- append: batched per loop turn ---- */

static void append_args(lop_t *q, cmd_t *c)
{
    const rlog_t *log = q->log;
    const mh_msglog_limits_t *lim = &log->lim;
    mh_redis_conn_cmd_fmt(c, "2");
    mh_redis_conn_cmd_fmt(c, "%s:next_id", log->prefix);
    mh_redis_conn_cmd_fmt(c, "%s:msgid", log->prefix);
    mh_redis_conn_cmd_bin(c, log->prefix, strlen(log->prefix));
    mh_redis_conn_cmd_u64(c, "", q->now);
    mh_redis_conn_cmd_u64(c, "", lim->ttl_ms);
    mh_redis_conn_cmd_u64(c, "", lim->max_msgs ? lim->max_msgs : 1);
    mh_redis_conn_cmd_u64(c, "", lim->max_bytes);
    mh_redis_conn_cmd_u64(c, "", NATIVE_BODY_IDS);
    size_t k = 0;
    for (size_t r = 0; r < q->nwaits; r++) {
        const append_wait_t *w = &q->appends[r];
        mh_redis_conn_cmd_bin(c, mh_frame_data(w->frame), w->frame->len);
        mh_redis_conn_cmd_u64(c, "", w->frame->seq_at);
        mh_redis_conn_cmd_u64(c, "", w->n);
        for (size_t i = 0; i < w->n; i++, k++)
            mh_redis_conn_cmd_u64(c, q->touch[k] ? "-" : "", w->ids[i]);
    }
}

static const mh_msglog_ops_t redis_log_ops;
static int native_ok(const lop_t *q);
static void native_send(lop_t *q);

/*
 * As the batch goes (once, so a NOSCRIPT retry sends the same): which ids
 * get their TTLs renewed. An id is touched by the first batch that names
 * it after touched was last emptied, which happens every touch_ms, so each
 * log's keys are renewed at least once per touch_ms while it is appended
 * to (and at most about as often), never more than touch_ms late.
 */
static void append_prepare(lop_t *q)
{
    rlog_t *log = q->log;
    if (q->now - log->touched_ms >= log->touch_ms || q->now < log->touched_ms) {
        mh_u64map_free(log->touched);
        log->touched = mh_u64map_new();
        log->touched_ms = q->now;
    }
    q->touch = mh_xmalloc(q->n ? q->n : 1);
    size_t k = 0;
    for (size_t r = 0; r < q->nwaits; r++) {
        const append_wait_t *w = &q->appends[r];
        for (size_t i = 0; i < w->n; i++, k++) {
            q->touch[k] = !mh_u64map_get(log->touched, w->ids[i]);
            if (q->touch[k])
                mh_u64map_put(log->touched, w->ids[i], log);
        }
    }
    q->gen = mh_redis_conn_generation(log->conn);
    if (native_ok(q))
        native_send(q);
}

/*
 * A batch may go as MULTI/EXEC when every id is one the store issued (as
 * last read, on this server session) and reserved body ids cover it; the
 * append script takes the others, and reserves the next body ids.
 */
static int native_ok(const lop_t *q)
{
    const rlog_t *log = q->log;
    if (!log->known_gen || log->known_gen != q->gen || !mh_redis_conn_up(log->conn))
        return 0;
    size_t bodies = 0;
    for (size_t r = 0; r < q->nwaits; r++) {
        const append_wait_t *w = &q->appends[r];
        bodies += w->n > 0;
        for (size_t i = 0; i < w->n; i++)
            if (!w->ids[i] || w->ids[i] > log->known_max)
                return 0;
    }
    return bodies <= log->mid_end - log->mid_next;
}

static void native_send(lop_t *q)
{
    rlog_t *log = q->log;
    q->nrelays = mh_xmalloc((q->nwaits ? q->nwaits : 1) * sizeof(*q->nrelays));
    for (size_t r = 0; r < q->nwaits; r++) {
        const append_wait_t *w = &q->appends[r];
        q->nrelays[r] = (mh_append_native_relay_t){(const char *)mh_frame_data(w->frame),
                                                   w->frame->len, w->frame->seq_at, w->ids, w->n};
    }
    q->nat = mh_append_native_new(&log->keys, &log->lim, q->now, q->nrelays, q->nwaits, q->touch,
                                  log->mid_next);
    log->mid_next += mh_append_native_bodies(q->nrelays, q->nwaits);
    q->exec_idx = mh_append_native_send(q->nat, &q->req);
}

static void tidy_args(lop_t *q, cmd_t *c)
{
    const mh_msglog_limits_t *lim = &q->log->lim;
    mh_redis_conn_cmd_fmt(c, "0");
    mh_redis_conn_cmd_bin(c, q->log->prefix, strlen(q->log->prefix));
    mh_redis_conn_cmd_u64(c, "", q->now);
    mh_redis_conn_cmd_u64(c, "", lim->ttl_ms);
    mh_redis_conn_cmd_u64(c, "", lim->max_msgs ? lim->max_msgs : 1);
    mh_redis_conn_cmd_u64(c, "", lim->max_bytes);
    mh_append_native_tidy_args(q->nat, c);
}

/* Every relay of the batch gets its slice of the seqs and routes, in the order the appends came. */
static void answer_callers(lop_t *q, int status, const uint64_t *seqs, const char **inst,
                           uint64_t dropped)
{
    size_t off = 0;
    for (size_t r = 0; r < q->nwaits; r++) {
        const append_wait_t *w = &q->appends[r];
        mh_msglog_appended_t res = {seqs + off, inst + off, w->n, r ? 0 : dropped};
        off += w->n;
        if (w->cb)
            w->cb(w->ud, status, status ? NULL : &res);
    }
}

/*
 * EXEC answered: read it (the reply goes when this returns); when a
 * receiver needs it, send the tidy script on the same request (so whatever
 * the callers issue next runs after it); then the callers hear of the
 * batch at once and the next batch may go. What the tidy drops goes to
 * the counter of mh_msglog_redis_count_drops().
 */
static void append_each(req_t *req, size_t idx, const redisReply *r)
{
    lop_t *q = (lop_t *)req;
    if (!q->nat || q->exec_read || idx != q->exec_idx)
        return;
    uint64_t next_id = 0;
    if (mh_append_native_read(q->nat, r, &next_id)) {
        mh_redis_conn_bad_reply(req, r);
        q->req.lost++; /* some of it may have run: the callers are told it is in doubt */
        return;
    }
    q->exec_read = 1;
    rlog_t *log = q->log;
    if (next_id < log->known_max)
        mh_warn("redis_ids_reset",
                "next_id=%" PRIu64 " known=%" PRIu64
                " msg=\"the id counter went back (store flushed?): appends above it are undone\"",
                next_id, log->known_max);
    log->known_max = next_id;
    size_t n = mh_append_native_tidy_count(q->nat);
    if (n) {
        q->script = SC_TIDY;
        q->args = tidy_args;
        q->nargs = TIDY_FIXED_ARGS + TIDY_RCV_ARGS * n;
        op_submit(q); /* loads it first on a new connection; pending now counts it */
    }
    batch_answered(q);
    answer_callers(q, 0, mh_append_native_seqs(q->nat), mh_append_native_routes(q->nat), 0);
}

/* The append script's answer: seqs and routes (into the reply), what it reserved. */
static int script_result(lop_t *q, const redisReply *last, uint64_t *seqs, const char **inst,
                         uint64_t *dropped)
{
    rlog_t *log = q->log;
    uint64_t last_id, mid_top;
    if (q->req.status)
        return q->req.lost ? MH_EINDOUBT : q->req.status;
    if (mh_redis_decode_appended(last, q->n, &last_id, dropped, &mid_top, seqs, inst) != 0 ||
        mid_top < NATIVE_BODY_IDS) {
        mh_redis_conn_bad_reply(&q->req, last);
        return MH_EINDOUBT; /* a script sent whose answer makes no sense may have appended */
    }
    log->known_max = last_id;
    log->known_gen = q->gen;
    log->mid_next = mid_top - NATIVE_BODY_IDS + 1;
    log->mid_end = mid_top + 1;
    return 0;
}

/* After a MULTI/EXEC batch's callers were answered: the tidy's drops, when it ran. */
static void finish_tidy(lop_t *q, const redisReply *last)
{
    uint64_t d = 0;
    if (q->script != SC_TIDY || q->req.status)
        return; /* no tidy, or it failed: the next append to those ids finds the same */
    if (mh_redis_decode_u64(last, &d) == 0) {
        if (q->log->tidy_dropped)
            *q->log->tidy_dropped += d;
    } else {
        mh_redis_conn_bad_reply(&q->req, last);
    }
}

/*
 * The batch is done. A MULTI/EXEC batch answered its callers when EXEC
 * was read; one whose EXEC failed, and a script batch, answer them here,
 * the retention drops of the batch counted once, with the first.
 */
static void finish_append(req_t *req, const redisReply *last)
{
    lop_t *q = (lop_t *)req;
    if (q->exec_read) {
        finish_tidy(q, last);
        op_done(q);
        return;
    }
    uint64_t dropped = 0;
    uint64_t *seqs = mh_xcalloc(q->n ? q->n : 1, sizeof(*seqs));
    const char **inst = mh_xcalloc(q->n ? q->n : 1, sizeof(*inst));
    int status = q->nat ? (q->req.lost ? MH_EINDOUBT : MH_EIO)
                        : script_result(q, last, seqs, inst, &dropped);
    batch_answered(q); /* after: the next batch sees what this one learnt */
    answer_callers(q, status, seqs, inst, dropped);
    free(seqs);
    free(inst);
    op_done(q);
}

void mh_msglog_redis_count_drops(mh_msglog_t *log, uint64_t *counter)
{
    if (log && log->ops == &redis_log_ops)
        ((rlog_t *)log->impl)->tidy_dropped = counter;
}

static const mh_redis_conn_req_ops_t append_ops = {"msglog_append", append_each, finish_append};

/* Joins the open batch of appends (one EVALSHA for all of it); a full one goes at once. */
static void log_append(void *impl, const uint64_t *ids, size_t n, mh_frame_t *f, uint64_t now_ms,
                       mh_msglog_append_fn cb, void *ud)
{
    rlog_t *log = impl;
    int fresh;
    lop_t *q = batch_join(log, &log->appends, &append_ops, SC_APPEND, &fresh);
    if (fresh) {
        q->args = append_args;
        q->prepare = append_prepare;
        q->nargs = APPEND_FIXED_ARGS;
    }
    q->appends = mh_xgrow(q->appends, q->nwaits, &q->capwaits, sizeof(*q->appends), FIRST_WAITS);
    append_wait_t *w = &q->appends[q->nwaits++];
    w->frame = mh_frame_ref(f);
    w->ids = mh_xmalloc((n ? n : 1) * sizeof(*ids));
    if (n)
        memcpy(w->ids, ids, n * sizeof(*ids));
    w->n = n;
    w->cb = cb;
    w->ud = ud;
    q->n += n;
    q->nargs += APPEND_RELAY_ARGS + n;
    q->bytes += f->len;
    q->now = now_ms;
    batch_joined(q, fresh, q->nwaits == APPEND_BATCH_MAX || q->bytes >= APPEND_BATCH_BYTES);
}

/* ---- read, open, ack: one id each ---- */

/* KEYS logm, log of q->id; ARGV prefix, q->arg, then q->max (read) or the TTL. */
static void id_args(lop_t *q, cmd_t *c)
{
    const rlog_t *log = q->log;
    mh_redis_conn_cmd_fmt(c, "2");
    mh_redis_conn_cmd_fmt(c, "%s:logm:%" PRIu64, log->prefix, q->id);
    mh_redis_conn_cmd_fmt(c, "%s:log:%" PRIu64, log->prefix, q->id);
    mh_redis_conn_cmd_bin(c, log->prefix, strlen(log->prefix));
    mh_redis_conn_cmd_u64(c, "", q->arg);
    mh_redis_conn_cmd_u64(c, "", q->max);
}

static lop_t *id_op(void *impl, const mh_redis_conn_req_ops_t *ops, int script, uint64_t id,
                    uint64_t arg, uint64_t max, void *ud)
{
    lop_t *q = op_new(impl, ops, script, ud);
    q->args = id_args;
    q->nargs = KEY_OP_ARGS;
    q->id = id;
    q->arg = arg;
    q->max = max;
    return q;
}

/* One entry of a read reply (seq, text, seq_at) as a new frame; -1 if malformed. */
static int parse_entry(const redisReply *r, size_t i, mh_msglog_entry_t *out)
{
    mh_redis_entry_t e;
    if (mh_redis_decode_entry(r, i, &e))
        return -1;
    out->seq = e.seq;
    out->frame = mh_frame_new(e.text, e.len);
    out->frame->is_message = 1;
    out->frame->seq_at = e.seq_at;
    return 0;
}

static void finish_read(req_t *req, const redisReply *last)
{
    lop_t *q = (lop_t *)req;
    uint64_t last_seq = 0;
    size_t n = 0, cap = 0;
    if (!q->req.status && mh_redis_decode_read(last, &last_seq, &cap))
        mh_redis_conn_bad_reply(&q->req, last);
    mh_msglog_entry_t *es = mh_xcalloc(cap ? cap : 1, sizeof(*es));
    for (; !q->req.status && n < cap; n++) {
        if (parse_entry(last, n, &es[n])) {
            mh_redis_conn_bad_reply(&q->req, last);
            break;
        }
    }
    int st = q->req.status;
    if (q->cb.read)
        q->cb.read(q->ud, st, st ? NULL : es, st ? 0 : n, st ? 0 : last_seq);
    for (size_t i = 0; i < n; i++)
        mh_frame_unref(es[i].frame);
    free(es);
    op_done(q);
}

static const mh_redis_conn_req_ops_t read_ops = {"msglog_read", NULL, finish_read};

static void log_read(void *impl, uint64_t id, uint64_t after, size_t max, mh_msglog_read_fn cb,
                     void *ud)
{
    batch_release(&((rlog_t *)impl)->appends); /* a read sees the appends made before it */
    lop_t *q = id_op(impl, &read_ops, SC_READ, id, after, max > READ_MAX ? READ_MAX : max, ud);
    q->cb.read = cb;
    op_submit(q);
}

static void finish_open(req_t *req, const redisReply *last)
{
    lop_t *q = (lop_t *)req;
    mh_msglog_state_t st = {0};
    int status = q->req.status ? MH_EIO : mh_redis_decode_open(last, &st);
    if (status == MH_EIO && !q->req.status)
        mh_redis_conn_bad_reply(&q->req, last);
    if (q->cb.state)
        q->cb.state(q->ud, status, status ? NULL : &st);
    op_done(q);
}

static const mh_redis_conn_req_ops_t open_ops = {"msglog_open", NULL, finish_open};

static void log_open(void *impl, uint64_t id, uint64_t since, mh_msglog_state_fn cb, void *ud)
{
    rlog_t *log = impl; /* appends and acks made before the open run before it, as issued */
    batch_release(&log->appends);
    batch_release(&log->acks);
    lop_t *q = id_op(impl, &open_ops, SC_OPEN, id, since, ((rlog_t *)impl)->lim.ttl_ms, ud);
    q->cb.state = cb;
    op_submit(q);
}

/* ---- ack: batched per loop turn ---- */

static void acks_args(lop_t *q, cmd_t *c)
{
    const rlog_t *log = q->log;
    mh_redis_conn_cmd_fmt(c, "0");
    mh_redis_conn_cmd_bin(c, log->prefix, strlen(log->prefix));
    mh_redis_conn_cmd_u64(c, "", log->lim.ttl_ms);
    for (size_t i = 0; i < 2 * q->n; i++)
        mh_redis_conn_cmd_u64(c, "", q->ids[i]);
}

static int by_id(const void *a, const void *b)
{
    uint64_t x = ((const ack_wait_t *)a)->id, y = ((const ack_wait_t *)b)->id;
    return (x > y) - (x < y);
}

/*
 * The batch's (id, seq) pairs: one per id, with the highest seq asked for
 * it (acks are cumulative, so that acknowledges exactly what its callers
 * acknowledged together). Sorts a copy: the callers keep their order.
 */
static void acks_pairs(lop_t *q)
{
    ack_wait_t *w = mh_xmalloc((q->nwaits ? q->nwaits : 1) * sizeof(*w));
    if (q->nwaits)
        memcpy(w, q->waits, q->nwaits * sizeof(*w));
    qsort(w, q->nwaits, sizeof(*w), by_id);
    q->ids = mh_xmalloc((q->nwaits ? 2 * q->nwaits : 1) * sizeof(*q->ids));
    q->n = 0;
    for (size_t i = 0; i < q->nwaits; i++) {
        if (q->n && q->ids[2 * q->n - 2] == w[i].id) {
            if (w[i].seq > q->ids[2 * q->n - 1])
                q->ids[2 * q->n - 1] = w[i].seq;
            continue;
        }
        q->ids[2 * q->n] = w[i].id;
        q->ids[2 * q->n + 1] = w[i].seq;
        q->n++;
    }
    free(w);
}

/* As the batch goes: one EVALSHA for its pairs. */
static void acks_prepare(lop_t *q)
{
    acks_pairs(q);
    q->nargs = ACK_FIXED_ARGS + 2 * q->n;
}

/* Every caller of the batch gets its status, in the order the acks came. */
static void finish_ack(req_t *req, const redisReply *last)
{
    lop_t *q = (lop_t *)req;
    (void)last;
    batch_answered(q);
    for (size_t i = 0; i < q->nwaits; i++) {
        if (q->waits[i].cb)
            q->waits[i].cb(q->waits[i].ud, q->req.status);
    }
    free(q->waits);
    op_done(q);
}

static const mh_redis_conn_req_ops_t ack_ops = {"msglog_ack", NULL, finish_ack};

/* Joins the open batch of acks (one EVALSHA for all of it); a full one goes at once. */
static void log_ack(void *impl, uint64_t id, uint64_t seq, mh_msglog_status_fn cb, void *ud)
{
    rlog_t *log = impl;
    int fresh;
    lop_t *q = batch_join(log, &log->acks, &ack_ops, SC_ACK, &fresh);
    if (fresh) {
        q->args = acks_args;
        q->prepare = acks_prepare;
    }
    q->waits = mh_xgrow(q->waits, q->nwaits, &q->capwaits, sizeof(*q->waits), FIRST_WAITS);
    q->waits[q->nwaits++] = (ack_wait_t){id, seq, cb, ud};
    batch_joined(q, fresh, q->nwaits == ACK_BATCH_MAX);
}

/* ---- construction ---- */

static const mh_msglog_ops_t redis_log_ops = {log_append, log_read, log_open,
                                              log_ack,    log_free, NULL};

int mh_msglog_redis_new(mh_msglog_t *out, mh_redis_store_t *rs, const mh_msglog_limits_t *lim)
{
    static const char *const srcs[SC_COUNT] = {append_lua, read_lua, open_lua, ack_lua, tidy_lua};
    if (!out || !rs || !lim)
        return MH_EINVAL;
    rlog_t *log = mh_xcalloc(1, sizeof(*log));
    log->rs = rs;
    log->conn = mh_redis_store_conn(rs);
    log->prefix = mh_xstrdup(mh_redis_store_prefix(rs));
    mh_append_native_keys_init(&log->keys, log->prefix);
    log->lim = *lim;
    log->refs = 1;
    log->touched = mh_u64map_new();
    log->touch_ms = lim->ttl_ms / 100 < TOUCH_EVERY_MS ? lim->ttl_ms / 100 : TOUCH_EVERY_MS;
    for (int i = 0; i < SC_COUNT; i++) {
        log->sc[i].src = srcs[i];
        sha1_hex(srcs[i], log->sc[i].sha);
    }
    out->ops = &redis_log_ops;
    out->impl = log;
    return 0;
}
