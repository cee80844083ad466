//! Tests of RFC 3263 server location: NAPTR, SRV (priority, weight) and address lookups, the
//! transport choice, and how failures and silent servers are named.

use super::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
    Srv {
        priority,
        weight,
        port,
        target: target.into(),
    }
}

fn naptr(order: u16, preference: u16, services: &str, replacement: &str) -> Naptr {
    Naptr {
        order,
        preference,
        flags: "S".into(),
        services: services.into(),
        replacement: replacement.into(),
    }
}

/// A fake zone: answers by query; anything missing has no records.
#[derive(Default)]
struct Zone {
    answers: HashMap<Query, Answer>,
    asked: Vec<Query>,
}

impl Zone {
    fn with(mut self, q: Query, a: Answer) -> Self {
        self.answers.insert(q, a);
        self
    }

    fn resolve(
        &mut self,
        uri: &str,
        policy: Policy,
        seed: u64,
    ) -> Result<Vec<Target>, ResolveError> {
        let uri = Uri::parse(uri).unwrap();
        let mut r = Rfc3263::new(Destination::from_uri(&uri), policy);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut rounds = 0;
        while let Some(q) = r.poll_query() {
            rounds += 1;
            assert!(rounds < 100, "resolution does not end");
            self.asked.push(q.clone());
            let a = self
                .answers
                .get(&q)
                .cloned()
                .unwrap_or(Answer::Failed(LookupError::NoRecords));
            r.handle_answer(&q, a, &mut rng);
        }
        assert!(r.is_done());
        r.finish()
    }
}

fn a(name: &str) -> Query {
    Query::A(name.into())
}

fn ips(list: &[&str]) -> Answer {
    Answer::Addresses(list.iter().map(|s| s.parse().unwrap()).collect())
}

fn tcp(addr: &str) -> Target {
    Target {
        transport: Transport::Tcp,
        addr: addr.parse().unwrap(),
    }
}

fn both() -> Policy {
    Policy {
        supported: vec![Transport::Tcp, Transport::Udp],
        default: Transport::Tcp,
    }
}

#[test]
fn numeric_ip_needs_no_lookup() {
    let mut z = Zone::default();
    let t = z.resolve("sip:192.0.2.7", Policy::default(), 1).unwrap();
    assert_eq!(t, vec![tcp("192.0.2.7:5060")]);
    let t = z
        .resolve("sip:[2001:db8::1]:5070", Policy::default(), 1)
        .unwrap();
    assert_eq!(t, vec![tcp("[2001:db8::1]:5070")]);
    let t = z
        .resolve("sip:LocalHost:5070", Policy::default(), 1)
        .unwrap();
    assert_eq!(t, vec![tcp("127.0.0.1:5070"), tcp("[::1]:5070")]);
    assert!(z.asked.is_empty());
}

#[test]
fn explicit_port_asks_only_addresses() {
    let mut z = Zone::default()
        .with(a("pbx.example.test"), ips(&["192.0.2.1"]))
        .with(
            Query::Aaaa("pbx.example.test".into()),
            ips(&["2001:db8::5"]),
        );
    let t = z
        .resolve("sip:pbx.example.test:5080", Policy::default(), 1)
        .unwrap();
    assert_eq!(
        t,
        vec![tcp("192.0.2.1:5080"), tcp("[2001:db8::5]:5080")],
        "IPv4 first, then IPv6"
    );
    assert_eq!(
        z.asked,
        vec![
            a("pbx.example.test"),
            Query::Aaaa("pbx.example.test".into())
        ]
    );
}

#[test]
fn naptr_then_srv_then_addresses() {
    let mut z = Zone::default()
        .with(
            Query::Naptr("example.test".into()),
            Answer::Naptr(vec![
                naptr(20, 10, "SIP+D2T", "_sip._tcp.example.test."),
                naptr(10, 10, "SIP+D2U", "_sip._udp.example.test."),
                naptr(5, 10, "SIPS+D2T", "_sips._tcp.example.test."),
            ]),
        )
        .with(
            Query::Srv("_sip._udp.example.test".into()),
            Answer::Srv(vec![srv(10, 1, 5062, "u.example.test.")]),
        )
        .with(
            Query::Srv("_sip._tcp.example.test".into()),
            Answer::Srv(vec![srv(10, 1, 5063, "t.example.test.")]),
        )
        .with(a("u.example.test"), ips(&["192.0.2.2"]))
        .with(a("t.example.test"), ips(&["192.0.2.3"]));
    let t = z.resolve("sip:example.test", both(), 1).unwrap();
    // The TLS record is skipped (not supported); UDP has the lower order.
    assert_eq!(
        t,
        vec![
            Target {
                transport: Transport::Udp,
                addr: "192.0.2.2:5062".parse().unwrap()
            },
            tcp("192.0.2.3:5063"),
        ]
    );
    assert!(!z
        .asked
        .contains(&Query::Srv("_sips._tcp.example.test".into())));
}

