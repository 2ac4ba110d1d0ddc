// The WebSocket to one view's stream: connecting with `client`, `since` (and
// the `version` of the code that made the state) and the access `token`,
// reconnecting with exponential back-off and jitter (at once when the browser
// says it is back online), renewing the token when the server closes for its
// expiry, and falling back to a fresh snapshot when resuming with `since`
// keeps failing. Given several data views (replicas following the same
// chronicler), it uses one at a time and moves to another when its socket
// fails or closes, preferring one whose `GET /ready` says it is caught up and
// not behind the client's seq. The server's pings are WebSocket control
// frames, answered by the browser (or Node's WebSocket) without any code here.

/** @typedef {'connecting' | 'open' | 'offline'} ConnectionStatus */

/**
 * What a connection tells its owner.
 * @typedef {object} ConnectionHooks
 * @property {() => number | null} since The seq to resume after (`since=`), or null for a snapshot.
 * @property {() => string | null} version The `version` of the last snapshot, sent with `since` (`version=`).
 * @property {(status: ConnectionStatus) => void} status Called at every change (also when repeated).
 * @property {(data: string) => void} message A text message of the current socket.
 * @property {(error: { code: string, message: string }) => void} error A socket that cannot even be made.
 * @property {(index: number) => void} [replica] The connection moved to replica `index` (of the URLs given).
 */

/**
 * The part of a WebSocket used here.
 * @typedef {object} SocketLike
 * @property {((ev: any) => void) | null} onopen
 * @property {((ev: { data: any }) => void) | null} onmessage
 * @property {((ev: any) => void) | null} onclose
 * @property {((ev: any) => void) | null} onerror
 * @property {(text: string) => void} send
 * @property {() => void} close
 */

/** @typedef {{ initialMs: number, maxMs: number }} Backoff */

/**
 * The part of `fetch` used for `GET /ready`.
 * @typedef {(url: string, init: { headers: Record<string, string>, signal: AbortSignal }) => Promise<{ status: number, json(): Promise<unknown> }>} ReadyFetch
 */

/**
 * What a replica's `GET /ready` said: its HTTP status, and the `status`
 * (`ready`, `recovering`, `refused`) and `seq` of its body when readable.
 * @typedef {{ code: number, status: string | null, seq: number | null }} ReadyAnswer
 */

/** How long a `GET /ready` may take before its replica counts as silent. */
export const READY_TIMEOUT_MS = 1000;

/** The close code of a stream whose token expired (reason "token expired"). */
export const TOKEN_EXPIRED_CLOSE = 4401;

/**
 * A token that expires within this (or within half its lifetime, if that is
 * shorter) is renewed before it is used, and taken for the cause of a
 * connection that fails before it opens.
 */
export const RENEW_MARGIN_MS = 10_000;

/** Failed connections in a row after which a renewable token is renewed anyway. */
const RENEW_AFTER_FAILURES = 3;

/**
 * The claims of a JWT (its payload, base64url JSON), read but not verified
 * (the server verifies; the client only reads `sub` and `exp`). Null for
 * anything that is not a JWT with an object payload.
 * @param {string} token
 * @returns {Record<string, unknown> | null}
 */
export function tokenClaims(token) {
  const part = typeof token === 'string' ? token.split('.')[1] : undefined;
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))));
    return claims !== null && typeof claims === 'object' && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

/**
 * The access token of one store: a fixed `token`, or the one `getToken()`
 * gave last. `getToken` is asked again when there is no token yet, when the
 * server refused the current one ({@link Token#refuse}), and when it is
 * {@link Token#expiring}; one call at a time.
 */
export class Token {
  /** @type {string | null} */
  #value = null;
  /** @type {(() => string | Promise<string>) | null} */
  #getToken;
  /** When the token expires, in `Date.now()` milliseconds (Infinity: no `exp`). */
  #expiresAt = Infinity;
  /** When it came. */
  #receivedAt = 0;
  #refused = false;
  /** @type {Promise<string> | null} */
  #fetching = null;

