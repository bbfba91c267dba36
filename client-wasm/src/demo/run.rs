//! A probe's [`Phase`] and its [`Run`] (one row), and the series of probes one click starts.

use std::rc::Rc;

use futures::future::{AbortHandle, Abortable};
use wasm_bindgen::JsValue;
use web_sys::Element;

use super::page::Page;
use super::{SENT_CODE, SENT_REASON, SETUP_TIMEOUT_MS};
use crate::explain::{self, format_ms};
use crate::probe::{CloseReport, Handshake, Probe, ProbeError};
use crate::results::ExportedRun;
use crate::socket::now_ms;

/// Where a probe is.
#[derive(Clone, Debug)]
pub(super) enum Phase {
    /// Waiting for `open`.
    Connecting,
    /// `close()` was called at this `performance.now()`; waiting for `close`.
    Closing { since_ms: f64 },
    /// The `close` event arrived.
    Done(CloseReport),
    /// No measurement; the text says why.
    Failed(ProbeError),
    /// Cancelled from the page after waiting this long (from `close()`, or from the start
    /// when it was still connecting).
    Cancelled { waited_ms: f64 },
}

impl Phase {
    pub(super) fn is_pending(&self) -> bool {
        matches!(self, Phase::Connecting | Phase::Closing { .. })
    }

    /// The row's `data-state`.
    pub(super) fn state(&self) -> &'static str {
        match self {
            Phase::Connecting | Phase::Closing { .. } => "pending",
            Phase::Done(_) => "done",
            Phase::Failed(_) => "error",
            Phase::Cancelled { .. } => "cancelled",
        }
    }
}

/// One probe and its row in `#results`.
pub(super) struct Run {
    /// Unique for the page's lifetime, unlike `number`, which restarts after `#clear`.
    pub(super) id: usize,
    /// `#` in the table.
    pub(super) number: usize,
    /// The series (one click) it belongs to; its Cancel button cancels the whole series.
    pub(super) series: usize,
    /// The URL probed.
    pub(super) url: String,
    /// What the row and the chart show as the endpoint (path plus query, or the full URL).
    pub(super) label: String,
    /// `performance.now()` when the row was added.
    pub(super) added_ms: f64,
    pub(super) phase: Phase,
    /// Known once the socket opened.
    pub(super) handshake: Option<Handshake>,
    pub(super) row: Element,
    pub(super) elapsed: Element,
    pub(super) code: Element,
    pub(super) reason: Element,
    pub(super) clean: Element,
    pub(super) open: Element,
    pub(super) negotiated: Element,
    pub(super) note: Element,
    pub(super) actions: Element,
}

impl Run {
    /// The run as the export has it.
    pub(super) fn exported(&self) -> ExportedRun {
        let report = match &self.phase {
            Phase::Done(report) => Some(report),
            _ => None,
        };
        ExportedRun {
            number: self.number,
            url: self.url.clone(),
            state: self.phase.state(),
            elapsed_ms: report.map(|report| report.elapsed_ms),
            code: report.map(|report| report.close.code),
            reason: report.map(|report| report.close.reason.clone()),
            was_clean: report.map(|report| report.close.was_clean),
            open_ms: self.handshake.as_ref().map(|h| h.open_ms),
            protocol: self.handshake.as_ref().map(|h| h.protocol.clone()),
            extensions: self.handshake.as_ref().map(|h| h.extensions.clone()),
            error: match &self.phase {
                Phase::Failed(error) => Some(format!("{}: {error}", error.kind())),
                _ => None,
            },
        }
    }

    /// What `#announce` reads out when the run ends, such as
    /// `Probe 3, /ws/drain: close in 0.91 ms (code 1000, clean).`
    pub(super) fn announcement(&self) -> Option<String> {
        let outcome = match &self.phase {
            Phase::Connecting | Phase::Closing { .. } => return None,
            Phase::Done(report) => explain::summary(report),
            Phase::Failed(error) => format!("failed: {error}"),
            Phase::Cancelled { waited_ms } => {
                format!("cancelled after {}", format_ms(*waited_ms))
            }
        };
        Some(format!("Probe {}, {}: {outcome}.", self.number, self.label))
    }
}

/// Starts a series of `#runs` probes of `url` on `page`.
pub(super) fn start(page: &Rc<Page>, url: String) {
    let page = Rc::clone(page);
    let count = page.runs_requested();
    let series = page.next_series.get();
    page.next_series.set(series + 1);
    let (handle, registration) = AbortHandle::new_pair();
    page.series.borrow_mut().push((series, handle));
    let task = Abortable::new(run_series(page.clone(), url, count, series), registration);
    wasm_bindgen_futures::spawn_local(async move {
        // `Err(Aborted)` is a cancelled series: `Page::cancel` has marked its row already.
        if let Ok(result) = task.await {
            page.report(result);
        }
        page.series
            .borrow_mut()
            .retain(|(number, _)| *number != series);
    });
}

/// `count` probes of `url`, one after the other.
async fn run_series(page: Rc<Page>, url: String, count: u32, series: usize) -> Result<(), JsValue> {
    for _ in 0..count {
        let id = page.add_run(&url, series)?;
        run(&page, id, &url).await?;
    }
    Ok(())
}

/// How long the page waits after drawing the pending row before it calls `close()`, so the
/// browser's style, layout and paint of that row happen outside the timed interval.
pub(super) const RENDER_SETTLE_MS: u32 = 50;

/// One probe, from the new row to the final data.
async fn run(page: &Rc<Page>, id: usize, url: &str) -> Result<(), JsValue> {
    let probe = match Probe::connect(url, SETUP_TIMEOUT_MS).await {
        Ok(probe) => probe,
        Err(error) => return page.set_phase(id, Phase::Failed(error)),
    };
    page.opened(id, probe.handshake())?;
    // The row and the chart are drawn *before* `close()`, and the browser gets
    // RENDER_SETTLE_MS to lay them out and paint: the `close` handler cannot run while the page
    // is busy, so drawing around `close()` put the page's own work inside the timed interval.
    // Measured in headless Chromium, 15 probes each against a bare WebSocket in the same page
    // (e2e/tests/demo_page.rs): before, median 3.8–4.0 ms against 0.9–1.0 closed at open;
    // after, 1.1–1.6 ms against 1.2–1.6 for a bare socket also closed 50 ms after open. Drawing
    // nothing until the `close` event instead was not enough (1.6–3.4 ms): the new row's own
    // paint still ran while the socket opened and closed.
    page.set_phase(id, Phase::Closing { since_ms: now_ms() })?;
    gloo_timers::future::TimeoutFuture::new(RENDER_SETTLE_MS).await;
    let closing = match probe.close(SENT_CODE, SENT_REASON) {
        Ok(closing) => closing,
        Err(error) => return page.set_phase(id, Phase::Failed(error)),
    };
    let phase = match closing.wait(None).await {
        Ok(report) => Phase::Done(report),
        Err(error) => Phase::Failed(error),
    };
    page.set_phase(id, phase)
}
