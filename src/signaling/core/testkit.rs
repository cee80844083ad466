//! Test harness: two [`SignalingCore`]s wired to each other over one in-memory flow, with a
//! virtual clock. Used by the unit tests, `tests/ledger.rs` and the call-cycle benchmark.
//!
//! ```text
//! let mut p = Pair::new(Config::default(), Config::default(), origin);
//! let call = p.a.call(p.now, p.b_uri(), media).unwrap();
//! p.drive();                       // shuttles bytes until both are idle
//! assert!(p.b_events.iter().any(|e| matches!(e, Event::Incoming { .. })));
//! ```

use super::{Event, FlowId, Output, SignalingCore};
use crate::signaling::config::Config;
use crate::signaling::message::{Host, Uri};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Side A's address (it connects).
pub const A_ADDR: &str = "127.0.0.1:40000";
/// Side B's address (it listens).
pub const B_ADDR: &str = "127.0.0.1:5060";

/// Two cores, A (caller side) and B (listener), a virtual clock, and what each one emitted.
pub struct Pair {
    /// The caller-side core.
    pub a: SignalingCore,
    /// The listener-side core.
    pub b: SignalingCore,
    /// The virtual clock.
    pub now: Instant,
    /// A's flow to B, once A asked to connect.
    pub a_flow: Option<FlowId>,
    /// B's accepted flow from A.
    pub b_flow: Option<FlowId>,
    /// Events A emitted, in order.
    pub a_events: Vec<Event>,
    /// Events B emitted, in order.
    pub b_events: Vec<Event>,
    /// Every message A sent (raw), in order.
    pub a_sent: Vec<Vec<u8>>,
    /// Every message B sent (raw), in order.
    pub b_sent: Vec<Vec<u8>>,
    /// When false, bytes are not delivered (a partition); they are dropped.
    pub connected: bool,
    /// `Some`: the cores talk SIP over UDP through this lossy virtual network (TCP flows,
    /// when A asks for one, still work as in [`Pair::new`]).
    pub udp: Option<UdpNet>,
    /// A's UDP flow to B.
    pub a_udp_flow: Option<FlowId>,
    /// B's connects reach A (A accepts them); when false they fail.
    pub b_can_connect: bool,
}

/// What the virtual UDP network does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered once.
    Deliver,
    /// Lost.
    Drop,
    /// Delivered twice.
    Duplicate,
}

/// A virtual UDP network: the fate of the n-th datagram (either way) is `fates[n % len]`
/// (all delivered when empty).
#[derive(Debug, Clone, Default)]
pub struct UdpNet {
    /// The fates, used in turn.
    pub fates: Vec<Fate>,
    /// Datagrams sent so far.
    pub sent: usize,
    /// Datagrams lost so far.
    pub dropped: usize,
    /// Datagrams duplicated so far.
    pub duplicated: usize,
}

impl UdpNet {
    fn next(&mut self) -> Fate {
        let fate = match self.fates.len() {
            0 => Fate::Deliver,
            n => self.fates[self.sent % n],
        };
        self.sent += 1;
        match fate {
            Fate::Drop => self.dropped += 1,
            Fate::Duplicate => self.duplicated += 1,
            Fate::Deliver => {}
        }
        fate
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 5060)))
}

impl Pair {
    /// Two cores; B's `listen` is set to [`B_ADDR`]. `origin` starts the virtual clock (the
    /// caller reads the real clock once, outside the sans-IO code).
    pub fn new(a: Config, mut b: Config, origin: Instant) -> Self {
        b.listen = Some(addr(B_ADDR));
        Pair {
            a: SignalingCore::new(a),
            b: SignalingCore::new(b),
            now: origin,
            a_flow: None,
            b_flow: None,
            a_events: Vec::new(),
            b_events: Vec::new(),
            a_sent: Vec::new(),
            b_sent: Vec::new(),
            connected: true,
            udp: None,
            a_udp_flow: None,
            b_can_connect: false,
        }
    }

