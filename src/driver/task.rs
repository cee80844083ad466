//! The driver loop: feeds the sans-IO core and carries out its outputs.

use super::api::EventSink;
use super::flow::{self, FlowEvent, FlowHandle};
use super::listener::{AcceptBackoff, Admission, CloseReason, InboundGuard, ListenerLimits};
use super::media::{
    self as call_media, MediaCtl, MediaNote, MediaOptions, MediaSockets, MediaTask,
};
use super::resolve::{self, Avoid, ConnectHints, Lookup, Resolver};
use super::route;
use super::tap::Tap;
use super::tls::{TlsClient, TlsListener};
use super::udp::UdpSip;
use crate::error::Error;
use crate::media::MediaSnapshot;
use crate::platform::{KeepAliveRun, RunAction, RunId, RunReport, RunTiming};
use crate::signaling::config::Config;
use crate::signaling::core::fasthash::{FastMap, FastSet};
use crate::signaling::core::{CallHandle, Event, FlowId, Output, SignalingCore, Transport};
use crate::signaling::message::Uri;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

type Reply<T> = oneshot::Sender<Result<T, Error>>;

#[path = "shutdown.rs"]
mod shutdown;
pub(crate) use shutdown::DEFAULT_GRACE;
use shutdown::{Cause, Shutdown};

#[path = "prepare.rs"]
mod prepare;
use prepare::{Prepared, Purpose};

#[path = "task_media.rs"]
mod task_media;

