//! From what the close handshake did to what each browser shows after `ws.close()`.
//!
//! The rules are the table measured in headless Chromium, Firefox ESR and WebKitGTK (under
//! Xvfb) against real servers (the README says with which commands):
//!
//! | the server                        | Chromium                     | Firefox                | WebKitGTK                        |
//! |-----------------------------------|------------------------------|------------------------|----------------------------------|
//! | answers Close, closes TCP at once | about the round trip, clean  | the same               | the same                         |
//! | never answers                     | 60 s, 1006, not clean        | 20 s, 1006, not clean  | 5 s, 1006, not clean             |
//! | answers Close, keeps TCP open     | up to 2 s more, code, clean  | the round trip, clean  | until TCP closes, at most 5 s after `close()`, clean |
//! | closes TCP without answering      | about the round trip, 1006   | the same               | the same                         |
//!
//! WebKitGTK is WebKit's engine and WebSocket code on Linux (its network layer is libsoup);
//! Safari on macOS and iOS runs the same WebSocket code over Apple's own network stack, whose
//! timeouts are not measured here.

use serde::{Serialize, Serializer};

use crate::browser::Browser;
use tungstenite::protocol::frame::coding::CloseCode;

/// Chromium's closing-handshake timeout: with no Close answer, `close` fires after this.
pub const CHROMIUM_CLOSE_TIMEOUT_MS: f64 = 60_000.0;
/// Firefox's closing-handshake timeout.
pub const FIREFOX_CLOSE_TIMEOUT_MS: f64 = 20_000.0;
/// WebKitGTK's closing-handshake timeout, counted from `close()`: with no Close answer, or
/// with the answer but TCP still open, `close` fires after this.
pub const WEBKIT_CLOSE_TIMEOUT_MS: f64 = 5_000.0;
/// After the close handshake, how long Chromium waits for the server to close TCP.
pub const CHROMIUM_TCP_CLOSE_WAIT_MS: f64 = 2_000.0;
/// The code a browser reports when the connection ended without a close handshake (1006).
pub const ABNORMAL_CLOSURE: CloseCode = CloseCode::Abnormal;
/// The code a browser reports for a Close frame without a code (1005).
pub const NO_STATUS: CloseCode = CloseCode::Status;

/// The code a browser's `close` event shows for the server's Close frame carrying `code`:
/// [`NO_STATUS`] when it carries none.
pub fn shown(code: Option<CloseCode>) -> CloseCode {
    code.unwrap_or(NO_STATUS)
}

/// What the server did after the check's Close(1000), classified for the prediction: its
/// behaviour (the Close, and how long it kept TCP open), not one connection's [`crate::How`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServerCloseBehaviour {
    /// Its Close came back after `close_ms`; TCP ended `tcp_end_ms` after that (`None`: still
    /// open when the check stopped watching).
    Answered {
        /// From our Close to the server's.
        close_ms: f64,
        /// The server's code; `None` for a Close without one.
        code: Option<CloseCode>,
        /// From the server's Close to the end of TCP.
        tcp_end_ms: Option<f64>,
    },
    /// TCP ended (or broke) without a Close frame, `after_ms` after ours.
    Dropped {
        /// From our Close to the end of TCP.
        after_ms: f64,
    },
    /// Nothing came back within the wait.
    Unanswered {
        /// How long the check waited.
        waited_ms: f64,
    },
    /// The upgrade itself was refused with this status.
    Refused {
        /// The HTTP status.
        status: u16,
    },
}

/// What one browser shows: `{"close_after_ms", "code", "was_clean"}` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BrowserOutcome {
    /// From `close()` to the `close` event (for a refused upgrade: the failed `open`).
    pub close_after_ms: f64,
    /// `CloseEvent.code`, a number in JSON.
    #[serde(serialize_with = "code_number")]
    pub code: CloseCode,
    /// `CloseEvent.wasClean`.
    pub was_clean: bool,
}

/// A close code as its number, as `CloseEvent.code` is.
fn code_number<S: Serializer>(code: &CloseCode, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u16(u16::from(code))
}

/// The prediction for every engine, one field each, named as [`Browser`] is in the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Predicted {
    /// Headless Chromium (156 measured).
    pub chromium: BrowserOutcome,
    /// Firefox (ESR 153 measured).
    pub firefox: BrowserOutcome,
    /// WebKitGTK (2.50 measured; see the module doc for Safari).
    pub webkit: BrowserOutcome,
}

impl Predicted {
    /// The outcome predicted for `browser`.
    pub fn of(&self, browser: Browser) -> BrowserOutcome {
        match browser {
            Browser::Chromium => self.chromium,
            Browser::Firefox => self.firefox,
            Browser::WebKit => self.webkit,
        }
    }
}

