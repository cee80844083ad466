//! The RTP/RTCP socket pairs of ended calls, kept for the next call on the same address
//! instead of being closed: a new call then skips two `socket`, two `bind`, two `setsockopt`
//! and a `getsockname`, and the ended call two `close` and two `epoll_ctl` (the pair stays
//! registered with its media worker's reactor). Creating and closing a pair was a tenth of a
//! short call's CPU time.
//!
//! A pair waits [`QUARANTINE`] before it is reused, so that the last packets of the old call
//! (in flight, or sent until the far end saw the BYE) arrive on it while it is idle; whatever
//! is still queued is read and dropped when it is taken (`media_sockets.rs`). An idle pair is
//! closed after [`IDLE_MAX`], or when the pool is full. The pool is plain data with the time
//! passed in; the media workers (`media_rt.rs`) hold one each.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long an ended call's pair stays idle before another call may use it.
pub(crate) const QUARANTINE: Duration = Duration::from_secs(1);
/// An idle pair unused for this long is closed.
pub(crate) const IDLE_MAX: Duration = Duration::from_secs(30);
/// At most this many idle pairs per pool (at 50 calls/s, a pool of each of two workers
/// holds about 25 in quarantine); the oldest is closed to make room.
pub(crate) const CAP: usize = 64;

/// Idle items (socket pairs), oldest first.
#[derive(Debug)]
pub(crate) struct Pool<T> {
    idle: VecDeque<Idle<T>>,
}

#[derive(Debug)]
struct Idle<T> {
    item: T,
    ip: IpAddr,
    since: Instant,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            idle: VecDeque::new(),
        }
    }
}

impl<T> Pool<T> {
    /// Keeps `item` (bound on `ip`), idle from `now`. Gives back the item to close when the
    /// pool was full: the oldest.
    pub(crate) fn give(&mut self, ip: IpAddr, item: T, now: Instant) -> Option<T> {
        let full = if self.idle.len() >= CAP {
            self.idle.pop_front().map(|i| i.item)
        } else {
            None
        };
        self.idle.push_back(Idle {
            item,
            ip,
            since: now,
        });
        full
    }

    /// The oldest item on `ip` that has been idle for [`QUARANTINE`] at `now`.
    pub(crate) fn take(&mut self, ip: IpAddr, now: Instant) -> Option<T> {
        let ready = |i: &Idle<T>| now.saturating_duration_since(i.since) >= QUARANTINE;
        let at = self
            .idle
            .iter()
            .take_while(|i| ready(i))
            .position(|i| i.ip == ip)?;
        self.idle.remove(at).map(|i| i.item)
    }

    /// One item idle for [`IDLE_MAX`] at `now`, to close (call until `None`).
    pub(crate) fn expired(&mut self, now: Instant) -> Option<T> {
        let old = self.idle.front()?;
        if now.saturating_duration_since(old.since) < IDLE_MAX {
            return None;
        }
        self.idle.pop_front().map(|i| i.item)
    }

    /// Every idle item, to close (when the process is out of file descriptors).
    pub(crate) fn clear(&mut self) -> impl Iterator<Item = T> + '_ {
        self.idle.drain(..).map(|i| i.item)
    }

    /// How many items are idle.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.idle.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1));

    #[test]
    fn an_item_is_reused_only_after_its_quarantine() {
        let t0 = Instant::now();
        let mut pool = Pool::default();
        assert_eq!(pool.give(A, 1, t0), None);
        assert_eq!(pool.take(A, t0), None, "just ended");
        let almost = t0 + QUARANTINE - Duration::from_millis(1);
        assert_eq!(pool.take(A, almost), None);
        assert_eq!(pool.take(A, t0 + QUARANTINE), Some(1));
        assert_eq!(pool.take(A, t0 + QUARANTINE), None, "taken once");
    }

    #[test]
    fn an_item_serves_only_its_own_address() {
        let t0 = Instant::now();
        let mut pool = Pool::default();
        pool.give(A, 1, t0);
        pool.give(B, 2, t0);
        let later = t0 + QUARANTINE;
        assert_eq!(pool.take(B, later), Some(2));
        assert_eq!(pool.take(B, later), None, "A's item is not B's");
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.take(A, later), Some(1));
    }

    #[test]
    fn the_oldest_ready_item_is_taken_first_and_young_ones_wait() {
        let t0 = Instant::now();
        let mut pool = Pool::default();
        pool.give(A, 1, t0);
        pool.give(A, 2, t0 + Duration::from_millis(10));
        pool.give(A, 3, t0 + QUARANTINE);
        let at = t0 + QUARANTINE + Duration::from_millis(10);
        assert_eq!(pool.take(A, at), Some(1));
        assert_eq!(pool.take(A, at), Some(2));
        assert_eq!(pool.take(A, at), None, "3 is still in quarantine");
    }

    #[test]
    fn a_full_pool_closes_its_oldest_item() {
        let t0 = Instant::now();
        let mut pool = Pool::default();
        for i in 0..CAP {
            assert_eq!(pool.give(A, i, t0), None);
        }
        assert_eq!(pool.give(A, CAP, t0), Some(0));
        assert_eq!(pool.len(), CAP);
    }

    #[test]
    fn idle_items_expire_oldest_first() {
        let t0 = Instant::now();
        let mut pool = Pool::default();
        pool.give(A, 1, t0);
        pool.give(B, 2, t0 + Duration::from_secs(5));
        assert_eq!(pool.expired(t0 + IDLE_MAX - Duration::from_millis(1)), None);
        assert_eq!(pool.expired(t0 + IDLE_MAX), Some(1));
        assert_eq!(pool.expired(t0 + IDLE_MAX), None, "2 is younger");
        assert_eq!(
            pool.expired(t0 + IDLE_MAX + Duration::from_secs(5)),
            Some(2)
        );
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn a_clock_read_from_the_past_keeps_items_idle() {
        let t0 = Instant::now() + Duration::from_secs(60);
        let mut pool = Pool::default();
        pool.give(A, 1, t0);
        let earlier = t0 - Duration::from_secs(10);
        assert_eq!(pool.take(A, earlier), None);
        assert_eq!(pool.expired(earlier), None);
    }

    #[test]
    fn clearing_gives_back_every_item() {
        let t0 = Instant::now();
        let mut pool = Pool::default();
        pool.give(A, 1, t0);
        pool.give(B, 2, t0);
        assert_eq!(pool.clear().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(pool.len(), 0);
    }
}
