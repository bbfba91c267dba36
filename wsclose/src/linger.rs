//! A lingering close for the upgraded connection (feature `linger`).
//!
//! Closing a socket whose receive buffer still holds unread bytes makes the kernel send a TCP
//! reset instead of a FIN, and a reset may destroy data the peer has not read yet: the Close
//! frame the server just sent. That happens exactly when the server fails a connection for a
//! policy (1002, 1007, 1008, 1009) while the peer is still sending, for example the rest of a
//! message that was too big: Chromium then reported `1006` instead of the server's `1009`.
//!
//! [`LingeringClose`] wraps the connection, below tungstenite. Reads and writes pass through.
//! When it is dropped, it sends FIN at once, so the peer sees the end of the connection as
//! promptly as without it, then discards whatever the peer still sends until the peer closes
//! too, for at most the linger time, in a task of its own.
//!
//! [`serve`] runs [`serve_websocket`] and then tells the socket when nothing is left to drain,
//! so that the drop closes it at once, with no task and no timer: after a complete close
//! handshake (the peer's Close was read, and a peer sends nothing after its Close, RFC 6455
//! §5.5.1), and after `pong_timeout` (the peer sent nothing for that long, so nothing is
//! unread, and it has most likely vanished: draining would only hold its connection for the
//! linger time). That is how nearly every connection ends.
//!
//! ```no_run
//! use std::time::Duration;
//! use futures::stream;
//! use wsclose::linger::{self, LingeringClose};
//! use wsclose::{recommended_config, Lifecycle};
//!
//! # async fn upgraded(tcp: tokio::net::TcpStream, lifecycle: Lifecycle) {
//! // Below tungstenite, around the TCP stream: drain for at most close_timeout after the FIN.
//! let io = LingeringClose::new(tcp, lifecycle.timing().close_timeout, ());
//! let config = recommended_config(64 << 10);
//! let socket = tokio_tungstenite::accept_async_with_config(io, Some(config)).await.unwrap();
//! linger::serve(socket, &lifecycle, stream::pending(), Some).await;
//! # }
//! ```

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;

use crate::assembly::MessageGuard;
use crate::{serve_websocket, EndReason, Ending, Lifecycle};

/// The most bytes one read of the drain takes at a time.
const DRAIN_CHUNK: usize = 1024;

/// An I/O stream that half-closes and drains on drop instead of closing at once.
///
/// `G` is held until the connection is really closed, after the drain: a permit of a
/// connection cap, say (`()` for none).
pub struct LingeringClose<
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    G: Send + 'static = (),
> {
    /// `None` only once dropped.
    io: Option<T>,
    /// The longest time to keep draining after the FIN.
    linger: Duration,
    /// Held until the connection is closed.
    guard: Option<G>,
    /// Whether the drop drains; false once [`Linger::nothing_to_drain`] was called.
    drain: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static, G: Send + 'static> LingeringClose<T, G> {
    /// Wraps `io`; on drop it drains for at most `linger` (`close_timeout` is a good value),
    /// and only then drops `guard`.
    pub fn new(io: T, linger: Duration, guard: G) -> Self {
        LingeringClose {
            io: Some(io),
            linger,
            guard: Some(guard),
            drain: true,
        }
    }

    fn io(&mut self) -> Pin<&mut T> {
        Pin::new(self.io.as_mut().expect("taken only in drop"))
    }
}

