//! A simulated phone for tests: a virtual clock, an OS that suspends and wakes the app, a
//! keep-alive handler fired every period while in background, VoIP pushes, bytes held "in the
//! kernel" while the app is frozen, and a fake registrar/proxy on the other end of the control
//! flow. It drives a real [`SignalingCore`] through its public `handle_*` / `poll_*` API.
//!
//! ```text
//! let mut p = Phone::new(Phone::account_config(), SimConfig::default(), origin);
//! p.register();                          // flow up, REGISTER, 200 OK
//! p.enter_background(); p.suspend();
//! let inv = p.server_invite();           // held in the kernel; wakes the app if wake_on_data
//! p.advance(Duration::from_secs(700));   // keep-alive handler runs at 600 s
//! assert_eq!(p.server.finals(&inv.call_id), ...);
//! ```
//!
//! Transport is lossless and instantaneous while both ends are up. The fake server holds an
//! INVITE for a user with no flow until the next REGISTER (like Kamailio's `tsilo`).

mod server;

pub use server::{FakeServer, ServerCall};

use super::keepalive_schedule::{KeepAliveRun, KeepAliveSchedule, RunAction, RunReport, RunTiming};
use super::lifecycle::{AppState, Lifecycle, WakeReason};
use crate::signaling::config::{Account, Config};
use crate::signaling::core::testkit::{sdp_offer, PeerInvite};
use crate::signaling::core::{CallHandle, Event, FlowId, Output, SignalingCore};
use crate::signaling::framing::{Framer, FramerLimits};
use crate::signaling::message::{new_branch, new_call_id, new_tag, Host, Uri};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The fake server's address.
pub const SERVER_ADDR: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    5060,
);

/// How the simulated OS and app behave.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Keep-alive handler period and budget.
    pub schedule: KeepAliveSchedule,
    /// Limits inside one handler run.
    pub run_timing: RunTiming,
    /// Data (or EOF) on the control flow wakes a suspended app (the legacy iOS VoIP socket, an
    /// Android foreground service). When false, only the handler and pushes wake it.
    pub wake_on_data: bool,
    /// How long the app stays awake after a data or push wake before the OS suspends it again
    /// (extended while a call exists).
    pub wake_window: Duration,
    /// The app sends 180 Ringing as soon as it sees `Event::Incoming`.
    pub auto_ring: bool,
}

impl Default for SimConfig {
    /// iOS schedule (600 s, 10 s budget), wake on data, 10 s wake window, auto ring.
    fn default() -> Self {
        SimConfig {
            schedule: KeepAliveSchedule::ios(),
            run_timing: RunTiming::default(),
            wake_on_data: true,
            wake_window: Duration::from_secs(10),
            auto_ring: true,
        }
    }
}

/// What waits in the kernel for a frozen app.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kernel {
    Bytes(Vec<u8>),
    Eof,
}

/// What the app does with a push: gets the core, the time and the Call-ID of the payload.
pub type PushHook = Box<dyn FnMut(&mut SignalingCore, Instant, &str)>;

/// What the app does at the start of each keep-alive handler run (after the kernel is drained),
/// e.g. a background registration refresh by [`super::BackgroundPolicy::refresh_due`].
pub type RunHook = Box<dyn FnMut(&mut SignalingCore, Instant)>;

