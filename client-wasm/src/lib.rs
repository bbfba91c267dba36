//! # wsclose-client: a browser probe for `WebSocket.close()`
//!
//! Call `ws.close()` in a browser and time the `close` event. Against a server that keeps
//! reading its socket, the event fires in about a millisecond with the code you sent and
//! `wasClean == true`. Against a server that never reads, nobody answers the Close frame, and
//! the browser waits for its closing-handshake timeout (Chromium 60 s, Firefox about 20 s,
//! WebKit 5 s)
//! before it gives up with code 1006 and `wasClean == false`.
//!
//! This crate measures exactly that, from Rust compiled to wasm, and drives the demo page.
//!
//! # Layout
//! - [`socket`]: [`Socket`], a `WebSocket` whose events arrive as a [`futures::Stream`]. The
//!   handler closures are fields of the struct and are detached in `Drop`; nothing leaks.
//! - [`probe`]: [`measure_close`] and its steps ([`Probe`] → [`Closing`] → [`CloseReport`]),
//!   plus [`echo`] for round-trip checks.
//! - [`subscription`]: [`Subscription`], a reconnecting subscription to `/ws/drain`: reconnects
//!   on 1001, 1006, 1011 and 1012 with RFC 6455 backoff, resumes with `after=`.
//! - [`explain`]: formatting of durations and the one-sentence reading of a result.
//! - [`results`]: the demo page's results as data: median and p95 per URL, the browser and
//!   its timeout, and the JSON and Markdown export.
//! - [`number`]: numbers to text and back without core's float formatting and parsing (the
//!   wasm's size); [`options`]: `measureClose`'s options object read key by key; [`js`]:
//!   the report and the export as plain JavaScript objects, built key by key.
//! - `demo` and `chart` (private): the demo page ([`Demo`]) and its log-scale SVG chart.
//!
//! # JavaScript
//! `measureClose(url, options?)` returns a `Promise` of a plain object
//! `{ elapsedMs, code, reason, wasClean, messagesReceived }`, and `new Demo()` wires up the demo
//! page (see `static/index.html`).
#![deny(missing_docs)]

mod chart;
mod demo;
pub mod explain;
pub mod js;
pub mod number;
pub mod options;
pub mod probe;
pub mod results;
pub mod socket;
pub mod subscription;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

pub use demo::Demo;
pub use probe::{
    echo, measure_close, CloseOptions, CloseReport, Closing, Handshake, Probe, ProbeError,
    ABNORMAL_CLOSURE, NORMAL_CLOSURE,
};
pub use socket::{CloseInfo, Payload, Socket, SocketEvent};
pub use subscription::{should_reconnect, Backoff, Status, Subscription};

/// JavaScript entry point: `measureClose(url, options?)`, see [`measure_close`].
///
/// `options` is `undefined` or an object with any of the keys of [`CloseOptions`] in camelCase.
/// The promise resolves with a [`CloseReport`] as a plain object, or rejects with an `Error`
/// named `ProbeError` whose `kind` is [`ProbeError::kind`] (and, for a close timeout,
/// whose `elapsedMs` says how long it waited).
#[wasm_bindgen(js_name = measureClose)]
pub async fn measure_close_js(url: String, options: JsValue) -> Result<JsValue, JsValue> {
    let options: CloseOptions = if options.is_undefined() || options.is_null() {
        CloseOptions::default()
    } else {
        let bad = |why: String| JsValue::from(js_sys::Error::new(&format!("bad options: {why}")));
        // Only the known keys are looked up, so a misspelled one is found here.
        if let Some(object) = options.dyn_ref::<js_sys::Object>() {
            let keys = js_sys::Object::keys(object);
            if let Some(unknown) = keys
                .iter()
                .filter_map(|key| key.as_string())
                .find(|key| !CloseOptions::KEYS.contains(&key.as_str()))
            {
                return Err(bad(format!(
                    "unknown field `{unknown}`, expected one of {:?}",
                    CloseOptions::KEYS
                )));
            }
        }
        match options::close_options(&options) {
            Ok(options) => options,
            // The message as serde-wasm-bindgen's error made it a string: `Error: …`.
            Err(options::Bad::Message(why)) => return Err(bad(format!("Error: {why}"))),
            Err(options::Bad::Thrown(error)) => return Err(error),
        }
    };
    match measure_close(&url, options).await {
        Ok(report) => Ok(js::report(&report)),
        Err(error) => Err(probe_error_to_js(&error)),
    }
}

/// A JavaScript `Error` for `error`: name `ProbeError`, plus `kind` and, when known, `elapsedMs`.
fn probe_error_to_js(error: &ProbeError) -> JsValue {
    let js_error = js_sys::Error::new(&error.to_string());
    js_error.set_name("ProbeError");
    let set = |key: &str, value: JsValue| {
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&js_error, &JsValue::from_str(key), &value);
    };
    set("kind", JsValue::from_str(error.kind()));
    if let ProbeError::CloseTimeout { elapsed_ms, .. } = error {
        set("elapsedMs", JsValue::from_f64(*elapsed_ms));
    }
    js_error.into()
}
