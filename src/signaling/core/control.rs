//! The control flow: connect to the outbound proxy or the registrar, register on it
//! (`registration.rs`), keep it alive with CRLF pings (`keepalive.rs`), and reconnect when it
//! dies. Digest state for INVITE challenges lives here too, next to the account's credentials.
//!
//! **Reconnect policy** (RFC 5626 §4.5 in spirit): the first reconnect after a loss goes out at
//! once with a random 1–50 ms jitter (so a fleet of phones does not stampede a restarted
//! server); each further failed attempt waits `retry_base · 2ⁿ` scaled by a random factor in
//! [0.5, 1], capped at `retry_max` (250 ms, 500 ms, 1 s, ... by default); during the first
//! two seconds after the loss no gap exceeds one second, so a server that is back within a
//! second is rejoined within a second. The count resets when a REGISTER succeeds.
//! The registration keeps its Call-ID, instance-id and reg-id across flows.
//!
//! **Background mode** ([`SignalingCore::set_background`]): the core keeps no timer that fires
//! more often than the platform's keep-alive period. The RFC 5626 CRLF timer is off; the
//! platform's keep-alive handler calls [`SignalingCore::run_keepalive`] (or
//! [`SignalingCore::send_ping`] and reads [`SignalingCore::last_pong`]). The REGISTER asks for
//! `3 × period` and a run refreshes the binding when less than `1.5 × period` is left, so
//! refreshes ride on every other run and a run that comes late by up to one period still finds
//! the binding alive. The registration's own refresh and retry timers, and reconnect backoff
//! after the first immediate attempt, wait for the next run. Timers of calls, transactions
//! and of a run in progress (pong timeout) still exist: they only exist while something is
//! happening.

