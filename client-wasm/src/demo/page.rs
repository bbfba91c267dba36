//! [`Page`]: the state the listeners, the running probes and the timer share, and the
//! changes to it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures::future::AbortHandle;
use gloo_events::EventListener;
use gloo_timers::callback::Interval;
use wasm_bindgen::JsValue;
use web_sys::{
    Document, Element, Event, EventTarget, HtmlInputElement, HtmlTextAreaElement, Location,
};

use super::render::{bar_of, render_row};
use super::run::{Phase, Run};
use super::TICK_MS;
use crate::chart::{self, Bar, Chart};
use crate::explain::format_ms;
use crate::number::fixed;
use crate::probe::Handshake;
use crate::results::{runs_of, BrowserInfo, ExportedRun};
use crate::socket::now_ms;
use crate::subscription::Subscription;

/// The page state shared by the listeners, the running probes and the timer.
pub(super) struct Page {
    pub(super) document: Document,
    pub(super) location: Location,
    /// `host:port` of the page, to shorten labels of same-host URLs.
    pub(super) host: String,
    /// The browser the page runs in.
    pub(super) browser: BrowserInfo,
    pub(super) url_input: HtmlInputElement,
    /// `#runs`: how many probes one click starts.
    pub(super) runs_input: HtmlInputElement,
    /// `#results > tbody`.
    pub(super) rows: Element,
    /// `#chart`.
    pub(super) chart: RefCell<Chart>,
    /// `#results-empty`, hidden once there is a row.
    pub(super) empty_hint: Option<Element>,
    /// `#summary`, hidden while no probe has finished, and its body.
    pub(super) summary_table: Element,
    pub(super) summary: Element,
    /// `#announce`: the live region.
    pub(super) announce: Element,
    /// `#export-output`, `#export-download` and the object URL it points to.
    pub(super) export_output: HtmlTextAreaElement,
    pub(super) export_download: Element,
    pub(super) download_url: RefCell<Option<String>>,
    /// `#share-link`.
    pub(super) share_link: Element,
    pub(super) runs: RefCell<Vec<Run>>,
    pub(super) next_run_id: Cell<usize>,
    /// The running series and their numbers, to cancel them. A few at a time: a `Vec`.
    pub(super) series: RefCell<Vec<(usize, AbortHandle)>>,
    pub(super) next_series: Cell<usize>,
    /// Redraws the live timers while a probe is pending; `None` when nothing is pending.
    pub(super) ticker: RefCell<Option<Interval>>,
    /// The live panel's subscription, while it runs.
    pub(super) subscription: RefCell<Option<Subscription>>,
}

impl Page {
    /// Logs an error of a listener to the console: there is no caller to return it to.
    pub(super) fn report(&self, result: Result<(), JsValue>) {
        if let Err(error) = result {
            web_sys::console::error_2(&"wsclose demo:".into(), &error);
        }
    }

    /// Listens for `event` on `target` while the returned listener lives (the [`super::Demo`]
    /// holds it): `action` runs with the page while the page exists, and an error it returns
    /// goes to [`Page::report`].
    pub(super) fn listen(
        self: &Rc<Self>,
        target: &EventTarget,
        event: &'static str,
        action: impl Fn(&Rc<Page>, &Event) -> Result<(), JsValue> + 'static,
    ) -> EventListener {
        let page = Rc::downgrade(self);
        EventListener::new(target, event, move |event| {
            if let Some(page) = page.upgrade() {
                page.report(action(&page, event));
            }
        })
    }

    pub(super) fn pending(&self) -> usize {
        self.runs
            .borrow()
            .iter()
            .filter(|run| run.phase.is_pending())
            .count()
    }

    /// `#runs` as a number of probes, within 1..=[`MAX_RUNS`](crate::results::MAX_RUNS); the
    /// field is corrected when it says something else.
    pub(super) fn runs_requested(&self) -> u32 {
        let asked = self.runs_input.value_as_number();
        let runs = runs_of(asked);
        if f64::from(runs) != asked {
            self.runs_input.set_value(&runs.to_string());
        }
        runs
    }

