//! The OS around the simulated phone: foreground and background, suspension and the wake
//! window, the keep-alive handler's runs (armed while in background), VoIP pushes, data on the
//! control flow waking a frozen app, network changes and a restart after a crash.

use super::Phone;
use crate::platform::keepalive_schedule::RunAction;
use crate::platform::lifecycle::{AppState, Lifecycle, WakeReason};
use crate::signaling::core::SignalingCore;
use std::time::Duration;

impl Phone {
    pub(super) fn note(&mut self, event: Lifecycle) {
        self.lifecycle.push((self.now, event));
        self.state = self.state.apply(event);
    }

    /// The app leaves the screen: the keep-alive handler is armed.
    pub fn enter_background(&mut self) {
        self.note(Lifecycle::EnteredBackground);
        self.schedule.arm(self.now);
    }

    /// The app comes back on screen: held input is handled, the handler is disarmed.
    pub fn enter_foreground(&mut self) {
        self.note(Lifecycle::EnteredForeground);
        self.schedule.disarm();
        self.suspend_at = None;
        self.resume();
    }

    /// A frozen app is woken for `why` (no-op when it runs): it drains the kernel and, unless
    /// the keep-alive handler woke it, stays up for [`SimConfig::wake_window`](super::SimConfig).
    pub fn wake_for(&mut self, why: WakeReason) {
        if !self.suspended {
            return;
        }
        self.note(Lifecycle::Woken(why));
        if why != WakeReason::KeepAliveTimer {
            self.suspend_at = Some(self.now + self.config.wake_window);
        }
        self.resume();
    }

    /// Input reached a frozen app: with a wake socket it wakes.
    pub(super) fn woken_by_data(&mut self) {
        if self.config.wake_on_data {
            self.wake_for(WakeReason::Data);
        }
    }

    /// A VoIP push for `call_id` arrives: wakes the app and calls [`Phone::on_push`].
    pub fn push(&mut self, call_id: &str) {
        self.pushes.push((self.now, call_id.to_string()));
        self.wake_for(WakeReason::Push);
        if let Some(mut hook) = self.on_push.take() {
            hook(&mut self.core, self.now, call_id);
            self.on_push = Some(hook);
        }
        self.pump();
    }

    /// The network changed: the old flow is gone (the core reconnects).
    pub fn network_changed(&mut self) {
        self.note(Lifecycle::NetworkChanged);
        self.drop_flow();
    }

    /// The app was killed and started again: a fresh core with the same configuration
    /// (instance-id included) registers at once, in the foreground.
    pub fn restart_after_crash(&mut self) {
        let config = self.core.config().clone();
        self.core = SignalingCore::new(config);
        self.server_flow = None;
        self.server_registered = false;
        self.held.clear();
        self.run = None;
        self.suspended = false;
        self.suspend_at = None;
        self.note(Lifecycle::RestartedAfterCrash);
        self.note(Lifecycle::EnteredForeground);
        let _ = self.core.register(self.now);
        self.pump();
    }

    /// Starts a keep-alive handler run when one is due.
    pub(super) fn keepalive_due(&mut self) {
        let due = self
            .schedule
            .next_run(self.now)
            .is_some_and(|t| t <= self.now);
        if self.run.is_some() || !self.state.in_background() || !due {
            return;
        }
        self.wake_for(WakeReason::KeepAliveTimer);
        if let Some(mut hook) = self.on_keepalive_run.take() {
            hook(&mut self.core, self.now);
            self.on_keepalive_run = Some(hook);
            self.pump();
        }
        let flow_up = self.server_flow.is_some();
        let run = self
            .schedule
            .begin(self.now, flow_up, self.config.run_timing);
        self.run = Some(run);
        self.pump();
    }

    /// The wake window is over: back to sleep, unless a call or a run keeps the app up.
    pub(super) fn wake_window_over(&mut self) {
        let now = self.now;
        if self.suspended || self.suspend_at.is_none_or(|t| t > now) {
            return;
        }
        if self.core.call_count() > 0 || self.run.is_some() {
            self.suspend_at = Some(now + self.config.wake_window);
        } else {
            self.suspend();
        }
    }

    /// Carries out what the keep-alive run asks for.
    pub(super) fn run_action(&mut self, action: RunAction) {
        match action {
            RunAction::SendPing => {
                if let Some(flow) = self.server_flow {
                    self.server_receives(flow, b"\r\n\r\n");
                }
            }
            RunAction::Reconnect => {
                if let Some(flow) = self.server_flow.take() {
                    self.server_registered = false;
                    self.core.handle_flow_down(self.now, flow);
                }
                let _ = self.core.register(self.now);
            }
            // The core re-registers by itself when the control flow comes up.
            RunAction::Reregister => {
                let _ = self.core.register(self.now);
            }
            RunAction::Done(report) => {
                let _ = self.schedule.finish_run(self.now, report.outcome);
                self.reports.push(report);
                self.run = None;
                // The handler returns: back to sleep unless something else keeps us awake.
                if self.state == AppState::Background && self.suspend_at.is_none() {
                    self.suspend();
                }
            }
        }
    }
}

impl crate::platform::KeepAliveHost for Phone {
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
