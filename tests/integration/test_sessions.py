"""Session tokens, resume, offline inbox, takeover, --require-token, Origin
allow-list (PROTOCOL.md sections 1, 2, 5; PROTOCOL-NOTES.md)."""

import time

import pytest

from conftest import check_message, raw_error
from wsraw import ConnectionClosed, HandshakeError


def tamper(token, pos):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    c = token[pos]
    repl = "A" if c != "A" else "B"
    if c not in alphabet:
        repl = "A"
    return token[:pos] + repl + token[pos + 1:]


def refused(h, status, code, **kw):
    with pytest.raises(HandshakeError) as ei:
        h.ws_raw(**kw)
    raw_error(ei.value, status, code)


def drain_messages(c, count, timeout=5.0):
    """Reads `count` distinct messages (duplicates by id are dropped, as the
    contract allows a client to do), then checks nothing else is pending."""
    seen = set()
    out = []
    while len(out) < count:
        m = c.recv_json(timeout=timeout)
        assert m["type"] == "message", m
        if m["id"] in seen:
            continue
        seen.add(m["id"])
        out.append(m)
    return out


# ---- resume ----------------------------------------------------------------------------

def test_resume_gives_same_id(hub):
    a = hub.ws(resumed=False)
    aid, tok = a.id, a.token
    a.close()
    a2 = hub.ws(token=tok, resumed=True)
    assert a2.id == aid
    a2.send_text('{"type":"identity"}')
    assert a2.recv_json() == {"type": "identity", "id": aid}
    # every hello carries a token for the same id; older tokens stay valid
    tok2 = a2.token
    a2.close()
    a3 = hub.ws(token=tok2, resumed=True)
    assert a3.id == aid
    a3.close()
    a4 = hub.ws(token=tok, resumed=True)
    assert a4.id == aid


def test_resume_visible_in_list(hub):
    a = hub.ws()
    b = hub.ws()
    aid = a.id
    a.close()
    a2 = hub.ws(token=a.token)
    b.send_text('{"type":"list"}')
    assert aid in b.recv_json()["ids"]
    assert a2.id == aid


def test_offline_messages_delivered_in_order_after_hello(hub):
    a = hub.ws()
    b = hub.ws()
    bid, btok = b.id, b.token
    b.close()
    for i in range(5):
        a.send_text('{"type":"relay","ref":%d,"receivers":[%d],"body":{"seq":%d}}' % (i, bid, i))
        assert a.recv_json() == {"type": "relayed", "ref": i, "accepted": 1, "unknown": []}
    b2 = hub.ws_raw(token=btok)
    hello = b2.recv_json()
    assert hello["type"] == "hello" and hello["id"] == bid and hello["resumed"] is True, hello
    b2.id = bid
    msgs = drain_messages(b2, 5)
    for i, m in enumerate(msgs):
        check_message(m, a.id, {"seq": i})
    # newer messages come after the stored ones, and nothing else was stored
    a.send_text('{"type":"relay","receivers":[%d],"body":"new"}' % bid)
    m = b2.recv_json()
    while m["type"] == "message" and m["id"] in {x["id"] for x in msgs}:
        m = b2.recv_json()
    check_message(m, a.id, "new")
    b2.send_text('{"type":"ping"}')
    assert b2.recv_json() == {"type": "pong"}


def test_offline_messages_from_several_senders(hub):
    a = hub.ws()
    c = hub.ws()
    b = hub.ws()
    bid, btok = b.id, b.token
    b.close()
    a.send_text('{"type":"relay","receivers":[%d],"body":"a1"}' % bid)
    c.send_text('{"type":"relay","ref":0,"receivers":[%d],"body":"c1"}' % bid)
    assert c.recv_json()["accepted"] == 1
    a.send_text('{"type":"relay","ref":0,"receivers":[%d],"body":"a2"}' % bid)
    assert a.recv_json()["accepted"] == 1
    b2 = hub.ws(token=btok, resumed=True)
    got = [(m["from"], m["body"]) for m in drain_messages(b2, 3)]
    assert got == [(a.id, "a1"), (c.id, "c1"), (a.id, "a2")]


