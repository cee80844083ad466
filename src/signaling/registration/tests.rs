//! Unit tests of the registration machine, on a virtual clock.

use super::*;
use crate::signaling::auth::{digest_response, Algorithm, DigestInput, Qop};
use crate::signaling::message::{Host, Method, Params, Scheme};
use std::net::{IpAddr, Ipv4Addr};

const S: Duration = Duration::from_secs(1);

/// The origin of the virtual clock (tests only; every later time is origin + offset).
fn origin() -> Instant {
    Instant::now()
}
const INSTANCE: &str = "urn:uuid:00000000-0000-1000-8000-000a95a0e128";

fn uri(user: Option<&str>, host: &str, port: Option<u16>) -> Uri {
    Uri {
        scheme: Scheme::Sip,
        user: user.map(str::to_string),
        password: None,
        host: Host::Domain(host.into()),
        port,
        params: Params::default(),
        headers: Vec::new(),
    }
}

fn config() -> RegistrationConfig {
    let mut registrar = uri(None, "registrar.example.com", Some(5060));
    registrar.params.set("transport", Some("tcp"));
    RegistrationConfig {
        registrar,
        aor: uri(Some("alice"), "example.com", None),
        display_name: Some("Alice".into()),
        credentials: Some(Credentials {
            username: "alice".into(),
            password: "secret".into(),
        }),
        expires: 600,
        instance_id: Some(INSTANCE.into()),
        reg_id: 1,
        outbound_proxy: Some(uri(None, "proxy.example.com", Some(5060))),
        retry_base: Duration::from_millis(500),
        retry_max: Duration::from_secs(30),
        user_agent: "wakeline-test".into(),
        rng_seed: 7,
        contact_params: Vec::new(),
        flow_min_lifetime: FLOW_MIN_LIFETIME,
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), port)
}

fn hdr(r: &Request, name: HeaderName) -> &str {
    r.headers.get(&name).unwrap_or_default()
}

fn cseq(r: &Request) -> u32 {
    hdr(r, HeaderName::CSeq)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn one_request(reg: &mut Registration) -> Request {
    let r = reg.poll_request().expect("a REGISTER");
    assert!(reg.poll_request().is_none(), "only one REGISTER at a time");
    r
}

fn events(reg: &mut Registration) -> Vec<RegistrationEvent> {
    std::iter::from_fn(|| reg.poll_event()).collect()
}

fn challenge(req: &Request, nonce: &str, stale: bool) -> Response {
    let mut r = Response::for_request(req, 401);
    r.headers.push(
        HeaderName::WwwAuthenticate,
        format!(
            "Digest realm=\"example.com\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5{}",
            if stale { ", stale=true" } else { "" }
        ),
    );
    r
}

fn ok(req: &Request, contact_expires: Option<u32>, expires_hdr: Option<u32>) -> Response {
    let mut r = Response::for_request(req, 200);
    r.headers.push(
        HeaderName::Contact,
        "<sip:alice@192.0.2.9:5070;transport=tcp>;expires=3333",
    );
    let mut ours = hdr(req, HeaderName::Contact).replace(";expires=0", "");
    if let Some(e) = contact_expires {
        ours.push_str(&format!(";expires={e}"));
    }
    r.headers.push(HeaderName::Contact, ours);
    if let Some(e) = expires_hdr {
        r.headers.push(HeaderName::Expires, e.to_string());
    }
    r
}

fn param<'a>(v: &'a str, name: &str) -> &'a str {
    let start = v.find(&format!("{name}=")).unwrap() + name.len() + 1;
    let rest = &v[start..];
    match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"').unwrap()],
        None => rest.split(',').next().unwrap().trim(),
    }
}

