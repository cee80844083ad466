//! # wakeline
//!
//! A SIP user agent built for softphones: SIP signaling over one long-lived TCP *control flow*
//! (the mobile "VoIP wake socket", RFC 5626 outbound), audio as Opus/PCMU/PCMA in RTP over UDP.
//!
//! ```no_run
//! use wakeline::{Config, Event, UserAgent};
//!
//! # async fn run() -> Result<(), wakeline::Error> {
//! let (ua, mut events) = UserAgent::builder(Config::default())
//!     .listen("127.0.0.1:5070".parse().unwrap())
//!     .start()
//!     .await?;
//! while let Some(event) = events.next().await {
//!     if let Event::Incoming { call, .. } = event {
//!         ua.call_handle(call).answer().await?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ## The run loop
//!
//! wakeline has two layers:
//!
//! - **The sans-IO core**, [`SignalingCore`](signaling::core::SignalingCore): every SIP state
//!   machine (framing, transactions, registration, dialogs, the invite state machine and its
//!   ledger) behind three kinds of calls. *Inputs* (`handle_received`, `handle_flow_up`,
//!   `handle_flow_down`, `handle_timeout`, and application commands such as `call`, `answer`,
//!   `hangup`, `handle_push`) always take the current time `now: Instant`; the core never
//!   reads the clock, sleeps or touches a socket. *Outputs* come out of
//!   [`poll_output`](signaling::core::SignalingCore::poll_output): bytes to write to a flow,
//!   a TCP connection to open or close, an [`Event`] for the application. *The next deadline*
//!   is [`poll_timeout`](signaling::core::SignalingCore::poll_timeout). The media side has the
//!   same shape ([`media::pipeline::MediaPipeline`]).
//! - **The driver**, [`driver`]: the only async code. [`UserAgentBuilder::start`](driver::UserAgentBuilder::start)
//!   spawns one tokio task that owns the core, the optional TCP listener, a reader and a writer
//!   task per flow, and one media task per call (its own UDP sockets, audio backends and the
//!   media pipeline). The task loops: drain the core's outputs, then wait for whichever comes
//!   first — bytes or EOF on a flow, an accepted connection, a command from a [`UserAgent`] or
//!   [`Call`] handle, a note from a media task, or the core's deadline — and feed it to the
//!   core with `Instant::now()`.
//!
//! Commands travel from the cheap, clonable handles ([`UserAgent`], [`Call`]) to the task over
//! a channel, and each `async fn` returns once the core has accepted or refused the command —
//! not when the network has answered. What happens next arrives, in order, on the single
//! [`Events`] stream. Reserving RTP ports, starting media when the core
//! reports [`Event::Media`], and stopping it when the call ends are the driver's job.
//!
//! Driving the core yourself (on another runtime, or in a test with a virtual clock) is the
//! same loop; nothing here touches the network:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use wakeline::signaling::core::{Output, SignalingCore};
//! use wakeline::signaling::message::Uri;
//! use wakeline::{Config, Event};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut core = SignalingCore::new(Config::default());
//! let mut now = Instant::now(); // the driver passes real time; a test passes virtual time
//! let bob = Uri::parse("sip:bob@127.0.0.1:5080;transport=tcp")?;
//! let call = core.call(now, bob, "127.0.0.1:4000".parse()?)?;
//!
//! let mut sent = Vec::new();
//! while let Some(out) = core.poll_output() {
//!     match out {
//!         // Open a TCP connection (or, for Transport::Udp, resolve the peer); report it with
//!         // handle_flow_up (or handle_flow_down).
//!         Output::Connect { flow, transport, host, port } => {
//!             assert_eq!(transport, wakeline::Transport::Tcp);
//!             assert_eq!((host.as_str(), port), ("127.0.0.1", 5080));
//!             let (local, remote) = ("127.0.0.1:40000".parse()?, "127.0.0.1:5080".parse()?);
//!             core.handle_flow_up(now, flow, local, remote);
//!         }
//!         // Write these bytes to the flow (here: the INVITE).
//!         Output::Transmit { bytes, .. } => sent.push(bytes),
//!         Output::Close { .. } => {}
//!         Output::Event(event) => println!("{event:?}"),
//!     }
//! }
//! assert!(sent.iter().any(|b| b.starts_with(b"INVITE sip:bob@")));
//!
//! // Nobody answers: sleep until each deadline and tell the core (Timer B, 64*T1 = 32 s).
//! let mut ended = None;
//! while let Some(deadline) = core.poll_timeout() {
//!     now = deadline;
//!     core.handle_timeout(now);
//!     while let Some(out) = core.poll_output() {
//!         if let Output::Event(Event::Ended { call: c, outcome, .. }) = out {
//!             ended = Some((c, outcome));
//!         }
//!     }
//!     if ended.is_some() { break; }
//! }
//! assert_eq!(ended, Some((call, wakeline::CallOutcome::Failed)));
//! # Ok(()) }
//! ```
//!
//! ## Events, in order
//!
//! An **incoming call** (direct, or on the registered control flow):
//!
//! 1. [`Event::Incoming`] — the INVITE was accepted into the ledger. Call
//!    [`Call::ring`] (180), [`Call::answer`] (200 with an SDP answer) or
//!    [`Call::reject`]. If the application does nothing, the core rejects it with 480 after
//!    `Config::ring_timeout`.
//! 2. [`Event::State`] `Ringing` once 180 is sent.
//! 3. [`Event::Media`] when the 200 OK with our answer is sent (or with the ACK when the
//!    INVITE had no offer): the negotiated codec and the peer's RTP address; the driver starts
//!    the call's media task.
//! 4. [`Event::State`] `Connected` when the caller's ACK arrives.
//! 5. While the call is up: [`Event::MediaStats`] about once a second, [`Event::Dtmf`] per
//!    digit received, `State` `Held` / `Resumed` and a new `Media` on a re-INVITE.
//! 6. `State` `Terminating` if we hang up, then [`Event::MediaReport`] (when media ran), then
//!    [`Event::Ended`] with the final status and a [`CallOutcome`].
//!
//! An **outgoing call** ([`UserAgent::call`]):
//!
//! 1. [`Event::FlowUp`] if a new TCP connection was opened for it, then [`Event::State`]
//!    `Calling` (INVITE sent), `Proceeding` (100 Trying), `Ringing` (180/183).
//! 2. [`Event::Media`] with the 2xx's SDP answer, then `State` `Connected` (ACK sent).
//! 3. As above: `MediaStats`, `Dtmf`, `Held` / `Resumed`, `Terminating`, `MediaReport`,
//!    `Ended`. A call that is never answered goes straight to `Ended` (`Rejected`, `Busy`,
//!    `Missed` after a CANCEL, or `Failed`).
//!
//! Registration reports [`Event::Registered`] (with the granted lifetime),
//! [`Event::RegistrationFailed`] (a retry with backoff follows unless the error is final) and
//! [`Event::Unregistered`]; flows report [`Event::FlowUp`] / [`Event::FlowDown`]. A lost
//! control flow is reconnected and re-registered on its own.
//!
//! ## The ledger guarantee
//!
//! Every INVITE that reaches the core is entered in a ledger keyed by Call-ID, CSeq and branch,
//! and the entry closes only when **exactly one final response** has been sent for it *and*
//! the application has been given **exactly one [`Event::Ended`]**. (If the connection an
//! unanswered INVITE came on dies for good, the response that can no longer be sent is recorded
//! as abandoned, and the call still ends once, `Failed`.) This holds through CANCEL
//! (487), a second INVITE while busy (486 by [`BusyPolicy`], or another `Incoming` with
//! [`BusyPolicy::Allow`]), no common codec (488), a malformed but answerable request (400),
//! ring timeouts (480), a dropped control flow, suspension and wake, and push notifications
//! that race their INVITE: no call is ever lost silently and none is answered twice.
//! [`SignalingCore::ledger_open`](signaling::core::SignalingCore::ledger_open) and
//! [`ledger_stats`](signaling::core::SignalingCore::ledger_stats) expose it; property tests
//! check it over random schedules.
//!
//! ## Media
//!
//! Each call gets an even RTP port and the RTCP port above it (rtcp-mux when the peer agrees),
//! bound on [`UserAgentBuilder::media_ip`](driver::UserAgentBuilder::media_ip). Offers and
//! answers follow RFC 3264 with the codec order of `Config::codecs` (Opus, PCMU, PCMA, and
//! RFC 4733 telephone-event). [`MediaOptions`] chooses where audio comes
//! from and goes to ([`AudioSource`]: default device, named device,
//! WAV file, tone, silence; [`AudioSink`]: device, WAV, null), an
//! optional recording of what the far end sent, and encoder settings. Every backend runs the
//! same real-time callback code, which only moves samples through lock-free rings; encoding,
//! jitter buffering (with concealment and Opus FEC) and decoding happen in the media task.
//! When a call ends its [`MediaReport`] arrives just before `Ended`.
//! Those options are the user agent's default; [`UserAgent::call_with`] and
//! [`Call::answer_with`] give one call its own. With `audio_session:`
//! [`AudioSession::Manual`] (CallKit) a call's RTP flows from the answer on but its audio source
//! and sink open only on [`Call::audio_session_activated`] and close on
//! [`Call::audio_session_deactivated`].
//!
//! On a machine without a sound card, `AudioSource::Default` fails; probe with
//! [`media::audio::start`] and fall back to a tone or silence, as `examples/softphone.rs` does.
//!
//! ## Mobile: background, keep-alive and push
//!
//! A phone app calls wakeline from its lifecycle callbacks:
//! [`UserAgent::set_background`] (longer bindings, no timer more frequent than the platform's
//! keep-alive period), [`UserAgent::run_keepalive`] (one CRLF ping and its pong, or a reconnect
//! and re-registration, within the handler's budget), [`UserAgent::network_changed`] (new
//! control flow, re-registration, re-INVITE of every call with new media sockets), and
//! [`UserAgent::handle_push`], which creates the call a push announces at once — so the app
//! can report it to CallKit before the push handler returns — and binds the INVITE to it when
//! it comes. Answering or ringing before the INVITE is fine: the core remembers it. The sans-IO
//! core has the same calls with an explicit `now`
//! ([`SignalingCore::handle_push`](signaling::core::SignalingCore::handle_push),
//! [`set_background`](signaling::core::SignalingCore::set_background),
//! [`run_keepalive`](signaling::core::SignalingCore::run_keepalive),
//! [`handle_network_changed`](signaling::core::SignalingCore::handle_network_changed) +
//! [`update_media`](signaling::core::SignalingCore::update_media)). See `docs/embedding.md`
//! and `docs/mobile.md`.
//!
//! ## Cargo features
//!
//! - `cli` (on by default): the `wakeline` command-line tool and its dependencies (clap,
//!   crossterm, plotters, toml, directories, tracing-subscriber, serde, ...). An app depends on
//!   the library alone with `wakeline = { version = "0.1", default-features = false }`; every
//!   name it needs is at the crate root and in [`prelude`].
//! - `testkit`: `platform::sim`, the simulated phone (OS, server and core on a virtual
//!   clock) for testing an app's glue — suspend, wake, a push before or after its INVITE, flow
//!   loss — without a network; and the core's peers (`signaling::core::testkit`).
//! - `legacy-voip-socket`: the iOS < 10 VoIP socket (see `docs/mobile.md`).
//!
//! Swift, Kotlin and Python bindings come from the `wakeline-ffi` crate (`ffi/`, UniFFI):
//! `scripts/bindings.sh` generates them, `examples/python/call.py` places a call with them.
//!
//! ## Examples
//!
//! - `examples/softphone.rs` — register from flags or `WAKELINE_*` variables, print events,
//!   answer on Enter, call a URI, hang up on Ctrl-C; default devices with a tone/null fallback.
//! - `examples/autoanswer.rs` — a bot that answers every call, plays a tone or a WAV file,
//!   records each call to `call-<n>.wav`, hangs up after N seconds and prints the media report.
//! - `examples/push_wake.rs` — the PushKit + CallKit flow with [`UserAgent::handle_push`] over
//!   127.0.0.1: a relay plays the server that holds the INVITE and sends the push, a second
//!   user agent calls; the user answers before the INVITE arrives, then after it.
//! - `examples/push_wake_core.rs` — the same story on the sans-IO core with a simulated phone
//!   and server on a virtual clock: background, a keep-alive run, suspension, a dropped flow,
//!   both orders of answer and INVITE, a network change mid-call.
//!
//! Run one with `cargo run --example softphone`.
// Unsafe code is denied everywhere; only `platform` (the Apple `setsockopt` call) opts back in.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod driver;
pub mod error;
pub mod media;
pub mod platform;
pub mod signaling;

