"""A tiny synchronous WebSocket client over a raw socket (RFC 6455).

It exists so tests can do what a well-behaved library will not: send text
frames that are not UTF-8, fragment messages by hand, interleave control
frames, stop reading, never answer pings, and see exact close codes. Every
read has a deadline; nothing here can block forever.

Also holds small raw-HTTP and raw-JSON helpers used by the tests.
"""

import base64
import hashlib
import json
import os
import re
import socket
import struct
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DEFAULT_TIMEOUT = 5.0


class RecvTimeout(AssertionError):
    """Nothing (or not enough) arrived before the deadline."""


class ProtocolViolation(AssertionError):
    """The server sent something RFC 6455 forbids."""


class HandshakeError(Exception):
    """The server answered the upgrade with something other than 101."""

    def __init__(self, status, reason, headers, body, status_line=b""):
        super().__init__("upgrade refused: HTTP %s %s: %r" % (status, reason, body[:300]))
        self.status_line = status_line
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))


class ConnectionClosed(Exception):
    """The connection ended. code is the close code of the server's close
    frame, or None when the TCP connection ended without one."""

    def __init__(self, code, reason=b"", detail=""):
        super().__init__("connection closed: code=%r reason=%r %s" % (code, reason, detail))
        self.code = code
        self.reason = reason
        self.detail = detail


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "payload")

    def __init__(self, fin, rsv, opcode, payload):
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.payload = payload

    def __repr__(self):
        return "Frame(fin=%r, op=%#x, len=%d, %r)" % (self.fin, self.opcode, len(self.payload),
                                                     self.payload[:80])


class Message:
    __slots__ = ("opcode", "payload")

    def __init__(self, opcode, payload):
        self.opcode = opcode
        self.payload = payload

    def __repr__(self):
        return "Message(op=%#x, len=%d, %r)" % (self.opcode, len(self.payload), self.payload[:200])


def mask_bytes(key, data):
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def encode_frame(opcode, payload, fin=True, rsv=0, masked=True, mask_key=None):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload)
    mbit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if masked:
        key = mask_key if mask_key is not None else os.urandom(4)
        return head + key + mask_bytes(key, payload)
    return head + payload


def _read_http_head(sock, buf, deadline, limit=65536):
    """Reads until the end of an HTTP head. Returns (head_bytes, rest)."""
    while b"\r\n\r\n" not in buf:
        if len(buf) > limit:
            raise ProtocolViolation("HTTP head longer than %d bytes" % limit)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RecvTimeout("no complete HTTP response head; got %r" % buf[:300])
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise RecvTimeout("no complete HTTP response head; got %r" % buf[:300])
        except ConnectionResetError:
            raise ConnectionClosed(None, b"", "reset before the HTTP response; got %r" % buf[:300])
        if not data:
            raise ConnectionClosed(None, b"", "EOF before the HTTP response; got %r" % buf[:300])
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


_STATUS_LINE = re.compile(r"^(HTTP/1\.[01]) ([1-5][0-9][0-9]) ([^\r\n]*)$")


def _request_version(request):
    """HTTP version of a formatted request's request line."""
    line = request.split(b"\r\n", 1)[0].decode("iso-8859-1")
    return line.rsplit(" ", 1)[-1]


def _parse_http_head(head, request_version="HTTP/1.1"):
    """Status, reason, headers. Strict: an HTTP/1.1 request must get an
    "HTTP/1.1 <3 digits> <reason>" status line (RFC 9112 section 4; an
    HTTP/1.0 reply to it makes clients such as python-websockets fail)."""
    lines = head.decode("iso-8859-1").split("\r\n")
    m = _STATUS_LINE.match(lines[0])
    if not m:
        raise ProtocolViolation("bad status line %r" % lines[0])
    if request_version == "HTTP/1.1" and m.group(1) != "HTTP/1.1":
        raise ProtocolViolation("status line %r answers an HTTP/1.1 request" % lines[0])
    status = int(m.group(2))
    reason = m.group(3)
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        if name in headers:
            headers[name] += ", " + value
        else:
            headers[name] = value
    return status, reason, headers


