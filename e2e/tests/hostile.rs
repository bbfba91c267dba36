//! Hostile peers, against the real binary: abandoned connections must give their
//! slots back (no 503 forever), a flooding peer must not starve shutdown or the ticks, and a
//! peer must not be able to grow the metrics with close codes of its choice.
//!
//! Run with `cargo test -p wsclose-e2e --test hostile -- --nocapture` to see the figures.

use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use wsclose_e2e::raw::{Frame, RawClient};
use wsclose_e2e::ws::{assert_healthy, close_and_wait, connect};
use wsclose_e2e::{heavy_test_guard, raise_fd_limit, MetricsSnapshot, ServerProcess, IO_TIMEOUT};

/// The done-when: 1,000 connections to every endpoint, with and without `push_ms=0`,
/// opened and abandoned by their clients (TCP closed, no Close frame): the active gauge is back
/// to 0 within `pong_timeout`, and new upgrades succeed. With `--max-connections 1001` (the
/// cap counts TCP connections: 1,000 sockets and the scrape of `/metrics`), one leaked slot
/// would turn the next round's last upgrade, or its scrape, into HTTP 503.
#[tokio::test]
async fn abandoned_connections_on_every_endpoint_free_their_slots_within_pong_timeout() {
    const CONNECTIONS: usize = 1_000;
    let pong_timeout = Duration::from_secs(2);
    raise_fd_limit();
    let _heavy = heavy_test_guard().await;
    let server = ServerProcess::start(&[
        "--ping-interval",
        "500ms",
        "--pong-timeout",
        "2s",
        "--max-connections",
        "1001",
    ])
    .await;
    for path in [
        "/ws/drain",
        "/ws/drain?push_ms=0",
        "/ws/echo",
        "/ws/echo?push_ms=0",
        "/ws/no-drain",
        "/ws/no-drain?push_ms=0",
        "/ws/break-on-close",
        "/ws/lingering-tcp",
    ] {
        let mut sockets = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            sockets.push(connect(&server.ws_url(path)).await);
        }
        drop(sockets);
        let abandoned = Instant::now();
        let freed = MetricsSnapshot::wait_until(server.addr(), pong_timeout + IO_TIMEOUT, |page| {
            page.has("wsclose_connections_active")
                && page.sum("wsclose_connections_active", &[]) == 0.0
        })
        .await;
        let took = abandoned.elapsed();
        println!("{CONNECTIONS} abandoned on {path}: active back to 0 after {took:?}");
        if let Err(page) = freed {
            panic!("{path}: connections still active:\n{}", page.text);
        }
        assert!(
            took <= pong_timeout,
            "{path}: slots freed after {took:?}, pong timeout {pong_timeout:?}"
        );
    }
    // The last round's trap holds each socket 5 s after its session ends, and the cap counts
    // sockets: the server is full (503) until they are gone, then it is itself again.
    let deadline = Instant::now() + Duration::from_secs(5) + IO_TIMEOUT;
    loop {
        let health = wsclose_e2e::http_get(server.addr(), "/healthz").await;
        if health.is_ok_and(|health| health.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "/healthz not 200 again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_healthy(&server).await;
}

/// Sends small masked frames as fast as the socket takes them, and returns when the server has
/// closed the connection: the time its Close frame arrived, and the time TCP ended.
async fn flood_until_closed(raw: &mut RawClient) -> (Option<Instant>, Instant) {
    let batch: Vec<u8> = Frame::text("x").encode().repeat(256);
    let (mut reader, mut writer) = raw.stream_mut().split();
    let flood = async {
        while writer.write_all(&batch).await.is_ok() {}
        std::future::pending::<()>().await;
    };
    let watch = async {
        let mut buf = BytesMut::new();
        let mut close_at = None;
        loop {
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout(IO_TIMEOUT, reader.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return (close_at, Instant::now()),
            }
            while let Ok(Some((frame, used))) = Frame::decode(&buf) {
                let _ = buf.split_to(used);
                if frame.opcode == 0x8 && close_at.is_none() {
                    close_at = Some(Instant::now());
                }
            }
        }
    };
    tokio::select! {
        () = flood => unreachable!("the flood never ends by itself"),
        ended = watch => ended,
    }
}

/// A peer that floods small frames and never answers the server's 1001 is dropped when
/// `--close-timeout` runs out (±100 ms), not seconds later: the read no longer starves the
/// close deadline.
#[tokio::test]
async fn a_peer_flooding_after_shutdown_is_dropped_at_close_timeout() {
    let _heavy = heavy_test_guard().await;
    let mut server = ServerProcess::start(&["--close-timeout", "500ms"]).await;
    let mut raw = RawClient::connect(server.addr(), "/ws/echo").await;
    let signal = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.sigterm();
    };
    let ((close_at, ended_at), ()) = tokio::join!(flood_until_closed(&mut raw), signal);
    let close_at = close_at.expect("the server sent Close 1001 despite the flood");
    let held = ended_at - close_at;
    println!("flooding peer dropped {held:?} after the server's Close (close timeout 500 ms)");
    assert!(
        held >= Duration::from_millis(400) && held <= Duration::from_millis(600),
        "dropped {held:?} after the server's Close, want 500 ms ± 100 ms"
    );
    let status = server.wait_exit(Duration::from_secs(5)).await;
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}

