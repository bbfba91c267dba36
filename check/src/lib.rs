//! # wsclose-check
//!
//! Diagnoses any WebSocket server's close behaviour from a native client, and predicts what
//! Chromium, Firefox and WebKit will show after `ws.close()`. Install the command with
//! `cargo install --path check` from a checkout; its README has the checks and the exit status.
//!
//! ```text
//! wsclose-check ws://127.0.0.1:3030/ws/no-drain
//! ```
//!
//! Each check opens its own connection, speaks raw frames ([`raw`]), and returns a
//! [`CheckResult`]: a stable id, a [`Verdict`], the figure it measured and, unless it passed,
//! one sentence of explanation with the fix. [`predict`] turns what the close handshake did
//! into the browsers' outcome, following the table measured in headless Chromium 156, Firefox
//! ESR 153 and WebKitGTK 2.50 (see the README).
//!
//! # Layout
//! * [`raw`]: the raw-frame client (upgrade with any header, frames that break any rule).
//! * [`checks`]: the checks, in the order they run.
//! * [`predict`]: from the close handshake to what each browser shows.
//! * [`report`]: the table and the JSON.
//! * [`deploy`]: `--deploy`, the deploy rehearsal (instead of the checks).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

pub mod browser;
pub mod checks;
pub mod deploy;
mod how;
pub mod idle;
pub mod predict;
pub mod raw;
pub mod report;
pub mod tls;

pub use browser::{Browser, BrowserChoice, BrowserError, Measured};
pub use checks::{CheckId, CheckResult, OptIn, Verdict};
pub use how::{Ended, How};
pub use idle::{DeadPeerReport, IdleReport};
pub use predict::{BrowserOutcome, Predicted, ServerCloseBehaviour};
/// tungstenite's close code, the type of every close code in this crate but the raw frames' (see
/// [`raw::Frame::close_code`]).
pub use tungstenite::protocol::frame::coding::CloseCode;

/// How long the check waits for the server's Close frame, by default.
pub const DEFAULT_CLOSE_WAIT: Duration = Duration::from_secs(3);
/// `--timeout`'s default: what one check may take beyond the waits it is asked to make.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `--max-time`'s default: the deadline of the whole run.
pub const DEFAULT_MAX_TIME: Duration = Duration::from_secs(120);
/// The most addresses of a host name the check tries to connect to (one after the other,
/// sharing one `--timeout`).
pub const MAX_ADDRESSES: usize = 3;

/// Where to connect, and how to upgrade.
#[derive(Debug, Clone)]
pub struct Target {
    /// TLS for `wss://`; `None` for `ws://`.
    pub tls: Option<tls::Tls>,
    /// The URL as given.
    pub url: url::Url,
    /// The address the host resolved to (the first one that accepted a connection).
    pub addr: SocketAddr,
    /// The `Host` header: host and port from the URL.
    pub host: String,
    /// The request target: path and query.
    pub path: String,
    /// The `Origin` header of every upgrade but the `origin` check's.
    pub origin: String,
    /// `--timeout`: what each check may take beyond the waits it is asked to make.
    pub timeout: Duration,
}

