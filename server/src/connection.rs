//! The connection lifecycle, top to bottom. This module is the whole fix.
//!
//! ```text
//! upgrade ─► drain loop: one task owns the socket and selects over
//!              • the next incoming frame   (the READ: drains, counts, echoes; answers Close)
//!              • the push timer            (a tick, if this connection pushes)
//!              • the ping timer            (keepalive)
//!              • the read deadline         (no frame for pong_timeout → drop)
//!              • the shutdown signal       (send Close 1001, keep draining)
//!              • the close deadline        (our Close unanswered for close_timeout → drop)
//!        ─► the stream ends ─► the function returns ─► the socket is dropped, TCP closes
//! ```
//!
//! Why it is shaped like this:
//!
//! * **Control frames are handled only while the read half is polled.** tungstenite answers
//!   Ping and Close from inside `poll_next`. A server that never reads never answers the
//!   browser's Close, and Chromium waits its 60 s closing-handshake timeout (`1006`). So the
//!   loop always has a pending `socket.next()`.
//! * **After `Message::Close`, keep polling until the stream ends.** tungstenite only *queues*
//!   the Close reply when it reads the peer's Close; the reply is flushed by the next read.
//!   Breaking out on `Message::Close` drops the reply and the browser sees `1006`.
//! * **One task owns the socket.** There is no separate writer task that could sleep on its
//!   push interval while holding the TCP connection open after the handshake (Chromium then
//!   waits up to 2 s more). When the loop returns, the whole socket is dropped at once.
//! * **Every write is bounded** by `write_timeout`, and the loop awaits each write before it
//!   does anything else, so at most one message is ever queued per connection.
//!
//! [`push_without_reading`] is the bug, kept on purpose, right below the fix, and so are the
//! two Rust traps: [`break_on_close`] (the Close reply is never flushed) and [`lingering_tcp`]
//! (the TCP connection outlives the handshake).

use std::error::Error as StdError;
use std::pin::pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{interval_at, sleep, Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes};

use crate::metrics::{Initiator, Metrics};

/// Close code "going away": sent to every socket when the server shuts down, by default.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code "service restart" (IANA registry): the server restarts, reconnect. Sent on
/// shutdown instead of 1001 with `--shutdown-code 1012`.
pub const CLOSE_SERVICE_RESTART: u16 = 1012;
/// Close code for a protocol violation.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code for a text message, or close reason, that is not valid UTF-8.
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Close code for a message larger than the configured maximum.
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
/// Close code a peer reports when its Close frame carried no code at all.
pub const CLOSE_NO_STATUS: u16 = 1005;

