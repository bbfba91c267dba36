//! # wsclose-bench: how fast does wsclose close, how close is that to the physical limit,
//! what does a connection cost, and how does it compare with other servers?
//!
//! Run by `make bench`:
//!
//! ```text
//! cargo build --release -p wsclose-server -p wsclose-bench
//! cargo run --release -p wsclose-bench -- [--quick] [--connections N] …
//! ```
//!
//! It starts the release server itself (on `127.0.0.1:0`), prints a table with every figure
//! next to its target, and writes `target/bench/results.json`, `close_latency_cdf.svg` and
//! `rss_vs_connections.svg`. A missed target is reported, not an error: the exit status is
//! non-zero only when a measurement could not be made.
//!
//! # Phases
//! 1. **TCP RTT**: 2-byte ping-pong between two tokio sockets over loopback
//!    ([`latency::tcp_round_trips`]). With the echo on the same thread nobody sleeps, so this
//!    is the kernel's loopback path and nothing else: the physical floor the close handshake is
//!    compared with. With the echo on another thread each round trip also wakes a sleeping
//!    peer twice, which on an idle VM can cost more than the whole close handshake; that
//!    figure is printed for context.
//! 2. **Close handshake**: sequential connect + close on `/ws/drain?push_ms=0` with
//!    tokio-tungstenite, each once a Ping is answered and the connection has idled for
//!    `--close-idle-ms`; send Close → the server's Close, and → TCP EOF
//!    ([`latency::close_handshakes`]). `src/bin/close-handshakes.rs` runs the same timing,
//!    interleaved in rounds, against servers you start yourself ([`latency::p50_rounds`]).
//! 3. **Browser**: the wasm probe's `measureClose` in headless Chromium via WebDriver
//!    ([`browser::run`]). Skipped, with the reason printed, without chromedriver or a built
//!    `target/www/pkg`.
//! 4. **Scale, to the machine's limit**: steps of 1k, 5k, 10k connections and the most one
//!    process may hold (the hard `RLIMIT_NOFILE` less [`limit::FD_MARGIN`]), held by client
//!    processes ([`client`]) on several loopback source addresses, for wsclose, the bare loop
//!    and gorilla alternating: RSS, kernel TCP memory and CPU per connection, a close storm,
//!    a graceful shutdown (SIGTERM) on a fresh server, and least-squares projections to 100k
//!    and 1M connections ([`limit::phase`], [`fit`]).
//! 5. **Peers**: wsclose next to gorilla/websocket, Node `ws`, Python `websockets` and a bare
//!    tokio-tungstenite loop, the same client for all, alternating in rounds ([`peers::run`]).
//!
//! # Layout
//! One module per phase, each with its `phase` function that adds its figures to the
//! [`Report`]: [`latency`] (1, 2), [`browser`] (3, Chromium through
//! `wsclose_check::browser::Driver` and fantoccini), [`limit`] (4, with [`client`], the client
//! processes, and [`fit`]) and [`peers`] (5, holding its connections in-process with
//! [`scale`]); [`stats`] (percentiles) and [`report`] (table, JSON, plots). The servers are child processes run by
//! the e2e harness ([`wsclose_e2e::ServerProcess`], `/proc` through procfs). `main.rs` parses
//! the flags (clap) into [`Options`] and calls [`run`].

pub mod browser;
pub mod client;
pub mod fit;
pub mod latency;
pub mod limit;
pub mod peers;
pub mod report;
pub mod results;
pub mod scale;
pub mod stats;
pub mod tally;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use wsclose_e2e::server::workspace_root;
use wsclose_e2e::ServerProcess;

pub use report::Report;
use report::Verdict;

/// Close-handshake p50 target, ms.
pub const TARGET_CLOSE_P50_MS: f64 = 0.25;
/// Close-handshake p50 must be at most this many TCP round trips.
pub const TARGET_CLOSE_RTT_RATIO: f64 = 5.0;
/// Browser close p50 target, ms.
pub const TARGET_BROWSER_P50_MS: f64 = 1.0;
/// RSS per idle connection target, KiB.
pub const TARGET_RSS_KIB: f64 = 8.0;
/// Close storm target, ms. It applies to the scale phase's 10,000-connection step only (with
/// `--connections` below 10,000 or `--quick`, to the largest step: printed, but easier to
/// meet).
pub const TARGET_STORM_MS: f64 = 500.0;
/// wsclose's RSS per idle connection over the bare tokio-tungstenite loop's (the floor), at
/// most: medians over the peer rounds.
pub const TARGET_FLOOR_RSS_RATIO: f64 = 1.1;
/// wsclose's close p50 and CPU per connection-second over the bare loop's, at most: medians
/// over the peer rounds.
pub const TARGET_FLOOR_RATIO: f64 = 1.15;
/// The README's axum program's RSS per idle connection and close p50 over the demo server's,
/// at most: medians over the peer rounds.
pub const TARGET_AXUM_DEMO_RATIO: f64 = 1.1;

