//! SIP over UDP in the driver: one UDP socket (the listener's address, or an ephemeral port
//! made on first need), a reader task that hands each datagram to the driver loop, and the
//! "connect" of a UDP flow — resolve the peer and report our address toward it.

use super::flow::FlowEvent;
use super::resolve::{Lookup, Resolver};
use crate::signaling::core::FlowId;
use crate::signaling::rfc3263::{Policy, Target, Transport};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Peers whose routed local address the reader remembers.
const ROUTE_CACHE: usize = 1024;

/// Receive buffer: one byte more than the core takes, so an oversize datagram is seen as such.
const RECV_BUF: usize = crate::signaling::datagram::MAX_DATAGRAM + 1;

/// The driver's SIP UDP socket.
#[derive(Debug)]
pub(crate) struct UdpSip {
    socket: Option<Arc<UdpSocket>>,
    reader: Option<tokio::task::JoinHandle<()>>,
    events: mpsc::UnboundedSender<FlowEvent>,
}

impl Drop for UdpSip {
    fn drop(&mut self) {
        if let Some(r) = &self.reader {
            r.abort();
        }
    }
}

impl UdpSip {
    /// The listener's socket (`listen --bind`), or none until one is needed.
    pub(crate) fn new(
        listen: Option<std::net::UdpSocket>,
        events: mpsc::UnboundedSender<FlowEvent>,
    ) -> Self {
        let mut me = UdpSip {
            socket: None,
            reader: None,
            events,
        };
        if let Some(s) = listen {
            if let Err(e) = me.adopt(s) {
                tracing::warn!("SIP UDP socket unusable, UDP not taken: {e}");
            }
        }
        me
    }

    fn adopt(&mut self, s: std::net::UdpSocket) -> io::Result<Arc<UdpSocket>> {
        s.set_nonblocking(true)?;
        // A target that answers ICMP port unreachable fails over at once, not after Timer F.
        if let Err(e) = crate::platform::udp_errors::report_udp_errors(&s) {
            tracing::debug!("SIP UDP socket: no ICMP error reports: {e}");
        }
        let socket = Arc::new(UdpSocket::from_std(s)?);
        let bound = socket.local_addr()?;
        self.reader = Some(tokio::spawn(read_loop(
            socket.clone(),
            bound,
            self.events.clone(),
        )));
        self.socket = Some(socket.clone());
        Ok(socket)
    }

    /// The socket, bound now to an ephemeral port of `peer`'s family if there is none.
    fn ensure(&mut self, peer: Option<IpAddr>) -> io::Result<Arc<UdpSocket>> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        let any = match peer {
            Some(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let s = std::net::UdpSocket::bind(SocketAddr::new(any, 0))?;
        self.adopt(s)
    }

    /// `Output::Connect` over UDP: resolves `dest` the RFC 3263 way in the background (UDP
    /// targets only: `SIP+D2U`, `_sip._udp`, else A/AAAA), takes the first target of the
    /// socket's family (targets in `avoid`, recently timed out, go last) and reports
    /// [`FlowEvent::Tried`] (whether other targets remain for a failover), then
    /// [`FlowEvent::UdpUp`] with our address toward it, or `Closed` with the reason.
    pub(crate) fn connect(
        &mut self,
        flow: FlowId,
        lookup: Lookup,
        resolver: Arc<Resolver>,
        avoid: Vec<SocketAddr>,
    ) {
        let label = lookup.dest().host_text();
        let socket = match self.ensure(label.parse().ok()) {
            Ok(s) => s,
            Err(e) => {
                let _ = self.events.send(FlowEvent::Closed {
                    flow,
                    why: format!("no SIP UDP socket: {e}"),
                });
                return;
            }
        };
        let events = self.events.clone();
        tokio::spawn(async move {
            let policy = Policy {
                supported: vec![Transport::Udp],
                default: Transport::Udp,
            };
            let result = match lookup.targets(&resolver, policy).await {
                Ok(targets) => {
                    pick(&socket, targets, &avoid).map_err(|e| format!("udp {label}: {e}"))
                }
                Err(e) => Err(e.to_string()),
            };
            let ev = match result {
                Ok((local, remote, spare)) => {
                    let _ = events.send(FlowEvent::Tried {
                        flow,
                        slow: Vec::new(),
                        spare,
                    });
                    FlowEvent::UdpUp {
                        flow,
                        local,
                        remote,
                    }
                }
                Err(why) => FlowEvent::Closed { flow, why },
            };
            let _ = events.send(ev);
        });
    }

    /// Sends one datagram (a copy to `tap`); a full socket buffer drops it (the transaction
    /// layer retransmits).
    pub(crate) fn send(&self, remote: SocketAddr, bytes: &[u8], tap: &super::tap::Tap) {
        let Some(s) = &self.socket else {
            tracing::debug!(%remote, "no SIP UDP socket: datagram not sent");
            return;
        };
        if let (true, Ok(bound)) = (tap.is_on(), s.local_addr()) {
            tap.datagram(true, local_toward(bound, remote), remote, bytes);
        }
        let raw = || socket2::SockRef::from(s.as_ref()).send_to(bytes, &remote.into());
        let sent = match s.try_send_to(bytes, remote) {
            // tokio has not seen the socket writable yet (made a moment ago): the kernel
            // decides, not tokio's readiness cache.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => raw(),
            other => other,
        }
        .or_else(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                return Err(e); // the buffer is full: dropped (transactions retransmit)
            }
            // The pending ICMP error of an earlier datagram, which this call took over from
            // the reader: report it, then send again.
            report_unreachable(s, &e, &self.events);
            raw()
        });
        if let Err(e) = sent {
            tracing::debug!(%remote, "UDP send: {e}");
        }
    }
}

