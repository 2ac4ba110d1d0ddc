// The package as apps use it, checked by `npm run typecheck` under --strict
// and never run: `nodb` and `nodb/react` through the package's exports map,
// with react-redux and Redux Toolkit. Each `@ts-expect-error` is a mistake
// the declarations must refuse.

import { configureStore, createAsyncThunk, createSlice, type PayloadAction } from '@reduxjs/toolkit';
import { memo } from 'react';
import { Provider, useDispatch, useSelector, type TypedUseSelectorHook } from 'react-redux';
import type { Middleware, Store as ReduxStoreType, UnknownAction } from 'redux';
import {
  connect,
  createNodbSlice,
  createReduxStore,
  dispatched,
  nodbMiddleware,
  type DispatchError,
  type RejectedError,
  type Store,
} from 'nodb';
import { usePending, useStatus, useView } from 'nodb/react';

// A payload declared as an interface (not assignable to an index signature).
interface Sale {
  product: string;
  location: string;
  quantity: number;
}
interface Product {
  total: number;
  locations: Record<string, number>;
}
interface Stock {
  products: Record<string, Product>;
  total: number;
}

// --- the nodb store: nullable until the first snapshot, unless initialState ---

const stock = connect<Stock>('http://127.0.0.1:7400', { view: 'stock' });
const maybe: Stock | null = stock.getState();
// @ts-expect-error: null before the first snapshot
const notYet: Stock = stock.getState();
const withInitial = connect<Stock>('http://127.0.0.1:7400', { view: 'stock', initialState: { products: {}, total: 0 } });
const sure: Stock = withInitial.getState();
void [maybe, notYet, sure];

const sale: Sale = { product: 'pear', location: 'shelf', quantity: 3 };
stock.dispatch('stock/sold', sale).applied.catch((e: RejectedError) => e.reason);

// --- createReduxStore is a Redux Store, for react-redux ---------------------

const redux = createReduxStore(stock, { onError: (e, action) => console.log(action.type, e.code) });
const asRedux: ReduxStoreType<Stock | null, UnknownAction> = redux;
void asRedux;
const returned: { type: 'stock/sold'; payload: Sale } = redux.dispatch({ type: 'stock/sold' as const, payload: sale });
void dispatched(returned)?.applied.then((seq) => seq);
redux.dispatchAsync({ type: 'stock/sold', payload: sale }).catch((e: DispatchError) => e.code);

// RTK action creators' actions are accepted.
const sold = (payload: Sale): PayloadAction<Sale, 'stock/sold'> => ({ type: 'stock/sold', payload });
redux.dispatch(sold(sale));

type Root = Stock | null;
const useStockSelector: TypedUseSelectorHook<Root> = useSelector;

const Row = memo(function Row({ name }: { name: string }) {
  const product = useStockSelector((s) => s?.products[name]);
  const dispatch = useDispatch();
  return (
    <tr>
      <td>{name}</td>
      <td>{product?.total ?? 0}</td>
      <td><button onClick={() => dispatch(sold({ product: name, location: 'shelf', quantity: 1 }))}>sell</button></td>
    </tr>
  );
});

export function ReduxApp() {
  return (
    <Provider store={redux}>
      <Row name="pear" />
    </Provider>
  );
}

// --- Redux Toolkit: a slice equal to the view, and the middleware ----------

const stockSlice = createNodbSlice(stock, { name: 'stock' });
const ui = createSlice({
  name: 'ui',
  initialState: { filter: '' },
  reducers: { filtered: (s, a: PayloadAction<string>) => { s.filter = a.payload; } },
});
const load = createAsyncThunk('stock/load', async (n: number) => n * 2);

const app = configureStore({
  reducer: { stock: stockSlice.reducer, ui: ui.reducer },
  middleware: (gDM) => gDM().concat(stockSlice.middleware, nodbMiddleware(stock, { types: ['stock/'] })),
});
type AppState = ReturnType<typeof app.getState>;
type AppDispatch = typeof app.dispatch;
const products: Record<string, Product> | undefined = (app.getState() as AppState).stock?.products;
void products;
const filter: string = app.getState().ui.filter;
void filter;
const fromSlice: Stock | null = stockSlice.selectState(app.getState());
void fromSlice;
app.dispatch(ui.actions.filtered('pe'));
const thunk = app.dispatch(load(2));
void thunk.unwrap().then((n: number) => n);
const soldAction = app.dispatch(sold(sale));
void dispatched(soldAction);
const appDispatch: AppDispatch = app.dispatch;
void appDispatch;

// nodbMiddleware is a Redux Middleware, with or without options.
const m1: Middleware = nodbMiddleware(stock);
const m2: Middleware = nodbMiddleware(stock, ['stock/sold']);
const m3: Middleware = nodbMiddleware(stock, (type) => type.startsWith('stock/'));
const m4: Middleware = nodbMiddleware(stock, { match: (_t, a) => a.remote === true, onError: (e) => console.log(e.message) });
void [m1, m2, m3, m4];
// @ts-expect-error: types or match, not both
nodbMiddleware(stock, { types: ['a'], match: () => true });

// --- React hooks without Redux ------------------------------------------------

export function Total({ store }: { store: Store<Stock | null> }) {
  const total: number = useView(store, (s) => s?.total ?? 0);
  const whole: Stock | null = useView(store);
  const status = useStatus(store);
  const pending: number = usePending(store);
  // @ts-expect-error: the selector's result is a number
  const wrong: string = useView(store, (s) => s?.total ?? 0);
  void [whole, wrong];
  return <p data-status={status}>{total} ({pending} pending)</p>;
}
