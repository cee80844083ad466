//! An in-test media relay with seeded impairment, placed in the media path by a small SIP-aware
//! TCP proxy.
//!
//! The caller (side A) calls the proxy's TCP port; the proxy opens one TCP connection to the real
//! listener (side B) per accepted connection and forwards SIP both ways. Messages are cut with the
//! library's [`Framer`], parsed with [`Message::parse`] and written back with `to_bytes()` (which
//! fixes Content-Length). Every SDP body is rewritten so that `c=`, `m=audio` and `a=rtcp` point
//! at the relay's own UDP socket facing the receiver of that SDP: A sees `socket_a`, B sees
//! `socket_b`. B's Contact is rewritten to the proxy so that in-dialog requests stay on the proxy.
//! Both UAs agree rtcp-mux, so one UDP socket per side carries RTP and RTCP.
//!
//! A UDP datagram from one side is dropped with probability `loss`, otherwise held for a random
//! delay in `0..=max_delay` (which reorders packets 20 ms apart) and sent from the other socket to
//! the other side's SDP address. All randomness comes from a seeded RNG per direction.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wakeline::signaling::framing::{Frame, Framer, FramerLimits};
use wakeline::signaling::message::{HeaderName, Message};

/// Seeded network impairment, applied to each direction independently.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Probability of dropping a datagram, 0.0..=1.0.
    pub loss: f64,
    /// Each forwarded datagram is delayed by a uniform random time in `0..=max_delay`.
    pub max_delay: Duration,
    /// Seed of the per-direction RNGs.
    pub seed: u64,
}

/// What one direction of the UDP relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// RTP packets received from the sender.
    pub rtp_in: u64,
    /// RTP packets dropped on purpose.
    pub rtp_dropped: u64,
    /// RTP packets sent on to the receiver.
    pub rtp_forwarded: u64,
    /// RTP packets sent on after a packet with a higher sequence number (reordered).
    pub rtp_reordered: u64,
    /// RTCP packets received from the sender.
    pub rtcp_in: u64,
    /// RTCP packets dropped on purpose.
    pub rtcp_dropped: u64,
    /// Datagrams that arrived before the receiver's address was known (dropped).
    pub unroutable: u64,
}

/// Everything the relay counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Caller to listener.
    pub a_to_b: DirectionStats,
    /// Listener to caller.
    pub b_to_a: DirectionStats,
    /// SIP messages forwarded (both ways).
    pub sip_messages: u64,
    /// SDP bodies rewritten (both ways).
    pub sdp_rewrites: u64,
}

#[derive(Default)]
struct Shared {
    /// A's RTP address, from A's SDP.
    a_media: Option<SocketAddr>,
    /// B's RTP address, from B's SDP.
    b_media: Option<SocketAddr>,
    stats: RelayStats,
}

/// The running proxy and relay; every thread stops when it is dropped.
pub struct MediaRelay {
    /// The proxy's TCP port: side A calls `sip:...@127.0.0.1:PORT;transport=tcp`.
    pub sip_port: u16,
    /// The UDP socket that side A sends media to.
    pub socket_a: SocketAddr,
    /// The UDP socket that side B sends media to.
    pub socket_b: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    threads: Vec<JoinHandle<()>>,
}

const POLL: Duration = Duration::from_millis(10);

