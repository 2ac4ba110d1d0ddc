// nodb.js: the browser client of nodb, a Redux-style state server.
// Dependency-free ES module; works as <script type="module"> and in Node 20.
// Wire protocol: docs/protocol.md.

// ---------------------------------------------------------------------------
// JSON Patch (RFC 6902), immutable with structural sharing
// ---------------------------------------------------------------------------

const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Sets an own data property, even for keys such as `__proto__`. */
function setKey(o, k, v) {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
  else o[k] = v;
}

/** Deep equality of JSON values (numbers compared numerically, key order ignored). */
function jsonEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => has(b, k) && jsonEqual(a[k], b[k]));
}

/** Splits a JSON Pointer (RFC 6901) into unescaped tokens. */
function parsePointer(p) {
  if (typeof p !== 'string') throw new Error(`a pointer must be a string, not ${JSON.stringify(p)}`);
  if (p === '') return [];
  if (p[0] !== '/') throw new Error(`pointer ${JSON.stringify(p)} must start with "/"`);
  return p.slice(1).split('/').map((t) => {
    if (/~[^01]|~$/.test(t)) throw new Error(`bad escape in pointer ${JSON.stringify(p)}`);
    return t.replace(/~1/g, '/').replace(/~0/g, '~');
  });
}

/** The array index a token names; `max` is the largest allowed. */
function arrayIndex(arr, tok, max) {
  if (!/^(0|[1-9][0-9]*)$/.test(tok)) throw new Error(`${JSON.stringify(tok)} is not an array index`);
  const i = Number(tok);
  if (i > max) throw new Error(`index ${i} is out of bounds (length ${arr.length})`);
  return i;
}

/** The value at `tokens` in `doc`; throws if absent. */
function getAt(doc, tokens) {
  let v = doc;
  for (const t of tokens) {
    if (Array.isArray(v)) v = v[arrayIndex(v, t, v.length - 1)];
    else if (isObj(v) && has(v, t)) v = v[t];
    else throw new Error(`path /${tokens.join('/')} does not exist`);
  }
  return v;
}

/**
 * Applies RFC 6902 `ops` to `doc` and returns the new document. `doc` is never
 * mutated, and every subtree not on the path of an op keeps its identity (===).
 * On failure throws an Error with `.index` and `.op` (and `doc` is unchanged).
 * @param {any} doc
 * @param {Array<{op: string, path: string, from?: string, value?: any}>} ops
 * @returns {any}
 */
