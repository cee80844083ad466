//! The ledger over the phone: random schedules over a simulated phone (issue 4).
//!
//! The phone (`wakeline::platform::sim::Phone`, the one simulated phone) is registered over
//! its control flow to a fake registrar + proxy that holds INVITEs until the phone is
//! registered (tsilo). The application's side uses the core's own API. Operations:
//! suspend (inputs held, no timers), wake (drain all), push before its INVITE, push after it,
//! a push whose INVITE never comes, flow drop, server restart (flow drop + binding lost +
//! server down for a while), INVITE, a second INVITE while busy, CANCEL, BYE from the peer,
//! application ring / answer / reject / hangup / hold, background mode with keep-alive runs, network
//! change, and time. At the end the server comes back, the phone wakes and goes to the
//! foreground, the application hangs up what is left and the clock runs until all is done.
//!
//! Invariants:
//! - every INVITE that reached the core got at most one distinct final response, and exactly
//!   one unless its flow was gone for good (counted by the ledger as abandoned);
//! - every INVITE that reached the core gave exactly one `Ended`; no handle ended twice;
//!   every `Incoming` (pushed or not) ended;
//! - no INVITE got two different 2xx (no call answered twice);
//! - the ledger is empty and counted no double final, no double `Ended`, nothing stray.

use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};
use wakeline::platform::sim::{phone_config, Phone, SimConfig};
use wakeline::signaling::core::testkit::PeerInvite;
use wakeline::signaling::core::CallHandle;
use wakeline::signaling::message::{Message, Response};

#[derive(Debug, Clone)]
enum Op {
    Suspend,
    Wake,
    Invite,
    PushThenInvite,
    PushAfter(usize),
    PushOnly,
    Cancel(usize),
    PeerBye(usize),
    Ring(usize),
    Answer(usize),
    Reject(usize),
    Hangup(usize),
    Hold(usize, bool),
    /// The application hangs up (or holds) a call and the server dies before answering.
    LostInFlight(usize, bool),
    FlowDrop,
    ServerRestart,
    ServerBack,
    Background(bool),
    KeepAliveRun,
    NetworkChange,
    Jump,
    Wait(u64),
    /// Past one keep-alive handler period (a run, when the phone's OS has the app in
    /// background).
    LongWait,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Suspend),
        2 => Just(Op::Wake),
        4 => Just(Op::Invite),
        2 => Just(Op::PushThenInvite),
        1 => any::<usize>().prop_map(Op::PushAfter),
        1 => Just(Op::PushOnly),
        2 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::PeerBye),
        1 => any::<usize>().prop_map(Op::Ring),
        3 => any::<usize>().prop_map(Op::Answer),
        1 => any::<usize>().prop_map(Op::Reject),
        2 => any::<usize>().prop_map(Op::Hangup),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, on)| Op::Hold(i, on)),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, b)| Op::LostInFlight(i, b)),
        2 => Just(Op::FlowDrop),
        1 => Just(Op::ServerRestart),
        1 => Just(Op::ServerBack),
        1 => any::<bool>().prop_map(Op::Background),
        1 => Just(Op::KeepAliveRun),
        1 => Just(Op::NetworkChange),
        2 => Just(Op::Jump),
        2 => (0u64..40_000).prop_map(Op::Wait),
        1 => Just(Op::LongWait),
    ]
}

/// An INVITE as (Call-ID, branch).
type InviteId = (String, String);
/// A final response as (status, To tag).
type Final = (u16, Option<String>);

const PERIOD: Duration = Duration::from_secs(600);

struct World {
    p: Phone,
    invites: Vec<PeerInvite>,
    pushed: Rc<RefCell<BTreeSet<CallHandle>>>,
    n: u32,
    /// The phone's OS runs itself (`SimConfig::default`): data wakes the app, the app rings
    /// at once and goes back to sleep after its wake window, the keep-alive handler runs in
    /// background, and a push reaches the app's push hook (`Phone::push`).
    os: bool,
}

impl World {
    fn new() -> Self {
        World {
            p: Phone::new(phone_config(), Instant::now()),
            invites: Vec::new(),
            pushed: Rc::default(),
            n: 0,
            os: false,
        }
    }

