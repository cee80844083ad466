//! Tests of message parsing ([`super::parse`]) and the typed value parsers ([`super::values`]).

use super::testdata;
use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn request(text: &str) -> Request {
    match Message::parse(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {r:?}"),
    }
}

fn response(text: &str) -> Response {
    match Message::parse(text.as_bytes()).unwrap() {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {r:?}"),
    }
}

const BASIC: &str = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
    Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
    From: <sip:alice@example.com>;tag=a\r\n\
    To: <sip:bob@example.com>\r\n\
    Call-ID: c1@x\r\n\
    CSeq: 1 OPTIONS\r\n\
    Content-Length: 0\r\n\r\n";

#[test]
fn basic_request() {
    let r = request(BASIC);
    assert_eq!(r.method, Method::Options);
    assert_eq!(r.uri.user.as_deref(), Some("bob"));
    assert_eq!(r.headers.len(), 6);
    assert_eq!(r.headers.call_id(), Some("c1@x"));
    assert_eq!(r.headers.cseq().unwrap().seq, 1);
    assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bK1"));
    assert!(r.body.is_empty());
}

#[test]
fn folded_header_is_unfolded() {
    let r = request(
        "OPTIONS sip:b@x SIP/2.0\r\nSubject: I know you're there,\r\n   pick up the phone\r\n\
         \tand talk to me!\r\nCall-ID: 1\r\n\r\n",
    );
    assert_eq!(
        r.headers.get(&HeaderName::Subject),
        Some("I know you're there, pick up the phone and talk to me!")
    );
    assert_eq!(r.headers.call_id(), Some("1"));
    assert_eq!(r.headers.len(), 2);
}

#[test]
fn folded_first_line_is_an_error() {
    let err = Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\n  folded\r\n\r\n").unwrap_err();
    assert!(matches!(err, ParseError::HeaderLine(_)), "{err:?}");
}

#[test]
fn space_before_colon() {
    let r = request(
        "OPTIONS sip:b@x SIP/2.0\r\nVia : SIP/2.0/UDP h;branch=z9hG4bKx\r\nTo\t: <sip:b@x>\r\n\r\n",
    );
    assert_eq!(r.headers.top_via().unwrap().host, Host::Domain("h".into()));
    assert_eq!(r.headers.to().unwrap().uri.user.as_deref(), Some("b"));
}

#[test]
fn every_compact_name_is_expanded() {
    let cases = [
        ("i", HeaderName::CallId),
        ("f", HeaderName::From),
        ("l", HeaderName::ContentLength),
        ("m", HeaderName::Contact),
        ("t", HeaderName::To),
        ("v", HeaderName::Via),
        ("c", HeaderName::ContentType),
        ("k", HeaderName::Supported),
        ("s", HeaderName::Subject),
        ("e", HeaderName::ContentEncoding),
        ("o", HeaderName::Event),
        ("r", HeaderName::ReferTo),
        ("u", HeaderName::AllowEvents),
    ];
    for (compact, name) in cases {
        for spelled in [compact.to_string(), compact.to_uppercase()] {
            let value = if name == HeaderName::ContentLength {
                "0"
            } else {
                "x-value"
            };
            let r = request(&format!(
                "OPTIONS sip:b@x SIP/2.0\r\n{spelled}: {value}\r\n\r\n"
            ));
            let h = r.headers.iter().next().unwrap();
            assert_eq!(h.name, name, "compact {spelled}");
            assert_eq!(h.value, value);
        }
    }
}

#[test]
fn lf_only_line_endings() {
    let text = BASIC.replace("\r\n", "\n");
    let r = request(&text);
    assert_eq!(r, request(BASIC));
}

#[test]
fn mixed_line_endings() {
    let text = "OPTIONS sip:b@x SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nCall-ID: m\n\
                Content-Length: 4\r\n\nbody";
    let r = request(text);
    assert_eq!(r.headers.call_id(), Some("m"));
    assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bK2"));
    assert_eq!(r.body, b"body");
}

