//! `SignalingCore`: the whole SIP user agent as one sans-IO state machine.
//!
//! The driver owns the sockets and the clock and calls, in a loop:
//!
//! ```text
//! core.handle_*(now, ..)                       // bytes, flow up/down, timeouts, app commands
//! while let Some(out) = core.poll_output() {}  // Transmit / Connect / Close / Event
//! sleep_until(core.poll_timeout())
//! ```
//!
//! Inside, the core keeps the flows (each with its [`Framer`]), the RFC 3261 §17 transaction
//! table keyed by [`TxKey`], the calls (the invite state machine in [`super::invite`]) with their
//! dialogs, the no-INVITE-lost ledger, and the control flow with its registration and keep-alive
//! (`core/control.rs`). Only TCP flows exist: every transaction is created `reliable`.
//!
//! For a phone (issue 4):
//! - calls on the control flow outlive it and move to the next one (`core/resilience.rs`);
//! - [`SignalingCore::handle_push`] pre-creates a pushed call and wakes the control flow
//!   (`core/push.rs`);
//! - [`SignalingCore::set_background`], [`SignalingCore::run_keepalive`],
//!   [`SignalingCore::send_ping`] / [`SignalingCore::last_pong`] let the platform's keep-alive
//!   handler drive the control flow with no timer more frequent than its period, and
//!   [`SignalingCore::handle_network_changed`] + [`SignalingCore::update_media`] move the
//!   flow and the calls' media to a new network (`core/control.rs`).

pub mod addr;
mod control;
pub use background::KeepAliveReport;
mod background;
#[doc(hidden)]
pub mod phonekit;
mod push;
mod raw400;
mod resilience;
#[doc(hidden)]
pub mod testkit;
mod transactions;

pub(crate) use transactions::{
    client_timeout, reliable, server_timeout, ClientKind, ClientTx, ServerKind, ServerTx, TxOwner,
};

use super::config::Config;
use super::dialog::{Dialog, DialogId};
use super::framing::{Frame, Framer, FramerLimits};
use super::invite::ledger::{EntryKind, Ledger};
use super::invite::{ledger_key, Call, Deferred, MergeKey, Phase, Role};
use super::message::{new_branch, Message, Method, Request, Response, Uri};
use super::sdp::Negotiated;
use super::transaction::{ServerInvite, ServerNonInvite, TxKey};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Identifies one TCP connection (a *flow*, RFC 5626).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

/// Identifies one call (one INVITE dialog attempt) for the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u64);

/// The life of a call as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// UAC: INVITE sent.
    Calling,
    /// UAC: 100 Trying (or another provisional without ringing) received.
    Proceeding,
    /// UAC: 180/183 received. UAS: 180 sent.
    Ringing,
    /// 2xx sent/received; media may flow.
    Connected,
    /// A re-INVITE put the call on hold (either side).
    Held,
    /// A re-INVITE resumed the call.
    Resumed,
    /// BYE or CANCEL sent, waiting for the end.
    Terminating,
}

/// How a call ended: exactly one of these per INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The call was answered and later ended by BYE (either side).
    Answered,
    /// Rejected (by us or the peer) with a 3xx-6xx other than busy.
    Rejected,
    /// 486 / 600 (or our busy policy).
    Busy,
    /// Cancelled before answer (CANCEL sent or received), or not answered in time.
    Missed,
    /// Timeout, transport failure, malformed request, no common codec, ...
    Failed,
}

