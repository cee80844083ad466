//! The no-INVITE-lost ledger.
//!
//! Every INVITE the framer delivers gets an entry keyed by (Call-ID, CSeq, branch). An entry for
//! an initial INVITE closes only when exactly one final response was sent for it (or the final
//! was abandoned because its flow died, see [`Ledger::final_abandoned`]) *and* exactly one
//! `Event::Ended` was emitted. An entry for a re-INVITE closes on its one final response.
//! A second final or a second `Ended` is a bug: it trips a `debug_assert!` and is counted.

use crate::signaling::core::fasthash::FastSet;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The ledger key: Call-ID, CSeq number, top Via branch of the INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LedgerKey {
    /// Call-ID (shared, like the branch: the key is cloned into the call, the transaction and
    /// the closed-key index, and a clone of an `Arc<str>` is a count, not a copy).
    pub call_id: Arc<str>,
    /// CSeq number.
    pub cseq: u32,
    /// Top Via branch.
    pub branch: Arc<str>,
}

/// Initial INVITE (must end) or re-INVITE (must only be answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Starts a call: one final, one `Ended`.
    Initial,
    /// In-dialog: one final, no `Ended`.
    ReInvite,
}

#[derive(Debug, Clone, Copy)]
enum Mark {
    Final,
    Ended,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: EntryKind,
    finals: u32,
    ended: u32,
}

/// Counters for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Entries opened.
    pub opened: u64,
    /// Of those, initial INVITEs (each must produce one `Ended`).
    pub initial: u64,
    /// Entries closed.
    pub closed: u64,
    /// Entries currently open.
    pub open: usize,
    /// Final responses sent for ledger INVITEs.
    pub finals: u64,
    /// Finals that could not be sent because the flow was gone.
    pub abandoned: u64,
    /// `Ended` events emitted for ledger INVITEs.
    pub ended: u64,
    /// Bugs: a second final for one INVITE.
    pub double_finals: u64,
    /// Bugs: a second `Ended` for one INVITE.
    pub double_ended: u64,
    /// Bugs: an `Ended` for a re-INVITE, or a mark for an unknown key.
    pub stray: u64,
}

/// The ledger. Closed keys are remembered for a while so that a late retransmission of an
/// INVITE is recognised ([`Ledger::seen`]) and not taken for a new call.
#[derive(Debug, Default)]
pub struct Ledger {
    open: BTreeMap<LedgerKey, Entry>,
    closed: VecDeque<(Instant, LedgerKey)>,
    closed_keys: FastSet<LedgerKey>,
    stats: LedgerStats,
}

