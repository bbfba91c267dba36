//! The two Rust traps, reproduced on purpose next to the fix, against the real
//! binary, as a native client sees them. What browsers show for each is in the README.
//!
//! Run with `cargo test -p wsclose-e2e --test traps -- --nocapture` to see the figures.

use std::time::Duration;

use wsclose_check::How;
use wsclose_e2e::raw::RawClient;
use wsclose_e2e::ws::{assert_healthy, assert_raw_close_echoed, raw_close, CloseResult};
use wsclose_e2e::{MetricsSnapshot, ServerProcess, IO_TIMEOUT};

/// `/ws/break-on-close` reads the Close and drops the socket: the TCP connection ends at once
/// and no Close reply ever comes (a browser reports 1006, not clean).
#[tokio::test]
async fn break_on_close_ends_tcp_without_a_close_reply() {
    let server = ServerProcess::start(&[]).await;
    let mut raw = RawClient::connect(server.addr(), "/ws/break-on-close").await;
    let CloseResult {
        answer,
        elapsed: after,
        ..
    } = raw_close(&mut raw, 1000, b"bye").await;
    println!("/ws/break-on-close: {answer:?} {after:?} after the Close");
    assert!(
        matches!(answer.how, How::Fin | How::Rst),
        "expected the connection to end with no Close frame, got {answer:?}"
    );
    assert!(after < Duration::from_secs(1), "{after:?}");
    let labels = [("endpoint", "break-on-close"), ("reason", "reply_dropped")];
    MetricsSnapshot::wait_until(server.addr(), IO_TIMEOUT, |page| {
        page.sum("wsclose_closes_total", &labels) == 1.0
    })
    .await
    .unwrap_or_else(|page| panic!("not counted as {labels:?}:\n{}", page.text));
    assert_healthy(&server).await;
}

/// `/ws/lingering-tcp` answers the Close at once, but the TCP connection stays open for about
/// 5 s afterwards (Chromium waits 2 s of that before it fires `close`).
#[tokio::test]
async fn lingering_tcp_answers_close_but_keeps_tcp_open() {
    let server = ServerProcess::start(&[]).await;
    let mut raw = RawClient::connect(server.addr(), "/ws/lingering-tcp").await;
    let CloseResult {
        answer,
        sent,
        elapsed: answered,
        ..
    } = raw_close(&mut raw, 4000, b"bye").await;
    match &answer.close {
        Some(frame) => assert_eq!(frame.close_code(), Some(4000)),
        None => panic!("expected the Close 4000 echoed, got {answer:?}"),
    }
    assert!(answered < Duration::from_secs(1), "{answered:?}");
    assert_eq!(
        raw.wait_tcp_end(Duration::from_secs(2)).await,
        None,
        "TCP ended within 2 s of the handshake"
    );
    let ended = raw.wait_tcp_end(IO_TIMEOUT).await;
    let tcp_open_for = sent.elapsed();
    println!(
        "/ws/lingering-tcp: Close answered after {answered:?}, TCP ended after {tcp_open_for:?}"
    );
    assert!(
        ended.is_some(),
        "TCP still open {tcp_open_for:?} after the Close"
    );
    assert!(
        tcp_open_for >= Duration::from_millis(4_500) && tcp_open_for < Duration::from_secs(8),
        "{tcp_open_for:?}"
    );

    // The fix, for comparison: /ws/drain ends TCP right after the handshake.
    let mut raw = RawClient::connect(server.addr(), "/ws/drain?push_ms=60000").await;
    assert_raw_close_echoed(&mut raw, 4000, b"bye", &"/ws/drain").await;
    assert!(raw.wait_tcp_end(Duration::from_secs(1)).await.is_some());
}
