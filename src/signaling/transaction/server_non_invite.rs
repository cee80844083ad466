//! RFC 3261 §17.2.2: the non-INVITE server transaction (TODO(helper: transactions)).

use super::{TimerConfig, TxEvent};
use crate::signaling::message::{Request, Response};
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
    _private: (),
}

impl ServerNonInvite {
    /// Creates the transaction for a received request. Nothing is sent until the TU responds.
    pub fn new(_request: Request, _now: Instant, _cfg: TimerConfig, _reliable: bool) -> Self {
        todo!()
    }
    /// A response from the TU.
    pub fn send_response(&mut self, _response: Response, _now: Instant) {
        todo!()
    }
    /// A retransmission of the request (the last response is re-sent).
    pub fn handle_request(&mut self, _request: Request, _now: Instant) {
        todo!()
    }
    /// The transport reported a send failure.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        todo!()
    }
    /// Call when `now >= poll_timeout()`.
    pub fn handle_timeout(&mut self, _now: Instant) {
        todo!()
    }
    /// Next thing to do.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        todo!()
    }
    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
    /// The current state.
    pub fn state(&self) -> ServerNonInviteState {
        todo!()
    }
    /// The request.
    pub fn request(&self) -> &Request {
        todo!()
    }
}
