//! RFC 3264 offer/answer for one audio stream.
//!
//! Our offer: one audio m-line in our preference order, Opus on payload type 111
//! (`useinbandfec=1;minptime=10`, RFC 7587), PCMU 0, PCMA 8, telephone-event/48000 on 101 when
//! Opus is offered and telephone-event/8000 on 100 when G.711 is (RFC 4733), `a=ptime:20`,
//! `a=rtcp-mux` (RFC 5761) and, for peers that do not mux, an explicit `a=rtcp:<port+1>`
//! (RFC 3605) so nobody has to guess where our RTCP lives.
//!
//! Our answer: the first usable audio m-line, the codec that comes first in OUR preference
//! order among those offered, with the offer's payload type numbers; every other m-line is
//! rejected with port 0.

use std::net::SocketAddr;

use super::crypto::{crypto_lines, is_secure_profile, CryptoLine};
use super::parse::{
    addr_type, Attribute, Connection, MediaDescription, Origin, SessionDescription,
};
use super::print::{decimal, write_address};
use super::{Codec, Direction, Negotiated, SdpError, SdpSession, SrtpKeys, SrtpPolicy};

/// telephone-event/48000 payload type in our offers.
const TELEPHONE_EVENT_48K: u8 = 101;
/// telephone-event/8000 payload type in our offers.
const TELEPHONE_EVENT_8K: u8 = 100;
/// What we ask of Opus senders (RFC 7587 §6.1).
const OPUS_FMTP: &str = "useinbandfec=1;minptime=10";
/// DTMF events 0-9, *, #, A-D and flash (RFC 4733 §3.2).
const TELEPHONE_EVENT_FMTP: &str = "0-16";
/// The packetisation time we send and ask for.
const PTIME_MS: u32 = 20;
const ALL_CODECS: [Codec; 3] = [Codec::Opus, Codec::Pcmu, Codec::Pcma];

/// The codec picked for the audio stream.
#[derive(Debug, Clone, Copy)]
struct Choice {
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<u8>,
}

/// An empty description with our o=, s=, c= and t= lines; the caller stamps the origin.
fn skeleton(local_rtp: SocketAddr) -> SessionDescription {
    SessionDescription {
        origin: Origin {
            username: String::new(),
            session_id: String::new(),
            session_version: String::new(),
            address_type: addr_type(local_rtp.ip()).to_owned(),
            address: {
                let mut a = String::with_capacity(15);
                // Writing into a String cannot fail.
                let _ = write_address(&mut a, local_rtp.ip());
                a
            },
        },
        session_name: "wakeline".to_owned(),
        connection: Some(Connection {
            address: local_rtp.ip(),
        }),
        timing: vec![(0, 0)],
        attributes: Vec::new(),
        other: Vec::new(),
        media: Vec::new(),
    }
}

/// Adds rtpmap (+ fmtp) for one payload type.
fn push_format(attrs: &mut Vec<Attribute>, pt: u8, rtpmap: &str, fmtp: Option<&str>) {
    let with_pt = |text: &str| {
        let mut v = decimal(u64::from(pt));
        v.reserve(1 + text.len());
        v.push(' ');
        v.push_str(text);
        v
    };
    attrs.push(Attribute::value("rtpmap", with_pt(rtpmap)));
    if let Some(f) = fmtp {
        attrs.push(Attribute::value("fmtp", with_pt(f)));
    }
}

/// Adds the attributes after the formats: ptime, rtcp-mux or rtcp, direction.
fn push_tail(
    attrs: &mut Vec<Attribute>,
    local_rtp: SocketAddr,
    mux: bool,
    rtcp: bool,
    dir: Direction,
) {
    attrs.push(Attribute::value("ptime", decimal(u64::from(PTIME_MS))));
    if mux {
        attrs.push(Attribute::flag("rtcp-mux"));
    }
    if rtcp {
        if let Some(p) = local_rtp.port().checked_add(1) {
            attrs.push(Attribute::value("rtcp", decimal(u64::from(p))));
        }
    }
    attrs.push(Attribute::flag(dir.attribute()));
}

fn telephone_event_rtpmap(clock: u32) -> String {
    format!("telephone-event/{clock}")
}

/// Makes an offer with one audio m-line, `codecs` in our preference order.
pub fn create_offer(
    session: &mut SdpSession,
    local_rtp: SocketAddr,
    codecs: &[Codec],
    direction: Direction,
) -> SessionDescription {
    let mut codecs: Vec<Codec> = codecs.to_vec();
    let mut seen = Vec::new();
    codecs.retain(|c| {
        let new = !seen.contains(c);
        seen.push(*c);
        new
    });
    let mut formats = Vec::new();
    let mut attrs = Vec::new();
    for c in &codecs {
        let pt = c.default_payload_type();
        formats.push(decimal(u64::from(pt)));
        let fmtp = (*c == Codec::Opus).then_some(OPUS_FMTP);
        push_format(&mut attrs, pt, c.rtpmap(), fmtp);
    }
    for (clock, pt) in [(48_000, TELEPHONE_EVENT_48K), (8_000, TELEPHONE_EVENT_8K)] {
        if codecs.iter().any(|c| c.clock_rate() == clock) {
            formats.push(decimal(u64::from(pt)));
            let map = telephone_event_rtpmap(clock);
            push_format(&mut attrs, pt, &map, Some(TELEPHONE_EVENT_FMTP));
        }
    }
    if session.srtp != SrtpPolicy::Off {
        attrs.extend(session.keys.offer_lines());
    }
    push_tail(&mut attrs, local_rtp, true, true, direction);
    let protocol = match session.srtp {
        SrtpPolicy::Mandatory => "RTP/SAVP",
        SrtpPolicy::Optional | SrtpPolicy::Off => "RTP/AVP",
    };
    let mut sd = skeleton(local_rtp);
    sd.media.push(MediaDescription {
        media: "audio".to_owned(),
        port: local_rtp.port(),
        port_count: None,
        protocol: protocol.to_owned(),
        formats,
        connection: None,
        attributes: attrs,
        other: Vec::new(),
    });
    session.stamp(&mut sd);
    sd
}

