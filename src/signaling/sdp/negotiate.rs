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

use super::parse::{
    addr_type, Attribute, Connection, MediaDescription, Origin, SessionDescription,
};
use super::{Codec, Direction, Negotiated, SdpError, SdpSession};

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
            address: local_rtp.ip().to_string(),
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
    attrs.push(Attribute::value("rtpmap", format!("{pt} {rtpmap}")));
    if let Some(f) = fmtp {
        attrs.push(Attribute::value("fmtp", format!("{pt} {f}")));
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
    attrs.push(Attribute::value("ptime", PTIME_MS.to_string()));
    if mux {
        attrs.push(Attribute::flag("rtcp-mux"));
    }
    if rtcp {
        if let Some(p) = local_rtp.port().checked_add(1) {
            attrs.push(Attribute::value("rtcp", p.to_string()));
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
        formats.push(pt.to_string());
        let fmtp = (*c == Codec::Opus).then_some(OPUS_FMTP);
        push_format(&mut attrs, pt, c.rtpmap(), fmtp);
    }
    for (clock, pt) in [(48_000, TELEPHONE_EVENT_48K), (8_000, TELEPHONE_EVENT_8K)] {
        if codecs.iter().any(|c| c.clock_rate() == clock) {
            formats.push(pt.to_string());
            let map = telephone_event_rtpmap(clock);
            push_format(&mut attrs, pt, &map, Some(TELEPHONE_EVENT_FMTP));
        }
    }
    push_tail(&mut attrs, local_rtp, true, true, direction);
    let mut sd = skeleton(local_rtp);
    sd.media.push(MediaDescription {
        media: "audio".to_owned(),
        port: local_rtp.port(),
        port_count: None,
        protocol: "RTP/AVP".to_owned(),
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
    match m.rtpmap(fmt) {
        Some(map) => {
            map.encoding.eq_ignore_ascii_case(codec.encoding_name())
                && map.clock_rate == codec.clock_rate()
        }
        None => fmt
            .parse::<u8>()
            .is_ok_and(|pt| codec.static_payload_type() == Some(pt)),
    }
}

fn payload_type(fmt: &str) -> Option<u8> {
    fmt.parse::<u8>().ok().filter(|pt| *pt < 128)
}

/// The telephone-event payload type in `m` at `clock`, among `allowed` formats.
fn find_telephone_event(
    m: &MediaDescription,
    clock: u32,
    allowed: impl Fn(&str) -> bool,
) -> Option<u8> {
    m.formats.iter().find_map(|fmt| {
        let map = m.rtpmap(fmt)?;
        let ok = map.encoding.eq_ignore_ascii_case("telephone-event")
            && map.clock_rate == clock
            && allowed(fmt);
        ok.then(|| payload_type(fmt)).flatten()
    })
}

/// An RTP audio m-line in use that we can carry (plain RTP/AVP or RTP/AVPF, no SRTP).
fn usable(m: &MediaDescription) -> bool {
    m.media.eq_ignore_ascii_case("audio")
        && m.port != 0
        && (m.protocol.eq_ignore_ascii_case("RTP/AVP")
            || m.protocol.eq_ignore_ascii_case("RTP/AVPF"))
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

/// Checks at INVITE time that we could answer this offer (else 488 before ringing).
pub fn check_offer(offer: &SessionDescription, codecs: &[Codec]) -> Result<(), SdpError> {
    select(offer, codecs).map(|_| ())
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
    let fmtp = if choice.codec == Codec::Opus {
        peer.fmtp(&choice.payload_type.to_string())
    } else {
        Vec::new()
    };
    let param = |k: &str| {
        fmtp.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
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
        let mut formats = vec![choice.payload_type.to_string()];
        let mut attrs = Vec::new();
        let fmtp = (choice.codec == Codec::Opus).then_some(OPUS_FMTP);
        push_format(&mut attrs, choice.payload_type, choice.codec.rtpmap(), fmtp);
        if let Some(te) = choice.telephone_event {
            formats.push(te.to_string());
            let map = telephone_event_rtpmap(choice.codec.clock_rate());
            push_format(&mut attrs, te, &map, Some(TELEPHONE_EVENT_FMTP));
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
    let n = negotiated(local_rtp, choice, om, conn, our_direction, rtcp_mux);
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
    Ok(negotiated(
        local_rtp,
        choice,
        am,
        answer_conn,
        our_direction,
        rtcp_mux,
    ))
}
