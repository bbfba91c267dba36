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
use wsclose_backoff::Backoff;
use wsclose_e2e::cluster::Cluster;
use wsclose_e2e::ws::{assert_answered, close_and_wait, connect, next_data, parse_tick};
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
        assert_answered(&closed, 4000, "bye via nginx", CLOSE_BOUND, &path);
    }
}

#[tokio::test]
async fn nginx_does_not_hide_the_bug() {
    let cluster = Cluster::start("60s", &[]).await;
    let mut ws = connect(&cluster.ws_url("/ws/no-drain?push_ms=50")).await;
    assert_eq!(parse_tick(&next_data(&mut ws, IO_TIMEOUT).await).seq, 0);
    let closed = close_and_wait(&mut ws, 1000, "", NO_ANSWER_FOR).await;
    assert_eq!(
        closed.answer.close, None,
        "no-drain answered through nginx: {closed:?}"
    );
    assert!(!closed.ended, "the connection ended: {closed:?}");
    assert!(!closed.messages.is_empty(), "ticks kept coming");
}

/// How long an idle socket lives: 10 s at the most.
const IDLE_FOR: Duration = Duration::from_secs(10);

/// Starts a cluster with nginx's `proxy_read_timeout` and the server's `flags`, and opens an
/// idle `/ws/drain` socket through it that reads (so the client library answers pings) but
/// sends nothing, until the connection ends or [`IDLE_FOR`] passes. Returns the cluster, how
/// long the socket lived, whether a Close frame came, and the read error if one ended it.
async fn silent_client(
    proxy_read_timeout: &str,
    flags: &[&str],
) -> (Cluster, Duration, bool, Option<String>) {
    let cluster = Cluster::start(proxy_read_timeout, flags).await;
    let mut ws = connect(&cluster.ws_url("/ws/drain?push_ms=0")).await;
    let start = Instant::now();
    let (closed, error) = loop {
        match tokio::time::timeout_at(start + IDLE_FOR, ws.next()).await {
            Err(_) | Ok(None) => break (false, None),
            Ok(Some(Ok(Message::Close(_)))) => break (true, None),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => break (false, Some(error.to_string())),
        }
    };
    (cluster, start.elapsed(), closed, error)
}

#[tokio::test]
async fn pings_under_the_proxy_read_timeout_keep_an_idle_socket_open() {
    // proxy_read_timeout 2s; the server pings every 500 ms.
    let flags = ["--ping-interval", "500ms", "--pong-timeout", "5s"];
    let (cluster, lived, closed, error) = silent_client("2s", &flags).await;
    println!("ping 500ms, proxy_read_timeout 2s: idle socket lived {lived:?}");
    assert!(
        lived >= IDLE_FOR,
        "cut after {lived:?} (close frame: {closed}, error: {error:?})\n{}",
        cluster.logs()
    );
}

#[tokio::test]
async fn pings_slower_than_the_proxy_read_timeout_let_nginx_cut_the_socket() {
    // proxy_read_timeout 2s; the server pings only every 5 s: nginx cuts first, without Close.
    let flags = ["--ping-interval", "5s", "--pong-timeout", "8s"];
    let (_cluster, lived, closed, error) = silent_client("2s", &flags).await;
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
    let nginx = cluster.nginx_pid();
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(connect(&cluster.ws_url("/ws/drain?push_ms=50")).await);
    }
    cluster
        .assert_interrupt_stops(Duration::from_secs(20))
        .await;
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

/// A background job of a non-interactive shell (a CI step, `make serve-cluster &` in a script)
/// starts with SIGINT ignored. The script must still stop on Ctrl-C, as its instances do,
/// instead of restarting them forever.
#[tokio::test]
async fn ctrl_c_stops_a_cluster_started_as_a_background_job() {
    let mut cluster = Cluster::start_as_background_job("60s", &[]).await;
    let nginx = cluster.nginx_pid();
    cluster
        .assert_interrupt_stops(Duration::from_secs(20))
        .await;
    assert!(!alive(nginx), "nginx still running after Ctrl-C");
}

/// What one reconnecting subscriber saw during a rolling restart.
#[derive(Debug, Default)]
struct Subscription {
    /// Every tick's `seq`, across reconnects, in arrival order.
    seqs: Vec<u64>,
    /// The Close code of each connection that ended before the test stopped (`None`: it ended
    /// without a Close frame).
    endings: Vec<Option<u16>>,
    /// Upgrades that failed (error text).
    failed_upgrades: Vec<String>,
    /// The instances that sent ticks.
    instances: std::collections::BTreeSet<String>,
    /// The longest time between two ticks, reconnects included.
    longest_silence: Duration,
}

