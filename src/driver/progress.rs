//! How far each call has come, as [`Call::connected`](super::Call::connected) and
//! [`Call::ended`](super::Call::ended) see it: fed by the events on their way to
//! [`Events`](super::Events), in the driver's own task.
//!
//! Every call's stage is one or two bytes in a table indexed by the call's number, so that
//! `ended()` still answers at once for an old call. Only a call that someone awaits has a
//! `watch` channel (about 350 bytes), and only until it ends. Before, every call had a channel
//! from its first stage to the user agent's end: a listener serving calls without end kept
//! 344 bytes of each (measured with heaptrack after 2,000 calls).

use crate::signaling::core::fasthash::FastMap;
use crate::signaling::core::{CallHandle, CallOutcome, CallState, Event};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// How far a call has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Setup,
    Connected,
    Ended(CallOutcome),
}

/// Every call's [`Stage`] (see the module doc).
#[derive(Debug)]
pub(super) struct Progress {
    /// `None` once the driver has stopped: every call not ended by then counts as failed.
    calls: Mutex<Option<Stages>>,
    /// `true` once the driver's last event has been passed on.
    pub(super) forwarded: watch::Sender<bool>,
}

/// The calls' stages, and a channel for each call awaited and not yet ended.
#[derive(Debug, Default)]
struct Stages {
    watched: FastMap<CallHandle, watch::Sender<Stage>>,
    table: Table,
}

/// Calls' stages by call number (numbers run 1, 2, ... in one user agent); calls of another
/// core (hand-made handles) in a map. A call not in it is at [`Stage::Setup`].
#[derive(Debug, Default)]
struct Table {
    core: Option<u32>,
    by_number: Vec<Stage>,
    others: FastMap<CallHandle, Stage>,
}

impl Table {
    fn get(&self, call: CallHandle) -> Stage {
        let found = if self.core == Some(call.core()) {
            usize::try_from(call.number())
                .ok()
                .and_then(|i| self.by_number.get(i).copied())
        } else {
            self.others.get(&call).copied()
        };
        found.unwrap_or(Stage::Setup)
    }

    fn set(&mut self, call: CallHandle, stage: Stage) {
        let core = *self.core.get_or_insert(call.core());
        match usize::try_from(call.number()) {
            Ok(i) if core == call.core() => {
                if i >= self.by_number.len() {
                    self.by_number.resize(i + 1, Stage::Setup);
                }
                self.by_number[i] = stage;
            }
            _ => {
                self.others.insert(call, stage);
            }
        }
    }
}

/// How long [`UserAgent::shutdown`](super::UserAgent::shutdown) waits for the stopped
/// driver's last events to be passed on (the driver drops its sender right after its reply,
/// so this is a bound, not a delay).
const FORWARD_LIMIT: Duration = Duration::from_secs(2);

impl Default for Progress {
    fn default() -> Self {
        Progress {
            calls: Mutex::new(Some(Stages::default())),
            forwarded: watch::channel(false).0,
        }
    }
}

