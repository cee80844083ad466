//! The driver's sleep until the core's next deadline, woken exactly once.
//!
//! tokio's timer wheel keeps a long sleep in a coarse level (64 ms slots for > 64 ms, 4 s
//! slots for > 4 s) and wakes the thread at each level boundary to move it down: an idle
//! user agent sleeping 30 s until its next keep-alive ping woke up to three times for one
//! ping (issue 12 §3). On Linux the driver sleeps on a `timerfd` armed at the deadline itself
//! instead, registered with tokio's reactor: one wake-up per deadline. Elsewhere, or if the
//! timerfd cannot be made, tokio's sleep is used.
//!
//! Cancel-safe: `select!` drops the sleep when another branch wins; the timer stays armed,
//! and the next call with the same deadline does not re-arm it (a deadline already passed
//! makes the descriptor readable, so the next call returns at once).
#![allow(unsafe_code)]

use std::time::Instant;

/// One re-armable deadline (see the module doc).
pub(crate) struct WakeTimer {
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
    /// The deadline the timerfd is armed for.
    #[cfg(target_os = "linux")]
    armed: Option<Instant>,
}

impl WakeTimer {
    /// A timer on the current tokio runtime (call from within it).
    pub(crate) fn new() -> Self {
        #[cfg(target_os = "linux")]
        {
            use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
            let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
            let fd = timerfd_create(TimerfdClockId::Monotonic, flags)
                .map_err(std::io::Error::from)
                .and_then(|fd| {
                    // SAFETY: `fd` is a timerfd this timer owns alone; it is neither closed
                    // nor replaced while the `AsyncFd` holds it (it is dropped with it).
                    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
                })
                .inspect_err(|e| {
                    tracing::debug!("no timerfd ({e}): tokio's timer wakes the driver")
                })
                .ok();
            WakeTimer { fd, armed: None }
        }
        #[cfg(not(target_os = "linux"))]
        WakeTimer {}
    }

    /// Returns at `deadline` (never when `None`).
    pub(crate) async fn sleep_until(&mut self, deadline: Option<Instant>) {
        let Some(deadline) = deadline else {
            return std::future::pending().await;
        };
        #[cfg(target_os = "linux")]
        if self.fd.is_some() {
            match self.wait_timerfd(deadline).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!("timerfd failed ({e}): tokio's timer wakes the driver");
                    self.fd = None;
                }
            }
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await
    }

    #[cfg(target_os = "linux")]
    async fn wait_timerfd(&mut self, deadline: Instant) -> std::io::Result<()> {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        let Some(fd) = &self.fd else {
            return Err(std::io::ErrorKind::NotFound.into());
        };
        if self.armed != Some(deadline) {
            // Relative to now; at least 1 ns (zero would disarm it).
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(std::time::Duration::from_nanos(1));
            let value = Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let spec = Itimerspec {
                it_interval: zero,
                it_value: value,
            };
            timerfd_settime(fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
            self.armed = Some(deadline);
        }
        loop {
            let mut ready = fd.readable().await?;
            let mut ticks = [0u8; 8];
            match rustix::io::read(fd.get_ref(), &mut ticks) {
                Ok(_) => {
                    self.armed = None;
                    return Ok(());
                }
                // Readiness left over from an earlier arming: wait again.
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The timer fires at its deadline, not before, survives being dropped mid-sleep (as in
    /// `select!`), and re-arms for an earlier deadline.
    #[tokio::test(flavor = "current_thread")]
    async fn fires_at_the_deadline_and_survives_cancellation() {
        let mut t = WakeTimer::new();
        let start = Instant::now();
        let at = start + Duration::from_millis(30);
        t.sleep_until(Some(at)).await;
        assert!(Instant::now() >= at);
        // Cancelled before its deadline, then awaited again: fires once, at the deadline.
        let at = Instant::now() + Duration::from_millis(40);
        let cut = tokio::time::timeout(Duration::from_millis(5), t.sleep_until(Some(at))).await;
        assert!(cut.is_err(), "not before its deadline");
        t.sleep_until(Some(at)).await;
        assert!(Instant::now() >= at);
        // A later deadline replaced by an earlier one.
        let far = Instant::now() + Duration::from_secs(30);
        let _ = tokio::time::timeout(Duration::from_millis(1), t.sleep_until(Some(far))).await;
        let near = Instant::now() + Duration::from_millis(10);
        let r = tokio::time::timeout(Duration::from_secs(5), t.sleep_until(Some(near))).await;
        assert!(r.is_ok() && Instant::now() >= near);
        // A deadline already passed returns at once.
        let r = tokio::time::timeout(Duration::from_secs(1), t.sleep_until(Some(start))).await;
        assert!(r.is_ok());
        // None never returns.
        let r = tokio::time::timeout(Duration::from_millis(20), t.sleep_until(None)).await;
        assert!(r.is_err());
    }
}
