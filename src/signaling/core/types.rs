//! The core's vocabulary for the driver and the application: ids, call states, outcomes,
//! events, outputs and command errors.

use crate::signaling::sdp::Negotiated;
use std::net::SocketAddr;

/// Identifies one flow (RFC 5626): a TCP connection, or a UDP peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

/// Identifies one call (one INVITE dialog attempt) for the application: opaque, and unique per
/// user agent (it carries the id of the core that made it, so a handle from one user agent
/// never names a call of another). Prints as `#N` (`{:?}`: `CallHandle(#N of core C)`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle {
    /// The [`SignalingCore::id`](super::SignalingCore::id) of the core that made it.
    core: u32,
    /// The call's number within that core: 1, 2, ...
    number: u64,
}

impl CallHandle {
    pub(crate) fn new(core: u32, number: u64) -> Self {
        CallHandle { core, number }
    }

    /// The call's number within its user agent (1 for the first call, then 2, ...): for logs,
    /// file names and bindings that carry a plain number.
    pub fn number(self) -> u64 {
        self.number
    }

    /// The id of the core (user agent) that made this handle.
    pub fn core(self) -> u32 {
        self.core
    }

    /// A handle of no real core (id 0) for tests that build events by hand.
    #[cfg(any(test, feature = "testkit"))]
    pub fn testing(number: u64) -> Self {
        CallHandle { core: 0, number }
    }
}

impl std::fmt::Display for CallHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.number)
    }
}

impl std::fmt::Debug for CallHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallHandle(#{} of core {})", self.number, self.core)
    }
}

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
#[non_exhaustive]
pub enum CallOutcome {
    /// The call was answered and later ended by BYE (either side).
    Answered,
    /// Rejected (by us or the peer) with a 3xx-6xx other than busy.
    Rejected,
    /// 486 / 600 (or our busy policy).
    Busy,
    /// Not answered: the caller's CANCEL reached us, or we did not answer in time.
    Missed,
    /// We gave up on our own call before it was answered (our CANCEL, `hangup` while ringing).
    Cancelled,
    /// A 401/407 challenge we could not answer (no or wrong credentials).
    AuthFailed,
    /// Timeout, transport failure, malformed request, no common codec, ...
    Failed,
}

/// What the core tells the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A new incoming call; answer with
    /// [`SignalingCore::answer`](super::SignalingCore::answer) or reject.
    Incoming {
        /// Our handle.
        call: CallHandle,
        /// SIP Call-ID.
        call_id: String,
        /// The From header value.
        from: String,
        /// The To header value (empty for a call announced by a push).
        to: String,
        /// Announced by [`SignalingCore::handle_push`](super::SignalingCore::handle_push)
        /// before its INVITE came; the INVITE will be bound to this handle without another
        /// `Incoming`.
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
        /// The final SIP status sent or received for the INVITE (200 for answered calls);
        /// `None` when there was none (a timeout, a lost flow, a push whose INVITE never came).
        status: Option<u16>,
        /// Reason text (the reason phrase, `BYE`, `timeout`, ...).
        reason: String,
        /// The outcome.
        outcome: CallOutcome,
    },
    /// The registrar accepted our binding.
    Registered {
        /// Granted lifetime in seconds.
        expires: u32,
        /// Over UDP behind NAT: the public address the registrar saw (RFC 3581 `received`/
        /// `rport`) and our Contact names; `None` when it is the flow's own address.
        public_addr: Option<std::net::SocketAddr>,
    },
    /// Registration failed (final error or a retry is scheduled).
    RegistrationFailed {
        /// Status code (0 for timeout or transport failure).
        status: u16,
        /// Reason: the reason phrase, or the transport's cause (`connect 192.0.2.1:5060:
        /// connection refused`).
        reason: String,
        /// When the core tries again by itself (`None`: it waits for something else, such as
        /// the next flow).
        retry_in: Option<std::time::Duration>,
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
        /// Why, as the driver saw it (`EOF`, `read: connection reset by peer`, ...).
        cause: String,
    },
    /// The peer sent a DTMF digit: an RFC 4733 telephone-event (emitted by the driver's media
    /// task) or a SIP INFO with `application/dtmf-relay` or `application/dtmf` (by the core).
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
    /// Open a flow and report it with `handle_flow_up` / `handle_flow_down`: over TCP a
    /// connection; over UDP, resolve the peer, make sure a UDP socket is there, and report our
    /// address toward it (`handle_flow_up` with the routed local address).
    Connect {
        /// The id the core gave this flow.
        flow: FlowId,
        /// TCP or UDP.
        transport: super::Transport,
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
#[non_exhaustive]
pub enum CoreError {
    /// No such call (or it already ended).
    #[error("no such call")]
    NoSuchCall,
    /// The handle was made by another user agent (core): it names no call of this one.
    #[error("unknown call {0}: its handle belongs to another user agent")]
    UnknownCall(CallHandle),
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
