//! The DNS side of RFC 3263: asks the questions of a sans-IO
//! [`Rfc3263`](crate::signaling::rfc3263::Rfc3263) resolution with hickory-resolver and feeds
//! the answers back.
//!
//! The system configuration (`/etc/resolv.conf`) is used unless the user names DNS servers
//! (`UserAgentBuilder::dns_servers`, `--dns`). Every query is bounded: [`QUERY_TIMEOUT`] per
//! try, [`QUERY_ATTEMPTS`] tries, and a hard outer bound on top. Nothing is cached here beyond
//! what hickory keeps within the records' TTL, so every connect resolves afresh.

use super::flow::FlowEvent;
use crate::signaling::config::Config;
use crate::signaling::core::FlowId;
use crate::signaling::message::Uri;
use crate::signaling::rfc3263::{
    Answer, Destination, LookupError, Naptr, Policy, Query, ResolveError, Rfc3263, Srv, Target,
    Transport,
};
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use rand::SeedableRng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long one DNS try waits for its answer.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries per question (per server) before it counts as timed out.
pub(crate) const QUERY_ATTEMPTS: usize = 2;

/// A DNS client for RFC 3263 resolutions. Cheap to share (`Arc`); the hickory resolver is
/// built on the first name to resolve (numeric hosts never need it).
pub(crate) struct Resolver {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    attempts: usize,
    /// The hickory resolver, or why none could be built (e.g. no `/etc/resolv.conf`).
    inner: OnceLock<Result<TokioResolver, String>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("servers", &self.servers)
            .finish()
    }
}

impl Resolver {
    /// A resolver that asks `servers`, or the system's servers when the list is empty.
    pub(crate) fn new(servers: &[SocketAddr]) -> Resolver {
        Resolver::with_timing(servers, QUERY_TIMEOUT, QUERY_ATTEMPTS)
    }

    fn with_timing(servers: &[SocketAddr], timeout: Duration, attempts: usize) -> Resolver {
        Resolver {
            servers: servers.to_vec(),
            timeout,
            attempts,
            inner: OnceLock::new(),
        }
    }

    /// The hard bound of one question, whatever the resolver's own timers do: every try of
    /// every server, plus a little slack.
    fn bound(&self) -> Duration {
        let tries = self.attempts.max(1) * self.servers.len().max(1);
        self.timeout
            .saturating_mul(u32::try_from(tries).unwrap_or(u32::MAX))
            .saturating_add(Duration::from_millis(500))
    }

    fn inner(&self) -> &Result<TokioResolver, String> {
        self.inner.get_or_init(|| {
            let built = build(&self.servers, self.timeout, self.attempts);
            if let Err(e) = &built {
                tracing::warn!("{e}; only numeric hosts will resolve");
            }
            built
        })
    }

    /// The targets for `dest`, in the order to try them (RFC 3263 §4).
    pub(crate) async fn resolve(
        &self,
        dest: Destination,
        policy: Policy,
    ) -> Result<Vec<Target>, ResolveError> {
        let mut r = Rfc3263::new(dest, policy);
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        let bound = self.bound();
        // The questions of one step (the SRV names, or every host's A and AAAA) go out
        // together; the next step waits for all of them.
        loop {
            let mut asking = tokio::task::JoinSet::new();
            while let Some(q) = r.poll_query() {
                let resolver = self.inner().clone();
                asking.spawn(async move {
                    let answer = match resolver {
                        Ok(res) => ask(&res, bound, &q).await,
                        Err(why) => Answer::Failed(LookupError::Other(why)),
                    };
                    (q, answer)
                });
            }
            if asking.is_empty() {
                break;
            }
            while let Some(done) = asking.join_next().await {
                match done {
                    Ok((q, answer)) => {
                        tracing::debug!(?q, ?answer, "DNS");
                        r.handle_answer(&q, answer, &mut rng);
                    }
                    // A lookup task cannot panic short of a bug; its question stays unanswered.
                    Err(e) => tracing::warn!("DNS lookup task: {e}"),
                }
            }
        }
        r.finish()
    }
}

/// How a connect finds its targets: resolve now, under the policy of the transport the core
/// asked for, or take those a transport pick ([`Resolver::pick_transport`]) already found.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Resolve this destination.
    Resolve(Destination),
    /// This destination's targets, resolved (all of one transport).
    Resolved(Destination, Vec<Target>),
}

