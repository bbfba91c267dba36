//! The demo page's results as data: statistics per URL, the browser the page runs in, and the
//! export for a bug report (JSON and Markdown). Pure Rust, so it is tested natively.
//!
//! The page's summary table and both exports are built from the same [`summarise`], so what a
//! person reads and what they paste into an issue cannot disagree.

use serde::Serialize;

use crate::explain::format_ms;

/// How many runs one click may ask for (`#runs`, `?runs=`).
pub const MAX_RUNS: u32 = 100;

/// A number of runs as typed into `#runs` or `?runs=`: whole, within 1..=[`MAX_RUNS`], and 1
/// when it is not a number.
pub fn runs_of(value: f64) -> u32 {
    if value.is_nan() {
        1
    } else {
        value.clamp(1.0, f64::from(MAX_RUNS)) as u32
    }
}

/// Median, p95 and range of a set of close times.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// How many samples.
    pub count: usize,
    /// The middle sample; the mean of the two middle ones for an even count.
    pub median_ms: f64,
    /// The nearest-rank 95th percentile: the smallest sample with at least 95 % of the samples
    /// at or below it. With fewer than 20 samples that is the largest.
    pub p95_ms: f64,
    /// The smallest sample.
    pub min_ms: f64,
    /// The largest sample.
    pub max_ms: f64,
}

impl Stats {
    /// The statistics of `samples`, or `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let mut sorted = samples.to_vec();
        sort_by(&mut sorted, |a, b| a.total_cmp(b).is_lt());
        let count = sorted.len();
        let (&min_ms, &max_ms) = (sorted.first()?, sorted.last()?);
        let median_ms = if count % 2 == 1 {
            sorted[count / 2]
        } else {
            (sorted[count / 2 - 1] + sorted[count / 2]) / 2.0
        };
        Some(Stats {
            count,
            median_ms,
            p95_ms: nearest_rank(&sorted, 95),
            min_ms,
            max_ms,
        })
    }
}

/// Sorts `items` by `less`, by insertion: the same order as `sort_unstable_by` for a total
/// order (equal items are indistinguishable), in far less code than core's sorts, which the
/// wasm would otherwise carry twice. A summary holds the runs of one page, so the quadratic
/// worst case stays small.
fn sort_by<T: Copy>(items: &mut [T], less: impl Fn(&T, &T) -> bool) {
    for i in 1..items.len() {
        let item = items[i];
        let mut j = i;
        while j > 0 && less(&item, &items[j - 1]) {
            items[j] = items[j - 1];
            j -= 1;
        }
        items[j] = item;
    }
}

/// The nearest-rank `percent`-th percentile of `sorted` (ascending, not empty).
fn nearest_rank(sorted: &[f64], percent: usize) -> f64 {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The browser engine, which decides the closing-handshake timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Chrome, Chromium, Edge, Opera: gives up on a Close after 60 s.
    Chromium,
    /// Firefox: gives up after 20 s (`network.websocket.timeout.close`).
    Gecko,
    /// Safari, Epiphany, MiniBrowser: gives up after 5 s, measured in WebKitGTK. Safari on
    /// macOS and iOS runs the same WebSocket code over Apple's network stack, not measured here.
    WebKit,
    /// Anything else.
    Unknown,
}

impl Engine {
    /// How long this engine waits for the server's Close before it reports 1006, when known.
    pub fn close_timeout_ms(self) -> Option<f64> {
        match self {
            Engine::Chromium => Some(60_000.0),
            Engine::Gecko => Some(20_000.0),
            Engine::WebKit => Some(5_000.0),
            Engine::Unknown => None,
        }
    }
}

/// The browser the page runs in, read from `navigator.userAgent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrowserInfo {
    /// The product as the user agent names it: `HeadlessChrome`, `Chrome`, `Firefox`, …
    pub name: String,
    /// Its version, such as `156.0.8078.73`; empty when the user agent has none.
    pub version: String,
    /// The engine.
    pub engine: Engine,
    /// The whole user agent string.
    pub user_agent: String,
}

