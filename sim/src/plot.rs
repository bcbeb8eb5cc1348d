//! `--plot FILE.svg`: the run's timeline for people, as SVG and as PNG.
//!
//! Three panels over the same time axis, fault windows shaded in each:
//! latency percentiles against the deadline (a dashed line), the share of
//! replies that came from a fallback stacked by reason (a deadline miss
//! and a cold start are different stories), and throughput (events
//! published and replies received per second). Axes use round ticks (1, 2,
//! 5 × 10ⁿ) and every legend entry carries its line or area swatch.
//!
//! The SVG is written by hand (a few dozen lines of geometry do not justify
//! a plotting dependency, and SVG opens in any browser); the PNG is the same
//! SVG rasterised in-process by `resvg`, with DejaVu Sans embedded (the
//! `dejavu` crate) so that text renders on a machine without fonts.

use crate::report::{Bucket, Report};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const W: f64 = 960.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TITLE: f64 = 72.0;
const PANEL: f64 = 170.0;
const GAP: f64 = 46.0;
const BOTTOM: f64 = 40.0;
const H: f64 = TITLE + 3.0 * PANEL + 2.0 * GAP + BOTTOM;
const FONT: &str = "DejaVu Sans, sans-serif";

/// Colours of the fallback reasons (stacked areas), in stacking order.
const REASON_COLOURS: [(&str, &str); 5] = [
    ("deadline", "#cc0000"),
    ("overloaded", "#e69138"),
    ("model_unavailable", "#674ea7"),
    ("cold_start", "#9fc5e8"),
    ("none", "#b7b7b7"),
];

/// A line of the latency panel: name, colour, value of a bucket.
type Series = (&'static str, &'static str, fn(&Bucket) -> f64);

