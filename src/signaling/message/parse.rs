//! Parsing: normalisation before rsip, our own start line, URI and typed-value parsers.
//!
//! TODO(helper: message): implement everything marked `todo!()`.

use super::{CSeq, Message, NameAddr, Uri, UriError, Via};

/// Why a message (or a header value) did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The start line is not a SIP request or status line.
    #[error("bad start line: {0}")]
    StartLine(String),
    /// The SIP version is not SIP/2.0.
    #[error("unsupported SIP version {0:?}")]
    Version(String),
    /// A header line has no colon or an empty name.
    #[error("bad header line: {0}")]
    HeaderLine(String),
    /// A header value did not parse (the name says which).
    #[error("bad {header} value: {why}")]
    HeaderValue {
        /// The header's canonical name.
        header: &'static str,
        /// What was wrong.
        why: String,
    },
    /// The Request-URI (or another URI) did not parse.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// Content-Length does not match the body.
    #[error("Content-Length {declared} but body has {actual} bytes")]
    ContentLength {
        /// Declared length.
        declared: usize,
        /// Actual body length.
        actual: usize,
    },
    /// The message is not valid UTF-8 in its start line or headers.
    #[error("message head is not UTF-8")]
    NotUtf8,
    /// rsip refused the normalised header section.
    #[error("header section rejected: {0}")]
    Rsip(String),
}

pub(crate) fn parse_message(_bytes: &[u8]) -> Result<Message, ParseError> {
    todo!()
}

pub(crate) fn parse_uri(_text: &str) -> Result<Uri, UriError> {
    todo!()
}

pub(crate) fn parse_cseq(_value: &str) -> Result<CSeq, ParseError> {
    todo!()
}

pub(crate) fn parse_via(_value: &str) -> Result<Via, ParseError> {
    todo!()
}

pub(crate) fn parse_name_addr(_value: &str) -> Result<NameAddr, ParseError> {
    todo!()
}