#[test]
fn full_cycle_challenge_auth_refresh_stop() {
    let t0 = origin();
    let mut reg = Registration::new(config());
    reg.start(t0);
    assert_eq!(reg.state(), RegistrationState::WaitingForFlow);
    assert!(reg.poll_request().is_none());

    reg.handle_flow_up(t0, local(5070));
    let r1 = one_request(&mut reg);
    assert_eq!(reg.state(), RegistrationState::Registering);
    assert_eq!(r1.method, Method::Register);
    assert_eq!(r1.uri.to_string(), "sip:example.com");
    let via = hdr(&r1, HeaderName::Via);
    assert!(via.starts_with("SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK"));
    assert!(via.ends_with(";rport"));
    assert_eq!(hdr(&r1, HeaderName::MaxForwards), "70");
    assert_eq!(
        hdr(&r1, HeaderName::Route),
        "<sip:proxy.example.com:5060;lr>"
    );
    let from = hdr(&r1, HeaderName::From).to_string();
    assert!(from.starts_with("\"Alice\" <sip:alice@example.com>;tag="));
    assert_eq!(
        hdr(&r1, HeaderName::To),
        "\"Alice\" <sip:alice@example.com>"
    );
    assert_eq!(
        hdr(&r1, HeaderName::Contact),
        format!(
            "<sip:alice@10.0.0.1:5070;transport=tcp;ob>;+sip.instance=\"<{INSTANCE}>\";reg-id=1"
        )
    );
    assert_eq!(hdr(&r1, HeaderName::Expires), "600");
    assert_eq!(hdr(&r1, HeaderName::Supported), "outbound, path");
    assert_eq!(hdr(&r1, HeaderName::UserAgent), "wakeline-test");
    assert_eq!(hdr(&r1, HeaderName::Allow), ALLOW);
    assert!(r1.headers.get(&HeaderName::Authorization).is_none());

    // 401 -> same REGISTER with credentials, CSeq + 1.
    reg.handle_response(t0, &challenge(&r1, "n1", false));
    let r2 = one_request(&mut reg);
    assert_eq!(cseq(&r2), cseq(&r1) + 1);
    assert_eq!(hdr(&r2, HeaderName::CallId), hdr(&r1, HeaderName::CallId));
    assert_eq!(hdr(&r2, HeaderName::From), from);
    let auth = hdr(&r2, HeaderName::Authorization);
    assert_eq!(param(auth, "nc"), "00000001");
    assert_eq!(param(auth, "uri"), "sip:example.com");
    let expected = digest_response(&DigestInput {
        algorithm: Algorithm::Md5,
        username: "alice",
        realm: "example.com",
        password: "secret",
        nonce: "n1",
        cnonce: param(auth, "cnonce"),
        nc: 1,
        qop: Some(Qop::Auth),
        method: "REGISTER",
        uri: "sip:example.com",
    });
    assert_eq!(param(auth, "response"), expected);
    assert!(events(&mut reg).is_empty());

    // 200: our Contact's expires wins over the Expires header and others' contacts.
    let t1 = t0 + S;
    let mut resp = ok(&r2, Some(300), Some(600));
    resp.headers.push(HeaderName::FlowTimer, "120");
    reg.handle_response(t1, &resp);
    assert_eq!(
        events(&mut reg),
        vec![RegistrationEvent::Registered { expires: 300 }]
    );
    assert_eq!(reg.state(), RegistrationState::Registered);
    assert_eq!(reg.flow_timer(), Some(120));
    // Refresh at max(300/2, 300-60) = 240 s.
    assert_eq!(reg.poll_timeout(), Some(t1 + 240 * S));
    reg.handle_timeout(t1 + 239 * S);
    assert!(reg.poll_request().is_none());
    reg.handle_timeout(t1 + 240 * S);
    let r3 = one_request(&mut reg);
    assert_eq!(reg.state(), RegistrationState::Refreshing);
    assert_eq!(cseq(&r3), cseq(&r2) + 1);
    assert_eq!(hdr(&r3, HeaderName::CallId), hdr(&r1, HeaderName::CallId));
    assert_eq!(hdr(&r3, HeaderName::From), from);
    assert_ne!(hdr(&r3, HeaderName::Via), hdr(&r2, HeaderName::Via));
    assert_eq!(param(hdr(&r3, HeaderName::Authorization), "nc"), "00000002");

    let t2 = t1 + 241 * S;
    reg.handle_response(t2, &ok(&r3, None, Some(600)));
    assert_eq!(
        events(&mut reg),
        vec![RegistrationEvent::Registered { expires: 600 }]
    );
    assert_eq!(reg.poll_timeout(), Some(t2 + 540 * S));

    // stop -> Expires: 0 with Contact expires=0 -> 200 -> Unregistered.
    reg.stop(t2 + S);
    let r4 = one_request(&mut reg);
    assert_eq!(reg.state(), RegistrationState::Unregistering);
    assert_eq!(hdr(&r4, HeaderName::Expires), "0");
    assert!(hdr(&r4, HeaderName::Contact).ends_with(";reg-id=1;expires=0"));
    assert_eq!(cseq(&r4), cseq(&r3) + 1);
    reg.handle_response(t2 + 2 * S, &ok(&r4, None, Some(0)));
    assert_eq!(events(&mut reg), vec![RegistrationEvent::Unregistered]);
    assert_eq!(reg.state(), RegistrationState::Idle);
    assert_eq!(reg.poll_timeout(), None);
}

