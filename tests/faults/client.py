"""The fault suite's clients: receivers that behave like a real contract v2
client, and senders over WebSocket and POST /relay.

Receiver: keeps its token and the last seq it saw; acknowledges in batches
(every 100 messages or 100 ms, `{"type":"ack","seq":N}`); after a drop it
resumes with `?token=...&since=<last seq>`, with exponential backoff and
full jitter; drops duplicates by seq and counts them; checks seq order
(a seq at or below the last one that carries a message never seen is a
violation, and so is a gap not announced by `recovered:false`). Against a
hub without seq (contract v1) it falls back to the message id (here: the
body's unique key) for duplicates, does not ack, and its scenario reports
"seq not supported by this hub".

A scenario can make a receiver stop reading (`stall()`), drop its TCP
connection with a reset (`drop()`), go offline and come back, or open a
second connection with its token elsewhere (`takeover(port)`).

Senders put a unique (sender, counter) key in every body and record in the
ledger what was accepted, refused or left unanswered.
"""

import asyncio
import json
import random
import urllib.parse

from accounting import now
from wsclient import Closed, HandshakeError, HTTPConn, WSConn

BACKOFF_BASE = 0.1
BACKOFF_MAX = 2.0
ACK_EVERY = 100
REPLY_TIMEOUT = 10.0
CONNECT_ERRORS = (OSError, HandshakeError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                  Closed, ValueError, KeyError)


class Session:
    """One WebSocket connection of a receiver."""

    def __init__(self, ws, port, prev, recovered):
        self.ws = ws
        self.port = port
        self.prev = prev          # last seq seen in order on this connection (None: v1)
        self.acked = prev or 0
        self.recovered = recovered
        self.alive = True
        self.dropped = False      # dropped by the scenario: unread data is gone
        self.close_code = None


