//! An ordered list of header fields with typed accessors.

use super::{CSeq, HeaderName, NameAddr, Via};
use std::sync::OnceLock;

/// One header field: canonical name, value exactly as received (unfolded, trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name.
    pub name: HeaderName,
    /// The value, unfolded and trimmed of surrounding whitespace.
    pub value: String,
}

/// All header fields of a message, in order. Unknown headers are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<Header>,
    parsed: Parsed,
}

/// The fields every layer reads (top Via, From, To, CSeq), parsed together at the first read of one
/// of them and kept until the list changes: a request passes the checks, the transaction, the
/// ledger and the dialog, which would otherwise parse each of them again. Boxed: a message
/// grows by 16 bytes, not by the size of the parsed forms.
#[derive(Clone, Default)]
struct Parsed(OnceLock<Box<ParsedFields>>);

#[derive(Clone)]
struct ParsedFields {
    top_via: Option<Via>,
    from: Option<NameAddr>,
    to: Option<NameAddr>,
    cseq: Option<CSeq>,
}

/// A cache of the fields: two lists are equal when their fields are.
impl PartialEq for Parsed {
    fn eq(&self, _: &Parsed) -> bool {
        true
    }
}

impl Eq for Parsed {}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

impl Headers {
    /// An empty list with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        Headers {
            fields: Vec::with_capacity(n),
            parsed: Parsed::default(),
        }
    }

    /// A list of these fields, in this order.
    pub(super) fn from_fields(fields: Vec<Header>) -> Self {
        Headers {
            fields,
            parsed: Parsed::default(),
        }
    }

    /// The fields, to change: what was parsed from them is dropped.
    fn fields_mut(&mut self) -> &mut Vec<Header> {
        self.parsed = Parsed::default();
        &mut self.fields
    }

    /// Appends a header field.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.fields_mut().push(Header {
            name,
            value: value.into(),
        });
    }

    /// Inserts a header field before all others (e.g. a new top Via).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<String>) {
        self.fields_mut().insert(
            0,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// Replaces every field of that name by one with `value` (at the first one's place).
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        let fields = self.fields_mut();
        match fields.iter().position(|h| h.name == name) {
            Some(i) => {
                fields[i].value = value;
                let mut j = 0;
                fields.retain(|h| {
                    let keep = h.name != name || j == i;
                    j += 1;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }

    /// Removes every field of that name.
    pub fn remove(&mut self, name: &HeaderName) {
        self.fields_mut().retain(|h| &h.name != name);
    }

    /// The first value of that name.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.fields
            .iter()
            .find(|h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Every value of that name, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Every comma-separated element of every field of that name, trimmed; commas inside quotes
    /// or `<...>` do not split (so `Route: <sip:a;lr>, <sip:b;lr>` gives two).
    pub fn list<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name).flat_map(super::typed::split_list)
    }

    /// RFC 3261 §18.2.1 and RFC 3581 §4, server side: stamps the top Via of a received request
    /// with `received` (the packet's source address, when it differs from the sent-by host or
    /// `rport` was asked for) and fills a valueless `rport` with the source port. Responses copy
    /// the Via, so they say where they went. Returns false when there is no readable top Via.
    pub fn stamp_received(&mut self, source: std::net::SocketAddr) -> bool {
        let Some(i) = self.fields.iter().position(|h| h.name == HeaderName::Via) else {
            return false;
        };
        let elements: Vec<String> = super::typed::split_list(&self.fields[i].value)
            .map(str::to_string)
            .collect();
        let Some(mut via) = elements.first().and_then(|v| Via::parse(v).ok()) else {
            return false;
        };
        let ip = source.ip().to_string();
        let asked_rport = via.params.get("rport") == Some(None);
        if asked_rport || via.host != super::Host::from(source.ip()) {
            via.params.set("received", Some(&ip));
        }
        if asked_rport {
            via.params.set("rport", Some(&source.port().to_string()));
        }
        let mut value = via.to_string();
        for rest in &elements[1..] {
            value.push_str(", ");
            value.push_str(rest);
        }
        self.fields_mut()[i].value = value;
        true
    }

    /// All fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.fields.iter()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.get(&HeaderName::CallId)
    }

    /// The CSeq, parsed.
    pub fn cseq(&self) -> Option<CSeq> {
        self.parsed().cseq.clone()
    }

    /// The topmost Via, parsed (the first element of the first Via field).
    pub fn top_via(&self) -> Option<&Via> {
        self.parsed().top_via.as_ref()
    }

    /// The From header, parsed.
    pub fn from(&self) -> Option<&NameAddr> {
        self.parsed().from.as_ref()
    }

    /// The To header, parsed.
    pub fn to(&self) -> Option<&NameAddr> {
        self.parsed().to.as_ref()
    }

    fn parsed(&self) -> &ParsedFields {
        self.parsed.0.get_or_init(|| {
            let name_addr = |name| self.get(name).and_then(|v| NameAddr::parse(v).ok());
            Box::new(ParsedFields {
                top_via: self
                    .list(&HeaderName::Via)
                    .next()
                    .and_then(|v| Via::parse(v).ok()),
                from: name_addr(&HeaderName::From),
                to: name_addr(&HeaderName::To),
                cseq: self
                    .get(&HeaderName::CSeq)
                    .and_then(|v| CSeq::parse(v).ok()),
            })
        })
    }

    /// Every Contact element, parsed (a `*` Contact is not a NameAddr and is skipped).
    pub fn contacts(&self) -> Vec<NameAddr> {
        self.list(&HeaderName::Contact)
            .filter(|v| v.trim() != "*")
            .filter_map(|v| NameAddr::parse(v).ok())
            .collect()
    }

    /// Every Record-Route element, parsed, in order.
    pub fn record_routes(&self) -> Vec<NameAddr> {
        self.list(&HeaderName::RecordRoute)
            .filter_map(|v| NameAddr::parse(v).ok())
            .collect()
    }

    /// The Content-Length value, if present and numeric.
    pub fn content_length(&self) -> Option<usize> {
        self.get(&HeaderName::ContentLength)
            .and_then(|v| v.trim().parse().ok())
    }

    /// The Content-Type value (media type, lowercased, parameters dropped).
    pub fn content_type(&self) -> Option<String> {
        self.get(&HeaderName::ContentType).map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// The Expires value in seconds.
    pub fn expires(&self) -> Option<u32> {
        self.get(&HeaderName::Expires)
            .and_then(|v| v.trim().parse().ok())
    }

    /// The option tags of every field of that name (Require, Supported, Proxy-Require, ...).
    pub fn tokens<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.list(name).filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_seen_by_the_next_read_of_a_parsed_field() {
        let mut h = Headers::default();
        h.push(HeaderName::From, "<sip:a@example.com>;tag=1");
        h.push(HeaderName::Via, "SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1");
        assert_eq!(h.from().unwrap().tag(), Some("1"));
        assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert!(h.to().is_none());
        let before = h.clone();
        h.set(HeaderName::From, "<sip:a@example.com>;tag=2");
        h.push_front(HeaderName::Via, "SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK2");
        h.push(HeaderName::To, "<sip:b@example.com>");
        assert_eq!(h.from().unwrap().tag(), Some("2"));
        assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK2"));
        assert!(h.to().is_some());
        h.remove(&HeaderName::From);
        assert!(h.from().is_none());
        assert_eq!(
            before.from().unwrap().tag(),
            Some("1"),
            "a clone keeps its own"
        );
        let mut read = before.clone();
        assert!(read.top_via().is_some());
        assert_eq!(
            read,
            before.clone(),
            "what was read does not change equality"
        );
        read.stamp_received("198.51.100.7:5060".parse().unwrap());
        assert!(read.top_via().unwrap().received().is_some());
    }

    #[test]
    fn stamp_received_fills_rport_and_received_on_the_top_via_only() {
        let mut h = Headers::default();
        h.push(
            HeaderName::Via,
            "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;rport, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb",
        );
        let src: std::net::SocketAddr = "198.51.100.7:40001".parse().unwrap();
        assert!(h.stamp_received(src));
        let top = h.top_via().unwrap();
        assert_eq!(top.received(), Some("198.51.100.7"));
        assert_eq!(top.rport(), Some(40001));
        assert_eq!(top.branch(), Some("z9hG4bKa"));
        assert_eq!(h.list(&HeaderName::Via).count(), 2);
        // Same host, no rport: nothing to add.
        let mut h = Headers::default();
        h.push(
            HeaderName::Via,
            "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKc",
        );
        assert!(h.stamp_received(src));
        assert_eq!(h.top_via().unwrap().received(), None);
        assert!(!Headers::default().stamp_received(src));
    }
}
