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
            .find(|&after| match &self.buf[after..] {
                [b'\n', ..] => true,
                [b'\r', b'\n', ..] => true,
                _ => false,
            })
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
    // Skip the start line; header names are ASCII, so byte-wise matching is enough.
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            continue; // a folded continuation line, not a header name
        }
        let value = line[colon + 1..].trim_ascii();
        let text = String::from_utf8_lossy(value);
        let n: usize = match std::str::from_utf8(value).ok().and_then(|v| {
            v.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse().ok())
                .flatten()
        }) {
            Some(n) => n,
            None => {
                return Err(FramingError::BadContentLength(
                    text.chars().take(40).collect(),
                ))
            }
        };
        match found {
            Some(prev) if prev != n => {
                return Err(FramingError::BadContentLength(format!("{prev} and {n}")))
            }
            _ => found = Some(n),
        }
    }
    found.ok_or(FramingError::MissingContentLength)
}
