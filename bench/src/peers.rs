//! Peers in the same run: wsclose next to other servers, measured by the same client,
//! alternating in rounds.
//!
//! Every server is an echo at `/ws` (wsclose: `/ws/echo`, pushing nothing) started on a free
//! port. In each round every server gets, in a rotated order so no one always goes first:
//! * `handshakes` sequential close handshakes from a fresh connection each, once the server
//!   has answered a Ping on it and it has idled for `--close-idle-ms` (p50 and p99 of Close
//!   sent → Close received), interleaved over
//!   all the servers, running at once, one handshake with each in turn
//!   ([`crate::latency::close_handshakes_interleaved`]);
//! * the CPU per idle connection-second, beside the bare loop: fresh processes of the server
//!   and of the bare loop, each with `idle` connections from its own client process (a Ping a
//!   second each: the peers send no keepalive of their own), watched over the same window;
//!   the figure against the floor is the median of each round's ratio (`cpu_beside`);
//! * `idle` idle connections on a fresh process, pinging the same way: the server's RSS
//!   growth divided by them, then a close storm in which all of them send Close at once
//!   ([`crate::scale::run`], as the scale phase).
//!
//! The peers are built and installed by `make bench` (versions pinned in the Makefile) under
//! `target/peers/`; a peer that is missing is skipped and said so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use wsclose_e2e::peers::{self, Peer};
use wsclose_e2e::ServerProcess;

use crate::client::{ClientProcess, Command, Event};
use crate::report::{Figure, Report};
use crate::scale::ScalePlan;
use crate::stats::Samples;
use crate::{Options, TARGET_AXUM_DEMO_RATIO, TARGET_FLOOR_RATIO, TARGET_FLOOR_RSS_RATIO};

/// One server to measure.
pub struct PeerSpec {
    /// Its name in the table and the JSON.
    pub name: &'static str,
    /// The command, without the listen address (appended as the last argument).
    pub command: Vec<String>,
    /// Environment added to the command.
    pub env: Vec<(String, String)>,
    /// The echo endpoint.
    pub path: &'static str,
}

/// What one server measured: the median over rounds of each figure, and each round's value.
#[derive(Debug, Clone, Serialize)]
pub struct PeerResult {
    /// The server.
    pub name: &'static str,
    /// Median over rounds of each round's close-handshake p50, in ms.
    pub close_p50_ms: f64,
    /// Median over rounds of each round's p99, in ms.
    pub close_p99_ms: f64,
    /// Median over rounds of the RSS growth per idle connection, in KiB.
    pub rss_per_conn_kib: f64,
    /// Median over rounds of the close storm: every idle connection sends Close at once, until
    /// the last server Close arrives, in ms.
    pub storm_ms: f64,
    /// Median over rounds of the server's CPU time per idle connection-second, with a client
    /// Ping on every connection every second, in µs: measured beside a bare loop under the same
    /// load, over the same window (`cpu_beside`), when the bare loop is installed, and otherwise
    /// alone, in the window of [`crate::scale::run`].
    pub cpu_us_per_conn_s: f64,
    /// Median over rounds of the server's CPU per idle connection-second over the bare loop's
    /// beside it in the same window: the machine's drift between windows cancels out of it.
    /// `None` when the bare loop was not there to run beside it.
    pub cpu_floor_ratio: Option<f64>,
    /// Storm handshakes that were clean (code 1000 echoed, then TCP closed), over all rounds.
    pub storm_clean: usize,
    /// Storm handshakes attempted, over all rounds.
    pub storm_connections: usize,
    /// Each round's p50, in ms.
    pub close_p50_rounds_ms: Vec<f64>,
    /// Each round's p99, in ms.
    pub close_p99_rounds_ms: Vec<f64>,
    /// Each round's RSS per idle connection, in KiB.
    pub rss_rounds_kib: Vec<f64>,
    /// Each round's close storm, in ms.
    pub storm_rounds_ms: Vec<f64>,
    /// Each round's CPU per idle connection-second, in µs.
    pub cpu_rounds_us: Vec<f64>,
    /// Each round's CPU over the bare loop's beside it (see `cpu_floor_ratio`).
    pub cpu_floor_rounds: Vec<f64>,
}

