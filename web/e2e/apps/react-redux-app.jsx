// A small React app over one nodb view, two ways: a table through
// react-redux (`<Provider store={createReduxStore(stock)}>`, `useSelector`)
// and a table through nodb/react's `useView`, with `useStatus` and
// `usePending` in the header. Each row counts its renders.

import { memo, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { Provider, useSelector } from 'react-redux';
import { connect, createReduxStore, dispatched } from 'nodb';
import { usePending, useStatus, useView } from 'nodb/react';
import { countRender, expose, productNames, root } from './common.js';

const stock = connect(location.origin, { view: 'stock' });
let reportError = () => {};
const redux = createReduxStore(stock, { onError: (e, action) => reportError(`${action.type}: ${e.code}: ${e.reason ?? e.message}`) });

const ReduxRow = memo(function ReduxRow({ name }) {
  const product = useSelector((s) => s?.products[name]);
  countRender('redux', name);
  return <tr data-product={name}><td>{name}</td><td className="total">{product?.total}</td></tr>;
});

const ViewRow = memo(function ViewRow({ name }) {
  const product = useView(stock, (s) => s?.products[name]);
  countRender('view', name);
  return <tr data-product={name}><td>{name}</td><td className="total">{product?.total}</td></tr>;
});

function ReduxTable() {
  const names = useSelector(productNames);
  return <table id="redux-table"><tbody>{names ? names.split(',').map((n) => <ReduxRow key={n} name={n} />) : null}</tbody></table>;
}

function ViewTable() {
  const names = useView(stock, productNames);
  return <table id="view-table"><tbody>{names ? names.split(',').map((n) => <ViewRow key={n} name={n} />) : null}</tbody></table>;
}

function Header() {
  const status = useStatus(stock);
  const pending = usePending(stock);
  return <header id="status" data-status={status} data-pending={pending}>{status}, {pending} pending</header>;
}

function Errors() {
  const [errors, setErrors] = useState([]);
  reportError = (message) => setErrors((es) => [...es, message]);
  return <ul id="errors">{errors.map((e, i) => <li key={i}>{e}</li>)}</ul>;
}

function App() {
  return (
    <Provider store={redux}>
      <Header />
      <Errors />
      <ReduxTable />
      <ViewTable />
    </Provider>
  );
}

expose({
  seq: () => stock.seq,
  dispatch: (action) => {
    const returned = redux.dispatch(action);
    return { returnedTheAction: returned === action, hasPromises: typeof dispatched(action)?.applied?.then === 'function' };
  },
  dispatchThunk: () => {
    try { redux.dispatch(() => {}); return 'no error'; } catch (e) { return e.message; }
  },
  keepState: () => { window.kept = stock.getState(); },
  sameState: () => stock.getState() === window.kept,
  errorCodes: [],
});
stock.on('error', (e) => window.app.errorCodes.push(e.code));
createRoot(root()).render(<App />);
