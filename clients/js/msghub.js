// msghub.js: the msghub client for browsers and Node.js (wire contract v2).
//
// One ES module, no build step, no runtime dependency. It keeps a session
// alive the way the contract asks a careful client to: reconnect with
// exponential backoff and full jitter, resume with the token and `since`
// (the last seq seen), acknowledge in batches, drop duplicates by seq,
// stop on a takeover (4409), come back after a shutdown (1001), start over
// as a new user when the hub refuses the token, and keep an idle
// connection checked with pings. See docs/CLIENT.md for the API.
//
//   import { connect } from '/msghub.js';            // served by the hub
//   const hub = connect('wss://chat.example/ws', { storage: sessionStorage });
//   hub.on('message', (m) => console.log(m.from, m.body));
//   await hub.relay([7, 19], { text: 'hi' });
//
// Node.js 22+ has a global WebSocket; on Node.js 20 pass one, e.g.
// `connect(url, { WebSocket: (await import('ws')).WebSocket })`.

const DEFAULTS = {
  token: null, // session token to resume with (else the one in storage)
  since: null, // last seq already seen (else the one in storage)
  ack: 'client', // 'client': this library acks; 'auto': the hub counts a write as the ack
  storage: null, // {getItem, setItem, removeItem}, e.g. sessionStorage
  storageKey: 'msghub', // keys <storageKey>.token, .seq, .id
  WebSocket: null, // constructor; default globalThis.WebSocket
  reconnect: true,
  reconnectDelay: 500, // ms, base of the exponential backoff
  reconnectDelayMax: 15000, // ms, cap of the backoff (full jitter below it)
  ackEvery: 100, // send an ack after this many messages...
  ackDelay: 100, // ...or this many ms after the first unacknowledged one
  presenceEvery: 5000, // ms between `list` refreshes (online/offline events); 0: off
  presenceMinGap: 250, // ms, at most one refreshPresence() per gap
  keepalive: 25000, // ms without a received frame before a ping; 0: off
  pongTimeout: 10000, // ms to wait for any frame after that ping before reconnecting
  appPing: 'auto', // 'auto': WebSocket ping where the socket can send one, else {"type":"ping"}; true: always app ping
  requestTimeout: 0, // ms before a relay/list/identity promise rejects; 0: only on disconnect
  offlineQueue: 100, // requests made while (re)connecting wait for the connection, up to this many; 0: reject
};

// Close codes of the contract (section 2).
const CLOSE_REASONS = {
  1000: 'closed',
  1001: 'hub shutting down',
  1006: 'connection lost',
  1008: 'policy violation',
  1009: 'message too big',
  1011: 'hub internal error',
  4000: 'idle timeout',
  4008: 'too slow to keep up',
  4409: 'session taken over',
};

const ID_RE = /^[1-9][0-9]*$/;

class HubError extends Error {
  constructor(code, message, frame) {
    super(message || code);
    this.name = 'HubError';
    this.code = code;
    if (frame) this.frame = frame;
  }
}

// Small typed emitter: on/off/once, listener errors never break the client.
class Emitter {
  constructor() {
    this._ls = new Map();
  }
  on(type, fn) {
    if (!this._ls.has(type)) this._ls.set(type, new Set());
    this._ls.get(type).add(fn);
    return this;
  }
  off(type, fn) {
    this._ls.get(type)?.delete(fn);
    return this;
  }
  once(type, fn) {
    const w = (...a) => {
      this.off(type, w);
      fn(...a);
    };
    return this.on(type, w);
  }
  _emit(type, arg) {
    const set = this._ls.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (e) {
        setTimeout(() => {
          throw e;
        }, 0); // report it like an uncaught error, after this frame is handled
      }
    }
  }
}

// A storage that swallows the errors of disabled or full storage.
function safeStorage(s, prefix) {
  const k = (n) => `${prefix}.${n}`;
  return {
    get(n) {
      try {
        return s ? s.getItem(k(n)) : null;
      } catch {
        return null;
      }
    },
    set(n, v) {
      try {
        if (!s) return;
        if (v === null || v === undefined) s.removeItem(k(n));
        else s.setItem(k(n), String(v));
      } catch {
        /* storage disabled or full: the session just will not survive a reload */
      }
    },
  };
}

