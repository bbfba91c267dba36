//! The measurement: how long does `WebSocket.close()` take to fire `close`?
//!
//! [`measure_close`] does it in one call. The demo page needs to know the moment `close()` was
//! called (to run its live timer), so the same steps are also public one by one:
//!
//! ```text
//! let mut probe = Probe::connect(url, setup_timeout_ms).await?;   // wait for `open`
//! probe.wait_for_messages(3, setup_timeout_ms).await?;           // optional
//! let closing = probe.close(1000, "bye")?;                       // t0 = performance.now()
//! let report = closing.wait(Some(3_000)).await?;                 // until `close`, or give up
//! ```

use std::fmt;

use futures::future::{self, Either, FusedFuture, FutureExt};
use futures::{pin_mut, select, StreamExt};
use gloo_timers::future::TimeoutFuture;
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};

use crate::number::fixed;
use crate::socket::{now_ms, CloseInfo, Payload, Socket, SocketEvent};

/// The close code of a normal closure.
pub const NORMAL_CLOSURE: u16 = 1000;

/// The code a browser reports when the connection ended without a Close frame from the peer.
pub const ABNORMAL_CLOSURE: u16 = 1006;

/// How a probe closes its socket and how long it is willing to wait.
///
/// From JavaScript this is a plain object with camelCase keys, every key optional:
/// `{ code, reason, waitForMessages, setupTimeoutMs, closeTimeoutMs }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CloseOptions {
    /// The code passed to `close()`: 1000 or 3000–4999.
    pub code: u16,
    /// The reason passed to `close()`: at most 123 bytes of UTF-8.
    pub reason: String,
    /// How many messages to receive before calling `close()`.
    pub wait_for_messages: u32,
    /// Bound on connecting plus receiving `wait_for_messages` messages.
    pub setup_timeout_ms: u32,
    /// Give up when no `close` event arrives this long after `close()`. `None` waits forever.
    /// Browsers' timers hold at most [`MAX_TIMER_MS`] (about 24.8 days); longer values wait
    /// that long.
    pub close_timeout_ms: Option<u32>,
}

impl CloseOptions {
    /// The keys a JavaScript options object may have, in the order they are read.
    /// [`crate::options::close_options`] looks up only these on an object and never sees the
    /// others, so `measureClose` checks for strangers itself.
    pub const KEYS: [&'static str; 5] = [
        "code",
        "reason",
        "waitForMessages",
        "setupTimeoutMs",
        "closeTimeoutMs",
    ];
}

impl Default for CloseOptions {
    fn default() -> Self {
        CloseOptions {
            code: NORMAL_CLOSURE,
            reason: String::new(),
            wait_for_messages: 0,
            setup_timeout_ms: 10_000,
            close_timeout_ms: None,
        }
    }
}

impl CloseOptions {
    /// Closes with `code` and `reason` instead of 1000 and an empty reason.
    pub fn with_close(mut self, code: u16, reason: impl Into<String>) -> Self {
        self.code = code;
        self.reason = reason.into();
        self
    }

    /// Receives `count` messages before closing.
    pub fn wait_for_messages(mut self, count: u32) -> Self {
        self.wait_for_messages = count;
        self
    }

    /// Gives up waiting for the `close` event after `ms` milliseconds.
    pub fn give_up_after_ms(mut self, ms: u32) -> Self {
        self.close_timeout_ms = Some(ms);
        self
    }
}

/// The result of one probe: the `close` event, and how long it took.
///
/// In JavaScript: `{ elapsedMs, code, reason, wasClean, messagesReceived }` (the event's
/// fields flattened in).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseReport {
    /// Milliseconds from just before `close()` to the `close` event (`performance.now()`).
    pub elapsed_ms: f64,
    /// What the `close` event reported.
    #[serde(flatten)]
    pub close: CloseInfo,
    /// Data messages received before `close()` was called.
    pub messages_received: u32,
}

