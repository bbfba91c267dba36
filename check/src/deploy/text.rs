//! The rehearsal's report in the terminal: a timeline of the 100 ms buckets in which something
//! happened, the endings, the reconnect gaps, the failed upgrades, the stampede, and the
//! verdicts with their fixes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::tally::{ms_text, How, STAMPEDE_WINDOW_MS};
use super::DeployRun;

/// The most timeline lines printed; the buckets after them are counted.
pub const TIMELINE_LINES: usize = 40;

/// What happened in one 100 ms bucket.
#[derive(Default)]
struct Bucket {
    /// Ends by kind: `close 1012`, `fin`, `rst`.
    ended: BTreeMap<String, u32>,
    upgrades: u32,
    /// Failed upgrades by status (`-`: no HTTP answer).
    failed: BTreeMap<String, u32>,
}

/// The report as text.
pub fn text(run: &DeployRun) -> String {
    let report = &run.deploy;
    let observed = &run.observed;
    let backoff = &run.backoff;
    let mut out = format!("wsclose-check --deploy {}\n", run.url);
    let _ = writeln!(
        out,
        "{} connections; {}; reconnects: a random 0-{} first, then full jitter below a \
         ceiling of {} doubling up to {}",
        report.connections,
        match &report.during {
            Some(cmd) => format!(
                "CMD {cmd:?} {}",
                match (observed.cmd_ended_ms, observed.cmd_status) {
                    (Some(ms), status) => format!(
                        "exited{} after {}",
                        status.map_or(String::new(), |status| format!(" {status}")),
                        ms_text(ms)
                    ),
                    (None, _) => "still running at the end".into(),
                }
            ),
            None => "deployed by hand".into(),
        },
        ms_text(backoff.first_max_ms),
        ms_text(backoff.base_ms),
        ms_text(backoff.cap_ms),
    );

    let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
    let bucket = |ms: f64| (ms / STAMPEDE_WINDOW_MS).floor() as i64;
    for outage in &observed.outages {
        let kind = match (outage.ending.how(), outage.ending.code()) {
            (How::Close, Some(code)) => format!("close {code}"),
            (How::Close, None) => "close".into(),
            (how, _) => how.as_str().into(),
        };
        *buckets
            .entry(bucket(outage.ended_ms))
            .or_default()
            .ended
            .entry(kind)
            .or_default() += 1;
    }
    for at in &observed.attempts {
        buckets.entry(bucket(*at)).or_default().upgrades += 1;
    }
    for failure in &observed.failures {
        let status = failure
            .status
            .map_or("-".into(), |status| status.to_string());
        *buckets
            .entry(bucket(failure.at_ms))
            .or_default()
            .failed
            .entry(status)
            .or_default() += 1;
    }
    let _ = writeln!(
        out,
        "timeline (100 ms buckets from the start of {}, those with events):",
        if report.during.is_some() {
            "CMD"
        } else {
            "the run"
        }
    );
    for (index, (start, bucket)) in buckets.iter().enumerate() {
        if index == TIMELINE_LINES {
            let _ = writeln!(out, "  ... {} more buckets", buckets.len() - index);
            break;
        }
        let mut line = format!("  {:>+8.1} s ", *start as f64 / 10.0);
        if !bucket.ended.is_empty() {
            let ended: Vec<String> = bucket
                .ended
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
            let _ = write!(line, " ended: {}", ended.join(", "));
        }
        if bucket.upgrades > 0 {
            let _ = write!(line, " upgrades: {}", bucket.upgrades);
        }
        if !bucket.failed.is_empty() {
            let failed: Vec<String> = bucket
                .failed
                .iter()
                .map(|(status, n)| format!("{n}x{status}"))
                .collect();
            let _ = write!(line, " (failed: {})", failed.join(", "));
        }
        let _ = writeln!(out, "{line}");
    }

    let _ = writeln!(out, "endings (after the start):");
    for ending in &report.endings {
        let how = match ending.how {
            How::Close => format!(
                "Close {}{}",
                ending
                    .code
                    .map_or("without code".into(), |code| code.to_string()),
                if ending.reason.is_empty() {
                    String::new()
                } else {
                    format!(" {:?}", ending.reason)
                }
            ),
            How::Fin => "FIN, no Close".into(),
            How::Rst => "RST, no Close".into(),
            How::Error => "no Close: bytes that are not a frame, or a write not taken".into(),
            How::Open => "still open".into(),
        };
        let _ = writeln!(
            out,
            "  {:>6}  {how}, {}, {} to {}",
            ending.count,
            if ending.clean {
                "clean"
            } else {
                "not clean (1006)"
            },
            ms_text(ending.after_ms.min),
            ms_text(ending.after_ms.max),
        );
    }
    if report.endings.is_empty() {
        let _ = writeln!(out, "  none");
    }
    let gap = |value: Option<f64>| value.map_or("-".into(), ms_text);
    let _ = writeln!(
        out,
        "cut by: {}\nreconnect gap: p50 {}, p99 {}, max {}; not back: {}",
        format!("{:?}", report.cut_by).to_lowercase(),
        gap(report.reconnect_gap_ms.p50),
        gap(report.reconnect_gap_ms.p99),
        gap(report.reconnect_gap_ms.max),
        report.not_back,
    );
    let failed: Vec<String> = report
        .failed_upgrades
        .iter()
        .map(|failed| {
            format!(
                "{} x {}",
                failed.count,
                failed
                    .status
                    .map_or("no HTTP answer".into(), |status| status.to_string())
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "failed upgrades: {}\nstampede peak: {} upgrades in 100 ms (a quarter of the connections: {})",
        if failed.is_empty() {
            "0".into()
        } else {
            failed.join(", ")
        },
        report.stampede_peak_per_100ms,
        report.connections.div_ceil(4),
    );
    if run.verdicts.is_empty() {
        let _ = writeln!(
            out,
            "verdict: every connection ended with a clean Close and came back"
        );
    } else {
        let _ = writeln!(out, "verdict:");
        for verdict in &run.verdicts {
            let _ = writeln!(out, "  - {verdict}");
        }
    }
    out.trim_end().to_owned()
}
