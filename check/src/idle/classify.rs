//! From the idle connections' endings to what a quiet connection suffers: the
//! [`Classification`], who cut it ([`CutBy`]), the keepalive that helps, the `idle` and
//! `dead-peer` checks, what a quiet browser tab will see ([`quiet_tab`]) and the fix. Pure: no
//! I/O, so every rule is tested with constructed endings.

use std::time::Duration;

use serde::Serialize;

use super::{DeadPeerReport, How, IdleMode, IdleReport, ModeReport, Observed, SAME_TIME};
use crate::checks::{CheckId, CheckResult, Verdict};
use crate::predict::{shown, BrowserOutcome, Predicted, ABNORMAL_CLOSURE};
use crate::report::duration_text;
use crate::CloseCode;

/// What cut the quiet connection: `"idle-timeout"`, `"lifetime-cap"`, `"server-drops-quiet"`,
/// `"no-cut"` or `"inconclusive"` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Classification {
    /// The quiet `browser` connection was cut at T without a Close frame, and a mode with
    /// traffic (`client-ping`, `app-message`) survived or lasted clearly longer: traffic keeps
    /// it open.
    IdleTimeout,
    /// All three modes were cut at about the same T (within [`SAME_TIME`]), whatever traffic
    /// flowed: no keepalive helps.
    LifetimeCap,
    /// The quiet `browser` connection got a Close frame (its code is what a quiet tab sees).
    ServerDropsQuiet,
    /// The quiet `browser` connection was still open at MAX.
    NoCut,
    /// The quiet connection was cut without a Close frame, but the modes with traffic ended
    /// earlier than it, not with it: neither a timeout that traffic resets nor a cap.
    Inconclusive,
}

impl CutBy {
    /// The name in JSON and in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            CutBy::Proxy => "proxy",
            CutBy::Server => "server",
            CutBy::Unknown => "unknown",
        }
    }
}

impl Classification {
    /// The name in JSON and in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::IdleTimeout => "idle-timeout",
            Classification::LifetimeCap => "lifetime-cap",
            Classification::ServerDropsQuiet => "server-drops-quiet",
            Classification::NoCut => "no-cut",
            Classification::Inconclusive => "inconclusive",
        }
    }
}

/// Who cut the quiet connection: `"proxy"`, `"server"` or `"unknown"` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CutBy {
    /// Cut through the URL, but not straight to `--upstream` (by then).
    Proxy,
    /// Cut straight to `--upstream` too.
    Server,
    /// No `--upstream` to compare with, or nothing was cut.
    Unknown,
}

/// The verdict on the three modes (and the upstream ones).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Classified {
    /// What cut the quiet connection.
    pub classification: Classification,
    /// When the quiet `browser` connection ended; `None` when it did not.
    pub cut_after_ms: Option<f64>,
    /// Who cut it.
    pub cut_by: CutBy,
    /// At most half the cut, when traffic is shown to keep the connection open.
    pub recommended_ping_interval_ms: Option<f64>,
}

/// The report of `mode` among `modes`.
fn of(modes: &[ModeReport], mode: IdleMode) -> Option<&ModeReport> {
    modes.iter().find(|held| held.mode == mode)
}

/// When `held` ended, in ms; `None` while open.
fn ended_ms(held: &ModeReport) -> Option<f64> {
    held.ended().then_some(held.ended_after_ms).flatten()
}

/// Half of a cut after `cut_ms`: a keepalive this often has two chances before the cut. Whole
/// seconds, rounded down, from 2 s on.
pub fn half(cut_ms: f64) -> f64 {
    let half = cut_ms / 2.0;
    if half >= 1000.0 {
        (half / 1000.0).floor() * 1000.0
    } else {
        half.floor()
    }
}

