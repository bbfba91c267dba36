//! What every connection saw during the deploy, counted into the report: the endings by kind,
//! who cut the connections, the reconnect gaps, the failed upgrades, the reconnect stampede, and
//! the verdicts with the fix each points to. Pure: times are milliseconds from the start of the
//! deploy, so the tests give them as numbers.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Ended;
pub use crate::How;

/// One connection's end, as a browser tab reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabEnding {
    /// How (close, fin, rst or error), with the server's Close frame.
    pub ended: Ended,
    /// True when a browser would say `wasClean`: a Close frame with a code a server may send,
    /// answered, and TCP ended by FIN (or still open when the check stopped waiting for it).
    pub clean: bool,
}

impl TabEnding {
    /// An end without a Close frame (never clean).
    pub fn without_close(ended: Ended) -> TabEnding {
        TabEnding {
            ended,
            clean: false,
        }
    }

    /// How it ended.
    pub fn how(&self) -> How {
        self.ended.how
    }

    /// The Close frame's code; `None` without a Close frame, or for a Close without a code.
    pub fn code(&self) -> Option<u16> {
        self.ended.close_code()
    }

    /// The Close frame's reason (at most 123 bytes, as the frame allows), lossy UTF-8; empty
    /// without one.
    pub fn reason(&self) -> String {
        self.ended.close_reason().unwrap_or_default()
    }

    /// True when a browser shows 1006 for it: no Close frame, or a close handshake that did
    /// not finish cleanly.
    pub fn abnormal(&self) -> bool {
        !self.clean
    }
}

/// The first upgrade a connection tried after it ended: evidence of who cut it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// It was upgraded: the service kept accepting while this connection was cut.
    Opened,
    /// The upgrade was refused with this HTTP status (`None`: no HTTP answer at all, such as a
    /// refused connect).
    Refused(Option<u16>),
}

/// One connection's time without a socket, from its end until it was upgraded again.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// When it ended, in ms from the start of the deploy (negative: before it).
    pub ended_ms: f64,
    /// How it ended.
    pub ending: TabEnding,
    /// What its first upgrade after the end got; `None` if it tried none.
    pub first_retry: Option<Retry>,
    /// When it was upgraded again; `None`: not by the end of the run.
    pub back_ms: Option<f64>,
}

/// One upgrade that was refused, or that got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failure {
    /// When it started, in ms from the start of the deploy.
    pub at_ms: f64,
    /// The HTTP status; `None` when no HTTP answer came (refused, reset, no answer in time).
    pub status: Option<u16>,
}

/// Everything the run recorded, in ms from the start of the deploy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// `--connections`.
    pub connections: u32,
    /// `--during`.
    pub during: Option<String>,
    /// Every connection's end, with its way back.
    pub outages: Vec<Outage>,
    /// When each upgrade after the start of the deploy started.
    pub attempts: Vec<f64>,
    /// The upgrades after the start of the deploy that failed.
    pub failures: Vec<Failure>,
    /// When CMD ended; `None` without `--during`, or when it was still running at the end.
    pub cmd_ended_ms: Option<f64>,
    /// CMD's exit status (`None`: killed by a signal, or not ended).
    pub cmd_status: Option<i32>,
    /// From the start of the deploy to the end of the run.
    pub ran_ms: f64,
    /// `--deploy-hung-after`, in ms.
    pub hung_after_ms: f64,
    /// The most a connection waits before its first reconnect ([`wsclose_backoff::Backoff`]).
    pub first_delay_max_ms: f64,
    /// Events not kept because the run had recorded [`super::MAX_EVENTS`] already.
    pub dropped: u64,
}

/// `{"min","max"}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Span {
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

/// The connections that ended one way: `{"how","code","clean","count","after_ms"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndingCount {
    /// Close, FIN or RST.
    pub how: How,
    /// The Close code (`null` without one).
    pub code: Option<u16>,
    /// What a browser's `wasClean` says.
    pub clean: bool,
    /// How many connections ended this way.
    pub count: u32,
    /// When, in ms from the start of CMD (or of the run without `--during`).
    pub after_ms: Span,
    /// The first Close reason seen (for the terminal only).
    #[serde(skip)]
    pub reason: String,
}

/// Who ended the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CutBy {
    /// The server: it sent Close, or it went away (refused connects, or a proxy's 502, 503 or
    /// 504 for the upgrades after the end).
    Server,
    /// A proxy between: the connections ended without a Close frame while new upgrades kept
    /// succeeding at once.
    Proxy,
    /// Nothing ended, or the evidence does not say.
    Unknown,
}

