//! The report as a table (coloured on a terminal) or as one JSON object.

use std::io::IsTerminal;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Color, ContentArrangement, Table};

/// The table's width when stdout is not a terminal (a file, a pipe, CI logs).
pub const WIDTH_OFF_TERMINAL: u16 = 110;

use crate::browser::{Browser, Measured};
use crate::idle::{self, DeadPeerReport, IdleReport};
use crate::{BrowserOutcome, Report, Verdict};

/// The report as JSON: `{"url", "summary", "checks": [...], "predicted": {"chromium",
/// "firefox", "webkit"}}`, and `"browser"` (the same keys, for the engines measured) with
/// `--browser`.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report always serialises")
}

/// The report as two tables, the checks and the prediction, with each fix under its check.
/// Colours are used only when stdout is a terminal.
pub fn table(report: &Report) -> String {
    let mut checks = Table::new();
    checks
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["check", "verdict", "ms", "detail"]);
    if !std::io::stdout().is_terminal() {
        checks.set_width(WIDTH_OFF_TERMINAL);
    }
    for check in &report.checks {
        let (label, colour) = match check.verdict {
            Verdict::Pass => ("pass", Color::Green),
            Verdict::Warn => ("warn", Color::Yellow),
            Verdict::Fail => ("fail", Color::Red),
            Verdict::Skip => ("skip", Color::DarkGrey),
        };
        let mut detail = check.detail.clone();
        if let Some(fix) = &check.fix {
            detail.push_str("\nfix: ");
            detail.push_str(fix);
        }
        checks.add_row([
            Cell::new(check.id),
            Cell::new(label).fg(colour),
            Cell::new(check.ms.map_or(String::new(), |ms| format!("{ms:.2}"))),
            Cell::new(detail),
        ]);
    }
    let mut predicted = Table::new();
    predicted.load_preset(UTF8_FULL_CONDENSED).set_header([
        "browser, after close()",
        "close event after",
        "code",
        "wasClean",
    ]);
    for browser in Browser::all() {
        predicted.add_row(outcome_row(browser.label(), report.predicted.of(*browser)));
    }
    let mut text = format!(
        "wsclose-check {}\n{checks}\npredicted (from the native observations above):\n{predicted}",
        report.url
    );
    if let Some(measured) = &report.browser {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED).set_header([
            "browser, measured",
            "close event after",
            "code",
            "wasClean",
            "as predicted",
        ]);
        for (browser, result) in measured {
            let name = browser.name();
            let predicted = report.predicted.of(*browser);
            match result {
                Measured::Outcome(outcome) => {
                    let mut row = outcome_row(name, *outcome).to_vec();
                    let agrees = agrees(predicted, *outcome);
                    row.push(Cell::new(if agrees { "yes" } else { "no" }).fg(if agrees {
                        Color::Green
                    } else {
                        Color::Red
                    }));
                    table.add_row(row);
                }
                Measured::Failed { error } => {
                    table.add_row([
                        Cell::new(name),
                        Cell::new(format!("failed: {error}")),
                        Cell::new(""),
                        Cell::new(""),
                        Cell::new("no").fg(Color::Red),
                    ]);
                }
            }
        }
        text.push_str(&format!("\nmeasured in headless browsers:\n{table}"));
    }
    if let Some(idle) = &report.idle {
        text.push_str(&idle_table(idle, report.dead_peer.as_ref()));
    }
    text
}