def test_stored_messages_redelivered_until_acknowledged(hub):
    a = hub.ws()
    b = hub.ws()
    bid, btok = b.id, b.token
    b.close()
    a.send_text('{"type":"relay","ref":1,"receivers":[%d],"body":"once"}' % bid)
    assert a.recv_json()["accepted"] == 1
    b2 = hub.ws(token=btok)
    (m,) = drain_messages(b2, 1)
    check_message(m, a.id, "once", seq=1)
    b2.send_text('{"type":"ping"}')
    assert b2.recv_json() == {"type": "pong"}
    b2.close()
    # not acknowledged: pushed again after the reconnect, same id and seq
    b3 = hub.ws(token=btok)
    (m2,) = drain_messages(b3, 1)
    assert (m2["id"], m2["seq"]) == (m["id"], 1)
    b3.send_text('{"type":"ack","seq":1}')
    b3.send_text('{"type":"ping"}')
    assert b3.recv_json() == {"type": "pong"}
    b3.close()
    b4 = hub.ws(token=btok)
    b4.send_text('{"type":"ping"}')
    assert b4.recv_json() == {"type": "pong"}


# ---- bad tokens --------------------------------------------------------------------------

def test_garbage_tokens_401(hub):
    for tok in ["abc", "x" * 64, "A" * 64, "..", "A" * 200, "%41%42"]:
        refused(hub, 401, "unauthorized", token=tok)


def test_percent_encoded_nul_token_never_upgrades(hub):
    # libwebsockets' URI parser drops a request whose URI decodes to a NUL
    # before the hub sees it (docs/PROTOCOL-NOTES.md): no upgrade, no answer,
    # and the hub keeps serving everyone else.
    for tok in ("%00", "A%00B"):
        with pytest.raises((HandshakeError, ConnectionClosed)) as ei:
            hub.ws_raw(token=tok)
        if isinstance(ei.value, HandshakeError):
            raw_error(ei.value, 401, "unauthorized")
    a = hub.ws()
    b = hub.ws()
    a.send_text('{"type":"relay","receivers":[%d],"body":"still here"}' % b.id)
    assert b.recv_json()["body"] == "still here"


