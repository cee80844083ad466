//! Signaling benchmarks (criterion).
//!
//! Group `parse`: rsip alone on a real ~900-byte INVITE against our full receive path
//! (framer + `Message::parse`, our own readers throughout; rsip is the baseline). Both then read
//! the headers every request needs before it can be matched to a transaction or dialog (top
//! Via, From, To, Call-ID, CSeq), typed, so neither side skips work the other does.
//!
//! Group `call_cycle`: whole calls through the sans-IO core with no sockets.
//! `uas` is one `SignalingCore` answering a scripted peer (INVITE → 100/180/200 → ACK → BYE →
//! 200), the cost the issue names; `pair` is two cores calling each other (both sides' work).
//!
//! Group `timers`: `poll_timeout` and `handle_timeout` (at an instant when nothing is due, the
//! driver's common wake-up) of one core holding 1, 100 or 1000 live calls (ringing, each with
//! its INVITE server transaction and ring timeout), in the same run with the deadline queues
//! (`queue`) and with the scan of every table they replaced (`scan`, via `set_scan_timers`).
//! `touch_poll` first feeds one in-dialog request to one call, then polls: the queue's
//! re-arming cost included.
//!
//! Group `keepalive`: the core's part of one RFC 5626 CRLF keep-alive round on a registered
//! control flow (a registrar played by hand): the timer fires (`handle_timeout`),
//! the ping is taken (`poll_output`), the pong is fed (`handle_received` of `\r\n`) and the
//! next deadline read (`poll_timeout`). Issue 12 asks for < 20 µs per ping for the whole
//! process; `scripts/idle_wakeups.sh --keepalive 0.02` measures that side.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use wakeline::signaling::config::Config;
use wakeline::signaling::core::testkit::Pair;
use wakeline::signaling::core::{CallHandle, Event, FlowId, Output, SignalingCore};
use wakeline::signaling::framing::{Frame, Framer, FramerLimits};
use wakeline::signaling::message::{testdata, Message};

fn parse(c: &mut Criterion) {
    let bytes = testdata::INVITE;
    let mut group = c.benchmark_group("parse");
    group.bench_function("rsip_bare", |b| {
        b.iter(|| {
            use rsip::prelude::*;
            let m = rsip::SipMessage::try_from(black_box(bytes)).expect("test INVITE parses");
            let via = m
                .via_header()
                .and_then(|v| v.typed())
                .map(|v| v.branch().cloned());
            let from = m
                .from_header()
                .and_then(|h| h.typed())
                .map(|h| h.tag().cloned());
            let to = m
                .to_header()
                .and_then(|h| h.typed())
                .map(|h| h.tag().cloned());
            let call_id = m.call_id_header().map(|h| h.value().len());
            let cseq = m.cseq_header().and_then(|h| h.typed()).map(|c| c.seq);
            black_box((
                via.is_ok(),
                from.is_ok(),
                to.is_ok(),
                call_id.is_ok(),
                cseq.ok(),
            ))
        })
    });
    let now = Instant::now();
    group.bench_function("framing_parse", |b| {
        b.iter(|| {
            let mut framer = Framer::new(FramerLimits::default());
            framer.push(black_box(bytes), now);
            let m = match framer.poll() {
                Some(Ok(Frame::Message(m))) => Message::parse(&m).expect("test INVITE parses"),
                other => panic!("no frame: {other:?}"),
            };
            let h = m.headers();
            let read = (h.top_via(), h.from(), h.to(), h.call_id(), h.cseq());
            assert!(read.0.is_some() && read.1.is_some() && read.2.is_some());
            assert!(read.3.is_some() && read.4.is_some());
            black_box(&read);
        })
    });
    group.finish();
}

/// A scripted UAC peer on one accepted flow: builds each cycle's requests with fresh ids.
struct ScriptedPeer {
    core: SignalingCore,
    flow: FlowId,
    now: Instant,
    n: u64,
    media: SocketAddr,
}

impl ScriptedPeer {
    fn new(origin: Instant) -> Self {
        let mut core = SignalingCore::new(Config::default());
        let local: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let flow = core.handle_flow_accepted(origin, local, remote);
        ScriptedPeer {
            core,
            flow,
            now: origin,
            n: 0,
            media: "127.0.0.1:4000".parse().unwrap(),
        }
    }

