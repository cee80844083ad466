//! The RFC 3261 timer table (§17, Table 4) and per-transaction deadlines.

use std::time::{Duration, Instant};

/// RFC 3261 timer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmit (unreliable only).
    A,
    /// INVITE transaction timeout, 64·T1.
    B,
    /// Wait for response retransmits (0 on reliable).
    D,
    /// Non-INVITE request retransmit (unreliable only).
    E,
    /// Non-INVITE transaction timeout, 64·T1.
    F,
    /// INVITE response retransmit (unreliable only).
    G,
    /// Wait for ACK receipt, 64·T1.
    H,
    /// Wait for ACK retransmits (0 on reliable).
    I,
    /// Wait for non-INVITE request retransmits (0 on reliable).
    J,
    /// Wait for response retransmits (0 on reliable).
    K,
    /// RFC 6026: INVITE server transaction, wait for 2xx retransmissions and ACKs in Accepted,
    /// 64·T1.
    L,
    /// RFC 3261 §17.2.1: the INVITE server transaction sends 100 (Trying) when the TU has not
    /// responded within this time ([`TimerConfig::trying`]).
    Trying,
}

/// T1, T2, T4 (RFC 3261 §17.1.1.1): defaults 500 ms, 4 s, 5 s; and how long an INVITE waits
/// for the TU's response before 100 (Trying) is sent: 200 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Maximum duration a message remains in the network.
    pub t4: Duration,
    /// RFC 3261 §17.2.1: an INVITE server transaction sends 100 (Trying) when the TU has not
    /// responded within this time; a TU that answers, rings or rejects sooner makes it
    /// needless (one message fewer each way for an auto-answered or at once ringing call).
    /// Zero sends it at once.
    pub trying: Duration,
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H and (RFC 6026) L.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: at least 32 s on unreliable transports, zero on reliable ones.
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.timeout())
        }
    }

    /// Timers I and K: T4 on unreliable transports, zero on reliable ones.
    pub fn timer_i_k(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64·T1 on unreliable transports, zero on reliable ones.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.timeout()
        }
    }
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            trying: Duration::from_millis(200),
        }
    }
}

/// The armed timers of one transaction; the next deadline is the minimum.
#[derive(Debug, Clone, Default)]
pub struct Timers {
    armed: Vec<(Timer, Instant)>,
}

impl Timers {
    /// Arms (or re-arms) a timer.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.stop(timer);
        self.armed.push((timer, at));
    }

    /// Disarms a timer.
    pub fn stop(&mut self, timer: Timer) {
        self.armed.retain(|(t, _)| *t != timer);
    }

    /// Disarms all timers.
    pub fn clear(&mut self) {
        self.armed.clear();
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.armed.iter().map(|(_, at)| *at).min()
    }

    /// Removes and returns the earliest timer that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let (i, _) = self
            .armed
            .iter()
            .enumerate()
            .filter(|(_, (_, at))| *at <= now)
            .min_by_key(|(_, (_, at))| *at)?;
        Some(self.armed.swap_remove(i).0)
    }

    /// Whether a timer is armed.
    pub fn is_set(&self, timer: Timer) -> bool {
        self.armed.iter().any(|(t, _)| *t == timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_4_values() {
        let cfg = TimerConfig::default();
        assert_eq!(cfg.timeout(), Duration::from_secs(32));
        assert_eq!(cfg.timer_d(false), Duration::from_secs(32));
        assert_eq!(cfg.timer_d(true), Duration::ZERO);
        assert_eq!(cfg.timer_i_k(false), Duration::from_secs(5));
        assert_eq!(cfg.timer_i_k(true), Duration::ZERO);
        assert_eq!(cfg.timer_j(false), Duration::from_secs(32));
        assert_eq!(cfg.timer_j(true), Duration::ZERO);
        // Timer D never goes below 32 s, but follows a larger 64·T1.
        let slow = TimerConfig {
            t1: Duration::from_secs(1),
            ..cfg
        };
        assert_eq!(slow.timer_d(false), Duration::from_secs(64));
        let fast = TimerConfig {
            t1: Duration::from_millis(100),
            ..cfg
        };
        assert_eq!(fast.timer_d(false), Duration::from_secs(32));
        assert_eq!(fast.timeout(), Duration::from_millis(6400));
    }

    #[test]
    fn pop_due_returns_earliest_first_and_only_due_ones() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.set(Timer::B, t0 + Duration::from_secs(32));
        timers.set(Timer::A, t0 + Duration::from_secs(2));
        timers.set(Timer::A, t0 + Duration::from_secs(1)); // re-arm replaces
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(40)), Some(Timer::A));
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(40)), Some(Timer::B));
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(40)), None);
        assert!(!timers.is_set(Timer::A));
    }
}