export function applyPatch(doc, ops) {
  if (!Array.isArray(ops)) throw new Error('a patch must be an array of operations');
  // Containers copied during this call: safe to mutate in place (copy-on-write once per patch).
  let owned = new Set();
  const own = (c) => {
    if (owned.has(c)) return c;
    const copy = Array.isArray(c) ? c.slice() : { ...c }; // spread keeps an own `__proto__` key
    owned.add(copy);
    return copy;
  };
  // Rebuilds the path to the parent of `tokens`, calls edit(parent, lastToken), returns the new root.
  const edit = (root, tokens, fn) => {
    const walk = (node, i) => {
      if (!Array.isArray(node) && !isObj(node)) throw new Error(`path /${tokens.join('/')} does not exist`);
      const t = tokens[i];
      const copy = own(node);
      if (i === tokens.length - 1) { fn(copy, t); return copy; }
      let child;
      if (Array.isArray(node)) child = arrayIndex(node, t, node.length - 1);
      else if (has(node, t)) child = t;
      else throw new Error(`path /${tokens.slice(0, i + 1).join('/')} does not exist`);
      const next = walk(node[child], i + 1);
      if (next !== node[child]) setKey(copy, child, next);
      return copy;
    };
    return walk(root, 0);
  };
  const add = (root, tokens, value) => tokens.length === 0 ? value : edit(root, tokens, (c, t) => {
    if (Array.isArray(c)) c.splice(t === '-' ? c.length : arrayIndex(c, t, c.length), 0, value);
    else setKey(c, t, value);
  });
  const remove = (root, tokens) => {
    if (tokens.length === 0) throw new Error('cannot remove the whole document');
    return edit(root, tokens, (c, t) => {
      if (Array.isArray(c)) c.splice(arrayIndex(c, t, c.length - 1), 1);
      else if (has(c, t)) delete c[t];
      else throw new Error(`path /${tokens.join('/')} does not exist`);
    });
  };
  let cur = doc;
  ops.forEach((op, index) => {
    try {
      if (!isObj(op)) throw new Error('an operation must be an object');
      const path = parsePointer(op.path);
      const needValue = () => { if (!has(op, 'value')) throw new Error(`"${op.op}" needs a "value"`); return op.value; };
      const from = () => { if (!has(op, 'from')) throw new Error(`"${op.op}" needs a "from"`); return parsePointer(op.from); };
      switch (op.op) {
        case 'add': cur = add(cur, path, needValue()); break;
        case 'remove': cur = remove(cur, path); break;
        case 'replace': {
          const v = needValue();
          getAt(cur, path);
          cur = path.length === 0 ? v : edit(cur, path, (c, t) => setKey(c, Array.isArray(c) ? arrayIndex(c, t, c.length - 1) : t, v));
          break;
        }
        case 'move': {
          const f = from();
          const v = getAt(cur, f);
          if (op.from === op.path) break;
          if (op.path.startsWith(op.from + '/')) throw new Error('cannot move a value into one of its children');
          cur = add(remove(cur, f), path, v);
          break;
        }
        case 'copy': {
          const v = getAt(cur, from());
          owned = new Set(); // the copied subtree is now shared: never mutate in place again
          cur = add(cur, path, v);
          break;
        }
        case 'test':
          if (!jsonEqual(getAt(cur, path), needValue())) throw new Error(`test failed at ${op.path}`);
          break;
        default: throw new Error(`unknown op ${JSON.stringify(op.op)}`);
      }
    } catch (e) {
      const err = new Error(`patch op ${index} (${JSON.stringify(op)}) failed: ${e.message}`);
      err.index = index;
      err.op = op;
      throw err;
    }
  });
  return cur;
}

// ---------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------

const PERMANENT = new Set(['invalid_action', 'bad_request', 'payload_too_large', 'malformed_json', 'unsupported_media_type']);
const CLIENTS_KEY = 'nodb:clients';

/** A Storage-like object kept in memory. */
function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
  };
}

function defaultStorage() {
  try { if (globalThis.localStorage) return globalThis.localStorage; } catch { /* denied (privacy mode) */ }
  return memoryStorage();
}

function readJson(storage, key, fallback) {
  try { return JSON.parse(storage.getItem(key)) ?? fallback; } catch { return fallback; }
}

const mintId = () => {
  const b = new Uint8Array(6);
  globalThis.crypto.getRandomValues(b);
  return 'web-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
};

/** The number of action id `id` (`<client>:<n>`). */
const numberOf = (id) => Number(id.slice(id.lastIndexOf(':') + 1));

function makeError(code, message, extra) {
  return Object.assign(new Error(message), { code }, extra);
}

function callSafely(fn, arg) {
  try { fn(arg); } catch (e) { console.error('nodb: a listener threw', e); }
}

/**
 * Picks this store's client id. With Web Locks, the first id of the stored
 * list whose lock is free (so that its outbox is adopted), else a new one;
 * the lock is held until `released` resolves. Without locks, the first stored id.
 */
async function pickClientId(storage, locks, released) {
  const tryLock = (id) => new Promise((resolve, reject) => {
    locks.request(`nodb:client:${id}`, { ifAvailable: true }, (lock) => {
      resolve(!!lock);
      return lock ? released : undefined;
    }).catch(reject);
  });
  return locks.request(CLIENTS_KEY, async () => {
    const ids = readJson(storage, CLIENTS_KEY, []);
    for (const id of ids) if (await tryLock(id)) return id;
    let id;
    do id = mintId(); while (!(await tryLock(id)));
    storage.setItem(CLIENTS_KEY, JSON.stringify([...readJson(storage, CLIENTS_KEY, []), id]));
    return id;
  });
}