/// Application commands, carried from the API handles to the driver task.
#[derive(Debug)]
pub(crate) enum Command {
    Register(Reply<()>),
    Unregister(Reply<()>),
    Call {
        target: Uri,
        /// This call's media options (`None`: the user agent's).
        media: Option<Box<MediaOptions>>,
        reply: Reply<CallHandle>,
    },
    Ring(CallHandle, Reply<()>),
    Answer(CallHandle, Option<Box<MediaOptions>>, Reply<()>),
    Reject(CallHandle, u16, Reply<()>),
    Hangup(CallHandle, Reply<()>),
    Hold(CallHandle, bool, Reply<()>),
    Dtmf(CallHandle, String, Reply<()>),
    Info(CallHandle, String, Vec<u8>, Reply<()>),
    Mute(CallHandle, bool, Reply<()>),
    /// The app's audio session for the call became active (`true`) or inactive.
    AudioSession(CallHandle, bool, Reply<()>),
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

/// How long a closing flow may take to write out what is queued.
const FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// How long closing every flow at shutdown may take, all of them together.
const CLOSE_ALL_LIMIT: Duration = Duration::from_secs(2);

pub(crate) struct DriverTask {
    core: SignalingCore,
    listener: Option<TcpListener>,
    /// The user's media address; `None`: chosen per call (`driver/route.rs`).
    media_ip: Option<IpAddr>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    events: EventSink,
    flow_tx: mpsc::UnboundedSender<FlowEvent>,
    flow_rx: mpsc::UnboundedReceiver<FlowEvent>,
    flows: FastMap<FlowId, FlowHandle>,
    /// The SIP UDP socket (`super::udp`).
    udp: UdpSip,
    /// RTP/RTCP sockets reserved per call and announced in SDP, until media starts.
    media: FastMap<CallHandle, MediaSockets>,
    media_options: MediaOptions,
    /// Per-call media options (`answer_with`, `call_with`) until the call's media starts.
    call_media: FastMap<CallHandle, MediaOptions>,
    /// The app's audio session for calls whose media has not started: it decides how their
    /// audio starts, whatever their options say.
    early_session: FastMap<CallHandle, bool>,
    /// Copies of every SIP message and RTP/RTCP datagram, for capture (`--pcap`).
    tap: Tap,
    media_tasks: FastMap<CallHandle, MediaTask>,
    /// This thread as a home for a few calls' media (`media_rt.rs`), on a current-thread
    /// runtime.
    home: Option<Arc<super::media_rt::Home>>,
    notes_tx: mpsc::UnboundedSender<MediaNote>,
    notes_rx: mpsc::UnboundedReceiver<MediaNote>,
    /// `Ended` events held back until the call's media report is out.
    pending_ended: FastMap<CallHandle, Event>,
    call_ids: FastMap<CallHandle, String>,
    live_calls: FastSet<CallHandle>,
    /// Drop is shutdown: set once `shutdown` is asked for or every handle is gone.
    shutting_down: Option<Shutdown>,
    /// How long shutdown waits for its BYEs, CANCELs and un-REGISTER (`shutdown.rs`).
    shutdown_grace: Duration,
    /// A keep-alive handler run in progress: it ends at the pong, at re-registration, or at
    /// the budget, whichever comes first.
    keepalive_run: Option<PendingRun>,
    keepalive_runs: u64,
    /// Limits on the connections peers open to us (`listener.rs`).
    guard: InboundGuard,
    accept_backoff: AcceptBackoff,
    /// DNS for connect targets (RFC 3263), and the URIs behind the core's connect requests.
    resolver: Arc<Resolver>,
    hints: ConnectHints,
    /// Control-flow connects in progress (a REGISTER timeout on them may fail over).
    control_connects: FastSet<FlowId>,
    /// Targets that timed out lately, tried last (RFC 3263 §4.3 failover).
    avoid: Avoid,
    /// Connects that left other targets untried.
    spare: FastSet<FlowId>,
    /// The control flow and its target, while another target could take over.
    failover: Option<(FlowId, SocketAddr)>,
    /// TLS connects use this client (or fail with why there is none); `super::tls`.
    tls_client: Result<TlsClient, String>,
    /// The TLS listener (`listen --tls-bind`).
    tls_listener: Option<TlsListener>,
    /// The STUN server for media behind NAT (`super::stun`).
    stun: Option<String>,
    /// Media prepared off the loop for calls, answers and rebinds (`prepare.rs`) comes back here.
    prep_tx: mpsc::UnboundedSender<Prepared>,
    prep_rx: mpsc::UnboundedReceiver<Prepared>,
    /// How many preparations are off the loop: `prep_rx` is polled only while one is.
    preparing: usize,
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
        media_ip: Option<IpAddr>,
        media_options: MediaOptions,
        tap: Tap,
        cmd_rx: mpsc::UnboundedReceiver<Command>,
        events: EventSink,
    ) -> Self {
        let (flow_tx, flow_rx) = mpsc::unbounded_channel();
        let udp = UdpSip::new(None, flow_tx.clone());
        let (notes_tx, notes_rx) = mpsc::unbounded_channel();
        let hints = ConnectHints::new(&config);
        let (prep_tx, prep_rx) = mpsc::unbounded_channel();
        DriverTask {
            core: SignalingCore::new(config),
            listener,
            media_ip,
            cmd_rx,
            events,
            flow_tx,
            flow_rx,
            flows: FastMap::default(),
            udp,
            media: FastMap::default(),
            media_options,
            call_media: FastMap::default(),
            early_session: FastMap::default(),
            tap,
            media_tasks: FastMap::default(),
            home: super::media_rt::Home::here(),
            notes_tx,
            notes_rx,
            pending_ended: FastMap::default(),
            call_ids: FastMap::default(),
            live_calls: FastSet::default(),
            shutting_down: None,
            shutdown_grace: DEFAULT_GRACE,
            keepalive_run: None,
            keepalive_runs: 0,
            guard: InboundGuard::new(ListenerLimits::default()),
            accept_backoff: AcceptBackoff::default(),
            resolver: Arc::new(Resolver::new(&[])),
            hints,
            control_connects: FastSet::default(),
            avoid: Avoid::default(),
            spare: FastSet::default(),
            failover: None,
            tls_client: Err("TLS: not set up".into()),
            tls_listener: None,
            stun: None,
            prep_tx,
            prep_rx,
            preparing: 0,
        }
    }

    /// Announce media at the mapping this STUN server reports (`super::stun`).
    pub(crate) fn with_stun(mut self, server: Option<String>) -> Self {
        self.stun = server;
        self
    }

    /// The TLS client for `sips:` / `transport=tls` connects, and the TLS listener if any.
    pub(crate) fn with_tls(
        mut self,
        client: Result<TlsClient, String>,
        listener: Option<TlsListener>,
    ) -> Self {
        self.tls_client = client;
        self.tls_listener = listener;
        self
    }