impl BrowserInfo {
    /// Reads the product, version and engine out of a user agent string.
    pub fn from_user_agent(user_agent: &str) -> BrowserInfo {
        // Most specific first: Edge and Opera also say Chrome, Chrome also says Safari.
        const PRODUCTS: [(&str, Engine); 7] = [
            ("Edg", Engine::Chromium),
            ("OPR", Engine::Chromium),
            ("HeadlessChrome", Engine::Chromium),
            ("Chromium", Engine::Chromium),
            ("Chrome", Engine::Chromium),
            ("Firefox", Engine::Gecko),
            ("Version", Engine::WebKit),
        ];
        let tokens: Vec<(&str, &str)> = user_agent
            .split_whitespace()
            .filter_map(|token| token.split_once('/'))
            .collect();
        for (product, engine) in PRODUCTS {
            if let Some((_, version)) = tokens.iter().find(|(name, _)| *name == product) {
                let name = if product == "Version" {
                    "Safari"
                } else {
                    product
                };
                return BrowserInfo {
                    name: name.to_owned(),
                    version: (*version).to_owned(),
                    engine,
                    user_agent: user_agent.to_owned(),
                };
            }
        }
        BrowserInfo {
            name: "unknown browser".to_owned(),
            version: String::new(),
            engine: Engine::Unknown,
            user_agent: user_agent.to_owned(),
        }
    }

    /// `HeadlessChrome 156.0.8078.73`.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version).trim().to_owned()
    }
}

/// One probe as exported: every field the page shows, `None` where it does not apply.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedRun {
    /// The row number, `#` in the table.
    pub number: usize,
    /// The URL probed.
    pub url: String,
    /// `pending`, `done`, `error` or `cancelled`: the row's `data-state`.
    pub state: &'static str,
    /// From `close()` to the `close` event.
    pub elapsed_ms: Option<f64>,
    /// `CloseEvent.code`.
    pub code: Option<u16>,
    /// `CloseEvent.reason`.
    pub reason: Option<String>,
    /// `CloseEvent.wasClean`.
    pub was_clean: Option<bool>,
    /// From `new WebSocket()` to `open`.
    pub open_ms: Option<f64>,
    /// `WebSocket.protocol` once open (empty when the server chose none).
    pub protocol: Option<String>,
    /// `WebSocket.extensions` once open (empty when none were negotiated).
    pub extensions: Option<String>,
    /// Why a failed probe measured nothing.
    pub error: Option<String>,
}

/// The finished probes of one URL.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlSummary {
    /// The URL.
    pub url: String,
    /// Close times of its finished probes.
    #[serde(flatten)]
    pub stats: Stats,
    /// The distinct close codes seen, ascending.
    pub codes: Vec<u16>,
    /// How many of them closed with `wasClean == true`.
    pub clean: usize,
}

/// Per URL, in the order each URL was first probed: the statistics of its finished probes.
/// URLs with no finished probe are left out.
pub fn summarise(runs: &[ExportedRun]) -> Vec<UrlSummary> {
    let mut urls: Vec<&str> = Vec::new();
    for run in runs {
        if run.elapsed_ms.is_some() && !urls.contains(&run.url.as_str()) {
            urls.push(&run.url);
        }
    }
    urls.into_iter()
        .filter_map(|url| {
            let done: Vec<&ExportedRun> = runs
                .iter()
                .filter(|run| run.url == url && run.elapsed_ms.is_some())
                .collect();
            let times: Vec<f64> = done.iter().filter_map(|run| run.elapsed_ms).collect();
            Some(UrlSummary {
                url: url.to_owned(),
                stats: Stats::of(&times)?,
                codes: {
                    let mut codes: Vec<u16> = done.iter().filter_map(|run| run.code).collect();
                    sort_by(&mut codes, |a, b| a < b);
                    codes.dedup();
                    codes
                },
                clean: done
                    .iter()
                    .filter(|run| run.was_clean == Some(true))
                    .count(),
            })
        })
        .collect()
}