#[test]
fn allow_lists_only_methods_we_answer() {
    let t0 = origin();
    let mut reg = Registration::new(config());
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let allow = hdr(&one_request(&mut reg), HeaderName::Allow).to_string();
    assert!(!allow.contains("UPDATE"), "{allow}");
    assert_eq!(allow, crate::signaling::invite::ALLOW);
}

#[test]
fn wrong_password_gives_up_without_loop() {
    let t0 = origin();
    let mut reg = Registration::new(config());
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let r1 = one_request(&mut reg);
    reg.handle_response(t0, &challenge(&r1, "n1", false));
    let r2 = one_request(&mut reg);
    reg.handle_response(t0, &challenge(&r2, "n2", false));
    assert!(reg.poll_request().is_none(), "no third REGISTER");
    let ev = events(&mut reg);
    assert!(matches!(
        ev.as_slice(),
        [RegistrationEvent::Failed {
            status: 401,
            retry_in: Some(_),
            ..
        }]
    ));
    assert_eq!(reg.state(), RegistrationState::RetryWait);
    // The retry starts clean: no stale Authorization.
    let at = reg.poll_timeout().unwrap();
    reg.handle_timeout(at);
    let r3 = one_request(&mut reg);
    assert!(r3.headers.get(&HeaderName::Authorization).is_none());
}

#[test]
fn stale_challenge_retries_and_no_credentials_fails() {
    let t0 = origin();
    let mut reg = Registration::new(config());
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let r1 = one_request(&mut reg);
    reg.handle_response(t0, &challenge(&r1, "n1", false));
    let r2 = one_request(&mut reg);
    reg.handle_response(t0, &challenge(&r2, "n2", true));
    let r3 = one_request(&mut reg);
    let auth = hdr(&r3, HeaderName::Authorization);
    assert_eq!(param(auth, "nonce"), "n2");
    assert_eq!(param(auth, "nc"), "00000001");

    let mut cfg = config();
    cfg.credentials = None;
    let mut reg = Registration::new(cfg);
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let r1 = one_request(&mut reg);
    reg.handle_response(t0, &challenge(&r1, "n1", false));
    assert!(reg.poll_request().is_none());
    assert!(matches!(
        events(&mut reg).as_slice(),
        [RegistrationEvent::Failed { status: 401, .. }]
    ));
}

#[test]
fn interval_too_brief_uses_min_expires() {
    let t0 = origin();
    let mut reg = Registration::new(config());
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let r1 = one_request(&mut reg);
    let mut resp = Response::for_request(&r1, 423);
    resp.headers.push(HeaderName::MinExpires, "1800");
    reg.handle_response(t0, &resp);
    let r2 = one_request(&mut reg);
    assert_eq!(hdr(&r2, HeaderName::Expires), "1800");
    assert_eq!(cseq(&r2), cseq(&r1) + 1);
    // A 423 without a usable Min-Expires is a failure, not a loop.
    let bad = Response::for_request(&r2, 423);
    reg.handle_response(t0, &bad);
    assert!(reg.poll_request().is_none());
    assert!(matches!(
        events(&mut reg).as_slice(),
        [RegistrationEvent::Failed { status: 423, .. }]
    ));
    // The raised value sticks for the retry.
    let at = reg.poll_timeout().unwrap();
    reg.handle_timeout(at);
    assert_eq!(hdr(&one_request(&mut reg), HeaderName::Expires), "1800");
}

