//! The demo page's timeline: one horizontal bar per probe on a log scale from 0.1 ms to
//! 100 s, so a 1 ms close and a 60 s close both read well. Drawn as SVG through web-sys.

use wasm_bindgen::JsValue;
use web_sys::{Document, Element};

use crate::explain::format_ms;

const SVG_NS: &str = "http://www.w3.org/2000/svg";

/// Width of the drawing in SVG units (it scales to the page with `viewBox`).
const WIDTH: f64 = 760.0;
/// Room for the bar labels on the left.
const LEFT: f64 = 190.0;
/// Room on the right so the last tick label fits.
const RIGHT: f64 = 24.0;
/// Room above the bars for the timeout markers' labels.
const TOP: f64 = 34.0;
/// Room below the bars for the axis labels.
const BOTTOM: f64 = 28.0;
/// Height of one bar row, and of the bar inside it.
const ROW: f64 = 26.0;
const BAR: f64 = 16.0;
/// The axis runs over these decades: 10^-1 ms = 0.1 ms … 10^5 ms = 100 s.
const FIRST_DECADE: i32 = -1;
const LAST_DECADE: i32 = 5;
/// The most bars drawn; older probes stay in the table.
pub(crate) const MAX_BARS: usize = 14;

/// How a bar is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BarKind {
    /// Still waiting for `close`; grows with the live timer.
    Pending,
    /// Closed with `wasClean == true`.
    Clean,
    /// Closed with `wasClean == false`.
    Unclean,
    /// The probe failed before it could measure anything.
    Failed,
}

impl BarKind {
    fn class(self) -> &'static str {
        match self {
            BarKind::Pending => "bar pending",
            BarKind::Clean => "bar clean",
            BarKind::Unclean => "bar unclean",
            BarKind::Failed => "bar failed",
        }
    }
}

/// One bar of the chart.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bar {
    /// Left of the bar, such as `#2 /ws/no-drain`.
    pub label: String,
    /// Length of the bar, in milliseconds.
    pub ms: f64,
    /// Shown at the end of the bar.
    pub value: String,
    /// Colour.
    pub kind: BarKind,
}

/// The x coordinate of `ms` on the log axis, clamped to the axis.
pub(crate) fn x_of(ms: f64) -> f64 {
    let decades = f64::from(LAST_DECADE - FIRST_DECADE);
    let lo = f64::from(FIRST_DECADE);
    let position = (ms.max(1e-9).log10() - lo).clamp(0.0, decades) / decades;
    LEFT + position * (WIDTH - LEFT - RIGHT)
}

/// The label of one decade tick: `0.1 ms`, `1 ms`, … `100 s`.
fn tick_label(decade: i32) -> String {
    match decade {
        -1 => "0.1 ms".to_owned(),
        0..=2 => format!("{} ms", 10_i64.pow(decade as u32)),
        _ => format!("{} s", 10_i64.pow((decade - 3) as u32)),
    }
}

