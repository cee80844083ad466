//! The RTP source policy: where media goes and whose packets count (RFC 3264 §5 / §6: send to
//! the address the SDP names; RFC 4961 symmetric RTP only as a guarded exception), sans-IO.
//!
//! - RTP and RTCP go to the address the peer's SDP names, and only packets from that address
//!   (IP and port) are accepted: RTCP from its RTCP address, or from the RTP address (always with
//!   rtcp-mux, and tolerated without it).
//! - *Latching* onto another source is allowed only by policy ([`Latching`]): never (`off`),
//!   only when the SDP address cannot be reached from here (`nat`, see [`behind_nat`]), or
//!   always (`always`). Even then a new source must prove itself first, the rtpengine/Asterisk
//!   "strict" way: [`PROOF_PACKETS`] consecutive packets of one SSRC with consecutive sequence
//!   numbers from that one address. A source that proved itself replaces the current one only
//!   when the current one has been silent for [`SILENCE_BEFORE_SWITCH`]. With `always`, the
//!   SDP address counts as heard when the session starts (it gets that long to speak first, so
//!   a stranger who races the peer's first packets does not win); with `nat` it cannot be
//!   reached anyway, so a proven source is taken at once.
//! - After RTP latched, RTCP (without rtcp-mux) is expected next to it (port + 1) and latches to
//!   the first valid RTCP packet from the latched IP.
//!
//! The caller counts what this refuses; nothing here reads the clock.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Consecutive in-sequence packets of one SSRC a new source must send before we latch to it.
pub const PROOF_PACKETS: u32 = 5;
/// How long the current source must have been silent before a proven new one replaces it.
pub const SILENCE_BEFORE_SWITCH: Duration = Duration::from_secs(2);
/// New sources tracked at once while they prove themselves (the stalest is forgotten first).
const CANDIDATES: usize = 4;
/// Prefix length taken as "our network" for IPv4 (the common LAN subnet size).
const V4_SUBNET: u8 = 24;
/// Prefix length taken as "our network" for IPv6 (RFC 4291 §2.5.4 interface identifiers).
const V6_SUBNET: u8 = 64;

/// When media may latch to a source other than the SDP address (`[media] latching`,
/// `--latching`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latching {
    /// Never: only the SDP address counts.
    Off,
    /// Only when the SDP address cannot be reached from here ([`behind_nat`]).
    #[default]
    Nat,
    /// Whenever a new source proves itself (and the current one is silent).
    Always,
}

impl std::str::FromStr for Latching {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Latching::Off),
            "nat" => Ok(Latching::Nat),
            "always" => Ok(Latching::Always),
            other => Err(format!("unknown latching {other:?} (off, nat, always)")),
        }
    }
}

impl std::fmt::Display for Latching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Latching::Off => "off",
            Latching::Nat => "nat",
            Latching::Always => "always",
        })
    }
}

/// Whether the peer's SDP address `sdp` is one we cannot expect to reach from `local` (our
/// media address), so that its packets will arrive from a NAT's address instead. True when:
/// - the families differ (IPv6 SDP, IPv4 media or the reverse);
/// - exactly one of the two is loopback (a peer that announces 127.0.0.1 to a remote host);
/// - `sdp` is non-global — RFC 1918 private (10/8, 172.16/12, 192.168/16), RFC 6598 shared
///   (100.64/10), link-local (169.254/16, fe80::/10) or RFC 4193 unique-local (fc00::/7) — and
///   `local` is not in the same subnet (the same /24 for IPv4, /64 for IPv6).
///
/// False for a global address, for the unspecified address (hold), and for loopback to
/// loopback.
pub fn behind_nat(sdp: IpAddr, local: IpAddr) -> bool {
    if sdp.is_unspecified() {
        return false;
    }
    if sdp.is_ipv4() != local.is_ipv4() || sdp.is_loopback() != local.is_loopback() {
        return true;
    }
    if sdp.is_loopback() {
        return false;
    }
    let non_global = match sdp {
        IpAddr::V4(a) => a.is_private() || a.is_link_local() || is_shared_v4(a),
        IpAddr::V6(a) => is_unique_local_v6(a) || is_link_local_v6(a),
    };
    non_global && !same_subnet(sdp, local)
}