/// Push and ping period of the scale phase: both run once a second on every connection.
pub const SCALE_PERIOD: &str = "1s";

/// What to run: the command line with every default filled in (see `wsclose-bench --help`).
#[derive(Debug, Clone)]
pub struct Options {
    /// A smoke run: smaller sizes everywhere.
    pub quick: bool,
    /// Caps the scale phase's largest step (`None`: the hard open-file limit less
    /// [`limit::FD_MARGIN`]; `--quick`: [`limit::QUICK_STEP`], its only step).
    pub connections: Option<usize>,
    /// Sequential close handshakes.
    pub handshakes: usize,
    /// Loopback TCP round trips.
    pub rtt_iterations: usize,
    /// Whether to run the browser phase.
    pub browser: bool,
    /// Close probes in headless Chromium.
    pub browser_probes: usize,
    /// Where `results.json` and the plots go.
    pub out: PathBuf,
    /// The release server binary.
    pub server: PathBuf,
    /// Whether to run the peers phase.
    pub peers: bool,
    /// Rounds over wsclose and the peers.
    pub rounds: usize,
    /// Close handshakes per server per round.
    pub peer_handshakes: usize,
    /// Idle connections per server per round.
    pub peer_idle: usize,
    /// How long each timed connection idles between the Pong and its Close.
    pub close_idle: Duration,
}

impl Options {
    /// The defaults: a full run, or a smoke run with `quick`.
    pub fn defaults(quick: bool) -> Options {
        Options {
            quick,
            connections: None,
            handshakes: if quick { 100 } else { 1_000 },
            rtt_iterations: if quick { 2_000 } else { 20_000 },
            browser: true,
            browser_probes: if quick { 10 } else { 100 },
            out: target_dir().join("bench"),
            server: default_binary(),
            peers: true,
            rounds: if quick { 2 } else { 5 },
            peer_handshakes: if quick { 50 } else { 200 },
            peer_idle: if quick { 100 } else { 1_000 },
            close_idle: latency::CLOSE_IDLE,
        }
    }
}

/// Parses the command line of `program`, or says what is wrong in one line and returns exit
/// status 2; `--help` and `--version` print and exit 0.
pub fn parse_flags<C: clap::Parser>(program: &str) -> Result<C, std::process::ExitCode> {
    match C::try_parse() {
        Ok(cli) => Ok(cli),
        Err(error) if !error.use_stderr() => error.exit(), // --help, --version
        Err(error) => {
            // clap's message up to its usage, on one line ("… not provided: <URL>...").
            let message = error.to_string();
            let summary: Vec<&str> = message
                .lines()
                .map(str::trim)
                .take_while(|line| !line.is_empty() && !line.starts_with("Usage:"))
                .collect();
            eprintln!("{program}: {} (see --help)", summary.join(" "));
            Err(std::process::ExitCode::from(2))
        }
    }
}

/// A count of at least 1, for clap's `value_parser`.
pub fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("wants a positive whole number, not {text:?}")),
    }
}