/// The servers that are installed: wsclose first, then the peers. Returns the missing ones
/// with the reason.
pub fn available(wsclose: &Path) -> (Vec<PeerSpec>, Vec<String>) {
    let bench_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let text = |path: PathBuf| path.display().to_string();
    let mut found = vec![PeerSpec {
        name: DEMO,
        command: vec![
            text(wsclose.to_path_buf()),
            "--max-connections".into(),
            "100000".into(),
            "--addr".into(),
        ],
        env: vec![("RUST_LOG".into(), "warn".into())],
        path: "/ws/echo",
    }];
    let mut missing = Vec::new();
    let bare = bench_dir.join("bare-peer");
    let axum_program = bench_dir.join("axum-program");
    let warp_example = bench_dir.join("examples/warp");
    let candidates = [
        Peer {
            name: AXUM,
            needs: axum_program.clone(),
            command: vec![text(axum_program.clone())],
            env: Vec::new(),
            path: "/ws",
        },
        Peer {
            name: AXUM_DEFAULTS,
            needs: axum_program.clone(),
            command: vec![text(axum_program), "--tungstenite-defaults".into()],
            env: Vec::new(),
            path: "/ws",
        },
        Peer {
            name: WARP,
            needs: warp_example.clone(),
            command: vec![text(warp_example)],
            env: Vec::new(),
            path: "/ws",
        },
        Peer {
            name: FLOOR,
            needs: bare.clone(),
            command: vec![text(bare)],
            env: Vec::new(),
            path: "/ws",
        },
        peers::gorilla(),
        peers::node_ws(),
        peers::python_websockets(),
    ];
    for peer in candidates {
        if peer.installed() {
            found.push(PeerSpec {
                name: peer.name,
                command: peer.command,
                env: peer.env,
                path: peer.path,
            });
        } else {
            missing.push(format!(
                "{}: {} missing (make bench installs it)",
                peer.name,
                peer.needs.display()
            ));
        }
    }
    (found, missing)
}

/// The sizes of one peers run.
#[derive(Debug, Clone)]
pub struct PeerPlan {
    /// Rounds over every server.
    pub rounds: usize,
    /// Sequential close handshakes per server per round.
    pub handshakes: usize,
    /// Idle connections per server per round, for RSS, CPU and the storm.
    pub idle: usize,
    /// How long CPU time is watched while they idle.
    pub cpu_window: Duration,
    /// How long each timed connection idles between its Pong and its Close.
    pub close_idle: Duration,
    /// Where each server's stderr goes (`peer-NAME.log`, the last round's).
    pub logs: PathBuf,
}

/// How often every idle client pings: the peers send no keepalive of their own, so the client
/// gives every server the same work.
const CLIENT_PING: Duration = Duration::from_secs(1);

