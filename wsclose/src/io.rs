//! Bounded writes: every write and flush finishes within `write_timeout`, or the peer is
//! dropped. [`serve_websocket`](crate::serve_websocket) writes through these; they are public
//! for code that drives a socket some other way.

use std::error::Error as StdError;
use std::time::Duration;

use futures::{Sink, SinkExt};
use tungstenite::Message;

use crate::{EndReason, Ending, Initiator};

/// Writes and flushes one message, bounded by `write_timeout`. A peer that cannot take it in
/// time, or whose connection is gone, yields the [`Ending`] to return.
pub async fn send<W, E>(
    writer: &mut W,
    message: Message,
    write_timeout: Duration,
) -> Result<(), Ending>
where
    W: Sink<Message, Error = E> + Unpin,
    E: StdError,
{
    bounded(writer.send(message), write_timeout).await
}

/// Flushes what the socket has queued (tungstenite's Pong, say), bounded like [`send`].
pub async fn flush<W, E>(writer: &mut W, write_timeout: Duration) -> Result<(), Ending>
where
    W: Sink<Message, Error = E> + Unpin,
    E: StdError,
{
    bounded(writer.flush(), write_timeout).await
}

async fn bounded<E>(
    write: impl std::future::Future<Output = Result<(), E>>,
    write_timeout: Duration,
) -> Result<(), Ending> {
    match tokio::time::timeout(write_timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_gone)) => Err(Ending::peer_gone()),
        Err(_elapsed) => Err(Ending::dropped(Initiator::Server, EndReason::WriteTimeout)),
    }
}