/// True if `fmt` in `m` is `codec`: by rtpmap, or by static number when there is no rtpmap.
fn is_codec(m: &MediaDescription, fmt: &str, codec: Codec) -> bool {
    match m.rtpmap_parts(fmt) {
        Some((encoding, clock_rate, _)) => {
            encoding.eq_ignore_ascii_case(codec.encoding_name()) && clock_rate == codec.clock_rate()
        }
        None => payload_type(fmt).is_some_and(|pt| codec.static_payload_type() == Some(pt)),
    }
}

/// An RTP payload type written canonically (`8`, not `08`), so it can be echoed and matched
/// as text.
fn payload_type(fmt: &str) -> Option<u8> {
    let digits = fmt.as_bytes();
    let canonical = matches!(digits.len(), 1..=3)
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0');
    if !canonical {
        return None;
    }
    let pt = digits
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    u8::try_from(pt).ok().filter(|pt| *pt < 128)
}

/// The telephone-event payload type in `m` at `clock`, among `allowed` formats.
fn find_telephone_event(
    m: &MediaDescription,
    clock: u32,
    allowed: impl Fn(&str) -> bool,
) -> Option<u8> {
    m.formats.iter().find_map(|fmt| {
        let (encoding, clock_rate, _) = m.rtpmap_parts(fmt)?;
        let ok =
            encoding.eq_ignore_ascii_case("telephone-event") && clock_rate == clock && allowed(fmt);
        ok.then(|| payload_type(fmt)).flatten()
    })
}

/// An RTP audio m-line in use that we can carry (RTP/AVP, RTP/AVPF, or their SDES-keyed
/// secure forms RTP/SAVP and RTP/SAVPF).
fn usable(m: &MediaDescription) -> bool {
    m.media.eq_ignore_ascii_case("audio")
        && m.port != 0
        && (m.protocol.eq_ignore_ascii_case("RTP/AVP")
            || m.protocol.eq_ignore_ascii_case("RTP/AVPF")
            || is_secure_profile(&m.protocol))
}

/// The offered crypto line we answer with under `policy`, or `None` for a plain stream; an
/// error (488) when the policy and the offer cannot meet.
fn offered_crypto(
    policy: SrtpPolicy,
    m: &MediaDescription,
) -> Result<Option<CryptoLine>, SdpError> {
    let secure = is_secure_profile(&m.protocol);
    let first = crypto_lines(m).into_iter().next();
    match (policy, secure, first) {
        (SrtpPolicy::Off, true, _) => Err(SdpError::Security("SRTP offered, ours is off")),
        (SrtpPolicy::Off, false, _) => Ok(None),
        (_, _, Some(line)) => Ok(Some(line)),
        (SrtpPolicy::Optional, false, None) => Ok(None),
        (_, true, None) => Err(SdpError::Security("RTP/SAVP without a usable crypto line")),
        (SrtpPolicy::Mandatory, false, None) => {
            Err(SdpError::Security("plain RTP offered, SRTP is mandatory"))
        }
    }
}

/// Our most preferred codec that the offered m-line has, with the offer's payload type.
fn choose(m: &MediaDescription, codecs: &[Codec]) -> Option<Choice> {
    codecs.iter().find_map(|&codec| {
        let fmt = m
            .formats
            .iter()
            .find(|f| payload_type(f).is_some() && is_codec(m, f, codec))?;
        Some(Choice {
            codec,
            payload_type: payload_type(fmt)?,
            telephone_event: find_telephone_event(m, codec.clock_rate(), |_| true),
        })
    })
}

/// The first usable audio m-line of an offer and the codec we would pick.
fn select(offer: &SessionDescription, codecs: &[Codec]) -> Result<(usize, Choice), SdpError> {
    offer
        .media
        .iter()
        .enumerate()
        .filter(|(_, m)| usable(m))
        .find_map(|(i, m)| choose(m, codecs).map(|c| (i, c)))
        .ok_or(SdpError::NoCommonCodec)
}

/// Checks at INVITE time that we could answer this offer under the SRTP `policy` (else 488
/// before ringing).
pub fn check_offer(
    offer: &SessionDescription,
    codecs: &[Codec],
    policy: SrtpPolicy,
) -> Result<(), SdpError> {
    let (index, _) = select(offer, codecs)?;
    offered_crypto(policy, &offer.media[index]).map(|_| ())
}

