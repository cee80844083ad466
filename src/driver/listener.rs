//! A listener that defends itself (issue 13): what the driver does about the connections peers
//! open to us. Two small machines, fed the time by the driver:
//!
//! - [`InboundGuard`] watches every accepted connection: a cap on their number (at the cap the
//!   oldest connection that carries nothing — no call, transaction or registration — makes
//!   room, else the new one is refused), an idle timeout for connections that carry nothing, a
//!   slow-head timeout (a message must be complete within `head_timeout` of its first byte: a
//!   peer sending one byte a second never stalls the framer but is cut here), and a bound on
//!   the partial-message bytes buffered over all connections (the largest buffer goes first).
//! - [`AcceptBackoff`] paces `accept` after errors (EMFILE, ENFILE, ENOBUFS...): 100 ms doubling
//!   to 1 s, one log line per interval with the count, so a full file table never spins a core.

use crate::signaling::core::FlowId;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Limits on inbound connections. [`Default`] gives the values below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Most inbound connections held at once (default 1024).
    pub max_connections: usize,
    /// An inbound connection that carries no call, transaction or registration is closed after
    /// this long without a byte (default 60 s).
    pub idle_timeout: Duration,
    /// A message must be complete this long after its first byte arrived (default 10 s).
    pub head_timeout: Duration,
    /// Partial-message bytes buffered over all inbound connections (default 8 MiB).
    pub max_partial_bytes: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            head_timeout: Duration::from_secs(10),
            max_partial_bytes: 8 << 20,
        }
    }
}

/// What to do with a connection the listener is about to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Room for it.
    Admit,
    /// At the cap: close this idle connection first.
    Evict(FlowId),
    /// At the cap and every connection is busy: close the new one.
    Refuse,
}

/// Why the guard closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Nothing received for `idle_timeout` and nothing carried.
    Idle,
    /// A message not complete `head_timeout` after its first byte.
    SlowHead,
    /// The partial-message bytes of all connections went over the bound.
    TooMuchBuffered,
    /// Made room for a new connection at the cap.
    Evicted,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseReason::Idle => "idle",
            CloseReason::SlowHead => "message too slow to arrive",
            CloseReason::TooMuchBuffered => "too many partial-message bytes buffered",
            CloseReason::Evicted => "evicted at the connection cap",
        })
    }
}

#[derive(Debug)]
struct Conn {
    last_active: Instant,
    /// When the first byte of the partial message now buffered arrived.
    partial_since: Option<Instant>,
    buffered: usize,
}

/// The accepted connections and their limits (ids grow with accept order: the first is the
/// oldest).
#[derive(Debug)]
pub(crate) struct InboundGuard {
    limits: ListenerLimits,
    conns: BTreeMap<FlowId, Conn>,
    buffered: usize,
}

impl InboundGuard {
    pub(crate) fn new(limits: ListenerLimits) -> Self {
        InboundGuard {
            limits,
            conns: BTreeMap::new(),
            buffered: 0,
        }
    }

    /// Inbound connections held.
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether a new connection fits; `busy` says which flows carry something.
    pub(crate) fn admit(&self, busy: impl Fn(FlowId) -> bool) -> Admission {
        if self.conns.len() < self.limits.max_connections.max(1) {
            return Admission::Admit;
        }
        // The oldest by last activity among those that carry nothing.
        self.conns
            .iter()
            .filter(|(f, _)| !busy(**f))
            .min_by_key(|(f, c)| (c.last_active, **f))
            .map_or(Admission::Refuse, |(f, _)| Admission::Evict(*f))
    }

    /// A connection was accepted.
    pub(crate) fn accepted(&mut self, now: Instant, flow: FlowId) {
        self.conns.insert(
            flow,
            Conn {
                last_active: now,
                partial_since: None,
                buffered: 0,
            },
        );
    }

