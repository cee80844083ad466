//! SIP over TLS (RFC 3261 §26, RFC 5922, RFC 5630) with rustls and its `ring` provider.
//!
//! - Client: TLS 1.3 and 1.2, SNI, and the server's certificate checked against the URI's host
//!   (a DNS name in a DNS SAN, an IP literal in an IP SAN; webpki ignores the subject CN). Trust
//!   comes from the platform's roots (rustls-native-certs) unless a CA file is given, which
//!   then replaces them. There is no switch to accept any certificate and no plaintext
//!   fallback: a failed handshake ends the connect with the reason.
//! - One [`TlsClient`] per user agent: rustls keeps its session cache in the client config, so
//!   a reconnect of the same UA resumes (TLS 1.3 tickets, TLS 1.2 session IDs).
//! - Server (`listen --tls-bind`): a certificate chain and key; no client certificate asked.
//! - `SSLKEYLOGFILE` names a file the session secrets are appended to (NSS key log format,
//!   for Wireshark); unset, nothing is written.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a TLS handshake (after the TCP connect) may take.
pub(crate) const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// TLS settings of a user agent (builder: [`UserAgentBuilder::tls`](super::UserAgentBuilder::tls)).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of the CA certificates to trust instead of the platform's roots.
    pub ca: Option<PathBuf>,
    /// Our client certificate chain and its key (PEM files), for servers that ask for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The TLS listener's certificate chain and key (PEM files); needed to accept TLS.
    pub server_cert: Option<(PathBuf, PathBuf)>,
}

/// A TLS problem with the user's files or settings.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("TLS: {path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// No CA file was given and the platform has no trusted roots.
    #[error("TLS: no trusted root certificates on this system (give a CA file: --ca)")]
    NoRoots,
    /// rustls refused the configuration (e.g. a key that does not match its certificate).
    #[error("TLS: {0}")]
    Config(String),
}

