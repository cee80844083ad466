//! The top-level error type.

/// Everything that can go wrong through wakeline's public API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A SIP message did not parse.
    #[error(transparent)]
    Parse(#[from] crate::signaling::message::ParseError),
    /// A URI did not parse.
    #[error(transparent)]
    Uri(#[from] crate::signaling::message::UriError),
    /// An application command was refused by the core.
    #[error(transparent)]
    Core(#[from] crate::signaling::core::CoreError),
    /// A socket operation failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A socket operation on a known address failed: `bind 127.0.0.1:5070: address already in
    /// use`.
    #[error("{op} {addr}: {}", crate::driver::io_cause(source))]
    Socket {
        /// The operation (`bind`, `connect`).
        op: &'static str,
        /// The address it was for.
        addr: std::net::SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The media of a call could not do what was asked (e.g. DTMF without telephone-event).
    #[error("media: {0}")]
    Media(String),
    /// The user agent has stopped.
    #[error("the user agent has stopped")]
    Stopped,
    /// Bad configuration (the message names the key).
    #[error("config: {0}")]
    Config(String),
}
