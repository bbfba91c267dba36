//! axum's `WebSocket` under the lifecycle (feature `axum`).
//!
//! ```no_run
//! use axum::extract::{State, WebSocketUpgrade};
//! use axum::response::Response;
//! use futures::stream;
//! use wsclose::Lifecycle;
//!
//! async fn upgrade(State(lifecycle): State<Lifecycle>, ws: WebSocketUpgrade) -> Response {
//!     // Bounded buffers, messages and frames (wsclose::config::recommended_config).
//!     let ws = wsclose::axum::recommended(ws);
//!     ws.on_upgrade(move |socket| async move {
//!         // An echo socket: nothing pushed, every message sent back.
//!         wsclose::axum::serve(socket, &lifecycle, stream::pending(), Some).await;
//!     })
//! }
//! ```

use std::future::{ready, Future};

use axum::extract::ws::{CloseFrame, Message as AxumMessage, WebSocket, WebSocketUpgrade};
use futures::{Sink, SinkExt, Stream, TryStreamExt};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

use crate::config::{recommended_config, DEFAULT_MAX_MESSAGE_SIZE};
use crate::{close, serve_websocket, Ending, Lifecycle};

/// `ws` with the recommended socket configuration for messages up to
/// [`DEFAULT_MAX_MESSAGE_SIZE`] (64 KiB): [`recommended_config`], applied by [`configure`].
///
/// Without it axum keeps tungstenite's defaults: a 128 KiB read buffer per connection,
/// messages up to 64 MiB in frames up to 16 MiB, and an unbounded write buffer, so that a few
/// peers can make the server hold hundreds of MiB (the crate's README has the figures).
pub fn recommended<F>(ws: WebSocketUpgrade<F>) -> WebSocketUpgrade<F> {
    configure(ws, &recommended_config(DEFAULT_MAX_MESSAGE_SIZE))
}

/// `ws` with every field of `config` that axum's upgrade exposes, which is all the ones
/// [`recommended_config`] sets: the read buffer, the write buffer and its bound, and the
/// message and frame limits (`None` meaning no limit). For another message limit:
/// `configure(ws, &recommended_config(1 << 20))`.
pub fn configure<F>(ws: WebSocketUpgrade<F>, config: &WebSocketConfig) -> WebSocketUpgrade<F> {
    ws.read_buffer_size(config.read_buffer_size)
        .write_buffer_size(config.write_buffer_size)
        .max_write_buffer_size(config.max_write_buffer_size)
        .max_message_size(config.max_message_size.unwrap_or(usize::MAX))
        .max_frame_size(config.max_frame_size.unwrap_or(usize::MAX))
}

/// [`serve_websocket`] for axum's socket: runs it to its end under `lifecycle`, with
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

/// axum's socket as a `Stream` + `Sink` of tungstenite messages.
pub fn adapt(
    socket: WebSocket,
) -> impl Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin {
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
        AxumMessage::Close(Some(frame)) => close::message(frame.code.into(), frame.reason.as_str()),
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
