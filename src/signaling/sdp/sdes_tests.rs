//! Offer/answer with SDES (RFC 4568) under each SRTP policy, both roles.

use std::net::SocketAddr;

use super::crypto::{crypto_lines, CryptoLine};
use super::*;

const PREFS: [Codec; 3] = [Codec::Opus, Codec::Pcmu, Codec::Pcma];
const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn session(policy: SrtpPolicy) -> SdpSession {
    SdpSession::new("-", 5, 1).with_srtp(policy)
}

fn offer(policy: SrtpPolicy) -> (SdpSession, SessionDescription) {
    let mut s = session(policy);
    let o = create_offer(&mut s, addr("192.0.2.1:4000"), &PREFS, Direction::SendRecv);
    (s, o)
}

/// A peer's offer: PCMU on `profile` with the given crypto lines.
fn peer_offer(profile: &str, crypto: &[&str]) -> SessionDescription {
    let mut text = format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.5\r\ns=-\r\nc=IN IP4 198.51.100.5\r\nt=0 0\r\n\
         m=audio 10442 {profile} 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    for c in crypto {
        text.push_str(&format!("a=crypto:{c}\r\n"));
    }
    SessionDescription::parse(&text).unwrap()
}

fn answer(
    policy: SrtpPolicy,
    offer: &SessionDescription,
) -> Result<(SessionDescription, Negotiated), SdpError> {
    let mut s = session(policy);
    answer_offer(
        offer,
        &mut s,
        addr("192.0.2.2:5000"),
        &PREFS,
        Direction::SendRecv,
    )
}

#[test]
fn offers_follow_the_policy() {
    let (_, off) = offer(SrtpPolicy::Off);
    assert_eq!(off.media[0].protocol, "RTP/AVP");
    assert!(crypto_lines(&off.media[0]).is_empty());
    let (_, opt) = offer(SrtpPolicy::Optional);
    assert_eq!(opt.media[0].protocol, "RTP/AVP");
    let lines = crypto_lines(&opt.media[0]);
    let suites: Vec<_> = lines.iter().map(|l| (l.tag, l.suite)).collect();
    assert_eq!(
        suites,
        [
            (1, SrtpSuite::AesCm128HmacSha1_80),
            (2, SrtpSuite::AeadAes128Gcm),
            (3, SrtpSuite::AesCm128HmacSha1_32)
        ]
    );
    let (_, mand) = offer(SrtpPolicy::Mandatory);
    assert_eq!(mand.media[0].protocol, "RTP/SAVP");
    assert_eq!(crypto_lines(&mand.media[0]).len(), 3);
    // Each offer (call) has keys of its own.
    assert_ne!(crypto_lines(&mand.media[0])[0], lines[0]);
    // The printed offer parses back with the same lines.
    let again = SessionDescription::parse(&mand.to_string()).unwrap();
    assert_eq!(crypto_lines(&again.media[0]), crypto_lines(&mand.media[0]));
}

#[test]
fn both_sides_agree_on_suite_and_keys() {
    for policy in [SrtpPolicy::Optional, SrtpPolicy::Mandatory] {
        let (_, o) = offer(policy);
        let (a, theirs) = answer(SrtpPolicy::Optional, &o).unwrap();
        assert_eq!(a.media[0].protocol, o.media[0].protocol, "profile echoed");
        let ans_lines = crypto_lines(&a.media[0]);
        assert_eq!(ans_lines.len(), 1);
        assert_eq!(
            ans_lines[0].tag, 1,
            "the offer's first line, its tag echoed"
        );
        let ours = accept_answer(&o, &a).unwrap();
        let (ours, theirs) = (ours.srtp.unwrap(), theirs.srtp.unwrap());
        assert_eq!(ours.suite, SrtpSuite::AesCm128HmacSha1_80);
        assert_eq!(ours.suite, theirs.suite);
        assert_eq!(ours.local, theirs.remote);
        assert_eq!(ours.remote, theirs.local);
        assert_ne!(ours.local, ours.remote);
    }
}

#[test]
fn answerer_takes_the_first_line_it_supports() {
    let o = peer_offer(
        "RTP/SAVP",
        &[
            &format!("1 AES_256_CM_HMAC_SHA1_80 inline:{KEY}{KEY}"),
            "2 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==",
            &format!("3 AES_CM_128_HMAC_SHA1_32 inline:{KEY}"),
        ],
    );
    let (a, n) = answer(SrtpPolicy::Mandatory, &o).unwrap();
    let line = &crypto_lines(&a.media[0])[0];
    assert_eq!((line.tag, line.suite), (2, SrtpSuite::AeadAes128Gcm));
    let keys = n.srtp.unwrap();
    assert_eq!(keys.remote.0, (0u8..28).collect::<Vec<_>>());
    assert_eq!(keys.local, line.key);
    assert_eq!(keys.local.0.len(), 28);
}

