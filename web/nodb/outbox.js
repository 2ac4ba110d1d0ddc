// The outbox: actions numbered and stored (in localStorage by default)
// before they are sent, so each reaches the log exactly once across
// disconnections and reloads; and the client ids they are numbered under,
// one per tab, handed out with Web Locks so a closed tab's outbox is adopted.
// A minted id is a prefix and 12 random hex digits: `web-` by default, and
// `<sub>.` under a token whose `sub` is the client the bearer acts as (the
// server accepts `<sub>.<anything>`); only ids with the prefix are adopted.
//
// Storage keys: "nodb:clients" (the ids this origin has used),
// "nodb:next:<id>" (the next action number), "nodb:outbox:<id>" (the
// unacknowledged actions, in order).

/** @import { Action, LocksLike, StorageLike } from '../nodb.js' */

export const CLIENTS_KEY = 'nodb:clients';

/**
 * A Storage-like object kept in memory.
 * @returns {StorageLike}
 */
export function memoryStorage() {
  /** @type {Map<string, string>} */
  const m = new Map();
  return {
    getItem: (k) => m.get(k) ?? null,
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
  };
}

/**
 * `localStorage` if the page may use it, else memory.
 * @returns {StorageLike}
 */
export function defaultStorage() {
  try { if (globalThis.localStorage) return globalThis.localStorage; } catch { /* denied (privacy mode) */ }
  return memoryStorage();
}

/**
 * @template T
 * @param {StorageLike} storage
 * @param {string} key
 * @param {T} fallback
 * @returns {T}
 */
function readJson(storage, key, fallback) {
  try { return JSON.parse(storage.getItem(key) ?? 'null') ?? fallback; } catch { return fallback; }
}

/** The prefix of minted client ids without a token. */
export const DEFAULT_PREFIX = 'web-';

/**
 * A new client id: `prefix` and 12 hex digits.
 * @param {string} [prefix]
 */
