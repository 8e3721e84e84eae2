"""HTTP API (PROTOCOL.md section 4, PROTOCOL-NOTES.md "HTTP")."""

import json
import re

import pytest

from conftest import check_message, http_error, raw_error
from wsraw import HandshakeError, raw_members

JSON = {"Content-Type": "application/json"}


def json_ok(r, status=200):
    assert r.status_code == status, (r.status_code, r.text)
    ctype = r.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip().lower() == "application/json", ctype
    return r.json()


def relay_doc(receivers, body_raw=b"1", extra=b""):
    return b'{"receivers":%s,"body":%s%s}' % (json.dumps(receivers).encode(), body_raw, extra)


# ---- POST /relay ------------------------------------------------------------------

def test_post_relay_delivers_from_zero(hub):
    b = hub.ws()
    body = b'{"n" : 123456789012345678901234567890, "s":"\\u0000\\ud83d\\ude00", "l":[ 1, 2 ]}'
    r = hub.post("/relay", data=relay_doc([b.id], body), headers=JSON)
    doc = json_ok(r)
    assert set(doc) == {"id", "accepted", "unknown"}, doc
    assert isinstance(doc["id"], str) and doc["id"]
    assert doc["accepted"] == 1 and doc["unknown"] == []
    raw = b.recv_text()
    m = json.loads(raw)
    check_message(m, 0)
    assert m["id"] == doc["id"]
    assert raw_members(raw)["body"] == body


def test_post_relay_with_from(hub):
    a = hub.ws()
    b = hub.ws()
    r = hub.post("/relay", data=relay_doc([a.id, b.id], b'"hey"', b',"from":%d' % a.id),
                 headers=JSON)
    doc = json_ok(r)
    assert doc["accepted"] == 2 and doc["unknown"] == []
    ma = a.recv_json()
    mb = b.recv_json()
    check_message(ma, a.id, "hey")
    check_message(mb, a.id, "hey")
    assert ma["id"] == mb["id"] == doc["id"]


def test_post_relay_ids_unique(hub):
    b = hub.ws()
    ids = set()
    for i in range(5):
        doc = json_ok(hub.post("/relay", data=relay_doc([b.id], b"%d" % i), headers=JSON))
        ids.add(doc["id"])
        m = b.recv_json()
        assert m["id"] == doc["id"] and m["body"] == i
    assert len(ids) == 5


def test_post_relay_unknown_and_offline(hub):
    a = hub.ws()
    gone = hub.ws()
    gid = gone.id
    gone.close()
    r = hub.post("/relay", data=relay_doc([a.id, gid, 888888888, a.id]), headers=JSON)
    doc = json_ok(r)
    assert doc["accepted"] == 2
    assert doc["unknown"] == [888888888]
    check_message(a.recv_json(), 0, 1)
    a.send_text('{"type":"ping"}')
    assert a.recv_json() == {"type": "pong"}  # duplicate receiver delivered once


def test_post_relay_charset_parameter_allowed(hub):
    b = hub.ws()
    r = hub.post("/relay", data=relay_doc([b.id]),
                 headers={"Content-Type": "application/json; charset=utf-8"})
    json_ok(r)
    check_message(b.recv_json(), 0, 1)


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "application/jsonp", "text/json"])
def test_post_relay_wrong_content_type_415(hub, ctype):
    b = hub.ws()
    headers = {"Content-Type": ctype} if ctype else {}
    r = hub.post("/relay", data=relay_doc([b.id]), headers=headers)
    if ctype is None:
        assert "Content-Type" not in r.request.headers
    http_error(r, 415, "unsupported_media_type")
    b.expect_silence(0.2)