/// What the check was asked to do (the command line, without the URL).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The Origin header to upgrade with, as a browser page would send it.
    /// Default: the server's own origin (http://HOST:PORT).
    #[arg(long)]
    pub origin: Option<String>,
    /// How long to wait for the server's Close frame.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    pub close_wait: Duration,
    /// The deadline of each check: connect, TLS, upgrade and every read and write must be done
    /// within it, on top of the waits the check is asked to make (--close-wait,
    /// --keepalive-wait). A server that misses it is reported as hung.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Do not run these checks (comma-separated ids), for example `--skip origin`.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "ID,...",
        conflicts_with = "only"
    )]
    pub skip: Vec<CheckId>,
    /// Run only these checks (comma-separated ids); handshake, close-answered and
    /// server-survived always run.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "ID,...")]
    pub only: Vec<CheckId>,
    /// Also run these probes, which can crash a fragile server (comma-separated). Without it
    /// `protocol-errors` (malformed frames) is reported `skip`.
    #[arg(
        long = "with",
        value_enum,
        value_delimiter = ',',
        value_name = "ID,..."
    )]
    pub with: Vec<OptIn>,
    /// Run every check, the probes that can crash a fragile server included (as
    /// `--with protocol-errors`).
    #[arg(long, conflicts_with = "only")]
    pub all: bool,
    /// The deadline of the whole run: the checks not done by then are `skip`, and the
    /// report says so. Default: 2m; with --idle, MAX + 3 × --timeout + 5s when that is longer
    /// (and a shorter --max-time is refused).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_time: Option<Duration>,
    /// Warnings fail too: exit 1 on any `warn`, not only on what browsers will see.
    #[arg(long)]
    pub strict: bool,
    /// Wait this long for a server Ping (the `keepalive` check is skipped without it).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub keepalive_wait: Option<Duration>,
    /// The server's maximum message size in bytes: a message of N+1 bytes must get Close 1009
    /// (the `max-message-size` check is skipped without it).
    #[arg(long, value_name = "N")]
    pub max_size: Option<usize>,
    /// wss://: accept any certificate (a self-signed test server).
    #[arg(long)]
    pub insecure: bool,
    /// Confirm the prediction in real headless browsers (the no-drain case takes 60 s).
    #[arg(long, value_enum)]
    pub browser: Option<browser::BrowserChoice>,
    /// Where --browser serves its probe page. The server must accept this origin
    /// (http://IP:PORT) in its Origin check.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub page_addr: SocketAddr,
    /// The built probe page for --browser (`make build` puts it in target/www).
    #[arg(long, default_value_os_t = browser::default_www())]
    pub www: PathBuf,
    /// Hold quiet connections open for up to MAX (default 130s), beside the other checks, and
    /// see who cuts them, when and how: `browser` (sends nothing, answers Pings),
    /// `client-ping` (also pings every --idle-interval), `app-message` (also sends
    /// --idle-message), and a dead peer (answers nothing). Put it after the URL, or write
    /// --idle=MAX.
    #[arg(
        long,
        value_name = "MAX",
        num_args = 0..=1,
        default_missing_value = "130s",
        value_parser = parse_idle_max
    )]
    pub idle: Option<Duration>,
    /// --idle: how often `client-ping` sends a Ping and `app-message` its message.
    #[arg(long, value_parser = parse_interval, default_value = "10s", requires = "idle")]
    pub idle_interval: Duration,
    /// --idle: the text message `app-message` sends every --idle-interval.
    #[arg(long, value_name = "TEXT", default_value = idle::DEFAULT_IDLE_MESSAGE, requires = "idle")]
    pub idle_message: String,
    /// --idle: the application itself, without the proxy (ws://APP/PATH): the three modes are
    /// held there too, to tell whether the proxy or the server cuts.
    #[arg(long, value_name = "URL", requires = "idle")]
    pub upstream: Option<String>,
    /// `--deploy` and its flags.
    #[command(flatten)]
    pub deploy: deploy::DeployOptions,
}

/// `--idle`'s MAX: a duration over zero; a URL in its place gets a hint.
fn parse_idle_max(text: &str) -> Result<Duration, String> {
    if text.contains("://") {
        return Err("expected a duration such as 130s; put the URL before --idle".to_owned());
    }
    parse_interval(text)
}

/// A duration over zero (humantime: `500ms`, `10s`, `2m`).
fn parse_interval(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be longer than 0s".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            origin: None,
            close_wait: DEFAULT_CLOSE_WAIT,
            timeout: DEFAULT_TIMEOUT,
            skip: Vec::new(),
            only: Vec::new(),
            with: Vec::new(),
            all: false,
            max_time: None,
            strict: false,
            keepalive_wait: None,
            max_size: None,
            insecure: false,
            browser: None,
            page_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            www: browser::default_www(),
            idle: None,
            idle_interval: idle::DEFAULT_IDLE_INTERVAL,
            idle_message: idle::DEFAULT_IDLE_MESSAGE.to_owned(),
            upstream: None,
            deploy: deploy::DeployOptions::default(),
        }
    }
}

