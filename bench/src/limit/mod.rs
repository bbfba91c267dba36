//! Phase 4, scale to the machine's limit: steps of 1k, 5k, 10k connections and the most one
//! server process may hold (the hard `RLIMIT_NOFILE` less [`FD_MARGIN`]), for wsclose, the
//! bare tokio-tungstenite loop and gorilla/websocket, alternating at every step.
//!
//! The connections are held by client processes ([`crate::client`]), at most
//! [`CONNECTIONS_PER_CLIENT`] each, each bound to its own loopback source address
//! (127.0.0.2, 127.0.0.3, …), so neither a client's open-file limit nor one source address's
//! ephemeral ports caps the server. At every step, for every server:
//!
//! 1. **Held, then a storm**, on a fresh server: its RSS before and after the connections open
//!    and idle; the kernel's memory for the sockets ([`sockstat`]: TCP buffers and slab) over
//!    the same span; its CPU time over a window while they idle; then every client sends Close 1000 at
//!    once, until the last server Close arrives (clean: 1000 echoed, then EOF).
//! 2. **Graceful shutdown**, on another fresh server with as many connections: SIGTERM, then
//!    until every client has the server's Close and has seen TCP end (clean: 1001, then EOF).
//!
//! Keepalive: wsclose runs with the bench's flags ([`crate::server_args`]: it pings every
//! connection every second, `close_timeout` at its default); the bare loop and gorilla send no
//! keepalive of their own, so their clients send a Ping every second, and every server does
//! one ping exchange per connection-second.
//!
//! The steps below the largest are fitted with least squares ([`crate::fit`]): the server's
//! memory (RSS + its half of the kernel's socket memory) against connections, and the shutdown
//! time against connections; the largest step is checked against those lines, and the lines
//! give the projections to 100k and 1M connections.
//!
//! Modules: `measure.rs` (one step on one server), `project.rs` (the fits), `tables.rs` (what
//! is printed) and [`sockstat`].

mod measure;
pub mod project;
pub mod sockstat;
mod tables;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use wsclose_e2e::ServerProcess;

use crate::client::{ClientProcess, Command, Event};
use crate::fit::{Line, Residual};
use crate::report::{Figure, Report, RssSeries, Verdict};
use crate::stats::Samples;
use crate::tally::{ClientTally, Tally};
use crate::{Options, TARGET_RSS_KIB, TARGET_STORM_MS};

pub use measure::run;
use project::at_max;
pub use project::project;
use sockstat::{read_slab_kib, read_sockstat};
use tables::figures;
pub use tables::{projection_table, steps_table};

/// File descriptors left to the server for everything but connections (listener, epoll,
/// stdio, its own refusals: wsclose-server keeps 128 of them) and to the steps' slack.
pub const FD_MARGIN: u64 = 1_000;
/// The steps below the largest, when they are below it.
pub const BASE_STEPS: [usize; 3] = [1_000, 5_000, 10_000];
/// `--quick`'s one step.
pub const QUICK_STEP: usize = 200;
/// Most connections one client process holds, well under its open-file limit.
pub const CONNECTIONS_PER_CLIENT: usize = 5_000;
/// The first client source address; client process `i` binds to this plus `i`.
pub const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Where the connections go.
pub const SERVER_ADDR: &str = "127.0.0.1:0";
/// How often the bare loop's and gorilla's clients ping (they send no keepalive themselves).
const CLIENT_PING: Duration = Duration::from_secs(1);
/// The shutdown target over wsclose's `close_timeout`.
pub const SHUTDOWN_SLACK: Duration = Duration::from_secs(1);
/// Close code of a graceful shutdown (Going Away).
pub const CODE_GOING_AWAY: u16 = 1001;
/// Close code of the storm's handshakes (Normal).
pub const CODE_NORMAL: u16 = 1000;
/// The steps up to this size are fitted; the step at it carries the storm and RSS targets.
pub const TARGET_STEP: usize = 10_000;
/// Connection counts the fitted lines are projected to.
pub const PROJECT_TO: [f64; 2] = [100_000.0, 1_000_000.0];

