//! SIP messages: our own types, parsed and printed by us.
//!
//! rsip 0.4 rejects or mangles several things a real user agent receives (folded lines, `Via :`,
//! compact names, LF-only line endings, IPv6 hosts, `received=` with IPv6, reason phrases), so
//! this module parses the start line, the header section, URIs and the typed header values
//! itself; the rest of wakeline never sees an rsip type. The last rsip call on the receive path
//! (its header tokenizer) was replaced by our byte-level readers (`values.rs`) because it cost a
//! second copy of the header section and a nom parser per field; rsip remains the baseline the
//! `parse` benchmark measures our receive path against.
//!
//! Building is done by our own serializer ([`Request::to_bytes`], [`Response::to_bytes`]), which
//! always writes a correct `Content-Length`.

mod header;
mod headers;
mod method;
mod parse;
#[cfg(test)]
mod parse_tests;
#[doc(hidden)]
pub mod testdata;
mod typed;
mod uri;
mod values;

pub use header::HeaderName;
pub use headers::{Header, Headers};
pub use method::Method;
pub use parse::ParseError;
pub use typed::{CSeq, NameAddr, Params, Via};
pub use uri::{Host, Scheme, Uri, UriError};

/// The SIP version we speak and accept.
pub const SIP_VERSION: &str = "SIP/2.0";

/// The magic cookie that starts every RFC 3261 branch parameter.
pub const BRANCH_MAGIC: &str = "z9hG4bK";

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `INVITE`.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// All header fields, in order, names canonicalised.
    pub headers: Headers,
    /// The message body (may be empty).
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, 100..=699.
    pub status: u16,
    /// The reason phrase exactly as received (or as we chose to send it).
    pub reason: String,
    /// All header fields, in order, names canonicalised.
    pub headers: Headers,
    /// The message body (may be empty).
    pub body: Vec<u8>,
}

/// A SIP message: a request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// Parses one complete SIP message (start line, headers, empty line, body).
    ///
    /// On a stream the caller (the framer) has already cut the message at its Content-Length;
    /// a body longer or shorter than a present Content-Length is an error here.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        parse::parse_message(bytes)
    }

    /// The header fields of either kind of message.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// Serialises the message, writing a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, uri: Uri) -> Self {
        Request {
            method,
            uri,
            headers: Headers::default(),
            body: Vec::new(),
        }
    }

    /// Serialises the request: start line, headers (the first Content-Length, in place, or a new
    /// one at the end, always with the body's real length), empty line, body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("{} {} {}\r\n", self.method, self.uri, SIP_VERSION);
        serialize(start.into_bytes(), &self.headers, &self.body)
    }
}

impl Response {
    /// A response to `request` as RFC 3261 §8.2.6.2 says: Via (all, in order), From, To, Call-ID
    /// and CSeq copied; the reason phrase is the standard one for `status`.
    pub fn for_request(request: &Request, status: u16) -> Self {
        // Room for what the caller usually adds (Contact, Content-Type, ...).
        let mut fields = Vec::with_capacity(request.headers.len().min(8) + 4);
        for h in request.headers.iter() {
            if matches!(
                h.name,
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
            ) {
                fields.push(h.clone());
            }
        }
        Response {
            status,
            reason: reason_phrase(status).to_string(),
            headers: Headers::from_fields(fields),
            body: Vec::new(),
        }
    }

    /// Serialises the response, writing a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        // `SIP/2.0 ` + code + space + reason + CRLF, then the rest: one allocation.
        let mut out = Vec::with_capacity(
            8 + 3 + 1 + self.reason.len() + 2 + size_after_start(&self.headers, &self.body),
        );
        out.extend_from_slice(b"SIP/2.0 ");
        let s = self.status;
        if (100..1000).contains(&s) {
            out.extend_from_slice(&[
                b'0' + (s / 100) as u8,
                b'0' + (s / 10 % 10) as u8,
                b'0' + (s % 10) as u8,
            ]);
        } else {
            out.extend_from_slice(s.to_string().as_bytes());
        }
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        serialize(out, &self.headers, &self.body)
    }

    /// True for 1xx.
    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// At least what [`serialize`] appends: every field, a Content-Length line, the empty line and
/// the body.
fn size_after_start(headers: &Headers, body: &[u8]) -> usize {
    let mut size = body.len() + 24 + 2;
    for h in headers.iter() {
        size += h.name.as_str().len() + 4 + h.value.len();
    }
    size
}

/// Appends the header fields, the empty line and the body to `out`, which holds the start line.
fn serialize(mut out: Vec<u8>, headers: &Headers, body: &[u8]) -> Vec<u8> {
    out.reserve_exact(size_after_start(headers, body));
    let mut length = [0u8; 40];
    let length = content_length_line(&mut length, body.len());
    let mut length_written = false;
    for h in headers.iter() {
        if h.name == HeaderName::ContentLength {
            // The first Content-Length keeps its place with the real length; others are dropped.
            if !length_written {
                out.extend_from_slice(length);
                length_written = true;
            }
            continue;
        }
        out.extend_from_slice(h.name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !length_written {
        out.extend_from_slice(length);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// `Content-Length: <n>\r\n` written into `buf`.
fn content_length_line(buf: &mut [u8; 40], n: usize) -> &[u8] {
    const NAME: &[u8] = b"Content-Length: ";
    let mut text = itoa::Buffer::new();
    let digits = text.format(n).as_bytes();
    let end = NAME.len() + digits.len() + 2;
    buf[..NAME.len()].copy_from_slice(NAME);
    buf[NAME.len()..end - 2].copy_from_slice(digits);
    buf[end - 2..end].copy_from_slice(b"\r\n");
    &buf[..end]
}

/// The standard reason phrase for a status code (RFC 3261 §21 and friends).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Progress",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// A fresh RFC 3261 branch parameter value (`z9hG4bK` + random).
pub fn new_branch() -> String {
    format!("{}{}", BRANCH_MAGIC, random_token(16))
}

/// A fresh From/To tag.
pub fn new_tag() -> String {
    random_token(12)
}

/// A fresh Call-ID, unique in space and time.
pub fn new_call_id() -> String {
    random_token(24)
}

/// `len` random characters from `[a-z0-9]`.
pub fn random_token(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
