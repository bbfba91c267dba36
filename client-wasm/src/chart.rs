//! The demo page's timeline: one horizontal bar per probe on a log scale from 0.1 ms to
//! 100 s, so a 1 ms close and a 60 s close both read well. Drawn as SVG through web-sys, and
//! updated in place while bars grow ([`Chart`]).

use wasm_bindgen::JsValue;
use web_sys::{Document, Element};

use crate::explain::format_ms;
use crate::number::shortest;

const SVG_NS: &str = "http://www.w3.org/2000/svg";

/// Width of the drawing in SVG units (it scales to the page with `viewBox`).
const WIDTH: f64 = 760.0;
/// Room for the bar labels on the left.
const LEFT: f64 = 190.0;
/// Room on the right so the last tick label fits.
const RIGHT: f64 = 24.0;
/// Room above the bars for the timeout markers' labels.
const TOP: f64 = 48.0;
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

/// The browsers' closing-handshake timeouts, drawn as dashed markers: where the no-drain
/// bars end. The one of the browser the page runs in is marked "(this browser)".
const TIMEOUT_MARKERS: [(f64, &str, f64); 3] = [
    (5_000.0, "WebKit timeout 5 s", 12.0),
    (20_000.0, "Firefox timeout 20 s", 26.0),
    (60_000.0, "Chromium timeout 60 s", 40.0),
];

/// The chart in `#chart`, updated in place.
///
/// [`Chart::update`] runs on every tick of the demo's timer (100 ms) while a probe is
/// pending. It rebuilds the SVG only when the set of bars changes (a probe is added or the
/// table is cleared); otherwise it sets just the attributes and texts that changed, so the
/// pending bar's pulse animation keeps running and nothing else is laid out again.
pub(crate) struct Chart {
    document: Document,
    container: Element,
    /// The closing-handshake timeout of the browser the page runs in, when known.
    browser_timeout_ms: Option<f64>,
    /// The bars as drawn, with their elements; `None` before the first draw.
    drawn: Option<Vec<DrawnBar>>,
}

/// One bar as it is on the page.
struct DrawnBar {
    label: String,
    rect: Element,
    value: Element,
    look: Look,
}

/// Everything about a bar that can change while its label stays: what [`Chart::update`]
/// compares to decide which attributes to set.
#[derive(Clone, Debug, PartialEq)]
struct Look {
    kind: BarKind,
    width: String,
    value: String,
    value_x: String,
    value_anchor: &'static str,
    value_class: &'static str,
}

impl Look {
    fn of(bar: &Bar) -> Look {
        let end = x_of(bar.ms).max(LEFT + 2.0);
        // The value goes after the bar, or inside it when the bar reaches the right edge.
        // Inside the light bars (pending amber, failed grey) it is dark, inside the dark
        // ones white: both at least 4.5:1 (WCAG AA).
        let inside = end > WIDTH - RIGHT - 150.0;
        let (x, anchor, class) = match (inside, bar.kind) {
            (false, _) => (end + 6.0, "start", "value"),
            (true, BarKind::Pending | BarKind::Failed) => (end - 6.0, "end", "value inside dark"),
            (true, BarKind::Clean | BarKind::Unclean) => (end - 6.0, "end", "value inside"),
        };
        Look {
            kind: bar.kind,
            width: shortest(end - LEFT),
            value: bar.value.clone(),
            value_x: shortest(x),
            value_anchor: anchor,
            value_class: class,
        }
    }
}

impl Chart {
    /// A chart drawn into `container`, marking `browser_timeout_ms` as this browser's.
    pub(crate) fn new(
        document: Document,
        container: Element,
        browser_timeout_ms: Option<f64>,
    ) -> Chart {
        Chart {
            document,
            container,
            browser_timeout_ms,
            drawn: None,
        }
    }

    /// Shows `bars`: in place when they are the same bars as before, rebuilt otherwise.
    pub(crate) fn update(&mut self, bars: &[Bar]) -> Result<(), JsValue> {
        let same_bars = self.drawn.as_ref().is_some_and(|drawn| {
            drawn.len() == bars.len() && drawn.iter().zip(bars).all(|(d, b)| d.label == b.label)
        });
        if !same_bars {
            self.drawn = Some(self.rebuild(bars)?);
            return Ok(());
        }
        for (drawn, bar) in self.drawn.iter_mut().flatten().zip(bars) {
            let look = Look::of(bar);
            if look == drawn.look {
                continue;
            }
            if look.kind != drawn.look.kind {
                drawn.rect.set_attribute("class", look.kind.class())?;
            }
            if look.width != drawn.look.width {
                drawn.rect.set_attribute("width", &look.width)?;
            }
            if look.value != drawn.look.value {
                drawn.value.set_text_content(Some(&look.value));
            }
            if look.value_x != drawn.look.value_x {
                drawn.value.set_attribute("x", &look.value_x)?;
            }
            if look.value_anchor != drawn.look.value_anchor {
                drawn
                    .value
                    .set_attribute("text-anchor", look.value_anchor)?;
            }
            if look.value_class != drawn.look.value_class {
                drawn.value.set_attribute("class", look.value_class)?;
            }
            drawn.look = look;
        }
        Ok(())
    }

