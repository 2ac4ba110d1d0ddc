// A Redux Toolkit app: the `stock` view as a slice (createNodbSlice), a
// local `ui` slice, a createAsyncThunk('stock/load') whose lifecycle actions
// stay local although nodbMiddleware sends `stock/` actions to the server,
// and rejections shown from the middleware's onError.

import { memo } from 'react';
import { createRoot } from 'react-dom/client';
import { Provider, useSelector } from 'react-redux';
import { configureStore, createAsyncThunk, createSlice } from '@reduxjs/toolkit';
import { connect, createNodbSlice, nodbMiddleware } from 'nodb';
import { usePending, useStatus } from 'nodb/react';
import { countRender, expose, productNames, root } from './common.js';

const stock = connect(location.origin, { view: 'stock' });
const stockSlice = createNodbSlice(stock, { name: 'stock' });

const load = createAsyncThunk('stock/load', async () => {
  const res = await fetch('/health');
  return res.ok ? 'loaded' : `health ${res.status}`;
});

const ui = createSlice({
  name: 'ui',
  initialState: { loaded: '', errors: [] },
  reducers: { failed: (s, a) => { s.errors.push(a.payload); } },
  extraReducers: (b) => { b.addCase(load.fulfilled, (s, a) => { s.loaded = a.payload; }); },
});

const app = configureStore({
  reducer: { stock: stockSlice.reducer, ui: ui.reducer },
  middleware: (gDM) => gDM().concat(
    stockSlice.middleware,
    nodbMiddleware(stock, {
      types: ['stock/'],
      onError: (e, action) => app.dispatch(ui.actions.failed(`${action.type}: ${e.code}: ${e.reason ?? e.message}`)),
    }),
  ),
});

const sold = (product, quantity) => ({ type: 'stock/sold', payload: { product, location: 'shelf', quantity } });

const Row = memo(function Row({ name }) {
  const product = useSelector((s) => s.stock?.products[name]);
  countRender('rtk', name);
  return <tr data-product={name}><td>{name}</td><td className="total">{product?.total}</td></tr>;
});

function App() {
  const names = useSelector((s) => productNames(s.stock));
  const loaded = useSelector((s) => s.ui.loaded);
  const errors = useSelector((s) => s.ui.errors);
  const status = useStatus(stock);
  const pending = usePending(stock);
  return (
    <>
      <header id="status" data-status={status} data-pending={pending} data-loaded={loaded}>{status}</header>
      <ul id="errors">{errors.map((e, i) => <li key={i}>{e}</li>)}</ul>
      <table id="rtk-table"><tbody>{names ? names.split(',').map((n) => <Row key={n} name={n} />) : null}</tbody></table>
    </>
  );
}

expose({
  seq: () => stock.seq,
  sell: (product, quantity) => { app.dispatch(sold(product, quantity)); },
  load: async () => {
    const result = await app.dispatch(load());
    return { type: result.type, meta: typeof result.meta };
  },
  keepState: () => { window.kept = app.getState().stock; },
  sameState: () => app.getState().stock === window.kept && window.kept === stock.getState(),
  errorCodes: [],
});
stock.on('error', (e) => window.app.errorCodes.push(e.code));
createRoot(root()).render(<Provider store={app}><App /></Provider>);
