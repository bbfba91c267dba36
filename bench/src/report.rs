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
    /// Everything else for `results.json`.
    pub details: crate::results::Details,
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
    /// Server RSS at every scale step, one series per server.
    pub rss_series: Vec<RssSeries>,
}

/// One server's RSS at the scale steps, with the line fitted to them.
#[derive(Debug, Clone)]
pub struct RssSeries {
    /// The server.
    pub name: String,
    /// `(connections, RSS MiB)` per step.
    pub points: Vec<(f64, f64)>,
    /// RSS in KiB against connections, fitted to the steps below the largest.
    pub fit: Option<crate::fit::Line>,
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

    /// A share that must be all: `done` of `of` (printed with its percentage, the value), with
    /// the target 100%, met when every one of `expected` was done.
    pub fn all_of(
        key: &'static str,
        name: &str,
        done: usize,
        of: usize,
        expected: usize,
    ) -> Figure {
        let pct = 100.0 * done as f64 / of.max(1) as f64;
        Figure::checked(
            key,
            name,
            pct,
            "%",
            format!("{done}/{of} ({pct:.1}%)"),
            "100%",
            done == of && of == expected,
        )
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

/// Line colours of the RSS plot's series, in order.
const SERIES_COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];
/// Radius of a measured point, px.
const POINT_RADIUS: i32 = 4;
/// Headroom above the highest point or line, as a factor.
const HEADROOM: f64 = 1.1;

/// Draws every server's RSS at the scale steps (points joined by a thin line) and the line
/// fitted to the steps below the largest (thick, extended to the largest).
pub fn plot_rss(path: &Path, title: &str, series: &[RssSeries]) -> anyhow::Result<()> {
    let max_connections = series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(n, _)| n))
        .fold(1.0_f64, f64::max);
    let fit_top = |s: &RssSeries| s.fit.map_or(0.0, |fit| fit.at(max_connections) / 1024.0);
    let max_mib = series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(_, mib)| mib).chain([fit_top(s)]))
        .fold(1.0_f64, f64::max)
        * HEADROOM;
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_connections * HEADROOM, 0.0..max_mib)
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
    for (s, color) in series.iter().zip(SERIES_COLORS.iter().cycle().copied()) {
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(1),
            ))
            .map_err(plot_error)?;
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|&point| Circle::new(point, POINT_RADIUS, color.filled())),
            )
            .map_err(plot_error)?
            .label(match s.fit {
                Some(fit) => format!(
                    "{}: measured; fit {:.2} KiB/conn + {:.1} MiB",
                    s.name,
                    fit.slope,
                    fit.intercept / 1024.0
                ),
                None => format!("{}: measured", s.name),
            })
            .legend(move |(x, y)| Circle::new((x + 12, y), POINT_RADIUS, color.filled()));
        if let Some(fit) = s.fit {
            let line = [0.0, max_connections].map(|n| (n, fit.at(n) / 1024.0));
            chart
                .draw_series(LineSeries::new(line, color.mix(0.5).stroke_width(3)))
                .map_err(plot_error)?;
        }
    }
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

/// Draws the latency CDF and the RSS plot; a failed plot is reported, not fatal.
pub fn plot(report: &Report, cdf_path: &Path, rss_path: &Path) {
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
    if !report.rss_series.is_empty() {
        let title = "server RSS vs open connections, lines fitted below the largest step";
        if let Err(error) = plot_rss(rss_path, title, &report.rss_series) {
            eprintln!("bench: {error:#}");
        }
    }
}