#[test]
fn backoff_is_monotone_capped_and_reset_by_success() {
    let t0 = origin();
    let cfg = config();
    let (base, max) = (cfg.retry_base, cfg.retry_max);
    let mut reg = Registration::new(cfg);
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let mut now = t0;
    let mut delays = Vec::new();
    for i in 0..12 {
        let _ = one_request(&mut reg);
        let why = if i % 2 == 0 {
            FailReason::Timeout
        } else {
            FailReason::Transport
        };
        reg.handle_request_failed(now, why);
        match events(&mut reg).as_slice() {
            [RegistrationEvent::Failed {
                status: 0,
                retry_in: Some(d),
                ..
            }] => delays.push(*d),
            other => panic!("unexpected {other:?}"),
        }
        let at = reg.poll_timeout().unwrap();
        assert_eq!(at, now + delays[i], "the timer follows the reported delay");
        reg.handle_timeout(at - Duration::from_millis(1));
        assert!(reg.poll_request().is_none(), "not before the delay");
        now = at;
        reg.handle_timeout(now);
    }
    assert!(delays[0] >= base / 2 && delays[0] <= base);
    assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
    assert!(delays.iter().all(|d| *d <= max));
    assert_eq!(*delays.last().unwrap(), max);

    // Success resets the backoff.
    let r = one_request(&mut reg);
    reg.handle_response(now, &ok(&r, None, Some(600)));
    let at = reg.poll_timeout().unwrap();
    reg.handle_timeout(at);
    let _ = one_request(&mut reg);
    reg.handle_request_failed(at, FailReason::Timeout);
    let ev = events(&mut reg);
    assert!(matches!(
        ev.last(),
        Some(RegistrationEvent::Failed { retry_in: Some(d), .. }) if *d <= base
    ));
}

/// Only an unanswered REGISTER marks the failure for DNS failover, and reading the mark clears it.
#[test]
fn a_register_timeout_is_marked_for_failover_once() {
    let t0 = origin();
    let mut reg = Registration::new(config());
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let _ = one_request(&mut reg);
    reg.handle_request_failed(t0, FailReason::Timeout);
    assert!(reg.take_timed_out());
    assert!(!reg.take_timed_out(), "read once");
    let at = reg.poll_timeout().unwrap();
    reg.handle_timeout(at);
    let _ = one_request(&mut reg);
    reg.handle_request_failed(at, FailReason::Transport);
    assert!(
        !reg.take_timed_out(),
        "a transport failure is not a timeout"
    );
}

#[test]
fn backoff_delay_function() {
    let (b, m) = (Duration::from_secs(1), Duration::from_secs(30));
    assert_eq!(backoff_delay(b, m, 0, 1.0), b);
    assert_eq!(backoff_delay(b, m, 0, 0.5), b / 2);
    assert_eq!(backoff_delay(b, m, 3, 1.0), 8 * S);
    assert_eq!(backoff_delay(b, m, 5, 1.0), m);
    assert_eq!(backoff_delay(b, m, 1000, 0.5), m);
}

#[test]
fn refresh_delay_rule() {
    assert_eq!(refresh_delay(3600), 3540 * S);
    assert_eq!(refresh_delay(100), 50 * S);
    assert_eq!(refresh_delay(60), 30 * S);
    assert_eq!(refresh_delay(1), Duration::from_millis(500));
}

