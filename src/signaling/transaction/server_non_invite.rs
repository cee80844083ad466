//! RFC 3261 §17.2.2: the non-INVITE server transaction.

use super::outbox::Outbox;
use super::{Timer, TimerConfig, Timers, TxEvent};
use crate::signaling::message::{Request, Response};
use std::sync::Arc;
use std::time::Instant;

/// States of §17.2.2 (Figure 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// Request received, nothing sent.
    Trying,
    /// A provisional response was sent.
    Proceeding,
    /// A final response was sent (Timer J).
    Completed,
    /// Done.
    Terminated,
}

/// The non-INVITE server transaction.
#[derive(Debug)]
pub struct ServerNonInvite {
    request: Arc<Request>,
    state: ServerNonInviteState,
    cfg: TimerConfig,
    reliable: bool,
    timers: Timers,
    /// The last response sent, re-sent for a retransmitted request.
    last: Option<Arc<Response>>,
    out: Outbox,
}

impl ServerNonInvite {
    /// Creates the transaction for a received request. Nothing is sent until the TU responds.
    pub fn new(
        request: impl Into<Arc<Request>>,
        _now: Instant,
        cfg: TimerConfig,
        reliable: bool,
    ) -> Self {
        ServerNonInvite {
            request: request.into(),
            state: ServerNonInviteState::Trying,
            cfg,
            reliable,
            timers: Timers::default(),
            last: None,
            out: Outbox::default(),
        }
    }

    /// A response from the TU: 1xx is sent (Proceeding); a final is sent and starts Completed
    /// (Timer J, zero on reliable). Ignored after the final response and outside 100..=699.
    pub fn send_response(&mut self, response: impl Into<Arc<Response>>, now: Instant) {
        let response = response.into();
        if !(100..=699).contains(&response.status) {
            return;
        }
        match self.state {
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding => {
                let provisional = response.is_provisional();
                self.out.push(TxEvent::SendResponse(Arc::clone(&response)));
                self.last = Some(response);
                if provisional {
                    self.state = ServerNonInviteState::Proceeding;
                } else {
                    self.state = ServerNonInviteState::Completed;
                    let j = self.cfg.timer_j(self.reliable);
                    if j.is_zero() {
                        self.terminate();
                    } else {
                        self.timers.set(Timer::J, now + j);
                    }
                }
            }
            ServerNonInviteState::Completed | ServerNonInviteState::Terminated => {}
        }
    }

    /// A retransmission of the request: absorbed in Trying, the last response re-sent in
    /// Proceeding and Completed.
    pub fn handle_request(&mut self, _request: Request, _now: Instant) {
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) {
            if let Some(last) = &self.last {
                self.out.push(TxEvent::SendResponse(last.clone()));
            }
        }
    }

    /// The transport reported a send failure (§17.2.4): `TransportError`, then Terminated.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ServerNonInviteState::Terminated {
            self.out.push(TxEvent::TransportError);
            self.terminate();
        }
    }

    /// Call when `now >= poll_timeout()`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            if (timer, self.state) == (Timer::J, ServerNonInviteState::Completed) {
                self.terminate();
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
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    fn terminate(&mut self) {
        self.state = ServerNonInviteState::Terminated;
        self.out.terminate(&mut self.timers);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::signaling::message::Method;
    use std::time::Duration;

    fn start(reliable: bool) -> (ServerNonInvite, Instant, Request) {
        let t0 = Instant::now();
        let req = non_invite(Method::Bye);
        let mut tx = ServerNonInvite::new(req.clone(), t0, TimerConfig::default(), reliable);
        assert_eq!(tx.poll_event(), None);
        assert_eq!(tx.poll_timeout(), None);
        (tx, t0, req)
    }

    #[test]
    fn trying_absorbs_proceeding_and_completed_resend() {
        let (mut tx, t0, req) = start(false);
        tx.handle_request(req.clone(), t0);
        assert_eq!(tx.poll_event(), None);
        let trying = response_to(&req, 100, None);
        tx.send_response(trying.clone(), t0);
        tx.handle_request(req.clone(), t0);
        let ok = response_to(&req, 200, Some("x"));
        tx.send_response(ok.clone(), t0);
        tx.handle_request(req.clone(), t0);
        tx.send_response(response_to(&req, 500, Some("x")), t0);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                TxEvent::SendResponse((trying.clone()).into()),
                TxEvent::SendResponse((trying).into()),
                TxEvent::SendResponse((ok.clone()).into()),
                TxEvent::SendResponse((ok).into())
            ]
        );
        assert_eq!(tx.state(), ServerNonInviteState::Completed);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(31));
        assert_eq!(tx.poll_event(), None);
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(drain(|| tx.poll_event()), vec![TxEvent::Terminated]);
    }

    #[test]
    fn timer_j_zero_on_reliable() {
        let (mut tx, t0, req) = start(true);
        tx.send_response(response_to(&req, 481, Some("x")), t0);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                TxEvent::SendResponse((response_to(&req, 481, Some("x"))).into()),
                TxEvent::Terminated
            ]
        );
        assert_eq!(tx.state(), ServerNonInviteState::Terminated);
    }

    #[test]
    fn transport_error_terminates_once() {
        let (mut tx, t0, _) = start(false);
        tx.handle_transport_error(t0);
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
            let mut tx = ServerNonInvite::new(req.clone(), t0, TimerConfig::default(), reliable);
            let mut now = t0;
            let mut terminated = 0;
            for (kind, status, dt) in inputs {
                now += Duration::from_millis(dt);
                match kind {
                    0 => tx.send_response(response_to(&req, status, Some("t")), now),
                    1 => tx.handle_timeout(now),
                    2 => tx.handle_transport_error(now),
                    _ => tx.handle_request(req.clone(), now),
                }
                terminated += drain(|| tx.poll_event()).iter().filter(|e| **e == TxEvent::Terminated).count();
            }
            tx.send_response(response_to(&req, 200, Some("t")), now);
            while let Some(at) = tx.poll_timeout() {
                now = now.max(at);
                tx.handle_timeout(now);
            }
            terminated += drain(|| tx.poll_event()).iter().filter(|e| **e == TxEvent::Terminated).count();
            proptest::prop_assert_eq!(tx.state(), ServerNonInviteState::Terminated);
            proptest::prop_assert_eq!(terminated, 1);
        }
    }
}