impl MediaRelay {
    /// Starts the proxy in front of the SIP listener at `target` (TCP) and the UDP relay.
    pub fn start(target: SocketAddr, impairment: Impairment) -> MediaRelay {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let sip_port = listener.local_addr().expect("addr").port();
        let udp_a = UdpSocket::bind("127.0.0.1:0").expect("bind relay a");
        let udp_b = UdpSocket::bind("127.0.0.1:0").expect("bind relay b");
        let socket_a = udp_a.local_addr().expect("addr");
        let socket_b = udp_b.local_addr().expect("addr");
        let mut threads = Vec::new();

        // A -> B: read on socket_a, send from socket_b to B's media address.
        let (to_b, to_b_rx) = mpsc::channel();
        let (to_a, to_a_rx) = mpsc::channel();
        threads.push(spawn_udp_reader(
            udp_a.try_clone().expect("clone"),
            to_b,
            Side::A,
            impairment,
            impairment.seed,
            stop.clone(),
            shared.clone(),
        ));
        threads.push(spawn_udp_reader(
            udp_b.try_clone().expect("clone"),
            to_a,
            Side::B,
            impairment,
            impairment.seed.wrapping_add(0x9e37_79b9),
            stop.clone(),
            shared.clone(),
        ));
        threads.push(spawn_scheduler(udp_b, to_b_rx, Side::A, shared.clone()));
        threads.push(spawn_scheduler(udp_a, to_a_rx, Side::B, shared.clone()));

        let proxy = Proxy {
            target,
            sip_port,
            socket_a,
            socket_b,
            stop: stop.clone(),
            shared: shared.clone(),
        };
        threads.push(std::thread::spawn(move || proxy.accept_loop(listener)));
        MediaRelay {
            sip_port,
            socket_a,
            socket_b,
            stop,
            shared,
            threads,
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RelayStats {
        self.shared.lock().expect("relay lock").stats.clone()
    }

    /// The media addresses learned from the two sides' SDP (A's, B's).
    pub fn media_addresses(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let s = self.shared.lock().expect("relay lock");
        (s.a_media, s.b_media)
    }
}

impl Drop for MediaRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Which side sent a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// RTCP packet types 192..=223 appear as 64..=95 once the marker bit is masked (RFC 5761 §4).
fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && (64..=95).contains(&(packet[1] & 0x7f))
}

fn spawn_udp_reader(
    socket: UdpSocket,
    out: mpsc::Sender<(Instant, u64, Vec<u8>)>,
    from: Side,
    impairment: Impairment,
    seed: u64,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        socket.set_read_timeout(Some(POLL)).expect("timeout");
        let mut rng = StdRng::seed_from_u64(seed);
        let max_delay_us = impairment.max_delay.as_micros() as u64;
        let mut buf = [0u8; 2048];
        let mut order = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let n = match socket.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(_) => continue,
            };
            let packet = &buf[..n];
            let rtcp = is_rtcp(packet);
            // Draw both numbers for every datagram so the pattern depends on the seed alone.
            let drop = rng.random::<f64>() < impairment.loss;
            let delay = Duration::from_micros(rng.random_range(0..=max_delay_us));
            {
                let mut s = shared.lock().expect("relay lock");
                let stats = match from {
                    Side::A => &mut s.stats.a_to_b,
                    Side::B => &mut s.stats.b_to_a,
                };
                match (rtcp, drop) {
                    (false, d) => {
                        stats.rtp_in += 1;
                        stats.rtp_dropped += u64::from(d);
                    }
                    (true, d) => {
                        stats.rtcp_in += 1;
                        stats.rtcp_dropped += u64::from(d);
                    }
                }
            }
            if !drop {
                order += 1;
                let _ = out.send((Instant::now() + delay, order, packet.to_vec()));
            }
        }
    })
}

/// Holds delayed datagrams and sends each from `socket` to the other side when it is due.
fn spawn_scheduler(
    socket: UdpSocket,
    rx: mpsc::Receiver<(Instant, u64, Vec<u8>)>,
    from: Side,
    shared: Arc<Mutex<Shared>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
        let mut last_seq: Option<u16> = None;
        let mut closed = false;
        while !(closed && queue.is_empty()) {
            let now = Instant::now();
            while queue.peek().is_some_and(|Reverse((due, _, _))| *due <= now) {
                let Some(Reverse((_, _, packet))) = queue.pop() else {
                    break;
                };
                let mut s = shared.lock().expect("relay lock");
                let dest = match from {
                    Side::A => s.b_media,
                    Side::B => s.a_media,
                };
                let stats = match from {
                    Side::A => &mut s.stats.a_to_b,
                    Side::B => &mut s.stats.b_to_a,
                };
                let Some(dest) = dest else {
                    stats.unroutable += 1;
                    continue;
                };
                if !is_rtcp(&packet) && packet.len() >= 12 {
                    let seq = u16::from_be_bytes([packet[2], packet[3]]);
                    if let Some(last) = last_seq {
                        if (seq.wrapping_sub(last) as i16) < 0 {
                            stats.rtp_reordered += 1;
                        }
                    }
                    if last_seq.is_none_or(|l| (seq.wrapping_sub(l) as i16) > 0) {
                        last_seq = Some(seq);
                    }
                    stats.rtp_forwarded += 1;
                }
                drop(s);
                let _ = socket.send_to(&packet, dest);
            }
            if closed {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let wait = queue
                .peek()
                .map(|Reverse((due, _, _))| due.saturating_duration_since(Instant::now()))
                .unwrap_or(POLL)
                .min(POLL);
            match rx.recv_timeout(wait) {
                Ok(item) => queue.push(Reverse(item)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closed = true,
            }
        }
    })
}

/// Rewrites an SDP body so that its media goes to `relay`: every `c=` address, the `m=audio`
/// port and any `a=rtcp` port. Returns the new body and the original RTP address, or `None` when
/// the body has no `c=` or no `m=audio` line.
pub fn rewrite_sdp(sdp: &str, relay: SocketAddr) -> Option<(String, SocketAddr)> {
    let mut ip = None;
    let mut port = None;
    let mut out = String::with_capacity(sdp.len() + 16);
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        let new = if let Some(rest) = body.strip_prefix("c=") {
            let mut parts = rest.split_whitespace();
            let (net, kind, addr) = (parts.next()?, parts.next()?, parts.next()?);
            ip.get_or_insert(addr.parse().ok()?);
            format!("c={net} {kind} {}", relay.ip())
        } else if let Some(rest) = body.strip_prefix("m=audio ") {
            let (p, tail) = rest.split_once(' ')?;
            port.get_or_insert(p.parse::<u16>().ok()?);
            format!("m=audio {} {tail}", relay.port())
        } else if body.starts_with("a=rtcp:") {
            // rtcp-mux is agreed by both sides: RTCP shares the relay's RTP port.
            format!("a=rtcp:{}", relay.port())
        } else {
            body.to_string()
        };
        out.push_str(&new);
        out.push_str(ending);
    }
    Some((out, SocketAddr::new(ip?, port?)))
}

