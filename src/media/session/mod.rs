//! One call's RTP/RTCP session (RFC 3550, RFC 5761 muxing, guarded latching), sans-IO.
//!
//! The driver task owns the UDP socket(s) and calls, in a loop:
//! - [`MediaSession::handle_datagram`] for every datagram received (RTP or RTCP, muxed or not);
//!   RTP comes back as [`Received::Rtp`] for the jitter buffer or the DTMF receiver;
//! - [`MediaSession::send_audio`] / [`MediaSession::send_dtmf`] for each encoded frame; send the
//!   returned bytes to the returned address right away (the buffer is reused);
//! - [`MediaSession::poll_transmit`] until `None` after any call, to send queued RTCP;
//! - [`MediaSession::poll_timeout`] to know when to call [`MediaSession::handle_timeout`].
//!
//! Payloads are opaque bytes: this module knows payload types, not codecs. No I/O, no clock:
//! every method takes `now`, and the wall clock for NTP timestamps is sampled once by the caller.

mod flood;
mod header;
mod receive;
mod rtcp;
mod source;
mod srtp;
mod stats;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use ::rtp::header::Header;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use webrtc_util::marshal::{Marshal, MarshalSize};

pub use self::flood::FloodGate;
use self::rtcp::{NtpClock, RTCP_MIN_INTERVAL};
pub use self::source::{
    behind_nat, Latching, SourcePolicy, Verdict, PROOF_PACKETS, SILENCE_BEFORE_SWITCH,
};
use self::srtp::Srtp;
pub use self::srtp::{SrtpError, MAX_TAG, REPLAY_WINDOW};
use self::stats::{total_lost_signed, SourceStats};
pub use self::stats::{MediaStats, RtpGuard, MAX_JITTER_S, MIN_SEQUENTIAL};
use crate::signaling::sdp::Negotiated;

/// Size of the reusable send buffer: RTP header (12) plus the largest payload we send.
pub const MAX_PACKET: usize = 1500;
const RTP_HEADER: usize = 12;
/// The first report is due within this long of [`MediaSession::new`] (2.5 s × 1.5).
pub const FIRST_REPORT_MAX: Duration = Duration::from_millis(3750);

/// Configuration of a [`MediaSession`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// What SDP agreed.
    pub negotiated: Negotiated,
    /// When media may follow a source other than the SDP address (see [`SourcePolicy`]).
    pub latching: Latching,
    /// SDES CNAME (RFC 3550 §6.5.1), e.g. `user@host` or a random string.
    pub cname: String,
}

/// Why a send failed (API misuse, never the peer's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The payload does not fit the send buffer.
    #[error("payload of {0} bytes is too large")]
    PayloadTooLarge(usize),
    /// No telephone-event payload type was negotiated.
    #[error("telephone-event was not negotiated")]
    NoTelephoneEvent,
    /// The session ended with [`MediaSession::bye`].
    #[error("session closed")]
    Closed,
    /// The packet could not be written.
    #[error("RTP marshal failed: {0}")]
    Marshal(String),
    /// SRTP was agreed but could not protect the packet (nothing is sent in the clear).
    #[error(transparent)]
    Srtp(#[from] SrtpError),
}

/// An RTCP datagram to send: from the RTP socket when muxed, else from the RTCP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address.
    pub destination: SocketAddr,
    /// The bytes.
    pub contents: Vec<u8>,
}

/// An RTP packet ready to send, borrowing the session's reusable buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct OutgoingRtp<'a> {
    /// Where to send it (the SDP address, or a source latched to by policy).
    pub destination: SocketAddr,
    /// The packet.
    pub contents: &'a [u8],
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// It came from an address other than the peer (or from a new source still proving itself).
    ForeignSource,
    /// Not version 2, too short, or otherwise malformed.
    Invalid,
    /// An RTP payload type that was not negotiated.
    UnknownPayloadType,
    /// More packets than the codec's rate allows.
    Flood,
    /// A sequence number seen already.
    Duplicate,
    /// Too far behind the newest packet to be played.
    TooLate,
    /// A new SSRC on RFC 3550 A.1 probation.
    Probation,
    /// SRTP/SRTCP whose authentication tag did not verify (forged, corrupted or garbage).
    SrtpAuth,
    /// SRTP/SRTCP seen before or older than the replay window (RFC 3711 §3.3.2).
    SrtpReplay,
    /// A STUN message (RFC 7983 demux: first byte 0..=3), e.g. a late answer to our Binding
    /// (`media::stun`): not RTP, and not garbage either; not counted as dropped.
    Stun,
}

