//! The public async API: [`UserAgent`], [`Call`], [`Events`].

use super::call_options::Hold;
use super::media::MediaOptions;
use super::progress::{Progress, Stage};
use super::task::{Command, DriverTask};
use crate::error::Error;
use crate::platform::RunReport;
use crate::signaling::config::Config;
use crate::signaling::core::{CallHandle, CallOutcome, CoreError, Event};
use crate::signaling::message::Uri;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

// For the per-call awaitables and the `Stream` of events.
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Builds a [`UserAgent`].
#[derive(Debug)]
pub struct UserAgentBuilder {
    config: Config,
    listen: Option<SocketAddr>,
    media_ip: Option<IpAddr>,
    media: MediaOptions,
    tap: super::tap::Tap,
    limits: super::listener::ListenerLimits,
    dns_servers: Vec<SocketAddr>,
    tls: super::tls::TlsOptions,
    tls_listen: Option<SocketAddr>,
    shutdown_grace: Duration,
    stun: Option<String>,
}

impl UserAgentBuilder {
    /// How long shutdown (explicit, or dropping every handle) waits for the BYEs, CANCELs and
    /// the un-REGISTER to be answered before it gives up on them (default 2 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Also accept direct SIP over TCP and UDP on this address (calls that do not come
    /// through the registrar's flow).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// TLS settings: the CA file to trust instead of the platform's roots, a client
    /// certificate, the TLS listener's certificate (see [`TlsOptions`](super::TlsOptions)).
    pub fn tls(mut self, options: super::tls::TlsOptions) -> Self {
        self.tls = options;
        self
    }

    /// Also accept direct SIP over TLS on this address; needs
    /// [`TlsOptions::server_cert`](super::TlsOptions::server_cert).
    pub fn tls_listen(mut self, addr: SocketAddr) -> Self {
        self.tls_listen = Some(addr);
        self
    }