// The guard is only held, never pinned: the wrapper moves freely whatever it holds.
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static, G: Send + 'static> Unpin
    for LingeringClose<T, G>
{
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static, G: Send + 'static> AsyncRead
    for LingeringClose<T, G>
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.io().poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static, G: Send + 'static> AsyncWrite
    for LingeringClose<T, G>
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static, G: Send + 'static> Drop
    for LingeringClose<T, G>
{
    fn drop(&mut self) {
        if !self.drain {
            // `io` and `guard` are dropped with `self`: FIN now, and the guard is released.
            return;
        }
        let (Some(mut io), Ok(runtime)) = (self.io.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let linger = self.linger;
        let guard = self.guard.take();
        runtime.spawn(async move {
            let _guard = guard;
            // FIN now: the peer sees the end of the connection at once.
            if io.shutdown().await.is_err() {
                return;
            }
            let drain = async {
                let mut scratch = [0u8; DRAIN_CHUNK];
                while matches!(io.read(&mut scratch).await, Ok(n) if n > 0) {}
            };
            let _ = tokio::time::timeout(linger, drain).await;
        });
    }
}

/// A socket that can be told that nothing is left to drain, so that its connection closes at
/// once instead of lingering: a [`LingeringClose`], and what wraps one.
pub trait Linger {
    /// Nothing more will arrive: the drop closes the connection without draining.
    fn nothing_to_drain(&mut self);
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static, G: Send + 'static> Linger
    for LingeringClose<T, G>
{
    fn nothing_to_drain(&mut self) {
        self.drain = false;
    }
}

impl<S: Linger + ?Sized> Linger for &mut S {
    fn nothing_to_drain(&mut self) {
        (**self).nothing_to_drain();
    }
}

impl<T: Linger> Linger for MessageGuard<T> {
    fn nothing_to_drain(&mut self) {
        self.get_mut().nothing_to_drain();
    }
}

impl<T: Linger + AsyncRead + AsyncWrite + Unpin> Linger for WebSocketStream<T> {
    fn nothing_to_drain(&mut self) {
        self.get_mut().nothing_to_drain();
    }
}

/// Tells `socket`, whose connection ended as `ending` says, whether anything is left to drain:
/// nothing after a complete close handshake, nor after its peer sent nothing for
/// `pong_timeout`. Call it when [`serve_websocket`] returns, before the socket is dropped
/// ([`serve`] does).
pub fn finish<S: Linger>(socket: &mut S, ending: &Ending) {
    if ending.close_handshake.is_some() || ending.reason == EndReason::PongTimeout {
        socket.nothing_to_drain();
    }
}

/// [`serve_websocket`] for a socket over a [`LingeringClose`]: runs it to its end, then drops
/// it, at once when [`finish`] finds nothing left to drain, else with the lingering drain.
///
/// Its future holds `outgoing` and `on_message` twice (once for `serve_websocket`'s future):
/// a server that counts the bytes of every connection's task calls `serve_websocket` and
/// [`finish`] itself.
// Not an `async fn`: an `async fn` stores each argument twice in its future.
#[allow(clippy::manual_async_fn)]
pub fn serve<'a, S, E, O, H>(
    socket: S,
    lifecycle: &'a Lifecycle,
    outgoing: O,
    on_message: H,
) -> impl Future<Output = Ending> + 'a
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Linger + Unpin + 'a,
    E: StdError + 'static,
    O: Stream<Item = Message> + Unpin + 'a,
    H: FnMut(Message) -> Option<Message> + 'a,
{
    async move {
        let mut socket = socket;
        // On a borrowed socket, so that it is stored once, here, and not again inside the
        // lifecycle's future.
        let ending = serve_websocket(&mut socket, lifecycle, outgoing, on_message).await;
        finish(&mut socket, &ending);
        ending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drop_sends_fin_then_discards_what_the_peer_still_sends() {
        let (server, mut peer) = tokio::io::duplex(64);
        let mut lingering = LingeringClose::new(server, Duration::from_secs(5), ());
        lingering.write_all(b"close").await.unwrap();
        drop(lingering);
        let mut got = Vec::new();
        // EOF arrives (the FIN) although the peer has not closed its side yet...
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"close");
        // ...and what the peer sends afterwards is taken and discarded, not refused.
        peer.write_all(&[0u8; 4096]).await.unwrap();
    }

    #[tokio::test]
    async fn the_guard_is_held_until_the_drain_ends() {
        let (server, peer) = tokio::io::duplex(64);
        let (guard, mut released) = tokio::sync::oneshot::channel::<()>();
        drop(LingeringClose::new(server, Duration::from_secs(5), guard));
        // Draining: the peer has not closed, so the guard is still held.
        tokio::task::yield_now().await;
        assert!(released.try_recv().is_err());
        drop(peer);
        // The peer closed: the drain ends and the guard is dropped.
        assert!(released.await.is_err());
    }

    #[tokio::test]
    async fn after_a_complete_handshake_the_drop_closes_at_once() {
        let (server, mut peer) = tokio::io::duplex(64);
        let lingering = LingeringClose::new(server, Duration::from_secs(5), ());
        let budget = crate::assembly::MessageBudget::new(1 << 20);
        let guarded = MessageGuard::new(lingering, &budget, Duration::from_secs(10), 1 << 16);
        let mut socket =
            WebSocketStream::from_raw_socket(guarded, tungstenite::protocol::Role::Server, None)
                .await;
        socket.nothing_to_drain();
        drop(socket);
        // Closed, not draining: what the peer sends now is refused.
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
        assert!(peer.write_all(&[0u8; 4096]).await.is_err());
    }
    // Paused: the refused peer never answers the server's Close, and its close_timeout passes
    // at once.
    #[tokio::test(start_paused = true)]
    async fn serve_closes_at_once_after_the_peers_close_and_drains_after_a_refusal() {
        use futures::{SinkExt, StreamExt};
        use tungstenite::protocol::{frame::coding::CloseCode, Role, WebSocketConfig};

        /// The server's end of a duplex pipe under a lingering close, served by [`serve`] with
        /// frames up to 1 KiB, after the peer sent `message`; returns the peer once `serve` has
        /// returned and the peer has read the server's Close.
        async fn served(message: Message) -> (Ending, WebSocketStream<tokio::io::DuplexStream>) {
            let (server, client) = tokio::io::duplex(1 << 16);
            let config = WebSocketConfig::default().max_frame_size(Some(1024));
            let server = WebSocketStream::from_raw_socket(
                LingeringClose::new(server, Duration::from_secs(30), ()),
                Role::Server,
                Some(config),
            )
            .await;
            let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            client.send(message).await.unwrap();
            let lifecycle = Lifecycle::new();
            let ending = serve(server, &lifecycle, futures::stream::pending(), Some).await;
            // The server's Close reply or refusal.
            assert!(matches!(client.next().await, Some(Ok(Message::Close(_)))));
            (ending, client)
        }

        let (ending, mut client) = served(crate::close::message(CloseCode::Normal, "")).await;
        assert!(ending.close_handshake.is_some());
        // Closed at once: the pipe refuses what the peer still writes.
        assert!(client.get_mut().write_all(&[0u8; 4096]).await.is_err());

        // A message over the limit: Close 1009, which the peer leaves unanswered.
        let (ending, mut client) = served(Message::binary(vec![0u8; 4096])).await;
        assert_eq!(ending.code, Some(CloseCode::Size));
        assert_eq!(ending.close_handshake, None);
        // Draining: what the peer still writes is taken and discarded.
        client.get_mut().write_all(&[0u8; 4096]).await.unwrap();
    }
}
