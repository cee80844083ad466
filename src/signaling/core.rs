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
//! (`core/control.rs`). A flow is a TCP connection or, over UDP, the pair (our UDP socket,
//! the peer's address) (`core/udp.rs`); transactions on a UDP flow are unreliable, so timers
//! A, E and G retransmit.
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
#[cfg(any(test, feature = "testkit"))]
pub(crate) use control::control_transport;
mod background;
mod commands;
mod deadlines;
pub(crate) mod fasthash;
mod flowuse;
mod inbound;
mod info;
pub use info::dtmf_relay_body;
mod push;
mod raw400;
mod rehome;
mod resilience;
#[cfg(any(test, feature = "testkit"))]
#[doc(hidden)]
pub mod testkit;
mod transactions;
mod types;
mod udp;

pub use types::{CallHandle, CallOutcome, CallState, CoreError, Event, FlowId, Output};
pub use udp::UdpStats;

pub use super::transport::Transport;

pub(crate) use transactions::{
    client_timeout, server_timeout, ClientKind, ClientTx, ServerKind, ServerTx, TxOwner,
};

use super::config::Config;
use super::dialog::DialogId;
use super::framing::{Framer, FramerLimits};
use super::invite::ledger::Ledger;
use super::invite::{Call, MergeKey};
use super::message::new_branch;
use super::transaction::TxKey;
use deadlines::Timed;
use fasthash::FastMap;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

/// One TCP connection, or one UDP peer address seen from our UDP socket.
pub(crate) struct Flow {
    pub(crate) kind: FlowKind,
    pub(crate) transport: Transport,
    pub(crate) framer: Framer,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) up: bool,
}

/// The stall deadline of a flow's framer.
fn flow_timeout(f: &Flow) -> Option<Instant> {
    f.framer.poll_timeout()
}

/// The signaling user agent, sans-IO.
///
/// Feed it with the `handle_*` methods, then drain [`SignalingCore::poll_output`] and sleep
/// until [`SignalingCore::poll_timeout`].
pub struct SignalingCore {
    pub(crate) config: Config,
    /// Flows, with the framers' stall timers in a deadline queue (`core/deadlines.rs`).
    pub(crate) flows: Timed<BTreeMap<FlowId, Flow>>,
    next_flow: u64,
    pub(crate) outputs: VecDeque<Output>,
    /// Client transactions, with their Timer A, B, D, E, F, K in a deadline queue.
    pub(crate) client_tx: Timed<FastMap<TxKey, ClientTx>>,
    /// Server transactions, with their Timer G, H, I, J in a deadline queue.
    pub(crate) server_tx: Timed<FastMap<TxKey, ServerTx>>,
    /// Calls, with their deadlines (ring timeout, 2xx retransmission, linger…) in a queue.
    /// Boxed: ended calls linger by the thousand at high call rates, and the map's nodes move
    /// their values as it grows and shrinks.
    pub(crate) calls: Timed<BTreeMap<CallHandle, Box<Call>>>,
    next_call: u64,
    /// This core's id, in each of its [`CallHandle`]s (unique in the process).
    id: u32,
    /// Dialog id → call.
    pub(crate) dialogs: FastMap<DialogId, CallHandle>,
    /// UAC Call-ID → call (2xx responses that match no transaction: forks, retransmissions).
    pub(crate) uac_calls: FastMap<String, CallHandle>,
    /// First INVITE per (Call-ID, From tag, CSeq) → its branch and call (merged requests).
    pub(crate) merge_index: FastMap<MergeKey, (std::sync::Arc<str>, CallHandle)>,
    pub(crate) ledger: Ledger,
    pub(crate) control: control::Control,
    /// Calls announced by a push whose INVITE has not come yet.
    pub(crate) pushed: BTreeMap<CallHandle, push::Pushed>,
    /// Datagrams taken and dropped.
    pub(crate) udp_stats: UdpStats,
    /// Why the last flow went down (`flow lost: EOF`, `connect 192.0.2.1:5060: timed out`):
    /// the reason of the calls and registration attempts that loss ends.
    pub(crate) flow_cause: String,
    /// The events of a server transaction being drained (kept between drains: no allocation
    /// per response).
    pub(crate) server_events: Vec<crate::signaling::transaction::TxEvent>,
    /// Tests and the before/after bench: find deadlines by scanning every table, as before
    /// the deadline queues.
    #[cfg(any(test, feature = "testkit"))]
    scan_timers: bool,
}