#[test]
fn ipv6_request_uri() {
    let r = request("INVITE sip:[2001:db8::1]:5060 SIP/2.0\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.uri.host, Host::V6("2001:db8::1".parse().unwrap()));
    assert_eq!(r.uri.port, Some(5060));
    assert_eq!(r.uri.to_string(), "sip:[2001:db8::1]:5060");
}

#[test]
fn ipv6_via_sent_by_and_received() {
    let via = Via::parse(
        "SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bKv6;received=2001:db8::1;rport=5071",
    )
    .unwrap();
    assert_eq!(via.host, Host::V6("2001:db8::9".parse().unwrap()));
    assert_eq!(via.port, Some(5070));
    assert_eq!(via.received(), Some("2001:db8::1"));
    assert_eq!(via.rport(), Some(5071));
    assert_eq!(via.transport, "TCP");

    let via = Via::parse("SIP/2.0/UDP [2001:db8::9];received=[2001:db8::1];rport").unwrap();
    assert_eq!(via.port, None);
    assert_eq!(via.received(), Some("[2001:db8::1]"));
    assert_eq!(
        Host::parse(via.received().unwrap()),
        Host::V6("2001:db8::1".parse().unwrap())
    );
    assert!(via.params.has("rport"));
    assert_eq!(via.rport(), None);
}

#[test]
fn via_whitespace_tolerated() {
    let via =
        Via::parse("SIP / 2.0 / tcp  host.example.com:5060 ; branch = z9hG4bKw ;rport").unwrap();
    assert_eq!(via.transport, "TCP");
    assert_eq!(via.host, Host::Domain("host.example.com".into()));
    assert_eq!(via.branch(), Some("z9hG4bKw"));
    assert!(via.params.has("rport"));
    assert!(Via::parse("SIP/2.0/TCP").is_err());
    assert!(Via::parse("SIP/3.0/TCP h").is_err());
    assert!(Via::parse("SIP/2.0/TCP [::1").is_err());
}

#[test]
fn tel_uri() {
    let r = request("INVITE tel:+15551234 SIP/2.0\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.uri.scheme, Scheme::Tel);
    assert_eq!(r.uri.user.as_deref(), Some("+15551234"));
    assert_eq!(r.uri.to_string(), "tel:+15551234");
    let uri = Uri::parse("TEL:+1-555-1234;phone-context=example.com").unwrap();
    assert_eq!(uri.params.get("phone-context"), Some(Some("example.com")));
}

#[test]
fn reason_phrase_kept_exactly() {
    let r = response("SIP/2.0 200 Very OK Indeed\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((r.status, r.reason.as_str()), (200, "Very OK Indeed"));
    let r = response("SIP/2.0 486 \r\nContent-Length: 0\r\n\r\n");
    assert_eq!((r.status, r.reason.as_str()), (486, ""));
    let r = response("SIP/2.0 180\r\n\r\n");
    assert_eq!((r.status, r.reason.as_str()), (180, ""));
    let r = response("SIP/2.0 183  Two  spaces \r\n\r\n");
    assert_eq!(r.reason, " Two  spaces ");
}

#[test]
fn bad_start_lines() {
    for bad in [
        "SIP/2.0 099 Low\r\n\r\n",
        "SIP/2.0 700 High\r\n\r\n",
        "SIP/2.0 2000 Long\r\n\r\n",
        "SIP/2.0 abc x\r\n\r\n",
        "INVITE sip:b@x\r\n\r\n",
        "INVITE  sip:b@x SIP/2.0\r\n\r\n",
        "INV(TE sip:b@x SIP/2.0\r\n\r\n",
        "INVITE sip:b@x HTTP/1.1\r\n\r\n",
        "INVITE http://x SIP/2.0\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
    ] {
        assert!(Message::parse(bad.as_bytes()).is_err(), "{bad:?} parsed");
    }
    assert!(matches!(
        Message::parse(b"SIP/3.0 200 OK\r\n\r\n"),
        Err(ParseError::Version(_))
    ));
    assert!(matches!(
        Message::parse(b"INVITE sip:b@x SIP/2.1\r\n\r\n"),
        Err(ParseError::Version(_))
    ));
}

#[test]
fn bad_header_lines() {
    assert!(matches!(
        Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\nNo colon here\r\n\r\n"),
        Err(ParseError::HeaderLine(_))
    ));
    assert!(matches!(
        Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\n: empty name\r\n\r\n"),
        Err(ParseError::HeaderLine(_))
    ));
    assert!(matches!(
        Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\nTo: x\r\n"),
        Err(ParseError::HeaderLine(_))
    ));
    assert!(matches!(
        Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\nTo: \xff\xfe\r\n\r\n"),
        Err(ParseError::NotUtf8)
    ));
}

#[test]
fn unknown_headers_kept_in_order() {
    let r = request(
        "OPTIONS sip:b@x SIP/2.0\r\nX-First: 1\r\nCall-ID: c\r\nx-second: two\r\n\
         Accept-Encoding: gzip\r\nX-First: 3\r\n\r\n",
    );
    let got: Vec<(String, &str)> = r
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("X-First".to_string(), "1"),
            ("Call-ID".to_string(), "c"),
            ("x-second".to_string(), "two"),
            ("Accept-Encoding".to_string(), "gzip"),
            ("X-First".to_string(), "3"),
        ]
    );
    let name = HeaderName::Other("X-First".into());
    assert_eq!(r.headers.get_all(&name).collect::<Vec<_>>(), ["1", "3"]);
}

#[test]
fn multiple_via_in_one_field_and_in_several() {
    let one = request(
        "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1, SIP/2.0/UDP b:5062;branch=z9hG4bK2\r\n\r\n",
    );
    let several = request(
        "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\nv: SIP/2.0/UDP b:5062;branch=z9hG4bK2\r\n\r\n",
    );
    for r in [&one, &several] {
        let vias: Vec<Via> = r
            .headers
            .list(&HeaderName::Via)
            .map(|v| Via::parse(v).unwrap())
            .collect();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[0].branch(), Some("z9hG4bK1"));
        assert_eq!(vias[1].host, Host::Domain("b".into()));
        assert_eq!(vias[1].port, Some(5062));
        assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bK1"));
    }
    assert_eq!(one.headers.len(), 1);
    assert_eq!(several.headers.len(), 2);
}