/// What Chromium, Firefox and WebKit will show after `close(1000)` on a server that behaves so.
pub fn predict(behaviour: &ServerCloseBehaviour) -> Predicted {
    let all = |outcome| Predicted {
        chromium: outcome,
        firefox: outcome,
        webkit: outcome,
    };
    match *behaviour {
        ServerCloseBehaviour::Answered {
            close_ms,
            code,
            tcp_end_ms,
        } => {
            let code = shown(code);
            // Chromium fires `close` once TCP is gone, or gives up waiting for it after 2 s.
            let tcp_wait = tcp_end_ms.map_or(CHROMIUM_TCP_CLOSE_WAIT_MS, |ms| {
                ms.min(CHROMIUM_TCP_CLOSE_WAIT_MS)
            });
            Predicted {
                chromium: BrowserOutcome {
                    close_after_ms: close_ms + tcp_wait,
                    code,
                    was_clean: true,
                },
                // Firefox fires `close` on the Close frame and does not wait for TCP.
                firefox: BrowserOutcome {
                    close_after_ms: close_ms,
                    code,
                    was_clean: true,
                },
                // WebKit waits for TCP, however long, until its close timeout from `close()`.
                webkit: BrowserOutcome {
                    close_after_ms: tcp_end_ms
                        .map_or(WEBKIT_CLOSE_TIMEOUT_MS, |ms| close_ms + ms)
                        .min(WEBKIT_CLOSE_TIMEOUT_MS),
                    code,
                    was_clean: true,
                },
            }
        }
        ServerCloseBehaviour::Dropped { after_ms } => all(BrowserOutcome {
            close_after_ms: after_ms,
            code: ABNORMAL_CLOSURE,
            was_clean: false,
        }),
        ServerCloseBehaviour::Unanswered { .. } => Predicted {
            chromium: BrowserOutcome {
                close_after_ms: CHROMIUM_CLOSE_TIMEOUT_MS,
                code: ABNORMAL_CLOSURE,
                was_clean: false,
            },
            firefox: BrowserOutcome {
                close_after_ms: FIREFOX_CLOSE_TIMEOUT_MS,
                code: ABNORMAL_CLOSURE,
                was_clean: false,
            },
            webkit: BrowserOutcome {
                close_after_ms: WEBKIT_CLOSE_TIMEOUT_MS,
                code: ABNORMAL_CLOSURE,
                was_clean: false,
            },
        },
        ServerCloseBehaviour::Refused { .. } => all(BrowserOutcome {
            close_after_ms: 0.0,
            code: ABNORMAL_CLOSURE,
            was_clean: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_measured_table() {
        let fix = predict(&ServerCloseBehaviour::Answered {
            close_ms: 0.3,
            code: Some(CloseCode::Normal),
            tcp_end_ms: Some(0.1),
        });
        assert_eq!(
            (
                fix.chromium.code,
                fix.chromium.was_clean,
                fix.firefox.was_clean
            ),
            (CloseCode::Normal, true, true)
        );
        assert!(fix.chromium.close_after_ms < 1.0);

        let no_read = predict(&ServerCloseBehaviour::Unanswered { waited_ms: 3000.0 });
        assert_eq!(no_read.chromium.close_after_ms, 60_000.0);
        assert_eq!(no_read.firefox.close_after_ms, 20_000.0);
        assert_eq!(no_read.webkit.close_after_ms, 5_000.0);
        assert_eq!(
            (no_read.chromium.code, no_read.chromium.was_clean),
            (CloseCode::Abnormal, false)
        );

        let lingering = predict(&ServerCloseBehaviour::Answered {
            close_ms: 0.4,
            code: Some(CloseCode::Normal),
            tcp_end_ms: None,
        });
        assert_eq!(lingering.chromium.close_after_ms, 2000.4);
        assert!(lingering.chromium.was_clean);
        assert_eq!(lingering.firefox.close_after_ms, 0.4);
        assert_eq!(lingering.webkit.close_after_ms, 5_000.0);
        assert!(lingering.webkit.was_clean);
        let one_second = predict(&ServerCloseBehaviour::Answered {
            close_ms: 0.4,
            code: Some(CloseCode::Normal),
            tcp_end_ms: Some(1_000.0),
        });
        assert_eq!(one_second.webkit.close_after_ms, 1_000.4);

        let dropped = predict(&ServerCloseBehaviour::Dropped { after_ms: 0.5 });
        assert_eq!(
            (dropped.chromium.code, dropped.firefox.was_clean),
            (CloseCode::Abnormal, false)
        );
    }
}
