//! The demo page in headless Chromium (and its tool features also in Firefox and WebKit),
//! against the real server binary.
//!
//! The test serves the built page (`target/www`, made by `make build`) from `wsclose-server`,
//! drives it over WebDriver through the page object [`wsclose_e2e::page::DemoPage`], and
//! checks the element contract of the page (`client-wasm/README.md`) the way a person sees it:
//! a drain probe ends in about a millisecond with code 1000 and `wasClean: true`; a no-drain
//! probe is still waiting, its timer running, 3 s later. It saves a screenshot to
//! `target/screenshots/demo.png`.

use std::time::{Duration, Instant};

use serde_json::json;
use wsclose_check::browser::{Browser, Driver};
use wsclose_e2e::cluster::Cluster;
use wsclose_e2e::page::{
    attr, built_page, cell_text, closed_with, has_attr, number, served_page, DemoPage, WAIT,
};
use wsclose_e2e::server::workspace_root;

/// How long the no-drain probe must stay pending.
const PENDING_FOR: Duration = Duration::from_secs(3);

/// The no-drain endpoint: a probe of it stays pending for the browser's closing timeout.
const NO_DRAIN: &str = "/ws/no-drain";

#[tokio::test]
async fn demo_page_shows_prompt_drain_and_pending_no_drain() {
    let (server, _driver, page) = chromium_page().await;

    // The fix: /ws/drain answers the Close frame at once.
    let drain = page.probe("run-drain", "/ws/drain").await;
    let elapsed_ms = closed_with(&drain, 1000, true).await;
    println!("demo page, drain: close in {elapsed_ms:.3} ms");
    assert!(elapsed_ms < 1_000.0, "drain close took {elapsed_ms} ms");
    let text = drain.text().await.expect("row text");
    assert!(
        text.contains("1000") && text.contains("true"),
        "visible row: {text:?}"
    );
    assert!(text.contains(" ms"), "visible elapsed: {text:?}");

    // The first trap: the server drops the socket on the Close, the reply never goes out.
    let broken = page.probe("run-break-on-close", "/ws/break-on-close").await;
    let broken_ms = closed_with(&broken, 1006, false).await;
    println!("demo page, break-on-close: close in {broken_ms:.3} ms");
    assert!(broken_ms < 1_000.0, "break-on-close took {broken_ms} ms");

    // The second trap: the Close is answered but TCP stays open; Chromium waits 2 s for it.
    let lingering = page.probe("run-lingering-tcp", "/ws/lingering-tcp").await;
    let lingering_ms = closed_with(&lingering, 1000, true).await;
    println!("demo page, lingering-tcp: close in {lingering_ms:.1} ms");
    assert!(
        (1_500.0..4_000.0).contains(&lingering_ms),
        "Chromium waits about 2 s for the TCP close: {lingering_ms} ms"
    );

    // Any URL typed into #url: /ws/echo drains too.
    page.type_into("url", &server.ws_url("/ws/echo")).await;
    let echo = page.probe("run-custom", "/ws/echo").await;
    closed_with(&echo, 1000, true).await;

    // The bug: /ws/no-drain never reads, so the row must still be waiting 3 s later.
    page.click("run-no-drain").await;
    let no_drain = page.pending_row(NO_DRAIN).await;
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
        assert!(
            !has_attr(&no_drain, final_attribute).await,
            "a pending row must not carry {final_attribute}"
        );
    }
    assert!(
        late_timer.starts_with("waiting"),
        "live timer text: {late_timer:?}"
    );
    assert_ne!(early_timer, late_timer, "the live timer does not run");

    let png = page.client().screenshot().await.expect("screenshot");
    let dir = workspace_root().join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    std::fs::write(dir.join("demo.png"), png).expect("write demo.png");
    println!("screenshot: {}", dir.join("demo.png").display());

    page.close().await;
}

