//! The checks, in the order they run. Each opens its own connection, so one broken behaviour
//! cannot hide another.
//!
//! # Order: what a browser does first, what can only harm a fragile server last
//! `handshake`, `close-answered`, `close-code-echoed`, `tcp-closed`, `ping-answered`,
//! `keepalive` and `origin` send only what a browser (or a well-behaved client library) sends.
//! `max-message-size` then sends one oversized, well-formed message, and `protocol-errors` sends
//! malformed frames, one case at a time. `server-survived` comes last: one more upgrade, to see
//! that the server still accepts connections.
//!
//! # A server that goes down is a finding
//! When a check cannot connect after the first handshake, [`Ctx::alive`] asks whether the server
//! still answers an upgrade. If it does not, the probe sent last (see [`Ctx::sent`]) is named in
//! a failing `server-survived`, every result so far is kept, and the checks not yet run are
//! `skip`.
//!
//! # Bounded against any server
//! Each check has one deadline, `--timeout` plus the waits it is asked to make (`--close-wait`,
//! `--keepalive-wait`), covering connect, TLS, the upgrade and every read and write. Frames the
//! server sends are read with [`RawClient::read_control`], which counts data frames and never
//! keeps them, and the oversized message is streamed, never held in memory.

use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::predict::CloseBehaviour;
use crate::raw::{Frame, Io, RawClient, RawCloseOutcome, UpgradeResponse, OP_PING, OP_PONG, RSV1};
use crate::{io_cause, no_answer_within, CheckError, Options, Target};

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
}

impl CheckId {
    /// Every check, in the order they run.
    pub const ALL: [CheckId; 10] = [
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
        }
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
    fn new(id: CheckId, verdict: Verdict, ms: Option<f64>, detail: String) -> Self {
        CheckResult {
            id,
            verdict,
            ms,
            detail,
            fix: None,
        }
    }

    fn skip(id: CheckId, detail: impl Into<String>) -> Self {
        CheckResult::new(id, Verdict::Skip, None, detail.into())
    }

    fn fix(mut self, fix: &str) -> Self {
        self.fix = Some(fix.to_owned());
        self
    }
}

const FIX_READ_LOOP: &str = "keep a read loop running for the whole life of the socket: control \
    frames are answered only while the read half is polled (gorilla: always run a read loop; \
    Rust: poll socket.next() until it returns None).";
const FIX_KEEP_POLLING: &str = "do not break out of the read loop on the peer's Close: \
    tungstenite only queues the reply, and the next read sends it; poll until the stream ends.";
const FIX_DROP_SOCKET: &str = "drop the whole socket the moment the close handshake ends; a \
    writer task that still holds the write half keeps TCP open.";
const FIX_ERROR_HANDLER: &str = "any client can take your server down with one malformed \
    frame; add an error handler on every socket (Node ws: ws.on('error', ...); elsewhere: \
    treat a read error as the end of that one connection, never of the process).";
const FIX_OVERSIZED: &str = "any client can take your server down with one large message; \
    limit the message size (answer 1009) and treat a read error as the end of that one \
    connection, never of the process.";
const FIX_WENT_DOWN: &str = "a well-formed client took your server down; look in its logs for \
    what this probe made it do.";

/// What the checks share: where to connect, the options, and the probe sent last.
struct Ctx<'a> {
    target: &'a Target,
    options: &'a Options,
    /// The probe sent last, named in `server-survived` if the server goes down after it.
    last_sent: Mutex<Option<(CheckId, String)>>,
}

/// The server no longer accepts connections (or answers upgrades).
#[derive(Debug, Clone)]
struct Down {
    /// The probe sent last before it went down, and the check that sent it.
    after: Option<(CheckId, String)>,
    /// What the upgrade after it got: "stopped accepting connections (connection refused)".
    how: String,
}

impl<'a> Ctx<'a> {
    /// The deadline of a check that starts now and is asked to wait `waits` on top.
    fn deadline(&self, waits: Duration) -> Instant {
        Instant::now() + self.options.timeout + waits
    }

    /// Records that `probe` (sent by check `id`) reached the server.
    fn sent(&self, id: CheckId, probe: impl Into<String>) {
        *self.last_sent.lock().expect("not poisoned") = Some((id, probe.into()));
    }

    fn last_sent(&self) -> Option<(CheckId, String)> {
        self.last_sent.lock().expect("not poisoned").clone()
    }

    /// Whether the server still answers an upgrade: `Err` says how it does not. A refused or
    /// reset connection is tried [`ALIVE_TRIES`] times, [`ALIVE_PAUSE`] apart; an upgrade
    /// with no answer by the deadline is not tried again (the server hangs).
    async fn alive(&self) -> Result<(), String> {
        let mut how = String::new();
        for attempt in 0..ALIVE_TRIES {
            if attempt > 0 {
                tokio::time::sleep(ALIVE_PAUSE).await;
            }
            let deadline = self.deadline(Duration::ZERO);
            match upgrade(self.target, &self.target.origin, deadline).await {
                Ok((_, client)) => {
                    goodbye(client).await;
                    return Ok(());
                }
                Err(_) if Instant::now() >= deadline => {
                    return Err(format!(
                        "stopped answering: an upgrade got {}",
                        no_answer_within(self.options.timeout)
                    ))
                }
                Err(CheckError::Unreachable { cause, .. }) => {
                    how = format!("stopped accepting connections ({cause})")
                }
                Err(error) => how = format!("stopped answering upgrades ({error})"),
            }
        }
        Err(how)
    }
}

