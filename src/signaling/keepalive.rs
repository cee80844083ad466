//! RFC 5626 §4.4.1 CRLF keep-alive on the control flow.
//!
//! The client writes a double CRLF ("ping"); the server answers with a single CRLF ("pong").
//! If no pong arrives within the pong timeout (RFC 5626 suggests 10 s) the flow is dead.
//!
//! Call [`KeepAlive::start`] when the flow comes up, [`KeepAlive::handle_pong`] when the framer
//! sees a pong, [`KeepAlive::handle_timeout`] at [`KeepAlive::poll_timeout`], and drain
//! [`KeepAlive::poll_action`] after every call.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The bytes of a keep-alive ping.
pub const PING: &[u8] = b"\r\n\r\n";

/// What the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Write [`PING`] (`\r\n\r\n`) on the flow.
    SendPing,
    /// No pong within the pong timeout: close the flow and recover (re-register).
    FlowDead,
}

/// How the time to the next ping is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    /// Exactly this interval.
    Fixed(Duration),
    /// Uniformly within 80–100 % of the server's Flow-Timer (RFC 5626 §4.4.1).
    FlowTimer(Duration),
}

/// CRLF keep-alive scheduler for one flow.
#[derive(Debug)]
pub struct KeepAlive {
    period: Period,
    pong_timeout: Duration,
    rng: StdRng,
    /// When the next ping is due (None: stopped or dead).
    next_ping: Option<Instant>,
    /// A ping is outstanding until this deadline.
    pong_deadline: Option<Instant>,
    actions: VecDeque<KeepAliveAction>,
}

impl KeepAlive {
    /// A stopped keep-alive that pings every `interval` once started.
    pub fn new(interval: Duration, pong_timeout: Duration) -> Self {
        KeepAlive {
            period: Period::Fixed(interval),
            pong_timeout,
            rng: StdRng::seed_from_u64(rand::rng().random()),
            next_ping: None,
            pong_deadline: None,
            actions: VecDeque::new(),
        }
    }

