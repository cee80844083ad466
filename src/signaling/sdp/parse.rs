//! RFC 4566 session descriptions: a tolerant parser (the CRLF printer is in `print.rs`).
//!
//! Every line is kept (unknown ones included), so a description prints back in the order
//! RFC 4566 §5 prescribes. Only what offer/answer needs is typed: `o=`, `s=`, `c=`, `t=`, `m=`
//! and `a=` lines.

use std::net::IpAddr;

use super::{Direction, SdpError};

/// An `a=` line: `a=name` or `a=name:value` (RFC 4566 §5.13).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// The attribute name, e.g. `rtpmap`.
    pub name: String,
    /// The value after the first `:`, if any.
    pub value: Option<String>,
}

impl Attribute {
    /// A property attribute without a value (`a=rtcp-mux`).
    pub fn flag(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            value: None,
        }
    }

    /// A value attribute (`a=ptime:20`).
    pub fn value(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            value: Some(value.into()),
        }
    }

    fn parse(text: &str) -> Self {
        match memchr::memchr(b':', text.as_bytes()).map(|i| (&text[..i], &text[i + 1..])) {
            Some((name, value)) => Self::value(trim(name), trim(value)),
            None => Self::flag(trim(text)),
        }
    }
}

/// A `c=` line (RFC 4566 §5.7): `IN IP4 <addr>` or `IN IP6 <addr>`; a multicast `/ttl` suffix is
/// dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connection {
    /// The connection address.
    pub address: IpAddr,
}

impl Connection {
    fn parse(text: &str) -> Result<Self, SdpError> {
        let mut it = text.split_ascii_whitespace();
        let (Some(net), Some(kind), Some(addr), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(malformed("c", text));
        };
        if !net.eq_ignore_ascii_case("IN") {
            return Err(malformed("c", text));
        }
        let addr = addr.split('/').next().unwrap_or(addr);
        let address: IpAddr = addr.parse().map_err(|_| malformed("c", text))?;
        let kind_ok = match address {
            IpAddr::V4(_) => kind.eq_ignore_ascii_case("IP4"),
            IpAddr::V6(_) => kind.eq_ignore_ascii_case("IP6"),
        };
        if !kind_ok {
            return Err(malformed("c", text));
        }
        Ok(Self { address })
    }

    /// True for the RFC 2543 hold address `0.0.0.0` (RFC 3264 §8.4).
    pub fn is_hold(&self) -> bool {
        self.address.is_unspecified()
    }
}

/// `IP4` or `IP6`.
pub(super) fn addr_type(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// The `o=` line (RFC 4566 §5.2). Ids and versions are kept as text: peers send numbers wider
/// than 64 bits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `<username>` (`-` when none).
    pub username: String,
    /// `<sess-id>`.
    pub session_id: String,
    /// `<sess-version>`.
    pub session_version: String,
    /// `<addrtype>`: `IP4` or `IP6`.
    pub address_type: String,
    /// `<unicast-address>` (may be a host name).
    pub address: String,
}

impl Origin {
    fn parse(text: &str) -> Result<Self, SdpError> {
        let mut f = text.split_ascii_whitespace();
        match [
            f.next(),
            f.next(),
            f.next(),
            f.next(),
            f.next(),
            f.next(),
            f.next(),
        ] {
            [Some(user), Some(id), Some(version), Some(net), Some(kind), Some(addr), None]
                if net.eq_ignore_ascii_case("IN") =>
            {
                Ok(Self {
                    username: user.to_owned(),
                    session_id: id.to_owned(),
                    session_version: version.to_owned(),
                    address_type: kind.to_owned(),
                    address: addr.to_owned(),
                })
            }
            _ => Err(malformed("o", text)),
        }
    }
}

/// One `m=` section (RFC 4566 §5.14) with its own lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaDescription {
    /// `audio`, `video`, `application`, ...
    pub media: String,
    /// The transport port; 0 means the stream is rejected or disabled.
    pub port: u16,
    /// The optional `/<number of ports>`.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/AVPF`, `RTP/SAVP`, ...
    pub protocol: String,
    /// The format list (payload type numbers for RTP).
    pub formats: Vec<String>,
    /// The media-level `c=` line.
    pub connection: Option<Connection>,
    /// The media-level `a=` lines, in order.
    pub attributes: Vec<Attribute>,
    /// Other media-level lines (`i=`, `b=`, `k=`, unknown), as (type, value).
    pub other: Vec<(char, String)>,
}

