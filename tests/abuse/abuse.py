"""The abuse suite (issue 7): each attack a hostile client can make, as a
bounded script against a real hub, with a pass criterion.

For every attack a fresh hub is started; a canary of 5 WebSocket clients
relays to one another before and during the attack and its delivery
latency is measured (p99 and max); the hub's RSS is sampled before, at its
peak during, and after the attack. The attack passes when its own criterion
holds (listed in ATTACKS and in docs/RELIABILITY.md).

Usage: python3 tests/abuse/abuse.py [--short] [--only a,b] [--bin PATH] [--json FILE] [--no-rss]
  --short   the bounded form run by ctest (scripts/test), under a minute
  --no-rss  judge memory by the hub's own accounting only (sanitizer builds)
  --valgrind  each hub under valgrind memcheck: fails on any error or definite leak
Exits 1 when an attack fails its criterion. Everything started here is
stopped on exit; all traffic goes to 127.0.0.1.
"""

import argparse
import json
import resource
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from wsraw import (OP_BINARY, OP_CLOSE, OP_TEXT, ConnectionClosed, HandshakeError,  # noqa: E402
                   RecvTimeout, WSClient, encode_frame)

HOST = "127.0.0.1"
MIB = 1 << 20


# ---- the hub ------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


VALGRIND = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite"]
VALGRIND_RC = 99


