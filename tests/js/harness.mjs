// Helpers of the client library tests (tests/js/*.test.mjs): start the real hub
// binary ($MSGHUB_BIN, default <repo>/build/msghub) standalone or as a cluster
// on the backplane of MSGHUB_TEST_REDIS_URL / MSGHUB_TEST_AMQP_URL (unique
// prefix, keys and queues deleted afterwards), and a TCP proxy between clients
// and hubs that can cut, freeze and balance connections.
//
// The `ws` package comes from tests/browser/node_modules (Node.js 20 has no
// global WebSocket); run `npm ci` in tests/browser first (scripts/test does).

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const HUB_BIN = process.env.MSGHUB_BIN || path.join(REPO, 'build', 'msghub');
export const LIB_PATH = path.join(REPO, 'clients', 'js', 'msghub.js');
export const REDIS_URL = process.env.MSGHUB_TEST_REDIS_URL || '';
export const AMQP_URL = process.env.MSGHUB_TEST_AMQP_URL || '';
export const NO_BACKPLANE =
  REDIS_URL && AMQP_URL
    ? false
    : 'distributed tests need MSGHUB_TEST_REDIS_URL and MSGHUB_TEST_AMQP_URL (run scripts/test, or eval "$(scripts/test-backplane)" first)';

const browserRequire = createRequire(path.join(REPO, 'tests', 'browser', 'package.json'));
export const { WebSocket } = browserRequire('ws');
export const requireFromBrowserTests = browserRequire;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Resolves when pred() is truthy (polled), rejects naming what after ms.
export async function waitFor(what, pred, ms = 10_000, every = 20) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

// The next `type` event of an emitter (a Hub), optionally matching pred.
export function next(hub, type, pred = () => true, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      hub.off(type, on);
      reject(new Error(`no '${type}' event within ${ms} ms`));
    }, ms);
    const on = (ev) => {
      if (!pred(ev)) return;
      clearTimeout(timer);
      hub.off(type, on);
      resolve(ev);
    };
    hub.on(type, on);
  });
}

// ---- the hub process ----

export class HubProc {
  constructor(args = [], name = 'hub') {
    this.args = args.map(String);
    this.name = name;
    this.out = [];
    this.child = null;
  }

  // Starts the hub on port, or on a free port of its own choosing: that
  // one is retried (up to 3 picks) when another process took it between
  // the pick and the hub's bind, as the Python tests' harness does.
  async start(port) {
    const pinned = port ?? this.port;
    for (let attempt = 1; ; attempt++) {
      this.port = pinned ?? (await freePort());
      try {
        await this.spawnAndWait();
        return this;
      } catch (e) {
        if (!this.alive()) await sleep(100); // its last stderr may follow its exit
        const taken = !this.alive() && /Address already in use/.test(this.log());
        if (pinned !== undefined || !taken || attempt === 3) throw e;
        this.out = [];
      }
    }
  }

  async spawnAndWait() {
    const env = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MSGHUB_')) env[k] = v;
    env.MSGHUB_LOG_LEVEL = process.env.MSGHUB_TEST_LOG_LEVEL || 'warn';
    this.child = spawn(HUB_BIN, ['--listen', `127.0.0.1:${this.port}`, ...this.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    const keep = (c) => {
      this.out.push(c.toString());
      if (this.out.length > 500) this.out.shift();
    };
    this.child.stdout.on('data', keep);
    this.child.stderr.on('data', keep);
    this.exited = new Promise((r) => this.child.on('exit', (code, signal) => r({ code, signal })));
    await this.waitReady();
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }
  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }
  alive() {
    return this.child && this.child.exitCode === null && this.child.signalCode === null;
  }
  log() {
    return this.out.join('');
  }

  async waitReady(ms = 30_000) {
    let last = 'no answer';
    await waitFor(`GET /readyz 200 on ${this.name}`, async () => {
      if (!this.alive()) throw new Error(`${this.name} exited early:\n${this.log()}`);
      try {
        const r = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(1000) });
        last = `HTTP ${r.status}`;
        return r.status === 200;
      } catch (e) {
        last = e.cause?.code || e.message;
        return false;
      }
    }, ms, 100).catch((e) => {
      throw new Error(`${e.message} (last: ${last})\n${this.log()}`);
    });
  }

  async stop(signal = 'SIGTERM') {
    if (!this.alive()) return;
    this.child.kill(signal);
    const done = await Promise.race([this.exited.then(() => true), sleep(6000).then(() => false)]);
    if (!done) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }

  kill9() {
    return this.stop('SIGKILL');
  }
}

export async function relayHttp(hub, receivers, body) {
  const r = await fetch(`${hub.url}/relay`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ receivers, body }),
    signal: AbortSignal.timeout(5000),
  });
  if (r.status !== 200) throw new Error(`POST /relay answered ${r.status}: ${await r.text()}`);
  return r.json();
}

// ---- a cluster on the test backplane ----

