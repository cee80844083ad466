//! G.711 PCMU (μ-law) and PCMA (A-law), RFC 3551 payload types 0 and 8.
//!
//! The companding follows ITU-T G.711: 8-bit codes of sign, 3-bit segment (exponent) and
//! 4-bit step (mantissa). Encoding is bit math on the 14-bit (μ-law) or 13-bit (A-law) linear
//! value; decoding is a 256-entry table built at compile time by the inverse bit math.
//!
//! The codec runs at 8 kHz; [`Decimator`] (48 kHz → 8 kHz) and [`Interpolator`]
//! (8 kHz → 48 kHz) share one windowed-sinc low-pass FIR with a cutoff just below 4 kHz, so
//! tones above the 8 kHz Nyquist frequency are removed instead of aliasing into the band.
//! Concealment repeats the last decoded frame with a gain that falls linearly to silence over
//! [`PLC_FADE_MS`].

use super::{CodecError, Decoder, Encoder, SAMPLES_PER_MS};
use crate::signaling::sdp::Codec;

/// The companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// μ-law, PCMU.
    Mu,
    /// A-law, PCMA.
    A,
}

impl Law {
    /// The law of a G.711 codec (`Opus` maps to μ-law; callers only pass G.711 codecs).
    pub fn of(codec: Codec) -> Self {
        match codec {
            Codec::Pcma => Law::A,
            Codec::Pcmu | Codec::Opus => Law::Mu,
        }
    }

    /// The codec this law is spoken as.
    pub fn codec(self) -> Codec {
        match self {
            Law::Mu => Codec::Pcmu,
            Law::A => Codec::Pcma,
        }
    }

    /// Compresses one linear sample.
    pub fn encode(self, pcm: i16) -> u8 {
        match self {
            Law::Mu => linear_to_ulaw(pcm),
            Law::A => linear_to_alaw(pcm),
        }
    }

    /// Expands one code.
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Law::Mu => ULAW_TABLE[code as usize],
            Law::A => ALAW_TABLE[code as usize],
        }
    }
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 8159; // 14-bit magnitude before the bias

/// Index of the segment whose upper end (`ends`) holds `v`, or 8 when above all of them.
fn segment(v: i32, ends: &[i32; 8]) -> i32 {
    ends.iter().position(|&e| v <= e).unwrap_or(8) as i32
}

/// μ-law compression of a 16-bit sample (G.711 table 2a, via its 14-bit magnitude).
pub fn linear_to_ulaw(pcm: i16) -> u8 {
    const ENDS: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    // Negative values use the one's complement, so that -1 is negative zero (0x7F).
    let (mut v, mask) = if pcm < 0 {
        ((!(pcm as i32)) >> 2, 0x7F)
    } else {
        ((pcm as i32) >> 2, 0xFF)
    };
    v = v.min(ULAW_CLIP) + (ULAW_BIAS >> 2);
    let seg = segment(v, &ENDS);
    let code = if seg >= 8 {
        0x7F ^ mask
    } else {
        ((seg << 4) | ((v >> (seg + 1)) & 0x0F)) ^ mask
    };
    code as u8
}

