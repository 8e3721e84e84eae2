// Tests of clients/js/msghub.js in Node.js against the real hub, standalone:
// GET /msghub.js, reconnect after the hub or the network drops the connection,
// resume with nothing lost or doubled while 1,000 messages flow, batched
// acks and their thresholds, shutdown (1001) and restart, takeover (4409),
// refused tokens, the keepalive ping on a dead link, the backoff, and Node.js's
// built-in WebSocket.
//
//   MSGHUB_BIN=build/msghub node --test tests/js/client.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect } from '../../clients/js/msghub.js';
import { HubProc, LIB_PATH, Proxy, WebSocket, next, readLib, recordingWebSocket, relayHttp, sleep, waitFor } from './harness.mjs';

const SECRET = 'js-client-test-secret-not-for-production';
const FAST = { WebSocket, reconnectDelay: 50, reconnectDelayMax: 500, presenceEvery: 0 };

async function withHub(args, fn) {
  const hub = new HubProc(['--token-secret', SECRET, '--shutdown-timeout', 1, ...args]);
  await hub.start();
  const clients = [];
  const open = (url, opts = {}) => {
    const c = connect(url, { ...FAST, ...opts });
    clients.push(c);
    return c;
  };
  try {
    await fn(hub, open);
  } catch (e) {
    e.message += `\n--- hub log ---\n${hub.log()}`;
    throw e;
  } finally {
    for (const c of clients) c.close();
    await hub.stop();
  }
}

test('GET /msghub.js serves the library: JavaScript, ETag, Cache-Control, 304', async () => {
  await withHub([], async (hub) => {
    const r = await fetch(`${hub.url}/msghub.js`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.match(r.headers.get('cache-control') ?? '', /no-cache/);
    const etag = r.headers.get('etag');
    assert.match(etag ?? '', /^"[0-9a-f]{8,}"$/);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), readLib(), 'served bytes differ from clients/js/msghub.js');
    const again = await fetch(`${hub.url}/msghub.js`, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    assert.equal((await again.arrayBuffer()).byteLength, 0);
    assert.equal(again.headers.get('etag'), etag);
    const other = await fetch(`${hub.url}/msghub.js`, { headers: { 'if-none-match': '"nope"' } });
    assert.equal(other.status, 200);
    await other.arrayBuffer();
  });
});

test('hello, relay with ref, list, identity, presence events, error frames reject', async () => {
  await withHub([], async (hub, open) => {
    const a = open(hub.wsUrl, { presenceEvery: 200 });
    const ha = await next(a, 'hello');
    assert.equal(ha.resumed, false);
    assert.equal(ha.seq, 0);
    const b = open(hub.wsUrl);
    const hb = await next(b, 'hello');
    assert.equal(await a.identity(), ha.id);
    assert.equal(await next(a, 'online', (id) => id === hb.id), hb.id);
    const got = next(a, 'message');
    const reply = await b.relay([ha.id, String(ha.id)], { text: 'hi' });
    assert.equal(reply.type, 'relayed');
    assert.equal(reply.accepted, 1);
    const m = await got;
    assert.deepEqual([m.from, m.seq, m.body], [hb.id, 1, { text: 'hi' }]);
    assert.ok((await b.list()).includes(ha.id));
    await assert.rejects(b.relay(['18446744073709551616'], 1), (e) => e.code === 'bad_request' && e.frame?.type === 'error');
    await assert.rejects(b.relay(['x'], 1), (e) => e.code === 'bad_request');
    await assert.rejects(b.relay(['007'], 1), (e) => e.code === 'bad_request'); // not a JSON number
    await assert.rejects(b.relay([ha.id], 10n), (e) => e.code === 'bad_request'); // not JSON
    await assert.rejects(b.relay([0], 1), (e) => e.code === 'bad_request' && e.frame?.type === 'error'); // the hub's answer
    b.close();
    assert.equal(await next(a, 'offline', (id) => id === hb.id), hb.id);
  });
});

