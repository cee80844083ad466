//! RFC 3261 §17.1.2: the non-INVITE client transaction.

use super::outbox::Outbox;
use super::{Timer, TimerConfig, Timers, TxEvent};
use crate::signaling::message::{Request, Response};
use std::time::{Duration, Instant};

/// States of §17.1.2.2 (Figure 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent.
    Trying,
    /// A provisional response was received.
    Proceeding,
    /// A final response was received (Timer K).
    Completed,
    /// Done.
    Terminated,
}

/// The non-INVITE client transaction (REGISTER, BYE, CANCEL, OPTIONS, ...).
#[derive(Debug)]
pub struct ClientNonInvite {
    request: Request,
    state: ClientNonInviteState,
    cfg: TimerConfig,
    reliable: bool,
    timers: Timers,
    /// The current Timer E interval: doubles up to T2 in Trying, T2 in Proceeding.
    timer_e: Duration,
    out: Outbox,
}

impl ClientNonInvite {
    /// Starts the transaction: first event `SendRequest(request)`; Timer F (and E if unreliable).
    pub fn new(request: Request, now: Instant, cfg: TimerConfig, reliable: bool) -> Self {
        let mut tx = ClientNonInvite {
            request,
            state: ClientNonInviteState::Trying,
            cfg,
            reliable,
            timers: Timers::default(),
            timer_e: cfg.t1,
            out: Outbox::default(),
        };
        tx.out.push(TxEvent::SendRequest(tx.request.clone()));
        tx.timers.set(Timer::F, now + cfg.timeout());
        if !reliable {
            tx.timers.set(Timer::E, now + cfg.t1);
        }
        tx
    }

    /// A response whose key matched this transaction. 1xx and the first final response go to
    /// the TU; retransmitted finals are absorbed in Completed. Status codes outside 100..=699
    /// are dropped.
    pub fn handle_response(&mut self, response: Response, now: Instant) {
        if !(100..=699).contains(&response.status) {
            return;
        }
        match self.state {
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding => {
                if response.is_provisional() {
                    self.state = ClientNonInviteState::Proceeding;
                    self.out.push(TxEvent::Response(response));
                } else {
                    self.out.push(TxEvent::Response(response));
                    self.timers.stop(Timer::E);
                    self.timers.stop(Timer::F);
                    self.state = ClientNonInviteState::Completed;
                    let k = self.cfg.timer_i_k(self.reliable);
                    if k.is_zero() {
                        self.terminate();
                    } else {
                        self.timers.set(Timer::K, now + k);
                    }
                }
            }
            ClientNonInviteState::Completed | ClientNonInviteState::Terminated => {}
        }
    }

