"""Per-connection deadlines kept on the hub's timer wheel (liveness.c):
the handshake timeout of connections that never finish their request
headers, the pong timeout after a ping that is answered late, that a
client answering pings stays connected through many ping intervals, and
the close deadline of a peer that never answers the hub's close frame. The
idle timeout and the plain pong timeout are in test_limits.py."""

import socket
import time

from conftest import HOST
from wsraw import ConnectionClosed, RecvTimeout

HANDSHAKE_S = 10  # MH_LIVE_HANDSHAKE_S


def closed_within(sock, seconds):
    """Seconds until the hub closes sock (EOF or reset), or None if it stays open."""
    t0 = time.monotonic()
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(4096):
                break
    except socket.timeout:
        return None
    except (ConnectionResetError, BrokenPipeError):
        pass
    return time.monotonic() - t0


def test_handshake_timeout_closes_silent_and_slow_connections(hub_factory):
    h = hub_factory()
    silent = socket.create_connection((HOST, h.port))
    slow = socket.create_connection((HOST, h.port))
    slow.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    gone = [socket.create_connection((HOST, h.port)) for _ in range(20)]
    for s in gone:  # accepted and closed at once: the hub must forget their deadlines
        s.close()
    time.sleep(HANDSHAKE_S / 2)
    # meanwhile the hub serves new clients normally
    c = h.ws()
    c.send_text('{"type":"ping"}')
    assert c.recv_json() == {"type": "pong"}
    t_silent = closed_within(silent, HANDSHAKE_S)
    t_slow = closed_within(slow, 2)
    assert t_silent is not None, "a connection without a request was never closed"
    assert t_slow is not None, "a connection with unfinished headers was never closed"
    # closed at the deadline (10 s after accept, half of it slept above), not earlier
    assert HANDSHAKE_S / 2 - 1.0 <= t_silent <= HANDSHAKE_S / 2 + 2.0, t_silent
    # the upgraded client was not subject to the handshake deadline
    c.send_text('{"type":"identity"}')
    assert c.recv_json() == {"type": "identity", "id": c.id}


def test_late_pong_closes_and_prompt_pongs_keep_alive(hub_factory):
    h = hub_factory("--ping-interval", "1", "--pong-timeout", "1", "--idle-timeout", "0")
    late = h.ws(auto_pong=False)
    live = h.ws()
    t0 = time.monotonic()
    late_end = None
    answered = 0
    while time.monotonic() - t0 < 7.0:
        if late_end is None:
            try:
                late.recv_message(timeout=0.05)
            except RecvTimeout:
                pass
            except ConnectionClosed:
                late_end = time.monotonic()
            # answer the first two pings at once, then only after 2.5 s (past the timeout)
            for when, payload in late.pings[answered:]:
                if answered < 2 or time.monotonic() - when >= 2.5:
                    late.pong(payload)
                    answered += 1
        try:
            live.recv_message(timeout=0.05)
        except RecvTimeout:
            pass
    assert len(late.pings) >= 3, late.pings
    assert late_end is not None, "a client answering pings too late was kept"
    third_ping = late.pings[2][0]
    assert 0.5 <= late_end - third_ping <= 2.5, late_end - third_ping
    # six intervals later the prompt client is still there
    assert len(live.pings) >= 4, live.pings
    live.send_text('{"type":"identity"}')
    assert live.recv_json() == {"type": "identity", "id": live.id}


def test_close_deadline_drops_a_peer_that_never_answers_the_close(hub_factory):
    h = hub_factory("--idle-timeout", "1")
    c = h.ws()  # hello read; nothing is read or answered from here on
    sock = c.sock
    sock.settimeout(4.0)
    first = sock.recv(64)  # the hub's close frame (4000 idle timeout)
    t_close = time.monotonic()
    assert first[0] == 0x88, first
    assert int.from_bytes(first[2:4], "big") == 4000, first
    t_eof = closed_within(sock, 10.0)
    assert t_eof is not None, "a peer that never answered the close frame was kept"
    assert 4.0 <= t_eof <= 7.5, t_eof  # the 5 s close deadline (CLOSE_DEADLINE_S)
    # the hub is fine: a new client works
    d = h.ws()
    d.send_text('{"type":"ping"}')
    assert d.recv_json() == {"type": "pong"}


def test_silent_sockets_are_held_until_their_first_byte_and_closed_at_the_deadline(hub_factory):
    """acceptor.c: a socket that sends nothing never reaches lws; it counts, is closed at
    --request-timeout after accept, and a peer closing first is forgotten at its EOF."""
    h = hub_factory("--request-timeout", "2")
    silent = [socket.create_connection((HOST, h.port)) for _ in range(50)]
    for _ in range(200):  # peers that close without a byte
        socket.create_connection((HOST, h.port)).close()
    late = socket.create_connection((HOST, h.port))
    time.sleep(1.0)
    m = h.metrics()
    assert 51 <= m["msghub_sockets"] <= 53, m  # silent + late + this request, not the 200
    late.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
    late.settimeout(3)
    assert late.recv(4096).startswith(b"HTTP/1.1 200 OK"), "a late first byte was not served"
    late.close()
    t = closed_within(silent[0], 3)
    assert t is not None and 0.3 <= t <= 2.0, t  # 2 s after accept, 1 s of it slept above
    assert all(closed_within(s, 1) is not None for s in silent[1:])
    time.sleep(0.3)
    m = h.metrics()
    assert m["msghub_request_timeouts_total"] == 50, m
    assert m["msghub_sockets"] == 1, m  # this request
    for s in silent:
        s.close()
