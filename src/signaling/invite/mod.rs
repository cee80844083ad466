//! The invite state machine: one call's life as UAC (`uac.rs`) or UAS (`uas.rs`), and the ledger
//! that proves no INVITE is lost ([`ledger`]).
//!
//! A `Call` holds what one call needs; the transitions live in `uac.rs` and `uas.rs` as methods
//! of the [`SignalingCore`], which owns the flows and the transaction table the calls use.
//!
//! Choices worth knowing:
//! - An INVITE without an SDP body (late offer) is supported: the 200 carries our offer, the ACK
//!   must carry the answer (`Event::Media` comes with the ACK; an ACK without a usable answer
//!   gets a BYE and the call ends `Failed`, status 488).
//! - A re-INVITE without SDP is answered 200 with our current description and the ACK's body is
//!   ignored (this keeps session-refresh re-INVITEs working).
//! - A 2xx we send is re-sent by the call (RFC 3261 §13.3.1.4: after T1, doubling up to T2) until
//!   the ACK comes, even on TCP (a proxy on the path may use UDP); if no ACK arrives within
//!   64·T1 the call sends BYE and ends `Failed` (status 408).
//! - When a flow other than the control flow dies, its calls end at once: an unanswered
//!   incoming call ends `Failed` with status `None` (its final response is recorded as abandoned in
//!   the ledger; we do not open a new connection to the Via address), an answered one ends
//!   `Answered`, reason `flow lost`.
//! - When the control flow dies, ringing incoming calls and confirmed calls survive (see
//!   `core/resilience.rs`): they move to the next control flow, commands wait for it.

pub mod ledger;
pub(crate) mod uac;
pub(crate) mod uas;

use super::core::{CallHandle, CallOutcome, CallState, Event, FlowId, SignalingCore, LINGER};
use super::dialog::Dialog;
use super::message::{HeaderName, Request, Response, Uri};
use super::sdp::{SdpSession, SessionDescription};
use super::transaction::TxKey;
use ledger::LedgerKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Methods we implement (the Allow header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO";
/// Option tags we support (the Supported header; a Require outside this set gets 420).
pub const SUPPORTED: &[&str] = &["outbound"];
/// [`SUPPORTED`] as the Supported header carries it (`SUPPORTED.join(", ")`, checked by a test).
pub(crate) const SUPPORTED_HEADER: &str = "outbound";
/// What we accept as bodies.
pub const ACCEPT: &str = "application/sdp";

/// Which side of the call we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// We sent the INVITE.
    Uac,
    /// We received it.
    Uas,
}

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// UAC: the flow is being connected; the INVITE goes out on `handle_flow_up`.
    WaitFlow,
    /// UAC: INVITE sent, nothing received.
    Calling,
    /// UAC: a provisional response was received.
    Proceeding,
    /// UAS: `Event::Incoming` emitted, no final yet.
    Incoming,
    /// UAS: 2xx sent, waiting for the ACK.
    WaitAck,
    /// The call is up.
    Connected,
    /// BYE sent, waiting for its response.
    Terminating,
    /// `Event::Ended` emitted; the call lingers to absorb late messages.
    Ended,
}

/// Our pending re-INVITE (hold / resume).
#[derive(Debug, Clone)]
pub(crate) struct OurReInvite {
    /// Its client transaction.
    pub key: TxKey,
    /// The offer it carries.
    pub offer: SessionDescription,
    /// Hold (`true`) or resume.
    pub hold: bool,
    /// Given up (no final) at this time: the INVITE client transaction only guards Calling.
    pub give_up_at: Instant,
}

/// The peer's re-INVITE that we are answering.
#[derive(Debug, Clone)]
pub(crate) struct TheirReInvite {
    /// Its server transaction.
    pub key: TxKey,
    /// Its ledger key.
    pub ledger: LedgerKey,
}

