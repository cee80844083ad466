//! SIP over UDP in the core (RFC 3261 §18): a UDP flow is (our UDP socket, one peer address).
//!
//! The driver hands every datagram to [`SignalingCore::handle_datagram`] with the socket's
//! local address and the source. A datagram is a whole message (`signaling/datagram.rs`);
//! what is not SIP, truncated or too large is dropped and counted, never fatal. A request gets
//! `received`/`rport` on its top Via (RFC 3581) and belongs to the flow of the address its
//! responses go to (created on first sight): the source address when the Via asks for `rport`,
//! else the source IP with the Via's port (RFC 3261 §18.2.2). A response is
//! matched by its branch alone (RFC 3261 §17.1.3), whichever address it came from.

use super::{FlowId, FlowKind, SignalingCore, Transport};
use crate::signaling::datagram::{classify, Datagram};
use crate::signaling::message::Message;
use std::net::SocketAddr;
use std::time::Instant;

/// Datagram counters (see [`SignalingCore::udp_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams handed to the core.
    pub received: u64,
    /// Dropped: not SIP, truncated, too large, or unparsable and unanswerable.
    pub dropped: u64,
    /// CRLF keep-alives received.
    pub keepalives: u64,
}

/// Where the responses to a request from `source` go (RFC 3261 §18.2.2, RFC 3581 §4): back to
/// the source when its top Via has `rport` (or no readable Via), else to the source IP and the
/// Via's sent-by port (5060 when it names none).
fn response_address(req: &crate::signaling::message::Request, source: SocketAddr) -> SocketAddr {
    match req.headers.top_via() {
        Some(v) if !v.params.has("rport") => SocketAddr::new(source.ip(), v.port.unwrap_or(5060)),
        _ => source,
    }
}

/// Peer flows created by datagrams are forgotten, when nothing uses them, past this many.
const MAX_IDLE_UDP_FLOWS: usize = 64;

