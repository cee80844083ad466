//! UniFFI bindings for wakeline: one definition (these proc-macros) from which
//! `scripts/bindings.sh` generates Swift, Kotlin and Python.
//!
//! The foreign side creates a [`UserAgent`] from a [`UaConfig`] and an [`EventListener`]; the
//! tokio runtime lives inside that object. Every method blocks the calling thread until the
//! driver has accepted or refused the command (as the Rust `async fn`s return), never until the
//! network answers: what happens next arrives as [`CallEvent`]s on the listener, in order, on
//! one thread of the user agent's own. A listener may call back into the user agent.

uniffi::setup_scaffolding!();

mod config;
mod error;
mod events;
mod ua;

pub use config::{AccountConfig, MediaConfig, UaConfig};
pub use error::WakelineError;
pub use events::{CallEvent, CallOutcome, CallState, EventListener};
pub use ua::{Call, Hold, KeepAliveResult, UserAgent};
