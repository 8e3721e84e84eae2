"""Graceful shutdown on SIGTERM and SIGINT: readiness turns 503 (or the port
stops answering), clients get close 1001, new sessions are refused, the
process exits 0 within --shutdown-timeout."""

import signal
import subprocess
import time

import pytest
import requests

from conftest import HOST, raw_error
from wsraw import ConnectionClosed, HandshakeError, WSClient

SIGNALS = [signal.SIGTERM, signal.SIGINT]
IDS = ["SIGTERM", "SIGINT"]


def wait_exit(h, timeout):
    try:
        return h.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_clients_get_1001_and_exit_zero(hub_factory, sig):
    h = hub_factory("--shutdown-timeout", "3")
    a = h.ws()
    b = h.ws()
    a.send_text('{"type":"relay","receivers":[%d],"body":"before"}' % b.id)
    assert b.recv_json()["body"] == "before"
    t0 = time.monotonic()
    h.proc.send_signal(sig)
    code_a, msgs_a = a.wait_close(timeout=5)
    code_b, msgs_b = b.wait_close(timeout=5)
    assert (code_a, code_b) == (1001, 1001), (code_a, code_b)
    assert msgs_a == [] and msgs_b == []
    rc = wait_exit(h, 3 + 2)
    elapsed = time.monotonic() - t0
    assert rc == 0, "exit status %r after %.1fs" % (rc, elapsed)
    assert elapsed <= 3 + 1.5, elapsed


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_idle_hub_exits_promptly(hub_factory, sig):
    h = hub_factory("--shutdown-timeout", "5")
    t0 = time.monotonic()
    h.proc.send_signal(sig)
    rc = wait_exit(h, 5 + 2)
    assert rc == 0, rc
    assert time.monotonic() - t0 <= 5 + 1.5
    # the port is closed once the process is gone
    with pytest.raises(requests.RequestException):
        requests.get(h.url("/healthz"), timeout=1)


@pytest.mark.parametrize("sig", SIGNALS, ids=IDS)
def test_draining_refuses_work_and_respects_timeout(hub_factory, sig):
    h = hub_factory("--shutdown-timeout", "3")
    # a client that never reads, so never answers the close: the hub drains
    # until the shutdown timeout
    stubborn = h.ws(auto_pong=False)
    polite = h.ws()
    t0 = time.monotonic()
    h.proc.send_signal(sig)

    code, _ = polite.wait_close(timeout=5)
    assert code == 1001, code

    # readiness: 503 {"error":{"code":"unavailable"}} or the port no longer answers
    seen = None
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline and h.proc.poll() is None:
        try:
            r = requests.get(h.url("/readyz"), timeout=0.5)
        except requests.RequestException:
            seen = "refused"
            break
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "unavailable", r.text
            assert r.headers.get("Content-Type", "").startswith("application/json")
            seen = 503
            break
        assert r.status_code == 200, (r.status_code, r.text)
        time.sleep(0.05)
    assert seen in (503, "refused"), "readyz still 200 %.1fs after the signal" % (
        time.monotonic() - t0)

    # new sessions are refused while draining (503) or the port is closed
    if h.proc.poll() is None:
        try:
            c = WSClient.connect(HOST, h.port, timeout=2)
        except HandshakeError as e:
            raw_error(e, 503, "unavailable")
        except (ConnectionClosed, OSError):
            pass
        else:
            c.abort()
            raise AssertionError("hub accepted a new WebSocket while draining")

    rc = wait_exit(h, 3 + 2)
    elapsed = time.monotonic() - t0
    assert rc == 0, "exit status %r after %.1fs" % (rc, elapsed)
    assert elapsed <= 3 + 1.5, elapsed
    # the stubborn client's close frame is waiting in its socket
    code, _ = stubborn.wait_close(timeout=2)
    assert code == 1001, code
