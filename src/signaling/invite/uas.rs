//! The UAS half of the invite state machine (RFC 3261 §13.3, §9.2, §15.1.2), plus what either
//! side does when the peer sends BYE or a re-INVITE.
//!
//! ```text
//! INVITE ─┬─ 420 / 482 / 415 / 400 / 488 / busy ──────────────────────────► Ended (Failed/Busy)
//!         └─ Incoming ─┬─ ring ─► (180) ─┐
//!                      ├─ reject / ring timeout (480) / CANCEL (487) / BYE ─► Ended
//!                      └─ answer (200) ─► WaitAck ─┬─ ACK ─► Connected ─ BYE ─► Ended
//!                                                  └─ 64·T1 ─► BYE, Ended (Failed)
//! ```

use super::ledger::{EntryKind, LedgerKey};
use super::{
    ledger_key, response, unsupported, Call, MergeKey, OkRetransmit, Phase, Role, TheirReInvite,
    ACCEPT,
};
use crate::signaling::config::BusyPolicy;
use crate::signaling::core::{
    CallHandle, CallOutcome, CallState, CoreError, Event, FlowId, SignalingCore, TxOwner,
};
use crate::signaling::dialog::{Dialog, DialogState};
use crate::signaling::message::{reason_phrase, HeaderName, Method, Request, Response};
use crate::signaling::sdp::{self, Direction, SdpError, SessionDescription};
use crate::signaling::transaction::TxKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The offer of a request, or why it cannot be taken as the status to answer. A request
/// without a body has no offer (`Ok(None)`).
fn offer_status(req: &Request) -> Result<Option<SessionDescription>, u16> {
    if req.body.is_empty() {
        return Ok(None);
    }
    // The media type without parameters, compared without a lower-cased copy.
    let is_sdp = req.headers.get(&HeaderName::ContentType).is_some_and(|v| {
        let media_type = v.split(';').next().unwrap_or_default().trim();
        media_type.eq_ignore_ascii_case("application/sdp")
    });
    if !is_sdp {
        return Err(415);
    }
    SessionDescription::parse_bytes(&req.body)
        .map(Some)
        .map_err(|_| 400)
}

impl SignalingCore {
    /// An INVITE without To tag: a new call (or its immediate rejection).
    pub(crate) fn uas_invite(
        &mut self,
        now: Instant,
        flow: FlowId,
        key: &TxKey,
        req: Arc<Request>,
        lk: Option<LedgerKey>,
    ) {
        let call_id = req.headers.call_id().unwrap_or_default().to_string();
        // A call announced by a push takes this INVITE (`core/push.rs`).
        let bound = self.take_pushed(&call_id);
        let h = match &bound {
            Some(b) => b.handle,
            None => self.new_call_handle(),
        };
        if let Some(lk) = &lk {
            self.ledger.open(lk.clone(), EntryKind::Initial);
        }
        let mut call = Call::new(h, Role::Uas, call_id.clone(), flow, Phase::Incoming);
        call.sdp.srtp = self.srtp_policy_on(flow);
        call.invite = Some(Arc::clone(&req));
        call.invite_key = Some(key.clone());
        call.ledger = lk.clone();
        self.calls.insert(h, Box::new(call));

        let unsup = unsupported(&req);
        if !unsup.is_empty() {
            self.uas_reject_now(now, h, 420, |r| {
                r.headers.push(HeaderName::Unsupported, unsup.join(", "))
            });
            return;
        }
        if self.is_merged(h, &req, lk.as_ref(), &key.branch) {
            self.uas_reject_now(now, h, 482, |_| {});
            return;
        }
        let offer = match offer_status(&req) {
            Ok(o) => o,
            Err(status) => {
                self.uas_reject_now(now, h, status, |r| {
                    if status == 415 {
                        r.headers.push(HeaderName::Accept, ACCEPT);
                    }
                });
                return;
            }
        };
        let checked = match &offer {
            Some(offer) => sdp::check_offer(offer, &self.config.codecs, self.srtp_policy_on(flow)),
            None => Ok(()),
        };
        match checked {
            Ok(()) => {}
            Err(SdpError::NoCommonCodec | SdpError::Security(_)) => {
                self.uas_reject_now(now, h, 488, |_| {});
                return;
            }
            Err(_) => {
                self.uas_reject_now(now, h, 400, |_| {});
                return;
            }
        }
        let limit = match self.config.busy_policy {
            BusyPolicy::Reject(code) => Some((1, code)),
            BusyPolicy::Limit { calls, code } => Some((calls, code)),
            BusyPolicy::Allow => None,
        };
        if let Some((calls, code)) = limit {
            if self.busy_calls_except(h) >= calls {
                self.uas_reject_now(now, h, code, |_| {});
                return;
            }
        }
        let ring_timeout = self.config.ring_timeout;
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        c.late_offer = offer.is_none();
        c.offer = offer;
        c.deadline = Some(now + ring_timeout);
        c.dialog = Dialog::uas(&req, &c.local_tag, DialogState::Early);
        if let Some(d) = &c.dialog {
            self.dialogs.insert(d.id.clone(), h);
        }
        if let Some(b) = bound {
            self.apply_pushed(now, h, &b.pushed);
            return;
        }
        self.event(Event::Incoming {
            call: h,
            call_id,
            from: req
                .headers
                .get(&HeaderName::From)
                .unwrap_or_default()
                .to_string(),
            to: req
                .headers
                .get(&HeaderName::To)
                .unwrap_or_default()
                .to_string(),
            pushed: false,
        });
    }

