//! A packet-rate gate for the peer's datagrams: what the codec's packet rate allows passes,
//! a flood is dropped before any parsing beyond the header. Sans-IO.
//!
//! The rule, in 20 ms windows: a peer may send at most [`RATE_FACTOR`] times the packets its
//! ptime implies (room for a peer that packetises at half our ptime, plus as many
//! telephone-event packets, plus RTCP), with a burst allowance
//! of [`BURST_MS`] of audio at the nominal rate (a stalled network delivering its backlog at
//! once). Implemented as a token bucket: it refills at the allowed rate, holds at most the
//! burst, and each packet takes one token; a packet that finds no token is a flood packet.

use std::time::{Duration, Instant};

/// How many times the nominal packet rate a peer may send (half the ptime, audio + DTMF, RTCP).
pub const RATE_FACTOR: u32 = 4;
/// The burst allowance, as milliseconds of audio at the nominal rate (always at least
/// [`MIN_BURST`] packets).
pub const BURST_MS: u32 = 1000;
/// The smallest burst allowance, in packets.
pub const MIN_BURST: u32 = 20;
/// The window the rate is stated in.
pub const WINDOW: Duration = Duration::from_millis(20);

/// A token bucket over the peer's packets: refills at 4x the packet rate that the ptime
/// implies, holds 1 s of packets (at least 20), one token per packet; no token means flood.
#[derive(Debug, Clone)]
pub struct FloodGate {
    /// Packets allowed per second.
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl FloodGate {
    /// A gate for a stream with `ptime_ms` packets (full at `now`).
    pub fn new(ptime_ms: u32, now: Instant) -> Self {
        let ptime = f64::from(ptime_ms.clamp(1, 1000));
        let rate = f64::from(RATE_FACTOR) * 1000.0 / ptime;
        let burst = (f64::from(BURST_MS) / ptime).max(f64::from(MIN_BURST));
        FloodGate {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Packets allowed per 20 ms window once the burst is used up.
    pub fn per_window(&self) -> f64 {
        self.rate * WINDOW.as_secs_f64()
    }

    /// Takes a token for a packet at `now`: `false` means flood, drop it.
    #[must_use]
    pub fn admit(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nominal_and_double_rate_pass_for_minutes() {
        let t0 = Instant::now();
        let mut g = FloodGate::new(20, t0);
        assert_eq!(g.per_window(), 4.0);
        // 10 ms audio and a telephone-event packet each, every 10 ms for 5 minutes.
        for i in 1..=30_000u64 {
            let t = t0 + Duration::from_millis(10 * i);
            assert!(g.admit(t) && g.admit(t), "packet pair {i}");
        }
    }

    #[test]
    fn backlog_after_a_stall_passes() {
        let t0 = Instant::now();
        let mut g = FloodGate::new(20, t0);
        // 1 s of silence, then that second's 50 packets at once.
        let t = t0 + Duration::from_secs(1);
        assert!((0..50).all(|_| g.admit(t)));
    }

    #[test]
    fn flood_is_cut_to_the_allowed_rate() {
        let t0 = Instant::now();
        let mut g = FloodGate::new(20, t0);
        // 100,000 packets within one second (100 per ms).
        let mut passed = 0;
        for i in 0..100_000u64 {
            if g.admit(t0 + Duration::from_micros(10 * i)) {
                passed += 1;
            }
        }
        // The burst (50) plus 1 s at 200 packets/s.
        assert!((249..=251).contains(&passed), "{passed}");
    }

    #[test]
    fn time_going_backwards_gives_nothing() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut g = FloodGate::new(10, t0);
        for _ in 0..100 {
            let _ = g.admit(t0);
        }
        assert!(!g.admit(t0 - Duration::from_millis(500)));
        assert!(g.admit(t0 + Duration::from_millis(10)));
    }
}