#[test]
fn server_error_honours_retry_after_and_403_retries_later() {
    let t0 = origin();
    let mut reg = Registration::new(config());
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let r1 = one_request(&mut reg);
    let mut resp = Response::for_request(&r1, 503);
    resp.headers.push(HeaderName::RetryAfter, "120;duration=60");
    reg.handle_response(t0, &resp);
    assert_eq!(
        events(&mut reg),
        vec![RegistrationEvent::Failed {
            status: 503,
            reason: "Service Unavailable".into(),
            retry_in: Some(120 * S)
        }]
    );
    assert_eq!(reg.poll_timeout(), Some(t0 + 120 * S));
    // An absurd Retry-After from the network is capped, never overflows the clock.
    let mut reg2 = Registration::new(config());
    reg2.handle_flow_up(t0, local(5070));
    reg2.start(t0);
    let q = one_request(&mut reg2);
    let mut huge = Response::for_request(&q, 503);
    huge.headers
        .push(HeaderName::RetryAfter, u64::MAX.to_string());
    reg2.handle_response(t0, &huge);
    assert_eq!(reg2.poll_timeout(), Some(t0 + MAX_RETRY_AFTER));

    reg.handle_timeout(t0 + 120 * S);
    let r2 = one_request(&mut reg);
    reg.handle_response(t0 + 120 * S, &Response::for_request(&r2, 403));
    assert!(reg.poll_request().is_none());
    assert!(matches!(
        events(&mut reg).as_slice(),
        [RegistrationEvent::Failed {
            status: 403,
            retry_in: Some(_),
            ..
        }]
    ));
}

#[test]
fn flow_down_then_up_re_registers_with_same_identity() {
    let t0 = origin();
    let mut reg = Registration::new(config());
    reg.start(t0);
    reg.handle_flow_up(t0, local(5070));
    let r1 = one_request(&mut reg);
    reg.handle_response(t0, &ok(&r1, None, Some(600)));
    events(&mut reg);

    reg.handle_flow_down(t0 + 10 * S);
    assert_eq!(reg.state(), RegistrationState::WaitingForFlow);
    assert_eq!(reg.poll_timeout(), None);
    assert_eq!(
        events(&mut reg),
        vec![RegistrationEvent::Failed {
            status: 0,
            reason: "flow down".into(),
            retry_in: None
        }]
    );
    reg.handle_flow_up(t0 + 11 * S, local(6000));
    let r2 = one_request(&mut reg);
    assert_eq!(cseq(&r2), cseq(&r1) + 1);
    assert_eq!(hdr(&r2, HeaderName::CallId), hdr(&r1, HeaderName::CallId));
    assert_eq!(hdr(&r2, HeaderName::From), hdr(&r1, HeaderName::From));
    let contact = hdr(&r2, HeaderName::Contact);
    assert!(contact.contains("@10.0.0.1:6000;transport=tcp;ob>"));
    assert!(contact.contains(&format!("+sip.instance=\"<{INSTANCE}>\"")));
    assert!(contact.contains(";reg-id=1"));
    assert!(hdr(&r2, HeaderName::Via).contains("10.0.0.1:6000"));
    // A late response to the REGISTER of the old flow is ignored.
    reg.handle_response(t0 + 12 * S, &Response::for_request(&r1, 500));
    assert!(events(&mut reg).is_empty());
    reg.handle_response(t0 + 12 * S, &ok(&r2, None, None));
    assert_eq!(
        events(&mut reg),
        vec![RegistrationEvent::Registered { expires: 600 }]
    );
}

#[test]
fn without_instance_id_no_outbound_params() {
    let t0 = origin();
    let mut cfg = config();
    cfg.instance_id = None;
    cfg.outbound_proxy = None;
    cfg.display_name = None;
    let mut reg = Registration::new(cfg);
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let r = one_request(&mut reg);
    assert_eq!(
        hdr(&r, HeaderName::Contact),
        "<sip:alice@10.0.0.1:5070;transport=tcp>"
    );
    assert!(r.headers.get(&HeaderName::Route).is_none());
    assert_eq!(hdr(&r, HeaderName::To), "<sip:alice@example.com>");
    // The 2xx Contact is matched by URI when there is no instance id.
    reg.handle_response(t0, &ok(&r, Some(120), Some(600)));
    assert_eq!(
        events(&mut reg),
        vec![RegistrationEvent::Registered { expires: 120 }]
    );
}

