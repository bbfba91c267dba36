//! Plain tokio-tungstenite with the fix: `accept_hdr_async` on each TCP connection, an echo
//! WebSocket at `/ws` that answers every Close at once, pings and drops silent peers, and
//! closes with 1001 on SIGTERM.
//!
//! ```text
//! cargo run -p wsclose-server --example tokio_tungstenite -- 127.0.0.1:8080
//! ```
//!
//! It prints `listening on http://IP:PORT` once ready (port 0 picks a free port). The timing
//! comes from `WSCLOSE_PING_INTERVAL`, `WSCLOSE_PONG_TIMEOUT`, `WSCLOSE_WRITE_TIMEOUT` and
//! `WSCLOSE_CLOSE_TIMEOUT` when they are set ([`Timing::from_env`]).
//!
//! tokio-tungstenite's `WebSocketStream` is already a `Stream` + `Sink` of tungstenite
//! messages, so it goes to [`serve_websocket`] as it is.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use futures::stream;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use wsclose_server::{serve_websocket, CancellationToken, Lifecycle, TaskTracker, Timing};

/// A client gets this long for its upgrade request; one that stalls would otherwise hold its
/// task, and shutdown would wait for it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An echo WebSocket server at /ws, built with tokio-tungstenite and wsclose-server.
#[derive(Parser)]
struct Args {
    /// Listen address; port 0 picks a free port.
    addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args { addr } = Args::parse();
    let lifecycle = Lifecycle::new(CancellationToken::new()).with_timing(Timing::from_env()?);
    let sockets = TaskTracker::new();
    let mut signal = std::pin::pin!(wsclose_server::shutdown_signal()?);

    let listener = TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(error) => {
                    eprintln!("accept failed: {error}");
                    continue;
                }
            },
            () = &mut signal => break,
        };
        sockets.spawn(serve(tcp, lifecycle.clone()));
    }
    // Stop accepting, then Close 1001 to every socket, and wait until each has answered or
    // timed out.
    drop(listener);
    lifecycle.shutdown.cancel();
    sockets.close();
    sockets.wait().await;
    Ok(())
}

/// The handshake (404 for any path but `/ws`), then the lifecycle.
// The callback's `Result<Response, ErrorResponse>` is tungstenite's `Callback` signature.
#[allow(clippy::result_large_err)]
async fn serve(tcp: TcpStream, lifecycle: Lifecycle) {
    let only_ws = |request: &Request, response: Response| {
        if request.uri().path() == "/ws" {
            Ok(response)
        } else {
            let mut not_found = ErrorResponse::new(Some("not found".into()));
            *not_found.status_mut() = StatusCode::NOT_FOUND;
            Err(not_found)
        }
    };
    let handshake = tokio_tungstenite::accept_hdr_async(tcp, only_ws);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(socket)) => {
            serve_websocket(socket, &lifecycle, stream::pending(), Some).await;
        }
        Ok(Err(error)) => eprintln!("handshake failed: {error}"),
        Err(_) => eprintln!("handshake timed out"),
    }
}