/// How a guarded check ended (see [`Run::guard`]).
enum Guarded<T> {
    /// It ran.
    Ran(T),
    /// It could not connect (or ran out of time), but the server is up: the check fails.
    Failed(String),
    /// The server is down: the check was marked `skip`.
    Down,
}

/// The checks run so far and, once the server went down, how.
struct Run<'c, 'a> {
    ctx: &'c Ctx<'a>,
    results: Vec<CheckResult>,
    down: Option<Down>,
}

impl Run<'_, '_> {
    /// False (and a `skip` recorded) when `id` is not to run: not selected, or the server is
    /// down.
    fn should_run(&mut self, id: CheckId) -> bool {
        let options = self.ctx.options;
        let why = if !options.selected(id) {
            let flag = if options.skip.is_empty() {
                "--only"
            } else {
                "--skip"
            };
            format!("not selected ({flag})")
        } else if self.down.is_some() {
            "not run: the server went down (see server-survived)".to_owned()
        } else {
            return true;
        };
        self.results.push(CheckResult::skip(id, why));
        false
    }

    /// Runs one check until `deadline` (plus a grace). When it cannot connect or runs out of
    /// time, asks whether the server is still up: if not, records how and marks `id` skip.
    async fn guard<T>(
        &mut self,
        id: CheckId,
        deadline: Instant,
        check: impl std::future::Future<Output = Result<T, CheckError>>,
    ) -> Guarded<T> {
        let why = match tokio::time::timeout_at(deadline + DEADLINE_GRACE, check).await {
            Ok(Ok(value)) => return Guarded::Ran(value),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!(
                "did not finish: {}",
                no_answer_within(self.ctx.options.timeout)
            ),
        };
        match self.ctx.alive().await {
            Ok(()) => Guarded::Failed(why),
            Err(how) => {
                self.went_down(how);
                self.results.push(CheckResult::skip(
                    id,
                    "not run: the server went down (see server-survived)",
                ));
                Guarded::Down
            }
        }
    }

    fn went_down(&mut self, how: String) {
        if self.down.is_none() {
            let after = self.ctx.last_sent();
            self.down = Some(Down { after, how });
        }
    }

    /// Pushes what a guarded check returned, or its failure.
    fn push(&mut self, id: CheckId, guarded: Guarded<CheckResult>) {
        match guarded {
            Guarded::Ran(result) => self.results.push(result),
            Guarded::Failed(why) => {
                self.results
                    .push(CheckResult::new(id, Verdict::Fail, None, why))
            }
            Guarded::Down => {}
        }
    }
}

/// Runs every check against `target`; also returns what the close handshake did. An error
/// means the first upgrade found no WebSocket server to check.
pub async fn run_all(
    target: &Target,
    options: &Options,
) -> Result<(Vec<CheckResult>, CloseBehaviour), CheckError> {
    let ctx = Ctx {
        target,
        options,
        last_sent: Mutex::new(None),
    };
    let mut run = Run {
        ctx: &ctx,
        results: Vec::new(),
        down: None,
    };
    let (result, refused) = handshake(&ctx).await?;
    run.results.push(result);

    let behaviour = match refused {
        Some(refused) => {
            for id in [
                CheckId::CloseAnswered,
                CheckId::CloseCodeEchoed,
                CheckId::TcpClosed,
                CheckId::PingAnswered,
                CheckId::Keepalive,
            ] {
                run.results.push(CheckResult::skip(id, refused.why()));
            }
            refused.behaviour()
        }
        None => {
            let deadline = ctx.deadline(options.close_wait + TCP_WATCH);
            let measured = run
                .guard(
                    CheckId::CloseAnswered,
                    deadline,
                    close_behaviour(&ctx, deadline),
                )
                .await;
            // Without a measurement the browser's connection fails: 1006, as if dropped.
            let behaviour = match &measured {
                Guarded::Ran(behaviour) => *behaviour,
                _ => CloseBehaviour::Dropped { after_ms: 0.0 },
            };
            match measured {
                Guarded::Ran(behaviour) => run.results.push(close_answered(&behaviour, options)),
                Guarded::Failed(why) => run.push(CheckId::CloseAnswered, Guarded::Failed(why)),
                Guarded::Down => {}
            }

            if run.should_run(CheckId::CloseCodeEchoed) {
                let deadline = ctx.deadline(options.close_wait);
                let result = run
                    .guard(
                        CheckId::CloseCodeEchoed,
                        deadline,
                        close_code_echoed(&ctx, deadline, &behaviour),
                    )
                    .await;
                run.push(CheckId::CloseCodeEchoed, result);
            }
            if run.should_run(CheckId::TcpClosed) {
                run.results.push(tcp_closed(&behaviour));
            }
            if run.should_run(CheckId::PingAnswered) {
                let deadline = ctx.deadline(options.close_wait);
                let result = run
                    .guard(
                        CheckId::PingAnswered,
                        deadline,
                        ping_answered(&ctx, deadline),
                    )
                    .await;
                run.push(CheckId::PingAnswered, result);
            }
            if run.should_run(CheckId::Keepalive) {
                let wait = options.keepalive_wait.unwrap_or_default();
                let deadline = ctx.deadline(wait);
                let result = run
                    .guard(CheckId::Keepalive, deadline, keepalive(&ctx, deadline))
                    .await;
                run.push(CheckId::Keepalive, result);
            }
            behaviour
        }
    };

    if run.should_run(CheckId::Origin) {
        let deadline = ctx.deadline(Duration::ZERO);
        let result = run
            .guard(CheckId::Origin, deadline, origin(&ctx, deadline))
            .await;
        run.push(CheckId::Origin, result);
    }
    if refused.is_some() {
        for id in [CheckId::MaxMessageSize, CheckId::ProtocolErrors] {
            run.results
                .push(CheckResult::skip(id, refused_why(refused)));
        }
    } else {
        if run.should_run(CheckId::MaxMessageSize) {
            let deadline = ctx.deadline(options.close_wait);
            let result = run
                .guard(
                    CheckId::MaxMessageSize,
                    deadline,
                    max_message_size(&ctx, deadline),
                )
                .await;
            run.push(CheckId::MaxMessageSize, result);
        }
        if run.should_run(CheckId::ProtocolErrors) {
            let (result, down) = protocol_errors(&ctx).await;
            run.results.push(result);
            if let Some(how) = down {
                run.went_down(how);
            }
        }
    }
    let survived = server_survived(&mut run).await;
    run.results.push(survived);
    Ok((run.results, behaviour))
}