    /// Like [`Pair::new`] but over UDP: A's default transport is UDP, and every datagram
    /// meets the next of `fates` (see [`UdpNet`]).
    pub fn udp(mut a: Config, b: Config, origin: Instant, fates: Vec<Fate>) -> Self {
        a.default_transport = super::Transport::Udp;
        let mut p = Pair::new(a, b, origin);
        p.udp = Some(UdpNet {
            fates,
            ..UdpNet::default()
        });
        p
    }

    /// Carries one datagram over the virtual UDP network (`to_b`: from A to B).
    fn datagram(&mut self, to_b: bool, bytes: &[u8]) -> usize {
        let Some(net) = self.udp.as_mut() else {
            return 0;
        };
        let copies = match net.next() {
            Fate::Drop => 0,
            Fate::Deliver => 1,
            Fate::Duplicate => 2,
        };
        if !self.connected {
            return 0;
        }
        let (a, b) = (addr(A_ADDR), addr(B_ADDR));
        for _ in 0..copies {
            if to_b {
                self.b.handle_datagram(self.now, b, a, bytes);
            } else {
                self.a.handle_datagram(self.now, a, b, bytes);
            }
        }
        copies
    }

    /// The URI A dials to reach B.
    pub fn b_uri(&self) -> Uri {
        let a = addr(B_ADDR);
        Uri {
            user: Some("bob".into()),
            ..Uri::sip(Host::from(a.ip()), Some(a.port()))
        }
    }

    /// Moves outputs between the cores until neither has anything to do at `now`.
    /// Returns the number of messages delivered.
    pub fn drive(&mut self) -> usize {
        let mut moved = 0;
        for _ in 0..10_000 {
            let mut progress = false;
            while let Some(out) = self.a.poll_output() {
                progress = true;
                match out {
                    Output::Connect {
                        flow,
                        transport: super::Transport::Udp,
                        ..
                    } => {
                        self.a_udp_flow = Some(flow);
                        self.a
                            .handle_flow_up(self.now, flow, addr(A_ADDR), addr(B_ADDR));
                    }
                    Output::Transmit { flow, bytes } if Some(flow) == self.a_udp_flow => {
                        self.a_sent.push(bytes.clone());
                        moved += self.datagram(true, &bytes);
                    }
                    Output::Connect { flow, .. } => {
                        self.a_flow = Some(flow);
                        self.a
                            .handle_flow_up(self.now, flow, addr(A_ADDR), addr(B_ADDR));
                        let bf = self
                            .b
                            .handle_flow_accepted(self.now, addr(B_ADDR), addr(A_ADDR));
                        self.b_flow = Some(bf);
                    }
                    Output::Transmit { bytes, .. } => {
                        self.a_sent.push(bytes.clone());
                        if let (true, Some(bf)) = (self.connected, self.b_flow) {
                            self.b.handle_received(self.now, bf, &bytes);
                            moved += 1;
                        }
                    }
                    Output::Close { flow } => {
                        self.a.handle_flow_down(self.now, flow);
                        if let Some(bf) = self.b_flow.take() {
                            self.b.handle_flow_down(self.now, bf);
                        }
                        self.a_flow = None;
                    }
                    Output::Event(e) => self.a_events.push(e),
                }
            }
            while let Some(out) = self.b.poll_output() {
                progress = true;
                match out {
                    Output::Transmit { flow, bytes }
                        if self.udp.is_some() && Some(flow) != self.b_flow =>
                    {
                        self.b_sent.push(bytes.clone());
                        moved += self.datagram(false, &bytes);
                    }
                    Output::Transmit { bytes, .. } => {
                        self.b_sent.push(bytes.clone());
                        if let (true, Some(af)) = (self.connected, self.a_flow) {
                            self.a.handle_received(self.now, af, &bytes);
                            moved += 1;
                        }
                    }
                    Output::Close { flow } => {
                        self.b.handle_flow_down(self.now, flow);
                        if let Some(af) = self.a_flow.take() {
                            self.a.handle_flow_down(self.now, af);
                        }
                        self.b_flow = None;
                    }
                    Output::Connect { flow, .. } if self.b_can_connect => {
                        self.b_flow = Some(flow);
                        self.b
                            .handle_flow_up(self.now, flow, addr(B_ADDR), addr(A_ADDR));
                        let af = self
                            .a
                            .handle_flow_accepted(self.now, addr(A_ADDR), addr(B_ADDR));
                        self.a_flow = Some(af);
                    }
                    Output::Connect { flow, .. } => self.b.handle_flow_down(self.now, flow),
                    Output::Event(e) => self.b_events.push(e),
                }
            }
            if !progress {
                break;
            }
        }
        moved
    }

