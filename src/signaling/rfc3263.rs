//! RFC 3263 §4 "Locating a SIP server", sans-IO: which DNS questions to ask for a SIP URI, and
//! the ordered list of (transport, address, port) targets to try, from the answers.
//!
//! No sockets, no clock, no DNS client: the driver asks the queries that
//! [`Rfc3263::poll_query`] hands out, feeds each answer back with [`Rfc3263::handle_answer`],
//! and takes the result from [`Rfc3263::finish`]. The steps:
//!
//! 1. a numeric IP needs no lookup (port: the URI's, else the transport's default);
//! 2. an explicit port: A and AAAA of the host only;
//! 3. an explicit `transport=` parameter: the SRV query of that transport (§4.1 skips NAPTR);
//! 4. otherwise NAPTR: the `SIP+D2U`, `SIP+D2T` and `SIPS+D2T` records we support, by order
//!    then preference, each naming an SRV set; with no usable NAPTR, the SRV query of every
//!    supported transport (the default transport first);
//! 5. SRV sets are ordered by priority, then randomly by weight (RFC 2782, with an injected
//!    RNG), and each SRV target's A and AAAA records give the addresses;
//! 6. no SRV records at all: A and AAAA of the host itself, on the default port.
//!
//! Within one host, IPv4 addresses come before IPv6 ones. The number of SRV targets looked up
//! is capped ([`MAX_SRV_TARGETS`]) so a hostile zone cannot make us ask forever.

use super::message::{Host, Scheme, Uri};
use rand::Rng;
use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Most SRV targets (host names) whose addresses we look up for one resolution.
pub const MAX_SRV_TARGETS: usize = 16;

/// Timed-out questions, with no answer at all (not even "no records"), after which the DNS
/// server counts as unreachable and the resolution stops. One is not enough: some middleboxes
/// drop NAPTR queries while the server answers SRV and A.
pub const TIMEOUTS_BEFORE_GIVING_UP: usize = 2;

/// A SIP transport (RFC 3261 §18), as named by NAPTR services and SRV labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS over TCP (for `sips:` URIs).
    Tls,
}

impl Transport {
    /// Parses a `transport=` URI parameter value (case-insensitive).
    pub fn from_param(value: &str) -> Option<Transport> {
        match value.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            _ => None,
        }
    }

    /// The NAPTR service field for this transport (RFC 3263 §4.1).
    pub fn naptr_service(self) -> &'static str {
        match self {
            Transport::Udp => "SIP+D2U",
            Transport::Tcp => "SIP+D2T",
            Transport::Tls => "SIPS+D2T",
        }
    }

    /// The SRV label prefix for this transport, e.g. `_sip._tcp`.
    pub fn srv_prefix(self) -> &'static str {
        match self {
            Transport::Udp => "_sip._udp",
            Transport::Tcp => "_sip._tcp",
            Transport::Tls => "_sips._tcp",
        }
    }

    /// The default port: 5060, or 5061 for TLS (RFC 3261 §19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }

    fn from_naptr_service(service: &str) -> Option<Transport> {
        [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .find(|t| t.naptr_service().eq_ignore_ascii_case(service))
    }
}

impl From<super::transport::Transport> for Transport {
    fn from(t: super::transport::Transport) -> Transport {
        match t {
            super::transport::Transport::Udp => Transport::Udp,
            super::transport::Transport::Tcp => Transport::Tcp,
            super::transport::Transport::Tls => Transport::Tls,
        }
    }
}

