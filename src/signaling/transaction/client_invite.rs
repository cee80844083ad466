//! RFC 3261 §17.1.1: the INVITE client transaction.
//!
//! Every 2xx goes to the TU and the transaction moves straight to Terminated (RFC 3261 §17.1.1.2
//! as written): the TU sends the ACK for a 2xx itself and absorbs 2xx retransmissions through the
//! dialog. RFC 6026's client-side Accepted state (Timer M) is not used here.

use super::outbox::Outbox;
use super::{Timer, TimerConfig, Timers, TxEvent};
use crate::signaling::message::{HeaderName, Method, Request, Response};
use std::time::{Duration, Instant};

/// States of §17.1.1.2 (Figure 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, nothing received.
    Calling,
    /// A provisional response was received.
    Proceeding,
    /// A 3xx-6xx was received and ACKed; absorbing retransmissions (Timer D).
    Completed,
    /// Done.
    Terminated,
}

/// The INVITE client transaction.
#[derive(Debug)]
pub struct ClientInvite {
    invite: Request,
    state: ClientInviteState,
    cfg: TimerConfig,
    reliable: bool,
    timers: Timers,
    /// The current Timer A interval (doubles on each firing, uncapped as §17.1.1.2 says).
    timer_a: Duration,
    /// The ACK sent for the final response, re-sent for each retransmission of that response.
    ack: Option<Request>,
    out: Outbox,
}

impl ClientInvite {
    /// Starts the transaction: the first `poll_event` is `SendRequest(invite)`; Timer B (and A when
    /// `!reliable`) is armed.
    pub fn new(invite: Request, now: Instant, cfg: TimerConfig, reliable: bool) -> Self {
        let mut tx = ClientInvite {
            invite,
            state: ClientInviteState::Calling,
            cfg,
            reliable,
            timers: Timers::default(),
            timer_a: cfg.t1,
            ack: None,
            out: Outbox::default(),
        };
        tx.out.push(TxEvent::SendRequest(tx.invite.clone()));
        tx.timers.set(Timer::B, now + cfg.timeout());
        if !reliable {
            tx.timers.set(Timer::A, now + cfg.t1);
        }
        tx
    }

    /// A response whose key matched this transaction.
    ///
    /// 1xx and 2xx are passed to the TU (2xx ends the transaction); the first 3xx-6xx is ACKed
    /// and passed up; later copies of it only re-send the ACK. Status codes outside 100..=699
    /// are dropped.
    pub fn handle_response(&mut self, response: Response, now: Instant) {
        if !(100..=699).contains(&response.status) {
            return;
        }
        match self.state {
            ClientInviteState::Calling | ClientInviteState::Proceeding => {
                if response.is_provisional() {
                    // Figure 5: no retransmissions and no Timer B once in Proceeding.
                    self.timers.stop(Timer::A);
                    self.timers.stop(Timer::B);
                    self.state = ClientInviteState::Proceeding;
                    self.out.push(TxEvent::Response(response));
                } else if response.is_success() {
                    self.out.push(TxEvent::Response(response));
                    self.terminate();
                } else {
                    let ack = build_ack(&self.invite, &response);
                    self.out.push(TxEvent::SendRequest(ack.clone()));
                    self.ack = Some(ack);
                    self.out.push(TxEvent::Response(response));
                    self.timers.stop(Timer::A);
                    self.timers.stop(Timer::B);
                    self.state = ClientInviteState::Completed;
                    let d = self.cfg.timer_d(self.reliable);
                    if d.is_zero() {
                        self.terminate();
                    } else {
                        self.timers.set(Timer::D, now + d);
                    }
                }
            }
            ClientInviteState::Completed => {
                if response.status >= 300 {
                    if let Some(ack) = &self.ack {
                        self.out.push(TxEvent::SendRequest(ack.clone()));
                    }
                }
            }
            ClientInviteState::Terminated => {}
        }
    }

