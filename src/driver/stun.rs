//! STUN in the driver: before an offer or answer, one Binding (RFC 8489, `media::stun`) from
//! the call's RTP socket, and from its RTCP socket, to the configured server
//! (`UserAgentBuilder::stun_server`, `--stun`); the RTP mapping goes into the SDP. Without an
//! answer within `stun::GIVE_UP` the call goes on with the local address and a warning: a call
//! never fails because of STUN.

use super::media::MediaSockets;
use crate::media::stun::{Binding, DEFAULT_PORT};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// How long finding the STUN server's address may take (its own budget, before the Binding's).
const LOOKUP_LIMIT: Duration = Duration::from_secs(1);

/// The RTP address to announce for `sockets`: the NAT's mapping that `server` reports, or the
/// local address (loopback media, no server of the socket's family, no answer). The sockets
/// come back as they were, unregistered.
pub(crate) async fn announced(
    sockets: MediaSockets,
    server: Option<&str>,
) -> std::io::Result<(MediaSockets, SocketAddr)> {
    let local = sockets.local_rtp();
    let Some(server) = server.filter(|_| !local.ip().is_loopback()) else {
        return Ok((sockets, local));
    };
    let target = match lookup(server, local.ip()).await {
        Ok(t) => t,
        Err(why) => {
            tracing::warn!("STUN {server}: {why}; announcing the local {local}");
            return Ok((sockets, local));
        }
    };
    let io = sockets.register()?;
    let (rtp, rtcp) = tokio::join!(binding(&io.rtp, target), binding(&io.rtcp, target));
    let sockets = MediaSockets::unregister(io)?;
    let announced = match rtp {
        Ok(mapped) => {
            match rtcp {
                Ok(r)
                    if r.ip() == mapped.ip() && Some(r.port()) == mapped.port().checked_add(1) => {}
                other => tracing::warn!(
                    "STUN: RTCP mapped to {other:?}, not {mapped} + 1: RTCP from the peer gets \
                     through only with rtcp-mux"
                ),
            }
            tracing::info!(%local, %mapped, "STUN {target}: media announced at the mapping");
            mapped
        }
        Err(why) => {
            tracing::warn!("STUN {target}: {why}; announcing the local {local}");
            local
        }
    };
    Ok((sockets, announced))
}

/// The server's address, of `family`'s IP version: `HOST`, `HOST:PORT`, `IP`, `[IPv6]:PORT`.
async fn lookup(server: &str, family: IpAddr) -> Result<SocketAddr, String> {
    let same = |a: &SocketAddr| a.is_ipv4() == family.is_ipv4();
    if let Ok(a) = server.parse::<SocketAddr>() {
        return Some(a)
            .filter(same)
            .ok_or_else(|| format!("not {}", kind(family)));
    }
    if let Ok(ip) = server.parse::<IpAddr>() {
        let a = SocketAddr::new(ip, DEFAULT_PORT);
        return Some(a)
            .filter(same)
            .ok_or_else(|| format!("not {}", kind(family)));
    }
    let name = match server.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => server.to_string(),
        _ => format!("{server}:{DEFAULT_PORT}"),
    };
    let found = tokio::time::timeout(LOOKUP_LIMIT, tokio::net::lookup_host(name))
        .await
        .map_err(|_| format!("no address within {LOOKUP_LIMIT:?}"))?
        .map_err(|e| e.to_string())?;
    found
        .into_iter()
        .find(same)
        .ok_or_else(|| format!("no {} address", kind(family)))
}

fn kind(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "an IPv4"
    } else {
        "an IPv6"
    }
}

/// Runs one Binding on `socket` against `server`: the mapped address, or why not. Datagrams
/// from elsewhere meanwhile are ignored (no peer knows this socket yet).
async fn binding(socket: &UdpSocket, server: SocketAddr) -> Result<SocketAddr, String> {
    let mut b = Binding::new(Instant::now(), rand::random());
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        b.handle_timeout(now);
        while let Some(request) = b.poll_transmit(now) {
            if let Err(e) = socket.send_to(&request, server).await {
                tracing::debug!(%server, "STUN send: {e}");
            }
        }
        if let Some(outcome) = b.outcome() {
            return outcome.clone().map_err(|e| e.to_string());
        }
        let Some(at) = b.poll_timeout() else {
            return Err("STUN transaction over without an outcome".into());
        };
        match tokio::time::timeout_at(at.into(), socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from == server => {
                b.handle_datagram(&buf[..n]);
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                // An ICMP error reported on the socket: nothing to read until the next step.
                tracing::debug!(%server, "STUN receive: {e}");
                tokio::time::sleep_until(at.into()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN server stand-in on loopback: answers each Binding request with the source address
    /// as seen from 203.0.113.7 (a fake NAT), after dropping the first `drop` requests.
    async fn fake_server(drop: usize) -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let mut seen = 0;
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                seen += 1;
                if seen <= drop || n < 20 {
                    continue;
                }
                let port = from.port() ^ 0x2112;
                let ip = u32::from_be_bytes([203, 0, 113, 7]) ^ 0x2112_A442;
                let mut r = vec![0x01, 0x01, 0, 12, 0x21, 0x12, 0xa4, 0x42];
                r.extend_from_slice(&buf[8..20]);
                r.extend_from_slice(&[0, 0x20, 0, 8, 0, 1]);
                r.extend_from_slice(&port.to_be_bytes());
                r.extend_from_slice(&ip.to_be_bytes());
                let _ = s.send_to(&r, from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_binding_learns_the_mapping_after_a_lost_request() {
        let server = fake_server(1).await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        let started = Instant::now();
        let mapped = binding(&sock, server).await.unwrap();
        assert_eq!(mapped, SocketAddr::new([203, 0, 113, 7].into(), port));
        // The retransmission came after the first RTO (500 ms).
        assert!(started.elapsed() >= Duration::from_millis(450));
    }

    #[tokio::test]
    async fn a_silent_server_is_given_up_within_the_budget() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let started = Instant::now();
        let e = binding(&sock, silent.local_addr().unwrap())
            .await
            .unwrap_err();
        assert!(e.contains("no STUN response"), "{e}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn server_names_and_families() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            lookup("198.51.100.1", v4).await.unwrap(),
            "198.51.100.1:3478".parse().unwrap()
        );
        assert_eq!(
            lookup("198.51.100.1:3479", v4).await.unwrap(),
            "198.51.100.1:3479".parse().unwrap()
        );
        assert_eq!(
            lookup("[2001:db8::2]:3479", v6).await.unwrap(),
            "[2001:db8::2]:3479".parse().unwrap()
        );
        assert!(lookup("198.51.100.1", v6).await.is_err());
        assert_eq!(
            lookup("localhost:3479", v4).await.unwrap(),
            "127.0.0.1:3479".parse().unwrap()
        );
    }
}
