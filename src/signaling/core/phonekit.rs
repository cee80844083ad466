//! Test harness: one [`SignalingCore`] on a simulated phone, registered over its control flow
//! to a fake registrar + proxy, with a virtual clock. Used by the unit tests of issue 4 and by
//! `tests/phone.rs`.
//!
//! - **The server** answers REGISTER with 200 (Contact echoed, `expires`), CRLF pings with a
//!   pong (unless `answer_pings` is off), BYE and re-INVITE with 200, and ACKs every final
//!   response to an INVITE it sent. It delivers an INVITE only on a flow where the phone is
//!   registered; until then it holds it (as Kamailio's tsilo does) and sends it right after
//!   the next successful REGISTER. A *restart* drops the flow and forgets the binding; while
//!   `server_up` is false, connects fail.
//! - **The phone** can be *suspended*: nothing of ours runs, bytes and EOFs wait (in the
//!   kernel) in `held`, time passes, no timer fires. `wake` delivers everything held in order,
//!   then fires the timers that are due.

use super::{CallHandle, Event, FlowId, Output, SignalingCore};
use crate::signaling::config::{Account, Config};
use crate::signaling::message::{HeaderName, Message, Request, Response, Uri};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::testkit::{sdp_offer, PeerInvite};

/// The phone's local address.
pub const PHONE_ADDR: &str = "127.0.0.1:40000";
/// The server's address.
pub const SERVER_ADDR: &str = "127.0.0.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 5060)))
}

/// An input that waits while the phone is suspended.
#[derive(Debug, Clone)]
pub enum Held {
    /// Bytes on a flow.
    Bytes(FlowId, Vec<u8>),
    /// EOF on a flow.
    Down(FlowId),
}

/// A config with an account on the fake server and RFC 5626 outbound.
pub fn phone_config() -> Config {
    Config {
        account: Some(Account {
            registrar: Uri::parse("sip:127.0.0.1:5060;transport=tcp")
                .unwrap_or_else(|_| Uri::sip(crate::signaling::message::Host::parse("x"), None)),
            user: "alice".into(),
            domain: "127.0.0.1".into(),
            password: None,
            auth_user: None,
            proxy: None,
        }),
        instance_id: Some("urn:uuid:00000000-0000-4000-8000-000000000001".into()),
        ..Config::default()
    }
}

/// A phone and its server.
pub struct Phone {
    /// The core under test.
    pub core: SignalingCore,
    /// The virtual clock.
    pub now: Instant,
    /// Suspended: inputs are held, timers do not fire.
    pub suspended: bool,
    /// Inputs waiting for the wake.
    pub held: VecDeque<Held>,
    /// The flow the server holds (the phone's control flow as the server sees it).
    pub server_flow: Option<FlowId>,
    /// The phone is registered on `server_flow`.
    pub server_registered: bool,
    /// Connects succeed.
    pub server_up: bool,
    /// The server answers pings.
    pub answer_pings: bool,
    /// INVITEs (text) the server holds until the phone registers.
    pub pending: Vec<String>,
    /// Everything the core transmitted, with its flow.
    pub sent: Vec<(FlowId, Vec<u8>)>,
    /// Everything the core told the application.
    pub events: Vec<Event>,
    /// REGISTERs the server accepted.
    pub registers: u32,
    /// Connections asked for.
    pub connects: u32,
    /// Pings the server saw.
    pub pings: u32,
    /// Requests the core sent (parsed), for inspection.
    pub requests: Vec<Request>,
    /// The server challenges a REGISTER without Authorization (401, nonce `n1`).
    pub digest: bool,
    /// REGISTERs the server challenged.
    pub challenges: u32,
    /// The control flow is UDP: bytes are datagrams, and a server that is down loses them.
    pub udp: bool,
    /// A NAT in front of the phone: the server sees requests come from this address and says
    /// so in the top Via (`received`, `rport`; RFC 3581).
    pub nat: Option<SocketAddr>,
}

impl Phone {
    /// A phone that starts registering at `origin`; call [`Phone::settle`] to finish.
    pub fn new(config: Config, origin: Instant) -> Self {
        let udp = super::control::control_transport(&config) == super::Transport::Udp;
        let mut p = Phone {
            udp,
            core: SignalingCore::new(config),
            now: origin,
            suspended: false,
            held: VecDeque::new(),
            server_flow: None,
            server_registered: false,
            server_up: true,
            answer_pings: true,
            pending: Vec::new(),
            sent: Vec::new(),
            events: Vec::new(),
            registers: 0,
            connects: 0,
            pings: 0,
            requests: Vec::new(),
            digest: false,
            challenges: 0,
            nat: None,
        };
        let _ = p.core.register(p.now);
        p.pump();
        p
    }

