"""Distributed mode, clients moving and instances dying (PROTOCOL.md sections
1, 2, 5, 6): an offline receiver resumes on another instance and gets what
was stored, in order; a resume on another instance takes the session over
(4409); after kill -9 of an instance its clients leave every online list
within one presence TTL, and messages sent to them (before, during and after
the kill) reach them once they resume elsewhere.

Small TTLs keep this quick: presence 3 s, queue message TTL 2 s, so a
message stuck in a dead instance's queue is re-routed within about 5 s."""

import json
import time

import pytest

from cluster import (Cluster, cluster_factory, clients_of, list_of,  # noqa: F401 (fixture)
                     require_backplane, wait_clients)
from conftest import check_message
from wsraw import ConnectionClosed

require_backplane()

PRESENCE_TTL = 3
QUEUE_MSG_TTL = 2
SLACK = 4.0


@pytest.fixture(scope="module")
def cl():
    c = Cluster(presence_ttl=PRESENCE_TTL, queue_message_ttl=QUEUE_MSG_TTL, queue_expiry=10)
    try:
        c.base = c.start(3)
        yield c
    finally:
        errors = c.cleanup()
        assert not errors, errors


def relay_ok(sender, receivers, body, ref):
    sender.send_text(json.dumps({"type": "relay", "ref": ref, "receivers": receivers,
                                 "body": body}))
    rep = sender.recv_json()
    assert rep == {"type": "relayed", "ref": ref, "accepted": len(set(receivers)),
                   "unknown": []}, (body, rep)


def collect(c, want, timeout, already=()):
    """Reads messages on c until every body in `want` (list of JSON-able
    values) arrived at least once, dropping duplicates by message id as the
    contract lets clients do. Returns the distinct messages in arrival order;
    fails with what is missing at the deadline."""
    want_keys = {json.dumps(b, sort_keys=True) for b in want}
    seen_ids = set()
    out = []
    have = set()
    for m in already:
        if m["id"] not in seen_ids:
            seen_ids.add(m["id"])
            out.append(m)
            have.add(json.dumps(m["body"], sort_keys=True))
    deadline = time.monotonic() + timeout
    while not want_keys <= have:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            missing = sorted(want_keys - have)
            raise AssertionError("after %.1fs, %d of %d accepted messages never arrived: %s"
                                 % (timeout, len(missing), len(want_keys), missing[:20]))
        try:
            m = c.recv_json(timeout=remaining)
        except AssertionError as e:
            if "timed out" in str(e):
                continue
            raise
        assert m.get("type") == "message", m
        if m["id"] in seen_ids:
            continue
        seen_ids.add(m["id"])
        out.append(m)
        key = json.dumps(m["body"], sort_keys=True)
        assert key in want_keys, "a message nobody sent to this client: %r" % m
        have.add(key)
    return out


# ---- resume and takeover across instances ---------------------------------------------------

def test_offline_receiver_resumes_on_other_instance_in_order(cl):
    h1, h2, h3 = cl.base
    b = h1.ws()
    bid, btok = b.id, b.token
    b.close()
    wait_clients(cl.base, lambda ids: bid not in ids, 3, "id %d leave after close" % bid)
    a = h2.ws()
    for i in range(5):
        relay_ok(a, [bid], {"seq": i}, i)
    r = h3.relay_http([bid], '{"seq":5}')
    assert r.json()["accepted"] == 1, r.json()
    relay_ok(a, [bid], {"seq": 6}, 6)
    # resume on a third instance: the stored messages come right after
    # hello, oldest first, before anything newer
    b2 = h3.ws(token=btok, resumed=True)
    assert b2.id == bid
    relay_ok(a, [bid], {"seq": 7}, 7)
    seqs = []
    for k in range(8):
        m = b2.recv_json(timeout=5)
        check_message(m, a.id if m["body"]["seq"] != 5 else 0, seq=k + 1)
        seqs.append(m["body"]["seq"])
    assert seqs == list(range(8)), seqs
    b2.expect_silence(0.5)
    # acknowledged means gone: resuming again (elsewhere) brings nothing back
    b2.send_text('{"type":"ack","seq":8,"ref":"all"}')
    assert b2.recv_json() == {"type": "acked", "ref": "all", "seq": 8}
    b2.close()
    b3 = h1.ws(token=btok, resumed=True)
    b3.expect_silence(1.0)
    b3.send_text('{"type":"identity"}')
    assert b3.recv_json() == {"type": "identity", "id": bid}