@pytest.mark.parametrize("doc, code", [
    (b'{"receivers":[1],"body":', "bad_json"),
    (b'{"receivers":[1],"body":1', "bad_json"),
    (b"", "bad_json"),
    (b"not json", "bad_json"),
    (b'{"receivers":[1],"body":"\xff"}', "bad_json"),
    (b'{"receivers":[1],"body":1} trailing', "bad_json"),
    (b"[]", "bad_request"),
    (b'"x"', "bad_request"),
    (b'{"body":1}', "bad_request"),
    (b'{"receivers":[],"body":1}', "bad_request"),
    (b'{"receivers":7,"body":1}', "bad_request"),
    (b'{"receivers":[0],"body":1}', "bad_request"),
    (b'{"receivers":[-1],"body":1}', "bad_request"),
    (b'{"receivers":[1.5],"body":1}', "bad_request"),
    (b'{"receivers":[1e3],"body":1}', "bad_request"),
    (b'{"receivers":["1"],"body":1}', "bad_request"),
    (b'{"receivers":[18446744073709551616],"body":1}', "bad_request"),
    (b'{"receivers":[1]}', "bad_request"),
    (b'{"receivers":[1],"body":1,"from":0}', "bad_request"),
    (b'{"receivers":[1],"body":1,"from":-1}', "bad_request"),
    (b'{"receivers":[1],"body":1,"from":"1"}', "bad_request"),
    (b'{"receivers":[1],"body":1,"from":1.5}', "bad_request"),
    (b'{"receivers":[1],"body":1,"from":null}', "bad_request"),
    (b'{"receivers":[1],"body":1,"from":18446744073709551616}', "bad_request"),
], ids=range(24))
def test_post_relay_bad_requests_400(hub, doc, code):
    a = hub.ws()
    doc = doc.replace(b"[1]", b"[%d]" % a.id)
    r = hub.post("/relay", data=doc, headers=JSON)
    http_error(r, 400, code)
    a.expect_silence(0.2)


def test_post_relay_too_many_receivers_400(hub):
    a = hub.ws()
    receivers = [a.id] + list(range(10**9, 10**9 + 255))
    r = hub.post("/relay", data=relay_doc(receivers), headers=JSON)
    http_error(r, 400, "too_many_receivers")
    receivers = receivers[:255]
    doc = json_ok(hub.post("/relay", data=relay_doc(receivers), headers=JSON))
    assert doc["accepted"] == 1 and sorted(doc["unknown"]) == sorted(receivers[1:])
    check_message(a.recv_json(), 0, 1)


def test_post_relay_body_over_default_limit_413(hub):
    a = hub.ws()
    body = b'"' + b"y" * (1048577 - 2) + b'"'
    r = hub.post("/relay", data=relay_doc([a.id], body), headers=JSON)
    http_error(r, 413, "body_too_large")
    body = b'"' + b"y" * (1048576 - 2) + b'"'
    json_ok(hub.post("/relay", data=relay_doc([a.id], body), headers=JSON))
    assert raw_members(a.recv_text(timeout=10))["body"] == body