    /// A world whose phone has an OS of its own; pushes go through the app's push hook.
    fn with_os() -> Self {
        let mut p = Phone::with_os(phone_config(), SimConfig::default(), Instant::now());
        let pushed: Rc<RefCell<BTreeSet<CallHandle>>> = Rc::default();
        let seen = pushed.clone();
        p.on_push = Some(Box::new(move |core, now, call_id| {
            seen.borrow_mut()
                .insert(core.handle_push(now, call_id.to_string(), None));
        }));
        World {
            p,
            invites: Vec::new(),
            pushed,
            n: 0,
            os: true,
        }
    }

    /// A push for `call_id`: through the OS and the app's hook, or (without an OS) the test
    /// wakes the app and calls the core itself.
    fn push(&mut self, call_id: String) {
        if self.os {
            self.p.push(&call_id);
            return;
        }
        self.p.wake();
        let h = self.p.core.handle_push(self.p.now, call_id, None);
        self.pushed.borrow_mut().insert(h);
        self.p.pump();
    }

    fn fresh(&mut self) -> PeerInvite {
        self.n += 1;
        PeerInvite {
            call_id: format!("call-{}", self.n),
            from_tag: format!("from-{}", self.n),
            branch: format!("z9hG4bKinv{}", self.n),
            cseq: 1,
        }
    }

    fn pick<T: Clone>(v: &[T], i: usize) -> Option<T> {
        (!v.is_empty()).then(|| v[i % v.len()].clone())
    }

    /// Live handles the application knows (Incoming seen, no Ended yet).
    fn live(&self) -> Vec<CallHandle> {
        let ended: BTreeSet<CallHandle> = self.p.ended().iter().map(|e| e.0).collect();
        self.p
            .incoming()
            .into_iter()
            .filter(|h| !ended.contains(h))
            .collect()
    }

    fn our_tag(&self, call_id: &str) -> Option<String> {
        self.p
            .sent
            .iter()
            .find_map(|(_, b)| match Message::parse(b) {
                Ok(Message::Response(r))
                    if r.status == 200
                        && r.headers.call_id() == Some(call_id)
                        && r.headers
                            .cseq()
                            .is_some_and(|c| c.method.as_str() == "INVITE") =>
                {
                    r.headers.to().and_then(|t| t.tag().map(str::to_string))
                }
                _ => None,
            })
    }

    fn media() -> std::net::SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    fn apply(&mut self, op: Op) {
        let awake = !self.p.suspended;
        let now = self.p.now;
        match op {
            Op::Suspend if self.os => {
                self.p.enter_background();
                self.p.suspend();
            }
            Op::Suspend => self.p.suspend(),
            Op::Wake => self.p.wake(),
            Op::Invite => {
                let inv = self.fresh();
                self.p.server_invite(&inv);
                self.invites.push(inv);
            }
            Op::PushThenInvite => {
                // The push wakes the app; the INVITE follows (held by the server until the
                // phone is registered again if need be).
                let inv = self.fresh();
                self.push(inv.call_id.clone());
                self.p.server_invite(&inv);
                self.invites.push(inv);
            }
            Op::PushAfter(i) => {
                if let Some(inv) = Self::pick(&self.invites, i) {
                    self.push(inv.call_id);
                }
            }
            Op::PushOnly => {
                let inv = self.fresh();
                self.push(inv.call_id);
            }
            Op::Cancel(i) => {
                if let Some(inv) = Self::pick(&self.invites, i) {
                    // A held INVITE is withdrawn at the server; a delivered one is cancelled.
                    let before = self.p.pending.len();
                    let id = format!("Call-ID: {}\r\n", inv.call_id);
                    self.p.pending.retain(|t| !t.contains(&id));
                    if self.p.pending.len() == before {
                        self.p.deliver(&inv.cancel());
                    }
                }
            }
            Op::PeerBye(i) => {
                if let Some(inv) = Self::pick(&self.invites, i) {
                    if let Some(tag) = self.our_tag(&inv.call_id) {
                        let branch = format!("z9hG4bKbye{}", self.n);
                        self.n += 1;
                        self.p.deliver(&inv.bye(Some(&tag), 2, &branch));
                    }
                }
            }
            Op::Ring(i) | Op::Answer(i) | Op::Reject(i) | Op::Hangup(i) | Op::Hold(i, _) => {
                if !awake {
                    return;
                }
                let Some(h) = Self::pick(&self.live(), i) else {
                    return;
                };
                let _ = match op {
                    Op::Ring(_) => self.p.core.ring(now, h),
                    Op::Answer(_) => self.p.core.answer(now, h, Self::media()),
                    Op::Reject(_) => self.p.core.reject(now, h, 486),
                    Op::Hold(_, on) => self.p.core.hold(now, h, on),
                    _ => self.p.core.hangup(now, h),
                };
                self.p.pump();
            }
            Op::LostInFlight(i, bye) => {
                if !awake {
                    return;
                }
                let Some(h) = Self::pick(&self.live(), i) else {
                    return;
                };
                // Whatever the server would answer is lost with it.
                self.p.suspended = true;
                let _ = if bye {
                    self.p.core.hangup(now, h)
                } else {
                    self.p.core.hold(now, h, true)
                };
                self.p.pump();
                self.p.held.clear();
                self.p.server_up = false;
                self.p.drop_flow();
                self.p.wake();
            }
            Op::FlowDrop => self.p.drop_flow(),
            Op::ServerRestart => {
                self.p.server_up = false;
                self.p.drop_flow();
            }
            Op::ServerBack => self.p.server_up = true,
            Op::Background(on) => {
                if awake {
                    self.p.core.set_background(now, on, PERIOD);
                    self.p.pump();
                }
            }
            Op::KeepAliveRun => {
                // The platform wakes the app for its keep-alive handler.
                self.p.wake();
                self.p.core.run_keepalive(self.p.now);
                self.p.pump();
            }
            Op::NetworkChange => {
                if awake {
                    let moved = self.p.core.handle_network_changed(now);
                    for h in moved {
                        let _ = self
                            .p
                            .core
                            .update_media(now, h, "127.0.0.2:4100".parse().unwrap());
                    }
                    self.p.pump();
                }
            }
            Op::Jump => {
                if let Some(at) = self.p.core.poll_timeout() {
                    let d = at.saturating_duration_since(self.p.now);
                    self.p.advance(d.min(Duration::from_secs(200)));
                }
            }
            Op::Wait(ms) => self.p.advance(Duration::from_millis(ms)),
            Op::LongWait => self.p.advance(PERIOD + Duration::from_secs(30)),
        }
    }

