// The WebSocket to one view's stream: connecting with `client` and `since`,
// reconnecting with exponential back-off and jitter (at once when the browser
// says it is back online), and falling back to a fresh snapshot when resuming
// with `since` keeps failing. The server's pings are WebSocket control frames,
// answered by the browser (or Node's WebSocket) without any code here.

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
   * @param {{ WebSocket: new (url: string) => SocketLike, backoff: Backoff }} options
   * @param {ConnectionHooks} hooks
   */
  constructor(url, { WebSocket, backoff }, hooks) {
    this.#url = url;
    this.#WebSocket = WebSocket;
    this.#backoff = backoff;
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

  /** Closes the socket for good. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
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

  #connect() {
    this.#timer = null;
    if (this.#closed) return;
    const since = this.#noSince ? null : this.#hooks.since();
    const useSince = since !== null && since > 0;
    this.#noSince = false;
    const query = [];
    if (this.#client !== null) query.push(`client=${encodeURIComponent(this.#client)}`);
    if (useSince) query.push(`since=${since}`);
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
      this.#hooks.status('open');
    };
    ws.onmessage = (ev) => { if (ws === this.#ws) this.#hooks.message(ev.data); };
    ws.onerror = () => {}; // onclose follows
    ws.onclose = () => {
      if (ws !== this.#ws) return;
      const failed = !this.#opened;
      this.#ws = null;
      this.#opened = false;
      this.#scheduleReconnect(failed && useSince);
    };
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
    if (this.#closed) return;
    if (failedWithSince && ++this.#sinceFailures >= 2) { this.#noSince = true; this.#sinceFailures = 0; }
    this.#hooks.status('offline');
    this.#timer = setTimeout(() => this.#connect(), backoffDelay(this.#attempt++, this.#backoff));
  }
}