/// The simulated phone: OS, app, core and server.
pub struct Phone {
    /// The virtual clock.
    pub now: Instant,
    /// The UA under test.
    pub core: SignalingCore,
    /// The other end.
    pub server: FakeServer,
    /// Where the app is.
    pub state: AppState,
    /// The keep-alive handler's schedule (armed while in background).
    pub schedule: KeepAliveSchedule,
    /// Behaviour switches.
    pub config: SimConfig,
    /// Every event the core emitted, with its time.
    pub events: Vec<(Instant, Event)>,
    /// Every lifecycle event the OS delivered, with its time.
    pub lifecycle: Vec<(Instant, Lifecycle)>,
    /// Reports of finished keep-alive runs.
    pub reports: Vec<RunReport>,
    /// Core deadlines that fell while the app was suspended: wake-ups the UA asked for in
    /// background (should be none in background mode).
    pub timer_wakeups_in_background: u64,
    /// Pushes delivered (Call-ID), with their time.
    pub pushes: Vec<(Instant, String)>,
    /// Called for each push with the core, the time and the Call-ID (e.g. `core.handle_push`).
    pub on_push: Option<PushHook>,
    /// Called at the start of each keep-alive handler run.
    pub on_keepalive_run: Option<RunHook>,
    flow: Option<FlowId>,
    kernel: VecDeque<Kernel>,
    run: Option<KeepAliveRun>,
    suspend_at: Option<Instant>,
    last_counted: Option<Instant>,
    next_port: u16,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone")
            .field("now", &self.now)
            .field("state", &self.state)
            .field("flow", &self.flow)
            .field("kernel", &self.kernel.len())
            .finish_non_exhaustive()
    }
}

impl Phone {
    /// A core configuration with an account on [`SERVER_ADDR`] (user `alice`), outbound
    /// instance-id set.
    pub fn account_config() -> Config {
        Config {
            account: Some(Account {
                registrar: Uri::sip(Host::from(SERVER_ADDR.ip()), Some(SERVER_ADDR.port())),
                user: "alice".into(),
                domain: "127.0.0.1".into(),
                password: None,
                auth_user: None,
                proxy: None,
            }),
            instance_id: Some("urn:uuid:00000000-0000-4000-8000-0000000000a1".into()),
            ..Config::default()
        }
    }

    /// A phone in the foreground at `origin`, nothing connected yet.
    pub fn new(core: Config, config: SimConfig, origin: Instant) -> Self {
        Phone {
            now: origin,
            core: SignalingCore::new(core),
            server: FakeServer::new(),
            state: AppState::Foreground,
            schedule: config.schedule.clone(),
            config,
            events: Vec::new(),
            lifecycle: Vec::new(),
            reports: Vec::new(),
            timer_wakeups_in_background: 0,
            pushes: Vec::new(),
            on_push: None,
            on_keepalive_run: None,
            flow: None,
            kernel: VecDeque::new(),
            run: None,
            suspend_at: None,
            last_counted: None,
            next_port: 40000,
        }
    }

    /// Starts registering and runs until idle.
    pub fn register(&mut self) {
        let _ = self.core.register(self.now);
        self.pump();
    }

    /// The UA's control flow is connected (as the sim sees it).
    pub fn flow_up(&self) -> bool {
        self.flow.is_some()
    }

    /// Bytes (and EOFs) waiting in the kernel for the frozen app.
    pub fn kernel_pending(&self) -> usize {
        self.kernel.len()
    }

    /// The keep-alive run in progress.
    pub fn run_in_progress(&self) -> bool {
        self.run.is_some()
    }

    /// Applies an app command to the core at the current time, then pumps.
    pub fn with_core<R>(&mut self, f: impl FnOnce(&mut SignalingCore, Instant) -> R) -> R {
        let r = f(&mut self.core, self.now);
        self.pump();
        r
    }

    /// The last `Incoming` call handle for this Call-ID.
    pub fn incoming(&self, call_id: &str) -> Option<CallHandle> {
        self.events.iter().rev().find_map(|(_, e)| match e {
            Event::Incoming {
                call, call_id: c, ..
            } if c == call_id => Some(*call),
            _ => None,
        })
    }

    // ---- the OS ---------------------------------------------------------------------------

    fn note(&mut self, event: Lifecycle) {
        self.lifecycle.push((self.now, event));
        self.state = self.state.apply(event);
    }

    /// The app leaves the screen: the keep-alive handler is armed.
    pub fn enter_background(&mut self) {
        self.note(Lifecycle::EnteredBackground);
        self.schedule.arm(self.now);
    }

    /// The OS freezes the app.
    pub fn suspend(&mut self) {
        if self.state == AppState::Foreground {
            self.enter_background();
        }
        self.suspend_at = None;
        self.note(Lifecycle::Suspended);
    }

