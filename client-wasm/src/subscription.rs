//! A reconnecting subscription to `/ws/drain`: what a browser client of a redeployed service
//! does.
//!
//! ```text
//! connect(url&after=<last seq>) ─► ticks ─► Close ─┬─ 1001, 1006, 1011, 1012: wait, reconnect
//!                                                 └─ anything else (1000, 4xxx…): stop
//! ```
//!
//! * **Which closes are worth a reconnect.** 1001 (going away) and 1012 (service restart) are
//!   what a server says on shutdown; 1011 (internal error) and 1006 (no Close frame: the
//!   connection was lost) are failures that a retry may cure. 1000 is a deliberate end, and a
//!   4xxx code is the application's policy: retrying would only repeat it.
//! * **Backoff, RFC 6455 §7.2.3.** The first reconnect waits a random delay (up to
//!   [`Backoff::first_max_ms`]), so the clients of a restarted instance do not all come back at
//!   once; each further failed attempt doubles the ceiling up to [`Backoff::cap_ms`], and the
//!   delay is drawn at random below it ("full jitter"). A connection that delivered a tick
//!   resets the count.
//! * **Resuming.** Each reconnect asks for `after=<last seq>`, and the server starts at the next
//!   one, so the sequence the application sees has no gap and no duplicate, across instances.
//! * **Nothing leaks.** The loop owns one [`Socket`] at a time (whose handlers are detached in
//!   its `Drop`), and [`Subscription`] aborts the loop when it is dropped.

use std::cell::RefCell;
use std::rc::Rc;

use futures::future::{AbortHandle, Abortable};
use futures::StreamExt;

use crate::socket::{Payload, Socket, SocketEvent};
use wasm_bindgen::JsValue;
/// The reconnect delays, shared with `wsclose-check --deploy` (crate `wsclose-backoff`).
pub use wsclose_backoff::Backoff;

/// Close codes after which the subscription reconnects.
pub const RECONNECT_CODES: [u16; 4] = [1001, 1006, 1011, 1012];

/// Whether a socket that closed with `code` should be reopened.
pub fn should_reconnect(code: u16) -> bool {
    RECONNECT_CODES.contains(&code)
}

/// What the subscription has seen so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    /// `connecting`, `open`, `waiting` (to reconnect) or `stopped`.
    pub state: &'static str,
    /// The `seq` of the last tick.
    pub last_seq: Option<u64>,
    /// The `instance` of the last tick.
    pub instance: Option<String>,
    /// Every tick received.
    pub ticks: u64,
    /// How many times it reconnected.
    pub reconnects: u32,
    /// Ticks whose `seq` was not the last one plus one (a gap or a duplicate): 0 is right.
    pub out_of_order: u32,
    /// The close code of every connection that ended, in order.
    pub closes: Vec<u16>,
    /// The instances that sent ticks, in the order first seen.
    pub instances: Vec<String>,
}

/// A running subscription; dropping it stops the loop and closes the socket.
pub struct Subscription {
    abort: AbortHandle,
}