#[test]
fn softphone_invite() {
    let r = match Message::parse(testdata::INVITE).unwrap() {
        Message::Request(r) => r,
        other => panic!("{other:?}"),
    };
    assert!((850..=1000).contains(&testdata::INVITE.len()));
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri.host, Host::Domain("biloxi.example.com".into()));
    let via = r.headers.top_via().unwrap();
    assert_eq!(via.host, Host::V4(Ipv4Addr::new(192, 0, 2, 10)));
    assert_eq!(via.port, Some(52044));
    assert!(via.params.has("rport"));
    assert_eq!(r.headers.get(&HeaderName::MaxForwards), Some("70"));
    let route = NameAddr::parse(r.headers.get(&HeaderName::Route).unwrap()).unwrap();
    assert!(route.uri.params.has("lr"));
    assert_eq!(r.headers.record_routes().len(), 1);
    let from = r.headers.from().unwrap();
    assert_eq!(from.display.as_deref(), Some("Alice Liddell"));
    assert_eq!(from.tag(), Some("9fxced76sl"));
    assert_eq!(r.headers.to().unwrap().tag(), None);
    let contact = &r.headers.contacts()[0];
    assert_eq!(contact.uri.transport().as_deref(), Some("tcp"));
    assert!(contact.uri.params.has("ob"));
    assert_eq!(
        contact.params.get("+sip.instance"),
        Some(Some("\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\""))
    );
    assert_eq!(r.headers.list(&HeaderName::Allow).count(), 8);
    assert!(r
        .headers
        .tokens(&HeaderName::Supported)
        .any(|t| t == "outbound"));
    assert_eq!(
        r.headers.get(&HeaderName::UserAgent),
        Some("Linphone/5.2.4")
    );
    assert_eq!(
        r.headers.cseq().unwrap(),
        CSeq {
            seq: 31862,
            method: Method::Invite
        }
    );
    assert_eq!(r.headers.content_type().as_deref(), Some("application/sdp"));
    assert_eq!(r.headers.content_length(), Some(r.body.len()));
    assert!(r.body.starts_with(b"v=0\r\n"));
}