    /// Limits on the connections peers open to the listener: a cap, idle and slow-head
    /// timeouts, a bound on buffered partial messages (default: [`ListenerLimits::default`]).
    ///
    /// [`ListenerLimits::default`]: super::ListenerLimits
    pub fn listener_limits(mut self, limits: super::listener::ListenerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The IP address to bind media (RTP) sockets to and announce in SDP, for every call.
    /// Without it each call uses the local address that reaches its peer: the local address of
    /// the call's flow, or the source address the OS routes to the next hop (multi-homed hosts
    /// may want to override that). It must be a unicast address (not `0.0.0.0` or `::`).
    pub fn media_ip(mut self, ip: IpAddr) -> Self {
        self.media_ip = Some(ip);
        self
    }

    /// SRTP (SDES) policy for this UA's calls; the same as setting [`Config::srtp`]. SDES keys
    /// travel in the SDP: turn SRTP on where the signaling is TLS, or knowingly without it.
    pub fn srtp(mut self, policy: crate::signaling::sdp::SrtpPolicy) -> Self {
        self.config.srtp = policy;
        self
    }

    /// Resolve SIP hosts (RFC 3263: NAPTR, SRV, A/AAAA) with these DNS servers instead of the
    /// system's (`/etc/resolv.conf`). An empty list means the system's.
    pub fn dns_servers(mut self, servers: Vec<SocketAddr>) -> Self {
        self.dns_servers = servers;
        self
    }

    /// Learn each call's public media address from this STUN server (RFC 8489; `HOST`,
    /// `HOST:PORT`, `IP`, `[IPv6]:PORT`; port 3478 by default) for NAT without a media anchor:
    /// before an offer or answer, a Binding from the call's RTP socket, and the SDP announces
    /// the mapping. No answer within 1.5 s: the local address, with a warning.
    pub fn stun_server(mut self, server: impl Into<String>) -> Self {
        self.stun = Some(server.into());
        self
    }

    /// Sees a copy of every SIP message and RTP/RTCP datagram sent and received (capture).
    pub fn tap(mut self, tap: std::sync::Arc<dyn super::tap::PacketTap>) -> Self {
        self.tap = super::tap::Tap::new(tap);
        self
    }

    /// How calls get their audio (default: the system's default input and output devices).
    pub fn media(mut self, options: MediaOptions) -> Self {
        self.media = options;
        self
    }

    /// Binds the listener (if any) and starts the driver task on the current tokio runtime.
    ///
    /// Returns the handle and the stream of events. Registration is not started: call
    /// [`UserAgent::register`].
    pub async fn start(self) -> Result<(UserAgent, Events), Error> {
        let listener =
            match self.listen {
                Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(
                    |source| Error::Socket {
                        op: "bind",
                        addr,
                        source,
                    },
                )?),
                None => None,
            };
        let local_addr = match &listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        if let Some(ip) = self
            .media_ip
            .filter(|ip| ip.is_unspecified() || ip.is_multicast())
        {
            return Err(Error::Config(format!(
                "media_ip: {ip} is not a unicast address the peer can send to"
            )));
        }
        // SIP over UDP at the same address (and port) as the TCP listener.
        let udp = match local_addr {
            Some(addr) => Some(std::net::UdpSocket::bind(addr).map_err(|e| {
                std::io::Error::new(e.kind(), format!("SIP over UDP at {addr}: {e}"))
            })?),
            None => None,
        };
        // Files the user named must be right at start; missing platform roots only matter
        // (and are reported) when a TLS connect needs them.
        let tls_client = match super::tls::TlsClient::new(&self.tls) {
            Ok(c) => Ok(c),
            Err(e) if self.tls.ca.is_some() || self.tls.client_cert.is_some() => {
                return Err(Error::Config(e.to_string()))
            }
            Err(e) => Err(e.to_string()),
        };
        let tls_listener = match self.tls_listen {
            Some(addr) => Some(super::tls::TlsListener::bind(addr, &self.tls).await?),
            None => None,
        };
        let mut config = self.config;
        let tls_local_addr = tls_listener.as_ref().map(|l| l.local_addr);
        config.tls_listen = tls_local_addr;
        // A wildcard listener (0.0.0.0 / ::) is kept as it is: the core's Contact then takes
        // each flow's own local address (the interface it reached us on) with the listen port.
        if config.listen.is_none() {
            config.listen = local_addr;
        }
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let progress = Arc::new(Progress::default());
        let ev_tx = EventSink {
            tx: ev_tx,
            progress: progress.clone(),
        };
        let task = DriverTask::new(
            config,
            listener,
            self.media_ip,
            self.media,
            self.tap,
            cmd_rx,
            ev_tx,
        )
        .with_listener_limits(self.limits)
        .with_shutdown_grace(self.shutdown_grace)
        .with_dns_servers(&self.dns_servers)
        .with_stun(self.stun)
        .with_udp(udp)
        .with_tls(tls_client, tls_listener);
        let core_id = task.core_id();
        tokio::spawn(task.run());
        Ok((
            UserAgent {
                cmd: cmd_tx,
                local_addr,
                progress,
                tls_local_addr,
                core_id,
            },
            Events { rx: ev_rx },
        ))
    }
}

/// A running SIP user agent. Cheap to clone; the driver stops when [`UserAgent::shutdown`] is
/// called or every handle (this and every [`Call`]) is dropped — both hang up every call and
/// un-register first, and [`Events`] delivers every `MediaReport` and `Ended` before it ends.
/// If the tokio runtime is dropped instead, nothing more can run: see the `shutdown` module
/// notes in [`UserAgent::shutdown`].
#[derive(Debug, Clone)]
pub struct UserAgent {
    cmd: mpsc::UnboundedSender<Command>,
    local_addr: Option<SocketAddr>,
    progress: Arc<Progress>,
    tls_local_addr: Option<SocketAddr>,
    /// The id of the driver's core: the only [`CallHandle`]s this user agent acts on.
    core_id: u32,
}

/// The application's events, in order.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event; `None` once the user agent has stopped.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is already queued, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

/// The same events as [`Events::next`], for `StreamExt` combinators and `select!` loops.
impl futures_core::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// One call. Commands are sent to the driver; the outcome arrives as [`Event`]s.
#[derive(Debug, Clone)]
pub struct Call {
    handle: CallHandle,
    ua: UserAgent,
}

