//! Parsing: normalisation before rsip, our own start line, URI and typed-value parsers.
//!
//! The message path is: find the empty line that ends the head; parse the start line ourselves;
//! normalise the header section into canonical text (folded lines joined, LF-only and mixed line
//! endings accepted, whitespace before the colon dropped, compact names expanded, values trimmed);
//! hand that text to rsip's header tokenizer field by field and copy the fields it splits into
//! our [`Headers`]; finally check the body against a present Content-Length.
//!
//! rsip is called at its tokenizer layer (`rsip::headers::header::Tokenizer`, public but
//! `doc(hidden)` in rsip 0.4): the tokens borrow from our buffer, so we skip rsip's throw-away
//! `Header` strings. Its request tokenizer is not used: it would parse a start line we parse
//! ourselves (rsip rejects IPv6 and `tel:` Request-URIs) and build an error, with a formatted
//! copy of the input, for each alternative it probes.

use super::{
    CSeq, HeaderName, Headers, Host, Message, Method, NameAddr, Params, Request, Response, Scheme,
    Uri, UriError, Via,
};

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
    /// rsip refused the normalised header section.
    #[error("header section rejected: {0}")]
    Rsip(String),
}

/// At most this many characters of offending input are copied into an error.
const ERROR_SNIPPET: usize = 120;

fn snippet(text: &str) -> String {
    match text.char_indices().nth(ERROR_SNIPPET) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

fn uri_error(text: &str, why: &'static str) -> UriError {
    let uri = match text.char_indices().nth(200) {
        Some((i, _)) => text[..i].to_string(),
        None => text.to_string(),
    };
    UriError { uri, why }
}

/// RFC 3261 `token` characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
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

    let (start, header_section) = match head.find('\n') {
        Some(i) => (&head[..i], &head[i + 1..]),
        None => (head, ""),
    };
    let start = start.strip_suffix('\r').unwrap_or(start);
    let headers = parse_header_section(header_section)?;

    if let Some(declared) = headers.get(&HeaderName::ContentLength) {
        let declared: usize = declared
            .trim()
            .parse()
            .map_err(|_| ParseError::HeaderValue {
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

/// Expands an RFC 3261 §7.3.3 compact header name; other names are returned unchanged.
fn expand_compact(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'f' => "From",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b't' => "To",
        b'v' => "Via",
        b'c' => "Content-Type",
        b'k' => "Supported",
        b's' => "Subject",
        b'e' => "Content-Encoding",
        b'o' => "Event",
        b'r' => "Refer-To",
        b'u' => "Allow-Events",
        _ => name,
    }
}

/// The `\n`-separated lines of `text` (memchr-driven; the `\n` is not included).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', text.as_bytes())
        .chain(std::iter::once(text.len()))
        .map(move |end| {
            // `\n` is ASCII, so both ends are char boundaries.
            let line = text.get(start..end).unwrap_or_default();
            start = end + 1;
            line
        })
}

/// Normalises the header section (everything between the start line and the empty line) and
/// returns the header fields as rsip splits them.
fn parse_header_section(section: &str) -> Result<Headers, ParseError> {
    let mut norm = String::with_capacity(section.len());
    let mut fields = 0;
    for raw in lines(section) {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // RFC 3261 §7.3.1: a continuation of the previous field.
            if fields == 0 {
                return Err(ParseError::HeaderLine(snippet(line)));
            }
            let more = line.trim();
            if !more.is_empty() {
                norm.push(' ');
                norm.push_str(more);
            }
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ParseError::HeaderLine(snippet(line)))?;
        let name = name.trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return Err(ParseError::HeaderLine(snippet(line)));
        }
        if fields != 0 {
            norm.push_str("\r\n");
        }
        norm.push_str(expand_compact(name));
        fields += 1;
        norm.push(':');
        let value = value.trim();
        if !value.is_empty() {
            norm.push(' ');
            norm.push_str(value);
        }
    }
    if fields == 0 {
        return Ok(Headers::default());
    }

    // rsip's header tokenizer splits the canonical lines one field at a time (the last one ends
    // the text); its tokens borrow from `norm`, so the only copies are the Strings we keep.
    let mut headers = Headers::with_capacity(fields);
    let mut rest = norm.as_bytes();
    while !rest.is_empty() {
        let (after, token) = rsip::headers::header::Tokenizer::tokenize(rest)
            .map_err(|e| ParseError::Rsip(snippet(&e.to_string())))?;
        if after.len() >= rest.len() {
            return Err(ParseError::Rsip(
                "the header tokenizer made no progress".into(),
            ));
        }
        rest = after;
        let (Ok(name), Ok(value)) = (
            std::str::from_utf8(token.name),
            std::str::from_utf8(token.value),
        ) else {
            return Err(ParseError::NotUtf8);
        };
        headers.push(HeaderName::parse(name), value);
    }
    if headers.len() != fields {
        return Err(ParseError::Rsip(format!(
            "{fields} header fields in, {} out",
            headers.len()
        )));
    }
    Ok(headers)
}

