// TypeScript declarations for nodb.js, the browser client of nodb: its
// public API (the modules in nodb/ are its implementation). Checked against
// the implementation by `npm --prefix web run typecheck` (types-test.ts), and
// kept to the same exported names by web/test/exports.test.js.
// Wire protocol: docs/protocol.md.

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** One RFC 6902 operation. */
export type PatchOp =
  | { op: 'add'; path: string; value: Json }
  | { op: 'remove'; path: string }
  | { op: 'replace'; path: string; value: Json }
  | { op: 'move'; from: string; path: string }
  | { op: 'copy'; from: string; path: string }
  | { op: 'test'; path: string; value: Json };

/** The error `applyPatch` throws: which operation failed. */
export interface PatchError extends Error {
  /** The index of the failed operation in the patch. */
  index: number;
  /** The failed operation. */
  op: unknown;
}

/**
 * Applies RFC 6902 `ops` to `doc` and returns the new document. `doc` is never
 * mutated; every subtree not on the path of an op keeps its identity (`===`),
 * so memoized selectors and `React.memo` keep working. Throws a
 * {@link PatchError} if an operation fails (a failed `test`, a missing path,
 * a malformed op…); the patch is then atomic: nothing is returned, `doc` is as it was.
 */
export function applyPatch<T = Json>(doc: T, ops: readonly PatchOp[]): T;

/** Something like `localStorage`. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** The subset of the Web Locks API (`navigator.locks`) nodb uses. */
export interface LocksLike {
  request<T>(name: string, callback: (lock: unknown) => T | Promise<T>): Promise<T>;
  request<T>(name: string, options: { ifAvailable?: boolean }, callback: (lock: unknown | null) => T | Promise<T>): Promise<T>;
}

export interface ConnectOptions<S = Json> {
  /** The view to follow (required). */
  view: string;
  /**
   * The client id (the part of action ids before the last `:`). By default an
   * id stored in `storage` under "nodb:clients" that no other tab holds (via
   * Web Locks), or a new one: `web-` + 12 hex digits, or, with a token whose
   * `sub` names a client, `<sub>.` + 12 hex digits (one per tab; only ids of
   * that `sub` are reused). Its unacknowledged actions are adopted and re-sent.
   */
  clientId?: string;
  /**
   * An access token (a JWT from `nodb token`, or the `#token=` that
   * `nodb up --auth-key` prints) for a server with auth on. It goes in the
   * stream's URL (`token=`: browsers cannot set a WebSocket's headers). Read,
   * not verified, for `sub` (the default client id) and `exp`. Without
   * `getToken` it is never renewed: once it expires the store stays offline
   * and emits an `unauthorized` error.
   */
  token?: string;
  /**
   * Gives a (new) access token. Called before the first connection (unless
   * `token` is given), and again when the server closes the stream because
   * the token expired (close code 4401), when a reconnection is due while
   * the token is expiring (its `exp` within 10 s, or within half its
   * lifetime for a shorter-lived one), when a connection fails before
   * opening while it is expiring, and after three failed connections in a row. The stream
   * then resumes with `since`, and unacknowledged actions are re-sent with
   * the same ids. A call that throws or rejects is emitted as a `token`
   * error and tried again with the reconnection back-off.
   */
  getToken?: () => string | Promise<string>;
  /**
   * A store that only reads: it takes no client id (so it never adopts an
   * outbox) and its `dispatch` rejects with code `read_only`. Use it for the
   * second and later views of a page that dispatches through one store.
   */
  readOnly?: boolean;
  /** Where client ids, action numbers and outboxes live. Default: `localStorage` if present, else memory. */
  storage?: StorageLike;
  /** The WebSocket constructor. Default: `globalThis.WebSocket`. */
  WebSocket?: new (url: string) => any;
  /** Reconnection delays: exponential with jitter from `initialMs` (250) up to `maxMs` (10 000). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Web Locks. Default: `navigator.locks` if present; `null` to go without. */
  locks?: LocksLike | null;
  /**
   * `getState()` before the first snapshot. Without it, `getState()` is
   * `null` until then, and `connect` types the state as `S | null`.
   */
  initialState?: S;
}

/** `'offline'`: waiting to reconnect; `'closed'`: only after `close()`. */
export type Status = 'connecting' | 'open' | 'offline' | 'closed';

/** An action as sent on the wire. */
export interface Action {
  /** `<client>:<n>`; also the idempotency key. */
  id: string;
  type: string;
  payload: Json;
  meta?: Record<string, string>;
}

/**
 * The error of a refused dispatch: from the server (`invalid_action`,
 * `payload_too_large`, `bad_request`, `forbidden`: the token may not
 * dispatch this type…), or local (`closed`: the store was closed first, the
 * action stays in the outbox; `read_only`).
 */
export interface DispatchError extends Error {
  code: string;
  id?: string;
  /** For `forbidden`: the right the token lacks, e.g. `dispatch:stock/`. */
  right?: string;
}