struct Proxy {
    target: SocketAddr,
    sip_port: u16,
    socket_a: SocketAddr,
    socket_b: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
}

impl Proxy {
    fn accept_loop(self, listener: TcpListener) {
        let this = Arc::new(self);
        let mut pumps = Vec::new();
        while !this.stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((a, _)) => {
                    let Ok(b) = TcpStream::connect(this.target) else {
                        let _ = a.shutdown(Shutdown::Both);
                        continue;
                    };
                    for (src, dst, from) in [
                        (a.try_clone(), b.try_clone(), Side::A),
                        (b.try_clone(), a.try_clone(), Side::B),
                    ] {
                        let (Ok(src), Ok(dst)) = (src, dst) else {
                            continue;
                        };
                        let this = this.clone();
                        pumps.push(std::thread::spawn(move || this.pump(src, dst, from)));
                    }
                }
                Err(_) => std::thread::sleep(POLL),
            }
        }
        for p in pumps {
            let _ = p.join();
        }
    }

    /// Forwards one direction of one connection, message by message.
    fn pump(&self, mut src: TcpStream, mut dst: TcpStream, from: Side) {
        let _ = src.set_nonblocking(false);
        let _ = src.set_read_timeout(Some(POLL));
        let mut framer = Framer::new(FramerLimits::default());
        let mut buf = [0u8; 8192];
        while !self.stop.load(Ordering::SeqCst) {
            match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => framer.push(&buf[..n], Instant::now()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(_) => break,
            }
            while let Some(frame) = framer.poll() {
                let out = match frame {
                    Ok(Frame::Message(bytes)) => self.rewrite(&bytes, from),
                    Ok(Frame::Ping) => b"\r\n\r\n".to_vec(),
                    Ok(Frame::Pong) => b"\r\n".to_vec(),
                    Err(_) => {
                        let _ = dst.shutdown(Shutdown::Both);
                        return;
                    }
                };
                if dst.write_all(&out).is_err() {
                    return;
                }
            }
        }
        let _ = dst.shutdown(Shutdown::Both);
    }

    /// One SIP message from `from`, ready for the other side.
    fn rewrite(&self, bytes: &[u8], from: Side) -> Vec<u8> {
        let Ok(mut msg) = Message::parse(bytes) else {
            return bytes.to_vec();
        };
        let relay_for_receiver = match from {
            Side::A => self.socket_b,
            Side::B => self.socket_a,
        };
        let (headers, body) = match &mut msg {
            Message::Request(r) => (&mut r.headers, &mut r.body),
            Message::Response(r) => (&mut r.headers, &mut r.body),
        };
        let mut s = self.shared.lock().expect("relay lock");
        s.stats.sip_messages += 1;
        let is_sdp = headers
            .content_type()
            .is_some_and(|t| t.eq_ignore_ascii_case("application/sdp"));
        if is_sdp {
            let text = String::from_utf8_lossy(body).into_owned();
            if let Some((new_body, original)) = rewrite_sdp(&text, relay_for_receiver) {
                match from {
                    Side::A => s.a_media = Some(original),
                    Side::B => s.b_media = Some(original),
                }
                s.stats.sdp_rewrites += 1;
                *body = new_body.into_bytes();
            }
        }
        if from == Side::B {
            if let Some(contact) = headers.get(&HeaderName::Contact) {
                let new = contact.replace(
                    &self.target.to_string(),
                    &format!("{}:{}", self.target.ip(), self.sip_port),
                );
                headers.set(HeaderName::Contact, new);
            }
        }
        msg.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_media_lines_point_at_the_relay() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 46780 RTP/AVP 111 0\r\na=rtcp-mux\r\na=rtcp:46781\r\n";
        let relay: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let (new, original) = rewrite_sdp(sdp, relay).unwrap();
        assert_eq!(original, "127.0.0.1:46780".parse().unwrap());
        assert!(new.contains("\r\nm=audio 5000 RTP/AVP 111 0\r\n"), "{new}");
        assert!(new.contains("\r\na=rtcp:5000\r\n"), "{new}");
        assert!(new.contains("o=- 1 1 IN IP4 127.0.0.1\r\n"), "{new}");
        assert!(!new.contains("46780") && !new.contains("46781"), "{new}");
        assert!(rewrite_sdp("v=0\r\nt=0 0\r\n", relay).is_none());
    }

    #[test]
    fn rtcp_is_told_from_rtp_by_payload_type() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 201, 0, 7]));
        assert!(!is_rtcp(&[0x80, 111, 0, 1]));
        assert!(!is_rtcp(&[0x80, 0x80 | 111, 0, 1]));
        assert!(!is_rtcp(&[0x80, 101, 0, 1]));
    }
}
