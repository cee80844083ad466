//! Turning the media flags into [`MediaOptions`], and the `--summary` file.

use super::args::MediaArgs;
use super::events::report_json;
use super::run::Fail;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use wakeline::driver::MediaOptions;
use wakeline::media::audio::{self, AudioConfig, AudioSink, AudioSource};
use wakeline::media::MediaReport;
use wakeline::signaling::sdp::Codec;

/// Parses `--codecs opus,pcmu,pcma`.
pub fn codecs(list: &str) -> Result<Vec<Codec>, Fail> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let codec = match name.to_ascii_lowercase().as_str() {
            "opus" => Codec::Opus,
            "pcmu" => Codec::Pcmu,
            "pcma" => Codec::Pcma,
            other => {
                return Err(Fail::usage(format!(
                    "--codecs: unknown codec {other:?} (opus, pcmu, pcma)"
                )))
            }
        };
        if !out.contains(&codec) {
            out.push(codec);
        }
    }
    if out.is_empty() {
        return Err(Fail::usage("--codecs: no codec given"));
    }
    Ok(out)
}

/// `--list-devices`: one line per device.
pub fn list_devices() -> Result<(), Fail> {
    let quiet = quiet_alsa();
    let devices = audio::device::list_devices();
    alsa_noise(quiet);
    let devices = devices.map_err(|e| Fail::media(format!("audio devices: {e}")))?;
    if devices.is_empty() {
        println!("no audio devices");
    }
    for d in devices {
        let kind = match (d.input, d.output) {
            (true, true) => "input+output",
            (true, false) => "input",
            (false, true) => "output",
            (false, false) => "unusable",
        };
        println!("{kind:13} {}", d.name);
    }
    Ok(())
}

/// While probing, alsa-lib writes a dozen lines of its own to stderr when there is no sound
/// card ("ALSA lib confmisc.c: cannot find card '0'", ...). On this thread they go to a buffer
/// instead (alsa's thread-local error handler, a safe API); [`alsa_noise`] logs them at debug
/// level. The one line that says which fallback we took is ours.
#[cfg(target_os = "linux")]
fn quiet_alsa() -> Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>> {
    alsa::Output::local_error_handler().ok()
}

#[cfg(not(target_os = "linux"))]
fn quiet_alsa() -> Option<()> {
    None
}