    /// Moves the core's outputs to the server (and the server's answers back) until quiet.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let Some(out) = self.core.poll_output() else {
                return;
            };
            match out {
                Output::Event(e) => self.events.push(e),
                Output::Connect { flow, .. } => {
                    self.connects += 1;
                    if self.server_up {
                        self.server_flow = Some(flow);
                        self.server_registered = false;
                        self.core.handle_flow_up(
                            self.now,
                            flow,
                            addr(PHONE_ADDR),
                            addr(SERVER_ADDR),
                        );
                    } else {
                        self.core.handle_flow_down(self.now, flow);
                    }
                }
                Output::Close { flow } => {
                    if self.server_flow == Some(flow) {
                        self.server_flow = None;
                        self.server_registered = false;
                    }
                }
                Output::Transmit { flow, bytes } => {
                    self.sent.push((flow, bytes.clone()));
                    if self.server_flow == Some(flow) && (!self.udp || self.server_up) {
                        self.server_receives(flow, &bytes);
                    }
                }
            }
        }
    }

    /// Sends bytes from the server on its flow (held while suspended).
    pub fn deliver(&mut self, text: &str) {
        let Some(flow) = self.server_flow else {
            return;
        };
        if self.suspended {
            self.held
                .push_back(Held::Bytes(flow, text.as_bytes().to_vec()));
        } else {
            self.feed(flow, text.as_bytes());
            self.pump();
        }
    }

    fn server_receives(&mut self, flow: FlowId, bytes: &[u8]) {
        if bytes == b"\r\n\r\n" {
            self.pings += 1;
            if self.answer_pings {
                self.queue_from_server(flow, b"\r\n".to_vec());
            }
            return;
        }
        match Message::parse(bytes) {
            Ok(Message::Request(req)) => self.server_request(flow, req),
            Ok(Message::Response(resp)) => self.server_response(flow, resp),
            Err(_) => {}
        }
    }

    fn queue_from_server(&mut self, flow: FlowId, bytes: Vec<u8>) {
        // The server answers "later": after the current output is handled.
        self.held_or_now(flow, bytes);
    }

    fn held_or_now(&mut self, flow: FlowId, bytes: Vec<u8>) {
        if self.suspended {
            self.held.push_back(Held::Bytes(flow, bytes));
        } else {
            self.feed(flow, &bytes);
        }
    }

    /// Bytes from the server reach the core: on the TCP flow, or as one datagram.
    fn feed(&mut self, flow: FlowId, bytes: &[u8]) {
        if self.udp {
            self.core
                .handle_datagram(self.now, addr(PHONE_ADDR), addr(SERVER_ADDR), bytes);
        } else {
            self.core.handle_received(self.now, flow, bytes);
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
        if let Some(mut to) = req.headers.to() {
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
        if method == "REGISTER" {
            let contact = req.headers.get(&HeaderName::Contact).unwrap_or_default();
            let expires = req.headers.expires().unwrap_or(600);
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
        if method == "REGISTER" && req.headers.expires().unwrap_or(600) > 0 {
            self.registers += 1;
            self.server_registered = true;
            for text in std::mem::take(&mut self.pending) {
                self.held_or_now(flow, text.into_bytes());
            }
        }
    }

    fn server_response(&mut self, flow: FlowId, resp: Response) {
        let is_invite = resp
            .headers
            .cseq()
            .is_some_and(|c| c.method.as_str() == "INVITE");
        if !is_invite || resp.status < 200 {
            return;
        }
        let (Some(call_id), Some(cseq), Some(via)) = (
            resp.headers.call_id(),
            resp.headers.cseq(),
            resp.headers.top_via(),
        ) else {
            return;
        };
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

    /// The server sends an INVITE now if the phone is registered, else holds it.
    pub fn server_invite(&mut self, inv: &PeerInvite) {
        let text = inv.invite(Some(&sdp_offer(7000)), "", None);
        if self.server_registered && self.server_flow.is_some() {
            self.deliver(&text);
        } else {
            self.pending.push(text);
        }
    }

    /// The server drops the flow (EOF at the phone, held while suspended).
    pub fn drop_flow(&mut self) {
        let Some(flow) = self.server_flow.take() else {
            return;
        };
        self.server_registered = false;
        if self.suspended {
            self.held.push_back(Held::Down(flow));
        } else {
            self.core.handle_flow_down(self.now, flow);
            self.pump();
        }
    }

    /// Suspends the phone.
    pub fn suspend(&mut self) {
        self.suspended = true;
    }

    /// Wakes the phone: every held input in order, then the due timers.
    pub fn wake(&mut self) {
        self.suspended = false;
        while let Some(h) = self.held.pop_front() {
            match h {
                Held::Bytes(flow, bytes) => self.feed(flow, &bytes),
                Held::Down(flow) => self.core.handle_flow_down(self.now, flow),
            }
            self.pump();
        }
        self.advance(Duration::ZERO);
    }

    /// Moves the clock by `d`, firing the core's deadlines on the way unless suspended.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        self.pump();
        if !self.suspended {
            for _ in 0..100_000 {
                match self.core.poll_timeout() {
                    Some(at) if at <= end => {
                        self.now = self.now.max(at);
                        self.core.handle_timeout(self.now);
                        self.pump();
                    }
                    _ => break,
                }
            }
        }
        self.now = end;
        self.pump();
    }

    /// The handles of `Incoming` events, in order.
    pub fn incoming(&self) -> Vec<CallHandle> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Incoming { call, .. } => Some(*call),
                _ => None,
            })
            .collect()
    }

    /// `Ended` events as (handle, status, outcome).
    pub fn ended(&self) -> Vec<(CallHandle, u16, super::CallOutcome)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Ended {
                    call,
                    status,
                    outcome,
                    ..
                } => Some((*call, status.unwrap_or(0), *outcome)),
                _ => None,
            })
            .collect()
    }

    /// Status lines of the responses the core sent for this Call-ID.
    pub fn statuses(&self, call_id: &str) -> Vec<u16> {
        self.sent
            .iter()
            .filter_map(|(_, b)| match Message::parse(b) {
                Ok(Message::Response(r)) if r.headers.call_id() == Some(call_id) => Some(r.status),
                _ => None,
            })
            .collect()
    }

    /// The last request of `method` the core sent.
    pub fn last_request(&self, method: &str) -> Option<&Request> {
        self.requests
            .iter()
            .rev()
            .find(|r| r.method.as_str() == method)
    }

    /// Whether the core is registered (last registration event).
    pub fn registered(&self) -> bool {
        self.events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Registered { .. } => Some(true),
                Event::RegistrationFailed { .. } | Event::Unregistered => Some(false),
                _ => None,
            })
            .unwrap_or(false)
    }
}