/// Why a probe produced no [`CloseReport`].
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeError {
    /// The browser refused to create the `WebSocket` (for example a malformed URL).
    InvalidUrl(String),
    /// The connection closed before it opened (refused, HTTP error, origin rejected, …): the
    /// `close` event, normally 1006 and not clean.
    ConnectFailed(CloseInfo),
    /// Connecting, or receiving the first messages, took longer than `setup_timeout_ms`.
    SetupTimeout {
        /// Milliseconds waited.
        after_ms: u32,
        /// Data messages received until then.
        messages_received: u32,
    },
    /// The server closed the connection before the probe called `close()`.
    ClosedByServer {
        /// What the `close` event reported.
        close: CloseInfo,
        /// Data messages received until then.
        messages_received: u32,
    },
    /// The browser threw from `close()` or `send()` (for example code 1001 or a long reason).
    Rejected(String),
    /// No `close` event arrived within `close_timeout_ms` of `close()`.
    ///
    /// Against `/ws/no-drain` this is the expected outcome of a short probe: the server never
    /// reads the Close frame, so the browser waits for its closing-handshake timeout.
    CloseTimeout {
        /// Milliseconds from `close()` until the probe gave up.
        elapsed_ms: f64,
        /// Data messages received before `close()`.
        messages_received: u32,
    },
    /// The socket delivered something the probe did not expect.
    Unexpected(String),
}

impl ProbeError {
    /// A short machine-readable name of the variant, such as `"closeTimeout"`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeError::InvalidUrl(_) => "invalidUrl",
            ProbeError::ConnectFailed(_) => "connectFailed",
            ProbeError::SetupTimeout { .. } => "setupTimeout",
            ProbeError::ClosedByServer { .. } => "closedByServer",
            ProbeError::Rejected(_) => "rejected",
            ProbeError::CloseTimeout { .. } => "closeTimeout",
            ProbeError::Unexpected(_) => "unexpected",
        }
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::InvalidUrl(why) => write!(f, "the browser rejected the URL: {why}"),
            ProbeError::ConnectFailed(CloseInfo { code, reason, .. }) => {
                write!(f, "could not connect (close code {code}")?;
                if !reason.is_empty() {
                    write!(f, ", reason {reason:?}")?;
                }
                write!(
                    f,
                    "); is the server running, and does it allow this origin?"
                )
            }
            ProbeError::SetupTimeout {
                after_ms,
                messages_received,
            } => write!(
                f,
                "gave up after {after_ms} ms while connecting or waiting for messages \
                 ({messages_received} received)"
            ),
            ProbeError::ClosedByServer {
                close:
                    CloseInfo {
                        code,
                        reason,
                        was_clean,
                    },
                ..
            } => write!(
                f,
                "the server closed first (code {code}, reason {reason:?}, wasClean {was_clean})"
            ),
            ProbeError::Rejected(why) => write!(f, "the browser threw: {why}"),
            ProbeError::CloseTimeout { elapsed_ms, .. } => write!(
                f,
                "no close event {} ms after close(): the server has not answered the Close \
                 frame",
                fixed(*elapsed_ms, 0)
            ),
            ProbeError::Unexpected(what) => write!(f, "unexpected: {what}"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// What the opening handshake gave: how long it took and what was negotiated.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    /// Milliseconds from `new WebSocket()` to the `open` event.
    pub open_ms: f64,
    /// `WebSocket.protocol`, empty when the server chose no subprotocol.
    pub protocol: String,
    /// `WebSocket.extensions`, empty when none were negotiated.
    pub extensions: String,
}

/// An open socket, ready to be closed and timed.
pub struct Probe {
    /// The socket, already open.
    socket: Socket,
    /// Data messages received so far.
    messages_received: u32,
    /// From `new WebSocket()` to `open`, in milliseconds.
    open_ms: f64,
}

impl Probe {
    /// Connects to `url` and waits for `open`, at most `setup_timeout_ms`.
    pub async fn connect(url: &str, setup_timeout_ms: u32) -> Result<Probe, ProbeError> {
        let connected_at_ms = now_ms();
        let socket = Socket::connect(url).map_err(|e| ProbeError::InvalidUrl(describe(&e)))?;
        let mut probe = Probe {
            socket,
            messages_received: 0,
            open_ms: 0.0,
        };
        let timer = deadline(Some(setup_timeout_ms));
        pin_mut!(timer);
        loop {
            let event = select! {
                event = probe.socket.next() => event,
                () = timer => return Err(probe.setup_timeout(setup_timeout_ms)),
            };
            match event {
                Some(SocketEvent::Open) => {
                    probe.open_ms = now_ms() - connected_at_ms;
                    return Ok(probe);
                }
                Some(SocketEvent::Error) => continue, // `close` follows and says more
                Some(SocketEvent::Close { close, .. }) => {
                    return Err(ProbeError::ConnectFailed(close))
                }
                Some(SocketEvent::Message(_)) => {
                    return Err(ProbeError::Unexpected("a message before open".into()))
                }
                None => return Err(stream_ended()),
            }
        }
    }