/// A deadline far enough away to never fire before it is reset.
const NOT_YET_ARMED: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Which behaviour a WebSocket endpoint has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/ws/drain`: pushes ticks, reads and discards everything. The fix.
    Drain,
    /// `/ws/echo`: reads everything and sends each data message back.
    Echo,
    /// `/ws/no-drain`: pushes ticks and never reads. The bug, on purpose.
    NoDrain,
    /// `/ws/break-on-close`: reads, but drops the socket on the peer's Close. Broken on purpose.
    BreakOnClose,
    /// `/ws/lingering-tcp`: answers Close, but the TCP connection stays open. Broken on purpose.
    LingeringTcp,
}

impl Endpoint {
    /// The name used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Drain => "drain",
            Endpoint::Echo => "echo",
            Endpoint::NoDrain => "no-drain",
            Endpoint::BreakOnClose => "break-on-close",
            Endpoint::LingeringTcp => "lingering-tcp",
        }
    }
}

/// The timing values one connection obeys (see [`crate::config`] for how they relate).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Tick period, or `None` when this connection does not push.
    pub push_interval: Option<Duration>,
    /// Keepalive ping period.
    pub ping_interval: Duration,
    /// Longest silence from the peer before it is dropped.
    pub pong_timeout: Duration,
    /// Bound on each write or flush.
    pub write_timeout: Duration,
    /// Bound on a close handshake once a Close frame has been sent or received.
    pub close_timeout: Duration,
}

/// Everything a connection needs besides its socket.
#[derive(Clone)]
pub struct Session {
    /// Which behaviour to run.
    pub endpoint: Endpoint,
    /// Timers and deadlines.
    pub timing: Timing,
    /// Where the ending is counted.
    pub metrics: Metrics,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// The Close code sent on shutdown (1001 or 1012).
    pub shutdown_code: u16,
    /// The `seq` of the first tick: 0, or N+1 for `?after=N` (a client resuming elsewhere).
    pub first_seq: u64,
    /// The name ticks carry in their `instance` field.
    pub instance: std::sync::Arc<str>,
}

/// How a connection ended. Returned by [`serve`] and counted in the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// Who started the end.
    pub initiator: Initiator,
    /// The close code of the handshake, or `None` when no Close frame was exchanged.
    pub code: Option<u16>,
    /// A short machine-readable cause, used as the metrics `reason` label.
    pub reason: &'static str,
}

/// Runs one upgraded connection to its end, then drops the socket and records the ending.
pub async fn serve<S, E>(socket: S, session: Session) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin + Send + 'static,
    E: StdError + Send + Sync + 'static,
{
    let endpoint = session.endpoint.name();
    let _active = session.metrics.connection_opened(endpoint);
    let ending = match session.endpoint {
        Endpoint::Drain | Endpoint::Echo => drain(socket, &session).await,
        Endpoint::NoDrain => push_without_reading(socket, &session).await,
        Endpoint::BreakOnClose => break_on_close(socket, &session).await,
        Endpoint::LingeringTcp => lingering_tcp(socket, &session).await,
    };
    // The socket was moved into the loop and is gone by now: the TCP connection is closed.
    session
        .metrics
        .connection_closed(endpoint, ending.initiator, ending.code, ending.reason);
    tracing::debug!(endpoint, ?ending, "connection ended");
    ending
}

/// A Close frame the server has sent; the loop keeps draining until the peer answers.
struct ServerClose {
    code: u16,
    reason: &'static str,
    sent_at: Instant,
}

/// The fix: read everything, answer control frames, push and ping, close properly.
async fn drain<S, E>(mut socket: S, session: &Session) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin,
    E: StdError + Send + Sync + 'static,
{
    let timing = session.timing;
    let endpoint = session.endpoint.name();
    let metrics = &session.metrics;

    // When the next tick is due; `None` when this connection does not push.
    let mut tick_due = timing.push_interval.map(|period| Instant::now() + period);
    let mut pings = periodic(timing.ping_interval);
    let mut seq = session.first_seq;
    let mut read_deadline = pin!(sleep(timing.pong_timeout));
    // Armed only once a Close frame has been sent or received.
    let mut close_deadline = pin!(sleep(NOT_YET_ARMED));
    let mut server_close: Option<ServerClose> = None;
    let mut peer_close: Option<(u16, Instant)> = None;

    loop {
        let open = server_close.is_none() && peer_close.is_none();
        // Not `biased;`: with the read first, a peer that floods frames would keep every other
        // arm (shutdown, ticks, the close deadline) from ever being polled. tokio picks the
        // first arm at random, so each ready arm gets its turn.
        // The tick and the close deadline are also checked against the clock on every turn. While
        // a peer floods frames the worker never parks, and tokio advances its timer wheel only
        // every few thousand reads: a timer arm alone fired ~50 ms late, and ticks at 100 ms fell
        // from 30 to 20 in 3 s.
        let now = Instant::now();
        if !open && now >= close_deadline.deadline() {
            return close_timed_out(server_close, peer_close);
        }
        if let (true, Some(due), Some(period)) = (open, tick_due, timing.push_interval) {
            if now >= due {
                if let Err(ending) = write(
                    &mut socket,
                    tick(seq, &session.instance),
                    timing.write_timeout,
                )
                .await
                {
                    return ending;
                }
                seq += 1;
                metrics.message_sent(endpoint);
                // A late tick delays the next one; missed ticks are not sent in a burst.
                tick_due = Some(if due + period > now {
                    due + period
                } else {
                    now + period
                });
                continue;
            }
        }
        tokio::select! {
            // 1. The read. Always pending, so Ping and Close are always answered.
            incoming = socket.next() => match incoming {
                // The stream has ended: tungstenite flushed the Close reply, if any.
                None => {
                    return match (server_close, peer_close) {
                        (Some(ours), _) => ending_after_our_close(ours),
                        (None, Some((code, received_at))) => {
                            metrics.close_handshake(endpoint, Initiator::Client, secs(received_at));
                            Ending { initiator: Initiator::Client, code: Some(code), reason: "peer_close" }
                        }
                        (None, None) => peer_gone(),
                    };
                }
                Some(Ok(message)) => {
                    read_deadline.as_mut().reset(Instant::now() + timing.pong_timeout);
                    if let Some(ours) = server_close.take() {
                        if message.is_close() {
                            // Our Close was answered: the handshake is complete. Drop now.
                            metrics.close_handshake(endpoint, Initiator::Server, secs(ours.sent_at));
                            return ending_after_our_close(ours);
                        }
                        server_close = Some(ours); // still draining until the answer
                    } else if message.is_close() {
                        // Do NOT break here: the reply is queued and goes out on the next read.
                        let code = close_code(&message).unwrap_or(CLOSE_NO_STATUS);
                        peer_close = Some((code, Instant::now()));
                        close_deadline.as_mut().reset(Instant::now() + timing.close_timeout);
                    } else if message.is_text() || message.is_binary() {
                        metrics.message_received(endpoint);
                        if session.endpoint == Endpoint::Echo && open {
                            if let Err(ending) = write(&mut socket, message, timing.write_timeout).await {
                                return ending;
                            }
                            metrics.message_sent(endpoint);
                        }
                    }
                    // Ping and Pong need nothing: tungstenite answers pings itself.
                }
                Some(Err(error)) => {
                    let Some((code, reason)) = close_code_for(&error) else {
                        return match server_close {
                            Some(ours) => ending_after_our_close(ours),
                            None => peer_gone(),
                        };
                    };
                    if let Some(ours) = server_close {
                        // Garbage while we wait for the peer's Close: stop waiting.
                        return ending_after_our_close(ours);
                    }
                    tracing::debug!(endpoint, %error, code, "peer broke the protocol");
                    let close = close_message(code, reason.replace('_', " "));
                    if let Err(ending) = write(&mut socket, close, timing.write_timeout).await {
                        return ending;
                    }
                    server_close = Some(ServerClose { code, reason, sent_at: Instant::now() });
                    close_deadline.as_mut().reset(Instant::now() + timing.close_timeout);
                }
            },

            // 2. Shutdown: say goodbye (1001, or 1012 "come back"), then keep draining for the answer.
            () = session.shutdown.cancelled(), if open => {
                let code = session.shutdown_code;
                let close = close_message(code, shutdown_reason(code));
                if let Err(ending) = write(&mut socket, close, timing.write_timeout).await {
                    return ending;
                }
                server_close = Some(ServerClose { code, reason: "shutdown", sent_at: Instant::now() });
                close_deadline.as_mut().reset(Instant::now() + timing.close_timeout);
            }

            // 3. A tick is due: the clock check above sends it.
            () = sleep_until_due(tick_due), if open => {}

            // 4. Keepalive ping; the peer's pong (or any frame) moves the read deadline.
            _ = pings.tick(), if open => {
                if let Err(ending) = write(&mut socket, Message::Ping(Default::default()), timing.write_timeout).await {
                    return ending;
                }
            }

            // 5. The peer has been silent for pong_timeout: it is dead or unreachable.
            () = &mut read_deadline, if open => {
                return Ending { initiator: Initiator::Server, code: None, reason: "pong_timeout" };
            }

            // 6. A started close handshake did not finish in close_timeout.
            () = &mut close_deadline, if !open => {
                return close_timed_out(server_close, peer_close);
            }
        }
    }
}

/// How many liveness writes [`push_without_reading`] makes per `pong_timeout`. A vanished
/// peer is noticed on the second write after it left (the first draws a TCP reset, the second
/// fails), so with three per `pong_timeout` its slot is free again within `pong_timeout`.
pub const NO_DRAIN_LIVENESS_WRITES: u32 = 3;

/// **BROKEN ON PURPOSE.** This is the bug wsclose exists to show: a server that only writes.
///
/// The read half is split off and never polled, so nobody ever reads the browser's Close
/// frame and nobody answers it. The browser waits for its closing-handshake timeout (60 s in
/// Chromium, 20 s in Firefox) and reports `1006, wasClean=false`. Compare with [`drain`] above:
/// the only real difference is the `socket.next()` arm.
///
/// Never reading also means never seeing a peer leave. So that an abandoned connection cannot
/// hold its slot forever (with `push_ms=0` nothing would ever be written), it pings
/// [`NO_DRAIN_LIVENESS_WRITES`] times per `pong_timeout`: the write fails once the peer is
/// gone. The pongs are never read, so the Close still goes unanswered.
async fn push_without_reading<S, E>(socket: S, session: &Session) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin,
    E: StdError + Send + Sync + 'static,
{
    let timing = session.timing;
    let (mut writer, _reader_that_nobody_polls) = socket.split();
    let mut ticks = timing.push_interval.map(periodic);
    let mut liveness = periodic(timing.pong_timeout / NO_DRAIN_LIVENESS_WRITES);
    let mut seq = session.first_seq;
    loop {
        tokio::select! {
            () = session.shutdown.cancelled() => {
                let code = session.shutdown_code;
                let close = close_message(code, shutdown_reason(code));
                // Nobody will read the answer, so there is no handshake to wait for.
                return match write(&mut writer, close, timing.write_timeout).await {
                    Ok(()) => Ending { initiator: Initiator::Server, code: Some(code), reason: "shutdown" },
                    Err(ending) => ending,
                };
            }
            _ = next_tick(&mut ticks) => {
                // Fails once the peer is gone (after the browser gave up and closed TCP).
                if let Err(ending) = write(&mut writer, tick(seq, &session.instance), timing.write_timeout).await {
                    return ending;
                }
                seq += 1;
                session.metrics.message_sent(session.endpoint.name());
            }
            _ = liveness.tick() => {
                if let Err(ending) = write(&mut writer, Message::Ping(Default::default()), timing.write_timeout).await {
                    return ending;
                }
            }
        }
    }
}

/// **BROKEN ON PURPOSE.** The first Rust trap: a read loop that `break`s on `Message::Close`.
///
/// It reads everything, like [`drain`], but returns the moment the peer's Close arrives.
/// tungstenite only *queued* the Close reply when it read the peer's Close; the reply would be
/// written by the next read, which never comes: the socket is dropped with the reply unsent.
/// The browser sees the TCP connection end without a Close frame, about a millisecond after
/// `close()`: `1006`, `wasClean=false`. The fix is one line in [`drain`]: keep polling until
/// the stream ends.
async fn break_on_close<S, E>(mut socket: S, session: &Session) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin,
    E: StdError + Send + Sync + 'static,
{
    let timing = session.timing;
    loop {
        // Bounded like every endpoint: shutdown, and a peer silent for pong_timeout.
        let next = tokio::select! {
            next = tokio::time::timeout(timing.pong_timeout, socket.next()) => next,
            () = session.shutdown.cancelled() => {
                let code = session.shutdown_code;
                let close = close_message(code, shutdown_reason(code));
                return match write(&mut socket, close, timing.write_timeout).await {
                    Ok(()) => Ending { initiator: Initiator::Server, code: Some(code), reason: "shutdown" },
                    Err(ending) => ending,
                };
            }
        };
        let message = match next {
            Ok(Some(Ok(message))) => message,
            Ok(_) => return peer_gone(),
            Err(_silent) => {
                return Ending {
                    initiator: Initiator::Server,
                    code: None,
                    reason: "pong_timeout",
                }
            }
        };
        if message.is_close() {
            let code = close_code(&message).unwrap_or(CLOSE_NO_STATUS);
            // The bug: returning (`break`) here drops tungstenite's queued reply.
            return Ending {
                initiator: Initiator::Client,
                code: Some(code),
                reason: "reply_dropped",
            };
        }
        if message.is_text() || message.is_binary() {
            session.metrics.message_received(session.endpoint.name());
        }
    }
}

/// How long [`lingering_tcp`] keeps the TCP connection open after a finished close handshake.
pub const LINGERING_TCP_FOR: Duration = Duration::from_secs(5);

/// **BROKEN ON PURPOSE.** The second Rust trap: a writer task that outlives the handshake.
///
/// The close handshake itself is done right (this is [`drain`]), but the socket is still held
/// by something else for [`LINGERING_TCP_FOR`], as it is by a separate writer task that sleeps
/// on its push interval while holding the write half. The TCP connection stays open after the
/// handshake. Chromium waits up to 2 s more for it to close, then fires `close` with the code
/// and `wasClean=true` (2.0 s); Firefox fires `close` on the Close frame (about 1 ms). The fix:
/// one task owns the whole socket and drops it the moment the handshake ends.
async fn lingering_tcp<S, E>(mut socket: S, session: &Session) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin + Send + 'static,
    E: StdError + Send + Sync + 'static,
{
    let ending = drain(&mut socket, session).await;
    // The bug: the socket outlives the handshake, in a task that sleeps.
    tokio::spawn(async move {
        tokio::time::sleep(LINGERING_TCP_FOR).await;
        drop(socket);
    });
    ending
}

/// Writes and flushes one message, bounded by `write_timeout`. A peer that cannot take it in
/// time, or whose connection is gone, yields the [`Ending`] to return.
async fn write<W, E>(
    writer: &mut W,
    message: Message,
    write_timeout: Duration,
) -> Result<(), Ending>
where
    W: Sink<Message, Error = E> + Unpin,
    E: StdError + Send + Sync + 'static,
{
    match tokio::time::timeout(write_timeout, writer.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            tracing::debug!(%error, "write failed");
            Err(peer_gone())
        }
        Err(_elapsed) => Err(Ending {
            initiator: Initiator::Server,
            code: None,
            reason: "write_timeout",
        }),
    }
}

/// Maps a read error to the close code the server answers with, or `None` when the
/// connection is simply gone (reset, EOF, I/O error) and there is nobody to answer.
pub fn close_code_for(error: &(dyn StdError + 'static)) -> Option<(u16, &'static str)> {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(tungstenite_error) = current.downcast_ref::<tungstenite::Error>() {
            return match tungstenite_error {
                tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                ) => None,
                tungstenite::Error::Protocol(_) | tungstenite::Error::AttackAttempt => {
                    Some((CLOSE_PROTOCOL_ERROR, "protocol_error"))
                }
                tungstenite::Error::Utf8(_) => Some((CLOSE_INVALID_PAYLOAD, "invalid_utf8")),
                // RFC 6455 §5.2: "the most significant bit MUST be 0" in a 64-bit length.
                // tungstenite reports such a length as too big; it is a protocol error.
                tungstenite::Error::Capacity(
                    tungstenite::error::CapacityError::MessageTooLong { size, .. },
                ) if (*size as u64) >> 63 == 1 => Some((CLOSE_PROTOCOL_ERROR, "protocol_error")),
                tungstenite::Error::Capacity(_) => Some((CLOSE_MESSAGE_TOO_BIG, "message_too_big")),
                _ => None,
            };
        }
        cause = current.source();
    }
    None
}

/// A Close frame with `code` and `reason`.
pub fn close_message(code: u16, reason: impl Into<Utf8Bytes>) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }))
}

/// The code of a Close message; `None` for other messages and for a Close without a code.
pub fn close_code(message: &Message) -> Option<u16> {
    match message {
        Message::Close(Some(frame)) => Some(frame.code.into()),
        _ => None,
    }
}

/// The ending of a close handshake that did not finish within `close_timeout`.
fn close_timed_out(
    server_close: Option<ServerClose>,
    peer_close: Option<(u16, Instant)>,
) -> Ending {
    match server_close {
        Some(ours) => Ending {
            initiator: Initiator::Server,
            code: Some(ours.code),
            reason: "close_timeout",
        },
        None => Ending {
            initiator: Initiator::Client,
            code: peer_close.map(|(code, _)| code),
            reason: "close_timeout",
        },
    }
}

/// Sleeps until `due`; never resolves for `None`.
async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// The ending after the server's Close. Only an answered Close is a close handshake for the
/// `wsclose_close_handshake_seconds` histogram; a peer that never answered (or broke the
/// protocol and was failed) would add a 0 s "handshake".
fn ending_after_our_close(ours: ServerClose) -> Ending {
    Ending {
        initiator: Initiator::Server,
        code: Some(ours.code),
        reason: ours.reason,
    }
}

fn peer_gone() -> Ending {
    Ending {
        initiator: Initiator::Client,
        code: None,
        reason: "peer_gone",
    }
}

/// The JSON tick pushed to the peer: `{"seq":N,"sent_at_ms":UNIX_MS,"instance":NAME}`.
fn tick(seq: u64, instance: &str) -> Message {
    let sent_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    Message::text(
        serde_json::json!({ "seq": seq, "sent_at_ms": sent_at_ms, "instance": instance })
            .to_string(),
    )
}

/// The Close reason sent with the shutdown code.
fn shutdown_reason(code: u16) -> &'static str {
    if code == CLOSE_SERVICE_RESTART {
        "server restarting"
    } else {
        "server shutting down"
    }
}

/// A timer whose first tick is one `period` from now; late ticks are delayed, not bunched.
fn periodic(period: Duration) -> Interval {
    let mut interval = interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// The next tick of an optional timer; never resolves when there is no timer.
async fn next_tick(timer: &mut Option<Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    //! The select logic under paused time, with channels standing in for the socket.

    use super::*;
    use futures::channel::mpsc;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A socket made of two channels. `stall_writes` makes every write hang, like a full TCP
    /// send buffer towards a peer that never reads.
    struct FakeSocket {
        incoming: mpsc::UnboundedReceiver<Result<Message, tungstenite::Error>>,
        outgoing: mpsc::UnboundedSender<Message>,
        stall_writes: bool,
    }

    impl Stream for FakeSocket {
        type Item = Result<Message, tungstenite::Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Pin::new(&mut self.incoming).poll_next(cx)
        }
    }

    impl Sink<Message> for FakeSocket {
        type Error = tungstenite::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.stall_writes {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        }
        fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            self.outgoing
                .unbounded_send(item)
                .map_err(|_| tungstenite::Error::ConnectionClosed)
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    type PeerSend = mpsc::UnboundedSender<Result<Message, tungstenite::Error>>;

    fn socket(stall_writes: bool) -> (FakeSocket, PeerSend, mpsc::UnboundedReceiver<Message>) {
        let (to_server, incoming) = mpsc::unbounded();
        let (outgoing, from_server) = mpsc::unbounded();
        let socket = FakeSocket {
            incoming,
            outgoing,
            stall_writes,
        };
        (socket, to_server, from_server)
    }

    fn session(endpoint: Endpoint, push: Option<Duration>) -> Session {
        Session {
            endpoint,
            timing: Timing {
                push_interval: push,
                ping_interval: Duration::from_secs(9),
                pong_timeout: Duration::from_secs(10),
                write_timeout: Duration::from_secs(2),
                close_timeout: Duration::from_secs(3),
            },
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            shutdown_code: CLOSE_GOING_AWAY,
            first_seq: 0,
            instance: "test".into(),
        }
    }

    fn drained(rx: &mut mpsc::UnboundedReceiver<Message>) -> Vec<Message> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn silent_peer_is_pinged_then_dropped_at_the_pong_deadline() {
        let (socket, _peer, mut from_server) = socket(false);
        let started = Instant::now();
        let ending = serve(socket, session(Endpoint::Drain, None)).await;
        assert_eq!(ending.reason, "pong_timeout");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        let sent = drained(&mut from_server);
        assert_eq!(
            sent,
            vec![Message::Ping(Default::default())],
            "one ping at 9 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn any_frame_from_the_peer_moves_the_read_deadline() {
        let (socket, peer, _from_server) = socket(false);
        let task = tokio::spawn(serve(socket, session(Endpoint::Drain, None)));
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(8)).await;
            peer.unbounded_send(Ok(Message::Pong(Default::default())))
                .unwrap();
        }
        // 40 s in, well past one pong timeout, and still alive.
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        drop(peer);
        let ending = task.await.unwrap();
        assert_eq!(ending.reason, "peer_gone");
    }

    #[tokio::test(start_paused = true)]
    async fn peer_close_keeps_polling_until_the_stream_ends() {
        let (socket, peer, _from_server) = socket(false);
        let task = tokio::spawn(serve(socket, session(Endpoint::Drain, None)));
        peer.unbounded_send(Ok(close_message(4000u16, "bye")))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !task.is_finished(),
            "returning on Message::Close would drop tungstenite's queued reply"
        );
        drop(peer); // tungstenite ends the stream once the reply is flushed
        let ending = task.await.unwrap();
        assert_eq!(
            ending,
            Ending {
                initiator: Initiator::Client,
                code: Some(4000),
                reason: "peer_close"
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_sends_going_away_and_waits_for_the_answer() {
        let (socket, peer, mut from_server) = socket(false);
        let session = session(Endpoint::Drain, None);
        let shutdown = session.shutdown.clone();
        let task = tokio::spawn(serve(socket, session));
        tokio::time::sleep(Duration::from_millis(10)).await;
        shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            drained(&mut from_server),
            vec![close_message(1001u16, "server shutting down")]
        );
        assert!(!task.is_finished(), "still draining for the peer's Close");
        peer.unbounded_send(Ok(close_message(1001u16, ""))).unwrap();
        let ending = task.await.unwrap();
        assert_eq!((ending.code, ending.reason), (Some(1001), "shutdown"));
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_close_is_dropped_after_close_timeout() {
        let (socket, _peer, _from_server) = socket(false);
        let session = session(Endpoint::Drain, None);
        session.shutdown.cancel();
        let started = Instant::now();
        let ending = serve(socket, session).await;
        assert_eq!((ending.code, ending.reason), (Some(1001), "close_timeout"));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_takes_no_writes_is_dropped_after_write_timeout() {
        let (socket, _peer, _from_server) = socket(true);
        let started = Instant::now();
        let ending = serve(
            socket,
            session(Endpoint::Drain, Some(Duration::from_millis(1))),
        )
        .await;
        assert_eq!(ending.reason, "write_timeout");
        assert_eq!(started.elapsed(), Duration::from_millis(1 + 2000));
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_are_numbered_from_zero_without_gaps() {
        let (socket, peer, mut from_server) = socket(false);
        let task = tokio::spawn(serve(
            socket,
            session(Endpoint::Drain, Some(Duration::from_millis(100))),
        ));
        tokio::time::sleep(Duration::from_millis(550)).await;
        drop(peer);
        task.await.unwrap();
        let seqs: Vec<u64> = drained(&mut from_server)
            .iter()
            .map(|message| {
                let json: serde_json::Value =
                    serde_json::from_str(message.to_text().unwrap()).unwrap();
                json["seq"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn echo_sends_each_data_message_back() {
        let (socket, peer, mut from_server) = socket(false);
        let task = tokio::spawn(serve(socket, session(Endpoint::Echo, None)));
        peer.unbounded_send(Ok(Message::text("hi"))).unwrap();
        peer.unbounded_send(Ok(Message::binary(vec![0u8, 1, 2])))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(peer);
        task.await.unwrap();
        assert_eq!(
            drained(&mut from_server),
            vec![Message::text("hi"), Message::binary(vec![0u8, 1, 2])]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn read_errors_map_to_close_codes() {
        use tungstenite::error::{CapacityError, ProtocolError};
        let cases = [
            (
                tungstenite::Error::Protocol(ProtocolError::UnmaskedFrameFromClient),
                1002,
            ),
            (tungstenite::Error::Utf8("bad".into()), 1007),
            (
                tungstenite::Error::Capacity(CapacityError::MessageTooLong {
                    size: 2,
                    max_size: 1,
                }),
                1009,
            ),
        ];
        for (error, code) in cases {
            let (socket, peer, mut from_server) = socket(false);
            peer.unbounded_send(Err(error)).unwrap();
            drop(peer);
            let ending = serve(socket, session(Endpoint::Drain, None)).await;
            assert_eq!(ending.code, Some(code));
            let sent = drained(&mut from_server);
            assert_eq!(sent.len(), 1);
            assert_eq!(close_code(&sent[0]), Some(code));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_drain_never_reads_the_close() {
        let (socket, peer, _from_server) = socket(false);
        let task = tokio::spawn(serve(
            socket,
            session(Endpoint::NoDrain, Some(Duration::from_secs(1))),
        ));
        peer.unbounded_send(Ok(close_message(1000u16, ""))).unwrap();
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(!task.is_finished(), "the bug: the Close is never read");
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn no_drain_without_ticks_notices_a_vanished_peer_within_pong_timeout() {
        let (socket, _peer, from_server) = socket(false);
        drop(from_server); // the peer is gone: every write fails
        let started = Instant::now();
        let ending = serve(socket, session(Endpoint::NoDrain, None)).await;
        assert_eq!(ending.reason, "peer_gone");
        assert!(
            started.elapsed() <= Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
