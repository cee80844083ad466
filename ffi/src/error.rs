//! The one error type the foreign side sees.

/// Why a call into wakeline failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum WakelineError {
    /// An argument was malformed (a URI, an address, an audio source, a status code).
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What was wrong with it.
        message: String,
    },
    /// The command does not fit the call's state, or the call does not exist.
    #[error("refused: {message}")]
    Refused {
        /// The core's reason.
        message: String,
    },
    /// The user agent has stopped (after `shutdown`).
    #[error("the user agent has stopped")]
    Stopped,
    /// Sockets or the runtime failed.
    #[error("failed: {message}")]
    Failed {
        /// The cause.
        message: String,
    },
}

impl WakelineError {
    pub(crate) fn invalid(message: impl std::fmt::Display) -> Self {
        WakelineError::InvalidArgument {
            message: message.to_string(),
        }
    }
}

impl From<wakeline::Error> for WakelineError {
    fn from(e: wakeline::Error) -> Self {
        let message = e.to_string();
        match e {
            wakeline::Error::Stopped => WakelineError::Stopped,
            wakeline::Error::Parse(_) | wakeline::Error::Uri(_) | wakeline::Error::Config(_) => {
                WakelineError::InvalidArgument { message }
            }
            wakeline::Error::Core(_) => WakelineError::Refused { message },
            _ => WakelineError::Failed { message },
        }
    }
}

impl From<std::io::Error> for WakelineError {
    fn from(e: std::io::Error) -> Self {
        WakelineError::Failed {
            message: e.to_string(),
        }
    }
}
