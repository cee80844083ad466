//! The app's life as the OS tells it, and the background registration policy.
//!
//! The host app (or the `platform::sim::Phone`) reports [`Lifecycle`] events; [`AppState`] folds
//! them into "may our code run now, and may it keep timers". [`BackgroundPolicy`] chooses the
//! registration lifetime so that, in background mode, every REGISTER refresh rides on a
//! keep-alive handler run and the UA keeps no timer that fires more often than the keep-alive
//! period.

use std::time::Duration;

/// Why a suspended app was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WakeReason {
    /// Bytes arrived on the control flow (the VoIP wake socket / a foreground service).
    Data,
    /// The OS ran the keep-alive handler.
    KeepAliveTimer,
    /// A VoIP push (PushKit on iOS, a high-priority FCM message on Android).
    Push,
}

/// What the OS did to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    /// The app left the screen; it still runs for a short while.
    EnteredBackground,
    /// The app is frozen: none of our code runs, bytes wait in the kernel.
    Suspended,
    /// The app runs again, in background, for a limited window.
    Woken(WakeReason),
    /// The app is on screen again: timers run normally.
    EnteredForeground,
    /// The default route changed (Wi-Fi ↔ cellular, new address): new flow, re-register,
    /// re-INVITE active calls with the new media address.
    NetworkChanged,
    /// The process was started again after being killed: re-create sockets and register at
    /// once with the persisted instance-id.
    RestartedAfterCrash,
}

/// Where the app is, as far as scheduling goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppState {
    /// On screen: everything runs, the core's own timers are honoured.
    Foreground,
    /// Off screen and running (just backgrounded, or inside a wake window).
    Background,
    /// Frozen.
    Suspended,
}

impl AppState {
    /// The state after `event`.
    pub fn apply(self, event: Lifecycle) -> AppState {
        match event {
            Lifecycle::EnteredForeground => AppState::Foreground,
            Lifecycle::EnteredBackground | Lifecycle::Woken(_) => AppState::Background,
            Lifecycle::Suspended => AppState::Suspended,
            // These do not move the app between states; a restart starts in the foreground
            // only if the OS says so with `EnteredForeground`.
            Lifecycle::NetworkChanged | Lifecycle::RestartedAfterCrash => self,
        }
    }

    /// Our code can run now.
    pub fn runs(self) -> bool {
        self != AppState::Suspended
    }

    /// In background mode (running or not): timers must respect [`BackgroundPolicy`].
    pub fn in_background(self) -> bool {
        self != AppState::Foreground
    }
}

/// Registration timing for background mode.
///
/// **The rule.** With keep-alive period `P`, refresh every `n` runs
/// ([`BackgroundPolicy::runs_per_refresh`], default 1) and ask for
/// `expires = (n + 1)·P + margin`. A run refreshes when the binding would lapse before
/// `2·P + margin` from now ([`BackgroundPolicy::refresh_due`]), so one late or skipped run never
/// lets the binding expire, and the refresh always happens inside a run: the core needs no
/// registration timer shorter than `P`. With P = 600 s, n = 1 and a 60 s margin: expires = 1260 s,
/// one REGISTER per run, six wake-ups per hour in total.
///
/// The RFC 5626 CRLF ping timer of the core is off in background
/// ([`BackgroundPolicy::core_keepalive_interval`] is `None`): the handler run sends the ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundPolicy {
    /// The keep-alive handler period `P` (iOS: at least 600 s).
    pub keepalive_period: Duration,
    /// Slack for a late run and the REGISTER round trip.
    pub margin: Duration,
    /// Refresh the registration on every `n`-th run (at least 1).
    pub runs_per_refresh: u32,
}

impl BackgroundPolicy {
    /// Refresh on every run, 60 s margin.
    pub fn new(keepalive_period: Duration) -> Self {
        BackgroundPolicy {
            keepalive_period,
            margin: Duration::from_secs(60),
            runs_per_refresh: 1,
        }
    }

    fn n(&self) -> u32 {
        self.runs_per_refresh.max(1)
    }

    /// The lifetime to ask for in REGISTER (seconds): `(n + 1)·P + margin`.
    pub fn register_expires(&self) -> u32 {
        let d = self.keepalive_period * (self.n() + 1) + self.margin;
        u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
    }

    /// At a keep-alive run, with `remaining` left on the binding the registrar granted: refresh
    /// now if it would lapse before `2·P + margin`.
    pub fn refresh_due(&self, remaining: Duration) -> bool {
        remaining < self.keepalive_period * 2 + self.margin
    }

    /// No timer of the UA may fire more often than this while in background.
    pub fn min_timer_period(&self) -> Duration {
        self.keepalive_period
    }

    /// The core's own RFC 5626 ping interval in background: none (the handler pings).
    pub fn core_keepalive_interval(&self) -> Option<Duration> {
        None
    }

    /// Keep-alive wake-ups per idle hour (handler runs).
    pub fn wakeups_per_hour(&self) -> f64 {
        3600.0 / self.keepalive_period.as_secs_f64().max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_state_follows_events() {
        let mut s = AppState::Foreground;
        assert!(!s.in_background());
        s = s.apply(Lifecycle::EnteredBackground);
        assert_eq!(s, AppState::Background);
        s = s.apply(Lifecycle::Suspended);
        assert!(!s.runs() && s.in_background());
        s = s.apply(Lifecycle::NetworkChanged);
        assert_eq!(s, AppState::Suspended);
        s = s.apply(Lifecycle::Woken(WakeReason::Push));
        assert!(s.runs() && s.in_background());
        s = s.apply(Lifecycle::EnteredForeground);
        assert_eq!(s, AppState::Foreground);
    }

    #[test]
    fn expiry_rides_on_keepalive_runs() {
        let p = Duration::from_secs(600);
        let pol = BackgroundPolicy::new(p);
        assert_eq!(pol.register_expires(), 1260);
        // Refreshed at a run: at the next run 660 s are left -> refresh again (every run).
        let granted = Duration::from_secs(u64::from(pol.register_expires()));
        assert!(pol.refresh_due(granted - p));
        // Right after a refresh there is nothing to do.
        assert!(!pol.refresh_due(granted));
        assert_eq!(pol.min_timer_period(), p);
        assert_eq!(pol.core_keepalive_interval(), None);
        assert!((pol.wakeups_per_hour() - 6.0).abs() < 1e-9);
    }

    #[test]
    fn every_third_run_refreshes_and_one_late_run_never_lapses() {
        let p = Duration::from_secs(600);
        let pol = BackgroundPolicy {
            runs_per_refresh: 3,
            ..BackgroundPolicy::new(p)
        };
        let e = Duration::from_secs(u64::from(pol.register_expires()));
        assert_eq!(e, Duration::from_secs(4 * 600 + 60));
        let due: Vec<bool> = (1..=3).map(|k| pol.refresh_due(e - p * k)).collect();
        assert_eq!(due, vec![false, false, true]);
        // Whenever a run decides not to refresh, the binding outlives the run after next.
        for k in 1..=3u32 {
            let remaining = e - p * k;
            if !pol.refresh_due(remaining) {
                assert!(remaining > p * 2);
            }
        }
    }

    #[test]
    fn registrar_granting_less_still_refreshes_in_time() {
        let pol = BackgroundPolicy::new(Duration::from_secs(600));
        // Registrar capped us at 900 s: already due at the next run.
        assert!(pol.refresh_due(Duration::from_secs(900) - Duration::from_secs(600)));
    }
}
