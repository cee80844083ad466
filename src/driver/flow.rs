//! One TCP or TLS flow: a reader task that forwards bytes to the driver and a writer task fed
//! by a channel, so a slow peer never blocks the driver loop. The tasks work over any byte
//! stream ([`FlowStream`]): a `TcpStream`, or a TLS stream over one (`super::tls`).

use super::resolve::{Lookup, Resolver};
use super::tls::TlsClient;
use crate::signaling::core::FlowId;
use crate::signaling::rfc3263::{Policy, Target, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A byte stream a flow runs over: TCP, or TLS over TCP.
pub(crate) trait FlowIo: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> FlowIo for T {}

/// A flow's stream, boxed so TCP and TLS flows share one reader and one writer.
pub(crate) type FlowStream = Box<dyn FlowIo>;

/// What the flow tasks report to the driver.
#[derive(Debug)]
pub(crate) enum FlowEvent {
    /// An outgoing connection is up.
    Connected {
        flow: FlowId,
        stream: FlowStream,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// A connection on the TLS listener finished its handshake.
    TlsAccepted {
        stream: FlowStream,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// Bytes arrived.
    Data { flow: FlowId, bytes: Vec<u8> },
    /// A UDP flow's peer is resolved (`super::udp`): our address toward it and its address.
    UdpUp {
        flow: FlowId,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// A datagram on the SIP UDP socket (`local`: our address as the peer sees it).
    Datagram {
        local: SocketAddr,
        remote: SocketAddr,
        bytes: Vec<u8>,
    },
    /// The flow is gone (connect failure, EOF, read or write error).
    Closed { flow: FlowId, why: String },
    /// DNS picked the transport of a URI that names none (RFC 3263 §4.1,
    /// `super::resolve::spawn_pick`): connect `flow` over it to the targets found.
    Picked {
        flow: FlowId,
        transport: Transport,
        lookup: Lookup,
    },
    /// The OS reported an ICMP error (port or host unreachable) for a datagram we sent on the
    /// SIP UDP socket to `remote` (`crate::platform::udp_errors`).
    Unreachable { remote: SocketAddr, why: String },
    /// Before `Connected` or `Closed` of an outgoing connect: what the target list taught.
    Tried {
        flow: FlowId,
        /// Targets whose connect timed out (worth avoiding for a while).
        slow: Vec<SocketAddr>,
        /// Connected with other targets left untried: there is somewhere to fail over to.
        spare: bool,
    },
}

/// The driver's side of a running flow.
#[derive(Debug)]
pub(crate) struct FlowHandle {
    /// Bytes to write; dropping the sender closes the write side.
    pub tx: mpsc::UnboundedSender<Vec<u8>>,
    /// The reader task, aborted when the driver closes the flow.
    pub reader: tokio::task::JoinHandle<()>,
    /// The writer task: it writes what is queued and hands back the write half when the queue
    /// is closed (`None` after a write error).
    pub writer: tokio::task::JoinHandle<Option<WriteHalf<FlowStream>>>,
    /// The peer opened this flow (our listener accepted it).
    pub accepted: bool,
}

impl FlowHandle {
    /// Closes the flow. Whatever is queued is written first. On a flow the peer opened, we then
    /// wait (up to `limit`) for the peer to close first — connections are the client's to close,
    /// and a peer that sees our FIN may drop a response it has not read yet. A flow we opened is
    /// closed (FIN) as soon as the queue is written.
    pub async fn close(self, limit: std::time::Duration) {
        drop(self.tx);
        let deadline = tokio::time::Instant::now() + limit;
        let wr = match tokio::time::timeout_at(deadline, self.writer).await {
            Ok(Ok(wr)) => wr,
            _ => None,
        };
        let mut reader = self.reader;
        if self.accepted
            && tokio::time::timeout_at(deadline, &mut reader)
                .await
                .is_err()
        {
            tracing::debug!("peer did not close within {limit:?}; closing");
        }
        reader.abort();
        if let Some(mut wr) = wr {
            let _ = wr.shutdown().await;
        }
    }
}

/// Tags a flow's TCP socket (before any TLS handshake on it). Accepted and connected flows
/// alike: keep-alive, TCP_NODELAY, DSCP CS3 / service type.
pub(crate) fn tag(stream: &TcpStream) {
    if let Err(e) = crate::platform::tag_control_socket(
        stream,
        &crate::platform::ControlSocketOptions::default(),
    ) {
        tracing::debug!("tagging the control socket: {e}");
    }
}

/// Most bytes one write gathers from messages queued together.
const GATHER_LIMIT: usize = 64 * 1024;

/// `first` and the messages queued behind it (up to [`GATHER_LIMIT`] bytes), in order, as one
/// write: on a proxy's flow, which carries every call, the responses to a burst of requests
/// leave in one segment instead of one each.
fn gather(first: Vec<u8>, rx: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<u8> {
    let mut bytes = first;
    while bytes.len() < GATHER_LIMIT {
        match rx.try_recv() {
            Ok(more) => bytes.extend_from_slice(&more),
            Err(_) => break,
        }
    }
    bytes
}

/// Spawns the reader and writer tasks of a flow (its TCP socket already [`tag`]ged).
pub(crate) fn spawn(
    flow: FlowId,
    stream: FlowStream,
    accepted: bool,
    events: mpsc::UnboundedSender<FlowEvent>,
) -> FlowHandle {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let wev = events.clone();
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let bytes = gather(first, &mut rx);
            if let Err(e) = wr.write_all(&bytes).await {
                let _ = wev.send(FlowEvent::Closed {
                    flow,
                    why: format!("write: {}", super::cause::io_cause(&e)),
                });
                return None;
            }
        }
        Some(wr)
    });
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => {
                    let _ = events.send(FlowEvent::Closed {
                        flow,
                        why: "EOF".into(),
                    });
                    return;
                }
                Ok(n) => {
                    if events
                        .send(FlowEvent::Data {
                            flow,
                            bytes: buf[..n].to_vec(),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = events.send(FlowEvent::Closed {
                        flow,
                        why: format!("read: {}", super::cause::io_cause(&e)),
                    });
                    return;
                }
            }
        }
    });
    FlowHandle {
        tx,
        reader,
        writer,
        accepted,
    }
}

