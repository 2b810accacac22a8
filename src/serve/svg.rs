//! Charts as inline SVG, drawn on the server with maud (every label escaped): a time axis,
//! bars or a line, optional dashed lines (a limit, a projection). They scale to the width
//! of the page (viewBox), so they stay readable on a phone.

use maud::{html, Markup};

const W: f64 = 640.0;
const H: f64 = 200.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 24.0;

/// One bar: its position on the time axis (seconds), its value, a CSS class and a
/// tooltip.
pub struct Bar {
    pub x: f64,
    pub value: f64,
    pub class: &'static str,
    pub title: String,
}

/// A point on a chart: (seconds since the epoch, value).
pub type Point = (f64, f64);

pub struct Axis<'a> {
    /// Time range shown (seconds since the epoch).
    pub from: f64,
    pub to: f64,
    /// Formats a value for the vertical axis.
    pub fmt: &'a dyn Fn(f64) -> String,
    pub label: &'a str,
}

fn sx(a: &Axis, x: f64) -> f64 {
    let span = (a.to - a.from).max(1.0);
    LEFT + (x - a.from) / span * (W - LEFT - RIGHT)
}

fn sy(max: f64, v: f64) -> f64 {
    H - BOTTOM - v / max.max(f64::MIN_POSITIVE) * (H - TOP - BOTTOM)
}

fn date(x: f64) -> String {
    chrono::DateTime::from_timestamp(x as i64, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn frame(a: &Axis, max: f64, inner: Markup) -> Markup {
    html! {
        svg class="chart" viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(a.label)
            xmlns="http://www.w3.org/2000/svg" {
            title { (a.label) }
            @for i in 0..=2 {
                @let v = max * f64::from(i) / 2.0;
                @let y = sy(max, v);
                line class="grid" x1=(LEFT) x2=(W - RIGHT) y1=(y) y2=(y) {}
                text class="tick" x=(LEFT - 4.0) y=(y + 4.0) text-anchor="end" { ((a.fmt)(v)) }
            }
            text class="tick" x=(LEFT) y=(H - 6.0) { (date(a.from)) }
            text class="tick" x=(W - RIGHT) y=(H - 6.0) text-anchor="end" { (date(a.to)) }
            (inner)
        }
    }
}

/// Bars on a time axis.
pub fn bars(a: &Axis, bars: &[Bar]) -> Markup {
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max) * 1.1;
    let width = ((W - LEFT - RIGHT) / (bars.len().max(1) as f64) * 0.6).clamp(2.0, 14.0);
    frame(
        a,
        max,
        html! {
            @for b in bars {
                @let x = sx(a, b.x) - width / 2.0;
                @let y = sy(max, b.value);
                rect class=(b.class) x=(x) y=(y) width=(width) height=((H - BOTTOM - y).max(1.0)) {
                    title { (b.title) }
                }
            }
        },
    )
}

/// A line through points on a time axis, with optional dashed extra lines (each from
/// one point to another) and a horizontal limit.
pub fn line(a: &Axis, points: &[Point], dashed: &[(Point, Point)], limit: Option<f64>) -> Markup {
    let max = points
        .iter()
        .map(|p| p.1)
        .chain(dashed.iter().flat_map(|d| [d.0 .1, d.1 .1]))
        .chain(limit)
        .fold(0.0, f64::max)
        * 1.1;
    let path: Vec<String> = points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", sx(a, x), sy(max, y)))
        .collect();
    frame(
        a,
        max,
        html! {
            @if let Some(l) = limit {
                line class="limit" x1=(LEFT) x2=(W - RIGHT) y1=(sy(max, l)) y2=(sy(max, l)) {}
            }
            polyline class="series" points=(path.join(" ")) {}
            @for &(x, y) in points {
                circle class="series" cx=(sx(a, x)) cy=(sy(max, y)) r="2.5" {}
            }
            @for (p, q) in dashed {
                line class="projection" x1=(sx(a, p.0)) y1=(sy(max, p.1)) x2=(sx(a, q.0)) y2=(sy(max, q.1)) {}
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let f = |v: f64| format!("{v}");
        let a = Axis {
            from: 0.0,
            to: 86400.0,
            fmt: &f,
            label: "<script>x</script>",
        };
        let s = bars(
            &a,
            &[Bar {
                x: 10.0,
                value: 1.0,
                class: "ok",
                title: "<b>".into(),
            }],
        )
        .into_string();
        assert!(!s.contains("<script>") && !s.contains("<b>"), "{s}");
        assert!(s.contains("&lt;script&gt;"), "{s}");
    }
}
