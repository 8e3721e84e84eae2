"""Minimal asyncio WebSocket and HTTP/1.1 clients for the fault suite.

Raw sockets rather than a library, so that a client can do what a fault
needs: stop reading altogether (the kernel buffers fill, the hub's outbound
buffer grows), shrink its receive buffer, and drop its connection with a
TCP reset while unread data sits in its buffers. Server frames are not
masked; client frames are (RFC 6455), with the XOR done on big integers so
100 KB bodies cost little CPU.
"""

import asyncio
import base64
import json
import os
import socket
import struct

HOST = "127.0.0.1"


class HandshakeError(Exception):
    """The hub answered the upgrade with something other than 101."""

    def __init__(self, status, body):
        super().__init__("upgrade refused: HTTP %s %r" % (status, body[:200]))
        self.status = status
        self.body = body


class Closed(Exception):
    """The connection ended; code is the hub's close code, or None when the
    TCP connection ended without a close frame."""

    def __init__(self, code=None):
        super().__init__("closed (code %r)" % code)
        self.code = code


def _mask(key, data):
    n = len(data)
    if not n:
        return data
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def encode_frame(opcode, payload):
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + _mask(key, payload)


async def _open(port, timeout, rcvbuf=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (HOST, port)), timeout)
        # a small stream limit too, so that a client that stops reading
        # stops taking bytes off the socket soon
        limit = max(rcvbuf or 0, 1 << 16)
        return await asyncio.open_connection(sock=sock, limit=limit)
    except BaseException:
        sock.close()
        raise


class WSConn:
    """One WebSocket connection. `await WSConn.connect(port, path)`."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.close_code = None

    @classmethod
    async def connect(cls, port, path="/ws", timeout=5.0, rcvbuf=None):
        reader, writer = await _open(port, timeout, rcvbuf)
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n" % (path, HOST, port, key)).encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status = int(head.split(b" ", 2)[1])
            if status != 101:
                body = b""
                try:
                    body = await asyncio.wait_for(reader.read(4096), 1.0)
                except (asyncio.TimeoutError, OSError):
                    pass
                raise HandshakeError(status, body)
            return cls(reader, writer)
        except BaseException:
            writer.close()
            raise

    def send_text(self, text):
        if isinstance(text, str):
            text = text.encode()
        self.writer.write(encode_frame(0x1, text))

    def send_json(self, obj):
        self.send_text(json.dumps(obj, separators=(",", ":")))

    async def drain(self):
        await self.writer.drain()

    async def recv(self):
        """The next text message's payload (bytes). Answers pings; raises
        Closed on a close frame or EOF. Fragmented messages are joined."""
        parts = []
        while True:
            try:
                b0, b1 = await self.reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await self.reader.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
                payload = await self.reader.readexactly(n) if n else b""
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                raise Closed(self.close_code)
            op = b0 & 0x0F
            if op == 0x9:
                self.writer.write(encode_frame(0xA, payload))
                continue
            if op == 0xA:
                continue
            if op == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                try:
                    self.writer.write(encode_frame(0x8, payload[:2]))
                except (OSError, RuntimeError):
                    pass
                self.abort(reset=False)
                raise Closed(self.close_code)
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts)

    def abort(self, reset=True):
        """Drops the connection at once. reset: with SO_LINGER 0, so the
        kernel sends RST and throws away whatever was not read (a client
        whose network or process dies)."""
        try:
            if reset:
                sock = self.writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.writer.transport.abort()
        except (OSError, RuntimeError, AttributeError):
            pass


class HTTPConn:
    """A keep-alive HTTP/1.1 connection for POST /relay."""

    def __init__(self, port, reader, writer):
        self.port = port
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port, timeout=5.0):
        reader, writer = await _open(port, timeout)
        return cls(port, reader, writer)

    async def post_json(self, path, body, timeout):
        """(status, parsed JSON or None). Raises on a broken connection or
        timeout (the outcome of the request is then unknown)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        head = ("POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % (path, HOST, self.port, len(data)))
        self.writer.write(head.encode() + data)

        async def read():
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = 0
            for line in lines[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            raw = await self.reader.readexactly(length) if length else b""
            try:
                return status, json.loads(raw) if raw else None
            except ValueError:
                return status, None

        return await asyncio.wait_for(read(), timeout)

    def close(self):
        try:
            self.writer.transport.abort()
        except (OSError, RuntimeError, AttributeError):
            pass
