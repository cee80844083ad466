//! Generated sources (a sine tone, silence) and the null sink.
//!
//! Each is a [`PacedSource`] / [`PacedSink`] ticked once per period by its
//! owner and feeds the same
//! [`RtCapture`](super::rt::RtCapture) / [`RtPlayback`](super::rt::RtPlayback)
//! code as a device, one period at a time, with no buffer: the sources hand
//! their samples to the capture ring one by one, the null sink drains the
//! playback ring without converting the samples it throws away.

use std::sync::Arc;

use rtrb::{Consumer, Producer};

use super::paced::{PacedSink, PacedSource};
use super::rt::{RtStats, PIPELINE_RATE};
use super::{capture_core, playback_core, AudioConfig, StreamInfo};

/// Amplitude of generated tones: −6 dBFS.
pub const TONE_AMPLITUDE: f32 = 0.5;

/// A phase-continuous sine oscillator producing `f32` samples (full scale
/// is ±1.0, as for an `f32` device).
///
/// It turns a unit phasor by the tone's step each sample (a complex
/// multiplication, far cheaper than a `sin` per sample: with hundreds of
/// calls playing tones it showed in profiles) and pulls the phasor back to
/// unit length every 1,024 samples, counted from the start so the
/// output does not depend on how the samples are split between fills.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    /// The phasor: (cos, sin) of the current phase.
    re: f64,
    im: f64,
    /// (cos, sin) of the step.
    step_re: f64,
    step_im: f64,
    amplitude: f32,
    /// Samples produced so far, modulo [`RENORM_EVERY`].
    count: u32,
}

/// Samples between two renormalisations of the phasor (rounding makes its
/// length drift by about 1e-16 per step).
const RENORM_EVERY: u32 = 1024;

impl ToneGenerator {
    /// A sine at `hz` sampled at `rate` Hz with the given peak amplitude
    /// (1.0 = full scale).
    pub fn new(hz: f32, rate: u32, amplitude: f32) -> Self {
        let step = std::f64::consts::TAU * f64::from(hz) / f64::from(rate.max(1));
        ToneGenerator {
            re: 1.0,
            im: 0.0,
            step_re: step.cos(),
            step_im: step.sin(),
            amplitude,
            count: 0,
        }
    }

    /// Fill `out` with the next samples of the tone.
    pub fn fill(&mut self, out: &mut [f32]) {
        for s in out {
            *s = self.next_sample();
        }
    }

    /// The next sample of the tone.
    #[inline]
    pub fn next_sample(&mut self) -> f32 {
        let s = self.amplitude * self.im as f32;
        let re = self.re * self.step_re - self.im * self.step_im;
        self.im = self.im * self.step_re + self.re * self.step_im;
        self.re = re;
        self.count += 1;
        if self.count == RENORM_EVERY {
            self.count = 0;
            let len = (self.re * self.re + self.im * self.im).sqrt();
            self.re /= len;
            self.im /= len;
        }
        s
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
    (
        PacedSource::Tone(gen, config.period_frames(PIPELINE_RATE), rt),
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
    let period = config.period_frames(PIPELINE_RATE);
    (
        PacedSource::Silence(period, rt),
        stats,
        info("silence".into()),
    )
}

/// A paced 48 kHz sink that drains `ring` and discards the audio (underruns
/// are still counted).
pub fn null_sink(
    ring: Consumer<i16>,
    config: &AudioConfig,
) -> (PacedSink, Arc<RtStats>, StreamInfo) {
    let rt = playback_core(ring, PIPELINE_RATE, 1);
    let stats = rt.stats();
    let mut i = info("null".into());
    i.sample_format = "i16".into();
    (
        PacedSink::Null(config.period_frames(PIPELINE_RATE), rt),
        stats,
        i,
    )
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

    #[test]
    fn tone_keeps_its_amplitude_and_phase_for_an_hour() {
        // 440 Hz for one hour at 48 kHz, then compare with sin() at the same sample index.
        let mut g = ToneGenerator::new(440.0, 48000, 1.0);
        let mut buf = vec![0.0f32; 960];
        let periods = 3600 * 50;
        for _ in 0..periods {
            g.fill(&mut buf);
        }
        g.fill(&mut buf);
        let start = (periods * 960) as f64;
        for (i, &v) in buf.iter().enumerate() {
            let want = (std::f64::consts::TAU * 440.0 * (start + i as f64) / 48000.0).sin();
            assert!(
                (f64::from(v) - want).abs() < 1e-4,
                "sample {i}: {v} vs {want}"
            );
        }
    }
}
