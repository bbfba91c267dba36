//! `--idle [MAX]`: who cuts a quiet WebSocket, when, and how (issue #31).
//!
//! Right after the first successful upgrade, and in parallel with the other checks, the check
//! opens one connection per [`IdleMode`] and one more for the dead peer, and holds each open for
//! up to `MAX` (see [`Peer`] for what each sends and answers). With `--upstream URL` it opens the
//! three modes against the application directly too. Each connection ends in one [`How`]: the
//! server's Close frame, a FIN, a reset, bytes that are no frame, or still open at `MAX`. From
//! the three modes, [`classify`] says what cut the quiet connection (an idle timeout, a lifetime
//! cap, the server itself), who (the proxy or the server, with `--upstream`), what a quiet
//! browser tab will see, and the fix.
//!
//! # Bounded
//! Every connection ends at `MAX`, at `--max-time` or on a signal, whatever the server does.
//! Data frames are counted and discarded as they arrive (never kept); a Ping's payload is at
//! most 125 bytes and only the latest unanswered one is kept; the gaps between the server's
//! Pings are kept for the first [`MAX_PING_GAPS`]. A write (a Pong, a Ping, a message) that
//! does not finish within `--timeout` ends the connection with [`How::Error`].
//!
//! # Layout
//! * this module: the modes, the endings, the JSON objects, and [`observe`], which opens and
//!   holds every connection.
//! * `hold`: one connection, from the upgrade's answer to its end.
//! * `classify`: from the endings to the classification, the verdicts, the prediction for a
//!   quiet tab and the fix (pure: no I/O).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::checks::{connect, goodbye, Client};
use crate::{CheckError, Options, Stop, Stopped, Target};

mod classify;
mod hold;

pub use crate::How;

pub use classify::{
    classify, dead_peer_check, fix, half, idle_check, quiet_tab, report, Classification,
    Classified, CutBy,
};
pub use hold::Peer;

/// `--idle`'s MAX when none is given: longer than the idle timeouts proxies ship with (nginx
/// 60 s) and than two minutes.
pub const DEFAULT_IDLE_MAX: Duration = Duration::from_secs(130);
/// `--idle-interval`'s default: how often `client-ping` and `app-message` send.
pub const DEFAULT_IDLE_INTERVAL: Duration = Duration::from_secs(10);
/// `--idle-message`'s default: the text `app-message` sends every interval.
pub const DEFAULT_IDLE_MESSAGE: &str = "wsclose-check idle";
/// Two endings this close together are "about the same time" (a lifetime cap cuts every mode
/// at once; an idle timeout spares the modes with traffic).
pub const SAME_TIME: Duration = Duration::from_secs(1);
/// The gaps between the server's Pings kept per connection, for their median.
pub const MAX_PING_GAPS: usize = 4096;
/// `--max-time` must leave this many `--timeout`s beyond MAX: the lookup and connect, the first
/// upgrade, and the idle connections' upgrades.
pub const IDLE_TIMEOUTS: u32 = 3;
/// ... and this much more, for the answers to the server's Closes and the report.
pub const IDLE_SLACK: Duration = Duration::from_secs(5);

/// The least `--max-time` that covers `--idle max` with `--timeout timeout`.
pub fn max_time_for(max: Duration, timeout: Duration) -> Duration {
    max + timeout * IDLE_TIMEOUTS + IDLE_SLACK
}

/// One of the three quiet connections: `"browser"`, `"client-ping"`, `"app-message"` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdleMode {
    /// Sends nothing and answers every Ping with a Pong, as a quiet browser tab does.
    Browser,
    /// Also sends a Ping every `--idle-interval`.
    ClientPing,
    /// Also sends `--idle-message` as a text message every `--idle-interval`.
    AppMessage,
}

impl IdleMode {
    /// The three, in the order of the report.
    pub const ALL: [IdleMode; 3] = [
        IdleMode::Browser,
        IdleMode::ClientPing,
        IdleMode::AppMessage,
    ];

    /// The name in JSON and in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            IdleMode::Browser => "browser",
            IdleMode::ClientPing => "client-ping",
            IdleMode::AppMessage => "app-message",
        }
    }
}