    fn request(&self, method: &str, branch: &str, to_tag: &str, cseq: &str, sdp: &str) -> Vec<u8> {
        let n = self.n;
        format!(
            "{method} sip:wakeline@127.0.0.1:5070;transport=tcp SIP/2.0\r\n\
             Via: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bK-{n}-{branch}\r\n\
             From: <sip:peer@127.0.0.1:40000>;tag=p{n}\r\n\
             To: <sip:wakeline@127.0.0.1:5070>{to_tag}\r\n\
             Call-ID: cycle-{n}@bench\r\nCSeq: {cseq}\r\n\
             Contact: <sip:peer@127.0.0.1:40000;transport=tcp>\r\nMax-Forwards: 70\r\n{sdp}"
        )
        .into_bytes()
    }

    /// Drains outputs; returns the Incoming call and the To tag of a 200 OK to INVITE, if seen.
    fn drain(&mut self) -> (Option<CallHandle>, Option<String>) {
        let (mut incoming, mut tag) = (None, None);
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Event(Event::Incoming { call, .. }) => incoming = Some(call),
                Output::Transmit { bytes, .. } if bytes.starts_with(b"SIP/2.0 200") => {
                    let text = String::from_utf8_lossy(&bytes);
                    if text.contains("INVITE\r\n") {
                        tag = text
                            .lines()
                            .find(|l| l.starts_with("To:"))
                            .and_then(|l| l.split(";tag=").nth(1))
                            .map(|t| t.trim().to_string());
                    }
                }
                other => drop(black_box(other)),
            }
        }
        (incoming, tag)
    }

    fn cycle(&mut self) {
        self.n += 1;
        self.now += Duration::from_millis(40);
        if self.core.poll_timeout().is_some_and(|t| t <= self.now) {
            self.core.handle_timeout(self.now);
        }
        let body = "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                    m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let sdp = format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let invite = self.request("INVITE", "inv", "", "1 INVITE", &sdp);
        self.core.handle_received(self.now, self.flow, &invite);
        let (call, _) = self.drain();
        let call = call.expect("incoming call");
        self.core.ring(self.now, call).expect("ring");
        self.core
            .answer(self.now, call, self.media)
            .expect("answer");
        let (_, tag) = self.drain();
        let to_tag = format!(";tag={}", tag.expect("200 OK with a To tag"));
        let empty = "Content-Length: 0\r\n\r\n";
        let ack = self.request("ACK", "ack", &to_tag, "1 ACK", empty);
        self.core.handle_received(self.now, self.flow, &ack);
        self.drain();
        let bye = self.request("BYE", "bye", &to_tag, "2 BYE", empty);
        self.core.handle_received(self.now, self.flow, &bye);
        self.drain();
    }
}

fn call_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("call_cycle");
    group.throughput(criterion::Throughput::Elements(1));
    let mut peer = ScriptedPeer::new(Instant::now());
    group.bench_function("uas", |b| b.iter(|| peer.cycle()));
    let mut pair = Pair::new(Config::default(), Config::default(), Instant::now());
    group.bench_function("pair", |b| b.iter(|| assert!(pair.call_cycle())));
    group.finish();
}

/// A core with `n` ringing incoming calls on one accepted flow; returns it with the flow and
/// a clock origin.
fn core_with_calls(n: usize) -> (SignalingCore, FlowId, Instant) {
    let origin = Instant::now();
    let mut core = SignalingCore::new(Config {
        busy_policy: wakeline::BusyPolicy::Allow,
        ..Config::default()
    });
    let local: SocketAddr = "127.0.0.1:5070".parse().unwrap();
    let remote: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let flow = core.handle_flow_accepted(origin, local, remote);
    for i in 0..n {
        core.handle_received(origin, flow, &timer_request("INVITE", i, 1));
        while let Some(out) = core.poll_output() {
            if let Output::Event(Event::Incoming { call, .. }) = out {
                core.ring(origin, call).expect("ring");
            }
        }
    }
    while core.poll_output().is_some() {}
    assert_eq!(core.call_count(), n, "every INVITE is a live call");
    (core, flow, origin)
}

