//! Bounds on messages while they arrive, below tungstenite: each message must complete within
//! a deadline, and the bytes that every connection holds for unfinished messages share one
//! process-wide budget.
//!
//! tungstenite reserves a frame's declared length as soon as it reads the header, and keeps an
//! unfinished fragmented message in a buffer of its own, for as long as the peer likes: a Pong
//! in the middle of a message proves the peer alive, so the keepalive never drops it. A
//! `max_message_size` bounds one connection; nothing bounds the sum. So 10,000 peers that each
//! start a 64 KiB message and never finish it hold 1.3 GB.
//!
//! [`MessageGuard`] sits between the socket and tungstenite and reads the frame headers as the
//! bytes go by (it copies nothing). Before tungstenite sees a data frame's header, the guard
//! takes twice the frame's declared length from the shared [`MessageBudget`] (tungstenite's
//! frame buffer, and its copy in the message it assembles); the message gives it all back
//! when its last byte has passed. A message is *arriving* from the first byte of its
//! first frame to the last byte of its final frame, and must arrive within the guard's
//! `message_timeout`, whatever control frames come meanwhile. A read then fails with
//! [`MessageRefused`], which [`close::for_error`](crate::close::for_error) answers with
//! Close 1008 (policy violation):
//!
//! * [`MessageRefused::Budget`]: the budget could not cover the frame (the connection does not
//!   wait for budget: every other connection goes on);
//! * [`MessageRefused::Timeout`]: the message did not arrive within `message_timeout`.
//!
//! Browsers send each message as one frame, at once; what a guard costs a browser's connection
//! is two atomic operations per message. Its timer is armed only while a read waits in the
//! middle of a message.
//!
//! ```
//! use std::time::Duration;
//! use wsclose::assembly::{MessageBudget, MessageGuard};
//!
//! # async fn upgraded(tcp: tokio::net::TcpStream) {
//! // Once per process: 64 MiB for every message that is still arriving, on any connection.
//! let budget = MessageBudget::new(64 << 20);
//! // Per connection, around the upgraded stream, under tungstenite.
//! let guarded = MessageGuard::new(tcp, &budget, Duration::from_secs(10), 64 << 10);
//! let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
//!     guarded,
//!     tungstenite::protocol::Role::Server,
//!     None,
//! )
//! .await;
//! # drop(socket);
//! # }
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Why a [`MessageGuard`] refused a message. It reaches tungstenite as the source of an
/// `io::Error`, and [`close::for_error`](crate::close::for_error) answers it with Close 1008.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRefused {
    /// The process-wide [`MessageBudget`] could not cover the next frame.
    Budget,
    /// The message did not arrive within the guard's `message_timeout`.
    Timeout,
}

// By hand, not thiserror: the crate depends on futures, tokio, tokio-util and tungstenite only.
impl std::fmt::Display for MessageRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MessageRefused::Budget => "the server's budget for arriving messages is spent",
            MessageRefused::Timeout => "a message did not arrive within the message timeout",
        })
    }
}

impl std::error::Error for MessageRefused {}

/// The bytes that all connections together may hold for messages that are still arriving.
/// Clones share one budget.
#[derive(Debug, Clone)]
pub struct MessageBudget {
    bytes: Arc<Semaphore>,
}

impl MessageBudget {
    /// A budget of `bytes` (at most `u32::MAX` per frame is taken at once).
    pub fn new(bytes: usize) -> Self {
        MessageBudget {
            bytes: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// The bytes not held by any arriving message now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Takes `bytes` more for `held`, or says the budget cannot cover them.
    fn take(
        &self,
        bytes: u64,
        held: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), MessageRefused> {
        let Ok(bytes) = u32::try_from(bytes) else {
            return Err(MessageRefused::Budget);
        };
        if bytes == 0 {
            return Ok(());
        }
        let more = self
            .bytes
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| MessageRefused::Budget)?;
        match held {
            Some(held) => held.merge(more),
            None => *held = Some(more),
        }
        Ok(())
    }
}

/// Where the guard is in the byte stream.
#[derive(Debug, Clone, Copy)]
enum Position {
    /// Reading a frame header; `have` of its bytes are in `header`.
    Header { header: [u8; MAX_HEADER], have: u8 },
    /// Inside a frame's payload.
    Payload {
        /// Payload bytes still to come.
        remaining: u64,
        /// The frame ends its message (a final data frame).
        ends_message: bool,
    },
}

/// Bytes of budget a data frame takes per byte of its declared length: tungstenite reserves
/// the whole frame in its read buffer when it reads the header, then copies the payload into
/// the message it assembles, so an unfinished message is held twice.
pub const HELD_PER_BYTE: u64 = 2;

/// The longest frame header: 2 bytes, a 64-bit length, a 4-byte mask.
const MAX_HEADER: usize = 14;

/// A socket whose incoming messages must arrive within a deadline and within a shared budget;
/// see the [module](self). Writes pass through untouched.
pub struct MessageGuard<T> {
    io: T,
    budget: MessageBudget,
    message_timeout: Duration,
    /// Frames declared longer than this are passed to tungstenite untaken, which refuses them
    /// with 1009 (the socket's `max_frame_size`).
    max_frame_size: u64,
    position: Position,
    /// The budget the arriving message holds.
    held: Option<OwnedSemaphorePermit>,
    /// When the arriving message must have arrived; `None` between messages.
    deadline: Option<Instant>,
    /// The deadline's timer, armed only while a read waits mid-message.
    timer: Option<Pin<Box<Sleep>>>,
    /// Set once a message was refused: every later read fails the same way.
    refused: Option<MessageRefused>,
}

impl<T> MessageGuard<T> {
    /// Guards `io`: each message must arrive within `message_timeout`, and its frames are
    /// taken from `budget`. `max_frame_size` is the socket's own limit (frames above it are left
    /// to tungstenite's 1009).
    pub fn new(
        io: T,
        budget: &MessageBudget,
        message_timeout: Duration,
        max_frame_size: usize,
    ) -> Self {
        MessageGuard {
            io,
            budget: budget.clone(),
            message_timeout,
            max_frame_size: max_frame_size as u64,
            position: Position::Header {
                header: [0; MAX_HEADER],
                have: 0,
            },
            held: None,
            deadline: None,
            timer: None,
            refused: None,
        }
    }