impl Options {
    /// The deadline of the whole run: `--max-time`, or by default [`DEFAULT_MAX_TIME`], grown
    /// with `--idle` to cover MAX (see [`idle::max_time_for`]). An explicit `--max-time` that
    /// does not cover `--idle` is an error.
    pub fn max_time(&self) -> Result<Duration, CheckError> {
        let needed = self.idle.map(|max| idle::max_time_for(max, self.timeout));
        match (self.max_time, needed) {
            (Some(max_time), Some(needed)) if max_time < needed => Err(CheckError::MaxTimeShort {
                max_time,
                idle: self.idle.unwrap_or_default(),
                needed,
            }),
            (Some(max_time), _) => Ok(max_time),
            (None, needed) => Ok(needed.map_or(DEFAULT_MAX_TIME, |n| n.max(DEFAULT_MAX_TIME))),
        }
    }

    /// True when `id` is to run: not in `--skip`, and in `--only` when that is given. The
    /// checks the prediction and the crash finding are made of always run.
    pub fn selected(&self, id: CheckId) -> bool {
        id.always_runs()
            || (!self.skip.contains(&id) && (self.only.is_empty() || self.only.contains(&id)))
    }

    /// True unless `id` is a probe that can crash a fragile server and was not asked for by
    /// `--with`, `--all` or `--only`.
    pub fn opted_in(&self, id: CheckId) -> bool {
        match OptIn::of(id) {
            None => true,
            Some(opt_in) => self.all || self.with.contains(&opt_in) || self.only.contains(&id),
        }
    }
}

/// A signal that ends a run the way its normal end does: the report so far, and nothing the
/// check started left running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGINT (Ctrl-C).
    Int,
    /// SIGTERM (`kill`, `timeout`).
    Term,
    /// SIGHUP (the terminal went away).
    Hup,
}

impl Interrupt {
    /// The signal's number.
    pub fn number(self) -> i32 {
        match self {
            Interrupt::Int => nix::libc::SIGINT,
            Interrupt::Term => nix::libc::SIGTERM,
            Interrupt::Hup => nix::libc::SIGHUP,
        }
    }
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interrupt::Int => "SIGINT",
            Interrupt::Term => "SIGTERM",
            Interrupt::Hup => "SIGHUP",
        })
    }
}

/// Installs the handlers of SIGINT, SIGTERM and SIGHUP now, and returns the future that ends
/// with the first of them, for [`run_until`]. Must be called within a tokio runtime.
pub fn interrupts() -> std::io::Result<impl std::future::Future<Output = Interrupt>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => Interrupt::Int,
            _ = term.recv() => Interrupt::Term,
            _ = hup.recv() => Interrupt::Hup,
        }
    })
}

/// Why a run stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// `--max-time` passed.
    MaxTime(Duration),
    /// The process got a signal.
    Interrupted(Interrupt),
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stopped::MaxTime(max) => {
                write!(f, "--max-time {} reached", humantime::format_duration(*max))
            }
            Stopped::Interrupted(signal) => write!(f, "interrupted by {signal}"),
        }
    }
}

/// When a run stops early: at `--max-time`, or on a signal. Every wait of the run ends by
/// [`Stop::deadline`], and every check is raced against [`Stop::wait`].
#[derive(Debug, Clone)]
pub struct Stop {
    deadline: Instant,
    max_time: Duration,
    interrupt: watch::Receiver<Option<Interrupt>>,
}

impl Stop {
    /// A stop `max_time` from now, or when `interrupt` holds a signal.
    fn new(max_time: Duration, interrupt: watch::Receiver<Option<Interrupt>>) -> Stop {
        Stop {
            deadline: Instant::now() + max_time,
            max_time,
            interrupt,
        }
    }

    /// `--max-time` from the start of the run.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Why the run has stopped, if it has.
    pub fn now(&self) -> Option<Stopped> {
        if let Some(signal) = *self.interrupt.borrow() {
            return Some(Stopped::Interrupted(signal));
        }
        (Instant::now() >= self.deadline).then_some(Stopped::MaxTime(self.max_time))
    }

    /// Ends when the run stops, and says why.
    pub async fn wait(&self) -> Stopped {
        let mut interrupt = self.interrupt.clone();
        tokio::select! {
            Ok(signal) = interrupt.wait_for(Option::is_some) => {
                Stopped::Interrupted(signal.expect("waited for Some"))
            }
            () = tokio::time::sleep_until(self.deadline) => Stopped::MaxTime(self.max_time),
        }
    }
}

