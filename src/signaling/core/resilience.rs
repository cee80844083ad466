//! Calls that outlive their control flow (issue 4).
//!
//! When the control flow dies (EOF, read error, pong timeout, a failed keep-alive run, a
//! network change), the calls whose signaling used it are split in two:
//!
//! - **survivors**: confirmed calls (`Connected`, and UAS calls whose 2xx waits for its ACK)
//!   and ringing incoming calls with no final response yet. They stay, *detached*: their flow
//!   no longer exists. The INVITE server transaction of a ringing call is kept too.
//!   When the next control flow comes up, every detached call and kept server transaction moves
//!   to it (`rebind`): in-dialog requests (BYE, re-INVITE) and the final response of a ringing
//!   call go out on the new flow. The proxy routes a response by its Via branch, not by the
//!   connection it came on (RFC 5626 §5.3 lets the edge proxy forward over any flow to the
//!   instance), so answering a ringing INVITE on the new flow is what we choose. Requests that
//!   arrive on the new flow match their dialog by Call-ID and tags (the flow is not part of the
//!   match).
//! - **in flight**: our BYE or re-INVITE outstanding on the lost flow is taken off it (its
//!   transaction is dropped, no transport error reaches the call) and sent again, as a new
//!   request, on the next flow; a terminating call whose BYE is re-queued survives too.
//! - **the others** (UAC calls not yet answered) end as on any other flow (`call_flow_lost`).
//!
//! While detached, the application's commands (`ring`, `answer`, `reject`, `hangup`, `hold`,
//! `update_media`) are queued on the call (at most [`MAX_DEFERRED`]) and applied in order on
//! the new flow. Deadlines, both `Config::flow_grace` from the loss (ringing) or from the first
//! queued command (confirmed): a ringing call then ends `Failed` (status `None`, its final response
//! recorded as abandoned in the ledger, exactly as when an accepted flow dies); a confirmed call
//! with queued commands ends `Failed` (status `None`, `flow lost`). A confirmed call with nothing
//! queued waits for the next flow as long as it takes: its media does not need the control flow.

use super::{CallHandle, CallOutcome, CoreError, FlowId, SignalingCore, TxOwner};
use crate::signaling::invite::{Deferred, Phase, Role, MAX_DEFERRED};
use crate::signaling::transaction::TxKey;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

impl SignalingCore {
    /// Whether call `h` survives the loss of its control flow.
    pub(crate) fn survives_control_loss(&self, h: CallHandle) -> bool {
        self.calls.get(&h).is_some_and(|c| match (c.role, c.phase) {
            (_, Phase::Connected) => true,
            (_, Phase::Terminating) => c.deferred.contains(&Deferred::Bye),
            (Role::Uas, Phase::WaitAck) => true,
            (Role::Uas, Phase::Incoming) => c.final_status.is_none(),
            _ => false,
        })
    }

    /// The INVITE server transactions to keep when `flow` (the control flow) dies: those of
    /// its ringing calls.
    pub(crate) fn surviving_server_tx(&self, flow: FlowId) -> HashSet<TxKey> {
        self.calls
            .values()
            .filter(|c| c.flow == flow && c.role == Role::Uas && c.phase == Phase::Incoming)
            .filter(|c| c.final_status.is_none())
            .filter_map(|c| c.invite_key.clone())
            .collect()
    }

    /// Our BYEs and re-INVITEs in flight on the lost control flow `flow` are taken off it
    /// (no transport failure reaches their calls) and queued to go out again on the next one.
    pub(crate) fn requeue_in_flight(&mut self, flow: FlowId) {
        let keys: Vec<(TxKey, TxOwner)> = self
            .client_tx
            .iter()
            .filter(|(_, t)| t.flow == flow)
            .filter(|(_, t)| matches!(t.owner, TxOwner::Bye(_) | TxOwner::ReInvite(_)))
            .map(|(k, t)| (k.clone(), t.owner))
            .collect();
        for (key, owner) in keys {
            match owner {
                TxOwner::Bye(h) => {
                    let Some(c) = self.calls.get_mut(&h) else {
                        continue;
                    };
                    if c.phase == Phase::Terminating {
                        self.client_tx.remove(&key);
                        c.deferred.push(Deferred::Bye);
                    }
                }
                TxOwner::ReInvite(h) => {
                    let Some(c) = self.calls.get_mut(&h) else {
                        continue;
                    };
                    let ours = c.our_reinvite.as_ref().filter(|o| o.key == key);
                    if let (Phase::Connected, Some(o)) = (c.phase, ours) {
                        let hold = o.hold;
                        c.our_reinvite = None;
                        self.client_tx.remove(&key);
                        c.deferred.push(Deferred::Hold(hold));
                    }
                }
                _ => {}
            }
        }
    }

