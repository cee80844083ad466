//! RTCP helpers for [`super::MediaSession`]: NTP time, the RFC 3550 report interval, building
//! compound packets (SR/RR + SDES CNAME [+ BYE]) and reading what the peer sent.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::rtcp::reception_report::ReceptionReport;

/// RFC 3550 §6.2: minimum report interval.
pub const RTCP_MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A wall clock anchored once and advanced with the injected monotonic time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NtpClock {
    origin: Instant,
    wall: SystemTime,
}

impl NtpClock {
    pub fn new(origin: Instant, wall: SystemTime) -> Self {
        NtpClock { origin, wall }
    }

    /// 64-bit NTP timestamp (32.32 fixed point seconds since 1900) at `now`.
    pub fn ntp(&self, now: Instant) -> u64 {
        let wall = self.wall + now.saturating_duration_since(self.origin);
        let since_unix = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET);
        let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
        (secs << 32) | frac
    }

    /// The middle 32 bits (NTP short format, 16.16) at `now`.
    pub fn ntp_short(&self, now: Instant) -> u32 {
        ntp_middle(self.ntp(now))
    }
}

/// The middle 32 bits of a 64-bit NTP timestamp (the LSR field).
pub(crate) fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in NTP short units (1/65536 s), saturating.
pub(crate) fn to_ntp_short(d: Duration) -> u32 {
    let v = (d.as_nanos() << 16) / 1_000_000_000;
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// RFC 3550 §6.4.1: RTT = A − LSR − DLSR, in ms; `None` without an SR from us to refer to or
/// when the result is negative (clock trouble).
pub(crate) fn rtt_ms(arrival_short: u32, lsr: u32, dlsr: u32) -> Option<f64> {
    if lsr == 0 {
        return None;
    }
    let rtt = arrival_short.wrapping_sub(lsr).wrapping_sub(dlsr);
    if rtt > 1 << 31 {
        return None;
    }
    Some(f64::from(rtt) * 1000.0 / 65536.0)
}

/// The next report interval: `base` × a uniform factor in [0.5, 1.5] (RFC 3550 §6.3.1).
pub(crate) fn randomised(base: Duration, unit: f64) -> Duration {
    base.mul_f64(0.5 + unit.clamp(0.0, 1.0))
}

/// What we know about our sending side for an SR.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SenderInfo {
    pub ntp_time: u64,
    pub rtp_time: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// Report blocks one SR or RR can carry (its 5-bit count).
const MAX_REPORTS: usize = 31;
/// Longest SDES item text (its 8-bit length).
const MAX_SDES_TEXT: usize = 255;

/// Builds SR (when `sender` is given) or RR, then SDES CNAME, then BYE when `bye`, written
/// straight into one buffer (RFC 3550 §6.4, §6.5, §6.6; the same octets as the `rtcp` crate
/// wrote, without its packet objects and copies). `None` when it cannot be built: more than
/// 31 report blocks, a CNAME over 255 octets, or a cumulative loss the crate refused.
pub(crate) fn compound(
    ssrc: u32,
    sender: Option<SenderInfo>,
    reports: &[ReceptionReport],
    cname: &str,
    bye: bool,
) -> Option<Vec<u8>> {
    // The `rtcp` crate refused a loss of 2^25 or more (and kept the low 24 bits below that).
    if reports.len() > MAX_REPORTS
        || cname.len() > MAX_SDES_TEXT
        || reports.iter().any(|r| r.total_lost >= 1 << 25)
    {
        return None;
    }
    let report_len = 8 + if sender.is_some() { 20 } else { 0 } + 24 * reports.len();
    // SDES chunk: SSRC, CNAME item (type, length, text), a null octet, padding to 32 bits.
    let raw_chunk = 4 + 2 + cname.len() + 1;
    let chunk_len = raw_chunk.next_multiple_of(4);
    let sdes_len = 4 + chunk_len;
    let mut out = Vec::with_capacity(report_len + sdes_len + if bye { 8 } else { 0 });
    let header = |out: &mut Vec<u8>, count: usize, pt: u8, len: usize| {
        out.push(0x80 | count as u8);
        out.push(pt);
        out.extend_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    };
    let pt = if sender.is_some() { 200 } else { 201 };
    header(&mut out, reports.len(), pt, report_len);
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(s) = sender {
        out.extend_from_slice(&s.ntp_time.to_be_bytes());
        for v in [s.rtp_time, s.packet_count, s.octet_count] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    for r in reports {
        out.extend_from_slice(&r.ssrc.to_be_bytes());
        out.push(r.fraction_lost);
        out.extend_from_slice(&r.total_lost.to_be_bytes()[1..]);
        for v in [
            r.last_sequence_number,
            r.jitter,
            r.last_sender_report,
            r.delay,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    header(&mut out, 1, 202, sdes_len);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&[1, cname.len() as u8]);
    out.extend_from_slice(cname.as_bytes());
    out.resize(report_len + sdes_len, 0);
    if chunk_len > raw_chunk {
        // As the `rtcp` crate pads: the last padding octet holds the padding's length.
        if let Some(last) = out.last_mut() {
            *last = (chunk_len - raw_chunk) as u8;
        }
    }
    if bye {
        // RFC 3550 §6.6: a BYE with no reason is exactly the header and the SSRC (the `rtcp`
        // crate always wrote a reason-length octet and padding, which analysers flag).
        out.extend_from_slice(&[0x81, 203, 0, 1]);
        out.extend_from_slice(&ssrc.to_be_bytes());
    }
    Some(out)
}

/// What a received compound packet told us.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    /// (SSRC of the sender, NTP timestamp) of an SR.
    pub sender_report: Option<(u32, u64)>,
    /// Report blocks about `our_ssrc`.
    pub about_us: Option<ReceptionReport>,
    /// A BYE was present.
    pub bye: bool,
}

/// Why a received RTCP datagram was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RtcpError(pub &'static str);

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses a compound RTCP packet (RFC 3550 §6.1): every packet's length must fit, and SR, RR
/// and BYE are read; other types (SDES, APP, feedback, XR...) are skipped by their length.
/// Read here rather than by `rtcp` 0.17's `unmarshal`, which panics ("advance out of bounds")
/// on a short RTPFB/PSFB packet (found by tests/fuzz.rs).
pub(crate) fn parse(bytes: &[u8], our_ssrc: u32) -> Result<Incoming, RtcpError> {
    let mut inc = Incoming::default();
    let mut rest = bytes;
    if rest.is_empty() {
        return Err(RtcpError("empty"));
    }
    while !rest.is_empty() {
        if rest.len() < 4 || rest[0] >> 6 != 2 {
            return Err(RtcpError("bad header"));
        }
        let count = usize::from(rest[0] & 0x1f);
        let pt = rest[1];
        let len = 4 * (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1);
        let Some(pkt) = rest.get(..len) else {
            return Err(RtcpError("length past the datagram"));
        };
        rest = &rest[len..];
        // SR: header, SSRC, NTP (8), RTP time, packet and octet counts; RR: header, SSRC.
        let blocks_at = match pt {
            200 => 28,
            201 => 8,
            203 => {
                inc.bye = true;
                continue;
            }
            _ => continue,
        };
        if pkt.len() < blocks_at + 24 * count {
            return Err(RtcpError("report blocks past the packet"));
        }
        if pt == 200 {
            let ntp = (u64::from(be32(pkt, 8)) << 32) | u64::from(be32(pkt, 12));
            inc.sender_report = Some((be32(pkt, 4), ntp));
        }
        for k in 0..count {
            let b = &pkt[blocks_at + 24 * k..blocks_at + 24 * (k + 1)];
            if be32(b, 0) == our_ssrc {
                inc.about_us = Some(ReceptionReport {
                    ssrc: our_ssrc,
                    fraction_lost: b[4],
                    total_lost: be32(b, 4) & 0xff_ffff,
                    last_sequence_number: be32(b, 8),
                    jitter: be32(b, 12),
                    last_sender_report: be32(b, 16),
                    delay: be32(b, 20),
                });
            }
        }
    }
    Ok(inc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_of_unix_epoch_and_fraction() {
        let t0 = Instant::now();
        let c = NtpClock::new(t0, UNIX_EPOCH);
        assert_eq!(c.ntp(t0), NTP_UNIX_OFFSET << 32);
        let half = c.ntp(t0 + Duration::from_millis(500));
        assert_eq!(half & 0xffff_ffff, 1 << 31);
        assert_eq!(
            c.ntp_short(t0 + Duration::from_millis(1500)),
            (((NTP_UNIX_OFFSET & 0xffff) as u32) << 16) + 0x1_8000
        );
    }

    #[test]
    fn rtt_from_lsr_dlsr() {
        // RFC 3550 figure: A = 0xb710:8000, LSR = 0xb705:2000, DLSR = 0x0005:4000 → 6.125 s.
        let rtt = rtt_ms(0xb710_8000, 0xb705_2000, 0x0005_4000).unwrap();
        assert!((rtt - 6125.0).abs() < 1e-6);
        assert_eq!(rtt_ms(1, 0, 0), None);
        assert_eq!(rtt_ms(100, 200, 0), None);
    }

    #[test]
    fn compound_round_trip() {
        let rr = ReceptionReport {
            ssrc: 42,
            fraction_lost: 3,
            total_lost: 9,
            ..Default::default()
        };
        let sender = SenderInfo {
            ntp_time: 0x1234_5678_9abc_def0,
            rtp_time: 1,
            packet_count: 2,
            octet_count: 3,
        };
        let b = compound(7, Some(sender), &[rr], "me@host", true).unwrap();
        let inc = parse(&b, 42).unwrap();
        assert_eq!(inc.sender_report, Some((7, 0x1234_5678_9abc_def0)));
        assert_eq!(inc.about_us.map(|r| r.total_lost), Some(9));
        assert!(inc.bye);
        assert!(parse(&b, 43).unwrap().about_us.is_none());
        // RFC 3550 §6.6: a reason-less BYE is the header and the SSRC, no length octet, no padding.
        assert_eq!(&b[b.len() - 8..], &[0x81, 203, 0, 1, 0, 0, 0, 7]);
        let without = compound(7, None, &[], "me@host", false).unwrap();
        let with_bye = compound(7, None, &[], "me@host", true).unwrap();
        assert_eq!(with_bye.len(), without.len() + 8);
    }

    /// What the `rtcp` crate writes for the same compound (the format the hand-written one
    /// keeps), BYE left out.
    fn by_the_crate(
        ssrc: u32,
        sender: Option<SenderInfo>,
        reports: Vec<ReceptionReport>,
        cname: &str,
    ) -> Option<Vec<u8>> {
        use ::rtcp::packet::Packet;
        use ::rtcp::source_description::{
            SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
        };
        use bytes::Bytes;
        let first: Box<dyn Packet + Send + Sync> = match sender {
            Some(s) => Box::new(::rtcp::sender_report::SenderReport {
                ssrc,
                ntp_time: s.ntp_time,
                rtp_time: s.rtp_time,
                packet_count: s.packet_count,
                octet_count: s.octet_count,
                reports,
                profile_extensions: Bytes::new(),
            }),
            None => Box::new(::rtcp::receiver_report::ReceiverReport {
                ssrc,
                reports,
                profile_extensions: Bytes::new(),
            }),
        };
        let sdes = Box::new(SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: ssrc,
                items: vec![SourceDescriptionItem {
                    sdes_type: SdesType::SdesCname,
                    text: Bytes::copy_from_slice(cname.as_bytes()),
                }],
            }],
        });
        ::rtcp::packet::marshal(&[first, sdes])
            .ok()
            .map(|b| b.to_vec())
    }

    #[test]
    fn compounds_are_the_octets_the_rtcp_crate_wrote() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3550);
        for case in 0..2000 {
            let ssrc = rng.random();
            let sender = rng.random_bool(0.5).then(|| SenderInfo {
                ntp_time: rng.random(),
                rtp_time: rng.random(),
                packet_count: rng.random(),
                octet_count: rng.random(),
            });
            let reports: Vec<ReceptionReport> = (0..rng.random_range(0..3))
                .map(|_| ReceptionReport {
                    ssrc: rng.random(),
                    fraction_lost: rng.random(),
                    total_lost: match rng.random_range(0..4) {
                        0 => rng.random_range(0..1 << 24),
                        1 => rng.random_range(1 << 24..1 << 25),
                        2 => rng.random_range(1 << 25..=u32::MAX),
                        _ => rng.random_range(0..100),
                    },
                    last_sequence_number: rng.random(),
                    jitter: rng.random(),
                    last_sender_report: rng.random(),
                    delay: rng.random(),
                })
                .collect();
            let cname: String = (0..rng.random_range(0..270)).map(|_| 'a').collect();
            let theirs = by_the_crate(ssrc, sender, reports.clone(), &cname);
            let ours = compound(ssrc, sender, &reports, &cname, false);
            assert_eq!(ours, theirs, "case {case}");
            let with_bye = compound(ssrc, sender, &reports, &cname, true);
            if let (Some(a), Some(b)) = (&ours, &with_bye) {
                assert_eq!(b[..a.len()], a[..], "case {case}");
                assert_eq!(b.len(), a.len() + 8);
            }
        }
        let many = vec![ReceptionReport::default(); 32];
        assert_eq!(compound(1, None, &many, "x", false), None);
        assert_eq!(by_the_crate(1, None, many, "x"), None);
    }

    #[test]
    fn every_field_of_a_report_block_is_read() {
        let rr = ReceptionReport {
            ssrc: 42,
            fraction_lost: 200,
            total_lost: 0xff_fffe,
            last_sequence_number: 0x0001_0005,
            jitter: 77,
            last_sender_report: 0xdead_beef,
            delay: 0x0002_8000,
        };
        let b = compound(7, None, std::slice::from_ref(&rr), "me@host", false).unwrap();
        let inc = parse(&b, 42).unwrap();
        assert_eq!(inc.about_us, Some(rr));
        assert!(inc.sender_report.is_none() && !inc.bye);
    }

    #[test]
    fn lengths_that_lie_are_errors_not_panics() {
        let b = compound(7, None, &[], "me@host", true).unwrap();
        assert!(parse(&b[..b.len() - 1], 1).is_err(), "truncated BYE");
        assert!(parse(&[], 1).is_err());
        assert!(parse(&[0x80, 201, 0], 1).is_err(), "short header");
        // An RR that claims 2 report blocks in a packet with room for none.
        assert!(parse(&[0x82, 201, 0, 1, 0, 0, 0, 9], 1).is_err());
        // Found by tests/fuzz.rs: a short RTPFB (205) made `rtcp` 0.17 panic. Skipped now.
        let crash = [
            0x80, 205, 0, 1, 0x11, 0x22, 0x33, 0x44, 0x81, 205, 0, 1, 0x11, 0x22, 0x33, 0x44, 0x81,
            0, 0x30, 0x39, 0, 0, 0, 0x30, 0x39, 0, 0,
        ];
        assert!(
            parse(&crash, 1).is_err(),
            "the third packet's length runs past the end"
        );
        assert_eq!(parse(&crash[..16], 1).map(|i| i.bye), Ok(false));
    }

    #[test]
    fn randomised_interval_bounds() {
        let b = Duration::from_secs(5);
        assert_eq!(randomised(b, 0.0), Duration::from_millis(2500));
        assert_eq!(randomised(b, 1.0), Duration::from_millis(7500));
    }
}
