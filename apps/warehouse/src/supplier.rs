//! A demo supplier: a stand-in for the outside service an envoy places
//! reorders with, and a witness for tests that retries carry the same
//! idempotency key.
//!
//! It is not a real supplier: everything is kept in memory and lost when it
//! stops. It behaves like an idempotent payment API (Stripe's
//! `Idempotency-Key` is the model):
//!
//! - `POST /orders` with `{"product", "quantity"}` and an `Idempotency-Key`
//!   header creates an order (201). The same key again answers the same
//!   order (200, `Idempotent-Replayed: true`) and creates nothing; the same
//!   key with another body is refused (422 `idempotency_mismatch`).
//! - `GET /orders` lists the orders and the call log: one entry for every
//!   `POST /orders` that carried a key, whatever its outcome.
//! - `POST /control`, `GET /control`: fault injection — fail the next N
//!   calls, fail every call, or answer every call late.
//! - `GET /health`.
//!
//! [`Supplier::router`] has no fallback, so it can be nested under
//! `/supplier` in another server; [`Supplier::app`] adds a JSON 404, and
//! `nodb supplier` serves that with `nodb_server::serve_with`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The request header that names an order attempt.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The response header set on an answer replayed for a repeated key.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The longest idempotency key accepted, in bytes (Stripe's limit).
pub const MAX_KEY_LEN: usize = 255;

/// The longest delay `POST /control` accepts, in milliseconds.
pub const MAX_DELAY_MS: u64 = 60_000;

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What `POST /orders` asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// The product to reorder; not empty.
    pub product: String,
    /// How many; at least 1.
    pub quantity: u64,
}

/// An order the supplier accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The supplier's reference, `SUP-000001`, `SUP-000002`, … in order of
    /// creation.
    pub supplier_ref: String,
    /// The product.
    pub product: String,
    /// How many.
    pub quantity: u64,
    /// The key of the call that created it.
    pub idempotency_key: String,
}

/// How a call to `POST /orders` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A new order (201).
    Created,
    /// A repeated key: the first answer again (200).
    Replayed,
    /// An injected failure (503); nothing created.
    Failed,
    /// A bad request or a key reused with another body (400, 413, 422).
    Rejected,
}

/// One entry of the call log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The call's number, from 1.
    pub n: u64,
    /// The `Idempotency-Key` it carried.
    pub idempotency_key: String,
    /// The product asked for, if the body named one.
    pub product: Option<String>,
    /// The quantity asked for, if the body had a non-negative integer.
    pub quantity: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// The HTTP status it was answered with.
    pub status: u16,
}

/// The fault injection settings, as `GET /control` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// How many of the next calls to `POST /orders` answer 503.
    pub fail_next: u32,
    /// How long every call to `POST /orders` waits before answering, in
    /// milliseconds.
    pub delay_ms: u64,
    /// Whether every call to `POST /orders` answers 503.
    pub fail_always: bool,
}

/// A change to the [`Control`] settings; fields left out stay as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlUpdate {
    /// Fail this many of the next calls (0 clears).
    pub fail_next: Option<u32>,
    /// Answer every call this late, in milliseconds (0 clears).
    pub delay_ms: Option<u64>,
    /// Fail every call, or stop doing so.
    pub fail_always: Option<bool>,
}

