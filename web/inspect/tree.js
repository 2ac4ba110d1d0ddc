// A JSON value as a collapsible tree, built lazily: a container's children
// are made when it is first opened, and at most CHUNK at a time, so a view
// of a million entries opens as fast as a small one. The paths a patch
// touched are opened and marked. Also the patch itself, op by op.

import { Raw, stringify } from './api.js';

/** Children shown at a time; "show more" adds as many again. */
const CHUNK = 200;
/** Values longer than this (as JSON) are cut, with a button for the rest. */
const LONG = 2000;

/** RFC 6901: `~` → `~0`, `/` → `~1`. */
export function pointerToken(key) {
  return String(key).replaceAll('~', '~0').replaceAll('/', '~1');
}

/** The pointers of every ancestor of `pointer` ("" included) and the pointer itself. */
function withAncestors(pointer) {
  const out = [''];
  let at = 0;
  while ((at = pointer.indexOf('/', at + 1)) !== -1) out.push(pointer.slice(0, at));
  if (pointer !== '') out.push(pointer);
  return out;
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function isContainer(v) {
  return v !== null && typeof v === 'object' && !(v instanceof Raw);
}

function kindOf(v) {
  if (v === null) return 'null';
  if (v instanceof Raw || typeof v === 'number') return 'num';
  if (typeof v === 'string') return 'str';
  if (typeof v === 'boolean') return 'bool';
  return Array.isArray(v) ? 'arr' : 'obj';
}

/** A value's JSON text, cut when long, with a button that shows the rest. */
export function valueText(value, className = 'val') {
  const text = stringify(value);
  const code = el('code', `${className} ${kindOf(value)}`);
  if (text.length <= LONG) {
    code.textContent = text;
    return code;
  }
  code.textContent = `${text.slice(0, LONG)}…`;
  const more = el('button', 'btn-link', `show all ${text.length.toLocaleString()} characters`);
  more.type = 'button';
  more.addEventListener('click', () => { code.textContent = text; more.remove(); });
  const span = el('span');
  span.append(code, ' ', more);
  return span;
}

/**
 * Renders `value` into `container` as a tree. `touched`: pointers a patch
 * changed, opened (with their ancestors) and marked.
 */
export function renderTree(container, value, touched = []) {
  const open = new Set();
  const marked = new Set(touched);
  for (const p of touched) for (const a of withAncestors(p)) open.add(a);
  container.replaceChildren(node('state', '', value, { open, marked }, true));
}

function node(label, pointer, value, ctx, root = false) {
  if (!isContainer(value)) {
    const leaf = el('div', 'leaf');
    leaf.dataset.path = pointer;
    if (ctx.marked.has(pointer)) leaf.classList.add('changed');
    leaf.append(el('span', 'key', label), el('span', 'colon', ': '), valueText(value));
    return leaf;
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  const details = el('details', 'branch');
  details.dataset.path = pointer;
  if (ctx.marked.has(pointer)) details.classList.add('changed');
  const summary = el('summary');
  const size = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
  summary.append(el('span', root ? 'key root' : 'key', label), el('span', 'size muted', ` ${size}`));
  details.append(summary);
  const children = el('div', 'children');
  details.append(children);
  let shown = 0;
  // Children made out of order (touched ones beyond the first chunk).
  const early = new Set();
  const more = el('button', 'btn-link more');
  more.type = 'button';
  const showMore = () => {
    const end = Math.min(entries.length, shown + CHUNK);
    const frag = document.createDocumentFragment();
    for (; shown < end; shown++) {
      if (early.has(shown)) continue;
      const [k, v] = entries[shown];
      frag.append(node(String(k), `${pointer}/${pointerToken(k)}`, v, ctx));
    }
    more.remove();
    children.append(frag);
    if (shown < entries.length) {
      more.textContent = `show ${Math.min(CHUNK, entries.length - shown)} more of ${(entries.length - shown).toLocaleString()}`;
      children.append(more);
    }
  };
  more.addEventListener('click', showMore);
  // Children are made on first opening; touched ones even when far down.
  const fill = () => {
    if (shown > 0 || entries.length === 0) return;
    showMore();
    for (const [i, [k]] of entries.entries()) {
      if (i < shown) continue;
      const p = `${pointer}/${pointerToken(k)}`;
      if (ctx.open.has(p) || ctx.marked.has(p)) {
        early.add(i);
        more.before(node(String(k), p, entries[i][1], ctx));
      }
    }
  };
  details.addEventListener('toggle', () => { if (details.open) fill(); });
  if (root || ctx.open.has(pointer)) {
    details.open = true;
    fill();
  }
  return details;
}

/** Renders a patch's ops into the list `container`. */
export function renderPatch(container, ops) {
  const items = ops.map((op) => {
    const li = el('li', `op op-${op.op}`);
    li.dataset.op = op.op;
    li.dataset.path = op.path;
    li.append(el('span', 'op-name', op.op), ' ', el('code', 'path', op.path === '' ? '(root)' : op.path));
    if (op.from !== undefined) li.append(el('span', 'muted', ' from '), el('code', 'path', op.from));
    if ('value' in op) li.append(' ', valueText(op.value, 'value'));
    return li;
  });
  container.replaceChildren(...items);
}

/** The pointers a patch touched, for {@link renderTree}: a removed or appended path marks its container. */
export function touchedBy(ops, max = 200) {
  const out = [];
  for (const op of ops.slice(0, max)) {
    let p = op.path;
    if (op.op === 'remove' || p.endsWith('/-')) p = p.slice(0, p.lastIndexOf('/'));
    out.push(p);
  }
  return out;
}