def test_oversized_content_length_413_without_reading_body(hub):
    n = 1048576 + 65536 + 1
    req = (b"POST /relay HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % n)
    resp = hub.raw_http(req, timeout=5)  # the body is never sent
    raw_error(resp, 413, "body_too_large")


@pytest.fixture(scope="module")
def small_hub():
    from conftest import Hub
    h = Hub(["--max-body-bytes", "1000"]).start()
    yield h
    h.stop()


def test_small_limit_body_field(small_hub):
    a = small_hub.ws()
    body = b'"' + b"z" * 998 + b'"'
    json_ok(small_hub.post("/relay", data=relay_doc([a.id], body), headers=JSON))
    assert raw_members(a.recv_text())["body"] == body
    body = b'"' + b"z" * 999 + b'"'
    http_error(small_hub.post("/relay", data=relay_doc([a.id], body), headers=JSON), 413,
               "body_too_large")
    a.expect_silence(0.2)


def test_small_limit_content_length(small_hub):
    req = (b"POST /relay HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % (1000 + 65536 + 1))
    raw_error(small_hub.raw_http(req, timeout=5), 413, "body_too_large")


def test_small_limit_request_padding_not_counted(small_hub):
    # the request is 5 KB, over max_body_bytes, but under the +64 KiB slack,
    # and its body field is tiny: accepted
    a = small_hub.ws()
    doc = b'{"receivers":[%d],' % a.id + b" " * 5000 + b'"body":"tiny"}'
    json_ok(small_hub.post("/relay", data=doc, headers=JSON))
    check_message(a.recv_json(), 0, "tiny")


# ---- POST /sessions ----------------------------------------------------------------

@pytest.mark.parametrize("data, headers", [
    (None, {}),
    (b"", {"Content-Type": "text/plain"}),
    (b"{}", JSON),
    (b'{"anything":1}', JSON),
    (b"{}", {"Content-Type": "application/json; charset=utf-8"}),
], ids=["empty-no-ctype", "empty-text", "object", "unknown-field", "charset"])
def test_post_sessions_201(hub, data, headers):
    r = hub.post("/sessions", data=data, headers=headers)
    doc = json_ok(r, 201)
    assert set(doc) == {"id", "token"}, doc
    assert type(doc["id"]) is int and doc["id"] >= 1
    assert isinstance(doc["token"], str) and doc["token"]


def test_post_sessions_allocates_new_ids(hub):
    ids = [json_ok(hub.post("/sessions"), 201)["id"] for _ in range(3)]
    c = hub.ws()
    assert len(set(ids + [c.id])) == 4
    assert ids == sorted(ids) and c.id > ids[-1]


@pytest.mark.parametrize("data, headers, status, code", [
    (b"[]", JSON, 400, "bad_request"),
    (b"1", JSON, 400, "bad_request"),
    (b"{", JSON, 400, "bad_json"),
    (b"nope", JSON, 400, "bad_json"),
    (b"{}", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    (b"{}", {}, 415, "unsupported_media_type"),
], ids=["array", "number", "truncated", "garbage", "text-plain", "no-ctype"])
def test_post_sessions_errors(hub, data, headers, status, code):
    http_error(hub.post("/sessions", data=data, headers=headers), status, code)


def test_minted_session_receives_stored_messages(hub):
    s = json_ok(hub.post("/sessions"), 201)
    sender = hub.ws()
    sender.send_text('{"type":"relay","ref":"m","receivers":[%d],"body":"first"}' % s["id"])
    assert sender.recv_json() == {"type": "relayed", "ref": "m", "accepted": 1, "unknown": []}
    doc = json_ok(hub.post("/relay", data=relay_doc([s["id"]], b'"second"'), headers=JSON))
    assert doc["accepted"] == 1 and doc["unknown"] == []
    c = hub.ws(token=s["token"])
    assert c.id == s["id"]
    assert c.hello["resumed"] is True
    check_message(c.recv_json(), sender.id, "first")
    check_message(c.recv_json(), 0, "second")
    c.send_text('{"type":"ping"}')
    assert c.recv_json() == {"type": "pong"}


# ---- GET /clients -------------------------------------------------------------------

def test_get_clients(hub_factory):
    h = hub_factory()
    assert json_ok(h.get("/clients")) == {"ids": []}
    cs = [h.ws() for _ in range(4)]
    assert json_ok(h.get("/clients")) == {"ids": sorted(c.id for c in cs)}
    cs[1].close()
    assert json_ok(h.get("/clients")) == {"ids": sorted(c.id for c in cs if c is not cs[1])}
    json_ok(h.post("/sessions"), 201)  # minted but never connected: not present
    assert json_ok(h.get("/clients"))["ids"] == sorted(c.id for c in cs if c is not cs[1])


# ---- health, readiness, page ---------------------------------------------------------

def test_healthz(hub):
    assert json_ok(hub.get("/healthz")) == {"status": "ok"}


def test_readyz(hub):
    assert json_ok(hub.get("/readyz")) == {"status": "ready"}


def test_index_page(hub):
    r = hub.get("/")
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").split(";")[0].strip().lower() == "text/html"
    text = r.text
    assert re.search(r"<html", text, re.I), text[:300]
    assert "/ws" in text
    assert "WebSocket" in text


# ---- 404 / 405 --------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [("GET", "/nope"), ("POST", "/nope"),
                                          ("GET", "/relay/x"), ("GET", "/healthzz"),
                                          ("GET", "/index.html.bak"), ("DELETE", "/x/y")])
def test_not_found(hub, method, path):
    http_error(hub.request(method, path, data=b"{}" if method == "POST" else None), 404,
               "not_found")


@pytest.mark.parametrize("method, path, allow", [
    ("GET", "/relay", "POST"),
    ("PUT", "/relay", "POST"),
    ("GET", "/sessions", "POST"),
    ("DELETE", "/sessions", "POST"),
    ("POST", "/clients", "GET"),
    ("POST", "/healthz", "GET"),
    ("PUT", "/readyz", "GET"),
    ("POST", "/metrics", "GET"),
])
def test_method_not_allowed(hub, method, path, allow):
    r = hub.request(method, path, data=b"{}", headers=JSON)
    http_error(r, 405, "method_not_allowed")
    allowed = [m.strip().upper() for m in r.headers.get("Allow", "").split(",")]
    assert allow in allowed, r.headers
    assert method not in allowed, r.headers


def test_upgrade_on_other_path_404(hub):
    with pytest.raises(HandshakeError) as ei:
        hub.ws_raw(path="/chat")
    raw_error(ei.value, 404, "not_found")


# ---- metrics ---------------------------------------------------------------------------

REQUIRED = ["msghub_connections", "msghub_frames_received_total", "msghub_relays_total",
            "msghub_deliveries_total", "msghub_inbox_stored_total", "msghub_inbox_dropped_total",
            "msghub_errors_total", "msghub_relay_latency_seconds"]
TYPES = {"msghub_connections": "gauge", "msghub_frames_received_total": "counter",
         "msghub_relays_total": "counter", "msghub_deliveries_total": "counter",
         "msghub_inbox_stored_total": "counter", "msghub_inbox_dropped_total": "counter",
         "msghub_errors_total": "counter", "msghub_relay_latency_seconds": "histogram"}


def test_metrics_format(hub):
    r = hub.get("/metrics")
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    text = r.text
    for name, typ in TYPES.items():
        assert re.search(r"^# TYPE %s %s$" % (name, typ), text, re.M), (name, text)
    for name in REQUIRED[:-2]:
        assert re.search(r"^%s \S+$" % name, text, re.M), (name, text)
    assert re.search(r'^msghub_relay_latency_seconds_bucket\{le="\+Inf"\} \S+$', text, re.M)
    assert re.search(r"^msghub_relay_latency_seconds_sum \S+$", text, re.M)
    assert re.search(r"^msghub_relay_latency_seconds_count \S+$", text, re.M)


def test_metrics_counters_move(hub_factory):
    h = hub_factory()
    m0 = h.metrics()
    assert m0["msghub_connections"] == 0
    a = h.ws()
    b = h.ws()
    m1 = h.metrics()
    assert m1["msghub_connections"] == 2

    a.send_text('{"type":"relay","receivers":[%d],"body":1}' % b.id)
    check_message(b.recv_json(), a.id, 1)
    m2 = h.metrics()
    assert m2["msghub_relays_total"] == m1["msghub_relays_total"] + 1
    assert m2["msghub_deliveries_total"] == m1["msghub_deliveries_total"] + 1
    assert m2["msghub_frames_received_total"] >= m1["msghub_frames_received_total"] + 1
    assert (m2["msghub_relay_latency_seconds_count"]
            == m1["msghub_relay_latency_seconds_count"] + 1)
    assert (m2['msghub_relay_latency_seconds_bucket{le="+Inf"}']
            == m2["msghub_relay_latency_seconds_count"])
    assert m2["msghub_relay_latency_seconds_sum"] >= m1["msghub_relay_latency_seconds_sum"]

    json_ok(h.post("/relay", data=relay_doc([a.id, b.id]), headers=JSON))
    a.recv_json()
    b.recv_json()
    m3 = h.metrics()
    assert m3["msghub_relays_total"] == m2["msghub_relays_total"] + 1
    assert m3["msghub_deliveries_total"] == m2["msghub_deliveries_total"] + 2

    c = h.ws()
    cid = c.id
    c.close()
    m4 = h.metrics()
    assert m4["msghub_connections"] == 2
    a.send_text('{"type":"relay","ref":1,"receivers":[%d],"body":1}' % cid)
    assert a.recv_json()["accepted"] == 1
    m5 = h.metrics()
    assert m5["msghub_inbox_stored_total"] == m4["msghub_inbox_stored_total"] + 1
    assert m5["msghub_deliveries_total"] == m4["msghub_deliveries_total"]

    key = 'msghub_errors_total{code="bad_json"}'
    a.send_text("{")
    assert a.recv_json()["code"] == "bad_json"
    http_error(h.post("/relay", data=b"{", headers=JSON), 400, "bad_json")
    m6 = h.metrics()
    assert m6.get(key, 0) == m5.get(key, 0) + 2

    b.close()
    assert h.metrics()["msghub_connections"] == 1


# ---- API key ---------------------------------------------------------------------------

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def key_hub():
    from conftest import Hub
    h = Hub(["--api-key", KEY]).start()
    yield h
    h.stop()


def _service_calls(h, target):
    return [
        ("POST", "/relay", relay_doc([target]), JSON, 200),
        ("POST", "/sessions", None, {}, 201),
        ("GET", "/clients", None, {}, 200),
    ]


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Bearer s3cret-ke", "Bearer s3cret-key2",
                                  "Bearer ", "Basic s3cret-key", KEY, "Bearer  s3cret-keyX",
                                  "bearer-s3cret-key"])
