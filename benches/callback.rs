//! Audio-callback benchmarks (issue 3, benchmark (b)).
//!
//! The cost of one 10 ms device period through the real-time core:
//! [`RtPlayback::process_playback`] (playback ring → device buffer) and
//! [`RtCapture::process_capture`] (device buffer → capture ring), for `f32` and `i16` device
//! buffers, at 48 kHz (480 frames, no resampling) and 44.1 kHz (441 frames, linear
//! resampling to/from the 48 kHz ring), mono and stereo. Goal: under 10 µs per period.
//!
//! Steady state: before every timed period the other end of the ring is serviced outside the
//! timed region — the playback ring is topped up to full with a tone, the capture ring is
//! drained — so no period underruns or overruns (asserted after each benchmark). Each period is
//! timed on its own with `Instant::now()` around the call (criterion's `iter_custom`); the two
//! clock reads add a few tens of nanoseconds to every sample.
//!
//! `baseline/*` measures, in the same run, a bare `copy_from_slice` of 480 `i16` and a bare
//! loop converting 480 `i16` into an `f32` device buffer, for scale.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rtrb::RingBuffer;
use wakeline::media::audio::rt::{RtCapture, RtPlayback, Sample, PIPELINE_RATE};

/// Ring capacity in 48 kHz samples (100 ms, like a small device ring).
const RING: usize = 4800;
/// The period length.
const PERIOD_MS: u32 = 10;
/// Device rates under test: native (no resampling) and CD rate (resampling).
const RATES: [u32; 2] = [48_000, 44_100];
/// Device channel counts under test.
const CHANNELS: [u16; 2] = [1, 2];

/// Frames in one period at `rate`.
fn period_frames(rate: u32) -> usize {
    (rate * PERIOD_MS / 1000) as usize
}

/// A 440 Hz tone at half scale on the `i16` scale, `n` samples long.
fn tone_i16(n: usize, rate: u32) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (16_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect()
}

/// One period of interleaved device samples holding a tone (the same on every channel).
fn device_period<T: Sample>(rate: u32, channels: u16) -> Vec<T> {
    tone_i16(period_frames(rate), rate)
        .into_iter()
        .flat_map(|s| std::iter::repeat_n(T::from_pcm(f32::from(s)), usize::from(channels)))
        .collect()
}

fn label(kind: &str, ty: &str, rate: u32, channels: u16) -> BenchmarkId {
    let ch = if channels == 1 { "mono" } else { "stereo" };
    BenchmarkId::new(format!("{kind}_{ty}"), format!("{rate}Hz_{ch}"))
}

fn bench_playback<T: Sample>(c: &mut Criterion, ty: &str) {
    let mut g = c.benchmark_group("callback_period_10ms");
    // A long tone source for the ring, on the pipeline side (48 kHz mono).
    let source = tone_i16(PIPELINE_RATE as usize, PIPELINE_RATE);
    for rate in RATES {
        for channels in CHANNELS {
            let (mut tx, rx) = RingBuffer::<i16>::new(RING);
            let mut play = RtPlayback::new(rx, rate, channels);
            let stats = play.stats();
            let mut out = vec![T::SILENCE; period_frames(rate) * usize::from(channels)];
            let mut pos = 0usize;
            let mut refill = |tx: &mut rtrb::Producer<i16>| {
                let mut free = tx.slots();
                while free > 0 {
                    let n = free.min(source.len() - pos);
                    let (done, _) = tx.push_partial_slice(&source[pos..pos + n]);
                    pos = (pos + done.len()) % source.len();
                    free -= done.len();
                }
            };
            g.throughput(Throughput::Elements(period_frames(rate) as u64));
            g.bench_function(label("playback", ty, rate, channels), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        refill(&mut tx);
                        let t = Instant::now();
                        play.process_playback(black_box(&mut out[..]));
                        total += t.elapsed();
                        black_box(&out);
                    }
                    total
                })
            });
            let s = stats.snapshot();
            assert_eq!(s.underruns, 0, "playback underran in steady state");
        }
    }
    g.finish();
}

fn bench_capture<T: Sample>(c: &mut Criterion, ty: &str) {
    let mut g = c.benchmark_group("callback_period_10ms");
    for rate in RATES {
        for channels in CHANNELS {
            let (tx, mut rx) = RingBuffer::<i16>::new(RING);
            let mut cap = RtCapture::new(tx, rate, channels);
            let stats = cap.stats();
            let input: Vec<T> = device_period(rate, channels);
            g.throughput(Throughput::Elements(period_frames(rate) as u64));
            g.bench_function(label("capture", ty, rate, channels), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let n = rx.slots();
                        if let Ok(chunk) = rx.read_chunk(n) {
                            chunk.commit_all();
                        }
                        let t = Instant::now();
                        cap.process_capture(black_box(&input[..]));
                        total += t.elapsed();
                    }
                    total
                })
            });
            let s = stats.snapshot();
            assert_eq!(s.overruns, 0, "capture overran in steady state");
        }
    }
    g.finish();
}

fn playback(c: &mut Criterion) {
    bench_playback::<f32>(c, "f32");
    bench_playback::<i16>(c, "i16");
}

fn capture(c: &mut Criterion) {
    bench_capture::<f32>(c, "f32");
    bench_capture::<i16>(c, "i16");
}

fn baseline(c: &mut Criterion) {
    let mut g = c.benchmark_group("callback_period_10ms");
    let frames = period_frames(PIPELINE_RATE);
    let src = tone_i16(frames, PIPELINE_RATE);
    g.throughput(Throughput::Elements(frames as u64));
    let mut dst_i16 = vec![0i16; frames];
    g.bench_function(BenchmarkId::new("baseline_memcpy_i16", "480"), |b| {
        b.iter(|| {
            dst_i16.copy_from_slice(black_box(&src[..]));
            black_box(&dst_i16);
        })
    });
    let mut dst_f32 = vec![0f32; frames];
    g.bench_function(
        BenchmarkId::new("baseline_convert_i16_to_f32", "480"),
        |b| {
            b.iter(|| {
                for (d, s) in dst_f32.iter_mut().zip(black_box(&src[..])) {
                    *d = f32::from(*s) * (1.0 / 32768.0);
                }
                black_box(&dst_f32);
            })
        },
    );
    g.finish();
}

criterion_group!(benches, baseline, playback, capture);
criterion_main!(benches);
