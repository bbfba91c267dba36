//! `target/bench/results.json`, typed: its shape is the contract (`shared/DESIGN.md`), so
//! every object in it is a struct here, and a field that a phase did not fill is left out.

use serde::Serialize;

use crate::limit::{AtMax, LimitRun, Projection, Step};
use crate::peers::PeerResult;
use crate::report::Figure;
use crate::stats::Summary;
use crate::Machine;

/// The whole file.
#[derive(Debug, Serialize)]
pub struct Results<'a> {
    /// The machine the run was on.
    pub machine: &'a Machine,
    /// The command line, as one string.
    pub command: String,
    /// `--quick`.
    pub quick: bool,
    /// The run's length, seconds.
    pub elapsed_s: f64,
    /// The flags the demo server ran with.
    pub server_args: Vec<String>,
    /// The targets the table's figures are checked against.
    pub targets: Targets,
    /// The table's rows.
    pub figures: &'a [Figure],
    /// Everything else the phases measured.
    pub details: &'a Details,
    /// One entry per peer server.
    pub peers: &'a [PeerResult],
    /// The scale phase's setting, when it ran.
    pub scale_limit: Option<ScaleLimit<'a>>,
    /// Per server, its largest step.
    pub scale_max: Option<&'a [AtMax]>,
    /// Every server at every step.
    pub scale_steps: Option<&'a [Step]>,
    /// Per server, the fits and projections.
    pub projection: Option<&'a [Projection]>,
}

impl<'a> Results<'a> {
    /// The scale phase's part of the file, from its run (`None`: it did not run).
    pub fn scale(mut self, run: Option<&'a LimitRun>) -> Self {
        self.scale_limit = run.map(|run| ScaleLimit {
            hard_nofile: run.hard_nofile,
            fd_margin: run.fd_margin,
            steps: &run.steps,
            connections_per_client_process: crate::limit::CONNECTIONS_PER_CLIENT,
            page_size: run.page_size,
            close_timeout_ms: run.close_timeout_ms,
            skipped: &run.skipped,
        });
        self.scale_max = run.map(|run| run.at_max.as_slice());
        self.scale_steps = run.map(|run| run.results.as_slice());
        self.projection = run.map(|run| run.projection.as_slice());
        self
    }
}

/// The targets, as `make bench` checks them.
#[derive(Debug, Serialize)]
pub struct Targets {
    /// Close handshake p50, ms.
    pub close_handshake_p50_ms: f64,
    /// Close handshake p50 over the loopback round trip.
    pub close_to_rtt_ratio: f64,
    /// Browser close p50, ms.
    pub browser_close_p50_ms: f64,
    /// RSS per idle connection, KiB.
    pub rss_per_connection_kib: f64,
    /// The close storm, ms.
    pub close_storm_ms: f64,
    /// Clean closes in the storm, percent.
    pub close_storm_clean_pct: f64,
}

/// The scale phase's setting.
#[derive(Debug, Serialize)]
pub struct ScaleLimit<'a> {
    /// The hard `RLIMIT_NOFILE`.
    pub hard_nofile: u64,
    /// Descriptors kept free below it.
    pub fd_margin: u64,
    /// The steps.
    pub steps: &'a [usize],
    /// Connections one client process holds.
    pub connections_per_client_process: usize,
    /// The page size sockstat counts in, bytes.
    pub page_size: u64,
    /// wsclose's `close_timeout`, ms.
    pub close_timeout_ms: f64,
    /// Servers not measured, with why.
    pub skipped: &'a [String],
}

/// What the phases measured besides the table, each left out when its phase did not run.
#[derive(Debug, Default, Serialize)]
pub struct Details {
    /// Loopback TCP round trips, echo on the same thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_rtt: Option<Summary>,
    /// Loopback TCP round trips, echo on another thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_rtt_other_thread: Option<Summary>,
    /// The close handshake against the demo server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_handshake: Option<CloseHandshake>,
    /// The browser's close latency, or why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<BrowserDetails>,
    /// Peer servers that could not run, with why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers_skipped: Option<Vec<String>>,
}

