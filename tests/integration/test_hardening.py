"""Hardening against hostile clients (issue 7): each test sends what an
attacker would, over raw sockets, and checks the exact answer and that the
hub keeps serving everyone else afterwards."""

import socket
import struct
import time

import pytest

from conftest import HOST, assert_alive, raw_error
from wsraw import OP_BINARY, OP_CLOSE, HandshakeError, RecvTimeout, encode_frame

JSON_CT = b"Content-Type: application/json\r\n"


def read_until_eof(port, data, timeout=3.0, limit=1 << 20):
    """Sends data on a fresh connection and reads until EOF, the deadline,
    or limit bytes. Returns (bytes read, whether the hub closed)."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    deadline = time.monotonic() + timeout
    out = b""
    closed = False
    try:
        sock.sendall(data)
        while len(out) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    finally:
        sock.close()
    return out, closed


def relay_request(receiver, extra_headers=b""):
    body = b'{"receivers":[%d],"body":{"once":true}}' % receiver
    head = (b"POST /relay HTTP/1.1\r\nHost: hub\r\n" + JSON_CT + extra_headers +
            b"Content-Length: %d\r\n\r\n" % len(body))
    return head + body


def count_deliveries(client, quiet=1.0):
    n = 0
    while True:
        try:
            client.recv_json(timeout=quiet)
        except RecvTimeout:
            return n
        n += 1


# ---- item 1: one request is handled exactly once -------------------------------

TRAILERS = {
    "pipelined": b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n",
    "stray_crlf": b"\r\n",
    "one_byte": b"x",
}


def check_once(hub, data):
    rx = hub.ws()
    other_a, other_b = hub.ws(), hub.ws()
    out, closed = read_until_eof(hub.port, data(rx.id))
    assert out.count(b"HTTP/1.1 ") == 1, out[:600]
    assert out.startswith(b"HTTP/1.1 200 OK\r\n"), out[:300]
    head = out.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nconnection: close" in head, head
    assert closed, "the hub kept the connection open after answering"
    assert count_deliveries(rx) == 1
    assert_alive(other_a, other_b)
    assert hub.get("/healthz").status_code == 200


def test_relay_with_trailing_bytes_handled_once(hub):
    for name, tail in TRAILERS.items():
        check_once(hub, lambda rid, t=tail: relay_request(rid) + t)


def test_cl_te_smuggling_form_handled_once(hub):
    rx = hub.ws()
    body = b'{"receivers":[%d],"body":1}' % rx.id
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    data = (b"POST /relay HTTP/1.1\r\nHost: hub\r\n" + JSON_CT +
            b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % (len(chunked) - 5) +
            chunked)
    out, closed = read_until_eof(hub.port, data)
    assert out.count(b"HTTP/1.1 ") == 1, out[:600]
    assert closed
    assert count_deliveries(rx) <= 1
    assert hub.get("/healthz").status_code == 200


def test_keep_alive_sequential_requests_still_work(hub):
    rx = hub.ws()
    sock = socket.create_connection((HOST, hub.port), timeout=3)
    try:
        for _ in range(3):
            sock.sendall(relay_request(rx.id))
            out = b""
            while b'"unknown":[]}' not in out:
                chunk = sock.recv(65536)
                assert chunk, out
                out += chunk
            assert out.startswith(b"HTTP/1.1 200 OK\r\n"), out
            assert b"connection: close" not in out.lower(), out
    finally:
        sock.close()
    assert count_deliveries(rx) == 3


# ---- item 4: a query parameter that does not fit is refused, never ignored ------

def test_long_token_is_401_not_a_new_session(hub):
    for n in (294, 300, 1000, 3000):
        for path in ("/ws?token=" + "a" * n, "/ws?x=1&token=" + "A" * n + "&y=2"):
            try:
                c = hub.ws_raw(path=path)
            except HandshakeError as e:
                raw_error(e, 401, "unauthorized")
                continue
            c.abort()
            raise AssertionError("a %d-character token was upgraded" % n)
    a, b = hub.ws(), hub.ws()
    assert_alive(a, b)


def test_long_token_on_plain_get_ws_is_401(hub):
    r = hub.get("/ws", params={"token": "b" * 500})
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.json()["error"]["code"] == "unauthorized"


# ---- item 5: binary frames count against the rate limiter ----------------------

def test_binary_frames_are_rate_limited(hub_factory):
    h = hub_factory("--rate-limit", "5:5")
    a, b = h.ws(), h.ws()
    n = 30
    a.send_raw(b"".join(encode_frame(OP_BINARY, b"\x00\x01") for _ in range(n)))
    codes = [a.recv_json()["code"] for _ in range(n)]
    assert codes[:5] == ["bad_request"] * 5, codes
    assert codes.count("rate_limited") >= n - 6, codes
    # the bucket is shared with text frames: a is refused right after
    a.send_text('{"type":"ping","ref":1}')
    r = a.recv_json()
    assert r["type"] == "error" and r["code"] == "rate_limited", r
    m = h.metrics()
    assert m['msghub_errors_total{code="rate_limited"}'] >= n - 6, m
    b.send_text('{"type":"ping"}')
    assert b.recv_json() == {"type": "pong"}


# ---- item 6: invalid close frames are answered with 1002 ------------------------

def close_reply(hub, payload):
    c = hub.ws()
    c.send_frame(OP_CLOSE, payload)
    fr = c.recv_frame(timeout=3)
    assert fr.opcode == OP_CLOSE, fr
    c.abort()
    return fr.payload


@pytest.mark.parametrize("payload", [
    struct.pack("!H", 5000),
    struct.pack("!H", 65535) + b"x",
    struct.pack("!H", 2999),
    struct.pack("!H", 1005),
    struct.pack("!H", 1015),
    b"\x03",
    struct.pack("!H", 1000) + b"\xff\xfe",
    struct.pack("!H", 4000) + b"ok \xed\xa0\x80",
], ids=["5000", "65535", "2999", "1005", "1015", "one_byte", "reason_not_utf8",
        "reason_surrogate"])
def test_invalid_close_frame_gets_1002(hub, payload):
    reply = close_reply(hub, payload)
    assert len(reply) >= 2 and struct.unpack("!H", reply[:2])[0] == 1002, reply
    reply[2:].decode("utf-8")
    a, b = hub.ws(), hub.ws()
    assert_alive(a, b)


@pytest.mark.parametrize("payload", [b"", struct.pack("!H", 1000) + "bye é".encode(),
                                     struct.pack("!H", 4999), struct.pack("!H", 3000)])
def test_valid_close_frame_is_echoed(hub, payload):
    assert close_reply(hub, payload) == payload