    /// RFC 3261 §8.2.2.2: same From tag, Call-ID and CSeq as an INVITE we already have, but
    /// another branch. The first INVITE of each (Call-ID, From tag, CSeq) is indexed.
    /// `lk` is the INVITE's ledger key (its Call-ID is shared), `branch` its top Via branch.
    fn is_merged(
        &mut self,
        h: CallHandle,
        req: &Request,
        lk: Option<&LedgerKey>,
        branch: &Arc<str>,
    ) -> bool {
        let (Some(call_id), Some(from), Some(cseq)) = (
            req.headers.call_id(),
            req.headers.from(),
            req.headers.cseq(),
        ) else {
            return false;
        };
        let key = MergeKey {
            call_id: lk.map_or_else(|| Arc::from(call_id), |k| Arc::clone(&k.call_id)),
            from_tag: Arc::from(from.tag().unwrap_or_default()),
            cseq: cseq.seq,
        };
        match self.merge_index.get(&key) {
            Some((b, _)) => b != branch,
            None => {
                self.merge_index
                    .insert(key.clone(), (Arc::clone(branch), h));
                if let Some(c) = self.calls.get_mut(&h) {
                    c.merge_key = Some(key);
                }
                false
            }
        }
    }

    /// Rejects a new INVITE at once and ends its call (no `Incoming` was emitted).
    fn uas_reject_now(
        &mut self,
        now: Instant,
        h: CallHandle,
        status: u16,
        extra: impl FnOnce(&mut Response),
    ) {
        let Some(mut resp) = self.uas_response(h, status) else {
            return;
        };
        extra(&mut resp);
        self.uas_final(now, h, resp);
        let outcome = match status {
            486 | 600 => CallOutcome::Busy,
            _ => CallOutcome::Failed,
        };
        self.end_call(now, h, status, reason_phrase(status), outcome);
    }

    /// A response to the call's INVITE with our tag, Server/Allow/Supported, and Contact on 1xx/2xx.
    fn uas_response(&self, h: CallHandle, status: u16) -> Option<Response> {
        let c = self.calls.get(&h)?;
        let invite = c.invite.as_ref()?;
        let mut r = response(invite, status, Some(&c.local_tag), &self.config.user_agent);
        if (101..300).contains(&status) {
            let sips = invite.uri.scheme == crate::signaling::message::Scheme::Sips;
            r.headers
                .push(HeaderName::Contact, self.contact_for(c.flow, sips));
            for rr in invite.headers.get_all(&HeaderName::RecordRoute) {
                r.headers.push(HeaderName::RecordRoute, rr);
            }
        }
        Some(r)
    }

    /// Sends the one final response of the call's INVITE and records it in the ledger.
    fn uas_final(&mut self, now: Instant, h: CallHandle, resp: impl Into<Arc<Response>>) {
        let resp = resp.into();
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if c.final_status.is_some() {
            tracing::error!(?h, "second final response suppressed");
            debug_assert!(false, "second final for {h:?}");
            return;
        }
        c.final_status = Some(resp.status);
        c.deadline = None;
        let key = c.invite_key.clone();
        if let Some(k) = c.ledger.clone() {
            self.ledger.final_sent(&k, now);
        }
        if let Some(key) = key {
            self.send_response(now, &key, resp);
        }
    }

    fn uas_call(&self, h: CallHandle) -> Result<&Call, CoreError> {
        let c = self
            .calls
            .get(&h)
            .filter(|c| c.phase != Phase::Ended)
            .ok_or(CoreError::NoSuchCall)?;
        if c.role != Role::Uas || c.phase != Phase::Incoming || c.final_status.is_some() {
            return Err(CoreError::InvalidState("not an unanswered incoming call"));
        }
        Ok(c)
    }

    /// `ring`: 180 Ringing.
    pub(crate) fn uas_ring(&mut self, now: Instant, h: CallHandle) -> Result<(), CoreError> {
        let c = self.uas_call(h)?;
        let key = c.invite_key.clone();
        if let (Some(resp), Some(key)) = (self.uas_response(h, 180), key) {
            self.send_response(now, &key, resp);
        }
        self.report(h, CallState::Ringing);
        Ok(())
    }

