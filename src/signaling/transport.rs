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
}

/// RFC 3261 §18.1.1: a request larger than this (the path MTU being unknown) goes over TCP.
pub const MAX_UDP_REQUEST: usize = 1300;

/// A transport named in a URI or on the command line that wakeline does not speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// TLS (`transport=tls`, `sips:`): not supported yet.
    #[error("SIP over TLS is not supported yet (use udp or tcp)")]
    TlsNotSupported,
    /// Any other name.
    #[error("unknown SIP transport {0:?} (use udp or tcp)")]
    Unknown(String),
}

impl Transport {
    /// The lower-case URI parameter value (`tcp`, `udp`).
    pub fn param(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }

    /// The Via transport token (`TCP`, `UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        }
    }

    /// Whether the transport is reliable (no retransmission timers, RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        self == Transport::Tcp
    }

    /// Parses a transport name (case-insensitive): `udp`, `tcp`; `tls` is refused clearly.
    pub fn parse(name: &str) -> Result<Transport, TransportError> {
        match name.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Transport::Tcp),
            "udp" => Ok(Transport::Udp),
            "tls" => Err(TransportError::TlsNotSupported),
            other => Err(TransportError::Unknown(other.to_string())),
        }
    }

    /// The transport for `uri`: its `transport` parameter, else `default`. `sips:` is TLS.
    pub fn for_uri(uri: &Uri, default: Transport) -> Result<Transport, TransportError> {
        if uri.scheme == super::message::Scheme::Sips {
            return Err(TransportError::TlsNotSupported);
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
    fn uri_parameter_wins_over_the_default_and_tls_is_refused() {
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
        assert_eq!(
            Transport::for_uri(&tls, Transport::Tcp),
            Err(TransportError::TlsNotSupported)
        );
        assert_eq!(
            Transport::for_uri(&sips, Transport::Udp),
            Err(TransportError::TlsNotSupported)
        );
        assert!(matches!(
            "sctp".parse::<Transport>(),
            Err(TransportError::Unknown(_))
        ));
        assert!(!Transport::Udp.is_reliable() && Transport::Tcp.is_reliable());
        assert_eq!(Transport::Udp.via_token(), "UDP");
    }
}