/// A process-wide unique id for a new core (0 is never given: detached test handles use it).
fn next_core_id() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// [`Call::poll_timeout`] for the boxed calls of the call table (its value type).
#[allow(clippy::borrowed_box)]
fn boxed_call_timeout(c: &Box<Call>) -> Option<Instant> {
    c.poll_timeout()
}

/// [`Call::is_busy`] for the boxed calls of the call table.
#[allow(clippy::borrowed_box)]
fn boxed_call_busy(c: &Box<Call>) -> bool {
    c.is_busy()
}

impl SignalingCore {
    /// A core with this configuration. Nothing happens until the first `handle_*` call.
    pub fn new(config: Config) -> Self {
        let control = control::Control::new(&config);
        SignalingCore {
            config,
            flows: Timed::new(BTreeMap::new(), flow_timeout),
            next_flow: 1,
            outputs: VecDeque::new(),
            client_tx: Timed::new(FastMap::default(), client_timeout),
            server_tx: Timed::new(FastMap::default(), server_timeout),
            calls: Timed::new(BTreeMap::new(), boxed_call_timeout).with_tally(boxed_call_busy),
            next_call: 1,
            id: next_core_id(),
            dialogs: FastMap::default(),
            uac_calls: FastMap::default(),
            merge_index: FastMap::default(),
            ledger: Ledger::new(),
            control,
            pushed: BTreeMap::new(),
            udp_stats: UdpStats::default(),
            flow_cause: "flow lost".into(),
            server_events: Vec::new(),
            #[cfg(any(test, feature = "testkit"))]
            scan_timers: false,
        }
    }

