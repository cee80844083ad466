//! What arrives at the core: flows that come and go, bytes, requests, responses and timeouts.

use super::{raw400, CallHandle, CallOutcome, Event, FlowId, FlowKind, Output, SignalingCore};
use super::{ClientKind, ServerKind, ServerTx};
use crate::signaling::dialog::{Dialog, DialogKey};
use crate::signaling::framing::Frame;
use crate::signaling::invite::ledger::EntryKind;
use crate::signaling::invite::{ledger_key_of, Phase};
use crate::signaling::message::{Message, Method, Request, Response};
use crate::signaling::transaction::{ServerInvite, ServerNonInvite, TxKey};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

impl SignalingCore {
    /// The driver accepted a TCP connection on its listener; returns the id to use for it.
    pub fn handle_flow_accepted(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> FlowId {
        self.handle_flow_accepted_over(now, local, remote, super::Transport::Tcp)
    }

    /// The driver accepted a connection over `transport` (TCP, or TLS once its handshake is
    /// done); returns the id to use for it.
    pub fn handle_flow_accepted_over(
        &mut self,
        _now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        transport: super::Transport,
    ) -> FlowId {
        let id = self.new_flow(FlowKind::Accepted, transport);
        if let Some(f) = self.flows.get_mut(&id) {
            f.local = Some(local);
            f.remote = Some(remote);
            f.up = true;
        }
        self.event(Event::FlowUp { flow: id, remote });
        id
    }

    /// A flow asked for with [`Output::Connect`] is connected.
    pub fn handle_flow_up(
        &mut self,
        now: Instant,
        flow: FlowId,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        let Some(f) = self.flows.get_mut(&flow) else {
            tracing::warn!(?flow, "flow up for an unknown flow");
            self.outputs.push_back(Output::Close { flow });
            return;
        };
        f.local = Some(local);
        f.remote = Some(remote);
        f.up = true;
        let kind = f.kind.clone();
        self.event(Event::FlowUp { flow, remote });
        self.rehomed(now, flow);
        if kind == FlowKind::Control {
            self.control_flow_up(now, flow, local);
        }
        let waiting: Vec<CallHandle> = self
            .calls
            .values()
            .filter(|c| c.flow == flow && c.phase == Phase::WaitFlow)
            .map(|c| c.handle)
            .collect();
        for h in waiting {
            self.uac_send_invite(now, h);
        }
        self.drain_control(now);
    }

    /// A flow failed to connect, hit EOF, or errored, for no cause the driver could name.
    pub fn handle_flow_down(&mut self, now: Instant, flow: FlowId) {
        self.handle_flow_closed(now, flow, "connection closed");
    }

    /// A flow failed to connect, hit EOF, or errored; `cause` says why (`connect
    /// 127.0.0.1:1: connection refused`). The cause goes into the `FlowDown` event and into the
    /// reason of whatever the flow's loss ends (calls, the registration attempt).
    pub fn handle_flow_closed(&mut self, now: Instant, flow: FlowId, cause: &str) {
        let Some(f) = self.flows.remove(&flow) else {
            return;
        };
        self.flow_cause = if f.up {
            format!("flow lost: {cause}")
        } else {
            cause.to_string()
        };
        if f.up {
            self.event(Event::FlowDown {
                flow,
                cause: cause.to_string(),
            });
        }
        if f.kind == FlowKind::Control {
            // Our BYEs and re-INVITEs on it go out again on the next control flow.
            self.requeue_in_flight(flow);
        }
        // Client transactions on the flow fail (RFC 3261 §17.1.4).
        let keys: Vec<TxKey> = self
            .client_tx
            .iter()
            .filter(|(_, t)| t.flow == flow)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(t) = self.client_tx.get_mut(&key) {
                match &mut t.tx {
                    ClientKind::Invite(tx) => tx.handle_transport_error(now),
                    ClientKind::NonInvite(tx) => tx.handle_transport_error(now),
                }
            }
            self.drain_client(now, &key);
            self.client_tx.remove(&key);
        }
        // Server transactions can send nothing more, except the INVITE transactions of
        // ringing calls on the control flow: they wait for the next one (`core/resilience.rs`).
        let control_lost = f.kind == FlowKind::Control;
        let keep = if control_lost {
            self.surviving_server_tx(flow)
        } else {
            Default::default()
        };
        self.server_tx
            .retain(|k, t| t.flow != flow || keep.contains(k));
        // Calls on the flow end, except those that survive the loss of the control flow.
        let calls: Vec<CallHandle> = self
            .calls
            .values()
            .filter(|c| c.flow == flow && c.phase != Phase::Ended)
            .map(|c| c.handle)
            .collect();
        for h in calls {
            if control_lost && self.survives_control_loss(h) {
                self.detach(now, h);
            } else if !control_lost && self.survives_direct_loss(h) {
                self.orphan(h);
            } else {
                self.call_flow_lost(now, h);
            }
        }
        if f.kind == FlowKind::Control {
            self.control_flow_down(now, flow);
        }
        self.drain_control(now);
    }