#[test]
fn no_naptr_tries_srv_per_transport_default_first() {
    let mut z = Zone::default()
        .with(
            Query::Srv("_sip._udp.example.test".into()),
            Answer::Srv(vec![srv(1, 1, 5062, "u.example.test")]),
        )
        .with(
            Query::Srv("_sip._tcp.example.test".into()),
            Answer::Srv(vec![srv(1, 1, 5063, "t.example.test")]),
        )
        .with(a("u.example.test"), ips(&["192.0.2.2"]))
        .with(a("t.example.test"), ips(&["192.0.2.3"]));
    let t = z.resolve("sip:example.test", both(), 1).unwrap();
    assert_eq!(t[0], tcp("192.0.2.3:5063"), "TCP is our default");
    assert_eq!(t[1].transport, Transport::Udp);
    let udp_default = Policy {
        default: Transport::Udp,
        ..both()
    };
    let t = z.resolve("sip:example.test", udp_default, 1).unwrap();
    assert_eq!(t[0].transport, Transport::Udp, "the default is a parameter");
}

#[test]
fn srv_priority_orders_failover() {
    let mut z = Zone::default()
        .with(
            Query::Srv("_sip._tcp.example.test".into()),
            Answer::Srv(vec![
                srv(20, 1, 5002, "live.example.test"),
                srv(10, 1, 5001, "dead.example.test"),
            ]),
        )
        .with(a("dead.example.test"), ips(&["192.0.2.1"]))
        .with(a("live.example.test"), ips(&["192.0.2.2"]));
    let t = z.resolve("sip:example.test", Policy::default(), 7).unwrap();
    assert_eq!(t, vec![tcp("192.0.2.1:5001"), tcp("192.0.2.2:5002")]);
}

#[test]
fn explicit_transport_skips_naptr() {
    let mut z = Zone::default()
        .with(
            Query::Srv("_sip._tcp.example.test".into()),
            Answer::Srv(vec![srv(1, 1, 5070, "h.example.test")]),
        )
        .with(a("h.example.test"), ips(&["192.0.2.9"]));
    let t = z
        .resolve("sip:example.test;transport=tcp", Policy::default(), 1)
        .unwrap();
    assert_eq!(t, vec![tcp("192.0.2.9:5070")]);
    assert!(!z.asked.iter().any(|q| matches!(q, Query::Naptr(_))));
}

#[test]
fn no_srv_falls_back_to_host_addresses_on_default_port() {
    let mut z = Zone::default().with(a("example.test"), ips(&["192.0.2.4"]));
    let t = z.resolve("sip:example.test", Policy::default(), 1).unwrap();
    assert_eq!(t, vec![tcp("192.0.2.4:5060")]);
}

#[test]
fn srv_dot_target_means_no_service() {
    let mut z = Zone::default()
        .with(
            Query::Srv("_sip._tcp.example.test".into()),
            Answer::Srv(vec![srv(0, 0, 0, ".")]),
        )
        .with(a("example.test"), ips(&["192.0.2.4"]));
    let t = z.resolve("sip:example.test", Policy::default(), 1).unwrap();
    assert_eq!(t, vec![tcp("192.0.2.4:5060")]);
}

#[test]
fn unsupported_transport_and_sips_are_refused_without_dns() {
    let mut z = Zone::default();
    let e = z
        .resolve("sips:example.test", Policy::default(), 1)
        .unwrap_err();
    assert!(matches!(e, ResolveError::Unsupported(..)), "{e}");
    let e = z
        .resolve("sip:192.0.2.1;transport=udp", Policy::default(), 1)
        .unwrap_err();
    assert!(e.to_string().contains("udp is not available"), "{e}");
    assert!(z.asked.is_empty());
}

#[test]
fn failures_are_named() {
    let mut z = Zone::default();
    let e = z
        .resolve("sip:example.test", Policy::default(), 1)
        .unwrap_err();
    assert_eq!(e.to_string(), "resolve example.test: no records");
    let mut z = Zone::default().with(
        Query::Naptr("example.test".into()),
        Answer::Failed(LookupError::TimedOut),
    );
    let e = z
        .resolve("sip:example.test", Policy::default(), 1)
        .unwrap_err();
    assert_eq!(e.to_string(), "resolve example.test: timed out");
    let mut z = Zone::default().with(
        a("example.test"),
        Answer::Failed(LookupError::Other("SERVFAIL".into())),
    );
    let e = z
        .resolve("sip:example.test:5060", Policy::default(), 1)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "resolve example.test: A example.test: SERVFAIL"
    );
}

#[test]
fn a_silent_server_is_given_up_after_two_timeouts() {
    let mut z = Zone::default();
    for q in [
        Query::Naptr("example.test".into()),
        Query::Srv("_sip._tcp.example.test".into()),
        a("example.test"),
        Query::Aaaa("example.test".into()),
    ] {
        z = z.with(q, Answer::Failed(LookupError::TimedOut));
    }
    let e = z
        .resolve("sip:example.test", Policy::default(), 1)
        .unwrap_err();
    assert_eq!(e, ResolveError::TimedOut("example.test".into()));
    assert_eq!(z.asked.len(), 2, "{:?}", z.asked);
    // A dropped NAPTR alone does not stop the search.
    let mut z = Zone::default()
        .with(
            Query::Naptr("example.test".into()),
            Answer::Failed(LookupError::TimedOut),
        )
        .with(
            Query::Srv("_sip._tcp.example.test".into()),
            Answer::Srv(vec![srv(1, 1, 5070, "h.example.test")]),
        )
        .with(a("h.example.test"), ips(&["192.0.2.9"]));
    let t = z.resolve("sip:example.test", Policy::default(), 1).unwrap();
    assert_eq!(t, vec![tcp("192.0.2.9:5070")]);
}