impl Lookup {
    /// The destination looked up.
    pub(crate) fn dest(&self) -> &Destination {
        match self {
            Lookup::Resolve(d) | Lookup::Resolved(d, _) => d,
        }
    }

    /// The targets, in the order to try them.
    pub(crate) async fn targets(
        self,
        resolver: &Resolver,
        policy: Policy,
    ) -> Result<Vec<Target>, ResolveError> {
        match self {
            Lookup::Resolve(d) => resolver.resolve(d, policy).await,
            Lookup::Resolved(_, t) => Ok(t),
        }
    }
}

impl Resolver {
    /// RFC 3263 §4.1 for a URI that names no transport: NAPTR (else SRV per transport) over
    /// UDP and TCP decide, `default` first where DNS says nothing. The transport of the first
    /// target, and that transport's targets in order.
    pub(crate) async fn pick_transport(
        &self,
        dest: Destination,
        default: Transport,
    ) -> Result<(Transport, Vec<Target>), ResolveError> {
        let name = dest.host_text();
        let targets = self.resolve(dest, Policy::udp_or_tcp(default)).await?;
        let picked = targets
            .first()
            .map(|t| t.transport)
            .ok_or(ResolveError::NoRecords(name))?;
        let targets = targets
            .into_iter()
            .filter(|t| t.transport == picked)
            .collect();
        Ok((picked, targets))
    }
}

/// Picks the transport of `flow`'s connect to `dest` by DNS in the background
/// ([`Resolver::pick_transport`]); reports [`FlowEvent::Picked`] with the targets found, or
/// `Closed` with why there are none.
pub(crate) fn spawn_pick(
    flow: FlowId,
    dest: Destination,
    default: Transport,
    resolver: Arc<Resolver>,
    events: mpsc::UnboundedSender<FlowEvent>,
) {
    tokio::spawn(async move {
        let ev = match resolver.pick_transport(dest.clone(), default).await {
            Ok((transport, targets)) => {
                tracing::debug!(?flow, %transport, "DNS picked the transport");
                FlowEvent::Picked {
                    flow,
                    transport,
                    lookup: Lookup::Resolved(dest, targets),
                }
            }
            Err(e) => FlowEvent::Closed {
                flow,
                why: e.to_string(),
            },
        };
        let _ = events.send(ev);
    });
}

/// A hickory resolver for `servers` (the system's when empty) with our timeouts.
fn build(
    servers: &[SocketAddr],
    timeout: Duration,
    attempts: usize,
) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| format!("no DNS configuration: {e}"))?
    } else {
        let name_servers = servers
            .iter()
            .map(|s| {
                let conn = |protocol| {
                    let mut c = ConnectionConfig::new(protocol);
                    c.port = s.port();
                    c
                };
                NameServerConfig::new(
                    s.ip(),
                    true,
                    vec![conn(ProtocolConfig::Udp), conn(ProtocolConfig::Tcp)],
                )
            })
            .collect();
        let config = ResolverConfig::from_parts(None, Vec::new(), name_servers);
        TokioResolver::builder_with_config(config, Default::default())
    };
    let opts = builder.options_mut();
    opts.timeout = timeout;
    opts.attempts = attempts;
    builder.build().map_err(|e| format!("DNS resolver: {e}"))
}

