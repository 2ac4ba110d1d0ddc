// Type tests, checked by `npm run typecheck` (tsc -p web) and never run.
//
// 1. The implementation matches the declarations: each function of the
//    modules in nodb/ (typed by their JSDoc) is assignable to its declared
//    type in nodb.d.ts, and the store class has exactly the declared members.
// 2. The public API, imported from './nodb.js' (which resolves to
//    nodb.d.ts), used the ordinary way under --strict.

import type * as Declared from './nodb.js';
import { applyPatch as applyPatchImpl } from './nodb/patch.js';
import { Store as StoreImpl } from './nodb/store.js';
import {
  createNodbSlice as createNodbSliceImpl,
  createReduxStore as createReduxStoreImpl,
  dispatched as dispatchedImpl,
  nodbMiddleware as nodbMiddlewareImpl,
} from './nodb/redux.js';
import { Devtools as DevtoolsImpl, connectDevtools as connectDevtoolsImpl } from './nodb/devtools.js';
import { usePending as usePendingImpl, useStatus as useStatusImpl, useView as useViewImpl } from './react.js';
import type * as DeclaredReact from './react.d.ts';

import {
  applyPatch,
  connect,
  connectDevtools,
  createReduxStore,
  nodbMiddleware,
  type DevtoolsConnection,
  type DispatchError,
  type Json,
  type PatchOp,
  type RejectedError,
  type Status,
  type Store,
} from './nodb.js';

// --- 1. implementation against declarations ---------------------------------

export const implementsApplyPatch: typeof Declared.applyPatch = applyPatchImpl;
export const implementsConnect: typeof Declared.connect = (url, options) => new StoreImpl(url, options);
export const implementsCreateReduxStore: typeof Declared.createReduxStore = createReduxStoreImpl;
export const implementsNodbMiddleware: typeof Declared.nodbMiddleware = nodbMiddlewareImpl;
export const implementsCreateNodbSlice: typeof Declared.createNodbSlice = createNodbSliceImpl;
export const implementsDispatched: typeof Declared.dispatched = dispatchedImpl;
export const implementsConnectDevtools: typeof Declared.connectDevtools = connectDevtoolsImpl;
export const implementsUseView: typeof DeclaredReact.useView = useViewImpl;
export const implementsUseStatus: typeof DeclaredReact.useStatus = useStatusImpl;
export const implementsUsePending: typeof DeclaredReact.usePending = usePendingImpl;

/** `true` only if A and B are the same type. */
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Members<T> = keyof T & string;

// The class has every declared member with a compatible type...
export const storeIsDeclared = (s: StoreImpl<{ n: number }>): Store<{ n: number }> => s;
// ...and no public member the declarations leave out.
export const sameMembers: Same<Members<StoreImpl<Json>>, Members<Store<Json>>> = true;
// The same for the DevTools connection.
export const devtoolsIsDeclared = (d: DevtoolsImpl): DevtoolsConnection => d;
export const sameDevtoolsMembers: Same<Members<DevtoolsImpl>, Members<DevtoolsConnection>> = true;

// --- 2. the public API, used the ordinary way --------------------------------

interface Stock {
  products: Record<string, { total: number; locations: Record<string, number>; threshold?: number }>;
  total: number;
}

const store = connect<Stock>('http://127.0.0.1:7400', {
  view: 'stock',
  initialState: { products: {}, total: 0 },
  backoff: { maxMs: 5000 },
});
const total: number = store.getState().total;
const seq: number = store.seq;
const status: Status = store.status;
const clientId: string | null = store.clientId;
const sources: Record<string, number> | null = store.sources;
const pending: number = store.pending;
const version: string | null = store.version;
void [total, seq, status, clientId, sources, pending, version];

const unsubscribe: () => void = store.subscribe(() => {
  for (const [name, p] of Object.entries(store.getState().products)) console.log(name, p.total);
});
unsubscribe();

store.on('status', (s) => { const t: Status = s; void t; });
store.on('seq', (n) => n.toFixed());
store.on('ack', ({ id, seq, duplicate, type }) => console.log(id.length, seq ?? 'old', duplicate, type?.length));
store.on('update', ({ kind, from, seq, changed }) => console.log(kind === 'snapshot' ? 'snapshot' : `patch ${from}..=${seq}`, changed));
store.on('rejected', ({ reason, type, payload }) => console.log(reason.toUpperCase(), type, payload));
const stop = store.on('error', ({ code, message, id }) => console.log(code, message, id));
stop();
// @ts-expect-error: no such event
store.on('nope', () => {});
// @ts-expect-error: the seq event carries a number
store.on('seq', (s: string) => s);

