"""The fault suite's scenarios (issue 9; PROTOCOL.md sections 3 and 5).

Each is an async function of a harness.Run; SCENARIOS lists them in the
order scripts/faults runs them, with a one-line description (also used by
--list and docs/RELIABILITY.md). Instances are A, B, C; every distributed
scenario runs on a fresh private Redis (with `appendonly yes` +
`appendfsync always` where Redis is stopped or killed) and the run's
private RabbitMQ. Traffic runs for P.traffic seconds: WS senders with a
`ref` on every relay and POST /relay senders, each body with a unique
(sender, counter); the fault lands inside that window.
"""

import random
import signal

from accounting import now


async def kill_b_resume_a(run, P):
    await run.up()
    rs = await run.receivers(P.n, on="B", resume="A")
    run.senders(rs, ws_on="AC", http_on="AC")
    await run.wait(P.traffic / 3)
    await run.do(run.fleet.kill9, "B")
    await run.wait(2 * P.traffic / 3)
    await run.finish()


async def kill_b_restart_same_id(run, P):
    await run.up()
    rs = await run.receivers(P.n, on="B", resume="AB")
    run.senders(rs, ws_on="AC", http_on="AC")
    await run.wait(P.traffic / 3)
    await run.do(run.fleet.kill9, "B")
    await run.wait(1.0)
    await run.do(run.fleet.start_hub, "B")
    await run.wait(max(0.0, 2 * P.traffic / 3 - 1.0))
    await run.finish()


async def stalled_on_sender_instance_kill(run, P):
    # receivers and WS senders on A; the receivers stop reading, A dies
    await run.up()
    rs = await run.receivers(P.n, on="A", resume="BC", rcvbuf=16384)
    run.senders(rs, ws_on="A", http_on="A", pad=512)
    await run.wait(P.traffic / 4)
    for r in rs:
        r.stall()
    await run.wait(P.traffic / 4)
    await run.do(run.fleet.kill9, "A")
    for r in rs:
        r.drop()
    await run.wait(P.traffic / 2)
    await run.finish()


async def stall_then_drop(run, P):
    # stop reading with data in flight, then the connection dies (RST: what
    # sat unread in kernel buffers is gone), then resume with since
    await run.up()
    rs = await run.receivers(P.n, on="ABC", rcvbuf=16384)
    run.senders(rs, pad=256)
    await run.wait(P.traffic / 4)
    for r in rs:
        r.stall()
    await run.wait(P.traffic / 4)
    for r in rs:
        r.drop()
    await run.wait(P.traffic / 2)
    await run.finish()


async def redis_kill_while_receivers_drop(run, P):
    # the receivers on B stop reading first, so that B holds frames for
    # them when Redis dies and they drop
    await run.up(redis_aof="always")
    rs = await run.receivers(P.n, on="B", resume="ABC", rcvbuf=16384)
    run.senders(rs, ws_on="AC", http_on="AC", pad=1024)
    await run.wait(P.traffic / 3 - 1.0)
    for r in rs:
        r.stall()
    await run.wait(1.0)
    await run.do(run.fleet.redis.kill9)
    await run.wait(0.3)
    for r in rs:
        r.drop()
    await run.wait(1.5)
    await run.do(run.fleet.redis.start)
    await run.wait(2 * P.traffic / 3)
    await run.finish()


async def takeover_while_reading_log(run, P):
    # receivers build a backlog while offline, come back on A and read it
    # slowly (30 ms per message), then the same token connects on C while
    # the old session is still reading
    await run.up()
    n = 30 if P.full else 10
    rs = await run.receivers(n, on="A")
    for r in rs:
        await r.go_offline()
    run.senders(rs, ws_on="BC", http_on="BC", pad=1024)
    await run.wait(P.traffic / 2)
    for r in rs:
        r.rcvbuf = 4096
        r.delay = 0.03
        r.port_fn = run.on("A")
        r.go_online()
    await run.wait(0.5)
    taken = 0
    for r in rs:
        try:
            await r.takeover(run.fleet.port("C"))
            taken += 1
        except Exception as e:  # noqa: BLE001 - counted and reported
            run.info.append("takeover of %d failed: %r" % (r.id, e))
        r.port_fn = run.on("C")
    await run.wait(0.5)
    for r in rs:
        r.delay = 0.0
    run.info.append("%d takeovers" % taken)
    await run.wait(P.traffic / 2)
    await run.finish()
    closed = sum(r.closes.get(4409, 0) for r in rs)
    run.check(closed == taken, "%d of %d taken-over sessions closed with 4409" % (closed, taken))


