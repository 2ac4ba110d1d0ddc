// The data view's API as the history page reads it: JSON over fetch with
// the token from the page's link (#token=…) as `Authorization: Bearer`,
// numbers kept as written, and errors people can read.

/** The token in the page's URL fragment (never sent to a server as part of the URL). */
export const token = new URLSearchParams(location.hash.slice(1)).get('token') || null;

/** An error answer: HTTP status (0 when unreachable), code, message, and for `forbidden` the right lacked. */
export class ApiError extends Error {
  constructor(status, code, message, right = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.right = right;
  }
}

/**
 * A number as the server wrote it, where a JavaScript number would change
 * it (integers beyond 2^53, exponents): shown and compared by its text.
 */
export class Raw {
  constructor(text) { this.text = text; }
  toJSON() { return this.text; }
  toString() { return this.text; }
}

/** JSON.parse that keeps numbers a double would change as {@link Raw} (where the browser gives the source text). */
export function parse(text) {
  return JSON.parse(text, function (key, value, context) {
    if (typeof value === 'number' && context?.source !== undefined && String(value) !== context.source) {
      return new Raw(context.source);
    }
    return value;
  });
}

/** JSON text of a value that may hold {@link Raw} numbers. */
export function stringify(value, space) {
  const marks = [];
  const text = JSON.stringify(value, (k, v) => {
    if (v instanceof Raw) { marks.push(v.text); return `\u0000raw${marks.length - 1}\u0000`; }
    return v;
  }, space);
  return text === undefined ? 'undefined' : text.replace(/"\u0000raw(\d+)\u0000"/g, (_, i) => marks[Number(i)]);
}

/** GET `path` as JSON; throws {@link ApiError}. */
export async function getJson(path, { signal } = {}) {
  let res;
  try {
    res = await fetch(path, { headers: token ? { authorization: `Bearer ${token}` } : {}, cache: 'no-store', signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'unreachable', `cannot reach the data view (${e.message})`);
  }
  const text = await res.text();
  if (!res.ok) {
    let error = {};
    try { error = JSON.parse(text).error ?? {}; } catch { /* not JSON: use the status */ }
    throw new ApiError(res.status, error.code ?? `http_${res.status}`, error.message ?? res.statusText, error.right ?? null);
  }
  return parse(text);
}

/** A page of `GET /history` with these filters. */
export function history({ from, to = null, limit = 100, type = '', client = '' }, options) {
  const q = new URLSearchParams({ from: String(from), limit: String(limit) });
  if (to !== null) q.set('to', String(to));
  if (type) q.set('type', type);
  if (client) q.set('client', client);
  return getJson(`/history?${q}`, options);
}

/** What to tell a person about `e`. */
export function explain(e) {
  if (!(e instanceof ApiError)) return `Something went wrong: ${e?.message ?? e}`;
  switch (e.status) {
    case 0:
      return `The data view cannot be reached: ${e.message}.`;
    case 401:
      return token
        ? `The token in this page's link was refused (${e.message}). Open the page with a new #token= link.`
        : 'This data view needs an access token: open the page with a #token=… link (nodb up prints one; nodb token --log --read "*" mints one).';
    case 403:
      if (e.right === 'log') {
        return 'This token lacks the log right, which the history needs: open the page with a token that has it (nodb token --log --read "*").';
      }
      return `This token may not do this (${e.right ?? 'forbidden'}): ${e.message}`;
    case 503:
      return `The data view is unavailable right now: ${e.message}. Retry in a moment.`;
    default:
      return `${e.status} ${e.code}: ${e.message}`;
  }
}