#[test]
fn sipp_invite() {
    let Message::Request(r) = Message::parse(testdata::SIPP_INVITE).unwrap() else {
        panic!("not a request");
    };
    assert_eq!(r.uri.port, Some(5060));
    assert_eq!(r.uri.host, Host::V4(Ipv4Addr::LOCALHOST));
    let contact = &r.headers.contacts()[0];
    // Bare addr-spec: `;transport=TCP` belongs to the header, not the URI (RFC 3261 §20).
    assert_eq!(contact.uri.port, Some(5061));
    assert!(contact.uri.params.0.is_empty());
    assert_eq!(contact.params.get("transport"), Some(Some("TCP")));
    assert_eq!(r.headers.from().unwrap().display.as_deref(), Some("sipp"));
    assert_eq!(r.headers.content_length(), Some(129));
    assert_eq!(r.body.len(), 129);
}

#[test]
fn kamailio_ok_with_record_route() {
    let Message::Response(r) = Message::parse(testdata::KAMAILIO_200_OK).unwrap() else {
        panic!("not a response");
    };
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    let rr = r.headers.record_routes();
    assert_eq!(rr.len(), 3);
    assert_eq!(rr[0].uri.params.get("r2"), Some(Some("on")));
    assert_eq!(rr[0].uri.params.get("did"), Some(Some("7a1.b3c2")));
    assert_eq!(rr[2].uri.host, Host::V4(Ipv4Addr::new(10, 0, 0, 5)));
    let via = r.headers.top_via().unwrap();
    assert_eq!(via.received(), Some("203.0.113.7"));
    assert_eq!(via.rport(), Some(61022));
    assert_eq!(r.headers.to().unwrap().tag(), Some("8321234356"));
    assert_eq!(
        r.headers.get(&HeaderName::Server),
        Some("kamailio (5.7.4 (x86_64/linux))")
    );
}

#[test]
fn round_trip() {
    for bytes in [
        testdata::INVITE,
        testdata::SIPP_INVITE,
        testdata::KAMAILIO_200_OK,
        BASIC.as_bytes(),
    ] {
        let first = Message::parse(bytes).unwrap();
        let again = Message::parse(&first.to_bytes()).unwrap();
        assert_eq!(first, again);
    }
    // The serializer writes canonical text: compact names expanded, folding undone.
    let folded = "OPTIONS sip:b@x SIP/2.0\nv : SIP/2.0/TCP h;branch=z9hG4bK3\ns: a\n b\n\n";
    let first = Message::parse(folded.as_bytes()).unwrap();
    let text = String::from_utf8(first.to_bytes()).unwrap();
    assert!(text.contains("Via: SIP/2.0/TCP h;branch=z9hG4bK3\r\nSubject: a b\r\n"));
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    assert_eq!(Message::parse(text.as_bytes()).unwrap().headers().len(), 3);
}

#[test]
fn content_length_checked() {
    let err =
        Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\nContent-Length: 5\r\n\r\nabc").unwrap_err();
    assert_eq!(
        err,
        ParseError::ContentLength {
            declared: 5,
            actual: 3
        }
    );
    let err = Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\nl: 1\r\n\r\nabc").unwrap_err();
    assert_eq!(
        err,
        ParseError::ContentLength {
            declared: 1,
            actual: 3
        }
    );
    assert!(matches!(
        Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\nContent-Length: x\r\n\r\n"),
        Err(ParseError::HeaderValue {
            header: "Content-Length",
            ..
        })
    ));
    // Absent Content-Length: the body is whatever follows.
    let r = request("OPTIONS sip:b@x SIP/2.0\r\nCall-ID: 1\r\n\r\nabc");
    assert_eq!(r.body, b"abc");
}

