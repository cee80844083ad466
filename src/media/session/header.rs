//! The fixed RTP header (RFC 3550 §5.1), CSRC list and header extension (§5.3.1), and padding,
//! read without trusting any length in the packet.
//!
//! We parse receive-side headers ourselves: `rtp` 0.17's `Header::unmarshal` panics ("advance
//! out of bounds") on a one-byte-header extension element (RFC 8285) whose length runs past the
//! extension, which a single datagram from anyone can trigger. We need none of the extension's
//! contents, only where the payload starts.

use std::ops::Range;

/// The fixed header's size.
const FIXED: usize = 12;

/// What the receive path needs from an RTP header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Where the payload lies in the packet (after CSRCs and extension, before padding).
    pub payload: Range<usize>,
}

/// Reads the header of an RTP packet; `None` when it is not version 2 or any length in it
/// (CSRC count, extension length, padding count) does not fit the packet.
pub(crate) fn parse(b: &[u8]) -> Option<RtpHeader> {
    if b.len() < FIXED || b[0] >> 6 != 2 {
        return None;
    }
    let padding = b[0] & 0x20 != 0;
    let extension = b[0] & 0x10 != 0;
    let csrc = usize::from(b[0] & 0x0f);
    let mut start = FIXED + 4 * csrc;
    if extension {
        let words = b.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let mut end = b.len();
    if start > end {
        return None;
    }
    if padding {
        let pad = usize::from(b[end - 1]);
        if pad == 0 || pad > end - start {
            return None;
        }
        end -= pad;
    }
    Some(RtpHeader {
        marker: b[1] & 0x80 != 0,
        payload_type: b[1] & 0x7f,
        seq: u16::from_be_bytes([b[2], b[3]]),
        timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload: start..end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::rtp::header::{Extension, Header};
    use proptest::prelude::*;
    use webrtc_util::marshal::{Marshal, MarshalSize};

    fn packet(h: &Header, payload: &[u8], pad: u8) -> Vec<u8> {
        let mut b = vec![0; h.marshal_size()];
        h.marshal_to(&mut b).unwrap();
        b.extend_from_slice(payload);
        if pad > 0 {
            b[0] |= 0x20;
            b.extend(std::iter::repeat_n(0, usize::from(pad) - 1));
            b.push(pad);
        }
        b
    }

    #[test]
    fn reads_what_the_rtp_crate_writes() {
        let h = Header {
            version: 2,
            marker: true,
            payload_type: 111,
            sequence_number: 65535,
            timestamp: 0xdead_beef,
            ssrc: 0x1122_3344,
            csrc: vec![1, 2],
            extension: true,
            extension_profile: 0x1000,
            extensions: vec![Extension {
                id: 1,
                payload: bytes::Bytes::from_static(&[9, 9, 9]),
            }],
            ..Header::default()
        };
        let b = packet(&h, b"payload", 3);
        let r = parse(&b).unwrap();
        assert!(r.marker);
        assert_eq!(
            (r.payload_type, r.seq, r.timestamp, r.ssrc),
            (111, 65535, 0xdead_beef, 0x1122_3344)
        );
        assert_eq!(&b[r.payload], b"payload");
    }

    #[test]
    fn lengths_that_lie_are_refused() {
        let ok = [0x80, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        assert!(parse(&ok).is_some());
        assert!(parse(&ok[..11]).is_none(), "short");
        let mut v1 = ok;
        v1[0] = 0x40;
        assert!(parse(&v1).is_none(), "version 1");
        let mut cc = ok;
        cc[0] |= 0x01;
        assert!(parse(&cc).is_none(), "a CSRC that is not there");
        let mut x = ok.to_vec();
        x[0] |= 0x10;
        assert!(parse(&x).is_none(), "an extension header that is not there");
        x.extend_from_slice(&[0xbe, 0xde, 0, 2, 0, 0, 0, 0]);
        assert!(parse(&x).is_none(), "2 words declared, 1 present");
        let mut p = ok.to_vec();
        p.extend_from_slice(&[1, 2, 3]);
        p[0] |= 0x20;
        let r = parse(&p).expect("3 bytes of padding, all of the payload");
        assert!(r.payload.is_empty());
        p.push(5);
        assert!(parse(&p).is_none(), "padding longer than the payload");
        *p.last_mut().unwrap() = 0;
        assert!(parse(&p).is_none(), "padding count 0");
    }

    #[test]
    fn regression_one_byte_extension_element_past_the_end() {
        // Found by tests/fuzz.rs: this packet makes `rtp` 0.17 panic in `Header::unmarshal`.
        let crash = [
            0x93, 0x6f, 0, 2, 0, 0, 7, 0x80, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0,
            0, 3, 0xbe, 0xde, 0, 1, 0xbe, 0x10, 0xaa, 0, 0, 1, 2,
        ];
        let r = parse(&crash).unwrap();
        assert_eq!(&crash[r.payload], &[0, 1, 2]);
    }

    proptest! {
        #[test]
        fn never_panics_and_payload_is_inside(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(r) = parse(&b) {
                prop_assert!(r.payload.start >= FIXED && r.payload.end <= b.len());
                prop_assert!(r.payload.start <= r.payload.end);
            }
        }
    }
}