/// Everything the supplier can answer instead of an order.
#[derive(Debug, thiserror::Error)]
pub enum SupplierError {
    /// `POST /orders` without a usable `Idempotency-Key` header.
    #[error("the Idempotency-Key header is required: a printable ASCII string naming this order attempt")]
    MissingKey,
    /// A key longer than [`MAX_KEY_LEN`].
    #[error("the Idempotency-Key header is {len} bytes long; at most {MAX_KEY_LEN} are allowed")]
    KeyTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The request body could not be read (too large, say).
    #[error("cannot read the body: {0}")]
    Body(#[source] BytesRejection),
    /// The body is not JSON of the expected shape.
    #[error("invalid {what}: {source}; expected {expected}")]
    Json {
        /// What the body should have been.
        what: &'static str,
        /// The shape expected, as JSON.
        expected: &'static str,
        /// What the parser found.
        source: serde_json::Error,
    },
    /// Well-formed JSON with a value out of range.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What the body should have been.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A key already used for an order with other contents.
    #[error(
        "idempotency key {key:?} was first used for {first_quantity} × {first_product:?}, not {quantity} × \
         {product:?}; keys can only be reused with the same body (use a new key for a new order)"
    )]
    Mismatch {
        /// The key.
        key: String,
        /// The product of the order the key created.
        first_product: String,
        /// The quantity of the order the key created.
        first_quantity: u64,
        /// The product asked for now.
        product: String,
        /// The quantity asked for now.
        quantity: u64,
    },
    /// An injected failure (`POST /control`).
    #[error("supplier told to fail")]
    Unavailable,
    /// No route for the path.
    #[error("no such endpoint: {0} (try POST /orders, GET /orders, GET /control, POST /control, GET /health)")]
    NotFound(String),
}

impl SupplierError {
    /// The HTTP status that goes with this error.
    pub fn status(&self) -> StatusCode {
        match self {
            SupplierError::MissingKey
            | SupplierError::KeyTooLong { .. }
            | SupplierError::Json { .. }
            | SupplierError::Invalid { .. } => StatusCode::BAD_REQUEST,
            SupplierError::Body(e) => e.status(),
            SupplierError::Mismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            SupplierError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            SupplierError::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    /// The machine-readable code of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            SupplierError::Body(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            SupplierError::Mismatch { .. } => "idempotency_mismatch",
            SupplierError::Unavailable => "unavailable",
            SupplierError::NotFound(_) => "not_found",
            _ => "bad_request",
        }
    }
}

impl IntoResponse for SupplierError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        (self.status(), axum::Json(body)).into_response()
    }
}

/// The supplier's state: the orders, the call log and the fault settings.
/// Cheap to clone; clones share the state.
#[derive(Clone, Default)]
pub struct Supplier {
    // A std `Mutex`, not tokio's: it is never held across an `.await` (the
    // delay is slept after it is released), and every critical section is a
    // few map and vector operations.
    book: Arc<Mutex<Book>>,
}

/// What the mutex guards.
#[derive(Default)]
struct Book {
    orders: Vec<Order>,
    /// Idempotency key → index in `orders`.
    by_key: HashMap<String, usize>,
    calls: Vec<Call>,
    control: Control,
}

/// A successful answer to `POST /orders`.
#[derive(Debug)]
struct Placed {
    order: Order,
    replayed: bool,
}

impl Supplier {
    /// A supplier with no orders, no calls and no faults.
    pub fn new() -> Supplier {
        Supplier::default()
    }