def test_takeover_across_instances(cl):
    h1, h2, h3 = cl.base
    x = h1.ws()
    obs = h3.ws()
    x2 = h2.ws(token=x.token, resumed=True)
    assert x2.id == x.id
    code, msgs = x.wait_close(timeout=5)
    assert code == 4409, (code, msgs)
    x2.send_text('{"type":"identity"}')
    assert x2.recv_json() == {"type": "identity", "id": x.id}
    relay_ok(obs, [x.id], {"after": "takeover"}, "t1")
    check_message(x2.recv_json(), obs.id, {"after": "takeover"})
    # the old instance's checkout must not remove the new holder: still
    # listed everywhere, also after a full presence TTL
    wait_clients(cl.base, lambda ids: x.id in ids, 2, "id %d listed after takeover" % x.id)
    time.sleep(PRESENCE_TTL + 1)
    for h in cl.base:
        assert x.id in clients_of(h), h.name
    assert x.id in list_of(obs)
    relay_ok(obs, [x.id], {"later": 1}, "t2")
    check_message(x2.recv_json(), obs.id, {"later": 1})
    x2.expect_silence(0.3)


def test_takeover_back_and_forth(cl):
    h1, h2, h3 = cl.base
    obs = h3.ws()
    x = h1.ws()
    tok = x.token
    x2 = h2.ws(token=tok, resumed=True)
    assert x.wait_close(timeout=5)[0] == 4409
    x3 = h1.ws(token=x2.token, resumed=True)
    code, msgs = x2.wait_close(timeout=5)
    assert code == 4409, (code, msgs)
    relay_ok(obs, [x.id], {"to": "third"}, 1)
    check_message(x3.recv_json(), obs.id, {"to": "third"})
    r = h2.relay_http([x.id], '{"to":"third","via":"http"}')
    assert r.json()["accepted"] == 1
    check_message(x3.recv_json(), 0, {"to": "third", "via": "http"})


# ---- kill -9 ------------------------------------------------------------------------------------

def test_kill9_clients_leave_every_list_within_presence_ttl(cl):
    victim = cl.start_hub()
    xs = [victim.ws() for _ in range(3)]
    ids = {x.id for x in xs}
    obs = [h.ws() for h in cl.base]
    wait_clients(cl.base, lambda got: ids <= got, 3, "victim's clients listed")
    victim.kill()
    t0 = time.monotonic()
    wait_clients(cl.base, lambda got: not (ids & got), PRESENCE_TTL + SLACK,
                 "the killed instance's clients %r leave" % sorted(ids))
    elapsed = time.monotonic() - t0
    for o in obs:
        assert not (ids & set(list_of(o))), sorted(ids)
    assert elapsed <= PRESENCE_TTL + SLACK, elapsed
    # the survivors' own clients stay
    assert {o.id for o in obs} <= set(clients_of(cl.base[0]))


def test_kill9_messages_reach_clients_resuming_elsewhere(cl):
    h1, h2, h3 = cl.base
    victim = cl.start_hub()
    early = victim.ws()   # resumes at once on h3, while its route still names the victim
    late = victim.ws()    # resumes on h2 only after its presence expired
    a = h1.ws()
    relay_ok(a, [early.id, late.id], {"n": "before"}, "pre")
    for c in (early, late):  # acknowledged: not pushed again after the resume
        check_message(c.recv_json(), a.id, {"n": "before"}, seq=1)
        c.send_text('{"type":"ack","seq":1,"ref":"pre"}')
        assert c.recv_json() == {"type": "acked", "ref": "pre", "seq": 1}

    victim.kill()
    t_kill = time.monotonic()
    want_early, want_late = [], []
    # right after the kill: the routes still point to the dead instance
    for i in range(3):
        body = {"n": "dead-route", "i": i}
        relay_ok(a, [early.id, late.id], body, "d%d" % i)
        want_early.append(body)
        want_late.append(body)
    r = h2.relay_http([early.id, late.id], '{"n":"dead-route-http"}')
    assert r.json()["accepted"] == 2, r.json()
    want_early.append({"n": "dead-route-http"})
    want_late.append({"n": "dead-route-http"})

    early2 = h3.ws(token=early.token, resumed=True)
    assert early2.id == early.id
    body = {"n": "after-early-resume"}
    relay_ok(a, [early.id, late.id], body, "e")
    want_early.append(body)
    want_late.append(body)

    # wait for `late` to drop out of presence, then send more: stored
    wait_clients(cl.base, lambda got: late.id not in got, PRESENCE_TTL + SLACK,
                 "the killed instance's client %d leave" % late.id)
    for i in range(2):
        body = {"n": "offline", "i": i}
        relay_ok(a, [late.id], body, "o%d" % i)
        want_late.append(body)
    late2 = h2.ws(token=late.token, resumed=True)
    assert late2.id == late.id

    budget = PRESENCE_TTL + QUEUE_MSG_TTL + SLACK
    got_early = collect(early2, want_early, budget + SLACK - (time.monotonic() - t_kill))
    got_late = collect(late2, want_late, budget + SLACK)
    for m in got_early + got_late:
        check_message(m, a.id if m["body"] != {"n": "dead-route-http"} else 0)
    # once re-routed, nothing more shows up but (allowed) duplicates
    time.sleep(QUEUE_MSG_TTL + 1)
    for c in (early2, late2):
        extra = []
        try:
            while True:
                extra.append(c.recv_json(timeout=0.2))
        except AssertionError as e:
            if "timed out" not in str(e):
                raise
        for m in extra:
            assert m["type"] == "message", m
            assert m["id"] in {x["id"] for x in got_early + got_late}, (
                "unexpected message after re-routing: %r" % m)