/// How long one TCP connect attempt may take before we move to the next target.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most targets tried for one connect (each costs up to [`CONNECT_TIMEOUT`]): the flow's
/// owner retries with backoff after that, resolving afresh.
pub(crate) const MAX_CONNECT_TARGETS: usize = 8;

/// Connects an outgoing flow in the background and reports the result: resolves `dest` the
/// RFC 3263 way (afresh on every call, so a reconnect sees DNS changes) and tries the targets
/// in order until one accepts; targets in `avoid` (recently failed) go last. When none
/// accepts, the `Closed` reason names every target tried and its error, or the DNS failure.
///
/// With `tls`, only TLS targets (`SIPS+D2T`, `_sips._tcp`, port 5061 by default) are asked
/// for and each is verified against the URI's host (RFC 5922); without it, only TCP ones.
/// A TLS target never falls back to plaintext.
pub(crate) fn connect(
    flow: FlowId,
    lookup: Lookup,
    resolver: Arc<Resolver>,
    avoid: Vec<SocketAddr>,
    tls: Option<TlsClient>,
    events: mpsc::UnboundedSender<FlowEvent>,
) {
    tokio::spawn(async move {
        let dest = lookup.dest();
        let host = dest.host_text();
        let policy = match tls {
            Some(_) => Policy {
                supported: vec![Transport::Tls],
                default: Transport::Tls,
            },
            None => Policy::default(),
        };
        let label = match dest.secure {
            true => format!("sips:{host}"),
            false => host.clone(),
        };
        let mut targets = match lookup.targets(&resolver, policy).await {
            Ok(t) => t,
            Err(e) => {
                let why = e.to_string();
                let _ = events.send(FlowEvent::Closed { flow, why });
                return;
            }
        };
        // Stable: the RFC 3263 order holds within each group.
        targets.sort_by_key(|t| avoid.contains(&t.addr));
        let result = connect_first(&targets, tls.as_ref().map(|c| (c, host.as_str()))).await;
        let tried = match &result {
            Ok(_) => 1 + failures_of(&result).len(),
            Err(f) => f.len(),
        };
        let slow = failures_of(&result)
            .iter()
            .filter(|(_, why)| why == TIMED_OUT)
            .map(|(t, _)| t.addr)
            .collect();
        let spare = result.is_ok() && tried < targets.len();
        let _ = events.send(FlowEvent::Tried { flow, slow, spare });
        let ev = match result {
            Ok(((stream, local, remote), _)) => FlowEvent::Connected {
                flow,
                stream,
                local,
                remote,
            },
            Err(failures) => FlowEvent::Closed {
                flow,
                why: describe_failures(&label, &failures),
            },
        };
        let _ = events.send(ev);
    });
}

