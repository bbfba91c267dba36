//! The demo page, driven from Rust.
//!
//! `static/index.html` runs `window.demo = new Demo()`. The JavaScript object keeps the
//! [`Demo`] alive, and [`Demo`] owns every listener, so no closure is leaked.
//!
//! A click starts a *series*: `#runs` probes of one URL, one after the other, never two at
//! once (so they do not disturb each other's timing). Each probe adds a row to `#results` with
//! state `pending` and a live timer; it turns `done` (with `data-elapsed-ms`, `data-code`,
//! `data-was-clean`), `error` or `cancelled`. A series is a [`futures::future::Abortable`]:
//! the row's Cancel button and `#clear` abort it, which drops its socket.
//!
//! Around the table: `#summary` (median and p95 per URL, redrawn when a probe ends), the
//! export (`#export-json`, `#export-markdown`), a `#share-link` that reopens the page with the
//! same probe (`?url=…&runs=…`, filled in on load and run only on a click), `#browser` (the browser and its
//! closing-handshake timeout, also marked on the chart), and `#announce`, a polite live region
//! that reads out each finished probe.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use futures::future::{AbortHandle, Abortable};
use gloo_events::{EventListener, EventListenerOptions};
use gloo_timers::callback::Interval;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{
    Blob, BlobPropertyBag, Document, Element, HtmlInputElement, HtmlTextAreaElement, KeyboardEvent,
    Location,
};

use crate::chart::{self, Bar, BarKind, Chart};
use crate::explain::{self, format_ms};
use crate::probe::{CloseReport, Handshake, Probe, ProbeError, NORMAL_CLOSURE};
use crate::results::{self, runs_of, BrowserInfo, Engine, Export, ExportedRun, MAX_RUNS};
use crate::socket::now_ms;
use crate::subscription::{Backoff, Status, Subscription};

/// The code the demo closes with. The draining endpoints echo it back.
const SENT_CODE: u16 = NORMAL_CLOSURE;
/// The reason the demo closes with. The draining endpoints echo it back.
const SENT_REASON: &str = "bye from the demo";
/// Bound on connecting.
const SETUP_TIMEOUT_MS: u32 = 10_000;
/// How often the live timers and the pending bars are redrawn.
const TICK_MS: u32 = 100;
/// The live panel's subscription: `/ws/drain` with a tick every 250 ms.
const LIVE_PATH: &str = "/ws/drain?push_ms=250";

/// The demo page: owns its event listeners and the state of every probe run from it.
#[wasm_bindgen]
pub struct Demo {
    /// Shared with the running probes and the timer.
    page: Rc<Page>,
    /// Removed from their elements when the `Demo` is dropped (or freed from JavaScript).
    _listeners: Vec<EventListener>,
}

#[wasm_bindgen]
impl Demo {
    /// Finds the page's elements (see `static/index.html`; the trap buttons
    /// `#run-break-on-close` and `#run-lingering-tcp` and the live panel are optional), fills
    /// in the default URLs from `location`, listens for clicks, and fills in (without starting) the probe that
    /// `?url=` (and `&runs=`) asks for.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Result<Demo, JsValue> {
        let window = web_sys::window().ok_or("no window")?;
        let document = window.document().ok_or("no document")?;
        let location = window.location();
        let scheme = if location.protocol()? == "https:" {
            "wss"
        } else {
            "ws"
        };
        let host = match location.host()? {
            host if host.is_empty() => "127.0.0.1:3030".to_owned(),
            host => host,
        };
        let base = format!("{scheme}://{host}");
        let shared = SharedProbe::from_location(&location)?;