/// The direction a side declared for `m`, with the RFC 2543 `c=0.0.0.0` hold meaning "do not
/// send to me".
fn declared_direction(
    sd: &SessionDescription,
    m: &MediaDescription,
    conn: Connection,
) -> Direction {
    let dir = m
        .direction()
        .or(sd.direction())
        .unwrap_or(Direction::SendRecv);
    if conn.is_hold() {
        Direction::from_parts(dir.sends(), false)
    } else {
        dir
    }
}

fn connection_of(sd: &SessionDescription, m: &MediaDescription) -> Result<Connection, SdpError> {
    m.effective_connection(sd)
        .ok_or_else(|| SdpError::Malformed("audio stream without a c= line".into()))
}

/// What we learned about the peer's side of the stream.
fn negotiated(
    local_rtp: SocketAddr,
    choice: Choice,
    peer: &MediaDescription,
    conn: Connection,
    direction: Direction,
    rtcp_mux: bool,
    srtp: Option<SrtpKeys>,
) -> Negotiated {
    let remote_rtp = SocketAddr::new(conn.address, peer.port);
    let remote_rtcp = if rtcp_mux {
        remote_rtp
    } else {
        match peer.rtcp() {
            Some((port, addr)) => SocketAddr::new(addr.unwrap_or(conn.address), port),
            None => SocketAddr::new(conn.address, peer.port.saturating_add(1)),
        }
    };
    // The Opus fmtp parameters we read, the first of each name, in one pass.
    let keys = [
        "useinbandfec",
        "maxaveragebitrate",
        "maxplaybackrate",
        "stereo",
    ];
    let mut values: [Option<&str>; 4] = [None; 4];
    if choice.codec == Codec::Opus {
        let mut digits = itoa::Buffer::new();
        for (key, value) in peer.fmtp_pairs(digits.format(choice.payload_type)) {
            if let Some(i) = keys.iter().position(|k| key.eq_ignore_ascii_case(k)) {
                values[i] = values[i].or(Some(value));
            }
        }
    }
    let param = |k: &str| {
        keys.iter()
            .position(|key| *key == k)
            .and_then(|i| values[i])
    };
    Negotiated {
        local_rtp,
        codec: choice.codec,
        payload_type: choice.payload_type,
        clock_rate: choice.codec.clock_rate(),
        telephone_event: choice.telephone_event,
        remote_rtp,
        remote_rtcp,
        rtcp_mux,
        direction,
        ptime: peer
            .ptime()
            .filter(|p| (1..=1000).contains(p))
            .unwrap_or(PTIME_MS),
        opus_fec: param("useinbandfec") == Some("1"),
        opus_max_average_bitrate: param("maxaveragebitrate").and_then(|v| v.parse().ok()),
        opus_max_playback_rate: param("maxplaybackrate").and_then(|v| v.parse().ok()),
        opus_stereo: param("stereo") == Some("1"),
        srtp,
    }
}

/// Answers an offer (UAS side, or a re-INVITE): accepts the first usable audio m-line, rejects
/// the rest with port 0, and says what was agreed.
pub fn answer_offer(
    offer: &SessionDescription,
    session: &mut SdpSession,
    local_rtp: SocketAddr,
    codecs: &[Codec],
    direction: Direction,
) -> Result<(SessionDescription, Negotiated), SdpError> {
    let (index, choice) = select(offer, codecs)?;
    let om = &offer.media[index];
    let conn = connection_of(offer, om)?;
    let our_direction = declared_direction(offer, om, conn)
        .reversed()
        .intersect(direction);
    let rtcp_mux = om.has_attribute("rtcp-mux");
    let crypto = offered_crypto(session.srtp, om)?;
    let srtp = crypto.as_ref().map(|line| SrtpKeys {
        suite: line.suite,
        local: session.keys.for_suite(line.suite),
        remote: line.key.clone(),
    });

    let mut sd = skeleton(local_rtp);
    for (i, m) in offer.media.iter().enumerate() {
        if i != index {
            sd.media.push(MediaDescription {
                media: m.media.clone(),
                port: 0,
                port_count: None,
                protocol: m.protocol.clone(),
                formats: m.formats.clone(),
                connection: None,
                attributes: Vec::new(),
                other: Vec::new(),
            });
            continue;
        }
        let mut formats = Vec::with_capacity(2);
        formats.push(decimal(u64::from(choice.payload_type)));
        // rtpmap and fmtp of two formats, crypto, ptime, rtcp(-mux), direction.
        let mut attrs = Vec::with_capacity(8);
        let fmtp = (choice.codec == Codec::Opus).then_some(OPUS_FMTP);
        push_format(&mut attrs, choice.payload_type, choice.codec.rtpmap(), fmtp);
        if let Some(te) = choice.telephone_event {
            formats.push(decimal(u64::from(te)));
            let map = telephone_event_rtpmap(choice.codec.clock_rate());
            push_format(&mut attrs, te, &map, Some(TELEPHONE_EVENT_FMTP));
        }
        if let (Some(line), Some(keys)) = (&crypto, &srtp) {
            let ours = CryptoLine {
                key: keys.local.clone(),
                ..line.clone()
            };
            attrs.push(ours.attribute());
        }
        push_tail(&mut attrs, local_rtp, rtcp_mux, !rtcp_mux, our_direction);
        sd.media.push(MediaDescription {
            media: m.media.clone(),
            port: local_rtp.port(),
            port_count: None,
            protocol: m.protocol.clone(),
            formats,
            connection: None,
            attributes: attrs,
            other: Vec::new(),
        });
    }
    session.stamp(&mut sd);
    let n = negotiated(local_rtp, choice, om, conn, our_direction, rtcp_mux, srtp);
    Ok((sd, n))
}

