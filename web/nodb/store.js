// The store: a live, read-only replica of one view (state, seq, sources,
// version, status; subscribe and events), and dispatch through the outbox. It
// reads the stream's messages (docs/protocol.md): snapshot, patch, ack,
// rejected, error. The socket and its access token are the Connection's job,
// numbering and storing actions the Outbox's, applying patches applyPatch's,
// showing the history in Redux DevTools (option `devtools`) the Devtools'.

/**
 * @import { Action, ConnectOptions, Dispatched, Json, LocksLike, Status, StorageLike, StoreEvents } from '../nodb.js'
 * @import { SocketLike } from './connection.js'
 */

import { applyPatch, isObj, shareEqual } from './patch.js';
import { Connection, READY_TIMEOUT_MS, Token, backoffDelay, serviceBase, streamUrl, tokenClaims } from './connection.js';
import { DEFAULT_PREFIX, Outbox, defaultStorage, idWithoutLocks, mintStoredId, numberOf, pickClientId } from './outbox.js';
import { connectDevtools } from './devtools.js';

/**
 * Error codes after which an action can never be accepted: it leaves the
 * outbox. (`forbidden`: the token may not dispatch its type; a new token
 * would make it a new action.)
 */
const PERMANENT = new Set(['invalid_action', 'bad_request', 'payload_too_large', 'malformed_json', 'unsupported_media_type', 'forbidden']);

/**
 * The prefix of the client ids minted under `token`: `<sub>.` when it names
 * a client, else the default.
 * @param {string} token
 */
function idPrefix(token) {
  const sub = tokenClaims(token)?.sub;
  return typeof sub === 'string' && sub !== '' ? `${sub}.` : DEFAULT_PREFIX;
}

/**
 * An Error with a `code` (and more fields).
 * @param {string} code
 * @param {string} message
 * @param {object} [extra]
 * @returns {Error & { code: string }}
 */
function makeError(code, message, extra) {
  return Object.assign(new Error(message), { code }, extra);
}

/**
 * A plain JSON copy of `value`, or a TypeError naming the first part that is
 * not JSON: a function, symbol, bigint, a number that is not finite, an
 * object that is not plain (a Date, a Map, a class instance) or a cycle.
 * Properties whose value is `undefined` are left out (as `JSON.stringify`
 * does; optional fields of a TypeScript interface), and `undefined` in an
 * array or as the whole payload becomes `null`.
 * @param {unknown} value
 * @param {string} [path]
 * @param {Set<object>} [seen]
 * @returns {Json}
 */
export function jsonCopy(value, path = '', seen = new Set()) {
  if (value === undefined || value === null) return null;
  switch (typeof value) {
    case 'string': case 'boolean': return value;
    case 'number':
      if (Number.isFinite(value)) return value;
      throw new TypeError(`${path || 'the payload'} is ${value}, which JSON cannot hold`);
    case 'object': {
      if (seen.has(value)) throw new TypeError(`${path || 'the payload'} contains itself (a cycle)`);
      seen.add(value);
      try {
        if (Array.isArray(value)) return value.map((v, i) => jsonCopy(v, `${path}[${i}]`, seen));
        const proto = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) {
          throw new TypeError(`${path || 'the payload'} is a ${proto?.constructor?.name ?? 'non-plain object'}, not a plain object (convert it first, e.g. a Date with toISOString())`);
        }
        /** @type {Record<string, Json>} */
        const out = {};
        for (const [k, v] of Object.entries(value)) {
          if (v === undefined) continue;
          const copy = jsonCopy(v, `${path}.${k}`, seen);
          if (k === '__proto__') Object.defineProperty(out, k, { value: copy, writable: true, enumerable: true, configurable: true });
          else out[k] = copy;
        }
        return out;
      } finally {
        seen.delete(value);
      }
    }
    default:
      throw new TypeError(`${path || 'the payload'} is a ${typeof value}, which JSON cannot hold`);
  }
}

/**
 * Checks an action and makes the copy that is sent: `type` a non-empty
 * string, `payload` JSON ({@link jsonCopy}), `meta` absent or an object of
 * strings. Throws an Error with code `invalid_action` that says what is wrong.
 * @param {unknown} type
 * @param {unknown} payload
 * @param {unknown} meta
 * @returns {{ type: string, payload: Json, meta?: Record<string, string> }}
 */
