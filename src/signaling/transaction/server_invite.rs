//! RFC 3261 §17.2.1 (with RFC 6026's Accepted state): the INVITE server transaction.
//!
//! RFC 6026 §7.1: after a 2xx the transaction stays in Accepted for Timer L (64·T1), absorbing
//! retransmitted INVITEs and passing further 2xx from the TU (its own 2xx retransmissions) to the
//! transport. The ACK of a 2xx is routed by the dialog, not here: an ACK in Accepted is ignored.

use super::outbox::Outbox;
use super::{Timer, TimerConfig, Timers, TxEvent};
use crate::signaling::message::{Method, Request, Response};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// States of §17.2.1 (Figure 7) plus RFC 6026 Accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    /// INVITE received; provisional responses may follow, 100 Trying when the TU has sent
    /// none within [`TimerConfig::trying`].
    Proceeding,
    /// A 2xx was sent; retransmitted INVITEs are absorbed, the ACK goes to the TU (RFC 6026).
    Accepted,
    /// A 3xx-6xx was sent; waiting for the ACK (Timer H).
    Completed,
    /// ACK received (Timer I).
    Confirmed,
    /// Done.
    Terminated,
}

/// The INVITE server transaction.
#[derive(Debug)]
pub struct ServerInvite {
    /// Shared with the call that the INVITE starts (no copy of its headers and body).
    invite: Arc<Request>,
    state: ServerInviteState,
    cfg: TimerConfig,
    reliable: bool,
    timers: Timers,
    /// The current Timer G interval (doubles, capped by T2).
    timer_g: Duration,
    /// The last response sent, re-sent for a retransmitted INVITE (none before the first).
    last: Option<Arc<Response>>,
    final_status: Option<u16>,
    out: Outbox,
}

impl ServerInvite {
    /// Creates the transaction for a received INVITE, in Proceeding. 100 Trying goes out when
    /// the TU has sent no response within [`TimerConfig::trying`] (§17.2.1: it may be left out
    /// when the TU responds within 200 ms), when the INVITE is retransmitted before, or at once
    /// (the first event) when that time is zero.
    pub fn new(
        invite: impl Into<Arc<Request>>,
        now: Instant,
        cfg: TimerConfig,
        reliable: bool,
    ) -> Self {
        let mut tx = ServerInvite {
            invite: invite.into(),
            state: ServerInviteState::Proceeding,
            cfg,
            reliable,
            timers: Timers::default(),
            timer_g: cfg.t1,
            last: None,
            final_status: None,
            out: Outbox::default(),
        };
        if cfg.trying.is_zero() {
            tx.send_trying();
        } else {
            tx.timers.set(Timer::Trying, now + cfg.trying);
        }
        tx
    }

    /// A response from the TU (1xx, 2xx or 3xx-6xx).
    ///
    /// In Proceeding: 1xx is sent; 2xx is sent and starts Accepted (Timer L); 3xx-6xx is sent
    /// and starts Completed (Timer H, and G when unreliable). In Accepted a further 2xx (the TU
    /// retransmitting its 2xx) is sent too (RFC 6026 §7.1). Anything else after a final
    /// response, and status codes outside 100..=699, are ignored.
    pub fn send_response(&mut self, response: impl Into<Arc<Response>>, now: Instant) {
        let response = response.into();
        if !(100..=699).contains(&response.status) {
            return;
        }
        match self.state {
            ServerInviteState::Proceeding => {
                if response.is_provisional() {
                    self.send(response);
                } else if response.is_success() {
                    self.final_status = Some(response.status);
                    self.send(response);
                    self.state = ServerInviteState::Accepted;
                    self.timers.set(Timer::L, now + self.cfg.timeout());
                } else {
                    self.final_status = Some(response.status);
                    self.send(response);
                    self.state = ServerInviteState::Completed;
                    self.timers.set(Timer::H, now + self.cfg.timeout());
                    if !self.reliable {
                        self.timers.set(Timer::G, now + self.timer_g);
                    }
                }
            }
            ServerInviteState::Accepted if response.is_success() => self.send(response),
            _ => {}
        }
    }

