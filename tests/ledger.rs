//! The no-INVITE-lost ledger under random interleavings.
//!
//! A scripted peer on an accepted flow sends new INVITEs (with and without an offer), merged,
//! malformed and codec-less INVITEs, retransmissions, CANCELs, ACKs, BYEs and re-INVITEs; the
//! application rings, answers, rejects, hangs up and holds; the flow drops; the virtual clock jumps to the core's next deadline. At the end
//! the application hangs up whatever is left and the clock runs until nothing is due. Then:
//! - every INVITE that started a call got exactly one final response on the wire (one distinct
//!   message; identical retransmissions are fine), or none when its flow died first — and those
//!   are exactly the ledger's abandoned finals;
//! - every such INVITE gave exactly one `Ended`, no call handle ended twice, and every
//!   `Incoming` call ended;
//! - no INVITE got two different 2xx (no call answered twice);
//! - the ledger is empty and counted no double final, no double `Ended`, nothing stray.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use wakeline::signaling::config::Config;
use wakeline::signaling::core::testkit::{sdp_offer, PeerInvite, Solo};
use wakeline::signaling::core::{CallHandle, Event};
use wakeline::signaling::message::{HeaderName, Message};

#[derive(Debug, Clone)]
enum Op {
    NewInvite,
    Merged(usize),
    Malformed,
    NoCodec,
    LateOffer,
    Retransmit(usize),
    Cancel(usize),
    Ack(usize),
    Bye(usize),
    ReInvite(usize),
    Ring(usize),
    Answer(usize),
    Reject(usize, u16),
    Hangup(usize),
    Hold(usize, bool),
    FlowDrop,
    Jump,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::NewInvite),
        1 => any::<usize>().prop_map(Op::Merged),
        1 => Just(Op::Malformed),
        1 => Just(Op::NoCodec),
        1 => Just(Op::LateOffer),
        2 => any::<usize>().prop_map(Op::Retransmit),
        2 => any::<usize>().prop_map(Op::Cancel),
        2 => any::<usize>().prop_map(Op::Ack),
        2 => any::<usize>().prop_map(Op::Bye),
        1 => any::<usize>().prop_map(Op::ReInvite),
        2 => any::<usize>().prop_map(Op::Ring),
        3 => any::<usize>().prop_map(Op::Answer),
        1 => (any::<usize>(), prop_oneof![Just(486u16), Just(603), Just(404)]).prop_map(|(i, c)| Op::Reject(i, c)),
        2 => any::<usize>().prop_map(Op::Hangup),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, b)| Op::Hold(i, b)),
        1 => Just(Op::FlowDrop),
        2 => Just(Op::Jump),
    ]
}

/// One INVITE the peer sent that starts a call.
struct Sent {
    invite: PeerInvite,
    text: String,
    at: std::time::Instant,
}

struct World {
    s: Solo,
    sent: Vec<Sent>,
    /// INVITEs that must each get one final and one Ended (by (call-id, branch, cseq)).
    starters: BTreeSet<(String, String, u32)>,
    n: u32,
}

impl World {
    fn new(config: Config) -> Self {
        World {
            s: Solo::new(config, std::time::Instant::now()),
            sent: Vec::new(),
            starters: BTreeSet::new(),
            n: 0,
        }
    }

    fn fresh(&mut self) -> PeerInvite {
        self.n += 1;
        PeerInvite {
            call_id: format!("call-{}", self.n),
            from_tag: format!("ft{}", self.n),
            branch: format!("z9hG4bKb{}", self.n),
            cseq: 1,
        }
    }

    fn send_starter(&mut self, invite: PeerInvite, text: String) {
        self.starters
            .insert((invite.call_id.clone(), invite.branch.clone(), invite.cseq));
        self.s.feed(&text);
        self.sent.push(Sent {
            invite,
            text,
            at: self.s.now,
        });
    }

    fn pick(&self, i: usize) -> Option<&Sent> {
        if self.sent.is_empty() {
            None
        } else {
            self.sent.get(i % self.sent.len())
        }
    }

