//! SDP offer/answer (RFC 3264, RFC 4566) for one audio stream: Opus (RFC 7587), PCMU, PCMA and
//! telephone-event (RFC 4733).
//!
//! [`parse`] reads and prints session descriptions; [`negotiate`] makes offers and answers;
//! [`crypto`] carries SRTP keys (RFC 4568 SDES).
//! Everything here is pure: no I/O, no clock.

use std::net::SocketAddr;

pub mod crypto;
pub mod negotiate;
pub mod parse;
mod print;

pub use crypto::{MasterKey, SrtpKeys, SrtpPolicy, SrtpSuite};

pub use negotiate::{accept_answer, answer_offer, check_offer, create_offer};
pub use parse::{Attribute, Connection, MediaDescription, Origin, RtpMap, SessionDescription};

/// Why a description or a negotiation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// The body is not valid SDP (the core answers 400).
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No audio stream with a codec we speak (the core answers 488).
    #[error("no common audio codec")]
    NoCommonCodec,
    /// The answer does not fit our offer (wrong m-line count, a codec we did not offer, ...).
    #[error("answer does not match the offer: {0}")]
    AnswerMismatch(String),
    /// The SRTP policy and the peer's description disagree (a plain stream where SRTP is
    /// mandatory, or SRTP where it is off): 488.
    #[error("SRTP policy not met: {0}")]
    Security(&'static str),
}

impl SdpError {
    /// The SIP final response this error calls for when it comes from an offer we received:
    /// 400 for a malformed body, 488 Not Acceptable Here otherwise.
    pub fn status_code(&self) -> u16 {
        match self {
            SdpError::Malformed(_) => 400,
            SdpError::NoCommonCodec | SdpError::AnswerMismatch(_) | SdpError::Security(_) => 488,
        }
    }
}

impl Codec {
    /// The rtpmap encoding name (`opus`, `PCMU`, `PCMA`).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The RTP clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Pcmu | Codec::Pcma => 8_000,
        }
    }

    /// The payload type we offer: 111 for Opus (dynamic), 0 and 8 for G.711 (static, RFC 3551).
    pub fn default_payload_type(self) -> u8 {
        match self {
            Codec::Opus => 111,
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The static payload type, for codecs that have one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Opus => None,
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
        }
    }

    /// The rtpmap value after the payload type (`opus/48000/2`, `PCMU/8000`).
    pub fn rtpmap(self) -> &'static str {
        match self {
            Codec::Opus => "opus/48000/2",
            Codec::Pcmu => "PCMU/8000",
            Codec::Pcma => "PCMA/8000",
        }
    }
}

/// An audio codec wakeline speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// opus/48000/2 (RFC 7587).
    Opus,
    /// PCMU/8000, payload type 0.
    Pcmu,
    /// PCMA/8000, payload type 8.
    Pcma,
}

/// Stream direction (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// sendrecv
    SendRecv,
    /// sendonly
    SendOnly,
    /// recvonly
    RecvOnly,
    /// inactive
    Inactive,
}

impl Direction {
    /// The attribute name (`sendrecv`, ...).
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Reads a direction attribute name.
    pub fn from_attribute(name: &str) -> Option<Self> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| name.eq_ignore_ascii_case(d.attribute()))
    }

    /// From the two halves.
    pub fn from_parts(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// True for sendrecv and sendonly.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// True for sendrecv and recvonly.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same stream seen from the other side (sendonly ↔ recvonly).
    pub fn reversed(self) -> Self {
        Self::from_parts(self.receives(), self.sends())
    }

    /// What both allow: each half only if both have it.
    pub fn intersect(self, other: Self) -> Self {
        Self::from_parts(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    /// True when the stream is on hold from this side (not sendrecv).
    pub fn is_hold(self) -> bool {
        self != Direction::SendRecv
    }
}

/// One call's `o=` line state (RFC 3264 §8): the same username and session id for the whole
/// call, and a version that goes up whenever a new offer or answer changes anything.
#[derive(Debug, Clone, PartialEq)]
pub struct SdpSession {
    /// `<username>` in `o=` (`-` is fine).
    pub username: String,
    /// `<sess-id>`: fixed for the call.
    pub id: u64,
    /// `<sess-version>` of the last description we made.
    pub version: u64,
    /// A hash of the last description we made, with the version blanked, to tell whether the
    /// next one changed anything (a copy of it cost more to make, compare and drop).
    last: Option<u64>,
    /// The SRTP policy for this call's offers and answers.
    pub srtp: SrtpPolicy,
    /// Our SDES keys for this call (drawn on first use).
    pub(crate) keys: crypto::LocalKeys,
}

impl SdpSession {
    /// Drops the copy of the last description (the call has ended: no description follows).
    pub(crate) fn forget_last(&mut self) {
        self.last = None;
    }

    /// A new call's o= state; the first description carries `version`. SRTP is off until
    /// [`with_srtp`](Self::with_srtp) or [`SdpSession::srtp`] says otherwise.
    pub fn new(username: impl Into<String>, id: u64, version: u64) -> Self {
        Self {
            username: username.into(),
            id,
            version,
            last: None,
            srtp: SrtpPolicy::Off,
            keys: crypto::LocalKeys::default(),
        }
    }

    /// The same with an SRTP policy.
    pub fn with_srtp(mut self, policy: SrtpPolicy) -> Self {
        self.srtp = policy;
        self
    }

    /// Fills in `desc.origin` with our username, id and version; the version goes up by one if
    /// `desc` differs from the previous description made with this session.
    pub(crate) fn stamp(&mut self, desc: &mut SessionDescription) {
        // o= fields are space separated: a username that would break the line becomes `-`.
        desc.origin.username = if self.username.is_empty()
            || self
                .username
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            "-".to_owned()
        } else {
            self.username.clone()
        };
        desc.origin.session_id = print::decimal(self.id);
        desc.origin.session_version = String::new();
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut hasher = Fingerprint::default();
            desc.hash(&mut hasher);
            hasher.finish()
        };
        if self.last.is_some_and(|last| last != fingerprint) {
            self.version = self.version.wrapping_add(1);
        }
        self.last = Some(fingerprint);
        desc.origin.session_version = print::decimal(self.version);
    }
}

