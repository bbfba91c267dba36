//! Plain-language reading of a result, and duration formatting, shared by the demo page and
//! the tests. Pure Rust: it runs natively under `cargo test` as well.

use crate::number::fixed;
use crate::probe::{CloseReport, ProbeError, ABNORMAL_CLOSURE};
use crate::socket::CloseInfo;

/// Below this, a close counts as immediate: the server answered as soon as the frame arrived.
pub const PROMPT_CLOSE_MS: f64 = 1_000.0;

/// From this on, a 1006 is a closing-handshake timeout rather than a dropped connection.
/// Firefox's timeout (`network.websocket.timeout.close`) is 20 s and Chromium's is 60 s.
pub const HANDSHAKE_TIMEOUT_MIN_MS: f64 = 10_000.0;

/// Formats milliseconds for people: `0.42 ms`, `12.3 ms`, `250 ms`, `1.50 s`, `60.0 s`.
pub fn format_ms(ms: f64) -> String {
    let ms = ms.max(0.0);
    if ms < 10.0 {
        format!("{} ms", fixed(ms, 2))
    } else if ms < 100.0 {
        format!("{} ms", fixed(ms, 1))
    } else if ms < 1_000.0 {
        format!("{} ms", fixed(ms, 0))
    } else if ms < 10_000.0 {
        format!("{} s", fixed(ms / 1_000.0, 2))
    } else {
        format!("{} s", fixed(ms / 1_000.0, 1))
    }
}

/// One line such as `close in 0.91 ms (code 1000, clean)`, for logs.
pub fn summary(report: &CloseReport) -> String {
    format!(
        "close in {} (code {}, {})",
        format_ms(report.elapsed_ms),
        report.close.code,
        if report.close.was_clean {
            "clean"
        } else {
            "not clean"
        }
    )
}

/// What a finished probe means, in one or two sentences. `sent_code` is the code passed to
/// `close()`.
pub fn explain(report: &CloseReport, sent_code: u16) -> String {
    let CloseReport {
        elapsed_ms,
        close: CloseInfo {
            code, was_clean, ..
        },
        ..
    } = *report;
    if was_clean && elapsed_ms < PROMPT_CLOSE_MS {
        if code == sent_code {
            "The server read your Close frame, answered with the same code and hung up at once."
                .to_owned()
        } else {
            format!(
                "The server answered your Close frame at once, but with code {code} instead of \
                 {sent_code}."
            )
        }
    } else if was_clean {
        "Clean but slow: the server answered your Close frame yet kept the TCP connection open, \
         so the browser waited for it to hang up (Chromium waits up to 2 s)."
            .to_owned()
    } else if code == ABNORMAL_CLOSURE && elapsed_ms >= HANDSHAKE_TIMEOUT_MIN_MS {
        "The server never read your Close frame, so nobody answered it. The browser gave up \
         after its closing-handshake timeout (Chromium 60 s, Firefox 20 s) and reports 1006."
            .to_owned()
    } else if code == ABNORMAL_CLOSURE {
        "The connection ended without a Close frame from the server. If that was as quick as \
         an answer, the server read your Close and dropped the socket before its reply was \
         written (a read loop that breaks on Message::Close); otherwise it went away, or the \
         network failed."
            .to_owned()
    } else {
        format!("The closing handshake did not complete (code {code}).")
    }
}

/// What a failed probe means.
pub fn explain_error(error: &ProbeError) -> String {
    match error {
        ProbeError::CloseTimeout { elapsed_ms, .. } => format!(
            "No answer to your Close frame after {}: the server is not reading its socket.",
            format_ms(*elapsed_ms)
        ),
        other => {
            let mut text = other.to_string();
            // The first character, when it is one byte (ASCII); the same as `to_uppercase`
            // there, without linking Unicode's case tables.
            if let Some(first) = text.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            text.push('.');
            text
        }
    }
}

/// Shown while a probe waits for its `close` event.
pub const WAITING_NOTE: &str = "Close frame sent. A server that reads answers within a \
    millisecond; one that never reads leaves the browser waiting for its closing-handshake \
    timeout.";

#[cfg(test)]
mod tests {
    use super::*;

    fn report(elapsed_ms: f64, code: u16, was_clean: bool) -> CloseReport {
        CloseReport {
            elapsed_ms,
            close: CloseInfo {
                code,
                reason: String::new(),
                was_clean,
            },
            messages_received: 0,
        }
    }

    #[test]
    fn formats_each_range() {
        assert_eq!(format_ms(0.4242), "0.42 ms");
        assert_eq!(format_ms(12.34), "12.3 ms");
        assert_eq!(format_ms(250.4), "250 ms");
        assert_eq!(format_ms(1_500.0), "1.50 s");
        assert_eq!(format_ms(60_012.0), "60.0 s");
        assert_eq!(format_ms(-3.0), "0.00 ms");
    }

    #[test]
    fn explains_the_fix_and_the_bug() {
        assert!(explain(&report(0.9, 1000, true), 1000).contains("answered with the same code"));
        assert!(explain(&report(0.9, 1001, true), 1000).contains("instead of 1000"));
        assert!(explain(&report(2_001.0, 1000, true), 1000).contains("kept the TCP"));
        assert!(explain(&report(60_001.0, 1006, false), 1000).contains("never read"));
        assert!(explain(&report(20_001.0, 1006, false), 1000).contains("never read"));
        assert!(explain(&report(3.0, 1006, false), 1000).contains("went away"));
    }

    #[test]
    fn summary_reads_like_the_test_log() {
        assert_eq!(
            summary(&report(0.912, 1000, true)),
            "close in 0.91 ms (code 1000, clean)"
        );
    }

    #[test]
    fn explains_errors_as_sentences() {
        let timeout = ProbeError::CloseTimeout {
            elapsed_ms: 3_000.0,
            messages_received: 0,
        };
        assert!(explain_error(&timeout).contains("after 3.00 s"));
        let rejected = ProbeError::Rejected("SyntaxError: bad".into());
        assert_eq!(
            explain_error(&rejected),
            "The browser threw: SyntaxError: bad."
        );
    }
}