    /// The wrapped socket.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The wrapped socket, mutably. Bytes read from it directly pass the guard unseen.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Follows the frames through `bytes`, taking budget at each data frame's header and giving
    /// it back at each message's end.
    fn track(&mut self, mut bytes: &[u8]) -> Result<(), MessageRefused> {
        while !bytes.is_empty() {
            match &mut self.position {
                Position::Payload {
                    remaining,
                    ends_message,
                } => {
                    let step = (*remaining).min(bytes.len() as u64);
                    *remaining -= step;
                    bytes = &bytes[step as usize..];
                    if *remaining == 0 {
                        let ends_message = *ends_message;
                        self.frame_done(ends_message);
                    }
                }
                Position::Header { header, have } => {
                    header[usize::from(*have)] = bytes[0];
                    *have += 1;
                    bytes = &bytes[1..];
                    let Some((fin, opcode, length)) = parse_header(&header[..usize::from(*have)])
                    else {
                        continue;
                    };
                    // Continuation (0), text (1) and binary (2) carry a message's bytes; the
                    // rest are control frames (at most 125 bytes) or invalid, which tungstenite
                    // refuses by itself.
                    let data = opcode <= 2;
                    if data {
                        self.deadline
                            .get_or_insert_with(|| Instant::now() + self.message_timeout);
                        if length <= self.max_frame_size {
                            self.budget.take(length * HELD_PER_BYTE, &mut self.held)?;
                        }
                    }
                    let ends_message = data && fin;
                    self.position = Position::Payload {
                        remaining: length,
                        ends_message,
                    };
                    if length == 0 {
                        self.frame_done(ends_message);
                    }
                }
            }
        }
        Ok(())
    }

    /// A frame's last byte has passed.
    fn frame_done(&mut self, ends_message: bool) {
        self.position = Position::Header {
            header: [0; MAX_HEADER],
            have: 0,
        };
        if ends_message {
            self.held = None;
            self.deadline = None;
            self.timer = None;
        }
    }