/// How the session's packets are protected.
#[derive(Debug)]
enum Protection {
    /// Plain RTP/RTCP.
    Plain,
    /// SRTP/SRTCP with the agreed keys.
    Srtp(Box<Srtp>),
    /// SRTP was agreed but the keys were unusable: nothing is sent, everything is dropped.
    Broken,
}

/// What [`MediaSession::handle_datagram`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// An RTP packet from the peer with a negotiated payload type: hand it to the jitter buffer
    /// (or, for the telephone-event type, to the DTMF receiver).
    Rtp {
        /// Sequence number.
        seq: u16,
        /// RTP timestamp.
        ts: u32,
        /// Synchronisation source.
        ssrc: u32,
        /// Marker bit (talk-spurt start for audio, event start for DTMF).
        marker: bool,
        /// Payload type.
        pt: u8,
        /// Payload, without header, extensions or padding.
        payload: &'a [u8],
    },
    /// RTCP, consumed (statistics updated).
    Rtcp,
    /// Dropped and counted.
    Dropped(DropReason),
}

/// RTP/RTCP state of one call; see the module documentation.
#[derive(Debug)]
pub struct MediaSession {
    cfg: SessionConfig,
    rng: StdRng,
    ssrc: u32,
    seq: u16,
    ts: u32,
    clock: NtpClock,
    origin: Instant,
    /// The RTP packet being written ([`MAX_PACKET`], allocated with the first one).
    buf: Vec<u8>,
    /// Where RTP/RTCP go and whose packets count.
    policy: SourcePolicy,
    flood: FloodGate,
    /// A new SSRC on probation: (SSRC, next sequence number, in-sequence packets so far).
    probation: Option<(u32, u16, u32)>,
    sent_any: bool,
    sent_since_report: bool,
    /// Timestamp and time of the last packet sent, to derive the SR RTP time.
    last_sent: Option<(u32, Instant)>,
    source: Option<SourceStats>,
    /// LSR (middle 32 bits of the peer's last SR) and when it arrived.
    last_sr: Option<(u32, Instant)>,
    next_report: Option<Instant>,
    transmits: VecDeque<Transmit>,
    closed: bool,
    stats: MediaStats,
    protection: Protection,
    /// The last packet SRTP/SRTCP unprotected, which a [`Received::Rtp`] payload borrows.
    plain: bytes::Bytes,
}

impl MediaSession {
    /// Creates the session at `now`. `wall` is the wall-clock time at `now` (sampled once, for
    /// NTP timestamps); `rng` draws the SSRC, sequence and timestamp origins and seeds the
    /// report-interval randomisation. The first report is due after half the minimum interval
    /// (randomised).
    pub fn new(cfg: SessionConfig, now: Instant, wall: SystemTime, rng: &mut impl RngCore) -> Self {
        let mut rng = StdRng::seed_from_u64(rng.next_u64());
        let protection = match &cfg.negotiated.srtp {
            None => Protection::Plain,
            Some(keys) => match Srtp::new(keys) {
                Ok(s) => Protection::Srtp(Box::new(s)),
                Err(_) => Protection::Broken,
            },
        };
        let first = rtcp::randomised(RTCP_MIN_INTERVAL / 2, rng.random::<f64>());
        MediaSession {
            ssrc: rng.random(),
            seq: rng.random(),
            ts: rng.random(),
            clock: NtpClock::new(now, wall),
            origin: now,
            // Allocated with the first RTP packet sent.
            buf: Vec::new(),
            policy: SourcePolicy::new(
                cfg.latching,
                now,
                cfg.negotiated.local_rtp,
                cfg.negotiated.remote_rtp,
                cfg.negotiated.remote_rtcp,
                cfg.negotiated.rtcp_mux,
            ),
            flood: FloodGate::new(cfg.negotiated.ptime, now),
            probation: None,
            sent_any: false,
            sent_since_report: false,
            last_sent: None,
            source: None,
            last_sr: None,
            next_report: Some(now + first),
            transmits: VecDeque::new(),
            closed: false,
            stats: MediaStats::default(),
            protection,
            plain: bytes::Bytes::new(),
            rng,
            cfg,
        }
    }