/// Round axis ticks: 0, step, 2·step, … up to the first multiple of step at
/// or above `max`, with step 1, 2 or 5 × 10ⁿ giving at most `most` steps.
pub fn ticks(max: f64, most: usize) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / most.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    let n = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// A tick label without spurious decimals (0.5, 2, 10, 1.5k).
fn label(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{}k", trim(value / 1000.0))
    } else {
        trim(value)
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// One panel's frame: vertical placement and value scale.
struct Frame {
    top: f64,
    max: f64,
}

impl Frame {
    fn y(&self, value: f64) -> f64 {
        self.top + PANEL - PANEL * (value / self.max).clamp(0.0, 1.05)
    }
    fn bottom(&self) -> f64 {
        self.top + PANEL
    }
}

/// The run's timeline as an SVG document.
pub fn svg(report: &Report) -> String {
    let t_end = report
        .timeline
        .last()
        .map_or(1.0, |b| b.t_s)
        .max(report.duration_s)
        .max(1.0);
    let t_ticks = ticks(t_end, 12);
    let t_max = *t_ticks.last().expect("ticks are never empty");
    let x = |t: f64| LEFT + (W - LEFT - RIGHT) * t / t_max;
    let deadline = report.deadline_ms as f64;
    let ms_top = report
        .timeline
        .iter()
        .map(|b| b.p99_ms)
        .fold(deadline * 1.1, f64::max);
    let ms_ticks = ticks(ms_top, 5);
    let latency = Frame {
        top: TITLE,
        max: *ms_ticks.last().expect("ticks"),
    };
    let share_ticks = ticks(1.0, 5);
    let share = Frame {
        top: TITLE + PANEL + GAP,
        max: 1.0,
    };
    let rates = per_second(&report.timeline);
    let rate_top = rates.iter().map(|(_, e, r)| e.max(*r)).fold(1.0, f64::max);
    let rate_ticks = ticks(rate_top, 5);
    let throughput = Frame {
        top: TITLE + 2.0 * (PANEL + GAP),
        max: *rate_ticks.last().expect("ticks"),
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="{FONT}" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">reco-sim: {:.1} s, seed {}, deadline {} ms</text>"#,
        report.duration_s, report.seed, report.deadline_ms
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="38" fill="#555">each point is one second of the run; shaded: injected faults</text>"##
    );

    for (frame, title) in [
        (&latency, "reply latency, ms"),
        (&share, "replies answered by a fallback, by reason"),
        (&throughput, "throughput, per second"),
    ] {
        for fault in &report.faults {
            let (a, b) = (x(fault.start_s), x(fault.end_s));
            let _ = writeln!(
                out,
                r##"<rect x="{a:.1}" y="{:.1}" width="{:.1}" height="{PANEL}" fill="#f4cccc" fill-opacity="0.6"/>"##,
                frame.top,
                (b - a).max(1.0)
            );
        }
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{:.1}" font-weight="bold" fill="#333">{title}</text>"##,
            frame.top - 8.0
        );
    }
    if let Some(fault) = report.faults.first() {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="#a33" text-anchor="middle">{}</text>"##,
            (x(fault.start_s) + x(fault.end_s)) / 2.0,
            latency.top + 14.0,
            escape(&fault.fault)
        );
    }

    // Axes and grid.
    for (frame, values, unit) in [
        (&latency, &ms_ticks, ""),
        (&share, &share_ticks, "%"),
        (&throughput, &rate_ticks, ""),
    ] {
        for &v in values.iter() {
            let y = frame.y(v);
            let text = if unit == "%" {
                format!("{}%", trim(v * 100.0))
            } else {
                label(v)
            };
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{text}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0
            );
        }
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{:.1}" width="{:.1}" height="{PANEL}" fill="none" stroke="#333"/>"##,
            frame.top,
            W - LEFT - RIGHT
        );
        for &t in &t_ticks {
            let _ = writeln!(
                out,
                r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#333"/>"##,
                x(t),
                frame.bottom(),
                frame.bottom() + 4.0
            );
        }
    }
    for &t in &t_ticks {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">{} s</text>"##,
            x(t),
            throughput.bottom() + 18.0,
            label(t)
        );
    }

    // Latency: the deadline, then the percentiles.
    let yd = latency.y(deadline);
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{yd:.1}" x2="{:.1}" y2="{yd:.1}" stroke="#000" stroke-width="1.5" stroke-dasharray="6 4"/>"##,
        W - RIGHT
    );
    let latency_series: [Series; 3] = [
        ("p50", "#3c78d8", |b| b.p50_ms),
        ("p90", "#6aa84f", |b| b.p90_ms),
        ("p99", "#cc0000", |b| b.p99_ms),
    ];
    for (_, colour, value) in &latency_series {
        polyline(
            &mut out,
            report
                .timeline
                .iter()
                .map(|b| (x(b.t_s), latency.y(value(b)))),
            colour,
            "",
        );
    }
    let mut legend = Legend::new(latency.top);
    for (name, colour, _) in &latency_series {
        legend.line(&mut out, name, colour, "");
    }
    legend.line(
        &mut out,
        &format!("deadline {} ms", report.deadline_ms),
        "#000",
        "6 4",
    );

    // Fallback share, stacked by reason.
    let reasons: Vec<(&str, &str)> = REASON_COLOURS
        .iter()
        .copied()
        .filter(|(r, _)| {
            report
                .timeline
                .iter()
                .any(|b| b.fallback_by_reason.get(*r).copied().unwrap_or(0.0) > 0.0)
        })
        .collect();
    let mut below = vec![0.0; report.timeline.len()];
    for (reason, colour) in &reasons {
        let above: Vec<f64> = report
            .timeline
            .iter()
            .zip(&below)
            .map(|(b, under)| under + b.fallback_by_reason.get(*reason).copied().unwrap_or(0.0))
            .collect();
        let mut points: Vec<String> = report
            .timeline
            .iter()
            .zip(&above)
            .map(|(b, v)| format!("{:.1},{:.1}", x(b.t_s), share.y(*v)))
            .collect();
        points.extend(
            report
                .timeline
                .iter()
                .zip(&below)
                .rev()
                .map(|(b, v)| format!("{:.1},{:.1}", x(b.t_s), share.y(*v))),
        );
        let _ = writeln!(
            out,
            r#"<polygon fill="{colour}" fill-opacity="0.85" stroke="{colour}" stroke-width="0.5" points="{}"/>"#,
            points.join(" ")
        );
        below = above;
    }
    let mut legend = Legend::new(share.top);
    if reasons.is_empty() {
        legend.text(&mut out, "no fallback");
    }
    for (reason, colour) in reasons.iter().rev() {
        let name = if *reason == "none" {
            "nearline (fresh)"
        } else {
            reason
        };
        legend.area(&mut out, name, colour);
    }

    // Throughput.
    polyline(
        &mut out,
        rates.iter().map(|(t, e, _)| (x(*t), throughput.y(*e))),
        "#3c78d8",
        "",
    );
    polyline(
        &mut out,
        rates.iter().map(|(t, _, r)| (x(*t), throughput.y(*r))),
        "#e69138",
        "",
    );
    let mean = |f: fn(&(f64, f64, f64)) -> f64| {
        rates.iter().map(f).sum::<f64>() / rates.len().max(1) as f64
    };
    let mut legend = Legend::new(throughput.top);
    legend.line(&mut out, "events published", "#3c78d8", "");
    legend.text(&mut out, &format!("  mean {:.0}/s", mean(|r| r.1)));
    legend.line(&mut out, "replies received", "#e69138", "");
    legend.text(&mut out, &format!("  mean {:.0}/s", mean(|r| r.2)));

    out.push_str("</svg>\n");
    out
}

