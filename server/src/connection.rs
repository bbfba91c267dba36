//! The connection lifecycle, top to bottom. This module is the whole fix.
//!
//! [`serve_websocket`] runs one upgraded socket to its end. Any server can call it: warp, axum,
//! plain tokio-tungstenite, or the demo's own endpoints (see [`crate::endpoints`]).
//!
//! ```text
//! upgrade ─► drain loop: one task owns the socket and selects over
//!              • the next incoming frame   (the READ: drains, hands data to the handler,
//!                                           writes its reply; answers Close)
//!              • the next outgoing message (from the application's stream; its end → Close 1000)
//!              • the ping timer            (keepalive)
//!              • the read deadline         (no frame for pong_timeout → drop)
//!              • the shutdown signal       (send Close 1001 or 1012, keep draining)
//!              • the close deadline        (a Close unanswered for close_timeout → drop)
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
//!   does anything else: it pulls the next outgoing message only once the previous one is
//!   written, so at most one message is ever in flight per connection.
//!
//! `push_without_reading` is the bug, kept on purpose, right below the fix, and so are the
//! two Rust traps: `break_on_close` (the Close reply is never flushed) and `lingering_tcp`
//! (the TCP connection outlives the handshake). They take the same arguments as the fix.

use std::error::Error as StdError;
use std::pin::pin;
use std::time::Duration;

use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{interval_at, sleep, Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes};

pub use crate::config::Timing;

/// Close code "normal closure": sent when the application's outgoing stream ends.
pub const CLOSE_NORMAL: u16 = 1000;
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

/// What every socket of a server obeys: its timing, when to stop, and with which code.
///
/// Build one per server and share it (it is cheap to clone); cancel `shutdown` to close every
/// socket that runs under it.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// Pings, the pong deadline, and the bounds on writes and on the close handshake.
    pub timing: Timing,
    /// Cancel it to shut down: each socket sends Close with `shutdown_code`, waits at most
    /// `timing.close_timeout` for the peer's answer, and returns.
    pub shutdown: CancellationToken,
    /// The Close code sent on shutdown: [`CLOSE_GOING_AWAY`] (1001, the default) or
    /// [`CLOSE_SERVICE_RESTART`] (1012, "reconnect").
    pub shutdown_code: u16,
}

impl Lifecycle {
    /// Default timing, Close 1001 on shutdown, and `shutdown` as the signal.
    pub fn new(shutdown: CancellationToken) -> Self {
        Lifecycle {
            timing: Timing::default(),
            shutdown,
            shutdown_code: CLOSE_GOING_AWAY,
        }
    }

    /// The same lifecycle with other timing values.
    pub fn with_timing(self, timing: Timing) -> Self {
        Lifecycle { timing, ..self }
    }
}

/// Which side started the end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// The peer sent Close, or vanished.
    Client,
    /// The server sent Close, or dropped the peer.
    Server,
}

/// How a connection ended. Returned by [`serve_websocket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// Who started the end.
    pub initiator: Initiator,
    /// The close code of the handshake, or `None` when no Close frame was exchanged.
    pub code: Option<u16>,
    /// A short machine-readable cause: `peer_close`, `shutdown`, `done` (the outgoing stream
    /// ended), `protocol_error`, `invalid_utf8`, `message_too_big`, `pong_timeout`,
    /// `write_timeout`, `close_timeout`, `peer_gone`; from the broken endpoints also
    /// `reply_dropped` and `lifetime` (see `push_without_reading`).
    pub reason: &'static str,
    /// How long the close handshake took, from the first Close frame to its answer (or to the
    /// end of the stream after the server's reply); `None` when no handshake completed.
    pub close_handshake: Option<Duration>,
}