    /// Bytes arrived on a flow.
    pub fn handle_received(&mut self, now: Instant, flow: FlowId, bytes: &[u8]) {
        let Some(f) = self.flows.get_mut(&flow) else {
            tracing::warn!(?flow, "bytes for an unknown flow");
            return;
        };
        f.framer.push(bytes, now);
        loop {
            let Some(f) = self.flows.get_mut(&flow) else {
                return;
            };
            match f.framer.poll() {
                None => break,
                Some(Ok(Frame::Ping)) => self.transmit(flow, b"\r\n".to_vec()),
                Some(Ok(Frame::Pong)) => self.control_pong(now, flow),
                Some(Ok(Frame::Message(raw))) => self.handle_message(now, flow, &raw),
                Some(Err(e)) => {
                    tracing::warn!(?flow, error = %e, "framing error, closing the flow");
                    self.outputs.push_back(Output::Close { flow });
                    self.handle_flow_closed(now, flow, &format!("framing error: {e}"));
                    return;
                }
            }
        }
        self.drain_control(now);
    }

    pub(crate) fn handle_message(&mut self, now: Instant, flow: FlowId, raw: &[u8]) {
        match Message::parse(raw) {
            Ok(Message::Request(req)) => match incomplete(&req) {
                None => self.handle_request(now, flow, req),
                Some(why) => self.handle_unparsable(now, flow, raw, &why),
            },
            Ok(Message::Response(resp)) => self.handle_response(now, resp),
            Err(e) => self.handle_unparsable(now, flow, raw, &e),
        }
    }

    /// A request that did not parse: answer 400 if the headers a response needs are readable.
    fn handle_unparsable(
        &mut self,
        now: Instant,
        flow: FlowId,
        raw: &[u8],
        e: &dyn std::fmt::Display,
    ) {
        let Some(bad) = raw400::build(raw, &self.config.user_agent) else {
            tracing::warn!(?flow, error = %e, "dropping an unparsable message");
            return;
        };
        tracing::warn!(?flow, error = %e, "answering an unparsable request with 400");
        self.transmit(flow, bad.bytes);
        if let Some(key) = bad.invite {
            // An INVITE that starts a call: it is in the ledger like any other.
            if self.ledger.open(key.clone(), EntryKind::Initial) {
                let h = self.new_call_handle();
                self.ledger.final_sent(&key, now);
                self.ledger.ended(&key, now);
                self.event(Event::Ended {
                    call: h,
                    call_id: key.call_id.to_string(),
                    status: Some(400),
                    reason: "Bad Request".into(),
                    outcome: CallOutcome::Failed,
                });
            }
        }
    }

