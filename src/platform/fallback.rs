//! Other OSes: the portable part only (SO_KEEPALIVE, TCP_NODELAY); no service class.

use super::ControlSocketOptions;
use socket2::SockRef;
use std::io;

/// SO_KEEPALIVE and TCP_NODELAY; keep-alive times and DSCP are left to the OS defaults.
pub(super) fn tag_control(sock: SockRef<'_>, _opts: &ControlSocketOptions) -> io::Result<()> {
    sock.set_keepalive(true)?;
    sock.set_tcp_nodelay(true)
}

/// Nothing: media sockets stay untagged.
pub(super) fn tag_media(_sock: SockRef<'_>, _ipv6: bool) -> io::Result<()> {
    Ok(())
}
