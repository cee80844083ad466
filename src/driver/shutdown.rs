//! Shutdown of the driver task, whether the application asked for it
//! ([`UserAgent::shutdown`](super::UserAgent::shutdown)) or dropped every [`UserAgent`] and
//! [`Call`] handle (the command channel closed): drop is shutdown.
//!
//! Both go the same way:
//!
//! 1. **Hang up**: every live call is ended the way its state asks for — BYE when confirmed,
//!    CANCEL when our INVITE is still unanswered, a final response (603) to an incoming call
//!    the application did not answer. An INVITE that arrives from now on gets 480. Outgoing
//!    calls and pushes are refused with
//!    [`Error::Stopped`](crate::Error::Stopped).
//! 2. **Un-register** (REGISTER with `Expires: 0`) when a binding exists, or as soon as a
//!    registration still under way completes.
//! 3. **Wait**, at most the grace period ([`DEFAULT_GRACE`], or the builder's
//!    `shutdown_grace`), for those transactions to finish, and then for each call's media task
//!    to hand over its [`MediaReport`](crate::media::MediaReport).
//! 4. **Give up** on what is still open at the grace's end, with a log line that says what:
//!    each call still open (its BYE or CANCEL unanswered, or a pushed call whose INVITE never
//!    came) ends with a `Failed` [`Event::Ended`] whose reason says so, after its media report
//!    (waited for at most [`REPORT_LIMIT`]).
//!
//! So the application's [`Events`](super::Events) stream delivers every `MediaReport` and
//! exactly one `Ended` per call it was told about, and only then ends.
//!
//! When the tokio runtime itself is dropped, none of this can run: a dropped runtime cancels
//! its tasks without polling them again, so no BYE goes out, the far end sees the TCP
//! connection close, and the `Events` stream ends without the remaining `Ended` events. Call
//! [`UserAgent::shutdown`](super::UserAgent::shutdown) (or drop the handles and drain
//! `Events` to its end) before the runtime goes away.
//!
//! [`UserAgent`]: super::UserAgent
//! [`Call`]: super::Call

use super::{DriverTask, Reply};
use crate::signaling::core::{CallHandle, CallOutcome, Event};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How long shutdown waits, by default, for the BYEs, CANCELs and the un-REGISTER to be
/// answered before it gives up on them.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// After giving up: how long the media tasks of the calls ended then may take to report.
pub(crate) const REPORT_LIMIT: Duration = Duration::from_millis(500);

/// Final status for an INVITE that arrives while we shut down.
const SHUTTING_DOWN: u16 = 480;

/// Why the driver is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// `UserAgent::shutdown` was called.
    Asked,
    /// Every `UserAgent` and `Call` handle was dropped.
    HandlesDropped,
}

/// A shutdown in progress.
#[derive(Debug)]
pub(crate) struct Shutdown {
    pub(crate) cause: Cause,
    /// When we stop waiting for the network (then: for media reports).
    pub(crate) deadline: Instant,
    /// Everyone who asked (`UserAgent::shutdown`), answered when the driver has stopped.
    pub(crate) replies: Vec<Reply<()>>,
    /// Calls we ended ourselves on giving up: a later `Ended` from the core is not passed on.
    given_up: HashSet<CallHandle>,
    /// The grace period has run out once.
    gave_up: bool,
}

impl Shutdown {
    /// Whether the driver must not pass `ev` on: the end of a call we already ended.
    pub(crate) fn swallows(&self, ev: &Event) -> bool {
        matches!(ev, Event::Ended { call, .. } if self.given_up.contains(call))
    }
}

impl DriverTask {
    /// Starts shutting down (or, when already under way, adds `reply` to those answered at
    /// the end): hang up every call, un-register, and wait at most the grace period.
    pub(super) fn begin_shutdown(&mut self, now: Instant, cause: Cause, reply: Option<Reply<()>>) {
        if let Some(s) = &mut self.shutting_down {
            s.replies.extend(reply);
            if cause == Cause::HandlesDropped {
                s.cause = cause;
            }
            return;
        }
        tracing::debug!(
            ?cause,
            calls = self.live_calls.len(),
            registration = self.core.registration_active(),
            "shutting down"
        );
        for call in self.live_calls.clone() {
            if let Err(e) = self.core.hangup(now, call) {
                tracing::debug!(?call, "hangup at shutdown: {e}");
            }
        }
        // A binding is removed; a REGISTER still under way is followed by the removal.
        if self.core.registration_active() {
            if let Err(e) = self.core.unregister(now) {
                tracing::debug!("unregister at shutdown: {e}");
            }
        }
        self.shutting_down = Some(Shutdown {
            cause,
            deadline: now + self.shutdown_grace,
            replies: reply.into_iter().collect(),
            given_up: HashSet::new(),
            gave_up: false,
        });
    }

