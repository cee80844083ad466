//! The real-time callback core, independent of any audio backend.
//!
//! [`RtCapture`] turns device frames (any channel count, rate and supported
//! sample type) into the pipeline's format — 48 kHz mono `i16` — and pushes
//! them into the capture ring. [`RtPlayback`] pops 48 kHz mono `i16` from the
//! playback ring and writes device frames, the same sample on every channel.
//!
//! Both are built with all their state up front. The `process_*` methods do
//! no allocation, take no lock, make no system call and log nothing; their
//! loops are bounded by the buffer they are given (times the small constant
//! resampling ratio). A full capture ring drops samples and counts an
//! overrun; an empty playback ring plays silence and counts an underrun.
//! The counters live in an [`RtStats`] shared through an `Arc`, read with
//! relaxed atomic loads from any thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rtrb::{Consumer, Producer};

use super::resample::Resampler;

/// The pipeline's sample rate: every ring carries 48 kHz mono `i16`.
pub const PIPELINE_RATE: u32 = 48_000;

/// A device sample type the real-time code can convert.
///
/// Values are exchanged on the `i16` scale as `f32` (−32768.0 ..= 32767.0).
pub trait Sample: Copy + Send + 'static {
    /// The value of silence for this type.
    const SILENCE: Self;
    /// This sample on the `i16` scale.
    fn to_pcm(self) -> f32;
    /// A sample from a value on the `i16` scale (rounded and clamped).
    fn from_pcm(v: f32) -> Self;
}

impl Sample for i16 {
    const SILENCE: Self = 0;
    #[inline]
    fn to_pcm(self) -> f32 {
        f32::from(self)
    }
    #[inline]
    fn from_pcm(v: f32) -> Self {
        crate::media::pcm::round_to_i16(v)
    }
}

impl Sample for f32 {
    const SILENCE: Self = 0.0;
    #[inline]
    fn to_pcm(self) -> f32 {
        self * 32768.0
    }
    #[inline]
    fn from_pcm(v: f32) -> Self {
        (v / 32768.0).clamp(-1.0, 1.0)
    }
}

impl Sample for f64 {
    const SILENCE: Self = 0.0;
    #[inline]
    fn to_pcm(self) -> f32 {
        (self * 32768.0) as f32
    }
    #[inline]
    fn from_pcm(v: f32) -> Self {
        (f64::from(v) / 32768.0).clamp(-1.0, 1.0)
    }
}

impl Sample for i32 {
    const SILENCE: Self = 0;
    #[inline]
    fn to_pcm(self) -> f32 {
        self as f32 / 65536.0
    }
    #[inline]
    fn from_pcm(v: f32) -> Self {
        i32::from(i16::from_pcm(v)) << 16
    }
}

impl Sample for u16 {
    const SILENCE: Self = 0x8000;
    #[inline]
    fn to_pcm(self) -> f32 {
        f32::from(self) - 32768.0
    }
    #[inline]
    fn from_pcm(v: f32) -> Self {
        (i32::from(i16::from_pcm(v)) + 32768) as u16
    }
}

/// Counters of one real-time stream, shared with other threads.
///
/// Written by the audio thread with relaxed stores; read with
/// [`RtStats::snapshot`] from anywhere.
#[derive(Debug, Default)]
pub struct RtStats {
    callbacks: AtomicU64,
    frames: AtomicU64,
    overruns: AtomicU64,
    underruns: AtomicU64,
    lost_samples: AtomicU64,
}

/// A copy of an [`RtStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtStatsSnapshot {
    /// How many times `process_*` ran.
    pub callbacks: u64,
    /// Device frames processed (one frame = one sample per channel).
    pub frames: u64,
    /// Capture periods in which the ring was full and samples were dropped.
    pub overruns: u64,
    /// Playback periods in which the ring ran dry and silence was played.
    pub underruns: u64,
    /// 48 kHz samples dropped (capture) or replaced by silence (playback).
    pub lost_samples: u64,
}

impl RtStats {
    /// Read all counters (relaxed; each is individually exact).
    pub fn snapshot(&self) -> RtStatsSnapshot {
        RtStatsSnapshot {
            callbacks: self.callbacks.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            overruns: self.overruns.load(Ordering::Relaxed),
            underruns: self.underruns.load(Ordering::Relaxed),
            lost_samples: self.lost_samples.load(Ordering::Relaxed),
        }
    }

    /// Only the audio thread writes, so load + store is enough (no RMW).
    #[inline]
    fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
    }

    #[inline]
    fn record(&self, frames: usize, lost: u64, overrun: bool, underrun: bool) {
        Self::add(&self.callbacks, 1);
        Self::add(&self.frames, frames as u64);
        Self::add(&self.lost_samples, lost);
        Self::add(&self.overruns, u64::from(overrun));
        Self::add(&self.underruns, u64::from(underrun));
    }
}

