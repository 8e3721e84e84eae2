"""Contract v2 delivery (PROTOCOL.md sections 2, 3, 5, 6), each test in both
modes: seq per receiver, redelivery after reconnect (ack=client) and none of
written messages (ack=auto), since, recovered after retention by count and
by bytes, acks and their validation, malformed since / ack refused with 400
before the upgrade, and (distributed) seq continuity with senders on
several instances.

Standalone runs one hub and uses it as both "A" and "B"; distributed runs
two (or three) instances of one cluster, receivers on B and senders on A,
so every push crosses RabbitMQ and every log is in Redis."""

import json
import re
import socket
import time

import pytest

import cluster as clmod
from conftest import HOST, Hub, check_message, ws_error
from wsraw import ConnectionClosed

MODES = ["standalone", "distributed"]


class Env:
    def __init__(self, mode, hubs):
        self.mode = mode
        self.hubs = hubs
        self.a = hubs[0]
        self.b = hubs[1] if len(hubs) > 1 else hubs[0]

    def metric(self, name):
        seen = {id(h): h for h in self.hubs}
        return sum(h.metrics().get(name, 0.0) for h in seen.values())


@pytest.fixture(params=MODES)
def make_env(request):
    made = []

    def make(*extra, n=2):
        if request.param == "standalone":
            h = Hub([str(x) for x in extra]).start()
            made.append(h)
            return Env("standalone", [h])
        if not clmod.REDIS_URL or not clmod.AMQP_URL:
            pytest.skip("distributed mode needs MSGHUB_TEST_REDIS_URL and MSGHUB_TEST_AMQP_URL")
        c = clmod.Cluster(presence_ttl=6, extra=[str(x) for x in extra])
        made.append(c)
        c.start(n)
        return Env("distributed", c.hubs)

    yield make
    errors = []
    for m in made:
        if isinstance(m, Hub):
            m.stop()
        else:
            errors += m.cleanup()
    assert not errors, errors


def relay(sender, receivers, body, ref):
    sender.send_text(json.dumps({"type": "relay", "ref": ref, "receivers": receivers,
                                 "body": body}))
    r = sender.recv_json()
    assert r == {"type": "relayed", "ref": ref, "accepted": len(set(receivers)),
                 "unknown": []}, r


def recv_messages(c, n, timeout=5.0):
    out = []
    while len(out) < n:
        m = c.recv_json(timeout=timeout)
        assert m["type"] == "message", m
        out.append(m)
    return out


def assert_quiet(c):
    """Nothing else was pending: a ping is answered next."""
    c.send_text('{"type":"ping"}')
    assert c.recv_json() == {"type": "pong"}


def offline_receiver(env):
    """A receiver id and token, disconnected (its log keeps its messages)."""
    r = env.b.ws()
    rid, tok = r.id, r.token
    r.close()
    return rid, tok


# Refusals before the upgrade are complete HTTP/1.1 responses (mh_ws_refuse).
BAD_REQUEST_LINE = re.compile(r"^HTTP/1\.1 400 Bad Request$")


def status_line(h, path):
    """The first line of the answer to a WebSocket upgrade of path."""
    s = socket.create_connection((HOST, h.port), timeout=5)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   "\r\n" % path).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf.split(b"\r\n", 1)[0].decode()
    finally:
        s.close()


# ---- seq ---------------------------------------------------------------------------------

def test_seq_per_receiver(make_env):
    env = make_env()
    s = env.a.ws()
    r1 = env.a.ws()
    r2 = env.b.ws()
    assert s.hello["seq"] == 0 and s.hello["recovered"] is True and s.hello["ack"] == "client"
    for i in range(3):
        relay(s, [r1.id, r2.id, r2.id], {"i": i}, i)
    for i in range(3, 5):  # including the sender: it gets its own copy, no reply
        s.send_text(json.dumps({"type": "relay", "receivers": [r2.id, s.id], "body": {"i": i}}))
    got1 = recv_messages(r1, 3)
    got2 = recv_messages(r2, 5)
    for k, m in enumerate(got1):
        check_message(m, s.id, {"i": k}, seq=k + 1)
    for k, m in enumerate(got2):
        check_message(m, s.id, {"i": k}, seq=k + 1)
    # one relay, one message id, each receiver its own seq
    assert [m["id"] for m in got1] == [m["id"] for m in got2[:3]]
    mine = recv_messages(s, 2)
    assert [(m["seq"], m["body"]) for m in mine] == [(1, {"i": 3}), (2, {"i": 4})]
    assert_quiet(r1)
    assert_quiet(r2)