impl From<Transport> for super::transport::Transport {
    fn from(t: Transport) -> super::transport::Transport {
        match t {
            Transport::Udp => super::transport::Transport::Udp,
            Transport::Tcp => super::transport::Transport::Tcp,
            Transport::Tls => super::transport::Transport::Tls,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// What the URI says about where to go: the input of the resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The host: a name or an address.
    pub host: Host,
    /// The port, when the URI gives one.
    pub port: Option<u16>,
    /// The `transport=` parameter, when the URI gives one we know.
    pub transport: Option<Transport>,
    /// A `sips:` URI: only TLS will do.
    pub secure: bool,
}

impl Destination {
    /// The destination of a SIP URI (its host, port, transport and scheme).
    pub fn from_uri(uri: &Uri) -> Destination {
        Destination {
            host: uri.host.clone(),
            port: uri.port,
            transport: uri.transport().as_deref().and_then(Transport::from_param),
            secure: uri.scheme == Scheme::Sips,
        }
    }

    /// A host and an explicit port, no transport: only A/AAAA lookups.
    pub fn host_port(host: &str, port: u16) -> Destination {
        Destination {
            host: Host::parse(host),
            port: Some(port),
            transport: None,
            secure: false,
        }
    }

    /// Whether DNS picks the transport (RFC 3263 §4.1): a domain name (not `localhost`) with
    /// no port, no `transport=` and a `sip:` scheme. A numeric host or an explicit port keeps
    /// the configured default transport (TCP in wakeline), as §4.1 allows.
    pub fn dns_picks_transport(&self) -> bool {
        matches!(&self.host, Host::Domain(d) if !d.is_empty() && !is_localhost(d))
            && self.port.is_none()
            && self.transport.is_none()
            && !self.secure
    }

    /// The host as a DNS name or address text (no brackets), for messages and queries.
    pub fn host_text(&self) -> String {
        match &self.host {
            Host::Domain(d) => d.clone(),
            Host::V4(a) => a.to_string(),
            Host::V6(a) => a.to_string(),
        }
    }
}

/// Which transports we can use and which one a URI that names none gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Transports we can connect with, in our order of preference.
    pub supported: Vec<Transport>,
    /// The transport for URIs that name none when DNS does not choose (TCP in wakeline).
    pub default: Transport,
}

impl Policy {
    /// UDP and TCP, `default` first: the policy under which NAPTR/SRV choose the transport of
    /// a URI that names none ([`Destination::dns_picks_transport`]). TLS stays with `sips:`
    /// and `transport=tls` URIs.
    pub fn udp_or_tcp(default: Transport) -> Policy {
        let other = match default {
            Transport::Udp => Transport::Tcp,
            _ => Transport::Udp,
        };
        let default = match default {
            Transport::Tls => Transport::Tcp,
            t => t,
        };
        Policy {
            supported: vec![default, other],
            default,
        }
    }
}

impl Default for Policy {
    /// TCP only, TCP by default: what the driver can connect today.
    fn default() -> Self {
        Policy {
            supported: vec![Transport::Tcp],
            default: Transport::Tcp,
        }
    }
}

/// One place to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// How to connect.
    pub transport: Transport,
    /// Where.
    pub addr: SocketAddr,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.addr, self.transport)
    }
}

/// A DNS question the driver should ask.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    /// NAPTR records of this name.
    Naptr(String),
    /// SRV records of this name (e.g. `_sip._tcp.example.com`).
    Srv(String),
    /// A records of this name.
    A(String),
    /// AAAA records of this name.
    Aaaa(String),
}

impl Query {
    /// The name asked about.
    pub fn name(&self) -> &str {
        match self {
            Query::Naptr(n) | Query::Srv(n) | Query::A(n) | Query::Aaaa(n) => n,
        }
    }
}

/// A NAPTR record (RFC 3403), the fields RFC 3263 uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    /// Lower first.
    pub order: u16,
    /// Lower first among equal `order`.
    pub preference: u16,
    /// `S` for "the replacement is an SRV name" (the only flag SIP uses).
    pub flags: String,
    /// `SIP+D2T`, ...
    pub services: String,
    /// The SRV name to query next.
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Lower first.
    pub priority: u16,
    /// Relative share among equal priorities.
    pub weight: u16,
    /// Port on the target.
    pub port: u16,
    /// The target host name (`.` means "no service here").
    pub target: String,
}

/// Why one DNS question got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The name has no records of that type (NXDOMAIN or an empty answer).
    NoRecords,
    /// No server answered in time.
    TimedOut,
    /// Anything else (server failure, refused, no DNS configuration, ...).
    Other(String),
}

/// The answer to one [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// NAPTR records.
    Naptr(Vec<Naptr>),
    /// SRV records.
    Srv(Vec<Srv>),
    /// Addresses (A or AAAA).
    Addresses(Vec<IpAddr>),
    /// The lookup failed.
    Failed(LookupError),
}

