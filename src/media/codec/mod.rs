//! Audio codecs behind one small trait pair with preallocated buffers.
//!
//! The media pipeline's common format is **48 kHz mono `i16` PCM**; a frame is `ptime × 48`
//! samples (960 at 20 ms). Every codec converts from and to that format itself: Opus runs at
//! 48 kHz natively, G.711 decimates to 8 kHz on the way in and interpolates back on the way
//! out, with preallocated filter state.
//!
//! Build the pair for a call from what SDP agreed ([`Negotiated`]) plus local preferences
//! ([`EncoderConfig`]) with [`make_encoder`] and [`make_decoder`]. After construction,
//! [`Encoder::encode`], [`Decoder::decode`], [`Decoder::conceal`] and [`Decoder::decode_fec`]
//! never allocate: callers pass their own buffers (the test binary `tests/codec_noalloc.rs`
//! checks this with a counting global allocator).
//!
//! RFC 4733 telephone events live in [`dtmf`]; they are not an audio codec.

pub mod dtmf;
pub mod g711;
pub mod opus;
pub mod pool;

use crate::signaling::sdp::{Codec, Negotiated};

/// The sample rate of the pipeline's PCM, in Hz.
pub const PCM_RATE: u32 = 48_000;

/// Samples of 48 kHz PCM per millisecond.
pub const SAMPLES_PER_MS: usize = 48;

/// The largest RTP payload an encoder produces; an `out` buffer of this size is always enough.
pub const MAX_PAYLOAD: usize = 1500;

/// The longest frame a decoder may be asked to produce (120 ms, the Opus maximum), in
/// 48 kHz samples. An `out48` buffer of this size is always enough for one packet.
pub const MAX_FRAME_SAMPLES48: usize = 120 * SAMPLES_PER_MS;

/// What went wrong in a codec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// API misuse: the input frame does not have the configured length.
    #[error("input frame has {got} samples, the encoder expects {expected}")]
    FrameSize {
        /// Samples per frame the encoder was built for.
        expected: usize,
        /// Samples passed in.
        got: usize,
    },
    /// API misuse: the output buffer cannot hold the result.
    #[error("output buffer too small: need {need}, have {have}")]
    BufferTooSmall {
        /// Elements needed.
        need: usize,
        /// Elements available.
        have: usize,
    },
    /// The packetisation time is not one this codec can produce.
    #[error("unsupported ptime {0} ms")]
    Ptime(u32),
    /// The peer sent a payload that is empty or cannot be parsed.
    #[error("malformed payload")]
    Malformed,
    /// libopus refused (a bad packet from the peer, or a bad setting).
    #[error("libopus: {0}")]
    Opus(#[from] ::opus::Error),
}

/// Local encoder preferences; SDP parameters from the peer may restrict them further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Target bitrate in bit/s (Opus only; capped by the peer's `maxaveragebitrate`).
    pub bitrate: i32,
    /// Opus complexity, 0..=10. The default, 7, is the lowest at which libopus (float build)
    /// runs its signal analysis: it tells speech from music and tones, so hold music,
    /// ringback and test tones are coded in CELT mode, which costs a third of the SILK/hybrid
    /// coding a VOIP encoder at complexity 5 gives every signal (see the `opus_settings`
    /// bench). Speech costs about 16 % more than at 5; an app that wants the least CPU on
    /// speech alone can set 5.
    pub complexity: i32,
    /// Opus discontinuous transmission: during silence [`Encoder::encode`] returns 0
    /// (nothing to send) for most frames.
    pub dtx: bool,
    /// Use Opus in-band FEC when the peer signals `useinbandfec=1`.
    pub fec: bool,
    /// Packetisation time override in ms. `None` follows [`Negotiated::ptime`] (the peer's
    /// wish), falling back to 20 ms when the codec cannot produce that ptime.
    pub ptime_ms: Option<u32>,
    /// What the audio is, for Opus's choice between its speech and music coding.
    pub signal: OpusSignal,
}

/// What a call's audio is: the hint Opus uses to choose between its speech coding (SILK, or
/// hybrid) and its music coding (CELT), which costs about a third as much CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpusSignal {
    /// libopus decides from its own analysis of the signal (at complexity 7 and more). A
    /// VOIP encoder starts every call in SILK (hybrid) and moves a tone or music to CELT once
    /// the analysis is sure: after 18 frames (0.36 s) of a steady 440 Hz tone (the test
    /// `opus::tests::a_music_hint_codes_a_tone_in_celt_from_its_first_frame`). Those frames
    /// cost several times a CELT frame, which counts when hundreds of calls start at once.
    #[default]
    Auto,
    /// Speech: SILK or hybrid at VOIP bitrates, even for a tone.
    Voice,
    /// Music, hold music or a test tone: CELT from the first frame.
    Music,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            bitrate: 32_000,
            complexity: 7,
            dtx: false,
            fec: true,
            ptime_ms: None,
            signal: OpusSignal::Auto,
        }
    }
}