test('reconnect after the hub drops the connection (idle timeout 4000) and after the network drops it', async () => {
  await withHub(['--idle-timeout', 1], async (hub, open) => {
    const proxy = await new Proxy([{ port: hub.port }]).start();
    try {
      const c = open(proxy.wsUrl, { keepalive: 0 });
      const first = await next(c, 'hello');
      const r = await next(c, 'reconnecting', () => true, 5000); // the hub closes an idle connection
      assert.equal(r.code, 4000);
      const again = await next(c, 'hello');
      assert.equal(again.id, first.id);
      assert.equal(again.resumed, true);
      const got = next(c, 'message');
      await relayHttp(hub, [first.id], 'after 4000');
      assert.equal((await got).body, 'after 4000');
      await sleep(100);
      proxy.cut();
      const r2 = await next(c, 'reconnecting');
      assert.equal(r2.code, 1006);
      assert.equal((await next(c, 'hello')).id, first.id);
    } finally {
      await proxy.close();
    }
  });
});

test('1,000 messages through four connection drops: every seq once, in order, acked in batches', async () => {
  await withHub(['--rate-limit', '5000:5000'], async (hub, open) => {
    const proxy = await new Proxy([{ port: hub.port }]).start();
    try {
      const sent = [];
      const rx = open(proxy.wsUrl, { WebSocket: recordingWebSocket(sent) });
      const hr = await next(rx, 'hello');
      const tx = open(hub.wsUrl);
      await next(tx, 'hello');
      const got = [];
      const hellos = [];
      rx.on('message', (m) => got.push(m));
      rx.on('hello', (h) => hellos.push(h));
      const N = 1000;
      const cuts = [150, 400, 650, 900];
      const sender = (async () => {
        for (let i = 0; i < N; i++) {
          const p = tx.relay([hr.id], { n: i });
          if (i % 20 === 19) await p; // keep up to 20 in flight
          else p.catch(() => {});
          if (i % 50 === 49) await sleep(20);
        }
      })();
      for (const at of cuts) {
        await waitFor(`${at} messages`, () => got.length >= at, 20_000, 2);
        proxy.cut(); // mid-stream: frames in flight are lost on the wire
      }
      await sender;
      await waitFor(`all ${N} messages (have ${got.length})`, () => got.length >= N, 20_000);
      await sleep(300); // any redelivery would come now
      assert.equal(got.length, N, 'messages doubled');
      assert.deepEqual(got.map((m) => m.body.n), [...Array(N).keys()], 'bodies lost, doubled or out of order');
      assert.deepEqual(got.map((m) => m.seq), Array.from({ length: N }, (_, i) => i + 1), 'seq not 1..N');
      assert.ok(hellos.length >= cuts.length, `resumed ${hellos.length} times for ${cuts.length} cuts`);
      assert.ok(hellos.every((h) => h.id === hr.id && h.resumed && h.recovered), JSON.stringify(hellos));
      const acks = sent.map((s) => JSON.parse(s)).filter((f) => f.type === 'ack');
      assert.ok(acks.length >= 5 && acks.length <= N / 10, `${acks.length} ack frames for ${N} messages: not batched`);
      assert.equal(acks.at(-1).seq, N, 'the last ack is not the last seq');
      assert.ok(acks.every((a, i) => i === 0 || a.seq > acks[i - 1].seq), 'acks not increasing');
      // Resuming now gets nothing again: everything was acknowledged.
      let raw = 0;
      rx.on('message', () => raw++);
      proxy.cut();
      const h = await next(rx, 'hello');
      assert.equal(h.seq, N);
      await sleep(300);
      assert.equal(raw, 0, 'messages delivered again after the final resume');
    } finally {
      await proxy.close();
    }
  });
});

test('a client that stops reading is closed as a slow consumer (4008) and gets everything on resume, once', async () => {
  const big = 'x'.repeat(64 * 1024);
  await withHub(['--outbound-buffer-bytes', 256 * 1024, '--inbox-max-bytes', 256 * 1024 * 1024], async (hub, open) => {
    const proxy = await new Proxy([{ port: hub.port }]).start();
    try {
      const rx = open(proxy.wsUrl, { keepalive: 0 });
      const h = await next(rx, 'hello');
      const got = [];
      const drops = [];
      rx.on('message', (m) => got.push(m.body.n));
      rx.on('reconnecting', (r) => drops.push(r.code));
      await relayHttp(hub, [h.id], { n: 0, big });
      await waitFor('the first message', () => got.length === 1);
      proxy.stall(); // the receiver stops reading: kernel buffers fill, then the hub's queue
      const N = 300; // 19 MiB: far beyond the socket buffers and the 256 KiB outbound limit
      for (let i = 1; i < N; i++) await relayHttp(hub, [h.id], { n: i, big });
      await waitFor('the hub closing the stalled connection', async () => {
        const r = await fetch(`${hub.url}/metrics`);
        return /^msghub_connections 0$/m.test(await r.text());
      }, 20_000, 100);
      proxy.resume(); // whatever was in the buffers arrives, then the close
      await waitFor(`all ${N} messages (have ${got.length})`, () => got.length >= N, 30_000);
      await sleep(300);
      assert.deepEqual(got, [...Array(N).keys()], 'messages lost, doubled or out of order');
      assert.ok(drops.length >= 1, 'never reconnected');
      assert.ok([4008, 1006].includes(drops[0]), `first drop ${drops[0]}`);
    } finally {
      await proxy.close();
    }
  });
});

