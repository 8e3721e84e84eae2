"""msghub-cli against the real hub: `connect` driven through a stdin pipe
(hello, /list, /id, /to, /json, plain lines, replies, errors, close codes),
`relay` / `list` / `session` over HTTP, the API key, resume with a token,
usage errors (exit 2). Every wait is bounded.

The cli is found next to the hub binary: <dir of $MSGHUB_BIN>/tools/cli/msghub-cli.
"""

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import HOST, find_binary, free_port

WAIT = 10.0  # seconds for any one expected line or exit


def cli_path():
    hub = find_binary()
    path = os.path.join(os.path.dirname(hub), "tools", "cli", "msghub-cli") if hub else ""
    if not os.access(path, os.X_OK):
        pytest.fail("msghub-cli not found at %r (build the msghub-cli target)" % path,
                    pytrace=False)
    return path


def cli_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGHUB_")}
    env.update(extra or {})
    return env


def no_sanitizer_report(stderr):
    """Under the ASan/UBSan build a leak or an error shows up on stderr."""
    assert "Sanitizer" not in stderr and "runtime error" not in stderr, stderr


def run(*args, stdin=None, env=None, timeout=WAIT):
    """Runs one non-interactive command; returns CompletedProcess (text)."""
    r = subprocess.run([cli_path()] + [str(a) for a in args], input=stdin,
                       capture_output=True, text=True, timeout=timeout, env=cli_env(env))
    no_sanitizer_report(r.stderr)
    return r


def http_url(hub):
    return "http://%s:%d" % (HOST, hub.port)


def ws_url(hub):
    return "ws://%s:%d" % (HOST, hub.port)


