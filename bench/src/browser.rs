//! Close latency as a browser sees it: the wasm probe's `measureClose`, run in headless
//! Chromium through WebDriver, on the demo page the server itself serves.
//!
//! All probes run inside one async script, one after the other, so the only thing timed is
//! the browser's `close()` → `close` event (the probe measures it with `performance.now()`).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use fantoccini::wd::TimeoutConfiguration;
use serde_json::{json, Value};

use crate::results::{BrowserDetails, BrowserMeasured, EngineRun, Measured, PageAgainstBare};
use wsclose_check::browser::{Browser, Driver, CHROMEDRIVER, WEBKITDRIVER, XVFB_RUN};
use wsclose_e2e::ServerProcess;

use crate::report::{ms, Figure, Report, Verdict};
use crate::stats::Samples;
use crate::{major, Options, TARGET_BROWSER_P50_MS};

/// Probes run before the measured ones (first connections pay for DNS-less socket setup,
/// JIT warm-up and the like).
const WARMUP: usize = 5;

/// Imports the probe, then runs `count` measured probes after `warmup` unmeasured ones.
/// The module is the same instance the demo page already initialised, so `init()` is a no-op.
const SCRIPT: &str = r#"
const [url, count, warmup, done] = arguments;
(async () => {
  const probe = await import('/pkg/wsclose_client.js');
  await probe.default();
  const results = [];
  for (let i = 0; i < warmup + count; i++) {
    let result;
    try {
      const r = await probe.measureClose(url, { code: 1000, reason: 'bench', closeTimeoutMs: 5000 });
      result = {
        ok: true,
        elapsedMs: r.elapsedMs ?? r.elapsed_ms,
        code: r.code,
        wasClean: r.wasClean ?? r.was_clean,
      };
    } catch (e) {
      result = { ok: false, error: String((e && e.message) || e), kind: (e && e.kind) || null };
    }
    if (i >= warmup) results.push(result);
  }
  return { results, crossOriginIsolated: self.crossOriginIsolated === true };
})().then(done, (e) => done({ fatal: String((e && e.stack) || e) }));
"#;

/// Pairs of closes on the demo page: one click of `#run-drain` (the page's own figure, with
/// everything the page draws around it), then one bare `WebSocket` opened, left idle for the
/// page's `data-settle-ms` and closed, with nothing of the page around it. Interleaved, so load
/// on the machine falls on both halves of a pair alike.
const PAIRS_SCRIPT: &str = r##"
const [url, pairs, done] = arguments;
(async () => {
  const settle = Number(document.documentElement.dataset.settleMs || 0);
  const rows = () => document.querySelectorAll("#results tbody tr[data-state='done']");
  const page = [], bare = [];
  for (let i = 0; i < pairs; i++) {
    const before = rows().length;
    document.getElementById('run-drain').click();
    while (rows().length === before) await new Promise((r) => setTimeout(r, 5));
    const row = rows()[rows().length - 1];
    if (row.dataset.code !== '1000' || row.dataset.wasClean !== 'true') {
      throw new Error(`page probe ended ${row.dataset.code} clean=${row.dataset.wasClean}`);
    }
    page.push(Number(row.dataset.elapsedMs));
    bare.push(await new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.onerror = () => reject(new Error('bare WebSocket failed'));
      ws.onopen = () => setTimeout(() => {
        ws.onclose = () => resolve(performance.now() - started);
        const started = performance.now();
        ws.close(1000, 'bare');
      }, settle);
    }));
  }
  return { page, bare };
})().then(done, (e) => done({ fatal: String((e && e.stack) || e) }));
"##;

/// The demo page's own close figure next to a bare `WebSocket`'s, closed in pairs.
#[derive(Debug, Clone, Default)]
pub struct PagePairs {
    /// `data-elapsed-ms` of each `#run-drain` row.
    pub page_ms: Vec<f64>,
    /// The bare `WebSocket` of the same pair.
    pub bare_ms: Vec<f64>,
}

