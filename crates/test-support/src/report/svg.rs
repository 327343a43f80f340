//! Line charts as hand-written SVG: a grid of small panels, one series each, with axes.
//!
//! No plotting library: a polyline per series, a frame, five labelled y ticks and labelled x ends
//! are enough for a person to see whether a figure grows over a run.

use std::fmt::Write;

/// Panel size and the margins that hold the axis labels, in SVG user units.
const PANEL_WIDTH: f64 = 460.0;
const PANEL_HEIGHT: f64 = 260.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 32.0;
const MARGIN_BOTTOM: f64 = 42.0;
const COLUMNS: usize = 2;
const Y_TICKS: usize = 5;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// One chart: a title (with its unit) and (x, y) points.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub points: Vec<(f64, f64)>,
}

/// An SVG document with `panels` in a grid of [`COLUMNS`] columns under `title`.
pub fn render(title: &str, x_label: &str, panels: &[Panel]) -> String {
    let rows = panels.len().div_ceil(COLUMNS);
    let width = PANEL_WIDTH * COLUMNS as f64;
    let height = 40.0 + PANEL_HEIGHT * rows as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        width / 2.0,
        escape(title)
    );
    for (index, panel) in panels.iter().enumerate() {
        let left = PANEL_WIDTH * (index % COLUMNS) as f64;
        let top = 40.0 + PANEL_HEIGHT * (index / COLUMNS) as f64;
        render_panel(
            &mut svg,
            panel,
            x_label,
            left,
            top,
            COLOURS[index % COLOURS.len()],
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn render_panel(svg: &mut String, panel: &Panel, x_label: &str, left: f64, top: f64, colour: &str) {
    let plot_left = left + MARGIN_LEFT;
    let plot_right = left + PANEL_WIDTH - MARGIN_RIGHT;
    let plot_top = top + MARGIN_TOP;
    let plot_bottom = top + PANEL_HEIGHT - MARGIN_BOTTOM;
    let (x_min, x_max) = range(panel.points.iter().map(|(x, _)| *x), false);
    let (y_min, y_max) = range(panel.points.iter().map(|(_, y)| *y), true);
    let to_x = |x: f64| plot_left + (x - x_min) / (x_max - x_min) * (plot_right - plot_left);
    let to_y = |y: f64| plot_bottom - (y - y_min) / (y_max - y_min) * (plot_bottom - plot_top);

    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="13" text-anchor="middle">{}</text>"#,
        (plot_left + plot_right) / 2.0,
        top + 20.0,
        escape(&panel.title)
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{plot_left}" y="{plot_top}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        plot_right - plot_left,
        plot_bottom - plot_top
    );
    for tick in 0..Y_TICKS {
        let value = y_min + (y_max - y_min) * tick as f64 / (Y_TICKS - 1) as f64;
        let y = to_y(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{plot_left}" y1="{y:.1}" x2="{plot_right}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            plot_left - 6.0,
            y + 4.0,
            number(value)
        );
    }
    for (value, anchor) in [(x_min, "start"), (x_max, "end")] {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
            to_x(value),
            plot_bottom + 15.0,
            number(value)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (plot_left + plot_right) / 2.0,
        plot_bottom + 32.0,
        escape(x_label)
    );
    if panel.points.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">no samples</text>"#,
            (plot_left + plot_right) / 2.0,
            (plot_top + plot_bottom) / 2.0
        );
        return;
    }
    let points: Vec<String> = panel
        .points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", to_x(x), to_y(y)))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
        points.join(" ")
    );
}

/// The range of the values, widened so a flat series still has a visible axis; `pad` adds 5%
/// above and below so the line does not sit on the frame.
fn range(values: impl Iterator<Item = f64>, pad: bool) -> (f64, f64) {
    let (mut low, mut high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), v| {
        (low.min(v), high.max(v))
    });
    if !low.is_finite() || !high.is_finite() {
        return (0.0, 1.0);
    }
    if high - low < 1e-9 {
        let spread = if low.abs() > 1.0 {
            low.abs() * 0.05
        } else {
            1.0
        };
        low -= spread;
        high += spread;
    } else if pad {
        let margin = (high - low) * 0.05;
        low -= margin;
        high += margin;
    }
    (low, high)
}

fn number(value: f64) -> String {
    match value.abs() {
        magnitude if magnitude >= 100.0 => format!("{value:.0}"),
        magnitude if magnitude >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::{Panel, render};

    #[test]
    fn every_panel_gets_a_polyline_or_a_note() {
        let svg = render(
            "soak <1>",
            "minutes",
            &[
                Panel {
                    title: "RSS (MiB)".to_owned(),
                    points: vec![(0.0, 10.0), (1.0, 11.0), (2.0, 10.5)],
                },
                Panel {
                    title: "fds".to_owned(),
                    points: Vec::new(),
                },
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("no samples"));
        assert!(svg.contains("soak &lt;1&gt;"));
    }
}