/// Runs `plan.rounds` rounds over every server in `specs`.
pub async fn run(specs: &[PeerSpec], plan: &PeerPlan) -> anyhow::Result<Vec<PeerResult>> {
    let scale_plan = ScalePlan {
        connections: plan.idle,
        openers: 8,
        settle: Duration::from_millis(500),
        cpu_window: plan.cpu_window,
        wsclose_metrics: false,
        client_ping: Some(CLIENT_PING),
    };
    let mut rounds: Vec<Vec<Round>> = specs.iter().map(|_| Vec::new()).collect();
    // The yardstick for every server's CPU, the bare loop included (its own ratio shows how
    // well two servers under the same load agree).
    let floor = specs.iter().find(|spec| spec.name == FLOOR);
    for round in 0..plan.rounds {
        eprintln!("bench: [peers] round {}/{}", round + 1, plan.rounds);
        let order = crate::latency::rotated(round, specs.len());
        // The close handshakes: every server at once, one handshake with each in turn.
        let mut servers = Vec::new();
        for &index in &order {
            servers.push(spawn(&specs[index]).await?);
        }
        let urls: Vec<String> = order
            .iter()
            .zip(&servers)
            .map(|(&index, server)| server.ws_url(specs[index].path))
            .collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let handshakes =
            crate::latency::close_handshakes_interleaved(&urls, plan.handshakes, plan.close_idle)
                .await
                .context("close handshakes");
        drop(servers);
        let mut handshakes = handshakes?.into_iter();
        // Then the idle connections and the storm, one server at a time, each on a fresh
        // process: memory freed by an earlier test stays in the allocator and would hide the
        // next one's growth.
        for &index in &order {
            let spec = &specs[index];
            // The CPU first, beside the bare loop, on fresh processes of both.
            let cpu = match floor {
                Some(floor) => Some(
                    cpu_beside(spec, floor, plan, round % 2 == 1)
                        .await
                        .with_context(|| format!("{}: CPU beside the bare loop", spec.name))?,
                ),
                None => None,
            };
            let server = spawn(spec).await?;
            let url = server.ws_url(spec.path);
            let idle = crate::scale::run(&server, &url, &scale_plan).await;
            let log = format!("peer-{}.log", spec.name.replace(['/', ' ', '(', ')'], "_"));
            crate::save_log(&server, &plan.logs.join(log));
            let idle = idle
                .context("idle connections and storm")
                .with_context(|| spec.name.to_owned())?;
            let timings = handshakes.next().unwrap_or_default();
            let samples = Samples::from_durations(timings.iter().map(|t| t.to_close_frame));
            rounds[index].push(Round {
                p50_ms: samples.quantile(0.5),
                p99_ms: samples.quantile(0.99),
                rss_kib: idle.rss_per_connection_kib,
                storm_ms: idle.storm.all_handshakes_ms,
                cpu_us: cpu.map_or(idle.cpu_us_per_connection_s, |cpu| cpu.ours_us),
                cpu_floor_ratio: cpu.map(|cpu| cpu.ours_us / cpu.bare_us),
                storm_clean: idle.storm.clean,
                storm_connections: idle.storm.connections,
            });
            drop(server);
        }
    }
    Ok(specs
        .iter()
        .zip(rounds)
        .map(|(spec, rounds)| {
            let each = |figure: fn(&Round) -> f64| rounds.iter().map(figure).collect::<Vec<_>>();
            let (p50, p99, rss) = (each(|r| r.p50_ms), each(|r| r.p99_ms), each(|r| r.rss_kib));
            let (storm, cpu) = (each(|r| r.storm_ms), each(|r| r.cpu_us));
            let cpu_floor: Vec<f64> = rounds.iter().filter_map(|r| r.cpu_floor_ratio).collect();
            PeerResult {
                name: spec.name,
                close_p50_ms: median(&p50),
                close_p99_ms: median(&p99),
                rss_per_conn_kib: median(&rss),
                storm_ms: median(&storm),
                cpu_us_per_conn_s: median(&cpu),
                cpu_floor_ratio: (!cpu_floor.is_empty()).then(|| median(&cpu_floor)),
                storm_clean: rounds.iter().map(|r| r.storm_clean).sum(),
                storm_connections: rounds.iter().map(|r| r.storm_connections).sum(),
                close_p50_rounds_ms: p50,
                close_p99_rounds_ms: p99,
                rss_rounds_kib: rss,
                storm_rounds_ms: storm,
                cpu_rounds_us: cpu,
                cpu_floor_rounds: cpu_floor,
            }
        })
        .collect())
}

/// How long a client process may take to open its connections.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the connections of [`cpu_beside`] idle before its window: past the ramp's
/// handshakes, and well before the wsclose servers' first keepalive Ping
/// (`wsclose::DEFAULT_PING_INTERVAL`, 25 s after each connection opened).
const CPU_SETTLE: Duration = Duration::from_secs(2);

/// One server's CPU per idle connection-second and the bare loop's, in µs.
#[derive(Debug, Clone, Copy)]
struct CpuBeside {
    ours_us: f64,
    bare_us: f64,
}

