//! RTCP helpers for [`super::MediaSession`]: NTP time, the RFC 3550 report interval, building
//! compound packets (SR/RR + SDES CNAME [+ BYE]) and reading what the peer sent.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::rtcp::goodbye::Goodbye;
use ::rtcp::packet::Packet;
use ::rtcp::receiver_report::ReceiverReport;
use ::rtcp::reception_report::ReceptionReport;
use ::rtcp::sender_report::SenderReport;
use ::rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};
use bytes::Bytes;

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
pub(crate) struct SenderInfo {
    pub ntp_time: u64,
    pub rtp_time: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// Builds SR (when `sender` is given) or RR, then SDES CNAME, then BYE when `bye`.
pub(crate) fn compound(
    ssrc: u32,
    sender: Option<SenderInfo>,
    reports: Vec<ReceptionReport>,
    cname: &str,
    bye: bool,
) -> Result<Bytes, ::rtcp::Error> {
    let mut pkts: Vec<Box<dyn Packet + Send + Sync>> = Vec::with_capacity(3);
    match sender {
        Some(s) => pkts.push(Box::new(SenderReport {
            ssrc,
            ntp_time: s.ntp_time,
            rtp_time: s.rtp_time,
            packet_count: s.packet_count,
            octet_count: s.octet_count,
            reports,
            profile_extensions: Bytes::new(),
        })),
        None => pkts.push(Box::new(ReceiverReport {
            ssrc,
            reports,
            profile_extensions: Bytes::new(),
        })),
    }
    pkts.push(Box::new(SourceDescription {
        chunks: vec![SourceDescriptionChunk {
            source: ssrc,
            items: vec![SourceDescriptionItem {
                sdes_type: SdesType::SdesCname,
                text: Bytes::copy_from_slice(cname.as_bytes()),
            }],
        }],
    }));
    let compound = ::rtcp::packet::marshal(&pkts)?;
    if !bye {
        return Ok(compound);
    }
    // RFC 3550 §6.6: a BYE with no reason is exactly the header and the SSRC. The rtcp crate
    // always writes a reason-length octet and pads, which analysers flag as malformed, so the
    // BYE is written here.
    let mut out = Vec::with_capacity(compound.len() + 8);
    out.extend_from_slice(&compound);
    out.extend_from_slice(&[0x81, 203, 0, 1]);
    out.extend_from_slice(&ssrc.to_be_bytes());
    Ok(Bytes::from(out))
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

/// Parses a compound RTCP packet (the caller checked the version).
pub(crate) fn parse(bytes: &[u8], our_ssrc: u32) -> Result<Incoming, ::rtcp::Error> {
    let mut buf = bytes;
    let pkts = ::rtcp::packet::unmarshal(&mut buf)?;
    let mut inc = Incoming::default();
    for p in &pkts {
        let any = p.as_any();
        let blocks: &[ReceptionReport] = if let Some(sr) = any.downcast_ref::<SenderReport>() {
            inc.sender_report = Some((sr.ssrc, sr.ntp_time));
            &sr.reports
        } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            &rr.reports
        } else {
            if any.downcast_ref::<Goodbye>().is_some() {
                inc.bye = true;
            }
            &[]
        };
        if let Some(b) = blocks.iter().find(|b| b.ssrc == our_ssrc) {
            inc.about_us = Some(b.clone());
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
        let b = compound(7, Some(sender), vec![rr], "me@host", true).unwrap();
        let inc = parse(&b, 42).unwrap();
        assert_eq!(inc.sender_report, Some((7, 0x1234_5678_9abc_def0)));
        assert_eq!(inc.about_us.map(|r| r.total_lost), Some(9));
        assert!(inc.bye);
        assert!(parse(&b, 43).unwrap().about_us.is_none());
        // RFC 3550 §6.6: a reason-less BYE is the header and the SSRC, no length octet, no padding.
        assert_eq!(&b[b.len() - 8..], &[0x81, 203, 0, 1, 0, 0, 0, 7]);
        let without = compound(7, None, vec![], "me@host", false).unwrap();
        let with_bye = compound(7, None, vec![], "me@host", true).unwrap();
        assert_eq!(with_bye.len(), without.len() + 8);
    }

    #[test]
    fn randomised_interval_bounds() {
        let b = Duration::from_secs(5);
        assert_eq!(randomised(b, 0.0), Duration::from_millis(2500));
        assert_eq!(randomised(b, 1.0), Duration::from_millis(7500));
    }
}