    /// Call `h` lost its control flow and survives: a ringing call gets its grace period.
    pub(crate) fn detach(&mut self, now: Instant, h: CallHandle) {
        let grace = self.config.flow_grace;
        if let Some(c) = self.calls.get_mut(&h) {
            if c.phase == Phase::Incoming || !c.deferred.is_empty() {
                c.detached_until = Some(now + grace);
            }
            tracing::info!(?h, "control flow lost: the call waits for the next one");
        }
    }

    /// Whether call `h` is alive and has no flow.
    pub fn is_detached(&self, h: CallHandle) -> bool {
        self.calls
            .get(&h)
            .is_some_and(|c| c.phase != Phase::Ended && !self.flows.contains_key(&c.flow))
    }

    /// Queues `cmd` when call `h` is detached (`Some(result)`), else `None` (run it now).
    pub(crate) fn defer(
        &mut self,
        now: Instant,
        h: CallHandle,
        cmd: Deferred,
    ) -> Option<Result<(), CoreError>> {
        if !self.needs_new_flow(h) && !self.is_detached(h) {
            return None;
        }
        let grace = self.config.flow_grace;
        let c = self.calls.get_mut(&h)?;
        let ringing = c.role == Role::Uas && c.phase == Phase::Incoming;
        let fits = match cmd {
            Deferred::Ring | Deferred::Answer(_) | Deferred::Reject(_) => ringing,
            Deferred::Hold(_) | Deferred::Media(_) => c.phase == Phase::Connected,
            Deferred::Hangup => true,
            Deferred::Bye => false,
        };
        let decided = c.deferred.iter().any(|d| {
            matches!(
                d,
                Deferred::Answer(_) | Deferred::Reject(_) | Deferred::Hangup
            )
        });
        if !fits || (decided && !matches!(cmd, Deferred::Hold(_) | Deferred::Media(_))) {
            return Some(Err(CoreError::InvalidState(
                "not valid in this call state (waiting for the control flow)",
            )));
        }
        if c.deferred.len() >= MAX_DEFERRED {
            return Some(Err(CoreError::InvalidState(
                "too many commands wait for the control flow",
            )));
        }
        c.deferred.push(cmd);
        if c.detached_until.is_none() {
            c.detached_until = Some(now + grace);
        }
        Some(Ok(()))
    }