  /** @param {{ token?: string | null, getToken?: (() => string | Promise<string>) | null }} options */
  constructor({ token = null, getToken = null }) {
    if (token !== null && (typeof token !== 'string' || token === '')) throw new TypeError('connect: options.token must be a non-empty string');
    if (getToken !== null && typeof getToken !== 'function') throw new TypeError('connect: options.getToken must be a function');
    this.#getToken = getToken;
    if (token !== null) this.#set(token);
  }

  /** The current token (null before the first `getToken()` answer). */
  get value() {
    return this.#value;
  }

  /** Whether `getToken` can give another token. */
  get renewable() {
    return this.#getToken !== null;
  }

  /**
   * Whether the token has expired, or will within {@link RENEW_MARGIN_MS}
   * or half its lifetime, whichever is shorter (so a fresh short-lived token
   * is used, not renewed at once).
   */
  get expiring() {
    if (this.#value === null) return false;
    const margin = Math.max(0, Math.min(RENEW_MARGIN_MS, (this.#expiresAt - this.#receivedAt) / 2));
    return this.#expiresAt - Date.now() <= margin;
  }

  /** The server refused the token: the next {@link Token#current} asks `getToken` for another. */
  refuse() {
    this.#refused = true;
  }

  /**
   * The token to connect with: the current one (a string, or null without
   * any), or, when a new one is due and `getToken` can give it, the promise
   * of it (which rejects if `getToken` fails or gives no string).
   * @returns {string | null | Promise<string>}
   */
  current() {
    if (!this.#getToken) return this.#value;
    if (this.#value !== null && !this.#refused && !this.expiring) return this.#value;
    if (!this.#fetching) {
      const getToken = this.#getToken;
      const fetching = Promise.resolve().then(getToken).then((token) => {
        if (typeof token !== 'string' || token === '') throw new TypeError(`getToken gave ${token === '' ? 'an empty string' : typeof token}, not a token`);
        this.#set(token);
        this.#refused = false;
        return token;
      });
      this.#fetching = fetching;
      fetching.finally(() => { if (this.#fetching === fetching) this.#fetching = null; }).catch(() => {});
    }
    return this.#fetching;
  }

  /** @param {string} token */
  #set(token) {
    this.#value = token;
    this.#receivedAt = Date.now();
    const claims = tokenClaims(token);
    const exp = typeof claims?.exp === 'number' ? claims.exp * 1000 : Infinity;
    const iat = typeof claims?.iat === 'number' ? claims.iat * 1000 : NaN;
    // With a clock behind the issuer's, `exp` alone would look later than it
    // is: a fresh token's lifetime counted from now bounds it.
    this.#expiresAt = Math.min(exp, iat <= exp ? this.#receivedAt + (exp - iat) : Infinity);
  }
}

/**
 * The delay before retry number `attempt` (0, 1, ...): exponential from
 * `initialMs` up to `maxMs`, then a random value in its upper half.
 * @param {number} attempt
 * @param {Backoff} backoff
 */
export function backoffDelay(attempt, { initialMs, maxMs }) {
  const ms = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return ms / 2 + Math.random() * (ms / 2);
}

/**
 * `http(s)://host/base/` without its query, fragment and trailing slashes:
 * where the data view's paths start. Relative URLs work in a page.
 * @param {string | undefined} url
 */
export function serviceBase(url) {
  const base = new URL(url ?? '', globalThis.location?.href);
  return base.href.replace(/[?#].*$/, '').replace(/\/+$/, '');
}

/**
 * `http(s)://host/base/` and a view name: the view's stream URL without its
 * query, `ws(s)://host/base/views/<view>/stream`. Relative URLs work in a page.
 * @param {string | undefined} url
 * @param {string} view
 */
export function streamUrl(url, view) {
  return `${serviceBase(url).replace(/^http/, 'ws')}/views/${encodeURIComponent(view)}/stream`;
}

/**
 * Asks `GET <base>/ready`; resolves with what it said, or null when it did
 * not answer within `timeoutMs` (or not readably: a network failure, a CORS
 * refusal). Never rejects.
 * @param {string} base the data view's URL (see {@link serviceBase})
 * @param {{ fetch: ReadyFetch, timeoutMs: number }} options
 * @returns {Promise<ReadyAnswer | null>}
 */
export async function probeReady(base, { fetch, timeoutMs }) {
  const abort = new AbortController();
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  /** @type {Promise<null>} */
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => { abort.abort(); resolve(null); }, timeoutMs);
  });
  const ask = async () => {
    const res = await fetch(`${base}/ready`, { headers: {}, signal: abort.signal });
    /** @type {any} */
    let body = null;
    try { body = await res.json(); } catch { /* not JSON: the status alone */ }
    return {
      code: res.status,
      status: typeof body?.status === 'string' ? body.status : null,
      seq: typeof body?.seq === 'number' ? body.seq : null,
    };
  };
  try {
    return await Promise.race([ask(), timeout]);
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * How good a replica looks for resuming after `since`: 0, ready (200) and
 * not behind; 1, no readable answer, or not ready (503) but not behind; 2,
 * behind `since` (it would refuse `since` with 400); 3, refusing its
 * chronicler's log.
 * @param {ReadyAnswer | null | undefined} answer
 * @param {number | null} since
 */
export function replicaRank(answer, since) {
  if (!answer) return 1;
  if (answer.status === 'refused') return 3;
  if (since !== null && answer.seq !== null && answer.seq < since) return 2;
  return answer.code === 200 ? 0 : 1;
}

/**
 * The replica to go to: the best {@link replicaRank}, the first in turn from
 * `start` among equals; null while the answers (`undefined`: not yet in)
 * cannot tell yet, i.e. until one ranked 0 has answered with every replica
 * before it in turn, or all have answered.
 * @param {Array<ReadyAnswer | null | undefined>} answers one per replica
 * @param {number} start
 * @param {number | null} since
 * @returns {number | null}
 */
export function pickReplica(answers, start, since) {
  const n = answers.length;
  let best = -1;
  let bestRank = Infinity;
  let complete = true;
  for (let k = 0; k < n; k++) {
    const i = (start + k) % n;
    if (answers[i] === undefined) { complete = false; continue; }
    const rank = replicaRank(answers[i], since);
    if (rank === 0 && complete) return i;
    if (rank < bestRank) { best = i; bestRank = rank; }
  }
  return complete ? best : null;
}

/** One view's stream socket, reconnected until `close()`. */
export class Connection {
  /** The stream URL of each replica. @type {string[]} */
  #urls;
  /** Where each replica's `/ready` is (null: not asked). @type {string[] | null} */
  #bases;
  /** @type {{ fetch: ReadyFetch, timeoutMs: number } | null} */
  #probe;
  /** The replica in use (-1 before the first). */
  #index = -1;
  /** The next connection goes to another replica (chosen first). */
  #move = true;
  /** @type {new (url: string) => SocketLike} */
  #WebSocket;
  /** @type {Backoff} */
  #backoff;
  /** @type {ConnectionHooks} */
  #hooks;
  /** @type {Token | null} */
  #token;
  /** @type {string | null} */
  #client = null;
  /** @type {SocketLike | null} */
  #ws = null;
  #opened = false;
  #closed = false;
  /** Reconnections since the last open socket. */
  #attempt = 0;
  /** Failed connections with `since` in a row. */
  #sinceFailures = 0;
  /** Connections in a row that failed before they opened. */
  #failures = 0;
  /** The expired token was reported (it cannot be renewed). */
  #reportedExpiry = false;
  /** Counts connection attempts, so a token that comes late opens nothing. */
  #turn = 0;
  /** The next connection asks for a snapshot. */
  #noSince = false;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #timer = null;
  #onOnline = () => {
    if (this.#timer === null || this.#closed) return;
    clearTimeout(this.#timer);
    this.#connect();
  };

  /**
   * @param {string | string[]} urls the stream URL (see {@link streamUrl}), or one per replica
   * @param {{ WebSocket: new (url: string) => SocketLike, backoff: Backoff, token?: Token | null,
   *   ready?: { bases: string[], fetch: ReadyFetch, timeoutMs: number } | null }} options
   *   `ready`: with several replicas, where each one's `/ready` is and how to ask it
   * @param {ConnectionHooks} hooks
   */
  constructor(urls, { WebSocket, backoff, token = null, ready = null }, hooks) {
    this.#urls = typeof urls === 'string' ? [urls] : [...urls];
    if (this.#urls.length === 0) throw new TypeError('Connection: no URL');
    this.#bases = ready && this.#urls.length > 1 ? ready.bases : null;
    this.#probe = ready && this.#urls.length > 1 ? { fetch: ready.fetch, timeoutMs: ready.timeoutMs } : null;
    this.#WebSocket = WebSocket;
    this.#backoff = backoff;
    this.#token = token;
    this.#hooks = hooks;
    globalThis.addEventListener?.('online', this.#onOnline);
  }

  /**
   * Opens the first socket, as client `client` (null: no client id).
   * @param {string | null} client
   */
  start(client) {
    this.#client = client;
    this.#connect();
  }

  /** The replica in use, or being connected to (its index in the URLs given; 0 before the first). */
  get index() {
    return Math.max(0, this.#index);
  }

  /** Whether the socket is open (messages sent now go out). */
  get isOpen() {
    return this.#ws !== null && this.#opened;
  }

  /**
   * Sends `text` if the socket is open; false if not.
   * @param {string} text
   */
  send(text) {
    if (!this.#ws || !this.#opened) return false;
    this.#ws.send(text);
    return true;
  }

  /**
   * Closes the current socket (ignoring anything more from it) and
   * reconnects; with `resync`, asking for a snapshot rather than `since`.
   * @param {{ resync?: boolean }} [options]
   */
  drop({ resync = false } = {}) {
    this.#detach();
    if (resync) this.#noSince = true;
    this.#scheduleReconnect(false);
  }

  /**
   * The server refused the token (e.g. `unauthorized` for a dispatch):
   * reconnects with a new one when `getToken` can give it.
   */
  renewToken() {
    if (!this.#token?.renewable) return this.#expired();
    this.#token.refuse();
    this.drop();
  }

  /** Closes the socket for good. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#turn++;
    globalThis.removeEventListener?.('online', this.#onOnline);
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#detach();
  }

  #detach() {
    const ws = this.#ws;
    this.#ws = null;
    this.#opened = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch { /* already closing */ }
    }
  }

  /**
   * Connects: to another replica when due (the first, or after a failure),
   * once the token is at hand (asking `getToken` for one if due).
   */
  #connect() {
    this.#timer = null;
    if (this.#closed) return;
    if (!this.#move) return this.#withToken();
    this.#move = false;
    const n = this.#urls.length;
    const start = this.#index < 0 ? 0 : (this.#index + 1) % n;
    if (!this.#probe || !this.#bases) return this.#moveTo(start);
    // Several replicas: ask each one's /ready at once, and go to the first
    // in turn that is ready and not behind, as soon as the answers tell.
    this.#hooks.status('connecting');
    const turn = ++this.#turn;
    const since = this.#hooks.since();
    /** @type {Array<ReadyAnswer | null | undefined>} */
    const answers = new Array(n).fill(undefined);
    let done = false;
    const decide = () => {
      if (done || turn !== this.#turn || this.#closed) return;
      const i = pickReplica(answers, start, since);
      if (i === null) return;
      done = true;
      this.#moveTo(i);
    };
    const probe = this.#probe;
    this.#bases.forEach((base, i) => {
      probeReady(base, probe).then((a) => { answers[i] = a; decide(); });
    });
  }

  /**
   * Connects to replica `index`, telling the owner when {@link Connection#index} changes.
   * @param {number} index
   */
  #moveTo(index) {
    const before = this.index;
    this.#index = index;
    if (index !== before) this.#hooks.replica?.(index);
    this.#withToken();
  }

  #withToken() {
    const token = this.#token?.current() ?? null;
    if (!(token instanceof Promise)) return this.#open(token);
    this.#hooks.status('connecting');
    const turn = ++this.#turn;
    token.then((t) => {
      if (turn === this.#turn && !this.#closed) this.#open(t);
    }, (e) => {
      if (turn !== this.#turn || this.#closed) return;
      this.#hooks.error({ code: 'token', message: `getToken failed: ${e instanceof Error ? e.message : e}` });
      this.#scheduleReconnect(false);
    });
  }

  /** @param {string | null} token */
  #open(token) {
    this.#turn++;
    const since = this.#noSince ? null : this.#hooks.since();
    const useSince = since !== null && since > 0;
    this.#noSince = false;
    const query = [];
    if (this.#client !== null) query.push(`client=${encodeURIComponent(this.#client)}`);
    if (useSince) query.push(`since=${since}`);
    // The code that made our state: a data view with other code answers with a snapshot.
    const version = useSince ? this.#hooks.version() : null;
    if (version !== null) query.push(`version=${encodeURIComponent(version)}`);
    if (token !== null) query.push(`token=${encodeURIComponent(token)}`);
    const base = this.#urls[this.index];
    const url = query.length ? `${base}?${query.join('&')}` : base;
    this.#hooks.status('connecting');
    /** @type {SocketLike} */
    let ws;
    try { ws = new this.#WebSocket(url); } catch (e) {
      this.#hooks.error({ code: 'connect', message: String(e instanceof Error ? e.message : e) });
      this.#move = true;
      this.#scheduleReconnect(useSince);
      return;
    }
    this.#ws = ws;
    this.#opened = false;
    ws.onopen = () => {
      if (ws !== this.#ws) return;
      this.#opened = true;
      this.#attempt = 0;
      this.#sinceFailures = 0;
      this.#failures = 0;
      this.#hooks.status('open');
    };
    ws.onmessage = (ev) => { if (ws === this.#ws) this.#hooks.message(ev.data); };
    ws.onerror = () => {}; // onclose follows
    ws.onclose = (ev) => {
      if (ws !== this.#ws) return;
      const failed = !this.#opened;
      this.#ws = null;
      this.#opened = false;
      // A refused upgrade (401 for an expired token) looks like any failed
      // connection: a token at its expiry is taken for the cause, and after
      // a few failures in a row (a clock far off, a new key) it is renewed anyway.
      const refused = ev?.code === TOKEN_EXPIRED_CLOSE
        || (failed && this.#token !== null && this.#token.expiring);
      if (refused) this.#expired();
      else if (failed && ++this.#failures % RENEW_AFTER_FAILURES === 0) this.#token?.refuse();
      // A socket that failed or was closed by the server: the next replica
      // in turn (or the best one /ready names) is tried next.
      this.#move = true;
      this.#scheduleReconnect(failed && useSince && !refused);
    };
  }

  /** The token expired: the next connection asks for another, or, without `getToken`, the owner hears it once. */
  #expired() {
    if (this.#token?.renewable) return this.#token.refuse();
    if (this.#reportedExpiry) return;
    this.#reportedExpiry = true;
    this.#hooks.error({ code: 'unauthorized', message: 'the access token has expired; connect with getToken to renew it' });
  }

  /**
   * Reconnects after a back-off delay. After two failed connections with
   * `since` in a row per replica (e.g. the server restarted with a shorter
   * log; with several replicas, each was tried twice: one behind the client
   * refuses `since` with a 400 that the browser cannot tell from a failed
   * connection), the next asks for a snapshot.
   * @param {boolean} failedWithSince
   */
  #scheduleReconnect(failedWithSince) {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#turn++;
    if (this.#closed) return;
    if (failedWithSince && ++this.#sinceFailures >= 2 * this.#urls.length) { this.#noSince = true; this.#sinceFailures = 0; }
    this.#hooks.status('offline');
    this.#timer = setTimeout(() => this.#connect(), backoffDelay(this.#attempt++, this.#backoff));
  }
}