export function prepareAction(type, payload, meta) {
  if (typeof type !== 'string' || type === '') throw makeError('invalid_action', 'an action type must be a non-empty string');
  if (meta != null && (!isObj(meta) || Object.values(meta).some((v) => typeof v !== 'string'))) {
    throw makeError('invalid_action', `the meta of ${type} must be an object of strings`);
  }
  let json;
  try { json = jsonCopy(payload); } catch (e) {
    throw makeError('invalid_action', `the payload of ${type} is not JSON: ${e instanceof Error ? e.message : e}`);
  }
  return meta == null ? { type, payload: json } : { type, payload: json, meta: { .../** @type {Record<string, string>} */ (meta) } };
}

/**
 * @template A
 * @param {(arg: A) => void} fn
 * @param {A} arg
 */
function callSafely(fn, arg) {
  try { fn(arg); } catch (e) { console.error('nodb: a listener threw', e); }
}

/**
 * What the store keeps of an action until its fate is known. Actions adopted
 * from a previous page have no promises.
 * @typedef {object} Pending
 * @property {Action} action
 * @property {Dispatched} [promise]
 * @property {(seq: number | null) => void} [resolve]
 * @property {(error: Error) => void} [reject]
 * @property {(seq: number | null) => void} [resolveApplied]
 * @property {(error: Error) => void} [rejectApplied]
 * @property {number} [seq] The seq of its ack.
 * @property {boolean} [acked]
 */

/**
 * A live replica of one view (see nodb.d.ts for the full contract).
 * @template [S=Json]
 */
export class Store {
  /** @type {Connection} */
  #connection;
  /** The data views given to `connect` (replicas of one another). @type {string[]} */
  #urls;
  /** @type {Outbox} */
  #outbox;
  #readOnly = false;
  /** @type {{ initialMs: number, maxMs: number }} */
  #backoff;

  /** @type {S} */
  #state;
  #hasState = false;
  #seq = 0;
  /** @type {Record<string, number> | null} */
  #sources = null;
  /** The `version` of the last snapshot (the app's code), sent back on resuming. @type {string | null} */
  #version = null;
  /** @type {Status} */
  #status = 'connecting';

  /** @type {Array<() => void>} */
  #listeners = [];
  /** @type {Map<string, Set<(arg: any) => void>>} */
  #events = new Map();

  /** Dispatches made before the client id is known. @type {Pending[]} */
  #early = [];
  /** Action id -> what is pending for it. @type {Map<string, Pending>} */
  #records = new Map();
  /** Action id -> its rejection, until its `.applied` settles. @type {Map<string, { seq: number, reason: string }>} */
  #rejections = new Map();

  /** Sends wait for the re-send timer (after `unavailable`). */
  #holding = false;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #resendTimer = null;
  /** `unavailable` answers in a row, for the re-send back-off. */
  #unavailable = 0;
  /** Releases the client id's Web Lock. @type {(() => void) | null} */
  #release = null;
  /** The Redux DevTools connection (option `devtools`, with the extension present). @type {{ close(): void } | null} */
  #devtools = null;