/** A live replica of one view (see nodb.d.ts for the full contract). */
class Store {
  constructor(url, options = {}) {
    if (!options.view) throw new Error('connect: options.view is required');
    this.view = options.view;
    const base = new URL(url ?? '', globalThis.location?.href); // relative URLs work in a page
    this.url = base.href.replace(/[?#].*$/, '').replace(/\/+$/, '').replace(/^http/, 'ws');
    this.storage = options.storage ?? defaultStorage();
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) throw new Error('connect: no WebSocket; pass options.WebSocket');
    this.backoff = { initialMs: 250, maxMs: 10000, ...options.backoff };
    this.clientId = null;
    this.seq = 0;
    this.status = 'connecting';
    this.sources = null;
    this._state = options.initialState ?? null;
    this._hasState = false;
    this._listeners = [];
    this._events = new Map();
    this._early = []; // dispatches made before the client id is known
    this._outbox = [];
    this._records = new Map(); // action id -> {action, resolve, reject, resolveApplied, rejectApplied, seq}
    this._rejections = new Map(); // action id -> {seq, reason}
    this._ws = null;
    this._opened = false;
    this._attempt = 0;
    this._sinceFailures = 0;
    this._noSince = false;
    this._timer = null;
    this._resendTimer = null;
    this._holding = false;
    this._unavailable = 0;
    this._release = null;
    this._onOnline = () => { if (this.status === 'offline') { clearTimeout(this._timer); this._connect(); } };
    globalThis.addEventListener?.('online', this._onOnline);

    this.readOnly = !!options.readOnly;
    const locks = options.locks === undefined ? globalThis.navigator?.locks : options.locks;
    if (this.readOnly) {
      this._start(null); // no client id: nothing to number, no outbox to adopt
    } else if (options.clientId || !locks) {
      this._start(options.clientId || this._idWithoutLocks(options.storage));
    } else {
      const released = new Promise((r) => { this._release = r; });
      pickClientId(this.storage, locks, released).then((id) => this._start(id), (e) => {
        this._emit('error', { code: 'locks', message: `cannot pick a client id: ${e?.message ?? e}` });
        this._start(this._mintStored());
      });
    }
  }

  /**
   * Without Web Locks: the single stored id (Node, tests) - but in a page, where
   * tabs share localStorage, an id per tab kept in sessionStorage (no clash; the
   * outbox of a tab closed for good is then not adopted).
   */
  _idWithoutLocks(explicitStorage) {
    let tab = null;
    try { if (!explicitStorage) tab = globalThis.sessionStorage ?? null; } catch { /* denied */ }
    if (!tab) return readJson(this.storage, CLIENTS_KEY, [])[0] ?? this._mintStored();
    const id = tab.getItem('nodb:client') ?? this._mintStored();
    tab.setItem('nodb:client', id);
    return id;
  }

  _mintStored() {
    const id = mintId();
    this.storage.setItem(CLIENTS_KEY, JSON.stringify([...readJson(this.storage, CLIENTS_KEY, []), id]));
    return id;
  }

  /** Adopts the client id's outbox and opens the socket. */
  _start(id) {
    if (this.status === 'closed') return;
    this.clientId = id;
    this._outbox = id === null ? [] : readJson(this.storage, `nodb:outbox:${id}`, []);
    for (const action of this._outbox) this._records.set(action.id, { action });
    for (const e of this._early.splice(0)) this._enqueue(e.action, e.record);
    this._connect();
  }

  /** Actions not yet acknowledged. */
  get pending() {
    return this._outbox.length + this._early.length;
  }

  /** The current state: plain JS values, never mutated in place. */
  getState() {
    return this._state;
  }

  /** Calls `listener()` after each change of state (a snapshot, or a patch with ops); returns unsubscribe. */
  subscribe(listener) {
    if (typeof listener !== 'function') throw new TypeError('subscribe: listener must be a function');
    this._listeners = [...this._listeners, listener];
    return () => { this._listeners = this._listeners.filter((l) => l !== listener); };
  }

  /** Listens to 'status', 'rejected', 'error', 'ack' or 'seq'; returns the function that stops it. */
  on(event, fn) {
    const set = this._events.get(event) ?? new Set();
    this._events.set(event, set);
    set.add(fn);
    return () => set.delete(fn);
  }

  _emit(event, arg) {
    for (const fn of [...(this._events.get(event) ?? [])]) callSafely(fn, arg);
  }

  _setStatus(s) {
    if (this.status === s) return;
    this.status = s;
    this._emit('status', s);
  }

  /**
   * Numbers `{type, payload, meta}`, stores it in the outbox and sends it. The promise resolves
   * with its seq once acknowledged; `.applied` once the state includes it (rejects if a reducer refused it).
   */
  dispatch(type, payload, meta) {
    const record = {};
    const promise = new Promise((resolve, reject) => Object.assign(record, { resolve, reject }));
    promise.applied = new Promise((resolve, reject) => Object.assign(record, { resolveApplied: resolve, rejectApplied: reject }));
    promise.applied.catch(() => {}); // awaiting `.applied` is optional
    record.promise = promise;
    const fail = (code, message) => {
      const e = makeError(code, message);
      record.reject(e);
      record.rejectApplied(e);
      return promise;
    };
    if (this.status === 'closed') return fail('closed', 'the store is closed');
    if (this.readOnly) return fail('read_only', 'this store was connected with readOnly: true');
    if (typeof type !== 'string' || type === '') return fail('invalid_action', 'an action type must be a non-empty string');
    if (meta != null && (!isObj(meta) || Object.values(meta).some((v) => typeof v !== 'string'))) {
      return fail('invalid_action', 'meta must be an object of strings');
    }
    const action = { id: '', type, payload: null };
    try { action.payload = JSON.parse(JSON.stringify(payload) ?? 'null'); } catch (e) { // a plain JSON copy
      return fail('invalid_action', `the payload is not JSON: ${e.message}`);
    }
    if (meta != null) action.meta = { ...meta };
    if (this.clientId == null) this._early.push({ action, record });
    else this._enqueue(action, record);
    return promise;
  }

  /** Numbers the action, stores it in the outbox, then sends it. */
  _enqueue(action, record) {
    const key = `nodb:next:${this.clientId}`;
    const n = Math.max(Number(this.storage.getItem(key)) || 1, ...this._outbox.map((a) => numberOf(a.id) + 1));
    action.id = `${this.clientId}:${n}`;
    record.action = action;
    this._outbox.push(action);
    this.storage.setItem(key, String(n + 1));
    this._saveOutbox();
    this._records.set(action.id, record);
    this._send(action);
  }

  _saveOutbox() {
    const key = `nodb:outbox:${this.clientId}`;
    if (this._outbox.length) this.storage.setItem(key, JSON.stringify(this._outbox));
    else this.storage.removeItem(key);
  }

  _send(action) {
    if (this._ws && this._opened && !this._holding) this._ws.send(JSON.stringify({ type: 'dispatch', action }));
  }

  _resendOutbox() {
    this._holding = false;
    clearTimeout(this._resendTimer);
    this._resendTimer = null;
    for (const a of this._outbox) this._send(a);
  }

  /** Re-sends the outbox later (after `unavailable`), holding new sends until then. */
  _resendLater() {
    if (this._resendTimer) return;
    this._holding = true;
    this._resendTimer = setTimeout(() => this._resendOutbox(), this._delay(this._unavailable++));
  }

  _delay(attempt) {
    const ms = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(attempt, 30));
    return ms / 2 + Math.random() * (ms / 2);
  }