/// Turns frames of 48 kHz mono PCM into RTP payloads.
pub trait Encoder: Send {
    /// Encodes exactly one frame of [`Encoder::frame_samples48`] samples into `out` and returns
    /// the payload length. `Ok(0)` means there is nothing to send for this frame (Opus DTX);
    /// the RTP timestamp still advances by [`Encoder::rtp_ts_per_frame`].
    /// A buffer of [`MAX_PAYLOAD`] bytes is always enough.
    fn encode(&mut self, pcm48: &[i16], out: &mut [u8]) -> Result<usize, CodecError>;
    /// Samples of 48 kHz PCM per frame (`ptime × 48`).
    fn frame_samples48(&self) -> usize;
    /// The RTP clock rate (48000 for Opus, 8000 for G.711).
    fn rtp_clock(&self) -> u32;
    /// RTP timestamp units per frame.
    fn rtp_ts_per_frame(&self) -> u32;
    /// Changes the target bitrate (bit/s); clamped to the codec's range and the peer's cap.
    /// A no-op for fixed-rate codecs.
    fn set_bitrate(&mut self, bps: i32) -> Result<(), CodecError>;
    /// Tells the encoder the expected packet loss (percent, from RTCP), so Opus FEC can
    /// spend bits accordingly. A no-op for codecs without FEC.
    fn set_packet_loss_perc(&mut self, percent: u8) -> Result<(), CodecError>;
    /// The codec this encoder produces.
    fn codec(&self) -> Codec;
}

/// Turns RTP payloads back into 48 kHz mono PCM, and covers for lost packets.
pub trait Decoder: Send {
    /// Decodes one payload into `out48`; returns the samples written. A buffer of
    /// [`MAX_FRAME_SAMPLES48`] samples is enough for any packet of up to 120 ms.
    fn decode(&mut self, payload: &[u8], out48: &mut [i16]) -> Result<usize, CodecError>;
    /// Packet-loss concealment: produces one frame (as long as the last decoded frame) in
    /// place of a lost packet; returns the samples written.
    fn conceal(&mut self, out48: &mut [i16]) -> Result<usize, CodecError>;
    /// Recovers the frame *before* `next_payload` from its in-band FEC data (Opus). Call it
    /// when a packet is lost and the next one has arrived; then decode `next_payload` itself
    /// normally. Codecs without FEC (and Opus packets without FEC data) conceal instead.
    fn decode_fec(&mut self, next_payload: &[u8], out48: &mut [i16]) -> Result<usize, CodecError>;
    /// Whether `payload` carries FEC data for the previous frame.
    fn has_fec(&self, payload: &[u8]) -> bool;
    /// Samples of 48 kHz PCM in one concealed frame right now.
    fn frame_samples48(&self) -> usize;
    /// The RTP clock rate (48000 for Opus, 8000 for G.711).
    fn rtp_clock(&self) -> u32;
    /// The codec this decoder understands.
    fn codec(&self) -> Codec;
}

/// The ptime to use: the override, else the negotiated one if the codec supports it, else 20.
fn choose_ptime(
    n: &Negotiated,
    cfg_ptime: Option<u32>,
    supported: fn(u32) -> bool,
) -> Result<u32, CodecError> {
    match cfg_ptime {
        Some(p) if supported(p) => Ok(p),
        Some(p) => Err(CodecError::Ptime(p)),
        None if supported(n.ptime) => Ok(n.ptime),
        None => Ok(20),
    }
}

/// Builds the encoder for the negotiated codec.
pub fn make_encoder(n: &Negotiated, cfg: &EncoderConfig) -> Result<Box<dyn Encoder>, CodecError> {
    match n.codec {
        Codec::Opus => {
            let ptime = choose_ptime(n, cfg.ptime_ms, opus::ptime_supported)?;
            let params = opus::OpusParams::from_negotiated(n, cfg, ptime);
            Ok(Box::new(opus::OpusEncoder::new(&params)?))
        }
        Codec::Pcmu | Codec::Pcma => {
            let ptime = choose_ptime(n, cfg.ptime_ms, g711::ptime_supported)?;
            Ok(Box::new(g711::G711Encoder::new(
                g711::Law::of(n.codec),
                ptime,
            )?))
        }
    }
}

/// Builds the decoder for the negotiated codec.
pub fn make_decoder(n: &Negotiated) -> Result<Box<dyn Decoder>, CodecError> {
    match n.codec {
        Codec::Opus => {
            let ptime = choose_ptime(n, None, opus::ptime_supported)?;
            Ok(Box::new(opus::OpusDecoder::new(ptime)?))
        }
        Codec::Pcmu | Codec::Pcma => {
            let ptime = choose_ptime(n, None, g711::ptime_supported)?;
            Ok(Box::new(g711::G711Decoder::new(
                g711::Law::of(n.codec),
                ptime,
            )?))
        }
    }
}