/// What [`connect_first`] learnt: a connected stream and the targets that failed before it,
/// or every target's failure.
type Attempt =
    Result<((FlowStream, SocketAddr, SocketAddr), Vec<(Target, String)>), Vec<(Target, String)>>;

fn failures_of(a: &Attempt) -> &[(Target, String)] {
    match a {
        Ok((_, f)) | Err(f) => f,
    }
}

/// The reason of a connect that hit [`CONNECT_TIMEOUT`].
const TIMED_OUT: &str = "timed out";

/// Tries `targets` in order; the first connected stream, or every target's failure. With
/// `tls` (the client and the host to verify), TLS targets get a handshake after the connect.
async fn connect_first(targets: &[Target], tls: Option<(&TlsClient, &str)>) -> Attempt {
    let mut failures = Vec::new();
    for t in targets.iter().take(MAX_CONNECT_TARGETS) {
        let client = match (t.transport, tls) {
            (Transport::Tcp, _) => None,
            (Transport::Tls, Some(c)) => Some(c),
            _ => {
                failures.push((*t, format!("{} not supported", t.transport)));
                continue;
            }
        };
        match connect_one(t.addr, client).await {
            Ok(up) => {
                if !failures.is_empty() {
                    tracing::info!(target = %t.addr, "connected after failover ({})",
                        describe_failures("", &failures));
                }
                return Ok((up, failures));
            }
            Err(why) => failures.push((*t, why)),
        }
        tracing::debug!(target = %t.addr, "connect failed, next target");
    }
    if targets.len() > MAX_CONNECT_TARGETS {
        tracing::debug!(
            "{} more targets not tried",
            targets.len() - MAX_CONNECT_TARGETS
        );
    }
    Err(failures)
}

/// One target: the TCP connect (bounded by [`CONNECT_TIMEOUT`]), the socket tagged, then
/// with `tls` the handshake (bounded by [`HANDSHAKE_TIMEOUT`](super::tls::HANDSHAKE_TIMEOUT)).
async fn connect_one(
    addr: SocketAddr,
    tls: Option<(&TlsClient, &str)>,
) -> Result<(FlowStream, SocketAddr, SocketAddr), String> {
    let attempt = async {
        let stream = TcpStream::connect(addr).await?;
        let local = stream.local_addr()?;
        let remote = stream.peer_addr()?;
        Ok::<_, std::io::Error>((stream, local, remote))
    };
    let (stream, local, remote) = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(up)) => up,
        Ok(Err(e)) => return Err(io_reason(&e)),
        Err(_) => return Err(TIMED_OUT.into()),
    };
    tag(&stream);
    let Some((client, host)) = tls else {
        return Ok((Box::new(stream), local, remote));
    };
    let handshake = client.handshake(host, stream);
    match tokio::time::timeout(super::tls::HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(s)) => Ok((Box::new(s), local, remote)),
        Ok(Err(why)) => Err(why),
        Err(_) => Err("TLS: handshake timed out".into()),
    }
}