/// What one mode's connection saw: an entry of `modes` and `upstream_modes` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeReport {
    /// Which connection.
    pub mode: IdleMode,
    /// From the upgrade's answer to the end; `None` while still open.
    pub ended_after_ms: Option<f64>,
    /// How it ended.
    pub how: How,
    /// The code of the server's Close frame.
    pub close_code: Option<u16>,
    /// The reason of the server's Close frame (lossy UTF-8; at most 123 bytes).
    pub close_reason: Option<String>,
    /// How many Pings the server sent.
    pub server_pings: u64,
    /// The median gap between two of the server's Pings; `None` with fewer than two.
    pub server_ping_interval_ms: Option<f64>,
    /// From the upgrade's answer to the server's first Ping.
    #[serde(skip)]
    pub first_ping_ms: Option<f64>,
    /// Data frames the server sent (counted, discarded).
    #[serde(skip)]
    pub data_frames: u64,
    /// For [`How::Error`], what the server did.
    #[serde(skip)]
    pub error: Option<String>,
}

impl ModeReport {
    /// A connection of `mode` still open, that saw nothing yet.
    pub fn open(mode: IdleMode) -> ModeReport {
        ModeReport {
            mode,
            ended_after_ms: None,
            how: How::Open,
            close_code: None,
            close_reason: None,
            server_pings: 0,
            server_ping_interval_ms: None,
            first_ping_ms: None,
            data_frames: 0,
            error: None,
        }
    }

    /// True when the connection ended within MAX (any way but still open).
    pub fn ended(&self) -> bool {
        self.how != How::Open
    }
}

/// The top-level `"idle"` object of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleReport {
    /// `--idle`'s MAX.
    pub max_ms: f64,
    /// The three modes through the URL, in [`IdleMode::ALL`]'s order.
    pub modes: Vec<ModeReport>,
    /// The three modes straight to `--upstream`; `None` without it (or when it could not be
    /// reached: see [`IdleReport::upstream_error`]).
    pub upstream_modes: Option<Vec<ModeReport>>,
    /// What cut the quiet connection (see [`Classification`]).
    pub classification: Classification,
    /// When the quiet `browser` connection was cut; `None` when it was not.
    pub cut_after_ms: Option<f64>,
    /// Who cut it (see [`CutBy`]).
    pub cut_by: CutBy,
    /// The longest interval of a keepalive that keeps the connection open; `None` when no
    /// interval helps (a lifetime cap) or nothing was cut.
    pub recommended_ping_interval_ms: Option<f64>,
    /// Why `--upstream` has no modes, when it was given but could not be held.
    #[serde(skip)]
    pub upstream_error: Option<String>,
    /// `--idle-interval`, for the fix text.
    #[serde(skip)]
    pub interval: Duration,
    /// Why the run stopped before MAX, if it did.
    #[serde(skip)]
    pub stopped: Option<Stopped>,
}

/// The top-level `"dead_peer"` object of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadPeerReport {
    /// From the upgrade's answer to the drop; `None` when never dropped within MAX.
    pub dropped_after_ms: Option<f64>,
    /// How it was dropped.
    pub how: How,
    /// The code of the server's Close frame.
    pub close_code: Option<u16>,
    /// How many Pings the server sent (none answered).
    #[serde(skip)]
    pub server_pings: u64,
    /// For [`How::Error`], what the server did.
    #[serde(skip)]
    pub error: Option<String>,
}

impl From<ModeReport> for DeadPeerReport {
    fn from(held: ModeReport) -> Self {
        DeadPeerReport {
            dropped_after_ms: held.ended_after_ms,
            how: held.how,
            close_code: held.close_code,
            server_pings: held.server_pings,
            error: held.error,
        }
    }
}

/// Everything the idle connections saw, before it is classified.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The three modes through the URL.
    pub modes: Vec<ModeReport>,
    /// The three modes straight to `--upstream`, or why they could not be opened.
    pub upstream: Option<Result<Vec<ModeReport>, String>>,
    /// The dead peer.
    pub dead_peer: DeadPeerReport,
    /// Why the run stopped before MAX, if it did.
    pub stopped: Option<Stopped>,
}