/// A request of call `i` with CSeq `cseq` (INVITE, or an in-dialog-looking OPTIONS).
fn timer_request(method: &str, i: usize, cseq: u32) -> Vec<u8> {
    format!(
        "{method} sip:wakeline@127.0.0.1:5070;transport=tcp SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bK-t{i}-{cseq}\r\n\
         From: <sip:peer@127.0.0.1:40000>;tag=p{i}\r\n\
         To: <sip:wakeline@127.0.0.1:5070>\r\n\
         Call-ID: timers-{i}@bench\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:peer@127.0.0.1:40000;transport=tcp>\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn timers(c: &mut Criterion) {
    let mut group = c.benchmark_group("timers");
    for n in [1usize, 100, 1000] {
        for (mode, scan) in [("scan", true), ("queue", false)] {
            let (mut core, flow, origin) = core_with_calls(n);
            core.set_scan_timers(scan);
            let next = core.poll_timeout().expect("ring timeouts are armed");
            assert!(next > origin);
            group.bench_function(format!("poll_timeout/{mode}/{n}"), |b| {
                b.iter(|| black_box(core.poll_timeout()))
            });
            group.bench_function(format!("handle_timeout/{mode}/{n}"), |b| {
                b.iter(|| core.handle_timeout(black_box(origin)))
            });
            let mut cseq = 1u32;
            group.bench_function(format!("touch_poll/{mode}/{n}"), |b| {
                b.iter(|| {
                    cseq += 1;
                    let req = timer_request("OPTIONS", n / 2, cseq);
                    core.handle_received(origin, flow, &req);
                    while let Some(out) = core.poll_output() {
                        drop(black_box(out));
                    }
                    black_box(core.poll_timeout())
                })
            });
        }
    }
    group.finish();
}

/// A core registered over TCP at a registrar played here by hand (REGISTER → 200 with the
/// Contact and `expires` echoed); returns it with its control flow.
fn registered_core(origin: Instant, keepalive: Duration) -> (SignalingCore, FlowId) {
    use wakeline::signaling::config::Account;
    use wakeline::signaling::message::{HeaderName, Response, Uri};
    let mut core = SignalingCore::new(Config {
        account: Some(Account {
            registrar: Uri::parse("sip:127.0.0.1:5060;transport=tcp").expect("uri"),
            user: "alice".into(),
            domain: "127.0.0.1".into(),
            password: None,
            auth_user: None,
            proxy: None,
        }),
        keepalive_interval: Some(keepalive),
        // No refresh within the bench's virtual hours: only the keep-alive runs.
        register_expires: 1_000_000_000,
        ..Config::default()
    });
    core.register(origin).expect("register");
    let mut flow = None;
    let mut registered = false;
    for _ in 0..10 {
        let mut replies = Vec::new();
        while let Some(out) = core.poll_output() {
            match out {
                Output::Connect { flow: f, .. } => flow = Some(f),
                Output::Transmit { bytes, .. } => {
                    let Ok(Message::Request(req)) = Message::parse(&bytes) else {
                        continue;
                    };
                    let mut ok = Response::for_request(&req, 200);
                    if let Some(mut to) = req.headers.to().cloned() {
                        to.params.set("tag", Some("reg"));
                        ok.headers.set(HeaderName::To, to.to_string());
                    }
                    let contact = req.headers.get(&HeaderName::Contact).unwrap_or_default();
                    let expires = req.headers.expires().unwrap_or(600);
                    ok.headers
                        .push(HeaderName::Contact, format!("{contact};expires={expires}"));
                    replies.push(Message::Response(ok).to_bytes());
                }
                Output::Event(Event::Registered { .. }) => registered = true,
                _ => {}
            }
        }
        let f = flow.expect("a connect for the control flow");
        if replies.is_empty() && !registered {
            let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
            let remote: SocketAddr = "127.0.0.1:5060".parse().unwrap();
            core.handle_flow_up(origin, f, local, remote);
        }
        for r in replies {
            core.handle_received(origin, f, &r);
        }
        if registered {
            return (core, f);
        }
    }
    panic!("not registered");
}

fn keepalive(c: &mut Criterion) {
    let (mut core, flow) = registered_core(Instant::now(), Duration::from_millis(20));
    let mut group = c.benchmark_group("keepalive");
    group.bench_function("ping_pong_round", |b| {
        b.iter(|| {
            let at = core.poll_timeout().expect("the keep-alive timer");
            core.handle_timeout(at);
            let mut pinged = false;
            while let Some(out) = core.poll_output() {
                pinged |= matches!(&out, Output::Transmit { bytes, .. } if bytes == b"\r\n\r\n");
            }
            assert!(pinged, "a ping at every keep-alive deadline");
            core.handle_received(at, flow, b"\r\n");
            while let Some(out) = core.poll_output() {
                drop(black_box(out));
            }
            black_box(core.poll_timeout())
        })
    });
    group.finish();
}

criterion_group!(benches, parse, call_cycle, timers, keepalive);
criterion_main!(benches);