impl UserAgent {
    /// A builder for this configuration.
    pub fn builder(config: Config) -> UserAgentBuilder {
        UserAgentBuilder {
            config,
            listen: None,
            media_ip: None,
            media: MediaOptions::default(),
            tap: super::tap::Tap::default(),
            limits: super::listener::ListenerLimits::default(),
            dns_servers: Vec::new(),
            tls: super::tls::TlsOptions::default(),
            tls_listen: None,
            shutdown_grace: super::task::DEFAULT_GRACE,
            stun: None,
        }
    }

    /// The listener's address, if one was bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The TLS listener's address, if one was bound.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addr
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Starts registering with the configured account (connects the control flow first).
    /// Progress arrives as `Registered` / `RegistrationFailed` events.
    pub async fn register(&self) -> Result<(), Error> {
        self.ask(Command::Register).await
    }

    /// Removes the binding (REGISTER with Expires: 0).
    pub async fn unregister(&self) -> Result<(), Error> {
        self.ask(Command::Unregister).await
    }

    /// Places a call to `target` (a SIP URI, e.g. `sip:bob@127.0.0.1:5080;transport=tcp`)
    /// with the user agent's [`MediaOptions`] (see [`UserAgent::call_with`]).
    pub async fn call(&self, target: &str) -> Result<Call, Error> {
        self.place(target, None).await
    }

    /// Places a call with its own media options instead of the user agent's (the builder's
    /// [`media`](UserAgentBuilder::media)), e.g. `audio: AudioSession::Manual` for a call
    /// CallKit runs, or another source, sink or recording.
    pub async fn call_with(&self, target: &str, media: MediaOptions) -> Result<Call, Error> {
        self.place(target, Some(Box::new(media))).await
    }

    async fn place(&self, target: &str, media: Option<Box<MediaOptions>>) -> Result<Call, Error> {
        let uri = Uri::parse(target)?;
        let handle = self
            .ask(|reply| Command::Call {
                target: uri,
                media,
                reply,
            })
            .await?;
        Ok(Call {
            handle,
            ua: self.clone(),
        })
    }

    /// The [`Call`] for a handle from an event (e.g. `Event::Incoming`). A handle from another
    /// user agent gives a `Call` whose commands fail with [`CoreError::UnknownCall`] (and whose
    /// awaitables report a failed call at once): it never acts on a call of this one.
    pub fn call_handle(&self, handle: CallHandle) -> Call {
        Call {
            handle,
            ua: self.clone(),
        }
    }

    /// The [`Call`] numbered `number` in this user agent ([`CallHandle::number`]), for
    /// bindings and logs that carry the number only.
    pub fn call_by_number(&self, number: u64) -> Call {
        self.call_handle(CallHandle::new(self.core_id, number))
    }

    /// A VoIP push arrived (PushKit/FCM) for the call with this Call-ID: the call is created at
    /// once (`Event::Incoming { pushed: true, .. }`, so the app can report it to CallKit), the
    /// control flow reconnects and re-registers on the fastest path, and the INVITE binds to this
    /// call when it arrives. Answering before the INVITE is fine: it is applied when it comes.
    /// If it never comes within `Config::push_timeout`, the call ends as missed.
    pub async fn handle_push(&self, call_id: &str, from: Option<&str>) -> Result<Call, Error> {
        let (call_id, from) = (call_id.to_string(), from.map(str::to_string));
        let handle = self
            .ask(|reply| Command::Push {
                call_id,
                from,
                reply,
            })
            .await?;
        Ok(self.call_handle(handle))
    }

    /// Background mode (`true`): the UA keeps no timer that fires more often than
    /// `keepalive_period`; registration refreshes ride on [`UserAgent::run_keepalive`] runs,
    /// which the OS's keep-alive handler (or the app) calls once per period.
    pub async fn set_background(&self, on: bool, keepalive_period: Duration) -> Result<(), Error> {
        self.ask(|reply| Command::Background(on, keepalive_period, reply))
            .await
    }