/// A 64-bit fingerprint of a description, to tell whether it changed: eight bytes at a time,
/// multiply and rotate (SipHash, the standard hasher, took as long as the copy it replaced).
/// Not for hash tables: it has no seed.
#[derive(Default)]
struct Fingerprint(u64);

impl Fingerprint {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(31);
    }
}

impl std::hash::Hasher for Fingerprint {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.mix(u64::from_le_bytes(w));
        }
        let tail = words.remainder();
        // The tail's bytes little-endian (shifted in: no copy call for a few bytes), its length
        // in the top byte: `ab` and `ab\0` differ.
        let mut w = 0u64;
        for (i, &b) in tail.iter().enumerate() {
            w |= u64::from(b) << (8 * i);
        }
        w ^= (tail.len() as u64) << 56;
        self.mix(w);
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n) | 1 << 63);
    }

    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n) | 1 << 62);
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n) | 1 << 61);
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What offer/answer agreed for the audio stream, from our point of view.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    /// Our RTP address, as written in our description.
    pub local_rtp: SocketAddr,
    /// The codec to send and expect.
    pub codec: Codec,
    /// Its RTP payload type (dynamic for Opus: whatever the offer mapped).
    pub payload_type: u8,
    /// RTP clock rate (48000 for Opus, 8000 for G.711).
    pub clock_rate: u32,
    /// telephone-event payload type, if both sides have it.
    pub telephone_event: Option<u8>,
    /// Where to send RTP (`0.0.0.0` when the peer holds the RFC 2543 way; `direction` then
    /// does not send).
    pub remote_rtp: SocketAddr,
    /// Where to send RTCP (same as RTP when muxed).
    pub remote_rtcp: SocketAddr,
    /// Both sides agreed on rtcp-mux.
    pub rtcp_mux: bool,
    /// Our direction.
    pub direction: Direction,
    /// Packetisation time in ms (20 unless the peer asked otherwise).
    pub ptime: u32,
    /// Opus: the peer wants in-band FEC.
    pub opus_fec: bool,
    /// Opus: the peer's maxaveragebitrate, if any.
    pub opus_max_average_bitrate: Option<u32>,
    /// Opus: the peer's maxplaybackrate, if any.
    pub opus_max_playback_rate: Option<u32>,
    /// Opus: the peer prefers stereo.
    pub opus_stereo: bool,
    /// SRTP suite and keys when the stream is protected (SDES), `None` for plain RTP.
    pub srtp: Option<SrtpKeys>,
}

impl Negotiated {
    /// A two-way stream of `codec` from `local_rtp` to `remote` (RTP and RTCP muxed) with the
    /// codec's default payload type and clock rate, 20 ms packets, Opus in-band FEC, no
    /// telephone-event and plain RTP: a starting point for driving a media pipeline or a codec
    /// without offer/answer (tests, benches); change fields with struct update syntax.
    pub fn sendrecv(codec: Codec, local_rtp: SocketAddr, remote: SocketAddr) -> Self {
        Negotiated {
            local_rtp,
            codec,
            payload_type: codec.default_payload_type(),
            clock_rate: codec.clock_rate(),
            telephone_event: None,
            remote_rtp: remote,
            remote_rtcp: remote,
            rtcp_mux: true,
            direction: Direction::SendRecv,
            ptime: 20,
            opus_fec: true,
            opus_max_average_bitrate: None,
            opus_max_playback_rate: None,
            opus_stereo: false,
            srtp: None,
        }
    }
}

#[cfg(test)]
mod sdes_tests;
