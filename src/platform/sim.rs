//! The simulated phone: how an app team tests its own glue — what it does on suspend, wake,
//! a push that comes before or after its INVITE, and the loss of the control flow — against
//! the real [`SignalingCore`](crate::signaling::core::SignalingCore) on a virtual clock, with
//! no network and no sleeps.
//!
//! Needs the `testkit` feature (`wakeline = { version = "0.1", features = ["testkit"] }` in
//! `[dev-dependencies]`).
//!
//! One [`Phone`] is three things:
//!
//! - **the core under test** ([`Phone::core`]), registered (RFC 5626 outbound) over its control
//!   flow; your glue calls it the way it calls the user agent, at [`Phone::now`]
//!   ([`Phone::with_core`]);
//! - **the OS** (`os.rs`): foreground and background, [`Phone::suspend`] (nothing of ours runs,
//!   input waits "in the kernel", no timer fires), waking by the user ([`Phone::wake`]), by a
//!   VoIP push ([`Phone::push`], which calls your [`Phone::on_push`]), by data on a wake socket
//!   ([`SimConfig::wake_on_data`]) or by the keep-alive handler, whose runs follow the
//!   platform's schedule while in background ([`Phone::enter_background`], [`Phone::reports`]);
//!   network changes and a restart after a crash;
//! - **the server** (`server.rs`): a registrar + proxy that holds an INVITE until the phone is
//!   registered (as Kamailio's `tsilo` does), sends it ([`Phone::server_invite`]), drops the
//!   flow ([`Phone::drop_flow`]) or restarts ([`Phone::server_restart`]), and records what it
//!   got ([`Phone::finals`], [`Phone::requests`], [`Phone::bindings`]).
//!
//! [`Phone::advance`] moves the clock, firing everything due on the way. Transport is lossless
//! and instantaneous while both ends are up.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use wakeline::platform::sim::{phone_config, Phone, SimConfig};
//! use wakeline::Event;
//!
//! // The app's glue under test: on a push, report the call (here: just answer it at once).
//! let mut p = Phone::with_os(phone_config(), SimConfig::manual(), Instant::now());
//! assert!(p.registered());
//! p.on_push = Some(Box::new(|core, now, call_id| {
//!     let call = core.handle_push(now, call_id.to_string(), None);
//!     core.answer(now, call, "127.0.0.1:4000".parse().unwrap()).unwrap();
//! }));
//!
//! // The app goes to background and is frozen; the control flow dies meanwhile.
//! p.enter_background();
//! p.suspend();
//! p.drop_flow();
//! // The push comes before its INVITE; the INVITE waits at the server for the new flow.
//! let inv = p.new_invite();
//! p.push(&inv.call_id);
//! p.server_invite(&inv);
//! p.advance(Duration::from_secs(5));
//! // One answer, on the wire, for the INVITE.
//! assert_eq!(p.finals(&inv.call_id), vec![200]);
//! assert!(p.events.iter().any(|e| matches!(e, Event::Incoming { pushed: true, .. })));
//! ```

mod os;
mod phone;
mod server;

pub use phone::{phone_config, Phone, PushHook, RunHook};

use super::keepalive_schedule::{KeepAliveSchedule, RunTiming};
use crate::signaling::core::testkit::PeerInvite;
use crate::signaling::core::FlowId;
use crate::signaling::message::{new_branch, new_call_id, new_tag};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The fake server's address.
pub const SERVER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060);

/// The phone's local address on its control flow.
pub const PHONE_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);

/// How the simulated OS and app behave.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Keep-alive handler period and budget.
    pub schedule: KeepAliveSchedule,
    /// Limits inside one handler run.
    pub run_timing: RunTiming,
    /// Data (or EOF) on the control flow wakes a suspended app (the legacy iOS VoIP socket, an
    /// Android foreground service). When false, only the handler, pushes and the user wake it.
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

