//! The reference nginx (`deploy/nginx.conf`, through `deploy/serve-cluster.sh`) as a production
//! front: one client address cannot take the proxy from the others (`limit_conn`,
//! `limit_req`, `worker_connections`), `/metrics` answers only the loopback, and nginx does not
//! announce its version.
//!
//! Another client address is 127.0.0.2: Linux routes all of 127.0.0.0/8 over the loopback, so
//! a socket bound to it reaches nginx on 127.0.0.1 from a different `$remote_addr`.
//!
//! Needs Debian's nginx (`make setup`). Run with
//! `cargo test -p wsclose-e2e --test nginx_limits -- --nocapture` to see the figures.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Error as WsError;
use wsclose_e2e::cluster::Cluster;
use wsclose_e2e::ws::Ws;
use wsclose_e2e::{http_get_from, MetricsSnapshot, IO_TIMEOUT};

/// The address the flood comes from (the default source address towards 127.0.0.1).
const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// Another client, which must stay served.
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// WebSockets the flooder asks for: the 4,095 filled nginx's 8,192 connections; this
/// is past that (8,300 connections) whatever the worker count.
const FLOOD: usize = 4_150;
/// `limit_conn perip` in `deploy/nginx.conf`: the most connections one address holds.
const PER_ADDRESS: usize = 1_000;
/// Upgrades in flight at once.
const IN_FLIGHT: usize = 64;
/// `/healthz` requests from [`OTHER`] once the flood is held (more run while it opens).
const HEALTH_CHECKS_HELD: usize = 10;

/// How one upgrade attempt of the flood ended.
enum Attempt {
    /// Upgraded: the socket, held until the test ends.
    Open(Box<Ws>),
    /// An HTTP answer other than 101.
    Refused(u16),
    /// No HTTP answer: reset, closed, timed out.
    Failed(String),
}

/// One upgrade of `/ws/drain?push_ms=0` from [`FLOODER`], within [`IO_TIMEOUT`].
async fn attempt(url: String) -> Attempt {
    match tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::connect_async(&url)).await {
        Ok(Ok((ws, _))) => Attempt::Open(Box::new(ws)),
        Ok(Err(WsError::Http(response))) => Attempt::Refused(response.status().as_u16()),
        Ok(Err(error)) => Attempt::Failed(error.to_string()),
        Err(_) => Attempt::Failed("timed out".to_owned()),
    }
}

/// `GET /healthz` from [`OTHER`] through nginx: the status and how long it took, or the error.
async fn health_from_other(cluster_addr: std::net::SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    match http_get_from(OTHER, cluster_addr, "/healthz").await {
        Ok(response) if response.status == 200 => Ok(started.elapsed()),
        Ok(response) => Err(format!("status {}: {}", response.status, response.body)),
        Err(error) => Err(format!("{error:#}")),
    }
}

/// Issue 30, item 2: 4,150 WebSockets from one address through the reference nginx. Most are
/// refused with 429 (that is the point: by `limit_req` once its burst is spent, by
/// `limit_conn` at [`PER_ADDRESS`] open), the address holds at most [`PER_ADDRESS`], nginx cuts
/// none of those it admitted, and `/healthz` from another address is answered 200 every time,
/// while the flood opens and while it is held.
#[tokio::test]
async fn one_address_cannot_take_nginx_from_the_others() {
    wsclose_e2e::raise_fd_limit();
    let _heavy = wsclose_e2e::heavy_test_guard().await;
    let cluster = Cluster::start("60s", &[]).await;
    let addr = cluster.addr();
    let url = cluster.ws_url("/ws/drain?push_ms=0");

    // Another client checks its health all along, one request at a time, a few a second.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let prober = tokio::spawn(async move {
        let mut answers = Vec::new();
        while !*stop_rx.borrow() {
            answers.push(health_from_other(addr).await);
            let _ = tokio::time::timeout(Duration::from_millis(200), stop_rx.changed()).await;
        }
        answers
    });

    let started = Instant::now();
    let attempts: Vec<Attempt> = futures::stream::iter(0..FLOOD)
        .map(|_| attempt(url.clone()))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let flood_took = started.elapsed();
    let mut open = Vec::new();
    let mut refused = std::collections::BTreeMap::<u16, usize>::new();
    let mut failed = Vec::new();
    for attempt in attempts {
        match attempt {
            Attempt::Open(ws) => open.push(ws),
            Attempt::Refused(status) => *refused.entry(status).or_default() += 1,
            Attempt::Failed(error) => failed.push(error),
        }
    }

    // Held: every admitted socket open, the other address still served.
    let mut held_answers = Vec::new();
    for _ in 0..HEALTH_CHECKS_HELD {
        held_answers.push(health_from_other(addr).await);
    }
    stop_tx.send(true).expect("the prober listens");
    let during_answers = prober.await.expect("prober task");
    println!(
        "{FLOOD} upgrades from {FLOODER} in {flood_took:?}: {} open, refused {refused:?}, \
         {} failed; /healthz from {OTHER}: {} while opening, {} while held, slowest {:?}",
        open.len(),
        failed.len(),
        during_answers.len(),
        held_answers.len(),
        during_answers
            .iter()
            .chain(&held_answers)
            .filter_map(|answer| answer.as_ref().ok())
            .max()
    );

    for (when, answers) in [
        ("while opening", &during_answers),
        ("while held", &held_answers),
    ] {
        let bad: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
        assert!(
            bad.is_empty(),
            "/healthz from {OTHER} {when}: {} of {} not 200: {:?}\n{}",
            bad.len(),
            answers.len(),
            &bad[..bad.len().min(5)],
            cluster.logs()
        );
    }
    assert!(
        !during_answers.is_empty(),
        "no /healthz ran while the flood opened"
    );
    assert!(
        failed.is_empty(),
        "{} upgrades got no HTTP answer (the first: {:?})\n{}",
        failed.len(),
        &failed[..failed.len().min(5)],
        cluster.logs()
    );
    assert_eq!(
        refused.keys().copied().collect::<Vec<_>>(),
        [429],
        "every refusal is nginx's 429: {refused:?}"
    );
    assert!(
        open.len() <= PER_ADDRESS,
        "{} WebSockets open from one address, more than limit_conn's {PER_ADDRESS}",
        open.len()
    );
    assert!(
        !open.is_empty(),
        "no upgrade from {FLOODER} admitted at all"
    );

    // nginx cut none it admitted: the instances hold exactly the open sockets, once each has
    // counted the last ones upgraded (asked of the instances directly: through nginx,
    // 127.0.0.1 is at its limit).
    let instances = [1, 2].map(|k| cluster.instance(k).addr);
    let deadline = Instant::now() + IO_TIMEOUT;
    let active = loop {
        let mut active = 0.0;
        for instance in instances {
            active += MetricsSnapshot::scrape(instance)
                .await
                .sum("wsclose_connections_active", &[]);
        }
        if active == open.len() as f64 || Instant::now() >= deadline {
            break active;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        active,
        open.len() as f64,
        "the instances hold {active} WebSockets, the flooder {}",
        open.len()
    );
}

