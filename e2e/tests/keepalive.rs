//! Keepalive with small timeouts (ping every 200 ms, pong deadline 500 ms): a silent peer is
//! dropped in time, and a live peer stays connected far past the deadline.

use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use futures::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use wsclose_e2e::raw::{Frame, RawClient, RawCloseOutcome, OP_PING};
use wsclose_e2e::ws::{assert_healthy, close_and_wait, connect, next_data};
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
    let start = Instant::now();
    let (outcome, frames) = raw.next_close(DROP_BOUND + Duration::from_secs(1)).await;
    let elapsed = start.elapsed();
    let pings = frames
        .iter()
        .filter(|frame| frame.opcode == OP_PING)
        .count();
    println!("silent peer: {outcome:?} after {elapsed:?}, {pings} pings seen");
    assert!(
        matches!(outcome, RawCloseOutcome::Eof | RawCloseOutcome::Reset),
        "a dead peer is dropped without a Close frame, got {outcome:?}"
    );
    assert!(elapsed < DROP_BOUND, "dropped only after {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(300),
        "dropped after {elapsed:?}, before the 500 ms pong timeout"
    );
    assert!(pings >= 1, "the server never pinged");
    assert!(
        frames
            .iter()
            .all(|frame| frame.opcode == OP_PING && frame.payload.is_empty()),
        "{frames:?}"
    );

    let metrics = MetricsSnapshot::scrape(server.addr()).await;
    assert_eq!(
        metrics.sum("wsclose_closes_total", &[("reason", "pong_timeout")]),
        1.0,
        "{}",
        metrics.text
    );
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

    let metrics = MetricsSnapshot::scrape(server.addr()).await;
    assert_eq!(
        metrics.sum("wsclose_closes_total", &[("reason", "pong_timeout")]),
        0.0,
        "{}",
        metrics.text
    );
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
    raw.send(&Frame::close(1000, b"")).await.expect("send");
    let (outcome, _) = raw.next_close(IO_TIMEOUT).await;
    assert!(
        matches!(&outcome, RawCloseOutcome::Close(f) if f.close_code() == Some(1000)),
        "{outcome:?}"
    );
    let metrics = MetricsSnapshot::scrape(server.addr()).await;
    assert_eq!(
        metrics.sum("wsclose_closes_total", &[("reason", "pong_timeout")]),
        0.0,
        "{}",
        metrics.text
    );
}