/// Reads the answer to our offer (UAC side). The answer must keep our m-lines and pick its
/// codec from our offer.
pub fn accept_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Negotiated, SdpError> {
    if answer.media.len() != offer.media.len() {
        return Err(SdpError::AnswerMismatch(format!(
            "{} m-lines answered, {} offered",
            answer.media.len(),
            offer.media.len()
        )));
    }
    let (om, am) = offer
        .media
        .iter()
        .zip(&answer.media)
        .find(|(om, am)| usable(om) && am.port != 0)
        .ok_or(SdpError::NoCommonCodec)?;
    if !am.media.eq_ignore_ascii_case(&om.media) {
        return Err(SdpError::AnswerMismatch("media type changed".into()));
    }
    let offered = |f: &str| om.formats.iter().any(|o| o == f);
    let codec_of = |fmt: &str| ALL_CODECS.into_iter().find(|c| is_codec(om, fmt, *c));
    let choice = am
        .formats
        .iter()
        .filter(|f| offered(f))
        .find_map(|f| {
            Some(Choice {
                codec: codec_of(f)?,
                payload_type: payload_type(f)?,
                telephone_event: None,
            })
        })
        .ok_or_else(|| SdpError::AnswerMismatch("no codec from our offer".into()))?;
    let te_allowed = |f: &str| offered(f) && am.formats.iter().any(|a| a == f);
    let choice = Choice {
        telephone_event: find_telephone_event(om, choice.codec.clock_rate(), te_allowed),
        ..choice
    };
    let offer_conn = connection_of(offer, om)?;
    let answer_conn = connection_of(answer, am)?;
    let offered_dir = om
        .direction()
        .or(offer.direction())
        .unwrap_or(Direction::SendRecv);
    let our_direction = declared_direction(answer, am, answer_conn)
        .reversed()
        .intersect(offered_dir);
    let rtcp_mux = om.has_attribute("rtcp-mux") && am.has_attribute("rtcp-mux");
    let local_rtp = SocketAddr::new(offer_conn.address, om.port);
    let srtp = answered_crypto(om, am)?;
    Ok(negotiated(
        local_rtp,
        choice,
        am,
        answer_conn,
        our_direction,
        rtcp_mux,
        srtp,
    ))
}

