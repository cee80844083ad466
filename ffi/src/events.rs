//! What the user agent reports, as foreign-friendly records, and the listener that receives it.

use wakeline::Event;

/// Receives the user agent's events, in order, on one thread of the user agent's own
/// (never the thread that created it). It may call back into the user agent.
#[uniffi::export(callback_interface)]
pub trait EventListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: CallEvent);
}

/// Where a call is (see `wakeline::CallState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CallState {
    /// INVITE sent.
    Calling,
    /// 100 Trying received.
    Proceeding,
    /// 180/183 received, or 180 sent.
    Ringing,
    /// Answered and acknowledged.
    Connected,
    /// On hold.
    Held,
    /// Taken off hold.
    Resumed,
    /// We are hanging up.
    Terminating,
}

/// How a call ended (see `wakeline::CallOutcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CallOutcome {
    /// It was answered (and has now ended).
    Answered,
    /// Refused by the far end or by us.
    Rejected,
    /// The far end was busy.
    Busy,
    /// Cancelled by the far end, or not answered in time.
    Missed,
    /// We cancelled it before an answer.
    Cancelled,
    /// A 401/407 challenge we could not pass.
    AuthFailed,
    /// A transport or protocol failure.
    Failed,
}

/// One event. `call` is the call's handle number ([`Call::id`](crate::Call::id)); `sip_call_id`
/// is its SIP Call-ID (what a push payload names).
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum CallEvent {
    /// A new incoming call (`pushed`: created by `handle_push` before its INVITE).
    Incoming {
        /// The call's handle.
        call: u64,
        /// Its SIP Call-ID.
        sip_call_id: String,
        /// The caller.
        from: String,
        /// Whom it is for.
        to: String,
        /// Created from a push notification.
        pushed: bool,
    },
    /// The call's state changed.
    State {
        /// The call's handle.
        call: u64,
        /// The new state.
        state: CallState,
    },
    /// Media was negotiated (audio starts).
    Media {
        /// The call's handle.
        call: u64,
        /// The codec's name.
        codec: String,
        /// Where our RTP goes.
        remote_rtp: String,
    },
    /// The far end sent a DTMF digit.
    Dtmf {
        /// The call's handle.
        call: u64,
        /// `0-9*#A-D`.
        digit: String,
    },
    /// About once a second while media runs.
    MediaStats {
        /// The call's handle.
        call: u64,
        /// RTP packets sent so far.
        rtp_sent: u64,
        /// RTP packets received so far.
        rtp_received: u64,
        /// Our input level (0..1).
        input_level: f32,
        /// The far end's level as played (0..1).
        output_level: f32,
    },
    /// The media summary, just before `Ended`.
    MediaReport {
        /// The call's handle.
        call: u64,
        /// RTP packets sent.
        rtp_sent: u64,
        /// RTP packets received.
        rtp_received: u64,
        /// How long media ran.
        duration_ms: u64,
        /// Why media failed, if it did.
        error: Option<String>,
    },
    /// The call is over (exactly once per call).
    Ended {
        /// The call's handle.
        call: u64,
        /// The final SIP status (none: no final response was sent or received).
        status: Option<u16>,
        /// Its reason phrase or the local cause.
        reason: String,
        /// How it ended.
        outcome: CallOutcome,
    },
    /// Registered for `expires` seconds.
    Registered {
        /// The granted lifetime.
        expires: u32,
    },
    /// A registration attempt failed.
    RegistrationFailed {
        /// The status (0: no response).
        status: u16,
        /// Why.
        reason: String,
        /// When the next attempt goes out, in seconds (none: no retry).
        retry_in_s: Option<f64>,
    },
    /// The binding was removed.
    Unregistered,
    /// A TCP flow came up.
    FlowUp {
        /// The peer's address.
        remote: String,
    },
    /// A TCP flow went down.
    FlowDown {
        /// Why, as the transport saw it.
        cause: String,
    },
}

fn state(s: wakeline::CallState) -> CallState {
    use wakeline::CallState as S;
    match s {
        S::Calling => CallState::Calling,
        S::Proceeding => CallState::Proceeding,
        S::Ringing => CallState::Ringing,
        S::Connected => CallState::Connected,
        S::Held => CallState::Held,
        S::Resumed => CallState::Resumed,
        S::Terminating => CallState::Terminating,
    }
}

fn outcome(o: wakeline::CallOutcome) -> CallOutcome {
    use wakeline::CallOutcome as O;
    match o {
        O::Answered => CallOutcome::Answered,
        O::Rejected => CallOutcome::Rejected,
        O::Busy => CallOutcome::Busy,
        O::Missed => CallOutcome::Missed,
        O::Cancelled => CallOutcome::Cancelled,
        O::AuthFailed => CallOutcome::AuthFailed,
        // Failed, and whatever a later wakeline adds (the enum is non-exhaustive).
        _ => CallOutcome::Failed,
    }
}

impl CallEvent {
    /// The foreign-side form of `e`; `None` for an event this binding does not know yet
    /// (`wakeline::Event` is non-exhaustive).
    pub(crate) fn of(e: Event) -> Option<CallEvent> {
        Some(match e {
            Event::Incoming {
                call,
                call_id,
                from,
                to,
                pushed,
            } => CallEvent::Incoming {
                call: call.number(),
                sip_call_id: call_id,
                from,
                to,
                pushed,
            },
            Event::State { call, state: s, .. } => CallEvent::State {
                call: call.number(),
                state: state(s),
            },
            Event::Media { call, media, .. } => CallEvent::Media {
                call: call.number(),
                codec: format!("{:?}", media.codec),
                remote_rtp: media.remote_rtp.to_string(),
            },
            Event::Dtmf { call, digit, .. } => CallEvent::Dtmf {
                call: call.number(),
                digit: digit.to_string(),
            },
            Event::MediaStats { call, snapshot, .. } => CallEvent::MediaStats {
                call: call.number(),
                rtp_sent: snapshot.stats.rtp_sent,
                rtp_received: snapshot.stats.rtp_received,
                input_level: snapshot.input_level,
                output_level: snapshot.output_level,
            },
            Event::MediaReport { call, report, .. } => CallEvent::MediaReport {
                call: call.number(),
                rtp_sent: report.stats.as_ref().map_or(0, |s| s.rtp_sent),
                rtp_received: report.stats.as_ref().map_or(0, |s| s.rtp_received),
                duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
                error: report.error.clone(),
            },
            Event::Ended {
                call,
                status,
                reason,
                outcome: o,
                ..
            } => CallEvent::Ended {
                call: call.number(),
                status,
                reason,
                outcome: outcome(o),
            },
            Event::Registered { expires, .. } => CallEvent::Registered { expires },
            Event::RegistrationFailed {
                status,
                reason,
                retry_in,
            } => CallEvent::RegistrationFailed {
                status,
                reason,
                retry_in_s: retry_in.map(|d| d.as_secs_f64()),
            },
            Event::Unregistered => CallEvent::Unregistered,
            Event::FlowUp { remote, .. } => CallEvent::FlowUp {
                remote: remote.to_string(),
            },
            Event::FlowDown { cause, .. } => CallEvent::FlowDown { cause },
            _ => return None,
        })
    }
}
