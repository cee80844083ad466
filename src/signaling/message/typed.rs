//! Typed views of header values that we parse ourselves (rsip mangles several of them).

use super::{Host, Method, Uri};
use std::fmt;

/// Generic `;name=value` parameters, names compared case-insensitively, order kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// The value of a parameter; `Some(None)` for a flag parameter such as `;lr`.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// True when the parameter is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets (replaces) a parameter.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_string);
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// A CSeq value: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number (31-bit per RFC 3261, kept as u32).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

/// One Via element: `SIP/2.0/TCP host:port;branch=...;received=...;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token, uppercased (`TCP`, `UDP`, `TLS`, `WS`...).
    pub transport: String,
    /// sent-by host (IPv6 without brackets in [`Host::V6`]).
    pub host: Host,
    /// sent-by port.
    pub port: Option<u16>,
    /// Parameters (`branch`, `received`, `rport`, ...).
    pub params: Params,
}

/// `name-addr` or `addr-spec` with header parameters: From, To, Contact, Route, Record-Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters after the URI (`tag`, `expires`, `+sip.instance`, ...).
    pub params: Params,
}

impl CSeq {
    /// Parses `4711 INVITE`.
    pub fn parse(value: &str) -> Result<CSeq, super::ParseError> {
        super::values::parse_cseq(value)
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

impl Via {
    /// Parses one Via element (not a comma list).
    pub fn parse(value: &str) -> Result<Via, super::ParseError> {
        super::values::parse_via(value)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }

    /// The `received` parameter (an IP address, IPv6 without brackets kept whole).
    pub fn received(&self) -> Option<&str> {
        self.params.get("received").flatten()
    }

    /// The `rport` parameter value, if it carries one.
    pub fn rport(&self) -> Option<u16> {
        self.params
            .get("rport")
            .flatten()
            .and_then(|p| p.parse().ok())
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

impl NameAddr {
    /// Parses `"Alice" <sip:alice@example.com>;tag=1928` or a bare `sip:alice@example.com;tag=1`
    /// (where, per RFC 3261 §20, the parameters belong to the header, not the URI).
    pub fn parse(value: &str) -> Result<NameAddr, super::ParseError> {
        super::values::parse_name_addr(value)
    }

    /// A name-addr for a URI with no display name or parameters.
    pub fn new(uri: Uri) -> Self {
        NameAddr {
            display: None,
            uri,
            params: Params::default(),
        }
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }
}

impl fmt::Display for NameAddr {
    /// Always writes the `<...>` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "\"{}\" ", d.replace('\\', "\\\\").replace('"', "\\\""))?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// Splits a header value at top-level commas (not inside quotes or `<...>`), trimming each part
/// and skipping empty ones.
pub(crate) fn split_list(value: &str) -> SplitList<'_> {
    SplitList { rest: Some(value) }
}

/// The iterator of [`split_list`]: each element is found when it is asked for, so reading the
/// first (the top Via) does not scan the rest.
pub(crate) struct SplitList<'a> {
    rest: Option<&'a str>,
}

impl<'a> SplitList<'a> {
    /// The next element, possibly empty.
    fn next_part(&mut self) -> Option<&'a str> {
        let value = self.rest?;
        let bytes = value.as_bytes();
        let (mut in_quote, mut in_angle) = (false, false);
        let mut i = 0;
        // Jumps to the next byte that matters in the current state: inside quotes `\` and `"`,
        // inside `<...>` `"` and `>`, elsewhere `"`, `<` and the `,` that ends the element.
        loop {
            let rest = &bytes[i..];
            let found = if in_quote {
                memchr::memchr2(b'\\', b'"', rest)
            } else if in_angle {
                memchr::memchr2(b'"', b'>', rest)
            } else {
                memchr::memchr3(b'"', b'<', b',', rest)
            };
            let Some(at) = found else { break };
            i += at;
            match bytes[i] {
                b'\\' => i += 1, // in a quote: the next byte is escaped
                b'"' => in_quote = !in_quote,
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                _ => {
                    // `,` is ASCII: both sides are char boundaries.
                    self.rest = Some(&value[i + 1..]);
                    return Some(super::parse::trim(&value[..i]));
                }
            }
            i += 1;
            if i >= bytes.len() {
                break;
            }
        }
        self.rest = None;
        Some(super::parse::trim(value))
    }
}

impl<'a> Iterator for SplitList<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let part = self.next_part()?;
            if !part.is_empty() {
                return Some(part);
            }
        }
    }
}
