//! # wakeline
//!
//! A SIP user agent built for softphones: SIP signaling over one long-lived TCP *control flow*
//! (the mobile "VoIP wake socket"), audio as RTP over UDP.
//!
//! The protocol logic lives in sans-IO state machines ([`signaling`]) driven with explicit time;
//! the [`driver`] module is the only async code and owns the sockets.
// Unsafe code is denied everywhere; only `platform` (the Apple `setsockopt` call) opts back in.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod driver;
pub mod error;
pub mod media;
pub mod platform;
pub mod signaling;

pub use driver::{Call, UserAgent};
pub use error::Error;
pub use signaling::config::{Account, AnswerPolicy, BusyPolicy, Config};
pub use signaling::core::{CallHandle, CallOutcome, CallState, Event, FlowId};
