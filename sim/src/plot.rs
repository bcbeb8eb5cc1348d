//! `--plot FILE.svg`: latency percentiles and fallback share over time, with
//! fault windows shaded.
//!
//! Plain SVG written by hand: a dozen lines of geometry do not justify a
//! plotting dependency, and SVG opens in any browser.

use crate::report::Report;
use std::fmt::Write as _;

const W: f64 = 900.0;
const H: f64 = 360.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 60.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

/// The run's timeline as an SVG document.
pub fn svg(report: &Report) -> String {
    let t_max = report
        .timeline
        .last()
        .map_or(1.0, |b| b.t_s)
        .max(report.duration_s)
        .max(1.0);
    let ms_max = report.timeline.iter().map(|b| b.p99_ms).fold(1.0, f64::max) * 1.1;
    let x = |t: f64| LEFT + (W - LEFT - RIGHT) * t / t_max;
    let y_ms = |ms: f64| H - BOTTOM - (H - TOP - BOTTOM) * ms / ms_max;
    let y_share = |s: f64| H - BOTTOM - (H - TOP - BOTTOM) * s;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    for fault in &report.faults {
        let (a, b) = (x(fault.start_s), x(fault.end_s));
        let _ = writeln!(
            out,
            r##"<rect x="{a:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#f4cccc"/><text x="{a:.1}" y="{:.1}" fill="#a33">{}</text>"##,
            (b - a).max(1.0),
            H - TOP - BOTTOM,
            TOP - 4.0,
            escape(&fault.fault)
        );
    }
    let _ = writeln!(
        out,
        r#"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{0}" stroke="black"/><line x1="{1}" y1="{TOP}" x2="{1}" y2="{0}" stroke="black"/>"#,
        H - BOTTOM,
        W - RIGHT
    );
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{:.1} ms</text><text x="{:.1}" y="{:.1}">{:.0}%</text>"#,
            LEFT - 4.0,
            y_ms(ms_max * f) + 4.0,
            ms_max * f,
            W - RIGHT + 4.0,
            y_share(f) + 4.0,
            f * 100.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.0} s</text>"#,
            x(t_max * f),
            H - BOTTOM + 16.0,
            t_max * f
        );
    }
    type Series<'a> = (
        &'a str,
        &'a str,
        Box<dyn Fn(&crate::report::Bucket) -> f64 + 'a>,
    );
    let series: [Series<'_>; 4] = [
        ("p50", "#3c78d8", Box::new(|b| y_ms(b.p50_ms))),
        ("p90", "#6aa84f", Box::new(|b| y_ms(b.p90_ms))),
        ("p99", "#cc0000", Box::new(|b| y_ms(b.p99_ms))),
        (
            "fallback share",
            "#999999",
            Box::new(|b| y_share(b.fallback_share)),
        ),
    ];
    for (i, (name, colour, y)) in series.iter().enumerate() {
        let points: Vec<String> = report
            .timeline
            .iter()
            .map(|b| format!("{:.1},{:.1}", x(b.t_s), y(b)))
            .collect();
        let dash = if *name == "fallback share" {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{}"/>"#,
            points.join(" ")
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" fill="{colour}">{name}</text>"#,
            LEFT + 10.0 + 110.0 * i as f64,
            H - 6.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="14">reco-sim: latency percentiles (left) and fallback share (right) per second; shaded: faults</text>"#
    );
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Bucket, FaultRecord};

    #[test]
    fn plot_has_a_line_per_series_and_shades_faults() {
        let report = Report {
            duration_s: 3.0,
            timeline: (1..=3)
                .map(|t| Bucket {
                    t_s: t as f64,
                    p99_ms: t as f64,
                    fallback_share: 0.5,
                    ..Bucket::default()
                })
                .collect(),
            faults: vec![FaultRecord {
                fault: "model_slow(delay_ms=100)".into(),
                start_s: 1.0,
                end_s: 2.0,
                outcome: "applied".into(),
                replies: 0,
                fallback_share: 0.0,
                worst_p99_ms: 0.0,
                note: String::new(),
            }],
            ..Report::default()
        };
        let svg = svg(&report);
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("#f4cccc") && svg.contains("model_slow"));
    }
}
