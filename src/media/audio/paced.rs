//! A paced backend thread: calls a tick function once per period.
//!
//! File, tone, silence and null backends have no sound card to clock them,
//! so a thread sleeps until each period's deadline and then runs the same
//! real-time `process_*` code a device callback would. Deadlines advance by
//! exactly one period, so the long-run rate is exact; after a stall of more
//! than [`MAX_BEHIND`] periods the schedule restarts from now rather than
//! bursting to catch up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How many periods a paced thread may fall behind before it resynchronises.
pub const MAX_BEHIND: u32 = 5;

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
                    let now = Instant::now();
                    if let Some(wait) = deadline.checked_duration_since(now) {
                        std::thread::sleep(wait);
                    } else if now.duration_since(deadline) > period * MAX_BEHIND {
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

    /// Ask the thread to stop and wait for it (at most about one period).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            // A panicking backend thread has nothing left to clean up.
            let _ = t.join();
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
}