/// The scale steps for a hard open-file limit of `hard_nofile`: [`BASE_STEPS`] below the
/// largest, then the largest, `hard_nofile − FD_MARGIN` capped by `cap`. `quick`: only the
/// largest, [`QUICK_STEP`] unless `cap` says otherwise.
pub fn steps(hard_nofile: u64, cap: Option<usize>, quick: bool) -> Vec<usize> {
    let limit = usize::try_from(hard_nofile.saturating_sub(FD_MARGIN))
        .unwrap_or(usize::MAX)
        .max(1);
    if quick {
        return vec![cap.unwrap_or(QUICK_STEP).min(limit)];
    }
    let largest = cap.map_or(limit, |cap| cap.min(limit));
    let mut steps: Vec<usize> = BASE_STEPS.into_iter().filter(|&s| s < largest).collect();
    steps.push(largest);
    steps
}

/// One server the phase measures.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Its name in the tables.
    pub name: &'static str,
    /// The command; the listen address is appended.
    pub command: Vec<String>,
    /// Environment added.
    pub env: Vec<(String, String)>,
    /// The WebSocket endpoint.
    pub path: &'static str,
    /// The clients' Ping period, for servers with no keepalive of their own.
    pub client_ping: Option<Duration>,
    /// Whether it is wsclose (has `/metrics` and a graceful shutdown).
    pub wsclose: bool,
}

impl ServerSpec {
    async fn start(&self) -> anyhow::Result<ServerProcess> {
        let mut command = tokio::process::Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .arg(SERVER_ADDR)
            .envs(self.env.iter().map(|(key, value)| (key, value)));
        ServerProcess::spawn(command)
            .await
            .with_context(|| format!("start {}", self.name))
    }
}

/// wsclose (with the bench's flags, on `/ws/echo`), the bare loop and gorilla; returns the
/// ones that are missing with the reason.
pub fn servers(wsclose: &Path) -> (Vec<ServerSpec>, Vec<String>) {
    let mut command = vec![wsclose.display().to_string()];
    command.extend(crate::server_args());
    command.push("--addr".into());
    let mut found = vec![ServerSpec {
        name: "wsclose",
        command,
        env: vec![("RUST_LOG".into(), "warn".into())],
        path: "/ws/echo",
        client_ping: None,
        wsclose: true,
    }];
    let mut missing = Vec::new();
    if !wsclose.is_file() {
        missing.push(format!("wsclose: {} missing", wsclose.display()));
        found.clear();
    }
    let (peers, _) = crate::peers::available(wsclose);
    for wanted in [crate::peers::FLOOR, crate::peers::GORILLA] {
        match peers.iter().find(|peer| peer.name == wanted) {
            Some(peer) => found.push(ServerSpec {
                name: peer.name,
                command: peer.command.clone(),
                env: peer.env.clone(),
                path: peer.path,
                client_ping: Some(CLIENT_PING),
                wsclose: false,
            }),
            None => missing.push(format!("{wanted}: not installed (make setup-peers)")),
        }
    }
    (found, missing)
}

/// How long the phase idles and watches.
#[derive(Debug, Clone)]
pub struct Plan {
    /// After the ramp, before the CPU window.
    pub settle: Duration,
    /// How long the server's CPU time is watched while the connections idle.
    pub cpu_window: Duration,
    /// After the ramp, before SIGTERM.
    pub shutdown_settle: Duration,
    /// The bench binary, run as the client processes.
    pub client_exe: PathBuf,
    /// Where the servers' logs go.
    pub logs: PathBuf,
}

/// How the connections of one storm or shutdown ended, over every client process: the
/// [`Tally`], and when the Closes and the TCP ends came.
#[derive(Debug, Clone, Serialize)]
pub struct TimedTally {
    /// How many connections ended which way.
    #[serde(flatten)]
    pub tally: Tally,
    /// Signal → the last server Close, ms.
    pub last_close_ms: Option<f64>,
    /// Signal → the server's Close, p50 over the connections, ms.
    pub close_p50_ms: Option<f64>,
    /// Signal → the last TCP end, ms.
    pub last_end_ms: Option<f64>,
}

impl TimedTally {
    fn from(ended: &ClientTally) -> TimedTally {
        let samples = Samples::from_ms(ended.close_ms.iter().copied());
        TimedTally {
            tally: ended.tally.clone(),
            last_close_ms: ended.last_close_ms(),
            close_p50_ms: Some(samples.quantile(0.5)).filter(|v| v.is_finite()),
            last_end_ms: ended.last_end_ms,
        }
    }
}