/// Runs one upgraded WebSocket to its end, with every guarantee of the README's failure table,
/// then drops it (which closes the TCP connection) and says how it ended.
///
/// * `socket`: any `Stream` + `Sink` of tungstenite [`Message`]s, such as tokio-tungstenite's
///   `WebSocketStream`, or warp's and axum's sockets adapted with `map` and `with`.
/// * `lifecycle`: the [`Timing`], the shutdown token and the shutdown code.
/// * `outgoing`: what the application sends. Each message is written (and flushed) before the
///   next one is pulled, so a slow peer slows the stream down instead of filling a queue. When
///   the stream ends, the server sends Close 1000 and waits for the peer's answer. Pass
///   [`futures::stream::pending()`] to send nothing.
/// * `on_message`: called with every text or binary message the peer sends while the
///   connection is open. A `Some` reply is written back before the next frame is read. Ping,
///   Pong and Close never reach it: they are answered here. For slow work, send the message
///   to your own task and return its results through `outgoing`.
///
/// It returns when the connection is over, and never takes longer than the timing allows: a
/// silent peer is dropped after `pong_timeout`, a peer that takes no writes after
/// `write_timeout`, an unanswered Close after `close_timeout`. A frame that breaks the protocol
/// gets Close 1002, invalid UTF-8 1007, a message above the socket's maximum size 1009.
///
/// ```no_run
/// use futures::stream;
/// use wsclose_server::{serve_websocket, CancellationToken, Lifecycle};
///
/// # async fn demo(tcp: tokio::net::TcpStream) {
/// let lifecycle = Lifecycle::new(CancellationToken::new());
/// let socket = tokio_tungstenite::accept_async(tcp).await.expect("handshake");
/// // An echo server: nothing pushed, every message sent back.
/// let ending = serve_websocket(socket, &lifecycle, stream::pending(), Some).await;
/// println!("closed by {:?} with {:?} ({})", ending.initiator, ending.code, ending.reason);
/// # }
/// ```
pub async fn serve_websocket<S, E, O, H>(
    mut socket: S,
    lifecycle: &Lifecycle,
    outgoing: O,
    mut on_message: H,
) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin,
    E: StdError + Send + Sync + 'static,
    O: Stream<Item = Message>,
    H: FnMut(Message) -> Option<Message>,
{
    let timing = lifecycle.timing;
    let mut outgoing = pin!(outgoing.fuse());
    let mut pings = periodic(timing.ping_interval);
    let mut read_deadline = pin!(sleep(timing.pong_timeout));
    // Armed only once a Close frame has been sent or received.
    let mut close_deadline = pin!(sleep(NOT_YET_ARMED));
    let mut server_close: Option<ServerClose> = None;
    let mut peer_close: Option<(u16, Instant)> = None;

    loop {
        let open = server_close.is_none() && peer_close.is_none();
        // The close deadline is also checked against the clock on every turn: while a peer
        // floods frames the worker never parks, and tokio advances its timer wheel only every
        // few thousand reads, so the timer arm alone fired late.
        if !open && Instant::now() >= close_deadline.deadline() {
            return close_timed_out(server_close, peer_close);
        }
        // Not `biased;`: with the read first, a peer that floods frames would keep every other
        // arm (shutdown, outgoing messages, the close deadline) from ever being polled. tokio
        // picks the first arm at random, so each ready arm gets its turn.
        tokio::select! {
            // 1. The read. Always pending, so Ping and Close are always answered.
            incoming = socket.next() => match incoming {
                // The stream has ended: tungstenite flushed the Close reply, if any.
                None => {
                    return match (server_close, peer_close) {
                        (Some(ours), _) => ours.unanswered(),
                        (None, Some((code, received_at))) => Ending {
                            initiator: Initiator::Client,
                            code: Some(code),
                            reason: "peer_close",
                            close_handshake: Some(received_at.elapsed()),
                        },
                        (None, None) => peer_gone(),
                    };
                }
                Some(Ok(message)) => {
                    read_deadline.as_mut().reset(Instant::now() + timing.pong_timeout);
                    if let Some(ours) = server_close.take() {
                        if message.is_close() {
                            // Our Close was answered: the handshake is complete. Drop now.
                            return ours.answered();
                        }
                        server_close = Some(ours); // still draining until the answer
                    } else if message.is_close() {
                        // Do NOT return here: the reply is queued and goes out on the next read.
                        let code = close_code(&message).unwrap_or(CLOSE_NO_STATUS);
                        peer_close = Some((code, Instant::now()));
                        close_deadline.as_mut().reset(Instant::now() + timing.close_timeout);
                    } else if (message.is_text() || message.is_binary()) && open {
                        if let Some(reply) = on_message(message) {
                            if let Err(ending) = write(&mut socket, reply, timing.write_timeout).await {
                                return ending;
                            }
                        }
                    } else if message.is_ping() {
                        // tungstenite queued the Pong (only the latest one: the write buffer is
                        // bounded). Flush it within write_timeout: a peer that pings but never
                        // reads fills the buffer, and is dropped here instead of held forever.
                        if let Err(ending) = flush(&mut socket, timing.write_timeout).await {
                            return ending;
                        }
                    }
                    // Pong needs nothing: any frame has moved the read deadline.
                }
                Some(Err(error)) => {
                    let Some((code, reason)) = close_code_for(&error) else {
                        return match server_close {
                            Some(ours) => ours.unanswered(),
                            None => peer_gone(),
                        };
                    };
                    if let Some(ours) = server_close {
                        // Garbage while we wait for the peer's Close: stop waiting.
                        return ours.unanswered();
                    }
                    tracing::debug!(%error, code, "peer broke the protocol");
                    let close = close_message(code, reason.replace('_', " "));
                    if let Err(ending) = write(&mut socket, close, timing.write_timeout).await {
                        return ending;
                    }
                    server_close = Some(ServerClose { code, reason, sent_at: Instant::now() });
                    close_deadline.as_mut().reset(Instant::now() + timing.close_timeout);
                }
            },

            // 2. Shutdown: say goodbye (1001, or 1012 "come back"), then keep draining for the answer.
            () = lifecycle.shutdown.cancelled(), if open => {
                let code = lifecycle.shutdown_code;
                let close = close_message(code, shutdown_reason(code));
                if let Err(ending) = write(&mut socket, close, timing.write_timeout).await {
                    return ending;
                }
                server_close = Some(ServerClose { code, reason: "shutdown", sent_at: Instant::now() });
                close_deadline.as_mut().reset(Instant::now() + timing.close_timeout);
            }

            // 3. The application's next message; the end of its stream closes with 1000.
            next = outgoing.next(), if open => {
                let (message, close) = match next {
                    Some(message) => (message, None),
                    None => {
                        let ours = ServerClose { code: CLOSE_NORMAL, reason: "done", sent_at: Instant::now() };
                        (close_message(CLOSE_NORMAL, ""), Some(ours))
                    }
                };
                if let Err(ending) = write(&mut socket, message, timing.write_timeout).await {
                    return ending;
                }
                if let Some(ours) = close {
                    server_close = Some(ours);
                    close_deadline.as_mut().reset(Instant::now() + timing.close_timeout);
                }
            }

            // 4. Keepalive ping; the peer's pong (or any frame) moves the read deadline.
            _ = pings.tick(), if open => {
                if let Err(ending) = write(&mut socket, Message::Ping(Default::default()), timing.write_timeout).await {
                    return ending;
                }
            }

            // 5. The peer has been silent for pong_timeout: it is dead or unreachable.
            () = &mut read_deadline, if open => {
                return Ending { initiator: Initiator::Server, code: None, reason: "pong_timeout", close_handshake: None };
            }

            // 6. A started close handshake did not finish in close_timeout.
            () = &mut close_deadline, if !open => {
                return close_timed_out(server_close, peer_close);
            }
        }
    }
}

