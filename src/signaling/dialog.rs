//! RFC 3261 §12 dialogs: identity, CSeq spaces, route set and remote target.
//!
//! A [`Dialog`] is created by the UAC from a response with a To tag to its INVITE
//! ([`Dialog::uac`]) or by the UAS from the INVITE it answers with its own To tag
//! ([`Dialog::uas`]). It builds in-dialog requests ([`Dialog::request`], [`Dialog::ack`]) with the
//! right Request-URI, Route set, From/To tags and CSeq, and checks incoming in-dialog requests
//! ([`Dialog::check_remote_cseq`]).

use super::message::{CSeq, HeaderName, Method, NameAddr, Params, Request, Response, Uri};
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The dialog identifier (RFC 3261 §12): Call-ID, local tag, remote tag. Shared strings: the
/// id is cloned into the core's dialog index, and a clone of an `Arc<str>` is a count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: Arc<str>,
    /// Our tag (From tag as UAC, To tag as UAS).
    pub local_tag: Arc<str>,
    /// The peer's tag.
    pub remote_tag: Arc<str>,
}

/// A dialog id as its three strings, owned ([`DialogId`]) or borrowed from a request
/// ([`Dialog::key_of_request`]): a table keyed by `DialogId` is looked up with a borrowed one
/// (`map.get(&key as &dyn DialogKey)`), with no copy of the strings.
pub(crate) trait DialogKey {
    /// Call-ID, local tag, remote tag.
    fn parts(&self) -> (&str, &str, &str);
}

impl DialogKey for DialogId {
    fn parts(&self) -> (&str, &str, &str) {
        (&self.call_id, &self.local_tag, &self.remote_tag)
    }
}

impl DialogKey for (&str, &str, &str) {
    fn parts(&self) -> (&str, &str, &str) {
        *self
    }
}

impl<'a> Borrow<dyn DialogKey + 'a> for DialogId {
    fn borrow(&self) -> &(dyn DialogKey + 'a) {
        self
    }
}

// One hash for both forms (`Borrow` requires it): the three strings in order.
impl Hash for dyn DialogKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (call_id, local, remote) = self.parts();
        call_id.hash(state);
        local.hash(state);
        remote.hash(state);
    }
}

impl PartialEq for dyn DialogKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn DialogKey + '_ {}

impl Hash for DialogId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn DialogKey).hash(state);
    }
}

/// Early (created by a 1xx with a To tag) or confirmed (by a 2xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
}

/// One dialog's state (RFC 3261 §12.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Identity.
    pub id: DialogId,
    /// Early or confirmed.
    pub state: DialogState,
    /// Our CSeq number of the last request we sent in the dialog.
    pub local_seq: u32,
    /// The peer's last CSeq number, if it sent a request in the dialog yet.
    pub remote_seq: Option<u32>,
    /// Our URI (From as UAC, To as UAS), without tag.
    pub local: NameAddr,
    /// The peer's URI, without tag.
    pub remote: NameAddr,
    /// Where in-dialog requests go (the peer's Contact).
    pub remote_target: Uri,
    /// Route set, in the order the Route header will carry it.
    pub route_set: Vec<NameAddr>,
}

/// A NameAddr without its `tag` parameter.
fn without_tag(na: &NameAddr) -> NameAddr {
    // Built without the tag rather than cloned and then stripped of it (no copy of the tag).
    let params = Params(
        (na.params.0.iter())
            .filter(|(n, _)| !n.eq_ignore_ascii_case("tag"))
            .cloned()
            .collect(),
    );
    NameAddr {
        display: na.display.clone(),
        uri: na.uri.clone(),
        params,
    }
}

/// A NameAddr with `tag=tag`.
fn with_tag(na: &NameAddr, tag: &str) -> NameAddr {
    let mut na = na.clone();
    na.params.set("tag", Some(tag));
    na
}

