//! The SIP transports (RFC 3261 §18) a flow can use, and how a URI picks one.

use super::message::Uri;
use std::fmt;

/// A SIP transport. TCP is the default: the control flow is the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// SIP over TCP (reliable; messages framed by Content-Length).
    #[default]
    Tcp,
    /// SIP over UDP (unreliable; one message per datagram; timers A, E, G retransmit).
    Udp,
    /// SIP over TLS over TCP (RFC 3261 §26.2; `sips:` URIs and `transport=tls`): reliable,
    /// framed like TCP; keep-alive pings (RFC 5626 CRLFCRLF) run inside the TLS session.
    Tls,
}

/// RFC 3261 §18.1.1: a request larger than this (the path MTU being unknown) goes over TCP.
pub const MAX_UDP_REQUEST: usize = 1300;

/// A transport named in a URI or on the command line that wakeline does not speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Any name other than `udp`, `tcp`, `tls`.
    #[error("unknown SIP transport {0:?} (use udp, tcp or tls)")]
    Unknown(String),
}

impl Transport {
    /// The lower-case URI parameter value (`tcp`, `udp`, `tls`).
    pub fn param(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Tls => "tls",
        }
    }

    /// The Via transport token (`TCP`, `UDP`, `TLS`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
            Transport::Tls => "TLS",
        }
    }

    /// Whether the transport is reliable (no retransmission timers, RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        self != Transport::Udp
    }

    /// Parses a transport name (case-insensitive): `udp`, `tcp`, `tls`.
    pub fn parse(name: &str) -> Result<Transport, TransportError> {
        match name.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Transport::Tcp),
            "udp" => Ok(Transport::Udp),
            "tls" => Ok(Transport::Tls),
            other => Err(TransportError::Unknown(other.to_string())),
        }
    }

    /// The transport for `uri`: its `transport` parameter, else `default`. A `sips:` URI is
    /// always TLS (RFC 3261 §26.2.2: `transport=tcp` on it still means TLS over TCP; UDP is
    /// refused rather than downgraded).
    pub fn for_uri(uri: &Uri, default: Transport) -> Result<Transport, TransportError> {
        if uri.scheme == super::message::Scheme::Sips {
            return match uri.transport().map(|t| Transport::parse(&t)) {
                Some(Ok(Transport::Udp)) => Err(TransportError::Unknown("udp on sips:".into())),
                Some(Err(e)) => Err(e),
                _ => Ok(Transport::Tls),
            };
        }
        match uri.transport() {
            Some(t) => Transport::parse(&t),
            None => Ok(default),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.param())
    }
}

impl std::str::FromStr for Transport {
    type Err = TransportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transport::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parameter_wins_over_the_default_and_sips_is_tls() {
        let udp = Uri::parse("sip:bob@192.0.2.1;transport=UDP").unwrap();
        let none = Uri::parse("sip:bob@192.0.2.1").unwrap();
        let tls = Uri::parse("sip:bob@192.0.2.1;transport=tls").unwrap();
        let sips = Uri::parse("sips:bob@192.0.2.1").unwrap();
        assert_eq!(Transport::for_uri(&udp, Transport::Tcp), Ok(Transport::Udp));
        assert_eq!(
            Transport::for_uri(&none, Transport::Udp),
            Ok(Transport::Udp)
        );
        assert_eq!(
            Transport::for_uri(&none, Transport::Tcp),
            Ok(Transport::Tcp)
        );
        assert_eq!(Transport::for_uri(&tls, Transport::Tcp), Ok(Transport::Tls));
        assert_eq!(
            Transport::for_uri(&sips, Transport::Udp),
            Ok(Transport::Tls)
        );
        let sips_tcp = Uri::parse("sips:bob@192.0.2.1;transport=tcp").unwrap();
        let sips_udp = Uri::parse("sips:bob@192.0.2.1;transport=udp").unwrap();
        assert_eq!(
            Transport::for_uri(&sips_tcp, Transport::Udp),
            Ok(Transport::Tls)
        );
        assert!(Transport::for_uri(&sips_udp, Transport::Tcp).is_err());
        assert!(Transport::Tls.is_reliable());
        assert_eq!(Transport::Tls.via_token(), "TLS");
        assert!(matches!(
            "sctp".parse::<Transport>(),
            Err(TransportError::Unknown(_))
        ));
        assert!(!Transport::Udp.is_reliable() && Transport::Tcp.is_reliable());
        assert_eq!(Transport::Udp.via_token(), "UDP");
    }
}
