"""Every WebSocket error row of PROTOCOL.md section 2 and PROTOCOL-NOTES.md.

For each refused request: the exact error frame (code, message, ref echo),
the same connection still works, another client still works, and nothing
was relayed (assert_alive checks that the receiver's next message is the
liveness probe, not the refused relay)."""

import json

import pytest

from conftest import assert_alive, check_message, ws_error
from wsraw import OP_TEXT, encode_frame, raw_members

LIMIT = 1000  # --max-body-bytes of this module's hub

DEPTH_MSG = "JSON nested deeper than 64 levels"
BINARY_MSG = "binary frames are not accepted"


@pytest.fixture(scope="module")
def hub(request):
    from conftest import Hub
    h = Hub(["--max-body-bytes", str(LIMIT)]).start()
    yield h
    h.stop()


@pytest.fixture
def pair(hub):
    a = hub.ws()
    b = hub.ws()
    check = a.hello["limits"]
    assert check == {"max_receivers": 255, "max_body_bytes": LIMIT}, a.hello
    return a, b


def refuse(a, b, frame, code, ref=None, message=None):
    """Sends frame (bytes/str) as one text frame from a; expects exactly one
    error; then checks a and b still work and nothing was relayed."""
    a.send_text(frame)
    err = a.recv_json()
    ws_error(err, code, ref=ref, message=message)
    assert_alive(a, b)
    return err


# ---- bad_json --------------------------------------------------------------------

INVALID_UTF8 = [
    b'{"type":"ping","x":"\xff"}',
    b'{"type":"ping","x":"\xc0\xaf"}',          # overlong "/"
    b'{"type":"ping","x":"\xed\xa0\x80"}',      # UTF-16 surrogate
    b'{"type":"ping","x":"\xe6\x97"}',          # truncated sequence
    b'{"type":"ping","x":"\xf4\x90\x80\x80"}',  # above U+10FFFF
]


@pytest.mark.parametrize("frame", INVALID_UTF8, ids=range(len(INVALID_UTF8)))
def test_invalid_utf8_text_frame_is_bad_json(pair, frame):
    a, b = pair
    refuse(a, b, frame, "bad_json")


def test_invalid_utf8_in_relay_body_is_bad_json(pair):
    a, b = pair
    refuse(a, b, b'{"type":"relay","receivers":[%d],"body":"\xfe\xff"}' % b.id, "bad_json")


NOT_JSON = [
    b"hello",
    b"",
    b" ",
    b'{"type":"ping"',
    b'{"type":"ping"} x',
    b'{"type":"ping"}{"type":"ping"}',
    b"{'type':'ping'}",
    b'{"type":"ping",}',
    b'{"type":"ping","x":NaN}',
    b'{"type":"ping","x":01}',
    b'{"type":"ping","x":"a\x01b"}',   # raw control character in a string
    b'{"type":"ping","x":"\\x41"}',    # invalid escape
    b'{"type":"relay","receivers":[1],"body":}',
    b'{"type":"relay","receivers":[1],"body":[1,2}',
]


@pytest.mark.parametrize("frame", NOT_JSON, ids=range(len(NOT_JSON)))
def test_not_json_is_bad_json(pair, frame):
    a, b = pair
    refuse(a, b, frame, "bad_json")


def test_bad_json_with_ref_like_text_has_no_ref(pair):
    a, b = pair
    err = refuse(a, b, b'{"type":"ping","ref":"r",', "bad_json")
    assert "ref" not in err


# ---- depth ---------------------------------------------------------------------------

def deep_arrays(n):
    return b"[" * n + b"]" * n


def deep_objects(n):
    return b'{"a":' * n + b"1" + b"}" * n


@pytest.mark.parametrize("frame", [
    b'{"type":"ping","x":' + deep_arrays(100) + b"}",
    b'{"type":"ping","x":' + deep_objects(100) + b"}",
    deep_arrays(100),
    b'{"type":"ping","x":' + deep_arrays(64) + b"}",   # depth 65
], ids=["arrays100", "objects100", "toplevel100", "depth65"])
def test_deep_nesting_is_bad_request(pair, frame):
    a, b = pair
    refuse(a, b, frame, "bad_request", message=DEPTH_MSG)


def test_deep_body_is_refused_and_not_relayed(pair):
    a, b = pair
    refuse(a, b, b'{"type":"relay","receivers":[%d],"body":%s}' % (b.id, deep_arrays(100)),
           "bad_request", message=DEPTH_MSG)


