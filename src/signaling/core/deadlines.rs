//! The core's deadline queues: each table whose entries have timers (transactions, flows,
//! calls) is a [`Timed`] map that keeps a binary heap of `(deadline, key)` next to it, so
//! [`SignalingCore::poll_timeout`](super::SignalingCore::poll_timeout) costs O(log n) and
//! [`SignalingCore::handle_timeout`](super::SignalingCore::handle_timeout) O(expired · log n)
//! instead of a scan of every transaction, flow and call.
//!
//! How it stays right without every state machine reporting its timers: every mutable access
//! to an entry (`get_mut`, `insert`, `remove`, `retain`, `all_mut`) marks its key *dirty*;
//! before the queue is read, each dirty entry's deadline is recomputed from the entry itself
//! (its own `poll_timeout`: Timer A…K of a transaction, the framer's stall timer, a call's
//! deadlines). A re-armed or cancelled timer leaves its old heap entry behind; the entry is
//! dropped when it reaches the top (lazy deletion: it no longer matches the key's armed
//! sequence number), and the heap is rebuilt when stale entries outnumber live ones. The
//! earliest live deadline is cached between reads: a read with nothing touched since the last
//! one costs a lock and a compare, and any arm, re-arm, disarm or pop drops the cache.
//! Reading is done through `&self` (the queue sits in an uncontended `Mutex`: the core is
//! held across the driver's awaits, so it must stay `Sync`), and `poll_timeout` keeps its
//! signature. Sans-IO as the rest of the core: no clock is read here.

use super::fasthash::{FastMap, FastSet};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::ops::Deref;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// The map operations a [`Timed`] table needs (implemented for `HashMap` and `BTreeMap`).
pub(crate) trait Table {
    type K: Clone + Eq + Hash;
    type V;
    fn entry_ref(&self, k: &Self::K) -> Option<&Self::V>;
    fn entry_mut(&mut self, k: &Self::K) -> Option<&mut Self::V>;
    fn put(&mut self, k: Self::K, v: Self::V) -> Option<Self::V>;
    fn take(&mut self, k: &Self::K) -> Option<Self::V>;
    fn keep(&mut self, f: impl FnMut(&Self::K, &mut Self::V) -> bool);
    fn visit(&self, f: impl FnMut(&Self::K, &Self::V));
}

/// The two map types the core keeps its timed tables in answer [`Table`] with the same methods.
macro_rules! map_table {
    ($map:ident $(<$s:ident: $sb:path>)?, $($bound:path),+) => {
        impl<K: Clone $(+ $bound)+, V $(, $s: $sb)?> Table for $map<K, V $(, $s)?> {
            type K = K;
            type V = V;
            fn entry_ref(&self, k: &K) -> Option<&V> {
                self.get(k)
            }
            fn entry_mut(&mut self, k: &K) -> Option<&mut V> {
                self.get_mut(k)
            }
            fn put(&mut self, k: K, v: V) -> Option<V> {
                self.insert(k, v)
            }
            fn take(&mut self, k: &K) -> Option<V> {
                self.remove(k)
            }
            fn keep(&mut self, f: impl FnMut(&K, &mut V) -> bool) {
                self.retain(f)
            }
            fn visit(&self, mut f: impl FnMut(&K, &V)) {
                self.iter().for_each(|(k, v)| f(k, v))
            }
        }
    };
}
map_table!(HashMap<S: BuildHasher>, Eq, Hash);
map_table!(BTreeMap, Eq, Hash, Ord);

/// One armed timer in the heap: earliest `at` first, then the order it was armed in.
struct Entry<K> {
    at: Instant,
    seq: u64,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<K> Eq for Entry<K> {}
impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Entry<K> {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest deadline on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The heap, the armed deadline of each key, and the keys touched since the last read.
struct Queue<K> {
    heap: BinaryHeap<Entry<K>>,
    /// Key → (its deadline, the sequence number of its live heap entry).
    armed: FastMap<K, (Instant, u64)>,
    /// The earliest live deadline as last found by [`Queue::peek`], while no deadline has
    /// been armed, re-armed, disarmed or popped since (`None`: look again). Every write to
    /// `armed` or `heap` other than dropping stale entries clears it.
    earliest: Option<Option<Instant>>,
    next_seq: u64,
    dirty: Vec<K>,
    /// Every entry may have changed (`all_mut`): re-arm the whole table.
    all_dirty: bool,
    /// The keys whose entry the table's tally counts (see [`Timed::with_tally`]).
    counted: FastSet<K>,
}

impl<K: Clone + Eq + Hash> Queue<K> {
    fn new() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            armed: FastMap::default(),
            earliest: None,
            next_seq: 0,
            dirty: Vec::new(),
            all_dirty: false,
            counted: FastSet::default(),
        }
    }

