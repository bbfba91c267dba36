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
//! same probe (`?url=…&runs=…`, filled in on load and run only on a click), `#browser` (the
//! browser and its closing-handshake timeout, also marked on the chart), and `#announce`, a
//! polite live region that reads out each finished probe.
//!
//! # Modules
//! - this one: [`Demo`], which finds the elements and wires the listeners (every one that
//!   needs the page through [`Page::listen`]);
//! - `page`: [`Page`], the state the listeners, the probes and the timer share, and the
//!   changes to it (add a run, move it to a phase, cancel, clear);
//! - `run`: a probe's [`Phase`](run::Phase) and [`Run`](run::Run), and the series of probes
//!   one click starts;
//! - `render`: the rows, the chart's bars, `#summary` and `#browser` drawn from that state;
//! - `export`: the JSON and Markdown export, and the shared link (`?url=…&runs=…`);
//! - `live`: the live panel and its reconnecting subscription.

mod export;
mod live;
mod page;
mod render;
mod run;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Document, Element, HtmlInputElement, KeyboardEvent};

use crate::chart::Chart;
use crate::probe::NORMAL_CLOSURE;
use crate::results::{BrowserInfo, MAX_RUNS};

use export::{ExportFormat, SharedProbe};
use live::LivePanel;
use page::Page;
use render::show_browser;
use run::{start, RENDER_SETTLE_MS};

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

        let listeners = listen_to_the_page(&page, &document, &base)?;

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
        start(&self.page, url);
    }

    /// How many probes are still waiting for their `close` event.
    #[wasm_bindgen(getter)]
    pub fn pending(&self) -> u32 {
        self.page.pending() as u32
    }
}

/// Every listener of the page, each through [`Page::listen`] but the one that swallows held
/// Enter keys: the probe buttons (and their `data-url`), Enter in `#url`, the rows' Cancel
/// buttons, `#clear`, the export buttons, the inputs behind `#share-link`, and `#subscribe`.
fn listen_to_the_page(
    page: &Rc<Page>,
    document: &Document,
    base: &str,
) -> Result<Vec<EventListener>, JsValue> {
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
        listeners.push(page.listen(&button, "click", move |page, _| {
            start(page, url.clone());
            Ok(())
        }));
    }
    listeners.push(page.listen(
        by_id(document, "run-custom")?.as_ref(),
        "click",
        |page, _| {
            start(page, page.url_input.value().trim().to_owned());
            Ok(())
        },
    ));
    // Enter in the URL field probes it, once per press: a held key repeats `keydown`.
    listeners.push(page.listen(&page.url_input, "keydown", |page, event| {
        if event
            .dyn_ref::<KeyboardEvent>()
            .is_some_and(|key| key.key() == "Enter" && !key.repeat())
        {
            start(page, page.url_input.value().trim().to_owned());
        }
        Ok(())
    }));
    // A held Enter on a focused button would click it on every repeat: swallow repeats.
    listeners.push(EventListener::new_with_options(
        document,
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
    listeners.push(page.listen(&page.rows, "click", |page, event| {
        let series = event
            .target()
            .and_then(|target| target.dyn_into::<Element>().ok())
            .and_then(|target| target.closest("button.cancel").ok().flatten())
            .and_then(|button| button.get_attribute("data-series"))
            .and_then(|series| series.parse().ok());
        match series {
            Some(series) => page.cancel(series),
            None => Ok(()),
        }
    }));
    listeners.push(
        page.listen(by_id(document, "clear")?.as_ref(), "click", |page, _| {
            page.clear()
        }),
    );
    for (id, format) in [
        ("export-json", ExportFormat::Json),
        ("export-markdown", ExportFormat::Markdown),
    ] {
        listeners.push(
            page.listen(by_id(document, id)?.as_ref(), "click", move |page, _| {
                page.export(format)
            }),
        );
    }
    for input in [&page.url_input, &page.runs_input] {
        listeners.push(page.listen(input, "input", |page, _| page.update_share_link()));
    }
    if let Some(button) = document.get_element_by_id("subscribe") {
        let live = LivePanel::find(document)?;
        let url = format!("{base}{LIVE_PATH}");
        let toggle = button.clone();
        listeners.push(page.listen(&button, "click", move |page, _| {
            page.toggle_subscription(&url, &live, &toggle);
            Ok(())
        }));
    }
    Ok(listeners)
}

/// The element `#id`, or an error naming it.
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
