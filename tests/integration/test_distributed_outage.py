"""Distributed mode, backplane outages (PROTOCOL.md sections 2, 4, 5):
Redis and RabbitMQ restart under running hubs. The servers are private ones
this module starts on their own ports (scripts/private-redis,
scripts/private-rabbitmq; RabbitMQ once per module, it boots in 5-15 s); the
machine's servers are never touched.

While a server is down: GET /readyz answers 503 on every instance, new
WebSocket upgrades get 503 `unavailable`. With Redis (the log) down every
relay is refused with `unavailable` (WS error frame / HTTP 503); with only
RabbitMQ down every relay is accepted (the log has it) and reaches its
receiver on the other instance once RabbitMQ is back. After it is back,
without restarting the hubs: /readyz is 200 again, every relay that was
accepted has been delivered, and new relays, connections and lists work."""

import json
import os
import re
import shutil
import threading
import time

import pytest

from cluster import (Cluster, PrivateRabbit, PrivateRedis, clients_of,  # noqa: F401 (fixture)
                     cluster_factory, list_of, readyz_status, wait_clients, wait_readyz)
from conftest import check_message, http_error, raw_error
from wsraw import HandshakeError

# This module needs no shared backplane (MSGHUB_TEST_*_URL): only the packages.
if not shutil.which("redis-server") or not os.path.exists("/usr/lib/rabbitmq/bin/rabbitmq-server"):
    pytest.skip("the outage tests start private servers: they need the Debian packages "
                "redis-server and rabbitmq-server (scripts/test-backplane installs them)",
                allow_module_level=True)

DOWN_WITHIN = 15.0   # a dropped connection is seen at once; heartbeats would take 10-20 s
UP_WITHIN = 20.0     # reconnect backoff is capped at 5 s (+20 %)
DELIVER_WITHIN = 15.0


@pytest.fixture(scope="module")
def servers():
    redis = PrivateRedis()
    rabbit = PrivateRabbit()
    try:
        redis.start()
        rabbit.start()
    except Exception:
        redis.destroy()
        rabbit.destroy()
        raise
    yield redis, rabbit
    redis.destroy()
    rabbit.destroy()


@pytest.fixture(scope="module")
def cl(servers):
    redis, rabbit = servers
    c = Cluster(redis_url=redis.url, amqp_url=rabbit.url, presence_ttl=3, queue_message_ttl=2,
                queue_expiry=30)
    try:
        c.start(2)
        yield c
    finally:
        c.cleanup()  # the servers are thrown away anyway


class Outage:
    """Relays attempted while a server goes down and comes back: remembers
    which were accepted so their delivery can be checked afterwards."""

    def __init__(self, a, b, r, http_hub):
        # a (instance 1) relays to b (instance 2) over WS; HTTP relays go to
        # r (instance 1) through instance 2
        self.a, self.b, self.r, self.http_hub = a, b, r, http_hub
        self.seq = 0
        self.accepted_ws = []     # seqs relayed a -> b over WS and accepted
        self.accepted_http = []   # seqs relayed over HTTP to r and accepted
        self.in_doubt = {"ws": [], "http": []}  # refused because the log's answer was lost
        self.refused = 0

    def attempt(self):
        self.seq += 1
        s = self.seq
        t0 = time.monotonic()
        self.a.send_text(json.dumps({"type": "relay", "ref": s, "receivers": [self.b.id],
                                     "body": {"ws": s}}))
        rep = self.a.recv_json(timeout=10)
        assert time.monotonic() - t0 < 10
        if rep["type"] == "relayed":
            assert rep == {"type": "relayed", "ref": s, "accepted": 1, "unknown": []}, rep
            self.accepted_ws.append(s)
        else:
            assert rep["type"] == "error" and rep["code"] == "unavailable", rep
            assert rep.get("ref") == s, rep
            self.note_refusal("ws", s, rep["message"])
        r = self.http_hub.post("/relay", data=json.dumps({"receivers": [self.r.id],
                                                          "body": {"http": s}}),
                               headers={"Content-Type": "application/json"})
        if r.status_code == 200:
            assert r.json()["accepted"] == 1, r.text
            self.accepted_http.append(s)
        else:
            http_error(r, 503, "unavailable")
            self.note_refusal("http", s, r.json()["error"]["message"])

    def note_refusal(self, key, s, message):
        """A refusal is either plain (nothing stored) or names the message
        whose append was sent when the connection to Redis went (it may
        have been stored and may still arrive, PROTOCOL-NOTES.md)."""
        self.refused += 1
        doubt = re.fullmatch(r"backplane lost the answer: message (\S+) may have been accepted "
                             r"and may still arrive; retry later", message)
        if doubt:
            self.in_doubt[key].append(s)

    def check_delivered(self):
        """Every accepted relay reached its receiver (duplicates allowed)."""
        for c, key, want in ((self.b, "ws", self.accepted_ws), (self.r, "http", self.accepted_http)):
            have = set()
            deadline = time.monotonic() + DELIVER_WITHIN
            while not set(want) <= have:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("accepted %s relays never delivered: %r (accepted %r)"
                                         % (key, sorted(set(want) - have), want))
                try:
                    m = c.recv_json(timeout=remaining)
                except AssertionError as e:
                    if "timed out" in str(e):
                        continue
                    raise
                assert m["type"] == "message", m
                assert key in m["body"], "a message nobody sent here: %r" % m
                if m["body"][key] in self.in_doubt[key]:
                    continue  # stored before the answer was lost: allowed, and said so
                assert m["body"][key] in want, (
                    "a relay refused with `unavailable` (which means NOT accepted, PROTOCOL.md "
                    "section 2) was delivered: %r" % m)
                have.add(m["body"][key])


