//! Scenario tests of the whole core: two cores talking over a virtual network with a virtual clock.

/// The origin of the virtual clock (tests only; every later time is origin + offset).
fn origin() -> std::time::Instant {
    std::time::Instant::now()
}

use super::testkit::{ended_of as ended, Pair};
use super::*;

fn status_lines(sent: &[Vec<u8>]) -> Vec<String> {
    sent.iter()
        .map(|m| {
            let s = String::from_utf8_lossy(m);
            s.lines().next().unwrap_or_default().to_string()
        })
        .collect()
}

#[test]
fn full_call_invite_ring_answer_ack_bye() {
    let mut p = Pair::new(Config::default(), Config::default(), origin());
    let call = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
    p.drive();
    let inc = p.b_incoming().expect("incoming");
    p.b.ring(p.now, inc).unwrap();
    p.drive();
    assert!(p.a_events.iter().any(
        |e| matches!(e, Event::State { call: c, state: CallState::Ringing, .. } if *c == call)
    ));
    p.b.answer(p.now, inc, Pair::media(5000)).unwrap();
    p.drive();
    assert!(p.a_events.iter().any(|e| matches!(
        e,
        Event::State {
            state: CallState::Connected,
            ..
        }
    )));
    assert!(p.b_events.iter().any(|e| matches!(
        e,
        Event::State {
            state: CallState::Connected,
            ..
        }
    )));
    assert!(p.a_events.iter().any(|e| matches!(e, Event::Media { .. })));
    assert!(p.b_events.iter().any(|e| matches!(e, Event::Media { .. })));
    p.a.hangup(p.now, call).unwrap();
    p.drive();
    assert_eq!(ended(&p.a_events), vec![(200, CallOutcome::Answered)]);
    assert_eq!(ended(&p.b_events), vec![(200, CallOutcome::Answered)]);
    let a = status_lines(&p.a_sent);
    let b = status_lines(&p.b_sent);
    assert!(a[0].starts_with("INVITE "), "{a:?}");
    assert!(a.iter().any(|l| l.starts_with("ACK ")));
    assert!(a.iter().any(|l| l.starts_with("BYE ")));
    assert_eq!(
        b,
        // Rung at once: no 100 Trying (RFC 3261 §17.2.1).
        vec!["SIP/2.0 180 Ringing", "SIP/2.0 200 OK", "SIP/2.0 200 OK"]
    );
    assert_eq!(p.b.ledger_open(), 0);
    p.advance(Duration::from_secs(100));
    assert_eq!(p.a.call_count() + p.b.call_count(), 0);
    assert_eq!(p.a.transaction_count() + p.b.transaction_count(), 0);
}

fn connected_pair() -> (Pair, CallHandle, CallHandle) {
    let mut p = Pair::new(Config::default(), Config::default(), origin());
    let call = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
    p.drive();
    let inc = p.b_incoming().unwrap();
    p.b.answer(p.now, inc, Pair::media(5000)).unwrap();
    p.drive();
    (p, call, inc)
}

#[test]
fn call_cycles_leave_nothing_behind() {
    let mut p = Pair::new(Config::default(), Config::default(), origin());
    for _ in 0..20 {
        assert!(p.call_cycle());
    }
    assert_eq!(p.a.call_count() + p.b.call_count(), 0);
    assert_eq!(p.a.transaction_count() + p.b.transaction_count(), 0);
    assert_eq!(p.b.ledger_stats().closed, 20);
    assert_eq!(p.a.dialog_count() + p.b.dialog_count(), 0);
    assert!(p.b.merge_index.is_empty() && p.a.uac_calls.is_empty());
}

