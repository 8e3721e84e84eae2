"""WebSocket protocol: hello, identity, list, relay, ping, message fields,
byte-exact body forwarding (PROTOCOL.md section 2)."""

import asyncio
import json

import pytest
import websockets

from conftest import DEFAULT_LIMITS, HOST, check_hello, check_message, now_ms
from wsraw import OP_TEXT, encode_frame, raw_members


# ---- hello and identity ----------------------------------------------------

def test_hello_is_first_frame_with_all_fields(hub):
    c = hub.ws_raw()
    msg = c.recv_message()
    assert msg.opcode == OP_TEXT
    hello = json.loads(msg.payload)
    check_hello(hello, limits=DEFAULT_LIMITS)
    assert hello["resumed"] is False
    # nothing else is sent spontaneously
    c.expect_silence(0.3)


def test_ids_start_at_one_and_are_distinct(hub_factory):
    h = hub_factory()
    a = h.ws(resumed=False)
    b = h.ws(resumed=False)
    c = h.ws(resumed=False)
    assert a.id == 1, a.hello
    assert [a.id, b.id, c.id] == [1, 2, 3]
    assert len({a.token, b.token, c.token}) == 3


def test_hello_limits_follow_configuration(hub_factory):
    h = hub_factory("--max-receivers", "10", "--max-body-bytes", "5000")
    c = h.ws()
    check_hello(c.hello, limits={"max_receivers": 10, "max_body_bytes": 5000})


def test_identity(hub):
    a = hub.ws()
    b = hub.ws()
    a.send_text('{"type":"identity"}')
    assert a.recv_json() == {"type": "identity", "id": a.id}
    b.send_text('{"type":"identity"}')
    assert b.recv_json() == {"type": "identity", "id": b.id}
    assert a.id != b.id


@pytest.mark.parametrize("ref_raw, ref", [('"abc"', "abc"), ("17", 17), ('""', "")])
def test_identity_echoes_ref(hub, ref_raw, ref):
    a = hub.ws()
    a.send_text('{"type":"identity","ref":%s}' % ref_raw)
    r = a.recv_json()
    assert r == {"type": "identity", "id": a.id, "ref": ref}
    assert type(r["ref"]) is type(ref)


def test_unknown_fields_are_ignored(hub):
    a = hub.ws()
    a.send_text('{"type":"identity","extra":{"x":[1,2]},"id":999}')
    assert a.recv_json() == {"type": "identity", "id": a.id}
    a.send_text('{"zzz":1,"type":"ping","body":2}')
    assert a.recv_json() == {"type": "pong"}


# ---- ping --------------------------------------------------------------------

def test_ping_pong(hub):
    a = hub.ws()
    a.send_text('{"type":"ping"}')
    assert a.recv_json() == {"type": "pong"}


def test_ping_with_ref(hub):
    a = hub.ws()
    a.send_text('{"type":"ping","ref":"p-1"}')
    assert a.recv_json() == {"type": "pong", "ref": "p-1"}
    a.send_text('{"type":"ping","ref":5}')
    assert a.recv_json() == {"type": "pong", "ref": 5}


def test_many_requests_answered_in_order(hub):
    a = hub.ws()
    n = 100
    a.send_raw(b"".join(encode_frame(
        OP_TEXT, '{"type":"ping","ref":%d}' % i) for i in range(n)))
    for i in range(n):
        assert a.recv_json() == {"type": "pong", "ref": i}


# ---- list ----------------------------------------------------------------------

def test_list_excludes_requester_and_is_ascending(hub_factory):
    h = hub_factory()
    a = h.ws()
    b = h.ws()
    c = h.ws()
    d = h.ws()
    a.send_text('{"type":"list"}')
    assert a.recv_json() == {"type": "list", "ids": sorted([b.id, c.id, d.id])}
    c.send_text('{"type":"list","ref":"L"}')
    assert c.recv_json() == {"type": "list", "ids": sorted([a.id, b.id, d.id]), "ref": "L"}


def test_list_alone_is_empty(hub_factory):
    h = hub_factory()
    a = h.ws()
    a.send_text('{"type":"list"}')
    assert a.recv_json() == {"type": "list", "ids": []}


def test_list_drops_cleanly_closed_client_immediately(hub_factory):
    h = hub_factory()
    a = h.ws()
    b = h.ws()
    c = h.ws()
    code = b.close()
    assert code == 1000, code
    a.send_text('{"type":"list"}')
    assert a.recv_json() == {"type": "list", "ids": [c.id]}


