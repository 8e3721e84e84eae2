"""Distributed mode, nothing failing: three instances sharing one Redis and
one RabbitMQ (PROTOCOL.md sections 1, 2, 4, 5, 6). Ids are unique across
instances, relays cross instances (WS and HTTP), fan-out reaches every
receiver exactly once, `list` and GET /clients agree everywhere, and 2,000
concurrent connects spread over the instances get 2,000 distinct ids."""

import json
import time

import pytest

from cluster import (Cluster, clients_of, connect_many, list_of, require_backplane,
                     wait_clients)
from conftest import check_message, is_id
from wsraw import raw_members

require_backplane()


@pytest.fixture(scope="module")
def cl():
    c = Cluster(presence_ttl=6, queue_expiry=20)
    try:
        c.start(3)
        yield c
    finally:
        errors = c.cleanup()
        assert not errors, errors


def relay_ws(sender, receivers, body, ref):
    sender.send_text(json.dumps({"type": "relay", "ref": ref, "receivers": receivers,
                                 "body": body}))
    return sender.recv_json()


def test_instances_ready_and_distributed(cl):
    for h in cl.hubs:
        r = h.get("/readyz")
        assert r.status_code == 200, (h.name, r.status_code, r.text)
        assert r.json() == {"status": "ready"}, r.text


def test_ids_unique_across_instances(cl):
    clients = [h.ws(resumed=False) for h in cl.hubs for _ in range(3)]
    ids = [c.id for c in clients]
    assert len(set(ids)) == len(ids), ids
    assert all(is_id(i) for i in ids), ids
    # POST /sessions on any instance allocates from the same counter
    minted = []
    for h in cl.hubs:
        r = h.post("/sessions")
        assert r.status_code == 201, (r.status_code, r.text)
        minted.append(r.json()["id"])
    assert not set(minted) & set(ids), (minted, ids)
    assert len(set(minted)) == 3, minted
    # a token minted on instance 1 resumes on instance 3 with the same id
    tok = cl.hubs[0].post("/sessions").json()
    c = cl.hubs[2].ws(token=tok["token"], resumed=True)
    assert c.id == tok["id"]
    c.send_text('{"type":"identity"}')
    assert c.recv_json() == {"type": "identity", "id": tok["id"]}


def test_ws_to_ws_across_instances(cl):
    h1, _h2, h3 = cl.hubs
    a = h1.ws()
    c = h3.ws()
    rep = relay_ws(a, [c.id], {"text": "hi from 1", "n": 12345678901234567890}, "r1")
    assert rep == {"type": "relayed", "ref": "r1", "accepted": 1, "unknown": []}
    m = c.recv_json()
    check_message(m, a.id, {"text": "hi from 1", "n": 12345678901234567890})
    # and back, without a ref: no reply to the sender
    c.send_text('{"type":"relay","receivers":[%d],"body":"back"}' % a.id)
    m2 = a.recv_json()
    check_message(m2, c.id, "back")
    assert m2["id"] != m["id"]


def test_body_bytes_survive_crossing_instances(cl):
    h1, h2, _h3 = cl.hubs
    a = h1.ws()
    b = h2.ws()
    body = '{"big":123456789012345678901234567890,"esc":"\\u0000\\ud83d\\ude00\\"\\\\","f":1.0e+2}'
    a.send_text('{"type":"relay","receivers":[%d],"body":%s}' % (b.id, body))
    raw = b.recv_text()
    assert raw_members(raw)["body"] == body.encode(), raw


def test_big_bodies_cross_instances_whole_and_in_order(cl):
    # four bodies of almost 1 MiB (the default --max-body-bytes is 1 MiB) sent
    # back to back: each is logged in Redis (megabyte-sized MULTI/EXEC writes)
    # and pushed through RabbitMQ; all arrive whole, in order, seq 1 to 4
    h1, h2, _h3 = cl.hubs
    a = h1.ws()
    b = h2.ws()
    bodies = ['"%s"' % (chr(ord("a") + i) * 1_000_000) for i in range(4)]
    for body in bodies:
        a.send_text('{"type":"relay","receivers":[%d],"body":%s}' % (b.id, body))
    for i, body in enumerate(bodies):
        raw = b.recv_text(timeout=20)
        members = raw_members(raw)
        assert members["body"] == body.encode(), (i, len(raw))
        assert members["seq"] == str(i + 1).encode(), raw[:200]
    b.expect_silence(0.5)


def test_order_preserved_across_instances(cl):
    h1, h2, _h3 = cl.hubs
    a = h1.ws()
    b = h2.ws()
    n = 200
    for i in range(n):
        a.send_text('{"type":"relay","receivers":[%d],"body":{"seq":%d}}' % (b.id, i))
    seqs = [b.recv_json(timeout=10)["body"]["seq"] for _ in range(n)]
    assert seqs == list(range(n)), seqs
    b.expect_silence(0.5)


def test_http_relay_to_ws_on_other_instance(cl):
    h1, _h2, h3 = cl.hubs
    c = h3.ws()
    r = h1.relay_http([c.id], '{"svc":true}')
    doc = r.json()
    assert set(doc) == {"id", "accepted", "unknown"}, doc
    assert doc["accepted"] == 1 and doc["unknown"] == [], doc
    m = c.recv_json()
    check_message(m, 0, {"svc": True})
    assert m["id"] == doc["id"], (m, doc)
    # with from
    a = h1.ws()
    r = h1.relay_http([c.id], '"from a"', frm=a.id)
    m = c.recv_json()
    check_message(m, a.id, "from a")
    assert m["id"] == r.json()["id"]


