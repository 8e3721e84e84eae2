#!/usr/bin/env python3
"""Redis CPU of msglog_redis's batched ack script alone: OLD_SOURCE's against
NEW_SOURCE's, on a private idle Redis (it creates keys under a random
prefix; never point it at a shared one). Each round: one batched append
(NEW_SOURCE's script, as one loop turn sends it) of 140 relays to 10 random
ids of 100, then every id acks its last seq in one batched EVALSHA. Prints
Redis CPU (INFO cpu, user + sys, around the ack phase only) and commands
per acked entry, alternating the two twice.

Usage: ack_script_cost.py PORT ROUNDS OLD_SOURCE NEW_SOURCE
  e.g. git show 605915b:src/backplane/msglog_redis.c > /tmp/old.c
       scripts/private-redis start /tmp/r 20020
       tools/bench/ack_script_cost.py 20020 30 /tmp/old.c src/backplane/msglog_redis.c
Both sources must hold the batched ack script (no KEYS; main since
2026-12-02); the append script is always NEW_SOURCE's."""
import os
import random, re, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tests', 'integration'))
from cluster import Redis
import luasrc

port = int(sys.argv[1]); rounds = int(sys.argv[2]); old_src, new_src = sys.argv[3], sys.argv[4]
r = Redis('redis://127.0.0.1:%d' % port); r.connect()
def cpu():
    info = r.cmd('INFO', 'cpu').decode()
    u = float(re.search(r'used_cpu_user:([\d.]+)', info).group(1))
    s = float(re.search(r'used_cpu_sys:([\d.]+)', info).group(1))
    return u + s
def calls():
    info = r.cmd('INFO', 'commandstats').decode()
    return sum(int(x) for x in re.findall(r'calls=(\d+)', info))
res = {}
for variant, path in (('base', old_src), ('new', new_src)) * 2:
    app = r.cmd('SCRIPT', 'LOAD', luasrc.lua('append_lua', new_src)).decode()
    ack = r.cmd('SCRIPT', 'LOAD', luasrc.lua('ack_lua', path)).decode()
    pfx = 'ackcost%d' % random.randrange(1 << 30)
    r.cmd('SET', pfx + ':next_id', 100)
    rng = random.Random(7)
    last = {i: 0 for i in range(1, 101)}
    t_cpu = 0.0; n_cmd = 0; entries = 0; evs = 0
    a_cpu = 0.0
    for _ in range(rounds):
        a0 = cpu()
        batch = []
        for _ in range(140):
            ids = rng.sample(range(1, 101), 10)
            batch += ['{"type":"message","body":"x"}', 10, 10, *ids]
            for i in ids: last[i] += 1
            entries += 10
        r.cmd('EVALSHA', app, 2, pfx + ':next_id', pfx + ':msgid', pfx, int(time.time() * 1000),
              86400000, 10000, 16 << 20, 0, *batch)
        a_cpu += cpu() - a0
        c0, k0 = cpu(), calls()
        args = []
        for i in range(1, 101): args += [i, last[i]]
        r.cmd('EVALSHA', ack, 0, pfx, 86400000, *args); evs += 1
        t_cpu += cpu() - c0; n_cmd += calls() - k0 - 2  # minus the INFO calls
    left = r.cmd('EVAL', "return #redis.call('KEYS', ARGV[1])", 0, pfx + ':msg:*')
    res.setdefault(variant, []).append((t_cpu * 1e6 / entries, n_cmd / entries, evs / entries, left))
    print(variant, 'append CPU us per entry %.3f;' % (a_cpu * 1e6 / entries), 'ack CPU us per acked entry %.3f, commands per entry %.2f, EVALSHA per entry %.4f, bodies left %s'
          % (t_cpu * 1e6 / entries, n_cmd / entries, evs / entries, left), flush=True)
