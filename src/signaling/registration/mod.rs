//! REGISTER with refresh, retry and RFC 5626 outbound (RFC 3261 §10, RFC 5626 §4.2–4.5).
//!
//! Sans-IO and transaction-free: the core wraps every REGISTER from
//! [`Registration::poll_request`] in a client non-INVITE transaction and hands back the final
//! response ([`Registration::handle_response`]) or the failure
//! ([`Registration::handle_request_failed`]). Only one REGISTER is outstanding at a time
//! (RFC 3261 §10.2), except when a new flow replaces the one that carried it.
//!
//! Timing rules:
//! - **refresh** at `max(granted / 2, granted − 60 s)` after the 2xx;
//! - **retry** after a failure: `base · 2ⁿ` (n = consecutive failures − 1) scaled by a random
//!   factor in [0.5, 1] (RFC 5626 §4.5), then capped at `retry_max`. Because each range
//!   `[d/2, d]` ends where the next one starts, the sequence never decreases; a success
//!   resets it. A larger `Retry-After` from the server wins (capped at one hour).
//!   (RFC 5626 caps before randomising; we cap after, so the sequence is monotone.)
//! - After a 401/407 the REGISTER is resent once with credentials; a repeated non-stale
//!   challenge is a failure (no loop), a `stale=true` one is answered with the new nonce.
//! - A lost flow loses the binding (RFC 5626): we report it and re-register on the next
//!   [`Registration::handle_flow_up`], same Call-ID, instance-id and reg-id, next CSeq.

mod backoff;
mod contact;
mod nat;
mod request;

use backoff::FlowHealth;
pub use backoff::{
    backoff_delay, flow_recovery_delay, refresh_delay, FLOW_BACKOFF_MAX, FLOW_BASE_ALL_FAILED,
    FLOW_BASE_SOME_OK, FLOW_MIN_LIFETIME,
};
pub use nat::MAX_REWRITES;
use request::{response_cseq, token};

use super::auth::{ChallengeOutcome, Credentials, DigestClient};
use super::message::{HeaderName, Request, Response, Uri};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The methods we list in `Allow`: the same list as in our INVITEs and responses. UPDATE
/// (RFC 3311) is not among them: we answer it 405.
pub use super::invite::ALLOW;

/// The longest server-requested `Retry-After` we honour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Configuration of one registration.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// Where the control flow goes (its `transport` parameter picks Via/Contact transport).
    pub registrar: Uri,
    /// Our address of record, `sip:user@domain`.
    pub aor: Uri,
    /// Display name for From/To.
    pub display_name: Option<String>,
    /// Digest credentials, if the registrar challenges.
    pub credentials: Option<Credentials>,
    /// Requested binding lifetime in seconds.
    pub expires: u32,
    /// RFC 5626 `+sip.instance` (`urn:uuid:...`); enables outbound (`;ob`, `reg-id`).
    pub instance_id: Option<String>,
    /// RFC 5626 `reg-id`.
    pub reg_id: u32,
    /// Pre-loaded route: `Route: <outbound_proxy;lr>`.
    pub outbound_proxy: Option<Uri>,
    /// First retry delay.
    pub retry_base: Duration,
    /// Retry delay cap.
    pub retry_max: Duration,
    /// User-Agent header value.
    pub user_agent: String,
    /// Seed for tags, Call-ID, branches, cnonces and retry jitter.
    pub rng_seed: u64,
    /// Extra Contact URI parameters, in order (RFC 8599 `pn-provider`, `pn-prid`, `pn-param`).
    pub contact_params: Vec<(String, String)>,
    /// A flow that closes sooner than this after its 2xx counts as failed (RFC 5626 §4.5);
    /// usually [`FLOW_MIN_LIFETIME`].
    pub flow_min_lifetime: Duration,
}

/// Why a REGISTER got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The transaction timed out (Timer F).
    Timeout,
    /// The flow failed while sending.
    Transport,
}

/// What the registration reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    /// The registrar accepted the binding for this many seconds.
    Registered {
        /// Granted lifetime in seconds.
        expires: u32,
    },
    /// A REGISTER failed, or the flow carrying the binding went away.
    Failed {
        /// SIP status (0 for timeout, transport failure or a lost flow).
        status: u16,
        /// Reason phrase or cause.
        reason: String,
        /// When we try again by ourselves (`None`: on the next flow-up).
        retry_in: Option<Duration>,
    },
    /// The binding is removed (or abandoned after `stop`).
    Unregistered,
}