    /// Every handle is gone: the command channel is closed and must not be polled again.
    pub(super) fn handles_gone(&self) -> bool {
        self.shutting_down
            .as_ref()
            .is_some_and(|s| s.cause == Cause::HandlesDropped)
    }

    /// `true` when the shutdown is over and the loop may stop: every call ended, the binding
    /// removed and every media report out — or the time for it has run out.
    pub(super) fn shutdown_done(&mut self, now: Instant) -> bool {
        let Some(s) = &self.shutting_down else {
            return false;
        };
        // Once given up on, the un-REGISTER is not waited for any more.
        let registration = self.core.registration_active() && !s.gave_up;
        if self.live_calls.is_empty() && !registration && self.media_tasks.is_empty() {
            return true;
        }
        if now < s.deadline {
            return false;
        }
        if s.gave_up {
            // The media reports did not all come: end the calls without them.
            tracing::warn!(
                calls = self.pending_ended.len(),
                "shutdown: no media report within {REPORT_LIMIT:?}; ending the calls without it"
            );
            let ended: Vec<Event> = self.pending_ended.drain().map(|(_, e)| e).collect();
            for ev in ended {
                self.events.send(ev);
            }
            return true;
        }
        self.give_up(now);
        false
    }

    /// The grace period is over: say what is still open, end those calls ourselves and give
    /// their media tasks [`REPORT_LIMIT`] to report.
    fn give_up(&mut self, now: Instant) {
        let grace = self.shutdown_grace;
        if self.core.registration_active() {
            tracing::warn!("shutdown: the un-REGISTER got no final answer within {grace:?}");
        }
        let open: Vec<CallHandle> = self.live_calls.iter().copied().collect();
        if !open.is_empty() {
            tracing::warn!(
                ?open,
                "shutdown: {} call(s) still not ended {grace:?} after their BYE/CANCEL/final \
                 response; ending them here",
                open.len()
            );
        }
        for call in open {
            let call_id = self.call_id_of(call);
            // Through the usual path: the media task stops and its report goes first.
            self.handle_event(gave_up_ended(call, call_id, grace));
            if let Some(s) = &mut self.shutting_down {
                s.given_up.insert(call);
            }
        }
        if let Some(s) = &mut self.shutting_down {
            s.gave_up = true;
            s.deadline = now + REPORT_LIMIT;
        }
    }

    /// While shutting down: an INVITE that arrives now is turned away at once (480).
    pub(super) fn refuse_incoming(&mut self, now: Instant, ev: &Event) {
        if let (Some(_), Event::Incoming { call, .. }) = (&self.shutting_down, ev) {
            if let Err(e) = self.core.reject(now, *call, SHUTTING_DOWN) {
                tracing::debug!(?call, "reject at shutdown: {e}");
            }
        }
    }
}

/// The end of a call the network did not let us finish within `grace`.
fn gave_up_ended(call: CallHandle, call_id: String, grace: Duration) -> Event {
    Event::Ended {
        call,
        call_id,
        status: None,
        reason: format!("shut down: not ended within {grace:?} of our hangup"),
        outcome: CallOutcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_ended_on_giving_up_is_not_ended_again() {
        let (a, b) = (CallHandle::testing(1), CallHandle::testing(2));
        let s = Shutdown {
            cause: Cause::HandlesDropped,
            deadline: Instant::now(),
            replies: Vec::new(),
            given_up: HashSet::from([a]),
            gave_up: true,
        };
        let grace = DEFAULT_GRACE;
        assert!(s.swallows(&gave_up_ended(a, "x".into(), grace)));
        assert!(!s.swallows(&gave_up_ended(b, "y".into(), grace)));
        assert!(!s.swallows(&Event::Unregistered));
    }

    #[test]
    fn the_end_on_giving_up_says_why() {
        match gave_up_ended(CallHandle::testing(7), "id".into(), Duration::from_secs(2)) {
            Event::Ended {
                call,
                reason,
                outcome,
                ..
            } => {
                assert_eq!(
                    (call, outcome),
                    (CallHandle::testing(7), CallOutcome::Failed)
                );
                assert!(
                    reason.contains("shut down") && reason.contains("2s"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
