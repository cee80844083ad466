//! SRTP and SRTCP (RFC 3711; AES-GCM per RFC 7714) for one session, sans-IO, over the
//! webrtc-rs `webrtc-srtp` crate's cryptographic contexts.
//!
//! One context protects what we send (our key, our one SSRC). Received packets are checked
//! against one context per peer SSRC (at most [`MAX_PEER_SOURCES`]): a packet of an SSRC not
//! seen yet is tried on a fresh context, which is kept only if the packet authenticates. So
//! garbage with random SSRCs costs a key derivation each and never grows any state — the
//! crate keeps per-SSRC state for every SSRC it is handed, authentic or not.
//!
//! The crate checks the replay window (RFC 3711 §3.3.2, 128 packets here) before the tag and
//! moves it only after a packet authenticates, and it tracks the rollover counter across
//! sequence wrap (RFC 3711 §3.3.1, Appendix A). We check lengths before handing it a packet
//! (it indexes short packets unchecked).

use bytes::Bytes;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

use crate::signaling::sdp::{MasterKey, SrtpKeys, SrtpSuite};

/// Replay window, in packets (libsrtp's default).
pub const REPLAY_WINDOW: usize = 128;
/// Peer SSRCs with a context of their own; the least recently added goes first.
pub const MAX_PEER_SOURCES: usize = 4;
/// The longest tag any suite appends (GCM: 16 bytes), which the send buffer leaves room for.
pub const MAX_TAG: usize = 16;
/// RTCP header (8) plus the SRTCP E-flag and index word (4).
const SRTCP_MIN: usize = 12;

/// Why a received packet did not unprotect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too short to carry a header and a tag.
    Invalid,
    /// The authentication tag is wrong (or the packet is garbage).
    Auth,
    /// Seen before, or older than the replay window.
    Replay,
}

/// Why SRTP could not be set up or a packet could not be protected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SRTP: {0}")]
pub struct SrtpError(pub String);

fn profile(suite: SrtpSuite) -> ProtectionProfile {
    match suite {
        SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        SrtpSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
    }
}

fn context(key: &MasterKey, suite: SrtpSuite) -> Result<Context, SrtpError> {
    Context::new(
        key.key(),
        key.salt(),
        profile(suite),
        Some(srtp_replay_protection(REPLAY_WINDOW)),
        Some(srtcp_replay_protection(REPLAY_WINDOW)),
    )
    .map_err(|e| SrtpError(e.to_string()))
}

/// Contexts keyed by the peer's SSRC.
struct PeerContexts {
    contexts: Vec<(u32, Context)>,
}

impl PeerContexts {
    /// Runs `f` on the context of `ssrc`, or on a fresh one that is kept if `f` succeeds.
    fn open(
        &mut self,
        key: &MasterKey,
        suite: SrtpSuite,
        ssrc: u32,
        f: impl FnOnce(&mut Context) -> Result<Bytes, webrtc_srtp::Error>,
    ) -> Result<Bytes, Refused> {
        if let Some((_, ctx)) = self.contexts.iter_mut().find(|(s, _)| *s == ssrc) {
            return f(ctx).map_err(refused);
        }
        let mut ctx = context(key, suite).map_err(|_| Refused::Auth)?;
        let plain = f(&mut ctx).map_err(refused)?;
        if self.contexts.len() >= MAX_PEER_SOURCES {
            self.contexts.remove(0);
        }
        self.contexts.push((ssrc, ctx));
        Ok(plain)
    }
}

fn refused(e: webrtc_srtp::Error) -> Refused {
    use webrtc_srtp::Error as E;
    match e {
        E::SrtpSsrcDuplicated(..) | E::SrtcpSsrcDuplicated(..) | E::ErrDuplicated => {
            Refused::Replay
        }
        E::ErrTooShortRtp | E::ErrTooShortRtcp => Refused::Invalid,
        _ => Refused::Auth,
    }
}

/// The SRTP state of one session; see the module documentation.
pub struct Srtp {
    suite: SrtpSuite,
    tx: Context,
    rx_key: MasterKey,
    rx_rtp: PeerContexts,
    rx_rtcp: PeerContexts,
}