    /// `answer`: 200 with the SDP answer.
    pub(crate) fn uas_answer(
        &mut self,
        now: Instant,
        h: CallHandle,
        media: SocketAddr,
    ) -> Result<(), CoreError> {
        self.uas_call(h)?;
        let codecs = &self.config.codecs;
        let t1 = self.config.timers.t1;
        let Some(c) = self.calls.get_mut(&h) else {
            return Err(CoreError::NoSuchCall);
        };
        let (answer, negotiated) = match &c.offer {
            Some(offer) => {
                match sdp::answer_offer(offer, &mut c.sdp, media, codecs, Direction::SendRecv) {
                    Ok((a, n)) => (a, Some(n)),
                    Err(_) => {
                        self.uas_reject_now(now, h, 488, |_| {});
                        return Err(CoreError::InvalidState("the offer cannot be answered"));
                    }
                }
            }
            None => {
                // Late offer: ours goes in the 200, the answer comes in the ACK.
                let offer = sdp::create_offer(&mut c.sdp, media, codecs, Direction::SendRecv);
                c.offer = Some(offer.clone());
                (offer, None)
            }
        };
        c.local_media = Some(media);
        let body = answer.to_string().into_bytes();
        c.local_sdp = Some(answer);
        c.phase = Phase::WaitAck;
        if let Some(d) = c.dialog.as_mut() {
            d.state = DialogState::Confirmed;
        }
        let call_id = c.call_id.clone();
        let Some(mut resp) = self.uas_response(h, 200) else {
            return Err(CoreError::NoSuchCall);
        };
        resp.headers
            .push(HeaderName::ContentType, "application/sdp");
        resp.body = body;
        let resp = Arc::new(resp);
        self.uas_final(now, h, Arc::clone(&resp));
        if let Some(c) = self.calls.get_mut(&h) {
            c.deadline = Some(now + 64 * t1);
            c.ok_retransmit = Some(OkRetransmit {
                response: resp,
                at: now + t1,
                interval: t1,
            });
        }
        if let Some(media) = negotiated {
            self.event(Event::Media {
                call: h,
                call_id,
                media,
            });
        }
        Ok(())
    }

    /// `reject`: a 3xx-6xx final.
    pub(crate) fn uas_reject(
        &mut self,
        now: Instant,
        h: CallHandle,
        status: u16,
    ) -> Result<(), CoreError> {
        if !(300..=699).contains(&status) {
            return Err(CoreError::InvalidState("reject needs a 3xx-6xx status"));
        }
        self.uas_call(h)?;
        let Some(resp) = self.uas_response(h, status) else {
            return Err(CoreError::NoSuchCall);
        };
        self.uas_final(now, h, resp);
        let outcome = match status {
            486 | 600 => CallOutcome::Busy,
            _ => CallOutcome::Rejected,
        };
        self.end_call(now, h, status, reason_phrase(status), outcome);
        Ok(())
    }

    /// `hangup` as UAS: 603 before the answer, BYE after.
    pub(crate) fn uas_hangup(&mut self, now: Instant, h: CallHandle) -> Result<(), CoreError> {
        let phase = self.calls.get(&h).map(|c| c.phase);
        match phase {
            Some(Phase::Incoming) => self.uas_reject(now, h, 603),
            Some(Phase::WaitAck) => {
                // RFC 3261 §15: no BYE before the ACK of our 2xx (or its timeout).
                let c = self.calls.get_mut(&h).ok_or(CoreError::NoSuchCall)?;
                if c.bye_after_ack {
                    return Err(CoreError::InvalidState("already terminating"));
                }
                c.bye_after_ack = true;
                self.report(h, CallState::Terminating);
                Ok(())
            }
            Some(Phase::Connected) => {
                self.send_bye(now, h);
                Ok(())
            }
            Some(Phase::Terminating) => Err(CoreError::InvalidState("already terminating")),
            _ => Err(CoreError::NoSuchCall),
        }
    }

    /// The application let the call ring too long: 480, missed.
    pub(crate) fn uas_ring_timeout(&mut self, now: Instant, h: CallHandle) {
        if let Some(resp) = self.uas_response(h, 480) {
            self.uas_final(now, h, resp);
            self.end_call(now, h, 480, "ring timeout", CallOutcome::Missed);
        }
    }

    /// Our 2xx was never ACKed: BYE, failed.
    pub(crate) fn uas_ack_timeout(&mut self, now: Instant, h: CallHandle) {
        self.send_bye(now, h);
        self.end_call(now, h, 408, "no ACK", CallOutcome::Failed);
    }

