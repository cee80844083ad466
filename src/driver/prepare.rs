//! A call's media preparation (call, answer, rebind after a network change), off the driver
//! loop: the media address (maybe DNS,
//! `route.rs`), the RTP/RTCP sockets, and the STUN mapping (`stun.rs`, up to `stun::GIVE_UP`
//! when the server is silent). Done inline, it stopped the whole loop — no SIP read or written,
//! no timer fired, no other call's command — for as long as it took (issue 8 follow-up).
//!
//! The loop plans synchronously what needs the core ([`route::media_plan`]), [`spawn`]s a task
//! that owns everything else, and gets [`Prepared`] back on a channel its `select!` polls;
//! only then does it call the core (`task.rs`, `media_prepared`), so the core sees the call or
//! the answer at the time it is really made, and a call ended meanwhile fails there.
//!
//! A preparation that cannot wait on the network — no DNS in the plan, no STUN to ask — is
//! done in place ([`now`]): a few non-blocking system calls (the route lookup, two binds),
//! cheaper than a task and a trip through the channel for every call.

use super::super::media::{MediaOptions, MediaSockets};
use super::super::media_rt::Home;
use super::super::resolve::Resolver;
use super::super::route::MediaPlan;
use super::super::stun;
use super::Reply;
use crate::signaling::core::CallHandle;
use crate::signaling::message::Uri;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the prepared media is for, with the API call waiting for the outcome.
#[derive(Debug)]
pub(super) enum Purpose {
    /// `UserAgent::call`: an INVITE to `target`.
    Call {
        target: Uri,
        media: Option<Box<MediaOptions>>,
        reply: Reply<CallHandle>,
    },
    /// `Call::answer`: the 200 OK to `call`.
    Answer {
        call: CallHandle,
        media: Option<Box<MediaOptions>>,
        reply: Reply<()>,
    },
    /// A network change: `call`'s new media and re-INVITE, then the `rest`, one after the
    /// other; `reply` after the last (`UserAgent::network_changed`).
    Rebind {
        call: CallHandle,
        rest: Vec<CallHandle>,
        reply: Reply<()>,
    },
}

/// A finished preparation: the sockets and the address to announce, or why there are none.
#[derive(Debug)]
pub(super) struct Prepared {
    pub purpose: Purpose,
    pub media: io::Result<(MediaSockets, SocketAddr)>,
}

/// Media address → sockets → STUN: what a call, an answer or a rebind needs before the core.
pub(super) async fn media(
    plan: MediaPlan,
    resolver: &Resolver,
    stun: Option<&str>,
) -> io::Result<(MediaSockets, SocketAddr)> {
    let ip = plan.ip(resolver).await?;
    let sockets = MediaSockets::reserve(ip)?;
    stun::announced(sockets, stun).await
}

/// [`media`] at once when nothing in it waits on the network (no STUN server configured, no
/// DNS in the plan); `None` when something does (then [`spawn`]).
pub(super) fn now(
    plan: &MediaPlan,
    stun: Option<&str>,
    home: Option<&Home>,
) -> Option<io::Result<(MediaSockets, SocketAddr)>> {
    if stun.is_some() {
        return None;
    }
    Some(plan.ip_now()?.and_then(|ip| {
        let sockets = MediaSockets::reserve_at(ip, std::time::Instant::now(), home)?;
        let addr = sockets.local_rtp();
        Ok((sockets, addr))
    }))
}

/// Prepares on a task of its own; the result comes back on `done`. If the loop is gone by
/// then, the result (sockets, reply) is dropped and the API call hears `Error::Stopped`.
pub(super) fn spawn(
    plan: MediaPlan,
    resolver: Arc<Resolver>,
    stun: Option<String>,
    purpose: Purpose,
    done: mpsc::UnboundedSender<Prepared>,
) {
    tokio::spawn(async move {
        let media = media(plan, &resolver, stun.as_deref()).await;
        let _ = done.send(Prepared { purpose, media });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::route;
    use crate::signaling::config::Config;
    use crate::signaling::core::SignalingCore;
    use std::net::{IpAddr, Ipv4Addr};

    #[tokio::test]
    async fn the_result_comes_back_with_its_purpose_and_sockets() {
        let config = Config::default();
        let core = SignalingCore::new(config.clone());
        let hints = super::super::super::resolve::ConnectHints::new(&config);
        let target = Uri::parse("sip:bob@127.0.0.1:5099").unwrap();
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let plan = route::media_plan(&core, Some(local), None, Some(&target), &hints);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (reply, _wait) = tokio::sync::oneshot::channel();
        let purpose = Purpose::Call {
            target: target.clone(),
            media: None,
            reply,
        };
        // A STUN server is never asked for loopback media.
        let stun = Some("192.0.2.1:3478".to_string());
        spawn(plan, Arc::new(Resolver::new(&[])), stun, purpose, tx);
        let done = rx.recv().await.unwrap();
        assert!(matches!(done.purpose, Purpose::Call { target: t, .. } if t == target));
        let (sockets, addr) = done.media.unwrap();
        assert_eq!(addr, sockets.local_rtp());
        assert_eq!(addr.ip(), local);
        assert_eq!(addr.port() % 2, 0);
    }

    #[test]
    fn without_dns_or_stun_the_media_is_prepared_in_place() {
        let config = Config::default();
        let core = SignalingCore::new(config.clone());
        let hints = super::super::super::resolve::ConnectHints::new(&config);
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let target = Uri::parse("sip:bob@127.0.0.1:5099").unwrap();
        let known = route::media_plan(&core, Some(local), None, Some(&target), &hints);
        let (sockets, addr) = now(&known, None, None).unwrap().unwrap();
        assert_eq!((addr, addr.port() % 2), (sockets.local_rtp(), 0));
        assert_eq!(addr.ip(), local);
        // A STUN server to ask, or a name to resolve: not in place.
        assert!(now(&known, Some("192.0.2.1:3478"), None).is_none());
        let named = Uri::parse("sip:bob@pbx.example.invalid:5099").unwrap();
        let lookup = route::media_plan(&core, None, None, Some(&named), &hints);
        assert!(now(&lookup, None, None).is_none());
    }
}
