//! `wsclose-check URL --idle MAX --json` run as a user runs it (the built binary, see
//! [`check_binary`]), its JSON read into the types of the contract (`shared/DESIGN.md`: the
//! `idle` and `dead_peer` objects), for the tests that hold WebSockets open through real
//! proxies (`tests/idle.rs`, `tests/idle_browser.rs`).
//!
//! The types below are the contract's, written apart from the check's own (`wsclose_check::How`,
//! `wsclose_check::idle::IdleReport`) on purpose: the check's serialiser is what is under test,
//! so a key or a value it renames fails these tests instead of changing both sides at once.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::server::check_binary;

/// How long a run may take beyond MAX: the usual checks, the upgrades, and a loaded machine.
const RUN_SLACK: Duration = Duration::from_secs(60);

/// How one idle connection ended (`how`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum How {
    /// A Close frame from the other side.
    Close,
    /// TCP ended without a Close frame.
    Fin,
    /// TCP was reset.
    Rst,
    /// Still open at MAX.
    Open,
    /// Ended by the check itself, the server having broken the protocol (the check's addition
    /// to the contract's four).
    Error,
}

/// What the cut looks like across the modes (`classification`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Classification {
    /// The quiet connection was cut, the one with application messages was not.
    IdleTimeout,
    /// Every mode was cut at about the same time, whatever traffic flowed.
    LifetimeCap,
    /// The server sent the quiet connection a Close frame.
    ServerDropsQuiet,
    /// Nothing was cut within MAX.
    NoCut,
    /// Traffic was cut sooner than the quiet connection (the check's addition to the
    /// contract's four).
    Inconclusive,
}

/// Who cut it (`cut_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CutBy {
    /// Seen through the URL, not on `--upstream`.
    Proxy,
    /// Seen on both.
    Server,
    /// Not known (no `--upstream`, or nothing cut).
    Unknown,
}

/// One idle connection (`idle.modes[]`).
#[derive(Debug, Clone, Deserialize)]
pub struct Mode {
    /// `browser`, `client-ping` or `app-message`.
    pub mode: String,
    /// From the upgrade's answer to the end; `None` while still open at MAX.
    pub ended_after_ms: Option<f64>,
    /// How it ended.
    pub how: How,
    /// The Close frame's code, with [`How::Close`].
    pub close_code: Option<u16>,
    /// The Close frame's reason, with [`How::Close`].
    pub close_reason: Option<String>,
    /// Pings the server sent.
    pub server_pings: u64,
    /// The median gap between them; `None` below two.
    pub server_ping_interval_ms: Option<f64>,
}

/// The top-level `idle` object.
#[derive(Debug, Clone, Deserialize)]
pub struct Idle {
    /// MAX.
    pub max_ms: f64,
    /// Through the URL.
    pub modes: Vec<Mode>,
    /// Straight to `--upstream`; `None` without it.
    pub upstream_modes: Option<Vec<Mode>>,
    /// What the cut looks like.
    pub classification: Classification,
    /// When it was cut; `None` when nothing was.
    pub cut_after_ms: Option<f64>,
    /// Who cut it.
    pub cut_by: CutBy,
    /// The ping interval that keeps a quiet connection open; `None` when none does.
    pub recommended_ping_interval_ms: Option<f64>,
    /// Why `--upstream` has no modes, when it could not be held (the check's addition to the
    /// contract).
    #[serde(default)]
    pub upstream_error: Option<String>,
}

/// The top-level `dead_peer` object: the connection that answers nothing.
#[derive(Debug, Clone, Deserialize)]
pub struct DeadPeer {
    /// When the server dropped it; `None` when it did not within MAX.
    pub dropped_after_ms: Option<f64>,
    /// How.
    pub how: How,
    /// The Close frame's code, with [`How::Close`].
    pub close_code: Option<u16>,
}

/// One row of `checks`.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckRow {
    /// The check's id.
    pub id: String,
    /// `pass`, `warn`, `fail` or `skip`.
    pub verdict: String,
    /// What it found.
    pub detail: String,
}

/// What `--json` prints with `--idle`, the parts these tests read.
#[derive(Debug, Clone, Deserialize)]
pub struct IdleReport {
    /// Every check, `idle` and `dead-peer` included.
    pub checks: Vec<CheckRow>,
    /// The idle connections.
    pub idle: Idle,
    /// The connection that answers nothing.
    pub dead_peer: DeadPeer,
}

