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
//! wait timers D, I, J, K are zero, as RFC 3261 §17 says; B, F and H still run (64·T1). A zero
//! wait timer is not armed: the machine goes to Terminated inside the call that entered the
//! waiting state.
//!
//! 2xx handling follows RFC 6026 on the server side (Accepted state, Timer L = 64·T1) and plain
//! RFC 3261 on the client side (every 2xx goes to the TU, the transaction terminates at once and
//! the TU ACKs the 2xx itself). Every machine queues [`TxEvent::Terminated`] exactly once, after
//! which it queues nothing more and can be dropped.

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
use std::sync::Arc;

/// What a transaction asks its owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// Send this request on the transaction's flow (the initial request, a retransmission, or —
    /// for a client INVITE — the ACK of a non-2xx final response).
    SendRequest(Request),
    /// Send this response on the transaction's flow (a server transaction's response or its
    /// retransmission). Shared with the transaction, which keeps it to re-send.
    SendResponse(std::sync::Arc<Response>),
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
/// branch plus the method, with ACK mapped to INVITE for server matching of non-2xx ACKs.
///
/// Known gap against §17.2.3: the top Via sent-by is not part of the key, so two clients that
/// pick the same branch would collide. RFC 3261 branches are meant to be unique in space and
/// time (`z9hG4bK` + random), so this is accepted; the RFC 2543 fallback matching for branches
/// without the magic cookie is not implemented either (such branches are used as they are).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    /// Top Via branch (must start with `z9hG4bK`). Shared: the key is cloned into the deadline
    /// queue and the per-call indexes, and a clone of an `Arc<str>` is a count, not a copy.
    pub branch: Arc<str>,
    /// The method the transaction was created for (ACK and CANCEL keep their own except as noted).
    pub method: Method,
}