    pub(crate) fn handle_request(&mut self, now: Instant, flow: FlowId, req: Request) {
        let Some(key) = TxKey::for_request(&req) else {
            tracing::warn!(?flow, "request without a Via branch, dropped");
            return;
        };
        if req.method == Method::Ack {
            if let Some(t) = self.server_tx.get_mut(&key) {
                if let ServerKind::Invite(tx) = &mut t.tx {
                    if tx.final_status().is_some_and(|s| s >= 300) {
                        tx.handle_request(req, now);
                        self.drain_server(now, &key);
                        return;
                    }
                }
            }
            self.handle_ack(now, req);
            return;
        }
        if let Some(t) = self.server_tx.get_mut(&key) {
            // A retransmission.
            match &mut t.tx {
                ServerKind::Invite(tx) => tx.handle_request(req, now),
                ServerKind::NonInvite(tx) => tx.handle_request(req, now),
            }
            self.drain_server(now, &key);
            return;
        }
        // Shared by the server transaction and, for an INVITE, the call.
        let req = Arc::new(req);
        let mut lk = None;
        if req.method == Method::Invite {
            lk = ledger_key_of(&req, &key);
            if let Some(lk) = &lk {
                if req.headers.to().is_none_or(|t| t.tag().is_none()) && self.ledger.seen(lk) {
                    tracing::debug!(?lk, "late retransmission of an INVITE, absorbed");
                    return;
                }
            }
            let tx = ServerInvite::new(
                Arc::clone(&req),
                now,
                self.config.timers,
                self.reliable(flow),
            );
            self.server_tx.insert(
                key.clone(),
                ServerTx {
                    tx: ServerKind::Invite(tx),
                    flow,
                },
            );
        } else {
            let tx = ServerNonInvite::new(
                Arc::clone(&req),
                now,
                self.config.timers,
                self.reliable(flow),
            );
            self.server_tx.insert(
                key.clone(),
                ServerTx {
                    tx: ServerKind::NonInvite(tx),
                    flow,
                },
            );
        }
        self.drain_server(now, &key);
        let has_to_tag = req.headers.to().is_some_and(|t| t.tag().is_some());
        match req.method {
            Method::Cancel => self.uas_cancel(now, &key, &req),
            _ if has_to_tag => self.in_dialog_request(now, &key, &req),
            Method::Invite => self.uas_invite(now, flow, &key, req, lk),
            Method::Options => self.respond(now, &key, &req, 200, None),
            Method::Bye => self.respond(now, &key, &req, 481, None),
            Method::Other(_) => self.respond(now, &key, &req, 501, None),
            _ => self.respond(now, &key, &req, 405, None),
        }
    }

    fn in_dialog_request(&mut self, now: Instant, key: &TxKey, req: &Request) {
        let call = Dialog::key_of_request(req)
            .and_then(|id| self.dialogs.get(&id as &dyn DialogKey).copied())
            .filter(|h| self.calls.get(h).is_some_and(|c| c.phase != Phase::Ended));
        let Some(h) = call else {
            self.respond(now, key, req, 481, None);
            return;
        };
        if let Some(flow) = self.server_tx.get(key).map(|t| t.flow) {
            self.adopt_flow(h, flow);
        }
        let seq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let in_order = self
            .calls
            .get_mut(&h)
            .and_then(|c| c.dialog.as_mut())
            .is_some_and(|d| d.check_remote_cseq(seq));
        if !in_order {
            self.respond(now, key, req, 500, Some(h));
            return;
        }
        match req.method {
            Method::Bye => self.uas_bye(now, h, key, req),
            Method::Invite => self.uas_reinvite(now, h, key, req),
            Method::Info => {
                // DTMF as SIP INFO (application/dtmf-relay): the same event as RFC 4733 digits.
                let ct = req.headers.content_type().unwrap_or_default();
                let digit = crate::signaling::dtmf_info::digit(&ct, &req.body);
                if let (Some(digit), Some(c)) = (digit, self.calls.get(&h)) {
                    let call_id = c.call_id.clone();
                    self.event(Event::Dtmf {
                        call: h,
                        call_id,
                        digit,
                    });
                }
                self.respond(now, key, req, 200, Some(h))
            }
            Method::Options => self.respond(now, key, req, 200, Some(h)),
            Method::Other(_) => self.respond(now, key, req, 501, Some(h)),
            _ => self.respond(now, key, req, 405, Some(h)),
        }
    }