async def stuck_big_frames_kill(run, P):
    await run.up()
    n = 6 if not P.full else 20
    rs = await run.receivers(n, on="B", resume="A", rcvbuf=32768)
    run.senders(rs, ws_on="AC", http_on="AC", ws=3, http=1, rate=3.0, pad=P.big, multi=0)
    await run.wait(P.traffic / 4)
    for r in rs:
        r.stall()
    await run.wait(P.traffic / 4)
    await run.do(run.fleet.kill9, "B")
    for r in rs:
        r.drop()
    await run.wait(P.traffic / 2)
    await run.finish()


async def stuck_reader_others_p99(run, P):
    await run.up()
    stuck = (await run.receivers(1, on="B", rcvbuf=16384))[0]
    others = await run.receivers(P.n, on="B")
    run.senders(others, ws_on="AC", http_on="AC")
    # the stuck one gets its own stream: 75 frames of 4 KB a second, more
    # than a prefetch window in a few seconds, within its log's caps
    stuck.stall()
    run.senders([stuck], ws_on="AC", http_on="AC", ws=3, http=0, rate=25.0, pad=4000, multi=0)
    await run.wait(P.traffic)
    await run.stop_traffic()
    f = run.ledger.figures(only={r.id for r in others})
    p99 = f["p99_ms"]
    run.info.append("others' p99 %s ms, max %s ms" % (_ms(p99), _ms(f["max_ms"])))
    run.check(p99 is not None and p99 <= 1000.0,
              "other receivers on B: p99 %s ms (contract: within 1 s)" % _ms(p99))
    stuck.drop()      # and then it comes back and must get everything
    await run.finish()


async def rabbit_freeze(run, P):
    await run.up()
    rs = await run.receivers(P.n, on="ABC")
    run.senders(rs)
    await run.wait(P.traffic / 4)
    rabbit = run.fleet.rabbit
    await run.do(rabbit.signal, signal.SIGSTOP)
    t_freeze = now()
    try:
        await run.wait(min(2.0, P.freeze / 2))
        ready = await run.do(_readyz_all, run.fleet)
        run.info.append("/readyz during the freeze: %s" % ready)
        await run.wait(max(0.0, P.freeze - (now() - t_freeze)))
    finally:
        await run.do(rabbit.signal, signal.SIGCONT)
    t_thaw = now()
    await run.wait(P.traffic / 2)
    await run.finish(settle=P.settle + 10)
    # the loop must not block on a frozen broker: every relay sent during
    # the freeze gets an answer (accepted or `unavailable`) within 5 s (a
    # loaded machine alone delays answers by up to 2-3 s in the full form)
    ds = run.ledger.answer_delays(t_freeze, t_thaw)
    late = [d for d in ds if d is None or d > 5.0]
    worst = max((d for d in ds if d is not None), default=0.0)
    run.check(not late, "relays sent during the freeze answered within 5 s: %d of %d late or "
              "never answered (slowest %.1f s)" % (len(late), len(ds), worst))
    run.check("None" not in ready, "/readyz answered during the freeze (%s)" % ready)


async def hub_sigstop_past_presence(run, P):
    await run.up(presence_ttl=3)
    rs = await run.receivers(P.n, on="B")
    run.senders(rs, ws_on="AC", http_on="AC")
    await run.wait(P.traffic / 4)
    await run.do(run.fleet.freeze, "B")
    try:
        await run.wait(3 + 2.0)
    finally:
        await run.do(run.fleet.thaw, "B")
    await run.wait(P.traffic / 2)
    await run.finish()


async def rabbit_restart(run, P):
    await run.up()
    rs = await run.receivers(P.n, on="ABC")
    run.senders(rs)
    await run.wait(P.traffic / 4)
    rabbit = run.fleet.rabbit
    await run.do(rabbit.stop)
    await run.wait(1.0)
    await run.do(rabbit.start_again)
    await run.wait(P.traffic / 2)
    await run.finish(settle=P.settle + 10)


async def rabbit_kill9(run, P):
    await run.up()
    rs = await run.receivers(P.n, on="ABC")
    run.senders(rs)
    await run.wait(P.traffic / 4)
    rabbit = run.fleet.rabbit
    await run.do(rabbit.kill9)
    await run.do(rabbit.start_again)
    await run.wait(P.traffic / 2)
    await run.finish(settle=P.settle + 10)


async def offline_log_kills(run, P):
    # receivers offline while relays pile up in their logs; the instance
    # they were on and a sender's instance are killed and restarted; then
    # they resume on the third
    await run.up()
    rs = await run.receivers(P.n, on="B", resume="C")
    for r in rs:
        await r.go_offline()
    run.senders(rs, ws_on="A", http_on="AC")
    await run.wait(P.traffic / 3)
    await run.do(run.fleet.kill9, "B")
    await run.wait(P.traffic / 6)
    await run.do(run.fleet.kill9, "A")
    await run.do(run.fleet.start_hub, "A")
    await run.do(run.fleet.start_hub, "B")
    await run.wait(P.traffic / 3)
    for r in rs:
        r.go_online()
    await run.wait(P.traffic / 6)
    await run.finish()