#[test]
fn shared_srv_host_is_looked_up_once() {
    let mut z = Zone::default()
        .with(
            Query::Srv("_sip._tcp.example.test".into()),
            Answer::Srv(vec![
                srv(1, 1, 5001, "h.example.test"),
                srv(2, 1, 5002, "h.example.test"),
            ]),
        )
        .with(a("h.example.test"), ips(&["192.0.2.5"]));
    let t = z.resolve("sip:example.test", Policy::default(), 1).unwrap();
    assert_eq!(t, vec![tcp("192.0.2.5:5001"), tcp("192.0.2.5:5002")]);
    assert_eq!(
        z.asked
            .iter()
            .filter(|q| **q == a("h.example.test"))
            .count(),
        1
    );
}

#[test]
fn dns_picks_the_transport_only_for_a_bare_domain() {
    let picks = |u: &str| Destination::from_uri(&Uri::parse(u).unwrap()).dns_picks_transport();
    assert!(picks("sip:example.test"));
    assert!(picks("sip:bob@pbx.example.test"));
    assert!(!picks("sip:example.test:5060"), "explicit port");
    assert!(
        !picks("sip:example.test;transport=tcp"),
        "explicit transport"
    );
    assert!(!picks("sips:example.test"), "sips is TLS");
    assert!(!picks("sip:192.0.2.1"), "numeric");
    assert!(!picks("sip:[2001:db8::1]"), "numeric");
    assert!(!picks("sip:localhost"), "loopback by name");
    let p = Policy::udp_or_tcp(Transport::Tls);
    assert_eq!((p.default, p.supported.len()), (Transport::Tcp, 2));
}

#[test]
fn naptr_or_srv_decide_the_transport_under_udp_or_tcp() {
    // NAPTR offers UDP only: UDP, whatever our default.
    let mut z = Zone::default()
        .with(
            Query::Naptr("example.test".into()),
            Answer::Naptr(vec![naptr(10, 10, "SIP+D2U", "_sip._udp.example.test")]),
        )
        .with(
            Query::Srv("_sip._udp.example.test".into()),
            Answer::Srv(vec![srv(1, 1, 5062, "u.example.test")]),
        )
        .with(a("u.example.test"), ips(&["192.0.2.2"]));
    let t = z
        .resolve("sip:example.test", Policy::udp_or_tcp(Transport::Tcp), 1)
        .unwrap();
    assert_eq!(t[0].transport, Transport::Udp);
    assert!(!z
        .asked
        .contains(&Query::Srv("_sip._tcp.example.test".into())));
    // No NAPTR, only `_sip._tcp` SRV: TCP, even with UDP as the default.
    let mut z = Zone::default()
        .with(
            Query::Srv("_sip._tcp.example.test".into()),
            Answer::Srv(vec![srv(1, 1, 5063, "t.example.test")]),
        )
        .with(a("t.example.test"), ips(&["192.0.2.3"]));
    let t = z
        .resolve("sip:example.test", Policy::udp_or_tcp(Transport::Udp), 1)
        .unwrap();
    assert_eq!(t, vec![tcp("192.0.2.3:5063")]);
    // No NAPTR, no SRV: the default transport on the host's address.
    let mut z = Zone::default().with(a("example.test"), ips(&["192.0.2.4"]));
    let t = z
        .resolve("sip:example.test", Policy::udp_or_tcp(Transport::Tcp), 1)
        .unwrap();
    assert_eq!(t, vec![tcp("192.0.2.4:5060")]);
}

#[test]
fn weights_share_first_place_in_proportion() {
    let records = vec![
        srv(1, 90, 1, "heavy"),
        srv(1, 10, 2, "light"),
        srv(0, 0, 3, "top"),
    ];
    let mut rng = StdRng::seed_from_u64(42);
    let mut heavy_first = 0;
    for _ in 0..2000 {
        let o = order_srv(&records, &mut rng);
        assert_eq!(o.len(), 3);
        assert_eq!(o[0].target, "top", "lowest priority value first");
        if o[1].target == "heavy" {
            heavy_first += 1;
        }
    }
    // Expect about 90 %.
    assert!((1700..=1900).contains(&heavy_first), "{heavy_first}");
}

#[test]
fn zero_weight_is_still_tried() {
    let records = vec![srv(1, 0, 1, "zero"), srv(1, 5, 2, "five")];
    let mut rng = StdRng::seed_from_u64(3);
    let o = order_srv(&records, &mut rng);
    assert_eq!(o.len(), 2);
    assert!(o.iter().any(|r| r.target == "zero"));
}