    /// The routes, with this supplier as their state and no fallback.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/orders", post(post_order).get(get_orders))
            .route("/control", post(post_control).get(get_control))
            .route("/health", get(health))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.clone())
    }

    /// The routes with a JSON 404 for any other path: what `nodb supplier`
    /// serves.
    pub fn app(&self) -> Router {
        self.router().fallback(not_found)
    }

    /// The orders, in order of creation.
    pub fn orders(&self) -> Vec<Order> {
        self.lock().orders.clone()
    }

    /// The call log, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The fault injection settings.
    pub fn control(&self) -> Control {
        self.lock().control
    }

    /// Changes the fault injection settings; answers the new ones.
    ///
    /// # Errors
    /// [`SupplierError::Invalid`] for a delay over [`MAX_DELAY_MS`]; nothing
    /// changes then.
    pub fn configure(&self, update: ControlUpdate) -> Result<Control, SupplierError> {
        if let Some(ms) = update.delay_ms.filter(|&ms| ms > MAX_DELAY_MS) {
            return Err(SupplierError::Invalid {
                what: "control",
                reason: format!("`delay_ms` must be at most {MAX_DELAY_MS}, not {ms}"),
            });
        }
        let mut book = self.lock();
        let c = &mut book.control;
        c.fail_next = update.fail_next.unwrap_or(c.fail_next);
        c.delay_ms = update.delay_ms.unwrap_or(c.delay_ms);
        c.fail_always = update.fail_always.unwrap_or(c.fail_always);
        let control = *c;
        tracing::info!(control.fail_next, control.delay_ms, control.fail_always, "supplier control changed");
        Ok(control)
    }

    /// Handles one `POST /orders` and records it in the call log if it had
    /// a key; also answers how long to wait before answering.
    fn place(
        &self,
        key: Option<&str>,
        body: Result<Bytes, BytesRejection>,
    ) -> (Result<Placed, SupplierError>, Duration) {
        let mut book = self.lock();
        let delay = Duration::from_millis(book.control.delay_ms);
        let Some(key) = key else {
            return (Err(SupplierError::MissingKey), delay);
        };
        let (product, quantity) = body.as_ref().map(|b| glimpse(b)).unwrap_or_default();
        let answer = book.decide(key, body);
        let (outcome, status) = match &answer {
            Ok(Placed { replayed: false, .. }) => (Outcome::Created, StatusCode::CREATED),
            Ok(Placed { replayed: true, .. }) => (Outcome::Replayed, StatusCode::OK),
            Err(e @ SupplierError::Unavailable) => (Outcome::Failed, e.status()),
            Err(e) => (Outcome::Rejected, e.status()),
        };
        let n = book.calls.len() as u64 + 1;
        let call = Call { n, idempotency_key: key.to_string(), product, quantity, outcome, status: status.as_u16() };
        match &answer {
            Ok(p) => tracing::info!(n, key, supplier_ref = %p.order.supplier_ref, ?outcome, "order call"),
            Err(e) => tracing::info!(n, key, ?outcome, error = %e, "order call"),
        }
        book.calls.push(call);
        (answer, delay)
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock cannot leave the book half-changed
        // in a way that matters for a demo; keep serving.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Book {
    /// The answer to a call with `key`: injected faults first (a supplier
    /// that is down fails whatever it is sent), then the body, then the key.
    fn decide(&mut self, key: &str, body: Result<Bytes, BytesRejection>) -> Result<Placed, SupplierError> {
        if self.control.fail_always {
            return Err(SupplierError::Unavailable);
        }
        if self.control.fail_next > 0 {
            self.control.fail_next -= 1;
            return Err(SupplierError::Unavailable);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(SupplierError::KeyTooLong { len: key.len() });
        }
        let request = parse_order(&body.map_err(SupplierError::Body)?)?;
        if let Some(&i) = self.by_key.get(key) {
            let first = &self.orders[i];
            if first.product != request.product || first.quantity != request.quantity {
                return Err(SupplierError::Mismatch {
                    key: key.to_string(),
                    first_product: first.product.clone(),
                    first_quantity: first.quantity,
                    product: request.product,
                    quantity: request.quantity,
                });
            }
            return Ok(Placed { order: first.clone(), replayed: true });
        }
        let order = Order {
            supplier_ref: format!("SUP-{:06}", self.orders.len() + 1),
            product: request.product,
            quantity: request.quantity,
            idempotency_key: key.to_string(),
        };
        self.by_key.insert(key.to_string(), self.orders.len());
        self.orders.push(order.clone());
        Ok(Placed { order, replayed: false })
    }
}

