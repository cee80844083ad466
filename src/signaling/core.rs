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
//! TODO(helper: core): implement. The types in this file are the contract with the driver.

use super::config::Config;
use super::message::Uri;
use super::sdp::Negotiated;
use std::net::SocketAddr;
use std::time::Instant;

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
        /// The To header value.
        to: String,
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

/// The signaling user agent, sans-IO.
pub struct SignalingCore {
    _config: Config,
}

impl SignalingCore {
    /// A core with this configuration. Nothing happens until the first `handle_*` call.
    pub fn new(config: Config) -> Self {
        SignalingCore { _config: config }
    }

    /// The driver accepted a connection on its listener; returns the id to use for it.
    pub fn handle_flow_accepted(
        &mut self,
        _now: Instant,
        _local: SocketAddr,
        _remote: SocketAddr,
    ) -> FlowId {
        todo!()
    }

    /// A flow asked for with [`Output::Connect`] is connected.
    pub fn handle_flow_up(
        &mut self,
        _now: Instant,
        _flow: FlowId,
        _local: SocketAddr,
        _remote: SocketAddr,
    ) {
        todo!()
    }

    /// A flow failed to connect, hit EOF, or errored.
    pub fn handle_flow_down(&mut self, _now: Instant, _flow: FlowId) {
        todo!()
    }

    /// Bytes arrived on a flow.
    pub fn handle_received(&mut self, _now: Instant, _flow: FlowId, _bytes: &[u8]) {
        todo!()
    }

    /// Call when `now >= poll_timeout()`.
    pub fn handle_timeout(&mut self, _now: Instant) {
        todo!()
    }

    /// Start registering (connects the control flow if needed).
    pub fn register(&mut self, _now: Instant) -> Result<(), CoreError> {
        todo!()
    }

    /// Remove our binding (Expires: 0).
    pub fn unregister(&mut self, _now: Instant) -> Result<(), CoreError> {
        todo!()
    }

    /// Place a call; `media` is the local RTP address announced in the SDP offer.
    pub fn call(
        &mut self,
        _now: Instant,
        _target: Uri,
        _media: SocketAddr,
    ) -> Result<CallHandle, CoreError> {
        todo!()
    }

    /// Send 180 Ringing for an incoming call.
    pub fn ring(&mut self, _now: Instant, _call: CallHandle) -> Result<(), CoreError> {
        todo!()
    }

    /// Answer an incoming call with 200 OK and an SDP answer announcing `media`.
    pub fn answer(
        &mut self,
        _now: Instant,
        _call: CallHandle,
        _media: SocketAddr,
    ) -> Result<(), CoreError> {
        todo!()
    }

    /// Reject an incoming call with a 3xx-6xx status.
    pub fn reject(
        &mut self,
        _now: Instant,
        _call: CallHandle,
        _status: u16,
    ) -> Result<(), CoreError> {
        todo!()
    }

    /// End a call: CANCEL before answer (UAC), reject with 486?-no: 603 (UAS unanswered), BYE after.
    pub fn hangup(&mut self, _now: Instant, _call: CallHandle) -> Result<(), CoreError> {
        todo!()
    }

    /// Put a call on hold (`true`) or resume it (`false`) with a re-INVITE.
    pub fn hold(&mut self, _now: Instant, _call: CallHandle, _on: bool) -> Result<(), CoreError> {
        todo!()
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        todo!()
    }

    /// The earliest deadline; call `handle_timeout` then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
}
