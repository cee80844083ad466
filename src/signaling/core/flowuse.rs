//! What a flow carries, for the driver's listener guard (`driver/listener.rs`): a connection
//! with a call, a transaction or the registration on it is never closed as idle.

use super::{FlowId, SignalingCore};
use crate::signaling::invite::Phase;

impl SignalingCore {
    /// True when the flow carries the registration (the control flow), a call that has not
    /// ended (its dialog or its INVITE), or a transaction.
    pub fn flow_in_use(&self, flow: FlowId) -> bool {
        self.control.flow == Some(flow)
            || self
                .calls
                .values()
                .any(|c| c.flow == flow && c.phase != Phase::Ended)
            || self.server_tx.values().any(|t| t.flow == flow)
            || self.client_tx.values().any(|t| t.flow == flow)
    }

    /// Bytes of a partial message buffered for the flow (0 between messages).
    pub fn flow_buffered(&self, flow: FlowId) -> usize {
        self.flows.get(&flow).map_or(0, |f| f.framer.buffered())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Solo;
    use crate::signaling::config::Config;
    use std::time::{Duration, Instant};

    #[test]
    fn an_accepted_flow_is_in_use_only_while_it_carries_something() {
        let mut s = Solo::new(Config::default(), Instant::now());
        let flow = s.flow.expect("accepted");
        assert!(!s.core.flow_in_use(flow));
        s.feed("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP");
        assert!(s.core.flow_buffered(flow) > 0, "a partial head is buffered");
        s.feed(
            " 192.0.2.1:5060;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\n\
             Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(s.core.flow_buffered(flow), 0);
        for _ in 0..10 {
            s.jump(Duration::from_secs(1));
        }
        assert!(!s.core.flow_in_use(flow), "only a finished OPTIONS on it");
        // An incoming call makes it busy.
        let inv = super::super::testkit::PeerInvite {
            call_id: "c2".into(),
            from_tag: "f2".into(),
            branch: "z9hG4bKc2".into(),
            cseq: 1,
        };
        s.feed(&inv.invite(Some(&super::super::testkit::sdp_offer(4000)), "", None));
        assert!(s.core.flow_in_use(flow));
    }
}
