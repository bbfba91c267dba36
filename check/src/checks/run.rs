//! [`run_all`]: every check in order, each within its deadline, and what happens when the
//! server goes down half-way or the run stops early (see the module doc of `checks`).
//!
//! Every check's result is recorded one way, by [`Run::check`]: it decides whether the check
//! runs ([`Run::not_run`]), gives it its deadline, runs it guarded ([`Ctx::guard`]) and pushes
//! exactly one [`CheckResult`] for it, so the report has every check once, in order.

use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use tokio::time::Instant;

use super::closing::{close_answered, close_behaviour, close_code_echoed, tcp_closed};
use super::connect::{goodbye, millis, upgrade};
use super::control::{keepalive, ping_answered};
use super::handshake::{handshake, origin, Refused};
use super::hostile::{max_message_size, protocol_errors};
use super::{
    CheckId, CheckResult, OptIn, Verdict, ALIVE_PAUSE, ALIVE_TRIES, DEADLINE_GRACE,
    PROTOCOL_ERRORS_WAITS, TCP_WATCH,
};
use crate::idle::{self, DeadPeerReport, IdleReport};
use crate::predict::ServerCloseBehaviour;
use crate::{no_answer_within, CheckError, Options, Stop, Stopped, Target};

const FIX_ERROR_HANDLER: &str = "any client can take your server down with one malformed \
    frame; add an error handler on every socket (Node ws: ws.on('error', ...); elsewhere: \
    treat a read error as the end of that one connection, never of the process).";
const FIX_OVERSIZED: &str = "any client can take your server down with one large message; \
    limit the message size (answer 1009) and treat a read error as the end of that one \
    connection, never of the process.";
const FIX_WENT_DOWN: &str = "a well-formed client took your server down; look in its logs for \
    what this probe made it do.";
/// The detail of a check not run because the server went down before it.
const NOT_RUN_DOWN: &str = "not run: the server went down (see server-survived)";

/// What the checks share: where to connect, the options, when the run stops, the probe sent
/// last and, once the server went down, how.
pub(super) struct Ctx<'a> {
    pub(super) target: &'a Target,
    pub(super) options: &'a Options,
    /// `--max-time` and the signals: every deadline ends by it.
    stop: &'a Stop,
    /// The probe sent last, named in `server-survived` if the server goes down after it.
    last_sent: Mutex<Option<(CheckId, String)>>,
    /// Set once, by the first check that finds the server down.
    down: Mutex<Option<Down>>,
}

/// The server no longer accepts connections (or answers upgrades).
#[derive(Debug, Clone)]
struct Down {
    /// The probe sent last before it went down, and the check that sent it.
    after: Option<(CheckId, String)>,
    /// What the upgrade after it got: "stopped accepting connections (connection refused)".
    how: String,
}

/// How a guarded check ended (see [`Ctx::guard`]).
enum Guarded {
    /// It ran.
    Ran(CheckResult),
    /// It could not connect (or ran out of time), but the server is up: the check fails.
    Failed(String),
    /// The server is down: the check was not run (or cut off).
    Down,
    /// The run stopped (`--max-time`, a signal) while the check ran.
    Stopped(Stopped),
}

