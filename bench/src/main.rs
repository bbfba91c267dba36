//! `bench`: how fast does wsclose close, how close is that to the physical limit, and what
//! does a connection cost? Run by `make bench`:
//!
//! ```text
//! cargo build --release -p wsclose-server
//! cargo run --release -p wsclose-e2e --bin bench -- [--quick] [--connections N] …
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
//!    tokio-tungstenite; send Close → the server's Close, and → TCP EOF
//!    ([`latency::close_handshakes`]).
//! 3. **Browser**: the wasm probe's `measureClose` in headless Chromium via WebDriver
//!    ([`browser::run`]). Skipped, with the reason printed, without chromedriver or a built
//!    `target/www/pkg`.
//! 4. **Scale**: a fresh server, N connections to `/ws/drain` with pushes and keepalive every
//!    second; RSS and CPU per connection from `/proc`, then a close storm ([`scale::run`]).
//!
//! # Layout
//! One module per phase: `server.rs` (the child process, and `/proc` through procfs),
//! `latency.rs`, `browser.rs` (Chromium through `wsclose_check::browser::Driver` and fantoccini),
//! `scale.rs`,
//! `stats.rs` (percentiles) and `report.rs` (table, JSON, plots).

mod browser;
mod latency;
mod peers;
mod report;
mod scale;
mod server;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use plotters::style::RGBColor;
use serde_json::json;

use report::{ms, CdfSeries, Figure, Verdict};
use server::Server;
use stats::Samples;

/// Close-handshake p50 target, ms.
const TARGET_CLOSE_P50_MS: f64 = 0.25;
/// Close-handshake p50 must be at most this many TCP round trips.
const TARGET_CLOSE_RTT_RATIO: f64 = 5.0;
/// Browser close p50 target, ms.
const TARGET_BROWSER_P50_MS: f64 = 1.0;
/// RSS per idle connection target, KiB.
const TARGET_RSS_KIB: f64 = 8.0;
/// Close storm target (for 10,000 connections), ms.
const TARGET_STORM_MS: f64 = 500.0;

/// Push and ping period of the scale phase: both run once a second on every connection.
const SCALE_PERIOD: &str = "1s";

const USAGE: &str = "\
usage: bench [--quick] [--connections N] [--handshakes N] [--rtt-iterations N]
             [--browser | --no-browser] [--browser-probes N] [--out DIR] [--server PATH]
             [--no-peers] [--rounds N] [--peer-handshakes N] [--peer-idle N]

  --quick              smoke run: 200 connections, 100 handshakes, 10 browser probes
  --connections N      concurrent connections in the scale phase   [10000]
  --handshakes N       sequential close handshakes                 [1000]
  --rtt-iterations N   loopback TCP round trips                    [20000]
  --browser-probes N   close probes in headless Chromium           [100]
  --no-browser         skip the browser phase (on by default; skipped anyway when
                       /usr/bin/chromedriver or target/www/pkg is missing)
  --out DIR            where results.json and the plots go         [target/bench]
  --server PATH        the server binary        [target/release/wsclose-server]
  --no-peers           skip the peers (on by default; a peer not installed is skipped)
  --rounds N           rounds over wsclose and the peers, alternating   [5]
  --peer-handshakes N  close handshakes per server per round            [200]
  --peer-idle N        idle connections per server per round (RSS)      [1000]";

