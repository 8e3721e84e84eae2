"""Self-test of the fault suite's bookkeeping, without a hub: a receiver fed
synthetic message frames must count duplicates and seq-order violations
exactly as accounting.py documents, and the ledger must compute lost copies
and sender-order inversions. If these are wrong, every scenario's figures
are. Run by ctest (faults.accounting) with pytest."""

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from accounting import Ledger  # noqa: E402
from client import Receiver, Session  # noqa: E402


class FakeRun:
    def __init__(self):
        self.ledger = Ledger()
        self.finished = False


def frame(seq, counter, sender="w"):
    m = {"type": "message", "id": "m-%s-%d" % (sender, counter), "from": 1,
         "body": {"s": sender, "c": counter}, "ts": 0}
    if seq is not None:
        m["seq"] = seq
    return json.dumps(m)


def make(run, rid=5, seq=True):
    async def build():  # Receiver holds asyncio.Events: make it inside a loop
        r = Receiver(run, "t", lambda: 0, ack=False)
        r.id = rid
        r.seq_supported = seq
        run.ledger.receivers[rid] = r
        return r
    return asyncio.run(build())


def feed(r, sess, frames):
    for f in frames:
        r._on_frame(sess, f)


def test_in_order_with_a_redelivery():
    run = FakeRun()
    r = make(run)
    s = Session(None, 0, 0, True)
    feed(r, s, [frame(1, 1), frame(2, 2), frame(2, 2), frame(3, 3)])
    assert r.duplicates == 1 and r.violations == [] and r.hi == 3 and len(r.seen) == 3


def test_gap_and_late_new_message_are_violations():
    run = FakeRun()
    r = make(run)
    s = Session(None, 0, 0, True)
    feed(r, s, [frame(1, 1), frame(3, 3), frame(2, 2)])
    assert len(r.violations) == 2, r.violations
    assert "gap" in r.violations[0] and "never seen" in r.violations[1]


def test_gap_announced_by_recovered_false_is_allowed():
    run = FakeRun()
    r = make(run)
    s = Session(None, 0, 10, False)
    feed(r, s, [frame(15, 1), frame(16, 2)])
    assert r.violations == [] and r.hi == 16


def test_v1_frames_without_seq_dedupe_by_key():
    run = FakeRun()
    r = make(run, seq=False)
    s = Session(None, 0, None, True)
    feed(r, s, [frame(None, 1), frame(None, 1), frame(None, 2)])
    assert r.duplicates == 1 and r.msgs_noseq == 3 and r.violations == []


def test_lost_and_sender_order():
    run = FakeRun()
    led = run.ledger
    r = make(run, rid=7)
    for c in (1, 2, 3, 4):
        led.on_send(("w", c), [7])
        led.on_accepted(("w", c), [7])
    led.on_send(("w", 5), [7])
    led.on_refused(("w", 5), "unavailable")
    s = Session(None, 0, 0, True)
    # 2 and 3 swapped in seq, 4 never delivered
    feed(r, s, [frame(1, 1), frame(2, 3), frame(3, 2)])
    f = led.figures()
    assert (f["accepted"], f["delivered"], f["lost"], f["refused"]) == (4, 3, 1, 1), f
    assert f["order"] == 1, f["violations"]
    assert led.missing() == [(("w", 4), 7)]
