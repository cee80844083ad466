//! Direct calls outlive their connection (RFC 3261 §18.2.2, §12.2; issue 13 finding 5).
//!
//! A dialog is not a connection. When the TCP connection a confirmed direct call was set up
//! on closes (the peer went away, or a framing error made us close it), the call stays:
//!
//! - a request of the peer in the dialog, on whatever new connection, matches the dialog by
//!   Call-ID and tags and the call moves to that connection (`adopt_flow`);
//! - our own in-dialog request (BYE, re-INVITE) opens a new connection to the next hop — the
//!   first route of the dialog's route set, else the remote target (the peer's Contact) —
//!   waits for it in the call's queue of commands (`core/resilience.rs`, bounded by
//!   `Config::flow_grace`), and goes out when it is up (`rehomed`). If that connection cannot
//!   be made the call ends `Failed`.
//!
//! Calls on the control flow are `core/resilience.rs`'s; calls not yet confirmed end as before.

use super::{CallHandle, FlowId, SignalingCore, Transport};
use crate::signaling::invite::Phase;
use crate::signaling::message::{Host, Uri};
use std::time::Instant;

impl SignalingCore {
    /// Whether call `h`, on a direct flow that just died, stays (a confirmed dialog with nothing
    /// in flight whose own reconnection has not already failed).
    pub(crate) fn survives_direct_loss(&self, h: CallHandle) -> bool {
        self.calls
            .get(&h)
            .is_some_and(|c| c.phase == Phase::Connected && !c.rehome && c.dialog.is_some())
    }

    /// Call `h` lost its direct flow and stays: the next in-dialog request either way finds it
    /// a new one.
    pub(crate) fn orphan(&mut self, h: CallHandle) {
        if let Some(c) = self.calls.get_mut(&h) {
            c.rehome = true;
            tracing::info!(
                ?h,
                "connection lost: the call stays, its dialog finds a new one"
            );
        }
    }

    /// A request of the peer in the dialog of call `h` came on `flow`: a call that lost its
    /// connection lives on this one now.
    pub(crate) fn adopt_flow(&mut self, h: CallHandle, flow: FlowId) {
        let flows = &self.flows;
        if let Some(c) = self.calls.get_mut(&h) {
            if c.rehome && !flows.contains_key(&c.flow) {
                c.flow = flow;
                c.rehome = false;
                tracing::info!(?h, ?flow, "the call moved to the peer's new connection");
            }
        }
    }

    /// Whether a command on call `h` must wait: it lost its connection (a new one is opened to
    /// the next hop now, once) or that new one is not up yet.
    pub(crate) fn needs_new_flow(&mut self, h: CallHandle) -> bool {
        let Some(c) = self.calls.get(&h).filter(|c| c.rehome) else {
            return false;
        };
        if self.flows.contains_key(&c.flow) {
            return true; // connecting
        }
        let Some(hop) = c
            .dialog
            .as_ref()
            .map(|d| d.route_set.first().map_or(&d.remote_target, |r| &r.uri))
            .cloned()
        else {
            return false;
        };
        let flow = self.flow_to(&hop);
        let up = self.flows.get(&flow).is_some_and(|f| f.up);
        if let Some(c) = self.calls.get_mut(&h) {
            c.flow = flow;
            c.rehome = !up; // an existing connection to the next hop serves at once
        }
        tracing::info!(?h, %hop, ?flow, "in-dialog request: connecting to the next hop");
        !up
    }

    /// A flow (existing or new) to the host and port of `uri`, over its transport.
    fn flow_to(&mut self, uri: &Uri) -> FlowId {
        let transport =
            Transport::for_uri(uri, Transport::Tcp).unwrap_or(self.config.default_transport);
        let host = match &uri.host {
            Host::Domain(d) => d.clone(),
            Host::V4(a) => a.to_string(),
            Host::V6(a) => a.to_string(),
        };
        self.direct_flow(&host, uri.port.unwrap_or(5060), transport)
    }