/// Why a check could not run at all. Each is one line; the binary exits with status 2.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// `--skip` names a check that always runs.
    #[error("--skip {0}: handshake, close-answered and server-survived always run")]
    SkipAlwaysRuns(CheckId),
    /// The argument is not a `ws://` or `wss://` URL.
    #[error("not a WebSocket URL: {url} ({problem})")]
    BadUrl {
        /// The argument as given.
        url: String,
        /// What is wrong with it.
        problem: UrlProblem,
    },
    /// The host did not resolve, or nothing accepted the connection.
    #[error("cannot reach {host}: {cause}")]
    Unreachable {
        /// `host:port` from the URL.
        host: String,
        /// What went wrong ("connection refused", ...).
        cause: Unreached,
    },
    /// The TLS handshake of a `wss://` URL failed.
    #[error("TLS with {host} failed: {cause}")]
    Tls {
        /// The host name from the URL.
        host: String,
        /// rustls's reason, and a hint.
        cause: String,
    },
    /// `--browser` could not run (no built page, no driver).
    #[error("--browser: {0}")]
    Browser(#[from] BrowserError),
    /// The run stopped (`--max-time`, a signal) before the first upgrade was answered.
    #[error("stopped before anything was checked: {0}")]
    Stopped(Stopped),
    /// The server answered, but not as a WebSocket server.
    #[error("{0}")]
    NotWebSocket(String),
    /// `--max-time` is too short for `--idle`.
    #[error(
        "--max-time {} is shorter than --idle {} needs: give {} or more (MAX + 3 × --timeout + \
         5s), or leave --max-time out",
        humantime::format_duration(*max_time),
        humantime::format_duration(*idle),
        humantime::format_duration(*needed)
    )]
    MaxTimeShort {
        /// `--max-time` as given.
        max_time: Duration,
        /// `--idle`'s MAX.
        idle: Duration,
        /// The least `--max-time` that covers it.
        needed: Duration,
    },
    /// `--upstream` is not a WebSocket URL, or cannot be reached.
    #[error("--upstream: {0}")]
    Upstream(Box<CheckError>),
    /// `--deploy` could not start: CMD did not run, or not every connection opened.
    #[error("--deploy: {0}")]
    Deploy(String),
}

/// What is wrong with a URL that is not a WebSocket URL.
#[derive(Debug, thiserror::Error)]
pub enum UrlProblem {
    /// It does not parse as a URL.
    #[error("{0}")]
    Parse(#[from] url::ParseError),
    /// Its scheme is not `ws` or `wss`.
    #[error("the scheme is {0}:, expected ws:// or wss://")]
    Scheme(String),
    /// It has no host.
    #[error("no host")]
    NoHost,
}

/// Why a host could not be reached, as one short phrase ("connection refused").
#[derive(Debug, thiserror::Error)]
pub enum Unreached {
    /// The lookup of the host name failed.
    #[error("cannot resolve the host ({0})")]
    Resolve(#[source] std::io::Error),
    /// The lookup gave no answer within `--timeout`.
    #[error("cannot resolve the host ({})", no_answer_within(*.0))]
    ResolveTimeout(Duration),
    /// The host name has no address.
    #[error("the host has no address")]
    NoAddress,
    /// Connecting failed: refused, reset, ...
    #[error("{}", io_cause(.0))]
    Io(#[source] std::io::Error),
    /// Nothing answered within `--timeout`.
    #[error("{}", no_answer_within(*.0))]
    NoAnswer(Duration),
}

/// Everything one run found: `{"url", "summary", "checks", "predicted"}` in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The URL checked.
    pub url: String,
    /// The verdict in one line: `ok: ...` or `fail: ...` (see [`Report::summary`]).
    pub summary: String,
    /// Every check, in the order it ran.
    pub checks: Vec<CheckResult>,
    /// What each browser engine will show after `close()`.
    pub predicted: Predicted,
    /// What each browser showed, with `--browser`, keyed by engine (`"chromium"`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<BTreeMap<Browser, Measured>>,
    /// With `--idle`: what the quiet connections saw and what cut them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleReport>,
    /// With `--idle`: what happened to the peer that answers no Ping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_peer: Option<DeadPeerReport>,
    /// What the close handshake did, which the prediction follows.
    #[serde(skip)]
    pub behaviour: ServerCloseBehaviour,
    /// Why the run stopped before its end, if it did (the summary says it too).
    #[serde(skip)]
    pub stopped: Option<Stopped>,
}

impl Report {
    /// The result of the check `id` (`"origin"`, ...).
    pub fn check(&self, id: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|check| check.id.as_str() == id)
    }