/// The UAS core's 2xx retransmission (RFC 3261 §13.3.1.4): every T1, doubling up to T2,
/// until the ACK arrives (or 64·T1 pass and the call gives up).
#[derive(Debug, Clone)]
pub(crate) struct OkRetransmit {
    /// The 2xx as sent (shared with its INVITE server transaction; printed again for each
    /// retransmission, which only a late ACK causes).
    pub response: Arc<Response>,
    /// Next retransmission.
    pub at: Instant,
    /// Current interval.
    pub interval: std::time::Duration,
}

/// RFC 3261 §8.2.2.2 identity of an initial INVITE: Call-ID, From tag, CSeq number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MergeKey {
    /// Call-ID (shared with the INVITE's ledger key).
    pub call_id: Arc<str>,
    /// From tag.
    pub from_tag: Arc<str>,
    /// CSeq number.
    pub cseq: u32,
}

/// One call.
#[derive(Debug)]
pub(crate) struct Call {
    /// Our handle.
    pub handle: CallHandle,
    /// UAC or UAS.
    pub role: Role,
    /// Where it is.
    pub phase: Phase,
    /// Call-ID.
    pub call_id: String,
    /// The flow the call's signaling uses.
    pub flow: FlowId,
    /// The INVITE we sent or received (the last one sent, for a UAC that re-sent with credentials).
    pub invite: Option<std::sync::Arc<Request>>,
    /// The INVITE's transaction key.
    pub invite_key: Option<TxKey>,
    /// Ledger key of an incoming initial INVITE.
    pub ledger: Option<LedgerKey>,
    /// Our tag.
    pub local_tag: String,
    /// The dialog (UAS: from the start; UAC: from the first 2xx).
    pub dialog: Option<Dialog>,
    /// o= state.
    pub sdp: SdpSession,
    /// Our RTP address.
    pub local_media: Option<SocketAddr>,
    /// UAC: our offer; UAS: the peer's offer.
    pub offer: Option<SessionDescription>,
    /// Our last description (offer or answer), re-sent for an SDP-less re-INVITE.
    pub local_sdp: Option<SessionDescription>,
    /// UAC: the target.
    pub target: Option<Uri>,
    /// UAC: hangup before any provisional: CANCEL when the first 1xx comes.
    pub cancel_pending: bool,
    /// UAC: CANCEL sent.
    pub cancelled: bool,
    /// UAC: credentials were sent once.
    pub auth_tried: bool,
    /// UAS: the final status sent for the INVITE.
    pub final_status: Option<u16>,
    /// The last `CallState` reported.
    pub reported: Option<super::core::CallState>,
    /// UAC: the ACK sent for the 2xx (re-sent for retransmitted 2xx).
    pub ack: Option<Vec<u8>>,
    /// Ring timeout (UAS), ACK wait (UAS), CANCEL guard (UAC).
    pub deadline: Option<Instant>,
    /// Removed from the table at this time once ended.
    pub linger_until: Option<Instant>,
    /// Hold state we asked for.
    pub held: bool,
    /// The peer put us on hold.
    pub peer_held: bool,
    /// UAS: this call's entry in the merged-request index.
    pub merge_key: Option<MergeKey>,
    /// UAS: our 2xx, re-sent until the ACK comes (RFC 3261 §13.3.1.4).
    pub ok_retransmit: Option<OkRetransmit>,
    /// UAS: the INVITE had no offer; ours went in the 200 and the answer comes in the ACK.
    pub late_offer: bool,
    /// UAS: the app hung up before the ACK of our 2xx came; BYE once it does (RFC 3261 §15).
    pub bye_after_ack: bool,
    /// Our re-INVITE in progress.
    pub our_reinvite: Option<OurReInvite>,
    /// The peer's re-INVITE in progress.
    pub their_reinvite: Option<TheirReInvite>,
    /// The call's control flow is lost: give up waiting for the next one at this time
    /// (ringing calls, and calls with deferred commands).
    pub detached_until: Option<Instant>,
    /// A confirmed direct call whose connection died: its next in-dialog request of ours opens
    /// a new one (`core/rehome.rs`).
    pub rehome: bool,
    /// Application commands that wait for the next control flow.
    pub deferred: Vec<Deferred>,
}

