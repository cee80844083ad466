//! `--report FILE.svg|FILE.html`: the call's quality over time, drawn with plotters from the
//! `MediaStats` samples (about one a second).

use plotters::prelude::*;
use std::path::{Path, PathBuf};
use wakeline::media::{MediaReport, MediaSnapshot};

/// One point in time of a call's media.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// Seconds since media started.
    pub t: f64,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Loss so far, percent of expected packets.
    pub loss_pct: f64,
    /// Audio concealed so far, ms.
    pub concealed_ms: f64,
    /// Jitter-buffer delay, ms.
    pub jitter_buffer_ms: f64,
    /// Input level, dBFS (−90 for silence).
    pub input_db: f64,
    /// Output level, dBFS.
    pub output_db: f64,
}

fn dbfs(level: f32) -> f64 {
    if level > 0.0 {
        (20.0 * f64::from(level).log10()).max(-90.0)
    } else {
        -90.0
    }
}

impl Sample {
    /// The sample of one snapshot.
    pub fn from_snapshot(s: &MediaSnapshot) -> Self {
        let st = &s.stats;
        Sample {
            t: s.elapsed.as_secs_f64(),
            jitter_ms: st.jitter_ms,
            loss_pct: super::status::loss_percent(st.rtp_received, st.lost),
            concealed_ms: st.concealed_ms,
            jitter_buffer_ms: st.jitter_buffer_ms,
            input_db: dbfs(s.input_level),
            output_db: dbfs(s.output_level),
        }
    }
}

/// The summary table of a call's media report: (label, value) rows.
pub fn table(report: Option<&MediaReport>) -> Vec<(&'static str, String)> {
    let Some(r) = report else {
        return vec![("media", "no report".into())];
    };
    let mut rows = vec![("duration", format!("{:.1} s", r.duration.as_secs_f64()))];
    if let Some(e) = &r.error {
        rows.push(("media error", e.clone()));
    }
    if let Some(s) = &r.stats {
        rows.extend([
            ("codec", s.codec.to_ascii_lowercase()),
            (
                "packets",
                format!("sent {}, received {}", s.rtp_sent, s.rtp_received),
            ),
            (
                "loss",
                format!(
                    "{} lost ({:.1} %), peer reports {} of ours",
                    s.lost,
                    super::status::loss_percent(s.rtp_received, s.lost),
                    s.remote_lost
                ),
            ),
            ("jitter", format!("{:.1} ms", s.jitter_ms)),
            (
                "RTT",
                s.rtt_ms
                    .map_or("not measured".into(), |r| format!("{r:.0} ms")),
            ),
            (
                "concealment",
                format!(
                    "{:.0} ms ({} frames), FEC rebuilt {}",
                    s.concealed_ms, s.concealed_frames, s.fec_recovered
                ),
            ),
            (
                "MOS",
                s.mos
                    .map_or("none: no audio received".into(), |m| format!("{m:.2}")),
            ),
        ]);
    }
    rows
}