fn refused_why(refused: Option<Refused>) -> &'static str {
    refused.map_or("", Refused::why)
}

/// Why the first upgrade gave no connection to check.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// 403 (or another status a browser fails on): the server refused our Origin.
    Status(u16),
    /// A 101 whose `Sec-WebSocket-Accept` does not match the key.
    BadAccept,
}

impl Refused {
    fn why(self) -> &'static str {
        match self {
            Refused::Status(_) => "the upgrade was refused",
            Refused::BadAccept => "browsers refuse the upgrade (wrong Sec-WebSocket-Accept)",
        }
    }

    fn behaviour(self) -> CloseBehaviour {
        match self {
            Refused::Status(status) => CloseBehaviour::Refused { status },
            Refused::BadAccept => CloseBehaviour::Refused { status: 101 },
        }
    }
}

/// `server-survived`: one more upgrade after every probe; or how the server went down, after
/// which probe.
async fn server_survived(run: &mut Run<'_, '_>) -> CheckResult {
    let id = CheckId::ServerSurvived;
    if run.down.is_none() {
        let started = Instant::now();
        match run.ctx.alive().await {
            Ok(()) => {
                return CheckResult::new(
                    id,
                    Verdict::Pass,
                    Some(millis(started.elapsed())),
                    "the server still accepted an upgrade after every probe".into(),
                )
            }
            Err(how) => run.went_down(how),
        }
    }
    let down = run.down.clone().expect("set above");
    let (detail, fix) = match &down.after {
        Some((check, probe)) => {
            let fix = match check {
                CheckId::ProtocolErrors => FIX_ERROR_HANDLER,
                CheckId::MaxMessageSize => FIX_OVERSIZED,
                _ => FIX_WENT_DOWN,
            };
            (format!("the server {} after {probe}", down.how), fix)
        }
        None => (format!("the server {}", down.how), FIX_WENT_DOWN),
    };
    CheckResult::new(id, Verdict::Fail, None, detail).fix(fix)
}

/// A raw client over TCP, or over TLS for `wss://`.
pub type Client = RawClient<Box<dyn Io>>;

/// Upgrades with `origin` (over TLS for `wss://`), all by `deadline`: the response, and the
/// client when it is a 101 with the right `Sec-WebSocket-Accept`.
async fn upgrade(
    target: &Target,
    origin: &str,
    deadline: Instant,
) -> Result<(UpgradeResponse, Option<Client>), CheckError> {
    let timeout = || no_answer_within(target.timeout);
    let unreachable = |cause: String| CheckError::Unreachable {
        host: target.addr.to_string(),
        cause,
    };
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(target.addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => return Err(unreachable(io_cause(&error))),
        Err(_) => return Err(unreachable(timeout())),
    };
    tcp.set_nodelay(true)
        .map_err(|error| unreachable(io_cause(&error)))?;
    let Some(tls) = &target.tls else {
        return finish_upgrade(target, origin, deadline, Box::new(tcp)).await;
    };
    let handshake = tls.connector.connect(tls.server_name.clone(), tcp);
    let cause = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(tls_stream)) => {
            return finish_upgrade(target, origin, deadline, Box::new(tls_stream)).await
        }
        // rustls's own errors (a certificate it does not trust, ...) come as InvalidData.
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::InvalidData => {
            format!("{error} (--insecure accepts a self-signed certificate)")
        }
        Ok(Err(error)) => io_cause(&error),
        Err(_) => format!("the TLS handshake got {}", timeout()),
    };
    Err(CheckError::Tls {
        host: target.host.clone(),
        cause,
    })
}