impl Ctx<'_> {
    /// The deadline of a check that starts now and is asked to wait `waits` on top: `--timeout`
    /// plus `waits` from now, and never past `--max-time`.
    pub(super) fn deadline(&self, waits: Duration) -> Instant {
        (Instant::now() + self.options.timeout + waits).min(self.stop.deadline())
    }

    /// Records that `probe` (sent by check `id`) reached the server.
    pub(super) fn sent(&self, id: CheckId, probe: impl Into<String>) {
        *self.last_sent.lock().expect("not poisoned") = Some((id, probe.into()));
    }

    /// Records that the server went down, `how`, after the probe sent last (the first time
    /// only: later probes did not cause it).
    pub(super) fn went_down(&self, how: String) {
        if self.stop.now().is_some() {
            return; // an upgrade cut short by the stop proves nothing
        }
        let mut down = self.down.lock().expect("not poisoned");
        if down.is_none() {
            let after = self.last_sent.lock().expect("not poisoned").clone();
            *down = Some(Down { after, how });
        }
    }

    fn down(&self) -> Option<Down> {
        self.down.lock().expect("not poisoned").clone()
    }

    /// Whether the server still answers an upgrade by `deadline`: `Err` says how it does not.
    /// A refused or reset connection is tried up to [`ALIVE_TRIES`] times, [`ALIVE_PAUSE`]
    /// apart (a server may be restarting); an upgrade with no answer by the deadline is not
    /// tried again (the server hangs). Every try shares the one deadline.
    pub(super) async fn alive_by(&self, deadline: Instant) -> Result<(), String> {
        let attempt = || async {
            match upgrade(self.target, &self.target.origin, deadline).await {
                Ok((_, client)) => {
                    goodbye(client).await;
                    Ok(())
                }
                Err(_) if Instant::now() >= deadline => Err(Err(format!(
                    "stopped answering: an upgrade got {}",
                    no_answer_within(self.options.timeout)
                ))),
                Err(CheckError::Unreachable { cause, .. }) => {
                    Err(Ok(format!("stopped accepting connections ({cause})")))
                }
                Err(error) => Err(Ok(format!("stopped answering upgrades ({error})"))),
            }
        };
        // `Err(Ok(how))` may be tried again; `Err(Err(how))` is final.
        attempt
            .retry(
                ConstantBuilder::default()
                    .with_delay(ALIVE_PAUSE)
                    .with_max_times(ALIVE_TRIES as usize - 1),
            )
            .sleep(tokio::time::sleep)
            .when(|how| how.is_ok() && Instant::now() + ALIVE_PAUSE < deadline)
            .await
            .map_err(|how| how.unwrap_or_else(|how| how))
    }

    /// Runs one check until `deadline` (plus a grace), or until the run stops. When it cannot
    /// connect or runs out of time, asks whether the server is still up; if not, records how.
    async fn guard(
        &self,
        deadline: Instant,
        check: impl std::future::Future<Output = Result<CheckResult, CheckError>>,
    ) -> Guarded {
        let guarded = async {
            let why = match tokio::time::timeout_at(deadline + DEADLINE_GRACE, check).await {
                Ok(Ok(result)) => return Guarded::Ran(result),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("did not finish: {}", no_answer_within(self.options.timeout)),
            };
            if let Some(stopped) = self.stop.now() {
                return Guarded::Stopped(stopped); // no time left to ask: not a finding
            }
            // One fresh deadline for every try of the liveness probe together.
            match self.alive_by(self.deadline(Duration::ZERO)).await {
                Ok(()) => Guarded::Failed(why),
                Err(how) => {
                    self.went_down(how);
                    Guarded::Down
                }
            }
        };
        let mut guarded = std::pin::pin!(guarded);
        // A check that is done at once (it has nothing to send: server-survived once the
        // server is known down) is recorded as done, even after the stop.
        if let Poll::Ready(guarded) = futures::poll!(&mut guarded) {
            return guarded;
        }
        let guarded = tokio::select! {
            biased;
            guarded = guarded => guarded,
            stopped = self.stop.wait() => return Guarded::Stopped(stopped),
        };
        // A check that ended when the run stopped was cut short by it (its waits end at the
        // stop): what it saw is not a finding.
        match self.stop.now() {
            Some(stopped) => Guarded::Stopped(stopped),
            None => guarded,
        }
    }
}

/// The results so far, and why the first upgrade gave no connection, if it did not.
struct Run<'c, 'a> {
    ctx: &'c Ctx<'a>,
    results: Vec<CheckResult>,
    refused: Option<Refused>,
}

impl Run<'_, '_> {
    /// Why `id` is not to run now, or `None` when it is. The order is the order of the
    /// causes: a refused upgrade leaves nothing to check, the options come next, then a run
    /// that stopped, then a server that went down (which `server-survived` reports rather
    /// than skips).
    fn not_run(&self, id: CheckId) -> Option<String> {
        let options = self.ctx.options;
        if let Some(refused) = self.refused.filter(|_| id.needs_connection()) {
            return Some(refused.why().to_owned());
        }
        if !options.selected(id) {
            let flag = if options.skip.is_empty() {
                "--only"
            } else {
                "--skip"
            };
            return Some(format!("not selected ({flag})"));
        }
        if let Some(opt_in) = OptIn::of(id).filter(|_| !options.opted_in(id)) {
            return Some(opt_in.not_asked_for().to_owned());
        }
        let down = self.ctx.down().is_some();
        if id == CheckId::ServerSurvived && down {
            return None; // it reports how, from what is known, without connecting
        }
        if let Some(stopped) = self.ctx.stop.now() {
            return Some(format!("not run: {stopped}"));
        }
        down.then(|| NOT_RUN_DOWN.to_owned())
    }