def test_http_relay_gets_seq(make_env):
    env = make_env()
    r = env.b.ws()
    for i in range(2):
        resp = env.a.relay_http([r.id], '{"n":%d}' % i)
        assert resp.json()["accepted"] == 1
    got = recv_messages(r, 2)
    assert [(m["seq"], m["from"], m["body"]) for m in got] == [(1, 0, {"n": 0}), (2, 0, {"n": 1})]


# ---- redelivery and acks -----------------------------------------------------------------

def test_unacked_redelivered_after_reconnect(make_env):
    env = make_env()
    s = env.a.ws()
    r = env.b.ws()
    for i in range(3):
        relay(s, [r.id], i, i)
    first = recv_messages(r, 3)
    r.close()
    before = env.metric("msghub_redeliveries_total")
    r2 = env.a.ws(token=r.token, resumed=True)
    assert r2.hello["seq"] == 3 and r2.hello["recovered"] is True, r2.hello
    again = recv_messages(r2, 3)
    assert [(m["id"], m["seq"], m["body"]) for m in again] == \
        [(m["id"], m["seq"], m["body"]) for m in first]
    relay(s, [r.id], "new", 9)
    (m,) = recv_messages(r2, 1)
    check_message(m, s.id, "new", seq=4)
    assert env.metric("msghub_redeliveries_total") == before + 3


def test_acked_not_redelivered(make_env):
    env = make_env()
    s = env.a.ws()
    r = env.b.ws()
    for i in range(3):
        relay(s, [r.id], i, i)
    recv_messages(r, 3)
    acks0 = env.metric("msghub_acks_total")
    r.send_text('{"type":"ack","seq":2,"ref":"a-1"}')
    assert r.recv_json() == {"type": "acked", "ref": "a-1", "seq": 2}
    r.send_text('{"type":"ack","seq":1,"ref":7}')  # below the earlier ack: answered, no change
    assert r.recv_json() == {"type": "acked", "ref": 7, "seq": 1}
    r.send_text('{"type":"ack","seq":2}')  # no ref: no answer
    assert_quiet(r)
    assert env.metric("msghub_acks_total") == acks0 + 1
    r.close()
    r2 = env.b.ws(token=r.token, resumed=True)
    assert r2.hello["seq"] == 3
    (m,) = recv_messages(r2, 1)
    check_message(m, s.id, 2, seq=3)
    assert_quiet(r2)
    r2.send_text('{"type":"ack","seq":3}')
    assert_quiet(r2)
    r2.close()
    r3 = env.a.ws(token=r.token, resumed=True)
    assert_quiet(r3)


def test_auto_mode_written_not_redelivered(make_env):
    env = make_env()
    s = env.a.ws()
    probe = env.b.ws()
    r = env.b.ws_raw(token=probe.token, path="/ws?ack=auto")
    probe_closed = pytest.raises(ConnectionClosed)
    with probe_closed:
        probe.recv_json()  # the same id: the older connection is taken over
    hello = r.recv_json()
    assert hello["ack"] == "auto" and hello["id"] == probe.id, hello
    for i in range(3):
        relay(s, [probe.id], i, i)
    recv_messages(r, 3)
    time.sleep(0.5)  # auto acks are batched (every 100 ms or 100 messages)
    r.close()
    r2 = env.a.ws(token=probe.token, resumed=True)
    assert r2.hello["ack"] == "client" and r2.hello["seq"] == 3, r2.hello
    assert_quiet(r2)


def test_ack_validation(make_env):
    env = make_env()
    s = env.a.ws()
    r = env.b.ws()
    r.send_text('{"type":"ack","seq":1,"ref":"none-yet"}')  # nothing sent to this id yet
    ws_error(r.recv_json(), "bad_request", ref="none-yet")
    relay(s, [r.id], "x", 1)
    recv_messages(r, 1)
    for bad in ['{"type":"ack","ref":1}', '{"type":"ack","seq":0,"ref":1}',
                '{"type":"ack","seq":-1,"ref":1}', '{"type":"ack","seq":1.5,"ref":1}',
                '{"type":"ack","seq":"1","ref":1}', '{"type":"ack","seq":2,"ref":1}',
                '{"type":"ack","seq":18446744073709551616,"ref":1}']:
        r.send_text(bad)
        ws_error(r.recv_json(), "bad_request", ref=1)
    r.send_text('{"type":"ack","seq":1,"ref":2}')
    assert r.recv_json() == {"type": "acked", "ref": 2, "seq": 1}