    /// Bytes arrived on `flow`; `buffered` is what its framer holds of a partial message
    /// afterwards. Returns a connection to close when the bound on buffered bytes is exceeded
    /// (the one holding the most).
    pub(crate) fn data(&mut self, now: Instant, flow: FlowId, buffered: usize) -> Option<FlowId> {
        let c = self.conns.get_mut(&flow)?;
        c.last_active = now;
        c.partial_since = match buffered {
            0 => None,
            _ => c.partial_since.or(Some(now)),
        };
        self.buffered = self.buffered - c.buffered + buffered;
        c.buffered = buffered;
        if self.buffered <= self.limits.max_partial_bytes {
            return None;
        }
        self.conns
            .iter()
            .max_by_key(|(_, c)| c.buffered)
            .map(|(f, _)| *f)
    }

    /// The connection is gone (whoever closed it).
    pub(crate) fn closed(&mut self, flow: FlowId) {
        if let Some(c) = self.conns.remove(&flow) {
            self.buffered -= c.buffered;
        }
    }

    /// When [`InboundGuard::expired`] must be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .flat_map(|c| {
                [
                    Some(c.last_active + self.limits.idle_timeout),
                    c.partial_since.map(|t| t + self.limits.head_timeout),
                ]
            })
            .flatten()
            .min()
    }

    /// The connections to close now. A busy connection past its idle time is looked at again
    /// one idle timeout later.
    pub(crate) fn expired(
        &mut self,
        now: Instant,
        busy: impl Fn(FlowId) -> bool,
    ) -> Vec<(FlowId, CloseReason)> {
        let mut out = Vec::new();
        for (flow, c) in &mut self.conns {
            if c.partial_since
                .is_some_and(|t| now >= t + self.limits.head_timeout)
            {
                out.push((*flow, CloseReason::SlowHead));
            } else if now >= c.last_active + self.limits.idle_timeout {
                if busy(*flow) {
                    c.last_active = now;
                } else {
                    out.push((*flow, CloseReason::Idle));
                }
            }
        }
        out
    }
}

/// First pause after an accept error.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(100);
/// Longest pause after accept errors.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// At most one log line about accept errors per this interval.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Paces `accept` after errors and rate-limits their log lines.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    pause: Option<Duration>,
    until: Option<Instant>,
    last_log: Option<Instant>,
    /// Errors since the last log line.
    unlogged: u64,
}

impl AcceptBackoff {
    /// `accept` failed: pause (100 ms, doubling to 1 s). Returns the line to log, at most one
    /// per interval, with the number of errors it stands for.
    pub(crate) fn failed(&mut self, now: Instant, err: &std::io::Error) -> Option<String> {
        let pause = self
            .pause
            .map_or(ACCEPT_PAUSE_MIN, |p| (p * 2).min(ACCEPT_PAUSE_MAX));
        self.pause = Some(pause);
        self.until = Some(now + pause);
        self.unlogged += 1;
        if self.last_log.is_some_and(|t| now < t + ACCEPT_LOG_INTERVAL) {
            return None;
        }
        self.last_log = Some(now);
        let n = std::mem::take(&mut self.unlogged);
        Some(format!(
            "accept: {err} ({n} error{} since the last report; accepting again in {pause:?})",
            if n == 1 { "" } else { "s" }
        ))
    }

    /// `accept` worked: no pause for the next one.
    pub(crate) fn succeeded(&mut self) {
        self.pause = None;
        self.until = None;
    }