    /// The ACK of a 2xx of ours.
    pub(crate) fn uas_ack(&mut self, now: Instant, h: CallHandle, req: &Request) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if c.phase == Phase::WaitAck {
            c.phase = Phase::Connected;
            c.deadline = None;
            c.ok_retransmit = None;
            if c.late_offer {
                let answer = SessionDescription::parse_bytes(&req.body);
                let media = match (&c.offer, answer) {
                    (Some(offer), Ok(answer)) => sdp::accept_answer(offer, &answer).ok(),
                    _ => None,
                };
                let call_id = c.call_id.clone();
                match media {
                    Some(media) => self.event(Event::Media {
                        call: h,
                        call_id,
                        media,
                    }),
                    None => {
                        self.send_bye(now, h);
                        self.end_call(now, h, 488, "no answer in the ACK", CallOutcome::Failed);
                        return;
                    }
                }
            }
            let Some(c) = self.calls.get_mut(&h) else {
                return;
            };
            if c.bye_after_ack {
                self.send_bye(now, h);
            } else {
                self.report(h, CallState::Connected);
            }
        }
    }

    /// CANCEL (RFC 3261 §9.2).
    pub(crate) fn uas_cancel(&mut self, now: Instant, key: &TxKey, req: &Request) {
        let target = TxKey {
            branch: key.branch.clone(),
            method: Method::Invite,
        };
        let call = self
            .calls
            .values()
            .find(|c| c.role == Role::Uas && c.invite_key.as_ref() == Some(&target))
            .map(|c| {
                (
                    c.handle,
                    c.final_status.is_none() && c.phase != Phase::Ended,
                )
            });
        match call {
            Some((h, true)) => {
                self.respond(now, key, req, 200, Some(h));
                if let Some(resp) = self.uas_response(h, 487) {
                    self.uas_final(now, h, resp);
                }
                self.end_call(now, h, 487, "CANCEL", CallOutcome::Missed);
            }
            Some((h, false)) => self.respond(now, key, req, 200, Some(h)),
            None if self.server_tx.contains_key(&target) => self.respond(now, key, req, 200, None),
            None => self.respond(now, key, req, 481, None),
        }
    }

    /// BYE from the peer in an early or confirmed dialog (either role).
    pub(crate) fn uas_bye(&mut self, now: Instant, h: CallHandle, key: &TxKey, req: &Request) {
        self.respond(now, key, req, 200, Some(h));
        let Some(c) = self.calls.get(&h) else {
            return;
        };
        match (c.role, c.phase, c.final_status) {
            (Role::Uas, Phase::Incoming, None) => {
                // RFC 3261 §15.1.2: the INVITE gets 487.
                if let Some(resp) = self.uas_response(h, 487) {
                    self.uas_final(now, h, resp);
                }
                self.end_call(now, h, 487, "BYE", CallOutcome::Missed);
            }
            (_, Phase::Ended, _) => {}
            _ => {
                if let Some(t) = c.their_reinvite.clone() {
                    self.reinvite_final(now, h, &t, 487, None);
                }
                self.end_call(now, h, 200, "BYE", CallOutcome::Answered);
            }
        }
    }

    /// A re-INVITE from the peer (either role): hold / resume / refresh.
    pub(crate) fn uas_reinvite(&mut self, now: Instant, h: CallHandle, key: &TxKey, req: &Request) {
        let Some(lk) = ledger_key(req) else {
            self.respond(now, key, req, 400, Some(h));
            return;
        };
        self.ledger.open(lk.clone(), EntryKind::ReInvite);
        let t = TheirReInvite {
            key: key.clone(),
            ledger: lk,
        };
        let codecs = self.config.codecs.clone();
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if c.our_reinvite.is_some() || c.their_reinvite.is_some() || c.phase != Phase::Connected {
            self.reinvite_final(now, h, &t, 491, Some(req));
            return;
        }
        if let Some(d) = c.dialog.as_mut() {
            d.refresh_target(&req.headers);
        }
        let media = c.local_media;
        if req.body.is_empty() {
            // No offer: answer with our current description (see the module docs).
            let body = c.local_sdp.as_ref().map(|s| s.to_string().into_bytes());
            c.their_reinvite = Some(t.clone());
            self.reinvite_ok(now, h, &t, req, body);
            return;
        }
        let offer = match offer_status(req) {
            Ok(Some(o)) => o,
            Ok(None) => return, // no body: handled above
            Err(status) => {
                self.reinvite_final(now, h, &t, status, Some(req));
                return;
            }
        };
        let Some(media) = media else {
            self.reinvite_final(now, h, &t, 488, Some(req));
            return;
        };
        let want = if c.held {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        match sdp::answer_offer(&offer, &mut c.sdp, media, &codecs, want) {
            Ok((answer, negotiated)) => {
                c.local_sdp = Some(answer.clone());
                c.their_reinvite = Some(t.clone());
                let peer_holds = matches!(
                    negotiated.direction,
                    Direction::RecvOnly | Direction::Inactive
                ) || offer_is_hold(&offer);
                let was_held = c.peer_held;
                c.peer_held = peer_holds;
                let call_id = c.call_id.clone();
                self.reinvite_ok(now, h, &t, req, Some(answer.to_string().into_bytes()));
                self.event(Event::Media {
                    call: h,
                    call_id,
                    media: negotiated,
                });
                if peer_holds {
                    self.report(h, CallState::Held);
                } else if was_held {
                    self.report(h, CallState::Resumed);
                }
            }
            Err(SdpError::NoCommonCodec) => self.reinvite_final(now, h, &t, 488, Some(req)),
            Err(_) => self.reinvite_final(now, h, &t, 400, Some(req)),
        }
    }

    fn reinvite_ok(
        &mut self,
        now: Instant,
        h: CallHandle,
        t: &TheirReInvite,
        req: &Request,
        body: Option<Vec<u8>>,
    ) {
        let Some(c) = self.calls.get(&h) else {
            return;
        };
        let mut resp = response(req, 200, Some(&c.local_tag), &self.config.user_agent);
        resp.headers.push(HeaderName::Contact, self.contact(c.flow));
        if let Some(body) = body {
            resp.headers
                .push(HeaderName::ContentType, "application/sdp");
            resp.body = body;
        }
        self.ledger.final_sent(&t.ledger, now);
        self.send_response(now, &t.key, resp);
        if let Some(c) = self.calls.get_mut(&h) {
            c.their_reinvite = None;
        }
    }

    /// A non-2xx final for a peer's re-INVITE. `req` is the re-INVITE when the server
    /// transaction has not been told about it yet.
    pub(crate) fn reinvite_final(
        &mut self,
        now: Instant,
        h: CallHandle,
        t: &TheirReInvite,
        status: u16,
        req: Option<&Request>,
    ) {
        let tag = self.calls.get(&h).map(|c| c.local_tag.clone());
        let invite = req.cloned().or_else(|| {
            self.server_tx.get(&t.key).and_then(|s| match &s.tx {
                crate::signaling::core::ServerKind::Invite(tx) => Some(tx.request().clone()),
                _ => None,
            })
        });
        if let Some(invite) = invite {
            let resp = response(&invite, status, tag.as_deref(), &self.config.user_agent);
            self.send_response(now, &t.key, resp);
        }
        self.ledger.final_sent(&t.ledger, now);
        if let Some(c) = self.calls.get_mut(&h) {
            if c.their_reinvite.as_ref().is_some_and(|x| x.key == t.key) {
                c.their_reinvite = None;
            }
        }
    }

    /// Sends BYE in the call's dialog; the call ends when the BYE transaction does.
    pub(crate) fn send_bye(&mut self, now: Instant, h: CallHandle) {
        let Some(c) = self.calls.get(&h) else {
            return;
        };
        let flow = c.flow;
        let via = self.via(flow);
        let ua = self.config.user_agent.clone();
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(d) = c.dialog.as_mut() else {
            return;
        };
        let mut bye = d.request(Method::Bye, &via, None);
        bye.headers.push(HeaderName::UserAgent, ua);
        if c.phase != Phase::Ended {
            c.phase = Phase::Terminating;
            c.deadline = None;
        }
        self.send_request(now, flow, bye, TxOwner::Bye(h));
        self.report(h, CallState::Terminating);
    }

    /// Our BYE got its answer (or timed out): the call is over.
    pub(crate) fn bye_done(&mut self, now: Instant, h: CallHandle) {
        if self
            .calls
            .get(&h)
            .is_some_and(|c| c.phase == Phase::Terminating)
        {
            self.end_call(now, h, 200, "BYE", CallOutcome::Answered);
        }
    }
}