impl Progress {
    /// Waits (at most [`FORWARD_LIMIT`]) until the driver's last event has been passed on.
    pub(super) async fn forwarded(&self) {
        let mut rx = self.forwarded.subscribe();
        if tokio::time::timeout(FORWARD_LIMIT, rx.wait_for(|done| *done))
            .await
            .is_err()
        {
            tracing::debug!("events still being passed on {FORWARD_LIMIT:?} after shutdown");
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Option<Stages>) -> T) -> T {
        // The stages are consistent between any two calls: a panic elsewhere leaves them usable.
        let mut guard = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Notes the stage `event` brings its call to (a call's first stage wins over none, and an
    /// ended call stays ended).
    pub(super) fn note(&self, event: &Event) {
        let (call, stage) = match event {
            Event::State {
                call,
                state: CallState::Connected,
                ..
            } => (*call, Stage::Connected),
            Event::Ended { call, outcome, .. } => (*call, Stage::Ended(*outcome)),
            _ => return,
        };
        self.with(|calls| {
            let Some(calls) = calls else { return };
            if let Stage::Ended(_) = calls.table.get(call) {
                return;
            }
            calls.table.set(call, stage);
            if let Stage::Ended(_) = stage {
                if let Some(tx) = calls.watched.remove(&call) {
                    tx.send_replace(stage);
                }
            } else if let Some(tx) = calls.watched.get(&call) {
                tx.send_replace(stage);
            }
        });
    }

    /// The driver has stopped: every call not ended counts as failed.
    pub(super) fn stop(&self) {
        self.with(|calls| {
            let watched = calls.take().map(|c| c.watched).unwrap_or_default();
            for tx in watched.into_values() {
                tx.send_replace(Stage::Ended(CallOutcome::Failed));
            }
        });
    }

    /// The stage of `call` from now on.
    pub(super) fn watch(&self, call: CallHandle) -> watch::Receiver<Stage> {
        self.with(|calls| match calls {
            Some(calls) => match calls.table.get(call) {
                ended @ Stage::Ended(_) => watch::channel(ended).1,
                now => calls
                    .watched
                    .entry(call)
                    .or_insert_with(|| watch::channel(now).0)
                    .subscribe(),
            },
            None => watch::channel(Stage::Ended(CallOutcome::Failed)).1,
        })
    }

    /// Calls with a channel (awaited, not ended).
    #[cfg(test)]
    fn watched(&self) -> usize {
        self.with(|calls| calls.as_ref().map_or(0, |c| c.watched.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(call: CallHandle, outcome: CallOutcome) -> Event {
        Event::Ended {
            call,
            call_id: "x".into(),
            outcome,
            status: None,
            reason: String::new(),
        }
    }

    fn connected(call: CallHandle) -> Event {
        Event::State {
            call,
            call_id: "x".into(),
            state: CallState::Connected,
        }
    }

    #[test]
    fn calls_nobody_awaits_have_no_channel_and_old_calls_still_answer() {
        let p = Progress::default();
        let calls: Vec<_> = (1..=1000).map(CallHandle::testing).collect();
        for &c in &calls {
            p.note(&connected(c));
        }
        assert_eq!(p.watched(), 0, "no channel for a call nobody awaits");
        assert_eq!(*p.watch(calls[1]).borrow(), Stage::Connected);
        assert_eq!(p.watched(), 1);
        for &c in &calls {
            p.note(&ended(c, CallOutcome::Answered));
        }
        assert_eq!(p.watched(), 0, "no channel stays for an ended call");
        assert_eq!(
            *p.watch(calls[0]).borrow(),
            Stage::Ended(CallOutcome::Answered),
            "an old call still answers"
        );
        assert_eq!(p.watched(), 0, "asking about it makes no channel");
    }

    #[test]
    fn a_watcher_sees_the_stages_and_the_end() {
        let p = Progress::default();
        let c = CallHandle::testing(7);
        let rx = p.watch(c);
        assert_eq!(*rx.borrow(), Stage::Setup);
        p.note(&connected(c));
        assert_eq!(*rx.borrow(), Stage::Connected);
        p.note(&ended(c, CallOutcome::Busy));
        assert_eq!(*rx.borrow(), Stage::Ended(CallOutcome::Busy));
        // A late event cannot reopen or change an ended call.
        p.note(&connected(c));
        p.note(&ended(c, CallOutcome::Failed));
        assert_eq!(*p.watch(c).borrow(), Stage::Ended(CallOutcome::Busy));
        assert_eq!(p.watched(), 0);
    }

    #[test]
    fn stages_of_two_cores_do_not_mix() {
        let mut t = Table::default();
        let own = CallHandle::new(3, 2);
        let other = CallHandle::new(4, 2);
        assert_eq!(t.get(own), Stage::Setup);
        t.set(own, Stage::Ended(CallOutcome::Answered));
        assert_eq!(t.get(other), Stage::Setup);
        t.set(other, Stage::Connected);
        assert_eq!(t.get(own), Stage::Ended(CallOutcome::Answered));
        assert_eq!(t.get(other), Stage::Connected);
        assert_eq!(t.get(CallHandle::new(3, 1)), Stage::Setup);
        assert_eq!(
            t.get(CallHandle::new(3, 99)),
            Stage::Setup,
            "beyond the table"
        );
    }

    #[test]
    fn stopping_fails_the_open_calls_and_keeps_the_ended_ones() {
        let p = Progress::default();
        let (done, open) = (CallHandle::testing(1), CallHandle::testing(2));
        let open_rx = p.watch(open);
        p.note(&ended(done, CallOutcome::Rejected));
        p.stop();
        assert_eq!(*open_rx.borrow(), Stage::Ended(CallOutcome::Failed));
        // After the stop every call counts as failed, as before.
        assert_eq!(*p.watch(done).borrow(), Stage::Ended(CallOutcome::Failed));
    }
}