#[test]
fn stop_while_registering_waits_for_the_response() {
    let t0 = origin();
    let mut reg = Registration::new(config());
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let r1 = one_request(&mut reg);
    reg.stop(t0);
    assert!(reg.poll_request().is_none(), "one REGISTER at a time");
    reg.handle_response(t0, &ok(&r1, None, Some(600)));
    let r2 = one_request(&mut reg);
    assert_eq!(hdr(&r2, HeaderName::Expires), "0");
    reg.handle_request_failed(t0 + 32 * S, FailReason::Timeout);
    assert_eq!(events(&mut reg), vec![RegistrationEvent::Unregistered]);
    assert_eq!(reg.state(), RegistrationState::Idle);
    // Stopping when never started or idle is quiet.
    reg.stop(t0 + 40 * S);
    assert!(events(&mut reg).is_empty());
}

#[test]
fn granted_expiry_found_by_instance_when_registrar_rewrites_contact() {
    let t0 = origin();
    let mut reg = Registration::new(config());
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let r = one_request(&mut reg);
    let mut resp = Response::for_request(&r, 200);
    resp.headers.push(
        HeaderName::Contact,
        "<sip:alice@198.51.100.7:41234;transport=tcp;ob>;reg-id=1;expires=90;+sip.instance=\"<urn:uuid:other>\"",
    );
    resp.headers.push(
        HeaderName::Contact,
        format!("<sip:alice@198.51.100.7:41235;transport=tcp;ob>;+sip.instance=\"<{INSTANCE}>\";reg-id=1;expires=200"),
    );
    resp.headers.push(HeaderName::Expires, "3600");
    reg.handle_response(t0, &resp);
    assert_eq!(
        events(&mut reg),
        vec![RegistrationEvent::Registered { expires: 200 }]
    );
    assert_eq!(reg.poll_timeout(), Some(t0 + 140 * S));
}

#[test]
fn start_during_unregister_registers_again_afterwards() {
    let t0 = origin();
    let mut reg = Registration::new(config());
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let r1 = one_request(&mut reg);
    reg.handle_response(t0, &ok(&r1, None, Some(600)));
    reg.stop(t0);
    let r2 = one_request(&mut reg);
    assert_eq!(hdr(&r2, HeaderName::Expires), "0");
    reg.start(t0);
    reg.start(t0);
    assert!(reg.poll_request().is_none(), "waits for the un-REGISTER");
    reg.handle_response(t0, &ok(&r2, None, Some(0)));
    let r3 = one_request(&mut reg);
    assert_eq!(hdr(&r3, HeaderName::Expires), "600");
    assert_eq!(cseq(&r3), cseq(&r2) + 1);
    assert_eq!(reg.state(), RegistrationState::Registering);
    // stop twice while un-registering: one un-REGISTER, one Unregistered.
    reg.handle_response(t0, &ok(&r3, None, Some(600)));
    reg.stop(t0);
    reg.stop(t0);
    let r4 = one_request(&mut reg);
    reg.handle_response(t0, &ok(&r4, None, Some(0)));
    assert_eq!(
        events(&mut reg),
        vec![
            RegistrationEvent::Registered { expires: 600 },
            RegistrationEvent::Unregistered,
            RegistrationEvent::Registered { expires: 600 },
            RegistrationEvent::Unregistered,
        ]
    );
    assert_eq!(reg.state(), RegistrationState::Idle);
}

