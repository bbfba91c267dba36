//! The demo page as a page object: [`DemoPage`] drives the page `make build` puts in
//! `target/www` through WebDriver (fantoccini), in the words of its element contract
//! (`client-wasm/README.md`): open it, click a button, wait for a finished row, read its cells
//! and attributes, set `#runs`, read the export and what `#announce` said.
//!
//! [`served_page`] starts the three things a page test needs: a server that serves the page,
//! a WebDriver server for the browser, and a session with the page open. Every wait is bounded
//! by [`WAIT`] unless the caller gives its own bound, and a wait that runs out panics with what
//! it was waiting for.

use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, Locator};
use serde_json::Value;
use wsclose_check::browser::{Browser, Driver};

use crate::server::workspace_root;
use crate::ServerProcess;

/// Bound on every wait for the page to reach a state.
pub const WAIT: Duration = Duration::from_secs(15);

/// How often a wait that polls (rather than asking WebDriver to wait) looks again.
const POLL: Duration = Duration::from_millis(100);

/// The rows of `#results`.
const ROWS: &str = "#results tbody tr";

/// The built page (`target/www`), served by a fresh server and open in a fresh `browser`
/// session. Keep the driver alive as long as the page; end the session with
/// [`DemoPage::close`].
pub async fn served_page(browser: Browser) -> (ServerProcess, Driver, DemoPage) {
    let www = built_page();
    let server = ServerProcess::start(&["--static-dir", www.to_str().expect("utf-8 path")]).await;
    let driver = Driver::start(browser)
        .await
        .expect("start the WebDriver server");
    let page = DemoPage::connect(&driver).await;
    page.open(&server.http_url("/")).await;
    (server, driver, page)
}

/// `target/www`, after checking that `make build` has put the page and the wasm there: fails
/// with the fix when it has not.
pub fn built_page() -> std::path::PathBuf {
    let www = workspace_root().join("target/www");
    require_built_page(&www);
    www
}

/// Fails with the fix when the page or the wasm in `www` has not been built.
pub fn require_built_page(www: &Path) {
    for file in [
        "index.html",
        "pkg/wsclose_client.js",
        "pkg/wsclose_client_bg.wasm",
    ] {
        assert!(
            www.join(file).is_file(),
            "{} is missing: run `make build` first (it copies client-wasm/static and runs \
             wasm-pack into target/www)",
            www.join(file).display()
        );
    }
}

/// The demo page in one WebDriver session.
pub struct DemoPage {
    client: Client,
}

impl DemoPage {
    /// A new session of `driver`'s browser, with no page open yet (see [`DemoPage::open`]).
    pub async fn connect(driver: &Driver) -> DemoPage {
        let client = driver.connect().await.expect("a browser session");
        DemoPage { client }
    }

