// Redux DevTools for a nodb store, through the browser extension's documented
// interface for stores that are not Redux (`__REDUX_DEVTOOLS_EXTENSION__
// .connect(options)` → `init`, `send`, `subscribe`, `unsubscribe`, `error`;
// reduxjs/redux-devtools, extension/docs/API/Methods.md). The tool shows the
// server's history as the store sees it: `init` with the first snapshot's
// state, then one `send(action, state)` per patch or snapshot the store
// applies, the state being the store's after it.
//
// An entry's action carries its `seq` (and `from` when one patch covers
// several seqs). Its type is, in this order of preference: this client's own
// action (known from its ack), the log's action read from the data view's
// `GET /history?from=A&to=B&limit=K` (batched, one request at a time and at
// most one per HISTORY_INTERVAL_MS; it needs the `log` right), or
// `@@nodb/update` when neither can say (no `log` right, no such endpoint, a
// cascade, whose seqs are not the log's). A snapshot that replaces the state
// (a resync) is `@@nodb/snapshot`.
//
// The server is the source of truth, so the tool cannot change the store:
// its time-travel buttons are turned off (`features`), and whatever asks for
// a jump, skip, rollback, reset, import or dispatch anyway is answered with
// `error(…)` saying so. Selecting an entry still shows its state and diff.

/** @import { ConnectDevtoolsOptions, Json, StoreEvents } from '../nodb.js' */

import { serviceBase } from './connection.js';

/** The type of an entry whose actions are unknown. */
export const UPDATE = '@@nodb/update';
/** The type of an entry for a snapshot that replaced the state. */
export const SNAPSHOT = '@@nodb/snapshot';

/** What the tool may offer: inspecting, pausing and exporting, nothing that changes state. */
const FEATURES = {
  pause: true, lock: false, persist: false, export: true, import: false,
  jump: false, skip: false, reorder: false, dispatch: false, test: false,
};

/** Entries wait this long before they are sent, so that acks arrive and a burst makes one request. */
const BATCH_MS = 100;
/** The least time between two `/history` requests. */
export const HISTORY_INTERVAL_MS = 500;
/** After a failed `/history` request (not a refusal), how long entries go without it. */
const FAILURE_PAUSE_MS = 30_000;
/** Without `/history`, how long an entry waits for the ack of this client's pending actions. */
const ACK_WAIT_MS = 1000;
/** At most this many actions are listed in one entry (a patch may cover thousands of seqs). */
export const LISTED = 20;
/** At most this many seqs are asked for in one request. */
const REQUEST_LIMIT = 200;
/** The extension's default `maxAge`. */
const DEFAULT_MAX_AGE = 50;
/** The statuses that mean `/history` is not for this token (or this server): not asked again. */
const REFUSED = new Set([401, 403, 404]);

/**
 * The part of the extension's `connect()` answer used here.
 * @typedef {object} DevtoolsInstance
 * @property {(state: unknown) => void} init
 * @property {(action: object, state: unknown) => void} send
 * @property {(listener: (message: any) => void) => (() => void) | undefined} subscribe
 * @property {() => void} unsubscribe
 * @property {(message: string) => void} error
 */

/**
 * What is known of the action at one seq.
 * @typedef {{ seq: number, type: string, id?: string, client?: string, ts?: number, payload?: Json, meta?: Record<string, string>, rejected?: string }} Known
 */

/**
 * One update waiting to be sent: its seqs, the state after it, and its
 * action once known.
 * @typedef {object} Entry
 * @property {'snapshot' | 'patch'} kind
 * @property {number} from
 * @property {number} seq
 * @property {unknown} state
 * @property {Record<string, number> | null} sources
 * @property {number} at When it came (`Date.now()`).
 * @property {boolean} asked `/history` has answered for its seqs.
 * @property {object | null} action
 */

/**
 * The part of a nodb store used here.
 * @typedef {object} StoreLike
 * @property {() => unknown} getState
 * @property {number} seq
 * @property {number} pending
 * @property {Record<string, number> | null} sources
 * @property {string | null} version
 * @property {<E extends keyof StoreEvents>(event: E, fn: (arg: StoreEvents[E]) => void) => () => void} on
 */

/**
 * Connects `store` to the Redux DevTools extension; null (doing nothing)
 * when the page has no `__REDUX_DEVTOOLS_EXTENSION__`.
 * @param {StoreLike} store
 * @param {ConnectDevtoolsOptions} [options]
 * @returns {Devtools | null}
 */
