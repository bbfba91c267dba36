//! One step on one server: hold the connections on a fresh server and measure them, storm;
//! then the graceful shutdown on another fresh server.

use super::*;

/// After the server starts, before its baseline RSS is read.
const BASELINE_WAIT: Duration = Duration::from_millis(200);
/// Bound on opening one step's connections (every connect is bounded by
/// [`crate::client::CONNECT_TIMEOUT`] too).
const OPEN_WAIT: Duration = Duration::from_secs(120);
/// Bound on the storm, per client process.
const STORM_WAIT: Duration = Duration::from_secs(15);
/// Bound on the shutdown, per client process: well past close_timeout + 1 s.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(15);
/// Extra time for a client process to report after its own bound.
const REPORT_SLACK: Duration = Duration::from_secs(5);
/// Bound on the server's exit after SIGTERM, once the clients are done.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// Bound on wsclose's active-connection gauge reaching 0 after the storm.
const DRAIN_WAIT: Duration = Duration::from_secs(5);
/// Poll period of that gauge.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Spawns the client processes for `n` connections to `server` and opens them.
pub(super) async fn open_clients(
    plan: &Plan,
    server: &ServerProcess,
    spec: &ServerSpec,
    n: usize,
) -> anyhow::Result<(Vec<ClientProcess>, usize, usize, Option<String>, f64)> {
    let processes = n.div_ceil(CONNECTIONS_PER_CLIENT).max(1);
    let mut clients = Vec::with_capacity(processes);
    for _ in 0..processes {
        clients.push(ClientProcess::spawn(&plan.client_exe)?);
    }
    let started = Instant::now();
    for (index, client) in clients.iter_mut().enumerate() {
        let count = n / processes + usize::from(index < n % processes);
        let offset = u32::try_from(index).context("client index")?;
        client
            .send(&Command::Open {
                url: server.ws_url(spec.path),
                addr: server.addr(),
                count,
                sources: vec![Ipv4Addr::from(u32::from(FIRST_SOURCE) + offset)],
                ping_ms: spec
                    .client_ping
                    .map(|period| period.as_millis().try_into().unwrap_or(u64::MAX)),
            })
            .await?;
    }
    let events =
        futures::future::try_join_all(clients.iter_mut().map(|client| client.recv(OPEN_WAIT)))
            .await?;
    let ramp_s = started.elapsed().as_secs_f64();
    let (mut opened, mut failed, mut first_error) = (0, 0, None);
    for event in events {
        match event {
            Event::Opened {
                opened: o,
                failed: f,
                first_error: e,
            } => {
                opened += o;
                failed += f;
                first_error = first_error.or(e);
            }
            other => bail!("a client process answered Open with {other:?}"),
        }
    }
    Ok((clients, opened, failed, first_error, ramp_s))
}

/// Sends `command` to every client and gathers their [`Event::Ended`].
pub(super) async fn gather(
    clients: &mut [ClientProcess],
    command: &Command,
    wait: Duration,
) -> anyhow::Result<ClientTally> {
    for client in clients.iter_mut() {
        client.send(command).await?;
    }
    let events = futures::future::try_join_all(
        clients
            .iter_mut()
            .map(|client| client.recv(wait + REPORT_SLACK)),
    )
    .await?;
    let mut parts = Vec::with_capacity(events.len());
    for event in events {
        match event {
            Event::Ended(ended) => parts.push(ended),
            other => bail!("a client process answered with {other:?}"),
        }
    }
    Ok(ClientTally::merge(parts))
}