/// Subscribes to `/ws/drain` through nginx and reconnects the way the demo page does (its
/// [`Backoff`], RFC 6455 §7.2.3: a random first delay, then truncated exponential backoff with
/// full jitter), resuming with
/// `after=<last seq>`, until `stop` turns true; then it closes with 1000. Each tick's arrival
/// time goes to `ticked`.
async fn subscriber(
    base: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
    ticked: tokio::sync::watch::Sender<Option<Instant>>,
) -> Subscription {
    let mut log = Subscription::default();
    let mut last_tick: Option<Instant> = None;
    let mut attempt = 0u32;
    loop {
        let url = match log.seqs.last() {
            Some(seq) => format!("{base}&after={seq}"),
            None => base.clone(),
        };
        let mut ws = match tokio_tungstenite::connect_async(&url).await {
            Ok((ws, _)) => ws,
            Err(error) => {
                log.failed_upgrades.push(error.to_string());
                backoff_wait(&mut attempt).await;
                continue;
            }
        };
        attempt = 0;
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    let _ = close_and_wait(&mut ws, 1000, "", IO_TIMEOUT).await;
                    return log;
                }
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let tick: serde_json::Value = serde_json::from_str(text.as_str()).expect("tick");
                        log.seqs.push(tick["seq"].as_u64().expect("seq"));
                        if let Some(instance) = tick["instance"].as_str() {
                            log.instances.insert(instance.to_owned());
                        }
                        let now = Instant::now();
                        ticked.send_replace(Some(now));
                        if let Some(previous) = last_tick.replace(now) {
                            log.longest_silence = log.longest_silence.max(now - previous);
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        log.endings.push(frame.map(|frame| u16::from(frame.code)));
                        // Keep reading until the stream ends: that completes the handshake.
                        while let Ok(Some(Ok(_))) = tokio::time::timeout(IO_TIMEOUT, ws.next()).await {}
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        log.endings.push(None);
                        break;
                    }
                },
            }
        }
        let _ = futures::SinkExt::close(&mut ws).await;
        // A random first delay spreads the reconnects of every client of the restarted instance.
        backoff_wait(&mut attempt).await;
    }
}

/// Waits the demo page's delay before reconnect number `attempt` ([`Backoff`], full jitter),
/// and counts it.
async fn backoff_wait(attempt: &mut u32) {
    let delay = Backoff::default().delay_ms(*attempt, rand::random::<f64>());
    *attempt = attempt.saturating_add(1);
    tokio::time::sleep(Duration::from_secs_f64(delay / 1000.0)).await;
}

/// Waits until every subscriber has received a tick after `since` (or any tick with `None`):
/// each is subscribed, again. Within a bound that only a broken cluster exceeds.
async fn every_client_ticks_after(
    ticks: &mut [tokio::sync::watch::Receiver<Option<Instant>>],
    since: Option<Instant>,
    cluster: &Cluster,
) {
    for (i, ticked) in ticks.iter_mut().enumerate() {
        let waited = tokio::time::timeout(
            Duration::from_secs(30),
            ticked.wait_for(|at| at.is_some_and(|at| since.is_none_or(|since| at > since))),
        )
        .await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "client {i} got no tick after {since:?}\n{}",
            cluster.logs()
        );
    }
}

/// The rolling restart: 200 clients, both instances restarted one after the other.
/// Every client must end each connection with 1012 (never without a Close), reconnect, see one
/// contiguous `seq` with no gap and no duplicate, and no upgrade may fail.
#[tokio::test]
async fn rolling_restart_is_invisible_to_200_reconnecting_clients() {
    const CLIENTS: usize = 200;
    wsclose_e2e::raise_fd_limit();
    let _heavy = wsclose_e2e::heavy_test_guard().await;
    let mut cluster = Cluster::start("60s", &["--shutdown-code", "1012"]).await;
    let base = cluster.ws_url("/ws/drain?push_ms=50");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (clients, mut ticks): (Vec<_>, Vec<_>) = (0..CLIENTS)
        .map(|_| {
            let (ticked, ticks) = tokio::sync::watch::channel(None);
            let client = tokio::spawn(subscriber(base.clone(), stop_rx.clone(), ticked));
            (client, ticks)
        })
        .unzip();
    // Every client subscribed, so that each is on an instance that will restart.
    every_client_ticks_after(&mut ticks, None, &cluster).await;

    let started = Instant::now();
    for k in [1, 2] {
        let old = cluster.instance(k);
        cluster.sigterm_instance(k);
        let new = cluster
            .next_start(Duration::from_secs(15))
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "instance {k} did not come back: {error:#}\n{}",
                    cluster.logs()
                )
            });
        assert_eq!(new.instance, k, "{new:?}");
        assert_ne!(new.pid, old.pid);
        assert_eq!(new.addr, old.addr, "an instance comes back on its port");
        // The old process has exited: a tick from now on comes over a live connection, so every
        // client of the stopped instance has reconnected before the next step.
        every_client_ticks_after(&mut ticks, Some(Instant::now()), &cluster).await;
    }
    let restart_took = started.elapsed();
    stop_tx.send(true).expect("clients listen");

    let mut longest = Duration::ZERO;
    let mut reconnects = 0;
    for (i, client) in clients.into_iter().enumerate() {
        let log = client.await.expect("client task");
        assert!(
            log.failed_upgrades.is_empty(),
            "client {i}: failed upgrades {:?}",
            log.failed_upgrades
        );
        assert!(
            !log.endings.is_empty(),
            "client {i} never reconnected: {log:?}"
        );
        assert!(
            log.endings.iter().all(|code| *code == Some(1012)),
            "client {i}: a connection ended other than with 1012: {:?}",
            log.endings
        );
        let expected: Vec<u64> = (0..log.seqs.len() as u64).collect();
        assert_eq!(
            log.seqs, expected,
            "client {i}: seq has a gap or a duplicate"
        );
        longest = longest.max(log.longest_silence);
        reconnects += log.endings.len();
    }
    println!(
        "rolling restart of 2 instances ({restart_took:?}): {CLIENTS} clients, {reconnects} reconnects, \
         no failed upgrade, longest silence a client saw {longest:?} (ticks every 50 ms)"
    );
    cluster
        .assert_interrupt_stops(Duration::from_secs(15))
        .await;
}