/// Signal helpers shared by the codec tests.
#[cfg(test)]
pub(crate) mod test_util {
    use crate::signaling::sdp::{Codec, Negotiated};

    /// Relative power of `freq` in `x` (Goertzel), normalised by the length.
    pub fn goertzel(x: &[i16], rate: f64, freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / rate;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = v as f64 + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let p = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        p / (x.len() as f64 * x.len() as f64)
    }

    /// A sine of `freq` Hz at 48 kHz, starting at sample `start`.
    pub fn tone(freq: f64, amp: f64, start: usize, len: usize) -> Vec<i16> {
        (start..start + len)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 48_000.0).sin()) as i16)
            .collect()
    }

    /// A voiced-speech-like signal: harmonics of a wobbling 140 Hz pitch under a 4 Hz
    /// syllable envelope. Unlike a steady tone, SILK's VAD keeps calling it speech.
    pub fn speech_like(len: usize) -> Vec<i16> {
        use std::f64::consts::PI;
        (0..len)
            .map(|i| {
                let t = i as f64 / 48_000.0;
                let f0 = 140.0 + 20.0 * (2.0 * PI * 3.0 * t).sin();
                let env = 0.6 + 0.4 * (2.0 * PI * 4.0 * t).sin();
                let v: f64 = [(1.0, 3000.0), (2.0, 2000.0), (3.0, 1200.0), (5.0, 600.0)]
                    .iter()
                    .map(|(k, a)| a * (2.0 * PI * f0 * k * t).sin())
                    .sum();
                (env * v) as i16
            })
            .collect()
    }

    /// Signal-to-noise ratio in dB of `got` against `want`.
    pub fn snr_db(want: &[i16], got: &[i16]) -> f64 {
        let (mut s, mut e) = (0.0f64, 0.0f64);
        for (&a, &b) in want.iter().zip(got) {
            s += (a as f64).powi(2);
            e += (a as f64 - b as f64).powi(2);
        }
        10.0 * (s / e.max(1e-9)).log10()
    }

    /// A Negotiated for `codec` with default parameters.
    pub fn negotiated(codec: Codec) -> Negotiated {
        let addr = "127.0.0.1:4000".parse().unwrap();
        Negotiated {
            telephone_event: Some(101),
            opus_fec: false,
            ..Negotiated::sendrecv(codec, addr, addr)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::negotiated;
    use super::*;

    #[test]
    fn factory_picks_codec_and_ptime() {
        let mut n = negotiated(Codec::Pcmu);
        n.ptime = 30;
        let enc = make_encoder(&n, &EncoderConfig::default()).unwrap();
        assert_eq!(enc.codec(), Codec::Pcmu);
        assert_eq!(enc.frame_samples48(), 30 * 48);
        assert_eq!(enc.rtp_ts_per_frame(), 240);
        assert_eq!(enc.rtp_clock(), 8000);

        let mut n = negotiated(Codec::Opus);
        n.ptime = 30; // not an Opus frame size: fall back to 20
        let enc = make_encoder(&n, &EncoderConfig::default()).unwrap();
        assert_eq!(enc.frame_samples48(), 960);
        assert_eq!(enc.rtp_ts_per_frame(), 960);
        let dec = make_decoder(&n).unwrap();
        assert_eq!(dec.frame_samples48(), 960);
        assert_eq!(dec.codec(), Codec::Opus);

        let cfg = EncoderConfig {
            ptime_ms: Some(60),
            ..EncoderConfig::default()
        };
        let enc = make_encoder(&n, &cfg).unwrap();
        assert_eq!(enc.frame_samples48(), 2880);
        let cfg = EncoderConfig {
            ptime_ms: Some(25),
            ..EncoderConfig::default()
        };
        assert!(matches!(make_encoder(&n, &cfg), Err(CodecError::Ptime(25))));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut out = [0i16; MAX_FRAME_SAMPLES48];
            for codec in [Codec::Opus, Codec::Pcmu, Codec::Pcma] {
                let mut dec = make_decoder(&negotiated(codec)).unwrap();
                let _ = dec.has_fec(&payload);
                if let Ok(n) = dec.decode(&payload, &mut out) {
                    proptest::prop_assert!(n <= MAX_FRAME_SAMPLES48);
                }
                let _ = dec.decode_fec(&payload, &mut out);
                proptest::prop_assert_eq!(dec.conceal(&mut out).unwrap(), dec.frame_samples48());
            }
            let _ = dtmf::TelephoneEvent::decode(&payload);
        }
    }

    #[test]
    fn dyn_traits_are_send() {
        fn is_send<T: Send + ?Sized>() {}
        is_send::<dyn Encoder>();
        is_send::<dyn Decoder>();
    }
}
