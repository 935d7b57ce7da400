//! `timeline.png`: the run at a glance. Three panels over the same seconds: each operation's
//! latency (log scale; failed and timed-out operations in red at the top), acknowledged
//! heartbeats, reads and failures per second, and the checker's findings per second (inside a
//! fault window in orange, violations in red). Every panel shades each fault's span (darker)
//! and the window after it that the bounds allow (lighter); the top names the fault.

use std::path::Path;

use plotters::prelude::*;

use crate::checker::{Bounds, Findings};
use crate::history::{Op, Outcome};

const WIDTH: u32 = 1800;
const HEIGHT: u32 = 1100;

/// Where text comes from: the first of these that exists (Debian's fonts-dejavu-core). Without
/// one the chart is drawn without its words.
const FONT_FILES: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn register_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        FONT_FILES.iter().any(|path| {
            let Ok(bytes) = std::fs::read(path) else {
                return false;
            };
            // plotters keeps fonts for the life of the process; this one is read once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
}

pub fn draw(
    path: &Path,
    ops: &[Op],
    findings: &Findings,
    bounds: &Bounds,
    started_ms: u64,
) -> Result<(), String> {
    let with_text = register_font();
    let end_ms = ops
        .iter()
        .map(|op| op.complete_ms)
        .max()
        .unwrap_or(started_ms);
    let span_s = (end_ms.saturating_sub(started_ms) as f64 / 1000.0).max(1.0);
    let secs = |t: u64| t.saturating_sub(started_ms) as f64 / 1000.0;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((3, 1));
    let faults: Vec<(f64, f64, f64, String)> = findings
        .per_fault
        .iter()
        .map(|f| {
            (
                secs(f.start_ms),
                secs(f.end_ms),
                secs(f.end_ms + bounds.settle_ms),
                f.kind.clone(),
            )
        })
        .collect();

    // 1. Latency of every operation.
    let mut latency: Vec<(f64, f64, RGBColor)> = Vec::new();
    for op in ops {
        let color = match (op.f, op.outcome) {
            ("heartbeat" | "logout" | "setstatus", Outcome::Ok) => RGBColor(40, 90, 200),
            ("mstatus", Outcome::Ok) => RGBColor(30, 150, 70),
            ("heartbeat" | "logout" | "setstatus" | "mstatus", _) => RGBColor(220, 30, 30),
            _ => continue,
        };
        let ms = (op.complete_ms.saturating_sub(op.invoke_ms) as f64).max(0.1);
        latency.push((secs(op.invoke_ms), ms, color));
    }
    let top_ms = latency.iter().map(|p| p.1).fold(10.0, f64::max) * 1.5;
    let mut chart = panel(
        &panels[0],
        with_text,
        "operation latency (ms; blue writes, green reads, red failed or timed out)",
    )
    .build_cartesian_2d(0.0..span_s, (0.1..top_ms).log_scale())
    .map_err(|e| e.to_string())?;
    mesh(&mut chart, with_text, "s since start", "ms")?;
    shade(&mut chart, &faults, 0.1, top_ms, with_text)?;
    chart
        .draw_series(
            latency
                .iter()
                .map(|&(x, y, color)| Circle::new((x, y), 1, color.filled())),
        )
        .map_err(|e| e.to_string())?;

    // 2. Throughput per second.
    let buckets = span_s.ceil() as usize + 1;
    let mut writes = vec![0u32; buckets];
    let mut reads = vec![0u32; buckets];
    let mut failed = vec![0u32; buckets];
    for op in ops {
        let at = secs(op.complete_ms) as usize;
        let Some(bucket) = (match (op.f, op.outcome) {
            ("heartbeat", Outcome::Ok) => writes.get_mut(at),
            ("mstatus", Outcome::Ok) => reads.get_mut(at),
            ("heartbeat" | "logout" | "setstatus" | "mstatus", _) => failed.get_mut(at),
            _ => None,
        }) else {
            continue;
        };
        *bucket += 1;
    }
    let top_rate = headroom(&[&writes, &reads, &failed]);
    let mut chart = panel(
        &panels[1],
        with_text,
        "per second: heartbeats acknowledged (blue), reads (green), failed or unknown (red)",
    )
    .build_cartesian_2d(0.0..span_s, 0.0..top_rate)
    .map_err(|e| e.to_string())?;
    mesh(&mut chart, with_text, "s since start", "ops/s")?;
    shade(&mut chart, &faults, 0.0, top_rate, false)?;
    for (series, color) in [
        (&writes, RGBColor(40, 90, 200)),
        (&reads, RGBColor(30, 150, 70)),
        (&failed, RGBColor(220, 30, 30)),
    ] {
        chart
            .draw_series(LineSeries::new(
                series
                    .iter()
                    .enumerate()
                    .map(|(s, &n)| (s as f64, n as f64)),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
    }

    // 3. The checker's findings per second.
    let mut allowed = vec![0u32; buckets];
    let mut violations = vec![0u32; buckets];
    for (_, count) in findings.checks() {
        for &(at_ms, in_window) in &count.times {
            let at = secs(at_ms) as usize;
            let list = if in_window {
                &mut allowed
            } else {
                &mut violations
            };
            if let Some(bucket) = list.get_mut(at) {
                *bucket += 1;
            }
        }
    }
    let top_found = headroom(&[&allowed, &violations]);
    let mut chart = panel(&panels[2], with_text, "checker findings per second: allowed (orange: inside a fault window or by rule), violations (red)")
        .build_cartesian_2d(0.0..span_s, 0.0..top_found)
        .map_err(|e| e.to_string())?;
    mesh(&mut chart, with_text, "s since start", "findings/s")?;
    shade(&mut chart, &faults, 0.0, top_found, false)?;
    for (series, color) in [
        (&allowed, RGBColor(240, 140, 20)),
        (&violations, RGBColor(220, 30, 30)),
    ] {
        chart
            .draw_series(
                series
                    .iter()
                    .enumerate()
                    .filter(|&(_, &n)| n > 0)
                    .map(|(s, &n)| {
                        Rectangle::new(
                            [(s as f64, 0.0), (s as f64 + 0.9, n as f64)],
                            color.filled(),
                        )
                    }),
            )
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

type Chart<'a, Y> =
    ChartContext<'a, BitMapBackend<'a>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>;

fn mesh<Y>(chart: &mut Chart<'_, Y>, with_text: bool, x: &str, y: &str) -> Result<(), String>
where
    Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235));
    if with_text {
        mesh.x_desc(x).y_desc(y);
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw().map_err(|e| e.to_string())
}

/// Each fault's span (darker) and the window after it (lighter), named at the top if `label`.
fn shade<Y>(
    chart: &mut Chart<'_, Y>,
    faults: &[(f64, f64, f64, String)],
    low: f64,
    high: f64,
    label: bool,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64>,
{
    for (start, end, window_end, kind) in faults {
        chart
            .draw_series([
                Rectangle::new(
                    [(*end, low), (*window_end, high)],
                    RGBAColor(255, 170, 0, 0.10).filled(),
                ),
                Rectangle::new(
                    [(*start, low), (*end, high)],
                    RGBAColor(255, 80, 0, 0.25).filled(),
                ),
            ])
            .map_err(|e| e.to_string())?;
        if label {
            chart
                .draw_series([Text::new(
                    kind.clone(),
                    (*start, high / 1.6),
                    ("sans-serif", 14).into_font().color(&BLACK),
                )])
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// A panel's chart: margins, room for the axes' labels and the caption only where there is
/// a font to write them in.
fn panel<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    with_text: bool,
    caption: &str,
) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(12)
        .x_label_area_size(if with_text { 30 } else { 0 })
        .y_label_area_size(if with_text { 70 } else { 0 });
    if with_text {
        builder.caption(caption, ("sans-serif", 18));
    }
    builder
}

/// The top of a per-second panel: the largest count of its series, plus 15%.
fn headroom(series: &[&[u32]]) -> f64 {
    series
        .iter()
        .flat_map(|s| s.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.15
}
