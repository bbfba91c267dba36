//! Issue 31: `wsclose-check URL --idle 20s --json` against real proxies (Debian's nginx,
//! HAProxy 2.6, Apache 2.4 with `mod_proxy_wstunnel`, Caddy 2.6), each with a 3 s idle timeout
//! in front of a real server, and `--upstream` pointing at the server directly.
//!
//! For every combination the test asserts the cut time (within 1 s of the configured one), the
//! classification, who cut it, and that the recommended ping interval, given to the demo
//! server, keeps a quiet (`browser`) connection open through the same proxy for 3× the timeout.
//! `dead-peer` is measured for the demo server (dropped at its `--pong-timeout`) and for a
//! server that never drops one (Node `ws`).
//!
//! The combinations run concurrently, so the file takes about one MAX plus a follow-up run, not
//! their sum. Needs `make setup` (the proxies) and `make setup-peers` (gorilla, Node `ws`). Run
//! with `cargo test -p wsclose-e2e --test idle -- --nocapture` to see the figures.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use wsclose_e2e::idle::{run_idle, Classification, CutBy, How, IdleRun};
use wsclose_e2e::peers::{gorilla, node_ws};
use wsclose_e2e::proxy::{Proxy, ProxyKind};
use wsclose_e2e::server::check_binary;
use wsclose_e2e::{server_binary, ServerProcess};

/// Every proxy's idle timeout here (and the quiet-closer's, and the lifetime cap).
const TIMEOUT: Duration = Duration::from_secs(3);
/// `--idle`: the longest each run holds its connections.
const MAX: Duration = Duration::from_secs(20);
/// `--idle-interval`, and the demo server's `--ping-interval` with pings on: a third of
/// [`TIMEOUT`]. (The check's default, 10 s, is longer than the timeout: its `app-message`
/// connection would be cut before its first message.)
const INTERVAL: Duration = Duration::from_secs(1);
/// The demo server's `--pong-timeout` with pings on: when it drops the dead peer.
const PONG_TIMEOUT: Duration = Duration::from_secs(5);
/// The bound on every measured time, the issue's.
const TOLERANCE_MS: f64 = 1000.0;
/// The demo server with no ping within [`MAX`] (it has no off switch: an hour's interval).
const PINGS_OFF: [&str; 4] = ["--ping-interval", "1h", "--pong-timeout", "2h"];
/// The demo server's draining endpoint with its pushes off: a quiet application.
const QUIET_PATH: &str = "/ws/drain?push_ms=0";
/// The peers' WebSocket path (and any path the quiet-closer serves).
const PEER_PATH: &str = "/ws";

/// The demo server's flags with pings at [`INTERVAL`].
fn pings_on() -> Vec<String> {
    let interval = format!("{}ms", INTERVAL.as_millis());
    let pong = format!("{}ms", PONG_TIMEOUT.as_millis());
    ["--ping-interval", &interval, "--pong-timeout", &pong]
        .map(str::to_owned)
        .to_vec()
}

/// `measured` is within [`TOLERANCE_MS`] of `expected`.
fn assert_near(what: &str, measured: Option<f64>, expected: Duration, run: &IdleRun) {
    let expected_ms = expected.as_secs_f64() * 1000.0;
    let measured = measured.unwrap_or_else(|| panic!("{what}: not measured\n{run:#?}"));
    assert!(
        (measured - expected_ms).abs() <= TOLERANCE_MS,
        "{what}: {measured} ms, not {expected_ms} ± {TOLERANCE_MS} ms\n{run:#?}"
    );
}

/// Runs the check with `--upstream`, prints the figures under `name`, and returns the run.
async fn check(name: &str, url: &str, upstream: Option<&str>, max: Duration) -> IdleRun {
    let run = run_idle(url, upstream, max, INTERVAL)
        .await
        .unwrap_or_else(|error| panic!("{name}: {error:#}"));
    println!(
        "{name}: --idle {}: {} (exit {:?})",
        humantime::format_duration(max),
        run.report.figures(),
        run.status
    );
    run
}

