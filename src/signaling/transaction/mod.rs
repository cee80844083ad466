//! RFC 3261 §17 transactions, sans-IO with injected time.
//!
//! Four machines, one per file: [`ClientInvite`], [`ClientNonInvite`], [`ServerInvite`],
//! [`ServerNonInvite`]. Each is driven the same way:
//!
//! ```text
//! tx.handle_*(.., now)                     // a message from the transport or the TU
//! tx.handle_timeout(now)                   // when now >= tx.poll_timeout()
//! while let Some(ev) = tx.poll_event() {}  // what to transmit / hand to the TU
//! ```
//!
//! Over a reliable transport (TCP, TLS) the retransmission timers A, E, G are never set and the
//! wait timers D, I, J, K are zero, as RFC 3261 §17 says; B, F and H still run (64·T1).

mod client_invite;
mod client_non_invite;
mod outbox;
mod server_invite;
mod server_non_invite;
#[cfg(test)]
mod test_support;
mod timers;

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub use timers::{Timer, TimerConfig, Timers};

use super::message::{Method, Request, Response};

/// What a transaction asks its owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// Send this request on the transaction's flow (the initial request, a retransmission, or —
    /// for a client INVITE — the ACK of a non-2xx final response).
    SendRequest(Request),
    /// Send this response on the transaction's flow (a server transaction's response or its
    /// retransmission).
    SendResponse(Response),
    /// Client: a response the transaction user must see (1xx, 2xx, first 3xx-6xx).
    Response(Response),
    /// Server INVITE: the ACK for our non-2xx final response arrived (the TU needs nothing more).
    AckReceived,
    /// Timer B, F or H fired: the peer never answered (client: the TU should act as if it got
    /// a 408; server INVITE: the ACK never came).
    Timeout(Timer),
    /// The transport failed while sending (RFC 3261 §17.1.4): treat like a 503.
    TransportError,
    /// The transaction reached Terminated and can be dropped.
    Terminated,
}

/// The key that matches messages to a transaction (RFC 3261 §17.1.3 and §17.2.3): the top Via
/// branch plus the CSeq method, with ACK mapped to INVITE for server matching of non-2xx ACKs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    /// Top Via branch (must start with `z9hG4bK`).
    pub branch: String,
    /// The method the transaction was created for (ACK and CANCEL keep their own except as noted).
    pub method: Method,
}

impl TxKey {
    /// The key of a server transaction that `request` belongs to. An ACK maps to the INVITE
    /// transaction with the same branch (it matches only when that transaction sent a non-2xx).
    /// `None` when there is no top Via branch.
    pub fn for_request(request: &Request) -> Option<TxKey> {
        let via = request.headers.top_via()?;
        let branch = via.branch()?.to_string();
        let method = match &request.method {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        Some(TxKey { branch, method })
    }

    /// The key of the client transaction a response belongs to (top Via branch + CSeq method).
    pub fn for_response(response: &Response) -> Option<TxKey> {
        let via = response.headers.top_via()?;
        let branch = via.branch()?.to_string();
        let method = response.headers.cseq()?.method;
        Some(TxKey { branch, method })
    }
}