async function sell(): Promise<number | null> {
  const sent = store.dispatch('stock/sold', { product: 'pear', location: 'shelf', quantity: 3 }, { user: 'ana' });
  try {
    await sent;
    return await sent.applied;
  } catch (e) {
    const err = e as RejectedError | DispatchError;
    if (err.code === 'rejected') console.log((err as RejectedError).reason);
    return null;
  }
}
void sell();
// A payload is checked at run time (a Date is refused then), so any type is accepted here.
store.dispatch('stock/sold', { when: new Date() });
// @ts-expect-error: meta values are strings
store.dispatch('stock/sold', null, { n: 1 });
// @ts-expect-error: the state is read-only through the store
store.seq = 3;

const readOnly: Store = connect('http://127.0.0.1:7400', { view: 'activity', readOnly: true, locks: null });
readOnly.close();

// Access tokens: a fixed one, or a function giving one (at once or later).
const withToken = connect('http://127.0.0.1:7400', { view: 'stock', token: 'eyJ.eyJ.sig' });
const renewing = connect('http://127.0.0.1:7400', {
  view: 'stock',
  getToken: async () => (await fetch('/token', { method: 'POST' })).text(),
});
const both = connect('http://127.0.0.1:7400', { view: 'stock', token: 'eyJ.eyJ.sig', getToken: () => 'eyJ.eyJ.sig2' });
void [withToken, renewing, both];
// @ts-expect-error: a token is a string
connect('http://127.0.0.1:7400', { view: 'stock', token: 42 });
// @ts-expect-error: getToken gives a string (or a promise of one)
connect('http://127.0.0.1:7400', { view: 'stock', getToken: async () => 42 });
store.on('error', ({ code, right }) => { if (code === 'forbidden') console.log(right?.toUpperCase()); });
async function forbidden(): Promise<string | undefined> {
  try {
    await store.dispatch('admin/wipe');
    return undefined;
  } catch (e) {
    return (e as DispatchError).right;
  }
}
void forbidden();

// applyPatch keeps the document's type.
const ops: PatchOp[] = [{ op: 'replace', path: '/total', value: 1 }, { op: 'remove', path: '/products/pear' }];
const next: Stock = applyPatch(store.getState(), ops);
void next;
// @ts-expect-error: an op needs its fields
applyPatch({}, [{ op: 'add', path: '/x' }]);

// Redux.
const redux = createReduxStore(store);
const s: Stock = redux.getState();
void s;
redux.dispatchAsync({ type: 'stock/corrected', payload: { product: 'pear', location: 'back', quantity: 30 } }).applied.then((n) => n);
const action = redux.dispatch({ type: 'stock/corrected', payload: { product: 'pear', location: 'back', quantity: 30 } });
const payloadKept: number = action.payload.quantity;
void payloadKept;
// @ts-expect-error: a Redux dispatch returns the action, not a promise
redux.dispatch({ type: 'stock/corrected' }).applied;
const middleware = nodbMiddleware(store, { types: ['stock/'] });
const byPredicate = nodbMiddleware(store, (type) => type.startsWith('stock/'));
const byList = nodbMiddleware(store, ['stock/sold']);
void [middleware, byPredicate, byList];
// @ts-expect-error: types or match, not both
nodbMiddleware(store, { types: ['a'], match: () => true });

// Several data views (replicas): an array of URLs, the one in use, the move to another.
const replicas = connect<Stock>(['http://10.0.0.1:7402', 'http://10.0.0.2:7402'], {
  view: 'stock',
  initialState: { products: {}, total: 0 },
  ready: { timeoutMs: 500 },
});
const inUse: string = replicas.url;
void inUse;
const replicaTotal: number = replicas.getState().total;
void replicaTotal;
replicas.on('replica', ({ url, index }) => console.log(url.toUpperCase(), index.toFixed()));
replicas.on('error', ({ code, url }) => console.log(code, url?.length));
const urlList: readonly string[] = ['http://a', 'http://b'];
const noProbe: Store = connect(urlList, { view: 'stock', ready: false });
const ownFetch = connect(['http://a', 'http://b'], { view: 'stock', ready: { fetch } });
void [noProbe, ownFetch];
// @ts-expect-error: URLs are strings
connect([1, 2], { view: 'stock' });
// @ts-expect-error: ready is false or options, not true
connect(['http://a', 'http://b'], { view: 'stock', ready: true });

// Redux DevTools: an option of connect, or connectDevtools on a store.
const traced = connect('http://127.0.0.1:7400', { view: 'stock', devtools: true });
const named = connect('http://127.0.0.1:7400', { view: 'stock', devtools: { name: 'stock', maxAge: 100, actions: false, fetch } });
const devtools: DevtoolsConnection | null = connectDevtools(traced, { url: 'http://127.0.0.1:7400', token: () => null });
devtools?.close();
connectDevtools(named, { name: 'again', token: 'eyJ.eyJ.sig' });
// @ts-expect-error: maxAge is a number
connect('http://127.0.0.1:7400', { view: 'stock', devtools: { maxAge: '50' } });