class Receiver:
    def __init__(self, run, name, port_fn, rcvbuf=None, ack=True):
        self.run = run
        self.name = name
        self.port_fn = port_fn       # () -> port to connect or resume to
        self.rcvbuf = rcvbuf
        self.ack = ack
        self.id = None
        self.token = None
        self.hi = 0                  # the last seq: what `since` resumes from
        self.seq_supported = False   # the hello carries seq: resume with since, ack
        self.msgs_seq = 0            # message frames with / without a seq
        self.msgs_noseq = 0
        self.delay = 0.0             # seconds of "work" per message (a slow reader)
        self.seen = {}               # key -> time first seen
        self.seq_of = {}             # key -> its seq, when first seen
        self.duplicates = 0
        self.violations = []
        self.misdelivered = 0
        self.unrecovered = 0         # hellos with recovered:false
        self.resumes = 0
        self.connect_failures = 0
        self.refusals = {}           # HTTP status -> upgrades refused with it
        self.closes = {}
        self.errors = {}
        self.current = None          # the newest Session
        self.reading = asyncio.Event()
        self.reading.set()
        self.online = asyncio.Event()   # cleared while deliberately offline
        self.online.set()
        self.ready = asyncio.Event()    # set once the first hello arrived
        self.tasks = []

    # ---- lifecycle ------------------------------------------------------

    def start(self):
        self.tasks.append(asyncio.ensure_future(self._loop(None)))
        return self

    async def _connect(self, port):
        path = "/ws"
        resumed = self.token is not None
        if resumed:
            path += "?token=" + urllib.parse.quote(self.token, safe="")
            if self.seq_supported:
                path += "&since=%d" % self.hi
        ws = await WSConn.connect(port, path, rcvbuf=self.rcvbuf)
        try:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
            if hello.get("type") != "hello":
                raise ValueError("first frame is not hello: %r" % hello)
        except BaseException:
            ws.abort()
            raise
        if self.id is None:
            self.id = hello["id"]
            self.token = hello["token"]
            self.run.ledger.receivers[self.id] = self
        elif hello["id"] != self.id:
            self.violations.append("resume with the token of %d gave id %r"
                                   % (self.id, hello["id"]))
        else:
            self.token = hello.get("token", self.token)
        if "seq" in hello:
            self.seq_supported = True
        if resumed:
            self.resumes += 1
        recovered = hello.get("recovered", True)
        if recovered is False:
            self.unrecovered += 1
        prev = (self.hi if resumed else 0) if self.seq_supported else None
        sess = Session(ws, port, prev, recovered)
        self.current = sess
        self.ready.set()
        return sess

    async def _loop(self, sess):
        """Serves sess (or connects first), then resumes after every drop
        until the run ends."""
        backoff = BACKOFF_BASE
        while True:
            if sess is None:
                await self.online.wait()
                if self.run.finished:
                    return
                try:
                    sess = await self._connect(self.port_fn())
                except CONNECT_ERRORS as e:
                    self.connect_failures += 1
                    if isinstance(e, HandshakeError):
                        self.refusals[e.status] = self.refusals.get(e.status, 0) + 1
                    await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_BASE
            code = await self._serve(sess)
            self.closes[code] = self.closes.get(code, 0) + 1
            if sess is not self.current or self.run.finished:
                return  # taken over by this receiver's newer session, or done
            sess = None
            # a first retry after a short random delay: clients that drop
            # together must not come back together
            await asyncio.sleep(random.uniform(0, BACKOFF_BASE))

    async def _serve(self, sess):
        try:
            while True:
                if not self.reading.is_set():
                    await self.reading.wait()
                if sess.dropped:
                    return None
                payload = await sess.ws.recv()
                if sess.dropped:
                    return None  # what asyncio had buffered is gone with the socket
                self._on_frame(sess, payload)
                if self.delay:
                    await asyncio.sleep(self.delay)
        except Closed as e:
            return e.code
        finally:
            sess.alive = False
            sess.ws.abort()

    # ---- what a real client does with a frame -------------------------------

    def _on_frame(self, sess, payload):
        m = json.loads(payload)
        t = m.get("type")
        if t == "error":
            c = m.get("code")
            self.errors[c] = self.errors.get(c, 0) + 1
            return
        if t != "message":
            return
        body = m.get("body")
        if not isinstance(body, dict) or "s" not in body or "c" not in body:
            return
        key = (body["s"], body["c"])
        first = key not in self.seen
        seq = m.get("seq")
        if seq is None:
            self.msgs_noseq += 1
        else:
            self.msgs_seq += 1
        if seq is not None and sess.prev is not None:
            if seq <= sess.prev:
                if first:
                    self.violations.append("id %d: seq %d (after %d) carries a message never "
                                           "seen before" % (self.id, seq, sess.prev))
                else:
                    self.duplicates += 1
                    return
            else:
                if seq != sess.prev + 1 and sess.recovered is not False:
                    self.violations.append("id %d: seq %d after %d: gap without recovered:false"
                                           % (self.id, seq, sess.prev))
                sess.prev = seq
                self.hi = max(self.hi, seq)
        if not first:
            self.duplicates += 1
            return
        self.seen[key] = now()
        if seq is not None:
            self.seq_of[key] = seq
        sent = self.run.ledger.sent.get(key)
        if sent is not None and self.id not in sent[1]:
            self.misdelivered += 1
        if seq is not None and self.ack and sess.prev - sess.acked >= ACK_EVERY:
            self._send_ack(sess)

    def _send_ack(self, sess):
        if not sess.alive or sess.prev is None or sess.prev <= sess.acked:
            return
        try:
            sess.ws.send_json({"type": "ack", "seq": sess.prev})
            sess.acked = sess.prev
        except (OSError, RuntimeError):
            pass

    def tick(self):
        """Called every 100 ms by the run: the time half of batched acks."""
        s = self.current
        if s is not None and self.ack and self.reading.is_set():
            self._send_ack(s)

    # ---- what scenarios do to a receiver -------------------------------------

    def stall(self):
        """Stops reading (socket buffers fill, the hub's outbound grows)."""
        self.reading.clear()

    def unstall(self):
        self.reading.set()

    def drop(self):
        """The connection dies with a TCP reset; unread data is gone; the
        receiver resumes (reading again) after its backoff."""
        s = self.current
        if s is not None:
            s.dropped = True
            s.ws.abort(reset=True)
        self.reading.set()

    async def go_offline(self):
        """Closes cleanly and stays away until go_online()."""
        self.online.clear()
        s = self.current
        if s is not None and s.alive:
            try:
                s.ws.writer.write(b"\x88\x82\0\0\0\0\x03\xe8")
                await asyncio.wait_for(s.ws.drain(), 1.0)
            except (OSError, RuntimeError, asyncio.TimeoutError):
                pass
            for _ in range(20):
                if not s.alive:
                    break
                await asyncio.sleep(0.05)
            s.ws.abort(reset=False)

    def go_online(self):
        self.online.set()

    async def takeover(self, port):
        """Opens a second connection with this receiver's token and last seq
        on `port` while the current one is still served; the hub should close
        the old one with 4409. The new one then lives on like any other."""
        sess = await self._connect(port)
        self.tasks.append(asyncio.ensure_future(self._loop(sess)))
        return sess


