// The chat page (web/index.html on /msghub.js) in headless Chromium through a
// hub restart: standalone, the restarted hub no longer knows the session, so
// the page shows a new id and says why; distributed (three instances behind a
// round-robin balancer, MSGHUB_TEST_REDIS_URL / MSGHUB_TEST_AMQP_URL), the
// instance the page is on is killed with kill -9 while messages flow to it,
// and the page resumes on another one and shows every message once, in order.
//
// Chromium is Debian's (/usr/bin/chromium or $CHROMIUM_BIN), driven by
// puppeteer-core from tests/browser/node_modules.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '../../clients/js/msghub.js';
import { Cluster, HubProc, NO_BACKPLANE, Proxy, WebSocket, next, requireFromBrowserTests, sleep, waitFor } from './harness.mjs';

const puppeteer = requireFromBrowserTests('puppeteer-core');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const STEP_MS = 15_000;

async function withBrowser(fn) {
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (set CHROMIUM_BIN)`);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'msghub-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: false, // '--headless' is passed below as written
    pipe: true,
    userDataDir: profile,
    defaultViewport: { width: 1000, height: 640 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
    timeout: 20_000,
    protocolTimeout: 20_000,
  });
  const errors = [];
  const open = async (url) => {
    const page = await browser.newPage();
    page.setDefaultTimeout(STEP_MS);
    page.on('pageerror', (e) => errors.push(e.message));
    const r = await page.goto(url, { waitUntil: 'domcontentloaded', timeout: STEP_MS });
    assert.equal(r.status(), 200);
    return page;
  };
  try {
    await fn(open, errors);
  } finally {
    const proc = browser.process();
    await Promise.race([browser.close(), sleep(5000)]).catch(() => {});
    proc?.kill('SIGKILL');
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

const pageId = (page) => page.$eval('#me', (el) => el.textContent.trim());

async function waitId(page, not = null) {
  await page.waitForFunction((n) => {
    const t = document.getElementById('me')?.textContent.trim() ?? '';
    return /^[1-9][0-9]*$/.test(t) && document.getElementById('state')?.getAttribute('data-state') === 'open' && t !== n;
  }, { timeout: STEP_MS, polling: 100 }, not);
  return pageId(page);
}

// Texts of the messages the page shows from one sender.
const shown = (page, from) => page.evaluate((f) => [...document.querySelectorAll('#messages [data-from]')]
  .filter((el) => el.getAttribute('data-from') === f).map((el) => el.querySelector('.body').textContent), String(from));

const pageState = (page) => page.evaluate(() => ({
  me: document.getElementById('me')?.textContent,
  state: document.getElementById('state')?.textContent,
  status: document.getElementById('status')?.textContent,
})).catch((e) => e.message);

test('standalone: through a hub restart the page gets a new id and says why', { timeout: 120_000 }, async () => {
  const hub = new HubProc(['--shutdown-timeout', 1]); // a random token secret per process: the old token is refused
  await hub.start();
  try {
    await withBrowser(async (open, errors) => {
      const page = await open(`${hub.url}/`);
      const id1 = await waitId(page);
      const token1 = await page.evaluate(() => sessionStorage.getItem('msghub.token'));
      const tx = connect(hub.wsUrl, { WebSocket, presenceEvery: 0 });
      const htx = await next(tx, 'hello');
      await tx.relay([Number(id1)], { text: 'before the restart' });
      await waitFor('the first message', async () => (await shown(page, htx.id)).length === 1, STEP_MS);
      tx.close();

      await hub.stop();
      await page.waitForFunction(() => document.getElementById('state')?.getAttribute('data-state') !== 'open', { timeout: 5000 });
      assert.match(await page.$eval('#status', (el) => el.textContent), /hub restarting/);
      await hub.start(hub.port);
      await page.waitForFunction(() => /new id/.test(document.getElementById('status')?.textContent ?? ''),
        { timeout: STEP_MS, polling: 100 }).catch(async (e) => {
        throw new Error(`no new-id message: ${e.message}\n${JSON.stringify(await pageState(page))}`);
      });
      const id2 = await waitId(page);
      const status = await page.$eval('#status', (el) => el.textContent);
      assert.match(status, /refused/, `the status does not say the session was refused: ${status}`);
      assert.ok(status.includes(id2), `the status does not name the new id ${id2}: ${status}`);
      assert.equal(await page.$eval('#resumed', (el) => el.textContent), '', 'the page claims it resumed');
      const token2 = await page.evaluate(() => sessionStorage.getItem('msghub.token'));
      assert.ok(token2 && token2 !== token1, 'the refused token was kept');

      const tx2 = connect(hub.wsUrl, { WebSocket, presenceEvery: 0 });
      const htx2 = await next(tx2, 'hello');
      await tx2.relay([Number(id2)], { text: 'after the restart' });
      await waitFor('the message after the restart', async () => (await shown(page, htx2.id)).includes('after the restart'), STEP_MS);
      await sleep(300);
      assert.deepEqual(await shown(page, htx2.id), ['after the restart']);
      tx2.close();
      assert.deepEqual(errors, []);
    });
  } catch (e) {
    e.message += `\n--- hub ---\n${hub.log()}`;
    throw e;
  } finally {
    await hub.stop();
  }
});

test('distributed: kill -9 of the page\'s instance while messages flow; the page resumes on another and shows each once', { skip: NO_BACKPLANE, timeout: 180_000 }, async () => {
  const cluster = new Cluster();
  let proxy;
  let tx;
  try {
    const hubs = await cluster.start(3);
    proxy = await new Proxy(hubs.map((h) => ({ port: h.port, name: h.name, hub: h }))).start();
    await withBrowser(async (open, errors) => {
      const page = await open(`${proxy.url}/`);
      const id = await waitId(page);
      const on = (await waitFor('the page\'s WebSocket in the balancer', () => proxy.wsBackends()[0], 5000)).hub;
      const txHub = hubs.find((h) => h !== on);
      tx = connect(txHub.wsUrl, { WebSocket, presenceEvery: 0 });
      const htx = await next(tx, 'hello');
      const N = 60;
      const texts = Array.from({ length: N }, (_, i) => `message ${i}`);
      const sending = (async () => {
        for (const t of texts) {
          await tx.relay([Number(id)], { text: t });
          await sleep(25);
        }
      })();
      await waitFor('20 messages on the page', async () => (await shown(page, htx.id)).length >= 20, STEP_MS, 10);
      await on.kill9();
      await sending;
      await waitFor(`all ${N} messages on the page`, async () => (await shown(page, htx.id)).length >= N, 30_000, 100)
        .catch(async (e) => {
          throw new Error(`${e.message}: ${JSON.stringify(await shown(page, htx.id))}\n${JSON.stringify(await pageState(page))}`);
        });
      await sleep(500);
      assert.deepEqual(await shown(page, htx.id), texts, 'messages lost, doubled or out of order');
      assert.equal(await pageId(page), id, 'the page came back with another id');
      const now = proxy.wsBackends().map((b) => b.hub);
      assert.ok(now.length && !now.includes(on), 'the page is not on another instance');
      assert.deepEqual(errors, []);
    });
  } catch (e) {
    e.message += cluster.hubs.map((h) => `\n--- ${h.name} ---\n${h.log()}`).join('');
    throw e;
  } finally {
    tx?.close();
    await proxy?.close();
    await cluster.cleanup();
  }
});
