// TypeScript declarations for react.js (`nodb/react`): React hooks over a
// nodb store, built on useSyncExternalStore. React comes from the app.

import type { Status, Store } from './nodb.js';

/** The view's state; re-renders at each change. */
export function useView<S>(store: Store<S>): S;
/**
 * `selector(state)`; re-renders only when it changes (by `isEqual`,
 * `Object.is` by default). Unchanged subtrees keep their identity across
 * patches and resyncs, so selecting a subtree needs no deep comparison.
 */
export function useView<S, T>(store: Store<S>, selector: (state: S) => T, isEqual?: (a: T, b: T) => boolean): T;

/** The store's connection status; re-renders when it changes. */
export function useStatus(store: Store<any>): Status;

/** The number of this client's actions not yet acknowledged; re-renders when it changes. */
export function usePending(store: Store<any>): number;