/// Splits `text` at `sep` outside double quotes (with `\` escapes inside quotes).
fn split_unquoted(text: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut in_quote, mut escaped) = (0, false, false);
    for (i, &b) in text.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quote => escaped = true,
            b'"' => in_quote = !in_quote,
            _ if b == sep && !in_quote => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Parses `name[=value]` items separated by `;` (the text after the first `;`), whitespace
/// around names, `=` and values tolerated; an empty item (`;;`) is skipped.
fn parse_params(text: &str) -> Result<Params, &'static str> {
    let mut params = Params::default();
    for item in split_unquoted(text, b';') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n.trim_end(), Some(v.trim_start().to_string())),
            None => (item, None),
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b == b'"') {
            return Err("bad parameter name");
        }
        params.0.push((name.to_string(), value));
    }
    Ok(params)
}

/// Parses `host[:port]` (IPv6 in brackets).
fn parse_hostport(text: &str) -> Result<(Host, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("unclosed IPv6 bracket")?;
        let v6 = v6.parse().map_err(|_| "bad IPv6 address")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after IPv6 address")?),
        };
        (Host::V6(v6), port)
    } else {
        let (host, port) = match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        };
        if host.is_empty() {
            return Err("empty host");
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err("bad character in host");
        }
        (Host::parse(host), port)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().map_err(|_| "port out of range")?)
        }
        Some(_) => return Err("bad port"),
    };
    Ok((host, port))
}

pub(crate) fn parse_uri(text: &str) -> Result<Uri, UriError> {
    let (scheme, rest) = text
        .split_once(':')
        .ok_or_else(|| uri_error(text, "no scheme"))?;
    let scheme = if scheme.eq_ignore_ascii_case("sip") {
        Scheme::Sip
    } else if scheme.eq_ignore_ascii_case("sips") {
        Scheme::Sips
    } else if scheme.eq_ignore_ascii_case("tel") {
        Scheme::Tel
    } else {
        return Err(uri_error(text, "unsupported scheme"));
    };
    if rest.is_empty() || rest.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(uri_error(
            text,
            "empty or contains whitespace/control characters",
        ));
    }

    if scheme == Scheme::Tel {
        let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
        if number.is_empty() {
            return Err(uri_error(text, "empty telephone number"));
        }
        return Ok(Uri {
            scheme,
            user: Some(number.to_string()),
            password: None,
            host: Host::Domain(String::new()),
            port: None,
            params: parse_params(params).map_err(|why| uri_error(text, why))?,
            headers: Vec::new(),
        });
    }

    let (main, headers) = match rest.split_once('?') {
        Some((m, h)) => (m, Some(h)),
        None => (rest, None),
    };
    let (user, password, hostpart) = match main.rfind('@') {
        Some(at) => {
            let (user, password) = match main[..at].split_once(':') {
                Some((u, p)) => (u, Some(p.to_string())),
                None => (&main[..at], None),
            };
            if user.is_empty() {
                return Err(uri_error(text, "empty user"));
            }
            (Some(user.to_string()), password, &main[at + 1..])
        }
        None => (None, None, main),
    };
    let (hostport, params) = hostpart.split_once(';').unwrap_or((hostpart, ""));
    let (host, port) = parse_hostport(hostport).map_err(|why| uri_error(text, why))?;
    let params = parse_params(params).map_err(|why| uri_error(text, why))?;
    let headers = match headers {
        None => Vec::new(),
        Some(h) => h
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (n, v) = p.split_once('=').unwrap_or((p, ""));
                (n.to_string(), v.to_string())
            })
            .collect(),
    };
    Ok(Uri {
        scheme,
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

pub(crate) fn parse_cseq(value: &str) -> Result<CSeq, ParseError> {
    let bad = |why: &str| ParseError::HeaderValue {
        header: "CSeq",
        why: format!("{why}: {}", snippet(value)),
    };
    let mut parts = value.split_ascii_whitespace();
    let (Some(seq), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected `number method`"));
    };
    if !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("sequence number is not a number"));
    }
    let seq: u32 = seq.parse().map_err(|_| bad("sequence number too large"))?;
    if seq >= 1 << 31 {
        return Err(bad("sequence number too large"));
    }
    if !is_token(method) {
        return Err(bad("bad method"));
    }
    Ok(CSeq {
        seq,
        method: Method::from_token(method),
    })
}

