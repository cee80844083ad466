//! Receive-side statistics of one RTP source (RFC 3550 A.1, A.3, A.8) and the per-call
//! [`MediaStats`] summary.

use rtcp::reception_report::ReceptionReport;

/// RFC 3550 A.1: a jump of more than this many sequence numbers restarts the counters.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: sequence numbers this far behind are treated as a restart, not misordering.
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: u32 = 1 << 16;

/// Statistics of one call, both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MediaStats {
    /// RTP packets we sent.
    pub packets_sent: u64,
    /// RTP payload octets we sent (as in the SR octet count).
    pub bytes_sent: u64,
    /// RTP packets accepted from the peer.
    pub packets_received: u64,
    /// RTP payload octets accepted from the peer.
    pub bytes_received: u64,
    /// Cumulative packets lost from the peer (expected − received, RFC 3550 A.3).
    pub lost: i64,
    /// Fraction lost over the last report interval, 0.0–1.0.
    pub fraction_lost: f64,
    /// Interarrival jitter of the peer's stream (RFC 3550 A.8), ms.
    pub jitter_ms: f64,
    /// Round-trip time from the last report block about us (RFC 3550 §6.4.1), ms.
    pub rtt_ms: Option<f64>,
    /// Datagrams dropped because they came from a source other than the peer.
    pub dropped_foreign: u64,
    /// Datagrams dropped because they were not valid RTP/RTCP version 2 (or had an unknown
    /// payload type).
    pub dropped_invalid: u64,
    /// Cumulative lost the peer reports for our stream.
    pub remote_lost: i64,
    /// Fraction lost the peer reports for our stream, 0.0–1.0.
    pub remote_fraction_lost: f64,
    /// Interarrival jitter the peer reports for our stream, ms.
    pub remote_jitter_ms: f64,
    /// The peer sent an RTCP BYE.
    pub remote_bye: bool,
}

/// Per-source receive state (RFC 3550 A.1 `source` plus A.3 and A.8 fields).
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceStats {
    pub ssrc: u32,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    pub received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in timestamp units, as a float (A.8 keeps it scaled; we do not need to).
    jitter: f64,
    prev_transit: Option<i64>,
    pub fraction_lost: u8,
    pub received_since_report: bool,
}

impl SourceStats {
    /// Starts counting a source at its first packet.
    pub fn new(ssrc: u32, seq: u16) -> Self {
        let mut s = SourceStats {
            ssrc,
            ..Default::default()
        };
        s.init_seq(seq);
        s
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
    }

    /// RFC 3550 A.1 `update_seq` without probation; returns false for a packet to ignore
    /// (a far jump not confirmed yet).
    pub fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += SEQ_MOD;
            }
            self.max_seq = seq;
        } else if udelta <= u16::MAX - MAX_MISORDER {
            // A very large jump: restart if the next packet confirms it.
            if u32::from(seq) == self.bad_seq {
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                return false;
            }
        }
        // else: duplicate or reordered packet; counted as received.
        self.received += 1;
        self.received_since_report = true;
        true
    }

    /// A.8: `arrival` is the arrival time in timestamp units.
    pub fn update_jitter(&mut self, arrival: i64, ts: u32) {
        let transit = arrival.wrapping_sub(i64::from(ts));
        if let Some(prev) = self.prev_transit {
            // Timestamps wrap at 2^32: take the difference modulo that.
            let d = f64::from((transit.wrapping_sub(prev) as u32 as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.prev_transit = Some(transit);
    }

    /// Extended highest sequence number received.
    pub fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u64 {
        u64::from(self.extended_max()) + 1 - u64::from(self.base_seq)
    }

    /// Cumulative number lost (may be negative with duplicates).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Jitter in timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Builds a report block (A.3) and starts a new interval.
    pub fn report(&mut self, lsr: u32, dlsr: u32) -> ReceptionReport {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        self.fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        self.received_since_report = false;
        // 24-bit signed field; the crate takes the bits as u32. Clamp to its range.
        let lost = self.lost().clamp(-0x80_0000, 0x7f_ffff);
        ReceptionReport {
            ssrc: self.ssrc,
            fraction_lost: self.fraction_lost,
            total_lost: (lost as i32 as u32) & 0xff_ffff,
            last_sequence_number: self.extended_max(),
            jitter: self.jitter.min(f64::from(u32::MAX)) as u32,
            last_sender_report: lsr,
            delay: dlsr,
        }
    }
}

/// Reads the 24-bit signed cumulative-lost field.
pub(crate) fn total_lost_signed(v: u32) -> i64 {
    let v = v & 0xff_ffff;
    if v & 0x80_0000 != 0 {
        i64::from(v) - 0x100_0000
    } else {
        i64::from(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_wrap_counting() {
        let mut s = SourceStats::new(1, 65530);
        for seq in (65530u16..=65535).chain(0..10) {
            if seq != 3 && seq != 65533 {
                assert!(s.update_seq(seq));
            }
        }
        assert_eq!(s.extended_max(), 65536 + 9);
        assert_eq!(s.lost(), 2);
        let r = s.report(0, 0);
        assert_eq!(r.last_sequence_number, 65545);
        assert_eq!(total_lost_signed(r.total_lost), 2);
        assert_eq!(r.fraction_lost, (2 * 256 / 16) as u8);
        // Nothing new: the next interval reports no loss.
        assert_eq!(s.report(0, 0).fraction_lost, 0);
    }

    #[test]
    fn duplicates_make_lost_negative_and_field_signed() {
        let mut s = SourceStats::new(1, 10);
        s.update_seq(10);
        s.update_seq(10);
        assert_eq!(s.lost(), -1);
        assert_eq!(total_lost_signed(s.report(0, 0).total_lost), -1);
    }

    #[test]
    fn big_jump_needs_confirmation() {
        let mut s = SourceStats::new(1, 10);
        assert!(s.update_seq(10));
        assert!(!s.update_seq(20_000));
        assert!(s.update_seq(20_001));
        assert_eq!(s.extended_max(), 20_001);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn jitter_of_constant_delay_is_zero_and_grows_with_variation() {
        let mut s = SourceStats::new(1, 0);
        for i in 0..50i64 {
            s.update_jitter(1000 + i * 160, (i * 160) as u32);
        }
        assert_eq!(s.jitter(), 0.0);
        for i in 50..100i64 {
            let extra = if i % 2 == 0 { 80 } else { 0 };
            s.update_jitter(1000 + i * 160 + extra, (i * 160) as u32);
        }
        assert!((s.jitter() - 80.0).abs() < 5.0, "{}", s.jitter());
    }
}