/// Issue 30, item 5: `/metrics` through nginx answers 127.0.0.1 and refuses 127.0.0.2 with
/// 403, and nginx names itself without a version (`server_tokens off`) in the `Server` header
/// and on its error pages.
#[tokio::test]
async fn metrics_are_loopback_only_and_nginx_hides_its_version() {
    let cluster = Cluster::start("60s", &[]).await;
    let addr = cluster.addr();
    let get = |from, path| async move {
        http_get_from(from, addr, path)
            .await
            .unwrap_or_else(|error| panic!("GET {path} from {from}: {error:#}"))
    };

    let metrics = get(FLOODER, "/metrics").await;
    assert_eq!(metrics.status, 200, "/metrics from {FLOODER}: {metrics:?}");
    MetricsSnapshot::parse(&metrics.body).expect("the instances' metrics");

    let denied = get(OTHER, "/metrics").await;
    assert_eq!(denied.status, 403, "/metrics from {OTHER}: {denied:?}");
    assert!(
        !denied.body.contains("wsclose_"),
        "metrics leaked: {denied:?}"
    );
    for path in ["/metrics?x=1", "//metrics"] {
        let response = get(OTHER, path).await;
        assert_eq!(response.status, 403, "{path} from {OTHER}: {response:?}");
    }

    let health = get(OTHER, "/healthz").await;
    assert_eq!(health.status, 200, "/healthz from {OTHER}: {health:?}");
    for response in [&health, &denied] {
        assert_eq!(
            response.header("server"),
            Some("nginx"),
            "Server header without a version: {response:?}"
        );
    }
    assert!(
        denied.body.contains("nginx") && !denied.body.contains("nginx/"),
        "nginx's error page without a version: {:?}",
        denied.body
    );
}

/// Issue 30, item 4 (the cluster's part): an instance's stderr log never grows past
/// `INSTANCE_LOG_MAX`; past it, it moves to `instance-K.log.1` and a new one starts. Here
/// with a 64 KiB cap and `RUST_LOG=trace`, while instance 1 logs about four times that.
#[tokio::test]
async fn instance_logs_are_capped() {
    const CAP: u64 = 64 * 1024;
    let cluster = Cluster::start_with_env(
        "60s",
        &[],
        &[("INSTANCE_LOG_MAX", "64K"), ("RUST_LOG", "trace")],
    )
    .await;
    let instance = cluster.instance(1).addr;
    let log = cluster.dir().join("instance-1.log");
    let rotated = cluster.dir().join("instance-1.log.1");
    let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |meta| meta.len());

    // Requests straight to instance 1 until its log has rotated, then three times as many
    // again, so that it has logged about four times the cap (rotating again and again); at
    // most MAX_REQUESTS (a log that never
    // rotates has grown far past the cap by then).
    const MAX_REQUESTS: u32 = 20_000;
    let mut requests = 0;
    let mut rotated_after = None;
    while requests < MAX_REQUESTS && rotated_after.is_none_or(|after| requests < 4 * after) {
        let response = wsclose_e2e::http_get(instance, "/healthz")
            .await
            .expect("GET /healthz");
        assert_eq!(response.status, 200);
        requests += 1;
        if rotated_after.is_none() && rotated.exists() {
            rotated_after = Some(requests);
        }
    }
    let (current, previous) = (size(&log), size(&rotated));
    println!(
        "{requests} requests (the log rotated after {rotated_after:?}): instance-1.log \
         {current} bytes, instance-1.log.1 {previous} bytes (cap {CAP})"
    );
    assert!(
        current <= CAP && previous <= CAP,
        "instance-1.log {current} bytes, instance-1.log.1 {previous} bytes: over {CAP}"
    );
    assert!(
        previous > CAP / 2,
        "instance-1.log.1 holds {previous} bytes: the log did not rotate"
    );
}