/// What the core tells the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new incoming call; answer with [`SignalingCore::answer`] or reject.
    Incoming {
        /// Our handle.
        call: CallHandle,
        /// SIP Call-ID.
        call_id: String,
        /// The From header value.
        from: String,
        /// The To header value (empty for a call announced by a push).
        to: String,
        /// Announced by [`SignalingCore::handle_push`] before its INVITE came; the INVITE will
        /// be bound to this handle without another `Incoming`.
        pushed: bool,
    },
    /// A call changed state.
    State {
        /// Our handle.
        call: CallHandle,
        /// SIP Call-ID.
        call_id: String,
        /// The new state.
        state: CallState,
    },
    /// Media was negotiated (or renegotiated): start or update the RTP session.
    Media {
        /// Our handle.
        call: CallHandle,
        /// SIP Call-ID.
        call_id: String,
        /// What was agreed.
        media: Negotiated,
    },
    /// The call is over. Exactly one per INVITE that reached us or that we sent.
    Ended {
        /// Our handle.
        call: CallHandle,
        /// SIP Call-ID.
        call_id: String,
        /// The final SIP status sent or received for the INVITE (200 for answered calls).
        status: u16,
        /// Reason text (the reason phrase, `BYE`, `timeout`, ...).
        reason: String,
        /// The outcome.
        outcome: CallOutcome,
    },
    /// The registrar accepted our binding.
    Registered {
        /// Granted lifetime in seconds.
        expires: u32,
    },
    /// Registration failed (final error or a retry is scheduled).
    RegistrationFailed {
        /// Status code (0 for timeout or transport failure).
        status: u16,
        /// Reason.
        reason: String,
    },
    /// The binding was removed (un-REGISTER done).
    Unregistered,
    /// A flow is connected.
    FlowUp {
        /// Which.
        flow: FlowId,
        /// Its remote address.
        remote: SocketAddr,
    },
    /// A flow is gone.
    FlowDown {
        /// Which.
        flow: FlowId,
    },
    /// The peer sent a DTMF digit (RFC 4733 telephone-event). Emitted by the driver's media task.
    Dtmf {
        /// Our handle.
        call: CallHandle,
        /// SIP Call-ID.
        call_id: String,
        /// `0`-`9`, `*`, `#`, `A`-`D`.
        digit: char,
    },
    /// The call's media while it runs, about once a second. Emitted by the driver.
    MediaStats {
        /// Our handle.
        call: CallHandle,
        /// SIP Call-ID.
        call_id: String,
        /// Counters and levels so far.
        snapshot: Box<crate::media::MediaSnapshot>,
    },
    /// The call's media report, emitted by the driver just before the call's `Ended`.
    MediaReport {
        /// Our handle.
        call: CallHandle,
        /// SIP Call-ID.
        call_id: String,
        /// What the media did.
        report: Box<crate::media::MediaReport>,
    },
}

/// What the core asks the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write these bytes to the flow.
    Transmit {
        /// Which flow.
        flow: FlowId,
        /// A whole SIP message, or a keep-alive ping/pong.
        bytes: Vec<u8>,
    },
    /// Open a TCP connection and report it with `handle_flow_up` / `handle_flow_down`.
    Connect {
        /// The id the core gave this flow.
        flow: FlowId,
        /// Host (name or address) to connect to.
        host: String,
        /// Port.
        port: u16,
    },
    /// Close this flow.
    Close {
        /// Which.
        flow: FlowId,
    },
    /// Tell the application.
    Event(Event),
}

/// Errors of application commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// No such call (or it already ended).
    #[error("no such call")]
    NoSuchCall,
    /// The call is not in a state where this command makes sense.
    #[error("invalid in call state: {0}")]
    InvalidState(&'static str),
    /// No account is configured.
    #[error("no account configured")]
    NoAccount,
    /// The target URI cannot be reached (no host, unsupported scheme or transport).
    #[error("bad target: {0}")]
    BadTarget(String),
}

/// Counters of the no-INVITE-lost ledger (see [`SignalingCore::ledger_stats`]).
pub use super::invite::ledger::LedgerStats;

/// Cap of one SIP message on a flow.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// A partial message that makes no progress for this long is dropped with its flow.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an ended call lingers to absorb late retransmissions.
pub const LINGER: Duration = Duration::from_secs(32);

/// What a flow is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlowKind {
    /// The registration (control) flow.
    Control,
    /// Accepted by the driver's listener.
    Accepted,
    /// Connected by us for a direct call, to this host and port.
    Outgoing(String, u16),
}

/// One TCP connection.
pub(crate) struct Flow {
    pub(crate) kind: FlowKind,
    pub(crate) framer: Framer,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) up: bool,
}

/// The signaling user agent, sans-IO.
///
/// Feed it with the `handle_*` methods, then drain [`SignalingCore::poll_output`] and sleep
/// until [`SignalingCore::poll_timeout`].
pub struct SignalingCore {
    pub(crate) config: Config,
    pub(crate) flows: BTreeMap<FlowId, Flow>,
    next_flow: u64,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) client_tx: HashMap<TxKey, ClientTx>,
    pub(crate) server_tx: HashMap<TxKey, ServerTx>,
    pub(crate) calls: BTreeMap<CallHandle, Call>,
    next_call: u64,
    /// Dialog id → call.
    pub(crate) dialogs: HashMap<DialogId, CallHandle>,
    /// UAC Call-ID → call (2xx responses that match no transaction: forks, retransmissions).
    pub(crate) uac_calls: HashMap<String, CallHandle>,
    /// First INVITE per (Call-ID, From tag, CSeq) → its branch and call (merged requests).
    pub(crate) merge_index: HashMap<MergeKey, (String, CallHandle)>,
    pub(crate) ledger: Ledger,
    pub(crate) control: control::Control,
    /// Calls announced by a push whose INVITE has not come yet.
    pub(crate) pushed: BTreeMap<CallHandle, push::Pushed>,
}