    /// The transport reported a send failure (§17.1.4): `TransportError`, then Terminated.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ClientInviteState::Terminated {
            self.out.push(TxEvent::TransportError);
            self.terminate();
        }
    }

    /// Call when `now >= poll_timeout()`. Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match (timer, self.state) {
                (Timer::A, ClientInviteState::Calling) => {
                    self.out.push(TxEvent::SendRequest(self.invite.clone()));
                    self.timer_a *= 2;
                    self.timers.set(Timer::A, now + self.timer_a);
                }
                (Timer::B, ClientInviteState::Calling) => {
                    self.out.push(TxEvent::Timeout(Timer::B));
                    self.terminate();
                }
                (Timer::D, ClientInviteState::Completed) => self.terminate(),
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
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// The INVITE this transaction sent (for building CANCEL and ACK).
    pub fn request(&self) -> &Request {
        &self.invite
    }

    fn terminate(&mut self) {
        self.state = ClientInviteState::Terminated;
        self.out.terminate(&mut self.timers);
    }
}

/// The ACK for a 3xx-6xx response, as §17.1.1.3 says: Request-URI, Call-ID and From of the
/// INVITE, To of the response (with its tag), the INVITE's CSeq number with method ACK, only the
/// top Via of the INVITE, and the INVITE's Route header fields. Header values are copied
/// verbatim, so no parsing is needed.
fn build_ack(invite: &Request, response: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    let h = &mut ack.headers;
    if let Some(via) = invite.headers.list(&HeaderName::Via).next() {
        h.push(HeaderName::Via, via);
    }
    h.push(HeaderName::MaxForwards, "70");
    if let Some(from) = invite.headers.get(&HeaderName::From) {
        h.push(HeaderName::From, from);
    }
    if let Some(to) = response
        .headers
        .get(&HeaderName::To)
        .or_else(|| invite.headers.get(&HeaderName::To))
    {
        h.push(HeaderName::To, to);
    }
    if let Some(call_id) = invite.headers.get(&HeaderName::CallId) {
        h.push(HeaderName::CallId, call_id);
    }
    if let Some(seq) = invite
        .headers
        .get(&HeaderName::CSeq)
        .and_then(|v| v.split_whitespace().next())
    {
        h.push(HeaderName::CSeq, format!("{seq} ACK"));
    }
    for route in invite.headers.get_all(&HeaderName::Route) {
        h.push(HeaderName::Route, route);
    }
    ack
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn start(reliable: bool) -> (ClientInvite, Instant) {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(invite(), t0, TimerConfig::default(), reliable);
        assert_eq!(tx.poll_event(), Some(TxEvent::SendRequest(invite())));
        assert_eq!(tx.poll_event(), None);
        (tx, t0)
    }

    #[test]
    fn timer_a_doubles_and_timer_b_fires_at_64_t1() {
        let (mut tx, t0) = start(false);
        let mut sends = Vec::new();
        let mut now = t0;
        while let Some(at) = tx.poll_timeout() {
            now = at;
            tx.handle_timeout(now);
            while let Some(ev) = tx.poll_event() {
                match ev {
                    TxEvent::SendRequest(r) => {
                        assert_eq!(r, invite());
                        sends.push(now - t0)
                    }
                    TxEvent::Timeout(t) => assert_eq!(t, Timer::B),
                    TxEvent::Terminated => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        // Retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (intervals 500 ms, 1 s, 2 s, ...).
        let expect: Vec<Duration> = [500, 1500, 3500, 7500, 15500, 31500]
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect();
        assert_eq!(sends, expect);
        assert_eq!(now - t0, Duration::from_secs(32));
        assert_eq!(tx.state(), ClientInviteState::Terminated);
    }

    #[test]
    fn reliable_has_no_timer_a_and_b_still_fires() {
        let (mut tx, t0) = start(true);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(31));
        assert_eq!(tx.poll_event(), None);
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![TxEvent::Timeout(Timer::B), TxEvent::Terminated]
        );
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn provisional_then_2xx_terminates() {
        let (mut tx, t0) = start(false);
        tx.handle_response(response_to(&invite(), 180, Some("t1")), t0);
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
        // No retransmissions and no Timer B in Proceeding.
        assert_eq!(tx.poll_timeout(), None);
        let ok = response_to(&invite(), 200, Some("t1"));
        tx.handle_response(ok.clone(), t0);
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![
                TxEvent::Response(response_to(&invite(), 180, Some("t1"))),
                TxEvent::Response(ok.clone()),
                TxEvent::Terminated
            ]
        );
        tx.handle_response(ok, t0);
        tx.handle_transport_error(t0);
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn non_2xx_is_acked_per_17_1_1_3() {
        let (mut tx, t0) = start(false);
        let busy = response_to(&invite(), 486, Some("callee"));
        tx.handle_response(busy.clone(), t0);
        let events = drain(|| tx.poll_event());
        assert_eq!(events.len(), 2);
        let TxEvent::SendRequest(ack) = &events[0] else {
            panic!("expected ACK first, got {events:?}");
        };
        assert_eq!(events[1], TxEvent::Response(busy.clone()));
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, invite().uri);
        let vias: Vec<_> = ack.headers.get_all(&HeaderName::Via).collect();
        assert_eq!(vias, vec![TOP_VIA]);
        assert_eq!(ack.headers.get(&HeaderName::To), Some(TO_TAGGED_CALLEE));
        assert_eq!(ack.headers.get(&HeaderName::From), Some(FROM));
        assert_eq!(ack.headers.get(&HeaderName::CallId), Some(CALL_ID));
        assert_eq!(ack.headers.get(&HeaderName::CSeq), Some("314 ACK"));
        let routes: Vec<_> = ack.headers.get_all(&HeaderName::Route).collect();
        assert_eq!(routes, vec![ROUTE_1, ROUTE_2]);
        assert!(ack.body.is_empty());
        assert_eq!(tx.state(), ClientInviteState::Completed);

        // A retransmitted final re-sends the same ACK and is not passed up.
        tx.handle_response(busy, t0 + Duration::from_secs(1));
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![TxEvent::SendRequest(ack.clone())]
        );
        // Timer D: 32 s on unreliable.
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(drain(|| tx.poll_event()), vec![TxEvent::Terminated]);
    }

    #[test]
    fn timer_d_is_zero_on_reliable() {
        let (mut tx, t0) = start(true);
        tx.handle_response(response_to(&invite(), 503, Some("x")), t0);
        let events = drain(|| tx.poll_event());
        assert_eq!(events.last(), Some(&TxEvent::Terminated));
        assert_eq!(tx.state(), ClientInviteState::Terminated);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn transport_error_terminates_once() {
        let (mut tx, t0) = start(false);
        tx.handle_transport_error(t0);
        tx.handle_transport_error(t0);
        tx.handle_timeout(t0 + Duration::from_secs(100));
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![TxEvent::TransportError, TxEvent::Terminated]
        );
    }

    #[test]
    fn first_2xx_in_calling_goes_up_and_stops_retransmissions() {
        let (mut tx, t0) = start(false);
        let ok = response_to(&invite(), 200, Some("t1"));
        tx.handle_response(ok.clone(), t0 + Duration::from_millis(100));
        assert_eq!(
            drain(|| tx.poll_event()),
            vec![TxEvent::Response(ok), TxEvent::Terminated]
        );
        assert_eq!(tx.poll_timeout(), None);
        tx.handle_timeout(t0 + Duration::from_secs(60));
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn timer_b_does_not_run_in_proceeding() {
        let (mut tx, t0) = start(false);
        tx.handle_response(
            response_to(&invite(), 100, None),
            t0 + Duration::from_secs(1),
        );
        tx.handle_timeout(t0 + Duration::from_secs(3600));
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
    }

    proptest::proptest! {
        #[test]
        fn random_inputs_never_panic_and_end_terminated(
            inputs in proptest::collection::vec((0u8..4, 0u16..800, 0u64..40_000), 0..40),
            reliable in proptest::bool::ANY,
        ) {
            let t0 = Instant::now();
            let mut tx = ClientInvite::new(invite(), t0, TimerConfig::default(), reliable);
            let mut now = t0;
            let mut terminated = 0;
            for (kind, status, dt) in inputs {
                now += Duration::from_millis(dt);
                match kind {
                    0 => tx.handle_response(response_to(&invite(), status, Some("t")), now),
                    1 => tx.handle_timeout(now),
                    2 => tx.handle_transport_error(now),
                    _ => {}
                }
                terminated += drain(|| tx.poll_event()).iter().filter(|e| **e == TxEvent::Terminated).count();
            }
            // A TU that got a 1xx and nothing else would end it itself; model that with a final.
            tx.handle_response(response_to(&invite(), 487, Some("t")), now);
            while let Some(at) = tx.poll_timeout() {
                now = now.max(at);
                tx.handle_timeout(now);
            }
            terminated += drain(|| tx.poll_event()).iter().filter(|e| **e == TxEvent::Terminated).count();
            proptest::prop_assert_eq!(tx.state(), ClientInviteState::Terminated);
            proptest::prop_assert_eq!(terminated, 1);
        }
    }
}