/// Runs every phase; returns how many measurements failed.
pub fn run(options: &Options) -> anyhow::Result<usize> {
    let started = Instant::now();
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("create {}", options.out.display()))?;
    // The peers phase holds its idle connections in this process (the scale phase's are in
    // client processes, which raise their own limit, as the servers do; the servers inherit
    // this one).
    let nofile = rlimit::increase_nofile_limit(u64::MAX).context("raise RLIMIT_NOFILE")?;
    let needed = options.peer_idle as u64 + 256;
    if options.peers && nofile < needed {
        bail!(
            "the open-file limit is {nofile}, {needed} are needed for {} idle peer connections \
             (raise the hard limit, or pass a smaller --peer-idle)",
            options.peer_idle
        );
    }
    let machine = Machine::probe();
    eprintln!(
        "bench: {} ({} cores, Linux {}), server {}",
        machine.cpu,
        machine.cores,
        machine.kernel,
        options.server.display()
    );

    let mut report = Report::default();
    latency::phase(options, &mut report);
    let limit_run = limit::phase(options, &mut report);
    let peer_results = peers::phase(options, &mut report);

    let cdf_path = options.out.join("close_latency_cdf.svg");
    let rss_path = options.out.join("rss_vs_connections.svg");
    report::plot(&report, &cdf_path, &rss_path);

    let errors = report
        .figures
        .iter()
        .filter(|figure| figure.verdict == Verdict::Error)
        .count();
    let elapsed = started.elapsed().as_secs_f64();
    let results = results::Results {
        machine: &machine,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: options.quick,
        elapsed_s: elapsed,
        server_args: server_args(),
        targets: results::Targets {
            close_handshake_p50_ms: TARGET_CLOSE_P50_MS,
            close_to_rtt_ratio: TARGET_CLOSE_RTT_RATIO,
            browser_close_p50_ms: TARGET_BROWSER_P50_MS,
            rss_per_connection_kib: TARGET_RSS_KIB,
            close_storm_ms: TARGET_STORM_MS,
            close_storm_clean_pct: 100.0,
        },
        figures: &report.figures,
        details: &report.details,
        peers: &peer_results,
        scale_limit: None,
        scale_max: None,
        scale_steps: None,
        projection: None,
    }
    .scale(limit_run.as_ref());
    let results_path = options.out.join("results.json");
    std::fs::write(&results_path, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("write {}", results_path.display()))?;

    println!();
    println!(
        "wsclose bench: {} ({} cores, Linux {}){}",
        machine.cpu,
        machine.cores,
        machine.kernel,
        if options.quick { ", --quick" } else { "" }
    );
    println!();
    print!("{}", report::table(&report.figures));
    println!();
    if let Some(run) = &limit_run {
        println!(
            "scale, every server at every step (storm: every client sends Close 1000 at once; \
             shutdown: SIGTERM on a fresh server, until every client has seen TCP end; \
             kernel: the server's half of the TCP buffers and the slab growth):"
        );
        println!("{}", limit::steps_table(run));
        println!();
        println!(
            "projection: least squares over the steps below the largest (memory = RSS + the \
             kernel half), the largest step checked against the line:"
        );
        println!("{}", limit::projection_table(run));
        println!();
    }
    if !peer_results.is_empty() {
        println!(
            "peers, the same client, {} rounds alternating ({} close handshakes and {} idle \
             connections per server per round):",
            options.rounds, options.peer_handshakes, options.peer_idle
        );
        println!("{}", peers::table(&peer_results, options.rounds));
        println!();
    }
    println!(
        "wrote {}, {} and {} in {elapsed:.0} s",
        display(&results_path),
        display(&cdf_path),
        display(&rss_path)
    );
    Ok(errors)
}

/// Starts the server `binary` on `127.0.0.1:0` with `args` and `RUST_LOG=warn`, and waits for
/// its listening line.
pub async fn start_server(binary: &Path, args: &[String]) -> anyhow::Result<ServerProcess> {
    if !binary.is_file() {
        bail!(
            "no server binary at {} (run `cargo build --release -p wsclose-server`)",
            binary.display()
        );
    }
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn");
    ServerProcess::spawn(command).await
}

/// Writes what `server` has logged to stderr so far to `path`, for a look after the run; a
/// failure to write is said, not fatal.
pub fn save_log(server: &ServerProcess, path: &Path) {
    if let Err(error) = std::fs::write(path, server.stderr_text()) {
        eprintln!("bench: write {}: {error}", path.display());
    }
}

/// Where the release server is: `$CARGO_TARGET_DIR/release/wsclose-server`, else
/// `<workspace>/target/release/wsclose-server`.
pub fn default_binary() -> PathBuf {
    target_dir().join("release").join("wsclose-server")
}

/// The cargo target directory this workspace builds into.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_relative() {
                workspace_root().join(dir)
            } else {
                dir
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Flags of every server the bench starts. Push and ping run every second (the scale phase
/// needs keepalive to actually run), to every connection: the server-wide push rate is raised
/// past 19,000 ticks a second, as the peers push; the latency connections turn pushing off
/// with `push_ms=0`.
pub fn server_args() -> Vec<String> {
    [
        "--max-connections",
        "100000",
        "--max-push-rate",
        "1000000",
        "--push-interval",
        SCALE_PERIOD,
        "--ping-interval",
        SCALE_PERIOD,
        "--pong-timeout",
        "30s",
        "--static-dir",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([www_dir().display().to_string()])
    .collect()
}

/// The demo page and the built wasm, as `make build` leaves them.
pub fn www_dir() -> PathBuf {
    workspace_root().join("target").join("www")
}

/// `156.0.8078.79` → `156`.
pub fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// A path relative to the current directory when it is below it.
fn display(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// What the figures were measured on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// The CPU model, from `/proc/cpuinfo`.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// The kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads the machine's description.
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(
                || "unknown CPU".to_owned(),
                |(_, name)| name.trim().to_owned(),
            );
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |text| text.trim().to_owned());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            kernel,
        }
    }
}
