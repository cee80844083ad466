//! Which local address a call's media uses (issue 8 §1).
//!
//! The address written in SDP `o=`/`c=` and bound by the RTP/RTCP sockets must be one the peer
//! can reach. In order of preference:
//! 1. the address the user gave (`--media-ip`, `[network] media_ip`, the builder's `media_ip`);
//! 2. the local address of the flow the call's signaling is on (the one an INVITE arrived on,
//!    or the control flow for calls through the registrar/proxy) — unless the peer's offer is
//!    of the other address family, then the source address the OS routes to that offer;
//! 3. for a call whose flow is not up yet (a new direct call, a control flow reconnecting):
//!    the source address the OS routes to the next hop (the target, the proxy or the
//!    registrar). It is found by `connect()`ing an unbound UDP socket and reading its
//!    `local_addr()`: no packet is sent;
//! 4. with no peer known at all (a pushed call answered before its INVITE, without an
//!    account): the listener's address if it has one, else the source of the default route,
//!    else loopback.
//!
//! The result is never `0.0.0.0` or `::`. A loopback address toward a peer that is not on
//! loopback is kept (the user may mean it) but logged as a warning.

use super::resolve::{ConnectHints, Resolver};
use crate::signaling::core::addr::FlowAddrs;
use crate::signaling::core::{CallHandle, SignalingCore};
use crate::signaling::message::Uri;
use crate::signaling::rfc3263::{Destination, Policy};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// What the address choice needs to route, when nothing known fits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Choice {
    /// Use this address; `peer` is who will send to it, if known.
    Use { ip: IpAddr, peer: Option<IpAddr> },
    /// Ask the OS for its source address toward this peer address.
    RouteTo(IpAddr),
    /// The offer's address is of the other family than the flow: route to it, or (no route)
    /// keep the flow's address.
    OfferFamily { offer: IpAddr, flow: FlowAddrs },
    /// Resolve this host, then route to it.
    Resolve(String, u16),
    /// Nobody to route to: the default route's source address.
    DefaultRoute,
}

/// The decision, before any system call: explicit address, flow, offer, next hop.
fn choose(
    explicit: Option<IpAddr>,
    flow: Option<FlowAddrs>,
    offer: Option<IpAddr>,
    hop: Option<(String, u16)>,
    listen: Option<IpAddr>,
) -> Choice {
    let peer = flow.map(|f| f.remote.ip()).or(offer);
    if let Some(ip) = explicit {
        return Choice::Use { ip, peer };
    }
    let usable_offer = offer.filter(|o| !o.is_unspecified());
    if let Some(f) = flow.filter(|f| !f.local.ip().is_unspecified()) {
        return match usable_offer {
            // The peer wants media in the other family than its signaling (e.g. an IPv6
            // address in the SDP of an IPv4 call): a socket of the flow's family could not
            // send there.
            Some(o) if o.is_ipv4() != f.local.is_ipv4() => {
                Choice::OfferFamily { offer: o, flow: f }
            }
            _ => Choice::Use {
                ip: f.local.ip(),
                peer: Some(f.remote.ip()),
            },
        };
    }
    if let Some(o) = usable_offer {
        return Choice::RouteTo(o);
    }
    match (hop, listen.filter(|l| !l.is_unspecified())) {
        (Some((host, port)), _) => match host.parse::<IpAddr>() {
            Ok(ip) => Choice::RouteTo(ip),
            Err(_) => Choice::Resolve(host, port),
        },
        (None, Some(ip)) => Choice::Use { ip, peer: None },
        (None, None) => Choice::DefaultRoute,
    }
}

