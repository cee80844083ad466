//! Timing: when to refresh a binding and how long to wait after a failure (RFC 5626 §4.5).

use std::time::{Duration, Instant};

/// Refresh no later than this long before the binding expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The delay before refreshing a binding granted for `granted` seconds:
/// `max(granted / 2, granted − 60 s)`.
pub fn refresh_delay(granted: u32) -> Duration {
    let half = Duration::from_millis(u64::from(granted) * 500);
    let margin = Duration::from_secs(u64::from(granted)).saturating_sub(REFRESH_MARGIN);
    half.max(margin)
}

/// Retry delay after `n + 1` consecutive failures: `min(max, base · 2ⁿ · jitter)`, `jitter`
/// in [0.5, 1].
pub fn backoff_delay(base: Duration, max: Duration, n: u32, jitter: f64) -> Duration {
    let raw = base.as_secs_f64() * 2f64.powi(n.min(40) as i32) * jitter.clamp(0.5, 1.0);
    if raw >= max.as_secs_f64() {
        max
    } else {
        Duration::from_secs_f64(raw)
    }
}

/// A flow that closes sooner than this after its REGISTER 2xx counts as a failed flow
/// (RFC 5626 §4.5): a registrar, NAT or SBC that drops every connection right after the 200
/// must not get a REGISTER storm. The default of [`RegistrationConfig::flow_min_lifetime`].
///
/// [`RegistrationConfig::flow_min_lifetime`]: super::RegistrationConfig::flow_min_lifetime
pub const FLOW_MIN_LIFETIME: Duration = Duration::from_secs(10);

/// RFC 5626 §4.5 `base-time` when every flow of the registration has failed.
pub const FLOW_BASE_ALL_FAILED: Duration = Duration::from_secs(30);

/// RFC 5626 §4.5 `base-time` when another flow of the registration still works.
pub const FLOW_BASE_SOME_OK: Duration = Duration::from_secs(90);

/// RFC 5626 §4.5 `max-time`: the longest wait after failed flows.
pub const FLOW_BACKOFF_MAX: Duration = Duration::from_secs(1800);

/// The wait before forming a new flow after `n + 1` consecutive failed flows (beyond the
/// first, which is replaced at once): `min(max-time, base-time · 2ⁿ)` scaled by `jitter` in
/// [0.5, 1] (RFC 5626 §4.5).
pub fn flow_recovery_delay(n: u32, all_failed: bool, jitter: f64) -> Duration {
    let base = if all_failed {
        FLOW_BASE_ALL_FAILED
    } else {
        FLOW_BASE_SOME_OK
    };
    let jitter = jitter.clamp(0.5, 1.0);
    let raw = base.as_secs_f64() * 2f64.powi(n.min(40) as i32);
    Duration::from_secs_f64(raw.min(FLOW_BACKOFF_MAX.as_secs_f64()) * jitter)
}

/// Counts flows that die soon after their REGISTER 2xx (RFC 5626 §4.5) and says how long to
/// wait before the next flow. The first such death is replaced at once (a single drop keeps
/// the fast recovery); each further one in a row waits [`flow_recovery_delay`]. A flow that
/// lives [`FLOW_MIN_LIFETIME`] after its 2xx resets the count.
#[derive(Debug, Default)]
pub(super) struct FlowHealth {
    /// When the current flow got its first REGISTER 2xx.
    bound_at: Option<Instant>,
    /// Flows in a row that died within the minimum lifetime of their 2xx.
    quick_failures: u32,
    /// The wait the last failed flow asks for, until taken.
    wait: Option<Duration>,
}

/// What [`FlowHealth::flow_down`] found about a flow that died young.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct FlowFailure {
    /// How long the flow lived after its 2xx.
    pub lived: Duration,
    /// Failed flows in a row, this one included.
    pub in_a_row: u32,
    /// How long to wait before the next flow (`None`: at once).
    pub wait: Option<Duration>,
}

impl FlowHealth {
    /// A new flow is up: nothing is bound on it yet.
    pub fn flow_up(&mut self) {
        self.bound_at = None;
    }

    /// A REGISTER 2xx arrived on the current flow.
    pub fn bound(&mut self, now: Instant) {
        self.bound_at.get_or_insert(now);
    }

    /// The current flow died. Returns the failure when it died within `min_lifetime` of its
    /// 2xx; a flow that died before any 2xx is the reconnect backoff's business, not ours.
    pub fn flow_down(
        &mut self,
        now: Instant,
        min_lifetime: Duration,
        jitter: f64,
    ) -> Option<FlowFailure> {
        self.wait = None;
        let lived = now.saturating_duration_since(self.bound_at.take()?);
        if lived >= min_lifetime {
            self.quick_failures = 0;
            self.wait = None;
            return None;
        }
        self.quick_failures = self.quick_failures.saturating_add(1);
        self.wait = (self.quick_failures >= 2)
            .then(|| flow_recovery_delay(self.quick_failures - 2, true, jitter));
        Some(FlowFailure {
            lived,
            in_a_row: self.quick_failures,
            wait: self.wait,
        })
    }

    /// The wait before the next flow, once (the caller schedules it).
    pub fn take_wait(&mut self) -> Option<Duration> {
        self.wait.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn recovery_delay_follows_rfc_5626() {
        assert_eq!(flow_recovery_delay(0, true, 1.0), 30 * S);
        assert_eq!(flow_recovery_delay(0, true, 0.5), 15 * S);
        assert_eq!(flow_recovery_delay(2, true, 1.0), 120 * S);
        assert_eq!(flow_recovery_delay(0, false, 1.0), 90 * S);
        assert_eq!(flow_recovery_delay(10, true, 1.0), FLOW_BACKOFF_MAX);
        assert_eq!(
            flow_recovery_delay(u32::MAX, true, 0.0),
            FLOW_BACKOFF_MAX / 2
        );
    }

    #[test]
    fn young_deaths_in_a_row_back_off_and_a_healthy_flow_resets() {
        let t0 = Instant::now();
        let mut h = FlowHealth::default();
        let life = FLOW_MIN_LIFETIME;
        // Died before any 2xx: not counted here.
        h.flow_up();
        assert_eq!(h.flow_down(t0, life, 1.0), None);
        // First young death: replaced at once.
        h.flow_up();
        h.bound(t0);
        let f = h.flow_down(t0 + S, life, 1.0).expect("counted");
        assert_eq!((f.lived, f.in_a_row, f.wait), (S, 1, None));
        assert_eq!(h.take_wait(), None);
        // Second and third: 30 s, then 60 s.
        for (n, wait) in [(2, 30 * S), (3, 60 * S)] {
            h.flow_up();
            h.bound(t0);
            let f = h.flow_down(t0, life, 1.0).expect("counted");
            assert_eq!((f.in_a_row, f.wait), (n, Some(wait)));
            assert_eq!(h.take_wait(), Some(wait));
            assert_eq!(h.take_wait(), None, "taken once");
        }
        // A flow that lived long enough resets the count.
        h.flow_up();
        h.bound(t0);
        assert_eq!(h.flow_down(t0 + life, life, 1.0), None);
        h.flow_up();
        h.bound(t0);
        assert_eq!(h.flow_down(t0, life, 1.0).map(|f| f.in_a_row), Some(1));
    }
}
