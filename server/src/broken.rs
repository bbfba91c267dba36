//! **BROKEN ON PURPOSE.** The bug wsclose exists to show, and the two Rust traps, each a small
//! function with the same arguments as the fix.
//!
//! The fix is [`wsclose::serve_websocket`]: read it first (`wsclose/src/serve.rs`). Each
//! function here differs from it in one way:
//!
//! * [`push_without_reading`]: never reads, so the peer's Close is never answered;
//! * [`break_on_close`]: reads, but returns on the peer's Close, so the reply is never flushed;
//! * [`lingering_tcp`]: the handshake is right, but the TCP connection outlives it.

use std::error::Error as StdError;
use std::pin::pin;
use std::time::Duration;

use futures::{Sink, Stream, StreamExt};
use tokio::time::{interval_at, sleep, Instant, MissedTickBehavior};
use wsclose::{
    close, io, serve_websocket, CloseCode, EndReason, Ending, Initiator, Lifecycle, Message,
};

/// How many liveness writes [`push_without_reading`] makes per `pong_timeout`. A vanished
/// peer is noticed on the second write after it left (the first draws a TCP reset, the second
/// fails), so with three per `pong_timeout` its slot is free again within `pong_timeout`.
pub const NO_DRAIN_LIVENESS_WRITES: u32 = 3;

/// How long [`push_without_reading`] holds a connection at most, in `pong_timeout`s. It never
/// reads, so nothing the peer sends (a flood included) can end it; this does. Twice the default
/// `pong_timeout` is 120 s, longer than any browser's closing-handshake timeout (Chromium's
/// 60 s), so the bug still shows in full.
pub const NO_DRAIN_LIFETIME_PONG_TIMEOUTS: u32 = 2;

/// The reason [`push_without_reading`] gives when it drops a connection at the end of its
/// lifetime (the `reason` label of `wsclose_closes_total`).
pub const LIFETIME: &str = "lifetime";

/// The reason [`break_on_close`] gives when it returns on the peer's Close and drops the
/// queued reply.
pub const REPLY_DROPPED: &str = "reply_dropped";

/// How long [`lingering_tcp`] keeps the TCP connection open after a finished close handshake.
pub const LINGERING_TCP_FOR: Duration = Duration::from_secs(5);

/// **BROKEN ON PURPOSE.** The bug: a server that only writes.
///
/// The read half is split off and never polled, so nobody ever reads the browser's Close
/// frame and nobody answers it. The browser waits for its closing-handshake timeout and
/// reports `1006, wasClean=false`. Compare with [`serve_websocket`]: the only real difference
/// is its `socket.next()` arm.
///
/// Never reading also means never seeing a peer leave. So that an abandoned connection cannot
/// hold its slot forever (with nothing to push nothing would ever be written), it pings
/// [`NO_DRAIN_LIVENESS_WRITES`] times per `pong_timeout`: the write fails once the peer is
/// gone. The pongs are never read, so the Close still goes unanswered. A peer that is alive but
/// never reads either is dropped after [`NO_DRAIN_LIFETIME_PONG_TIMEOUTS`] × `pong_timeout`.
pub async fn push_without_reading<S, E, O>(socket: S, lifecycle: &Lifecycle, outgoing: O) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin,
    E: StdError,
    O: Stream<Item = Message>,
{
    let timing = lifecycle.timing();
    let (mut writer, _reader_that_nobody_polls) = socket.split();
    let mut outgoing = pin!(outgoing);
    let period = timing.pong_timeout / NO_DRAIN_LIVENESS_WRITES;
    let mut liveness = interval_at(Instant::now() + period, period);
    liveness.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut lifetime = pin!(sleep(timing.pong_timeout * NO_DRAIN_LIFETIME_PONG_TIMEOUTS));
    loop {
        let (message, closing) = tokio::select! {
            () = &mut lifetime => {
                return Ending::dropped(Initiator::Server, EndReason::Application(LIFETIME));
            }
            () = lifecycle.shutting_down() => {
                let code = lifecycle.shutdown_code();
                (close::shutdown(code), Some((code, EndReason::Shutdown)))
            }
            next = outgoing.next() => match next {
                Some(message) => (message, None),
                None => (close::message(CloseCode::Normal, ""), Some((CloseCode::Normal, EndReason::Done))),
            },
            _ = liveness.tick() => (Message::Ping(Default::default()), None),
        };
        // Fails once the peer is gone (after the browser gave up and closed TCP).
        if let Err(ending) = io::send(&mut writer, message, timing.write_timeout).await {
            return ending;
        }
        if let Some((code, reason)) = closing {
            // Nobody will read the answer, so there is no handshake to wait for.
            return Ending::dropped(Initiator::Server, reason).with_code(code);
        }
    }
}

