//! SIP/SIPS/tel URIs, parsed by us (rsip rejects IPv6 hosts and `tel:`, and mishandles
//! URI parameters).

use super::Params;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966); the number is in [`Uri::user`], host is empty.
    Tel,
}

/// A host: domain name, IPv4 or IPv6 address (written in brackets, RFC 5118).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, kept as received.
    Domain(String),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address (brackets stripped).
    V6(Ipv6Addr),
}

/// A parsed URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// Scheme.
    pub scheme: Scheme,
    /// The userinfo user part (unescaped as received), or the number of a `tel:` URI.
    pub user: Option<String>,
    /// The userinfo password part (rarely used, kept).
    pub password: Option<String>,
    /// The host (a `tel:` URI has `Host::Domain("")`).
    pub host: Host,
    /// The port.
    pub port: Option<u16>,
    /// URI parameters (`transport`, `lr`, `ob`, ...).
    pub params: Params,
    /// URI headers (`?name=value&...`), kept as received.
    pub headers: Vec<(String, String)>,
}

/// Why a URI did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URI {uri:?}: {why}")]
pub struct UriError {
    /// The offending text (truncated to 200 characters).
    pub uri: String,
    /// What was wrong.
    pub why: &'static str,
}

impl Uri {
    /// Parses a URI (`sip:`, `sips:`, `tel:`). Schemes are case-insensitive.
    pub fn parse(text: &str) -> Result<Uri, UriError> {
        super::values::parse_uri(text)
    }

    /// `sip:host:port` with no user or parameters.
    pub fn sip(host: Host, port: Option<u16>) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: None,
            password: None,
            host,
            port,
            params: Params::default(),
            headers: Vec::new(),
        }
    }

    /// The `transport` URI parameter, lowercased.
    pub fn transport(&self) -> Option<String> {
        self.params
            .get("transport")
            .flatten()
            .map(|t| t.to_ascii_lowercase())
    }
}

impl Host {
    /// Parses a host: `[v6]`, bare v6, v4, or a domain name.
    pub fn parse(text: &str) -> Host {
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        // Every IPv6 address has a `:`; a name or an IPv4 address has none.
        if memchr::memchr(b':', inner.as_bytes()).is_some() {
            if let Ok(v6) = inner.parse::<Ipv6Addr>() {
                return Host::V6(v6);
            }
        } else if let Some(v4) = super::values::ipv4(inner) {
            return Host::V4(v4);
        }
        Host::Domain(text.to_string())
    }
}

impl From<std::net::IpAddr> for Host {
    fn from(ip: std::net::IpAddr) -> Self {
        match ip {
            std::net::IpAddr::V4(a) => Host::V4(a),
            std::net::IpAddr::V6(a) => Host::V6(a),
        }
    }
}

impl fmt::Display for Host {
    /// IPv6 is written in brackets (RFC 5118).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Scheme::Sip => f.write_str("sip:")?,
            Scheme::Sips => f.write_str("sips:")?,
            Scheme::Tel => {
                f.write_str("tel:")?;
                if let Some(u) = &self.user {
                    f.write_str(u)?;
                }
                return write!(f, "{}", self.params);
            }
        }
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}