impl Subscription {
    /// Subscribes to `url` (a `ws:`/`wss:` URL of `/ws/drain`, with or without a query), and
    /// calls `on_change` with the new [`Status`] after every event.
    pub fn start(url: String, backoff: Backoff, on_change: impl Fn(&Status) + 'static) -> Self {
        let (abort, registration) = AbortHandle::new_pair();
        let status = Rc::new(RefCell::new(Status::default()));
        let task = run(url, backoff, status, Rc::new(on_change));
        wasm_bindgen_futures::spawn_local(async move {
            let _ = Abortable::new(task, registration).await;
        });
        Subscription { abort }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

/// The URL to (re)connect to: `url`, plus `after=<last seq>` once a tick was seen.
fn resume_url(url: &str, last_seq: Option<u64>) -> String {
    match last_seq {
        None => url.to_owned(),
        Some(seq) => {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}after={seq}")
        }
    }
}

async fn run(
    url: String,
    backoff: Backoff,
    status: Rc<RefCell<Status>>,
    on_change: Rc<dyn Fn(&Status)>,
) {
    let update = |change: &dyn Fn(&mut Status)| {
        change(&mut status.borrow_mut());
        on_change(&status.borrow());
    };
    let mut attempt = 0u32;
    loop {
        update(&|status| status.state = "connecting");
        let target = resume_url(&url, status.borrow().last_seq);
        let code = match Socket::connect(&target) {
            Err(_) => None,
            Ok(mut socket) => {
                let mut code = None;
                while let Some(event) = socket.next().await {
                    match event {
                        SocketEvent::Open => update(&|status| status.state = "open"),
                        SocketEvent::Message(Payload::Text(text)) => {
                            let Some((seq, instance)) = parse_tick(&text) else {
                                continue;
                            };
                            attempt = 0;
                            update(&|status| record_tick(status, seq, &instance));
                        }
                        SocketEvent::Close { close, .. } => {
                            code = Some(close.code);
                            update(&|status| status.closes.push(close.code));
                            break;
                        }
                        SocketEvent::Message(Payload::Binary(_)) | SocketEvent::Error => {}
                    }
                }
                code
            }
        };
        if !code.is_some_and(should_reconnect) {
            update(&|status| status.state = "stopped");
            return;
        }
        update(&|status| status.state = "waiting");
        let delay = backoff.delay_ms(attempt, js_sys::Math::random());
        attempt = attempt.saturating_add(1);
        // Whole milliseconds; the delay is at most `cap_ms`, far below u32::MAX.
        gloo_timers::future::TimeoutFuture::new(delay.round() as u32).await;
        update(&|status| status.reconnects += 1);
    }
}

/// `seq` and `instance` of a tick `{"seq":N,"sent_at_ms":…,"instance":NAME}`, parsed by the
/// browser's `JSON.parse` (no JSON parser compiled into the wasm), read as serde-wasm-bindgen
/// read it into `{ seq: u64, #[serde(default)] instance: String }`: `seq` a safe integer, not
/// negative; `instance` a string, `""` when absent. Anything else is not a tick.
pub fn parse_tick(text: &str) -> Option<(u64, String)> {
    let value = js_sys::JSON::parse(text).ok()?;
    if !value.is_object() {
        return None;
    }
    let seq = js_sys::Reflect::get(&value, &JsValue::from_str("seq")).ok()?;
    if !js_sys::Number::is_safe_integer(&seq) {
        return None;
    }
    let seq = u64::try_from(seq.as_f64()? as i64).ok()?;
    let instance = JsValue::from_str("instance");
    let instance = if js_sys::Reflect::has(&value, &instance).ok()? {
        js_sys::Reflect::get(&value, &instance).ok()?.as_string()?
    } else {
        String::new()
    };
    Some((seq, instance))
}

fn record_tick(status: &mut Status, seq: u64, instance: &str) {
    if let Some(last) = status.last_seq {
        if seq != last + 1 {
            status.out_of_order += 1;
        }
    }
    status.last_seq = Some(seq);
    status.ticks += 1;
    if !status.instances.iter().any(|seen| seen == instance) {
        status.instances.push(instance.to_owned());
    }
    status.instance = Some(instance.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_only_on_restart_and_failure_codes() {
        for code in [1001, 1006, 1011, 1012] {
            assert!(should_reconnect(code), "{code}");
        }
        for code in [1000, 1002, 1008, 4000, 4999] {
            assert!(!should_reconnect(code), "{code}");
        }
    }

    #[test]
    fn resumes_after_the_last_seq() {
        assert_eq!(resume_url("ws://h/ws/drain", None), "ws://h/ws/drain");
        assert_eq!(
            resume_url("ws://h/ws/drain", Some(7)),
            "ws://h/ws/drain?after=7"
        );
        assert_eq!(
            resume_url("ws://h/ws/drain?push_ms=100", Some(7)),
            "ws://h/ws/drain?push_ms=100&after=7"
        );
    }

    #[test]
    fn a_gap_or_a_duplicate_is_counted() {
        let mut status = Status::default();
        for seq in [0, 1, 2, 2, 5, 6] {
            record_tick(&mut status, seq, "a");
        }
        assert_eq!(status.out_of_order, 2);
        assert_eq!(status.ticks, 6);
        assert_eq!(status.instances, vec!["a".to_owned()]);
    }
}