    /// Marks `key` touched; a key touched again right after itself (a state machine driven
    /// through several calls in a row) is listed once.
    fn touch(&mut self, key: &K) {
        if self.dirty.last() != Some(key) {
            self.dirty.push(key.clone());
        }
    }

    /// Notes whether the entry of `key` counts in the tally.
    fn count(&mut self, key: &K, counts: bool) {
        if counts {
            if !self.counted.contains(key) {
                self.counted.insert(key.clone());
            }
        } else {
            self.counted.remove(key);
        }
    }

    /// Sets (or with `None` cancels) the deadline of `key`.
    fn arm(&mut self, key: K, at: Option<Instant>) {
        let Some(at) = at else {
            if self.armed.remove(&key).is_some() {
                self.earliest = None;
            }
            return;
        };
        let seq = self.next_seq;
        match self.armed.get_mut(&key) {
            Some(&mut (t, _)) if t == at => return,
            Some(slot) => *slot = (at, seq),
            None => drop(self.armed.insert(key.clone(), (at, seq))),
        }
        self.next_seq += 1;
        self.earliest = None;
        self.heap.push(Entry { at, seq, key });
    }

    fn live(&self, e: &Entry<K>) -> bool {
        self.armed.get(&e.key).is_some_and(|&(_, s)| s == e.seq)
    }

    /// Drops stale entries from the top; the earliest live deadline (cached until the next
    /// change, see `earliest`).
    fn peek(&mut self) -> Option<Instant> {
        if let Some(at) = self.earliest {
            return at;
        }
        let at = loop {
            let Some(top) = self.heap.peek() else {
                break None;
            };
            if self.live(top) {
                break Some(top.at);
            }
            self.heap.pop();
        };
        self.earliest = Some(at);
        at
    }

    /// Rebuilds the heap from the armed keys when stale entries outnumber live ones.
    fn compact(&mut self) {
        if self.heap.len() <= 2 * self.armed.len() + 32 {
            return;
        }
        let armed = &self.armed;
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.retain(|e| armed.get(&e.key).is_some_and(|&(_, s)| s == e.seq));
        self.heap = BinaryHeap::from(entries);
    }
}

/// A map whose entries have deadlines, with a deadline queue kept beside it.
///
/// Reads go through `Deref` to the map; every write goes through the methods here, which
/// mark the keys they touch so their deadlines are recomputed before the next read of the
/// queue.
pub(crate) struct Timed<M: Table> {
    map: M,
    deadline: fn(&M::V) -> Option<Instant>,
    /// Which entries the tally counts (none by default).
    tally: fn(&M::V) -> bool,
    /// Whether [`Timed::with_tally`] gave a tally (without one, flushing skips the count).
    tallied: bool,
    queue: Mutex<Queue<M::K>>,
}

impl<M: Table> Deref for Timed<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.map
    }
}

impl<M: Table> Timed<M> {
    /// `map` (empty) whose entries' next deadline is `deadline(entry)`.
    pub(crate) fn new(map: M, deadline: fn(&M::V) -> Option<Instant>) -> Self {
        Timed {
            map,
            deadline,
            tally: |_| false,
            tallied: false,
            queue: Mutex::new(Queue::new()),
        }
    }

    /// Also keeps a count of the entries for which `tally` is true, kept up to date the way
    /// the deadlines are ([`Timed::tally`] is O(touched), not O(n)).
    pub(crate) fn with_tally(mut self, tally: fn(&M::V) -> bool) -> Self {
        self.tally = tally;
        self.tallied = true;
        self
    }