    /// The one way a check's result is recorded. Runs check `id`, unless [`Run::not_run`]
    /// says why not (then it is `skip`), with a deadline of `--timeout` plus `waits` from
    /// now, guarded (see [`Ctx::guard`]), and pushes its one result.
    async fn check<F, Fut>(&mut self, id: CheckId, waits: Duration, check: F)
    where
        F: FnOnce(Instant) -> Fut,
        Fut: std::future::Future<Output = Result<CheckResult, CheckError>>,
    {
        let result = match self.not_run(id) {
            Some(why) => CheckResult::skip(id, why),
            None => {
                let deadline = self.ctx.deadline(waits);
                match self.ctx.guard(deadline, check(deadline)).await {
                    Guarded::Ran(result) => result,
                    Guarded::Failed(why) => CheckResult::new(id, Verdict::Fail, None, why),
                    Guarded::Down => CheckResult::skip(id, NOT_RUN_DOWN),
                    Guarded::Stopped(stopped) => {
                        CheckResult::skip(id, format!("cut off: {stopped}"))
                    }
                }
            }
        };
        self.results.push(result);
    }
}

/// What [`run_all`] found.
#[derive(Debug)]
pub struct Ran {
    /// Every check, in the order of the report.
    pub checks: Vec<CheckResult>,
    /// What the close handshake did, which the prediction follows.
    pub behaviour: ServerCloseBehaviour,
    /// With `--idle`, once its connections were held: what they saw.
    pub idle: Option<IdleReport>,
    /// With `--idle`, once its connections were held: the dead peer.
    pub dead_peer: Option<DeadPeerReport>,
}

/// Runs every check against `target`, until `stop`; also returns what the close handshake
/// did, and with `--idle` what the idle connections (to `target`, and to `upstream`) saw,
/// held beside the other checks from right after the first upgrade. An error means the first
/// upgrade found no WebSocket server to check (or the run stopped before it was answered).
pub async fn run_all(
    target: &Target,
    upstream: Option<&Target>,
    options: &Options,
    stop: &Stop,
) -> Result<Ran, CheckError> {
    let ctx = Ctx {
        target,
        options,
        stop,
        last_sent: Mutex::new(None),
        down: Mutex::new(None),
    };
    // The first upgrade decides whether there is anything to check: its error is the run's.
    let (result, refused) = tokio::select! {
        handshake = handshake(&ctx) => handshake?,
        stopped = stop.wait() => return Err(CheckError::Stopped(stopped)),
    };
    // The idle connections are a task of their own (each connection one more), so a check
    // reading a flood cannot starve their upgrades and reads; the set aborts it if dropped.
    let idle = async {
        let (Some(max), None) = (options.idle, refused) else {
            return None;
        };
        let (target, upstream) = (target.clone(), upstream.cloned());
        let (options, stop) = (options.clone(), stop.clone());
        let mut task = tokio::task::JoinSet::new();
        task.spawn(
            async move { idle::observe(&target, upstream.as_ref(), &options, max, &stop).await },
        );
        let observed = task.join_next().await.expect("one task");
        Some(observed.expect("the idle connections do not panic"))
    };
    let (checks, observed) = tokio::join!(run_in_order(&ctx, result, refused), idle);
    let (mut results, behaviour) = checks;
    let (idle, dead_peer) = match (options.idle, observed) {
        (None, _) => (None, None),
        (Some(max), Some(Ok(observed))) => {
            let (idle, dead_peer) = idle::report(&observed, max, options.idle_interval);
            results.push(idle::idle_check(&idle, ctx.down().is_some()));
            results.push(idle::dead_peer_check(&dead_peer, &idle));
            (Some(idle), Some(dead_peer))
        }
        (Some(_), observed) => {
            let why = match (observed, refused) {
                (_, Some(refused)) => refused.why().to_owned(),
                (Some(Err(CheckError::Stopped(stopped))), _) => format!("not run: {stopped}"),
                (Some(Err(error)), _) => {
                    format!("the idle connections could not be opened: {error}")
                }
                _ => "not run".to_owned(),
            };
            let verdict = if refused.is_some() || stop.now().is_some() {
                Verdict::Skip
            } else {
                Verdict::Fail
            };
            for id in [CheckId::Idle, CheckId::DeadPeer] {
                results.push(CheckResult::new(id, verdict, None, why.clone()));
            }
            (None, None)
        }
    };
    Ok(Ran {
        checks: results,
        behaviour,
        idle,
        dead_peer,
    })
}