    /// Replaces the contents of the container with a chart of `bars`.
    fn rebuild(&self, bars: &[Bar]) -> Result<Vec<DrawnBar>, JsValue> {
        let document = &self.document;
        let rows = bars.len().max(1) as f64;
        let height = TOP + rows * ROW + BOTTOM;
        let plot_bottom = TOP + rows * ROW;
        let svg = element(
            document,
            "svg",
            &[
                (
                    "viewBox",
                    &format!("0 0 {} {}", shortest(WIDTH), shortest(height)),
                ),
                ("class", "timeline"),
                ("role", "img"),
                (
                    "aria-label",
                    "Time from close() to the close event, per probe, on a log scale",
                ),
            ],
        )?;
        if let Some(ms) = self.browser_timeout_ms {
            svg.set_attribute("data-browser-timeout-ms", &shortest(ms))?;
        }

        for decade in FIRST_DECADE..=LAST_DECADE {
            let x = shortest(x_of(10_f64.powi(decade)));
            add(
                &svg,
                element(
                    document,
                    "line",
                    &[
                        ("x1", &x),
                        ("x2", &x),
                        ("y1", &shortest(TOP - 4.0)),
                        ("y2", &shortest(plot_bottom)),
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
                        ("y", &shortest(plot_bottom + 18.0)),
                        ("class", "tick"),
                        ("text-anchor", "middle"),
                    ],
                )?,
            )?;
        }

        for (ms, label, y) in TIMEOUT_MARKERS {
            let x = x_of(ms);
            let current = self.browser_timeout_ms == Some(ms);
            let (line_class, label_class, label) = if current {
                (
                    "marker current",
                    "marker-label current",
                    format!("{label} (this browser)"),
                )
            } else {
                ("marker", "marker-label", label.to_owned())
            };
            add(
                &svg,
                element(
                    document,
                    "line",
                    &[
                        ("x1", &shortest(x)),
                        ("x2", &shortest(x)),
                        ("y1", &shortest(y + 3.0)),
                        ("y2", &shortest(plot_bottom)),
                        ("class", line_class),
                        ("data-timeout-ms", &shortest(ms)),
                    ],
                )?,
            )?;
            add(
                &svg,
                text(
                    document,
                    &label,
                    &[
                        ("x", &shortest(x - 4.0)),
                        ("y", &shortest(y)),
                        ("class", label_class),
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
                        ("x", &shortest(x_of(10.0))),
                        ("y", &shortest(TOP + ROW / 2.0 + 4.0)),
                        ("class", "empty"),
                    ],
                )?,
            )?;
        }

        let mut drawn = Vec::with_capacity(bars.len());
        for (i, bar) in bars.iter().enumerate() {
            let y = TOP + i as f64 * ROW + (ROW - BAR) / 2.0;
            let look = Look::of(bar);
            add(
                &svg,
                text(
                    document,
                    &bar.label,
                    &[
                        ("x", &shortest(LEFT - 10.0)),
                        ("y", &shortest(y + BAR - 4.0)),
                        ("class", "bar-label"),
                        ("text-anchor", "end"),
                    ],
                )?,
            )?;
            let rect = add(
                &svg,
                element(
                    document,
                    "rect",
                    &[
                        ("x", &shortest(LEFT)),
                        ("y", &shortest(y)),
                        ("width", &look.width),
                        ("height", &shortest(BAR)),
                        ("rx", "3"),
                        ("class", look.kind.class()),
                    ],
                )?,
            )?;
            let value = add(
                &svg,
                text(
                    document,
                    &look.value,
                    &[
                        ("x", &look.value_x),
                        ("y", &shortest(y + BAR - 4.0)),
                        ("class", look.value_class),
                        ("text-anchor", look.value_anchor),
                    ],
                )?,
            )?;
            drawn.push(DrawnBar {
                label: bar.label.clone(),
                rect,
                value,
                look,
            });
        }

        self.container.set_text_content(None);
        self.container.append_child(&svg)?;
        Ok(drawn)
    }
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
    fn values_inside_light_bars_are_dark() {
        let look = |kind, ms: f64| {
            Look::of(&Bar {
                label: "#1".to_owned(),
                ms,
                value: String::new(),
                kind,
            })
        };
        // Short bars carry their value after the bar, on the card.
        assert_eq!(look(BarKind::Pending, 1.0).value_class, "value");
        // Long ones inside: dark on amber and grey, white on green and red.
        assert_eq!(
            look(BarKind::Pending, 30_000.0).value_class,
            "value inside dark"
        );
        assert_eq!(
            look(BarKind::Failed, 30_000.0).value_class,
            "value inside dark"
        );
        assert_eq!(look(BarKind::Clean, 30_000.0).value_class, "value inside");
        assert_eq!(look(BarKind::Unclean, 60_000.0).value_class, "value inside");
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