/** The error of `.applied` when a reducer rejected the action. */
export interface RejectedError extends Error {
  code: 'rejected';
  /** The reducer's reason. */
  reason: string;
  seq: number;
  id: string;
}

/**
 * The promise `dispatch` returns: resolves with the action's seq once the
 * server has acknowledged it (durably; a duplicate ack counts — its seq is
 * `null` if the action is too old for the server to remember it).
 */
export interface Dispatched extends Promise<number | null> {
  /**
   * Resolves with the seq once the store's state includes the action; rejects
   * with a {@link RejectedError} if a reducer rejected it.
   */
  applied: Promise<number | null>;
}

export interface StoreEvents {
  status: Status;
  /** A reducer rejected one of this client's actions (`type`/`payload` when known). */
  rejected: { seq: number; id: string; reason: string; type?: string; payload?: Json };
  /**
   * A server error message (`forbidden` with the `right` the token lacks),
   * or a client-side problem: `gap` and `patch_failed` (the store resyncs by
   * itself), `malformed_json`, `locks`, `connect`, `token` (`getToken`
   * failed; tried again), `unauthorized` (the token expired and there is no
   * `getToken` to renew it).
   */
  error: { code: string; message: string; id?: string | null; right?: string };
  /** An action was acknowledged (also for actions adopted from a previous page). */
  ack: { id: string; seq: number | null; duplicate: boolean };
  /** The number of unacknowledged actions ({@link Store.pending}) changed. */
  pending: number;
  /** After every snapshot or patch, even one with no operations. */
  seq: number;
}

/** A live, read-only replica of one view, plus a way to dispatch actions. */
export interface Store<S = Json> {
  /**
   * The current state. Never mutated in place: a patch makes new objects
   * along the changed paths only, and a snapshot (a resync) keeps the old
   * object of every subtree that is equal to the old one.
   */
  getState(): S;
  /** The seq the state reflects (0 before the first snapshot). */
  readonly seq: number;
  /** For a cascaded view: the upstream seqs the state reflects. */
  readonly sources: Record<string, number> | null;
  readonly status: Status;
  /** `null` until picked (with Web Locks, shortly after `connect`). */
  readonly clientId: string | null;
  /** Actions not yet acknowledged. */
  readonly pending: number;
  /**
   * Calls `listener` after each state change: a patch with operations, or a
   * snapshot that differs from the state (not an empty patch, nor a resync
   * that changed nothing). Redux-compatible; returns the unsubscribe function.
   */
  subscribe(listener: () => void): () => void;
  /** Listens to an event; returns the function that stops listening. */
  on<E extends keyof StoreEvents>(event: E, fn: (arg: StoreEvents[E]) => void): () => void;
  /**
   * Sends an action. It is numbered and stored in the outbox first, so it is
   * sent exactly once into the log even across disconnections and reloads;
   * offline, it waits in the outbox. Rejects (both promises) with a
   * {@link DispatchError} for permanent errors, and with code
   * `invalid_action` for a payload that is not JSON (checked at run time:
   * functions, symbols, bigints, non-finite numbers, Dates, Maps, class
   * instances, cycles; properties that are `undefined` are left out).
   */
  dispatch(type: string, payload?: unknown, meta?: Record<string, string>): Dispatched;
  /** Closes the socket for good and releases the client id. Unacknowledged actions stay in the outbox. */
  close(): void;
}

/**
 * Connects to view `options.view` of the nodb data view at `url` (e.g.
 * `location.origin`, "http://127.0.0.1:7400"; `http(s)` becomes `ws(s)`).
 */
export function connect<S = Json>(url: string, options: ConnectOptions<S> & { initialState: S }): Store<S>;
/** Without `initialState`, the state is `null` until the first snapshot. */
export function connect<S = Json>(url: string, options: ConnectOptions<S>): Store<S | null>;

/** A Redux action as nodb sends it: `payload` must be JSON and `meta` an object of strings (checked at run time). */
export interface NodbAction<P = unknown> {
  type: string;
  payload?: P;
  meta?: Record<string, string>;
}

declare global {
  interface SymbolConstructor {
    /** Where Redux and RxJS look for an observable (declared the way Redux declares it). */
    readonly observable: symbol;
  }
}

/** A Redux-style observable of the state (for RxJS's `from(store)`). */
export interface StateObservable<S> {
  subscribe(observer: { next?(state: S): void } | ((state: S) => void)): { unsubscribe(): void };
  [Symbol.observable](): StateObservable<S>;
}

/** Called once for each action sent through an adapter that fails: refused by the server, rejected by a reducer, or the store closed first. */
export type OnDispatchError = (error: DispatchError | RejectedError, action: { type: string }) => void;

/**
 * A Redux `Store` (assignable to Redux's `Store<S>`, for react-redux's
 * `<Provider store>`) over a nodb store: its state is the view's.
 */
