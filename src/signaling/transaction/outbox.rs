//! The part every transaction shares: its queue of events and the "Terminated exactly once" rule.

use super::{Timers, TxEvent};
use std::collections::VecDeque;

/// Pending [`TxEvent`]s of one transaction, plus whether `Terminated` was already queued.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    events: VecDeque<TxEvent>,
    terminated: bool,
}

impl Outbox {
    /// Queues an event (ignored once the transaction has terminated).
    pub(super) fn push(&mut self, event: TxEvent) {
        if !self.terminated {
            self.events.push_back(event);
        }
    }

    /// Stops every timer and queues `Terminated`, only the first time.
    pub(super) fn terminate(&mut self, timers: &mut Timers) {
        timers.clear();
        if !self.terminated {
            self.events.push_back(TxEvent::Terminated);
            self.terminated = true;
        }
    }

    /// The next queued event.
    pub(super) fn pop(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }
}
