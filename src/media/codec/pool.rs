//! Reuse of libopus states across calls.
//!
//! Creating a libopus encoder or decoder allocates its state (tens of kB) and runs
//! `opus_select_arch`, whose `CPUID` instructions leave a virtual machine for the hypervisor
//! each time: on this project's VMs that was the largest single item of a short call's
//! set-up (`cargo bench --bench media -- codec_state` measures fresh against reused). A
//! finished call's states are reset (`OPUS_RESET_STATE`: all coding history cleared, the
//! CPU choice kept) and handed to the next call, which sets every parameter it needs again.
//!
//! The pools are bounded ([`KEEP`] states of each kind), so a burst of calls leaves at most
//! that many idle states behind. A state is taken and given back where calls are set up and
//! torn down (a media worker), never in the audio callback.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use ::opus::Channels;

/// Idle states kept per kind; more are freed.
pub const KEEP: usize = 32;

static ENCODERS: Mutex<Vec<::opus::Encoder>> = Mutex::new(Vec::new());
static DECODERS: Mutex<Vec<::opus::Decoder>> = Mutex::new(Vec::new());

/// A libopus state that can be pooled.
pub trait Poolable: Sized + Send + 'static {
    /// The pool this kind of state goes back to.
    fn pool() -> &'static Mutex<Vec<Self>>;
    /// Clears the coding history (`OPUS_RESET_STATE`).
    fn reset(&mut self) -> Result<(), ::opus::Error>;
}

impl Poolable for ::opus::Encoder {
    fn pool() -> &'static Mutex<Vec<Self>> {
        &ENCODERS
    }
    fn reset(&mut self) -> Result<(), ::opus::Error> {
        self.reset_state()
    }
}

impl Poolable for ::opus::Decoder {
    fn pool() -> &'static Mutex<Vec<Self>> {
        &DECODERS
    }
    fn reset(&mut self) -> Result<(), ::opus::Error> {
        self.reset_state()
    }
}

/// A state on loan from its pool; dropping it resets it and gives it back (or frees it when
/// the pool is full or the reset fails). A state that never coded (only
/// [`configure`](Self::configure)d: a call that ended before its first frame) has no history
/// to clear and goes back without the reset.
pub struct Pooled<T: Poolable> {
    state: ManuallyDrop<T>,
    /// Mutably used other than through `configure`: it may hold coding history.
    coded: bool,
}

impl<T: Poolable> Pooled<T> {
    /// A reset state from the pool, or `fresh()` when the pool is empty.
    pub fn take(fresh: impl FnOnce() -> Result<T, ::opus::Error>) -> Result<Self, ::opus::Error> {
        // A poisoned pool (a panic while it was held) still holds valid states.
        let reused = T::pool().lock().unwrap_or_else(|p| p.into_inner()).pop();
        let state = match reused {
            Some(s) => s,
            None => fresh()?,
        };
        Ok(Self {
            state: ManuallyDrop::new(state),
            coded: false,
        })
    }

    /// The state, to set or read parameters only (nothing that codes audio): it does not
    /// count as used, so a state that only ever went through here skips the reset.
    pub fn configure(&mut self) -> &mut T {
        &mut self.state
    }
}

impl<T: Poolable> Deref for Pooled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.state
    }
}

impl<T: Poolable> DerefMut for Pooled<T> {
    /// The state for coding: from here on it is reset when it goes back.
    fn deref_mut(&mut self) -> &mut T {
        self.coded = true;
        &mut self.state
    }
}

#[allow(unsafe_code)]
impl<T: Poolable> Drop for Pooled<T> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and nothing touches `self.state` after this `take`.
        let mut state = unsafe { ManuallyDrop::take(&mut self.state) };
        if self.coded && state.reset().is_err() {
            return; // freed
        }
        let mut pool = T::pool().lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < KEEP {
            pool.push(state);
        }
    }
}

/// A mono 48 kHz VOIP encoder, reused when one is idle.
pub fn encoder() -> Result<Pooled<::opus::Encoder>, ::opus::Error> {
    Pooled::take(|| ::opus::Encoder::new(48_000, Channels::Mono, ::opus::Application::Voip))
}

/// A mono 48 kHz decoder, reused when one is idle.
pub fn decoder() -> Result<Pooled<::opus::Decoder>, ::opus::Error> {
    Pooled::take(|| ::opus::Decoder::new(48_000, Channels::Mono))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::opus::OpusParams;

    // Other codec tests take and give pooled states concurrently, so these checks hold
    // whichever state a test gets.
    #[test]
    fn a_reused_encoder_codes_like_a_fresh_one() {
        let tone: Vec<i16> = (0..960 * 10)
            .map(|i| (8000.0 * (i as f64 * 0.0576).sin()) as i16)
            .collect();
        // Every parameter `OpusEncoder::new` sets, so a state another test configured
        // differently codes the same.
        let params = OpusParams {
            bitrate: 32_000,
            bitrate_cap: None,
            complexity: 7,
            dtx: false,
            fec: true,
            ptime: 20,
            max_bandwidth: ::opus::Bandwidth::Fullband,
            signal: crate::media::codec::OpusSignal::Auto,
        };
        let code = |e: &mut ::opus::Encoder| -> Vec<Vec<u8>> {
            params.apply(e).unwrap();
            let mut out = [0u8; 1500];
            tone.chunks(960)
                .map(|f| {
                    let n = e.encode(f, &mut out).unwrap();
                    out[..n].to_vec()
                })
                .collect()
        };
        let mut fresh =
            ::opus::Encoder::new(48_000, Channels::Mono, ::opus::Application::Voip).unwrap();
        let expected = code(&mut fresh);
        // A used state, given back, then taken again: after the reset it codes exactly as a
        // new one (no history of the first call leaks into the second).
        let mut first = encoder().unwrap();
        let _ = code(&mut first);
        drop(first);
        let mut second = encoder().unwrap();
        assert_eq!(code(&mut second), expected);
    }

    /// A state that counts its resets, in a pool of its own.
    struct Counted(u32);
    static COUNTED: Mutex<Vec<Counted>> = Mutex::new(Vec::new());
    impl Poolable for Counted {
        fn pool() -> &'static Mutex<Vec<Self>> {
            &COUNTED
        }
        fn reset(&mut self) -> Result<(), ::opus::Error> {
            self.0 += 1;
            Ok(())
        }
    }

    #[test]
    fn only_a_state_that_coded_is_reset() {
        let mut s = Pooled::take(|| Ok(Counted(0))).unwrap();
        s.configure();
        drop(s);
        let mut s = Pooled::take(|| Ok(Counted(99))).unwrap();
        assert_eq!(
            s.0, 0,
            "the configured-only state came back without a reset"
        );
        let _coding: &mut Counted = &mut s;
        drop(s);
        let s = Pooled::take(|| Ok(Counted(99))).unwrap();
        assert_eq!(s.0, 1, "the state that coded was reset once");
    }

    #[test]
    fn a_full_pool_frees_what_it_cannot_keep() {
        let many: Vec<_> = (0..KEEP + 5).map(|_| decoder().unwrap()).collect();
        drop(many);
        assert!(DECODERS.lock().unwrap().len() <= KEEP);
    }
}
