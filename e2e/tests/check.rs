//! `wsclose-check` against every endpoint of the real server, the fix and each trap: each
//! verdict and each browser prediction, which must match the table measured in real browsers
//! (and, for the fast cases, `client-wasm`'s browser tests).
//!
//! Run with `cargo test -p wsclose-e2e --test check -- --nocapture` to see the reports.

use std::time::Duration;

use wsclose_check::{report, BrowserOutcome, CloseCode, Options, Report, Verdict};
use wsclose_e2e::ServerProcess;

/// The checks' wait for a Close: shorter than the default 3 s, to keep the unanswered cases short.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The options of every run here: every check, `protocol-errors` included (`--all`).
fn options() -> Options {
    Options {
        close_wait: CLOSE_WAIT,
        all: true,
        ..Options::default()
    }
}

async fn check(server: &ServerProcess, path: &str, options: &Options) -> Report {
    let url = server.ws_url(path);
    let report = wsclose_check::run(&url, options)
        .await
        .unwrap_or_else(|error| panic!("{url}: {error}"));
    println!("{}", report::table(&report));
    report
}

/// What a browser shows, for exact comparisons with a prediction.
fn outcome(close_after_ms: f64, code: CloseCode, was_clean: bool) -> BrowserOutcome {
    BrowserOutcome {
        close_after_ms,
        code,
        was_clean,
    }
}

/// Every check's verdict, in order, for one-line assertions.
fn verdicts(report: &Report) -> Vec<(&'static str, Verdict)> {
    report
        .checks
        .iter()
        .map(|check| (check.id.as_str(), check.verdict))
        .collect()
}

#[tokio::test]
async fn the_fix_passes_everything_and_browsers_close_at_once() {
    let server = ServerProcess::start(&[]).await;
    let options = Options {
        max_size: Some(64 * 1024),
        ..options()
    };
    for path in ["/ws/drain", "/ws/echo"] {
        let report = check(&server, path, &options).await;
        use Verdict::*;
        assert_eq!(
            verdicts(&report),
            vec![
                ("handshake", Pass),
                ("close-answered", Pass),
                ("close-code-echoed", Pass),
                ("tcp-closed", Pass),
                ("ping-answered", Pass),
                ("keepalive", Skip),
                ("origin", Pass),
                ("max-message-size", Pass),
                ("protocol-errors", Pass),
                ("server-survived", Pass),
            ],
            "{path}: {report:#?}"
        );
        assert!(!report.failed());
        let predicted = report.predicted;
        for browser in [predicted.chromium, predicted.firefox, predicted.webkit] {
            assert_eq!(
                (browser.code, browser.was_clean),
                (CloseCode::Normal, true),
                "{path}"
            );
            assert!(browser.close_after_ms < 100.0, "{path}: {browser:?}");
        }
    }
}

#[tokio::test]
async fn no_drain_is_unanswered_and_browsers_wait_their_timeouts() {
    let server = ServerProcess::start(&[]).await;
    let report = check(&server, "/ws/no-drain", &options()).await;
    assert!(report.failed());
    assert_eq!(report.verdict("handshake"), Some(Verdict::Pass));
    assert_eq!(report.verdict("close-answered"), Some(Verdict::Fail));
    assert_eq!(report.verdict("close-code-echoed"), Some(Verdict::Skip));
    assert_eq!(report.verdict("tcp-closed"), Some(Verdict::Skip));
    // Browsers never send a Ping or a malformed frame: conformance warnings, not failures.
    assert_eq!(report.verdict("ping-answered"), Some(Verdict::Warn));
    assert_eq!(report.verdict("protocol-errors"), Some(Verdict::Warn));
    let fix = report.check("close-answered").unwrap().fix.clone().unwrap();
    assert!(fix.contains("read loop"), "{fix}");
    let predicted = report.predicted;
    let abnormal_after = |ms| outcome(ms, CloseCode::Abnormal, false);
    assert_eq!(predicted.chromium, abnormal_after(60_000.0));
    assert_eq!(predicted.firefox, abnormal_after(20_000.0));
    assert_eq!(predicted.webkit, abnormal_after(5_000.0));
}