/// An `a=rtpmap` value (RFC 4566 §6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RtpMap {
    /// The encoding name, as written.
    pub encoding: String,
    /// The clock rate in Hz.
    pub clock_rate: u32,
    /// The channel count, if written.
    pub channels: Option<u32>,
}

impl MediaDescription {
    fn parse(text: &str) -> Result<Self, SdpError> {
        let mut it = text.split_ascii_whitespace();
        let (Some(media), Some(port), Some(protocol)) = (it.next(), it.next(), it.next()) else {
            return Err(malformed("m", text));
        };
        let formats: Vec<String> = it.map(str::to_owned).collect();
        if formats.is_empty() {
            return Err(malformed("m", text));
        }
        let (port, count) = match port.split_once('/') {
            Some((p, n)) => (p, Some(n)),
            None => (port, None),
        };
        let port: u16 = port.parse().map_err(|_| malformed("m", text))?;
        let port_count = match count {
            Some(n) => Some(n.parse::<u16>().map_err(|_| malformed("m", text))?),
            None => None,
        };
        Ok(Self {
            media: media.to_owned(),
            port,
            port_count,
            protocol: protocol.to_owned(),
            formats,
            connection: None,
            attributes: Vec::with_capacity(8),
            other: Vec::new(),
        })
    }

    /// The value of the first attribute named `name` (case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.value.as_deref().unwrap_or(""))
    }

    /// True when a flag attribute such as `rtcp-mux` is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// The value of `a=<name>:<pt> <value>` for one payload type (rtpmap, fmtp).
    fn per_format(&self, name: &str, pt: &str) -> Option<&str> {
        if pt.as_bytes().contains(&b' ') {
            // The payload type ends at the first space: one with a space never matches.
            return None;
        }
        self.attributes.iter().find_map(|a| {
            let v = a.value.as_deref()?;
            // `<pt> <rest>`: the payload type first, the name only when it matches.
            let rest = v.strip_prefix(pt)?;
            let rest = match rest.as_bytes().first() {
                None => "",
                Some(b' ') => &rest[1..],
                Some(_) => return None,
            };
            a.name.eq_ignore_ascii_case(name).then(|| trim(rest))
        })
    }

    /// The `a=rtpmap` of a payload type, if present and well formed.
    pub fn rtpmap(&self, pt: &str) -> Option<RtpMap> {
        let (encoding, clock_rate, channels) = self.rtpmap_parts(pt)?;
        Some(RtpMap {
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
        })
    }

    /// The `a=rtpmap` of a payload type as (encoding, clock rate, channels), borrowed.
    pub(super) fn rtpmap_parts(&self, pt: &str) -> Option<(&str, u32, Option<u32>)> {
        let v = self.per_format("rtpmap", pt)?;
        // `<encoding>/<clock rate>[/<channels>]`; anything after a third `/` is ignored.
        let (encoding, rest) = v.split_at(memchr::memchr(b'/', v.as_bytes())?);
        let rest = &rest[1..];
        let (clock_rate, channels) = match memchr::memchr(b'/', rest.as_bytes()) {
            Some(i) => {
                let c = &rest[i + 1..];
                let c = &c[..memchr::memchr(b'/', c.as_bytes()).unwrap_or(c.len())];
                (number(&rest[..i])?, Some(number(c)?))
            }
            None => (number(rest)?, None),
        };
        Some((trim(encoding), clock_rate, channels))
    }

    /// The `a=fmtp` parameters of a payload type (`key=value` pairs split on `;`).
    pub fn fmtp(&self, pt: &str) -> Vec<(String, String)> {
        self.fmtp_pairs(pt)
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect()
    }

    /// The `a=fmtp` parameters of a payload type, borrowed: names as written (compare them
    /// case-insensitively), values trimmed.
    pub(super) fn fmtp_pairs(&self, pt: &str) -> impl Iterator<Item = (&str, &str)> {
        self.per_format("fmtp", pt)
            .unwrap_or_default()
            .split(';')
            .filter_map(|p| {
                let p = trim(p);
                if p.is_empty() {
                    return None;
                }
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Some((trim(k), trim(v)))
            })
    }

    /// The direction attribute at media level, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .rev()
            .find_map(|a| Direction::from_attribute(&a.name))
    }

    /// `a=ptime` in milliseconds, if present and numeric.
    pub fn ptime(&self) -> Option<u32> {
        self.attribute("ptime")?.trim().parse().ok()
    }

    /// `a=maxptime` in milliseconds, if present and numeric.
    pub fn maxptime(&self) -> Option<u32> {
        self.attribute("maxptime")?.trim().parse().ok()
    }

    /// `a=rtcp:<port> [IN IP4 <addr>]` (RFC 3605), if present and well formed.
    pub fn rtcp(&self) -> Option<(u16, Option<IpAddr>)> {
        let v = self.attribute("rtcp")?.trim();
        let (port, rest) = v.split_once(' ').unwrap_or((v, ""));
        let port = port.parse().ok()?;
        let addr = if rest.trim().is_empty() {
            None
        } else {
            Some(Connection::parse(rest).ok()?.address)
        };
        Some((port, addr))
    }

    /// The media-level `c=`, else the session-level one.
    pub fn effective_connection(&self, session: &SessionDescription) -> Option<Connection> {
        self.connection.or(session.connection)
    }
}

