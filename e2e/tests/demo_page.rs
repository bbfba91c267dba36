//! The demo page in headless Chromium (and its tool features also in Firefox), against the
//! real server binary.
//!
//! The test serves the built page (`target/www`, made by `make build`) from `wsclose-server`,
//! drives it over WebDriver with `/usr/bin/chromedriver`, and checks the element contract of
//! the page (`client-wasm/README.md`) the way a person sees it: a drain probe ends in about a millisecond with code
//! 1000 and `wasClean: true`; a no-drain probe is still waiting, its timer running, 3 s later.
//! It saves a screenshot to `target/screenshots/demo.png`.

use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::{elements::Element, Client, Locator};
use serde_json::json;
use wsclose_check::browser::{Browser, Driver};
use wsclose_e2e::cluster::Cluster;
use wsclose_e2e::server::workspace_root;
use wsclose_e2e::ServerProcess;

/// Bound on every wait for the page to reach a state.
const WAIT: Duration = Duration::from_secs(15);
/// How long the no-drain probe must stay pending.
const PENDING_FOR: Duration = Duration::from_secs(3);

#[tokio::test]
async fn demo_page_shows_prompt_drain_and_pending_no_drain() {
    let (server, _driver, client) = served_page().await;

    // The fix: /ws/drain answers the Close frame at once.
    click(&client, "run-drain").await;
    let drain = done_row(&client, "/ws/drain").await;
    let elapsed = attr(&drain, "data-elapsed-ms").await;
    let elapsed_ms: f64 = elapsed.parse().expect("data-elapsed-ms is a number");
    println!("demo page, drain: close in {elapsed_ms:.3} ms");
    assert_eq!(attr(&drain, "data-code").await, "1000");
    assert_eq!(attr(&drain, "data-was-clean").await, "true");
    assert!(elapsed_ms < 1_000.0, "drain close took {elapsed_ms} ms");
    let text = drain.text().await.expect("row text");
    assert!(
        text.contains("1000") && text.contains("true"),
        "visible row: {text:?}"
    );
    assert!(text.contains(" ms"), "visible elapsed: {text:?}");

    // The first trap: the server drops the socket on the Close, the reply never goes out.
    click(&client, "run-break-on-close").await;
    let broken = done_row(&client, "/ws/break-on-close").await;
    let broken_ms: f64 = attr(&broken, "data-elapsed-ms")
        .await
        .parse()
        .expect("a number");
    println!("demo page, break-on-close: close in {broken_ms:.3} ms");
    assert_eq!(attr(&broken, "data-code").await, "1006");
    assert_eq!(attr(&broken, "data-was-clean").await, "false");
    assert!(broken_ms < 1_000.0, "break-on-close took {broken_ms} ms");

    // The second trap: the Close is answered but TCP stays open; Chromium waits 2 s for it.
    click(&client, "run-lingering-tcp").await;
    let lingering = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(
            "#results tr[data-endpoint='/ws/lingering-tcp'][data-state='done']",
        ))
        .await
        .expect("a finished /ws/lingering-tcp row");
    let lingering_ms: f64 = attr(&lingering, "data-elapsed-ms")
        .await
        .parse()
        .expect("a number");
    println!("demo page, lingering-tcp: close in {lingering_ms:.1} ms");
    assert_eq!(attr(&lingering, "data-code").await, "1000");
    assert_eq!(attr(&lingering, "data-was-clean").await, "true");
    assert!(
        (1_500.0..4_000.0).contains(&lingering_ms),
        "Chromium waits about 2 s for the TCP close: {lingering_ms} ms"
    );

    // Any URL typed into #url: /ws/echo drains too.
    let input = client.find(Locator::Id("url")).await.expect("#url");
    input.clear().await.expect("clear #url");
    input
        .send_keys(&server.ws_url("/ws/echo"))
        .await
        .expect("type into #url");
    click(&client, "run-custom").await;
    let echo = done_row(&client, "/ws/echo").await;
    assert_eq!(attr(&echo, "data-code").await, "1000");
    assert_eq!(attr(&echo, "data-was-clean").await, "true");

    // The bug: /ws/no-drain never reads, so the row must still be waiting 3 s later.
    click(&client, "run-no-drain").await;
    let no_drain = pending_no_drain_row(&client).await;
    let clicked = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let early_timer = cell_text(&no_drain, "td.elapsed").await;
    tokio::time::sleep(PENDING_FOR.saturating_sub(clicked.elapsed())).await;
    let late_timer = cell_text(&no_drain, "td.elapsed").await;
    println!(
        "demo page, no-drain: still {late_timer:?} after {:?}",
        clicked.elapsed()
    );
    assert_eq!(attr(&no_drain, "data-state").await, "pending");
    for final_attribute in ["data-code", "data-was-clean", "data-elapsed-ms"] {
        assert_eq!(
            no_drain
                .attr(final_attribute)
                .await
                .expect("read attribute"),
            None,
            "a pending row must not carry {final_attribute}"
        );
    }
    assert!(
        late_timer.starts_with("waiting"),
        "live timer text: {late_timer:?}"
    );
    assert_ne!(early_timer, late_timer, "the live timer does not run");

    let png = client.screenshot().await.expect("screenshot");
    let dir = workspace_root().join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    std::fs::write(dir.join("demo.png"), png).expect("write demo.png");
    println!("screenshot: {}", dir.join("demo.png").display());

    client.close().await.expect("end the WebDriver session");
}

