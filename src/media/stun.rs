//! STUN Binding (RFC 8489), client side, sans-IO: learn the address a NAT maps a media
//! socket to, so the SDP can announce it when no media anchor is in the path.
//!
//! The wire format (§5, §14.2 XOR-MAPPED-ADDRESS, §14.7 FINGERPRINT) is encoded and decoded
//! here; [`Binding`] is one request/response transaction with the §6.2.1 retransmissions
//! (RTO 500 ms, doubling) cut to a total budget ([`GIVE_UP`]), driven with an injected `now`.
//! The driver owns the socket and the clock (`driver/stun.rs`).
//!
//! Demultiplexing (RFC 7983): a datagram whose first byte is 0..=3 is STUN, never RTP
//! (version 2, first byte 128..=191) or RTCP; see [`is_stun`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The magic cookie of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// The STUN port when the server names none (§9).
pub const DEFAULT_PORT: u16 = 3478;
/// The first retransmission timeout (§6.2.1: a default of 500 ms), doubled each time.
pub const RTO: Duration = Duration::from_millis(500);
/// A Binding that has no answer after this long is given up: media then uses the local
/// address (a call never waits long, and never fails, for STUN).
pub const GIVE_UP: Duration = Duration::from_millis(1500);

const HEADER: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const BINDING_ERROR: u16 = 0x0111;
const MAPPED_ADDRESS: u16 = 0x0001;
const ERROR_CODE: u16 = 0x0009;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// The 96-bit transaction ID of a request and its response.
pub type TransactionId = [u8; 12];

/// Why a datagram is not a usable Binding response, or why a Binding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Shorter than a header, or an attribute runs past the end.
    #[error("truncated STUN message")]
    Truncated,
    /// Not STUN (top bits, magic cookie, or a length not a multiple of 4).
    #[error("not a STUN message")]
    NotStun,
    /// A STUN message, but not a Binding response.
    #[error("not a Binding response (type {0:#06x})")]
    NotBindingResponse(u16),
    /// The FINGERPRINT attribute does not match the message.
    #[error("STUN FINGERPRINT mismatch")]
    BadFingerprint,
    /// An error response (§14.8: class × 100 + number).
    #[error("STUN error response {0}")]
    ErrorResponse(u16),
    /// A success response with no (XOR-)MAPPED-ADDRESS we can read.
    #[error("STUN response without a mapped address")]
    NoAddress,
    /// No response within [`GIVE_UP`].
    #[error("no STUN response within {0:?}")]
    TimedOut(Duration),
}

/// Whether `packet` looks like STUN (RFC 7983 §7: first byte 0..=3, and the magic cookie).
pub fn is_stun(packet: &[u8]) -> bool {
    packet.len() >= HEADER
        && packet[0] < 4
        && u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]) == MAGIC_COOKIE
}

/// A Binding request with transaction ID `id`, no attributes but an optional FINGERPRINT.
pub fn binding_request(id: &TransactionId, fingerprint: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER + 8);
    m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m.extend_from_slice(id);
    if fingerprint {
        add_fingerprint(&mut m);
    }
    m
}

/// Appends FINGERPRINT (§14.7): the CRC-32 of the message so far, its length already
/// counting the attribute, XOR 0x5354554e.
fn add_fingerprint(m: &mut Vec<u8>) {
    let len = (m.len() - HEADER + 8) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32(m) ^ FINGERPRINT_XOR;
    m.extend_from_slice(&FINGERPRINT.to_be_bytes());
    m.extend_from_slice(&4u16.to_be_bytes());
    m.extend_from_slice(&crc.to_be_bytes());
}

/// The transaction ID of a STUN message (call after [`is_stun`]).
pub fn transaction_id(packet: &[u8]) -> Option<TransactionId> {
    packet.get(8..HEADER)?.try_into().ok()
}

