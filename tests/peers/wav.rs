//! WAV files for the interop tests: writing a test tone, reading a recording, and finding a tone
//! in it with a Goertzel filter, 100 ms block by block.
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

/// A recording, mixed down to mono.
pub struct Recording {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Mono samples (the mean of the channels).
    pub samples: Vec<f64>,
}

/// Reads a 16-bit PCM WAV and mixes it down to mono.
pub fn read(path: &Path) -> Recording {
    let mut r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(spec.bits_per_sample, 16, "{}: {spec:?}", path.display());
    let ch = usize::from(spec.channels.max(1));
    let all: Vec<i16> = r.samples::<i16>().map_while(Result::ok).collect();
    let samples = all
        .chunks(ch)
        .map(|c| c.iter().map(|&s| f64::from(s)).sum::<f64>() / c.len() as f64)
        .collect();
    Recording {
        rate: spec.sample_rate,
        samples,
    }
}

/// The Goertzel power of `hz` in `block`.
pub fn goertzel(block: &[f64], rate: u32, hz: f64) -> f64 {
    let w = 2.0 * PI * hz / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in block {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0)
}

/// What a recording holds at one frequency.
#[derive(Debug, Clone, Copy)]
pub struct ToneReport {
    /// 100 ms blocks in the recording.
    pub blocks: usize,
    /// Blocks that are not silent (RMS above 100, about -50 dBFS).
    pub loud: usize,
    /// Loud blocks where the expected tone carries at least 10x the power of every probe
    /// frequency (half, 1.5x, 2x the tone, and the other test tone).
    pub tone: usize,
    /// `tone / loud` (0 when nothing was loud).
    pub purity: f64,
}

/// Checks every 100 ms block of `rec` for the tone `hz`; `other` is the other side's test tone,
/// used as one more probe (a recording of our own tone would be an echo, not the far end).
pub fn tone_report(rec: &Recording, hz: f64, other: f64) -> ToneReport {
    let block = (rec.rate / 10) as usize;
    let probes = [hz * 0.5, hz * 1.5, hz * 2.0, other];
    let (mut blocks, mut loud, mut tone) = (0, 0, 0);
    for b in rec.samples.chunks_exact(block.max(1)) {
        blocks += 1;
        let rms = (b.iter().map(|x| x * x).sum::<f64>() / b.len() as f64).sqrt();
        if rms < 100.0 {
            continue;
        }
        loud += 1;
        let p = goertzel(b, rec.rate, hz);
        if probes.iter().all(|&f| p > 10.0 * goertzel(b, rec.rate, f)) {
            tone += 1;
        }
    }
    ToneReport {
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
pub fn assert_tone(path: &Path, hz: f64, other: f64, min_secs: f64) -> ToneReport {
    let rec = read(path);
    let r = tone_report(&rec, hz, other);
    assert!(
        r.tone as f64 / 10.0 >= min_secs && r.purity >= 0.9,
        "{}: expected {min_secs} s of {hz} Hz at {} Hz, found {r:?}",
        path.display(),
        rec.rate
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_written_tone_and_not_another() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.wav");
        write_tone(&p, 48000, 2, 1000.0, 1.0);
        let rec = read(&p);
        assert_eq!(rec.rate, 48000);
        assert_eq!(rec.samples.len(), 48000);
        let r = tone_report(&rec, 1000.0, 440.0);
        assert_eq!((r.blocks, r.loud, r.tone), (10, 10, 10));
        let wrong = tone_report(&rec, 440.0, 1000.0);
        assert_eq!(wrong.tone, 0);
    }
}