def test_fanout_over_three_instances_exactly_once(cl):
    receivers = [h.ws() for h in cl.hubs for _ in range(4)]
    sender = cl.hubs[0].ws()
    ids = [c.id for c in receivers]
    unknown = 10**15
    # duplicates in the list, the sender itself, and one never-assigned id
    rlist = ids + ids[:3] + [sender.id, unknown]
    # the sender gets the reply and its own copy, in either order
    first = relay_ws(sender, rlist, {"fan": 1}, 7)
    second = sender.recv_json()
    rep, own = (first, second) if first["type"] == "relayed" else (second, first)
    assert rep == {"type": "relayed", "ref": 7, "accepted": len(ids) + 1, "unknown": [unknown]}
    got = [c.recv_json(timeout=5) for c in receivers]
    for m in got + [own]:
        check_message(m, sender.id, {"fan": 1})
    assert len({m["id"] for m in got + [own]}) == 1, got
    # the same through HTTP on instance 2
    r = cl.hubs[1].relay_http(ids + ids, '{"fan":2}')
    assert r.json()["accepted"] == len(ids) and r.json()["unknown"] == [], r.json()
    got2 = [c.recv_json(timeout=5) for c in receivers]
    for m in got2:
        check_message(m, 0, {"fan": 2})
        assert m["id"] == r.json()["id"]
    # exactly once: nothing else arrives anywhere
    time.sleep(1.0)
    for c in receivers + [sender]:
        c.expect_silence(0.05)


def test_unknown_and_offline_receivers_across_instances(cl):
    h1, h2, h3 = cl.hubs
    off = h1.ws()
    off_id, off_tok = off.id, off.token
    off.close()
    wait_clients(cl.hubs, lambda ids: off_id not in ids, 5, "id %d gone after its close" % off_id)
    a = h2.ws()
    last = h3.post("/sessions").json()["id"]
    rep = relay_ws(a, [off_id, last + 1000, last + 1], {"stored": 1}, "u")
    # ids above the last one handed out (by any instance) are unknown; a
    # known id whose client is offline is accepted and stored
    assert rep["type"] == "relayed" and rep["ref"] == "u", rep
    assert sorted(rep["unknown"]) == [last + 1, last + 1000], rep
    assert rep["accepted"] == 1, rep
    back = h3.ws(token=off_tok, resumed=True)
    m = back.recv_json()
    check_message(m, a.id, {"stored": 1})
    back.expect_silence(0.5)


def test_list_and_clients_agree_on_every_instance(cl):
    per = [[h.ws() for _ in range(3)] for h in cl.hubs]
    everyone = {c.id for cs in per for c in cs}
    snap = wait_clients(cl.hubs, lambda ids: everyone <= ids, 5,
                        "all %d new clients on every instance" % len(everyone))
    # other tests' leftovers are closed by now, but allow them to leave
    final = wait_clients(cl.hubs, lambda ids: ids == everyone, 5,
                         "exactly the live clients; first snapshot %r" % snap)
    for cs in per:
        for c in cs:
            assert set(list_of(c)) == everyone - {c.id}, (c.id, sorted(everyone))
    for h in cl.hubs:
        assert clients_of(h) == sorted(everyone)
    del final
    # a close on instance 2 is seen everywhere right away (checked out, not
    # left to expire: allow much less than the presence TTL of 6 s)
    gone = per[1][0]
    gone_id = gone.id
    gone.close()
    t0 = time.monotonic()
    wait_clients(cl.hubs, lambda ids: gone_id not in ids, 2.0, "id %d leave" % gone_id)
    assert time.monotonic() - t0 < 2.0
    for c in (per[0][0], per[2][2]):
        assert gone_id not in list_of(c)


def test_presence_survives_refresh_period(cl):
    # presence is refreshed every TTL/3: clients stay listed well past one TTL
    a = cl.hubs[0].ws()
    b = cl.hubs[2].ws()
    time.sleep(cl.presence_ttl + 2)
    for h in cl.hubs:
        ids = set(clients_of(h))
        assert {a.id, b.id} <= ids, (h.name, sorted(ids))
    assert b.id in list_of(a)


def test_2000_concurrent_connects_get_distinct_ids(cl):
    n = 2000
    before = set(clients_of(cl.hubs[0]))
    ports = [h.port for h in cl.hubs]
    t0 = time.monotonic()
    hellos, errors, closer = connect_many(ports, n, concurrency=200, timeout=30)
    try:
        elapsed = time.monotonic() - t0
        assert not errors, "%d of %d connects failed; first: %r" % (len(errors), n, errors[:3])
        ids = [h["id"] for h in hellos]
        assert len(ids) == n
        assert len(set(ids)) == n, "duplicate ids among %d hellos" % n
        assert all(is_id(i) for i in ids)
        assert not set(ids) & before
        assert all(h["resumed"] is False for h in hellos)
        # everyone is listed on every instance
        wait_clients(cl.hubs, lambda got: set(ids) <= got, 10,
                     "all %d concurrent clients (connected in %.1fs)" % (n, elapsed))
    finally:
        closer()
    wait_clients(cl.hubs, lambda got: not (got & set(ids)), 15,
                 "the %d clients leave after their close" % n)