# ---- since -------------------------------------------------------------------------------

def test_since_resumes_after(make_env):
    env = make_env()
    s = env.a.ws()
    rid, tok = offline_receiver(env)
    for i in range(5):
        relay(s, [rid], i, i)
    acks0 = env.metric("msghub_acks_total")
    r = env.a.ws_raw(token=tok, path="/ws?since=3")
    hello = r.recv_json()
    assert (hello["id"], hello["seq"], hello["recovered"]) == (rid, 5, True), hello
    got = recv_messages(r, 2)
    assert [(m["seq"], m["body"]) for m in got] == [(4, 3), (5, 4)]
    assert_quiet(r)
    assert env.metric("msghub_acks_total") == acks0 + 1
    r.close()
    # since acknowledged <= 3: a plain resume owes 4 and 5 only
    r2 = env.b.ws(token=tok)
    assert [m["seq"] for m in recv_messages(r2, 2)] == [4, 5]
    assert_quiet(r2)
    r2.close()
    r3 = env.b.ws_raw(token=tok, path="/ws?since=5")
    assert r3.recv_json()["seq"] == 5
    assert_quiet(r3)
    r3.close()
    r4 = env.a.ws_raw(token=tok, path="/ws?since=0")  # 0: acknowledges nothing new
    assert r4.recv_json()["seq"] == 5
    assert_quiet(r4)


def test_malformed_since_and_ack_refused_400(make_env):
    env = make_env()
    s = env.a.ws()
    rid, tok = offline_receiver(env)
    relay(s, [rid], 1, 1)
    bad = ["/ws?since=abc&token=" + tok, "/ws?since=-1&token=" + tok,
           "/ws?since=&token=" + tok, "/ws?since=1.5&token=" + tok,
           "/ws?since=%2B1&token=" + tok, "/ws?since=18446744073709551616&token=" + tok,
           "/ws?since=1", "/ws?since=0", "/ws?ack=bogus", "/ws?ack=", "/ws?ack=AUTO",
           "/ws?ack", "/ws?since&token=" + tok,
           "/ws?ack=auto&since=x&token=" + tok]
    if env.mode == "standalone":  # the memory log knows the id's seq before the upgrade
        bad.append("/ws?since=2&token=" + tok)
    for path in bad:
        assert BAD_REQUEST_LINE.match(status_line(env.b, path)), path
    for path in ["/ws?ack=client", "/ws?ack=auto", "/ws?since=1&token=" + tok]:
        assert status_line(env.b, path) == "HTTP/1.1 101 Switching Protocols", path


def test_since_above_highest_seq(make_env):
    env = make_env()
    s = env.a.ws()
    rid, tok = offline_receiver(env)
    relay(s, [rid], 1, 1)
    if env.mode == "standalone":
        assert BAD_REQUEST_LINE.match(status_line(env.b, "/ws?since=2&token=" + tok))
        return
    # distributed: the upgrade cannot wait for Redis; refused right after it
    c = env.b.ws_raw(token=tok, path="/ws?since=2")
    ws_error(c.recv_json(), "bad_request", message="since is above this id's highest seq")
    with pytest.raises(ConnectionClosed) as ei:
        c.recv_json()
    assert ei.value.code == 1008
    r = env.a.ws(token=tok)  # nothing was acknowledged
    assert [m["seq"] for m in recv_messages(r, 1)] == [1]


# ---- retention ---------------------------------------------------------------------------

def test_recovered_false_after_count_cap(make_env):
    env = make_env("--inbox-max", 3)
    s = env.a.ws()
    rid, tok = offline_receiver(env)
    d0 = env.metric("msghub_inbox_dropped_total")
    st0 = env.metric("msghub_inbox_stored_total")
    for i in range(5):
        relay(s, [rid], i, i)
    # distributed: a MULTI/EXEC append answers before its tidy script's drops are counted
    deadline = time.monotonic() + 2
    while env.metric("msghub_inbox_dropped_total") < d0 + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert env.metric("msghub_inbox_dropped_total") == d0 + 2
    assert env.metric("msghub_inbox_stored_total") == st0 + 5
    r = env.b.ws(token=tok)
    assert (r.hello["seq"], r.hello["recovered"]) == (5, False), r.hello
    assert [(m["seq"], m["body"]) for m in recv_messages(r, 3)] == [(3, 2), (4, 3), (5, 4)]
    assert_quiet(r)
    r.close()
    # since past the dropped ones: no gap left to report
    r2 = env.a.ws_raw(token=tok, path="/ws?since=5")
    assert r2.recv_json()["recovered"] is True


