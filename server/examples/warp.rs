//! The smallest warp server with the fix: an echo WebSocket at `/ws` that answers every Close
//! at once, pings and drops silent peers, and closes with 1001 on SIGTERM.
//!
//! ```text
//! cargo run -p wsclose-server --example warp -- 127.0.0.1:8080
//! ```
//!
//! It prints `listening on http://IP:PORT` once ready (port 0 picks a free port). The timing
//! comes from `WSCLOSE_PING_INTERVAL`, `WSCLOSE_PONG_TIMEOUT`, `WSCLOSE_WRITE_TIMEOUT` and
//! `WSCLOSE_CLOSE_TIMEOUT` when they are set ([`Timing::from_env`]).
//!
//! warp's `WebSocket` speaks warp's own `Message`; two small functions convert it to and from
//! tungstenite's, and `map_ok` and `with` put them around the socket. Everything else is
//! [`serve_websocket`].

use std::future::ready;
use std::net::SocketAddr;

use clap::Parser;
use futures::{stream, SinkExt, TryStreamExt};
use warp::ws::{Message as WarpMessage, WebSocket, Ws};
use warp::Filter;
use wsclose_server::{serve_websocket, CancellationToken, Lifecycle, Message, TaskTracker, Timing};

/// An echo WebSocket server at /ws, built with warp and wsclose-server.
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

    let websocket = warp::path("ws").and(warp::ws()).map({
        let (lifecycle, sockets) = (lifecycle.clone(), sockets.clone());
        move |ws: Ws| {
            let (lifecycle, sockets) = (lifecycle.clone(), sockets.clone());
            ws.on_upgrade(move |socket| {
                sockets.track_future(async move {
                    serve_websocket(adapt(socket), &lifecycle, stream::pending(), Some).await;
                })
            })
        }
    });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Stops accepting on the signal; upgraded sockets are not warp's to wait for.
    warp::serve(websocket)
        .incoming(listener)
        .graceful(signal)
        .run()
        .await;
    // Close 1001 to every socket, and wait until each has answered or timed out.
    lifecycle.shutdown.cancel();
    sockets.close();
    sockets.wait().await;
    Ok(())
}

/// warp's socket as a `Stream` + `Sink` of tungstenite messages.
fn adapt(
    socket: WebSocket,
) -> impl futures::Stream<Item = Result<Message, warp::Error>>
       + futures::Sink<Message, Error = warp::Error>
       + Unpin {
    socket
        .with(|message| ready(Ok::<_, warp::Error>(to_warp(message))))
        .map_ok(from_warp)
}

fn from_warp(message: WarpMessage) -> Message {
    if let Ok(text) = message.to_str() {
        Message::text(text)
    } else if let Some((code, reason)) = message.close_frame() {
        wsclose_server::connection::close_message(code, reason)
    } else if message.is_close() {
        Message::Close(None)
    } else if message.is_ping() {
        Message::Ping(message.into_bytes())
    } else if message.is_pong() {
        Message::Pong(message.into_bytes())
    } else {
        Message::Binary(message.into_bytes())
    }
}

fn to_warp(message: Message) -> WarpMessage {
    match message {
        Message::Text(text) => WarpMessage::text(text.as_str()),
        Message::Binary(data) => WarpMessage::binary(data),
        Message::Ping(data) => WarpMessage::ping(data),
        Message::Pong(data) => WarpMessage::pong(data),
        Message::Close(Some(frame)) => {
            WarpMessage::close_with(u16::from(frame.code), frame.reason.to_string())
        }
        Message::Close(None) => WarpMessage::close(),
        Message::Frame(frame) => WarpMessage::binary(frame.into_payload()),
    }
}