/// The held-then-storm part of one step on one server.
#[derive(Debug, Clone, Serialize)]
pub struct Held {
    /// Connections open.
    pub connections: usize,
    /// Connections that failed to open.
    pub failed_to_open: usize,
    /// The first reason one failed.
    pub first_error: Option<String>,
    /// Client processes (each on its own source address).
    pub client_processes: usize,
    /// Opening them all, s.
    pub ramp_s: f64,
    /// Server RSS before the first connection, KiB.
    pub baseline_rss_kib: u64,
    /// Server RSS after the settle time and the CPU window, KiB.
    pub loaded_rss_kib: u64,
    /// `(loaded − baseline) / connections`, KiB.
    pub rss_per_conn_kib: f64,
    /// TCP sockets in use (sockstat `inuse`), change over the step: both ends, about 2 × N.
    pub tcp_inuse_delta: i64,
    /// Kernel TCP buffer memory (sockstat `mem` pages × page size), change over the step,
    /// KiB: both ends of every loopback connection.
    pub buffer_delta_kib: f64,
    /// Kernel slab memory (`/proc/meminfo` `Slab:`), change over the step, KiB: both ends.
    pub slab_delta_kib: f64,
    /// `buffer_delta_kib + slab_delta_kib`.
    pub kernel_delta_kib: f64,
    /// The server's half of `kernel_delta_kib` per connection, KiB.
    pub kernel_per_conn_kib: f64,
    /// `loaded_rss_kib` + the server's half of `kernel_delta_kib`, KiB: what the fit uses.
    pub server_memory_kib: f64,
    /// The CPU window, s.
    pub cpu_window_s: f64,
    /// Server CPU (user + system) per wall-clock second in the window, ms/s.
    pub cpu_ms_per_s: f64,
    /// The same per connection, µs per connection-second.
    pub cpu_us_per_conn_s: f64,
    /// wsclose's `wsclose_connections_active` after the storm (waited for, up to 5 s).
    pub active_after_storm: Option<f64>,
    /// The storm: every client sends Close 1000 at once.
    pub storm: TimedTally,
    /// Per-connection signal → server Close, ms, for the CDF plot.
    #[serde(skip)]
    pub storm_close_ms: Vec<f64>,
}

/// The graceful-shutdown part of one step on one server.
#[derive(Debug, Clone, Serialize)]
pub struct Shutdown {
    /// Connections open at SIGTERM.
    pub connections: usize,
    /// Connections that failed to open.
    pub failed_to_open: usize,
    /// How the connections ended (clean: Close 1001, then EOF).
    pub ending: TimedTally,
    /// SIGTERM → every client has seen TCP end, ms; `None` if some had not by the bound.
    pub shutdown_ms: Option<f64>,
    /// The server's exit status, as printed.
    pub exit: String,
}

/// One server at one step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The server.
    pub server: &'static str,
    /// Connections asked for.
    pub requested: usize,
    /// Held, then the storm (`None`: failed, see `errors`).
    pub held: Option<Held>,
    /// The graceful shutdown (`None`: failed, see `errors`).
    pub shutdown: Option<Shutdown>,
    /// What failed.
    pub errors: Vec<String>,
}

/// A fitted line with the largest step checked against it.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    /// The line over the steps below the largest.
    pub line: Line,
    /// The largest step against the line.
    pub max_step: Option<Residual>,
}

/// One server's projection from the fits.
#[derive(Debug, Clone, Serialize)]
pub struct Projection {
    /// The server.
    pub name: &'static str,
    /// Server memory (RSS + half the kernel's socket memory) at 100,000 connections, MiB.
    pub per_100k_mib: Option<f64>,
    /// The same at 1,000,000, MiB.
    pub per_1m_mib: Option<f64>,
    /// Shutdown time at 100,000 connections, ms.
    pub shutdown_100k_ms: Option<f64>,
    /// Memory in KiB against connections.
    pub memory_fit: Option<Fit>,
    /// RSS alone in KiB against connections (the plot's lines).
    pub rss_fit: Option<Line>,
    /// Shutdown ms against connections.
    pub shutdown_fit: Option<Fit>,
}

/// One server at its largest step, for `scale_max` in `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct AtMax {
    /// The server.
    pub name: &'static str,
    /// Connections it really held at the largest step.
    pub connections: usize,
    /// RSS growth per connection, KiB.
    pub rss_per_conn_kib: f64,
    /// The server's half of the kernel's socket memory (TCP buffers and slab) per connection, KiB.
    pub kernel_per_conn_kib: f64,
    /// CPU per idle connection-second, µs.
    pub cpu_us_per_conn_s: f64,
    /// SIGTERM → every client has seen TCP end, ms.
    pub shutdown_ms: Option<f64>,
    /// Clients that got Close 1001 and then EOF.
    pub shutdown_clean: usize,
    /// The storm: signal → the last server Close, ms.
    pub storm_ms: Option<f64>,
}