export function connectDevtools(store, options = {}) {
  const extension = /** @type {any} */ (globalThis).__REDUX_DEVTOOLS_EXTENSION__;
  if (typeof extension?.connect !== 'function') return null;
  return new Devtools(extension, store, options);
}

/** One store's connection to the extension (see {@link connectDevtools}). */
export class Devtools {
  /** @type {DevtoolsInstance} */
  #dt;
  /** @type {StoreLike} */
  #store;
  #maxAge;
  /** Where `/history` is, or null not to ask it. @type {string | null} */
  #history;
  /** @type {(() => string | null | undefined)} */
  #token;
  /** @type {ConnectDevtoolsOptions['fetch'] | null} */
  #fetch;

  #inited = false;
  #closed = false;
  /** The tool's "pause recording": updates are not sent. */
  #paused = false;
  /** @type {Entry[]} */
  #queue = [];
  /** Seq -> what is known of its action (acks, rejections, `/history`). @type {Map<number, Known>} */
  #known = new Map();
  /** The state of the last entry sent (what a COMMIT makes the tool's initial state). */
  #lastState = /** @type {unknown} */ (undefined);
  /** @type {ReturnType<typeof setTimeout> | null} */
  #timer = null;
  #inFlight = false;
  /** @type {AbortController | null} */
  #abort = null;
  #lastRequest = -Infinity;
  /** `/history` failed: not asked before this time. */
  #pausedUntil = -Infinity;
  /** `/history` refused (401/403/404), and the token it refused (a new one may be asked again after a 401). */
  #refused = /** @type {{ status: number, token: string | null } | null} */ (null);
  /** @type {Array<() => void>} */
  #stops = [];

