//! Serving a router: plain TCP or TLS, Nagle off, until shutdown, then the
//! requests in flight finish.

use axum::Router;
use axum::serve::ListenerExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::tls::{Tls, TlsListener};

/// Serves `router` on `listener` (over TLS when `tls` is given) until
/// `shutdown` is cancelled, then waits for in-flight requests.
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<&Tls>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    match tls {
        None => axum::serve(listener.tap_io(no_delay), router).with_graceful_shutdown(shutdown.cancelled_owned()).await,
        Some(tls) => {
            let listener = TlsListener::new(listener, tls, no_delay)?;
            axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
        }
    }
}

/// Turns off Nagle's algorithm on an accepted socket: a stream sends small
/// messages (an ack, then a patch) that must not wait for the peer's ACK.
fn no_delay(tcp: &mut TcpStream) {
    let _ = tcp.set_nodelay(true);
}
