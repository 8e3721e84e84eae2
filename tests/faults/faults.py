"""msghub fault suite: runs the scenarios of scenarios.py against real hubs
on a private Redis and RabbitMQ, prints one line of figures per scenario and
a markdown summary table, and exits non-zero unless every scenario passed.

Pass criterion per scenario: lost = 0, no seq-order violation, seq
supported by the hub (contract v2), and the scenario's own checks (e.g. the
other receivers' p99 next to a stuck reader). Usage: see scripts/faults.
"""

import argparse
import asyncio
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from control import Servers, find_binary  # noqa: E402
from harness import Profile, Run  # noqa: E402
from scenarios import SCENARIOS  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def fmt_ms(v):
    return "-" if v is None else "%.0f" % v


def verdict(f, checks, error):
    if error:
        return "ERROR"
    if f["lost"] or f["order"] or any(not ok for ok, _ in checks):
        return "FAIL"
    if not f["seq_supported"]:
        return "NO-SEQ"
    return "PASS"


def line(name, f, v):
    order = "n/a (seq not supported by this hub)" if f["order"] is None else str(f["order"])
    out = ("%s: accepted %d, delivered %d, lost %d, duplicated %d, out of seq order %s, "
           "refused (unavailable) %d, p99 %s ms, max %s ms"
           % (name, f["accepted"], f["delivered"], f["lost"], f["duplicated"], order,
              f["refused"], fmt_ms(f["p99_ms"]), fmt_ms(f["max_ms"])))
    extra = ["relay answered within %s ms" % fmt_ms(f["answer_max_ms"])]
    if f["unanswered"]:
        extra.append("unanswered %d" % f["unanswered"])
    if f["errors"]:
        extra.append("other errors %r" % f["errors"])
    if f["misdelivered"]:
        extra.append("misdelivered %d" % f["misdelivered"])
    return out + (" (" + "; ".join(extra) + ")" if extra else "") + " -> " + v


async def run_one(name, fn, profile, servers, logdir, timeout):
    run = Run(name, profile, servers, logdir)
    error = None
    try:
        await asyncio.wait_for(fn(run, profile), timeout)
    except asyncio.TimeoutError:
        error = "scenario did not finish within %.0fs" % timeout
    except BaseException as e:  # noqa: BLE001 - pytest.fail() from Hub.start is a BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        error = "%s: %s" % (type(e).__name__, str(e)[:500])
    finally:
        try:
            await run.close()
        except BaseException as e:  # noqa: BLE001
            error = error or "teardown: %r" % e
    return run, error


def table(results):
    rows = ["| scenario | accepted | delivered | lost | duplicated | out of seq order | "
            "refused | p99 ms | max ms | result |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, f, v in results:
        rows.append("| %s | %d | %d | %d | %d | %s | %d | %s | %s | %s |"
                    % (name, f["accepted"], f["delivered"], f["lost"], f["duplicated"],
                       "n/a" if f["order"] is None else f["order"], f["refused"],
                       fmt_ms(f["p99_ms"]), fmt_ms(f["max_ms"]), v))
    return "\n".join(rows)


def _git(*args):
    return subprocess.run(["git", "-C", REPO] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL).stdout.decode().strip()


def git_describe():
    try:
        rev = _git("rev-parse", "--short", "HEAD")
        br = _git("rev-parse", "--abbrev-ref", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return "%s@%s%s" % (br, rev, "+dirty" if dirty else "")
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(prog="scripts/faults", description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="the long form (counts and durations)")
    ap.add_argument("--scenario", action="append", metavar="NAME",
                    help="run only this scenario (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--logdir", help="keep hub and server logs and results.json here")
    ap.add_argument("--hub-label", help="what to call the hub in the report (default: the "
                    "branch and commit of this checkout; say so when MSGHUB_BIN is another build)")
    args = ap.parse_args()

    if args.list:
        for name, _fn, desc in SCENARIOS:
            print("%-34s %s" % (name, desc))
        return 0
    chosen = SCENARIOS
    if args.scenario:
        known = {n for n, _f, _d in SCENARIOS}
        bad = [n for n in args.scenario if n not in known]
        if bad:
            print("scripts/faults: unknown scenario(s) %s; see --list" % ", ".join(bad),
                  file=sys.stderr)
            return 2
        chosen = [s for s in SCENARIOS if s[0] in args.scenario]
    if not find_binary():
        print("scripts/faults: no msghub binary (set MSGHUB_BIN or build into build/)",
              file=sys.stderr)
        return 2

    profile = Profile(args.full)
    logroot = args.logdir or tempfile.mkdtemp(prefix="msghub-faults-")
    os.makedirs(logroot, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    hub_rev = args.hub_label or git_describe()
    print("faults: %s form, %d scenario(s), hub %s (%s), logs in %s"
          % ("full" if args.full else "short", len(chosen), find_binary(), hub_rev, logroot),
          flush=True)
    servers = Servers()
    results, records = [], []
    timeout = (profile.traffic + profile.settle) * 2 + 120
    t_all = time.monotonic()
    try:
        for name, fn, _desc in chosen:
            t = time.monotonic()
            shutil.rmtree(os.path.join(logroot, name), ignore_errors=True)
            run, error = asyncio.run(run_one(name, fn, profile, servers,
                                             os.path.join(logroot, name), timeout))
            f = run.ledger.figures()
            v = verdict(f, run.checks, error)
            print(line(name, f, v), flush=True)
            notes = list(run.info)
            notes.append("client loop lag max %.0f ms" % (1000 * run.loop_lag))
            notes += [("check ok: " if ok else "CHECK FAILED: ") + text for ok, text in run.checks]
            if error:
                notes.append("error: " + error)
            if f["order"] is None:
                notes.append("seq not supported by this hub (%d of %d message frames without "
                             "seq): duplicates found by message key only, seq order not checked"
                             % (f["frames_without_seq"],
                                f["frames_with_seq"] + f["frames_without_seq"]))
            if f["violations"]:
                notes.append("first seq-order violations: %s" % "; ".join(f["violations"]))
            refusals = {}
            for r in run.ledger.receivers.values():
                for st, n in r.refusals.items():
                    refusals[st] = refusals.get(st, 0) + n
            if refusals:
                notes.append("resumes refused (HTTP status: count): %s"
                             % ", ".join("%s: %d" % kv for kv in sorted(refusals.items())))
            if run.ledger.notes:
                notes.append("%d notes, first: %s" % (len(run.ledger.notes), run.ledger.notes[0]))
            for n in notes:
                print("    %s" % n, flush=True)
            print("    (%.1fs)" % (time.monotonic() - t), flush=True)
            results.append((name, f, v))
            records.append({"scenario": name, "result": v, "figures": f, "notes": notes,
                            "seconds": round(time.monotonic() - t, 1)})
    finally:
        servers.destroy()
    print()
    print("Fault suite, %s form, %s UTC, hub %s, %.0f s:" % (
        "full" if args.full else "short", started.strftime("%Y-%m-%d %H:%M"), hub_rev,
        time.monotonic() - t_all))
    print()
    print(table(results))
    with open(os.path.join(logroot, "results.json"), "w") as fh:
        json.dump({"started": started.isoformat(), "hub": hub_rev,
                   "full": args.full, "scenarios": records}, fh, indent=1, default=str)
    failed = [n for n, _f, v in results if v != "PASS"]
    print()
    if failed:
        print("faults: %d of %d scenario(s) did not pass: %s" % (len(failed), len(results),
                                                                   ", ".join(failed)))
        return 1
    print("faults: all %d scenario(s) passed" % len(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