    /// The verdict of the check `id` (`"origin"`, ...); `None` when the report has no such check.
    pub fn verdict(&self, id: &str) -> Option<Verdict> {
        self.check(id).map(|check| check.verdict)
    }

    /// True when any check failed: browsers will have a problem (the binary exits with 1).
    pub fn failed(&self) -> bool {
        self.checks
            .iter()
            .any(|check| check.verdict == Verdict::Fail)
    }

    /// The binary's exit status: 128 + the signal's number when a signal ended the run,
    /// else 1 when the report [`fails`](Report::fails), else 0.
    pub fn exit_status(&self, strict: bool) -> u8 {
        match self.stopped {
            Some(Stopped::Interrupted(signal)) => {
                u8::try_from(128 + signal.number()).unwrap_or(u8::MAX)
            }
            _ => u8::from(self.fails(strict)),
        }
    }

    /// True when the binary exits with status 1: a check failed, or, with `strict`, warned.
    pub fn fails(&self, strict: bool) -> bool {
        self.failed()
            || (strict
                && self
                    .checks
                    .iter()
                    .any(|check| check.verdict == Verdict::Warn))
    }

    /// The verdict in one line, for the end of a CI log: the first failing check and its
    /// detail, or `ok` and the warnings.
    pub fn summary(checks: &[CheckResult], strict: bool) -> String {
        let ids = |verdict| {
            checks
                .iter()
                .filter(|check| check.verdict == verdict)
                .map(|check| check.id.as_str())
                .collect::<Vec<_>>()
        };
        let (failed, warned) = (ids(Verdict::Fail), ids(Verdict::Warn));
        let first = checks.iter().find(|check| {
            check.verdict == Verdict::Fail || (strict && check.verdict == Verdict::Warn)
        });
        match first {
            Some(first) => {
                let mut line = format!("fail: {}: {}", first.id, first.detail);
                let others: Vec<&str> = failed
                    .iter()
                    .chain(if strict { &warned[..] } else { &[] })
                    .copied()
                    .filter(|id| *id != first.id.as_str())
                    .collect();
                if !others.is_empty() {
                    line.push_str(&format!(" (also: {})", others.join(", ")));
                }
                line
            }
            None if warned.is_empty() => "ok: every check that ran passed".to_owned(),
            None => format!(
                "ok: nothing browsers will see; warnings: {} (--strict fails on them)",
                warned.join(", ")
            ),
        }
    }
}

/// Parses `url` and finds a server that accepts TCP connections there. The lookup and the
/// connects share one `--timeout` (and end at `stop`); at most [`MAX_ADDRESSES`] addresses are
/// tried, each with its share of the time left.
pub async fn resolve(url: &str, options: &Options, stop: &Stop) -> Result<Target, CheckError> {
    let bad_url = |problem| CheckError::BadUrl {
        url: url.to_owned(),
        problem,
    };
    let parsed = url::Url::parse(url).map_err(|error| bad_url(UrlProblem::Parse(error)))?;
    let secure = match parsed.scheme() {
        "ws" => false,
        "wss" => true,
        other => return Err(bad_url(UrlProblem::Scheme(other.to_owned()))),
    };
    let host_name = parsed
        .host_str()
        .ok_or_else(|| bad_url(UrlProblem::NoHost))?
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .unwrap_or(if secure { 443 } else { 80 });
    let host = match parsed.port() {
        Some(port) => format!("{host_name}:{port}"),
        None => host_name.clone(),
    };
    let lookup = host_name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let unreachable = |cause: Unreached| CheckError::Unreachable {
        host: format!("{host_name}:{port}"),
        cause,
    };
    let deadline = (Instant::now() + options.timeout).min(stop.deadline());
    let reach = async {
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout_at(deadline, tokio::net::lookup_host((lookup.as_str(), port)))
                .await
                .map_err(|_| unreachable(Unreached::ResolveTimeout(options.timeout)))?
                .map_err(|error| unreachable(Unreached::Resolve(error)))?
                .collect();
        first_reachable(&addrs, deadline, options.timeout)
            .await
            .map_err(unreachable)
    };
    let addr = tokio::select! {
        addr = reach => addr?,
        stopped = stop.wait() => return Err(CheckError::Stopped(stopped)),
    };
    let path = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let scheme = if secure { "https" } else { "http" };
    let origin = options
        .origin
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{host}"));
    let tls = if secure {
        let tls = tls::Tls::new(&lookup, options.insecure).map_err(|cause| CheckError::Tls {
            host: host_name.clone(),
            cause,
        })?;
        Some(tls)
    } else {
        None
    };
    Ok(Target {
        tls,
        url: parsed,
        addr,
        host,
        path,
        origin,
        timeout: options.timeout,
    })
}

/// The first of `addrs` (at most [`MAX_ADDRESSES`] of them) that accepts a TCP connection by
/// `deadline`; each address gets an equal share of the time left, so one that hangs cannot
/// take the others' time. `timeout` is only named in the error.
async fn first_reachable(
    addrs: &[SocketAddr],
    deadline: Instant,
    timeout: Duration,
) -> Result<SocketAddr, Unreached> {
    let addrs = &addrs[..addrs.len().min(MAX_ADDRESSES)];
    let mut last_error = Unreached::NoAddress;
    for (i, addr) in addrs.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(1);
        match tokio::time::timeout(share, tokio::net::TcpStream::connect(*addr)).await {
            Ok(Ok(_)) => return Ok(*addr),
            Ok(Err(error)) => last_error = Unreached::Io(error),
            Err(_) => last_error = Unreached::NoAnswer(timeout),
        }
    }
    Err(last_error)
}