/// The SVG of the samples: the summary table, then four stacked charts over the whole call.
pub fn svg(
    title: &str,
    samples: &[Sample],
    rows: &[(&'static str, String)],
) -> Result<String, String> {
    let mut out = String::new();
    {
        let table_h = 24 + 18 * rows.len() as u32;
        let root = SVGBackend::with_string(&mut out, (900, 900 + table_h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| e.to_string())?;
        let (top, rest) = root.split_vertically(table_h);
        for (i, (label, value)) in rows.iter().enumerate() {
            let y = 8 + 18 * i as i32;
            top.draw(&Text::new(*label, (60, y), ("sans-serif", 14)))
                .map_err(|e| e.to_string())?;
            top.draw(&Text::new(value.as_str(), (200, y), ("sans-serif", 14)))
                .map_err(|e| e.to_string())?;
        }
        let panels = rest.split_evenly((4, 1));
        let t_max = samples.iter().map(|s| s.t).fold(1.0_f64, f64::max);
        type Series<'a> = (&'a str, RGBColor, fn(&Sample) -> f64);
        type Chart<'a> = (&'a str, Vec<Series<'a>>, Option<(f64, f64)>);
        let charts: [Chart; 4] = [
            (
                "Jitter and jitter-buffer delay (ms)",
                vec![
                    ("jitter", RED, |s| s.jitter_ms),
                    ("jitter buffer", BLUE, |s| s.jitter_buffer_ms),
                ],
                None,
            ),
            (
                "Loss (% of expected packets)",
                vec![("loss", RED, |s| s.loss_pct)],
                None,
            ),
            (
                "Concealment (ms, cumulative)",
                vec![("concealed", MAGENTA, |s| s.concealed_ms)],
                None,
            ),
            (
                "Audio levels (dBFS)",
                vec![
                    ("input (ours)", GREEN, |s| s.input_db),
                    ("output (far end)", BLUE, |s| s.output_db),
                ],
                Some((-90.0, 0.0)),
            ),
        ];
        for (area, (caption, series, fixed)) in panels.iter().zip(charts) {
            let (lo, hi) = fixed.unwrap_or_else(|| {
                let hi = samples
                    .iter()
                    .flat_map(|s| series.iter().map(move |(_, _, f)| f(s)))
                    .fold(0.0_f64, f64::max);
                (0.0, if hi > 0.0 { hi * 1.1 } else { 1.0 })
            });
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 16))
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0..t_max, lo..hi)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("s")
                .draw()
                .map_err(|e| e.to_string())?;
            for (name, color, f) in series {
                chart
                    .draw_series(LineSeries::new(samples.iter().map(|s| (s.t, f(s))), color))
                    .map_err(|e| e.to_string())?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The SVG inline in a small HTML page.
pub fn html(title: &str, svg: &str) -> String {
    let esc = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc}</title></head>\n\
         <body style=\"font-family:sans-serif\">\n<h1>{esc}</h1>\n{svg}\n</body></html>\n"
    )
}

/// Writes the report: HTML when the path ends in `.html`/`.htm`, SVG otherwise.
pub fn write(
    path: &Path,
    title: &str,
    samples: &[Sample],
    rows: &[(&'static str, String)],
) -> Result<(), String> {
    let svg = svg(title, samples, rows)?;
    let is_html = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    let text = if is_html { html(title, &svg) } else { svg };
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `listen --report FILE.svg`: call `n` (1-based) goes to `FILE-<n>.svg`.
pub fn numbered(path: &Path, n: u64) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Sample> {
        (0..10)
            .map(|i| Sample {
                t: f64::from(i),
                jitter_ms: f64::from(i) * 0.5,
                loss_pct: if i > 5 { 2.0 } else { 0.0 },
                concealed_ms: f64::from(i) * 20.0,
                jitter_buffer_ms: 40.0,
                input_db: -20.0,
                output_db: -30.0,
            })
            .collect()
    }

    #[test]
    fn svg_has_all_four_charts() {
        let s = svg("call 1", &samples(), &table(None)).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..40]);
        for caption in ["Jitter", "Loss", "Concealment", "Audio levels", "call 1"] {
            assert!(s.contains(caption), "missing {caption}");
        }
        assert!(s.matches("<polyline").count() >= 6);
    }

    #[test]
    fn the_report_carries_a_summary_table() {
        let report = MediaReport {
            stats: None,
            capture: Default::default(),
            playback: Default::default(),
            duration: std::time::Duration::from_millis(2500),
            error: Some("record x.wav: disk full".into()),
        };
        let rows = table(Some(&report));
        assert_eq!(rows[0], ("duration", "2.5 s".to_string()));
        assert!(rows
            .iter()
            .any(|(l, v)| *l == "media error" && v.contains("disk full")));
        let s = svg("call 2", &samples(), &rows).unwrap();
        assert!(
            s.contains("duration") && s.contains("disk full"),
            "table drawn"
        );
    }

    #[test]
    fn empty_samples_still_draw() {
        let s = svg("no media", &[], &[]).unwrap();
        assert!(s.contains("Jitter"));
    }

    #[test]
    fn html_wraps_the_svg_and_files_are_written() {
        let h = html("a<b", "<svg></svg>");
        assert!(h.contains("<title>a&lt;b</title>") && h.contains("<svg></svg>"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.html");
        write(&p, "t", &samples(), &[]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("<!DOCTYPE html>") && text.contains("<svg"));
    }

    #[test]
    fn listen_reports_are_numbered() {
        assert_eq!(
            numbered(Path::new("/tmp/q.svg"), 3),
            PathBuf::from("/tmp/q-3.svg")
        );
        assert_eq!(numbered(Path::new("q"), 1), PathBuf::from("q-1"));
    }

    #[test]
    fn samples_convert_levels_to_db() {
        assert_eq!(dbfs(1.0), 0.0);
        assert_eq!(dbfs(0.0), -90.0);
        assert!((dbfs(0.1) + 20.0).abs() < 1e-5);
    }
}