    /// The app comes back on screen: pending bytes are handled, the handler is disarmed.
    pub fn enter_foreground(&mut self) {
        self.note(Lifecycle::EnteredForeground);
        self.schedule.disarm();
        self.suspend_at = None;
        self.resume();
    }

    /// Wakes a frozen app (no-op if it runs) and drains the kernel.
    fn wake(&mut self, why: WakeReason) {
        if self.state != AppState::Suspended {
            return;
        }
        self.note(Lifecycle::Woken(why));
        if why != WakeReason::KeepAliveTimer {
            self.suspend_at = Some(self.now + self.config.wake_window);
        }
        self.resume();
    }

    /// Our code runs again: overdue timers fire, then everything in the kernel is read.
    fn resume(&mut self) {
        if self.core.poll_timeout().is_some_and(|t| t <= self.now) {
            self.core.handle_timeout(self.now);
        }
        while let Some(k) = self.kernel.pop_front() {
            match k {
                Kernel::Bytes(b) => self.deliver(b),
                Kernel::Eof => {
                    if let Some(f) = self.flow.take() {
                        self.core.handle_flow_down(self.now, f);
                        if let Some(run) = self.run.as_mut() {
                            run.handle_flow_down(self.now);
                        }
                    }
                }
            }
            self.pump();
        }
        self.pump();
    }

    /// A VoIP push for `call_id` arrives: wakes the app and calls [`Phone::on_push`].
    pub fn push(&mut self, call_id: &str) {
        self.pushes.push((self.now, call_id.to_string()));
        self.wake(WakeReason::Push);
        if let Some(mut hook) = self.on_push.take() {
            hook(&mut self.core, self.now, call_id);
            self.on_push = Some(hook);
        }
        self.pump();
    }

    /// The network changed: the old flow is gone (the core reconnects).
    pub fn network_changed(&mut self) {
        self.note(Lifecycle::NetworkChanged);
        self.server.framer = None;
        self.peer_closed();
    }

    /// The app was killed and started again: a fresh core with the same configuration
    /// (instance-id included) registers at once. Server-side calls are kept.
    pub fn restart_after_crash(&mut self) {
        let config = self.core.config().clone();
        self.core = SignalingCore::new(config);
        self.server.framer = None;
        self.flow = None;
        self.kernel.clear();
        self.run = None;
        self.state = AppState::Foreground;
        self.note(Lifecycle::RestartedAfterCrash);
        self.register();
    }

    // ---- the server -----------------------------------------------------------------------

    /// The server sends a new INVITE (held until re-registration if the UA has no flow).
    pub fn server_invite(&mut self) -> PeerInvite {
        let invite = PeerInvite {
            call_id: new_call_id(),
            from_tag: new_tag(),
            branch: new_branch(),
            cseq: 1,
        };
        let held = !self.server.connected();
        self.server.calls.insert(
            invite.call_id.clone(),
            ServerCall {
                invite: invite.clone(),
                provisional: Vec::new(),
                finals: Vec::new(),
                to_tag: None,
                held,
            },
        );
        if !held {
            let bytes = invite
                .invite(Some(&sdp_offer(30000)), "", None)
                .into_bytes();
            self.send_to_ua(bytes);
            self.pump();
        }
        invite
    }

    /// The server sends CANCEL for a call it sent (dropped if not connected or still held).
    pub fn server_cancel(&mut self, call_id: &str) {
        let Some(call) = self.server.calls.get_mut(call_id) else {
            return;
        };
        if call.held {
            // Never sent: the caller gave up; nothing reaches the UA.
            self.server.calls.remove(call_id);
            return;
        }
        let bytes = call.invite.cancel().into_bytes();
        if self.server.connected() {
            self.send_to_ua(bytes);
            self.pump();
        }
    }

    /// The server drops the TCP connection (the UA sees EOF, at once or when it wakes).
    pub fn server_drop(&mut self) {
        if self.server.framer.take().is_some() {
            self.peer_closed();
        }
    }

