//! TCP stream framing: bytes in, SIP messages and RFC 5626 keep-alives out.
//!
//! A [`Framer`] is a resumable, size-capped decoder for one connection. The driver feeds it every
//! read with [`Framer::push`], then calls [`Framer::poll`] until it returns `None`. Messages are
//! cut at their Content-Length, which is mandatory on streams (RFC 3261 §18.3); the end of the
//! head is the first empty line, with CRLF or LF-only line endings.
//!
//! Keep-alives (RFC 5626 §3.5.1) at a message boundary: `CRLFCRLF` is a [`Frame::Ping`] (answer
//! with `CRLF`), a lone `CRLF` is a [`Frame::Pong`]. A lone `CRLF` at the end of the buffer is
//! reported as a pong at once rather than waiting to see whether a second one follows: a peer's
//! ping arrives in one segment in practice, and waiting would delay every pong until the next
//! read. A single stray LF at a boundary is skipped.
//!
//! Every [`FramingError`] means the byte stream is out of sync: the framer drops what it buffered,
//! ignores further input, and the caller should close the flow.

use std::time::{Duration, Instant};

/// Limits that keep one connection's buffer bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramerLimits {
    /// The largest message (head + body) accepted, in bytes.
    pub max_message: usize,
    /// How long a partial message may wait for more bytes before it is dropped.
    pub stall_timeout: Duration,
}

impl Default for FramerLimits {
    /// 64 KiB messages, 30 s stall timeout.
    fn default() -> Self {
        FramerLimits {
            max_message: 64 * 1024,
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// One unit cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Exactly one SIP message's bytes, head and body, ready for `Message::parse`.
    Message(Vec<u8>),
    /// A `CRLFCRLF` keep-alive ping: the caller answers with `CRLF`.
    Ping,
    /// A lone `CRLF`: the pong to our ping.
    Pong,
}

/// Why the stream cannot be framed any further (the caller closes the flow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The message (head, or head + declared body) exceeds the limit.
    #[error("message of at least {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Bytes seen or declared so far.
        size: usize,
        /// The configured [`FramerLimits::max_message`].
        limit: usize,
    },
    /// The head has no Content-Length, which is mandatory on streams.
    #[error("message on a stream has no Content-Length")]
    MissingContentLength,
    /// The Content-Length is not a number, or two of them disagree.
    #[error("bad Content-Length: {0:?}")]
    BadContentLength(String),
    /// A partial message made no progress for the stall timeout.
    #[error("partial message stalled")]
    Stalled,
}

/// A resumable decoder from a TCP byte stream to [`Frame`]s. Sans-IO: time is passed in.
#[derive(Debug)]
pub struct Framer {
    limits: FramerLimits,
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for the end of the head.
    scanned: usize,
    /// Total length (head + body) of the message at the front, once its head is known.
    expected: Option<usize>,
    /// When bytes last arrived.
    last_progress: Option<Instant>,
    /// An error detected while pushing, reported by the next poll.
    pending: Option<FramingError>,
    /// Set after any error: input is ignored from then on.
    failed: bool,
}

impl Framer {
    /// A framer with empty buffers.
    pub fn new(limits: FramerLimits) -> Self {
        Framer {
            limits,
            buf: Vec::new(),
            scanned: 0,
            expected: None,
            last_progress: None,
            pending: None,
            failed: false,
        }
    }

    /// Appends bytes read from the socket. Call [`Framer::poll`] until it returns `None` after
    /// each push. The buffer never grows past `max_message` plus one read: if the caller pushes
    /// while more than `max_message` bytes are already buffered, the bytes are refused and the
    /// next poll reports [`FramingError::TooLarge`].
    pub fn push(&mut self, bytes: &[u8], now: Instant) {
        if self.failed || self.pending.is_some() || bytes.is_empty() {
            return;
        }
        if self.buf.len() > self.limits.max_message {
            self.pending = Some(FramingError::TooLarge {
                size: self.buf.len() + bytes.len(),
                limit: self.limits.max_message,
            });
            return;
        }
        self.buf.extend_from_slice(bytes);
        self.last_progress = Some(now);
    }