/// `--idle`: one row per connection, then the classification, who cut, what a quiet tab sees
/// in each engine, and the fix.
fn idle_table(idle: &IdleReport, dead_peer: Option<&DeadPeerReport>) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "connection",
        "ended after",
        "how",
        "close",
        "server pings",
        "data frames",
    ]);
    let upstream = idle.upstream_modes.iter().flatten();
    let rows = idle
        .modes
        .iter()
        .map(|held| (held.mode.as_str().to_owned(), held))
        .chain(upstream.map(|held| (format!("upstream {}", held.mode.as_str()), held)));
    for (name, held) in rows {
        let pings = match held.server_ping_interval_ms {
            Some(every) => format!("{} (every {})", held.server_pings, duration_text(every)),
            None => held.server_pings.to_string(),
        };
        table.add_row([
            Cell::new(name),
            Cell::new(held.ended_after_ms.map_or("-".to_owned(), duration_text)),
            Cell::new(held.how.as_str()),
            Cell::new(close_text(held.close_code, held.close_reason.as_deref())),
            Cell::new(pings),
            Cell::new(held.data_frames),
        ]);
    }
    if let Some(dead) = dead_peer {
        table.add_row([
            Cell::new("dead-peer (answers nothing)"),
            Cell::new(dead.dropped_after_ms.map_or("-".to_owned(), duration_text)),
            Cell::new(dead.how.as_str()),
            Cell::new(close_text(dead.close_code, None)),
            Cell::new(dead.server_pings),
            Cell::new(""),
        ]);
    }
    let cut = match idle.cut_after_ms {
        Some(cut) => format!(" after {}", duration_text(cut)),
        None => String::new(),
    };
    let mut text = format!(
        "\nidle connections (--idle {}):\n{table}\nclassification: {}{cut}; cut by: {}",
        duration_text(idle.max_ms),
        idle.classification.as_str(),
        idle.cut_by.as_str()
    );
    if let Some(every) = idle.recommended_ping_interval_ms {
        text.push_str(&format!("; keepalive every <= {}", duration_text(every)));
    }
    if let Some(quiet) = idle::quiet_tab(idle) {
        let mut tab = Table::new();
        tab.load_preset(UTF8_FULL_CONDENSED).set_header([
            "browser, quiet tab",
            "close event after open",
            "code",
            "wasClean",
        ]);
        for browser in Browser::all() {
            tab.add_row(outcome_row(browser.label(), quiet.of(*browser)));
        }
        text.push_str(&format!("\na quiet tab (predicted):\n{tab}"));
    }
    if let Some(fix) = idle::fix(idle) {
        text.push_str(&format!("\nfix: {fix}"));
    }
    text
}

/// A Close frame's code and reason, or nothing.
fn close_text(code: Option<u16>, reason: Option<&str>) -> String {
    match (code, reason) {
        (Some(code), Some(reason)) => format!("{code} {reason:?}"),
        (Some(code), None) => code.to_string(),
        (None, _) => String::new(),
    }
}

/// True when a measured outcome is the predicted one: the same code and wasClean, and a time
/// within a quarter of the prediction or 100 ms of it, whichever is larger.
pub fn agrees(predicted: BrowserOutcome, measured: BrowserOutcome) -> bool {
    let slack = (predicted.close_after_ms * 0.25).max(100.0);
    predicted.code == measured.code
        && predicted.was_clean == measured.was_clean
        && (predicted.close_after_ms - measured.close_after_ms).abs() <= slack
}

