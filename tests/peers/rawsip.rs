//! A bare SIP client for tests: INVITE / ACK / BYE over UDP or one TCP connection, timing
//! INVITE sent → 200 received. Enough SIP to drive `wakeline listen --answer auto|ring`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

pub enum Wire {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream, Vec<u8>),
}

impl Wire {
    pub fn udp(to: SocketAddr) -> Wire {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Wire::Udp(s, to)
    }

    pub fn tcp(to: SocketAddr) -> Wire {
        let s = TcpStream::connect(to).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        Wire::Tcp(s, Vec::new())
    }

    fn local(&self) -> SocketAddr {
        match self {
            Wire::Udp(s, _) => s.local_addr(),
            Wire::Tcp(s, _) => s.local_addr(),
        }
        .expect("local address")
    }

    fn token(&self) -> &'static str {
        match self {
            Wire::Udp(..) => "UDP",
            Wire::Tcp(..) => "TCP",
        }
    }

    fn send(&mut self, msg: &str) {
        match self {
            Wire::Udp(s, to) => {
                s.send_to(msg.as_bytes(), *to).expect("send");
            }
            Wire::Tcp(s, _) => s.write_all(msg.as_bytes()).expect("write"),
        }
    }

    /// The next whole message.
    fn recv(&mut self) -> String {
        match self {
            Wire::Udp(s, _) => {
                let mut buf = vec![0u8; 65_536];
                let (n, _) = s.recv_from(&mut buf).expect("recv (timeout?)");
                String::from_utf8_lossy(&buf[..n]).into_owned()
            }
            Wire::Tcp(s, buf) => loop {
                if let Some(end) = whole(buf) {
                    let msg: Vec<u8> = buf.drain(..end).collect();
                    return String::from_utf8_lossy(&msg).into_owned();
                }
                let mut chunk = [0u8; 16_384];
                let n = s.read(&mut chunk).expect("read (timeout?)");
                assert!(n > 0, "connection closed");
                buf.extend_from_slice(&chunk[..n]);
            },
        }
    }

    /// Messages until a final response to `method`.
    fn final_for(&mut self, method: &str) -> String {
        loop {
            let m = self.recv();
            let fin = m.starts_with("SIP/2.0 2") || m.starts_with("SIP/2.0 4");
            if fin && header(&m, "CSeq").is_some_and(|c| c.ends_with(method)) {
                return m;
            }
        }
    }

    /// Via of request `b` of call `n` from this wire.
    fn via(&self, b: &str, n: usize) -> String {
        let (local, token) = (self.local(), self.token());
        format!("Via: SIP/2.0/{token} {local};branch=z9hG4bK-{b}-{n};rport\r\n")
    }

    /// From, Call-ID, Max-Forwards, Contact of call `n` (the same on any wire).
    fn common(&self, n: usize) -> String {
        let local = self.local();
        format!(
            "From: <sip:raw@{local}>;tag=raw{n}\r\nCall-ID: raw-{n}-{}\r\nMax-Forwards: 70\r\nContact: <sip:raw@{local}>\r\n",
            std::process::id()
        )
    }

    /// One call to `target`: [`Wire::answered`], then [`Wire::bye`]. Returns the set-up time.
    pub fn call(&mut self, target: SocketAddr, n: usize, copies: usize) -> Duration {
        let (setup, to) = self.answered(target, n, copies);
        let done = self.bye(target, n, &to);
        assert!(done.starts_with("SIP/2.0 200"), "{done}");
        setup
    }

    /// INVITE (sent `copies` times back to back, and when more than once, once more after the
    /// 200), 200, ACK. Returns INVITE sent → 200 received, and the To of the 200.
    pub fn answered(&mut self, target: SocketAddr, n: usize, copies: usize) -> (Duration, String) {
        let common = self.common(n);
        let sdp = format!(
            "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            20_000 + 2 * n
        );
        let invite = format!(
            "INVITE sip:wl@{target} SIP/2.0\r\n{}{common}To: <sip:wl@{target}>\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            self.via("inv", n),
            sdp.len()
        );
        let t0 = Instant::now();
        for _ in 0..copies {
            self.send(&invite);
        }
        let ok = self.final_for("INVITE");
        let setup = t0.elapsed();
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        if copies > 1 {
            self.send(&invite);
        }
        let to = header(&ok, "To").expect("To in the 200").to_string();
        let ack = format!(
            "ACK sip:wl@{target} SIP/2.0\r\n{}{common}To: {to}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            self.via("ack", n)
        );
        self.send(&ack);
        (setup, to)
    }

    /// BYE in call `n` (To of its 200: `to`); returns the final response.
    pub fn bye(&mut self, target: SocketAddr, n: usize, to: &str) -> String {
        let bye = format!(
            "BYE sip:wl@{target} SIP/2.0\r\n{}{}To: {to}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            self.via("bye", n),
            self.common(n)
        );
        self.send(&bye);
        self.final_for("BYE")
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Length of the first whole message in `buf`, if there is one.
fn whole(buf: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(buf);
    let head = text.find("\r\n\r\n")? + 4;
    let len = header(&text[..head], "Content-Length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head + len).then_some(head + len)
}