#[test]
fn challenge_on_register_with_stop_pending_answers_with_unregister() {
    let t0 = origin();
    let mut reg = Registration::new(config());
    reg.handle_flow_up(t0, local(5070));
    reg.start(t0);
    let r1 = one_request(&mut reg);
    reg.stop(t0);
    reg.handle_response(t0, &challenge(&r1, "n1", false));
    let r2 = one_request(&mut reg);
    assert_eq!(hdr(&r2, HeaderName::Expires), "0");
    assert!(r2.headers.get(&HeaderName::Authorization).is_some());
    reg.handle_response(t0, &ok(&r2, None, Some(0)));
    assert_eq!(events(&mut reg), vec![RegistrationEvent::Unregistered]);
}

#[test]
fn contact_param_helpers() {
    let c =
        "\"A;b\" <sip:a@h;transport=tcp;ob>;+sip.instance=\"<urn:uuid:1;x>\";reg-id=2;expires=30";
    assert_eq!(header_param(c, "expires"), Some("30"));
    assert_eq!(header_param(c, "reg-id"), Some("2"));
    assert_eq!(header_param(c, "+sip.instance"), Some("<urn:uuid:1;x>"));
    assert_eq!(header_param(c, "transport"), None);
    assert_eq!(contact_uri_text(c), Some("sip:a@h;transport=tcp;ob"));
    assert_eq!(header_param("sip:a@h;expires=5", "expires"), Some("5"));
}

proptest::proptest! {
    #[test]
    fn contact_helpers_never_panic(s in "\\PC{0,200}") {
        let _ = header_param(&s, "expires");
        let _ = contact_uri_text(&s);
    }
}

// --- NAT: the Contact follows the address the registrar saw (RFC 3581 §9) ---

fn udp_config(outbound: bool) -> RegistrationConfig {
    let mut cfg = config();
    cfg.registrar.params.set("transport", Some("udp"));
    if !outbound {
        cfg.instance_id = None;
    }
    cfg.credentials = None;
    cfg
}

fn public(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), port)
}

/// A 2xx to `req` as a registrar behind which the request arrived from `seen`.
fn ok_seen(req: &Request, seen: SocketAddr) -> Response {
    let mut r = ok(req, Some(300), None);
    assert!(r.headers.stamp_received(seen));
    r
}

fn contacts(r: &Request) -> Vec<&str> {
    r.headers.get_all(&HeaderName::Contact).collect()
}

/// The 2xx to `req` says the registrar saw `seen`, which our Contact does not name: no event,
/// and the next REGISTER (returned) carries `expect` as its Contacts.
fn rewritten(
    reg: &mut Registration,
    now: Instant,
    req: &Request,
    seen: SocketAddr,
    expect: &[&str],
) -> Request {
    reg.handle_response(now, &ok_seen(req, seen));
    assert!(events(reg).is_empty());
    assert_eq!(reg.public_addr(), Some(seen));
    let next = one_request(reg);
    assert_eq!(cseq(&next), cseq(req) + 1);
    assert_eq!(contacts(&next), expect);
    next
}

/// The 2xx to `req` confirms our Contact at `seen`: registered, nothing more sent, the
/// refresh due at max(300/2, 300-60) = 240 s.
fn confirmed(reg: &mut Registration, now: Instant, req: &Request, seen: SocketAddr) {
    reg.handle_response(now, &ok_seen(req, seen));
    assert_eq!(
        events(reg),
        vec![RegistrationEvent::Registered { expires: 300 }]
    );
    assert!(reg.poll_request().is_none());
    assert_eq!(reg.poll_timeout(), Some(now + 240 * S));
}