/// Device → capture ring: mix to mono, resample to 48 kHz, convert to `i16`.
pub struct RtCapture {
    ring: Producer<i16>,
    channels: usize,
    resampler: Resampler,
    stats: Arc<RtStats>,
}

impl RtCapture {
    /// Capture from a device delivering `channels` interleaved channels at
    /// `device_rate` Hz into `ring` (48 kHz mono `i16`).
    pub fn new(ring: Producer<i16>, device_rate: u32, channels: u16) -> Self {
        RtCapture {
            ring,
            channels: usize::from(channels.max(1)),
            resampler: Resampler::new(device_rate, PIPELINE_RATE),
            stats: Arc::new(RtStats::default()),
        }
    }

    /// The counters, to read from other threads.
    pub fn stats(&self) -> Arc<RtStats> {
        Arc::clone(&self.stats)
    }

    /// Process one period of interleaved device samples. Real-time safe.
    ///
    /// A trailing partial frame (fewer samples than channels) is ignored.
    pub fn process_capture<T: Sample>(&mut self, input: &[T]) {
        if self.channels == 1 && self.resampler.is_passthrough() {
            // 48 kHz mono (tones, most files): one chunk instead of a ring push per sample.
            let n = input.len().min(self.ring.slots());
            if let Ok(chunk) = self.ring.write_chunk_uninit(n) {
                chunk.fill_from_iter(input.iter().map(|s| i16::from_pcm(s.to_pcm())));
            }
            let dropped = (input.len() - n) as u64;
            self.stats.record(input.len(), dropped, dropped > 0, false);
            return;
        }
        let ring = &mut self.ring;
        let mut dropped = 0u64;
        let scale = 1.0 / self.channels as f32;
        let mut frames = 0usize;
        for frame in input.chunks_exact(self.channels) {
            frames += 1;
            let mono = if frame.len() == 1 {
                frame[0].to_pcm()
            } else {
                frame.iter().map(|s| s.to_pcm()).sum::<f32>() * scale
            };
            self.resampler.push(mono, |y| {
                if ring.push(i16::from_pcm(y)).is_err() {
                    dropped += 1;
                }
            });
        }
        self.stats.record(frames, dropped, dropped > 0, false);
    }

    /// [`process_capture`](Self::process_capture) of a mono period of `len` samples that
    /// `next` produces one at a time (a generated source needs no buffer): the same samples
    /// reach the ring and the same counters move. Every sample is produced, those a full ring
    /// drops too. Real-time safe.
    pub fn process_generated<T: Sample>(&mut self, len: usize, mut next: impl FnMut() -> T) {
        if self.channels == 1 && self.resampler.is_passthrough() {
            let n = len.min(self.ring.slots());
            if let Ok(chunk) = self.ring.write_chunk_uninit(n) {
                chunk.fill_from_iter((0..n).map(|_| i16::from_pcm(next().to_pcm())));
            }
            for _ in n..len {
                next();
            }
            let dropped = (len - n) as u64;
            self.stats.record(len, dropped, dropped > 0, false);
            return;
        }
        let ring = &mut self.ring;
        let mut dropped = 0u64;
        for _ in 0..len {
            self.resampler.push(next().to_pcm(), |y| {
                if ring.push(i16::from_pcm(y)).is_err() {
                    dropped += 1;
                }
            });
        }
        self.stats.record(len, dropped, dropped > 0, false);
    }
}

/// Playback ring → device: resample from 48 kHz, convert, copy to every channel.
pub struct RtPlayback {
    ring: Consumer<i16>,
    channels: usize,
    resampler: Resampler,
    stats: Arc<RtStats>,
}

impl RtPlayback {
    /// Play `ring` (48 kHz mono `i16`) to a device taking `channels`
    /// interleaved channels at `device_rate` Hz.
    pub fn new(ring: Consumer<i16>, device_rate: u32, channels: u16) -> Self {
        RtPlayback {
            ring,
            channels: usize::from(channels.max(1)),
            resampler: Resampler::new(PIPELINE_RATE, device_rate),
            stats: Arc::new(RtStats::default()),
        }
    }

    /// The counters, to read from other threads.
    pub fn stats(&self) -> Arc<RtStats> {
        Arc::clone(&self.stats)
    }