    /// `flow` is up: calls that waited for it as their new connection run their queued
    /// commands on it.
    pub(crate) fn rehomed(&mut self, now: Instant, flow: FlowId) {
        let waiting: Vec<CallHandle> = self
            .calls
            .values()
            .filter(|c| c.rehome && c.flow == flow && c.phase != Phase::Ended)
            .map(|c| c.handle)
            .collect();
        for h in waiting {
            if let Some(c) = self.calls.get_mut(&h) {
                c.rehome = false;
                c.detached_until = None;
            }
            self.run_deferred(now, h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{ended_of as ended, Pair};
    use super::super::{CallHandle, CallOutcome};
    use crate::signaling::config::Config;
    use std::time::{Duration, Instant};

    fn origin() -> Instant {
        Instant::now()
    }

    /// A direct call A → B, answered and ACKed; returns (A's handle, B's handle).
    fn connected(p: &mut Pair) -> (CallHandle, CallHandle) {
        let a = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
        p.drive();
        let b = p.b_incoming().unwrap();
        p.b.answer(p.now, b, Pair::media(5000)).unwrap();
        p.drive();
        (a, b)
    }

    fn requests(sent: &[Vec<u8>], method: &str) -> usize {
        sent.iter()
            .filter(|m| m.starts_with(format!("{method} ").as_bytes()))
            .count()
    }

    #[test]
    fn callee_hangs_up_over_a_new_connection_to_the_callers_contact() {
        let mut p = Pair::new(Config::default(), Config::default(), origin());
        let (_, b) = connected(&mut p);
        p.drop_connection();
        assert!(ended(&p.a_events).is_empty() && ended(&p.b_events).is_empty());
        p.b_can_connect = true;
        p.b.hangup(p.now, b).unwrap();
        p.drive();
        assert_eq!(requests(&p.b_sent, "BYE"), 1);
        assert_eq!(ended(&p.a_events), vec![(200, CallOutcome::Answered)]);
        assert_eq!(ended(&p.b_events), vec![(200, CallOutcome::Answered)]);
    }

    #[test]
    fn callers_bye_on_a_new_connection_matches_the_dialog() {
        let mut p = Pair::new(Config::default(), Config::default(), origin());
        let (a, _) = connected(&mut p);
        p.drop_connection();
        p.a.hangup(p.now, a).unwrap();
        p.drive();
        // The BYE reached B on the new connection and got 200, not 481.
        assert!(p
            .b_sent
            .iter()
            .any(|m| m.starts_with(b"SIP/2.0 200") && String::from_utf8_lossy(m).contains(" BYE")));
        assert_eq!(ended(&p.a_events), vec![(200, CallOutcome::Answered)]);
        assert_eq!(ended(&p.b_events), vec![(200, CallOutcome::Answered)]);
    }

    #[test]
    fn a_framing_error_closes_the_connection_not_the_call() {
        let mut p = Pair::new(Config::default(), Config::default(), origin());
        let (_, b) = connected(&mut p);
        let bf = p.b_flow.unwrap();
        p.b.handle_received(p.now, bf, b"OPTIONS sip:x SIP/2.0\r\nCall-ID: z\r\n\r\n");
        p.drive();
        assert!(ended(&p.b_events).is_empty(), "{:?}", p.b_events);
        // The caller notices the close; its later BYE finds the call.
        p.drop_connection();
        p.b_can_connect = true;
        p.b.hangup(p.now, b).unwrap();
        p.drive();
        assert_eq!(ended(&p.b_events), vec![(200, CallOutcome::Answered)]);
        assert_eq!(ended(&p.a_events), vec![(200, CallOutcome::Answered)]);
    }

    #[test]
    fn an_unreachable_next_hop_ends_the_call_once() {
        let mut p = Pair::new(Config::default(), Config::default(), origin());
        let (_, b) = connected(&mut p);
        p.drop_connection();
        p.b.hangup(p.now, b).unwrap(); // B cannot connect: refused
        p.advance(Duration::from_secs(60));
        assert_eq!(ended(&p.b_events).len(), 1, "{:?}", p.b_events);
        assert_eq!(requests(&p.b_sent, "BYE"), 0);
    }
}