        let url_input: HtmlInputElement = by_id(&document, "url")?.dyn_into()?;
        let runs_input: HtmlInputElement = by_id(&document, "runs")?.dyn_into()?;
        runs_input.set_max(&MAX_RUNS.to_string());
        match &shared {
            Some(shared) => {
                url_input.set_value(&shared.url);
                runs_input.set_value(&shared.runs.to_string());
            }
            None if url_input.value().is_empty() => {
                url_input.set_value(&format!("{base}/ws/echo"));
            }
            None => {}
        }
        let browser = BrowserInfo::from_user_agent(&window.navigator().user_agent()?);
        show_browser(&by_id(&document, "browser")?, &browser)?;
        let page = Rc::new(Page {
            chart: RefCell::new(Chart::new(
                document.clone(),
                by_id(&document, "chart")?,
                browser.engine.close_timeout_ms(),
            )),
            empty_hint: document.get_element_by_id("results-empty"),
            rows: tbody_of(&document, "results")?,
            summary: tbody_of(&document, "summary")?,
            summary_table: by_id(&document, "summary")?,
            announce: by_id(&document, "announce")?,
            export_output: by_id(&document, "export-output")?.dyn_into()?,
            export_download: by_id(&document, "export-download")?,
            share_link: by_id(&document, "share-link")?,
            download_url: RefCell::new(None),
            document: document.clone(),
            location,
            host,
            browser,
            url_input,
            runs_input,
            runs: RefCell::new(Vec::new()),
            next_run_id: Cell::new(0),
            series: RefCell::new(Vec::new()),
            next_series: Cell::new(1),
            ticker: RefCell::new(None),
            subscription: RefCell::new(None),
        });

        let mut listeners = Vec::new();
        for (id, path) in [
            ("run-drain", "/ws/drain"),
            ("run-no-drain", "/ws/no-drain"),
            ("run-break-on-close", "/ws/break-on-close"),
            ("run-lingering-tcp", "/ws/lingering-tcp"),
        ] {
            let url = format!("{base}{path}");
            // The trap buttons are optional, so an older page still loads.
            let Some(button) = document.get_element_by_id(id) else {
                continue;
            };
            button.set_attribute("data-url", &url)?;
            if let Some(label) = document.get_element_by_id(&format!("{id}-url")) {
                label.set_text_content(Some(&url));
            }
            let weak = Rc::downgrade(&page);
            listeners.push(EventListener::new(&button, "click", move |_| {
                start(&weak, url.clone());
            }));
        }
        let weak = Rc::downgrade(&page);
        listeners.push(EventListener::new(
            &by_id(&document, "run-custom")?.into(),
            "click",
            move |_| {
                if let Some(page) = weak.upgrade() {
                    start(&weak, page.url_input.value().trim().to_owned());
                }
            },
        ));
        // Enter in the URL field probes it, once per press: a held key repeats `keydown`.
        let weak = Rc::downgrade(&page);
        listeners.push(EventListener::new(
            &page.url_input,
            "keydown",
            move |event| {
                let enter = event
                    .dyn_ref::<KeyboardEvent>()
                    .is_some_and(|key| key.key() == "Enter" && !key.repeat());
                if let (true, Some(page)) = (enter, weak.upgrade()) {
                    start(&weak, page.url_input.value().trim().to_owned());
                }
            },
        ));
        // A held Enter on a focused button would click it on every repeat: swallow repeats.
        listeners.push(EventListener::new_with_options(
            &document,
            "keydown",
            EventListenerOptions::enable_prevent_default(),
            |event| {
                if event
                    .dyn_ref::<KeyboardEvent>()
                    .is_some_and(|key| key.key() == "Enter" && key.repeat())
                {
                    event.prevent_default();
                }
            },
        ));
        // One listener for every row's Cancel button, so no listener is added per row, or
        // dropped while it runs.
        let weak = Rc::downgrade(&page);
        listeners.push(EventListener::new(&page.rows, "click", move |event| {
            let series = event
                .target()
                .and_then(|target| target.dyn_into::<Element>().ok())
                .and_then(|target| target.closest("button.cancel").ok().flatten())
                .and_then(|button| button.get_attribute("data-series"))
                .and_then(|series| series.parse().ok());
            if let (Some(series), Some(page)) = (series, weak.upgrade()) {
                page.report(page.cancel(series));
            }
        }));
        let weak = Rc::downgrade(&page);
        listeners.push(EventListener::new(
            &by_id(&document, "clear")?.into(),
            "click",
            move |_| {
                if let Some(page) = weak.upgrade() {
                    page.report(page.clear());
                }
            },
        ));
        for (id, format) in [
            ("export-json", ExportFormat::Json),
            ("export-markdown", ExportFormat::Markdown),
        ] {
            let weak = Rc::downgrade(&page);
            listeners.push(EventListener::new(
                &by_id(&document, id)?.into(),
                "click",
                move |_| {
                    if let Some(page) = weak.upgrade() {
                        page.report(page.export(format));
                    }
                },
            ));
        }
        for input in [&page.url_input, &page.runs_input] {
            let weak = Rc::downgrade(&page);
            listeners.push(EventListener::new(input, "input", move |_| {
                if let Some(page) = weak.upgrade() {
                    page.report(page.update_share_link());
                }
            }));
        }