def test_recovered_false_after_byte_cap(make_env):
    body = '"' + "x" * 1000 + '"'
    env = make_env("--inbox-max-bytes", 2500)
    s = env.a.ws()
    rid, tok = offline_receiver(env)
    for i in range(5):
        s.send_text('{"type":"relay","ref":%d,"receivers":[%d],"body":%s}' % (i, rid, body))
        assert s.recv_json()["accepted"] == 1
    r = env.b.ws(token=tok)
    assert (r.hello["seq"], r.hello["recovered"]) == (5, False), r.hello
    got = [r.recv_text() for _ in range(2)]  # each ~1,080 bytes: two fit in 2,500
    assert [json.loads(t)["seq"] for t in got] == [4, 5]
    assert all(len(t) <= 1250 for t in got), [len(t) for t in got]
    assert_quiet(r)


def test_big_log_resume_is_not_a_slow_consumer(make_env):
    """A log far larger than the outbound limit is delivered in slices."""
    env = make_env("--outbound-buffer-bytes", 65536)
    s = env.a.ws()
    rid, tok = offline_receiver(env)
    body = '"' + "y" * 2000 + '"'
    for i in range(100):
        s.send_text('{"type":"relay","receivers":[%d],"body":%s}' % (rid, body))
    relay(s, [rid], "last", "end")
    r = env.b.ws(token=tok)
    assert r.hello["seq"] == 101
    seqs = [m["seq"] for m in recv_messages(r, 101)]
    assert seqs == list(range(1, 102))
    assert_quiet(r)


# ---- distributed: seq continuity across instances ------------------------------------------

def test_seq_continuity_senders_on_every_instance(make_env):
    env = make_env(n=3)
    if env.mode == "standalone":
        pytest.skip("one instance: covered by test_seq_per_receiver")
    r = env.hubs[0].ws()
    senders = [h.ws() for h in env.hubs]
    n = 30
    for i in range(n):
        for k, c in enumerate(senders):
            c.send_text(json.dumps({"type": "relay", "receivers": [r.id], "body": [k, i]}))
        env.hubs[i % 3].relay_http([r.id], json.dumps(["http", i]))
    for c in senders:  # every relay was accepted (a ref'd relay comes back after them)
        c.send_text(json.dumps({"type": "relay", "ref": "x", "receivers": [r.id],
                                "body": "end"}))
        assert c.recv_json()["accepted"] == 1
    total = 4 * n + 3
    got = recv_messages(r, total, timeout=10)
    assert [m["seq"] for m in got] == list(range(1, total + 1))
    last = {}
    for m in got:  # per sender, in the order it sent
        b = m["body"]
        if isinstance(b, list):
            key = b[0]
            assert last.get(key, -1) < b[1], (key, b)
            last[key] = b[1]
    assert_quiet(r)


# ---- a stuck reader ------------------------------------------------------------------------

def test_stuck_reader_loses_nothing_and_delays_nobody(make_env):
    """A receiver that stops reading is closed 4008 and gets every message on
    resume (none acknowledged: all of them, in seq order); another receiver
    on the same instance meanwhile gets each message at once."""
    env = make_env("--outbound-buffer-bytes", 65536)
    s = env.a.ws()
    stuck = env.b.ws(rcvbuf=4096)
    other = env.b.ws()
    pad = "p" * 32768
    n = 300  # 9.6 MB: more than the kernel's socket buffers can hide
    worst = 0.0
    for i in range(n):  # the other receiver reads each message as it comes
        t0 = time.monotonic()
        s.send_text(json.dumps({"type": "relay", "receivers": [stuck.id, other.id],
                                "body": {"i": i, "pad": pad}}))
        (m,) = recv_messages(other, 1, timeout=5)
        assert (m["seq"], m["body"]["i"]) == (i + 1, i)
        worst = max(worst, time.monotonic() - t0)
    assert worst < 1.0, worst
    code, _msgs = stuck.wait_close(timeout=15)
    assert code in (4008, None), code  # None: the TCP drop after the 5 s close deadline
    again = env.a.ws(token=stuck.token, resumed=True)
    assert again.hello["seq"] == n and again.hello["recovered"] is True, again.hello
    got = recv_messages(again, n, timeout=30)
    assert [(m["seq"], m["body"]["i"]) for m in got] == [(k + 1, k) for k in range(n)]
    assert_quiet(again)
