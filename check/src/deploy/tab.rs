//! One connection of the rehearsal, held the way a browser tab holds it: it answers Pings,
//! sends nothing (or `--deploy-message` every [`MESSAGE_EVERY`]), and when the connection ends it
//! reconnects with the demo page's backoff ([`Backoff`]), until the run ends. Everything it sees
//! goes to the [`Log`] the tabs share.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use wsclose_backoff::Backoff;

use super::tally::{How, Retry, TabEnding};
use super::MAX_EVENTS;
use crate::checks::{upgrade, Client};
use crate::raw::{Frame, OP_CLOSE, OP_PING};
use crate::{Ended, Target};

/// How often a tab sends `--deploy-message`.
pub const MESSAGE_EVERY: Duration = Duration::from_secs(5);
/// After the server's Close, how long a tab waits for TCP to end (Chromium's wait for it).
pub const TCP_END_WAIT: Duration = Duration::from_secs(2);
/// How long a tab may take to send its Close(1001) when the run ends, before it drops the
/// connection; and the bound of every other write (a Pong, our Close answer, a message).
pub const WRITE_WAIT: Duration = Duration::from_secs(1);

/// One connection's end, with its way back (times as [`Instant`]s; see [`super::tally::Outage`]).
#[derive(Debug, Clone)]
pub struct OutageAt {
    /// When it ended.
    pub ended: Instant,
    /// How.
    pub ending: TabEnding,
    /// What its first upgrade after the end got.
    pub first_retry: Option<Retry>,
    /// When it was upgraded again.
    pub back: Option<Instant>,
}

/// What every tab saw, bounded: at most [`MAX_EVENTS`] entries in all; the rest are counted
/// in `dropped`.
#[derive(Debug, Default)]
pub struct Log {
    /// When each upgrade started.
    pub attempts: Vec<Instant>,
    /// The failed upgrades: when each started, and its status (`None`: no HTTP answer).
    pub failures: Vec<(Instant, Option<u16>)>,
    /// Every end, with its way back.
    pub outages: Vec<OutageAt>,
    /// Entries not kept.
    pub dropped: u64,
    /// The last failure, as a phrase, for the error when the connections cannot all open.
    pub last_failure: Option<String>,
}

impl Log {
    fn room(&mut self) -> bool {
        let kept = self.attempts.len() + self.failures.len() + self.outages.len();
        if kept < MAX_EVENTS {
            return true;
        }
        self.dropped += 1;
        false
    }
}

/// What the tabs share: the log, how many are open now, and the run's end.
pub struct Shared {
    /// Where to connect.
    pub target: Target,
    /// The reconnect delays.
    pub backoff: Backoff,
    /// `--deploy-message`.
    pub message: Option<String>,
    /// Everything seen.
    pub log: Mutex<Log>,
    /// How many tabs hold an open connection now.
    pub open: watch::Sender<u32>,
    /// Turns true when the run ends: each tab says goodbye and returns.
    pub end: watch::Receiver<bool>,
}

