// Tests of clients/js/msghub.js against three distributed hub instances
// (Redis and RabbitMQ from MSGHUB_TEST_REDIS_URL / MSGHUB_TEST_AMQP_URL,
// unique prefix, cleaned up afterwards; skipped when they are unset). The
// receiver connects through a round-robin TCP balancer, as behind a plain
// load balancer; its instance is killed with kill -9, or shut down, while
// 1,000 messages flow to it, and it must see every seq once, in order.
//
//   eval "$(scripts/test-backplane)"; MSGHUB_BIN=build/msghub node --test tests/js/distributed.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../../clients/js/msghub.js';
import { Cluster, NO_BACKPLANE, Proxy, REDIS_URL, WebSocket, deleteRedisKeys, next, relayHttp, sleep, waitFor } from './harness.mjs';

const FAST = { WebSocket, reconnectDelay: 50, reconnectDelayMax: 500, presenceEvery: 0 };

async function withCluster(fn) {
  const cluster = new Cluster(['--rate-limit', '5000:5000']);
  const clients = [];
  let proxy;
  const open = (url, opts = {}) => {
    const c = connect(url, { ...FAST, ...opts });
    clients.push(c);
    return c;
  };
  try {
    const hubs = await cluster.start(3);
    proxy = await new Proxy(hubs.map((h) => ({ port: h.port, name: h.name, hub: h }))).start();
    await fn({ hubs, proxy, open });
  } catch (e) {
    e.message += cluster.hubs.map((h) => `\n--- ${h.name} ---\n${h.log()}`).join('');
    throw e;
  } finally {
    for (const c of clients) c.close();
    await proxy?.close();
    await cluster.cleanup(); // throws only when the shared servers could not be cleaned
  }
}

// The instance a client's WebSocket is on, as the balancer routed it.
async function instanceOf(proxy) {
  const b = await waitFor('the receiver connection in the balancer', () => proxy.wsBackends()[0], 5000);
  return b.hub;
}

async function flow({ hubs, proxy, open }, disrupt) {
  const rx = open(proxy.wsUrl);
  const hr = await next(rx, 'hello');
  const rxHub = await instanceOf(proxy);
  const txHub = hubs.find((h) => h !== rxHub);
  const tx = open(txHub.wsUrl);
  await next(tx, 'hello');
  const got = [];
  const hellos = [];
  rx.on('message', (m) => got.push(m));
  rx.on('hello', (h) => hellos.push(h));
  const N = 1000;
  let refusals = 0;
  const sender = (async () => {
    for (let i = 0; i < N; i++) {
      // unavailable (backplane hiccup) means not accepted: send it again
      for (;;) {
        try {
          const p = tx.relay([hr.id], { n: i });
          if (i % 20 === 19) await p;
          else p.catch(() => refusals++);
          break;
        } catch (e) {
          if (e.code !== 'unavailable') throw e;
          await sleep(50);
        }
      }
      if (i % 50 === 49) await sleep(15);
    }
  })();
  await waitFor('300 messages', () => got.length >= 300, 30_000, 2);
  await disrupt(rxHub, rx);
  await sender;
  await waitFor(`all ${N} messages (have ${got.length}, last seq ${got.at(-1)?.seq})`, () => got.length >= N, 30_000);
  await sleep(500);
  assert.equal(refusals, 0, 'relays refused');
  assert.equal(got.length, N, 'messages doubled');
  assert.deepEqual(got.map((m) => m.body.n), [...Array(N).keys()], 'bodies lost, doubled or out of order');
  assert.deepEqual(got.map((m) => m.seq), Array.from({ length: N }, (_, i) => i + 1), 'seq not 1..N');
  assert.ok(hellos.length >= 1, 'never resumed');
  assert.ok(hellos.every((h) => h.id === hr.id && h.resumed && h.recovered), JSON.stringify(hellos));
  const now = await instanceOf(proxy);
  assert.notEqual(now, rxHub, 'the receiver is still on the disrupted instance');
  return { rx, hr };
}

test('kill -9 of the receiver\'s instance while 1,000 messages flow: it resumes on another, every seq once', { skip: NO_BACKPLANE, timeout: 240_000 }, async () => {
  await withCluster(async (ctx) => {
    await flow(ctx, (rxHub) => rxHub.kill9());
  });
});

test('shutdown (1001) of the receiver\'s instance while 1,000 messages flow: it resumes on another, every seq once', { skip: NO_BACKPLANE, timeout: 240_000 }, async () => {
  await withCluster(async (ctx) => {
    const codes = [];
    await flow(ctx, async (rxHub, rx) => {
      rx.on('reconnecting', (r) => codes.push(r.code));
      await rxHub.stop(); // SIGTERM: drains, closes with 1001
    });
    assert.equal(codes[0], 1001, `reconnecting codes: ${codes}`);
  });
});

test('a token from one instance resumes on another; a takeover across instances closes the old with 4409', { skip: NO_BACKPLANE, timeout: 120_000 }, async () => {
  await withCluster(async ({ hubs, open }) => {
    const a = open(hubs[0].wsUrl);
    const h = await next(a, 'hello');
    const closed = next(a, 'close');
    const b = open(hubs[1].wsUrl, { token: h.token });
    const hb = await next(b, 'hello');
    assert.deepEqual([hb.id, hb.resumed], [h.id, true]);
    const c = await closed;
    assert.deepEqual([c.code, c.takenOver], [4409, true]);
    await sleep(500);
    assert.equal(a.state, 'closed');
  });
});

test('a log that Redis lost: since is refused after the upgrade (1008); the client resumes with the token alone', { skip: NO_BACKPLANE, timeout: 120_000 }, async () => {
  const cluster = new Cluster();
  await cluster.start(2);
  const [h1, h2] = cluster.hubs;
  const mem = new Map();
  const storage = { getItem: (k) => mem.get(k) ?? null, setItem: (k, v) => mem.set(k, String(v)), removeItem: (k) => mem.delete(k) };
  let a;
  let b;
  try {
    a = connect(h1.wsUrl, { ...FAST, storage });
    const h = await next(a, 'hello');
    const got = [];
    a.on('message', (m) => got.push(m));
    for (const n of [1, 2, 3]) await relayHttp(h1, [h.id], n);
    await waitFor('three messages', () => got.length === 3);
    a.close();
    assert.equal(mem.get('msghub.seq'), '3');
    await deleteRedisKeys(REDIS_URL, `${cluster.prefix}:logm`); // the id's highest seq is gone
    await deleteRedisKeys(REDIS_URL, `${cluster.prefix}:log`);
    b = connect(h2.wsUrl, { ...FAST, storage });
    const refused = await next(b, 'refused');
    assert.deepEqual([refused.status, refused.dropped], [400, 'since']);
    const h2ello = await next(b, 'hello');
    assert.deepEqual([h2ello.id, h2ello.resumed, h2ello.recovered], [h.id, true, false]);
    const got2 = [];
    b.on('message', (m) => got2.push(m));
    await relayHttp(h2, [h.id], 4);
    await waitFor('the message after the loss', () => got2.length === 1);
    assert.deepEqual([got2[0].seq, got2[0].body], [1, 4]);
  } catch (e) {
    e.message += cluster.hubs.map((x) => `\n--- ${x.name} ---\n${x.log()}`).join('');
    throw e;
  } finally {
    a?.close();
    b?.close();
    await cluster.cleanup();
  }
});