def test_deep_body_with_ref_echoes_ref(pair):
    a, b = pair
    refuse(a, b, b'{"type":"relay","ref":"deep","receivers":[%d],"body":%s}'
           % (b.id, deep_arrays(100)), "bad_request", ref="deep", message=DEPTH_MSG)


def test_depth_64_is_allowed(pair):
    a, b = pair
    a.send_text(b'{"type":"ping","ref":"ok","x":' + deep_arrays(63) + b"}")
    assert a.recv_json() == {"type": "pong", "ref": "ok"}


# ---- not an object / type -------------------------------------------------------------

@pytest.mark.parametrize("frame", [b"[]", b'"ping"', b"1", b"null", b"true",
                                   b'[{"type":"ping"}]', b'  "x"  '])
def test_non_object_is_bad_request(pair, frame):
    a, b = pair
    err = refuse(a, b, frame, "bad_request")
    assert "ref" not in err


@pytest.mark.parametrize("frame", [b"{}", b'{"typ":"ping"}',
                                   b'{"type":5}', b'{"type":null}', b'{"type":["ping"]}',
                                   b'{"type":true}', b'{"type":{"t":"ping"}}'])
def test_missing_or_non_string_type_is_bad_request(pair, frame):
    a, b = pair
    refuse(a, b, frame, "bad_request")


@pytest.mark.parametrize("frame, ref", [
    (b'{"ref":"r9"}', "r9"),
    (b'{"type":5,"ref":7}', 7),
])
def test_bad_type_with_valid_ref_echoes_ref(pair, frame, ref):
    a, b = pair
    refuse(a, b, frame, "bad_request", ref=ref)


@pytest.mark.parametrize("t", ["Ping", "PING", "", "hello", "message", "relayed", "error",
                               "pong", "subscribe", "ping "])
def test_unknown_type(pair, t):
    a, b = pair
    refuse(a, b, json.dumps({"type": t}), "unknown_type")


def test_unknown_type_with_ref(pair):
    a, b = pair
    refuse(a, b, b'{"type":"nope","ref":"u1"}', "unknown_type", ref="u1")
    refuse(a, b, b'{"type":"nope","ref":-12}', "unknown_type", ref=-12)


# ---- ref ------------------------------------------------------------------------------

@pytest.mark.parametrize("ref_raw", [b"true", b"false", b"null", b"[1]", b'{"r":1}', b"[]"])
@pytest.mark.parametrize("typ", [b"ping", b"identity", b"list", b"relay"])
def test_invalid_ref_is_bad_request_without_echo(pair, ref_raw, typ):
    a, b = pair
    frame = b'{"type":"%s","ref":%s,"receivers":[%d],"body":1}' % (typ, ref_raw, b.id)
    err = refuse(a, b, frame, "bad_request")
    assert "ref" not in err


@pytest.mark.parametrize("ref_raw", [b"1.50", b"123456789012345678901234567890", b"-0",
                                     b"1e3", b'"a\\u00e9\\"b\\u0000"',
                                     '"caf\u00e9 \U0001F600"'.encode()])
def test_error_ref_copied_verbatim(pair, ref_raw):
    a, b = pair
    a.send_text(b'{"type":"nope","ref":%s}' % ref_raw)
    raw = a.recv_text()
    err = json.loads(raw)
    ws_error(err, "unknown_type", ref=json.loads(ref_raw))
    assert raw_members(raw)["ref"] == ref_raw, raw
    assert_alive(a, b)


def test_relay_error_echoes_ref(pair):
    a, b = pair
    refuse(a, b, b'{"type":"relay","ref":"nr","body":1}', "bad_request", ref="nr")
    refuse(a, b, b'{"type":"relay","ref":3,"receivers":[0],"body":1}', "bad_request", ref=3)


# ---- relay fields --------------------------------------------------------------------

@pytest.mark.parametrize("frame", [
    b'{"type":"relay","body":1}',
    b'{"type":"relay","receivers":null,"body":1}',
    b'{"type":"relay","receivers":7,"body":1}',
    b'{"type":"relay","receivers":"7","body":1}',
    b'{"type":"relay","receivers":{"0":7},"body":1}',
    b'{"type":"relay","receivers":[],"body":1}',
], ids=["missing", "null", "number", "string", "object", "empty"])
def test_bad_receivers_field(pair, frame):
    a, b = pair
    refuse(a, b, frame, "bad_request")


