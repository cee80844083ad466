//! The fake registrar + proxy at the other end of the phone's control flow.
//!
//! It answers REGISTER with 200 (the Contact echoed with `expires`; a 401 challenge first when
//! [`Phone::digest`] is set), CRLF CRLF pings with a CRLF pong (unless
//! [`Phone::answer_pings`] is off), BYE, re-INVITE and other requests with 200, and ACKs every
//! final response to an INVITE it sent. It delivers an INVITE only on a flow where the phone is
//! registered; until then it holds it and sends it right after the next successful REGISTER
//! (what Kamailio's `tsilo` does). It records the bindings it granted and the phone's answers.

use super::Phone;
use crate::signaling::core::testkit::{sdp_offer, PeerInvite};
use crate::signaling::core::FlowId;
use crate::signaling::message::{HeaderName, Message, Request, Response};
use std::time::Duration;

impl Phone {
    /// Bytes from the phone reach the server.
    pub(super) fn server_receives(&mut self, flow: FlowId, bytes: &[u8]) {
        if bytes == b"\r\n\r\n" {
            self.pings += 1;
            if self.answer_pings {
                // The server answers "later": after the current output is handled.
                self.held_or_now(flow, b"\r\n".to_vec());
            }
            return;
        }
        match Message::parse(bytes) {
            Ok(Message::Request(req)) => self.server_request(flow, req),
            Ok(Message::Response(resp)) => self.server_response(flow, resp),
            Err(_) => {}
        }
    }

    fn server_request(&mut self, flow: FlowId, mut req: Request) {
        self.requests.push(req.clone());
        if let Some(nat) = self.nat {
            req.headers.stamp_received(nat);
        }
        let method = req.method.as_str().to_string();
        if method == "ACK" {
            return;
        }
        let mut r = Response::for_request(&req, 200);
        if let Some(mut to) = req.headers.to().cloned() {
            if to.tag().is_none() {
                to.params.set("tag", Some("srv"));
                r.headers.set(HeaderName::To, to.to_string());
            }
        }
        if method == "REGISTER"
            && self.digest
            && req.headers.get(&HeaderName::Authorization).is_none()
        {
            self.challenges += 1;
            let mut c = Response::for_request(&req, 401);
            c.headers.push(
                HeaderName::WwwAuthenticate,
                "Digest realm=\"wake\", nonce=\"n1\", qop=\"auth\", algorithm=MD5",
            );
            self.held_or_now(flow, Message::Response(c).to_bytes());
            return;
        }
        let expires = req.headers.expires().unwrap_or(600);
        if method == "REGISTER" {
            let contact = req.headers.get(&HeaderName::Contact).unwrap_or_default();
            if expires > 0 {
                r.headers
                    .push(HeaderName::Contact, format!("{contact};expires={expires}"));
            }
            r.headers.push(HeaderName::Expires, expires.to_string());
        }
        if method == "INVITE" {
            r.headers.push(
                HeaderName::Contact,
                "<sip:peer@127.0.0.1:40000;transport=tcp>",
            );
            r.headers.push(HeaderName::ContentType, "application/sdp");
            r.body = sdp_offer(9000).into_bytes();
        }
        self.held_or_now(flow, Message::Response(r).to_bytes());
        if method == "REGISTER" {
            self.server_bound(flow, expires);
        }
    }

    /// A REGISTER was accepted: the binding, and the INVITEs held for it.
    fn server_bound(&mut self, flow: FlowId, expires: u32) {
        if expires == 0 {
            self.server_registered = false;
            return;
        }
        let until = self.now + Duration::from_secs(u64::from(expires));
        self.bindings.push((self.now, until));
        self.registers += 1;
        self.server_registered = true;
        for text in std::mem::take(&mut self.pending) {
            self.held_or_now(flow, text.into_bytes());
        }
    }

    fn server_response(&mut self, flow: FlowId, resp: Response) {
        let is_invite = resp
            .headers
            .cseq()
            .is_some_and(|c| c.method.as_str() == "INVITE");
        let (Some(call_id), Some(cseq), Some(via)) = (
            resp.headers.call_id(),
            resp.headers.cseq(),
            resp.headers.top_via(),
        ) else {
            return;
        };
        if !is_invite {
            return;
        }
        self.answers
            .push((self.now, call_id.to_string(), resp.status));
        if resp.status < 200 {
            return;
        }
        let inv = PeerInvite {
            call_id: call_id.to_string(),
            from_tag: resp
                .headers
                .from()
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default(),
            branch: via.branch().unwrap_or_default().to_string(),
            cseq: cseq.seq,
        };
        let tag = resp.headers.to().and_then(|t| t.tag().map(str::to_string));
        let ack = if resp.is_success() {
            inv.ack(tag.as_deref(), Some(&format!("{}-ack", inv.branch)))
        } else {
            inv.ack(tag.as_deref(), None)
        };
        self.held_or_now(flow, ack.into_bytes());
    }
}