/// An idle timeout in the proxy: the quiet connection cut at [`TIMEOUT`] without a Close
/// frame, the ones with traffic open, the server straight open, the proxy named; the `idle`
/// check fails (the browser's 1006) and the run exits 1.
fn assert_proxy_idle_timeout(run: &IdleRun) {
    let (report, idle) = (&run.report, &run.report.idle);
    assert_eq!(idle.classification, Classification::IdleTimeout, "{run:#?}");
    assert_near("cut_after_ms", idle.cut_after_ms, TIMEOUT, run);
    assert_near(
        "browser ended_after_ms",
        report.mode("browser").ended_after_ms,
        TIMEOUT,
        run,
    );
    assert!(
        matches!(report.mode("browser").how, How::Fin | How::Rst),
        "{run:#?}"
    );
    assert_eq!(report.mode("app-message").how, How::Open, "{run:#?}");
    assert_eq!(report.mode("client-ping").how, How::Open, "{run:#?}");
    assert_eq!(report.upstream_mode("browser").how, How::Open, "{run:#?}");
    assert_eq!(idle.cut_by, CutBy::Proxy, "{run:#?}");
    assert_eq!(report.verdict("idle"), "fail", "{run:#?}");
    assert_eq!(run.status, Some(1), "{run:#?}");
    let recommended = idle
        .recommended_ping_interval_ms
        .unwrap_or_else(|| panic!("no recommended interval\n{run:#?}"));
    assert!(
        recommended > 0.0 && recommended <= TIMEOUT.as_secs_f64() * 1000.0 / 2.0,
        "recommended {recommended} ms for a {TIMEOUT:?} timeout\n{run:#?}"
    );
}

/// Nothing cut within MAX: every mode open, no interval recommended, `idle` passes.
fn assert_no_cut(run: &IdleRun) {
    let idle = &run.report.idle;
    assert_eq!(idle.classification, Classification::NoCut, "{run:#?}");
    assert_eq!(idle.cut_after_ms, None, "{run:#?}");
    assert_eq!(idle.cut_by, CutBy::Unknown, "{run:#?}");
    assert_eq!(idle.recommended_ping_interval_ms, None, "{run:#?}");
    for mode in &idle.modes {
        assert_eq!(
            (mode.how, mode.ended_after_ms),
            (How::Open, None),
            "{run:#?}"
        );
    }
    assert_eq!(run.report.verdict("idle"), "pass", "{run:#?}");
}

/// The demo server started with `server_args` behind `kind` (with `timeout`; `None`: its
/// defaults), checked through it with `--idle max` and, with `upstream`, `--upstream` straight
/// to the server; the figures are printed under `what` (the server's side of the name).
async fn demo_behind(
    kind: ProxyKind,
    timeout: Option<Duration>,
    server_args: &[&str],
    what: &str,
    max: Duration,
    upstream: bool,
) -> IdleRun {
    let server = ServerProcess::start(server_args).await;
    let proxy = Proxy::start(kind, server.addr(), timeout, QUIET_PATH).await;
    let name = format!(
        "{} ({}), demo server, {what}",
        kind.name(),
        kind.settings(timeout)
    );
    let direct = upstream.then(|| server.ws_url(QUIET_PATH));
    check(&name, &proxy.ws_url(QUIET_PATH), direct.as_deref(), max).await
}

/// The demo server with pings at `interval_ms` (the recommendation) behind a fresh `kind`
/// with the same timeout: a quiet connection stays open for 3× the timeout.
async fn assert_recommendation_keeps_it_open(kind: ProxyKind, interval_ms: f64) {
    let interval = format!("{}ms", interval_ms.round() as u64);
    let args = ["--ping-interval", &interval, "--pong-timeout", "1h"];
    let what = format!("pings every {interval} (recommended)");
    let run = demo_behind(kind, Some(TIMEOUT), &args, &what, 3 * TIMEOUT, false).await;
    let browser = run.report.mode("browser");
    assert_eq!(
        (browser.how, browser.ended_after_ms),
        (How::Open, None),
        "{run:#?}"
    );
    assert_eq!(
        run.report.idle.classification,
        Classification::NoCut,
        "{run:#?}"
    );
}

/// {nginx, HAProxy, Apache} in front of the demo server with pings off: the proxy cuts the
/// quiet connection at its timeout; the recommended interval then keeps it open.
async fn proxy_cuts_the_demo_server_without_pings(kind: ProxyKind) {
    let run = demo_behind(kind, Some(TIMEOUT), &PINGS_OFF, "pings off", MAX, true).await;
    assert_proxy_idle_timeout(&run);
    assert_eq!(run.report.mode("browser").server_pings, 0, "{run:#?}");
    let recommended = run
        .report
        .idle
        .recommended_ping_interval_ms
        .expect("asserted");
    assert_recommendation_keeps_it_open(kind, recommended).await;
}