    /// Adds a pending row for `url` to series `series` and returns the run's id.
    pub(super) fn add_run(self: &Rc<Self>, url: &str, series: usize) -> Result<usize, JsValue> {
        let (endpoint, label) = match web_sys::Url::new(url) {
            Ok(parsed) if parsed.host() == self.host => (
                parsed.pathname(),
                format!("{}{}", parsed.pathname(), parsed.search()),
            ),
            Ok(parsed) => (parsed.pathname(), url.to_owned()),
            Err(_) => (url.to_owned(), url.to_owned()),
        };
        let id = self.next_run_id.get();
        self.next_run_id.set(id + 1);
        let number = self.runs.borrow().len() + 1;
        let document = &self.document;
        let row = document.create_element("tr")?;
        row.set_attribute("data-run", &number.to_string())?;
        row.set_attribute("data-series", &series.to_string())?;
        row.set_attribute("data-endpoint", &endpoint)?;
        row.set_attribute("data-url", url)?;
        row.set_attribute("data-state", "pending")?;
        row.set_class_name("pending");
        let cell = |class: &str, text: &str| -> Result<Element, JsValue> {
            let td = document.create_element("td")?;
            td.set_class_name(class);
            td.set_text_content(Some(text));
            row.append_child(&td)?;
            Ok(td)
        };
        cell("num", &number.to_string())?;
        let endpoint_cell = cell("endpoint", "")?;
        let code_element = document.create_element("code")?;
        code_element.set_text_content(Some(&label));
        code_element.set_attribute("title", url)?;
        endpoint_cell.append_child(&code_element)?;
        let run = Run {
            id,
            number,
            series,
            url: url.to_owned(),
            label,
            added_ms: now_ms(),
            phase: Phase::Connecting,
            handshake: None,
            elapsed: cell("elapsed", "connecting…")?,
            code: cell("code", "—")?,
            reason: cell("reason", "—")?,
            clean: cell("clean", "—")?,
            open: cell("open", "—")?,
            negotiated: cell("negotiated", "—")?,
            note: cell("note", "Opening the WebSocket…")?,
            actions: cell("actions", "")?,
            row,
        };
        let cancel = document.create_element("button")?;
        cancel.set_attribute("type", "button")?;
        cancel.set_class_name("cancel");
        cancel.set_attribute("data-series", &series.to_string())?;
        cancel.set_attribute("aria-label", &format!("Cancel probe {number}"))?;
        cancel.set_text_content(Some("Cancel"));
        run.actions.append_child(&cancel)?;
        self.rows.append_child(&run.row)?;
        if let Some(hint) = &self.empty_hint {
            hint.set_attribute("hidden", "")?;
        }
        self.runs.borrow_mut().push(run);
        self.ensure_ticker();
        self.redraw_chart()?;
        Ok(id)
    }

    /// Records what the opening handshake of run `id` gave, and shows it.
    pub(super) fn opened(&self, id: usize, handshake: Handshake) -> Result<(), JsValue> {
        let mut runs = self.runs.borrow_mut();
        let Some(run) = runs.iter_mut().find(|run| run.id == id) else {
            return Ok(());
        };
        let shown = |value: &str| {
            if value.is_empty() {
                "none".to_owned()
            } else {
                value.to_owned()
            }
        };
        run.row
            .set_attribute("data-open-ms", &fixed(handshake.open_ms, 3))?;
        run.row
            .set_attribute("data-protocol", &handshake.protocol)?;
        run.row
            .set_attribute("data-extensions", &handshake.extensions)?;
        run.open
            .set_text_content(Some(&format_ms(handshake.open_ms)));
        run.negotiated.set_text_content(Some(&format!(
            "protocol: {}; extensions: {}",
            shown(&handshake.protocol),
            shown(&handshake.extensions)
        )));
        run.handshake = Some(handshake);
        Ok(())
    }