pub(crate) fn parse_via(value: &str) -> Result<Via, ParseError> {
    let bad = |why: &str| ParseError::HeaderValue {
        header: "Via",
        why: format!("{why}: {}", snippet(value)),
    };
    // sent-protocol: SIP / 2.0 / transport, whitespace around `/` tolerated.
    let mut rest = value.trim_start();
    let mut protocol = ["", "", ""];
    for (i, slot) in protocol.iter_mut().enumerate() {
        if i > 0 {
            rest = rest
                .trim_start()
                .strip_prefix('/')
                .ok_or_else(|| bad("expected `/` in sent-protocol"))?
                .trim_start();
        }
        let end = rest
            .find(|c: char| c == '/' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        *slot = &rest[..end];
        rest = &rest[end..];
    }
    let [name, version, transport] = protocol;
    if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
        return Err(bad("sent-protocol is not SIP/2.0"));
    }
    if !is_token(transport) {
        return Err(bad("bad transport"));
    }
    if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return Err(bad("no sent-by"));
    }
    let (sent_by, params) = rest.split_once(';').unwrap_or((rest, ""));
    let sent_by = sent_by.trim();
    // Whitespace around the `:` of sent-by is legal (LWS), rare, and dropped here.
    let sent_by: std::borrow::Cow<str> = if sent_by.contains([' ', '\t']) {
        sent_by.replace([' ', '\t'], "").into()
    } else {
        sent_by.into()
    };
    let (host, port) = parse_hostport(&sent_by).map_err(bad)?;
    let params = parse_params(params).map_err(bad)?;
    Ok(Via {
        transport: transport.to_ascii_uppercase(),
        host,
        port,
        params,
    })
}

