//! The table printed when a run ends, and `--report`: a histogram of INVITE→200 times (SVG).

use super::stats::{failure_name, Percentiles, Spread, Summary};
use super::LoadArgs;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".into(), |x| format!("{x:.digits$}"))
}

fn times(p: &Percentiles) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  max {}  (n={})",
        num(p.p50, 1),
        num(p.p90, 1),
        num(p.p99, 1),
        num(p.max, 1),
        p.n
    )
}

fn spread(s: &Spread, digits: usize) -> String {
    format!(
        "min {}  mean {}  p50 {}  max {}",
        num(s.min, digits),
        num(s.mean, digits),
        num(s.p50, digits),
        num(s.max, digits)
    )
}

/// The final table (each line ends with a newline).
pub fn render(s: &Summary, args: &LoadArgs) -> String {
    let failed: usize = s.failed.values().sum();
    let by_code = if s.failed.is_empty() {
        "-".to_string()
    } else {
        s.failed
            .iter()
            .map(|(k, n)| format!("{} × {n}", failure_name(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sent_by = s
        .audio_sent_by
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: [(&str, String); 12] = [
        (
            "run",
            format!(
                "{} at {} calls/s, at most {} up (reached {}), {} s each, {:.1} s in all",
                args.uri, args.rate, args.concurrent, s.max_up, args.duration, s.elapsed_s
            ),
        ),
        ("attempted", s.attempted.to_string()),
        ("answered", s.answered.to_string()),
        ("failed", format!("{failed}: {by_code}")),
        ("INVITE→180 ms", times(&s.ringing_ms)),
        ("INVITE→200 ms", times(&s.setup_ms)),
        ("loss %", spread(&s.loss_percent, 2)),
        ("jitter ms", spread(&s.jitter_ms, 2)),
        ("MOS", spread(&s.mos, 2)),
        (
            "audio received",
            format!("{} of {}", s.audio_received, s.answered),
        ),
        (
            "audio sent",
            format!(
                "{} of {}{}",
                s.audio_sent,
                s.answered,
                if sent_by.is_empty() {
                    String::new()
                } else {
                    format!(" (shown by {sent_by})")
                }
            ),
        ),
        (
            "audio both ways",
            format!("{} of {} attempted", s.audio_both_ways, s.attempted),
        ),
    ];
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<16} {v}");
    }
    out
}

/// Writes an SVG histogram of set-up times (ms).
pub fn histogram(path: &Path, setup_ms: &[f64]) -> Result<(), String> {
    const BINS: usize = 20;
    let max = setup_ms.iter().copied().fold(1.0_f64, f64::max);
    let width = max / BINS as f64;
    let mut counts = [0u32; BINS];
    for &v in setup_ms {
        counts[((v / width) as usize).min(BINS - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("wakeline load: INVITE→200 ({} calls)", setup_ms.len()),
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..max, 0u32..top + top / 10 + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("ms")
            .y_desc("calls")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &n)| {
                let x0 = i as f64 * width;
                Rectangle::new([(x0, 0), (x0 + width, n)], BLUE.mix(0.6).filled())
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_writes_an_svg_with_one_bar_per_bin() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.svg");
        histogram(&p, &[1.0, 2.0, 2.5, 40.0]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..40.min(text.len())]);
        assert!(text.contains("INVITE→200 (4 calls)"));
        histogram(&p, &[]).unwrap();
    }
}