/// The HTTP part of [`upgrade`].
async fn finish_upgrade(
    target: &Target,
    origin: &str,
    deadline: Instant,
    stream: Box<dyn Io>,
) -> Result<(UpgradeResponse, Option<Client>), CheckError> {
    let headers = [("Origin", origin)];
    let upgrade =
        RawClient::upgrade_stream_until(stream, &target.host, &target.path, &headers, deadline);
    match tokio::time::timeout_at(deadline, upgrade).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) if Instant::now() < deadline => {
            Err(match error.downcast_ref::<std::io::Error>() {
                Some(io) => CheckError::Unreachable {
                    host: target.addr.to_string(),
                    cause: io_cause(io),
                },
                None => CheckError::NotWebSocket(format!(
                    "{} is not a WebSocket endpoint: {error:#}",
                    target.url
                )),
            })
        }
        _ => Err(CheckError::NotWebSocket(format!(
            "{} is not a WebSocket endpoint: the upgrade got {}",
            target.url,
            no_answer_within(target.timeout)
        ))),
    }
}

/// A fresh, upgraded connection for one check, by `deadline`.
async fn connect(target: &Target, deadline: Instant) -> Result<Client, CheckError> {
    match upgrade(target, &target.origin, deadline).await? {
        (_, Some(client)) => Ok(client),
        (response, None) => Err(CheckError::NotWebSocket(format!(
            "a later upgrade got {}{}",
            response.status,
            if response.status == 101 {
                " with a wrong Sec-WebSocket-Accept"
            } else {
                ""
            }
        ))),
    }
}

/// Ends a connection the check no longer needs the way a browser would, with Close(1000)
/// rather than a bare disconnect (which some servers log, or even die of), then drops it
/// without waiting for the answer.
async fn goodbye(client: Option<Client>) {
    if let Some(mut client) = client {
        let close = Frame::close(1000, b"");
        let _ = tokio::time::timeout(Duration::from_secs(1), client.send(&close)).await;
    }
}

/// Milliseconds, to the microsecond.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// `handshake`: the upgrade's status, its `Sec-WebSocket-Accept` and its time. A 403 or a
/// wrong accept is a check failure (browsers refuse the connection); anything else that is not
/// a 101 means there is no WebSocket server to check.
async fn handshake(ctx: &Ctx<'_>) -> Result<(CheckResult, Option<Refused>), CheckError> {
    let id = CheckId::Handshake;
    let target = ctx.target;
    let started = Instant::now();
    let (response, client) = upgrade(target, &target.origin, ctx.deadline(Duration::ZERO)).await?;
    let ms = Some(millis(started.elapsed()));
    ctx.sent(id, "the first upgrade");
    goodbye(client).await;
    match response.status {
        101 if response.accept_matches() => Ok((
            CheckResult::new(
                id,
                Verdict::Pass,
                ms,
                format!("101 Switching Protocols with Origin {}", target.origin),
            ),
            None,
        )),
        101 => Ok((
            CheckResult::new(
                id,
                Verdict::Fail,
                ms,
                format!(
                    "101 with Sec-WebSocket-Accept {:?} where the key calls for {:?}: browsers refuse the connection",
                    response.header("sec-websocket-accept").unwrap_or("(none)"),
                    response.expected_accept
                ),
            )
            .fix("answer each request's Sec-WebSocket-Key with base64(SHA-1(key + \"258EAFA5-E914-47DA-95CA-C5AB0DC85B11\")) (RFC 6455 §4.2.2); never a fixed or cached value."),
            Some(Refused::BadAccept),
        )),
        403 => Ok((
            CheckResult::new(
                id,
                Verdict::Fail,
                ms,
                format!("403 Forbidden: the server refused Origin {}", target.origin),
            )
            .fix(
                "pass the origin of the page that opens the socket with --origin https://your.site",
            ),
            Some(Refused::Status(403)),
        )),
        status => Err(CheckError::NotWebSocket(format!(
            "{} is not a WebSocket endpoint: the upgrade got HTTP {status}, not 101",
            target.url
        ))),
    }
}

/// Sends Close(1000) and watches what follows: the server's Close, and the end of TCP.
async fn close_behaviour(ctx: &Ctx<'_>, deadline: Instant) -> Result<CloseBehaviour, CheckError> {
    let mut client = connect(ctx.target, deadline).await?;
    let sent = Instant::now();
    if client.send(&Frame::close(1000, b"")).await.is_err() {
        return Ok(CloseBehaviour::Dropped { after_ms: 0.0 });
    }
    ctx.sent(CheckId::CloseAnswered, "close-answered (Close 1000)");
    let wait = ctx.options.close_wait;
    let (outcome, _) = client.await_close((sent + wait).min(deadline)).await;
    Ok(match outcome {
        RawCloseOutcome::Close(reply) => {
            let close_ms = millis(sent.elapsed());
            let tcp_end_ms = client.wait_tcp_end(TCP_WATCH).await.map(millis);
            CloseBehaviour::Answered {
                close_ms,
                code: reply.close_code(),
                tcp_end_ms,
            }
        }
        RawCloseOutcome::Eof | RawCloseOutcome::Reset | RawCloseOutcome::Garbage(_) => {
            CloseBehaviour::Dropped {
                after_ms: millis(sent.elapsed()),
            }
        }
        RawCloseOutcome::TimedOut => CloseBehaviour::Unanswered {
            waited_ms: millis(wait),
        },
    })
}

