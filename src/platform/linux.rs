//! Linux and Android socket tagging via `socket2`.

use super::{set_dscp, set_dscp_of, ControlSocketOptions, TOS_EF};
use socket2::{SockRef, TcpKeepalive};
use std::io;

/// SO_KEEPALIVE with TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT, TCP_NODELAY, DSCP.
pub(super) fn tag_control(sock: SockRef<'_>, opts: &ControlSocketOptions) -> io::Result<()> {
    let ka = TcpKeepalive::new()
        .with_time(opts.keepalive_time)
        .with_interval(opts.keepalive_interval)
        .with_retries(opts.keepalive_retries);
    // `set_tcp_keepalive` also turns SO_KEEPALIVE on.
    sock.set_tcp_keepalive(&ka)?;
    sock.set_tcp_nodelay(true)?;
    if let Some(tos) = opts.tos {
        set_dscp(&sock, tos)?;
    }
    Ok(())
}

/// DSCP EF on an RTP/RTCP socket of the family `ipv6` says.
pub(super) fn tag_media(sock: SockRef<'_>, ipv6: bool) -> io::Result<()> {
    set_dscp_of(&sock, TOS_EF, ipv6)
}

#[cfg(test)]
mod tests {
    use super::super::{tag_control_socket, tag_media_socket, ControlSocketOptions, TOS_CS3};
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::time::Duration;

    #[test]
    fn control_socket_options_read_back_on_loopback_v4() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let opts = ControlSocketOptions::default();
        for s in [&client, &accepted] {
            tag_control_socket(s, &opts).unwrap();
            let r = SockRef::from(s);
            assert!(r.keepalive().unwrap());
            assert_eq!(r.tcp_keepalive_time().unwrap(), Duration::from_secs(30));
            assert_eq!(r.tcp_keepalive_interval().unwrap(), Duration::from_secs(10));
            assert_eq!(r.tcp_keepalive_retries().unwrap(), 3);
            assert!(r.tcp_nodelay().unwrap());
            assert_eq!(r.tos_v4().unwrap(), TOS_CS3);
        }
    }

    #[test]
    fn control_socket_custom_times_and_no_dscp() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let opts = ControlSocketOptions {
            keepalive_time: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(5),
            keepalive_retries: 7,
            tos: None,
        };
        tag_control_socket(&client, &opts).unwrap();
        let r = SockRef::from(&client);
        assert_eq!(r.tcp_keepalive_time().unwrap(), Duration::from_secs(120));
        assert_eq!(r.tcp_keepalive_interval().unwrap(), Duration::from_secs(5));
        assert_eq!(r.tcp_keepalive_retries().unwrap(), 7);
        assert_eq!(r.tos_v4().unwrap(), 0);
    }

    #[test]
    fn media_socket_gets_ef_v4() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(SockRef::from(&s).tos_v4().unwrap(), 0);
        tag_media_socket(&s).unwrap();
        assert_eq!(SockRef::from(&s).tos_v4().unwrap(), TOS_EF);
    }

    #[test]
    fn ipv6_sockets_use_the_traffic_class() {
        // Hosts without IPv6 loopback skip this test.
        let Ok(s) = UdpSocket::bind("[::1]:0") else {
            return;
        };
        tag_media_socket(&s).unwrap();
        assert_eq!(SockRef::from(&s).tclass_v6().unwrap(), TOS_EF);
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            return;
        };
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        tag_control_socket(&client, &ControlSocketOptions::default()).unwrap();
        assert_eq!(SockRef::from(&client).tclass_v6().unwrap(), TOS_CS3);
    }

    #[test]
    fn tokio_sockets_are_accepted() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            tag_media_socket(&s).unwrap();
            assert_eq!(SockRef::from(&s).tos_v4().unwrap(), TOS_EF);
        });
    }
}
