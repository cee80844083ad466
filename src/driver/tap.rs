//! A capture hook: the application sees every SIP message and RTP/RTCP datagram the driver sends
//! and receives, with the addresses of its flow or socket (the CLI's `--pcap`).

use crate::signaling::core::FlowId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Receives copies of what goes over the wire. Called on the driver's tasks: keep it quick.
pub trait PacketTap: Send + Sync {
    /// SIP bytes on a TCP flow (`sent`: by us), as they were written or read (may be a partial
    /// message or several messages).
    fn sip(&self, sent: bool, local: SocketAddr, remote: SocketAddr, bytes: &[u8]);
    /// A UDP datagram: RTP or RTCP on a call's media socket, or one SIP message over UDP.
    fn rtp(&self, sent: bool, local: SocketAddr, remote: SocketAddr, bytes: &[u8]);
}

/// The installed tap (none by default) and the addresses of the flows it has seen.
#[derive(Clone, Default)]
pub struct Tap {
    inner: Option<Arc<dyn PacketTap>>,
    flows: Arc<Mutex<HashMap<FlowId, (SocketAddr, SocketAddr)>>>,
}

impl Tap {
    /// A tap that forwards to `tap`.
    pub fn new(tap: Arc<dyn PacketTap>) -> Self {
        Tap {
            inner: Some(tap),
            flows: Arc::default(),
        }
    }

    pub(crate) fn flow_up(&self, flow: FlowId, local: SocketAddr, remote: SocketAddr) {
        if self.inner.is_some() {
            if let Ok(mut f) = self.flows.lock() {
                f.insert(flow, (local, remote));
            }
        }
    }

    pub(crate) fn sip(&self, sent: bool, flow: FlowId, bytes: &[u8]) {
        let Some(tap) = &self.inner else { return };
        let addrs = self.flows.lock().ok().and_then(|f| f.get(&flow).copied());
        if let Some((local, remote)) = addrs {
            tap.sip(sent, local, remote, bytes);
        }
    }

    /// Whether a tap is installed.
    pub(crate) fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// A datagram between these addresses (SIP over UDP).
    pub(crate) fn datagram(&self, sent: bool, local: SocketAddr, remote: SocketAddr, bytes: &[u8]) {
        if let Some(tap) = &self.inner {
            tap.rtp(sent, local, remote, bytes);
        }
    }

    pub(crate) fn udp(
        &self,
        sent: bool,
        socket: &tokio::net::UdpSocket,
        peer: SocketAddr,
        bytes: &[u8],
    ) {
        let Some(tap) = &self.inner else { return };
        if let Ok(local) = socket.local_addr() {
            tap.rtp(sent, local, peer, bytes);
        }
    }
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.inner.is_some() {
            "Tap(on)"
        } else {
            "Tap(off)"
        })
    }
}

impl PartialEq for Tap {
    fn eq(&self, other: &Self) -> bool {
        match (&self.inner, &other.inner) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(bool, SocketAddr, SocketAddr, usize)>>);
    impl PacketTap for Seen {
        fn sip(&self, sent: bool, l: SocketAddr, r: SocketAddr, b: &[u8]) {
            self.0.lock().unwrap().push((sent, l, r, b.len()));
        }
        fn rtp(&self, _: bool, _: SocketAddr, _: SocketAddr, _: &[u8]) {}
    }

    #[test]
    fn sip_carries_the_flow_addresses() {
        let seen = Arc::new(Seen::default());
        let tap = Tap::new(seen.clone());
        let (l, r): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        tap.sip(true, FlowId(1), b"lost"); // unknown flow: dropped
        tap.flow_up(FlowId(1), l, r);
        tap.sip(false, FlowId(1), b"INVITE");
        assert_eq!(*seen.0.lock().unwrap(), vec![(false, l, r, 6)]);
        assert_eq!(tap, tap.clone());
        assert_ne!(tap, Tap::default());
    }
}
