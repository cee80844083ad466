//! The OS: socket tagging, the keep-alive handler's schedule, app lifecycle, and a simulated
//! phone for tests (issue 4).
//!
//! Socket tagging is a pair of free functions implemented once per OS family behind `#[cfg]`
//! (the pattern of quinn-udp): [`tag_control_socket`] for the SIP control flow (TCP) and
//! [`tag_media_socket`] for the RTP/RTCP sockets (UDP).
//!
//! | OS            | control flow                                        | media             |
//! |---------------|-----------------------------------------------------|-------------------|
//! | Linux/Android | SO_KEEPALIVE + TCP keep-alive times, TCP_NODELAY, DSCP CS3 | DSCP EF    |
//! | iOS/macOS     | keep-alive, TCP_NODELAY, `SO_NET_SERVICE_TYPE` = signaling | `SO_NET_SERVICE_TYPE` = voice |
//! | other         | SO_KEEPALIVE, TCP_NODELAY                           | nothing           |
//!
//! DSCP goes in the IPv4 TOS byte or the IPv6 traffic class, whichever family the socket is.
//! Tagging is best effort: a failure is returned so the caller can log it, and the socket keeps
//! working untagged.
//!
//! The rest is sans-IO: [`keepalive_schedule`] (when the OS-level keep-alive handler runs and what
//! one run does, inside a hard budget), [`lifecycle`] (the app's background/foreground events and
//! the background registration policy), and `sim` (a deterministic phone for tests; with the
//! `testkit` feature).

pub mod keepalive_schedule;
pub mod lifecycle;
#[cfg(any(test, feature = "testkit"))]
pub mod sim;
pub mod udp_errors;
pub(crate) mod wake_timer;

#[cfg(any(target_os = "linux", target_os = "android"))]
#[path = "linux.rs"]
mod imp;

#[cfg(any(target_os = "ios", target_os = "macos"))]
#[path = "apple.rs"]
mod imp;

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "ios",
    target_os = "macos"
)))]
#[path = "fallback.rs"]
mod imp;

pub use keepalive_schedule::{
    KeepAliveRun, KeepAliveSchedule, RunAction, RunId, RunOutcome, RunReport, RunTiming,
};
pub use lifecycle::{BackgroundPolicy, Lifecycle, WakeReason};

use std::io;
use std::time::Duration;

/// DSCP CS3 (24) in the TOS / traffic-class byte: SIP signaling (RFC 4594 §4.2 "Signaling").
pub const TOS_CS3: u32 = 0x60;
/// DSCP EF (46) in the TOS / traffic-class byte: RTP voice (RFC 3246, RFC 4594 "Telephony").
pub const TOS_EF: u32 = 0xB8;

/// How the control socket is tagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlSocketOptions {
    /// Idle time before the first TCP keep-alive probe (`TCP_KEEPIDLE`).
    pub keepalive_time: Duration,
    /// Time between probes (`TCP_KEEPINTVL`).
    pub keepalive_interval: Duration,
    /// Unanswered probes before the kernel drops the connection (`TCP_KEEPCNT`).
    pub keepalive_retries: u32,
    /// The TOS / traffic-class byte (`None`: leave it alone). Default [`TOS_CS3`].
    pub tos: Option<u32>,
}

impl Default for ControlSocketOptions {
    /// 30 s idle, 10 s between probes, 3 probes (a dead peer is noticed after about 60 s of
    /// silence even if no SIP keep-alive runs), DSCP CS3.
    fn default() -> Self {
        ControlSocketOptions {
            keepalive_time: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(10),
            keepalive_retries: 3,
            tos: Some(TOS_CS3),
        }
    }
}

/// Anything that owns a socket descriptor: `std` and `tokio` TCP streams and UDP sockets,
/// `socket2::Socket`, and a borrowed fd/SOCKET.
#[cfg(unix)]
pub trait AsSocket: std::os::fd::AsFd {}
#[cfg(unix)]
impl<T: std::os::fd::AsFd> AsSocket for T {}

/// Anything that owns a socket handle: `std` and `tokio` TCP streams and UDP sockets,
/// `socket2::Socket`, and a borrowed SOCKET.
#[cfg(windows)]
pub trait AsSocket: std::os::windows::io::AsSocket {}
#[cfg(windows)]
impl<T: std::os::windows::io::AsSocket> AsSocket for T {}

/// Tags a SIP control-flow socket (accepted or connected TCP) for this OS: keep-alive,
/// `TCP_NODELAY`, and the signaling service class. See the module table.
pub fn tag_control_socket<S: AsSocket>(sock: &S, opts: &ControlSocketOptions) -> io::Result<()> {
    imp::tag_control(socket2::SockRef::from(sock), opts)
}

/// Tags an RTP or RTCP socket (UDP) with the voice service class for this OS.
pub fn tag_media_socket<S: AsSocket>(sock: &S) -> io::Result<()> {
    let sock = socket2::SockRef::from(sock);
    let ipv6 = is_ipv6(&sock)?;
    imp::tag_media(sock, ipv6)
}

/// [`tag_media_socket`] for a socket whose family the caller knows (`ipv6`), maybe not bound
/// yet: no system call to ask the socket.
pub(crate) fn tag_media_socket_of<S: AsSocket>(sock: &S, ipv6: bool) -> io::Result<()> {
    imp::tag_media(socket2::SockRef::from(sock), ipv6)
}

/// Sets the TOS byte (IPv4) or traffic class (IPv6), by the socket's own family.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_dscp(sock: &socket2::SockRef<'_>, tos: u32) -> io::Result<()> {
    set_dscp_of(sock, tos, is_ipv6(sock)?)
}

/// [`set_dscp`] for a socket of the family `ipv6` says (maybe not bound yet).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_dscp_of(sock: &socket2::SockRef<'_>, tos: u32, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        sock.set_tclass_v6(tos)
    } else {
        sock.set_tos_v4(tos)
    }
}

/// Whether the socket is bound to an IPv6 address.
fn is_ipv6(sock: &socket2::SockRef<'_>) -> io::Result<bool> {
    Ok(matches!(
        sock.local_addr()?.as_socket(),
        Some(std::net::SocketAddr::V6(_))
    ))
}

/// The OS-level facility that wakes a suspended app to run the keep-alive handler (iOS's
/// `setKeepAliveTimeout`-style handler, an Android `AlarmManager`/foreground-service timer, or
/// the `sim::Phone`). The UA asks for it when entering background and clears it on foreground.
pub trait KeepAliveHost {
    /// Run the keep-alive handler every `period` (the host may clamp it to its minimum).
    /// Returns the period the host will actually use.
    fn schedule_keepalive(&mut self, period: Duration) -> Duration;
    /// Stop running the keep-alive handler.
    fn clear_keepalive(&mut self);
}