/// Decodes a Binding response: its transaction ID and the mapped address (XOR-MAPPED-ADDRESS,
/// else the RFC 3489 MAPPED-ADDRESS). A FINGERPRINT, when present, must match.
pub fn parse_binding_response(packet: &[u8]) -> Result<(TransactionId, SocketAddr), StunError> {
    if packet.len() < HEADER {
        return Err(StunError::Truncated);
    }
    if !is_stun(packet) {
        return Err(StunError::NotStun);
    }
    let kind = u16::from_be_bytes([packet[0], packet[1]]);
    let len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if len % 4 != 0 {
        return Err(StunError::NotStun);
    }
    let body = packet
        .get(HEADER..HEADER + len)
        .ok_or(StunError::Truncated)?;
    let id = transaction_id(packet).ok_or(StunError::Truncated)?;
    let mut xor = None;
    let mut plain = None;
    let mut error = None;
    let mut at = 0;
    while at < body.len() {
        let head = body.get(at..at + 4).ok_or(StunError::Truncated)?;
        let atype = u16::from_be_bytes([head[0], head[1]]);
        let alen = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = body
            .get(at + 4..at + 4 + alen)
            .ok_or(StunError::Truncated)?;
        match atype {
            XOR_MAPPED_ADDRESS => xor = xor.or_else(|| address(value, Some(&id))),
            MAPPED_ADDRESS => plain = plain.or_else(|| address(value, None)),
            ERROR_CODE if value.len() >= 4 => {
                error = Some(u16::from(value[2] & 7) * 100 + u16::from(value[3]))
            }
            FINGERPRINT => {
                let end = HEADER + at;
                let want = crc32(&packet[..end]) ^ FINGERPRINT_XOR;
                let got = value
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| StunError::BadFingerprint)?;
                if want != got {
                    return Err(StunError::BadFingerprint);
                }
            }
            _ => {} // comprehension-optional or unknown: not needed for a Binding
        }
        // Attributes are padded to 4 bytes (§14).
        at += 4 + alen.div_ceil(4) * 4;
    }
    match kind {
        BINDING_SUCCESS => xor.or(plain).map(|a| (id, a)).ok_or(StunError::NoAddress),
        BINDING_ERROR => Err(StunError::ErrorResponse(error.unwrap_or(0))),
        other => Err(StunError::NotBindingResponse(other)),
    }
}

