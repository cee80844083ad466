//! A call's RTP and RTCP sockets: reserved on the signaling thread (the SDP announces their
//! port), registered with the reactor of the media worker that runs the call, and kept idle
//! on that worker's pool when the call ends (`media_pool.rs`), for the next call on the same
//! address.

use super::media_rt::{Home, Place};
use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::net::UdpSocket;

/// The RTP socket and the RTCP socket (port + 1) reserved for one call: either new,
/// non-blocking sockets not registered with any reactor yet (the media task registers them
/// with the reactor of the media worker it runs on, [`MediaSockets::register`]), or an ended
/// call's pair taken from a media worker's pool, still registered there.
#[derive(Debug)]
pub(crate) struct MediaSockets {
    state: State,
    /// The RTP socket's address, read once when it was bound.
    local: SocketAddr,
}

#[derive(Debug)]
enum State {
    New {
        rtp: std::net::UdpSocket,
        rtcp: std::net::UdpSocket,
    },
    Pooled(MediaIo),
}

/// A call's media sockets registered with the reactor of a runtime.
#[derive(Debug)]
pub(crate) struct MediaIo {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    /// The RTP socket's address.
    pub local: SocketAddr,
    /// The media worker whose reactor they are registered with (`None`: another runtime's,
    /// the driver's).
    pub worker: Option<usize>,
}

/// Datagrams at most that a pair taken from a pool may hold (the old call's last packets);
/// a pair holding more is flooded by someone and closed instead.
const STALE_MAX: usize = 64;

impl MediaSockets {
    /// An idle pair on `ip` from a media worker's pool (its old packets read and dropped),
    /// or a new one: an even RTP port and the odd port above it (RFC 3550 §11).
    pub(crate) fn reserve(ip: IpAddr) -> io::Result<MediaSockets> {
        Self::reserve_at(ip, std::time::Instant::now(), None)
    }

    /// [`reserve`](Self::reserve) at `now` (the pools' quarantine is timed from it), from the
    /// driver's `home` pool first when it has room for the call.
    pub(crate) fn reserve_at(
        ip: IpAddr,
        now: std::time::Instant,
        home: Option<&Home>,
    ) -> io::Result<MediaSockets> {
        let from_home = || home.and_then(|h| h.take_idle(ip, now));
        let idle = || from_home().or_else(|| super::media_rt::take_idle(ip, now));
        while let Some(io) = idle() {
            if drained(&io.rtp) && drained(&io.rtcp) {
                let local = io.local;
                return Ok(MediaSockets {
                    state: State::Pooled(io),
                    local,
                });
            }
            tracing::debug!(local = %io.local, "an idle media socket pair was flooded: closed");
        }
        match Self::bind_pair(ip) {
            Err(e) if out_of_descriptors(&e) => {
                // The pools' idle pairs hold descriptors that a call needs more.
                super::media_rt::close_idle();
                if let Some(home) = home {
                    home.close_idle();
                }
                Self::bind_pair(ip)
            }
            other => other,
        }
    }

