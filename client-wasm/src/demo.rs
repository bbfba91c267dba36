//! The demo page, driven from Rust.
//!
//! `static/index.html` runs `window.demo = new Demo()`. The JavaScript object keeps the
//! [`Demo`] alive, and [`Demo`] owns the button listeners, so no closure is leaked. Each click
//! spawns one probe: a row appears in `#results` with state `pending` and a live timer, and
//! turns `done` (with `data-elapsed-ms`, `data-code`, `data-was-clean`) when the browser fires
//! `close`. The timeline in `#chart` is redrawn with it.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_events::EventListener;
use gloo_timers::callback::Interval;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Document, Element, HtmlInputElement, KeyboardEvent};

use crate::chart::{self, Bar, BarKind};
use crate::explain::{self, format_ms};
use crate::probe::{CloseReport, Probe, ProbeError, NORMAL_CLOSURE};
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
    /// Finds the page's elements (`#url`, `#run-drain`, `#run-no-drain`, and the trap buttons
    /// `#run-break-on-close` and `#run-lingering-tcp` when present, `#run-custom`,
    /// `#results`, `#chart`), fills in the default URLs from `location`, and listens for clicks.
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

        let url_input: HtmlInputElement = by_id(&document, "url")?.dyn_into()?;
        if url_input.value().is_empty() {
            url_input.set_value(&format!("{base}/ws/echo"));
        }
        let results = by_id(&document, "results")?;
        let rows = match results.query_selector("tbody")? {
            Some(tbody) => tbody,
            None => {
                let tbody = document.create_element("tbody")?;
                results.append_child(&tbody)?;
                tbody
            }
        };
        let page = Rc::new(Page {
            chart: by_id(&document, "chart")?,
            empty_hint: document.get_element_by_id("results-empty"),
            document: document.clone(),
            host,
            url_input,
            rows,
            runs: RefCell::new(Vec::new()),
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
        let weak = Rc::downgrade(&page);
        listeners.push(EventListener::new(
            &page.url_input,
            "keydown",
            move |event| {
                let enter = event
                    .dyn_ref::<KeyboardEvent>()
                    .is_some_and(|key| key.key() == "Enter");
                if let (true, Some(page)) = (enter, weak.upgrade()) {
                    start(&weak, page.url_input.value().trim().to_owned());
                }
            },
        ));

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
        if let Some(root) = document.document_element() {
            root.set_attribute("data-ready", "true")?;
            // What a test needs to compare the page with a bare WebSocket closed the same way.
            root.set_attribute("data-settle-ms", &RENDER_SETTLE_MS.to_string())?;
        }
        Ok(Demo {
            page,
            _listeners: listeners,
        })
    }

    /// Probes `url` exactly as the buttons do, adding a row to `#results`.
    pub fn probe(&self, url: String) {
        start(&Rc::downgrade(&self.page), url);
    }

    /// How many probes are still waiting for their `close` event.
    #[wasm_bindgen(getter)]
    pub fn pending(&self) -> u32 {
        self.page.pending() as u32
    }
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
}

/// One probe and its row in `#results`.
struct Run {
    number: usize,
    /// What the row and the chart show as the endpoint (path plus query, or the full URL).
    label: String,
    phase: Phase,
    row: Element,
    elapsed: Element,
    code: Element,
    reason: Element,
    clean: Element,
    note: Element,
}

/// The page state shared by the listeners, the running probes and the timer.
struct Page {
    document: Document,
    /// `host:port` of the page, to shorten labels of same-host URLs.
    host: String,
    url_input: HtmlInputElement,
    /// `#results > tbody`.
    rows: Element,
    /// `#chart`.
    chart: Element,
    /// `#results-empty`, hidden once there is a row.
    empty_hint: Option<Element>,
    runs: RefCell<Vec<Run>>,
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

/// Spawns a probe of `url` on the page behind `page`, if the page still exists.
fn start(page: &Weak<Page>, url: String) {
    if let Some(page) = page.upgrade() {
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(error) = run(&page, &url).await {
                web_sys::console::error_2(&"wsclose demo:".into(), &error);
            }
        });
    }
}

/// How long the page waits after drawing the pending row before it calls `close()`, so the
/// browser's style, layout and paint of that row happen outside the timed interval.
const RENDER_SETTLE_MS: u32 = 50;

