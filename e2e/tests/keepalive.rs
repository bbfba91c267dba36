//! Keepalive with small timeouts (ping every 200 ms, pong deadline 500 ms): a silent peer is
//! dropped in time, and a live peer stays connected far past the deadline.

use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use futures::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use wsclose_e2e::raw::{Frame, RawClient, OP_PING};
use wsclose_e2e::ws::{
    assert_healthy, assert_raw_close_echoed, close_and_wait, connect, next_data,
    silent_peer_dropped,
};
use wsclose_e2e::{MetricsSnapshot, ServerProcess, IO_TIMEOUT};

const KEEPALIVE: [&str; 4] = ["--ping-interval", "200ms", "--pong-timeout", "500ms"];

/// A silent peer must be gone well before this (pong timeout 500 ms plus scheduling slack).
const DROP_BOUND: Duration = Duration::from_secs(3);

/// How long the live peers stay connected: four pong timeouts.
const STAY: Duration = Duration::from_secs(2);

/// The peer reads the pings (so we can count them) but answers nothing.
#[tokio::test]
async fn peer_that_never_answers_is_dropped() {
    let server = ServerProcess::start(&KEEPALIVE).await;
    let mut raw = RawClient::connect(server.addr(), "/ws/drain?push_ms=0").await;
    let silent = silent_peer_dropped(&mut raw, DROP_BOUND + Duration::from_secs(1)).await;
    // 300 ms: the 500 ms pong timeout, less scheduling slack.
    silent.assert_dropped(Duration::from_millis(300)..DROP_BOUND, &"keepalive");
    assert!(
        silent
            .frames
            .iter()
            .all(|frame| frame.opcode == OP_PING && frame.payload.is_empty()),
        "{:?}",
        silent.frames
    );

    let metrics = MetricsSnapshot::scrape(server.addr()).await;
    metrics.assert_sum("wsclose_closes_total", &[("reason", "pong_timeout")], 1.0);
    assert_eq!(metrics.sum("wsclose_connections_active", &[]), 0.0);
    assert_healthy(&server).await;
}

/// The peer does not even read its socket; the server notices through metrics.
#[tokio::test]
async fn peer_that_never_reads_is_dropped() {
    let server = ServerProcess::start(&KEEPALIVE).await;
    let _raw = RawClient::connect(server.addr(), "/ws/echo").await;
    let start = Instant::now();
    let dropped = MetricsSnapshot::wait_until(server.addr(), DROP_BOUND, |page| {
        page.sum("wsclose_closes_total", &[("reason", "pong_timeout")]) == 1.0
            && page.sum("wsclose_connections_active", &[]) == 0.0
    })
    .await;
    println!("non-reading peer dropped after {:?}", start.elapsed());
    if let Err(page) = dropped {
        panic!("not dropped within {DROP_BOUND:?}:\n{}", page.text);
    }
}

/// tokio-tungstenite answers every ping while it is polled, so this peer stays.
#[tokio::test]
async fn reading_peer_stays_connected() {
    let server = ServerProcess::start(&KEEPALIVE).await;
    let mut ws = connect(&server.ws_url("/ws/echo")).await;
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < STAY {
        match tokio::time::timeout_at(start + STAY, ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(other) => panic!("live peer got {other:?} after {:?}", start.elapsed()),
        }
    }
    println!("live peer: {pings} pings in {STAY:?}");
    assert!(pings >= 3, "only {pings} pings in {STAY:?}");
    ws.send(Message::text("still here")).await.expect("send");
    assert_eq!(
        next_data(&mut ws, IO_TIMEOUT).await,
        Message::text("still here")
    );
    let closed = close_and_wait(&mut ws, 1000, "", IO_TIMEOUT).await;
    assert_eq!(closed.code(), CloseCode::Normal, "{closed:?}");
    assert_no_pong_timeout(&server).await;
}

/// Any frame from the peer proves it is alive: a peer that never answers pings but keeps
/// sending data is not dropped.
#[tokio::test]
async fn any_frame_from_the_peer_resets_the_deadline() {
    let server = ServerProcess::start(&KEEPALIVE).await;
    let mut raw = RawClient::connect(server.addr(), "/ws/drain?push_ms=0").await;
    let start = Instant::now();
    while start.elapsed() < STAY {
        raw.send(&Frame::text("tick from the client"))
            .await
            .expect("server dropped a peer that keeps talking");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_raw_close_echoed(&mut raw, 1000, b"", &"a peer that keeps talking").await;
    assert_no_pong_timeout(&server).await;
}

/// Asserts that the server has dropped no peer for a missed pong.
async fn assert_no_pong_timeout(server: &ServerProcess) {
    let metrics = MetricsSnapshot::scrape(server.addr()).await;
    metrics.assert_sum("wsclose_closes_total", &[("reason", "pong_timeout")], 0.0);
}