#[tokio::test]
async fn break_on_close_drops_the_reply_and_browsers_see_1006_at_once() {
    let server = ServerProcess::start(&[]).await;
    let report = check(&server, "/ws/break-on-close", &options()).await;
    assert_eq!(report.verdict("close-answered"), Some(Verdict::Fail));
    let fix = report.check("close-answered").unwrap().fix.clone().unwrap();
    assert!(fix.contains("do not break"), "{fix}");
    // It does read: pings are answered.
    assert_eq!(report.verdict("ping-answered"), Some(Verdict::Pass));
    let predicted = report.predicted;
    for browser in [predicted.chromium, predicted.firefox, predicted.webkit] {
        assert_eq!(
            (browser.code, browser.was_clean),
            (CloseCode::Abnormal, false)
        );
        assert!(browser.close_after_ms < 100.0, "{browser:?}");
    }
}

#[tokio::test]
async fn lingering_tcp_is_clean_but_chromium_waits_2_s_and_webkit_5_s() {
    let server = ServerProcess::start(&[]).await;
    let report = check(&server, "/ws/lingering-tcp", &options()).await;
    assert_eq!(report.verdict("close-answered"), Some(Verdict::Pass));
    assert_eq!(report.verdict("close-code-echoed"), Some(Verdict::Pass));
    assert_eq!(report.verdict("tcp-closed"), Some(Verdict::Fail));
    let (chromium, firefox) = (report.predicted.chromium, report.predicted.firefox);
    assert_eq!(
        (chromium.code, chromium.was_clean),
        (CloseCode::Normal, true)
    );
    assert!(
        (2000.0..2100.0).contains(&chromium.close_after_ms),
        "{chromium:?}"
    );
    assert_eq!((firefox.code, firefox.was_clean), (CloseCode::Normal, true));
    assert!(firefox.close_after_ms < 100.0, "{firefox:?}");
    // WebKit waits for TCP until its close timeout; the trap holds TCP 5 s.
    assert_eq!(
        report.predicted.webkit,
        outcome(5_000.0, CloseCode::Normal, true)
    );
}

#[tokio::test]
async fn a_refused_origin_fails_the_handshake_and_names_the_flag() {
    let server = ServerProcess::start(&["--allowed-origin", "https://app.example"]).await;
    let report = check(&server, "/ws/drain", &options()).await;
    let handshake = report.check("handshake").unwrap();
    assert_eq!(handshake.verdict, Verdict::Fail, "{handshake:?}");
    assert!(handshake.fix.as_deref().unwrap().contains("--origin"));
    assert!(report
        .checks
        .iter()
        .filter(|check| !["handshake", "origin", "server-survived"].contains(&check.id.as_str()))
        .all(|check| check.verdict == Verdict::Skip));
    assert_eq!(report.verdict("origin"), Some(Verdict::Pass));
    assert_eq!(report.verdict("server-survived"), Some(Verdict::Pass));

    // With the allowed origin, everything runs.
    let allowed = Options {
        origin: Some("https://app.example".into()),
        ..options()
    };
    let report = check(&server, "/ws/drain", &allowed).await;
    assert_eq!(report.verdict("handshake"), Some(Verdict::Pass));
    assert_eq!(report.verdict("close-answered"), Some(Verdict::Pass));
}

#[tokio::test]
async fn keepalive_passes_only_when_a_ping_comes_in_time() {
    let pinging = ServerProcess::start(&["--ping-interval", "200ms", "--pong-timeout", "2s"]).await;
    let options = Options {
        keepalive_wait: Some(Duration::from_secs(1)),
        ..options()
    };
    let report = check(&pinging, "/ws/echo", &options).await;
    assert_eq!(report.verdict("keepalive"), Some(Verdict::Pass));

    let default = ServerProcess::start(&[]).await; // pings every 25 s
    let report = check(&default, "/ws/echo", &options).await;
    assert_eq!(report.verdict("keepalive"), Some(Verdict::Fail));
}

