//! Push wake (RFC 8599, iOS PushKit + CallKit).
//!
//! [`SignalingCore::handle_push`] pre-creates the incoming call the push announces, so the
//! application can report it (to CallKit) at once, and wakes the control flow: it connects
//! now if it is down (no backoff), or refreshes the registration on it now if it is up. The
//! REGISTER answers the last digest challenge preemptively (next `nc`), so one round trip
//! suffices when the server still accepts the nonce.
//!
//! - **Push first**: `Event::Incoming { pushed: true, .. }` at once; the INVITE with that
//!   Call-ID, when it comes, is bound to the same handle (no second `Incoming`).
//! - **INVITE first** (it came on a live flow): the push returns the existing handle, nothing
//!   else happens. If that call already ended, the push gets a fresh handle that ends at once
//!   (`Incoming` then `Ended`, `Missed`, reason `already over`) so CallKit's entry ends too.
//! - **Commands before the INVITE** are remembered: `answer` (CallKit answers early) answers the
//!   INVITE as soon as it comes; `reject` / `hangup` reject it (603 for `hangup`); `ring` sends
//!   180 then. `hold` and `update_media` are refused.
//! - **No INVITE** within `Config::push_timeout`: the pre-created call ends `Missed` (status 0,
//!   reason `no INVITE after push`), or `Rejected` if the application had declined it.
//! - **A late INVITE** (after that) is a normal new incoming call: a new handle and a new
//!   `Incoming`; the server sent it, the user may still want it.
//!
//! Every pre-created call ends exactly once: bound to its INVITE it ends as that call does.

use super::{CallHandle, CallOutcome, CoreError, Event, SignalingCore};
use crate::signaling::invite::{Deferred, Phase, Role};
use std::net::SocketAddr;
use std::time::Instant;

/// A call announced by a push whose INVITE has not come yet.
#[derive(Debug, Clone)]
pub(crate) struct Pushed {
    /// The Call-ID from the push payload.
    pub call_id: String,
    /// It ends `Missed` at this time.
    pub deadline: Instant,
    /// `ring` was asked for.
    pub ring: bool,
    /// `answer` was asked for, with this RTP address.
    pub answer: Option<SocketAddr>,
    /// `reject` (or `hangup`) was asked for, with this status.
    pub reject: Option<u16>,
}

/// What the INVITE handler does with a pre-created call it binds.
pub(crate) struct Bound {
    /// The handle.
    pub handle: CallHandle,
    /// The remembered commands.
    pub pushed: Pushed,
}

impl SignalingCore {
    /// A push announced an incoming call with this Call-ID (`from`: the caller, if the payload
    /// says). Returns the call's handle; see the module documentation for the rules.
    pub fn handle_push(
        &mut self,
        now: Instant,
        call_id: String,
        from: Option<String>,
    ) -> CallHandle {
        if let Some((h, _)) = self.pushed.iter().find(|(_, p)| p.call_id == call_id) {
            return *h;
        }
        let existing = self
            .calls
            .values()
            .filter(|c| c.role == Role::Uas && c.call_id == call_id)
            .max_by_key(|c| c.handle)
            .map(|c| (c.handle, c.phase == Phase::Ended));
        let h = match existing {
            Some((h, false)) => return h,
            Some((_, true)) => {
                let h = self.new_call_handle();
                self.push_incoming(h, &call_id, from);
                self.event(Event::Ended {
                    call: h,
                    call_id,
                    status: 0,
                    reason: "already over".into(),
                    outcome: CallOutcome::Missed,
                });
                return h;
            }
            None => self.new_call_handle(),
        };
        self.push_incoming(h, &call_id, from);
        self.pushed.insert(
            h,
            Pushed {
                call_id,
                deadline: now + self.config.push_timeout,
                ring: false,
                answer: None,
                reject: None,
            },
        );
        self.control_wake(now);
        self.drain_control(now);
        h
    }

    fn push_incoming(&mut self, h: CallHandle, call_id: &str, from: Option<String>) {
        self.event(Event::Incoming {
            call: h,
            call_id: call_id.to_string(),
            from: from.unwrap_or_default(),
            to: String::new(),
            pushed: true,
        });
    }

    /// Pre-created calls still waiting for their INVITE.
    pub fn pushed_waiting(&self) -> usize {
        self.pushed.len()
    }

    /// The pre-created call for this Call-ID, taken out to be bound to its INVITE.
    pub(crate) fn take_pushed(&mut self, call_id: &str) -> Option<Bound> {
        let h = self
            .pushed
            .iter()
            .find(|(_, p)| p.call_id == call_id)
            .map(|(h, _)| *h)?;
        let pushed = self.pushed.remove(&h)?;
        Some(Bound { handle: h, pushed })
    }

    /// Remembers a command for a pre-created call (`Some(result)`), or `None` when `h` is not
    /// one.
    pub(crate) fn push_command(
        &mut self,
        h: CallHandle,
        cmd: Deferred,
    ) -> Option<Result<(), CoreError>> {
        let p = self.pushed.get_mut(&h)?;
        let decided = p.answer.is_some() || p.reject.is_some();
        Some(match cmd {
            Deferred::Ring => {
                p.ring = true;
                Ok(())
            }
            Deferred::Answer(_) | Deferred::Reject(_) | Deferred::Hangup if decided => Err(
                CoreError::InvalidState("already answered or rejected (waiting for the INVITE)"),
            ),
            Deferred::Answer(m) => {
                p.answer = Some(m);
                Ok(())
            }
            Deferred::Reject(s) => {
                p.reject = Some(s);
                Ok(())
            }
            Deferred::Hangup => {
                p.reject = Some(603);
                Ok(())
            }
            Deferred::Hold(_) | Deferred::Media(_) => {
                Err(CoreError::InvalidState("the call has no INVITE yet"))
            }
        })
    }

    /// Applies what the application asked for before the INVITE of bound call `h` came.
    pub(crate) fn apply_pushed(&mut self, now: Instant, h: CallHandle, p: &Pushed) {
        let live = |s: &Self| {
            s.calls
                .get(&h)
                .is_some_and(|c| c.phase == Phase::Incoming && c.final_status.is_none())
        };
        if !live(self) {
            return;
        }
        let r = if let Some(status) = p.reject {
            self.uas_reject(now, h, status)
        } else if let Some(m) = p.answer {
            self.uas_answer(now, h, m)
        } else if p.ring {
            self.uas_ring(now, h)
        } else {
            Ok(())
        };
        if let Err(e) = r {
            tracing::warn!(?h, error = %e, "remembered command for a pushed call failed");
        }
    }

    /// The earliest push deadline.
    pub(crate) fn push_timeout(&self) -> Option<Instant> {
        self.pushed.values().map(|p| p.deadline).min()
    }

    /// Ends the pre-created calls whose INVITE did not come in time.
    pub(crate) fn push_expire(&mut self, now: Instant) {
        let due: Vec<CallHandle> = self
            .pushed
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(h, _)| *h)
            .collect();
        for h in due {
            let Some(p) = self.pushed.remove(&h) else {
                continue;
            };
            let outcome = if p.reject.is_some() {
                CallOutcome::Rejected
            } else {
                CallOutcome::Missed
            };
            self.event(Event::Ended {
                call: h,
                call_id: p.call_id,
                status: 0,
                reason: "no INVITE after push".into(),
                outcome,
            });
        }
    }
}