use super::{CoreError, Event, FlowId, FlowKind, Output, SignalingCore, Transport, TxOwner};
use crate::signaling::auth::{ChallengeOutcome, Credentials, DigestClient};
use crate::signaling::config::Config;
use crate::signaling::keepalive::{KeepAlive, KeepAliveAction, PING};
use crate::signaling::message::{HeaderName, Host, Method, Request, Response, Uri};
use crate::signaling::registration::{
    FailReason, Registration, RegistrationConfig, RegistrationEvent,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// Longest gap between attempts during the first two seconds after a loss.
const FAST_RETRY_GAP: Duration = Duration::from_secs(1);

/// Random delay of the first reconnect after a loss, at least 1 ms: never in the instant
/// the loss is seen, so whatever runs at that instant (a keep-alive handler's run woken with
/// the loss) sees the flow down, not a new flow it did not ask for.
const FIRST_RECONNECT_JITTER_MS: std::ops::RangeInclusive<u64> = 1..=50;

/// State of the control flow.
pub(crate) struct Control {
    /// The flow, connecting or up.
    pub(crate) flow: Option<FlowId>,
    /// `register()` was called and `unregister()` was not.
    pub(crate) wanted: bool,
    /// When to reconnect.
    pub(crate) reconnect_at: Option<Instant>,
    /// Reconnects since the last success.
    pub(crate) attempts: u32,
    pub(crate) registration: Option<Registration>,
    pub(crate) keepalive: Option<KeepAlive>,
    credentials: Option<Credentials>,
    digest: DigestClient,
    pub(crate) rng: StdRng,
    /// Background mode with this keep-alive period.
    pub(crate) background: Option<Duration>,
    /// The binding lasts until then (from the last 2xx).
    pub(crate) bound_until: Option<Instant>,
    /// A ping sent by `send_ping` waits for its pong until then.
    pub(crate) ping_deadline: Option<Instant>,
    /// When the last pong came.
    pub(crate) last_pong: Option<Instant>,
    /// When the flow was lost (the first of a series of failed attempts).
    pub(crate) lost_at: Option<Instant>,
    /// A pong came on the current control flow. Over UDP a registrar may take CRLFCRLF
    /// silently (Kamailio does): an unanswered ping is then no sign of death, and a failed
    /// REGISTER refresh is what finds a dead binding.
    pub(crate) pong_seen: bool,
}

impl Control {
    pub(crate) fn new(config: &Config) -> Self {
        let credentials = config.account.as_ref().and_then(|a| {
            Some(Credentials {
                username: a.auth_user.clone().unwrap_or_else(|| a.user.clone()),
                password: a.password.clone()?,
            })
        });
        let registration = config.account.as_ref().map(|a| {
            // A `sips:` registrar registers a `sips:` AOR and Contact (RFC 5630 §3.1.3).
            let aor = Uri {
                user: Some(a.user.clone()),
                scheme: a.registrar.scheme,
                ..Uri::sip(Host::parse(&a.domain), None)
            };
            // The REGISTER's Via and Contact name the control flow's transport.
            let mut registrar = a.registrar.clone();
            registrar
                .params
                .set("transport", Some(control_transport(config).param()));
            Registration::new(RegistrationConfig {
                registrar,
                aor,
                display_name: config.display_name.clone(),
                credentials: credentials.clone(),
                expires: config.register_expires,
                instance_id: config.instance_id.clone(),
                reg_id: config.reg_id,
                outbound_proxy: a.proxy.clone(),
                retry_base: config.retry_base,
                retry_max: config.retry_max,
                user_agent: config.user_agent.clone(),
                rng_seed: rand::random(),
                contact_params: push_params(config),
                flow_min_lifetime: config.flow_min_lifetime,
            })
        });
        let keepalive = config
            .keepalive_interval
            .map(|i| KeepAlive::new(i, config.pong_timeout));
        Control {
            flow: None,
            wanted: false,
            reconnect_at: None,
            attempts: 0,
            registration,
            keepalive,
            credentials,
            digest: DigestClient::new(),
            rng: StdRng::seed_from_u64(rand::random()),
            background: None,
            bound_until: None,
            ping_deadline: None,
            last_pong: None,
            lost_at: None,
            pong_seen: false,
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let fg = self.background.is_none();
        [
            self.reconnect_at,
            self.registration
                .as_ref()
                .and_then(|r| r.poll_timeout())
                .filter(|_| fg),
            self.keepalive
                .as_ref()
                .and_then(|k| k.poll_timeout())
                .filter(|_| fg),
            self.ping_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Credentials headers for an INVITE re-sent after a challenge (`retry`).
    pub(crate) fn invite_authorization(
        &mut self,
        req: &Request,
        retry: bool,
    ) -> Vec<(HeaderName, String)> {
        match (&self.credentials, retry && self.digest.has_challenge()) {
            (Some(c), true) => self.digest.authorize_all(&Method::Invite, &req.uri, c),
            _ => Vec::new(),
        }
    }

    /// A 401/407 to an INVITE: `true` when we can answer it with credentials.
    pub(crate) fn handle_invite_challenge(&mut self, resp: &Response) -> bool {
        self.credentials.is_some()
            && matches!(
                self.digest.handle_challenge(resp),
                ChallengeOutcome::Retry | ChallengeOutcome::Stale
            )
    }
}

/// The control flow's transport: the proxy's (else the registrar's) `transport` parameter,
/// else the configured default. A transport we cannot speak falls back to the default (the
/// CLI and the builder refuse it before a core is made).
pub(crate) fn control_transport(config: &Config) -> Transport {
    let default = config.default_transport;
    let Some(a) = &config.account else {
        return default;
    };
    let uri = a.proxy.as_ref().unwrap_or(&a.registrar);
    Transport::for_uri(uri, default).unwrap_or_else(|e| {
        tracing::warn!("{uri}: {e}; using {default}");
        default
    })
}

/// RFC 8599 Contact URI parameters from the push configuration.
fn push_params(config: &Config) -> Vec<(String, String)> {
    let Some(p) = &config.push else {
        return Vec::new();
    };
    let mut v = vec![
        ("pn-provider".to_string(), p.provider.clone()),
        ("pn-prid".to_string(), p.prid.clone()),
    ];
    if let Some(param) = &p.param {
        v.push(("pn-param".to_string(), param.clone()));
    }
    v
}

impl SignalingCore {
    /// Host and port of the control flow: the proxy if set, else the registrar.
    fn control_target(&self) -> Option<(String, u16)> {
        let a = self.config.account.as_ref()?;
        let uri = a.proxy.as_ref().unwrap_or(&a.registrar);
        let host = match &uri.host {
            Host::Domain(d) => d.clone(),
            Host::V4(v) => v.to_string(),
            Host::V6(v) => v.to_string(),
        };
        Some((host, uri.port.unwrap_or(5060)))
    }

    pub(crate) fn control_connect(&mut self) -> Option<FlowId> {
        if let Some(f) = self.control.flow {
            return Some(f);
        }
        let (host, port) = self.control_target()?;
        let flow = self.new_flow(FlowKind::Control, control_transport(&self.config));
        self.control.flow = Some(flow);
        self.control.reconnect_at = None;
        let transport = control_transport(&self.config);
        self.outputs.push_back(Output::Connect {
            flow,
            transport,
            host,
            port,
        });
        Some(flow)
    }

    /// The driver connects `flow` (not up yet) over `transport`, the one DNS picked for a URI
    /// that names none (RFC 3263 §4.1) in place of the one `Output::Connect` asked for: Via and
    /// Contact, transaction timers, and for the control flow the REGISTER, follow it.
    pub fn handle_flow_transport(&mut self, flow: FlowId, transport: Transport) {
        let Some(f) = self.flows.get_mut(&flow).filter(|f| !f.up) else {
            return;
        };
        f.transport = transport;
        if self.control.flow == Some(flow) {
            if let Some(r) = self.control.registration.as_mut() {
                r.set_transport(transport.param());
            }
        }
        let policy = self.srtp_policy_on(flow);
        for c in self.calls.all_mut().values_mut().filter(|c| c.flow == flow) {
            c.sdp.srtp = policy;
        }
    }

    /// The flow calls use when there is an account (connected on demand).
    pub(crate) fn control_flow_for_call(&mut self, _now: Instant) -> Result<FlowId, CoreError> {
        self.control_connect().ok_or(CoreError::NoAccount)
    }

    pub(crate) fn control_register(&mut self, now: Instant) -> Result<(), CoreError> {
        let Some(reg) = self.control.registration.as_mut() else {
            return Err(CoreError::NoAccount);
        };
        self.control.wanted = true;
        reg.start(now);
        self.control_connect();
        Ok(())
    }

    /// A registration is started or on its way out: `unregister` ends with `Unregistered`.
    pub(crate) fn registration_active(&self) -> bool {
        use crate::signaling::registration::RegistrationState::Idle;
        let reg = self.control.registration.as_ref();
        reg.is_some_and(|r| r.state() != Idle)
    }

    pub(crate) fn control_unregister(&mut self, now: Instant) -> Result<(), CoreError> {
        let Some(reg) = self.control.registration.as_mut() else {
            return Err(CoreError::NoAccount);
        };
        self.control.wanted = false;
        self.control.reconnect_at = None;
        reg.stop(now);
        Ok(())
    }

    pub(crate) fn control_flow_up(
        &mut self,
        now: Instant,
        flow: FlowId,
        local: std::net::SocketAddr,
    ) {
        if self.control.flow != Some(flow) {
            return;
        }
        if let Some(r) = self.control.registration.as_mut() {
            r.handle_flow_up(now, local);
        }
        if let Some(k) = self.control.keepalive.as_mut() {
            if self.control.background.is_none() {
                k.start(now);
            }
        }
        self.control.ping_deadline = None;
        self.control.pong_seen = false;
        // Calls that survived the previous control flow move here.
        self.rebind(now, flow);
    }

    pub(crate) fn control_flow_down(&mut self, now: Instant, flow: FlowId) {
        if self.control.flow != Some(flow) {
            return;
        }
        self.control.flow = None;
        if let Some(r) = self.control.registration.as_mut() {
            r.handle_flow_down(now);
        }
        if let Some(k) = self.control.keepalive.as_mut() {
            k.stop();
        }
        self.control.ping_deadline = None;
        self.control.bound_until = None;
        if self.control.wanted {
            let n = self.control.attempts;
            self.control.attempts = n.saturating_add(1);
            if n == 0 {
                self.control.lost_at = Some(now);
            }
            if n > 0 && self.control.background.is_some() {
                // Background: further attempts wait for the next keep-alive run.
                self.control.reconnect_at = None;
                return;
            }
            let mut delay = self.reconnect_delay(n);
            if self
                .control
                .lost_at
                .is_some_and(|t| now < t + 2 * FAST_RETRY_GAP)
            {
                // A server back within a second is rejoined within a second.
                delay = delay.min(FAST_RETRY_GAP);
            }
            // Flows that die right after their 2xx, twice or more in a row: RFC 5626 §4.5.
            if let Some(wait) = self
                .control
                .registration
                .as_mut()
                .and_then(|r| r.take_flow_wait())
            {
                delay = wait;
            }
            self.control.reconnect_at = Some(now + delay);
            if self.control.registration.is_some() {
                let reason = self.flow_cause.clone();
                tracing::warn!(
                    "registration failed: {reason}; retry in {:.2} s",
                    delay.as_secs_f64()
                );
                self.event(Event::RegistrationFailed {
                    status: 0,
                    reason,
                    retry_in: Some(delay),
                });
            }
        }
    }

    /// The public address the UDP registration learned (RFC 3581), for Contacts on the
    /// control flow.
    pub(crate) fn public_addr(&self) -> Option<std::net::SocketAddr> {
        self.control
            .registration
            .as_ref()
            .and_then(|r| r.public_addr())
    }

    /// Delay before reconnect attempt `n` (0: the first after a loss).
    fn reconnect_delay(&mut self, n: u32) -> Duration {
        if n == 0 {
            return Duration::from_millis(self.control.rng.random_range(FIRST_RECONNECT_JITTER_MS));
        }
        let jitter = self.control.rng.random_range(0.5..=1.0);
        crate::signaling::registration::backoff_delay(
            self.config.retry_base,
            self.config.retry_max,
            n - 1,
            jitter,
        )
    }

    pub(crate) fn control_pong(&mut self, now: Instant, flow: FlowId) {
        if self.control.flow == Some(flow) {
            if let Some(k) = self.control.keepalive.as_mut() {
                k.handle_pong(now);
            }
            self.control.ping_deadline = None;
            self.control.last_pong = Some(now);
            self.control.pong_seen = true;
        }
    }

    /// Connects the control flow now if it is down (no backoff), or refreshes the
    /// registration on it now if it is up. Returns (connecting, refreshed).
    pub(crate) fn control_wake(&mut self, now: Instant) -> (bool, bool) {
        if !self.control.wanted {
            return (false, false);
        }
        match self.control.flow {
            None => {
                self.control.reconnect_at = None;
                (self.control_connect().is_some(), false)
            }
            Some(f) if self.flows.get(&f).is_some_and(|f| f.up) => {
                let refreshed = self
                    .control
                    .registration
                    .as_mut()
                    .is_some_and(|r| r.refresh_now(now));
                (false, refreshed)
            }
            Some(_) => (false, false), // connecting: the REGISTER follows the flow-up
        }
    }

    pub(crate) fn control_timeout(&mut self, now: Instant) {
        if self.control.reconnect_at.is_some_and(|at| at <= now) {
            self.control.reconnect_at = None;
            self.control_connect();
        }
        let fg = self.control.background.is_none();
        if let Some(r) = self.control.registration.as_mut().filter(|_| fg) {
            if r.poll_timeout().is_some_and(|at| at <= now) {
                r.handle_timeout(now);
            }
        }
        if let Some(k) = self.control.keepalive.as_mut().filter(|_| fg) {
            if k.poll_timeout().is_some_and(|at| at <= now) {
                k.handle_timeout(now);
            }
        }
        if self.control.ping_deadline.is_some_and(|at| at <= now) {
            self.control.ping_deadline = None;
            if let Some(f) = self.control.flow {
                tracing::warn!(flow = ?f, "no pong in the keep-alive run: the control flow is dead");
                self.outputs.push_back(Output::Close { flow: f });
                self.handle_flow_down(now, f);
            }
        }
    }

    /// Whether the registration failure the core just reported was an unanswered REGISTER
    /// (Timer F), the case in which the driver fails over to the next target. Reading it
    /// clears it.
    pub(crate) fn take_register_timeout(&mut self) -> bool {
        (self.control.registration.as_mut()).is_some_and(|r| r.take_timed_out())
    }

    pub(crate) fn control_response(&mut self, now: Instant, resp: Result<Response, u16>) {
        let Some(r) = self.control.registration.as_mut() else {
            return;
        };
        match resp {
            Ok(resp) => r.handle_response(now, &resp),
            Err(408) => r.handle_request_failed(now, FailReason::Timeout),
            Err(_) => r.handle_request_failed(now, FailReason::Transport),
        }
    }

    /// Moves what the registration and the keep-alive want into outputs.
    pub(crate) fn drain_control(&mut self, now: Instant) {
        for _ in 0..64 {
            let mut progress = false;
            let flow = self
                .control
                .flow
                .filter(|f| self.flows.get(f).is_some_and(|f| f.up));
            let request = self
                .control
                .registration
                .as_mut()
                .and_then(|r| r.poll_request());
            if let Some(req) = request {
                progress = true;
                match flow {
                    Some(flow) => {
                        self.send_request(now, flow, req, TxOwner::Registration);
                    }
                    None => tracing::debug!("REGISTER with no control flow, dropped"),
                }
            }
            let event = self
                .control
                .registration
                .as_mut()
                .and_then(|r| r.poll_event());
            if let Some(ev) = event {
                progress = true;
                match ev {
                    RegistrationEvent::Registered { expires } => {
                        self.control.attempts = 0;
                        self.control.bound_until =
                            Some(now + Duration::from_secs(u64::from(expires)));
                        let ft = self
                            .control
                            .registration
                            .as_ref()
                            .and_then(|r| r.flow_timer());
                        if let (Some(ft), Some(k)) = (ft, self.control.keepalive.as_mut()) {
                            k.set_flow_timer(now, ft);
                        }
                        let public_addr = self.public_addr();
                        if let Some(a) = public_addr {
                            tracing::info!("registered at public address {a} (learned via rport)");
                        }
                        self.event(Event::Registered {
                            expires,
                            public_addr,
                        });
                    }
                    // A lost flow: `control_flow_down` already said so, with the cause.
                    RegistrationEvent::Failed {
                        status: 0,
                        retry_in: None,
                        ..
                    } => self.control.bound_until = None,
                    RegistrationEvent::Failed {
                        status,
                        reason,
                        retry_in,
                    } => {
                        self.control.bound_until = None;
                        match retry_in {
                            Some(d) => tracing::warn!(
                                "registration failed: {status} {reason}; retry in {:.2} s",
                                d.as_secs_f64()
                            ),
                            None => tracing::warn!("registration failed: {status} {reason}"),
                        }
                        self.event(Event::RegistrationFailed {
                            status,
                            reason,
                            retry_in,
                        })
                    }
                    RegistrationEvent::Unregistered => self.event(Event::Unregistered),
                }
            }
            let action = self
                .control
                .keepalive
                .as_mut()
                .and_then(|k| k.poll_action());
            if let Some(a) = action {
                progress = true;
                match (a, self.control.flow) {
                    (KeepAliveAction::SendPing, Some(f)) => self.transmit(f, PING.to_vec()),
                    (KeepAliveAction::FlowDead, Some(f))
                        if self.flow_transport(f) == Transport::Udp && !self.control.pong_seen =>
                    {
                        // A registrar that never answers CRLF over UDP: keep pinging (the
                        // NAT binding stays open); the REGISTER refresh checks the binding.
                        if let Some(k) = self.control.keepalive.as_mut() {
                            k.start(now);
                        }
                    }
                    (KeepAliveAction::FlowDead, Some(f)) => {
                        tracing::warn!(flow = ?f, "no pong: the control flow is dead");
                        self.outputs.push_back(Output::Close { flow: f });
                        self.handle_flow_closed(now, f, "no pong to the keep-alive ping");
                    }
                    _ => {}
                }
            }
            if !progress {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Event, Output, SignalingCore, Transport};
    use crate::platform::sim::{phone_config, Phone};
    use crate::signaling::message::HeaderName;
    use std::time::{Duration, Instant};

    /// The origin of the virtual clock (tests only; every later time is origin + offset).
    fn origin() -> Instant {
        Instant::now()
    }

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    fn auth_param(p: &Phone, name: &str) -> Option<String> {
        let a = p
            .last_request("REGISTER")?
            .headers
            .get(&HeaderName::Authorization)?;
        let at = a.find(&format!("{name}="))?;
        let v = &a[at + name.len() + 1..];
        Some(v.split(',').next()?.trim_matches('"').to_string())
    }

    #[test]
    fn reconnect_is_immediate_then_backs_off_and_rejoins_a_server_back_within_a_second() {
        for seed in 0..200u32 {
            let mut p = Phone::new(phone_config(), origin() + seed * S);
            let t0 = p.now;
            let inst = p
                .last_request("REGISTER")
                .unwrap()
                .headers
                .get(&HeaderName::Contact)
                .unwrap()
                .to_string();
            p.server_up = false;
            p.drop_flow();
            // The server is back within a second of the loss.
            let back = t0 + (seed % 10 + 1) * 100 * MS;
            let mut attempts = Vec::new();
            while p.now < back {
                let before = p.connects;
                match p.core.poll_timeout() {
                    Some(at) if at < back => p.advance(at - p.now),
                    _ => break,
                }
                if p.connects > before {
                    attempts.push(p.now - t0);
                }
            }
            assert!(attempts[0] <= 50 * MS, "{attempts:?}");
            for w in attempts.windows(2) {
                assert!(w[1] - w[0] >= 125 * MS - MS, "{attempts:?}");
            }
            p.server_up = true;
            p.advance(back - p.now);
            let regs = p.registers;
            p.advance(S);
            assert!(
                p.registered() && p.registers > regs,
                "rejoined within a second of the server's return"
            );
            let again = p
                .last_request("REGISTER")
                .unwrap()
                .headers
                .get(&HeaderName::Contact)
                .unwrap()
                .to_string();
            assert_eq!(again, inst, "same instance-id and reg-id");
        }
    }

    #[test]
    fn push_reconnects_and_answers_the_last_challenge_preemptively() {
        let mut cfg = phone_config();
        if let Some(a) = cfg.account.as_mut() {
            a.password = Some("pw".into());
        }
        let mut p = Phone::new(cfg, origin());
        p.digest = true;
        p.core.unregister(p.now).unwrap();
        p.pump();
        p.core.register(p.now).unwrap();
        p.pump();
        assert_eq!(p.challenges, 1);
        assert!(p.registered());
        let nc1 = auth_param(&p, "nc").unwrap();
        // The flow dies while the phone sleeps; a push wakes it.
        p.server_up = false;
        p.drop_flow();
        p.advance(10 * S);
        p.server_up = true;
        let regs = p.registers;
        p.core.handle_push(p.now, "x1".into(), None);
        p.pump();
        assert_eq!(p.registers, regs + 1, "registered at once, no backoff wait");
        assert_eq!(p.challenges, 1, "one round trip: no new challenge");
        let nc2 = auth_param(&p, "nc").unwrap();
        assert!(nc2 > nc1, "{nc1} then {nc2}");
    }

    #[test]
    fn udp_binding_survives_unanswered_pings_and_a_failed_refresh_re_registers() {
        let mut config = phone_config();
        if let Some(a) = config.account.as_mut() {
            a.registrar.params.set("transport", Some("udp"));
        }
        config.register_expires = 120;
        let mut p = Phone::new(config, origin());
        p.answer_pings = false;
        p.advance(S);
        assert!(p.registered());
        let via = p
            .last_request("REGISTER")
            .and_then(|r| r.headers.top_via())
            .unwrap();
        assert_eq!(via.transport, "UDP");
        // Minutes of unanswered CRLF keep-alives: the binding stands (Kamailio over UDP).
        p.advance(100 * S);
        assert!(p.pings >= 2, "{} pings", p.pings);
        assert_eq!((p.connects, p.registered()), (1, true));
        // The registrar goes silent: the refresh fails (Timer F) and is retried ...
        p.server_up = false;
        p.advance(120 * S);
        assert!(!p.registered(), "the failed refresh is reported");
        // ... and when the registrar is back, the binding is re-made.
        let regs = p.registers;
        p.server_up = true;
        p.advance(60 * S);
        assert!(p.registered() && p.registers > regs);
    }

    #[test]
    fn udp_behind_nat_registers_the_public_address_and_calls_use_it() {
        let mut config = phone_config();
        if let Some(a) = config.account.as_mut() {
            a.registrar.params.set("transport", Some("udp"));
        }
        config.instance_id = None;
        config.register_expires = 120;
        let public: std::net::SocketAddr = "203.0.113.7:41000".parse().unwrap();
        let mut p = Phone::new(config, origin());
        p.nat = Some(public);
        p.events.clear();
        // The refresh meets the NAT: one re-REGISTER with the public Contact, then registered.
        p.advance(100 * S);
        let regs: Vec<_> = p
            .requests
            .iter()
            .filter(|r| r.method.as_str() == "REGISTER")
            .collect();
        let last = regs.last().unwrap();
        let contacts: Vec<_> = last.headers.get_all(&HeaderName::Contact).collect();
        assert_eq!(
            contacts,
            vec![
                "<sip:alice@203.0.113.7:41000;transport=udp>",
                "<sip:alice@127.0.0.1:40000;transport=udp>;expires=0",
            ]
        );
        let registered: Vec<_> = p
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Registered { public_addr, .. } => Some(*public_addr),
                _ => None,
            })
            .collect();
        assert_eq!(registered, vec![Some(public)]);
        // A later refresh that sees the same mapping sends one REGISTER, unchanged.
        let n = regs.len();
        p.advance(50 * S); // the next refresh is 60 s after the last 2xx

        let regs: Vec<_> = p
            .requests
            .iter()
            .filter(|r| r.method.as_str() == "REGISTER")
            .collect();
        assert_eq!(regs.len(), n + 1, "no rewrite when the mapping holds");
        // A call on the control flow announces the public address in its Contact.
        let target = crate::signaling::message::Uri::parse("sip:bob@127.0.0.1").unwrap();
        p.core
            .call(p.now, target, "127.0.0.1:4000".parse().unwrap())
            .unwrap();
        p.pump();
        let invite = p.last_request("INVITE").unwrap();
        assert_eq!(
            invite.headers.get(&HeaderName::Contact),
            Some("<sip:alice@203.0.113.7:41000;transport=udp>")
        );
    }

    #[test]
    fn a_transport_picked_by_dns_replaces_the_one_asked_for() {
        let mut config = phone_config();
        if let Some(a) = config.account.as_mut() {
            a.registrar = crate::signaling::message::Uri::parse("sip:example.test").unwrap();
        }
        let now = origin();
        let mut core = SignalingCore::new(config);
        core.register(now).unwrap();
        let flow = std::iter::from_fn(|| core.poll_output())
            .find_map(|o| match o {
                Output::Connect {
                    flow, transport, ..
                } => Some((flow, transport)),
                _ => None,
            })
            .unwrap();
        assert_eq!(flow.1, Transport::Tcp, "the core asks for its default");
        core.handle_flow_transport(flow.0, Transport::Udp);
        let (local, remote) = ("192.0.2.1:40000", "192.0.2.2:5060");
        core.handle_flow_up(now, flow.0, local.parse().unwrap(), remote.parse().unwrap());
        let sent = |core: &mut SignalingCore| -> Vec<String> {
            std::iter::from_fn(|| core.poll_output())
                .filter_map(|o| match o {
                    Output::Transmit { bytes, .. } => Some(String::from_utf8_lossy(&bytes).into()),
                    _ => None,
                })
                .collect()
        };
        let first = sent(&mut core);
        assert_eq!(first.len(), 1);
        assert!(
            first[0].contains("Via: SIP/2.0/UDP 192.0.2.1:40000"),
            "{}",
            first[0]
        );
        assert!(first[0].contains("transport=udp"), "{}", first[0]);
        // An unreliable transport: Timer E retransmits the REGISTER.
        core.handle_timeout(now + Duration::from_millis(600));
        assert_eq!(sent(&mut core).len(), 1, "retransmitted over UDP");
        // Once up, the flow keeps its transport.
        core.handle_flow_transport(flow.0, Transport::Tcp);
        assert_eq!(core.flow_transport(flow.0), Transport::Udp);
    }
}
