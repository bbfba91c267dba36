//! Many concurrent connections in this process, for the peers phase ([`crate::peers`]): the
//! server's memory and CPU per connection while they idle, then a close storm in which every
//! client closes at once. (The scale phase, up to the machine's limit, is [`crate::limit`],
//! with the connections in client processes.)
//!
//! Every connection has its own task that keeps reading (so pings are answered and ticks are
//! drained, as a real client does) and, on the storm signal, sends Close and waits for the
//! server's. A few opener tasks connect in parallel so the ramp is not one handshake at a time.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

use wsclose_e2e::ServerProcess;

use crate::stats::Samples;

/// Bound on one connect during the ramp.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one client's close handshake during the storm.
const STORM_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the server's RSS is sampled during the ramp.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(25);

/// What to run.
#[derive(Debug, Clone)]
pub struct ScalePlan {
    /// How many connections to hold open.
    pub connections: usize,
    /// How many tasks open connections in parallel.
    pub openers: usize,
    /// Wait after the ramp, so every connection has pushed and pinged a few times.
    pub settle: Duration,
    /// How long the server's CPU time is watched while the connections idle.
    pub cpu_window: Duration,
    /// Whether the server is wsclose, whose `/metrics` says how many connections it holds.
    pub wsclose_metrics: bool,
    /// When set, every client sends a Ping this often (staggered over the period), so that
    /// servers that send no keepalive of their own all do the same work while they idle.
    pub client_ping: Option<Duration>,
}

/// Counters and results the opener and holder tasks share.
#[derive(Default)]
struct Shared {
    /// The next connection number to open.
    next: AtomicUsize,
    /// Connections open so far.
    opened: AtomicUsize,
    /// Connections that failed to open.
    failures: AtomicUsize,
    /// The first reason a connection failed to open.
    first_error: Mutex<Option<String>>,
    /// One task per open connection.
    holders: Mutex<Vec<JoinHandle<Held>>>,
    /// Ticks received, over all connections.
    ticks: AtomicU64,
    /// Connections that ended before the storm.
    broken: AtomicUsize,
}

/// What one held connection ended with.
enum Held {
    /// The storm's close handshake is complete.
    Closed {
        /// From the storm signal until this client's Close frame was written.
        sent: Duration,
        /// From the storm signal until the server's Close frame was read.
        to_close_frame: Duration,
        /// The code the server echoed.
        code: Option<u16>,
        /// The socket, still open on this side: the client's own teardown is left until every
        /// handshake is timed, so that it does not compete with the server for the CPU (in a
        /// real storm, the clients are other machines).
        socket: Box<Ws>,
    },
    /// The connection ended or failed before or during the storm.
    Broken,
}

/// The storm's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Storm {
    /// Connections that took part.
    pub connections: usize,
    /// From the signal until the last server Close frame arrived (every handshake complete).
    pub all_handshakes_ms: f64,
    /// From the signal until the client had written the last Close frame. Close to
    /// `all_handshakes_ms` means the client, not the server, set the pace.
    pub all_sent_ms: f64,
    /// Handshakes where the server echoed code 1000 and then closed TCP (checked after timing).
    pub clean: usize,
    /// Connections that broke instead of completing the handshake.
    pub broken: usize,
    /// Per-connection time from the signal to the server's Close: p50.
    pub p50_ms: f64,
    /// Per-connection time from the signal to the server's Close: p99.
    pub p99_ms: f64,
}

/// Everything the scale phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRun {
    /// Connections asked for.
    pub requested: usize,
    /// Connections that opened.
    pub opened: usize,
    /// Connections that failed to open (the first error is in `first_error`).
    pub failed_to_open: usize,
    /// The first connect error, if any.
    pub first_error: Option<String>,
    /// How long the ramp took.
    pub ramp_s: f64,
    /// Server RSS before the first connection.
    pub baseline_rss_kib: u64,
    /// Server RSS after the ramp and the settle time.
    pub settled_rss_kib: u64,
    /// Server RSS after the CPU window (the figure used per connection).
    pub loaded_rss_kib: u64,
    /// `(loaded − baseline) / opened`.
    pub rss_per_connection_kib: f64,
    /// `(connections open, server RSS KiB)` samples taken during the ramp.
    pub rss_curve: Vec<(usize, u64)>,
    /// Length of the CPU window.
    pub cpu_window_s: f64,
    /// Server CPU time (user + system) per wall-clock second during the window.
    pub cpu_ms_per_s: f64,
    /// The same per connection, in microseconds per second.
    pub cpu_us_per_connection_s: f64,
    /// Ticks the clients received per second during the window (proves pushes were on).
    pub ticks_per_s: f64,
    /// Connections that broke while idling (should be 0).
    pub broken_while_idle: usize,
    /// `wsclose_connections_active` on the server just before the storm.
    pub server_active_before_storm: Option<f64>,
    /// `wsclose_connections_active` once the storm is over (should be 0).
    pub server_active_after_storm: Option<f64>,
    /// Server RSS once every connection is gone.
    pub after_storm_rss_kib: u64,
    /// The close storm.
    pub storm: Storm,
    /// Server CPU time during the storm.
    pub storm_server_cpu_ms: f64,
    /// Per-connection signal-to-server-Close times, for the CDF plot (ms).
    #[serde(skip)]
    pub storm_samples: Samples,
}

