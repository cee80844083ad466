//! The driver loop: feeds the sans-IO core and carries out its outputs.

use super::flow::{self, FlowEvent, FlowHandle};
use crate::error::Error;
use crate::signaling::config::Config;
use crate::signaling::core::{CallHandle, Event, FlowId, Output, SignalingCore};
use crate::signaling::message::Uri;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Application commands, carried from the API handles to the driver task.
#[derive(Debug)]
pub(crate) enum Command {
    Register(Reply<()>),
    Unregister(Reply<()>),
    Call {
        target: Uri,
        reply: Reply<CallHandle>,
    },
    Ring(CallHandle, Reply<()>),
    Answer(CallHandle, Reply<()>),
    Reject(CallHandle, u16, Reply<()>),
    Hangup(CallHandle, Reply<()>),
    Hold(CallHandle, bool, Reply<()>),
    Shutdown(Reply<()>),
}

/// How long shutdown waits for the un-REGISTER and the BYEs to be answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub(crate) struct DriverTask {
    core: SignalingCore,
    listener: Option<TcpListener>,
    media_ip: IpAddr,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    flow_tx: mpsc::UnboundedSender<FlowEvent>,
    flow_rx: mpsc::UnboundedReceiver<FlowEvent>,
    flows: HashMap<FlowId, FlowHandle>,
    /// One reserved RTP socket per call, announced in SDP (media issue plugs in here).
    media: HashMap<CallHandle, UdpSocket>,
    live_calls: HashSet<CallHandle>,
    registered: bool,
    shutting_down: Option<(Instant, Reply<()>)>,
}