/// Fresh processes of `spec`'s server and of the bare loop (`floor`), each given `plan.idle`
/// connections by its own client process (a Ping a second each, [`CLIENT_PING`]), watched over
/// the same window: whatever else the machine does then weighs on both alike. The bare loop's
/// process and client start first when `bare_first`.
async fn cpu_beside(
    spec: &PeerSpec,
    floor: &PeerSpec,
    plan: &PeerPlan,
    bare_first: bool,
) -> anyhow::Result<CpuBeside> {
    let exe = std::env::current_exe().context("the bench's own path")?;
    let mut loaded = Vec::new();
    // Which of the two starts first alternates from round to round (`bare_first`): a bare loop
    // beside another bare loop measured 0.96× when it started first, and 1.00× second.
    let order = if bare_first {
        [floor, spec]
    } else {
        [spec, floor]
    };
    for spec in order {
        let server = spawn(spec).await?;
        let mut client = ClientProcess::spawn(&exe)?;
        client
            .send(&Command::Open {
                url: server.ws_url(spec.path),
                addr: server.addr(),
                count: plan.idle,
                sources: vec![std::net::Ipv4Addr::LOCALHOST],
                ping_ms: Some(CLIENT_PING.as_millis() as u64),
            })
            .await?;
        loaded.push((server, client));
    }
    let mut opened = Vec::new();
    for (server, client) in &mut loaded {
        let Event::Opened {
            opened: count,
            first_error,
            ..
        } = client.recv(OPEN_TIMEOUT).await?
        else {
            anyhow::bail!("a client process did not say how many connections opened");
        };
        anyhow::ensure!(
            count > 0,
            "no connection to {} opened: {}",
            server.addr(),
            first_error.unwrap_or_default()
        );
        opened.push(count as f64);
    }
    tokio::time::sleep(CPU_SETTLE).await;
    let cpu = |loaded: &[(ServerProcess, ClientProcess)]| {
        loaded
            .iter()
            .map(|(server, _)| server.cpu_time())
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let before = cpu(&loaded)?;
    let started = std::time::Instant::now();
    tokio::time::sleep(plan.cpu_window).await;
    let after = cpu(&loaded)?;
    let window = started.elapsed().as_secs_f64();
    let us = |i: usize| (after[i] - before[i]).as_secs_f64() * 1e6 / window / opened[i];
    let (ours, bare) = if bare_first { (1, 0) } else { (0, 1) };
    Ok(CpuBeside {
        ours_us: us(ours),
        bare_us: us(bare),
    })
}

/// A fresh process of `spec`'s server on a free port.
async fn spawn(spec: &PeerSpec) -> anyhow::Result<ServerProcess> {
    let mut command = tokio::process::Command::new(&spec.command[0]);
    command
        .args(&spec.command[1..])
        .arg("127.0.0.1:0")
        .envs(spec.env.iter().map(|(key, value)| (key, value)));
    ServerProcess::spawn(command)
        .await
        .with_context(|| format!("start {}", spec.name))
}

/// One server's figures in one round.
struct Round {
    p50_ms: f64,
    p99_ms: f64,
    rss_kib: f64,
    storm_ms: f64,
    cpu_us: f64,
    /// `cpu_us` over the bare loop's beside it, when it ran.
    cpu_floor_ratio: Option<f64>,
    storm_clean: usize,
    storm_connections: usize,
}

/// The median of `values`: [`Samples::quantile`] at 0.5, so the lower middle one for an
/// even count.
pub fn median(values: &[f64]) -> f64 {
    Samples::from_ms(values.iter().copied()).quantile(0.5)
}

/// `min–max` of `values`, with `digits` decimals.
pub fn spread(values: &[f64], digits: usize) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.digits$}–{max:.digits$}")
}

/// The peers table: each server's medians and spreads, and wsclose's ratio to it.
pub fn table(results: &[PeerResult], rounds: usize) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::ASCII_MARKDOWN)
        .set_header([
            "server".to_owned(),
            format!("close p50, ms (median, min–max of {rounds})"),
            "close p99, ms".to_owned(),
            "RSS per idle conn, KiB".to_owned(),
            "close storm, ms".to_owned(),
            "CPU, µs per conn-s".to_owned(),
            "CPU ÷ bare loop beside it".to_owned(),
            "storm clean".to_owned(),
            "wsclose / this: p50, RSS, storm, CPU".to_owned(),
        ]);
    let Some(ours) = results.first() else {
        return String::new();
    };
    for result in results {
        let cell = |value: f64, rounds: &[f64], digits: usize| {
            format!("{value:.digits$} ({})", spread(rounds, digits))
        };
        table.add_row([
            result.name.to_owned(),
            cell(result.close_p50_ms, &result.close_p50_rounds_ms, 3),
            cell(result.close_p99_ms, &result.close_p99_rounds_ms, 3),
            cell(result.rss_per_conn_kib, &result.rss_rounds_kib, 2),
            cell(result.storm_ms, &result.storm_rounds_ms, 0),
            cell(result.cpu_us_per_conn_s, &result.cpu_rounds_us, 1),
            match result.cpu_floor_ratio {
                Some(ratio) => cell(ratio, &result.cpu_floor_rounds, 2),
                None => "–".to_owned(),
            },
            format!("{}/{}", result.storm_clean, result.storm_connections),
            [
                ratio(ours.close_p50_ms, result.close_p50_ms),
                ratio(ours.rss_per_conn_kib, result.rss_per_conn_kib),
                ratio(ours.storm_ms, result.storm_ms),
                ratio(ours.cpu_us_per_conn_s, result.cpu_us_per_conn_s),
            ]
            .join(", "),
        ]);
    }
    table.to_string()
}

