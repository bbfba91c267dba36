//! Helpers around `tokio-tungstenite`, the well-behaved client (the same tungstenite warp uses),
//! and around the raw client ([`RawClient`]) for what a well-behaved client will not do: stay
//! silent, or read every frame itself.
//!
//! The one rule they follow is tungstenite's: after sending Close, keep reading until the stream
//! ends, because that is how the handshake completes.

use std::fmt::Debug;
use std::ops::Range;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsclose_check::{Ended, How};

use crate::http::http_get;
use crate::raw::{Frame, RawClient, OP_CLOSE, OP_PING};
use crate::server::ServerProcess;
use crate::IO_TIMEOUT;

/// A tokio-tungstenite client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `url`; panics if the handshake fails or takes longer than [`IO_TIMEOUT`].
pub async fn connect(url: &str) -> Ws {
    match tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((ws, _response))) => ws,
        Ok(Err(err)) => panic!("connect {url}: {err}"),
        Err(_) => panic!("connect {url}: timed out"),
    }
}

/// One push from `/ws/drain` or `/ws/no-drain`: `{"seq":N,"sent_at_ms":...}`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Tick {
    /// Position of this tick on its connection: 0, 1, 2, … with no gaps.
    pub seq: u64,
    /// When the server sent it (milliseconds; only its presence is checked).
    pub sent_at_ms: serde_json::Value,
}

/// Parses a text message as a [`Tick`]; panics (naming the message) if it is not one.
pub fn parse_tick(message: &Message) -> Tick {
    match message {
        Message::Text(text) => serde_json::from_str(text.as_str())
            .unwrap_or_else(|err| panic!("not a tick: {text:?}: {err}")),
        other => panic!("expected a text tick, got {other:?}"),
    }
}

/// Asserts that `ticks` are numbered `first, first+1, …` with none missing or repeated.
pub fn assert_contiguous(ticks: &[Tick], first: u64) {
    for (i, tick) in ticks.iter().enumerate() {
        assert_eq!(
            tick.seq,
            first + i as u64,
            "tick #{i} has seq {} (ticks: {:?})",
            tick.seq,
            ticks.iter().map(|tick| tick.seq).collect::<Vec<_>>()
        );
    }
}

/// What came back after a client sent Close, whichever client sent it: tungstenite's
/// ([`close_and_wait`]) or the raw one ([`raw_close`]).
#[derive(Debug)]
pub struct CloseResult {
    /// The server's Close ([`How::Close`], its frame in [`Ended::close`]), or how the wait for
    /// it ended without one ([`How::Open`]: nothing came within the wait).
    pub answer: Ended,
    /// Just before the Close was sent.
    pub sent: Instant,
    /// From [`sent`](Self::sent) to the answer (or to the end of the wait).
    pub elapsed: Duration,
    /// Data messages that arrived after the Close was sent, before the answer (tungstenite's
    /// client; the raw client assembles no messages and leaves this empty).
    pub messages: Vec<Message>,
    /// Whether the end of the connection was seen within the wait. tungstenite's client reads
    /// on after the server's Close until the stream ends; the raw client stops at the Close
    /// (then this is false: [`RawClient::wait_tcp_end`] watches for the end).
    pub ended: bool,
    /// The error the stream ended with, if it was not the normal end of a close handshake.
    pub error: Option<String>,
}

impl CloseResult {
    /// The code of the server's Close reply; panics, with the whole result, if there was none.
    pub fn code(&self) -> CloseCode {
        match self.answer.close_code() {
            Some(code) => CloseCode::from(code),
            None => panic!("no Close frame with a code from the server: {self:?}"),
        }
    }

    /// The reason of the server's Close reply (empty if none), lossy UTF-8.
    pub fn reason(&self) -> String {
        self.answer.close_reason().unwrap_or_default()
    }
}

