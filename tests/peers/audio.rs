//! Audio for the interop tests: write a test tone, read a recorded WAV file, and check, block by
//! block with a Goertzel filter, that an expected tone dominates a set of probe frequencies.
#![allow(dead_code)]

use std::f64::consts::PI;
use std::path::Path;

/// Writes `secs` seconds of a sine at `hz` (16-bit, amplitude 1/4 of full scale) with `channels`
/// identical channels at `rate` Hz.
pub fn write_tone(path: &Path, rate: u32, channels: u16, hz: f64, secs: f64) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    let n = (f64::from(rate) * secs) as u64;
    for i in 0..n {
        let s = (8000.0 * (2.0 * PI * hz * i as f64 / f64::from(rate)).sin()) as i16;
        for _ in 0..channels {
            w.write_sample(s).expect("write sample");
        }
    }
    w.finalize().expect("finalize wav");
}

/// A decoded WAV file, as `f32` samples in -1.0..=1.0, mixed down to mono (channel mean).
#[derive(Debug, Clone)]
pub struct Wav {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Channels in the file.
    pub channels: u16,
    /// Bits per sample in the file.
    pub bits: u16,
    /// The samples, mixed down to mono.
    pub samples: Vec<f32>,
}

impl Wav {
    /// Length in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate)
    }
}

/// Reads a WAV file (16-bit integer or 32-bit float); panics with the path on any error.
pub fn read_wav(path: &Path) -> Wav {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("cannot read {path:?}: {e}"));
    let spec = reader.spec();
    let all: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{path:?}: {e}")),
        hound::SampleFormat::Int => {
            let scale = (1i64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 / scale))
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{path:?}: {e}"))
        }
    };
    let samples = all
        .chunks(usize::from(spec.channels.max(1)))
        .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
        .collect();
    Wav {
        rate: spec.sample_rate,
        channels: spec.channels,
        bits: spec.bits_per_sample,
        samples,
    }
}

/// The amplitude of the `hz` component of `block` (Goertzel over a Hann-windowed block): about
/// the peak amplitude of a sine at `hz`, whatever the block length.
pub fn tone_amplitude(block: &[f32], rate: u32, hz: f64) -> f64 {
    let n = block.len();
    if n == 0 {
        return 0.0;
    }
    let hann = |i: usize| 0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos();
    let window_sum: f64 = (0..n).map(hann).sum();
    let windowed = block
        .iter()
        .enumerate()
        .map(|(i, &x)| f64::from(x) * hann(i));
    2.0 * goertzel_power(windowed, rate, hz).sqrt() / window_sum
}

/// The Goertzel power of `hz` over `samples`.
pub fn goertzel_power(samples: impl Iterator<Item = f64>, rate: u32, hz: f64) -> f64 {
    let coeff = 2.0 * (2.0 * PI * hz / f64::from(rate)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0)
}

/// What [`tone_dominance`] found.
#[derive(Debug, Clone)]
pub struct ToneReport {
    /// The tone that should dominate, Hz.
    pub expected_hz: f64,
    /// Blocks analysed (after the skipped start).
    pub blocks: usize,
    /// Blocks where the tone dominated every probe by the required power ratio.
    pub dominant: usize,
    /// Per block: the expected tone's power over the strongest probe's power (in dB).
    pub ratios_db: Vec<f64>,
    /// Per block: the expected tone's amplitude.
    pub amplitudes: Vec<f64>,
}

impl ToneReport {
    /// The fraction of blocks where the tone dominated.
    pub fn dominant_fraction(&self) -> f64 {
        if self.blocks == 0 {
            0.0
        } else {
            self.dominant as f64 / self.blocks as f64
        }
    }

    /// The median power ratio in dB (tone over strongest probe).
    pub fn median_ratio_db(&self) -> f64 {
        median(&self.ratios_db)
    }

    /// The median amplitude of the tone.
    pub fn median_amplitude(&self) -> f64 {
        median(&self.amplitudes)
    }

