//! Parsing of a whole message: the head is split at the empty line, the start line and the
//! header section are read by us, byte by byte.
//!
//! The header section is read line by line (memchr): folded lines are joined, LF-only and mixed
//! line endings accepted, whitespace before the colon dropped, compact names expanded, values
//! trimmed; each field becomes one [`Header`] whose value is the only copy made. Finally a
//! present Content-Length is checked against the body. The typed header values (URIs,
//! name-addr, Via, CSeq) are parsed on demand by [`super::values`].
//!
//! rsip is no longer on this path: its header tokenizer split the same canonical lines our
//! normaliser had already found, at the price of a second buffer and a nom parser per field.

use super::values::parse_uri;
use super::{Header, HeaderName, Headers, Message, Method, Request, Response, Uri, UriError};

/// Why a message (or a header value) did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The start line is not a SIP request or status line.
    #[error("bad start line: {0}")]
    StartLine(String),
    /// The SIP version is not SIP/2.0.
    #[error("unsupported SIP version {0:?}")]
    Version(String),
    /// A header line has no colon or an empty name.
    #[error("bad header line: {0}")]
    HeaderLine(String),
    /// A header value did not parse (the name says which).
    #[error("bad {header} value: {why}")]
    HeaderValue {
        /// The header's canonical name.
        header: &'static str,
        /// What was wrong.
        why: String,
    },
    /// The Request-URI (or another URI) did not parse.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// Content-Length does not match the body.
    #[error("Content-Length {declared} but body has {actual} bytes")]
    ContentLength {
        /// Declared length.
        declared: usize,
        /// Actual body length.
        actual: usize,
    },
    /// The message is not valid UTF-8 in its start line or headers.
    #[error("message head is not UTF-8")]
    NotUtf8,
    /// rsip refused the normalised header section (no longer produced: the header section is
    /// split by us; kept so code matching on it still compiles).
    #[error("header section rejected: {0}")]
    Rsip(String),
}

/// At most this many characters of offending input are copied into an error.
const ERROR_SNIPPET: usize = 120;

pub(super) fn snippet(text: &str) -> String {
    match text.char_indices().nth(ERROR_SNIPPET) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// RFC 3261 `token` characters, as a table.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    table
};

/// An RFC 3261 `token` character.
fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// The characters `str::trim` removes that are ASCII (`char::is_whitespace` below 0x80).
fn is_ascii_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `str::trim_start`, with a byte loop for the ASCII whitespace that is all we ever see.
pub(super) fn trim_start(s: &str) -> &str {
    if s.as_bytes()
        .first()
        .is_some_and(|b| (0x21..0x80).contains(b))
    {
        return s;
    }
    let i = s.bytes().take_while(|&b| is_ascii_ws(b)).count();
    // `i` counts ASCII bytes, so it is a char boundary.
    let rest = s.get(i..).unwrap_or_default();
    match rest.as_bytes().first() {
        Some(&b) if b >= 0x80 => rest.trim_start(),
        _ => rest,
    }
}

/// `str::trim_end`, with a byte loop for the ASCII whitespace that is all we ever see.
pub(super) fn trim_end(s: &str) -> &str {
    if s.as_bytes()
        .last()
        .is_some_and(|b| (0x21..0x80).contains(b))
    {
        return s;
    }
    let i = s.bytes().rev().take_while(|&b| is_ascii_ws(b)).count();
    let rest = s.get(..s.len() - i).unwrap_or_default();
    match rest.as_bytes().last() {
        Some(&b) if b >= 0x80 => rest.trim_end(),
        _ => rest,
    }
}

/// `str::trim`, the same way; spaces at the start (one after a colon, usually) are skipped
/// first, and text with visible ASCII at both ends is returned as it is.
pub(super) fn trim(s: &str) -> &str {
    let spaces = s.bytes().take_while(|&b| b == b' ').count();
    // Spaces are ASCII: a char boundary.
    let s = s.get(spaces..).unwrap_or_default();
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(&first), Some(&last))
            if (0x21..0x80).contains(&first) && (0x21..0x80).contains(&last) =>
        {
            s
        }
        _ => trim_end(trim_start(s)),
    }
}

/// The first line of `head` that is empty ends it: returns (head length without the empty line,
/// offset of the body). `None` when there is no empty line.
fn split_head(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    for nl in memchr::memchr_iter(b'\n', bytes) {
        let line = &bytes[line_start..nl];
        if line.is_empty() || line == b"\r" {
            return Some((line_start, nl + 1));
        }
        line_start = nl + 1;
    }
    None
}