    fn incoming(&self) -> Vec<CallHandle> {
        self.s
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Incoming { call, .. } => Some(*call),
                _ => None,
            })
            .collect()
    }

    fn handle(&self, i: usize) -> Option<CallHandle> {
        let v = self.incoming();
        (!v.is_empty()).then(|| v[i % v.len()])
    }

    /// Our To tag for a call, from the responses we sent.
    fn our_tag(&self, call_id: &str) -> Option<String> {
        self.s
            .responses()
            .into_iter()
            .find(|r| r.call_id == call_id && r.to_tag.is_some() && r.status > 100)
            .and_then(|r| r.to_tag)
    }

    fn apply(&mut self, op: Op) {
        let now = self.s.now;
        match op {
            Op::NewInvite => {
                let p = self.fresh();
                let text = p.invite(Some(&sdp_offer(6000)), "", None);
                self.send_starter(p, text);
            }
            Op::Merged(i) => {
                if let Some(orig) = self.pick(i).map(|s| s.invite.clone()) {
                    self.n += 1;
                    let p = PeerInvite {
                        branch: format!("z9hG4bKm{}", self.n),
                        ..orig
                    };
                    let text = p.invite(Some(&sdp_offer(6000)), "", None);
                    self.send_starter(p, text);
                }
            }
            Op::Malformed => {
                let p = self.fresh();
                let text = p
                    .invite(None, "", None)
                    .replace("INVITE sip:bob@127.0.0.1:5060", "INVITE sip:bob@[::1");
                self.send_starter(p, text);
            }
            Op::NoCodec => {
                let p = self.fresh();
                let sdp = sdp_offer(6000)
                    .replace("RTP/AVP 0 101", "RTP/AVP 18")
                    .replace("a=rtpmap:0 PCMU/8000\r\n", "");
                let text = p.invite(Some(&sdp), "", None);
                self.send_starter(p, text);
            }
            Op::LateOffer => {
                let p = self.fresh();
                let text = p.invite(None, "", None);
                self.send_starter(p, text);
            }
            Op::Retransmit(i) => {
                // Only while a real peer could still retransmit (within Timer B).
                if let Some(sent) = self.pick(i) {
                    if now.duration_since(sent.at) < Duration::from_secs(30) {
                        let text = sent.text.clone();
                        self.s.feed(&text);
                    }
                }
            }
            Op::Cancel(i) => {
                if let Some(p) = self.pick(i).map(|s| s.invite.clone()) {
                    self.s.feed(&p.cancel());
                }
            }
            Op::Ack(i) => {
                if let Some(p) = self.pick(i).map(|s| s.invite.clone()) {
                    let last = self
                        .s
                        .responses()
                        .into_iter()
                        .rev()
                        .find(|r| r.branch == p.branch && r.status >= 200);
                    let text = match last {
                        Some(r) if r.status < 300 => {
                            self.n += 1;
                            p.ack(r.to_tag.as_deref(), Some(&format!("z9hG4bKa{}", self.n)))
                        }
                        Some(r) => p.ack(r.to_tag.as_deref(), None),
                        None => p.ack(None, None),
                    };
                    self.s.feed(&text);
                }
            }
            Op::Bye(i) => {
                if let Some(p) = self.pick(i).map(|s| s.invite.clone()) {
                    let tag = self.our_tag(&p.call_id);
                    self.n += 1;
                    let text = p.bye(tag.as_deref(), 100 + self.n, &format!("z9hG4bKy{}", self.n));
                    self.s.feed(&text);
                }
            }
            Op::ReInvite(i) => {
                if let Some(p) = self.pick(i).map(|s| s.invite.clone()) {
                    if let Some(tag) = self.our_tag(&p.call_id) {
                        self.n += 1;
                        let re = PeerInvite {
                            branch: format!("z9hG4bKr{}", self.n),
                            cseq: 100 + self.n,
                            ..p
                        };
                        let sdp = sdp_offer(6000).replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n");
                        self.s.feed(&re.invite(Some(&sdp), "", Some(&tag)));
                    }
                }
            }
            Op::Ring(i) => {
                if let Some(h) = self.handle(i) {
                    let _ = self.s.core.ring(now, h);
                }
            }
            Op::Answer(i) => {
                if let Some(h) = self.handle(i) {
                    let _ = self
                        .s
                        .core
                        .answer(now, h, "127.0.0.1:7000".parse().unwrap());
                }
            }
            Op::Reject(i, code) => {
                if let Some(h) = self.handle(i) {
                    let _ = self.s.core.reject(now, h, code);
                }
            }
            Op::Hangup(i) => {
                if let Some(h) = self.handle(i) {
                    let _ = self.s.core.hangup(now, h);
                }
            }
            Op::Hold(i, on) => {
                if let Some(h) = self.handle(i) {
                    let _ = self.s.core.hold(now, h, on);
                }
            }
            Op::FlowDrop => self.s.drop_flow(),
            Op::Jump => {
                self.s.jump(Duration::from_secs(200));
            }
        }
        self.s.collect();
        queue_agrees(&self.s.core);
    }

    fn settle(&mut self) {
        for h in self.incoming() {
            let _ = self.s.core.hangup(self.s.now, h);
        }
        self.s.collect();
        for _ in 0..10_000 {
            if !self.s.jump(Duration::from_secs(3600)) {
                break;
            }
        }
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let stats = self.s.core.ledger_stats();
        prop_assert_eq!(stats.open, 0, "ledger still open: {:?}", stats);
        prop_assert_eq!(stats.double_finals, 0);
        prop_assert_eq!(stats.double_ended, 0);
        prop_assert_eq!(stats.stray, 0);

        // Finals on the wire per starter INVITE: distinct messages.
        let mut finals: BTreeMap<(String, String, u32), BTreeSet<Vec<u8>>> = BTreeMap::new();
        for bytes in &self.s.sent {
            let Ok(Message::Response(r)) = Message::parse(bytes) else {
                continue;
            };
            let Some(cseq) = r.headers.cseq() else {
                continue;
            };
            if r.status < 200 || cseq.method.as_str() != "INVITE" {
                continue;
            }
            let branch = r
                .headers
                .top_via()
                .and_then(|v| v.branch().map(str::to_string))
                .unwrap_or_default();
            let call_id = r
                .headers
                .get(&HeaderName::CallId)
                .unwrap_or_default()
                .to_string();
            finals
                .entry((call_id, branch, cseq.seq))
                .or_default()
                .insert(bytes.clone());
        }
        let mut without_final = 0u64;
        for key in &self.starters {
            match finals.get(key).map(|s| s.len()).unwrap_or(0) {
                0 => without_final += 1,
                1 => {}
                n => prop_assert!(false, "{} different finals for {:?}", n, key),
            }
        }
        prop_assert_eq!(
            without_final,
            stats.abandoned,
            "finals missing beyond the abandoned ones"
        );

        // Ended: one per starter, never twice per handle, every Incoming ended.
        let mut ended = BTreeSet::new();
        for e in &self.s.events {
            if let Event::Ended { call, .. } = e {
                prop_assert!(ended.insert(*call), "second Ended for {:?}", call);
            }
        }
        prop_assert_eq!(ended.len(), self.starters.len());
        for h in self.incoming() {
            prop_assert!(ended.contains(&h), "Incoming {:?} never ended", h);
        }
        prop_assert_eq!(self.s.core.call_count(), 0, "calls left after settling");
        Ok(())
    }
}