    /// The TCP connection between A and B closes (EOF on both sides).
    pub fn drop_connection(&mut self) {
        if let Some(f) = self.a_flow.take() {
            self.a.handle_flow_down(self.now, f);
        }
        if let Some(f) = self.b_flow.take() {
            self.b.handle_flow_down(self.now, f);
        }
        self.drive();
    }

    /// Advances the clock by `d`, firing every deadline on the way, and drives.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.drive();
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = end;
        self.drive();
    }

    /// The last `Incoming` call handle B saw.
    pub fn b_incoming(&self) -> Option<super::CallHandle> {
        self.b_events.iter().rev().find_map(|e| match e {
            Event::Incoming { call, .. } => Some(*call),
            _ => None,
        })
    }

    /// The `Ended` events of one side.
    pub fn ended(events: &[Event]) -> Vec<&Event> {
        events
            .iter()
            .filter(|e| matches!(e, Event::Ended { .. }))
            .collect()
    }

    /// Forgets the recorded events and messages (keeps long benchmark loops bounded).
    pub fn clear(&mut self) {
        self.a_events.clear();
        self.b_events.clear();
        self.a_sent.clear();
        self.b_sent.clear();
    }

    /// One whole call, A to B: INVITE / 100 / 180 / 200 / ACK / BYE / 200, then the clock
    /// moves past the linger time so both cores forget the call. Returns `true` when both
    /// sides ended `Answered`. The recorded logs are cleared first.
    pub fn call_cycle(&mut self) -> bool {
        self.clear();
        let Ok(call) = self.a.call(self.now, self.b_uri(), Self::media(4000)) else {
            return false;
        };
        self.drive();
        let Some(inc) = self.b_incoming() else {
            return false;
        };
        if self.b.ring(self.now, inc).is_err()
            || self.b.answer(self.now, inc, Self::media(5000)).is_err()
        {
            return false;
        }
        self.drive();
        if self.a.hangup(self.now, call).is_err() {
            return false;
        }
        self.drive();
        let answered = |events: &[Event]| {
            events.iter().any(|e| {
                matches!(
                    e,
                    Event::Ended {
                        outcome: super::CallOutcome::Answered,
                        ..
                    }
                )
            })
        };
        let ok = answered(&self.a_events) && answered(&self.b_events);
        self.advance(super::LINGER + Duration::from_secs(1));
        ok
    }

    /// A test RTP address.
    pub fn media(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// `(status, outcome)` of every `Ended` event in `events`, in order.
pub fn ended_of(events: &[Event]) -> Vec<(u16, super::CallOutcome)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Ended {
                status, outcome, ..
            } => Some((status.unwrap_or(0), *outcome)),
            _ => None,
        })
        .collect()
}

/// A classic sipp-style PCMU offer for RTP on `port`.
pub fn sdp_offer(port: u16) -> String {
    format!(
        "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
}

/// The identity of one INVITE sent by a fake peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInvite {
    /// Call-ID.
    pub call_id: String,
    /// From tag.
    pub from_tag: String,
    /// Top Via branch.
    pub branch: String,
    /// CSeq number.
    pub cseq: u32,
}

