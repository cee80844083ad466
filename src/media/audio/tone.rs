//! Generated sources (a sine tone, silence) and the null sink.
//!
//! Each is a [`PacedSource`] / [`PacedSink`] ticked once per period by its
//! owner and feeds the same
//! [`RtCapture`](super::rt::RtCapture) / [`RtPlayback`](super::rt::RtPlayback)
//! code as a device, one period at a time, with buffers allocated before the
//! thread starts.

use std::sync::Arc;

use rtrb::{Consumer, Producer};

use super::paced::{PacedSink, PacedSource};
use super::rt::{RtStats, PIPELINE_RATE};
use super::{capture_core, playback_core, AudioConfig, StreamInfo};

/// Amplitude of generated tones: −6 dBFS.
pub const TONE_AMPLITUDE: f32 = 0.5;

/// A phase-continuous sine oscillator producing `f32` samples (full scale
/// is ±1.0, as for an `f32` device).
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    phase: f64,
    step: f64,
    amplitude: f32,
}

impl ToneGenerator {
    /// A sine at `hz` sampled at `rate` Hz with the given peak amplitude
    /// (1.0 = full scale).
    pub fn new(hz: f32, rate: u32, amplitude: f32) -> Self {
        ToneGenerator {
            phase: 0.0,
            step: std::f64::consts::TAU * f64::from(hz) / f64::from(rate.max(1)),
            amplitude,
        }
    }

    /// Fill `out` with the next samples of the tone.
    pub fn fill(&mut self, out: &mut [f32]) {
        for s in out {
            *s = self.amplitude * self.phase.sin() as f32;
            self.phase += self.step;
            if self.phase >= std::f64::consts::TAU {
                self.phase -= std::f64::consts::TAU;
            }
        }
    }
}

fn info(backend: String) -> StreamInfo {
    StreamInfo {
        backend,
        sample_rate: PIPELINE_RATE,
        channels: 1,
        sample_format: "f32".into(),
        buffer_frames: None,
    }
}

/// A paced 48 kHz sine source at `hz` feeding `ring`.
pub fn tone_source(
    hz: f32,
    ring: Producer<i16>,
    config: &AudioConfig,
) -> (PacedSource, Arc<RtStats>, StreamInfo) {
    let rt = capture_core(ring, PIPELINE_RATE, 1);
    let stats = rt.stats();
    let gen = ToneGenerator::new(hz, PIPELINE_RATE, TONE_AMPLITUDE);
    let buf = vec![0.0f32; config.period_frames(PIPELINE_RATE)];
    (
        PacedSource::Tone(gen, buf, rt),
        stats,
        info(format!("tone:{hz}")),
    )
}

/// A paced 48 kHz source of digital silence feeding `ring`.
pub fn silence_source(
    ring: Producer<i16>,
    config: &AudioConfig,
) -> (PacedSource, Arc<RtStats>, StreamInfo) {
    let rt = capture_core(ring, PIPELINE_RATE, 1);
    let stats = rt.stats();
    let buf = vec![0.0f32; config.period_frames(PIPELINE_RATE)];
    (PacedSource::Silence(buf, rt), stats, info("silence".into()))
}

/// A paced 48 kHz sink that drains `ring` and discards the audio (underruns
/// are still counted).
pub fn null_sink(
    ring: Consumer<i16>,
    config: &AudioConfig,
) -> (PacedSink, Arc<RtStats>, StreamInfo) {
    let rt = playback_core(ring, PIPELINE_RATE, 1);
    let stats = rt.stats();
    let buf = vec![0i16; config.period_frames(PIPELINE_RATE)];
    let mut i = info("null".into());
    i.sample_format = "i16".into();
    (PacedSink::Null(buf, rt), stats, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_is_continuous_across_fills() {
        let mut a = ToneGenerator::new(1000.0, 48000, 1.0);
        let mut whole = vec![0.0; 960];
        a.fill(&mut whole);
        let mut b = ToneGenerator::new(1000.0, 48000, 1.0);
        let mut parts = vec![0.0; 960];
        b.fill(&mut parts[..100]);
        b.fill(&mut parts[100..]);
        assert_eq!(whole, parts);
        // 1 kHz at 48 kHz: quarter period is 12 samples.
        assert!((whole[12] - 1.0).abs() < 1e-6);
        assert!(whole[24].abs() < 1e-5);
    }
}
