//! The action stream's reading of messages: a stream asks for several
//! lines per message, and reads each line of a message in turn (blank
//! lines skipped, the last line with or without its newline), as well as
//! one line per message from a chronicler that sends them so.

use futures_util::{SinkExt, StreamExt};
use nodb_client::{Chronicler, ServiceUrl};
use nodb_shared::protocol::StreamLine;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

fn action(seq: u64) -> String {
    format!(r#"{{"seq":{seq},"id":"c:{seq}","type":"t","payload":{seq},"ts":1}}"#)
}

/// A WebSocket server on 127.0.0.1 that sends `messages` to its one client,
/// then closes; its URL, and the request's query once it has come.
async fn chronicler(messages: Vec<String>) -> (ServiceUrl, tokio::sync::oneshot::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (query_tx, query) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut query_tx = Some(query_tx);
        // The error type is tungstenite's, for the callback it takes.
        #[allow(clippy::result_large_err)]
        let seen = |request: &Request, response: Response| {
            if let Some(tx) = query_tx.take() {
                let _ = tx.send(request.uri().query().unwrap_or_default().to_string());
            }
            Ok(response)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(tcp, seen).await.unwrap();
        for m in messages {
            ws.send(Message::text(m)).await.unwrap();
        }
        ws.close(None).await.unwrap();
    });
    (ServiceUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap(), query)
}

async fn seqs(messages: Vec<String>) -> (Vec<u64>, String) {
    let (url, query) = chronicler(messages).await;
    let mut stream = Chronicler::new(url).stream(1, None, &[]).await.unwrap();
    let mut seqs = Vec::new();
    while let Some(line) = stream.next().await {
        match line.unwrap() {
            StreamLine::Action(a) => seqs.push(a.seq),
            other => panic!("only actions were sent, got {other:?}"),
        }
    }
    (seqs, query.await.unwrap())
}

#[tokio::test]
async fn each_line_of_a_message_is_read_in_turn() {
    let messages = vec![
        format!("{}\n{}\n", action(1), action(2)),
        format!("\n\n{}\n  \n{}", action(3), action(4)),
        action(5),
        format!("{}\n", action(6)),
    ];
    let (seqs, query) = seqs(messages).await;
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    assert!(query.split('&').any(|p| p == "lines=many"), "the stream asks for several lines a message: {query}");
}

#[tokio::test]
async fn a_line_that_is_not_the_protocol_is_an_error_and_the_next_is_read() {
    let (url, _) = chronicler(vec![format!("{}\n{{\"seq\":\"x\"}}\n{}\n", action(1), action(2))]).await;
    let mut stream = Chronicler::new(url).stream(1, None, &[]).await.unwrap();
    assert!(matches!(stream.next().await, Some(Ok(StreamLine::Action(a))) if a.seq == 1));
    assert!(matches!(stream.next().await, Some(Err(nodb_client::Error::Protocol { .. }))));
    assert!(matches!(stream.next().await, Some(Ok(StreamLine::Action(a))) if a.seq == 2));
    assert!(stream.next().await.is_none());
}
