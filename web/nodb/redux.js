// Redux adapters, none of which imports Redux:
// - createReduxStore: a Redux `Store` over a nodb store (for react-redux's
//   `<Provider store>` in an app whose whole state is one view);
// - nodbMiddleware: sends chosen actions of an ordinary Redux (Toolkit)
//   store to the server, leaving thunks and RTK's lifecycle actions alone;
// - createNodbSlice: a reducer and a middleware that keep one slice of a
//   Redux (Toolkit) store equal to a nodb view;
// - dispatched: the ack and applied promises of an action sent by the first two.
// A Redux `dispatch` returns the action, so the promises of `Store.dispatch`
// are kept aside (and their rejections always handled: they are reported by
// the store's `rejected` and `error` events, and to `onError`).

/** @import { Dispatched, DispatchError, NodbSlice, OnDispatchError, ReduxStore, RejectedError } from '../nodb.js' */

import { isObj } from './patch.js';
import { prepareAction } from './store.js';

/**
 * The part of a nodb store the adapters use.
 * @template S
 * @typedef {object} StoreLike
 * @property {() => S} getState
 * @property {number} [seq]
 * @property {(listener: () => void) => () => void} subscribe
 * @property {(type: string, payload?: unknown, meta?: Record<string, string>) => Dispatched} dispatch
 */

/** @typedef {OnDispatchError} OnError */

/** Where Redux and RxJS look for an observable (Redux's `$$observable`). */
const OBSERVABLE = /** @type {typeof Symbol.observable} */ (
  (typeof Symbol === 'function' && /** @type {any} */ (Symbol).observable) || '@@observable'
);

/** The promises of each action object sent through an adapter. @type {WeakMap<object, Dispatched>} */
const results = new WeakMap();

/**
 * The promises of `action` (the very object given to a facade's or a
 * middleware's `dispatch`): resolves with its seq once acknowledged;
 * `.applied` once the state includes it. Undefined for an action that was
 * not sent to the server.
 * @param {object} action
 * @returns {Dispatched | undefined}
 */
export function dispatched(action) {
  return isObj(action) ? results.get(action) : undefined;
}

/**
 * What is wrong with a dispatched value that is not a plain action, or null.
 * @param {unknown} action
 * @param {string} who
 */
function notAnAction(action, who) {
  if (typeof action === 'function') {
    return `${who}: a thunk (a function) was dispatched, but this store only sends plain actions to the server. `
      + 'Dispatch thunks on a Redux Toolkit store (configureStore) that uses nodbMiddleware or createNodbSlice.';
  }
  if (!isObj(action)) return `${who}: actions must be plain objects, not ${action === null ? 'null' : typeof action}`;
  if (typeof action.type !== 'string' || action.type === '') return `${who}: an action needs a non-empty string type`;
  return null;
}

/**
 * Sends `action` with `store.dispatch`, synchronously throwing what cannot
 * be sent; keeps the promises for {@link dispatched} and reports a failure
 * once, to `onError`.
 * @param {StoreLike<any>} store
 * @param {Record<string, any>} action
 * @param {string} who
 * @param {OnError | undefined} onError
 * @returns {Dispatched}
 */
function send(store, action, who, onError) {
  let prepared;
  try { prepared = prepareAction(action.type, action.payload, action.meta); } catch (e) {
    throw Object.assign(new TypeError(`${who}: cannot send ${action.type} to the server: ${e instanceof Error ? e.message : e}`), { code: 'invalid_action' });
  }
  const sent = store.dispatch(prepared.type, prepared.payload, prepared.meta);
  sent.catch(() => {}); // `.applied` rejects too, with the same error or a later one
  sent.applied.catch((/** @type {DispatchError | RejectedError} */ e) => {
    if (onError) onError(e, /** @type {{ type: string }} */ (action));
  });
  results.set(action, sent);
  return sent;
}

/**
 * A Redux `Store` over a nodb store (for react-redux's `<Provider>`):
 * `dispatch(action)` sends a plain action to the server and returns it (its
 * promises: {@link dispatched}, or use `dispatchAsync`); thunks and other
 * non-actions throw at once. `replaceReducer` throws: the reducers are the
 * server's.
 * @template S
 * @param {StoreLike<S>} store
 * @param {{ onError?: OnError }} [options]
 * @returns {ReduxStore<S>}
 */
export function createReduxStore(store, { onError } = {}) {
  const who = 'createReduxStore';
  /** @param {any} action */
  const check = (action) => {
    const problem = notAnAction(action, who);
    if (problem) throw new TypeError(problem);
    return /** @type {Record<string, any> & { type: string }} */ (action);
  };
  const getState = () => store.getState();
  /** @param {() => void} listener */
  const subscribe = (listener) => {
    if (typeof listener !== 'function') throw new TypeError(`${who}: subscribe needs a function`);
    return store.subscribe(listener);
  };
  const observable = {
    /** @param {{ next?: (state: S) => void } | ((state: S) => void)} observer */
    subscribe(observer) {
      const next = typeof observer === 'function' ? observer : observer?.next?.bind(observer);
      if (typeof observer !== 'function' && !isObj(observer)) throw new TypeError(`${who}: an observer must be an object`);
      const emit = () => next?.(store.getState());
      emit();
      return { unsubscribe: store.subscribe(emit) };
    },
    [OBSERVABLE]() { return this; },
  };
  // (cast: a computed `[OBSERVABLE]` key is typed as any symbol, not as `Symbol.observable`)
  return /** @type {ReduxStore<S>} */ (/** @type {unknown} */ ({
    /**
     * @template {{ type: string }} A
     * @param {A} action
     * @returns {A}
     */
    dispatch(action) {
      send(store, check(action), who, onError);
      return action;
    },
    /**
     * Sends `action` and returns its promises.
     * @param {{ type: string, payload?: unknown, meta?: unknown }} action
     * @returns {Dispatched}
     */
    dispatchAsync(action) {
      return send(store, check(action), who, onError);
    },
    getState,
    subscribe,
    /** @returns {never} */
    replaceReducer() {
      throw new Error(`${who}: the state of a nodb store is made by the server's reducers; there is no reducer to replace`);
    },
    [OBSERVABLE]() { return observable; },
  }));
}

