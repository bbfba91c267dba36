//! Bounded writes: every write and flush finishes within `write_timeout`, or the peer is
//! dropped. [`serve_websocket`](crate::serve_websocket) writes through these; they are public
//! for code that drives a socket some other way.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use futures::{Sink, SinkExt};
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
            Write::Send(message) => tokio::time::timeout(write_timeout, writer.send(message)).await,
            Write::Flush => tokio::time::timeout(write_timeout, writer.flush()).await,
        };
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_gone)) => Err(Ending::peer_gone()),
            Err(_elapsed) => Err(Ending::dropped(Initiator::Server, EndReason::WriteTimeout)),
        }
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
