//! The printed table, `results.json`, and the SVG plots.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;
use serde::Serialize;

use crate::stats::Samples;

/// Everything measured so far: the table rows, the details for `results.json`, and the
/// samples for the CDF plot.
#[derive(Default)]
pub struct Report {
    /// The table rows, in order.
    pub figures: Vec<Figure>,
    /// Everything else for `results.json`, by key.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Loopback TCP round trips, echo on the same thread.
    pub rtt: Samples,
    /// Loopback TCP round trips, echo on another thread.
    pub rtt_threads: Samples,
    /// Close sent → the server's Close.
    pub close: Samples,
    /// Close sent → the server's TCP FIN.
    pub close_to_fin: Samples,
    /// `close()` → `close` in the browser.
    pub browser: Samples,
    /// The storm's per-connection times.
    pub storm: Samples,
    /// `(connections open, server RSS KiB)` during the scale ramp.
    pub rss_curve: Vec<(usize, u64)>,
}

impl Report {
    /// Records that the measurement `key` failed with `error`.
    pub fn error(&mut self, key: &'static str, name: &str, error: &anyhow::Error, target: &str) {
        self.figures.push(Figure::missing(
            key,
            name,
            Verdict::Error,
            format!("{error:#}"),
            target,
        ));
    }
}

/// How a figure compares with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Meets the target.
    Pass,
    /// Misses the target (reported, not an error).
    Miss,
    /// No target: context only.
    Info,
    /// Not measured, for a reason given in the result.
    Skip,
    /// The measurement itself failed.
    Error,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::Info => "",
            Verdict::Skip => "SKIP",
            Verdict::Error => "ERROR",
        }
    }

    /// `Pass` when `ok`, else `Miss`.
    pub fn from(ok: bool) -> Verdict {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Miss
        }
    }
}

/// One row of the table and of `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable machine-readable key, e.g. `close_handshake_p50`.
    pub key: &'static str,
    /// What is measured, as printed.
    pub name: String,
    /// The number, in `unit`, when there is one.
    pub value: Option<f64>,
    /// Unit of `value`.
    pub unit: &'static str,
    /// The result as printed.
    pub result: String,
    /// The target as printed; empty for context figures.
    pub target: String,
    /// How the result compares with the target.
    pub verdict: Verdict,
}

impl Figure {
    /// A figure with a target.
    pub fn checked(
        key: &'static str,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        result: impl Into<String>,
        target: impl Into<String>,
        ok: bool,
    ) -> Figure {
        Figure {
            key,
            name: name.into(),
            value: Some(value).filter(|v| v.is_finite()),
            unit,
            result: result.into(),
            target: target.into(),
            verdict: Verdict::from(ok),
        }
    }

    /// A context figure without a target.
    pub fn info(
        key: &'static str,
        name: impl Into<String>,
        value: Option<f64>,
        unit: &'static str,
        result: impl Into<String>,
    ) -> Figure {
        Figure {
            key,
            name: name.into(),
            value: value.filter(|v| v.is_finite()),
            unit,
            result: result.into(),
            target: String::new(),
            verdict: Verdict::Info,
        }
    }

    /// A figure that could not be produced.
    pub fn missing(
        key: &'static str,
        name: impl Into<String>,
        verdict: Verdict,
        why: impl Into<String>,
        target: impl Into<String>,
    ) -> Figure {
        Figure {
            key,
            name: name.into(),
            value: None,
            unit: "",
            result: why.into(),
            target: target.into(),
            verdict,
        }
    }
}

/// Formats milliseconds with three decimals.
pub fn ms(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.3} ms")
    } else {
        "n/a".to_owned()
    }
}

/// The table as printed: one figure per row, target and verdict on the right.
pub fn table(figures: &[Figure]) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::ASCII_MARKDOWN)
        .set_header(["figure", "result", "target", ""]);
    for figure in figures {
        table.add_row([
            figure.name.as_str(),
            figure.result.as_str(),
            figure.target.as_str(),
            figure.verdict.label(),
        ]);
    }
    table.to_string() + "\n"
}

/// One named series for the CDF plot.
pub struct CdfSeries<'a> {
    /// Legend text.
    pub label: String,
    /// The samples (ms).
    pub samples: &'a Samples,
    /// Line colour.
    pub color: RGBColor,
}

