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
//! - **No INVITE** within `Config::push_timeout`: the pre-created call ends `Missed` (status `None`,
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
                    status: None,
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
            Deferred::Hold(_) | Deferred::Media(_) | Deferred::Bye => {
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
                status: None,
                reason: "no INVITE after push".into(),
                outcome,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::PeerInvite;
    use super::super::{CallOutcome, Event};
    use crate::platform::sim::{phone_config, Phone};
    use crate::signaling::config::PushConfig;
    use std::time::{Duration, Instant};

    /// The origin of the virtual clock (tests only; every later time is origin + offset).
    fn origin() -> Instant {
        Instant::now()
    }

    fn peer(n: u32) -> PeerInvite {
        PeerInvite {
            call_id: format!("p{n}"),
            from_tag: format!("f{n}"),
            branch: format!("z9hG4bKp{n}"),
            cseq: 1,
        }
    }

    fn incoming_count(p: &Phone) -> usize {
        p.incoming().len()
    }

    #[test]
    fn register_carries_rfc8599_contact_params() {
        let mut cfg = phone_config();
        cfg.push = Some(PushConfig {
            provider: "apns".into(),
            prid: "00fc13adff78512".into(),
            param: Some("ABCD1234.com.example.voip".into()),
        });
        let p = Phone::new(cfg, origin());
        let reg = p.last_request("REGISTER").unwrap();
        let contact = reg
            .headers
            .get(&crate::signaling::message::HeaderName::Contact)
            .unwrap();
        assert!(
            contact.contains(
                ";pn-provider=apns;pn-prid=00fc13adff78512;pn-param=ABCD1234.com.example.voip>"
            ),
            "{contact}"
        );
        assert!(p.registered(), "the echoed Contact still matches ours");
    }

    #[test]
    fn push_before_invite_binds_and_early_answer_is_applied() {
        let mut p = Phone::new(phone_config(), origin());
        // The phone slept: the flow died and the server holds the INVITE.
        p.server_up = true;
        p.suspend();
        p.drop_flow();
        p.server_invite(&peer(1));
        p.wake();
        // (the wake reconnects at once and the held INVITE follows the REGISTER;
        // model the push racing ahead of it instead)
        let mut q = Phone::new(phone_config(), origin());
        q.drop_flow();
        q.server_up = false;
        q.advance(Duration::from_secs(5));
        q.server_up = true;
        q.server_invite(&peer(2));
        let h = q
            .core
            .handle_push(q.now, "p2".into(), Some("sip:bob@x".into()));
        q.pump();
        assert!(matches!(
            q.events
                .iter()
                .rev()
                .find(|e| matches!(e, Event::Incoming { .. })),
            Some(Event::Incoming { pushed: true, .. })
        ));
        // CallKit answers before the INVITE arrives.
        q.core
            .answer(q.now, h, "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        // The push connected at once: registered, the INVITE arrived and was answered.
        q.advance(Duration::from_millis(60));
        assert_eq!(q.statuses("p2"), vec![200]);
        assert_eq!(incoming_count(&q), 1, "no second Incoming");
        assert_eq!(q.core.pushed_waiting(), 0);
        assert!(q.ended().is_empty());
        q.core.hangup(q.now, h).unwrap();
        q.pump();
        assert_eq!(q.ended(), vec![(h, Some(200), CallOutcome::Answered)]);
        assert_eq!(q.core.ledger_open(), 0);
        // The first phone: the held INVITE comes after the wake's reconnect, a normal call.
        p.advance(Duration::from_millis(60));
        assert_eq!(incoming_count(&p), 1);
        assert!(matches!(
            p.events
                .iter()
                .find(|e| matches!(e, Event::Incoming { .. })),
            Some(Event::Incoming { pushed: false, .. })
        ));
    }

    #[test]
    fn invite_before_push_returns_the_same_handle() {
        let mut p = Phone::new(phone_config(), origin());
        p.server_invite(&peer(1));
        let h = *p.incoming().last().unwrap();
        let h2 = p.core.handle_push(p.now, "p1".into(), None);
        assert_eq!(h, h2);
        assert_eq!(p.core.handle_push(p.now, "p1".into(), None), h);
        p.pump();
        assert_eq!(incoming_count(&p), 1);
        // A push for a call already over: a new handle that ends at once.
        p.core.reject(p.now, h, 486).unwrap();
        p.pump();
        let h3 = p.core.handle_push(p.now, "p1".into(), None);
        p.pump();
        assert_ne!(h3, h);
        assert_eq!(
            p.ended(),
            vec![
                (h, Some(486), CallOutcome::Busy),
                (h3, None, CallOutcome::Missed)
            ]
        );
    }

    #[test]
    fn push_without_invite_ends_missed_and_a_late_invite_is_a_new_call() {
        let mut p = Phone::new(phone_config(), origin());
        let h = p.core.handle_push(p.now, "p9".into(), None);
        p.pump();
        // A duplicate push: same handle.
        assert_eq!(p.core.handle_push(p.now, "p9".into(), None), h);
        p.advance(Duration::from_millis(9_900));
        assert!(p.ended().is_empty());
        p.advance(Duration::from_millis(200));
        assert_eq!(p.ended(), vec![(h, None, CallOutcome::Missed)]);
        assert_eq!(
            p.core.answer(p.now, h, "127.0.0.1:4000".parse().unwrap()),
            Err(super::CoreError::NoSuchCall)
        );
        p.server_invite(&peer(9));
        let late = *p.incoming().last().unwrap();
        assert_ne!(late, h);
        assert_eq!(incoming_count(&p), 2);
    }

    #[test]
    fn reject_before_invite_is_sent_when_it_comes() {
        let mut p = Phone::new(phone_config(), origin());
        let h = p.core.handle_push(p.now, "p3".into(), None);
        p.core.hangup(p.now, h).unwrap();
        assert!(p
            .core
            .answer(p.now, h, "127.0.0.1:1".parse().unwrap())
            .is_err());
        p.pump();
        assert!(p.ended().is_empty());
        p.server_invite(&peer(3));
        assert_eq!(p.statuses("p3"), vec![603]);
        assert_eq!(p.ended(), vec![(h, Some(603), CallOutcome::Rejected)]);
        assert_eq!(incoming_count(&p), 1);
        assert_eq!(p.core.ledger_open(), 0);
    }

    #[test]
    fn push_on_a_live_flow_refreshes_the_registration_at_once() {
        let mut p = Phone::new(phone_config(), origin());
        let before = p.registers;
        p.core.handle_push(p.now, "p4".into(), None);
        p.pump();
        assert_eq!(p.registers, before + 1);
    }
}
