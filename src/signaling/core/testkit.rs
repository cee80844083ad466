//! Test harness: two [`SignalingCore`]s wired to each other over one in-memory flow, with a
//! virtual clock. Used by the unit tests, `tests/ledger.rs` and the call-cycle benchmark.
//!
//! ```text
//! let mut p = Pair::new(Config::default(), Config::default());
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
}

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 5060)))
}

impl Pair {
    /// Two cores; B's `listen` is set to [`B_ADDR`].
    pub fn new(a: Config, mut b: Config) -> Self {
        b.listen = Some(addr(B_ADDR));
        Pair {
            a: SignalingCore::new(a),
            b: SignalingCore::new(b),
            now: Instant::now(),
            a_flow: None,
            b_flow: None,
            a_events: Vec::new(),
            b_events: Vec::new(),
            a_sent: Vec::new(),
            b_sent: Vec::new(),
            connected: true,
        }
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

    /// A test RTP address.
    pub fn media(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}