def test_list_matches_get_clients(hub_factory):
    h = hub_factory()
    a = h.ws()
    b = h.ws()
    a.send_text('{"type":"list"}')
    assert a.recv_json()["ids"] == [b.id]
    r = h.get("/clients")
    assert r.status_code == 200
    assert r.json() == {"ids": sorted([a.id, b.id])}


# ---- relay -----------------------------------------------------------------------

def test_relay_without_ref_gets_no_reply(hub):
    a = hub.ws()
    b = hub.ws()
    t0 = now_ms()
    a.send_text('{"type":"relay","receivers":[%d],"body":{"text":"hi"}}' % b.id)
    m = b.recv_json()
    t1 = now_ms()
    check_message(m, a.id, {"text": "hi"})
    assert t0 - 250 <= m["ts"] <= t1 + 250, (t0, m["ts"], t1)
    # a gets nothing for the relay: its next frame is the pong of a later ping
    a.send_text('{"type":"ping"}')
    assert a.recv_json() == {"type": "pong"}


@pytest.mark.parametrize("ref_raw, ref", [('"r1"', "r1"), ("42", 42), ("-3.5", -3.5)])
def test_relay_with_ref(hub, ref_raw, ref):
    a = hub.ws()
    b = hub.ws()
    a.send_text('{"type":"relay","ref":%s,"receivers":[%d],"body":1}' % (ref_raw, b.id))
    r = a.recv_json()
    assert r == {"type": "relayed", "ref": ref, "accepted": 1, "unknown": []}
    assert type(r["ref"]) is type(ref)
    check_message(b.recv_json(), a.id, 1)


def test_relay_to_several_shares_one_message_id(hub):
    a = hub.ws()
    b = hub.ws()
    c = hub.ws()
    a.send_text('{"type":"relay","ref":"x","receivers":[%d,%d],"body":"one"}' % (b.id, c.id))
    assert a.recv_json() == {"type": "relayed", "ref": "x", "accepted": 2, "unknown": []}
    mb = b.recv_json()
    mc = c.recv_json()
    check_message(mb, a.id, "one")
    check_message(mc, a.id, "one")
    assert mb["id"] == mc["id"]
    assert mb["ts"] == mc["ts"]
    a.send_text('{"type":"relay","receivers":[%d,%d],"body":"two"}' % (b.id, c.id))
    mb2 = b.recv_json()
    mc2 = c.recv_json()
    assert mb2["body"] == mc2["body"] == "two"
    assert mb2["id"] == mc2["id"] != mb["id"]


def test_message_ids_unique_across_relays(hub):
    a = hub.ws()
    b = hub.ws()
    for i in range(20):
        a.send_text('{"type":"relay","receivers":[%d],"body":%d}' % (b.id, i))
    ids = []
    for i in range(20):
        m = b.recv_json()
        check_message(m, a.id, i)
        ids.append(m["id"])
    assert len(set(ids)) == 20


def test_duplicate_receivers_delivered_once(hub):
    a = hub.ws()
    b = hub.ws()
    a.send_text('{"type":"relay","ref":1,"receivers":[%d,%d,%d],"body":"d"}' % (b.id, b.id, b.id))
    assert a.recv_json() == {"type": "relayed", "ref": 1, "accepted": 1, "unknown": []}
    check_message(b.recv_json(), a.id, "d")
    b.send_text('{"type":"ping"}')
    assert b.recv_json() == {"type": "pong"}


def test_sender_may_include_itself(hub):
    a = hub.ws()
    b = hub.ws()
    a.send_text('{"type":"relay","ref":"s","receivers":[%d,%d],"body":[1]}' % (a.id, b.id))
    got = [a.recv_json(), a.recv_json()]
    got.sort(key=lambda f: f["type"])
    assert got[0]["type"] == "message"
    check_message(got[0], a.id, [1])
    assert got[1] == {"type": "relayed", "ref": "s", "accepted": 2, "unknown": []}
    mb = b.recv_json()
    check_message(mb, a.id, [1])
    assert mb["id"] == got[0]["id"]


def test_only_self(hub):
    a = hub.ws()
    a.send_text('{"type":"relay","receivers":[%d],"body":"me"}' % a.id)
    check_message(a.recv_json(), a.id, "me")