        if let Some(button) = document.get_element_by_id("subscribe") {
            let live = LivePanel::find(&document)?;
            let url = format!("{base}{LIVE_PATH}");
            let weak = Rc::downgrade(&page);
            let toggle = button.clone();
            listeners.push(EventListener::new(&button, "click", move |_| {
                if let Some(page) = weak.upgrade() {
                    page.toggle_subscription(&url, &live, &toggle);
                }
            }));
        }

        page.redraw_chart()?;
        page.update_share_link()?;
        if let Some(root) = document.document_element() {
            root.set_attribute("data-ready", "true")?;
            // What a test needs to compare the page with a bare WebSocket closed the same way.
            root.set_attribute("data-settle-ms", &RENDER_SETTLE_MS.to_string())?;
        }
        if let Some(shared) = &shared {
            // A link may come from anyone: say what it asks for, and wait for the click.
            let notice = by_id(&document, "shared-notice")?;
            notice.set_text_content(Some(&shared.notice()));
            notice.remove_attribute("hidden")?;
        }
        Ok(Demo {
            page,
            _listeners: listeners,
        })
    }

    /// Probes `url` exactly as the buttons do (`#runs` times), adding rows to `#results`.
    pub fn probe(&self, url: String) {
        start(&Rc::downgrade(&self.page), url);
    }

    /// How many probes are still waiting for their `close` event.
    #[wasm_bindgen(getter)]
    pub fn pending(&self) -> u32 {
        self.page.pending() as u32
    }
}

/// A probe shared as a link: `?url=ws://…&runs=5`. It fills in the URL and the runs and says
/// so in `#shared-notice`; nothing is sent until `#run-custom` is clicked.
struct SharedProbe {
    url: String,
    /// Clamped to 1..=[`MAX_RUNS`]; 1 when absent or not a number.
    runs: u32,
}

impl SharedProbe {
    /// What `#shared-notice` says: the host it will connect to, and how often.
    fn notice(&self) -> String {
        let probes = if self.runs == 1 {
            "1 probe".to_owned()
        } else {
            format!("{} probes", self.runs)
        };
        format!(
            "This link filled in {probes} of {}. Nothing has been sent: check the URL, then \
             click Probe URL to run it.",
            self.url
        )
    }

    /// The probe the page's own URL asks for, if any.
    fn from_location(location: &Location) -> Result<Option<SharedProbe>, JsValue> {
        let params = web_sys::UrlSearchParams::new_with_str(&location.search()?)?;
        let Some(url) = params.get("url").map(|url| url.trim().to_owned()) else {
            return Ok(None);
        };
        if url.is_empty() {
            return Ok(None);
        }
        let runs = params
            .get("runs")
            .and_then(|runs| runs.trim().parse::<f64>().ok())
            .map_or(1, runs_of);
        Ok(Some(SharedProbe { url, runs }))
    }
}

/// Which export button was pressed.
#[derive(Clone, Copy, Debug)]
enum ExportFormat {
    Json,
    Markdown,
}

/// Where a probe is.
#[derive(Clone, Debug)]
enum Phase {
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
    fn is_pending(&self) -> bool {
        matches!(self, Phase::Connecting | Phase::Closing { .. })
    }

    /// The row's `data-state`.
    fn state(&self) -> &'static str {
        match self {
            Phase::Connecting | Phase::Closing { .. } => "pending",
            Phase::Done(_) => "done",
            Phase::Failed(_) => "error",
            Phase::Cancelled { .. } => "cancelled",
        }
    }
}

/// One probe and its row in `#results`.
struct Run {
    /// Unique for the page's lifetime, unlike `number`, which restarts after `#clear`.
    id: usize,
    /// `#` in the table.
    number: usize,
    /// The series (one click) it belongs to; its Cancel button cancels the whole series.
    series: usize,
    /// The URL probed.
    url: String,
    /// What the row and the chart show as the endpoint (path plus query, or the full URL).
    label: String,
    /// `performance.now()` when the row was added.
    added_ms: f64,
    phase: Phase,
    /// Known once the socket opened.
    handshake: Option<Handshake>,
    row: Element,
    elapsed: Element,
    code: Element,
    reason: Element,
    clean: Element,
    open: Element,
    negotiated: Element,
    note: Element,
    actions: Element,
}