BAD_IDS = [b"0", b"-1", b"1.5", b"1e3", b"1E3", b"1e0", b"1.0", b"-0", b'"7"',
           b"18446744073709551616", b"99999999999999999999999", b"null", b"true",
           b"[7]", b"{}"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=[x.decode() for x in BAD_IDS])
def test_bad_receiver_id(pair, bad):
    a, b = pair
    # a valid receiver alongside: the whole relay is refused, b gets nothing
    refuse(a, b, b'{"type":"relay","receivers":[%d,%s],"body":"no"}' % (b.id, bad),
           "bad_request")


def test_bad_receiver_id_string_of_real_id(pair):
    a, b = pair
    refuse(a, b, b'{"type":"relay","receivers":["%d"],"body":"no"}' % b.id, "bad_request")


def test_largest_id_is_valid(pair):
    a, b = pair
    a.send_text(b'{"type":"relay","ref":"big","receivers":[18446744073709551615],"body":1}')
    assert a.recv_json() == {"type": "relayed", "ref": "big", "accepted": 0,
                             "unknown": [18446744073709551615]}
    assert_alive(a, b)


def test_missing_body(pair):
    a, b = pair
    refuse(a, b, b'{"type":"relay","receivers":[%d]}' % b.id, "bad_request")
    refuse(a, b, b'{"type":"relay","ref":"mb","receivers":[%d]}' % b.id, "bad_request", ref="mb")


def test_256_receivers_too_many(pair):
    a, b = pair
    receivers = [b.id] + list(range(10**9, 10**9 + 255))
    assert len(receivers) == 256
    refuse(a, b, json.dumps({"type": "relay", "receivers": receivers, "body": 1}),
           "too_many_receivers", message="at most 255 receivers")
    refuse(a, b, json.dumps({"type": "relay", "ref": "tm", "receivers": receivers, "body": 1}),
           "too_many_receivers", ref="tm", message="at most 255 receivers")


def test_256_duplicates_too_many(pair):
    a, b = pair
    refuse(a, b, json.dumps({"type": "relay", "receivers": [b.id] * 256, "body": 1}),
           "too_many_receivers", message="at most 255 receivers")


def test_count_checked_before_values(pair):
    a, b = pair
    receivers = b"[" + b",".join([b"0"] * 256) + b"]"
    refuse(a, b, b'{"type":"relay","receivers":%s,"body":1}' % receivers, "too_many_receivers",
           message="at most 255 receivers")


def test_receiver_values_checked_before_body(pair):
    a, b = pair
    refuse(a, b, b'{"type":"relay","receivers":[0]}', "bad_request")
    big = b'"' + b"x" * (LIMIT + 10) + b'"'
    refuse(a, b, b'{"type":"relay","receivers":[0],"body":%s}' % big, "bad_request")
    receivers = json.dumps(list(range(1, 300))).encode()
    refuse(a, b, b'{"type":"relay","receivers":%s,"body":%s}' % (receivers, big),
           "too_many_receivers")


def test_configured_max_receivers(hub_factory):
    h = hub_factory("--max-receivers", "3")
    a = h.ws()
    b = h.ws()
    assert a.hello["limits"]["max_receivers"] == 3
    a.send_text(json.dumps({"type": "relay", "ref": 1, "receivers": [b.id, 10**9, 10**9 + 1],
                            "body": 1}))
    r = a.recv_json()
    assert r["type"] == "relayed" and r["accepted"] == 1
    check_message(b.recv_json(), a.id, 1)
    refuse(a, b, json.dumps({"type": "relay", "receivers": [b.id, 10**9, 10**9 + 1, 10**9 + 2],
                             "body": 1}), "too_many_receivers")


# ---- body size --------------------------------------------------------------------------

def string_body(n):
    """A JSON string value whose text is exactly n bytes."""
    return b'"' + b"x" * (n - 2) + b'"'


def test_body_at_limit_is_relayed(pair):
    a, b = pair
    body = string_body(LIMIT)
    a.send_text(b'{"type":"relay","ref":"L","receivers":[%d],"body":%s}' % (b.id, body))
    assert a.recv_json() == {"type": "relayed", "ref": "L", "accepted": 1, "unknown": []}
    raw = b.recv_text()
    assert raw_members(raw)["body"] == body


def test_body_one_byte_over_limit(pair):
    a, b = pair
    refuse(a, b, b'{"type":"relay","receivers":[%d],"body":%s}' % (b.id, string_body(LIMIT + 1)),
           "body_too_large")
    refuse(a, b, b'{"type":"relay","ref":"big","receivers":[%d],"body":%s}'
           % (b.id, string_body(LIMIT + 1)), "body_too_large", ref="big")