    /// The WebDriver session, for what the page object does not say (scripts, screenshots).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens the demo page at `url` and waits for the wasm to load (`<html data-ready>`).
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("open the demo page");
        self.wait_for(
            "html[data-ready='true']",
            WAIT,
            "the wasm demo marks <html data-ready>",
        )
        .await;
    }

    /// Ends the WebDriver session.
    pub async fn close(self) {
        self.client
            .close()
            .await
            .expect("end the WebDriver session");
    }

    /// The element with id `id`.
    pub async fn by_id(&self, id: &str) -> Element {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|error| panic!("#{id}: {error}"))
    }

    /// The first element that matches `css`.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{css}: {error}"))
    }

    /// Waits up to `within` for an element that matches `css`, and returns it; `what` names it
    /// when the wait runs out.
    pub async fn wait_for(&self, css: &str, within: Duration, what: &str) -> Element {
        self.client
            .wait()
            .at_most(within)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{what}: not within {within:?} ({css}): {error}"))
    }

    /// Clicks the element with id `id`.
    pub async fn click(&self, id: &str) {
        self.by_id(id)
            .await
            .click()
            .await
            .unwrap_or_else(|error| panic!("click #{id}: {error}"));
    }

    /// Replaces the text of the input `#id` with `text`.
    pub async fn type_into(&self, id: &str, text: &str) {
        let input = self.by_id(id).await;
        input
            .clear()
            .await
            .unwrap_or_else(|error| panic!("clear #{id}: {error}"));
        input
            .send_keys(text)
            .await
            .unwrap_or_else(|error| panic!("type into #{id}: {error}"));
    }

    /// Sets `#runs`, the probes one click starts.
    pub async fn set_runs(&self, runs: usize) {
        self.type_into("runs", &runs.to_string()).await;
    }

    /// Waits up to `within` for the first row of `endpoint` (its URL path) in `state`
    /// (`pending`, `done`, `error` or `cancelled`), and returns it.
    pub async fn row_in(&self, endpoint: &str, state: &str, within: Duration) -> Element {
        let css = format!("#results tr[data-endpoint='{endpoint}'][data-state='{state}']");
        self.wait_for(&css, within, &format!("a {state} {endpoint} row"))
            .await
    }

    /// Waits until the first row of `endpoint` is done, and returns it.
    pub async fn done_row(&self, endpoint: &str) -> Element {
        self.row_in(endpoint, "done", WAIT).await
    }

    /// Waits for the pending row of `endpoint`, and returns it.
    pub async fn pending_row(&self, endpoint: &str) -> Element {
        self.row_in(endpoint, "pending", WAIT).await
    }

    /// Clicks `#button` and waits until the first row of `endpoint` is done; returns it.
    pub async fn probe(&self, button: &str, endpoint: &str) -> Element {
        self.click(button).await;
        self.done_row(endpoint).await
    }

    /// Waits until `count` rows are done, and returns them.
    pub async fn done_rows(&self, count: usize) -> Vec<Element> {
        let css = format!("{ROWS}[data-state='done']");
        let deadline = Instant::now() + WAIT;
        loop {
            let rows = self
                .client
                .find_all(Locator::Css(&css))
                .await
                .expect("rows");
            if rows.len() >= count {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} rows done within {WAIT:?}",
                rows.len()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until row `n` (from 1) of `#results` is done, and returns it.
    pub async fn nth_done_row(&self, n: usize) -> Element {
        let css = format!("{ROWS}[data-state='done']:nth-child({n})");
        self.wait_for(&css, WAIT, &format!("probe {n} finishes"))
            .await
    }

    /// How many rows `#results` has.
    pub async fn row_count(&self) -> usize {
        self.client
            .find_all(Locator::Css(ROWS))
            .await
            .expect("rows")
            .len()
    }

    /// Clicks `#run-drain` `count` times, one after the other, and returns each close time
    /// (ms), asserting every probe ended with the code sent and `wasClean`.
    pub async fn drain_probes(&self, count: usize) -> Vec<f64> {
        let mut times = Vec::new();
        for done in 1..=count {
            self.click("run-drain").await;
            let row = self.nth_done_row(done).await;
            times.push(closed_with(&row, 1000, true).await);
        }
        times
    }

    /// Clicks the Cancel button of `row`.
    pub async fn cancel(&self, row: &Element) {
        row.find(Locator::Css("button.cancel"))
            .await
            .expect("a Cancel button on the pending row")
            .click()
            .await
            .expect("click Cancel");
    }

    /// What the live region `#announce` says now.
    pub async fn announced(&self) -> String {
        self.by_id("announce")
            .await
            .html(true)
            .await
            .expect("#announce text")
    }

    /// The text in `#export-output`.
    pub async fn export_text(&self) -> String {
        self.by_id("export-output")
            .await
            .prop("value")
            .await
            .expect("read the export")
            .expect("a value")
    }

    /// Clicks `#export-json` and returns the export, parsed.
    pub async fn export_json(&self) -> Value {
        self.click("export-json").await;
        serde_json::from_str(&self.export_text().await).expect("valid JSON")
    }

    /// `window.demo.pending`: how many probes wait for their `close` event.
    pub async fn pending(&self) -> Value {
        self.client
            .execute("return window.demo.pending;", vec![])
            .await
            .expect("read demo.pending")
    }

    /// Waits until `#live` carries `attribute` and `done` accepts its value; returns the value.
    pub async fn live_attr(&self, attribute: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self
                .by_id("live")
                .await
                .attr(attribute)
                .await
                .expect("read #live")
                .unwrap_or_default();
            if done(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "#live {attribute}={value:?} did not change as expected within {WAIT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Asserts what `#browser` and the chart's marker say of the browser: its name, and its
    /// closing-handshake timeout (`data-timeout-ms`).
    pub async fn assert_browser(&self, name: &str, timeout_ms: &str) {
        let shown = self.by_id("browser").await;
        assert_eq!(attr(&shown, "data-name").await, name);
        assert_eq!(attr(&shown, "data-timeout-ms").await, timeout_ms);
        let marker = self.find("#chart line.marker.current").await;
        assert_eq!(attr(&marker, "data-timeout-ms").await, timeout_ms);
    }

    /// The first row of `#summary`, asserted to be `count` runs of `url`.
    pub async fn summary_of(&self, url: &str, count: usize) -> Element {
        let summary = self.find("#summary tbody tr").await;
        assert_eq!(attr(&summary, "data-url").await, url);
        assert_eq!(attr(&summary, "data-count").await, count.to_string());
        summary
    }
}

/// The attribute `name` of `element`, which must have it.
pub async fn attr(element: &Element, name: &str) -> String {
    element
        .attr(name)
        .await
        .expect("read attribute")
        .unwrap_or_else(|| panic!("the element has no {name}"))
}

/// Asserts that the finished `row` closed with `code` and `wasClean` equal to `clean`, and
/// returns its close time (`data-elapsed-ms`).
pub async fn closed_with(row: &Element, code: u16, clean: bool) -> f64 {
    assert_eq!(attr(row, "data-code").await, code.to_string());
    assert_eq!(attr(row, "data-was-clean").await, clean.to_string());
    number(row, "data-elapsed-ms").await
}

/// The attribute `name` of `element` as a number.
pub async fn number(element: &Element, name: &str) -> f64 {
    let value = attr(element, name).await;
    value
        .parse()
        .unwrap_or_else(|_| panic!("{name}={value:?} is not a number"))
}

/// Whether `element` has the attribute `name`.
pub async fn has_attr(element: &Element, name: &str) -> bool {
    element.attr(name).await.expect("read attribute").is_some()
}

/// The text of the first cell of `row` that matches `css`.
pub async fn cell_text(row: &Element, css: &str) -> String {
    row.find(Locator::Css(css))
        .await
        .expect("cell")
        .text()
        .await
        .expect("cell text")
}