/// How long a closed key is remembered.
pub const REMEMBER: Duration = Duration::from_secs(64);

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens an entry. Returns `false` (and does nothing) when the key is already open or was
    /// closed recently: the INVITE is a retransmission.
    pub fn open(&mut self, key: LedgerKey, kind: EntryKind) -> bool {
        if self.seen(&key) {
            return false;
        }
        self.open.insert(
            key,
            Entry {
                kind,
                finals: 0,
                ended: 0,
            },
        );
        self.stats.opened += 1;
        if kind == EntryKind::Initial {
            self.stats.initial += 1;
        }
        true
    }

    /// Whether the key is open or closed recently.
    pub fn seen(&self, key: &LedgerKey) -> bool {
        self.open.contains_key(key) || self.closed_keys.contains(key)
    }

    /// Whether the key is open.
    pub fn is_open(&self, key: &LedgerKey) -> bool {
        self.open.contains_key(key)
    }

    /// A final response (status >= 200) was handed to the transport for this INVITE.
    pub fn final_sent(&mut self, key: &LedgerKey, now: Instant) {
        self.stats.finals += 1;
        self.mark(key, now, Mark::Final);
    }

    /// The final could not be sent (the flow died before it): counts as the final.
    pub fn final_abandoned(&mut self, key: &LedgerKey, now: Instant) {
        self.stats.abandoned += 1;
        self.mark(key, now, Mark::Final);
    }

    /// `Event::Ended` was emitted for this INVITE.
    pub fn ended(&mut self, key: &LedgerKey, now: Instant) {
        self.stats.ended += 1;
        if let Some(e) = self.open.get(key) {
            if e.kind == EntryKind::ReInvite {
                self.stats.stray += 1;
                debug_assert!(false, "Ended for a re-INVITE {key:?}");
                return;
            }
        }
        self.mark(key, now, Mark::Ended);
    }

    fn mark(&mut self, key: &LedgerKey, now: Instant, which: Mark) {
        let Some(e) = self.open.get_mut(key) else {
            if self.closed_keys.contains(key) {
                match which {
                    Mark::Final => self.stats.double_finals += 1,
                    Mark::Ended => self.stats.double_ended += 1,
                }
                debug_assert!(false, "second {which:?} for closed {key:?}");
            } else {
                self.stats.stray += 1;
                debug_assert!(false, "ledger {which:?} for unknown {key:?}");
            }
            return;
        };
        let slot = match which {
            Mark::Final => &mut e.finals,
            Mark::Ended => &mut e.ended,
        };
        *slot += 1;
        if *slot > 1 {
            match which {
                Mark::Final => self.stats.double_finals += 1,
                Mark::Ended => self.stats.double_ended += 1,
            }
            debug_assert!(false, "second {which:?} for {key:?}");
            return;
        }
        let done = match e.kind {
            EntryKind::Initial => e.finals == 1 && e.ended == 1,
            EntryKind::ReInvite => e.finals == 1,
        };
        if done {
            // The open entry's own key moves to the closed index: one clone, not two.
            let key = self
                .open
                .remove_entry(key)
                .map_or_else(|| key.clone(), |(k, _)| k);
            self.closed_keys.insert(key.clone());
            self.closed.push_back((now, key));
            self.stats.closed += 1;
        }
        self.expire(now);
    }

    /// Forgets closed keys older than [`REMEMBER`].
    pub fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.closed.front() {
            if now.saturating_duration_since(*at) > REMEMBER {
                if let Some((_, k)) = self.closed.pop_front() {
                    self.closed_keys.remove(&k);
                }
            } else {
                break;
            }
        }
    }

    /// The open keys.
    pub fn open_keys(&self) -> impl Iterator<Item = &LedgerKey> {
        self.open.keys()
    }

    /// Counters.
    pub fn stats(&self) -> LedgerStats {
        LedgerStats {
            open: self.open.len(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> LedgerKey {
        LedgerKey {
            call_id: "c".into(),
            cseq: n,
            branch: format!("z9hG4bK{n}").into(),
        }
    }

    #[test]
    fn initial_closes_after_final_and_ended() {
        let t = Instant::now();
        let mut l = Ledger::new();
        assert!(l.open(key(1), EntryKind::Initial));
        assert!(!l.open(key(1), EntryKind::Initial), "retransmission");
        l.final_sent(&key(1), t);
        assert_eq!(l.stats().open, 1);
        l.ended(&key(1), t);
        let s = l.stats();
        assert_eq!((s.open, s.closed, s.double_finals), (0, 1, 0));
        assert!(l.seen(&key(1)));
        l.expire(t + REMEMBER + Duration::from_secs(1));
        assert!(!l.seen(&key(1)));
    }

    #[test]
    fn reinvite_closes_on_final() {
        let t = Instant::now();
        let mut l = Ledger::new();
        l.open(key(2), EntryKind::ReInvite);
        l.final_sent(&key(2), t);
        assert_eq!(l.stats().open, 0);
    }

    #[test]
    fn abandoned_final_counts() {
        let t = Instant::now();
        let mut l = Ledger::new();
        l.open(key(3), EntryKind::Initial);
        l.ended(&key(3), t);
        l.final_abandoned(&key(3), t);
        let s = l.stats();
        assert_eq!((s.open, s.abandoned), (0, 1));
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn doubles_are_counted() {
        let t = Instant::now();
        let mut l = Ledger::new();
        l.open(key(4), EntryKind::Initial);
        l.final_sent(&key(4), t);
        l.final_sent(&key(4), t);
        assert_eq!(l.stats().double_finals, 1);
    }

    #[test]
    #[should_panic]
    #[cfg(debug_assertions)]
    fn doubles_assert_in_debug() {
        let t = Instant::now();
        let mut l = Ledger::new();
        l.open(key(4), EntryKind::Initial);
        l.final_sent(&key(4), t);
        l.final_sent(&key(4), t);
    }
}