def assert_outage_behaviour(cl, a):
    """While a server is down: /readyz 503 everywhere, upgrades 503."""
    for h in cl.hubs:
        r = h.get("/readyz")
        http_error(r, 503, "unavailable")
        with pytest.raises(HandshakeError) as ei:
            h.ws_raw()
        raw_error(ei.value, 503, "unavailable")
    # the hub itself stays alive
    for h in cl.hubs:
        assert h.get("/healthz").status_code == 200
    a.send_text('{"type":"ping"}')
    assert a.recv_json() == {"type": "pong"}


def assert_works_after(cl, a, b):
    h1, h2 = cl.hubs
    a.send_text('{"type":"relay","ref":"post","receivers":[%d],"body":"after a->b"}' % b.id)
    rep = a.recv_json()
    assert rep == {"type": "relayed", "ref": "post", "accepted": 1, "unknown": []}, (
        "after recovery, a relay from %d to the connected client %d: %r" % (a.id, b.id, rep))
    check_message(b.recv_json(timeout=5), a.id, "after a->b")
    b.send_text('{"type":"relay","receivers":[%d],"body":"after b->a"}' % a.id)
    check_message(a.recv_json(timeout=5), b.id, "after b->a")
    r = h1.relay_http([b.id], '"after http"')
    check_message(b.recv_json(timeout=5), 0, "after http")
    assert r.json()["accepted"] == 1
    # new connections on both instances, cross-instance relay to them
    n1 = h1.ws()
    n2 = h2.ws()
    assert len({a.id, b.id, n1.id, n2.id}) == 4, (a.id, b.id, n1.id, n2.id)
    n1.send_text('{"type":"relay","receivers":[%d],"body":"new"}' % n2.id)
    check_message(n2.recv_json(timeout=5), n1.id, "new")
    # presence: everyone listed on both instances
    everyone = {a.id, b.id, n1.id, n2.id}
    wait_clients(cl.hubs, lambda ids: everyone <= ids, 5, "all clients after recovery")
    assert everyone - {a.id} <= set(list_of(a))
    n1.close()
    n2.close()


def in_background(fn):
    """Runs fn in a thread; returns (thread, errors list)."""
    errors = []

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - re-raised by the caller
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


