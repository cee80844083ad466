//! Address queries for the driver: which local address a call's signaling uses and where its
//! next hop is, so the media address announced in SDP is one the peer can reach (issue 8 §1).
//! Read-only views of the core's state; nothing here changes it.

use super::{CallHandle, SignalingCore};
use crate::signaling::message::{Host, Uri};
use std::net::{IpAddr, SocketAddr};

/// The local and remote address of a flow that is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowAddrs {
    /// Our end (the socket's `local_addr`).
    pub local: SocketAddr,
    /// The peer's end.
    pub remote: SocketAddr,
}

/// The host part of a URI as a string a resolver takes (no brackets around IPv6).
fn host_of(uri: &Uri) -> String {
    match &uri.host {
        Host::Domain(d) => d.clone(),
        Host::V4(a) => a.to_string(),
        Host::V6(a) => a.to_string(),
    }
}

/// Appends `addr` as its `Display` writes it (`192.0.2.1:5060`, `[2001:db8::1]:5060`); an
/// IPv4 address digit by digit, without the formatting machinery (every 1xx/2xx Contact).
pub(crate) fn push_socket_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u16::from(octet));
            }
            out.push(':');
            push_decimal(out, a.port());
        }
        SocketAddr::V6(_) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{addr}");
        }
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, n: u16) {
    out.push_str(itoa::Buffer::new().format(n));
}

impl SignalingCore {
    fn flow_addrs(&self, flow: super::FlowId) -> Option<FlowAddrs> {
        let f = self.flows.get(&flow).filter(|f| f.up)?;
        Some(FlowAddrs {
            local: f.local?,
            remote: f.remote?,
        })
    }

    /// The addresses of the flow `call`'s signaling is on, once that flow is up.
    pub fn call_flow_addrs(&self, call: CallHandle) -> Option<FlowAddrs> {
        self.flow_addrs(self.calls.get(&call)?.flow)
    }

    /// The control flow's addresses, when it is up.
    pub fn control_flow_addrs(&self) -> Option<FlowAddrs> {
        self.flow_addrs(self.control.flow?)
    }

    /// The audio address of the peer's offer (UAS), if it had one.
    pub fn call_offer_address(&self, call: CallHandle) -> Option<IpAddr> {
        self.calls.get(&call)?.offer.as_ref()?.audio_address()
    }

    /// Where a call's signaling goes first, as `(host, port)`: the outbound proxy or the
    /// registrar when there is an account (calls ride the control flow), else `target`.
    pub fn next_hop(&self, target: Option<&Uri>) -> Option<(String, u16)> {
        let uri = match &self.config.account {
            Some(a) => a.proxy.as_ref().unwrap_or(&a.registrar),
            None => target?,
        };
        Some((host_of(uri), uri.port.unwrap_or(5060)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::config::Config;
    use std::time::Instant;

    #[test]
    fn socket_addresses_are_pushed_as_display_writes_them() {
        for text in [
            "0.0.0.0:0",
            "127.0.0.1:5060",
            "192.0.2.255:65535",
            "10.20.100.9:10",
            "[2001:db8::7]:5080",
            "[::1]:9",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let mut out = String::from("x@");
            push_socket_addr(&mut out, addr);
            assert_eq!(out, format!("x@{addr}"));
            assert_eq!(out, format!("x@{text}"));
        }
    }

    #[test]
    fn next_hop_is_the_proxy_then_the_registrar_then_the_target() {
        let target = Uri::parse("sip:bob@[2001:db8::7]:5080;transport=tcp").unwrap();
        let core = SignalingCore::new(Config::default());
        assert_eq!(
            core.next_hop(Some(&target)),
            Some(("2001:db8::7".into(), 5080))
        );
        assert_eq!(core.next_hop(None), None);
        let mut config = Config::default();
        config.account = Some(crate::signaling::config::Account {
            registrar: Uri::parse("sip:reg.example.test").unwrap(),
            user: "alice".into(),
            domain: "example.test".into(),
            password: None,
            auth_user: None,
            proxy: None,
        });
        let core = SignalingCore::new(config.clone());
        assert_eq!(core.next_hop(None), Some(("reg.example.test".into(), 5060)));
        if let Some(a) = config.account.as_mut() {
            a.proxy = Some(Uri::parse("sip:192.0.2.9:5070").unwrap());
        }
        let core = SignalingCore::new(config);
        assert_eq!(
            core.next_hop(Some(&target)),
            Some(("192.0.2.9".into(), 5070))
        );
    }

    #[test]
    fn an_accepted_flow_gives_the_accepting_address() {
        let mut core = SignalingCore::new(Config::default());
        let local: SocketAddr = "192.0.2.1:5070".parse().unwrap();
        let remote: SocketAddr = "192.0.2.2:40000".parse().unwrap();
        let flow = core.handle_flow_accepted(Instant::now(), local, remote);
        assert_eq!(core.flow_addrs(flow), Some(FlowAddrs { local, remote }));
        assert_eq!(core.control_flow_addrs(), None);
        assert_eq!(core.call_flow_addrs(CallHandle::testing(99)), None);
    }
}