fn is_shared_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 100 && (o[1] & 0xc0) == 64
}

fn is_unique_local_v6(a: Ipv6Addr) -> bool {
    (a.segments()[0] & 0xfe00) == 0xfc00
}

fn is_link_local_v6(a: Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

fn same_subnet(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX << (32 - u32::from(V4_SUBNET));
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX << (128 - u32::from(V6_SUBNET));
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// A source that is proving itself.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    from: SocketAddr,
    ssrc: u32,
    /// The sequence number that continues the run.
    next_seq: u16,
    /// Consecutive in-sequence packets so far.
    run: u32,
    seen: Instant,
}

/// Where media comes from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The SDP's addresses.
    Negotiated,
    /// A source that proved itself; its RTCP address once RTCP arrived from its IP.
    Latched {
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    },
}

/// What [`SourcePolicy::check_rtp`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the current source.
    Accept,
    /// From a new source that just proved itself: media now goes there.
    Latched,
    /// Refused (a stranger, or a new source still proving itself).
    Refuse,
}

/// The RTP source policy of one session; see the module documentation.
#[derive(Debug, Clone)]
pub struct SourcePolicy {
    sdp_rtp: SocketAddr,
    sdp_rtcp: SocketAddr,
    mux: bool,
    may_latch: bool,
    state: State,
    /// When the current source last sent RTP.
    last_heard: Option<Instant>,
    candidates: [Option<Candidate>; CANDIDATES],
    latches: u64,
}

impl SourcePolicy {
    /// The policy, from `now`, for a peer whose SDP names `sdp_rtp` / `sdp_rtcp` (the same with
    /// `mux`), seen from our media address `local`.
    pub fn new(
        latching: Latching,
        now: Instant,
        local: SocketAddr,
        sdp_rtp: SocketAddr,
        sdp_rtcp: SocketAddr,
        mux: bool,
    ) -> Self {
        let may_latch = match latching {
            Latching::Off => false,
            Latching::Nat => behind_nat(sdp_rtp.ip(), local.ip()),
            Latching::Always => true,
        };
        SourcePolicy {
            sdp_rtp,
            sdp_rtcp: if mux { sdp_rtp } else { sdp_rtcp },
            mux,
            may_latch,
            state: State::Negotiated,
            last_heard: (latching == Latching::Always).then_some(now),
            candidates: [None; CANDIDATES],
            latches: 0,
        }
    }

    /// Whether this policy may ever latch (off, or `nat` with a reachable SDP address: never).
    pub fn may_latch(&self) -> bool {
        self.may_latch
    }

    /// How many times media latched to a new source.
    pub fn latches(&self) -> u64 {
        self.latches
    }

    /// Where RTP goes, and the only address RTP is accepted from.
    pub fn rtp_destination(&self) -> SocketAddr {
        match self.state {
            State::Negotiated => self.sdp_rtp,
            State::Latched { rtp, .. } => rtp,
        }
    }

    /// Where RTCP goes: the RTP destination with rtcp-mux; else the SDP's RTCP address, or next
    /// to the latched RTP source until its RTCP arrived.
    pub fn rtcp_destination(&self) -> SocketAddr {
        if self.mux {
            return self.rtp_destination();
        }
        match self.state {
            State::Negotiated => self.sdp_rtcp,
            State::Latched { rtcp: Some(a), .. } => a,
            State::Latched { rtp, rtcp: None } => {
                SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
            }
        }
    }

    /// Decides on an RTP packet (already parsed, with a negotiated payload type) of `ssrc` and
    /// sequence number `seq` from `from` at `now`.
    pub fn check_rtp(&mut self, now: Instant, from: SocketAddr, ssrc: u32, seq: u16) -> Verdict {
        if from == self.rtp_destination() {
            self.last_heard = Some(now);
            return Verdict::Accept;
        }
        if !self.may_latch {
            return Verdict::Refuse;
        }
        let run = self.prove(now, from, ssrc, seq);
        let silent = self
            .last_heard
            .is_none_or(|t| now.saturating_duration_since(t) >= SILENCE_BEFORE_SWITCH);
        if run < PROOF_PACKETS || !silent {
            return Verdict::Refuse;
        }
        self.state = State::Latched {
            rtp: from,
            rtcp: None,
        };
        self.last_heard = Some(now);
        self.candidates = [None; CANDIDATES];
        self.latches += 1;
        Verdict::Latched
    }