  /**
   * @param {string | readonly string[]} url a data view, or several replicas of one
   * @param {ConnectOptions<S>} options
   */
  constructor(url, options) {
    if (!options?.view) throw new Error('connect: options.view is required');
    const urls = typeof url === 'string' || url == null ? [url] : [...url];
    if (urls.length === 0) throw new TypeError('connect: give at least one data view URL');
    if (urls.some((u) => typeof u !== 'string' && u !== undefined)) throw new TypeError('connect: each data view URL must be a string');
    this.#urls = /** @type {string[]} */ (urls);
    const storage = options.storage ?? defaultStorage();
    const WebSocket = /** @type {(new (url: string) => SocketLike) | undefined} */ (options.WebSocket ?? globalThis.WebSocket);
    if (!WebSocket) throw new Error('connect: no WebSocket; pass options.WebSocket');
    this.#backoff = { initialMs: 250, maxMs: 10000, ...options.backoff };
    this.#state = /** @type {S} */ (options.initialState ?? null);
    this.#outbox = new Outbox(storage);
    const token = options.token != null || options.getToken != null
      ? new Token({ token: options.token, getToken: options.getToken })
      : null;
    // With several replicas, each one's /ready is asked before moving on (option `ready`).
    const probe = options.ready === false ? null : (options.ready ?? {});
    const fetch = probe ? (probe.fetch ?? globalThis.fetch) : undefined;
    const ready = probe && fetch && this.#urls.length > 1
      ? { bases: this.#urls.map(serviceBase), fetch, timeoutMs: probe.timeoutMs ?? READY_TIMEOUT_MS }
      : null;
    this.#connection = new Connection(this.#urls.map((u) => streamUrl(u, options.view)), { WebSocket, backoff: this.#backoff, token, ready }, {
      since: () => (this.#hasState ? this.#seq : null),
      version: () => this.#version,
      status: (s) => this.#onConnection(s),
      message: (data) => this.#onMessage(data),
      error: (e) => this.#emit('error', this.#urls.length > 1 ? { ...e, url: this.url } : e),
      replica: (index) => this.#emit('replica', { url: this.#urls[index], index }),
    });

    if (options.devtools) {
      this.#devtools = connectDevtools(this, {
        name: `nodb ${options.view}`,
        ...(options.devtools === true ? {} : options.devtools),
        url: this.#urls[0],
        token: () => token?.value ?? null,
      });
    }

    this.#readOnly = !!options.readOnly;
    const locks = options.locks === undefined ? /** @type {LocksLike | undefined} */ (globalThis.navigator?.locks) : options.locks;
    /** @param {string} prefix */
    const pick = (prefix) => this.#pickId(prefix, storage, options.storage != null, locks);
    if (this.#readOnly) {
      this.#start(null); // no client id: nothing to number, no outbox to adopt
    } else if (options.clientId) {
      this.#start(options.clientId);
    } else if (token === null) {
      pick(DEFAULT_PREFIX);
    } else if (token.value !== null) {
      pick(idPrefix(token.value));
    } else {
      // The id comes from the token's `sub`: the first token first.
      this.#firstToken(token).then((t) => { if (t !== null) pick(idPrefix(t)); });
    }
  }

  /**
   * Picks a client id minted with `prefix` (adopting a free one's outbox,
   * with Web Locks), then starts.
   * @param {string} prefix
   * @param {StorageLike} storage
   * @param {boolean} explicitStorage
   * @param {LocksLike | null | undefined} locks
   */
  #pickId(prefix, storage, explicitStorage, locks) {
    if (this.#status === 'closed') return;
    if (!locks) return this.#start(idWithoutLocks(storage, explicitStorage, prefix));
    const released = new Promise((r) => { this.#release = () => r(undefined); });
    pickClientId(storage, locks, released, prefix).then((id) => this.#start(id), (e) => {
      this.#emit('error', { code: 'locks', message: `cannot pick a client id: ${e?.message ?? e}` });
      this.#start(mintStoredId(storage, prefix));
    });
  }

  /**
   * The first token from `getToken`, asked again with back-off until it
   * gives one; null if the store is closed first.
   * @param {Token} token
   * @returns {Promise<string | null>}
   */
  async #firstToken(token) {
    for (let attempt = 0; this.#status !== 'closed'; attempt++) {
      try {
        const t = await token.current();
        if (t !== null) return t;
      } catch (e) {
        this.#emit('error', { code: 'token', message: `getToken failed: ${e instanceof Error ? e.message : e}` });
      }
      await new Promise((r) => setTimeout(r, backoffDelay(attempt, this.#backoff)));
    }
    return null;
  }

  /**
   * Adopts the client id's outbox and opens the socket.
   * @param {string | null} id
   */
  #start(id) {
    if (this.#status === 'closed') return;
    for (const action of this.#outbox.adopt(id)) this.#records.set(action.id, { action });
    for (const record of this.#early.splice(0)) this.#enqueue(record);
    this.#pendingChanged();
    this.#connection.start(id);
  }

  /** `null` until picked (with Web Locks, shortly after `connect`). */
  get clientId() {
    return this.#outbox.clientId;
  }

  /** The seq the state reflects (0 before the first snapshot). */
  get seq() {
    return this.#seq;
  }

  /** For a cascaded view: the upstream seqs the state reflects. */
  get sources() {
    return this.#sources;
  }

  /**
   * The `version` of the last snapshot: the name and version of the app's
   * code that made the state (e.g. "warehouse 0.1.0"); null when the server
   * sends none.
   */
  get version() {
    return this.#version;
  }

  /**
   * The data view in use, or being connected to: one of the URLs given to
   * `connect`, as given (the first before the first connection).
   */
  get url() {
    return this.#urls[this.#connection.index];
  }

  /** 'connecting', 'open', 'offline' (waiting to reconnect) or 'closed' (after `close()`). */
  get status() {
    return this.#status;
  }

  /** Actions not yet acknowledged. */
  get pending() {
    return this.#outbox.size + this.#early.length;
  }

  /** The current state: plain JS values, never mutated in place. */
  getState() {
    return this.#state;
  }

  /**
   * Calls `listener()` after each change of state (a snapshot, or a patch with ops); returns unsubscribe.
   * @param {() => void} listener
   * @returns {() => void}
   */
  subscribe(listener) {
    if (typeof listener !== 'function') throw new TypeError('subscribe: listener must be a function');
    this.#listeners = [...this.#listeners, listener];
    return () => { this.#listeners = this.#listeners.filter((l) => l !== listener); };
  }

  /**
   * Listens to 'status', 'rejected', 'error', 'ack', 'pending', 'seq', 'update' or 'replica'; returns the function that stops it.
   * @template {keyof StoreEvents} E
   * @param {E} event
   * @param {(arg: StoreEvents[E]) => void} fn
   * @returns {() => void}
   */
  on(event, fn) {
    const set = this.#events.get(event) ?? new Set();
    this.#events.set(event, set);
    set.add(fn);
    return () => { set.delete(fn); };
  }

  /**
   * @template {keyof StoreEvents} E
   * @param {E} event
   * @param {StoreEvents[E]} arg
   */
  #emit(event, arg) {
    for (const fn of [...(this.#events.get(event) ?? [])]) callSafely(fn, arg);
  }

  /** @param {Status} s */
  #setStatus(s) {
    if (this.#status === s) return;
    this.#status = s;
    this.#emit('status', s);
  }

  /** @param {import('./connection.js').ConnectionStatus} s */
  #onConnection(s) {
    if (this.#status === 'closed') return;
    if (s === 'offline') this.#stopResend();
    this.#setStatus(s);
    if (s === 'open') this.#resendOutbox();
  }

  /**
   * Numbers `{type, payload, meta}`, stores it in the outbox and sends it. The promise resolves
   * with its seq once acknowledged; `.applied` once the state includes it (rejects if a reducer refused it).
   * @param {string} type
   * @param {unknown} [payload]
   * @param {Record<string, string>} [meta]
   * @returns {Dispatched}
   */
  dispatch(type, payload, meta) {
    /** @type {Action} */
    const action = { id: '', type, payload: null };
    /** @type {Pending} */
    const record = { action };
    const promise = /** @type {Dispatched} */ (new Promise((resolve, reject) => Object.assign(record, { resolve, reject })));
    promise.applied = new Promise((resolve, reject) => Object.assign(record, { resolveApplied: resolve, rejectApplied: reject }));
    promise.applied.catch(() => {}); // awaiting `.applied` is optional
    record.promise = promise;
    /** @param {Error} e */
    const fail = (e) => {
      record.reject?.(e);
      record.rejectApplied?.(e);
      return promise;
    };
    if (this.#status === 'closed') return fail(makeError('closed', 'the store is closed'));
    if (this.#readOnly) return fail(makeError('read_only', 'this store was connected with readOnly: true'));
    try { Object.assign(action, prepareAction(type, payload, meta)); } catch (e) {
      return fail(/** @type {Error} */ (e));
    }
    if (this.clientId === null) this.#early.push(record);
    else this.#enqueue(record);
    this.#pendingChanged();
    return promise;
  }

  /** The `pending` count last emitted. */
  #lastPending = 0;

  /** Emits `pending` if the count of unacknowledged actions changed. */
  #pendingChanged() {
    const n = this.pending;
    if (n === this.#lastPending) return;
    this.#lastPending = n;
    this.#emit('pending', n);
  }

  /**
   * Numbers the action, stores it in the outbox, then sends it.
   * @param {Pending} record
   */
  #enqueue(record) {
    const id = this.#outbox.add(record.action);
    this.#records.set(id, record);
    this.#send(record.action);
  }

  /** @param {Action} action */
  #send(action) {
    if (!this.#holding) this.#connection.send(JSON.stringify({ type: 'dispatch', action }));
  }

  #stopResend() {
    if (this.#resendTimer !== null) clearTimeout(this.#resendTimer);
    this.#resendTimer = null;
    this.#holding = false;
  }

  #resendOutbox() {
    this.#stopResend();
    for (const a of this.#outbox.actions) this.#send(a);
  }

  /** Re-sends the outbox later (after `unavailable`), holding new sends until then. */
  #resendLater() {
    if (this.#resendTimer !== null) return;
    this.#holding = true;
    this.#resendTimer = setTimeout(() => this.#resendOutbox(), backoffDelay(this.#unavailable++, this.#backoff));
  }

  /** @param {string} data */
  #onMessage(data) {
    /** @type {any} */
    let m;
    try { m = JSON.parse(data); } catch {
      this.#emit('error', { code: 'malformed_json', message: 'the server sent a message that is not JSON' });
      return;
    }
    switch (m?.type) {
      case 'snapshot': return this.#onSnapshot(m);
      case 'patch': return this.#onPatch(m);
      case 'ack': return this.#onAck(m);
      case 'rejected': return this.#onRejected(m);
      case 'error': return this.#onError(m);
      default: // unknown message types are ignored, for forward compatibility
    }
  }

  /** @param {{ seq: number, state: S, sources?: Record<string, number>, version?: unknown }} m */
  #onSnapshot(m) {
    // Subtrees equal to the old ones keep their old objects: a resync (or a
    // move to a data view with other code) is one change from the old state
    // to the new, re-rendering only what changed, and nothing when nothing did.
    const state = shareEqual(this.#state, m.state);
    const changed = state !== this.#state || !this.#hasState;
    this.#state = state;
    this.#sources = m.sources ?? null;
    this.#version = typeof m.version === 'string' ? m.version : null;
    this.#hasState = true;
    this.#advance('snapshot', m.seq, m.seq, changed);
  }

  /** @param {{ seq: number, from?: number, ops?: unknown, sources?: Record<string, number> }} m */
  #onPatch(m) {
    const first = m.from ?? m.seq;
    if (!this.#hasState || first !== this.#seq + 1) {
      this.#emit('error', { code: 'gap', message: `a patch for seqs ${first}..=${m.seq} does not follow seq ${this.#seq}; resyncing` });
      this.#connection.drop({ resync: !this.#hasState });
      return;
    }
    const ops = Array.isArray(m.ops) ? m.ops : [];
    let next;
    try { next = applyPatch(this.#state, ops); } catch (e) {
      this.#emit('error', { code: 'patch_failed', message: `${e instanceof Error ? e.message : e}; resyncing from a snapshot` });
      this.#connection.drop({ resync: true }); // our state must be wrong: since=seq would not help
      return;
    }
    this.#state = next;
    if (m.sources) this.#sources = m.sources;
    this.#advance('patch', first, m.seq, ops.length > 0);
  }

  /**
   * @param {'snapshot' | 'patch'} kind
   * @param {number} from
   * @param {number} seq
   * @param {boolean} changed
   */
  #advance(kind, from, seq, changed) {
    this.#seq = seq;
    if (changed) for (const l of this.#listeners) callSafely(l, undefined);
    this.#emit('update', { kind, from, seq, changed });
    this.#emit('seq', seq);
    for (const [id, r] of this.#records) if (r.seq != null && r.seq <= seq) this.#settleApplied(id, r);
  }

  /**
   * @param {string} id
   * @param {Pending} r
   */
  #settleApplied(id, r) {
    this.#records.delete(id);
    const rej = this.#rejections.get(id);
    this.#rejections.delete(id);
    if (rej) r.rejectApplied?.(makeError('rejected', `action ${id} was rejected: ${rej.reason}`, { reason: rej.reason, seq: rej.seq, id }));
    else r.resolveApplied?.(r.seq ?? null);
  }

  /** @param {{ id: string, seq?: number | null, duplicate?: boolean }} m */
  #onAck(m) {
    this.#outbox.remove(m.id);
    this.#pendingChanged();
    this.#unavailable = 0;
    const r = this.#records.get(m.id);
    const a = r?.action;
    this.#emit('ack', { id: m.id, seq: m.seq ?? null, duplicate: !!m.duplicate, ...(a ? { type: a.type, payload: a.payload } : {}) });
    if (!r || r.acked) return;
    r.acked = true;
    r.resolve?.(m.seq ?? null);
    if (m.seq == null) { // a re-send of an old action: long applied, its fate unknown
      this.#records.delete(m.id);
      r.resolveApplied?.(null);
      return;
    }
    r.seq = m.seq;
    if (m.seq <= this.#seq) this.#settleApplied(m.id, r);
  }

  /** @param {{ id: string, seq: number, reason: string }} m */
  #onRejected(m) {
    this.#rejections.set(m.id, { seq: m.seq, reason: m.reason });
    if (this.#rejections.size > 1000) this.#rejections.delete(/** @type {string} */ (this.#rejections.keys().next().value));
    const a = this.#records.get(m.id)?.action;
    this.#emit('rejected', { seq: m.seq, id: m.id, reason: m.reason, type: a?.type, payload: a?.payload });
  }

  /** @param {{ code: string, message: string, id?: string | null, expected?: unknown, right?: string }} m */
  #onError(m) {
    const info = { code: m.code, message: m.message, id: m.id ?? null, ...(m.right == null ? {} : { right: m.right }) };
    const inOutbox = m.id != null && this.#outbox.has(m.id);
    if (m.code === 'unavailable') {
      this.#resendLater(); // keep everything in the outbox
    } else if (m.code === 'unauthorized') {
      this.#connection.renewToken(); // keep everything in the outbox for the next token
    } else if (m.code === 'out_of_order' && inOutbox) {
      const expected = expectedNumber(m);
      if (this.#outbox.hasNumber(expected)) {
        this.#resendLater(); // an earlier action is still on its way; send them all again in order
        return;
      }
      if (!(expected > 0)) return this.#emit('error', info);
      // The server never got `expected` (storage was lost): renumber the unsent tail from it.
      this.#renumber(expected);
      this.#emit('error', info);
      this.#connection.drop();
      return;
    } else if (m.code === 'id_reused' && inOutbox) {
      // That number already belongs to another action (storage restored from
      // an old copy, or an id copied to another tab): renumber the unsent
      // tail from the next free number the server names.
      const expected = expectedNumber(m);
      if (!(expected > 0)) return this.#emit('error', info);
      this.#renumber(numberOf(/** @type {string} */ (m.id)), expected);
      this.#emit('error', info);
      this.#connection.drop();
      return;
    } else if (PERMANENT.has(m.code) && m.id != null && inOutbox) {
      // The action can never be accepted: drop it and close the gap it leaves in the numbering.
      this.#outbox.remove(m.id);
      const r = this.#records.get(m.id);
      this.#records.delete(m.id);
      r?.promise?.catch(() => {}); // the 'error' event reports it too: no unhandled rejection when nobody awaits it
      const e = makeError(m.code, m.message, m.right == null ? { id: m.id } : { id: m.id, right: m.right });
      r?.reject?.(e);
      r?.rejectApplied?.(e);
      this.#renumber(numberOf(m.id));
      this.#pendingChanged();
      this.#connection.drop();
    }
    this.#emit('error', info);
  }

  /**
   * Renumbers the outbox from `from` on (to `start` on, when given),
   * keeping each action's promises.
   * @param {number} from
   * @param {number} [start]
   */
  #renumber(from, start = from) {
    const moved = [];
    for (const [old, id] of this.#outbox.renumber(from, start)) {
      const r = this.#records.get(old);
      this.#records.delete(old);
      if (r) moved.push(/** @type {const} */ ([id, r]));
    }
    for (const [id, r] of moved) this.#records.set(id, r);
  }

  /** Closes the socket for good and releases the client id; the outbox stays stored. */
  close() {
    if (this.#status === 'closed') return;
    this.#setStatus('closed');
    this.#devtools?.close();
    this.#stopResend();
    this.#connection.close();
    this.#release?.();
    const e = makeError('closed', 'the store was closed before the action was acknowledged; it stays in the outbox');
    for (const r of this.#records.values()) {
      r.promise?.catch(() => {}); // closing is deliberate: no unhandled rejections
      if (!r.acked) r.reject?.(e);
      r.rejectApplied?.(e);
    }
    for (const r of this.#early) { r.promise?.catch(() => {}); r.reject?.(e); r.rejectApplied?.(e); }
    this.#early = [];
    this.#records.clear();
    this.#pendingChanged();
  }
}

/**
 * The action number an `out_of_order` (or `id_reused`) error expects next: its `expected`
 * field (a number, or an action id `<client>:<n>`) when the server sends
 * one, else the last number in its message ("... expected c:2 next").
 * @param {{ message?: string, expected?: unknown }} m
 * @returns {number}
 */
function expectedNumber(m) {
  if (typeof m.expected === 'number') return m.expected;
  if (typeof m.expected === 'string') return /^\d+$/.test(m.expected) ? Number(m.expected) : numberOf(m.expected);
  return Number(/(\d+)\D*$/.exec(m.message ?? '')?.[1]);
}