/// One probe, from the new row to the final data.
async fn run(page: &Rc<Page>, url: &str) -> Result<(), JsValue> {
    let index = page.add_run(url)?;
    let probe = match Probe::connect(url, SETUP_TIMEOUT_MS).await {
        Ok(probe) => probe,
        Err(error) => return page.set_phase(index, Phase::Failed(error)),
    };
    // The row and the chart are drawn *before* `close()`, and the browser gets
    // RENDER_SETTLE_MS to lay them out and paint: the `close` handler cannot run while the page
    // is busy, so drawing around `close()` put the page's own work inside the timed interval.
    // Measured in headless Chromium, 15 probes each against a bare WebSocket in the same page
    // (e2e/tests/demo_page.rs): before, median 3.8–4.0 ms against 0.9–1.0 closed at open;
    // after, 1.1–1.6 ms against 1.2–1.6 for a bare socket also closed 50 ms after open. Drawing
    // nothing until the `close` event instead was not enough (1.6–3.4 ms): the new row's own
    // paint still ran while the socket opened and closed.
    page.set_phase(index, Phase::Closing { since_ms: now_ms() })?;
    gloo_timers::future::TimeoutFuture::new(RENDER_SETTLE_MS).await;
    let closing = match probe.close(SENT_CODE, SENT_REASON) {
        Ok(closing) => closing,
        Err(error) => return page.set_phase(index, Phase::Failed(error)),
    };
    let phase = match closing.wait(None).await {
        Ok(report) => Phase::Done(report),
        Err(error) => Phase::Failed(error),
    };
    page.set_phase(index, phase)
}

impl Page {
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
            .filter(|run| matches!(run.phase, Phase::Connecting | Phase::Closing { .. }))
            .count()
    }

    /// Adds a pending row for `url` and returns its index.
    fn add_run(self: &Rc<Self>, url: &str) -> Result<usize, JsValue> {
        let (endpoint, label) = match web_sys::Url::new(url) {
            Ok(parsed) if parsed.host() == self.host => (
                parsed.pathname(),
                format!("{}{}", parsed.pathname(), parsed.search()),
            ),
            Ok(parsed) => (parsed.pathname(), url.to_owned()),
            Err(_) => (url.to_owned(), url.to_owned()),
        };
        let number = self.runs.borrow().len() + 1;
        let document = &self.document;
        let row = document.create_element("tr")?;
        row.set_attribute("data-run", &number.to_string())?;
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
            number,
            label,
            phase: Phase::Connecting,
            elapsed: cell("elapsed", "connecting…")?,
            code: cell("code", "—")?,
            reason: cell("reason", "—")?,
            clean: cell("clean", "—")?,
            note: cell("note", "Opening the WebSocket…")?,
            row,
        };
        self.rows.append_child(&run.row)?;
        if let Some(hint) = &self.empty_hint {
            hint.set_attribute("hidden", "")?;
        }
        self.runs.borrow_mut().push(run);
        self.ensure_ticker();
        self.redraw_chart()?;
        Ok(number - 1)
    }

    /// Moves run `index` to `phase` and updates its row and the chart.
    fn set_phase(&self, index: usize, phase: Phase) -> Result<(), JsValue> {
        {
            let mut runs = self.runs.borrow_mut();
            let run = &mut runs[index];
            run.phase = phase;
            render_row(run, now_ms())?;
        }
        if self.pending() == 0 {
            // Dropping the `Interval` clears it and frees its closure.
            self.ticker.borrow_mut().take();
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
                    if let Err(error) = page.tick() {
                        web_sys::console::error_2(&"wsclose demo:".into(), &error);
                    }
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
        chart::render(&self.document, &self.chart, &bars)
    }
}

/// Writes the state of `run` into its row. Final data attributes appear only once `close`
/// has fired, so a test can tell a pending probe from a finished one.
fn render_row(run: &Run, now: f64) -> Result<(), JsValue> {
    let row = &run.row;
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
            row.set_attribute("data-state", "done")?;
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
            row.set_attribute("data-state", "error")?;
            row.set_attribute("data-error", error.kind())?;
            row.set_class_name("error");
            run.elapsed.set_text_content(Some("failed"));
            run.note
                .set_text_content(Some(&explain::explain_error(error)));
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
    };
    Bar {
        label,
        ms,
        value,
        kind,
    }
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
