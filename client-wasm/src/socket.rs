//! A browser `WebSocket` whose events arrive on a channel, gloo-net style.
//!
//! [`Socket`] owns the `WebSocket` and the four event-handler closures. Each handler only
//! forwards its event into an unbounded channel, and [`Socket`] is a [`Stream`] of those
//! events, so the code that uses it reads top to bottom:
//!
//! ```text
//! let mut socket = Socket::connect("ws://127.0.0.1:3030/ws/drain")?;
//! while let Some(event) = socket.next().await { /* Open, Message, Error, Close */ }
//! ```
//!
//! Nothing is leaked: the closures are fields of the struct, and `Drop` detaches them from the
//! `WebSocket` before they are freed. There is no `.forget()`.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::mpsc::{self, UnboundedReceiver, UnboundedSender};
use futures::stream::{FusedStream, Stream};
use js_sys::{ArrayBuffer, Uint8Array};
use serde::Serialize;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

/// The payload of one WebSocket data message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// What the browser reported in its `close` event: `{ code, reason, wasClean }` in JavaScript
/// (a [`CloseReport`](crate::CloseReport) carries it flattened).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseInfo {
    /// `CloseEvent.code`: the code the server echoed, or 1006 when no Close frame came back.
    pub code: u16,
    /// `CloseEvent.reason`: the reason the server echoed.
    pub reason: String,
    /// `CloseEvent.wasClean`: true when the closing handshake completed.
    pub was_clean: bool,
}

/// One event of a [`Socket`], in the order the browser fired them.
#[derive(Clone, Debug, PartialEq)]
pub enum SocketEvent {
    /// The `open` event: the handshake succeeded.
    Open,
    /// A `message` event.
    Message(Payload),
    /// The `error` event. The browser gives no detail; a `Close` always follows.
    Error,
    /// The `close` event. It is the last event of a socket.
    Close {
        /// What it reported.
        close: CloseInfo,
        /// `performance.now()` read inside the `close` handler, in milliseconds.
        at_ms: f64,
    },
}

