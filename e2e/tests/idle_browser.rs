//! Issue 31: what `wsclose-check --idle` predicts for a quiet tab is what a real browser shows,
//! through Debian's nginx with a 3 s `proxy_read_timeout` in front of the demo server: with the
//! server's pings off, the tab's `close` event comes at about 3 s with code 1006; with pings at
//! a third of the timeout, the tab is still open after 3× the timeout.
//!
//! Chromium runs in `make test`; Firefox and WebKit in `make test-slow` (`-- --ignored`).

use std::time::Duration;

use wsclose_check::browser::Browser;
use wsclose_e2e::idle::{run_idle, QuietTab};
use wsclose_e2e::proxy::{Proxy, ProxyKind};
use wsclose_e2e::quiet_tab::measure_quiet_tab;
use wsclose_e2e::ServerProcess;

/// nginx's `proxy_read_timeout` (and `proxy_send_timeout`).
const TIMEOUT: Duration = Duration::from_secs(3);
/// How long the check and the tab hold the connection: 3× the timeout.
const HOLD: Duration = Duration::from_secs(9);
/// `--idle-interval`, and the server's ping interval with pings on: a third of the timeout.
const INTERVAL: Duration = Duration::from_secs(1);
/// The most the predicted and the measured close may differ by.
const TOLERANCE_MS: f64 = 1000.0;
/// The demo server with no ping within [`HOLD`].
const PINGS_OFF: [&str; 4] = ["--ping-interval", "1h", "--pong-timeout", "2h"];
/// The demo server pinging at [`INTERVAL`].
const PINGS_ON: [&str; 4] = ["--ping-interval", "1s", "--pong-timeout", "1h"];
/// The demo server's quiet endpoint (no pushes).
const QUIET_PATH: &str = "/ws/drain?push_ms=0";

/// The check's prediction and `browser`'s measurement, side by side, through nginx in front
/// of the demo server started with `server_args`; the two run at the same time.
async fn predicted_and_measured(browser: Browser, server_args: &[&str]) -> (QuietTab, QuietTab) {
    let server = ServerProcess::start(server_args).await;
    let proxy = Proxy::start(ProxyKind::Nginx, server.addr(), Some(TIMEOUT), QUIET_PATH).await;
    let url = proxy.ws_url(QUIET_PATH);
    // The page's origin is nginx's, which the server accepts (nginx forwards the Host).
    let page = proxy.http_url("/healthz");
    let (run, measured) = tokio::join!(
        run_idle(&url, None, HOLD, INTERVAL),
        measure_quiet_tab(browser, &page, &url, HOLD)
    );
    let run = run.unwrap_or_else(|error| panic!("{url}: {error:#}"));
    let measured = measured.unwrap_or_else(|error| panic!("{}: {error:#}", browser.name()));
    let predicted = run.report.predicted_quiet_tab();
    println!(
        "nginx ({TIMEOUT:?}), demo server {server_args:?}: predicted {predicted:?}, {} measured \
         {measured:?}",
        browser.name()
    );
    (predicted, measured)
}

/// The two agree: both open, or both closed with the same code within [`TOLERANCE_MS`].
fn assert_agree(predicted: QuietTab, measured: QuietTab, browser: Browser) {
    let agree = match (predicted, measured) {
        (QuietTab::Open, QuietTab::Open) => true,
        (
            QuietTab::Closed {
                after_ms: p,
                code: pc,
            },
            QuietTab::Closed {
                after_ms: m,
                code: mc,
            },
        ) => pc == mc && (p - m).abs() <= TOLERANCE_MS,
        _ => false,
    };
    assert!(
        agree,
        "{}: predicted {predicted:?}, measured {measured:?}",
        browser.name()
    );
}

/// Pings off: cut at the timeout with 1006, predicted and measured.
async fn quiet_tab_is_cut_with_1006(browser: Browser) {
    let (predicted, measured) = predicted_and_measured(browser, &PINGS_OFF).await;
    let QuietTab::Closed { after_ms, code } = measured else {
        panic!(
            "{}: the quiet tab was not cut: {measured:?}",
            browser.name()
        );
    };
    assert_eq!(code, 1006, "{}", browser.name());
    assert!(
        (after_ms - TIMEOUT.as_secs_f64() * 1000.0).abs() <= TOLERANCE_MS,
        "{}: cut after {after_ms} ms",
        browser.name()
    );
    assert_agree(predicted, measured, browser);
}

/// Pings on: still open after 3× the timeout, predicted and measured.
async fn pings_keep_the_tab_open(browser: Browser) {
    let (predicted, measured) = predicted_and_measured(browser, &PINGS_ON).await;
    assert_eq!(measured, QuietTab::Open, "{}", browser.name());
    assert_agree(predicted, measured, browser);
}

#[tokio::test]
async fn chromium_sees_the_predicted_cut_through_nginx() {
    tokio::join!(
        quiet_tab_is_cut_with_1006(Browser::Chromium),
        pings_keep_the_tab_open(Browser::Chromium)
    );
}

#[tokio::test]
#[ignore = "starts Firefox and WebKit; run by make test-slow"]
async fn firefox_and_webkit_see_the_predicted_cut_through_nginx() {
    tokio::join!(
        quiet_tab_is_cut_with_1006(Browser::Firefox),
        pings_keep_the_tab_open(Browser::Firefox),
        quiet_tab_is_cut_with_1006(Browser::WebKit),
        pings_keep_the_tab_open(Browser::WebKit)
    );
}