/// μ-law expansion of one code to a 16-bit sample.
pub const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code as i32;
    let t = (((u & 0x0F) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

/// A-law compression of a 16-bit sample (G.711 table 1a, via its 13-bit value).
pub fn linear_to_alaw(pcm: i16) -> u8 {
    const ENDS: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut v = (pcm as i32) >> 3;
    let mask: i32 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &ENDS);
    let code = if seg >= 8 {
        0x7F ^ mask
    } else {
        let step = if seg < 2 {
            (v >> 1) & 0x0F
        } else {
            (v >> seg) & 0x0F
        };
        ((seg << 4) | step) ^ mask
    };
    code as u8
}

/// A-law expansion of one code to a 16-bit sample.
pub const fn alaw_to_linear(code: u8) -> i16 {
    let a = (code ^ 0x55) as i32;
    let seg = (a & 0x70) >> 4;
    let mut t = (a & 0x0F) << 4;
    t += if seg == 0 { 8 } else { 0x108 };
    if seg > 1 {
        t <<= seg - 1;
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn table(law_a: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if law_a {
            alaw_to_linear(i as u8)
        } else {
            ulaw_to_linear(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_TABLE: [i16; 256] = table(false);
static ALAW_TABLE: [i16; 256] = table(true);

/// 48 kHz samples per 8 kHz sample.
pub const RATIO: usize = 6;
/// Taps of the shared anti-alias / anti-image FIR (a multiple of [`RATIO`]).
pub const TAPS: usize = 240;
/// Concealment fades from the last frame's level to silence over this many milliseconds.
pub const PLC_FADE_MS: usize = 60;

/// Blackman-windowed sinc low-pass at 48 kHz, cutoff 3.9 kHz, unity DC gain.
fn lowpass() -> [f32; TAPS] {
    let mut h = [0f32; TAPS];
    let fc = 3900.0 / 48_000.0;
    let mid = (TAPS - 1) as f64 / 2.0;
    let mut sum = 0.0;
    let mut taps = [0f64; TAPS];
    for (i, t) in taps.iter_mut().enumerate() {
        let x = i as f64 - mid;
        let sinc = if x == 0.0 {
            2.0 * fc
        } else {
            (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
        };
        let n = i as f64 / (TAPS - 1) as f64;
        let w = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * n).cos()
            + 0.08 * (4.0 * std::f64::consts::PI * n).cos();
        *t = sinc * w;
        sum += *t;
    }
    for (o, t) in h.iter_mut().zip(taps) {
        *o = (t / sum) as f32;
    }
    h
}

/// Dot product with eight independent accumulators, so the compiler can vectorise it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f32 = a
        .chunks_exact(8)
        .remainder()
        .iter()
        .zip(b.chunks_exact(8).remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

fn to_i16(v: f32) -> i16 {
    crate::media::pcm::round_to_i16(v)
}

/// 48 kHz → 8 kHz: low-pass, then keep every sixth sample. State is preallocated.
#[derive(Clone)]
pub struct Decimator {
    h: [f32; TAPS],
    /// Input history, stored twice so a window is always one contiguous slice.
    hist: [f32; 2 * TAPS],
    pos: usize,
}

impl Default for Decimator {
    fn default() -> Self {
        Self::new()
    }
}

impl Decimator {
    /// A decimator with silent history.
    pub fn new() -> Self {
        Self {
            h: lowpass(),
            hist: [0.0; 2 * TAPS],
            pos: 0,
        }
    }

    /// Filters `input` (48 kHz; a multiple of 6 samples) into `out` (8 kHz, `input.len() / 6`
    /// samples); returns the samples written.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> usize {
        let n = (input.len() / RATIO).min(out.len());
        for (chunk, o) in input.chunks_exact(RATIO).zip(out.iter_mut()) {
            for &s in chunk {
                self.hist[self.pos] = s as f32;
                self.hist[self.pos + TAPS] = s as f32;
                self.pos = (self.pos + 1) % TAPS;
            }
            // hist[pos..pos+TAPS] runs oldest → newest; h is symmetric.
            let win = &self.hist[self.pos..self.pos + TAPS];
            *o = to_i16(dot(win, &self.h));
        }
        n
    }
}

/// 8 kHz → 48 kHz: zero-stuff by six and low-pass (polyphase). State is preallocated.
#[derive(Clone)]
pub struct Interpolator {
    /// Polyphase branches: `phases[p][j] = 6 · h[p + 6j]`.
    phases: [[f32; TAPS / RATIO]; RATIO],
    hist: [f32; 2 * (TAPS / RATIO)],
    pos: usize,
}

impl Default for Interpolator {
    fn default() -> Self {
        Self::new()
    }
}

impl Interpolator {
    /// An interpolator with silent history.
    pub fn new() -> Self {
        let h = lowpass();
        let mut phases = [[0f32; TAPS / RATIO]; RATIO];
        for (p, branch) in phases.iter_mut().enumerate() {
            for (j, c) in branch.iter_mut().enumerate() {
                *c = RATIO as f32 * h[p + RATIO * j];
            }
        }
        Self {
            phases,
            hist: [0.0; 2 * (TAPS / RATIO)],
            pos: 0,
        }
    }

    /// Upsamples `input` (8 kHz) into `out` (48 kHz, six samples per input sample); returns
    /// the samples written (limited by `out`).
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> usize {
        const M: usize = TAPS / RATIO;
        let n = input.len().min(out.len() / RATIO);
        for (&s, o) in input[..n].iter().zip(out.chunks_exact_mut(RATIO)) {
            // Newest first: hist[pos..pos+M] holds x[m], x[m-1], ...
            self.pos = (self.pos + M - 1) % M;
            self.hist[self.pos] = s as f32;
            self.hist[self.pos + M] = s as f32;
            let win = &self.hist[self.pos..self.pos + M];
            for (branch, y) in self.phases.iter().zip(o.iter_mut()) {
                *y = to_i16(dot(win, branch));
            }
        }
        n * RATIO
    }
}

/// The ptimes (ms) G.711 supports here: 10 to 60 in steps of 10.
pub fn ptime_supported(ptime: u32) -> bool {
    ptime % 10 == 0 && (10..=60).contains(&ptime)
}

/// G.711 encoder: decimate to 8 kHz, compand, one byte per sample.
pub struct G711Encoder {
    law: Law,
    ptime: u32,
    dec: Decimator,
    buf8: [i16; 60 * 8],
}

impl G711Encoder {
    /// An encoder for `law` producing `ptime` ms frames.
    pub fn new(law: Law, ptime: u32) -> Result<Self, CodecError> {
        if !ptime_supported(ptime) {
            return Err(CodecError::Ptime(ptime));
        }
        Ok(Self {
            law,
            ptime,
            dec: Decimator::new(),
            buf8: [0; 60 * 8],
        })
    }
}

impl Encoder for G711Encoder {
    fn encode(&mut self, pcm48: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        let expected = self.frame_samples48();
        if pcm48.len() != expected {
            return Err(CodecError::FrameSize {
                expected,
                got: pcm48.len(),
            });
        }
        let n8 = expected / RATIO;
        if out.len() < n8 {
            return Err(CodecError::BufferTooSmall {
                need: n8,
                have: out.len(),
            });
        }
        let n = self.dec.process(pcm48, &mut self.buf8[..n8]);
        for (o, &s) in out.iter_mut().zip(&self.buf8[..n]) {
            *o = self.law.encode(s);
        }
        Ok(n)
    }

    fn frame_samples48(&self) -> usize {
        self.ptime as usize * SAMPLES_PER_MS
    }

    fn rtp_clock(&self) -> u32 {
        8000
    }

    fn rtp_ts_per_frame(&self) -> u32 {
        self.ptime * 8
    }

    fn set_bitrate(&mut self, _bps: i32) -> Result<(), CodecError> {
        Ok(())
    }

    fn set_packet_loss_perc(&mut self, _percent: u8) -> Result<(), CodecError> {
        Ok(())
    }

    fn codec(&self) -> Codec {
        self.law.codec()
    }
}

/// Longest frame the G.711 decoder remembers for concealment (8 kHz samples, 60 ms).
const PLC_MAX: usize = 60 * 8;

/// G.711 decoder: expand, interpolate to 48 kHz; concealment repeats the last frame fading out.
pub struct G711Decoder {
    law: Law,
    /// 8 kHz samples per concealed frame: the length of the last decoded payload.
    frame8: usize,
    interp: Interpolator,
    buf8: [i16; PLC_MAX],
    /// The last decoded frame (8 kHz), source of concealment.
    last: [i16; PLC_MAX],
    last_len: usize,
    /// Read position in `last` while concealing.
    plc_pos: usize,
    /// Current concealment gain, 1.0 after a good frame, falling to 0.
    plc_gain: f32,
}

impl G711Decoder {
    /// A decoder for `law`, concealing `ptime` ms frames until the first packet arrives.
    pub fn new(law: Law, ptime: u32) -> Result<Self, CodecError> {
        if !ptime_supported(ptime) {
            return Err(CodecError::Ptime(ptime));
        }
        Ok(Self {
            law,
            frame8: ptime as usize * 8,
            interp: Interpolator::new(),
            buf8: [0; PLC_MAX],
            last: [0; PLC_MAX],
            last_len: 0,
            plc_pos: 0,
            plc_gain: 1.0,
        })
    }
}

impl Decoder for G711Decoder {
    fn decode(&mut self, payload: &[u8], out48: &mut [i16]) -> Result<usize, CodecError> {
        if payload.is_empty() {
            return Err(CodecError::Malformed);
        }
        let need = payload.len() * RATIO;
        if out48.len() < need {
            return Err(CodecError::BufferTooSmall {
                need,
                have: out48.len(),
            });
        }
        let mut written = 0;
        for chunk in payload.chunks(PLC_MAX) {
            for (b, &c) in self.buf8.iter_mut().zip(chunk) {
                *b = self.law.decode(c);
            }
            written += self
                .interp
                .process(&self.buf8[..chunk.len()], &mut out48[written..]);
        }
        // Remember the tail for concealment.
        let keep = payload.len().min(PLC_MAX);
        for (l, &c) in self.last.iter_mut().zip(&payload[payload.len() - keep..]) {
            *l = self.law.decode(c);
        }
        self.last_len = keep;
        self.frame8 = payload.len().min(PLC_MAX);
        self.plc_pos = 0;
        self.plc_gain = 1.0;
        Ok(written)
    }

    fn conceal(&mut self, out48: &mut [i16]) -> Result<usize, CodecError> {
        let n8 = self.frame8;
        let need = n8 * RATIO;
        if out48.len() < need {
            return Err(CodecError::BufferTooSmall {
                need,
                have: out48.len(),
            });
        }
        let step = 1.0 / (PLC_FADE_MS * 8) as f32;
        for b in self.buf8[..n8].iter_mut() {
            *b = if self.last_len == 0 {
                0
            } else {
                let v = self.last[self.plc_pos] as f32 * self.plc_gain;
                self.plc_pos = (self.plc_pos + 1) % self.last_len;
                to_i16(v)
            };
            self.plc_gain = (self.plc_gain - step).max(0.0);
        }
        Ok(self.interp.process(&self.buf8[..n8], out48))
    }

    fn decode_fec(&mut self, _next_payload: &[u8], out48: &mut [i16]) -> Result<usize, CodecError> {
        self.conceal(out48)
    }

    fn has_fec(&self, _payload: &[u8]) -> bool {
        false
    }

    fn frame_samples48(&self) -> usize {
        self.frame8 * RATIO
    }

    fn rtp_clock(&self) -> u32 {
        8000
    }

    fn codec(&self) -> Codec {
        self.law.codec()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{goertzel, tone};
    use super::*;

    #[test]
    fn known_code_points() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(-1), 0x7F);

        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn all_codes_decode_encode_stably() {
        for c in 0..=255u8 {
            let a = alaw_to_linear(c);
            assert_eq!(linear_to_alaw(a), c, "A-law code {c:#04x}");
            assert_eq!(Law::A.decode(c), a);
            let u = ulaw_to_linear(c);
            // 0x7F is μ-law's negative zero; it re-encodes as positive zero.
            let want = if c == 0x7F { 0xFF } else { c };
            assert_eq!(linear_to_ulaw(u), want, "μ-law code {c:#04x}");
            assert_eq!(Law::Mu.decode(c), u);
        }
        // Decoded values are strictly monotonic in the code's magnitude order.
        let mut prev = i16::MIN;
        for c in (0x00..=0x7Eu8).chain((0x80..=0xFFu8).rev()) {
            let v = ulaw_to_linear(c);
            assert!(
                v > prev || (c == 0xFF && v == 0),
                "μ-law not monotonic at {c:#04x}"
            );
            prev = v;
        }
    }

    #[test]
    fn round_trip_error_is_bounded() {
        // G.711 steps double per segment: the error stays within half a step, i.e. about
        // 1/32 of the magnitude plus the smallest step.
        for law in [Law::Mu, Law::A] {
            for x in (i16::MIN as i32..=i16::MAX as i32).step_by(7) {
                let x = x as i16;
                let y = law.decode(law.encode(x));
                let err = (x as i32 - y as i32).abs();
                let bound = (x as i32).abs() / 16 + 16;
                assert!(err <= bound, "{law:?}: {x} -> {y} (err {err} > {bound})");
            }
        }
    }

    fn through_g711(law: Law, freq: f64) -> (Vec<i16>, Vec<i16>) {
        let mut enc = G711Encoder::new(law, 20).unwrap();
        let mut dec = G711Decoder::new(law, 20).unwrap();
        let input = tone(freq, 8000.0, 0, 960 * 25);
        let mut output = Vec::new();
        let mut pkt = [0u8; 160];
        let mut pcm = [0i16; 960];
        for frame in input.chunks(960) {
            let n = enc.encode(frame, &mut pkt).unwrap();
            assert_eq!(n, 160);
            let m = dec.decode(&pkt[..n], &mut pcm).unwrap();
            assert_eq!(m, 960);
            output.extend_from_slice(&pcm);
        }
        (input, output)
    }

    #[test]
    fn one_khz_survives_and_five_khz_is_removed() {
        for law in [Law::Mu, Law::A] {
            let (input, output) = through_g711(law, 1000.0);
            // Skip the filters' start-up; compare powers in the steady state.
            let tail = &output[4800..];
            let p1k = goertzel(tail, 48_000.0, 1000.0);
            let pin = goertzel(&input[4800..], 48_000.0, 1000.0);
            assert!(
                p1k > 0.8 * pin && p1k < 1.2 * pin,
                "{law:?}: 1 kHz power {p1k} vs {pin}"
            );
            for other in [500.0, 2000.0, 3000.0] {
                assert!(goertzel(tail, 48_000.0, other) < p1k / 1000.0);
            }

            let (input, output) = through_g711(law, 5000.0);
            let tail = &output[4800..];
            let pin = goertzel(&input[4800..], 48_000.0, 5000.0);
            // 5 kHz would alias to 3 kHz at 8 kHz sampling; both must be ~60 dB down.
            let alias = goertzel(tail, 48_000.0, 3000.0);
            let direct = goertzel(tail, 48_000.0, 5000.0);
            assert!(alias < pin / 1e6, "{law:?}: alias {alias} vs {pin}");
            assert!(direct < pin / 1e6, "{law:?}: 5 kHz {direct} vs {pin}");
        }
    }

    #[test]
    fn concealment_repeats_then_fades_to_silence() {
        let mut enc = G711Encoder::new(Law::Mu, 20).unwrap();
        let mut dec = G711Decoder::new(Law::Mu, 20).unwrap();
        let mut pkt = [0u8; 160];
        let mut pcm = [0i16; 960];
        for i in 0..5 {
            let n = enc
                .encode(&tone(1000.0, 8000.0, i * 960, 960), &mut pkt)
                .unwrap();
            dec.decode(&pkt[..n], &mut pcm).unwrap();
        }
        let energy = |x: &[i16]| x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
        let e_good = energy(&pcm);
        let mut energies = Vec::new();
        for _ in 0..5 {
            assert_eq!(dec.conceal(&mut pcm).unwrap(), 960);
            energies.push(energy(&pcm));
        }
        assert!(
            energies[0] > 0.2 * e_good,
            "first concealed frame too quiet"
        );
        assert!(energies[0] < e_good, "concealment must attenuate");
        assert!(energies[1] < energies[0]);
        assert!(
            energies[4] < 1e-3 * e_good,
            "not silent after the fade: {energies:?}"
        );
        // decode_fec falls back to concealment, and a good frame restores the level.
        assert_eq!(dec.decode_fec(&pkt, &mut pcm).unwrap(), 960);
        assert!(!dec.has_fec(&pkt));
        let n = enc.encode(&tone(1000.0, 8000.0, 0, 960), &mut pkt).unwrap();
        dec.decode(&pkt[..n], &mut pcm).unwrap();
        dec.decode(&pkt[..n], &mut pcm).unwrap();
        assert!(energy(&pcm) > 0.5 * e_good);
    }

    #[test]
    fn misuse_is_reported() {
        let mut enc = G711Encoder::new(Law::A, 20).unwrap();
        let mut pkt = [0u8; 160];
        assert!(matches!(
            enc.encode(&[0; 480], &mut pkt),
            Err(CodecError::FrameSize {
                expected: 960,
                got: 480
            })
        ));
        assert!(matches!(
            enc.encode(&[0; 960], &mut pkt[..10]),
            Err(CodecError::BufferTooSmall { .. })
        ));
        let mut dec = G711Decoder::new(Law::A, 20).unwrap();
        assert!(matches!(
            dec.decode(&[], &mut [0; 960]),
            Err(CodecError::Malformed)
        ));
        assert!(matches!(
            dec.decode(&[0xD5; 160], &mut [0; 100]),
            Err(CodecError::BufferTooSmall { need: 960, .. })
        ));
        // A peer may send another ptime: 30 ms decodes to 1440 samples and PLC follows it.
        let mut out = [0i16; 1440];
        assert_eq!(dec.decode(&[0xD5; 240], &mut out).unwrap(), 1440);
        assert_eq!(dec.frame_samples48(), 1440);
        assert!(G711Encoder::new(Law::A, 25).is_err());
    }
}