/// The address a peer sees for us on a socket bound at `bound`: `bound` itself, or, when bound
/// to `0.0.0.0`/`::`, the source address the OS routes toward `remote` (a throwaway UDP socket
/// connected to it; nothing is sent) with `bound`'s port.
pub(crate) fn local_toward(bound: SocketAddr, remote: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    match super::route::routed_source(remote.ip()) {
        Ok(ip) => SocketAddr::new(ip, bound.port()),
        Err(e) => {
            tracing::warn!(%remote, "no route to the peer to learn our address: {e}");
            bound
        }
    }
}

/// The first of `targets` (UDP ones of `socket`'s family; those in `avoid` last): our address
/// toward it, its address, and whether others remain to fail over to.
fn pick(
    socket: &UdpSocket,
    targets: Vec<Target>,
    avoid: &[SocketAddr],
) -> io::Result<(SocketAddr, SocketAddr, bool)> {
    let bound = socket.local_addr()?;
    let mut usable: Vec<SocketAddr> = targets
        .iter()
        .filter(|t| t.transport == Transport::Udp && t.addr.is_ipv4() == bound.is_ipv4())
        .map(|t| t.addr)
        .collect();
    // Stable: the RFC 3263 order holds within each group.
    usable.sort_by_key(|a| avoid.contains(a));
    let Some(&remote) = usable.first() else {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("no address of the UDP socket's family ({bound})"),
        ));
    };
    Ok((local_toward(bound, remote), remote, usable.len() > 1))
}

/// After `e` on `socket`: reports the destinations of the datagrams the OS has ICMP errors
/// for ([`FlowEvent::Unreachable`]); whether there were any.
fn report_unreachable(
    socket: &UdpSocket,
    e: &io::Error,
    events: &mpsc::UnboundedSender<FlowEvent>,
) -> bool {
    let dead = crate::platform::udp_errors::unreachable_destinations(socket);
    let why = match e.kind() {
        io::ErrorKind::ConnectionRefused => "ICMP port unreachable".to_string(),
        _ => format!("ICMP: {e}"),
    };
    for remote in &dead {
        let _ = events.send(FlowEvent::Unreachable {
            remote: *remote,
            why: why.clone(),
        });
    }
    !dead.is_empty()
}