/// The source address of the default route (IPv4, else IPv6), else loopback. Routing to a
/// documentation address (RFC 5737, RFC 3849) finds the default route without sending.
fn default_source() -> IpAddr {
    [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    ]
    .into_iter()
    .find_map(|p| routed_source(p).ok())
    .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// `addr` with an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack `[::]`
/// socket reports for an IPv4 peer) written as the IPv4 address it is.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The source address the OS would use toward `peer` (no packet is sent).
pub(crate) fn routed_source(peer: IpAddr) -> io::Result<IpAddr> {
    let any: IpAddr = match peer {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
    // Any port will do: connect() on UDP only picks a route and a source address.
    socket
        .connect(SocketAddr::new(peer, 9))
        .map_err(|e| io::Error::new(e.kind(), format!("no route to {peer}: {e}")))?;
    let ip = socket.local_addr()?.ip();
    if ip.is_unspecified() {
        return Err(io::Error::other(format!("no source address toward {peer}")));
    }
    Ok(ip)
}

/// The first address `host` resolves to the RFC 3263 way (the one a connect tries first), with
/// the same DNS servers the connects use; `lookup` is its destination and policy.
async fn resolve(
    resolver: &Resolver,
    lookup: Option<(Destination, Policy)>,
    host: &str,
) -> io::Result<IpAddr> {
    let (dest, policy) =
        lookup.ok_or_else(|| io::Error::other(format!("resolving {host}: nothing planned")))?;
    let targets = resolver
        .resolve(dest, policy)
        .await
        .map_err(|e| io::Error::other(format!("resolving {host}: {e}")))?;
    targets
        .first()
        .map(|t| t.addr.ip())
        .ok_or_else(|| io::Error::other(format!("{host} resolves to no address")))
}

/// True when announcing `ip` to `peer` cannot work: loopback toward a peer elsewhere.
fn loopback_mismatch(ip: IpAddr, peer: Option<IpAddr>) -> bool {
    ip.is_loopback() && peer.is_some_and(|p| !p.is_loopback() && !p.is_unspecified())
}

/// The media address for a call: `call` is an existing call (answer, network change), or
/// `None` with the `target` of a new call. (The driver runs the two halves apart:
/// [`media_plan`] on its loop, [`MediaPlan::ip`] on a task, `driver/prepare.rs`.)
#[cfg(test)]
pub(crate) async fn media_ip(
    core: &SignalingCore,
    explicit: Option<IpAddr>,
    call: Option<CallHandle>,
    target: Option<&Uri>,
    lookup: (&Resolver, &ConnectHints),
) -> io::Result<IpAddr> {
    media_plan(core, explicit, call, target, lookup.1)
        .ip(lookup.0)
        .await
}

/// What [`media_ip`] decided from the core alone, before any DNS: it owns its inputs, so a
/// task of its own can finish it (`driver/prepare.rs`) while the driver loop goes on.
#[derive(Debug)]
pub(crate) struct MediaPlan {
    call: Option<CallHandle>,
    choice: Choice,
    hop: Option<(String, u16)>,
    /// For [`Choice::Resolve`]: what to resolve, the way a connect would.
    lookup: Option<(Destination, Policy)>,
}

/// The first half of [`media_ip`]: reads the core and the connect hints (`&self` of the
/// driver), does no I/O.
pub(crate) fn media_plan(
    core: &SignalingCore,
    explicit: Option<IpAddr>,
    call: Option<CallHandle>,
    target: Option<&Uri>,
    hints: &ConnectHints,
) -> MediaPlan {
    let flow = match call {
        Some(c) => core.call_flow_addrs(c),
        None if core.config().account.is_some() => core.control_flow_addrs(),
        None => None,
    }
    .map(|f| FlowAddrs {
        local: canonical(f.local),
        remote: canonical(f.remote),
    });
    let offer = call.and_then(|c| core.call_offer_address(c));
    let hop = core.next_hop(target);
    let listen = core
        .config()
        .listen
        .map(|l| l.ip())
        .filter(|ip| !ip.is_unspecified());
    let choice = choose(explicit, flow, offer, hop.clone(), listen);
    let lookup = match &choice {
        Choice::Resolve(host, port) => {
            let dest = hints.destination(host, *port);
            let policy = hints.policy(&dest);
            Some((dest, policy))
        }
        _ => None,
    };
    MediaPlan {
        call,
        choice,
        hop,
        lookup,
    }
}

impl MediaPlan {
    /// The second half of [`media_ip`]: DNS (with `resolver`) and routing as planned.
    pub(crate) async fn ip(mut self, resolver: &Resolver) -> io::Result<IpAddr> {
        let resolved = match &self.choice {
            Choice::Resolve(host, _) => Some(resolve(resolver, self.lookup.take(), host).await?),
            _ => None,
        };
        self.routed(resolved)
    }

    /// [`ip`](Self::ip) at once when the plan needs no DNS (`None` when it does).
    pub(crate) fn ip_now(&self) -> Option<io::Result<IpAddr>> {
        match self.choice {
            Choice::Resolve(..) => None,
            _ => Some(self.routed(None)),
        }
    }

    /// Routing as planned, with the peer's address `resolved` for [`Choice::Resolve`].
    fn routed(&self, resolved: Option<IpAddr>) -> io::Result<IpAddr> {
        let MediaPlan {
            call, choice, hop, ..
        } = self;
        let (ip, peer) = match choice {
            Choice::Use { ip, peer } => (*ip, *peer),
            Choice::RouteTo(peer) => (routed_source(*peer)?, Some(*peer)),
            Choice::OfferFamily { offer, flow } => match routed_source(*offer) {
                Ok(ip) => (ip, Some(*offer)),
                Err(e) => {
                    tracing::debug!(
                        ?call,
                        "the offer's {offer} is out of reach ({e}): media on the flow's address"
                    );
                    (flow.local.ip(), Some(flow.remote.ip()))
                }
            },
            Choice::Resolve(host, _) => {
                let peer =
                    resolved.ok_or_else(|| io::Error::other(format!("{host} was not resolved")))?;
                (routed_source(peer)?, Some(peer))
            }
            Choice::DefaultRoute => (default_source(), None),
        };
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(io::Error::other(format!(
                "{ip} cannot be announced as a media address"
            )));
        }
        if loopback_mismatch(ip, peer) {
            tracing::warn!(
                ?call,
                "announcing loopback media address {ip} to a peer at {}: it cannot reach us",
                peer.map_or_else(String::new, |p| p.to_string())
            );
        }
        tracing::debug!(?call, %ip, ?peer, ?hop, "media address");
        Ok(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The system's resolver and the core's connect hints (leaked: tests only).
    fn lookup(core: &SignalingCore) -> (&'static Resolver, &'static ConnectHints) {
        let resolver = Box::leak(Box::new(Resolver::new(&[])));
        let hints = Box::leak(Box::new(ConnectHints::new(core.config())));
        (resolver, hints)
    }

    fn flow(local: &str, remote: &str) -> FlowAddrs {
        FlowAddrs {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    #[test]
    fn the_users_address_wins() {
        let c = choose(
            Some(ip("198.51.100.7")),
            Some(flow("192.0.2.1:5070", "192.0.2.2:4000")),
            None,
            None,
            None,
        );
        assert_eq!(
            c,
            Choice::Use {
                ip: ip("198.51.100.7"),
                peer: Some(ip("192.0.2.2"))
            }
        );
    }

    #[test]
    fn a_call_on_a_flow_uses_the_flows_local_address() {
        let f = flow("192.0.2.1:5070", "192.0.2.2:4000");
        let want = Choice::Use {
            ip: ip("192.0.2.1"),
            peer: Some(ip("192.0.2.2")),
        };
        assert_eq!(choose(None, Some(f), None, None, None), want);
        assert_eq!(
            choose(None, Some(f), Some(ip("192.0.2.2")), None, None),
            want
        );
        // An RFC 2543 hold address in the offer says nothing about families.
        assert_eq!(choose(None, Some(f), Some(ip("0.0.0.0")), None, None), want);
        let v6 = flow("[2001:db8::1]:5070", "[2001:db8::2]:4000");
        assert_eq!(
            choose(None, Some(v6), None, None, None),
            Choice::Use {
                ip: ip("2001:db8::1"),
                peer: Some(ip("2001:db8::2"))
            }
        );
    }

    #[test]
    fn an_offer_of_the_other_family_is_routed_to() {
        let f = flow("192.0.2.1:5070", "192.0.2.2:4000");
        assert_eq!(
            choose(None, Some(f), Some(ip("2001:db8::2")), None, None),
            Choice::OfferFamily {
                offer: ip("2001:db8::2"),
                flow: f
            }
        );
    }

    #[test]
    fn without_a_flow_the_next_hop_is_routed_to() {
        assert_eq!(
            choose(None, None, None, Some(("203.0.113.5".into(), 5060)), None),
            Choice::RouteTo(ip("203.0.113.5"))
        );
        assert_eq!(
            choose(None, None, None, Some(("2001:db8::5".into(), 5060)), None),
            Choice::RouteTo(ip("2001:db8::5"))
        );
        assert_eq!(
            choose(
                None,
                None,
                None,
                Some(("sip.example.test".into(), 5080)),
                None
            ),
            Choice::Resolve("sip.example.test".into(), 5080)
        );
        // A flow whose local address is unknown-unspecified is no basis.
        assert_eq!(
            choose(
                None,
                Some(flow("0.0.0.0:5070", "192.0.2.2:4000")),
                None,
                Some(("192.0.2.2".into(), 5060)),
                None
            ),
            Choice::RouteTo(ip("192.0.2.2"))
        );
    }

    #[test]
    fn with_no_peer_known_the_listener_then_the_default_route() {
        let listen = Some(ip("192.0.2.1"));
        assert_eq!(
            choose(None, None, None, None, listen),
            Choice::Use {
                ip: ip("192.0.2.1"),
                peer: None
            }
        );
        assert_eq!(
            choose(None, None, None, None, Some(ip("0.0.0.0"))),
            Choice::DefaultRoute
        );
        assert_eq!(choose(None, None, None, None, None), Choice::DefaultRoute);
        let d = default_source();
        assert!(!d.is_unspecified(), "{d}");
    }

    #[test]
    fn routing_to_loopback_gives_loopback() {
        assert_eq!(routed_source(ip("127.0.0.1")).unwrap(), ip("127.0.0.1"));
        // IPv6 loopback exists wherever the kernel has IPv6.
        if std::net::UdpSocket::bind("[::1]:0").is_ok() {
            assert_eq!(routed_source(ip("::1")).unwrap(), ip("::1"));
        }
    }

    #[test]
    fn mapped_ipv4_is_written_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:5070".parse().unwrap();
        assert_eq!(canonical(mapped), "192.0.2.1:5070".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:5070".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn loopback_toward_a_remote_peer_is_flagged() {
        assert!(loopback_mismatch(ip("127.0.0.1"), Some(ip("192.0.2.2"))));
        assert!(loopback_mismatch(ip("::1"), Some(ip("2001:db8::2"))));
        assert!(!loopback_mismatch(ip("127.0.0.1"), Some(ip("127.0.0.1"))));
        assert!(!loopback_mismatch(ip("127.0.0.1"), None));
        assert!(!loopback_mismatch(ip("192.0.2.1"), Some(ip("192.0.2.2"))));
    }

    #[tokio::test]
    async fn an_answer_follows_the_flow_or_an_offer_of_the_other_family() {
        use crate::signaling::core::testkit::{sdp_offer, PeerInvite, Solo};
        use crate::signaling::core::Event;
        for (i, offer_ip) in ["127.0.0.1", "fd00::1"].into_iter().enumerate() {
            // An accepted flow 127.0.0.1:5060 <- 127.0.0.1:40000.
            let mut s = Solo::new(crate::signaling::config::Config::default(), Instant::now());
            let sdp = sdp_offer(4000).replace(
                "IN IP4 127.0.0.1",
                &format!("IN {} {offer_ip}", if i == 0 { "IP4" } else { "IP6" }),
            );
            let invite = PeerInvite {
                call_id: format!("route-{i}"),
                from_tag: "f1".into(),
                branch: format!("z9hG4bKroute{i}"),
                cseq: 1,
            };
            s.feed(&invite.invite(Some(&sdp), "", None));
            let call = s
                .events
                .iter()
                .find_map(|e| match e {
                    Event::Incoming { call, .. } => Some(*call),
                    _ => None,
                })
                .expect("incoming");
            assert_eq!(s.core.call_offer_address(call), Some(ip(offer_ip)));
            let got = media_ip(&s.core, None, Some(call), None, lookup(&s.core))
                .await
                .unwrap();
            // The IPv6 offer on an IPv4 flow: the route to it if there is one, else (no IPv6
            // route here) the flow's own address rather than a failed answer.
            let want = match i {
                0 => ip("127.0.0.1"),
                _ => routed_source(ip(offer_ip)).unwrap_or(ip("127.0.0.1")),
            };
            assert_eq!(got, want, "offer {offer_ip}");
        }
    }

    #[tokio::test]
    async fn the_builder_refuses_a_wildcard_or_multicast_media_ip() {
        use crate::driver::UserAgent;
        for bad in ["0.0.0.0", "::", "224.0.0.1"] {
            let r = UserAgent::builder(crate::signaling::config::Config::default())
                .media_ip(ip(bad))
                .start()
                .await;
            assert!(
                matches!(&r, Err(crate::Error::Config(m)) if m.contains(bad)),
                "{bad}: {r:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_new_direct_call_to_loopback_announces_loopback_of_its_family() {
        let core = SignalingCore::new(crate::signaling::config::Config::default());
        let v6 = std::net::UdpSocket::bind("[::1]:0").is_ok();
        for (target, want) in [
            ("sip:bob@127.0.0.1:5080;transport=tcp", "127.0.0.1"),
            ("sip:bob@[::1]:5080;transport=tcp", "::1"),
            ("sip:bob@localhost:5080;transport=tcp", ""),
        ] {
            if want == "::1" && !v6 {
                continue;
            }
            let uri = Uri::parse(target).unwrap();
            let got = media_ip(&core, None, None, Some(&uri), lookup(&core))
                .await
                .unwrap();
            assert!(got.is_loopback(), "{target}: {got}");
            if !want.is_empty() {
                assert_eq!(got, ip(want));
            }
        }
        let explicit = media_ip(&core, Some(ip("192.0.2.1")), None, None, lookup(&core))
            .await
            .unwrap();
        assert_eq!(explicit, ip("192.0.2.1"));
        let fallback = media_ip(&core, None, None, None, lookup(&core))
            .await
            .unwrap();
        assert!(!fallback.is_unspecified(), "{fallback}");
    }
}