    /// Refuses the connection's messages from now on.
    fn refuse(&mut self, why: MessageRefused) -> io::Error {
        self.refused = Some(why);
        self.held = None;
        self.timer = None;
        io::Error::other(why)
    }
}

/// `(fin, opcode, payload length)` once `header` holds a whole frame header, else `None`.
fn parse_header(header: &[u8]) -> Option<(bool, u8, u64)> {
    let [first, second, rest @ ..] = header else {
        return None;
    };
    let (length, extended) = match second & 0x7f {
        126 => (None, 2),
        127 => (None, 8),
        short => (Some(u64::from(short)), 0),
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    if rest.len() < extended + mask {
        return None;
    }
    let length = length.unwrap_or_else(|| {
        rest[..extended]
            .iter()
            .fold(0, |length, byte| (length << 8) | u64::from(*byte))
    });
    Some((first & 0x80 != 0, first & 0x0f, length))
}

impl<T: AsyncRead + Unpin> AsyncRead for MessageGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(why) = this.refused {
            return Poll::Ready(Err(io::Error::other(why)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Err(why) = this.track(&buf.filled()[before..]) {
                    buf.set_filled(before);
                    return Poll::Ready(Err(this.refuse(why)));
                }
                // A message that trickles in is as late as one that stalls.
                if this
                    .deadline
                    .is_some_and(|deadline| Instant::now() >= deadline)
                {
                    buf.set_filled(before);
                    return Poll::Ready(Err(this.refuse(MessageRefused::Timeout)));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                let Some(deadline) = this.deadline else {
                    return Poll::Pending;
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Err(this.refuse(MessageRefused::Timeout)))
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MessageGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A masked client frame: `fin`, `opcode`, `payload`.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            short @ 0..=125 => bytes.push(0x80 | short as u8),
            medium @ 126..=0xffff => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(medium as u16).to_be_bytes());
            }
            long => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&(long as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(&[0; 4]); // the mask: zeros leave the payload as it is
        bytes.extend_from_slice(payload);
        bytes
    }

    /// A guard over one end of an in-memory pipe, and the other end to write into.
    fn guarded(
        budget: &MessageBudget,
        timeout: Duration,
    ) -> (
        MessageGuard<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
    ) {
        let (ours, peer) = tokio::io::duplex(1 << 20);
        (MessageGuard::new(ours, budget, timeout, 1 << 20), peer)
    }

    async fn read_all_available(
        guard: &mut MessageGuard<tokio::io::DuplexStream>,
        len: usize,
    ) -> io::Result<()> {
        let mut buf = vec![0; len];
        guard.read_exact(&mut buf).await.map(drop)
    }

    #[tokio::test]
    async fn a_whole_message_takes_budget_and_gives_it_back() {
        let budget = MessageBudget::new(200_000);
        let (mut guard, mut peer) = guarded(&budget, Duration::from_secs(10));
        let message = frame(true, 2, &[7; 70_000]);
        peer.write_all(&message).await.unwrap();
        read_all_available(&mut guard, message.len()).await.unwrap();
        assert_eq!(budget.available(), 200_000);
        assert!(guard.deadline.is_none());
    }

    #[tokio::test]
    async fn an_unfinished_message_holds_its_frames_until_the_guard_goes() {
        let budget = MessageBudget::new(200_000);
        let (mut guard, mut peer) = guarded(&budget, Duration::from_secs(10));
        let start = frame(false, 2, &[1; 30_000]);
        let more = frame(false, 0, &[2; 20_000]);
        let pong = frame(true, 0xA, b"");
        for bytes in [&start, &pong, &more] {
            peer.write_all(bytes).await.unwrap();
            read_all_available(&mut guard, bytes.len()).await.unwrap();
        }
        assert_eq!(budget.available(), 100_000);
        let end = frame(true, 0, b"!");
        peer.write_all(&end).await.unwrap();
        read_all_available(&mut guard, end.len()).await.unwrap();
        assert_eq!(budget.available(), 200_000);
        peer.write_all(&start).await.unwrap();
        read_all_available(&mut guard, start.len()).await.unwrap();
        assert_eq!(budget.available(), 140_000);
        drop(guard);
        assert_eq!(budget.available(), 200_000);
    }

    #[tokio::test]
    async fn a_frame_the_budget_cannot_cover_is_refused_before_its_bytes_pass() {
        let budget = MessageBudget::new(100_000);
        let (mut first, mut first_peer) = guarded(&budget, Duration::from_secs(10));
        let (mut second, mut second_peer) = guarded(&budget, Duration::from_secs(10));
        let start = frame(false, 2, &[1; 40_000]);
        first_peer.write_all(&start).await.unwrap();
        read_all_available(&mut first, start.len()).await.unwrap();
        second_peer.write_all(&start).await.unwrap();
        let mut buf = vec![0; start.len()];
        let error = second.read(&mut buf).await.unwrap_err();
        assert_eq!(
            error
                .get_ref()
                .and_then(|e| e.downcast_ref::<MessageRefused>()),
            Some(&MessageRefused::Budget)
        );
        // Refused for good; the first connection is untouched.
        assert!(second.read(&mut buf).await.is_err());
        assert_eq!(budget.available(), 20_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_must_arrive_within_the_timeout_whatever_pongs_come() {
        let budget = MessageBudget::new(100_000);
        let (mut guard, mut peer) = guarded(&budget, Duration::from_secs(10));
        let start = frame(false, 1, b"half");
        peer.write_all(&start).await.unwrap();
        read_all_available(&mut guard, start.len()).await.unwrap();
        let pong = frame(true, 0xA, b"");
        let begun = Instant::now();
        let mut buf = [0; 64];
        let error = loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            peer.write_all(&pong).await.unwrap();
            if let Err(error) = guard.read(&mut buf).await {
                break error;
            }
        };
        assert!(
            begun.elapsed() <= Duration::from_secs(12),
            "{:?}",
            begun.elapsed()
        );
        assert_eq!(
            error
                .get_ref()
                .and_then(|e| e.downcast_ref::<MessageRefused>()),
            Some(&MessageRefused::Timeout)
        );
        // A silent peer is refused at the deadline too: the read wakes by itself.
        let (mut silent, mut silent_peer) = guarded(&budget, Duration::from_secs(10));
        silent_peer.write_all(&start).await.unwrap();
        read_all_available(&mut silent, start.len()).await.unwrap();
        let begun = Instant::now();
        assert!(silent.read(&mut buf).await.is_err());
        assert_eq!(begun.elapsed(), Duration::from_secs(10));
    }

    #[test]
    fn headers_parse_at_every_length_form() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let bytes = frame(true, 2, &vec![0; len]);
            let header = &bytes[..bytes.len() - len];
            assert_eq!(parse_header(header), Some((true, 2, len as u64)), "{len}");
            assert_eq!(parse_header(&header[..header.len() - 1]), None, "{len}");
        }
    }
}