/// Where the registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationState {
    /// Not started, or stopped.
    Idle,
    /// Started, no flow to register on.
    WaitingForFlow,
    /// A REGISTER is outstanding and we have no binding.
    Registering,
    /// Bound; a refresh is scheduled.
    Registered,
    /// Bound; a refresh REGISTER is outstanding.
    Refreshing,
    /// Waiting for the retry timer after a failure.
    RetryWait,
    /// The un-REGISTER (Expires: 0) is outstanding.
    Unregistering,
}

/// The REGISTER state machine for one account on one flow.
#[derive(Debug)]
pub struct Registration {
    cfg: RegistrationConfig,
    digest: DigestClient,
    rng: StdRng,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// CSeq of the outstanding REGISTER.
    in_flight: Option<u32>,
    /// The last failure was an unanswered REGISTER (Timer F): the driver fails over to the
    /// next resolved target (RFC 3263 §4.3) when it sees it ([`Registration::take_timed_out`]).
    timed_out: bool,
    local: Option<SocketAddr>,
    /// The public address learned over UDP (RFC 3581), when not `local`.
    public: Option<SocketAddr>,
    /// Contact rewrites in a row not yet confirmed by a 2xx.
    rewrites: u32,
    /// The Contact the next REGISTER removes (`expires=0`) after a rewrite.
    replaced: Option<SocketAddr>,
    state: RegistrationState,
    started: bool,
    stop_pending: bool,
    /// `start` came while un-registering: register again afterwards.
    restart_pending: bool,
    /// Lifetime we ask for (raised by 423 Min-Expires).
    requested_expires: u32,
    timer: Option<Instant>,
    failures: u32,
    flow_timer: Option<u32>,
    /// Flows that die young (RFC 5626 §4.5).
    health: FlowHealth,
    requests: VecDeque<Request>,
    events: VecDeque<RegistrationEvent>,
}

