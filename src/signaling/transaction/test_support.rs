//! Messages for the transaction tests, built from struct literals only (no parsing).

use super::TxEvent;
use crate::signaling::message::{HeaderName, Host, Method, Request, Response, Uri};

pub(super) const TOP_VIA: &str = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtop1";
pub(super) const FROM: &str = "\"Alice\" <sip:alice@example.com>;tag=a1";
pub(super) const TO: &str = "<sip:bob@example.com>";
pub(super) const TO_TAGGED_CALLEE: &str = "<sip:bob@example.com>;tag=callee";
pub(super) const CALL_ID: &str = "call-1@192.0.2.1";
pub(super) const ROUTE_1: &str = "<sip:p1.example.com;lr>";
pub(super) const ROUTE_2: &str = "<sip:p2.example.com;lr>";

fn request(method: Method, cseq: &str) -> Request {
    let mut uri = Uri::sip(Host::Domain("example.com".into()), None);
    uri.user = Some("bob".into());
    let mut r = Request::new(method, uri);
    // Two Via elements in the first field and one more field: only TOP_VIA is "the top Via".
    r.headers.push(
        HeaderName::Via,
        format!("{TOP_VIA}, SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKlower"),
    );
    r.headers.push(
        HeaderName::Via,
        "SIP/2.0/TCP 203.0.113.9;branch=z9hG4bKlowest",
    );
    r.headers.push(HeaderName::MaxForwards, "70");
    r.headers.push(HeaderName::Route, ROUTE_1);
    r.headers.push(HeaderName::Route, ROUTE_2);
    r.headers.push(HeaderName::From, FROM);
    r.headers.push(HeaderName::To, TO);
    r.headers.push(HeaderName::CallId, CALL_ID);
    r.headers.push(HeaderName::CSeq, cseq);
    r.headers.push(HeaderName::ContentType, "application/sdp");
    r.body = b"v=0\r\n".to_vec();
    r
}

/// The INVITE used by the tests.
pub(super) fn invite() -> Request {
    request(Method::Invite, "314 INVITE")
}

/// A non-INVITE request of that method.
pub(super) fn non_invite(method: Method) -> Request {
    let cseq = format!("315 {method}");
    request(method, &cseq)
}

/// The ACK a client would send for our non-2xx final response.
pub(super) fn ack_for(req: &Request) -> Request {
    let mut ack = req.clone();
    ack.method = Method::Ack;
    ack.headers.set(HeaderName::CSeq, "314 ACK");
    ack.headers.set(HeaderName::To, TO_TAGGED_CALLEE);
    ack.body.clear();
    ack
}

/// A response to `req`; `tag` is added to To (unless the status is 100).
pub(super) fn response_to(req: &Request, status: u16, tag: Option<&str>) -> Response {
    let mut r = Response::for_request(req, status);
    if let (Some(tag), true) = (tag, status != 100) {
        r.headers.set(HeaderName::To, format!("{TO};tag={tag}"));
    }
    r
}

/// Every event queued now.
pub(super) fn drain(mut poll: impl FnMut() -> Option<TxEvent>) -> Vec<TxEvent> {
    std::iter::from_fn(&mut poll).collect()
}