class Hub:
    def __init__(self, binary, args, nofile=None, wrap=()):
        self.log = tempfile.NamedTemporaryFile(prefix="msghub-abuse-", suffix=".log", delete=False)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MSGHUB_")}
        def limits():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.wrapped = bool(wrap)
        self.proc = subprocess.Popen(list(wrap) + [binary, "--listen", "%s:%d" % (HOST, self.port)] +
                                     args,
                                     stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
                                     env=env, preexec_fn=limits)
        deadline = time.monotonic() + (60 if wrap else 10)
        while time.monotonic() < deadline:
            if self.get_status("/healthz") == 200:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("hub did not start")

    def get_status(self, path, timeout=1.0):
        try:
            s = socket.create_connection((HOST, self.port), timeout=timeout)
        except OSError:
            return None
        try:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n" % path.encode())
            data = s.recv(64)
            return int(data.split(b" ")[1]) if data.startswith(b"HTTP/1.") else None
        except (OSError, ValueError, IndexError):
            return None
        finally:
            s.close()

    def metrics(self):
        s = socket.create_connection((HOST, self.port), timeout=3)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        out = {}
        for line in data.split(b"\r\n\r\n", 1)[1].decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def rss(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def log_size(self):
        self.log.flush()
        return os.path.getsize(self.log.name)

    def ws(self):
        c = WSClient.connect(HOST, self.port)
        c.hello = c.recv_json()
        c.id = c.hello["id"]
        return c

    def stop(self):
        """Stops the hub; returns the memcheck report (text) when valgrind found errors."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60 if self.wrapped else 5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        report = None
        if self.wrapped and self.proc.returncode == VALGRIND_RC:
            with open(self.log.name, errors="replace") as f:
                report = "".join(line for line in f if line.startswith("=="))[-6000:]
        self.log.close()
        if not os.environ.get("MSGHUB_ABUSE_KEEP_LOG"):  # kept for diagnosis when set
            os.unlink(self.log.name)
        return report


# ---- canary and RSS sampling --------------------------------------------------

class Canary(threading.Thread):
    """5 clients relaying round-robin; latency of each delivery, in ms."""

    def __init__(self, hub):
        super().__init__(daemon=True)
        self.clients = [hub.ws() for _ in range(5)]
        self.samples = []
        self.phase = "before"
        self.stop_flag = False
        self.failures = 0
        self.failure_kinds = []  # "phase:exception", to tell a slow hub from a closed client

    def run(self):
        n = 0
        while not self.stop_flag:
            src = self.clients[n % 5]
            dst = self.clients[(n + 1) % 5]
            n += 1
            t0 = time.monotonic()
            try:
                src.send_text('{"type":"relay","receivers":[%d],"body":%d}' % (dst.id, n))
                while True:
                    m = dst.recv_json(timeout=3)
                    if m.get("type") == "message" and m.get("body") == n:
                        break
                self.samples.append((self.phase, (time.monotonic() - t0) * 1000))
            except (RecvTimeout, ConnectionClosed, OSError) as e:
                self.failures += 1
                self.failure_kinds.append("%s:%s" % (self.phase, type(e).__name__))
                self.samples.append((self.phase, 3000.0))
            time.sleep(0.01)

    def stats(self, phase):
        xs = sorted(v for p, v in self.samples if p == phase)
        if not xs:
            return {"n": 0, "p99_ms": None, "max_ms": None}
        return {"n": len(xs), "p99_ms": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 2),
                "max_ms": round(xs[-1], 2)}

    def finish(self):
        self.stop_flag = True
        self.join(5)
        for c in self.clients:
            c.abort()


class RSSPeak(threading.Thread):
    def __init__(self, hub):
        super().__init__(daemon=True)
        self.hub = hub
        self.peak = 0
        self.stop_flag = False

    def run(self):
        while not self.stop_flag:
            self.peak = max(self.peak, self.hub.rss())
            time.sleep(0.02)


# ---- the attacks --------------------------------------------------------------

def drain(sock, deadline, limit=1 << 22):
    out = b""
    while time.monotonic() < deadline and len(out) < limit:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = sock.recv(65536)
        except socket.timeout:
            break
        except OSError:
            break
        if not d:
            break
        out += d
    return out


def attack_amplification(hub, short):
    """Item 1: POST /relay followed by extra bytes in the same send."""
    rx = hub.ws()
    n = 20 if short else 200
    tails = [b"\r\n", b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n", b"x"]
    responses = 0
    for i in range(n):
        body = b'{"receivers":[%d],"body":%d}' % (rx.id, i)
        req = (b"POST /relay HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body + tails[i % len(tails)]
        s = socket.create_connection((HOST, hub.port), timeout=3)
        s.sendall(req)
        responses += drain(s, time.monotonic() + 2).count(b"HTTP/1.1 ")
        s.close()
    got = 0
    try:
        while True:
            m = rx.recv_json(timeout=1)
            got += m.get("type") == "message"
    except (RecvTimeout, ConnectionClosed):
        pass
    rx.abort()
    return {"requests": n, "responses": responses, "deliveries": got,
            "pass": responses == n and got == n}


def attack_exhaustion(hub, short):
    """Item 2: slow requests past the socket limit (the hub runs with 512 descriptors)."""
    log0 = hub.log_size()
    n = 1000 if short else 3000
    socks, refused, healthz_fail = [], 0, 0
    t_end = time.monotonic() + (6 if short else 20)
    probes = 0
    while time.monotonic() < t_end:
        for _ in range(n // 5 if len(socks) < n else 0):
            try:
                s = socket.create_connection((HOST, hub.port), timeout=1)
                s.sendall(b"POST /relay HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json"
                          b"\r\nContent-Length: 1000000\r\n\r\nx")
                socks.append(s)
            except OSError:
                refused += 1
        for s in socks[:]:
            try:
                s.send(b"x")
            except OSError:
                socks.remove(s)
                s.close()
        probes += 1
        ok = False
        deadline = time.monotonic() + 3.5  # a slot frees at the latest with the next sweep
        while time.monotonic() < deadline and not ok:
            ok = hub.get_status("/healthz") == 200
            if not ok:
                time.sleep(0.1)
        healthz_fail += not ok
        time.sleep(0.5)
    for s in socks:
        s.close()
    time.sleep(1.5)
    m = hub.metrics()
    log_bytes = hub.log_size() - log0
    try:
        fresh = hub.ws()
        fresh.abort()
        new_client = True
    except (HandshakeError, ConnectionClosed, OSError, RecvTimeout):
        new_client = False
    return {"probes": probes, "healthz_failed": healthz_fail, "log_bytes": log_bytes,
            "refused_at_accept": int(m.get("msghub_sockets_refused_total", 0)),
            "request_timeouts": int(m.get("msghub_request_timeouts_total", 0)),
            "new_client_after": new_client,
            "pass": healthz_fail == 0 and log_bytes < MIB and new_client}


def attack_accept_storm(hub, short):
    """Item 3: many TCP connections at once, no request."""
    n = 2000 if short else 10000
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection((HOST, hub.port), timeout=2))
        except OSError:
            break
    time.sleep(6 if short else 8)  # through their handshake / request timeout
    for s in socks:
        s.close()
    return {"connections": len(socks), "pass": None}  # judged on the canary below


def attack_partial_storm(hub, short):
    """Items 3 and 7: many connections at once, each sending part of a request
    head and then nothing, held through the deadline, then all closed at once
    (lws walked every header table at each close: O(n^2) for n partial heads)."""
    n = 2000 if short else 10000
    socks = []
    for i in range(n):
        try:
            s = socket.create_connection((HOST, hub.port), timeout=2)
            s.sendall(b"GET /ws?n=%d HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\n" % i)
            socks.append(s)
        except OSError:
            break
    time.sleep(3)
    for s in socks:  # before their deadline: the peers go first
        s.close()
    time.sleep(1)
    socks = []
    for i in range(n):  # and once more, now held through the deadline
        try:
            s = socket.create_connection((HOST, hub.port), timeout=2)
            s.sendall(b"POST /relay HTTP/1.1\r\nHost: hub\r\nContent-")
            socks.append(s)
        except OSError:
            break
    time.sleep(12)
    for s in socks:
        s.close()
    return {"connections": len(socks), "pass": None}  # judged on the canary below


def attack_long_token(hub, short):
    """Item 4: a token too long for the buffer must be 401, not a new id."""
    statuses = []
    for n in (294, 1000, 2000):
        try:
            c = WSClient.connect(HOST, hub.port, path="/ws?token=" + "a" * n)
            c.abort()
            statuses.append(101)
        except HandshakeError as e:
            statuses.append(e.status)
    return {"statuses": statuses, "pass": statuses == [401, 401, 401]}


def attack_binary_flood(hub, short):
    """Item 5: binary frames must count against the rate limiter."""
    c = hub.ws()
    n = 2000 if short else 50000
    batch = b"".join(encode_frame(OP_BINARY, b"\x00") for _ in range(100))
    for _ in range(n // 100):
        c.send_raw(batch)
    codes = {}
    try:
        for _ in range(n):
            code = c.recv_json(timeout=3).get("code")
            codes[code] = codes.get(code, 0) + 1
    except (RecvTimeout, ConnectionClosed):
        pass
    c.abort()
    limited = codes.get("rate_limited", 0)
    return {"frames": n, "answers": codes, "pass": limited >= n - 400 - 200}


def attack_ws_protocol(hub, short):
    """Item 6: invalid close frames get 1002."""
    got = {}
    for name, payload in (("code_5000", struct.pack("!H", 5000)), ("one_byte", b"\x03"),
                          ("reason_not_utf8", struct.pack("!H", 1000) + b"\xff")):
        c = hub.ws()
        c.send_frame(OP_CLOSE, payload)
        fr = c.recv_frame(timeout=3)
        got[name] = struct.unpack("!H", fr.payload[:2])[0] if len(fr.payload) >= 2 else None
        c.abort()
    return {"close_codes": got, "pass": set(got.values()) == {1002}}


def raw_status(hub, data):
    s = socket.create_connection((HOST, hub.port), timeout=3)
    try:
        s.sendall(data)
        out = drain(s, time.monotonic() + 3)
    except OSError:
        out = b""
    s.close()
    try:
        return int(out.split(b" ")[1]) if out.startswith(b"HTTP/1.") else "closed"
    except (ValueError, IndexError):
        return "closed"


def attack_bad_http(hub, short):
    """Item 7: requests lws alone would drop or answer in HTML."""
    cases = {
        "junk": (b"\x00\x01junk\r\n\r\n", 400),
        "tls_hello": (bytes.fromhex("16030100a5010000a10303") + b"\x11" * 64, 400),
        "http2_preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
        "nul_in_origin": (b"GET /healthz HTTP/1.1\r\nOrigin: https://a\x00.evil\r\n\r\n", 400),
        "chunked_relay": (b"POST /relay HTTP/1.1\r\nContent-Type: application/json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n0\r\n\r\n", 411),
        "100KiB_header": (b"GET /healthz HTTP/1.1\r\nUser-Agent: " + b"a" * 102400 +
                          b"\r\n\r\n", 431),
        "100KiB_unknown_headers": (b"GET /healthz HTTP/1.1\r\n" + b"".join(
            b"X-H%d: %s\r\n" % (i, b"a" * 100) for i in range(1000)) + b"\r\n", 431),
        "1MiB_url": (b"GET /?" + b"a" * MIB + b" HTTP/1.1\r\n\r\n", 414),
    }
    got = {k: raw_status(hub, v[0]) for k, v in cases.items()}
    return {"answers": got, "pass": all(got[k] == v[1] for k, v in cases.items())}


def attack_memory(hub, short, limit):
    """Item 8: unfinished 1 MiB fragments from many connections."""
    n = 60 if short else 300
    holders, closed_1013 = [], 0
    for _ in range(n):
        try:
            c = hub.ws()
            c.send_raw(encode_frame(OP_TEXT, b'{"type":"ping","p":"' + b"a" * MIB, fin=False))
            holders.append(c)
        except (ConnectionClosed, OSError, HandshakeError):
            pass
    time.sleep(1)
    for c in holders:
        try:
            c.expect_silence(0.01)
        except ConnectionClosed as e:
            closed_1013 += e.code == 1013
        except (RecvTimeout, AssertionError):
            pass
    m = hub.metrics()
    for c in holders:
        c.abort()
    return {"holders": len(holders), "closed_1013": closed_1013,
            "memory_bytes_at_peak": int(m["msghub_memory_bytes"]), "pass": None}


def attack_memory_offline(hub, short):
    """Item 8, second form: 1 MiB POST /relay bodies to one offline id (stored in its log)."""
    gone = hub.ws()
    gid = gone.id
    gone.close()
    n = 40 if short else 300
    body = b'{"receivers":[%d],"body":"%s"}' % (gid, b"m" * (MIB - 64))
    head = (b"POST /relay HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
    codes = {}
    for _ in range(n):  # a fresh connection each: a refusal closes it
        s = socket.create_connection((HOST, hub.port), timeout=10)
        try:
            s.sendall(head + body)
        except OSError:
            pass  # refused before the whole body was read
        out = drain(s, time.monotonic() + 10)
        s.close()
        code = int(out.split(b" ")[1]) if out.startswith(b"HTTP/1.") else 0
        codes[code] = codes.get(code, 0) + 1
    m = hub.metrics()
    return {"posts": n, "answers": codes, "memory_bytes": int(m["msghub_memory_bytes"]),
            "pass": None}


# name -> (function, hub flags, criterion text)
ATTACKS = {
    "amplification": (attack_amplification, [],
                      "each request answered once and delivered once"),
    "exhaustion": (attack_exhaustion, ["--request-timeout", "2"],
                   "/healthz answered at every probe, a new client connects, log < 1 MiB"),
    "accept_storm": (attack_accept_storm, [], "canary p99 < 100 ms and max < 300 ms"),
    "partial_storm": (attack_partial_storm, [], "canary p99 < 100 ms and max < 300 ms"),
    "long_token": (attack_long_token, [], "401 for tokens of 294, 1000, 2000 characters"),
    "binary_flood": (attack_binary_flood, [], "rate_limited for every frame past the burst"),
    "ws_protocol": (attack_ws_protocol, [], "close 1002 for each invalid close frame"),
    "bad_http": (attack_bad_http, [],
                 "400 / 411 / 414 / 431 JSON answers, also 431 for unknown headers past 4 KiB"),
    "memory": (None, [], "RSS growth < memory limit + 64 MiB; refusals are close 1013"),
    "memory_offline": (attack_memory_offline, [],
                       "RSS growth < memory limit + 64 MiB; past it 503, never a 200 that is lost"),
}
SHORT = ["amplification", "exhaustion", "accept_storm", "partial_storm", "long_token",
         "binary_flood", "ws_protocol", "bad_http", "memory", "memory_offline"]
MEMORY_LIMIT = 32 * MIB
EXHAUSTION_NOFILE = 512
MIN_DURING_S = 1.0
CHECK_RSS = True  # off for sanitizer builds (--no-rss): their allocator keeps freed memory
RSS_MARGIN = 64 * MIB


def run_one(binary, name, short, valgrind=False):
    fn, flags, criterion = ATTACKS[name]
    if name in ("memory", "memory_offline"):
        flags = ["--memory-limit", str(MEMORY_LIMIT)]
    hub = Hub(binary, flags, nofile=EXHAUSTION_NOFILE if name == "exhaustion" else None,
              wrap=VALGRIND if valgrind else ())
    report = None
    try:
        canary = Canary(hub)
        canary.start()
        time.sleep(1.5)
        rss_before = hub.rss()
        peak = RSSPeak(hub)
        peak.start()
        canary.phase = "during"
        t0 = time.monotonic()
        res = fn(hub, short) if fn else attack_memory(hub, short, MEMORY_LIMIT)
        res["seconds"] = round(time.monotonic() - t0, 1)
        time.sleep(max(0.0, MIN_DURING_S - (time.monotonic() - t0)))  # enough canary samples
        canary.phase = "after"
        time.sleep(1.0)
        peak.stop_flag = True
        peak.join(2)
        canary.finish()
        res["canary_before"] = canary.stats("before")
        res["canary_during"] = canary.stats("during")
        res["canary_failures"] = canary.failures
        if canary.failure_kinds:
            res["canary_failure_kinds"] = canary.failure_kinds
        try:  # the longest loop turn of the hub's life (None before the metric existed)
            busy = hub.metrics().get("msghub_loop_busy_max_seconds")
            res["loop_busy_max_ms"] = None if busy is None else round(busy * 1000, 1)
        except OSError:
            res["loop_busy_max_ms"] = None
        res["rss_mib"] = {"before": round(rss_before / MIB, 1), "peak": round(peak.peak / MIB, 1),
                          "after": round(hub.rss() / MIB, 1)}
        during = res["canary_during"]
        if name in ("accept_storm", "partial_storm") and not valgrind:  # timing only
            res["pass"] = (during["p99_ms"] or 0) < 100 and (during["max_ms"] or 0) < 300
        elif name == "memory_offline":
            res["pass"] = not CHECK_RSS or peak.peak - rss_before < MEMORY_LIMIT + RSS_MARGIN
        elif name == "memory":
            grown = peak.peak - rss_before  # relative: sanitizer builds start larger
            rss_ok = not CHECK_RSS or grown < MEMORY_LIMIT + RSS_MARGIN
            res["pass"] = (rss_ok and res["closed_1013"] > 0 and
                           res["memory_bytes_at_peak"] <= MEMORY_LIMIT)
        if valgrind:  # many times slower: only what the attack must not break, and memcheck
            res["pass"] = res["pass"] is not False
        else:
            res["pass"] = bool(res["pass"]) and canary.failures == 0
        res["criterion"] = criterion
    finally:
        report = hub.stop()
    if valgrind:
        res["memcheck"] = "clean" if report is None else "errors"
        if report:
            print(report, file=sys.stderr)
            res["pass"] = False
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--bin", default=os.environ.get("MSGHUB_BIN") or
                    os.path.join(HERE, "..", "..", "build", "msghub"))
    ap.add_argument("--json", default="")
    ap.add_argument("--no-rss", action="store_true", help="skip RSS criteria (sanitizer builds)")
    ap.add_argument("--valgrind", action="store_true",
                    help="run each hub under valgrind memcheck; judge errors and leaks, not timing")
    a = ap.parse_args()
    global CHECK_RSS
    CHECK_RSS = not (a.no_rss or a.valgrind)
    names = [n for n in a.only.split(",") if n] or (SHORT if a.short else list(ATTACKS))
    results, ok = {}, True
    for name in names:
        res = run_one(a.bin, name, a.short, a.valgrind)
        results[name] = res
        ok &= res["pass"]
        print("%-14s %s  canary p99 %s -> %s ms (max %s)  rss %s MiB  %s" % (
            name, "PASS" if res["pass"] else "FAIL", res["canary_before"]["p99_ms"],
            res["canary_during"]["p99_ms"], res["canary_during"]["max_ms"],
            "/".join(str(res["rss_mib"][k]) for k in ("before", "peak", "after")),
            json.dumps({k: v for k, v in res.items() if k not in (
                "pass", "canary_before", "canary_during", "rss_mib", "criterion")})), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "short": a.short, "results": results}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