    /// Fill one period of interleaved device samples. Real-time safe.
    ///
    /// A trailing partial frame (fewer samples than channels) is silenced.
    pub fn process_playback<T: Sample>(&mut self, output: &mut [T]) {
        if self.channels == 1 && self.resampler.is_passthrough() {
            // 48 kHz mono (the null and WAV sinks): one chunk instead of a pop per sample.
            let n = output.len().min(self.ring.slots());
            if let Ok(chunk) = self.ring.read_chunk(n) {
                let (a, b) = chunk.as_slices();
                for (slot, &s) in output.iter_mut().zip(a.iter().chain(b)) {
                    *slot = T::from_pcm(f32::from(s));
                }
                chunk.commit_all();
            }
            output[n..].fill(T::SILENCE);
            let missing = (output.len() - n) as u64;
            self.stats.record(output.len(), missing, false, missing > 0);
            return;
        }
        let ring = &mut self.ring;
        let mut missing = 0u64;
        let mut frames = 0usize;
        let mut chunks = output.chunks_exact_mut(self.channels);
        for frame in &mut chunks {
            frames += 1;
            let y = self.resampler.pull(|| match ring.pop() {
                Ok(s) => f32::from(s),
                Err(_) => {
                    missing += 1;
                    0.0
                }
            });
            let s = T::from_pcm(y);
            for slot in frame.iter_mut() {
                *slot = s;
            }
        }
        for slot in chunks.into_remainder() {
            *slot = T::SILENCE;
        }
        self.stats.record(frames, missing, false, missing > 0);
    }