test('ack thresholds are configurable: every ackEvery messages, after ackDelay, and on close()', async () => {
  await withHub([], async (hub, open) => {
    const sent = [];
    const c = open(hub.wsUrl, { WebSocket: recordingWebSocket(sent), ackEvery: 10, ackDelay: 60_000 });
    const h = await next(c, 'hello');
    const got = [];
    c.on('message', (m) => got.push(m.seq));
    for (let i = 0; i < 25; i++) await relayHttp(hub, [h.id], i);
    await waitFor('25 messages', () => got.length === 25);
    const acks = () => sent.map((x) => JSON.parse(x)).filter((f) => f.type === 'ack').map((f) => f.seq);
    assert.deepEqual(acks(), [10, 20]);
    c.close();
    assert.deepEqual(acks(), [10, 20, 25]);
    const d = open(hub.wsUrl, { WebSocket: recordingWebSocket(sent), ackEvery: 1000, ackDelay: 50 });
    const hd = await next(d, 'hello');
    await relayHttp(hub, [hd.id], 'x');
    await waitFor('an ack after ackDelay', () => acks().length === 4, 2000);
    assert.equal(acks()[3], 1);
  });
});

test('requests made while connecting or reconnecting wait for the connection; close() rejects them', async () => {
  await withHub([], async (hub, open) => {
    const proxy = await new Proxy([{ port: hub.port }]).start();
    try {
      const c = open(proxy.wsUrl);
      const early = c.relay([1], 'sent before hello'); // id 1 is this client: the first of a fresh hub
      const got = next(c, 'message');
      assert.equal((await early).accepted, 1);
      assert.equal((await got).body, 'sent before hello');
      proxy.cut();
      await next(c, 'reconnecting');
      assert.equal(c.state, 'reconnecting');
      const during = c.identity();
      assert.equal(await during, 1);
      const d = open(hub.wsUrl, { offlineQueue: 0 });
      await assert.rejects(d.list(), (e) => e.code === 'disconnected');
      const queued = d.list();
      d.close();
      await assert.rejects(queued, (e) => e.code === 'disconnected' || e.code === 'closed');
      const e2 = open(hub.wsUrl);
      const pending = e2.identity();
      e2.close();
      await assert.rejects(pending, (e) => e.code === 'closed');
    } finally {
      await proxy.close();
    }
  });
});

test('ack: auto sends no acks; the hub counts written messages', async () => {
  await withHub([], async (hub, open) => {
    const sent = [];
    const c = open(hub.wsUrl, { ack: 'auto', WebSocket: recordingWebSocket(sent) });
    const h = await next(c, 'hello');
    assert.equal(h.ack, 'auto');
    const got = next(c, 'message');
    await relayHttp(hub, [h.id], 1);
    await got;
    await sleep(300);
    assert.equal(sent.filter((s) => JSON.parse(s).type === 'ack').length, 0);
  });
});

