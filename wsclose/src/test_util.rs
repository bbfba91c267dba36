//! Test a handler, an outgoing stream or a whole server loop without sockets (feature
//! `test-util`): the two ends of one connection as tokio-tungstenite streams over an in-memory
//! pipe, and short timing for tests under paused time.
//!
//! ```
//! use futures::{stream, SinkExt, StreamExt};
//! use wsclose::{serve_websocket, test_util, Lifecycle, Message};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let (server, mut client) = test_util::pair(None).await;
//! let lifecycle = Lifecycle::new().with_timing(test_util::TIMING);
//! tokio::spawn(async move { serve_websocket(server, &lifecycle, stream::pending(), Some).await });
//! client.send(Message::text("hi")).await.unwrap();
//! assert_eq!(client.next().await.unwrap().unwrap(), Message::text("hi"));
//! # }
//! ```

use std::time::Duration;

use tokio::io::DuplexStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::Timing;

/// One end of a [`pair`].
pub type Socket = WebSocketStream<DuplexStream>;

/// Bytes of pipe each way in a [`pair`]: enough that no test write ever waits for the reader.
pub const PIPE_BYTES: usize = 64 * 1024;

/// Short timing for tests under paused time: a ping at 9 s, a silent peer dropped at 10 s,
/// writes bounded by 2 s, a close handshake by 3 s.
pub const TIMING: Timing = Timing {
    ping_interval: Duration::from_secs(9),
    pong_timeout: Duration::from_secs(10),
    write_timeout: Duration::from_secs(2),
    close_timeout: Duration::from_secs(3),
};

/// The two ends of one connection, `(server, client)`, over [`PIPE_BYTES`] of in-memory pipe;
/// the server's end has `config`.
pub async fn pair(config: Option<WebSocketConfig>) -> (Socket, Socket) {
    pair_with(PIPE_BYTES, config).await
}

/// Like [`pair`], with the server's end under a [`LingeringClose`](crate::linger::LingeringClose)
/// that lingers for `TIMING.close_timeout` (feature `linger`).
#[cfg(feature = "linger")]
pub async fn lingering_pair(
    config: Option<WebSocketConfig>,
) -> (
    WebSocketStream<crate::linger::LingeringClose<DuplexStream>>,
    Socket,
) {
    let (server, client) = tokio::io::duplex(PIPE_BYTES);
    let server = crate::linger::LingeringClose::new(server, TIMING.close_timeout, ());
    (
        WebSocketStream::from_raw_socket(server, Role::Server, config).await,
        WebSocketStream::from_raw_socket(client, Role::Client, None).await,
    )
}

/// Like [`pair`], with `pipe` bytes of pipe each way (a small pipe makes writes wait).
pub async fn pair_with(pipe: usize, config: Option<WebSocketConfig>) -> (Socket, Socket) {
    let (server, client) = tokio::io::duplex(pipe);
    (
        WebSocketStream::from_raw_socket(server, Role::Server, config).await,
        WebSocketStream::from_raw_socket(client, Role::Client, None).await,
    )
}