/// The SRTP keys an answer agreed to: its crypto line must carry a tag and suite we offered.
/// No crypto line is a plain stream, unless we offered `RTP/SAVP` (SRTP mandatory).
fn answered_crypto(
    om: &MediaDescription,
    am: &MediaDescription,
) -> Result<Option<SrtpKeys>, SdpError> {
    let ours = crypto_lines(om);
    if ours.is_empty() {
        // We offered no keys (SRTP off): nothing the answer says can turn it on.
        return Ok(None);
    }
    let Some(theirs) = crypto_lines(am).into_iter().next() else {
        if is_secure_profile(&om.protocol) {
            return Err(SdpError::Security("plain answer, SRTP is mandatory"));
        }
        return Ok(None);
    };
    let offered = ours
        .into_iter()
        .find(|o| o.tag == theirs.tag && o.suite == theirs.suite)
        .ok_or_else(|| SdpError::AnswerMismatch("crypto line not from our offer".into()))?;
    Ok(Some(SrtpKeys {
        suite: theirs.suite,
        local: offered.key,
        remote: theirs.key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PREFS: [Codec; 3] = [Codec::Opus, Codec::Pcmu, Codec::Pcma];

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn sdp(text: &str) -> SessionDescription {
        SessionDescription::parse(text).unwrap()
    }

    fn answer(offer: &str, codecs: &[Codec]) -> Result<(SessionDescription, Negotiated), SdpError> {
        let mut session = SdpSession::new("-", 77, 1);
        answer_offer(
            &sdp(offer),
            &mut session,
            addr("192.0.2.99:30000"),
            codecs,
            Direction::SendRecv,
        )
    }

    const BARESIP: &str = "v=0\r\n\
o=- 1409158727 2917830396 IN IP4 198.51.100.5\r\n\
s=-\r\n\
c=IN IP4 198.51.100.5\r\n\
t=0 0\r\n\
m=audio 10442 RTP/AVP 96 0 8 101\r\n\
b=AS:64\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 stereo=1;sprop-stereo=1;maxaveragebitrate=28000;useinbandfec=1;maxplaybackrate=24000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=ssrc:3104203745 cname:8c3f8f4e\r\n\
a=rtcp-rsize\r\n\
a=ptime:20\r\n";

    const SIPP: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.1.1\r\n\
s=-\r\n\
c=IN IP4 127.0.1.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

    const LINPHONE_VIDEO: &str = "v=0\r\n\
o=bob 1890 2222 IN IP4 203.0.113.4\r\n\
s=Talk\r\n\
c=IN IP4 203.0.113.4\r\n\
t=0 0\r\n\
m=video 9078 RTP/AVP 96 97\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 H264/90000\r\n\
m=audio 7078 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp-mux\r\n\
a=ptime:30\r\n\
m=audio 7080 RTP/AVP 0\r\n";

    #[test]
    fn baresip_offer_gets_opus_on_its_payload_type() {
        let (ans, n) = answer(BARESIP, &PREFS).unwrap();
        assert_eq!(
            (n.codec, n.payload_type, n.clock_rate),
            (Codec::Opus, 96, 48000)
        );
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote_rtp, addr("198.51.100.5:10442"));
        assert_eq!(n.remote_rtcp, addr("198.51.100.5:10443"));
        assert!(!n.rtcp_mux);
        assert_eq!(n.direction, Direction::SendRecv);
        assert!(n.opus_fec && n.opus_stereo);
        assert_eq!(n.opus_max_average_bitrate, Some(28000));
        assert_eq!(n.opus_max_playback_rate, Some(24000));
        assert_eq!(n.local_rtp, addr("192.0.2.99:30000"));
        let text = ans.to_string();
        assert!(text.contains("m=audio 30000 RTP/AVP 96 101\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:96 opus/48000/2\r\n"));
        assert!(text.contains("a=fmtp:96 useinbandfec=1;minptime=10\r\n"));
        assert!(text.contains("a=rtcp:30001\r\n"));
        assert!(!text.contains("rtcp-mux"));
        assert!(text.contains("c=IN IP4 192.0.2.99\r\n"));
        assert!(text.contains("a=sendrecv\r\n"));
    }

    #[test]
    fn answer_follows_our_preference_not_the_offer_order() {
        let offer = BARESIP.replace("RTP/AVP 96 0 8 101", "RTP/AVP 0 8 96 101");
        let (_, n) = answer(&offer, &PREFS).unwrap();
        assert_eq!(n.codec, Codec::Opus);
        let (_, n) = answer(&offer, &[Codec::Pcma, Codec::Opus]).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
        // telephone-event/48000 does not fit an 8 kHz codec.
        assert_eq!(n.telephone_event, None);
    }

    #[test]
    fn sipp_pcmu_only_offer() {
        let (ans, n) = answer(SIPP, &PREFS).unwrap();
        assert_eq!((n.codec, n.payload_type, n.ptime), (Codec::Pcmu, 0, 20));
        assert_eq!(n.telephone_event, None);
        assert_eq!(n.remote_rtp, addr("127.0.1.1:6000"));
        assert!(ans.to_string().contains("m=audio 30000 RTP/AVP 0\r\n"));
        // A static payload type is understood without an rtpmap line.
        let bare = SIPP.replace("a=rtpmap:0 PCMU/8000\r\n", "");
        assert_eq!(answer(&bare, &PREFS).unwrap().1.codec, Codec::Pcmu);
    }

    #[test]
    fn video_and_extra_audio_are_rejected_with_port_zero() {
        let (ans, n) = answer(LINPHONE_VIDEO, &PREFS).unwrap();
        assert_eq!(ans.media.len(), 3);
        assert_eq!(
            (ans.media[0].port, ans.media[0].formats.clone()),
            (0, vec!["96".into(), "97".into()])
        );
        assert_eq!(ans.media[0].media, "video");
        assert_eq!(ans.media[1].port, 30000);
        assert_eq!(ans.media[2].port, 0);
        assert_eq!(
            (n.codec, n.telephone_event, n.ptime),
            (Codec::Pcmu, Some(101), 30)
        );
        assert!(n.rtcp_mux);
        assert_eq!(n.remote_rtcp, n.remote_rtp);
        let text = ans.to_string();
        assert!(text.contains("m=video 0 RTP/AVP 96 97\r\n"));
        assert!(text.contains("a=rtcp-mux\r\n"));
        assert!(!text.contains("a=rtcp:"));
        // The answer parses back and the offerer can read it.
        let back = sdp(&text);
        let theirs = accept_answer(&sdp(LINPHONE_VIDEO), &back).unwrap();
        assert_eq!(
            (theirs.codec, theirs.remote_rtp),
            (Codec::Pcmu, addr("192.0.2.99:30000"))
        );
    }

    #[test]
    fn no_common_codec() {
        let g729 = SIPP
            .replace("RTP/AVP 0", "RTP/AVP 18")
            .replace("0 PCMU/8000", "18 G729/8000");
        assert_eq!(answer(&g729, &PREFS).unwrap_err(), SdpError::NoCommonCodec);
        assert_eq!(
            check_offer(&sdp(&g729), &PREFS, SrtpPolicy::Optional),
            Err(SdpError::NoCommonCodec)
        );
        assert_eq!(
            check_offer(&sdp(SIPP), &PREFS, SrtpPolicy::Optional),
            Ok(())
        );
        assert_eq!(
            check_offer(&sdp(SIPP), &[Codec::Opus], SrtpPolicy::Optional),
            Err(SdpError::NoCommonCodec)
        );
        let no_audio = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n";
        assert_eq!(
            answer(no_audio, &PREFS).unwrap_err(),
            SdpError::NoCommonCodec
        );
        let port0 = SIPP.replace("m=audio 6000", "m=audio 0");
        assert_eq!(answer(&port0, &PREFS).unwrap_err(), SdpError::NoCommonCodec);
        let srtp = SIPP.replace("RTP/AVP", "RTP/SAVP");
        assert_eq!(answer(&srtp, &PREFS).unwrap_err().status_code(), 488);
        // A port-0 audio line is skipped; the next usable one is taken.
        let two = LINPHONE_VIDEO.replace("m=audio 7078", "m=audio 0");
        let (ans, n) = answer(&two, &PREFS).unwrap();
        assert_eq!((ans.media[1].port, ans.media[2].port), (0, 30000));
        assert_eq!(n.remote_rtp.port(), 7080);
    }

    #[test]
    fn hold_offers() {
        let cases = [
            ("a=sendonly\r\n", Direction::SendRecv, Direction::RecvOnly),
            ("a=recvonly\r\n", Direction::SendRecv, Direction::SendOnly),
            ("a=inactive\r\n", Direction::SendRecv, Direction::Inactive),
            ("a=sendrecv\r\n", Direction::SendOnly, Direction::SendOnly),
            ("a=sendonly\r\n", Direction::SendOnly, Direction::Inactive),
            ("a=recvonly\r\n", Direction::RecvOnly, Direction::Inactive),
        ];
        for (attr, want, expect) in cases {
            let offer = format!("{SIPP}{attr}");
            let mut s = SdpSession::new("-", 1, 1);
            let (ans, n) =
                answer_offer(&sdp(&offer), &mut s, addr("192.0.2.99:30000"), &PREFS, want).unwrap();
            assert_eq!(n.direction, expect, "{attr} / {want:?}");
            assert!(ans
                .to_string()
                .contains(&format!("a={}\r\n", expect.attribute())));
        }
        // RFC 2543 hold: c=0.0.0.0 means "do not send to me".
        let old = SIPP.replace("c=IN IP4 127.0.1.1", "c=IN IP4 0.0.0.0");
        let (_, n) = answer(&old, &PREFS).unwrap();
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(n.direction.is_hold());
        let old_inactive = format!("{old}a=recvonly\r\n");
        assert_eq!(
            answer(&old_inactive, &PREFS).unwrap().1.direction,
            Direction::Inactive
        );
    }

    #[test]
    fn ipv6_offer_and_answer() {
        let offer = SIPP.replace("c=IN IP4 127.0.1.1", "c=IN IP6 2001:db8::5");
        let mut s = SdpSession::new("-", 1, 1);
        let (ans, n) = answer_offer(
            &sdp(&offer),
            &mut s,
            addr("[2001:db8::9]:4000"),
            &PREFS,
            Direction::SendRecv,
        )
        .unwrap();
        assert_eq!(n.remote_rtp, addr("[2001:db8::5]:6000"));
        let text = ans.to_string();
        assert!(text.contains("c=IN IP6 2001:db8::9\r\n"));
        assert!(text.contains("o=- 1 1 IN IP6 2001:db8::9\r\n"));
    }

    #[test]
    fn ipv6_offer_and_its_ipv6_answer() {
        // Our IPv6 offer says IN IP6 in o= and c=, and an IPv6 answer (baresip's, moved to
        // IPv6 with a media-level c=) is taken: RTP and RTCP go to the IPv6 address.
        let mut s = SdpSession::new("wakeline", 3, 1);
        let offer = create_offer(
            &mut s,
            addr("[2001:db8::1]:5004"),
            &PREFS,
            Direction::SendRecv,
        );
        let text = offer.to_string();
        assert!(
            text.contains("o=wakeline 3 1 IN IP6 2001:db8::1\r\n"),
            "{text}"
        );
        assert!(text.contains("c=IN IP6 2001:db8::1\r\n"), "{text}");
        assert!(!text.contains("IP4"), "{text}");
        let reparsed = sdp(&text);
        assert_eq!(
            reparsed.audio_address(),
            Some("2001:db8::1".parse().unwrap())
        );
        let answer = BARESIP
            .replace("IN IP4 198.51.100.5", "IN IP6 2001:db8::2")
            .replace("a=sendrecv\r\n", "c=IN IP6 2001:db8::3\r\na=sendrecv\r\n")
            .replace("AVP 96 ", "AVP 111 ")
            .replace(":96 ", ":111 ");
        let n = accept_answer(&offer, &sdp(&answer)).unwrap();
        assert_eq!(n.local_rtp, addr("[2001:db8::1]:5004"));
        assert_eq!(n.remote_rtp, addr("[2001:db8::3]:10442"));
        assert_eq!(n.remote_rtcp, addr("[2001:db8::3]:10443"));
        assert_eq!(n.codec, Codec::Opus);
    }

    #[test]
    fn the_audio_address_skips_rejected_streams() {
        let sd = sdp(LINPHONE_VIDEO);
        assert_eq!(sd.audio_address(), Some("203.0.113.4".parse().unwrap()));
        let rejected = SIPP.replace("m=audio 6000", "m=audio 0");
        assert_eq!(sdp(&rejected).audio_address(), None);
        let with_media_c = SIPP.replace(
            "a=rtpmap:0 PCMU/8000\r\n",
            "c=IN IP6 2001:db8::8\r\na=rtpmap:0 PCMU/8000\r\n",
        );
        assert_eq!(
            sdp(&with_media_c).audio_address(),
            Some("2001:db8::8".parse().unwrap())
        );
    }

    #[test]
    fn our_offer_has_the_promised_lines() {
        let mut s = SdpSession::new("wakeline", 42, 7);
        let offer = create_offer(&mut s, addr("192.0.2.1:5004"), &PREFS, Direction::SendRecv);
        let text = offer.to_string();
        for line in [
            "v=0\r\n",
            "o=wakeline 42 7 IN IP4 192.0.2.1\r\n",
            "c=IN IP4 192.0.2.1\r\n",
            "t=0 0\r\n",
            "m=audio 5004 RTP/AVP 111 0 8 101 100\r\n",
            "a=rtpmap:111 opus/48000/2\r\n",
            "a=fmtp:111 useinbandfec=1;minptime=10\r\n",
            "a=rtpmap:0 PCMU/8000\r\n",
            "a=rtpmap:8 PCMA/8000\r\n",
            "a=rtpmap:101 telephone-event/48000\r\n",
            "a=rtpmap:100 telephone-event/8000\r\n",
            "a=ptime:20\r\n",
            "a=rtcp-mux\r\n",
            "a=rtcp:5005\r\n",
            "a=sendrecv\r\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        let g711 = create_offer(
            &mut s,
            addr("192.0.2.1:5004"),
            &[Codec::Pcma, Codec::Pcma],
            Direction::SendRecv,
        );
        assert_eq!(g711.media[0].formats, ["8", "100"]);
    }

    #[test]
    fn username_with_spaces_becomes_dash_and_errors_map_to_status() {
        let mut s = SdpSession::new("bad name", 5, 1);
        let offer = create_offer(&mut s, addr("192.0.2.1:5004"), &PREFS, Direction::SendRecv);
        assert_eq!(offer.origin.username, "-");
        assert!(SessionDescription::parse(&offer.to_string()).is_ok());
        assert_eq!(SdpError::Malformed("x".into()).status_code(), 400);
        assert_eq!(SdpError::NoCommonCodec.status_code(), 488);
    }

    #[test]
    fn version_goes_up_only_when_something_changes() {
        let mut s = SdpSession::new("-", 9, 1);
        let local = addr("192.0.2.1:5004");
        let a = create_offer(&mut s, local, &PREFS, Direction::SendRecv);
        assert_eq!(a.origin.session_version, "1");
        let b = create_offer(&mut s, local, &PREFS, Direction::SendRecv);
        assert_eq!(b.origin.session_version, "1");
        let hold = create_offer(&mut s, local, &PREFS, Direction::SendOnly);
        assert_eq!((hold.origin.session_version.as_str(), s.version), ("2", 2));
        let resume = create_offer(&mut s, local, &PREFS, Direction::SendRecv);
        assert_eq!(resume.origin.session_version, "3");
        assert_eq!(resume.origin.session_id, "9");
        // An answer through the same session counts too.
        let (ans, _) =
            answer_offer(&sdp(SIPP), &mut s, local, &PREFS, Direction::SendRecv).unwrap();
        assert_eq!(ans.origin.session_version, "4");
    }

    #[test]
    fn two_wakelines_agree() {
        let mut alice = SdpSession::new("alice", 1, 1);
        let mut bob = SdpSession::new("bob", 2, 1);
        let a_addr = addr("192.0.2.1:5004");
        let b_addr = addr("192.0.2.2:6004");
        let offer = create_offer(&mut alice, a_addr, &PREFS, Direction::SendRecv);
        let offer = sdp(&offer.to_string());
        let (ans, bob_n) = answer_offer(
            &offer,
            &mut bob,
            b_addr,
            &[Codec::Pcmu, Codec::Opus],
            Direction::SendRecv,
        )
        .unwrap();
        let alice_n = accept_answer(&offer, &sdp(&ans.to_string())).unwrap();
        assert_eq!((bob_n.codec, alice_n.codec), (Codec::Pcmu, Codec::Pcmu));
        assert_eq!(
            (bob_n.telephone_event, alice_n.telephone_event),
            (Some(100), Some(100))
        );
        assert!(bob_n.rtcp_mux && alice_n.rtcp_mux);
        assert_eq!((bob_n.remote_rtp, alice_n.remote_rtp), (a_addr, b_addr));
        assert_eq!((bob_n.local_rtp, alice_n.local_rtp), (b_addr, a_addr));
        assert_eq!(alice_n.remote_rtcp, b_addr);

        // Opus both ways, FEC asked by both.
        let (ans, bob_n) =
            answer_offer(&offer, &mut bob, b_addr, &PREFS, Direction::SendRecv).unwrap();
        let alice_n = accept_answer(&offer, &ans).unwrap();
        assert_eq!((alice_n.codec, alice_n.payload_type), (Codec::Opus, 111));
        assert_eq!(alice_n.telephone_event, Some(101));
        assert!(alice_n.opus_fec && bob_n.opus_fec);

        // Alice holds: Bob answers recvonly, Alice ends up sendonly.
        let hold = create_offer(&mut alice, a_addr, &PREFS, Direction::SendOnly);
        let (ans, bob_n) =
            answer_offer(&hold, &mut bob, b_addr, &PREFS, Direction::SendRecv).unwrap();
        assert_eq!(bob_n.direction, Direction::RecvOnly);
        assert_eq!(
            accept_answer(&hold, &ans).unwrap().direction,
            Direction::SendOnly
        );
    }

    #[test]
    fn bad_answers_are_refused() {
        let mut s = SdpSession::new("-", 1, 1);
        let offer = create_offer(
            &mut s,
            addr("192.0.2.1:5004"),
            &[Codec::Pcmu],
            Direction::SendRecv,
        );
        let ans = |m: &str| {
            sdp(&format!(
                "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n{m}"
            ))
        };
        assert!(matches!(
            accept_answer(&offer, &ans("m=audio 7000 RTP/AVP 8\r\n")),
            Err(SdpError::AnswerMismatch(_))
        ));
        assert!(matches!(
            accept_answer(
                &offer,
                &ans("m=audio 7000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n")
            ),
            Err(SdpError::AnswerMismatch(_))
        ));
        assert_eq!(
            accept_answer(&offer, &ans("m=audio 0 RTP/AVP 0\r\n")),
            Err(SdpError::NoCommonCodec)
        );
        let ok = accept_answer(&offer, &ans("m=audio 7000 RTP/AVP 0\r\na=recvonly\r\n")).unwrap();
        assert_eq!(
            (ok.codec, ok.direction, ok.rtcp_mux),
            (Codec::Pcmu, Direction::SendOnly, false)
        );
        assert_eq!(ok.remote_rtcp, addr("192.0.2.2:7001"));
    }

    proptest! {
        #[test]
        fn payload_type_is_the_canonical_number_below_128(fmt in "[0-9+a ]{0,4}") {
            let old = fmt.parse::<u8>().ok().filter(|pt| *pt < 128 && pt.to_string() == fmt);
            prop_assert_eq!(payload_type(&fmt), old);
        }

        #[test]
        fn random_text_never_panics(text in "(?s).{0,400}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SessionDescription::parse(&text);
            if let Ok(sd) = SessionDescription::parse_bytes(&bytes) {
                let mut s = SdpSession::new("-", 1, 1);
                let _ = answer_offer(&sd, &mut s, addr("192.0.2.1:4000"), &PREFS, Direction::SendRecv);
            }
        }

        #[test]
        fn sdp_shaped_text_never_panics(lines in proptest::collection::vec(
            "[vosctmab]=[ -~]{0,40}|a=(rtpmap|fmtp|rtcp|ptime):[0-9]{1,4} [ -~]{0,20}|m=audio [0-9]{1,6} RTP/AVP [0-9 ]{1,12}",
            0..20,
        )) {
            let text = format!("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n{}", lines.join("\r\n"));
            if let Ok(sd) = SessionDescription::parse(&text) {
                // Printing is stable: print → parse → print gives the same text.
                let printed = sd.to_string();
                let again = SessionDescription::parse(&printed).map(|d| d.to_string());
                prop_assert_eq!(again.ok(), Some(printed));
                let mut s = SdpSession::new("-", 1, 1);
                if let Ok((ans, _)) = answer_offer(&sd, &mut s, addr("192.0.2.1:4000"), &PREFS, Direction::SendRecv) {
                    prop_assert!(accept_answer(&sd, &ans).is_ok());
                }
            }
        }

        #[test]
        fn offer_parse_answer_round_trips(
            prefs in proptest::sample::subsequence(PREFS.to_vec(), 1..=3).prop_shuffle(),
            theirs in proptest::sample::subsequence(PREFS.to_vec(), 1..=3).prop_shuffle(),
            port in 1024u16..65000,
            v6 in any::<bool>(),
        ) {
            let ip = if v6 { "[2001:db8::1]" } else { "192.0.2.1" };
            let local = addr(&format!("{ip}:{port}"));
            let mut a = SdpSession::new("a", 1, 1);
            let mut b = SdpSession::new("b", 2, 1);
            let offer = create_offer(&mut a, local, &prefs, Direction::SendRecv);
            let parsed = SessionDescription::parse(&offer.to_string()).unwrap();
            prop_assert_eq!(&parsed, &offer);
            let expected = theirs.iter().copied().find(|c| prefs.contains(c));
            let result = answer_offer(&parsed, &mut b, addr("192.0.2.2:7000"), &theirs, Direction::SendRecv);
            match expected {
                None => prop_assert_eq!(result.unwrap_err(), SdpError::NoCommonCodec),
                Some(codec) => {
                    let (ans, bn) = result.unwrap();
                    let an = accept_answer(&parsed, &SessionDescription::parse(&ans.to_string()).unwrap()).unwrap();
                    prop_assert_eq!((an.codec, bn.codec), (codec, codec));
                    prop_assert_eq!(an.payload_type, bn.payload_type);
                    prop_assert_eq!(an.telephone_event, bn.telephone_event);
                    prop_assert!(an.telephone_event.is_some());
                    prop_assert_eq!(bn.remote_rtp, local);
                    prop_assert_eq!(an.direction, Direction::SendRecv);
                }
            }
        }
    }
}
