//! Our parsers of typed header values: URIs, `host[:port]`, `;name=value` parameters, Via,
//! CSeq and name-addr. They scan bytes (every delimiter is ASCII, so every cut is a char
//! boundary) and copy only what the typed forms keep.

use super::parse::{is_token, snippet, trim, trim_end, trim_start};
use super::{CSeq, Host, Method, NameAddr, Params, ParseError, Scheme, Uri, UriError, Via};
use std::net::Ipv4Addr;

fn uri_error(text: &str, why: &'static str) -> UriError {
    let uri = match text.char_indices().nth(200) {
        Some((i, _)) => text[..i].to_string(),
        None => text.to_string(),
    };
    UriError { uri, why }
}

/// `text` cut at the first `b`: (before, after). `b` must be ASCII.
fn split_at_byte(text: &str, b: u8) -> Option<(&str, &str)> {
    let i = memchr::memchr(b, text.as_bytes())?;
    Some((&text[..i], &text[i + 1..]))
}

/// The parts of `text` between `sep`s outside double quotes (with `\` escapes inside quotes).
struct SplitUnquoted<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for SplitUnquoted<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.rest?;
        let bytes = text.as_bytes();
        // Straight to the next separator or quote; byte by byte only inside quotes.
        let mut i = 0;
        while let Some(at) = memchr::memchr2(self.sep, b'"', &bytes[i..]) {
            i += at;
            if bytes[i] == self.sep {
                self.rest = Some(&text[i + 1..]);
                return Some(&text[..i]);
            }
            // A quoted string: skip to its closing quote (`\` escapes one byte; what it
            // escapes is ASCII in anything we accept, and a multi-byte char holds no quote).
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            if i >= bytes.len() {
                break;
            }
        }
        self.rest = None;
        Some(text)
    }
}

/// Parses `name[=value]` items separated by `;` (the text after the first `;`), whitespace
/// around names, `=` and values tolerated; an empty item (`;;`) is skipped.
pub(super) fn parse_params(text: &str) -> Result<Params, &'static str> {
    if text.is_empty() {
        return Ok(Params::default());
    }
    // Four: what the first push would grow an empty list to anyway.
    let mut params = Params(Vec::with_capacity(4));
    let items = SplitUnquoted {
        rest: Some(text),
        sep: b';',
    };
    for item in items {
        let item = trim(item);
        if item.is_empty() {
            continue;
        }
        let (name, value) = match split_at_byte(item, b'=') {
            Some((n, v)) => (trim_end(n), Some(trim_start(v).to_string())),
            None => (item, None),
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b == b'"') {
            return Err("bad parameter name");
        }
        params.0.push((name.to_string(), value));
    }
    Ok(params)
}

/// A dotted-quad IPv4 address exactly as `Ipv4Addr::from_str` reads one (four decimal parts of
/// one to three digits, no leading zero, each at most 255), without its generic parser.
pub(super) fn ipv4(text: &str) -> Option<Ipv4Addr> {
    let bytes = text.as_bytes();
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if bytes.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut n = 0u16;
        while i < bytes.len() && bytes[i].is_ascii_digit() && i - start < 3 {
            n = n * 10 + u16::from(bytes[i] - b'0');
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || (digits > 1 && bytes[start] == b'0') {
            return None;
        }
        *octet = u8::try_from(n).ok()?;
    }
    (i == bytes.len()).then(|| Ipv4Addr::from(octets))
}

/// A port: one or more digits, at most 65535.
fn port_number(text: &str) -> Result<u16, &'static str> {
    if text.is_empty() {
        return Err("bad port");
    }
    let mut n = 0u32;
    for b in text.bytes() {
        if !b.is_ascii_digit() {
            return Err("bad port");
        }
        n = n * 10 + u32::from(b - b'0');
        if n > u32::from(u16::MAX) {
            // Keep checking the rest: a letter after the overflow is still a bad port.
            return match text.bytes().all(|b| b.is_ascii_digit()) {
                true => Err("port out of range"),
                false => Err("bad port"),
            };
        }
    }
    Ok(n as u16)
}

