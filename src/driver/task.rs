//! The driver loop: feeds the sans-IO core and carries out its outputs.

use super::flow::{self, FlowEvent, FlowHandle};
use super::media::{
    self as call_media, MediaCtl, MediaNote, MediaOptions, MediaSockets, MediaTask,
};
use super::tap::Tap;
use crate::error::Error;
use crate::platform::{KeepAliveRun, RunAction, RunId, RunReport, RunTiming};
use crate::signaling::config::Config;
use crate::signaling::core::{CallHandle, Event, FlowId, Output, SignalingCore};
use crate::signaling::message::Uri;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
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
    Dtmf(CallHandle, String, Reply<()>),
    Info(CallHandle, String, Vec<u8>, Reply<()>),
    Mute(CallHandle, bool, Reply<()>),
    Push {
        call_id: String,
        from: Option<String>,
        reply: Reply<CallHandle>,
    },
    Background(bool, Duration, Reply<()>),
    KeepAlive(Duration, Reply<RunReport>),
    NetworkChanged(Reply<()>),
    Shutdown(Reply<()>),
}

/// How long shutdown waits for the un-REGISTER and the BYEs to be answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How long a closing flow may take to write out what is queued.
const FLUSH_LIMIT: Duration = Duration::from_secs(1);

pub(crate) struct DriverTask {
    core: SignalingCore,
    listener: Option<TcpListener>,
    media_ip: IpAddr,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    flow_tx: mpsc::UnboundedSender<FlowEvent>,
    flow_rx: mpsc::UnboundedReceiver<FlowEvent>,
    flows: HashMap<FlowId, FlowHandle>,
    connects: super::cause::ConnectGuards,
    /// RTP/RTCP sockets reserved per call and announced in SDP, until media starts.
    media: HashMap<CallHandle, MediaSockets>,
    media_options: MediaOptions,
    /// Copies of every SIP message and RTP/RTCP datagram, for capture (`--pcap`).
    tap: Tap,
    media_tasks: HashMap<CallHandle, MediaTask>,
    notes_tx: mpsc::UnboundedSender<MediaNote>,
    notes_rx: mpsc::UnboundedReceiver<MediaNote>,
    /// `Ended` events held back until the call's media report is out.
    pending_ended: HashMap<CallHandle, Event>,
    call_ids: HashMap<CallHandle, String>,
    live_calls: HashSet<CallHandle>,
    registered: bool,
    shutting_down: Option<(Instant, Reply<()>)>,
    /// A keep-alive handler run in progress: it ends at the pong, at re-registration, or at
    /// the budget, whichever comes first.
    keepalive_run: Option<PendingRun>,
    keepalive_runs: u64,
}

/// A keep-alive handler run in progress, executed by the driver.
#[derive(Debug)]
struct PendingRun {
    started: Instant,
    run: KeepAliveRun,
    reply: Reply<RunReport>,
}

/// The longest a run waits for its pong before it reconnects instead.
const PONG_WAIT: Duration = Duration::from_secs(3);