/// Reads a quoted string at the start of `text` (which starts with `"`): returns the unescaped
/// content and the rest after the closing quote.
fn quoted_string(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &text[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

pub(crate) fn parse_name_addr(value: &str) -> Result<NameAddr, ParseError> {
    let bad = |why: &str| ParseError::HeaderValue {
        header: "name-addr",
        why: format!("{why}: {}", snippet(value)),
    };
    let text = value.trim();
    let (display, rest) = if text.starts_with('"') {
        let (display, rest) = quoted_string(text).ok_or_else(|| bad("unclosed quote"))?;
        let rest = rest.trim_start();
        if !rest.starts_with('<') {
            return Err(bad("expected `<` after display name"));
        }
        (Some(display), rest)
    } else if let Some(lt) = text.find('<') {
        let display = text[..lt].trim();
        let display = (!display.is_empty()).then(|| display.to_string());
        (display, &text[lt..])
    } else {
        (None, text)
    };

    if let Some(inner) = rest.strip_prefix('<') {
        let (uri, after) = inner.split_once('>').ok_or_else(|| bad("unclosed `<`"))?;
        let uri = parse_uri(uri.trim())?;
        let after = after.trim_start();
        let params = match after.strip_prefix(';') {
            Some(p) => parse_params(p).map_err(bad)?,
            None if after.is_empty() => Params::default(),
            None => return Err(bad("junk after `>`")),
        };
        return Ok(NameAddr {
            display,
            uri,
            params,
        });
    }

    // addr-spec: parameters belong to the header (RFC 3261 §20).
    let search_from = rest.find('@').unwrap_or(0);
    let (uri, params) = match rest[search_from..].find(';') {
        Some(i) => (&rest[..search_from + i], &rest[search_from + i + 1..]),
        None => (rest, ""),
    };
    Ok(NameAddr {
        display: None,
        uri: parse_uri(uri.trim())?,
        params: parse_params(params).map_err(bad)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testdata;
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn request(text: &str) -> Request {
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(r) => panic!("expected a request, got {r:?}"),
        }
    }

    fn response(text: &str) -> Response {
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Response(r) => r,
            Message::Request(r) => panic!("expected a response, got {r:?}"),
        }
    }

    const BASIC: &str = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
        From: <sip:alice@example.com>;tag=a\r\n\
        To: <sip:bob@example.com>\r\n\
        Call-ID: c1@x\r\n\
        CSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn basic_request() {
        let r = request(BASIC);
        assert_eq!(r.method, Method::Options);
        assert_eq!(r.uri.user.as_deref(), Some("bob"));
        assert_eq!(r.headers.len(), 6);
        assert_eq!(r.headers.call_id(), Some("c1@x"));
        assert_eq!(r.headers.cseq().unwrap().seq, 1);
        assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn folded_header_is_unfolded() {
        let r = request(
            "OPTIONS sip:b@x SIP/2.0\r\nSubject: I know you're there,\r\n   pick up the phone\r\n\
             \tand talk to me!\r\nCall-ID: 1\r\n\r\n",
        );
        assert_eq!(
            r.headers.get(&HeaderName::Subject),
            Some("I know you're there, pick up the phone and talk to me!")
        );
        assert_eq!(r.headers.call_id(), Some("1"));
        assert_eq!(r.headers.len(), 2);
    }

    #[test]
    fn folded_first_line_is_an_error() {
        let err = Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\n  folded\r\n\r\n").unwrap_err();
        assert!(matches!(err, ParseError::HeaderLine(_)), "{err:?}");
    }

    #[test]
    fn space_before_colon() {
        let r = request("OPTIONS sip:b@x SIP/2.0\r\nVia : SIP/2.0/UDP h;branch=z9hG4bKx\r\nTo\t: <sip:b@x>\r\n\r\n");
        assert_eq!(r.headers.top_via().unwrap().host, Host::Domain("h".into()));
        assert_eq!(r.headers.to().unwrap().uri.user.as_deref(), Some("b"));
    }

    #[test]
    fn every_compact_name_is_expanded() {
        let cases = [
            ("i", HeaderName::CallId),
            ("f", HeaderName::From),
            ("l", HeaderName::ContentLength),
            ("m", HeaderName::Contact),
            ("t", HeaderName::To),
            ("v", HeaderName::Via),
            ("c", HeaderName::ContentType),
            ("k", HeaderName::Supported),
            ("s", HeaderName::Subject),
            ("e", HeaderName::ContentEncoding),
            ("o", HeaderName::Event),
            ("r", HeaderName::ReferTo),
            ("u", HeaderName::AllowEvents),
        ];
        for (compact, name) in cases {
            for spelled in [compact.to_string(), compact.to_uppercase()] {
                let value = if name == HeaderName::ContentLength {
                    "0"
                } else {
                    "x-value"
                };
                let r = request(&format!(
                    "OPTIONS sip:b@x SIP/2.0\r\n{spelled}: {value}\r\n\r\n"
                ));
                let h = r.headers.iter().next().unwrap();
                assert_eq!(h.name, name, "compact {spelled}");
                assert_eq!(h.value, value);
            }
        }
    }

    #[test]
    fn lf_only_line_endings() {
        let text = BASIC.replace("\r\n", "\n");
        let r = request(&text);
        assert_eq!(r, request(BASIC));
    }

    #[test]
    fn mixed_line_endings() {
        let text = "OPTIONS sip:b@x SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nCall-ID: m\n\
                    Content-Length: 4\r\n\nbody";
        let r = request(text);
        assert_eq!(r.headers.call_id(), Some("m"));
        assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bK2"));
        assert_eq!(r.body, b"body");
    }

    #[test]
    fn ipv6_request_uri() {
        let r = request("INVITE sip:[2001:db8::1]:5060 SIP/2.0\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(r.uri.host, Host::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(r.uri.port, Some(5060));
        assert_eq!(r.uri.to_string(), "sip:[2001:db8::1]:5060");
    }

    #[test]
    fn ipv6_via_sent_by_and_received() {
        let via = Via::parse(
            "SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bKv6;received=2001:db8::1;rport=5071",
        )
        .unwrap();
        assert_eq!(via.host, Host::V6("2001:db8::9".parse().unwrap()));
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.received(), Some("2001:db8::1"));
        assert_eq!(via.rport(), Some(5071));
        assert_eq!(via.transport, "TCP");

        let via = Via::parse("SIP/2.0/UDP [2001:db8::9];received=[2001:db8::1];rport").unwrap();
        assert_eq!(via.port, None);
        assert_eq!(via.received(), Some("[2001:db8::1]"));
        assert_eq!(
            Host::parse(via.received().unwrap()),
            Host::V6("2001:db8::1".parse().unwrap())
        );
        assert!(via.params.has("rport"));
        assert_eq!(via.rport(), None);
    }

    #[test]
    fn via_whitespace_tolerated() {
        let via = Via::parse("SIP / 2.0 / tcp  host.example.com:5060 ; branch = z9hG4bKw ;rport")
            .unwrap();
        assert_eq!(via.transport, "TCP");
        assert_eq!(via.host, Host::Domain("host.example.com".into()));
        assert_eq!(via.branch(), Some("z9hG4bKw"));
        assert!(via.params.has("rport"));
        assert!(Via::parse("SIP/2.0/TCP").is_err());
        assert!(Via::parse("SIP/3.0/TCP h").is_err());
        assert!(Via::parse("SIP/2.0/TCP [::1").is_err());
    }

    #[test]
    fn tel_uri() {
        let r = request("INVITE tel:+15551234 SIP/2.0\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(r.uri.scheme, Scheme::Tel);
        assert_eq!(r.uri.user.as_deref(), Some("+15551234"));
        assert_eq!(r.uri.to_string(), "tel:+15551234");
        let uri = Uri::parse("TEL:+1-555-1234;phone-context=example.com").unwrap();
        assert_eq!(uri.params.get("phone-context"), Some(Some("example.com")));
    }

    #[test]
    fn reason_phrase_kept_exactly() {
        let r = response("SIP/2.0 200 Very OK Indeed\r\nContent-Length: 0\r\n\r\n");
        assert_eq!((r.status, r.reason.as_str()), (200, "Very OK Indeed"));
        let r = response("SIP/2.0 486 \r\nContent-Length: 0\r\n\r\n");
        assert_eq!((r.status, r.reason.as_str()), (486, ""));
        let r = response("SIP/2.0 180\r\n\r\n");
        assert_eq!((r.status, r.reason.as_str()), (180, ""));
        let r = response("SIP/2.0 183  Two  spaces \r\n\r\n");
        assert_eq!(r.reason, " Two  spaces ");
    }

    #[test]
    fn bad_start_lines() {
        for bad in [
            "SIP/2.0 099 Low\r\n\r\n",
            "SIP/2.0 700 High\r\n\r\n",
            "SIP/2.0 2000 Long\r\n\r\n",
            "SIP/2.0 abc x\r\n\r\n",
            "INVITE sip:b@x\r\n\r\n",
            "INVITE  sip:b@x SIP/2.0\r\n\r\n",
            "INV(TE sip:b@x SIP/2.0\r\n\r\n",
            "INVITE sip:b@x HTTP/1.1\r\n\r\n",
            "INVITE http://x SIP/2.0\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(Message::parse(bad.as_bytes()).is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            Message::parse(b"SIP/3.0 200 OK\r\n\r\n"),
            Err(ParseError::Version(_))
        ));
        assert!(matches!(
            Message::parse(b"INVITE sip:b@x SIP/2.1\r\n\r\n"),
            Err(ParseError::Version(_))
        ));
    }

    #[test]
    fn bad_header_lines() {
        assert!(matches!(
            Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\nNo colon here\r\n\r\n"),
            Err(ParseError::HeaderLine(_))
        ));
        assert!(matches!(
            Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\n: empty name\r\n\r\n"),
            Err(ParseError::HeaderLine(_))
        ));
        assert!(matches!(
            Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\nTo: x\r\n"),
            Err(ParseError::HeaderLine(_))
        ));
        assert!(matches!(
            Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\nTo: \xff\xfe\r\n\r\n"),
            Err(ParseError::NotUtf8)
        ));
    }

    #[test]
    fn unknown_headers_kept_in_order() {
        let r = request(
            "OPTIONS sip:b@x SIP/2.0\r\nX-First: 1\r\nCall-ID: c\r\nx-second: two\r\n\
             Accept-Encoding: gzip\r\nX-First: 3\r\n\r\n",
        );
        let got: Vec<(String, &str)> = r
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("X-First".to_string(), "1"),
                ("Call-ID".to_string(), "c"),
                ("x-second".to_string(), "two"),
                ("Accept-Encoding".to_string(), "gzip"),
                ("X-First".to_string(), "3"),
            ]
        );
        let name = HeaderName::Other("X-First".into());
        assert_eq!(r.headers.get_all(&name).collect::<Vec<_>>(), ["1", "3"]);
    }

    #[test]
    fn multiple_via_in_one_field_and_in_several() {
        let one = request(
            "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1, SIP/2.0/UDP b:5062;branch=z9hG4bK2\r\n\r\n",
        );
        let several = request(
            "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\nv: SIP/2.0/UDP b:5062;branch=z9hG4bK2\r\n\r\n",
        );
        for r in [&one, &several] {
            let vias: Vec<Via> = r
                .headers
                .list(&HeaderName::Via)
                .map(|v| Via::parse(v).unwrap())
                .collect();
            assert_eq!(vias.len(), 2);
            assert_eq!(vias[0].branch(), Some("z9hG4bK1"));
            assert_eq!(vias[1].host, Host::Domain("b".into()));
            assert_eq!(vias[1].port, Some(5062));
            assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bK1"));
        }
        assert_eq!(one.headers.len(), 1);
        assert_eq!(several.headers.len(), 2);
    }

    #[test]
    fn softphone_invite() {
        let r = match Message::parse(testdata::INVITE).unwrap() {
            Message::Request(r) => r,
            other => panic!("{other:?}"),
        };
        assert!((850..=1000).contains(&testdata::INVITE.len()));
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri.host, Host::Domain("biloxi.example.com".into()));
        let via = r.headers.top_via().unwrap();
        assert_eq!(via.host, Host::V4(Ipv4Addr::new(192, 0, 2, 10)));
        assert_eq!(via.port, Some(52044));
        assert!(via.params.has("rport"));
        assert_eq!(r.headers.get(&HeaderName::MaxForwards), Some("70"));
        let route = NameAddr::parse(r.headers.get(&HeaderName::Route).unwrap()).unwrap();
        assert!(route.uri.params.has("lr"));
        assert_eq!(r.headers.record_routes().len(), 1);
        let from = r.headers.from().unwrap();
        assert_eq!(from.display.as_deref(), Some("Alice Liddell"));
        assert_eq!(from.tag(), Some("9fxced76sl"));
        assert_eq!(r.headers.to().unwrap().tag(), None);
        let contact = &r.headers.contacts()[0];
        assert_eq!(contact.uri.transport().as_deref(), Some("tcp"));
        assert!(contact.uri.params.has("ob"));
        assert_eq!(
            contact.params.get("+sip.instance"),
            Some(Some("\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\""))
        );
        assert_eq!(r.headers.list(&HeaderName::Allow).count(), 8);
        assert!(r
            .headers
            .tokens(&HeaderName::Supported)
            .any(|t| t == "outbound"));
        assert_eq!(
            r.headers.get(&HeaderName::UserAgent),
            Some("Linphone/5.2.4")
        );
        assert_eq!(
            r.headers.cseq().unwrap(),
            CSeq {
                seq: 31862,
                method: Method::Invite
            }
        );
        assert_eq!(r.headers.content_type().as_deref(), Some("application/sdp"));
        assert_eq!(r.headers.content_length(), Some(r.body.len()));
        assert!(r.body.starts_with(b"v=0\r\n"));
    }

    #[test]
    fn sipp_invite() {
        let Message::Request(r) = Message::parse(testdata::SIPP_INVITE).unwrap() else {
            panic!("not a request");
        };
        assert_eq!(r.uri.port, Some(5060));
        assert_eq!(r.uri.host, Host::V4(Ipv4Addr::LOCALHOST));
        let contact = &r.headers.contacts()[0];
        // Bare addr-spec: `;transport=TCP` belongs to the header, not the URI (RFC 3261 §20).
        assert_eq!(contact.uri.port, Some(5061));
        assert!(contact.uri.params.0.is_empty());
        assert_eq!(contact.params.get("transport"), Some(Some("TCP")));
        assert_eq!(r.headers.from().unwrap().display.as_deref(), Some("sipp"));
        assert_eq!(r.headers.content_length(), Some(129));
        assert_eq!(r.body.len(), 129);
    }

    #[test]
    fn kamailio_ok_with_record_route() {
        let Message::Response(r) = Message::parse(testdata::KAMAILIO_200_OK).unwrap() else {
            panic!("not a response");
        };
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
        let rr = r.headers.record_routes();
        assert_eq!(rr.len(), 3);
        assert_eq!(rr[0].uri.params.get("r2"), Some(Some("on")));
        assert_eq!(rr[0].uri.params.get("did"), Some(Some("7a1.b3c2")));
        assert_eq!(rr[2].uri.host, Host::V4(Ipv4Addr::new(10, 0, 0, 5)));
        let via = r.headers.top_via().unwrap();
        assert_eq!(via.received(), Some("203.0.113.7"));
        assert_eq!(via.rport(), Some(61022));
        assert_eq!(r.headers.to().unwrap().tag(), Some("8321234356"));
        assert_eq!(
            r.headers.get(&HeaderName::Server),
            Some("kamailio (5.7.4 (x86_64/linux))")
        );
    }

    #[test]
    fn round_trip() {
        for bytes in [
            testdata::INVITE,
            testdata::SIPP_INVITE,
            testdata::KAMAILIO_200_OK,
            BASIC.as_bytes(),
        ] {
            let first = Message::parse(bytes).unwrap();
            let again = Message::parse(&first.to_bytes()).unwrap();
            assert_eq!(first, again);
        }
        // The serializer writes canonical text: compact names expanded, folding undone.
        let folded = "OPTIONS sip:b@x SIP/2.0\nv : SIP/2.0/TCP h;branch=z9hG4bK3\ns: a\n b\n\n";
        let first = Message::parse(folded.as_bytes()).unwrap();
        let text = String::from_utf8(first.to_bytes()).unwrap();
        assert!(text.contains("Via: SIP/2.0/TCP h;branch=z9hG4bK3\r\nSubject: a b\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        assert_eq!(Message::parse(text.as_bytes()).unwrap().headers().len(), 3);
    }

    #[test]
    fn content_length_checked() {
        let err =
            Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\nContent-Length: 5\r\n\r\nabc").unwrap_err();
        assert_eq!(
            err,
            ParseError::ContentLength {
                declared: 5,
                actual: 3
            }
        );
        let err = Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\nl: 1\r\n\r\nabc").unwrap_err();
        assert_eq!(
            err,
            ParseError::ContentLength {
                declared: 1,
                actual: 3
            }
        );
        assert!(matches!(
            Message::parse(b"OPTIONS sip:b@x SIP/2.0\r\nContent-Length: x\r\n\r\n"),
            Err(ParseError::HeaderValue {
                header: "Content-Length",
                ..
            })
        ));
        // Absent Content-Length: the body is whatever follows.
        let r = request("OPTIONS sip:b@x SIP/2.0\r\nCall-ID: 1\r\n\r\nabc");
        assert_eq!(r.body, b"abc");
    }

    #[test]
    fn binary_and_large_bodies() {
        let body: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        let mut bytes =
            format!("MESSAGE sip:b@x SIP/2.0\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", body.len())
                .into_bytes();
        bytes.extend_from_slice(&body);
        let Message::Request(r) = Message::parse(&bytes).unwrap() else {
            panic!("not a request");
        };
        assert_eq!(r.method, Method::Message);
        assert_eq!(r.body, body);
        // A body that itself contains an empty line stays intact.
        let r = request("MESSAGE sip:b@x SIP/2.0\r\nl: 6\r\n\r\na\r\n\r\nb");
        assert_eq!(r.body, b"a\r\n\r\nb");
    }

    #[test]
    fn leading_crlf_is_ignored() {
        let r = request(&format!("\r\n\r\n{BASIC}"));
        assert_eq!(r.method, Method::Options);
    }

    #[test]
    fn uri_forms() {
        let uri = Uri::parse("SIPS:alice:secret@Example.COM:5061;transport=tls;lr;maddr=10.0.0.1?subject=hi&priority=urgent").unwrap();
        assert_eq!(uri.scheme, Scheme::Sips);
        assert_eq!(uri.user.as_deref(), Some("alice"));
        assert_eq!(uri.password.as_deref(), Some("secret"));
        assert_eq!(uri.host, Host::Domain("Example.COM".into()));
        assert_eq!(uri.port, Some(5061));
        let names: Vec<&str> = uri.params.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["transport", "lr", "maddr"]);
        assert_eq!(uri.params.get("lr"), Some(None));
        assert_eq!(
            uri.headers,
            [
                ("subject".into(), "hi".into()),
                ("priority".into(), "urgent".into())
            ]
        );
        assert_eq!(uri.to_string(), "sips:alice:secret@Example.COM:5061;transport=tls;lr;maddr=10.0.0.1?subject=hi&priority=urgent");
        let v6 = Uri::parse("sip:bob@[::1]").unwrap();
        assert_eq!(v6.host, Host::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(v6.port, None);
        for bad in [
            "",
            "sip:",
            "http://x",
            "sip:@x",
            "sip:x:99999",
            "sip:x:",
            "sip:x:5a",
            "sip:[::1",
            "sip:[zz]",
            "sip:2001:db8::1",
            "sip:a b",
            "tel:",
            "sip:x;=v",
            "sip:[::1]x",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn name_addr_forms() {
        let na =
            NameAddr::parse(r#""Bob \"the\" \\ Builder" <sip:bob@x>;tag=9;expires=60"#).unwrap();
        assert_eq!(na.display.as_deref(), Some(r#"Bob "the" \ Builder"#));
        assert_eq!(na.tag(), Some("9"));
        assert_eq!(na.params.get("expires"), Some(Some("60")));
        assert_eq!(NameAddr::parse(&na.to_string()).unwrap(), na);

        let na = NameAddr::parse("Bob Smith <sip:bob@x;transport=tcp>").unwrap();
        assert_eq!(na.display.as_deref(), Some("Bob Smith"));
        assert_eq!(na.uri.transport().as_deref(), Some("tcp"));
        assert!(na.params.0.is_empty());

        let na = NameAddr::parse("sip:bob@x;tag=77").unwrap();
        assert_eq!(na.display, None);
        assert!(na.uri.params.0.is_empty());
        assert_eq!(na.tag(), Some("77"));

        let na = NameAddr::parse("<sip:[2001:db8::2]:5070;lr>").unwrap();
        assert_eq!(na.uri.port, Some(5070));
        assert!(na.uri.params.has("lr"));

        for bad in [
            "",
            "\"open <sip:b@x>",
            "<sip:b@x",
            "<sip:b@x> junk",
            "\"x\" sip:b@x",
            "<http://x>",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn cseq_forms() {
        assert_eq!(
            CSeq::parse("4711 INVITE").unwrap(),
            CSeq {
                seq: 4711,
                method: Method::Invite
            }
        );
        assert_eq!(
            CSeq::parse(" 1\tFOO ").unwrap().method,
            Method::Other("FOO".into())
        );
        assert_eq!(CSeq::parse("2147483647 BYE").unwrap().seq, 2_147_483_647);
        for bad in [
            "",
            "1",
            "INVITE",
            "x INVITE",
            "-1 INVITE",
            "2147483648 BYE",
            "1 INVITE x",
            "1 IN<VITE",
        ] {
            assert!(CSeq::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Message::parse(&bytes);
        }

        #[test]
        fn mutated_invite_never_panics(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..12)
        ) {
            let mut bytes = testdata::INVITE.to_vec();
            for (at, byte, op) in edits {
                if bytes.is_empty() { break; }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => { bytes.remove(i); }
                    _ => bytes.insert(i, byte),
                }
            }
            if let Ok(m) = Message::parse(&bytes) {
                // Whatever parsed must serialise and parse again.
                let _ = Message::parse(&m.to_bytes());
            }
        }

        #[test]
        fn random_text_values_never_panic(value in "[ -~\t]{0,80}") {
            let _ = Uri::parse(&value);
            let _ = Via::parse(&value);
            let _ = NameAddr::parse(&value);
            let _ = CSeq::parse(&value);
        }
    }
}