/// Classifies the three modes through the URL (and straight to `--upstream`, for who cut).
pub fn classify(modes: &[ModeReport], upstream: Option<&[ModeReport]>) -> Classified {
    let same = SAME_TIME.as_secs_f64() * 1e3;
    let Some(cut) = of(modes, IdleMode::Browser).and_then(ended_ms) else {
        return Classified {
            classification: Classification::NoCut,
            cut_after_ms: None,
            cut_by: CutBy::Unknown,
            recommended_ping_interval_ms: None,
        };
    };
    let browser = of(modes, IdleMode::Browser).expect("ended above");
    let traffic: Vec<&ModeReport> = [IdleMode::ClientPing, IdleMode::AppMessage]
        .into_iter()
        .filter_map(|mode| of(modes, mode))
        .collect();
    let longer = traffic
        .iter()
        .any(|held| ended_ms(held).is_none_or(|ms| ms > cut + same));
    let together = traffic
        .iter()
        .all(|held| ended_ms(held).is_some_and(|ms| (ms - cut).abs() <= same));
    let classification = if browser.how == How::Close {
        Classification::ServerDropsQuiet
    } else if longer {
        Classification::IdleTimeout
    } else if together {
        Classification::LifetimeCap
    } else {
        Classification::Inconclusive
    };
    let cut_by = match upstream.and_then(|up| of(up, IdleMode::Browser)) {
        None => CutBy::Unknown,
        Some(direct) if ended_ms(direct).is_some_and(|ms| ms <= cut + same) => CutBy::Server,
        Some(_) => CutBy::Proxy,
    };
    Classified {
        classification,
        cut_after_ms: Some(cut),
        cut_by,
        recommended_ping_interval_ms: longer.then(|| half(cut)),
    }
}

/// The `"idle"` and `"dead_peer"` objects from what the connections saw.
pub fn report(
    observed: &Observed,
    max: Duration,
    interval: Duration,
) -> (IdleReport, DeadPeerReport) {
    let (upstream_modes, upstream_error) = match &observed.upstream {
        None => (None, None),
        Some(Ok(modes)) => (Some(modes.clone()), None),
        Some(Err(error)) => (None, Some(error.clone())),
    };
    let classified = classify(&observed.modes, upstream_modes.as_deref());
    let idle = IdleReport {
        max_ms: max.as_secs_f64() * 1e3,
        modes: observed.modes.clone(),
        upstream_modes,
        classification: classified.classification,
        cut_after_ms: classified.cut_after_ms,
        cut_by: classified.cut_by,
        recommended_ping_interval_ms: classified.recommended_ping_interval_ms,
        upstream_error,
        interval,
        stopped: observed.stopped,
    };
    (idle, observed.dead_peer.clone())
}

/// `5.0 s` for a figure in ms.
fn secs(ms: f64) -> String {
    duration_text(ms)
}

/// How a connection ended, in words: "without a Close frame (fin)", "with Close 4000 \"bye\"".
fn how_text(held: &ModeReport) -> String {
    match held.how {
        How::Close => match (&held.close_code, &held.close_reason) {
            (Some(code), Some(reason)) => format!("with Close {code} {reason:?}"),
            (Some(code), None) => format!("with Close {code}"),
            _ => "with a Close frame without code".to_owned(),
        },
        How::Fin => "without a Close frame (TCP FIN)".to_owned(),
        How::Rst => "without a Close frame (TCP reset)".to_owned(),
        How::Error => format!(
            "by the check: {}",
            held.error
                .as_deref()
                .unwrap_or("the server broke the protocol")
        ),
        How::Open => "still open".to_owned(),
    }
}

/// The server's Pings on a connection, in words.
fn pings_text(held: &ModeReport) -> String {
    match (held.server_pings, held.server_ping_interval_ms) {
        (0, _) => "the server sent no Ping".to_owned(),
        (1, _) => "the server pinged once".to_owned(),
        (n, Some(every)) => format!("the server pinged {n} times, every {}", secs(every)),
        (n, None) => format!("the server pinged {n} times"),
    }
}

/// Who cut it, and on what evidence.
fn cut_by_text(idle: &IdleReport, browser: &ModeReport) -> String {
    match idle.cut_by {
        CutBy::Proxy => "cut by the proxy: seen through the URL, not straight to --upstream".into(),
        CutBy::Server => "cut by the server: seen straight to --upstream too".into(),
        CutBy::Unknown if browser.how == How::Close => "a Close frame is written by a WebSocket \
            endpoint, most likely the server (a proxy that relays bytes writes none); \
            --upstream ws://APP/PATH would tell"
            .into(),
        CutBy::Unknown => "TCP ended without a Close frame: what a proxy's timeout does (nginx's \
            proxy_read_timeout is 60 s by default), or a server that drops the socket; \
            --upstream ws://APP/PATH would tell which"
            .into(),
    }
}

