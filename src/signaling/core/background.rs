//! Background mode, keep-alive runs and network changes: the API the platform layer
//! (`src/platform/`) drives. The policy is described in `control.rs`.

use super::{CallHandle, Output, SignalingCore};
use crate::signaling::keepalive::PING;
use std::time::{Duration, Instant};

/// What one keep-alive run did ([`SignalingCore::run_keepalive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAliveReport {
    /// A CRLF ping went out on the control flow (wait for [`SignalingCore::last_pong`]).
    pub pinged: bool,
    /// The control flow was down: a connection was asked for (a REGISTER follows it).
    pub reconnecting: bool,
    /// The binding was close to expiry (or lost): a REGISTER went out.
    pub refreshed: bool,
}

impl SignalingCore {
    /// Sends one CRLF keep-alive ping on the control flow now and waits `pong_timeout` for the
    /// pong (then the flow is declared dead and replaced). Returns `false` when there is no
    /// control flow up. See [`SignalingCore::last_pong`].
    pub fn send_ping(&mut self, now: Instant) -> bool {
        let Some(flow) = self
            .control
            .flow
            .filter(|f| self.flows.get(f).is_some_and(|f| f.up))
        else {
            return false;
        };
        self.transmit(flow, PING.to_vec());
        if self.control.ping_deadline.is_none() {
            self.control.ping_deadline = Some(now + self.config.pong_timeout);
        }
        true
    }

    /// The platform's keep-alive run gave up waiting for the pong (its budget is shorter than
    /// `pong_timeout`): close the control flow and reconnect at once, as a pong timeout would.
    /// Returns `false` when there was no control flow.
    pub fn declare_control_flow_dead(&mut self, now: Instant) -> bool {
        let Some(flow) = self.control.flow else {
            return false;
        };
        tracing::warn!(
            ?flow,
            "keep-alive run: no pong in time, the control flow is dead"
        );
        self.outputs.push_back(Output::Close { flow });
        self.handle_flow_down(now, flow);
        true
    }

    /// When the last pong arrived on the control flow (a run compares it with its start).
    pub fn last_pong(&self) -> Option<Instant> {
        self.control.last_pong
    }

    /// One run of the platform's keep-alive handler: ping the control flow (or reconnect it if
    /// it is down) and refresh the binding if it would not outlive the next run. The pong
    /// arrives as input later in the run ([`SignalingCore::last_pong`]); a missing pong closes
    /// the flow after `pong_timeout` and reconnects.
    pub fn run_keepalive(&mut self, now: Instant) -> KeepAliveReport {
        let mut report = KeepAliveReport {
            pinged: false,
            reconnecting: false,
            refreshed: false,
        };
        if !self.control.wanted {
            return report;
        }
        if self.control.flow.is_none() {
            self.control.attempts = 0;
            let (connecting, _) = self.control_wake(now);
            report.reconnecting = connecting;
            self.drain_control(now);
            return report;
        }
        report.pinged = self.send_ping(now);
        let period = self.control.background.unwrap_or(Duration::ZERO);
        let due = self
            .control
            .bound_until
            .is_none_or(|t| t < now + period + period / 2);
        if due && report.pinged {
            report.refreshed = self
                .control
                .registration
                .as_mut()
                .is_some_and(|r| r.refresh_now(now));
        }
        self.drain_control(now);
        report
    }

    /// Enters (`true`) or leaves background mode; `keepalive_period` is the platform's
    /// keep-alive handler period (iOS: at least 600 s). Entering asks for a longer binding at
    /// once (one REGISTER); leaving restarts the CRLF keep-alive and the refresh timer.
    pub fn set_background(&mut self, now: Instant, on: bool, keepalive_period: Duration) {
        let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        if on {
            self.control.background = Some(keepalive_period);
            if let Some(k) = self.control.keepalive.as_mut() {
                k.stop();
            }
            let want = secs(keepalive_period)
                .saturating_mul(3)
                .max(self.config.register_expires);
            if let Some(r) = self.control.registration.as_mut() {
                r.set_expires(want);
            }
            let short = self
                .control
                .bound_until
                .is_none_or(|t| t < now + keepalive_period * 3);
            if short {
                self.control_wake(now);
            }
        } else {
            self.control.background = None;
            if let Some(r) = self.control.registration.as_mut() {
                r.set_expires(self.config.register_expires);
            }
            let up = self
                .control
                .flow
                .is_some_and(|f| self.flows.get(&f).is_some_and(|f| f.up));
            if up {
                if let Some(k) = self.control.keepalive.as_mut() {
                    k.start(now);
                }
            } else if self.control.wanted && self.control.flow.is_none() {
                self.control.attempts = 0;
                self.control_wake(now);
            }
        }
        self.drain_control(now);
    }

