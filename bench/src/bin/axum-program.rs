//! The README's axum program as its users run it, for `make bench`: the program of
//! `README.md` and `wsclose/README.md`, with the listen address from the command line and the
//! listening line the bench waits for. `axum-program ADDR` keeps the README's
//! `wsclose::axum::recommended` line; `axum-program --tungstenite-defaults ADDR` leaves it out,
//! which is what the program gave before the line (tungstenite's 128 KiB read buffer, 64 MiB
//! messages, an unbounded write buffer). `tests/cli.rs` checks that the handler is the
//! README's.

use axum::extract::{State, WebSocketUpgrade};
use axum::{response::Response, routing::get, Router};
use futures::stream;
use wsclose::Lifecycle;

/// The flag that leaves the `recommended` line out.
const DEFAULTS_FLAG: &str = "--tungstenite-defaults";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let defaults = args.first().is_some_and(|arg| arg == DEFAULTS_FLAG);
    if defaults {
        args.remove(0);
    }
    let [addr] = args.as_slice() else {
        anyhow::bail!("usage: axum-program [{DEFAULTS_FLAG}] ADDR");
    };
    let lifecycle = Lifecycle::new();
    let app = if defaults {
        Router::new().route("/ws", get(upgrade_with_defaults))
    } else {
        Router::new().route("/ws", get(upgrade))
    }
    .with_state(lifecycle.clone());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let ctrl_c = async { tokio::signal::ctrl_c().await.unwrap_or_default() };
    // axum stops accepting, but does not wait for upgraded sockets:
    axum::serve(listener, app)
        .with_graceful_shutdown(ctrl_c)
        .await?;
    // so close each with 1001 and wait for the answers (at most close_timeout + 250 ms).
    lifecycle.shutdown().await;
    Ok(())
}

// The README's handler, as written there.
async fn upgrade(State(lifecycle): State<Lifecycle>, ws: WebSocketUpgrade) -> Response {
    // Bounded buffers, messages (64 KiB) and frames: without it, a few peers hold hundreds of MiB.
    let ws = wsclose::axum::recommended(ws);
    ws.on_upgrade(move |socket| async move {
        // Nothing pushed (`stream::pending()`); every message sent back (`Some`).
        wsclose::axum::serve(socket, &lifecycle, stream::pending(), Some).await;
    })
}

/// The README's handler without the `recommended` line.
async fn upgrade_with_defaults(
    State(lifecycle): State<Lifecycle>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| async move {
        wsclose::axum::serve(socket, &lifecycle, stream::pending(), Some).await;
    })
}