    /// Moves run `id` to `phase` and updates its row and the chart; when the run ends, also
    /// the summary and the live region. A run that was cancelled or cleared stays as it is.
    pub(super) fn set_phase(&self, id: usize, phase: Phase) -> Result<(), JsValue> {
        let ended = !phase.is_pending();
        let announcement = {
            let mut runs = self.runs.borrow_mut();
            let Some(run) = runs.iter_mut().find(|run| run.id == id) else {
                return Ok(());
            };
            if !run.phase.is_pending() {
                return Ok(());
            }
            run.phase = phase;
            render_row(run, now_ms())?;
            run.announcement()
        };
        self.after_change(ended, announcement)
    }

    /// Cancels series `series`: aborts it, which drops its socket, and marks its pending row.
    pub(super) fn cancel(&self, series: usize) -> Result<(), JsValue> {
        self.series.borrow_mut().retain(|(number, handle)| {
            if *number == series {
                handle.abort();
            }
            *number != series
        });
        let now = now_ms();
        let mut announcements = Vec::new();
        for run in self.runs.borrow_mut().iter_mut() {
            if run.series != series || !run.phase.is_pending() {
                continue;
            }
            let waited_ms = match run.phase {
                Phase::Closing { since_ms } => now - since_ms,
                _ => now - run.added_ms,
            };
            run.phase = Phase::Cancelled { waited_ms };
            render_row(run, now)?;
            announcements.extend(run.announcement());
        }
        let announcement = (!announcements.is_empty()).then(|| announcements.join(" "));
        self.after_change(true, announcement)
    }

    /// Aborts every series and empties the table, the chart, the summary and the export.
    pub(super) fn clear(&self) -> Result<(), JsValue> {
        for (_, handle) in std::mem::take(&mut *self.series.borrow_mut()) {
            handle.abort();
        }
        self.runs.borrow_mut().clear();
        self.rows.set_text_content(None);
        if let Some(hint) = &self.empty_hint {
            hint.remove_attribute("hidden")?;
        }
        self.export_output.set_value("");
        self.export_output.set_attribute("hidden", "")?;
        self.export_download.set_attribute("hidden", "")?;
        self.export_download.remove_attribute("href")?;
        if let Some(url) = self.download_url.borrow_mut().take() {
            web_sys::Url::revoke_object_url(&url)?;
        }
        self.after_change(true, Some("Results cleared.".to_owned()))
    }

    /// After runs changed: stops the timer when nothing is pending, redraws the chart, and,
    /// when a run ended, the summary, and reads out `announcement`.
    fn after_change(&self, ended: bool, announcement: Option<String>) -> Result<(), JsValue> {
        if self.pending() == 0 {
            // Dropping the `Interval` clears it and frees its closure.
            self.ticker.borrow_mut().take();
        }
        if ended {
            self.redraw_summary()?;
        }
        if let Some(text) = announcement {
            self.announce.set_text_content(Some(&text));
        }
        self.redraw_chart()
    }

    /// Starts the live timer unless it runs already.
    fn ensure_ticker(self: &Rc<Self>) {
        let mut ticker = self.ticker.borrow_mut();
        if ticker.is_none() {
            let weak = Rc::downgrade(self);
            *ticker = Some(Interval::new(TICK_MS, move || {
                if let Some(page) = weak.upgrade() {
                    page.report(page.tick());
                }
            }));
        }
    }

    /// Redraws the live timers of the pending rows, and the chart.
    fn tick(&self) -> Result<(), JsValue> {
        let now = now_ms();
        for run in self.runs.borrow().iter() {
            if let Phase::Closing { .. } = run.phase {
                render_row(run, now)?;
            }
        }
        self.redraw_chart()
    }

    pub(super) fn redraw_chart(&self) -> Result<(), JsValue> {
        let now = now_ms();
        let runs = self.runs.borrow();
        let skip = runs.len().saturating_sub(chart::MAX_BARS);
        let bars: Vec<Bar> = runs.iter().skip(skip).map(|run| bar_of(run, now)).collect();
        self.chart.borrow_mut().update(&bars)
    }

    /// Every run as exported, oldest first.
    pub(super) fn exported_runs(&self) -> Vec<ExportedRun> {
        self.runs.borrow().iter().map(Run::exported).collect()
    }
}
