//! `--pcap FILE`: the run's SIP as TCP segments and RTP/RTCP as UDP datagrams, in a classic
//! pcap file (LINKTYPE_RAW: each record starts with the IPv4 or IPv6 header). The IP and TCP
//! headers are synthesised from the flow's addresses; TCP sequence numbers advance with the bytes
//! sent each way, and a handshake opens each flow so Wireshark and sngrep follow the stream.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use wakeline::driver::PacketTap;

/// pcap magic (microsecond timestamps), as written in native order by us: little endian.
pub const MAGIC: u32 = 0xa1b2_c3d4;
/// LINKTYPE_RAW: raw IPv4/IPv6.
pub const LINKTYPE_RAW: u32 = 101;
const TCP_SYN: u8 = 0x02;
const TCP_PSH_ACK: u8 = 0x18;
const TCP_SYN_ACK: u8 = 0x12;
const TCP_ACK: u8 = 0x10;
const MSS: usize = 1460;

/// Per TCP flow: the next sequence number each way.
#[derive(Debug, Clone, Copy)]
struct TcpFlow {
    seq_local: u32,
    seq_remote: u32,
}

struct State<W: Write> {
    out: W,
    tcp: HashMap<(SocketAddr, SocketAddr), TcpFlow>,
    failed: bool,
}

/// A pcap file being written; install it with `UserAgentBuilder::tap`.
pub struct PcapWriter<W: Write + Send> {
    state: Mutex<State<W>>,
    clock: fn() -> (u32, u32),
}

fn wall_clock() -> (u32, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as u32, d.subsec_micros())
}

impl PcapWriter<std::io::BufWriter<std::fs::File>> {
    /// Creates (truncates) the file and writes the pcap header.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let f = std::fs::File::create(path)?;
        PcapWriter::new(std::io::BufWriter::new(f), wall_clock)
    }
}

impl<W: Write + Send> PcapWriter<W> {
    /// Writes the header to `out`; `clock` gives (seconds, microseconds) for each record.
    pub fn new(mut out: W, clock: fn() -> (u32, u32)) -> std::io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&65_535u32.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        out.write_all(&h)?;
        out.flush()?;
        Ok(PcapWriter {
            state: Mutex::new(State {
                out,
                tcp: HashMap::new(),
                failed: false,
            }),
            clock,
        })
    }

    /// Gives the writer back (tests).
    #[cfg(test)]
    pub fn into_inner(self) -> Option<W> {
        self.state.into_inner().ok().map(|s| s.out)
    }

    fn record(&self, st: &mut State<W>, packet: &[u8]) {
        if st.failed {
            return;
        }
        let (s, us) = (self.clock)();
        let len = packet.len() as u32;
        let mut rec = Vec::with_capacity(16 + packet.len());
        rec.extend_from_slice(&s.to_le_bytes());
        rec.extend_from_slice(&us.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(packet);
        if let Err(e) = st.out.write_all(&rec).and_then(|()| st.out.flush()) {
            tracing::warn!("--pcap: {e}");
            st.failed = true;
        }
    }

    fn tcp_segment(
        &self,
        st: &mut State<W>,
        (src, dst): (SocketAddr, SocketAddr),
        (seq, ack): (u32, u32),
        flags: u8,
        payload: &[u8],
    ) {
        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&src.port().to_be_bytes());
        tcp.extend_from_slice(&dst.port().to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.push(5 << 4);
        tcp.push(flags);
        tcp.extend_from_slice(&65_535u16.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0]);
        tcp.extend_from_slice(payload);
        if let Some(p) = ip_packet(src.ip(), dst.ip(), 6, &mut tcp, 16) {
            self.record(st, &p);
        }
    }
}

/// The one's-complement sum (RFC 1071) of `data`, folded.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [b] = chunks.remainder() {
            sum += u32::from(*b) << 8;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Wraps a transport segment in an IP header, filling the transport checksum at `csum_at`.
/// `None` when the families differ or it is too large.
fn ip_packet(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    seg: &mut [u8],
    csum_at: usize,
) -> Option<Vec<u8>> {
    let seg_len = u16::try_from(seg.len()).ok()?;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = seg_len.checked_add(20)?;
            let mut pseudo = Vec::with_capacity(12);
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&seg_len.to_be_bytes());
            let c = checksum(&[&pseudo, seg]);
            seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
            let mut ip = Vec::with_capacity(usize::from(total));
            ip.extend_from_slice(&[0x45, 0]);
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let hc = checksum(&[&ip]);
            ip[10..12].copy_from_slice(&hc.to_be_bytes());
            ip.extend_from_slice(seg);
            Some(ip)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut pseudo = Vec::with_capacity(40);
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&u32::from(seg_len).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
            let c = checksum(&[&pseudo, seg]);
            seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
            let mut ip = Vec::with_capacity(40 + seg.len());
            ip.extend_from_slice(&[0x60, 0, 0, 0]);
            ip.extend_from_slice(&seg_len.to_be_bytes());
            ip.extend_from_slice(&[proto, 64]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            ip.extend_from_slice(seg);
            Some(ip)
        }
        _ => None,
    }
}

