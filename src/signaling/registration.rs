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

use super::auth::{ChallengeOutcome, Credentials, DigestClient};
use super::message::{HeaderName, Host, Method, Request, Response, Uri, BRANCH_MAGIC};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The methods we list in `Allow`.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO";

/// The longest server-requested `Retry-After` we honour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Refresh no later than this long before the binding expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

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
    local: Option<SocketAddr>,
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
            local: None,
            state: RegistrationState::Idle,
            started: false,
            stop_pending: false,
            restart_pending: false,
            timer: None,
            failures: 0,
            flow_timer: None,
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

    /// A flow is up with this local address: (re-)register on it at once.
    pub fn handle_flow_up(&mut self, _now: Instant, local: SocketAddr) {
        self.local = Some(local);
        self.in_flight = None; // anything outstanding went with the old flow
        if self.stop_pending || self.state == RegistrationState::Unregistering {
            self.finish_unregister();
        } else if self.started {
            self.send_register();
        }
    }

    /// The flow is gone, and with it the binding (RFC 5626 §4.4): wait for the next flow-up.
    pub fn handle_flow_down(&mut self, _now: Instant) {
        self.local = None;
        self.in_flight = None;
        self.timer = None;
        if self.stop_pending || self.state == RegistrationState::Unregistering {
            self.finish_unregister();
        } else if self.started {
            if self.state != RegistrationState::WaitingForFlow {
                self.events.push_back(RegistrationEvent::Failed {
                    status: 0,
                    reason: "flow down".into(),
                    retry_in: None,
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
        let reason = match why {
            FailReason::Timeout => "timeout",
            FailReason::Transport => "transport failure",
        };
        self.on_failure(now, 0, reason);
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
        if self.stop_pending {
            self.stop_pending = false;
            self.send_unregister();
            return;
        }
        self.state = RegistrationState::Registered;
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

    fn transport(&self) -> String {
        self.cfg
            .registrar
            .transport()
            .unwrap_or_else(|| "tcp".into())
    }

    /// Our Contact URI, `sip:user@ip:port;transport=..[;ob]` (without `<>`).
    fn contact_uri(&self, local: SocketAddr) -> Uri {
        let mut uri = Uri::sip(Host::from(local.ip()), Some(local.port()));
        uri.scheme = self.cfg.aor.scheme;
        uri.user = self.cfg.aor.user.clone();
        uri.params.set("transport", Some(&self.transport()));
        if self.cfg.instance_id.is_some() {
            uri.params.set("ob", None);
        }
        for (name, value) in &self.cfg.contact_params {
            uri.params.set(name, Some(value));
        }
        uri
    }

    fn queue_register(&mut self, expires: u32) {
        let Some(local) = self.local else {
            return;
        };
        self.cseq = self.cseq.wrapping_add(1) & 0x7fff_ffff;
        self.in_flight = Some(self.cseq);
        let mut ruri = Uri::sip(self.cfg.aor.host.clone(), self.cfg.aor.port);
        ruri.scheme = self.cfg.aor.scheme;
        let mut req = Request::new(Method::Register, ruri.clone());
        let h = &mut req.headers;
        let branch = format!("{BRANCH_MAGIC}{}", token(&mut self.rng, 16));
        h.push(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                self.transport().to_ascii_uppercase(),
                local
            ),
        );
        h.push(HeaderName::MaxForwards, "70");
        if let Some(proxy) = &self.cfg.outbound_proxy {
            let mut p = proxy.clone();
            p.params.set("lr", None);
            h.push(HeaderName::Route, format!("<{p}>"));
        }
        let display = self
            .cfg
            .display_name
            .as_ref()
            .map(|d| format!("\"{}\" ", d.replace('\\', "\\\\").replace('"', "\\\"")))
            .unwrap_or_default();
        h.push(
            HeaderName::From,
            format!("{display}<{}>;tag={}", self.cfg.aor, self.from_tag),
        );
        h.push(HeaderName::To, format!("{display}<{}>", self.cfg.aor));
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} REGISTER", self.cseq));
        let mut contact = format!("<{}>", self.contact_uri(local));
        if let Some(inst) = &self.cfg.instance_id {
            contact.push_str(&format!(
                ";+sip.instance=\"<{inst}>\";reg-id={}",
                self.cfg.reg_id
            ));
        }
        if expires == 0 {
            contact.push_str(";expires=0");
        }
        h.push(HeaderName::Contact, contact);
        h.push(HeaderName::Expires, expires.to_string());
        h.push(HeaderName::Supported, "outbound, path");
        h.push(HeaderName::UserAgent, self.cfg.user_agent.clone());
        h.push(HeaderName::Allow, ALLOW);
        if let Some(creds) = &self.cfg.credentials {
            for (name, value) in self.digest.authorize_all(&Method::Register, &ruri, creds) {
                req.headers.push(name, value);
            }
        }
        self.requests.push_back(req);
    }

    /// Granted lifetime: our Contact's `expires` in the 2xx, else `Expires`, else requested.
    fn granted_expires(&self, resp: &Response) -> u32 {
        let ours = self.local.map(|l| self.contact_uri(l).to_string());
        let from_contact = resp
            .headers
            .list(&HeaderName::Contact)
            .find(|c| self.is_our_contact(c, ours.as_deref()))
            .and_then(|c| header_param(c, "expires"))
            .and_then(|v| v.parse().ok());
        from_contact
            .or_else(|| resp.headers.expires())
            .unwrap_or(self.requested_expires)
    }

    /// Matches a Contact element of a 2xx against ours: by `+sip.instance` and `reg-id` when
    /// we use outbound, else by `user@host:port` of the URI.
    fn is_our_contact(&self, elem: &str, ours: Option<&str>) -> bool {
        if let Some(inst) = &self.cfg.instance_id {
            let inst_matches = header_param(elem, "+sip.instance")
                .is_some_and(|v| v.trim_matches(|c| c == '"' || c == '<' || c == '>') == inst);
            let reg_id_matches =
                header_param(elem, "reg-id").is_none_or(|v| v.parse() == Ok(self.cfg.reg_id));
            if inst_matches && reg_id_matches {
                return true;
            }
        }
        let (Some(ours), Some(theirs)) = (ours, contact_uri_text(elem)) else {
            return false;
        };
        let base = |u: &str| u.split(';').next().unwrap_or_default().to_ascii_lowercase();
        base(ours) == base(theirs)
    }
}

/// The delay before refreshing a binding granted for `granted` seconds:
/// `max(granted / 2, granted − 60 s)`.
pub fn refresh_delay(granted: u32) -> Duration {
    let half = Duration::from_millis(u64::from(granted) * 500);
    let margin = Duration::from_secs(u64::from(granted)).saturating_sub(REFRESH_MARGIN);
    half.max(margin)
}

/// Retry delay after `n + 1` consecutive failures: `min(max, base · 2ⁿ · jitter)`, `jitter`
/// in [0.5, 1].
pub fn backoff_delay(base: Duration, max: Duration, n: u32, jitter: f64) -> Duration {
    let raw = base.as_secs_f64() * 2f64.powi(n.min(40) as i32) * jitter.clamp(0.5, 1.0);
    if raw >= max.as_secs_f64() {
        max
    } else {
        Duration::from_secs_f64(raw)
    }
}

/// Byte offsets of the `<` and `>` around the URI of a name-addr (quotes respected).
fn angle_span(elem: &str) -> Option<(usize, usize)> {
    let mut in_quote = false;
    let mut escaped = false;
    let mut open = None;
    for (i, c) in elem.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '<' if !in_quote && open.is_none() => open = Some(i),
            '>' if !in_quote => return open.map(|o| (o, i)),
            _ => {}
        }
    }
    None
}

