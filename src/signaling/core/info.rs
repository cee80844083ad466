//! SIP INFO in a call's dialog (RFC 6086): how DTMF goes out as `application/dtmf-relay` for
//! peers that want it that way.

use super::{CallHandle, CoreError, SignalingCore, TxOwner};
use crate::signaling::invite::Phase;
use crate::signaling::message::{HeaderName, Method};
use std::time::Instant;

impl SignalingCore {
    /// Sends an INFO with this body in the dialog of a connected call. Its response is not
    /// reported: INFO changes no call state.
    pub fn send_info(
        &mut self,
        now: Instant,
        call: CallHandle,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), CoreError> {
        let Some(c) = self.calls.get(&call) else {
            return Err(CoreError::NoSuchCall);
        };
        if c.phase != Phase::Connected {
            return Err(CoreError::InvalidState("INFO needs a connected call"));
        }
        let flow = c.flow;
        let via = self.via(flow);
        let ua = self.config.user_agent.clone();
        let Some(d) = self.calls.get_mut(&call).and_then(|c| c.dialog.as_mut()) else {
            return Err(CoreError::NoSuchCall);
        };
        let mut req = d.request(Method::Info, &via, None);
        req.headers.push(HeaderName::UserAgent, ua);
        req.headers.push(HeaderName::ContentType, content_type);
        req.body = body.to_vec();
        self.send_request(now, flow, req, TxOwner::Nobody);
        Ok(())
    }
}

/// The `application/dtmf-relay` body of one digit (160 ms, the usual duration).
pub fn dtmf_relay_body(digit: char) -> String {
    format!("Signal={digit}\r\nDuration=160\r\n")
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Pair;
    use super::*;
    use crate::signaling::config::Config;

    #[test]
    fn an_info_digit_reaches_the_other_core_as_dtmf() {
        let mut p = Pair::new(Config::default(), Config::default(), Instant::now());
        let call = p.a.call(p.now, p.b_uri(), Pair::media(4000)).unwrap();
        p.drive();
        let inc = p.b_incoming().unwrap();
        p.b.answer(p.now, inc, Pair::media(5000)).unwrap();
        p.drive();
        let body = dtmf_relay_body('#');
        p.a.send_info(p.now, call, "application/dtmf-relay", body.as_bytes())
            .unwrap();
        p.drive();
        let got: Vec<char> = p
            .b_events
            .iter()
            .filter_map(|e| match e {
                crate::signaling::core::Event::Dtmf { digit, .. } => Some(*digit),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec!['#']);
        assert!(matches!(
            p.a.send_info(p.now, CallHandle::testing(99), "x/y", b""),
            Err(CoreError::NoSuchCall)
        ));
    }
}
