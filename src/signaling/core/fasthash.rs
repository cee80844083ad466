//! The hasher of the core's and the driver's tables: foldhash (fast variant) with a seed drawn
//! once per process from the operating system's randomness, instead of std's SipHash-1-3.
//!
//! Why this is acceptable against hash flooding: some keys come from the network (a Via
//! branch, a Call-ID, tags), so a peer who could predict the hash function could send keys
//! that all land in the same bucket and make every lookup linear. The seed here is secret and
//! random per process (taken from `std`'s [`std::hash::RandomState`], which asks the operating
//! system), and foldhash mixes it into every step, so colliding keys cannot be computed
//! offline. What foldhash gives up against SipHash is resistance to an attacker who studies
//! a long-running process's timing to recover its seed; that is not cheap for a remote SIP
//! peer, the tables are bounded anyway (transactions and calls expire by Timer B/F/H/J and
//! linger limits, `--max-concurrent` caps calls), and a flood large enough to matter already
//! meets those limits first. The cost per lookup of a short string key falls from ~100-150
//! instructions to ~20-30, and the core does a few dozen lookups per call set-up.

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;
use std::hash::BuildHasher;
use std::sync::OnceLock;

/// A [`BuildHasher`] of foldhash hashers with a per-process random seed (see the module doc).
#[derive(Clone, Debug)]
pub struct FastState(SeedableRandomState);

/// The process-wide secret seed, drawn on first use.
fn shared_seed() -> &'static SharedSeed {
    static SEED: OnceLock<SharedSeed> = OnceLock::new();
    SEED.get_or_init(|| SharedSeed::from_u64(std::hash::RandomState::new().hash_one(0x5eed_u64)))
}

impl Default for FastState {
    /// A hasher state with the process seed and a per-map seed (std's per-thread keys step on
    /// every `RandomState::new`, so two maps do not share a hash order).
    fn default() -> Self {
        let per_map = std::hash::RandomState::new().hash_one(0x006d_6170_u64);
        FastState(SeedableRandomState::with_seed(per_map, shared_seed()))
    }
}

impl BuildHasher for FastState {
    type Hasher = <SeedableRandomState as BuildHasher>::Hasher;
    #[inline]
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

/// A `HashMap` with [`FastState`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastState>;
/// A `HashSet` with [`FastState`].
pub type FastSet<K> = std::collections::HashSet<K, FastState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_work_and_share_the_process_seed() {
        let mut m: FastMap<String, u32> = FastMap::default();
        m.insert("z9hG4bK1".into(), 1);
        m.insert("z9hG4bK2".into(), 2);
        assert_eq!(m.get("z9hG4bK2"), Some(&2));
        assert!(std::ptr::eq(shared_seed(), shared_seed()));
        let (a, b) = (FastState::default(), FastState::default());
        assert_ne!(a.hash_one("x"), b.hash_one("x"), "per-map seeds differ");
        assert_eq!(a.hash_one("x"), a.hash_one("x"));
    }
}