def test_unknown_receivers_listed(hub):
    a = hub.ws()
    b = hub.ws()
    big = 2**64 - 1
    a.send_text('{"type":"relay","ref":"u","receivers":[%d,%d,%d],"body":0}' % (b.id, 999999, big))
    r = a.recv_json()
    assert set(r) == {"type", "ref", "accepted", "unknown"}
    assert r["type"] == "relayed" and r["ref"] == "u" and r["accepted"] == 1
    assert sorted(r["unknown"]) == [999999, big]
    check_message(b.recv_json(), a.id, 0)


def test_all_unknown_is_accepted_zero(hub):
    a = hub.ws()
    a.send_text('{"type":"relay","ref":"z","receivers":[987654321],"body":0}')
    assert a.recv_json() == {"type": "relayed", "ref": "z", "accepted": 0, "unknown": [987654321]}


def test_known_offline_receiver_counts_as_accepted(hub):
    a = hub.ws()
    b = hub.ws()
    bid = b.id
    b.close()
    a.send_text('{"type":"relay","ref":"o","receivers":[%d],"body":"later"}' % bid)
    assert a.recv_json() == {"type": "relayed", "ref": "o", "accepted": 1, "unknown": []}


def test_max_receivers_exactly_accepted(hub):
    a = hub.ws()
    b = hub.ws()
    receivers = [b.id] + [10**9 + i for i in range(254)]
    assert len(receivers) == 255
    a.send_text(json.dumps({"type": "relay", "ref": "m", "receivers": receivers, "body": "x"}))
    r = a.recv_json()
    assert r["type"] == "relayed" and r["accepted"] == 1 and r["ref"] == "m"
    assert sorted(r["unknown"]) == receivers[1:]
    check_message(b.recv_json(), a.id, "x")


def test_order_preserved_sender_to_receiver(hub):
    a = hub.ws()
    b = hub.ws()
    n = 200
    a.send_raw(b"".join(encode_frame(
        OP_TEXT, '{"type":"relay","receivers":[%d],"body":%d}' % (b.id, i)) for i in range(n)))
    for i in range(n):
        check_message(b.recv_json(), a.id, i)


# ---- body forwarded byte-exact --------------------------------------------------

EXACT_BODIES = [
    b"123456789012345678901234567890",
    b"-123456789012345678901234567890.000000000000000000001e-400",
    b"1E+400",
    b"-0.0",
    b'"\\u0000"',
    b'"a\\u0000b\\u001f\\\\\\"\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\uFFFF"',
    '"h\u00e9llo w\u00f6rld \u65e5\u672c \U0001F600"'.encode("utf-8"),
    b'{"a" : [ 1 , 2.50 , true , false , null ] ,\n\t"b" :{ } , "c":[ ]  }',
    b'[ {"x":{"y":{"z":[[[["deep"]]]]}}} , 18446744073709551616 ]',
    b'{"dup":1,"dup":2}',
    b"null",
    b"true",
    b"false",
    b"0",
    b'""',
    b"[]",
    b"{}",
    b'{"type":"message","from":1,"id":"fake"}',
]


@pytest.mark.parametrize("body", EXACT_BODIES, ids=range(len(EXACT_BODIES)))
def test_body_forwarded_byte_exact(hub, body):
    a = hub.ws()
    b = hub.ws()
    frame = b'{"type":"relay","receivers":[%d],"body":  %s  ,"ref":"e"}' % (b.id, body)
    a.send_text(frame)
    assert a.recv_json() == {"type": "relayed", "ref": "e", "accepted": 1, "unknown": []}
    raw = b.recv_text()
    members = raw_members(raw)
    assert members["body"] == body, (raw[:500], body)
    m = json.loads(raw)
    check_message(m, a.id)


def test_body_at_depth_limit_is_forwarded(hub):
    # the request object is level 1, so 63 nested arrays make depth 64
    a = hub.ws()
    b = hub.ws()
    body = b"[" * 63 + b"]" * 63
    a.send_text(b'{"type":"relay","ref":"d","receivers":[%d],"body":%s}' % (b.id, body))
    assert a.recv_json() == {"type": "relayed", "ref": "d", "accepted": 1, "unknown": []}
    assert raw_members(b.recv_text())["body"] == body


def test_body_null_is_a_body(hub):
    a = hub.ws()
    b = hub.ws()
    a.send_text('{"type":"relay","receivers":[%d],"body":null}' % b.id)
    m = b.recv_json()
    check_message(m, a.id)
    assert "body" in m and m["body"] is None


