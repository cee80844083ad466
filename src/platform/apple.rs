//! iOS and macOS socket tagging. Not compiled or run on the Linux CI: kept small.
//!
//! Apple's stacks map a socket's *network service type* to the Wi-Fi access category, the DSCP
//! and their own scheduling; setting `IP_TOS` alone is not enough there. The option is
//! `SO_NET_SERVICE_TYPE` at `SOL_SOCKET` (from `<sys/socket.h>`; the `libc` crate does not
//! export it, so the values are written out below and must match the SDK):
//!
//! | constant               | value    | meaning (xnu `sys/socket.h`)                         |
//! |------------------------|----------|------------------------------------------------------|
//! | `SO_NET_SERVICE_TYPE`  | `0x1116` | the option name                                      |
//! | `NET_SERVICE_TYPE_SIG` | `2`      | "Signaling": bursty, low loss, e.g. SIP (control flow) |
//! | `NET_SERVICE_TYPE_VO`  | `4`      | "Interactive Voice": constant rate, e.g. RTP          |
#![allow(unsafe_code)]

use super::{ControlSocketOptions, TOS_EF};
use socket2::{SockRef, TcpKeepalive};
use std::io;
use std::os::fd::AsRawFd;

/// `SO_NET_SERVICE_TYPE` (`<sys/socket.h>`).
const SO_NET_SERVICE_TYPE: libc::c_int = 0x1116;
/// `NET_SERVICE_TYPE_SIG`: signaling.
const NET_SERVICE_TYPE_SIG: libc::c_int = 2;
/// `NET_SERVICE_TYPE_VO`: interactive voice.
const NET_SERVICE_TYPE_VO: libc::c_int = 4;

/// Sets `SO_NET_SERVICE_TYPE` on `sock`.
fn set_net_service_type(sock: &SockRef<'_>, value: libc::c_int) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    // SAFETY: `fd` is an open socket borrowed for the duration of this call (`SockRef` holds the
    // borrow); the option value is a live `c_int` on our stack, and the length passed is exactly
    // its size, as setsockopt(2) requires. The call does not retain the pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_NET_SERVICE_TYPE,
            (&value as *const libc::c_int).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Keep-alive times, TCP_NODELAY, `NET_SERVICE_TYPE_SIG` (and, with the `legacy-voip-socket`
/// feature on iOS, the legacy VoIP stream mark).
pub(super) fn tag_control(sock: SockRef<'_>, opts: &ControlSocketOptions) -> io::Result<()> {
    let ka = TcpKeepalive::new()
        .with_time(opts.keepalive_time)
        .with_interval(opts.keepalive_interval)
        .with_retries(opts.keepalive_retries);
    sock.set_tcp_keepalive(&ka)?;
    sock.set_tcp_nodelay(true)?;
    set_net_service_type(&sock, NET_SERVICE_TYPE_SIG)?;
    #[cfg(all(target_os = "ios", feature = "legacy-voip-socket"))]
    legacy::mark_voip(&sock)?;
    Ok(())
}

/// `NET_SERVICE_TYPE_VO`, and DSCP EF for networks that honour the TOS byte.
pub(super) fn tag_media(sock: SockRef<'_>, ipv6: bool) -> io::Result<()> {
    set_net_service_type(&sock, NET_SERVICE_TYPE_VO)?;
    // Best effort: the stack may override it from the service type. (socket2 offers
    // IPV6_TCLASS on macOS only; on iOS an IPv6 socket relies on the service type alone.)
    if !ipv6 {
        let _ = sock.set_tos_v4(TOS_EF);
    }
    #[cfg(target_os = "macos")]
    if ipv6 {
        let _ = sock.set_tclass_v6(TOS_EF);
    }
    Ok(())
}

/// The legacy iOS "VoIP socket" (iOS < 10 deployment targets only).
///
/// Before PushKit, an app with the `voip` background mode could wrap its control socket in a
/// CFStream pair (`CFStreamCreatePairWithSocket`) and set `kCFStreamNetworkServiceType` to
/// `kCFStreamNetworkServiceTypeVoIP` on both streams; iOS then kept the socket alive while the
/// app was suspended and woke the app when data arrived. Apple deprecated this in iOS 9 and,
/// from iOS 10, apps must use PushKit + CallKit instead; App Store review rejects new apps that
/// rely on it. wakeline therefore ships it **off by default**, behind the
/// `legacy-voip-socket` feature, and does not depend on any CoreFoundation bindings crate: the
/// mark is applied by the host app (which already links CoreFoundation) on the fd it gets from
/// the UA. This stub only records that the feature was asked for, so a build that enables it
/// fails loudly at run time instead of silently pretending the socket is marked.
#[cfg(all(target_os = "ios", feature = "legacy-voip-socket"))]
mod legacy {
    use socket2::SockRef;
    use std::io;

    /// Returns `Unsupported`: the CFStream mark must be set by the host app (see the module doc
    /// and docs/mobile.md, "Legacy VoIP socket").
    pub(super) fn mark_voip(_sock: &SockRef<'_>) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "kCFStreamNetworkServiceTypeVoIP must be set by the host app on the control fd",
        ))
    }
}