/// An application command given while the call's control flow is down; applied, in order,
/// once the next control flow is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deferred {
    /// `ring`.
    Ring,
    /// `answer` with this RTP address.
    Answer(SocketAddr),
    /// `reject` with this status.
    Reject(u16),
    /// `hangup`.
    Hangup,
    /// `hold(on)`.
    Hold(bool),
    /// `update_media`.
    Media(SocketAddr),
    /// Our BYE was in flight on the lost flow: send it again.
    Bye,
}

/// At most this many commands wait per call for the next control flow.
pub(crate) const MAX_DEFERRED: usize = 4;

impl Call {
    /// A fresh call.
    pub fn new(
        handle: CallHandle,
        role: Role,
        call_id: String,
        flow: FlowId,
        phase: Phase,
    ) -> Self {
        Call {
            handle,
            role,
            phase,
            call_id,
            flow,
            invite: None,
            invite_key: None,
            ledger: None,
            local_tag: super::message::new_tag(),
            dialog: None,
            sdp: SdpSession::new("-", u64::from(rand::random::<u32>()), 1),
            local_media: None,
            offer: None,
            local_sdp: None,
            target: None,
            cancel_pending: false,
            cancelled: false,
            auth_tried: false,
            final_status: None,
            reported: None,
            ack: None,
            deadline: None,
            linger_until: None,
            held: false,
            peer_held: false,
            bye_after_ack: false,
            late_offer: false,
            ok_retransmit: None,
            merge_key: None,
            our_reinvite: None,
            their_reinvite: None,
            detached_until: None,
            rehome: false,
            deferred: Vec::new(),
        }
    }

    /// Whether the call counts for the busy policy (ringing or up).
    pub fn is_busy(&self) -> bool {
        !matches!(self.phase, Phase::Ended | Phase::Terminating)
    }

