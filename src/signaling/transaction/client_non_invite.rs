//! RFC 3261 §17.1.2: the non-INVITE client transaction (TODO(helper: transactions)).

use super::{TimerConfig, TxEvent};
use crate::signaling::message::{Request, Response};
use std::time::Instant;

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
    _private: (),
}

impl ClientNonInvite {
    /// Starts the transaction: first event `SendRequest(request)`; Timer F (and E if unreliable).
    pub fn new(_request: Request, _now: Instant, _cfg: TimerConfig, _reliable: bool) -> Self {
        todo!()
    }
    /// A response whose key matched this transaction.
    pub fn handle_response(&mut self, _response: Response, _now: Instant) {
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
    pub fn state(&self) -> ClientNonInviteState {
        todo!()
    }
    /// The request this transaction sent.
    pub fn request(&self) -> &Request {
        todo!()
    }
}