/// (end of bucket, events/s, replies/s) from the timeline's buckets.
fn per_second(timeline: &[Bucket]) -> Vec<(f64, f64, f64)> {
    let mut previous = 0.0;
    timeline
        .iter()
        .map(|b| {
            let dt = (b.t_s - previous).max(0.05);
            previous = b.t_s;
            (b.t_s, b.events as f64 / dt, b.replies as f64 / dt)
        })
        .collect()
}

fn polyline(out: &mut String, points: impl Iterator<Item = (f64, f64)>, colour: &str, dash: &str) {
    let points: Vec<String> = points.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    if points.is_empty() {
        return;
    }
    let dash = if dash.is_empty() {
        String::new()
    } else {
        format!(r#" stroke-dasharray="{dash}""#)
    };
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{}"/>"#,
        points.join(" ")
    );
}

/// A panel's legend, to the right of the plot, one entry per line, each
/// with its swatch.
struct Legend {
    x: f64,
    y: f64,
}

impl Legend {
    fn new(top: f64) -> Self {
        Legend {
            x: W - RIGHT + 14.0,
            y: top + 14.0,
        }
    }

    fn line(&mut self, out: &mut String, name: &str, colour: &str, dash: &str) {
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            out,
            r#"<line class="swatch" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2.5"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            self.x,
            self.y - 4.0,
            self.x + 22.0,
            self.y - 4.0,
            self.x + 28.0,
            self.y,
            escape(name)
        );
        self.y += 18.0;
    }

    fn area(&mut self, out: &mut String, name: &str, colour: &str) {
        let _ = writeln!(
            out,
            r#"<rect class="swatch" x="{:.1}" y="{:.1}" width="22" height="10" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            self.x,
            self.y - 9.0,
            self.x + 28.0,
            self.y,
            escape(name)
        );
        self.y += 18.0;
    }

    fn text(&mut self, out: &mut String, text: &str) {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="#555">{}</text>"##,
            self.x,
            self.y,
            escape(text)
        );
        self.y += 18.0;
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The fonts the PNG is drawn with: DejaVu Sans (embedded), which the SVG
/// names first.
fn fonts() -> resvg::usvg::fontdb::Database {
    let mut db = resvg::usvg::fontdb::Database::new();
    db.load_font_data(dejavu::sans::regular().to_vec());
    db.load_font_data(dejavu::sans::bold().to_vec());
    db.set_sans_serif_family("DejaVu Sans");
    db
}

/// Rasterises an SVG document to PNG bytes (at twice its size, for
/// legible text on high-density screens).
pub fn png(svg: &str) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let options = usvg::Options {
        font_family: "DejaVu Sans".into(),
        fontdb: std::sync::Arc::new(fonts()),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &options).context("the plot's SVG does not parse")?;
    let scale = 2.0;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .context("empty plot")?;
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).context("cannot allocate the PNG")?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("cannot encode the PNG")
}