/// `close-answered`: Close(1000) sent, the server's Close received within `--close-wait`, and
/// soon enough that a browser's `close` event is not late.
fn close_answered(behaviour: &CloseBehaviour, options: &Options) -> CheckResult {
    let id = CheckId::CloseAnswered;
    let code_text = |code: Option<u16>| code.map_or("no code".into(), |c| c.to_string());
    match *behaviour {
        CloseBehaviour::Answered { close_ms, code, .. }
            if close_ms >= millis(BROWSER_WAIT_BOUND) =>
        {
            CheckResult::new(
                id,
                Verdict::Fail,
                Some(close_ms),
                format!(
                    "Close({}) came back only after {}: browsers wait that long for the close event",
                    code_text(code),
                    crate::report::duration_text(close_ms)
                ),
            )
            .fix(FIX_READ_LOOP)
        }
        CloseBehaviour::Answered { close_ms, code, .. } => CheckResult::new(
            id,
            Verdict::Pass,
            Some(close_ms),
            format!("Close({}) came back", code_text(code)),
        ),
        CloseBehaviour::Dropped { after_ms } => CheckResult::new(
            id,
            Verdict::Fail,
            Some(after_ms),
            "the server closed TCP without answering the Close: browsers see 1006".to_owned(),
        )
        .fix(FIX_KEEP_POLLING),
        CloseBehaviour::Unanswered { .. } => CheckResult::new(
            id,
            Verdict::Fail,
            None,
            format!(
                "no Close within {}: the server is not reading the connection",
                humantime::format_duration(options.close_wait)
            ),
        )
        .fix(FIX_READ_LOOP),
        CloseBehaviour::Refused { .. } => {
            CheckResult::skip(id, "the upgrade was refused".to_owned())
        }
    }
}

/// `close-code-echoed`: Close(4000, reason) sent; the same code and reason come back, which is
/// what the browser's `close` event shows.
async fn close_code_echoed(
    ctx: &Ctx<'_>,
    deadline: Instant,
    behaviour: &CloseBehaviour,
) -> Result<CheckResult, CheckError> {
    let id = CheckId::CloseCodeEchoed;
    if !matches!(behaviour, CloseBehaviour::Answered { .. }) {
        let detail = "no Close comes back at all (see close-answered)".to_owned();
        return Ok(CheckResult::skip(id, detail));
    }
    let reason = b"wsclose-check";
    let mut client = connect(ctx.target, deadline).await?;
    let sent = Instant::now();
    client.send(&Frame::close(4000, reason)).await.ok();
    ctx.sent(id, "close-code-echoed (Close 4000)");
    let (outcome, _) = client
        .await_close((sent + ctx.options.close_wait).min(deadline))
        .await;
    let ms = Some(millis(sent.elapsed()));
    Ok(match outcome {
        RawCloseOutcome::Close(reply) if reply.close_code() == Some(4000) => {
            if reply.close_reason() == reason {
                CheckResult::new(
                    id,
                    Verdict::Pass,
                    ms,
                    "4000 and its reason came back".into(),
                )
            } else {
                CheckResult::new(
                    id,
                    Verdict::Warn,
                    ms,
                    format!(
                        "4000 came back with reason {:?} instead of {:?}: the close event will show reason {:?}",
                        String::from_utf8_lossy(reply.close_reason()),
                        String::from_utf8_lossy(reason),
                        String::from_utf8_lossy(reply.close_reason()),
                    ),
                )
                .fix("echo the peer's reason too; browsers show it as CloseEvent.reason.")
            }
        }
        RawCloseOutcome::Close(reply) => {
            let shown = reply.close_code().unwrap_or(crate::predict::NO_STATUS);
            CheckResult::new(
                id,
                Verdict::Warn,
                ms,
                format!(
                    "Close(4000) was answered with {}: the close event will show code {shown} instead of 4000",
                    reply
                        .close_code()
                        .map_or("no code".into(), |c| c.to_string())
                ),
            )
            .fix("answer a Close with the peer's own code (RFC 6455 §5.5.1); the browser reports it.")
        }
        other => CheckResult::new(
            id,
            Verdict::Fail,
            ms,
            format!(
                "Close(4000) got {} instead of a Close: browsers see 1006",
                outcome_text(&other)
            ),
        )
        .fix(FIX_KEEP_POLLING),
    })
}

/// `tcp-closed`: after the server's Close, the server closes TCP within [`TCP_CLOSE_BOUND`]
/// (pass), before Chromium's `close` event is [`BROWSER_WAIT_BOUND`] late (warn), or not (fail).
fn tcp_closed(behaviour: &CloseBehaviour) -> CheckResult {
    let id = CheckId::TcpClosed;
    let late = "TCP stayed open after the close handshake; Chromium waits up to 2 s for it";
    match *behaviour {
        CloseBehaviour::Answered {
            tcp_end_ms: Some(ms),
            ..
        } if ms <= millis(TCP_CLOSE_BOUND) => CheckResult::new(
            id,
            Verdict::Pass,
            Some(ms),
            "the server closed TCP right after its Close".into(),
        ),
        CloseBehaviour::Answered {
            tcp_end_ms: Some(ms),
            ..
        } if ms < millis(BROWSER_WAIT_BOUND) => CheckResult::new(
            id,
            Verdict::Warn,
            Some(ms),
            format!(
                "{late}: its close event comes {} late",
                crate::report::duration_text(ms)
            ),
        )
        .fix(FIX_DROP_SOCKET),
        CloseBehaviour::Answered {
            tcp_end_ms: Some(ms),
            ..
        } => CheckResult::new(id, Verdict::Fail, Some(ms), late.into()).fix(FIX_DROP_SOCKET),
        CloseBehaviour::Answered {
            tcp_end_ms: None, ..
        } => CheckResult::new(
            id,
            Verdict::Fail,
            None,
            format!(
                "TCP still open {} after the close handshake; Chromium waits up to 2 s for it",
                humantime::format_duration(TCP_WATCH)
            ),
        )
        .fix(FIX_DROP_SOCKET),
        _ => CheckResult::skip(id, "no close handshake to follow (see close-answered)"),
    }
}

