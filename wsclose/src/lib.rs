// The crate's page is its README (as on crates.io), whose axum program compiles as a doc test
// with the `axum` feature (docs.rs builds with every feature); then the layout, with links.
#![cfg_attr(feature = "axum", doc = include_str!("../README.md"))]
#![cfg_attr(
    not(feature = "axum"),
    doc = "The WebSocket connection lifecycle that closes correctly: [`serve_websocket`]. \
           The whole page, README included, is built with `--all-features`."
)]
//!
//! # Layout
//!
//! * [`serve_websocket`] (`serve.rs`): the lifecycle, top to bottom. Start reading here.
//! * [`Lifecycle`]: the timing, the shutdown signal and code, and the count of running
//!   sockets that [`Lifecycle::shutdown`] waits for.
//! * [`Timing`]: the four timing values, their defaults and how they relate.
//! * [`config`]: [`recommended_config`], the socket configuration that bounds what a peer can
//!   make a connection hold (read buffer, write buffer, message and frame size).
//! * [`Ending`], [`EndReason`], [`Initiator`]: how a connection ended.
//! * [`close`]: Close frames, and the close code a read error deserves.
//! * [`assembly`]: a deadline for each incoming message to arrive, and one budget for the
//!   bytes of every message still arriving, below tungstenite.
//! * [`io`]: writes bounded by `write_timeout`.
//! * `axum` and `warp` (features of the same names): the adapters for those frameworks'
//!   sockets, and `recommended` to apply the recommended configuration to their upgrades; `test_util` (feature `test-util`): a connected pair of sockets for tests.
//! * `linger` (feature `linger`): a lingering close (FIN, then drain) below tungstenite, so
//!   that a reset never destroys the server's last Close frame, and `linger::serve`, which
//!   closes at once when nothing is left to drain.
//! * `hyper` (feature `hyper`): the upgrade of a hyper or warp server finished by hand, so that
//!   its socket gets the recommended read buffer (warp's `Ws` cannot set it), under a lingering
//!   close.
//!
//! # How a close went: one type per meaning
//!
//! Across the workspace (this crate, the demo server, `wsclose-check`, the demo page's wasm,
//! the bench and the end-to-end tests) each meaning has one type. The names it replaced:
//!
//! | old name (where) | now | meaning |
//! |---|---|---|
//! | `Ending` (here) | [`Ending`] | how one connection the server served ended: [`Initiator`], code, [`EndReason`], handshake time |
//! | `Closed` (demo server) | [`Ending`], with [`EndReason::Application`] for its broken endpoints' own ends | the same |
//! | `RawCloseOutcome` (check's raw client) | `wsclose_check::Ended` | how a connection the check held ended: a `How` (`close`, `fin`, `rst`, `open`, `error`), with the Close frame or what was wrong |
//! | `RawClosed` and `CloseResult` (e2e) | `CloseResult { answer: Ended, .. }` (e2e) | what came back after a test client sent Close |
//! | `ReadEnd`'s fields (check `--idle`), `TabEnding`'s (check `--deploy`) | an `Ended`, with the time or the browser's `clean` beside it | the same as `Ended` |
//! | `CloseBehaviour` (check) | `ServerCloseBehaviour` | what a server did after the check's Close(1000), classified for the browsers' predictions |
//! | `CloseInfo` (demo page) | `CloseInfo` (without its time) | what a browser's `close` event said: code, reason, `wasClean` |
//! | `CloseReport` (demo page) | `CloseReport { elapsed_ms, close: CloseInfo, messages_received }` | one probe's result |
//! | `Ending` (bench's scale phase) | `TimedTally` | how many connections of a storm or a shutdown ended which way, with the times |
//!
//! Without a framework, over tokio-tungstenite:
//!
//! ```no_run
//! use futures::stream;
//! use tokio::net::TcpListener;
//! use wsclose::config::{recommended_config, DEFAULT_MAX_MESSAGE_SIZE};
//! use wsclose::{serve_websocket, Lifecycle};
//!
//! # async fn run() -> std::io::Result<()> {
//! let lifecycle = Lifecycle::new();
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     // Counted from before the handshake, so a shutdown waits for this socket too.
//!     lifecycle.spawn({
//!         let lifecycle = lifecycle.clone();
//!         async move {
//!             let config = recommended_config(DEFAULT_MAX_MESSAGE_SIZE);
//!             let accept = tokio_tungstenite::accept_async_with_config(tcp, Some(config));
//!             let Ok(socket) = accept.await else { return };
//!             // Nothing to push; every message is sent back.
//!             serve_websocket(socket, &lifecycle, stream::pending(), Some).await;
//!         }
//!     });
//! }
//! // On SIGTERM: `lifecycle.shutdown().await` closes every socket with 1001 and waits.
//! # }
//! ```

#![deny(missing_docs)]

pub mod assembly;
#[cfg(feature = "axum")]
pub mod axum;
pub mod close;
pub mod config;
mod ending;
#[cfg(feature = "hyper")]
pub mod hyper;
pub mod io;
mod lifecycle;
#[cfg(feature = "linger")]
pub mod linger;
mod serve;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod timing;
mod wait;
#[cfg(feature = "warp")]
pub mod warp;

pub use config::recommended_config;
pub use ending::{EndReason, Ending, Initiator};
pub use lifecycle::{Lifecycle, SHUTDOWN_GRACE};
pub use serve::serve_websocket;
pub use timing::{Timing, TimingError};
/// A close code (re-exported from `tungstenite`).
pub use tungstenite::protocol::frame::coding::CloseCode;
/// The message type [`serve_websocket`] reads and writes (re-exported from `tungstenite`).
pub use tungstenite::Message;