impl<W: Write + Send> PacketTap for PcapWriter<W> {
    fn sip(&self, sent: bool, local: SocketAddr, remote: SocketAddr, bytes: &[u8]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let st = &mut *st;
        let flow = match st.tcp.get(&(local, remote)) {
            Some(f) => *f,
            None => {
                // A handshake from whoever spoke first, so tools see the stream open.
                let (a, b) = if sent {
                    (local, remote)
                } else {
                    (remote, local)
                };
                let (isn_a, isn_b) = (1_000u32, 500_000u32);
                self.tcp_segment(st, (a, b), (isn_a, 0), TCP_SYN, &[]);
                self.tcp_segment(st, (b, a), (isn_b, isn_a + 1), TCP_SYN_ACK, &[]);
                self.tcp_segment(st, (a, b), (isn_a + 1, isn_b + 1), TCP_ACK, &[]);
                let f = if sent {
                    TcpFlow {
                        seq_local: isn_a + 1,
                        seq_remote: isn_b + 1,
                    }
                } else {
                    TcpFlow {
                        seq_local: isn_b + 1,
                        seq_remote: isn_a + 1,
                    }
                };
                st.tcp.insert((local, remote), f);
                f
            }
        };
        let mut f = flow;
        for chunk in bytes.chunks(MSS) {
            if sent {
                self.tcp_segment(
                    st,
                    (local, remote),
                    (f.seq_local, f.seq_remote),
                    TCP_PSH_ACK,
                    chunk,
                );
                f.seq_local = f.seq_local.wrapping_add(chunk.len() as u32);
            } else {
                self.tcp_segment(
                    st,
                    (remote, local),
                    (f.seq_remote, f.seq_local),
                    TCP_PSH_ACK,
                    chunk,
                );
                f.seq_remote = f.seq_remote.wrapping_add(chunk.len() as u32);
            }
        }
        st.tcp.insert((local, remote), f);
    }