impl Shared {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs one tab: waits `pace`, then connects, holds and reconnects until the run ends (then it
/// sends Close(1001) on an open connection, as a closing tab does, and returns).
pub async fn run(shared: Arc<Shared>, pace: Duration) {
    let shared = &*shared;
    let mut end = shared.end.clone();
    if until_end(&mut end, tokio::time::sleep(pace))
        .await
        .is_none()
    {
        return;
    }
    let mut attempt = 0u32;
    // Index in `log.outages` of this tab's end that has not come back yet; and whether its
    // first retry is still to be recorded.
    let mut outage: Option<usize> = None;
    let mut first_retry = false;
    loop {
        let started = Instant::now();
        {
            let mut log = shared.log();
            if log.room() {
                log.attempts.push(started);
            }
        }
        let target = &shared.target;
        let upgrading = upgrade(target, &target.origin, started + target.timeout);
        let Some(result) = until_end(&mut end, upgrading).await else {
            return;
        };
        let failed = match result {
            Ok((_, Some(client))) => {
                {
                    let mut log = shared.log();
                    if let Some(index) = outage.take() {
                        let entry = &mut log.outages[index];
                        entry.back = Some(Instant::now());
                        if first_retry {
                            entry.first_retry = Some(Retry::Opened);
                        }
                    }
                }
                first_retry = false;
                attempt = 0;
                shared.open.send_modify(|open| *open += 1);
                let Some(ending) = hold(client, shared).await else {
                    return;
                };
                let now = Instant::now();
                shared.open.send_modify(|open| *open -= 1);
                let mut log = shared.log();
                if log.room() {
                    outage = Some(log.outages.len());
                    first_retry = true;
                    log.outages.push(OutageAt {
                        ended: now,
                        ending,
                        first_retry: None,
                        back: None,
                    });
                }
                None
            }
            Ok((response, None)) => Some((Some(response.status), response.status.to_string())),
            Err(error) => Some((None, error.to_string())),
        };
        if let Some((status, phrase)) = failed {
            let mut log = shared.log();
            if let (Some(index), true) = (outage, first_retry) {
                log.outages[index].first_retry = Some(Retry::Refused(status));
            }
            first_retry = false;
            log.last_failure = Some(phrase);
            if log.room() {
                log.failures.push((started, status));
            }
        }
        let delay = shared.backoff.delay_ms(attempt, rand::random::<f64>());
        attempt = attempt.saturating_add(1);
        let pause = tokio::time::sleep(Duration::from_secs_f64(delay / 1000.0));
        if until_end(&mut end, pause).await.is_none() {
            return;
        }
    }
}

/// `future`'s output, or `None` once the run has ended.
async fn until_end<T>(
    end: &mut watch::Receiver<bool>,
    future: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        output = future => Some(output),
        () = ended(end) => None,
    }
}

/// Ends once the run has ended.
async fn ended(end: &mut watch::Receiver<bool>) {
    let _ = end.wait_for(|ended| *ended).await;
}

/// Holds an open connection as a browser tab does, until it ends, or until the run ends: then
/// it sends Close(1001), as a closing tab does, and returns `None`.
async fn hold(mut client: Client, shared: &Shared) -> Option<TabEnding> {
    let mut end = shared.end.clone();
    let mut skipped = 0u64;
    let mut messages = tokio::time::interval_at(Instant::now() + MESSAGE_EVERY, MESSAGE_EVERY);
    loop {
        tokio::select! {
            read = client.read_control(&mut skipped) => {
                let frame = match read {
                    Ok(Some(frame)) => frame,
                    Ok(None) => {
                        return Some(TabEnding::without_close(Ended::without_close(How::Fin)))
                    }
                    // Bytes that are not a frame end in How::Error: a browser fails the
                    // connection (1006).
                    Err(error) => return Some(TabEnding::without_close(Ended::of_error(&error))),
                };
                match frame.opcode {
                    OP_CLOSE => return Some(answer_close(client, frame).await),
                    OP_PING => {
                        let pong = Frame::pong(frame.payload);
                        if let Some(ending) = write(&mut client, &pong).await {
                            return Some(ending);
                        }
                    }
                    _ => {}
                }
            }
            _ = messages.tick(), if shared.message.is_some() => {
                let text = Frame::text(shared.message.clone().unwrap_or_default());
                if let Some(ending) = write(&mut client, &text).await {
                    return Some(ending);
                }
            }
            () = ended(&mut end) => {
                let goodbye = Frame::close(1001, b"");
                let _ = tokio::time::timeout(WRITE_WAIT, client.send(&goodbye)).await;
                return None;
            }
        }
    }
}

/// Writes `frame` within [`WRITE_WAIT`]; the end of the connection if that fails (a server that
/// stopped reading counts as gone: the tab drops it).
async fn write(client: &mut Client, frame: &Frame) -> Option<TabEnding> {
    let ended = match tokio::time::timeout(WRITE_WAIT, client.send(frame)).await {
        Ok(Ok(())) => return None,
        Ok(Err(error)) => Ended::without_close(if is_reset(&anyhow::Error::from(error)) {
            How::Rst
        } else {
            How::Fin
        }),
        Err(_) => Ended::failed(format!(
            "a write was not taken within {}: the server does not read",
            humantime::format_duration(WRITE_WAIT)
        )),
    };
    Some(TabEnding::without_close(ended))
}

/// The server sent Close: answer it with its code, as a browser does, and wait for TCP to end.
/// Clean (what a browser's `wasClean` says) unless the code is one no endpoint may send, or TCP
/// was reset.
async fn answer_close(mut client: Client, frame: Frame) -> TabEnding {
    let code = frame.close_code();
    let answer = match code {
        Some(code) => Frame::close(code, b""),
        None => Frame::new(OP_CLOSE, Vec::new()),
    };
    let answered = matches!(
        tokio::time::timeout(WRITE_WAIT, client.send(&answer)).await,
        Ok(Ok(()))
    );
    let (tcp, _) = client.await_close(Instant::now() + TCP_END_WAIT).await;
    let sendable = code.is_none_or(|code| matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999));
    TabEnding {
        ended: Ended::with_close(frame),
        clean: sendable
            && (answered || tcp.how == How::Fin)
            && matches!(tcp.how, How::Fin | How::Open),
    }
}

/// A reset by the peer (ECONNRESET, ECONNABORTED), by the rule every connection of the check
/// follows ([`Ended::of_error`]).
fn is_reset(error: &anyhow::Error) -> bool {
    Ended::of_error(error).how == How::Rst
}
