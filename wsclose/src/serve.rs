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
//!   timer is re-armed when it fires (to the earlier of the next ping and the read deadline)
//!   or when a Close starts the handshake. Each connection holds one timer entry, and a busy
//!   connection does not touch the timer wheel for every frame.

use std::error::Error as StdError;
use std::pin::pin;

use futures::{Sink, Stream, StreamExt};
use tokio::time::{sleep_until, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use crate::{close, io, EndReason, Ending, Initiator, Lifecycle};

/// Where one connection is: open, or in a close handshake that one side started.
enum State {
    /// Reading, pushing and pinging.
    Open {
        /// When the next keepalive ping is due.
        next_ping: Instant,
        /// When the peer, silent since its last frame, is dropped.
        read_deadline: Instant,
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

/// Returns the [`Ending`] a failed bounded write yields.
macro_rules! write_or_return {
    ($write:expr) => {
        if let Err(ending) = $write.await {
            return ending;
        }
    };
}

/// Runs one upgraded WebSocket to its end, with every guarantee of the failure table, then
/// drops it (which closes the TCP connection) and says how it ended.
///
/// * `socket`: any `Stream` + `Sink` of tungstenite [`Message`]s, such as tokio-tungstenite's
///   `WebSocketStream`. For axum's and warp's sockets, use [`crate::axum::serve`] and
///   [`crate::warp::serve`] (features `axum` and `warp`).
/// * `lifecycle`: the [`Timing`](crate::Timing), the shutdown signal and code. The call is
///   counted in it while it runs, so [`Lifecycle::shutdown`] waits for it.
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
pub async fn serve_websocket<S, E, O, H>(
    mut socket: S,
    lifecycle: &Lifecycle,
    outgoing: O,
    mut on_message: H,
) -> Ending
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin,
    E: StdError + 'static,
    O: Stream<Item = Message>,
    H: FnMut(Message) -> Option<Message>,
{
    let _running = lifecycle.running_token();
    let timing = lifecycle.timing();
    let mut outgoing = pin!(outgoing.fuse());
    let start = Instant::now();
    let mut state = State::Open {
        next_ping: start + timing.ping_interval,
        read_deadline: start + timing.pong_timeout,
    };
    let mut timer = pin!(sleep_until(state.deadline()));

    loop {
        let open = matches!(state, State::Open { .. });
        // A close deadline is also checked against the clock on every turn: while a peer
        // floods frames the worker never parks, and tokio advances its timer wheel only every
        // few thousand reads, so the timer arm alone fired late.
        if !open && Instant::now() >= state.deadline() {
            return state.close_timed_out();
        }
        // Not `biased;`: with the read first, a peer that floods frames would keep every other
        // arm (shutdown, outgoing messages, the close deadline) from ever being polled. tokio
        // picks the first arm at random, so each ready arm gets its turn.
        tokio::select! {
            // 1. The read. Always pending, so Ping and Close are always answered.
            incoming = socket.next() => match incoming {
                // The stream has ended: tungstenite flushed the Close reply, if any.
                None => {
                    return match state {
                        State::ServerClosed { close, .. } => close.unanswered(),
                        State::PeerClosed { code, received_at, .. } => {
                            Ending::dropped(Initiator::Client, EndReason::PeerClose)
                                .with_code(code)
                                .with_handshake(received_at.elapsed())
                        }
                        State::Open { .. } => Ending::peer_gone(),
                    };
                }
                Some(Ok(message)) => match &mut state {
                    State::Open { read_deadline, .. } => {
                        let now = Instant::now();
                        // Any frame, a Pong included, proves the peer alive.
                        *read_deadline = now + timing.pong_timeout;
                        if message.is_close() {
                            // Do NOT return here: the reply is queued and goes out on the next read.
                            let code = close::code(&message).unwrap_or(CloseCode::Status);
                            let deadline = now + timing.close_timeout;
                            state = State::PeerClosed { code, received_at: now, deadline };
                            timer.as_mut().reset(deadline);
                        } else if message.is_text() || message.is_binary() {
                            if let Some(reply) = on_message(message) {
                                write_or_return!(io::send(&mut socket, reply, timing.write_timeout));
                            }
                        } else if message.is_ping() {
                            // tungstenite queued the Pong (only the latest one when the write
                            // buffer is bounded). Flush it within write_timeout: a peer that
                            // pings but never reads is dropped here instead of held forever.
                            write_or_return!(io::flush(&mut socket, timing.write_timeout));
                        }
                    }
                    State::ServerClosed { .. } if message.is_close() => {
                        // Our Close was answered: the handshake is complete. Drop now.
                        let State::ServerClosed { close, .. } = state else { unreachable!() };
                        return close.answered();
                    }
                    // Still draining until the answer, or until the stream ends.
                    State::ServerClosed { .. } | State::PeerClosed { .. } => {}
                },
                Some(Err(error)) => {
                    let answer = close::for_error(&error);
                    let (code, reason) = match (answer, state) {
                        (Some(answer), State::Open { .. } | State::PeerClosed { .. }) => answer,
                        // Garbage while we wait for the peer's Close: stop waiting.
                        (_, State::ServerClosed { close, .. }) => return close.unanswered(),
                        (None, _) => return Ending::peer_gone(),
                    };
                    let message = close::message(code, reason.as_str().replace('_', " "));
                    write_or_return!(io::send(&mut socket, message, timing.write_timeout));
                    state = server_closed(code, reason, timing.close_timeout);
                    timer.as_mut().reset(state.deadline());
                }
            },

            // 2. Shutdown: say goodbye (1001, or 1012 "come back"), then keep draining for the answer.
            () = lifecycle.shutting_down(), if open => {
                let code = lifecycle.shutdown_code();
                write_or_return!(io::send(&mut socket, close::shutdown(code), timing.write_timeout));
                state = server_closed(code, EndReason::Shutdown, timing.close_timeout);
                timer.as_mut().reset(state.deadline());
            }

            // 3. The application's next message; the end of its stream closes with 1000.
            next = outgoing.next(), if open => match next {
                Some(message) => write_or_return!(io::send(&mut socket, message, timing.write_timeout)),
                None => {
                    let close = close::message(CloseCode::Normal, "");
                    write_or_return!(io::send(&mut socket, close, timing.write_timeout));
                    state = server_closed(CloseCode::Normal, EndReason::Done, timing.close_timeout);
                    timer.as_mut().reset(state.deadline());
                }
            },

            // 4. The one timer: keepalive and the read deadline while open; the close deadline after.
            () = &mut timer => {
                let now = Instant::now();
                let State::Open { next_ping, read_deadline } = &mut state else {
                    return state.close_timed_out();
                };
                // The peer has been silent for pong_timeout: it is dead or unreachable.
                if now >= *read_deadline {
                    return Ending::dropped(Initiator::Server, EndReason::PongTimeout);
                }
                if now >= *next_ping {
                    *next_ping = now + timing.ping_interval;
                    let ping = Message::Ping(Default::default());
                    write_or_return!(io::send(&mut socket, ping, timing.write_timeout));
                }
                timer.as_mut().reset(state.deadline());
            }
        }
    }
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
