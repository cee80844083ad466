//! RFC 3261 §17.2.1 (with RFC 6026's Accepted state): the INVITE server transaction
//! (TODO(helper: transactions)).

use super::{TimerConfig, TxEvent};
use crate::signaling::message::{Request, Response};
use std::time::Instant;

/// States of §17.2.1 (Figure 7) plus RFC 6026 Accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    /// INVITE received; 100 Trying sent at once; provisional responses may follow.
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
    _private: (),
}

impl ServerInvite {
    /// Creates the transaction for a received INVITE. The first event is
    /// `SendResponse(100 Trying)` (sent at once, not after 200 ms).
    pub fn new(_invite: Request, _now: Instant, _cfg: TimerConfig, _reliable: bool) -> Self {
        todo!()
    }
    /// A response from the TU (1xx, 2xx or 3xx-6xx). Responses after a final one are ignored.
    pub fn send_response(&mut self, _response: Response, _now: Instant) {
        todo!()
    }
    /// A request that matched this transaction: a retransmitted INVITE (the last response is
    /// re-sent) or the ACK of a non-2xx final.
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
    pub fn state(&self) -> ServerInviteState {
        todo!()
    }
    /// The INVITE.
    pub fn request(&self) -> &Request {
        todo!()
    }
    /// The final status sent, if any.
    pub fn final_status(&self) -> Option<u16> {
        todo!()
    }
}