/// [`run_until`] with no signal: the run ends at its end, or at `--max-time`.
pub async fn run(url: &str, options: &Options) -> Result<Report, CheckError> {
    run_until(url, options, std::future::pending()).await
}

/// Runs every check against `url` and predicts what browsers will show, until `--max-time`
/// or until `interrupt` ends (the binary passes [`interrupts`]), whichever comes first: then
/// the checks not run are `skip`, the browsers not measured say why, every process started
/// is ended and every temporary file removed, and the report says it stopped.
///
/// An error (exit 2) means there was nothing to check: a usage error, no server, or no
/// WebSocket server at the first upgrade. What happens after the first upgrade, the server
/// going down included, is a finding in the report.
pub async fn run_until(
    url: &str,
    options: &Options,
    interrupt: impl std::future::Future<Output = Interrupt>,
) -> Result<Report, CheckError> {
    let max_time = options.max_time()?;
    let (interrupted, interrupt_seen) = watch::channel(None);
    let stop = Stop::new(max_time, interrupt_seen);
    until_interrupted(run_with(url, options, &stop), interrupted, interrupt).await
}

/// Drives `run` to its end; when `interrupt` ends first, its signal goes to `interrupted` (the
/// sender of the run's [`Stop`]), and the run ends as it does at its deadline.
pub(crate) async fn until_interrupted<T>(
    run: impl std::future::Future<Output = T>,
    interrupted: watch::Sender<Option<Interrupt>>,
    interrupt: impl std::future::Future<Output = Interrupt>,
) -> T {
    let mut run = std::pin::pin!(run);
    let mut interrupt = std::pin::pin!(interrupt);
    let mut signalled = false;
    loop {
        tokio::select! {
            output = &mut run => return output,
            signal = &mut interrupt, if !signalled => {
                signalled = true;
                let _ = interrupted.send(Some(signal));
            }
        }
    }
}

async fn run_with(url: &str, options: &Options, stop: &Stop) -> Result<Report, CheckError> {
    if let Some(id) = options.skip.iter().find(|id| id.always_runs()) {
        return Err(CheckError::SkipAlwaysRuns(*id));
    }
    let target = resolve(url, options, stop).await?;
    let upstream = match &options.upstream {
        Some(upstream) => {
            // Its Origin is --origin, or its own (http://APP), as the URL's is: a proxy that
            // forwards Host makes the app compare the page's Origin with the public host, and
            // straight to the app the same check needs the app's own.
            let upstream = resolve(upstream, options, stop)
                .await
                .map_err(|error| CheckError::Upstream(Box::new(error)))?;
            Some(upstream)
        }
        None => None,
    };
    let checks::Ran {
        checks,
        behaviour,
        idle,
        dead_peer,
    } = checks::run_all(&target, upstream.as_ref(), options, stop).await?;
    let predicted = predict::predict(&behaviour);
    let browser = match options.browser {
        Some(choice) => Some(in_browsers(url, choice, &predicted, options, stop).await?),
        None => None,
    };
    let stopped = stop.now();
    let mut summary = Report::summary(&checks, options.strict);
    if let Some(stopped) = stopped {
        summary.push_str(&format!(
            "; stopped early ({stopped}): what did not run is skip"
        ));
    }
    Ok(Report {
        url: url.to_owned(),
        summary,
        checks,
        predicted,
        browser,
        idle,
        dead_peer,
        behaviour,
        stopped,
    })
}