    /// The next complete frame, if any. After an error, always `None`.
    #[must_use]
    pub fn poll(&mut self) -> Option<Result<Frame, FramingError>> {
        if self.failed {
            return None;
        }
        if let Some(frame) = self.next_frame() {
            return Some(Ok(frame));
        }
        if let Some(err) = self.pending.take() {
            return Some(Err(self.fail(err)));
        }
        match self.find_message() {
            Ok(()) => self.next_frame().map(Ok),
            Err(err) => Some(Err(self.fail(err))),
        }
    }

    /// When a buffered partial message will be declared stalled; `None` when nothing is buffered.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        self.last_progress.map(|t| t + self.limits.stall_timeout)
    }

    /// Call at (or after) [`Framer::poll_timeout`]: drops a stalled partial message and returns
    /// [`FramingError::Stalled`]; `None` if it is not yet due.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<FramingError> {
        let due = self.poll_timeout()?;
        (now >= due).then(|| self.fail(FramingError::Stalled))
    }

    /// Bytes currently buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// True once an error was reported: the stream is out of sync and the flow should close.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    fn fail(&mut self, err: FramingError) -> FramingError {
        self.failed = true;
        self.buf = Vec::new();
        self.expected = None;
        self.scanned = 0;
        self.pending = None;
        err
    }

    /// Takes a keep-alive or the complete message at the front of the buffer, if there is one.
    fn next_frame(&mut self) -> Option<Frame> {
        if let Some(total) = self.expected {
            if self.buf.len() < total {
                return None;
            }
            let rest = self.buf.split_off(total);
            let frame = std::mem::replace(&mut self.buf, rest);
            self.expected = None;
            self.scanned = 0;
            return Some(Frame::Message(frame));
        }
        if self.scanned != 0 {
            return None;
        }
        loop {
            match self.buf.as_slice() {
                [b'\r', b'\n', b'\r', b'\n', ..] => {
                    self.buf.drain(..4);
                    return Some(Frame::Ping);
                }
                [b'\r', b'\n', b'\r'] => return None,
                [b'\r', b'\n', ..] => {
                    self.buf.drain(..2);
                    return Some(Frame::Pong);
                }
                [b'\n', ..] => {
                    self.buf.drain(..1);
                }
                _ => return None,
            }
        }
    }

    /// Looks for the end of the head at the front of the buffer and, once found, reads its
    /// Content-Length into `expected`.
    fn find_message(&mut self) -> Result<(), FramingError> {
        if self.expected.is_some() || self.buf.is_empty() || self.buf.starts_with(b"\r") {
            // A lone `\r` or `\r\n\r` at a boundary waits for the rest of a keep-alive.
            return self.check_head_size();
        }
        let from = self.scanned.saturating_sub(2);
        let head_end = memchr::memchr_iter(b'\n', &self.buf[from..])
            .map(|i| from + i + 1)
            .find(|&after| matches!(&self.buf[after..], [b'\n', ..] | [b'\r', b'\n', ..]))
            .map(|after| after + if self.buf[after] == b'\n' { 1 } else { 2 });
        let Some(head_end) = head_end else {
            // Keep the last bytes unscanned: the blank line may be split across reads.
            self.scanned = self.buf.len().max(1);
            return self.check_head_size();
        };
        if head_end > self.limits.max_message {
            return Err(self.too_large(head_end));
        }
        let length = content_length(&self.buf[..head_end])?;
        let total = head_end
            .checked_add(length)
            .filter(|&t| t <= self.limits.max_message)
            .ok_or_else(|| self.too_large(head_end.saturating_add(length)))?;
        self.expected = Some(total);
        Ok(())
    }

    fn check_head_size(&self) -> Result<(), FramingError> {
        if self.expected.is_none() && self.buf.len() > self.limits.max_message {
            Err(self.too_large(self.buf.len()))
        } else {
            Ok(())
        }
    }

    fn too_large(&self, size: usize) -> FramingError {
        FramingError::TooLarge {
            size,
            limit: self.limits.max_message,
        }
    }
}

