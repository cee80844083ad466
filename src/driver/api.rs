//! The public async API: [`UserAgent`], [`Call`], [`Events`].

use super::media::MediaOptions;
use super::task::{Command, DriverTask};
use crate::error::Error;
use crate::platform::RunReport;
use crate::signaling::config::Config;
use crate::signaling::core::{CallHandle, Event};
use crate::signaling::message::Uri;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

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
}

impl UserAgentBuilder {
    /// Also accept direct SIP over TCP and UDP on this address (calls that do not come
    /// through the registrar's flow).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
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

    /// Resolve SIP hosts (RFC 3263: NAPTR, SRV, A/AAAA) with these DNS servers instead of the
    /// system's (`/etc/resolv.conf`). An empty list means the system's.
    pub fn dns_servers(mut self, servers: Vec<SocketAddr>) -> Self {
        self.dns_servers = servers;
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
        let mut config = self.config;
        // A wildcard listener (0.0.0.0 / ::) is kept as it is: the core's Contact then takes
        // each flow's own local address (the interface it reached us on) with the listen port.
        if config.listen.is_none() {
            config.listen = local_addr;
        }
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
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
        .with_dns_servers(&self.dns_servers)
        .with_udp(udp);
        tokio::spawn(task.run());
        Ok((
            UserAgent {
                cmd: cmd_tx,
                local_addr,
            },
            Events { rx: ev_rx },
        ))
    }
}

/// A running SIP user agent. Cheap to clone; the driver stops when [`UserAgent::shutdown`] is
/// called or every handle is dropped.
#[derive(Debug, Clone)]
pub struct UserAgent {
    cmd: mpsc::UnboundedSender<Command>,
    local_addr: Option<SocketAddr>,
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
        }
    }

    /// The listener's address, if one was bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
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

    /// Places a call to `target` (a SIP URI, e.g. `sip:bob@127.0.0.1:5080;transport=tcp`).
    pub async fn call(&self, target: &str) -> Result<Call, Error> {
        let uri = Uri::parse(target)?;
        let handle = self
            .ask(|reply| Command::Call { target: uri, reply })
            .await?;
        Ok(Call {
            handle,
            ua: self.clone(),
        })
    }

    /// The [`Call`] for a handle from an event (e.g. `Event::Incoming`).
    pub fn call_handle(&self, handle: CallHandle) -> Call {
        Call {
            handle,
            ua: self.clone(),
        }
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

    /// Hangs up every call, removes the registration (waiting for it up to `Config`'s transaction
    /// timeout) and stops the driver.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.ask(Command::Shutdown).await
    }
}

impl Call {
    /// Our handle for this call.
    pub fn handle(&self) -> CallHandle {
        self.handle
    }

    /// Sends 180 Ringing (incoming calls).
    pub async fn ring(&self) -> Result<(), Error> {
        let h = self.handle;
        self.ua.ask(|reply| Command::Ring(h, reply)).await
    }

    /// Answers an incoming call (200 OK with an SDP answer on a freshly reserved RTP port).
    pub async fn answer(&self) -> Result<(), Error> {
        let h = self.handle;
        self.ua.ask(|reply| Command::Answer(h, reply)).await
    }

    /// Rejects an incoming call with a 3xx-6xx status.
    pub async fn reject(&self, status: u16) -> Result<(), Error> {
        let h = self.handle;
        self.ua.ask(|reply| Command::Reject(h, status, reply)).await
    }

    /// Ends the call: CANCEL, reject or BYE, whichever fits its state.
    pub async fn hangup(&self) -> Result<(), Error> {
        let h = self.handle;
        self.ua.ask(|reply| Command::Hangup(h, reply)).await
    }

    /// Sends DTMF digits (`0-9*#A-D`) as RFC 4733 telephone-events. Needs media to be up.
    /// Completes when the last digit's final (end) packets are on the wire; fails with
    /// [`Error::Media`] when the call has no telephone-event or ends first.
    pub async fn send_dtmf(&self, digits: &str) -> Result<(), Error> {
        let (h, d) = (self.handle, digits.to_string());
        self.ua.ask(|reply| Command::Dtmf(h, d, reply)).await
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
            self.ua
                .ask(|reply| Command::Info(h, ct, body, reply))
                .await?;
        }
        Ok(())
    }

    /// Mutes (`true`: the far end hears silence) or unmutes our audio. Needs media to be up.
    pub async fn mute(&self, on: bool) -> Result<(), Error> {
        let h = self.handle;
        self.ua.ask(|reply| Command::Mute(h, on, reply)).await
    }

    /// Puts the call on hold (`true`) or resumes it (`false`).
    pub async fn hold(&self, on: bool) -> Result<(), Error> {
        let h = self.handle;
        self.ua.ask(|reply| Command::Hold(h, on, reply)).await
    }
}
