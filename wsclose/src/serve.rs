//! The connection lifecycle, top to bottom. This module is the whole fix.
//!
//! ```text
//! upgrade ─► drain loop: one task owns the socket and selects over
//!              • the next incoming frame   (the READ: drains, hands data to the handler,
//!                                           writes its reply; answers Close)
//!              • the shutdown signal       (send Close 1001 or 1012, keep draining)
//!              • the next outgoing message (from the application's stream; its end → Close 1000)
//!              • one timer, at the earliest deadline:
//!                  open:    the next ping (keepalive), or no frame for pong_timeout → drop
//!                  closing: a Close unanswered for close_timeout → drop
//!                           (closing, only the read and this deadline are awaited)
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
//! * **One timer per connection.** A frame only moves the read deadline in a variable; the
//!   timer is re-armed when it fires (to the earlier of the next ping and the read deadline).
//!   Each connection holds one timer entry, and a busy connection does not touch the timer
//!   wheel for every frame. Once a Close is sent or received, the close deadline bounds each
//!   read instead (`timeout_at`), and its timer is registered only when a read has to wait:
//!   the usual close (the peer's Close, answered by the next read, which ends the stream)
//!   never touches the timer wheel.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::pin;

use futures::{Sink, Stream, StreamExt};
use tokio::time::{sleep_until, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use crate::io::{self, Write};
use crate::wait::{ShutdownWait, TimerWait};
use crate::{close, EndReason, Ending, Initiator, Lifecycle};

/// Every this many Pings, the loop flushes the Pongs that tungstenite queued itself, bounded by
/// `write_timeout`, rather than leaving them to the next read. Writing a Pong at the next read
/// costs nothing extra (the read's own flush, as in a bare loop); a flush of its own for every
/// Ping cost about 3% more CPU per idle connection (docs/performance.md, "Measured beside the
/// bare loop"). A peer that floods Pings and never reads fills its TCP buffers within a few
/// Pings, and the next of these flushes drops it after `write_timeout`.
pub(crate) const PINGS_PER_FLUSH: u8 = 8;

/// Where one connection is: open, or in a close handshake that one side started.
enum State {
    /// Reading, pushing and pinging.
    Open {
        /// When the next keepalive ping is due.
        next_ping: Instant,
        /// When the peer, silent since its last frame, is dropped.
        read_deadline: Instant,
        /// Pings read since the loop last flushed their Pongs itself (see [`PINGS_PER_FLUSH`]).
        pings_unflushed: u8,
    },
    /// The server sent Close; draining until the peer answers or `deadline`.
    ServerClosed {
        /// The Close that was sent.
        close: ServerClose,
        /// `close_timeout` after it was sent.
        deadline: Instant,
    },
    /// The peer sent Close; tungstenite queued the reply, which the next read flushes.
    /// Draining until the stream ends or `deadline`.
    PeerClosed {
        /// The peer's close code (1005 when its Close carried none).
        code: CloseCode,
        /// When the peer's Close arrived.
        received_at: Instant,
        /// `close_timeout` after it arrived.
        deadline: Instant,
    },
}

impl State {
    /// When the connection's one timer must fire next.
    fn deadline(&self) -> Instant {
        match self {
            State::Open {
                next_ping,
                read_deadline,
                ..
            } => (*next_ping).min(*read_deadline),
            State::ServerClosed { deadline, .. } | State::PeerClosed { deadline, .. } => *deadline,
        }
    }

    /// The ending of a close handshake that did not finish before its deadline.
    fn close_timed_out(self) -> Ending {
        let ending = match self {
            State::ServerClosed { close, .. } => close.unanswered(),
            State::PeerClosed { code, .. } => Ending::peer_gone().with_code(code),
            State::Open { .. } => Ending::peer_gone(),
        };
        Ending {
            reason: EndReason::CloseTimeout,
            ..ending
        }
    }
}

/// A Close frame the server has sent; the loop keeps draining until the peer answers.
struct ServerClose {
    code: CloseCode,
    reason: EndReason,
    sent_at: Instant,
}

impl ServerClose {
    /// The peer answered: a complete close handshake, timed.
    fn answered(self) -> Ending {
        self.unanswered().with_handshake(self.sent_at.elapsed())
    }

    /// The peer went away (or broke the protocol) instead of answering: no handshake to time.
    fn unanswered(&self) -> Ending {
        Ending::dropped(Initiator::Server, self.reason).with_code(self.code)
    }
}

/// Runs one upgraded WebSocket to its end, with every guarantee of the failure table, then
/// drops it (which closes the TCP connection) and says how it ended.
///
/// * `socket`: any `Stream` + `Sink` of tungstenite [`Message`]s, such as tokio-tungstenite's
///   `WebSocketStream`. For axum's and warp's sockets, use `wsclose::axum::serve` and
///   `wsclose::warp::serve` (features `axum` and `warp`).
/// * `lifecycle`: the [`Timing`](crate::Timing), the shutdown signal and code. The call is
///   counted in it while it runs, so [`Lifecycle::shutdown`] waits for it.
/// * `outgoing`: what the application sends (`Unpin`: pin a stream that is not with
///   `Box::pin`). Each message is written (and flushed) before the
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
/// Bound the socket's own buffers too: tokio-tungstenite's `WebSocketConfig` with
/// `max_write_buffer_size` (a peer that pings but never reads otherwise grows the queue of
/// Pongs) and `max_message_size`.
///
/// ```no_run
/// use futures::stream;
/// use wsclose::{serve_websocket, Lifecycle};
///
/// # async fn demo(tcp: tokio::net::TcpStream) {
/// let lifecycle = Lifecycle::new();
/// let socket = tokio_tungstenite::accept_async(tcp).await.expect("handshake");
/// // An echo server: nothing pushed, every message sent back.
/// let ending = serve_websocket(socket, &lifecycle, stream::pending(), Some).await;
/// println!("closed by {:?} with {:?} ({})", ending.initiator, ending.code, ending.reason);
/// # }
/// ```
// Not an `async fn`: see the comment in the body.
#[allow(clippy::manual_async_fn)]
pub fn serve_websocket<'a, S, E, O, H>(
    mut socket: S,
    lifecycle: &'a Lifecycle,
    mut outgoing: O,
    mut on_message: H,
) -> impl Future<Output = Ending> + 'a
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin + 'a,
    E: StdError + 'static,
    O: Stream<Item = Message> + Unpin + 'a,
    H: FnMut(Message) -> Option<Message> + 'a,
{
    // A function returning an `async move` block rather than an `async fn`: the block uses the
    // arguments where they were captured, where an `async fn` would store each one twice in
    // its future (memory per connection).
    async move {
        let _running = lifecycle.running_token();
        let timing = &lifecycle.timing;
        let start = Instant::now();
        let mut state = State::Open {
            next_ping: start + timing.ping_interval,
            read_deadline: start + timing.pong_timeout,
            pings_unflushed: 0,
        };
        // The timer and the shutdown signal register once for the connection's whole life,
        // and are polled again only when they may have fired (`wait.rs`).
        let sleep = pin!(sleep_until(state.deadline()));
        let mut timer = TimerWait::new(sleep);
        let notified = pin!(lifecycle.shutdown_notified());
        let mut shutdown = ShutdownWait::new(lifecycle, notified);

        loop {
            let open = matches!(state, State::Open { .. });
            // A close deadline is also checked against the clock on every turn: while a peer
            // floods frames the worker never parks, and tokio advances its timer wheel only every
            // few thousand reads, so the timer arm alone fired late.
            if !open && Instant::now() >= state.deadline() {
                return state.close_timed_out();
            }
            // The select only says what happened; the writes come after it, once its futures are
            // dropped, so a write's future never sits beside them in this one's state (a smaller
            // future: less memory per connection).
            // Not `biased;`: with the read first, a peer that floods frames would keep every other
            // arm (shutdown, outgoing messages, the close deadline) from ever being polled. tokio
            // picks the first arm at random, so each ready arm gets its turn.
            let event = if open {
                tokio::select! {
                    // 1. The read. Always pending, so Ping and Close are always answered.
                    incoming = socket.next() => Event::Read(incoming),
                    // 2. Shutdown.
                    () = &mut shutdown => Event::Shutdown,
                    // 3. The application's next message, or the end of its stream.
                    next = outgoing.next() => Event::Outgoing(next),
                    // 4. The one timer: the next keepalive ping, or the read deadline.
                    () = &mut timer => Event::Timer,
                }
            } else {
                // Closing: only the read and the close deadline count. The read is polled
                // first, and the deadline's timer is registered only if the read has to wait.
                // After the peer's Close the next read flushes the reply and ends the stream at
                // once, so the common close never touches the timer wheel.
                match tokio::time::timeout_at(state.deadline(), socket.next()).await {
                    Ok(incoming) => Event::Read(incoming),
                    Err(_elapsed) => Event::Timer,
                }
            };
            // What to write, if anything, and whether that write is the server's Close. One write
            // point below, not one per case: each await in this loop adds to its future's size.
            let (write, closing) = match event {
                // The stream has ended: tungstenite flushed the Close reply, if any.
                Event::Read(None) => {
                    return match state {
                        State::ServerClosed { close, .. } => close.unanswered(),
                        State::PeerClosed {
                            code, received_at, ..
                        } => Ending::dropped(Initiator::Client, EndReason::PeerClose)
                            .with_code(code)
                            .with_handshake(received_at.elapsed()),
                        State::Open { .. } => Ending::peer_gone(),
                    };
                }
                Event::Read(Some(Ok(message))) => match &mut state {
                    State::Open {
                        read_deadline,
                        pings_unflushed,
                        ..
                    } => {
                        let now = Instant::now();
                        // Any frame, a Pong included, proves the peer alive.
                        *read_deadline = now + timing.pong_timeout;
                        if message.is_close() {
                            // Do NOT return here: the reply is queued and goes out on the next read.
                            let code = close::code(&message).unwrap_or(CloseCode::Status);
                            let deadline = now + timing.close_timeout;
                            state = State::PeerClosed {
                                code,
                                received_at: now,
                                deadline,
                            };
                            (None, None)
                        } else if message.is_text() || message.is_binary() {
                            (on_message(message).map(Write::Send), None)
                        } else if message.is_ping() {
                            // tungstenite queued the Pong, and the next read writes it out
                            // before it reads on, as in a bare loop. A read does not wait for
                            // a write that blocks, though: so every PINGS_PER_FLUSH-th Ping is
                            // flushed here, within write_timeout, and a peer that floods Pings
                            // but never reads is dropped instead of read forever.
                            *pings_unflushed += 1;
                            if *pings_unflushed >= PINGS_PER_FLUSH {
                                *pings_unflushed = 0;
                                (Some(Write::Flush), None)
                            } else {
                                (None, None)
                            }
                        } else {
                            (None, None)
                        }
                    }
                    State::ServerClosed { .. } if message.is_close() => {
                        // Our Close was answered: the handshake is complete. Drop now.
                        let State::ServerClosed { close, .. } = state else {
                            unreachable!()
                        };
                        return close.answered();
                    }
                    // Still draining until the answer, or until the stream ends.
                    State::ServerClosed { .. } | State::PeerClosed { .. } => (None, None),
                },
                Event::Read(Some(Err(error))) => {
                    let answer = close::for_error(&error);
                    drop(error);
                    let (code, reason) = match (answer, &state) {
                        (Some(answer), State::Open { .. } | State::PeerClosed { .. }) => answer,
                        // Garbage while we wait for the peer's Close: stop waiting.
                        (_, State::ServerClosed { close, .. }) => return close.unanswered(),
                        (None, _) => return Ending::peer_gone(),
                    };
                    let message = close::message(code, reason.as_str().replace('_', " "));
                    (Some(Write::Send(message)), Some((code, reason)))
                }
                // Say goodbye (1001, or 1012 "come back"), then keep draining for the answer.
                Event::Shutdown => {
                    let code = lifecycle.shutdown_code();
                    let message = close::shutdown(code);
                    (
                        Some(Write::Send(message)),
                        Some((code, EndReason::Shutdown)),
                    )
                }
                Event::Outgoing(Some(message)) => (Some(Write::Send(message)), None),
                // The end of the application's stream closes with 1000.
                Event::Outgoing(None) => {
                    let message = close::message(CloseCode::Normal, "");
                    (
                        Some(Write::Send(message)),
                        Some((CloseCode::Normal, EndReason::Done)),
                    )
                }
                Event::Timer => {
                    let now = Instant::now();
                    let State::Open {
                        next_ping,
                        read_deadline,
                        ..
                    } = &mut state
                    else {
                        return state.close_timed_out();
                    };
                    // The peer has been silent for pong_timeout: it is dead or unreachable.
                    if now >= *read_deadline {
                        return Ending::dropped(Initiator::Server, EndReason::PongTimeout);
                    }
                    let ping = (now >= *next_ping).then(|| {
                        *next_ping = now + timing.ping_interval;
                        Write::Send(Message::Ping(Default::default()))
                    });
                    timer.reset(state.deadline());
                    (ping, None)
                }
            };
            // The one write: every write and flush is bounded by write_timeout.
            if let Some(write) = write {
                if let Err(ending) = io::write(&mut socket, write, timing.write_timeout).await {
                    return ending;
                }
            }
            // A Close went out: drain until the answer, for at most close_timeout.
            if let Some((code, reason)) = closing {
                state = server_closed(code, reason, timing.close_timeout);
            }
        }
    }
}

/// What woke the loop.
enum Event<E> {
    /// The read returned: a message, an error, or the end of the stream.
    Read(Option<Result<Message, E>>),
    /// Shutdown has begun.
    Shutdown,
    /// The application's next message, or `None` at the end of its stream.
    Outgoing(Option<Message>),
    /// The timer fired.
    Timer,
}

/// The state after the server sent Close with `code` for `reason`.
fn server_closed(code: CloseCode, reason: EndReason, close_timeout: std::time::Duration) -> State {
    let sent_at = Instant::now();
    State::ServerClosed {
        close: ServerClose {
            code,
            reason,
            sent_at,
        },
        deadline: sent_at + close_timeout,
    }
}