impl Run {
    /// The run as the export has it.
    fn exported(&self) -> ExportedRun {
        let report = match &self.phase {
            Phase::Done(report) => Some(report),
            _ => None,
        };
        ExportedRun {
            number: self.number,
            url: self.url.clone(),
            state: self.phase.state(),
            elapsed_ms: report.map(|report| report.elapsed_ms),
            code: report.map(|report| report.code),
            reason: report.map(|report| report.reason.clone()),
            was_clean: report.map(|report| report.was_clean),
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
    fn announcement(&self) -> Option<String> {
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

/// The page state shared by the listeners, the running probes and the timer.
struct Page {
    document: Document,
    location: Location,
    /// `host:port` of the page, to shorten labels of same-host URLs.
    host: String,
    /// The browser the page runs in.
    browser: BrowserInfo,
    url_input: HtmlInputElement,
    /// `#runs`: how many probes one click starts.
    runs_input: HtmlInputElement,
    /// `#results > tbody`.
    rows: Element,
    /// `#chart`.
    chart: RefCell<Chart>,
    /// `#results-empty`, hidden once there is a row.
    empty_hint: Option<Element>,
    /// `#summary`, hidden while no probe has finished, and its body.
    summary_table: Element,
    summary: Element,
    /// `#announce`: the live region.
    announce: Element,
    /// `#export-output`, `#export-download` and the object URL it points to.
    export_output: HtmlTextAreaElement,
    export_download: Element,
    download_url: RefCell<Option<String>>,
    /// `#share-link`.
    share_link: Element,
    runs: RefCell<Vec<Run>>,
    next_run_id: Cell<usize>,
    /// The running series and their numbers, to cancel them. A few at a time: a `Vec`.
    series: RefCell<Vec<(usize, AbortHandle)>>,
    next_series: Cell<usize>,
    /// Redraws the live timers while a probe is pending; `None` when nothing is pending.
    ticker: RefCell<Option<Interval>>,
    /// The live panel's subscription, while it runs.
    subscription: RefCell<Option<Subscription>>,
}

/// The live panel (`#live`): what the reconnecting subscription sees, as text and as
/// `data-*` attributes on `#live` for scripts and tests.
#[derive(Clone)]
struct LivePanel {
    root: Element,
    state: Element,
    instance: Element,
    seq: Element,
    reconnects: Element,
    closes: Element,
    out_of_order: Element,
}

impl LivePanel {
    fn find(document: &Document) -> Result<LivePanel, JsValue> {
        Ok(LivePanel {
            root: by_id(document, "live")?,
            state: by_id(document, "live-state")?,
            instance: by_id(document, "live-instance")?,
            seq: by_id(document, "live-seq")?,
            reconnects: by_id(document, "live-reconnects")?,
            closes: by_id(document, "live-closes")?,
            out_of_order: by_id(document, "live-out-of-order")?,
        })
    }

    fn show(&self, status: &Status) -> Result<(), JsValue> {
        let seq = status
            .last_seq
            .map_or("–".to_owned(), |seq| seq.to_string());
        let instance = status.instance.clone().unwrap_or_else(|| "–".to_owned());
        let closes = status
            .closes
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let fields = [
            (&self.state, "data-state", status.state.to_owned()),
            (&self.instance, "data-instance", instance),
            (&self.seq, "data-seq", seq),
            (
                &self.reconnects,
                "data-reconnects",
                status.reconnects.to_string(),
            ),
            (&self.closes, "data-closes", closes.clone()),
            (
                &self.out_of_order,
                "data-out-of-order",
                status.out_of_order.to_string(),
            ),
        ];
        for (element, attribute, value) in fields {
            let text = if value.is_empty() {
                "–"
            } else {
                value.as_str()
            };
            element.set_text_content(Some(text));
            self.root.set_attribute(attribute, &value)?;
        }
        self.root
            .set_attribute("data-instances", &status.instances.join(","))?;
        self.root
            .set_attribute("data-ticks", &status.ticks.to_string())
    }
}

/// Starts a series of `#runs` probes of `url` on the page behind `page`, if it still exists.
fn start(page: &Weak<Page>, url: String) {
    let Some(page) = page.upgrade() else {
        return;
    };
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
const RENDER_SETTLE_MS: u32 = 50;

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

impl Page {
    /// Logs an error of a listener to the console: there is no caller to return it to.
    fn report(&self, result: Result<(), JsValue>) {
        if let Err(error) = result {
            web_sys::console::error_2(&"wsclose demo:".into(), &error);
        }
    }

    /// Starts the live subscription, or stops it when it runs.
    fn toggle_subscription(&self, url: &str, live: &LivePanel, button: &Element) {
        let mut running = self.subscription.borrow_mut();
        if running.take().is_some() {
            // Dropping the subscription aborts its loop and closes its socket.
            let _ = live.root.set_attribute("data-state", "idle");
            live.state.set_text_content(Some("stopped by you"));
            button.set_text_content(Some("Subscribe"));
            return;
        }
        let panel = live.clone();
        *running = Some(Subscription::start(
            url.to_owned(),
            Backoff::default(),
            move |status| {
                if let Err(error) = panel.show(status) {
                    web_sys::console::error_2(&"wsclose live panel:".into(), &error);
                }
            },
        ));
        button.set_text_content(Some("Unsubscribe"));
    }

    fn pending(&self) -> usize {
        self.runs
            .borrow()
            .iter()
            .filter(|run| run.phase.is_pending())
            .count()
    }

    /// `#runs` as a number of probes, within 1..=[`MAX_RUNS`]; the field is corrected when
    /// it says something else.
    fn runs_requested(&self) -> u32 {
        let asked = self.runs_input.value_as_number();
        let runs = runs_of(asked);
        if f64::from(runs) != asked {
            self.runs_input.set_value(&runs.to_string());
        }
        runs
    }

    /// Adds a pending row for `url` to series `series` and returns the run's id.
    fn add_run(self: &Rc<Self>, url: &str, series: usize) -> Result<usize, JsValue> {
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
    fn opened(&self, id: usize, handshake: Handshake) -> Result<(), JsValue> {
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
            .set_attribute("data-open-ms", &format!("{:.3}", handshake.open_ms))?;
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
    fn set_phase(&self, id: usize, phase: Phase) -> Result<(), JsValue> {
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
    fn cancel(&self, series: usize) -> Result<(), JsValue> {
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
    fn clear(&self) -> Result<(), JsValue> {
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

    fn redraw_chart(&self) -> Result<(), JsValue> {
        let now = now_ms();
        let runs = self.runs.borrow();
        let skip = runs.len().saturating_sub(chart::MAX_BARS);
        let bars: Vec<Bar> = runs.iter().skip(skip).map(|run| bar_of(run, now)).collect();
        self.chart.borrow_mut().update(&bars)
    }

    /// Every run as exported, oldest first.
    fn exported_runs(&self) -> Vec<ExportedRun> {
        self.runs.borrow().iter().map(Run::exported).collect()
    }

    /// Rewrites `#summary`: one row per URL with a finished probe.
    fn redraw_summary(&self) -> Result<(), JsValue> {
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
            row.set_attribute("data-median-ms", &format!("{:.3}", stats.median_ms))?;
            row.set_attribute("data-p95-ms", &format!("{:.3}", stats.p95_ms))?;
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

    /// Fills `#export-output` with every result in `format`, and points `#export-download`
    /// at the same text as a file.
    fn export(&self, format: ExportFormat) -> Result<(), JsValue> {
        let export = Export::new(
            self.location.href()?,
            js_sys::Date::new_0()
                .to_iso_string()
                .as_string()
                .unwrap_or_default(),
            self.browser.clone(),
            self.exported_runs(),
        );
        let (text, mime, file) = match format {
            ExportFormat::Json => {
                // Through the browser's own JSON, so serde_json is not compiled into the wasm.
                let value = export.serialize(&serde_wasm_bindgen::Serializer::json_compatible())?;
                let text = js_sys::JSON::stringify_with_replacer_and_space(
                    &value,
                    &JsValue::NULL,
                    &JsValue::from(2),
                )?;
                (
                    String::from(text),
                    "application/json",
                    "wsclose-results.json",
                )
            }
            ExportFormat::Markdown => (export.markdown(), "text/markdown", "wsclose-results.md"),
        };
        self.export_output.set_value(&text);
        self.export_output.remove_attribute("hidden")?;
        self.export_output.set_attribute("data-format", mime)?;

        let options = BlobPropertyBag::new();
        options.set_type(mime);
        let parts = js_sys::Array::of1(&JsValue::from_str(&text));
        let blob = Blob::new_with_str_sequence_and_options(&parts, &options)?;
        let url = web_sys::Url::create_object_url_with_blob(&blob)?;
        if let Some(old) = self.download_url.borrow_mut().replace(url.clone()) {
            web_sys::Url::revoke_object_url(&old)?;
        }
        let link = &self.export_download;
        link.set_attribute("href", &url)?;
        link.set_attribute("download", file)?;
        link.set_text_content(Some(&format!("Download {file}")));
        link.remove_attribute("hidden")
    }

    /// Points `#share-link` at this page with `?url=` (and `&runs=`) of the URL field.
    fn update_share_link(&self) -> Result<(), JsValue> {
        let link = web_sys::Url::new(&self.location.href()?)?;
        link.set_hash("");
        link.set_search("");
        let params = link.search_params();
        params.set("url", self.url_input.value().trim());
        let runs = runs_of(self.runs_input.value_as_number());
        if runs > 1 {
            params.set("runs", &runs.to_string());
        }
        self.share_link.set_attribute("href", &link.href())
    }
}

/// Writes the state of `run` into its row. Final data attributes appear only once `close`
/// has fired, so a test can tell a pending probe from a finished one.
fn render_row(run: &Run, now: f64) -> Result<(), JsValue> {
    let row = &run.row;
    if !run.phase.is_pending() {
        row.set_attribute("data-state", run.phase.state())?;
        // The Cancel button goes with the wait it cancels.
        run.actions.set_text_content(None);
    }
    match &run.phase {
        Phase::Connecting => {}
        Phase::Closing { since_ms } => {
            run.elapsed.set_text_content(Some(&format!(
                "waiting… {:.1} s",
                (now - since_ms) / 1_000.0
            )));
            run.note.set_text_content(Some(explain::WAITING_NOTE));
        }
        Phase::Done(report) => {
            let verdict = if report.was_clean { "clean" } else { "unclean" };
            row.set_attribute("data-elapsed-ms", &format!("{:.3}", report.elapsed_ms))?;
            row.set_attribute("data-code", &report.code.to_string())?;
            row.set_attribute("data-reason", &report.reason)?;
            row.set_attribute("data-was-clean", &report.was_clean.to_string())?;
            row.set_class_name(&format!("done {verdict}"));
            run.elapsed
                .set_text_content(Some(&format_ms(report.elapsed_ms)));
            run.code.set_text_content(Some(&report.code.to_string()));
            run.reason
                .set_text_content(Some(if report.reason.is_empty() {
                    "(none)"
                } else {
                    &report.reason
                }));
            run.clean
                .set_text_content(Some(&report.was_clean.to_string()));
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
            row.set_attribute("data-waited-ms", &format!("{waited_ms:.3}"))?;
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
fn bar_of(run: &Run, now: f64) -> Bar {
    let label = format!("#{} {}", run.number, shorten(&run.label, 18));
    let (ms, value, kind) = match &run.phase {
        Phase::Connecting => (0.0, "connecting…".to_owned(), BarKind::Pending),
        Phase::Closing { since_ms } => (
            now - since_ms,
            format!("waiting… {:.1} s", (now - since_ms) / 1_000.0),
            BarKind::Pending,
        ),
        Phase::Done(report) => (
            report.elapsed_ms,
            chart::done_value(report.elapsed_ms, report.code, report.was_clean),
            if report.was_clean {
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

/// Shows the browser the page runs in, and the closing-handshake timeout it will apply.
fn show_browser(element: &Element, browser: &BrowserInfo) -> Result<(), JsValue> {
    element.set_attribute("data-name", &browser.name)?;
    element.set_attribute("data-version", &browser.version)?;
    let timeout = browser.engine.close_timeout_ms();
    element.set_attribute(
        "data-timeout-ms",
        &timeout.map_or(String::new(), |ms| ms.to_string()),
    )?;
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

fn by_id(document: &Document, id: &str) -> Result<Element, JsValue> {
    document
        .get_element_by_id(id)
        .ok_or_else(|| JsValue::from_str(&format!("the demo page has no #{id} element")))
}

/// The `<tbody>` of table `#id`, added when the table has none.
fn tbody_of(document: &Document, id: &str) -> Result<Element, JsValue> {
    let table = by_id(document, id)?;
    match table.query_selector("tbody")? {
        Some(tbody) => Ok(tbody),
        None => {
            let tbody = document.create_element("tbody")?;
            table.append_child(&tbody)?;
            Ok(tbody)
        }
    }
}