def test_api_key_refused(key_hub, auth):
    c = key_hub.ws()
    for method, path, data, headers, _ok in _service_calls(key_hub, c.id):
        h = dict(headers)
        if auth is not None:
            h["Authorization"] = auth
        r = key_hub.request(method, path, data=data, headers=h)
        http_error(r, 401, "unauthorized")
        assert "bearer" in r.headers.get("WWW-Authenticate", "").lower(), r.headers
    c.expect_silence(0.2)


def test_api_key_accepted(key_hub):
    c = key_hub.ws()
    for method, path, data, headers, ok in _service_calls(key_hub, c.id):
        h = dict(headers)
        h["Authorization"] = "Bearer " + KEY
        r = key_hub.request(method, path, data=data, headers=h)
        json_ok(r, ok)
    check_message(c.recv_json(), 0, 1)


def test_api_key_checked_before_content(key_hub):
    r = key_hub.post("/relay", data=b"not json", headers={"Content-Type": "text/plain"})
    http_error(r, 401, "unauthorized")
    r = key_hub.post("/relay", data=b"not json", headers={"Authorization": "Bearer " + KEY,
                                                           "Content-Type": "text/plain"})
    http_error(r, 415, "unsupported_media_type")


def test_api_key_open_endpoints(key_hub):
    assert json_ok(key_hub.get("/healthz")) == {"status": "ok"}
    assert json_ok(key_hub.get("/readyz")) == {"status": "ready"}
    assert key_hub.get("/metrics").status_code == 200
    assert key_hub.get("/").status_code == 200
    a = key_hub.ws()
    b = key_hub.ws()
    a.send_text('{"type":"relay","receivers":[%d],"body":"open"}' % b.id)
    check_message(b.recv_json(), a.id, "open")