/// The URI text between `<` and `>` of a Contact element (or up to the first `;`).
fn contact_uri_text(elem: &str) -> Option<&str> {
    let elem = elem.trim();
    match angle_span(elem) {
        Some((a, b)) => Some(&elem[a + 1..b]),
        None => elem.split(';').next().map(str::trim),
    }
}

/// A header parameter (after the `>` of a name-addr) of a Contact element, unquoted.
fn header_param<'a>(elem: &'a str, name: &str) -> Option<&'a str> {
    let params = match angle_span(elem) {
        Some((_, i)) => &elem[i + 1..],
        None => elem.find(';').map_or("", |i| &elem[i..]),
    };
    let mut rest = params;
    while let Some(start) = rest.find(';') {
        rest = &rest[start + 1..];
        // A parameter ends at the next `;` outside quotes.
        let mut in_quote = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    in_quote = !in_quote;
                }
                c == ';' && !in_quote
            })
            .map_or(rest.len(), |(i, _)| i);
        let p = &rest[..end];
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        if n.trim().eq_ignore_ascii_case(name) {
            return Some(v.trim().trim_matches('"'));
        }
        rest = &rest[end..];
    }
    None
}

/// The CSeq number of a response, read without the full CSeq parser.
fn response_cseq(resp: &Response) -> Option<u32> {
    let v = resp.headers.get(&HeaderName::CSeq)?;
    let mut it = v.split_whitespace();
    let seq = it.next()?.parse().ok()?;
    it.next()
        .filter(|m| m.eq_ignore_ascii_case("REGISTER"))
        .map(|_| seq)
}