/// `ping-answered`: a Ping with a payload gets a Pong with the same payload. Browsers never
/// send a Ping, so anything else is a warning.
async fn ping_answered(ctx: &Ctx<'_>, deadline: Instant) -> Result<CheckResult, CheckError> {
    let id = CheckId::PingAnswered;
    let mut client = connect(ctx.target, deadline).await?;
    let sent = Instant::now();
    client.send(&Frame::ping(PING_PAYLOAD)).await.ok();
    ctx.sent(id, "ping-answered (a Ping)");
    let wait_until = (sent + ctx.options.close_wait).min(deadline);
    let result = pong(ctx, &mut client, sent, wait_until).await;
    goodbye(Some(client)).await;
    Ok(result)
}

/// What came back for `ping-answered`'s Ping, sent at `sent`.
async fn pong(
    ctx: &Ctx<'_>,
    client: &mut Client,
    sent: Instant,
    wait_until: Instant,
) -> CheckResult {
    let id = CheckId::PingAnswered;
    let mut skipped = 0;
    loop {
        match tokio::time::timeout_at(wait_until, client.read_control(&mut skipped)).await {
            Ok(Ok(Some(frame))) if frame.opcode == OP_PONG => {
                let ms = Some(millis(sent.elapsed()));
                return if frame.payload == PING_PAYLOAD {
                    CheckResult::new(id, Verdict::Pass, ms, "Pong with the same payload".into())
                } else {
                    CheckResult::new(id, Verdict::Warn, ms, "Pong with another payload".into())
                        .fix("a Pong must carry the Ping's payload (RFC 6455 §5.5.3).")
                };
            }
            Ok(Ok(Some(_other))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) => {
                return CheckResult::new(
                    id,
                    Verdict::Warn,
                    Some(millis(sent.elapsed())),
                    "the connection ended instead of a Pong".into(),
                )
            }
            Err(_) => {
                return CheckResult::new(
                    id,
                    Verdict::Warn,
                    None,
                    format!(
                        "no Pong within {}: the server is not reading",
                        humantime::format_duration(ctx.options.close_wait)
                    ),
                )
                .fix(FIX_READ_LOOP)
            }
        }
    }
}

/// `keepalive`: the server sends a Ping within `--keepalive-wait`.
async fn keepalive(ctx: &Ctx<'_>, deadline: Instant) -> Result<CheckResult, CheckError> {
    let id = CheckId::Keepalive;
    let Some(wait) = ctx.options.keepalive_wait else {
        let detail = "not asked for (--keepalive-wait)".to_owned();
        return Ok(CheckResult::skip(id, detail));
    };
    let mut client = connect(ctx.target, deadline).await?;
    let started = Instant::now();
    let wait_until = (started + wait).min(deadline);
    let mut skipped = 0;
    loop {
        match tokio::time::timeout_at(wait_until, client.read_control(&mut skipped)).await {
            Ok(Ok(Some(frame))) if frame.opcode == OP_PING => {
                let ms = Some(millis(started.elapsed()));
                goodbye(Some(client)).await;
                return Ok(CheckResult::new(
                    id,
                    Verdict::Pass,
                    ms,
                    "the server pinged".into(),
                ));
            }
            Ok(Ok(Some(_other))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                goodbye(Some(client)).await;
                let detail = format!(
                    "no Ping within {}; an idle socket behind a proxy is cut at its read timeout (nginx: 60 s) without a Close, and the browser sees 1006",
                    humantime::format_duration(wait)
                );
                return Ok(CheckResult::new(id, Verdict::Fail, None, detail).fix(
                    "ping more often than the proxy's idle timeout, and drop a peer whose pong is late.",
                ));
            }
        }
    }
}

/// One fail-fast case of `protocol-errors`.
struct ProtocolCase {
    name: &'static str,
    bytes: Vec<u8>,
    expected: u16,
}

fn protocol_cases() -> Vec<ProtocolCase> {
    let case = |name, frame: Frame, expected| ProtocolCase {
        name,
        bytes: frame.encode(),
        expected,
    };
    // FIN + binary; masked, 127 = a 64-bit length follows; the length; the masking key.
    let mut top_bit = vec![0x82, 0x80 | 127];
    top_bit.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    top_bit.extend_from_slice(&[1, 2, 3, 4]);
    vec![
        case("unmasked frame", Frame::text("x").unmasked(), 1002),
        case(
            "RSV1 without an extension",
            Frame::text("x").rsv(RSV1),
            1002,
        ),
        case("reserved opcode 0x3", Frame::new(0x3, "x"), 1002),
        case("reserved control opcode 0xB", Frame::new(0xB, "x"), 1002),
        case("fragmented Ping", Frame::ping("x").fin(false), 1002),
        case("Ping over 125 bytes", Frame::ping(vec![0u8; 126]), 1002),
        case(
            "continuation without a start",
            Frame::continuation("x"),
            1002,
        ),
        case(
            "invalid UTF-8 text",
            Frame::text(vec![b'o', 0xC3, 0x28]),
            1007,
        ),
        case("close code 1005", Frame::close(1005, b""), 1002),
        case("close code 999", Frame::close(999, b""), 1002),
        ProtocolCase {
            name: "64-bit length with its top bit set",
            bytes: top_bit,
            expected: 1002,
        },
    ]
}

