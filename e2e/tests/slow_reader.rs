//! Slow readers: peers that never read while the server pushes a tick every millisecond are
//! dropped after `--write-timeout`, and the server's memory stays flat meanwhile, because its
//! outgoing queue is bounded.

use std::time::Duration;

use tokio::time::Instant;
use wsclose_check::How;
use wsclose_e2e::raw::OP_TEXT;
use wsclose_e2e::ws::{assert_contiguous, assert_healthy, Tick};
use wsclose_e2e::{heavy_test_guard, MetricsSnapshot, ServerProcess};

/// How many peers stop reading at once.
const PEERS: usize = 50;

/// The server's write timeout in this test.
const WRITE_TIMEOUT: &str = "2s";

/// The most the whole test may wait for every peer to be dropped. How long the peers' TCP
/// buffers take to fill depends on the kernel, not on the server: the server's send buffer grows
/// with the connection (Linux autotuning), so at one 70-byte tick a millisecond it takes 3 s on
/// one kernel and 10 s or more on another (6.18: about 450 KB per peer). What the server
/// decides is the rest: once a write stops going through, the peer is gone `--write-timeout`
/// later, asserted against [`STALL_TO_DROP`].
const DROP_BOUND: Duration = Duration::from_secs(60);

/// From the last tick any peer took to the moment every peer is dropped: the 2 s write timeout,
/// with a wide margin for a loaded machine and the 100 ms polling.
const STALL_TO_DROP: Duration = Duration::from_secs(5);

/// How much the server's RSS may grow from "all peers connected" to the moment they are all
/// dropped. Measured on the 2-core dev machine (debug build): 12 to 18 MiB with 50 peers
/// connected, growth while they stall 24 to 224 KiB. A queue without a bound would hold every
/// tick for the 2 s the writes block: 50 peers x 2,000 ticks x at least 64 bytes (the 40-byte
/// JSON in its own allocation, plus the queue slot) = 6.4 MB or more. 2 MiB sits 9x above the
/// measured noise and 3x below that.
const RSS_GROWTH_BOUND_KIB: u64 = 2 * 1024;

/// The server's RSS, absolute, at any moment of the test: measured peak 18.3 MiB (debug build),
/// so 64 MiB leaves room for a different allocator or build while catching any real pile-up.
const RSS_BOUND_KIB: u64 = 64 * 1024;