    /// Records a packet of a would-be source and returns its run of in-sequence packets.
    fn prove(&mut self, now: Instant, from: SocketAddr, ssrc: u32, seq: u16) -> u32 {
        let slot = match self
            .candidates
            .iter()
            .position(|c| c.is_some_and(|c| c.from == from))
        {
            Some(i) => i,
            None => {
                // A free slot, else the one heard from longest ago.
                let i = (0..CANDIDATES)
                    .min_by_key(|&i| self.candidates[i].map(|c| c.seen))
                    .unwrap_or(0);
                self.candidates[i] = None;
                i
            }
        };
        let run = match self.candidates[slot] {
            Some(c) if c.ssrc == ssrc && c.next_seq == seq => c.run + 1,
            _ => 1,
        };
        self.candidates[slot] = Some(Candidate {
            from,
            ssrc,
            next_seq: seq.wrapping_add(1),
            run,
            seen: now,
        });
        run
    }

    /// Whether RTCP from `from` may be looked at: from the RTP or RTCP destination, or (after
    /// RTP latched, before RTCP did) from the latched IP.
    pub fn rtcp_allowed(&self, from: SocketAddr) -> bool {
        if from == self.rtp_destination() || from == self.rtcp_destination() {
            return true;
        }
        matches!(self.state, State::Latched { rtp, rtcp: None } if !self.mux && rtp.ip() == from.ip())
    }