def test_kill9_mid_burst_every_accepted_message_arrives(cl):
    h1, h2, _h3 = cl.base
    victim = cl.start_hub()
    x = victim.ws()
    a = h1.ws()
    # a steady stream (one relay every 2 ms); the victim dies while some
    # messages have reached x, some are in its queue or in its memory, and
    # some are still being published
    n, kill_at = 300, 150
    accepted = []
    for i in range(n):
        a.send_text('{"type":"relay","ref":%d,"receivers":[%d],"body":{"seq":%d}}' % (i, x.id, i))
        if i == kill_at:
            victim.kill()
        time.sleep(0.002)
    deadline = time.monotonic() + 15
    replies = 0
    while replies < n:
        rep = a.recv_json(timeout=max(0.1, deadline - time.monotonic()))
        replies += 1
        if rep["type"] == "relayed":
            assert rep["accepted"] == 1 and rep["unknown"] == [], rep
            accepted.append(rep["ref"])
        else:
            # a refusal is allowed only as `unavailable` (nothing accepted)
            assert rep["type"] == "error" and rep["code"] == "unavailable", rep
    assert len(accepted) >= kill_at, "only %d of %d relays accepted" % (len(accepted), n)
    # what reached x before the kill counts as delivered
    before = []
    try:
        _code, msgs = x.wait_close(timeout=5)
    except ConnectionClosed:
        msgs = []
    for msg in msgs:
        m = json.loads(msg.payload)
        assert m["type"] == "message", m
        before.append(m)
    x2 = h2.ws(token=x.token, resumed=True)
    assert before, "nothing reached x before the kill: the test did not kill mid-delivery"
    got = collect(x2, [{"seq": i} for i in accepted], PRESENCE_TTL + QUEUE_MSG_TTL + 2 * SLACK,
                  already=before)
    for m in got:
        check_message(m, a.id)
    assert {m["body"]["seq"] for m in got} >= set(accepted)


def test_resume_after_kill9_survives_its_own_takeover_signal(cluster_factory):
    """A resume while the route still names a dead instance sends that
    instance a takeover signal, which nobody consumes: it expires with the
    queue message TTL (contract v2 has no stranded queue; v1 dead-lettered
    it to every instance). Either way it must never close the session that
    sent it."""
    c = cluster_factory(presence_ttl=PRESENCE_TTL, queue_message_ttl=QUEUE_MSG_TTL,
                        queue_expiry=10)
    survivor = c.start_hub()
    victim = c.start_hub()
    x = victim.ws()
    a = survivor.ws()
    victim.kill()
    x2 = survivor.ws(token=x.token, resumed=True)  # route still names the victim
    # past the queue message TTL, the signal has been dead-lettered and consumed
    try:
        x2.expect_silence(QUEUE_MSG_TTL + 2.0)
    except ConnectionClosed as e:
        raise AssertionError("the resumed session was closed (code %r) by the takeover "
                             "signal it sent to the dead instance" % e.code)
    x2.send_text('{"type":"identity"}')
    assert x2.recv_json() == {"type": "identity", "id": x.id}
    a.send_text('{"type":"relay","ref":1,"receivers":[%d],"body":"still here"}' % x.id)
    assert a.recv_json() == {"type": "relayed", "ref": 1, "accepted": 1, "unknown": []}
    check_message(x2.recv_json(), a.id, "still here")
