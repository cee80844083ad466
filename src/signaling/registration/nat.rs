//! A UDP registration behind NAT learns its public address (RFC 3581 §9, client side).
//!
//! The registrar writes the source address it saw into the top Via of its response
//! (`received`, `rport`). Over UDP that is the address the NAT gave our flow, the only one
//! the registrar can reach us at. When a 2xx names an address other than the one in our
//! Contact, we re-REGISTER at once with the Contact rewritten to it (PJSIP calls this
//! "contact rewrite"); a later 2xx that names yet another address (the NAT rebound the flow)
//! does the same. The new REGISTER *replaces* the old binding in one transaction: with
//! RFC 5626 outbound the registrar replaces the binding of the same `+sip.instance` and
//! `reg-id` by itself; without it the old Contact goes in the same REGISTER with
//! `expires=0` (RFC 3261 §10.2.2), so no unreachable binding is left to fork calls to.
//! Bound: after [`MAX_REWRITES`] rewrites in a row that the next 2xx does not confirm, we
//! keep the Contact we have and log why (a registrar or NAT that reports a new address on
//! every request would otherwise make us loop).

use super::Registration;
use crate::signaling::message::{Host, Response};
use std::net::{IpAddr, SocketAddr};

/// Rewrites in a row, without a 2xx confirming the rewritten Contact, before we give up.
pub const MAX_REWRITES: u32 = 2;

/// The address the top Via of `resp` says the server saw our request come from: `received`
/// (else our sent-by host) and `rport` (else our sent-by port). `None` when the Via carries
/// neither, or they do not parse: the server then tells us nothing.
pub(super) fn observed_addr(resp: &Response) -> Option<SocketAddr> {
    let via = resp.headers.top_via()?;
    let received = via.params.get("received").flatten();
    let rport = via.params.get("rport").flatten();
    if received.is_none() && rport.is_none() {
        return None;
    }
    let ip = match received {
        Some(r) => r.trim_matches(|c| c == '[' || c == ']').parse().ok()?,
        None => match via.host {
            Host::V4(v) => IpAddr::V4(v),
            Host::V6(v) => IpAddr::V6(v),
            Host::Domain(_) => return None,
        },
    };
    let port = match rport {
        Some(p) => p.parse().ok()?,
        None => via.port.unwrap_or(5060),
    };
    Some(SocketAddr::new(ip, port))
}

impl Registration {
    /// The address our Contact names: the learned public one over UDP, else the flow's own.
    pub(super) fn contact_addr(&self) -> Option<SocketAddr> {
        self.public.or(self.local)
    }

    /// The public address learned from the registrar's Via (RFC 3581), when it differs from
    /// the flow's local address; our Contact (and dialog Contacts on this flow) use it.
    pub fn public_addr(&self) -> Option<SocketAddr> {
        self.public
    }

    /// Reads `received`/`rport` of a 2xx to our REGISTER. Returns `true` when the Contact
    /// must be rewritten: the caller re-registers at once.
    pub(super) fn learn_public(&mut self, resp: &Response) -> bool {
        if !self.transport().eq_ignore_ascii_case("udp") {
            return false;
        }
        let (Some(local), Some(current), Some(seen)) =
            (self.local, self.contact_addr(), observed_addr(resp))
        else {
            return false;
        };
        if seen == current {
            self.rewrites = 0;
            return false;
        }
        if self.rewrites >= MAX_REWRITES {
            tracing::warn!(
                "registrar saw us at {seen}, not at our Contact {current}, after {} rewrites in \
                 a row: the address changes on every REGISTER; keeping {current}",
                self.rewrites
            );
            return false;
        }
        self.rewrites += 1;
        tracing::info!(
            "NAT: the registrar sees us at {seen} (Contact was {current}); re-registering \
             with Contact {seen}"
        );
        self.public = (seen != local).then_some(seen);
        if self.cfg.instance_id.is_none() {
            self.replaced = Some(current);
        }
        true
    }

    /// A new flow with local address `local`: a learned address belongs to the old one.
    pub(super) fn flow_changed(&mut self, local: SocketAddr) {
        if self.local != Some(local) {
            self.public = None;
            self.replaced = None;
            self.rewrites = 0;
        }
    }

    /// The Contact of the binding this REGISTER replaces, with `expires=0` (see the module doc).
    pub(super) fn take_replaced_contact(&mut self, expires: u32) -> Option<String> {
        let old = self.replaced.take()?;
        (expires != 0).then(|| format!("<{}>;expires=0", self.contact_uri(old)))
    }
}
