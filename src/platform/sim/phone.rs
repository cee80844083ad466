//! The phone: one [`SignalingCore`] on a virtual clock, its control flow to the fake server
//! (`server.rs`), inputs held "in the kernel" while the app is frozen, and the pump that moves
//! outputs between them. The OS around it (background, keep-alive handler runs, pushes, wake
//! on data, crash restart) is `os.rs`.

use super::{Held, SimConfig, PHONE_ADDR, SERVER_ADDR};
use crate::platform::keepalive_schedule::{KeepAliveRun, KeepAliveSchedule, RunReport};
use crate::platform::lifecycle::{AppState, Lifecycle};
use crate::signaling::config::{Account, Config};
use crate::signaling::core::testkit::{sdp_offer, PeerInvite};
use crate::signaling::core::{control_transport, Transport};
use crate::signaling::core::{CallHandle, CallOutcome, Event, FlowId, Output, SignalingCore};
use crate::signaling::message::{Host, Message, Request, Uri};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the app does with a push: gets the core, the time and the Call-ID of the payload.
pub type PushHook = Box<dyn FnMut(&mut SignalingCore, Instant, &str)>;

/// What the app does at the start of each keep-alive handler run (after the kernel is
/// drained), e.g. a background registration refresh.
pub type RunHook = Box<dyn FnMut(&mut SignalingCore, Instant)>;

/// A config with an account `alice` on the fake server and RFC 5626 outbound.
pub fn phone_config() -> Config {
    Config {
        account: Some(Account {
            registrar: Uri::parse("sip:127.0.0.1:5060;transport=tcp")
                .unwrap_or_else(|_| Uri::sip(Host::from(SERVER_ADDR.ip()), None)),
            user: "alice".into(),
            domain: "127.0.0.1".into(),
            password: None,
            auth_user: None,
            proxy: None,
        }),
        instance_id: Some("urn:uuid:00000000-0000-4000-8000-000000000001".into()),
        ..Config::default()
    }
}