    /// The next deadline of this call.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.deadline,
            self.linger_until,
            self.ok_retransmit.as_ref().map(|r| r.at),
            self.our_reinvite.as_ref().map(|r| r.give_up_at),
            self.detached_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// A response to `request` with our tag on To (except for 100), Server, and — on 2xx, 405, 420
/// and OPTIONS — Allow/Supported/Accept as RFC 3261 says.
pub(crate) fn response(
    request: &Request,
    status: u16,
    to_tag: Option<&str>,
    server: &str,
) -> Response {
    let mut r = Response::for_request(request, status);
    if status > 100 {
        if let Some(tag) = to_tag {
            // The To header as received, with our tag appended: a tag is a header parameter
            // whether or not the URI is in angle brackets (§20), so no re-serialization.
            let untagged = request.headers.to().is_some_and(|to| to.tag().is_none());
            if let (true, Some(raw)) = (untagged, request.headers.get(&HeaderName::To)) {
                let mut to = String::with_capacity(raw.len() + 5 + tag.len());
                to.push_str(raw);
                to.push_str(";tag=");
                to.push_str(tag);
                r.headers.set(HeaderName::To, to);
            }
        }
    }
    r.headers.push(HeaderName::Server, server);
    if status == 405 || (200..300).contains(&status) || status == 420 {
        r.headers.push(HeaderName::Allow, ALLOW);
        r.headers.push(HeaderName::Supported, SUPPORTED_HEADER);
    }
    r
}

/// The option tags of Require that we do not support.
pub(crate) fn unsupported(request: &Request) -> Vec<String> {
    request
        .headers
        .tokens(&HeaderName::Require)
        .filter(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .map(str::to_string)
        .collect()
}

/// [`ledger_key`] of an INVITE whose server transaction is `key`: the branch is shared with
/// the transaction key (the same top Via branch), not copied again.
pub(crate) fn ledger_key_of(request: &Request, key: &TxKey) -> Option<LedgerKey> {
    Some(LedgerKey {
        call_id: Arc::from(request.headers.call_id()?),
        cseq: request.headers.cseq()?.seq,
        branch: Arc::clone(&key.branch),
    })
}

/// The ledger key of an INVITE (Call-ID, CSeq number, top Via branch).
pub(crate) fn ledger_key(request: &Request) -> Option<LedgerKey> {
    Some(LedgerKey {
        call_id: Arc::from(request.headers.call_id()?),
        cseq: request.headers.cseq()?.seq,
        branch: Arc::from(request.headers.top_via()?.branch()?),
    })
}

impl SignalingCore {
    /// Emits the one `Ended` of a call and records it in the ledger.
    pub(crate) fn end_call(
        &mut self,
        now: Instant,
        h: CallHandle,
        status: u16,
        reason: &str,
        outcome: CallOutcome,
    ) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if c.phase == Phase::Ended {
            tracing::error!(?h, "second end of a call ignored");
            debug_assert!(false, "second end of call {h:?}");
            return;
        }
        c.phase = Phase::Ended;
        c.deadline = None;
        c.linger_until = Some(now + LINGER);
        // A lingering call only absorbs late messages: what only a live call needs goes now
        // (thousands of calls linger at high call rates). A UAC keeps its INVITE, to ACK and
        // BYE a 2xx that comes too late.
        c.offer = None;
        c.local_sdp = None;
        c.sdp.forget_last();
        if c.role == Role::Uas {
            c.invite = None;
        }
        let call_id = c.call_id.clone();
        if let Some(k) = c.ledger.clone() {
            self.ledger.ended(&k, now);
        }
        self.event(Event::Ended {
            call: h,
            call_id,
            // 0 here: no final response was sent or received.
            status: (status != 0).then_some(status),
            reason: reason.to_string(),
            outcome,
        });
    }

    /// Emits a `State` event when the state changes.
    pub(crate) fn report(&mut self, h: CallHandle, state: CallState) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if c.reported == Some(state) && !matches!(state, CallState::Held | CallState::Resumed) {
            return;
        }
        c.reported = Some(state);
        let call_id = c.call_id.clone();
        self.event(Event::State {
            call: h,
            call_id,
            state,
        });
    }

