//! The tokio driver: the only async code in wakeline.
//!
//! One task owns the [`SignalingCore`](crate::signaling::core::SignalingCore), the TCP listener and
//! one reader and one writer task per flow. It feeds the core with bytes, flow changes, commands
//! and timeouts, and carries out what the core asks for. Media sockets (one UDP port per call) are
//! reserved here and announced in SDP.
//!
//! An outgoing connect resolves its target the RFC 3263 way (`resolve.rs` asks DNS for a
//! sans-IO [`Rfc3263`](crate::signaling::rfc3263::Rfc3263) resolution) and tries the targets
//! in order (`flow.rs`), afresh on every reconnect.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wakeline::Error> {
//! use wakeline::{Config, UserAgent};
//! let (ua, mut events) = UserAgent::builder(Config::default())
//!     .listen("127.0.0.1:5070".parse().unwrap())
//!     .start()
//!     .await?;
//! let call = ua.call("sip:bob@127.0.0.1:5080;transport=tcp").await?;
//! while let Some(event) = events.next().await {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```

mod api;
mod call_options;
mod cause;
mod flow;
mod listener;
mod media;
mod media_pool;
mod media_rt;
mod media_session;
mod media_sockets;
mod paced_clock;
mod progress;
mod resolve;
mod route;
mod stun;
mod tap;
mod task;
mod tls;
mod udp;

pub use api::{Call, Events, RejectCode, UserAgent, UserAgentBuilder};
pub use call_options::{AudioSession, Hold};
pub use cause::io_cause;
pub use listener::ListenerLimits;
pub use media::MediaOptions;
pub use tap::{PacketTap, Tap};
pub use tls::{TlsError, TlsOptions};
