//! The clock of a call's paced audio (file, tone, silence, null backends), kept by the call's
//! media task instead of a thread per backend.
//!
//! Every call ticks on one process-wide grid of period boundaries, at one of [`PHASES`] evenly
//! spaced offsets, taken in turn by the calls each thread starts: the runtime wakes once per
//! phase for all the calls there rather than once per call, and a media worker's calls do not
//! all fall due in one batch (with 146 held Opus calls on a worker, one batch took 12 ms of
//! its 20: the last call's ticks ran that late, and its far end's echo of them too).
//! The first tick is the sink's alone: like a playback device, a paced sink starts taking
//! audio at once, but like a capture device, a paced source has a whole period of audio only
//! a period after it starts (a tone generated at the instant of the answer would be audio
//! from the future, and a call hung up within a period would encode and send a frame no
//! device could have captured).
//! A task that falls behind runs the periods it owes back to back, at most
//! [`MAX_BEHIND`] + 1 at a time; beyond that it skips to the next grid point (the pipeline
//! conceals the gap, as it would for a stalled sound card).

use crate::media::audio::paced::MAX_BEHIND;
use crate::media::audio::PacedAudio;
use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Evenly spaced offsets of the grid that calls tick on (a 20 ms period: 0, 5, 10 and 15 ms).
pub(crate) const PHASES: u32 = 4;

thread_local! {
    /// The phase that the next clock made on this thread takes.
    static NEXT_PHASE: Cell<u32> = const { Cell::new(0) };
}

/// The origin of the tick grid shared by all calls of this process.
static GRID: OnceLock<Instant> = OnceLock::new();

/// The first point of the grid (origin `origin`, step `period`) at or after `t`.
fn on_grid(origin: Instant, period: Duration, t: Instant) -> Instant {
    let since = t.saturating_duration_since(origin).as_nanos();
    let step = period.as_nanos().max(1);
    let steps = since.div_ceil(step);
    origin + Duration::from_nanos(u64::try_from(steps * step).unwrap_or(u64::MAX))
}

/// When a call's paced backends tick next.
#[derive(Debug)]
pub(crate) struct PacedClock {
    /// The next tick; `None` when both sides are devices (nothing to tick).
    pub next: Option<Instant>,
    /// Both sides are paced: the rings change only at ticks, so the pipeline needs no
    /// polling between them.
    pub complete: bool,
    period: Duration,
    origin: Instant,
    /// Ticks run back to back in the current catch-up.
    burst: u32,
    /// Periods skipped after falling too far behind.
    pub skipped: u64,
    /// No tick has run yet.
    first: bool,
}

impl PacedClock {
    /// The clock of `paced`, on the next phase of this thread (see [`PHASES`]), first ticking at
    /// its first point at or after `now`.
    pub fn new(paced: &PacedAudio, now: Instant) -> Self {
        let origin = *GRID.get_or_init(|| now);
        let phase = NEXT_PHASE.with(|next| {
            let phase = next.get();
            next.set((phase + 1) % PHASES);
            phase
        });
        Self::with_origin(paced, origin + paced.period() * phase / PHASES, now)
    }

    fn with_origin(paced: &PacedAudio, origin: Instant, now: Instant) -> Self {
        let period = paced.period();
        PacedClock {
            next: (!paced.is_empty()).then(|| on_grid(origin, period, now)),
            complete: paced.is_complete(),
            period,
            origin,
            burst: 0,
            skipped: 0,
            first: true,
        }
    }

    /// Whether the tick about to run (after [`due`](Self::due) said so) has a period of
    /// captured audio for the source: not the first one, which comes less than a period
    /// after the start.
    pub fn source_ready(&mut self) -> bool {
        !std::mem::take(&mut self.first)
    }

