//! 400 Bad Request for a request that did not parse, built from its raw header lines
//! (RFC 3261 §8.2.6: Via, From, To, Call-ID and CSeq copied; a To tag added). Only the Via is
//! needed (it routes the response back); a request missing From, To, Call-ID or CSeq still
//! gets its 400, which names what is missing, with the headers it has.

use crate::signaling::invite::ledger::LedgerKey;
use crate::signaling::message::HeaderName;
use std::sync::Arc;

/// A 400 built by hand.
pub(crate) struct Bad {
    /// The whole response.
    pub(crate) bytes: Vec<u8>,
    /// For an INVITE without To tag: its ledger key (the INVITE starts, and ends, a call).
    pub(crate) invite: Option<LedgerKey>,
}

/// `None` when the message is a response, an ACK, or has no Via to answer along.
pub(crate) fn build(raw: &[u8], server: &str) -> Option<Bad> {
    let head_end = find(raw, b"\r\n\r\n")
        .or_else(|| find(raw, b"\n\n"))
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.lines();
    let start = lines.next()?.trim();
    if start.starts_with("SIP/") {
        return None;
    }
    let method = start.split_whitespace().next()?;
    if method == "ACK" {
        return None;
    }
    let (mut vias, mut from, mut to, mut call_id, mut cseq) = (Vec::new(), None, None, None, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        match HeaderName::parse(name.trim()) {
            HeaderName::Via => vias.push(value),
            HeaderName::From => from = Some(value),
            HeaderName::To => to = Some(value),
            HeaderName::CallId => call_id = Some(value),
            HeaderName::CSeq => cseq = Some(value),
            _ => {}
        }
    }
    if vias.is_empty() {
        return None;
    }
    let missing: Vec<&str> = [
        ("From", from.is_none()),
        ("To", to.is_none()),
        ("Call-ID", call_id.is_none()),
        ("CSeq", cseq.is_none()),
    ]
    .into_iter()
    .filter_map(|(name, absent)| absent.then_some(name))
    .collect();
    let had_tag = to
        .as_ref()
        .is_some_and(|t| t.to_ascii_lowercase().contains(";tag="));
    if let Some(t) = to.as_mut().filter(|_| !had_tag) {
        // The same tag for every retransmission of the request: a hash of its identity.
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&vias, &from, &call_id, &cseq).hash(&mut hasher);
        *t = format!("{t};tag={:012x}", hasher.finish() & 0xffff_ffff_ffff);
    }
    let mut out = match missing.is_empty() {
        true => String::from("SIP/2.0 400 Bad Request\r\n"),
        false => format!("SIP/2.0 400 Missing {}\r\n", missing.join(", ")),
    };
    for v in &vias {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    for (name, value) in [
        ("From", &from),
        ("To", &to),
        ("Call-ID", &call_id),
        ("CSeq", &cseq),
    ] {
        if let Some(v) = value {
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    out.push_str(&format!("Server: {server}\r\nContent-Length: 0\r\n\r\n"));
    let invite = match (&call_id, &cseq) {
        (Some(call_id), Some(cseq)) if method == "INVITE" && !had_tag && to.is_some() => {
            let branch = vias
                .first()
                .and_then(|v| {
                    v.split(';').find_map(|p| {
                        let (n, v) = p.split_once('=')?;
                        n.trim().eq_ignore_ascii_case("branch").then(|| v.trim())
                    })
                })
                .unwrap_or_default()
                .to_string();
            // An INVITE whose CSeq number is unreadable cannot be keyed: 400 without a ledger entry.
            cseq.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .map(|seq| LedgerKey {
                    call_id: Arc::from(call_id.as_str()),
                    cseq: seq,
                    branch: Arc::from(branch),
                })
        }
        _ => None,
    };
    Some(Bad {
        bytes: out.into_bytes(),
        invite,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_400_with_tag_and_ledger_key() {
        let raw = b"INVITE sip:bob@[bad SIP/2.0\r\nv: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bKx\r\n\
            f: <sip:a@b>;tag=1\r\nt: <sip:b@b>\r\ni: cid\r\nCSeq: 3 INVITE\r\nContent-Length: 0\r\n\r\n";
        let bad = build(raw, "wl").unwrap();
        let text = String::from_utf8(bad.bytes).unwrap();
        assert!(text.starts_with("SIP/2.0 400 Bad Request\r\n"));
        assert!(text.contains("To: <sip:b@b>;tag="));
        assert!(text.contains("Via: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bKx\r\n"));
        let k = bad.invite.unwrap();
        assert_eq!((&*k.call_id, k.cseq, &*k.branch), ("cid", 3, "z9hG4bKx"));
    }

    #[test]
    fn bad_cseq_still_gets_400_without_key() {
        let raw = b"INVITE sip:b@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nFrom: <sip:a@b>;tag=1\r\n\
            To: <sip:b@b>\r\nCall-ID: c\r\nCSeq: x INVITE\r\n\r\n";
        let bad = build(raw, "wl").unwrap();
        assert!(bad.invite.is_none());
        assert!(bad.bytes.starts_with(b"SIP/2.0 400"));
    }

    #[test]
    fn no_400_for_responses_acks_or_requests_without_via() {
        assert!(build(b"SIP/2.0 200 OK\r\n\r\n", "wl").is_none());
        assert!(build(
            b"ACK sip:x SIP/2.0\r\nVia: a\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n",
            "wl"
        )
        .is_none());
        assert!(build(b"BYE sip:x SIP/2.0\r\nFrom: a\r\nCall-ID: c\r\n\r\n", "wl").is_none());
    }

    #[test]
    fn missing_mandatory_headers_get_a_400_that_names_them() {
        let bad = build(b"BYE sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKb\r\nFrom: <sip:a@b>;tag=1\r\n\r\n", "wl")
            .unwrap();
        let text = String::from_utf8(bad.bytes).unwrap();
        assert!(
            text.starts_with("SIP/2.0 400 Missing To, Call-ID, CSeq\r\n"),
            "{text}"
        );
        assert!(text.contains("Via: SIP/2.0/TCP h;branch=z9hG4bKb\r\n"));
        assert!(text.contains("From: <sip:a@b>;tag=1\r\n"));
        assert!(bad.invite.is_none());
        // An INVITE without Call-ID is answered but cannot be keyed in the ledger.
        let bad = build(b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKi\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@b>\r\nCSeq: 1 INVITE\r\n\r\n", "wl")
            .unwrap();
        assert!(bad.bytes.starts_with(b"SIP/2.0 400 Missing Call-ID\r\n"));
        assert!(bad.invite.is_none());
    }
}
