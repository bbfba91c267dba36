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
//!     // Bounded write buffer, messages and frames; see `recommended` for what warp leaves out.
//!     wsclose::warp::recommended(ws).on_upgrade(move |socket| async move {
//!         wsclose::warp::serve(socket, &lifecycle, stream::pending(), Some).await;
//!     })
//! });
//! ```

use std::future::{ready, Future};

use futures::{Sink, SinkExt, Stream, TryStreamExt};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;
use warp::ws::{Message as WarpMessage, WebSocket, Ws};

use crate::config::{recommended_config, DEFAULT_MAX_MESSAGE_SIZE};
use crate::{close, serve_websocket, Ending, Lifecycle};

/// `ws` with what warp's upgrade lets one set of the recommended socket configuration, for
/// messages up to [`DEFAULT_MAX_MESSAGE_SIZE`] (64 KiB): [`recommended_config`], applied by
/// [`configure`].
///
/// Without it warp keeps tungstenite's defaults: messages up to 64 MiB in frames up to 16 MiB,
/// and an unbounded write buffer, so that a few peers can make the server hold hundreds of MiB
/// (the crate's README has the figures). With it, the message and frame limits and the write
/// buffer's bound hold as with axum or tokio-tungstenite; the read buffer does not (see
/// [`configure`]).
pub fn recommended(ws: Ws) -> Ws {
    configure(ws, &recommended_config(DEFAULT_MAX_MESSAGE_SIZE))
}

/// `ws` with the fields of `config` that warp 0.4's `Ws` exposes: the write buffer's bound
/// and the message and frame limits (`None` meaning no limit).
///
/// warp offers no way to set the other two, so each socket keeps tungstenite's defaults:
///
/// * `read_buffer_size` stays 128 KiB, zero-filled before every read: about 136 KiB resident
///   per idle connection instead of a few KiB with [`READ_BUFFER_SIZE`](crate::config::READ_BUFFER_SIZE),
///   and a 128 KiB memset per read. (The demo server finishes the upgrade by hand to get
///   2 KiB: `server/src/upgrade.rs` in the repository.)
/// * `write_buffer_size` stays 128 KiB, and tungstenite requires the bound to exceed it, so
///   the bound is that much larger than `config`'s: a peer that does not read can make a
///   connection hold up to 128 KiB more than with axum.
pub fn configure(ws: Ws, config: &WebSocketConfig) -> Ws {
    let write_buffer_size = WebSocketConfig::default().write_buffer_size;
    ws.max_write_buffer_size(write_buffer_size.saturating_add(config.max_write_buffer_size))
        .max_message_size(config.max_message_size.unwrap_or(usize::MAX))
        .max_frame_size(config.max_frame_size.unwrap_or(usize::MAX))
}

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