impl DriverTask {
    pub(crate) fn new(
        config: Config,
        listener: Option<TcpListener>,
        media_ip: IpAddr,
        cmd_rx: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        let (flow_tx, flow_rx) = mpsc::unbounded_channel();
        DriverTask {
            core: SignalingCore::new(config),
            listener,
            media_ip,
            cmd_rx,
            events,
            flow_tx,
            flow_rx,
            flows: HashMap::new(),
            media: HashMap::new(),
            live_calls: HashSet::new(),
            registered: false,
            shutting_down: None,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            self.drain_outputs();
            if let Some((deadline, _)) = &self.shutting_down {
                let done = self.live_calls.is_empty() && !self.registered;
                if done || Instant::now() >= *deadline {
                    if let Some((_, reply)) = self.shutting_down.take() {
                        let _ = reply.send(Ok(()));
                    }
                    break;
                }
            }
            let deadline = self.next_deadline();
            tokio::select! {
                ev = self.flow_rx.recv() => {
                    if let Some(ev) = ev {
                        self.handle_flow_event(ev);
                    }
                }
                accepted = accept(&self.listener) => {
                    match accepted {
                        Ok((stream, remote)) => self.handle_accepted(stream, remote),
                        Err(e) => tracing::warn!("accept: {e}"),
                    }
                }
                cmd = self.cmd_rx.recv() => {
                    match cmd {
                        Some(cmd) => self.handle_command(cmd).await,
                        None => break,
                    }
                }
                _ = sleep_until(deadline) => {
                    self.core.handle_timeout(Instant::now());
                }
            }
        }
        for (_, f) in self.flows.drain() {
            f.reader.abort();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let core = self.core.poll_timeout();
        let shutdown = self.shutting_down.as_ref().map(|(d, _)| *d);
        match (core, shutdown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_accepted(&mut self, stream: tokio::net::TcpStream, remote: SocketAddr) {
        let local = match stream.local_addr() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("accepted socket has no local address: {e}");
                return;
            }
        };
        let flow = self
            .core
            .handle_flow_accepted(Instant::now(), local, remote);
        tracing::debug!(?flow, %remote, "accepted");
        let handle = flow::spawn(flow, stream, self.flow_tx.clone());
        self.flows.insert(flow, handle);
    }

    fn handle_flow_event(&mut self, ev: FlowEvent) {
        let now = Instant::now();
        match ev {
            FlowEvent::Connected {
                flow,
                stream,
                local,
                remote,
            } => {
                let handle = flow::spawn(flow, stream, self.flow_tx.clone());
                self.flows.insert(flow, handle);
                self.core.handle_flow_up(now, flow, local, remote);
            }
            FlowEvent::Data { flow, bytes } => {
                if self.flows.contains_key(&flow) {
                    tracing::trace!(target: "wakeline::sip", ?flow, "recv {} bytes", bytes.len());
                    trace_sip("recv", flow, &bytes);
                    self.core.handle_received(now, flow, &bytes);
                }
            }
            FlowEvent::Closed { flow, why } => {
                tracing::debug!(?flow, "flow closed: {why}");
                if let Some(f) = self.flows.remove(&flow) {
                    f.reader.abort();
                }
                self.core.handle_flow_down(now, flow);
            }
        }
    }

    async fn handle_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Register(reply) => {
                let _ = reply.send(self.core.register(now).map_err(Error::from));
            }
            Command::Unregister(reply) => {
                let _ = reply.send(self.core.unregister(now).map_err(Error::from));
            }
            Command::Call { target, reply } => {
                let result = async {
                    let socket = self.reserve_media().await?;
                    let addr = socket.local_addr()?;
                    let call = self.core.call(now, target, addr)?;
                    self.media.insert(call, socket);
                    self.live_calls.insert(call);
                    Ok(call)
                }
                .await;
                let _ = reply.send(result);
            }
            Command::Ring(call, reply) => {
                let _ = reply.send(self.core.ring(now, call).map_err(Error::from));
            }
            Command::Answer(call, reply) => {
                let result = async {
                    let socket = self.reserve_media().await?;
                    let addr = socket.local_addr()?;
                    self.core.answer(now, call, addr)?;
                    self.media.insert(call, socket);
                    Ok(())
                }
                .await;
                let _ = reply.send(result);
            }
            Command::Reject(call, status, reply) => {
                let _ = reply.send(self.core.reject(now, call, status).map_err(Error::from));
            }
            Command::Hangup(call, reply) => {
                let _ = reply.send(self.core.hangup(now, call).map_err(Error::from));
            }
            Command::Hold(call, on, reply) => {
                let _ = reply.send(self.core.hold(now, call, on).map_err(Error::from));
            }
            Command::Shutdown(reply) => {
                for call in self.live_calls.clone() {
                    if let Err(e) = self.core.hangup(now, call) {
                        tracing::debug!(?call, "hangup at shutdown: {e}");
                    }
                }
                if self.registered {
                    if let Err(e) = self.core.unregister(now) {
                        tracing::debug!("unregister at shutdown: {e}");
                    }
                }
                self.shutting_down = Some((now + SHUTDOWN_GRACE, reply));
            }
        }
    }

    async fn reserve_media(&self) -> Result<UdpSocket, Error> {
        Ok(UdpSocket::bind(SocketAddr::new(self.media_ip, 0)).await?)
    }

    fn drain_outputs(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { flow, bytes } => match self.flows.get(&flow) {
                    Some(f) => {
                        trace_sip("send", flow, &bytes);
                        if f.tx.send(bytes).is_err() {
                            tracing::debug!(?flow, "transmit on a closing flow");
                        }
                    }
                    None => tracing::debug!(?flow, "transmit on an unknown flow dropped"),
                },
                Output::Connect { flow, host, port } => {
                    tracing::debug!(?flow, %host, port, "connecting");
                    flow::connect(flow, host, port, self.flow_tx.clone());
                }
                Output::Close { flow } => {
                    if let Some(f) = self.flows.remove(&flow) {
                        f.reader.abort();
                    }
                }
                Output::Event(ev) => self.handle_event(ev),
            }
        }
    }

    fn handle_event(&mut self, ev: Event) {
        match &ev {
            Event::Incoming { call, .. } => {
                self.live_calls.insert(*call);
            }
            Event::Ended { call, .. } => {
                self.live_calls.remove(call);
                self.media.remove(call);
            }
            Event::Registered { .. } => self.registered = true,
            Event::Unregistered => self.registered = false,
            _ => {}
        }
        // The application may have dropped its receiver; the driver keeps running.
        let _ = self.events.send(ev);
    }
}

async fn accept(
    listener: &Option<TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// `--sip-trace`: every SIP message sent and received, at target `wakeline::sip_trace`.
fn trace_sip(dir: &str, flow: FlowId, bytes: &[u8]) {
    if tracing::enabled!(target: "wakeline::sip_trace", tracing::Level::INFO) {
        let text = String::from_utf8_lossy(bytes);
        tracing::info!(target: "wakeline::sip_trace", "{dir} flow {}:\n{}", flow.0, text.trim_end());
    }
}