/// Why a resolution produced no target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// DNS has no records that lead to an address.
    #[error("resolve {0}: no records")]
    NoRecords(String),
    /// Every question that mattered timed out.
    #[error("resolve {0}: timed out")]
    TimedOut(String),
    /// A DNS failure other than "no records" or a timeout.
    #[error("resolve {0}: {1}")]
    Failed(String, String),
    /// The URI asks for a transport we cannot use (e.g. `sips:` or `transport=tls` without TLS).
    #[error("resolve {0}: no supported transport ({1})")]
    Unsupported(String, String),
}

/// One SRV set we are waiting for or have: which transport it stands for.
#[derive(Debug, Clone)]
struct SrvSet {
    transport: Transport,
    name: String,
}

/// Addresses of one host, on one port and transport, in the target order.
#[derive(Debug, Clone)]
struct HostSlot {
    transport: Transport,
    name: String,
    port: u16,
    v4: Vec<IpAddr>,
    v6: Vec<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the NAPTR answer.
    Naptr,
    /// Waiting for SRV answers.
    Srv,
    /// Waiting for A/AAAA answers.
    Address,
    /// Nothing more to ask.
    Done,
}

/// One RFC 3263 resolution in progress. Ask every query it hands out, in any order, and feed
/// back every answer; it asks nothing twice.
#[derive(Debug)]
pub struct Rfc3263 {
    dest: Destination,
    policy: Policy,
    stage: Stage,
    queries: VecDeque<Query>,
    /// Queries handed out and not answered yet.
    pending: usize,
    srv_sets: Vec<SrvSet>,
    /// SRV answers, indexed like `srv_sets`.
    srv_answers: Vec<Option<Vec<Srv>>>,
    slots: Vec<HostSlot>,
    failures: Vec<(Query, LookupError)>,
    /// Questions answered, even negatively.
    answered: usize,
    /// A resolution that ends before any DNS question (numeric IP, unsupported transport).
    early: Option<Result<Vec<Target>, ResolveError>>,
}

impl Rfc3263 {
    /// Starts resolving `dest` under `policy`.
    pub fn new(dest: Destination, policy: Policy) -> Rfc3263 {
        let mut r = Rfc3263 {
            dest,
            policy,
            stage: Stage::Done,
            queries: VecDeque::new(),
            pending: 0,
            srv_sets: Vec::new(),
            srv_answers: Vec::new(),
            slots: Vec::new(),
            failures: Vec::new(),
            answered: 0,
            early: None,
        };
        r.start();
        r
    }

    fn start(&mut self) {
        let name = self.dest.host_text();
        // The transport the URI forces, if any (§4.1: sips means TLS).
        let forced = match (self.dest.transport, self.dest.secure) {
            (_, true) => Some(Transport::Tls),
            (t, false) => t,
        };
        if let Some(t) = forced {
            if !self.policy.supported.contains(&t) {
                self.early = Some(Err(ResolveError::Unsupported(
                    name,
                    format!("{t} is not available"),
                )));
                return;
            }
        }
        let transport = forced.unwrap_or(self.policy.default);
        let ips: Vec<IpAddr> = match &self.dest.host {
            Host::V4(a) => vec![IpAddr::V4(*a)],
            Host::V6(a) => vec![IpAddr::V6(*a)],
            // RFC 6761 §6.3: loopback, without asking DNS.
            Host::Domain(d) if is_localhost(d) => vec![
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ],
            Host::Domain(_) => Vec::new(),
        };
        if !ips.is_empty() {
            let port = self.dest.port.unwrap_or(transport.default_port());
            let targets = ips
                .into_iter()
                .map(|ip| Target {
                    transport,
                    addr: SocketAddr::new(ip, port),
                })
                .collect();
            self.early = Some(Ok(targets));
            return;
        }
        if name.is_empty() {
            self.early = Some(Err(ResolveError::NoRecords("(empty host)".into())));
            return;
        }
        if let Some(port) = self.dest.port {
            self.lookup_hosts(vec![(transport, name, port)]);
        } else if forced.is_some() {
            self.ask_srv(vec![SrvSet {
                transport,
                name: format!("{}.{name}", transport.srv_prefix()),
            }]);
        } else {
            self.stage = Stage::Naptr;
            self.queries.push_back(Query::Naptr(name));
        }
    }

    /// The next DNS question to ask, if any.
    #[must_use]
    pub fn poll_query(&mut self) -> Option<Query> {
        let q = self.queries.pop_front()?;
        self.pending += 1;
        Some(q)
    }