/// What one probe got back.
fn outcome_text(outcome: &RawCloseOutcome) -> String {
    match outcome {
        RawCloseOutcome::Close(frame) => frame
            .close_code()
            .map_or("a Close without code".into(), |code| code.to_string()),
        RawCloseOutcome::Eof => "TCP closed without a Close".into(),
        RawCloseOutcome::Reset => "a TCP reset".into(),
        RawCloseOutcome::TimedOut => "nothing".into(),
        RawCloseOutcome::Garbage(_) => "bytes that are not a frame".into(),
    }
}

/// One protocol case on its own connection: connect, send, wait for the Close.
async fn protocol_case(ctx: &Ctx<'_>, case: &ProtocolCase) -> Result<RawCloseOutcome, CheckError> {
    let deadline = ctx.deadline(ctx.options.close_wait);
    let run = async {
        let mut client = connect(ctx.target, deadline).await?;
        let sent = Instant::now();
        client.send_bytes(&case.bytes).await.ok();
        ctx.sent(
            CheckId::ProtocolErrors,
            format!("protocol-errors ({})", case.name),
        );
        let wait_until = (sent + ctx.options.close_wait).min(deadline);
        Ok(client.await_close(wait_until).await.0)
    };
    tokio::time::timeout_at(deadline + DEADLINE_GRACE, run)
        .await
        .unwrap_or(Ok(RawCloseOutcome::TimedOut))
}

/// `protocol-errors`: each malformed case on a fresh connection, one after the other, so a
/// server that goes down is caught after the case that did it. Once a case gets no answer at
/// all (a server that does not read), the rest run at once rather than each waiting
/// `--close-wait`. Browsers never send any of these, so a wrong answer is a warning; a
/// server that goes down is reported by `server-survived` (returned here as the second value).
async fn protocol_errors(ctx: &Ctx<'_>) -> (CheckResult, Option<String>) {
    let id = CheckId::ProtocolErrors;
    let started = Instant::now();
    let cases = protocol_cases();
    let mut outcomes: Vec<Option<Result<RawCloseOutcome, String>>> = vec![None; cases.len()];
    let mut down = None;
    let mut rest_from = cases.len();
    for (i, case) in cases.iter().enumerate() {
        match protocol_case(ctx, case).await {
            Ok(outcome) => {
                let unanswered = outcome == RawCloseOutcome::TimedOut;
                outcomes[i] = Some(Ok(outcome));
                if unanswered {
                    rest_from = i + 1;
                    break;
                }
            }
            Err(error) => match ctx.alive().await {
                Ok(()) => outcomes[i] = Some(Err(error.to_string())),
                Err(how) => {
                    down = Some(how);
                    break;
                }
            },
        }
    }
    if down.is_none() && rest_from < cases.len() {
        let rest = join_all(
            cases[rest_from..]
                .iter()
                .map(|case| protocol_case(ctx, case)),
        )
        .await;
        let mut failed = false;
        for (slot, outcome) in outcomes[rest_from..].iter_mut().zip(rest) {
            failed |= outcome.is_err();
            *slot = Some(outcome.map_err(|error| error.to_string()));
        }
        if failed {
            if let Err(how) = ctx.alive().await {
                let names: Vec<&str> = cases[rest_from..].iter().map(|case| case.name).collect();
                ctx.sent(
                    id,
                    format!(
                        "protocol-errors (one of these, sent at once: {})",
                        names.join(", ")
                    ),
                );
                down = Some(how);
            }
        }
    }
    let ms = Some(millis(started.elapsed()));
    let ran: Vec<(&ProtocolCase, &Result<RawCloseOutcome, String>)> = cases
        .iter()
        .zip(&outcomes)
        .filter_map(|(case, outcome)| outcome.as_ref().map(|outcome| (case, outcome)))
        .collect();
    // The cases that did not get their exact code, with what they got instead.
    let wrong: Vec<(&ProtocolCase, String)> = ran
        .iter()
        .filter(|(case, outcome)| {
            !matches!(outcome, Ok(RawCloseOutcome::Close(frame)) if frame.close_code() == Some(case.expected))
        })
        .map(|(case, outcome)| {
            let got = match outcome {
                Ok(outcome) => outcome_text(outcome),
                Err(error) => format!("no connection ({error})"),
            };
            (*case, got)
        })
        .collect();
    let exact = ran.len() - wrong.len();
    let mut detail = format!("{exact}/{} got the exact close code", cases.len());
    if let Some((_, first)) = wrong.first() {
        if wrong.iter().all(|(_, got)| got == first) {
            // One answer for every case, say it once.
            detail.push_str(&format!("; the other {} got {first}", wrong.len()));
        } else {
            let each: Vec<String> = wrong
                .iter()
                .map(|(case, got)| format!("{} → {got} (expected {})", case.name, case.expected))
                .collect();
            detail.push_str("; ");
            detail.push_str(&each.join("; "));
        }
    }
    if down.is_some() {
        detail.push_str(&format!(
            "; {} not sent: the server went down (see server-survived)",
            cases.len() - ran.len()
        ));
    }
    let result = if wrong.is_empty() && down.is_none() {
        CheckResult::new(id, Verdict::Pass, ms, detail)
    } else {
        CheckResult::new(id, Verdict::Warn, ms, detail).fix(
            "fail the connection on a protocol error: Close 1002 (1007 for bad UTF-8), then drop it (RFC 6455 §7.4.1); browsers never send these frames, so no browser sees this.",
        )
    };
    (result, down)
}