    /// How long shutdown waits for the network before it gives up (`shutdown.rs`).
    pub(crate) fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The id of the core: every call handle it makes carries it.
    pub(crate) fn core_id(&self) -> u32 {
        self.core.id()
    }

    pub(crate) fn with_listener_limits(mut self, limits: ListenerLimits) -> Self {
        self.guard = InboundGuard::new(limits);
        self
    }

    /// Resolve with these DNS servers instead of the system's (none: the system's).
    pub(crate) fn with_dns_servers(mut self, servers: &[SocketAddr]) -> Self {
        self.resolver = Arc::new(Resolver::new(servers));
        self
    }

    /// Takes SIP over UDP on this socket (the listener's address) instead of an ephemeral one
    /// made on first need.
    pub(crate) fn with_udp(mut self, socket: Option<std::net::UdpSocket>) -> Self {
        if socket.is_some() {
            self.udp = UdpSip::new(socket, self.flow_tx.clone());
        }
        self
    }

    pub(crate) async fn run(mut self) {
        let mut timer = crate::platform::wake_timer::WakeTimer::new();
        loop {
            self.drain_outputs();
            if self.shutdown_done(Instant::now()) {
                break;
            }
            if self.keepalive_run.is_some() {
                self.check_keepalive_run();
                // A run that gave up on its pong has just asked for a reconnect.
                self.drain_outputs();
            }
            let deadline = self.next_deadline();
            tokio::select! {
                ev = self.flow_rx.recv() => {
                    if let Some(ev) = ev {
                        self.handle_flow_event(ev);
                    }
                }
                accepted = accept(self.listener.as_ref(), self.accept_backoff.paused_until()) => {
                    match accepted {
                        Ok((stream, remote)) => {
                            self.accept_backoff.succeeded();
                            self.handle_accepted(stream, remote, false);
                        }
                        Err(e) => {
                            if let Some(line) = self.accept_backoff.failed(Instant::now(), &e) {
                                tracing::warn!("{line}");
                            }
                        }
                    }
                }
                accepted = accept(
                    self.tls_listener.as_ref().map(|l| &l.listener),
                    self.accept_backoff.paused_until(),
                ), if self.tls_listener.is_some() => {
                    match accepted {
                        Ok((stream, remote)) => {
                            self.accept_backoff.succeeded();
                            self.handle_accepted(stream, remote, true);
                        }
                        Err(e) => {
                            if let Some(line) = self.accept_backoff.failed(Instant::now(), &e) {
                                tracing::warn!("{line}");
                            }
                        }
                    }
                }
                // Polled only while something may send on it (a preparation off the loop, a
                // media task): every branch a wake-up polls costs.
                done = self.prep_rx.recv(), if self.preparing > 0 => {
                    if let Some(done) = done {
                        self.preparing -= 1;
                        self.media_prepared(done);
                    }
                }
                note = self.notes_rx.recv(), if !self.media_tasks.is_empty() => {
                    if let Some(note) = note {
                        self.handle_media_note(note);
                    }
                }
                cmd = self.cmd_rx.recv(), if !self.handles_gone() => {
                    match cmd {
                        Some(cmd) => self.handle_command(cmd).await,
                        // Drop is shutdown (`shutdown.rs`).
                        None => self.begin_shutdown(Instant::now(), Cause::HandlesDropped, None),
                    }
                }
                _ = timer.sleep_until(deadline) => {
                    let now = Instant::now();
                    self.core.handle_timeout(now);
                    let core = &self.core;
                    for (flow, why) in self.guard.expired(now, |f| core.flow_in_use(f)) {
                        self.drop_inbound(now, flow, why);
                    }
                }
            }
        }
        // Every flow closes at the same time, under one deadline, however many there are
        // (one after another, 50 connections took 50 s).
        let mut closing = tokio::task::JoinSet::new();
        for (_, f) in self.flows.drain() {
            closing.spawn(f.close(FLUSH_LIMIT));
        }
        let all = async { while closing.join_next().await.is_some() {} };
        if tokio::time::timeout(CLOSE_ALL_LIMIT, all).await.is_err() {
            tracing::debug!("flows still closing after {CLOSE_ALL_LIMIT:?}; leaving them");
        }
        // Only now: the caller may exit the process as soon as it hears back.
        for reply in self
            .shutting_down
            .take()
            .into_iter()
            .flat_map(|s| s.replies)
        {
            let _ = reply.send(Ok(()));
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.core.poll_timeout(),
            self.shutting_down.as_ref().map(|s| s.deadline),
            self.keepalive_run
                .as_ref()
                .and_then(|r| r.run.poll_timeout()),
            self.guard.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A connection on the TCP listener, or on the TLS listener (`tls`: the handshake runs
    /// first, in its own task, and the flow is admitted when it is done).
    fn handle_accepted(&mut self, stream: tokio::net::TcpStream, remote: SocketAddr, tls: bool) {
        // An IPv4 peer on a dual-stack `[::]` listener: say 192.0.2.1, not ::ffff:192.0.2.1.
        let remote = route::canonical(remote);
        let local = match stream.local_addr() {
            Ok(l) => route::canonical(l),
            Err(e) => {
                tracing::warn!("accepted socket has no local address: {e}");
                return;
            }
        };
        flow::tag(&stream);
        match (&self.tls_listener, tls) {
            (Some(l), true) => l.handshake(stream, local, remote, self.flow_tx.clone()),
            _ => self.admit(Box::new(stream), local, remote, Transport::Tcp),
        }
    }

    /// Admits an accepted flow past the listener guard and starts its tasks.
    fn admit(
        &mut self,
        stream: flow::FlowStream,
        local: SocketAddr,
        remote: SocketAddr,
        transport: Transport,
    ) {
        let now = Instant::now();
        let core = &self.core;
        match self.guard.admit(|f| core.flow_in_use(f)) {
            Admission::Admit => {}
            Admission::Evict(old) => self.drop_inbound(now, old, CloseReason::Evicted),
            Admission::Refuse => {
                tracing::debug!(%remote, "refused: {} busy inbound connections", self.guard.len());
                return;
            }
        }
        let flow = self
            .core
            .handle_flow_accepted_over(now, local, remote, transport);
        self.guard.accepted(now, flow);
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
                let control = self.control_connects.remove(&flow);
                if self.spare.remove(&flow) && control {
                    self.failover = Some((flow, remote));
                }
                self.tap.flow_up(flow, local, remote);
                let handle = flow::spawn(flow, stream, false, self.flow_tx.clone());
                self.flows.insert(flow, handle);
                self.core.handle_flow_up(now, flow, local, remote);
            }
            FlowEvent::TlsAccepted {
                stream,
                local,
                remote,
            } => self.admit(stream, local, remote, Transport::Tls),
            FlowEvent::Data { flow, bytes } => {
                if self.flows.contains_key(&flow) {
                    tracing::trace!(target: "wakeline::sip", ?flow, "recv {} bytes", bytes.len());
                    trace_sip("recv", flow, &bytes);
                    self.tap.sip(false, flow, &bytes);
                    self.core.handle_received(now, flow, &bytes);
                    let buffered = self.core.flow_buffered(flow);
                    if let Some(f) = self.guard.data(now, flow, buffered) {
                        self.drop_inbound(now, f, CloseReason::TooMuchBuffered);
                    }
                }
            }
            FlowEvent::Picked {
                flow,
                transport,
                lookup,
            } => {
                let transport = transport.into();
                self.core.handle_flow_transport(flow, transport);
                self.connect_over(flow, transport, lookup);
            }
            FlowEvent::Unreachable { remote, why } => {
                tracing::debug!(%remote, "UDP: {why}");
                self.fail_over(Some(remote), &format!("got {why}"));
            }
            FlowEvent::Tried { flow, slow, spare } => {
                for addr in slow {
                    self.avoid.add(addr, now);
                }
                if spare {
                    self.spare.insert(flow);
                }
            }
            FlowEvent::UdpUp {
                flow,
                local,
                remote,
            } => {
                let control = self.control_connects.remove(&flow);
                if self.spare.remove(&flow) && control {
                    self.failover = Some((flow, remote));
                }
                self.tap.flow_up(flow, local, remote);
                self.core.handle_flow_up(now, flow, local, remote);
            }
            FlowEvent::Datagram {
                local,
                remote,
                bytes,
            } => {
                trace_sip("recv", FlowId(0), &bytes);
                self.tap.datagram(false, local, remote, &bytes);
                self.core.handle_datagram(now, local, remote, &bytes);
            }
            FlowEvent::Closed { flow, why } => {
                tracing::debug!(?flow, "flow closed: {why}");
                self.guard.closed(flow);
                if self.failover.is_some_and(|(f, _)| f == flow) {
                    self.failover = None;
                }
                self.connect_failed(flow, &why);
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
            Command::Call { reply, .. } if self.shutting_down.is_some() => {
                let _ = reply.send(Err(Error::Stopped));
            }
            Command::Call {
                target,
                media,
                reply,
            } => {
                self.hints.note(&target);
                let plan =
                    route::media_plan(&self.core, self.media_ip, None, Some(&target), &self.hints);
                self.prepare(
                    plan,
                    Purpose::Call {
                        target,
                        media,
                        reply,
                    },
                );
            }
            Command::Ring(call, reply) => {
                let _ = reply.send(self.core.ring(now, call).map_err(Error::from));
            }
            Command::Answer(call, media, reply) => {
                let plan =
                    route::media_plan(&self.core, self.media_ip, Some(call), None, &self.hints);
                self.prepare(plan, Purpose::Answer { call, media, reply });
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
            Command::Push { reply, .. } if self.shutting_down.is_some() => {
                let _ = reply.send(Err(Error::Stopped));
            }
            Command::AudioSession(call, on, reply) => {
                let _ = reply.send(self.audio_session(call, on));
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
                let calls = self.core.handle_network_changed(now);
                self.rebind_next(calls, reply);
            }
            Command::Shutdown(reply) => self.begin_shutdown(now, Cause::Asked, Some(reply)),
        }
    }

    /// Closes an inbound connection at once (both tasks stop, the socket closes) for the
    /// listener guard, and tells the core it is gone.
    fn drop_inbound(&mut self, now: Instant, flow: FlowId, why: CloseReason) {
        tracing::debug!(?flow, "closing inbound connection: {why}");
        self.guard.closed(flow);
        if let Some(f) = self.flows.remove(&flow) {
            f.reader.abort();
            f.writer.abort();
        }
        self.core.handle_flow_down(now, flow);
    }

    /// A connect that never came up: say why. The core hears the cause with the flow's loss
    /// (`handle_flow_closed`) and reports it as the calls' end or a registration failure.
    fn connect_failed(&mut self, flow: FlowId, why: &str) {
        if self.flows.contains_key(&flow) {
            return; // it was up: an ordinary close
        }
        self.control_connects.remove(&flow);
        tracing::debug!(?flow, "{why}");
    }

    /// RFC 3263 §4.3: a REGISTER that timed out on a target with others behind it fails over:
    /// the target goes last for a while and the control flow reconnects, resolving afresh.
    fn register_timed_out(&mut self) {
        self.fail_over(None, "timed out");
    }

    /// [`Self::register_timed_out`] for a REGISTER whose target (`only`, or whichever) `what`
    /// (`timed out`, `got ICMP port unreachable`).
    fn fail_over(&mut self, only: Option<SocketAddr>, what: &str) {
        let Some((flow, remote)) = self.failover.filter(|(_, r)| only.is_none_or(|o| o == *r))
        else {
            return;
        };
        self.failover = None;
        // A TCP/TLS flow has a handle; a UDP flow is only the core's.
        let f = self.flows.remove(&flow);
        if f.is_none() && self.core.udp_remote(flow).is_none() {
            return;
        }
        tracing::warn!(
            ?flow,
            "REGISTER to {remote} {what}: failing over to the next target"
        );
        let now = Instant::now();
        self.avoid.add(remote, now);
        if let Some(f) = f {
            tokio::spawn(f.close(FLUSH_LIMIT));
        }
        self.core.handle_flow_down(now, flow);
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
                    None => match self.core.udp_remote(flow) {
                        Some(remote) => {
                            trace_sip("send", flow, &bytes);
                            self.udp.send(remote, &bytes, &self.tap);
                        }
                        None => tracing::debug!(?flow, "transmit on an unknown flow dropped"),
                    },
                },
                Output::Connect {
                    flow,
                    transport,
                    host,
                    port,
                } => {
                    tracing::debug!(?flow, %host, port, %transport, "connecting");
                    if self.hints.is_control(&host, port) {
                        self.control_connects.insert(flow);
                    }
                    let dest = self.hints.destination(&host, port);
                    match self.hints.dns_pick(&dest) {
                        Some(default) => {
                            let (resolver, tx) = (self.resolver.clone(), self.flow_tx.clone());
                            resolve::spawn_pick(flow, dest, default, resolver, tx);
                        }
                        None => self.connect_over(flow, transport, Lookup::Resolve(dest)),
                    }
                }
                Output::Close { flow } => {
                    self.guard.closed(flow);
                    if let Some(f) = self.flows.remove(&flow) {
                        tokio::spawn(f.close(FLUSH_LIMIT));
                    }
                }
                Output::Event(ev) => self.handle_event(ev),
            }
        }
    }