    /// Whether every question has been answered and there is nothing more to ask.
    pub fn is_done(&self) -> bool {
        self.queries.is_empty() && self.pending == 0
    }

    /// Feeds the answer to a query handed out by [`Rfc3263::poll_query`]. `rng` orders SRV
    /// records of equal priority (RFC 2782).
    pub fn handle_answer(&mut self, query: &Query, answer: Answer, rng: &mut impl Rng) {
        self.pending = self.pending.saturating_sub(1);
        match &answer {
            Answer::Failed(LookupError::TimedOut) => {}
            _ => self.answered += 1,
        }
        if let Answer::Failed(e) = &answer {
            self.failures.push((query.clone(), e.clone()));
        }
        let timeouts = self
            .failures
            .iter()
            .filter(|(_, e)| *e == LookupError::TimedOut)
            .count();
        if self.answered == 0 && timeouts >= TIMEOUTS_BEFORE_GIVING_UP {
            // The server does not answer: asking more would only add timeouts.
            self.stage = Stage::Done;
            self.queries.clear();
            return;
        }
        match (self.stage, query) {
            (Stage::Naptr, Query::Naptr(_)) => self.on_naptr(answer),
            (Stage::Srv, Query::Srv(name)) => {
                if let Some(i) = self.srv_sets.iter().position(|s| &s.name == name) {
                    let records = match answer {
                        Answer::Srv(r) => r,
                        _ => Vec::new(),
                    };
                    self.srv_answers[i] = Some(records);
                }
                if self.srv_answers.iter().all(Option::is_some) {
                    self.on_srv_done(rng);
                }
            }
            (Stage::Address, Query::A(name) | Query::Aaaa(name)) => {
                let ips = match answer {
                    Answer::Addresses(ips) => ips,
                    _ => Vec::new(),
                };
                for slot in self.slots.iter_mut().filter(|s| &s.name == name) {
                    for ip in &ips {
                        match (ip, query) {
                            (IpAddr::V4(_), Query::A(_)) => slot.v4.push(*ip),
                            (IpAddr::V6(_), Query::Aaaa(_)) => slot.v6.push(*ip),
                            _ => {}
                        }
                    }
                }
                if self.is_done() {
                    self.stage = Stage::Done;
                }
            }
            _ => tracing::debug!(?query, "DNS answer out of stage, ignored"),
        }
    }

    fn on_naptr(&mut self, answer: Answer) {
        let records = match answer {
            Answer::Naptr(r) => r,
            _ => Vec::new(),
        };
        let mut usable: Vec<&Naptr> = records
            .iter()
            .filter(|r| r.flags.eq_ignore_ascii_case("s"))
            .filter(|r| {
                Transport::from_naptr_service(&r.services).is_some_and(|t| {
                    self.policy.supported.contains(&t) && (!self.dest.secure || t == Transport::Tls)
                })
            })
            .collect();
        usable.sort_by_key(|r| (r.order, r.preference));
        let mut sets: Vec<SrvSet> = Vec::new();
        for r in usable {
            let Some(transport) = Transport::from_naptr_service(&r.services) else {
                continue;
            };
            let name = r.replacement.trim_end_matches('.').to_string();
            if !sets.iter().any(|s| s.name == name) {
                sets.push(SrvSet { transport, name });
            }
        }
        if sets.is_empty() {
            // §4.1: no (usable) NAPTR: an SRV query per supported transport.
            sets = self.fallback_srv_sets();
        }
        self.ask_srv(sets);
    }

    /// The SRV names to ask when NAPTR gives nothing: the default transport first.
    fn fallback_srv_sets(&self) -> Vec<SrvSet> {
        let name = self.dest.host_text();
        let mut order = vec![self.policy.default];
        order.extend(
            self.policy
                .supported
                .iter()
                .copied()
                .filter(|t| *t != self.policy.default),
        );
        order
            .into_iter()
            .filter(|t| self.policy.supported.contains(t))
            .filter(|t| !self.dest.secure || *t == Transport::Tls)
            .map(|transport| SrvSet {
                transport,
                name: format!("{}.{name}", transport.srv_prefix()),
            })
            .collect()
    }