/// Everything the page measured, for a bug report.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    /// The page's own URL.
    pub page: String,
    /// When the export was made (ISO 8601).
    pub generated_at: String,
    /// The browser the page ran in.
    pub browser: BrowserInfo,
    /// Every row of the table, oldest first.
    pub runs: Vec<ExportedRun>,
    /// Per URL: see [`summarise`].
    pub summary: Vec<UrlSummary>,
}

impl Export {
    /// An export of `runs`, with their summary.
    pub fn new(
        page: String,
        generated_at: String,
        browser: BrowserInfo,
        runs: Vec<ExportedRun>,
    ) -> Export {
        let summary = summarise(&runs);
        Export {
            page,
            generated_at,
            browser,
            runs,
            summary,
        }
    }

    /// The export as Markdown: a header line, the summary, and every run, ready to paste
    /// into an issue.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "### `ws.close()` timings from wsclose\n\n{} ({}), {} probes, {}, page {}\n",
            cell(&self.browser.label()),
            code(&self.browser.user_agent),
            self.runs.len(),
            cell(&self.generated_at),
            code(&self.page),
        );
        if !self.summary.is_empty() {
            out.push_str(
                "\n| URL | runs | median | p95 | min | max | codes | clean |\n\
                 |---|---:|---:|---:|---:|---:|---|---:|\n",
            );
            for url in &self.summary {
                let codes: Vec<String> = url.codes.iter().map(u16::to_string).collect();
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {}/{} |\n",
                    code(&url.url),
                    url.stats.count,
                    format_ms(url.stats.median_ms),
                    format_ms(url.stats.p95_ms),
                    format_ms(url.stats.min_ms),
                    format_ms(url.stats.max_ms),
                    codes.join(", "),
                    url.clean,
                    url.stats.count,
                ));
            }
        }
        if !self.runs.is_empty() {
            out.push_str(
                "\n| # | URL | state | close after | code | reason | wasClean | open after | \
                 protocol | extensions |\n|---:|---|---|---:|---:|---|---|---:|---|---|\n",
            );
            for run in &self.runs {
                let text = |value: &Option<String>| match value.as_deref() {
                    None => "–".to_owned(),
                    Some("") => "(none)".to_owned(),
                    Some(value) => code(value),
                };
                let state = match &run.error {
                    Some(error) => format!("{}: {}", run.state, code(error)),
                    None => run.state.to_owned(),
                };
                out.push_str(&format!(
                    "| {} | {} | {state} | {} | {} | {} | {} | {} | {} | {} |\n",
                    run.number,
                    code(&run.url),
                    run.elapsed_ms.map_or("–".to_owned(), format_ms),
                    run.code.map_or("–".to_owned(), |code| code.to_string()),
                    text(&run.reason),
                    run.was_clean
                        .map_or("–".to_owned(), |clean| clean.to_string()),
                    run.open_ms.map_or("–".to_owned(), format_ms),
                    text(&run.protocol),
                    text(&run.extensions),
                ));
            }
        }
        out
    }
}

