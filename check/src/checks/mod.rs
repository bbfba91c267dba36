//! The checks, in the order they run. Each opens its own connection, so one broken behaviour
//! cannot hide another.
//!
//! # Order: what a browser does first, what can only harm a fragile server last
//! `handshake`, `close-answered`, `close-code-echoed`, `tcp-closed`, `ping-answered`,
//! `keepalive` and `origin` send only what a browser (or a well-behaved client library) sends.
//! `max-message-size` then sends one oversized, well-formed message (only with `--max-size`),
//! and `protocol-errors` sends malformed frames, one case at a time (only with
//! `--with protocol-errors` or `--all`: see [`OptIn`]). `server-survived` comes last: one more
//! upgrade, to see that the server still accepts connections.
//!
//! # A run that stops early
//! Every deadline ends by `--max-time`, and every check is raced against the stop (`--max-time`
//! or a signal): the check running then, and the ones after it, are `skip` with the reason.
//!
//! # A server that goes down is a finding
//! When a check cannot connect after the first handshake, `Ctx::alive_by` (in `run`) asks whether
//! the server still answers an upgrade. If it does not, the probe sent last (see `Ctx::sent`) is
//! named in a failing `server-survived`, every result so far is kept, and the checks not yet run
//! are `skip`.
//!
//! # Bounded against any server
//! Each check has one deadline, `--timeout` plus the waits it is asked to make (`--close-wait`,
//! `--keepalive-wait`), covering connect, TLS, the upgrade and every read and write; the cases
//! inside a check (`protocol-errors`' eleven, the liveness retries) share it. Frames the
//! server sends are read with [`RawClient::read_control`], which counts data frames and never
//! keeps them, and the oversized message is streamed, never held in memory.
//!
//! # Layout
//! * this module: the ids, verdicts and results, and the bounds the checks share.
//! * `run`: [`run_all`], the order, the deadlines, and what happens when the server goes down.
//! * `connect`: the connection each check opens (TCP or TLS, the upgrade) and its end.
//! * `handshake`: `handshake` and `origin`, the checks of the upgrade itself.
//! * `closing`: `close-answered`, `close-code-echoed` and `tcp-closed`, the close handshake.
//! * `control`: `ping-answered` and `keepalive`, the control frames.
//! * `hostile`: `max-message-size` and `protocol-errors`, the probes that can harm a fragile
//!   server.
//!
//! `idle` and `dead-peer` (with `--idle`) hold connections open for minutes beside the others:
//! they are in [`crate::idle`], started by `run` right after the first upgrade.

use std::time::Duration;

use serde::Serialize;

#[cfg(doc)]
use crate::raw::RawClient;

mod closing;
mod connect;
mod control;
mod handshake;
mod hostile;
mod run;

pub(crate) use connect::upgrade;
pub use connect::Client;
pub(crate) use connect::{connect, goodbye, millis};
pub use run::{run_all, Ran};

/// After the server's Close, how long TCP may stay open and still pass `tcp-closed`. RFC 6455
/// §7.1.1: the server closes the TCP connection first, right after the handshake.
pub const TCP_CLOSE_BOUND: Duration = Duration::from_millis(100);
/// How long `tcp-closed` watches for the end of TCP: longer than Chromium's 2 s wait for it.
pub const TCP_WATCH: Duration = Duration::from_secs(3);
/// A browser's `close` event this long after `close()` or later is a problem users notice:
/// the checks that make a browser wait so long fail.
pub const BROWSER_WAIT_BOUND: Duration = Duration::from_secs(1);
/// The `Origin` of the `origin` check: a site no server should trust.
pub const FOREIGN_ORIGIN: &str = "https://wsclose-check.invalid";
/// The payload of the `ping-answered` check's Ping.
pub const PING_PAYLOAD: &[u8] = b"wsclose-check";
/// How often `server-survived` (and the check after a failed connect) tries to upgrade before
/// it calls the server down, and the pause between tries.
pub const ALIVE_TRIES: u32 = 3;
/// The pause between two of the [`ALIVE_TRIES`].
pub const ALIVE_PAUSE: Duration = Duration::from_millis(200);
/// `protocol-errors`' deadline is `--timeout` plus this many `--close-wait`s, for all its
/// cases together: a server that answers each case late cannot stretch the run.
pub const PROTOCOL_ERRORS_WAITS: u32 = 2;
/// A check's own waits end at its deadline; this much later the check is cut off whatever it
/// is doing (a backstop, so an inner wait always wins the race).
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// How a check came out. Exit status 1 means at least one `fail` (or, with `--strict`, one
/// `warn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The server does the right thing.
    Pass,
    /// A conformance finding no browser triggers or notices: worth fixing, not failing CI for.
    Warn,
    /// Browsers will see it (a `close` event 1 s late or more, code 1006, a refused upgrade),
    /// or the server went down or hung.
    Fail,
    /// Not run: not asked for, or nothing to check after an earlier finding.
    Skip,
}