    /// Receives data messages until `count` have arrived in total, at most `timeout_ms`.
    pub async fn wait_for_messages(
        &mut self,
        count: u32,
        timeout_ms: u32,
    ) -> Result<(), ProbeError> {
        if self.messages_received >= count {
            return Ok(());
        }
        let timer = deadline(Some(timeout_ms));
        pin_mut!(timer);
        while self.messages_received < count {
            let event = select! {
                event = self.socket.next() => event,
                () = timer => return Err(self.setup_timeout(timeout_ms)),
            };
            match event {
                Some(SocketEvent::Message(_)) => self.messages_received += 1,
                Some(SocketEvent::Error) | Some(SocketEvent::Open) => {}
                Some(SocketEvent::Close { close, .. }) => return Err(self.closed_by_server(close)),
                None => return Err(stream_ended()),
            }
        }
        Ok(())
    }

    /// Sends one message without waiting for anything.
    pub fn send(&self, payload: &Payload) -> Result<(), ProbeError> {
        self.socket
            .send(payload)
            .map_err(|e| ProbeError::Rejected(describe(&e)))
    }

    /// Sends one message and returns the next data message that comes back, at most
    /// `timeout_ms`. Against `/ws/echo` (without `push_ms`) that is the echo.
    pub async fn round_trip(
        &mut self,
        payload: &Payload,
        timeout_ms: u32,
    ) -> Result<Payload, ProbeError> {
        self.socket
            .send(payload)
            .map_err(|e| ProbeError::Rejected(describe(&e)))?;
        let timer = deadline(Some(timeout_ms));
        pin_mut!(timer);
        loop {
            let event = select! {
                event = self.socket.next() => event,
                () = timer => return Err(self.setup_timeout(timeout_ms)),
            };
            match event {
                Some(SocketEvent::Message(reply)) => {
                    self.messages_received += 1;
                    return Ok(reply);
                }
                Some(SocketEvent::Error) | Some(SocketEvent::Open) => {}
                Some(SocketEvent::Close { close, .. }) => return Err(self.closed_by_server(close)),
                None => return Err(stream_ended()),
            }
        }
    }

    /// How long the socket took to open, and what the server negotiated.
    pub fn handshake(&self) -> Handshake {
        Handshake {
            open_ms: self.open_ms,
            protocol: self.socket.protocol(),
            extensions: self.socket.extensions(),
        }
    }

    /// Data messages received so far.
    pub fn messages_received(&self) -> u32 {
        self.messages_received
    }

    /// Reads `performance.now()` and calls `close(code, reason)` right after: the clock starts.
    ///
    /// Fails with [`ProbeError::ClosedByServer`] when the server has already closed the
    /// socket: there is no close handshake left to time.
    pub fn close(mut self, code: u16, reason: &str) -> Result<Closing, ProbeError> {
        while let Some(event) = self.socket.try_next_event() {
            match event {
                SocketEvent::Close { close, .. } => return Err(self.closed_by_server(close)),
                SocketEvent::Message(_) => self.messages_received += 1,
                SocketEvent::Open | SocketEvent::Error => {}
            }
        }
        let started_at_ms = self
            .socket
            .close(code, reason)
            .map_err(|e| ProbeError::Rejected(describe(&e)))?;
        Ok(Closing {
            socket: self.socket,
            started_at_ms,
            messages_received: self.messages_received,
        })
    }

    fn setup_timeout(&self, after_ms: u32) -> ProbeError {
        ProbeError::SetupTimeout {
            after_ms,
            messages_received: self.messages_received,
        }
    }

    fn closed_by_server(&self, close: CloseInfo) -> ProbeError {
        ProbeError::ClosedByServer {
            close,
            messages_received: self.messages_received,
        }
    }
}

/// A socket whose `close()` has been called; the clock is running.
pub struct Closing {
    /// The socket, in state CLOSING.
    socket: Socket,
    /// `performance.now()` just before `close()`.
    started_at_ms: f64,
    /// Data messages received before `close()`.
    messages_received: u32,
}

impl Closing {
    /// `performance.now()` read just before `close()`.
    pub fn started_at_ms(&self) -> f64 {
        self.started_at_ms
    }

