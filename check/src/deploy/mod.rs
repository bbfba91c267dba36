//! `wsclose-check URL --deploy`: a deploy rehearsal. It opens `--connections` WebSockets (paced,
//! [`OPEN_PACE`] apart), holds each as a browser tab does, runs `--during CMD` once every one is
//! open (or waits for a deploy by hand), and records how every connection ended, who cut it,
//! how long it took to come back with the demo page's backoff, which upgrades failed meanwhile,
//! and the reconnect stampede. The run ends when CMD has exited and every connection has been
//! back for [`SETTLE`], at `--for` from the start, or on SIGINT, SIGTERM or SIGHUP; the report
//! then has everything seen so far.
//!
//! # Bounded against any server
//! Every upgrade has `--timeout`; every read skips data frames as they come (see
//! [`crate::raw::RawClient::read_control`]); every write (a Pong, the Close answer, a message)
//! has 1 s; the log keeps at most [`MAX_EVENTS`] entries; and the run ends at `--for`: then the
//! tabs get 2 s to send their Close(1001) and CMD 2 s to exit after SIGTERM, so a run takes at
//! most `--for` plus a few seconds.
//!
//! # Layout
//! * this module: the flags, the bounds, the run.
//! * `tab`: one connection, held as a browser tab holds it, and its reconnects.
//! * `during`: `--during CMD`, in its own process group.
//! * [`tally`]: what every connection saw, counted into the report (pure).
//! * `text`: the report in the terminal.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use wsclose_backoff::Backoff;

mod during;
mod tab;
pub mod tally;
mod text;

pub use tally::{DeployReport, Observed};
pub use text::text;

use crate::{CheckError, Interrupt, Options, Stop, Stopped};

/// `--connections`' default.
pub const DEFAULT_CONNECTIONS: u32 = 100;
/// The most `--connections`, so the whole run stays under 64 MiB: a connection costs about
/// 14 KiB (its buffers; measured: 1,000 connections to `/ws/drain?push_ms=10` peaked at 27 MiB,
/// 100 at 15 MiB).
pub const MAX_CONNECTIONS: u32 = 2_000;
/// The pause between two connections' first upgrades (200 a second), so opening them does not
/// storm the server.
pub const OPEN_PACE: Duration = Duration::from_millis(5);
/// With `--during`: once CMD has exited and every connection is back, the run ends after this
/// long without a change (an end that CMD caused may reach the check a moment after CMD exits).
pub const SETTLE: Duration = Duration::from_millis(500);
/// The most events (upgrades, failures, ends) the run keeps; the rest are counted, not kept.
pub const MAX_EVENTS: usize = 100_000;
/// After the run ends, how long the tabs have to say goodbye before they are dropped.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);

/// The `--deploy` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployOptions {
    /// Rehearse a deploy: hold --connections WebSockets through it (with --during CMD, or a
    /// deploy you run by hand within --for) and report how each ended and came back. The
    /// checks do not run.
    #[arg(long)]
    pub deploy: bool,
    /// --deploy: how many WebSockets to hold.
    #[arg(long, requires = "deploy", default_value_t = DEFAULT_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONNECTIONS)))]
    pub connections: u32,
    /// --deploy: the deploy, run through `sh -c` once every connection is open; the run ends
    /// when it has exited and every connection is back. Its output goes to stderr.
    #[arg(long, requires = "deploy", value_name = "CMD")]
    pub during: Option<String>,
    /// --deploy: the longest the run may take, from its start.
    #[arg(long = "for", requires = "deploy", value_name = "DURATION",
          value_parser = humantime::parse_duration, default_value = "2m")]
    pub for_: Duration,
    /// --deploy: each connection sends this text message every 5 s, as an app would.
    #[arg(long, requires = "deploy", value_name = "TEXT")]
    pub deploy_message: Option<String>,
    /// --deploy with --during: a deploy in which no connection ended this long after CMD
    /// started is reported hung.
    #[arg(long, requires = "deploy", value_name = "DURATION",
          value_parser = humantime::parse_duration, default_value = "10s")]
    pub deploy_hung_after: Duration,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            deploy: false,
            connections: DEFAULT_CONNECTIONS,
            during: None,
            for_: Duration::from_secs(120),
            deploy_message: None,
            deploy_hung_after: Duration::from_secs(10),
        }
    }
}

