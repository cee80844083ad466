//! The platform-facing async API (issue 4) against the in-test registrar on 127.0.0.1:
//! `UserAgent::run_keepalive` within its budget (pong, and no pong → reconnect + re-register)
//! and `UserAgent::handle_push` in both orders (push before its INVITE, INVITE before its push).

mod peers;

use peers::inproc::InProcess;
use peers::registrar::Registrar;
use std::time::Duration;
use wakeline::driver::MediaOptions;
use wakeline::media::audio::{AudioSink, AudioSource};
use wakeline::signaling::message::Method;
use wakeline::{CallHandle, Config, Event};

const LIMIT: Duration = Duration::from_secs(10);

/// A registered in-process user agent with silent audio, pinging only when a run asks.
struct Ua(InProcess);

impl std::ops::Deref for Ua {
    type Target = InProcess;
    fn deref(&self) -> &InProcess {
        &self.0
    }
}

impl Ua {
    fn start(reg: &Registrar) -> Ua {
        let config = Config {
            // The handler's runs do the pinging in these tests, not the periodic timer.
            keepalive_interval: None,
            ..InProcess::config(reg)
        };
        let media = MediaOptions {
            source: AudioSource::Silence,
            sink: AudioSink::Null,
            ..MediaOptions::default()
        };
        let me = Ua(InProcess::start(config, media));
        me.wait(|e| matches!(e, Event::Registered { .. }))
            .expect("registered");
        me
    }

    fn wait(&self, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        self.0.wait(LIMIT, pred).map(|(_, e)| e)
    }

    fn incoming(&self) -> (CallHandle, String, bool) {
        match self.wait(|e| matches!(e, Event::Incoming { .. })) {
            Some(Event::Incoming {
                call,
                call_id,
                pushed,
                ..
            }) => (call, call_id, pushed),
            other => panic!("no incoming call: {other:?}"),
        }
    }
}

#[test]
fn keepalive_run_with_a_pong_is_quick_and_within_budget() {
    let reg = Registrar::start();
    let ua = Ua::start(&reg);
    let report = ua
        .rt
        .block_on(ua.ua.run_keepalive(Duration::from_secs(10)))
        .expect("run");
    assert!(report.outcome.ping_ok, "{report:?}");
    assert!(
        !report.outcome.reconnected && !report.outcome.aborted,
        "{report:?}"
    );
    assert!(report.within_budget, "{report:?}");
    assert!(report.elapsed < Duration::from_secs(1), "{report:?}");
    assert_eq!(
        (report.bytes_out, report.bytes_in),
        (4, 2),
        "a CRLF CRLF ping, a CRLF pong"
    );
}

#[test]
fn keepalive_run_without_a_pong_reconnects_and_reregisters_within_budget() {
    let reg = Registrar::start();
    let ua = Ua::start(&reg);
    let first = reg.registered_conn().expect("registered connection");
    reg.set_pongs(false);
    let budget = Duration::from_secs(4);
    let report = ua.rt.block_on(ua.ua.run_keepalive(budget)).expect("run");
    assert!(!report.outcome.ping_ok, "{report:?}");
    assert!(
        report.outcome.reconnected && report.outcome.reregistered && !report.outcome.aborted,
        "{report:?}"
    );
    assert!(report.within_budget, "{report:?}");
    assert!(report.elapsed < budget, "{report:?}");
    let second = reg.registered_conn().expect("registered again");
    assert_ne!(first, second, "re-registered on a new connection");
}

