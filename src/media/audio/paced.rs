//! Paced backends: sources and sinks with no sound card to clock them.
//!
//! File, tone, silence and null backends run the same real-time `process_*`
//! code a device callback would, one period per [`PacedAudio::tick`]. Whoever
//! owns the [`PacedAudio`] supplies the clock: the call's media task ticks it
//! on its own deadlines (no thread per call), and [`PacedThread`] is a small
//! thread that does the same for users of [`start`](super::start) without a
//! media task. A thread's deadlines advance by exactly one period, so the
//! long-run rate is exact; after a stall of more than [`MAX_BEHIND`] periods
//! the schedule restarts from now rather than bursting to catch up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::file::{WavSink, WavSource};
use super::rt::{RtCapture, RtPlayback};
use super::tone::ToneGenerator;
use super::AudioError;

/// How many periods a paced clock may fall behind before it resynchronises.
pub const MAX_BEHIND: u32 = 5;

/// A source that fills the capture ring by one period per tick.
pub enum PacedSource {
    /// A sine tone, a period of this many samples at a time.
    Tone(ToneGenerator, usize, RtCapture),
    /// Digital silence, a period of this many samples at a time.
    Silence(usize, RtCapture),
    /// A WAV file held in memory.
    Wav(WavSource, RtCapture),
}

impl PacedSource {
    /// Delivers one period into the capture ring. Real-time safe.
    pub fn tick(&mut self) {
        match self {
            PacedSource::Tone(gen, period, rt) => {
                rt.process_generated(*period, || gen.next_sample())
            }
            PacedSource::Silence(period, rt) => rt.process_generated(*period, || 0.0f32),
            PacedSource::Wav(src, rt) => src.tick(rt),
        }
    }
}

/// A sink that drains the playback ring by one period per tick.
pub enum PacedSink {
    /// Discards the audio (still counted), a period of this many samples at a time.
    Null(usize, RtPlayback),
    /// Appends it to a WAV file.
    Wav(WavSink, RtPlayback),
}

impl PacedSink {
    /// Takes one period from the playback ring. Real-time safe except for the
    /// WAV sink, which writes into a buffered file.
    pub fn tick(&mut self) {
        match self {
            PacedSink::Null(period, rt) => rt.discard_playback(*period),
            PacedSink::Wav(sink, rt) => sink.tick(rt),
        }
    }
}

/// The paced half of one call's audio: whichever of its source and sink has
/// no device clock. Its owner calls [`tick`](Self::tick) once per
/// [`period`](Self::period) and [`finish`](Self::finish) at the end (off any
/// async runtime when [`finish_blocks`](Self::finish_blocks): it closes files).
pub struct PacedAudio {
    pub(crate) source: Option<PacedSource>,
    pub(crate) sink: Option<PacedSink>,
    period: Duration,
}

impl std::fmt::Debug for PacedAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacedAudio")
            .field("source", &self.source.is_some())
            .field("sink", &self.sink.is_some())
            .field("period", &self.period)
            .finish()
    }
}

impl PacedAudio {
    /// Nothing to pace yet; ticks every `period`.
    pub fn new(period: Duration) -> Self {
        PacedAudio {
            source: None,
            sink: None,
            period: period.max(Duration::from_millis(1)),
        }
    }

    /// How often [`tick`](Self::tick) must run.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// True when both sides are devices (nothing to tick).
    pub fn is_empty(&self) -> bool {
        self.source.is_none() && self.sink.is_none()
    }

    /// True when both the source and the sink are paced: the rings then change
    /// only at [`tick`](Self::tick), so the pipeline needs no polling between ticks.
    pub fn is_complete(&self) -> bool {
        self.source.is_some() && self.sink.is_some()
    }

    /// True when [`finish`](Self::finish) does blocking file I/O.
    pub fn finish_blocks(&self) -> bool {
        matches!(self.sink, Some(PacedSink::Wav(..)))
    }

    /// One period: the sink takes its audio, then the source delivers.
    pub fn tick(&mut self) {
        self.tick_sink();
        if let Some(s) = self.source.as_mut() {
            s.tick();
        }
    }

    /// One period for the sink alone (the first tick, before the source has a period).
    pub fn tick_sink(&mut self) {
        if let Some(s) = self.sink.as_mut() {
            s.tick();
        }
    }