/// Asks one question, bounded by `bound` whatever the resolver's own timers do.
async fn ask(resolver: &TokioResolver, bound: Duration, q: &Query) -> Answer {
    let rtype = match q {
        Query::Naptr(_) => RecordType::NAPTR,
        Query::Srv(_) => RecordType::SRV,
        Query::A(_) => RecordType::A,
        Query::Aaaa(_) => RecordType::AAAA,
    };
    // A fully qualified name: no search-list guessing.
    let name = format!("{}.", q.name().trim_end_matches('.'));
    let lookup = match tokio::time::timeout(bound, resolver.lookup(name.as_str(), rtype)).await {
        Err(_) => return Answer::Failed(LookupError::TimedOut),
        Ok(Err(e)) => return Answer::Failed(lookup_error(&e)),
        Ok(Ok(l)) => l,
    };
    let data = lookup.answers().iter().map(|r| &r.data);
    match q {
        Query::Naptr(_) => Answer::Naptr(
            data.filter_map(|d| match d {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: String::from_utf8_lossy(&n.flags).into_owned(),
                    services: String::from_utf8_lossy(&n.services).into_owned(),
                    replacement: n.replacement.to_ascii(),
                }),
                _ => None,
            })
            .collect(),
        ),
        Query::Srv(_) => Answer::Srv(
            data.filter_map(|d| match d {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_ascii(),
                }),
                _ => None,
            })
            .collect(),
        ),
        Query::A(_) | Query::Aaaa(_) => Answer::Addresses(
            data.filter_map(|d| d.ip_addr())
                .filter(|ip| ip.is_ipv4() == matches!(q, Query::A(_)))
                .collect(),
        ),
    }
}

/// How long a target that timed out (a connect, or a REGISTER on it) goes last in the list.
pub(crate) const AVOID_FOR: Duration = Duration::from_secs(60);

/// Targets that failed by timing out lately: they are tried last, not dropped, so a list
/// where every target is avoided is still tried in full.
#[derive(Debug, Default)]
pub(crate) struct Avoid {
    until: HashMap<SocketAddr, Instant>,
}

impl Avoid {
    /// Puts `addr` last for [`AVOID_FOR`].
    pub(crate) fn add(&mut self, addr: SocketAddr, now: Instant) {
        self.until.insert(addr, now + AVOID_FOR);
    }

    /// The targets avoided at `now` (forgets the expired ones).
    pub(crate) fn list(&mut self, now: Instant) -> Vec<SocketAddr> {
        self.until.retain(|_, t| *t > now);
        self.until.keys().copied().collect()
    }
}

/// Most call targets remembered for [`ConnectHints`] (the account's are always kept).
const MAX_HINTS: usize = 256;

/// What the driver knows about the URIs behind the core's `Output::Connect { host, port }`.
///
/// The core names a connect target by host and port only, with 5060 filled in when the URI
/// has no port; RFC 3263 needs to know whether the port was explicit, and the URI's transport
/// and scheme. The driver remembers the URIs it handed to the core (the account's registrar
/// and proxy, call targets) and recovers their [`Destination`] from the host and port.
#[derive(Debug, Default)]
pub(crate) struct ConnectHints {
    map: HashMap<(String, u16), Destination>,
    /// The account's control-flow target (proxy, else registrar).
    control: Option<(String, u16)>,
    account_keys: Vec<(String, u16)>,
    /// The default transport, and whether DNS picks the transport of URIs that name none
    /// (`Config::transport_by_dns`).
    default: Option<Transport>,
    by_dns: bool,
}

impl ConnectHints {
    /// Hints for the account's registrar and proxy.
    pub(crate) fn new(config: &Config) -> ConnectHints {
        let mut hints = ConnectHints {
            default: Some(config.default_transport.into()),
            by_dns: config.transport_by_dns,
            ..ConnectHints::default()
        };
        if let Some(a) = &config.account {
            for uri in [Some(&a.registrar), a.proxy.as_ref()].into_iter().flatten() {
                let key = hint_key(uri);
                hints.account_keys.push(key.clone());
                hints.control = Some(key);
                hints.map.insert(hint_key(uri), Destination::from_uri(uri));
            }
        }
        hints
    }

    /// Remembers a call target.
    pub(crate) fn note(&mut self, uri: &Uri) {
        if self.map.len() >= MAX_HINTS {
            let keep = &self.account_keys;
            self.map.retain(|k, _| keep.contains(k));
        }
        let key = hint_key(uri);
        if !self.account_keys.contains(&key) {
            self.map.insert(key, Destination::from_uri(uri));
        }
    }

    /// The destination behind a connect request; an unknown one is taken as an explicit port.
    pub(crate) fn destination(&self, host: &str, port: u16) -> Destination {
        self.map
            .get(&(host.to_string(), port))
            .cloned()
            .unwrap_or_else(|| Destination::host_port(host, port))
    }

