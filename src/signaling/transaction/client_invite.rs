//! RFC 3261 §17.1.1: the INVITE client transaction (TODO(helper: transactions)).

use super::{TimerConfig, TxEvent};
use crate::signaling::message::{Request, Response};
use std::time::Instant;

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
    _private: (),
}

impl ClientInvite {
    /// Starts the transaction: the first `poll_event` is `SendRequest(invite)`; Timer B (and A when
    /// `!reliable`) is armed.
    pub fn new(_invite: Request, _now: Instant, _cfg: TimerConfig, _reliable: bool) -> Self {
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
    pub fn state(&self) -> ClientInviteState {
        todo!()
    }
    /// The INVITE this transaction sent (for building CANCEL and ACK).
    pub fn request(&self) -> &Request {
        todo!()
    }
}