    /// True when a tick is due at `now`; the caller ticks once and asks again. After
    /// [`MAX_BEHIND`] + 1 ticks in a row the clock skips to the next grid point instead.
    pub fn due(&mut self, now: Instant) -> bool {
        let Some(next) = self.next else {
            return false;
        };
        if now < next {
            self.burst = 0;
            return false;
        }
        if self.burst > MAX_BEHIND {
            let resumed = on_grid(self.origin, self.period, now + Duration::from_nanos(1));
            let owed = resumed.saturating_duration_since(next).as_nanos() / self.period.as_nanos();
            self.skipped += u64::try_from(owed).unwrap_or(u64::MAX);
            self.next = Some(resumed);
            self.burst = 0;
            return false;
        }
        self.burst += 1;
        self.next = Some(next + self.period);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::{open, AudioConfig, AudioSink, AudioSource};

    const P: Duration = Duration::from_millis(20);

    fn paced(source: &str, sink: &str) -> PacedAudio {
        let (_, p) = open(
            &source.parse::<AudioSource>().unwrap(),
            &sink.parse::<AudioSink>().unwrap(),
            &AudioConfig::default(),
        )
        .unwrap();
        p
    }

    #[test]
    fn ticks_on_the_shared_grid() {
        let t0 = Instant::now();
        let p = paced("tone:440", "null");
        // Two calls started 7 ms and 13 ms after the origin tick together at 20 ms.
        let a = PacedClock::with_origin(&p, t0, t0 + Duration::from_millis(7));
        let b = PacedClock::with_origin(&p, t0, t0 + Duration::from_millis(13));
        assert_eq!(a.next, Some(t0 + P));
        assert_eq!(a.next, b.next);
        assert!(a.complete);
        // Exactly on a grid point: that point.
        let c = PacedClock::with_origin(&p, t0, t0 + 2 * P);
        assert_eq!(c.next, Some(t0 + 2 * P));
    }

    #[test]
    fn the_calls_a_thread_starts_take_the_phases_in_turn() {
        let p = paced("tone:440", "null");
        let now = Instant::now();
        let mut next: Vec<Instant> = (0..PHASES + 1)
            .map(|_| PacedClock::new(&p, now).next.unwrap())
            .collect();
        // The fifth clock is back on the first one's phase.
        assert_eq!(next.pop(), Some(next[0]));
        next.sort();
        for pair in next.windows(2) {
            assert_eq!(pair[1] - pair[0], P / PHASES);
        }
        assert!(next.iter().all(|&t| t >= now && t < now + P), "{next:?}");
    }

    #[test]
    fn one_tick_per_period_when_on_time() {
        let t0 = Instant::now();
        let mut c = PacedClock::with_origin(&paced("silence", "null"), t0, t0);
        assert!(!c.due(t0 - Duration::from_millis(1)));
        assert!(c.due(t0));
        assert!(!c.due(t0 + Duration::from_millis(19)));
        assert!(c.due(t0 + P));
        assert!(!c.due(t0 + P));
        assert_eq!(c.next, Some(t0 + 2 * P));
    }

    #[test]
    fn the_source_sits_out_the_first_tick() {
        let t0 = Instant::now();
        let mut c = PacedClock::with_origin(&paced("tone:440", "null"), t0, t0);
        assert!(c.due(t0));
        assert!(
            !c.source_ready(),
            "less than a period captured at the first tick"
        );
        assert!(c.due(t0 + P));
        assert!(c.source_ready());
        assert!(c.due(t0 + 2 * P));
        assert!(c.source_ready());
    }

    #[test]
    fn catches_up_a_little_then_skips() {
        let t0 = Instant::now();
        let mut c = PacedClock::with_origin(&paced("tone:300", "null"), t0, t0);
        // 3 periods late: the 4 owed ticks run back to back.
        let late = t0 + 3 * P + Duration::from_millis(5);
        let mut n = 0;
        while c.due(late) {
            n += 1;
        }
        assert_eq!(n, 4);
        assert_eq!(c.skipped, 0);
        // 100 periods late: MAX_BEHIND + 1 ticks, then a resync to the next grid point.
        let later = t0 + 104 * P + Duration::from_millis(5);
        let mut n = 0;
        while c.due(later) {
            n += 1;
        }
        assert_eq!(n, MAX_BEHIND + 1);
        assert_eq!(c.next, Some(t0 + 105 * P));
        assert!(c.skipped > 90, "{}", c.skipped);
        assert!(c.due(t0 + 105 * P));
    }

    #[test]
    fn devices_only_need_no_ticks_and_half_paced_is_not_complete() {
        let mut p = paced("tone:440", "null");
        p.source = None;
        let c = PacedClock::with_origin(&p, Instant::now(), Instant::now());
        assert!(c.next.is_some() && !c.complete);
        p.sink = None;
        let mut c = PacedClock::with_origin(&p, Instant::now(), Instant::now());
        assert_eq!(c.next, None);
        assert!(!c.due(Instant::now()));
    }
}
