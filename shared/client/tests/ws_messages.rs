//! The size of the messages a `WsConnector`'s sockets accept: a message
//! (in one frame) past the library's default limits of 16 MiB a frame and
//! 64 MiB a message — a big view's snapshot — arrives whole; one past the
//! connector's own limit is refused.

use futures_util::{SinkExt, StreamExt};
use nodb_client::{ServiceUrl, WsConnector};
use tokio_tungstenite::tungstenite::Message;

/// A plain WebSocket server on 127.0.0.1 that sends one text message of
/// `len` bytes to each client, in one frame; its URL.
async fn sender(len: usize) -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                let _ = ws.send(Message::text("x".repeat(len))).await;
                // Held open until the client is done.
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    ServiceUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap().ws("/", &[])
}

#[tokio::test]
async fn a_message_past_the_library_defaults_arrives_whole() {
    let len = 70 << 20; // past 16 MiB a frame and 64 MiB a message
    let mut ws = WsConnector::new().connect(&sender(len).await).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.len(), len),
        other => panic!("expected the whole message, got {:?}", other.map(|m| m.map(|m| m.len()))),
    }
}

#[tokio::test]
async fn a_message_past_the_connectors_limit_is_refused() {
    let mut ws = WsConnector::new().max_message(1 << 20).connect(&sender(2 << 20).await).await.unwrap();
    match ws.next().await {
        Some(Err(e)) => assert!(e.to_string().contains("too long") || e.to_string().contains("Space limit"), "{e}"),
        other => panic!("expected a refusal, got {:?}", other.map(|m| m.map(|m| m.len()))),
    }
}