    /// Connects `flow` over `transport` to the targets `lookup` finds.
    fn connect_over(&mut self, flow: FlowId, transport: Transport, lookup: Lookup) {
        let avoid = self.avoid.list(Instant::now());
        match transport {
            Transport::Udp => self.udp.connect(flow, lookup, self.resolver.clone(), avoid),
            Transport::Tcp | Transport::Tls => {
                let (resolver, tx) = (self.resolver.clone(), self.flow_tx.clone());
                let tls = match (transport, &self.tls_client) {
                    (Transport::Tcp, _) => None,
                    (_, Ok(client)) => Some(client.clone()),
                    (_, Err(why)) => {
                        let why = why.clone();
                        let _ = self.flow_tx.send(FlowEvent::Closed { flow, why });
                        return;
                    }
                };
                flow::connect(flow, lookup, resolver, avoid, tls, tx);
            }
        }
    }

    fn handle_event(&mut self, ev: Event) {
        // Read (and clear) with the failure it belongs to, even when shutdown swallows it.
        let timed_out =
            matches!(ev, Event::RegistrationFailed { .. }) && self.core.take_register_timeout();
        if self.shutting_down.as_ref().is_some_and(|s| s.swallows(&ev)) {
            return;
        }
        if timed_out {
            self.register_timed_out();
        }
        match &ev {
            Event::Incoming { call, call_id, .. } => {
                self.live_calls.insert(*call);
                self.call_ids.insert(*call, call_id.clone());
                self.refuse_incoming(Instant::now(), &ev);
            }
            Event::State { call, call_id, .. } => {
                // Every state change repeats the Call-ID: copy it only when it is new.
                match self.call_ids.get_mut(call) {
                    Some(known) if known == call_id => {}
                    Some(known) => known.clone_from(call_id),
                    None => drop(self.call_ids.insert(*call, call_id.clone())),
                }
            }
            Event::Media { call, media, .. } => {
                if let Some(task) = self.media_tasks.get(call) {
                    let _ = task.ctl.send(MediaCtl::Update(media.clone()));
                } else if let Some(sockets) = self.media.remove(call) {
                    let mut options = (self.call_media.remove(call))
                        .unwrap_or_else(|| self.media_options.clone());
                    if let Some(on) = self.early_session.remove(call) {
                        options.audio_session = match on {
                            true => super::AudioSession::Automatic,
                            false => super::AudioSession::Manual,
                        };
                    }
                    let task = call_media::spawn(
                        *call,
                        sockets,
                        media.clone(),
                        options,
                        self.tap.clone(),
                        self.notes_tx.clone(),
                        self.home.as_ref(),
                    );
                    self.media_tasks.insert(*call, task);
                }
            }
            Event::Ended { call, .. } => {
                self.live_calls.remove(call);
                self.media.remove(call);
                self.call_media.remove(call);
                self.early_session.remove(call);
                if let Some(task) = self.media_tasks.get(call) {
                    // The report comes first; `Ended` follows it (handle_media_note).
                    let _ = task.ctl.send(MediaCtl::Stop);
                    self.pending_ended.insert(*call, ev);
                    return;
                }
                self.call_ids.remove(call);
            }
            Event::Registered { .. } => {
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
            _ => {}
        }
        // The application may have dropped its receiver; the driver keeps running.
        self.events.send(ev);
    }
}

async fn accept(
    listener: Option<&TcpListener>,
    paused_until: Option<Instant>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => {
            if paused_until.is_some() {
                sleep_until(paused_until).await;
            }
            l.accept().await
        }
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
