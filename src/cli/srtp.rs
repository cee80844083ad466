//! `--srtp` and `--srtp-over-plain-sip`: the SRTP policy a run uses.
//!
//! SDES (RFC 4568) puts the SRTP keys in the SDP, so they are only as safe as the signaling.
//! The default is `mandatory` over TLS and `optional` otherwise; over plain SIP (UDP/TCP)
//! SRTP requires `--srtp-over-plain-sip` (which warns once): without it the default is `off`
//! (logged at info level, said in `--help`), and an explicit `optional`/`mandatory` is
//! refused, so nobody believes audio is protected while its keys travel in the clear.

use wakeline::signaling::sdp::SrtpPolicy;

use super::args::{AccountArgs, MediaArgs};
use super::run::Fail;

/// What to tell the user about the policy chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Print this warning once on stderr.
    Warn(String),
    /// Log this at info level.
    Info(String),
}

/// The policy to use and what to say about it, if anything.
pub fn resolve(
    requested: Option<SrtpPolicy>,
    tls: bool,
    over_plain: bool,
) -> Result<(SrtpPolicy, Option<Notice>), Fail> {
    if tls {
        return Ok((requested.unwrap_or(SrtpPolicy::Mandatory), None));
    }
    let wanted = requested.unwrap_or(SrtpPolicy::Optional);
    match (wanted, over_plain, requested.is_some()) {
        (SrtpPolicy::Off, _, _) => Ok((SrtpPolicy::Off, None)),
        (p, true, _) => Ok((
            p,
            Some(Notice::Warn(format!(
                "warning: --srtp {}: SRTP keys travel in plain SIP (not TLS); anyone who can \
                 read the signaling can decrypt the audio",
                p.name()
            ))),
        )),
        (_, false, false) => Ok((
            SrtpPolicy::Off,
            Some(Notice::Info(
                "SRTP off: the signaling is not TLS and SDES keys would travel in the clear \
                 (--srtp-over-plain-sip allows it)"
                    .into(),
            )),
        )),
        (p, false, true) => Err(Fail::usage(format!(
            "--srtp {}: the signaling is not TLS, so the SDES keys would travel in the clear; \
             add --srtp-over-plain-sip to accept that",
            p.name()
        ))),
    }
}

/// True when `uri` makes the signaling TLS (`sips:` or `;transport=tls`).
pub fn uri_is_tls(uri: &str) -> bool {
    let lower = uri.trim().to_ascii_lowercase();
    lower.starts_with("sips:") || lower.contains(";transport=tls")
}

/// True when the account's signaling is TLS (its registrar or proxy URI, or `--transport tls`).
pub fn account_is_tls(a: &AccountArgs) -> bool {
    let by_uri = [&a.registrar, &a.proxy]
        .into_iter()
        .flatten()
        .any(|u| uri_is_tls(u));
    by_uri
        || a.transport
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("tls"))
}

/// The policies of a run, `(plain, tls)`: calls over TLS get `--srtp` (default `mandatory`);
/// calls over plain UDP/TCP get what [`resolve`] says for plain SIP. A run that has TLS
/// (`tls_run`: a TLS account or target, or a TLS listener) does not refuse an explicit `--srtp`
/// for lack of `--srtp-over-plain-sip`: its plain calls just go without SRTP. Prints the
/// warning (once).
pub fn policies(args: &MediaArgs, tls_run: bool) -> Result<(SrtpPolicy, SrtpPolicy), Fail> {
    let on_tls = args.srtp.unwrap_or(SrtpPolicy::Mandatory);
    let (plain, notice) = if tls_run && !args.srtp_over_plain_sip {
        (SrtpPolicy::Off, None)
    } else {
        resolve(args.srtp, false, args.srtp_over_plain_sip)?
    };
    match notice {
        Some(Notice::Warn(w)) => eprintln!("{w}"),
        Some(Notice::Info(i)) => tracing::info!("{i}"),
        None => {}
    }
    Ok((plain, on_tls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use SrtpPolicy::*;

    #[test]
    fn a_run_with_tls_protects_tls_calls_and_leaves_plain_ones_alone() {
        let mut args = MediaArgs::default();
        assert_eq!(policies(&args, true).unwrap(), (Off, Mandatory));
        args.srtp = Some(Optional);
        assert_eq!(policies(&args, true).unwrap(), (Off, Optional));
        // Without TLS an explicit policy over plain SIP still needs the flag.
        assert!(policies(&args, false).is_err());
        args.srtp_over_plain_sip = true;
        assert_eq!(policies(&args, false).unwrap(), (Optional, Optional));
    }

    #[test]
    fn defaults_follow_the_transport() {
        assert_eq!(resolve(None, true, false).unwrap(), (Mandatory, None));
        let (p, w) = resolve(None, false, false).unwrap();
        assert_eq!(p, Off);
        assert!(matches!(w, Some(Notice::Info(i)) if i.contains("--srtp-over-plain-sip")));
        let (p, w) = resolve(None, false, true).unwrap();
        assert_eq!(p, Optional);
        assert!(matches!(w, Some(Notice::Warn(w)) if w.contains("plain SIP")));
    }

    #[test]
    fn explicit_choices() {
        assert_eq!(resolve(Some(Off), false, false).unwrap(), (Off, None));
        assert_eq!(
            resolve(Some(Optional), true, false).unwrap(),
            (Optional, None)
        );
        let e = resolve(Some(Mandatory), false, false).unwrap_err();
        assert!(e.msg.contains("--srtp-over-plain-sip"), "{}", e.msg);
        assert!(resolve(Some(Optional), false, false).is_err());
        let (p, w) = resolve(Some(Mandatory), false, true).unwrap();
        assert_eq!(p, Mandatory);
        assert!(matches!(w, Some(Notice::Warn(_))));
    }

    #[test]
    fn tls_uris() {
        assert!(uri_is_tls("sips:bob@example.org"));
        assert!(uri_is_tls("sip:bob@192.0.2.1:5061;Transport=TLS"));
        assert!(!uri_is_tls("sip:bob@192.0.2.1:5060;transport=tcp"));
    }
}
