//! # wsclose
//!
//! The WebSocket connection lifecycle that closes correctly. Call [`serve_websocket`] with an
//! upgraded socket and it gets the whole lifecycle:
//!
//! * it keeps reading, so Ping and Close are always answered and a browser's `close` event
//!   fires in about a millisecond, instead of after its closing-handshake timeout (60 s in
//!   Chromium) with `1006`;
//! * it pings, and drops a peer that stays silent for `pong_timeout`;
//! * it bounds every write by `write_timeout`, and pulls the next outgoing message only once
//!   the last one is written;
//! * on [`Lifecycle::shutdown`] it sends Close 1001 (or 1012) to every socket and waits at
//!   most `close_timeout` for the answers;
//! * it drops the socket, and so the TCP connection, the moment the close handshake is over.
//!
//! ```no_run
//! use futures::stream;
//! use tokio::net::TcpListener;
//! use wsclose::{serve_websocket, Lifecycle};
//!
//! # async fn run() -> std::io::Result<()> {
//! let lifecycle = Lifecycle::new();
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     lifecycle.spawn({
//!         let lifecycle = lifecycle.clone();
//!         async move {
//!             let Ok(socket) = tokio_tungstenite::accept_async(tcp).await else { return };
//!             // Nothing to push; every message is sent back.
//!             serve_websocket(socket, &lifecycle, stream::pending(), Some).await;
//!         }
//!     });
//! }
//! // On SIGTERM: `lifecycle.shutdown().await` closes every socket with 1001 and waits.
//! # }
//! ```
//!
//! The socket is any `Stream<Item = Result<Message, E>> + Sink<Message>` of tungstenite
//! [`Message`]s. The features `axum` and `warp` add [`axum::serve`](crate::axum) and
//! [`warp::serve`](crate::warp) for those frameworks' sockets.
//!
//! # Layout
//!
//! * [`serve_websocket`] (`serve.rs`): the lifecycle, top to bottom. Start reading here.
//! * [`Lifecycle`]: the timing, the shutdown signal and code, and the count of running
//!   sockets that [`Lifecycle::shutdown`] waits for.
//! * [`Timing`]: the four timing values, their defaults and how they relate.
//! * [`Ending`], [`EndReason`], [`Initiator`]: how a connection ended.
//! * [`close`]: Close frames, and the close code a read error deserves.
//! * [`io`]: writes bounded by `write_timeout`.
//!
//! # Features
//!
//! * `axum`, `warp`: the adapters.
//! * `env`: [`Timing::from_env`], reading `WSCLOSE_PING_INTERVAL` and the rest.
//! * `clap`: `#[derive(clap::Args)]` on [`Timing`] (`--ping-interval 54s` and the rest).
//! * `test-util`: `test_util`, a connected pair of sockets over an in-memory pipe, and short
//!   timing for tests under paused time.

#![deny(missing_docs)]

/// The README's code, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(feature = "axum")]
pub mod axum;
pub mod close;
mod ending;
pub mod io;
mod lifecycle;
mod serve;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod timing;
#[cfg(feature = "warp")]
pub mod warp;

pub use ending::{EndReason, Ending, Initiator};
pub use lifecycle::{Lifecycle, SHUTDOWN_GRACE};
pub use serve::serve_websocket;
pub use timing::{Timing, TimingError};
/// A close code (re-exported from `tungstenite`).
pub use tungstenite::protocol::frame::coding::CloseCode;
/// The message type [`serve_websocket`] reads and writes (re-exported from `tungstenite`).
pub use tungstenite::Message;
