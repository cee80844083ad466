//! Drop is shutdown (issue 11 item 4): two real user agents over loopback TCP.
//!
//! Dropping the last `UserAgent` and `Call` handle hangs up every call the way its state asks
//! for (BYE, CANCEL, or a final response), un-registers, and the `Events` stream delivers every
//! `MediaReport` and exactly one `Ended` per call before it ends. The property test drives any
//! sequence of API calls and drops and checks that promise on both ends, and that the far end
//! always saw a SIP ending (never a lost flow).

mod peers;

use peers::inproc::InProcess;
use peers::registrar::Registrar;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;
use wakeline::media::audio::{AudioSink, AudioSource};
use wakeline::signaling::message::Method;
use wakeline::{
    BusyPolicy, Call, CallHandle, CallOutcome, CallState, Config, Event, Events, MediaOptions,
};
use wakeline::{UserAgent, UserAgentBuilder};

/// The longest any one step may take (a lost event shows up as this timeout).
const STEP: Duration = Duration::from_secs(5);

fn quiet() -> MediaOptions {
    MediaOptions {
        source: AudioSource::Silence,
        sink: AudioSink::Null,
        ..MediaOptions::default()
    }
}

fn builder(config: Config) -> UserAgentBuilder {
    UserAgent::builder(config)
        .media(quiet())
        .listen("127.0.0.1:0".parse().expect("addr"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One user agent as the application sees it: its handle (until dropped), the calls it holds,
/// its stream and everything the stream delivered.
struct Side {
    ua: Option<UserAgent>,
    calls: Vec<Call>,
    events: Events,
    log: Vec<Event>,
    /// Every call the application was told about: returned by `call` or `Incoming`.
    told: Vec<CallHandle>,
    /// The stream ended (`None`).
    ended: bool,
}

impl Side {
    async fn start() -> Side {
        // Several calls at once: every INVITE reaches the application.
        let config = Config {
            busy_policy: BusyPolicy::Allow,
            ..Config::default()
        };
        // The TCP port the OS picked may be taken for UDP (the listener wants both): try again,
        // a bounded number of times.
        let mut tries = 0;
        let (ua, events) = loop {
            match builder(config.clone()).start().await {
                Ok(started) => break started,
                Err(e) if tries < 5 => {
                    eprintln!("start: {e}; trying another port");
                    tries += 1;
                }
                Err(e) => panic!("start: {e}"),
            }
        };
        Side {
            ua: Some(ua),
            calls: Vec::new(),
            events,
            log: Vec::new(),
            told: Vec::new(),
            ended: false,
        }
    }

    fn target(&self) -> Option<String> {
        let addr = self.ua.as_ref()?.local_addr()?;
        Some(format!("sip:peer@{addr};transport=tcp"))
    }

    fn note(&mut self, e: Event) {
        if let Event::Incoming { call, .. } = &e {
            self.told.push(*call);
            if let Some(ua) = &self.ua {
                self.calls.push(ua.call_handle(*call));
            }
        }
        self.log.push(e);
    }

    /// Takes in what the stream already has.
    fn drain(&mut self) {
        while let Some(e) = self.events.try_next() {
            self.note(e);
        }
    }

    /// Reads the stream until an event matches `pred` (`true`) or `STEP` passes.
    async fn until(&mut self, pred: impl Fn(&Event) -> bool) -> bool {
        let found = tokio::time::timeout(STEP, async {
            while let Some(e) = self.events.next().await {
                let hit = pred(&e);
                self.note(e);
                if hit {
                    return true;
                }
            }
            self.ended = true;
            false
        })
        .await;
        found.unwrap_or(false)
    }

    /// Reads the stream to its end; `false` if it did not end within `limit`.
    async fn read_to_end(&mut self, limit: Duration) -> bool {
        let events = &mut self.events;
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(limit, async {
            while let Some(e) = events.next().await {
                rest.push(e);
            }
        })
        .await
        .is_ok();
        for e in rest {
            self.note(e);
        }
        self.ended |= ended;
        self.ended
    }

    fn call(&self, i: usize) -> Option<Call> {
        (!self.calls.is_empty()).then(|| self.calls[i % self.calls.len()].clone())
    }

    fn ends(&self) -> BTreeMap<CallHandle, Vec<(CallOutcome, String)>> {
        ends(&self.log)
    }

    /// Waits for the first `Ended` and returns it (outcome, reason).
    async fn first_end(&mut self) -> (CallOutcome, String) {
        assert!(self.until(|e| matches!(e, Event::Ended { .. })).await);
        let first = self.ends().into_values().flatten().next();
        first.expect("an Ended")
    }

    /// The application lets go of every handle; the stream must end and keep the promise.
    async fn let_go(&mut self, name: &str) {
        self.calls.clear();
        self.ua = None;
        assert!(self.read_to_end(STEP).await, "{name}'s stream did not end");
        check(name, self).unwrap();
    }
}

/// Each call's `Ended` events in `log`: outcome and reason.
fn ends(log: &[Event]) -> BTreeMap<CallHandle, Vec<(CallOutcome, String)>> {
    let mut ends: BTreeMap<CallHandle, Vec<(CallOutcome, String)>> = BTreeMap::new();
    for e in log {
        if let Event::Ended {
            call,
            outcome,
            reason,
            ..
        } = e
        {
            ends.entry(*call)
                .or_default()
                .push((*outcome, reason.clone()));
        }
    }
    ends
}

/// Checks the promise on one side whose stream has ended: one `Ended` per call it was told
/// about (none for others), each after the call's `MediaReport` when it has one, and no call
/// ended by a lost flow or a shutdown that gave up.
fn check(name: &str, side: &Side) -> Result<(), String> {
    if !side.ended {
        return Err(format!(
            "{name}: the stream did not end; log {:?}",
            side.log
        ));
    }
    let ends = side.ends();
    for call in &side.told {
        match ends.get(call).map(Vec::len) {
            Some(1) => {}
            n => {
                return Err(format!(
                    "{name}: {call:?} ended {n:?} times; log {:?}",
                    side.log
                ))
            }
        }
    }
    for (call, list) in &ends {
        if !side.told.contains(call) {
            return Err(format!("{name}: Ended for {call:?}, never told: {list:?}"));
        }
        if let Some((outcome, reason)) = list.iter().find(|(o, _)| *o == CallOutcome::Failed) {
            return Err(format!(
                "{name}: {call:?} ended {outcome:?} ({reason}); log {:?}",
                side.log
            ));
        }
        let at = |pred: &dyn Fn(&Event) -> bool| side.log.iter().position(pred);
        let report = at(&|e| matches!(e, Event::MediaReport { call: c, .. } if c == call));
        let ended = at(&|e| matches!(e, Event::Ended { call: c, .. } if c == call));
        if let (Some(r), Some(e)) = (report, ended) {
            if r > e {
                return Err(format!("{name}: {call:?}'s MediaReport came after Ended"));
            }
        }
    }
    Ok(())
}

fn connected(e: &Event, call: CallHandle) -> bool {
    matches!(e, Event::State { call: c, state: CallState::Connected, .. } if *c == call)
}

fn media_report(e: &Event) -> bool {
    matches!(e, Event::MediaReport { .. })
}

#[test]
fn dropping_every_handle_mid_call_sends_bye_and_ends_the_stream_properly() {
    runtime().block_on(async {
        let (mut alice, mut bob) = (Side::start().await, Side::start().await);
        let target = bob.target().expect("bob listens");
        let call = alice
            .ua
            .as_ref()
            .expect("ua")
            .call(&target)
            .await
            .expect("call");
        alice.told.push(call.handle());
        assert!(bob.until(|e| matches!(e, Event::Incoming { .. })).await);
        let answered = bob.call(0).expect("incoming");
        answered.answer().await.expect("answer");
        assert!(alice.until(|e| connected(e, call.handle())).await);
        assert!(bob.until(|e| connected(e, answered.handle())).await);

        // The application drops everything it holds of Alice's user agent.
        drop(call);
        alice.ua = None;
        assert!(alice.read_to_end(STEP).await, "alice's stream did not end");
        assert!(alice.log.iter().any(media_report), "{:?}", alice.log);
        check("alice", &alice).unwrap();
        let ends = alice.ends();
        assert_eq!(
            ends.values().next().map(|v| v[0].0),
            Some(CallOutcome::Answered)
        );

        // Bob heard a BYE, not a lost flow.
        let bye = bob.first_end().await;
        assert_eq!(bye.0, CallOutcome::Answered, "{bye:?}");
        drop(answered);
        bob.let_go("bob").await;
    });
}

#[test]
fn dropping_an_unanswered_call_cancels_it_and_declines_the_incoming_one() {
    runtime().block_on(async {
        let (mut alice, mut bob) = (Side::start().await, Side::start().await);
        let (mut carol, target_bob) = (Side::start().await, bob.target().expect("bob"));
        let target_carol = carol.target().expect("carol");
        // Alice calls Bob and Carol; neither answers. Alice's drop CANCELs hers to Bob;
        // Carol's drop declines hers from Alice.
        let ua = alice.ua.clone().expect("ua");
        let to_bob = ua.call(&target_bob).await.expect("call bob");
        let to_carol = ua.call(&target_carol).await.expect("call carol");
        alice.told.extend([to_bob.handle(), to_carol.handle()]);
        assert!(bob.until(|e| matches!(e, Event::Incoming { .. })).await);
        assert!(carol.until(|e| matches!(e, Event::Incoming { .. })).await);

        carol.let_go("carol").await;
        let ended =
            |e: &Event| matches!(e, Event::Ended { call, .. } if *call == to_carol.handle());
        assert!(alice.until(ended).await, "{:?}", alice.log);
        let alice_ends = alice.ends();
        assert_eq!(alice_ends[&to_carol.handle()][0].0, CallOutcome::Rejected);

        drop((ua, to_bob, to_carol));
        alice.ua = None;
        assert!(alice.read_to_end(STEP).await);
        check("alice", &alice).unwrap();
        let missed = bob.first_end().await;
        assert_eq!(missed.0, CallOutcome::Missed, "{missed:?}");
        bob.let_go("bob").await;
    });
}

#[test]
fn dropping_a_registered_user_agent_unregisters() {
    drop_and_expect_unregister(true);
}

#[test]
fn dropping_while_registering_unregisters_once_the_registration_completes() {
    drop_and_expect_unregister(false);
}

/// Registers (waiting for `Registered` when `settled`, else only for the flow: the REGISTER is
/// then on its way), drops the only handle, and expects a REGISTER with expires 0 and
/// `Unregistered` before the stream ends.
fn drop_and_expect_unregister(settled: bool) {
    let reg = Registrar::start();
    runtime().block_on(async {
        let (ua, mut events) = UserAgent::builder(InProcess::config(&reg))
            .media(quiet())
            .start()
            .await
            .expect("start");
        ua.register().await.expect("register");
        let mut log = Vec::new();
        let reached = tokio::time::timeout(STEP, async {
            while let Some(e) = events.next().await {
                let hit = match settled {
                    true => matches!(e, Event::Registered { .. }),
                    false => matches!(e, Event::FlowUp { .. }),
                };
                log.push(e);
                if hit {
                    return true;
                }
            }
            false
        });
        assert!(reached.await.unwrap_or(false), "{log:?}");
        drop(ua);
        let drained = tokio::time::timeout(STEP, async {
            while let Some(e) = events.next().await {
                log.push(e);
            }
        });
        assert!(drained.await.is_ok(), "the stream did not end: {log:?}");
        let unregistered = log.iter().position(|e| matches!(e, Event::Unregistered));
        let registered = log
            .iter()
            .position(|e| matches!(e, Event::Registered { .. }));
        // A REGISTER answered after the drop is followed by its removal without `Registered`.
        assert!(
            unregistered.is_some() && unregistered > registered,
            "{log:?}"
        );
        assert!(!settled || registered.is_some(), "{log:?}");
        let unregister = reg.wait_for(STEP, |r| {
            r.request(&Method::Register)
                .is_some_and(|req| req.headers.expires() == Some(0))
        });
        assert!(
            unregister.is_some(),
            "no REGISTER with expires 0 after the drop"
        );
    });
}

#[test]
fn a_far_end_that_ignores_the_bye_is_given_up_on_after_the_grace() {
    let grace = Duration::from_millis(300);
    runtime().block_on(async {
        let (ua, mut events) = builder(Config::default())
            .shutdown_grace(grace)
            .start()
            .await
            .expect("start");
        let addr = ua.local_addr().expect("listens");
        // A bare SIP peer: INVITE, 200, ACK; then it reads nothing more (our BYE goes unanswered).
        let (quit, parked) = std::sync::mpsc::channel::<()>();
        let peer = std::thread::spawn(move || {
            let mut wire = peers::rawsip::Wire::tcp(addr);
            wire.answered(addr, 1, 1);
            let _ = parked.recv_timeout(4 * STEP);
        });
        let mut log = Vec::new();
        let call = tokio::time::timeout(STEP, async {
            while let Some(e) = events.next().await {
                log.push(e.clone());
                if let Event::Incoming { call, .. } = e {
                    return Some(call);
                }
            }
            None
        });
        let call = call.await.ok().flatten().expect("incoming");
        ua.call_handle(call).answer().await.expect("answer");
        let up = tokio::time::timeout(STEP, async {
            while let Some(e) = events.next().await {
                let hit = connected(&e, call);
                log.push(e);
                if hit {
                    return true;
                }
            }
            false
        });
        assert!(up.await.unwrap_or(false), "{log:?}");

        let dropped = std::time::Instant::now();
        drop(ua);
        let drained = tokio::time::timeout(STEP, async {
            while let Some(e) = events.next().await {
                log.push(e);
            }
        });
        assert!(drained.await.is_ok(), "the stream did not end: {log:?}");
        let took = dropped.elapsed();
        let _ = quit.send(());
        let _ = peer.join();
        // It waited the grace (no longer than the grace, the report limit and the closing of
        // the flows), and still ended the call once, after its media report.
        assert!(took >= grace, "gave up after {took:?}");
        assert!(took < grace + Duration::from_millis(2500), "took {took:?}");
        let ends = ends(&log);
        assert_eq!(ends[&call].len(), 1, "{log:?}");
        let (outcome, reason) = &ends[&call][0];
        assert_eq!(*outcome, CallOutcome::Failed);
        assert!(reason.contains("shut down"), "{reason}");
        let report = log.iter().position(media_report);
        let ended = log.iter().position(|e| matches!(e, Event::Ended { .. }));
        assert!(report.is_some() && report < ended, "{log:?}");
    });
}

/// What the documentation promises when the runtime goes away instead: nothing more runs (no
/// BYE), but the stream ends instead of hanging, and the handles say `Stopped`.
#[test]
fn a_dropped_runtime_ends_the_stream_and_stops_the_handles() {
    let (alice_rt, bob_rt) = (runtime(), runtime());
    let mut bob = bob_rt.block_on(Side::start());
    let target = bob.target().expect("bob listens");
    let (alice, mut events, call) = alice_rt.block_on(async {
        let (ua, events) = builder(Config::default()).start().await.expect("start");
        let call = ua.call(&target).await.expect("call");
        (ua, events, call)
    });
    bob_rt.block_on(async {
        assert!(bob.until(|e| matches!(e, Event::Incoming { .. })).await);
    });
    drop(alice_rt);
    bob_rt.block_on(async {
        let ended = tokio::time::timeout(STEP, async { while events.next().await.is_some() {} });
        assert!(
            ended.await.is_ok(),
            "the stream hangs after its runtime is gone"
        );
        assert!(matches!(call.hangup().await, Err(wakeline::Error::Stopped)));
        assert!(matches!(
            alice.call(&target).await,
            Err(wakeline::Error::Stopped)
        ));
    });
}

/// One step of the application.
#[derive(Debug, Clone)]
enum Op {
    /// Side `0`/`1` calls the other.
    Call(usize),
    Answer(usize, usize),
    Reject(usize, usize),
    Hangup(usize, usize),
    Hold(usize, usize, bool),
    Dtmf(usize, usize),
    /// Drops the application's handle on one of that side's calls.
    DropCall(usize, usize),
    /// Drops that side's `UserAgent` handle (its calls' handles stay).
    DropUa(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let side = 0..2usize;
    let i = 0..4usize;
    prop_oneof![
        3 => side.clone().prop_map(Op::Call),
        3 => (side.clone(), i.clone()).prop_map(|(s, i)| Op::Answer(s, i)),
        1 => (side.clone(), i.clone()).prop_map(|(s, i)| Op::Reject(s, i)),
        1 => (side.clone(), i.clone()).prop_map(|(s, i)| Op::Hangup(s, i)),
        1 => (side.clone(), i.clone(), any::<bool>()).prop_map(|(s, i, on)| Op::Hold(s, i, on)),
        1 => (side.clone(), i.clone()).prop_map(|(s, i)| Op::Dtmf(s, i)),
        1 => (side.clone(), i.clone()).prop_map(|(s, i)| Op::DropCall(s, i)),
        1 => side.prop_map(Op::DropUa),
    ]
}

/// Runs one schedule; `Err` says which promise broke.
async fn run(ops: Vec<Op>) -> Result<(), String> {
    let mut sides = [Side::start().await, Side::start().await];
    for op in ops {
        match op {
            Op::Call(s) => {
                let Some(target) = sides[1 - s].target() else {
                    continue;
                };
                let Some(ua) = sides[s].ua.clone() else {
                    continue;
                };
                let call = ua.call(&target).await.map_err(|e| format!("call: {e}"))?;
                sides[s].told.push(call.handle());
                sides[s].calls.push(call);
                let incoming = sides[1 - s]
                    .until(|e| matches!(e, Event::Incoming { .. }))
                    .await;
                if !incoming {
                    return Err(format!("no Incoming for {op:?}"));
                }
            }
            Op::DropCall(s, i) => {
                if !sides[s].calls.is_empty() {
                    let n = sides[s].calls.len();
                    sides[s].calls.remove(i % n);
                }
            }
            Op::DropUa(s) => sides[s].ua = None,
            Op::Answer(s, i)
            | Op::Reject(s, i)
            | Op::Hangup(s, i)
            | Op::Hold(s, i, _)
            | Op::Dtmf(s, i) => {
                let Some(call) = sides[s].call(i) else {
                    continue;
                };
                // Refusals (wrong state, call over, user agent stopped) are fine here.
                let _ = tokio::time::timeout(STEP, async {
                    match op {
                        Op::Answer(..) => call.answer().await,
                        Op::Reject(..) => call.reject(486).await,
                        Op::Hangup(..) => call.hangup().await,
                        Op::Hold(_, _, on) => {
                            call.hold(if on {
                                wakeline::Hold::On
                            } else {
                                wakeline::Hold::Off
                            })
                            .await
                        }
                        _ => call.send_dtmf("1").await,
                    }
                })
                .await
                .map_err(|_| format!("{op:?} did not return within {STEP:?}"))?;
            }
        }
        for side in &mut sides {
            side.drain();
        }
    }
    // The application lets go of everything; both streams must end with every call ended.
    for side in &mut sides {
        side.calls.clear();
        side.ua = None;
    }
    let [a, b] = &mut sides;
    let (ea, eb) = tokio::join!(a.read_to_end(2 * STEP), b.read_to_end(2 * STEP));
    if !(ea && eb) {
        return Err(format!("streams ended: {ea} {eb}"));
    }
    check("a", &sides[0])?;
    check("b", &sides[1])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_call_the_app_was_told_about_ends_once_whatever_is_dropped(
        ops in proptest::collection::vec(op(), 1..10)
    ) {
        let result = runtime().block_on(run(ops));
        prop_assert!(result.is_ok(), "{}", result.err().unwrap_or_default());
    }
}