impl Registration {
    /// A registration that does nothing until [`Registration::start`].
    pub fn new(cfg: RegistrationConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.rng_seed);
        let digest = DigestClient::with_seed(rng.random());
        let call_id = token(&mut rng, 24);
        let from_tag = token(&mut rng, 12);
        let cseq = rng.random_range(1..10_000);
        Registration {
            requested_expires: cfg.expires,
            cfg,
            digest,
            rng,
            call_id,
            from_tag,
            cseq,
            in_flight: None,
            timed_out: false,
            local: None,
            public: None,
            rewrites: 0,
            replaced: None,
            state: RegistrationState::Idle,
            started: false,
            stop_pending: false,
            restart_pending: false,
            timer: None,
            failures: 0,
            flow_timer: None,
            health: FlowHealth::default(),
            requests: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Starts registering (at once if a flow is up, else on the next flow-up).
    pub fn start(&mut self, _now: Instant) {
        if self.started {
            return;
        }
        self.started = true;
        if self.stop_pending {
            // The outstanding REGISTER simply continues.
            self.stop_pending = false;
        } else if self.state == RegistrationState::Unregistering {
            // Register afresh once the un-REGISTER is done.
            self.restart_pending = true;
        } else if self.local.is_some() {
            self.send_register();
        } else {
            self.state = RegistrationState::WaitingForFlow;
        }
    }

    /// Removes the binding: sends REGISTER with `Expires: 0` (after any outstanding one
    /// completes), then reports [`RegistrationEvent::Unregistered`]. Without a binding or a
    /// flow it reports `Unregistered` at once.
    pub fn stop(&mut self, _now: Instant) {
        if !self.started {
            return;
        }
        self.started = false;
        self.restart_pending = false;
        self.timer = None;
        match self.state {
            RegistrationState::Unregistering => {} // already on its way
            RegistrationState::Registered => self.send_unregister(),
            RegistrationState::Registering | RegistrationState::Refreshing => {
                self.stop_pending = true;
            }
            _ => self.finish_unregister(),
        }
    }

    /// The next flow runs over `transport` (DNS picked it, RFC 3263 §4.1): the REGISTER's Via
    /// and Contact name it.
    pub fn set_transport(&mut self, transport: &str) {
        self.cfg.registrar.params.set("transport", Some(transport));
    }

    /// A flow is up with this local address: (re-)register on it at once.
    pub fn handle_flow_up(&mut self, _now: Instant, local: SocketAddr) {
        self.flow_changed(local);
        self.local = Some(local);
        self.health.flow_up();
        self.in_flight = None; // anything outstanding went with the old flow
        if self.stop_pending || self.state == RegistrationState::Unregistering {
            self.finish_unregister();
        } else if self.started {
            self.send_register();
        }
    }

    /// The flow is gone, and with it the binding (RFC 5626 §4.4): wait for the next flow-up.
    /// A flow that died within [`RegistrationConfig::flow_min_lifetime`] of its 2xx counts as
    /// a failure; from the second in a row on, [`Registration::take_flow_wait`] says how long
    /// to wait before the next flow.
    pub fn handle_flow_down(&mut self, now: Instant) {
        self.local = None;
        self.in_flight = None;
        self.timer = None;
        let jitter = self.rng.random_range(0.5..=1.0);
        let failure = self
            .health
            .flow_down(now, self.cfg.flow_min_lifetime, jitter);
        if self.stop_pending || self.state == RegistrationState::Unregistering {
            self.finish_unregister();
        } else if self.started {
            if self.state != RegistrationState::WaitingForFlow {
                let reason = match failure {
                    Some(f) => format!(
                        "flow closed {:.1} s after its 2xx ({} in a row, RFC 5626 §4.5)",
                        f.lived.as_secs_f64(),
                        f.in_a_row
                    ),
                    None => "flow down".into(),
                };
                self.events.push_back(RegistrationEvent::Failed {
                    status: 0,
                    reason,
                    retry_in: failure.and_then(|f| f.wait),
                });
            }
            self.state = RegistrationState::WaitingForFlow;
        }
    }

    /// A final (or provisional, ignored) response to our latest REGISTER.
    pub fn handle_response(&mut self, now: Instant, resp: &Response) {
        if resp.is_provisional()
            || self.in_flight.is_none()
            || response_cseq(resp) != self.in_flight
        {
            return;
        }
        self.in_flight = None;
        let unregistering = self.state == RegistrationState::Unregistering;
        match resp.status {
            200..=299 if unregistering => self.finish_unregister(),
            200..=299 => self.on_success(now, resp),
            401 | 407 => {
                let outcome = match &self.cfg.credentials {
                    Some(_) => self.digest.handle_challenge(resp),
                    None => ChallengeOutcome::Rejected,
                };
                match outcome {
                    ChallengeOutcome::Retry | ChallengeOutcome::Stale => self.resend(),
                    ChallengeOutcome::Rejected => {
                        // Start the next attempt from a clean slate (no stale credentials).
                        self.digest.reset();
                        self.on_failure(now, resp.status, &resp.reason);
                    }
                }
            }
            423 => {
                let min = resp
                    .headers
                    .get(&HeaderName::MinExpires)
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > self.requested_expires && !unregistering => {
                        self.requested_expires = m;
                        self.resend();
                    }
                    _ => self.on_failure(now, resp.status, &resp.reason),
                }
            }
            _ => {
                let retry_after = resp
                    .headers
                    .get(&HeaderName::RetryAfter)
                    .and_then(|v| v.split(';').next())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                self.on_failure_after(now, resp.status, &resp.reason, retry_after);
            }
        }
    }

    /// The outstanding REGISTER got no response.
    pub fn handle_request_failed(&mut self, now: Instant, why: FailReason) {
        if self.in_flight.take().is_none() {
            return;
        }
        self.timed_out = why == FailReason::Timeout;
        let reason = match why {
            FailReason::Timeout => "timeout",
            FailReason::Transport => "transport failure",
        };
        self.on_failure(now, 0, reason);
    }

    /// Whether the failure just reported was a REGISTER timeout; reading it clears it.
    pub(crate) fn take_timed_out(&mut self) -> bool {
        std::mem::take(&mut self.timed_out)
    }

