//! `wsclose-check --browser`: the prediction confirmed in real headless Chromium, Firefox and
//! WebKit (WebKitGTK under Xvfb), against the fix and both traps (`make test`), against
//! `/ws/no-drain` in WebKit (5 s, `make test`) and in all three (`make test-slow`: Chromium
//! waits 60 s, Firefox 20 s).
//!
//! The check serves the probe page itself on `--page-addr`; the server is told to accept that
//! origin, as a user's server would have to.

use wsclose_check::browser::{Browser, BrowserChoice, Measured};
use wsclose_check::{report, Options, Report};
use wsclose_e2e::ServerProcess;

/// A free port for the check's probe page, and the server that accepts its origin.
async fn server_and_options(browsers: BrowserChoice) -> (ServerProcess, Options) {
    let page_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let origin = format!("http://127.0.0.1:{page_port}");
    let server = ServerProcess::start(&["--allowed-origin", &origin]).await;
    let options = Options {
        origin: Some(origin),
        browser: Some(browsers),
        page_addr: ([127, 0, 0, 1], page_port).into(),
        // /ws/no-drain in all three engines waits 85 s in the browsers alone: more than the
        // default --max-time (2 min) leaves once the checks and three browser starts are added.
        max_time: Some(std::time::Duration::from_secs(300)),
        ..Options::default()
    };
    (server, options)
}

/// Each browser of `options` measured what was predicted for it.
fn assert_confirmed(report: &Report, options: &Options) {
    let measured = report.browser.as_ref().expect("--browser ran");
    let chosen = options.browser.expect("--browser").browsers();
    assert_eq!(measured.len(), chosen.len(), "{measured:?}");
    for browser in chosen {
        let name = browser.name();
        let predicted = report.predicted.of(browser);
        match &measured[&browser] {
            Measured::Outcome(outcome) => assert!(
                report::agrees(predicted, *outcome),
                "{}: {name} predicted {predicted:?}, measured {outcome:?}",
                report.url
            ),
            Measured::Failed { error } => panic!("{}: {name} failed: {error}", report.url),
        }
    }
}

/// Checks each of `paths` with `--browser browsers` and asserts every browser confirmed it.
async fn confirm(browsers: BrowserChoice, paths: &[&str]) {
    let (server, options) = server_and_options(browsers).await;
    for path in paths {
        let report = wsclose_check::run(&server.ws_url(path), &options)
            .await
            .unwrap_or_else(|error| panic!("{path}: {error}"));
        println!("{}", report::table(&report));
        assert_confirmed(&report, &options);
    }
}

#[tokio::test]
async fn the_browsers_confirm_the_prediction_for_the_fix_and_both_traps() {
    let paths = ["/ws/drain", "/ws/break-on-close", "/ws/lingering-tcp"];
    confirm(BrowserChoice::All, &paths).await;
}

#[tokio::test]
async fn webkit_confirms_5_s_for_no_drain() {
    confirm(BrowserChoice::One(Browser::WebKit), &["/ws/no-drain"]).await;
}

#[tokio::test]
#[ignore = "waits 85 s; run by make test-slow"]
async fn the_browsers_confirm_60_s_20_s_and_5_s_for_no_drain() {
    confirm(BrowserChoice::All, &["/ws/no-drain"]).await;
}