impl TxKey {
    /// The key of a server transaction that `request` belongs to (§17.2.3). An ACK maps to the
    /// INVITE transaction with the same branch (it matches only when that transaction sent a
    /// non-2xx; the ACK of a 2xx has a new branch and matches nothing). A CANCEL keeps method
    /// CANCEL: it is a transaction of its own (see [`TxKey::for_cancel_target`] for the INVITE
    /// it refers to). `None` when there is no top Via branch.
    ///
    /// The same key serves a client transaction created for an outgoing request (any method
    /// but ACK, which never creates a transaction).
    pub fn for_request(request: &Request) -> Option<TxKey> {
        let via = request.headers.top_via()?;
        let branch = Arc::from(via.branch()?);
        let method = match &request.method {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        Some(TxKey { branch, method })
    }

    /// The key of the client transaction a response belongs to (§17.1.3): top Via branch +
    /// CSeq method (so the 200 to a CANCEL matches the CANCEL, not the INVITE). `None` when the
    /// top Via has no branch or the CSeq does not parse.
    pub fn for_response(response: &Response) -> Option<TxKey> {
        let via = response.headers.top_via()?;
        let branch = Arc::from(via.branch()?);
        let method = response.headers.cseq()?.method;
        Some(TxKey { branch, method })
    }

    /// The key of the INVITE server transaction that `cancel` refers to (§9.2: a CANCEL carries
    /// the top Via branch of the request it cancels): same branch, method INVITE. `None` when
    /// `cancel` is not a CANCEL or has no top Via branch.
    pub fn for_cancel_target(cancel: &Request) -> Option<TxKey> {
        if cancel.method != Method::Cancel {
            return None;
        }
        let via = cancel.headers.top_via()?;
        let branch = Arc::from(via.branch()?);
        Some(TxKey {
            branch,
            method: Method::Invite,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Transaction keys, through the real header parsers (`Headers::top_via()` / `cseq()`).
    use super::test_support::*;
    use super::*;
    use crate::signaling::message::HeaderName;

    #[test]
    fn keys_follow_17_1_3_and_17_2_3() {
        let inv = invite();
        let key = TxKey::for_request(&inv).unwrap();
        assert_eq!(&*key.branch, "z9hG4bKtop1");
        assert_eq!(key.method, Method::Invite);
        // The ACK of a non-2xx (same branch) maps to the INVITE transaction.
        assert_eq!(TxKey::for_request(&ack_for(&inv)), Some(key.clone()));
        // The response matches the client transaction by branch + CSeq method.
        assert_eq!(
            TxKey::for_response(&response_to(&inv, 486, Some("x"))),
            Some(key.clone())
        );

        // A CANCEL is its own transaction but points at the INVITE.
        let mut cancel = inv.clone();
        cancel.method = Method::Cancel;
        cancel.headers.set(HeaderName::CSeq, "314 CANCEL");
        let ckey = TxKey::for_request(&cancel).unwrap();
        assert_eq!(ckey.method, Method::Cancel);
        assert_ne!(ckey, key);
        assert_eq!(TxKey::for_cancel_target(&cancel), Some(key.clone()));
        assert_eq!(
            TxKey::for_response(&response_to(&cancel, 200, Some("x"))),
            Some(ckey)
        );
        assert_eq!(TxKey::for_cancel_target(&inv), None);

        let mut no_branch = inv;
        no_branch
            .headers
            .set(HeaderName::Via, "SIP/2.0/UDP 192.0.2.1:5060");
        assert_eq!(TxKey::for_request(&no_branch), None);
    }

    #[test]
    fn for_cancel_target_rejects_other_methods_without_parsing() {
        // Checked before any header is parsed, so this runs today.
        assert_eq!(TxKey::for_cancel_target(&invite()), None);
        assert_eq!(TxKey::for_cancel_target(&non_invite(Method::Bye)), None);
    }
}

#[cfg(test)]
mod pair_tests {
    //! A client and a server INVITE transaction wired back to back over a lossy, unreliable link,
    //! driven by a virtual clock that jumps to the next deadline.
    use super::test_support::*;
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn non_2xx_exchange_survives_losses() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut client = ClientInvite::new(invite(), t0, cfg, false);
        let mut server: Option<ServerInvite> = None;
        // Drop the first INVITE and the first 486 on the wire.
        let (mut drop_invite, mut drop_486) = (1, 1);
        let mut tu_got = Vec::new();
        let mut acks_to_server = 0;
        let mut now = t0;
        for _ in 0..200 {
            while let Some(ev) = client.poll_event() {
                match ev {
                    TxEvent::SendRequest(req) if req.method == Method::Invite => {
                        if drop_invite > 0 {
                            drop_invite -= 1;
                        } else if let Some(s) = server.as_mut() {
                            s.handle_request(req, now);
                        } else {
                            let mut s = ServerInvite::new(req.clone(), now, cfg, false);
                            // The server TU rejects at once.
                            s.send_response(response_to(&req, 486, Some("callee")), now);
                            server = Some(s);
                        }
                    }
                    TxEvent::SendRequest(ack) => {
                        assert_eq!(ack.method, Method::Ack);
                        acks_to_server += 1;
                        if let Some(s) = server.as_mut() {
                            s.handle_request(ack, now);
                        }
                    }
                    TxEvent::Response(r) => tu_got.push(r.status),
                    TxEvent::Terminated => {}
                    other => panic!("client: unexpected {other:?}"),
                }
            }
            if let Some(s) = server.as_mut() {
                while let Some(ev) = s.poll_event() {
                    match ev {
                        TxEvent::SendResponse(r) if r.status == 486 && drop_486 > 0 => {
                            drop_486 -= 1;
                        }
                        TxEvent::SendResponse(r) => {
                            client.handle_response(std::sync::Arc::unwrap_or_clone(r), now)
                        }
                        TxEvent::AckReceived | TxEvent::Terminated => {}
                        other => panic!("server: unexpected {other:?}"),
                    }
                }
            }
            let next = [
                client.poll_timeout(),
                server.as_ref().and_then(|s| s.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { break };
            now = next;
            client.handle_timeout(now);
            if let Some(s) = server.as_mut() {
                s.handle_timeout(now);
            }
        }
        // The TU saw the 486 exactly once, despite retransmissions (no 100: the server's TU
        // rejected within the Trying time).
        assert_eq!(tu_got, vec![486]);
        assert!(acks_to_server >= 1);
        assert_eq!(client.state(), ClientInviteState::Terminated);
        let server = server.expect("the server saw the retransmitted INVITE");
        assert_eq!(server.state(), ServerInviteState::Terminated);
        assert_eq!(server.final_status(), Some(486));
        // Everything is over well within Timer D (32 s) after the first send.
        assert!(now - t0 <= Duration::from_secs(40));
    }
}