    /// The server restarts: the connection and the binding are lost; connections are refused
    /// for `down_for`.
    pub fn server_restart(&mut self, down_for: Duration) {
        self.server.binding_until = None;
        let now = self.now;
        for b in self.server.bindings.iter_mut() {
            b.1 = b.1.min(now);
        }
        self.server.accepting = false;
        self.server.down_until = Some(self.now + down_for);
        self.server_drop();
    }

    fn peer_closed(&mut self) {
        if self.flow.is_none() {
            return;
        }
        if self.state.runs() {
            self.kernel.push_back(Kernel::Eof);
            self.resume();
        } else {
            self.kernel.push_back(Kernel::Eof);
            if self.config.wake_on_data {
                self.wake(WakeReason::Data);
            }
        }
    }

    fn send_to_ua(&mut self, bytes: Vec<u8>) {
        if self.flow.is_none() {
            return;
        }
        if self.state.runs() {
            self.deliver(bytes);
        } else {
            self.kernel.push_back(Kernel::Bytes(bytes));
            if self.config.wake_on_data {
                self.wake(WakeReason::Data);
            }
        }
    }

    fn deliver(&mut self, bytes: Vec<u8>) {
        let Some(flow) = self.flow else { return };
        let pong = bytes == b"\r\n";
        self.core.handle_received(self.now, flow, &bytes);
        if pong {
            if let Some(run) = self.run.as_mut() {
                run.handle_pong(self.now);
            }
        }
    }

    // ---- the pump and the clock -----------------------------------------------------------