/// Draws the latency CDFs on a log-scaled millisecond axis.
pub fn plot_cdf(path: &Path, title: &str, series: &[CdfSeries<'_>]) -> anyhow::Result<()> {
    let series: Vec<&CdfSeries<'_>> = series.iter().filter(|s| !s.samples.is_empty()).collect();
    let positive = |v: &f64| *v > 0.0;
    let min = series
        .iter()
        .filter_map(|s| s.samples.sorted_ms().iter().copied().find(positive))
        .fold(f64::INFINITY, f64::min);
    let max = series
        .iter()
        .filter_map(|s| s.samples.sorted_ms().last().copied())
        .fold(0.0_f64, f64::max);
    let (low, high) = if min.is_finite() && max > 0.0 {
        (
            10f64.powf(min.log10().floor()),
            10f64.powf(max.log10().ceil()),
        )
    } else {
        (0.01, 1000.0)
    };
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(60)
        .build_cartesian_2d((low..high).log_scale(), 0.0..1.0)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("milliseconds (log scale)")
        .y_desc("fraction of samples ≤ x")
        .light_line_style(RGBColor(238, 238, 238))
        .x_label_formatter(&|v| format_axis_ms(*v))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()
        .map_err(plot_error)?;
    for s in &series {
        let points: Vec<(f64, f64)> = s
            .samples
            .cdf(2_000)
            .into_iter()
            .map(|(x, y)| (x.max(low), y))
            .collect();
        let color = s.color;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// Draws server RSS against open connections, with the 8 KiB-per-connection budget.
pub fn plot_rss(
    path: &Path,
    title: &str,
    curve: &[(usize, u64)],
    budget_kib_per_connection: f64,
) -> anyhow::Result<()> {
    let max_connections = curve.iter().map(|&(n, _)| n).max().unwrap_or(1).max(1) as f64;
    let baseline_mib = curve.first().map_or(0.0, |&(_, kib)| kib as f64 / 1024.0);
    let budget_top = baseline_mib + max_connections * budget_kib_per_connection / 1024.0;
    let max_mib = curve
        .iter()
        .map(|&(_, kib)| kib as f64 / 1024.0)
        .fold(budget_top, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_connections, 0.0..max_mib)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("open connections")
        .y_desc("server RSS (MiB)")
        .light_line_style(RGBColor(238, 238, 238))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_error)?;
    let blue = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(
            curve
                .iter()
                .map(|&(n, kib)| (n as f64, kib as f64 / 1024.0)),
            blue.stroke_width(2),
        ))
        .map_err(plot_error)?
        .label("measured (VmRSS)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], blue.stroke_width(2)));
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(LineSeries::new(
            [(0.0, baseline_mib), (max_connections, budget_top)],
            grey.stroke_width(1),
        ))
        .map_err(plot_error)?
        .label(format!(
            "budget: {budget_kib_per_connection} KiB per connection"
        ))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], grey.stroke_width(1)));
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn format_axis_ms(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').to_owned()
    }
}

/// Draws the series legend of `chart` in the style both plots share.
fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(plot_error)
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plot: {error}")
}

/// Draws the latency CDF and the RSS curve; a failed plot is reported, not fatal.
pub fn plot(connections: usize, report: &Report, cdf_path: &Path, rss_path: &Path) {
    let series = [
        CdfSeries {
            label: "loopback TCP RTT (2-byte ping-pong, same thread)".into(),
            samples: &report.rtt,
            color: RGBColor(60, 60, 60),
        },
        CdfSeries {
            label: "loopback TCP RTT, echo on another thread".into(),
            samples: &report.rtt_threads,
            color: RGBColor(170, 170, 170),
        },
        CdfSeries {
            label: "Close sent → server's Close (tokio-tungstenite)".into(),
            samples: &report.close,
            color: RGBColor(31, 119, 180),
        },
        CdfSeries {
            label: "Close sent → server's TCP FIN".into(),
            samples: &report.close_to_fin,
            color: RGBColor(148, 103, 189),
        },
        CdfSeries {
            label: "browser: close() → close event (headless Chromium)".into(),
            samples: &report.browser,
            color: RGBColor(44, 160, 44),
        },
        CdfSeries {
            label: format!(
                "close storm, {} at once: signal → server's Close",
                report.storm.sorted_ms().len()
            ),
            samples: &report.storm,
            color: RGBColor(214, 39, 40),
        },
    ];
    if let Err(error) = plot_cdf(cdf_path, "wsclose close latency (CDF)", &series) {
        eprintln!("bench: {error:#}");
    }
    if !report.rss_curve.is_empty() {
        let title = format!(
            "wsclose-server RSS vs open /ws/drain connections ({})",
            connections
        );
        if let Err(error) = plot_rss(rss_path, &title, &report.rss_curve, crate::TARGET_RSS_KIB) {
            eprintln!("bench: {error:#}");
        }
    }
}