#[test]
fn udp_behind_nat_rewrites_contact_once_and_removes_the_old_binding() {
    let t0 = origin();
    let mut reg = Registration::new(udp_config(false));
    reg.start(t0);
    reg.handle_flow_up(t0, local(5070));
    let r1 = one_request(&mut reg);
    assert_eq!(
        contacts(&r1),
        vec!["<sip:alice@10.0.0.1:5070;transport=udp>"]
    );
    // The registrar saw 203.0.113.7:40000: re-REGISTER at once, no `Registered` yet.
    let r2 = rewritten(
        &mut reg,
        t0,
        &r1,
        public(40000),
        &[
            "<sip:alice@203.0.113.7:40000;transport=udp>",
            "<sip:alice@10.0.0.1:5070;transport=udp>;expires=0",
        ],
    );
    assert!(hdr(&r2, HeaderName::Via).starts_with("SIP/2.0/UDP 10.0.0.1:5070;"));
    confirmed(&mut reg, t0, &r2, public(40000));
    // The refresh keeps the public Contact (and removes nothing).
    let t1 = t0 + 240 * S;
    reg.handle_timeout(t1);
    let r3 = one_request(&mut reg);
    assert_eq!(
        contacts(&r3),
        vec!["<sip:alice@203.0.113.7:40000;transport=udp>"]
    );
    // The NAT rebound the flow: the same rewrite, once.
    let r4 = rewritten(
        &mut reg,
        t1,
        &r3,
        public(40001),
        &[
            "<sip:alice@203.0.113.7:40001;transport=udp>",
            "<sip:alice@203.0.113.7:40000;transport=udp>;expires=0",
        ],
    );
    confirmed(&mut reg, t1, &r4, public(40001));
    // Un-REGISTER removes the public binding.
    reg.stop(t1 + 2 * S);
    let r5 = one_request(&mut reg);
    assert_eq!(
        contacts(&r5),
        vec!["<sip:alice@203.0.113.7:40001;transport=udp>;expires=0"]
    );
}

#[test]
fn udp_rewrites_stop_after_two_when_the_address_changes_every_time() {
    let t0 = origin();
    let mut reg = Registration::new(udp_config(false));
    reg.start(t0);
    reg.handle_flow_up(t0, local(5070));
    let mut req = one_request(&mut reg);
    for n in 0..MAX_REWRITES as u16 {
        reg.handle_response(t0, &ok_seen(&req, public(40000 + n)));
        assert!(events(&mut reg).is_empty(), "rewrite {n}");
        req = one_request(&mut reg);
        assert!(contacts(&req)[0].contains(&format!("203.0.113.7:{}", 40000 + n)));
    }
    // A third different address: keep the Contact we have, register, no loop.
    reg.handle_response(t0, &ok_seen(&req, public(40100)));
    assert_eq!(
        events(&mut reg),
        vec![RegistrationEvent::Registered { expires: 300 }]
    );
    assert!(reg.poll_request().is_none());
    assert_eq!(
        reg.public_addr(),
        Some(public(40000 + MAX_REWRITES as u16 - 1))
    );
}

#[test]
fn udp_outbound_rewrite_replaces_by_instance_and_tcp_ignores_received() {
    let t0 = origin();
    // Outbound: the registrar replaces the binding of our instance and reg-id by itself.
    let mut reg = Registration::new(udp_config(true));
    reg.start(t0);
    reg.handle_flow_up(t0, local(5070));
    let r1 = one_request(&mut reg);
    reg.handle_response(t0, &ok_seen(&r1, public(40000)));
    let r2 = one_request(&mut reg);
    assert_eq!(
        contacts(&r2),
        vec![format!(
            "<sip:alice@203.0.113.7:40000;transport=udp;ob>;+sip.instance=\"<{INSTANCE}>\";reg-id=1"
        )]
    );
    // A new flow (new local port) forgets the address learned on the old one.
    reg.handle_flow_up(t0 + S, local(5072));
    assert_eq!(reg.public_addr(), None);
    let r3 = one_request(&mut reg);
    assert!(contacts(&r3)[0].starts_with("<sip:alice@10.0.0.1:5072;"));

    // Over TCP the Via's received/rport do not change the Contact (RFC 5626 flows instead).
    let mut cfg = config();
    cfg.credentials = None;
    let mut tcp = Registration::new(cfg);
    tcp.start(t0);
    tcp.handle_flow_up(t0, local(5070));
    let r = one_request(&mut tcp);
    tcp.handle_response(t0, &ok_seen(&r, public(40000)));
    assert_eq!(
        events(&mut tcp),
        vec![RegistrationEvent::Registered { expires: 300 }]
    );
    assert!(tcp.poll_request().is_none());
    assert_eq!(tcp.public_addr(), None);
}