    /// The SRTP suite protecting this session, if any.
    pub fn srtp_suite(&self) -> Option<crate::signaling::sdp::SrtpSuite> {
        match &self.protection {
            Protection::Srtp(s) => Some(s.suite()),
            _ => None,
        }
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The RTP timestamp the next packet will carry (the start of a DTMF event, say).
    pub fn next_timestamp(&self) -> u32 {
        self.ts
    }

    /// Advances the RTP timestamp without sending (frames not sent, e.g. DTX or during DTMF).
    pub fn advance_timestamp(&mut self, ticks: u32) {
        self.ts = self.ts.wrapping_add(ticks);
    }

    /// Where RTP goes now (the SDP address, or a source latched to by policy).
    pub fn rtp_destination(&self) -> SocketAddr {
        self.policy.rtp_destination()
    }

    /// Where RTCP goes now: the RTP address when muxed, else the RTCP address.
    pub fn rtcp_destination(&self) -> SocketAddr {
        self.policy.rtcp_destination()
    }

    /// Statistics so far.
    pub fn stats(&self) -> MediaStats {
        self.stats
    }

    /// Packetises one audio frame with the negotiated payload type. Its timestamp is
    /// [`next_timestamp`](Self::next_timestamp); the timestamp then advances by `ts_advance`
    /// (the frame's length in RTP ticks). Set `marker` on the first packet of a talk spurt (the
    /// very first packet always has it). Send the bytes at once: the buffer is reused. The
    /// caller checks the negotiated direction (and a `0.0.0.0` hold address) before sending.
    pub fn send_audio(
        &mut self,
        now: Instant,
        payload: &[u8],
        ts_advance: u32,
        marker: bool,
    ) -> Result<OutgoingRtp<'_>, SessionError> {
        let pt = self.cfg.negotiated.payload_type;
        let ts = self.ts;
        let marker = marker || !self.sent_any;
        let n = self.write(now, pt, ts, marker, payload)?;
        self.ts = self.ts.wrapping_add(ts_advance);
        Ok(OutgoingRtp {
            destination: self.policy.rtp_destination(),
            contents: &self.buf[..n],
        })
    }