def test_tampered_token_401(hub):
    a = hub.ws()
    tok = a.token
    for pos in (0, len(tok) // 2, len(tok) - 1):
        t = tamper(tok, pos)
        assert t != tok
        refused(hub, 401, "unauthorized", token=t)
    # truncated and extended
    refused(hub, 401, "unauthorized", token=tok[:-1])
    refused(hub, 401, "unauthorized", token=tok + "A")
    # the real one still works
    a.close()
    assert hub.ws(token=tok, resumed=True).id == a.id


def test_token_from_another_secret_401(hub_factory):
    h1 = hub_factory("--token-secret", "secret-one")
    h2 = hub_factory("--token-secret", "secret-two")
    a = h1.ws()
    refused(h2, 401, "unauthorized", token=a.token)


def test_expired_token_401(hub_factory):
    h = hub_factory("--token-ttl", "1")
    a = h.ws()
    s = h.post("/sessions").json()
    a.close()
    time.sleep(2.2)
    refused(h, 401, "unauthorized", token=a.token)
    refused(h, 401, "unauthorized", token=s["token"])
    # a fresh connection is still fine
    assert h.ws(resumed=False).id > a.id


def test_token_valid_before_expiry(hub_factory):
    h = hub_factory("--token-ttl", "5")
    a = h.ws()
    a.close()
    assert h.ws(token=a.token, resumed=True).id == a.id


# ---- --require-token ---------------------------------------------------------------------

def test_require_token(hub_factory):
    h = hub_factory("--require-token")
    refused(h, 401, "unauthorized")
    refused(h, 401, "unauthorized", token="bogus")
    s = h.post("/sessions").json()
    c = h.ws(token=s["token"])
    assert c.id == s["id"]
    c.send_text('{"type":"identity"}')
    assert c.recv_json() == {"type": "identity", "id": s["id"]}
    # the token from hello works as well
    c.close()
    assert h.ws(token=c.token).id == s["id"]


# ---- takeover ----------------------------------------------------------------------------

def test_takeover_closes_older_with_4409(hub):
    a = hub.ws()
    b = hub.ws()
    aid = a.id
    a2 = hub.ws(token=a.token, resumed=True)
    assert a2.id == aid
    code, msgs = a.wait_close(timeout=5)
    assert code == 4409, (code, a.close_reason)
    assert msgs == []
    # the new connection works and is the only one for that id
    a2.send_text('{"type":"identity"}')
    assert a2.recv_json() == {"type": "identity", "id": aid}
    b.send_text('{"type":"list"}')
    assert b.recv_json()["ids"].count(aid) == 1
    b.send_text('{"type":"relay","ref":"t","receivers":[%d],"body":"to-new"}' % aid)
    assert b.recv_json() == {"type": "relayed", "ref": "t", "accepted": 1, "unknown": []}
    check_message(a2.recv_json(), b.id, "to-new")
    a2.send_text('{"type":"relay","receivers":[%d],"body":"from-new"}' % b.id)
    check_message(b.recv_json(), aid, "from-new")


def test_takeover_stays_present_after_old_closes(hub):
    a = hub.ws()
    b = hub.ws()
    a2 = hub.ws(token=a.token)
    code, _ = a.wait_close(timeout=5)
    assert code == 4409
    time.sleep(0.2)
    b.send_text('{"type":"list"}')
    assert b.recv_json()["ids"].count(a.id) == 1
    r = hub.get("/clients").json()
    assert r["ids"].count(a.id) == 1
    a2.send_text('{"type":"ping"}')
    assert a2.recv_json() == {"type": "pong"}


# ---- inbox limits ------------------------------------------------------------------------

def test_inbox_max_drops_oldest(hub_factory):
    h = hub_factory("--inbox-max", "3")
    a = h.ws()
    b = h.ws()
    bid, btok = b.id, b.token
    b.close()
    m0 = h.metrics()
    for i in range(5):
        a.send_text('{"type":"relay","ref":%d,"receivers":[%d],"body":%d}' % (i, bid, i))
        assert a.recv_json() == {"type": "relayed", "ref": i, "accepted": 1, "unknown": []}
    m1 = h.metrics()
    assert m1["msghub_inbox_dropped_total"] == m0["msghub_inbox_dropped_total"] + 2
    assert m1["msghub_inbox_stored_total"] == m0["msghub_inbox_stored_total"] + 5
    b2 = h.ws(token=btok, resumed=True)
    assert [m["body"] for m in drain_messages(b2, 3)] == [2, 3, 4]
    b2.send_text('{"type":"ping"}')
    assert b2.recv_json() == {"type": "pong"}


def test_inbox_ttl_expires(hub_factory):
    h = hub_factory("--inbox-ttl", "1")
    a = h.ws()
    b = h.ws()
    bid, btok = b.id, b.token
    b.close()
    a.send_text('{"type":"relay","ref":1,"receivers":[%d],"body":"stale"}' % bid)
    assert a.recv_json()["accepted"] == 1
    time.sleep(2.2)
    a.send_text('{"type":"relay","ref":2,"receivers":[%d],"body":"fresh"}' % bid)
    assert a.recv_json()["accepted"] == 1
    b2 = h.ws(token=btok, resumed=True)
    (m,) = drain_messages(b2, 1)
    check_message(m, a.id, "fresh")
    b2.send_text('{"type":"ping"}')
    assert b2.recv_json() == {"type": "pong"}


# ---- Origin allow-list -------------------------------------------------------------------

ORIGINS = "http://good.example,https://app.example:8443"


@pytest.fixture(scope="module")
def origin_hub():
    from conftest import Hub
    h = Hub(["--allowed-origins", ORIGINS]).start()
    yield h
    h.stop()


@pytest.mark.parametrize("origin", ["http://evil.example", "http://good.example.evil",
                                    "https://good.example", "http://good.example:8080",
                                    "https://app.example", "null", "http://app.example:8443"])
def test_origin_not_allowed_403(origin_hub, origin):
    refused(origin_hub, 403, "forbidden", headers={"Origin": origin})


@pytest.mark.parametrize("origin", ["http://good.example", "https://app.example:8443"])
def test_origin_allowed(origin_hub, origin):
    c = origin_hub.ws(headers={"Origin": origin})
    c.send_text('{"type":"ping"}')
    assert c.recv_json() == {"type": "pong"}


def test_no_origin_header_not_subject_to_allow_list(origin_hub):
    c = origin_hub.ws()
    c.send_text('{"type":"identity"}')
    assert c.recv_json() == {"type": "identity", "id": c.id}


def test_any_origin_without_allow_list(hub):
    c = hub.ws(headers={"Origin": "http://whatever.example"})
    c.send_text('{"type":"ping"}')
    assert c.recv_json() == {"type": "pong"}


def test_origin_checked_with_valid_token(origin_hub):
    a = origin_hub.ws()
    a.close()
    refused(origin_hub, 403, "forbidden", token=a.token, headers={"Origin": "http://evil.example"})
    assert origin_hub.ws(token=a.token, headers={"Origin": "http://good.example"}).id == a.id