export function mintId(prefix = DEFAULT_PREFIX) {
  const b = new Uint8Array(6);
  globalThis.crypto.getRandomValues(b);
  return prefix + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * The stored ids with `prefix`.
 * @param {StorageLike} storage
 * @param {string} prefix
 * @returns {string[]}
 */
const storedIds = (storage, prefix) => readJson(storage, CLIENTS_KEY, /** @type {string[]} */ ([])).filter((id) => id.startsWith(prefix));

/**
 * The number of action id `id` (`<client>:<n>`).
 * @param {string} id
 */
export const numberOf = (id) => Number(id.slice(id.lastIndexOf(':') + 1));

/**
 * Adds `id` to the stored list.
 * @param {StorageLike} storage
 * @param {string} id
 */
function storeId(storage, id) {
  storage.setItem(CLIENTS_KEY, JSON.stringify([...readJson(storage, CLIENTS_KEY, /** @type {string[]} */ ([])), id]));
  return id;
}

/**
 * Mints a client id with `prefix` and adds it to the stored list.
 * @param {StorageLike} storage
 * @param {string} [prefix]
 */
export function mintStoredId(storage, prefix) {
  return storeId(storage, mintId(prefix));
}

/**
 * The client id without Web Locks: the single stored id with `prefix`
 * (Node, tests) - but in a page, where tabs share localStorage, an id per tab
 * kept in sessionStorage (no clash; the outbox of a tab closed for good is
 * then not adopted). `explicitStorage`: the caller chose the storage (no
 * sessionStorage then).
 * @param {StorageLike} storage
 * @param {boolean} explicitStorage
 * @param {string} [prefix]
 * @returns {string}
 */
export function idWithoutLocks(storage, explicitStorage, prefix = DEFAULT_PREFIX) {
  /** @type {StorageLike | null} */
  let tab = null;
  try { if (!explicitStorage) tab = globalThis.sessionStorage ?? null; } catch { /* denied */ }
  if (!tab) return storedIds(storage, prefix)[0] ?? mintStoredId(storage, prefix);
  const kept = tab.getItem('nodb:client');
  const id = kept?.startsWith(prefix) ? kept : mintStoredId(storage, prefix);
  tab.setItem('nodb:client', id);
  return id;
}

/**
 * Picks a client id with Web Locks: the first id with `prefix` of the stored
 * list whose lock is free (so that its outbox is adopted), else a new one;
 * the lock is held until `released` resolves.
 * @param {StorageLike} storage
 * @param {LocksLike} locks
 * @param {Promise<void>} released
 * @param {string} [prefix]
 * @returns {Promise<string>}
 */
export async function pickClientId(storage, locks, released, prefix = DEFAULT_PREFIX) {
  /** @param {string} id @returns {Promise<boolean>} */
  const tryLock = (id) => new Promise((resolve, reject) => {
    locks.request(`nodb:client:${id}`, { ifAvailable: true }, (lock) => {
      resolve(!!lock);
      return lock ? released : undefined;
    }).catch(reject);
  });
  return locks.request(CLIENTS_KEY, async () => {
    for (const id of storedIds(storage, prefix)) if (await tryLock(id)) return id;
    let id;
    do id = mintId(prefix); while (!(await tryLock(id)));
    return storeId(storage, id);
  });
}

/** The unacknowledged actions of one client id, mirrored in storage. */
export class Outbox {
  /** @type {StorageLike} */
  #storage;
  /** @type {string | null} */
  #clientId = null;
  /** @type {Action[]} */
  #actions = [];

  /** @param {StorageLike} storage */
  constructor(storage) {
    this.#storage = storage;
  }

  /**
   * Takes client id `id` (null: a store that sends nothing) and adopts its
   * stored actions; returns them.
   * @param {string | null} id
   * @returns {readonly Action[]}
   */
  adopt(id) {
    this.#clientId = id;
    this.#actions = id === null ? [] : readJson(this.#storage, `nodb:outbox:${id}`, /** @type {Action[]} */ ([]));
    return this.#actions.slice();
  }

  get clientId() {
    return this.#clientId;
  }

  /** How many actions wait for their acknowledgement. */
  get size() {
    return this.#actions.length;
  }

  /** The actions, in order. */
  get actions() {
    return /** @type {readonly Action[]} */ (this.#actions.slice());
  }

  /** @param {string} id */
  has(id) {
    return this.#actions.some((a) => a.id === id);
  }

  /** @param {number} n */
  hasNumber(n) {
    return this.#actions.some((a) => numberOf(a.id) === n);
  }

  /**
   * Numbers `action` (sets its `id`: the next number of this client, after
   * every number in the outbox) and stores it. Needs a client id.
   * @param {Action} action
   * @returns {string} the id
   */
  add(action) {
    if (this.#clientId === null) throw new Error('nodb: the outbox has no client id');
    const key = `nodb:next:${this.#clientId}`;
    const n = Math.max(Number(this.#storage.getItem(key)) || 1, ...this.#actions.map((a) => numberOf(a.id) + 1));
    action.id = `${this.#clientId}:${n}`;
    this.#actions.push(action);
    this.#storage.setItem(key, String(n + 1));
    this.#save();
    return action.id;
  }

  /**
   * Removes (acknowledged or refused) action `id`; false if it is not here.
   * @param {string} id
   */
  remove(id) {
    const i = this.#actions.findIndex((a) => a.id === id);
    if (i < 0) return false;
    this.#actions.splice(i, 1);
    this.#save();
    return true;
  }

  /**
   * Renumbers the actions numbered `from` or more to start, start+1, ...
   * (`start` is `from` unless given; in place: the action objects get their
   * new ids) and sets the next number after them. Returns the `[old, new]`
   * ids.
   * @param {number} from
   * @param {number} [start]
   * @returns {Array<[string, string]>}
   */
  renumber(from, start = from) {
    /** @type {Array<[string, string]>} */
    const changed = [];
    let n = start;
    for (const a of this.#actions) {
      if (numberOf(a.id) < from) continue;
      const old = a.id;
      a.id = `${this.#clientId}:${n++}`;
      changed.push([old, a.id]);
    }
    this.#storage.setItem(`nodb:next:${this.#clientId}`, String(n));
    this.#save();
    return changed;
  }

  #save() {
    const key = `nodb:outbox:${this.#clientId}`;
    if (this.#actions.length) this.#storage.setItem(key, JSON.stringify(this.#actions));
    else this.#storage.removeItem(key);
  }
}