async def _drop_unread(run, P, distributed):
    await run.up(distributed=distributed)
    on = "ABC" if distributed else "A"
    rs = await run.receivers(P.n, on=on, rcvbuf=16384)
    run.senders(rs, ws_on=on, http_on=on, pad=256)
    rounds = 3
    for _ in range(rounds):
        await run.wait(P.traffic / (2 * rounds))
        half = random.sample(rs, len(rs) // 2)
        for r in half:
            r.stall()
        await run.wait(P.traffic / (2 * rounds))
        for r in half:
            r.drop()
    await run.finish()


async def drop_unread_standalone(run, P):
    await _drop_unread(run, P, distributed=False)


async def drop_unread_distributed(run, P):
    await _drop_unread(run, P, distributed=True)


async def mass_reconnect(run, P):
    await run.up()
    rs = await run.receivers(P.n, on="ABC")
    run.senders(rs)
    await run.wait(P.traffic / 3)
    for r in rs:
        r.drop()
    await run.wait(P.traffic / 3)
    for r in rs:
        r.drop()
    await run.wait(P.traffic / 3)
    await run.finish()


async def redis_restart(run, P):
    await run.up(redis_aof="always")
    rs = await run.receivers(P.n, on="ABC")
    run.senders(rs)
    await run.wait(P.traffic / 3)
    await run.do(run.fleet.redis.stop)     # SIGTERM: a clean shutdown
    await run.wait(1.0)
    await run.do(run.fleet.redis.start)
    await run.wait(2 * P.traffic / 3)
    await run.finish()


async def redis_kill9(run, P):
    await run.up(redis_aof="always")
    rs = await run.receivers(P.n, on="ABC")
    run.senders(rs)
    await run.wait(P.traffic / 3)
    await run.do(run.fleet.redis.kill9)
    await run.wait(1.0)
    await run.do(run.fleet.redis.start)
    await run.wait(2 * P.traffic / 3)
    await run.finish()


def _ms(v):
    return "-" if v is None else "%.0f" % v


def _readyz_all(fleet):
    from cluster import readyz_status
    return ",".join("%s=%s" % (n, readyz_status(h)) for n, h in sorted(fleet.hubs.items()))


# name, function, description (in run order; RabbitMQ restarts last, they are slow)
SCENARIOS = [
    ("kill-b-resume-a", kill_b_resume_a,
     "receivers on B, kill -9 B, they resume on A"),
    ("kill-b-restart-same-id", kill_b_restart_same_id,
     "receivers on B, kill -9 B, B restarted with the same instance id; resume on A or B"),
    ("stalled-on-sender-instance-kill", stalled_on_sender_instance_kill,
     "receivers on the senders' instance A stop reading, kill -9 A, resume on B/C"),
    ("stall-then-drop", stall_then_drop,
     "receivers stop reading, their connections drop (RST), they resume with since"),
    ("redis-kill-while-receivers-drop", redis_kill_while_receivers_drop,
     "Redis (appendfsync always) kill -9 and restart while receivers on B drop and resume"),
    ("takeover-while-reading-log", takeover_while_reading_log,
     "offline backlog, resume on A reading it slowly, same token connects on C (4409)"),
    ("stuck-big-frames-kill", stuck_big_frames_kill,
     "stuck readers on B getting 100 KB frames, kill -9 B, resume on A"),
    ("stuck-reader-others-p99", stuck_reader_others_p99,
     "one stuck reader on B must not delay the other receivers on B (their p99 <= 1 s)"),
    ("hub-sigstop-past-presence", hub_sigstop_past_presence,
     "SIGSTOP of B past the presence TTL (3 s), then SIGCONT"),
    ("offline-log-kills", offline_log_kills,
     "offline receivers' logs fill while A and B are killed and restarted; resume on C"),
    ("drop-unread-standalone", drop_unread_standalone,
     "standalone hub: clients drop (RST) with unread data, three rounds, and resume"),
    ("drop-unread-distributed", drop_unread_distributed,
     "the same on A, B, C"),
    ("mass-reconnect", mass_reconnect,
     "every receiver drops at once and reconnects (twice)"),
    ("redis-restart", redis_restart,
     "Redis (appendfsync always) stopped with SIGTERM and restarted"),
    ("redis-kill9", redis_kill9,
     "Redis (appendfsync always) kill -9 and restarted"),
    ("rabbit-freeze", rabbit_freeze,
     "RabbitMQ frozen (SIGSTOP) 25 s, 30 s with --full, then SIGCONT"),
    ("rabbit-restart", rabbit_restart,
     "RabbitMQ stopped and restarted"),
    ("rabbit-kill9", rabbit_kill9,
     "RabbitMQ kill -9 and restarted"),
]

__all__ = ["SCENARIOS"]
