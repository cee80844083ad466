//! Real-time safety: the audio callback core never allocates.
//!
//! A counting global allocator wraps `System`; the flag and the count are
//! thread-local, so only the thread running the measured window counts and
//! the harness's other threads cannot disturb the result. Inside the window
//! the test runs 10,000 periods of capture and playback with 480- and
//! 960-frame periods, `i16` and `f32` device samples, 44.1 kHz resampling,
//! stereo devices, an empty playback ring (underrun) and a full capture
//! ring (overrun) — and asserts that nothing was allocated or freed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rtrb::RingBuffer;
use wakeline::media::audio::rt::{RtCapture, RtPlayback, Sample};

struct CountingAlloc;

thread_local! {
    /// Counting on for this thread?
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocator calls seen on this thread while counting.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: thread-locals may already be gone during thread teardown.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the only addition is a thread-local counter that never
// allocates (const-initialised `Cell`s).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Run `f` with allocation counting on for this thread; return the count.
fn count_allocs(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get) - before
}

#[test]
fn the_counter_sees_allocations() {
    // Guard against a vacuous pass: the allocator must count when enabled.
    let n = count_allocs(|| {
        let v = std::hint::black_box(vec![1u8; 100]);
        drop(v);
    });
    assert!(n >= 2, "counting allocator saw {n} events");
}

/// One scenario: device rate/channels, period length, sample type.
fn run<T: Sample + Default>(rate: u32, channels: u16, period: usize, periods: usize) {
    // The ring holds less than one period at 48 kHz, so capture overruns
    // every period once full; playback is fed half a period per callback,
    // so it underruns every period.
    let ring = 400;
    let (cap_tx, mut cap_rx) = RingBuffer::<i16>::new(ring);
    let (mut play_tx, play_rx) = RingBuffer::<i16>::new(ring);
    let mut cap = RtCapture::new(cap_tx, rate, channels);
    let mut play = RtPlayback::new(play_rx, rate, channels);
    let cap_stats = cap.stats();
    let play_stats = play.stats();

    let n = period * usize::from(channels);
    let mut input: Vec<T> = (0..n)
        .map(|i| T::from_pcm(((i % 200) as f32 - 100.0) * 100.0))
        .collect();
    let mut output: Vec<T> = vec![T::default(); n];

    let allocs = count_allocs(|| {
        for p in 0..periods {
            // The pipeline side: drain some capture, feed some playback.
            if p % 2 == 0 {
                for _ in 0..period / 2 {
                    let _ = cap_rx.pop();
                }
            }
            for i in 0..period / 2 {
                let _ = play_tx.push(i as i16);
            }
            input[p % n] = T::from_pcm(p as f32);
            cap.process_capture(&input);
            play.process_playback(&mut output);
        }
    });
    assert_eq!(
        allocs, 0,
        "{allocs} allocations in the callback window ({rate} Hz, {channels} ch, {period} frames, {})",
        std::any::type_name::<T>()
    );

    let c = cap_stats.snapshot();
    let p = play_stats.snapshot();
    assert_eq!(c.callbacks, periods as u64);
    assert_eq!(c.frames, (periods * period) as u64);
    assert!(
        c.overruns > 0 && c.lost_samples > 0,
        "capture never overran: {c:?}"
    );
    assert!(
        p.underruns > 0 && p.lost_samples > 0,
        "playback never underran: {p:?}"
    );
    // Playback really played something from the ring, too.
    assert!(output.iter().any(|s| s.to_pcm() != 0.0) || p.lost_samples < (periods * period) as u64);
}

#[test]
fn ten_thousand_periods_allocate_nothing() {
    run::<i16>(48000, 1, 960, 10_000);
    run::<f32>(48000, 1, 480, 10_000);
    run::<i16>(44100, 2, 480, 10_000);
    run::<f32>(44100, 1, 960, 10_000);
    run::<f32>(44100, 2, 882, 2_000);
    run::<i16>(8000, 1, 160, 2_000);
    run::<f32>(96000, 2, 960, 2_000);
}