    /// A request that matched this transaction: a retransmitted INVITE (the last response is
    /// re-sent in Proceeding and Completed, absorbed in Accepted and Confirmed) or the ACK of a
    /// non-2xx final (Completed → Confirmed, `AckReceived`). Other methods are ignored.
    pub fn handle_request(&mut self, request: Request, now: Instant) {
        match (&request.method, self.state) {
            (Method::Invite, ServerInviteState::Proceeding | ServerInviteState::Completed) => {
                match self.last.clone() {
                    Some(last) => self.out.push(TxEvent::SendResponse(last)),
                    // The peer retransmits before the TU responded: Trying now.
                    None => self.send_trying(),
                }
            }
            (Method::Ack, ServerInviteState::Completed) => {
                self.out.push(TxEvent::AckReceived);
                self.timers.stop(Timer::G);
                self.timers.stop(Timer::H);
                self.state = ServerInviteState::Confirmed;
                let i = self.cfg.timer_i_k(self.reliable);
                if i.is_zero() {
                    self.terminate();
                } else {
                    self.timers.set(Timer::I, now + i);
                }
            }
            _ => {}
        }
    }

    /// The transport reported a send failure (§17.2.4): `TransportError`, then Terminated.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ServerInviteState::Terminated {
            self.out.push(TxEvent::TransportError);
            self.terminate();
        }
    }

    /// Call when `now >= poll_timeout()`. Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match (timer, self.state) {
                (Timer::Trying, ServerInviteState::Proceeding) => self.send_trying(),
                (Timer::G, ServerInviteState::Completed) => {
                    if let Some(last) = self.last.clone() {
                        self.out.push(TxEvent::SendResponse(last));
                    }
                    self.timer_g = (self.timer_g * 2).min(self.cfg.t2);
                    self.timers.set(Timer::G, now + self.timer_g);
                }
                (Timer::H, ServerInviteState::Completed) => {
                    self.out.push(TxEvent::Timeout(Timer::H));
                    self.terminate();
                }
                (Timer::I, ServerInviteState::Confirmed)
                | (Timer::L, ServerInviteState::Accepted) => self.terminate(),
                _ => {}
            }
        }
    }

    /// Next thing to do.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.out.pop()
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// The INVITE.
    pub fn request(&self) -> &Request {
        &self.invite
    }

    /// The final status sent, if any.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    /// Sends `response` and keeps it for retransmitted INVITEs; any response makes the 100
    /// Trying still waiting for [`TimerConfig::trying`] needless.
    fn send(&mut self, response: Arc<Response>) {
        self.timers.stop(Timer::Trying);
        self.out.push(TxEvent::SendResponse(Arc::clone(&response)));
        self.last = Some(response);
    }

    /// 100 Trying: the request's To unchanged, no tag (§8.2.6.1).
    fn send_trying(&mut self) {
        self.send(Arc::new(Response::for_request(&self.invite, 100)));
    }

    fn terminate(&mut self) {
        self.state = ServerInviteState::Terminated;
        self.out.terminate(&mut self.timers);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::signaling::message::HeaderName;

    /// Trying at once, as the tests of the other states want it.
    fn at_once() -> TimerConfig {
        TimerConfig {
            trying: Duration::ZERO,
            ..TimerConfig::default()
        }
    }

    fn start(reliable: bool) -> (ServerInvite, Instant) {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(invite(), t0, at_once(), reliable);
        let Some(TxEvent::SendResponse(trying)) = tx.poll_event() else {
            panic!("100 Trying expected first");
        };
        assert_eq!(trying.status, 100);
        // 100 Trying carries the request's To unchanged: no tag added.
        assert_eq!(trying.headers.get(&HeaderName::To), Some(TO));
        assert_eq!(tx.poll_event(), None);
        assert_eq!(tx.poll_timeout(), None);
        (tx, t0)
    }

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn a_tu_that_responds_within_the_trying_time_makes_100_needless() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ServerInvite::new(invite(), t0, cfg, true);
        assert_eq!(tx.poll_event(), None, "no 100 at once");
        assert_eq!(tx.poll_timeout(), Some(t0 + cfg.trying));
        let ok = response_to(&invite(), 200, Some("callee"));
        tx.send_response(ok.clone(), t0 + Duration::from_millis(3));
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![TxEvent::SendResponse(ok.into())]
        );
        // Only Timer L is left: the Trying timer went with the response.
        let l = t0 + Duration::from_millis(3) + cfg.timeout();
        assert_eq!(tx.poll_timeout(), Some(l));
        tx.handle_timeout(t0 + cfg.trying);
        assert_eq!(tx.poll_event(), None, "no 100 after a final response");
    }

    #[test]
    fn a_silent_tu_gets_100_after_the_trying_time_and_ringing_after_that() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ServerInvite::new(invite(), t0, cfg, false);
        tx.handle_timeout(t0 + cfg.trying - Duration::from_millis(1));
        assert_eq!(tx.poll_event(), None, "not due yet");
        tx.handle_timeout(t0 + cfg.trying);
        let Some(TxEvent::SendResponse(trying)) = tx.poll_event() else {
            panic!("100 Trying once the time is up");
        };
        assert_eq!(trying.status, 100);
        assert_eq!(trying.headers.get(&HeaderName::To), Some(TO));
        assert_eq!(tx.poll_timeout(), None);
        // A retransmitted INVITE gets the 100 again; a 180 follows as usual.
        tx.handle_request(invite(), t0 + cfg.t1);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![TxEvent::SendResponse(trying)]
        );
        let ringing = response_to(&invite(), 180, Some("callee"));
        tx.send_response(ringing.clone(), t0 + cfg.t1);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![TxEvent::SendResponse(ringing.into())]
        );
    }

    #[test]
    fn a_retransmitted_invite_before_the_trying_time_gets_100_at_once_and_once() {
        let t0 = Instant::now();
        let cfg = TimerConfig {
            trying: Duration::from_secs(1),
            ..TimerConfig::default()
        };
        let mut tx = ServerInvite::new(invite(), t0, cfg, false);
        tx.handle_request(invite(), t0 + cfg.t1);
        let sent = drain(|| tx.poll_event());
        assert!(
            matches!(&sent[..], [TxEvent::SendResponse(r)] if r.status == 100),
            "{sent:?}"
        );
        assert_eq!(tx.poll_timeout(), None, "the Trying timer is stopped");
        tx.handle_timeout(t0 + cfg.trying);
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn retransmitted_invite_resends_last_provisional() {
        let (mut tx, t0) = start(false);
        tx.handle_request(invite(), t0);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![TxEvent::SendResponse(
                (Response::for_request(&invite(), 100)).into()
            )]
        );
        let ringing = response_to(&invite(), 180, Some("callee"));
        tx.send_response(ringing.clone(), t0);
        tx.handle_request(invite(), t0);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                TxEvent::SendResponse((ringing.clone()).into()),
                TxEvent::SendResponse((ringing).into())
            ]
        );
        assert_eq!(tx.state(), ServerInviteState::Proceeding);
    }

    #[test]
    fn non_2xx_timer_g_capped_then_timer_h() {
        let (mut tx, t0) = start(false);
        let busy = response_to(&invite(), 486, Some("callee"));
        tx.send_response(busy.clone(), t0);
        assert_eq!(tx.final_status(), Some(486));
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![TxEvent::SendResponse((busy.clone()).into())]
        );
        let mut sends = Vec::new();
        let mut others = Vec::new();
        while let Some(at) = tx.poll_timeout() {
            tx.handle_timeout(at);
            for ev in drain(|| tx.poll_event()) {
                match ev {
                    TxEvent::SendResponse(r) => {
                        assert_eq!(*r, busy);
                        sends.push(at - t0)
                    }
                    other => others.push(other),
                }
            }
        }
        let mut expect = ms(&[500, 1500, 3500, 7500]);
        let mut t = 7500;
        while t + 4000 < 32_000 {
            t += 4000;
            expect.push(Duration::from_millis(t));
        }
        assert_eq!(sends, expect);
        assert_eq!(
            others,
            vec![TxEvent::Timeout(Timer::H), TxEvent::Terminated]
        );
    }

    #[test]
    fn ack_confirms_then_timer_i() {
        let (mut tx, t0) = start(false);
        let busy = response_to(&invite(), 603, Some("callee"));
        tx.send_response(busy.clone(), t0);
        tx.handle_request(invite(), t0 + Duration::from_millis(100));
        tx.handle_request(ack_for(&invite()), t0 + Duration::from_millis(200));
        tx.handle_request(ack_for(&invite()), t0 + Duration::from_millis(300));
        tx.handle_request(invite(), t0 + Duration::from_millis(300));
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                TxEvent::SendResponse((busy.clone()).into()),
                TxEvent::SendResponse((busy).into()),
                TxEvent::AckReceived
            ]
        );
        assert_eq!(tx.state(), ServerInviteState::Confirmed);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(5200)));
        tx.handle_timeout(t0 + Duration::from_millis(5200));
        assert_eq!(drain(|| tx.poll_event()), vec![TxEvent::Terminated]);
    }

    #[test]
    fn reliable_no_timer_g_and_timer_i_zero() {
        let (mut tx, t0) = start(true);
        tx.send_response(response_to(&invite(), 404, Some("c")), t0);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_request(ack_for(&invite()), t0);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                TxEvent::SendResponse(response_to(&invite(), 404, Some("c")).into()),
                TxEvent::AckReceived,
                TxEvent::Terminated
            ]
        );
        assert_eq!(tx.state(), ServerInviteState::Terminated);
    }

    #[test]
    fn accepted_absorbs_invites_and_acks_until_timer_l() {
        let (mut tx, t0) = start(true);
        let ok = response_to(&invite(), 200, Some("callee"));
        tx.send_response(ok.clone(), t0);
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        tx.handle_request(invite(), t0);
        tx.handle_request(ack_for(&invite()), t0);
        // A non-2xx after the 2xx is ignored; the TU's 2xx retransmission goes out.
        tx.send_response(response_to(&invite(), 500, Some("callee")), t0);
        tx.send_response(ok.clone(), t0 + Duration::from_millis(500));
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                TxEvent::SendResponse((ok.clone()).into()),
                TxEvent::SendResponse((ok).into())
            ]
        );
        assert_eq!(tx.final_status(), Some(200));
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(drain(|| tx.poll_event()), vec![TxEvent::Terminated]);
    }

    #[test]
    fn transport_error_terminates_once() {
        let (mut tx, t0) = start(false);
        tx.handle_transport_error(t0);
        tx.handle_transport_error(t0);
        tx.send_response(response_to(&invite(), 200, Some("c")), t0);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![TxEvent::TransportError, TxEvent::Terminated]
        );
    }

    proptest::proptest! {
        #[test]
        fn random_inputs_never_panic_and_end_terminated(
            inputs in proptest::collection::vec((0u8..5, 0u16..800, 0u64..40_000), 0..40),
            reliable in proptest::bool::ANY,
        ) {
            let t0 = Instant::now();
            let mut tx = ServerInvite::new(invite(), t0, TimerConfig::default(), reliable);
            let mut now = t0;
            let mut terminated = 0;
            for (kind, status, dt) in inputs {
                now += Duration::from_millis(dt);
                match kind {
                    0 => tx.send_response(response_to(&invite(), status, Some("t")), now),
                    1 => tx.handle_timeout(now),
                    2 => tx.handle_transport_error(now),
                    3 => tx.handle_request(invite(), now),
                    _ => tx.handle_request(ack_for(&invite()), now),
                }
                terminated += drain(|| tx.poll_event()).iter().filter(|e| **e == TxEvent::Terminated).count();
            }
            // The TU always answers in the end.
            tx.send_response(response_to(&invite(), 480, Some("t")), now);
            while let Some(at) = tx.poll_timeout() {
                now = now.max(at);
                tx.handle_timeout(now);
            }
            terminated += drain(|| tx.poll_event()).iter().filter(|e| **e == TxEvent::Terminated).count();
            proptest::prop_assert_eq!(tx.state(), ServerInviteState::Terminated);
            proptest::prop_assert_eq!(terminated, 1);
        }
    }
}
