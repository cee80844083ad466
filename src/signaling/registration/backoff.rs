//! Timing: when to refresh a binding and how long to wait after a failure (RFC 5626 §4.5).

use std::time::Duration;

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