class Cli:
    """`msghub-cli connect` as a subprocess: stdin is a pipe, stdout lines
    are collected by a thread so every read can have a deadline."""

    def __init__(self, hub, *args, stdin=subprocess.PIPE, env=None):
        cmd = [cli_path(), "connect", "--url", ws_url(hub)] + [str(a) for a in args]
        self.proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=cli_env(env))
        self.lines = queue.Queue()
        self.seen = []
        self.err = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines),
                         daemon=True).start()
        self.errq = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.errq), daemon=True).start()
        self.id = None
        self.token = None

    @staticmethod
    def _pump(stream, q):
        for raw in stream:
            q.put(raw.decode("utf-8", "replace").rstrip("\n"))
        q.put(None)

    def expect(self, pattern, timeout=WAIT):
        """Returns the regex match of the next stdout line matching pattern
        (other lines are kept in self.seen)."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no line matching %r within %.0fs; saw %r; stderr %r"
                                     % (pattern, timeout, self.seen, self.stderr()))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)
                raise AssertionError("stdout ended before %r; saw %r; stderr %r"
                                     % (pattern, self.seen, self.stderr()))
            self.seen.append(line)
            m = rx.fullmatch(line)
            if m:
                return m

    def hello(self, resumed=False):
        m = self.expect(r"hello id=(\d+) token=(\S+) resumed=(true|false)")
        assert m.group(3) == ("true" if resumed else "false"), m.group(0)
        self.id, self.token = int(m.group(1)), m.group(2)
        return self

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def eof(self):
        self.proc.stdin.close()

    def wait(self, timeout=WAIT):
        rc = self.proc.wait(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # stderr closes at exit; collect all of it
            try:
                line = self.errq.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            if line is None:
                break
            self.err.append(line)
        no_sanitizer_report("\n".join(self.err))
        return rc

    def stderr(self):
        while True:
            try:
                line = self.errq.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.err.append(line)
        return "\n".join(self.err)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def clis():
    started = []

    def make(hub, *args, **kw):
        c = Cli(hub, *args, **kw)
        started.append(c)
        return c

    yield make
    for c in started:
        c.kill()


# ---- usage ------------------------------------------------------------------

def test_help_and_usage_errors():
    r = run("--help")
    assert r.returncode == 0 and "connect" in r.stdout and "exit codes" in r.stdout, r
    for cmd in ("connect", "relay", "list", "session"):
        r = run(cmd, "--help")
        assert r.returncode == 0, r
        assert r.stdout.startswith("usage: msghub-cli " + cmd), r.stdout
        assert "exit codes" in r.stdout, r.stdout
    for args, needle in [
        ((), "usage"),
        (("frobnicate",), "unknown command"),
        (("list", "--bogus"), "unknown option '--bogus'"),
        (("list", "--url"), "needs a value"),
        (("list", "--json=1"), "takes no value"),
        (("list", "--to", "7"), "unknown option '--to'"),
        (("list", "--url", "ftp://x"), "http:// or ws://"),
        (("list", "--url", "http://h:99999"), "bad port"),
        (("list", "--timeout", "0"), "--timeout"),
        (("relay", "{}"), "--to IDS is required"),
        (("relay", "--to", "7"), "exactly one BODY"),
        (("relay", "--to", "7,x", "{}"), "bad receiver id 'x'"),
        (("relay", "--to", "0", "{}"), "bad receiver id '0'"),
        (("relay", "--to", "18446744073709551616", "{}"), "bad receiver id"),
        (("relay", "--to", "7", "--from", "-1", "{}"), "--from"),
        (("relay", "--to", "7", "{}", "extra"), "unexpected argument 'extra'"),
        (("connect", "extra"), "unexpected argument"),
    ]:
        r = run(*args)
        assert r.returncode == 2, (args, r)
        assert needle in r.stderr, (args, r.stderr)


# ---- connect ----------------------------------------------------------------

def test_two_users_chat(hub, clis):
    a = clis(hub).hello()
    b = clis(hub).hello()
    assert a.id != b.id

    a.send("/id")
    a.expect(r"id %d" % a.id)
    a.send("/list")
    ids = a.expect(r"online: ([\d ]+)").group(1).split()
    assert str(b.id) in ids and str(a.id) not in ids, ids

    a.send("/to %d hello there" % b.id)
    a.expect(r"relayed accepted=1")
    b.expect(r"\[from %d\] \{\"text\":\"hello there\"\}" % a.id)

    # plain lines go to the last /to receivers; quotes, backslashes, UTF-8 escaped as JSON
    a.send('say "hi" \\ héllo ✓')
    b.expect(re.escape('[from %d] {"text":"say \\"hi\\" \\\\ héllo ✓"}' % a.id))
    a.send("//slash")
    b.expect(re.escape('[from %d] {"text":"/slash"}' % a.id))

    # /json: the body is forwarded and printed byte for byte (big integer, spacing, escapes)
    body = '{"n": 123456789012345678901234567890, "s":"\\u0000\\ud83d\\ude00", "a" : [ 1,2 ]}'
    a.send("/json %d %s" % (b.id, body))
    b.expect(re.escape("[from %d] %s" % (a.id, body)))

    # b answers with the receivers list syntax, including itself
    b.send("/to %d,%d back" % (a.id, b.id))
    a.expect(re.escape('[from %d] {"text":"back"}' % b.id))
    b.expect(re.escape('[from %d] {"text":"back"}' % b.id))

    a.send("/ping")
    a.expect("pong")

    # end of input: a closes normally and exits 0; b no longer sees it
    a.eof()
    assert a.wait() == 0, a.stderr()
    b.send("/list")
    line = b.expect(r"online:.*").group(0)
    assert str(a.id) not in line.split(), line
    b.eof()
    assert b.wait() == 0


def test_local_errors_and_hub_errors(hub_factory, clis):
    h = hub_factory("--max-receivers", "2")
    a = clis(h).hello()
    a.send("no receivers yet")
    a.send("/to 0 x")
    a.send("/json %d {not json" % a.id)
    a.send("/nope")
    a.send("/to 1,2,3 too many")
    a.expect(r"error too_many_receivers: at most 2 receivers")
    a.send("/to 999999 anyone")
    a.expect(r"relayed accepted=0 unknown=999999")
    a.eof()
    assert a.wait() == 0
    err = a.stderr()
    for needle in ("no receivers yet", "bad receiver id '0'", "/json needs a valid JSON body",
                   "unknown command '/nope'"):
        assert needle in err, err


def test_stdin_from_file_waits_for_answers(hub, clis, tmp_path):
    other = clis(hub).hello()
    script = tmp_path / "cmds.txt"
    script.write_text("/list\n/id\n/to %d from a file\n/ping" % other.id)  # last line unterminated
    with open(script, "rb") as f:
        c = clis(hub, stdin=f)
        c.hello()
        c.expect(r"online: .*\b%d\b.*" % other.id)
        c.expect(r"id %d" % c.id)
        c.expect(r"relayed accepted=1")
        c.expect("pong")
        assert c.wait() == 0, c.stderr()
    other.expect(re.escape('[from %d] {"text":"from a file"}' % c.id))


def test_quit_command_and_sigint(hub, clis):
    c = clis(hub).hello()
    c.send("/quit")
    assert c.wait() == 0, c.stderr()

    c = clis(hub).hello()
    c.proc.send_signal(signal.SIGINT)
    assert c.wait() == 0, c.stderr()


def test_session_resume_and_takeover(hub, clis):
    r = run("session", "--url", http_url(hub))
    assert r.returncode == 0, r
    m = re.fullmatch(r"id=(\d+) token=(\S+)\n", r.stdout)
    assert m, r.stdout
    uid, token = int(m.group(1)), m.group(2)

    # stored while offline, delivered after the hello
    r = run("relay", "--to", uid, '{"while":"away"}', "--url", http_url(hub))
    assert r.returncode == 0, r
    first = clis(hub, "--token", token).hello(resumed=True)
    assert first.id == uid
    first.expect(r'\[from 0\] \{"while":"away"\}')

    # a second connection with the same token takes over: 4409, exit 1
    second = clis(hub, "--token", first.token).hello(resumed=True)
    assert second.id == uid
    first.expect(r"closed 4409 session taken over")
    assert first.wait() == 1
    second.eof()
    assert second.wait() == 0


def test_bad_token_refused(hub):
    r = run("connect", "--url", ws_url(hub), "--token", "not-a-token", stdin="")
    assert r.returncode == 1, r
    assert "401" in r.stderr and "unauthorized" in r.stderr, r.stderr


def test_connect_refused_and_http_unreachable():
    port = free_port()
    r = run("connect", "--url", "ws://127.0.0.1:%d" % port, stdin="")
    assert r.returncode == 1 and "cannot connect" in r.stderr, r
    r = run("list", "--url", "http://127.0.0.1:%d" % port)
    assert r.returncode == 1 and "list failed" in r.stderr, r


def test_hub_shutdown_closes_1001(hub_factory, clis):
    h = hub_factory()
    c = clis(h).hello()
    h.stop()
    c.expect(r"closed 1001 .*")
    assert c.wait() == 1


# ---- HTTP commands ----------------------------------------------------------

def test_relay_to_connected_cli(hub, clis):
    c = clis(hub).hello()
    url = http_url(hub)

    r = run("relay", "--to", c.id, '{"svc": 1}', "--url", url)
    assert r.returncode == 0, r
    doc = json.loads(r.stdout)
    assert doc["accepted"] == 1 and doc["unknown"] == [] and isinstance(doc["id"], str), doc
    c.expect(re.escape('[from 0] {"svc": 1}'))

    # --from, a ws:// URL for an HTTP command, repeated --to with an unknown id
    r = run("relay", "--to", c.id, "--to", "99999999", "--from", "42", "[1,2]",
            "--url", ws_url(hub) + "/ws")
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["unknown"] == [99999999], r.stdout
    c.expect(re.escape("[from 42] [1,2]"))

    # not JSON: sent as a JSON string
    r = run("relay", "--to", c.id, "plain words", "--url", url)
    assert r.returncode == 0, r
    c.expect(re.escape('[from 0] "plain words"'))

    # '-' reads the body from stdin; line breaks between tokens print as spaces
    r = run("relay", "--to", c.id, "-", "--url", url, stdin='{\n  "multi": "line"\n}\n')
    assert r.returncode == 0, r
    c.expect(re.escape('[from 0] {   "multi": "line" }'))

    # a negative number is a body, not an option
    r = run("relay", "--to", c.id, "-5", "--url", url)
    assert r.returncode == 0, r
    c.expect(re.escape("[from 0] -5"))

    # the hub's errors: exit 1, the error on stderr, nothing on stdout
    r = run("relay", "--to", c.id, "[" * 70 + "]" * 70, "--url", url)
    assert r.returncode == 1 and r.stdout == "", r
    assert "HTTP 400 bad_request" in r.stderr, r.stderr


def test_list_command(hub, clis):
    a = clis(hub).hello()
    b = clis(hub).hello()
    r = run("list", "--url", http_url(hub))
    assert r.returncode == 0, r
    ids = [int(x) for x in r.stdout.split()]
    assert r.stdout.endswith("\n") and r.stdout.count("\n") == 1, r.stdout
    assert a.id in ids and b.id in ids and ids == sorted(ids), ids

    r = run("list", "--url", http_url(hub), "--json")
    assert r.returncode == 0, r
    assert set(json.loads(r.stdout)["ids"]) >= {a.id, b.id}, r.stdout


def test_list_empty(hub_factory):
    h = hub_factory()
    r = run("list", "--url", http_url(h))
    assert (r.returncode, r.stdout) == (0, "\n"), r


def test_api_key(hub_factory, clis):
    h = hub_factory("--api-key", "s3cret")
    url = http_url(h)
    c = clis(h).hello()  # /ws never needs the key

    r = run("relay", "--to", c.id, '{"k":0}', "--url", url)
    assert r.returncode == 1 and r.stdout == "", r
    assert "HTTP 401 unauthorized" in r.stderr, r.stderr
    r = run("relay", "--to", c.id, '{"k":0}', "--url", url, "--api-key", "wrong")
    assert r.returncode == 1 and "unauthorized" in r.stderr, r

    r = run("relay", "--to", c.id, '{"k":1}', "--url", url, "--api-key", "s3cret")
    assert r.returncode == 0, r
    c.expect(re.escape('[from 0] {"k":1}'))
    r = run("relay", "--to", c.id, '{"k":2}', "--url", url, env={"MSGHUB_API_KEY": "s3cret"})
    assert r.returncode == 0, r
    c.expect(re.escape('[from 0] {"k":2}'))

    for cmd in ("list", "session"):
        r = run(cmd, "--url", url)
        assert r.returncode == 1 and "unauthorized" in r.stderr, (cmd, r)
    r = run("list", "--api-key=s3cret", env={"MSGHUB_URL": url})
    assert r.returncode == 0 and str(c.id) in r.stdout.split(), r
    r = run("session", "--url", url, "--api-key", "s3cret", "--json")
    assert r.returncode == 0 and set(json.loads(r.stdout)) == {"id", "token"}, r


def test_large_bodies_arrive_intact(hub, clis):
    a = clis(hub).hello()
    b = clis(hub).hello()
    big = '{"blob":"%s","n":18446744073709551615}' % ("x" * 700000)
    a.send("/json %d %s" % (b.id, big))
    a.expect(r"relayed accepted=1")
    assert b.expect(r"\[from %d\] (.*)" % a.id).group(1) == big

    r = run("relay", "--to", b.id, "-", "--url", http_url(hub), stdin=big)
    assert r.returncode == 0, r
    assert b.expect(r"\[from 0\] (.*)").group(1) == big


# ---- delivery v2: acks, --state, --since --------------------------------------

def relay_n(hub, uid, bodies):
    for b in bodies:
        r = run("relay", "--to", uid, json.dumps(b, separators=(",", ":")), "--url",
                http_url(hub))
        assert r.returncode == 0, r


def test_state_file_resumes_after_what_was_acknowledged(hub, clis, tmp_path):
    state = tmp_path / "cli.state"
    c = clis(hub, "--state", state).hello()
    uid = c.id
    assert state.read_text() == "%s 0\n" % c.token
    relay_n(hub, uid, [{"n": i} for i in range(3)])
    for i in range(3):
        c.expect(r'\[from 0\] \{"n":%d\}' % i)
    c.eof()  # acknowledges what was printed before it closes
    assert c.wait() == 0
    tok, seq = state.read_text().split()
    assert (tok, seq) == (c.token, "3")
    relay_n(hub, uid, [{"n": 3}])
    # the next run resumes with ?since=3: only the new message, nothing printed twice
    c2 = clis(hub, "--state", state).hello(resumed=True)
    assert c2.id == uid
    c2.expect(r'\[from 0\] \{"n":3\}')
    c2.send("/ping")
    c2.expect("pong")
    assert not [l for l in c2.seen if '"n":0' in l or '"n":1' in l or '"n":2' in l], c2.seen
    c2.eof()
    assert c2.wait() == 0
    assert state.read_text().split()[1] == "4"


def test_acks_in_batches_and_duplicates_dropped(hub, clis):
    c = clis(hub).hello()
    uid, tok = c.id, c.token
    relay_n(hub, uid, [{"k": i} for i in range(2)])
    c.expect(r'\[from 0\] \{"k":1\}')
    time.sleep(0.5)  # the batch timer (100 ms) acknowledged both
    c.kill()
    # not printed again after the resume: acknowledged, so not redelivered
    c2 = clis(hub, "--token", tok).hello(resumed=True)
    relay_n(hub, uid, [{"k": 2}])
    c2.expect(r'\[from 0\] \{"k":2\}')
    assert not [l for l in c2.seen if '"k":0' in l or '"k":1' in l], c2.seen
    c2.kill()
    # --since below the ack: the hub redelivers nothing acknowledged; above: refused
    c3 = clis(hub, "--token", tok, "--since", 3).hello(resumed=True)
    c3.send("/ping")
    c3.expect("pong")
    assert not [l for l in c3.seen if l.startswith("[from")], c3.seen
    c3.eof()
    assert c3.wait() == 0
    r = run("connect", "--url", ws_url(hub), "--token", tok, "--since", 99, stdin="")
    assert r.returncode == 1 and "HTTP 400" in r.stderr, r
    r = run("connect", "--url", ws_url(hub), "--since", 1, stdin="")
    assert r.returncode == 2, r


def test_reconnect_resumes_with_since(hub_factory, clis):
    h = hub_factory("--idle-timeout", "3")  # the hub closes a quiet connection: 4000
    c = clis(h, "--reconnect").hello()
    uid = c.id
    relay_n(h, uid, [{"r": 1}])
    c.expect(r'\[from 0\] \{"r":1\}')
    c.expect(r"closed 4000 idle timeout", timeout=6)
    relay_n(h, uid, [{"r": 2}])  # while it is away: kept in its log
    m = c.expect(r"hello id=(\d+) token=\S+ resumed=(true|false)", timeout=6)
    assert (int(m.group(1)), m.group(2)) == (uid, "true"), m.group(0)
    c.expect(r'\[from 0\] \{"r":2\}')
    assert [l for l in c.seen if '"r":1' in l] == ['[from 0] {"r":1}'], c.seen
    assert "reconnecting in" in c.stderr() and "since=1" in c.stderr(), c.stderr()
    c.eof()
    rc = c.wait()
    rest = []
    while not c.lines.empty():
        rest.append(c.lines.get())
    assert rc == 0, (rc, rest, c.stderr())