    /// One keep-alive handler run: a CRLF ping on the control flow and its pong, or — when the
    /// flow is gone or the pong does not come — a reconnect and re-registration. It always
    /// returns within `budget` (iOS allows 10 s per run; older texts say 30 s).
    pub async fn run_keepalive(&self, budget: Duration) -> Result<RunReport, Error> {
        self.ask(|reply| Command::KeepAlive(budget, reply)).await
    }

    /// The network changed (Wi-Fi ↔ cellular, new address): a new control flow, re-registration,
    /// and a re-INVITE with new media sockets for every connected call.
    pub async fn network_changed(&self) -> Result<(), Error> {
        self.ask(Command::NetworkChanged).await
    }

    /// Hangs up every call (BYE, CANCEL, or 603 to an unanswered incoming call), removes the
    /// registration, waits for both at most the builder's
    /// [`shutdown_grace`](UserAgentBuilder::shutdown_grace) (then gives up on them, logs why and
    /// ends those calls `Failed`), and stops the driver. When it returns, every event up to the
    /// end — each call's `MediaReport` and `Ended` — is queued in [`Events`] (`try_next` sees
    /// them). Dropping every handle does the same, without anyone waiting.
    ///
    /// If the tokio runtime is dropped instead, its tasks are cancelled without running again:
    /// no BYE is sent (the far end sees the connection close) and `Events` ends without the
    /// remaining `Ended` events. Shut down (or drop the handles and drain `Events`) first.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.ask(Command::Shutdown).await?;
        self.progress.forwarded().await;
        Ok(())
    }
}

