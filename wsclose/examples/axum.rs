//! axum with the fix: an echo WebSocket at `/ws` that answers every Close at once, pings and
//! drops silent peers, and closes with 1001 on SIGTERM. Timing from `WSCLOSE_*` variables.
//!
//! `cargo run -p wsclose --features axum,env --example axum -- 127.0.0.1:8080`
use axum::extract::{State, WebSocketUpgrade};
use axum::{response::Response, routing::get, Router};
use futures::stream;
use tokio::signal::unix::{signal, SignalKind};
use wsclose::{Lifecycle, Timing};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8080".into());
    let lifecycle = Lifecycle::new().with_timing(Timing::from_env()?);
    let mut sigterm = signal(SignalKind::terminate())?;
    let app = Router::new()
        .route("/ws", get(upgrade))
        .with_state(lifecycle.clone());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let stop = async move { sigterm.recv().await.unwrap_or_default() };
    // Stops accepting on SIGTERM; axum does not wait for upgraded sockets (axum-server #40),
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    // so: Close 1001 to every socket, and wait until each has answered or timed out.
    lifecycle.shutdown().await;
    Ok(())
}

// The README's handler, as written there (`e2e/tests/examples_bounded.rs` checks that).
async fn upgrade(State(lifecycle): State<Lifecycle>, ws: WebSocketUpgrade) -> Response {
    // Bounded buffers, messages (64 KiB) and frames: without it, a few peers hold hundreds of MiB.
    let ws = wsclose::axum::recommended(ws);
    ws.on_upgrade(move |socket| async move {
        // Nothing pushed (`stream::pending()`); every message sent back (`Some`).
        wsclose::axum::serve(socket, &lifecycle, stream::pending(), Some).await;
    })
}