/// A `WebSocket` plus the closures that forward its events to a channel.
///
/// Dropping it detaches the handlers and, if the socket is still connecting or open,
/// calls `close()` so the connection does not outlive its owner.
pub struct Socket {
    /// The browser object.
    ws: WebSocket,
    /// Where the handlers deliver their events.
    events: UnboundedReceiver<SocketEvent>,
    /// `onopen`: kept alive here, detached in `Drop`.
    _on_open: Closure<dyn FnMut(Event)>,
    /// `onmessage`: kept alive here, detached in `Drop`.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    /// `onerror`: kept alive here, detached in `Drop`.
    _on_error: Closure<dyn FnMut(Event)>,
    /// `onclose`: kept alive here, detached in `Drop`.
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    /// Starts connecting to `url`. The first event is `Open`, or `Error` then `Close`.
    ///
    /// Fails at once (without any event) when the browser rejects the URL, for example a
    /// scheme other than `ws:`/`wss:`.
    pub fn connect(url: &str) -> Result<Self, JsValue> {
        let ws = WebSocket::new(url)?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let (tx, events) = mpsc::unbounded();

        let on_open = forward(&tx, |_: Event| Some(SocketEvent::Open));
        let on_message = forward(&tx, |event: MessageEvent| {
            payload_of(&event.data()).map(SocketEvent::Message)
        });
        let on_error = forward(&tx, |_: Event| Some(SocketEvent::Error));
        let on_close = forward(&tx, |event: CloseEvent| {
            // Read the clock first: this is the end of the measured interval.
            let at_ms = now_ms();
            let close = CloseInfo {
                code: event.code(),
                reason: event.reason(),
                was_clean: event.was_clean(),
            };
            Some(SocketEvent::Close { close, at_ms })
        });

        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));

        Ok(Socket {
            ws,
            events,
            _on_open: on_open,
            _on_message: on_message,
            _on_error: on_error,
            _on_close: on_close,
        })
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), JsValue> {
        self.ws.send_with_str(text)
    }

    /// Sends a binary message.
    pub fn send_binary(&self, bytes: &[u8]) -> Result<(), JsValue> {
        self.ws.send_with_u8_array(bytes)
    }

    /// Sends `payload` as a text or binary message.
    pub fn send(&self, payload: &Payload) -> Result<(), JsValue> {
        match payload {
            Payload::Text(text) => self.send_text(text),
            Payload::Binary(bytes) => self.send_binary(bytes),
        }
    }

    /// Calls `WebSocket.close(code, reason)` and returns `performance.now()` read just before
    /// the call: the start of the measured close interval.
    ///
    /// The browser throws for a code other than 1000 or 3000–4999, and for a reason longer
    /// than 123 bytes of UTF-8.
    pub fn close(&self, code: u16, reason: &str) -> Result<f64, JsValue> {
        let started_at_ms = now_ms();
        self.ws.close_with_code_and_reason(code, reason)?;
        Ok(started_at_ms)
    }

    /// The next event if one is already queued, without waiting.
    pub fn try_next_event(&mut self) -> Option<SocketEvent> {
        self.events.try_recv().ok()
    }

    /// `WebSocket.readyState`: `web_sys::WebSocket::{CONNECTING, OPEN, CLOSING, CLOSED}`.
    pub fn ready_state(&self) -> u16 {
        self.ws.ready_state()
    }

    /// The URL the browser resolved and connects to.
    pub fn url(&self) -> String {
        self.ws.url()
    }

    /// `WebSocket.protocol`: the subprotocol the server chose, empty when none (or not open yet).
    pub fn protocol(&self) -> String {
        self.ws.protocol()
    }

    /// `WebSocket.extensions`: the extensions the server accepted, such as
    /// `permessage-deflate`, empty when none (or not open yet).
    pub fn extensions(&self) -> String {
        self.ws.extensions()
    }
}

impl Stream for Socket {
    type Item = SocketEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SocketEvent>> {
        Pin::new(&mut self.events).poll_next(cx)
    }
}

impl FusedStream for Socket {
    fn is_terminated(&self) -> bool {
        self.events.is_terminated()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onerror(None);
        self.ws.set_onclose(None);
        let state = self.ws.ready_state();
        if state == WebSocket::CONNECTING || state == WebSocket::OPEN {
            // Nobody listens any more; release the connection. Closing cannot fail without
            // arguments, and a failure here would have nowhere to go anyway.
            let _ = self.ws.close();
        }
        // The closures (the `_on_*` fields) are freed after this body, once the browser can
        // no longer call them.
    }
}

/// `performance.now()` in milliseconds, or `Date.now()` where there is no `window`.
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|window| window.performance())
        .map_or_else(js_sys::Date::now, |performance| performance.now())
}

/// A handler closure that maps its event with `map` and sends the result down `tx`.
fn forward<E, F>(tx: &UnboundedSender<SocketEvent>, map: F) -> Closure<dyn FnMut(E)>
where
    E: wasm_bindgen::convert::FromWasmAbi + 'static,
    F: Fn(E) -> Option<SocketEvent> + 'static,
{
    let tx = tx.clone();
    Closure::new(move |event: E| {
        if let Some(event) = map(event) {
            // The receiver lives as long as the closure (both belong to the `Socket`), so a
            // failed send can only happen during teardown, where dropping the event is right.
            let _ = tx.unbounded_send(event);
        }
    })
}

/// The payload of a `message` event: a string, or an `ArrayBuffer` (the binary type we set).
fn payload_of(data: &JsValue) -> Option<Payload> {
    if let Some(text) = data.as_string() {
        return Some(Payload::Text(text));
    }
    data.dyn_ref::<ArrayBuffer>()
        .map(|buffer| Payload::Binary(Uint8Array::new(buffer).to_vec()))
}