/// Milliseconds since the Unix epoch, the clock of the ticks' `sent_at_ms`.
fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since.as_millis()).expect("fits")
}

/// Reads frames for at most `limit` (or until the connection ends), and records the
/// `sent_at_ms` of every tick.
async fn read_ticks(
    reader: &mut tokio::net::tcp::ReadHalf<'_>,
    buf: &mut BytesMut,
    sent_at: &mut Vec<u64>,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    let mut chunk = [0u8; 16 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, reader.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some((frame, used))) = Frame::decode(buf) {
            let _ = buf.split_to(used);
            if frame.opcode == 0x1 {
                let tick: serde_json::Value =
                    serde_json::from_slice(&frame.payload).expect("JSON tick");
                sent_at.push(tick["sent_at_ms"].as_u64().expect("sent_at_ms"));
            }
        }
    }
}

/// Ticks every 100 ms keep coming while the peer floods the server with frames. Counted by
/// the server's own `sent_at_ms`, so a client that reads late does not change the figure.
#[tokio::test]
async fn ticks_keep_flowing_while_the_peer_floods() {
    const WINDOW: Duration = Duration::from_secs(3);
    let _heavy = heavy_test_guard().await;
    let server = ServerProcess::start(&[]).await;
    let mut raw = RawClient::connect(server.addr(), "/ws/drain?push_ms=100").await;
    let batch: Vec<u8> = Frame::text("x").encode().repeat(256);
    let (mut reader, mut writer) = raw.stream_mut().split();
    let mut buf = BytesMut::new();
    let mut sent_at: Vec<u64> = Vec::new();
    let from = unix_ms();
    let flood = async {
        let until = Instant::now() + WINDOW;
        while Instant::now() < until && writer.write_all(&batch).await.is_ok() {}
    };
    tokio::select! {
        () = flood => {}
        () = read_ticks(&mut reader, &mut buf, &mut sent_at, WINDOW + IO_TIMEOUT) => {
            panic!("the connection ended during the flood")
        }
    }
    let to = from + u64::try_from(WINDOW.as_millis()).expect("fits");
    // Whatever the server sent during the flood and the client had not read yet.
    read_ticks(&mut reader, &mut buf, &mut sent_at, Duration::from_secs(1)).await;
    let ticks = sent_at.iter().filter(|at| (from..to).contains(*at)).count();
    println!("ticks sent in 3 s at push_ms=100 under a flood: {ticks}");
    assert!(ticks >= 25, "only {ticks} ticks sent in 3 s (30 expected)");
}

/// Peers choose their close codes; the metrics bucket them, so 100 different private-use
/// codes are one series.
#[tokio::test]
async fn close_codes_chosen_by_peers_cannot_grow_the_metrics() {
    let server = ServerProcess::start(&[]).await;
    for code in 4000..4100 {
        let mut ws = connect(&server.ws_url("/ws/echo")).await;
        let closed = close_and_wait(&mut ws, code, "", IO_TIMEOUT).await;
        assert_eq!(closed.code(), CloseCode::from(code));
    }
    let page = MetricsSnapshot::wait_until(server.addr(), IO_TIMEOUT, |page| {
        page.sum("wsclose_closes_total", &[("code", "4xxx")]) == 100.0
    })
    .await
    .unwrap_or_else(|page| {
        panic!(
            "100 closes with 4000–4099 not counted as 4xxx:\n{}",
            page.text
        )
    });
    let series = page
        .text
        .lines()
        .filter(|line| line.starts_with("wsclose_closes_total{"))
        .count();
    assert_eq!(series, 1, "{}", page.text);
    let mut ws = connect(&server.ws_url("/ws/echo")).await;
    ws.send(Message::text("still serving")).await.expect("send");
    assert!(ws.next().await.is_some());
}
