// What the store tests share: a fake WebSocket server side, an in-memory
// Storage, fake Web Locks, unsigned JWTs, and waiting helpers. Not a test
// file itself (the runner takes test/*.test.js).

/** A fake server side: `WS` is the WebSocket class to inject, `sockets` every socket made. */
export function fakeServer({ onSend } = {}) {
  const sockets = [];
  class WS {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.readyState = 0;
      this.closed = false;
      sockets.push(this);
    }
    send(text) {
      if (this.readyState !== 1) throw new Error('send on a socket that is not open');
      const m = JSON.parse(text);
      onSend?.(m, this);
      this.sent.push(m);
    }
    close() {
      this.readyState = 3;
      this.closed = true;
    }
    // What the server (the test) does:
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    deliver(...msgs) {
      for (const m of msgs) this.onmessage?.({ data: JSON.stringify(m) });
    }
    /** The connection fails or is lost (1006), or the server closes it with `code`. */
    drop(code = 1006, reason = '') {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    get params() {
      return new URL(this.url).searchParams;
    }
  }
  return {
    WS,
    sockets,
    get last() {
      return sockets[sockets.length - 1];
    },
  };
}

export function memoryStorage() {
  const map = new Map();
  return {
    map,
    getItem: (k) => (map.has(k) ? map.get(k) : null),
    setItem: (k, v) => void map.set(k, String(v)),
    removeItem: (k) => void map.delete(k),
    json: (k) => JSON.parse(map.get(k) ?? 'null'),
  };
}

/** Web Locks (navigator.locks) with just what nodb uses. */
export function fakeLocks() {
  const held = new Set();
  return {
    held,
    async request(name, opts, cb) {
      if (typeof opts === 'function') [cb, opts] = [opts, {}];
      if (held.has(name)) {
        if (opts.ifAvailable) return cb(null);
        while (held.has(name)) await sleep(1);
      }
      held.add(name);
      try {
        return await cb({ name, mode: 'exclusive' });
      } finally {
        held.delete(name);
      }
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(cond, what = 'condition') {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await sleep(1);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Whether a promise has settled yet (after letting microtasks run). */
export async function settled(p) {
  let done = false;
  p.then(() => { done = true; }, () => { done = true; });
  await sleep(0);
  return done;
}

export const fast = { initialMs: 1, maxMs: 4 };


/** Base64url of a string's UTF-8 bytes, without padding. */
const b64url = (text) => Buffer.from(text, 'utf8').toString('base64url');

/**
 * An (unsigned) JWT with `claims`: the client only reads its payload. `exp`
 * in seconds from now when `ttl` is given.
 */
export function jwt(claims, { ttl } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = ttl === undefined ? claims : { iat: now, exp: now + ttl, ...claims };
  return `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(body))}.c2lnbmF0dXJl`;
}

/**
 * A recording fake of the Redux DevTools extension, installed as
 * `globalThis.__REDUX_DEVTOOLS_EXTENSION__` (`uninstall()` removes it). It
 * has the documented `connect(options)` interface; `instances` holds each
 * connection's `options` and `calls` (['init', state], ['send', action,
 * state], ['error', message], ['unsubscribe']), and `tell(message)` sends a
 * message from the tool to its subscribers.
 */
export function fakeDevtools() {
  const instances = [];
  globalThis.__REDUX_DEVTOOLS_EXTENSION__ = {
    connect(options) {
      const listeners = new Set();
      const instance = {
        options,
        calls: [],
        listeners,
        tell: (message) => { for (const l of [...listeners]) l(message); },
        get sends() { return this.calls.filter((c) => c[0] === 'send'); },
      };
      instances.push(instance);
      return {
        init: (state) => instance.calls.push(['init', state]),
        send: (action, state) => instance.calls.push(['send', action, state]),
        error: (message) => instance.calls.push(['error', message]),
        subscribe: (listener) => { listeners.add(listener); return () => listeners.delete(listener); },
        unsubscribe: () => { listeners.clear(); instance.calls.push(['unsubscribe']); },
      };
    },
  };
  return {
    instances,
    get last() { return instances[instances.length - 1]; },
    uninstall: () => { delete globalThis.__REDUX_DEVTOOLS_EXTENSION__; },
  };
}

/**
 * A fake `fetch` recording each request (`url`, `headers`, `at`) and
 * answering with `answer(url, request)`: `{ status, body }`, or a promise of
 * it, or a thrown error (a network failure).
 */
export function fakeFetch(answer) {
  const requests = [];
  const fetch = async (url, init = {}) => {
    const request = { url: new URL(url), headers: init.headers ?? {}, at: Date.now() };
    requests.push(request);
    const { status = 200, body = null } = await answer(request.url, request);
    return { status, ok: status >= 200 && status < 300, json: async () => body };
  };
  return { fetch, requests };
}

/**
 * An answer of `GET /history` from `log` (seq -> action) for the request's
 * `from`, `to` and `limit`, in the endpoint's shape.
 */
export function historyAnswer(log, url) {
  const from = Number(url.searchParams.get('from'));
  const to = Number(url.searchParams.get('to'));
  const limit = Number(url.searchParams.get('limit'));
  const actions = [];
  let next = null;
  for (let seq = from; seq <= to; seq++) {
    if (!log.has(seq)) continue;
    if (actions.length === limit) { next = seq; break; }
    actions.push({ seq, ...log.get(seq) });
  }
  return { status: 200, body: { head: Math.max(0, ...log.keys()), actions, next } };
}