/// The Content-Length (or compact `l`) of a head; every occurrence must agree.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    // Only lines starting with `c`/`l` can hold it; header names are ASCII. The start line is
    // skipped (the first `\n` starts the first header line); a folded line starts with SP/HTAB.
    for nl in memchr::memchr_iter(b'\n', head) {
        let line = &head[nl + 1..];
        if !matches!(line.first(), Some(b'c' | b'C' | b'l' | b'L')) {
            continue;
        }
        let line = &line[..memchr::memchr(b'\n', line).unwrap_or(line.len())];
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        let n = (!value.is_empty() && value.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(value).ok()?.parse::<usize>().ok())
            .flatten()
            .ok_or_else(|| {
                FramingError::BadContentLength(
                    String::from_utf8_lossy(value).chars().take(40).collect(),
                )
            })?;
        match found {
            Some(prev) if prev != n => {
                return Err(FramingError::BadContentLength(format!("{prev} and {n}")))
            }
            _ => found = Some(n),
        }
    }
    found.ok_or(FramingError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WITH_BODY: &[u8] =
        b"MESSAGE sip:b@x SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 11\r\n\r\nhello\r\n\r\nyo";
    const COMPACT: &[u8] = b"OPTIONS sip:b@x SIP/2.0\r\ni: 2\r\nl: 3\r\n\r\nabc";
    const NO_BODY: &[u8] = b"SIP/2.0 200 OK\nCall-ID: 3\nContent-Length: 0\n\n";

    /// The virtual clock's origin: the only real clock read, as a base for offsets.
    fn t0() -> Instant {
        Instant::now()
    }

    fn limits() -> FramerLimits {
        FramerLimits::default()
    }

    fn stream() -> Vec<u8> {
        [WITH_BODY, COMPACT, NO_BODY].concat()
    }

    fn expected() -> Vec<Frame> {
        vec![
            Frame::Message(WITH_BODY.to_vec()),
            Frame::Message(COMPACT.to_vec()),
            Frame::Message(NO_BODY.to_vec()),
        ]
    }

    fn drain(framer: &mut Framer, out: &mut Vec<Frame>) {
        while let Some(frame) = framer.poll() {
            out.push(frame.unwrap());
        }
    }

    #[test]
    fn back_to_back_in_one_push() {
        let now = t0();
        let mut framer = Framer::new(limits());
        framer.push(&stream(), now);
        let mut frames = Vec::new();
        drain(&mut framer, &mut frames);
        assert_eq!(frames, expected());
        assert_eq!(framer.buffered(), 0);
        assert_eq!(framer.poll_timeout(), None);
    }

    #[test]
    fn split_at_every_offset() {
        let now = t0();
        let bytes = stream();
        for cut in 0..=bytes.len() {
            let mut framer = Framer::new(limits());
            let mut frames = Vec::new();
            framer.push(&bytes[..cut], now);
            drain(&mut framer, &mut frames);
            framer.push(&bytes[cut..], now);
            drain(&mut framer, &mut frames);
            assert_eq!(frames, expected(), "cut at {cut}");
            assert_eq!(framer.buffered(), 0);
        }
    }

    #[test]
    fn one_byte_pushes() {
        let now = t0();
        let mut framer = Framer::new(limits());
        let mut frames = Vec::new();
        for b in stream() {
            framer.push(&[b], now);
            drain(&mut framer, &mut frames);
        }
        assert_eq!(frames, expected());
    }

    #[test]
    fn frames_parse_as_messages() {
        let mut framer = Framer::new(limits());
        framer.push(&stream(), t0());
        let mut frames = Vec::new();
        drain(&mut framer, &mut frames);
        for frame in frames {
            let Frame::Message(bytes) = frame else {
                panic!("not a message")
            };
            assert!(crate::signaling::message::Message::parse(&bytes).is_ok());
        }
    }

    #[test]
    fn ping_and_pong_between_messages() {
        let now = t0();
        let mut framer = Framer::new(limits());
        let bytes = [b"\r\n\r\n", WITH_BODY, b"\r\n", COMPACT, b"\r\n\r\n\r\n"].concat();
        framer.push(&bytes, now);
        let mut frames = Vec::new();
        drain(&mut framer, &mut frames);
        assert_eq!(
            frames,
            [
                Frame::Ping,
                Frame::Message(WITH_BODY.to_vec()),
                Frame::Pong,
                Frame::Message(COMPACT.to_vec()),
                Frame::Ping,
                Frame::Pong,
            ]
        );
    }

    #[test]
    fn lone_crlf_at_end_is_a_pong_at_once() {
        let now = t0();
        let mut framer = Framer::new(limits());
        framer.push(b"\r\n", now);
        assert_eq!(framer.poll(), Some(Ok(Frame::Pong)));
        assert_eq!(framer.poll(), None);
        // `\r\n\r` waits: it may be the start of a ping.
        framer.push(b"\r\n\r", now);
        assert_eq!(framer.poll(), None);
        framer.push(b"\n", now);
        assert_eq!(framer.poll(), Some(Ok(Frame::Ping)));
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn ping_split_in_half_reads_as_two_pongs() {
        // The documented trade-off of reporting a lone CRLF at once.
        let now = t0();
        let mut framer = Framer::new(limits());
        framer.push(b"\r\n", now);
        assert_eq!(framer.poll(), Some(Ok(Frame::Pong)));
        framer.push(b"\r\n", now);
        assert_eq!(framer.poll(), Some(Ok(Frame::Pong)));
        assert_eq!(framer.poll(), None);
    }

    #[test]
    fn missing_content_length() {
        let mut framer = Framer::new(limits());
        framer.push(b"OPTIONS sip:b@x SIP/2.0\r\nCall-ID: 1\r\n\r\n", t0());
        assert_eq!(framer.poll(), Some(Err(FramingError::MissingContentLength)));
        assert!(framer.is_failed());
        assert_eq!(framer.buffered(), 0);
        framer.push(COMPACT, t0());
        assert_eq!(framer.poll(), None);
    }

    #[test]
    fn bad_content_length() {
        for head in [
            "OPTIONS sip:b@x SIP/2.0\r\nContent-Length: -1\r\n\r\n",
            "OPTIONS sip:b@x SIP/2.0\r\nContent-Length: 1x\r\n\r\n",
            "OPTIONS sip:b@x SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "OPTIONS sip:b@x SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n",
        ] {
            let mut framer = Framer::new(limits());
            framer.push(head.as_bytes(), t0());
            assert!(
                matches!(framer.poll(), Some(Err(FramingError::BadContentLength(_)))),
                "{head:?}"
            );
        }
    }

    #[test]
    fn oversized_header_is_refused_without_buffering_it() {
        let limits = FramerLimits {
            max_message: 1024,
            ..limits()
        };
        let mut framer = Framer::new(limits);
        let now = t0();
        framer.push(b"OPTIONS sip:b@x SIP/2.0\r\nX-Junk: ", now);
        let chunk = [b'a'; 300];
        let mut result = None;
        for _ in 0..100 {
            framer.push(&chunk, now);
            assert!(framer.buffered() <= 1024 + chunk.len());
            if let Some(r) = framer.poll() {
                result = Some(r);
                break;
            }
        }
        assert!(matches!(
            result,
            Some(Err(FramingError::TooLarge { limit: 1024, .. }))
        ));
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn oversized_content_length_is_refused_at_once() {
        let mut framer = Framer::new(limits());
        framer.push(
            b"MESSAGE sip:b@x SIP/2.0\r\nContent-Length: 65536\r\n\r\nxx",
            t0(),
        );
        assert!(matches!(
            framer.poll(),
            Some(Err(FramingError::TooLarge { limit: 65536, .. }))
        ));
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn pushing_without_polling_is_bounded() {
        let limits = FramerLimits {
            max_message: 100,
            ..limits()
        };
        let mut framer = Framer::new(limits);
        for _ in 0..10 {
            framer.push(&[b'x'; 60], t0());
        }
        assert!(framer.buffered() <= 160);
        assert!(matches!(
            framer.poll(),
            Some(Err(FramingError::TooLarge { .. }))
        ));
    }

    #[test]
    fn stall_timeout_with_virtual_clock() {
        let t0 = t0();
        let stall = Duration::from_secs(30);
        let mut framer = Framer::new(limits());
        assert_eq!(framer.poll_timeout(), None);
        framer.push(&WITH_BODY[..20], t0);
        assert_eq!(framer.poll(), None);
        assert_eq!(framer.poll_timeout(), Some(t0 + stall));
        // Progress moves the deadline.
        let t1 = t0 + Duration::from_secs(20);
        framer.push(&WITH_BODY[20..40], t1);
        assert_eq!(framer.poll(), None);
        assert_eq!(framer.poll_timeout(), Some(t1 + stall));
        assert_eq!(framer.handle_timeout(t0 + stall), None);
        assert_eq!(framer.buffered(), 40);
        assert_eq!(
            framer.handle_timeout(t1 + stall),
            Some(FramingError::Stalled)
        );
        assert_eq!(framer.buffered(), 0);
        assert_eq!(framer.poll_timeout(), None);
        assert_eq!(framer.poll(), None);
    }

    #[test]
    fn complete_messages_have_no_timeout() {
        let t0 = t0();
        let mut framer = Framer::new(limits());
        framer.push(COMPACT, t0);
        assert!(matches!(framer.poll(), Some(Ok(Frame::Message(_)))));
        assert_eq!(framer.poll_timeout(), None);
        assert_eq!(framer.handle_timeout(t0 + Duration::from_secs(3600)), None);
    }

    proptest! {
        #[test]
        fn random_chunks_never_panic_and_stay_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)
        ) {
            let limits = FramerLimits { max_message: 512, ..FramerLimits::default() };
            let mut framer = Framer::new(limits);
            let now = t0();
            for chunk in chunks {
                framer.push(&chunk, now);
                prop_assert!(framer.buffered() <= 512 + chunk.len());
                while let Some(frame) = framer.poll() {
                    if let Ok(Frame::Message(m)) = frame {
                        prop_assert!(m.len() <= 512);
                    }
                }
            }
        }

        #[test]
        fn random_split_points_give_the_same_frames(cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
            let bytes = [b"\r\n\r\n".as_slice(), WITH_BODY, COMPACT, b"\r\n", NO_BODY].concat();
            // A ping cut in the middle (after its first CRLF) reads as two pongs, by design: see
            // `ping_split_in_half_reads_as_two_pongs`.
            let mut points: Vec<usize> =
                cuts.iter().map(|c| c.index(bytes.len())).filter(|&p| p != 2).collect();
            points.sort_unstable();
            let mut framer = Framer::new(FramerLimits::default());
            let mut frames = Vec::new();
            let mut from = 0;
            for p in points.into_iter().chain([bytes.len()]) {
                framer.push(&bytes[from..p], t0());
                from = p;
                drain(&mut framer, &mut frames);
            }
            let mut want = vec![Frame::Ping];
            want.extend([Frame::Message(WITH_BODY.to_vec()), Frame::Message(COMPACT.to_vec()), Frame::Pong, Frame::Message(NO_BODY.to_vec())]);
            prop_assert_eq!(frames, want);
        }
    }
}
