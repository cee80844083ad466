//! Is a known tone in the audio we play? A Goertzel filter at one frequency, run over each
//! played frame: the frame "has the tone" when that frequency holds most of the frame's energy
//! and the frame is not near-silent. Cheap (two multiply-adds per sample), no allocation, so
//! it can sit on the media path of hundreds of calls (`wakeline load`, `--expect-tone`).

/// The share of a frame's energy the tone must hold (a clean Opus or G.711 tone over loopback
/// holds more than 0.9; speech or noise far less).
const MIN_PURITY: f64 = 0.5;
/// Frames quieter than this RMS (of full scale, about -50 dBFS) never count as the tone.
const MIN_RMS: f64 = 0.003;

/// What the detector saw over a call.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ToneStats {
    /// The frequency looked for, Hz.
    pub hz: f32,
    /// Frames examined (every played frame, silence included).
    pub frames: u64,
    /// Frames in which the tone dominated.
    pub tone_frames: u64,
    /// Samples examined.
    pub samples: u64,
    /// Samples in frames in which the tone dominated.
    pub tone_samples: u64,
}

impl ToneStats {
    /// The tone was heard: in at least half of the audio played, and for at least 100 ms.
    pub fn heard(&self, rate: u32) -> bool {
        self.tone_samples > 0
            && self.tone_samples * 2 >= self.samples
            && self.tone_samples * 10 >= u64::from(rate)
    }

    /// The share (0.0–1.0) of the played audio that held the tone.
    pub fn fraction(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.tone_samples as f64 / self.samples as f64
        }
    }
}

/// A Goertzel detector for one frequency at one sample rate.
#[derive(Debug, Clone, Copy)]
pub struct ToneDetector {
    /// 2·cos(2πf/fs).
    coeff: f64,
    stats: ToneStats,
}

impl ToneDetector {
    /// A detector for `hz` in audio sampled at `rate` Hz.
    pub fn new(hz: f32, rate: u32) -> Self {
        let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(rate.max(1));
        ToneDetector {
            coeff: 2.0 * w.cos(),
            stats: ToneStats {
                hz,
                ..ToneStats::default()
            },
        }
    }

    /// Examines one played frame.
    pub fn add(&mut self, frame: &[i16]) {
        if frame.is_empty() {
            return;
        }
        let (mut s1, mut s2, mut energy) = (0.0f64, 0.0f64, 0.0f64);
        for &v in frame {
            let x = f64::from(v) / 32768.0;
            let s0 = x + self.coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
            energy += x * x;
        }
        let n = frame.len() as f64;
        let power = s1 * s1 + s2 * s2 - self.coeff * s1 * s2;
        // A pure sine at `hz` gives |X|² = (A·N/2)² and Σx² = A²·N/2: purity 1.
        let purity = if energy > 0.0 {
            2.0 * power / (n * energy)
        } else {
            0.0
        };
        let rms = (energy / n).sqrt();
        let len = frame.len() as u64;
        self.stats.frames += 1;
        self.stats.samples += len;
        if rms >= MIN_RMS && purity >= MIN_PURITY {
            self.stats.tone_frames += 1;
            self.stats.tone_samples += len;
        }
    }

    /// What it saw so far.
    pub fn stats(&self) -> ToneStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f64, amp: f64, n: usize, phase0: usize) -> Vec<i16> {
        (phase0..phase0 + n)
            .map(|i| {
                (amp * 32767.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 48_000.0).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn a_tone_is_found_in_each_frame_and_others_are_not() {
        let mut d = ToneDetector::new(440.0, 48_000);
        for k in 0..50 {
            d.add(&sine(440.0, 0.25, 960, k * 960));
        }
        let s = d.stats();
        assert_eq!((s.frames, s.tone_frames), (50, 50), "{s:?}");
        assert!(s.heard(48_000));
        let mut d = ToneDetector::new(440.0, 48_000);
        for k in 0..50 {
            d.add(&sine(660.0, 0.25, 960, k * 960));
            d.add(&sine(1000.0, 0.25, 480, k * 480));
        }
        assert_eq!(d.stats().tone_frames, 0, "{:?}", d.stats());
        assert!(!d.stats().heard(48_000));
    }

    #[test]
    fn silence_and_noise_are_not_the_tone() {
        let mut d = ToneDetector::new(440.0, 48_000);
        d.add(&[0; 960]);
        d.add(&[]);
        // Quiet but pure: below the level floor.
        d.add(&sine(440.0, 0.001, 960, 0));
        // Loud broadband noise (a fixed pseudo-random sequence).
        let mut x = 12345u32;
        let noise: Vec<i16> = (0..960)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as i16
            })
            .collect();
        d.add(&noise);
        let s = d.stats();
        assert_eq!((s.frames, s.tone_frames), (3, 0), "{s:?}");
    }

    #[test]
    fn heard_needs_half_the_audio_and_a_tenth_of_a_second() {
        let mut d = ToneDetector::new(1000.0, 48_000);
        for k in 0..10 {
            d.add(&sine(1000.0, 0.5, 480, k * 480));
        }
        for _ in 0..9 {
            d.add(&[0; 480]);
        }
        assert!(d.stats().heard(48_000), "10 of 19 frames, 100 ms");
        d.add(&[0; 480]);
        d.add(&[0; 480]);
        assert!(!d.stats().heard(48_000), "10 of 21 frames");
        let mut d = ToneDetector::new(1000.0, 48_000);
        d.add(&sine(1000.0, 0.5, 480, 0));
        assert!(!d.stats().heard(48_000), "10 ms is too short");
        assert!((d.stats().fraction() - 1.0).abs() < 1e-9);
    }
}