impl PeerInvite {
    /// An INVITE with this identity, `body` as SDP (none: no body), `extra` header lines
    /// (each ending in CRLF), and `to_tag` for a re-INVITE.
    pub fn invite(&self, body: Option<&str>, extra: &str, to_tag: Option<&str>) -> String {
        let body = body.unwrap_or("");
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\n{}{}Contact: <sip:peer@127.0.0.1:40000;transport=tcp>\r\n{extra}{ctype}Content-Length: {}\r\n\r\n{body}",
            self.via(),
            self.dialog_headers("INVITE", self.cseq, to_tag),
            body.len()
        )
    }

    /// CANCEL for the INVITE (same branch and CSeq number).
    pub fn cancel(&self) -> String {
        format!(
            "CANCEL sip:bob@127.0.0.1:5060 SIP/2.0\r\n{}{}Content-Length: 0\r\n\r\n",
            self.via(),
            self.dialog_headers("CANCEL", self.cseq, None)
        )
    }

    /// ACK: for a non-2xx (same branch) when `to_tag` is the tag of that final, or for a 2xx
    /// with `own_branch`.
    pub fn ack(&self, to_tag: Option<&str>, own_branch: Option<&str>) -> String {
        let via = match own_branch {
            Some(b) => format!("Via: SIP/2.0/TCP 127.0.0.1:40000;branch={b}\r\n"),
            None => self.via(),
        };
        format!(
            "ACK sip:bob@127.0.0.1:5060 SIP/2.0\r\n{via}{}Content-Length: 0\r\n\r\n",
            self.dialog_headers("ACK", self.cseq, to_tag)
        )
    }

    /// BYE in the dialog with our To tag `to_tag`, CSeq `cseq`, branch `branch`.
    pub fn bye(&self, to_tag: Option<&str>, cseq: u32, branch: &str) -> String {
        format!(
            "BYE sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;branch={branch}\r\n{}Content-Length: 0\r\n\r\n",
            self.dialog_headers("BYE", cseq, to_tag)
        )
    }

    fn via(&self) -> String {
        format!(
            "Via: SIP/2.0/TCP 127.0.0.1:40000;branch={}\r\nMax-Forwards: 70\r\n",
            self.branch
        )
    }

    fn dialog_headers(&self, method: &str, cseq: u32, to_tag: Option<&str>) -> String {
        let to = match to_tag {
            Some(t) => format!("<sip:bob@127.0.0.1>;tag={t}"),
            None => "<sip:bob@127.0.0.1>".to_string(),
        };
        format!(
            "From: <sip:peer@127.0.0.1>;tag={}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n",
            self.from_tag, self.call_id
        )
    }
}

/// One core facing a scripted peer on an accepted flow.
pub struct Solo {
    /// The core under test.
    pub core: SignalingCore,
    /// The virtual clock.
    pub now: Instant,
    /// The accepted flow (`None` after it dropped).
    pub flow: Option<FlowId>,
    /// Everything the core transmitted.
    pub sent: Vec<Vec<u8>>,
    /// Everything the core told the application.
    pub events: Vec<Event>,
    /// Answer `Output::Connect` with `handle_flow_up` (the new flow becomes `flow`); when
    /// false, connects fail at once.
    pub auto_connect: bool,
    /// Remote host and port of every `Output::Connect`.
    pub connects: Vec<(String, u16)>,
}

impl Solo {
    /// `(status, outcome)` of every `Ended` event so far, in order.
    pub fn ended(&self) -> Vec<(u16, super::CallOutcome)> {
        ended_of(&self.events)
    }

    /// A core with no flow yet; its `Output::Connect`s succeed at once. `origin` starts the
    /// virtual clock.
    pub fn client(config: Config, origin: Instant) -> Self {
        Solo {
            core: SignalingCore::new(config),
            now: origin,
            flow: None,
            sent: Vec::new(),
            events: Vec::new(),
            auto_connect: true,
            connects: Vec::new(),
        }
    }