/// The other modes' endings, for the detail: "client-ping still open, app-message after 5.0 s".
fn others_text(modes: &[ModeReport]) -> String {
    modes
        .iter()
        .filter(|held| held.mode != IdleMode::Browser)
        .map(|held| match ended_ms(held) {
            Some(ms) => format!(
                "{} ended after {} {}",
                held.mode.as_str(),
                secs(ms),
                how_text(held)
            ),
            None => format!("{} still open", held.mode.as_str()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the server's Pings were, on any connection (the quiet one may have been cut before the
/// first), and the keepalive that helps: a Ping every `every`.
fn keepalive_text(idle: &IdleReport, cut: f64, every: &str) -> String {
    let held = idle
        .modes
        .iter()
        .chain(idle.upstream_modes.iter().flatten());
    let interval = held.clone().find_map(|held| held.server_ping_interval_ms);
    let first = held
        .clone()
        .filter_map(|held| held.first_ping_ms)
        .reduce(f64::min);
    let longest = held
        .map(|held| held.ended_after_ms.unwrap_or(idle.max_ms))
        .reduce(f64::max)
        .unwrap_or(idle.max_ms);
    let cut_ms = cut;
    let cut = secs(cut);
    let ping = format!("ping every <= {every} (the wsclose crate: `Timing::ping_interval`)");
    match (interval, first) {
        (Some(interval), _) if interval * 2.0 > cut_ms => format!(
            "the server pings every {}, too seldom for a cut after {cut}: {ping}",
            secs(interval)
        ),
        (None, Some(first)) if first >= cut_ms => format!(
            "the server's first Ping came {} after the upgrade, after the cut at {cut}: {ping}",
            secs(first)
        ),
        (Some(_), _) | (None, Some(_)) => format!(
            "the server pings, yet a quiet connection is cut after {cut} (what cuts it does not \
             count the server's Pings): the client must send too, a message every <= {every}"
        ),
        (None, None) => format!(
            "the server sent no Ping on any connection (in up to {}): {ping}",
            secs(longest)
        ),
    }
}

/// The fix, in concrete terms; `None` when nothing was cut.
pub fn fix(idle: &IdleReport) -> Option<String> {
    let browser = of(&idle.modes, IdleMode::Browser)?;
    let cut = idle.cut_after_ms?;
    let keepalive = idle
        .recommended_ping_interval_ms
        .map(|every| keepalive_text(idle, cut, &secs(every)));
    Some(match idle.classification {
        Classification::IdleTimeout => {
            let keepalive = keepalive.expect("an idle timeout has an interval");
            match idle.cut_by {
                CutBy::Server => format!(
                    "{keepalive}; or raise the server's own idle timeout, and end a connection \
                     with a Close frame, not a bare disconnect (browsers show 1006)"
                ),
                _ => format!(
                    "{keepalive}; or raise the proxy's idle timeout above the ping interval \
                     (nginx: proxy_read_timeout; HAProxy: timeout tunnel)"
                ),
            }
        }
        Classification::LifetimeCap => format!(
            "a lifetime cap: every connection is cut after about {} whatever traffic flows, so \
             no keepalive keeps it open; reconnect with backoff on close, and raise the cap if \
             it is yours",
            secs(cut)
        ),
        Classification::ServerDropsQuiet => {
            let code = browser
                .close_code
                .map_or("its code".to_owned(), |c| c.to_string());
            match keepalive {
                Some(keepalive) => format!(
                    "the server closes a quiet connection ({code}) after {}: if that is not \
                     meant, {keepalive}; if it is, the page must reconnect on close code {code}",
                    secs(cut)
                ),
                None => format!(
                    "the server closes every connection ({code}) after about {}, whatever \
                     traffic flows: the page must reconnect on close code {code}",
                    secs(cut)
                ),
            }
        }
        Classification::Inconclusive => format!(
            "a quiet connection is cut after {} without a Close frame, and the connections \
             with traffic ended sooner: look at what the server and the proxy log for them",
            secs(cut)
        ),
        Classification::NoCut => return None,
    })
}

/// The `idle` check: `fail` when the quiet `browser` connection was cut before MAX without a
/// Close frame (a quiet tab sees 1006), `warn` when the server closed it cleanly, `pass` when
/// it was still open at MAX; `skip` when the run stopped before, or `server_down` (a crash cuts
/// every connection: no finding about idleness).
pub fn idle_check(idle: &IdleReport, server_down: bool) -> CheckResult {
    let id = CheckId::Idle;
    let Some(browser) = of(&idle.modes, IdleMode::Browser) else {
        return CheckResult::skip(id, "no quiet connection was held");
    };
    if server_down {
        return CheckResult::skip(
            id,
            "not conclusive: the server went down during the run (see server-survived)",
        );
    }
    let max = secs(idle.max_ms);
    let classified = format!(
        "{}; {}",
        idle.classification.as_str(),
        others_text(&idle.modes)
    );
    let upstream_note = idle.upstream_error.as_ref().map_or(String::new(), |error| {
        format!("; --upstream could not be held: {error}")
    });
    let Some(cut) = idle.cut_after_ms else {
        if let Some(stopped) = idle.stopped {
            return CheckResult::skip(
                id,
                format!("cut off: {stopped}, the quiet connection still open (MAX {max})"),
            );
        }
        let detail = format!(
            "the quiet browser connection was still open after {max} ({}); {classified}{upstream_note}",
            pings_text(browser)
        );
        return CheckResult::new(id, Verdict::Pass, None, detail);
    };
    let detail = format!(
        "the quiet browser connection ended after {} {} ({}); {classified}; {}{upstream_note}",
        secs(cut),
        how_text(browser),
        pings_text(browser),
        cut_by_text(idle, browser)
    );
    let verdict = if browser.how.abnormal() {
        Verdict::Fail
    } else {
        Verdict::Warn
    };
    let result = CheckResult::new(id, verdict, Some(cut), detail);
    match fix(idle) {
        Some(fix) => result.fix(&fix),
        None => result,
    }
}

/// The `dead-peer` check: `pass` when a peer that answers no Ping was dropped within MAX,
/// `warn` when it was not (or the check had to end it); `skip` when the run stopped first.
pub fn dead_peer_check(dead: &DeadPeerReport, idle: &IdleReport) -> CheckResult {
    let id = CheckId::DeadPeer;
    let max = secs(idle.max_ms);
    let pings = match dead.server_pings {
        0 => "the server sent no Ping".to_owned(),
        n => format!("{n} Ping(s) not answered"),
    };
    match (dead.how, dead.dropped_after_ms) {
        (How::Open, _) | (_, None) => match idle.stopped {
            Some(stopped) => CheckResult::skip(
                id,
                format!("cut off: {stopped}, the dead peer still connected (MAX {max})"),
            ),
            None => CheckResult::new(
                id,
                Verdict::Warn,
                None,
                format!(
                    "a peer that answers no Ping was still connected after {max} ({pings}): a \
                     client that vanished (a laptop shut, a network gone) holds its socket and \
                     memory until TCP gives up"
                ),
            )
            .fix(
                "ping every connection and drop a peer whose Pong does not come within a \
                 timeout (the wsclose crate: `Timing::pong_timeout`).",
            ),
        },
        (How::Error, Some(ms)) => CheckResult::new(
            id,
            Verdict::Warn,
            Some(ms),
            format!(
                "the check ended the dead peer's connection after {}: {}",
                secs(ms),
                dead.error
                    .as_deref()
                    .unwrap_or("the server broke the protocol")
            ),
        ),
        (how, Some(ms)) => {
            let ended = match (how, dead.close_code) {
                (How::Close, Some(code)) => format!("with Close {code}"),
                (How::Close, None) => "with a Close frame".to_owned(),
                (How::Rst, _) => "by a TCP reset".to_owned(),
                _ => "by a TCP FIN".to_owned(),
            };
            let mut detail = format!(
                "a peer that answers no Ping was dropped after {} {ended} ({pings})",
                secs(ms)
            );
            let cut_with_quiet = of(&idle.modes, IdleMode::Browser)
                .filter(|browser| browser.how.abnormal())
                .and_then(ended_ms)
                .is_some_and(|cut| (cut - ms).abs() <= SAME_TIME.as_secs_f64() * 1e3);
            if cut_with_quiet {
                detail.push_str(
                    ", at the same time as the quiet browser connection: the idle cut, not a \
                     check of the peer",
                );
            }
            CheckResult::new(id, Verdict::Pass, Some(ms), detail)
        }
    }
}

/// What a quiet browser tab will see, in each engine: the `close` event at the cut, 1006 and
/// not clean for a cut without a Close frame, the server's code and clean for its Close.
/// `close_after_ms` counts from the `open` event here. `None` when nothing was cut.
pub fn quiet_tab(idle: &IdleReport) -> Option<Predicted> {
    let browser = of(&idle.modes, IdleMode::Browser)?;
    let cut = ended_ms(browser)?;
    let outcome = if browser.how == How::Close {
        BrowserOutcome {
            close_after_ms: cut,
            code: shown(browser.close_code.map(CloseCode::from)),
            was_clean: true,
        }
    } else {
        BrowserOutcome {
            close_after_ms: cut,
            code: ABNORMAL_CLOSURE,
            was_clean: false,
        }
    };
    Some(Predicted {
        chromium: outcome,
        firefox: outcome,
        webkit: outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idle::IdleMode::{AppMessage, Browser, ClientPing};

    /// A connection of `mode` that ended `how` after `ms` (`None`: still open).
    fn held(mode: IdleMode, how: How, ms: Option<f64>) -> ModeReport {
        ModeReport {
            ended_after_ms: ms,
            how,
            ..ModeReport::open(mode)
        }
    }

    fn open(mode: IdleMode) -> ModeReport {
        ModeReport::open(mode)
    }

    fn fin(mode: IdleMode, ms: f64) -> ModeReport {
        held(mode, How::Fin, Some(ms))
    }

    /// The three modes cut (FIN) after these many ms.
    fn all_fin(browser: f64, ping: f64, message: f64) -> [ModeReport; 3] {
        [
            fin(Browser, browser),
            fin(ClientPing, ping),
            fin(AppMessage, message),
        ]
    }

    fn closed(mode: IdleMode, code: u16, ms: f64) -> ModeReport {
        ModeReport {
            close_code: Some(code),
            close_reason: Some("idle".into()),
            ..held(mode, How::Close, Some(ms))
        }
    }

    fn report_of(modes: Vec<ModeReport>, upstream: Option<Vec<ModeReport>>) -> IdleReport {
        let observed = Observed {
            modes,
            upstream: upstream.map(Ok),
            dead_peer: open(Browser).into(),
            stopped: None,
        };
        report(&observed, Duration::from_secs(130), Duration::from_secs(10)).0
    }

    #[test]
    fn nothing_cut_is_no_cut_with_nothing_to_recommend() {
        let modes = [open(Browser), open(ClientPing), open(AppMessage)];
        let classified = classify(&modes, None);
        assert_eq!(
            classified,
            Classified {
                classification: Classification::NoCut,
                cut_after_ms: None,
                cut_by: CutBy::Unknown,
                recommended_ping_interval_ms: None,
            }
        );
    }

    #[test]
    fn the_quiet_connection_cut_and_traffic_surviving_is_an_idle_timeout() {
        let modes = [fin(Browser, 60_004.0), open(ClientPing), open(AppMessage)];
        let classified = classify(&modes, None);
        assert_eq!(classified.classification, Classification::IdleTimeout);
        assert_eq!(classified.cut_after_ms, Some(60_004.0));
        assert_eq!(classified.cut_by, CutBy::Unknown);
        assert_eq!(classified.recommended_ping_interval_ms, Some(30_000.0));
        // One mode with traffic lasting clearly longer (more than 1 s) is enough.
        let longer = all_fin(10_000.0, 10_200.0, 11_500.0);
        assert_eq!(
            classify(&longer, None).classification,
            Classification::IdleTimeout
        );
    }

    #[test]
    fn every_mode_cut_within_a_second_is_a_lifetime_cap_and_no_interval_helps() {
        let modes = [
            fin(Browser, 10_000.0),
            fin(ClientPing, 10_900.0),
            held(AppMessage, How::Rst, Some(9_100.0)),
        ];
        let classified = classify(&modes, None);
        assert_eq!(classified.classification, Classification::LifetimeCap);
        assert_eq!(classified.recommended_ping_interval_ms, None);
        // 1.5 s apart is no longer "the same time": the traffic bought time.
        let apart = all_fin(10_000.0, 10_900.0, 11_500.0);
        assert_ne!(
            classify(&apart, None).classification,
            Classification::LifetimeCap
        );
    }

    #[test]
    fn a_close_frame_on_the_quiet_connection_is_the_server_dropping_it() {
        let modes = [
            closed(Browser, 4000, 5_000.0),
            open(ClientPing),
            open(AppMessage),
        ];
        let classified = classify(&modes, None);
        assert_eq!(classified.classification, Classification::ServerDropsQuiet);
        assert_eq!(classified.recommended_ping_interval_ms, Some(2_000.0));
        // Closed whatever flows: no interval helps.
        let all = [
            closed(Browser, 1001, 5_000.0),
            closed(ClientPing, 1001, 5_001.0),
            closed(AppMessage, 1001, 5_002.0),
        ];
        let classified = classify(&all, None);
        assert_eq!(classified.classification, Classification::ServerDropsQuiet);
        assert_eq!(classified.recommended_ping_interval_ms, None);
    }

    #[test]
    fn traffic_ending_sooner_than_the_quiet_connection_is_inconclusive() {
        let modes = [
            fin(Browser, 10_000.0),
            closed(ClientPing, 1003, 3_000.0),
            closed(AppMessage, 1003, 3_000.0),
        ];
        let classified = classify(&modes, None);
        assert_eq!(classified.classification, Classification::Inconclusive);
        assert_eq!(classified.recommended_ping_interval_ms, None);
    }

    #[test]
    fn upstream_names_the_proxy_or_the_server() {
        let modes = [fin(Browser, 10_000.0), open(ClientPing), open(AppMessage)];
        let direct_open = [open(Browser), open(ClientPing), open(AppMessage)];
        assert_eq!(classify(&modes, Some(&direct_open)).cut_by, CutBy::Proxy);
        let direct_cut = [fin(Browser, 10_300.0), open(ClientPing), open(AppMessage)];
        assert_eq!(classify(&modes, Some(&direct_cut)).cut_by, CutBy::Server);
        // Cut much later straight to the app: the proxy cut first.
        let direct_later = [fin(Browser, 30_000.0), open(ClientPing), open(AppMessage)];
        assert_eq!(classify(&modes, Some(&direct_later)).cut_by, CutBy::Proxy);
    }

    #[test]
    fn half_rounds_down_to_whole_seconds_from_a_second_on() {
        assert_eq!(half(60_004.0), 30_000.0);
        assert_eq!(half(2_001.0), 1_000.0);
        assert_eq!(half(1_993.0), 996.0);
    }

    #[test]
    fn the_idle_verdict_fails_a_1006_warns_a_close_and_passes_an_open_connection() {
        let cut = report_of(
            vec![fin(Browser, 5_000.0), open(ClientPing), open(AppMessage)],
            Some(vec![open(Browser), open(ClientPing), open(AppMessage)]),
        );
        let check = idle_check(&cut, false);
        assert_eq!((check.id, check.verdict), (CheckId::Idle, Verdict::Fail));
        assert_eq!(check.ms, Some(5_000.0));
        assert!(
            check.detail.contains("cut by the proxy"),
            "{}",
            check.detail
        );
        let fix = check.fix.unwrap();
        assert!(
            fix.contains(
                "the server sent no Ping on any connection (in up to 130.0 s): ping every <= \
                 2.0 s"
            ) && fix.contains("proxy_read_timeout"),
            "{fix}"
        );
        // A crash cuts every connection: no finding about idleness.
        assert_eq!(idle_check(&cut, true).verdict, Verdict::Skip);

        let closed = report_of(
            vec![
                closed(Browser, 4000, 5_000.0),
                open(ClientPing),
                open(AppMessage),
            ],
            None,
        );
        let check = idle_check(&closed, false);
        assert_eq!(check.verdict, Verdict::Warn);
        assert!(check.fix.unwrap().contains("reconnect on close code 4000"));

        let quiet = report_of(
            vec![open(Browser), open(ClientPing), open(AppMessage)],
            None,
        );
        let check = idle_check(&quiet, false);
        assert_eq!((check.verdict, check.fix), (Verdict::Pass, None));
        let stopped = IdleReport {
            stopped: Some(crate::Stopped::MaxTime(Duration::from_secs(60))),
            ..quiet
        };
        assert_eq!(idle_check(&stopped, false).verdict, Verdict::Skip);
    }

    #[test]
    fn the_fix_names_the_servers_pings_seen_on_any_connection() {
        let fix_for = |ping: ModeReport| {
            let modes = vec![fin(Browser, 10_003.0), ping, open(AppMessage)];
            fix(&report_of(modes, None)).unwrap()
        };
        // The quiet connection was cut before the first Ping; another one saw it at 27 s.
        let late = ModeReport {
            server_pings: 1,
            first_ping_ms: Some(27_000.0),
            ..open(ClientPing)
        };
        let fix = fix_for(late.clone());
        assert!(
            fix.starts_with(
                "the server's first Ping came 27.0 s after the upgrade, after the cut at 10.0 s: \
                 ping every <= 5.0 s"
            ),
            "{fix}"
        );
        let every = ModeReport {
            server_pings: 3,
            server_ping_interval_ms: Some(27_000.0),
            ..late.clone()
        };
        assert!(fix_for(every).starts_with("the server pings every 27.0 s, too seldom"));
        let often = ModeReport {
            server_pings: 9,
            server_ping_interval_ms: Some(1_000.0),
            ..late
        };
        assert!(fix_for(often).contains("the client must send too"));
    }

    #[test]
    fn the_dead_peer_passes_when_dropped_and_warns_when_never() {
        let cut = report_of(
            vec![fin(Browser, 5_000.0), open(ClientPing), open(AppMessage)],
            None,
        );
        let never: DeadPeerReport = open(Browser).into();
        let check = dead_peer_check(&never, &cut);
        assert_eq!(
            (check.id, check.verdict),
            (CheckId::DeadPeer, Verdict::Warn)
        );
        assert!(check.fix.unwrap().contains("Timing::pong_timeout"));
        let dropped: DeadPeerReport = closed(Browser, 1011, 30_000.0).into();
        let check = dead_peer_check(&dropped, &cut);
        assert_eq!((check.verdict, check.ms), (Verdict::Pass, Some(30_000.0)));
        assert!(check.detail.contains("with Close 1011"), "{}", check.detail);
        // Dropped with the quiet connection: the cut, not a check of the peer.
        let with_cut: DeadPeerReport = fin(Browser, 5_200.0).into();
        let check = dead_peer_check(&with_cut, &cut);
        assert_eq!(check.verdict, Verdict::Pass);
        assert!(check.detail.contains("the idle cut"), "{}", check.detail);
    }

    #[test]
    fn a_quiet_tab_sees_1006_at_the_cut_or_the_servers_code() {
        let cut = report_of(
            vec![fin(Browser, 5_000.0), open(ClientPing), open(AppMessage)],
            None,
        );
        let seen = quiet_tab(&cut).unwrap();
        for outcome in [seen.chromium, seen.firefox, seen.webkit] {
            assert_eq!(
                (outcome.close_after_ms, outcome.code, outcome.was_clean),
                (5_000.0, CloseCode::Abnormal, false)
            );
        }
        let closed = report_of(
            vec![
                closed(Browser, 4000, 5_000.0),
                open(ClientPing),
                open(AppMessage),
            ],
            None,
        );
        let seen = quiet_tab(&closed).unwrap();
        assert_eq!(
            (seen.webkit.code, seen.webkit.was_clean),
            (CloseCode::from(4000), true)
        );
        let quiet = report_of(
            vec![open(Browser), open(ClientPing), open(AppMessage)],
            None,
        );
        assert_eq!(quiet_tab(&quiet), None);
    }
}
