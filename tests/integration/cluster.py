"""Helpers of the distributed suites (test_distributed_*.py).

A `Cluster` is a set of msghub instances sharing one Redis, one RabbitMQ, one
key/queue prefix (unique per Cluster, "mhtest-<pid>-<random>") and one token
secret. The backplane comes from MSGHUB_TEST_REDIS_URL / MSGHUB_TEST_AMQP_URL
(scripts/test sets them through scripts/test-backplane); without them the
distributed suites are skipped with a message that says so.

`Cluster.cleanup()` stops its hubs, deletes its Redis keys (SCAN + DEL of
"<prefix>:*") and its RabbitMQ queues (P.inst.<instance> for every instance
it started; P.stranded and P.dlx too, which only v1 hubs declared) through a minimal AMQP 0-9-1
client, so nothing is left on a shared server. Should that fail (a test
killed mid-way), instance queues expire by themselves (x-expires =
--queue-expiry); P.stranded and P.dlx would stay.

`PrivateRedis` / `PrivateRabbit` wrap scripts/private-redis and
scripts/private-rabbitmq for the tests that restart a server: they never
touch the machine's own servers.
"""

import asyncio
import base64
import json
import os
import secrets
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse

import pytest
import requests

from conftest import HOST, Hub, check_hello, is_id

REDIS_URL = os.environ.get("MSGHUB_TEST_REDIS_URL", "")
AMQP_URL = os.environ.get("MSGHUB_TEST_AMQP_URL", "")

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCRIPTS = os.path.join(REPO, "scripts")


def require_backplane():
    """Skips the calling module when no backplane is configured."""
    if not REDIS_URL or not AMQP_URL:
        pytest.skip("distributed suites need MSGHUB_TEST_REDIS_URL and MSGHUB_TEST_AMQP_URL "
                    "(run scripts/test, or eval \"$(scripts/test-backplane)\" first)",
                    allow_module_level=True)


def unique_prefix():
    return "mhtest-%d-%s" % (os.getpid(), secrets.token_hex(4))


# ---- Redis: a minimal RESP2 client ---------------------------------------------------------

class RespError(Exception):
    pass