/// `text` made safe for one Markdown table cell: no pipe ends the cell, no newline the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `text` (a URL, a close reason, an error: anything a server or a link chose) as one inline
/// code span of a table cell, so that nothing in it renders: no link, image, HTML or @mention.
/// The fence is one backtick longer than the longest run of backticks inside (CommonMark), so
/// the text cannot close it early.
fn code(text: &str) -> String {
    let text = cell(text);
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_use_the_middle_and_the_nearest_rank() {
        let odd = Stats::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((odd.count, odd.median_ms, odd.p95_ms), (5, 3.0, 5.0));
        assert_eq!((odd.min_ms, odd.max_ms), (1.0, 5.0));
        let even = Stats::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(even.median_ms, 2.5);
        // 40 samples 1..=40: rank ceil(0.95 * 40) = 38.
        let many: Vec<f64> = (1..=40).map(f64::from).collect();
        assert_eq!(Stats::of(&many).unwrap().p95_ms, 38.0);
        // 20 samples: rank 19, the first one below the maximum.
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(Stats::of(&twenty).unwrap().p95_ms, 19.0);
        assert_eq!(Stats::of(&[7.0]).unwrap().p95_ms, 7.0);
        assert_eq!(Stats::of(&[]), None);
    }

    #[test]
    fn sort_by_sorts_as_the_standard_sort() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..60 {
            let mut times: Vec<f64> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Few distinct values, so that equal ones meet; some negative, a NaN.
                    match state % 23 {
                        0 => f64::NAN,
                        k => (k as f64 - 5.0) / 4.0,
                    }
                })
                .collect();
            let mut codes: Vec<u16> = times.iter().map(|t| t.to_bits() as u16 % 7).collect();
            let (mut want_times, mut want_codes) = (times.clone(), codes.clone());
            want_times.sort_unstable_by(f64::total_cmp);
            want_codes.sort_unstable();
            sort_by(&mut times, |a, b| a.total_cmp(b).is_lt());
            sort_by(&mut codes, |a, b| a < b);
            let bits = |v: &[f64]| v.iter().map(|t| t.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&times), bits(&want_times));
            assert_eq!(codes, want_codes);
        }
    }

    #[test]
    fn runs_are_whole_and_within_bounds() {
        assert_eq!(runs_of(5.0), 5);
        assert_eq!(runs_of(2.7), 2);
        assert_eq!(runs_of(0.0), 1);
        assert_eq!(runs_of(-3.0), 1);
        assert_eq!(runs_of(1e9), MAX_RUNS);
        assert_eq!(runs_of(f64::INFINITY), MAX_RUNS);
        assert_eq!(runs_of(f64::NAN), 1);
    }

    #[test]
    fn user_agents_name_the_browser_and_its_timeout() {
        let headless = BrowserInfo::from_user_agent(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             HeadlessChrome/156.0.8078.73 Safari/537.36",
        );
        assert_eq!(headless.label(), "HeadlessChrome 156.0.8078.73");
        assert_eq!(headless.engine.close_timeout_ms(), Some(60_000.0));
        let firefox = BrowserInfo::from_user_agent(
            "Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0",
        );
        assert_eq!(firefox.label(), "Firefox 153.0");
        assert_eq!(firefox.engine.close_timeout_ms(), Some(20_000.0));
        let edge = BrowserInfo::from_user_agent(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/140.0.0.0 Safari/537.36 Edg/140.0.0.0",
        );
        assert_eq!((edge.name.as_str(), edge.engine), ("Edg", Engine::Chromium));
        let safari = BrowserInfo::from_user_agent(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like \
             Gecko) Version/18.0 Safari/605.1.15",
        );
        assert_eq!(safari.label(), "Safari 18.0");
        assert_eq!(safari.engine.close_timeout_ms(), Some(5_000.0));
        assert_eq!(BrowserInfo::from_user_agent("curl").engine, Engine::Unknown);
    }

    fn done(number: usize, url: &str, ms: f64, code: u16, clean: bool) -> ExportedRun {
        ExportedRun {
            number,
            url: url.to_owned(),
            state: "done",
            elapsed_ms: Some(ms),
            code: Some(code),
            reason: Some("bye".to_owned()),
            was_clean: Some(clean),
            open_ms: Some(1.5),
            protocol: Some(String::new()),
            extensions: Some("permessage-deflate".to_owned()),
            error: None,
        }
    }

    fn export() -> Export {
        let runs = vec![
            done(1, "ws://h/ws/drain", 0.9, 1000, true),
            done(2, "ws://h/ws/no-drain", 60_000.0, 1006, false),
            done(3, "ws://h/ws/drain", 1.1, 1000, true),
            ExportedRun {
                number: 4,
                url: "ws://h/a|b".to_owned(),
                state: "error",
                elapsed_ms: None,
                code: None,
                reason: None,
                was_clean: None,
                open_ms: None,
                protocol: None,
                extensions: None,
                error: Some("connectFailed".to_owned()),
            },
        ];
        Export::new(
            "http://h/".to_owned(),
            "2026-12-02T08:00:00.000Z".to_owned(),
            BrowserInfo::from_user_agent("Firefox/153.0"),
            runs,
        )
    }

    #[test]
    fn the_summary_groups_finished_probes_by_url_in_first_seen_order() {
        let summary = export().summary;
        assert_eq!(
            summary.len(),
            2,
            "the failed URL has no figure: {summary:?}"
        );
        assert_eq!(summary[0].url, "ws://h/ws/drain");
        assert_eq!(
            (summary[0].stats.count, summary[0].stats.median_ms),
            (2, 1.0)
        );
        assert_eq!(
            (summary[0].codes.as_slice(), summary[0].clean),
            (&[1000][..], 2)
        );
        assert_eq!(summary[1].clean, 0);
    }

    #[test]
    fn the_json_has_the_documented_keys() {
        let value = serde_json::to_value(export()).unwrap();
        assert_eq!(value["browser"]["engine"], "gecko");
        assert_eq!(value["runs"][0]["elapsedMs"], 0.9);
        assert_eq!(value["runs"][0]["openMs"], 1.5);
        assert_eq!(value["runs"][3]["error"], "connectFailed");
        assert_eq!(value["summary"][0]["medianMs"], 1.0);
        assert_eq!(value["summary"][0]["p95Ms"], 1.1);
        assert_eq!(value["summary"][0]["count"], 2);
    }

    #[test]
    fn the_markdown_is_one_table_row_per_run_and_escapes_pipes() {
        let markdown = export().markdown();
        assert!(markdown.contains("Firefox 153.0"), "{markdown}");
        assert!(
            markdown.contains(
                "| `ws://h/ws/drain` | 2 | 1.00 ms | 1.10 ms | 0.90 ms | 1.10 ms | 1000 | 2/2 |"
            ),
            "{markdown}"
        );
        assert!(
            markdown.contains("| 2 | `ws://h/ws/no-drain` | done | 60.0 s | 1006 | `bye` | false | 1.50 ms | (none) | `permessage-deflate` |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("`ws://h/a\\|b` | error: `connectFailed` |"),
            "{markdown}"
        );
        let rows = markdown
            .lines()
            .filter(|line| line.starts_with("| "))
            .count();
        assert_eq!(
            rows,
            2 + 2 + 4,
            "two header rows, two URLs, four runs:\n{markdown}"
        );
    }

    /// What a server or a link chooses (URL, close reason) lands inside a code span whose fence
    /// it cannot close, so a pasted report shows it as text: no link, image, HTML or @mention.
    #[test]
    fn the_markdown_renders_nothing_a_server_or_a_link_chose() {
        let mut run = done(1, "ws://h/`x`/ws", 1.0, 1000, true);
        run.reason = Some(
            "[click](http://evil.example) ![i](http://evil.example/i.png) @octocat <b>".to_owned(),
        );
        let markdown = Export::new(
            "http://h/?url=`".to_owned(),
            "2026-12-02T08:00:00.000Z".to_owned(),
            BrowserInfo::from_user_agent("Firefox/153.0"),
            vec![run],
        )
        .markdown();
        assert!(
            markdown.contains("| 1 | ``ws://h/`x`/ws`` |"),
            "the URL's backticks need a longer fence:\n{markdown}"
        );
        assert!(
            markdown.contains(
                "| `[click](http://evil.example) ![i](http://evil.example/i.png) @octocat <b>` |"
            ),
            "the reason is code, not Markdown:\n{markdown}"
        );
        assert!(
            markdown.contains("page `` http://h/?url=` ``"),
            "{markdown}"
        );
    }

    #[test]
    fn a_code_span_fence_is_longer_than_any_backtick_run_inside() {
        assert_eq!(code("plain"), "`plain`");
        assert_eq!(code("a``b"), "```a``b```");
        assert_eq!(code("`edge`"), "`` `edge` ``");
        assert_eq!(code("a|b\nc"), "`a\\|b c`");
    }
}