impl SignalingCore {
    /// A datagram arrived on our UDP socket bound at `local` (the routed address the peer
    /// sees, not `0.0.0.0`) from `remote`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) {
        self.udp_stats.received += 1;
        let raw = match classify(bytes) {
            Ok(Datagram::Message(raw)) => raw,
            Ok(Datagram::KeepAlive) => {
                self.udp_stats.keepalives += 1;
                if let Some(flow) = self.udp_flow_of(remote) {
                    self.control_pong(now, flow);
                }
                return;
            }
            Err(e) => {
                self.udp_stats.dropped += 1;
                tracing::debug!(%remote, "datagram dropped: {e}");
                return;
            }
        };
        match Message::parse(raw) {
            Ok(Message::Response(resp)) => self.handle_response(now, resp),
            Ok(Message::Request(mut req)) => {
                let reply_to = response_address(&req, remote);
                req.headers.stamp_received(remote);
                let flow = self.udp_flow(local, reply_to);
                let stamped = req.to_bytes();
                self.handle_message(now, flow, &stamped);
            }
            Err(_) => {
                // Unparsable: answer 400 if it is readable enough, on the source's flow.
                let flow = self.udp_flow(local, remote);
                self.handle_message(now, flow, raw);
            }
        }
        self.drain_control(now);
    }

    /// Datagram counters.
    pub fn udp_stats(&self) -> UdpStats {
        self.udp_stats
    }

    /// The peer address of a UDP flow (where the driver sends its `Transmit`s), or `None`
    /// for a TCP or unknown flow.
    pub fn udp_remote(&self, flow: FlowId) -> Option<SocketAddr> {
        self.flows
            .get(&flow)
            .filter(|f| f.transport == Transport::Udp && f.up)
            .and_then(|f| f.remote)
    }

    /// The up UDP flow whose peer is `remote`.
    fn udp_flow_of(&self, remote: SocketAddr) -> Option<FlowId> {
        self.flows
            .iter()
            .find(|(_, f)| f.transport == Transport::Udp && f.up && f.remote == Some(remote))
            .map(|(id, _)| *id)
    }

    /// The UDP flow of `remote`, created (up, like an accepted connection) on first sight.
    fn udp_flow(&mut self, local: SocketAddr, remote: SocketAddr) -> FlowId {
        if let Some(id) = self.udp_flow_of(remote) {
            return id;
        }
        self.forget_idle_udp_flows();
        let id = self.new_flow(FlowKind::Accepted, Transport::Udp);
        if let Some(f) = self.flows.get_mut(&id) {
            f.local = Some(local);
            f.remote = Some(remote);
            f.up = true;
        }
        id
    }

    /// Drops the peer flows created by datagrams that no transaction or call uses, once there
    /// are more than [`MAX_IDLE_UDP_FLOWS`] (a UDP peer never says goodbye).
    fn forget_idle_udp_flows(&mut self) {
        let accepted =
            |f: &super::Flow| f.transport == Transport::Udp && f.kind == FlowKind::Accepted;
        if self.flows.values().filter(|f| accepted(f)).count() < MAX_IDLE_UDP_FLOWS {
            return;
        }
        let used: std::collections::HashSet<FlowId> = self
            .server_tx
            .values()
            .map(|t| t.flow)
            .chain(self.client_tx.values().map(|t| t.flow))
            .chain(self.calls.values().map(|c| c.flow))
            .collect();
        self.flows.retain(|id, f| !accepted(f) || used.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{ended_of, Fate, Pair, A_ADDR, B_ADDR};
    use super::super::{CallOutcome, Event};
    use crate::signaling::config::Config;
    use std::time::{Duration, Instant};

    fn origin() -> Instant {
        // The one clock read of these tests; the cores only ever see virtual time from it.
        Instant::now()
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// The outcomes of the `Ended` events in `events`.
    fn ended(events: &[Event]) -> Vec<CallOutcome> {
        ended_of(events).into_iter().map(|(_, o)| o).collect()
    }

    /// A places a call, B rings and answers at once, A hangs up after 5 s; then the clock runs
    /// past every timer.
    fn call_with_answer(p: &mut Pair) {
        let call = p.a.call(p.now, p.b_uri(), Pair::media(4000)).expect("call");
        p.drive();
        for _ in 0..64 {
            if p.b_incoming().is_some() {
                break;
            }
            p.advance(Duration::from_millis(500));
        }
        if let Some(inc) = p.b_incoming() {
            let _ = p.b.answer(p.now, inc, Pair::media(5000));
        }
        p.advance(Duration::from_secs(5));
        let _ = p.a.hangup(p.now, call);
        p.advance(Duration::from_secs(120));
    }

    #[test]
    fn call_over_udp_says_udp_and_gets_received_and_rport() {
        let mut p = Pair::udp(Config::default(), Config::default(), origin(), vec![]);
        call_with_answer(&mut p);
        let invite = text(&p.a_sent[0]);
        assert!(invite.starts_with("INVITE "), "{invite}");
        assert!(
            invite.contains("Via: SIP/2.0/UDP 127.0.0.1:40000;branch="),
            "{invite}"
        );
        assert!(invite.contains(";transport=udp>"), "{invite}");
        let ok = p
            .b_sent
            .iter()
            .map(|b| text(b))
            .find(|t| t.starts_with("SIP/2.0 200") && t.contains("INVITE"))
            .expect("a 200 to the INVITE");
        assert!(
            ok.contains("rport=40000") && ok.contains("received=127.0.0.1"),
            "{ok}"
        );
        assert!(ok.contains(";transport=udp>"), "{ok}");
        assert_eq!(ended(&p.a_events), vec![CallOutcome::Answered]);
        assert_eq!(ended(&p.b_events), vec![CallOutcome::Answered]);
        assert_eq!(p.b.ledger_open(), 0);
    }

    #[test]
    fn lost_invite_200_and_ack_are_retransmitted_and_duplicates_absorbed() {
        // The INVITE is lost once, its 100 is duplicated, the 200 is lost once (B retransmits
        // it until the ACK), and the rest alternates duplicate / deliver.
        let fates = vec![
            Fate::Drop,      // INVITE
            Fate::Duplicate, // INVITE (Timer A)
            Fate::Duplicate, // 100
            Fate::Deliver,   // 100
            Fate::Drop,      // 200
            Fate::Duplicate,
            Fate::Deliver,
        ];
        let mut p = Pair::udp(Config::default(), Config::default(), origin(), fates);
        call_with_answer(&mut p);
        let invites = p
            .a_sent
            .iter()
            .filter(|b| text(b).starts_with("INVITE "))
            .count();
        assert!(invites >= 2, "Timer A retransmitted the INVITE");
        assert_eq!(ended(&p.a_events), vec![CallOutcome::Answered]);
        assert_eq!(ended(&p.b_events), vec![CallOutcome::Answered]);
        let s = p.b.ledger_stats();
        assert_eq!((s.initial, s.double_finals, s.double_ended), (1, 0, 0));
        assert_eq!(p.b.ledger_open(), 0);
        assert!(p
            .udp
            .as_ref()
            .is_some_and(|n| n.dropped >= 2 && n.duplicated >= 2));
    }

    #[test]
    fn garbage_truncated_and_oversize_datagrams_are_dropped_and_counted() {
        let mut p = Pair::udp(Config::default(), Config::default(), origin(), vec![]);
        let (a, b) = (A_ADDR.parse().unwrap(), B_ADDR.parse().unwrap());
        p.b.handle_datagram(p.now, b, a, b"\x00\x01 not sip at all");
        p.b.handle_datagram(
            p.now,
            b,
            a,
            b"OPTIONS sip:b@127.0.0.1 SIP/2.0\r\nContent-Length: 99\r\n\r\nshort",
        );
        p.b.handle_datagram(p.now, b, a, &vec![b'x'; 70_000]);
        p.b.handle_datagram(p.now, b, a, b"\r\n\r\n");
        assert!(
            p.b.poll_output().is_none(),
            "nothing answered, nothing closed"
        );
        let s = p.b.udp_stats();
        assert_eq!((s.received, s.dropped, s.keepalives), (4, 3, 1));
        // B still works.
        call_with_answer(&mut p);
        assert_eq!(ended(&p.b_events), vec![CallOutcome::Answered]);
    }

    #[test]
    fn a_response_from_another_address_is_matched_by_branch() {
        let mut p = Pair::udp(Config::default(), Config::default(), origin(), vec![]);
        let call = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
        p.drive();
        let inc = p.b_incoming().expect("incoming");
        // B answers; its 200 reaches A from an address A never sent to.
        p.udp = None;
        p.b.answer(p.now, inc, Pair::media(5000)).unwrap();
        let mut ok = None;
        while let Some(out) = p.b.poll_output() {
            if let super::super::Output::Transmit { bytes, .. } = out {
                if text(&bytes).starts_with("SIP/2.0 200") {
                    ok = Some(bytes);
                }
            }
        }
        let other = "192.0.2.77:5099".parse().unwrap();
        p.a.handle_datagram(p.now, A_ADDR.parse().unwrap(), other, &ok.expect("200"));
        let connected = std::iter::from_fn(|| p.a.poll_output()).any(|o| {
            matches!(
                o,
                super::super::Output::Event(Event::State {
                    call: c,
                    state: super::super::CallState::Connected,
                    ..
                }) if c == call
            )
        });
        assert!(connected);
    }

    #[test]
    fn an_invite_over_1300_bytes_goes_over_tcp_to_the_same_peer() {
        let a = Config {
            display_name: Some("x".repeat(900)),
            ..Config::default()
        };
        let mut p = Pair::udp(a, Config::default(), origin(), vec![]);
        call_with_answer(&mut p);
        let invites: Vec<String> = p
            .a_sent
            .iter()
            .map(|b| text(b))
            .filter(|t| t.starts_with("INVITE "))
            .collect();
        assert_eq!(invites.len(), 1, "nothing went out over UDP first");
        assert!(invites[0].len() > 1300);
        assert!(invites[0].contains("Via: SIP/2.0/TCP "), "{}", invites[0]);
        assert!(p.a_flow.is_some() && p.a_udp_flow.is_some());
        assert_eq!(ended(&p.a_events), vec![CallOutcome::Answered]);
        assert_eq!(ended(&p.b_events), vec![CallOutcome::Answered]);
    }

    #[test]
    fn unacked_2xx_is_retransmitted_with_t1_doubling_then_byed() {
        let mut p = Pair::udp(Config::default(), Config::default(), origin(), vec![]);
        p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
        p.drive();
        let inc = p.b_incoming().expect("incoming");
        p.connected = false; // from here on nothing arrives
        p.b.answer(p.now, inc, Pair::media(5000)).unwrap();
        p.advance(Duration::from_secs(40));
        let oks = p
            .b_sent
            .iter()
            .filter(|b| text(b).starts_with("SIP/2.0 200"))
            .count();
        // 0, .5, 1.5, 3.5, 7.5, 11.5, 15.5, ... 31.5 s: T1 doubling up to T2 (4 s), 64·T1.
        assert!((10..=12).contains(&oks), "{oks} 200s");
        assert!(p.b_sent.iter().any(|b| text(b).starts_with("BYE ")));
        assert_eq!(ended(&p.b_events), vec![CallOutcome::Failed]);
    }

    #[test]
    fn responses_go_to_rport_or_to_the_via_port() {
        let mut p = Pair::udp(Config::default(), Config::default(), origin(), vec![]);
        let (b, src) = (B_ADDR.parse().unwrap(), "192.0.2.5:40123".parse().unwrap());
        let options = |via: &str| {
            format!(
                "OPTIONS sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {via}\r\nFrom: <sip:x@h>;tag=1\r\n\
                 To: <sip:b@h>\r\nCall-ID: o-{via}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let mut answered_to = Vec::new();
        for via in [
            "192.0.2.5:5070;branch=z9hG4bKr;rport",
            "192.0.2.5:5070;branch=z9hG4bKn",
        ] {
            p.b.handle_datagram(p.now, b, src, options(via).as_bytes());
            while let Some(out) = p.b.poll_output() {
                if let super::super::Output::Transmit { flow, bytes } = out {
                    assert!(text(&bytes).starts_with("SIP/2.0 200"));
                    answered_to.push(p.b.udp_remote(flow));
                }
            }
        }
        assert_eq!(
            answered_to,
            vec![Some(src), Some("192.0.2.5:5070".parse().unwrap())]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever the network loses or duplicates, each side ends each call at most once,
        /// B ends every INVITE that reached it exactly once, and nothing is counted twice.
        #[test]
        fn ledger_holds_under_loss_and_duplication(
            fates in proptest::collection::vec(
                proptest::prop_oneof![
                    3 => proptest::strategy::Just(Fate::Deliver),
                    1 => proptest::strategy::Just(Fate::Drop),
                    1 => proptest::strategy::Just(Fate::Duplicate),
                ],
                1..16,
            )
        ) {
            let mut p = Pair::udp(Config::default(), Config::default(), origin(), fates);
            call_with_answer(&mut p);
            proptest::prop_assert_eq!(ended(&p.a_events).len(), 1);
            let b_incoming = p.b_incoming().is_some();
            proptest::prop_assert_eq!(ended(&p.b_events).len(), usize::from(b_incoming));
            let s = p.b.ledger_stats();
            proptest::prop_assert_eq!((s.double_finals, s.double_ended, s.stray), (0, 0, 0));
            proptest::prop_assert!(s.initial <= 1);
            proptest::prop_assert_eq!(p.b.ledger_open(), 0);
        }
    }
}