    /// The grace period of a detached call is over (or a ringing one hit its ring timeout with
    /// no flow to send the 480 on).
    pub(crate) fn detached_timeout(&mut self, now: Instant, h: CallHandle) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        c.deferred.clear();
        if c.phase == Phase::Ended {
            return;
        }
        if c.role == Role::Uas && c.final_status.is_none() {
            c.final_status = Some(0);
            let tx = c.invite_key.clone();
            if let Some(k) = c.ledger.clone() {
                self.ledger.final_abandoned(&k, now);
            }
            // Its kept INVITE server transaction will never answer now.
            if let Some(k) = tx {
                self.server_tx.remove(&k);
            }
        }
        let why = self.flow_cause.clone();
        self.end_call(now, h, 0, &why, CallOutcome::Failed);
    }

    /// The next control flow `flow` is up: detached calls and kept server transactions move to
    /// it, and the commands queued meanwhile run.
    pub(crate) fn rebind(&mut self, now: Instant, flow: FlowId) {
        let orphans: Vec<CallHandle> = self
            .calls
            .values()
            .filter(|c| c.phase != Phase::Ended && !self.flows.contains_key(&c.flow))
            .filter(|c| !c.rehome) // a direct call finds its own way (`core/rehome.rs`)
            .map(|c| c.handle)
            .collect();
        let flows = &self.flows;
        for t in self.server_tx.all_mut().values_mut() {
            if !flows.contains_key(&t.flow) {
                t.flow = flow;
            }
        }
        for h in orphans {
            let Some(c) = self.calls.get_mut(&h) else {
                continue;
            };
            c.flow = flow;
            c.detached_until = None;
            tracing::info!(
                ?h,
                queued = c.deferred.len(),
                "call moved to the new control flow"
            );
            self.run_deferred(now, h);
        }
    }

    /// Runs the commands queued on call `h` while it had no flow, in order.
    pub(crate) fn run_deferred(&mut self, now: Instant, h: CallHandle) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let cmds = std::mem::take(&mut c.deferred);
        for cmd in cmds {
            let r = match cmd {
                Deferred::Ring => self.uas_ring(now, h),
                Deferred::Answer(m) => self.uas_answer(now, h, m),
                Deferred::Reject(s) => self.uas_reject(now, h, s),
                Deferred::Hangup => self.hangup_now(now, h),
                Deferred::Hold(on) => self.send_reinvite(now, h, on),
                Deferred::Media(m) => self.reinvite_media(now, h, m),
                Deferred::Bye => {
                    self.send_bye(now, h);
                    Ok(())
                }
            };
            if let Err(e) = r {
                tracing::warn!(?h, ?cmd, error = %e, "queued command failed");
            }
        }
    }

    /// A re-INVITE announcing a new local RTP address (network change).
    pub(crate) fn reinvite_media(
        &mut self,
        now: Instant,
        h: CallHandle,
        media: SocketAddr,
    ) -> Result<(), CoreError> {
        let c = self
            .calls
            .get_mut(&h)
            .filter(|c| c.phase != Phase::Ended)
            .ok_or(CoreError::NoSuchCall)?;
        if c.phase != Phase::Connected {
            return Err(CoreError::InvalidState("call not connected"));
        }
        let old = c.local_media.replace(media);
        let hold = c.held;
        let r = self.send_reinvite(now, h, hold);
        if r.is_err() {
            if let Some(c) = self.calls.get_mut(&h) {
                c.local_media = old;
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::PeerInvite;
    use super::super::{CallOutcome, Event};
    use crate::platform::sim::{phone_config, Phone};
    use std::time::{Duration, Instant};

    /// The origin of the virtual clock (tests only; every later time is origin + offset).
    fn origin() -> Instant {
        Instant::now()
    }

    fn peer(n: u32) -> PeerInvite {
        PeerInvite {
            call_id: format!("c{n}"),
            from_tag: format!("f{n}"),
            branch: format!("z9hG4bKb{n}"),
            cseq: 1,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    /// A registered phone with a connected incoming call; returns the handle.
    fn connected(p: &mut Phone) -> super::CallHandle {
        p.server_invite(&peer(1));
        let h = *p.incoming().last().unwrap();
        p.core
            .answer(p.now, h, "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        p.pump();
        assert_eq!(p.statuses("c1"), vec![200]);
        h
    }

    #[test]
    fn confirmed_call_survives_control_flow_loss_and_byes_on_the_new_flow() {
        let mut p = Phone::new(phone_config(), origin());
        assert!(p.registered());
        let h = connected(&mut p);
        let old = p.server_flow.unwrap();
        p.drop_flow();
        assert!(p.ended().is_empty(), "the call survives: {:?}", p.ended());
        assert!(p.core.is_detached(h));
        // Hang up while the flow is down: queued.
        p.core.hangup(p.now, h).unwrap();
        p.pump();
        assert!(p.last_request("BYE").is_none());
        p.advance(50 * MS);
        let new = p.server_flow.unwrap();
        assert_ne!(new, old);
        assert!(p.registered());
        assert!(!p.core.is_detached(h));
        let bye_flow = p
            .sent
            .iter()
            .find(|(_, b)| b.starts_with(b"BYE "))
            .map(|(f, _)| *f);
        assert_eq!(bye_flow, Some(new), "BYE on the new control flow");
        assert_eq!(p.ended(), vec![(h, Some(200), CallOutcome::Answered)]);
        assert_eq!(p.core.ledger_open(), 0);
    }

    #[test]
    fn peer_bye_on_the_new_flow_matches_the_dialog() {
        let mut p = Phone::new(phone_config(), origin());
        let h = connected(&mut p);
        p.drop_flow();
        p.advance(50 * MS);
        let tag = p
            .sent
            .iter()
            .filter_map(
                |(_, b)| match crate::signaling::message::Message::parse(b) {
                    Ok(crate::signaling::message::Message::Response(r)) if r.status == 200 => {
                        r.headers.to().and_then(|t| t.tag().map(str::to_string))
                    }
                    _ => None,
                },
            )
            .next_back()
            .unwrap();
        p.deliver(&peer(1).bye(Some(&tag), 2, "z9hG4bKbye"));
        assert_eq!(p.ended(), vec![(h, Some(200), CallOutcome::Answered)]);
        assert_eq!(p.statuses("c1").last(), Some(&200));
    }

    #[test]
    fn ringing_call_is_answered_on_the_new_flow() {
        let mut p = Phone::new(phone_config(), origin());
        p.server_invite(&peer(1));
        let h = *p.incoming().last().unwrap();
        p.core.ring(p.now, h).unwrap();
        p.pump();
        p.server_up = false;
        p.drop_flow();
        // The reconnect fails; answer meanwhile: remembered.
        p.advance(10 * MS);
        p.core
            .answer(p.now, h, "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        assert!(
            p.core
                .answer(p.now, h, "127.0.0.1:4000".parse().unwrap())
                .is_err(),
            "no second answer"
        );
        p.advance(100 * MS);
        assert!(p.ended().is_empty());
        p.server_up = true;
        p.advance(Duration::from_secs(2));
        assert_eq!(p.statuses("c1"), vec![180, 200]);
        let ok_flow = p.sent.iter().rev().find(|(_, b)| {
            b.starts_with(b"SIP/2.0 200 OK") && String::from_utf8_lossy(b).contains("Call-ID: c1")
        });
        assert_eq!(ok_flow.map(|(f, _)| *f), p.server_flow);
        assert!(p.events.iter().any(|e| matches!(e, Event::Media { .. })));
        assert!(p.ended().is_empty());
        assert_eq!(p.core.ledger_stats().finals, 1);
    }

    #[test]
    fn ringing_call_without_a_new_flow_ends_failed_after_the_grace() {
        let mut p = Phone::new(phone_config(), origin());
        p.server_invite(&peer(1));
        let h = *p.incoming().last().unwrap();
        p.server_up = false;
        p.drop_flow();
        p.advance(Duration::from_secs(31));
        assert!(p.ended().is_empty());
        p.advance(Duration::from_secs(2));
        assert_eq!(p.ended(), vec![(h, None, CallOutcome::Failed)]);
        let st = p.core.ledger_stats();
        assert_eq!((st.abandoned, st.open, st.double_finals), (1, 0, 0));
    }

    #[test]
    fn queued_commands_time_out_and_end_the_call_failed() {
        let mut p = Phone::new(phone_config(), origin());
        let h = connected(&mut p);
        p.server_up = false;
        p.drop_flow();
        p.core.hold(p.now, h, true).unwrap();
        p.advance(Duration::from_secs(40));
        assert_eq!(p.ended(), vec![(h, None, CallOutcome::Failed)]);
        // A confirmed call with nothing queued waits however long it takes.
        let mut q = Phone::new(phone_config(), origin());
        let h2 = connected(&mut q);
        q.server_up = false;
        q.drop_flow();
        q.advance(Duration::from_secs(300));
        assert!(q.ended().is_empty());
        q.server_up = true;
        q.advance(Duration::from_secs(40));
        assert!(!q.core.is_detached(h2));
    }

    #[test]
    fn accepted_flow_calls_still_end_at_once() {
        let mut s =
            super::super::testkit::Solo::new(crate::signaling::config::Config::default(), origin());
        s.feed(&peer(1).invite(Some(&super::super::testkit::sdp_offer(7000)), "", None));
        s.drop_flow();
        assert!(s
            .events
            .iter()
            .any(|e| matches!(e, Event::Ended { status: None, .. })));
    }

    #[test]
    fn bye_in_flight_on_the_lost_flow_goes_out_again_on_the_new_one() {
        let mut p = Phone::new(phone_config(), origin());
        let h = connected(&mut p);
        // The BYE leaves, its 200 is lost with the flow.
        p.suspended = true;
        p.core.hangup(p.now, h).unwrap();
        p.pump();
        assert!(p.last_request("BYE").is_some());
        p.held.clear();
        p.drop_flow();
        p.wake();
        assert!(p.ended().is_empty(), "{:?}", p.ended());
        p.advance(60 * MS);
        let byes = p
            .sent
            .iter()
            .filter(|(_, b)| b.starts_with(b"BYE "))
            .count();
        assert_eq!(byes, 2, "sent again on the new flow");
        assert_eq!(p.ended(), vec![(h, Some(200), CallOutcome::Answered)]);
        assert_eq!(p.core.transaction_count(), 0);
    }

    #[test]
    fn reinvite_in_flight_on_the_lost_flow_goes_out_again_on_the_new_one() {
        let mut p = Phone::new(phone_config(), origin());
        let h = connected(&mut p);
        p.suspended = true;
        p.core.hold(p.now, h, true).unwrap();
        p.pump();
        p.held.clear();
        p.drop_flow();
        p.wake();
        p.advance(60 * MS);
        let invites = p
            .requests
            .iter()
            .filter(|r| r.method.as_str() == "INVITE")
            .count();
        assert_eq!(invites, 2);
        assert!(p.events.iter().any(|e| matches!(
            e,
            Event::State {
                state: crate::signaling::core::CallState::Held,
                ..
            }
        )));
        assert!(p.ended().is_empty());
    }
}
