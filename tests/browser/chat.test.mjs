// Browser test of the chat page served by the hub at GET /.
//
// Drives Debian's Chromium (/usr/bin/chromium, or $CHROMIUM_BIN) through
// puppeteer-core, which never downloads a browser. Starts the hub from
// $MSGHUB_BIN (default: <repo>/build/msghub) on a free 127.0.0.1 port.
//
//   cd tests/browser && npm ci
//   MSGHUB_BIN=/path/to/msghub node --test tests/browser/chat.test.mjs
//
// A screenshot of both pages is written to a fresh temp dir whose path is
// printed at the end (it is not part of the repo).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const HUB = process.env.MSGHUB_BIN || path.join(REPO, 'build', 'msghub');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

const TOTAL_MS = 90_000; // whole test
const STEP_MS = 10_000; // any single wait in the page
const PEER_GONE_MS = 5_000; // a closed peer leaves the online list within this
const LIST_AFTER_MESSAGE_MS = 500; // a received message is followed by a list request within this

function freePort() {
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Rejects after ms with a message naming what was awaited.
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A fixed secret so tokens stay valid across the restart step.
const TOKEN_SECRET = 'browser-test-secret-not-for-production';

function startHub(port) {
  const out = [];
  const args = ['--listen', `127.0.0.1:${port}`, '--token-secret', TOKEN_SECRET, '--shutdown-timeout', '2'];
  const child = spawn(HUB, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MSGHUB_LOG_LEVEL: process.env.MSGHUB_LOG_LEVEL || 'info' },
  });
  const keep = (chunk) => {
    out.push(chunk.toString());
    if (out.length > 400) out.shift();
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.on('error', (e) => out.push(`spawn error: ${e.message}\n`));
  return { child, exited, log: () => out.join('') };
}

async function stopHub(hub) {
  if (!hub || hub.child.exitCode !== null || hub.child.signalCode !== null) return;
  hub.child.kill('SIGTERM');
  const done = await Promise.race([hub.exited.then(() => true), sleep(5000).then(() => false)]);
  if (!done) {
    hub.child.kill('SIGKILL');
    await Promise.race([hub.exited, sleep(2000)]);
  }
}

async function waitHealthy(base, hub, ms) {
  const deadline = Date.now() + ms;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (hub.child.exitCode !== null || hub.child.signalCode !== null) {
      throw new Error(`hub exited early (${hub.child.exitCode ?? hub.child.signalCode}):\n${hub.log()}`);
    }
    try {
      const r = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = e.cause?.code || e.message;
    }
    await sleep(100);
  }
  throw new Error(`GET /healthz not 200 within ${ms} ms (last: ${last}):\n${hub.log()}`);
}

// The page's own id, once it shows a number in #me.
async function waitForId(page) {
  await page.waitForFunction(() => /^[1-9][0-9]*$/.test(document.getElementById('me')?.textContent.trim() ?? ''), {
    timeout: STEP_MS,
    polling: 100,
  });
  return page.$eval('#me', (el) => el.textContent.trim());
}

async function waitState(page, want, ms = STEP_MS) {
  await page.waitForFunction(
    (w) => {
      const s = document.getElementById('state')?.getAttribute('data-state');
      return w.startsWith('!') ? s !== w.slice(1) : s === w;
    },
    { timeout: ms, polling: 100 },
    want,
  );
}

async function waitOnline(page, id) {
  await page.waitForSelector(`#online [data-id="${id}"]`, { timeout: STEP_MS });
}

async function waitMessage(page, from, text) {
  await page.waitForFunction(
    (f, t) => [...document.querySelectorAll('#messages [data-from]')].some(
      (el) => el.getAttribute('data-from') === f && el.textContent.includes(t)),
    { timeout: STEP_MS, polling: 100 },
    from,
    text,
  );
}

// Runs in each page before its scripts: logs the page's WebSocket frames, sent
// and received, with performance.now() times, in window.__wsLog.
function recordWebSocketFrames() {
  const Native = window.WebSocket;
  const log = [];
  const note = (kind, data) => {
    log.push({ kind, t: performance.now(), data: typeof data === 'string' ? data : '' });
    if (log.length > 5000) log.shift();
  };
  window.__wsLog = log;
  const send = Native.prototype.send;
  Native.prototype.send = function (data) {
    note('sent', data);
    return send.call(this, data);
  };
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => note('recv', ev.data)); // runs before the page's onmessage
    }
  };
}

async function waitGone(page, id, ms) {
  await page.waitForFunction((i) => !document.querySelector(`#online [data-id="${i}"]`),
    { timeout: ms, polling: 100 }, id);
}

