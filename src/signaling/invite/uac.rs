//! The UAC half of the invite state machine (RFC 3261 §13.2, §9.1, §14.1).
//!
//! ```text
//! call ─► WaitFlow ─(flow up)─► Calling ─1xx─► Proceeding ─2xx─► ACK, Connected ─ hangup ─► BYE ─► Ended
//!                                  │             │
//!                                  │             └─ 3xx-6xx ─► Ended (Busy / Rejected / Missed after CANCEL)
//!                                  └─ hangup: CANCEL as soon as the first 1xx arrives (§9.1)
//! ```
//! A 2xx that races our CANCEL is ACKed and followed by a BYE; a 2xx from another fork is ACKed
//! and BYEd on its own dialog; 401/407 is answered once with digest credentials.

use super::{Call, OurReInvite, Phase, Role};
use crate::signaling::core::{
    CallHandle, CallOutcome, CallState, CoreError, Event, FlowKind, Output, SignalingCore, TxOwner,
};
use crate::signaling::dialog::Dialog;
use crate::signaling::message::{
    new_call_id, CSeq, HeaderName, Host, Method, NameAddr, Request, Response, Scheme, Uri,
};
use crate::signaling::sdp::{self, Direction, SessionDescription};
use crate::signaling::transaction::TxKey;
use std::net::SocketAddr;
use std::time::Instant;

impl SignalingCore {
    /// `call`: picks (or connects) the flow and sends the INVITE once it is up.
    pub(crate) fn uac_call(
        &mut self,
        now: Instant,
        target: Uri,
        media: SocketAddr,
    ) -> Result<CallHandle, CoreError> {
        if target.scheme == Scheme::Tel && self.config.account.is_none() {
            return Err(CoreError::BadTarget("tel: needs an account".into()));
        }
        if target.transport().is_some_and(|t| t != "tcp" && t != "tls") {
            return Err(CoreError::BadTarget(format!("transport of {target}")));
        }
        let flow = if self.config.account.is_some() {
            self.control_flow_for_call(now)?
        } else {
            let host = match &target.host {
                Host::Domain(d) if d.is_empty() => {
                    return Err(CoreError::BadTarget(target.to_string()))
                }
                Host::Domain(d) => d.clone(),
                Host::V4(a) => a.to_string(),
                Host::V6(a) => a.to_string(),
            };
            let port = target.port.unwrap_or(5060);
            self.direct_flow(&host, port)
        };
        let h = self.new_call_handle();
        let mut call = Call::new(h, Role::Uac, new_call_id(), flow, Phase::WaitFlow);
        call.target = Some(target);
        call.local_media = Some(media);
        self.uac_calls.insert(call.call_id.clone(), h);
        self.calls.insert(h, call);
        if self.flows.get(&flow).is_some_and(|f| f.up) {
            self.uac_send_invite(now, h);
        }
        Ok(h)
    }

    /// An existing flow to `host:port`, or a new one (an `Output::Connect`).
    fn direct_flow(&mut self, host: &str, port: u16) -> crate::signaling::core::FlowId {
        let addr: Option<SocketAddr> = host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        let existing = self.flows.iter().find(|(_, f)| {
            f.kind == FlowKind::Outgoing(host.to_string(), port)
                || (addr.is_some() && f.remote == addr && f.up)
        });
        if let Some((id, _)) = existing {
            return *id;
        }
        let id = self.new_flow(FlowKind::Outgoing(host.to_string(), port));
        self.outputs.push_back(Output::Connect {
            flow: id,
            host: host.to_string(),
            port,
        });
        id
    }

    /// Our From for new calls.
    fn local_from(&self, flow: crate::signaling::core::FlowId) -> NameAddr {
        let uri = match &self.config.account {
            Some(a) => Uri {
                user: Some(a.user.clone()),
                ..Uri::sip(Host::parse(&a.domain), None)
            },
            None => {
                let host = self
                    .flows
                    .get(&flow)
                    .and_then(|f| f.local)
                    .map(|a| Host::from(a.ip()))
                    .unwrap_or_else(|| Host::Domain("invalid.invalid".into()));
                Uri {
                    user: Some(self.config.local_user.clone()),
                    ..Uri::sip(host, None)
                }
            }
        };
        NameAddr {
            display: self.config.display_name.clone(),
            ..NameAddr::new(uri)
        }
    }