/// Opens every idle connection (the three modes and the dead peer to `target`, the three modes
/// to `upstream`), all at once, and holds them until each ends, MAX passes or `stop`. An error
/// means a connection to `target` could not be opened (the others are closed at once), or the
/// run stopped while they were being opened.
pub async fn observe(
    target: &Target,
    upstream: Option<&Target>,
    options: &Options,
    max: Duration,
    stop: &Stop,
) -> Result<Observed, CheckError> {
    let deadline = (Instant::now() + options.timeout).min(stop.deadline());
    let peers: Vec<Peer> = IdleMode::ALL
        .into_iter()
        .map(Peer::Mode)
        .chain([Peer::Dead])
        .collect();
    // Every connection at once, to the URL and to the upstream; each one's time runs from its
    // own upgrade's answer.
    let connects = async {
        let opened = futures::future::join_all(peers.iter().map(|_| upgraded(target, deadline)));
        let upstream_opened = async {
            match upstream {
                Some(upstream) => Some(
                    futures::future::join_all(IdleMode::ALL.map(|_| upgraded(upstream, deadline)))
                        .await,
                ),
                None => None,
            }
        };
        tokio::join!(opened, upstream_opened)
    };
    let (opened, upstream_opened) = tokio::select! {
        opened = connects => opened,
        stopped = stop.wait() => return Err(CheckError::Stopped(stopped)),
    };
    let (clients, failed) = partition(opened);
    if let Some(error) = failed {
        for (client, _) in clients {
            goodbye(Some(client)).await;
        }
        for (client, _) in upstream_opened.into_iter().flatten().flatten() {
            goodbye(Some(client)).await;
        }
        return Err(error);
    }
    let upstream_clients = upstream_opened.map(|opened| match partition(opened) {
        (clients, None) => Ok(clients),
        (clients, Some(error)) => Err((clients, error.to_string())),
    });
    // Each connection is a task of its own, so one that floods cannot starve the others of
    // reads (a task yields once its budget is spent); the set aborts them if dropped.
    let (upstream_clients, upstream_error) = match upstream_clients {
        None => (Vec::new(), None),
        Some(Ok(clients)) => (clients, None),
        Some(Err((clients, error))) => {
            for (client, _) in clients {
                goodbye(Some(client)).await;
            }
            (Vec::new(), Some(error))
        }
    };
    let options = Arc::new(options.clone());
    let mut holds = tokio::task::JoinSet::new();
    let to_target = peers.iter().copied().zip(clients).map(|held| (false, held));
    let to_upstream = IdleMode::ALL
        .map(Peer::Mode)
        .into_iter()
        .zip(upstream_clients)
        .map(|held| (true, held));
    for (slot, (is_upstream, (peer, (client, opened)))) in to_target.chain(to_upstream).enumerate()
    {
        let (options, stop) = (options.clone(), stop.clone());
        holds.spawn(async move {
            let report = hold::hold(client, opened, peer, &options, max, &stop).await;
            (slot, is_upstream, report)
        });
    }
    let mut ended = holds.join_all().await;
    ended.sort_by_key(|(slot, _, _)| *slot);
    let (upstream_held, held): (Vec<_>, Vec<_>) = ended
        .into_iter()
        .partition(|(_, is_upstream, _)| *is_upstream);
    let mut held: Vec<ModeReport> = held.into_iter().map(|(_, _, report)| report).collect();
    let upstream_held: Vec<ModeReport> = upstream_held
        .into_iter()
        .map(|(_, _, report)| report)
        .collect();
    let upstream = match (upstream, upstream_error) {
        (None, _) => None,
        (Some(_), Some(error)) => Some(Err(error)),
        (Some(_), None) => Some(Ok(upstream_held)),
    };
    let dead_peer = held.pop().expect("the dead peer is held last").into();
    Ok(Observed {
        modes: held,
        upstream,
        dead_peer,
        stopped: stop.now(),
    })
}

/// A connection upgraded for an idle mode, with the instant its upgrade's answer was read.
async fn upgraded(target: &Target, deadline: Instant) -> Result<(Client, Instant), CheckError> {
    let client = connect(target, deadline).await?;
    Ok((client, Instant::now()))
}

/// The clients opened, and the first error if one was not.
fn partition<T>(opened: Vec<Result<T, CheckError>>) -> (Vec<T>, Option<CheckError>) {
    let mut clients = Vec::new();
    let mut failed = None;
    for result in opened {
        match result {
            Ok(client) => clients.push(client),
            Err(error) => {
                failed.get_or_insert(error);
            }
        }
    }
    (clients, failed)
}
