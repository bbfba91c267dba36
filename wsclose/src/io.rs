//! Bounded writes: every write and flush finishes within `write_timeout`, or the peer is
//! dropped. [`serve_websocket`](crate::serve_websocket) writes through these; they are public
//! for code that drives a socket some other way.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Sink, SinkExt};
use tokio::time::Sleep;
use tungstenite::Message;

use crate::{EndReason, Ending, Initiator};

/// One bounded write: a message to send, or what the socket has queued to flush.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Send this message, and flush.
    Send(Message),
    /// Flush what the socket has queued (tungstenite's Pong, say).
    Flush,
}

/// Performs `write` within `write_timeout`. A peer that cannot take it in time, or whose
/// connection is gone, yields the [`Ending`] to return.
///
/// One future for sends and flushes, so a loop that writes in several places can await it in
/// one place.
// Not an `async fn`: see the comment in the body.
#[allow(clippy::manual_async_fn)]
pub fn write<'a, W, E>(
    writer: &'a mut W,
    write: Write,
    write_timeout: Duration,
) -> impl Future<Output = Result<(), Ending>> + 'a
where
    W: Sink<Message, Error = E> + Unpin,
    E: StdError,
{
    // An `async move` block, not an `async fn`: the arguments are stored once in the future,
    // not twice.
    async move {
        let written = match write {
            Write::Send(message) => Bounded::new(writer.send(message), write_timeout).await,
            Write::Flush => Bounded::new(writer.flush(), write_timeout).await,
        };
        match written {
            Some(Ok(())) => Ok(()),
            Some(Err(_gone)) => Err(Ending::peer_gone()),
            None => Err(Ending::dropped(Initiator::Server, EndReason::WriteTimeout)),
        }
    }
}

/// A write, bounded by `limit` from its first poll: `Some(output)`, or `None` when the limit
/// passed first.
///
/// Not `tokio::time::timeout`: that makes its timer up front, and making a timer clones the
/// runtime's handle, a count that every socket on every core writes to. Most writes finish at
/// their first poll, so here the timer is made only when a write has to wait, and it lives on
/// the heap, not in the connection's future (docs/performance.md, "A lock on every turn").
struct Bounded<F> {
    write: F,
    limit: Duration,
    /// Made at the first poll that has to wait.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<F> Bounded<F> {
    fn new(write: F, limit: Duration) -> Self {
        Bounded {
            write,
            limit,
            timer: None,
        }
    }
}

impl<F: Future + Unpin> Future for Bounded<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = Pin::new(&mut self.write).poll(cx) {
            return Poll::Ready(Some(output));
        }
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        timer.as_mut().poll(cx).map(|()| None)
    }
}

/// Writes and flushes one message, bounded by `write_timeout` (see [`write()`]).
pub fn send<'a, W, E>(
    writer: &'a mut W,
    message: Message,
    write_timeout: Duration,
) -> impl Future<Output = Result<(), Ending>> + 'a
where
    W: Sink<Message, Error = E> + Unpin,
    E: StdError,
{
    write(writer, Write::Send(message), write_timeout)
}

/// Flushes what the socket has queued (tungstenite's Pong, say), bounded like [`send`].
pub fn flush<W, E>(
    writer: &mut W,
    write_timeout: Duration,
) -> impl Future<Output = Result<(), Ending>> + '_
where
    W: Sink<Message, Error = E> + Unpin,
    E: StdError,
{
    write(writer, Write::Flush, write_timeout)
}
