//! `/metrics`: the counters move as connections open, talk and close, and every way a
//! connection ends is counted under its initiator, close code and reason.

use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wsclose_e2e::raw::{Frame, RawClient};
use wsclose_e2e::ws::{close_and_wait, connect, next_data, parse_tick};
use wsclose_e2e::{http_get, MetricsSnapshot, ServerProcess, IO_TIMEOUT};

const SETTLE: Duration = Duration::from_secs(5);

async fn settled(server: &ServerProcess) -> MetricsSnapshot {
    MetricsSnapshot::wait_until(server.addr(), SETTLE, |page| {
        page.sum("wsclose_connections_active", &[]) == 0.0
    })
    .await
    .unwrap_or_else(|page| panic!("connections still active:\n{}", page.text))
}

fn closes(page: &MetricsSnapshot, labels: &[(&str, &str)]) -> f64 {
    page.sum("wsclose_closes_total", labels)
}

/// Waits up to [`SETTLE`] for exactly one close counted under `labels`.
async fn assert_one_close_counted(server: &ServerProcess, labels: &[(&str, &str)]) {
    let counted =
        MetricsSnapshot::wait_until(server.addr(), SETTLE, |page| closes(page, labels) == 1.0)
            .await;
    if let Err(page) = counted {
        panic!("no close counted as {labels:?}:\n{}", page.text);
    }
}

#[tokio::test]
async fn metrics_page_is_prometheus_text() {
    let server = ServerProcess::start(&[]).await;
    let response = http_get(server.addr(), "/metrics").await.unwrap();
    assert_eq!(response.status, 200);
    let content_type = response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.as_str());
    assert!(
        content_type.is_some_and(|value| value.starts_with("text/plain")),
        "{content_type:?}"
    );
    MetricsSnapshot::parse(&response.body).expect("parses");
}

#[tokio::test]
async fn counters_follow_a_connection_from_open_to_clean_close() {
    let server = ServerProcess::start(&[]).await;
    let before = MetricsSnapshot::scrape(server.addr()).await;
    let handshakes_before = before.sum("wsclose_close_handshake_seconds_count", &[]);

    let mut ws = connect(&server.ws_url("/ws/drain?push_ms=10")).await;
    for expected in 0..3 {
        assert_eq!(
            parse_tick(&next_data(&mut ws, IO_TIMEOUT).await).seq,
            expected
        );
    }
    ws.send(Message::text("one")).await.unwrap();
    ws.send(Message::binary(vec![2u8; 10])).await.unwrap();
    let open = MetricsSnapshot::wait_until(server.addr(), SETTLE, |page| {
        page.sum("wsclose_messages_received_total", &[("endpoint", "drain")]) == 2.0
    })
    .await
    .unwrap_or_else(|page| panic!("drain did not count 2 messages:\n{}", page.text));
    for name in [
        "wsclose_connections_active",
        "wsclose_connections_total",
        "wsclose_messages_sent_total",
        "wsclose_messages_received_total",
    ] {
        assert!(open.has(name), "{name} missing:\n{}", open.text);
    }
    open.assert_sum("wsclose_connections_active", &[("endpoint", "drain")], 1.0);
    open.assert_sum("wsclose_connections_total", &[("endpoint", "drain")], 1.0);
    assert!(open.sum("wsclose_messages_sent_total", &[("endpoint", "drain")]) >= 3.0);

    let closed = close_and_wait(&mut ws, 1000, "", IO_TIMEOUT).await;
    assert_eq!(closed.code(), CloseCode::Normal);
    let after = settled(&server).await;
    after.assert_sum(
        "wsclose_closes_total",
        &[
            ("endpoint", "drain"),
            ("initiator", "client"),
            ("code", "1000"),
            ("reason", "peer_close"),
        ],
        1.0,
    );
    assert_eq!(closes(&after, &[]), 1.0, "exactly one close counted");
    after.assert_sum(
        "wsclose_close_handshake_seconds_count",
        &[],
        handshakes_before + 1.0,
    );
    // The handshake took well under a second: it lands in a bucket at or below 1 s.
    after.assert_sum(
        "wsclose_close_handshake_seconds_bucket",
        &[("le", "1")],
        handshakes_before + 1.0,
    );

    // A second connection on another endpoint adds to the totals, not replaces them.
    let mut echo = connect(&server.ws_url("/ws/echo")).await;
    echo.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        next_data(&mut echo, IO_TIMEOUT).await,
        Message::text("hello")
    );
    let closed = close_and_wait(&mut echo, 4001, "done", IO_TIMEOUT).await;
    assert_eq!(closed.code(), CloseCode::Library(4001));
    let last = settled(&server).await;
    last.assert_sum("wsclose_connections_total", &[], 2.0);
    for name in [
        "wsclose_connections_total",
        "wsclose_messages_received_total",
        "wsclose_messages_sent_total",
    ] {
        last.assert_sum(name, &[("endpoint", "echo")], 1.0);
    }
    last.assert_sum(
        "wsclose_closes_total",
        &[
            ("endpoint", "echo"),
            ("code", "4xxx"),
            ("reason", "peer_close"),
        ],
        1.0,
    );
    last.assert_sum(
        "wsclose_close_handshake_seconds_count",
        &[],
        handshakes_before + 2.0,
    );
}

#[tokio::test]
async fn every_way_a_connection_ends_has_its_code_and_reason() {
    let server = ServerProcess::start(&["--close-timeout", "1s"]).await;
    let cases: [(Frame, &str, &str); 3] = [
        (Frame::text("x").rsv(1), "1002", "protocol_error"),
        (Frame::text(vec![0xFF]), "1007", "invalid_utf8"),
        (Frame::binary(vec![0; 70_000]), "1009", "message_too_big"),
    ];
    for (frame, code, reason) in cases {
        let mut raw = RawClient::connect(server.addr(), "/ws/echo").await;
        let _ = raw.send(&frame).await;
        let (got, _) = raw.expect_close().await;
        assert_eq!(got.map(|code| code.to_string()).as_deref(), Some(code));
        let labels = [
            ("endpoint", "echo"),
            ("initiator", "server"),
            ("code", code),
            ("reason", reason),
        ];
        assert_one_close_counted(&server, &labels).await;
    }

    // A peer that vanishes without a Close frame.
    let raw = RawClient::connect(server.addr(), "/ws/drain?push_ms=20").await;
    drop(raw);
    let labels = [
        ("endpoint", "drain"),
        ("initiator", "client"),
        ("code", "none"),
        ("reason", "peer_gone"),
    ];
    assert_one_close_counted(&server, &labels).await;
    let page = settled(&server).await;
    assert_eq!(closes(&page, &[]), 4.0, "{}", page.text);
}
