//! A lingering close for the upgraded connection.
//!
//! Closing a socket whose receive buffer still holds unread bytes makes the kernel send a TCP
//! reset instead of a FIN, and a reset may destroy data the peer has not read yet: the Close
//! frame the server just sent. That happens exactly when the server fails a connection for a
//! policy (1002, 1007, 1009) while the peer is still sending, for example the rest of a message
//! that was too big: Chromium then reported `1006` instead of the server's `1009`.
//!
//! [`LingeringClose`] wraps the connection. Reads and writes pass through. When it is dropped
//! (the moment the lifecycle ends, as before), it sends FIN at once, so the peer sees the end
//! of the connection as promptly as before, then discards whatever the peer still sends until
//! the peer closes too, for at most the linger time, in a task of its own.
//!
//! After a complete close handshake there is nothing to drain: the peer's Close was read, and a
//! peer sends nothing after its Close (RFC 6455, section 5.5.1). Nor after `pong_timeout`: the
//! peer sent nothing for that long, so nothing is unread, and it has most likely vanished (a
//! lost network), where draining would only hold its slot for the linger time.
//! [`Linger::nothing_to_drain`] says so, and the drop then closes the socket at once, with no
//! task and no timer: that is how nearly every connection ends, and the task and its timer
//! were most of what a close cost the server beyond the bare loop (`docs/performance.md`,
//! "Where the close handshake goes").

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::WebSocketStream;

use wsclose::assembly::MessageGuard;

use crate::accept::ConnectionSlot;

/// An I/O stream that half-closes and drains on drop instead of closing at once.
pub struct LingeringClose<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// `None` only once dropped.
    io: Option<T>,
    /// The longest time to keep draining after the FIN.
    linger: Duration,
    /// The connection's place under the cap, held until the socket is really closed.
    slot: Option<ConnectionSlot>,
    /// Whether the drop drains; false once [`Linger::nothing_to_drain`] was called.
    drain: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> LingeringClose<T> {
    /// Wraps `io`; on drop it drains for at most `linger` (the server uses `close_timeout`),
    /// and only then lets go of `slot`.
    pub fn new(io: T, linger: Duration, slot: Option<ConnectionSlot>) -> Self {
        LingeringClose {
            io: Some(io),
            linger,
            slot,
            drain: true,
        }
    }

    fn io(&mut self) -> Pin<&mut T> {
        Pin::new(self.io.as_mut().expect("taken only in drop"))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for LingeringClose<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.io().poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for LingeringClose<T> {
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

/// A socket that can be told that nothing is left to drain, so that its TCP connection closes
/// at once instead of lingering.
pub trait Linger {
    /// Nothing more will arrive (the close handshake completed), or nothing arrived for
    /// `pong_timeout`: the drop closes the connection without draining.
    fn nothing_to_drain(&mut self);
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Linger
    for WebSocketStream<MessageGuard<LingeringClose<T>>>
{
    fn nothing_to_drain(&mut self) {
        self.get_mut().get_mut().drain = false;
    }
}

/// The in-memory pipe of the tests has no TCP connection to linger.
#[cfg(test)]
impl Linger for WebSocketStream<tokio::io::DuplexStream> {
    fn nothing_to_drain(&mut self) {}
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for LingeringClose<T> {
    fn drop(&mut self) {
        if !self.drain {
            // `io` and `slot` are dropped with `self`: FIN now, and the slot is free.
            return;
        }
        let (Some(mut io), Ok(runtime)) = (self.io.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let linger = self.linger;
        let slot = self.slot.take();
        runtime.spawn(async move {
            let _slot = slot;
            // FIN now: the peer sees the end of the connection at once.
            if io.shutdown().await.is_err() {
                return;
            }
            let drain = async {
                let mut scratch = [0u8; 1024];
                while matches!(io.read(&mut scratch).await, Ok(n) if n > 0) {}
            };
            let _ = tokio::time::timeout(linger, drain).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drop_sends_fin_then_discards_what_the_peer_still_sends() {
        let (server, mut peer) = tokio::io::duplex(64);
        let mut lingering = LingeringClose::new(server, Duration::from_secs(5), None);
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
    async fn after_a_complete_handshake_the_drop_closes_at_once() {
        let (server, mut peer) = tokio::io::duplex(64);
        let lingering = LingeringClose::new(server, Duration::from_secs(5), None);
        let budget = wsclose::assembly::MessageBudget::new(1 << 20);
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
}