export class Cluster {
  constructor(extra = []) {
    this.prefix = `mhtest-js-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    this.secret = crypto.randomBytes(16).toString('hex');
    this.extra = extra;
    this.hubs = [];
  }

  async start(n) {
    for (let i = 0; i < n; i++) {
      const name = `i${i + 1}-${crypto.randomBytes(2).toString('hex')}`;
      const h = new HubProc(
        ['--redis-url', REDIS_URL, '--amqp-url', AMQP_URL, '--prefix', this.prefix, '--instance-id', name,
          '--token-secret', this.secret, '--shutdown-timeout', 2, ...this.extra],
        name,
      );
      this.hubs.push(h);
    }
    await Promise.all(this.hubs.map((h) => h.start()));
    return this.hubs;
  }

  // Stops the hubs, deletes the prefix's Redis keys and RabbitMQ names (<prefix>.inst.<name>,
  // <prefix>.stranded, <prefix>.dlx: what tests/integration/cluster.py deletes too).
  async cleanup() {
    await Promise.all(this.hubs.map((h) => h.stop()));
    const errors = [];
    await deleteRedisKeys(REDIS_URL, this.prefix).catch((e) => errors.push(`redis cleanup: ${e.message}`));
    await deleteAmqpNames(AMQP_URL, [...this.hubs.map((h) => `${this.prefix}.inst.${h.name}`), `${this.prefix}.stranded`],
      [`${this.prefix}.dlx`]).catch((e) => errors.push(`amqp cleanup: ${e.message}`));
    if (errors.length) throw new Error(errors.join('; '));
  }
}

// A line-oriented reader over a socket for the two tiny protocol clients below.
function socketReader(sock) {
  let buf = Buffer.alloc(0);
  let want = null;
  let failed = null;
  const kick = () => {
    if (!want) return;
    if (failed) {
      const w = want;
      want = null;
      w.reject(failed);
      return;
    }
    const n = want.n(buf);
    if (n >= 0) {
      const w = want;
      want = null;
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      w.resolve(out);
    }
  };
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    kick();
  });
  const fail = (e) => {
    failed = e || new Error('connection closed');
    kick();
  };
  sock.on('error', fail);
  sock.on('close', () => fail());
  // n(buf): how many bytes make the next unit, or -1 when more are needed.
  return (n) => new Promise((resolve, reject) => {
    want = { n, resolve, reject };
    kick();
  });
}

function connectTcp(host, port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host, () => resolve(s));
    s.once('error', reject);
    s.setTimeout(10_000, () => s.destroy(new Error('timeout')));
  });
}

// Redis: SCAN MATCH <prefix>:* and DEL, over RESP2.
export async function deleteRedisKeys(url, prefix) {
  const u = new URL(url);
  const sock = await connectTcp(u.hostname || '127.0.0.1', Number(u.port) || 6379);
  const read = socketReader(sock);
  const line = async () => (await read((b) => { const i = b.indexOf('\r\n'); return i < 0 ? -1 : i + 2; })).toString().slice(0, -2);
  const reply = async () => {
    const l = await line();
    const t = l[0], rest = l.slice(1);
    if (t === '-') throw new Error(rest);
    if (t === '+' || t === ':') return rest;
    if (t === '$') {
      const n = Number(rest);
      if (n < 0) return null;
      return (await read((b) => (b.length >= n + 2 ? n + 2 : -1))).subarray(0, n).toString();
    }
    if (t === '*') {
      const out = [];
      for (let i = 0, n = Number(rest); i < n; i++) out.push(await reply());
      return out;
    }
    throw new Error(`bad reply ${l}`);
  };
  const cmd = (...args) => {
    sock.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join(''));
    return reply();
  };
  try {
    if (u.password) await cmd('AUTH', decodeURIComponent(u.password));
    const db = u.pathname.replace(/^\//, '');
    if (db) await cmd('SELECT', db);
    let cursor = '0';
    do {
      const [c, keys] = await cmd('SCAN', cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = c;
      if (keys.length) await cmd('DEL', ...keys);
    } while (cursor !== '0');
  } finally {
    sock.destroy();
  }
}

// RabbitMQ: just enough AMQP 0-9-1 to delete queues and exchanges.
export async function deleteAmqpNames(url, queues, exchanges) {
  const u = new URL(url);
  const sock = await connectTcp(u.hostname || '127.0.0.1', Number(u.port) || 5672);
  const read = socketReader(sock);
  const shortstr = (s) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)]);
  const longstr = (s) => {
    const b = Buffer.from(s);
    const n = Buffer.alloc(4);
    n.writeUInt32BE(b.length);
    return Buffer.concat([n, b]);
  };
  const u16 = (v) => { const b = Buffer.alloc(2); b.writeUInt16BE(v); return b; };
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b; };
  const send = (ch, cls, meth, args = Buffer.alloc(0)) => {
    const payload = Buffer.concat([u16(cls), u16(meth), args]);
    sock.write(Buffer.concat([Buffer.from([1]), u16(ch), u32(payload.length), payload, Buffer.from([0xce])]));
  };
  const method = async (want) => {
    for (;;) {
      const f = await read((b) => (b.length >= 7 && b.length >= 8 + b.readUInt32BE(3) ? 8 + b.readUInt32BE(3) : -1));
      if (f[0] !== 1) continue;
      const cls = f.readUInt16BE(7), meth = f.readUInt16BE(9), args = f.subarray(11, f.length - 1);
      if ((cls === 20 && meth === 40) || (cls === 10 && meth === 50)) {
        throw new Error(`closed: ${args.readUInt16BE(0)} ${args.subarray(3, 3 + args[2]).toString()}`);
      }
      if (`${cls}.${meth}` === want) return args;
    }
  };
  try {
    sock.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'));
    await method('10.10');
    const user = decodeURIComponent(u.username || 'guest'), pass = decodeURIComponent(u.password || 'guest');
    send(0, 10, 11, Buffer.concat([u32(0), shortstr('PLAIN'), longstr(`\0${user}\0${pass}`), shortstr('en_US')]));
    const tune = await method('10.30');
    send(0, 10, 31, Buffer.concat([tune.subarray(0, 2), tune.subarray(2, 6), u16(0)]));
    const vhost = u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : '/';
    send(0, 10, 40, Buffer.concat([shortstr(vhost), shortstr(''), Buffer.from([0])]));
    await method('10.41');
    send(1, 20, 10, shortstr(''));
    await method('20.11');
    for (const q of queues) {
      send(1, 50, 40, Buffer.concat([u16(0), shortstr(q), Buffer.from([0])]));
      await method('50.41');
    }
    for (const x of exchanges) {
      send(1, 40, 20, Buffer.concat([u16(0), shortstr(x), Buffer.from([0])]));
      await method('40.21');
    }
    send(0, 10, 50, Buffer.concat([u16(200), shortstr('bye'), u16(0), u16(0)]));
    await method('10.51').catch(() => {});
  } finally {
    sock.destroy();
  }
}

// ---- a TCP proxy: one listening port in front of one or more backends ----
//
// Each accepted connection goes to the next live backend (round robin; a
// backend that refuses is skipped). cut() destroys every connection (the
// client sees its connection drop with whatever was in flight lost), freeze()
// stops forwarding without closing (a dead link), thaw() resumes, stall() stops
// reading the open connections (a client that stops reading).

export class Proxy {
  constructor(backends) {
    this.backends = backends; // [{port, name}]
    this.conns = new Set();
    this.frozen = false;
    this.rr = 0;
  }

  async start() {
    this.port = await freePort();
    this.server = net.createServer((c) => this._accept(c));
    await new Promise((r) => this.server.listen(this.port, '127.0.0.1', r));
    return this;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }
  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  _accept(client, tries = 0) {
    if (tries >= this.backends.length) {
      client.destroy();
      return;
    }
    const b = this.backends[this.rr++ % this.backends.length];
    const up = net.connect(b.port, '127.0.0.1');
    const conn = { client, up, backend: b, ws: false, paused: [] };
    let connected = false;
    up.once('error', () => {
      if (!connected) this._accept(client, tries + 1);
    });
    up.once('connect', () => {
      connected = true;
      this.conns.add(conn);
      const pipe = (from, to, first) => {
        from.on('data', (d) => {
          if (first && !conn.seen) {
            conn.seen = true;
            conn.ws = /^GET \/ws[?\s]/.test(d.toString('latin1', 0, 16));
          }
          if (this.frozen) conn.paused.push([to, d]);
          else to.write(d);
        });
      };
      pipe(client, up, true);
      pipe(up, client, false);
      const end = () => {
        this.conns.delete(conn);
        client.destroy();
        up.destroy();
      };
      client.on('close', end);
      up.on('close', end);
      client.on('error', end);
      up.on('error', end);
    });
  }

  // Backends of the open WebSocket connections.
  wsBackends() {
    return [...this.conns].filter((c) => c.ws).map((c) => c.backend);
  }

  cut() {
    for (const c of this.conns) {
      c.client.destroy();
      c.up.destroy();
    }
    this.conns.clear();
  }

  freeze() {
    this.frozen = true;
  }

  // Stops reading both sides of the open connections (TCP backpressure builds up, as with a
  // client that stops reading); new connections flow normally. resume() reads again.
  stall() {
    for (const c of this.conns) {
      c.client.pause();
      c.up.pause();
    }
  }

  resume() {
    for (const c of this.conns) {
      c.client.resume();
      c.up.resume();
    }
  }

  thaw() {
    this.frozen = false;
    for (const c of this.conns) for (const [to, d] of c.paused.splice(0)) to.write(d);
  }

  async close() {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}

// A WebSocket class that records what the client sends (frames as text).
export function recordingWebSocket(sent) {
  return class RecordingWebSocket extends WebSocket {
    send(data, ...rest) {
      sent.push(String(data));
      return super.send(data, ...rest);
    }
  };
}

export function readLib() {
  return fs.readFileSync(LIB_PATH);
}