/// What a byte can be in a host without brackets.
#[derive(Clone, Copy)]
enum HostByte {
    /// Not allowed.
    Bad,
    /// A digit or a dot: an IPv4 address may hold it.
    Dotted,
    /// Another host character: a letter, `-` or `_`.
    Name,
    /// The `:` before the port.
    Colon,
}

/// [`HostByte`] of every byte, as a table.
const HOST_BYTES: [HostByte; 256] = {
    let mut table = [HostByte::Bad; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = if c.is_ascii_digit() || c == b'.' {
            HostByte::Dotted
        } else if c.is_ascii_alphabetic() || c == b'-' || c == b'_' {
            HostByte::Name
        } else if c == b':' {
            HostByte::Colon
        } else {
            HostByte::Bad
        };
        b += 1;
    }
    table
};

/// Parses `host[:port]` (IPv6 in brackets).
pub(super) fn parse_hostport(text: &str) -> Result<(Host, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = split_at_byte(rest, b']').ok_or("unclosed IPv6 bracket")?;
        let v6 = v6.parse().map_err(|_| "bad IPv6 address")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after IPv6 address")?),
        };
        (Host::V6(v6), port)
    } else {
        // One pass over the host: its characters checked, the port's `:` found, and whether
        // it can be an IPv4 address (digits and dots) noted.
        let bytes = text.as_bytes();
        let mut end = 0;
        let mut dotted = true;
        while end < bytes.len() {
            match HOST_BYTES[usize::from(bytes[end])] {
                HostByte::Colon => break,
                HostByte::Dotted => {}
                HostByte::Name => dotted = false,
                HostByte::Bad => return Err("bad character in host"),
            }
            end += 1;
        }
        if end == 0 {
            return Err("empty host");
        }
        let host = &text[..end];
        let port = (end < text.len()).then(|| &text[end + 1..]);
        // No `:` and no brackets: not IPv6.
        let host = match dotted.then(|| ipv4(host)).flatten() {
            Some(v4) => Host::V4(v4),
            None => Host::Domain(host.to_string()),
        };
        (host, port)
    };
    let port = match port {
        None => None,
        Some(p) => Some(port_number(p)?),
    };
    Ok((host, port))
}

/// True when a byte is a space, an ASCII control or DEL (`b <= b' ' || b == 0x7f`), read
/// eight bytes at a time: a byte below 0x21 leaves a borrow in its top bit after subtracting
/// 0x21 from every byte; DEL is the byte that XOR 0x7f makes zero (the exact "has less" and
/// "has zero" word tests: a false hit in one byte needs a true one in a lower byte).
pub(super) fn has_space_or_control(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let below = x.wrapping_sub(ONES * 0x21) & !x & HIGH;
        let d = x ^ (ONES * 0x7f);
        let del = d.wrapping_sub(ONES) & !d & HIGH;
        if below | del != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b <= b' ' || b == 0x7f)
}