async fn read_loop(
    socket: Arc<UdpSocket>,
    bound: SocketAddr,
    events: mpsc::UnboundedSender<FlowEvent>,
) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut errors = 0u32;
    // Our address toward each peer IP, so a wildcard socket asks the routing table once per
    // peer, not once per datagram (forgotten wholesale past a bound).
    let mut routes: HashMap<IpAddr, SocketAddr> = HashMap::new();
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, remote)) => {
                errors = 0;
                if routes.len() >= ROUTE_CACHE {
                    routes.clear();
                }
                let local = *routes
                    .entry(remote.ip())
                    .or_insert_with(|| local_toward(bound, remote));
                let ev = FlowEvent::Datagram {
                    local,
                    remote,
                    bytes: buf[..n].to_vec(),
                };
                if events.send(ev).is_err() {
                    return;
                }
            }
            // ICMP port unreachable from an earlier send surfaces here (IP_RECVERR): say which
            // destination, the socket itself is fine. Anything persistent stops the loop
            // after a bound.
            Err(e) => {
                if report_unreachable(&socket, &e, &events) {
                    errors = 0;
                    continue;
                }
                errors += 1;
                tracing::debug!("SIP UDP receive: {e}");
                if errors > 1000 {
                    tracing::warn!("SIP UDP socket keeps failing ({e}); UDP stopped");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_toward_uses_the_routed_source_only_for_a_wildcard_bind() {
        let bound: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:5080".parse().unwrap();
        assert_eq!(local_toward(bound, peer), bound);
        let any: SocketAddr = "0.0.0.0:5070".parse().unwrap();
        let got = local_toward(any, peer);
        assert_eq!(got, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5070));
    }

    #[tokio::test]
    async fn an_icmp_error_met_by_a_send_is_reported_and_the_send_still_goes_out() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let bound = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp = UdpSip::new(Some(bound), tx);
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let live = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        live.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let tap = super::super::tap::Tap::default();
        udp.send(dead, b"x", &tap);
        // The ICMP error comes back at once on loopback; the reader task cannot run meanwhile
        // (one-thread runtime, blocking sleep), so the next send meets it.
        std::thread::sleep(std::time::Duration::from_millis(50));
        udp.send(live.local_addr().unwrap(), b"y", &tap);
        let mut got = [0u8; 4];
        assert_eq!(
            live.recv(&mut got).unwrap(),
            1,
            "the second datagram went out"
        );
        match rx.recv().await {
            Some(FlowEvent::Unreachable { remote, why }) => {
                assert_eq!(remote, dead);
                assert_eq!(why, "ICMP port unreachable");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn pick_takes_the_first_udp_target_of_the_family_avoided_last() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let t = |transport, addr: &str| Target {
            transport,
            addr: addr.parse().unwrap(),
        };
        let (a, b) = ("127.0.0.2:5060", "127.0.0.3:5060");
        let targets = vec![
            t(Transport::Udp, "[::1]:5060"),
            t(Transport::Tcp, "127.0.0.9:5060"),
            t(Transport::Udp, a),
            t(Transport::Udp, b),
        ];
        let (_, remote, spare) = pick(&sock, targets.clone(), &[]).unwrap();
        assert_eq!((remote, spare), (a.parse().unwrap(), true));
        let (_, remote, _) = pick(&sock, targets.clone(), &[a.parse().unwrap()]).unwrap();
        assert_eq!(remote, b.parse().unwrap());
        let (_, _, spare) = pick(&sock, targets[..3].to_vec(), &[]).unwrap();
        assert!(!spare, "no other target of the family");
        let e = pick(&sock, targets[..2].to_vec(), &[]).unwrap_err();
        assert!(e
            .to_string()
            .contains("no address of the UDP socket's family"));
    }

    #[tokio::test]
    async fn datagrams_reach_the_driver_with_their_source() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let udp = UdpSip::new(Some(sock), tx);
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"hello", addr).unwrap();
        match rx.recv().await {
            Some(FlowEvent::Datagram {
                local,
                remote,
                bytes,
            }) => {
                assert_eq!(
                    (local, remote, bytes.as_slice()),
                    (addr, peer.local_addr().unwrap(), &b"hello"[..])
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        udp.send(peer.local_addr().unwrap(), b"back", &Default::default());
        let mut buf = [0u8; 8];
        peer.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"back"[..], addr));
    }
}