    /// An ACK that is not for a non-2xx final of ours: the ACK of a 2xx (ours or a re-INVITE's).
    fn handle_ack(&mut self, now: Instant, req: Request) {
        let Some(h) = Dialog::key_of_request(&req)
            .and_then(|id| self.dialogs.get(&id as &dyn DialogKey).copied())
        else {
            tracing::debug!("ACK for no dialog, dropped");
            return;
        };
        self.uas_ack(now, h, &req);
    }

    pub(crate) fn handle_response(&mut self, now: Instant, resp: Response) {
        let Some(key) = TxKey::for_response(&resp) else {
            tracing::warn!("response without Via branch or CSeq, dropped");
            return;
        };
        if let Some(t) = self.client_tx.get_mut(&key) {
            match &mut t.tx {
                ClientKind::Invite(tx) => tx.handle_response(resp, now),
                ClientKind::NonInvite(tx) => tx.handle_response(resp, now),
            }
            self.drain_client(now, &key);
            return;
        }
        // A 2xx to an INVITE after its transaction ended: a retransmission or another fork.
        if key.method == Method::Invite && resp.is_success() {
            let h = resp
                .headers
                .call_id()
                .and_then(|id| self.uac_calls.get(id).copied());
            if let Some(h) = h {
                self.uac_late_2xx(now, h, resp);
                return;
            }
        }
        tracing::debug!(?key, status = resp.status, "stray response, dropped");
    }

    /// Call when `now >= poll_timeout()`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Transactions, then framers, from their deadline queues (`core/deadlines.rs`).
        for key in self.due(&self.client_tx, now) {
            if let Some(t) = self.client_tx.get_mut(&key) {
                match &mut t.tx {
                    ClientKind::Invite(tx) => tx.handle_timeout(now),
                    ClientKind::NonInvite(tx) => tx.handle_timeout(now),
                }
            }
            self.drain_client(now, &key);
        }
        for key in self.due(&self.server_tx, now) {
            if let Some(t) = self.server_tx.get_mut(&key) {
                match &mut t.tx {
                    ServerKind::Invite(tx) => tx.handle_timeout(now),
                    ServerKind::NonInvite(tx) => tx.handle_timeout(now),
                }
            }
            self.drain_server(now, &key);
        }
        let mut stalled = Vec::new();
        for id in self.due(&self.flows, now) {
            if let Some(f) = self.flows.get_mut(&id) {
                if f.framer.handle_timeout(now).is_some() {
                    stalled.push(id);
                }
            }
        }
        for flow in stalled {
            tracing::warn!(?flow, "stalled partial message, closing the flow");
            self.outputs.push_back(Output::Close { flow });
            self.handle_flow_closed(now, flow, "stalled partial message");
        }
        // Calls.
        for h in self.due(&self.calls, now) {
            self.call_timeout(now, h);
        }
        self.control_timeout(now);
        self.push_expire(now);
        self.ledger.expire(now);
        self.drain_control(now);
    }
}

/// Why a parsed request cannot be handled statefully (RFC 3261 §8.1.1 mandatory headers and a
/// top Via branch), or `None`.
fn incomplete(req: &Request) -> Option<&'static str> {
    if req
        .headers
        .top_via()
        .and_then(|v| v.branch().map(str::len))
        .is_none()
    {
        Some("no Via branch")
    } else if req.headers.from().is_none() || req.headers.to().is_none() {
        Some("From or To missing or malformed")
    } else if req.headers.call_id().is_none() {
        Some("no Call-ID")
    } else if req.headers.cseq().is_none_or(|c| c.method != req.method) {
        Some("CSeq missing, malformed or of another method")
    } else {
        None
    }
}
