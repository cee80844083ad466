//! Reading a call's media sockets: one datagram buffer per media worker thread, read into
//! when a socket says it is readable (no buffer per call).

use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Largest datagram a media socket reads whole (longer ones are truncated).
const DATAGRAM: usize = 2048;

thread_local! {
    /// The datagram buffer of the calls on this thread: a call reads into it and hands the
    /// datagram to its pipeline before the next one reads (no buffer per call).
    static DATAGRAM_BUF: std::cell::RefCell<[u8; DATAGRAM]> =
        const { std::cell::RefCell::new([0; DATAGRAM]) };
}

/// Reads one datagram from `socket` (after it said it was readable) and hands it to `f`;
/// nothing when it had none after all.
pub(super) fn recv_one(
    socket: &UdpSocket,
    f: impl FnOnce(SocketAddr, &[u8]),
) -> std::io::Result<()> {
    DATAGRAM_BUF.with_borrow_mut(|buf| match socket.try_recv_from(buf) {
        Ok((n, from)) => {
            f(from, &buf[..n]);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::super::MediaSockets;
    use super::*;

    #[tokio::test]
    async fn a_readable_socket_hands_over_one_datagram_at_a_time() {
        let pair = MediaSockets::reserve("127.0.0.1".parse().unwrap()).unwrap();
        let to = pair.local_rtp();
        let io = pair.register().unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut got = Vec::new();
        recv_one(&io.rtp, |_, b| got.push(b.to_vec())).unwrap();
        assert!(got.is_empty(), "nothing yet: no datagram, no error");
        let long = vec![7u8; DATAGRAM + 10];
        for d in [&b"one"[..], &b"two"[..], &long[..]] {
            peer.send_to(d, to).await.unwrap();
        }
        while got.len() < 3 {
            io.rtp.readable().await.unwrap();
            recv_one(&io.rtp, |from, b| {
                assert_eq!(from, peer.local_addr().unwrap());
                got.push(b.to_vec());
            })
            .unwrap();
        }
        assert_eq!(got[..2], [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(got[2], vec![7u8; DATAGRAM], "a longer one is truncated");
    }
}
