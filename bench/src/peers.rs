//! Peers in the same run: wsclose next to other servers, measured by the same client,
//! alternating in rounds.
//!
//! Every server is an echo at `/ws` (wsclose: `/ws/echo`, pushing nothing) started on a free
//! port. In each round every server gets, in a rotated order so no one always goes first:
//! * `handshakes` sequential close handshakes from a fresh connection each (p50 and p99 of
//!   Close sent → Close received, [`crate::latency::close_handshakes`]);
//! * `idle` idle connections opened at once, and the server's RSS growth divided by them.
//!
//! The peers are built and installed by `make bench` (versions pinned in the Makefile) under
//! `target/peers/`; a peer that is missing is skipped and said so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::server::Server;
use crate::stats::Samples;

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

/// What one server measured, one value per round.
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
    /// Each round's p50, in ms.
    pub close_p50_rounds_ms: Vec<f64>,
    /// Each round's p99, in ms.
    pub close_p99_rounds_ms: Vec<f64>,
    /// Each round's RSS per idle connection, in KiB.
    pub rss_rounds_kib: Vec<f64>,
}

/// The servers that are installed: wsclose first, then the peers. Returns the missing ones
/// with the reason.
pub fn available(wsclose: &Path, target: &Path) -> (Vec<PeerSpec>, Vec<String>) {
    let peers = target.join("peers");
    let bench_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let sources = wsclose_e2e::server::workspace_root().join("bench/peers");
    let text = |path: PathBuf| path.display().to_string();
    let mut found = vec![PeerSpec {
        name: "wsclose",
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
    let candidates = [
        (
            "tokio-tungstenite (bare)",
            bench_dir.join("bare-peer"),
            vec![text(bench_dir.join("bare-peer"))],
            vec![],
        ),
        (
            "gorilla/websocket",
            peers.join("gorilla"),
            vec![text(peers.join("gorilla"))],
            vec![],
        ),
        (
            "Node ws",
            peers.join("node/node_modules/ws/package.json"),
            vec!["node".into(), text(sources.join("node.js"))],
            vec![("NODE_PATH".into(), text(peers.join("node/node_modules")))],
        ),
        (
            "Python websockets",
            peers.join("venv/bin/python"),
            vec![
                text(peers.join("venv/bin/python")),
                text(sources.join("python.py")),
            ],
            vec![],
        ),
    ];
    for (name, needed, command, env) in candidates {
        if needed.is_file() {
            found.push(PeerSpec {
                name,
                command,
                env,
                path: "/ws",
            });
        } else {
            missing.push(format!(
                "{name}: {} missing (make bench installs it)",
                needed.display()
            ));
        }
    }
    (found, missing)
}

/// Runs `rounds` rounds over every server in `specs`.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    specs: &[PeerSpec],
    rounds: usize,
    handshakes: usize,
    idle: usize,
    logs: &Path,
) -> anyhow::Result<Vec<PeerResult>> {
    let start = |spec: &PeerSpec| -> anyhow::Result<Server> {
        let mut command = Command::new(&spec.command[0]);
        command
            .args(&spec.command[1..])
            .arg("127.0.0.1:0")
            .envs(spec.env.iter().map(|(key, value)| (key, value)));
        let log = logs.join(format!(
            "peer-{}.log",
            spec.name.replace(['/', ' ', '(', ')'], "_")
        ));
        Server::spawn(command, &log).with_context(|| format!("start {}", spec.name))
    };
    let mut p50 = vec![Vec::new(); specs.len()];
    let mut p99 = vec![Vec::new(); specs.len()];
    let mut rss = vec![Vec::new(); specs.len()];
    for round in 0..rounds {
        eprintln!("bench: [peers] round {}/{rounds}", round + 1);
        for offset in 0..specs.len() {
            let index = (round + offset) % specs.len();
            let spec = &specs[index];
            // A fresh process each time: memory freed by an earlier round stays in the
            // allocator and would hide the next round's growth.
            let server = start(spec)?;
            let url = server.ws_url(spec.path);
            let per_connection = runtime
                .block_on(rss_per_idle_connection(&server, &url, idle))
                .with_context(|| format!("{}: idle connections", spec.name))?;
            rss[index].push(per_connection);
            let timings = runtime
                .block_on(crate::latency::close_handshakes(&url, handshakes))
                .with_context(|| format!("{}: close handshakes", spec.name))?;
            let samples = Samples::from_durations(timings.iter().map(|t| t.to_close_frame));
            p50[index].push(samples.quantile(0.5));
            p99[index].push(samples.quantile(0.99));
            drop(server);
        }
    }
    Ok(specs
        .iter()
        .enumerate()
        .map(|(index, spec)| PeerResult {
            name: spec.name,
            close_p50_ms: median(&p50[index]),
            close_p99_ms: median(&p99[index]),
            rss_per_conn_kib: median(&rss[index]),
            close_p50_rounds_ms: p50[index].clone(),
            close_p99_rounds_ms: p99[index].clone(),
            rss_rounds_kib: rss[index].clone(),
        })
        .collect())
}

/// On a fresh server: opens `count` idle connections, waits for the server to settle, and
/// returns its RSS growth per connection in KiB; then closes them.
async fn rss_per_idle_connection(server: &Server, url: &str, count: usize) -> anyhow::Result<f64> {
    let before = server.rss_kib()?;
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let (socket, _) = tokio_tungstenite::connect_async(url).await?;
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib()?;
    drop(sockets);
    Ok(after.saturating_sub(before) as f64 / count as f64)
}

/// The median of `values` (the lower middle one for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get((sorted.len().max(1) - 1) / 2)
        .copied()
        .unwrap_or(f64::NAN)
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
            "wsclose p50 / this".to_owned(),
            "wsclose RSS / this".to_owned(),
        ]);
    let Some(ours) = results.first() else {
        return String::new();
    };
    for result in results {
        table.add_row([
            result.name.to_owned(),
            format!(
                "{:.3} ({})",
                result.close_p50_ms,
                spread(&result.close_p50_rounds_ms, 3)
            ),
            format!(
                "{:.3} ({})",
                result.close_p99_ms,
                spread(&result.close_p99_rounds_ms, 3)
            ),
            format!(
                "{:.2} ({})",
                result.rss_per_conn_kib,
                spread(&result.rss_rounds_kib, 2)
            ),
            ratio(ours.close_p50_ms, result.close_p50_ms),
            ratio(ours.rss_per_conn_kib, result.rss_per_conn_kib),
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