// Text of the page's status line and connection state, for failure messages.
async function pageState(page) {
  try {
    return await page.evaluate(() => ({
      me: document.getElementById('me')?.textContent,
      state: document.getElementById('state')?.textContent,
      status: document.getElementById('status')?.textContent,
      online: [...document.querySelectorAll('#online [data-id]')].map((e) => e.getAttribute('data-id')),
      messages: [...document.querySelectorAll('#messages > li')].map((e) => e.textContent),
    }));
  } catch (e) {
    return `(cannot read page: ${e.message})`;
  }
}

test('chat page: two browsers talk through the hub, reload resumes the id', { timeout: TOTAL_MS }, async (t) => {
  assert.ok(fs.existsSync(HUB), `hub binary not found at ${HUB} (set MSGHUB_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (set CHROMIUM_BIN)`);

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'msghub-chromium-'));
  const shots = fs.mkdtempSync(path.join(os.tmpdir(), 'msghub-screens-'));
  const pageErrors = [];
  let hub;
  let browser;
  let a;
  let b;

  // Last resort if the runner gives up on the test (timeout): never leave the hub or Chromium behind.
  const onExit = () => {
    hub?.child.kill('SIGKILL');
    browser?.process()?.kill('SIGKILL');
  };
  process.once('exit', onExit);

  try {
    hub = startHub(port);
    await waitHealthy(base, hub, 10_000);

    browser = await within(20_000, 'Chromium launch', puppeteer.launch({
      executablePath: CHROMIUM,
      // '--headless' is passed below exactly as written; puppeteer adds no headless flag of its own.
      headless: false,
      pipe: true,
      userDataDir: profile,
      defaultViewport: { width: 1000, height: 640 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-quic',
      ],
      timeout: 20_000,
      protocolTimeout: 20_000,
    }));

    const open = async (name) => {
      const page = await browser.newPage();
      page.setDefaultTimeout(STEP_MS);
      await page.evaluateOnNewDocument(recordWebSocketFrames);
      page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
      page.on('console', (m) => {
        if (m.type() === 'error') pageErrors.push(`${name} console: ${m.text()}`);
      });
      const resp = await page.goto(`${base}/`, { waitUntil: 'domcontentloaded', timeout: STEP_MS });
      assert.equal(resp.status(), 200, `GET / answered ${resp.status()}`);
      return page;
    };

    a = await open('A');
    b = await open('B');

    let idA;
    let idB;
    // Every later step needs both ids: skip them (instead of piling up timeouts) when step 1 failed.
    const step = (name, fn) => t.test(name, async (st) => {
      if (!idA || !idB) {
        st.skip('the pages never showed their ids');
        return;
      }
      await fn(st);
    });

    await t.test('each page shows its own id', async () => {
      idA = await waitForId(a);
      idB = await waitForId(b);
      assert.notEqual(idA, idB, 'two pages got the same id');
    });

    await step('each page lists the other as online', async () => {
      await waitOnline(a, idB).catch(async (e) => {
        throw new Error(`A (${idA}) never listed B (${idB}): ${e.message}\n${JSON.stringify(await pageState(a))}`);
      });
      await waitOnline(b, idA).catch(async (e) => {
        throw new Error(`B (${idB}) never listed A (${idA}): ${e.message}\n${JSON.stringify(await pageState(b))}`);
      });
      const selfListed = await a.$(`#online [data-id="${idA}"]`);
      assert.equal(selfListed, null, 'A lists itself as online');
    });

    const nonce = Math.random().toString(36).slice(2, 8);
    const textAB = `hello B from A <b>${nonce}</b>`;
    const textBA = `hi A, B here ${nonce}`;

    await step('A -> B: click B in the online list, type, press Send', async () => {
      await a.bringToFront(); // a background tab renders no frames, so clicks would hang
      await a.click(`#online [data-id="${idB}"]`);
      assert.equal((await a.$eval('#to', (el) => el.value)).trim(), idB, 'clicking B in the list did not fill #to');
      await a.type('#text', textAB);
      await a.click('#send');
      await waitMessage(b, idA, textAB).catch(async (e) => {
        throw new Error(`B did not show A's message: ${e.message}\nA: ${JSON.stringify(await pageState(a))}\nB: ${JSON.stringify(await pageState(b))}`);
      });
      // Shown as text, never parsed as HTML.
      const injected = await b.$('#messages .body b');
      assert.equal(injected, null, 'message body was rendered as HTML');
      // The sender sees the hub's confirmation of its ref'd relay.
      await a.waitForFunction(
        () => /accepted by 1/.test(document.querySelector('#messages [data-ref]')?.textContent ?? ''),
        { timeout: STEP_MS, polling: 100 },
      );
      assert.equal(await a.$eval('#text', (el) => el.value), '', '#text not cleared after sending');
    });

    await step('B -> A: type the receiver id, press Enter', async () => {
      await b.bringToFront();
      await b.type('#to', idA);
      await b.type('#text', textBA);
      await b.keyboard.press('Enter');
      await waitMessage(a, idB, textBA).catch(async (e) => {
        throw new Error(`A did not show B's message: ${e.message}\nA: ${JSON.stringify(await pageState(a))}\nB: ${JSON.stringify(await pageState(b))}`);
      });
      const status = await b.$eval('#status', (el) => el.textContent);
      assert.doesNotMatch(status, /bad_|unknown_|too_|rate_|unavailable|internal/, `B shows an error: ${status}`);
    });

    await step('error frames show in the status line', async () => {
      await a.bringToFront();
      await a.$eval('#to', (el) => { el.value = ''; });
      await a.type('#to', '18446744073709551616'); // 2^64: not a valid id
      await a.type('#text', 'goes nowhere');
      await a.click('#send');
      await a.waitForFunction(
        () => /bad_request/.test(document.getElementById('status')?.textContent ?? ''),
        { timeout: STEP_MS, polling: 100 },
      ).catch(async (e) => {
        throw new Error(`no bad_request in A's status line: ${e.message}\n${JSON.stringify(await pageState(a))}`);
      });
      await a.$eval('#to', (el) => { el.value = ''; });
    });

    await step('a service message (POST /relay, from 0) with a non-text body shows as JSON text', async () => {
      const body = { n: [1, 2], html: `<i>${nonce}</i>` };
      const r = await fetch(`${base}/relay`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ receivers: [Number(idA)], body }),
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(r.status, 200, `POST /relay answered ${r.status}: ${await r.text()}`);
      await waitMessage(a, '0', JSON.stringify(body)).catch(async (e) => {
        throw new Error(`A did not show the service message: ${e.message}\n${JSON.stringify(await pageState(a))}`);
      });
      assert.equal(await a.$('#messages .body i'), null, 'JSON body was rendered as HTML');
    });

    await step('reloading B keeps its id (token resume)', async () => {
      await b.bringToFront();
      await b.reload({ waitUntil: 'domcontentloaded', timeout: STEP_MS });
      const again = await waitForId(b);
      assert.equal(again, idB, `B came back as ${again}, not ${idB}`);
      // The conversation survives the reload (kept in sessionStorage).
      await waitMessage(b, idA, textAB);
      await waitOnline(b, idA);
      await waitOnline(a, idB);
    });

    await step(`a peer that closes its tab leaves the online list within ${PEER_GONE_MS / 1000} s`, async () => {
      const e = await open('E');
      const idE = await waitForId(e);
      await a.bringToFront(); // B stays a background tab, as the closed peer's neighbour would
      await waitOnline(a, idE);
      await waitOnline(b, idE);
      await e.close();
      const closedAt = Date.now();
      for (const [name, page] of [['A', a], ['B', b]]) {
        const left = PEER_GONE_MS - (Date.now() - closedAt);
        await waitGone(page, idE, Math.max(left, 1)).catch(async (err) => {
          throw new Error(`${name} still lists the closed peer ${idE} after ${PEER_GONE_MS} ms: ${err.message}\n${JSON.stringify(await pageState(page))}`);
        });
      }
    });

    await step('every received message refreshes the online list', async () => {
      await a.bringToFront();
      for (let i = 0; i < 4; i++) {
        const text = `refresh ${i} ${nonce}`;
        const r = await fetch(`${base}/relay`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ receivers: [Number(idA)], body: { text } }),
          signal: AbortSignal.timeout(5000),
        });
        assert.equal(r.status, 200, `POST /relay answered ${r.status}`);
        await waitMessage(a, '0', text);
        await sleep(LIST_AFTER_MESSAGE_MS + 100);
        const log = await a.evaluate(() => window.__wsLog.slice());
        const got = log.find((f) => f.kind === 'recv' && f.data.includes(text));
        assert.ok(got, `A's frame log has no message "${text}"`);
        const list = log.find((f) => f.kind === 'sent' && JSON.parse(f.data).type === 'list' &&
          f.t >= got.t && f.t - got.t <= LIST_AFTER_MESSAGE_MS);
        assert.ok(list, `A sent no list within ${LIST_AFTER_MESSAGE_MS} ms of message ${i}: ${JSON.stringify(log.filter((f) => f.t >= got.t))}`);
        await sleep(600); // away from the previous refresh
      }
    });

    await step('a refused token is dropped and the page connects fresh', async () => {
      const c = await open('C');
      const idC = await waitForId(c);
      await c.evaluate(() => sessionStorage.setItem('msghub.token', 'not-a-valid-token'));
      await c.reload({ waitUntil: 'domcontentloaded', timeout: STEP_MS });
      const fresh = await waitForId(c).catch(async (e) => {
        throw new Error(`C never got a new id after a bad token: ${e.message}\n${JSON.stringify(await pageState(c))}`);
      });
      assert.notEqual(fresh, idC, 'a bad token gave the old id back');
      const stored = await c.evaluate(() => sessionStorage.getItem('msghub.token'));
      assert.ok(stored && stored !== 'not-a-valid-token', 'the bad token was not replaced');
      await c.close();
    });

    await step('opening the same session elsewhere takes it over (4409), Reconnect takes it back', async () => {
      const tokenB = await b.evaluate(() => sessionStorage.getItem('msghub.token'));
      assert.ok(tokenB, 'B keeps no token in sessionStorage');
      const d = await open('D');
      try {
        await waitForId(d);
        await d.evaluate((tok) => sessionStorage.setItem('msghub.token', tok), tokenB);
        await d.reload({ waitUntil: 'domcontentloaded', timeout: STEP_MS });
        await d.waitForFunction((id) => document.getElementById('me')?.textContent.trim() === id,
          { timeout: STEP_MS, polling: 100 }, idB);
        await waitState(b, 'taken-over').catch(async (e) => {
          throw new Error(`B did not show taken-over: ${e.message}\nB: ${JSON.stringify(await pageState(b))}\nD: ${JSON.stringify(await pageState(d))}`);
        });
        // B must not reconnect by itself (that would take the session back from D).
        await sleep(1500);
        assert.equal(await b.$eval('#state', (el) => el.getAttribute('data-state')), 'taken-over', 'B reconnected after 4409');
        assert.equal(await d.$eval('#state', (el) => el.getAttribute('data-state')), 'open', 'D lost the session');
      } finally {
        await d.close(); // also when failing, so B and D do not keep taking the session from each other
      }
      await b.bringToFront();
      if (await b.$eval('#state', (el) => el.getAttribute('data-state')) === 'taken-over') await b.click('#retry');
      await waitState(b, 'open');
      assert.equal(await b.$eval('#me', (el) => el.textContent.trim()), idB, 'B came back with another id');
    });

    await step('pages reconnect with the same ids after the hub restarts', async () => {
      await stopHub(hub);
      await waitState(a, '!open', 5000);
      await waitState(b, '!open', 5000);
      // The hub closes with 1001 when it shuts down; the page names that reason.
      const statusA = await a.$eval('#status', (el) => el.textContent);
      assert.match(statusA, /hub restarting/, `A did not see a 1001 close: status is "${statusA}"`);
      hub = startHub(port);
      await waitHealthy(base, hub, 10_000);
      await waitState(a, 'open', 15_000);
      await waitState(b, 'open', 15_000);
      assert.equal(await a.$eval('#me', (el) => el.textContent.trim()), idA, 'A came back with another id');
      assert.equal(await b.$eval('#me', (el) => el.textContent.trim()), idB, 'B came back with another id');
      await waitOnline(a, idB);
      await waitOnline(b, idA);
      const after = `after the restart ${nonce}`;
      await a.bringToFront();
      await a.$eval('#to', (el) => { el.value = ''; });
      await a.type('#to', idB);
      await a.type('#text', after);
      await a.keyboard.press('Enter');
      await waitMessage(b, idA, after).catch(async (e) => {
        throw new Error(`B did not get A's message after the restart: ${e.message}\nA: ${JSON.stringify(await pageState(a))}\nB: ${JSON.stringify(await pageState(b))}`);
      });
    });

    await t.test('no script errors in the pages', () => {
      // Chromium logs the refused upgrade and the page's probe of it in the bad-token step; those are expected.
      // So does a page whose hub went away during the restart step.
      const unexpected = pageErrors.filter((e) => !(/^(C|D) console:/.test(e) && /WebSocket|status of 40[01]/.test(e))
        && !/console: WebSocket connection to .* failed|net::ERR_CONNECTION_REFUSED/.test(e));
      assert.deepEqual(unexpected, []);
    });
  } finally {
    try {
      if (a && b) {
        // Side by side: A on the left, B on the right.
        await within(10_000, 'screenshots', (async () => {
          await a.bringToFront();
          await a.screenshot({ path: path.join(shots, 'chat-a.png') });
          await b.bringToFront();
          await b.screenshot({ path: path.join(shots, 'chat-b.png') });
        })());
        t.diagnostic(`screenshots: ${shots}/chat-a.png ${shots}/chat-b.png`);
      }
    } catch (e) {
      t.diagnostic(`screenshot failed: ${e.message}`);
    }
    if (browser) {
      const proc = browser.process();
      await within(5000, 'browser close', browser.close()).catch(() => proc?.kill('SIGKILL'));
    }
    await stopHub(hub);
    fs.rmSync(profile, { recursive: true, force: true });
    process.removeListener('exit', onExit);
    if (hub && process.env.MSGHUB_SHOW_LOG) console.log(hub.log());
  }
});