/// What the browser measured.
#[derive(Debug, Clone)]
pub struct BrowserRun {
    /// `browserVersion` from the session.
    pub version: String,
    /// `elapsed_ms` of every probe that produced a report.
    pub elapsed_ms: Vec<f64>,
    /// Probes with `code == 1000` and `wasClean == true`.
    pub clean: usize,
    /// Probes that failed, with why (first few kept).
    pub errors: Vec<String>,
    /// Probes attempted.
    pub attempted: usize,
    /// The page against a bare `WebSocket`, or why that could not be measured.
    pub pairs: Result<PagePairs, String>,
}

/// Why the browser figure could not be produced even though the run did not break.
pub fn prerequisites(www: &Path) -> Result<(), String> {
    if !Path::new(CHROMEDRIVER).is_file() {
        return Err(format!("{CHROMEDRIVER} not found (run `make setup`)"));
    }
    let probe = www.join("pkg").join("wsclose_client.js");
    if !probe.is_file() {
        return Err(format!("{} not found (run `make build`)", probe.display()));
    }
    Ok(())
}

/// Runs `count` probes of `ws_url` from the demo page at `page_url`, in `browser` started by
/// `wsclose_check::browser::Driver` (fantoccini); in Chromium also the page/bare pairs.
pub async fn run(
    browser: Browser,
    page_url: &str,
    ws_url: &str,
    count: usize,
) -> anyhow::Result<BrowserRun> {
    let pairs = count.clamp(1, PAGE_PAIRS);
    let driver = Driver::start(browser).await?;
    let client = driver.connect().await?;
    // Generous: a probe normally takes a few ms, and each gives up after 5 s.
    let script_timeout = Duration::from_secs(30) + Duration::from_secs(6) * count as u32;
    let outcome = async {
        client
            .update_timeouts(TimeoutConfiguration::new(Some(script_timeout), None, None))
            .await?;
        client.goto(page_url).await?;
        let agent = client.execute("return navigator.userAgent", vec![]).await?;
        let result = client
            .execute_async(SCRIPT, vec![json!(ws_url), json!(count), json!(WARMUP)])
            .await?;
        let pairs = if browser == Browser::Chromium {
            client
                .execute_async(PAIRS_SCRIPT, vec![json!(ws_url), json!(pairs)])
                .await
                .map_err(|error| error.to_string())
        } else {
            Err("measured in Chromium only".to_owned())
        };
        anyhow::Ok((agent, result, pairs))
    }
    .await;
    // Close the browser whatever happened; the driver is killed on drop either way.
    let _ = client.close().await;
    let (agent, result, pairs) =
        outcome.with_context(|| format!("run the probes in {}", browser.name()))?;
    let version = match browser {
        Browser::Chromium => chromium_version(agent.as_str().unwrap_or_default()),
        _ => String::new(),
    };
    let mut run = parse(result, version, count)?;
    run.pairs = pairs.and_then(|value| parse_pairs(&value));
    Ok(run)
}

/// At most this many page/bare pairs (each takes the page's settle time, about 50 ms, plus two
/// closes).
pub const PAGE_PAIRS: usize = 40;

fn parse_pairs(value: &Value) -> Result<PagePairs, String> {
    if let Some(fatal) = value["fatal"].as_str() {
        return Err(format!("the page/bare script failed: {fatal}"));
    }
    let numbers = |key: &str| -> Result<Vec<f64>, String> {
        value[key]
            .as_array()
            .ok_or_else(|| format!("unexpected page/bare result {value}"))?
            .iter()
            .map(|ms| ms.as_f64().ok_or_else(|| format!("not a number: {ms}")))
            .collect()
    };
    Ok(PagePairs {
        page_ms: numbers("page")?,
        bare_ms: numbers("bare")?,
    })
}

/// `156.0.8078.73` from a user agent `… Chrome/156.0.8078.73 …` (headless says HeadlessChrome).
fn chromium_version(agent: &str) -> String {
    agent
        .split_whitespace()
        .find_map(|part| {
            part.split_once("Chrome/")
                .map(|(_, version)| version.to_owned())
        })
        .unwrap_or_else(|| "?".to_owned())
}