impl Dialog {
    /// The UAC side, from our INVITE and a 1xx (with To tag) or 2xx response to it
    /// (§12.1.2): route set = Record-Route reversed, remote target = the response's Contact.
    /// `None` when the response has no To tag or the request lacks From/Call-ID/CSeq.
    pub fn uac(request: &Request, response: &Response) -> Option<Dialog> {
        let from = request.headers.from()?;
        let to = response.headers.to()?;
        let remote_tag = Arc::from(to.tag()?);
        let local_tag = Arc::from(from.tag()?);
        let call_id = Arc::from(request.headers.call_id()?);
        let local_seq = request.headers.cseq()?.seq;
        let mut route_set = response.headers.record_routes();
        route_set.reverse();
        let remote_target = response
            .headers
            .contacts()
            .into_iter()
            .next()
            .map(|c| c.uri)
            .unwrap_or_else(|| request.uri.clone());
        Some(Dialog {
            id: DialogId {
                call_id,
                local_tag,
                remote_tag,
            },
            state: if response.is_success() {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_seq,
            remote_seq: None,
            local: without_tag(from),
            remote: without_tag(to),
            remote_target,
            route_set,
        })
    }

    /// The UAS side, from a received INVITE and the To tag we chose (§12.1.1): route set =
    /// Record-Route in order, remote target = the INVITE's Contact, remote CSeq = the INVITE's.
    pub fn uas(request: &Request, local_tag: &str, state: DialogState) -> Option<Dialog> {
        let from = request.headers.from()?;
        let to = request.headers.to()?;
        let remote_tag = Arc::from(from.tag().unwrap_or_default());
        let call_id = Arc::from(request.headers.call_id()?);
        let remote_seq = request.headers.cseq()?.seq;
        // The first Contact that parses (as `contacts()` would list it), without parsing the
        // rest into a list.
        let remote_target = request
            .headers
            .list(&HeaderName::Contact)
            .filter(|v| v.trim() != "*")
            .find_map(|v| NameAddr::parse(v).ok())
            .map(|c| c.uri)
            .unwrap_or_else(|| from.uri.clone());
        Some(Dialog {
            id: DialogId {
                call_id,
                local_tag: Arc::from(local_tag),
                remote_tag,
            },
            state,
            local_seq: 0,
            remote_seq: Some(remote_seq),
            local: without_tag(to),
            remote: without_tag(from),
            remote_target,
            route_set: request.headers.record_routes(),
        })
    }

    /// The dialog id a received in-dialog request belongs to (To tag is ours, From tag theirs).
    pub fn id_of_request(request: &Request) -> Option<DialogId> {
        Some(DialogId {
            call_id: Arc::from(request.headers.call_id()?),
            local_tag: Arc::from(request.headers.to()?.tag()?),
            remote_tag: Arc::from(request.headers.from()?.tag().unwrap_or_default()),
        })
    }

    /// [`Dialog::id_of_request`] borrowed from the request (no copy of its strings).
    pub(crate) fn key_of_request(request: &Request) -> Option<(&str, &str, &str)> {
        Some((
            request.headers.call_id()?,
            request.headers.to()?.tag()?,
            request.headers.from()?.tag().unwrap_or_default(),
        ))
    }

    /// Target refresh (§12.2.1.2 / §12.2.2): a new Contact replaces the remote target.
    pub fn refresh_target(&mut self, headers: &super::message::Headers) {
        if let Some(c) = headers.contacts().into_iter().next() {
            self.remote_target = c.uri;
        }
    }

    /// Checks the CSeq of an in-dialog request from the peer (§12.2.2): lower than the last one
    /// → `false` (answer 500); otherwise it becomes the new remote CSeq.
    pub fn check_remote_cseq(&mut self, seq: u32) -> bool {
        match self.remote_seq {
            Some(last) if seq < last => false,
            _ => {
                self.remote_seq = Some(seq);
                true
            }
        }
    }

    /// Builds an in-dialog request (§12.2.1.1) with a fresh CSeq (except ACK and CANCEL, which
    /// keep the one given in `seq`), the top Via `via` (a full Via value), Route set and
    /// Max-Forwards. The caller adds Contact, body and the rest.
    pub fn request(&mut self, method: Method, via: &str, seq: Option<u32>) -> Request {
        let seq = match seq {
            Some(s) => s,
            None => {
                self.local_seq = self.local_seq.wrapping_add(1);
                self.local_seq
            }
        };
        let (uri, routes) = self.request_uri_and_routes();
        let mut req = Request::new(method.clone(), uri);
        req.headers.push(HeaderName::Via, via);
        req.headers.push(HeaderName::MaxForwards, "70");
        for r in routes {
            req.headers.push(HeaderName::Route, r.to_string());
        }
        req.headers.push(
            HeaderName::From,
            with_tag(&self.local, &self.id.local_tag).to_string(),
        );
        let remote = if self.id.remote_tag.is_empty() {
            self.remote.clone()
        } else {
            with_tag(&self.remote, &self.id.remote_tag)
        };
        req.headers.push(HeaderName::To, remote.to_string());
        req.headers
            .push(HeaderName::CallId, self.id.call_id.to_string());
        req.headers
            .push(HeaderName::CSeq, CSeq { seq, method }.to_string());
        req
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_seq` (§13.2.2.4): own transaction
    /// branch, same CSeq number, method ACK.
    pub fn ack(&mut self, invite_seq: u32, via: &str) -> Request {
        self.request(Method::Ack, via, Some(invite_seq))
    }

    /// Request-URI and Route headers per §12.2.1.1 (loose routing; strict routing when the first
    /// route lacks `lr`).
    fn request_uri_and_routes(&self) -> (Uri, Vec<NameAddr>) {
        match self.route_set.first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some(first) if first.uri.params.has("lr") => {
                (self.remote_target.clone(), self.route_set.clone())
            }
            Some(first) => {
                let mut routes: Vec<NameAddr> = self.route_set[1..].to_vec();
                routes.push(NameAddr {
                    display: None,
                    uri: self.remote_target.clone(),
                    params: Params::default(),
                });
                let mut uri = first.uri.clone();
                uri.headers.clear();
                (uri, routes)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::message::{Host, Message};

    fn invite() -> Request {
        let text = "INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
            Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
            Max-Forwards: 70\r\n\
            From: \"Alice\" <sip:alice@example.com>;tag=aaa\r\n\
            To: <sip:bob@example.com>\r\n\
            Call-ID: call-1\r\n\
            CSeq: 7 INVITE\r\n\
            Contact: <sip:alice@192.0.2.1:5060;transport=tcp>\r\n\
            Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
            Content-Length: 0\r\n\r\n";
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => panic!("not a request"),
        }
    }

    #[test]
    fn a_borrowed_key_finds_the_dialog_its_request_belongs_to() {
        let mut bye = invite();
        bye.headers
            .set(HeaderName::To, "<sip:bob@example.com>;tag=ours");
        let id = Dialog::id_of_request(&bye).unwrap();
        let mut table: std::collections::HashMap<DialogId, u32> = Default::default();
        table.insert(id.clone(), 7);
        let key = Dialog::key_of_request(&bye).unwrap();
        assert_eq!(key, ("call-1", "ours", "aaa"));
        assert_eq!(table.get(&key as &dyn DialogKey), Some(&7));
        let other = ("call-1", "ours", "zzz");
        assert_eq!(table.get(&other as &dyn DialogKey), None);
        use std::hash::BuildHasher;
        let hasher = std::hash::RandomState::new();
        assert_eq!(
            hasher.hash_one(&id),
            hasher.hash_one(&key as &dyn DialogKey),
            "Borrow needs equal hashes"
        );
    }

    fn ok(req: &Request) -> Response {
        let mut r = Response::for_request(req, 200);
        r.headers
            .set(HeaderName::To, "<sip:bob@example.com>;tag=bbb");
        r.headers.push(
            HeaderName::Contact,
            "<sip:bob@192.0.2.4:5070;transport=tcp>",
        );
        for rr in req.headers.get_all(&HeaderName::RecordRoute) {
            r.headers.push(HeaderName::RecordRoute, rr);
        }
        r
    }

    #[test]
    fn uac_dialog_reverses_record_route_and_acks_with_invite_cseq() {
        let req = invite();
        let mut d = Dialog::uac(&req, &ok(&req)).unwrap();
        assert_eq!(&*d.id.local_tag, "aaa");
        assert_eq!(&*d.id.remote_tag, "bbb");
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(
            d.route_set[0].uri.host,
            Host::Domain("p2.example.com".into())
        );
        let ack = d.ack(7, "SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKack");
        assert_eq!(
            ack.headers.cseq().unwrap(),
            CSeq {
                seq: 7,
                method: Method::Ack
            }
        );
        assert_eq!(ack.uri.port, Some(5070));
        let routes: Vec<_> = ack.headers.get_all(&HeaderName::Route).collect();
        assert_eq!(routes.len(), 2);
        assert!(routes[0].contains("p2.example.com"));
        let bye = d.request(Method::Bye, "SIP/2.0/TCP h;branch=z9hG4bKb", None);
        assert_eq!(bye.headers.cseq().unwrap().seq, 8);
        assert_eq!(bye.headers.to().unwrap().tag(), Some("bbb"));
        assert_eq!(bye.headers.from().unwrap().tag(), Some("aaa"));
    }

    #[test]
    fn uas_dialog_keeps_record_route_order_and_checks_cseq() {
        let req = invite();
        let mut d = Dialog::uas(&req, "ttt", DialogState::Early).unwrap();
        assert_eq!(&*d.id.remote_tag, "aaa");
        assert_eq!(
            d.route_set[0].uri.host,
            Host::Domain("p1.example.com".into())
        );
        assert_eq!(d.remote_target.port, Some(5060));
        assert!(!d.check_remote_cseq(6));
        assert!(d.check_remote_cseq(8));
        let bye = d.request(Method::Bye, "SIP/2.0/TCP h;branch=z9hG4bKb", None);
        assert_eq!(bye.headers.cseq().unwrap().seq, 1);
        assert_eq!(bye.headers.from().unwrap().tag(), Some("ttt"));
        assert_eq!(bye.headers.to().unwrap().tag(), Some("aaa"));
    }

    #[test]
    fn strict_route_puts_target_last() {
        let req = invite();
        let mut d = Dialog::uas(&req, "ttt", DialogState::Confirmed).unwrap();
        d.route_set = vec![NameAddr::new(Uri::sip(Host::Domain("strict".into()), None))];
        let bye = d.request(Method::Bye, "SIP/2.0/TCP h;branch=z9hG4bKb", None);
        assert_eq!(bye.uri.host, Host::Domain("strict".into()));
        let routes: Vec<_> = bye.headers.get_all(&HeaderName::Route).collect();
        assert_eq!(routes.len(), 1);
        assert!(routes[0].contains("192.0.2.1"));
    }
}
