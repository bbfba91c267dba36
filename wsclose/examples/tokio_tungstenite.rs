//! tokio-tungstenite with the fix: an echo WebSocket at `/ws` that answers every Close at once,
//! pings and drops silent peers, and closes with 1001 on SIGTERM. Timing from `WSCLOSE_*`.
//!
//! `cargo run -p wsclose --features env --example tokio_tungstenite -- 127.0.0.1:8080`
use std::time::Duration;

use futures::stream;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use wsclose::config::{recommended_config, DEFAULT_MAX_MESSAGE_SIZE};
use wsclose::{serve_websocket, Lifecycle, Timing};

/// A client gets this long for its upgrade request; one that stalls would hold its task.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8080".into());
    let lifecycle = Lifecycle::new().with_timing(Timing::from_env()?);
    let mut sigterm = signal(SignalKind::terminate())?;
    let listener = TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(error) => { eprintln!("accept failed: {error}"); continue }
            },
            _ = sigterm.recv() => break,
        };
        let lifecycle_ = lifecycle.clone();
        // Counted from now, so a shutdown mid-handshake waits for this socket too.
        lifecycle.spawn(async move {
            // tungstenite's Callback signature: 404 for any path but /ws.
            #[allow(clippy::result_large_err)]
            let only_ws = |request: &Request, response: Response| match request.uri().path() {
                "/ws" => Ok(response),
                _ => {
                    let mut not_found = ErrorResponse::new(Some("not found".into()));
                    *not_found.status_mut() =
                        tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
                    Err(not_found)
                }
            };
            // Bounded buffers, messages (64 KiB) and frames: without it, a few peers hold
            // hundreds of MiB.
            let config = recommended_config(DEFAULT_MAX_MESSAGE_SIZE);
            let handshake =
                tokio_tungstenite::accept_hdr_async_with_config(tcp, only_ws, Some(config));
            if let Ok(Ok(socket)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                serve_websocket(socket, &lifecycle_, stream::pending(), Some).await;
            }
        });
    }
    // Stop accepting, then Close 1001 to every socket, and wait for the answers.
    drop(listener);
    lifecycle.shutdown().await;
    Ok(())
}