/// A Close frame the server has sent; the loop keeps draining until the peer answers.
struct ServerClose {
    code: u16,
    reason: &'static str,
    sent_at: Instant,
}

impl ServerClose {
    /// The peer answered: a complete close handshake, timed.
    fn answered(self) -> Ending {
        Ending {
            initiator: Initiator::Server,
            code: Some(self.code),
            reason: self.reason,
            close_handshake: Some(self.sent_at.elapsed()),
        }
    }

    /// The peer went away (or broke the protocol) instead of answering: no handshake to time.
    fn unanswered(self) -> Ending {
        Ending {
            close_handshake: None,
            ..self.answered()
        }
    }
}

/// How many liveness writes `push_without_reading` makes per `pong_timeout`. A vanished
/// peer is noticed on the second write after it left (the first draws a TCP reset, the second
/// fails), so with three per `pong_timeout` its slot is free again within `pong_timeout`.
pub const NO_DRAIN_LIVENESS_WRITES: u32 = 3;

/// How long `push_without_reading` holds a connection at most, in `pong_timeout`s. It never
/// reads, so nothing the peer sends (a flood included) can end it; this does. Twice the default
/// `pong_timeout` is 120 s, longer than any browser's closing-handshake timeout (Chromium's
/// 60 s), so the bug still shows in full.
pub const NO_DRAIN_LIFETIME_PONG_TIMEOUTS: u32 = 2;

