//! The control flow: connect to the outbound proxy or the registrar, register on it
//! (`registration.rs`), keep it alive with CRLF pings (`keepalive.rs`), and reconnect with
//! backoff when it dies (first attempt at once, then `retry_base` doubling up to `retry_max`;
//! the backoff resets when a registration succeeds). Digest state for INVITE challenges lives
//! here too, next to the account's credentials.

use super::{CoreError, Event, FlowId, FlowKind, Output, SignalingCore, TxOwner};
use crate::signaling::auth::{ChallengeOutcome, Credentials, DigestClient};
use crate::signaling::config::Config;
use crate::signaling::keepalive::{KeepAlive, KeepAliveAction, PING};
use crate::signaling::message::{HeaderName, Host, Method, Request, Response, Uri};
use crate::signaling::registration::{
    FailReason, Registration, RegistrationConfig, RegistrationEvent,
};
use std::time::{Duration, Instant};

/// State of the control flow.
pub(crate) struct Control {
    /// The flow, connecting or up.
    pub(crate) flow: Option<FlowId>,
    /// `register()` was called and `unregister()` was not.
    wanted: bool,
    /// When to reconnect.
    reconnect_at: Option<Instant>,
    /// Reconnects since the last success.
    attempts: u32,
    registration: Option<Registration>,
    keepalive: Option<KeepAlive>,
    credentials: Option<Credentials>,
    digest: DigestClient,
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
            let aor = Uri {
                user: Some(a.user.clone()),
                ..Uri::sip(Host::parse(&a.domain), None)
            };
            Registration::new(RegistrationConfig {
                registrar: a.registrar.clone(),
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
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.reconnect_at,
            self.registration.as_ref().and_then(|r| r.poll_timeout()),
            self.keepalive.as_ref().and_then(|k| k.poll_timeout()),
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

    fn control_connect(&mut self) -> Option<FlowId> {
        if let Some(f) = self.control.flow {
            return Some(f);
        }
        let (host, port) = self.control_target()?;
        let flow = self.new_flow(FlowKind::Control);
        self.control.flow = Some(flow);
        self.control.reconnect_at = None;
        self.outputs.push_back(Output::Connect { flow, host, port });
        Some(flow)
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
            k.start(now);
        }
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
        if self.control.wanted {
            let delay = if self.control.attempts == 0 {
                Duration::ZERO
            } else {
                let exp = self.control.attempts.saturating_sub(1).min(16);
                (self.config.retry_base * 2u32.pow(exp)).min(self.config.retry_max)
            };
            self.control.attempts = self.control.attempts.saturating_add(1);
            self.control.reconnect_at = Some(now + delay);
        }
    }

    pub(crate) fn control_pong(&mut self, now: Instant, flow: FlowId) {
        if self.control.flow == Some(flow) {
            if let Some(k) = self.control.keepalive.as_mut() {
                k.handle_pong(now);
            }
        }
    }

    pub(crate) fn control_timeout(&mut self, now: Instant) {
        if self.control.reconnect_at.is_some_and(|at| at <= now) {
            self.control.reconnect_at = None;
            self.control_connect();
        }
        if let Some(r) = self.control.registration.as_mut() {
            if r.poll_timeout().is_some_and(|at| at <= now) {
                r.handle_timeout(now);
            }
        }
        if let Some(k) = self.control.keepalive.as_mut() {
            if k.poll_timeout().is_some_and(|at| at <= now) {
                k.handle_timeout(now);
            }
        }
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
                        let ft = self
                            .control
                            .registration
                            .as_ref()
                            .and_then(|r| r.flow_timer());
                        if let (Some(ft), Some(k)) = (ft, self.control.keepalive.as_mut()) {
                            k.set_flow_timer(now, ft);
                        }
                        self.event(Event::Registered { expires });
                    }
                    RegistrationEvent::Failed { status, reason, .. } => {
                        self.event(Event::RegistrationFailed { status, reason })
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
                    (KeepAliveAction::FlowDead, Some(f)) => {
                        tracing::warn!(flow = ?f, "no pong: the control flow is dead");
                        self.outputs.push_back(Output::Close { flow: f });
                        self.handle_flow_down(now, f);
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