/// Logs (debug) what alsa-lib said while it was quiet.
#[cfg(target_os = "linux")]
fn alsa_noise(buffer: Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>>) {
    if let Some(b) = buffer {
        let text = b.borrow().to_string();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::debug!("alsa-lib: {line}");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn alsa_noise(_: Option<()>) {}

/// Resolves `--mic`/`--speaker`/`--record` into media options. Each device side is opened once
/// here, so a missing device is reported before any call: an explicit `default` or device name
/// fails with a clear message; without the flag we fall back to silence/null and say so.
pub fn options(args: &MediaArgs) -> Result<MediaOptions, Fail> {
    let cfg = AudioConfig::default();
    let source = match &args.mic {
        Some(s) => s
            .parse::<AudioSource>()
            .map_err(|e| Fail::usage(format!("--mic: {e}")))?,
        None => AudioSource::Default,
    };
    let sink = match &args.speaker {
        Some(s) => s
            .parse::<AudioSink>()
            .map_err(|e| Fail::usage(format!("--speaker: {e}")))?,
        None => AudioSink::Default,
    };
    let probed = (probe_source(&source), probe_sink(&sink));
    let source = match probed.0 {
        Ok(()) => source,
        Err(e) if args.mic.is_none() => {
            eprintln!("no usable input device ({e}); using silence (choose with --mic)");
            AudioSource::Silence
        }
        Err(e) => {
            return Err(Fail::media(format!(
                "--mic {}: {e}",
                args.mic.as_deref().unwrap_or("")
            )))
        }
    };
    let sink = match probed.1 {
        Ok(()) => sink,
        Err(e) if args.speaker.is_none() => {
            eprintln!(
                "no usable output device ({e}); far-end audio is discarded (choose with --speaker)"
            );
            AudioSink::Null
        }
        Err(e) => {
            return Err(Fail::media(format!(
                "--speaker {}: {e}",
                args.speaker.as_deref().unwrap_or("")
            )))
        }
    };
    Ok(MediaOptions {
        source,
        sink,
        record: args.record.clone(),
        audio: cfg,
        latching: args.latching.unwrap_or_default(),
        expect_tone: args.expect_tone.filter(|hz| *hz > 0.0),
        encoder: args.encoder.config(),
        ..MediaOptions::default()
    })
}

/// Opens `source` once and closes it: `Err` with the reason when it cannot capture.
pub fn probe_source(source: &AudioSource) -> Result<(), audio::AudioError> {
    let quiet = quiet_alsa();
    let probed = audio::start(source, &AudioSink::Null, &AudioConfig::default()).map(drop);
    alsa_noise(quiet);
    probed
}

/// Opens `sink` once and closes it: `Err` with the reason when it cannot play (no sound card).
pub fn probe_sink(sink: &AudioSink) -> Result<(), audio::AudioError> {
    let quiet = quiet_alsa();
    let probed = audio::start(&AudioSource::Silence, sink, &AudioConfig::default()).map(drop);
    alsa_noise(quiet);
    probed
}

/// Writes the demo's sound: a three-note chime (C5, E5, G5, 250 ms each, then 250 ms of
/// silence), 48 kHz mono 16-bit; the WAV source loops it.
pub fn write_chime(path: &Path) -> Result<std::path::PathBuf, hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    let note = 12_000usize;
    for hz in [523.25f64, 659.25, 783.99, 0.0] {
        for i in 0..note {
            let t = i as f64 / 48_000.0;
            // A short fade at both ends of each note avoids clicks.
            let edge = (i.min(note - i) as f64 / 480.0).min(1.0);
            let v = 0.4 * edge * (2.0 * std::f64::consts::PI * hz * t).sin();
            w.write_sample((v * 32767.0) as i16)?;
        }
    }
    w.finalize()?;
    Ok(path.to_path_buf())
}

/// The summary of one call: its end and its media report.
pub fn summary(
    status: Option<u16>,
    reason: &str,
    outcome: &str,
    report: Option<&MediaReport>,
) -> Value {
    let mut v = match report {
        Some(r) => report_json(r),
        None => json!({}),
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("status".into(), json!(status));
        o.insert("reason".into(), json!(reason));
        o.insert("outcome".into(), json!(outcome));
    }
    v
}

/// `--summary`: pairs each call's media report with its end and appends one JSON object per
/// line, with the call's `call_id`, `start` (RFC 3339) and `peer` (the far end's URI).
pub struct Summaries {
    path: Option<std::path::PathBuf>,
    reports: std::collections::HashMap<wakeline::CallHandle, Box<MediaReport>>,
    calls: std::collections::HashMap<wakeline::CallHandle, (String, String)>,
    append: bool,
}

impl Summaries {
    /// Writes nothing when `path` is `None`. `append`: add lines to what the file holds
    /// (`listen`), or start it afresh with the first call (`call`).
    pub fn new(path: Option<std::path::PathBuf>, append: bool) -> Self {
        Summaries {
            path,
            reports: Default::default(),
            calls: Default::default(),
            append,
        }
    }

    /// A call we placed to `peer` starts now.
    pub fn begin(&mut self, call: wakeline::CallHandle, peer: &str) {
        self.calls
            .insert(call, (super::events::now_rfc3339_ms(), peer.to_string()));
    }

    /// Keeps a call's start, peer and `MediaReport`; writes the summary line on `Ended`.
    pub fn note(&mut self, ev: &wakeline::Event) {
        let Some(path) = &self.path else { return };
        match ev {
            wakeline::Event::Incoming { call, from, .. } => {
                self.calls
                    .insert(*call, (super::events::now_rfc3339_ms(), from.clone()));
            }
            wakeline::Event::MediaReport { call, report, .. } => {
                self.reports.insert(*call, report.clone());
            }
            wakeline::Event::Ended {
                call,
                call_id,
                status,
                reason,
                outcome,
                ..
            } => {
                let report = self.reports.remove(call);
                let mut v = summary(
                    *status,
                    reason,
                    super::events::outcome_name(*outcome),
                    report.as_deref(),
                );
                let (start, peer) = self.calls.remove(call).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("call_id".into(), json!(call_id));
                    o.insert("start".into(), json!(start));
                    o.insert("peer".into(), json!(peer));
                }
                write_summary(path, &v, self.append);
                self.append = true;
            }
            _ => {}
        }
    }
}

/// Writes `--summary`: the whole file (`append == false`) or one more line.
pub fn write_summary(path: &Path, value: &Value, append: bool) {
    let result = if append {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{value}"))
    } else {
        std::fs::write(path, format!("{value}\n"))
    };
    if let Err(e) = result {
        tracing::warn!("--summary {}: {e}", path.display());
    }
}