/// Parses and checks an order body.
fn parse_order(body: &[u8]) -> Result<OrderRequest, SupplierError> {
    let request: OrderRequest = serde_json::from_slice(body).map_err(|source| SupplierError::Json {
        what: "order",
        expected: r#"{"product": string, "quantity": positive integer}"#,
        source,
    })?;
    let invalid = |reason: &str| SupplierError::Invalid { what: "order", reason: reason.to_string() };
    if request.product.trim().is_empty() {
        return Err(invalid("`product` must not be empty"));
    }
    if request.quantity == 0 {
        return Err(invalid("`quantity` must be at least 1"));
    }
    Ok(request)
}

/// The product and quantity of a body, as far as it has them, for the call
/// log of calls whose body is wrong.
fn glimpse(body: &[u8]) -> (Option<String>, Option<u64>) {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => (v["product"].as_str().map(str::to_string), v["quantity"].as_u64()),
        Err(_) => (None, None),
    }
}

/// The `Idempotency-Key` header, if it is there, printable and not blank.
fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    headers.get(IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty())
}

async fn post_order(
    State(supplier): State<Supplier>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (answer, delay) = supplier.place(idempotency_key(&headers), body);
    // The order is decided before the wait: a client that gives up waiting
    // has still placed it, which is the case idempotency keys exist for.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match answer {
        Ok(Placed { order, replayed: false }) => (StatusCode::CREATED, axum::Json(order)).into_response(),
        Ok(Placed { order, replayed: true }) => {
            (StatusCode::OK, [(IDEMPOTENT_REPLAYED, "true")], axum::Json(order)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn get_orders(State(supplier): State<Supplier>) -> Response {
    let (orders, calls) = {
        let book = supplier.lock();
        (book.orders.clone(), book.calls.clone())
    };
    axum::Json(json!({"orders": orders, "calls": calls})).into_response()
}

async fn post_control(
    State(supplier): State<Supplier>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Control>, SupplierError> {
    let body = body.map_err(SupplierError::Body)?;
    let update: ControlUpdate = serde_json::from_slice(&body).map_err(|source| SupplierError::Json {
        what: "control",
        expected: r#"{"fail_next": N, "delay_ms": M, "fail_always": true|false}, each optional"#,
        source,
    })?;
    Ok(axum::Json(supplier.configure(update)?))
}

async fn get_control(State(supplier): State<Supplier>) -> axum::Json<Control> {
    axum::Json(supplier.control())
}

async fn health(State(supplier): State<Supplier>) -> Response {
    let orders = supplier.lock().orders.len();
    axum::Json(json!({"status": "ok", "orders": orders})).into_response()
}

async fn not_found(uri: axum::http::Uri) -> SupplierError {
    SupplierError::NotFound(uri.path().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(s: &Supplier, key: Option<&str>, body: &str) -> (Result<Placed, SupplierError>, Duration) {
        s.place(key, Ok(Bytes::copy_from_slice(body.as_bytes())))
    }

    const WIDGETS: &str = r#"{"product": "widget", "quantity": 5}"#;

    #[test]
    fn a_repeated_key_replays_the_first_order() {
        let s = Supplier::new();
        let first = order(&s, Some("k1"), WIDGETS).0.unwrap();
        assert!(!first.replayed);
        assert_eq!(
            first.order,
            Order {
                supplier_ref: "SUP-000001".into(),
                product: "widget".into(),
                quantity: 5,
                idempotency_key: "k1".into()
            }
        );
        let again = order(&s, Some("k1"), r#"{"quantity": 5, "product": "widget"}"#).0.unwrap();
        assert!(again.replayed);
        assert_eq!(again.order, first.order);
        let second = order(&s, Some("k2"), WIDGETS).0.unwrap();
        assert_eq!(second.order.supplier_ref, "SUP-000002");
        assert_eq!(s.orders().len(), 2);
        let outcomes: Vec<_> = s.calls().iter().map(|c| (c.n, c.outcome, c.status)).collect();
        assert_eq!(outcomes, [(1, Outcome::Created, 201), (2, Outcome::Replayed, 200), (3, Outcome::Created, 201)]);
    }

    #[test]
    fn a_key_reused_with_another_body_is_refused_and_logged() {
        let s = Supplier::new();
        order(&s, Some("k"), WIDGETS).0.unwrap();
        let e = order(&s, Some("k"), r#"{"product": "widget", "quantity": 6}"#).0.unwrap_err();
        assert!(matches!(e, SupplierError::Mismatch { first_quantity: 5, quantity: 6, .. }), "{e}");
        assert_eq!((e.status(), e.code()), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_mismatch"));
        let last = s.calls().pop().unwrap();
        assert_eq!((last.outcome, last.status, last.quantity), (Outcome::Rejected, 422, Some(6)));
        assert_eq!(s.orders().len(), 1);
    }

    #[test]
    fn a_call_without_a_key_is_refused_and_not_logged() {
        let s = Supplier::new();
        let e = order(&s, None, WIDGETS).0.unwrap_err();
        assert_eq!((e.status(), e.code()), (StatusCode::BAD_REQUEST, "bad_request"));
        assert!(s.calls().is_empty());
        let mut headers = HeaderMap::new();
        headers.insert(IDEMPOTENCY_KEY, "  ".parse().unwrap());
        assert_eq!(idempotency_key(&headers), None);
        headers.insert(IDEMPOTENCY_KEY, " k ".parse().unwrap());
        assert_eq!(idempotency_key(&headers), Some("k"));
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason_and_logged() {
        let s = Supplier::new();
        let long_key = "k".repeat(MAX_KEY_LEN + 1);
        let cases = [
            ("k1", "{", "EOF"),
            ("k2", r#"{"product": "widget"}"#, "missing field `quantity`"),
            ("k3", r#"{"product": "widget", "quantity": -1}"#, "positive integer"),
            ("k4", r#"{"product": "widget", "quantity": 1.5}"#, "floating point"),
            ("k5", r#"{"product": "widget", "quantity": 0}"#, "at least 1"),
            ("k6", r#"{"product": " ", "quantity": 1}"#, "`product` must not be empty"),
            ("k7", r#"{"product": "widget", "quantity": 1, "qty": 1}"#, "unknown field `qty`"),
            (&long_key, WIDGETS, "at most 255"),
        ];
        for (key, body, needle) in cases {
            let e = order(&s, Some(key), body).0.unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{body}");
            assert!(e.to_string().contains(needle), "{body}: {e}");
        }
        assert!(s.orders().is_empty());
        let calls = s.calls();
        assert_eq!(calls.len(), cases.len());
        assert!(calls.iter().all(|c| c.outcome == Outcome::Rejected && c.status == 400));
        assert_eq!((calls[1].product.as_deref(), calls[1].quantity), (Some("widget"), None));
        assert_eq!((calls[4].product.as_deref(), calls[4].quantity), (Some("widget"), Some(0)));
    }

    #[test]
    fn injected_failures_create_nothing() {
        let s = Supplier::new();
        let c = s.configure(ControlUpdate { fail_next: Some(2), delay_ms: Some(7), ..Default::default() }).unwrap();
        assert_eq!(c, Control { fail_next: 2, delay_ms: 7, fail_always: false });
        for _ in 0..2 {
            let (answer, delay) = order(&s, Some("k"), WIDGETS);
            assert!(matches!(answer, Err(SupplierError::Unavailable)));
            assert_eq!(delay, Duration::from_millis(7));
        }
        assert!(s.orders().is_empty());
        assert!(!order(&s, Some("k"), WIDGETS).0.unwrap().replayed);
        s.configure(ControlUpdate { fail_always: Some(true), fail_next: Some(1), ..Default::default() }).unwrap();
        for _ in 0..3 {
            assert!(matches!(order(&s, Some("k"), WIDGETS).0, Err(SupplierError::Unavailable)));
        }
        // `fail_always` does not use up `fail_next`.
        let c = s.configure(ControlUpdate { fail_always: Some(false), ..Default::default() }).unwrap();
        assert_eq!(c, Control { fail_next: 1, delay_ms: 7, fail_always: false });
        assert!(matches!(order(&s, Some("k"), WIDGETS).0, Err(SupplierError::Unavailable)));
        assert!(order(&s, Some("k"), WIDGETS).0.unwrap().replayed);
        let outcomes: Vec<_> = s.calls().iter().map(|c| (c.outcome, c.status)).collect();
        let failed = (Outcome::Failed, 503);
        let expected =
            [failed, failed, (Outcome::Created, 201), failed, failed, failed, failed, (Outcome::Replayed, 200)];
        assert_eq!(outcomes, expected);
    }

    #[test]
    fn a_delay_over_the_limit_changes_nothing() {
        let s = Supplier::new();
        let e = s
            .configure(ControlUpdate { delay_ms: Some(MAX_DELAY_MS + 1), fail_next: Some(3), ..Default::default() })
            .unwrap_err();
        assert!(e.to_string().contains("at most 60000"), "{e}");
        assert_eq!(s.control(), Control::default());
    }

    /// The routes over a real socket, served as `nodb supplier` serves
    /// them (through `nodb_server`): statuses, headers and error bodies.
    #[tokio::test]
    async fn the_http_api() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(nodb_server::serve(listener, Supplier::new().app(), None, shutdown.clone()));
        let http = reqwest::Client::new();
        let post = |path: &str, key: Option<&str>, body: &str| {
            let mut req = http.post(format!("{url}{path}")).body(body.to_string());
            if let Some(key) = key {
                req = req.header("Idempotency-Key", key);
            }
            req.send()
        };
        let json = |r: reqwest::Response| async move { r.json::<serde_json::Value>().await.unwrap() };

        let r = post("/orders", Some("k"), WIDGETS).await.unwrap();
        assert_eq!(r.status(), 201);
        assert!(r.headers().get(IDEMPOTENT_REPLAYED).is_none());
        let created = json(r).await;
        assert_eq!(created["supplier_ref"], "SUP-000001");
        let r = post("/orders", Some("k"), WIDGETS).await.unwrap();
        assert_eq!((r.status().as_u16(), r.headers()[IDEMPOTENT_REPLAYED].to_str().unwrap()), (200, "true"));
        assert_eq!(json(r).await, created);

        let r = post("/orders", None, WIDGETS).await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(json(r).await["error"]["code"], "bad_request");
        let r = post("/orders", Some("big"), &"x".repeat(MAX_BODY_BYTES + 1)).await.unwrap();
        assert_eq!(r.status(), 413);
        assert_eq!(json(r).await["error"]["code"], "payload_too_large");

        let r = post("/control", None, r#"{"delay_ms": 20}"#).await.unwrap();
        assert_eq!(json(r).await, json!({"fail_next": 0, "delay_ms": 20, "fail_always": false}));
        let r = post("/control", None, r#"{"fail_nxt": 1}"#).await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(json(r).await["error"]["message"].as_str().unwrap().contains("fail_nxt"));
        let r = post("/orders", Some("k"), WIDGETS).await.unwrap();
        assert_eq!(r.status(), 200);
        let r = http.get(format!("{url}/control")).send().await.unwrap();
        assert_eq!(json(r).await["delay_ms"], 20);

        let r = http.get(format!("{url}/health")).send().await.unwrap();
        assert_eq!(json(r).await, json!({"status": "ok", "orders": 1}));
        let r = http.get(format!("{url}/orders")).send().await.unwrap();
        let log = json(r).await;
        assert_eq!(log["orders"], json!([created]));
        let statuses: Vec<_> = log["calls"].as_array().unwrap().iter().map(|c| c["status"].clone()).collect();
        assert_eq!(statuses, [201, 200, 413, 200]);
        let r = http.get(format!("{url}/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(json(r).await["error"]["code"], "not_found");

        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
