#!/usr/bin/env python3
"""Talks to running msghub hubs over HTTP and WebSocket only, for
scripts/check-deploy --image and --cluster (the hubs run in a container or
in Kubernetes pods, so nothing here starts a hub).

  hubprobe.py wait-ready HOST:PORT [SECONDS]
  hubprobe.py smoke --api-key K HOST:PORT [HOST:PORT ...]
      POST /sessions, /ws with the token (same id back), list, relay between
      two clients on the first and the last address (different hubs when
      they differ), POST /relay to an offline id delivered on connect,
      GET /clients, /metrics.
  hubprobe.py drain-client HOST:PORT STATEFILE
      connects, writes "connected" to STATEFILE, then waits for the hub's
      close and writes the close code (1001 when the hub drains).
  hubprobe.py flow --api-key K --receivers-at HOST:PORT --senders-at HOST:PORT
                   --reconnect-at HOST:PORT --seconds S --event-file F ...
      receivers connect at --receivers-at (one pod), senders relay to them
      from --senders-at; when a receiver's connection drops it reconnects
      with its token at --reconnect-at. When F exists (the caller kills or
      rolls something), the time is noted. After S seconds the senders stop,
      the receivers get --settle seconds to catch up, and the accounting is
      printed as JSON: accepted, delivered (distinct message ids), lost,
      duplicates, reconnects.

Every wait has a deadline. Exit status 0 when the check held.
"""

import argparse
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
import wsraw  # noqa: E402  (the integration tests' raw RFC 6455 client)


def split(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)