    /// Drives the refresh and retry timers; call at (or after) [`Registration::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer.is_none_or(|t| now < t) {
            return;
        }
        self.timer = None;
        match self.state {
            RegistrationState::Registered | RegistrationState::RetryWait if self.started => {
                if self.local.is_some() {
                    self.send_register();
                } else {
                    self.state = RegistrationState::WaitingForFlow;
                }
            }
            _ => {}
        }
    }

    /// The next REGISTER to send on the flow (complete; the core adds nothing but the
    /// transaction).
    pub fn poll_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<RegistrationEvent> {
        self.events.pop_front()
    }

    /// How long to wait before forming the next flow after the last one died young (RFC 5626
    /// §4.5); `None`: at once. Taken once per failed flow.
    pub fn take_flow_wait(&mut self) -> Option<Duration> {
        self.health.take_wait()
    }

    /// When [`Registration::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// Changes the lifetime asked for in the next REGISTER (background mode asks for longer).
    pub fn set_expires(&mut self, secs: u32) {
        self.requested_expires = secs;
    }

    /// Refreshes the binding at once (a keep-alive run, a push): sends a REGISTER when started,
    /// a flow is up and none is outstanding. Returns whether one was queued. The last digest
    /// challenge is answered preemptively (next `nc`), so one round trip suffices when the
    /// server still accepts the nonce.
    pub fn refresh_now(&mut self, _now: Instant) -> bool {
        let idle = matches!(
            self.state,
            RegistrationState::Registered
                | RegistrationState::RetryWait
                | RegistrationState::WaitingForFlow
        );
        if !self.started || self.stop_pending || self.local.is_none() || !idle {
            return false;
        }
        if self.in_flight.is_some() {
            return false;
        }
        self.send_register();
        true
    }

    /// Where the registration stands.
    pub fn state(&self) -> RegistrationState {
        self.state
    }

    /// The RFC 5626 Flow-Timer (seconds) from the last 2xx, for the keep-alive.
    pub fn flow_timer(&self) -> Option<u32> {
        self.flow_timer
    }

    /// The Call-ID used for every REGISTER of this registration.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    fn on_success(&mut self, now: Instant, resp: &Response) {
        let granted = self.granted_expires(resp);
        self.flow_timer = resp
            .headers
            .get(&HeaderName::FlowTimer)
            .and_then(|v| v.trim().parse().ok());
        if granted == 0 {
            // The registrar kept no binding for us: treat as a failure and try again.
            self.on_failure(now, resp.status, "binding not kept");
            return;
        }
        self.failures = 0;
        self.health.bound(now);
        if self.stop_pending {
            self.stop_pending = false;
            self.send_unregister();
            return;
        }
        self.state = RegistrationState::Registered;
        if self.learn_public(resp) {
            // Our Contact is unreachable: replace it at once; `Registered` follows its 2xx.
            self.send_register();
            return;
        }
        self.timer = Some(now + refresh_delay(granted));
        self.events
            .push_back(RegistrationEvent::Registered { expires: granted });
    }

    fn on_failure(&mut self, now: Instant, status: u16, reason: &str) {
        self.on_failure_after(now, status, reason, None);
    }

    fn on_failure_after(
        &mut self,
        now: Instant,
        status: u16,
        reason: &str,
        retry_after: Option<Duration>,
    ) {
        if self.state == RegistrationState::Unregistering || self.stop_pending {
            // Best effort: the binding will expire on its own.
            self.finish_unregister();
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let mut delay = backoff_delay(
            self.cfg.retry_base,
            self.cfg.retry_max,
            self.failures - 1,
            self.rng.random_range(0.5..=1.0),
        );
        if let Some(ra) = retry_after {
            delay = delay.max(ra.min(MAX_RETRY_AFTER));
        }
        self.state = RegistrationState::RetryWait;
        self.timer = Some(now + delay);
        self.events.push_back(RegistrationEvent::Failed {
            status,
            reason: reason.to_string(),
            retry_in: Some(delay),
        });
    }

    fn finish_unregister(&mut self) {
        self.stop_pending = false;
        self.timer = None;
        self.in_flight = None;
        self.state = RegistrationState::Idle;
        self.events.push_back(RegistrationEvent::Unregistered);
        self.started = std::mem::take(&mut self.restart_pending);
        if self.started {
            if self.local.is_some() {
                self.send_register();
            } else {
                self.state = RegistrationState::WaitingForFlow;
            }
        }
    }

    /// Sends the same kind of REGISTER again (after a challenge or a 423).
    fn resend(&mut self) {
        if self.state == RegistrationState::Unregistering || self.stop_pending {
            self.stop_pending = false;
            self.send_unregister();
        } else {
            self.send_register();
        }
    }

    fn send_register(&mut self) {
        let bound = matches!(
            self.state,
            RegistrationState::Registered | RegistrationState::Refreshing
        );
        self.state = if bound {
            RegistrationState::Refreshing
        } else {
            RegistrationState::Registering
        };
        self.timer = None;
        self.queue_register(self.requested_expires);
    }

    fn send_unregister(&mut self) {
        self.state = RegistrationState::Unregistering;
        self.timer = None;
        if self.local.is_none() {
            self.finish_unregister();
            return;
        }
        self.queue_register(0);
    }
}

#[cfg(test)]
use contact::{contact_uri_text, header_param};
#[cfg(test)]
mod tests;
