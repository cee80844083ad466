//! The control flow: connect to the proxy or registrar, register on it (registration.rs),
//! keep it alive (keepalive.rs), and reconnect with backoff when it dies.

use super::{CoreError, Event, FlowId, FlowKind, Output, SignalingCore};
use crate::signaling::config::Config;
use crate::signaling::message::{HeaderName, Request, Response};
use std::time::{Duration, Instant};

/// State of the control flow.
pub(crate) struct Control {
    /// The flow, connecting or up.
    pub(crate) flow: Option<FlowId>,
    /// `register()` was called and `unregister()` was not.
    wanted: bool,
    /// When to reconnect.
    reconnect_at: Option<Instant>,
    /// Next reconnect delay.
    backoff: Duration,
}

impl Control {
    pub(crate) fn new(config: &Config) -> Self {
        Control {
            flow: None,
            wanted: false,
            reconnect_at: None,
            backoff: config.retry_base,
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.reconnect_at
    }

    /// An Authorization header for a re-sent INVITE after a challenge.
    pub(crate) fn invite_authorization(
        &mut self,
        _req: &Request,
        _retry: bool,
    ) -> Option<(HeaderName, String)> {
        None
    }

    /// A 401/407 to an INVITE: `true` when we can answer it with credentials.
    pub(crate) fn handle_invite_challenge(&mut self, _resp: &Response) -> bool {
        false
    }
}

impl SignalingCore {
    /// Host and port of the control flow: the proxy if set, else the registrar.
    fn control_target(&self) -> Option<(String, u16)> {
        let a = self.config.account.as_ref()?;
        let uri = a.proxy.as_ref().unwrap_or(&a.registrar);
        let host = match &uri.host {
            crate::signaling::message::Host::Domain(d) => d.clone(),
            crate::signaling::message::Host::V4(v) => v.to_string(),
            crate::signaling::message::Host::V6(v) => v.to_string(),
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

    pub(crate) fn control_flow_for_call(&mut self, _now: Instant) -> Result<FlowId, CoreError> {
        self.control_connect().ok_or(CoreError::NoAccount)
    }

    pub(crate) fn control_register(&mut self, _now: Instant) -> Result<(), CoreError> {
        if self.config.account.is_none() {
            return Err(CoreError::NoAccount);
        }
        self.control.wanted = true;
        self.control_connect();
        Ok(())
    }

    pub(crate) fn control_unregister(&mut self, _now: Instant) -> Result<(), CoreError> {
        if self.config.account.is_none() {
            return Err(CoreError::NoAccount);
        }
        self.control.wanted = false;
        self.control.reconnect_at = None;
        self.event(Event::Unregistered);
        Ok(())
    }

    pub(crate) fn control_flow_up(&mut self, _now: Instant, _flow: FlowId, _local: std::net::SocketAddr) {
        self.control.backoff = self.config.retry_base;
    }

    pub(crate) fn control_flow_down(&mut self, now: Instant, flow: FlowId) {
        if self.control.flow != Some(flow) {
            return;
        }
        self.control.flow = None;
        if self.control.wanted {
            self.control.reconnect_at = Some(now + self.control.backoff);
            self.control.backoff = (self.control.backoff * 2).min(self.config.retry_max);
        }
    }

    pub(crate) fn control_pong(&mut self, _now: Instant, _flow: FlowId) {}

    pub(crate) fn control_timeout(&mut self, now: Instant) {
        if self.control.reconnect_at.is_some_and(|at| at <= now) {
            self.control.reconnect_at = None;
            self.control_connect();
        }
    }

    pub(crate) fn control_response(&mut self, _now: Instant, _resp: Result<Response, u16>) {}

    pub(crate) fn drain_control(&mut self, _now: Instant) {}
}