impl SignalingCore {
    /// A core with this configuration. Nothing happens until the first `handle_*` call.
    pub fn new(config: Config) -> Self {
        let control = control::Control::new(&config);
        SignalingCore {
            config,
            flows: BTreeMap::new(),
            next_flow: 1,
            outputs: VecDeque::new(),
            client_tx: HashMap::new(),
            server_tx: HashMap::new(),
            calls: BTreeMap::new(),
            next_call: 1,
            dialogs: HashMap::new(),
            uac_calls: HashMap::new(),
            merge_index: HashMap::new(),
            ledger: Ledger::new(),
            control,
            pushed: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of INVITEs in the ledger still waiting for their final response or their `Ended`.
    pub fn ledger_open(&self) -> usize {
        self.ledger.stats().open
    }

    /// The ledger's counters (doubles must stay 0).
    pub fn ledger_stats(&self) -> LedgerStats {
        self.ledger.stats()
    }

    /// Calls not yet removed (ended calls linger for [`LINGER`]).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Dialogs known (including those of lingering ended calls).
    pub fn dialog_count(&self) -> usize {
        self.dialogs.len()
    }

    /// Transactions in the table (client + server).
    pub fn transaction_count(&self) -> usize {
        self.client_tx.len() + self.server_tx.len()
    }

    pub(crate) fn new_flow(&mut self, kind: FlowKind) -> FlowId {
        let id = FlowId(self.next_flow);
        self.next_flow += 1;
        self.flows.insert(
            id,
            Flow {
                kind,
                framer: Framer::new(FramerLimits {
                    max_message: MAX_MESSAGE,
                    stall_timeout: STALL_TIMEOUT,
                }),
                local: None,
                remote: None,
                up: false,
            },
        );
        id
    }

    pub(crate) fn new_call_handle(&mut self) -> CallHandle {
        let h = CallHandle(self.next_call);
        self.next_call += 1;
        h
    }

    /// The driver accepted a connection on its listener; returns the id to use for it.
    pub fn handle_flow_accepted(
        &mut self,
        _now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> FlowId {
        let id = self.new_flow(FlowKind::Accepted);
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

    /// A flow failed to connect, hit EOF, or errored.
    pub fn handle_flow_down(&mut self, now: Instant, flow: FlowId) {
        let Some(f) = self.flows.remove(&flow) else {
            return;
        };
        if f.up {
            self.event(Event::FlowDown { flow });
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
                    self.handle_flow_down(now, flow);
                    return;
                }
            }
        }
        self.drain_control(now);
    }

    fn handle_message(&mut self, now: Instant, flow: FlowId, raw: &[u8]) {
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
                    call_id: key.call_id,
                    status: 400,
                    reason: "Bad Request".into(),
                    outcome: CallOutcome::Failed,
                });
            }
        }
    }

    fn handle_request(&mut self, now: Instant, flow: FlowId, req: Request) {
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
        if req.method == Method::Invite {
            if let Some(lk) = ledger_key(&req) {
                if req
                    .headers
                    .to()
                    .and_then(|t| t.tag().map(str::to_string))
                    .is_none()
                    && self.ledger.seen(&lk)
                {
                    tracing::debug!(?lk, "late retransmission of an INVITE, absorbed");
                    return;
                }
            }
            let tx = ServerInvite::new(req.clone(), now, self.config.timers, reliable());
            self.server_tx.insert(
                key.clone(),
                ServerTx {
                    tx: ServerKind::Invite(tx),
                    flow,
                },
            );
        } else {
            let tx = ServerNonInvite::new(req.clone(), now, self.config.timers, reliable());
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
            _ if has_to_tag => self.in_dialog_request(now, &key, req),
            Method::Invite => self.uas_invite(now, flow, &key, req),
            Method::Options => self.respond(now, &key, &req, 200, None),
            Method::Bye => self.respond(now, &key, &req, 481, None),
            Method::Other(_) => self.respond(now, &key, &req, 501, None),
            _ => self.respond(now, &key, &req, 405, None),
        }
    }

    fn in_dialog_request(&mut self, now: Instant, key: &TxKey, req: Request) {
        let call = Dialog::id_of_request(&req)
            .and_then(|id| self.dialogs.get(&id).copied())
            .filter(|h| self.calls.get(h).is_some_and(|c| c.phase != Phase::Ended));
        let Some(h) = call else {
            self.respond(now, key, &req, 481, None);
            return;
        };
        let seq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let in_order = self
            .calls
            .get_mut(&h)
            .and_then(|c| c.dialog.as_mut())
            .is_some_and(|d| d.check_remote_cseq(seq));
        if !in_order {
            self.respond(now, key, &req, 500, Some(h));
            return;
        }
        match req.method {
            Method::Bye => self.uas_bye(now, h, key, &req),
            Method::Invite => self.uas_reinvite(now, h, key, req),
            Method::Options | Method::Info => self.respond(now, key, &req, 200, Some(h)),
            Method::Other(_) => self.respond(now, key, &req, 501, Some(h)),
            _ => self.respond(now, key, &req, 405, Some(h)),
        }
    }

    /// An ACK that is not for a non-2xx final of ours: the ACK of a 2xx (ours or a re-INVITE's).
    fn handle_ack(&mut self, now: Instant, req: Request) {
        let Some(h) = Dialog::id_of_request(&req).and_then(|id| self.dialogs.get(&id).copied())
        else {
            tracing::debug!("ACK for no dialog, dropped");
            return;
        };
        self.uas_ack(now, h, &req);
    }

    fn handle_response(&mut self, now: Instant, resp: Response) {
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
        // Transactions.
        let due: Vec<TxKey> = self
            .client_tx
            .iter()
            .filter(|(_, t)| client_timeout(t).is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(t) = self.client_tx.get_mut(&key) {
                match &mut t.tx {
                    ClientKind::Invite(tx) => tx.handle_timeout(now),
                    ClientKind::NonInvite(tx) => tx.handle_timeout(now),
                }
            }
            self.drain_client(now, &key);
        }
        let due: Vec<TxKey> = self
            .server_tx
            .iter()
            .filter(|(_, t)| server_timeout(t).is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(t) = self.server_tx.get_mut(&key) {
                match &mut t.tx {
                    ServerKind::Invite(tx) => tx.handle_timeout(now),
                    ServerKind::NonInvite(tx) => tx.handle_timeout(now),
                }
            }
            self.drain_server(now, &key);
        }
        // Framers.
        let stalled: Vec<FlowId> = self
            .flows
            .iter_mut()
            .filter(|(_, f)| f.framer.poll_timeout().is_some_and(|at| at <= now))
            .filter_map(|(id, f)| f.framer.handle_timeout(now).map(|_| *id))
            .collect();
        for flow in stalled {
            tracing::warn!(?flow, "stalled partial message, closing the flow");
            self.outputs.push_back(Output::Close { flow });
            self.handle_flow_down(now, flow);
        }
        // Calls.
        let due: Vec<CallHandle> = self
            .calls
            .values()
            .filter(|c| c.poll_timeout().is_some_and(|at| at <= now))
            .map(|c| c.handle)
            .collect();
        for h in due {
            self.call_timeout(now, h);
        }
        self.control_timeout(now);
        self.push_expire(now);
        self.ledger.expire(now);
        self.drain_control(now);
    }

    /// Start registering (connects the control flow if needed).
    pub fn register(&mut self, now: Instant) -> Result<(), CoreError> {
        self.control_register(now)?;
        self.drain_control(now);
        Ok(())
    }

    /// Remove our binding (Expires: 0).
    pub fn unregister(&mut self, now: Instant) -> Result<(), CoreError> {
        self.control_unregister(now)?;
        self.drain_control(now);
        Ok(())
    }

    /// Place a call; `media` is the local RTP address announced in the SDP offer.
    pub fn call(
        &mut self,
        now: Instant,
        target: Uri,
        media: SocketAddr,
    ) -> Result<CallHandle, CoreError> {
        let h = self.uac_call(now, target, media)?;
        self.drain_control(now);
        Ok(h)
    }

    /// A command for a pushed call without INVITE yet, or a detached call: remembered.
    fn early_command(
        &mut self,
        now: Instant,
        call: CallHandle,
        cmd: Deferred,
    ) -> Option<Result<(), CoreError>> {
        self.push_command(call, cmd)
            .or_else(|| self.defer(now, call, cmd))
    }

    /// Send 180 Ringing for an incoming call.
    ///
    /// For a call pre-created by a push, or one whose control flow is down, this (like
    /// `answer`, `reject`, `hangup`, `hold` and `update_media`) is remembered and done when
    /// the INVITE, or the next control flow, comes.
    pub fn ring(&mut self, now: Instant, call: CallHandle) -> Result<(), CoreError> {
        if let Some(r) = self.early_command(now, call, Deferred::Ring) {
            return r;
        }
        self.uas_ring(now, call)
    }

    /// Answer an incoming call with 200 OK and an SDP answer announcing `media`.
    pub fn answer(
        &mut self,
        now: Instant,
        call: CallHandle,
        media: SocketAddr,
    ) -> Result<(), CoreError> {
        if let Some(r) = self.early_command(now, call, Deferred::Answer(media)) {
            return r;
        }
        self.uas_answer(now, call, media)
    }

    /// Reject an incoming call with a 3xx-6xx status.
    pub fn reject(&mut self, now: Instant, call: CallHandle, status: u16) -> Result<(), CoreError> {
        if !(300..=699).contains(&status) {
            return Err(CoreError::InvalidState("reject needs a 3xx-6xx status"));
        }
        if let Some(r) = self.early_command(now, call, Deferred::Reject(status)) {
            return r;
        }
        self.uas_reject(now, call, status)
    }

    /// End a call: CANCEL before answer (UAC), 603 Decline (UAS unanswered), BYE after.
    pub fn hangup(&mut self, now: Instant, call: CallHandle) -> Result<(), CoreError> {
        if let Some(r) = self.early_command(now, call, Deferred::Hangup) {
            return r;
        }
        self.hangup_now(now, call)
    }

    /// Announce a new local RTP address for a connected call (after a network change) with a
    /// re-INVITE; on success `Event::Media` reports the renegotiated session.
    pub fn update_media(
        &mut self,
        now: Instant,
        call: CallHandle,
        media: SocketAddr,
    ) -> Result<(), CoreError> {
        if let Some(r) = self.early_command(now, call, Deferred::Media(media)) {
            return r;
        }
        self.reinvite_media(now, call, media)
    }

    pub(crate) fn hangup_now(&mut self, now: Instant, call: CallHandle) -> Result<(), CoreError> {
        let role = self
            .calls
            .get(&call)
            .filter(|c| c.phase != Phase::Ended)
            .map(|c| c.role)
            .ok_or(CoreError::NoSuchCall)?;
        match role {
            Role::Uac => self.uac_hangup(now, call),
            Role::Uas => self.uas_hangup(now, call),
        }
    }

    /// Put a call on hold (`true`) or resume it (`false`) with a re-INVITE.
    pub fn hold(&mut self, now: Instant, call: CallHandle, on: bool) -> Result<(), CoreError> {
        if let Some(r) = self.early_command(now, call, Deferred::Hold(on)) {
            return r;
        }
        self.send_reinvite(now, call, on)
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest deadline; call `handle_timeout` then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self
            .client_tx
            .values()
            .filter_map(client_timeout)
            .chain(self.server_tx.values().filter_map(server_timeout));
        let flows = self.flows.values().filter_map(|f| f.framer.poll_timeout());
        let calls = self.calls.values().filter_map(Call::poll_timeout);
        tx.chain(flows)
            .chain(calls)
            .chain(self.control.poll_timeout())
            .chain(self.push_timeout())
            .min()
    }

    // ---- helpers shared by the invite machines -------------------------------------------

    pub(crate) fn event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }

    pub(crate) fn transmit(&mut self, flow: FlowId, bytes: Vec<u8>) {
        if self.flows.get(&flow).is_some_and(|f| f.up) {
            self.outputs.push_back(Output::Transmit { flow, bytes });
        } else {
            tracing::debug!(?flow, "nothing sent: the flow is not up");
        }
    }

    /// The Via sent-by for requests on `flow`.
    pub(crate) fn via(&self, flow: FlowId) -> String {
        let local = self
            .flows
            .get(&flow)
            .and_then(|f| f.local)
            .map(|a| a.to_string())
            .unwrap_or_else(|| "invalid.invalid".into());
        format!("SIP/2.0/TCP {local};branch={};rport", new_branch())
    }

    /// Our Contact for dialogs on `flow`.
    pub(crate) fn contact(&self, flow: FlowId) -> String {
        let f = self.flows.get(&flow);
        let is_control = f.is_some_and(|f| f.kind == FlowKind::Control);
        let addr = if is_control {
            f.and_then(|f| f.local)
        } else {
            self.config.listen.or_else(|| f.and_then(|f| f.local))
        };
        let host = addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "invalid.invalid".into());
        let user = self
            .config
            .account
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_else(|| self.config.local_user.clone());
        let ob = if is_control && self.config.instance_id.is_some() {
            ";ob"
        } else {
            ""
        };
        format!("<sip:{user}@{host};transport=tcp{ob}>")
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

