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
  /**
   * Shows the view's history in the Redux DevTools browser extension (see
   * {@link connectDevtools}), named `nodb <view>` unless `name` is given;
   * `/history` is asked with this store's token. Does nothing (and costs
   * nothing) when the page has no `__REDUX_DEVTOOLS_EXTENSION__`.
   */
  devtools?: boolean | DevtoolsOptions;
  /**
   * With several data view URLs: before moving to another one, the store
   * asks each one's `GET /ready` (no token; a data view on another origin
   * than the page's must allow it with `--allow-origin`) and goes to the
   * first in turn that answers 200 with a `seq` not behind its own, within
   * `timeoutMs` (default 1000). Without an answer (a timeout, a network or
   * CORS failure) replicas are simply taken in turn. `false`: never ask.
   * Ignored with one URL.
   */
  ready?: false | { timeoutMs?: number; fetch?: ReadyFetchLike };
}

/** A `fetch` (the part of it the `ready` option of {@link connect} uses). */
export type ReadyFetchLike = (
  url: string,
  init: { headers: Record<string, string>; signal: AbortSignal },
) => Promise<{ status: number; json(): Promise<unknown> }>;

/** A `fetch` (the part of it {@link connectDevtools} uses). */
export type FetchLike = (
  url: string,
  init: { headers: Record<string, string>; signal: AbortSignal },
) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

/** How a store shows in Redux DevTools. */
export interface DevtoolsOptions {
  /** The instance's name in the tool. Default: `nodb <view>` (`nodb` for {@link connectDevtools}). */
  name?: string;
  /** The entries the tool keeps (its own option; default 50). Older updates are not sent. */
  maxAge?: number;
  /**
   * Whether to read the log's actions from the data view's `GET /history`
   * (needs the `log` right) for updates that are not this client's own
   * dispatches. Default `true`; with `false`, those are `@@nodb/update`.
   */
  actions?: boolean;
  /** The `fetch` for `/history`. Default: `globalThis.fetch`. */
  fetch?: FetchLike;
}

/** {@link connectDevtools}'s options: {@link DevtoolsOptions}, and where `/history` is. */
export interface ConnectDevtoolsOptions extends DevtoolsOptions {
  /** The data view's URL (as given to `connect`); without it, `/history` is not asked. */
  url?: string;
  /** The access token for `/history` (`Authorization: Bearer`), or a function giving the current one. */
  token?: string | null | (() => string | null | undefined);
}

/** A store's connection to Redux DevTools. */
export interface DevtoolsConnection {
  /** Stops sending to the tool (also done by the store's `close()`). */
  close(): void;
}

/**
 * Shows `store`'s history in the Redux DevTools browser extension, through
 * its `__REDUX_DEVTOOLS_EXTENSION__.connect()` interface; returns null and
 * does nothing when the page has none. `init` gets the state of the first
 * snapshot (or the store's state, if it has one already); then each patch
 * or snapshot the store applies is one entry, with the state after it and
 * an action carrying its `seq` (and `from` when it covers several seqs):
 * this client's own action when it is its acknowledged dispatch, else the
 * log's action(s) read from the data view's `GET /history` (batched, at
 * most two requests a second; several actions are listed in `actions`, the
 * type naming their types), else `{ type: '@@nodb/update', seq, from? }`
 * (`/history` refused, failing, or a cascade). A snapshot that replaces the
 * state is `{ type: '@@nodb/snapshot', seq, version? }`. The tool cannot
 * change the state (the server's log is the truth): its time-travel
 * features are off, and a jump, skip, rollback, reset, import or dispatch
 * from it is answered with an error in the tool.
 */
export function connectDevtools(store: Store<any>, options?: ConnectDevtoolsOptions): DevtoolsConnection | null;

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
  error: { code: string; message: string; id?: string | null; right?: string; url?: string };
  /** An action was acknowledged (also for actions adopted from a previous page; `type`/`payload` when known). */
  ack: { id: string; seq: number | null; duplicate: boolean; type?: string; payload?: Json };
  /** The number of unacknowledged actions ({@link Store.pending}) changed. */
  pending: number;
  /** After every snapshot or patch, even one with no operations. */
  seq: number;
  /**
   * After every snapshot or patch (after the subscribers): the seqs it
   * covers (`from`..=`seq`; `from` is `seq` for one seq and for a
   * snapshot), and whether the state changed.
   */
  update: { kind: 'snapshot' | 'patch'; from: number; seq: number; changed: boolean };
  /**
   * The store moved to another of the data views given to `connect` (before
   * connecting to it): its URL as given, and its index among them. Also
   * {@link Store.url}.
   */
  replica: { url: string; index: number };
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
  /**
   * The `version` of the last snapshot: the name and version of the app's
   * code that made the state (e.g. `"warehouse 0.1.0"`), or null when the
   * server sends none. Sent back with `since` when resuming, so that a data
   * view running other code answers with a snapshot rather than a patch.
   */
  readonly version: string | null;
  readonly status: Status;
  /**
   * The data view in use, or being connected to: one of the URLs given to
   * `connect`, as given (the first one before the first connection). With
   * several, it changes before the `status` of a connection to another one
   * (and the `replica` event says so).
   */
  readonly url: string;
  /** `null` until picked (with Web Locks, shortly after `connect`). */
  readonly clientId: string | null;
  /** Actions not yet acknowledged. */
  readonly pending: number;
  /**
   * Calls `listener` after each state change: a patch with operations, or a
   * snapshot that differs from the state (not an empty patch, nor a resync
   * that changed nothing). A snapshot that replaces a state (a resync, or a
   * client moved to a data view running other code) is one change, from the
   * old state to the new. Redux-compatible; returns the unsubscribe function.
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
 *
 * Given several URLs, of data views following the same chronicler (the same
 * seqs and states), the store uses one at a time, the first to begin with.
 * When its socket fails or the server closes it, the store reconnects with
 * the usual back-off to another, the next in turn or the first in turn that
 * `GET /ready` says is caught up (see `ready`), resuming with `since` and
 * `version` (no update lost or repeated) and re-sending unacknowledged
 * actions with the same ids. A replica behind the store's seq refuses
 * `since` (the browser sees a failed connection) and the next is tried;
 * only after each has failed twice in a row with `since` does the store ask
 * for a snapshot.
 */
export function connect<S = Json>(url: string | readonly string[], options: ConnectOptions<S> & { initialState: S }): Store<S>;
/** Without `initialState`, the state is `null` until the first snapshot. */
export function connect<S = Json>(url: string | readonly string[], options: ConnectOptions<S>): Store<S | null>;

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
  /** The seq the state reflects (so the Redux store's own DevTools show it). */
  meta?: { seq: number };
}

/** A slice of a Redux (Toolkit) store kept equal to a nodb view. */
export interface NodbSlice<S, Name extends string = string> {
  /** Where to mount `reducer` in the root reducer. */
  name: Name;
  /** The slice's reducer: the view's state (its initial state is the store's at creation). */
  reducer: (state: S | undefined, action: { type: string; payload?: unknown }) => S;
  /** Add to the Redux store's middleware: it dispatches `synced` (with the seq) at each change of the view. */
  middleware: NodbMiddleware;
  /** The action creator of `nodb/<name>/synced` (an RTK-style action creator with `type` and `match`). */
  synced: ((state: S, seq?: number) => SyncedAction<S>) & { type: string; match(action: { type: string }): action is SyncedAction<S> };
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