impl Call {
    /// Sends a command for this call, unless its handle is another user agent's.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
    ) -> Result<T, Error> {
        self.own()?;
        self.ua.ask(make).await
    }

    /// `Ok` when this user agent made the call's handle.
    fn own(&self) -> Result<(), Error> {
        if self.handle.core() == self.ua.core_id {
            Ok(())
        } else {
            Err(Error::Core(CoreError::UnknownCall(self.handle)))
        }
    }

    /// Our handle for this call.
    pub fn handle(&self) -> CallHandle {
        self.handle
    }

    /// Sends 180 Ringing (incoming calls).
    pub async fn ring(&self) -> Result<(), Error> {
        let h = self.handle;
        self.ask(|reply| Command::Ring(h, reply)).await
    }

    /// Answers an incoming call (200 OK with an SDP answer on a freshly reserved RTP port)
    /// with the user agent's [`MediaOptions`] (see [`Call::answer_with`]).
    pub async fn answer(&self) -> Result<(), Error> {
        let h = self.handle;
        self.ask(|reply| Command::Answer(h, None, reply)).await
    }

    /// Answers like [`Call::answer`] without waiting for the outcome, for an application that
    /// follows the call by its events anyway (`State`, `Ended`) and would otherwise spawn a task
    /// per call only to await the answer. Fails at once only when the handle is another user
    /// agent's or the user agent has stopped; a later failure (e.g. the caller hung up
    /// meanwhile) is logged at debug level.
    pub fn answer_detached(&self) -> Result<(), Error> {
        self.own()?;
        let (reply, _) = oneshot::channel();
        let answer = Command::Answer(self.handle, None, reply);
        self.ua.cmd.send(answer).map_err(|_| Error::Stopped)
    }

    /// Answers with this call's own media options instead of the user agent's, e.g.
    /// `audio: AudioSession::Manual` when CallKit runs the call's audio session.
    pub async fn answer_with(&self, media: MediaOptions) -> Result<(), Error> {
        let (h, media) = (self.handle, Some(Box::new(media)));
        self.ask(|reply| Command::Answer(h, media, reply)).await
    }

    /// Rejects an incoming call with a 3xx-6xx status (see [`Call::reject_with`] for the typed
    /// form).
    pub async fn reject(&self, status: u16) -> Result<(), Error> {
        let h = self.handle;
        self.ask(|reply| Command::Reject(h, status, reply)).await
    }

    /// Rejects an incoming call with a status that is valid by construction.
    pub async fn reject_with(&self, code: RejectCode) -> Result<(), Error> {
        self.reject(code.status()).await
    }

    /// Waits until the call is connected (`true`), or has ended without connecting, or the
    /// user agent stopped (`false`). Returns at once when that already happened (a call that
    /// was answered and has ended since gives `true`).
    pub async fn connected(&self) -> bool {
        if self.own().is_err() {
            return false;
        }
        let mut rx = self.ua.progress.watch(self.handle);
        let reached = rx.wait_for(|p| *p != Stage::Setup).await.map(|p| *p);
        matches!(
            reached,
            Ok(Stage::Connected | Stage::Ended(CallOutcome::Answered))
        )
    }

    /// Waits until the call has ended and returns how (at once if it already has). A call the
    /// user agent stopped without ending (the driver died) counts as `Failed`.
    pub async fn ended(&self) -> CallOutcome {
        if self.own().is_err() {
            return CallOutcome::Failed;
        }
        let mut rx = self.ua.progress.watch(self.handle);
        let ended = rx.wait_for(|p| matches!(p, Stage::Ended(_))).await;
        match ended.map(|p| *p) {
            Ok(Stage::Ended(outcome)) => outcome,
            _ => CallOutcome::Failed,
        }
    }

    /// Ends the call: CANCEL, reject or BYE, whichever fits its state.
    pub async fn hangup(&self) -> Result<(), Error> {
        let h = self.handle;
        self.ask(|reply| Command::Hangup(h, reply)).await
    }

    /// Sends DTMF digits (`0-9*#A-D`) as RFC 4733 telephone-events. Needs media to be up.
    /// Completes when the last digit's final (end) packets are on the wire; fails with
    /// [`Error::Media`] when the call has no telephone-event or ends first.
    pub async fn send_dtmf(&self, digits: &str) -> Result<(), Error> {
        let (h, d) = (self.handle, digits.to_string());
        self.ask(|reply| Command::Dtmf(h, d, reply)).await
    }

    /// Sends DTMF digits as SIP INFO requests (`application/dtmf-relay`, one per digit, 200 ms
    /// apart) for peers that take DTMF that way. Needs a connected call.
    pub async fn send_dtmf_info(&self, digits: &str) -> Result<(), Error> {
        for (i, d) in digits.chars().enumerate() {
            if i > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let body = crate::signaling::core::dtmf_relay_body(d).into_bytes();
            let h = self.handle;
            let ct = "application/dtmf-relay".to_string();
            self.ask(|reply| Command::Info(h, ct, body, reply)).await?;
        }
        Ok(())
    }

    /// Mutes (`true`: the far end hears silence) or unmutes our audio. Needs media to be up.
    pub async fn mute(&self, on: bool) -> Result<(), Error> {
        let h = self.handle;
        self.ask(|reply| Command::Mute(h, on, reply)).await
    }

    /// The app's audio session is active (CallKit's `provider(_:didActivate:)`): the call's
    /// audio source and sink open now (or as soon as its media starts). Needed only with
    /// [`AudioSession::Manual`](super::AudioSession::Manual); it may follow a deactivation.
    pub async fn audio_session_activated(&self) -> Result<(), Error> {
        let h = self.handle;
        self.ask(|reply| Command::AudioSession(h, true, reply))
            .await
    }

    /// The app's audio session is no longer active (CallKit's `provider(_:didDeactivate:)`,
    /// e.g. another app's call took it): the call's audio source and sink close while RTP
    /// keeps flowing (silence out, what arrives decoded and dropped).
    pub async fn audio_session_deactivated(&self) -> Result<(), Error> {
        let h = self.handle;
        self.ask(|reply| Command::AudioSession(h, false, reply))
            .await
    }

    /// Puts the call on hold ([`Hold::On`]) or resumes it ([`Hold::Off`]) with a re-INVITE.
    pub async fn hold(&self, hold: Hold) -> Result<(), Error> {
        let (h, on) = (self.handle, hold.is_on());
        self.ask(|reply| Command::Hold(h, on, reply)).await
    }
}