    /// Stops: finalises a WAV sink (writes its header's lengths and closes it).
    pub fn finish(mut self) -> Result<(), AudioError> {
        match self.sink.take() {
            Some(PacedSink::Wav(mut sink, _)) => sink.finalize(),
            _ => Ok(()),
        }
    }
}

/// A running paced thread; stops (and joins) when dropped.
#[derive(Debug)]
pub struct PacedThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PacedThread {
    /// Spawn a thread named `name` that owns `state`, calls `tick` on it
    /// every `period`, and hands it to `finish` after the last tick (to
    /// flush files).
    pub fn spawn<S: Send + 'static>(
        name: &str,
        period: Duration,
        mut state: S,
        mut tick: impl FnMut(&mut S) + Send + 'static,
        finish: impl FnOnce(S) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut deadline = Instant::now();
                while !flag.load(Ordering::Acquire) {
                    tick(&mut state);
                    deadline += period;
                    if !park_until(deadline, &flag) {
                        break;
                    }
                    let now = Instant::now();
                    if now.saturating_duration_since(deadline) > period * MAX_BEHIND {
                        deadline = now;
                    }
                }
                finish(state);
            })?;
        Ok(PacedThread {
            stop,
            thread: Some(thread),
        })
    }

    /// Ask the thread to stop and wait for it: it is woken at once, so this
    /// waits for at most the tick in progress.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // A panicking backend thread has nothing left to clean up.
            let _ = t.join();
        }
    }
}

/// Parks until `deadline`; false when `stop` was raised meanwhile. Spurious
/// wake-ups park again (bounded by the deadline).
fn park_until(deadline: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        match deadline.checked_duration_since(Instant::now()) {
            Some(wait) if !wait.is_zero() => std::thread::park_timeout(wait),
            _ => return true,
        }
    }
}

impl Drop for PacedThread {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn stop_joins_and_runs_finish() {
        // stop() joins the thread, runs `finish` once, and no tick follows.
        let ticks = Arc::new(AtomicU32::new(0));
        let finished = Arc::new(AtomicBool::new(false));
        let (t2, f2) = (Arc::clone(&ticks), Arc::clone(&finished));
        let mut p = PacedThread::spawn(
            "paced-test",
            Duration::from_millis(1),
            t2,
            |t| {
                t.fetch_add(1, Ordering::Relaxed);
            },
            move |_| f2.store(true, Ordering::Relaxed),
        )
        .unwrap();
        p.stop();
        assert!(finished.load(Ordering::Relaxed));
        let n = ticks.load(Ordering::Relaxed);
        p.stop(); // idempotent
        assert_eq!(ticks.load(Ordering::Relaxed), n);
    }

    #[test]
    fn stop_does_not_wait_for_a_long_period() {
        // A thread sleeping through a 10 s period is woken by stop().
        let mut p =
            PacedThread::spawn("paced-test", Duration::from_secs(10), (), |_| {}, drop).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        p.stop();
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }

    #[test]
    fn ticks_fill_and_drain_the_rings() {
        use super::super::rt::PIPELINE_RATE;
        use rtrb::RingBuffer;
        let (cap_tx, cap_rx) = RingBuffer::<i16>::new(4800);
        let (mut play_tx, play_rx) = RingBuffer::<i16>::new(4800);
        let mut paced = PacedAudio::new(Duration::from_millis(20));
        assert!(paced.is_empty());
        paced.source = Some(PacedSource::Tone(
            ToneGenerator::new(440.0, PIPELINE_RATE, 0.5),
            960,
            RtCapture::new(cap_tx, PIPELINE_RATE, 1),
        ));
        paced.sink = Some(PacedSink::Null(
            960,
            RtPlayback::new(play_rx, PIPELINE_RATE, 1),
        ));
        assert!(paced.is_complete() && !paced.finish_blocks());
        for _ in 0..1500 {
            play_tx.push(1).unwrap();
        }
        paced.tick();
        paced.tick();
        assert_eq!(cap_rx.slots(), 1920);
        assert_eq!(play_tx.slots(), 4800, "both periods drained");
        assert!(paced.finish().is_ok());
    }
}