/// Opens `plan.connections` connections to `url` on `server`, measures, then storms. The
/// scale phase runs it on wsclose's `/ws/drain`, and the peers phase on every server's echo.
pub async fn run(server: &ServerProcess, url: &str, plan: &ScalePlan) -> anyhow::Result<ScaleRun> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline_rss_kib = server.try_rss_kib()?;

    let (go_tx, go_rx) = watch::channel(None::<Instant>);
    let shared = Arc::new(Shared::default());

    // The ramp: openers pull connection numbers until all are taken.
    let ramp_started = Instant::now();
    let openers: Vec<_> = (0..plan.openers.max(1))
        .map(|_| {
            tokio::spawn(open(
                url.to_owned(),
                plan.connections,
                plan.client_ping,
                go_rx.clone(),
                shared.clone(),
            ))
        })
        .collect();
    let mut rss_curve = vec![(0, baseline_rss_kib)];
    let mut all_opened = futures::future::join_all(openers);
    loop {
        tokio::select! {
            _ = &mut all_opened => break,
            () = tokio::time::sleep(RSS_SAMPLE_EVERY) => {
                rss_curve.push((shared.opened.load(Ordering::Relaxed), server.try_rss_kib()?));
            }
        }
    }
    let ramp_s = ramp_started.elapsed().as_secs_f64();
    let opened_count = shared.opened.load(Ordering::Relaxed);
    rss_curve.push((opened_count, server.try_rss_kib()?));

    // Idle with pushes and keepalive running.
    tokio::time::sleep(plan.settle).await;
    let settled_rss_kib = server.try_rss_kib()?;
    let ticks_before = shared.ticks.load(Ordering::Relaxed);
    let cpu_before = server.cpu_time()?;
    let window_started = Instant::now();
    tokio::time::sleep(plan.cpu_window).await;
    let cpu_used = server.cpu_time()?.saturating_sub(cpu_before);
    let window = window_started.elapsed().as_secs_f64();
    let ticks_in_window = shared.ticks.load(Ordering::Relaxed) - ticks_before;
    let loaded_rss_kib = server.try_rss_kib()?;
    rss_curve.push((opened_count, loaded_rss_kib));
    let broken_while_idle = shared.broken.load(Ordering::Relaxed);
    let server_active_before_storm = active_connections(server, plan).await;

    // The storm: one signal, every client closes.
    let storm_cpu_before = server.cpu_time()?;
    let storm_started = Instant::now();
    go_tx.send_replace(Some(storm_started));
    let handles = std::mem::take(&mut *shared.holders.lock().expect("lock"));
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(handle.await.unwrap_or(Held::Broken));
    }
    let storm_server_cpu = server.cpu_time()?.saturating_sub(storm_cpu_before);
    let storm_samples = Samples::from_durations(outcomes.iter().filter_map(|held| match held {
        Held::Closed { to_close_frame, .. } => Some(*to_close_frame),
        Held::Broken => None,
    }));
    let storm = summarize_storm(outcomes).await;

    // The server should now have dropped every socket.
    let mut server_active_after_storm = active_connections(server, plan).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while server_active_after_storm.is_some_and(|active| active > 0.0) && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        server_active_after_storm = active_connections(server, plan).await;
    }
    let after_storm_rss_kib = server.try_rss_kib()?;

    let first_error = shared.first_error.lock().expect("lock").take();
    let per_connection = |value: f64| {
        if opened_count == 0 {
            f64::NAN
        } else {
            value / opened_count as f64
        }
    };
    let cpu_ms_per_s = cpu_used.as_secs_f64() * 1e3 / window;
    Ok(ScaleRun {
        requested: plan.connections,
        opened: opened_count,
        failed_to_open: shared.failures.load(Ordering::Relaxed),
        first_error,
        ramp_s,
        baseline_rss_kib,
        settled_rss_kib,
        loaded_rss_kib,
        rss_per_connection_kib: per_connection(
            loaded_rss_kib.saturating_sub(baseline_rss_kib) as f64
        ),
        rss_curve,
        cpu_window_s: window,
        cpu_ms_per_s,
        cpu_us_per_connection_s: per_connection(cpu_ms_per_s * 1e3),
        ticks_per_s: ticks_in_window as f64 / window,
        broken_while_idle,
        server_active_before_storm,
        server_active_after_storm,
        after_storm_rss_kib,
        storm,
        storm_server_cpu_ms: storm_server_cpu.as_secs_f64() * 1e3,
        storm_samples,
    })
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> anyhow::Result<Ws> {
    // Small client buffers: this process holds as many sockets as the server does.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let (ws, _response) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .with_context(|| format!("connect to {url}"))?;
    Ok(ws)
}