def http(addr, method, path, body=None, api_key=None, timeout=5.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://%s%s" % (addr, path), data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if api_key:
        req.add_header("Authorization", "Bearer " + api_key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def connect(addr, token=None, timeout=5.0, since=None):
    host, port = split(addr)
    path = "/ws" if token is None else "/ws?token=" + token
    if token is not None and since is not None:
        path += "&since=%d" % since
    c = wsraw.WSClient.connect(host, port, path=path, timeout=timeout)
    hello = c.recv_json(timeout=timeout)
    if hello.get("type") != "hello":
        raise AssertionError("expected hello, got %r" % hello)
    c.hello = hello
    return c


def recv_type(c, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise wsraw.RecvTimeout("no %s frame within %.1fs" % (want, timeout))
        m = c.recv_json(timeout=left)
        if m.get("type") == want:
            return m


def ack_if_v2(c, msg):
    """Contract v2 hubs keep a message until it is acknowledged; v1 hubs
    know no ack. Acknowledge only when the hub numbers its messages."""
    if "seq" in msg and "seq" in (c.hello or {}):
        c.send_json({"type": "ack", "seq": msg["seq"]})


# ------------------------------------------------------------------ commands

def cmd_wait_ready(args):
    deadline = time.monotonic() + args.seconds
    last = None
    while time.monotonic() < deadline:
        try:
            st, _ = http(args.addr, "GET", "/readyz", timeout=2)
            if st == 200:
                return 0
            last = st
        except OSError as e:
            last = e
        time.sleep(0.5)
    print("not ready after %ss: %s" % (args.seconds, last), file=sys.stderr)
    return 1


def cmd_smoke(args):
    a, b = args.addrs[0], args.addrs[-1]
    steps = []

    def ok(what):
        steps.append(what)
        print("  ok   " + what)

    st, body = http(a, "POST", "/sessions", {}, api_key=args.api_key)
    assert st == 201, "POST /sessions: %s %r" % (st, body)
    sess = json.loads(body)
    st2, _ = http(a, "POST", "/sessions", {})
    if args.api_key:
        assert st2 == 401, "POST /sessions without the key: %s" % st2
    ok("POST /sessions 201 (id %d), 401 without the API key" % sess["id"])

    c1 = connect(b, token=sess["token"])
    assert c1.hello["id"] == sess["id"] and c1.hello.get("resumed") is True, c1.hello
    v = "contract v2 hello (seq %s, ack %s)" % (c1.hello["seq"], c1.hello.get("ack")) \
        if "seq" in c1.hello else "contract v1 hello (no seq)"
    ok("/ws with the minted token at %s: same id, resumed; %s" % (b, v))

    c2 = connect(a)
    id1, id2 = c1.hello["id"], c2.hello["id"]
    c2.send_json({"type": "identity"})
    assert recv_type(c2, "identity")["id"] == id2
    ok("/ws without a token at %s: new id %d, identity" % (a, id2))

    deadline = time.monotonic() + 10
    while True:
        c2.send_json({"type": "list"})
        ids = recv_type(c2, "list")["ids"]
        if id1 in ids:
            break
        assert time.monotonic() < deadline, "id %d not in list %r" % (id1, ids)
        time.sleep(0.2)
    ok("list on %s shows the client on %s" % (a, b))

    body_in = {"text": "hello across hubs", "n": 12345678901234567890}
    c2.send_json({"type": "relay", "receivers": [id1], "body": body_in, "ref": "r1"})
    r = recv_type(c2, "relayed")
    assert r["accepted"] == 1 and r["unknown"] == [], r
    m = recv_type(c1, "message")
    assert m["from"] == id2 and m["body"] == body_in, m
    ack_if_v2(c1, m)
    c1.send_json({"type": "relay", "receivers": [id2], "body": "back", "ref": 2})
    assert recv_type(c1, "relayed")["accepted"] == 1
    m = recv_type(c2, "message")
    assert m["from"] == id1 and m["body"] == "back", m
    ack_if_v2(c2, m)
    ok("relay %s -> %s and back (relayed accepted 1, body intact)" % (a, b))

    st, body = http(a, "POST", "/sessions", {}, api_key=args.api_key)
    off = json.loads(body)
    st, body = http(b, "POST", "/relay", {"receivers": [off["id"], id1], "body": {"k": "v"}},
                    api_key=args.api_key)
    assert st == 200 and json.loads(body)["accepted"] == 2, (st, body)
    m = recv_type(c1, "message")
    assert m["from"] == 0 and m["body"] == {"k": "v"}, m
    c3 = connect(a, token=off["token"])
    m = recv_type(c3, "message")
    assert m["body"] == {"k": "v"}, m
    ok("POST /relay 200 to an online and an offline id; the offline one gets it on connect")

    st, body = http(b, "GET", "/clients", api_key=args.api_key)
    ids = json.loads(body)["ids"]
    assert st == 200 and id1 in ids and id2 in ids, (st, ids)
    st, body = http(a, "GET", "/metrics")
    assert st == 200 and b"msghub_connections" in body
    ok("GET /clients lists both, /metrics answers")
    for c in (c1, c2, c3):
        c.close()
    return 0


def cmd_drain_client(args):
    c = connect(args.addr)
    with open(args.statefile, "w") as f:
        f.write("connected %d\n" % c.hello["id"])
    try:
        code, _ = c.wait_close(timeout=args.seconds)
    except Exception as e:  # noqa: BLE001
        code = "error %s" % e
    with open(args.statefile, "a") as f:
        f.write("closed %s\n" % code)
    return 0


class Receiver:
    def __init__(self, flow, idx, token, client):
        self.flow = flow
        self.idx = idx
        self.token = token
        self.c = client
        self.id = client.hello["id"]
        self.seen = set()
        self.dups = 0
        self.reconnects = 0
        self.errors = []
        self.gone_since = None
        self.outage = 0.0
        # Contract v2 (hello has seq): acknowledge in batches, as the chat
        # page and msghub-cli do (every ACK_EVERY messages or ACK_MS), so a
        # kill finds messages pushed but not yet acknowledged; resume with
        # since = the highest seq received.
        self.v2 = "seq" in client.hello
        self.max_seq = None
        self.acked = 0
        self.unacked_since = None

    ACK_EVERY = 50
    ACK_S = 0.2

    def maybe_ack(self, force=False):
        if not self.v2 or self.max_seq is None or self.max_seq <= self.acked:
            return
        now = time.monotonic()
        if force or self.max_seq - self.acked >= self.ACK_EVERY or now - self.unacked_since >= self.ACK_S:
            self.c.send_json({"type": "ack", "seq": self.max_seq})
            self.acked = self.max_seq
            self.unacked_since = None

    def run(self):
        f = self.flow
        while not f.stop_receivers.is_set():
            try:
                try:
                    m = self.c.recv_json(timeout=0.1)
                except wsraw.RecvTimeout:
                    self.maybe_ack()
                    continue
                if m.get("type") == "message":
                    body = m.get("body")
                    mid = body.get("k") if isinstance(body, dict) else None
                    if mid in self.seen:
                        self.dups += 1
                    else:
                        self.seen.add(mid)
                    if self.v2 and isinstance(m.get("seq"), int):
                        if self.max_seq is None or m["seq"] > self.max_seq:
                            self.max_seq = m["seq"]
                        if self.unacked_since is None:
                            self.unacked_since = time.monotonic()
                        self.maybe_ack()
            except (wsraw.ConnectionClosed, OSError, wsraw.ProtocolViolation) as e:
                self.gone_since = time.monotonic()
                self.reconnect(e)
                continue
        try:
            self.c.close()
        except Exception:  # noqa: BLE001
            pass

    def reconnect(self, why):
        f = self.flow
        try:
            self.c.abort()
        except Exception:  # noqa: BLE001
            pass
        while not f.stop_receivers.is_set():
            try:
                since = self.max_seq if self.v2 else None
                self.c = connect(f.args.reconnect_at, token=self.token, timeout=3, since=since)
                if since is not None:
                    self.acked = since          # since acknowledges up to it
                self.unacked_since = None
                self.reconnects += 1
                self.outage += time.monotonic() - self.gone_since
                return
            except Exception as e:  # noqa: BLE001
                self.errors.append(str(e)[:120])
                time.sleep(0.3)


class Flow:
    def __init__(self, args):
        self.args = args
        self.stop_senders = threading.Event()
        self.stop_receivers = threading.Event()
        self.lock = threading.Lock()
        self.accepted = {}      # receiver id -> set of message ids accepted for it
        self.sent = 0
        self.refused = 0
        self.send_errors = []
        self.event_at = None


def sender(flow, idx, receivers, rate):
    a = flow.args
    c = None
    period = 1.0 / rate
    ref = 0
    nxt = time.monotonic()
    while not flow.stop_senders.is_set():
        if c is None:
            try:
                c = connect(a.senders_at, timeout=3)
            except Exception as e:  # noqa: BLE001
                flow.send_errors.append("connect: %s" % str(e)[:100])
                time.sleep(0.3)
                continue
        r = random.choice(receivers)
        ref += 1
        try:
            key = "%d:%d" % (idx, ref)
            c.send_json({"type": "relay", "receivers": [r.id], "body": {"k": key}, "ref": ref})
            while True:
                m = c.recv_json(timeout=5)
                if m.get("type") == "relayed" and m.get("ref") == ref:
                    break
                if m.get("type") == "error" and m.get("ref") == ref:
                    break
            with flow.lock:
                flow.sent += 1
                if m.get("type") == "relayed" and m.get("accepted") == 1:
                    flow.accepted.setdefault(r.id, set()).add(key)
                else:
                    flow.refused += 1
        except Exception as e:  # noqa: BLE001
            # The answer never came: not accepted as far as a client knows.
            flow.send_errors.append(str(e)[:100])
            try:
                c.abort()
            except Exception:  # noqa: BLE001
                pass
            c = None
        nxt += period
        time.sleep(max(0.0, nxt - time.monotonic()))


def cmd_flow(args):
    flow = Flow(args)
    receivers = []
    for i in range(args.receivers):
        st, body = http(args.receivers_at, "POST", "/sessions", {}, api_key=args.api_key)
        assert st == 201, (st, body)
        tok = json.loads(body)["token"]
        receivers.append(Receiver(flow, i, tok, connect(args.receivers_at, token=tok)))
    rthreads = [threading.Thread(target=r.run, daemon=True) for r in receivers]
    sthreads = [threading.Thread(target=sender, args=(flow, i, receivers, args.rate / args.senders),
                                 daemon=True) for i in range(args.senders)]
    for t in rthreads + sthreads:
        t.start()
    t0 = time.monotonic()
    with open(args.ready_file, "w") as fh:
        fh.write("flowing\n")
    while time.monotonic() - t0 < args.seconds:
        if flow.event_at is None and os.path.exists(args.event_file):
            flow.event_at = time.monotonic() - t0
        time.sleep(0.1)
    flow.stop_senders.set()
    for t in sthreads:
        t.join(10)
    # Catch up: until every accepted message arrived, or --settle seconds.
    deadline = time.monotonic() + args.settle
    while time.monotonic() < deadline:
        with flow.lock:
            missing = sum(len(flow.accepted.get(r.id, set()) - r.seen) for r in receivers)
        if missing == 0:
            break
        time.sleep(0.2)
    flow.stop_receivers.set()
    for t in rthreads:
        t.join(5)
    accepted = sum(len(s) for s in flow.accepted.values())
    delivered = sum(len(flow.accepted.get(r.id, set()) & r.seen) for r in receivers)
    out = {
        "sent": flow.sent,
        "accepted": accepted,
        "refused": flow.refused,
        "unanswered": len(flow.send_errors),
        "delivered": delivered,
        "lost": accepted - delivered,
        "duplicates": sum(r.dups for r in receivers),
        "receivers": len(receivers),
        "reconnects": sum(r.reconnects for r in receivers),
        "max_outage_s": round(max([r.outage for r in receivers] + [0.0]), 2),
        "event_at_s": None if flow.event_at is None else round(flow.event_at, 1),
        "errors": (flow.send_errors[:3] + [e for r in receivers for e in r.errors][:3]),
    }
    print(json.dumps(out))
    return 0 if out["lost"] == 0 else 3


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("wait-ready")
    s.add_argument("addr")
    s.add_argument("seconds", type=float, nargs="?", default=30)
    s = sub.add_parser("smoke")
    s.add_argument("--api-key", default="")
    s.add_argument("addrs", nargs="+")
    s = sub.add_parser("drain-client")
    s.add_argument("addr")
    s.add_argument("statefile")
    s.add_argument("--seconds", type=float, default=60)
    s = sub.add_parser("flow")
    s.add_argument("--api-key", default="")
    s.add_argument("--receivers-at", required=True)
    s.add_argument("--senders-at", required=True)
    s.add_argument("--reconnect-at", required=True)
    s.add_argument("--receivers", type=int, default=8)
    s.add_argument("--senders", type=int, default=2)
    s.add_argument("--rate", type=float, default=40.0, help="relays per second, all senders")
    s.add_argument("--seconds", type=float, default=20)
    s.add_argument("--settle", type=float, default=20)
    s.add_argument("--event-file", required=True)
    s.add_argument("--ready-file", required=True)
    a = p.parse_args()
    fn = {"wait-ready": cmd_wait_ready, "smoke": cmd_smoke, "drain-client": cmd_drain_client,
          "flow": cmd_flow}[a.cmd]
    try:
        return fn(a)
    except (AssertionError, OSError, wsraw.HandshakeError, wsraw.ConnectionClosed) as e:
        print("hubprobe %s: FAIL: %s" % (a.cmd, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
