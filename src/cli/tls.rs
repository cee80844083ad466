//! The TLS flags (`--ca`, `--tls-cert`, `--tls-key`, `listen --tls-bind`) and the `[tls]`
//! section of the configuration file, turned into the library's [`TlsOptions`].

use super::run::Fail;
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use wakeline::driver::{TlsOptions, UserAgentBuilder};

/// TLS options of every command that connects (`sips:` URIs, `;transport=tls`, `--transport tls`).
#[derive(Debug, Args, Clone, Default)]
pub struct TlsArgs {
    /// PEM file of the CA certificate(s) to trust for TLS instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Our TLS certificate chain (PEM): the TLS listener's (`listen --tls-bind`), and our client
    /// certificate when a server asks for one.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// `[tls]`: as `--ca`, `--tls-cert`, `--tls-key`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// As `--ca`.
    pub ca: Option<PathBuf>,
    /// As `--tls-cert`.
    pub cert: Option<PathBuf>,
    /// As `--tls-key`.
    pub key: Option<PathBuf>,
}

/// Fills the TLS flags the user left out from `[tls]`.
pub fn merge(args: &mut TlsArgs, file: &TlsSection) {
    if args.ca.is_none() {
        args.ca.clone_from(&file.ca);
    }
    if args.tls_cert.is_none() && args.tls_key.is_none() {
        args.tls_cert.clone_from(&file.cert);
        args.tls_key.clone_from(&file.key);
    }
}

/// Applies the TLS options, and the TLS listener when `bind` is given (it needs a certificate).
pub fn apply(
    builder: UserAgentBuilder,
    args: &TlsArgs,
    bind: Option<SocketAddr>,
) -> Result<UserAgentBuilder, Fail> {
    let cert = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => return Err(Fail::usage("--tls-cert and --tls-key go together")),
    };
    if bind.is_some() && cert.is_none() {
        return Err(Fail::usage("--tls-bind needs --tls-cert and --tls-key"));
    }
    let builder = builder.tls(TlsOptions {
        ca: args.ca.clone(),
        client_cert: cert.clone(),
        server_cert: cert,
    });
    Ok(match bind {
        Some(addr) => builder.tls_listen(addr),
        None => builder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_a_listener_needs_a_certificate() {
        let file = TlsSection {
            ca: Some("file-ca.pem".into()),
            cert: Some("file.pem".into()),
            key: Some("file.key".into()),
        };
        let mut args = TlsArgs {
            ca: Some("flag-ca.pem".into()),
            ..TlsArgs::default()
        };
        merge(&mut args, &file);
        assert_eq!(args.ca, Some("flag-ca.pem".into()));
        assert_eq!(args.tls_cert, Some("file.pem".into()));
        let ua = wakeline::UserAgent::builder(wakeline::Config::default());
        let bind = Some("127.0.0.1:0".parse().unwrap());
        let e = apply(ua, &TlsArgs::default(), bind).unwrap_err();
        assert!(e.msg.contains("--tls-bind needs"), "{}", e.msg);
    }
}