/**
 * @typedef {(type: string, action: any) => boolean} Matcher
 * @typedef {{ types?: readonly string[], match?: Matcher, onError?: OnError }} MiddlewareOptions
 */

/**
 * Whether `action` is one of the lifecycle actions of Redux Toolkit's
 * `createAsyncThunk` (`…/pending`, `…/fulfilled`, `…/rejected`, with a
 * `meta.requestId` and `meta.requestStatus`): those are the app's own.
 * @param {Record<string, any>} action
 */
export function isLifecycleAction(action) {
  const meta = action.meta;
  return /\/(pending|fulfilled|rejected)$/.test(action.type)
    && isObj(meta) && typeof meta.requestId === 'string' && typeof meta.requestStatus === 'string';
}

/** Actions created by createNodbSlice, which its reducer takes and nothing sends. @type {WeakSet<object>} */
const syncActions = new WeakSet();

/**
 * Redux middleware sending the plain actions it matches to the nodb server
 * instead of passing them on, and returning the action ({@link dispatched}
 * gives its promises). It never matches thunks and other non-objects, Redux's
 * own `@@…` actions, createNodbSlice's actions, or RTK's lifecycle actions
 * (see {@link isLifecycleAction}); of the rest it matches `options.types`
 * (exact types, or prefixes ending with "/"), or those `options.match`
 * accepts, or, with neither, every one. A matched action that cannot be sent
 * (a payload that is not JSON, a meta that is not an object of strings)
 * throws a TypeError saying why, at once.
 * @param {StoreLike<any>} store
 * @param {MiddlewareOptions | readonly string[] | Matcher} [options]
 */
export function nodbMiddleware(store, options = {}) {
  /** @type {MiddlewareOptions} */
  const o = typeof options === 'function' ? { match: options } : Array.isArray(options) ? { types: options } : /** @type {MiddlewareOptions} */ (options);
  if (o.types != null && o.match != null) throw new TypeError('nodbMiddleware: give types or match, not both');
  /** @type {Matcher} */
  const test = typeof o.match === 'function' ? o.match : o.types != null ? byTypes(o.types) : () => true;
  const who = 'nodbMiddleware';
  /** @param {unknown} _api */
  return (_api) => (/** @type {(action: unknown) => unknown} */ next) => (/** @type {unknown} */ action) => {
    if (notAnAction(action, who) !== null) return next(action);
    const a = /** @type {Record<string, any> & { type: string }} */ (action);
    if (a.type.startsWith('@@') || syncActions.has(a) || isLifecycleAction(a) || !test(a.type, a)) return next(action);
    send(store, a, who, o.onError);
    return action;
  };
}

/**
 * A matcher of exact types, and of prefixes ending with "/".
 * @param {readonly string[]} types
 * @returns {Matcher}
 */
const byTypes = (types) => (t) => types.some((p) => (p.endsWith('/') ? t.startsWith(p) : t === p));

/**
 * A slice of a Redux (Toolkit) store kept equal to a nodb view: mount
 * `reducer` under `name` and add `middleware`; each change of the view is
 * dispatched as `synced` (`nodb/<name>/synced`, the view's state as its
 * payload, the very object, so unchanged subtrees keep their identity, and
 * the seq it reflects as `meta.seq`, which the store's Redux DevTools show).
 * @template S
 * @template {string} [Name='nodb']
 * @param {StoreLike<S>} store
 * @param {{ name?: Name }} [options]
 * @returns {NodbSlice<S, Name>}
 */
export function createNodbSlice(store, options = {}) {
  const name = /** @type {Name} */ (options.name ?? 'nodb');
  const type = `nodb/${name}/synced`;
  /**
   * @param {S} state
   * @param {number} [seq]
   */
  const synced = (state, seq) => {
    const action = seq == null ? { type, payload: state } : { type, payload: state, meta: { seq } };
    syncActions.add(action);
    return action;
  };
  synced.type = type;
  /**
   * @param {{ type: string }} action
   * @returns {action is { type: string, payload: S }}
   */
  synced.match = (action) => isObj(action) && action.type === type;
  return {
    name,
    synced,
    /**
     * @param {S | undefined} state
     * @param {{ type: string, payload?: unknown }} action
     * @returns {S}
     */
    reducer(state, action) {
      if (action.type === type) return /** @type {S} */ (action.payload);
      return state === undefined ? store.getState() : state;
    },
    /**
     * Subscribes to the nodb store for the life of the Redux store.
     * @param {{ dispatch: (action: any) => any }} api
     */
    middleware(api) {
      let last = store.getState(); // what the reducer started from, this very tick
      store.subscribe(() => {
        const state = store.getState();
        if (state === last) return;
        last = state;
        api.dispatch(synced(state, store.seq));
      });
      return (/** @type {(action: unknown) => unknown} */ next) => (/** @type {unknown} */ action) => next(action);
    },
    /** @param {{ [K in Name]: S }} root */
    selectState: (root) => root[name],
  };
}