impl std::fmt::Debug for Srtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Srtp({:?})", self.suite)
    }
}

impl Srtp {
    /// Contexts for the agreed suite and keys (fails only on key lengths the SDP layer
    /// already refuses).
    pub fn new(keys: &SrtpKeys) -> Result<Self, SrtpError> {
        Ok(Srtp {
            suite: keys.suite,
            tx: context(&keys.local, keys.suite)?,
            rx_key: keys.remote.clone(),
            rx_rtp: PeerContexts {
                contexts: Vec::new(),
            },
            rx_rtcp: PeerContexts {
                contexts: Vec::new(),
            },
        })
    }

    /// The suite in use.
    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// Protects one RTP packet (header + payload) of ours.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        self.tx
            .encrypt_rtp(packet)
            .map_err(|e| SrtpError(e.to_string()))
    }

    /// Protects one (compound) RTCP packet of ours.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        self.tx
            .encrypt_rtcp(packet)
            .map_err(|e| SrtpError(e.to_string()))
    }

    /// Checks and decrypts one received SRTP packet whose header (with CSRCs and extension)
    /// is `header_len` bytes: the plain RTP packet, or why it was refused.
    pub fn unprotect_rtp(&mut self, packet: &[u8], header_len: usize) -> Result<Bytes, Refused> {
        let p = profile(self.suite);
        let tag = p.rtp_auth_tag_len().max(p.aead_auth_tag_len());
        if packet.len() < header_len.max(12) + tag {
            return Err(Refused::Invalid);
        }
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let (key, suite) = (&self.rx_key, self.suite);
        self.rx_rtp
            .open(key, suite, ssrc, |ctx| ctx.decrypt_rtp(packet))
    }

    /// Checks and decrypts one received SRTCP packet.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Bytes, Refused> {
        let p = profile(self.suite);
        let tag = p.rtcp_auth_tag_len().max(p.aead_auth_tag_len());
        if packet.len() < SRTCP_MIN + tag {
            return Err(Refused::Invalid);
        }
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let (key, suite) = (&self.rx_key, self.suite);
        self.rx_rtcp
            .open(key, suite, ssrc, |ctx| ctx.decrypt_rtcp(packet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::rtp::header::Header;
    use webrtc_util::marshal::Marshal;

    fn keys(suite: SrtpSuite) -> (SrtpKeys, SrtpKeys) {
        let a = MasterKey::random(suite);
        let b = MasterKey::random(suite);
        (
            SrtpKeys {
                suite,
                local: a.clone(),
                remote: b.clone(),
            },
            SrtpKeys {
                suite,
                local: b,
                remote: a,
            },
        )
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let h = Header {
            version: 2,
            payload_type: 0,
            sequence_number: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 0x1234_5678,
            ..Header::default()
        };
        let mut v = h.marshal().unwrap().to_vec();
        v.extend_from_slice(payload);
        v
    }

    const SUITES: [SrtpSuite; 3] = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
        SrtpSuite::AeadAes128Gcm,
    ];

    #[test]
    fn round_trip_every_suite_payload_hidden() {
        for suite in SUITES {
            let (ka, kb) = keys(suite);
            let (mut a, mut b) = (Srtp::new(&ka).unwrap(), Srtp::new(&kb).unwrap());
            let plain = rtp(7, b"hello, this is audio");
            let wire = a.protect_rtp(&plain).unwrap();
            let tag = match suite {
                SrtpSuite::AesCm128HmacSha1_80 => 10,
                SrtpSuite::AesCm128HmacSha1_32 => 4,
                SrtpSuite::AeadAes128Gcm => 16,
            };
            assert_eq!(wire.len(), plain.len() + tag, "{suite:?}");
            assert_eq!(wire[..12], plain[..12], "the header stays in the clear");
            assert!(!wire.windows(5).any(|w| w == b"hello"), "{suite:?}");
            assert_eq!(b.unprotect_rtp(&wire, 12).unwrap()[..], plain[..]);
            // Our own key does not open it.
            assert_eq!(a.unprotect_rtp(&wire, 12), Err(Refused::Auth));
        }
    }

    #[test]
    fn bad_tag_replay_and_garbage_are_refused_and_the_stream_goes_on() {
        for suite in SUITES {
            let (ka, kb) = keys(suite);
            let (mut a, mut b) = (Srtp::new(&ka).unwrap(), Srtp::new(&kb).unwrap());
            let first = a.protect_rtp(&rtp(1, &[1; 160])).unwrap();
            assert!(b.unprotect_rtp(&first, 12).is_ok());
            assert_eq!(b.unprotect_rtp(&first, 12), Err(Refused::Replay));
            let mut forged = a.protect_rtp(&rtp(2, &[2; 160])).unwrap().to_vec();
            let last = forged.len() - 1;
            forged[last] ^= 1;
            assert_eq!(b.unprotect_rtp(&forged, 12), Err(Refused::Auth));
            assert_eq!(b.unprotect_rtp(&[0x80, 0, 0, 1], 12), Err(Refused::Invalid));
            // Garbage with fresh SSRCs leaves no state behind.
            for i in 0..100u32 {
                let mut g = rtp(3, &[9; 40]);
                g[8..12].copy_from_slice(&i.to_be_bytes());
                assert_eq!(b.unprotect_rtp(&g, 12), Err(Refused::Auth));
            }
            assert_eq!(b.rx_rtp.contexts.len(), 1);
            // The real packet 2 still authenticates after the forgery.
            let second = a.protect_rtp(&rtp(2, &[2; 160])).unwrap();
            assert!(b.unprotect_rtp(&second, 12).is_ok(), "{suite:?}");
        }
    }

    #[test]
    fn rollover_counter_follows_the_sequence_wrap() {
        // Sends across 65535 → 0 several times; every packet must open (a wrong ROC guess
        // breaks the keystream and the tag).
        let (ka, kb) = keys(SrtpSuite::AesCm128HmacSha1_80);
        let (mut a, mut b) = (Srtp::new(&ka).unwrap(), Srtp::new(&kb).unwrap());
        let mut seq: u16 = 65_500;
        for i in 0..135_000u32 {
            let plain = rtp(seq, &i.to_be_bytes());
            let wire = a.protect_rtp(&plain).unwrap();
            // Skip most packets on the receive side (loss), but always around the wrap.
            if i % 97 == 0 || !(100..=65_400).contains(&seq) {
                assert_eq!(
                    b.unprotect_rtp(&wire, 12).unwrap()[..],
                    plain[..],
                    "seq {seq}"
                );
            }
            seq = seq.wrapping_add(1);
        }
    }

    #[test]
    fn srtcp_round_trip_replay_and_short() {
        for suite in SUITES {
            let (ka, kb) = keys(suite);
            let (mut a, mut b) = (Srtp::new(&ka).unwrap(), Srtp::new(&kb).unwrap());
            // A receiver report with no blocks: V=2, PT=201, length 1, SSRC.
            let rr = [0x80, 201, 0, 1, 0xde, 0xad, 0xbe, 0xef];
            let wire = a.protect_rtcp(&rr).unwrap();
            assert_eq!(b.unprotect_rtcp(&wire).unwrap()[..], rr[..], "{suite:?}");
            assert_eq!(b.unprotect_rtcp(&wire), Err(Refused::Replay));
            for n in 0..wire.len() {
                let r = b.unprotect_rtcp(&wire[..n]);
                assert!(r.is_err(), "{n}");
            }
            assert_eq!(b.unprotect_rtcp(&[0x80, 201, 0, 1]), Err(Refused::Invalid));
        }
    }

    mod in_session {
        use super::super::super::tests::{addr, negotiated, A, B};
        use super::keys;
        use crate::media::session::{DropReason, Latching, MediaSession, Received, SessionConfig};
        use crate::signaling::sdp::{SrtpKeys, SrtpSuite};
        use rand::rngs::StdRng;
        use rand::SeedableRng;
        use std::time::{Duration, Instant, SystemTime};

        fn secure(local: &str, remote: &str, k: SrtpKeys, t0: Instant) -> MediaSession {
            let mut n = negotiated(addr(local), addr(remote), true);
            n.srtp = Some(k);
            let cfg = SessionConfig {
                negotiated: n,
                latching: Latching::Off,
                cname: "srtp@example.invalid".into(),
            };
            let mut rng = StdRng::seed_from_u64(7);
            MediaSession::new(cfg, t0, SystemTime::UNIX_EPOCH, &mut rng)
        }

        #[test]
        fn a_call_survives_forgery_replay_and_garbage_and_counts_them() {
            let t0 = Instant::now();
            let (ka, kb) = keys(SrtpSuite::AesCm128HmacSha1_80);
            let mut a = secure(A, B, ka, t0);
            let mut b = secure(B, A, kb, t0);
            assert_eq!(a.srtp_suite(), Some(SrtpSuite::AesCm128HmacSha1_80));
            let mut t = t0;
            let mut heard = 0;
            let mut last = Vec::new();
            for i in 0..50u32 {
                t += Duration::from_millis(20);
                let wire = a
                    .send_audio(t, b"secret-audio", 960, false)
                    .unwrap()
                    .contents
                    .to_vec();
                assert!(!wire.windows(6).any(|w| w == b"secret"));
                if let Received::Rtp { payload, .. } = b.handle_datagram(t, addr(A), &wire) {
                    assert_eq!(payload, b"secret-audio");
                    heard += 1;
                }
                if i % 10 == 5 {
                    // Replay the previous packet, forge one, send garbage.
                    let r = b.handle_datagram(t, addr(A), &last);
                    assert_eq!(r, Received::Dropped(DropReason::SrtpReplay));
                    // A forged payload on a sequence number not seen yet, and a
                    // packet moved to another SSRC: neither authenticates.
                    let mut forged = wire.clone();
                    let ahead = u16::from_be_bytes([wire[2], wire[3]]).wrapping_add(100);
                    forged[2..4].copy_from_slice(&ahead.to_be_bytes());
                    let r = b.handle_datagram(t, addr(A), &forged);
                    assert_eq!(r, Received::Dropped(DropReason::SrtpAuth));
                    let mut moved = wire.clone();
                    moved[11] ^= 0x55;
                    let r = b.handle_datagram(t, addr(A), &moved);
                    assert_eq!(r, Received::Dropped(DropReason::SrtpAuth));
                    let mut garbage = vec![0x80, 111, 0, 9, 0, 0, 0, 1, 1, 2, 3, 4];
                    garbage.extend_from_slice(&[0xab; 40]);
                    let r = b.handle_datagram(t, addr(A), &garbage);
                    assert_eq!(r, Received::Dropped(DropReason::SrtpAuth));
                    let r = b.handle_datagram(t, addr(A), &[0x80, 111, 0]);
                    assert_eq!(r, Received::Dropped(DropReason::Invalid));
                }
                last = wire;
            }
            assert_eq!(heard, 50, "every authentic packet is played");
            let g = b.stats().guard;
            assert_eq!((g.srtp_replay, g.srtp_auth), (5, 15));
            assert_eq!(b.stats().packets_received, 50);
            // SRTCP both ways: reports protected, understood, and a plain one refused.
            a.handle_timeout(t + Duration::from_secs(10));
            let mut n = 0;
            while let Some(tx) = a.poll_transmit() {
                assert!(
                    !tx.contents.windows(8).any(|w| w == b"srtp@exa"),
                    "CNAME hidden"
                );
                assert_eq!(b.handle_datagram(t, addr(A), &tx.contents), Received::Rtcp);
                n += 1;
            }
            assert_eq!(n, 1);
        }

        #[test]
        fn plain_packets_are_refused_by_a_secure_session() {
            let t0 = Instant::now();
            let (_, kb) = keys(SrtpSuite::AeadAes128Gcm);
            let mut b = secure(B, A, kb, t0);
            let mut plain = super::super::super::tests::session(A, B, true, Latching::Off, 3, t0);
            let pkt = plain
                .send_audio(t0, &[1; 160], 960, false)
                .unwrap()
                .contents
                .to_vec();
            assert_eq!(
                b.handle_datagram(t0, addr(A), &pkt),
                Received::Dropped(DropReason::SrtpAuth)
            );
            assert_eq!(b.stats().packets_received, 0);
        }
    }
}
