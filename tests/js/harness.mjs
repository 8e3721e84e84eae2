// Helpers of the client library tests (tests/js/*.test.mjs): start the real hub
// binary ($MSGHUB_BIN, default <repo>/build/msghub) standalone or as a cluster
// on the backplane of MSGHUB_TEST_REDIS_URL / MSGHUB_TEST_AMQP_URL (unique
// prefix, keys and queues deleted afterwards), and a TCP proxy between clients
// and hubs that can cut, freeze and balance connections.
//
// The `ws` package comes from tests/browser/node_modules (Node.js 20 has no
// global WebSocket); run `npm ci` in tests/browser first (scripts/test does).

import { spawn, execFileSync } from 'node:child_process';
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

  async start(port) {
    this.port = port ?? this.port ?? (await freePort());
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
    return this;
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

  // Stops the hubs, deletes the prefix's Redis keys and RabbitMQ names (tests/integration/cluster.py does the talking).
  async cleanup() {
    await Promise.all(this.hubs.map((h) => h.stop()));
    const py = [
      'import sys',
      `sys.path.insert(0, ${JSON.stringify(path.join(REPO, 'tests', 'integration'))})`,
      'from cluster import delete_redis_keys, delete_amqp_names',
      `delete_redis_keys(${JSON.stringify(REDIS_URL)}, ${JSON.stringify(this.prefix)})`,
      `delete_amqp_names(${JSON.stringify(AMQP_URL)}, ${JSON.stringify(this.prefix)}, ${JSON.stringify(this.hubs.map((h) => h.name))})`,
    ].join('\n');
    execFileSync('python3', ['-c', py], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
  }
}

// ---- a TCP proxy: one listening port in front of one or more backends ----
//
// Each accepted connection goes to the next live backend (round robin; a
// backend that refuses is skipped). cut() destroys every connection (the
// client sees its connection drop with whatever was in flight lost), freeze()
// stops forwarding without closing (a dead link), thaw() resumes.

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