/// `text.trim()`, returning at once when there is nothing to trim (the usual case).
fn trim(text: &str) -> &str {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        // Visible ASCII at both ends: no whitespace to remove.
        (Some(&first), Some(&last))
            if (0x21..0x80).contains(&first) && (0x21..0x80).contains(&last) =>
        {
            text
        }
        _ => text.trim(),
    }
}

/// The lines of `text` (LF or CRLF ends) that are not blank.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || loop {
        let t = rest?;
        // `\n` is ASCII: both sides are char boundaries.
        let line = match memchr::memchr(b'\n', t.as_bytes()) {
            Some(i) => {
                rest = Some(&t[i + 1..]);
                &t[..i]
            }
            None => {
                rest = None;
                t
            }
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !trim(line).is_empty() {
            return Some(line);
        }
    })
}

/// `text.trim().parse::<u32>()`, plain digits read directly.
fn number(text: &str) -> Option<u32> {
    let digits = trim(text);
    match digits.as_bytes() {
        bytes if !bytes.is_empty() && bytes.len() <= 9 && bytes.iter().all(u8::is_ascii_digit) => {
            Some(bytes.iter().fold(0, |n, &b| n * 10 + u32::from(b - b'0')))
        }
        _ => digits.parse().ok(),
    }
}

/// A whole SDP body (RFC 4566 §5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionDescription {
    /// `o=`.
    pub origin: Origin,
    /// `s=` (`-` or a name).
    pub session_name: String,
    /// The session-level `c=`.
    pub connection: Option<Connection>,
    /// The `t=` lines as (start, stop); `t=0 0` is printed when empty.
    pub timing: Vec<(u64, u64)>,
    /// Session-level `a=` lines.
    pub attributes: Vec<Attribute>,
    /// Other session-level lines (`i= u= e= p= b= r= z= k=`, unknown), as (type, value).
    pub other: Vec<(char, String)>,
    /// The `m=` sections, all of them, in order.
    pub media: Vec<MediaDescription>,
}