/// One opener: connects until `total` connections have been taken, spawning a holder for each.
async fn open(
    url: String,
    total: usize,
    ping: Option<Duration>,
    go: watch::Receiver<Option<Instant>>,
    shared: Arc<Shared>,
) {
    loop {
        let number = shared.next.fetch_add(1, Ordering::Relaxed);
        if number >= total {
            break;
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, connect(&url)).await {
            Ok(Ok(ws)) => {
                // Connection k pings at k/100 of the period, so the pings are spread out.
                let pinger = ping.map(|period| {
                    let offset = period.mul_f64((number % 100) as f64 / 100.0);
                    tokio::time::interval_at(tokio::time::Instant::now() + offset, period)
                });
                let holder = tokio::spawn(hold(ws, pinger, go.clone(), shared.clone()));
                shared.holders.lock().expect("lock").push(holder);
                shared.opened.fetch_add(1, Ordering::Relaxed);
            }
            outcome => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                let why = match outcome {
                    Ok(Err(error)) => format!("{error:#}"),
                    _ => format!("connect timed out after {CONNECT_TIMEOUT:?}"),
                };
                shared.first_error.lock().expect("lock").get_or_insert(why);
            }
        }
    }
}

/// Holds one connection: drains it (and pings on `pinger`) until the storm signal, then
/// closes and times the answer.
async fn hold(
    mut ws: Ws,
    mut pinger: Option<tokio::time::Interval>,
    mut go: watch::Receiver<Option<Instant>>,
    shared: Arc<Shared>,
) -> Held {
    let storm_started = loop {
        let ping = async {
            match pinger.as_mut() {
                Some(pinger) => pinger.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            changed = go.changed() => match (changed, *go.borrow_and_update()) {
                (Ok(()), Some(started)) => break started,
                (Ok(()), None) => continue,
                (Err(_), _) => return Held::Broken,
            },
            _ = ping => {
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    shared.broken.fetch_add(1, Ordering::Relaxed);
                    return Held::Broken;
                }
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(_))) => {
                    shared.ticks.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    shared.broken.fetch_add(1, Ordering::Relaxed);
                    return Held::Broken;
                }
            },
        }
    };
    match tokio::time::timeout(STORM_TIMEOUT, close(ws, storm_started)).await {
        Ok(Some(held)) => held,
        _ => Held::Broken,
    }
}

async fn close(mut ws: Ws, storm_started: Instant) -> Option<Held> {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "storm".into(),
    };
    ws.send(Message::Close(Some(frame))).await.ok()?;
    let sent = storm_started.elapsed();
    loop {
        match ws.next().await? {
            Ok(Message::Close(frame)) => {
                return Some(Held::Closed {
                    sent,
                    to_close_frame: storm_started.elapsed(),
                    code: frame.map(|frame| u16::from(frame.code)),
                    socket: Box::new(ws),
                });
            }
            Ok(_) => continue, // a tick that was already in flight
            Err(_) => return None,
        }
    }
}

/// Sums up the storm, then checks (untimed) that the server closed every TCP connection.
async fn summarize_storm(outcomes: Vec<Held>) -> Storm {
    let mut storm = Storm {
        connections: outcomes.len(),
        all_handshakes_ms: 0.0,
        all_sent_ms: 0.0,
        clean: 0,
        broken: 0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    };
    let mut to_close = Vec::with_capacity(outcomes.len());
    let mut echoed = Vec::with_capacity(outcomes.len());
    for held in outcomes {
        match held {
            Held::Closed {
                sent,
                to_close_frame,
                code,
                socket,
            } => {
                to_close.push(to_close_frame);
                storm.all_sent_ms = storm.all_sent_ms.max(sent.as_secs_f64() * 1e3);
                storm.all_handshakes_ms = storm
                    .all_handshakes_ms
                    .max(to_close_frame.as_secs_f64() * 1e3);
                if code == Some(1000) {
                    echoed.push(*socket);
                }
            }
            Held::Broken => storm.broken += 1,
        }
    }
    storm.clean = futures::stream::iter(echoed)
        .map(server_closed_tcp)
        .buffer_unordered(512)
        .filter(|closed| std::future::ready(*closed))
        .count()
        .await;
    let samples = Samples::from_durations(to_close);
    storm.p50_ms = samples.quantile(0.5);
    storm.p99_ms = samples.quantile(0.99);
    storm
}

/// Whether the server has closed the TCP connection: nothing but EOF is left to read.
async fn server_closed_tcp(socket: Ws) -> bool {
    let mut tcp = socket.into_inner();
    let mut rest = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut rest)).await,
        Ok(Ok(0))
    )
}

/// `wsclose_connections_active` summed over endpoints, or `None` if `/metrics` did not answer
/// or the plan does not read it.
async fn active_connections(server: &ServerProcess, plan: &ScalePlan) -> Option<f64> {
    if !plan.wsclose_metrics {
        return None;
    }
    let response = wsclose_e2e::http_get(server.addr(), "/metrics")
        .await
        .ok()?;
    let metrics = wsclose_e2e::MetricsSnapshot::parse(&response.body).ok()?;
    Some(metrics.sum("wsclose_connections_active", &[]))
}
