//! The receive path of [`MediaSession`]: validation, the source policy, the flood gate, SSRC
//! probation (RFC 3550 A.1) and per-source statistics, in that order.

use std::net::SocketAddr;
use std::time::Instant;

use super::header;
use super::srtp::Refused;
use super::stats::{SeqVerdict, SourceStats};
use super::{rtcp, total_lost_signed, DropReason, MediaSession, Protection, Received, Verdict};
use super::{MAX_JITTER_S, MIN_SEQUENTIAL};

/// An RTP packet the receive path accepted; `payload` indexes the (plain) packet.
struct Accepted {
    seq: u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
    pt: u8,
    payload: std::ops::Range<usize>,
}

impl MediaSession {
    /// Handles one received datagram from `from` (either socket). RTP from the peer with a
    /// negotiated payload type comes back for playout; RTCP updates the statistics; anything
    /// else is dropped and counted. With SRTP, packets are authenticated and decrypted first
    /// (a bad tag or a replay is dropped and counted); the payload then borrows the session.
    #[must_use]
    pub fn handle_datagram<'a>(
        &'a mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &'a [u8],
    ) -> Received<'a> {
        if crate::media::stun::is_stun(bytes) {
            return self.refuse(DropReason::Stun);
        }
        if bytes.len() < 4 || bytes[0] >> 6 != 2 {
            return self.refuse(DropReason::Invalid);
        }
        // RFC 5761 §4: RTCP packet types 192–223 fall on RTP payload types 64–95.
        let is_rtcp = (64..=95).contains(&(bytes[1] & 0x7f));
        let plain = match &mut self.protection {
            Protection::Plain => None,
            Protection::Broken => return self.refuse(DropReason::SrtpAuth),
            Protection::Srtp(srtp) => {
                let opened = if is_rtcp {
                    srtp.unprotect_rtcp(bytes)
                } else {
                    match header::parse(bytes) {
                        Some(h) => srtp.unprotect_rtp(bytes, h.payload.start),
                        None => Err(Refused::Invalid),
                    }
                };
                match opened {
                    Ok(p) => Some(p),
                    Err(Refused::Invalid) => return self.refuse(DropReason::Invalid),
                    Err(Refused::Auth) => return self.refuse(DropReason::SrtpAuth),
                    Err(Refused::Replay) => return self.refuse(DropReason::SrtpReplay),
                }
            }
        };
        let src = plain.as_deref().unwrap_or(bytes);
        if is_rtcp {
            return self.handle_rtcp(now, from, src);
        }
        let rtp = match self.handle_rtp(now, from, src) {
            Ok(rtp) => rtp,
            Err(dropped) => return dropped,
        };
        let data: &'a [u8] = match plain {
            Some(p) => {
                self.plain = p;
                &self.plain
            }
            None => bytes,
        };
        Received::Rtp {
            seq: rtp.seq,
            ts: rtp.ts,
            ssrc: rtp.ssrc,
            marker: rtp.marker,
            pt: rtp.pt,
            payload: &data[rtp.payload],
        }
    }

    /// Counts a dropped datagram.
    fn refuse<'a>(&mut self, why: DropReason) -> Received<'a> {
        let s = &mut self.stats;
        let g = &mut s.guard;
        match why {
            DropReason::ForeignSource => {
                s.dropped_foreign += 1;
                g.foreign += 1;
            }
            DropReason::Invalid => {
                s.dropped_invalid += 1;
                g.malformed += 1;
            }
            DropReason::UnknownPayloadType => {
                s.dropped_invalid += 1;
                g.unknown_pt += 1;
            }
            DropReason::Flood => g.flood += 1,
            DropReason::Duplicate => g.duplicates += 1,
            DropReason::TooLate => g.too_late += 1,
            DropReason::Probation => g.probation += 1,
            DropReason::SrtpAuth => g.srtp_auth += 1,
            DropReason::SrtpReplay => g.srtp_replay += 1,
            DropReason::Stun => {}
        }
        Received::Dropped(why)
    }

    fn handle_rtp(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<Accepted, Received<'static>> {
        let Some(h) = header::parse(bytes) else {
            return Err(self.refuse(DropReason::Invalid));
        };
        let (start, end) = (h.payload.start, h.payload.end);
        let pt = h.payload_type;
        let neg = &self.cfg.negotiated;
        let known_pt = pt == neg.payload_type || Some(pt) == neg.telephone_event;
        let (seq, ssrc) = (h.seq, h.ssrc);
        // Only packets of a negotiated type can prove a new source.
        let verdict = if known_pt || from == self.policy.rtp_destination() {
            self.policy.check_rtp(now, from, ssrc, seq)
        } else {
            Verdict::Refuse
        };
        match verdict {
            Verdict::Refuse => return Err(self.refuse(DropReason::ForeignSource)),
            Verdict::Latched => {
                self.stats.guard.latches += 1;
                self.new_source(ssrc, seq);
            }
            Verdict::Accept => {}
        }
        if !known_pt {
            return Err(self.refuse(DropReason::UnknownPayloadType));
        }
        if !self.flood.admit(now) {
            return Err(self.refuse(DropReason::Flood));
        }
        if self.source.as_ref().is_some_and(|s| s.ssrc == ssrc) {
            // The current source goes on: a would-be successor must start its run again.
            self.probation = None;
        } else if !self.on_probation(ssrc, seq) {
            return Err(self.refuse(DropReason::Probation));
        }
        let neg = &self.cfg.negotiated;
        let rate = neg.clock_rate.max(1);
        let Some(src) = self.source.as_mut() else {
            return Err(self.refuse(DropReason::Probation));
        };
        match src.update_seq(seq) {
            SeqVerdict::Valid => {
                // Arrival in RTP units (A.8); telephone-event shares the audio clock.
                let elapsed = now.saturating_duration_since(self.origin).as_secs_f64();
                let arrival = (elapsed * f64::from(rate)) as i64;
                if pt == neg.payload_type {
                    let cap = f64::from(MAX_JITTER_S) * f64::from(rate);
                    src.update_jitter(arrival, h.timestamp, cap);
                }
            }
            SeqVerdict::Duplicate => return Err(self.refuse(DropReason::Duplicate)),
            SeqVerdict::TooLate => return Err(self.refuse(DropReason::TooLate)),
            // A far jump: played (the jitter buffer resyncs), counted once confirmed.
            SeqVerdict::Unconfirmed => {}
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += (end - start) as u64;
        self.stats.lost = src.lost();
        self.stats.jitter_ms = src.jitter() * 1000.0 / f64::from(rate);
        Ok(Accepted {
            seq,
            ts: h.timestamp,
            ssrc,
            marker: h.marker,
            pt,
            payload: start..end,
        })
    }

    /// Starts fresh receive statistics for a new source (RFC 3550 A.1 `init_seq`).
    fn new_source(&mut self, ssrc: u32, seq: u16) {
        if self.source.is_some() {
            self.stats.guard.ssrc_changes += 1;
        }
        self.source = Some(SourceStats::new(ssrc, seq));
        self.probation = None;
    }

    /// A packet of `ssrc`, which is not the current source: true once it has passed
    /// probation ([`MIN_SEQUENTIAL`] in-sequence packets with no packet of the current source
    /// between them; the first source needs none) and is the current source now.
    fn on_probation(&mut self, ssrc: u32, seq: u16) -> bool {
        let run = match self.probation {
            _ if self.source.is_none() => MIN_SEQUENTIAL,
            Some((s, next, n)) if s == ssrc && next == seq => n + 1,
            _ => 1,
        };
        if run >= MIN_SEQUENTIAL {
            self.new_source(ssrc, seq);
            return true;
        }
        self.probation = Some((ssrc, seq.wrapping_add(1), run));
        false
    }

    fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Received<'static> {
        if !self.policy.rtcp_allowed(from) {
            return self.refuse(DropReason::ForeignSource);
        }
        if !self.flood.admit(now) {
            return self.refuse(DropReason::Flood);
        }
        let Ok(inc) = rtcp::parse(bytes, self.ssrc) else {
            return self.refuse(DropReason::Invalid);
        };
        self.policy.rtcp_valid(from);
        if let Some((_, ntp)) = inc.sender_report {
            self.last_sr = Some((rtcp::ntp_middle(ntp), now));
        }
        if let Some(b) = inc.about_us {
            self.stats.remote_reports += 1;
            self.stats.remote_lost = total_lost_signed(b.total_lost);
            self.stats.remote_fraction_lost = f64::from(b.fraction_lost) / 256.0;
            let rate = f64::from(self.cfg.negotiated.clock_rate.max(1));
            self.stats.remote_jitter_ms = f64::from(b.jitter) * 1000.0 / rate;
            if let Some(rtt) =
                rtcp::rtt_ms(self.clock.ntp_short(now), b.last_sender_report, b.delay)
            {
                self.stats.rtt_ms = Some(rtt);
            }
        }
        self.stats.remote_bye |= inc.bye;
        Received::Rtcp
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{addr, feed, session, A, B};
    use super::*;
    use crate::media::session::{Latching, PROOF_PACKETS, SILENCE_BEFORE_SWITCH};
    use std::time::Duration;

    #[test]
    fn stranger_cannot_take_over_by_default() {
        // The hijack: a stranger's packets arrive first; with `nat` and a reachable
        // SDP address they are refused, and the peer is still heard and sent to.
        let mut t = Instant::now();
        let mut a = session(A, B, true, Latching::Off, 30, t);
        let mut evil = session("10.0.0.66:9000", B, true, Latching::Off, 31, t);
        let mut b = session(B, A, true, Latching::Nat, 32, t);
        let stranger = addr("10.0.0.66:9000");
        let refused = feed(&mut evil, &mut b, stranger, &mut t, 100);
        assert!(refused
            .iter()
            .all(|r| *r == Some(DropReason::ForeignSource)));
        assert!(feed(&mut a, &mut b, addr(A), &mut t, 10)
            .iter()
            .all(Option::is_none));
        assert_eq!(b.rtp_destination(), addr(A));
        let s = b.stats();
        assert_eq!(
            (s.guard.foreign, s.dropped_foreign, s.packets_received),
            (100, 100, 10)
        );
        assert_eq!(s.guard.latches, 0);
    }

    #[test]
    fn always_latches_after_proof_then_sdp_address_is_foreign() {
        let mut t = Instant::now();
        let mut a = session(A, B, false, Latching::Off, 7, t);
        let mut b = session(B, A, false, Latching::Always, 8, t);
        let nat = addr("192.0.2.9:6000");
        assert_eq!(b.rtp_destination(), addr(A));
        assert_eq!(b.rtcp_destination(), addr("10.0.0.1:4001"));
        // The SDP address had its chance to speak first.
        t += SILENCE_BEFORE_SWITCH;
        let r = feed(&mut a, &mut b, nat, &mut t, PROOF_PACKETS as usize);
        assert_eq!(r[..4], [Some(DropReason::ForeignSource); 4]);
        assert_eq!(r[4], None, "the fifth in sequence latches and is played");
        assert_eq!(b.rtp_destination(), nat);
        assert_eq!(b.rtcp_destination(), addr("192.0.2.9:6001"));
        assert_eq!(b.send_audio(t, b"y", 960, false).unwrap().destination, nat);
        assert_eq!(b.stats().guard.latches, 1);
        assert_eq!(b.stats().packets_received, 1);
        // Once latched, the negotiated address is foreign while the new source talks.
        let r = feed(&mut a, &mut b, addr(A), &mut t, 1);
        assert_eq!(r, [Some(DropReason::ForeignSource)]);
        assert_eq!(b.stats().dropped_foreign, 5);
    }

    #[test]
    fn stray_ssrc_does_not_reset_statistics() {
        // Every tenth packet from the peer's address carries another SSRC; every seventh of the
        // real ones is lost. Without probation each stray packet restarted the counters.
        let mut t = Instant::now();
        let mut a = session(A, B, true, Latching::Off, 40, t);
        let mut stray = session(A, B, true, Latching::Off, 41, t);
        let mut b = session(B, A, true, Latching::Off, 42, t);
        let mut lost = 0;
        for i in 0..300 {
            t += Duration::from_millis(20);
            let pkt = a.send_audio(t, b"x", 960, false).unwrap().contents.to_vec();
            if i % 7 == 3 {
                lost += 1;
            } else {
                let _ = b.handle_datagram(t, addr(A), &pkt);
            }
            if i % 10 == 5 {
                let p = stray
                    .send_audio(t, b"y", 960, false)
                    .unwrap()
                    .contents
                    .to_vec();
                let r = b.handle_datagram(t, addr(A), &p);
                assert_eq!(r, Received::Dropped(DropReason::Probation));
            }
        }
        let s = b.stats();
        assert_eq!(s.lost, lost, "{s:?}");
        assert_eq!(s.guard.probation, 30);
        assert_eq!(s.guard.ssrc_changes, 0);
        assert!(s.jitter_ms < 1.0, "{s:?}");
    }

    #[test]
    fn ssrc_change_mid_stream_starts_fresh_state() {
        let mut t = Instant::now();
        let mut a = session(A, B, true, Latching::Off, 43, t);
        let mut b = session(B, A, true, Latching::Off, 44, t);
        feed(&mut a, &mut b, addr(A), &mut t, 50);
        // The peer restarts its stream (new SSRC, sequence and timestamp origins).
        let mut a2 = session(A, B, true, Latching::Off, 45, t);
        let r = feed(&mut a2, &mut b, addr(A), &mut t, 50);
        assert_eq!(r[0], Some(DropReason::Probation));
        assert!(r[1..].iter().all(Option::is_none));
        let s = b.stats();
        assert_eq!(s.guard.ssrc_changes, 1);
        assert_eq!(s.lost, 0);
        assert!(s.jitter_ms < 1.0, "{s:?}");
        // A report block is about the new source.
        b.handle_timeout(t + Duration::from_secs(10));
        let rr = b.poll_transmit().unwrap().contents;
        let pkts = ::rtcp::packet::unmarshal(&mut &rr[..]).unwrap();
        let rr0 = pkts[0]
            .as_any()
            .downcast_ref::<::rtcp::receiver_report::ReceiverReport>()
            .unwrap();
        assert_eq!(rr0.reports[0].ssrc, a2.ssrc());
    }

    #[test]
    fn flood_from_the_peer_is_counted_and_cut() {
        let t0 = Instant::now();
        let mut a = session(A, B, true, Latching::Off, 46, t0);
        let mut b = session(B, A, true, Latching::Off, 47, t0);
        // 100,000 packets within one second from the peer's own address.
        let mut played = 0;
        for i in 0..100_000u64 {
            let now = t0 + Duration::from_micros(10 * i);
            let pkt = a
                .send_audio(now, b"x", 960, false)
                .unwrap()
                .contents
                .to_vec();
            if let Received::Rtp { .. } = b.handle_datagram(now, addr(A), &pkt) {
                played += 1;
            }
        }
        let s = b.stats();
        assert!((240..=260).contains(&played), "{played}");
        assert_eq!(s.guard.flood + played, 100_000, "{s:?}");
        assert!(s.lost >= 0 && s.jitter_ms <= f64::from(MAX_JITTER_S) * 1000.0);
    }

    #[test]
    fn replayed_packets_are_duplicates_and_lost_stays_sane() {
        let mut t = Instant::now();
        let mut a = session(A, B, true, Latching::Off, 48, t);
        let mut b = session(B, A, true, Latching::Off, 49, t);
        let mut sent = vec![];
        for _ in 0..20 {
            t += Duration::from_millis(20);
            sent.push(a.send_audio(t, b"x", 960, false).unwrap().contents.to_vec());
        }
        for p in &sent {
            let _ = b.handle_datagram(t, addr(A), p);
        }
        for p in sent.iter().rev() {
            t += Duration::from_millis(20);
            let r = b.handle_datagram(t, addr(A), p);
            assert_eq!(r, Received::Dropped(DropReason::Duplicate));
        }
        let s = b.stats();
        assert_eq!(
            (s.packets_received, s.lost, s.guard.duplicates),
            (20, 0, 20)
        );
    }
}