def run_outage(cl, stop, start, relays_while_down="refused"):
    """relays_while_down: "refused" (Redis down: every relay `unavailable`)
    or "accepted" (RabbitMQ down: the log takes every relay)."""
    h1, h2 = cl.hubs
    for h in cl.hubs:
        wait_readyz(h, 200, UP_WITHIN)
    a = h1.ws()
    b = h2.ws()
    r = h1.ws()
    out = Outage(a, b, r, h2)
    out.attempt()
    assert out.accepted_ws == [1] and out.accepted_http == [1], "relays fail before the outage"

    # keep relaying while the server shuts down, until every instance
    # reports the outage
    t_stop = time.monotonic()
    th, errors = in_background(stop)
    while th.is_alive() or not all(h.get("/readyz").status_code == 503 for h in cl.hubs):
        out.attempt()
        assert time.monotonic() - t_stop < 120 + DOWN_WITHIN, "stopping the server hangs"
        if not th.is_alive():
            assert not errors, errors
            assert time.monotonic() - t_stop < DOWN_WITHIN + 60, (
                "GET /readyz still 200 long after the server stopped")
        time.sleep(0.05)
    th.join()
    assert not errors, errors
    assert_outage_behaviour(cl, a)
    refused_before = out.refused
    accepted_before = len(out.accepted_ws) + len(out.accepted_http)
    for _ in range(3):
        out.attempt()
    if relays_while_down == "refused":
        assert out.refused - refused_before == 6, (
            "with the log (Redis) down every relay must be refused with `unavailable`; "
            "accepted ws %r http %r" % (out.accepted_ws, out.accepted_http))
    else:
        accepted = len(out.accepted_ws) + len(out.accepted_http) - accepted_before
        assert out.refused == refused_before and accepted == 6, (
            "with only RabbitMQ down every relay must be accepted (the log is up); "
            "refused %d of 6" % (out.refused - refused_before))

    # and while it comes back, until every instance is ready again
    th, errors = in_background(start)
    t_start = None
    while th.is_alive() or not all(readyz_status(h) == 200 for h in cl.hubs):
        out.attempt()
        if not th.is_alive():
            assert not errors, errors
            t_start = t_start or time.monotonic()
            assert time.monotonic() - t_start < UP_WITHIN, (
                "GET /readyz not 200 on every instance %.0fs after the server was back: %r"
                % (UP_WITHIN, [readyz_status(h) for h in cl.hubs]))
        time.sleep(0.05)
    th.join()
    assert not errors, errors
    # shown with the captured output of a failing test
    print("outage: %d attempts (x2 relays): accepted ws %d, http %d; refused %d"
          % (out.seq, len(out.accepted_ws), len(out.accepted_http), out.refused))
    out.check_delivered()
    assert_works_after(cl, a, b)
    return a, b


# ---- Redis ------------------------------------------------------------------------------------

def test_redis_restart_keeping_its_data(cl, servers):
    redis, _rabbit = servers
    h1, h2 = cl.hubs
    # an offline client with stored messages: they live in Redis and must
    # survive a restart that keeps Redis' data
    off = h1.ws()
    off_id, off_tok = off.id, off.token
    off.close()
    wait_clients(cl.hubs, lambda ids: off_id not in ids, 3, "offline client leaves")
    for i in range(3):
        h2.relay_http([off_id], '{"stored":%d}' % i)
    a, b = run_outage(cl, redis.restart_keeping_data, redis.start)
    back = h2.ws(token=off_tok, resumed=True)
    seqs = [back.recv_json(timeout=5)["body"]["stored"] for _ in range(3)]
    assert seqs == [0, 1, 2], seqs
    # and ids keep counting from where they were
    n = h1.ws()
    assert n.id > max(a.id, b.id, off_id), (n.id, a.id, b.id, off_id)


# ---- RabbitMQ -----------------------------------------------------------------------------------

def test_rabbitmq_restart(cl, servers):
    _redis, rabbit = servers
    h1, h2 = cl.hubs
    a, b = run_outage(cl, rabbit.stop, rabbit.start, relays_while_down="accepted")
    # both instances consume again: messages flow both ways (checked), and
    # a client resuming on the other instance still gets its messages
    c = h1.ws()
    c_tok = c.token
    c.close()
    wait_clients(cl.hubs, lambda ids: c.id not in ids, 3, "closed client leaves")
    a.send_text('{"type":"relay","ref":1,"receivers":[%d],"body":"stored"}' % c.id)
    assert a.recv_json()["type"] == "relayed"
    c2 = h2.ws(token=c_tok, resumed=True)
    check_message(c2.recv_json(timeout=5), a.id, "stored")
    assert set(clients_of(h1)) == set(clients_of(h2))


