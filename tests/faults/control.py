"""Cluster control for the fault suite: the private Redis and RabbitMQ it
starts, and the three msghub instances (A, B, C) of a scenario.

Built on tests/integration/cluster.py (Cluster, Hub, PrivateRedis,
PrivateRabbit, wait_readyz) rather than copies of it. Only processes this
suite started are ever signalled: the hubs through their Popen objects, the
servers through the pid files the private-* scripts wrote in the suite's
own directories, and only after /proc/<pid>/cmdline shows the expected
program and our directory or port.

Every call here blocks; the harness runs them in a thread
(asyncio.to_thread) so clients keep being served meanwhile.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from cluster import Cluster, PrivateRabbit, PrivateRedis, wait_readyz  # noqa: E402
from conftest import Hub, find_binary  # noqa: E402


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pid_from(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _port_open(port):
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def hub_supports(flag):
    """Whether the hub under test knows --flag (contract v2 may drop some)."""
    out = subprocess.run([find_binary(), "--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=10).stdout.decode()
    return ("--%s " % flag) in out or ("--%s\n" % flag) in out


# ---- private servers ------------------------------------------------------------------

class Redis(PrivateRedis):
    """A private redis-server; aof: None (no persistence), "always" or
    "everysec" (appendonly yes with that fsync policy)."""

    def __init__(self, aof=None):
        super().__init__()
        self.aof = aof

    def start(self):
        args = ["start", self.dir, str(self.port)]
        if self.aof:
            args += ["--aof", self.aof]
        self.url = self._run(*args)
        return self

    def pid(self):
        pid = _pid_from(os.path.join(self.dir, "redis.pid"))
        if pid and "redis-server" in _cmdline(pid) and (":%d" % self.port) in _cmdline(pid):
            return pid
        return None

    def kill9(self):
        pid = self.pid()
        if pid is None:
            raise RuntimeError("no private redis-server of ours in %s" % self.dir)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _cmdline(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


class Rabbit(PrivateRabbit):
    """The run's private RabbitMQ node (started once, reused)."""

    def pid(self):
        pid = _pid_from(os.path.join(self.dir, "rabbitmq.pid"))
        if pid and "beam" in _cmdline(pid) and self.dir in _cmdline(pid):
            return pid
        return None

    def signal(self, sig):
        pid = self.pid()
        if pid is None:
            raise RuntimeError("no private RabbitMQ node of ours in %s" % self.dir)
        os.kill(pid, sig)
        return pid

    def kill9(self):
        pid = self.signal(signal.SIGKILL)
        deadline = time.monotonic() + 15
        while _cmdline(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop()  # the launcher, and epmd forgetting the node's name

    def start_again(self):
        """Start after a stop or kill, same DIR and port (keeps its data)."""
        deadline = time.monotonic() + 20
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.start()


class Servers:
    """The run's servers: one RabbitMQ, started on first use; a fresh Redis
    per scenario."""

    def __init__(self):
        self.rabbit = None

    def amqp(self):
        if self.rabbit is None or self.rabbit.pid() is None:
            if self.rabbit is not None:
                self.rabbit.destroy()
            last = None
            for _ in range(2):  # a port taken between the probe and the bind
                r = Rabbit()
                try:
                    self.rabbit = r.start()
                    break
                except Exception as e:  # noqa: BLE001 - retried once, then raised
                    r.destroy()
                    last = e
            else:
                raise last
        return self.rabbit

    def destroy(self):
        if self.rabbit is not None:
            self.rabbit.destroy()
            self.rabbit = None


# ---- the hubs -------------------------------------------------------------------------------

NAMES = ("A", "B", "C")


class Fleet:
    """Instances A, B, C: distributed (one private Redis, the run's RabbitMQ)
    or a single standalone hub A."""

    def __init__(self, servers, distributed=True, redis_aof=None, presence_ttl=3, extra=()):
        self.distributed = distributed
        self.extra = [str(x) for x in extra]
        self.hubs = {}
        self.redis = None
        self.rabbit = None
        self.cluster = None
        if distributed:
            self.rabbit = servers.amqp()
            self.redis = Redis(aof=redis_aof).start()
            opts = {"presence_ttl": presence_ttl, "queue_expiry": 60}
            if hub_supports("queue-message-ttl"):
                opts["queue_message_ttl"] = 2
            self.cluster = Cluster(redis_url=self.redis.url, amqp_url=self.rabbit.url,
                                   extra=self.extra, **opts)
            self.names = {}

    def start(self):
        if not self.distributed:
            self.hubs["A"] = Hub(["--shutdown-timeout", 1] + self.extra).start()
            return self
        for n in NAMES:
            self.start_hub(n)
        return self

    def start_hub(self, n):
        """Starts instance n; a restart keeps its instance id."""
        iid = self.names.setdefault(n, "%s-%s" % (n, self.cluster.prefix[-8:]))
        self.hubs[n] = self.cluster.start_hub(name=iid)
        return self.hubs[n]

    def port(self, n):
        return self.hubs[n].port

    def kill9(self, n):
        self.hubs[n].kill()

    def freeze(self, n):
        self.hubs[n].proc.send_signal(signal.SIGSTOP)

    def thaw(self, n):
        self.hubs[n].proc.send_signal(signal.SIGCONT)

    def wait_ready(self, timeout=30):
        for h in self.hubs.values():
            if h.proc.poll() is None:
                wait_readyz(h, 200, timeout)

    def teardown(self, logdir):
        """Keeps each hub's stderr in logdir, kills the hubs, drops the Redis."""
        os.makedirs(logdir, exist_ok=True)
        every = (self.cluster.hubs if self.cluster else []) + list(self.hubs.values())
        for i, h in enumerate(dict.fromkeys(every)):
            name = getattr(h, "name", "standalone")
            with open(os.path.join(logdir, "hub-%d-%s.log" % (i, name)), "w") as f:
                f.write(h.stderr_text())
            if h.proc and h.proc.poll() is None:
                h.proc.send_signal(signal.SIGCONT)
                h.kill()
            h.stop()
        if self.cluster:
            self.cluster.hubs = []
            self.cluster.cleanup()
        if self.redis:
            log = os.path.join(self.redis.dir, "redis.log")
            if os.path.exists(log):
                shutil.copy(log, os.path.join(logdir, "redis.log"))
            self.redis.destroy()
