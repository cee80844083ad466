//! ICMP errors on an unconnected UDP socket (Linux/Android `IP_RECVERR`, `IPV6_RECVERR`).
//!
//! Linux drops ICMP errors (port or host unreachable) for unconnected UDP sockets unless the
//! socket asks for them. With [`report_udp_errors`] set, a receive after such an error fails
//! once with the error (`ECONNREFUSED`, ...), and [`unreachable_destinations`] then reads the
//! queued errors: the destination each failed datagram was sent to (`ip(7)`: the original
//! destination comes in `msg_name`). Other systems: a no-op and an empty list.
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;

/// Most queued errors read at once (each is one failed datagram).
const MAX_ERRORS: usize = 64;

/// Asks the OS to report ICMP errors on this UDP socket (both families on a dual-stack one).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn report_udp_errors<S: std::os::fd::AsFd>(sock: &S) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_fd().as_raw_fd();
    let on: libc::c_int = 1;
    let set = |level, name| {
        // SAFETY: `fd` is a live socket borrowed for this call; the option value is a c_int
        // on the stack whose size is passed with it.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    let v4 = set(libc::IPPROTO_IP, libc::IP_RECVERR);
    let v6 = set(libc::IPPROTO_IPV6, libc::IPV6_RECVERR);
    // An IPv4 socket refuses the IPv6 option and the other way round: one is enough.
    v4.or(v6)
}

/// Not available here: nothing to set.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn report_udp_errors<S>(_sock: &S) -> io::Result<()> {
    Ok(())
}

/// The destinations of the datagrams whose errors are queued on `sock` (drained, at most
/// 64); empty where errors are not reported.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn unreachable_destinations<S: std::os::fd::AsFd>(sock: &S) -> Vec<SocketAddr> {
    let sock = socket2::SockRef::from(sock);
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    let mut out = Vec::new();
    while out.len() < MAX_ERRORS {
        match sock.recv_from_with_flags(&mut buf, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) {
            Ok((_, from)) => {
                if let Some(a) = from.as_socket() {
                    out.push(a);
                }
            }
            Err(_) => break, // empty (EAGAIN) or unreadable: nothing more
        }
    }
    out
}

/// Not available here: no destinations.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn unreachable_destinations<S>(_sock: &S) -> Vec<SocketAddr> {
    Vec::new()
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_is_reported_with_its_address() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        report_udp_errors(&s).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        s.send_to(b"x", dead).unwrap();
        let e = s.recv_from(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        assert_eq!(unreachable_destinations(&s), vec![dead]);
        assert!(unreachable_destinations(&s).is_empty(), "drained");
    }
}
