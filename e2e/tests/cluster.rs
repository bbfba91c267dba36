//! Through real nginx, as `make serve-cluster` runs it (`deploy/serve-cluster.sh` and
//! `deploy/nginx.conf`): the close handshake survives the proxy, the bug is not hidden by it,
//! and nginx's own `proxy_read_timeout` cuts an idle socket unless the server's pings come
//! sooner.
//!
//! Needs Debian's nginx (`make setup`). Run with
//! `cargo test -p wsclose-e2e --test cluster -- --nocapture` to see the figures.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use wsclose_e2e::cluster::Cluster;
use wsclose_e2e::ws::{close_and_wait, connect, next_data, parse_tick};
use wsclose_e2e::IO_TIMEOUT;

/// A correct server answers Close in about 1 ms, through nginx too; under a second proves it.
const CLOSE_BOUND: Duration = Duration::from_secs(1);
/// How long the broken endpoint must stay unanswered.
const NO_ANSWER_FOR: Duration = Duration::from_secs(3);

#[tokio::test]
async fn close_through_nginx_is_echoed_and_tcp_ends() {
    let cluster = Cluster::start("60s", &[]).await;
    for path in [
        "/ws/drain?push_ms=20",
        "/ws/drain?push_ms=60000",
        "/ws/echo",
    ] {
        let mut ws = connect(&cluster.ws_url(path)).await;
        let closed = close_and_wait(&mut ws, 4000, "bye via nginx", IO_TIMEOUT).await;
        println!("nginx {path}: close answered in {:?}", closed.elapsed);
        assert_eq!(closed.code(), 4000, "{path}: {closed:?}");
        assert_eq!(closed.reason(), "bye via nginx", "{path}");
        assert!(closed.ended, "{path}: TCP did not end: {closed:?}");
        assert_eq!(closed.error, None, "{path}");
        assert!(closed.elapsed < CLOSE_BOUND, "{path}: {closed:?}");
    }
}

#[tokio::test]
async fn nginx_does_not_hide_the_bug() {
    let cluster = Cluster::start("60s", &[]).await;
    let mut ws = connect(&cluster.ws_url("/ws/no-drain?push_ms=50")).await;
    assert_eq!(parse_tick(&next_data(&mut ws, IO_TIMEOUT).await).seq, 0);
    let closed = close_and_wait(&mut ws, 1000, "", NO_ANSWER_FOR).await;
    assert_eq!(
        closed.reply, None,
        "no-drain answered through nginx: {closed:?}"
    );
    assert!(!closed.ended, "the connection ended: {closed:?}");
    assert!(!closed.messages.is_empty(), "ticks kept coming");
}

/// Reads (so the client library answers pings) but sends nothing, until the connection ends or
/// `limit` passes. Returns how long it lived and whether a Close frame came.
async fn silent_client(url: &str, limit: Duration) -> (Duration, bool, Option<String>) {
    let mut ws = connect(url).await;
    let start = Instant::now();
    loop {
        match tokio::time::timeout_at(start + limit, ws.next()).await {
            Err(_) => return (start.elapsed(), false, None),
            Ok(Some(Ok(Message::Close(_)))) => return (start.elapsed(), true, None),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => return (start.elapsed(), false, Some(error.to_string())),
            Ok(None) => return (start.elapsed(), false, None),
        }
    }
}

#[tokio::test]
async fn pings_under_the_proxy_read_timeout_keep_an_idle_socket_open() {
    // proxy_read_timeout 2s; the server pings every 500 ms.
    let cluster = Cluster::start("2s", &["--ping-interval", "500ms", "--pong-timeout", "5s"]).await;
    let (lived, closed, error) = silent_client(
        &cluster.ws_url("/ws/drain?push_ms=0"),
        Duration::from_secs(10),
    )
    .await;
    println!("ping 500ms, proxy_read_timeout 2s: idle socket lived {lived:?}");
    assert!(
        lived >= Duration::from_secs(10),
        "cut after {lived:?} (close frame: {closed}, error: {error:?})\n{}",
        cluster.logs()
    );
}

#[tokio::test]
async fn pings_slower_than_the_proxy_read_timeout_let_nginx_cut_the_socket() {
    // proxy_read_timeout 2s; the server pings only every 5 s: nginx cuts first, without Close.
    let cluster = Cluster::start("2s", &["--ping-interval", "5s", "--pong-timeout", "8s"]).await;
    let (lived, closed, error) = silent_client(
        &cluster.ws_url("/ws/drain?push_ms=0"),
        Duration::from_secs(10),
    )
    .await;
    println!("ping 5s, proxy_read_timeout 2s: cut after {lived:?}, error {error:?}");
    assert!(!closed, "nginx cuts without a Close frame");
    assert!(
        lived >= Duration::from_millis(1500) && lived < Duration::from_secs(4),
        "expected nginx to cut at about 2 s, lived {lived:?}"
    );
}

/// Whether a process is still running (an exited one that nobody reaped yet, a zombie, is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.starts_with('Z'))
    })
}

#[tokio::test]
async fn ctrl_c_closes_every_socket_through_nginx_then_stops_everything() {
    let mut cluster = Cluster::start("60s", &[]).await;
    let instances = [1, 2].map(|k| cluster.instance(k).pid as i32);
    let nginx = cluster.nginx_pid().expect("nginx.pid");
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(connect(&cluster.ws_url("/ws/drain?push_ms=50")).await);
    }
    let status = cluster.interrupt(Duration::from_secs(20)).await;
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "{}",
        cluster.logs()
    );
    for (i, ws) in sockets.iter_mut().enumerate() {
        let mut close = None;
        while let Ok(Some(message)) = tokio::time::timeout(IO_TIMEOUT, ws.next()).await {
            if let Ok(Message::Close(frame)) = message {
                close = frame.map(|frame| u16::from(frame.code));
            }
        }
        assert_eq!(
            close,
            Some(1001),
            "socket {i} got no Close 1001 through nginx"
        );
    }
    for pid in instances.into_iter().chain([nginx]) {
        assert!(!alive(pid), "process {pid} still running after Ctrl-C");
    }
}