/// RFC 2543 style hold: `c=0.0.0.0`, or a sendonly/inactive offer.
fn offer_is_hold(offer: &SessionDescription) -> bool {
    matches!(
        offer.direction(),
        Some(Direction::SendOnly) | Some(Direction::Inactive)
    ) || offer
        .media
        .first()
        .and_then(|m| m.effective_connection(offer))
        .is_some_and(|c| c.is_hold())
}

#[cfg(test)]
mod tests {
    /// The origin of the virtual clock (tests only; every later time is origin + offset).
    fn origin() -> std::time::Instant {
        std::time::Instant::now()
    }

    use crate::signaling::config::Config;
    use crate::signaling::core::testkit::{sdp_offer, PeerInvite, Solo};
    use crate::signaling::core::{CallOutcome, CallState, Event};
    use std::time::Duration;

    fn peer(n: u32) -> PeerInvite {
        PeerInvite {
            call_id: format!("call-{n}"),
            from_tag: format!("ft{n}"),
            branch: format!("z9hG4bKbr{n}"),
            cseq: 1,
        }
    }

    fn statuses(s: &Solo) -> Vec<u16> {
        s.responses().iter().map(|r| r.status).collect()
    }

    fn incoming(s: &Solo) -> Option<crate::signaling::core::CallHandle> {
        s.events.iter().rev().find_map(|e| match e {
            Event::Incoming { call, .. } => Some(*call),
            _ => None,
        })
    }

    /// A UA that received `p`'s INVITE (offer `body`) and answered it with media at
    /// 127.0.0.1:7000, its outputs collected.
    fn answered(p: &PeerInvite, body: Option<&str>) -> (Solo, crate::signaling::core::CallHandle) {
        let mut s = Solo::new(Config::default(), origin());
        s.feed(&p.invite(body, "", None));
        let h = incoming(&s).unwrap();
        s.core
            .answer(s.now, h, "127.0.0.1:7000".parse().unwrap())
            .unwrap();
        s.collect();
        (s, h)
    }

