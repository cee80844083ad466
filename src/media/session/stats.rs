//! Receive-side statistics of one RTP source (RFC 3550 A.1, A.3, A.8) and the per-call
//! [`MediaStats`] summary.

use rtcp::reception_report::ReceptionReport;

/// RFC 3550 A.1: a jump of more than this many sequence numbers restarts the counters.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: sequence numbers this far behind are treated as a restart, not misordering.
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: u32 = 1 << 16;
/// RFC 3550 A.1: in-sequence packets a new SSRC must send before it replaces the current one.
pub const MIN_SEQUENTIAL: u32 = 2;
/// Packets behind the highest sequence number that are still told apart (duplicate or not);
/// older ones are too late to play and are dropped as such.
const HISTORY: u16 = 64;
/// Interarrival jitter above this is not believed (a timestamp jump, not network jitter).
pub const MAX_JITTER_S: u32 = 10;

/// What the RTP source guard refused or noticed, per call (see `session::source`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpGuard {
    /// Datagrams refused because they came from a source other than the peer.
    pub foreign: u64,
    /// Datagrams that were not RTP/RTCP version 2 or did not parse.
    pub malformed: u64,
    /// RTP with a payload type that was not negotiated.
    pub unknown_pt: u64,
    /// RTP packets seen before (same sequence number, recent), not played again.
    pub duplicates: u64,
    /// RTP packets so far behind the newest that they can no longer be played.
    pub too_late: u64,
    /// Packets from the peer beyond the rate its codec allows, dropped unread.
    pub flood: u64,
    /// Packets of a new SSRC dropped while it was on probation (RFC 3550 A.1).
    pub probation: u64,
    /// Times the peer's SSRC changed (fresh sequence, loss and jitter state each time).
    pub ssrc_changes: u64,
    /// Times media latched to a new source address.
    pub latches: u64,
    /// SRTP/SRTCP packets whose authentication tag did not verify (forged or garbage).
    pub srtp_auth: u64,
    /// SRTP/SRTCP packets refused as replays (RFC 3711 §3.3.2).
    pub srtp_replay: u64,
}

impl std::ops::Add for RtpGuard {
    type Output = RtpGuard;

    /// The sum of two sets of counters (a call whose session was replaced).
    fn add(self, o: RtpGuard) -> RtpGuard {
        RtpGuard {
            foreign: self.foreign + o.foreign,
            malformed: self.malformed + o.malformed,
            unknown_pt: self.unknown_pt + o.unknown_pt,
            duplicates: self.duplicates + o.duplicates,
            too_late: self.too_late + o.too_late,
            flood: self.flood + o.flood,
            probation: self.probation + o.probation,
            ssrc_changes: self.ssrc_changes + o.ssrc_changes,
            latches: self.latches + o.latches,
            srtp_auth: self.srtp_auth + o.srtp_auth,
            srtp_replay: self.srtp_replay + o.srtp_replay,
        }
    }
}