/// A final status to reject a call with: 300-699 by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RejectCode(u16);

impl RejectCode {
    /// 486 Busy Here.
    pub const BUSY_HERE: RejectCode = RejectCode(486);
    /// 480 Temporarily Unavailable.
    pub const TEMPORARILY_UNAVAILABLE: RejectCode = RejectCode(480);
    /// 488 Not Acceptable Here.
    pub const NOT_ACCEPTABLE_HERE: RejectCode = RejectCode(488);
    /// 600 Busy Everywhere.
    pub const BUSY_EVERYWHERE: RejectCode = RejectCode(600);
    /// 603 Decline (the user said no).
    pub const DECLINE: RejectCode = RejectCode(603);

    /// The code for `status`, or `None` unless it is 300-699.
    pub const fn new(status: u16) -> Option<RejectCode> {
        if status >= 300 && status <= 699 {
            Some(RejectCode(status))
        } else {
            None
        }
    }

    /// The SIP status code.
    pub const fn status(self) -> u16 {
        self.0
    }
}

/// The driver's end of [`Events`]: each event notes its call's [`Stage`] on its way to the
/// application (the awaitables see it no later than `Events` does), in the driver's own task,
/// without a task in between to pass the events on.
#[derive(Debug)]
pub(crate) struct EventSink {
    tx: mpsc::UnboundedSender<Event>,
    progress: Arc<Progress>,
}

impl EventSink {
    /// Notes the event's stage, then queues it for the application (which may have dropped its
    /// `Events`: the awaitables still listen).
    pub(crate) fn send(&self, event: Event) {
        self.progress.note(&event);
        let _ = self.tx.send(event);
    }
}

/// The driver has stopped (or died): every call not ended by now counts as failed, and the
/// last event has been passed on.
impl Drop for EventSink {
    fn drop(&mut self) {
        self.progress.stop();
        self.progress.forwarded.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::{AudioSink, AudioSource};
    use crate::signaling::core::CallState;
    use futures_core::Stream;

    async fn start(listen: bool) -> (UserAgent, Events) {
        let media = MediaOptions {
            source: AudioSource::Silence,
            sink: AudioSink::Null,
            ..MediaOptions::default()
        };
        let mut b = UserAgent::builder(Config::default()).media(media);
        if listen {
            b = b.listen("127.0.0.1:0".parse().unwrap());
        }
        b.start().await.unwrap()
    }

    /// A detached answer fails at once for another user agent's handle and once the user agent
    /// has stopped; otherwise the command is on its way.
    #[tokio::test]
    async fn a_detached_answer_fails_at_once_only_for_a_foreign_handle_or_a_stopped_agent() {
        let (ua, _events) = start(false).await;
        let foreign = ua.call_handle(CallHandle::testing(1));
        assert!(matches!(
            foreign.answer_detached(),
            Err(Error::Core(CoreError::UnknownCall(_)))
        ));
        ua.shutdown().await.unwrap();
        let own = CallHandle::new(ua.core_id, 1);
        assert!(matches!(
            ua.call_handle(own).answer_detached(),
            Err(Error::Stopped)
        ));
    }

    /// Each event notes its call's stage before the application sees it; when the driver's
    /// sink goes (the driver stopped or died), calls still open count as failed, `Events`
    /// ends and `forwarded` is set.
    #[tokio::test]
    async fn the_sink_notes_stages_on_the_way_and_its_drop_fails_the_open_calls() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let progress = Arc::new(Progress::default());
        let sink = EventSink {
            tx,
            progress: progress.clone(),
        };
        let (up, open) = (CallHandle::testing(1), CallHandle::testing(2));
        let (up_rx, open_rx) = (progress.watch(up), progress.watch(open));
        sink.send(Event::State {
            call: up,
            call_id: "a".into(),
            state: CallState::Connected,
        });
        assert_eq!(
            *up_rx.borrow(),
            Stage::Connected,
            "noted before it is received"
        );
        assert!(matches!(rx.recv().await, Some(Event::State { call, .. }) if call == up));
        assert!(!*progress.forwarded.borrow());
        drop(sink);
        assert_eq!(*up_rx.borrow(), Stage::Ended(CallOutcome::Failed));
        assert_eq!(*open_rx.borrow(), Stage::Ended(CallOutcome::Failed));
        assert!(*progress.forwarded.borrow());
        assert!(rx.recv().await.is_none());
    }