/// {nginx, HAProxy, Apache} in front of the demo server pinging at a third of the timeout:
/// nothing is cut, the pings are counted at their interval, and the dead peer is dropped by
/// the server at its `--pong-timeout` (its pings go through the proxy, which therefore does not
/// cut the dead peer first).
async fn pings_keep_the_demo_server_open(kind: ProxyKind) {
    let args = pings_on();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let what = format!("pings every {INTERVAL:?}");
    let run = demo_behind(kind, Some(TIMEOUT), &args, &what, MAX, true).await;
    assert_no_cut(&run);
    let browser = run.report.mode("browser");
    let expected_pings = (MAX.as_secs_f64() / INTERVAL.as_secs_f64()) as u64;
    assert!(
        browser.server_pings + 2 >= expected_pings,
        "{} pings in {MAX:?} at {INTERVAL:?}\n{run:#?}",
        browser.server_pings
    );
    assert_near(
        "server_ping_interval_ms",
        browser.server_ping_interval_ms,
        INTERVAL,
        &run,
    );
    let dead = &run.report.dead_peer;
    assert_ne!(dead.how, How::Open, "{run:#?}");
    assert_near(
        "dead_peer.dropped_after_ms",
        dead.dropped_after_ms,
        PONG_TIMEOUT,
        &run,
    );
    assert_eq!(run.report.verdict("dead-peer"), "pass", "{run:#?}");
}

/// Caddy 2.6 with its defaults in front of the demo server with pings off: nothing is cut
/// within MAX (Caddy has no idle timeout for a WebSocket by default); nothing drops the dead
/// peer either.
async fn caddy_keeps_a_quiet_socket_open() {
    let run = demo_behind(ProxyKind::Caddy, None, &PINGS_OFF, "pings off", MAX, true).await;
    assert_no_cut(&run);
    assert_eq!(run.report.dead_peer.how, How::Open, "{run:#?}");
}

/// gorilla/websocket's echo server never pings: HAProxy cuts its quiet client at the timeout.
async fn haproxy_cuts_a_server_that_never_pings() {
    let server = gorilla().start().await;
    let proxy = Proxy::start(ProxyKind::Haproxy, server.addr(), Some(TIMEOUT), PEER_PATH).await;
    let run = check(
        "HAProxy (3 s), gorilla/websocket (never pings)",
        &proxy.ws_url(PEER_PATH),
        Some(&server.ws_url(PEER_PATH)),
        MAX,
    )
    .await;
    assert_proxy_idle_timeout(&run);
    for mode in &run.report.idle.modes {
        assert_eq!(mode.server_pings, 0, "{run:#?}");
    }
}

/// A server that closes quiet clients itself (Close 4000 "idle" after 3 s), behind nginx with
/// its default 60 s: the check sees the Close on both paths and names the server.
async fn a_server_that_drops_quiet_clients_is_named() {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_quiet-closer"));
    command
        .arg("127.0.0.1:0")
        .arg(humantime::format_duration(TIMEOUT).to_string());
    let server = ServerProcess::spawn(command)
        .await
        .unwrap_or_else(|error| panic!("quiet-closer did not start: {error:#}"));
    let proxy = Proxy::start(ProxyKind::Nginx, server.addr(), None, PEER_PATH).await;
    let run = check(
        "nginx (defaults), quiet-closer (Close 4000 after 3 s quiet)",
        &proxy.ws_url(PEER_PATH),
        Some(&server.ws_url(PEER_PATH)),
        MAX,
    )
    .await;
    let (report, idle) = (&run.report, &run.report.idle);
    assert_eq!(
        idle.classification,
        Classification::ServerDropsQuiet,
        "{run:#?}"
    );
    assert_near("cut_after_ms", idle.cut_after_ms, TIMEOUT, &run);
    let browser = report.mode("browser");
    assert_eq!(
        (browser.how, browser.close_code),
        (How::Close, Some(4000)),
        "{run:#?}"
    );
    assert_eq!(browser.close_reason.as_deref(), Some("idle"), "{run:#?}");
    assert_eq!(report.upstream_mode("browser").how, How::Close, "{run:#?}");
    assert_eq!(report.mode("app-message").how, How::Open, "{run:#?}");
    assert_eq!(idle.cut_by, CutBy::Server, "{run:#?}");
    assert_eq!(report.verdict("idle"), "warn", "{run:#?}");
}