def _read_http_body(sock, headers, rest, deadline, method="GET", status=200):
    if method == "HEAD" or status in (101, 204, 304) or 100 <= status < 200:
        return rest
    if "content-length" in headers:
        n = int(headers["content-length"])
        buf = rest
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RecvTimeout("HTTP body incomplete: %d of %d bytes" % (len(buf), n))
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                raise RecvTimeout("HTTP body incomplete: %d of %d bytes" % (len(buf), n))
            except ConnectionResetError:
                break
            if not data:
                break
            buf += data
        return buf[:n]
    if "chunked" in headers.get("transfer-encoding", "").lower():
        buf = rest
        out = b""
        while True:
            while b"\r\n" not in buf:
                buf += _recv_some(sock, deadline)
            line, buf = buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                return out
            while len(buf) < size + 2:
                buf += _recv_some(sock, deadline)
            out += buf[:size]
            buf = buf[size + 2:]
    # No length: until EOF.
    buf = rest
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RecvTimeout("HTTP body without length did not end (no EOF)")
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise RecvTimeout("HTTP body without length did not end (no EOF)")
        except ConnectionResetError:
            return buf
        if not data:
            return buf
        buf += data


def _recv_some(sock, deadline):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RecvTimeout("HTTP chunked body incomplete")
    sock.settimeout(remaining)
    data = sock.recv(65536)
    if not data:
        raise ConnectionClosed(None, b"", "EOF inside chunked body")
    return data


class RawHTTPResponse:
    def __init__(self, status, reason, headers, body, status_line=b""):
        self.status_line = status_line
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "RawHTTPResponse(%d %s, %r, %r)" % (self.status, self.reason, self.headers,
                                                   self.body[:300])


def raw_http(host, port, request, timeout=DEFAULT_TIMEOUT, method="GET"):
    """Sends request (bytes, already formatted) and reads one response."""
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.sendall(request)
        head, rest = _read_http_head(sock, b"", deadline)
        status, reason, headers = _parse_http_head(head, _request_version(request))
        body = _read_http_body(sock, headers, rest, deadline, method=method, status=status)
        return RawHTTPResponse(status, reason, headers, body, head.split(b"\r\n", 1)[0])
    finally:
        sock.close()