    /// [`process_playback`](Self::process_playback) for a device of `frames` frames that
    /// throws the audio away (the null sink): the ring drains and the counters move the same,
    /// with no samples converted. Real-time safe.
    pub fn discard_playback(&mut self, frames: usize) {
        if self.resampler.is_passthrough() {
            let n = frames.min(self.ring.slots());
            if let Ok(chunk) = self.ring.read_chunk(n) {
                chunk.commit_all();
            }
            let missing = (frames - n) as u64;
            self.stats.record(frames, missing, false, missing > 0);
            return;
        }
        let ring = &mut self.ring;
        let mut missing = 0u64;
        for _ in 0..frames {
            self.resampler.pull(|| match ring.pop() {
                Ok(s) => f32::from(s),
                Err(_) => {
                    missing += 1;
                    0.0
                }
            });
        }
        self.stats.record(frames, missing, false, missing > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtrb::RingBuffer;

    #[test]
    fn sample_conversions_round_trip() {
        for v in [-32768i16, -1, 0, 1, 12345, 32767] {
            let p = f32::from(v);
            assert_eq!(i16::from_pcm(p), v);
            assert_eq!(i16::from_pcm(f32::from_pcm(p).to_pcm()), v);
            assert_eq!(i16::from_pcm(f64::from_pcm(p).to_pcm()), v);
            assert_eq!(i16::from_pcm(i32::from_pcm(p).to_pcm()), v);
            assert_eq!(i16::from_pcm(u16::from_pcm(p).to_pcm()), v);
        }
        assert_eq!(i16::from_pcm(1e9), i16::MAX);
        assert_eq!(f32::from_pcm(-1e9), -1.0);
        assert_eq!(u16::SILENCE.to_pcm(), 0.0);
    }

    #[test]
    fn capture_mixes_stereo_to_mono_at_48k() {
        let (p, mut c) = RingBuffer::new(16);
        let mut cap = RtCapture::new(p, 48000, 2);
        cap.process_capture(&[100i16, 300, -50, -150, 7, 7]);
        let got: Vec<i16> = std::iter::from_fn(|| c.pop().ok()).collect();
        assert_eq!(got, vec![200, -100, 7]);
        let s = cap.stats().snapshot();
        assert_eq!((s.callbacks, s.frames, s.overruns), (1, 3, 0));
    }

    #[test]
    fn mono_48k_moves_whole_chunks_across_the_wrap() {
        let (p, c) = RingBuffer::new(4);
        let mut cap = RtCapture::new(p, 48000, 1);
        let mut play = RtPlayback::new(c, 48000, 1);
        let mut out = [0i16; 3];
        cap.process_capture(&[1i16, 2, 3]);
        play.process_playback(&mut out);
        assert_eq!(out, [1, 2, 3]);
        // The next three wrap around the end of the 4-slot ring; a fourth read runs dry.
        cap.process_capture(&[-0.25f32, 0.5, 1.0]);
        let mut out = [9i16; 4];
        play.process_playback(&mut out);
        assert_eq!(out, [-8192, 16384, 32767, 0]);
        let s = play.stats().snapshot();
        assert_eq!((s.frames, s.underruns, s.lost_samples), (7, 1, 1));
        assert_eq!(cap.stats().snapshot().overruns, 0);
    }

    #[test]
    fn a_generated_period_is_a_captured_one() {
        // A tone through a buffer and through the generator, into rings that fill and
        // overrun, at 48 kHz and resampled: the same samples and counters.
        for rate in [48_000, 44_100] {
            let (pa, mut ca) = RingBuffer::new(1500);
            let (pb, mut cb) = RingBuffer::new(1500);
            let mut a = RtCapture::new(pa, rate, 1);
            let mut b = RtCapture::new(pb, rate, 1);
            let mut ga = crate::media::audio::tone::ToneGenerator::new(440.0, rate, 0.5);
            let mut gb = ga.clone();
            let mut buf = vec![0.0f32; 960];
            for period in 0..4 {
                ga.fill(&mut buf);
                a.process_capture(&buf);
                b.process_generated(960, || gb.next_sample());
                if period == 2 {
                    // The pipeline reads some: the next period fits partly.
                    for c in [&mut ca, &mut cb] {
                        c.read_chunk(700).unwrap().commit_all();
                    }
                }
            }
            let got = |c: &mut Consumer<i16>| std::iter::from_fn(|| c.pop().ok()).collect();
            let (sa, sb): (Vec<i16>, Vec<i16>) = (got(&mut ca), got(&mut cb));
            assert_eq!(sa, sb, "{rate} Hz");
            assert_eq!(a.stats().snapshot(), b.stats().snapshot(), "{rate} Hz");
            assert!(a.stats().snapshot().overruns > 0);
            assert_eq!(
                ga.next_sample(),
                gb.next_sample(),
                "dropped samples were produced"
            );
        }
    }

    #[test]
    fn discarding_a_period_is_playing_it() {
        for rate in [48_000, 44_100] {
            let (mut pa, ca) = RingBuffer::new(4000);
            let (mut pb, cb) = RingBuffer::new(4000);
            let mut a = RtPlayback::new(ca, rate, 1);
            let mut b = RtPlayback::new(cb, rate, 1);
            let mut out = vec![0i16; 960];
            for period in 0..5 {
                if period < 2 {
                    for v in 0..1500 {
                        pa.push(v).unwrap();
                        pb.push(v).unwrap();
                    }
                }
                a.process_playback(&mut out);
                b.discard_playback(960);
                assert_eq!(pa.slots(), pb.slots(), "{rate} Hz, period {period}");
            }
            assert_eq!(a.stats().snapshot(), b.stats().snapshot(), "{rate} Hz");
            assert!(a.stats().snapshot().underruns > 0);
        }
    }

    #[test]
    fn capture_overrun_drops_and_counts() {
        let (p, c) = RingBuffer::new(4);
        let mut cap = RtCapture::new(p, 48000, 1);
        cap.process_capture(&[0.5f32; 10]);
        assert_eq!(c.slots(), 4);
        let s = cap.stats().snapshot();
        assert_eq!((s.overruns, s.lost_samples), (1, 6));
    }

    #[test]
    fn playback_duplicates_channels_and_underruns_to_silence() {
        let (mut p, c) = RingBuffer::new(16);
        for v in [1000i16, -2000] {
            p.push(v).unwrap();
        }
        let mut play = RtPlayback::new(c, 48000, 2);
        let mut out = [9i16; 8];
        play.process_playback(&mut out);
        assert_eq!(out, [1000, 1000, -2000, -2000, 0, 0, 0, 0]);
        let s = play.stats().snapshot();
        assert_eq!((s.underruns, s.lost_samples, s.frames), (1, 2, 4));
        let mut f = [1.0f32; 3];
        play.process_playback(&mut f);
        assert_eq!(f, [0.0; 3]); // two silent frames plus a silenced partial one
        assert_eq!(play.stats().snapshot().underruns, 2);
    }

    #[test]
    fn playback_resamples_to_device_rate() {
        let (mut p, c) = RingBuffer::new(4800);
        for _ in 0..4800 {
            p.push(1000).unwrap();
        }
        let mut play = RtPlayback::new(c, 44100, 1);
        let mut out = vec![0i16; 4410];
        play.process_playback(&mut out);
        // About 4800 samples consumed for 4410 device frames.
        assert!(p.slots() >= 4790, "consumed {}", p.slots());
        assert!(out[10..].iter().all(|&s| s == 1000));
        assert_eq!(play.stats().snapshot().underruns, 0);
    }

    #[test]
    fn capture_resamples_from_device_rate() {
        let (p, c) = RingBuffer::new(10000);
        let mut cap = RtCapture::new(p, 16000, 1);
        cap.process_capture(&vec![500i16; 1600]);
        // 100 ms at 16 kHz → about 4800 samples at 48 kHz.
        assert!(c.slots().abs_diff(4800) <= 3, "{}", c.slots());
    }
}