/// `max-message-size`: with `--max-size N`, a message of N+1 bytes gets 1009. The message is
/// streamed, never held in memory, while the check reads for the server's Close.
async fn max_message_size(ctx: &Ctx<'_>, deadline: Instant) -> Result<CheckResult, CheckError> {
    let id = CheckId::MaxMessageSize;
    let Some(max) = ctx.options.max_size else {
        let detail = "not asked for (--max-size)".to_owned();
        return Ok(CheckResult::skip(id, detail));
    };
    let len = max as u64 + 1;
    let mut client = connect(ctx.target, deadline).await?;
    let started = Instant::now();
    ctx.sent(id, format!("max-message-size (a {len}-byte message)"));
    let streamed = client
        .send_message_streamed(len, ctx.options.close_wait, deadline)
        .await;
    let ms = Some(millis(started.elapsed()));
    let fix_1009 =
        "limit the message size and answer a larger message with Close 1009 (message too big).";
    Ok(match streamed.outcome {
        RawCloseOutcome::Close(frame) if frame.close_code() == Some(1009) => {
            CheckResult::new(id, Verdict::Pass, ms, format!("{len} bytes got 1009"))
        }
        RawCloseOutcome::Close(frame) => {
            let shown = frame.close_code().unwrap_or(crate::predict::NO_STATUS);
            CheckResult::new(
                id,
                Verdict::Warn,
                ms,
                format!("{len} bytes got Close {shown} instead of 1009: the close event will show {shown}"),
            )
            .fix(fix_1009)
        }
        RawCloseOutcome::Eof | RawCloseOutcome::Reset => CheckResult::new(
            id,
            Verdict::Fail,
            ms,
            format!(
                "{len} bytes got {} instead of 1009: a browser that sends this much sees 1006",
                outcome_text(&streamed.outcome)
            ),
        )
        .fix(fix_1009),
        RawCloseOutcome::TimedOut if streamed.complete => CheckResult::new(
            id,
            Verdict::Warn,
            ms,
            format!(
                "{len} bytes were taken without a Close: the limit is higher than --max-size {max}"
            ),
        )
        .fix(fix_1009),
        RawCloseOutcome::TimedOut => CheckResult::new(
            id,
            Verdict::Warn,
            ms,
            format!(
                "the server stopped reading after {} of {len} bytes and sent no Close",
                streamed.written
            ),
        )
        .fix(fix_1009),
        RawCloseOutcome::Garbage(_) => CheckResult::new(
            id,
            Verdict::Warn,
            ms,
            format!("{len} bytes got bytes that are not a frame instead of 1009"),
        )
        .fix(fix_1009),
    })
}

/// `origin`: an upgrade with a foreign `Origin` is refused with 403. Accepting it is a
/// security finding, not something a browser shows: a warning.
async fn origin(ctx: &Ctx<'_>, deadline: Instant) -> Result<CheckResult, CheckError> {
    let id = CheckId::Origin;
    let started = Instant::now();
    let (response, client) = upgrade(ctx.target, FOREIGN_ORIGIN, deadline).await?;
    let ms = Some(millis(started.elapsed()));
    ctx.sent(id, "origin (an upgrade with a foreign Origin)");
    goodbye(client).await;
    Ok(match response.status {
        403 => CheckResult::new(id, Verdict::Pass, ms, format!("Origin {FOREIGN_ORIGIN} got 403")),
        101 => CheckResult::new(
            id,
            Verdict::Warn,
            ms,
            format!("Origin {FOREIGN_ORIGIN} was accepted: any site can open this socket with its visitors' cookies (cross-site WebSocket hijacking)"),
        )
        .fix("check Origin against an allow-list before upgrading, and answer others with 403."),
        status => CheckResult::new(
            id,
            Verdict::Pass,
            ms,
            format!("Origin {FOREIGN_ORIGIN} was refused with {status}"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::predict;

    #[test]
    fn ids_are_kebab_case_in_json_and_on_the_command_line() {
        for id in CheckId::ALL {
            let json = serde_json::to_value(id).unwrap();
            assert_eq!(json, id.as_str());
            let parsed = <CheckId as clap::ValueEnum>::from_str(id.as_str(), false).unwrap();
            assert_eq!(parsed, id);
        }
    }

    #[test]
    fn the_prediction_follows_the_browser_wait_bound() {
        // tcp-closed: under 100 ms pass, under 1 s warn, after that (or never) fail.
        let at = |ms| CloseBehaviour::Answered {
            close_ms: 0.5,
            code: Some(1000),
            tcp_end_ms: ms,
        };
        assert_eq!(tcp_closed(&at(Some(50.0))).verdict, Verdict::Pass);
        assert_eq!(tcp_closed(&at(Some(500.0))).verdict, Verdict::Warn);
        assert_eq!(tcp_closed(&at(Some(1500.0))).verdict, Verdict::Fail);
        assert_eq!(tcp_closed(&at(None)).verdict, Verdict::Fail);
        assert!(predict(&at(Some(500.0))).chromium.close_after_ms < 1000.0);
    }
}
