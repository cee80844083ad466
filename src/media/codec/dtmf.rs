//! RFC 4733 telephone events (DTMF digits) carried in RTP.
//!
//! Payload (§2.3): `event` (8 bits), `E` end bit, `R` reserved, `volume` (6 bits, −dBm0),
//! `duration` (16 bits, in RTP timestamp units). All packets of one event share the RTP
//! timestamp of the event's start; the first has the marker bit; the duration grows with each
//! packet; the final duration is sent three times with the end bit (§2.5.1.4).
//!
//! [`DtmfSender`] and [`DtmfReceiver`] are sans-IO: the RTP session asks the sender for the
//! next packet once per packet interval and gives the receiver every telephone-event payload.

use std::collections::VecDeque;

/// The digits (events 0–15 of RFC 4733 §3.2) in event-code order.
const DIGITS: &[u8; 16] = b"0123456789*#ABCD";

/// Times the final packet is sent with the end bit set.
pub const END_REPEATS: u8 = 3;

/// A telephone-event payload could not be built or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DtmfError {
    /// The payload is shorter than 4 bytes.
    #[error("telephone-event payload shorter than 4 bytes")]
    Short,
    /// The character is not a DTMF digit.
    #[error("not a DTMF digit: {0:?}")]
    NotADigit(char),
}

/// The event code of a digit (`'0'`–`'9'`, `'*'`, `'#'`, `'A'`–`'D'`, lower case accepted).
pub fn event_of(digit: char) -> Option<u8> {
    let d = digit.to_ascii_uppercase();
    DIGITS.iter().position(|&c| c as char == d).map(|i| i as u8)
}

/// The digit of an event code, for the 16 DTMF events.
pub fn digit_of(event: u8) -> Option<char> {
    DIGITS.get(event as usize).map(|&c| c as char)
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0–15 are the DTMF digits).
    pub event: u8,
    /// `E`: this is (a retransmission of) the event's last packet.
    pub end: bool,
    /// Power level as −dBm0, 0..=63.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// The 4-byte payload.
    pub fn encode(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            ((self.end as u8) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }

    /// Reads a payload (extra bytes, e.g. redundancy, are ignored).
    pub fn decode(payload: &[u8]) -> Result<Self, DtmfError> {
        let [event, flags, d0, d1, ..] = *payload else {
            return Err(DtmfError::Short);
        };
        Ok(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }
}

/// A telephone-event RTP packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The payload.
    pub payload: [u8; 4],
    /// The RTP timestamp: the event's start, the same for all its packets.
    pub timestamp: u32,
    /// The RTP marker bit: set on the first packet of an event.
    pub marker: bool,
}

#[derive(Debug, Clone, Copy)]
struct Active {
    event: u8,
    start_ts: u32,
    duration: u32,
    total: u32,
    ends_left: u8,
    first: bool,
}

/// Turns queued digits into telephone-event packets, one per packet interval.
#[derive(Debug)]
pub struct DtmfSender {
    step: u32,
    tone_ts: u32,
    gap_ticks: u32,
    volume: u8,
    queue: VecDeque<u8>,
    active: Option<Active>,
    idle: u32,
}

impl DtmfSender {
    /// A sender for an RTP clock of `clock_rate` Hz that is polled every `ptime_ms`
    /// milliseconds; each digit lasts `tone_ms` and digits are `gap_ms` apart.
    pub fn new(clock_rate: u32, ptime_ms: u32, tone_ms: u32, gap_ms: u32) -> Self {
        let ptime_ms = ptime_ms.max(1);
        let step = clock_rate / 1000 * ptime_ms;
        Self {
            step,
            // The 16-bit duration field caps one packet series (§2.5.1.3 would split longer ones).
            tone_ts: (clock_rate / 1000 * tone_ms).max(step).min(u16::MAX as u32),
            gap_ticks: gap_ms.div_ceil(ptime_ms),
            volume: 10,
            queue: VecDeque::with_capacity(32),
            active: None,
            idle: 0,
        }
    }

    /// Queues digits to send (`0-9 * # A-D`); nothing is queued if any is invalid.
    pub fn queue(&mut self, digits: &str) -> Result<(), DtmfError> {
        let start = self.queue.len();
        for c in digits.chars() {
            match event_of(c) {
                Some(e) => self.queue.push_back(e),
                None => {
                    self.queue.truncate(start);
                    return Err(DtmfError::NotADigit(c));
                }
            }
        }
        Ok(())
    }

    /// Whether an event is being sent or digits are waiting.
    pub fn is_busy(&self) -> bool {
        self.active.is_some() || !self.queue.is_empty()
    }

    /// Call once per packet interval; `rtp_ts` is the RTP timestamp the audio stream would use
    /// now. Returns the packet to send instead of audio, if any; while this returns packets,
    /// the session should not send audio.
    #[must_use]
    pub fn poll_packet(&mut self, rtp_ts: u32) -> Option<DtmfPacket> {
        if self.active.is_none() {
            if self.idle > 0 {
                self.idle -= 1;
                return None;
            }
            let event = self.queue.pop_front()?;
            self.active = Some(Active {
                event,
                start_ts: rtp_ts,
                duration: 0,
                total: self.tone_ts,
                ends_left: END_REPEATS,
                first: true,
            });
        }
        let a = self.active.as_mut()?;
        if a.duration < a.total {
            a.duration = (a.duration + self.step).min(a.total);
        }
        let end = a.duration >= a.total;
        if end {
            a.ends_left = a.ends_left.saturating_sub(1);
        }
        let pkt = DtmfPacket {
            payload: TelephoneEvent {
                event: a.event,
                end,
                volume: self.volume,
                duration: a.duration as u16,
            }
            .encode(),
            timestamp: a.start_ts,
            marker: a.first,
        };
        a.first = false;
        if end && a.ends_left == 0 {
            self.active = None;
            self.idle = self.gap_ticks;
        }
        Some(pkt)
    }
}