impl SimConfig {
    /// Everything on the test's word: no wake on data (held input waits for [`Phone::wake`],
    /// a push or a handler run), no auto ring; the iOS schedule once in background.
    pub fn manual() -> Self {
        SimConfig {
            wake_on_data: false,
            auto_ring: false,
            ..SimConfig::default()
        }
    }
}

/// An input that waits "in the kernel" while the phone is suspended.
#[derive(Debug, Clone)]
pub enum Held {
    /// Bytes on a flow.
    Bytes(FlowId, Vec<u8>),
    /// EOF on a flow.
    Down(FlowId),
}

impl Phone {
    /// A new INVITE identity (Call-ID, tags, branch) for [`Phone::server_invite`].
    pub fn new_invite(&self) -> PeerInvite {
        PeerInvite {
            call_id: new_call_id(),
            from_tag: new_tag(),
            branch: new_branch(),
            cseq: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::lifecycle::{AppState, Lifecycle, WakeReason};
    use crate::signaling::core::Event;
    use std::time::Instant;

    fn phone(cfg: SimConfig) -> Phone {
        Phone::with_os(phone_config(), cfg, Instant::now())
    }

    fn registered_events(p: &Phone) -> usize {
        let registered = |e: &&Event| matches!(e, Event::Registered { .. });
        p.events.iter().filter(registered).count()
    }

    /// Background, then frozen (the handler is armed).
    fn frozen(p: &mut Phone) {
        p.enter_background();
        p.suspend();
    }

    fn no_wake_on_data() -> SimConfig {
        SimConfig {
            wake_on_data: false,
            ..SimConfig::default()
        }
    }

    #[test]
    fn registers_over_the_fake_server() {
        let p = phone(SimConfig::default());
        assert!(p.server_flow.is_some());
        assert_eq!(p.registers, 1);
        assert!(p.is_registered(p.now));
        assert_eq!(registered_events(&p), 1);
    }

    #[test]
    fn invite_while_suspended_waits_in_the_kernel_then_rings_on_push() {
        let mut p = phone(no_wake_on_data());
        frozen(&mut p);
        let inv = p.new_invite();
        p.server_invite(&inv);
        assert_eq!(p.held.len(), 1);
        assert!(p.incoming_for(&inv.call_id).is_none());
        p.advance(Duration::from_secs(3));
        assert!(p.incoming_for(&inv.call_id).is_none(), "frozen app ran");
        p.push(&inv.call_id);
        assert!(p.held.is_empty());
        let call = p.incoming_for(&inv.call_id).unwrap();
        // 180 at the wake instant (zero virtual latency).
        let wake = p.pushes[0].0;
        let ringing: Vec<_> = p.answers.iter().filter(|a| a.1 == inv.call_id).collect();
        assert!(ringing.iter().any(|a| a.2 == 180), "{ringing:?}");
        assert!(ringing.iter().all(|a| a.0 == wake));
        p.with_core(|c, now| c.answer(now, call, SocketAddr::from(([127, 0, 0, 1], 4000))))
            .unwrap();
        assert_eq!(p.finals(&inv.call_id), vec![200]);
    }

    #[test]
    fn data_wakes_the_app_when_the_flow_is_a_wake_socket() {
        let mut p = phone(SimConfig::default());
        frozen(&mut p);
        let inv = p.new_invite();
        p.server_invite(&inv);
        assert!(p.incoming_for(&inv.call_id).is_some());
        let woken = Lifecycle::Woken(WakeReason::Data);
        assert!(p.lifecycle.iter().any(|(_, l)| *l == woken));
        // The app stays awake while the call exists, then goes back to sleep.
        let call = p.incoming_for(&inv.call_id).unwrap();
        p.advance(Duration::from_secs(20));
        assert!(p.state.runs());
        p.with_core(|c, now| c.reject(now, call, 486)).unwrap();
        assert_eq!(p.finals(&inv.call_id), vec![486]);
        p.advance(Duration::from_secs(60));
        assert_eq!(p.state, AppState::Suspended);
    }

    #[test]
    fn keepalive_handler_runs_every_period_with_a_pong() {
        let mut cfg = SimConfig::default();
        cfg.schedule.set_period(Duration::from_secs(600));
        let mut core = phone_config();
        core.keepalive_interval = None;
        core.register_expires = 1260;
        let mut p = Phone::with_os(core, cfg, Instant::now());
        let t0 = p.now;
        let hook_runs = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let h2 = hook_runs.clone();
        p.on_keepalive_run = Some(Box::new(move |_core, _now| h2.set(h2.get() + 1)));
        frozen(&mut p);
        p.advance(Duration::from_secs(3600));
        assert_eq!(p.reports.len(), 6);
        assert_eq!(hook_runs.get(), 6);
        // Registered at the first run's anchor: the core's refresh (granted − 60 s = 1200 s)
        // lands on every second run, so the binding never lapses and no extra wake-up is needed.
        assert!(p.bound_throughout(t0, p.now));
        assert_eq!(p.timer_wakeups_in_background, 0);
        assert_eq!(p.registers, 1 + 3);
        for r in &p.reports {
            assert!(r.outcome.ping_ok && r.within_budget, "{r:?}");
            assert_eq!((r.bytes_out, r.bytes_in), (4, 2));
        }
        assert_eq!(p.state, AppState::Suspended);
    }

    #[test]
    fn dead_flow_found_by_the_handler_is_recovered_in_the_run() {
        let mut p = phone(no_wake_on_data());
        frozen(&mut p);
        // The server restarts while the app is frozen; it is back after 5 s.
        p.server_restart(Duration::from_secs(5));
        assert!(!p.is_registered(p.now));
        p.advance(Duration::from_secs(601));
        let r = p.reports[0];
        assert!(r.outcome.reconnected && r.outcome.reregistered, "{r:?}");
        assert!(r.within_budget);
        assert!(p.is_registered(p.now));
        assert_eq!(p.registers, 2);
    }

    #[test]
    fn server_back_during_the_run_is_rejoined_within_the_budget() {
        let mut p = phone(no_wake_on_data());
        frozen(&mut p);
        p.server_restart(Duration::from_secs(602));
        p.advance(Duration::from_secs(615));
        let r = p.reports[0];
        assert!(r.outcome.reconnected && r.outcome.reregistered, "{r:?}");
        // Back at 602 s; the core's retry backoff rejoins within the 10 s budget.
        assert!(
            r.elapsed >= Duration::from_secs(2) && r.within_budget,
            "{r:?}"
        );
        assert!(p.is_registered(p.now));
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
        let mut p = phone(no_wake_on_data());
        frozen(&mut p);
        p.server_restart(Duration::from_secs(10_000));
        p.advance(Duration::from_secs(620));
        let r = p.reports[0];
        assert!(r.outcome.aborted && !r.outcome.reregistered, "{r:?}");
        assert_eq!(r.elapsed, Duration::from_secs(9));
        assert_eq!(p.state, AppState::Suspended);
        assert!(!p.bound_throughout(p.now - Duration::from_secs(620), p.now));
    }

    #[test]
    fn held_invite_is_delivered_after_reregistration() {
        let mut p = phone(SimConfig::default());
        p.server_restart(Duration::from_millis(100));
        assert!(!p.is_registered(p.now));
        let inv = p.new_invite();
        p.server_invite(&inv);
        assert_eq!(p.pending.len(), 1);
        p.advance(Duration::from_secs(5));
        assert!(p.is_registered(p.now));
        assert!(p.incoming_for(&inv.call_id).is_some());
    }

    #[test]
    fn core_timers_during_suspension_are_counted() {
        // Default core config: 30 s RFC 5626 pings, so a frozen app "asks" for wake-ups.
        let mut p = phone(SimConfig::default());
        frozen(&mut p);
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
        frozen(&mut p);
        p.push("abc");
        assert_eq!(*seen.borrow(), vec!["abc".to_string()]);
        p.restart_after_crash();
        assert_eq!(p.registers, 2);
        assert!(p.is_registered(p.now));
    }
}