    /// How many entries the tally counts, and whether it counts the entry of `k`.
    pub(crate) fn tally(&self, k: &M::K) -> (usize, bool) {
        let mut q = self.q();
        self.flush(&mut q);
        (q.counted.len(), q.counted.contains(k))
    }

    /// The queue (a panic elsewhere cannot leave it half-updated in a way that matters: every
    /// read recomputes from the entries, so a poisoned lock is used as it is).
    fn q(&self) -> MutexGuard<'_, Queue<M::K>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn q_mut(&mut self) -> &mut Queue<M::K> {
        self.queue.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `k`, to change (its deadline is recomputed at the next read).
    pub(crate) fn get_mut(&mut self, k: &M::K) -> Option<&mut M::V> {
        let q = self.queue.get_mut().unwrap_or_else(|e| e.into_inner());
        let v = self.map.entry_mut(k)?;
        q.touch(k);
        Some(v)
    }

    /// Inserts or replaces the entry of `k`.
    pub(crate) fn insert(&mut self, k: M::K, v: M::V) -> Option<M::V> {
        self.q_mut().touch(&k);
        self.map.put(k, v)
    }

    /// Removes the entry of `k` (its timer is cancelled).
    pub(crate) fn remove(&mut self, k: &M::K) -> Option<M::V> {
        let v = self.map.take(k)?;
        self.q_mut().touch(k);
        Some(v)
    }