pub(crate) fn parse_message(bytes: &[u8]) -> Result<Message, ParseError> {
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let skip = bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(bytes.len());
    let bytes = &bytes[skip..];
    let (head_len, body_at) = split_head(bytes)
        .ok_or_else(|| ParseError::HeaderLine("no empty line after the header section".into()))?;
    let head = std::str::from_utf8(&bytes[..head_len]).map_err(|_| ParseError::NotUtf8)?;
    let body = &bytes[body_at..];

    // `\n` is ASCII: both sides of it are char boundaries.
    let (start, header_section) = match memchr::memchr(b'\n', head.as_bytes()) {
        Some(i) => (&head[..i], &head[i + 1..]),
        None => (head, ""),
    };
    let start = start.strip_suffix('\r').unwrap_or(start);
    let headers = parse_header_section(header_section)?;

    if let Some(declared) = headers.get(&HeaderName::ContentLength) {
        let declared: usize = parse_decimal(declared).ok_or_else(|| ParseError::HeaderValue {
            header: "Content-Length",
            why: format!("not a number: {}", snippet(declared)),
        })?;
        if declared != body.len() {
            return Err(ParseError::ContentLength {
                declared,
                actual: body.len(),
            });
        }
    }
    let body = body.to_vec();

    if start.len() >= 4 && start.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
        let (status, reason) = parse_status_line(start)?;
        Ok(Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }))
    } else {
        let (method, uri) = parse_request_line(start)?;
        Ok(Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }))
    }
}

/// `value.trim().parse::<usize>()`: a few digits, read without the generic machinery.
pub(super) fn parse_decimal(value: &str) -> Option<usize> {
    let digits = trim(value);
    match digits.as_bytes() {
        [] => None,
        bytes if bytes.len() <= 9 && bytes.iter().all(u8::is_ascii_digit) => {
            Some(bytes.iter().fold(0, |n, &b| n * 10 + usize::from(b - b'0')))
        }
        _ => digits.parse().ok(),
    }
}
fn check_version(version: &str) -> Result<(), ParseError> {
    if version.eq_ignore_ascii_case(super::SIP_VERSION) {
        Ok(())
    } else if version.len() > 4 && version.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
        Err(ParseError::Version(snippet(version)))
    } else {
        Err(ParseError::StartLine(format!(
            "expected SIP/2.0, got {}",
            snippet(version)
        )))
    }
}

/// `Method SP Request-URI SP SIP-Version`
fn parse_request_line(line: &str) -> Result<(Method, Uri), ParseError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::StartLine(snippet(line)));
    };
    if !is_token(method) {
        return Err(ParseError::StartLine(snippet(line)));
    }
    check_version(version)?;
    let uri = parse_uri(uri)?;
    Ok((Method::from_token(method), uri))
}

/// `SIP-Version SP Status-Code SP Reason-Phrase`; the reason is kept exactly, possibly empty.
fn parse_status_line(line: &str) -> Result<(u16, String), ParseError> {
    let (version, rest) = line
        .split_once(' ')
        .ok_or_else(|| ParseError::StartLine(snippet(line)))?;
    check_version(version)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::StartLine(snippet(line)));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| ParseError::StartLine(snippet(line)))?;
    if !(100..=699).contains(&status) {
        return Err(ParseError::StartLine(snippet(line)));
    }
    Ok((status, reason.to_string()))
}

/// Reads the header section (everything between the start line and the empty line) into
/// header fields: one `String` per field, no intermediate text.
fn parse_header_section(section: &str) -> Result<Headers, ParseError> {
    let bytes = section.as_bytes();
    let mut fields: Vec<Header> = Vec::with_capacity(if bytes.is_empty() { 0 } else { 16 });
    let mut start = 0;
    while start < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        // `\n` is ASCII, so both ends are char boundaries.
        let raw = section.get(start..end).unwrap_or_default();
        start = end + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line_bytes = line.as_bytes();
        let Some(&first) = line_bytes.first() else {
            continue;
        };
        if first == b' ' || first == b'\t' {
            // RFC 3261 §7.3.1: a continuation of the previous field.
            let Some(last) = fields.last_mut() else {
                return Err(ParseError::HeaderLine(snippet(line)));
            };
            let more = trim(line);
            if !more.is_empty() {
                if !last.value.is_empty() {
                    last.value.push(' ');
                }
                last.value.push_str(more);
            }
            continue;
        }
        // The name is a token, then optional SP/HT, then the colon.
        let name_len = line_bytes
            .iter()
            .position(|&b| !is_token_byte(b))
            .unwrap_or(line_bytes.len());
        let colon = name_len
            + line_bytes[name_len..]
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(line_bytes.len() - name_len);
        if name_len == 0 || line_bytes.get(colon) != Some(&b':') {
            return Err(ParseError::HeaderLine(snippet(line)));
        }
        fields.push(Header {
            name: HeaderName::parse(&line[..name_len]),
            value: trim(&line[colon + 1..]).to_string(),
        });
    }
    Ok(Headers::from_fields(fields))
}