/// The reconnect gaps: `{"p50","p99","max"}`, `null` when no connection came back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gaps {
    /// The median.
    pub p50: Option<f64>,
    /// The 99th percentile (nearest rank).
    pub p99: Option<f64>,
    /// The longest.
    pub max: Option<f64>,
}

/// The failed upgrades with one status: `{"status","count"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedUpgrades {
    /// The HTTP status; `null`: no HTTP answer (refused connect, reset, timeout).
    pub status: Option<u16>,
    /// How many.
    pub count: u32,
    /// From the first to the last of them, in ms from the start of the deploy (terminal only).
    #[serde(skip)]
    pub during_ms: Span,
}

/// The `deploy` object of the JSON report (see DESIGN.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployReport {
    /// `--connections`.
    pub connections: u32,
    /// `--during`, or `null`.
    pub during: Option<String>,
    /// The connections' ends, grouped by how, code and clean.
    pub endings: Vec<EndingCount>,
    /// Who ended the connections.
    pub cut_by: CutBy,
    /// From each end to the next successful upgrade of the same connection.
    pub reconnect_gap_ms: Gaps,
    /// The upgrades that failed after the deploy started, by status.
    pub failed_upgrades: Vec<FailedUpgrades>,
    /// The most upgrades started within any 100 ms.
    pub stampede_peak_per_100ms: u32,
    /// Connections that ended and were not upgraded again by the end of the run.
    pub not_back: u32,
    /// With `--during`: no connection ended within `--deploy-hung-after` of CMD's start.
    pub deploy_hung: bool,
}

/// The window of [`DeployReport::stampede_peak_per_100ms`].
pub const STAMPEDE_WINDOW_MS: f64 = 100.0;

/// The close codes a server sends to say "reconnect" on a deploy: 1001 (going away) and 1012
/// (service restart).
pub const RESTART_CODES: [u16; 2] = [1001, 1012];

/// Counts what the run observed into the report.
pub fn tally(observed: &Observed) -> DeployReport {
    let mut groups: BTreeMap<(How, Option<u16>, bool), EndingCount> = BTreeMap::new();
    for outage in &observed.outages {
        let ending = &outage.ending;
        let (how, code, clean) = (ending.how(), ending.code(), ending.clean);
        let group = groups
            .entry((how, code, clean))
            .or_insert_with(|| EndingCount {
                how,
                code,
                clean,
                count: 0,
                after_ms: Span {
                    min: outage.ended_ms,
                    max: outage.ended_ms,
                },
                reason: ending.reason(),
            });
        group.count += 1;
        group.after_ms.min = group.after_ms.min.min(outage.ended_ms);
        group.after_ms.max = group.after_ms.max.max(outage.ended_ms);
    }
    let mut endings: Vec<EndingCount> = groups.into_values().collect();
    endings.sort_by_key(|ending| std::cmp::Reverse(ending.count));

    let mut gaps: Vec<f64> = observed
        .outages
        .iter()
        .filter_map(|outage| Some(outage.back_ms? - outage.ended_ms))
        .collect();
    gaps.sort_by(f64::total_cmp);

    let mut failed: BTreeMap<Option<u16>, FailedUpgrades> = BTreeMap::new();
    for failure in &observed.failures {
        let entry = failed
            .entry(failure.status)
            .or_insert_with(|| FailedUpgrades {
                status: failure.status,
                count: 0,
                during_ms: Span {
                    min: failure.at_ms,
                    max: failure.at_ms,
                },
            });
        entry.count += 1;
        entry.during_ms.min = entry.during_ms.min.min(failure.at_ms);
        entry.during_ms.max = entry.during_ms.max.max(failure.at_ms);
    }

    DeployReport {
        connections: observed.connections,
        during: observed.during.clone(),
        endings,
        cut_by: cut_by(&observed.outages),
        reconnect_gap_ms: Gaps {
            p50: percentile(&gaps, 50.0),
            p99: percentile(&gaps, 99.0),
            max: gaps.last().copied(),
        },
        failed_upgrades: failed.into_values().collect(),
        stampede_peak_per_100ms: peak_within(&observed.attempts, STAMPEDE_WINDOW_MS),
        not_back: count(observed.outages.iter().filter(|o| o.back_ms.is_none())),
        deploy_hung: hung(observed),
    }
}