/// Writes the plot as SVG and PNG: `path` names one of them (`.svg` or
/// `.png`), the other goes beside it with the other extension. Returns
/// both paths, SVG first.
pub fn write(report: &Report, path: &Path) -> Result<(PathBuf, PathBuf)> {
    let svg_path = path.with_extension("svg");
    let png_path = path.with_extension("png");
    if let Some(dir) = svg_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let document = svg(report);
    std::fs::write(&svg_path, &document)
        .with_context(|| format!("cannot write {}", svg_path.display()))?;
    std::fs::write(&png_path, png(&document)?)
        .with_context(|| format!("cannot write {}", png_path.display()))?;
    Ok((svg_path, png_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::FaultRecord;

    fn report() -> Report {
        Report {
            duration_s: 30.0,
            deadline_ms: 50,
            timeline: (1..=30)
                .map(|t| Bucket {
                    t_s: t as f64,
                    events: 2_000,
                    replies: 200,
                    p50_ms: 1.0,
                    p90_ms: 10.0,
                    p99_ms: if (10..20).contains(&t) { 49.0 } else { 14.9 },
                    fallback_share: 0.3,
                    fallback_by_reason: [
                        ("cold_start".to_owned(), 0.1),
                        (
                            "deadline".to_owned(),
                            if (10..20).contains(&t) { 0.8 } else { 0.0 },
                        ),
                    ]
                    .into_iter()
                    .collect(),
                })
                .collect(),
            faults: vec![FaultRecord {
                fault: "model_slow(delay_ms=100)".into(),
                start_s: 10.0,
                end_s: 20.0,
                outcome: "applied".into(),
                replies: 2_000,
                fallback_share: 0.9,
                worst_p99_ms: 49.0,
                note: String::new(),
                lost: String::new(),
            }],
            ..Report::default()
        }
    }

    #[test]
    fn ticks_are_round_one_two_five_steps_covering_the_maximum() {
        assert_eq!(ticks(29.7, 5), [0.0, 10.0, 20.0, 30.0]);
        assert_eq!(ticks(55.0, 5), [0.0, 20.0, 40.0, 60.0]);
        assert_eq!(ticks(1.0, 5), [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(
            ticks(2_150.0, 5),
            [0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0]
        );
        assert_eq!(ticks(0.0, 5).last(), Some(&1.0));
        for max in [0.37, 3.0, 14.9, 49.63, 61.0, 1234.5] {
            let t = ticks(max, 6);
            let step = t[1];
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|m| (m - mantissa).abs() < 1e-9),
                "{max}: step {step}"
            );
            assert!(*t.last().unwrap() >= max && t.len() <= 7, "{max}: {t:?}");
        }
    }

    #[test]
    fn the_plot_draws_the_deadline_reasons_throughput_and_legend_swatches() {
        let svg = svg(&report());
        assert!(svg.contains("deadline 50 ms"), "no deadline label");
        assert!(
            svg.contains(r#"stroke-dasharray="6 4""#),
            "no dashed deadline line"
        );
        // Two stacked reasons, each an area with a legend swatch.
        assert_eq!(svg.matches("<polygon").count(), 2);
        assert!(svg.contains(">deadline</text>") && svg.contains(">cold_start</text>"));
        // p50, p90, p99 and two throughput lines.
        assert_eq!(svg.matches("<polyline").count(), 5);
        assert_eq!(svg.matches(r#"class="swatch""#).count(), 4 + 2 + 2);
        assert!(svg.contains("throughput") && svg.contains("events published"));
        // Round ticks only: no 14.9 or 29.7 on an axis.
        assert!(svg.contains(">60<") || svg.contains(">50<"));
        assert!(!svg.contains(">14.9<") && !svg.contains(">29.7<"));
        // Fault windows shaded in all three panels.
        assert_eq!(svg.matches("#f4cccc").count(), 3);
    }

    #[test]
    fn the_png_is_rendered_with_text() {
        let document = svg(&report());
        let bytes = png(&document).expect("renders");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // Text must really render: the same plot without its text has
        // fewer dark pixels.
        let without_text: String = document
            .lines()
            .map(|l| {
                // Legend lines carry a swatch and a text element.
                match l.find("<text") {
                    Some(at) => &l[..at],
                    None => l,
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let dark = |svg: &str| {
            let png = png(svg).expect("renders");
            let pixmap = resvg::tiny_skia::Pixmap::decode_png(&png).expect("decodes");
            pixmap
                .pixels()
                .iter()
                .filter(|p| p.red() < 100 && p.green() < 100 && p.blue() < 100)
                .count()
        };
        let with = dark(&document);
        let without = dark(&without_text);
        assert!(
            with > without + 2_000,
            "text adds only {} dark pixels",
            with as i64 - without as i64
        );
    }

    #[test]
    fn write_puts_svg_and_png_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let (svg_path, png_path) = write(&report(), &dir.path().join("run.png")).unwrap();
        assert_eq!(svg_path, dir.path().join("run.svg"));
        assert!(std::fs::read_to_string(svg_path)
            .unwrap()
            .starts_with("<svg"));
        assert!(std::fs::metadata(png_path).unwrap().len() > 10_000);
    }
}
