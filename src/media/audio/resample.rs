//! A small streaming sample-rate converter with preallocated state.
//!
//! Linear interpolation between neighbouring input samples, with the output
//! position kept as an exact rational number (an integer numerator over the
//! output rate), so the ratio never drifts however long the stream runs.
//! All state is a handful of scalars: nothing is allocated after
//! [`Resampler::new`], and every call does a bounded amount of work
//! (at most `ceil(out_rate / in_rate)` outputs per input sample in
//! [`Resampler::push`], at most `ceil(in_rate / out_rate)` inputs per output
//! sample in [`Resampler::pull`]).
//!
//! Samples are `f32` values on the `i16` scale (−32768.0 ..= 32767.0); the
//! real-time code converts device formats to and from that scale.

/// A streaming linear-interpolation resampler from `in_rate` to `out_rate`.
///
/// One instance serves one direction of one stream: use either
/// [`push`](Self::push) (the producer drives, as on capture) or
/// [`pull`](Self::pull) (the consumer drives, as on playback), not both.
/// When both rates are equal, samples pass through unchanged.
#[derive(Debug, Clone)]
pub struct Resampler {
    in_rate: u64,
    out_rate: u64,
    /// Position of the next output sample after `prev`, in units of
    /// `1 / out_rate` input samples.
    frac: u64,
    prev: f32,
    cur: f32,
}

impl Resampler {
    /// A resampler from `in_rate` to `out_rate` (both in Hz; a zero rate is
    /// treated as 1 Hz so the arithmetic stays defined).
    pub fn new(in_rate: u32, out_rate: u32) -> Self {
        let in_rate = u64::from(in_rate.max(1));
        let out_rate = u64::from(out_rate.max(1));
        Resampler {
            in_rate,
            out_rate,
            frac: 0,
            prev: 0.0,
            cur: 0.0,
        }
    }

    /// The input rate in Hz.
    pub fn in_rate(&self) -> u32 {
        self.in_rate as u32
    }

    /// The output rate in Hz.
    pub fn out_rate(&self) -> u32 {
        self.out_rate as u32
    }