/// Sends Close(`code`, `reason`) and keeps reading until the stream ends or `timeout` passes.
pub async fn close_and_wait(
    ws: &mut Ws,
    code: impl Into<CloseCode>,
    reason: &str,
    timeout: Duration,
) -> CloseResult {
    let sent = Instant::now();
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.into(),
    };
    let mut result = CloseResult {
        answer: Ended::without_close(How::Open),
        sent,
        elapsed: Duration::ZERO,
        messages: Vec::new(),
        ended: false,
        error: None,
    };
    if let Err(err) = ws.close(Some(frame)).await {
        result.error = Some(format!("sending Close: {err}"));
    }
    let answered = |result: &CloseResult| result.answer.how == How::Close;
    loop {
        match tokio::time::timeout_at(sent + timeout, ws.next()).await {
            Err(_) => break,
            Ok(None) | Ok(Some(Err(WsError::ConnectionClosed))) => {
                if !answered(&result) {
                    result.answer = Ended::without_close(How::Fin);
                }
                result.ended = true;
                break;
            }
            Ok(Some(Err(err))) => {
                if !answered(&result) {
                    result.answer = ended_by(&err);
                }
                result.ended = true;
                result.error = Some(err.to_string());
                break;
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                result.elapsed = sent.elapsed();
                // The server's Close as it came on the wire (unmasked), in the raw client's
                // terms.
                let close = match frame {
                    Some(frame) => Frame::close(frame.code.into(), frame.reason.as_bytes()),
                    None => Frame::new(OP_CLOSE, Vec::new()),
                };
                result.answer = Ended::with_close(close.unmasked());
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(message))) => result.messages.push(message),
        }
    }
    if !answered(&result) {
        result.elapsed = sent.elapsed();
    }
    result
}

/// How an error from tungstenite's stream, before any Close came, ended the connection.
fn ended_by(err: &WsError) -> Ended {
    match err {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            Ended::without_close(How::Fin)
        }
        WsError::Io(io) => Ended::of_error(&std::io::Error::from(io.kind()).into()),
        other => Ended::failed(other.to_string()),
    }
}

/// Asserts that the server answered the client's Close: its reply echoed `code` and
/// `reason` within `bound`, and the stream then ended without an error. `what` names the case
/// in a failure.
pub fn assert_answered(
    closed: &CloseResult,
    code: impl Into<CloseCode>,
    reason: &str,
    bound: Duration,
    what: &dyn std::fmt::Debug,
) {
    assert_eq!(closed.code(), code.into(), "{what:?}: {closed:?}");
    assert_eq!(closed.reason(), reason, "{what:?}: {closed:?}");
    assert!(closed.ended, "{what:?}: the stream did not end: {closed:?}");
    assert_eq!(closed.error, None, "{what:?}: {closed:?}");
    assert!(
        closed.elapsed < bound,
        "{what:?}: answered after {:?}",
        closed.elapsed
    );
}

/// The next data message (text or binary), skipping pings and pongs; panics on a Close, an
/// error, the end of the stream, or after `timeout`.
pub async fn next_data(ws: &mut Ws, timeout: Duration) -> Message {
    let deadline = Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no data message within {timeout:?}"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(message @ (Message::Text(_) | Message::Binary(_))))) => return message,
            Ok(other) => panic!("expected a data message, got {other:?}"),
        }
    }
}

/// Asserts the server still does its job: `/healthz` says `ok`, and a fresh `/ws/echo`
/// connection echoes a message and completes a 1000 close handshake.
pub async fn assert_healthy(server: &ServerProcess) {
    let health = http_get(server.addr(), "/healthz")
        .await
        .expect("GET /healthz");
    assert_eq!(health.status, 200, "healthz: {health:?}");
    assert_eq!(health.body.trim(), "ok", "healthz body");

    let mut ws = connect(&server.ws_url("/ws/echo")).await;
    ws.send(Message::text("still serving"))
        .await
        .expect("send to echo");
    assert_eq!(
        next_data(&mut ws, IO_TIMEOUT).await,
        Message::text("still serving")
    );
    let closed = close_and_wait(&mut ws, CloseCode::Normal, "", IO_TIMEOUT).await;
    assert_answered(
        &closed,
        CloseCode::Normal,
        "",
        IO_TIMEOUT,
        &"a fresh /ws/echo",
    );
}

/// The next frame from `raw` within [`IO_TIMEOUT`], whatever its opcode; panics, naming `what`,
/// if none came in time, the read failed or the connection ended.
pub async fn next_frame(raw: &mut RawClient, what: &str) -> Frame {
    match tokio::time::timeout(IO_TIMEOUT, raw.read_frame()).await {
        Err(_) => panic!("{what}: no frame within {IO_TIMEOUT:?}"),
        Ok(Err(err)) => panic!("{what}: read failed: {err:#}"),
        Ok(Ok(None)) => panic!("{what}: EOF"),
        Ok(Ok(Some(frame))) => frame,
    }
}