def test_relay_request_fields_in_any_order(hub):
    a = hub.ws()
    b = hub.ws()
    a.send_text('{"body":{"k":"v"},"ref":"q","receivers":[%d],"type":"relay"}' % b.id)
    assert a.recv_json() == {"type": "relayed", "ref": "q", "accepted": 1, "unknown": []}
    check_message(b.recv_json(), a.id, {"k": "v"})


# ---- interoperability with a standard client library -----------------------------

def library_client(hub):
    """A python-websockets client of hub's /ws, with no message size limit."""
    return websockets.connect("ws://%s:%d/ws" % (HOST, hub.port), open_timeout=5,
                              close_timeout=2, max_size=None)


def test_websockets_library_client(hub):
    async def run():
        async with library_client(hub) as x, library_client(hub) as y:
            hx = json.loads(await asyncio.wait_for(x.recv(), 5))
            hy = json.loads(await asyncio.wait_for(y.recv(), 5))
            check_hello(hx, limits=DEFAULT_LIMITS)
            check_hello(hy, limits=DEFAULT_LIMITS)
            await x.send(json.dumps({"type": "relay", "ref": 9, "receivers": [hy["id"]],
                                     "body": {"n": 123456789012345678901234567890}}))
            r = json.loads(await asyncio.wait_for(x.recv(), 5))
            assert r == {"type": "relayed", "ref": 9, "accepted": 1, "unknown": []}
            m = json.loads(await asyncio.wait_for(y.recv(), 5))
            check_message(m, hx["id"], {"n": 123456789012345678901234567890})
            # WebSocket-level ping answered by the hub
            waiter = await y.ping(b"lib")
            await asyncio.wait_for(waiter, 5)
            await y.send('{"type":"identity"}')
            assert json.loads(await asyncio.wait_for(y.recv(), 5)) == {"type": "identity",
                                                                       "id": hy["id"]}
        return x.close_code, y.close_code

    codes = asyncio.run(asyncio.wait_for(run(), 30))
    assert codes == (1000, 1000)


# ---- configuration: environment variables, flag wins (PROTOCOL.md section 7) ------

def test_environment_configures_and_flag_wins(hub_factory):
    h = hub_factory("--max-body-bytes", "4000",
                    env={"MSGHUB_MAX_RECEIVERS": "7", "MSGHUB_MAX_BODY_BYTES": "9999",
                         "MSGHUB_LISTEN": "127.0.0.1:1", "MSGHUB_API_KEY": "env-key"})
    c = h.ws()   # --listen given by the harness won over MSGHUB_LISTEN
    check_hello(c.hello, limits={"max_receivers": 7, "max_body_bytes": 4000})
    assert h.get("/clients").status_code == 401
    r = h.get("/clients", headers={"Authorization": "Bearer env-key"})
    assert r.status_code == 200 and r.json() == {"ids": [c.id]}


def test_websockets_library_reads_coalesced_and_big_frames(hub):
    """Many small messages go out in one write and messages over 64 KiB in
    64 KiB pieces of one frame: a standard client must read every one whole,
    byte for byte, in seq order, with small ones before and after big ones."""
    sizes = [3, 200_000, 5, 7, 1_000_000, 11] + [13] * 300 + [70_000, 17]

    async def run():
        async with library_client(hub) as x, library_client(hub) as y:
            hx = json.loads(await asyncio.wait_for(x.recv(), 5))
            hy = json.loads(await asyncio.wait_for(y.recv(), 5))
            async def receive():
                for ref, n in enumerate(sizes):
                    m = json.loads(await asyncio.wait_for(y.recv(), 10))
                    check_message(m, hx["id"], "%d:" % ref + "b" * n, seq=ref + 1)

            reader = asyncio.create_task(receive())
            for ref, n in enumerate(sizes):
                await x.send(json.dumps({"type": "relay", "ref": ref, "receivers": [hy["id"]],
                                         "body": "%d:" % ref + "b" * n}))
                r = json.loads(await asyncio.wait_for(x.recv(), 10))
                assert r == {"type": "relayed", "ref": ref, "accepted": 1, "unknown": []}, r
            await asyncio.wait_for(reader, 30)
        return x.close_code, y.close_code

    codes = asyncio.run(asyncio.wait_for(run(), 60))
    assert codes == (1000, 1000)
