//! Tiny SVG line charts, written by hand: no fonts or plotting libraries needed, and the
//! files open in any browser.

/// One line of a chart.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Stroke colour (CSS).
    pub color: &'static str,
    /// Points (x, y).
    pub points: Vec<(f64, f64)>,
}

/// A chart to draw.
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X-axis label.
    pub x_label: String,
    /// Y-axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_max(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= value {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn draw(chart: &Chart, y_offset: f64, out: &mut String) {
    let points = chart.series.iter().flat_map(|s| s.points.iter());
    let (x_max, y_max) = points.fold((0f64, 0f64), |(x, y), (px, py)| (x.max(*px), y.max(*py)));
    let (x_max, y_max) = (nice_max(x_max), nice_max(y_max));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x / x_max * plot_w;
    let sy = |y: f64| y_offset + TOP + plot_h - y / y_max * plot_h;
    out.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"16\" font-family=\"sans-serif\">{}</text>\n",
        LEFT,
        y_offset + 24.0,
        escape(&chart.title)
    ));
    for tick in 0..=5 {
        let fraction = tick as f64 / 5.0;
        let (x, y) = (sx(fraction * x_max), sy(fraction * y_max));
        out.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/>\n",
            WIDTH - RIGHT
        ));
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" font-family=\"sans-serif\" text-anchor=\"end\">{}</text>\n",
            LEFT - 6.0,
            y + 4.0,
            format_number(fraction * y_max)
        ));
        out.push_str(&format!(
            "<text x=\"{x}\" y=\"{}\" font-size=\"11\" font-family=\"sans-serif\" text-anchor=\"middle\">{}</text>\n",
            y_offset + TOP + plot_h + 16.0,
            format_number(fraction * x_max)
        ));
    }
    out.push_str(&format!(
        "<rect x=\"{LEFT}\" y=\"{}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#333\"/>\n",
        y_offset + TOP
    ));
    out.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" font-family=\"sans-serif\" text-anchor=\"middle\">{}</text>\n",
        LEFT + plot_w / 2.0,
        y_offset + HEIGHT - 10.0,
        escape(&chart.x_label)
    ));
    out.push_str(&format!(
        "<text x=\"16\" y=\"{}\" font-size=\"12\" font-family=\"sans-serif\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">{}</text>\n",
        y_offset + TOP + plot_h / 2.0,
        y_offset + TOP + plot_h / 2.0,
        escape(&chart.y_label)
    ));
    for (index, series) in chart.series.iter().enumerate() {
        let path: Vec<String> = series
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        out.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n",
            series.color,
            path.join(" ")
        ));
        for (x, y) in &series.points {
            out.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"/>\n",
                sx(*x),
                sy(*y),
                series.color
            ));
        }
        let legend_x = WIDTH - RIGHT - 200.0;
        let legend_y = y_offset + TOP + 16.0 + index as f64 * 16.0;
        out.push_str(&format!(
            "<rect x=\"{legend_x}\" y=\"{}\" width=\"12\" height=\"4\" fill=\"{}\"/>\n",
            legend_y - 4.0,
            series.color
        ));
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{legend_y}\" font-size=\"12\" font-family=\"sans-serif\">{}</text>\n",
            legend_x + 18.0,
            escape(&series.name)
        ));
    }
}

fn format_number(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else if value >= 10.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// The charts stacked in one SVG document.
pub fn render(charts: &[Chart]) -> String {
    let height = HEIGHT * charts.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (index, chart) in charts.iter().enumerate() {
        draw(chart, index as f64 * HEIGHT, &mut out);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_well_formed_document() {
        // Goal: every point appears and the markup is closed.
        let chart = Chart {
            title: "t <1>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series {
                name: "s".into(),
                color: "#c00",
                points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)],
            }],
        };
        let svg = render(&[chart]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("t &lt;1&gt;"));
        assert_eq!(nice_max(7.3), 10.0);
        assert_eq!(nice_max(1234.0), 2000.0);
    }
}