    /// Applies `ops`, then settles.
    fn run(mut self, ops: Vec<Op>) -> Self {
        for op in ops {
            self.apply(op);
        }
        self.settle();
        self
    }

    fn settle(&mut self) {
        self.p.server_up = true;
        self.p.wake();
        let now = self.p.now;
        self.p.core.set_background(now, false, PERIOD);
        self.p.pump();
        for _ in 0..4 {
            self.p.advance(Duration::from_secs(2));
            for h in self.live() {
                let _ = self.p.core.hangup(self.p.now, h);
            }
            self.p.pump();
            self.p.advance(Duration::from_secs(300));
        }
    }

    fn check(&self) -> Result<(), TestCaseError> {
        // Finals per INVITE (Call-ID, branch): distinct statuses.
        let mut finals: BTreeMap<InviteId, BTreeSet<Final>> = BTreeMap::new();
        let mut reached: BTreeSet<(String, String)> = BTreeSet::new();
        // An initial INVITE whose bytes reached the core: a final response must follow, unless
        // the ledger counts it abandoned. (Its 100 Trying is no witness: a UA that responds
        // within the Trying time sends none.)
        for b in &self.p.delivered {
            let Ok(Message::Request(q)) = Message::parse(b) else {
                continue;
            };
            let initial = q.method.as_str() == "INVITE"
                && q.headers.to().is_some_and(|t| t.tag().is_none())
                && q.headers.cseq().is_some_and(|c| c.seq == 1);
            if initial {
                reached.insert((
                    q.headers.call_id().unwrap_or_default().to_string(),
                    q.headers
                        .top_via()
                        .and_then(|v| v.branch().map(str::to_string))
                        .unwrap_or_default(),
                ));
            }
        }
        for (_, b) in &self.p.sent {
            let Ok(Message::Response(r)) = Message::parse(b) else {
                continue;
            };
            let r: Response = r;
            if !r
                .headers
                .cseq()
                .is_some_and(|c| c.method.as_str() == "INVITE" && c.seq == 1)
            {
                continue;
            }
            let key = (
                r.headers.call_id().unwrap_or_default().to_string(),
                r.headers
                    .top_via()
                    .and_then(|v| v.branch().map(str::to_string))
                    .unwrap_or_default(),
            );
            reached.insert(key.clone());
            if r.status >= 200 {
                let tag = r.headers.to().and_then(|t| t.tag().map(str::to_string));
                finals.entry(key).or_default().insert((r.status, tag));
            }
        }
        let stats = self.p.core.ledger_stats();
        let mut missing = 0u64;
        for k in &reached {
            let n = finals.get(k).map_or(0, BTreeSet::len);
            prop_assert!(n <= 1, "INVITE {:?} got {:?}", k, finals.get(k));
            if n == 0 {
                missing += 1;
            }
        }
        prop_assert_eq!(missing, stats.abandoned, "finals missing = abandoned");
        prop_assert_eq!(
            stats.initial,
            reached.len() as u64,
            "every INVITE reached the ledger"
        );
        // Ended: one per handle; every Incoming and every push ended.
        let ended = self.p.ended();
        let mut seen = BTreeSet::new();
        for (h, _, _) in &ended {
            prop_assert!(seen.insert(*h), "{:?} ended twice", h);
        }
        for h in self.p.incoming() {
            prop_assert!(seen.contains(&h), "Incoming {:?} never ended", h);
        }
        for h in self.pushed.borrow().iter() {
            prop_assert!(seen.contains(h), "pushed {:?} never ended", h);
        }
        // One terminal event per INVITE that reached us.
        prop_assert_eq!(stats.ended, stats.initial);
        prop_assert_eq!(stats.open, 0);
        prop_assert_eq!(stats.double_finals, 0);
        prop_assert_eq!(stats.double_ended, 0);
        prop_assert_eq!(stats.stray, 0);
        prop_assert_eq!(self.p.core.pushed_waiting(), 0);
        prop_assert_eq!(self.p.core.transaction_count(), 0, "no transaction left");
        prop_assert_eq!(self.p.core.call_count(), 0, "no call left");
        // Incoming events: at most one per handle.
        let inc = self.p.incoming();
        let distinct: BTreeSet<_> = inc.iter().collect();
        prop_assert_eq!(
            distinct.len(),
            inc.len(),
            "a second Incoming for one handle"
        );
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_invite_over_the_phone_ends_once(ops in proptest::collection::vec(op(), 1..40)) {
        let w = World::new().run(ops);
        if std::env::var("PHONE_STATS").is_ok() {
            let st = w.p.core.ledger_stats();
            let ans = w.p.ended().iter().filter(|e| e.1 == Some(200)).count();
            let fails = w.p.ended().iter().filter(|e| e.1.is_none()).count();
            eprintln!("STATS initial={} abandoned={} pushed={} answered={} status0={} registers={} connects={}",
                st.initial, st.abandoned, w.pushed.borrow().len(), ans, fails, w.p.registers, w.p.connects);
        }
        w.check()?;
    }

    /// The same schedules on a phone whose OS runs itself: wake on data, auto ring, wake
    /// windows, keep-alive handler runs in background, pushes through the app's hook.
    #[test]
    fn every_invite_over_a_phone_with_its_own_os_ends_once(ops in proptest::collection::vec(op(), 1..40)) {
        World::with_os().run(ops).check()?;
    }
}

#[test]
fn a_scripted_phone_day_passes_the_checks() {
    let mut w = World::new();
    for op in [
        Op::Invite,
        Op::Answer(0),
        Op::Suspend,
        Op::FlowDrop,
        Op::Invite,
        Op::Wait(5_000),
        Op::Wake,
        Op::Wait(100),
        Op::Answer(1),
        Op::PushThenInvite,
        Op::Answer(2),
        Op::ServerRestart,
        Op::Hangup(0),
        Op::Wait(3_000),
        Op::ServerBack,
        Op::Wait(3_000),
        Op::PushOnly,
        Op::Background(true),
        Op::KeepAliveRun,
        Op::NetworkChange,
        Op::Cancel(1),
        Op::PeerBye(0),
    ] {
        w.apply(op);
    }
    w.settle();
    w.check().unwrap();
    assert!(w.p.incoming().len() >= 3);
    assert!(w.p.core.ledger_stats().initial >= 3);
}

#[test]
fn wake_delivers_a_held_invite_and_rings_at_once() {
    let mut w = World::new();
    w.p.suspend();
    w.apply(Op::Invite);
    w.p.advance(Duration::from_secs(4));
    assert!(w.p.incoming().is_empty(), "nothing runs while suspended");
    w.p.wake();
    let h = *w.p.incoming().last().unwrap();
    w.p.core.ring(w.p.now, h).unwrap();
    w.p.pump();
    // Rung within the Trying time: the 180 is the first response, no 100 before it.
    assert_eq!(w.p.statuses("call-1"), vec![180]);
}
