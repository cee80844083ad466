//! One TCP flow: a reader task that forwards bytes to the driver and a writer task fed by a
//! channel, so a slow peer never blocks the driver loop.

use crate::signaling::core::FlowId;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What the flow tasks report to the driver.
#[derive(Debug)]
pub(crate) enum FlowEvent {
    /// An outgoing connection is up.
    Connected {
        flow: FlowId,
        stream: TcpStream,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// Bytes arrived.
    Data { flow: FlowId, bytes: Vec<u8> },
    /// The flow is gone (connect failure, EOF, read or write error).
    Closed { flow: FlowId, why: String },
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
    pub writer: tokio::task::JoinHandle<Option<OwnedWriteHalf>>,
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

/// Tags the control socket and spawns the reader and writer tasks.
pub(crate) fn spawn(
    flow: FlowId,
    stream: TcpStream,
    accepted: bool,
    events: mpsc::UnboundedSender<FlowEvent>,
) -> FlowHandle {
    // Accepted and connected control flows alike: keep-alive, TCP_NODELAY, DSCP CS3 / service type.
    if let Err(e) = crate::platform::tag_control_socket(
        &stream,
        &crate::platform::ControlSocketOptions::default(),
    ) {
        tracing::debug!(?flow, "tagging the control socket: {e}");
    }
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let wev = events.clone();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
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

/// Connects an outgoing flow in the background and reports the result.
pub(crate) fn connect(
    flow: FlowId,
    host: String,
    port: u16,
    events: mpsc::UnboundedSender<FlowEvent>,
) {
    tokio::spawn(async move {
        let result = async {
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            let local = stream.local_addr()?;
            let remote = stream.peer_addr()?;
            Ok::<_, std::io::Error>((stream, local, remote))
        }
        .await;
        let ev = match result {
            Ok((stream, local, remote)) => FlowEvent::Connected {
                flow,
                stream,
                local,
                remote,
            },
            Err(e) => FlowEvent::Closed {
                flow,
                why: format!("connect {host}:{port}: {}", super::cause::io_cause(&e)),
            },
        };
        let _ = events.send(ev);
    });
}