/// The command line.
#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    connections: usize,
    handshakes: usize,
    rtt_iterations: usize,
    browser: bool,
    browser_probes: usize,
    out: PathBuf,
    server: PathBuf,
    peers: bool,
    rounds: usize,
    peer_handshakes: usize,
    peer_idle: usize,
}

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Option<Options>> {
        let args: Vec<String> = args.into_iter().collect();
        let quick = args.iter().any(|arg| arg == "--quick");
        let mut options = Options {
            quick,
            connections: if quick { 200 } else { 10_000 },
            handshakes: if quick { 100 } else { 1_000 },
            rtt_iterations: if quick { 2_000 } else { 20_000 },
            browser: true,
            browser_probes: if quick { 10 } else { 100 },
            out: server::target_dir().join("bench"),
            server: server::default_binary(),
            peers: true,
            rounds: if quick { 2 } else { 5 },
            peer_handshakes: if quick { 50 } else { 200 },
            peer_idle: if quick { 100 } else { 1_000 },
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let mut value = || -> anyhow::Result<String> {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .with_context(|| format!("{flag} needs a value"))
            };
            let number = |text: String| -> anyhow::Result<usize> {
                text.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{flag} wants a positive number, not {text:?}"))
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--quick" => {}
                "--connections" => options.connections = number(value()?)?,
                "--handshakes" => options.handshakes = number(value()?)?,
                "--rtt-iterations" => options.rtt_iterations = number(value()?)?,
                "--browser-probes" => options.browser_probes = number(value()?)?,
                "--browser" => options.browser = true,
                "--no-browser" => options.browser = false,
                "--out" => options.out = PathBuf::from(value()?),
                "--server" => options.server = PathBuf::from(value()?),
                "--no-peers" => options.peers = false,
                "--rounds" => options.rounds = number(value()?)?,
                "--peer-handshakes" => options.peer_handshakes = number(value()?)?,
                "--peer-idle" => options.peer_idle = number(value()?)?,
                other => bail!("unknown argument {other:?}"),
            }
        }
        Ok(Some(options))
    }
}

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("bench: {error:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("bench: {errors} measurement(s) failed; see ERROR rows above");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Everything measured so far: the table rows, the details for `results.json`, and the
/// samples for the CDF plot.
#[derive(Default)]
struct Report {
    figures: Vec<Figure>,
    details: serde_json::Map<String, serde_json::Value>,
    rtt: Samples,
    rtt_threads: Samples,
    close: Samples,
    close_to_fin: Samples,
    browser: Samples,
    storm: Samples,
    rss_curve: Vec<(usize, u64)>,
}

impl Report {
    fn error(&mut self, key: &'static str, name: &str, error: &anyhow::Error, target: &str) {
        self.figures.push(Figure::missing(
            key,
            name,
            Verdict::Error,
            format!("{error:#}"),
            target,
        ));
    }
}

/// Runs every phase; returns how many measurements failed.
fn run(options: &Options) -> anyhow::Result<usize> {
    let started = Instant::now();
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("create {}", options.out.display()))?;
    // The client holds as many sockets as the server; the server raises its own limit.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).context("raise RLIMIT_NOFILE")?;
    let needed = options.connections as u64 + 256;
    if nofile < needed {
        bail!(
            "the open-file limit is {nofile}, {needed} are needed for {} connections \
             (raise the hard limit, or pass a smaller --connections)",
            options.connections
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
    latency_phases(options, &mut report);
    scale_phase(options, &mut report);
    let peer_results = peers_phase(options, &mut report);

    let cdf_path = options.out.join("close_latency_cdf.svg");
    let rss_path = options.out.join("rss_vs_connections.svg");
    plot(options, &report, &cdf_path, &rss_path);

    let errors = report
        .figures
        .iter()
        .filter(|figure| figure.verdict == Verdict::Error)
        .count();
    let elapsed = started.elapsed().as_secs_f64();
    let results = json!({
        "machine": machine,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "quick": options.quick,
        "elapsed_s": elapsed,
        "server_args": server_args(),
        "targets": {
            "close_handshake_p50_ms": TARGET_CLOSE_P50_MS,
            "close_to_rtt_ratio": TARGET_CLOSE_RTT_RATIO,
            "browser_close_p50_ms": TARGET_BROWSER_P50_MS,
            "rss_per_connection_kib": TARGET_RSS_KIB,
            "close_storm_ms": TARGET_STORM_MS,
            "close_storm_clean_pct": 100.0,
        },
        "figures": report.figures,
        "details": report.details,
        "peers": peer_results,
    });
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

/// Phase 5: wsclose next to the peers that are installed, alternating in rounds.
fn peers_phase(options: &Options, report: &mut Report) -> Vec<peers::PeerResult> {
    if !options.peers {
        return Vec::new();
    }
    let (specs, missing) = peers::available(&options.server, &server::target_dir());
    for why in &missing {
        eprintln!("bench: [peers] skipped {why}");
    }
    report
        .details
        .insert("peers_skipped".into(), json!(missing));
    eprintln!(
        "bench: [peers] {} servers, {} rounds: {}",
        specs.len(),
        options.rounds,
        specs
            .iter()
            .map(|spec| spec.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            report.error("peers", "peers phase", &error.into(), "");
            return Vec::new();
        }
    };
    match peers::run(
        &runtime,
        &specs,
        options.rounds,
        options.peer_handshakes,
        options.peer_idle,
        &options.out,
    ) {
        Ok(results) => results,
        Err(error) => {
            report.error("peers", "peers phase", &error, "");
            Vec::new()
        }
    }
}

/// Phases 1–3: TCP RTT, close handshakes and the browser, on one current-thread runtime and
/// one server (these connections turn pushing off with `push_ms=0`).
fn latency_phases(options: &Options, report: &mut Report) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return report.error("runtime", "tokio runtime", &error.into(), ""),
    };

    // 1. The physical limit.
    eprintln!(
        "bench: [1/4] loopback TCP RTT, {} round trips, echo on the same thread and on another",
        options.rtt_iterations
    );
    let rtt_p50 = match runtime.block_on(latency::tcp_round_trips(
        options.rtt_iterations,
        latency::Peer::SameThread,
    )) {
        Ok(rtt) => {
            report.rtt = Samples::from_durations(rtt);
            let summary = report.rtt.summary();
            report.figures.push(Figure::info(
                "tcp_rtt_p50",
                "loopback TCP RTT p50 (2-byte ping-pong, nodelay)",
                Some(summary.p50_ms),
                "ms",
                ms(summary.p50_ms),
            ));
            report.figures.push(Figure::info(
                "tcp_rtt_p99",
                "loopback TCP RTT p99",
                Some(summary.p99_ms),
                "ms",
                ms(summary.p99_ms),
            ));
            report.details.insert("tcp_rtt".into(), json!(summary));
            Some(summary.p50_ms)
        }
        Err(error) => {
            report.error("tcp_rtt_p50", "loopback TCP RTT p50", &error, "");
            None
        }
    };
    match runtime.block_on(latency::tcp_round_trips(
        options.rtt_iterations,
        latency::Peer::OtherThread,
    )) {
        Ok(rtt) => {
            report.rtt_threads = Samples::from_durations(rtt);
            let summary = report.rtt_threads.summary();
            report.figures.push(Figure::info(
                "tcp_rtt_threads_p50",
                "loopback TCP RTT p50, echo on another thread",
                Some(summary.p50_ms),
                "ms",
                format!("{} (p99 {})", ms(summary.p50_ms), ms(summary.p99_ms)),
            ));
            report
                .details
                .insert("tcp_rtt_other_thread".into(), json!(summary));
        }
        Err(error) => report.error(
            "tcp_rtt_threads_p50",
            "loopback TCP RTT p50, echo on another thread",
            &error,
            "",
        ),
    }

    let close_target = format!("≤ {TARGET_CLOSE_P50_MS} ms");
    let server = match Server::start(
        &options.server,
        &server_args(),
        &options.out.join("server-latency.log"),
    ) {
        Ok(server) => server,
        Err(error) => {
            let error = error.context("start the server");
            report.error(
                "close_handshake_p50",
                "close handshake p50",
                &error,
                &close_target,
            );
            let target = format!("≤ {TARGET_BROWSER_P50_MS} ms");
            report.error("browser_close_p50", "browser close p50", &error, &target);
            return;
        }
    };

    // 2. Native close handshakes.
    eprintln!(
        "bench: [2/4] close handshake, {} sequential on /ws/drain?push_ms=0",
        options.handshakes
    );
    let url = server.ws_url("/ws/drain?push_ms=0");
    match runtime.block_on(latency::close_handshakes(&url, options.handshakes)) {
        Ok(timings) => {
            report.close = Samples::from_durations(timings.iter().map(|t| t.to_close_frame));
            report.close_to_fin = Samples::from_durations(timings.iter().map(|t| t.to_eof));
            let close = report.close.summary();
            let fin = report.close_to_fin.summary();
            report.figures.push(Figure::checked(
                "close_handshake_p50",
                format!(
                    "close handshake p50 ({} sequential, Close → Close)",
                    close.count
                ),
                close.p50_ms,
                "ms",
                ms(close.p50_ms),
                close_target,
                close.p50_ms <= TARGET_CLOSE_P50_MS,
            ));
            if let Some(rtt_p50) = rtt_p50 {
                let ratio = close.p50_ms / rtt_p50;
                report.figures.push(Figure::checked(
                    "close_to_rtt_ratio",
                    "close handshake p50 / TCP RTT p50",
                    ratio,
                    "x",
                    format!("{ratio:.2}×"),
                    format!("≤ {TARGET_CLOSE_RTT_RATIO}×"),
                    ratio <= TARGET_CLOSE_RTT_RATIO,
                ));
            }
            if !report.rtt_threads.is_empty() {
                // The same exchange with the peer's wake-up included, as the server's is.
                let ratio = close.p50_ms / report.rtt_threads.quantile(0.5);
                report.figures.push(Figure::info(
                    "close_to_rtt_threads_ratio",
                    "close handshake p50 / TCP RTT p50 across threads",
                    Some(ratio),
                    "x",
                    format!("{ratio:.2}×"),
                ));
            }
            for (key, name, value) in [
                ("close_handshake_p90", "close handshake p90", close.p90_ms),
                ("close_handshake_p99", "close handshake p99", close.p99_ms),
                ("close_handshake_max", "close handshake max", close.max_ms),
                (
                    "close_to_fin_p50",
                    "Close sent → server's TCP FIN, p50",
                    fin.p50_ms,
                ),
                (
                    "close_to_fin_p99",
                    "Close sent → server's TCP FIN, p99",
                    fin.p99_ms,
                ),
            ] {
                report
                    .figures
                    .push(Figure::info(key, name, Some(value), "ms", ms(value)));
            }
            report.details.insert(
                "close_handshake".into(),
                json!({
                    "to_close_frame": close,
                    "to_fin": fin,
                    "samples_ms": report.close.sorted_ms(),
                }),
            );
        }
        Err(error) => report.error(
            "close_handshake_p50",
            "close handshake p50",
            &error,
            &close_target,
        ),
    }

    // 3. The browser.
    browser_phase(options, &runtime, &server, &url, report);
}

/// Phase 3: `measureClose` in headless Chromium, on the demo page `server` serves.
fn browser_phase(
    options: &Options,
    runtime: &tokio::runtime::Runtime,
    server: &Server,
    ws_url: &str,
    report: &mut Report,
) {
    let name = "browser close p50 (headless Chromium)";
    let target = format!("≤ {TARGET_BROWSER_P50_MS} ms");
    let ready = if options.browser {
        browser::prerequisites(&www_dir())
    } else {
        Err("--no-browser".to_owned())
    };
    match ready {
        Ok(()) => {}
        Err(why) => {
            eprintln!("bench: [3/4] browser close latency skipped: {why}");
            report.figures.push(Figure::missing(
                "browser_close_p50",
                name,
                Verdict::Skip,
                format!("skipped: {why}"),
                target,
            ));
            report
                .details
                .insert("browser".into(), json!({ "skipped": why }));
            return;
        }
    };
    eprintln!(
        "bench: [3/4] browser close latency, {} probes in headless Chromium",
        options.browser_probes
    );
    let page = format!("http://{}/", server.addr());
    let run = runtime.block_on(browser::run(&page, ws_url, options.browser_probes));
    let run = match run {
        Ok(run) if !run.elapsed_ms.is_empty() => run,
        Ok(run) => {
            let error = anyhow::anyhow!("no probe succeeded: {}", run.errors.join("; "));
            return report.error("browser_close_p50", name, &error, &target);
        }
        Err(error) => return report.error("browser_close_p50", name, &error, &target),
    };
    report.browser = Samples::from_ms(run.elapsed_ms.iter().copied());
    let summary = report.browser.summary();
    report.figures.push(Figure::checked(
        "browser_close_p50",
        format!(
            "browser close p50 (Chromium {}, {} probes)",
            major(&run.version),
            summary.count
        ),
        summary.p50_ms,
        "ms",
        ms(summary.p50_ms),
        target,
        summary.p50_ms <= TARGET_BROWSER_P50_MS,
    ));
    report.figures.push(Figure::info(
        "browser_close_p99",
        "browser close p99",
        Some(summary.p99_ms),
        "ms",
        ms(summary.p99_ms),
    ));
    let clean_pct = 100.0 * run.clean as f64 / run.attempted.max(1) as f64;
    report.figures.push(Figure::checked(
        "browser_clean",
        "browser closes clean (1000, wasClean)",
        clean_pct,
        "%",
        format!("{}/{} ({clean_pct:.0}%)", run.clean, run.attempted),
        "100%",
        run.clean == run.attempted,
    ));
    report.details.insert(
        "browser".into(),
        json!({
            "browser_version": run.version,
            "elapsed_ms": summary,
            "clean": run.clean,
            "attempted": run.attempted,
            "errors": run.errors,
            "samples_ms": report.browser.sorted_ms(),
            "note": "performance.now() is coarsened to 100 µs in pages that are not cross-origin isolated",
        }),
    );
}

/// Phase 4: many connections on a fresh server (so its baseline RSS has seen no connection),
/// on a multi-thread runtime.
fn scale_phase(options: &Options, report: &mut Report) {
    let n = options.connections;
    eprintln!(
        "bench: [4/4] scale: {n} connections to /ws/drain, push and ping every {SCALE_PERIOD}, then a close storm"
    );
    let plan = scale::ScalePlan {
        connections: n,
        openers: 16,
        settle: Duration::from_millis(2_500),
        cpu_window: Duration::from_secs(if options.quick { 3 } else { 5 }),
    };
    let run = Server::start(
        &options.server,
        &server_args(),
        &options.out.join("server-scale.log"),
    )
    .context("start the server")
    .and_then(|server| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(scale::run(&server, &plan))
    });
    let run = match run {
        Ok(run) => run,
        Err(error) => return report.error("rss_per_connection", "scale phase", &error, ""),
    };
    let opened = run.opened;
    if run.failed_to_open > 0 {
        report.figures.push(Figure::missing(
            "connections_opened",
            "connections opened",
            Verdict::Error,
            format!(
                "{opened}/{n}; first error: {}",
                run.first_error.as_deref().unwrap_or("?")
            ),
            format!("{n}"),
        ));
    } else {
        report.figures.push(Figure::info(
            "connections_opened",
            "connections opened",
            Some(opened as f64),
            "",
            format!("{opened} in {:.1} s", run.ramp_s),
        ));
    }
    report.figures.push(Figure::checked(
        "rss_per_connection",
        format!("server RSS per idle connection ({opened})"),
        run.rss_per_connection_kib,
        "KiB",
        format!(
            "{:.2} KiB ({:.1} → {:.1} MiB)",
            run.rss_per_connection_kib,
            run.baseline_rss_kib as f64 / 1024.0,
            run.loaded_rss_kib as f64 / 1024.0
        ),
        format!("≤ {TARGET_RSS_KIB} KiB"),
        run.rss_per_connection_kib <= TARGET_RSS_KIB,
    ));
    report.figures.push(Figure::info(
        "server_cpu_idle",
        format!("server CPU, {opened} idle (push+ping every {SCALE_PERIOD})"),
        Some(run.cpu_ms_per_s),
        "ms/s",
        format!(
            "{:.0} ms/s = {:.1} µs per connection-second",
            run.cpu_ms_per_s, run.cpu_us_per_connection_s
        ),
    ));
    report.figures.push(Figure::info(
        "ticks_received",
        "ticks received by the clients",
        Some(run.ticks_per_s),
        "1/s",
        format!("{:.0}/s", run.ticks_per_s),
    ));
    if run.broken_while_idle > 0 {
        report.figures.push(Figure::missing(
            "broken_while_idle",
            "connections broken while idle",
            Verdict::Error,
            format!("{}", run.broken_while_idle),
            "0",
        ));
    }
    let storm = &run.storm;
    report.figures.push(Figure::checked(
        "close_storm_all",
        format!("close storm: all {} handshakes done", storm.connections),
        storm.all_handshakes_ms,
        "ms",
        format!(
            "{:.0} ms (p50 {:.0}; client done sending at {:.0})",
            storm.all_handshakes_ms, storm.p50_ms, storm.all_sent_ms
        ),
        format!("≤ {TARGET_STORM_MS} ms"),
        storm.all_handshakes_ms <= TARGET_STORM_MS && storm.broken == 0,
    ));
    let clean_pct = 100.0 * storm.clean as f64 / storm.connections.max(1) as f64;
    report.figures.push(Figure::checked(
        "close_storm_clean",
        "close storm: clean (1000 echoed, then FIN)",
        clean_pct,
        "%",
        format!("{}/{} ({clean_pct:.1}%)", storm.clean, storm.connections),
        "100%",
        storm.clean == storm.connections && storm.connections == opened,
    ));
    report.figures.push(Figure::checked(
        "server_active_after_storm",
        "server connections still open after the storm",
        run.server_active_after_storm.unwrap_or(f64::NAN),
        "",
        run.server_active_after_storm
            .map_or("n/a".to_owned(), |active| format!("{active:.0}")),
        "0",
        run.server_active_after_storm == Some(0.0),
    ));
    report.storm = run.storm_samples.clone();
    report.rss_curve = run.rss_curve.clone();
    report.details.insert("scale".into(), json!(run));
}