/// **BROKEN ON PURPOSE.** The first Rust trap: a read loop that `break`s on `Message::Close`.
///
/// It reads everything, like [`serve_websocket`], but returns the moment the peer's Close
/// arrives. tungstenite only *queued* the Close reply when it read the peer's Close; the reply
/// would be written by the next read, which never comes: the socket is dropped with the reply
/// unsent. The browser sees the TCP connection end without a Close frame, about a millisecond
/// after `close()`: `1006`, `wasClean=false`. The fix is to keep polling until the stream ends.
pub async fn break_on_close<S, E, H>(
    mut socket: S,
    lifecycle: &Lifecycle,
    mut on_message: H,
) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin,
    E: StdError,
    H: FnMut(Message) -> Option<Message>,
{
    let timing = lifecycle.timing();
    let mut pings = interval_at(Instant::now() + timing.ping_interval, timing.ping_interval);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // Bounded like every endpoint: shutdown, keepalive, and a peer silent for pong_timeout.
        let message = tokio::select! {
            next = tokio::time::timeout(timing.pong_timeout, socket.next()) => match next {
                Ok(Some(Ok(message))) => message,
                Ok(_) => return Ending::peer_gone(),
                Err(_silent) => return Ending::dropped(Initiator::Server, EndReason::PongTimeout),
            },
            () = lifecycle.shutting_down() => {
                let code = lifecycle.shutdown_code();
                return match io::send(&mut socket, close::shutdown(code), timing.write_timeout).await {
                    Ok(()) => Ending::dropped(Initiator::Server, EndReason::Shutdown).with_code(code),
                    Err(ending) => ending,
                };
            }
            _ = pings.tick() => {
                if let Err(ending) = io::send(&mut socket, Message::Ping(Default::default()), timing.write_timeout).await {
                    return ending;
                }
                continue;
            }
        };
        if message.is_ping() {
            // As in the fix: the queued Pong goes out within write_timeout, or the peer goes.
            if let Err(ending) = io::flush(&mut socket, timing.write_timeout).await {
                return ending;
            }
        }
        if message.is_close() {
            let code = close::code(&message).unwrap_or(CloseCode::Status);
            // The bug: returning (`break`) here drops tungstenite's queued reply.
            return Ending::dropped(Initiator::Client, EndReason::Application(REPLY_DROPPED))
                .with_code(code);
        }
        if message.is_text() || message.is_binary() {
            if let Some(reply) = on_message(message) {
                if let Err(ending) = io::send(&mut socket, reply, timing.write_timeout).await {
                    return ending;
                }
            }
        }
    }
}

/// **BROKEN ON PURPOSE.** The second Rust trap: a writer task that outlives the handshake.
///
/// The close handshake itself is done right (this is [`serve_websocket`]), but the socket is
/// still held by something else for [`LINGERING_TCP_FOR`], as it is by a separate writer task
/// that sleeps on its push interval while holding the write half. The TCP connection stays open
/// after the handshake. Chromium waits up to 2 s more for it to close, then fires `close` with
/// the code and `wasClean=true`; Firefox fires `close` on the Close frame.
/// The fix: one task owns the whole socket and drops it the moment the handshake ends.
pub async fn lingering_tcp<S, E, O, H>(
    mut socket: S,
    lifecycle: &Lifecycle,
    outgoing: O,
    on_message: H,
) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin + Send + 'static,
    E: StdError + 'static,
    O: Stream<Item = Message> + Unpin,
    H: FnMut(Message) -> Option<Message>,
{
    let ending = serve_websocket(&mut socket, lifecycle, outgoing, on_message).await;
    // The bug: the socket outlives the handshake, in a task that sleeps.
    tokio::spawn(async move {
        tokio::time::sleep(LINGERING_TCP_FOR).await;
        drop(socket);
    });
    ending
}

#[cfg(test)]
mod tests {
    //! The bugs, through real tungstenite over an in-memory pipe, under paused time.

    use super::*;
    use futures::{stream, SinkExt};
    use wsclose::test_util;

    fn lifecycle() -> Lifecycle {
        Lifecycle::new().with_timing(test_util::TIMING)
    }

    #[tokio::test(start_paused = true)]
    async fn no_drain_never_answers_the_close_and_ends_only_at_its_lifetime() {
        let (server, mut client) = test_util::pair(None).await;
        let task = tokio::spawn(async move {
            push_without_reading(server, &lifecycle(), stream::pending()).await
        });
        client
            .send(close::message(CloseCode::Normal, ""))
            .await
            .unwrap();
        let lifetime = test_util::TIMING.pong_timeout * NO_DRAIN_LIFETIME_PONG_TIMEOUTS;
        tokio::time::sleep(lifetime - Duration::from_secs(1)).await;
        assert!(!task.is_finished(), "the bug: the Close is never read");
        assert_eq!(task.await.unwrap().reason, EndReason::Application(LIFETIME));
    }

    #[tokio::test(start_paused = true)]
    async fn no_drain_without_ticks_notices_a_vanished_peer_within_pong_timeout() {
        let (server, client) = test_util::pair(None).await;
        drop(client); // the peer is gone: every write fails
        let started = Instant::now();
        let closed = push_without_reading(server, &lifecycle(), stream::pending()).await;
        assert_eq!(closed.reason, EndReason::PeerGone);
        assert!(
            started.elapsed() <= Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn break_on_close_drops_the_queued_reply() {
        let (server, mut client) = test_util::pair(None).await;
        let task = tokio::spawn(async move { break_on_close(server, &lifecycle(), Some).await });
        client
            .send(close::message(CloseCode::Normal, ""))
            .await
            .unwrap();
        let closed = task.await.unwrap();
        assert_eq!(closed.reason, EndReason::Application(REPLY_DROPPED));
        let reply = client.next().await;
        assert!(
            !matches!(reply, Some(Ok(Message::Close(_)))),
            "no Close reply: {reply:?}"
        );
    }
}
