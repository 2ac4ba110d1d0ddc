//! `wss://` against a local rustls server with a test CA's certificate
//! (`tests/data/`): the connector that trusts the CA connects and talks;
//! the platform's roots refuse it.

use std::path::Path;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use nodb_client::{ConnectError, ServiceUrl, WsConnector};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_tungstenite::tungstenite::Message;

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// A TLS WebSocket server on 127.0.0.1 that echoes text messages; its port.
async fn echo_server() -> u16 {
    let cert = CertificateDer::from_pem_file(data("localhost.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(data("localhost.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else { return };
                while let Some(Ok(Message::Text(t))) = ws.next().await {
                    if ws.send(Message::text(format!("echo {}", t.as_str()))).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn wss_connects_to_a_server_whose_ca_it_trusts() {
    let port = echo_server().await;
    let ca = CertificateDer::from_pem_file(data("ca.pem")).unwrap();
    let connector = WsConnector::new().trust_only(vec![ca]).unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let base = ServiceUrl::parse(&format!("https://{host}:{port}/prefix")).unwrap();
        let url = base.ws("ws", &[]);
        assert!(url.as_str().starts_with("wss://"), "{url}");
        let mut ws = connector.connect(&url).await.unwrap_or_else(|e| panic!("{host}: {e}"));
        ws.send(Message::text("hello")).await.unwrap();
        let answer = ws.next().await.unwrap().unwrap();
        assert_eq!(answer.to_text().unwrap(), "echo hello");
    }
}

#[tokio::test]
async fn wss_refuses_a_certificate_it_does_not_trust() {
    let port = echo_server().await;
    let url = ServiceUrl::parse(&format!("https://localhost:{port}")).unwrap().ws("ws", &[]);
    let e = WsConnector::new().connect(&url).await.unwrap_err();
    assert!(matches!(e, ConnectError::Failed { .. }), "{e}");
    println!("{e}");
}
