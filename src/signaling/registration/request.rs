//! The REGISTER request (RFC 3261 §10.2, RFC 5626 §5: `+sip.instance`, `reg-id`, `;ob`) and
//! what its 2xx grants (our Contact's `expires`).

use super::contact::{contact_uri_text, header_param};
use super::{Registration, ALLOW};
use crate::signaling::message::{HeaderName, Host, Method, Request, Response, Uri, BRANCH_MAGIC};
use rand::rngs::StdRng;
use rand::Rng;
use std::net::SocketAddr;

impl Registration {
    pub(super) fn transport(&self) -> String {
        self.cfg
            .registrar
            .transport()
            .unwrap_or_else(|| "tcp".into())
    }

    /// Our Contact URI, `sip:user@ip:port;transport=..[;ob]` (without `<>`).
    pub(super) fn contact_uri(&self, local: SocketAddr) -> Uri {
        let mut uri = Uri::sip(Host::from(local.ip()), Some(local.port()));
        uri.scheme = self.cfg.aor.scheme;
        uri.user = self.cfg.aor.user.clone();
        uri.params.set("transport", Some(&self.transport()));
        if self.cfg.instance_id.is_some() {
            uri.params.set("ob", None);
        }
        for (name, value) in &self.cfg.contact_params {
            uri.params.set(name, Some(value));
        }
        uri
    }

    pub(super) fn queue_register(&mut self, expires: u32) {
        let Some(local) = self.local else {
            return;
        };
        self.cseq = self.cseq.wrapping_add(1) & 0x7fff_ffff;
        self.in_flight = Some(self.cseq);
        let mut ruri = Uri::sip(self.cfg.aor.host.clone(), self.cfg.aor.port);
        ruri.scheme = self.cfg.aor.scheme;
        let mut req = Request::new(Method::Register, ruri.clone());
        let h = &mut req.headers;
        let branch = format!("{BRANCH_MAGIC}{}", token(&mut self.rng, 16));
        h.push(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                self.transport().to_ascii_uppercase(),
                local
            ),
        );
        h.push(HeaderName::MaxForwards, "70");
        if let Some(proxy) = &self.cfg.outbound_proxy {
            let mut p = proxy.clone();
            p.params.set("lr", None);
            h.push(HeaderName::Route, format!("<{p}>"));
        }
        let display = self
            .cfg
            .display_name
            .as_ref()
            .map(|d| format!("\"{}\" ", d.replace('\\', "\\\\").replace('"', "\\\"")))
            .unwrap_or_default();
        h.push(
            HeaderName::From,
            format!("{display}<{}>;tag={}", self.cfg.aor, self.from_tag),
        );
        h.push(HeaderName::To, format!("{display}<{}>", self.cfg.aor));
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} REGISTER", self.cseq));
        let Some(contact_addr) = self.contact_addr() else {
            return;
        };
        let mut contact = format!("<{}>", self.contact_uri(contact_addr));
        if let Some(inst) = &self.cfg.instance_id {
            contact.push_str(&format!(
                ";+sip.instance=\"<{inst}>\";reg-id={}",
                self.cfg.reg_id
            ));
        }
        if expires == 0 {
            contact.push_str(";expires=0");
        }
        h.push(HeaderName::Contact, contact);
        if let Some(old) = self.take_replaced_contact(expires) {
            h.push(HeaderName::Contact, old);
        }
        h.push(HeaderName::Expires, expires.to_string());
        h.push(HeaderName::Supported, "outbound, path");
        h.push(HeaderName::UserAgent, self.cfg.user_agent.clone());
        h.push(HeaderName::Allow, ALLOW);
        if let Some(creds) = &self.cfg.credentials {
            for (name, value) in self.digest.authorize_all(&Method::Register, &ruri, creds) {
                req.headers.push(name, value);
            }
        }
        self.requests.push_back(req);
    }

    /// Granted lifetime: our Contact's `expires` in the 2xx, else `Expires`, else requested.
    pub(super) fn granted_expires(&self, resp: &Response) -> u32 {
        let ours = self.contact_addr().map(|l| self.contact_uri(l).to_string());
        let from_contact = resp
            .headers
            .list(&HeaderName::Contact)
            .find(|c| self.is_our_contact(c, ours.as_deref()))
            .and_then(|c| header_param(c, "expires"))
            .and_then(|v| v.parse().ok());
        from_contact
            .or_else(|| resp.headers.expires())
            .unwrap_or(self.requested_expires)
    }

    /// Matches a Contact element of a 2xx against ours: by `+sip.instance` and `reg-id` when
    /// we use outbound, else by `user@host:port` of the URI.
    pub(super) fn is_our_contact(&self, elem: &str, ours: Option<&str>) -> bool {
        if let Some(inst) = &self.cfg.instance_id {
            let inst_matches = header_param(elem, "+sip.instance")
                .is_some_and(|v| v.trim_matches(|c| c == '"' || c == '<' || c == '>') == inst);
            let reg_id_matches =
                header_param(elem, "reg-id").is_none_or(|v| v.parse() == Ok(self.cfg.reg_id));
            if inst_matches && reg_id_matches {
                return true;
            }
        }
        let (Some(ours), Some(theirs)) = (ours, contact_uri_text(elem)) else {
            return false;
        };
        let base = |u: &str| u.split(';').next().unwrap_or_default().to_ascii_lowercase();
        base(ours) == base(theirs)
    }
}

/// The CSeq number of a response, read without the full CSeq parser.
pub(super) fn response_cseq(resp: &Response) -> Option<u32> {
    let v = resp.headers.get(&HeaderName::CSeq)?;
    let mut it = v.split_whitespace();
    let seq = it.next()?.parse().ok()?;
    it.next()
        .filter(|m| m.eq_ignore_ascii_case("REGISTER"))
        .map(|_| seq)
}

pub(super) fn token(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