#[test]
fn mandatory_refuses_a_plain_offer_and_optional_answers_it_plainly() {
    let plain = peer_offer("RTP/AVP", &[]);
    let err = answer(SrtpPolicy::Mandatory, &plain).unwrap_err();
    assert!(matches!(err, SdpError::Security(_)), "{err:?}");
    assert_eq!(err.status_code(), 488);
    assert_eq!(
        check_offer(&plain, &PREFS, SrtpPolicy::Mandatory).map_err(|e| e.status_code()),
        Err(488)
    );
    let (a, n) = answer(SrtpPolicy::Optional, &plain).unwrap();
    assert_eq!(n.srtp, None);
    assert!(crypto_lines(&a.media[0]).is_empty());
    assert_eq!(check_offer(&plain, &PREFS, SrtpPolicy::Optional), Ok(()));
}

#[test]
fn off_answers_best_effort_plainly_and_refuses_savp() {
    let best_effort = peer_offer(
        "RTP/AVP",
        &[&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")],
    );
    let (a, n) = answer(SrtpPolicy::Off, &best_effort).unwrap();
    assert_eq!(n.srtp, None);
    assert!(crypto_lines(&a.media[0]).is_empty());
    let savp = peer_offer(
        "RTP/SAVP",
        &[&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")],
    );
    assert_eq!(
        answer(SrtpPolicy::Off, &savp).unwrap_err().status_code(),
        488
    );
    assert!(check_offer(&savp, &PREFS, SrtpPolicy::Off).is_err());
}

#[test]
fn savp_without_a_usable_line_is_refused() {
    let o = peer_offer("RTP/SAVP", &["1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ="]);
    for policy in [SrtpPolicy::Optional, SrtpPolicy::Mandatory] {
        assert!(matches!(answer(policy, &o), Err(SdpError::Security(_))));
    }
}

/// The answer to `o` from a plain peer (crypto lines dropped, profile `profile`).
fn plain_answer_to(o: &SessionDescription, profile: &str) -> SessionDescription {
    let (mut a, _) = answer(SrtpPolicy::Off, &{
        let mut p = o.clone();
        p.media[0].protocol = "RTP/AVP".into();
        p
    })
    .unwrap();
    a.media[0].protocol = profile.into();
    a
}

#[test]
fn offerer_checks_the_answer() {
    // Mandatory: a plain answer is refused.
    let (_, mand) = offer(SrtpPolicy::Mandatory);
    let plain = plain_answer_to(&mand, "RTP/SAVP");
    assert!(matches!(
        accept_answer(&mand, &plain),
        Err(SdpError::Security(_))
    ));
    // Optional: a plain answer means plain RTP.
    let (_, opt) = offer(SrtpPolicy::Optional);
    let plain = plain_answer_to(&opt, "RTP/AVP");
    assert_eq!(accept_answer(&opt, &plain).unwrap().srtp, None);
    // A crypto line whose tag or suite we did not offer does not fit.
    let (mut a, _) = answer(SrtpPolicy::Optional, &opt).unwrap();
    let bogus = CryptoLine {
        tag: 7,
        ..crypto_lines(&a.media[0])[0].clone()
    };
    a.media[0].attributes.retain(|x| x.name != "crypto");
    a.media[0].attributes.push(bogus.attribute());
    assert!(matches!(
        accept_answer(&opt, &a),
        Err(SdpError::AnswerMismatch(_))
    ));
    // Off: we offered no keys, so an answer's crypto line changes nothing.
    let (_, off) = offer(SrtpPolicy::Off);
    let (mut a, _) = answer(SrtpPolicy::Off, &off).unwrap();
    a.media[0].attributes.push(Attribute::value(
        "crypto",
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
    ));
    assert_eq!(accept_answer(&off, &a).unwrap().srtp, None);
}

#[test]
fn a_re_offer_keeps_the_calls_keys() {
    let (mut s, first) = offer(SrtpPolicy::Optional);
    let again = create_offer(&mut s, addr("192.0.2.1:4000"), &PREFS, Direction::SendOnly);
    assert_eq!(crypto_lines(&again.media[0]), crypto_lines(&first.media[0]));
}