    fn ask_srv(&mut self, sets: Vec<SrvSet>) {
        if sets.is_empty() {
            self.no_srv();
            return;
        }
        self.stage = Stage::Srv;
        for s in &sets {
            self.queries.push_back(Query::Srv(s.name.clone()));
        }
        self.srv_answers = vec![None; sets.len()];
        self.srv_sets = sets;
    }

    fn on_srv_done(&mut self, rng: &mut impl Rng) {
        let mut hosts = Vec::new();
        for (set, answer) in self.srv_sets.iter().zip(&self.srv_answers) {
            let records = answer.as_deref().unwrap_or_default();
            for r in order_srv(records, rng) {
                let target = r.target.trim_end_matches('.');
                if target.is_empty() {
                    continue; // "." : decidedly not available here (RFC 2782)
                }
                hosts.push((set.transport, target.to_string(), r.port));
            }
        }
        if hosts.is_empty() {
            self.no_srv();
        } else {
            hosts.truncate(MAX_SRV_TARGETS);
            self.lookup_hosts(hosts);
        }
    }

    /// §4.2: no SRV records: the host's own addresses on the default port.
    fn no_srv(&mut self) {
        let transport = if self.dest.secure {
            Transport::Tls
        } else {
            self.dest.transport.unwrap_or(self.policy.default)
        };
        if !self.policy.supported.contains(&transport) {
            self.stage = Stage::Done;
            return;
        }
        let name = self.dest.host_text();
        self.lookup_hosts(vec![(transport, name, transport.default_port())]);
    }

    fn lookup_hosts(&mut self, hosts: Vec<(Transport, String, u16)>) {
        self.stage = Stage::Address;
        for (transport, name, port) in hosts {
            let known = self.slots.iter().any(|s| s.name == name);
            if !known {
                self.queries.push_back(Query::A(name.clone()));
                self.queries.push_back(Query::Aaaa(name.clone()));
            }
            self.slots.push(HostSlot {
                transport,
                name,
                port,
                v4: Vec::new(),
                v6: Vec::new(),
            });
        }
    }

    /// The targets in the order to try them, or why there are none. Call it once
    /// [`Rfc3263::is_done`]; questions still unanswered count as unanswered.
    pub fn finish(self) -> Result<Vec<Target>, ResolveError> {
        if let Some(early) = self.early {
            return early;
        }
        let mut targets: Vec<Target> = Vec::new();
        for slot in &self.slots {
            // A host named by several SRV records is looked up once; every slot of that name
            // got its addresses.
            for ip in slot.v4.iter().chain(&slot.v6) {
                let t = Target {
                    transport: slot.transport,
                    addr: SocketAddr::new(*ip, slot.port),
                };
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
        }
        if !targets.is_empty() {
            return Ok(targets);
        }
        let name = self.dest.host_text();
        let timed_out = self
            .failures
            .iter()
            .any(|(_, e)| *e == LookupError::TimedOut);
        let other = self.failures.iter().find_map(|(q, e)| match e {
            LookupError::Other(why) => Some(format!("{} {}: {why}", kind(q), q.name())),
            _ => None,
        });
        Err(match (timed_out, other) {
            (true, _) => ResolveError::TimedOut(name),
            (false, Some(why)) => ResolveError::Failed(name, why),
            (false, None) => ResolveError::NoRecords(name),
        })
    }
}

fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

fn kind(q: &Query) -> &'static str {
    match q {
        Query::Naptr(_) => "NAPTR",
        Query::Srv(_) => "SRV",
        Query::A(_) => "A",
        Query::Aaaa(_) => "AAAA",
    }
}

/// Orders SRV records the RFC 2782 way: priority ascending; within a priority, a weighted
/// random order (records of weight 0 first in the running sum, so they are rarely picked
/// first while others exist).
pub fn order_srv(records: &[Srv], rng: &mut impl Rng) -> Vec<Srv> {
    let mut sorted: Vec<Srv> = records.to_vec();
    sorted.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(sorted.len());
    let mut i = 0;
    while i < sorted.len() {
        let prio = sorted[i].priority;
        let end = sorted[i..]
            .iter()
            .position(|r| r.priority != prio)
            .map_or(sorted.len(), |n| i + n);
        let mut group: Vec<Srv> = sorted[i..end].to_vec();
        // Zero weights first, as RFC 2782 asks.
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = rng.random_range(0..=total);
            let mut running = 0u32;
            let idx = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(idx));
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests;
