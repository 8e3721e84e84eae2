"""Shared fixtures for the msghub integration suite.

The hub under test is the binary named by $MSGHUB_BIN (ctest sets it). Each
test module starts its own hub(s) on free ports through `hub` (module scope,
default flags) or `hub_factory` (function scope, any flags). A hub's stderr
goes to a temp file and is attached to the report of every failing test.
"""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from wsraw import WSClient, raw_http  # noqa: E402

HOST = "127.0.0.1"
HTTP_TIMEOUT = 10.0
START_TIMEOUT = 10.0

DEFAULT_LIMITS = {"max_receivers": 255, "max_body_bytes": 1048576}

_LIVE_HUBS = []


def find_binary():
    path = os.environ.get("MSGHUB_BIN")
    if path:
        return path
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in sorted(glob.glob(os.path.join(here, "..", "..", "build*", "msghub"))):
        if os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    return None


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def now_ms():
    return int(time.time() * 1000)


class Hub:
    """One msghub process listening on 127.0.0.1:<free port>."""

    def __init__(self, args=(), env=None):
        self.args = [str(a) for a in args]
        self.env = env
        self.proc = None
        self.port = None
        self.clients = []
        self.log = tempfile.NamedTemporaryFile(prefix="msghub-stderr-", suffix=".log", delete=False)

    # ---- lifecycle ----------------------------------------------------

    def start(self):
        binary = find_binary()
        if not binary:
            pytest.fail("MSGHUB_BIN is not set and no build*/msghub exists", pytrace=False)
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("MSGHUB_") and k != "MSGHUB_BIN":
                del env[k]
        if self.env:
            env.update(self.env)
        last = ""
        for _attempt in range(3):
            self.port = free_port()
            cmd = [binary, "--listen", "%s:%d" % (HOST, self.port)] + self.args
            self.log.write(("=== %s\n" % " ".join(cmd)).encode())
            self.log.flush()
            self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=env,
                                         stdin=subprocess.DEVNULL)
            _LIVE_HUBS.append(self)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    r = requests.get(self.url("/healthz"), timeout=0.5)
                    if r.status_code == 200:
                        return self
                except requests.RequestException:
                    pass
                time.sleep(0.05)
            last = self.stderr_text()
            if self.proc.poll() is None:
                self.kill()
                pytest.fail("hub did not answer GET /healthz 200 within %.0fs; stderr:\n%s"
                            % (START_TIMEOUT, last[-4000:]), pytrace=False)
            if "in use" not in last.lower():
                break
        pytest.fail("hub exited during startup (rc=%r); stderr:\n%s"
                    % (self.proc.returncode, last[-4000:]), pytrace=False)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self):
        for c in self.clients:
            c.abort()
        self.clients = []
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self in _LIVE_HUBS:
            _LIVE_HUBS.remove(self)
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass

    def stderr_text(self):
        try:
            with open(self.log.name, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ---- HTTP ---------------------------------------------------------

    def url(self, path):
        return "http://%s:%d%s" % (HOST, self.port, path)

    def get(self, path, **kw):
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return requests.get(self.url(path), **kw)

    def post(self, path, **kw):
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return requests.post(self.url(path), **kw)

    def request(self, method, path, **kw):
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return requests.request(method, self.url(path), **kw)

    def raw_http(self, request, timeout=HTTP_TIMEOUT, method="GET"):
        return raw_http(HOST, self.port, request, timeout=timeout, method=method)

    def relay_http(self, receivers, body_raw, frm=None, headers=None, expect=200):
        """POST /relay with the body given as raw JSON text."""
        if isinstance(body_raw, str):
            body_raw = body_raw.encode()
        doc = b'{"receivers":' + json.dumps(receivers).encode() + b',"body":' + body_raw
        if frm is not None:
            doc += b',"from":' + json.dumps(frm).encode()
        doc += b"}"
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        r = self.post("/relay", data=doc, headers=h)
        assert r.status_code == expect, (r.status_code, r.text)
        return r

    def metrics(self):
        r = self.get("/metrics")
        assert r.status_code == 200, r.text
        return parse_metrics(r.text)

    # ---- WebSocket ----------------------------------------------------

    def ws_raw(self, token=None, path="/ws", headers=None, auto_pong=True, rcvbuf=None,
               timeout=5.0):
        """Connects without reading anything."""
        if token is not None:
            path = path + ("&" if "?" in path else "?") + "token=" + token
        c = WSClient.connect(HOST, self.port, path=path, headers=headers, auto_pong=auto_pong,
                             rcvbuf=rcvbuf, timeout=timeout)
        self.clients.append(c)
        return c

    def ws(self, token=None, headers=None, auto_pong=True, rcvbuf=None, resumed=None):
        """Connects, reads and checks the hello, which is kept in c.hello;
        c.id and c.token are set from it."""
        c = self.ws_raw(token=token, headers=headers, auto_pong=auto_pong, rcvbuf=rcvbuf)
        hello = c.recv_json()
        check_hello(hello)
        if resumed is not None:
            assert hello["resumed"] is resumed, hello
        c.hello = hello
        c.id = hello["id"]
        c.token = hello["token"]
        return c

    def close_clients(self):
        for c in self.clients:
            c.close(timeout=1.0)
        self.clients = []


def check_hello(hello, limits=None):
    assert hello.get("type") == "hello", hello
    assert set(hello) == {"type", "id", "token", "resumed", "ack", "seq", "recovered",
                          "limits"}, hello
    assert is_id(hello["id"]), hello
    assert isinstance(hello["token"], str) and hello["token"], hello
    assert isinstance(hello["resumed"], bool), hello
    assert hello["ack"] in ("client", "auto"), hello
    assert type(hello["seq"]) is int and hello["seq"] >= 0, hello
    assert isinstance(hello["recovered"], bool), hello
    assert isinstance(hello["limits"], dict), hello
    if limits is not None:
        assert hello["limits"] == limits, hello


def is_id(v):
    return type(v) is int and 1 <= v <= 2**64 - 1


def parse_metrics(text):
    """{'name{labels}': float} from Prometheus text."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)(?:\s+\S+)?$", line)
        assert m, "bad metrics line %r" % line
        out[m.group(1)] = float(m.group(2))
    return out


def http_error(resp, status, code):
    """Asserts an HTTP error response of the contract's shape."""
    assert resp.status_code == status, (resp.status_code, resp.headers, resp.text)
    ctype = resp.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip().lower() == "application/json", (ctype, resp.text)
    doc = resp.json()
    assert set(doc) == {"error"}, doc
    assert set(doc["error"]) == {"code", "message"}, doc
    assert doc["error"]["code"] == code, doc
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"], doc
    return doc


def raw_error(resp, status, code):
    """Same check for a RawHTTPResponse or HandshakeError (whose status line
    wsraw already checked), with an exact Content-Length."""
    assert resp.status == status, (resp.status, resp.headers, resp.body[:500])
    assert resp.headers.get("content-length") == str(len(resp.body)), (resp.headers, resp.body)
    ctype = resp.headers.get("content-type", "")
    assert ctype.split(";")[0].strip().lower() == "application/json", (ctype, resp.body[:500])
    doc = resp.json()
    assert set(doc) == {"error"}, doc
    assert set(doc["error"]) == {"code", "message"}, doc
    assert doc["error"]["code"] == code, doc
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"], doc
    return doc


def ws_error(frame, code, ref=None, message=None):
    """Asserts an error frame {"type":"error","code":...,"message":...[,"ref":...]}."""
    keys = {"type", "code", "message"} | ({"ref"} if ref is not None else set())
    assert set(frame) == keys, frame
    assert frame["type"] == "error", frame
    assert frame["code"] == code, frame
    assert isinstance(frame["message"], str) and frame["message"], frame
    if message is not None:
        assert frame["message"] == message, frame
    if ref is not None:
        assert frame["ref"] == ref and type(frame["ref"]) is type(ref), frame


def check_message(frame, frm, body=None, seq=None):
    """A message frame of contract v2; seq, when given, is this receiver's."""
    assert set(frame) == {"type", "id", "seq", "from", "body", "ts"}, frame
    assert list(frame)[:3] == ["type", "id", "seq"], frame
    assert frame["type"] == "message", frame
    assert type(frame["seq"]) is int and frame["seq"] >= 1, frame
    if seq is not None:
        assert frame["seq"] == seq, frame
    assert isinstance(frame["id"], str) and frame["id"], frame
    assert frame["from"] == frm and type(frame["from"]) is int, frame
    assert type(frame["ts"]) is int, frame
    if body is not None:
        assert frame["body"] == body, frame


_alive_seq = [0]


def assert_alive(a, b):
    """a still answers a ping; a relay a->b arrives at b as b's very next
    message (so nothing refused earlier was delivered), and b->a too."""
    _alive_seq[0] += 1
    n = _alive_seq[0]
    a.send_text('{"type":"ping"}')
    assert a.recv_json() == {"type": "pong"}
    a.send_text('{"type":"relay","receivers":[%d],"body":{"alive":%d}}' % (b.id, n))
    m = b.recv_json()
    check_message(m, a.id, {"alive": n})
    b.send_text('{"type":"relay","receivers":[%d],"body":{"alive_back":%d}}' % (a.id, n))
    m = a.recv_json()
    check_message(m, b.id, {"alive_back": n})


def wait_until(pred, timeout=3.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---- fixtures -------------------------------------------------------------

@pytest.fixture(scope="module")
def hub():
    h = Hub().start()
    yield h
    h.stop()


@pytest.fixture
def hub_factory():
    hubs = []

    def make(*args, env=None):
        h = Hub(args, env=env)
        hubs.append(h)
        return h.start()

    yield make
    for h in hubs:
        h.stop()


@pytest.fixture(autouse=True)
def _close_clients_after_test():
    yield
    for h in list(_LIVE_HUBS):
        h.close_clients()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for h in _LIVE_HUBS:
            text = h.stderr_text()
            rep.sections.append(("msghub stderr (port %s, args %s)" % (h.port, " ".join(h.args)),
                                 text[-6000:]))


def pytest_sessionfinish(session, exitstatus):
    for h in list(_LIVE_HUBS):
        h.kill()