#[test]
fn push_before_its_invite_binds_the_invite_and_an_early_answer_holds() {
    let reg = Registrar::start();
    let ua = Ua::start(&reg);
    let call = ua
        .rt
        .block_on(
            ua.ua
                .handle_push("push-call-1@example.com", Some("sip:caller@d")),
        )
        .expect("push");
    let (incoming, call_id, pushed) = ua.incoming();
    assert_eq!(
        (incoming, call_id.as_str(), pushed),
        (call.handle(), "push-call-1@example.com", true)
    );
    // CallKit answers before the INVITE is even there.
    ua.rt.block_on(call.answer()).expect("early answer");
    let mut leg = reg.send_invite_with_call_id("push-call-1@example.com");
    let ok = leg
        .wait_response(Method::Invite, 200, LIMIT)
        .expect("the INVITE is answered at once");
    leg.ack(ok.response().expect("a response"));
    ua.wait(|e| {
        matches!(e, Event::State { call, state: wakeline::CallState::Connected, .. } if *call == incoming)
    })
    .expect("connected");
    leg.bye();
    match ua.wait(|e| matches!(e, Event::Ended { .. } | Event::Incoming { .. })) {
        Some(Event::Ended { call, status, .. }) => {
            assert_eq!((call, status), (incoming, Some(200)));
        }
        other => panic!("expected the pushed call to end, not {other:?}"),
    }
}

#[test]
fn invite_before_its_push_returns_the_same_call() {
    let reg = Registrar::start();
    let ua = Ua::start(&reg);
    let leg = reg.send_invite();
    let (incoming, call_id, pushed) = ua.incoming();
    assert_eq!(call_id, leg.call_id);
    assert!(!pushed);
    let call = ua
        .rt
        .block_on(ua.ua.handle_push(&leg.call_id, None))
        .expect("push");
    assert_eq!(
        call.handle(),
        incoming,
        "the late push names the call we already have"
    );
    ua.rt.block_on(call.reject(486)).expect("reject");
    leg.wait_response(Method::Invite, 486, LIMIT)
        .expect("486 on the wire");
    match ua.wait(|e| matches!(e, Event::Ended { .. } | Event::Incoming { .. })) {
        Some(Event::Ended { call, status, .. }) => {
            assert_eq!((call, status), (incoming, Some(486)))
        }
        other => panic!("expected exactly one end, got {other:?}"),
    }
}

/// The `m=audio` port of an SDP body.
fn audio_port(body: &[u8]) -> u16 {
    String::from_utf8_lossy(body)
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("an m=audio line")
}

#[test]
fn network_change_reregisters_on_a_new_flow_and_reinvites_with_a_new_rtp_port() {
    let reg = Registrar::start();
    let ua = Ua::start(&reg);
    let old_conn = reg.registered_conn().expect("registered");
    let mut leg = reg.send_invite();
    let (incoming, _, _) = ua.incoming();
    ua.rt
        .block_on(ua.ua.call_handle(incoming).answer())
        .expect("answer");
    let ok = leg
        .wait_response(Method::Invite, 200, LIMIT)
        .expect("200 OK");
    let ok = ok.response().expect("a response").clone();
    leg.ack(&ok);
    let old_port = audio_port(&ok.body);
    // Only confirmed calls move to the new network: wait until the ACK has been seen.
    ua.wait(|e| {
        matches!(e, Event::State { call, state: wakeline::CallState::Connected, .. } if *call == incoming)
    })
    .expect("connected");

    let from = reg.log_len();
    ua.rt
        .block_on(ua.ua.network_changed())
        .expect("network change");
    let again = reg
        .wait_registered(from, Some(old_conn), LIMIT)
        .expect("a REGISTER on a new connection");
    assert_ne!(again.conn, old_conn);
    let (_, reinvite) = reg
        .wait_from(from, LIMIT, &mut |r| {
            r.request(&Method::Invite)
                .is_some_and(|q| q.headers.call_id() == Some(leg.call_id.as_str()))
        })
        .expect("a re-INVITE for the call");
    let reinvite = reinvite.request(&Method::Invite).expect("INVITE");
    let new_port = audio_port(&reinvite.body);
    assert_ne!(
        new_port, old_port,
        "the re-INVITE announces the new RTP socket"
    );
    assert!(
        reinvite
            .headers
            .to()
            .and_then(|t| t.tag().map(str::to_string))
            .is_some(),
        "in-dialog: the To header carries the dialog's tag"
    );
}