# ---- a hub that starts before its backplane ---------------------------------------------------

def test_hub_started_while_redis_is_down(servers, private_redis, cluster_factory):
    _redis, rabbit = servers
    late = private_redis()  # not started yet
    c = cluster_factory(redis_url="redis://127.0.0.1:%d" % late.port, amqp_url=rabbit.url,
                        presence_ttl=3, queue_message_ttl=2, queue_expiry=30)
    h = c.start_hub(ready=False)
    time.sleep(0.5)
    http_error(h.get("/readyz"), 503, "unavailable")
    with pytest.raises(HandshakeError) as ei:
        h.ws_raw()
    raw_error(ei.value, 503, "unavailable")
    r = h.post("/relay", data='{"receivers":[1],"body":1}',
               headers={"Content-Type": "application/json"})
    http_error(r, 503, "unavailable")
    http_error(h.post("/sessions"), 503, "unavailable")
    assert h.get("/healthz").status_code == 200
    late.start()
    wait_readyz(h, 200, UP_WITHIN)
    x = h.ws()
    y = h.ws()
    assert x.id != y.id
    x.send_text('{"type":"relay","ref":1,"receivers":[%d],"body":"ok"}' % y.id)
    assert x.recv_json() == {"type": "relayed", "ref": 1, "accepted": 1, "unknown": []}
    check_message(y.recv_json(), x.id, "ok")


# ---- Redis restarting empty (no persistence) ----------------------------------------------------
# Stored inboxes are lost with the data, unavoidably; but the hubs still hold
# their sessions, and must neither lose them nor hand their ids out again.
# These tests use a Redis of their own so the data loss cannot disturb the
# tests above.

@pytest.fixture
def private_redis():
    """Extra private Redis servers for one test, destroyed after its report."""
    made = []

    def make():
        r = PrivateRedis()
        made.append(r)
        return r

    yield make
    for r in made:
        r.destroy()


@pytest.fixture
def lossy(servers, private_redis, cluster_factory):
    _redis, rabbit = servers
    redis = private_redis().start()
    c = cluster_factory(redis_url=redis.url, amqp_url=rabbit.url, presence_ttl=3,
                        queue_message_ttl=2, queue_expiry=30)

    def crash_and_restart():
        redis.stop()  # no save points: nothing written, the restarted server is empty
        assert not os.path.exists(os.path.join(redis.dir, "dump.rdb"))
        for h in c.hubs:
            wait_readyz(h, 503, DOWN_WITHIN)
        redis.start()
        for h in c.hubs:
            wait_readyz(h, 200, UP_WITHIN)

    c.crash_and_restart = crash_and_restart
    c.start(2)
    return c


def test_redis_data_loss_connected_clients_stay_reachable(lossy):
    h1, h2 = lossy.hubs
    a = h1.ws()
    b = h2.ws()
    lossy.crash_and_restart()
    # presence is re-registered from the hubs' own sessions
    wait_clients(lossy.hubs, lambda ids: {a.id, b.id} <= ids, 3,
                 "connected clients listed again after Redis lost its data")
    assert_works_after(lossy, a, b)


def test_redis_data_loss_ids_not_handed_out_again(lossy):
    h1, h2 = lossy.hubs
    live = [h.ws() for h in lossy.hubs for _ in range(3)]
    live_ids = {c.id for c in live}
    lossy.crash_and_restart()
    fresh = [h.ws() for h in lossy.hubs for _ in range(3)]
    ids = [c.id for c in fresh]
    assert not set(ids) & live_ids, (
        "ids handed out after Redis lost its data collide with connected sessions: "
        "new %r, connected %r" % (ids, sorted(live_ids)))
    assert len(set(ids)) == len(ids), ids
    # nobody connected was taken over by a newcomer
    for c in live:
        c.send_text('{"type":"identity"}')
        assert c.recv_json() == {"type": "identity", "id": c.id}