test('shutdown (1001) reconnects; a restarted standalone hub restarts the seq and the client follows', async () => {
  const hub = new HubProc(['--token-secret', SECRET, '--shutdown-timeout', 1]);
  await hub.start();
  const c = connect(hub.wsUrl, { ...FAST, reconnectDelayMax: 300 });
  try {
    const h = await next(c, 'hello');
    const got = [];
    c.on('message', (m) => got.push(m));
    await relayHttp(hub, [h.id], 'one');
    await relayHttp(hub, [h.id], 'two');
    await waitFor('two messages', () => got.length === 2);
    const r = next(c, 'reconnecting');
    await hub.stop();
    assert.equal((await r).code, 1001);
    const refused = next(c, 'refused', () => true, 15_000);
    const hello = next(c, 'hello', () => true, 15_000);
    await hub.start(hub.port);
    // The same secret: the token is good, but the new hub never assigned seq 2 (since=2 is refused with 400).
    assert.equal((await refused).dropped, 'since');
    const h2 = await hello;
    assert.equal(h2.id, h.id);
    assert.equal(h2.recovered, false, 'the client does not report the lost log');
    await relayHttp(hub, [h.id], 'three');
    await waitFor('the message after the restart', () => got.length === 3);
    assert.deepEqual(got.map((m) => m.body), ['one', 'two', 'three']);
    assert.equal(c.lastSeq, 1);
  } finally {
    c.close();
    await hub.stop();
  }
});

test('a hub restarted with another secret refuses the token (401): a new id', async () => {
  const hub = new HubProc(['--shutdown-timeout', 1]); // random secret per process
  await hub.start();
  const c = connect(hub.wsUrl, { ...FAST, reconnectDelayMax: 300 });
  try {
    const h = await next(c, 'hello');
    await hub.stop();
    const refused = next(c, 'refused', () => true, 15_000);
    const hello = next(c, 'hello', () => true, 15_000);
    await hub.start(hub.port);
    const r = await refused;
    assert.deepEqual([r.status, r.dropped], [401, 'token']);
    const h2 = await hello;
    assert.equal(h2.newId, true);
    assert.equal(h2.previousId, h.id);
    assert.notEqual(h2.token, h.token);
  } finally {
    c.close();
    await hub.stop();
  }
});

test('a bad token is refused (401): dropped, and the client connects as a new user', async () => {
  await withHub([], async (hub, open) => {
    const c = open(hub.wsUrl, { token: 'not-a-valid-token' });
    const r = await next(c, 'refused');
    assert.deepEqual([r.status, r.dropped], [401, 'token']);
    const h = await next(c, 'hello');
    assert.equal(h.resumed, false);
    assert.ok(c.token && c.token !== 'not-a-valid-token');
  });
});

test('takeover (4409): the old client closes and does not reconnect', async () => {
  await withHub([], async (hub, open) => {
    const a = open(hub.wsUrl);
    const h = await next(a, 'hello');
    const closed = next(a, 'close');
    let reconnects = 0;
    a.on('reconnecting', () => reconnects++);
    const b = open(hub.wsUrl, { token: h.token });
    assert.equal((await next(b, 'hello')).id, h.id);
    const c = await closed;
    assert.deepEqual([c.code, c.takenOver], [4409, true]);
    await sleep(800);
    assert.equal(reconnects, 0);
    assert.equal(a.state, 'closed');
    assert.equal(b.state, 'open');
  });
});

test('storage keeps token and last seq: a new client object resumes where the old one stopped', async () => {
  await withHub([], async (hub, open) => {
    const mem = new Map();
    const storage = { getItem: (k) => mem.get(k) ?? null, setItem: (k, v) => mem.set(k, String(v)), removeItem: (k) => mem.delete(k) };
    const a = open(hub.wsUrl, { storage, ackEvery: 1000, ackDelay: 60_000 }); // never acks in time
    const h = await next(a, 'hello');
    const got = [];
    a.on('message', (m) => got.push(m.body));
    for (const n of [1, 2, 3]) await relayHttp(hub, [h.id], n);
    await waitFor('three messages', () => got.length === 3);
    a.close(); // a page reload: the next client object starts from storage
    assert.deepEqual([mem.get('msghub.token') !== undefined, mem.get('msghub.seq')], [true, '3']);
    await relayHttp(hub, [h.id], 4);
    const b = open(hub.wsUrl, { storage });
    const got2 = [];
    b.on('message', (m) => got2.push(m.body));
    const h2 = await next(b, 'hello');
    assert.equal(h2.id, h.id);
    await waitFor('message 4', () => got2.length >= 1);
    await sleep(200);
    assert.deepEqual(got2, [4]);
  });
});