#[test]
fn binary_and_large_bodies() {
    let body: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    let mut bytes =
        format!("MESSAGE sip:b@x SIP/2.0\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", body.len())
            .into_bytes();
    bytes.extend_from_slice(&body);
    let Message::Request(r) = Message::parse(&bytes).unwrap() else {
        panic!("not a request");
    };
    assert_eq!(r.method, Method::Message);
    assert_eq!(r.body, body);
    // A body that itself contains an empty line stays intact.
    let r = request("MESSAGE sip:b@x SIP/2.0\r\nl: 6\r\n\r\na\r\n\r\nb");
    assert_eq!(r.body, b"a\r\n\r\nb");
}

#[test]
fn leading_crlf_is_ignored() {
    let r = request(&format!("\r\n\r\n{BASIC}"));
    assert_eq!(r.method, Method::Options);
}

#[test]
fn uri_forms() {
    let uri = Uri::parse("SIPS:alice:secret@Example.COM:5061;transport=tls;lr;maddr=10.0.0.1?subject=hi&priority=urgent").unwrap();
    assert_eq!(uri.scheme, Scheme::Sips);
    assert_eq!(uri.user.as_deref(), Some("alice"));
    assert_eq!(uri.password.as_deref(), Some("secret"));
    assert_eq!(uri.host, Host::Domain("Example.COM".into()));
    assert_eq!(uri.port, Some(5061));
    let names: Vec<&str> = uri.params.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["transport", "lr", "maddr"]);
    assert_eq!(uri.params.get("lr"), Some(None));
    assert_eq!(
        uri.headers,
        [
            ("subject".into(), "hi".into()),
            ("priority".into(), "urgent".into())
        ]
    );
    assert_eq!(uri.to_string(), "sips:alice:secret@Example.COM:5061;transport=tls;lr;maddr=10.0.0.1?subject=hi&priority=urgent");
    let v6 = Uri::parse("sip:bob@[::1]").unwrap();
    assert_eq!(v6.host, Host::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(v6.port, None);
    for bad in [
        "",
        "sip:",
        "http://x",
        "sip:@x",
        "sip:x:99999",
        "sip:x:",
        "sip:x:5a",
        "sip:[::1",
        "sip:[zz]",
        "sip:2001:db8::1",
        "sip:a b",
        "tel:",
        "sip:x;=v",
        "sip:[::1]x",
    ] {
        assert!(Uri::parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn name_addr_forms() {
    let na = NameAddr::parse(r#""Bob \"the\" \\ Builder" <sip:bob@x>;tag=9;expires=60"#).unwrap();
    assert_eq!(na.display.as_deref(), Some(r#"Bob "the" \ Builder"#));
    assert_eq!(na.tag(), Some("9"));
    assert_eq!(na.params.get("expires"), Some(Some("60")));
    assert_eq!(NameAddr::parse(&na.to_string()).unwrap(), na);

    let na = NameAddr::parse("Bob Smith <sip:bob@x;transport=tcp>").unwrap();
    assert_eq!(na.display.as_deref(), Some("Bob Smith"));
    assert_eq!(na.uri.transport().as_deref(), Some("tcp"));
    assert!(na.params.0.is_empty());

    let na = NameAddr::parse("sip:bob@x;tag=77").unwrap();
    assert_eq!(na.display, None);
    assert!(na.uri.params.0.is_empty());
    assert_eq!(na.tag(), Some("77"));

    let na = NameAddr::parse("<sip:[2001:db8::2]:5070;lr>").unwrap();
    assert_eq!(na.uri.port, Some(5070));
    assert!(na.uri.params.has("lr"));

    for bad in [
        "",
        "\"open <sip:b@x>",
        "<sip:b@x",
        "<sip:b@x> junk",
        "\"x\" sip:b@x",
        "<http://x>",
    ] {
        assert!(NameAddr::parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn cseq_forms() {
    assert_eq!(
        CSeq::parse("4711 INVITE").unwrap(),
        CSeq {
            seq: 4711,
            method: Method::Invite
        }
    );
    assert_eq!(
        CSeq::parse(" 1\tFOO ").unwrap().method,
        Method::Other("FOO".into())
    );
    assert_eq!(CSeq::parse("2147483647 BYE").unwrap().seq, 2_147_483_647);
    for bad in [
        "",
        "1",
        "INVITE",
        "x INVITE",
        "-1 INVITE",
        "2147483648 BYE",
        "1 INVITE x",
        "1 IN<VITE",
    ] {
        assert!(CSeq::parse(bad).is_err(), "{bad:?} parsed");
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::parse(&bytes);
    }

    #[test]
    fn mutated_invite_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..12)
    ) {
        let mut bytes = testdata::INVITE.to_vec();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        if let Ok(m) = Message::parse(&bytes) {
            // Whatever parsed must serialise and parse again.
            let _ = Message::parse(&m.to_bytes());
        }
    }

    #[test]
    fn random_text_values_never_panic(value in "[ -~\t]{0,80}") {
        let _ = Uri::parse(&value);
        let _ = Via::parse(&value);
        let _ = NameAddr::parse(&value);
        let _ = CSeq::parse(&value);
    }

    #[test]
    fn own_ipv4_reader_agrees_with_the_standard_one(text in "[0-9.]{0,18}|[0-9]{1,4}(\\.[0-9]{1,4}){3}") {
        prop_assert_eq!(super::values::ipv4(&text), text.parse::<Ipv4Addr>().ok());
    }

    #[test]
    fn fast_trims_agree_with_str_trims(text in "[ \t\r\n\u{0b}\u{0c}a\u{a0}\u{3000}é;=]{0,12}") {
        prop_assert_eq!(super::parse::trim(&text), text.trim());
        prop_assert_eq!(super::parse::trim_start(&text), text.trim_start());
        prop_assert_eq!(super::parse::trim_end(&text), text.trim_end());
    }

    #[test]
    fn word_control_test_agrees_with_the_byte_test(bytes in proptest::collection::vec(
        prop_oneof![Just(0x20u8), Just(0x21), Just(0x7f), Just(0x80), Just(0xa0), Just(0), any::<u8>()],
        0..40,
    )) {
        prop_assert_eq!(
            super::values::has_space_or_control(&bytes),
            bytes.iter().any(|&b| b <= b' ' || b == 0x7f)
        );
    }

    #[test]
    fn list_splitting_jumps_agree_with_a_byte_walk(text in "[a,<>\"\\\\ ]{0,24}") {
        let got: Vec<&str> = super::typed::split_list(&text).collect();
        prop_assert_eq!(got, split_list_by_bytes(&text));
    }
}

/// The element splitter as it was, one byte at a time: the reference for the jumping one.
fn split_list_by_bytes(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = Some(value);
    while let Some(value) = rest {
        let (mut in_quote, mut in_angle, mut escaped) = (false, false, false);
        let mut cut = None;
        for (i, &b) in value.as_bytes().iter().enumerate() {
            if escaped {
                escaped = false;
                continue;
            }
            match b {
                b'\\' if in_quote => escaped = true,
                b'"' => in_quote = !in_quote,
                b'<' if !in_quote => in_angle = true,
                b'>' if !in_quote => in_angle = false,
                b',' if !in_quote && !in_angle => {
                    cut = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let part = match cut {
            Some(i) => {
                rest = Some(&value[i + 1..]);
                &value[..i]
            }
            None => {
                rest = None;
                value
            }
        };
        let part = part.trim();
        if !part.is_empty() {
            out.push(part);
        }
    }
    out
}