  /**
   * @param {{ connect: (options: object) => DevtoolsInstance }} extension
   * @param {StoreLike} store
   * @param {ConnectDevtoolsOptions} options
   */
  constructor(extension, store, options) {
    this.#store = store;
    this.#maxAge = options.maxAge ?? DEFAULT_MAX_AGE;
    this.#history = options.actions === false || options.url == null ? null : `${serviceBase(options.url)}/history`;
    const token = options.token;
    this.#token = typeof token === 'function' ? token : () => token ?? null;
    this.#fetch = options.fetch ?? (typeof globalThis.fetch === 'function' ? globalThis.fetch.bind(globalThis) : null);
    this.#dt = extension.connect({
      name: options.name ?? 'nodb',
      ...(options.maxAge == null ? {} : { maxAge: options.maxAge }),
      features: FEATURES,
    });
    this.#stops.push(
      store.on('update', (u) => this.#onUpdate(u)),
      store.on('ack', (a) => {
        if (a.seq != null && a.type != null) this.#learn({ seq: a.seq, id: a.id, type: a.type, payload: a.payload ?? null });
      }),
      store.on('rejected', (r) => {
        const known = this.#known.get(r.seq);
        if (known) known.rejected = r.reason;
        else if (r.type != null) this.#learn({ seq: r.seq, id: r.id, type: r.type, payload: r.payload ?? null, rejected: r.reason });
      }),
      store.on('status', (s) => { if (s === 'closed') this.close(); }),
    );
    const unsubscribe = this.#dt.subscribe((message) => this.#onMessage(message));
    if (typeof unsubscribe === 'function') this.#stops.push(unsubscribe);
    if (store.seq > 0) this.#init(store.getState());
  }

  /** Stops sending and leaves the tool. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#abort?.abort();
    for (const stop of this.#stops.splice(0)) stop();
    this.#queue = [];
    this.#known.clear();
    try { this.#dt.unsubscribe(); } catch { /* the extension went away */ }
  }

  /** @param {unknown} state */
  #init(state) {
    this.#inited = true;
    this.#lastState = state;
    this.#dt.init(state);
  }

  /** @param {Known} known */
  #learn(known) {
    const rejected = this.#known.get(known.seq)?.rejected;
    this.#known.set(known.seq, rejected == null || known.rejected != null ? known : { ...known, rejected });
    // Bounded: what no entry will ask for goes first (in the order learnt).
    while (this.#known.size > 10 * REQUEST_LIMIT) this.#known.delete(/** @type {number} */ (this.#known.keys().next().value));
  }

  /** @param {StoreEvents['update']} u */
  #onUpdate(u) {
    if (this.#closed) return;
    const state = this.#store.getState();
    if (!this.#inited) return this.#init(state);
    if (this.#paused) return;
    const sources = this.#store.sources;
    /** @type {Entry} */
    const entry = { kind: u.kind, from: u.from, seq: u.seq, state, sources, at: Date.now(), asked: false, action: null };
    if (u.kind === 'snapshot') {
      const version = this.#store.version;
      entry.action = { type: SNAPSHOT, seq: u.seq, ...(version == null ? {} : { version }), ...(sources ? { sources } : {}) };
    }
    this.#queue.push(entry);
    // The tool keeps `maxAge` entries: older ones waiting here would only be dropped there.
    if (this.#queue.length > this.#maxAge) this.#queue.splice(0, this.#queue.length - this.#maxAge);
    this.#schedule(BATCH_MS);
  }

  /** @param {number} ms */
  #schedule(ms) {
    if (this.#timer !== null || this.#closed) return;
    this.#timer = setTimeout(() => { this.#timer = null; this.#flush(); }, Math.max(0, ms));
  }

  /** Sends the entries whose actions are known, in order; asks `/history` for the first that is not. */
  #flush() {
    if (this.#closed) return;
    const now = Date.now();
    while (this.#queue.length > 0) {
      const entry = this.#queue[0];
      if (entry.action === null) entry.action = this.#describe(entry, false);
      if (entry.action === null) {
        if (this.#canAsk(entry, now)) {
          if (this.#inFlight) return; // its answer flushes again
          const wait = this.#lastRequest + HISTORY_INTERVAL_MS - now;
          if (wait > 0) return this.#schedule(wait);
          this.#request();
          return;
        }
        // No `/history`: an ack of this client may still be on its way.
        const waited = now - entry.at;
        if (this.#store.pending > 0 && waited < ACK_WAIT_MS) return this.#schedule(ACK_WAIT_MS - waited);
        entry.action = this.#describe(entry, true);
      }
      this.#queue.shift();
      this.#lastState = entry.state;
      this.#dt.send(/** @type {object} */ (entry.action), entry.state);
      for (const seq of this.#known.keys()) if (seq <= entry.seq) this.#known.delete(seq);
    }
  }

  /**
   * The seqs whose actions an entry lists.
   * @param {Entry} entry
   */
  #listed(entry) {
    return { from: entry.from, to: Math.min(entry.seq, entry.from + LISTED - 1) };
  }

  /**
   * Whether `/history` may be asked about `entry` now or soon.
   * @param {Entry} entry
   * @param {number} now
   */
  #canAsk(entry, now) {
    if (this.#history === null || this.#fetch == null || entry.asked || entry.sources !== null) return false;
    if (now < this.#pausedUntil) return false;
    const refused = this.#refused;
    return refused === null || (refused.status === 401 && refused.token !== (this.#token() ?? null));
  }

  /**
   * The action of a patch entry: from what is known of every seq it lists,
   * or, with `anyway`, from what is known (`@@nodb/update` when nothing is).
   * Null when something is missing and not `anyway`.
   * @param {Entry} entry
   * @param {boolean} anyway
   * @returns {object | null}
   */
  #describe(entry, anyway) {
    const { from, to } = this.#listed(entry);
    /** @type {Known[]} */
    const listed = [];
    for (let seq = from; seq <= to; seq++) {
      const known = this.#known.get(seq);
      if (known) listed.push(known);
    }
    const complete = listed.length === to - from + 1;
    if (!complete && !anyway && !entry.asked) return null;
    const range = entry.from < entry.seq ? { from: entry.from } : {};
    const sources = entry.sources ? { sources: entry.sources } : {};
    if (listed.length === 0) return { type: UPDATE, seq: entry.seq, ...range, ...sources };
    if (entry.from === entry.seq) return { ...listed[0] };
    const more = entry.seq - entry.from + 1 - listed.length;
    return {
      type: complete || entry.asked ? summary(listed, more) : UPDATE,
      seq: entry.seq,
      ...range,
      actions: listed.map((a) => ({ ...a })),
      ...(more > 0 ? { more } : {}),
      ...sources,
    };
  }

  /** Asks `/history` for the seqs of the first entries waiting, then flushes. */
  async #request() {
    const waiting = this.#queue.filter((e) => e.action === null && !e.asked);
    if (waiting.length === 0 || this.#history === null || this.#fetch == null) return;
    const first = this.#listed(waiting[0]).from;
    let last = this.#listed(waiting[0]).to;
    for (const e of waiting) {
      const { to } = this.#listed(e);
      if (to - first + 1 > REQUEST_LIMIT) break;
      last = Math.max(last, to);
    }
    const token = this.#token() ?? null;
    this.#inFlight = true;
    this.#lastRequest = Date.now();
    const abort = new AbortController();
    this.#abort = abort;
    try {
      const url = `${this.#history}?from=${first}&to=${last}&limit=${last - first + 1}`;
      const res = await this.#fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: abort.signal });
      if (REFUSED.has(res.status)) {
        this.#refused = { status: res.status, token };
      } else if (!res.ok) {
        throw new Error(`GET /history answered ${res.status}`);
      } else {
        const body = /** @type {any} */ (await res.json());
        for (const a of Array.isArray(body?.actions) ? body.actions : []) {
          if (!Number.isInteger(a?.seq) || typeof a.type !== 'string' || a.seq < first || a.seq > last) continue;
          // This client's own action, as acked, is as good; the log's adds `ts`.
          this.#learn(logAction(a));
        }
        // `next`: where the answer stopped short (its limit), if it did.
        const covered = Number.isInteger(body?.next) ? Math.min(last, body.next - 1) : last;
        for (const e of waiting) {
          const { from, to } = this.#listed(e);
          if (from >= first && to <= covered) e.asked = true;
        }
      }
    } catch (e) {
      if (this.#closed) return;
      this.#pausedUntil = Date.now() + FAILURE_PAUSE_MS;
    } finally {
      if (this.#abort === abort) this.#abort = null;
      this.#inFlight = false;
    }
    this.#flush();
  }

  /**
   * Messages from the tool: COMMIT makes the last state sent the tool's
   * initial one; PAUSE_RECORDING pauses; whatever would change the state is
   * refused with an explanation.
   * @param {any} message
   */
  #onMessage(message) {
    if (this.#closed) return;
    const type = message?.type;
    if (type === 'DISPATCH') {
      const what = message.payload?.type;
      if (what === 'COMMIT') { if (this.#inited) this.#dt.init(this.#lastState); return; }
      if (what === 'PAUSE_RECORDING') { this.#paused = !!message.payload.status; return; }
      if (['JUMP_TO_STATE', 'JUMP_TO_ACTION', 'TOGGLE_ACTION', 'REORDER_ACTION', 'ROLLBACK', 'RESET', 'IMPORT_STATE', 'LOCK_CHANGES'].includes(what)) {
        return this.#refuse(what);
      }
    } else if (type === 'ACTION' || type === 'IMPORT') {
      this.#refuse(type === 'ACTION' ? 'dispatching from the tool' : 'IMPORT');
    }
  }

  /** @param {string} what */
  #refuse(what) {
    this.#dt.error(`nodb: ${what} cannot change this store. Its state is the server's (at seq ${this.#store.seq}), `
      + 'made by the reducers from the actions in the log; the tool only shows that history. '
      + 'Select an entry to inspect its state and diff; to change the state, dispatch an action.');
  }
}

/**
 * A `/history` action as an entry lists it.
 * @param {any} a
 * @returns {Known}
 */
function logAction(a) {
  /** @type {Known} */
  const known = { seq: a.seq, type: a.type };
  for (const key of /** @type {const} */ (['id', 'client', 'ts', 'payload', 'meta'])) if (a[key] !== undefined) known[key] = a[key];
  if (a.rejected != null && a.rejected !== false) known.rejected = a.rejected;
  return known;
}

/**
 * The type of an entry of several actions: their types in order of first
 * appearance, `×n` for repeats, `…` when more were not listed.
 * @param {Known[]} listed
 * @param {number} more
 */
export function summary(listed, more) {
  /** @type {Map<string, number>} */
  const counts = new Map();
  for (const a of listed) counts.set(a.type, (counts.get(a.type) ?? 0) + 1);
  const parts = [...counts].map(([t, n]) => (n > 1 ? `${t} ×${n}` : t));
  return more > 0 ? `${parts.join(', ')}, …` : parts.join(', ');
}