/// Sends Close(`code`, `reason`) on `raw` and waits up to [`IO_TIMEOUT`] for the server's answer:
/// its Close frame, or the end of the connection. Panics if the Close cannot be sent.
pub async fn raw_close(raw: &mut RawClient, code: u16, reason: &[u8]) -> CloseResult {
    let sent = Instant::now();
    raw.send(&Frame::close(code, reason))
        .await
        .expect("send Close");
    let (answer, _) = raw.next_close(IO_TIMEOUT).await;
    CloseResult {
        sent,
        elapsed: sent.elapsed(),
        messages: Vec::new(),
        ended: matches!(answer.how, How::Fin | How::Rst),
        error: answer.error.clone(),
        answer,
    }
}

/// Sends Close(`code`, `reason`) on `raw` and asserts that the server's Close reply echoes
/// `code`; returns the reply. `what` names the case in a failure.
pub async fn assert_raw_close_echoed(
    raw: &mut RawClient,
    code: u16,
    reason: &[u8],
    what: &dyn Debug,
) -> Frame {
    let CloseResult { answer, .. } = raw_close(raw, code, reason).await;
    let Some(reply) = answer.close else {
        panic!("{what:?}: no Close reply: {answer:?}");
    };
    assert_eq!(reply.close_code(), Some(code), "{what:?}: {reply:?}");
    reply
}

/// Sends Close 1000 on `raw` and asserts that the close handshake ends the connection at once:
/// the server echoes the Close, then ends TCP within `bound` of its reply (waiting up to
/// `wait` for the end). `what` names the case in a failure.
pub async fn assert_tcp_ends_after_close(
    raw: &mut RawClient,
    wait: Duration,
    bound: Duration,
    what: &dyn Debug,
) {
    assert_raw_close_echoed(raw, 1000, b"", what).await;
    let eof = raw.wait_tcp_end(wait).await;
    println!("{what:?}: TCP ended {eof:?} after the Close reply");
    let eof =
        eof.unwrap_or_else(|| panic!("{what:?}: TCP still open {wait:?} after the handshake"));
    assert!(eof < bound, "{what:?}: TCP ended after {eof:?}");
}

/// What a silent peer saw until the server dropped it: it read every frame, so that the pings
/// can be counted, and answered nothing.
#[derive(Debug)]
pub struct SilentPeer {
    /// How the connection ended ([`How::Open`] if it outlived the wait).
    pub ended: Ended,
    /// From the start of the silence to that end.
    pub elapsed: Duration,
    /// Every frame the server sent meanwhile.
    pub frames: Vec<Frame>,
    /// How many of them were pings.
    pub pings: usize,
}

/// Reads `raw` and answers nothing until the server drops it or `wait` passes.
pub async fn silent_peer_dropped(raw: &mut RawClient, wait: Duration) -> SilentPeer {
    let start = Instant::now();
    let (ended, frames) = raw.next_close(wait).await;
    let elapsed = start.elapsed();
    let pings = frames
        .iter()
        .filter(|frame| frame.opcode == OP_PING)
        .count();
    SilentPeer {
        ended,
        elapsed,
        frames,
        pings,
    }
}

impl SilentPeer {
    /// Asserts that the server pinged the peer, then dropped it without a Close frame, no
    /// earlier than `window.start` (the pong deadline, less some slack) and before
    /// `window.end`. `what` names the case in a failure.
    pub fn assert_dropped(&self, window: Range<Duration>, what: &dyn Debug) {
        let SilentPeer {
            ended,
            elapsed,
            pings,
            ..
        } = self;
        println!("{what:?}: silent peer {ended:?} after {elapsed:?}, {pings} pings seen");
        assert!(
            matches!(ended.how, How::Fin | How::Rst),
            "{what:?}: a dead peer is dropped without a Close frame, got {ended:?} after \
             {elapsed:?}"
        );
        assert!(*pings >= 1, "{what:?}: the server never pinged");
        assert!(
            *elapsed >= window.start,
            "{what:?}: dropped after {elapsed:?}, before the pong deadline (not before {:?})",
            window.start
        );
        assert!(
            *elapsed < window.end,
            "{what:?}: dropped only after {elapsed:?} (bound {:?})",
            window.end
        );
    }
}