    /// A core with an accepted flow from the peer. `origin` starts the virtual clock.
    pub fn new(mut config: Config, origin: Instant) -> Self {
        config.listen = Some(addr(B_ADDR));
        let mut core = SignalingCore::new(config);
        let now = origin;
        let flow = core.handle_flow_accepted(now, addr(B_ADDR), addr(A_ADDR));
        let mut s = Solo {
            core,
            now,
            flow: Some(flow),
            sent: Vec::new(),
            events: Vec::new(),
            auto_connect: false,
            connects: Vec::new(),
        };
        s.collect();
        s
    }

    /// Feeds text on the flow (reconnecting a new accepted flow if it had dropped).
    pub fn feed(&mut self, text: &str) {
        let flow = match self.flow {
            Some(f) => f,
            None => {
                let f = self
                    .core
                    .handle_flow_accepted(self.now, addr(B_ADDR), addr(A_ADDR));
                self.flow = Some(f);
                f
            }
        };
        self.core.handle_received(self.now, flow, text.as_bytes());
        self.collect();
    }

    /// Drops the flow.
    pub fn drop_flow(&mut self) {
        if let Some(f) = self.flow.take() {
            self.core.handle_flow_down(self.now, f);
        }
        self.collect();
    }

    /// Jumps to the next deadline (if any, and not beyond `limit` from now) and fires it.
    pub fn jump(&mut self, limit: Duration) -> bool {
        match self.core.poll_timeout() {
            Some(at) if at <= self.now + limit => {
                self.now = self.now.max(at);
                self.core.handle_timeout(self.now);
                self.collect();
                true
            }
            _ => false,
        }
    }

    /// Moves the core's outputs into `sent` / `events`.
    pub fn collect(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { bytes, .. } => self.sent.push(bytes),
                Output::Event(e) => self.events.push(e),
                Output::Close { flow } => {
                    if self.flow == Some(flow) {
                        self.flow = None;
                        self.core.handle_flow_down(self.now, flow);
                    }
                }
                Output::Connect {
                    flow, host, port, ..
                } => {
                    self.connects.push((host, port));
                    if self.auto_connect {
                        self.flow = Some(flow);
                        self.core
                            .handle_flow_up(self.now, flow, addr(A_ADDR), addr(B_ADDR));
                    } else {
                        self.core.handle_flow_down(self.now, flow);
                    }
                }
            }
        }
    }

    /// The last request the core sent, parsed.
    pub fn last_request(&self, method: &str) -> Option<crate::signaling::message::Request> {
        self.sent
            .iter()
            .rev()
            .find_map(|b| match crate::signaling::message::Message::parse(b) {
                Ok(crate::signaling::message::Message::Request(r))
                    if r.method.as_str() == method =>
                {
                    Some(r)
                }
                _ => None,
            })
    }

    /// Status codes of the responses sent so far, with their CSeq header value and To tag.
    pub fn responses(&self) -> Vec<SentResponse> {
        self.sent
            .iter()
            .filter_map(|b| match crate::signaling::message::Message::parse(b) {
                Ok(crate::signaling::message::Message::Response(r)) => Some(SentResponse {
                    status: r.status,
                    cseq: r
                        .headers
                        .get(&crate::signaling::message::HeaderName::CSeq)
                        .unwrap_or_default()
                        .to_string(),
                    call_id: r.headers.call_id().unwrap_or_default().to_string(),
                    branch: r
                        .headers
                        .top_via()
                        .and_then(|v| v.branch().map(str::to_string))
                        .unwrap_or_default(),
                    to_tag: r.headers.to().and_then(|t| t.tag().map(str::to_string)),
                }),
                _ => None,
            })
            .collect()
    }
}

/// A response the core sent, summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentResponse {
    /// Status code.
    pub status: u16,
    /// CSeq header value.
    pub cseq: String,
    /// Call-ID.
    pub call_id: String,
    /// Top Via branch.
    pub branch: String,
    /// To tag.
    pub to_tag: Option<String>,
}