    /// Do not call `accept` before this.
    pub(crate) fn paused_until(&self) -> Option<Instant> {
        self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn limits() -> ListenerLimits {
        ListenerLimits {
            max_connections: 2,
            idle_timeout: 60 * S,
            head_timeout: 10 * S,
            max_partial_bytes: 1000,
        }
    }

    #[test]
    fn cap_evicts_the_oldest_idle_connection_or_refuses() {
        let t0 = Instant::now();
        let mut g = InboundGuard::new(limits());
        let none_busy = |_| false;
        assert_eq!(g.admit(none_busy), Admission::Admit);
        g.accepted(t0, FlowId(1));
        g.accepted(t0 + S, FlowId(2));
        // Flow 1 talked more recently: flow 2 is the oldest idle one.
        assert_eq!(g.data(t0 + 2 * S, FlowId(1), 0), None);
        assert_eq!(g.admit(none_busy), Admission::Evict(FlowId(2)));
        assert_eq!(g.admit(|f| f == FlowId(2)), Admission::Evict(FlowId(1)));
        assert_eq!(g.admit(|_| true), Admission::Refuse);
        g.closed(FlowId(2));
        assert_eq!(g.admit(|_| true), Admission::Admit);
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn idle_connections_close_unless_busy() {
        let t0 = Instant::now();
        let mut g = InboundGuard::new(limits());
        g.accepted(t0, FlowId(1));
        g.accepted(t0, FlowId(2));
        assert_eq!(g.poll_timeout(), Some(t0 + 60 * S));
        assert!(g.expired(t0 + 60 * S - MS, |_| false).is_empty());
        let out = g.expired(t0 + 60 * S, |f| f == FlowId(2));
        assert_eq!(out, vec![(FlowId(1), CloseReason::Idle)]);
        g.closed(FlowId(1));
        // The busy one is looked at again one idle timeout later, not at once.
        assert_eq!(g.poll_timeout(), Some(t0 + 120 * S));
    }

    #[test]
    fn a_slow_head_is_cut_even_when_bytes_keep_coming() {
        let t0 = Instant::now();
        let mut g = InboundGuard::new(limits());
        g.accepted(t0, FlowId(1));
        // One byte a second: the partial message grows, its first byte stays at t0 + 1 s.
        for i in 1..=10u32 {
            assert_eq!(g.data(t0 + i * S, FlowId(1), i as usize), None);
        }
        assert_eq!(g.poll_timeout(), Some(t0 + 11 * S));
        let out = g.expired(t0 + 11 * S, |_| true);
        assert_eq!(out, vec![(FlowId(1), CloseReason::SlowHead)]);
        // A completed message clears the clock.
        g.data(t0 + 11 * S, FlowId(1), 0);
        assert_eq!(g.poll_timeout(), Some(t0 + 71 * S));
    }

    #[test]
    fn buffered_bytes_are_bounded_over_all_connections() {
        let t0 = Instant::now();
        let mut g = InboundGuard::new(limits());
        g.accepted(t0, FlowId(1));
        g.accepted(t0, FlowId(2));
        assert_eq!(g.data(t0, FlowId(1), 600), None);
        assert_eq!(g.data(t0, FlowId(2), 300), None);
        assert_eq!(g.data(t0, FlowId(2), 500), Some(FlowId(1)));
        g.closed(FlowId(1));
        assert_eq!(g.data(t0, FlowId(2), 900), None);
    }

    #[test]
    fn accept_errors_pause_and_log_once_per_interval() {
        let t0 = Instant::now();
        let mut b = AcceptBackoff::default();
        let err = std::io::Error::from_raw_os_error(24); // EMFILE
        let mut now = t0;
        let mut lines = Vec::new();
        let mut pauses = Vec::new();
        // 20 s of errors, accepting only when the pause allows.
        while now < t0 + 20 * S {
            if let Some(l) = b.failed(now, &err) {
                lines.push(l);
            }
            let until = b.paused_until().expect("paused");
            pauses.push(until - now);
            now = until;
        }
        assert_eq!(pauses[0], 100 * MS);
        assert_eq!(pauses[1], 200 * MS);
        assert!(pauses.iter().all(|p| *p <= S));
        assert!(pauses.len() < 30, "{} accepts in 20 s", pauses.len());
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[1].contains("errors since the last report"),
            "{lines:?}"
        );
        b.succeeded();
        assert_eq!(b.paused_until(), None);
        b.failed(now, &err);
        assert_eq!(b.paused_until(), Some(now + 100 * MS));
    }
}
