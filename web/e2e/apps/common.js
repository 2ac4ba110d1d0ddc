// What the browser test apps share: render counters, the record of
// unhandled rejections, and the stock view's helpers. Bundled into each app
// by web/e2e/react.test.js (esbuild).

/** Renders per component and product since the last reset. */
export const renders = {};
export function countRender(table, product) {
  renders[table] ??= {};
  renders[table][product] = (renders[table][product] ?? 0) + 1;
}

export const unhandled = [];
window.addEventListener('unhandledrejection', (e) => unhandled.push(String(e.reason?.stack ?? e.reason)));

/** The products of the stock view, sorted (a string: stable for useSelector). */
export const productNames = (stock) => Object.keys(stock?.products ?? {}).sort().join(',');

/** What the test reads and drives through `window.app`. */
export function expose(extra) {
  window.app = {
    renders,
    unhandled,
    resetRenders: () => { for (const k of Object.keys(renders)) delete renders[k]; },
    ...extra,
  };
}

/** The element to render into: the page's body, emptied (the document is the demo's page). */
export function root() {
  const div = document.createElement('div');
  div.id = 'root';
  document.body.replaceChildren(div);
  return div;
}
