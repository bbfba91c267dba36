//! The full-length reproduction: `ws.close()` against a server that never reads.
//!
//! Nobody answers the Close frame, so the browser waits for its closing-handshake timeout and
//! then fires `close` with code 1006 and `wasClean == false`: after about 60 s in Chromium,
//! about 20 s in Firefox (`network.websocket.timeout.close`) and about 5 s in WebKitGTK. And
//! the lingering-TCP trap: the Close is answered but TCP stays open 5 s; Chromium waits up to
//! 2 s for it, Firefox not at all, WebKit until its 5 s timeout. Run only by `make test-slow`,
//! with `--test slow` and `WASM_BINDGEN_TEST_TIMEOUT=150`.
#![cfg(target_arch = "wasm32")]

mod common;

use std::ops::Range;

use common::{browser, url};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};
use wsclose_client::explain::{format_ms, summary};
use wsclose_client::{measure_close, CloseOptions, ABNORMAL_CLOSURE};

wasm_bindgen_test_configure!(run_in_browser);

/// Where each browser's `close` lands, in milliseconds: first when the Close is never answered
/// (its closing-handshake timeout), then when the Close is answered and TCP stays open 5 s.
fn windows(browser: &str) -> (Range<f64>, Range<f64>) {
    match browser {
        "chromium" => (55_000.0..70_000.0, 1_500.0..4_000.0),
        "firefox" => (15_000.0..30_000.0, 0.0..1_000.0),
        "webkit" => (4_500.0..8_000.0, 4_500.0..8_000.0),
        other => panic!("no expected window for {other}"),
    }
}

/// Probes `path` (giving up after `give_up_ms`) and asserts that `close` came with `code` and
/// `clean` inside `window`.
async fn assert_close_lands(
    path: &str,
    window: Range<f64>,
    code: u16,
    clean: bool,
    give_up_ms: u32,
) {
    let browser = browser();
    let options = CloseOptions::default().give_up_after_ms(give_up_ms);
    let report = measure_close(&url(path), options)
        .await
        .unwrap_or_else(|error| panic!("{path}: {error}"));
    console_log!(
        "[{browser}] {path}: {} (expected {}–{})",
        summary(&report),
        format_ms(window.start),
        format_ms(window.end)
    );
    assert_eq!(
        (report.close.code, report.close.was_clean),
        (code, clean),
        "{report:?}"
    );
    assert!(
        window.contains(&report.elapsed_ms),
        "[{browser}] close took {}, expected {}–{}",
        format_ms(report.elapsed_ms),
        format_ms(window.start),
        format_ms(window.end)
    );
}

#[wasm_bindgen_test]
async fn lingering_tcp_close_waits_as_long_as_the_browser_waits_for_tcp() {
    let (_, window) = windows(browser());
    assert_close_lands("/ws/lingering-tcp", window, 1000, true, 30_000).await;
}

#[wasm_bindgen_test]
async fn no_drain_close_waits_for_the_browser_timeout() {
    let (window, _) = windows(browser());
    // Give up well after the window, and before the 150 s test budget runs out.
    assert_close_lands("/ws/no-drain", window, ABNORMAL_CLOSURE, false, 100_000).await;
}