    pub(crate) fn call_timeout(&mut self, now: Instant, h: CallHandle) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if c.linger_until.is_some_and(|at| at <= now) {
            let c = self.calls.remove(&h);
            if let Some(c) = c {
                if let Some(d) = &c.dialog {
                    if self.dialogs.get(&d.id) == Some(&h) {
                        self.dialogs.remove(&d.id);
                    }
                }
                if self.uac_calls.get(&c.call_id) == Some(&h) {
                    self.uac_calls.remove(&c.call_id);
                }
                if let Some(k) = &c.merge_key {
                    if self
                        .merge_index
                        .get(k)
                        .is_some_and(|(_, owner)| *owner == h)
                    {
                        self.merge_index.remove(k);
                    }
                }
            }
            return;
        }
        if c.phase != Phase::WaitAck {
            c.ok_retransmit = None;
        }
        let t2 = self.config.timers.t2;
        if let Some(r) = c.ok_retransmit.as_mut().filter(|r| r.at <= now) {
            r.interval = (r.interval * 2).min(t2);
            r.at = now + r.interval;
            let (flow, bytes) = (c.flow, r.response.to_bytes());
            self.transmit(flow, bytes);
        }
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if c.our_reinvite.as_ref().is_some_and(|r| r.give_up_at <= now) {
            tracing::warn!(?h, "no final response to our re-INVITE: giving up on it");
            c.our_reinvite = None;
        }
        if c.detached_until.is_some_and(|at| at <= now) {
            c.detached_until = None;
            self.detached_timeout(now, h);
            return;
        }
        let detached_ringing = c.phase == Phase::Incoming && !self.flows.contains_key(&c.flow);
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if c.deadline.is_some_and(|at| at <= now) && detached_ringing {
            // The ring timeout while no flow can carry the 480.
            c.deadline = None;
            self.detached_timeout(now, h);
            return;
        }
        if c.deadline.is_some_and(|at| at <= now) {
            c.deadline = None;
            match (c.role, c.phase) {
                (Role::Uas, Phase::Incoming) => self.uas_ring_timeout(now, h),
                (Role::Uas, Phase::WaitAck) => self.uas_ack_timeout(now, h),
                (Role::Uac, _) => self.uac_guard_timeout(now, h),
                _ => {}
            }
        }
    }

    pub(crate) fn call_flow_lost(&mut self, now: Instant, h: CallHandle) {
        let why = self.flow_cause.clone();
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        match (c.role, c.phase) {
            (_, Phase::Connected) | (_, Phase::Terminating) | (Role::Uas, Phase::WaitAck) => {
                self.end_call(now, h, 200, &why, CallOutcome::Answered)
            }
            (Role::Uas, _) => {
                if c.final_status.is_none() {
                    c.final_status = Some(0);
                    if let Some(k) = c.ledger.clone() {
                        self.ledger.final_abandoned(&k, now);
                    }
                }
                self.end_call(now, h, 0, &why, CallOutcome::Failed)
            }
            (Role::Uac, _) => self.end_call(now, h, 0, &why, CallOutcome::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::message::Message;

    #[test]
    fn supported_header_lists_the_supported_option_tags() {
        assert_eq!(SUPPORTED_HEADER, SUPPORTED.join(", "));
    }

    fn req(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
            Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
            From: <sip:alice@example.com>;tag=aaa\r\n\
            To: <sip:bob@example.com>\r\n\
            Call-ID: call-1\r\n\
            CSeq: 7 INVITE\r\n{extra}\
            Content-Length: 0\r\n\r\n"
        );
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => panic!(),
        }
    }

    #[test]
    fn response_tags_all_but_100() {
        let r = req("");
        let ok = response(&r, 200, Some("ttt"), "wl");
        assert_eq!(ok.headers.to().unwrap().tag(), Some("ttt"));
        assert_eq!(ok.headers.get(&HeaderName::Allow), Some(ALLOW));
        let trying = response(&r, 100, Some("ttt"), "wl");
        assert_eq!(trying.headers.to().unwrap().tag(), None);
    }

    #[test]
    fn the_tag_is_a_header_parameter_whatever_the_form_of_to() {
        // Without angle brackets, parameters after the URI belong to the header (§20.10).
        let text = "INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
            Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
            From: <sip:alice@example.com>;tag=aaa\r\n\
            t: sip:bob@example.com;x=1\r\n\
            Call-ID: call-1\r\n\
            CSeq: 7 INVITE\r\n\
            Content-Length: 0\r\n\r\n";
        let Ok(Message::Request(r)) = Message::parse(text.as_bytes()) else {
            panic!("the INVITE parses");
        };
        let ok = response(&r, 180, Some("ttt"), "wl");
        let to = ok.headers.to().unwrap();
        assert_eq!(to.tag(), Some("ttt"));
        assert_eq!(to.params.get("x"), Some(Some("1")));
        assert_eq!(to.uri.user.as_deref(), Some("bob"));
        assert_eq!(
            to.uri.params.get("tag"),
            None,
            "the tag did not go into the URI"
        );
        // A To that already has a tag is left as it is.
        let tagged = response(&ok_request_with_to_tag(&r), 200, Some("zzz"), "wl");
        assert_eq!(tagged.headers.to().unwrap().tag(), Some("old"));
    }

    fn ok_request_with_to_tag(r: &Request) -> Request {
        let mut r = r.clone();
        r.headers
            .set(HeaderName::To, "<sip:bob@example.com>;tag=old");
        r
    }

    #[test]
    fn require_check_and_ledger_key() {
        let r = req("Require: 100rel, outbound\r\n");
        assert_eq!(unsupported(&r), vec!["100rel".to_string()]);
        let k = ledger_key(&r).unwrap();
        assert_eq!((k.cseq, &*k.branch), (7, "z9hG4bKabc"));
    }
}
