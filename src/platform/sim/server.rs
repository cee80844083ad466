//! The fake registrar + proxy at the other end of the simulated phone's control flow.
//!
//! It answers REGISTER (echoing the Contacts with the granted `expires`), answers CRLF CRLF pings
//! with CRLF, sends INVITEs and CANCELs for the tests, ACKs the final responses, and records
//! what the UA answered. An INVITE for a UA with no flow is held until its next REGISTER (what
//! Kamailio's `tsilo` does).

use crate::signaling::core::testkit::{sdp_offer, PeerInvite};
use crate::signaling::framing::{Frame, Framer};
use crate::signaling::message::{new_branch, new_tag, HeaderName, Message, Method, Response};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// An INVITE the fake server sent, and what came back for it.
#[derive(Debug, Clone)]
pub struct ServerCall {
    /// Its identity.
    pub invite: PeerInvite,
    /// Provisional statuses received, with their times.
    pub provisional: Vec<(Instant, u16)>,
    /// Final statuses received (more than one is a ledger violation).
    pub finals: Vec<(Instant, u16)>,
    /// Our To tag from the UA's response.
    pub to_tag: Option<String>,
    /// Held until the UA registers again (it had no flow).
    pub held: bool,
}

/// A registrar + proxy facing the phone over one TCP connection.
#[derive(Debug)]
pub struct FakeServer {
    pub(super) framer: Option<Framer>,
    /// Connections are accepted (false: the server is down / restarting).
    pub accepting: bool,
    /// When the server comes back after [`super::Phone::server_restart`].
    pub down_until: Option<Instant>,
    /// The registration binding expires at this time.
    pub binding_until: Option<Instant>,
    /// REGISTERs answered.
    pub registers: u32,
    /// Pings answered.
    pub pongs: u32,
    /// Keep-alive bytes received (pings) and sent (pongs).
    pub keepalive_bytes: (usize, usize),
    /// Every INVITE sent to the UA, by Call-ID.
    pub calls: BTreeMap<String, ServerCall>,
    /// Requests the UA sent, by method name, in order.
    pub requests: Vec<(Instant, String)>,
    /// Every binding granted: (from, until); cut short when the server restarts.
    pub bindings: Vec<(Instant, Instant)>,
}

impl FakeServer {
    pub(super) fn new() -> Self {
        FakeServer {
            framer: None,
            accepting: true,
            down_until: None,
            binding_until: None,
            registers: 0,
            pongs: 0,
            keepalive_bytes: (0, 0),
            calls: BTreeMap::new(),
            requests: Vec::new(),
            bindings: Vec::new(),
        }
    }

    /// The UA was registered without a gap from `from` to `to` (by the bindings granted).
    pub fn bound_throughout(&self, from: Instant, to: Instant) -> bool {
        let mut spans = self.bindings.clone();
        spans.sort();
        let mut covered = from;
        for (start, end) in spans {
            if start > covered {
                break;
            }
            covered = covered.max(end);
        }
        covered >= to
    }

    /// The UA has a live registration at `now`.
    pub fn is_registered(&self, now: Instant) -> bool {
        self.framer.is_some() && self.binding_until.is_some_and(|t| t > now)
    }

    /// Final statuses the UA sent for this Call-ID.
    pub fn finals(&self, call_id: &str) -> Vec<u16> {
        self.calls
            .get(call_id)
            .map(|c| c.finals.iter().map(|f| f.1).collect())
            .unwrap_or_default()
    }

    pub(super) fn connected(&self) -> bool {
        self.framer.is_some()
    }

    /// Handles bytes from the UA; returns what to send back.
    pub(super) fn receive(&mut self, now: Instant, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let Some(framer) = self.framer.as_mut() else {
            return out;
        };
        framer.push(bytes, now);
        let mut frames = Vec::new();
        while let Some(f) = framer.poll() {
            frames.push(f);
        }
        for frame in frames {
            match frame {
                Ok(Frame::Ping) => {
                    self.pongs += 1;
                    self.keepalive_bytes.0 += 4;
                    self.keepalive_bytes.1 += 2;
                    out.push(b"\r\n".to_vec());
                }
                Ok(Frame::Pong) => {}
                Ok(Frame::Message(m)) => match Message::parse(&m) {
                    Ok(Message::Request(req)) => out.extend(self.request(now, req)),
                    Ok(Message::Response(resp)) => out.extend(self.response(now, resp)),
                    Err(_) => {}
                },
                Err(_) => {}
            }
        }
        out
    }

    fn request(&mut self, now: Instant, req: crate::signaling::message::Request) -> Vec<Vec<u8>> {
        self.requests.push((now, req.method.as_str().to_string()));
        let mut resp = Response::for_request(&req, 200);
        if let Some(to) = resp.headers.get(&HeaderName::To).map(str::to_string) {
            if !to.contains(";tag=") {
                resp.headers
                    .set(HeaderName::To, format!("{to};tag={}", new_tag()));
            }
        }
        let mut out = Vec::new();
        if req.method == Method::Register {
            let expires = req.headers.expires().unwrap_or(3600);
            for c in req.headers.list(&HeaderName::Contact) {
                resp.headers
                    .push(HeaderName::Contact, format!("{c};expires={expires}"));
            }
            resp.headers.push(HeaderName::Expires, expires.to_string());
            self.registers += 1;
            self.binding_until =
                (expires > 0).then(|| now + Duration::from_secs(u64::from(expires)));
            if let Some(until) = self.binding_until {
                self.bindings.push((now, until));
            }
            out.push(resp.to_bytes());
            // Release INVITEs held while the UA had no flow.
            for call in self.calls.values_mut().filter(|c| c.held) {
                call.held = false;
                out.push(
                    call.invite
                        .invite(Some(&sdp_offer(30000)), "", None)
                        .into_bytes(),
                );
            }
            return out;
        }
        if req.method != Method::Ack {
            out.push(resp.to_bytes());
        }
        out
    }

    fn response(&mut self, now: Instant, resp: Response) -> Vec<Vec<u8>> {
        let Some(cseq) = resp.headers.cseq() else {
            return Vec::new();
        };
        if cseq.method != Method::Invite {
            return Vec::new();
        }
        let Some(call) = resp.headers.call_id().and_then(|id| self.calls.get_mut(id)) else {
            return Vec::new();
        };
        let tag = resp
            .headers
            .to()
            .and_then(|t| t.params.get("tag").flatten().map(str::to_string));
        if tag.is_some() {
            call.to_tag = tag.clone();
        }
        if resp.status < 200 {
            call.provisional.push((now, resp.status));
            return Vec::new();
        }
        call.finals.push((now, resp.status));
        let ack = if resp.is_success() {
            call.invite.ack(tag.as_deref(), Some(&new_branch()))
        } else {
            call.invite.ack(tag.as_deref(), None)
        };
        vec![ack.into_bytes()]
    }
}