fn token(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::auth::{digest_response, Algorithm, DigestInput, Qop};
    use crate::signaling::message::{Params, Scheme};
    use std::net::{IpAddr, Ipv4Addr};

    const S: Duration = Duration::from_secs(1);

    /// The origin of the virtual clock (tests only; every later time is origin + offset).
    fn origin() -> Instant {
        Instant::now()
    }
    const INSTANCE: &str = "urn:uuid:00000000-0000-1000-8000-000a95a0e128";

    fn uri(user: Option<&str>, host: &str, port: Option<u16>) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_string),
            password: None,
            host: Host::Domain(host.into()),
            port,
            params: Params::default(),
            headers: Vec::new(),
        }
    }

    fn config() -> RegistrationConfig {
        let mut registrar = uri(None, "registrar.example.com", Some(5060));
        registrar.params.set("transport", Some("tcp"));
        RegistrationConfig {
            registrar,
            aor: uri(Some("alice"), "example.com", None),
            display_name: Some("Alice".into()),
            credentials: Some(Credentials {
                username: "alice".into(),
                password: "secret".into(),
            }),
            expires: 600,
            instance_id: Some(INSTANCE.into()),
            reg_id: 1,
            outbound_proxy: Some(uri(None, "proxy.example.com", Some(5060))),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            user_agent: "wakeline-test".into(),
            rng_seed: 7,
            contact_params: Vec::new(),
        }
    }

    fn local(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), port)
    }

    fn hdr(r: &Request, name: HeaderName) -> &str {
        r.headers.get(&name).unwrap_or_default()
    }

    fn cseq(r: &Request) -> u32 {
        hdr(r, HeaderName::CSeq)
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn one_request(reg: &mut Registration) -> Request {
        let r = reg.poll_request().expect("a REGISTER");
        assert!(reg.poll_request().is_none(), "only one REGISTER at a time");
        r
    }

    fn events(reg: &mut Registration) -> Vec<RegistrationEvent> {
        std::iter::from_fn(|| reg.poll_event()).collect()
    }

    fn challenge(req: &Request, nonce: &str, stale: bool) -> Response {
        let mut r = Response::for_request(req, 401);
        r.headers.push(
            HeaderName::WwwAuthenticate,
            format!(
                "Digest realm=\"example.com\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5{}",
                if stale { ", stale=true" } else { "" }
            ),
        );
        r
    }

    fn ok(req: &Request, contact_expires: Option<u32>, expires_hdr: Option<u32>) -> Response {
        let mut r = Response::for_request(req, 200);
        r.headers.push(
            HeaderName::Contact,
            "<sip:alice@192.0.2.9:5070;transport=tcp>;expires=3333",
        );
        let mut ours = hdr(req, HeaderName::Contact).replace(";expires=0", "");
        if let Some(e) = contact_expires {
            ours.push_str(&format!(";expires={e}"));
        }
        r.headers.push(HeaderName::Contact, ours);
        if let Some(e) = expires_hdr {
            r.headers.push(HeaderName::Expires, e.to_string());
        }
        r
    }

    fn param<'a>(v: &'a str, name: &str) -> &'a str {
        let start = v.find(&format!("{name}=")).unwrap() + name.len() + 1;
        let rest = &v[start..];
        match rest.strip_prefix('"') {
            Some(q) => &q[..q.find('"').unwrap()],
            None => rest.split(',').next().unwrap().trim(),
        }
    }

    #[test]
    fn full_cycle_challenge_auth_refresh_stop() {
        let t0 = origin();
        let mut reg = Registration::new(config());
        reg.start(t0);
        assert_eq!(reg.state(), RegistrationState::WaitingForFlow);
        assert!(reg.poll_request().is_none());

        reg.handle_flow_up(t0, local(5070));
        let r1 = one_request(&mut reg);
        assert_eq!(reg.state(), RegistrationState::Registering);
        assert_eq!(r1.method, Method::Register);
        assert_eq!(r1.uri.to_string(), "sip:example.com");
        let via = hdr(&r1, HeaderName::Via);
        assert!(via.starts_with("SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK"));
        assert!(via.ends_with(";rport"));
        assert_eq!(hdr(&r1, HeaderName::MaxForwards), "70");
        assert_eq!(
            hdr(&r1, HeaderName::Route),
            "<sip:proxy.example.com:5060;lr>"
        );
        let from = hdr(&r1, HeaderName::From).to_string();
        assert!(from.starts_with("\"Alice\" <sip:alice@example.com>;tag="));
        assert_eq!(
            hdr(&r1, HeaderName::To),
            "\"Alice\" <sip:alice@example.com>"
        );
        assert_eq!(
            hdr(&r1, HeaderName::Contact),
            format!(
                "<sip:alice@10.0.0.1:5070;transport=tcp;ob>;+sip.instance=\"<{INSTANCE}>\";reg-id=1"
            )
        );
        assert_eq!(hdr(&r1, HeaderName::Expires), "600");
        assert_eq!(hdr(&r1, HeaderName::Supported), "outbound, path");
        assert_eq!(hdr(&r1, HeaderName::UserAgent), "wakeline-test");
        assert_eq!(hdr(&r1, HeaderName::Allow), ALLOW);
        assert!(r1.headers.get(&HeaderName::Authorization).is_none());

        // 401 -> same REGISTER with credentials, CSeq + 1.
        reg.handle_response(t0, &challenge(&r1, "n1", false));
        let r2 = one_request(&mut reg);
        assert_eq!(cseq(&r2), cseq(&r1) + 1);
        assert_eq!(hdr(&r2, HeaderName::CallId), hdr(&r1, HeaderName::CallId));
        assert_eq!(hdr(&r2, HeaderName::From), from);
        let auth = hdr(&r2, HeaderName::Authorization);
        assert_eq!(param(auth, "nc"), "00000001");
        assert_eq!(param(auth, "uri"), "sip:example.com");
        let expected = digest_response(&DigestInput {
            algorithm: Algorithm::Md5,
            username: "alice",
            realm: "example.com",
            password: "secret",
            nonce: "n1",
            cnonce: param(auth, "cnonce"),
            nc: 1,
            qop: Some(Qop::Auth),
            method: "REGISTER",
            uri: "sip:example.com",
        });
        assert_eq!(param(auth, "response"), expected);
        assert!(events(&mut reg).is_empty());

        // 200: our Contact's expires wins over the Expires header and others' contacts.
        let t1 = t0 + S;
        let mut resp = ok(&r2, Some(300), Some(600));
        resp.headers.push(HeaderName::FlowTimer, "120");
        reg.handle_response(t1, &resp);
        assert_eq!(
            events(&mut reg),
            vec![RegistrationEvent::Registered { expires: 300 }]
        );
        assert_eq!(reg.state(), RegistrationState::Registered);
        assert_eq!(reg.flow_timer(), Some(120));
        // Refresh at max(300/2, 300-60) = 240 s.
        assert_eq!(reg.poll_timeout(), Some(t1 + 240 * S));
        reg.handle_timeout(t1 + 239 * S);
        assert!(reg.poll_request().is_none());
        reg.handle_timeout(t1 + 240 * S);
        let r3 = one_request(&mut reg);
        assert_eq!(reg.state(), RegistrationState::Refreshing);
        assert_eq!(cseq(&r3), cseq(&r2) + 1);
        assert_eq!(hdr(&r3, HeaderName::CallId), hdr(&r1, HeaderName::CallId));
        assert_eq!(hdr(&r3, HeaderName::From), from);
        assert_ne!(hdr(&r3, HeaderName::Via), hdr(&r2, HeaderName::Via));
        assert_eq!(param(hdr(&r3, HeaderName::Authorization), "nc"), "00000002");

        let t2 = t1 + 241 * S;
        reg.handle_response(t2, &ok(&r3, None, Some(600)));
        assert_eq!(
            events(&mut reg),
            vec![RegistrationEvent::Registered { expires: 600 }]
        );
        assert_eq!(reg.poll_timeout(), Some(t2 + 540 * S));

        // stop -> Expires: 0 with Contact expires=0 -> 200 -> Unregistered.
        reg.stop(t2 + S);
        let r4 = one_request(&mut reg);
        assert_eq!(reg.state(), RegistrationState::Unregistering);
        assert_eq!(hdr(&r4, HeaderName::Expires), "0");
        assert!(hdr(&r4, HeaderName::Contact).ends_with(";reg-id=1;expires=0"));
        assert_eq!(cseq(&r4), cseq(&r3) + 1);
        reg.handle_response(t2 + 2 * S, &ok(&r4, None, Some(0)));
        assert_eq!(events(&mut reg), vec![RegistrationEvent::Unregistered]);
        assert_eq!(reg.state(), RegistrationState::Idle);
        assert_eq!(reg.poll_timeout(), None);
    }

    #[test]
    fn wrong_password_gives_up_without_loop() {
        let t0 = origin();
        let mut reg = Registration::new(config());
        reg.handle_flow_up(t0, local(5070));
        reg.start(t0);
        let r1 = one_request(&mut reg);
        reg.handle_response(t0, &challenge(&r1, "n1", false));
        let r2 = one_request(&mut reg);
        reg.handle_response(t0, &challenge(&r2, "n2", false));
        assert!(reg.poll_request().is_none(), "no third REGISTER");
        let ev = events(&mut reg);
        assert!(matches!(
            ev.as_slice(),
            [RegistrationEvent::Failed {
                status: 401,
                retry_in: Some(_),
                ..
            }]
        ));
        assert_eq!(reg.state(), RegistrationState::RetryWait);
        // The retry starts clean: no stale Authorization.
        let at = reg.poll_timeout().unwrap();
        reg.handle_timeout(at);
        let r3 = one_request(&mut reg);
        assert!(r3.headers.get(&HeaderName::Authorization).is_none());
    }

    #[test]
    fn stale_challenge_retries_and_no_credentials_fails() {
        let t0 = origin();
        let mut reg = Registration::new(config());
        reg.handle_flow_up(t0, local(5070));
        reg.start(t0);
        let r1 = one_request(&mut reg);
        reg.handle_response(t0, &challenge(&r1, "n1", false));
        let r2 = one_request(&mut reg);
        reg.handle_response(t0, &challenge(&r2, "n2", true));
        let r3 = one_request(&mut reg);
        let auth = hdr(&r3, HeaderName::Authorization);
        assert_eq!(param(auth, "nonce"), "n2");
        assert_eq!(param(auth, "nc"), "00000001");

        let mut cfg = config();
        cfg.credentials = None;
        let mut reg = Registration::new(cfg);
        reg.handle_flow_up(t0, local(5070));
        reg.start(t0);
        let r1 = one_request(&mut reg);
        reg.handle_response(t0, &challenge(&r1, "n1", false));
        assert!(reg.poll_request().is_none());
        assert!(matches!(
            events(&mut reg).as_slice(),
            [RegistrationEvent::Failed { status: 401, .. }]
        ));
    }

    #[test]
    fn interval_too_brief_uses_min_expires() {
        let t0 = origin();
        let mut reg = Registration::new(config());
        reg.handle_flow_up(t0, local(5070));
        reg.start(t0);
        let r1 = one_request(&mut reg);
        let mut resp = Response::for_request(&r1, 423);
        resp.headers.push(HeaderName::MinExpires, "1800");
        reg.handle_response(t0, &resp);
        let r2 = one_request(&mut reg);
        assert_eq!(hdr(&r2, HeaderName::Expires), "1800");
        assert_eq!(cseq(&r2), cseq(&r1) + 1);
        // A 423 without a usable Min-Expires is a failure, not a loop.
        let bad = Response::for_request(&r2, 423);
        reg.handle_response(t0, &bad);
        assert!(reg.poll_request().is_none());
        assert!(matches!(
            events(&mut reg).as_slice(),
            [RegistrationEvent::Failed { status: 423, .. }]
        ));
        // The raised value sticks for the retry.
        let at = reg.poll_timeout().unwrap();
        reg.handle_timeout(at);
        assert_eq!(hdr(&one_request(&mut reg), HeaderName::Expires), "1800");
    }

    #[test]
    fn backoff_is_monotone_capped_and_reset_by_success() {
        let t0 = origin();
        let cfg = config();
        let (base, max) = (cfg.retry_base, cfg.retry_max);
        let mut reg = Registration::new(cfg);
        reg.handle_flow_up(t0, local(5070));
        reg.start(t0);
        let mut now = t0;
        let mut delays = Vec::new();
        for i in 0..12 {
            let _ = one_request(&mut reg);
            let why = if i % 2 == 0 {
                FailReason::Timeout
            } else {
                FailReason::Transport
            };
            reg.handle_request_failed(now, why);
            match events(&mut reg).as_slice() {
                [RegistrationEvent::Failed {
                    status: 0,
                    retry_in: Some(d),
                    ..
                }] => delays.push(*d),
                other => panic!("unexpected {other:?}"),
            }
            let at = reg.poll_timeout().unwrap();
            assert_eq!(at, now + delays[i], "the timer follows the reported delay");
            reg.handle_timeout(at - Duration::from_millis(1));
            assert!(reg.poll_request().is_none(), "not before the delay");
            now = at;
            reg.handle_timeout(now);
        }
        assert!(delays[0] >= base / 2 && delays[0] <= base);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= max));
        assert_eq!(*delays.last().unwrap(), max);

        // Success resets the backoff.
        let r = one_request(&mut reg);
        reg.handle_response(now, &ok(&r, None, Some(600)));
        let at = reg.poll_timeout().unwrap();
        reg.handle_timeout(at);
        let _ = one_request(&mut reg);
        reg.handle_request_failed(at, FailReason::Timeout);
        let ev = events(&mut reg);
        assert!(matches!(
            ev.last(),
            Some(RegistrationEvent::Failed { retry_in: Some(d), .. }) if *d <= base
        ));
    }

    #[test]
    fn backoff_delay_function() {
        let (b, m) = (Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(backoff_delay(b, m, 0, 1.0), b);
        assert_eq!(backoff_delay(b, m, 0, 0.5), b / 2);
        assert_eq!(backoff_delay(b, m, 3, 1.0), 8 * S);
        assert_eq!(backoff_delay(b, m, 5, 1.0), m);
        assert_eq!(backoff_delay(b, m, 1000, 0.5), m);
    }

    #[test]
    fn refresh_delay_rule() {
        assert_eq!(refresh_delay(3600), 3540 * S);
        assert_eq!(refresh_delay(100), 50 * S);
        assert_eq!(refresh_delay(60), 30 * S);
        assert_eq!(refresh_delay(1), Duration::from_millis(500));
    }

    #[test]
    fn server_error_honours_retry_after_and_403_retries_later() {
        let t0 = origin();
        let mut reg = Registration::new(config());
        reg.handle_flow_up(t0, local(5070));
        reg.start(t0);
        let r1 = one_request(&mut reg);
        let mut resp = Response::for_request(&r1, 503);
        resp.headers.push(HeaderName::RetryAfter, "120;duration=60");
        reg.handle_response(t0, &resp);
        assert_eq!(
            events(&mut reg),
            vec![RegistrationEvent::Failed {
                status: 503,
                reason: "Service Unavailable".into(),
                retry_in: Some(120 * S)
            }]
        );
        assert_eq!(reg.poll_timeout(), Some(t0 + 120 * S));
        // An absurd Retry-After from the network is capped, never overflows the clock.
        let mut reg2 = Registration::new(config());
        reg2.handle_flow_up(t0, local(5070));
        reg2.start(t0);
        let q = one_request(&mut reg2);
        let mut huge = Response::for_request(&q, 503);
        huge.headers
            .push(HeaderName::RetryAfter, u64::MAX.to_string());
        reg2.handle_response(t0, &huge);
        assert_eq!(reg2.poll_timeout(), Some(t0 + MAX_RETRY_AFTER));

        reg.handle_timeout(t0 + 120 * S);
        let r2 = one_request(&mut reg);
        reg.handle_response(t0 + 120 * S, &Response::for_request(&r2, 403));
        assert!(reg.poll_request().is_none());
        assert!(matches!(
            events(&mut reg).as_slice(),
            [RegistrationEvent::Failed {
                status: 403,
                retry_in: Some(_),
                ..
            }]
        ));
    }

    #[test]
    fn flow_down_then_up_re_registers_with_same_identity() {
        let t0 = origin();
        let mut reg = Registration::new(config());
        reg.start(t0);
        reg.handle_flow_up(t0, local(5070));
        let r1 = one_request(&mut reg);
        reg.handle_response(t0, &ok(&r1, None, Some(600)));
        events(&mut reg);

        reg.handle_flow_down(t0 + 10 * S);
        assert_eq!(reg.state(), RegistrationState::WaitingForFlow);
        assert_eq!(reg.poll_timeout(), None);
        assert_eq!(
            events(&mut reg),
            vec![RegistrationEvent::Failed {
                status: 0,
                reason: "flow down".into(),
                retry_in: None
            }]
        );
        reg.handle_flow_up(t0 + 11 * S, local(6000));
        let r2 = one_request(&mut reg);
        assert_eq!(cseq(&r2), cseq(&r1) + 1);
        assert_eq!(hdr(&r2, HeaderName::CallId), hdr(&r1, HeaderName::CallId));
        assert_eq!(hdr(&r2, HeaderName::From), hdr(&r1, HeaderName::From));
        let contact = hdr(&r2, HeaderName::Contact);
        assert!(contact.contains("@10.0.0.1:6000;transport=tcp;ob>"));
        assert!(contact.contains(&format!("+sip.instance=\"<{INSTANCE}>\"")));
        assert!(contact.contains(";reg-id=1"));
        assert!(hdr(&r2, HeaderName::Via).contains("10.0.0.1:6000"));
        // A late response to the REGISTER of the old flow is ignored.
        reg.handle_response(t0 + 12 * S, &Response::for_request(&r1, 500));
        assert!(events(&mut reg).is_empty());
        reg.handle_response(t0 + 12 * S, &ok(&r2, None, None));
        assert_eq!(
            events(&mut reg),
            vec![RegistrationEvent::Registered { expires: 600 }]
        );
    }

    #[test]
    fn without_instance_id_no_outbound_params() {
        let t0 = origin();
        let mut cfg = config();
        cfg.instance_id = None;
        cfg.outbound_proxy = None;
        cfg.display_name = None;
        let mut reg = Registration::new(cfg);
        reg.handle_flow_up(t0, local(5070));
        reg.start(t0);
        let r = one_request(&mut reg);
        assert_eq!(
            hdr(&r, HeaderName::Contact),
            "<sip:alice@10.0.0.1:5070;transport=tcp>"
        );
        assert!(r.headers.get(&HeaderName::Route).is_none());
        assert_eq!(hdr(&r, HeaderName::To), "<sip:alice@example.com>");
        // The 2xx Contact is matched by URI when there is no instance id.
        reg.handle_response(t0, &ok(&r, Some(120), Some(600)));
        assert_eq!(
            events(&mut reg),
            vec![RegistrationEvent::Registered { expires: 120 }]
        );
    }

    #[test]
    fn stop_while_registering_waits_for_the_response() {
        let t0 = origin();
        let mut reg = Registration::new(config());
        reg.handle_flow_up(t0, local(5070));
        reg.start(t0);
        let r1 = one_request(&mut reg);
        reg.stop(t0);
        assert!(reg.poll_request().is_none(), "one REGISTER at a time");
        reg.handle_response(t0, &ok(&r1, None, Some(600)));
        let r2 = one_request(&mut reg);
        assert_eq!(hdr(&r2, HeaderName::Expires), "0");
        reg.handle_request_failed(t0 + 32 * S, FailReason::Timeout);
        assert_eq!(events(&mut reg), vec![RegistrationEvent::Unregistered]);
        assert_eq!(reg.state(), RegistrationState::Idle);
        // Stopping when never started or idle is quiet.
        reg.stop(t0 + 40 * S);
        assert!(events(&mut reg).is_empty());
    }

    #[test]
    fn granted_expiry_found_by_instance_when_registrar_rewrites_contact() {
        let t0 = origin();
        let mut reg = Registration::new(config());
        reg.handle_flow_up(t0, local(5070));
        reg.start(t0);
        let r = one_request(&mut reg);
        let mut resp = Response::for_request(&r, 200);
        resp.headers.push(
            HeaderName::Contact,
            "<sip:alice@198.51.100.7:41234;transport=tcp;ob>;reg-id=1;expires=90;+sip.instance=\"<urn:uuid:other>\"",
        );
        resp.headers.push(
            HeaderName::Contact,
            format!("<sip:alice@198.51.100.7:41235;transport=tcp;ob>;+sip.instance=\"<{INSTANCE}>\";reg-id=1;expires=200"),
        );
        resp.headers.push(HeaderName::Expires, "3600");
        reg.handle_response(t0, &resp);
        assert_eq!(
            events(&mut reg),
            vec![RegistrationEvent::Registered { expires: 200 }]
        );
        assert_eq!(reg.poll_timeout(), Some(t0 + 140 * S));
    }

    #[test]
    fn start_during_unregister_registers_again_afterwards() {
        let t0 = origin();
        let mut reg = Registration::new(config());
        reg.handle_flow_up(t0, local(5070));
        reg.start(t0);
        let r1 = one_request(&mut reg);
        reg.handle_response(t0, &ok(&r1, None, Some(600)));
        reg.stop(t0);
        let r2 = one_request(&mut reg);
        assert_eq!(hdr(&r2, HeaderName::Expires), "0");
        reg.start(t0);
        reg.start(t0);
        assert!(reg.poll_request().is_none(), "waits for the un-REGISTER");
        reg.handle_response(t0, &ok(&r2, None, Some(0)));
        let r3 = one_request(&mut reg);
        assert_eq!(hdr(&r3, HeaderName::Expires), "600");
        assert_eq!(cseq(&r3), cseq(&r2) + 1);
        assert_eq!(reg.state(), RegistrationState::Registering);
        // stop twice while un-registering: one un-REGISTER, one Unregistered.
        reg.handle_response(t0, &ok(&r3, None, Some(600)));
        reg.stop(t0);
        reg.stop(t0);
        let r4 = one_request(&mut reg);
        reg.handle_response(t0, &ok(&r4, None, Some(0)));
        assert_eq!(
            events(&mut reg),
            vec![
                RegistrationEvent::Registered { expires: 600 },
                RegistrationEvent::Unregistered,
                RegistrationEvent::Registered { expires: 600 },
                RegistrationEvent::Unregistered,
            ]
        );
        assert_eq!(reg.state(), RegistrationState::Idle);
    }

    #[test]
    fn challenge_on_register_with_stop_pending_answers_with_unregister() {
        let t0 = origin();
        let mut reg = Registration::new(config());
        reg.handle_flow_up(t0, local(5070));
        reg.start(t0);
        let r1 = one_request(&mut reg);
        reg.stop(t0);
        reg.handle_response(t0, &challenge(&r1, "n1", false));
        let r2 = one_request(&mut reg);
        assert_eq!(hdr(&r2, HeaderName::Expires), "0");
        assert!(r2.headers.get(&HeaderName::Authorization).is_some());
        reg.handle_response(t0, &ok(&r2, None, Some(0)));
        assert_eq!(events(&mut reg), vec![RegistrationEvent::Unregistered]);
    }

    #[test]
    fn contact_param_helpers() {
        let c = "\"A;b\" <sip:a@h;transport=tcp;ob>;+sip.instance=\"<urn:uuid:1;x>\";reg-id=2;expires=30";
        assert_eq!(header_param(c, "expires"), Some("30"));
        assert_eq!(header_param(c, "reg-id"), Some("2"));
        assert_eq!(header_param(c, "+sip.instance"), Some("<urn:uuid:1;x>"));
        assert_eq!(header_param(c, "transport"), None);
        assert_eq!(contact_uri_text(c), Some("sip:a@h;transport=tcp;ob"));
        assert_eq!(header_param("sip:a@h;expires=5", "expires"), Some("5"));
    }

    proptest::proptest! {
        #[test]
        fn contact_helpers_never_panic(s in "\\PC{0,200}") {
            let _ = header_param(&s, "expires");
            let _ = contact_uri_text(&s);
        }
    }
}