    /// Builds and sends the INVITE (the first one, or the one with credentials).
    pub(crate) fn uac_send_invite(&mut self, now: Instant, h: CallHandle) {
        let codecs = self.config.codecs.clone();
        let Some(c) = self.calls.get(&h) else {
            return;
        };
        let flow = c.flow;
        let via = self.via(flow);
        let contact = self.contact(flow);
        let mut from = self.local_from(flow);
        let proxy = self.config.account.as_ref().and_then(|a| a.proxy.clone());
        let ua = self.config.user_agent.clone();
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(target) = c.target.clone() else {
            return;
        };
        let (Some(media), true) = (c.local_media, c.phase != Phase::Ended) else {
            return;
        };
        let offer = match &c.offer {
            Some(o) => o.clone(),
            None => {
                let o = sdp::create_offer(&mut c.sdp, media, &codecs, Direction::SendRecv);
                c.offer = Some(o.clone());
                c.local_sdp = Some(o.clone());
                o
            }
        };
        let seq = c
            .invite
            .as_ref()
            .and_then(|i| i.headers.cseq())
            .map_or(1, |s| s.seq + 1);
        from.params.set("tag", Some(&c.local_tag));
        let mut req = Request::new(Method::Invite, target.clone());
        req.headers.push(HeaderName::Via, via);
        req.headers.push(HeaderName::MaxForwards, "70");
        if let Some(p) = proxy {
            let mut p = p;
            p.params.set("lr", None);
            req.headers
                .push(HeaderName::Route, NameAddr::new(p).to_string());
        }
        req.headers.push(HeaderName::From, from.to_string());
        req.headers
            .push(HeaderName::To, NameAddr::new(target).to_string());
        req.headers.push(HeaderName::CallId, c.call_id.clone());
        req.headers.push(
            HeaderName::CSeq,
            CSeq {
                seq,
                method: Method::Invite,
            }
            .to_string(),
        );
        req.headers.push(HeaderName::Contact, contact);
        req.headers.push(HeaderName::Allow, super::ALLOW);
        req.headers
            .push(HeaderName::Supported, super::SUPPORTED.join(", "));
        req.headers.push(HeaderName::UserAgent, ua);
        req.headers.push(HeaderName::ContentType, "application/sdp");
        req.body = offer.to_string().into_bytes();
        for (name, value) in self.control.invite_authorization(&req, c.invite.is_some()) {
            req.headers.push(name, value);
        }
        let first = c.invite.is_none();
        c.invite = Some(req.clone());
        c.phase = Phase::Calling;
        let key = self.send_request(now, flow, req, TxOwner::Invite(h));
        if let Some(c) = self.calls.get_mut(&h) {
            c.invite_key = key;
        }
        if first {
            self.report(h, CallState::Calling);
        }
    }

