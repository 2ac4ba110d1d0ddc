// The WebSocket to one view's stream: connecting with `client`, `since` and
// the access `token`, reconnecting with exponential back-off and jitter (at
// once when the browser says it is back online), renewing the token when the
// server closes for its expiry, and falling back to a fresh snapshot when
// resuming with `since` keeps failing. The server's pings are WebSocket
// control frames, answered by the browser (or Node's WebSocket) without any
// code here.

/** @typedef {'connecting' | 'open' | 'offline'} ConnectionStatus */

/**
 * What a connection tells its owner.
 * @typedef {object} ConnectionHooks
 * @property {() => number | null} since The seq to resume after (`since=`), or null for a snapshot.
 * @property {(status: ConnectionStatus) => void} status Called at every change (also when repeated).
 * @property {(data: string) => void} message A text message of the current socket.
 * @property {(error: { code: string, message: string }) => void} error A socket that cannot even be made.
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
 * `http(s)://host/base/` and a view name: the view's stream URL without its
 * query, `ws(s)://host/base/views/<view>/stream`. Relative URLs work in a page.
 * @param {string | undefined} url
 * @param {string} view
 */
export function streamUrl(url, view) {
  const base = new URL(url ?? '', globalThis.location?.href);
  const ws = base.href.replace(/[?#].*$/, '').replace(/\/+$/, '').replace(/^http/, 'ws');
  return `${ws}/views/${encodeURIComponent(view)}/stream`;
}

/** One view's stream socket, reconnected until `close()`. */
export class Connection {
  /** @type {string} */
  #url;
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
   * @param {string} url the stream URL (see {@link streamUrl})
   * @param {{ WebSocket: new (url: string) => SocketLike, backoff: Backoff, token?: Token | null }} options
   * @param {ConnectionHooks} hooks
   */
  constructor(url, { WebSocket, backoff, token = null }, hooks) {
    this.#url = url;
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

  /** Connects, once the token is at hand (asking `getToken` for one if due). */
  #connect() {
    this.#timer = null;
    if (this.#closed) return;
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
    if (token !== null) query.push(`token=${encodeURIComponent(token)}`);
    const url = query.length ? `${this.#url}?${query.join('&')}` : this.#url;
    this.#hooks.status('connecting');
    /** @type {SocketLike} */
    let ws;
    try { ws = new this.#WebSocket(url); } catch (e) {
      this.#hooks.error({ code: 'connect', message: String(e instanceof Error ? e.message : e) });
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
   * `since` in a row (e.g. the server restarted with a shorter log), the
   * next asks for a snapshot.
   * @param {boolean} failedWithSince
   */
  #scheduleReconnect(failedWithSince) {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#turn++;
    if (this.#closed) return;
    if (failedWithSince && ++this.#sinceFailures >= 2) { this.#noSince = true; this.#sinceFailures = 0; }
    this.#hooks.status('offline');
    this.#timer = setTimeout(() => this.#connect(), backoffDelay(this.#attempt++, this.#backoff));
  }
}