fn malformed(kind: &str, line: &str) -> SdpError {
    let mut line = line.to_owned();
    if line.len() > 80 {
        let mut cut = 80;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    SdpError::Malformed(format!("bad {kind}= line: {line:?}"))
}

impl SessionDescription {
    /// The address of the first audio stream that is not rejected (port 0): its media-level
    /// `c=`, else the session-level one.
    pub fn audio_address(&self) -> Option<IpAddr> {
        self.media
            .iter()
            .find(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
            .and_then(|m| m.effective_connection(self))
            .map(|c| c.address)
    }

    /// Parses a body that must be UTF-8.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, SdpError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| SdpError::Malformed("SDP is not UTF-8".into()))?;
        Self::parse(text)
    }

    /// Parses SDP text (CRLF or LF line ends). Needs `v=0`, `o=`, `s=`, a well-formed `m=` for
    /// every section and a `c=` (media or session level) for every audio stream in use.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let mut lines = lines(text);
        match lines.next() {
            Some(l) if l.trim_end() == "v=0" => {}
            Some(l) => return Err(malformed("v", l)),
            None => return Err(SdpError::Malformed("empty SDP".into())),
        }
        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut timing = Vec::new();
        let mut attributes = Vec::new();
        let mut other = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();
        for line in lines {
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_alphabetic() {
                return Err(SdpError::Malformed(format!(
                    "not a <type>=<value> line: {:?}",
                    line.chars().take(80).collect::<String>()
                )));
            }
            let kind = char::from(bytes[0]);
            let value = &line[2..];
            if kind == 'm' {
                media.push(MediaDescription::parse(value)?);
                continue;
            }
            if let Some(m) = media.last_mut() {
                match kind {
                    'c' => m.connection = Some(Connection::parse(value)?),
                    'a' => m.attributes.push(Attribute::parse(value)),
                    _ => m.other.push((kind, value.to_owned())),
                }
                continue;
            }
            match kind {
                'v' => return Err(malformed("v", line)),
                'o' if origin.is_none() => origin = Some(Origin::parse(value)?),
                'o' => return Err(malformed("o", line)),
                's' if session_name.is_none() => session_name = Some(value.trim().to_owned()),
                's' => return Err(malformed("s", line)),
                'c' => connection = Some(Connection::parse(value)?),
                't' => {
                    let mut it = value.split_ascii_whitespace().map(str::parse::<u64>);
                    match (it.next(), it.next(), it.next()) {
                        (Some(Ok(start)), Some(Ok(stop)), None) => timing.push((start, stop)),
                        _ => return Err(malformed("t", line)),
                    }
                }
                'a' => attributes.push(Attribute::parse(value)),
                _ => other.push((kind, value.to_owned())),
            }
        }
        let origin = origin.ok_or_else(|| SdpError::Malformed("missing o= line".into()))?;
        let session_name =
            session_name.ok_or_else(|| SdpError::Malformed("missing s= line".into()))?;
        let sd = Self {
            origin,
            session_name,
            connection,
            timing,
            attributes,
            other,
            media,
        };
        for m in &sd.media {
            if m.media.eq_ignore_ascii_case("audio")
                && m.port != 0
                && m.effective_connection(&sd).is_none()
            {
                return Err(SdpError::Malformed("audio stream without a c= line".into()));
            }
        }
        Ok(sd)
    }

    /// The session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .rev()
            .find_map(|a| Direction::from_attribute(&a.name))
    }
}