#[test]
fn cancel_while_ringing_ends_cancelled_for_us_and_missed_for_the_callee() {
    let mut p = Pair::new(Config::default(), Config::default(), origin());
    let call = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
    p.drive();
    let inc = p.b_incoming().unwrap();
    p.b.ring(p.now, inc).unwrap();
    p.drive();
    p.a.hangup(p.now, call).unwrap();
    p.drive();
    assert_eq!(ended(&p.a_events), vec![(487, CallOutcome::Cancelled)]);
    assert_eq!(ended(&p.b_events), vec![(487, CallOutcome::Missed)]);
    let b = status_lines(&p.b_sent);
    assert!(
        b.contains(&"SIP/2.0 487 Request Terminated".to_string()),
        "{b:?}"
    );
    assert_eq!(p.b.ledger_open(), 0);
    assert_eq!(
        p.b.answer(p.now, inc, Pair::media(1)),
        Err(CoreError::NoSuchCall)
    );
}

#[test]
fn hangup_before_provisional_waits_for_1xx() {
    let mut p = Pair::new(Config::default(), Config::default(), origin());
    p.b.handle_timeout(p.now); // nothing due
    let call = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
    // Connect, but hold B's responses back: hang up while still Calling.
    p.connected = true;
    while let Some(out) = p.a.poll_output() {
        match out {
            Output::Connect { flow, .. } => {
                p.a_flow = Some(flow);
                p.a.handle_flow_up(
                    p.now,
                    flow,
                    testkit::A_ADDR.parse().unwrap(),
                    testkit::B_ADDR.parse().unwrap(),
                );
            }
            Output::Transmit { bytes, .. } => p.a_sent.push(bytes),
            Output::Event(e) => p.a_events.push(e),
            Output::Close { .. } => {}
        }
    }
    p.a.hangup(p.now, call).unwrap();
    assert!(
        !status_lines(&p.a_sent)
            .iter()
            .any(|l| l.starts_with("CANCEL")),
        "no CANCEL before a provisional"
    );
    // Now deliver the INVITE to B; B's 100 Trying, sent when B's app has not responded within
    // the Trying time, triggers our CANCEL.
    let bf = p.b.handle_flow_accepted(
        p.now,
        testkit::B_ADDR.parse().unwrap(),
        testkit::A_ADDR.parse().unwrap(),
    );
    p.b_flow = Some(bf);
    let invite = p.a_sent[0].clone();
    p.b.handle_received(p.now, bf, &invite);
    p.drive();
    assert!(!status_lines(&p.a_sent)
        .iter()
        .any(|l| l.starts_with("CANCEL")));
    p.advance(crate::signaling::transaction::TimerConfig::default().trying);
    assert!(status_lines(&p.a_sent)
        .iter()
        .any(|l| l.starts_with("CANCEL")));
    assert_eq!(ended(&p.a_events), vec![(487, CallOutcome::Cancelled)]);
    assert_eq!(ended(&p.b_events), vec![(487, CallOutcome::Missed)]);
}

#[test]
fn a_call_limit_answers_that_many_calls_and_486_above() {
    let b_config = Config {
        busy_policy: crate::signaling::config::BusyPolicy::Limit {
            calls: 2,
            code: 486,
        },
        ..Config::default()
    };
    let mut p = Pair::new(Config::default(), b_config, origin());
    let calls: Vec<CallHandle> = (0..3)
        .map(|i| {
            p.a.call(p.now, p.b_uri(), Pair::media(4000 + 2 * i))
                .unwrap()
        })
        .collect();
    p.drive();
    let incoming = p
        .b_events
        .iter()
        .filter(|e| matches!(e, Event::Incoming { .. }))
        .count();
    assert_eq!(incoming, 2, "two calls reach the application");
    assert_eq!(ended(&p.b_events), vec![(486, CallOutcome::Busy)]);
    let busy: Vec<_> = p
        .a_events
        .iter()
        .filter_map(|e| match e {
            Event::Ended { call, status, .. } => Some((*call, *status)),
            _ => None,
        })
        .collect();
    assert_eq!(busy, vec![(calls[2], Some(486))]);
}

