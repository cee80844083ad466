//! Level meters over a whole reporting interval: RMS and peak of every sample since the last
//! reading, so a short sound between two readings still shows (no allocation).

/// Accumulates 16-bit samples between two readings.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Meter {
    sum_sq: f64,
    samples: u64,
    peak: u16,
}

/// RMS and peak, each 0.0–1.0 of full scale.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Level {
    /// Root mean square over the interval.
    pub rms: f32,
    /// Largest absolute sample over the interval.
    pub peak: f32,
}

impl Meter {
    /// Adds a frame of samples.
    pub(super) fn add(&mut self, x: &[i16]) {
        for &v in x {
            self.sum_sq += f64::from(v) * f64::from(v);
            self.peak = self.peak.max(v.unsigned_abs());
        }
        self.samples += x.len() as u64;
    }

    /// Adds `n` samples of digital silence (the same as [`add`](Self::add) on `n` zeros).
    pub(super) fn add_silence(&mut self, n: usize) {
        self.samples += n as u64;
    }

    /// The level since the last reading; starts a new interval.
    pub(super) fn take(&mut self) -> Level {
        let level = if self.samples == 0 {
            Level::default()
        } else {
            Level {
                rms: ((self.sum_sq / self.samples as f64).sqrt() / 32768.0) as f32,
                peak: f32::from(self.peak) / 32768.0,
            }
        };
        *self = Meter::default();
        level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_burst_between_readings_still_shows() {
        let mut m = Meter::default();
        // 49 silent frames and one loud one: the last frame alone would say silence or full
        // scale depending on luck; the interval says both what the RMS and the peak were.
        for _ in 0..49 {
            m.add(&[0; 960]);
        }
        m.add(&[16384; 960]);
        let l = m.take();
        assert!((l.peak - 0.5).abs() < 1e-6, "{l:?}");
        let want = (0.25f64 / 50.0).sqrt() as f32;
        assert!((l.rms - want).abs() < 1e-4, "{l:?} vs {want}");
        assert_eq!(m.take(), Level::default(), "a new interval starts empty");
    }

    #[test]
    fn silence_counts_as_zeros() {
        let (mut a, mut b) = (Meter::default(), Meter::default());
        for m in [&mut a, &mut b] {
            m.add(&[16384; 960]);
        }
        a.add(&[0; 960]);
        b.add_silence(960);
        assert_eq!(a.take(), b.take());
    }
}
