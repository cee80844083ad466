//! SDP offer/answer (RFC 3264, RFC 4566) for one audio stream: Opus (RFC 7587), PCMU, PCMA and
//! telephone-event (RFC 4733). TODO(helper: sdp): implement.

use std::net::SocketAddr;

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

/// What offer/answer agreed for the audio stream, from our point of view.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    /// The codec to send and expect.
    pub codec: Codec,
    /// Its RTP payload type (dynamic for Opus: whatever the offer mapped).
    pub payload_type: u8,
    /// RTP clock rate (48000 for Opus, 8000 for G.711).
    pub clock_rate: u32,
    /// telephone-event payload type, if both sides have it.
    pub telephone_event: Option<u8>,
    /// Where to send RTP.
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
}
