"""Distributed instances started without --token-secret agree on one
generated secret through Redis (PROTOCOL.md section 6): created once with
SET NX as "<prefix>:token_secret", logged as a warning; a configured secret
always wins; until the secret is known an instance is not ready and hands
out no token."""

import base64
import hashlib
import hmac
import time

import pytest

from cluster import (REDIS_URL, PrivateRedis, Redis, cluster_factory,  # noqa: F401 (fixture)
                     readyz_status, require_backplane, wait_readyz)
from conftest import raw_error
from wsraw import HandshakeError

require_backplane()

RETRY_PRESENCE_TTL = 3  # s; the secret is retried every third of it


def secret_key(cl):
    return cl.prefix + ":token_secret"


def redis_get(key):
    with Redis(REDIS_URL) as r:
        return r.cmd("GET", key)


def signed_with(token, secret):
    """Whether token (64 base64url chars) carries HMAC-SHA256(secret, payload)."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert len(raw) == 48, token
    return hmac.compare_digest(raw[16:], hmac.new(secret, raw[:16], hashlib.sha256).digest())


def shared_log_lines(h):
    return [ln for ln in h.stderr_text().splitlines() if "event=token_secret_shared" in ln]


def test_token_minted_on_a_resumes_on_b(cluster_factory):
    cl = cluster_factory(presence_ttl=RETRY_PRESENCE_TTL)
    cl.secret = None
    a = cl.start_hub()
    b = cl.start_hub()
    r = a.post("/sessions")
    assert r.status_code == 201, (r.status_code, r.text)
    minted = r.json()
    c = b.ws(token=minted["token"], resumed=True)
    assert c.id == minted["id"], (c.hello, minted)
    # and a token B handed out in its hello is good on A
    c.close()
    d = a.ws(token=c.token, resumed=True)
    assert d.id == minted["id"], d.hello
    stored = redis_get(secret_key(cl))
    assert isinstance(stored, bytes) and len(stored) >= 32, stored
    assert signed_with(minted["token"], stored)
    la, lb = shared_log_lines(a), shared_log_lines(b)
    assert len(la) == 1 and "level=warn" in la[0] and "created=1" in la[0], la
    assert len(lb) == 1 and "level=warn" in lb[0] and "created=0" in lb[0], lb


def test_existing_secret_in_redis_is_adopted(cluster_factory):
    cl = cluster_factory()
    cl.secret = None
    preset = b"operator-chose-this-secret-0123456789"
    with Redis(REDIS_URL) as r:
        assert r.cmd("SET", secret_key(cl), preset) == "OK"
    a = cl.start_hub()
    minted = a.post("/sessions").json()
    assert signed_with(minted["token"], preset), minted
    assert redis_get(secret_key(cl)) == preset
    assert "created=0" in shared_log_lines(a)[0], shared_log_lines(a)


def test_configured_secret_wins(cluster_factory):
    cl = cluster_factory()
    cl.secret = None
    a = cl.start_hub()  # creates the shared secret
    shared = redis_get(secret_key(cl))
    configured = "configured-secret-for-b-and-c"
    b = cl.start_hub(extra=["--token-secret", configured])
    c = cl.start_hub(extra=["--token-secret", configured])
    tb = b.post("/sessions").json()
    assert signed_with(tb["token"], configured.encode()), tb
    assert c.ws(token=tb["token"], resumed=True).id == tb["id"]
    ta = a.post("/sessions").json()
    with pytest.raises(HandshakeError) as ei:
        b.ws_raw(token=ta["token"])
    raw_error(ei.value, 401, "unauthorized")
    assert redis_get(secret_key(cl)) == shared
    assert shared_log_lines(b) == [] and shared_log_lines(c) == []


def test_not_ready_and_no_tokens_until_the_secret_is_known(cluster_factory):
    cl = cluster_factory(presence_ttl=RETRY_PRESENCE_TTL)
    cl.secret = None
    key = secret_key(cl)
    with Redis(REDIS_URL) as r:
        r.cmd("RPUSH", key, "not-a-string")  # GET fails with WRONGTYPE: no secret
    a = cl.start_hub(ready=False)
    time.sleep(1.5)  # Redis and RabbitMQ are up by now; only the secret is missing
    assert readyz_status(a) == 503
    r = a.post("/sessions")
    assert r.status_code == 503, (r.status_code, r.text)
    with pytest.raises(HandshakeError) as ei:
        a.ws_raw()
    raw_error(ei.value, 503, "unavailable")
    assert shared_log_lines(a) == []
    with Redis(REDIS_URL) as r:
        r.cmd("DEL", key)
    wait_readyz(a, 200, timeout=3 * RETRY_PRESENCE_TTL)
    minted = a.post("/sessions").json()
    assert signed_with(minted["token"], redis_get(key)), minted


def test_secret_survives_redis_losing_its_data(cluster_factory):
    """A Redis that restarts empty gets the secret in use back from the
    instances when they reconnect (not a candidate of their own), so an
    instance started afterwards agrees with them."""
    redis = PrivateRedis().start()
    cl = cluster_factory(redis_url=redis.url, presence_ttl=RETRY_PRESENCE_TTL)
    cl.secret = None
    try:
        creator = cl.start_hub()
        b = cl.start_hub()  # adopts the creator's secret
        creator.stop()
        minted = b.post("/sessions").json()
        redis.stop()  # nothing is saved: the restarted server is empty
        wait_readyz(b, 503, 10)
        redis.start()
        wait_readyz(b, 200, 20)
        with Redis(redis.url) as r:
            stored = r.cmd("GET", secret_key(cl))
        assert stored is not None and signed_with(minted["token"], stored), stored
        c = cl.start_hub()
        assert "created=0" in shared_log_lines(c)[0], shared_log_lines(c)
        assert c.ws(token=minted["token"], resumed=True).id == minted["id"]
    finally:
        for h in cl.hubs:
            h.stop()
        redis.destroy()