class WSClient:
    """One WebSocket connection. Use WSClient.connect(...)."""

    def __init__(self, sock, buf, response_headers, auto_pong=True):
        self.sock = sock
        self.buf = bytearray(buf)
        self.response_headers = response_headers
        self.auto_pong = auto_pong
        self.pings = []          # payloads of pings received from the server
        self.pongs = []          # payloads of pongs received from the server
        self.close_sent = False
        self.closed = False
        self.close_code = None
        self.close_reason = b""
        self._frag_op = None
        self._frag_parts = []
        self.hello = None

    # ---- connection -------------------------------------------------

    @classmethod
    def connect(cls, host, port, path="/ws", headers=None, timeout=DEFAULT_TIMEOUT,
                auto_pong=True, rcvbuf=None):
        deadline = time.monotonic() + timeout
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            lines = [
                "GET %s HTTP/1.1" % path,
                "Host: %s:%d" % (host, port),
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: %s" % key,
                "Sec-WebSocket-Version: 13",
            ]
            for name, value in (headers or {}).items():
                lines.append("%s: %s" % (name, value))
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1"))
            head, rest = _read_http_head(sock, b"", deadline)
            status, reason, rh = _parse_http_head(head)
            if status != 101:
                body = _read_http_body(sock, rh, rest, deadline, status=status)
                raise HandshakeError(status, reason, rh, body, head.split(b"\r\n", 1)[0])
            expect = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            if rh.get("sec-websocket-accept") != expect:
                raise ProtocolViolation("bad Sec-WebSocket-Accept %r (want %r)"
                                        % (rh.get("sec-websocket-accept"), expect))
            if rh.get("upgrade", "").lower() != "websocket":
                raise ProtocolViolation("bad Upgrade header %r" % rh.get("upgrade"))
            if "sec-websocket-extensions" in rh:
                raise ProtocolViolation("server negotiated an extension we did not offer: %r"
                                        % rh["sec-websocket-extensions"])
        except BaseException:
            sock.close()
            raise
        return cls(sock, rest, rh, auto_pong=auto_pong)

    # ---- sending ----------------------------------------------------

    def send_raw(self, data, timeout=DEFAULT_TIMEOUT):
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise RecvTimeout("send of %d bytes did not complete in %.1fs" % (len(data), timeout))
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ConnectionClosed(None, b"", "send failed: %r" % e)

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, masked=True, timeout=DEFAULT_TIMEOUT):
        self.send_raw(encode_frame(opcode, payload, fin=fin, rsv=rsv, masked=masked), timeout)

    def send_text(self, data, timeout=DEFAULT_TIMEOUT):
        """A single text frame; data may be str or (possibly invalid UTF-8) bytes."""
        self.send_frame(OP_TEXT, data, timeout=timeout)

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_json(self, obj):
        self.send_text(json.dumps(obj, separators=(",", ":")))

    def send_fragments(self, parts, opcode=OP_TEXT, ping_between=False):
        """One message split into len(parts) frames (parts are bytes/str)."""
        assert len(parts) >= 1
        out = b""
        for i, part in enumerate(parts):
            op = opcode if i == 0 else OP_CONT
            out += encode_frame(op, part, fin=(i == len(parts) - 1))
            if ping_between and i < len(parts) - 1:
                out += encode_frame(OP_PING, b"between-%d" % i)
        self.send_raw(out)

    def ping(self, payload=b""):
        self.send_frame(OP_PING, payload)

    def pong(self, payload=b""):
        self.send_frame(OP_PONG, payload)

    # ---- receiving --------------------------------------------------

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RecvTimeout("timed out waiting for a frame (have %d of %d bytes)"
                                  % (len(self.buf), n))
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(262144)
            except socket.timeout:
                raise RecvTimeout("timed out waiting for a frame (have %d of %d bytes)"
                                  % (len(self.buf), n))
            except (ConnectionResetError, BrokenPipeError) as e:
                self.closed = True
                raise ConnectionClosed(None, b"", "TCP reset: %r" % e)
            if not data:
                self.closed = True
                raise ConnectionClosed(None, b"", "TCP EOF without a close frame")
            self.buf += data

    def recv_frame(self, timeout=DEFAULT_TIMEOUT):
        if self.closed:
            raise ConnectionClosed(self.close_code, self.close_reason, "already closed")
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80:
            raise ProtocolViolation("server frame is masked")
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack("!H", bytes(self.buf[2:4]))[0]
            pos = 4
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack("!Q", bytes(self.buf[2:10]))[0]
            pos = 10
        self._fill(pos + n, deadline)
        payload = bytes(self.buf[pos:pos + n])
        del self.buf[:pos + n]
        fin = bool(b0 & 0x80)
        rsv = (b0 >> 4) & 7
        op = b0 & 0xF
        if rsv:
            raise ProtocolViolation("server frame has RSV bits %d without an extension" % rsv)
        if op >= 8 and (not fin or n > 125):
            raise ProtocolViolation("bad control frame op=%#x fin=%r len=%d" % (op, fin, n))
        return Frame(fin, rsv, op, payload)

    def recv_message(self, timeout=DEFAULT_TIMEOUT):
        """Next data message (fragments reassembled). Answers pings when
        auto_pong is on. Raises ConnectionClosed on a close frame or EOF."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            fr = self.recv_frame(timeout=remaining if remaining > 0 else 0.000001)
            if fr.opcode == OP_PING:
                self.pings.append((time.monotonic(), fr.payload))
                if self.auto_pong and not self.close_sent:
                    try:
                        self.pong(fr.payload)
                    except ConnectionClosed:
                        pass
                continue
            if fr.opcode == OP_PONG:
                self.pongs.append(fr.payload)
                continue
            if fr.opcode == OP_CLOSE:
                code = None
                reason = b""
                if len(fr.payload) >= 2:
                    code = struct.unpack("!H", fr.payload[:2])[0]
                    reason = fr.payload[2:]
                self.close_code = code
                self.close_reason = reason
                if not self.close_sent:
                    try:
                        self.send_frame(OP_CLOSE, fr.payload[:2])
                    except (ConnectionClosed, RecvTimeout, OSError):
                        pass
                    self.close_sent = True
                self.closed = True
                try:
                    self.sock.close()
                except OSError:
                    pass
                raise ConnectionClosed(code, reason, "close frame")
            if fr.opcode in (OP_TEXT, OP_BINARY):
                if self._frag_op is not None:
                    raise ProtocolViolation("new data frame inside a fragmented message")
                if fr.fin:
                    return Message(fr.opcode, fr.payload)
                self._frag_op = fr.opcode
                self._frag_parts = [fr.payload]
                continue
            if fr.opcode == OP_CONT:
                if self._frag_op is None:
                    raise ProtocolViolation("continuation frame without a message")
                self._frag_parts.append(fr.payload)
                if fr.fin:
                    msg = Message(self._frag_op, b"".join(self._frag_parts))
                    self._frag_op = None
                    self._frag_parts = []
                    return msg
                continue
            raise ProtocolViolation("unknown opcode %#x" % fr.opcode)

    def recv_text(self, timeout=DEFAULT_TIMEOUT):
        """Raw bytes of the next message, which must be a text frame of valid UTF-8."""
        msg = self.recv_message(timeout)
        if msg.opcode != OP_TEXT:
            raise ProtocolViolation("expected a text message, got %r" % msg)
        try:
            msg.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation("text message is not UTF-8: %r" % msg.payload[:200])
        return msg.payload

    def recv_json(self, timeout=DEFAULT_TIMEOUT):
        raw = self.recv_text(timeout)
        try:
            obj = json.loads(raw)
        except ValueError:
            raise ProtocolViolation("message is not JSON: %r" % raw[:300])
        if not isinstance(obj, dict):
            raise ProtocolViolation("message is not a JSON object: %r" % raw[:300])
        return obj

    def expect_silence(self, seconds):
        """Asserts that no data message arrives within `seconds` (control frames are fine)."""
        try:
            msg = self.recv_message(timeout=seconds)
        except RecvTimeout:
            return
        raise AssertionError("expected no message, got %r" % msg)

    def wait_close(self, timeout=DEFAULT_TIMEOUT):
        """Reads until the connection ends. Returns (close code or None, [messages before])."""
        deadline = time.monotonic() + timeout
        msgs = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RecvTimeout("connection did not close within %.1fs (%d messages read)"
                                  % (timeout, len(msgs)))
            try:
                msgs.append(self.recv_message(timeout=remaining))
            except ConnectionClosed as e:
                return e.code, msgs

    # ---- closing ----------------------------------------------------

    def close(self, code=1000, timeout=2.0):
        """Clean close handshake: send close, wait for the server's close."""
        if self.closed:
            return self.close_code
        if not self.close_sent:
            try:
                self.send_frame(OP_CLOSE, struct.pack("!H", code))
            except (ConnectionClosed, RecvTimeout, OSError):
                self.abort()
                return None
            self.close_sent = True
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    self.recv_message(timeout=remaining)
                except ConnectionClosed:
                    break
                except (RecvTimeout, ProtocolViolation, OSError):
                    break
        finally:
            self.abort()
        return self.close_code

    def abort(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


# ---- raw JSON helpers ----------------------------------------------------

_WS = b" \t\r\n"


def _skip_ws(data, i):
    while i < len(data) and data[i] in _WS:
        i += 1
    return i


def _skip_string(data, i):
    assert data[i:i + 1] == b'"'
    i += 1
    while True:
        c = data[i]
        if c == 0x5C:  # backslash
            i += 2
            continue
        i += 1
        if c == 0x22:
            return i


def _skip_value(data, i):
    c = data[i:i + 1]
    if c == b'"':
        return _skip_string(data, i)
    if c in (b"{", b"["):
        depth = 0
        while True:
            c = data[i:i + 1]
            if c == b'"':
                i = _skip_string(data, i)
                continue
            if c in (b"{", b"["):
                depth += 1
            elif c in (b"}", b"]"):
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
    while i < len(data) and data[i:i + 1] not in (b",", b"}", b"]") and data[i] not in _WS:
        i += 1
    return i


def raw_members(data):
    """Raw byte spans of the members of a top-level JSON object:
    {key: raw value bytes, exactly as they appear in data}."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    i = _skip_ws(data, 0)
    assert data[i:i + 1] == b"{", data[:100]
    i += 1
    out = {}
    i = _skip_ws(data, i)
    if data[i:i + 1] == b"}":
        return out
    while True:
        i = _skip_ws(data, i)
        j = _skip_string(data, i)
        key = json.loads(data[i:j])
        i = _skip_ws(data, j)
        assert data[i:i + 1] == b":", data[i:i + 50]
        i = _skip_ws(data, i + 1)
        j = _skip_value(data, i)
        out[key] = data[i:j]
        i = _skip_ws(data, j)
        if data[i:i + 1] == b",":
            i += 1
            continue
        assert data[i:i + 1] == b"}", data[i:i + 50]
        return out
