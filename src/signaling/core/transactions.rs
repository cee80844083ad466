//! The RFC 3261 §17 transaction table of the core: creating client and server transactions,
//! draining their events onto the flows, and routing client outcomes to their owners.

use super::{CallHandle, FlowId, SignalingCore};
use crate::signaling::invite::{response, ACCEPT};
use crate::signaling::message::{new_tag, HeaderName, Method, Request, Response};
use crate::signaling::transaction::{
    ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite, TxEvent, TxKey,
};
use std::sync::Arc;
use std::time::Instant;

/// Who waits for a client transaction's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxOwner {
    /// The INVITE of a call.
    Invite(CallHandle),
    /// Our re-INVITE in a call.
    ReInvite(CallHandle),
    /// The BYE of a call.
    Bye(CallHandle),
    /// A CANCEL or a BYE for a stray forked dialog: nobody cares about the answer.
    Nobody,
    /// A REGISTER.
    Registration,
}

// An INVITE transaction keeps its ACK beside the INVITE; the few live transactions are worth
// a few hundred bytes each more than an allocation per transaction.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ClientKind {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

pub(crate) struct ClientTx {
    pub(crate) tx: ClientKind,
    pub(crate) flow: FlowId,
    pub(crate) owner: TxOwner,
}

pub(crate) enum ServerKind {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

pub(crate) struct ServerTx {
    pub(crate) tx: ServerKind,
    pub(crate) flow: FlowId,
}

impl SignalingCore {
    /// Sends a request in a new client transaction on `flow`.
    pub(crate) fn send_request(
        &mut self,
        now: Instant,
        flow: FlowId,
        req: Request,
        owner: TxOwner,
    ) -> Option<TxKey> {
        let key = TxKey::for_request(&req)?;
        let key = TxKey {
            method: req.method.clone(),
            ..key
        };
        let (timers, reliable) = (self.config.timers, self.reliable(flow));
        let tx = if req.method == Method::Invite {
            ClientKind::Invite(ClientInvite::new(req, now, timers, reliable))
        } else {
            ClientKind::NonInvite(ClientNonInvite::new(req, now, timers, reliable))
        };
        self.client_tx
            .insert(key.clone(), ClientTx { tx, flow, owner });
        self.drain_client(now, &key);
        Some(key)
    }

    /// Sends `status` on the server transaction `key` (built from `req`), with the To tag of
    /// `call` if any.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        key: &TxKey,
        req: &Request,
        status: u16,
        call: Option<CallHandle>,
    ) {
        let fresh;
        let tag = match call.and_then(|h| self.calls.get(&h)) {
            Some(c) => c.local_tag.as_str(),
            None => {
                fresh = new_tag();
                fresh.as_str()
            }
        };
        let mut resp = response(req, status, Some(tag), &self.config.user_agent);
        if req.method == Method::Options && status == 200 {
            resp.headers.push(HeaderName::Accept, ACCEPT);
        }
        self.send_response(now, key, resp);
    }

    /// Hands a built response to the server transaction `key`.
    pub(crate) fn send_response(
        &mut self,
        now: Instant,
        key: &TxKey,
        resp: impl Into<Arc<Response>>,
    ) {
        let Some(t) = self.server_tx.get_mut(key) else {
            tracing::debug!(?key, "no server transaction for the response");
            return;
        };
        match &mut t.tx {
            ServerKind::Invite(tx) => tx.send_response(resp, now),
            ServerKind::NonInvite(tx) => tx.send_response(resp, now),
        }
        self.drain_server(now, key);
    }

    pub(crate) fn drain_server(&mut self, _now: Instant, key: &TxKey) {
        let Some(t) = self.server_tx.get_mut(key) else {
            return;
        };
        // Nothing below drains a server transaction again, so the buffer is ours until put back.
        let mut events = std::mem::take(&mut self.server_events);
        let flow = t.flow;
        loop {
            let ev = match &mut t.tx {
                ServerKind::Invite(tx) => tx.poll_event(),
                ServerKind::NonInvite(tx) => tx.poll_event(),
            };
            match ev {
                Some(e) => events.push(e),
                None => break,
            }
        }
        for ev in events.drain(..) {
            match ev {
                TxEvent::SendResponse(r) => self.transmit(flow, r.to_bytes()),
                TxEvent::SendRequest(r) => self.transmit(flow, r.to_bytes()),
                TxEvent::Terminated => {
                    self.server_tx.remove(key);
                }
                TxEvent::Timeout(_) | TxEvent::TransportError => {
                    tracing::debug!(?key, "server transaction failed");
                }
                TxEvent::AckReceived | TxEvent::Response(_) => {}
            }
        }
        self.server_events = events;
    }

    pub(crate) fn drain_client(&mut self, now: Instant, key: &TxKey) {
        let mut events = Vec::new();
        let Some(t) = self.client_tx.get_mut(key) else {
            return;
        };
        let (flow, owner) = (t.flow, t.owner);
        loop {
            let ev = match &mut t.tx {
                ClientKind::Invite(tx) => tx.poll_event(),
                ClientKind::NonInvite(tx) => tx.poll_event(),
            };
            match ev {
                Some(e) => events.push(e),
                None => break,
            }
        }
        for ev in events {
            match ev {
                TxEvent::SendRequest(r) => self.transmit(flow, r.to_bytes()),
                TxEvent::SendResponse(r) => self.transmit(flow, r.to_bytes()),
                TxEvent::Terminated => {
                    self.client_tx.remove(key);
                }
                TxEvent::AckReceived => {}
                TxEvent::Response(r) => self.client_outcome(now, key, owner, Ok(r)),
                TxEvent::Timeout(_) => self.client_outcome(now, key, owner, Err(408)),
                TxEvent::TransportError => self.client_outcome(now, key, owner, Err(503)),
            }
        }
    }

    /// A client transaction's response, or its failure as a status (408 timeout, 503 transport).
    pub(crate) fn client_outcome(
        &mut self,
        now: Instant,
        key: &TxKey,
        owner: TxOwner,
        resp: Result<Response, u16>,
    ) {
        match owner {
            TxOwner::Invite(h) => self.uac_response(now, h, key, resp),
            TxOwner::ReInvite(h) => self.reinvite_response(now, h, key, resp),
            TxOwner::Bye(h) => {
                if resp.as_ref().map_or(true, |r| r.status >= 200) {
                    self.bye_done(now, h);
                }
            }
            TxOwner::Registration => self.control_response(now, resp),
            TxOwner::Nobody => {}
        }
    }
}

pub(crate) fn client_timeout(t: &ClientTx) -> Option<Instant> {
    match &t.tx {
        ClientKind::Invite(tx) => tx.poll_timeout(),
        ClientKind::NonInvite(tx) => tx.poll_timeout(),
    }
}

pub(crate) fn server_timeout(t: &ServerTx) -> Option<Instant> {
    match &t.tx {
        ServerKind::Invite(tx) => tx.poll_timeout(),
        ServerKind::NonInvite(tx) => tx.poll_timeout(),
    }
}