fn parse(value: Value, version: String, count: usize) -> anyhow::Result<BrowserRun> {
    if let Some(fatal) = value["fatal"].as_str() {
        bail!("the probe script failed: {fatal}");
    }
    let results = value["results"]
        .as_array()
        .with_context(|| format!("unexpected script result {value}"))?;
    let mut run = BrowserRun {
        version,
        elapsed_ms: Vec::with_capacity(count),
        clean: 0,
        errors: Vec::new(),
        attempted: results.len(),
        pairs: Err("not run".to_owned()),
    };
    for result in results {
        if result["ok"] == true {
            if let Some(ms) = result["elapsedMs"].as_f64() {
                run.elapsed_ms.push(ms);
            }
            if result["code"] == 1000 && result["wasClean"] == true {
                run.clean += 1;
            }
        } else if run.errors.len() < 5 {
            run.errors.push(format!(
                "{}: {}",
                result["kind"].as_str().unwrap_or("error"),
                result["error"].as_str().unwrap_or("?")
            ));
        }
    }
    Ok(run)
}

/// Phase 3: `measureClose` in headless Chromium, on the demo page `server` serves.
pub fn phase(
    options: &Options,
    runtime: &tokio::runtime::Runtime,
    server: &ServerProcess,
    ws_url: &str,
    report: &mut Report,
) {
    let name = "browser close p50 (headless Chromium)";
    let target = format!("≤ {TARGET_BROWSER_P50_MS} ms");
    let ready = if options.browser {
        prerequisites(&crate::www_dir())
    } else {
        Err("--no-browser".to_owned())
    };
    match ready {
        Ok(()) => {}
        Err(why) => {
            eprintln!("bench: [3/4] browser close latency skipped: {why}");
            report.figures.push(Figure::missing(
                "browser_close_p50",
                name,
                Verdict::Skip,
                format!("skipped: {why}"),
                target,
            ));
            report.details.browser = Some(BrowserDetails::Skipped {
                skipped: why.to_string(),
            });
            return;
        }
    };
    eprintln!(
        "bench: [3/4] browser close latency, {} probes in headless Chromium",
        options.browser_probes
    );
    let page = format!("http://{}/", server.addr());
    let run = runtime.block_on(run(
        Browser::Chromium,
        &page,
        ws_url,
        options.browser_probes,
    ));
    let run = match run {
        Ok(run) if !run.elapsed_ms.is_empty() => run,
        Ok(run) => {
            let error = anyhow::anyhow!("no probe succeeded: {}", run.errors.join("; "));
            return report.error("browser_close_p50", name, &error, &target);
        }
        Err(error) => return report.error("browser_close_p50", name, &error, &target),
    };
    report.browser = Samples::from_ms(run.elapsed_ms.iter().copied());
    let summary = report.browser.summary();
    report.figures.push(Figure::checked(
        "browser_close_p50",
        format!(
            "browser close p50 (Chromium {}, {} probes)",
            major(&run.version),
            summary.count
        ),
        summary.p50_ms,
        "ms",
        ms(summary.p50_ms),
        target,
        summary.p50_ms <= TARGET_BROWSER_P50_MS,
    ));
    report.figures.push(Figure::info(
        "browser_close_p99",
        "browser close p99",
        Some(summary.p99_ms),
        "ms",
        ms(summary.p99_ms),
    ));
    report.figures.push(Figure::all_of(
        "browser_clean",
        "browser closes clean (1000, wasClean)",
        run.clean,
        run.attempted,
        run.attempted,
    ));
    let pairs = page_against_bare(&run, report);
    let webkit = webkit_figure(
        runtime.block_on(run_webkit(&page, ws_url, options.browser_probes)),
        summary.p50_ms,
        report,
    );
    report.details.browser = Some(BrowserDetails::Measured(Box::new(BrowserMeasured {
        page_against_bare: pairs,
        webkit,
        browser_version: run.version,
        chromium: EngineRun {
            elapsed_ms: summary,
            clean: run.clean,
            attempted: run.attempted,
            errors: run.errors,
            samples_ms: report.browser.sorted_ms().to_vec(),
        },
        note:
            "performance.now() is coarsened to 100 µs in pages that are not cross-origin isolated",
    })));
}