/// The close handshake's timings.
#[derive(Debug, Serialize)]
pub struct CloseHandshake {
    /// Close sent → the server's Close.
    pub to_close_frame: Summary,
    /// Close sent → the server's FIN.
    pub to_fin: Summary,
    /// Every sample, sorted, ms.
    pub samples_ms: Vec<f64>,
}

/// The browser phase: measured, or skipped with why.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BrowserDetails {
    /// Why it did not run.
    Skipped {
        /// The reason.
        skipped: String,
    },
    /// What it measured.
    Measured(Box<BrowserMeasured>),
}

/// Chromium's close latency, and what goes with it.
#[derive(Debug, Serialize)]
pub struct BrowserMeasured {
    /// The demo page against a bare `WebSocket`.
    pub page_against_bare: Measured<PageAgainstBare>,
    /// The same probes in WebKitGTK.
    pub webkit: Measured<EngineRun>,
    /// Chromium's version.
    pub browser_version: String,
    /// Chromium's probes.
    #[serde(flatten)]
    pub chromium: EngineRun,
    /// How precise the page's clock is.
    pub note: &'static str,
}

/// One engine's probes.
#[derive(Debug, Serialize)]
pub struct EngineRun {
    /// The close latencies, summarised.
    pub elapsed_ms: Summary,
    /// Probes that closed with 1000, `wasClean`.
    pub clean: usize,
    /// Probes attempted.
    pub attempted: usize,
    /// Why probes failed (the first few).
    pub errors: Vec<String>,
    /// Every sample, sorted, ms.
    pub samples_ms: Vec<f64>,
}

/// The page's close p50 against a bare `WebSocket`'s, in pairs.
#[derive(Debug, Serialize)]
pub struct PageAgainstBare {
    /// The demo page's closes.
    pub page_ms: Summary,
    /// The bare `WebSocket`'s.
    pub bare_ms: Summary,
    /// p50 over p50.
    pub ratio_of_medians: f64,
    /// The page's samples, in pair order, ms.
    pub page_samples_ms: Vec<f64>,
    /// The bare samples, in pair order, ms.
    pub bare_samples_ms: Vec<f64>,
}

/// A measurement, or the error that stopped it (`{"error": "…"}`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Measured<T> {
    /// What was measured.
    Ok(T),
    /// Why nothing was.
    Error {
        /// The reason.
        error: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Samples;

    /// The keys the untyped map had, for each shape a phase can leave: the browser skipped, or
    /// measured with WebKit failed; phases that did not run are absent.
    #[test]
    fn details_keep_their_keys() {
        let summary = || Samples::from_ms([1.0, 2.0]).summary();
        let skipped = Details {
            browser: Some(BrowserDetails::Skipped {
                skipped: "no chromium".into(),
            }),
            ..Details::default()
        };
        assert_eq!(
            serde_json::to_value(&skipped).unwrap(),
            serde_json::json!({ "browser": { "skipped": "no chromium" } })
        );
        let measured = Details {
            tcp_rtt: Some(summary()),
            browser: Some(BrowserDetails::Measured(Box::new(BrowserMeasured {
                page_against_bare: Measured::Error {
                    error: "no pair".into(),
                },
                webkit: Measured::Error {
                    error: "no driver".into(),
                },
                browser_version: "156".into(),
                chromium: EngineRun {
                    elapsed_ms: summary(),
                    clean: 2,
                    attempted: 2,
                    errors: Vec::new(),
                    samples_ms: vec![1.0, 2.0],
                },
                note: "n",
            }))),
            ..Details::default()
        };
        let json = serde_json::to_value(&measured).unwrap();
        let browser = json["browser"].as_object().unwrap();
        let keys: Vec<&str> = browser.keys().map(String::as_str).collect();
        for key in [
            "page_against_bare",
            "webkit",
            "browser_version",
            "elapsed_ms",
            "clean",
            "attempted",
            "errors",
            "samples_ms",
            "note",
        ] {
            assert!(keys.contains(&key), "no {key} in {keys:?}");
        }
        assert_eq!(
            browser["webkit"],
            serde_json::json!({ "error": "no driver" })
        );
        assert_eq!(json["tcp_rtt"]["count"], 2);
        assert!(json.get("close_handshake").is_none());
    }
}