/// `12.3 ms` below a second, `60.0 s` above.
pub fn duration_text(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

fn outcome_row(name: &str, outcome: BrowserOutcome) -> [Cell; 4] {
    let after = duration_text(outcome.close_after_ms);
    let colour = if outcome.was_clean && outcome.close_after_ms < 1000.0 {
        Color::Green
    } else {
        Color::Red
    };
    [
        Cell::new(name),
        Cell::new(after).fg(colour),
        Cell::new(outcome.code),
        Cell::new(outcome.was_clean),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{json, Value};

    use super::*;
    use std::time::Duration;

    use crate::idle::{IdleMode, ModeReport, Observed};
    use crate::predict::{predict, ServerCloseBehaviour};
    use crate::{CheckId, CheckResult, CloseCode};

    /// The keys of every object in `value`, recursively, as `path.key` lines, for a pin of the
    /// shape that ignores the values.
    fn shape(value: &Value, path: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    let path = format!("{path}.{key}");
                    out.push(path.clone());
                    shape(value, &path, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    shape(item, &format!("{path}[]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_json_keys_and_shape_are_the_contract() {
        let behaviour = ServerCloseBehaviour::Answered {
            close_ms: 0.4,
            code: Some(CloseCode::Normal),
            tcp_end_ms: Some(0.1),
        };
        let predicted = predict(&behaviour);
        let mut browser = BTreeMap::new();
        browser.insert(Browser::WebKit, Measured::Outcome(predicted.webkit));
        browser.insert(
            Browser::Chromium,
            Measured::Failed {
                error: "refused".into(),
            },
        );
        let checks = vec![
            CheckResult::new(CheckId::Handshake, Verdict::Pass, Some(1.5), "101".into()),
            CheckResult::skip(CheckId::ProtocolErrors, "not run by default").fix("run it"),
        ];
        let report = Report {
            url: "ws://127.0.0.1:1/".into(),
            summary: Report::summary(&checks, false),
            checks,
            predicted,
            browser: Some(browser),
            idle: None,
            dead_peer: None,
            behaviour,
            stopped: None,
        };
        let value: Value = serde_json::from_str(&json(&report)).unwrap();
        let mut keys = Vec::new();
        shape(&value, "", &mut keys);
        keys.sort();
        keys.dedup();
        let outcome = ["close_after_ms", "code", "was_clean"];
        let mut expected: Vec<String> = [".url", ".summary", ".checks", ".predicted", ".browser"]
            .map(str::to_owned)
            .to_vec();
        for key in ["id", "verdict", "ms", "detail"] {
            expected.push(format!(".checks[].{key}"));
        }
        expected.push(".checks[].fix".into());
        for engine in ["chromium", "firefox", "webkit"] {
            expected.push(format!(".predicted.{engine}"));
            expected.extend(outcome.map(|key| format!(".predicted.{engine}.{key}")));
        }
        expected.extend(
            [
                ".browser.chromium",
                ".browser.chromium.error",
                ".browser.webkit",
            ]
            .map(str::to_owned),
        );
        expected.extend(outcome.map(|key| format!(".browser.webkit.{key}")));
        expected.sort();
        assert_eq!(keys, expected);
        // The values' types: numbers, ids and verdicts as the README gives them.
        assert_eq!(value["checks"][0]["id"], "handshake");
        assert_eq!(value["checks"][0]["verdict"], "pass");
        assert_eq!(value["checks"][0]["ms"], 1.5);
        assert_eq!(value["checks"][1]["ms"], Value::Null);
        assert_eq!(value["checks"][1]["verdict"], "skip");
        assert_eq!(value["predicted"]["webkit"]["code"], 1000);
        assert_eq!(value["browser"]["webkit"]["was_clean"], json!(true));
        // Without --browser there is no "browser" key at all.
        let without = Report {
            browser: None,
            ..report
        };
        assert!(serde_json::from_str::<Value>(&json(&without)).unwrap()["browser"].is_null());
        assert!(!json(&without).contains("\"browser\""));
        // Without --idle there is no "idle" and no "dead_peer"; with it, their keys.
        assert!(!json(&without).contains("\"idle\"") && !json(&without).contains("dead_peer"));
        let held = ModeReport::open;
        let observed = Observed {
            modes: IdleMode::ALL.map(held).to_vec(),
            upstream: Some(Ok(IdleMode::ALL.map(held).to_vec())),
            dead_peer: held(IdleMode::Browser).into(),
            stopped: None,
        };
        let (idle, dead_peer) =
            idle::report(&observed, Duration::from_secs(130), Duration::from_secs(10));
        let with = Report {
            idle: Some(idle),
            dead_peer: Some(dead_peer),
            ..without
        };
        let value: Value = serde_json::from_str(&json(&with)).unwrap();
        let mut keys = Vec::new();
        shape(&value["idle"], "idle", &mut keys);
        shape(&value["dead_peer"], "dead_peer", &mut keys);
        keys.sort();
        keys.dedup();
        let mode = [
            "close_code",
            "close_reason",
            "ended_after_ms",
            "how",
            "mode",
            "server_ping_interval_ms",
            "server_pings",
        ];
        let mut expected: Vec<String> = [
            "classification",
            "cut_after_ms",
            "cut_by",
            "max_ms",
            "modes",
            "recommended_ping_interval_ms",
            "upstream_modes",
        ]
        .map(|key| format!("idle.{key}"))
        .to_vec();
        expected.extend(mode.map(|key| format!("idle.modes[].{key}")));
        expected.extend(mode.map(|key| format!("idle.upstream_modes[].{key}")));
        expected.extend(
            ["close_code", "dropped_after_ms", "how"].map(|key| format!("dead_peer.{key}")),
        );
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(value["idle"]["modes"][1]["mode"], "client-ping");
        assert_eq!(value["idle"]["classification"], "no-cut");
        assert_eq!(value["idle"]["cut_by"], "unknown");
        assert_eq!(value["dead_peer"]["how"], "open");
    }
}