    /// Bob listens and Alice calls him: (Bob, his events, Alice, her events, her call).
    async fn alice_calls_bob() -> (UserAgent, Events, UserAgent, Events, Call) {
        let (bob, bob_events) = start(true).await;
        let (alice, alice_events) = start(false).await;
        let addr = bob.local_addr().unwrap();
        let target = format!("sip:bob@{addr};transport=tcp");
        let call = alice.call(&target).await.unwrap();
        (bob, bob_events, alice, alice_events, call)
    }

    /// The next event through the `Stream` implementation.
    async fn next(events: &mut Events) -> Option<Event> {
        std::future::poll_fn(|cx| Pin::new(&mut *events).poll_next(cx)).await
    }

    #[test]
    fn reject_codes_are_final_non_2xx_statuses() {
        assert_eq!(RejectCode::new(299), None);
        assert_eq!(RejectCode::new(300).map(RejectCode::status), Some(300));
        assert_eq!(RejectCode::new(699).map(RejectCode::status), Some(699));
        assert_eq!(RejectCode::new(700), None);
        assert_eq!(RejectCode::DECLINE.status(), 603);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connected_and_ended_follow_the_call() {
        let (bob, mut bob_events, _alice, mut alice_events, call) = alice_calls_bob().await;
        let limit = Duration::from_secs(10);
        let answered = tokio::time::timeout(limit, async {
            while let Some(e) = next(&mut bob_events).await {
                if let Event::Incoming { call, .. } = e {
                    bob.call_handle(call).answer().await.unwrap();
                    return bob.call_handle(call);
                }
            }
            panic!("bob's events ended before the call came");
        })
        .await
        .unwrap();
        assert!(tokio::time::timeout(limit, call.connected()).await.unwrap());
        assert!(tokio::time::timeout(limit, answered.connected())
            .await
            .unwrap());
        answered.hangup().await.unwrap();
        let outcome = tokio::time::timeout(limit, call.ended()).await.unwrap();
        assert_eq!(outcome, CallOutcome::Answered);
        // Asked again after the fact, both answer at once; the app's stream saw the same end.
        assert_eq!(call.ended().await, CallOutcome::Answered);
        assert!(call.connected().await);
        let mut ended = None;
        while let Ok(Some(e)) = tokio::time::timeout(limit, next(&mut alice_events)).await {
            if let Event::Ended { outcome, .. } = e {
                ended = Some(outcome);
                break;
            }
        }
        assert_eq!(ended, Some(CallOutcome::Answered));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_that_never_connects_resolves_both_awaitables() {
        let (bob, mut bob_events, alice, _alice_events, call) = alice_calls_bob().await;
        let limit = Duration::from_secs(10);
        tokio::time::timeout(limit, async {
            while let Some(e) = bob_events.next().await {
                if let Event::Incoming { call, .. } = e {
                    let code = RejectCode::BUSY_HERE;
                    return bob.call_handle(call).reject_with(code).await.unwrap();
                }
            }
        })
        .await
        .unwrap();
        assert!(!tokio::time::timeout(limit, call.connected()).await.unwrap());
        assert_eq!(call.ended().await, CallOutcome::Busy);
        // Shutdown returns with every event already queued for try_next.
        bob.shutdown().await.unwrap();
        let mut rest = Vec::new();
        while let Some(e) = bob_events.try_next() {
            rest.push(e);
        }
        assert!(
            rest.iter().any(|e| matches!(e, Event::Ended { .. })),
            "{rest:?}"
        );
        // After the user agent stops, an unknown call counts as failed instead of hanging.
        alice.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let unknown = alice.call_by_number(999);
        assert_eq!(
            tokio::time::timeout(limit, unknown.ended()).await.unwrap(),
            CallOutcome::Failed
        );
    }
}
