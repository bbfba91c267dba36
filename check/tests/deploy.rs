//! `--deploy`'s connections as a page's: with `--deploy-message TEXT` each sends TEXT every
//! 5 s, and answers the server's Pings, as a browser tab of an app does.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use assert_cmd::Command;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// `--for`: long enough for one message (sent 5 s after each connection opens), with room for a busy machine.
const FOR: &str = "9s";

#[tokio::test]
async fn deploy_message_is_sent_and_pings_are_answered() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let messages = Arc::new(AtomicU32::new(0));
    let pongs = Arc::new(AtomicU32::new(0));
    let (seen_messages, seen_pongs) = (messages.clone(), pongs.clone());
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (messages, pongs) = (seen_messages.clone(), seen_pongs.clone());
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let _ = ws.send(Message::Ping(b"tab?".to_vec().into())).await;
                while let Some(Ok(message)) = ws.next().await {
                    match message {
                        Message::Text(text) if text.as_str() == "hello" => {
                            messages.fetch_add(1, Ordering::SeqCst);
                        }
                        Message::Pong(payload) if payload.as_ref() == b"tab?" => {
                            pongs.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    let url = format!("ws://{addr}/");
    let assert = tokio::task::spawn_blocking(move || {
        Command::cargo_bin("wsclose-check")
            .unwrap()
            .args([&url, "--deploy", "--connections", "3", "--for", FOR])
            .args(["--deploy-message", "hello", "--json"])
            .timeout(Duration::from_secs(30))
            .assert()
    })
    .await
    .unwrap();
    server.abort();
    assert.code(0);
    assert_eq!(
        pongs.load(Ordering::SeqCst),
        3,
        "every connection answered the Ping"
    );
    assert!(
        messages.load(Ordering::SeqCst) >= 3,
        "{} messages from 3 connections",
        messages.load(Ordering::SeqCst)
    );
}