    #[test]
    fn immediate_rejections_each_end_once_without_incoming() {
        let mut s = Solo::new(Config::default(), origin());
        let offer = sdp_offer(6000);
        s.feed(&peer(1).invite(Some(&offer), "Require: 100rel\r\n", None));
        s.feed(&peer(2).invite(Some(&offer), "Content-Type: text/plain\r\n", None));
        s.feed(&peer(3).invite(Some("v=0\r\nbogus\r\n"), "", None));
        let g729 = offer
            .replace("RTP/AVP 0 101", "RTP/AVP 18")
            .replace("a=rtpmap:0 PCMU/8000\r\n", "");
        s.feed(&peer(4).invite(Some(&g729), "", None));
        // Rejected at once: no 100 Trying before them.
        assert_eq!(statuses(&s), vec![420, 415, 400, 488]);
        assert!(String::from_utf8_lossy(&s.sent[0]).contains("Unsupported: 100rel"));
        assert_eq!(
            s.ended(),
            vec![
                (420, CallOutcome::Failed),
                (415, CallOutcome::Failed),
                (400, CallOutcome::Failed),
                (488, CallOutcome::Failed)
            ]
        );
        assert!(incoming(&s).is_none());
        assert_eq!(s.core.ledger_open(), 0);
        assert_eq!(s.core.ledger_stats().closed, 4);
    }

    #[test]
    fn provisional_and_2xx_echo_the_record_route_set() {
        // RFC 3261 §12.1.1: the UAS copies every Record-Route of the request, in order, into
        // its dialog-forming responses, so the caller routes ACK and BYE through the proxies.
        let mut s = Solo::new(Config::default(), origin());
        let rr = "Record-Route: <sip:10.0.0.1;transport=tcp;lr>\r\n\
                  Record-Route: <sip:10.0.0.2;lr>, <sip:10.0.0.3;lr>\r\n";
        s.feed(&peer(1).invite(Some(&sdp_offer(6000)), rr, None));
        let call = incoming(&s).expect("incoming");
        // The app takes its time: 100 Trying first.
        assert!(s.jump(crate::signaling::transaction::TimerConfig::default().trying));
        let now = s.now;
        s.core.ring(now, call).unwrap();
        s.core
            .answer(
                now,
                call,
                std::net::SocketAddr::from(([127, 0, 0, 1], 7000)),
            )
            .unwrap();
        s.collect();
        let sent: Vec<String> = s
            .sent
            .iter()
            .map(|b| String::from_utf8_lossy(b).into())
            .collect();
        let find = |code: &str| sent.iter().find(|m| m.starts_with(code)).cloned().unwrap();
        for msg in [find("SIP/2.0 180"), find("SIP/2.0 200")] {
            let parsed = crate::signaling::message::Message::parse(msg.as_bytes()).unwrap();
            let routes: Vec<&str> = parsed
                .headers()
                .list(&crate::signaling::message::HeaderName::RecordRoute)
                .collect();
            assert_eq!(
                routes,
                vec![
                    "<sip:10.0.0.1;transport=tcp;lr>",
                    "<sip:10.0.0.2;lr>",
                    "<sip:10.0.0.3;lr>"
                ],
                "{msg}"
            );
        }
        assert!(!find("SIP/2.0 100").contains("Record-Route"));
    }

