//! What the page shows, drawn from its state: a run's row and chart bar, `#summary`, and
//! `#browser`.

use wasm_bindgen::JsValue;
use web_sys::Element;

use super::page::Page;
use super::run::{Phase, Run};
use super::SENT_CODE;
use crate::chart::{self, Bar, BarKind};
use crate::explain::{self, format_ms};
use crate::number::{fixed, shortest};
use crate::results::{self, BrowserInfo, Engine};

impl Page {
    /// Rewrites `#summary`: one row per URL with a finished probe.
    pub(super) fn redraw_summary(&self) -> Result<(), JsValue> {
        let summary = results::summarise(&self.exported_runs());
        self.summary.set_text_content(None);
        if summary.is_empty() {
            return self.summary_table.set_attribute("hidden", "");
        }
        self.summary_table.remove_attribute("hidden")?;
        for url in &summary {
            let row = self.document.create_element("tr")?;
            let stats = &url.stats;
            row.set_attribute("data-url", &url.url)?;
            row.set_attribute("data-count", &stats.count.to_string())?;
            row.set_attribute("data-median-ms", &fixed(stats.median_ms, 3))?;
            row.set_attribute("data-p95-ms", &fixed(stats.p95_ms, 3))?;
            let codes: Vec<String> = url.codes.iter().map(u16::to_string).collect();
            for (class, text) in [
                ("url", url.url.clone()),
                ("count", stats.count.to_string()),
                ("median", format_ms(stats.median_ms)),
                ("p95", format_ms(stats.p95_ms)),
                (
                    "range",
                    format!("{} – {}", format_ms(stats.min_ms), format_ms(stats.max_ms)),
                ),
                ("codes", codes.join(", ")),
                ("clean", format!("{}/{}", url.clean, stats.count)),
            ] {
                let td = self.document.create_element("td")?;
                td.set_class_name(class);
                td.set_text_content(Some(&text));
                row.append_child(&td)?;
            }
            self.summary.append_child(&row)?;
        }
        Ok(())
    }
}

/// Writes the state of `run` into its row. Final data attributes appear only once `close`
/// has fired, so a test can tell a pending probe from a finished one.
pub(super) fn render_row(run: &Run, now: f64) -> Result<(), JsValue> {
    let row = &run.row;
    if !run.phase.is_pending() {
        row.set_attribute("data-state", run.phase.state())?;
        // The Cancel button goes with the wait it cancels.
        run.actions.set_text_content(None);
    }
    match &run.phase {
        Phase::Connecting => {}
        Phase::Closing { since_ms } => {
            run.elapsed.set_text_content(Some(&waiting(now - since_ms)));
            run.note.set_text_content(Some(explain::WAITING_NOTE));
        }
        Phase::Done(report) => {
            let verdict = if report.close.was_clean {
                "clean"
            } else {
                "unclean"
            };
            row.set_attribute("data-elapsed-ms", &fixed(report.elapsed_ms, 3))?;
            row.set_attribute("data-code", &report.close.code.to_string())?;
            row.set_attribute("data-reason", &report.close.reason)?;
            row.set_attribute("data-was-clean", &report.close.was_clean.to_string())?;
            row.set_class_name(&format!("done {verdict}"));
            run.elapsed
                .set_text_content(Some(&format_ms(report.elapsed_ms)));
            run.code
                .set_text_content(Some(&report.close.code.to_string()));
            run.reason
                .set_text_content(Some(if report.close.reason.is_empty() {
                    "(none)"
                } else {
                    &report.close.reason
                }));
            run.clean
                .set_text_content(Some(&report.close.was_clean.to_string()));
            run.note
                .set_text_content(Some(&explain::explain(report, SENT_CODE)));
        }
        Phase::Failed(error) => {
            row.set_attribute("data-error", error.kind())?;
            row.set_class_name("error");
            run.elapsed.set_text_content(Some("failed"));
            run.note
                .set_text_content(Some(&explain::explain_error(error)));
        }
        Phase::Cancelled { waited_ms } => {
            row.set_attribute("data-waited-ms", &fixed(*waited_ms, 3))?;
            row.set_class_name("cancelled");
            run.elapsed.set_text_content(Some("cancelled"));
            run.note.set_text_content(Some(&format!(
                "Cancelled after {}, before the browser fired close. The socket was dropped.",
                format_ms(*waited_ms)
            )));
        }
    }
    Ok(())
}

/// The chart bar of `run` at time `now`.
pub(super) fn bar_of(run: &Run, now: f64) -> Bar {
    let label = format!("#{} {}", run.number, shorten(&run.label, 18));
    let (ms, value, kind) = match &run.phase {
        Phase::Connecting => (0.0, "connecting…".to_owned(), BarKind::Pending),
        Phase::Closing { since_ms } => (now - since_ms, waiting(now - since_ms), BarKind::Pending),
        Phase::Done(report) => (
            report.elapsed_ms,
            chart::done_value(report.elapsed_ms, report.close.code, report.close.was_clean),
            if report.close.was_clean {
                BarKind::Clean
            } else {
                BarKind::Unclean
            },
        ),
        Phase::Failed(error) => (0.0, format!("failed: {}", error.kind()), BarKind::Failed),
        Phase::Cancelled { waited_ms } => (
            *waited_ms,
            format!("cancelled after {}", format_ms(*waited_ms)),
            BarKind::Failed,
        ),
    };
    Bar {
        label,
        ms,
        value,
        kind,
    }
}

/// What a pending row and its bar say while the browser waits `ms` for `close`:
/// `waiting… 2.5 s`.
fn waiting(ms: f64) -> String {
    format!("waiting… {} s", fixed(ms / 1_000.0, 1))
}

/// Shows the browser the page runs in, and the closing-handshake timeout it will apply.
pub(super) fn show_browser(element: &Element, browser: &BrowserInfo) -> Result<(), JsValue> {
    element.set_attribute("data-name", &browser.name)?;
    element.set_attribute("data-version", &browser.version)?;
    let timeout = browser.engine.close_timeout_ms();
    element.set_attribute("data-timeout-ms", &timeout.map_or(String::new(), shortest))?;
    let text = match timeout {
        Some(ms) if browser.engine == Engine::WebKit => format!(
            "{}: WebKit gives up on an unanswered Close after {} (measured in WebKitGTK; \
             Safari on macOS and iOS uses Apple's network stack, whose timeout is not measured \
             here).",
            browser.label(),
            format_ms(ms)
        ),
        Some(ms) => format!(
            "{}: gives up on an unanswered Close after {} (marked on the chart).",
            browser.label(),
            format_ms(ms)
        ),
        None => format!(
            "{}: its closing-handshake timeout was not measured here.",
            browser.label()
        ),
    };
    element.set_text_content(Some(&text));
    element.set_attribute("title", &browser.user_agent)
}

/// `text`, cut to `max` characters with an ellipsis.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max - 1).collect();
        short.push('…');
        short
    }
}