/// **BROKEN ON PURPOSE.** This is the bug wsclose exists to show: a server that only writes.
///
/// The read half is split off and never polled, so nobody ever reads the browser's Close
/// frame and nobody answers it. The browser waits for its closing-handshake timeout (60 s in
/// Chromium, 20 s in Firefox) and reports `1006, wasClean=false`. Compare with
/// [`serve_websocket`] above: the only real difference is the `socket.next()` arm.
///
/// Never reading also means never seeing a peer leave. So that an abandoned connection cannot
/// hold its slot forever (with nothing to push nothing would ever be written), it pings
/// [`NO_DRAIN_LIVENESS_WRITES`] times per `pong_timeout`: the write fails once the peer is
/// gone. The pongs are never read, so the Close still goes unanswered. A peer that is alive but
/// never reads either is dropped after [`NO_DRAIN_LIFETIME_PONG_TIMEOUTS`] × `pong_timeout`.
pub(crate) async fn push_without_reading<S, E, O>(
    socket: S,
    lifecycle: &Lifecycle,
    outgoing: O,
) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin,
    E: StdError + Send + Sync + 'static,
    O: Stream<Item = Message>,
{
    let timing = lifecycle.timing;
    let (mut writer, _reader_that_nobody_polls) = socket.split();
    let mut outgoing = pin!(outgoing);
    let mut liveness = periodic(timing.pong_timeout / NO_DRAIN_LIVENESS_WRITES);
    let lifetime = sleep(timing.pong_timeout * NO_DRAIN_LIFETIME_PONG_TIMEOUTS);
    let mut lifetime = pin!(lifetime);
    loop {
        let message = tokio::select! {
            () = &mut lifetime => {
                return Ending { initiator: Initiator::Server, code: None, reason: "lifetime", close_handshake: None };
            }
            () = lifecycle.shutdown.cancelled() => {
                let code = lifecycle.shutdown_code;
                let close = close_message(code, shutdown_reason(code));
                // Nobody will read the answer, so there is no handshake to wait for.
                return match write(&mut writer, close, timing.write_timeout).await {
                    Ok(()) => Ending { initiator: Initiator::Server, code: Some(code), reason: "shutdown", close_handshake: None },
                    Err(ending) => ending,
                };
            }
            next = outgoing.next() => match next {
                Some(message) => message,
                None => {
                    return match write(&mut writer, close_message(CLOSE_NORMAL, ""), timing.write_timeout).await {
                        Ok(()) => Ending { initiator: Initiator::Server, code: Some(CLOSE_NORMAL), reason: "done", close_handshake: None },
                        Err(ending) => ending,
                    };
                }
            },
            _ = liveness.tick() => Message::Ping(Default::default()),
        };
        // Fails once the peer is gone (after the browser gave up and closed TCP).
        if let Err(ending) = write(&mut writer, message, timing.write_timeout).await {
            return ending;
        }
    }
}