/// The checks after the first upgrade, one after the other: their results (the first
/// upgrade's, `first`, leading) and what the close handshake did.
async fn run_in_order(
    ctx: &Ctx<'_>,
    first: CheckResult,
    refused: Option<Refused>,
) -> (Vec<CheckResult>, ServerCloseBehaviour) {
    let options = ctx.options;
    let mut run = Run {
        ctx,
        results: vec![first],
        refused,
    };

    // close-answered measures what the prediction is made of; the checks after it that read
    // the same measurement (tcp-closed, close-code-echoed's detail) use it. Without one (not
    // run, failed, refused) a browser's connection fails: 1006, as if dropped.
    let mut measured = None;
    run.check(
        CheckId::CloseAnswered,
        options.close_wait + TCP_WATCH,
        |deadline| {
            let measured = &mut measured;
            async move {
                let behaviour = close_behaviour(ctx, deadline).await?;
                *measured = Some(behaviour);
                Ok(close_answered(&behaviour, options))
            }
        },
    )
    .await;
    let behaviour = match (measured, refused) {
        (_, Some(refused)) => refused.behaviour(),
        (Some(behaviour), None) => behaviour,
        (None, None) => ServerCloseBehaviour::Dropped { after_ms: 0.0 },
    };

    // Then what a browser (or a well-behaved client) sends, in the order of the README.
    run.check(CheckId::CloseCodeEchoed, options.close_wait, |deadline| {
        close_code_echoed(ctx, deadline, &behaviour)
    })
    .await;
    run.check(CheckId::TcpClosed, Duration::ZERO, |_| async {
        Ok(tcp_closed(&behaviour))
    })
    .await;
    run.check(CheckId::PingAnswered, options.close_wait, |deadline| {
        ping_answered(ctx, deadline)
    })
    .await;
    let wait = options.keepalive_wait.unwrap_or_default();
    run.check(CheckId::Keepalive, wait, |deadline| {
        keepalive(ctx, deadline)
    })
    .await;
    run.check(CheckId::Origin, Duration::ZERO, |deadline| {
        origin(ctx, deadline)
    })
    .await;

    // Last, the probes that can harm a fragile server, so everything a browser does was
    // measured before they run: a server they take down is found by server-survived.
    run.check(CheckId::MaxMessageSize, options.close_wait, |deadline| {
        max_message_size(ctx, deadline)
    })
    .await;
    run.check(
        CheckId::ProtocolErrors,
        options.close_wait * PROTOCOL_ERRORS_WAITS,
        |deadline| protocol_errors(ctx, deadline),
    )
    .await;
    run.check(CheckId::ServerSurvived, Duration::ZERO, |deadline| {
        server_survived(ctx, deadline)
    })
    .await;
    (run.results, behaviour)
}

/// `server-survived`: one more upgrade after every probe; or how the server went down, after
/// which probe.
async fn server_survived(ctx: &Ctx<'_>, deadline: Instant) -> Result<CheckResult, CheckError> {
    let id = CheckId::ServerSurvived;
    if ctx.down().is_none() {
        let started = Instant::now();
        match ctx.alive_by(deadline).await {
            Ok(()) => {
                return Ok(CheckResult::new(
                    id,
                    Verdict::Pass,
                    Some(millis(started.elapsed())),
                    "the server still accepted an upgrade after every probe".into(),
                ))
            }
            Err(how) => ctx.went_down(how),
        }
    }
    let down = ctx.down().expect("set above");
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
    Ok(CheckResult::new(id, Verdict::Fail, None, detail).fix(fix))
}