    /// The transport reported a send failure (§17.1.4): `TransportError`, then Terminated.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ClientNonInviteState::Terminated {
            self.out.push(TxEvent::TransportError);
            self.terminate();
        }
    }

    /// Call when `now >= poll_timeout()`. Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match (timer, self.state) {
                (Timer::E, ClientNonInviteState::Trying) => {
                    self.out.push(TxEvent::SendRequest(self.request.clone()));
                    self.timer_e = (self.timer_e * 2).min(self.cfg.t2);
                    self.timers.set(Timer::E, now + self.timer_e);
                }
                (Timer::E, ClientNonInviteState::Proceeding) => {
                    self.out.push(TxEvent::SendRequest(self.request.clone()));
                    self.timer_e = self.cfg.t2;
                    self.timers.set(Timer::E, now + self.timer_e);
                }
                (Timer::F, ClientNonInviteState::Trying | ClientNonInviteState::Proceeding) => {
                    self.out.push(TxEvent::Timeout(Timer::F));
                    self.terminate();
                }
                (Timer::K, ClientNonInviteState::Completed) => self.terminate(),
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
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// The request this transaction sent.
    pub fn request(&self) -> &Request {
        &self.request
    }

    fn terminate(&mut self) {
        self.state = ClientNonInviteState::Terminated;
        self.out.terminate(&mut self.timers);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::signaling::message::Method;

    fn start(reliable: bool) -> (ClientNonInvite, Instant, Request) {
        let t0 = Instant::now();
        let req = non_invite(Method::Register);
        let mut tx = ClientNonInvite::new(req.clone(), t0, TimerConfig::default(), reliable);
        assert_eq!(tx.poll_event(), Some(TxEvent::SendRequest(req.clone())));
        assert_eq!(tx.poll_event(), None);
        (tx, t0, req)
    }

    /// Runs the clock from deadline to deadline; returns the offsets of each retransmission.
    fn run(
        tx: &mut ClientNonInvite,
        t0: Instant,
        until: Duration,
    ) -> (Vec<Duration>, Vec<TxEvent>) {
        let mut sends = Vec::new();
        let mut others = Vec::new();
        while let Some(at) = tx.poll_timeout() {
            if at > t0 + until {
                break;
            }
            tx.handle_timeout(at);
            for ev in drain(|| tx.poll_event()) {
                match ev {
                    TxEvent::SendRequest(_) => sends.push(at - t0),
                    other => others.push(other),
                }
            }
        }
        (sends, others)
    }

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn timer_e_doubles_capped_at_t2_then_timer_f() {
        let (mut tx, t0, _) = start(false);
        let (sends, others) = run(&mut tx, t0, Duration::from_secs(100));
        // Intervals 0.5, 1, 2, 4, 4, 4, ... s until F at 32 s.
        let mut expect = ms(&[500, 1500, 3500, 7500]);
        let mut t = 7500;
        while t + 4000 < 32_000 {
            t += 4000;
            expect.push(Duration::from_millis(t));
        }
        assert_eq!(sends, expect);
        assert_eq!(
            others,
            vec![TxEvent::Timeout(Timer::F), TxEvent::Terminated]
        );
        assert_eq!(tx.state(), ClientNonInviteState::Terminated);
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let (mut tx, t0, req) = start(false);
        tx.handle_timeout(t0 + Duration::from_millis(500));
        tx.handle_response(
            response_to(&req, 100, None),
            t0 + Duration::from_millis(600),
        );
        assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                TxEvent::SendRequest(req.clone()),
                TxEvent::Response(response_to(&req, 100, None))
            ]
        );
        // Timer E already armed for 1.5 s fires, then every T2.
        let (sends, _) = run(&mut tx, t0, Duration::from_secs(10));
        assert_eq!(sends, ms(&[1500, 5500, 9500]));
    }

    #[test]
    fn reliable_never_retransmits_and_k_is_zero() {
        let (mut tx, t0, req) = start(true);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_response(response_to(&req, 200, Some("r")), t0);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                TxEvent::Response(response_to(&req, 200, Some("r"))),
                TxEvent::Terminated
            ]
        );
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn final_absorbs_retransmissions_until_timer_k() {
        let (mut tx, t0, req) = start(false);
        let ok = response_to(&req, 200, Some("r"));
        tx.handle_response(ok.clone(), t0);
        tx.handle_response(ok.clone(), t0 + Duration::from_secs(1));
        assert_eq!(drain(|| tx.poll_event()), vec![TxEvent::Response(ok)]);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        tx.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(drain(|| tx.poll_event()), vec![TxEvent::Terminated]);
    }

    #[test]
    fn transport_error_terminates_once() {
        let (mut tx, t0, _) = start(false);
        tx.handle_transport_error(t0);
        tx.handle_timeout(t0 + Duration::from_secs(40));
        tx.handle_transport_error(t0);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![TxEvent::TransportError, TxEvent::Terminated]
        );
    }

    proptest::proptest! {
        #[test]
        fn random_inputs_never_panic_and_end_terminated(
            inputs in proptest::collection::vec((0u8..4, 0u16..800, 0u64..40_000), 0..40),
            reliable in proptest::bool::ANY,
        ) {
            let t0 = Instant::now();
            let req = non_invite(Method::Options);
            let mut tx = ClientNonInvite::new(req.clone(), t0, TimerConfig::default(), reliable);
            let mut now = t0;
            let mut terminated = 0;
            for (kind, status, dt) in inputs {
                now += Duration::from_millis(dt);
                match kind {
                    0 => tx.handle_response(response_to(&req, status, Some("t")), now),
                    1 => tx.handle_timeout(now),
                    2 => tx.handle_transport_error(now),
                    _ => {}
                }
                terminated += drain(|| tx.poll_event()).iter().filter(|e| **e == TxEvent::Terminated).count();
            }
            while let Some(at) = tx.poll_timeout() {
                now = now.max(at);
                tx.handle_timeout(now);
            }
            terminated += drain(|| tx.poll_event()).iter().filter(|e| **e == TxEvent::Terminated).count();
            proptest::prop_assert_eq!(tx.state(), ClientNonInviteState::Terminated);
            proptest::prop_assert_eq!(terminated, 1);
        }
    }
}