// What an application uses, at the root and in the prelude (the original group follows).
pub use driver::{AudioSession, Events, Hold, MediaOptions, RejectCode, UserAgentBuilder};
pub use media::audio::{AudioConfig, AudioSink, AudioSource};
pub use media::codec::EncoderConfig;
pub use media::{MediaReport, MediaSnapshot};
pub use platform::RunReport;
pub use signaling::config::PushConfig;
pub use signaling::sdp::Codec;

/// Everything an application embedding the user agent uses, in one import:
/// `use wakeline::prelude::*;` (the same names are also at the crate root).
pub mod prelude {
    pub use crate::{
        Account, AudioConfig, AudioSession, AudioSink, AudioSource, BusyPolicy, Call, CallHandle,
        CallOutcome, CallState, Codec, Config, CoreError, EncoderConfig, Error, Event, Events,
        FlowId, Hold, MediaOptions, MediaReport, MediaSnapshot, PushConfig, RejectCode, RunReport,
        Transport, UserAgent, UserAgentBuilder,
    };
}

pub use driver::{Call, UserAgent};
pub use error::Error;
pub use signaling::config::{Account, AnswerPolicy, BusyPolicy, Config};
pub use signaling::core::{CallHandle, CallOutcome, CallState, CoreError, Event, FlowId};
pub use signaling::transport::Transport;