/// `--browser`: serves the probe page and measures `close()` in each browser chosen. A
/// browser the run has no time for (`--max-time`, a signal) is [`Measured::Failed`] with why.
async fn in_browsers(
    url: &str,
    choice: BrowserChoice,
    predicted: &Predicted,
    options: &Options,
    stop: &Stop,
) -> Result<BTreeMap<Browser, Measured>, CheckError> {
    let (page_addr, page) = browser::serve_page(&options.www, options.page_addr).await?;
    // The task serving the page ends with this guard, however this function ends.
    let _page = AbortOnDrop(page);
    let page_url = format!("http://{page_addr}/");
    let mut measured = BTreeMap::new();
    for engine in choice.browsers() {
        if engine == Browser::Chromium && browser::running_as_root() {
            eprintln!("wsclose-check: running as root, so Chromium runs without its sandbox");
        }
        let label = format!(
            "{engine} (predicted {})",
            report::duration_text(predicted.of(engine).close_after_ms)
        );
        let result = match stop.now() {
            Some(stopped) => Measured::Failed {
                error: format!("not run: {stopped}"),
            },
            None => {
                let measure =
                    browser::with_progress(&label, browser::measure(engine, &page_url, url));
                // On a stop the measurement is dropped, and with it the driver: its process
                // group is ended and its profile removed before this returns.
                tokio::select! {
                    result = measure => result?,
                    stopped = stop.wait() => Measured::Failed {
                        error: format!("cut off: {stopped}"),
                    },
                }
            }
        };
        measured.insert(engine, result);
    }
    Ok(measured)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `no answer within 10s (--timeout)`.
pub(crate) fn no_answer_within(timeout: Duration) -> String {
    format!(
        "no answer within {} (--timeout)",
        humantime::format_duration(timeout)
    )
}

/// An I/O error as the short phrase people know ("connection refused").
fn io_cause(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        std::io::ErrorKind::TimedOut => "timed out".to_owned(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener whose accept queue is full: a connect to it hangs (its SYN is dropped).
    /// Returns the listener and the queued connections, to hold.
    async fn hanging() -> (
        SocketAddr,
        tokio::net::TcpListener,
        Vec<tokio::net::TcpStream>,
    ) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap(); // never accepts
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..8 {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(Duration::from_millis(300), connect).await {
                Ok(Ok(stream)) => queued.push(stream),
                _ => break,
            }
        }
        (addr, listener, queued)
    }

    #[tokio::test]
    async fn many_hanging_addresses_cost_one_timeout_and_only_the_first_few_are_tried() {
        let mut held = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..5 {
            let (addr, listener, queued) = hanging().await;
            addrs.push(addr);
            held.push((listener, queued));
        }
        // One that accepts, past the addresses tried: never reached.
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(open.local_addr().unwrap());
        let timeout = Duration::from_secs(2);
        let started = Instant::now();
        let reached = first_reachable(&addrs, started + timeout, timeout).await;
        let took = started.elapsed();
        assert!(
            matches!(reached, Err(Unreached::NoAnswer(_))),
            "{reached:?}"
        );
        // One --timeout for all of them (a fresh one each would be 6 s), with room for a busy
        // machine.
        assert!(took < timeout + Duration::from_secs(2), "{took:?}");
        // Within MAX_ADDRESSES, the one that accepts is found.
        let mut few = addrs[..MAX_ADDRESSES - 1].to_vec();
        few.push(open.local_addr().unwrap());
        let started = Instant::now();
        let reached = first_reachable(&few, started + timeout, timeout).await;
        assert_eq!(reached.unwrap(), open.local_addr().unwrap());
    }
}