/// The core's deadline queues give the same next deadline as a scan of every transaction,
/// flow and call (the way it was computed before the queues).
fn queue_agrees(core: &wakeline::signaling::core::SignalingCore) {
    assert_eq!(
        core.poll_timeout(),
        core.poll_timeout_by_scan(),
        "deadline queue and scan disagree"
    );
}

fn config(busy_allow: bool) -> Config {
    Config {
        busy_policy: if busy_allow {
            wakeline::signaling::config::BusyPolicy::Allow
        } else {
            wakeline::signaling::config::BusyPolicy::Reject(486)
        },
        ring_timeout: Duration::from_secs(60),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_invite_gets_one_final_and_one_ended(
        ops in proptest::collection::vec(op(), 1..40),
        busy_allow in any::<bool>(),
    ) {
        let mut w = World::new(config(busy_allow));
        for op in ops {
            w.apply(op);
        }
        w.settle();
        w.check()?;
    }
}

#[test]
fn a_simple_script_passes_the_checks() {
    let mut w = World::new(config(false));
    w.apply(Op::NewInvite);
    w.apply(Op::Ring(0));
    w.apply(Op::NewInvite); // busy
    w.apply(Op::Answer(0));
    w.apply(Op::Ack(0));
    w.apply(Op::ReInvite(0));
    w.apply(Op::Bye(0));
    w.apply(Op::Malformed);
    w.apply(Op::NewInvite);
    w.apply(Op::FlowDrop);
    w.settle();
    w.check().unwrap();
    assert_eq!(w.starters.len(), 4);
    assert_eq!(w.s.core.ledger_stats().abandoned, 1);
}

/// What the application of either side does, for the two-core property test.
#[derive(Debug, Clone)]
enum PairOp {
    Call,
    Ring(usize),
    Answer(usize),
    Reject(usize),
    HangupA(usize),
    HangupB(usize),
    Hold(usize, bool),
    DropFlow,
    Partition(bool),
    Jump,
}

fn pair_op() -> impl Strategy<Value = PairOp> {
    prop_oneof![
        3 => Just(PairOp::Call),
        2 => any::<usize>().prop_map(PairOp::Ring),
        3 => any::<usize>().prop_map(PairOp::Answer),
        1 => any::<usize>().prop_map(PairOp::Reject),
        2 => any::<usize>().prop_map(PairOp::HangupA),
        2 => any::<usize>().prop_map(PairOp::HangupB),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, b)| PairOp::Hold(i, b)),
        1 => Just(PairOp::DropFlow),
        1 => any::<bool>().prop_map(PairOp::Partition),
        2 => Just(PairOp::Jump),
    ]
}

