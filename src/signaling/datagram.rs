//! One UDP datagram → one SIP message (RFC 3261 §18.3), or a keep-alive, or a reason to drop it.
//!
//! Over UDP a datagram is a whole message: there is no stream to resynchronise, so nothing
//! here is ever fatal. A Content-Length shorter than the rest of the datagram truncates the
//! body; a longer one means the datagram was truncated and it is dropped. A datagram over
//! [`MAX_DATAGRAM`] or without a header section is dropped too. The caller counts the drops.

/// The largest datagram taken (the IPv4/IPv6 UDP payload cap is just under 64 KiB).
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// What a datagram holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// Only CR/LF (an RFC 5626 §3.5.1 CRLFCRLF keep-alive, or its CRLF answer).
    KeepAlive,
    /// One SIP message, its body cut to the Content-Length.
    Message(&'a [u8]),
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// Larger than [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes is over the 64 KiB cap")]
    TooLarge(usize),
    /// No empty line ends a header section: not SIP, or cut before the body.
    #[error("no SIP header section")]
    NoHeader,
    /// The Content-Length promises more body than the datagram carries.
    #[error("truncated: Content-Length {declared} but {actual} body bytes")]
    Truncated {
        /// Declared body length.
        declared: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The Content-Length is not a number.
    #[error("unreadable Content-Length")]
    BadContentLength,
}

/// Classifies one received datagram.
pub fn classify(bytes: &[u8]) -> Result<Datagram<'_>, DatagramError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(DatagramError::TooLarge(bytes.len()));
    }
    if bytes.iter().all(|&b| b == b'\r' || b == b'\n') {
        return Ok(Datagram::KeepAlive);
    }
    let (head_end, body_at) = head_end(bytes).ok_or(DatagramError::NoHeader)?;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let body = bytes.len() - body_at;
    let Some(declared) = content_length(&head)? else {
        return Ok(Datagram::Message(bytes));
    };
    if declared > body {
        return Err(DatagramError::Truncated {
            declared,
            actual: body,
        });
    }
    Ok(Datagram::Message(&bytes[..body_at + declared]))
}

/// End of the header section and start of the body (after the first empty line).
fn head_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let line = &bytes[line_start..i];
        if (line.is_empty() || line == b"\r") && line_start > 0 {
            return Some((line_start, i + 1));
        }
        line_start = i + 1;
    }
    None
}

/// The Content-Length (or compact `l`) value in a header section, if present.
fn content_length(head: &str) -> Result<Option<usize>, DatagramError> {
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            return value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| DatagramError::BadContentLength);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "OPTIONS sip:a@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK1\r\n";

    #[test]
    fn content_length_truncates_and_a_short_body_is_dropped() {
        let long = format!("{HEAD}Content-Length: 4\r\n\r\nbodyEXTRA");
        let Ok(Datagram::Message(m)) = classify(long.as_bytes()) else {
            panic!("not a message")
        };
        assert!(m.ends_with(b"\r\n\r\nbody"));
        let short = format!("{HEAD}l: 10\r\n\r\nbody");
        assert_eq!(
            classify(short.as_bytes()),
            Err(DatagramError::Truncated {
                declared: 10,
                actual: 4
            })
        );
        let none = format!("{HEAD}\r\nbody");
        assert_eq!(
            classify(none.as_bytes()),
            Ok(Datagram::Message(none.as_bytes()))
        );
    }

    #[test]
    fn garbage_keepalives_and_oversize() {
        assert_eq!(classify(b"\r\n\r\n"), Ok(Datagram::KeepAlive));
        assert_eq!(
            classify(b"\x16\x03\x01garbage"),
            Err(DatagramError::NoHeader)
        );
        assert_eq!(classify(HEAD.as_bytes()), Err(DatagramError::NoHeader));
        let bad = format!("{HEAD}Content-Length: x\r\n\r\n");
        assert_eq!(
            classify(bad.as_bytes()),
            Err(DatagramError::BadContentLength)
        );
        let big = vec![b'a'; MAX_DATAGRAM + 1];
        assert_eq!(
            classify(&big),
            Err(DatagramError::TooLarge(MAX_DATAGRAM + 1))
        );
    }
}