    /// Binds a new pair. The kernel picks a free port: an even one gets its neighbour above
    /// for RTCP, an odd one becomes the RTCP port of the even one below. Tries again (32
    /// times at most) while the neighbour is taken.
    fn bind_pair(ip: IpAddr) -> io::Result<MediaSockets> {
        let mut last = None;
        for _ in 0..32 {
            let first = bind_media(SocketAddr::new(ip, 0))?;
            let local = first.local_addr()?;
            let port = local.port();
            let pair = match port % 2 {
                0 if port < u16::MAX => {
                    bind_media(SocketAddr::new(ip, port + 1)).map(|rtcp| (first, rtcp, local))
                }
                1 if port > 1 => bind_media(SocketAddr::new(ip, port - 1)).map(|rtp| {
                    let mut at = local;
                    at.set_port(port - 1);
                    (rtp, first, at)
                }),
                _ => continue,
            };
            match pair {
                Ok((rtp, rtcp, local)) => {
                    return Ok(MediaSockets {
                        state: State::New { rtp, rtcp },
                        local,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free RTP/RTCP port pair")))
    }

    /// The RTP address to announce in SDP.
    pub(crate) fn local_rtp(&self) -> SocketAddr {
        self.local
    }

    /// Where the call's task should run: where a pooled pair is registered, or anywhere.
    pub(crate) fn place(&self) -> Place {
        match &self.state {
            State::New { .. } => Place::Any,
            State::Pooled(io) => io.worker.map_or(Place::Home, Place::Worker),
        }
    }

    /// The sockets registered with the current runtime's reactor (call from the task that
    /// uses them); a pooled pair stays with the reactor it is registered with.
    pub(crate) fn register(self) -> io::Result<MediaIo> {
        match self.state {
            State::New { rtp, rtcp } => Ok(MediaIo {
                rtp: UdpSocket::from_std(rtp)?,
                rtcp: UdpSocket::from_std(rtcp)?,
                local: self.local,
                worker: super::media_rt::current_worker(),
            }),
            State::Pooled(io) => Ok(io),
        }
    }

    /// Back from [`register`](Self::register)ed sockets (after a STUN binding on them).
    pub(crate) fn unregister(io: MediaIo) -> io::Result<MediaSockets> {
        Ok(MediaSockets {
            state: State::New {
                rtp: io.rtp.into_std()?,
                rtcp: io.rtcp.into_std()?,
            },
            local: io.local,
        })
    }
}

/// Reads and drops what `socket` holds; false when it holds more than [`STALE_MAX`]
/// datagrams or cannot be read.
///
/// Read through the reactor's readiness: a pair that nothing reached since its last read
/// costs no system call (the common case, two `recvfrom`s a call saved). A datagram that the
/// reactor has not seen yet slips through, as one that arrives just after this read would:
/// the quarantine, not this read, keeps an old call's packets out of the next one.
fn drained(socket: &UdpSocket) -> bool {
    let mut buf = [0u8; 64];
    for _ in 0..STALE_MAX {
        match socket.try_recv_from(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // An ICMP error from the old call's peer, reported once.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(_) => return false,
        }
    }
    false
}

/// The process (`EMFILE`) or the system (`ENFILE`) is out of file descriptors.
fn out_of_descriptors(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        const EMFILE: i32 = 24;
        const ENFILE: i32 = 23;
        matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// One non-blocking UDP socket bound to `addr`, tagged with the voice service class (best
/// effort) before the bind.
fn bind_media(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let ty = Type::DGRAM.nonblocking();
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let ty = Type::DGRAM;
    let socket = Socket::new(Domain::for_address(addr), ty, Some(Protocol::UDP))?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    socket.set_nonblocking(true)?;
    if let Err(e) = crate::platform::tag_media_socket_of(&socket, addr.is_ipv6()) {
        tracing::debug!("tagging a media socket: {e}");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_pairs_are_even_and_odd_neighbours_with_their_address_known() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Enough pairs that the kernel hands out odd ports too (the other branch).
        let pairs: Vec<_> = (0..64)
            .map(|_| MediaSockets::bind_pair(ip).unwrap())
            .collect();
        for p in &pairs {
            let State::New { rtp, rtcp } = &p.state else {
                panic!("bound, not pooled");
            };
            let (rtp, rtcp) = (rtp.local_addr().unwrap(), rtcp.local_addr().unwrap());
            assert_eq!(p.local_rtp(), rtp);
            assert_eq!(rtp.port() % 2, 0, "{rtp}");
            assert_eq!(rtcp, SocketAddr::new(ip, rtp.port() + 1));
        }
    }

    #[tokio::test]
    async fn registered_sockets_carry_datagrams() {
        let pair = MediaSockets::reserve("127.0.0.1".parse().unwrap()).unwrap();
        let to = pair.local_rtp();
        let io = pair.register().unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        peer.send_to(b"rtp", to).await.unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = io.rtp.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"rtp"[..], peer.local_addr().unwrap()));
    }

    #[tokio::test]
    async fn a_drained_socket_holds_nothing_of_the_old_call() {
        let pair = MediaSockets::bind_pair("127.0.0.1".parse().unwrap()).unwrap();
        let io = pair.register().unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            peer.send_to(b"old", io.local).unwrap();
        }
        // Loopback delivers at once; wait until the reactor has seen them.
        io.rtp.readable().await.unwrap();
        assert!(drained(&io.rtp));
        peer.send_to(b"new", io.local).unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = io.rtp.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"new", "the old datagrams are gone");
    }

    #[tokio::test]
    async fn a_flooded_socket_is_not_drained() {
        let pair = MediaSockets::bind_pair("127.0.0.1".parse().unwrap()).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..STALE_MAX + 1 {
            peer.send_to(b"x", pair.local).unwrap();
        }
        let io = pair.register().unwrap();
        io.rtp.readable().await.unwrap();
        assert!(!drained(&io.rtp));
    }

    #[tokio::test]
    async fn a_pair_nothing_reached_is_drained() {
        let pair = MediaSockets::bind_pair("127.0.0.1".parse().unwrap()).unwrap();
        let io = pair.register().unwrap();
        assert!(drained(&io.rtp) && drained(&io.rtcp));
    }

    #[cfg(unix)]
    #[test]
    fn running_out_of_descriptors_is_recognised() {
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(24)));
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(23)));
        assert!(!out_of_descriptors(&io::Error::from_raw_os_error(98)));
    }
}