fn pick<T: Copy>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Two wakeline cores calling each other: every call placed by A and every call B saw
    /// ends exactly once on that side, B's ledger closes, and nothing is left afterwards.
    #[test]
    fn two_cores_end_every_call_once(ops in proptest::collection::vec(pair_op(), 1..30)) {
        use wakeline::signaling::core::testkit::Pair;
        let mut p = Pair::new(Config::default(), Config::default(), std::time::Instant::now());
        let mut placed: Vec<CallHandle> = Vec::new();
        for op in ops {
            let now = p.now;
            let incoming: Vec<CallHandle> = p
                .b_events
                .iter()
                .filter_map(|e| match e {
                    Event::Incoming { call, .. } => Some(*call),
                    _ => None,
                })
                .collect();
            match op {
                PairOp::Call => {
                    if let Ok(h) = p.a.call(now, p.b_uri(), Pair::media(4000)) {
                        placed.push(h);
                    }
                }
                PairOp::Ring(i) => {
                    if let Some(h) = pick(&incoming, i) {
                        let _ = p.b.ring(now, h);
                    }
                }
                PairOp::Answer(i) => {
                    if let Some(h) = pick(&incoming, i) {
                        let _ = p.b.answer(now, h, Pair::media(5000));
                    }
                }
                PairOp::Reject(i) => {
                    if let Some(h) = pick(&incoming, i) {
                        let _ = p.b.reject(now, h, 486);
                    }
                }
                PairOp::HangupA(i) => {
                    if let Some(h) = pick(&placed, i) {
                        let _ = p.a.hangup(now, h);
                    }
                }
                PairOp::HangupB(i) => {
                    if let Some(h) = pick(&incoming, i) {
                        let _ = p.b.hangup(now, h);
                    }
                }
                PairOp::Hold(i, on) => {
                    if let Some(h) = pick(&placed, i) {
                        let _ = p.a.hold(now, h, on);
                    }
                }
                PairOp::DropFlow => {
                    if let Some(f) = p.a_flow.take() {
                        p.a.handle_flow_down(now, f);
                    }
                    if let Some(f) = p.b_flow.take() {
                        p.b.handle_flow_down(now, f);
                    }
                }
                PairOp::Partition(cut) => p.connected = !cut,
                PairOp::Jump => {
                    let next = [p.a.poll_timeout(), p.b.poll_timeout()].into_iter().flatten().min();
                    if let Some(at) = next {
                        p.advance(at.saturating_duration_since(p.now));
                    }
                }
            }
            p.drive();
            queue_agrees(&p.a);
            queue_agrees(&p.b);
        }
        // Settle: heal the link, hang up everything, let every timer run.
        p.connected = true;
        let now = p.now;
        for h in placed.clone() {
            let _ = p.a.hangup(now, h);
        }
        let incoming: Vec<CallHandle> = p
            .b_events
            .iter()
            .filter_map(|e| match e {
                Event::Incoming { call, .. } => Some(*call),
                _ => None,
            })
            .collect();
        for h in incoming.clone() {
            let _ = p.b.hangup(now, h);
        }
        p.advance(Duration::from_secs(600));

        let ends = |events: &[Event]| -> Result<BTreeMap<CallHandle, usize>, TestCaseError> {
            let mut m = BTreeMap::new();
            for e in events {
                if let Event::Ended { call, .. } = e {
                    *m.entry(*call).or_insert(0) += 1;
                }
            }
            prop_assert!(m.values().all(|n| *n == 1), "a call ended twice: {:?}", m);
            Ok(m)
        };
        let a_ends = ends(&p.a_events)?;
        let b_ends = ends(&p.b_events)?;
        for h in &placed {
            prop_assert!(a_ends.contains_key(h), "A's call {:?} never ended", h);
        }
        prop_assert_eq!(a_ends.len(), placed.len());
        for h in &incoming {
            prop_assert!(b_ends.contains_key(h), "B's call {:?} never ended", h);
        }
        let stats = p.b.ledger_stats();
        prop_assert_eq!(stats.open, 0, "{:?}", stats);
        prop_assert_eq!(stats.double_finals + stats.double_ended + stats.stray, 0);
        prop_assert_eq!(b_ends.len() as u64, stats.initial, "one Ended per INVITE B saw");
        prop_assert_eq!(p.a.call_count() + p.b.call_count(), 0);
    }
}