pub(crate) fn parse_uri(text: &str) -> Result<Uri, UriError> {
    let (scheme, rest) = split_at_byte(text, b':').ok_or_else(|| uri_error(text, "no scheme"))?;
    let scheme = if scheme.eq_ignore_ascii_case("sip") {
        Scheme::Sip
    } else if scheme.eq_ignore_ascii_case("sips") {
        Scheme::Sips
    } else if scheme.eq_ignore_ascii_case("tel") {
        Scheme::Tel
    } else {
        return Err(uri_error(text, "unsupported scheme"));
    };
    if rest.is_empty() || has_space_or_control(rest.as_bytes()) {
        return Err(uri_error(
            text,
            "empty or contains whitespace/control characters",
        ));
    }

    if scheme == Scheme::Tel {
        let (number, params) = split_at_byte(rest, b';').unwrap_or((rest, ""));
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

    let (main, headers) = match split_at_byte(rest, b'?') {
        Some((m, h)) => (m, Some(h)),
        None => (rest, None),
    };
    // The last `@`: a user part may hold `;` (user parameters) but not `@`.
    let (user, password, hostpart) = match memchr::memrchr(b'@', main.as_bytes()) {
        Some(at) => {
            let userinfo = &main[..at];
            let (user, password) = match split_at_byte(userinfo, b':') {
                Some((u, p)) => (u, Some(p.to_string())),
                None => (userinfo, None),
            };
            if user.is_empty() {
                return Err(uri_error(text, "empty user"));
            }
            (Some(user.to_string()), password, &main[at + 1..])
        }
        None => (None, None, main),
    };
    let (hostport, params) = split_at_byte(hostpart, b';').unwrap_or((hostpart, ""));
    let (host, port) = parse_hostport(hostport).map_err(|why| uri_error(text, why))?;
    let params = parse_params(params).map_err(|why| uri_error(text, why))?;
    let headers = match headers {
        None => Vec::new(),
        Some(h) => h
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (n, v) = split_at_byte(p, b'=').unwrap_or((p, ""));
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
    let mut rest = trim_start(value);
    let mut protocol = ["", "", ""];
    for (i, slot) in protocol.iter_mut().enumerate() {
        if i > 0 {
            rest = trim_start(rest)
                .strip_prefix('/')
                .ok_or_else(|| bad("expected `/` in sent-protocol"))?;
            rest = trim_start(rest);
        }
        let end = rest
            .bytes()
            .position(|b| b == b'/' || b.is_ascii_whitespace())
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
    let (sent_by, params) = split_at_byte(rest, b';').unwrap_or((rest, ""));
    let sent_by = trim(sent_by);
    // Whitespace around the `:` of sent-by is legal (LWS), rare, and dropped here.
    let sent_by: std::borrow::Cow<str> = if sent_by.bytes().any(|b| b == b' ' || b == b'\t') {
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
    let bytes = text.as_bytes();
    let mut out = String::new();
    let (mut copied, mut i) = (1, 1);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                out.push_str(&text[copied..i]);
                // The escaped character, whatever its length.
                let c = text[i + 1..].chars().next()?;
                out.push(c);
                i += 1 + c.len_utf8();
                copied = i;
            }
            b'"' => {
                out.push_str(&text[copied..i]);
                return Some((out, &text[i + 1..]));
            }
            _ => i += 1,
        }
    }
    None
}

pub(crate) fn parse_name_addr(value: &str) -> Result<NameAddr, ParseError> {
    let bad = |why: &str| ParseError::HeaderValue {
        header: "name-addr",
        why: format!("{why}: {}", snippet(value)),
    };
    let text = trim(value);
    let (display, rest) = if text.starts_with('"') {
        let (display, rest) = quoted_string(text).ok_or_else(|| bad("unclosed quote"))?;
        let rest = trim_start(rest);
        if !rest.starts_with('<') {
            return Err(bad("expected `<` after display name"));
        }
        (Some(display), rest)
    } else if let Some(lt) = memchr::memchr(b'<', text.as_bytes()) {
        let display = trim(&text[..lt]);
        let display = (!display.is_empty()).then(|| display.to_string());
        (display, &text[lt..])
    } else {
        (None, text)
    };

    if let Some(inner) = rest.strip_prefix('<') {
        let (uri, after) = split_at_byte(inner, b'>').ok_or_else(|| bad("unclosed `<`"))?;
        let uri = parse_uri(trim(uri))?;
        let after = trim_start(after);
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
    let search_from = memchr::memchr(b'@', rest.as_bytes()).unwrap_or(0);
    let (uri, params) = match memchr::memchr(b';', &rest.as_bytes()[search_from..]) {
        Some(i) => (&rest[..search_from + i], &rest[search_from + i + 1..]),
        None => (rest, ""),
    };
    Ok(NameAddr {
        display: None,
        uri: parse_uri(trim(uri))?,
        params: parse_params(params).map_err(bad)?,
    })
}