    /// A valid RTCP packet came from `from` (which [`rtcp_allowed`](Self::rtcp_allowed)):
    /// latches the RTCP address when RTP latched and RTCP had not.
    pub fn rtcp_valid(&mut self, from: SocketAddr) {
        if let State::Latched { rtp, rtcp: None } = self.state {
            if !self.mux && from != rtp {
                self.state = State::Latched {
                    rtp,
                    rtcp: Some(from),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const LOCAL: &str = "192.0.2.10:4000";
    const SDP: &str = "198.51.100.7:5000";

    fn policy(latching: Latching, local: &str, sdp: &str, mux: bool) -> SourcePolicy {
        let s = addr(sdp);
        let rtcp = SocketAddr::new(s.ip(), s.port() + 1);
        SourcePolicy::new(latching, Instant::now(), addr(local), s, rtcp, mux)
    }

    /// Sends `n` in-sequence packets of `ssrc` from `from` starting at `seq`, 20 ms apart;
    /// returns the verdicts.
    fn burst(
        p: &mut SourcePolicy,
        t: &mut Instant,
        from: &str,
        ssrc: u32,
        seq: u16,
        n: u16,
    ) -> Vec<Verdict> {
        (0..n)
            .map(|i| {
                *t += Duration::from_millis(20);
                p.check_rtp(*t, addr(from), ssrc, seq.wrapping_add(i))
            })
            .collect()
    }

    #[test]
    fn nat_rule() {
        let cases = [
            // (sdp, local, behind nat)
            ("198.51.100.7", "192.0.2.10", false), // global
            ("10.0.0.5", "192.0.2.10", true),      // private, we are elsewhere
            ("10.0.0.5", "10.0.0.9", false),       // private, same /24
            ("10.0.1.5", "10.0.0.9", true),        // private, other /24
            ("172.16.4.4", "192.0.2.10", true),
            ("172.32.0.1", "192.0.2.10", false), // just past 172.16/12: global
            ("192.168.1.2", "192.168.1.3", false),
            ("192.168.1.2", "192.168.0.3", true),
            ("100.64.0.1", "192.0.2.10", true), // RFC 6598 shared (CGNAT)
            ("100.128.0.1", "192.0.2.10", false), // past 100.64/10: global
            ("169.254.3.3", "192.0.2.10", true),
            ("127.0.0.1", "127.0.0.1", false),
            ("127.0.0.1", "192.0.2.10", true), // loopback mismatch
            ("192.0.2.10", "127.0.0.1", true),
            ("0.0.0.0", "192.0.2.10", false),             // hold
            ("2001:db8::1", "192.0.2.10", true),          // family mismatch
            ("fd12:3456:789a:1::5", "2001:db8::1", true), // ULA
            ("fd12:3456:789a:1::5", "fd12:3456:789a:1::9", false),
            ("fd12:3456:789a:2::5", "fd12:3456:789a:1::9", true),
            ("fe80::1", "2001:db8::1", true),
            ("2001:db8::5", "2001:db8:1::1", false),
            ("::1", "::1", false),
        ];
        for (sdp, local, want) in cases {
            assert_eq!(behind_nat(ip(sdp), ip(local)), want, "{sdp} from {local}");
        }
    }

    #[test]
    fn latching_parses_and_prints() {
        for l in [Latching::Off, Latching::Nat, Latching::Always] {
            assert_eq!(l.to_string().parse::<Latching>(), Ok(l));
        }
        assert_eq!(" NAT ".parse::<Latching>(), Ok(Latching::Nat));
        assert!("sometimes".parse::<Latching>().is_err());
        assert_eq!(Latching::default(), Latching::Nat);
    }

    #[test]
    fn sdp_address_only_by_default() {
        let t0 = Instant::now();
        // A global SDP address with `nat`: no latching at all.
        let mut p = policy(Latching::Nat, LOCAL, SDP, true);
        assert!(!p.may_latch());
        let mut t = t0;
        let v = burst(&mut p, &mut t, "203.0.113.66:7000", 9, 100, 50);
        assert!(v.iter().all(|v| *v == Verdict::Refuse));
        assert_eq!(p.rtp_destination(), addr(SDP));
        assert_eq!(p.check_rtp(t, addr(SDP), 1, 7), Verdict::Accept);
        // Same IP, other port: a stranger too.
        assert_eq!(
            p.check_rtp(t, addr("198.51.100.7:5002"), 1, 8),
            Verdict::Refuse
        );
    }

    #[test]
    fn off_never_latches_even_behind_nat() {
        let mut p = policy(Latching::Off, LOCAL, "10.1.1.1:5000", true);
        let mut t = Instant::now();
        let v = burst(&mut p, &mut t, "203.0.113.66:7000", 9, 100, 50);
        assert!(v.iter().all(|v| *v == Verdict::Refuse));
        assert_eq!(p.latches(), 0);
    }

    #[test]
    fn nat_latches_after_five_in_sequence() {
        let mut p = policy(Latching::Nat, LOCAL, "10.1.1.1:5000", true);
        assert!(p.may_latch());
        let mut t = Instant::now();
        let nat = "203.0.113.5:40000";
        let v = burst(&mut p, &mut t, nat, 9, 65533, 6);
        assert_eq!(&v[..4], &[Verdict::Refuse; 4], "proof wraps past 65535");
        assert_eq!(v[4], Verdict::Latched);
        assert_eq!(v[5], Verdict::Accept);
        assert_eq!(p.rtp_destination(), addr(nat));
        assert_eq!(p.rtcp_destination(), addr(nat), "mux");
        assert_eq!(p.latches(), 1);
    }

    #[test]
    fn always_gives_the_sdp_address_time_to_speak_first() {
        let t0 = Instant::now();
        let fresh = || {
            SourcePolicy::new(
                Latching::Always,
                t0,
                addr(LOCAL),
                addr(SDP),
                addr(SDP),
                true,
            )
        };
        let mut p = fresh();
        let mut t = t0;
        // A stranger races the peer's first packets: refused while the peer may still speak.
        let v = burst(&mut p, &mut t, "203.0.113.66:7000", 5, 0, 20);
        assert!(v.iter().all(|v| *v == Verdict::Refuse));
        assert_eq!(p.check_rtp(t, addr(SDP), 1, 0), Verdict::Accept);
        // The peer never speaks: after the grace the proven stranger's run is taken.
        let mut q = fresh();
        let mut t = t0;
        let v = burst(&mut q, &mut t, "203.0.113.66:7000", 5, 0, 120);
        let first = v.iter().position(|v| *v == Verdict::Latched).unwrap();
        assert_eq!(first, 99, "at 2 s: {v:?}");
        // `nat` does not wait for an address it cannot reach.
        let mut n = SourcePolicy::new(
            Latching::Nat,
            t0,
            addr(LOCAL),
            addr("10.1.1.1:5000"),
            addr("10.1.1.1:5000"),
            true,
        );
        let mut t = t0;
        let v = burst(&mut n, &mut t, "203.0.113.66:7000", 5, 0, 5);
        assert_eq!(v[4], Verdict::Latched);
    }

    #[test]
    fn broken_run_starts_over() {
        let mut p = policy(Latching::Always, LOCAL, SDP, true);
        let mut t = Instant::now() + SILENCE_BEFORE_SWITCH;
        let s = "203.0.113.5:40000";
        burst(&mut p, &mut t, s, 9, 10, 4);
        // A gap in sequence, then another SSRC: both restart the count.
        assert_eq!(burst(&mut p, &mut t, s, 9, 20, 4), [Verdict::Refuse; 4]);
        assert_eq!(burst(&mut p, &mut t, s, 8, 24, 4), [Verdict::Refuse; 4]);
        assert_eq!(
            burst(&mut p, &mut t, s, 8, 28, 1),
            [Verdict::Latched],
            "fifth of the new run"
        );
    }

    #[test]
    fn interleaved_stranger_does_not_reset_the_real_source() {
        let mut p = policy(Latching::Nat, LOCAL, "10.1.1.1:5000", true);
        let mut t = Instant::now();
        let (real, evil) = ("203.0.113.5:40000", "203.0.113.99:1234");
        let mut verdicts = vec![];
        for i in 0..5u16 {
            burst(&mut p, &mut t, evil, 1, 7 * i, 1); // out of sequence
            verdicts.extend(burst(&mut p, &mut t, real, 9, 100 + i, 1));
        }
        assert_eq!(verdicts[4], Verdict::Latched, "{verdicts:?}");
        assert_eq!(p.rtp_destination(), addr(real));
    }

    #[test]
    fn latched_source_kept_while_it_talks() {
        let mut p = policy(Latching::Always, LOCAL, SDP, true);
        let t0 = Instant::now();
        let mut t = t0;
        // The SDP address talks: a stranger in perfect sequence is still refused.
        for i in 0..200u16 {
            t += Duration::from_millis(10);
            assert_eq!(p.check_rtp(t, addr(SDP), 1, i), Verdict::Accept);
            let v = p.check_rtp(t, addr("203.0.113.66:7000"), 5, 1000 + i);
            assert_eq!(v, Verdict::Refuse);
        }
        // The SDP address falls silent; the stranger's run continues and wins after 2 s.
        let quiet = t;
        let mut seq = 1200u16;
        loop {
            t += Duration::from_millis(20);
            let v = p.check_rtp(t, addr("203.0.113.66:7000"), 5, seq);
            seq += 1;
            if v == Verdict::Latched {
                break;
            }
            assert!(t - quiet < SILENCE_BEFORE_SWITCH, "latched late");
        }
        assert!(t - quiet >= SILENCE_BEFORE_SWITCH);
        // Now the old address is the stranger.
        assert_eq!(p.check_rtp(t, addr(SDP), 1, 201), Verdict::Refuse);
    }

    #[test]
    fn rtcp_follows_policy() {
        let mut p = policy(Latching::Nat, LOCAL, "10.1.1.1:5000", false);
        let t = Instant::now();
        assert!(p.rtcp_allowed(addr("10.1.1.1:5001")));
        assert!(p.rtcp_allowed(addr("10.1.1.1:5000")));
        assert!(!p.rtcp_allowed(addr("203.0.113.5:40001")));
        let mut now = t;
        let v = burst(&mut p, &mut now, "203.0.113.5:40000", 3, 0, 5);
        assert_eq!(v[4], Verdict::Latched);
        assert_eq!(p.rtcp_destination(), addr("203.0.113.5:40001"));
        // The NAT mapped RTCP elsewhere: the first valid RTCP from the latched IP latches it.
        assert!(!p.rtcp_allowed(addr("203.0.113.6:40005")));
        assert!(p.rtcp_allowed(addr("203.0.113.5:40007")));
        p.rtcp_valid(addr("203.0.113.5:40007"));
        assert_eq!(p.rtcp_destination(), addr("203.0.113.5:40007"));
        assert!(!p.rtcp_allowed(addr("203.0.113.5:40009")));
        assert!(p.rtcp_allowed(addr("203.0.113.5:40000")), "RTP address");
    }
}