    /// The default transport to start a transport pick with, when DNS picks the transport
    /// for `dest` (RFC 3263 §4.1); `None`: the core's transport stands.
    pub(crate) fn dns_pick(&self, dest: &Destination) -> Option<Transport> {
        let default = self.default.unwrap_or(Transport::Tcp);
        (self.by_dns && dest.dns_picks_transport()).then_some(default)
    }

    /// The policy to find `dest`'s first address under (for the media address of a call not
    /// connected yet): the one its connect will use.
    pub(crate) fn policy(&self, dest: &Destination) -> Policy {
        let only = |t| Policy {
            supported: vec![t],
            default: t,
        };
        match (self.dns_pick(dest), dest.transport) {
            (Some(d), _) => Policy::udp_or_tcp(d),
            _ if dest.secure => only(Transport::Tls),
            (None, Some(t)) => only(t),
            (None, None) => only(self.default.unwrap_or(Transport::Tcp)),
        }
    }

    /// Whether a connect request is for the account's control flow.
    pub(crate) fn is_control(&self, host: &str, port: u16) -> bool {
        self.control
            .as_ref()
            .is_some_and(|(h, p)| h == host && *p == port)
    }
}

/// The (host, port) the core derives from a URI: host text without brackets, port or 5060.
fn hint_key(uri: &Uri) -> (String, u16) {
    (
        Destination::from_uri(uri).host_text(),
        uri.port.unwrap_or(5060),
    )
}

fn lookup_error(e: &NetError) -> LookupError {
    if e.is_no_records_found() {
        LookupError::NoRecords
    } else if matches!(e, NetError::Timeout) {
        LookupError::TimedOut
    } else {
        LookupError::Other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::message::Host;

    fn dest(host: &str, port: Option<u16>) -> Destination {
        Destination {
            host: Host::parse(host),
            port,
            transport: None,
            secure: false,
        }
    }

    #[test]
    fn hints_recover_the_uri_behind_host_and_port() {
        let config = Config {
            account: Some(crate::signaling::config::Account {
                registrar: Uri::parse("sip:example.test").unwrap(),
                user: "alice".into(),
                domain: "example.test".into(),
                password: None,
                auth_user: None,
                proxy: None,
            }),
            ..Config::default()
        };
        let mut h = ConnectHints::new(&config);
        // No port in the URI: the core asks for 5060, RFC 3263 must still do NAPTR/SRV.
        assert_eq!(h.destination("example.test", 5060).port, None);
        assert!(h.is_control("example.test", 5060));
        h.note(&Uri::parse("sip:bob@pbx.example.test;transport=tcp").unwrap());
        let d = h.destination("pbx.example.test", 5060);
        assert_eq!(
            (d.port, d.transport),
            (None, Some(crate::signaling::rfc3263::Transport::Tcp))
        );
        assert!(!h.is_control("pbx.example.test", 5060));
        // Unknown: an explicit port.
        assert_eq!(h.destination("other.test", 5070).port, Some(5070));
        for i in 0..(MAX_HINTS as u16 + 10) {
            h.note(&Uri::parse(&format!("sip:x@h{i}.test")).unwrap());
        }
        assert!(h.map.len() <= MAX_HINTS);
        assert_eq!(
            h.destination("example.test", 5060).port,
            None,
            "account kept"
        );
    }

    #[test]
    fn avoided_targets_expire() {
        let now = Instant::now();
        let mut a = Avoid::default();
        let addr: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        a.add(addr, now);
        assert_eq!(a.list(now + AVOID_FOR / 2), vec![addr]);
        assert!(a.list(now + AVOID_FOR).is_empty());
    }

    #[tokio::test]
    async fn numeric_hosts_resolve_without_dns() {
        // A server that does not exist: never asked.
        let r = Resolver::new(&["127.0.0.1:9".parse().unwrap()]);
        let t = r
            .resolve(dest("192.0.2.1", Some(5080)), Policy::default())
            .await
            .unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].addr, "192.0.2.1:5080".parse().unwrap());
    }

    #[tokio::test]
    async fn a_silent_server_times_out_within_the_bound() {
        // Bound, but never answer.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let r = Resolver::with_timing(&[addr], Duration::from_millis(200), 1);
        let started = tokio::time::Instant::now();
        let e = r
            .resolve(dest("sip.example.test", Some(5060)), Policy::default())
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "resolve sip.example.test: timed out");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