    /// A one-line summary for reports and failure messages.
    pub fn summary(&self) -> String {
        format!(
            "{} Hz: {}/{} blocks dominant ({:.1}%), median tone/probe {:.1} dB, median amplitude {:.3}",
            self.expected_hz,
            self.dominant,
            self.blocks,
            100.0 * self.dominant_fraction(),
            self.median_ratio_db(),
            self.median_amplitude()
        )
    }
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The smallest amplitude (about -40 dBFS) that counts as "the tone is there": silence never
/// dominates, whatever the ratio of two tiny numbers.
pub const MIN_TONE_AMPLITUDE: f64 = 0.01;

/// Splits `samples` into `block_ms` blocks (the partial last block is dropped), skips the first
/// `skip_ms`, and counts the blocks where the `expected_hz` tone's power is at least
/// `min_power_ratio` times the strongest of `probes_hz`, with at least [`MIN_TONE_AMPLITUDE`].
pub fn tone_dominance(
    samples: &[f32],
    rate: u32,
    expected_hz: f64,
    probes_hz: &[f64],
    block_ms: u32,
    skip_ms: u32,
    min_power_ratio: f64,
) -> ToneReport {
    let block = (rate as usize * block_ms as usize) / 1000;
    let skip = (rate as usize * skip_ms as usize) / 1000;
    let mut report = ToneReport {
        expected_hz,
        blocks: 0,
        dominant: 0,
        ratios_db: Vec::new(),
        amplitudes: Vec::new(),
    };
    if block == 0 || samples.len() <= skip {
        return report;
    }
    for chunk in samples[skip..].chunks_exact(block) {
        let tone = tone_amplitude(chunk, rate, expected_hz);
        let probe = probes_hz
            .iter()
            .map(|&hz| tone_amplitude(chunk, rate, hz))
            .fold(0.0f64, f64::max);
        let ratio = (tone * tone) / (probe * probe).max(1e-20);
        report.blocks += 1;
        report.ratios_db.push(10.0 * ratio.max(1e-20).log10());
        report.amplitudes.push(tone);
        if tone >= MIN_TONE_AMPLITUDE && ratio >= min_power_ratio {
            report.dominant += 1;
        }
    }
    report
}

/// How much of a recording holds one tone, 100 ms block by block ([`assert_tone`]).
#[derive(Debug, Clone, Copy)]
pub struct ToneTally {
    /// 100 ms blocks in the recording.
    pub blocks: usize,
    /// Blocks that are not silent (RMS above 100/32768, about -50 dBFS).
    pub loud: usize,
    /// Loud blocks where the expected tone carries at least 10x the power of every probe
    /// frequency (half, 1.5x, 2x the tone, and the other test tone).
    pub tone: usize,
    /// `tone / loud` (0 when nothing was loud).
    pub purity: f64,
}

/// Counts the 100 ms blocks of `wav` that hold the tone `hz`; `other` is the other side's test
/// tone, used as one more probe (a recording of our own tone would be an echo, not the far end).
pub fn tone_tally(wav: &Wav, hz: f64, other: f64) -> ToneTally {
    let block = (wav.rate / 10) as usize;
    let probes = [hz * 0.5, hz * 1.5, hz * 2.0, other];
    let (mut blocks, mut loud, mut tone) = (0, 0, 0);
    for b in wav.samples.chunks_exact(block.max(1)) {
        blocks += 1;
        let power = |f: f64| goertzel_power(b.iter().map(|&x| f64::from(x)), wav.rate, f);
        let rms = (b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / b.len() as f64).sqrt();
        if rms < 100.0 / 32768.0 {
            continue;
        }
        loud += 1;
        let p = power(hz);
        if probes.iter().all(|&f| p > 10.0 * power(f)) {
            tone += 1;
        }
    }
    ToneTally {
        blocks,
        loud,
        tone,
        purity: if loud == 0 {
            0.0
        } else {
            tone as f64 / loud as f64
        },
    }
}

/// Panics unless `path` holds at least `min_secs` of the tone `hz` with a purity of 0.9.
pub fn assert_tone(path: &Path, hz: f64, other: f64, min_secs: f64) -> ToneTally {
    let wav = read_wav(path);
    let t = tone_tally(&wav, hz, other);
    assert!(
        t.tone as f64 / 10.0 >= min_secs && t.purity >= 0.9,
        "{}: expected {min_secs} s of {hz} Hz at {} Hz, found {t:?}",
        path.display(),
        wav.rate
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f64, amplitude: f64, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    #[test]
    fn finds_the_written_tone_and_not_another() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.wav");
        write_tone(&p, 48000, 2, 1000.0, 1.0);
        let wav = read_wav(&p);
        assert_eq!(wav.rate, 48000);
        assert_eq!(wav.samples.len(), 48000);
        let t = tone_tally(&wav, 1000.0, 440.0);
        assert_eq!((t.blocks, t.loud, t.tone), (10, 10, 10));
        let wrong = tone_tally(&wav, 440.0, 1000.0);
        assert_eq!(wrong.tone, 0);
    }

    #[test]
    fn goertzel_measures_the_amplitude_of_a_sine() {
        let x = sine(440.0, 0.5, 48_000, 4800);
        let a = tone_amplitude(&x, 48_000, 440.0);
        assert!((a - 0.5).abs() < 0.01, "{a}");
        assert!(tone_amplitude(&x, 48_000, 1000.0) < 0.001);
    }

    #[test]
    fn dominance_tells_tone_from_other_tone_and_from_silence() {
        let rate = 48_000;
        let mut x = sine(1000.0, 0.5, rate, rate as usize);
        let r = tone_dominance(&x, rate, 1000.0, &[300.0, 440.0, 2500.0], 100, 200, 10.0);
        assert_eq!((r.blocks, r.dominant), (8, 8), "{}", r.summary());
        let r = tone_dominance(&x, rate, 440.0, &[300.0, 1000.0], 100, 200, 10.0);
        assert_eq!(r.dominant, 0, "{}", r.summary());
        x.iter_mut().take(rate as usize / 2).for_each(|s| *s = 0.0);
        let r = tone_dominance(&x, rate, 1000.0, &[300.0, 440.0], 100, 0, 10.0);
        assert_eq!((r.blocks, r.dominant), (10, 5), "{}", r.summary());
    }
}
