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
use crate::signaling::transport::{Transport, MAX_UDP_REQUEST};
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
        let transport = Transport::for_uri(&target, self.config.default_transport)
            .map_err(|e| CoreError::BadTarget(format!("{target}: {e}")))?;
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
            self.direct_flow(&host, port, transport)
        };
        let h = self.new_call_handle();
        let mut call = Call::new(h, Role::Uac, new_call_id(), flow, Phase::WaitFlow);
        call.sdp.srtp = self.srtp_policy_on(flow);
        call.target = Some(target);
        call.local_media = Some(media);
        self.uac_calls.insert(call.call_id.clone(), h);
        self.calls.insert(h, Box::new(call));
        if self.flows.get(&flow).is_some_and(|f| f.up) {
            self.uac_send_invite(now, h);
        }
        Ok(h)
    }

    /// An existing flow to `host:port` over `transport`, or a new one (an `Output::Connect`).
    pub(crate) fn direct_flow(
        &mut self,
        host: &str,
        port: u16,
        transport: Transport,
    ) -> crate::signaling::core::FlowId {
        let addr: Option<SocketAddr> = host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        let existing = self.flows.iter().find(|(_, f)| {
            f.transport == transport
                && (f.kind == FlowKind::Outgoing(host.to_string(), port)
                    || (addr.is_some() && f.remote == addr && f.up))
        });
        if let Some((id, _)) = existing {
            return *id;
        }
        let id = self.new_flow(FlowKind::Outgoing(host.to_string(), port), transport);
        self.outputs.push_back(Output::Connect {
            flow: id,
            transport,
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
        let udp_remote = self.udp_remote(flow);
        let via = self.via(flow);
        let sips = c.target.as_ref().is_some_and(|t| t.scheme == Scheme::Sips);
        let contact = self.contact_for(flow, sips);
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
        if let (Some(remote), true) = (udp_remote, req.to_bytes().len() > MAX_UDP_REQUEST) {
            self.divert_to_tcp(now, h, remote);
            return;
        }
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let first = c.invite.is_none();
        c.invite = Some(std::sync::Arc::new(req.clone()));
        c.phase = Phase::Calling;
        let key = self.send_request(now, flow, req, TxOwner::Invite(h));
        if let Some(c) = self.calls.get_mut(&h) {
            c.invite_key = key;
        }
        if first {
            self.report(h, CallState::Calling);
        }
    }

    /// RFC 3261 §18.1.1: an INVITE too large for UDP goes over TCP to the same peer; the call
    /// moves to that flow and the INVITE is rebuilt for it once it is up.
    fn divert_to_tcp(&mut self, now: Instant, h: CallHandle, remote: SocketAddr) {
        tracing::debug!(?h, %remote, "INVITE over {MAX_UDP_REQUEST} bytes: TCP instead of UDP");
        let tcp = self.direct_flow(&remote.ip().to_string(), remote.port(), Transport::Tcp);
        if let Some(c) = self.calls.get_mut(&h) {
            c.flow = tcp;
            c.phase = Phase::WaitFlow;
        }
        if self.flows.get(&tcp).is_some_and(|f| f.up) {
            self.uac_send_invite(now, h);
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
            401 | 407 => CallOutcome::AuthFailed,
            487 if c.cancelled || c.cancel_pending => CallOutcome::Cancelled,
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
                self.end_call(now, h, 487, "cancelled", CallOutcome::Cancelled);
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
            self.end_call(now, h, 487, "no answer to CANCEL", CallOutcome::Cancelled);
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
        let t1 = self.config.timers.t1;
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
            c.our_reinvite = Some(OurReInvite {
                key,
                offer,
                hold,
                give_up_at: now + 64 * t1,
            });
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

#[cfg(test)]
mod tests {
    /// The origin of the virtual clock (tests only; every later time is origin + offset).
    fn origin() -> std::time::Instant {
        std::time::Instant::now()
    }

    use crate::signaling::config::{Account, Config};
    use crate::signaling::core::testkit::{sdp_offer, Solo};
    use crate::signaling::core::{CallOutcome, CallState, Event};
    use crate::signaling::message::{HeaderName, Message, Request, Response, Uri};
    use std::time::Duration;

    fn target() -> Uri {
        Uri::parse("sip:bob@127.0.0.1:5070").unwrap()
    }

    /// A response from the fake callee to `req`, with To tag `tag` and (for 2xx INVITE) SDP.
    fn reply(req: &Request, status: u16, tag: &str) -> String {
        let mut r = Response::for_request(req, status);
        if let Some(mut to) = req.headers.to().cloned() {
            to.params.set("tag", Some(tag));
            r.headers.set(HeaderName::To, to.to_string());
        }
        if status < 300 && req.method.as_str() == "INVITE" {
            r.headers.push(
                HeaderName::Contact,
                format!("<sip:bob@127.0.0.1:5070;transport=tcp;x={tag}>"),
            );
        }
        if (200..300).contains(&status) && req.method.as_str() == "INVITE" {
            r.headers.push(HeaderName::ContentType, "application/sdp");
            r.body = sdp_offer(8000).into_bytes();
        }
        String::from_utf8(Message::Response(r).to_bytes()).unwrap()
    }

    fn first_lines(s: &Solo) -> Vec<String> {
        s.sent
            .iter()
            .map(|b| {
                String::from_utf8_lossy(b)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn direct_call_connects_to_target_and_offers_sdp() {
        let mut s = Solo::client(Config::default(), origin());
        s.core
            .call(s.now, target(), "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        s.collect();
        assert_eq!(s.connects, vec![("127.0.0.1".to_string(), 5070)]);
        let inv = s.last_request("INVITE").unwrap();
        assert_eq!(
            inv.headers.content_type().as_deref(),
            Some("application/sdp")
        );
        assert!(String::from_utf8_lossy(&inv.body).contains("m=audio 4000"));
        assert!(inv.headers.get(&HeaderName::Contact).is_some());
        assert!(inv.headers.from().unwrap().tag().is_some());
        // A second call reuses the flow.
        s.core
            .call(s.now, target(), "127.0.0.1:4002".parse().unwrap())
            .unwrap();
        s.collect();
        assert_eq!(s.connects.len(), 1);
    }

    #[test]
    fn unsupported_targets_are_refused() {
        let mut s = Solo::client(Config::default(), origin());
        let media = "127.0.0.1:4000".parse().unwrap();
        for t in [
            "sips:bob@127.0.0.1;transport=udp",
            "sip:bob@127.0.0.1;transport=sctp",
            "tel:+15551234",
        ] {
            let r = s.core.call(s.now, Uri::parse(t).unwrap(), media);
            assert!(
                matches!(r, Err(crate::signaling::core::CoreError::BadTarget(_))),
                "{t}"
            );
        }
        assert!(s.core.poll_output().is_none());
        // TLS targets connect over TLS.
        for t in ["sips:bob@127.0.0.1", "sip:bob@127.0.0.1;transport=tls"] {
            s.core.call(s.now, Uri::parse(t).unwrap(), media).unwrap();
        }
        let tls = std::iter::from_fn(|| s.core.poll_output())
            .filter(|o| {
                use crate::signaling::core::{Output, Transport};
                matches!(
                    o,
                    Output::Connect {
                        transport: Transport::Tls,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(tls, 1, "one TLS flow to 127.0.0.1:5060 for both calls");
    }

    #[test]
    fn forked_2xx_is_acked_and_byed_and_retransmission_reacked() {
        let mut s = Solo::client(Config::default(), origin());
        let call = s
            .core
            .call(s.now, target(), "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        s.collect();
        let inv = s.last_request("INVITE").unwrap();
        s.feed(&reply(&inv, 180, "x"));
        s.feed(&reply(&inv, 200, "x"));
        assert!(s.events.iter().any(|e| matches!(
            e,
            Event::State {
                state: CallState::Connected,
                ..
            }
        )));
        assert!(s.events.iter().any(|e| matches!(e, Event::Media { .. })));
        let ack = s.last_request("ACK").unwrap();
        assert_eq!(ack.headers.cseq().unwrap().seq, 1);
        assert_eq!(ack.headers.to().unwrap().tag(), Some("x"));
        assert_eq!(
            ack.uri.params.get("x"),
            Some(Some("x")),
            "ACK goes to the Contact"
        );
        let n = s.sent.len();
        s.feed(&reply(&inv, 200, "x")); // retransmission
        assert_eq!(first_lines(&s)[n..].len(), 1);
        assert!(first_lines(&s)[n].starts_with("ACK "));
        s.feed(&reply(&inv, 200, "y")); // another fork
        let tail = first_lines(&s)[n + 1..].to_vec();
        assert_eq!(tail.len(), 2, "{tail:?}");
        assert!(tail[0].starts_with("ACK ") && tail[1].starts_with("BYE "));
        assert_eq!(
            s.last_request("BYE").unwrap().headers.to().unwrap().tag(),
            Some("y")
        );
        assert!(s.ended().is_empty(), "the call itself is still up");
        s.core.hangup(s.now, call).unwrap();
        s.collect();
        let bye = s.last_request("BYE").unwrap();
        assert_eq!(bye.headers.to().unwrap().tag(), Some("x"));
        s.feed(&reply(&bye, 200, "x"));
        assert_eq!(s.ended(), vec![(200, CallOutcome::Answered)]);
    }

    #[test]
    fn ok_racing_cancel_is_acked_then_byed() {
        let mut s = Solo::client(Config::default(), origin());
        let call = s
            .core
            .call(s.now, target(), "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        s.collect();
        let inv = s.last_request("INVITE").unwrap();
        s.feed(&reply(&inv, 180, "x"));
        s.core.hangup(s.now, call).unwrap();
        s.collect();
        let cancel = s.last_request("CANCEL").unwrap();
        assert_eq!(cancel.headers.cseq().unwrap().seq, 1);
        assert_eq!(
            cancel.headers.get(&HeaderName::Via),
            inv.headers.get(&HeaderName::Via)
        );
        s.feed(&reply(&inv, 200, "x"));
        let lines = first_lines(&s);
        let n = lines.len();
        assert!(
            lines[n - 2].starts_with("ACK ") && lines[n - 1].starts_with("BYE "),
            "{lines:?}"
        );
        s.feed(&reply(&cancel, 200, "x"));
        let bye = s.last_request("BYE").unwrap();
        s.feed(&reply(&bye, 200, "x"));
        assert_eq!(s.ended(), vec![(200, CallOutcome::Answered)]);
    }

    #[test]
    fn busy_and_rejected_and_missed_outcomes() {
        for (status, cancel, want) in [
            (486, false, CallOutcome::Busy),
            (600, false, CallOutcome::Busy),
            (404, false, CallOutcome::Rejected),
            (401, false, CallOutcome::AuthFailed),
            (407, false, CallOutcome::AuthFailed),
            (487, true, CallOutcome::Cancelled),
        ] {
            let mut s = Solo::client(Config::default(), origin());
            let call = s
                .core
                .call(s.now, target(), "127.0.0.1:4000".parse().unwrap())
                .unwrap();
            s.collect();
            let inv = s.last_request("INVITE").unwrap();
            s.feed(&reply(&inv, 100, "x"));
            if cancel {
                s.core.hangup(s.now, call).unwrap();
                s.collect();
            }
            s.feed(&reply(&inv, status, "x"));
            assert_eq!(s.ended(), vec![(status, want)]);
            assert!(
                s.last_request("ACK").is_some(),
                "non-2xx ACKed by the transaction"
            );
        }
    }

    fn account() -> Config {
        Config {
            account: Some(Account {
                registrar: Uri::parse("sip:127.0.0.1:5080;transport=tcp").unwrap(),
                user: "alice".into(),
                domain: "example.com".into(),
                password: Some("secret".into()),
                auth_user: None,
                proxy: None,
            }),
            instance_id: Some("urn:uuid:00000000-0000-0000-0000-000000000001".into()),
            ..Config::default()
        }
    }

    #[test]
    fn invite_challenge_is_answered_once() {
        let mut s = Solo::client(account(), origin());
        s.core
            .call(s.now, target(), "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        s.collect();
        assert_eq!(
            s.connects,
            vec![("127.0.0.1".to_string(), 5080)],
            "via the control flow"
        );
        let inv = s.last_request("INVITE").unwrap();
        let mut r = reply(&inv, 407, "p");
        r = r.replace(
            "Content-Length",
            "Proxy-Authenticate: Digest realm=\"example.com\", nonce=\"abc\", qop=\"auth\"\r\nContent-Length",
        );
        s.feed(&r);
        let inv2 = s.last_request("INVITE").unwrap();
        assert_eq!(inv2.headers.cseq().unwrap().seq, 2);
        assert!(inv2.headers.get(&HeaderName::ProxyAuthorization).is_some());
        assert_eq!(inv2.headers.call_id(), inv.headers.call_id());
        s.feed(&reply(&inv2, 403, "p"));
        assert_eq!(s.ended(), vec![(403, CallOutcome::Rejected)]);
    }

    #[test]
    fn registration_on_control_flow_reconnects_and_pings() {
        let mut s = Solo::client(account(), origin());
        s.core.register(s.now).unwrap();
        s.collect();
        let reg = s.last_request("REGISTER").unwrap();
        let contact = reg.headers.get(&HeaderName::Contact).unwrap().to_string();
        assert!(contact.contains("+sip.instance"), "{contact}");
        s.feed(&reply(&reg, 200, "r"));
        assert!(s
            .events
            .iter()
            .any(|e| matches!(e, Event::Registered { .. })));
        // Keep-alive ping after the interval; a pong keeps the flow.
        let flow = s.flow.unwrap();
        while s.jump(Duration::from_secs(31)) && !s.sent.iter().any(|b| b == b"\r\n\r\n") {}
        assert!(s.sent.iter().any(|b| b == b"\r\n\r\n"));
        s.feed("\r\n");
        assert_eq!(s.flow, Some(flow));
        // The flow dies: FlowDown, a reconnect within the 0-50 ms jitter, and a new REGISTER.
        s.drop_flow();
        assert!(s.events.iter().any(|e| matches!(e, Event::FlowDown { .. })));
        let lost = s.now;
        assert!(s.jump(Duration::from_millis(50)));
        assert!(s.now - lost <= Duration::from_millis(50));
        assert_eq!(s.connects.len(), 2);
        let reg2 = s.last_request("REGISTER").unwrap();
        assert!(reg2.headers.cseq().unwrap().seq > reg.headers.cseq().unwrap().seq);
        // A second loss waits retry_base before reconnecting.
        s.drop_flow();
        assert!(!s.jump(Duration::from_millis(100)));
        assert!(s.jump(Duration::from_millis(300)));
        assert_eq!(s.connects.len(), 3);
    }
}