    /// Packetises one RFC 4733 telephone-event payload (built by the caller) with timestamp
    /// `event_ts` (the event's start, the same for all its packets). `marker` on the first
    /// packet of an event. Does not advance the audio timestamp.
    pub fn send_dtmf(
        &mut self,
        now: Instant,
        payload: &[u8],
        event_ts: u32,
        marker: bool,
    ) -> Result<OutgoingRtp<'_>, SessionError> {
        let pt = self
            .cfg
            .negotiated
            .telephone_event
            .ok_or(SessionError::NoTelephoneEvent)?;
        let n = self.write(now, pt, event_ts, marker, payload)?;
        Ok(OutgoingRtp {
            destination: self.policy.rtp_destination(),
            contents: &self.buf[..n],
        })
    }

    fn write(
        &mut self,
        now: Instant,
        pt: u8,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<usize, SessionError> {
        if self.closed {
            return Err(SessionError::Closed);
        }
        if payload.len() > MAX_PACKET - RTP_HEADER - MAX_TAG {
            return Err(SessionError::PayloadTooLarge(payload.len()));
        }
        let header = Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: self.seq,
            timestamp: ts,
            ssrc: self.ssrc,
            ..Header::default()
        };
        if self.buf.is_empty() {
            self.buf = vec![0; MAX_PACKET];
        }
        let h = header.marshal_size();
        header
            .marshal_to(&mut self.buf[..h])
            .map_err(|e| SessionError::Marshal(e.to_string()))?;
        self.buf[h..h + payload.len()].copy_from_slice(payload);
        let len = match &mut self.protection {
            Protection::Plain => h + payload.len(),
            Protection::Srtp(srtp) => {
                let wire = srtp.protect_rtp(&self.buf[..h + payload.len()])?;
                self.buf[..wire.len()].copy_from_slice(&wire);
                wire.len()
            }
            Protection::Broken => return Err(SrtpError("unusable keys".into()).into()),
        };
        self.seq = self.seq.wrapping_add(1);
        self.sent_any = true;
        self.sent_since_report = true;
        self.last_sent = Some((ts, now));
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += payload.len() as u64;
        Ok(len)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next (`None` after [`bye`](Self::bye)).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_report
    }

    /// Sends a report when it is due, then schedules the next one (5 s × 0.5–1.5).
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(due) = self.next_report else { return };
        if now < due {
            return;
        }
        self.queue_report(now, false);
        let next = rtcp::randomised(RTCP_MIN_INTERVAL, self.rng.random::<f64>());
        self.next_report = Some(now + next);
    }

    /// Ends the session: queues a final report with an RTCP BYE and stops the timer. Later
    /// sends fail with [`SessionError::Closed`].
    pub fn bye(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.queue_report(now, true);
        self.closed = true;
        self.next_report = None;
    }

    /// The next datagram to send (RTCP), if any. Call until `None` after every other call.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn queue_report(&mut self, now: Instant, bye: bool) {
        let sender = self.sent_since_report.then(|| {
            let rate = f64::from(self.cfg.negotiated.clock_rate);
            let rtp_time = match self.last_sent {
                Some((ts, at)) => {
                    let d = now.saturating_duration_since(at).as_secs_f64() * rate;
                    ts.wrapping_add(d as u32)
                }
                None => self.ts,
            };
            rtcp::SenderInfo {
                ntp_time: self.clock.ntp(now),
                rtp_time,
                packet_count: self.stats.packets_sent as u32,
                octet_count: self.stats.bytes_sent as u32,
            }
        });
        let mut report = None;
        if let Some(src) = self.source.as_mut().filter(|s| s.received_since_report) {
            let (lsr, dlsr) = match self.last_sr {
                Some((lsr, at)) => (lsr, rtcp::to_ntp_short(now.saturating_duration_since(at))),
                None => (0, 0),
            };
            report = Some(src.report(lsr, dlsr));
            self.stats.fraction_lost = f64::from(src.fraction_lost) / 256.0;
        }
        self.sent_since_report = false;
        // Only a CNAME too long for SDES (a configuration error) stops the report.
        let cname = &self.cfg.cname;
        if let Some(bytes) = rtcp::compound(self.ssrc, sender, report.as_slice(), cname, bye) {
            let contents = match &mut self.protection {
                Protection::Plain => Some(bytes),
                Protection::Srtp(srtp) => srtp.protect_rtcp(&bytes).ok().map(|b| b.to_vec()),
                Protection::Broken => None,
            };
            if let Some(contents) = contents {
                self.transmits.push_back(Transmit {
                    destination: self.rtcp_destination(),
                    contents,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::sdp::{Codec, Direction};
    use proptest::prelude::*;
    use rand::rngs::StdRng;

    pub(super) fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    pub(super) fn negotiated(local: SocketAddr, remote: SocketAddr, mux: bool) -> Negotiated {
        Negotiated {
            local_rtp: local,
            codec: Codec::Opus,
            payload_type: 111,
            clock_rate: 48_000,
            telephone_event: Some(101),
            remote_rtp: remote,
            remote_rtcp: if mux {
                remote
            } else {
                SocketAddr::new(remote.ip(), remote.port() + 1)
            },
            rtcp_mux: mux,
            direction: Direction::SendRecv,
            ptime: 20,
            opus_fec: false,
            opus_max_average_bitrate: None,
            opus_max_playback_rate: None,
            opus_stereo: false,
            srtp: None,
        }
    }

    pub(super) fn session(
        local: &str,
        remote: &str,
        mux: bool,
        latching: Latching,
        seed: u64,
        t0: Instant,
    ) -> MediaSession {
        let cfg = SessionConfig {
            negotiated: negotiated(addr(local), addr(remote), mux),
            latching,
            cname: format!("test{seed}@example.invalid"),
        };
        MediaSession::new(
            cfg,
            t0,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            &mut StdRng::seed_from_u64(seed),
        )
    }

    pub(super) const A: &str = "10.0.0.1:4000";
    pub(super) const B: &str = "10.0.0.2:5000";

    /// Two sessions and a virtual network, event-driven with a virtual clock.
    struct Pair {
        a: MediaSession,
        b: MediaSession,
        now: Instant,
        /// (deliver at, to b?, from, bytes)
        flight: Vec<(Instant, bool, SocketAddr, Vec<u8>)>,
        sent: u32,
        received_b: Vec<u16>,
    }

    impl Pair {
        fn new(mux: bool) -> Self {
            let t0 = Instant::now();
            Pair {
                a: session(A, B, mux, Latching::Off, 1, t0),
                b: session(B, A, mux, Latching::Off, 2, t0),
                now: t0,
                flight: vec![],
                sent: 0,
                received_b: vec![],
            }
        }

        /// Runs for `dur`: both sides send a 20 ms frame every 20 ms (when enabled); `delay`
        /// gives the one-way delay of packet number n (per direction); `drop` drops A→B packets.
        fn run(
            &mut self,
            dur: Duration,
            (a_sends, b_sends): (bool, bool),
            delay: impl Fn(u32) -> Duration,
            drop: impl Fn(u32) -> bool,
        ) {
            let end = self.now + dur;
            let mut next_frame = self.now;
            loop {
                let mut t = next_frame;
                for f in &self.flight {
                    t = t.min(f.0);
                }
                for s in [&self.a, &self.b] {
                    if let Some(x) = s.poll_timeout() {
                        t = t.min(x);
                    }
                }
                if t > end {
                    self.now = end;
                    return;
                }
                self.now = t;
                let now = t;
                if now == next_frame {
                    let n = self.sent;
                    self.sent += 1;
                    if a_sends {
                        let p = self.a.send_audio(now, &[n as u8; 40], 960, false).unwrap();
                        let (d, c) = (p.destination, p.contents.to_vec());
                        assert_eq!(d, addr(B));
                        if !drop(n) {
                            self.flight.push((now + delay(n), true, addr(A), c));
                        }
                    }
                    if b_sends {
                        let p = self.b.send_audio(now, &[n as u8; 40], 960, false).unwrap();
                        let c = p.contents.to_vec();
                        self.flight.push((now + delay(n), false, addr(B), c));
                    }
                    next_frame += Duration::from_millis(20);
                }
                let (due, rest): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.0 <= now);
                self.flight = rest;
                for (_, to_b, from, bytes) in due {
                    let s = if to_b { &mut self.b } else { &mut self.a };
                    if let Received::Rtp { seq, .. } = s.handle_datagram(now, from, &bytes) {
                        if to_b {
                            self.received_b.push(seq);
                        }
                    }
                }
                self.a.handle_timeout(now);
                self.b.handle_timeout(now);
                let n = self.sent;
                while let Some(tx) = self.a.poll_transmit() {
                    self.flight
                        .push((now + delay(n), true, addr(A), tx.contents));
                }
                while let Some(tx) = self.b.poll_transmit() {
                    self.flight
                        .push((now + delay(n), false, addr(B), tx.contents));
                }
            }
        }
    }

    #[test]
    fn counters_and_loss_both_sides() {
        let mut p = Pair::new(true);
        p.run(
            Duration::from_secs(12),
            (true, false),
            |_| Duration::from_millis(10),
            |n| n == 50,
        );
        let (a, b) = (p.a.stats(), p.b.stats());
        assert_eq!(a.packets_sent, 601);
        assert_eq!(a.bytes_sent, 601 * 40);
        assert_eq!(b.packets_received, 599, "one dropped, one still in flight");
        assert_eq!(b.bytes_received, 599 * 40);
        assert_eq!(b.lost, 1);
        assert_eq!(a.remote_lost, 1, "{a:?}");
        // B only receives, so it cannot have an RTT; A sent SRs and got RRs back.
        assert!(b.rtt_ms.is_none());
        assert!(a.rtt_ms.is_some());
        assert_eq!(a.dropped_foreign + b.dropped_foreign, 0);
    }

    #[test]
    fn rtt_from_sr_rr_exchange_with_known_delay() {
        for mux in [true, false] {
            let mut p = Pair::new(mux);
            p.run(
                Duration::from_secs(20),
                (true, true),
                |_| Duration::from_millis(30),
                |_| false,
            );
            for s in [p.a.stats(), p.b.stats()] {
                let rtt = s.rtt_ms.unwrap();
                assert!((rtt - 60.0).abs() < 0.1, "mux {mux}: {rtt}");
                assert_eq!(s.lost, 0);
                assert!(s.jitter_ms < 0.01);
            }
        }
    }

    #[test]
    fn jitter_estimate_with_alternating_delay() {
        let mut p = Pair::new(true);
        // 0 ms and 10 ms alternately: every transit difference is 10 ms, so J → 10 ms.
        p.run(
            Duration::from_secs(10),
            (true, false),
            |n| Duration::from_millis(if n % 2 == 0 { 0 } else { 10 }),
            |_| false,
        );
        let j = p.b.stats().jitter_ms;
        assert!((j - 10.0).abs() < 0.5, "{j}");
        let rj = p.a.stats().remote_jitter_ms;
        assert!((rj - 10.0).abs() < 0.5, "{rj}");
    }

    #[test]
    fn sequence_marker_timestamp_and_pt() {
        let t0 = Instant::now();
        let mut a = session(A, B, true, Latching::Off, 3, t0);
        let (seq0, ts0, ssrc) = (a.seq, a.next_timestamp(), a.ssrc());
        let mut b = session(B, A, true, Latching::Off, 4, t0);
        let p1 = a
            .send_audio(t0, b"one", 960, false)
            .unwrap()
            .contents
            .to_vec();
        let p2 = a
            .send_audio(t0, b"two", 960, false)
            .unwrap()
            .contents
            .to_vec();
        let p3 = a
            .send_audio(t0, b"three", 960, true)
            .unwrap()
            .contents
            .to_vec();
        let ev = a.next_timestamp();
        let d = a
            .send_dtmf(t0, &[1, 0x80, 0, 160], ev, true)
            .unwrap()
            .contents
            .to_vec();
        let want = [
            (p1, seq0, ts0, true, 111, &b"one"[..]),
            (
                p2,
                seq0.wrapping_add(1),
                ts0.wrapping_add(960),
                false,
                111,
                &b"two"[..],
            ),
            (
                p3,
                seq0.wrapping_add(2),
                ts0.wrapping_add(1920),
                true,
                111,
                &b"three"[..],
            ),
            (
                d,
                seq0.wrapping_add(3),
                ts0.wrapping_add(2880),
                true,
                101,
                &[1, 0x80, 0, 160][..],
            ),
        ];
        for (bytes, s, t, m, pt, pl) in want {
            assert_eq!(
                b.handle_datagram(t0, addr(A), &bytes),
                Received::Rtp {
                    seq: s,
                    ts: t,
                    ssrc,
                    marker: m,
                    pt,
                    payload: pl
                }
            );
        }
    }

    #[test]
    fn foreign_source_dropped_without_symmetric() {
        let t0 = Instant::now();
        let mut a = session(A, B, true, Latching::Off, 5, t0);
        let mut b = session(B, A, true, Latching::Off, 6, t0);
        let pkt = a
            .send_audio(t0, b"x", 960, false)
            .unwrap()
            .contents
            .to_vec();
        let r = b.handle_datagram(t0, addr("10.9.9.9:4000"), &pkt);
        assert_eq!(r, Received::Dropped(DropReason::ForeignSource));
        assert_eq!(b.stats().dropped_foreign, 1);
        assert_eq!(b.stats().packets_received, 0);
        assert!(matches!(
            b.handle_datagram(t0, addr(A), &pkt),
            Received::Rtp { .. }
        ));
    }

    /// Sends `n` audio packets from `a` and hands them to `b` as coming from `from`, 20 ms
    /// apart from `t`; returns what `b` made of each.
    pub(super) fn feed(
        a: &mut MediaSession,
        b: &mut MediaSession,
        from: SocketAddr,
        t: &mut Instant,
        n: usize,
    ) -> Vec<Option<DropReason>> {
        (0..n)
            .map(|_| {
                *t += Duration::from_millis(20);
                let pkt = a
                    .send_audio(*t, b"x", 960, false)
                    .unwrap()
                    .contents
                    .to_vec();
                match b.handle_datagram(*t, from, &pkt) {
                    Received::Dropped(r) => Some(r),
                    _ => None,
                }
            })
            .collect()
    }

    #[test]
    fn version_1_and_unknown_pt_rejected() {
        let t0 = Instant::now();
        let mut a = session(A, B, true, Latching::Off, 9, t0);
        let mut b = session(B, A, true, Latching::Off, 10, t0);
        let mut pkt = a
            .send_audio(t0, b"x", 960, false)
            .unwrap()
            .contents
            .to_vec();
        pkt[0] = (pkt[0] & 0x3f) | 0x40;
        assert_eq!(
            b.handle_datagram(t0, addr(A), &pkt),
            Received::Dropped(DropReason::Invalid)
        );
        pkt[0] = (pkt[0] & 0x3f) | 0x80;
        pkt[1] = 0x60; // PT 96, not negotiated
        assert_eq!(
            b.handle_datagram(t0, addr(A), &pkt),
            Received::Dropped(DropReason::UnknownPayloadType)
        );
        assert_eq!(b.stats().dropped_invalid, 2);
        assert_eq!(b.stats().packets_received, 0);
        // A STUN answer on the RTP socket is told apart, not counted as garbage.
        let stun = crate::media::stun::binding_request(&[7; 12], true);
        assert_eq!(
            b.handle_datagram(t0, addr(A), &stun),
            Received::Dropped(DropReason::Stun)
        );
        assert_eq!(b.stats().dropped_invalid, 2);
    }

    #[test]
    fn report_timing_kinds_and_bye() {
        let t0 = Instant::now();
        let mut a = session(A, B, false, Latching::Off, 11, t0);
        let first = a.poll_timeout().unwrap() - t0;
        assert!(
            first >= Duration::from_millis(1250) && first <= FIRST_REPORT_MAX,
            "{first:?}"
        );
        a.handle_timeout(t0 + first);
        let tx = a.poll_transmit().unwrap();
        assert_eq!(tx.destination, addr("10.0.0.2:5001"));
        assert_eq!(tx.contents[1], 201, "RR when we did not send");
        assert!(a.poll_transmit().is_none());
        let next = a.poll_timeout().unwrap() - (t0 + first);
        assert!(next >= Duration::from_millis(2500) && next <= Duration::from_millis(7500));
        let now = t0 + first + next;
        a.send_audio(now, b"x", 960, false).unwrap();
        a.handle_timeout(now - Duration::from_millis(1));
        assert!(a.poll_transmit().is_none(), "not due yet");
        a.handle_timeout(now);
        assert_eq!(
            a.poll_transmit().unwrap().contents[1],
            200,
            "SR after sending"
        );
        a.bye(now);
        let bye = a.poll_transmit().unwrap().contents;
        let inc = rtcp::parse(&bye, 0).unwrap();
        assert!(inc.bye);
        assert!(a.poll_timeout().is_none());
        assert_eq!(
            a.send_audio(now, b"x", 960, false),
            Err(SessionError::Closed)
        );
    }

    #[test]
    fn latched_source_latches_rtcp_and_sr_counts() {
        let t0 = Instant::now();
        let mut a = session(A, B, false, Latching::Off, 15, t0);
        let mut b = session(B, A, false, Latching::Always, 16, t0);
        let nat_rtcp = addr("192.0.2.9:7777");
        // RTCP from a source that never proved itself is foreign.
        assert_eq!(
            b.handle_datagram(t0, nat_rtcp, &[0x80, 200, 0, 9]),
            Received::Dropped(DropReason::ForeignSource)
        );
        assert_eq!(b.rtcp_destination(), addr("10.0.0.1:4001"));
        // RTP from the NAT's address proves itself; then its RTCP may come from another port.
        let mut other = session(A, B, false, Latching::Off, 17, t0);
        let mut t = t0 + SILENCE_BEFORE_SWITCH;
        feed(&mut other, &mut b, addr("192.0.2.9:6000"), &mut t, 5);
        assert_eq!(b.rtp_destination(), addr("192.0.2.9:6000"));
        // Garbage from the latched IP does not latch RTCP.
        assert_eq!(
            b.handle_datagram(t0, nat_rtcp, &[0x80, 200, 0, 9]),
            Received::Dropped(DropReason::Invalid)
        );
        assert_eq!(b.rtcp_destination(), addr("192.0.2.9:6001"));
        for i in 0..3u32 {
            let now = t0 + Duration::from_millis(20 * u64::from(i));
            let _ = a.send_audio(now, b"abcd", 960, false).unwrap();
        }
        let due = a.poll_timeout().unwrap();
        a.handle_timeout(due);
        let sr = a.poll_transmit().unwrap().contents;
        let pkts = ::rtcp::packet::unmarshal(&mut &sr[..]).unwrap();
        let sr0 = pkts[0]
            .as_any()
            .downcast_ref::<::rtcp::sender_report::SenderReport>()
            .unwrap();
        assert_eq!((sr0.packet_count, sr0.octet_count), (3, 12));
        // RTP time advances with the clock from the last packet sent.
        let since = ((due - (t0 + Duration::from_millis(40))).as_secs_f64() * 48_000.0) as u32;
        let last_ts = a.next_timestamp().wrapping_sub(960);
        assert_eq!(sr0.rtp_time, last_ts.wrapping_add(since));
        assert_eq!(b.handle_datagram(due, nat_rtcp, &sr), Received::Rtcp);
        assert_eq!(b.rtcp_destination(), nat_rtcp);
        // Now latched: RTCP from elsewhere is foreign.
        assert_eq!(
            b.handle_datagram(due, addr("192.0.2.10:7777"), &sr),
            Received::Dropped(DropReason::ForeignSource)
        );
    }

    #[test]
    fn remote_bye_is_seen() {
        let t0 = Instant::now();
        let mut a = session(A, B, true, Latching::Off, 12, t0);
        let mut b = session(B, A, true, Latching::Off, 13, t0);
        a.bye(t0);
        let tx = a.poll_transmit().unwrap();
        assert_eq!(b.handle_datagram(t0, addr(A), &tx.contents), Received::Rtcp);
        assert!(b.stats().remote_bye);
    }

    #[test]
    fn impaired_stream_through_session_into_jitter_buffer() {
        use crate::media::jitter::{JitterBuffer, JitterConfig, Playout};
        use rand::Rng;
        let t0 = Instant::now();
        let mut a = session(A, B, true, Latching::Off, 20, t0);
        let mut b = session(B, A, true, Latching::Off, 21, t0);
        let mut jb = JitterBuffer::new(JitterConfig::for_clock(48_000, 20));
        let mut net = StdRng::seed_from_u64(99);
        let mut flight: Vec<(Duration, Vec<u8>)> = vec![];
        let mut dropped = 0;
        let mut played = vec![];
        let frames = 1000u16;
        for k in 0..frames + 20 {
            let t = Duration::from_millis(20 * u64::from(k));
            if k < frames {
                let p = a.send_audio(t0 + t, &k.to_be_bytes(), 960, false).unwrap();
                let c = p.contents.to_vec();
                if net.random_bool(0.05) {
                    dropped += 1;
                } else {
                    let d = Duration::from_millis(20 + net.random_range(0..30));
                    flight.push((t + d, c));
                }
            }
            let now = t + Duration::from_millis(10);
            flight.sort_by_key(|f| f.0);
            while flight.first().is_some_and(|f| f.0 <= now) {
                let (at, bytes) = flight.remove(0);
                if let Received::Rtp {
                    seq,
                    ts,
                    ssrc,
                    payload,
                    ..
                } = b.handle_datagram(t0 + at, addr(A), &bytes)
                {
                    jb.push(t0 + at, seq, ts, ssrc, payload);
                }
            }
            if let Playout::Frame(f) = jb.pop(t0 + now) {
                played.push(u16::from_be_bytes([f[0], f[1]]));
            }
        }
        let js = jb.stats();
        let bs = b.stats();
        eprintln!(
            "DBG {js:?}\n{bs:?} dropped {dropped} played {}",
            played.len()
        );
        assert!(
            played.windows(2).all(|w| w[0] < w[1]),
            "in order, never twice"
        );
        assert_eq!(bs.packets_received, u64::from(frames) - dropped);
        // Lost as seen by RTP (the last packets may be the dropped ones).
        assert!(
            bs.lost as u64 <= dropped && bs.lost as u64 + 3 >= dropped,
            "{bs:?}"
        );
        assert!(bs.jitter_ms > 3.0 && bs.jitter_ms < 20.0, "{bs:?}");
        assert!(js.late <= 10, "{js:?}");
        assert!(
            played.len() as u64 + js.late + js.dropped + 5 >= bs.packets_received,
            "{js:?}"
        );
        assert!(js.lost >= dropped - 3, "{js:?} dropped {dropped}");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                v2 in any::<bool>(), rtcp in any::<bool>()) {
            let t0 = Instant::now();
            let mut b = session(B, A, true, Latching::Always, 14, t0);
            let mut bytes = bytes;
            if v2 && !bytes.is_empty() { bytes[0] = (bytes[0] & 0x3f) | 0x80; }
            if rtcp && bytes.len() > 1 { bytes[1] = 200 + bytes[1] % 8; }
            let r = b.handle_datagram(t0, addr(A), &bytes);
            if let Received::Rtp { payload, .. } = r {
                prop_assert!(payload.len() + 12 <= bytes.len());
            }
            b.handle_timeout(t0 + Duration::from_secs(10));
            prop_assert!(b.poll_transmit().is_some());
        }
    }
}