/// Draws the latency CDF and the RSS curve; a failed plot is reported, not fatal.
fn plot(options: &Options, report: &Report, cdf_path: &Path, rss_path: &Path) {
    let series = [
        CdfSeries {
            label: "loopback TCP RTT (2-byte ping-pong, same thread)".into(),
            samples: &report.rtt,
            color: RGBColor(60, 60, 60),
        },
        CdfSeries {
            label: "loopback TCP RTT, echo on another thread".into(),
            samples: &report.rtt_threads,
            color: RGBColor(170, 170, 170),
        },
        CdfSeries {
            label: "Close sent → server's Close (tokio-tungstenite)".into(),
            samples: &report.close,
            color: RGBColor(31, 119, 180),
        },
        CdfSeries {
            label: "Close sent → server's TCP FIN".into(),
            samples: &report.close_to_fin,
            color: RGBColor(148, 103, 189),
        },
        CdfSeries {
            label: "browser: close() → close event (headless Chromium)".into(),
            samples: &report.browser,
            color: RGBColor(44, 160, 44),
        },
        CdfSeries {
            label: format!(
                "close storm, {} at once: signal → server's Close",
                report.storm.sorted_ms().len()
            ),
            samples: &report.storm,
            color: RGBColor(214, 39, 40),
        },
    ];
    if let Err(error) = report::plot_cdf(cdf_path, "wsclose close latency (CDF)", &series) {
        eprintln!("bench: {error:#}");
    }
    if !report.rss_curve.is_empty() {
        let title = format!(
            "wsclose-server RSS vs open /ws/drain connections ({})",
            options.connections
        );
        if let Err(error) = report::plot_rss(rss_path, &title, &report.rss_curve, TARGET_RSS_KIB) {
            eprintln!("bench: {error:#}");
        }
    }
}

/// Flags of every server the bench starts. Push and ping run every second (the scale phase
/// needs keepalive to actually run); the latency connections turn pushing off with `push_ms=0`.
fn server_args() -> Vec<String> {
    [
        "--max-connections",
        "100000",
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
fn www_dir() -> PathBuf {
    wsclose_e2e::server::workspace_root()
        .join("target")
        .join("www")
}

/// `156.0.8078.79` → `156`.
fn major(version: &str) -> &str {
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
struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
}

impl Machine {
    fn probe() -> Machine {
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