/// A lifetime cap (the `lifetime-cap` relay, 3 s) in front of the demo server pinging every
/// second: every mode is cut at the cap, whatever flows; no interval is recommended.
async fn a_lifetime_cap_cuts_every_mode() {
    let server =
        ServerProcess::start(&pings_on().iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lifetime-cap"));
    command
        .arg("127.0.0.1:0")
        .arg(server.addr().to_string())
        .arg(humantime::format_duration(TIMEOUT).to_string());
    let cap = ServerProcess::spawn(command)
        .await
        .unwrap_or_else(|error| panic!("lifetime-cap did not start: {error:#}"));
    let run = check(
        "lifetime cap (3 s), demo server, pings every 1s",
        &cap.ws_url(QUIET_PATH),
        Some(&server.ws_url(QUIET_PATH)),
        MAX,
    )
    .await;
    let idle = &run.report.idle;
    assert_eq!(idle.classification, Classification::LifetimeCap, "{run:#?}");
    assert_near("cut_after_ms", idle.cut_after_ms, TIMEOUT, &run);
    for mode in &idle.modes {
        assert_near(&mode.mode, mode.ended_after_ms, TIMEOUT, &run);
    }
    assert_eq!(idle.cut_by, CutBy::Proxy, "{run:#?}");
    assert_eq!(idle.recommended_ping_interval_ms, None, "{run:#?}");
}

/// Node `ws` straight (no proxy): it never pings and never drops a peer that stopped
/// answering: `dead-peer` is still open at MAX, a warning.
async fn node_ws_never_drops_a_dead_peer() {
    let server = node_ws().start().await;
    let run = check("Node ws, direct", &server.ws_url(PEER_PATH), None, MAX).await;
    assert_no_cut(&run);
    let dead = &run.report.dead_peer;
    assert_eq!(
        (dead.how, dead.dropped_after_ms),
        (How::Open, None),
        "{run:#?}"
    );
    assert_eq!(run.report.verdict("dead-peer"), "warn", "{run:#?}");
    assert_eq!(run.report.mode("browser").server_pings, 0, "{run:#?}");
}

type Case = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every combination at once, each in its own task; then each one's outcome. A failing one
/// does not stop the others, and the failure names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_proxy_and_server_combination() {
    // Built first, off the runtime's threads: a build inside a case would hold a worker thread
    // (and the other one, waiting for the same build) while the others' startup waits run out.
    tokio::task::spawn_blocking(|| (server_binary(), check_binary()))
        .await
        .expect("build the server and the check");
    let mut cases: Vec<(String, Case)> = Vec::new();
    for kind in [ProxyKind::Nginx, ProxyKind::Haproxy, ProxyKind::Apache] {
        cases.push((
            format!("{} pings off", kind.name()),
            Box::pin(proxy_cuts_the_demo_server_without_pings(kind)),
        ));
        cases.push((
            format!("{} pings on", kind.name()),
            Box::pin(pings_keep_the_demo_server_open(kind)),
        ));
    }
    cases.push((
        "Caddy pings off".into(),
        Box::pin(caddy_keeps_a_quiet_socket_open()),
    ));
    cases.push((
        "gorilla behind HAProxy".into(),
        Box::pin(haproxy_cuts_a_server_that_never_pings()),
    ));
    cases.push((
        "quiet-closer".into(),
        Box::pin(a_server_that_drops_quiet_clients_is_named()),
    ));
    cases.push((
        "lifetime cap".into(),
        Box::pin(a_lifetime_cap_cuts_every_mode()),
    ));
    cases.push((
        "Node ws dead peer".into(),
        Box::pin(node_ws_never_drops_a_dead_peer()),
    ));
    let (names, futures): (Vec<_>, Vec<_>) = cases.into_iter().unzip();
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let outcomes = futures::future::join_all(handles).await;
    let failed: Vec<&String> = names
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_err())
        .map(|(name, _)| name)
        .collect();
    assert!(
        failed.is_empty(),
        "failed: {failed:?} (their panics are printed above)"
    );
}