    /// A response to our INVITE (or its failure: Err(408) Timer B, Err(503) transport).
    pub(crate) fn uac_response(
        &mut self,
        now: Instant,
        h: CallHandle,
        key: &TxKey,
        resp: Result<Response, u16>,
    ) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if c.invite_key.as_ref() != Some(key) {
            return; // an old transaction (before the authenticated re-send)
        }
        let resp = match resp {
            Ok(r) => r,
            Err(code) => {
                if c.phase != Phase::Ended && c.dialog.is_none() {
                    let why = if code == 408 { "timeout" } else { "transport" };
                    self.end_call(now, h, code, why, CallOutcome::Failed);
                }
                return;
            }
        };
        match resp.status {
            100..=199 => {
                if c.phase == Phase::Ended {
                    return;
                }
                if c.phase == Phase::Calling {
                    c.phase = Phase::Proceeding;
                }
                let cancel = c.cancel_pending;
                if cancel {
                    self.send_cancel(now, h);
                } else if matches!(resp.status, 180 | 183) {
                    self.report(h, CallState::Ringing);
                } else {
                    self.report(h, CallState::Proceeding);
                }
            }
            200..=299 => self.uac_2xx(now, h, resp),
            401 | 407 if !c.auth_tried && !c.cancelled && c.phase != Phase::Ended => {
                c.auth_tried = true;
                if self.control.handle_invite_challenge(&resp) {
                    self.uac_send_invite(now, h);
                } else {
                    self.uac_final(now, h, &resp);
                }
            }
            _ => self.uac_final(now, h, &resp),
        }
    }

    fn uac_final(&mut self, now: Instant, h: CallHandle, resp: &Response) {
        let Some(c) = self.calls.get(&h) else {
            return;
        };
        if c.phase == Phase::Ended {
            return;
        }
        let outcome = match resp.status {
            486 | 600 => CallOutcome::Busy,
            487 if c.cancelled || c.cancel_pending => CallOutcome::Missed,
            _ => CallOutcome::Rejected,
        };
        self.end_call(now, h, resp.status, &resp.reason, outcome);
    }

    /// A 2xx for a UAC call that matched no transaction: a retransmission or another fork.
    pub(crate) fn uac_late_2xx(&mut self, now: Instant, h: CallHandle, resp: Response) {
        self.uac_2xx(now, h, resp);
    }

    fn uac_2xx(&mut self, now: Instant, h: CallHandle, resp: Response) {
        let Some(c) = self.calls.get(&h) else {
            return;
        };
        let flow = c.flow;
        let Some(invite) = c.invite.clone() else {
            return;
        };
        let Some(mut dialog) = Dialog::uac(&invite, &resp) else {
            tracing::warn!(?h, "2xx without To tag, ignored");
            return;
        };
        let seq = invite.headers.cseq().map_or(1, |s| s.seq);
        if let Some(existing) = &c.dialog {
            if existing.id == dialog.id {
                if let Some(ack) = c.ack.clone() {
                    self.transmit(flow, ack); // retransmitted 2xx
                }
            } else {
                // Another fork answered too: ACK it and BYE it (RFC 3261 §13.2.2.4).
                self.ack_and_bye(now, flow, dialog, seq);
            }
            return;
        }
        if c.phase == Phase::Ended {
            // Too late (Timer B, transport...): ACK and BYE.
            self.ack_and_bye(now, flow, dialog, seq);
            return;
        }
        let via = self.via(flow);
        let ack = dialog.ack(seq, &via).to_bytes();
        self.transmit(flow, ack.clone());
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        self.dialogs.insert(dialog.id.clone(), h);
        c.dialog = Some(dialog);
        c.ack = Some(ack);
        c.deadline = None;
        let hang_up = c.cancel_pending || c.cancelled;
        let call_id = c.call_id.clone();
        let negotiated = match (&c.offer, SessionDescription::parse_bytes(&resp.body)) {
            (Some(offer), Ok(answer)) => {
                sdp::accept_answer(offer, &answer).map_err(|e| e.to_string())
            }
            (None, _) => Err("no offer".to_string()),
            (_, Err(e)) => Err(e.to_string()),
        };
        match negotiated {
            Ok(m) => {
                c.phase = Phase::Connected;
                self.event(Event::Media {
                    call: h,
                    call_id,
                    media: m,
                });
                if hang_up {
                    // 2xx raced our CANCEL.
                    self.send_bye(now, h);
                } else {
                    self.report(h, CallState::Connected);
                }
            }
            Err(why) => {
                tracing::warn!(?h, %why, "unusable SDP answer: BYE");
                c.phase = Phase::Connected;
                self.send_bye(now, h);
                self.end_call(now, h, 488, "bad SDP answer", CallOutcome::Failed);
            }
        }
    }

    fn ack_and_bye(
        &mut self,
        now: Instant,
        flow: crate::signaling::core::FlowId,
        mut dialog: Dialog,
        seq: u32,
    ) {
        let via = self.via(flow);
        let ack = dialog.ack(seq, &via);
        self.transmit(flow, ack.to_bytes());
        let via = self.via(flow);
        let bye = dialog.request(Method::Bye, &via, None);
        self.send_request(now, flow, bye, TxOwner::Nobody);
    }

    /// `hangup` as UAC.
    pub(crate) fn uac_hangup(&mut self, now: Instant, h: CallHandle) -> Result<(), CoreError> {
        let t1 = self.config.timers.t1;
        let Some(c) = self.calls.get_mut(&h) else {
            return Err(CoreError::NoSuchCall);
        };
        match c.phase {
            Phase::WaitFlow => {
                self.end_call(now, h, 487, "cancelled", CallOutcome::Missed);
                Ok(())
            }
            Phase::Calling => {
                if c.cancel_pending {
                    return Err(CoreError::InvalidState("already cancelling"));
                }
                c.cancel_pending = true;
                c.deadline = Some(now + 64 * t1);
                self.report(h, CallState::Terminating);
                Ok(())
            }
            Phase::Proceeding => {
                if c.cancelled {
                    return Err(CoreError::InvalidState("already cancelling"));
                }
                self.send_cancel(now, h);
                Ok(())
            }
            Phase::Connected | Phase::WaitAck => {
                self.send_bye(now, h);
                Ok(())
            }
            Phase::Terminating => Err(CoreError::InvalidState("already terminating")),
            Phase::Incoming | Phase::Ended => Err(CoreError::NoSuchCall),
        }
    }

    /// CANCEL for our INVITE (RFC 3261 §9.1).
    fn send_cancel(&mut self, now: Instant, h: CallHandle) {
        let t1 = self.config.timers.t1;
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(invite) = c.invite.clone() else {
            return;
        };
        c.cancel_pending = false;
        c.cancelled = true;
        c.deadline = Some(now + 64 * t1);
        let flow = c.flow;
        let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
        if let Some(via) = invite.headers.list(&HeaderName::Via).next() {
            cancel.headers.push(HeaderName::Via, via);
        }
        cancel.headers.push(HeaderName::MaxForwards, "70");
        for r in invite.headers.get_all(&HeaderName::Route) {
            cancel.headers.push(HeaderName::Route, r);
        }
        for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
            if let Some(v) = invite.headers.get(&name) {
                cancel.headers.push(name.clone(), v);
            }
        }
        let seq = invite.headers.cseq().map_or(1, |s| s.seq);
        cancel.headers.push(
            HeaderName::CSeq,
            CSeq {
                seq,
                method: Method::Cancel,
            }
            .to_string(),
        );
        self.send_request(now, flow, cancel, TxOwner::Nobody);
        self.report(h, CallState::Terminating);
    }

    /// No final response after our CANCEL (or before it could be sent) within 64·T1.
    pub(crate) fn uac_guard_timeout(&mut self, now: Instant, h: CallHandle) {
        let Some(c) = self.calls.get(&h) else {
            return;
        };
        if matches!(c.phase, Phase::Calling | Phase::Proceeding) {
            self.end_call(now, h, 487, "no answer to CANCEL", CallOutcome::Missed);
        }
    }

    /// `hold`: a re-INVITE with a sendonly (hold) or sendrecv (resume) offer.
    pub(crate) fn send_reinvite(
        &mut self,
        now: Instant,
        h: CallHandle,
        hold: bool,
    ) -> Result<(), CoreError> {
        let codecs = self.config.codecs.clone();
        let c = self
            .calls
            .get(&h)
            .filter(|c| c.phase != Phase::Ended)
            .ok_or(CoreError::NoSuchCall)?;
        if c.phase != Phase::Connected {
            return Err(CoreError::InvalidState("call not connected"));
        }
        if c.our_reinvite.is_some() || c.their_reinvite.is_some() {
            return Err(CoreError::InvalidState("a re-INVITE is pending"));
        }
        let flow = c.flow;
        let via = self.via(flow);
        let contact = self.contact(flow);
        let ua = self.config.user_agent.clone();
        let c = self.calls.get_mut(&h).ok_or(CoreError::NoSuchCall)?;
        let media = c
            .local_media
            .ok_or(CoreError::InvalidState("no local media"))?;
        let dir = if hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        let offer = sdp::create_offer(&mut c.sdp, media, &codecs, dir);
        let d = c
            .dialog
            .as_mut()
            .ok_or(CoreError::InvalidState("no dialog"))?;
        let mut req = d.request(Method::Invite, &via, None);
        req.headers.push(HeaderName::Contact, contact);
        req.headers.push(HeaderName::Allow, super::ALLOW);
        req.headers
            .push(HeaderName::Supported, super::SUPPORTED.join(", "));
        req.headers.push(HeaderName::UserAgent, ua);
        req.headers.push(HeaderName::ContentType, "application/sdp");
        req.body = offer.to_string().into_bytes();
        let key = self
            .send_request(now, flow, req, TxOwner::ReInvite(h))
            .ok_or(CoreError::InvalidState("could not build the re-INVITE"))?;
        if let Some(c) = self.calls.get_mut(&h) {
            c.our_reinvite = Some(OurReInvite { key, offer, hold });
        }
        Ok(())
    }

    /// The answer to our re-INVITE.
    pub(crate) fn reinvite_response(
        &mut self,
        _now: Instant,
        h: CallHandle,
        key: &TxKey,
        resp: Result<Response, u16>,
    ) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(ours) = c.our_reinvite.clone().filter(|o| &o.key == key) else {
            return;
        };
        let resp = match resp {
            Ok(r) if r.status < 200 => return,
            Ok(r) => r,
            Err(_) => {
                c.our_reinvite = None;
                return;
            }
        };
        c.our_reinvite = None;
        if !resp.is_success() || c.phase == Phase::Ended {
            return;
        }
        let flow = c.flow;
        let seq = resp.headers.cseq().map_or(0, |s| s.seq);
        let call_id = c.call_id.clone();
        let via = self.via(flow);
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(d) = c.dialog.as_mut() else {
            return;
        };
        d.refresh_target(&resp.headers);
        let ack = d.ack(seq, &via);
        self.transmit(flow, ack.to_bytes());
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if let Ok(answer) = SessionDescription::parse_bytes(&resp.body) {
            if let Ok(m) = sdp::accept_answer(&ours.offer, &answer) {
                c.held = ours.hold;
                c.local_sdp = Some(ours.offer.clone());
                self.event(Event::Media {
                    call: h,
                    call_id,
                    media: m,
                });
                self.report(
                    h,
                    if ours.hold {
                        CallState::Held
                    } else {
                        CallState::Resumed
                    },
                );
            }
        }
    }
}
