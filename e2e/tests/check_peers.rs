//! `wsclose-check` against real servers nobody here wrote, installed by `make setup-peers`:
//!
//! * Node `ws` with no `'error'` listener (the express-ws README's pattern) survives a default
//!   run, which skips `protocol-errors` and says how to run it (exit status 0). With
//!   `--with protocol-errors` it dies on the check's unmasked frame: the report keeps every
//!   check measured before, fails `server-survived` naming that probe, and says to add an
//!   error handler (exit status 1).
//! * gorilla/websocket's documented read loop, the fix its users are told to write, passes
//!   with warnings only (exit status 0): it does not validate UTF-8 and drops TCP on a 64-bit
//!   length with its top bit set, which no browser ever sends. `--strict` fails it.

use std::time::Duration;

use wsclose_check::{report, CloseCode, OptIn, Options, Report, Verdict};
use wsclose_e2e::peers::{gorilla, node_ws, Peer};
use wsclose_e2e::{ServerProcess, IO_TIMEOUT};

/// The checks' wait for a Close: the peers answer in about a millisecond.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The check of `peer`, with the probes in `with` (`--with`) on top of the default ones.
async fn check(server: &ServerProcess, peer: &Peer, with: &[OptIn]) -> Report {
    let options = Options {
        close_wait: CLOSE_WAIT,
        with: with.to_vec(),
        ..Options::default()
    };
    let url = server.ws_url(peer.path);
    let report = wsclose_check::run(&url, &options)
        .await
        .unwrap_or_else(|error| panic!("{url}: a report, not an error: {error}"));
    println!(
        "{}: {}\n{}",
        peer.name,
        report.summary,
        report::table(&report)
    );
    report
}

#[tokio::test]
async fn node_ws_without_an_error_handler_dies_and_the_report_names_the_probe() {
    let peer = node_ws();
    let mut server = peer.start().await;
    let report = check(&server, &peer, &[OptIn::ProtocolErrors]).await;

    let survived = report
        .check("server-survived")
        .expect("a server-survived check");
    assert_eq!(survived.verdict, Verdict::Fail, "{survived:?}");
    assert!(survived.detail.contains("protocol-errors"), "{survived:?}");
    let fix = survived.fix.as_deref().unwrap_or_default();
    assert!(fix.contains("error handler"), "{fix}");
    // Everything a browser does ran first, and was kept.
    for id in [
        "handshake",
        "close-answered",
        "close-code-echoed",
        "tcp-closed",
        "origin",
    ] {
        assert!(
            matches!(report.verdict(id), Some(verdict) if verdict != Verdict::Skip),
            "{id} was lost"
        );
    }
    assert_eq!(report.verdict("close-answered"), Some(Verdict::Pass));
    assert!(report.failed(), "exit status 1");
    let json: serde_json::Value = serde_json::from_str(&report::json(&report)).expect("JSON");
    let checks = json["checks"].as_array().expect("checks");
    assert!(
        checks
            .iter()
            .any(|check| check["id"] == "server-survived" && check["verdict"] == "fail"),
        "{json}"
    );
    // The Node process really died of it.
    assert!(
        server.wait_exit(IO_TIMEOUT).await.is_some(),
        "node is still running"
    );
}

#[tokio::test]
async fn node_ws_without_an_error_handler_survives_a_default_run() {
    let peer = node_ws();
    let mut server = peer.start().await;
    let report = check(&server, &peer, &[]).await;
    assert_eq!(report.verdict("server-survived"), Some(Verdict::Pass));
    let skipped = report.check("protocol-errors").expect("protocol-errors");
    assert_eq!(skipped.verdict, Verdict::Skip, "{skipped:?}");
    assert!(
        skipped.detail.contains("--with protocol-errors"),
        "{skipped:?}"
    );
    assert!(!report.fails(false), "exit status 0: {}", report.summary);
    assert!(
        server.wait_exit(Duration::from_millis(500)).await.is_none(),
        "node died of a default run"
    );
}

#[tokio::test]
async fn gorillas_read_loop_passes_with_warnings_only() {
    let peer = gorilla();
    let server = peer.start().await;
    let report = check(&server, &peer, &[OptIn::ProtocolErrors]).await;
    for id in [
        "handshake",
        "close-answered",
        "tcp-closed",
        "server-survived",
    ] {
        assert_eq!(report.verdict(id), Some(Verdict::Pass), "{id}");
    }
    // It echoes the code, not the reason: the close event shows an empty reason.
    assert_eq!(report.verdict("close-code-echoed"), Some(Verdict::Warn));
    assert!(!report.failed(), "exit status 0: {}", report.summary);
    assert!(
        report
            .checks
            .iter()
            .any(|check| check.verdict == Verdict::Warn),
        "gorilla's read loop has conformance warnings"
    );
    assert!(report.fails(true), "--strict fails on them");
    for browser in [
        report.predicted.chromium,
        report.predicted.firefox,
        report.predicted.webkit,
    ] {
        assert_eq!((browser.code, browser.was_clean), (CloseCode::Normal, true));
        assert!(browser.close_after_ms < 100.0, "{browser:?}");
    }
}