/// The nearest-rank percentile `p` of `sorted`; `None` when it is empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The most of `times` (ms, any order) within any window of `window_ms`.
pub fn peak_within(times: &[f64], window_ms: f64) -> u32 {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut peak = 0;
    let mut first = 0;
    for (last, at) in sorted.iter().enumerate() {
        while at - sorted[first] >= window_ms {
            first += 1;
        }
        peak = peak.max(last - first + 1);
    }
    u32::try_from(peak).unwrap_or(u32::MAX)
}

/// Who cut the connections, by majority: a Close frame is the server's; an end without one is
/// the server's when the upgrades right after it found nothing (no HTTP answer, or a proxy's
/// 502, 503 or 504: no instance behind it), and a proxy's when they succeeded at once.
fn cut_by(outages: &[Outage]) -> CutBy {
    let (mut server, mut proxy) = (0, 0);
    for outage in outages {
        match (outage.ending.how(), outage.first_retry) {
            (How::Close, _) => server += 1,
            (_, Some(Retry::Opened)) => proxy += 1,
            (_, Some(Retry::Refused(None | Some(502..=504)))) => server += 1,
            _ => {}
        }
    }
    if server == 0 && proxy == 0 {
        CutBy::Unknown
    } else if server >= proxy {
        CutBy::Server
    } else {
        CutBy::Proxy
    }
}

/// With `--during`: the first end came later than `--deploy-hung-after` after CMD started, or
/// none came while CMD ran longer than that.
fn hung(observed: &Observed) -> bool {
    if observed.during.is_none() {
        return false;
    }
    let first_end = observed
        .outages
        .iter()
        .map(|outage| outage.ended_ms)
        .filter(|ms| *ms >= 0.0)
        .min_by(f64::total_cmp);
    match first_end {
        Some(first) => first > observed.hung_after_ms,
        None => observed.cmd_ended_ms.unwrap_or(observed.ran_ms) >= observed.hung_after_ms,
    }
}

fn count<T>(items: impl Iterator<Item = T>) -> u32 {
    u32::try_from(items.count()).unwrap_or(u32::MAX)
}

