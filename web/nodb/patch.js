// JSON Patch (RFC 6902), applied immutably with structural sharing: the
// document is never mutated, and every subtree off the patched paths keeps
// its identity, so memoized selectors and `React.memo` keep working.

/** @import { PatchOp } from '../nodb.js' */

/**
 * @param {object} o
 * @param {PropertyKey} k
 */
const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

/**
 * @param {unknown} v
 * @returns {v is Record<string, any>}
 */
export const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Sets an own data property, even for keys such as `__proto__`.
 * @param {Record<string, any> | any[]} o
 * @param {string | number} k
 * @param {unknown} v
 */
function setKey(o, k, v) {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
  else /** @type {Record<string | number, unknown>} */ (o)[k] = v;
}

/**
 * Deep equality of JSON values (numbers compared numerically, key order ignored).
 * @param {any} a
 * @param {any} b
 * @returns {boolean}
 */
function jsonEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => has(b, k) && jsonEqual(a[k], b[k]));
}

/**
 * Splits a JSON Pointer (RFC 6901) into unescaped tokens.
 * @param {unknown} p
 * @returns {string[]}
 */
function parsePointer(p) {
  if (typeof p !== 'string') throw new Error(`a pointer must be a string, not ${JSON.stringify(p)}`);
  if (p === '') return [];
  if (p[0] !== '/') throw new Error(`pointer ${JSON.stringify(p)} must start with "/"`);
  return p.slice(1).split('/').map((t) => {
    if (/~[^01]|~$/.test(t)) throw new Error(`bad escape in pointer ${JSON.stringify(p)}`);
    return t.replace(/~1/g, '/').replace(/~0/g, '~');
  });
}

/**
 * The array index a token names; `max` is the largest allowed.
 * @param {unknown[]} arr
 * @param {string} tok
 * @param {number} max
 */
function arrayIndex(arr, tok, max) {
  if (!/^(0|[1-9][0-9]*)$/.test(tok)) throw new Error(`${JSON.stringify(tok)} is not an array index`);
  const i = Number(tok);
  if (i > max) throw new Error(`index ${i} is out of bounds (length ${arr.length})`);
  return i;
}

/**
 * The value at `tokens` in `doc`; throws if absent.
 * @param {unknown} doc
 * @param {string[]} tokens
 * @returns {unknown}
 */
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
 * @template T
 * @param {T} doc
 * @param {readonly PatchOp[]} ops
 * @returns {T}
 */
export function applyPatch(doc, ops) {
  if (!Array.isArray(ops)) throw new Error('a patch must be an array of operations');
  /** @typedef {Record<string, any> | any[]} Container */
  // Containers copied during this call: safe to mutate in place (copy-on-write once per patch).
  /** @type {Set<Container>} */
  let owned = new Set();
  /** @param {Container} c */
  const own = (c) => {
    if (owned.has(c)) return c;
    const copy = Array.isArray(c) ? c.slice() : { ...c }; // spread keeps an own `__proto__` key
    owned.add(copy);
    return copy;
  };
  /**
   * Rebuilds the path to the parent of `tokens`, calls fn(parent, lastToken), returns the new root.
   * @param {unknown} root
   * @param {string[]} tokens
   * @param {(parent: any, token: string) => void} fn
   * @returns {unknown}
   */
  const edit = (root, tokens, fn) => {
    /**
     * @param {unknown} node
     * @param {number} i
     * @returns {unknown}
     */
    const walk = (node, i) => {
      if (!Array.isArray(node) && !isObj(node)) throw new Error(`path /${tokens.join('/')} does not exist`);
      const t = tokens[i];
      const copy = own(node);
      if (i === tokens.length - 1) { fn(copy, t); return copy; }
      /** @type {string | number} */
      let child;
      if (Array.isArray(node)) child = arrayIndex(node, t, node.length - 1);
      else if (has(node, t)) child = t;
      else throw new Error(`path /${tokens.slice(0, i + 1).join('/')} does not exist`);
      const old = /** @type {any} */ (node)[child];
      const next = walk(old, i + 1);
      if (next !== old) setKey(copy, child, next);
      return copy;
    };
    return walk(root, 0);
  };
  /**
   * @param {unknown} root
   * @param {string[]} tokens
   * @param {unknown} value
   */
  const add = (root, tokens, value) => tokens.length === 0 ? value : edit(root, tokens, (c, t) => {
    if (Array.isArray(c)) c.splice(t === '-' ? c.length : arrayIndex(c, t, c.length), 0, value);
    else setKey(c, t, value);
  });
  /**
   * @param {unknown} root
   * @param {string[]} tokens
   */
  const remove = (root, tokens) => {
    if (tokens.length === 0) throw new Error('cannot remove the whole document');
    return edit(root, tokens, (c, t) => {
      if (Array.isArray(c)) c.splice(arrayIndex(c, t, c.length - 1), 1);
      else if (has(c, t)) delete c[t];
      else throw new Error(`path /${tokens.join('/')} does not exist`);
    });
  };
  /** @type {unknown} */
  let cur = doc;
  ops.forEach((/** @type {any} */ op, index) => {
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
      const message = e instanceof Error ? e.message : String(e);
      throw Object.assign(new Error(`patch op ${index} (${JSON.stringify(op)}) failed: ${message}`), { index, op });
    }
  });
  return /** @type {T} */ (cur);
}

/**
 * Structural sharing across a snapshot: returns `next` with every subtree
 * that is deep-equal to the one at the same place in `prev` replaced by
 * `prev`'s object, and `prev` itself when the two are equal throughout (as
 * RTK Query's `copyWithStructuralSharing` does). So after a resync nothing
 * that did not change gets a new identity, and `React.memo`, `useSelector`
 * and memoized selectors see no change. `next` must be a fresh value this
 * code owns (e.g. just parsed): its containers are reused and modified in
 * place, and it must not be shared with anything else.
 * @template T
 * @param {unknown} prev
 * @param {T} next
 * @returns {T}
 */
export function shareEqual(prev, next) {
  if (prev === next) return next;
  if (Array.isArray(next)) {
    if (!Array.isArray(prev)) return next;
    let same = prev.length === next.length;
    for (let i = 0; i < next.length; i++) {
      if (i >= prev.length) { same = false; break; }
      const v = shareEqual(prev[i], next[i]);
      if (v === prev[i]) next[i] = v;
      else same = false;
    }
    return same ? /** @type {T} */ (prev) : next;
  }
  if (isObj(next)) {
    if (!isObj(prev)) return next;
    const keys = Object.keys(next);
    let same = keys.length === Object.keys(prev).length;
    for (const k of keys) {
      if (!has(prev, k)) { same = false; continue; }
      const v = shareEqual(prev[k], next[k]);
      if (v === prev[k]) setKey(next, k, v);
      else same = false;
    }
    return same ? /** @type {T} */ (prev) : next;
  }
  return next;
}