    /// The device's network changed (new interface or address): the control flow is closed
    /// and a new one connected at once, the registration follows it (same instance-id and
    /// reg-id), and confirmed calls move to it. Returns the connected calls whose media must
    /// move too: open new RTP sockets and call [`SignalingCore::update_media`] for each (a
    /// re-INVITE with the new address goes out once the new flow is up).
    pub fn handle_network_changed(&mut self, now: Instant) -> Vec<CallHandle> {
        if let Some(f) = self.control.flow {
            self.outputs.push_back(Output::Close { flow: f });
            self.handle_flow_down(now, f);
        }
        if self.control.wanted {
            self.control.attempts = 0;
            self.control.reconnect_at = None;
            self.control_connect();
        }
        self.drain_control(now);
        self.calls
            .values()
            .filter(|c| c.phase == crate::signaling::invite::Phase::Connected)
            .map(|c| c.handle)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::PeerInvite;
    use super::super::{CallOutcome, Event};
    use crate::platform::sim::{phone_config, Phone};
    use std::time::{Duration, Instant};

    /// The origin of the virtual clock (tests only; every later time is origin + offset).
    fn origin() -> Instant {
        Instant::now()
    }

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn background_keeps_no_timer_closer_than_the_keepalive_period() {
        let period = 600 * S;
        let mut p = Phone::new(phone_config(), origin());
        assert!(
            p.core.poll_timeout().unwrap() - p.now <= 30 * S,
            "CRLF keep-alive in foreground"
        );
        let regs = p.registers;
        p.core.set_background(p.now, true, period);
        p.pump();
        assert_eq!(p.registers, regs + 1, "a longer binding at once");
        let reg = p.last_request("REGISTER").unwrap();
        assert_eq!(reg.headers.expires(), Some(1800));
        // Idle for a day, woken only by keep-alive runs every period (±10 %).
        let mut wakeups = 0u32;
        let mut runs = 0u32;
        let end = p.now + 24 * 3600 * S;
        let mut next_run = p.now + period;
        while p.now < end {
            if let Some(at) = p.core.poll_timeout() {
                assert!(at >= p.now + period, "a timer {:?} away", at - p.now);
            }
            let jitter = Duration::from_secs(u64::from(runs % 7) * 10);
            p.advance(next_run + jitter - p.now);
            wakeups += 1;
            let r = p.core.run_keepalive(p.now);
            p.pump();
            assert!(r.pinged && !r.reconnecting);
            runs += 1;
            next_run += period;
            assert!(p.registered());
        }
        assert_eq!(wakeups, runs);
        assert!(p.pings >= runs);
        // Refreshes ride on every other run.
        let refreshes = p.registers - regs - 1;
        assert!(
            refreshes >= runs / 2 - 1 && refreshes <= runs / 2 + 1,
            "{refreshes} of {runs}"
        );
        // Back to the foreground: the CRLF keep-alive again.
        p.core.set_background(p.now, false, period);
        assert!(p.core.poll_timeout().unwrap() - p.now <= 30 * S);
    }

    #[test]
    fn keepalive_run_detects_a_missing_pong_and_reconnects() {
        let mut p = Phone::new(phone_config(), origin());
        p.core.set_background(p.now, true, 600 * S);
        p.pump();
        p.advance(600 * S);
        p.answer_pings = false;
        let t = p.now;
        assert!(p.core.run_keepalive(p.now).pinged);
        p.pump();
        assert!(p.core.last_pong().is_none_or(|x| x < t));
        let old = p.server_flow;
        p.answer_pings = true;
        p.advance(10 * S + 100 * MS);
        assert_ne!(p.server_flow, old, "a new flow");
        assert!(p.registered());
        // A run with a pong: 4 bytes out, 2 in, nothing else.
        p.advance(600 * S);
        let sent = p.sent.len();
        let t = p.now;
        let r = p.core.run_keepalive(p.now);
        p.pump();
        assert!(r.pinged && !r.refreshed);
        assert_eq!(p.sent.len(), sent + 1);
        assert_eq!(p.sent.last().unwrap().1, b"\r\n\r\n");
        assert_eq!(p.core.last_pong(), Some(t));
        // A run while the flow is gone: reconnect and register.
        p.suspend();
        p.drop_flow();
        p.advance(600 * S);
        p.wake();
        let r = p.core.run_keepalive(p.now);
        p.pump();
        p.advance(100 * MS);
        assert!(r.reconnecting || p.registered());
        assert!(p.registered());
    }

    #[test]
    fn network_change_moves_the_flow_and_reinvites_with_the_new_media() {
        let mut p = Phone::new(phone_config(), origin());
        let inv = PeerInvite {
            call_id: "n1".into(),
            from_tag: "f".into(),
            branch: "z9hG4bKn1".into(),
            cseq: 1,
        };
        p.server_invite(&inv);
        let h = *p.incoming().last().unwrap();
        p.core
            .answer(p.now, h, "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        p.pump();
        let old = p.server_flow;
        let regs = p.registers;
        let moved = p.core.handle_network_changed(p.now);
        assert_eq!(moved, vec![h]);
        p.core
            .update_media(p.now, h, "10.1.2.3:5000".parse().unwrap())
            .unwrap();
        p.pump();
        assert_ne!(p.server_flow, old);
        assert_eq!(p.registers, regs + 1);
        let reinvite = p.last_request("INVITE").unwrap();
        let body = String::from_utf8_lossy(&reinvite.body).to_string();
        assert!(
            body.contains("c=IN IP4 10.1.2.3") && body.contains("m=audio 5000"),
            "{body}"
        );
        assert!(
            p.events
                .iter()
                .filter(|e| matches!(e, Event::Media { .. }))
                .count()
                >= 2
        );
        assert!(p.ended().is_empty());
        p.core.hangup(p.now, h).unwrap();
        p.pump();
        assert_eq!(p.ended(), vec![(h, Some(200), CallOutcome::Answered)]);
    }
}