/// The demo page's figure against a bare `WebSocket`'s (a context figure: the page must not
/// add its own drawing to the close it measures). Returns the details for `results.json`.
fn page_against_bare(run: &BrowserRun, report: &mut Report) -> Measured<PageAgainstBare> {
    let key = "browser_page_vs_bare";
    let name = "demo page close p50 / bare WebSocket p50 (pairs)";
    let pairs = match &run.pairs {
        Ok(pairs) if !pairs.page_ms.is_empty() && !pairs.bare_ms.is_empty() => pairs,
        Ok(_) => {
            report
                .figures
                .push(Figure::missing(key, name, Verdict::Skip, "no pair", ""));
            return Measured::Error {
                error: "no pair".into(),
            };
        }
        Err(why) => {
            report
                .figures
                .push(Figure::missing(key, name, Verdict::Skip, why.clone(), ""));
            return Measured::Error { error: why.clone() };
        }
    };
    let page = Samples::from_ms(pairs.page_ms.iter().copied());
    let bare = Samples::from_ms(pairs.bare_ms.iter().copied());
    let ratio = page.quantile(0.5) / bare.quantile(0.5);
    // The spread: each pair's own ratio, lowest and highest.
    let per_pair = Samples::from_ms(
        pairs
            .page_ms
            .iter()
            .zip(&pairs.bare_ms)
            .map(|(page, bare)| page / bare.max(0.1)),
    );
    report.figures.push(Figure::info(
        key,
        format!("{name}, {} pairs", pairs.page_ms.len()),
        Some(ratio),
        "x",
        format!(
            "{} / {} = {ratio:.2}x (pairs {:.2}–{:.2}x)",
            ms(page.quantile(0.5)),
            ms(bare.quantile(0.5)),
            per_pair.quantile(0.0),
            per_pair.quantile(1.0),
        ),
    ));
    Measured::Ok(PageAgainstBare {
        page_ms: page.summary(),
        bare_ms: bare.summary(),
        ratio_of_medians: ratio,
        page_samples_ms: pairs.page_ms.clone(),
        bare_samples_ms: pairs.bare_ms.clone(),
    })
}

/// The same probes in WebKitGTK, when its driver and Xvfb are installed.
async fn run_webkit(page_url: &str, ws_url: &str, count: usize) -> anyhow::Result<BrowserRun> {
    for needed in [WEBKITDRIVER, XVFB_RUN] {
        if !Path::new(needed).is_file() {
            bail!("{needed} not found (run `make setup`)");
        }
    }
    run(Browser::WebKit, page_url, ws_url, count).await
}

/// WebKit's close p50 next to Chromium's (`chromium_p50_ms`), as a context figure. Returns the
/// details for `results.json`.
fn webkit_figure(
    run: anyhow::Result<BrowserRun>,
    chromium_p50_ms: f64,
    report: &mut Report,
) -> Measured<EngineRun> {
    let key = "browser_close_p50_webkit";
    let failed = match run {
        Ok(run) if !run.elapsed_ms.is_empty() => Ok(run),
        Ok(run) => Err(format!("no probe succeeded: {}", run.errors.join("; "))),
        Err(error) => Err(format!("{error:#}")),
    };
    let run = match failed {
        Ok(run) => run,
        Err(why) => {
            let name = "browser close p50 (WebKitGTK)";
            report
                .figures
                .push(Figure::missing(key, name, Verdict::Skip, why.clone(), ""));
            return Measured::Error { error: why };
        }
    };
    let samples = Samples::from_ms(run.elapsed_ms.iter().copied());
    let summary = samples.summary();
    report.figures.push(Figure::info(
        key,
        format!("browser close p50 (WebKitGTK, {} probes)", summary.count),
        Some(summary.p50_ms),
        "ms",
        format!(
            "{} ({:.2}x Chromium's; WebKit's clock has 1 ms steps)",
            ms(summary.p50_ms),
            summary.p50_ms / chromium_p50_ms
        ),
    ));
    Measured::Ok(EngineRun {
        elapsed_ms: summary,
        clean: run.clean,
        attempted: run.attempted,
        errors: run.errors,
        samples_ms: samples.sorted_ms().to_vec(),
    })
}