    /// Waits for the `close` event, or gives up `timeout_ms` after `close()` was called.
    ///
    /// Browsers deliver no messages once `close()` has been called, so the only events left
    /// are `error` (ignored) and `close`.
    pub async fn wait(mut self, timeout_ms: Option<u32>) -> Result<CloseReport, ProbeError> {
        let remaining = timeout_ms.map(|ms| {
            let spent = (now_ms() - self.started_at_ms).max(0.0);
            (f64::from(ms) - spent).max(0.0).ceil() as u32
        });
        let timer = deadline(remaining);
        pin_mut!(timer);
        loop {
            let event = select! {
                event = self.socket.next() => event,
                () = timer => {
                    return Err(ProbeError::CloseTimeout {
                        elapsed_ms: now_ms() - self.started_at_ms,
                        messages_received: self.messages_received,
                    })
                }
            };
            match event {
                // The `close` event fired before `close()` was called (the server closed
                // first, between the queue check in `Probe::close` and the call).
                Some(SocketEvent::Close { close, at_ms }) if at_ms < self.started_at_ms => {
                    return Err(ProbeError::ClosedByServer {
                        close,
                        messages_received: self.messages_received,
                    })
                }
                Some(SocketEvent::Close { close, at_ms }) => {
                    return Ok(CloseReport {
                        elapsed_ms: at_ms - self.started_at_ms,
                        close,
                        messages_received: self.messages_received,
                    })
                }
                Some(_) => {}
                None => return Err(stream_ended()),
            }
        }
    }
}

/// Opens `url`, optionally receives some messages, closes with the given code and reason,
/// and measures how long the browser takes to fire `close`.
///
/// The interval runs from `performance.now()` just before `WebSocket.close()` to
/// `performance.now()` inside the `close` handler.
pub async fn measure_close(url: &str, opts: CloseOptions) -> Result<CloseReport, ProbeError> {
    let mut probe = Probe::connect(url, opts.setup_timeout_ms).await?;
    probe
        .wait_for_messages(opts.wait_for_messages, opts.setup_timeout_ms)
        .await?;
    probe
        .close(opts.code, &opts.reason)?
        .wait(opts.close_timeout_ms)
        .await
}

/// Opens `url`, sends `payload`, returns the first message that comes back, then closes
/// normally and waits (at most `timeout_ms`) for the `close` event.
pub async fn echo(url: &str, payload: &Payload, timeout_ms: u32) -> Result<Payload, ProbeError> {
    let mut probe = Probe::connect(url, timeout_ms).await?;
    let reply = probe.round_trip(payload, timeout_ms).await?;
    probe
        .close(NORMAL_CLOSURE, "")?
        .wait(Some(timeout_ms))
        .await?;
    Ok(reply)
}

/// The longest delay a browser timer holds: `setTimeout` takes a signed 32-bit count of
/// milliseconds, and gloo-timers casts larger values to negative ones, which fire at once.
pub const MAX_TIMER_MS: u32 = i32::MAX as u32;

/// A future that completes after `ms` milliseconds (at most [`MAX_TIMER_MS`]), or never for
/// `None`.
fn deadline(ms: Option<u32>) -> impl FusedFuture<Output = ()> {
    match ms {
        Some(ms) => Either::Left(TimeoutFuture::new(ms.min(MAX_TIMER_MS))),
        None => Either::Right(future::pending()),
    }
    .fuse()
}

/// The event stream can only end once the socket's handlers are gone, which a live `Socket`
/// prevents; this is a bug if it ever shows up.
fn stream_ended() -> ProbeError {
    ProbeError::Unexpected("the socket's event stream ended".into())
}

/// The message of a JavaScript exception, or its debug form.
pub(crate) fn describe(error: &JsValue) -> String {
    if let Some(error) = error.dyn_ref::<js_sys::Error>() {
        return format!(
            "{}: {}",
            String::from(error.name()),
            String::from(error.message())
        );
    }
    error.as_string().unwrap_or_else(|| format!("{error:?}"))
}

#[cfg(test)]
mod tests {
    use super::CloseOptions;

    /// `CloseOptions::KEYS` is exactly the struct's camelCase fields.
    #[test]
    fn the_option_keys_are_the_fields() {
        let json = serde_json::to_value(CloseOptions::default()).unwrap();
        let mut fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut keys = CloseOptions::KEYS.to_vec();
        fields.sort_unstable();
        keys.sort_unstable();
        assert_eq!(fields, keys);
    }
}