/// What one rehearsal found: `{"url", "summary", "deploy"}` in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct DeployRun {
    /// The URL.
    pub url: String,
    /// The verdict in one line: `ok: ...` or `fail: ...`.
    pub summary: String,
    /// The counts (DESIGN.md's `deploy` object).
    pub deploy: DeployReport,
    /// Every finding, one sentence each with its fix; failures first.
    #[serde(skip)]
    pub verdicts: Vec<String>,
    /// What the counts were made of, for the timeline.
    #[serde(skip)]
    pub observed: Observed,
    /// The reconnect delays the connections used.
    #[serde(skip)]
    pub backoff: Backoff,
    /// How the run ended early (`--for`, a signal); `None`: CMD done and every connection back.
    #[serde(skip)]
    pub stopped: Option<Stopped>,
}

impl DeployRun {
    /// 128 + the signal's number when a signal ended the run, else 1 when clients saw a 1006
    /// or did not come back, else 0.
    pub fn exit_status(&self) -> u8 {
        match self.stopped {
            Some(Stopped::Interrupted(signal)) => {
                u8::try_from(128 + signal.number()).unwrap_or(u8::MAX)
            }
            _ => u8::from(self.deploy.fails()),
        }
    }

    /// The report as JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a deploy report always serialises")
    }
}

/// Runs the rehearsal against `url` until it ends (see the module doc) or `interrupt` ends.
/// An error (exit 2) means nothing was rehearsed: a bad URL, no server, CMD could not start, or
/// not every connection opened within `--timeout`.
pub async fn run_until(
    url: &str,
    options: &Options,
    interrupt: impl std::future::Future<Output = Interrupt>,
) -> Result<DeployRun, CheckError> {
    let (interrupted, interrupt_seen) = watch::channel(None);
    let stop = Stop::new(options.deploy.for_, interrupt_seen);
    crate::until_interrupted(rehearse(url, options, &stop), interrupted, interrupt).await
}