    #[test]
    fn merged_request_gets_482_and_busy_gets_486() {
        let mut s = Solo::new(Config::default(), origin());
        let offer = sdp_offer(6000);
        s.feed(&peer(1).invite(Some(&offer), "", None));
        let mut merged = peer(1);
        merged.branch = "z9hG4bKother".into();
        s.feed(&merged.invite(Some(&offer), "", None));
        s.feed(&peer(2).invite(Some(&offer), "", None));
        // The first call waits for the app: its 100 Trying comes with the Trying time.
        assert_eq!(statuses(&s), vec![482, 486]);
        let trying = crate::signaling::transaction::TimerConfig::default().trying;
        assert!(s.jump(trying));
        assert_eq!(statuses(&s), vec![482, 486, 100]);
        assert_eq!(
            s.ended(),
            vec![(482, CallOutcome::Failed), (486, CallOutcome::Busy)]
        );
        assert_eq!(
            s.events
                .iter()
                .filter(|e| matches!(e, Event::Incoming { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn cancel_cases_and_retransmission() {
        let mut s = Solo::new(Config::default(), origin());
        let offer = sdp_offer(6000);
        let p = peer(1);
        s.feed(&p.invite(Some(&offer), "", None));
        s.feed(&p.invite(Some(&offer), "", None)); // retransmission: 100 again, no new call
        assert_eq!(
            s.events
                .iter()
                .filter(|e| matches!(e, Event::Incoming { .. }))
                .count(),
            1
        );
        let h = incoming(&s).unwrap();
        s.core.ring(s.now, h).unwrap();
        s.collect();
        s.feed(&p.cancel());
        let r = s.responses();
        let tail: Vec<_> = r[r.len() - 2..]
            .iter()
            .map(|r| (r.status, r.cseq.clone()))
            .collect();
        assert_eq!(
            tail,
            vec![(200, "1 CANCEL".into()), (487, "1 INVITE".into())]
        );
        assert_eq!(s.ended(), vec![(487, CallOutcome::Missed)]);
        let tag = r.last().unwrap().to_tag.clone();
        s.feed(&p.ack(tag.as_deref(), None));
        s.feed(&p.cancel()); // after the final: 200 only
        assert_eq!(statuses(&s).last(), Some(&200));
        s.feed(&peer(9).cancel()); // unknown
        assert_eq!(statuses(&s).last(), Some(&481));
        assert_eq!(s.ended().len(), 1);
        assert_eq!(s.core.ledger_open(), 0);
    }

    #[test]
    fn the_2xx_is_retransmitted_as_first_sent_until_the_ack() {
        let p = peer(9);
        let (mut s, _) = answered(&p, Some(&sdp_offer(6000)));
        let first = s.sent.last().cloned().unwrap();
        assert!(first.starts_with(b"SIP/2.0 200"));
        let sent = s.sent.len();
        // T1 later (the first deadline), then 2·T1 later: the same bytes each time.
        assert!(s.jump(Duration::from_secs(1)));
        assert!(s.jump(Duration::from_secs(2)));
        assert_eq!(s.sent.len(), sent + 2);
        assert!(s.sent[sent..].iter().all(|b| *b == first));
        let ok = s.responses().last().cloned().unwrap();
        s.feed(&p.ack(ok.to_tag.as_deref(), Some("z9hG4bKack9")));
        let acked = s.sent.len();
        while s.jump(Duration::from_secs(1)) {}
        assert_eq!(s.sent.len(), acked, "nothing after the ACK");
    }

    #[test]
    fn answered_call_ack_bye_and_ack_timeout() {
        let offer = sdp_offer(6000);
        let p = peer(1);
        let (mut s, h) = answered(&p, Some(&offer));
        let ok = s.responses().last().cloned().unwrap();
        assert_eq!(ok.status, 200);
        let body = String::from_utf8_lossy(s.sent.last().unwrap()).to_string();
        assert!(body.contains("m=audio 7000 RTP/AVP 0"), "{body}");
        s.feed(&p.ack(ok.to_tag.as_deref(), Some("z9hG4bKack1")));
        assert!(s.events.iter().any(|e| matches!(
            e,
            Event::State {
                state: CallState::Connected,
                ..
            }
        )));
        s.feed(&p.bye(ok.to_tag.as_deref(), 2, "z9hG4bKbye1"));
        assert_eq!(statuses(&s).last(), Some(&200));
        assert_eq!(s.ended(), vec![(200, CallOutcome::Answered)]);
        // The ended call lingers with its dialog, without the INVITE and the descriptions.
        let c = s.core.calls.get(&h).unwrap();
        assert!(c.linger_until.is_some() && c.dialog.is_some());
        assert!(c.invite.is_none() && c.offer.is_none() && c.local_sdp.is_none());
        // Late requests in the ended dialog get 481 (over TCP the BYE's transaction is gone).
        s.feed(&p.bye(ok.to_tag.as_deref(), 2, "z9hG4bKbye1"));
        assert_eq!(statuses(&s).last(), Some(&481));
        let mut re = p.clone();
        re.cseq = 3;
        re.branch = "z9hG4bKre1".into();
        s.feed(&re.invite(Some(&offer), "", ok.to_tag.as_deref()));
        assert_eq!(statuses(&s).last(), Some(&481));
        assert_eq!(s.ended().len(), 1, "nothing ends twice");

        // No ACK: BYE after 64·T1 and Failed.
        let p2 = peer(2);
        s.feed(&p2.invite(Some(&offer), "", None));
        let h2 = incoming(&s).unwrap();
        s.core
            .answer(s.now, h2, "127.0.0.1:7002".parse().unwrap())
            .unwrap();
        s.collect();
        while s.jump(Duration::from_secs(40)) {}
        assert_eq!(s.ended()[1], (408, CallOutcome::Failed));
        // Re-sent after T1, 2·T1, 4·T1, then every T2 until 64·T1 (RFC 3261 §13.3.1.4): at
        // 0.5, 1.5, 3.5, 7.5, 11.5 ... 31.5 s.
        let oks = s
            .responses()
            .iter()
            .filter(|r| r.status == 200 && r.call_id == "call-2")
            .count();
        assert_eq!(oks, 1 + 10, "200 sent once and re-sent 10 times");
        assert!(String::from_utf8_lossy(s.sent.last().unwrap()).starts_with("BYE "));
        assert_eq!(s.core.ledger_open(), 0);
    }

    #[test]
    fn hangup_before_ack_waits_for_the_ack() {
        let p = peer(1);
        let (mut s, h) = answered(&p, Some(&sdp_offer(6000)));
        s.core.hangup(s.now, h).unwrap();
        s.collect();
        assert!(!String::from_utf8_lossy(s.sent.last().unwrap()).starts_with("BYE "));
        let tag = s.responses().last().unwrap().to_tag.clone();
        s.feed(&p.ack(tag.as_deref(), Some("z9hG4bKack1")));
        assert!(String::from_utf8_lossy(s.sent.last().unwrap()).starts_with("BYE "));
        while s.jump(std::time::Duration::from_secs(40)) {}
        assert_eq!(s.ended(), vec![(200, CallOutcome::Answered)]);
    }

    #[test]
    fn late_offer_gets_our_offer_in_200_and_the_answer_in_ack() {
        let p = peer(1);
        let (mut s, h) = answered(&p, None);
        let ok = String::from_utf8_lossy(s.sent.last().unwrap()).to_string();
        assert!(ok.contains("m=audio 7000 RTP/AVP 111 0 8"), "{ok}");
        assert!(!s.events.iter().any(|e| matches!(e, Event::Media { .. })));
        let tag = s.responses().last().unwrap().to_tag.clone();
        let answer = sdp_offer(6000).replace("RTP/AVP 0 101", "RTP/AVP 0");
        let ack = p.ack(tag.as_deref(), Some("z9hG4bKack1")).replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            ),
        );
        s.feed(&ack);
        assert!(s.events.iter().any(|e| matches!(e, Event::Media { .. })));
        assert!(s.events.iter().any(|e| matches!(
            e,
            Event::State {
                state: CallState::Connected,
                ..
            }
        )));
        // An ACK without an answer: BYE, failed.
        s.feed(&p.bye(tag.as_deref(), 2, "z9hG4bKbye1")); // end the first call
        let p2 = peer(2);
        s.feed(&p2.invite(None, "", None));
        let h2 = incoming(&s).unwrap();
        assert_ne!(h, h2);
        s.core
            .answer(s.now, h2, "127.0.0.1:7002".parse().unwrap())
            .unwrap();
        s.collect();
        let tag2 = s.responses().last().unwrap().to_tag.clone();
        s.feed(&p2.ack(tag2.as_deref(), Some("z9hG4bKack2")));
        assert!(String::from_utf8_lossy(s.sent.last().unwrap()).starts_with("BYE "));
        assert_eq!(s.ended().last(), Some(&(488, CallOutcome::Failed)));
    }

    #[test]
    fn incomplete_requests_get_400() {
        let mut s = Solo::new(Config::default(), origin());
        let no_branch = peer(1)
            .invite(Some(&sdp_offer(6000)), "", None)
            .replace(";branch=z9hG4bKbr1", "");
        s.feed(&no_branch);
        let bad_cseq = peer(2)
            .invite(Some(&sdp_offer(6000)), "", None)
            .replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
        s.feed(&bad_cseq);
        assert_eq!(statuses(&s), vec![400, 400]);
        assert_eq!(s.ended().len(), 2, "both INVITEs end");
        assert_eq!(s.core.ledger_open(), 0);
    }

    #[test]
    fn flow_drop_while_ringing_ends_failed_once() {
        let mut s = Solo::new(Config::default(), origin());
        s.feed(&peer(1).invite(Some(&sdp_offer(6000)), "", None));
        let h = incoming(&s).unwrap();
        s.core.ring(s.now, h).unwrap();
        s.drop_flow();
        assert_eq!(s.ended(), vec![(0, CallOutcome::Failed)]);
        assert_eq!(s.core.ledger_open(), 0);
        assert_eq!(s.core.ledger_stats().abandoned, 1);
        assert!(s
            .core
            .answer(s.now, h, "127.0.0.1:7000".parse().unwrap())
            .is_err());
    }

    #[test]
    fn unparsable_invite_gets_400_and_an_ended() {
        let mut s = Solo::new(Config::default(), origin());
        let bad = peer(1)
            .invite(None, "", None)
            .replace("INVITE sip:bob@127.0.0.1:5060", "INVITE sip:bob@[::1");
        s.feed(&bad);
        assert!(String::from_utf8_lossy(&s.sent[0]).starts_with("SIP/2.0 400 "));
        assert_eq!(s.ended(), vec![(400, CallOutcome::Failed)]);
        assert_eq!(s.core.ledger_open(), 0);
        // The flow still works.
        s.feed(&peer(2).invite(Some(&sdp_offer(6000)), "", None));
        assert!(incoming(&s).is_some());
    }

    #[test]
    fn reinvite_glare_gets_491() {
        let p = peer(1);
        let (mut s, h) = answered(&p, Some(&sdp_offer(6000)));
        let tag = s.responses().last().unwrap().to_tag.clone();
        s.feed(&p.ack(tag.as_deref(), Some("z9hG4bKack1")));
        s.core.hold(s.now, h, true).unwrap();
        s.collect();
        assert!(String::from_utf8_lossy(s.sent.last().unwrap()).starts_with("INVITE "));
        let mut re = p.clone();
        re.branch = "z9hG4bKre".into();
        re.cseq = 2;
        s.feed(&re.invite(Some(&sdp_offer(6000)), "", tag.as_deref()));
        assert_eq!(statuses(&s).last(), Some(&491));
        assert_eq!(s.core.ledger_open(), 1, "only the call itself");
        // Our re-INVITE gets a 100 and never a final: after 64·T1 a new one may be sent.
        let ours = s.last_request("INVITE").unwrap();
        let trying = crate::signaling::message::Response::for_request(&ours, 100);
        s.feed(&String::from_utf8(trying.to_bytes()).unwrap());
        assert!(s.core.hold(s.now, h, false).is_err());
        while s.jump(Duration::from_secs(40)) {}
        s.core.hold(s.now, h, false).unwrap();
    }
}