    /// This core's id, unique in the process; every [`CallHandle`] it makes carries it.
    pub fn id(&self) -> u32 {
        self.id
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

    pub(crate) fn new_flow(&mut self, kind: FlowKind, transport: Transport) -> FlowId {
        let id = FlowId(self.next_flow);
        self.next_flow += 1;
        self.flows.insert(
            id,
            Flow {
                kind,
                transport,
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
        let h = CallHandle::new(self.id, self.next_call);
        self.next_call += 1;
        h
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest deadline; call `handle_timeout` then.
    ///
    /// O(log n) in the live transactions, flows and calls (each table keeps a deadline queue,
    /// `core/deadlines.rs`); the control flow's and pushed calls' timers are few and read
    /// directly.
    pub fn poll_timeout(&self) -> Option<Instant> {
        #[cfg(any(test, feature = "testkit"))]
        if self.scan_timers {
            return self.poll_timeout_by_scan();
        }
        let next = [
            self.client_tx.next_deadline(),
            self.server_tx.next_deadline(),
            self.flows.next_deadline(),
            self.calls.next_deadline(),
            self.control.poll_timeout(),
            self.push_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        // Every test build (unit tests, and the integration tests' testkit in debug) checks
        // the queues against a scan.
        #[cfg(any(test, feature = "testkit"))]
        debug_assert_eq!(next, self.poll_timeout_by_scan(), "deadline queue != scan");
        next
    }

    /// Tests and benches: `true` makes [`SignalingCore::poll_timeout`] and
    /// [`SignalingCore::handle_timeout`] scan every table as they did before the deadline
    /// queues (the reference the queues must match, and the "before" of the bench).
    #[cfg(any(test, feature = "testkit"))]
    #[doc(hidden)]
    pub fn set_scan_timers(&mut self, on: bool) {
        self.scan_timers = on;
    }

    /// The earliest deadline by a scan of every table (see [`SignalingCore::set_scan_timers`]).
    #[cfg(any(test, feature = "testkit"))]
    #[doc(hidden)]
    pub fn poll_timeout_by_scan(&self) -> Option<Instant> {
        [
            self.client_tx.scan_deadline(),
            self.server_tx.scan_deadline(),
            self.flows.scan_deadline(),
            self.calls.scan_deadline(),
            self.control.poll_timeout(),
            self.push_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// How many calls other than `h` count for the busy policy (ringing or up), in
    /// O(touched) rather than a scan of every call, lingering ones included.
    pub(crate) fn busy_calls_except(&self, h: CallHandle) -> usize {
        let (busy, counted) = self.calls.tally(&h);
        let n = busy - usize::from(counted);
        #[cfg(any(test, feature = "testkit"))]
        debug_assert_eq!(
            n,
            self.calls
                .values()
                .filter(|c| c.handle != h && c.is_busy())
                .count()
        );
        n
    }

    /// The due keys of `table` at `now`: from its deadline queue, or by a scan in tests that
    /// ask for it.
    pub(crate) fn due<M: deadlines::Table>(&self, table: &Timed<M>, now: Instant) -> Vec<M::K> {
        #[cfg(any(test, feature = "testkit"))]
        if self.scan_timers {
            table.forget();
            return table.scan_due(now);
        }
        table.due(now)
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
        format!(
            "SIP/2.0/{} {local};branch={};rport",
            self.flow_transport(flow).via_token(),
            new_branch()
        )
    }

    /// Our Contact for dialogs on `flow`.
    pub(crate) fn contact(&self, flow: FlowId) -> String {
        self.contact_for(flow, false)
    }

    /// Our Contact on `flow` for a dialog whose request was to a `sips:` URI (`sips`): then a
    /// TLS flow gets a `sips:` Contact (RFC 5630 §3.1.3), as does the control flow of a `sips:`
    /// registrar.
    pub(crate) fn contact_for(&self, flow: FlowId, sips: bool) -> String {
        let f = self.flows.get(&flow);
        let is_control = f.is_some_and(|f| f.kind == FlowKind::Control);
        let transport = self.flow_transport(flow);
        // TLS flows announce the TLS listener, others the TCP/UDP one.
        let listen = match transport {
            Transport::Tls => self.config.tls_listen,
            _ => self.config.listen,
        };
        let accepted_tls =
            transport == Transport::Tls && f.is_some_and(|f| f.kind == FlowKind::Accepted);
        let public = self
            .public_addr()
            .filter(|_| is_control && transport == Transport::Udp);
        let addr = if public.is_some() {
            // Behind NAT over UDP: the address the registrar saw (RFC 3581).
            public
        } else if is_control || accepted_tls {
            // An accepted TLS flow's local address is the TLS listener's own.
            f.and_then(|f| f.local)
        } else {
            // A wildcard listener announces the address the flow reached us on.
            let flow_local = f.and_then(|f| f.local);
            match listen {
                Some(l) if l.ip().is_unspecified() => {
                    flow_local.map(|a| SocketAddr::new(a.ip(), l.port()))
                }
                Some(l) => Some(l),
                None => flow_local,
            }
        };
        let user = match &self.config.account {
            Some(a) => a.user.as_str(),
            None => self.config.local_user.as_str(),
        };
        let ob = if is_control && self.config.instance_id.is_some() {
            ";ob"
        } else {
            ""
        };
        // Written into one buffer: this runs for every 1xx/2xx of every call.
        let mut contact = String::with_capacity(80);
        // Other TLS flows say `transport=tls`.
        let sips_contact =
            transport == Transport::Tls && (sips || is_control && self.control_is_sips());
        contact.push_str(if sips_contact { "<sips:" } else { "<sip:" });
        contact.push_str(user);
        contact.push('@');
        match addr {
            Some(a) => addr::push_socket_addr(&mut contact, a),
            None => contact.push_str("invalid.invalid"),
        }
        if !sips_contact {
            contact.push_str(";transport=");
            contact.push_str(transport.param());
        }
        contact.push_str(ob);
        contact.push('>');
        contact
    }

    /// Whether the account's control-flow target (proxy, else registrar) is a `sips:` URI.
    fn control_is_sips(&self) -> bool {
        self.config.account.as_ref().is_some_and(|a| {
            a.proxy.as_ref().unwrap_or(&a.registrar).scheme
                == crate::signaling::message::Scheme::Sips
        })
    }

    /// The SRTP policy for a call on `flow`: [`Config::srtp_tls`] when the flow is TLS (and
    /// it is set), [`Config::srtp`] otherwise.
    pub(crate) fn srtp_policy_on(&self, flow: FlowId) -> crate::signaling::sdp::SrtpPolicy {
        match (self.flow_transport(flow), self.config.srtp_tls) {
            (Transport::Tls, Some(p)) => p,
            _ => self.config.srtp,
        }
    }

    /// The transport of `flow` (TCP for an unknown flow).
    pub(crate) fn flow_transport(&self, flow: FlowId) -> Transport {
        self.flows
            .get(&flow)
            .map(|f| f.transport)
            .unwrap_or_default()
    }

    /// Whether transactions on `flow` run on a reliable transport (RFC 3261 §17).
    pub(crate) fn reliable(&self, flow: FlowId) -> bool {
        self.flow_transport(flow).is_reliable()
    }
}

#[cfg(test)]
mod tests;