/// Replaces the contents of `container` with a chart of `bars`.
pub(crate) fn render(
    document: &Document,
    container: &Element,
    bars: &[Bar],
) -> Result<(), JsValue> {
    let rows = bars.len().max(1) as f64;
    let height = TOP + rows * ROW + BOTTOM;
    let plot_bottom = TOP + rows * ROW;
    let svg = element(
        document,
        "svg",
        &[
            ("viewBox", &format!("0 0 {WIDTH} {height}")),
            ("class", "timeline"),
            ("role", "img"),
            (
                "aria-label",
                "Time from close() to the close event, per probe, on a log scale",
            ),
        ],
    )?;

    for decade in FIRST_DECADE..=LAST_DECADE {
        let x = x_of(10_f64.powi(decade)).to_string();
        add(
            &svg,
            element(
                document,
                "line",
                &[
                    ("x1", &x),
                    ("x2", &x),
                    ("y1", &(TOP - 4.0).to_string()),
                    ("y2", &plot_bottom.to_string()),
                    ("class", "grid"),
                ],
            )?,
        )?;
        add(
            &svg,
            text(
                document,
                &tick_label(decade),
                &[
                    ("x", &x),
                    ("y", &(plot_bottom + 18.0).to_string()),
                    ("class", "tick"),
                    ("text-anchor", "middle"),
                ],
            )?,
        )?;
    }

    // The browsers' closing-handshake timeouts: where the no-drain bars end.
    for (ms, label, y) in [
        (20_000.0, "Firefox timeout 20 s", 12.0),
        (60_000.0, "Chromium timeout 60 s", 26.0),
    ] {
        let x = x_of(ms);
        add(
            &svg,
            element(
                document,
                "line",
                &[
                    ("x1", &x.to_string()),
                    ("x2", &x.to_string()),
                    ("y1", &(y + 3.0).to_string()),
                    ("y2", &plot_bottom.to_string()),
                    ("class", "marker"),
                ],
            )?,
        )?;
        add(
            &svg,
            text(
                document,
                label,
                &[
                    ("x", &(x - 4.0).to_string()),
                    ("y", &y.to_string()),
                    ("class", "marker-label"),
                    ("text-anchor", "end"),
                ],
            )?,
        )?;
    }

    if bars.is_empty() {
        add(
            &svg,
            text(
                document,
                "No probes yet. Press a button above.",
                &[
                    ("x", &x_of(10.0).to_string()),
                    ("y", &(TOP + ROW / 2.0 + 4.0).to_string()),
                    ("class", "empty"),
                ],
            )?,
        )?;
    }

    for (i, bar) in bars.iter().enumerate() {
        let y = TOP + i as f64 * ROW + (ROW - BAR) / 2.0;
        let end = x_of(bar.ms).max(LEFT + 2.0);
        add(
            &svg,
            text(
                document,
                &bar.label,
                &[
                    ("x", &(LEFT - 10.0).to_string()),
                    ("y", &(y + BAR - 4.0).to_string()),
                    ("class", "bar-label"),
                    ("text-anchor", "end"),
                ],
            )?,
        )?;
        add(
            &svg,
            element(
                document,
                "rect",
                &[
                    ("x", &LEFT.to_string()),
                    ("y", &y.to_string()),
                    ("width", &(end - LEFT).to_string()),
                    ("height", &BAR.to_string()),
                    ("rx", "3"),
                    ("class", bar.kind.class()),
                ],
            )?,
        )?;
        // The value goes after the bar, or inside it when the bar reaches the right edge.
        let inside = end > WIDTH - RIGHT - 150.0;
        let (x, anchor, class) = if inside {
            (end - 6.0, "end", "value inside")
        } else {
            (end + 6.0, "start", "value")
        };
        add(
            &svg,
            text(
                document,
                &bar.value,
                &[
                    ("x", &x.to_string()),
                    ("y", &(y + BAR - 4.0).to_string()),
                    ("class", class),
                    ("text-anchor", anchor),
                ],
            )?,
        )?;
    }

    container.set_text_content(None);
    container.append_child(&svg)?;
    Ok(())
}

/// The text after a finished bar, such as `0.91 ms · 1000 clean`.
pub(crate) fn done_value(ms: f64, code: u16, was_clean: bool) -> String {
    format!(
        "{} · {code} {}",
        format_ms(ms),
        if was_clean { "clean" } else { "not clean" }
    )
}

/// Appends `child` to `parent` and returns it.
fn add(parent: &Element, child: Element) -> Result<Element, JsValue> {
    parent.append_child(&child)?;
    Ok(child)
}

/// A new SVG element with the given attributes.
fn element(
    document: &Document,
    tag: &str,
    attributes: &[(&str, &str)],
) -> Result<Element, JsValue> {
    let element = document.create_element_ns(Some(SVG_NS), tag)?;
    for (name, value) in attributes {
        element.set_attribute(name, value)?;
    }
    Ok(element)
}

/// A new SVG `<text>` element holding `content`.
fn text(
    document: &Document,
    content: &str,
    attributes: &[(&str, &str)],
) -> Result<Element, JsValue> {
    let element = element(document, "text", attributes)?;
    element.set_text_content(Some(content));
    Ok(element)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_is_logarithmic_and_clamped() {
        let decade = (WIDTH - LEFT - RIGHT) / 6.0;
        assert!((x_of(0.1) - LEFT).abs() < 1e-9);
        assert!((x_of(1.0) - (LEFT + decade)).abs() < 1e-9);
        assert!((x_of(1_000.0) - (LEFT + 4.0 * decade)).abs() < 1e-9);
        assert!((x_of(100_000.0) - (WIDTH - RIGHT)).abs() < 1e-9);
        assert_eq!(x_of(0.0), LEFT);
        assert_eq!(x_of(1e9), WIDTH - RIGHT);
    }

    #[test]
    fn ticks_read_as_durations() {
        let labels: Vec<String> = (FIRST_DECADE..=LAST_DECADE).map(tick_label).collect();
        assert_eq!(
            labels,
            ["0.1 ms", "1 ms", "10 ms", "100 ms", "1 s", "10 s", "100 s"]
        );
    }
}