/// `ours / theirs` as `1.23×`, or `–` when `theirs` is not a positive figure.
fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 {
        format!("{:.2}×", ours / theirs)
    } else {
        "–".to_owned()
    }
}

/// Phase 5: wsclose next to the peers that are installed, alternating in rounds, on one
/// current-thread runtime (as the latency phases, so the client's timing is the same).
pub fn phase(options: &Options, report: &mut Report) -> Vec<PeerResult> {
    if !options.peers {
        return Vec::new();
    }
    let (specs, missing) = available(&options.server);
    for why in &missing {
        eprintln!("bench: [peers] skipped {why}");
    }
    report.details.peers_skipped = Some(missing.clone());
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
    let plan = PeerPlan {
        rounds: options.rounds,
        handshakes: options.peer_handshakes,
        idle: options.peer_idle,
        cpu_window: Duration::from_secs(if options.quick { 1 } else { 5 }),
        close_idle: options.close_idle,
        logs: options.out.clone(),
    };
    let results = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a tokio runtime")
        .and_then(|runtime| runtime.block_on(run(&specs, &plan)));
    match results {
        Ok(results) => {
            report.figures.extend(floor_figures(&results));
            results
        }
        Err(error) => {
            report.error("peers", "peers phase", &error, "");
            Vec::new()
        }
    }
}

/// The demo server's name in [`available`].
pub const DEMO: &str = "wsclose (demo server)";
/// The README's axum program, with its `wsclose::axum::recommended` line (`axum-program`).
pub const AXUM: &str = "wsclose (axum, recommended config)";
/// The README's axum program without that line: tungstenite's defaults.
pub const AXUM_DEFAULTS: &str = "wsclose (axum, defaults)";
/// `wsclose/examples/warp.rs`.
pub const WARP: &str = "wsclose (warp example)";
/// The bare loop's name in [`available`], the floor.
pub const FLOOR: &str = "tokio-tungstenite (bare)";
/// gorilla/websocket's name in [`available`].
pub const GORILLA: &str = "gorilla/websocket";

/// The demo server and the README's axum program against the floor (close p50 and CPU; RSS
/// for the demo server), the axum program against the demo server (RSS and close p50), and the
/// demo server against gorilla (the storm): medians over the rounds. A figure is left out when
/// one of its two servers was not measured.
pub fn floor_figures(results: &[PeerResult]) -> Vec<Figure> {
    let find = |name: &str| results.iter().find(|result| result.name == name);
    let mut figures = Vec::new();
    let mut against =
        |key, (what, value, paired): Measure, ours: &PeerResult, theirs: &PeerResult, at_most| {
            let (ours_value, theirs_value) = (value(ours), value(theirs));
            // A figure measured beside the bare loop is the median of each round's ratio;
            // the others are the ratio of the medians.
            let (ratio, how) = match paired.and_then(|paired| paired(ours)) {
                Some(ratio) => (
                    ratio,
                    "median of each round's ratio to the bare loop beside it",
                ),
                None => (ours_value / theirs_value, "median of rounds"),
            };
            figures.push(Figure::checked(
                key,
                format!("{what}: {} / {} ({how})", ours.name, theirs.name),
                ratio,
                "×",
                format!("{ratio:.2}× ({ours_value:.3} / {theirs_value:.3})"),
                format!("≤ {at_most}×"),
                ratio <= at_most,
            ));
        };
    if let (Some(demo), Some(bare)) = (find(DEMO), find(FLOOR)) {
        against("floor_rss_ratio", RSS, demo, bare, TARGET_FLOOR_RSS_RATIO);
        against(
            "floor_close_p50_ratio",
            CLOSE_P50,
            demo,
            bare,
            TARGET_FLOOR_RATIO,
        );
        against("floor_cpu_ratio", CPU, demo, bare, TARGET_FLOOR_RATIO);
    }
    if let (Some(axum), Some(bare)) = (find(AXUM), find(FLOOR)) {
        against(
            "axum_floor_close_p50_ratio",
            CLOSE_P50,
            axum,
            bare,
            TARGET_FLOOR_RATIO,
        );
        against("axum_floor_cpu_ratio", CPU, axum, bare, TARGET_FLOOR_RATIO);
    }
    if let (Some(axum), Some(demo)) = (find(AXUM), find(DEMO)) {
        against(
            "axum_demo_rss_ratio",
            RSS,
            axum,
            demo,
            TARGET_AXUM_DEMO_RATIO,
        );
        against(
            "axum_demo_close_p50_ratio",
            CLOSE_P50,
            axum,
            demo,
            TARGET_AXUM_DEMO_RATIO,
        );
    }
    if let (Some(demo), Some(gorilla)) = (find(DEMO), find(GORILLA)) {
        against("storm_vs_gorilla", STORM, demo, gorilla, 1.0);
    }
    figures
}