#[tokio::test]
async fn a_wrong_max_size_is_reported() {
    let server = ServerProcess::start(&["--max-message-size", "1000"]).await;
    let claimed = Options {
        max_size: Some(1000),
        ..options()
    };
    let report = check(&server, "/ws/echo", &claimed).await;
    assert_eq!(report.verdict("max-message-size"), Some(Verdict::Pass));
    // A server whose real limit is higher takes the 1001 bytes: no 1009. No browser sees that,
    // so it is a warning (it was a failure before the exit status meant "browsers").
    let generous = ServerProcess::start(&["--max-message-size", "100000"]).await;
    let report = check(&generous, "/ws/echo", &claimed).await;
    let check = report.check("max-message-size").unwrap();
    assert_eq!(check.verdict, Verdict::Warn, "{check:?}");
    assert!(check.detail.contains("limit is higher"), "{check:?}");
}

#[tokio::test]
async fn the_json_has_the_documented_shape() {
    let server = ServerProcess::start(&[]).await;
    let report = check(&server, "/ws/drain", &options()).await;
    let json: serde_json::Value = serde_json::from_str(&report::json(&report)).unwrap();
    assert_eq!(json["url"], server.ws_url("/ws/drain"));
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 10);
    assert_eq!(json["summary"], "ok: every check that ran passed");
    for check in checks {
        assert!(
            check["id"].is_string() && check["detail"].is_string(),
            "{check}"
        );
        assert!(
            ["pass", "warn", "fail", "skip"].contains(&check["verdict"].as_str().unwrap()),
            "{check}"
        );
        assert!(check["ms"].is_number() || check["ms"].is_null(), "{check}");
    }
    for browser in ["chromium", "firefox"] {
        let outcome = &json["predicted"][browser];
        assert!(outcome["close_after_ms"].is_number(), "{json}");
        assert_eq!(outcome["code"], 1000);
        assert_eq!(outcome["was_clean"], true);
    }
}

/// A TLS terminator in front of `backend`, with a fresh self-signed certificate for
/// `localhost`: each accepted connection is decrypted and copied to the server, as a proxy does.
/// The backend's address comes later: the server must know the proxy's origin first.
async fn tls_terminator(
    backend: tokio::sync::oneshot::Receiver<std::net::SocketAddr>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::{self, ServerConfig};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let Ok(backend) = backend.await else {
            return;
        };
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut server) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn wss_works_with_insecure_and_refuses_a_self_signed_certificate_without() {
    let (backend, backend_known) = tokio::sync::oneshot::channel();
    let (proxy, task) = tls_terminator(backend_known).await;
    // A TLS terminator that cannot say `X-Forwarded-Proto`: the page's https origin is listed.
    let page_origin = format!("https://localhost:{}", proxy.port());
    let server = ServerProcess::start(&["--allowed-origin", &page_origin]).await;
    backend.send(server.addr()).unwrap();
    let url = format!("wss://localhost:{}/ws/drain", proxy.port());

    let refused = wsclose_check::run(&url, &options()).await.unwrap_err();
    println!("without --insecure: {refused}");
    assert!(
        matches!(refused, wsclose_check::CheckError::Tls { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("--insecure"), "{refused}");

    let insecure = Options {
        insecure: true,
        ..options()
    };
    let report = wsclose_check::run(&url, &insecure).await.unwrap();
    println!("{}", report::table(&report));
    let handshake = report.check("handshake").unwrap();
    assert!(
        handshake.detail.contains("https://localhost:"),
        "{handshake:?}"
    );
    for id in [
        "handshake",
        "close-answered",
        "close-code-echoed",
        "tcp-closed",
        "ping-answered",
    ] {
        assert_eq!(report.verdict(id), Some(Verdict::Pass), "{id}: {report:#?}");
    }
    assert_eq!(
        (
            report.predicted.chromium.code,
            report.predicted.chromium.was_clean
        ),
        (CloseCode::Normal, true)
    );
    task.abort();
}