/// What [`SourceStats::update_seq`] made of a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqVerdict {
    /// New (in order, reordered within the window, or a confirmed restart): play and count it.
    Valid,
    /// Seen already.
    Duplicate,
    /// Older than the window: too late to play.
    TooLate,
    /// A far jump not confirmed yet (A.1 `bad_seq`).
    Unconfirmed,
}

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
    /// Cumulative packets lost from the peer's current source (expected − received, RFC 3550
    /// A.3, never below 0: duplicates are not counted as received).
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
    /// The source guard's counters (foreign, malformed, duplicate, too late, flood...).
    pub guard: RtpGuard,
    /// Cumulative lost the peer reports for our stream.
    pub remote_lost: i64,
    /// RTCP report blocks the peer sent about our stream: a peer reports only on sources it
    /// has received from (RFC 3550 §6.4.1), so one is proof that our RTP arrived.
    pub remote_reports: u64,
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
    /// Bit i set: `max_seq - i` was received (i < [`HISTORY`]).
    seen: u64,
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
        self.seen = 1;
    }

    /// RFC 3550 A.1 `update_seq` (probation of a new SSRC is the session's), telling
    /// duplicates and hopelessly late packets apart; only [`SeqVerdict::Valid`] is counted.
    pub fn update_seq(&mut self, seq: u16) -> SeqVerdict {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta == 0 && self.received > 0 {
            return SeqVerdict::Duplicate;
        }
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += SEQ_MOD;
            }
            self.max_seq = seq;
            self.seen = if udelta >= HISTORY {
                1
            } else {
                (self.seen << udelta) | 1
            };
        } else if udelta <= u16::MAX - MAX_MISORDER {
            // A very large jump: restart if the next packet confirms it.
            if u32::from(seq) == self.bad_seq {
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                return SeqVerdict::Unconfirmed;
            }
        } else {
            // Behind the newest: reordered, duplicate or too late.
            let behind = self.max_seq.wrapping_sub(seq);
            if behind >= HISTORY {
                return SeqVerdict::TooLate;
            }
            let bit = 1u64 << behind;
            if self.seen & bit != 0 {
                return SeqVerdict::Duplicate;
            }
            self.seen |= bit;
        }
        self.received += 1;
        self.received_since_report = true;
        SeqVerdict::Valid
    }

    /// A.8: `arrival` is the arrival time in timestamp units; `cap` bounds the estimate (and
    /// each transit difference) in the same units.
    pub fn update_jitter(&mut self, arrival: i64, ts: u32, cap: f64) {
        let transit = arrival.wrapping_sub(i64::from(ts));
        if let Some(prev) = self.prev_transit {
            // Timestamps wrap at 2^32: take the difference modulo that.
            let d = f64::from((transit.wrapping_sub(prev) as u32 as i32).unsigned_abs()).min(cap);
            self.jitter = (self.jitter + (d - self.jitter) / 16.0).min(cap);
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

    /// Cumulative number lost, never below 0 (RFC 3550 A.3 allows negative values for
    /// duplicates; we do not count those as received).
    pub fn lost(&self) -> i64 {
        (self.expected() as i64 - self.received as i64).max(0)
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
        let lost = self.lost().min(0x7f_ffff);
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
                assert_eq!(s.update_seq(seq), SeqVerdict::Valid);
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
    fn duplicates_are_not_received_and_lost_never_negative() {
        let mut s = SourceStats::new(1, 10);
        assert_eq!(s.update_seq(10), SeqVerdict::Valid);
        assert_eq!(s.update_seq(10), SeqVerdict::Duplicate);
        for seq in 11..20 {
            assert_eq!(s.update_seq(seq), SeqVerdict::Valid);
        }
        // Reordered (never seen) vs. replayed (seen) within the window.
        assert_eq!(s.update_seq(15), SeqVerdict::Duplicate);
        assert_eq!(s.lost(), 0);
        assert_eq!(total_lost_signed(s.report(0, 0).total_lost), 0);
        let mut s = SourceStats::new(1, 100);
        s.update_seq(100);
        s.update_seq(102);
        assert_eq!(s.lost(), 1);
        assert_eq!(
            s.update_seq(101),
            SeqVerdict::Valid,
            "late but in the window"
        );
        assert_eq!(s.lost(), 0);
        // A replay of a whole stretch (the 100,000-packet kind) leaves lost at 0, not -N.
        for _ in 0..1000 {
            for seq in 100..103 {
                assert_eq!(s.update_seq(seq), SeqVerdict::Duplicate);
            }
        }
        assert_eq!(s.lost(), 0);
        assert_eq!(s.received, 3);
    }

    #[test]
    fn far_behind_is_too_late() {
        let mut s = SourceStats::new(1, 1000);
        for seq in 1000..1100 {
            s.update_seq(seq);
        }
        assert_eq!(s.update_seq(1099 - HISTORY), SeqVerdict::TooLate);
        assert_eq!(s.update_seq(1100 - HISTORY), SeqVerdict::Duplicate);
    }

    #[test]
    fn big_jump_needs_confirmation() {
        let mut s = SourceStats::new(1, 10);
        assert_eq!(s.update_seq(10), SeqVerdict::Valid);
        assert_eq!(s.update_seq(20_000), SeqVerdict::Unconfirmed);
        assert_eq!(s.update_seq(20_001), SeqVerdict::Valid);
        assert_eq!(s.extended_max(), 20_001);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn jitter_of_constant_delay_is_zero_and_grows_with_variation() {
        let mut s = SourceStats::new(1, 0);
        for i in 0..50i64 {
            s.update_jitter(1000 + i * 160, (i * 160) as u32, 1e9);
        }
        assert_eq!(s.jitter(), 0.0);
        for i in 50..100i64 {
            let extra = if i % 2 == 0 { 80 } else { 0 };
            s.update_jitter(1000 + i * 160 + extra, (i * 160) as u32, 1e9);
        }
        assert!((s.jitter() - 80.0).abs() < 5.0, "{}", s.jitter());
    }

    #[test]
    fn timestamp_jumps_cannot_blow_jitter_up() {
        // 8 kHz: the cap is 10 s = 80,000 units. A stream whose timestamps jump by 2^31
        // (a hijacker, a broken peer) once gave 1,096,905 ms.
        let cap = f64::from(MAX_JITTER_S * 8000);
        let mut s = SourceStats::new(1, 0);
        for i in 0..200i64 {
            let ts = if i % 2 == 0 { 0x8000_0000u32 } else { 0 };
            s.update_jitter(i * 160, ts.wrapping_add((i * 160) as u32), cap);
            assert!(s.jitter() <= cap, "{}", s.jitter());
        }
        assert!(s.jitter() > cap / 2.0);
    }
}