def test_body_size_counts_whitespace_as_sent(pair):
    a, b = pair
    # 998 bytes of spaces inside an array: "[" + spaces + "1" + "]" = LIMIT + 1 bytes
    body = b"[" + b" " * (LIMIT - 2) + b"1]"
    assert len(body) == LIMIT + 1
    refuse(a, b, b'{"type":"relay","receivers":[%d],"body":%s}' % (b.id, body), "body_too_large")
    body = b"[" + b" " * (LIMIT - 3) + b"1]"
    assert len(body) == LIMIT
    a.send_text(b'{"type":"relay","receivers":[%d],"body":%s}' % (b.id, body))
    assert raw_members(b.recv_text())["body"] == body


def test_whitespace_around_body_not_counted(pair):
    a, b = pair
    body = string_body(LIMIT)
    a.send_text(b'{"type":"relay","receivers":[%d],"body":   %s   }' % (b.id, body))
    assert raw_members(b.recv_text())["body"] == body


def test_default_limit_one_mebibyte(hub_factory):
    h = hub_factory()
    a = h.ws()
    b = h.ws()
    assert a.hello["limits"]["max_body_bytes"] == 1048576
    body = string_body(1048576)
    a.send_text(b'{"type":"relay","ref":"mib","receivers":[%d],"body":%s}' % (b.id, body))
    assert a.recv_json(timeout=10) == {"type": "relayed", "ref": "mib", "accepted": 1,
                                       "unknown": []}
    raw = b.recv_text(timeout=10)
    assert raw_members(raw)["body"] == body
    a.send_text(b'{"type":"relay","ref":"over","receivers":[%d],"body":%s}'
                % (b.id, string_body(1048577)))
    ws_error(a.recv_json(timeout=10), "body_too_large", ref="over")
    assert_alive(a, b)


# ---- binary frames ------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b'{"type":"ping"}', b"", b"\x00\x01\x02\xff"])
def test_binary_frame_is_bad_request(pair, payload):
    a, b = pair
    a.send_binary(payload)
    err = a.recv_json()
    ws_error(err, "bad_request", message=BINARY_MSG)
    assert_alive(a, b)


def test_binary_relay_not_relayed(pair):
    a, b = pair
    a.send_binary(b'{"type":"relay","receivers":[%d],"body":"bin"}' % b.id)
    ws_error(a.recv_json(), "bad_request", message=BINARY_MSG)
    assert_alive(a, b)


# ---- errors in a stream keep their place --------------------------------------------------

def test_errors_interleaved_with_good_requests(pair):
    a, b = pair
    frames = [b'{"type":"ping","ref":1}', b"nope", b'{"type":"ping","ref":2}', b"[]",
              b'{"type":"x","ref":3}', b'{"type":"identity","ref":4}']
    a.send_raw(b"".join(encode_frame(OP_TEXT, f) for f in frames))
    assert a.recv_json() == {"type": "pong", "ref": 1}
    ws_error(a.recv_json(), "bad_json")
    assert a.recv_json() == {"type": "pong", "ref": 2}
    ws_error(a.recv_json(), "bad_request")
    ws_error(a.recv_json(), "unknown_type", ref=3)
    assert a.recv_json() == {"type": "identity", "id": a.id, "ref": 4}
    assert_alive(a, b)


def test_error_counts_in_metrics(hub, pair):
    a, b = pair
    before = hub.metrics()
    a.send_text(b"garbage")
    ws_error(a.recv_json(), "bad_json")
    a.send_text(b'{"type":"zzz"}')
    ws_error(a.recv_json(), "unknown_type")
    after = hub.metrics()
    key_j = 'msghub_errors_total{code="bad_json"}'
    key_u = 'msghub_errors_total{code="unknown_type"}'
    assert after.get(key_j, 0) == before.get(key_j, 0) + 1, (before.get(key_j), after.get(key_j))
    assert after.get(key_u, 0) == before.get(key_u, 0) + 1


@pytest.mark.parametrize("frame, code", [
    (b'{"type":"nope","ref":true}', "bad_request"),      # ref is checked before type
    (b'{"type":5,"ref":[1]}', "bad_request"),
    (b'{"type":"relay","ref":{},"receivers":[0]}', "bad_request"),
])
def test_check_order_ref_before_type(pair, frame, code):
    a, b = pair
    err = refuse(a, b, frame, code)
    assert "ref" not in err
