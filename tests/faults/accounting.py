"""Accounting of one fault scenario: what was accepted, what each intended
receiver saw, and the figures the suite reports.

Every relay body carries a unique (sender, counter) key. A copy is one
(key, receiver id) pair. The ledger records when a key was sent and to
whom, which copies the hub accepted (WS `relayed` / HTTP 200), refused with
`unavailable` or left unanswered; receivers record what they saw (see
client.Receiver). The figures are computed once, at the end:

- accepted: copies of relays answered relayed / 200;
- delivered: accepted copies seen at least once by their receiver;
- lost: accepted copies never seen after the scenario's settle time;
- duplicated: copies seen again (redeliveries, dropped by the client);
- out of seq order: a seq at or below one already seen delivered as new,
  a gap in seq not announced by `recovered:false`, or two messages of one
  sender to one receiver whose seqs are not in the order they were
  accepted;
- refused: copies of relays refused with `unavailable` (not accepted);
- p99 / max delay: send to first receipt, over delivered copies.
"""

import collections
import time


def now():
    return time.monotonic()


class Ledger:
    def __init__(self):
        self.sent = {}                 # key -> (t_send, receiver ids)
        self.accepted = {}             # key -> receiver ids (accepted copies)
        self.answered = {}             # key -> time the relay was answered (any answer)
        self.accept_order = {}         # key -> rank of its acceptance
        self.refused = 0               # copies refused with `unavailable`
        self.unanswered = 0            # copies whose relay got no answer
        self.errors = collections.Counter()   # other error codes (copies)
        self.receivers = {}            # user id -> client.Receiver
        self.notes = []

    # ---- senders ------------------------------------------------------

    def on_send(self, key, rids):
        self.sent[key] = (now(), tuple(rids))

    def on_answer(self, key):
        self.answered[key] = now()

    def answer_delays(self, t_from=None, t_to=None):
        """Seconds from send to answer of the relays sent in [t_from, t_to]
        (None for a relay never answered)."""
        out = []
        for key, (t, _rids) in self.sent.items():
            if (t_from is None or t >= t_from) and (t_to is None or t <= t_to):
                a = self.answered.get(key)
                out.append(None if a is None else a - t)
        return out

    def on_accepted(self, key, rids):
        self.accepted[key] = tuple(rids)
        self.accept_order[key] = len(self.accept_order)

    def sender_order_violations(self, r):
        """PROTOCOL.md section 5: messages from one sender to one receiver
        get increasing seq in the order they were accepted. Returns the
        inversions seen by receiver r."""
        by_sender = {}
        for key, seq in r.seq_of.items():
            if key in self.accept_order:
                by_sender.setdefault(key[0], []).append((seq, self.accept_order[key], key))
        out = []
        for sender, items in by_sender.items():
            items.sort()
            for (s1, a1, k1), (s2, a2, k2) in zip(items, items[1:]):
                if a2 < a1:
                    out.append("id %d: %s#%d accepted before %s#%d but got seq %d > %d"
                               % (r.id, sender, k2[1], sender, k1[1], s2, s1))
        return out

    def on_refused(self, key, code):
        n = len(self.sent[key][1])
        if code == "unavailable":
            self.refused += n
        else:
            self.errors[code] += n

    def on_unanswered(self, key):
        self.unanswered += len(self.sent[key][1])

    # ---- results ------------------------------------------------------

    def missing(self):
        """Accepted copies not yet seen by their receiver."""
        out = []
        for key, rids in self.accepted.items():
            for rid in rids:
                r = self.receivers.get(rid)
                if r is None or key not in r.seen:
                    out.append((key, rid))
        return out

    def figures(self, only=None):
        """The scenario's figures; only: a set of receiver ids to restrict
        delays and counts to (e.g. everyone but a stuck reader)."""
        accepted = delivered = 0
        delays = []
        for key, rids in self.accepted.items():
            t_send = self.sent[key][0]
            for rid in rids:
                if only is not None and rid not in only:
                    continue
                accepted += 1
                r = self.receivers.get(rid)
                t = r.seen.get(key) if r else None
                if t is not None:
                    delivered += 1
                    delays.append(max(0.0, t - t_send))
        delays.sort()
        rs = [r for rid, r in self.receivers.items() if only is None or rid in only]
        with_seq = sum(r.msgs_seq for r in rs)
        without = sum(r.msgs_noseq for r in rs)
        seq = with_seq > 0 and without == 0
        errors = dict(self.errors)
        for r in rs:
            for code, n in r.errors.items():
                errors["to receivers: %s" % code] = errors.get("to receivers: %s" % code, 0) + n
        answers = [d for d in self.answer_delays() if d is not None]
        violations = [v for r in rs for v in r.violations]
        violations += [v for r in rs for v in self.sender_order_violations(r)]
        return {
            "accepted": accepted,
            "delivered": delivered,
            "lost": accepted - delivered,
            "duplicated": sum(r.duplicates for r in rs),
            "order": len(violations) if seq else None,
            "refused": self.refused,
            "unanswered": self.unanswered,
            "errors": errors,
            "answer_max_ms": 1000 * max(answers) if answers else None,
            "frames_with_seq": with_seq,
            "frames_without_seq": without,
            "misdelivered": sum(r.misdelivered for r in rs),
            "p99_ms": 1000 * delays[min(len(delays) - 1, int(len(delays) * 0.99))]
            if delays else None,
            "max_ms": 1000 * delays[-1] if delays else None,
            "seq_supported": seq,
            "violations": violations[:5],
        }