/// A connect error in words: `connection refused`, `network is unreachable`, or the OS's words
/// (`timed out` for the OS's own time-out, as for ours).
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut => TIMED_OUT.into(),
        _ => super::cause::io_cause(e),
    }
}

/// `connect HOST: ADDR REASON; ADDR REASON` (or without the `connect HOST: ` part when `host`
/// is empty).
fn describe_failures(host: &str, failures: &[(Target, String)]) -> String {
    let list = failures
        .iter()
        .map(|(t, why)| format!("{} {why}", t.addr))
        .collect::<Vec<_>>()
        .join("; ");
    match (host.is_empty(), failures.is_empty()) {
        (_, true) => format!("connect {host}: no target"),
        // A numeric host and its one address: `connect 127.0.0.1:5060: connection refused`.
        (false, false) if failures.len() == 1 && failures[0].0.addr.ip().to_string() == host => {
            format!("connect {}: {}", failures[0].0.addr, failures[0].1)
        }
        (true, false) => list,
        (false, false) => format!("connect {host}: {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(addr: &str) -> Target {
        Target {
            transport: Transport::Tcp,
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn queued_messages_leave_in_one_write_up_to_the_limit() {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tx.send(b"200".to_vec()).unwrap();
        tx.send(b"BYE".to_vec()).unwrap();
        assert_eq!(gather(b"100".to_vec(), &mut rx), b"100200BYE");
        assert!(rx.try_recv().is_err(), "all taken");
        tx.send(vec![1; 10]).unwrap();
        let big = gather(vec![0; GATHER_LIMIT], &mut rx);
        assert_eq!(big.len(), GATHER_LIMIT, "a full write gathers no more");
        assert_eq!(
            rx.try_recv().unwrap(),
            vec![1; 10],
            "left for the next write"
        );
    }

    #[test]
    fn failures_name_every_target() {
        let f = vec![
            (tcp("192.0.2.1:5060"), "connection refused".to_string()),
            (tcp("192.0.2.2:5060"), "timed out".to_string()),
        ];
        assert_eq!(
            describe_failures("sip.example.test", &f),
            "connect sip.example.test: 192.0.2.1:5060 connection refused; 192.0.2.2:5060 timed out"
        );
        assert_eq!(describe_failures("h", &[]), "connect h: no target");
    }

    #[tokio::test]
    async fn a_tls_target_needs_a_tls_client_and_never_falls_back_to_plaintext() {
        // A "server" that reads the first bytes and hangs up: no TLS handshake can finish.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = plain.local_addr().unwrap();
        let first = tokio::spawn(async move {
            let (mut s, _) = plain.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.map(|_| buf).ok()
        });
        let tls = Target {
            transport: Transport::Tls,
            addr,
        };
        let err = connect_first(&[tls], None).await.unwrap_err();
        assert_eq!(err[0].1, "tls not supported");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        // Any CA will do: the handshake never gets to the certificate.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
        let client = TlsClient::new(&super::super::tls::TlsOptions {
            ca: Some(ca),
            ..Default::default()
        })
        .unwrap();
        let err = connect_first(&[tls], Some((&client, "127.0.0.1")))
            .await
            .unwrap_err();
        assert!(err[0].1.starts_with("TLS: "), "{err:?}");
        // What reached the server was a TLS handshake record, not SIP.
        assert_eq!(first.await.unwrap().map(|b| b[0]), Some(0x16));
    }

    #[tokio::test]
    async fn fails_over_from_a_refusing_target_to_a_listening_one() {
        // A port that refuses: bind, note it, close.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        let targets = [tcp(&dead_addr.to_string()), tcp(&live_addr.to_string())];
        let ((_, _, remote), failed) = connect_first(&targets, None).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(remote, live_addr);
        let err = connect_first(&targets[..1], None).await.unwrap_err();
        assert_eq!(err, vec![(targets[0], "connection refused".to_string())]);
    }
}