test('keepalive: the application ping where no WebSocket ping is used, and a dead link is dropped', async () => {
  await withHub([], async (hub, open) => {
    const proxy = await new Proxy([{ port: hub.port }]).start();
    try {
      const sent = [];
      const c = open(proxy.wsUrl, { WebSocket: recordingWebSocket(sent), appPing: true, keepalive: 300, pongTimeout: 400 });
      const h = await next(c, 'hello');
      await waitFor('an application ping', () => sent.some((s) => JSON.parse(s).type === 'ping'), 3000);
      await sleep(500);
      assert.equal(c.state, 'open', 'pongs did not keep the connection');
      proxy.freeze(); // nothing gets through, nothing closes
      const r = await next(c, 'reconnecting', () => true, 3000);
      assert.match(r.reason, /keepalive/);
      proxy.cut();
      proxy.thaw();
      assert.equal((await next(c, 'hello')).id, h.id);
    } finally {
      await proxy.close();
    }
  });
});

test('backoff: exponential with full jitter below the cap (no hub: every attempt fails)', async () => {
  const urls = [];
  class Unreachable {
    constructor(url) {
      urls.push(url);
      this.readyState = 0;
      setTimeout(() => {
        this.readyState = 3;
        this.onerror?.({ message: 'connect ECONNREFUSED' });
        this.onclose?.({ code: 1006, reason: '' });
      }, 1);
    }
    send() {}
    close() {}
  }
  const c = connect('ws://127.0.0.1:9/ws', { WebSocket: Unreachable, reconnectDelay: 10, reconnectDelayMax: 80 });
  const seen = [];
  c.on('reconnecting', (r) => seen.push(r));
  try {
    await waitFor('12 reconnect attempts', () => seen.length >= 12, 10_000);
  } finally {
    c.close();
  }
  for (const r of seen) {
    const cap = Math.min(80, 10 * 2 ** (r.attempt - 1));
    assert.ok(r.delay >= 0 && r.delay < cap, `attempt ${r.attempt}: delay ${r.delay} not in [0, ${cap})`);
  }
  assert.deepEqual(seen.slice(0, 5).map((r) => r.attempt), [1, 2, 3, 4, 5]);
  assert.ok(new Set(seen.map((r) => r.delay)).size > 3, `no jitter: ${seen.map((r) => r.delay)}`);
  assert.ok(urls.every((u) => u === 'ws://127.0.0.1:9/ws'), 'a fresh client sent a token or since');
  assert.equal(c.state, 'closed');
});

test('close() and reconnect() while the connection is still being made', async () => {
  await withHub([], async (hub, open) => {
    const a = open(hub.wsUrl);
    a.close();
    assert.equal(a.state, 'closed');
    const b = open(hub.wsUrl);
    b.reconnect(); // drops the attempt in progress, starts another
    const h = await next(b, 'hello');
    assert.ok(h.id > 0);
    await sleep(200); // an error from the abandoned attempt would surface here
    assert.equal(a.state, 'closed');
    assert.equal(b.state, 'open');
  });
});

test("Node.js's built-in WebSocket (no WebSocket option): refusal, hello, relay, message", async () => {
  await withHub([], async (hub) => {
    const script = `
      import { connect } from ${JSON.stringify(LIB_PATH)};
      const hub = connect(${JSON.stringify(hub.wsUrl)}, { token: 'bad', reconnectDelay: 50 });
      const out = {};
      hub.on('refused', (r) => { out.refused = r.status; });
      const done = () => { if (out.message && out.relayed) { hub.close(); console.log(JSON.stringify(out)); } };
      hub.on('message', (m) => { out.message = [m.seq, m.body]; done(); });
      hub.once('hello', async (h) => { out.hello = h.id > 0; out.relayed = (await hub.relay([h.id], 'self')).accepted; done(); });
      setTimeout(() => { console.log(JSON.stringify(out)); process.exit(1); }, 8000).unref(); // close() must let Node.js exit
    `;
    const flags = typeof globalThis.WebSocket === 'function' ? [] : ['--experimental-websocket'];
    const stdout = await new Promise((resolve, reject) => {
      execFile(process.execPath, [...flags, '--no-warnings', '--input-type=module', '-e', script], { timeout: 15_000 },
        (err, so, se) => (err ? reject(new Error(`${err.message}\n${so}\n${se}`)) : resolve(so)));
    });
    assert.deepEqual(JSON.parse(stdout.trim().split('\n').pop()), { refused: 401, hello: true, relayed: 1, message: [1, 'self'] });
  });
});
