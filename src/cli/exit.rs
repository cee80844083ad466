//! Exit statuses a script can branch on, and the one-line failure that carries them.

use std::process::ExitCode;
use wakeline::signaling::core::CoreError;
use wakeline::{CallOutcome, Error};

/// Why the program ends unsuccessfully; the numbers are part of the command-line contract
/// (`--help` says them: `exit_table!` in args.rs; and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The call or registration got a SIP failure (the code is in the message).
    Sip = 1,
    /// A usage or configuration error.
    Usage = 2,
    /// Network: refused, unreachable, timed out, DNS, TLS, address in use.
    Network = 3,
    /// A 401/407 challenge we could not pass.
    Auth = 4,
    /// Media: an audio device or a file.
    Media = 5,
    /// SIGINT (Ctrl-C).
    Interrupted = 130,
    /// SIGTERM.
    Terminated = 143,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }

    /// The status for a call or registration that ended with SIP `status` (0: no response).
    pub fn for_status(status: u16) -> Exit {
        match status {
            0 => Exit::Network,
            401 | 407 => Exit::Auth,
            _ => Exit::Sip,
        }
    }

    /// The status for a call that ended this way (`None` for a success).
    pub fn for_outcome(outcome: CallOutcome, status: Option<u16>) -> Option<Exit> {
        match outcome {
            CallOutcome::Answered => None,
            CallOutcome::AuthFailed => Some(Exit::Auth),
            CallOutcome::Failed if status.is_none() => Some(Exit::Network),
            _ => Some(Exit::Sip),
        }
    }
}

/// A failure that ends the program with one line on stderr and an [`Exit`] status.
#[derive(Debug)]
pub struct Fail {
    /// The line: operation, address, cause.
    pub msg: String,
    /// The exit status.
    pub exit: Exit,
}

impl Fail {
    /// A failure with this status.
    pub fn new(exit: Exit, msg: impl Into<String>) -> Self {
        Fail {
            msg: msg.into(),
            exit,
        }
    }

    /// A usage or configuration error (exit 2).
    pub fn usage(msg: impl Into<String>) -> Self {
        Fail::new(Exit::Usage, msg)
    }

    /// A media error (exit 5).
    pub fn media(msg: impl Into<String>) -> Self {
        Fail::new(Exit::Media, msg)
    }

    /// The same failure with `what: ` in front of its message.
    pub fn context(self, what: &str) -> Self {
        Fail::new(self.exit, format!("{what}: {}", self.msg))
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        let exit = match &e {
            Error::Socket { .. } | Error::Io(_) => Exit::Network,
            Error::Parse(_) | Error::Uri(_) | Error::Config(_) => Exit::Usage,
            Error::Core(CoreError::BadTarget(_) | CoreError::NoAccount) => Exit::Usage,
            _ => Exit::Sip,
        };
        Fail::new(exit, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_table() {
        assert_eq!(Exit::for_status(0), Exit::Network);
        assert_eq!(Exit::for_status(407), Exit::Auth);
        assert_eq!(Exit::for_status(403), Exit::Sip);
        assert_eq!(Exit::for_outcome(CallOutcome::Answered, Some(200)), None);
        assert_eq!(
            Exit::for_outcome(CallOutcome::Failed, None),
            Some(Exit::Network)
        );
        assert_eq!(
            Exit::for_outcome(CallOutcome::Busy, Some(486)),
            Some(Exit::Sip)
        );
        assert_eq!(
            Exit::for_outcome(CallOutcome::AuthFailed, Some(401)),
            Some(Exit::Auth)
        );
        let bind = Error::Socket {
            op: "bind",
            addr: "127.0.0.1:5070".parse().unwrap(),
            source: std::io::Error::from_raw_os_error(98),
        };
        let f = Fail::from(bind);
        assert_eq!(f.exit, Exit::Network);
        assert_eq!(f.msg, "bind 127.0.0.1:5070: address already in use");
    }
}