/// The built page served by a fresh server, open in a fresh headless Chromium. Keep the
/// driver alive as long as the page.
async fn chromium_page() -> (wsclose_e2e::ServerProcess, Driver, DemoPage) {
    served_page(Browser::Chromium).await
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Waits until the live panel has counted two more ticks than it has now.
async fn two_more_ticks(page: &DemoPage) {
    let ticks: u64 = page
        .live_attr("data-ticks", |_| true)
        .await
        .parse()
        .expect("n");
    page.live_attr("data-ticks", |now| {
        now.parse().is_ok_and(|n: u64| n >= ticks + 2)
    })
    .await;
}

/// Behind real nginx (`make serve-cluster`): the browser's close is as clean as direct, and
/// the page's live subscription rides through a rolling restart of both instances: every
/// socket it loses ends with 1012, it reconnects, and its `seq` has no gap and no duplicate.
#[tokio::test]
async fn behind_nginx_close_is_clean_and_the_live_panel_survives_a_rolling_restart() {
    const PROBES: usize = 5;
    let www = built_page();
    let www = www.to_str().expect("utf-8 path");
    let mut cluster =
        Cluster::start("60s", &["--shutdown-code", "1012", "--static-dir", www]).await;
    let driver = Driver::start(Browser::Chromium)
        .await
        .expect("start chromedriver");
    let page = DemoPage::connect(&driver).await;

    page.open(&format!("http://{}/", cluster.instance(1).addr))
        .await;
    let direct_ms = page.drain_probes(PROBES).await;
    page.open(&format!("http://{}/", cluster.addr())).await;
    let proxied_ms = page.drain_probes(PROBES).await;
    println!(
        "Chromium close, {PROBES} probes each: direct median {:.2} ms {direct_ms:?}, \
         through nginx median {:.2} ms {proxied_ms:?}",
        median(&direct_ms),
        median(&proxied_ms)
    );
    for ms in direct_ms.iter().chain(&proxied_ms) {
        assert!(*ms < 1_000.0, "a close took {ms} ms");
    }

    page.click("subscribe").await;
    page.live_attr("data-ticks", |ticks| {
        ticks.parse().is_ok_and(|n: u64| n >= 4)
    })
    .await;
    for k in [1, 2] {
        cluster.sigterm_instance(k);
        cluster
            .next_start(WAIT)
            .await
            .unwrap_or_else(|error| panic!("instance {k} did not come back: {error:#}"));
        // The next restart needs the subscription open and ticking again. (If it was on
        // instance k, its socket ended before k's restart was announced, so these ticks come
        // over the new socket.)
        two_more_ticks(&page).await;
        page.live_attr("data-state", |state| state == "open").await;
    }
    two_more_ticks(&page).await;
    let closes = page.live_attr("data-closes", |_| true).await;
    let reconnects = page.live_attr("data-reconnects", |_| true).await;
    let instances = page.live_attr("data-instances", |_| true).await;
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
    assert_eq!(page.live_attr("data-out-of-order", |_| true).await, "0");
    assert_eq!(page.live_attr("data-state", |_| true).await, "open");
    page.close().await;
}

/// The page as a tool: N runs with a median and p95 per URL, the handshake columns, the
/// browser and its timeout on the chart, the live region, both exports, and Clear.
#[tokio::test]
async fn runs_summary_export_and_clear() {
    const RUNS: usize = 5;
    let (server, _driver, page) = chromium_page().await;

    // The browser the page runs in, and its timeout marked on the chart.
    page.assert_browser("HeadlessChrome", "60000").await;
    let label = page.find("#chart text.marker-label.current").await;
    assert!(
        label.text().await.expect("label").contains("this browser"),
        "marker label"
    );

    // Five runs from one click, one after the other.
    page.set_runs(RUNS).await;
    page.click("run-drain").await;
    let rows = page.done_rows(RUNS).await;
    let mut times = Vec::new();
    for row in &rows {
        assert_eq!(attr(row, "data-code").await, "1000");
        times.push(number(row, "data-elapsed-ms").await);
        let open_ms = number(row, "data-open-ms").await;
        assert!(open_ms > 0.0, "time to open: {open_ms}");
        assert_eq!(attr(row, "data-protocol").await, "", "no subprotocol asked");
        assert!(has_attr(row, "data-extensions").await);
        let negotiated = cell_text(row, "td.negotiated").await;
        assert!(negotiated.contains("protocol: none"), "{negotiated:?}");
        assert!(cell_text(row, "td.open").await.ends_with("ms"));
    }
    times.sort_by(f64::total_cmp);
    let summary = page.summary_of(&server.ws_url("/ws/drain"), RUNS).await;
    let median = number(&summary, "data-median-ms").await;
    let p95 = number(&summary, "data-p95-ms").await;
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
    let spoken = page.announced().await;
    assert!(
        spoken.starts_with(&format!("Probe {RUNS}, /ws/drain: close in "))
            && spoken.ends_with("(code 1000, clean)."),
        "{spoken:?}"
    );

    // JSON export: every run, the summary, the browser; and a download of the same text.
    let export = page.export_json().await;
    let json_text = page.export_text().await;
    assert_eq!(export["runs"].as_array().map(Vec::len), Some(RUNS));
    assert_eq!(export["runs"][0]["state"], "done");
    assert_eq!(export["runs"][0]["code"], 1000);
    assert_eq!(export["summary"][0]["count"], RUNS);
    assert_eq!(export["browser"]["name"], "HeadlessChrome");
    assert_eq!(export["browser"]["engine"], "chromium");
    let download = page.by_id("export-download").await;
    assert_eq!(attr(&download, "download").await, "wsclose-results.json");
    let href = attr(&download, "href").await;
    assert!(href.starts_with("blob:"), "{href}");
    let fetched = page
        .client()
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
    page.click("export-markdown").await;
    let markdown = page.export_text().await;
    let line = format!("| `{}` | {RUNS} |", server.ws_url("/ws/drain"));
    assert!(markdown.contains(&line), "{markdown}");
    let run_rows = markdown.lines().filter(|l| l.contains("| done |")).count();
    assert_eq!(run_rows, RUNS, "{markdown}");

    // Clear empties everything and restarts the numbering.
    page.click("clear").await;
    let left = page.row_count().await;
    assert_eq!(left, 0, "{left} rows left after Clear");
    assert!(has_attr(&page.by_id("summary").await, "hidden").await);
    assert!(!has_attr(&page.by_id("results-empty").await, "hidden").await);
    page.set_runs(1).await;
    page.click("run-drain").await;
    let first = page.done_rows(1).await;
    assert_eq!(attr(&first[0], "data-run").await, "1");

    page.close().await;
}

/// Cancel ends a pending 60 s probe at once, and the chart updates its growing bar in place
/// (the same element, wider) rather than redrawing it.
#[tokio::test]
async fn cancel_a_pending_probe_and_the_chart_grows_in_place() {
    let (_server, _driver, page) = chromium_page().await;
    page.click("run-no-drain").await;
    let row = page.pending_row(NO_DRAIN).await;
    let bar = page
        .wait_for("#chart rect.bar.pending", WAIT, "a pending bar")
        .await;
    // Wait until the socket is closing (the timer runs), then watch the bar for a second.
    page.wait_for("#chart text.value", WAIT, "a value").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let width_before = number(&bar, "width").await;
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

    let clicked = Instant::now();
    page.cancel(&row).await;
    let cancelled = page
        .row_in(NO_DRAIN, "cancelled", Duration::from_secs(1))
        .await;
    println!("demo page, cancel: {:?}", clicked.elapsed());
    let waited = number(&cancelled, "data-waited-ms").await;
    assert!(waited >= 1_000.0, "it had waited {waited} ms");
    assert_eq!(page.pending().await, json!(0));
    let spoken = page.announced().await;
    assert!(
        spoken.contains("/ws/no-drain: cancelled after"),
        "{spoken:?}"
    );
    assert!(cancelled
        .find_all(fantoccini::Locator::Css("button.cancel"))
        .await
        .expect("buttons")
        .is_empty());
    page.close().await;
}

/// `?url=…&runs=2` fills the form and says so, sends nothing until Probe URL is clicked, and the
/// share link says the same.
#[tokio::test]
async fn a_shared_link_says_what_it_will_probe_and_waits_for_a_click() {
    let (server, _driver, page) = chromium_page().await;
    let target = server.ws_url("/ws/drain?push_ms=0");
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("url", &target)
        .append_pair("runs", "2")
        .finish();
    page.open(&server.http_url(&format!("/?{query}"))).await;
    let said = page
        .by_id("shared-notice")
        .await
        .text()
        .await
        .expect("its text");
    assert!(
        said.contains("2 probes") && said.contains(&target),
        "the notice names the URL and the runs: {said:?}"
    );
    // A link from anyone sends nothing by itself.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(page.row_count().await, 0, "a probe ran without a click");
    page.click("run-custom").await;
    let rows = page.done_rows(2).await;
    assert_eq!(attr(&rows[1], "data-url").await, target);
    let input = page.by_id("url").await;
    assert_eq!(
        input.prop("value").await.expect("value").as_deref(),
        Some(target.as_str())
    );
    let share = page.by_id("share-link").await;
    let href = share.prop("href").await.expect("href").expect("an href");
    assert!(href.ends_with(&format!("/?{query}")), "{href} for {query}");
    page.close().await;
}

/// A held Enter repeats `keydown`: the URL field starts one probe per press, not per repeat.
#[tokio::test]
async fn holding_enter_starts_one_probe() {
    let (server, _driver, page) = chromium_page().await;
    page.type_into("url", &server.ws_url("/ws/echo")).await;
    page.client()
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
    page.done_rows(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(page.row_count().await, 1, "one press, one probe");
    page.close().await;
}

/// Text on the page meets WCAG AA (4.5:1): the pending timer on its amber row, and the value
/// written inside each kind of bar, against the bar's own fill.
#[tokio::test]
async fn text_contrast_meets_wcag_aa() {
    let (_server, _driver, page) = chromium_page().await;
    page.click("run-no-drain").await;
    // Past about 2.2 s the pending bar is long enough to carry its value inside.
    page.wait_for(
        "#chart text.value.inside",
        WAIT,
        "a value inside the pending bar",
    )
    .await;
    let ratios = page
        .client()
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
    page.close().await;
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
    the_tool_works_in(Browser::WebKit, "Safari", "5000", "webkit").await;
}

/// The tool features in `browser`, whose user agent names it `name`, whose closing-handshake
/// timeout is `timeout_ms` and whose engine the export calls `engine`.
async fn the_tool_works_in(browser: Browser, name: &str, timeout_ms: &str, engine: &str) {
    const RUNS: usize = 3;
    let (server, _driver, page) = served_page(browser).await;
    page.assert_browser(name, timeout_ms).await;

    page.set_runs(RUNS).await;
    page.click("run-drain").await;
    let rows = page.done_rows(RUNS).await;
    for row in &rows {
        closed_with(row, 1000, true).await;
    }
    page.summary_of(&server.ws_url("/ws/drain"), RUNS).await;
    let export = page.export_json().await;
    assert_eq!(export["browser"]["engine"], engine);
    assert_eq!(export["summary"][0]["count"], RUNS);

    page.set_runs(1).await;
    page.click("run-no-drain").await;
    let row = page.pending_row(NO_DRAIN).await;
    page.cancel(&row).await;
    page.row_in(NO_DRAIN, "cancelled", Duration::from_secs(1))
        .await;
    assert!(page.announced().await.contains("cancelled after"));
    page.close().await;
}