/// A (XOR-)MAPPED-ADDRESS value; `xor_id`: XOR with the cookie (and the transaction ID for
/// IPv6), §14.2.
fn address(value: &[u8], xor_id: Option<&TransactionId>) -> Option<SocketAddr> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut key = [0u8; 16];
    if let Some(id) = xor_id {
        key[..4].copy_from_slice(&cookie);
        key[4..].copy_from_slice(id);
    }
    let port =
        u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ u16::from_be_bytes([key[0], key[1]]);
    let ip = match (value.get(1)?, value.len()) {
        (1, 8) => {
            let mut b = [0u8; 4];
            for (i, x) in b.iter_mut().enumerate() {
                *x = value[4 + i] ^ key[i];
            }
            IpAddr::V4(Ipv4Addr::from(b))
        }
        (2, 20) => {
            let mut b = [0u8; 16];
            for (i, x) in b.iter_mut().enumerate() {
                *x = value[4 + i] ^ key[i];
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// CRC-32 (ISO-HDLC, the one zlib and STUN use), bitwise: STUN messages are tiny.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// One Binding transaction (§6.2.1 over UDP): the request goes out at once and again each
/// time the timeout (RTO, doubling) expires, until a matching response or [`GIVE_UP`].
///
/// Call [`Binding::poll_transmit`] after creating it and after each
/// [`Binding::handle_timeout`]; feed every datagram from the server to
/// [`Binding::handle_datagram`]; [`Binding::outcome`] says when it is over.
pub struct Binding {
    id: TransactionId,
    request: Vec<u8>,
    /// When the next (re)transmission is due; `None` once over.
    next: Option<Instant>,
    rto: Duration,
    deadline: Instant,
    sends: u32,
    outcome: Option<Result<SocketAddr, StunError>>,
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("sends", &self.sends)
            .field("outcome", &self.outcome)
            .finish()
    }
}

impl Binding {
    /// A Binding with transaction ID `id` (random, from the caller), starting `now`.
    pub fn new(now: Instant, id: TransactionId) -> Binding {
        Binding {
            id,
            request: binding_request(&id, true),
            next: Some(now),
            rto: RTO,
            deadline: now + GIVE_UP,
            sends: 0,
            outcome: None,
        }
    }

    /// The request to send now, if one is due.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let due = self.next.filter(|t| *t <= now && self.outcome.is_none())?;
        self.sends += 1;
        let after = due.max(now) + self.rto;
        self.rto = self.rto.saturating_mul(2);
        // The last wait ends at the deadline, not past it.
        self.next = Some(after).filter(|t| *t < self.deadline);
        Some(self.request.clone())
    }

    /// When to call [`Binding::handle_timeout`] next (`None` once over).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        Some(self.next.unwrap_or(self.deadline))
    }

    /// Time passed: past the deadline with no response, the Binding has failed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_none() && self.next.is_none() && now >= self.deadline {
            self.outcome = Some(Err(StunError::TimedOut(GIVE_UP)));
        }
    }

    /// A datagram from the server: `true` if it answered this transaction (success or
    /// error); anything else (other IDs, garbage) is ignored.
    pub fn handle_datagram(&mut self, packet: &[u8]) -> bool {
        if self.outcome.is_some() || !is_stun(packet) || transaction_id(packet) != Some(self.id) {
            return false;
        }
        match parse_binding_response(packet) {
            Ok((_, mapped)) => self.outcome = Some(Ok(mapped)),
            // A response to our ID that we cannot use ends the transaction all the same.
            Err(StunError::NotBindingResponse(_)) => return false,
            Err(e) => self.outcome = Some(Err(e)),
        }
        true
    }

    /// The mapped address, or why there is none; `None` while the transaction runs.
    pub fn outcome(&self) -> Option<&Result<SocketAddr, StunError>> {
        self.outcome.as_ref()
    }

    /// Requests sent so far.
    pub fn sends(&self) -> u32 {
        self.sends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 5769 §2.2 and §2.3: the transaction ID of both sample responses.
    const ID: TransactionId = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    /// RFC 5769 §2.2: sample IPv4 response (SOFTWARE, XOR-MAPPED-ADDRESS 192.0.2.1:32853,
    /// MESSAGE-INTEGRITY, FINGERPRINT).
    fn rfc5769_v4() -> Vec<u8> {
        hex("0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
             8022000b 74657374 20766563 746f7220
             00200008 0001a147 e112a643
             00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
             80280004 c07d4c96")
    }

    /// RFC 5769 §2.3: sample IPv6 response (XOR-MAPPED-ADDRESS
    /// [2001:db8:1234:5678:11:2233:4455:6677]:32853).
    fn rfc5769_v6() -> Vec<u8> {
        hex("01010048 2112a442 b7e7a701 bc34d686 fa87dfae
             8022000b 74657374 20766563 746f7220
             00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
             00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
             80280004 c8fb0b4c")
    }

    #[test]
    fn rfc5769_ipv4_response() {
        let (id, addr) = parse_binding_response(&rfc5769_v4()).unwrap();
        assert_eq!(id, ID);
        assert_eq!(addr, "192.0.2.1:32853".parse().unwrap());
    }

    #[test]
    fn rfc5769_ipv6_response() {
        let (id, addr) = parse_binding_response(&rfc5769_v6()).unwrap();
        assert_eq!(id, ID);
        assert_eq!(
            addr,
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .unwrap()
        );
    }

    #[test]
    fn a_changed_byte_breaks_the_fingerprint() {
        let mut m = rfc5769_v4();
        m[30] ^= 1; // in SOFTWARE: only the fingerprint notices
        assert_eq!(parse_binding_response(&m), Err(StunError::BadFingerprint));
    }

    #[test]
    fn request_encoding() {
        let r = binding_request(&ID, false);
        assert_eq!(r, hex("00010000 2112a442 b7e7a701 bc34d686 fa87dfae"));
        let f = binding_request(&ID, true);
        assert_eq!(&f[..2], &[0, 1]);
        assert_eq!(
            u16::from_be_bytes([f[2], f[3]]),
            8,
            "length counts FINGERPRINT"
        );
        assert_eq!(&f[20..24], &[0x80, 0x28, 0, 4]);
        // The check value over the first 20 bytes, as zlib computes it.
        let want = crc32(&f[..20]) ^ FINGERPRINT_XOR;
        assert_eq!(&f[24..], &want.to_be_bytes());
        assert!(is_stun(&f) && transaction_id(&f) == Some(ID));
        // The CRC itself: the well-known check value of "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn bad_input_is_refused_never_panics() {
        let v4 = rfc5769_v4();
        for n in 0..v4.len() {
            assert!(parse_binding_response(&v4[..n]).is_err(), "prefix {n}");
        }
        // RTP (version 2) is never STUN.
        let mut rtp = v4.clone();
        rtp[0] = 0x80;
        assert!(!is_stun(&rtp));
        assert_eq!(parse_binding_response(&rtp), Err(StunError::NotStun));
        // A request is not a response.
        assert_eq!(
            parse_binding_response(&binding_request(&ID, false)),
            Err(StunError::NotBindingResponse(BINDING_REQUEST))
        );
        // An attribute that claims more than the message holds.
        let mut m = hex("01010008 2112a442 b7e7a701 bc34d686 fa87dfae 00200040 0001a147");
        assert_eq!(parse_binding_response(&m), Err(StunError::Truncated));
        m[3] = 0x07; // length not a multiple of 4
        assert_eq!(parse_binding_response(&m), Err(StunError::NotStun));
        // An error response carries its code.
        let e = hex("01110008 2112a442 b7e7a701 bc34d686 fa87dfae 00090004 00000401");
        assert_eq!(
            parse_binding_response(&e),
            Err(StunError::ErrorResponse(401))
        );
    }

    #[test]
    fn binding_retransmits_on_rfc_timers_then_gives_up() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = Binding::new(t0, ID);
        assert!(b.poll_transmit(t0).is_some());
        assert!(b.poll_transmit(t0).is_none(), "one send per timeout");
        assert_eq!(b.poll_timeout(), Some(t0 + ms(500)));
        b.handle_timeout(t0 + ms(500));
        assert!(b.poll_transmit(t0 + ms(500)).is_some());
        // The next would be at 1500 ms (RTO 1 s): the budget ends there instead.
        assert_eq!(b.poll_timeout(), Some(t0 + GIVE_UP));
        b.handle_timeout(t0 + ms(1499));
        assert!(b.outcome().is_none());
        b.handle_timeout(t0 + GIVE_UP);
        assert!(b.poll_transmit(t0 + GIVE_UP).is_none());
        assert_eq!(b.outcome(), Some(&Err(StunError::TimedOut(GIVE_UP))));
        assert_eq!((b.sends(), b.poll_timeout()), (2, None));
    }

    #[test]
    fn binding_takes_its_own_response_only() {
        let t0 = Instant::now();
        let mut b = Binding::new(t0, ID);
        let _ = b.poll_transmit(t0);
        let mut other = rfc5769_v4();
        other[19] ^= 0xff; // another transaction (the fingerprint would fail anyway)
        assert!(!b.handle_datagram(&other));
        assert!(!b.handle_datagram(b"\x80\x00 not stun at all"));
        assert!(b.outcome().is_none());
        assert!(b.handle_datagram(&rfc5769_v4()));
        assert_eq!(b.outcome(), Some(&Ok("192.0.2.1:32853".parse().unwrap())));
        assert_eq!(b.poll_timeout(), None);
        assert!(b.poll_transmit(t0 + GIVE_UP).is_none());
    }
}