class Redis:
    def __init__(self, url, timeout=5.0):
        u = urllib.parse.urlparse(url)
        assert u.scheme == "redis", url
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 6379
        self.password = urllib.parse.unquote(u.password) if u.password else None
        self.db = int(u.path.strip("/") or 0)
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def connect(self):
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.buf = b""
        if self.password:
            self.cmd("AUTH", self.password)
        if self.db:
            self.cmd("SELECT", self.db)
        return self

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n + 2:]
        return out

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RespError("bad reply %r" % line)

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._reply()

    def scan_keys(self, pattern):
        keys, cursor = [], b"0"
        while True:
            cursor, batch = self.cmd("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            keys += batch
            if cursor in (b"0", 0):
                return keys


def delete_redis_keys(url, prefix):
    """Deletes every key "<prefix>:*"; returns how many."""
    with Redis(url) as r:
        keys = r.scan_keys(prefix + ":*")
        for i in range(0, len(keys), 500):
            r.cmd("DEL", *keys[i:i + 500])
        return len(keys)


# ---- RabbitMQ: a minimal AMQP 0-9-1 client (enough to delete and inspect) -----------------

class AmqpError(Exception):
    pass


class Amqp:
    FRAME_END = 0xCE

    def __init__(self, url, timeout=5.0):
        u = urllib.parse.urlparse(url)
        assert u.scheme == "amqp", url
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 5672
        self.user = urllib.parse.unquote(u.username or "guest")
        self.password = urllib.parse.unquote(u.password or "guest")
        vhost = urllib.parse.unquote(u.path[1:]) if len(u.path) > 1 else ""
        self.vhost = vhost or "/"
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    @staticmethod
    def _shortstr(s):
        b = s.encode() if isinstance(s, str) else s
        return struct.pack("!B", len(b)) + b

    @staticmethod
    def _longstr(s):
        b = s.encode() if isinstance(s, str) else s
        return struct.pack("!I", len(b)) + b

    def _send_method(self, channel, cls, meth, args=b""):
        payload = struct.pack("!HH", cls, meth) + args
        self.sock.sendall(struct.pack("!BHI", 1, channel, len(payload)) + payload
                          + bytes([self.FRAME_END]))

    def _recv(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("RabbitMQ closed the connection")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _recv_method(self, channel, want):
        """Next method frame on channel; (class, method, args). Raises on a
        channel or connection close."""
        while True:
            ftype, ch, size = struct.unpack("!BHI", self._recv(7))
            payload = self._recv(size)
            if self._recv(1)[0] != self.FRAME_END:
                raise AmqpError("bad frame end")
            if ftype != 1:
                continue  # heartbeats, headers, bodies: not expected here
            cls, meth = struct.unpack("!HH", payload[:4])
            args = payload[4:]
            if (cls, meth) == (20, 40):  # channel.close
                code = struct.unpack("!H", args[:2])[0]
                text = args[3:3 + args[2]].decode(errors="replace")
                self._send_method(ch, 20, 41)
                raise AmqpError("channel closed: %d %s" % (code, text))
            if (cls, meth) == (10, 50):  # connection.close
                code = struct.unpack("!H", args[:2])[0]
                text = args[3:3 + args[2]].decode(errors="replace")
                self._send_method(0, 10, 51)
                raise AmqpError("connection closed: %d %s" % (code, text))
            if ch == channel and (cls, meth) == want:
                return cls, meth, args

    def connect(self):
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self._recv_method(0, (10, 10))  # connection.start
        self._send_method(0, 10, 11, struct.pack("!I", 0) + self._shortstr("PLAIN")
                          + self._longstr("\0%s\0%s" % (self.user, self.password))
                          + self._shortstr("en_US"))
        _, _, args = self._recv_method(0, (10, 30))  # connection.tune
        channel_max, frame_max, _hb = struct.unpack("!HIH", args[:8])
        self._send_method(0, 10, 31, struct.pack("!HIH", channel_max, frame_max, 0))
        self._send_method(0, 10, 40, self._shortstr(self.vhost) + self._shortstr("") + b"\x00")
        self._recv_method(0, (10, 41))
        self.channel = 0
        self._open_channel()
        return self

    def _open_channel(self):
        self.channel += 1
        self._send_method(self.channel, 20, 10, self._shortstr(""))
        self._recv_method(self.channel, (20, 11))

    def close(self):
        if not self.sock:
            return
        try:
            self._send_method(0, 10, 50, struct.pack("!H", 200) + self._shortstr("bye")
                              + struct.pack("!HH", 0, 0))
            self._recv_method(0, (10, 51))
        except (OSError, AmqpError, ConnectionError):
            pass
        self.sock.close()
        self.sock = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    def delete_queue(self, name):
        """Returns the number of messages it held (0 when it did not exist)."""
        self._send_method(self.channel, 50, 40, struct.pack("!H", 0) + self._shortstr(name)
                          + b"\x00")
        _, _, args = self._recv_method(self.channel, (50, 41))
        return struct.unpack("!I", args[:4])[0]

    def delete_exchange(self, name):
        self._send_method(self.channel, 40, 20, struct.pack("!H", 0) + self._shortstr(name)
                          + b"\x00")
        self._recv_method(self.channel, (40, 21))

    def queue_info(self, name):
        """(messages ready, consumers) of an existing queue, or None when it
        does not exist (passive declare; a 404 closes the channel, reopened)."""
        self._send_method(self.channel, 50, 10, struct.pack("!H", 0) + self._shortstr(name)
                          + b"\x01" + struct.pack("!I", 0))
        try:
            _, _, args = self._recv_method(self.channel, (50, 11))
        except AmqpError as e:
            if "404" not in str(e):
                raise
            self._open_channel()
            return None
        qlen = args[0]
        return struct.unpack("!II", args[1 + qlen:9 + qlen])


def delete_amqp_names(url, prefix, instances):
    with Amqp(url) as a:
        for inst in instances:
            a.delete_queue("%s.inst.%s" % (prefix, inst))
        a.delete_queue(prefix + ".stranded")
        a.delete_exchange(prefix + ".dlx")


# ---- private servers ------------------------------------------------------------------------

def free_port_pair(offset=20000):
    """A port p in [20000, 40000) with p and p + offset free (RabbitMQ also
    listens on p + 20000 for Erlang distribution)."""
    import random
    for _ in range(200):
        p = random.randrange(20000, 40000)
        ok = True
        for q in (p, p + offset):
            s = socket.socket()
            try:
                s.bind((HOST, q))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return p
    raise RuntimeError("no free port pair")


class _PrivateServer:
    script = None
    name = None

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mhtest-%s-" % self.name)
        self.port = free_port_pair()
        self.url = None

    def _run(self, *args, timeout=120):
        r = subprocess.run([os.path.join(SCRIPTS, self.script)] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError("%s %s failed (rc=%d): %s" % (self.script, " ".join(args),
                                                             r.returncode, r.stderr.decode()))
        return r.stdout.decode().strip()

    def start(self):
        self.url = self._run("start", self.dir, str(self.port))
        return self

    def stop(self):
        self._run("stop", self.dir)

    def destroy(self):
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
        subprocess.run(["rm", "-rf", self.dir])


class PrivateRedis(_PrivateServer):
    script = "private-redis"
    name = "redis"

    def restart_keeping_data(self):
        """SHUTDOWN SAVE (writes dump.rdb into DIR), then start again: what
        a Redis with persistence does on a clean restart."""
        with Redis(self.url) as r:
            try:
                r.cmd("SHUTDOWN", "SAVE")
            except (ConnectionError, OSError):
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            s = socket.socket()
            try:
                s.connect((HOST, self.port))
            except OSError:
                break
            finally:
                s.close()
            time.sleep(0.05)


class PrivateRabbit(_PrivateServer):
    script = "private-rabbitmq"
    name = "rabbitmq"


# ---- the cluster ----------------------------------------------------------------------------

class Cluster:
    """Hubs sharing one backplane, prefix and token secret (set .secret to
    None before starting hubs to start them without --token-secret)."""

    def __init__(self, redis_url=None, amqp_url=None, presence_ttl=None, queue_message_ttl=None,
                 queue_expiry=None, extra=()):
        self.redis_url = redis_url or REDIS_URL
        self.amqp_url = amqp_url or AMQP_URL
        self.prefix = unique_prefix()
        self.secret = secrets.token_hex(16)
        self.opts = []
        if presence_ttl is not None:
            self.opts += ["--presence-ttl", presence_ttl]
        if queue_message_ttl is not None:
            self.opts += ["--queue-message-ttl", queue_message_ttl]
        if queue_expiry is not None:
            self.opts += ["--queue-expiry", queue_expiry]
        self.opts += ["--shutdown-timeout", 2] + list(extra)
        self.presence_ttl = presence_ttl if presence_ttl is not None else 15
        self.queue_message_ttl = queue_message_ttl if queue_message_ttl is not None else 10
        self.hubs = []
        self.instances = []
        self._seq = 0

    def start_hub(self, name=None, ready=True, extra=()):
        self._seq += 1
        name = name or "i%d-%s" % (self._seq, secrets.token_hex(2))
        args = ["--redis-url", self.redis_url, "--amqp-url", self.amqp_url,
                "--prefix", self.prefix, "--instance-id", name]
        if self.secret is not None:  # None: the instances agree on one through Redis
            args += ["--token-secret", self.secret]
        args += self.opts + list(extra)
        h = Hub(args)
        h.name = name
        self.hubs.append(h)
        if name not in self.instances:
            self.instances.append(name)
        h.start()
        if ready:
            wait_readyz(h, 200, timeout=30)
        return h

    def start(self, n):
        return [self.start_hub() for _ in range(n)]

    def live(self):
        return [h for h in self.hubs if h.proc and h.proc.poll() is None]

    def cleanup(self):
        """Stops the hubs and deletes the cluster's keys and queues. Returns
        the errors met on the shared servers (MSGHUB_TEST_*_URL); a private
        server is thrown away by its test, so failing to reach it is fine."""
        for h in self.hubs:
            h.stop()
        errors = []
        try:
            delete_redis_keys(self.redis_url, self.prefix)
        except Exception as e:  # noqa: BLE001 - report, do not mask the test's own result
            if self.redis_url == REDIS_URL:
                errors.append("redis cleanup: %r" % e)
        try:
            delete_amqp_names(self.amqp_url, self.prefix, self.instances)
        except Exception as e:  # noqa: BLE001
            if self.amqp_url == AMQP_URL:
                errors.append("amqp cleanup: %r" % e)
        return errors


@pytest.fixture
def cluster_factory():
    """Function-scoped clusters (import this fixture into a test module):
    make(**Cluster kwargs) -> Cluster. They are cleaned up after the test's
    report is made, so a failure still shows their hubs' stderr."""
    made = []

    def make(**kw):
        c = Cluster(**kw)
        made.append(c)
        return c

    yield make
    errors = []
    for c in made:
        errors += c.cleanup()
    assert not errors, errors


# ---- waiting and reading ----------------------------------------------------------------------

def readyz_status(h):
    try:
        return requests.get(h.url("/readyz"), timeout=2).status_code
    except requests.RequestException:
        return None


def wait_readyz(h, status, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = readyz_status(h)
        if last == status:
            return
        time.sleep(0.1)
    raise AssertionError("GET /readyz on %s (port %s) did not answer %d within %.0fs (last: %r)"
                         % (getattr(h, "name", "?"), h.port, status, timeout, last))


def clients_of(h):
    r = h.get("/clients")
    assert r.status_code == 200, (r.status_code, r.text)
    ids = r.json()["ids"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    return ids


def list_of(c):
    c.send_text('{"type":"list"}')
    m = c.recv_json()
    assert m.get("type") == "list", m
    ids = m["ids"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    return ids


def wait_clients(hubs, pred, timeout, what):
    """Polls GET /clients on every hub until pred(set of ids) holds on all."""
    deadline = time.monotonic() + timeout
    last = {}
    while True:
        last = {h.name: set(clients_of(h)) for h in hubs}
        if all(pred(v) for v in last.values()):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("within %.1fs, GET /clients never showed %s; last: %r"
                                 % (timeout, what, {k: sorted(v)[:50] for k, v in last.items()}))
        time.sleep(0.1)


# ---- many connections at once (asyncio, raw sockets) ------------------------------------------

async def _ws_connect_hello(port, sem, timeout):
    async with sem:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(("GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n" % (HOST, port, key)).encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status = head.split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                raise AssertionError("upgrade refused on port %d: %r" % (port, head[:200]))
            while True:
                b0, b1 = await asyncio.wait_for(reader.readexactly(2), timeout)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await reader.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await reader.readexactly(8))[0]
                payload = await asyncio.wait_for(reader.readexactly(n), timeout)
                if (b0 & 0x0F) == 0x1:
                    hello = json.loads(payload)
                    check_hello(hello)
                    return reader, writer, hello
        except BaseException:
            writer.close()
            raise


async def _connect_many(ports, n, concurrency, timeout):
    sem = asyncio.Semaphore(concurrency)
    tasks = [_ws_connect_hello(ports[i % len(ports)], sem, timeout) for i in range(n)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    conns = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    return conns, errors


async def _close_all(conns):
    close_frame = bytes([0x88, 0x82]) + b"\0\0\0\0" + struct.pack("!H", 1000)
    for _r, w, _h in conns:
        try:
            w.write(close_frame)
            w.close()
        except (OSError, RuntimeError):
            pass
    for _r, w, _h in conns:
        try:
            await asyncio.wait_for(w.wait_closed(), 2)
        except (OSError, asyncio.TimeoutError, RuntimeError):
            pass


def connect_many(ports, n, concurrency=200, timeout=30.0):
    """Opens n WebSocket connections spread round-robin over ports, with at
    most `concurrency` handshakes in flight, and returns (hellos, errors,
    closer) where closer() closes them all. Runs its own event loop."""
    loop = asyncio.new_event_loop()
    conns, errors = loop.run_until_complete(_connect_many(ports, n, concurrency, timeout))

    def closer():
        try:
            loop.run_until_complete(_close_all(conns))
        finally:
            loop.close()

    return [c[2] for c in conns], errors, closer


__all__ = ["REDIS_URL", "AMQP_URL", "require_backplane", "unique_prefix", "Redis", "Amqp",
           "delete_redis_keys", "delete_amqp_names", "PrivateRedis", "PrivateRabbit", "Cluster",
           "readyz_status", "wait_readyz", "clients_of", "list_of", "wait_clients",
           "connect_many", "cluster_factory", "is_id"]