// ws:// or wss:// URL of the endpoint; accepts http(s) URLs and paths relative to the page.
function wsUrl(url) {
  const base = globalThis.location?.href;
  if (url === undefined || url === null) {
    if (!base) throw new TypeError('msghub.connect: a URL is needed outside a browser');
    url = '/ws';
  }
  const u = new URL(String(url), base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError(`msghub.connect: not a WebSocket URL: ${url}`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/ws';
  return u;
}

function receiverText(r) {
  const s = typeof r === 'bigint' ? r.toString() : typeof r === 'number' && Number.isInteger(r) ? String(r) : r;
  if (typeof s !== 'string' || !/^(0|[1-9][0-9]{0,19})$/.test(s)) return null; // valid JSON numbers only
  return s; // range (1..2^64-1) is the hub's to check: it answers bad_request
}

export class Hub extends Emitter {
  constructor(url, options = {}) {
    super();
    this._opt = { ...DEFAULTS, ...options };
    this._url = wsUrl(url);
    this._store = safeStorage(this._opt.storage, this._opt.storageKey);
    this._token = this._opt.token ?? this._store.get('token');
    const since = this._opt.since ?? this._store.get('seq');
    this._seq = since !== null && ID_RE.test(String(since)) ? Number(since) : 0; // highest seq handed to the app
    this._id = ID_RE.test(this._store.get('id') ?? '') ? Number(this._store.get('id')) : null;
    this._acked = 0; // highest seq acknowledged on this connection (or resumed past with since)
    this._unacked = 0; // messages since the last ack
    this._v2 = false; // the hub speaks contract v2 (hello.seq present)
    this._ws = null;
    this._state = 'idle';
    this._attempt = 0;
    this._skipSince = false; // the last upgrade with since was refused: try once without
    this._refusedUp = 0; // upgrades without since refused in a row while the hub answered /healthz
    this._refs = new Map(); // ref -> request sent, awaiting its answer
    this._queue = []; // requests made while (re)connecting, sent after hello
    this._nextRef = 1;
    this._online = new Map(); // id -> true, from the last list
    this._seenIds = new Set(); // v1 hubs (no seq): recent message ids
    this._seenOrder = [];
    this._timers = {};
    this._lastPresence = 0;
    this._closed = false;
    this._connect();
  }

  // ---- public API ----

  get id() {
    return this._id;
  }
  get token() {
    return this._token;
  }
  get lastSeq() {
    return this._seq;
  }
  get state() {
    return this._state; // 'connecting' | 'open' | 'reconnecting' | 'closed'
  }
  get online() {
    return [...this._online.keys()];
  }

  relay(receivers, body, { timeout } = {}) {
    const list = Array.isArray(receivers) ? receivers : [receivers];
    const ids = list.map(receiverText);
    if (!ids.length || ids.includes(null)) {
      return Promise.reject(new HubError('bad_request', 'receivers must be positive integer ids'));
    }
    let json;
    try {
      json = JSON.stringify(body === undefined ? null : body);
    } catch (e) {
      json = undefined; // a BigInt or a cycle
    }
    if (json === undefined) return Promise.reject(new HubError('bad_request', 'body must be a JSON value'));
    return this._request((ref) => `{"type":"relay","receivers":[${ids.join(',')}],"body":${json},"ref":${ref}}`, timeout);
  }

  list({ timeout } = {}) {
    return this._request((ref) => `{"type":"list","ref":${ref}}`, timeout).then((m) => m.ids);
  }

  identity({ timeout } = {}) {
    return this._request((ref) => `{"type":"identity","ref":${ref}}`, timeout).then((m) => m.id);
  }

  // Asks for the online list now, or once presenceMinGap has passed since the last ask.
  refreshPresence() {
    if (this._state !== 'open') return;
    const wait = this._lastPresence + this._opt.presenceMinGap - Date.now();
    if (wait > 0) {
      if (!this._timers.presenceSoon) {
        this._timers.presenceSoon = setTimeout(() => {
          this._timers.presenceSoon = null;
          this.refreshPresence();
        }, wait);
      }
      return;
    }
    this._lastPresence = Date.now();
    this.list().catch(() => {}); // the reply updates presence in _onFrame
  }

  // Connects again now (after a takeover or close(), or to skip a backoff wait).
  reconnect() {
    this._closed = false;
    this._attempt = 0;
    this._drop('reconnecting');
    this._connect();
  }

  close(code = 1000, reason = 'client closed') {
    const wasClosed = this._state === 'closed' && !this._ws;
    this._closed = true;
    if (wasClosed) return; // after a takeover or a fatal refusal: already reported
    this._flushAck();
    const ws = this._ws;
    this._drop(null);
    try {
      ws?.close(code, reason);
    } catch {
      /* already closing */
    }
    this._setClosed({ code, reason, takenOver: false });
  }

  // ---- connection ----

  _connect() {
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = null;
    const Ctor = this._opt.WebSocket || globalThis.WebSocket;
    if (typeof Ctor !== 'function') {
      throw new TypeError('msghub: no WebSocket here; pass one as the WebSocket option (e.g. from the ws package)');
    }
    this._setState(this._attempt ? 'reconnecting' : 'connecting');
    const u = new URL(this._url);
    const usedToken = this._token;
    const usedSince = usedToken && this._seq > 0 && !this._skipSince ? this._seq : 0;
    if (usedToken) u.searchParams.set('token', usedToken);
    if (usedSince) u.searchParams.set('since', String(usedSince));
    if (this._opt.ack === 'auto') u.searchParams.set('ack', 'auto');
    let ws;
    try {
      ws = new Ctor(u.toString());
    } catch (e) {
      this._scheduleReconnect({ code: 0, reason: `cannot open WebSocket: ${e.message}` });
      return;
    }
    this._ws = ws;
    const attempt = { opened: false, hello: false, status: 0, usedToken, usedSince };
    ws.onopen = () => {
      if (this._ws !== ws) return;
      attempt.opened = true;
      this._lastRecv = Date.now();
      this._startKeepalive();
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      this._lastRecv = Date.now();
      if (typeof ev.data !== 'string') return; // the hub sends text frames only
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (m && typeof m === 'object') this._onFrame(m, attempt);
    };
    const closed = (code, reason) => {
      clearTimeout(attempt.errorTimer);
      if (this._ws !== ws) return;
      this._drop(null);
      this._onClose(code || 1006, reason || '', attempt);
    };
    ws.onerror = (ev) => {
      // The ws package names the HTTP status of a refused upgrade; browsers do not.
      const st = /Unexpected server response: (\d{3})/.exec(ev?.message || ev?.error?.message || '');
      if (st) attempt.status = Number(st[1]);
      // A close event must follow; Node.js 20's built-in WebSocket may not send one.
      clearTimeout(attempt.errorTimer);
      attempt.errorTimer = setTimeout(() => closed(1006, ''), 1000);
    };
    ws.onclose = (ev) => closed(ev.code, ev.reason);
    if (typeof ws.on === 'function' && typeof ws.ping === 'function') {
      ws.on('pong', () => {
        if (this._ws === ws) this._lastRecv = Date.now();
      });
    }
  }

  // Forgets the socket and everything that belongs to one connection.
  _drop(why) {
    const ws = this._ws;
    this._ws = null;
    for (const k of ['ack', 'presence', 'presenceSoon', 'keepalive']) {
      clearTimeout(this._timers[k]);
      clearInterval(this._timers[k]);
      this._timers[k] = null;
    }
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {}; // the ws package throws an error nobody listens to (closing while connecting)
      if (why) {
        try {
          ws.close(1000, why);
        } catch {
          /* not open yet */
        }
      }
    }
    this._unacked = 0;
    const err = new HubError('disconnected', 'connection closed before the hub answered');
    for (const [, p] of this._refs) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this._refs.clear();
  }

  _onClose(code, reason, attempt) {
    const why = reason || CLOSE_REASONS[code] || `closed (${code})`;
    if (code === 4409) {
      this._setClosed({ code, reason: why, takenOver: true }); // another connection has the id now
      return;
    }
    if (!attempt.opened) {
      this._onRefused(attempt, code, why);
      return;
    }
    if (code === 1008 && !attempt.hello && attempt.usedSince) {
      // A distributed hub learns only after the upgrade that `since` is above the id's highest
      // seq (its Redis lost the log): an error frame, then 1008. Resume with the token alone.
      this._skipSince = true;
      this._emit('refused', { status: 400, reason: 'resume point refused; resuming with the token alone', dropped: 'since' });
      this._connect();
      return;
    }
    if (code === 1001) this._attempt = 0; // the hub is draining: come back at once, elsewhere
    this._scheduleReconnect({ code, reason: why });
  }

  // The upgrade failed. The ws package names the HTTP status; a browser cannot see it, so ask
  // the hub, as quietly as possible (a browser logs every 4xx/5xx answer): when it is up
  // (GET /healthz), first retry without `since` (refused when the hub no longer knows that seq,
  // e.g. a standalone hub that restarted); after two refusals in a row without `since`, ask
  // whether the token is refused (401 on a GET of the endpoint). Transient refusals (503 while
  // the hub drains or its backplane is down) are usually over by then.
  async _onRefused(attempt, code, why) {
    let status = attempt.status;
    if (!status && attempt.usedToken) {
      if (!(await this._hubUp())) {
        this._refusedUp = 0; // down, not refusing
      } else if (attempt.usedSince) {
        status = 400;
      } else {
        this._refusedUp += 1;
        if (this._refusedUp >= 2) status = await this._probeToken(attempt.usedToken);
        if (!status) this._attempt = Math.min(this._attempt, 1); // refused, not down: retry soon
      }
    }
    if (this._closed || this._ws || this._timers.reconnect) return;
    if (status === 401 && attempt.usedToken) {
      this._forgetSession();
      this._refusedUp = 0;
      this._emit('refused', { status, reason: 'expired, invalid, or from a hub that restarted', dropped: 'token' });
      this._attempt = 0;
      this._connect();
      return;
    }
    if (status === 400 && attempt.usedSince) {
      this._skipSince = true; // hello.seq tells whether the hub's log of this id started over
      this._emit('refused', { status, reason: 'resume point refused; resuming with the token alone', dropped: 'since' });
      this._connect();
      return;
    }
    if (status === 401 || status === 403 || status === 404) {
      const reason = { 401: 'token required', 403: 'origin not allowed', 404: 'no WebSocket endpoint at this URL' }[status];
      this._emit('refused', { status, reason, dropped: null });
      this._setClosed({ code: status, reason, takenOver: false });
      return;
    }
    this._scheduleReconnect({ code, reason: status ? `refused (HTTP ${status})` : why });
  }

  _httpUrl(path) {
    const u = new URL(this._url);
    u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
    if (path) u.pathname = path;
    return u;
  }

  async _fetchStatus(u) {
    if (typeof fetch !== 'function') return 0;
    try {
      const r = await fetch(u, { cache: 'no-store', signal: AbortSignal.timeout?.(5000) });
      await r.body?.cancel?.();
      return r.status;
    } catch {
      return 0; // not answering (or a cross-origin page without CORS): just retry later
    }
  }

  async _hubUp() {
    return (await this._fetchStatus(this._httpUrl(this._url.pathname.replace(/\/ws$/, '') + '/healthz'))) === 200;
  }

  async _probeToken(token) {
    const u = this._httpUrl();
    u.searchParams.set('token', token);
    return (await this._fetchStatus(u)) === 401 ? 401 : 0;
  }

  _scheduleReconnect(info) {
    if (this._closed || !this._opt.reconnect) {
      this._setClosed({ ...info, takenOver: false });
      return;
    }
    const cap = Math.min(this._opt.reconnectDelayMax, this._opt.reconnectDelay * 2 ** Math.min(this._attempt, 30));
    const delay = Math.floor(Math.random() * cap); // full jitter
    this._attempt += 1;
    this._setState('reconnecting');
    this._emit('reconnecting', { attempt: this._attempt, delay, code: info.code, reason: info.reason });
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      this._connect();
    }, delay);
  }

  _setState(s) {
    if (this._state === s) return;
    this._state = s;
    this._emit('state', s);
  }

  _setClosed(info) {
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = null;
    const err = new HubError('closed', `closed before it could be sent: ${info.reason}`);
    for (const p of this._queue.splice(0)) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this._setState('closed');
    this._emit('close', info);
  }

  _forgetSession() {
    this._token = null;
    this._store.set('token', null);
    this._setSeq(0);
  }

  _setSeq(n) {
    this._seq = n;
    this._store.set('seq', n || null);
  }

  // ---- frames ----

  _onFrame(m, attempt) {
    switch (m.type) {
      case 'hello':
        this._onHello(m, attempt);
        return;
      case 'message':
        this._onMessage(m);
        return;
      case 'list':
        this._onList(m);
        this._settle(m);
        return;
      case 'relayed':
      case 'identity':
      case 'acked':
        this._settle(m);
        return;
      case 'error':
        if (m.ref !== undefined && this._refs.has(String(m.ref))) this._settle(m);
        else this._emit('error', new HubError(m.code || 'error', m.message, m));
        return;
      default:
        return; // pong and anything newer
    }
  }

  _onHello(m, attempt) {
    attempt.hello = true;
    const previousId = this._id;
    this._id = m.id;
    this._store.set('id', m.id);
    if (typeof m.token === 'string' && m.token) {
      this._token = m.token;
      this._store.set('token', m.token);
    }
    const newId = previousId !== null && (!m.resumed || previousId !== m.id); // a new user, maybe a reused number
    this._v2 = typeof m.seq === 'number';
    let reset = false;
    if (newId) {
      this._setSeq(0); // a new id has its own seq space
    } else if (this._v2 && m.seq < this._seq) {
      this._setSeq(0); // the hub's log of this id started over (it lost its memory)
      reset = true;
    }
    this._acked = attempt.usedSince && !newId && !reset ? attempt.usedSince : 0;
    this._attempt = 0;
    this._skipSince = false;
    this._refusedUp = 0;
    this._setState('open');
    for (const p of this._queue.splice(0)) this._sendRequest(p); // in the order they were made
    this._emit('hello', {
      id: m.id,
      token: this._token,
      resumed: !!m.resumed,
      newId,
      previousId,
      seq: m.seq,
      recovered: m.recovered !== false && !reset,
      ack: m.ack,
      limits: m.limits,
    });
    if (this._opt.presenceEvery > 0) {
      this.refreshPresence();
      this._timers.presence = setInterval(() => this.refreshPresence(), this._opt.presenceEvery);
    }
  }

  _onMessage(m) {
    if (typeof m.seq === 'number') {
      if (m.seq <= this._seq) {
        if (m.seq > this._acked) this._countAck(); // a redelivery: ack it, do not show it again
        return;
      }
      this._setSeq(m.seq);
      this._countAck();
    } else if (typeof m.id === 'string') {
      // v1 hub: no seq; drop a redelivered message id (ts too: a restarted hub reuses ids)
      const key = `${m.id}|${m.from}|${m.ts}`;
      if (this._seenIds.has(key)) return;
      this._seenIds.add(key);
      this._seenOrder.push(key);
      if (this._seenOrder.length > 5000) this._seenIds.delete(this._seenOrder.shift());
    }
    this._emit('message', m);
  }

  _onList(m) {
    if (!Array.isArray(m.ids)) return;
    const now = new Map(m.ids.filter((i) => i !== this._id).map((i) => [i, true]));
    for (const i of now.keys()) if (!this._online.has(i)) this._emit('online', i);
    for (const i of this._online.keys()) if (!now.has(i)) this._emit('offline', i);
    this._online = now;
    this._emit('presence', this.online);
  }

  // ---- requests with ref ----

  _request(build, timeout = this._opt.requestTimeout) {
    return new Promise((resolve, reject) => {
      const p = { build, resolve, reject, timer: null, ref: null };
      if (timeout > 0) {
        p.timer = setTimeout(() => {
          if (p.ref) this._refs.delete(p.ref);
          const i = this._queue.indexOf(p);
          if (i >= 0) this._queue.splice(i, 1);
          reject(new HubError('timeout', `no answer within ${timeout} ms`));
        }, timeout);
      }
      if (this._state === 'open' && this._ws) {
        this._sendRequest(p);
      } else if (this._state !== 'closed' && this._queue.length < this._opt.offlineQueue) {
        this._queue.push(p); // never sent, so sending it after hello cannot double it
      } else {
        clearTimeout(p.timer);
        reject(new HubError('disconnected', 'not connected'));
      }
    });
  }

  _sendRequest(p) {
    p.ref = String(this._nextRef++);
    this._refs.set(p.ref, p);
    if (!this._send(p.build(JSON.stringify(p.ref)))) {
      this._refs.delete(p.ref);
      clearTimeout(p.timer);
      p.reject(new HubError('disconnected', 'not connected'));
    }
  }

  _settle(m) {
    if (m.ref === undefined) return;
    const key = String(m.ref);
    const p = this._refs.get(key);
    if (!p) return;
    this._refs.delete(key);
    clearTimeout(p.timer);
    if (m.type === 'error') p.reject(new HubError(m.code || 'error', m.message, m));
    else p.resolve(m);
  }

  _send(text) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(text);
      return true;
    } catch {
      return false;
    }
  }

  // ---- acks: every ackEvery messages or ackDelay ms after the first unacknowledged ----

  _countAck() {
    if (!this._v2 || this._opt.ack === 'auto') return;
    this._unacked += 1;
    if (this._unacked >= this._opt.ackEvery) this._flushAck();
    else if (!this._timers.ack) this._timers.ack = setTimeout(() => this._flushAck(), this._opt.ackDelay);
  }

  _flushAck() {
    clearTimeout(this._timers.ack);
    this._timers.ack = null;
    this._unacked = 0;
    if (!this._v2 || this._opt.ack === 'auto' || this._seq <= this._acked) return;
    if (this._send(`{"type":"ack","seq":${this._seq}}`)) this._acked = this._seq;
  }

  // ---- keepalive: a ping when nothing arrived for a while; no answer means a dead link ----

  _startKeepalive() {
    const every = this._opt.keepalive;
    if (!(every > 0)) return;
    const ws = this._ws;
    let pingedAt = 0;
    const tick = () => {
      if (this._ws !== ws) return;
      const now = Date.now();
      if (pingedAt && this._lastRecv < pingedAt && now - pingedAt >= this._opt.pongTimeout) {
        this._drop('keepalive timeout');
        this._scheduleReconnect({ code: 1006, reason: 'no answer to keepalive ping' });
        return;
      }
      if (now - this._lastRecv >= every && (!pingedAt || this._lastRecv >= pingedAt)) {
        pingedAt = now;
        const wsPing = this._opt.appPing === 'auto' && typeof ws.ping === 'function';
        if (wsPing) {
          try {
            ws.ping();
          } catch {
            /* closing */
          }
        } else {
          this._send('{"type":"ping"}');
        }
      }
      this._timers.keepalive = setTimeout(tick, Math.max(50, Math.min(every, this._opt.pongTimeout) / 2));
    };
    this._timers.keepalive = setTimeout(tick, Math.max(50, Math.min(every, this._opt.pongTimeout) / 2));
  }
}

export function connect(url, options) {
  return new Hub(url, options);
}

export { HubError };
export default { connect, Hub, HubError };