/// **BROKEN ON PURPOSE.** The first Rust trap: a read loop that `break`s on `Message::Close`.
///
/// It reads everything, like [`serve_websocket`], but returns the moment the peer's Close
/// arrives. tungstenite only *queued* the Close reply when it read the peer's Close; the reply
/// would be written by the next read, which never comes: the socket is dropped with the reply
/// unsent. The browser sees the TCP connection end without a Close frame, about a millisecond
/// after `close()`: `1006`, `wasClean=false`. The fix is one line in [`serve_websocket`]: keep
/// polling until the stream ends.
pub(crate) async fn break_on_close<S, E, H>(
    mut socket: S,
    lifecycle: &Lifecycle,
    mut on_message: H,
) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin,
    E: StdError + Send + Sync + 'static,
    H: FnMut(Message) -> Option<Message>,
{
    let timing = lifecycle.timing;
    let mut pings = periodic(timing.ping_interval);
    loop {
        // Bounded like every endpoint: shutdown, keepalive, and a peer silent for pong_timeout.
        let next = tokio::select! {
            next = tokio::time::timeout(timing.pong_timeout, socket.next()) => next,
            () = lifecycle.shutdown.cancelled() => {
                let code = lifecycle.shutdown_code;
                let close = close_message(code, shutdown_reason(code));
                return match write(&mut socket, close, timing.write_timeout).await {
                    Ok(()) => Ending { initiator: Initiator::Server, code: Some(code), reason: "shutdown", close_handshake: None },
                    Err(ending) => ending,
                };
            }
            _ = pings.tick() => {
                if let Err(ending) = write(&mut socket, Message::Ping(Default::default()), timing.write_timeout).await {
                    return ending;
                }
                continue;
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
                    close_handshake: None,
                }
            }
        };
        if message.is_ping() {
            // As in the fix: the queued Pong goes out within write_timeout, or the peer goes.
            if let Err(ending) = flush(&mut socket, timing.write_timeout).await {
                return ending;
            }
        }
        if message.is_close() {
            let code = close_code(&message).unwrap_or(CLOSE_NO_STATUS);
            // The bug: returning (`break`) here drops tungstenite's queued reply.
            return Ending {
                initiator: Initiator::Client,
                code: Some(code),
                reason: "reply_dropped",
                close_handshake: None,
            };
        }
        if message.is_text() || message.is_binary() {
            if let Some(reply) = on_message(message) {
                if let Err(ending) = write(&mut socket, reply, timing.write_timeout).await {
                    return ending;
                }
            }
        }
    }
}

/// How long `lingering_tcp` keeps the TCP connection open after a finished close handshake.
pub const LINGERING_TCP_FOR: Duration = Duration::from_secs(5);

/// **BROKEN ON PURPOSE.** The second Rust trap: a writer task that outlives the handshake.
///
/// The close handshake itself is done right (this is [`serve_websocket`]), but the socket is
/// still held by something else for [`LINGERING_TCP_FOR`], as it is by a separate writer task
/// that sleeps on its push interval while holding the write half. The TCP connection stays open
/// after the handshake. Chromium waits up to 2 s more for it to close, then fires `close` with
/// the code and `wasClean=true` (2.0 s); Firefox fires `close` on the Close frame (about 1 ms).
/// The fix: one task owns the whole socket and drops it the moment the handshake ends.
pub(crate) async fn lingering_tcp<S, E, O, H>(
    mut socket: S,
    lifecycle: &Lifecycle,
    outgoing: O,
    on_message: H,
) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin + Send + 'static,
    E: StdError + Send + Sync + 'static,
    O: Stream<Item = Message>,
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
        Err(_elapsed) => Err(write_timed_out()),
    }
}

/// Flushes what tungstenite has queued (a Pong), bounded by `write_timeout` like [`write`].
async fn flush<W, E>(writer: &mut W, write_timeout: Duration) -> Result<(), Ending>
where
    W: Sink<Message, Error = E> + Unpin,
    E: StdError + Send + Sync + 'static,
{
    match tokio::time::timeout(write_timeout, writer.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            tracing::debug!(%error, "flush failed");
            Err(peer_gone())
        }
        Err(_elapsed) => Err(write_timed_out()),
    }
}