fn file_error(path: &Path, why: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Every certificate in a PEM file (at least one).
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

/// The `ring` provider: it builds with a C compiler alone (aws-lc-rs needs more tools). rustls
/// 0.23.48 deprecates it for lacking post-quantum key exchange (X25519MLKEM768, which only
/// aws-lc-rs offers); the classical suites and groups it has are the ones SIP peers speak.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The client side: one rustls config (and so one session cache) per user agent.
#[derive(Clone)]
pub(crate) struct TlsClient {
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

impl TlsClient {
    /// Reads the CA file (else the platform's roots) and the client certificate, if any.
    pub(crate) fn new(opts: &TlsOptions) -> Result<TlsClient, TlsError> {
        let mut roots = RootCertStore::empty();
        match &opts.ca {
            Some(path) => {
                for cert in load_certs(path)? {
                    roots.add(cert).map_err(|e| file_error(path, e))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for e in &found.errors {
                    tracing::debug!("platform root certificates: {e}");
                }
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsError::NoRoots);
                }
            }
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match &opts.client_cert {
            Some((cert, key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| TlsError::Config(format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.key_log = Arc::new(rustls::KeyLogFile::new());
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The TLS handshake over a connected TCP stream, verifying the certificate against `host`
    /// (the URI's host: a DNS name or an IP literal). The error names the problem.
    pub(crate) async fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("TLS: {host:?} is not a valid server name"))?;
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|e| describe(&e))
    }
}

/// The server side of `listen --tls-bind`.
#[derive(Clone)]
pub(crate) struct TlsServer {
    pub(crate) acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsServer")
    }
}

impl TlsServer {
    /// Reads the certificate chain and key of the listener.
    pub(crate) fn new(cert: &Path, key: &Path) -> Result<TlsServer, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| TlsError::Config(format!("{}: {e}", cert.display())))?;
        config.key_log = Arc::new(rustls::KeyLogFile::new());
        // TLS 1.3 tickets (stateless); TLS 1.2 session IDs use the default in-memory cache.
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(TlsServer {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// The TLS listener (`listen --tls-bind`): a TCP listener and the server config.
#[derive(Debug)]
pub(crate) struct TlsListener {
    pub(crate) listener: tokio::net::TcpListener,
    pub(crate) server: TlsServer,
    pub(crate) local_addr: std::net::SocketAddr,
    /// Handshakes in progress, bounded by [`MAX_HANDSHAKES`].
    pub(crate) handshakes: Arc<tokio::sync::Semaphore>,
}

/// Most TLS handshakes in progress on the listener at once; more connections are closed.
pub(crate) const MAX_HANDSHAKES: usize = 32;

impl TlsListener {
    /// Binds `addr` with the certificate of `opts.server_cert`.
    pub(crate) async fn bind(
        addr: std::net::SocketAddr,
        opts: &TlsOptions,
    ) -> Result<TlsListener, crate::error::Error> {
        use crate::error::Error;
        let Some((cert, key)) = &opts.server_cert else {
            return Err(Error::Config(
                "a TLS listener needs a certificate and key (--tls-cert, --tls-key)".into(),
            ));
        };
        let server = TlsServer::new(cert, key).map_err(|e| Error::Config(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("SIP over TLS at {addr}: {e}")))?;
        let local_addr = listener.local_addr()?;
        Ok(TlsListener {
            listener,
            server,
            local_addr,
            handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES)),
        })
    }

    /// Runs the server handshake of an accepted connection in its own task (the driver loop
    /// never waits for it) and reports the stream, or drops the connection on failure.
    pub(crate) fn handshake(
        &self,
        tcp: TcpStream,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
        events: tokio::sync::mpsc::UnboundedSender<super::flow::FlowEvent>,
    ) {
        let Ok(permit) = self.handshakes.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "TLS: {MAX_HANDSHAKES} handshakes in progress; closed");
            return;
        };
        let acceptor = self.server.acceptor.clone();
        tokio::spawn(async move {
            let accept = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
            let result = accept.await;
            drop(permit);
            match result {
                Ok(Ok(stream)) => {
                    let _ = events.send(super::flow::FlowEvent::TlsAccepted {
                        stream: Box::new(stream),
                        local,
                        remote,
                    });
                }
                Ok(Err(e)) => tracing::info!(%remote, "TLS handshake refused: {}", describe(&e)),
                Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
            }
        });
    }
}

/// A handshake failure in words: `TLS: certificate not valid for name "x"`, `TLS: certificate
/// expired`, `TLS: certificate signed by an unknown CA`, or rustls's own description.
pub(crate) fn describe(e: &std::io::Error) -> String {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return format!("TLS: {e}");
    };
    match tls {
        rustls::Error::InvalidCertificate(c) => format!("TLS: {}", certificate_problem(c)),
        other => format!("TLS: {other}"),
    }
}

fn certificate_problem(c: &CertificateError) -> String {
    match c {
        CertificateError::NotValidForNameContext { expected, .. } => {
            format!("certificate not valid for name {:?}", expected.to_str())
        }
        CertificateError::NotValidForName => "certificate not valid for the name".into(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "certificate expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate not valid yet".into()
        }
        CertificateError::UnknownIssuer => "certificate signed by an unknown CA".into(),
        other => format!("invalid certificate ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn certificate_errors_name_the_problem() {
        let name = ServerName::try_from("sip.example.test").unwrap();
        let wrong = rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected: name,
            presented: vec!["other.example.test".into()],
        });
        assert_eq!(
            describe(&io(wrong)),
            "TLS: certificate not valid for name \"sip.example.test\""
        );
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(describe(&io(expired)), "TLS: certificate expired");
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            describe(&io(unknown)),
            "TLS: certificate signed by an unknown CA"
        );
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof");
        assert_eq!(describe(&eof), "TLS: eof");
    }

    #[test]
    fn unreadable_files_are_named() {
        let opts = TlsOptions {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let e = TlsClient::new(&opts).unwrap_err().to_string();
        assert!(e.starts_with("TLS: /nonexistent/ca.pem: "), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = TlsServer::new(&empty, &empty).unwrap_err().to_string();
        assert!(e.contains("no certificate"), "{e}");
    }
}