export interface ReduxStore<S = Json> {
  /**
   * Sends a plain action to the server and returns it, as Redux does (its
   * promises: {@link dispatched}, or use {@link ReduxStore.dispatchAsync}). A
   * failure is reported to `onError` and by the nodb store's `rejected` and
   * `error` events; never as an unhandled rejection. Throws a TypeError at
   * once for a thunk or anything else that is not an action, and for a
   * payload that is not JSON or a meta that is not an object of strings.
   */
  dispatch<A extends { type: string }>(action: A, ...extraArgs: any[]): A;
  /** Sends `action` like `dispatch`, and returns its promises (see {@link Store.dispatch}). */
  dispatchAsync(action: { type: string; payload?: unknown; meta?: unknown }): Dispatched;
  getState(): S;
  subscribe(listener: () => void): () => void;
  /** Throws: the reducers are the server's. */
  replaceReducer(nextReducer: unknown): never;
  [Symbol.observable](): StateObservable<S>;
}

/** A Redux `Store` over a nodb store, for react-redux's `<Provider>`. */
export function createReduxStore<S>(store: Store<S>, options?: { onError?: OnDispatchError }): ReduxStore<S>;

/**
 * The promises of an action object sent by {@link ReduxStore.dispatch} or
 * {@link nodbMiddleware} (the very object dispatched); undefined for one
 * that was not sent.
 */
export function dispatched(action: object): Dispatched | undefined;

/** What a Redux middleware is given (Redux's `MiddlewareAPI`). */
export interface MiddlewareApiLike {
  dispatch: (action: any, ...extraArgs: any[]) => any;
  getState(): any;
}

/** A Redux middleware (assignable to Redux's `Middleware`). */
export interface NodbMiddleware {
  (api: MiddlewareApiLike): (next: (action: unknown) => unknown) => (action: unknown) => unknown;
}

/** Which actions {@link nodbMiddleware} sends. */
export type NodbMiddlewareOptions =
  | {
      /** Exact types, or prefixes ending with "/". */
      types?: readonly string[];
      match?: never;
      onError?: OnDispatchError;
    }
  | {
      /** A predicate on the type and the action. */
      match: (type: string, action: any) => boolean;
      types?: never;
      onError?: OnDispatchError;
    };

/**
 * Redux middleware sending the plain actions it matches to the nodb server
 * instead of passing them on (and returning the action; its promises:
 * {@link dispatched}). It never takes thunks, Redux's `@@…` actions,
 * {@link createNodbSlice}'s, or Redux Toolkit's lifecycle actions
 * (`…/pending`, `…/fulfilled`, `…/rejected` of `createAsyncThunk`); of the
 * rest it takes `types` (exact, or prefixes ending with "/"), or those
 * `match` accepts, or, with neither, all. A matched action that cannot be
 * sent (a payload that is not JSON, a meta that is not an object of
 * strings) throws a TypeError that says why.
 */
export function nodbMiddleware(
  store: Store<any>,
  options?: NodbMiddlewareOptions | readonly string[] | ((type: string, action: any) => boolean),
): NodbMiddleware;

/** The action that carries a view's new state into a {@link NodbSlice}. */
export interface SyncedAction<S> {
  type: string;
  payload: S;
}

/** A slice of a Redux (Toolkit) store kept equal to a nodb view. */
export interface NodbSlice<S, Name extends string = string> {
  /** Where to mount `reducer` in the root reducer. */
  name: Name;
  /** The slice's reducer: the view's state (its initial state is the store's at creation). */
  reducer: (state: S | undefined, action: { type: string; payload?: unknown }) => S;
  /** Add to the Redux store's middleware: it dispatches `synced` at each change of the view. */
  middleware: NodbMiddleware;
  /** The action creator of `nodb/<name>/synced` (an RTK-style action creator with `type` and `match`). */
  synced: ((state: S) => SyncedAction<S>) & { type: string; match(action: { type: string }): action is SyncedAction<S> };
  /** Selects the slice from the root state. */
  selectState: (root: { [K in Name]: S }) => S;
}

/**
 * A slice of a Redux (Toolkit) store kept equal to the view of `store`: its
 * state is the very object `store.getState()` returns (so unchanged
 * subtrees keep their identity), updated by an action `nodb/<name>/synced`
 * that its middleware dispatches at each change.
 *
 * ```ts
 * const stockSlice = createNodbSlice(stock, { name: 'stock' });
 * const app = configureStore({
 *   reducer: { stock: stockSlice.reducer, ui: uiSlice.reducer },
 *   middleware: (gDM) => gDM().concat(stockSlice.middleware, nodbMiddleware(stock, { types: ['stock/'] })),
 * });
 * ```
 */
export function createNodbSlice<S, Name extends string = 'nodb'>(store: Store<S>, options?: { name?: Name }): NodbSlice<S, Name>;