    /// Replaces the random generator used for Flow-Timer jitter (deterministic tests).
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = StdRng::seed_from_u64(seed);
        self
    }

    /// Starts (or restarts) on a fresh flow: the first ping is one period from `now`.
    pub fn start(&mut self, now: Instant) {
        self.pong_deadline = None;
        self.actions.clear();
        self.next_ping = Some(now + self.next_period());
    }

    /// Stops: no more pings, no pending actions, no timeout.
    pub fn stop(&mut self) {
        self.next_ping = None;
        self.pong_deadline = None;
        self.actions.clear();
    }

    /// True while started and not declared dead.
    pub fn is_running(&self) -> bool {
        self.next_ping.is_some() || self.pong_deadline.is_some()
    }

    /// Sets a fixed ping interval; when running, the next ping is rescheduled from `now`.
    pub fn set_interval(&mut self, now: Instant, interval: Duration) {
        self.period = Period::Fixed(interval);
        self.reschedule(now);
    }

    /// Uses the registrar's Flow-Timer (seconds, from the REGISTER 2xx): each ping is sent
    /// at a random point within 80–100 % of it, as RFC 5626 §4.4.1 asks.
    pub fn set_flow_timer(&mut self, now: Instant, flow_timer_secs: u32) {
        self.period = Period::FlowTimer(Duration::from_secs(u64::from(flow_timer_secs)));
        self.reschedule(now);
    }

    fn reschedule(&mut self, now: Instant) {
        if self.next_ping.is_some() {
            self.next_ping = Some(now + self.next_period());
        }
    }

    fn next_period(&mut self) -> Duration {
        match self.period {
            Period::Fixed(d) => d,
            Period::FlowTimer(d) => d.mul_f64(self.rng.random_range(0.8..=1.0)),
        }
    }

    /// A pong (single CRLF) arrived on the flow.
    pub fn handle_pong(&mut self, _now: Instant) {
        self.pong_deadline = None;
    }

    /// Drives the timers; call at (or after) [`KeepAlive::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.pong_deadline.is_some_and(|d| now >= d) {
            self.stop();
            self.actions.push_back(KeepAliveAction::FlowDead);
            return;
        }
        if let Some(due) = self.next_ping {
            if now >= due && self.pong_deadline.is_none() {
                self.actions.push_back(KeepAliveAction::SendPing);
                self.pong_deadline = Some(now + self.pong_timeout);
                self.next_ping = Some(now + self.next_period());
            }
        }
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<KeepAliveAction> {
        self.actions.pop_front()
    }

    /// When [`KeepAlive::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_ping, self.pong_deadline) {
            // While a pong is awaited no new ping goes out: the deadline decides first.
            (_, Some(d)) => Some(d),
            (n, None) => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// The origin of the virtual clock (tests only; every later time is origin + offset).
    fn origin() -> Instant {
        Instant::now()
    }

    fn drain(k: &mut KeepAlive) -> Vec<KeepAliveAction> {
        std::iter::from_fn(|| k.poll_action()).collect()
    }

    #[test]
    fn pings_at_interval_and_pong_clears() {
        let t0 = origin();
        let mut k = KeepAlive::new(30 * S, 10 * S);
        assert_eq!(k.poll_timeout(), None);
        k.start(t0);
        assert_eq!(k.poll_timeout(), Some(t0 + 30 * S));
        k.handle_timeout(t0 + 29 * S);
        assert!(drain(&mut k).is_empty());
        k.handle_timeout(t0 + 30 * S);
        assert_eq!(drain(&mut k), vec![KeepAliveAction::SendPing]);
        assert_eq!(k.poll_timeout(), Some(t0 + 40 * S));
        k.handle_pong(t0 + 31 * S);
        assert_eq!(k.poll_timeout(), Some(t0 + 60 * S));
        k.handle_timeout(t0 + 40 * S);
        assert!(drain(&mut k).is_empty());
        k.handle_timeout(t0 + 60 * S);
        assert_eq!(drain(&mut k), vec![KeepAliveAction::SendPing]);
        assert!(k.is_running());
    }

    #[test]
    fn missing_pong_is_flow_dead_exactly_once() {
        let t0 = origin();
        let mut k = KeepAlive::new(30 * S, 10 * S);
        k.start(t0);
        k.handle_timeout(t0 + 30 * S);
        assert_eq!(drain(&mut k), vec![KeepAliveAction::SendPing]);
        k.handle_timeout(t0 + 39 * S);
        assert!(drain(&mut k).is_empty());
        k.handle_timeout(t0 + 40 * S);
        assert_eq!(drain(&mut k), vec![KeepAliveAction::FlowDead]);
        assert_eq!(k.poll_timeout(), None);
        assert!(!k.is_running());
        for s in [41, 70, 1000] {
            k.handle_timeout(t0 + s * S);
        }
        k.handle_pong(t0 + 1001 * S);
        assert!(drain(&mut k).is_empty());
        // A new flow starts it again.
        k.start(t0 + 2000 * S);
        assert_eq!(k.poll_timeout(), Some(t0 + 2030 * S));
    }

    #[test]
    fn stop_means_nothing() {
        let t0 = origin();
        let mut k = KeepAlive::new(5 * S, 2 * S);
        k.start(t0);
        k.handle_timeout(t0 + 5 * S);
        k.stop();
        assert!(drain(&mut k).is_empty());
        assert_eq!(k.poll_timeout(), None);
        k.handle_timeout(t0 + 100 * S);
        assert!(drain(&mut k).is_empty());
    }

    #[test]
    fn flow_timer_jitter_within_80_to_100_percent() {
        let t0 = origin();
        let mut k = KeepAlive::new(30 * S, 10 * S).with_seed(42);
        k.start(t0);
        k.set_flow_timer(t0, 120);
        let mut now = t0;
        let mut periods = Vec::new();
        for _ in 0..50 {
            let due = k.poll_timeout().unwrap();
            periods.push(due - now);
            k.handle_timeout(due);
            assert_eq!(drain(&mut k), vec![KeepAliveAction::SendPing]);
            k.handle_pong(due);
            now = due;
        }
        assert!(periods.iter().all(|p| *p >= 96 * S && *p <= 120 * S));
        assert!(periods.windows(2).any(|w| w[0] != w[1]), "randomised");
        // Same seed, same schedule.
        let mut k2 = KeepAlive::new(30 * S, 10 * S).with_seed(42);
        k2.start(t0);
        k2.set_flow_timer(t0, 120);
        assert_eq!(k2.poll_timeout(), Some(t0 + periods[0]));
    }

    #[test]
    fn set_interval_reschedules_running_timer() {
        let t0 = origin();
        let mut k = KeepAlive::new(30 * S, 10 * S);
        k.set_interval(t0, 5 * S);
        assert_eq!(k.poll_timeout(), None, "not started");
        k.start(t0);
        assert_eq!(k.poll_timeout(), Some(t0 + 5 * S));
        k.set_interval(t0 + S, 20 * S);
        assert_eq!(k.poll_timeout(), Some(t0 + 21 * S));
    }
}
