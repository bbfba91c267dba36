//! axum with the fix: an echo WebSocket at `/ws` that answers every Close at once, pings and
//! drops silent peers, and closes with 1001 on SIGTERM.
//!
//! ```text
//! cargo run -p wsclose-server --example axum -- 127.0.0.1:8080
//! ```
//!
//! It prints `listening on http://IP:PORT` once ready (port 0 picks a free port). The timing
//! comes from `WSCLOSE_PING_INTERVAL`, `WSCLOSE_PONG_TIMEOUT`, `WSCLOSE_WRITE_TIMEOUT` and
//! `WSCLOSE_CLOSE_TIMEOUT` when they are set ([`Timing::from_env`]).
//!
//! axum's `WebSocket` speaks axum's own `Message`; two small functions convert it to and from
//! tungstenite's, and `map_ok` and `with` put them around the socket. The loop itself is
//! [`serve_websocket`], not a copy.

use std::future::ready;
use std::net::SocketAddr;

use axum::extract::ws::{CloseFrame, Message as AxumMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use clap::Parser;
use futures::{stream, SinkExt, TryStreamExt};
use wsclose_server::connection::close_message;
use wsclose_server::{serve_websocket, CancellationToken, Lifecycle, Message, TaskTracker, Timing};

/// An echo WebSocket server at /ws, built with axum and wsclose-server.
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
    let signal = wsclose_server::shutdown_signal()?;

    let app = axum::Router::new()
        .route("/ws", get(upgrade))
        .with_state((lifecycle.clone(), sockets.clone()));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Stops accepting on the signal; axum does not wait for upgraded sockets (axum-server #40).
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await?;
    // Close 1001 to every socket, and wait until each has answered or timed out.
    lifecycle.shutdown.cancel();
    sockets.close();
    sockets.wait().await;
    Ok(())
}

async fn upgrade(
    State((lifecycle, sockets)): State<(Lifecycle, TaskTracker)>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| {
        sockets.track_future(async move {
            serve_websocket(adapt(socket), &lifecycle, stream::pending(), Some).await;
        })
    })
}

/// axum's socket as a `Stream` + `Sink` of tungstenite messages.
fn adapt(
    socket: WebSocket,
) -> impl futures::Stream<Item = Result<Message, axum::Error>>
       + futures::Sink<Message, Error = axum::Error>
       + Unpin {
    socket
        .with(|message| ready(Ok::<_, axum::Error>(to_axum(message))))
        .map_ok(from_axum)
}

fn from_axum(message: AxumMessage) -> Message {
    match message {
        AxumMessage::Text(text) => Message::text(text.as_str()),
        AxumMessage::Binary(data) => Message::Binary(data),
        AxumMessage::Ping(data) => Message::Ping(data),
        AxumMessage::Pong(data) => Message::Pong(data),
        AxumMessage::Close(Some(frame)) => close_message(frame.code, frame.reason.as_str()),
        AxumMessage::Close(None) => Message::Close(None),
    }
}

fn to_axum(message: Message) -> AxumMessage {
    match message {
        Message::Text(text) => AxumMessage::Text(text.as_str().into()),
        Message::Binary(data) => AxumMessage::Binary(data),
        Message::Ping(data) => AxumMessage::Ping(data),
        Message::Pong(data) => AxumMessage::Pong(data),
        Message::Close(Some(frame)) => AxumMessage::Close(Some(CloseFrame {
            code: frame.code.into(),
            reason: frame.reason.as_str().into(),
        })),
        Message::Close(None) => AxumMessage::Close(None),
        Message::Frame(frame) => AxumMessage::Binary(frame.into_payload()),
    }
}