impl std::str::FromStr for SessionDescription {
    type Err = SdpError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn rtpmap_reads_what_a_split_on_slashes_reads(
            value in "[0-9]( ([a-zA-Z0-9/ +.-]{0,24}|[a-z]{1,4} ?/ ?[0-9+]{0,6}(/[0-9 ]{0,3})?(/x)?))?",
            pt in "[0-9] ?",
        ) {
            let m = MediaDescription::parse("audio 4000 RTP/AVP 0").unwrap();
            let m = MediaDescription {
                attributes: vec![Attribute::value("rtpmap", value.clone())],
                ..m
            };
            // The reading before the byte-level one.
            let old = (|| {
                let (p, rest) = value.split_once(' ').unwrap_or((&value, ""));
                if p != pt {
                    return None;
                }
                let mut parts = rest.trim().split('/');
                let encoding = parts.next()?.trim().to_owned();
                let clock_rate = parts.next()?.trim().parse().ok()?;
                let channels = match parts.next() {
                    Some(c) => Some(c.trim().parse().ok()?),
                    None => None,
                };
                Some(RtpMap { encoding, clock_rate, channels })
            })();
            prop_assert_eq!(m.rtpmap(&pt), old);
        }
    }

    const LINPHONE: &str = "v=0\r\n\
o=alice 3724 1286 IN IP4 192.0.2.10\r\n\
s=Talk\r\n\
c=IN IP4 192.0.2.10\r\n\
b=AS:380\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/AVP 96 0 8 101\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1; stereo=1\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp:7079\r\n\
m=video 9078 RTP/AVP 96\r\n\
c=IN IP4 192.0.2.11\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=x-unknown-thing\r\n";

    #[test]
    fn parses_every_line_and_prints_it_back() {
        let sd = SessionDescription::parse(LINPHONE).unwrap();
        assert_eq!(sd.origin.username, "alice");
        assert_eq!(sd.origin.session_version, "1286");
        assert_eq!(sd.session_name, "Talk");
        assert_eq!(sd.connection.unwrap().address.to_string(), "192.0.2.10");
        assert_eq!(sd.timing, vec![(0, 0)]);
        assert_eq!(sd.other, vec![('b', "AS:380".to_owned())]);
        assert_eq!(sd.media.len(), 2);
        let audio = &sd.media[0];
        assert_eq!((audio.port, audio.protocol.as_str()), (7078, "RTP/AVP"));
        assert_eq!(audio.formats, ["96", "0", "8", "101"]);
        let map = audio.rtpmap("96").unwrap();
        assert_eq!(
            (map.encoding.as_str(), map.clock_rate, map.channels),
            ("opus", 48000, Some(2))
        );
        assert_eq!(audio.rtpmap("0"), None);
        let fmtp = audio.fmtp("96");
        assert!(fmtp.contains(&("stereo".to_owned(), "1".to_owned())));
        assert_eq!(audio.rtcp(), Some((7079, None)));
        let video = &sd.media[1];
        assert_eq!(video.connection.unwrap().address.to_string(), "192.0.2.11");
        assert!(video.has_attribute("x-unknown-thing"));
        // Printing gives the same text back, line for line.
        assert_eq!(sd.to_string(), LINPHONE);
        assert_eq!(SessionDescription::parse(&sd.to_string()).unwrap(), sd);
    }

    #[test]
    fn accepts_lf_only_and_ipv6() {
        let text = "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
        let sd = SessionDescription::parse(text).unwrap();
        assert_eq!(
            sd.connection.unwrap().address,
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert!(sd.to_string().contains("c=IN IP6 2001:db8::1\r\n"));
        assert!(sd.to_string().ends_with("m=audio 4000 RTP/AVP 0\r\n"));
    }

    #[test]
    fn multicast_ttl_is_dropped_and_port_count_kept() {
        let text = "v=0\r\no=- 1 1 IN IP4 h.example\r\ns=-\r\nc=IN IP4 224.2.1.1/127\r\nt=0 0\r\nm=audio 4000/2 RTP/AVP 0\r\n";
        let sd = SessionDescription::parse(text).unwrap();
        assert_eq!(sd.connection.unwrap().address.to_string(), "224.2.1.1");
        assert_eq!(sd.media[0].port_count, Some(2));
        assert!(sd.to_string().contains("m=audio 4000/2 RTP/AVP 0\r\n"));
    }

    fn malformed_reason(text: &str) -> String {
        match SessionDescription::parse(text) {
            Err(SdpError::Malformed(why)) => why,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        let good = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert!(SessionDescription::parse(good).is_ok());
        let cases = [
            ("", "empty"),
            ("v=1\r\n", "v="),
            (
                &good.replace("o=- 1 1 IN IP4 192.0.2.1\r\n", ""),
                "missing o=",
            ),
            (&good.replace("s=-\r\n", ""), "missing s="),
            (&good.replace("c=IN IP4 192.0.2.1\r\n", ""), "without a c="),
            (&good.replace("192.0.2.1\r\nt", "192.0.2.999\r\nt"), "c="),
            (
                &good.replace("IN IP4 192.0.2.1\r\nt", "IN IP6 192.0.2.1\r\nt"),
                "c=",
            ),
            (&good.replace("4000", "70000"), "m="),
            (&good.replace("4000", "-1"), "m="),
            (&good.replace("RTP/AVP 0", "RTP/AVP"), "m="),
            (&good.replace("m=audio 4000 RTP/AVP 0", "m=audio"), "m="),
            (&good.replace("t=0 0", "t=now"), "t="),
            (&good.replace("t=0 0", "garbage line"), "not a <type>"),
            (&good.replace("o=- 1 1 IN IP4 192.0.2.1", "o=- 1 1"), "o="),
        ];
        for (text, needle) in cases {
            let why = malformed_reason(text);
            assert!(why.contains(needle), "{text:?} gave {why:?}");
        }
        assert_eq!(
            SessionDescription::parse_bytes(b"v=0\r\ns=\xff\r\n"),
            Err(SdpError::Malformed("SDP is not UTF-8".into()))
        );
    }

    #[test]
    fn rejected_audio_needs_no_connection() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
        assert!(SessionDescription::parse(text).is_ok());
    }

    #[test]
    fn direction_and_rtcp_attributes() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=recvonly\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:30\r\na=maxptime:60\r\na=sendonly\r\na=rtcp:5000 IN IP4 192.0.2.7\r\n";
        let sd = SessionDescription::parse(text).unwrap();
        assert_eq!(sd.direction(), Some(Direction::RecvOnly));
        let m = &sd.media[0];
        assert_eq!(m.direction(), Some(Direction::SendOnly));
        assert_eq!(m.ptime(), Some(30));
        assert_eq!(m.maxptime(), Some(60));
        assert_eq!(m.rtcp(), Some((5000, Some("192.0.2.7".parse().unwrap()))));
    }
}