  _connect() {
    this._timer = null;
    if (this.status === 'closed') return;
    const useSince = this._hasState && this.seq > 0 && !this._noSince;
    this._noSince = false;
    let u = `${this.url}/views/${encodeURIComponent(this.view)}/stream?`;
    if (this.clientId !== null) u += `client=${encodeURIComponent(this.clientId)}`;
    if (useSince) u += `&since=${this.seq}`;
    this._setStatus('connecting');
    let ws;
    try { ws = new this.WebSocket(u); } catch (e) {
      this._emit('error', { code: 'connect', message: String(e?.message ?? e) });
      return this._scheduleReconnect(useSince);
    }
    this._ws = ws;
    this._opened = false;
    ws.onopen = () => {
      if (ws !== this._ws) return;
      this._opened = true;
      this._attempt = 0;
      this._sinceFailures = 0;
      this._setStatus('open');
      this._resendOutbox();
    };
    ws.onmessage = (ev) => { if (ws === this._ws) this._onMessage(ev.data); };
    ws.onerror = () => {}; // onclose follows
    ws.onclose = () => {
      if (ws !== this._ws) return;
      const failed = !this._opened;
      this._ws = null;
      this._opened = false;
      this._scheduleReconnect(failed && useSince);
    };
  }

  /** Closes the current socket (ignoring anything more from it); reconnects unless closing. */
  _drop(noSince = false) {
    const ws = this._ws;
    this._ws = null;
    this._opened = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch { /* already closing */ }
    }
    if (noSince) this._noSince = true;
    this._scheduleReconnect(false);
  }

  _scheduleReconnect(failedWithSince) {
    clearTimeout(this._timer);
    if (this.status === 'closed') return;
    if (failedWithSince && ++this._sinceFailures >= 2) { this._noSince = true; this._sinceFailures = 0; }
    clearTimeout(this._resendTimer);
    this._resendTimer = null;
    this._holding = false;
    this._setStatus('offline');
    this._timer = setTimeout(() => this._connect(), this._delay(this._attempt++));
  }

  _onMessage(data) {
    let m;
    try { m = JSON.parse(data); } catch {
      return this._emit('error', { code: 'malformed_json', message: 'the server sent a message that is not JSON' });
    }
    switch (m?.type) {
      case 'snapshot': return this._onSnapshot(m);
      case 'patch': return this._onPatch(m);
      case 'ack': return this._onAck(m);
      case 'rejected': return this._onRejected(m);
      case 'error': return this._onError(m);
      default: // unknown message types are ignored, for forward compatibility
    }
  }

  _onSnapshot(m) {
    this._state = m.state;
    this.sources = m.sources ?? null;
    this._hasState = true;
    this._advance(m.seq, true);
  }

  _onPatch(m) {
    const first = m.from ?? m.seq;
    if (!this._hasState || first !== this.seq + 1) {
      this._emit('error', { code: 'gap', message: `a patch for seqs ${first}..=${m.seq} does not follow seq ${this.seq}; resyncing` });
      this._drop(!this._hasState);
      return;
    }
    const ops = Array.isArray(m.ops) ? m.ops : [];
    let next;
    try { next = applyPatch(this._state, ops); } catch (e) {
      this._emit('error', { code: 'patch_failed', message: `${e.message}; resyncing from a snapshot` });
      return this._drop(true); // our state must be wrong: since=seq would not help
    }
    this._state = next;
    if (m.sources) this.sources = m.sources;
    this._advance(m.seq, ops.length > 0);
  }

  _advance(seq, changed) {
    this.seq = seq;
    if (changed) for (const l of this._listeners) callSafely(l);
    this._emit('seq', seq);
    for (const [id, r] of this._records) if (r.seq != null && r.seq <= seq) this._settleApplied(id, r);
  }

  _settleApplied(id, r) {
    this._records.delete(id);
    const rej = this._rejections.get(id);
    this._rejections.delete(id);
    if (rej) r.rejectApplied?.(makeError('rejected', `action ${id} was rejected: ${rej.reason}`, { reason: rej.reason, seq: rej.seq, id }));
    else r.resolveApplied?.(r.seq);
  }

  _removeFromOutbox(id) {
    const i = this._outbox.findIndex((a) => a.id === id);
    if (i < 0) return false;
    this._outbox.splice(i, 1);
    this._saveOutbox();
    return true;
  }

  _onAck(m) {
    this._removeFromOutbox(m.id);
    this._unavailable = 0;
    this._emit('ack', { id: m.id, seq: m.seq ?? null, duplicate: !!m.duplicate });
    const r = this._records.get(m.id);
    if (!r || r.acked) return;
    r.acked = true;
    r.resolve?.(m.seq ?? null);
    if (m.seq == null) { // a re-send of an old action: long applied, its fate unknown
      this._records.delete(m.id);
      r.resolveApplied?.(null);
      return;
    }
    r.seq = m.seq;
    if (m.seq <= this.seq) this._settleApplied(m.id, r);
  }

  _onRejected(m) {
    this._rejections.set(m.id, { seq: m.seq, reason: m.reason });
    if (this._rejections.size > 1000) this._rejections.delete(this._rejections.keys().next().value);
    const a = this._records.get(m.id)?.action;
    this._emit('rejected', { seq: m.seq, id: m.id, reason: m.reason, type: a?.type, payload: a?.payload });
  }

  _onError(m) {
    const info = { code: m.code, message: m.message, id: m.id ?? null };
    const inOutbox = m.id != null && this._outbox.some((a) => a.id === m.id);
    if (m.code === 'unavailable') {
      this._resendLater(); // keep everything in the outbox
    } else if (m.code === 'out_of_order' && inOutbox) {
      // "expected <client>:<n> next": the last number in the message is the one expected.
      const expected = Number(/(\d+)\D*$/.exec(m.message ?? '')?.[1]);
      if (this._outbox.some((a) => numberOf(a.id) === expected)) {
        this._resendLater(); // an earlier action is still on its way; send them all again in order
        return;
      }
      if (!(expected > 0)) return this._emit('error', info);
      // The server never got `expected` (storage was lost): renumber the unsent tail from it.
      this._renumber(expected);
      this._emit('error', info);
      this._drop();
      return;
    } else if (PERMANENT.has(m.code) && inOutbox) {
      // The action can never be accepted: drop it and close the gap it leaves in the numbering.
      this._removeFromOutbox(m.id);
      const r = this._records.get(m.id);
      this._records.delete(m.id);
      const e = makeError(m.code, m.message, { id: m.id });
      r?.reject?.(e);
      r?.rejectApplied?.(e);
      this._renumber(numberOf(m.id));
      this._drop();
    }
    this._emit('error', info);
  }

  /** Renumbers the outbox actions numbered >= `from` to from, from+1, ... */
  _renumber(from) {
    let n = from;
    for (const a of this._outbox) {
      if (numberOf(a.id) < from) continue;
      const r = this._records.get(a.id);
      this._records.delete(a.id);
      a.id = `${this.clientId}:${n++}`;
      if (r) this._records.set(a.id, r);
    }
    this.storage.setItem(`nodb:next:${this.clientId}`, String(n));
    this._saveOutbox();
  }

  /** Closes the socket for good and releases the client id; the outbox stays stored. */
  close() {
    if (this.status === 'closed') return;
    this._setStatus('closed');
    clearTimeout(this._resendTimer);
    globalThis.removeEventListener?.('online', this._onOnline);
    this._drop();
    this._release?.();
    const e = makeError('closed', 'the store was closed before the action was acknowledged; it stays in the outbox');
    for (const r of this._records.values()) {
      r.promise?.catch(() => {}); // closing is deliberate: no unhandled rejections
      if (!r.acked) r.reject?.(e);
      r.rejectApplied?.(e);
    }
    for (const { record } of this._early) { record.promise.catch(() => {}); record.reject(e); record.rejectApplied(e); }
    this._early = [];
    this._records.clear();
  }
}

