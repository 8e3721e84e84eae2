#!/usr/bin/env python3
"""Redis time per delivery of msghub's append script, on the same batches.

Takes the append script out of src/backplane/msglog_redis.c (or the given
.lua files, to compare variants), sends CALLS EVALSHA of RELAYS relays each
(16 random receivers of 200, a 100-byte body; every 50th call marks its ids
due for the TTL touch, as an instance does about once a second) through
redis-cli --pipe, and reads Redis' own commandstats: the usec of EVALSHA
divided by the deliveries. Scripts are interleaved over REPS repetitions;
the median per script is printed. Each run uses a fresh key prefix, whose
keys are unlinked at the end.

Usage: tools/bench/script_cost.py [--calls N] [--relays R] [--reps K]
                                  [--max-msgs N] [--redis-url URL] [SCRIPT.lua ...]
A .lua file whose name contains "oldsign" gets ids marked the pre-b517b9b
way (-id = not due), for an A/B against that version of the script.
The name "native" (instead of a file) replays each batch as the commands
src/backplane/append_native.c sends instead (one MULTI/EXEC, no Lua; the
tidy script it rarely needs is left out), for its Redis cost.
Besides commandstats (EVALSHA usec; for native, every command's usec) it
prints Redis CPU per delivery (INFO cpu, user + sys), which also counts
parsing and queueing.
CONFIG RESETSTAT is sent to the Redis named: use a Redis nothing else
measures with commandstats at the time.
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import luasrc


def resp(args):
    out = ["*%d\r\n" % len(args)]
    for a in args:
        a = str(a)
        out.append("$%d\r\n%s\r\n" % (len(a.encode()), a))
    return "".join(out)


def native_batch(pfx, batch, text, now, first_mid):
    """One batch as src/backplane/append_native.c sends it: (commands, next body id)."""
    cmds, per, order, mid = [["MULTI"], ["GET", pfx + ":next_id"]], {}, [], first_mid
    for ids, due in batch:
        mid += 1
        bk = "%s:msg:%d" % (pfx, mid)
        cmds += [["HSET", bk, "t", text, "a", len(text), "r", len(ids)],
                 ["PEXPIRE", bk, 86400000]]
        for i in ids:
            if i not in per:
                per[i] = {"e": [], "due": False}
                order.append(i)
            per[i]["e"].append("%d:%d:%d" % (len(text) + 7, now, mid))
            per[i]["due"] |= due
    for i in order:
        mk, lk, es = "%s:logm:%d" % (pfx, i), "%s:log:%d" % (pfx, i), per[i]["e"]
        cmds += [["HINCRBY", mk, "last", len(es)], ["RPUSH", lk] + es,
                 ["HINCRBY", mk, "bytes", (len(text) + 7) * len(es)]]
        if per[i]["due"]:
            cmds += [["PEXPIRE", lk, 86400000], ["PEXPIRE", mk, 172800000], ["LINDEX", lk, 0]]
        else:
            cmds += [["PEXPIRE", lk, 86400000, "NX"]]
    cmds += [["MGET"] + ["%s:route:%d" % (pfx, i) for i in order], ["EXEC"]]
    return cmds, mid


def redis_cpu(cli):
    st = subprocess.run(cli + ["info", "cpu"], capture_output=True, text=True, check=True).stdout
    v = dict(l.split(":", 1) for l in st.splitlines() if ":" in l)
    return float(v["used_cpu_user"]) + float(v["used_cpu_sys"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--relays", type=int, default=25)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-msgs", type=int, default=10000,
                    help="the count cap (small: most calls drop entries by retention)")
    ap.add_argument("--redis-url", default=os.environ.get("MSGHUB_TEST_REDIS_URL",
                                                          "redis://127.0.0.1:6379"))
    ap.add_argument("scripts", nargs="*")
    a = ap.parse_args()
    cli = ["redis-cli", "-u", a.redis_url]
    scripts = [(f, None if f == "native" else open(f).read()) for f in a.scripts] or [
        ("append_lua (source)", luasrc.lua("append_lua"))]
    rnd = random.Random(1)
    text = '{"type":"message","from":7,"body":"' + "x" * 60 + '"'
    batches = [[(rnd.sample(range(1, 201), 16), c % 50 == 0) for _ in range(a.relays)]
               for c in range(a.calls)]
    res, prefixes = {name: [] for name, _ in scripts}, []
    cpu = {name: [] for name, _ in scripts}
    tmp = tempfile.NamedTemporaryFile("w", suffix=".resp", delete=False)
    tmp.close()
    try:
        for _ in range(a.reps):
            for name, lua in scripts:
                sha = lua and subprocess.run(cli + ["script", "load", lua], capture_output=True,
                                             text=True, check=True).stdout.strip()
                if lua and len(sha) != 40:
                    sys.exit("%s: %s" % (name, sha))
                pfx = "scriptcost-%d-%d" % (os.getpid(), rnd.randrange(1 << 30))
                prefixes.append(pfx)
                subprocess.run(cli + ["set", pfx + ":next_id", "200"], capture_output=True)
                old = "oldsign" in name
                block = ["0"] if lua and "local maxn, maxb, block" in lua else []
                now = int(time.time() * 1000)
                mid = 0
                with open(tmp.name, "w") as f:
                    for c, batch in enumerate(batches):
                        if lua is None:
                            cmds, mid = native_batch(pfx, batch, text, now + c, mid)
                            f.write("".join(resp(x) for x in cmds))
                            continue
                        args = ["EVALSHA", sha, 2, pfx + ":next_id", pfx + ":msgid", pfx, now + c,
                                86400000, a.max_msgs, 16777216] + block
                        for ids, due in batch:
                            mark = (not due) if old else due
                            args += [text, len(text), len(ids)] + [
                                ("-%d" if mark else "%d") % i for i in ids]
                        f.write(resp(args))
                subprocess.run(cli + ["config", "resetstat"], capture_output=True, check=True)
                c0 = redis_cpu(cli)
                subprocess.run(" ".join(cli) + " --pipe < " + tmp.name, shell=True,
                               capture_output=True, check=True)
                c1 = redis_cpu(cli)
                st = subprocess.run(cli + ["info", "commandstats"], capture_output=True,
                                    text=True, check=True).stdout
                stats = [l for l in st.splitlines() if l.startswith("cmdstat_")]
                if lua:
                    stats = [l for l in stats if l.startswith("cmdstat_evalsha")]
                else:  # EXEC's usec includes the commands it ran, counted on their own too
                    stats = [l for l in stats if not l.startswith(("cmdstat_exec",
                                                                   "cmdstat_config"))]
                for ev in stats:
                    if "failed_calls=0" not in ev or "rejected_calls=0" not in ev:
                        sys.exit("%s: some calls failed: %s" % (name, ev))
                usec = sum(float(ev.split("usec=")[1].split(",")[0]) for ev in stats)
                deliveries = a.calls * a.relays * 16
                res[name].append(usec / deliveries)
                cpu[name].append((c1 - c0) * 1e6 / deliveries)
    finally:
        os.unlink(tmp.name)
        for pfx in prefixes:
            subprocess.run(" ".join(cli) + " --scan --pattern '%s:*' | xargs -r -n 1000 %s unlink"
                           " >/dev/null" % (pfx, " ".join(cli)), shell=True)
    for name, _ in scripts:
        print("%-28s median %.2f us of Redis time per delivery (runs: %s); Redis CPU %.2f us"
              " (runs: %s)" % (name, statistics.median(res[name]),
                               " ".join("%.2f" % x for x in res[name]),
                               statistics.median(cpu[name]),
                               " ".join("%.2f" % x for x in cpu[name])))


if __name__ == "__main__":
    main()
