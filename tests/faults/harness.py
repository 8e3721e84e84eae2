"""One scenario's run: its hubs, receivers, senders, the fault timeline and
the settle phase. Scenarios (scenarios.py) are async functions of a Run.

A typical scenario:

    await run.up()                                  # A, B, C on private servers
    rs = await run.receivers(P.n, on="B", resume="A")
    run.senders(targets=rs, ws_on="AC", http_on="AC")
    await run.wait(P.traffic / 3)
    await run.do(run.fleet.kill9, "B")              # blocking calls in a thread
    await run.wait(2 * P.traffic / 3)
    await run.finish()                              # stop traffic, settle, close

Figures come from the ledger (accounting.py); extra checks a scenario
makes (e.g. other receivers' p99) go to run.check().
"""

import asyncio
import random

from accounting import Ledger, now
from client import HTTPSender, Receiver, WSSender, pick_receivers
from control import Fleet


class Profile:
    """Counts and durations of the short form (scripts/test) or --full."""

    def __init__(self, full):
        self.full = full
        self.n = 300 if full else 60             # receivers per scenario
        self.ws_senders = 24 if full else 6
        self.http_senders = 6 if full else 2
        self.rate = 20.0 if full else 12.0       # relays per second per sender
        self.traffic = 30.0 if full else 6.0     # seconds of traffic
        self.settle = 40.0 if full else 15.0     # at most, after traffic stops
        self.freeze = 30.0 if full else 25.0     # RabbitMQ SIGSTOP: past 2 heartbeats (10 s)
        self.big = 100 * 1024                    # the 100 KB frames


class Run:
    def __init__(self, name, profile, servers, logdir):
        self.name = name
        self.P = profile
        self.servers = servers
        self.logdir = logdir
        self.ledger = Ledger()
        self.fleet = None
        self.traffic_on = True
        self.finished = False
        self.receivers_ = []
        self.senders_ = []
        self.checks = []      # (ok, text)
        self.info = []        # extra text for the scenario's line
        self._ticker = None
        self.loop_lag = 0.0   # seconds, the worst late wake-up of the client loop
        self._n = 0
        self.t0 = now()

    # ---- set-up ---------------------------------------------------------------

    async def up(self, distributed=True, redis_aof=None, presence_ttl=3, extra=()):
        self.fleet = Fleet(self.servers, distributed=distributed, redis_aof=redis_aof,
                           presence_ttl=presence_ttl, extra=extra)
        await asyncio.to_thread(self.fleet.start)
        self._ticker = asyncio.ensure_future(self._tick())
        return self.fleet

    def on(self, names):
        """A port chooser: a random one of instances `names` ("AC"), looked up
        at each call (a restarted hub has a new port), as a load balancer
        would spread connections."""
        names = list(names)

        def pick():
            return self.fleet.port(random.choice(names))
        return pick

    async def receivers(self, n, on="ABC", resume=None, rcvbuf=None, ack=True):
        """n receivers connected to `on`; after a drop they resume on
        `resume` (default: the same set)."""
        out = []
        for _ in range(n):
            self._n += 1
            r = Receiver(self, "r%d" % self._n, self.on(on), rcvbuf=rcvbuf, ack=ack)
            out.append(r.start())
        await asyncio.wait_for(asyncio.gather(*(r.ready.wait() for r in out)), 30)
        if resume:
            for r in out:
                r.port_fn = self.on(resume)
        self.receivers_ += out
        return out

    def senders(self, targets, ws_on="ABC", http_on="ABC", ws=None, http=None, rate=None,
                pad=0, multi=0.3):
        """Senders relaying to random receivers of `targets` (1, or 2-3 with
        probability `multi`) at `rate` relays/s each."""
        ws = self.P.ws_senders if ws is None else ws
        http = self.P.http_senders if http is None else http
        rate = rate or self.P.rate

        def targets_fn():
            return [r.id for r in pick_receivers(targets, multi)]

        out = []
        for i in range(ws):
            self._n += 1
            out.append(WSSender(self, "w%d" % self._n, self.on(ws_on), targets_fn, rate,
                                pad).start())
        for i in range(http):
            self._n += 1
            out.append(HTTPSender(self, "h%d" % self._n, self.on(http_on), targets_fn, rate,
                                  pad).start())
        self.senders_ += out
        return out

    # ---- the timeline ---------------------------------------------------------------

    async def wait(self, seconds):
        await asyncio.sleep(seconds)

    async def do(self, fn, *args):
        """A blocking control call (kill, restart, server stop) in a thread."""
        return await asyncio.to_thread(fn, *args)

    def check(self, ok, text):
        self.checks.append((bool(ok), text))

    async def _tick(self):
        """Batched acks (every 100 ms), and how late this loop wakes up: the
        suite's own lag, so that delays it causes are not blamed on the hub."""
        while not self.finished:
            t = now()
            await asyncio.sleep(0.1)
            self.loop_lag = max(self.loop_lag, now() - t - 0.1)
            for r in self.receivers_:
                r.tick()

    async def stop_traffic(self):
        """No more relays; waits for the answers senders are still owed."""
        self.traffic_on = False
        await asyncio.gather(*(s.task for s in self.senders_), return_exceptions=True)

    async def finish(self, settle=None):
        """Stops traffic, lets every receiver read and come back online, and
        waits until every accepted copy arrived or the settle time is over."""
        await self.stop_traffic()
        for r in self.receivers_:
            r.unstall()
            r.go_online()
        settle = self.P.settle if settle is None else settle
        deadline = now() + settle
        t_settle = now()
        while now() < deadline and self.ledger.missing():
            await asyncio.sleep(0.2)
        # a little more for duplicates and late order violations to show
        await asyncio.sleep(0.5)
        self.info.append("settled in %.1fs" % (now() - t_settle))

    async def close(self):
        self.finished = True
        self.traffic_on = False
        for r in self.receivers_:
            r.online.set()
            r.reading.set()
            if r.current is not None:
                r.current.ws.abort(reset=False)
            for t in r.tasks:
                t.cancel()
        for s in self.senders_:
            if s.task:
                s.task.cancel()
        if self._ticker:
            self._ticker.cancel()
        await asyncio.sleep(0)
        if self.fleet is not None:
            await asyncio.to_thread(self.fleet.teardown, self.logdir)