/// The ending of a write or flush the peer did not take within `write_timeout`.
fn write_timed_out() -> Ending {
    Ending {
        initiator: Initiator::Server,
        code: None,
        reason: "write_timeout",
        close_handshake: None,
    }
}

/// Maps a read error to the close code the server answers with, or `None` when the
/// connection is simply gone (reset, EOF, I/O error) and there is nobody to answer.
///
/// The error's `source()` chain is searched for a [`tungstenite::Error`], so wrappers such as
/// warp's and axum's errors are looked through (when their tungstenite is this version).
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
            reason: "close_timeout",
            ..ours.unanswered()
        },
        None => Ending {
            initiator: Initiator::Client,
            code: peer_close.map(|(code, _)| code),
            reason: "close_timeout",
            close_handshake: None,
        },
    }
}

fn peer_gone() -> Ending {
    Ending {
        initiator: Initiator::Client,
        code: None,
        reason: "peer_gone",
        close_handshake: None,
    }
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

#[cfg(test)]
pub(crate) mod fake {
    //! A socket made of two channels, for tests of the select logic under paused time.

    use futures::channel::mpsc;
    use futures::{Sink, Stream};
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tungstenite::Message;

    /// `stall_writes` makes every write hang, like a full TCP send buffer towards a peer that
    /// never reads.
    pub(crate) struct FakeSocket {
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

    /// What the test sends as the peer.
    pub(crate) type PeerSend = mpsc::UnboundedSender<Result<Message, tungstenite::Error>>;

    /// A socket, the peer's sending end, and what the server wrote.
    pub(crate) fn socket(
        stall_writes: bool,
    ) -> (FakeSocket, PeerSend, mpsc::UnboundedReceiver<Message>) {
        let (to_server, incoming) = mpsc::unbounded();
        let (outgoing, from_server) = mpsc::unbounded();
        let socket = FakeSocket {
            incoming,
            outgoing,
            stall_writes,
        };
        (socket, to_server, from_server)
    }

    /// Everything the server wrote so far.
    pub(crate) fn drained(rx: &mut mpsc::UnboundedReceiver<Message>) -> Vec<Message> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    //! The select logic under paused time, with channels standing in for the socket.

    use super::fake::{drained, socket};
    use super::*;
    use futures::stream;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn lifecycle() -> Lifecycle {
        Lifecycle::new(CancellationToken::new()).with_timing(Timing {
            ping_interval: Duration::from_secs(9),
            pong_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(2),
            close_timeout: Duration::from_secs(3),
        })
    }

    /// Reads and answers nothing.
    fn read_only(_: Message) -> Option<Message> {
        None
    }

    #[tokio::test(start_paused = true)]
    async fn silent_peer_is_pinged_then_dropped_at_the_pong_deadline() {
        let (socket, _peer, mut from_server) = socket(false);
        let started = Instant::now();
        let ending = serve_websocket(socket, &lifecycle(), stream::pending(), read_only).await;
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
        let task = tokio::spawn(async move {
            serve_websocket(socket, &lifecycle(), stream::pending(), read_only).await
        });
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
        let task = tokio::spawn(async move {
            serve_websocket(socket, &lifecycle(), stream::pending(), read_only).await
        });
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
                reason: "peer_close",
                close_handshake: Some(Duration::from_millis(100)),
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_sends_going_away_and_waits_for_the_answer() {
        let (socket, peer, mut from_server) = socket(false);
        let lifecycle = lifecycle();
        let shutdown = lifecycle.shutdown.clone();
        let task = tokio::spawn(async move {
            serve_websocket(socket, &lifecycle, stream::pending(), read_only).await
        });
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
        assert_eq!(ending.close_handshake, Some(Duration::from_millis(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_close_is_dropped_after_close_timeout() {
        let (socket, _peer, _from_server) = socket(false);
        let lifecycle = lifecycle();
        lifecycle.shutdown.cancel();
        let started = Instant::now();
        let ending = serve_websocket(socket, &lifecycle, stream::pending(), read_only).await;
        assert_eq!((ending.code, ending.reason), (Some(1001), "close_timeout"));
        assert_eq!(ending.close_handshake, None, "no answer, no handshake");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_the_outgoing_stream_closes_with_1000_and_waits_for_the_answer() {
        let (socket, peer, mut from_server) = socket(false);
        let outgoing = stream::iter([Message::text("a"), Message::text("b")]);
        let task = tokio::spawn(async move {
            serve_websocket(socket, &lifecycle(), outgoing, read_only).await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            drained(&mut from_server),
            vec![
                Message::text("a"),
                Message::text("b"),
                close_message(1000u16, "")
            ]
        );
        assert!(!task.is_finished(), "still draining for the peer's Close");
        peer.unbounded_send(Ok(close_message(1000u16, ""))).unwrap();
        let ending = task.await.unwrap();
        assert_eq!(
            (ending.initiator, ending.code, ending.reason),
            (Initiator::Server, Some(1000), "done")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_takes_no_writes_is_dropped_after_write_timeout_with_one_message_pulled() {
        let (socket, _peer, _from_server) = socket(true);
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let outgoing = stream::repeat_with(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            Message::text("x")
        });
        let started = Instant::now();
        let ending = serve_websocket(socket, &lifecycle(), outgoing, read_only).await;
        assert_eq!(ending.reason, "write_timeout");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(
            pulled.load(Ordering::Relaxed),
            1,
            "backpressure: nothing is pulled while a write is pending"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_handler_sees_data_and_its_reply_is_written() {
        let (socket, peer, mut from_server) = socket(false);
        let task = tokio::spawn(async move {
            let upper =
                |message: Message| Some(Message::text(message.to_text().ok()?.to_uppercase()));
            serve_websocket(socket, &lifecycle(), stream::pending(), upper).await
        });
        peer.unbounded_send(Ok(Message::text("hi"))).unwrap();
        peer.unbounded_send(Ok(Message::Ping(vec![1u8].into())))
            .unwrap();
        peer.unbounded_send(Ok(Message::binary(vec![0xffu8])))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(peer);
        task.await.unwrap();
        // The ping is tungstenite's business (the fake does not answer it); binary 0xff is not
        // text, so the handler returns None for it.
        assert_eq!(drained(&mut from_server), vec![Message::text("HI")]);
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
            let ending = serve_websocket(socket, &lifecycle(), stream::pending(), read_only).await;
            assert_eq!(ending.code, Some(code));
            let sent = drained(&mut from_server);
            assert_eq!(sent.len(), 1);
            assert_eq!(close_code(&sent[0]), Some(code));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_drain_never_reads_the_close() {
        let (socket, peer, _from_server) = socket(false);
        let ticks = stream::repeat_with(|| Message::text("tick")).then(|message| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            message
        });
        let task =
            tokio::spawn(async move { push_without_reading(socket, &lifecycle(), ticks).await });
        peer.unbounded_send(Ok(close_message(1000u16, ""))).unwrap();
        let lifetime = lifecycle().timing.pong_timeout * NO_DRAIN_LIFETIME_PONG_TIMEOUTS;
        tokio::time::sleep(lifetime - Duration::from_secs(1)).await;
        assert!(!task.is_finished(), "the bug: the Close is never read");
        // Only the lifetime bound ends it: nothing the peer sends is ever read.
        let ending = task.await.unwrap();
        assert_eq!(ending.reason, "lifetime");
        assert_eq!(ending.code, None);
    }

    #[tokio::test(start_paused = true)]
    async fn no_drain_without_ticks_notices_a_vanished_peer_within_pong_timeout() {
        let (socket, _peer, from_server) = socket(false);
        drop(from_server); // the peer is gone: every write fails
        let started = Instant::now();
        let ending = push_without_reading(socket, &lifecycle(), stream::pending()).await;
        assert_eq!(ending.reason, "peer_gone");
        assert!(
            started.elapsed() <= Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
