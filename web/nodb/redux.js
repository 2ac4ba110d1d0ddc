// Redux adapters: a Redux-store facade over a nodb store (for react-redux's
// `<Provider store>`), and a middleware that sends chosen actions of an
// ordinary Redux store to the server.

/** @import { Dispatched, Json, NodbAction } from '../nodb.js' */

/**
 * The part of a nodb store the adapters use.
 * @template S
 * @typedef {object} StoreLike
 * @property {() => S} getState
 * @property {(listener: () => void) => () => void} subscribe
 * @property {(type: string, payload?: Json, meta?: Record<string, string>) => Dispatched} dispatch
 */

/**
 * A Redux-store facade over a nodb store, for react-redux's `<Provider>`:
 * `dispatch({type, payload, meta})` sends the action to the server and
 * returns the promise of `store.dispatch` (resolving with its seq).
 * @template S
 * @param {StoreLike<S>} store
 * @returns {{ getState(): S, subscribe(listener: () => void): () => void, dispatch(action: NodbAction): Dispatched }}
 */
export function createReduxStore(store) {
  return {
    getState: () => store.getState(),
    subscribe: (listener) => store.subscribe(listener),
    dispatch: (action) => store.dispatch(action.type, action.payload, action.meta),
  };
}

/**
 * @typedef {(type: string, action: any) => boolean} Matcher
 * @typedef {{ types: readonly string[], match?: never } | { match: Matcher, types?: never } | readonly string[] | Matcher} Which
 */

/**
 * Redux middleware sending the actions whose type matches to the nodb server
 * (returning the promise of `store.dispatch`) instead of passing them on.
 * `types`: exact types, or prefixes ending with "/"; `match`: a predicate.
 * @param {StoreLike<any>} store
 * @param {Which} [which]
 * @returns {(api: any) => (next: (action: any) => any) => (action: any) => any}
 */
export function nodbMiddleware(store, which = { types: [] }) {
  /** @type {Matcher} */
  let test;
  if (typeof which === 'function') test = which;
  else if (Array.isArray(which)) test = byTypes(which);
  else {
    const { types = [], match } = /** @type {{ types?: readonly string[], match?: Matcher }} */ (which);
    test = typeof match === 'function' ? match : byTypes(types);
  }
  return () => (next) => (action) => (action && typeof action.type === 'string' && test(action.type, action)
    ? store.dispatch(action.type, action.payload, action.meta)
    : next(action));
}

/**
 * A matcher of exact types, and of prefixes ending with "/".
 * @param {readonly string[]} types
 * @returns {Matcher}
 */
const byTypes = (types) => (t) => types.some((p) => (p.endsWith('/') ? t.startsWith(p) : t === p));