/// What a quiet browser tab sees, as the report predicts it or a browser measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuietTab {
    /// Still open at the end of the wait.
    Open,
    /// The `close` event, after `after_ms` from the open, with `code`.
    Closed {
        /// From the upgrade to the `close` event.
        after_ms: f64,
        /// The event's code: 1006 for a cut without a Close frame.
        code: u16,
    },
}

impl IdleReport {
    /// The mode named `name` through the URL; panics when it is missing.
    pub fn mode(&self, name: &str) -> &Mode {
        find_mode(&self.idle.modes, name)
    }

    /// The mode named `name` on `--upstream`; panics when it is missing.
    pub fn upstream_mode(&self, name: &str) -> &Mode {
        find_mode(
            self.idle.upstream_modes.as_deref().expect("--upstream ran"),
            name,
        )
    }

    /// The verdict of check `id`; panics when it is missing.
    pub fn verdict(&self, id: &str) -> &str {
        &self
            .checks
            .iter()
            .find(|check| check.id == id)
            .unwrap_or_else(|| panic!("no check {id} in {:?}", self.checks))
            .verdict
    }

    /// What the report says a quiet tab will see: the `browser` mode's end, with the server's
    /// Close code, or 1006 (the code a browser reports for a connection that ended without a
    /// Close frame).
    pub fn predicted_quiet_tab(&self) -> QuietTab {
        let browser = self.mode("browser");
        match (browser.how, browser.ended_after_ms) {
            (How::Open, _) | (_, None) => QuietTab::Open,
            (How::Close, Some(after_ms)) => QuietTab::Closed {
                after_ms,
                code: browser.close_code.expect("a Close frame has a code"),
            },
            (How::Fin | How::Rst | How::Error, Some(after_ms)) => QuietTab::Closed {
                after_ms,
                code: 1006,
            },
        }
    }

    /// One line of figures for `--nocapture`.
    pub fn figures(&self) -> String {
        let modes = |modes: &[Mode]| {
            modes
                .iter()
                .map(|mode| {
                    let ended = mode
                        .ended_after_ms
                        .map_or("open".to_owned(), |ms| format!("{:.2} s", ms / 1000.0));
                    format!(
                        "{} {:?} {ended} code {:?} pings {}",
                        mode.mode, mode.how, mode.close_code, mode.server_pings
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        format!(
            "{:?} after {:?} ms by {:?}, recommended {:?} ms | modes: {} | upstream: {} | \
             dead-peer {:?} after {:?} ms",
            self.idle.classification,
            self.idle.cut_after_ms,
            self.idle.cut_by,
            self.idle.recommended_ping_interval_ms,
            modes(&self.idle.modes),
            self.idle
                .upstream_modes
                .as_deref()
                .map_or_else(|| format!("none: {:?}", self.idle.upstream_error), modes),
            self.dead_peer.how,
            self.dead_peer.dropped_after_ms,
        )
    }
}

fn find_mode<'a>(modes: &'a [Mode], name: &str) -> &'a Mode {
    modes
        .iter()
        .find(|mode| mode.mode == name)
        .unwrap_or_else(|| panic!("no mode {name} in {modes:?}"))
}

/// One run of the check with `--idle`.
#[derive(Debug)]
pub struct IdleRun {
    /// The JSON on stdout.
    pub report: IdleReport,
    /// The exit status.
    pub status: Option<i32>,
    /// The one line on stderr.
    pub stderr: String,
}

/// Runs `wsclose-check URL --idle MAX --idle-interval INTERVAL --json [--upstream UPSTREAM]`,
/// bounded by MAX + a minute (the child is killed if it runs longer), and reads its JSON.
pub async fn run_idle(
    url: &str,
    upstream: Option<&str>,
    max: Duration,
    interval: Duration,
) -> anyhow::Result<IdleRun> {
    let mut command = tokio::process::Command::new(check_binary());
    command
        .arg(url)
        .arg("--idle")
        .arg(humantime::format_duration(max).to_string())
        .arg("--idle-interval")
        .arg(humantime::format_duration(interval).to_string())
        .arg("--json");
    if let Some(upstream) = upstream {
        command.arg("--upstream").arg(upstream);
    }
    let line = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(max + RUN_SLACK, output)
        .await
        .with_context(|| format!("{line} ran past {:?}", max + RUN_SLACK))?
        .with_context(|| format!("run {line}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "{line}: exit {:?}, no idle report on stdout: {}\nstderr: {stderr}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    Ok(IdleRun {
        report,
        status: output.status.code(),
        stderr,
    })
}