    /// Executes the core's and the run's outputs until both are quiet.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            while let Some(out) = self.core.poll_output() {
                progress = true;
                self.output(out);
            }
            let action = self.run.as_mut().and_then(KeepAliveRun::poll_action);
            if let Some(a) = action {
                progress = true;
                self.run_action(a);
            }
            if !progress {
                return;
            }
        }
    }

    fn output(&mut self, out: Output) {
        match out {
            Output::Transmit { flow, bytes } => {
                if self.flow == Some(flow) && self.server.connected() {
                    let replies = self.server.receive(self.now, &bytes);
                    for r in replies {
                        self.send_to_ua(r);
                    }
                }
            }
            Output::Connect { flow, .. } => {
                if self.server.accepting && self.state.runs() {
                    self.server.framer = Some(Framer::new(FramerLimits {
                        max_message: crate::signaling::core::MAX_MESSAGE,
                        stall_timeout: crate::signaling::core::STALL_TIMEOUT,
                    }));
                    self.flow = Some(flow);
                    self.next_port = self.next_port.wrapping_add(1).max(40000);
                    let local = SocketAddr::from(([127, 0, 0, 1], self.next_port));
                    self.core.handle_flow_up(self.now, flow, local, SERVER_ADDR);
                } else {
                    self.core.handle_flow_down(self.now, flow);
                }
            }
            Output::Close { flow } => {
                if self.flow == Some(flow) {
                    self.flow = None;
                    self.server.framer = None;
                    self.core.handle_flow_down(self.now, flow);
                }
            }
            Output::Event(e) => {
                match &e {
                    Event::FlowUp { .. } => {
                        if let Some(run) = self.run.as_mut() {
                            run.handle_flow_up(self.now);
                        }
                    }
                    Event::Registered { .. } => {
                        if let Some(run) = self.run.as_mut() {
                            run.handle_registered(self.now);
                        }
                    }
                    Event::Incoming { call, .. } if self.config.auto_ring => {
                        let _ = self.core.ring(self.now, *call);
                    }
                    _ => {}
                }
                self.events.push((self.now, e));
            }
        }
    }

    fn run_action(&mut self, action: RunAction) {
        match action {
            RunAction::SendPing => {
                if self.flow.is_some() && self.server.connected() {
                    let replies = self.server.receive(self.now, b"\r\n\r\n");
                    for r in replies {
                        self.send_to_ua(r);
                    }
                }
            }
            RunAction::Reconnect => {
                if let Some(f) = self.flow.take() {
                    self.server.framer = None;
                    self.core.handle_flow_down(self.now, f);
                }
                let _ = self.core.register(self.now);
            }
            RunAction::Reregister => {
                // The core re-registers by itself when the control flow comes up.
                let _ = self.core.register(self.now);
            }
            RunAction::Done(report) => {
                let _ = self.schedule.finish_run(self.now, report.outcome);
                self.reports.push(report);
                self.run = None;
                // The handler returns: back to sleep unless something else keeps us awake.
                if self.state == AppState::Background && self.suspend_at.is_none() {
                    self.note(Lifecycle::Suspended);
                }
            }
        }
    }

    fn start_keepalive_run(&mut self) {
        self.wake(WakeReason::KeepAliveTimer);
        if let Some(mut hook) = self.on_keepalive_run.take() {
            hook(&mut self.core, self.now);
            self.on_keepalive_run = Some(hook);
            self.pump();
        }
        let flow_up = self.flow.is_some();
        let run = self
            .schedule
            .begin(self.now, flow_up, self.config.run_timing);
        self.run = Some(run);
        self.pump();
    }

    /// The next instant something happens by itself.
    fn next_event(&self) -> Option<Instant> {
        let mut next: Vec<Instant> = Vec::new();
        if self.state.runs() {
            next.extend(self.core.poll_timeout());
            next.extend(self.suspend_at);
        } else {
            // A deadline the frozen app asked for: counted when it passes.
            next.extend(
                self.core
                    .poll_timeout()
                    .filter(|t| Some(*t) != self.last_counted),
            );
        }
        next.extend(self.run.as_ref().and_then(KeepAliveRun::poll_timeout));
        if self.run.is_none() && self.state.in_background() {
            next.extend(self.schedule.next_run(self.now));
        }
        next.extend(self.server.down_until);
        next.into_iter().min()
    }

    /// Advances the virtual clock by `d`, firing everything due on the way.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        for _ in 0..1_000_000 {
            let Some(at) = self.next_event().filter(|t| *t <= target) else {
                break;
            };
            self.now = self.now.max(at);
            self.step();
        }
        self.now = target;
    }

    /// Fires whatever is due at `now`.
    fn step(&mut self) {
        let now = self.now;
        if self.server.down_until.is_some_and(|t| t <= now) {
            self.server.down_until = None;
            self.server.accepting = true;
        }
        if let Some(run) = self.run.as_mut() {
            if run.poll_timeout().is_some_and(|t| t <= now) {
                run.handle_timeout(now);
                self.pump();
            }
        }
        if self.run.is_none()
            && self.state.in_background()
            && self.schedule.next_run(now).is_some_and(|t| t <= now)
        {
            self.start_keepalive_run();
        }
        let due = self.core.poll_timeout().filter(|t| *t <= now);
        if let Some(t) = due {
            if self.state.runs() {
                self.core.handle_timeout(now);
                self.pump();
            } else if Some(t) != self.last_counted {
                self.last_counted = Some(t);
                self.timer_wakeups_in_background += 1;
            }
        }
        if self.state.runs() && self.suspend_at.is_some_and(|t| t <= now) {
            if self.core.call_count() > 0 || self.run.is_some() {
                self.suspend_at = Some(now + self.config.wake_window);
            } else {
                self.suspend_at = None;
                self.note(Lifecycle::Suspended);
            }
        }
    }
}

impl super::KeepAliveHost for Phone {
    /// Sets the handler period (clamped to the schedule's minimum) and arms it if the app is in
    /// background.
    fn schedule_keepalive(&mut self, period: Duration) -> Duration {
        self.schedule.set_period(period);
        if self.state.in_background() && self.schedule.next_run(self.now).is_none() {
            self.schedule.arm(self.now);
        }
        self.schedule.period()
    }