/// Reports each received digit once, however many packets carry it.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    last_ts: Option<u32>,
}

impl DtmfReceiver {
    /// A receiver that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one telephone-event payload with its RTP timestamp. Returns the digit the
    /// first time an event (identified by its timestamp) is seen; retransmissions, growing
    /// durations and end packets of the same event return `None`, as do non-DTMF events.
    pub fn handle_payload(
        &mut self,
        payload: &[u8],
        rtp_ts: u32,
    ) -> Result<Option<char>, DtmfError> {
        let ev = TelephoneEvent::decode(payload)?;
        if self.last_ts == Some(rtp_ts) {
            return Ok(None);
        }
        let Some(digit) = digit_of(ev.event) else {
            return Ok(None);
        };
        self.last_ts = Some(rtp_ts);
        Ok(Some(digit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let ev = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 1600,
        };
        let bytes = ev.encode();
        assert_eq!(bytes, [11, 0x8A, 0x06, 0x40]);
        assert_eq!(TelephoneEvent::decode(&bytes).unwrap(), ev);
        let ev = TelephoneEvent {
            event: 5,
            end: false,
            volume: 63,
            duration: 65535,
        };
        assert_eq!(TelephoneEvent::decode(&ev.encode()).unwrap(), ev);
        // The reserved bit is ignored.
        assert!(!TelephoneEvent::decode(&[5, 0x40, 0, 1]).unwrap().end);
        assert_eq!(TelephoneEvent::decode(&[1, 2, 3]), Err(DtmfError::Short));
    }

    #[test]
    fn digit_codes() {
        for (i, c) in "0123456789*#ABCD".chars().enumerate() {
            assert_eq!(event_of(c), Some(i as u8));
            assert_eq!(digit_of(i as u8), Some(c));
        }
        assert_eq!(event_of('a'), Some(12));
        assert_eq!(event_of('x'), None);
        assert_eq!(digit_of(16), None);
    }

    #[test]
    fn sender_packet_sequence() {
        // 8 kHz, 20 ms packets, 100 ms tone, 40 ms gap.
        let mut s = DtmfSender::new(8000, 20, 100, 40);
        assert!(s.queue("1x").is_err());
        assert!(!s.is_busy());
        s.queue("5").unwrap();
        let pkts: Vec<_> = (0..20)
            .map_while(|i| s.poll_packet(1000 + 160 * i))
            .collect();
        assert_eq!(
            pkts.len(),
            5 + 2,
            "five growing packets, the last with E, then two repeats"
        );
        let evs: Vec<_> = pkts
            .iter()
            .map(|p| TelephoneEvent::decode(&p.payload).unwrap())
            .collect();
        let durations: Vec<_> = evs.iter().map(|e| e.duration).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
        let ends = evs.iter().filter(|e| e.end).count();
        assert_eq!(ends, END_REPEATS as usize);
        assert!(evs[..4].iter().all(|e| !e.end && e.event == 5));
        assert!(pkts.iter().all(|p| p.timestamp == 1000));
        assert!(pkts[0].marker && pkts[1..].iter().all(|p| !p.marker));
        assert!(!s.is_busy());
    }

    #[test]
    fn round_trip_reports_each_digit_once() {
        let mut s = DtmfSender::new(48_000, 20, 80, 40);
        let mut r = DtmfReceiver::new();
        s.queue("123#*A5").unwrap();
        let mut got = String::new();
        let mut ts = 0u32;
        for _ in 0..200 {
            if let Some(p) = s.poll_packet(ts) {
                // Every packet is delivered twice (duplication on the path).
                for _ in 0..2 {
                    if let Some(d) = r.handle_payload(&p.payload, p.timestamp).unwrap() {
                        got.push(d);
                    }
                }
            }
            ts = ts.wrapping_add(960);
        }
        assert_eq!(got, "123#*A5");
    }

    #[test]
    fn receiver_survives_lost_first_packets_and_repeats() {
        let mut r = DtmfReceiver::new();
        let late = TelephoneEvent {
            event: 9,
            end: true,
            volume: 10,
            duration: 800,
        }
        .encode();
        assert_eq!(r.handle_payload(&late, 500).unwrap(), Some('9'));
        assert_eq!(r.handle_payload(&late, 500).unwrap(), None);
        // The same digit again is a new event with a new timestamp.
        assert_eq!(r.handle_payload(&late, 2000).unwrap(), Some('9'));
        // Non-DTMF events (e.g. 32, modem tones) are not digits.
        let other = TelephoneEvent {
            event: 32,
            end: false,
            volume: 10,
            duration: 160,
        }
        .encode();
        assert_eq!(r.handle_payload(&other, 3000).unwrap(), None);
        assert!(r.handle_payload(&[1], 4000).is_err());
    }
}