#[cfg(test)]
mod tests {
    /// The origin of the virtual clock (tests only; every later time is origin + offset).
    fn origin() -> std::time::Instant {
        std::time::Instant::now()
    }

    use super::testkit::Pair;
    use super::*;

    fn status_lines(sent: &[Vec<u8>]) -> Vec<String> {
        sent.iter()
            .map(|m| {
                let s = String::from_utf8_lossy(m);
                s.lines().next().unwrap_or_default().to_string()
            })
            .collect()
    }

    fn ended(events: &[Event]) -> Vec<(u16, CallOutcome)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Ended {
                    status, outcome, ..
                } => Some((*status, *outcome)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn full_call_invite_ring_answer_ack_bye() {
        let mut p = Pair::new(Config::default(), Config::default(), origin());
        let call = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
        p.drive();
        let inc = p.b_incoming().expect("incoming");
        p.b.ring(p.now, inc).unwrap();
        p.drive();
        assert!(p.a_events.iter().any(
            |e| matches!(e, Event::State { call: c, state: CallState::Ringing, .. } if *c == call)
        ));
        p.b.answer(p.now, inc, Pair::media(5000)).unwrap();
        p.drive();
        assert!(p.a_events.iter().any(|e| matches!(
            e,
            Event::State {
                state: CallState::Connected,
                ..
            }
        )));
        assert!(p.b_events.iter().any(|e| matches!(
            e,
            Event::State {
                state: CallState::Connected,
                ..
            }
        )));
        assert!(p.a_events.iter().any(|e| matches!(e, Event::Media { .. })));
        assert!(p.b_events.iter().any(|e| matches!(e, Event::Media { .. })));
        p.a.hangup(p.now, call).unwrap();
        p.drive();
        assert_eq!(ended(&p.a_events), vec![(200, CallOutcome::Answered)]);
        assert_eq!(ended(&p.b_events), vec![(200, CallOutcome::Answered)]);
        let a = status_lines(&p.a_sent);
        let b = status_lines(&p.b_sent);
        assert!(a[0].starts_with("INVITE "), "{a:?}");
        assert!(a.iter().any(|l| l.starts_with("ACK ")));
        assert!(a.iter().any(|l| l.starts_with("BYE ")));
        assert_eq!(
            b,
            vec![
                "SIP/2.0 100 Trying",
                "SIP/2.0 180 Ringing",
                "SIP/2.0 200 OK",
                "SIP/2.0 200 OK"
            ]
        );
        assert_eq!(p.b.ledger_open(), 0);
        p.advance(Duration::from_secs(100));
        assert_eq!(p.a.call_count() + p.b.call_count(), 0);
        assert_eq!(p.a.transaction_count() + p.b.transaction_count(), 0);
    }

    fn connected_pair() -> (Pair, CallHandle, CallHandle) {
        let mut p = Pair::new(Config::default(), Config::default(), origin());
        let call = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
        p.drive();
        let inc = p.b_incoming().unwrap();
        p.b.answer(p.now, inc, Pair::media(5000)).unwrap();
        p.drive();
        (p, call, inc)
    }

    #[test]
    fn call_cycles_leave_nothing_behind() {
        let mut p = Pair::new(Config::default(), Config::default(), origin());
        for _ in 0..20 {
            assert!(p.call_cycle());
        }
        assert_eq!(p.a.call_count() + p.b.call_count(), 0);
        assert_eq!(p.a.transaction_count() + p.b.transaction_count(), 0);
        assert_eq!(p.b.ledger_stats().closed, 20);
        assert_eq!(p.a.dialog_count() + p.b.dialog_count(), 0);
        assert!(p.b.merge_index.is_empty() && p.a.uac_calls.is_empty());
    }

    #[test]
    fn cancel_while_ringing_ends_missed_on_both_sides() {
        let mut p = Pair::new(Config::default(), Config::default(), origin());
        let call = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
        p.drive();
        let inc = p.b_incoming().unwrap();
        p.b.ring(p.now, inc).unwrap();
        p.drive();
        p.a.hangup(p.now, call).unwrap();
        p.drive();
        assert_eq!(ended(&p.a_events), vec![(487, CallOutcome::Missed)]);
        assert_eq!(ended(&p.b_events), vec![(487, CallOutcome::Missed)]);
        let b = status_lines(&p.b_sent);
        assert!(
            b.contains(&"SIP/2.0 487 Request Terminated".to_string()),
            "{b:?}"
        );
        assert_eq!(p.b.ledger_open(), 0);
        assert_eq!(
            p.b.answer(p.now, inc, Pair::media(1)),
            Err(CoreError::NoSuchCall)
        );
    }

    #[test]
    fn hangup_before_provisional_waits_for_1xx() {
        let mut p = Pair::new(Config::default(), Config::default(), origin());
        p.b.handle_timeout(p.now); // nothing due
        let call = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
        // Connect, but hold B's responses back: hang up while still Calling.
        p.connected = true;
        while let Some(out) = p.a.poll_output() {
            match out {
                Output::Connect { flow, .. } => {
                    p.a_flow = Some(flow);
                    p.a.handle_flow_up(
                        p.now,
                        flow,
                        testkit::A_ADDR.parse().unwrap(),
                        testkit::B_ADDR.parse().unwrap(),
                    );
                }
                Output::Transmit { bytes, .. } => p.a_sent.push(bytes),
                Output::Event(e) => p.a_events.push(e),
                Output::Close { .. } => {}
            }
        }
        p.a.hangup(p.now, call).unwrap();
        assert!(
            !status_lines(&p.a_sent)
                .iter()
                .any(|l| l.starts_with("CANCEL")),
            "no CANCEL before a provisional"
        );
        // Now deliver the INVITE to B; B's 100 Trying triggers our CANCEL.
        let bf = p.b.handle_flow_accepted(
            p.now,
            testkit::B_ADDR.parse().unwrap(),
            testkit::A_ADDR.parse().unwrap(),
        );
        p.b_flow = Some(bf);
        let invite = p.a_sent[0].clone();
        p.b.handle_received(p.now, bf, &invite);
        p.drive();
        assert!(status_lines(&p.a_sent)
            .iter()
            .any(|l| l.starts_with("CANCEL")));
        assert_eq!(ended(&p.a_events), vec![(487, CallOutcome::Missed)]);
        assert_eq!(ended(&p.b_events), vec![(487, CallOutcome::Missed)]);
    }

    #[test]
    fn busy_second_call_gets_486() {
        let (mut p, _call, _inc) = connected_pair();
        let second = p.a.call(p.now, p.b_uri(), Pair::media(4002)).unwrap();
        p.drive();
        let a_end: Vec<_> = p
            .a_events
            .iter()
            .filter_map(|e| match e {
                Event::Ended {
                    call,
                    status,
                    outcome,
                    ..
                } if *call == second => Some((*status, *outcome)),
                _ => None,
            })
            .collect();
        assert_eq!(a_end, vec![(486, CallOutcome::Busy)]);
        assert_eq!(ended(&p.b_events), vec![(486, CallOutcome::Busy)]);
        assert_eq!(
            p.b_events
                .iter()
                .filter(|e| matches!(e, Event::Incoming { .. }))
                .count(),
            1,
            "no Incoming for the rejected INVITE"
        );
        assert_eq!(p.b.ledger_open(), 1, "only the connected call is open");
    }

    #[test]
    fn reinvite_hold_and_resume() {
        let (mut p, call, _inc) = connected_pair();
        p.a.hold(p.now, call, true).unwrap();
        p.drive();
        assert!(p.a_events.iter().any(|e| matches!(
            e,
            Event::State {
                state: CallState::Held,
                ..
            }
        )));
        assert!(p.b_events.iter().any(|e| matches!(
            e,
            Event::State {
                state: CallState::Held,
                ..
            }
        )));
        let held_media = p.b_events.iter().rev().find_map(|e| match e {
            Event::Media { media, .. } => Some(media.direction),
            _ => None,
        });
        assert_eq!(held_media, Some(crate::signaling::sdp::Direction::RecvOnly));
        p.a.hold(p.now, call, false).unwrap();
        p.drive();
        assert!(p.a_events.iter().any(|e| matches!(
            e,
            Event::State {
                state: CallState::Resumed,
                ..
            }
        )));
        assert!(p.b_events.iter().any(|e| matches!(
            e,
            Event::State {
                state: CallState::Resumed,
                ..
            }
        )));
        let acks = status_lines(&p.a_sent)
            .iter()
            .filter(|l| l.starts_with("ACK"))
            .count();
        assert_eq!(acks, 3);
        assert_eq!(p.b.ledger_stats().opened, 3);
        assert_eq!(p.b.ledger_open(), 1, "only the connected call is open");
        assert!(ended(&p.b_events).is_empty());
    }

    #[test]
    fn reject_ring_timeout_and_timer_b() {
        let cfg = Config {
            ring_timeout: Duration::from_secs(5),
            ..Config::default()
        };
        let mut p = Pair::new(Config::default(), cfg, origin());
        let c1 = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
        p.drive();
        p.advance(Duration::from_secs(6));
        assert_eq!(ended(&p.b_events), vec![(480, CallOutcome::Missed)]);
        assert_eq!(ended(&p.a_events), vec![(480, CallOutcome::Rejected)]);
        let _ = c1;
        let c2 = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
        p.drive();
        let inc = p.b_incoming().unwrap();
        p.b.reject(p.now, inc, 603).unwrap();
        p.drive();
        assert!(p.a_events.iter().any(|e| matches!(e, Event::Ended { call, status: 603, outcome: CallOutcome::Rejected, .. } if *call == c2)));
        // Timer B: the peer never answers.
        p.connected = false;
        let c3 = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
        p.advance(Duration::from_secs(40));
        assert!(p.a_events.iter().any(|e| matches!(e, Event::Ended { call, status: 408, outcome: CallOutcome::Failed, .. } if *call == c3)));
    }

    #[test]
    fn bye_from_callee_and_options_and_unknown_dialog() {
        let (mut p, _call, inc) = connected_pair();
        p.b.hangup(p.now, inc).unwrap();
        p.drive();
        assert_eq!(ended(&p.a_events), vec![(200, CallOutcome::Answered)]);
        assert_eq!(ended(&p.b_events), vec![(200, CallOutcome::Answered)]);
        // A BYE for a dialog that does not exist: 481.
        let bf = p.b_flow.unwrap();
        let bye = "BYE sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bKnope\r\n\
            From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: nope\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n";
        p.b.handle_received(p.now, bf, bye.as_bytes());
        let opt = "OPTIONS sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bKopt\r\n\
            From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        p.b.handle_received(p.now, bf, opt.as_bytes());
        let sub = opt
            .replace("OPTIONS", "SUBSCRIBE")
            .replace("z9hG4bKopt", "z9hG4bKsub");
        p.b.handle_received(p.now, bf, sub.as_bytes());
        let foo = opt
            .replace("OPTIONS", "FOO")
            .replace("z9hG4bKopt", "z9hG4bKfoo");
        p.b.handle_received(p.now, bf, foo.as_bytes());
        p.drive();
        let b = status_lines(&p.b_sent);
        let tail: Vec<_> = b[b.len() - 4..].to_vec();
        assert_eq!(
            tail,
            vec![
                "SIP/2.0 481 Call/Transaction Does Not Exist",
                "SIP/2.0 200 OK",
                "SIP/2.0 405 Method Not Allowed",
                "SIP/2.0 501 Not Implemented"
            ]
        );
        let options_ok = String::from_utf8_lossy(&p.b_sent[p.b_sent.len() - 3]).to_string();
        assert!(options_ok.contains("Allow: INVITE"), "{options_ok}");
        assert!(options_ok.contains("Accept: application/sdp"));
    }

    #[test]
    fn ping_gets_pong_and_framing_error_closes_the_flow() {
        let mut s = testkit::Solo::new(Config::default(), origin());
        let flow = s.flow.unwrap();
        s.feed("\r\n\r\n");
        assert_eq!(s.sent.last().map(Vec::as_slice), Some(&b"\r\n"[..]));
        s.feed("OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\r\n");
        assert!(
            s.flow.is_none(),
            "no Content-Length on a stream: the flow is closed"
        );
        assert!(s.events.contains(&Event::FlowDown { flow }));
    }
}