#[test]
fn busy_second_call_gets_486() {
    let (mut p, _call, _inc) = connected_pair();
    let second = p.a.call(p.now, p.b_uri(), Pair::media(4002)).unwrap();
    p.drive();
    let a_end: Vec<_> = p
        .a_events
        .iter()
        .filter_map(|e| match e {
            Event::Ended {
                call,
                status,
                outcome,
                ..
            } if *call == second => Some((*status, *outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(a_end, vec![(Some(486), CallOutcome::Busy)]);
    assert_eq!(ended(&p.b_events), vec![(486, CallOutcome::Busy)]);
    assert_eq!(
        p.b_events
            .iter()
            .filter(|e| matches!(e, Event::Incoming { .. }))
            .count(),
        1,
        "no Incoming for the rejected INVITE"
    );
    assert_eq!(p.b.ledger_open(), 1, "only the connected call is open");
}

#[test]
fn reinvite_hold_and_resume() {
    let (mut p, call, _inc) = connected_pair();
    p.a.hold(p.now, call, true).unwrap();
    p.drive();
    assert!(p.a_events.iter().any(|e| matches!(
        e,
        Event::State {
            state: CallState::Held,
            ..
        }
    )));
    assert!(p.b_events.iter().any(|e| matches!(
        e,
        Event::State {
            state: CallState::Held,
            ..
        }
    )));
    let held_media = p.b_events.iter().rev().find_map(|e| match e {
        Event::Media { media, .. } => Some(media.direction),
        _ => None,
    });
    assert_eq!(held_media, Some(crate::signaling::sdp::Direction::RecvOnly));
    p.a.hold(p.now, call, false).unwrap();
    p.drive();
    assert!(p.a_events.iter().any(|e| matches!(
        e,
        Event::State {
            state: CallState::Resumed,
            ..
        }
    )));
    assert!(p.b_events.iter().any(|e| matches!(
        e,
        Event::State {
            state: CallState::Resumed,
            ..
        }
    )));
    let acks = status_lines(&p.a_sent)
        .iter()
        .filter(|l| l.starts_with("ACK"))
        .count();
    assert_eq!(acks, 3);
    assert_eq!(p.b.ledger_stats().opened, 3);
    assert_eq!(p.b.ledger_open(), 1, "only the connected call is open");
    assert!(ended(&p.b_events).is_empty());
}

#[test]
fn reject_ring_timeout_and_timer_b() {
    let cfg = Config {
        ring_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let mut p = Pair::new(Config::default(), cfg, origin());
    let c1 = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
    p.drive();
    p.advance(Duration::from_secs(6));
    assert_eq!(ended(&p.b_events), vec![(480, CallOutcome::Missed)]);
    assert_eq!(ended(&p.a_events), vec![(480, CallOutcome::Rejected)]);
    let _ = c1;
    let c2 = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
    p.drive();
    let inc = p.b_incoming().unwrap();
    p.b.reject(p.now, inc, 603).unwrap();
    p.drive();
    assert!(p.a_events.iter().any(|e| matches!(e, Event::Ended { call, status: Some(603), outcome: CallOutcome::Rejected, .. } if *call == c2)));
    // Timer B: the peer never answers.
    p.connected = false;
    let c3 = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
    p.advance(Duration::from_secs(40));
    assert!(p.a_events.iter().any(|e| matches!(e, Event::Ended { call, status: Some(408), outcome: CallOutcome::Failed, .. } if *call == c3)));
}

#[test]
fn bye_from_callee_and_options_and_unknown_dialog() {
    let (mut p, _call, inc) = connected_pair();
    p.b.hangup(p.now, inc).unwrap();
    p.drive();
    assert_eq!(ended(&p.a_events), vec![(200, CallOutcome::Answered)]);
    assert_eq!(ended(&p.b_events), vec![(200, CallOutcome::Answered)]);
    // A BYE for a dialog that does not exist: 481.
    let bf = p.b_flow.unwrap();
    let bye = "BYE sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bKnope\r\n\
        From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: nope\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n";
    p.b.handle_received(p.now, bf, bye.as_bytes());
    let opt = "OPTIONS sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bKopt\r\n\
        From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    p.b.handle_received(p.now, bf, opt.as_bytes());
    let sub = opt
        .replace("OPTIONS", "SUBSCRIBE")
        .replace("z9hG4bKopt", "z9hG4bKsub");
    p.b.handle_received(p.now, bf, sub.as_bytes());
    let foo = opt
        .replace("OPTIONS", "FOO")
        .replace("z9hG4bKopt", "z9hG4bKfoo");
    p.b.handle_received(p.now, bf, foo.as_bytes());
    p.drive();
    let b = status_lines(&p.b_sent);
    let tail: Vec<_> = b[b.len() - 4..].to_vec();
    assert_eq!(
        tail,
        vec![
            "SIP/2.0 481 Call/Transaction Does Not Exist",
            "SIP/2.0 200 OK",
            "SIP/2.0 405 Method Not Allowed",
            "SIP/2.0 501 Not Implemented"
        ]
    );
    let options_ok = String::from_utf8_lossy(&p.b_sent[p.b_sent.len() - 3]).to_string();
    assert!(options_ok.contains("Allow: INVITE"), "{options_ok}");
    assert!(options_ok.contains("Accept: application/sdp"));
}

#[test]
fn ping_gets_pong_and_framing_error_closes_the_flow() {
    let mut s = testkit::Solo::new(Config::default(), origin());
    let flow = s.flow.unwrap();
    s.feed("\r\n\r\n");
    assert_eq!(s.sent.last().map(Vec::as_slice), Some(&b"\r\n"[..]));
    s.feed("OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\r\n");
    assert!(
        s.flow.is_none(),
        "no Content-Length on a stream: the flow is closed"
    );
    assert!(
        s.events
            .iter()
            .any(|e| matches!(e, Event::FlowDown { flow: f, cause }
            if *f == flow && cause.starts_with("framing error"))),
        "{:?}",
        s.events
    );
}

/// Outputs until the first `Connect`: its flow; every event goes to `events`.
fn connect_asked(core: &mut SignalingCore, events: &mut Vec<Event>) -> Option<FlowId> {
    let mut flow = None;
    while let Some(out) = core.poll_output() {
        match out {
            Output::Connect { flow: f, .. } => flow = flow.or(Some(f)),
            Output::Event(e) => events.push(e),
            _ => {}
        }
    }
    flow
}

#[test]
fn a_refused_direct_call_ends_at_once_with_the_cause() {
    let now = origin();
    let mut core = SignalingCore::new(Config::default());
    let target =
        crate::signaling::message::Uri::parse("sip:x@192.0.2.9:5060;transport=tcp").unwrap();
    let call = core
        .call(now, target, "127.0.0.1:4000".parse().unwrap())
        .unwrap();
    let mut events = Vec::new();
    let flow = connect_asked(&mut core, &mut events).expect("a connect");
    let cause = "connect 192.0.2.9:5060: connection refused";
    core.handle_flow_closed(now, flow, cause);
    connect_asked(&mut core, &mut events);
    let end = events.iter().find_map(|e| match e {
        Event::Ended {
            call: c,
            status,
            reason,
            outcome,
            ..
        } if *c == call => Some((*status, reason.clone(), *outcome)),
        _ => None,
    });
    assert_eq!(end, Some((None, cause.to_string(), CallOutcome::Failed)));
}

#[test]
fn each_failed_registration_attempt_is_an_event_with_cause_and_retry() {
    let now = origin();
    let config = Config {
        account: Some(crate::signaling::config::Account {
            registrar: crate::signaling::message::Uri::parse("sip:192.0.2.9:5060;transport=tcp")
                .unwrap(),
            user: "alice".into(),
            domain: "example.com".into(),
            password: None,
            auth_user: None,
            proxy: None,
        }),
        ..Config::default()
    };
    let mut core = SignalingCore::new(config);
    core.register(now).unwrap();
    let mut events = Vec::new();
    let mut t = now;
    for attempt in 0..3 {
        let flow = connect_asked(&mut core, &mut events).expect("a connect");
        core.handle_flow_closed(t, flow, "connect 192.0.2.9:5060: connection refused");
        connect_asked(&mut core, &mut events);
        let failed: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::RegistrationFailed {
                    status,
                    reason,
                    retry_in,
                } => Some((*status, reason.clone(), *retry_in)),
                _ => None,
            })
            .collect();
        assert_eq!(failed.len(), attempt + 1, "{events:?}");
        let (status, reason, retry_in) = failed[attempt].clone();
        assert_eq!(status, 0);
        assert_eq!(reason, "connect 192.0.2.9:5060: connection refused");
        let retry_in = retry_in.expect("a retry is scheduled");
        assert!(retry_in <= Duration::from_secs(1), "{retry_in:?}");
        t = core.poll_timeout().expect("the reconnect timer");
        core.handle_timeout(t);
    }
}

/// A `sips:` registrar: the control flow is TLS, the REGISTER goes to a `sips:` Request-URI
/// with `Via: SIP/2.0/TLS` and a `sips:` Contact; an accepted TLS flow answers with
/// `;transport=tls` in its Contact.
#[test]
fn sips_registrar_and_accepted_tls_flow_say_tls() {
    use crate::signaling::config::Account;
    use crate::signaling::message::Uri;
    let config = Config {
        account: Some(Account {
            registrar: Uri::parse("sips:127.0.0.1:5061").unwrap(),
            user: "alice".into(),
            domain: "127.0.0.1".into(),
            password: None,
            auth_user: None,
            proxy: None,
        }),
        ..Config::default()
    };
    let mut core = SignalingCore::new(config);
    let now = origin();
    core.register(now).unwrap();
    let mut connect = None;
    while let Some(out) = core.poll_output() {
        if let Output::Connect {
            flow, transport, ..
        } = out
        {
            connect = Some((flow, transport));
        }
    }
    let (flow, transport) = connect.expect("a connect");
    assert_eq!(transport, Transport::Tls);
    let local = "192.0.2.5:40000".parse().unwrap();
    core.handle_flow_up(now, flow, local, "192.0.2.1:5061".parse().unwrap());
    let register = std::iter::from_fn(|| core.poll_output())
        .find_map(|o| match o {
            Output::Transmit { bytes, .. } => Some(String::from_utf8_lossy(&bytes).to_string()),
            _ => None,
        })
        .expect("a REGISTER");
    assert!(
        register.starts_with("REGISTER sips:127.0.0.1 SIP/2.0"),
        "{register}"
    );
    assert!(
        register.contains("Via: SIP/2.0/TLS 192.0.2.5:40000"),
        "{register}"
    );
    assert!(
        register.contains("Contact: <sips:alice@192.0.2.5:40000"),
        "{register}"
    );

    // A direct INVITE on an accepted TLS flow: the 180/200 Contact names TLS.
    let mut b = super::testkit::Solo::new(Config::default(), now);
    let tls = b.core.handle_flow_accepted_over(
        now,
        "192.0.2.6:5061".parse().unwrap(),
        "192.0.2.7:50000".parse().unwrap(),
        Transport::Tls,
    );
    assert_eq!(b.core.flow_transport(tls), Transport::Tls);
    assert_eq!(
        b.core.contact(tls),
        "<sip:wakeline@192.0.2.6:5061;transport=tls>"
    );
    // ... and `sips:` when the request was to a `sips:` URI.
    assert_eq!(
        b.core.contact_for(tls, true),
        "<sips:wakeline@192.0.2.6:5061>"
    );
    let tcp = b.flow.expect("the accepted TCP flow");
    assert!(b.core.contact_for(tcp, true).starts_with("<sip:"));
}