#[tokio::test]
async fn non_reading_peers_are_dropped_after_write_timeout_and_memory_stays_flat() {
    let _heavy = heavy_test_guard().await;
    // One tick a millisecond to each of the 50 fills the stalled peers' windows fast; allowed
    // explicitly, the floor and the server-wide rate both.
    let server = ServerProcess::start(&[
        "--write-timeout",
        WRITE_TIMEOUT,
        "--min-push-interval",
        "1ms",
        "--max-push-rate",
        "1000000",
    ])
    .await;
    let rss_start = server.rss_kib();

    let mut peers = Vec::new();
    for _ in 0..PEERS {
        peers.push(wsclose_e2e::connect_stalling(server.addr(), "/ws/drain?push_ms=1").await);
    }
    let start = Instant::now();
    let rss_connected = server.rss_kib();

    let mut rss_peak = rss_connected;
    let mut last_page = String::new();
    let mut dropped_after = None;
    // When the server last got a tick through to any peer.
    let (mut sent, mut last_progress) = (0.0, start);
    while start.elapsed() < DROP_BOUND {
        rss_peak = rss_peak.max(server.rss_kib());
        let page = MetricsSnapshot::scrape(server.addr()).await;
        let now_sent = page.sum("wsclose_messages_sent_total", &[]);
        if now_sent > sent {
            (sent, last_progress) = (now_sent, Instant::now());
        }
        let timed_out = page.sum("wsclose_closes_total", &[("reason", "write_timeout")]);
        if timed_out == PEERS as f64 && page.sum("wsclose_connections_active", &[]) == 0.0 {
            dropped_after = Some(start.elapsed());
            break;
        }
        last_page = page.text;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stalled_for = last_progress.elapsed();
    rss_peak = rss_peak.max(server.rss_kib());
    println!(
        "{PEERS} slow readers dropped after {dropped_after:?}, {stalled_for:?} after the last \
         tick went through ({sent} ticks); RSS at start {rss_start} KiB, \
         with the peers connected {rss_connected} KiB, peak while they stalled {rss_peak} KiB \
         (growth {} KiB)",
        rss_peak - rss_connected
    );
    let dropped_after = dropped_after.unwrap_or_else(|| {
        panic!("slow readers not all dropped within {DROP_BOUND:?}:\n{last_page}")
    });
    assert!(
        dropped_after >= Duration::from_millis(1800),
        "dropped after {dropped_after:?}, before the 2 s write timeout"
    );
    assert!(
        stalled_for <= STALL_TO_DROP,
        "the last peer went {stalled_for:?} after its writes stopped going through"
    );
    assert!(rss_peak < RSS_BOUND_KIB, "RSS peaked at {rss_peak} KiB");
    assert!(
        rss_peak - rss_connected < RSS_GROWTH_BOUND_KIB,
        "RSS grew from {rss_connected} KiB to {rss_peak} KiB while the peers stalled"
    );

    // What did reach a peer is in order with no gap, and then the connection just ends: a peer
    // that cannot read gets no Close frame. The write that timed out may have left half a
    // frame on the wire, which is fine for a connection that is being dropped.
    let mut peer = peers.pop().unwrap();
    let (outcome, frames) = peer.next_close(Duration::from_secs(5)).await;
    let ticks: Vec<Tick> = frames
        .iter()
        .filter(|frame| frame.opcode == OP_TEXT)
        .map(|frame| serde_json::from_slice(&frame.payload).expect("tick JSON"))
        .collect();
    println!(
        "one peer had {} ticks buffered, then {outcome:?}",
        ticks.len()
    );
    assert!(!ticks.is_empty());
    assert_contiguous(&ticks, 0);
    let just_ended = match outcome.how {
        How::Fin | How::Rst => true,
        How::Error => outcome
            .error
            .as_ref()
            .is_some_and(|why| why.starts_with("EOF inside a frame")),
        How::Close | How::Open => false,
    };
    assert!(just_ended, "{outcome:?}");
    drop(peers);
    assert_healthy(&server).await;
}

/// How much RSS may grow while a peer floods `/ws/echo` with 64 KiB messages and never reads the
/// echoes. Measured on the 2-core dev machine (debug build): 160 to 590 KiB, with the server
/// accepting 22 to 29 messages before it stops reading. A queue without a bound would keep
/// every echo the server reads while its writes block: over loopback that is hundreds of MiB
/// within the 1 s write timeout. 8 MiB is 14x the measured growth.
const ECHO_RSS_GROWTH_BOUND_KIB: u64 = 8 * 1024;

/// The echo path has a writer too: a peer that sends big messages and never reads the echoes
/// fills the server's send buffer within a few messages; it is dropped after the write timeout,
/// and the echoes waiting for it do not pile up in memory.
#[tokio::test]
async fn peer_flooding_echo_without_reading_is_dropped_and_memory_stays_bounded() {
    let _heavy = heavy_test_guard().await;
    let server = ServerProcess::start(&["--write-timeout", "1s"]).await;
    let mut peer = wsclose_e2e::connect_stalling(server.addr(), "/ws/echo").await;
    let rss_connected = server.rss_kib();
    let start = Instant::now();

    let flood = tokio::spawn(async move {
        let message = wsclose_e2e::raw::Frame::binary(vec![0xAB; 64 * 1024]);
        let mut sent = 0usize;
        // The server stops reading once its queue is full, so these writes block until it
        // drops the connection, which ends them with an error.
        while peer.send(&message).await.is_ok() {
            sent += 1;
            if sent == 100_000 {
                break;
            }
        }
        sent
    });

    let mut rss_peak = rss_connected;
    let mut dropped_after = None;
    let mut last_page = String::new();
    while start.elapsed() < DROP_BOUND {
        rss_peak = rss_peak.max(server.rss_kib());
        let page = MetricsSnapshot::scrape(server.addr()).await;
        if page.sum("wsclose_closes_total", &[("reason", "write_timeout")]) == 1.0
            && page.sum("wsclose_connections_active", &[]) == 0.0
        {
            dropped_after = Some(start.elapsed());
            break;
        }
        last_page = page.text;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rss_peak = rss_peak.max(server.rss_kib());
    let sent = tokio::time::timeout(Duration::from_secs(5), flood)
        .await
        .expect("the flood's writes end once the server drops the peer")
        .expect("flood task");
    println!(
        "echo flood: {sent} messages of 64 KiB written, dropped after {dropped_after:?}; RSS \
         with the peer connected {rss_connected} KiB, peak {rss_peak} KiB (growth {} KiB)",
        rss_peak - rss_connected
    );
    let dropped_after = dropped_after
        .unwrap_or_else(|| panic!("flooding peer not dropped within {DROP_BOUND:?}:\n{last_page}"));
    assert!(
        dropped_after >= Duration::from_millis(900),
        "{dropped_after:?}"
    );
    assert!(
        sent < 100_000,
        "the server kept reading 6 GiB it could not echo"
    );
    assert!(
        rss_peak - rss_connected < ECHO_RSS_GROWTH_BOUND_KIB,
        "RSS grew from {rss_connected} KiB to {rss_peak} KiB"
    );
    assert_healthy(&server).await;
}
