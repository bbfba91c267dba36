//! [`run_all`]: every check in order, each within its deadline, and what happens when the
//! server goes down half-way (see the module doc of `checks`).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::closing::{close_answered, close_behaviour, close_code_echoed, tcp_closed};
use super::connect::{goodbye, millis, upgrade};
use super::control::{keepalive, ping_answered};
use super::handshake::{handshake, origin, Refused};
use super::hostile::{max_message_size, protocol_errors};
use super::{CheckId, CheckResult, Verdict, ALIVE_PAUSE, ALIVE_TRIES, DEADLINE_GRACE, TCP_WATCH};
use crate::predict::CloseBehaviour;
use crate::{no_answer_within, CheckError, Options, Target};

const FIX_ERROR_HANDLER: &str = "any client can take your server down with one malformed \
    frame; add an error handler on every socket (Node ws: ws.on('error', ...); elsewhere: \
    treat a read error as the end of that one connection, never of the process).";
const FIX_OVERSIZED: &str = "any client can take your server down with one large message; \
    limit the message size (answer 1009) and treat a read error as the end of that one \
    connection, never of the process.";
const FIX_WENT_DOWN: &str = "a well-formed client took your server down; look in its logs for \
    what this probe made it do.";

/// What the checks share: where to connect, the options, and the probe sent last.
pub(super) struct Ctx<'a> {
    pub(super) target: &'a Target,
    pub(super) options: &'a Options,
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
    pub(super) fn deadline(&self, waits: Duration) -> Instant {
        Instant::now() + self.options.timeout + waits
    }

    /// Records that `probe` (sent by check `id`) reached the server.
    pub(super) fn sent(&self, id: CheckId, probe: impl Into<String>) {
        *self.last_sent.lock().expect("not poisoned") = Some((id, probe.into()));
    }

    fn last_sent(&self) -> Option<(CheckId, String)> {
        self.last_sent.lock().expect("not poisoned").clone()
    }

    /// Whether the server still answers an upgrade: `Err` says how it does not. A refused or
    /// reset connection is tried [`ALIVE_TRIES`] times, [`ALIVE_PAUSE`] apart; an upgrade
    /// with no answer by the deadline is not tried again (the server hangs).
    pub(super) async fn alive(&self) -> Result<(), String> {
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

    /// Runs check `id`, if it is to run (see [`Run::should_run`]), with a deadline of
    /// `--timeout` plus `waits` from now, guarded (see [`Run::guard`]), and records its result.
    async fn check<F, Fut>(&mut self, id: CheckId, waits: Duration, check: F)
    where
        F: FnOnce(Instant) -> Fut,
        Fut: std::future::Future<Output = Result<CheckResult, CheckError>>,
    {
        if self.should_run(id) {
            let deadline = self.ctx.deadline(waits);
            let result = self.guard(id, deadline, check(deadline)).await;
            self.push(id, result);
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

            run.check(CheckId::CloseCodeEchoed, options.close_wait, |deadline| {
                close_code_echoed(&ctx, deadline, &behaviour)
            })
            .await;
            if run.should_run(CheckId::TcpClosed) {
                run.results.push(tcp_closed(&behaviour));
            }
            run.check(CheckId::PingAnswered, options.close_wait, |deadline| {
                ping_answered(&ctx, deadline)
            })
            .await;
            let wait = options.keepalive_wait.unwrap_or_default();
            run.check(CheckId::Keepalive, wait, |deadline| {
                keepalive(&ctx, deadline)
            })
            .await;
            behaviour
        }
    };

    run.check(CheckId::Origin, Duration::ZERO, |deadline| {
        origin(&ctx, deadline)
    })
    .await;
    if refused.is_some() {
        for id in [CheckId::MaxMessageSize, CheckId::ProtocolErrors] {
            run.results
                .push(CheckResult::skip(id, refused_why(refused)));
        }
    } else {
        run.check(CheckId::MaxMessageSize, options.close_wait, |deadline| {
            max_message_size(&ctx, deadline)
        })
        .await;
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