/// The stable id of a check: `"close-answered"` in JSON and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CheckId {
    /// The upgrade: 101 with the right `Sec-WebSocket-Accept`.
    Handshake,
    /// Close(1000) gets the server's Close.
    CloseAnswered,
    /// Close(4000, reason) gets 4000 and the reason back.
    CloseCodeEchoed,
    /// The server closes TCP right after the close handshake.
    TcpClosed,
    /// A Ping gets its Pong.
    PingAnswered,
    /// The server pings within `--keepalive-wait`.
    Keepalive,
    /// A foreign `Origin` is refused.
    Origin,
    /// A message one byte over `--max-size` gets 1009.
    MaxMessageSize,
    /// Malformed frames get the RFC 6455 close codes.
    ProtocolErrors,
    /// The server still accepts connections after every probe.
    ServerSurvived,
    /// A quiet connection stays open for `--idle`'s MAX (only with `--idle`; not a `--skip` or
    /// `--only` value: `--idle` alone asks for it).
    #[value(skip)]
    Idle,
    /// A peer that answers no Ping is dropped within `--idle`'s MAX (only with `--idle`).
    #[value(skip)]
    DeadPeer,
}

impl CheckId {
    /// Every check, in the order of the report (`idle` and `dead-peer`, with `--idle`, run
    /// beside the others and are reported last).
    pub const ALL: [CheckId; 12] = [
        CheckId::Handshake,
        CheckId::CloseAnswered,
        CheckId::CloseCodeEchoed,
        CheckId::TcpClosed,
        CheckId::PingAnswered,
        CheckId::Keepalive,
        CheckId::Origin,
        CheckId::MaxMessageSize,
        CheckId::ProtocolErrors,
        CheckId::ServerSurvived,
        CheckId::Idle,
        CheckId::DeadPeer,
    ];

    /// The id as in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckId::Handshake => "handshake",
            CheckId::CloseAnswered => "close-answered",
            CheckId::CloseCodeEchoed => "close-code-echoed",
            CheckId::TcpClosed => "tcp-closed",
            CheckId::PingAnswered => "ping-answered",
            CheckId::Keepalive => "keepalive",
            CheckId::Origin => "origin",
            CheckId::MaxMessageSize => "max-message-size",
            CheckId::ProtocolErrors => "protocol-errors",
            CheckId::ServerSurvived => "server-survived",
            CheckId::Idle => "idle",
            CheckId::DeadPeer => "dead-peer",
        }
    }

    /// True for the checks that need the first upgrade to have given a connection: `skip`
    /// when it was refused.
    pub fn needs_connection(self) -> bool {
        !matches!(
            self,
            CheckId::Handshake | CheckId::Origin | CheckId::ServerSurvived
        )
    }

    /// The checks `--skip` cannot remove: the prediction is made of the first two, and the
    /// last is the crash finding.
    pub fn always_runs(self) -> bool {
        matches!(
            self,
            CheckId::Handshake | CheckId::CloseAnswered | CheckId::ServerSurvived
        )
    }
}

/// A probe that can crash a fragile server, run only when asked for (`--with ID` or `--all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum OptIn {
    /// `protocol-errors`: malformed frames, which crash a Node `ws` server that has no
    /// `'error'` listener.
    ProtocolErrors,
}

impl OptIn {
    /// The opt-in for check `id`, if it needs one.
    pub fn of(id: CheckId) -> Option<OptIn> {
        match id {
            CheckId::ProtocolErrors => Some(OptIn::ProtocolErrors),
            _ => None,
        }
    }

    /// Why the check is `skip` when not asked for, and how to ask.
    pub fn not_asked_for(self) -> &'static str {
        match self {
            OptIn::ProtocolErrors => {
                "not run by default: it sends malformed frames that can crash a server; run it \
                 with --with protocol-errors"
            }
        }
    }
}

impl std::fmt::Display for CheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check's outcome: `{"id", "verdict", "ms", "detail", "fix"}` in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Which check.
    pub id: CheckId,
    /// How it came out.
    pub verdict: Verdict,
    /// The figure it measured, in milliseconds, when it measured one.
    pub ms: Option<f64>,
    /// What was observed, in one sentence.
    pub detail: String,
    /// What to change, when the verdict is not `pass`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl CheckResult {
    pub(crate) fn new(id: CheckId, verdict: Verdict, ms: Option<f64>, detail: String) -> Self {
        CheckResult {
            id,
            verdict,
            ms,
            detail,
            fix: None,
        }
    }

    pub(crate) fn skip(id: CheckId, detail: impl Into<String>) -> Self {
        CheckResult::new(id, Verdict::Skip, None, detail.into())
    }

    pub(crate) fn fix(mut self, fix: &str) -> Self {
        self.fix = Some(fix.to_owned());
        self
    }
}

/// The fix for a server that does not read: named by `close-answered` and `ping-answered`.
const FIX_READ_LOOP: &str = "keep a read loop running for the whole life of the socket: control \
    frames are answered only while the read half is polled (gorilla: always run a read loop; \
    Rust: poll socket.next() until it returns None).";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_kebab_case_in_json_and_on_the_command_line() {
        for id in CheckId::ALL {
            let json = serde_json::to_value(id).unwrap();
            assert_eq!(json, id.as_str());
            let parsed = <CheckId as clap::ValueEnum>::from_str(id.as_str(), false);
            if matches!(id, CheckId::Idle | CheckId::DeadPeer) {
                assert!(parsed.is_err(), "--idle alone asks for {id}");
            } else {
                assert_eq!(parsed.unwrap(), id);
            }
        }
    }
}