    /// True when both rates are equal and samples pass through unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.in_rate == self.out_rate
    }

    /// Forget the stream history (after a gap or a device restart).
    pub fn reset(&mut self) {
        self.frac = 0;
        self.prev = 0.0;
        self.cur = 0.0;
    }

    /// The most output samples one [`push`](Self::push) call can emit.
    pub fn max_outputs_per_input(&self) -> usize {
        self.out_rate.div_ceil(self.in_rate) as usize
    }

    /// Feed one input sample; `emit` is called for each output sample now
    /// due (zero or more times, bounded by
    /// [`max_outputs_per_input`](Self::max_outputs_per_input)).
    #[inline]
    pub fn push(&mut self, x: f32, mut emit: impl FnMut(f32)) {
        if self.in_rate == self.out_rate {
            emit(x);
            return;
        }
        // In push mode `frac` is the position of the next output relative
        // to `prev`; outputs in [prev, x) are due now. The stream starts
        // from a silent `prev`, a delay of one input sample.
        let scale = 1.0 / self.out_rate as f32;
        while self.frac < self.out_rate {
            let t = self.frac as f32 * scale;
            emit(self.prev + (x - self.prev) * t);
            self.frac += self.in_rate;
        }
        self.frac -= self.out_rate;
        self.prev = x;
    }

    /// Produce one output sample, calling `fetch` for each input sample it
    /// needs (zero or more times, at most `ceil(in_rate / out_rate)`).
    #[inline]
    pub fn pull(&mut self, mut fetch: impl FnMut() -> f32) -> f32 {
        if self.in_rate == self.out_rate {
            return fetch();
        }
        // In pull mode the output lies between `prev` and `cur`, at
        // `frac / out_rate` of the way from `prev`.
        while self.frac >= self.out_rate {
            self.prev = self.cur;
            self.cur = fetch();
            self.frac -= self.out_rate;
        }
        let t = self.frac as f32 / self.out_rate as f32;
        let y = self.prev + (self.cur - self.prev) * t;
        self.frac += self.in_rate;
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 10000.0 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    fn push_all(r: &mut Resampler, input: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        for &x in input {
            r.push(x, |y| out.push(y));
        }
        out
    }

    /// Power at `hz` relative to the total power (Goertzel).
    fn purity(x: &[f32], rate: u32, hz: f32) -> f32 {
        let w = 2.0 * std::f32::consts::PI * hz / rate as f32;
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = f64::from(v) + f64::from(c) * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let p = s1 * s1 + s2 * s2 - f64::from(c) * s1 * s2;
        let total: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        (2.0 * p / (x.len() as f64 * total)) as f32
    }

    #[test]
    fn passthrough_is_exact() {
        let mut r = Resampler::new(48000, 48000);
        assert!(r.is_passthrough());
        let input = sine(48000, 440.0, 1000);
        assert_eq!(push_all(&mut r, &input), input);
        let mut it = input.iter().copied();
        let pulled: Vec<f32> = (0..1000).map(|_| r.pull(|| it.next().unwrap())).collect();
        assert_eq!(pulled, input);
    }

    #[test]
    fn push_output_counts_match_ratio() {
        for &(a, b) in &[
            (44100, 48000),
            (48000, 44100),
            (16000, 48000),
            (8000, 48000),
            (96000, 48000),
            (48000, 8000),
            (48000, 16000),
            (48000, 96000),
        ] {
            let mut r = Resampler::new(a, b);
            let n = a as usize * 3; // three seconds of input
            let out = push_all(&mut r, &vec![0.0; n]);
            let expect = b as usize * 3;
            assert!(
                out.len().abs_diff(expect) <= 1,
                "{a}->{b}: {} outputs, expected {expect}",
                out.len()
            );
        }
    }

    #[test]
    fn streaming_across_calls_matches_one_shot() {
        // Splitting the stream at arbitrary points must not change the output.
        let input = sine(44100, 440.0, 4410);
        let mut whole = Resampler::new(44100, 48000);
        let a = push_all(&mut whole, &input);
        let mut split = Resampler::new(44100, 48000);
        let mut b = Vec::new();
        for chunk in input.chunks(441) {
            b.extend(push_all(&mut split, chunk));
        }
        assert_eq!(a, b);
    }

    #[test]
    fn pull_consumes_at_ratio() {
        for &(a, b) in &[
            (48000, 44100),
            (48000, 8000),
            (48000, 96000),
            (48000, 16000),
        ] {
            let mut r = Resampler::new(a, b);
            let mut fetched = 0usize;
            for _ in 0..b * 2 {
                r.pull(|| {
                    fetched += 1;
                    0.0
                });
            }
            // Inputs are fetched just in time: the count lags by less than
            // one output's worth of input.
            let expect = a as usize * 2;
            let slack = a.div_ceil(b) as usize;
            assert!(
                fetched.abs_diff(expect) <= slack,
                "{a}->{b}: {fetched} vs {expect}"
            );
        }
    }

    #[test]
    fn tone_survives_conversion_both_ways() {
        for &rate in &[44100u32, 16000, 8000, 96000] {
            let input = sine(rate, 440.0, rate as usize);
            let mut up = Resampler::new(rate, 48000);
            let at48 = push_all(&mut up, &input);
            assert!(purity(&at48[100..], 48000, 440.0) > 0.95, "{rate}->48000");
            let mut down = Resampler::new(48000, rate);
            let mut it = at48.iter().copied();
            let back: Vec<f32> = (0..rate as usize - 200)
                .map(|_| down.pull(|| it.next().unwrap_or(0.0)))
                .collect();
            assert!(purity(&back[100..], rate, 440.0) > 0.95, "48000->{rate}");
        }
    }

    #[test]
    fn interpolates_between_samples() {
        // 1:2 upsampling of a ramp gives the midpoints (after the two
        // outputs of the initial silent sample).
        let mut r = Resampler::new(24000, 48000);
        let out = push_all(&mut r, &[0.0, 2.0, 4.0, 6.0]);
        assert_eq!(out, vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(r.max_outputs_per_input(), 2);
    }

    proptest::proptest! {
        #[test]
        fn never_overshoots_and_keeps_the_ratio(
            rates in proptest::sample::select(vec![8000u32, 16000, 44100, 48000, 96000]),
            up in proptest::bool::ANY,
            input in proptest::collection::vec(-32768.0f32..32767.0, 1..2000),
            chunk in 1usize..300,
        ) {
            let (a, b) = if up { (rates, 48000) } else { (48000, rates) };
            let mut r = Resampler::new(a, b);
            let mut out = Vec::new();
            for c in input.chunks(chunk) {
                for &x in c {
                    let before = out.len();
                    r.push(x, |y| out.push(y));
                    proptest::prop_assert!(out.len() - before <= r.max_outputs_per_input());
                }
            }
            // Interpolation stays within the inputs' range (and the initial 0).
            let lo = input.iter().copied().fold(0.0f32, f32::min);
            let hi = input.iter().copied().fold(0.0f32, f32::max);
            proptest::prop_assert!(out.iter().all(|&y| y >= lo - 0.01 && y <= hi + 0.01));
            let expect = input.len() as f64 * f64::from(b) / f64::from(a);
            proptest::prop_assert!((out.len() as f64 - expect).abs() <= 1.0 + f64::from(b) / f64::from(a));
        }
    }
}
