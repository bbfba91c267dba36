//! warp's `WebSocket` under the lifecycle (feature `warp`).
//!
//! ```no_run
//! use futures::stream;
//! use warp::Filter;
//! use wsclose::Lifecycle;
//!
//! let lifecycle = Lifecycle::new();
//! let ws = warp::path("ws").and(warp::ws()).map(move |ws: warp::ws::Ws| {
//!     let lifecycle = lifecycle.clone();
//!     ws.on_upgrade(move |socket| async move {
//!         wsclose::warp::serve(socket, &lifecycle, stream::pending(), Some).await;
//!     })
//! });
//! ```

use std::future::{ready, Future};

use futures::{Sink, SinkExt, Stream, TryStreamExt};
use tungstenite::Message;
use warp::ws::{Message as WarpMessage, WebSocket};

use crate::{close, serve_websocket, Ending, Lifecycle};

/// [`serve_websocket`] for warp's socket: runs it to its end under `lifecycle`, with
/// `outgoing` and `on_message` as there.
pub fn serve<'a, O, H>(
    socket: WebSocket,
    lifecycle: &'a Lifecycle,
    outgoing: O,
    on_message: H,
) -> impl Future<Output = Ending> + 'a
where
    O: Stream<Item = Message> + Unpin + 'a,
    H: FnMut(Message) -> Option<Message> + 'a,
{
    serve_websocket(adapt(socket), lifecycle, outgoing, on_message)
}

/// warp's socket as a `Stream` + `Sink` of tungstenite messages.
pub fn adapt(
    socket: WebSocket,
) -> impl Stream<Item = Result<Message, warp::Error>> + Sink<Message, Error = warp::Error> + Unpin {
    socket
        .with(|message| ready(Ok::<_, warp::Error>(to_warp(message))))
        .map_ok(from_warp)
}

fn from_warp(message: WarpMessage) -> Message {
    if let Ok(text) = message.to_str() {
        Message::text(text)
    } else if let Some((code, reason)) = message.close_frame() {
        close::message(code.into(), reason)
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