/// Everything the phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct LimitRun {
    /// The hard `RLIMIT_NOFILE`.
    pub hard_nofile: u64,
    /// [`FD_MARGIN`].
    pub fd_margin: u64,
    /// The steps.
    pub steps: Vec<usize>,
    /// The page size sockstat's `mem` is counted in, bytes.
    pub page_size: u64,
    /// wsclose's `close_timeout` (its default), ms.
    pub close_timeout_ms: f64,
    /// Servers not measured, with the reason.
    pub skipped: Vec<String>,
    /// Every server at every step, in the order run.
    pub results: Vec<Step>,
    /// Per server, its largest step.
    pub at_max: Vec<AtMax>,
    /// Per server, the fits and projections.
    pub projection: Vec<Projection>,
}

/// Phase 4: every step on every server, on a multi-thread runtime; adds wsclose's figures to
/// the table and the RSS series to the plot. `None` when nothing could run.
pub fn phase(options: &Options, report: &mut Report) -> Option<LimitRun> {
    let hard_nofile = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((_, hard)) => hard,
        Err(error) => {
            report.error("scale", "scale phase", &anyhow::Error::from(error), "");
            return None;
        }
    };
    let steps = steps(hard_nofile, options.connections, options.quick);
    let (specs, skipped) = servers(&options.server);
    for why in &skipped {
        eprintln!("bench: [4/5] scale: skipped {why}");
    }
    eprintln!(
        "bench: [4/5] scale: steps {steps:?} (hard open-file limit {hard_nofile} less \
         {FD_MARGIN}), servers: {}",
        specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    );
    let client_exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            report.error("scale", "scale phase", &anyhow::Error::from(error), "");
            return None;
        }
    };
    let plan = Plan {
        settle: Duration::from_millis(if options.quick { 1_000 } else { 2_500 }),
        cpu_window: Duration::from_secs(if options.quick { 1 } else { 5 }),
        shutdown_settle: Duration::from_millis(if options.quick { 500 } else { 1_500 }),
        client_exe,
        logs: options.out.clone(),
    };
    let results = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("a tokio runtime")
        .map(|runtime| runtime.block_on(run(&specs, &steps, &plan)));
    let results = match results {
        Ok(results) => results,
        Err(error) => {
            report.error("scale", "scale phase", &error, "");
            return None;
        }
    };
    let close_timeout = wsclose::Timing::default().close_timeout;
    let mut at_max_all = Vec::new();
    let mut projections = Vec::new();
    for spec in &specs {
        let mine: Vec<&Step> = results.iter().filter(|s| s.server == spec.name).collect();
        if let Some(last) = mine.last() {
            at_max_all.push(at_max(spec.name, last));
        }
        projections.push(project(spec.name, &mine));
    }
    let run = LimitRun {
        hard_nofile,
        fd_margin: FD_MARGIN,
        steps,
        page_size: procfs::page_size(),
        close_timeout_ms: close_timeout.as_secs_f64() * 1e3,
        skipped,
        results,
        at_max: at_max_all,
        projection: projections,
    };
    figures(&run, close_timeout, report);
    for (spec, projection) in specs.iter().zip(&run.projection) {
        let points: Vec<(f64, f64)> = run
            .results
            .iter()
            .filter(|step| step.server == spec.name)
            .filter_map(|step| step.held.as_ref())
            .map(|held| (held.connections as f64, held.loaded_rss_kib as f64 / 1024.0))
            .collect();
        report.rss_series.push(RssSeries {
            name: spec.name.to_owned(),
            points,
            fit: projection.rss_fit,
        });
    }
    Some(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_from_the_limit() {
        assert_eq!(steps(20_000, None, false), [1_000, 5_000, 10_000, 19_000]);
        assert_eq!(steps(20_000, Some(10_000), false), [1_000, 5_000, 10_000]);
        assert_eq!(steps(20_000, Some(7_000), false), [1_000, 5_000, 7_000]);
        assert_eq!(steps(20_000, Some(500), false), [500]);
        assert_eq!(
            steps(20_000, Some(50_000), false),
            [1_000, 5_000, 10_000, 19_000]
        );
        assert_eq!(steps(4_096, None, false), [1_000, 3_096]);
        assert_eq!(steps(20_000, None, true), [QUICK_STEP]);
        assert_eq!(steps(20_000, Some(300), true), [300]);
        assert_eq!(steps(500, None, true), [1]);
    }
}