async fn rehearse(url: &str, options: &Options, stop: &Stop) -> Result<DeployRun, CheckError> {
    let flags = &options.deploy;
    let target = crate::resolve(url, options, stop).await?;
    let connections = flags.connections;
    let (end_tx, end) = watch::channel(false);
    let (open, mut open_rx) = watch::channel(0u32);
    let backoff = Backoff::default();
    let shared = Arc::new(tab::Shared {
        target,
        backoff,
        message: flags.deploy_message.clone(),
        log: Mutex::new(tab::Log::default()),
        open,
        end,
    });
    let mut tabs = tokio::task::JoinSet::new();
    for i in 0..connections {
        tabs.spawn(tab::run(shared.clone(), OPEN_PACE * i));
    }

    // Every connection open, within the pacing plus one --timeout.
    let open_by = Instant::now() + OPEN_PACE * connections + options.timeout;
    let all_open = async {
        let _ = open_rx.wait_for(|open| *open >= connections).await;
    };
    tokio::select! {
        // Every connection open wins over a stop that came at the same moment: then the report
        // has them, and the stop ends the run at once.
        biased;
        opened = tokio::time::timeout_at(open_by, all_open) => if opened.is_err() {
            let log = shared.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            return Err(CheckError::Deploy(format!(
                "only {} of {connections} connections opened within {} (--timeout); the last \
                 upgrade got: {}",
                *open_rx.borrow(),
                humantime::format_duration(options.timeout),
                log.last_failure.as_deref().unwrap_or("no answer yet"),
            )));
        },
        stopped = stop.wait() => return Err(CheckError::Stopped(stopped)),
    }

    if flags.during.is_none() && std::io::stderr().is_terminal() {
        eprintln!(
            "wsclose-check: {connections} connections open: deploy now; the report comes at \
             --for {} or on Ctrl-C",
            humantime::format_duration(flags.for_)
        );
    }
    let started = Instant::now();
    let mut during = match &flags.during {
        Some(cmd) => Some(during::During::spawn(cmd).map_err(|error| {
            CheckError::Deploy(format!("--during: cannot run {cmd:?}: {error}"))
        })?),
        None => None,
    };
    let mut cmd_ended = None;
    let mut changed = started;
    let stopped = loop {
        let running = during.as_ref().is_some_and(|cmd| cmd.exited.is_none());
        let settling = during.is_some() && !running && *open_rx.borrow() == connections;
        if settling && changed.elapsed() >= SETTLE {
            break None;
        }
        tokio::select! {
            stopped = stop.wait() => break Some(stopped),
            _ = async { during.as_mut().expect("running").wait().await }, if running => {
                cmd_ended = Some(Instant::now());
                changed = Instant::now();
            }
            _ = open_rx.changed() => changed = Instant::now(),
            () = tokio::time::sleep_until(changed + SETTLE), if settling => {}
        }
    };
    let ended = Instant::now();

    // Goodbyes and CMD's end, side by side, each bounded.
    let _ = end_tx.send(true);
    let goodbyes = async {
        let all = async { while tabs.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(GOODBYE_WAIT, all).await;
        tabs.abort_all();
    };
    let cmd_status = during.as_ref().and_then(|cmd| cmd.exited);
    let cmd_done = async {
        if let Some(cmd) = during.take() {
            cmd.end().await;
        }
    };
    tokio::join!(goodbyes, cmd_done);

    let log = std::mem::take(
        &mut *shared
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let observed = observed(
        log,
        started,
        ended,
        (cmd_ended, cmd_status),
        backoff,
        options,
    );
    let deploy = tally::tally(&observed);
    let verdicts = deploy.verdicts(&observed);
    let mut summary = deploy.summary(&observed);
    if let Some(stopped) = stopped {
        summary.push_str(&format!("; {}", stopped_text(stopped, flags.for_)));
    }
    Ok(DeployRun {
        url: url.to_owned(),
        summary,
        deploy,
        verdicts,
        observed,
        backoff,
        stopped,
    })
}

/// `--for 2m reached`, or `interrupted by SIGINT`.
fn stopped_text(stopped: Stopped, for_: Duration) -> String {
    match stopped {
        Stopped::MaxTime(_) => format!("--for {} reached", humantime::format_duration(for_)),
        Stopped::Interrupted(signal) => format!("interrupted by {signal}"),
    }
}

/// The log in ms from `started` (the start of CMD, or of the run without `--during`); upgrades
/// before it (the connections' first) are left out.
fn observed(
    log: tab::Log,
    started: Instant,
    ended: Instant,
    (cmd_ended, cmd_status): (Option<Instant>, Option<std::process::ExitStatus>),
    backoff: Backoff,
    options: &Options,
) -> Observed {
    let ms = |at: Instant| match at.checked_duration_since(started) {
        Some(after) => after.as_secs_f64() * 1000.0,
        None => -(started.duration_since(at).as_secs_f64() * 1000.0),
    };
    Observed {
        connections: options.deploy.connections,
        during: options.deploy.during.clone(),
        outages: log
            .outages
            .into_iter()
            .map(|outage| tally::Outage {
                ended_ms: ms(outage.ended),
                ending: outage.ending,
                first_retry: outage.first_retry,
                back_ms: outage.back.map(ms),
            })
            .collect(),
        attempts: log
            .attempts
            .into_iter()
            .filter(|at| *at >= started)
            .map(ms)
            .collect(),
        failures: log
            .failures
            .into_iter()
            .filter(|(at, _)| *at >= started)
            .map(|(at, status)| tally::Failure {
                at_ms: ms(at),
                status,
            })
            .collect(),
        cmd_ended_ms: cmd_ended.map(ms),
        cmd_status: cmd_status.and_then(|status| status.code()),
        ran_ms: ms(ended),
        hung_after_ms: options.deploy.deploy_hung_after.as_secs_f64() * 1000.0,
        first_delay_max_ms: backoff.first_max_ms,
        dropped: log.dropped,
    }
}