/// The built page served by a fresh server, open in a fresh headless Chromium. Keep the
/// driver alive as long as the client.
async fn served_page() -> (ServerProcess, Driver, Client) {
    served_page_in(Browser::Chromium).await
}

/// [`served_page`] in `browser`.
async fn served_page_in(browser: Browser) -> (ServerProcess, Driver, Client) {
    let www = workspace_root().join("target/www");
    require_built_page(&www);
    let server = ServerProcess::start(&["--static-dir", www.to_str().expect("utf-8 path")]).await;
    let driver = Driver::start(browser).expect("start the WebDriver server");
    let client = driver.connect().await.expect("a browser session");
    open_page(&client, &server.http_url("/")).await;
    (server, driver, client)
}

/// Clicks the element with id `id`.
async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|error| panic!("#{id}: {error}"))
        .click()
        .await
        .unwrap_or_else(|error| panic!("click #{id}: {error}"));
}

/// Opens the demo page at `url` and waits for the wasm to load.
async fn open_page(client: &Client, url: &str) {
    client.goto(url).await.expect("open the demo page");
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("html[data-ready='true']"))
        .await
        .expect("the wasm demo loads and marks <html data-ready>");
}

/// Clicks `#run-drain` `count` times, one after the other, and returns each close time (ms),
/// asserting every probe ended with the code sent and `wasClean`.
async fn drain_probes(client: &Client, count: usize) -> Vec<f64> {
    let mut times = Vec::new();
    for done in 1..=count {
        click(client, "run-drain").await;
        let css = format!("#results tbody tr[data-state='done']:nth-child({done})");
        let row = client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(&css))
            .await
            .expect("the probe finishes");
        assert_eq!(attr(&row, "data-code").await, "1000");
        assert_eq!(attr(&row, "data-was-clean").await, "true");
        times.push(
            attr(&row, "data-elapsed-ms")
                .await
                .parse()
                .expect("a number"),
        );
    }
    times
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Waits until `#live` carries `attribute` and `done` accepts its value; returns the value.
async fn live_attr(client: &Client, attribute: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let live = client.find(Locator::Id("live")).await.expect("#live");
        let value = live
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Behind real nginx (`make serve-cluster`): the browser's close is as clean as direct, and
/// the page's live subscription rides through a rolling restart of both instances: every
/// socket it loses ends with 1012, it reconnects, and its `seq` has no gap and no duplicate.
#[tokio::test]
async fn behind_nginx_close_is_clean_and_the_live_panel_survives_a_rolling_restart() {
    const PROBES: usize = 5;
    let www = workspace_root().join("target/www");
    require_built_page(&www);
    let www = www.to_str().expect("utf-8 path");
    let mut cluster =
        Cluster::start("60s", &["--shutdown-code", "1012", "--static-dir", www]).await;
    let driver = Driver::start(Browser::Chromium).expect("start chromedriver");
    let client = driver.connect().await.expect("a Chromium session");

    let direct = format!("http://{}/", cluster.instance(1).addr);
    open_page(&client, &direct).await;
    let direct_ms = drain_probes(&client, PROBES).await;
    open_page(&client, &format!("http://{}/", cluster.addr())).await;
    let proxied_ms = drain_probes(&client, PROBES).await;
    println!(
        "Chromium close, {PROBES} probes each: direct median {:.2} ms {direct_ms:?}, \
         through nginx median {:.2} ms {proxied_ms:?}",
        median(&direct_ms),
        median(&proxied_ms)
    );
    for ms in direct_ms.iter().chain(&proxied_ms) {
        assert!(*ms < 1_000.0, "a close took {ms} ms");
    }

    click(&client, "subscribe").await;
    live_attr(&client, "data-ticks", |ticks| {
        ticks.parse().is_ok_and(|n: u64| n >= 4)
    })
    .await;
    for k in [1, 2] {
        cluster.sigterm_instance(k);
        cluster
            .next_start(WAIT)
            .await
            .unwrap_or_else(|error| panic!("instance {k} did not come back: {error:#}"));
        // Reconnected (first delay ≤ 250 ms) and ticking again (every 250 ms).
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    let ticks_after: u64 = live_attr(&client, "data-ticks", |_| true)
        .await
        .parse()
        .expect("n");
    live_attr(&client, "data-ticks", |ticks| {
        ticks.parse().is_ok_and(|n: u64| n >= ticks_after + 2)
    })
    .await;
    let closes = live_attr(&client, "data-closes", |_| true).await;
    let reconnects = live_attr(&client, "data-reconnects", |_| true).await;
    let instances = live_attr(&client, "data-instances", |_| true).await;
    println!(
        "live panel through a rolling restart: closes {closes:?}, reconnects {reconnects}, \
         instances {instances:?}"
    );
    assert!(!closes.is_empty(), "the subscription never lost its socket");
    assert!(
        closes.split(',').all(|code| code == "1012"),
        "a socket ended other than with 1012: {closes}"
    );
    assert_eq!(reconnects, closes.split(',').count().to_string());
    assert_eq!(live_attr(&client, "data-out-of-order", |_| true).await, "0");
    assert_eq!(live_attr(&client, "data-state", |_| true).await, "open");
    client.close().await.expect("end the WebDriver session");
}

/// Fails with the fix when the page or the wasm has not been built.
fn require_built_page(www: &Path) {
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

/// Waits until the first row for `endpoint` is done, and returns it.
async fn done_row(client: &Client, endpoint: &str) -> Element {
    let css = format!("#results tr[data-endpoint='{endpoint}'][data-state='done']");
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&css))
        .await
        .unwrap_or_else(|error| panic!("no finished {endpoint} row within {WAIT:?}: {error}"))
}

async fn attr(element: &Element, name: &str) -> String {
    element
        .attr(name)
        .await
        .expect("read attribute")
        .unwrap_or_else(|| panic!("the row has no {name}"))
}

async fn cell_text(row: &Element, css: &str) -> String {
    row.find(Locator::Css(css))
        .await
        .expect("cell")
        .text()
        .await
        .expect("cell text")
}

/// The page as a tool: N runs with a median and p95 per URL, the handshake columns, the
/// browser and its timeout on the chart, the live region, both exports, and Clear.
#[tokio::test]
async fn runs_summary_export_and_clear() {
    const RUNS: usize = 5;
    let (server, _driver, client) = served_page().await;

    // The browser the page runs in, and its timeout marked on the chart.
    let browser = client.find(Locator::Id("browser")).await.expect("#browser");
    assert_eq!(attr(&browser, "data-name").await, "HeadlessChrome");
    assert_eq!(attr(&browser, "data-timeout-ms").await, "60000");
    let marker = client
        .find(Locator::Css("#chart line.marker.current"))
        .await
        .expect("the current browser's timeout marker");
    assert_eq!(attr(&marker, "data-timeout-ms").await, "60000");
    let label = client
        .find(Locator::Css("#chart text.marker-label.current"))
        .await
        .expect("its label");
    assert!(
        label.text().await.expect("label").contains("this browser"),
        "marker label"
    );

    // Five runs from one click, one after the other.
    set_runs(&client, RUNS).await;
    click(&client, "run-drain").await;
    let rows = done_rows(&client, RUNS).await;
    let mut times = Vec::new();
    for row in &rows {
        assert_eq!(attr(row, "data-code").await, "1000");
        times.push(
            attr(row, "data-elapsed-ms")
                .await
                .parse::<f64>()
                .expect("ms"),
        );
        let open_ms: f64 = attr(row, "data-open-ms").await.parse().expect("ms");
        assert!(open_ms > 0.0, "time to open: {open_ms}");
        assert_eq!(attr(row, "data-protocol").await, "", "no subprotocol asked");
        assert!(row.attr("data-extensions").await.expect("read").is_some());
        let negotiated = cell_text(row, "td.negotiated").await;
        assert!(negotiated.contains("protocol: none"), "{negotiated:?}");
        assert!(cell_text(row, "td.open").await.ends_with("ms"));
    }
    times.sort_by(f64::total_cmp);
    let summary = client
        .find(Locator::Css("#summary tbody tr"))
        .await
        .expect("a summary row");
    assert_eq!(attr(&summary, "data-url").await, server.ws_url("/ws/drain"));
    assert_eq!(attr(&summary, "data-count").await, RUNS.to_string());
    let median: f64 = attr(&summary, "data-median-ms").await.parse().expect("ms");
    let p95: f64 = attr(&summary, "data-p95-ms").await.parse().expect("ms");
    println!("demo page, {RUNS} drain runs {times:?}: median {median} ms, p95 {p95} ms");
    assert!(
        (median - times[2]).abs() < 1e-9,
        "median of {times:?}: {median}"
    );
    assert!(
        (p95 - times[4]).abs() < 1e-9,
        "nearest-rank p95 of 5 is the max: {p95}"
    );

    // The live region reads out the last probe.
    let spoken = announced(&client).await;
    assert!(
        spoken.starts_with(&format!("Probe {RUNS}, /ws/drain: close in "))
            && spoken.ends_with("(code 1000, clean)."),
        "{spoken:?}"
    );

    // JSON export: every run, the summary, the browser; and a download of the same text.
    click(&client, "export-json").await;
    let json_text = export_text(&client).await;
    let export: serde_json::Value = serde_json::from_str(&json_text).expect("valid JSON");
    assert_eq!(export["runs"].as_array().map(Vec::len), Some(RUNS));
    assert_eq!(export["runs"][0]["state"], "done");
    assert_eq!(export["runs"][0]["code"], 1000);
    assert_eq!(export["summary"][0]["count"], RUNS);
    assert_eq!(export["browser"]["name"], "HeadlessChrome");
    assert_eq!(export["browser"]["engine"], "chromium");
    let download = client
        .find(Locator::Id("export-download"))
        .await
        .expect("#export-download");
    assert_eq!(attr(&download, "download").await, "wsclose-results.json");
    let href = attr(&download, "href").await;
    assert!(href.starts_with("blob:"), "{href}");
    let fetched = client
        .execute_async(
            "const [href, done] = arguments; fetch(href).then(r => r.text()).then(done);",
            vec![json!(href)],
        )
        .await
        .expect("fetch the download");
    assert_eq!(
        fetched.as_str(),
        Some(json_text.as_str()),
        "download = shown text"
    );

    // Markdown export: the summary line and one table row per run.
    click(&client, "export-markdown").await;
    let markdown = export_text(&client).await;
    let line = format!("| `{}` | {RUNS} |", server.ws_url("/ws/drain"));
    assert!(markdown.contains(&line), "{markdown}");
    let run_rows = markdown.lines().filter(|l| l.contains("| done |")).count();
    assert_eq!(run_rows, RUNS, "{markdown}");

    // Clear empties everything and restarts the numbering.
    click(&client, "clear").await;
    let left = row_count(&client).await;
    assert_eq!(left, 0, "{left} rows left after Clear");
    let summary_table = client.find(Locator::Id("summary")).await.expect("#summary");
    assert!(summary_table.attr("hidden").await.expect("read").is_some());
    let hint = client
        .find(Locator::Id("results-empty"))
        .await
        .expect("hint");
    assert_eq!(hint.attr("hidden").await.expect("read"), None);
    set_runs(&client, 1).await;
    click(&client, "run-drain").await;
    let first = done_rows(&client, 1).await;
    assert_eq!(attr(&first[0], "data-run").await, "1");

    client.close().await.expect("end the WebDriver session");
}

/// Cancel ends a pending 60 s probe at once, and the chart updates its growing bar in place
/// (the same element, wider) rather than redrawing it.
#[tokio::test]
async fn cancel_a_pending_probe_and_the_chart_grows_in_place() {
    let (_server, _driver, client) = served_page().await;
    click(&client, "run-no-drain").await;
    let row = pending_no_drain_row(&client).await;
    let bar = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#chart rect.bar.pending"))
        .await
        .expect("a pending bar");
    // Wait until the socket is closing (the timer runs), then watch the bar for a second.
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#chart text.value"))
        .await
        .expect("a value");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let width_before: f64 = attr(&bar, "width").await.parse().expect("a width");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // A redrawn chart would have replaced the element: reading it would fail as stale.
    let width_after: f64 = bar
        .attr("width")
        .await
        .expect("the same <rect> is still in the page")
        .expect("a width")
        .parse()
        .expect("a number");
    println!("demo page, pending bar: width {width_before:.1} → {width_after:.1} in 1 s");
    assert!(width_after > width_before, "{width_before} → {width_after}");

    let cancel = row
        .find(Locator::Css("button.cancel"))
        .await
        .expect("a Cancel button on the pending row");
    let clicked = Instant::now();
    cancel.click().await.expect("click Cancel");
    let cancelled = client
        .wait()
        .at_most(Duration::from_secs(1))
        .for_element(Locator::Css(
            "#results tr[data-endpoint='/ws/no-drain'][data-state='cancelled']",
        ))
        .await
        .expect("cancelled within 1 s");
    println!("demo page, cancel: {:?}", clicked.elapsed());
    let waited: f64 = attr(&cancelled, "data-waited-ms")
        .await
        .parse()
        .expect("ms");
    assert!(waited >= 1_000.0, "it had waited {waited} ms");
    let pending = client
        .execute("return window.demo.pending;", vec![])
        .await
        .expect("read demo.pending");
    assert_eq!(pending, json!(0));
    let spoken = announced(&client).await;
    assert!(
        spoken.contains("/ws/no-drain: cancelled after"),
        "{spoken:?}"
    );
    assert!(cancelled
        .find_all(Locator::Css("button.cancel"))
        .await
        .expect("buttons")
        .is_empty());
    client.close().await.expect("end the WebDriver session");
}

/// `?url=…&runs=2` fills the form and says so, sends nothing until Probe URL is clicked, and the
/// share link says the same.
#[tokio::test]
async fn a_shared_link_says_what_it_will_probe_and_waits_for_a_click() {
    let (server, _driver, client) = served_page().await;
    let target = server.ws_url("/ws/drain?push_ms=0");
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("url", &target)
        .append_pair("runs", "2")
        .finish();
    open_page(&client, &server.http_url(&format!("/?{query}"))).await;
    let notice = client
        .find(Locator::Id("shared-notice"))
        .await
        .expect("#shared-notice");
    let said = notice.text().await.expect("its text");
    assert!(
        said.contains("2 probes") && said.contains(&target),
        "the notice names the URL and the runs: {said:?}"
    );
    // A link from anyone sends nothing by itself.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(row_count(&client).await, 0, "a probe ran without a click");
    click(&client, "run-custom").await;
    let rows = done_rows(&client, 2).await;
    assert_eq!(attr(&rows[1], "data-url").await, target);
    let input = client.find(Locator::Id("url")).await.expect("#url");
    assert_eq!(
        input.prop("value").await.expect("value").as_deref(),
        Some(target.as_str())
    );
    let share = client
        .find(Locator::Id("share-link"))
        .await
        .expect("#share-link");
    let href = share.prop("href").await.expect("href").expect("an href");
    assert!(href.ends_with(&format!("/?{query}")), "{href} for {query}");
    client.close().await.expect("end the WebDriver session");
}

/// A held Enter repeats `keydown`: the URL field starts one probe per press, not per repeat.
#[tokio::test]
async fn holding_enter_starts_one_probe() {
    let (server, _driver, client) = served_page().await;
    let input = client.find(Locator::Id("url")).await.expect("#url");
    input.clear().await.expect("clear #url");
    input
        .send_keys(&server.ws_url("/ws/echo"))
        .await
        .expect("type into #url");
    client
        .execute(
            r#"
            const input = document.getElementById('url');
            const press = repeat => input.dispatchEvent(
                new KeyboardEvent('keydown', { key: 'Enter', repeat, bubbles: true, cancelable: true }));
            press(false);
            for (let i = 0; i < 20; i++) press(true);
            "#,
            vec![],
        )
        .await
        .expect("hold Enter");
    done_rows(&client, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(row_count(&client).await, 1, "one press, one probe");
    client.close().await.expect("end the WebDriver session");
}

/// Text on the page meets WCAG AA (4.5:1): the pending timer on its amber row, and the value
/// written inside each kind of bar, against the bar's own fill.
#[tokio::test]
async fn text_contrast_meets_wcag_aa() {
    let (_server, _driver, client) = served_page().await;
    click(&client, "run-no-drain").await;
    // Past about 2.2 s the pending bar is long enough to carry its value inside.
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#chart text.value.inside"))
        .await
        .expect("a value inside the pending bar");
    let ratios = client
        .execute(
            r#"
            const lum = color => {
              const [r, g, b] = color.match(/[\d.]+/g).slice(0, 3).map(Number).map(v => {
                v /= 255;
                return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
              });
              return 0.2126 * r + 0.7152 * g + 0.0722 * b;
            };
            const ratio = (a, b) => {
              const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
              return (hi + 0.05) / (lo + 0.05);
            };
            const background = element => {
              for (let e = element; e; e = e.parentElement) {
                const c = getComputedStyle(e).backgroundColor;
                const parts = c.match(/[\d.]+/g);
                if (parts && (parts.length < 4 || Number(parts[3]) > 0)) return c;
              }
              return 'rgb(255, 255, 255)';
            };
            const out = {};
            const timer = document.querySelector('#results tr.pending td.elapsed');
            out.pendingTimer = ratio(getComputedStyle(timer).color, background(timer));
            const svg = document.querySelector('#chart svg');
            const live = svg.querySelector('text.value.inside');
            const liveBar = svg.querySelector('rect.bar.pending');
            out.pendingBar = ratio(getComputedStyle(live).fill, getComputedStyle(liveBar).fill);
            // The other kinds, with the classes the chart gives them (chart.rs, Look::of).
            const ns = 'http://www.w3.org/2000/svg';
            for (const [kind, valueClass] of [['clean', 'value inside'],
                                              ['unclean', 'value inside'],
                                              ['failed', 'value inside dark']]) {
              const rect = document.createElementNS(ns, 'rect');
              rect.setAttribute('class', 'bar ' + kind);
              const text = document.createElementNS(ns, 'text');
              text.setAttribute('class', valueClass);
              svg.append(rect, text);
              out[kind + 'Bar'] = ratio(getComputedStyle(text).fill, getComputedStyle(rect).fill);
              rect.remove();
              text.remove();
            }
            return out;
            "#,
            vec![],
        )
        .await
        .expect("compute the contrast ratios");
    println!("demo page, contrast: {ratios}");
    for key in [
        "pendingTimer",
        "pendingBar",
        "cleanBar",
        "uncleanBar",
        "failedBar",
    ] {
        let ratio = ratios[key].as_f64().unwrap_or(0.0);
        assert!(ratio >= 4.5, "{key}: {ratio:.2}:1 is below WCAG AA 4.5:1");
    }
    client.close().await.expect("end the WebDriver session");
}

/// Waits for the pending `/ws/no-drain` row, and returns it.
async fn pending_no_drain_row(client: &Client) -> Element {
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(
            "#results tr[data-endpoint='/ws/no-drain'][data-state='pending']",
        ))
        .await
        .expect("a pending /ws/no-drain row")
}

/// What the live region `#announce` says now.
async fn announced(client: &Client) -> String {
    client
        .find(Locator::Id("announce"))
        .await
        .expect("#announce")
        .html(true)
        .await
        .expect("#announce text")
}

/// How many rows `#results` has.
async fn row_count(client: &Client) -> usize {
    client
        .find_all(Locator::Css("#results tbody tr"))
        .await
        .expect("rows")
        .len()
}

/// The same tool in Firefox: its own timeout (20 s) on the chart, runs with a summary, the
/// export naming Gecko, and Cancel.
#[tokio::test]
async fn the_tool_works_in_firefox() {
    the_tool_works_in(Browser::Firefox, "Firefox", "20000", "gecko").await;
}

/// The same tool in WebKit (WebKitGTK's MiniBrowser, whose user agent reads like Safari's):
/// its own timeout (5 s) on the chart, runs with a summary, the export naming WebKit, Cancel.
#[tokio::test]
async fn the_tool_works_in_webkit() {
    the_tool_works_in(Browser::Webkit, "Safari", "5000", "webkit").await;
}

/// The tool features in `browser`, whose user agent names it `name`, whose closing-handshake
/// timeout is `timeout_ms` and whose engine the export calls `engine`.
async fn the_tool_works_in(browser: Browser, name: &str, timeout_ms: &str, engine: &str) {
    const RUNS: usize = 3;
    let (server, _driver, client) = served_page_in(browser).await;
    let shown = client.find(Locator::Id("browser")).await.expect("#browser");
    assert_eq!(attr(&shown, "data-name").await, name);
    assert_eq!(attr(&shown, "data-timeout-ms").await, timeout_ms);
    let marker = client
        .find(Locator::Css("#chart line.marker.current"))
        .await
        .expect("the current browser's timeout marker");
    assert_eq!(attr(&marker, "data-timeout-ms").await, timeout_ms);

    set_runs(&client, RUNS).await;
    click(&client, "run-drain").await;
    let rows = done_rows(&client, RUNS).await;
    for row in &rows {
        assert_eq!(attr(row, "data-code").await, "1000");
        assert_eq!(attr(row, "data-was-clean").await, "true");
    }
    let summary = client
        .find(Locator::Css("#summary tbody tr"))
        .await
        .expect("a summary row");
    assert_eq!(attr(&summary, "data-url").await, server.ws_url("/ws/drain"));
    assert_eq!(attr(&summary, "data-count").await, RUNS.to_string());
    click(&client, "export-json").await;
    let export: serde_json::Value =
        serde_json::from_str(&export_text(&client).await).expect("valid JSON");
    assert_eq!(export["browser"]["engine"], engine);
    assert_eq!(export["summary"][0]["count"], RUNS);

    set_runs(&client, 1).await;
    click(&client, "run-no-drain").await;
    let row = pending_no_drain_row(&client).await;
    row.find(Locator::Css("button.cancel"))
        .await
        .expect("a Cancel button")
        .click()
        .await
        .expect("click Cancel");
    client
        .wait()
        .at_most(Duration::from_secs(1))
        .for_element(Locator::Css(
            "#results tr[data-endpoint='/ws/no-drain'][data-state='cancelled']",
        ))
        .await
        .expect("cancelled within 1 s");
    assert!(announced(&client).await.contains("cancelled after"));
    client.close().await.expect("end the WebDriver session");
}

/// Sets `#runs`.
async fn set_runs(client: &Client, runs: usize) {
    let input = client.find(Locator::Id("runs")).await.expect("#runs");
    input.clear().await.expect("clear #runs");
    input
        .send_keys(&runs.to_string())
        .await
        .expect("type into #runs");
}

/// Waits until `count` rows are done, and returns them.
async fn done_rows(client: &Client, count: usize) -> Vec<Element> {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = client
            .find_all(Locator::Css("#results tbody tr[data-state='done']"))
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text in `#export-output`.
async fn export_text(client: &Client) -> String {
    client
        .find(Locator::Id("export-output"))
        .await
        .expect("#export-output")
        .prop("value")
        .await
        .expect("read the export")
        .expect("a value")
}
