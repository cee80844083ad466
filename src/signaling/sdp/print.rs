//! Printing session descriptions: every line written with `write_str` into one buffer, in the
//! order RFC 4566 §5 prescribes (the `Display` impls of the types in [`super::parse`]).

use std::fmt;
use std::net::IpAddr;

use super::parse::{
    addr_type, Attribute, Connection, MediaDescription, Origin, SessionDescription,
};

impl Attribute {
    /// Writes the line(s) (what `Display` prints).
    pub(super) fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        f.write_str("a=")?;
        f.write_str(&self.name)?;
        if let Some(v) = &self.value {
            f.write_str(":")?;
            f.write_str(v)?;
        }
        Ok(())
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// Writes `n` in decimal (what `{n}` writes, without the formatting machinery).
pub(super) fn write_number(f: &mut impl fmt::Write, n: u64) -> fmt::Result {
    f.write_str(itoa::Buffer::new().format(n))
}

/// `n` in decimal, as `n.to_string()` gives it.
pub(super) fn decimal(n: u64) -> String {
    itoa::Buffer::new().format(n).to_owned()
}

/// Writes an address as `Display` does (IPv4 in dotted quad, IPv6 by the standard library).
pub(super) fn write_address(f: &mut impl fmt::Write, address: IpAddr) -> fmt::Result {
    match address {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    f.write_str(".")?;
                }
                write_number(f, u64::from(octet))?;
            }
            Ok(())
        }
        IpAddr::V6(_) => write!(f, "{address}"),
    }
}

impl Connection {
    /// Writes the line(s) (what `Display` prints).
    pub(super) fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        f.write_str("c=IN ")?;
        f.write_str(addr_type(self.address))?;
        f.write_str(" ")?;
        write_address(f, self.address)
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Origin {
    /// Writes the line(s) (what `Display` prints).
    pub(super) fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        for (before, field) in [
            ("o=", &self.username),
            (" ", &self.session_id),
            (" ", &self.session_version),
            (" IN ", &self.address_type),
            (" ", &self.address),
        ] {
            f.write_str(before)?;
            f.write_str(field)?;
        }
        Ok(())
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl MediaDescription {
    /// Writes the line(s) (what `Display` prints).
    pub(super) fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        f.write_str("m=")?;
        f.write_str(&self.media)?;
        f.write_str(" ")?;
        write_number(f, u64::from(self.port))?;
        if let Some(n) = self.port_count {
            f.write_str("/")?;
            write_number(f, u64::from(n))?;
        }
        f.write_str(" ")?;
        f.write_str(&self.protocol)?;
        f.write_str(" ")?;
        for (i, format) in self.formats.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(format)?;
        }
        f.write_str("\r\n")?;
        write_lines(f, &self.other, &['i'])?;
        if let Some(c) = &self.connection {
            c.write_to(f)?;
            f.write_str("\r\n")?;
        }
        write_lines(f, &self.other, &['b', 'k'])?;
        write_unlisted(f, &self.other, &['i', 'b', 'k'])?;
        for a in &self.attributes {
            a.write_to(f)?;
            f.write_str("\r\n")?;
        }
        Ok(())
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// Writes the `other` lines whose type is in `kinds`, in the order of `kinds`.
fn write_lines(f: &mut impl fmt::Write, other: &[(char, String)], kinds: &[char]) -> fmt::Result {
    if other.is_empty() {
        return Ok(());
    }
    for k in kinds {
        for (kind, v) in other.iter().filter(|(kind, _)| kind == k) {
            write_line(f, *kind, v)?;
        }
    }
    Ok(())
}

/// Writes the `other` lines whose type is not in `known`.
fn write_unlisted(
    f: &mut impl fmt::Write,
    other: &[(char, String)],
    known: &[char],
) -> fmt::Result {
    for (kind, v) in other.iter().filter(|(k, _)| !known.contains(k)) {
        write_line(f, *kind, v)?;
    }
    Ok(())
}

/// Writes `<kind>=<value>` and CRLF.
fn write_line(f: &mut impl fmt::Write, kind: char, value: &str) -> fmt::Result {
    let mut buf = [0u8; 4];
    f.write_str(kind.encode_utf8(&mut buf))?;
    f.write_str("=")?;
    f.write_str(value)?;
    f.write_str("\r\n")
}

impl SessionDescription {
    /// Writes the description (what `Display` prints).
    pub(super) fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        f.write_str("v=0\r\n")?;
        self.origin.write_to(f)?;
        f.write_str("\r\ns=")?;
        f.write_str(&self.session_name)?;
        f.write_str("\r\n")?;
        write_lines(f, &self.other, &['i', 'u', 'e', 'p'])?;
        if let Some(c) = &self.connection {
            c.write_to(f)?;
            f.write_str("\r\n")?;
        }
        write_lines(f, &self.other, &['b'])?;
        if self.timing.is_empty() {
            f.write_str("t=0 0\r\n")?;
        }
        for (start, stop) in &self.timing {
            f.write_str("t=")?;
            write_number(f, *start)?;
            f.write_str(" ")?;
            write_number(f, *stop)?;
            f.write_str("\r\n")?;
        }
        write_lines(f, &self.other, &['r', 'z', 'k'])?;
        let known = ['i', 'u', 'e', 'p', 'b', 'r', 'z', 'k'];
        write_unlisted(f, &self.other, &known)?;
        for a in &self.attributes {
            a.write_to(f)?;
            f.write_str("\r\n")?;
        }
        for m in &self.media {
            m.write_to(f)?;
        }
        Ok(())
    }
}

impl fmt::Display for SessionDescription {
    /// Printed into one buffer first: the target (usually a fresh `String` from `to_string`)
    /// then grows once, not once per doubling.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(512);
        self.write_to(&mut out)?;
        f.write_str(&out)
    }
}