/// `850 ms` below a second, `2.1 s` above.
pub fn ms_text(ms: f64) -> String {
    if ms.abs() >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

impl DeployReport {
    /// True when clients saw a 1006 (an end without a clean close handshake) or did not come
    /// back by the end of the run: the binary exits with 1.
    pub fn fails(&self) -> bool {
        self.abnormal() > 0 || self.not_back > 0
    }

    /// How many connections ended without a clean close handshake.
    pub fn abnormal(&self) -> u32 {
        self.endings
            .iter()
            .filter(|ending| !ending.clean)
            .map(|ending| ending.count)
            .sum()
    }

    /// How many connections ended.
    pub fn ended(&self) -> u32 {
        self.endings.iter().map(|ending| ending.count).sum()
    }

    /// What the run found, one sentence each, with the fix it points to; failures first.
    pub fn verdicts(&self, observed: &Observed) -> Vec<String> {
        let mut lines = Vec::new();
        let without_close: u32 = self
            .endings
            .iter()
            .filter(|ending| ending.how != How::Close)
            .map(|ending| ending.count)
            .sum();
        if without_close > 0 {
            let when = self.when_of(|ending| ending.how != How::Close);
            lines.push(match self.cut_by {
                CutBy::Proxy => format!(
                    "{without_close} ended with no Close frame (browsers show 1006) {when} while \
                     new upgrades succeeded at once: the proxy cut them (an nginx reload ends the \
                     old workers' sockets at worker_shutdown_timeout); close them from the server \
                     first (1001 or 1012 on SIGTERM, `wsclose::Lifecycle::shutdown`), or raise \
                     the proxy's timeout above what your clients need"
                ),
                _ => format!(
                    "{without_close} ended with no Close frame (browsers show 1006) {when}: the \
                     process was killed or the proxy dropped them; close each socket with 1001 \
                     or 1012 on SIGTERM (`wsclose::Lifecycle::shutdown`) and let the \
                     supervisor wait for it"
                ),
            });
        }
        let unclean_close: u32 = self
            .endings
            .iter()
            .filter(|ending| ending.how == How::Close && !ending.clean)
            .map(|ending| ending.count)
            .sum();
        if unclean_close > 0 {
            lines.push(format!(
                "{unclean_close} got a Close frame but no clean close handshake (a code no server \
                 may send, or TCP reset after it): browsers show 1006; answer the client's Close \
                 and close TCP with FIN"
            ));
        }
        if self.not_back > 0 {
            lines.push(format!(
                "{} of {} were not back at the end of the run: the service did not accept them \
                 again in time; check the instances came back (or run longer with --for)",
                self.not_back, self.connections
            ));
        }
        if self.deploy_hung {
            lines.push(format!(
                "no connection ended within {} after CMD started: the deploy hung (a server that \
                 ignores SIGTERM while sockets are open, or a supervisor that waits for it); \
                 close the sockets on SIGTERM (`wsclose::Lifecycle::shutdown`) and exit",
                ms_text(observed.hung_after_ms)
            ));
        }
        for failed in &self.failed_upgrades {
            let span = ms_text(failed.during_ms.max - failed.during_ms.min);
            lines.push(match failed.status {
                Some(status @ 502..=504) => format!(
                    "{} upgrades got {status} for {span}: the proxy had no instance to send them \
                     to; restart one instance at a time, and let the proxy retry the next one \
                     (nginx: proxy_next_upstream error timeout http_502 http_503)",
                    failed.count
                ),
                Some(status) => format!(
                    "{} upgrades got {status} for {span}: the server refused them while it \
                     restarted",
                    failed.count
                ),
                None => format!(
                    "{} upgrades got no HTTP answer for {span} (connection refused or reset): \
                     nothing listened; put the instances behind a proxy and restart one at a time",
                    failed.count
                ),
            });
        }
        let quarter = self.connections.div_ceil(4);
        if self.stampede_peak_per_100ms > quarter.max(1) {
            lines.push(format!(
                "{} upgrades within one 100 ms (more than a quarter of {}), although each client \
                 waits a random 0-{} first: the connections ended all at once; restart one \
                 instance at a time, and make clients wait a random delay (full jitter) before \
                 they reconnect",
                self.stampede_peak_per_100ms,
                self.connections,
                ms_text(observed.first_delay_max_ms)
            ));
        }
        let other_codes: Vec<String> = self
            .endings
            .iter()
            .filter(|ending| {
                ending.clean
                    && !ending
                        .code
                        .is_some_and(|code| RESTART_CODES.contains(&code))
            })
            .map(|ending| {
                format!(
                    "{} with {}",
                    ending.count,
                    ending
                        .code
                        .map_or("no code".into(), |code| code.to_string())
                )
            })
            .collect();
        if !other_codes.is_empty() {
            lines.push(format!(
                "closed cleanly, but {}: a deploy should say 1001 (going away) or 1012 (service \
                 restart), which clients take as \"reconnect\"",
                other_codes.join(", ")
            ));
        }
        if let (Some(during), Some(status)) = (&observed.during, observed.cmd_status) {
            if status != 0 {
                lines.push(format!("CMD exited with status {status}: {during}"));
            }
        }
        if self.ended() == 0 && !self.deploy_hung {
            lines.push(
                "no connection ended: nothing was deployed, or not where these connections were"
                    .into(),
            );
        }
        if observed.dropped > 0 {
            lines.push(format!(
                "{} events were not kept (the run keeps at most {}): the figures count the \
                 ones kept",
                observed.dropped,
                super::MAX_EVENTS
            ));
        }
        lines
    }

    /// `1.2-2.3 s after the start` for the endings that match.
    fn when_of(&self, matches: impl Fn(&EndingCount) -> bool) -> String {
        let spans: Vec<Span> = self
            .endings
            .iter()
            .filter(|ending| matches(ending))
            .map(|ending| ending.after_ms)
            .collect();
        let min = spans.iter().map(|span| span.min).fold(f64::MAX, f64::min);
        let max = spans.iter().map(|span| span.max).fold(f64::MIN, f64::max);
        if max - min < 1.0 {
            format!("{} after the start", ms_text(min))
        } else {
            format!("{} to {} after the start", ms_text(min), ms_text(max))
        }
    }

    /// The one-line verdict: `fail: ...` with the first problem, or `ok: ...`.
    pub fn summary(&self, observed: &Observed) -> String {
        let verdicts = self.verdicts(observed);
        if self.fails() {
            return format!("fail: {}", verdicts.first().map_or("", String::as_str));
        }
        if self.ended() == 0 {
            return format!(
                "ok: no connection ended; {} open at the end{}",
                self.connections,
                verdicts
                    .first()
                    .map_or(String::new(), |first| format!("; {first}"))
            );
        }
        let gap = self
            .reconnect_gap_ms
            .p99
            .map_or("no reconnect".into(), |p99| {
                format!("reconnect gap p99 {}", ms_text(p99))
            });
        format!(
            "ok: {} ends, each a clean Close; {} of {} connections back ({gap}); {} failed \
             upgrades; stampede peak {} per 100 ms{}",
            self.ended(),
            self.connections - self.not_back,
            self.connections,
            self.failed_upgrades.iter().map(|f| f.count).sum::<u32>(),
            self.stampede_peak_per_100ms,
            match verdicts.first() {
                Some(first) => format!("; {first}"),
                None => String::new(),
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(code: u16) -> TabEnding {
        TabEnding {
            ended: Ended::with_close(crate::raw::Frame::close(code, b"")),
            clean: true,
        }
    }

    fn outage(ended_ms: f64, ending: TabEnding, retry: Retry, back_ms: Option<f64>) -> Outage {
        Outage {
            ended_ms,
            ending,
            first_retry: Some(retry),
            back_ms,
        }
    }

    fn observed(outages: Vec<Outage>) -> Observed {
        Observed {
            connections: 8,
            during: Some("restart".into()),
            attempts: outages.iter().filter_map(|o| o.back_ms).collect(),
            outages,
            cmd_ended_ms: Some(500.0),
            cmd_status: Some(0),
            ran_ms: 1000.0,
            hung_after_ms: 10_000.0,
            ..Observed::default()
        }
    }

    #[test]
    fn a_rolling_restart_with_1012_is_clean_and_the_server_cut() {
        let seen = observed(vec![
            outage(10.0, close(1012), Retry::Opened, Some(60.0)),
            outage(12.0, close(1012), Retry::Opened, Some(212.0)),
            outage(300.0, close(1012), Retry::Opened, Some(310.0)),
            outage(301.0, close(1012), Retry::Opened, Some(341.0)),
        ]);
        let report = tally(&seen);
        assert_eq!(report.endings.len(), 1);
        assert_eq!(report.endings[0].count, 4);
        assert_eq!(
            report.endings[0].after_ms,
            Span {
                min: 10.0,
                max: 301.0
            }
        );
        assert_eq!(report.cut_by, CutBy::Server);
        // Gaps 10, 40, 50, 200.
        assert_eq!(report.reconnect_gap_ms.p50, Some(40.0));
        assert_eq!(report.reconnect_gap_ms.p99, Some(200.0));
        assert_eq!(report.reconnect_gap_ms.max, Some(200.0));
        assert_eq!(report.not_back, 0);
        assert!(!report.deploy_hung);
        assert!(!report.fails());
        assert!(
            report.verdicts(&seen).is_empty(),
            "{:?}",
            report.verdicts(&seen)
        );
        assert!(
            report
                .summary(&seen)
                .starts_with("ok: 4 ends, each a clean Close; 8 of 8 connections back"),
            "{}",
            report.summary(&seen)
        );
    }

    #[test]
    fn ends_without_close_then_refused_upgrades_are_the_server_going_away() {
        let fin = TabEnding::without_close(Ended::without_close(How::Fin));
        let mut seen = observed(vec![
            outage(5.0, fin.clone(), Retry::Refused(Some(502)), Some(900.0)),
            outage(6.0, fin.clone(), Retry::Refused(Some(502)), Some(950.0)),
            outage(
                7.0,
                TabEnding::without_close(Ended::without_close(How::Rst)),
                Retry::Refused(None),
                None,
            ),
        ]);
        seen.failures = vec![
            Failure {
                at_ms: 100.0,
                status: Some(502),
            },
            Failure {
                at_ms: 2200.0,
                status: Some(502),
            },
            Failure {
                at_ms: 150.0,
                status: None,
            },
        ];
        let report = tally(&seen);
        assert_eq!(report.cut_by, CutBy::Server);
        assert_eq!(report.abnormal(), 3);
        assert_eq!(report.not_back, 1);
        assert!(report.fails());
        assert_eq!(
            report.failed_upgrades,
            vec![
                FailedUpgrades {
                    status: None,
                    count: 1,
                    during_ms: Span {
                        min: 150.0,
                        max: 150.0
                    }
                },
                FailedUpgrades {
                    status: Some(502),
                    count: 2,
                    during_ms: Span {
                        min: 100.0,
                        max: 2200.0
                    }
                },
            ]
        );
        let verdicts = report.verdicts(&seen);
        assert!(
            verdicts[0].starts_with("3 ended with no Close frame"),
            "{verdicts:?}"
        );
        assert!(verdicts[0].contains("process was killed"), "{verdicts:?}");
        assert!(
            verdicts
                .iter()
                .any(|line| line.starts_with("2 upgrades got 502 for 2.1 s")),
            "{verdicts:?}"
        );
        assert!(report
            .summary(&seen)
            .starts_with("fail: 3 ended with no Close"));
    }

    #[test]
    fn ends_without_close_while_upgrades_succeed_are_the_proxy() {
        let fin = TabEnding::without_close(Ended::without_close(How::Fin));
        let seen = observed(vec![
            outage(2000.0, fin.clone(), Retry::Opened, Some(2100.0)),
            outage(2001.0, fin.clone(), Retry::Opened, Some(2050.0)),
            outage(10.0, close(1001), Retry::Opened, Some(20.0)),
        ]);
        let report = tally(&seen);
        assert_eq!(report.cut_by, CutBy::Proxy);
        assert!(report.verdicts(&seen)[0].contains("the proxy cut them"));
        // Nothing ended at all: nobody to blame.
        assert_eq!(tally(&observed(Vec::new())).cut_by, CutBy::Unknown);
    }

    #[test]
    fn a_deploy_with_no_end_within_hung_after_has_hung() {
        let mut seen = observed(Vec::new());
        seen.hung_after_ms = 2000.0;
        seen.cmd_ended_ms = None; // still running
        seen.ran_ms = 5000.0;
        assert!(tally(&seen).deploy_hung);
        // The first end came late.
        seen.outages = vec![outage(4000.0, close(1001), Retry::Opened, Some(4100.0))];
        let report = tally(&seen);
        assert!(report.deploy_hung);
        assert!(report.verdicts(&seen)[0].starts_with("no connection ended within 2.0 s"));
        // In time: not hung. A quick CMD that ended nothing: not hung either.
        seen.outages[0].ended_ms = 1000.0;
        assert!(!tally(&seen).deploy_hung);
        seen.outages.clear();
        seen.cmd_ended_ms = Some(100.0);
        assert!(!tally(&seen).deploy_hung);
        // Without --during there is no CMD to hang.
        seen.during = None;
        seen.cmd_ended_ms = None;
        assert!(!tally(&seen).deploy_hung);
    }

    #[test]
    fn the_stampede_is_the_peak_within_any_100_ms() {
        assert_eq!(peak_within(&[], 100.0), 0);
        assert_eq!(
            peak_within(&[0.0, 99.0, 100.0, 150.0, 199.9, 500.0], 100.0),
            3
        );
        assert_eq!(
            peak_within(&[0.0, 99.0, 100.0, 150.0, 198.9, 500.0], 100.0),
            4
        );
        assert_eq!(peak_within(&[300.0, 0.0, 50.0], 100.0), 2);
        let mut seen = observed(Vec::new());
        seen.attempts = (0..3).map(f64::from).collect();
        let report = tally(&seen);
        assert_eq!(report.stampede_peak_per_100ms, 3);
        assert!(report
            .verdicts(&seen)
            .iter()
            .any(|line| line.contains("all at once")));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn the_json_keys_are_the_contract() {
        let mut seen = observed(vec![outage(
            5.0,
            TabEnding::without_close(Ended::without_close(How::Rst)),
            Retry::Refused(Some(502)),
            Some(9.0),
        )]);
        seen.failures = vec![Failure {
            at_ms: 6.0,
            status: Some(502),
        }];
        let value = serde_json::to_value(tally(&seen)).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "connections",
                "cut_by",
                "deploy_hung",
                "during",
                "endings",
                "failed_upgrades",
                "not_back",
                "reconnect_gap_ms",
                "stampede_peak_per_100ms"
            ]
        );
        let ending = value["endings"][0].as_object().unwrap();
        let mut keys: Vec<&str> = ending.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["after_ms", "clean", "code", "count", "how"]);
        assert_eq!(value["endings"][0]["how"], "rst");
        assert_eq!(value["endings"][0]["code"], serde_json::Value::Null);
        assert_eq!(
            value["endings"][0]["after_ms"],
            serde_json::json!({"min": 5.0, "max": 5.0})
        );
        assert_eq!(
            value["failed_upgrades"],
            serde_json::json!([{"status": 502, "count": 1}])
        );
        assert_eq!(
            value["reconnect_gap_ms"],
            serde_json::json!({"p50": 4.0, "p99": 4.0, "max": 4.0})
        );
        assert_eq!(value["cut_by"], "server");
        assert_eq!(value["during"], "restart");
        assert_eq!(value["deploy_hung"], false);
    }
}
