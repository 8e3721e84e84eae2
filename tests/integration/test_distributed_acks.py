"""Distributed mode, acknowledgements (PROTOCOL.md v2 section 5) against a
private Redis (exact command counts) and the shared RabbitMQ: the acks that
many sessions send at once are batched (one EVALSHA per loop turn, not one
per ack) and every one is applied exactly as far as its client acked (the
log's `acked` per id, checked with HGET); an ack while Redis is down is
answered with `unavailable` and its ref, as before the batching."""

import json
import os
import signal
import time

import pytest

from cluster import AMQP_URL, Cluster, PrivateRedis, Redis, require_backplane, wait_readyz

require_backplane()

N_RECEIVERS = 200  # sessions acking at once (a relay takes up to 255 receivers)
MSGS = 3
DOWN_WITHIN = 15.0  # the hub notices a dead Redis (its connection drops at once)


@pytest.fixture(scope="module")
def redis():
    r = PrivateRedis()
    r.start()
    yield r
    r.destroy()


@pytest.fixture
def cl(redis):
    c = Cluster(redis_url=redis.url, amqp_url=AMQP_URL)
    try:
        c.start(2)
        yield c
    finally:
        c.cleanup()


def evalsha_calls(url):
    with Redis(url) as r:
        stats = r.cmd("INFO", "commandstats").decode()
    for line in stats.splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def log_meta(url, prefix, uid):
    with Redis(url) as r:
        acked = r.cmd("HGET", "%s:logm:%d" % (prefix, uid), "acked")
        left = r.cmd("LLEN", "%s:log:%d" % (prefix, uid))
    return int(acked or 0), int(left)


def test_acks_of_many_sessions_in_one_turn_are_all_applied(cl, redis):
    h1, h2 = cl.hubs
    receivers = [h2.ws() for _ in range(N_RECEIVERS)]
    sender = h1.ws()
    ids = [c.id for c in receivers]
    for k in range(MSGS):
        sender.send_text(json.dumps({"type": "relay", "ref": k, "receivers": ids,
                                     "body": {"k": k}}))
        assert sender.recv_json()["accepted"] == N_RECEIVERS
    for c in receivers:
        seqs = [c.recv_json(timeout=10)["seq"] for _ in range(MSGS)]
        assert seqs == list(range(1, MSGS + 1)), seqs
    # every other session acks only part of what it got: a batched ack must
    # never acknowledge more than its own client did
    want = {c.id: (MSGS if i % 2 else MSGS - 1) for i, c in enumerate(receivers)}
    before = evalsha_calls(redis.url)
    # h2 is stopped while the acks are sent, so they are all waiting when its
    # loop turns again: one turn reads them all (deterministic, whatever the
    # machine's load)
    os.kill(h2.proc.pid, signal.SIGSTOP)
    try:
        for c in receivers:
            c.send_text('{"type":"ack","seq":%d,"ref":"a%d"}' % (want[c.id], c.id))
        time.sleep(0.3)
    finally:
        os.kill(h2.proc.pid, signal.SIGCONT)
    for c in receivers:
        assert c.recv_json(timeout=10) == {"type": "acked", "ref": "a%d" % c.id,
                                           "seq": want[c.id]}
    calls = evalsha_calls(redis.url) - before
    for uid, seq in want.items():
        assert log_meta(redis.url, cl.prefix, uid) == (seq, MSGS - seq), uid
    # one script per loop turn of acks (it was one per ack, 200, before); a
    # few more are the hubs' own periodic scripts (presence refresh)
    assert calls <= 5, "%d EVALSHA for %d acks" % (calls, N_RECEIVERS)
    # the same sessions repeat and extend their acks at once: still exact
    for c in receivers:
        c.send_text('{"type":"ack","seq":%d,"ref":"b"}' % MSGS)
    for c in receivers:
        assert c.recv_json(timeout=10) == {"type": "acked", "ref": "b", "seq": MSGS}
    for uid in ids:
        assert log_meta(redis.url, cl.prefix, uid) == (MSGS, 0), uid
    for c in receivers + [sender]:
        c.close()


def test_ack_while_redis_is_down_reports_its_failure(cl, redis):
    h1, h2 = cl.hubs
    a = h1.ws()
    bs = [h2.ws() for _ in range(5)]
    a.send_text(json.dumps({"type": "relay", "ref": 1, "receivers": [b.id for b in bs],
                            "body": "x"}))
    assert a.recv_json()["accepted"] == len(bs)
    for b in bs:
        assert b.recv_json(timeout=10)["seq"] == 1
    redis.stop()
    try:
        wait_readyz(h2, 503, DOWN_WITHIN)
        for b in bs:  # at once: one batch, and every caller gets the failure
            b.send_text('{"type":"ack","seq":1,"ref":"d%d"}' % b.id)
        for b in bs:
            rep = b.recv_json(timeout=10)
            assert rep["type"] == "error" and rep["code"] == "unavailable", rep
            assert rep.get("ref") == "d%d" % b.id, rep
            assert "not acknowledged" in rep.get("message", ""), rep
    finally:
        redis.start()
    wait_readyz(h2, 200, 30)
    # after the outage acks work again (the private Redis came back empty:
    # its log is gone, so nothing is left to trim; the ack is still answered)
    t0 = time.monotonic()
    while True:
        bs[0].send_text('{"type":"ack","seq":1,"ref":"again"}')
        rep = bs[0].recv_json(timeout=10)
        if rep.get("type") == "acked" or time.monotonic() - t0 > 10:
            break
        time.sleep(0.2)
    assert rep == {"type": "acked", "ref": "again", "seq": 1}, rep
    for c in bs + [a]:
        c.close()