/**
 * Connects to view `options.view` of the nodb data view at `url` (e.g.
 * `location.origin` or "http://127.0.0.1:7400") and returns a live store.
 * @param {string} url
 * @param {object} options see nodb.d.ts
 */
export function connect(url, options) {
  return new Store(url, options);
}

/**
 * A Redux-store facade over a nodb store, for react-redux's `<Provider>`:
 * `dispatch({type, payload, meta})` sends the action to the server and
 * returns the promise of `store.dispatch` (resolving with its seq).
 */
export function createReduxStore(store) {
  return {
    getState: () => store.getState(),
    subscribe: (listener) => store.subscribe(listener),
    dispatch: (action) => store.dispatch(action.type, action.payload, action.meta),
  };
}

/**
 * Redux middleware sending the actions whose type matches to the nodb server
 * (returning the promise of `store.dispatch`) instead of passing them on.
 * `types`: exact types, or prefixes ending with "/"; `match`: a predicate.
 * @param {Store} store
 * @param {{types?: string[], match?: (type: string, action: object) => boolean}} which
 */
export function nodbMiddleware(store, which = {}) {
  const { types = [], match } = Array.isArray(which) || typeof which === 'function' ? { types: which } : which;
  const test = typeof match === 'function' ? match
    : typeof types === 'function' ? types
      : (t) => types.some((p) => (p.endsWith('/') ? t.startsWith(p) : t === p));
  return () => (next) => (action) => (action && typeof action.type === 'string' && test(action.type, action)
    ? store.dispatch(action.type, action.payload, action.meta)
    : next(action));
}