def pick_receivers(pool, multi=0.3, most=3):
    """1 receiver, or with probability `multi` 2..most distinct ones."""
    if len(pool) > 1 and random.random() < multi:
        return random.sample(pool, random.randint(2, min(most, len(pool))))
    return [random.choice(pool)]


class _Sender:
    """What both kinds of senders share: keys, pacing, the ledger."""

    def __init__(self, run, name, port_fn, targets_fn, rate, pad=0):
        self.run = run
        self.name = name
        self.port_fn = port_fn
        self.targets_fn = targets_fn    # () -> list of receiver ids
        self.rate = rate
        self.pad = "x" * pad if pad else None
        self.counter = 0
        self.task = None

    def _next(self):
        self.counter += 1
        rids = sorted(set(self.targets_fn()))
        key = (self.name, self.counter)
        body = {"s": self.name, "c": self.counter}
        if self.pad:
            body["p"] = self.pad
        return key, rids, body

    def start(self):
        self.task = asyncio.ensure_future(self._loop())
        return self

    async def _pace(self, t_next):
        t_next += random.uniform(0.5, 1.5) / self.rate
        d = t_next - now()
        if d > 0:
            await asyncio.sleep(d)
        return max(t_next, now() - 1.0)


class WSSender(_Sender):
    """Relays over WebSocket with a `ref` each; several in flight."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.outstanding = {}   # ref -> key

    async def _loop(self):
        backoff = BACKOFF_BASE
        ledger = self.run.ledger
        while self.run.traffic_on:
            try:
                ws = await WSConn.connect(self.port_fn())
                hello = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
                assert hello.get("type") == "hello", hello
            except CONNECT_ERRORS:
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_BASE
            reader = asyncio.ensure_future(self._replies(ws))
            t_next = now()
            try:
                while self.run.traffic_on and not reader.done():
                    key, rids, body = self._next()
                    ledger.on_send(key, rids)
                    self.outstanding[self.counter] = key
                    ws.send_json({"type": "relay", "ref": self.counter, "receivers": rids,
                                  "body": body})
                    await ws.drain()
                    t_next = await self._pace(t_next)
            except (OSError, RuntimeError):
                pass
            if not reader.done():
                # traffic over: wait for the answers still owed
                try:
                    await asyncio.wait_for(self._wait_outstanding(), REPLY_TIMEOUT)
                except asyncio.TimeoutError:
                    pass
            reader.cancel()
            ws.abort(reset=False)
            for key in self.outstanding.values():
                ledger.on_unanswered(key)
            self.outstanding.clear()

    async def _wait_outstanding(self):
        while self.outstanding:
            await asyncio.sleep(0.05)

    async def _replies(self, ws):
        ledger = self.run.ledger
        try:
            while True:
                m = json.loads(await ws.recv())
                ref = m.get("ref")
                key = self.outstanding.pop(ref, None) if ref is not None else None
                if key is None:
                    continue
                ledger.on_answer(key)
                if m.get("type") == "relayed":
                    rids = ledger.sent[key][1]
                    ledger.on_accepted(key, rids)
                    if m.get("accepted") != len(rids):
                        ledger.notes.append("relay %r: accepted %r of %d"
                                            % (key, m.get("accepted"), len(rids)))
                else:
                    ledger.on_refused(key, m.get("code"))
        except (Closed, ValueError):
            return


class HTTPSender(_Sender):
    """POST /relay, one request at a time, keep-alive."""

    async def _loop(self):
        backoff = BACKOFF_BASE
        ledger = self.run.ledger
        conn = None
        t_next = now()
        while self.run.traffic_on:
            if conn is None:
                try:
                    conn = await HTTPConn.connect(self.port_fn())
                except CONNECT_ERRORS:
                    await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
            key, rids, body = self._next()
            ledger.on_send(key, rids)
            try:
                status, doc = await conn.post_json("/relay", {"receivers": rids, "body": body},
                                                   REPLY_TIMEOUT)
            except CONNECT_ERRORS:
                ledger.on_unanswered(key)
                conn.close()
                conn = None
                continue
            backoff = BACKOFF_BASE
            ledger.on_answer(key)
            if status == 200:
                ledger.on_accepted(key, rids)
                if not doc or doc.get("accepted") != len(rids):
                    ledger.notes.append("POST /relay %r: %r" % (key, doc))
            else:
                code = ((doc or {}).get("error") or {}).get("code") or "http_%d" % status
                ledger.on_refused(key, code)
            t_next = await self._pace(t_next)
        if conn is not None:
            conn.close()