/// A median [`floor_figures`] compares: the words that name it in the report, its value, and
/// for a figure measured beside the bare loop, the median of each round's ratio to it.
type Measure = (
    &'static str,
    fn(&PeerResult) -> f64,
    Option<fn(&PeerResult) -> Option<f64>>,
);
const RSS: Measure = (
    "RSS per idle connection",
    |result| result.rss_per_conn_kib,
    None,
);
const CLOSE_P50: Measure = ("close p50", |result| result.close_p50_ms, None);
const CPU: Measure = (
    "CPU per idle connection-second",
    |result| result.cpu_us_per_conn_s,
    Some(|result| result.cpu_floor_ratio),
);
const STORM: Measure = ("close storm", |result| result.storm_ms, None);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Verdict;

    /// A result with these medians (close p50 ms, RSS KiB, storm ms, CPU µs).
    fn result(name: &'static str, close: f64, rss: f64, storm: f64, cpu: f64) -> PeerResult {
        PeerResult {
            name,
            close_p50_ms: close,
            close_p99_ms: close,
            rss_per_conn_kib: rss,
            storm_ms: storm,
            cpu_us_per_conn_s: cpu,
            cpu_floor_ratio: None,
            storm_clean: 1,
            storm_connections: 1,
            close_p50_rounds_ms: vec![close],
            close_p99_rounds_ms: vec![close],
            rss_rounds_kib: vec![rss],
            storm_rounds_ms: vec![storm],
            cpu_rounds_us: vec![cpu],
            cpu_floor_rounds: Vec::new(),
        }
    }

    #[test]
    fn wsclose_is_held_to_the_floor_and_to_gorilla() {
        let results = [
            result(DEMO, 0.045, 5.6, 40.0, 23.0),
            result(FLOOR, 0.040, 5.0, 45.0, 20.0),
            result(GORILLA, 0.050, 21.0, 39.0, 60.0),
            result(AXUM, 0.049, 6.2, 40.0, 23.1),
        ];
        let verdicts: Vec<(&str, Verdict)> = floor_figures(&results)
            .iter()
            .map(|figure| (figure.key, figure.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [
                // 1.12× against 1.1×; 1.125× and exactly 1.15× against 1.15×; 40 ms against 39.
                ("floor_rss_ratio", Verdict::Miss),
                ("floor_close_p50_ratio", Verdict::Pass),
                ("floor_cpu_ratio", Verdict::Pass),
                // 1.225× and 1.155× against 1.15×.
                ("axum_floor_close_p50_ratio", Verdict::Miss),
                ("axum_floor_cpu_ratio", Verdict::Miss),
                // 1.107× and 1.089× against 1.1×.
                ("axum_demo_rss_ratio", Verdict::Miss),
                ("axum_demo_close_p50_ratio", Verdict::Pass),
                ("storm_vs_gorilla", Verdict::Miss),
            ]
        );
        // Measured beside the bare loop, the median of each round's ratio is the figure, not the
        // ratio of the medians (1.15× above).
        let mut paired = results.clone();
        paired[0].cpu_floor_ratio = Some(1.16);
        paired[3].cpu_floor_ratio = Some(1.10);
        let cpu: Vec<(&str, Verdict)> = floor_figures(&paired)
            .iter()
            .filter(|figure| figure.key.ends_with("cpu_ratio"))
            .map(|figure| (figure.key, figure.verdict))
            .collect();
        assert_eq!(
            cpu,
            [
                ("floor_cpu_ratio", Verdict::Miss),
                ("axum_floor_cpu_ratio", Verdict::Pass),
            ]
        );
        // Without the peers there is nothing to compare.
        assert!(floor_figures(&results[..1]).is_empty());
    }
}