/// The simulated phone: the core under test, the OS around it and the server it talks to.
/// See the [module documentation](super) for what it models and an example.
pub struct Phone {
    /// The core under test.
    pub core: SignalingCore,
    /// The virtual clock.
    pub now: Instant,
    /// Frozen: inputs are held, the core's timers do not fire.
    pub suspended: bool,
    /// Inputs waiting for the wake.
    pub held: VecDeque<Held>,
    /// The flow the server holds (the phone's control flow as the server sees it).
    pub server_flow: Option<FlowId>,
    /// The phone is registered on `server_flow`.
    pub server_registered: bool,
    /// Connects succeed.
    pub server_up: bool,
    /// The server comes back up at this time (after [`Phone::server_restart`]).
    pub server_down_until: Option<Instant>,
    /// The server answers pings.
    pub answer_pings: bool,
    /// INVITEs (text) the server holds until the phone registers.
    pub pending: Vec<String>,
    /// Everything the core transmitted, with its flow.
    pub sent: Vec<(FlowId, Vec<u8>)>,
    /// Everything from the server that reached the core, as fed to it.
    pub delivered: Vec<Vec<u8>>,
    /// Everything the core told the application.
    pub events: Vec<Event>,
    /// When each of `events` came.
    pub event_times: Vec<Instant>,
    /// REGISTERs the server accepted.
    pub registers: u32,
    /// Connections asked for.
    pub connects: u32,
    /// Pings the server saw.
    pub pings: u32,
    /// Requests the core sent (parsed), for inspection.
    pub requests: Vec<Request>,
    /// The server challenges a REGISTER without Authorization (401, nonce `n1`).
    pub digest: bool,
    /// REGISTERs the server challenged.
    pub challenges: u32,
    /// The control flow is UDP: bytes are datagrams, and a server that is down loses them.
    pub udp: bool,
    /// A NAT in front of the phone: the server sees requests come from this address and says
    /// so in the top Via (`received`, `rport`; RFC 3581).
    pub nat: Option<std::net::SocketAddr>,
    /// Every binding the server granted: (from, until); cut short when it restarts.
    pub bindings: Vec<(Instant, Instant)>,
    /// Responses the core sent to INVITEs, as the server received them: (time, Call-ID, status).
    pub answers: Vec<(Instant, String, u16)>,
    /// Where the app is (foreground, background, suspended).
    pub state: AppState,
    /// The keep-alive handler's schedule (armed while in background).
    pub schedule: KeepAliveSchedule,
    /// How the simulated OS behaves.
    pub config: SimConfig,
    /// Every lifecycle event the OS delivered, with its time.
    pub lifecycle: Vec<(Instant, Lifecycle)>,
    /// Reports of finished keep-alive handler runs.
    pub reports: Vec<RunReport>,
    /// Core deadlines that fell while the app was frozen: wake-ups the UA asked for in
    /// background (should be none in background mode).
    pub timer_wakeups_in_background: u64,
    /// Pushes delivered (Call-ID), with their time.
    pub pushes: Vec<(Instant, String)>,
    /// Called for each push with the core, the time and the Call-ID (e.g. `core.handle_push`).
    pub on_push: Option<PushHook>,
    /// Called at the start of each keep-alive handler run.
    pub on_keepalive_run: Option<RunHook>,
    pub(super) run: Option<KeepAliveRun>,
    pub(super) suspend_at: Option<Instant>,
    last_counted: Option<Instant>,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone")
            .field("now", &self.now)
            .field("state", &self.state)
            .field("suspended", &self.suspended)
            .field("server_flow", &self.server_flow)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl Phone {
    /// A phone in the foreground that starts registering at `origin`; the OS only holds
    /// input while [`Phone::suspend`]ed and wakes on [`Phone::wake`] (no wake on data, no auto
    /// ring: [`SimConfig::manual`]).
    pub fn new(config: Config, origin: Instant) -> Self {
        Phone::with_os(config, SimConfig::manual(), origin)
    }

    /// A phone whose OS behaves as `sim` says (e.g. [`SimConfig::default`]: iOS keep-alive
    /// schedule, wake on data, auto ring), registering from `origin`.
    pub fn with_os(config: Config, sim: SimConfig, origin: Instant) -> Self {
        let udp = control_transport(&config) == Transport::Udp;
        let mut p = Phone {
            udp,
            core: SignalingCore::new(config),
            now: origin,
            suspended: false,
            held: VecDeque::new(),
            server_flow: None,
            server_registered: false,
            server_up: true,
            server_down_until: None,
            answer_pings: true,
            pending: Vec::new(),
            sent: Vec::new(),
            delivered: Vec::new(),
            events: Vec::new(),
            event_times: Vec::new(),
            registers: 0,
            connects: 0,
            pings: 0,
            requests: Vec::new(),
            digest: false,
            challenges: 0,
            nat: None,
            bindings: Vec::new(),
            answers: Vec::new(),
            state: AppState::Foreground,
            schedule: sim.schedule.clone(),
            config: sim,
            lifecycle: Vec::new(),
            reports: Vec::new(),
            timer_wakeups_in_background: 0,
            pushes: Vec::new(),
            on_push: None,
            on_keepalive_run: None,
            run: None,
            suspend_at: None,
            last_counted: None,
        };
        let _ = p.core.register(p.now);
        p.pump();
        p
    }

    /// Applies an app command to the core at the current time, then pumps.
    pub fn with_core<R>(&mut self, f: impl FnOnce(&mut SignalingCore, Instant) -> R) -> R {
        let r = f(&mut self.core, self.now);
        self.pump();
        r
    }

    /// Moves the core's outputs (and the keep-alive run's actions) to the server, and the
    /// server's answers back, until quiet.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            if let Some(out) = self.core.poll_output() {
                self.output(out);
                continue;
            }
            match self.run.as_mut().and_then(KeepAliveRun::poll_action) {
                Some(action) => self.run_action(action),
                None => return,
            }
        }
    }

    fn output(&mut self, out: Output) {
        match out {
            Output::Event(e) => self.event(e),
            Output::Connect { flow, .. } => {
                self.connects += 1;
                if self.server_up {
                    self.server_flow = Some(flow);
                    self.server_registered = false;
                    self.core
                        .handle_flow_up(self.now, flow, PHONE_ADDR, SERVER_ADDR);
                } else {
                    self.core.handle_flow_down(self.now, flow);
                }
            }
            Output::Close { flow } => {
                if self.server_flow == Some(flow) {
                    self.server_flow = None;
                    self.server_registered = false;
                }
            }
            Output::Transmit { flow, bytes } => {
                self.sent.push((flow, bytes.clone()));
                if self.server_flow == Some(flow) && (!self.udp || self.server_up) {
                    self.server_receives(flow, &bytes);
                }
            }
        }
    }

    fn event(&mut self, e: Event) {
        let now = self.now;
        match (&e, self.run.as_mut()) {
            (Event::FlowUp { .. }, Some(run)) => run.handle_flow_up(now),
            (Event::Registered { .. }, Some(run)) => run.handle_registered(now),
            (Event::Incoming { call, .. }, _) if self.config.auto_ring => {
                let _ = self.core.ring(now, *call);
            }
            _ => {}
        }
        self.events.push(e);
        self.event_times.push(now);
    }

    /// Sends bytes from the server on its flow (held while suspended, or waking the app when
    /// [`SimConfig::wake_on_data`]).
    pub fn deliver(&mut self, text: &str) {
        let Some(flow) = self.server_flow else {
            return;
        };
        self.held_or_now(flow, text.as_bytes().to_vec());
        self.pump();
    }

    /// Bytes from the server: to the core now, or into the kernel while frozen.
    pub(super) fn held_or_now(&mut self, flow: FlowId, bytes: Vec<u8>) {
        if self.suspended {
            self.held.push_back(Held::Bytes(flow, bytes));
            self.woken_by_data();
        } else {
            self.feed(flow, &bytes);
        }
    }

    /// Bytes from the server reach the core: on the TCP flow, or as one datagram.
    fn feed(&mut self, flow: FlowId, bytes: &[u8]) {
        self.delivered.push(bytes.to_vec());
        if self.udp {
            self.core
                .handle_datagram(self.now, PHONE_ADDR, SERVER_ADDR, bytes);
        } else {
            self.core.handle_received(self.now, flow, bytes);
        }
        if bytes == b"\r\n" {
            if let Some(run) = self.run.as_mut() {
                run.handle_pong(self.now);
            }
        }
    }

    /// The flow is gone at the phone's end (EOF read).
    fn flow_down(&mut self, flow: FlowId) {
        self.core.handle_flow_down(self.now, flow);
        if let Some(run) = self.run.as_mut() {
            run.handle_flow_down(self.now);
        }
    }

    /// The server sends an INVITE now if the phone is registered, else holds it until the
    /// next REGISTER (as Kamailio's `tsilo` does).
    pub fn server_invite(&mut self, inv: &PeerInvite) {
        let text = inv.invite(Some(&sdp_offer(7000)), "", None);
        if self.server_registered && self.server_flow.is_some() {
            self.deliver(&text);
        } else {
            self.pending.push(text);
        }
    }

    /// The server drops the flow (EOF at the phone: at once, or held while suspended).
    pub fn drop_flow(&mut self) {
        let Some(flow) = self.server_flow.take() else {
            return;
        };
        self.server_registered = false;
        if self.suspended {
            self.held.push_back(Held::Down(flow));
            self.woken_by_data();
        } else {
            self.flow_down(flow);
            self.pump();
        }
    }

    /// The server restarts: the connection and the binding are lost, connects are refused
    /// for `down_for`.
    pub fn server_restart(&mut self, down_for: Duration) {
        let now = self.now;
        for b in self.bindings.iter_mut() {
            b.1 = b.1.min(now);
        }
        self.server_up = false;
        self.server_down_until = Some(now + down_for);
        self.drop_flow();
    }

    /// Freezes the app: nothing of ours runs, input waits in the kernel, no timer fires.
    pub fn suspend(&mut self) {
        self.suspended = true;
        self.suspend_at = None;
        self.note(Lifecycle::Suspended);
    }

    /// Wakes the app (the user opened it: foreground): every held input in order, then the
    /// due timers.
    pub fn wake(&mut self) {
        self.enter_foreground();
        self.advance(Duration::ZERO);
    }

    /// Our code runs again: everything in the kernel is read, then overdue timers fire.
    pub(super) fn resume(&mut self) {
        self.suspended = false;
        while let Some(h) = self.held.pop_front() {
            match h {
                Held::Bytes(flow, bytes) => self.feed(flow, &bytes),
                Held::Down(flow) => self.flow_down(flow),
            }
            self.pump();
        }
        if self.core.poll_timeout().is_some_and(|t| t <= self.now) {
            self.core.handle_timeout(self.now);
        }
        self.pump();
    }

    /// The next instant something happens by itself.
    fn next_event(&self) -> Option<Instant> {
        let mut next: Vec<Instant> = Vec::new();
        if self.suspended {
            // A deadline the frozen app asked for: counted when it passes.
            let asked = self.core.poll_timeout();
            next.extend(asked.filter(|t| Some(*t) != self.last_counted));
        } else {
            next.extend(self.core.poll_timeout());
            next.extend(self.suspend_at);
        }
        next.extend(self.run.as_ref().and_then(KeepAliveRun::poll_timeout));
        if self.run.is_none() && self.state.in_background() {
            next.extend(self.schedule.next_run(self.now));
        }
        next.extend(self.server_down_until);
        next.into_iter().min()
    }

    /// Moves the clock by `d`, firing on the way everything due: the core's deadlines (unless
    /// suspended), keep-alive handler runs, the end of a wake window, the server's return.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        self.pump();
        for _ in 0..1_000_000 {
            let Some(at) = self.next_event().filter(|t| *t <= end) else {
                break;
            };
            self.now = self.now.max(at);
            self.step();
        }
        self.now = end;
        self.pump();
    }

    /// Fires whatever is due at `now`.
    fn step(&mut self) {
        let now = self.now;
        if self.server_down_until.is_some_and(|t| t <= now) {
            self.server_down_until = None;
            self.server_up = true;
        }
        if let Some(run) = self.run.as_mut() {
            if run.poll_timeout().is_some_and(|t| t <= now) {
                run.handle_timeout(now);
                self.pump();
            }
        }
        self.keepalive_due();
        if let Some(t) = self.core.poll_timeout().filter(|t| *t <= now) {
            if !self.suspended {
                self.core.handle_timeout(now);
                self.pump();
            } else if Some(t) != self.last_counted {
                self.last_counted = Some(t);
                self.timer_wakeups_in_background += 1;
            }
        }
        self.wake_window_over();
    }

    /// The handles of `Incoming` events, in order.
    pub fn incoming(&self) -> Vec<CallHandle> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Incoming { call, .. } => Some(*call),
                _ => None,
            })
            .collect()
    }

    /// The last `Incoming` call handle for this Call-ID.
    pub fn incoming_for(&self, call_id: &str) -> Option<CallHandle> {
        self.events.iter().rev().find_map(|e| match e {
            Event::Incoming {
                call, call_id: c, ..
            } if c == call_id => Some(*call),
            _ => None,
        })
    }

    /// `Ended` events as (handle, status, outcome).
    pub fn ended(&self) -> Vec<(CallHandle, Option<u16>, CallOutcome)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Ended {
                    call,
                    status,
                    outcome,
                    ..
                } => Some((*call, *status, *outcome)),
                _ => None,
            })
            .collect()
    }

    /// Status lines of the responses the core sent for this Call-ID.
    pub fn statuses(&self, call_id: &str) -> Vec<u16> {
        self.sent
            .iter()
            .filter_map(|(_, b)| match Message::parse(b) {
                Ok(Message::Response(r)) if r.headers.call_id() == Some(call_id) => Some(r.status),
                _ => None,
            })
            .collect()
    }

    /// Final statuses the server received for its INVITE with this Call-ID (more than one
    /// would break the ledger's promise).
    pub fn finals(&self, call_id: &str) -> Vec<u16> {
        self.answers
            .iter()
            .filter(|(_, id, s)| id == call_id && *s >= 200)
            .map(|a| a.2)
            .collect()
    }

    /// The last request of `method` the core sent.
    pub fn last_request(&self, method: &str) -> Option<&Request> {
        self.requests
            .iter()
            .rev()
            .find(|r| r.method.as_str() == method)
    }

    /// Whether the core is registered (last registration event).
    pub fn registered(&self) -> bool {
        self.events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Registered { .. } => Some(true),
                Event::RegistrationFailed { .. } | Event::Unregistered => Some(false),
                _ => None,
            })
            .unwrap_or(false)
    }

    /// The server holds a binding for the phone at `now`, on a live flow.
    pub fn is_registered(&self, now: Instant) -> bool {
        self.server_registered && self.bindings.last().is_some_and(|b| b.1 > now)
    }

    /// The phone was registered without a gap from `from` to `to` (by the bindings granted).
    pub fn bound_throughout(&self, from: Instant, to: Instant) -> bool {
        let mut spans = self.bindings.clone();
        spans.sort();
        let mut covered = from;
        for (start, end) in spans {
            if start > covered {
                break;
            }
            covered = covered.max(end);
        }
        covered >= to
    }
}