    /// Keeps the entries for which `f` is true (`f` may change them).
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&M::K, &mut M::V) -> bool) {
        let q = self.queue.get_mut().unwrap_or_else(|e| e.into_inner());
        self.map.keep(|k, v| {
            q.dirty.push(k.clone());
            f(k, v)
        });
    }

    /// The whole map, to change many entries: every deadline is recomputed at the next read
    /// (O(n): for rare paths such as moving calls to a new flow).
    pub(crate) fn all_mut(&mut self) -> &mut M {
        self.q_mut().all_dirty = true;
        &mut self.map
    }

    /// Recomputes the deadlines of the entries touched since the last read.
    fn flush(&self, q: &mut Queue<M::K>) {
        if q.all_dirty {
            q.all_dirty = false;
            q.dirty.clear();
            q.armed.clear();
            q.heap.clear();
            q.earliest = None;
            q.counted.clear();
            let (deadline, tally, tallied) = (self.deadline, self.tally, self.tallied);
            self.map.visit(|k, v| {
                if tallied {
                    q.count(k, tally(v));
                }
                q.arm(k.clone(), deadline(v));
            });
            return;
        }
        let mut dirty = std::mem::take(&mut q.dirty);
        for k in dirty.drain(..) {
            let v = self.map.entry_ref(&k);
            if self.tallied {
                q.count(&k, v.is_some_and(self.tally));
            }
            q.arm(k, v.and_then(self.deadline));
        }
        q.dirty = dirty; // keep the allocation
        q.compact();
    }

    /// The earliest deadline of any entry.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let mut q = self.q();
        if let (Some(at), true, false) = (q.earliest, q.dirty.is_empty(), q.all_dirty) {
            return at; // nothing touched since the last read
        }
        self.flush(&mut q);
        q.peek()
    }

    /// The keys whose deadline is at or before `now`, earliest first. They are disarmed and
    /// marked touched: handling them re-arms whatever timer they still have.
    pub(crate) fn due(&self, now: Instant) -> Vec<M::K> {
        let mut q = self.q();
        self.flush(&mut q);
        let mut out = Vec::new();
        while q.peek().is_some_and(|at| at <= now) {
            if let Some(e) = q.heap.pop() {
                q.armed.remove(&e.key);
                q.earliest = None;
                out.push(e.key);
            }
        }
        q.dirty.extend(out.iter().cloned());
        out
    }

    /// The earliest deadline by a scan of every entry (the reference the queue must match;
    /// tests and the before/after bench).
    #[cfg(any(test, feature = "testkit"))]
    pub(crate) fn scan_deadline(&self) -> Option<Instant> {
        let mut min: Option<Instant> = None;
        self.map.visit(|_, v| {
            if let Some(at) = (self.deadline)(v) {
                min = Some(min.map_or(at, |m| m.min(at)));
            }
        });
        min
    }

    /// The due keys by a scan of every entry (see [`Timed::scan_deadline`]).
    #[cfg(any(test, feature = "testkit"))]
    pub(crate) fn scan_due(&self, now: Instant) -> Vec<M::K> {
        let mut out = Vec::new();
        self.map.visit(|k, v| {
            if (self.deadline)(v).is_some_and(|at| at <= now) {
                out.push(k.clone());
            }
        });
        out
    }

    /// For a user of the scans only (the queue unread): forget what was touched, so the list
    /// cannot grow, and rebuild the queue at its next read.
    #[cfg(any(test, feature = "testkit"))]
    pub(crate) fn forget(&self) {
        let mut q = self.q();
        q.all_dirty = true;
        q.dirty.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The origin of the virtual clock (tests only; every later time is origin + offset).
    fn origin() -> Instant {
        Instant::now()
    }

    fn table() -> Timed<HashMap<u32, Option<Instant>>> {
        Timed::new(HashMap::new(), |v: &Option<Instant>| *v)
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn earliest_deadline_follows_inserts_changes_and_removals() {
        let t0 = origin();
        let mut t = table();
        assert_eq!(t.next_deadline(), None);
        t.insert(1, Some(t0 + 5 * S));
        t.insert(2, Some(t0 + 3 * S));
        t.insert(3, None);
        assert_eq!(t.next_deadline(), Some(t0 + 3 * S));
        *t.get_mut(&2).unwrap() = Some(t0 + 9 * S); // rescheduled later
        assert_eq!(t.next_deadline(), Some(t0 + 5 * S));
        *t.get_mut(&3).unwrap() = Some(t0 + S); // armed
        assert_eq!(t.next_deadline(), Some(t0 + S));
        t.remove(&3); // cancelled
        t.remove(&1);
        assert_eq!(t.next_deadline(), Some(t0 + 9 * S));
        t.retain(|_, _| false);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn due_pops_only_expired_keys_and_handled_keys_rearm() {
        let t0 = origin();
        let mut t = table();
        for k in 0..10u32 {
            t.insert(k, Some(t0 + k * S));
        }
        let due = t.due(t0 + 3 * S);
        assert_eq!(due, vec![0, 1, 2, 3], "earliest first");
        for k in due {
            *t.get_mut(&k).unwrap() = None; // handled: no timer left
        }
        assert_eq!(t.next_deadline(), Some(t0 + 4 * S));
        *t.get_mut(&0).unwrap() = Some(t0 + 20 * S); // re-armed later
        assert_eq!(t.due(t0 + 4 * S), vec![4]);
        *t.get_mut(&4).unwrap() = None;
        assert_eq!(t.next_deadline(), Some(t0 + 5 * S));
        assert_eq!(t.next_deadline(), t.scan_deadline());
        assert_eq!(t.due(t0 + 19 * S), (5..10).collect::<Vec<_>>());
    }

    /// The earliest deadline is cached between reads: every kind of write must drop it.
    #[test]
    fn cached_earliest_deadline_follows_every_kind_of_write() {
        let t0 = origin();
        let mut t = table();
        t.insert(1, Some(t0 + 5 * S));
        assert_eq!(t.next_deadline(), Some(t0 + 5 * S));
        assert_eq!(
            t.next_deadline(),
            Some(t0 + 5 * S),
            "read again from the cache"
        );
        t.insert(2, Some(t0 + 2 * S));
        assert_eq!(t.next_deadline(), Some(t0 + 2 * S), "insert");
        *t.get_mut(&2).unwrap() = Some(t0 + 7 * S);
        assert_eq!(t.next_deadline(), Some(t0 + 5 * S), "get_mut, later");
        *t.get_mut(&2).unwrap() = Some(t0 + S);
        assert_eq!(t.next_deadline(), Some(t0 + S), "get_mut, earlier");
        t.remove(&2);
        assert_eq!(t.next_deadline(), Some(t0 + 5 * S), "remove");
        t.retain(|_, v| {
            *v = Some(t0 + 3 * S);
            true
        });
        assert_eq!(
            t.next_deadline(),
            Some(t0 + 3 * S),
            "retain changing entries"
        );
        for v in t.all_mut().values_mut() {
            *v = Some(t0 + S);
        }
        assert_eq!(t.next_deadline(), Some(t0 + S), "all_mut");
        assert_eq!(t.due(t0 + S), vec![1]);
        *t.get_mut(&1).unwrap() = None;
        assert_eq!(t.next_deadline(), None, "due, then handled");
        t.insert(3, Some(t0 + 4 * S));
        assert_eq!(t.next_deadline(), Some(t0 + 4 * S));
        t.retain(|_, _| false);
        assert_eq!(t.next_deadline(), None, "retain removing entries");
        assert_eq!(t.next_deadline(), t.scan_deadline());
    }

    #[test]
    fn unhandled_due_key_stays_due_like_the_scan() {
        let t0 = origin();
        let mut t = table();
        t.insert(7, Some(t0 + S));
        assert_eq!(t.due(t0 + 2 * S), vec![7]);
        // Its entry did not change: the next read re-arms it at the same deadline.
        assert_eq!(t.next_deadline(), Some(t0 + S));
        assert_eq!(t.due(t0 + 2 * S), vec![7]);
    }

    #[test]
    fn rescheduling_many_times_keeps_the_heap_small() {
        let t0 = origin();
        let mut t = table();
        t.insert(1, Some(t0));
        for i in 0..10_000u32 {
            *t.get_mut(&1).unwrap() = Some(t0 + Duration::from_millis(u64::from(i) + 1));
            assert!(t.next_deadline().is_some());
        }
        assert!(t.q().heap.len() <= 40);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(10_000)));
    }

    #[test]
    fn all_mut_rearms_everything() {
        let t0 = origin();
        let mut t = table();
        t.insert(1, Some(t0 + 5 * S));
        t.insert(2, Some(t0 + 6 * S));
        assert_eq!(t.next_deadline(), Some(t0 + 5 * S));
        for v in t.all_mut().values_mut() {
            *v = v.map(|x| x - 4 * S);
        }
        assert_eq!(t.next_deadline(), Some(t0 + S));
        assert_eq!(t.due(t0 + 2 * S), vec![1, 2]);
    }

    #[test]
    fn tally_counts_the_entries_that_match() {
        let t0 = origin();
        let mut t = table().with_tally(|v| v.is_some());
        t.insert(1, Some(t0));
        t.insert(2, None);
        t.insert(3, Some(t0));
        assert_eq!(t.tally(&1), (2, true));
        assert_eq!(t.tally(&2), (2, false));
        *t.get_mut(&1).unwrap() = None;
        t.remove(&3);
        assert_eq!(t.tally(&3), (0, false));
        *t.all_mut().get_mut(&2).unwrap() = Some(t0);
        assert_eq!(t.tally(&2), (1, true));
    }

    /// Random operations: the queue always agrees with a scan of the table.
    #[test]
    fn queue_matches_a_scan_under_random_operations() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let t0 = origin();
        let mut rng = StdRng::seed_from_u64(12);
        let mut t = table().with_tally(|v| v.is_some());
        let mut now = t0;
        for _ in 0..20_000 {
            let k = rng.random_range(0..50u32);
            let at = Some(now + Duration::from_millis(rng.random_range(0..5_000)));
            match rng.random_range(0..6) {
                0 => drop(t.insert(k, at)),
                1 => drop(t.remove(&k)),
                2 => {
                    if let Some(v) = t.get_mut(&k) {
                        *v = if rng.random_bool(0.2) { None } else { at };
                    }
                }
                3 => {
                    now += Duration::from_millis(rng.random_range(0..1_000));
                    let mut due = t.due(now);
                    let mut want = t.scan_due(now);
                    due.sort();
                    want.sort();
                    assert_eq!(due, want);
                    for k in due {
                        *t.get_mut(&k).unwrap() = None;
                    }
                }
                4 => t.retain(|k, _| k % 7 != 0 || rng.random_bool(0.5)),
                _ => {}
            }
            assert_eq!(t.next_deadline(), t.scan_deadline());
            let armed = t.values().filter(|v| v.is_some()).count();
            assert_eq!(t.tally(&0).0, armed);
        }
    }
}