impl DriverTask {
    pub(crate) fn new(
        config: Config,
        listener: Option<TcpListener>,
        media_ip: IpAddr,
        media_options: MediaOptions,
        tap: Tap,
        cmd_rx: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        let (flow_tx, flow_rx) = mpsc::unbounded_channel();
        let (notes_tx, notes_rx) = mpsc::unbounded_channel();
        DriverTask {
            core: SignalingCore::new(config),
            listener,
            media_ip,
            cmd_rx,
            events,
            flow_tx,
            flow_rx,
            flows: HashMap::new(),
            connects: Default::default(),
            media: HashMap::new(),
            media_options,
            tap,
            media_tasks: HashMap::new(),
            notes_tx,
            notes_rx,
            pending_ended: HashMap::new(),
            call_ids: HashMap::new(),
            live_calls: HashSet::new(),
            registered: false,
            shutting_down: None,
            keepalive_run: None,
            keepalive_runs: 0,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut stopped_by = None;
        loop {
            self.drain_outputs();
            if let Some((deadline, _)) = &self.shutting_down {
                let done =
                    self.live_calls.is_empty() && !self.registered && self.media_tasks.is_empty();
                if done || Instant::now() >= *deadline {
                    stopped_by = self.shutting_down.take().map(|(_, reply)| reply);
                    break;
                }
            }
            self.check_keepalive_run();
            // A run that gave up on its pong has just asked for a reconnect.
            self.drain_outputs();
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
                note = self.notes_rx.recv() => {
                    if let Some(note) = note {
                        self.handle_media_note(note);
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
        let closing: Vec<_> = self
            .flows
            .drain()
            .map(|(_, f)| f.close(FLUSH_LIMIT))
            .collect();
        for c in closing {
            c.await;
        }
        // Only now: the caller may exit the process as soon as it hears back.
        if let Some(reply) = stopped_by {
            let _ = reply.send(Ok(()));
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.core.poll_timeout(),
            self.shutting_down.as_ref().map(|(d, _)| *d),
            self.keepalive_run
                .as_ref()
                .and_then(|r| r.run.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
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
        self.tap.flow_up(flow, local, remote);
        let handle = flow::spawn(flow, stream, true, self.flow_tx.clone());
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
                self.connects.disarm(flow);
                self.tap.flow_up(flow, local, remote);
                let handle = flow::spawn(flow, stream, false, self.flow_tx.clone());
                self.flows.insert(flow, handle);
                self.core.handle_flow_up(now, flow, local, remote);
            }
            FlowEvent::Data { flow, bytes } => {
                if self.flows.contains_key(&flow) {
                    tracing::trace!(target: "wakeline::sip", ?flow, "recv {} bytes", bytes.len());
                    trace_sip("recv", flow, &bytes);
                    self.tap.sip(false, flow, &bytes);
                    self.core.handle_received(now, flow, &bytes);
                }
            }
            FlowEvent::Closed { flow, why } => {
                tracing::debug!(?flow, "flow closed: {why}");
                self.connects.disarm(flow);
                if let Some(f) = self.flows.remove(&flow) {
                    f.reader.abort();
                }
                self.core.handle_flow_closed(now, flow, &why);
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
                    let sockets = MediaSockets::reserve(self.media_ip).await?;
                    let addr = sockets.local_rtp()?;
                    let call = self.core.call(now, target, addr)?;
                    self.media.insert(call, sockets);
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
                    let sockets = MediaSockets::reserve(self.media_ip).await?;
                    let addr = sockets.local_rtp()?;
                    self.core.answer(now, call, addr)?;
                    self.media.insert(call, sockets);
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
            Command::Info(call, content_type, body, reply) => {
                let r = self.core.send_info(now, call, &content_type, &body);
                let _ = reply.send(r.map_err(Error::from));
            }
            Command::Dtmf(call, digits, reply) => {
                // The media task replies once the digits are on the wire.
                let (tx, rx) = oneshot::channel();
                match self.media_ctl(call, MediaCtl::Dtmf(digits, tx)) {
                    Ok(()) => {
                        tokio::spawn(async move {
                            let r = rx.await.unwrap_or(Err(Error::Stopped));
                            let _ = reply.send(r);
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Mute(call, on, reply) => {
                let _ = reply.send(self.media_ctl(call, MediaCtl::Mute(on)));
            }
            Command::Push {
                call_id,
                from,
                reply,
            } => {
                let call = self.core.handle_push(now, call_id, from);
                let _ = reply.send(Ok(call));
            }
            Command::Background(on, period, reply) => {
                self.core.set_background(now, on, period);
                let _ = reply.send(Ok(()));
            }
            Command::KeepAlive(budget, reply) => {
                if self.keepalive_run.is_some() {
                    let _ = reply.send(Err(Error::Core(
                        crate::signaling::core::CoreError::InvalidState(
                            "a keep-alive run is going",
                        ),
                    )));
                } else {
                    // The core pings (or reconnects a missing flow) and refreshes the binding
                    // when it would not outlive the next run; the run machine decides when to
                    // give up on the pong and when the run is over.
                    let core = self.core.run_keepalive(now);
                    self.keepalive_runs += 1;
                    let timing = RunTiming {
                        pong_wait: PONG_WAIT.min(budget / 3),
                        ..RunTiming::default()
                    };
                    let run = KeepAliveRun::new(
                        RunId(self.keepalive_runs),
                        now,
                        budget,
                        timing,
                        core.pinged,
                    );
                    self.keepalive_run = Some(PendingRun {
                        started: now,
                        run,
                        reply,
                    });
                }
            }
            Command::NetworkChanged(reply) => {
                let result = self.network_changed(now).await;
                let _ = reply.send(result);
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

    /// Hands a command to the call's running media task.
    fn media_ctl(&self, call: CallHandle, ctl: MediaCtl) -> Result<(), Error> {
        use crate::signaling::core::CoreError;
        match self.media_tasks.get(&call) {
            Some(task) => task
                .ctl
                .send(ctl)
                .map_err(|_| Error::Core(CoreError::NoSuchCall)),
            None => Err(Error::Core(CoreError::InvalidState("no media yet"))),
        }
    }

    /// Feeds the keep-alive run what happened and carries out what it asks for.
    fn check_keepalive_run(&mut self) {
        let Some(pending) = &mut self.keepalive_run else {
            return;
        };
        let now = Instant::now();
        if self.core.last_pong().is_some_and(|t| t >= pending.started) {
            pending.run.handle_pong(now);
        }
        if pending.run.poll_timeout().is_some_and(|t| now >= t) {
            pending.run.handle_timeout(now);
        }
        while let Some(action) = pending.run.poll_action() {
            match action {
                // The core already sent the ping in `run_keepalive`.
                RunAction::SendPing => {}
                RunAction::Reconnect => {
                    // Connects at once (the flow may already be gone and reconnecting).
                    self.core.declare_control_flow_dead(now);
                }
                // The core registers on every new control flow by itself.
                RunAction::Reregister => {}
                RunAction::Done(report) => {
                    if let Some(p) = self.keepalive_run.take() {
                        let _ = p.reply.send(Ok(report));
                    }
                    return;
                }
            }
        }
    }

    /// New network: the core opens a new control flow and re-registers; each connected call
    /// gets fresh media sockets and a re-INVITE announcing them.
    async fn network_changed(&mut self, now: Instant) -> Result<(), Error> {
        for call in self.core.handle_network_changed(now) {
            let sockets = MediaSockets::reserve(self.media_ip).await?;
            let addr = sockets.local_rtp()?;
            match self.media_tasks.get(&call) {
                Some(task) => {
                    let _ = task.ctl.send(MediaCtl::Rebind(sockets));
                }
                None => {
                    self.media.insert(call, sockets);
                }
            }
            self.core.update_media(now, call, addr)?;
        }
        Ok(())
    }

    fn drain_outputs(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { flow, bytes } => match self.flows.get(&flow) {
                    Some(f) => {
                        trace_sip("send", flow, &bytes);
                        self.tap.sip(true, flow, &bytes);
                        if f.tx.send(bytes).is_err() {
                            tracing::debug!(?flow, "transmit on a closing flow");
                        }
                    }
                    None => tracing::debug!(?flow, "transmit on an unknown flow dropped"),
                },
                Output::Connect { flow, host, port } => {
                    tracing::debug!(?flow, %host, port, "connecting");
                    let (target, tx) = (format!("{host}:{port}"), self.flow_tx.clone());
                    let after = super::cause::CONNECT_TIMEOUT;
                    self.connects
                        .arm(flow, target, after, tx, |flow, why| FlowEvent::Closed {
                            flow,
                            why,
                        });
                    flow::connect(flow, host, port, self.flow_tx.clone());
                }
                Output::Close { flow } => {
                    if let Some(f) = self.flows.remove(&flow) {
                        tokio::spawn(f.close(FLUSH_LIMIT));
                    }
                }
                Output::Event(ev) => self.handle_event(ev),
            }
        }
    }

    fn handle_event(&mut self, ev: Event) {
        match &ev {
            Event::Incoming { call, call_id, .. } => {
                self.live_calls.insert(*call);
                self.call_ids.insert(*call, call_id.clone());
            }
            Event::State { call, call_id, .. } => {
                self.call_ids.insert(*call, call_id.clone());
            }
            Event::Media { call, media, .. } => {
                if let Some(task) = self.media_tasks.get(call) {
                    let _ = task.ctl.send(MediaCtl::Update(media.clone()));
                } else if let Some(sockets) = self.media.remove(call) {
                    let task = call_media::spawn(
                        *call,
                        sockets,
                        media.clone(),
                        self.media_options.clone(),
                        self.tap.clone(),
                        self.notes_tx.clone(),
                    );
                    self.media_tasks.insert(*call, task);
                }
            }
            Event::Ended { call, .. } => {
                self.live_calls.remove(call);
                self.media.remove(call);
                if let Some(task) = self.media_tasks.get(call) {
                    // The report comes first; `Ended` follows it (handle_media_note).
                    let _ = task.ctl.send(MediaCtl::Stop);
                    self.pending_ended.insert(*call, ev);
                    return;
                }
                self.call_ids.remove(call);
            }
            Event::Registered { .. } => {
                self.registered = true;
                if let Some(p) = &mut self.keepalive_run {
                    p.run.handle_registered(Instant::now());
                }
            }
            Event::FlowUp { .. } => {
                if let Some(p) = &mut self.keepalive_run {
                    p.run.handle_flow_up(Instant::now());
                }
            }
            Event::FlowDown { .. } => {
                if let Some(p) = &mut self.keepalive_run {
                    p.run.handle_flow_down(Instant::now());
                }
            }
            Event::Unregistered => self.registered = false,
            _ => {}
        }
        // The application may have dropped its receiver; the driver keeps running.
        let _ = self.events.send(ev);
    }

    fn handle_media_note(&mut self, note: MediaNote) {
        match note {
            MediaNote::Dtmf(call, digit) => {
                let call_id = self.call_ids.get(&call).cloned().unwrap_or_default();
                let _ = self.events.send(Event::Dtmf {
                    call,
                    call_id,
                    digit,
                });
            }
            MediaNote::Stats(call, snapshot) => {
                let call_id = self.call_ids.get(&call).cloned().unwrap_or_default();
                let _ = self.events.send(Event::MediaStats {
                    call,
                    call_id,
                    snapshot,
                });
            }
            MediaNote::Done(call, report) => {
                self.media_tasks.remove(&call);
                if let Some(e) = &report.error {
                    tracing::warn!(?call, "media did not run: {e}");
                }
                let call_id = self.call_ids.get(&call).cloned().unwrap_or_default();
                let _ = self.events.send(Event::MediaReport {
                    call,
                    call_id,
                    report,
                });
                if let Some(ended) = self.pending_ended.remove(&call) {
                    self.call_ids.remove(&call);
                    let _ = self.events.send(ended);
                }
            }
        }
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