    fn rtp(&self, sent: bool, local: SocketAddr, remote: SocketAddr, bytes: &[u8]) {
        let (src, dst) = if sent {
            (local, remote)
        } else {
            (remote, local)
        };
        let Ok(len) = u16::try_from(bytes.len() + 8) else {
            return;
        };
        let mut udp = Vec::with_capacity(usize::from(len));
        udp.extend_from_slice(&src.port().to_be_bytes());
        udp.extend_from_slice(&dst.port().to_be_bytes());
        udp.extend_from_slice(&len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(bytes);
        let Some(p) = ip_packet(src.ip(), dst.ip(), 17, &mut udp, 6) else {
            return;
        };
        if let Ok(mut st) = self.state.lock() {
            self.record(&mut st, &p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fixed_clock() -> (u32, u32) {
        (1_700_000_000, 42)
    }

    /// Reads the records back: (IP packet) per record.
    fn parse(file: &[u8]) -> Vec<Vec<u8>> {
        assert_eq!(u32::from_le_bytes(file[0..4].try_into().unwrap()), MAGIC);
        assert_eq!(
            u32::from_le_bytes(file[20..24].try_into().unwrap()),
            LINKTYPE_RAW
        );
        let mut out = Vec::new();
        let mut at = 24;
        while at < file.len() {
            let incl = u32::from_le_bytes(file[at + 8..at + 12].try_into().unwrap()) as usize;
            out.push(file[at + 16..at + 16 + incl].to_vec());
            at += 16 + incl;
        }
        assert_eq!(at, file.len());
        out
    }

    #[test]
    fn sip_becomes_tcp_and_rtp_udp() {
        let w = PcapWriter::new(Vec::new(), fixed_clock).unwrap();
        let l: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let r: SocketAddr = "127.0.0.2:5060".parse().unwrap();
        let invite = b"INVITE sip:bob@127.0.0.2 SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        w.sip(true, l, r, invite);
        w.sip(false, l, r, b"SIP/2.0 200 OK\r\n\r\n");
        w.sip(true, l, r, b"ACK");
        w.rtp(
            true,
            "127.0.0.1:20000".parse().unwrap(),
            "127.0.0.2:30000".parse().unwrap(),
            &[0x80, 0x60, 0, 1],
        );
        let records = parse(&w.into_inner().unwrap());
        assert_eq!(records.len(), 3 + 3 + 1);
        // Every IPv4 header checksums to zero, and the TCP/UDP checksums verify.
        for p in &records {
            assert_eq!(p[0], 0x45);
            assert_eq!(checksum(&[&p[..20]]), 0);
            let mut pseudo = p[12..20].to_vec();
            pseudo.extend_from_slice(&[0, p[9]]);
            pseudo.extend_from_slice(&((p.len() - 20) as u16).to_be_bytes());
            assert_eq!(checksum(&[&pseudo, &p[20..]]), 0);
        }
        // The INVITE is a TCP payload from 127.0.0.1:40000 to :5060, right after the handshake.
        let inv = &records[3];
        assert_eq!(inv[9], 6);
        assert_eq!(&inv[12..16], &[127, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([inv[22], inv[23]]), 5060);
        assert!(inv[40..].starts_with(b"INVITE sip:bob@127.0.0.2 SIP/2.0\r\n"));
        // Sequence numbers advance by the bytes sent; the answer acks them.
        let seq = |p: &[u8]| u32::from_be_bytes(p[24..28].try_into().unwrap());
        let ack = |p: &[u8]| u32::from_be_bytes(p[28..32].try_into().unwrap());
        assert_eq!(seq(&records[5]), seq(inv) + invite.len() as u32);
        assert_eq!(ack(&records[4]), seq(inv) + invite.len() as u32);
        assert_eq!(&records[1][33], &TCP_SYN_ACK);
        // RTP as UDP.
        let rtp = &records[6];
        assert_eq!(rtp[9], 17);
        assert_eq!(u16::from_be_bytes([rtp[22], rtp[23]]), 30000);
        assert_eq!(&rtp[28..], &[0x80, 0x60, 0, 1]);
    }

    #[test]
    fn big_messages_are_split_and_files_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcap");
        let w = PcapWriter::create(&path).unwrap();
        let l: SocketAddr = "[::1]:1".parse().unwrap();
        let r: SocketAddr = "[::1]:2".parse().unwrap();
        w.sip(false, l, r, &vec![b'x'; 3000]);
        drop(w);
        let records = parse(&std::fs::read(&path).unwrap());
        assert_eq!(records.len(), 3 + 3);
        assert_eq!(records[3][0] >> 4, 6);
        assert_eq!(records[3].len(), 40 + 20 + MSS);
    }

    /// A real call between two user agents in this process, captured through the driver's tap:
    /// the file holds the INVITE as a TCP payload and RTP as UDP.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_call_is_captured() {
        use std::sync::Arc;
        use wakeline::driver::MediaOptions;
        use wakeline::media::audio::{AudioSink, AudioSource};
        use wakeline::{Config, Event, UserAgent};
        let media = |hz| MediaOptions {
            source: AudioSource::Tone(hz),
            sink: AudioSink::Null,
            ..MediaOptions::default()
        };
        let (bob, mut bob_events) = UserAgent::builder(Config {
            local_user: "bob".into(),
            ..Config::default()
        })
        .media(media(1000.0))
        .listen("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
        let bob_addr = bob.local_addr().unwrap();
        let answering = {
            let bob = bob.clone();
            tokio::spawn(async move {
                while let Some(ev) = bob_events.next().await {
                    if let Event::Incoming { call, .. } = ev {
                        bob.call_handle(call).answer().await.unwrap();
                    }
                }
            })
        };
        let pcap = Arc::new(PcapWriter::new(Vec::new(), fixed_clock).unwrap());
        let (alice, mut events) = UserAgent::builder(Config {
            local_user: "alice".into(),
            ..Config::default()
        })
        .media(media(440.0))
        .tap(pcap.clone())
        .start()
        .await
        .unwrap();
        let call = alice
            .call(&format!("sip:bob@{bob_addr};transport=tcp"))
            .await
            .unwrap();
        let wait = async {
            let mut hung_up = false;
            while let Some(ev) = events.next().await {
                match ev {
                    // Once: a last MediaStats comes as media stops, before `Ended`.
                    Event::MediaStats { snapshot, .. }
                        if snapshot.stats.rtp_received > 0 && !hung_up =>
                    {
                        hung_up = true;
                        call.hangup().await.unwrap();
                    }
                    Event::Ended { .. } => return,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("call ended");
        alice.shutdown().await.unwrap();
        bob.shutdown().await.unwrap();
        answering.abort();
        let file = pcap.state.lock().unwrap().out.clone();
        let records = parse(&file);
        let tcp_payloads: Vec<&[u8]> = records
            .iter()
            .filter(|p| p[9] == 6)
            .map(|p| &p[40..])
            .collect();
        assert!(tcp_payloads
            .iter()
            .any(|p| p.starts_with(b"INVITE sip:bob@127.0.0.1:")));
        assert!(tcp_payloads
            .iter()
            .any(|p| p.starts_with(b"SIP/2.0 200 OK")));
        assert!(tcp_payloads.iter().any(|p| p.starts_with(b"BYE ")));
        let rtp = records
            .iter()
            .filter(|p| p[9] == 17 && p.len() > 28 + 12 && p[28] >> 6 == 2)
            .count();
        assert!(rtp >= 20, "only {rtp} RTP/RTCP datagrams");
    }
}