    fn clear_keepalive(&mut self) {
        self.schedule.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(cfg: SimConfig) -> Phone {
        let mut p = Phone::new(Phone::account_config(), cfg, Instant::now());
        p.register();
        p
    }

    fn registered_events(p: &Phone) -> usize {
        p.events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Registered { .. }))
            .count()
    }

    #[test]
    fn registers_over_the_fake_server() {
        let p = phone(SimConfig::default());
        assert!(p.flow_up());
        assert_eq!(p.server.registers, 1);
        assert!(p.server.is_registered(p.now));
        assert_eq!(registered_events(&p), 1);
    }

    #[test]
    fn invite_while_suspended_waits_in_the_kernel_then_rings_on_wake() {
        let mut p = phone(SimConfig {
            wake_on_data: false,
            ..SimConfig::default()
        });
        p.suspend();
        let inv = p.server_invite();
        assert_eq!(p.kernel_pending(), 1);
        assert!(p.incoming(&inv.call_id).is_none());
        p.advance(Duration::from_secs(3));
        assert!(p.incoming(&inv.call_id).is_none(), "frozen app ran");
        p.push(&inv.call_id);
        assert_eq!(p.kernel_pending(), 0);
        let call = p.incoming(&inv.call_id).unwrap();
        let statuses: Vec<u16> = p.server.calls[&inv.call_id]
            .provisional
            .iter()
            .map(|x| x.1)
            .collect();
        assert!(statuses.contains(&180), "{statuses:?}");
        // 180 at the wake instant (zero virtual latency).
        let wake = p.pushes[0].0;
        assert!(p.server.calls[&inv.call_id]
            .provisional
            .iter()
            .all(|(t, _)| *t == wake));
        p.with_core(|c, now| c.answer(now, call, SocketAddr::from(([127, 0, 0, 1], 4000))))
            .unwrap();
        assert_eq!(p.server.finals(&inv.call_id), vec![200]);
    }

    #[test]
    fn data_wakes_the_app_when_the_flow_is_a_wake_socket() {
        let mut p = phone(SimConfig::default());
        p.suspend();
        let inv = p.server_invite();
        assert!(p.incoming(&inv.call_id).is_some());
        assert!(p
            .lifecycle
            .iter()
            .any(|(_, l)| *l == Lifecycle::Woken(WakeReason::Data)));
        // The app stays awake while the call exists, then goes back to sleep.
        let call = p.incoming(&inv.call_id).unwrap();
        p.advance(Duration::from_secs(20));
        assert!(p.state.runs());
        p.with_core(|c, now| c.reject(now, call, 486)).unwrap();
        assert_eq!(p.server.finals(&inv.call_id), vec![486]);
        p.advance(Duration::from_secs(60));
        assert_eq!(p.state, AppState::Suspended);
    }

    #[test]
    fn keepalive_handler_runs_every_period_with_a_pong() {
        let mut cfg = SimConfig::default();
        cfg.schedule.set_period(Duration::from_secs(600));
        let mut core = Phone::account_config();
        core.keepalive_interval = None;
        core.register_expires = 1260;
        let mut p = Phone::new(core, cfg, Instant::now());
        p.register();
        let t0 = p.now;
        let hook_runs = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let h2 = hook_runs.clone();
        p.on_keepalive_run = Some(Box::new(move |_core, _now| h2.set(h2.get() + 1)));
        p.suspend();
        p.advance(Duration::from_secs(3600));
        assert_eq!(p.reports.len(), 6);
        assert_eq!(hook_runs.get(), 6);
        // Registered at the first run's anchor: the core's refresh (granted − 60 s = 1200 s)
        // lands on every second run, so the binding never lapses and no extra wake-up is needed.
        assert!(p.server.bound_throughout(t0, p.now));
        assert_eq!(p.timer_wakeups_in_background, 0);
        assert_eq!(p.server.registers, 1 + 3);
        for r in &p.reports {
            assert!(r.outcome.ping_ok && r.within_budget, "{r:?}");
            assert_eq!((r.bytes_out, r.bytes_in), (4, 2));
        }
        assert_eq!(p.state, AppState::Suspended);
    }

    #[test]
    fn dead_flow_found_by_the_handler_is_recovered_in_the_run() {
        let mut p = phone(SimConfig {
            wake_on_data: false,
            ..SimConfig::default()
        });
        p.suspend();
        // The server restarts while the app is frozen; it is back after 5 s.
        p.server_restart(Duration::from_secs(5));
        assert!(!p.server.is_registered(p.now));
        p.advance(Duration::from_secs(601));
        let r = p.reports[0];
        assert!(r.outcome.reconnected && r.outcome.reregistered, "{r:?}");
        assert!(r.within_budget);
        assert!(p.server.is_registered(p.now));
        assert_eq!(p.server.registers, 2);
    }

    #[test]
    fn server_back_during_the_run_is_rejoined_within_the_budget() {
        let mut p = phone(SimConfig {
            wake_on_data: false,
            ..SimConfig::default()
        });
        p.suspend();
        p.server_restart(Duration::from_secs(602));
        p.advance(Duration::from_secs(615));
        let r = p.reports[0];
        assert!(r.outcome.reconnected && r.outcome.reregistered, "{r:?}");
        // Back at 602 s; the core's retry backoff rejoins within the 10 s budget.
        assert!(
            r.elapsed >= Duration::from_secs(2) && r.within_budget,
            "{r:?}"
        );
        assert!(p.server.is_registered(p.now));
    }

    #[test]
    fn keepalive_host_clamps_and_arms() {
        use crate::platform::KeepAliveHost;
        let mut p = phone(SimConfig::default());
        assert_eq!(
            p.schedule_keepalive(Duration::from_secs(60)),
            Duration::from_secs(600)
        );
        assert_eq!(p.schedule.next_run(p.now), None, "foreground: not armed");
        p.enter_background();
        p.clear_keepalive();
        p.suspend();
        p.advance(Duration::from_secs(1300));
        assert!(p.reports.is_empty());
        p.schedule_keepalive(Duration::from_secs(900));
        p.advance(Duration::from_secs(901));
        assert_eq!(p.reports.len(), 1);
    }

    #[test]
    fn unreachable_server_run_ends_at_the_budget() {
        let mut p = phone(SimConfig {
            wake_on_data: false,
            ..SimConfig::default()
        });
        p.suspend();
        p.server_restart(Duration::from_secs(10_000));
        p.advance(Duration::from_secs(620));
        let r = p.reports[0];
        assert!(r.outcome.aborted && !r.outcome.reregistered, "{r:?}");
        assert_eq!(r.elapsed, Duration::from_secs(9));
        assert_eq!(p.state, AppState::Suspended);
        assert!(!p
            .server
            .bound_throughout(p.now - Duration::from_secs(620), p.now));
    }

    #[test]
    fn held_invite_is_delivered_after_reregistration() {
        let mut p = phone(SimConfig::default());
        p.server_restart(Duration::from_millis(100));
        assert!(!p.flow_up() || !p.server.is_registered(p.now));
        let inv = p.server_invite();
        assert!(p.server.calls[&inv.call_id].held);
        p.advance(Duration::from_secs(5));
        assert!(p.server.is_registered(p.now));
        assert!(p.incoming(&inv.call_id).is_some());
    }

    #[test]
    fn core_timers_during_suspension_are_counted() {
        // Default core config: 30 s RFC 5626 pings, so a frozen app "asks" for wake-ups.
        let mut p = phone(SimConfig::default());
        p.suspend();
        p.advance(Duration::from_secs(300));
        assert!(p.timer_wakeups_in_background >= 1);
        assert!(p.reports.is_empty());
    }

    #[test]
    fn push_hook_sees_the_call_id_and_restart_registers_at_once() {
        let mut p = phone(SimConfig::default());
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let s2 = seen.clone();
        p.on_push = Some(Box::new(move |_core, _now, id| {
            s2.borrow_mut().push(id.to_string())
        }));
        p.suspend();
        p.push("abc");
        assert_eq!(*seen.borrow(), vec!["abc".to_string()]);
        p.restart_after_crash();
        assert_eq!(p.server.registers, 2);
        assert!(p.server.is_registered(p.now));
    }
}