/// `wsclose_connections_active` summed, once it is 0 or [`DRAIN_WAIT`] has passed.
pub(super) async fn active_after(server: &ServerProcess) -> Option<f64> {
    let deadline = Instant::now() + DRAIN_WAIT;
    loop {
        let response = wsclose_e2e::http_get(server.addr(), "/metrics")
            .await
            .ok()?;
        let metrics = wsclose_e2e::MetricsSnapshot::parse(&response.body).ok()?;
        let active = metrics.sum("wsclose_connections_active", &[]);
        if active == 0.0 || Instant::now() >= deadline {
            return Some(active);
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Part 1 of a step: hold `n` connections on a fresh server, measure, storm.
pub(super) async fn held(
    spec: &ServerSpec,
    n: usize,
    plan: &Plan,
    page_kib: f64,
) -> anyhow::Result<Held> {
    let server = spec.start().await?;
    let result = async {
        tokio::time::sleep(BASELINE_WAIT).await;
        let baseline_rss_kib = server.try_rss_kib()?;
        let (sock_before, slab_before) = (read_sockstat()?, read_slab_kib()?);
        let (mut clients, opened, failed, first_error, ramp_s) =
            open_clients(plan, &server, spec, n).await?;
        tokio::time::sleep(plan.settle).await;
        let cpu_before = server.cpu_time()?;
        let window_started = Instant::now();
        tokio::time::sleep(plan.cpu_window).await;
        let cpu_used = server.cpu_time()?.saturating_sub(cpu_before);
        let window = window_started.elapsed().as_secs_f64();
        let loaded_rss_kib = server.try_rss_kib()?;
        let (sock_after, slab_after) = (read_sockstat()?, read_slab_kib()?);

        let since = crate::client::unix_ns();
        let storm = gather(
            &mut clients,
            &Command::Storm {
                since_unix_ns: since,
                expect_code: CODE_NORMAL,
                timeout_ms: STORM_WAIT.as_millis().try_into().unwrap_or(u64::MAX),
            },
            STORM_WAIT,
        )
        .await?;
        let active_after_storm = if spec.wsclose {
            active_after(&server).await
        } else {
            None
        };
        drop(clients);

        let per_conn = |value: f64| {
            if opened == 0 {
                f64::NAN
            } else {
                value / opened as f64
            }
        };
        let buffer_delta_kib =
            (sock_after.mem_pages as f64 - sock_before.mem_pages as f64) * page_kib;
        let slab_delta_kib = slab_after as f64 - slab_before as f64;
        let kernel_delta_kib = buffer_delta_kib + slab_delta_kib;
        let cpu_ms_per_s = cpu_used.as_secs_f64() * 1e3 / window;
        anyhow::Ok(Held {
            connections: opened,
            failed_to_open: failed,
            first_error,
            client_processes: n.div_ceil(CONNECTIONS_PER_CLIENT).max(1),
            ramp_s,
            baseline_rss_kib,
            loaded_rss_kib,
            rss_per_conn_kib: per_conn(loaded_rss_kib.saturating_sub(baseline_rss_kib) as f64),
            tcp_inuse_delta: sock_after.inuse as i64 - sock_before.inuse as i64,
            buffer_delta_kib,
            slab_delta_kib,
            kernel_delta_kib,
            kernel_per_conn_kib: per_conn(kernel_delta_kib / 2.0),
            server_memory_kib: loaded_rss_kib as f64 + kernel_delta_kib / 2.0,
            cpu_window_s: window,
            cpu_ms_per_s,
            cpu_us_per_conn_s: per_conn(cpu_ms_per_s * 1e3),
            active_after_storm,
            storm: TimedTally::from(&storm),
            storm_close_ms: storm.close_ms,
        })
    }
    .await;
    crate::save_log(&server, &plan.logs.join(log_name("held", spec.name)));
    result
}

/// Part 2 of a step: hold `n` connections on a fresh server, SIGTERM it, and wait for every
/// client's end.
pub(super) async fn shutdown(spec: &ServerSpec, n: usize, plan: &Plan) -> anyhow::Result<Shutdown> {
    let mut server = spec.start().await?;
    let result = async {
        let (mut clients, opened, failed, _, _) = open_clients(plan, &server, spec, n).await?;
        tokio::time::sleep(plan.shutdown_settle).await;
        let since = crate::client::unix_ns();
        server.sigterm();
        let ended = gather(
            &mut clients,
            &Command::AwaitEnd {
                since_unix_ns: since,
                expect_code: CODE_GOING_AWAY,
                timeout_ms: SHUTDOWN_WAIT.as_millis().try_into().unwrap_or(u64::MAX),
            },
            SHUTDOWN_WAIT,
        )
        .await?;
        drop(clients);
        let exit = match server.wait_exit(EXIT_WAIT).await {
            Some(status) => status.to_string(),
            None => format!("still running {EXIT_WAIT:?} after the clients were done"),
        };
        let ending = TimedTally::from(&ended);
        anyhow::Ok(Shutdown {
            connections: opened,
            failed_to_open: failed,
            shutdown_ms: ending.last_end_ms.filter(|_| ending.tally.timed_out == 0),
            ending,
            exit,
        })
    }
    .await;
    crate::save_log(&server, &plan.logs.join(log_name("shutdown", spec.name)));
    result
}

pub(super) fn log_name(part: &str, server: &str) -> String {
    format!(
        "scale-{part}-{}.log",
        server.replace(['/', ' ', '(', ')'], "_")
    )
}

/// Runs every step on every server, alternating: at step `i` the servers start at `i`.
pub async fn run(specs: &[ServerSpec], steps: &[usize], plan: &Plan) -> Vec<Step> {
    let page_kib = procfs::page_size() as f64 / 1024.0;
    let mut results = Vec::new();
    for (index, &n) in steps.iter().enumerate() {
        for offset in 0..specs.len() {
            let spec = &specs[(index + offset) % specs.len()];
            eprintln!(
                "bench: [4/5] scale: {} at {n} connections ({} client processes)",
                spec.name,
                n.div_ceil(CONNECTIONS_PER_CLIENT)
            );
            let mut step = Step {
                server: spec.name,
                requested: n,
                held: None,
                shutdown: None,
                errors: Vec::new(),
            };
            match held(spec, n, plan, page_kib).await {
                Ok(held) => step.held = Some(held),
                Err(error) => step.errors.push(format!("held and storm: {error:#}")),
            }
            match shutdown(spec, n, plan).await {
                Ok(shutdown) => step.shutdown = Some(shutdown),
                Err(error) => step.errors.push(format!("shutdown: {error:#}")),
            }
            for error in &step.errors {
                eprintln!("bench: [4/5] scale: {} at {n}: {error}", spec.name);
            }
            results.push(step);
        }
    }
    results
}
