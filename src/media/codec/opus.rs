//! Opus (RFC 6716) over RTP (RFC 7587) through libopus (the `opus` crate).
//!
//! We always encode **mono** at 48 kHz with the VOIP application. RFC 7587 §7.1 makes
//! `stereo=1` a receiver *preference*: a mono stream is always legal, and every Opus decoder
//! can decode it, so the peer's `stereo` flag is recorded but does not change what we send.
//! Our decoder is mono too (libopus downmixes a stereo packet).
//!
//! From the peer's fmtp we honour `useinbandfec=1` (enable in-band FEC; the encoder spends
//! bits on it once the peer reports loss, see [`DEFAULT_LOSS_PERC`]), `maxaveragebitrate` (caps the bitrate, also later changes) and
//! `maxplaybackrate` (limits the coded bandwidth: ≤ 8000 narrowband, ≤ 12000 mediumband,
//! ≤ 16000 wideband, ≤ 24000 super-wideband, else fullband).

use ::opus::{Bandwidth, Bitrate};

use super::pool::{self, Pooled};
use super::{
    CodecError, Decoder, Encoder, EncoderConfig, OpusSignal, MAX_FRAME_SAMPLES48, SAMPLES_PER_MS,
};
use crate::signaling::sdp::{Codec, Negotiated};

/// The lowest bitrate libopus accepts, bit/s.
pub const MIN_BITRATE: i32 = 6_000;
/// The highest bitrate libopus accepts for one channel, bit/s.
pub const MAX_BITRATE: i32 = 510_000;
/// The least packet-loss percentage hint the encoder gets once the peer has reported loss
/// (when FEC is on): from then on libopus codes LBRR (in-band FEC) data for at least this much
/// loss. Until the first loss report the hint is 0 and no FEC is coded, as libopus advises
/// (the hint should be the expected loss): on a clean path FEC would only cost bits and CPU
/// (a third to a half of a held call's codec time on a steady tone, measured by the
/// `opus_settings` bench). The jitter buffer makes room for FEC the same way, once loss is
/// seen.
pub const DEFAULT_LOSS_PERC: u8 = 10;

/// The ptimes (ms) we produce: 10, 20, 40 and 60.
pub fn ptime_supported(ptime: u32) -> bool {
    matches!(ptime, 10 | 20 | 40 | 60)
}

/// Everything the Opus encoder is configured with, once SDP and local settings are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusParams {
    /// Target bitrate, bit/s (already capped).
    pub bitrate: i32,
    /// The peer's `maxaveragebitrate`, the cap for later bitrate changes.
    pub bitrate_cap: Option<i32>,
    /// Complexity 0..=10.
    pub complexity: i32,
    /// Discontinuous transmission.
    pub dtx: bool,
    /// In-band FEC (the peer asked for it and we allow it).
    pub fec: bool,
    /// Frame duration in ms.
    pub ptime: u32,
    /// The widest audio band to code.
    pub max_bandwidth: Bandwidth,
    /// What the audio is (speech, music or either).
    pub signal: OpusSignal,
}

impl OpusParams {
    /// Merges SDP parameters and local settings; `ptime` was chosen already.
    pub fn from_negotiated(n: &Negotiated, cfg: &EncoderConfig, ptime: u32) -> Self {
        let bitrate_cap = n
            .opus_max_average_bitrate
            .map(|b| b.min(MAX_BITRATE as u32) as i32);
        Self {
            bitrate: clamp_bitrate(cfg.bitrate, bitrate_cap),
            bitrate_cap,
            complexity: cfg.complexity.clamp(0, 10),
            dtx: cfg.dtx,
            fec: cfg.fec && n.opus_fec,
            ptime,
            max_bandwidth: n
                .opus_max_playback_rate
                .map_or(Bandwidth::Fullband, bandwidth_for),
            signal: cfg.signal,
        }
    }

    /// Sets every parameter on a libopus encoder, new or reused from the pool (a reset keeps
    /// the previous call's settings), with no packet-loss hint yet.
    pub fn apply(&self, e: &mut ::opus::Encoder) -> Result<(), ::opus::Error> {
        e.set_bitrate(Bitrate::Bits(self.bitrate))?;
        e.set_complexity(self.complexity)?;
        e.set_inband_fec(self.fec)?;
        e.set_packet_loss_perc(0)?;
        e.set_dtx(self.dtx)?;
        e.set_signal(match self.signal {
            OpusSignal::Auto => ::opus::Signal::Auto,
            OpusSignal::Voice => ::opus::Signal::Voice,
            OpusSignal::Music => ::opus::Signal::Music,
        })?;
        e.set_max_bandwidth(self.max_bandwidth)
    }
}

/// The widest band a receiver playing at `rate` Hz can use (RFC 7587 §7.1 maxplaybackrate).
pub fn bandwidth_for(rate: u32) -> Bandwidth {
    match rate {
        0..=8000 => Bandwidth::Narrowband,
        8001..=12000 => Bandwidth::Mediumband,
        12001..=16000 => Bandwidth::Wideband,
        16001..=24000 => Bandwidth::Superwideband,
        _ => Bandwidth::Fullband,
    }
}

fn clamp_bitrate(bps: i32, cap: Option<i32>) -> i32 {
    let b = cap.map_or(bps, |c| bps.min(c));
    b.clamp(MIN_BITRATE, MAX_BITRATE)
}

/// 48 kHz mono Opus encoder.
pub struct OpusEncoder {
    inner: Pooled<::opus::Encoder>,
    params: OpusParams,
    /// The peer has reported loss: the hint stays at least [`DEFAULT_LOSS_PERC`].
    loss_seen: bool,
}

impl OpusEncoder {
    /// Creates and configures the libopus encoder.
    pub fn new(p: &OpusParams) -> Result<Self, CodecError> {
        if !ptime_supported(p.ptime) {
            return Err(CodecError::Ptime(p.ptime));
        }
        let mut inner = pool::encoder()?;
        p.apply(inner.configure())?;
        Ok(Self {
            inner,
            params: *p,
            loss_seen: false,
        })
    }

    /// The parameters in force.
    pub fn params(&self) -> &OpusParams {
        &self.params
    }

    /// The encoder's look-ahead (algorithmic delay) in 48 kHz samples.
    pub fn lookahead(&mut self) -> Result<usize, CodecError> {
        Ok(self.inner.configure().get_lookahead()?.max(0) as usize)
    }
}

impl Encoder for OpusEncoder {
    fn encode(&mut self, pcm48: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        let expected = self.frame_samples48();
        if pcm48.len() != expected {
            return Err(CodecError::FrameSize {
                expected,
                got: pcm48.len(),
            });
        }
        let n = self.inner.encode(pcm48, out)?;
        // RFC 7587 §3.1.3 / libopus: with DTX, packets of at most 2 bytes carry no audio
        // and need not be sent.
        if self.params.dtx && n <= 2 {
            return Ok(0);
        }
        Ok(n)
    }

    fn frame_samples48(&self) -> usize {
        self.params.ptime as usize * SAMPLES_PER_MS
    }

    fn rtp_clock(&self) -> u32 {
        48_000
    }

    fn rtp_ts_per_frame(&self) -> u32 {
        self.params.ptime * 48
    }

    fn set_bitrate(&mut self, bps: i32) -> Result<(), CodecError> {
        let b = clamp_bitrate(bps, self.params.bitrate_cap);
        self.inner.set_bitrate(Bitrate::Bits(b))?;
        self.params.bitrate = b;
        Ok(())
    }

    fn set_packet_loss_perc(&mut self, percent: u8) -> Result<(), CodecError> {
        if !self.params.fec {
            return Ok(());
        }
        self.loss_seen |= percent > 0;
        let hint = if self.loss_seen {
            percent.clamp(DEFAULT_LOSS_PERC, 100)
        } else {
            0
        };
        self.inner.set_packet_loss_perc(i32::from(hint))?;
        Ok(())
    }

    fn codec(&self) -> Codec {
        Codec::Opus
    }
}

/// 48 kHz mono Opus decoder with libopus PLC and in-band FEC.
pub struct OpusDecoder {
    inner: Pooled<::opus::Decoder>,
    /// Samples in the last decoded frame: the length of the next concealed frame.
    frame: usize,
}

impl OpusDecoder {
    /// A decoder that conceals `ptime` ms frames until the first packet arrives.
    pub fn new(ptime: u32) -> Result<Self, CodecError> {
        if !ptime_supported(ptime) {
            return Err(CodecError::Ptime(ptime));
        }
        Ok(Self {
            inner: pool::decoder()?,
            frame: ptime as usize * SAMPLES_PER_MS,
        })
    }

    fn check_out(&self, need: usize, have: usize) -> Result<(), CodecError> {
        if have < need {
            return Err(CodecError::BufferTooSmall { need, have });
        }
        Ok(())
    }
}

impl Decoder for OpusDecoder {
    fn decode(&mut self, payload: &[u8], out48: &mut [i16]) -> Result<usize, CodecError> {
        if payload.is_empty() {
            return Err(CodecError::Malformed);
        }
        let need = ::opus::packet::get_nb_samples(payload, 48_000)?;
        if need == 0 || need > MAX_FRAME_SAMPLES48 {
            return Err(CodecError::Malformed);
        }
        self.check_out(need, out48.len())?;
        let n = self.inner.decode(payload, &mut out48[..need], false)?;
        self.frame = n;
        Ok(n)
    }

    fn conceal(&mut self, out48: &mut [i16]) -> Result<usize, CodecError> {
        // libopus conceals as many samples as the buffer holds: give it exactly one frame.
        self.check_out(self.frame, out48.len())?;
        Ok(self.inner.decode(&[], &mut out48[..self.frame], false)?)
    }

    fn decode_fec(&mut self, next_payload: &[u8], out48: &mut [i16]) -> Result<usize, CodecError> {
        if next_payload.is_empty() {
            return self.conceal(out48);
        }
        // The recovered frame has the duration of the lost one, which we assume equals the
        // last frame we played; libopus conceals instead when there is no FEC data.
        self.check_out(self.frame, out48.len())?;
        Ok(self
            .inner
            .decode(next_payload, &mut out48[..self.frame], true)?)
    }

    fn has_fec(&self, payload: &[u8]) -> bool {
        has_lbrr(payload)
    }

    fn frame_samples48(&self) -> usize {
        self.frame
    }

    fn rtp_clock(&self) -> u32 {
        48_000
    }

    fn codec(&self) -> Codec {
        Codec::Opus
    }
}

/// Reads an RFC 6716 §3.2.1 frame length (one or two bytes) at `p[0..]`.
fn frame_len(p: &[u8]) -> Option<(usize, usize)> {
    match *p.first()? {
        b @ 0..=251 => Some((b as usize, 1)),
        b => Some((*p.get(1)? as usize * 4 + b as usize, 2)),
    }
}

/// The first frame's data, per the packet framing of RFC 6716 §3.2 (codes 0–3).
fn first_frame(packet: &[u8]) -> Option<&[u8]> {
    let toc = *packet.first()?;
    let rest = &packet[1..];
    match toc & 0x03 {
        0 => Some(rest),
        1 => rest.get(..rest.len() / 2),
        2 => {
            let (len, used) = frame_len(rest)?;
            rest.get(used..used + len)
        }
        _ => {
            let fc = *rest.first()?;
            let (vbr, padded, count) = (fc & 0x80 != 0, fc & 0x40 != 0, (fc & 0x3F) as usize);
            if count == 0 {
                return None;
            }
            let mut i = 1;
            let mut padding = 0usize;
            if padded {
                loop {
                    let b = *rest.get(i)?;
                    i += 1;
                    padding += if b == 255 { 254 } else { b as usize };
                    if b != 255 {
                        break;
                    }
                }
            }
            let len = if vbr && count > 1 {
                let (len, used) = frame_len(rest.get(i..)?)?;
                i += used;
                // M − 1 lengths are coded; the last frame takes the rest.
                for _ in 2..count {
                    let (_, used) = frame_len(rest.get(i..)?)?;
                    i += used;
                }
                len
            } else {
                rest.len().checked_sub(i + padding)? / count
            };
            rest.get(i..i + len)
        }
    }
}

/// Whether an Opus packet carries LBRR (in-band FEC) data for the previous frame.
///
/// Only SILK and hybrid modes (TOC config < 16) have LBRR. The first range-coded symbols of a
/// SILK frame are the per-20-ms VAD flags and then the LBRR flag, all coded with probability
/// ½, so they are the top bits of the frame's first byte (RFC 6716 §4.2.3).
pub fn has_lbrr(packet: &[u8]) -> bool {
    let Some(&toc) = packet.first() else {
        return false;
    };
    let config = toc >> 3;
    if config >= 16 {
        return false; // CELT-only
    }
    // SILK frames per Opus frame: configs 0–11 are SILK with 10/20/40/60 ms; hybrid is 10/20.
    let silk_frames = match (config < 12, config & 3) {
        (true, 2) => 2,
        (true, 3) => 3,
        _ => 1,
    };
    let stereo = toc & 0x04 != 0;
    let Some(&b) = first_frame(packet).and_then(|f| f.first()) else {
        return false;
    };
    let mid = (b >> (7 - silk_frames)) & 1 == 1;
    let side = stereo && (b >> (6 - 2 * silk_frames)) & 1 == 1;
    mid || side
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{goertzel, negotiated, snr_db, speech_like, tone};
    use super::super::{make_decoder, make_encoder, MAX_PAYLOAD};
    use super::*;

    fn encoder(fec: bool) -> Box<dyn Encoder> {
        let mut n = negotiated(Codec::Opus);
        n.opus_fec = fec;
        make_encoder(&n, &EncoderConfig::default()).unwrap()
    }

    #[test]
    fn tone_survives_encode_decode() {
        let mut enc = encoder(false);
        let mut dec = make_decoder(&negotiated(Codec::Opus)).unwrap();
        let input = tone(440.0, 10_000.0, 0, 960 * 50);
        let mut out = Vec::new();
        let mut pkt = [0u8; MAX_PAYLOAD];
        let mut pcm = [0i16; MAX_FRAME_SAMPLES48];
        for frame in input.chunks(960) {
            let n = enc.encode(frame, &mut pkt).unwrap();
            assert!(
                n > 2 && n < 200,
                "a 32 kbit/s frame is about 80 bytes, got {n}"
            );
            let m = dec.decode(&pkt[..n], &mut pcm).unwrap();
            assert_eq!(m, 960);
            out.extend_from_slice(&pcm[..m]);
        }
        // Skip the codec delay and start-up (100 ms).
        let tail = &out[4800..];
        let p440 = goertzel(tail, 48_000.0, 440.0);
        let pin = goertzel(&input[4800..], 48_000.0, 440.0);
        assert!(p440 > 0.5 * pin, "440 Hz lost: {p440} vs {pin}");
        for other in [220.0, 660.0, 880.0, 1000.0, 2000.0, 5000.0] {
            let p = goertzel(tail, 48_000.0, other);
            assert!(p < p440 / 300.0, "{other} Hz at {p} vs 440 Hz at {p440}");
        }
    }

    /// Encodes speech-like audio with FEC on, loses frame `lost`, and returns the SNR of that
    /// frame's reconstruction against the lossless decode — via FEC from the next packet when
    /// `use_fec`, else via PLC — and whether the next packet had FEC data.
    fn recovered_snr(pkts: &[Vec<u8>], lost: usize, use_fec: bool) -> (f64, bool) {
        let n = negotiated(Codec::Opus);
        let mut reference = make_decoder(&n).unwrap();
        let mut lossy = make_decoder(&n).unwrap();
        let mut pcm = [0i16; MAX_FRAME_SAMPLES48];
        let mut want = Vec::new();
        for (i, p) in pkts.iter().enumerate().take(lost + 1) {
            let m = reference.decode(p, &mut pcm).unwrap();
            if i == lost {
                want = pcm[..m].to_vec();
            }
        }
        for p in &pkts[..lost] {
            lossy.decode(p, &mut pcm).unwrap();
        }
        let next = &pkts[lost + 1];
        let had_fec = lossy.has_fec(next);
        let m = if use_fec {
            lossy.decode_fec(next, &mut pcm).unwrap()
        } else {
            lossy.conceal(&mut pcm).unwrap()
        };
        assert_eq!(m, 960);
        (snr_db(&want, &pcm[..m]), had_fec)
    }

    #[test]
    fn fec_recovers_better_than_plc() {
        let mut enc = encoder(true);
        enc.set_packet_loss_perc(20).unwrap();
        let mut buf = [0u8; MAX_PAYLOAD];
        let pkts: Vec<Vec<u8>> = speech_like(960 * 100)
            .chunks(960)
            .map(|f| {
                let n = enc.encode(f, &mut buf).unwrap();
                buf[..n].to_vec()
            })
            .collect();
        let (mut fec_sum, mut plc_sum, mut count) = (0.0, 0.0, 0);
        for lost in [20, 33, 46, 59, 72, 85] {
            let (fec, had_fec) = recovered_snr(&pkts, lost, true);
            let (plc, _) = recovered_snr(&pkts, lost, false);
            if had_fec {
                fec_sum += fec;
                plc_sum += plc;
                count += 1;
            }
        }
        assert!(count >= 4, "only {count} of 6 next packets carried FEC");
        let (fec, plc) = (fec_sum / count as f64, plc_sum / count as f64);
        assert!(fec > plc + 3.0, "FEC {fec:.1} dB vs PLC {plc:.1} dB");
        assert!(fec > 5.0, "FEC reconstruction too poor: {fec:.1} dB");
        eprintln!("mean recovered-frame SNR: FEC {fec:.1} dB, PLC {plc:.1} dB");
    }

    #[test]
    fn has_fec_only_when_enabled() {
        // Note: on a steady pure tone SILK's VAD soon declares "no speech" and libopus then
        // stops coding LBRR; speech keeps it going.
        let input = speech_like(960 * 100);
        let mut buf = [0u8; MAX_PAYLOAD];
        let dec = make_decoder(&negotiated(Codec::Opus)).unwrap();
        let count = |enc: &mut Box<dyn Encoder>, buf: &mut [u8]| {
            input
                .chunks(960)
                .map(|frame| {
                    let n = enc.encode(frame, buf).unwrap();
                    dec.has_fec(&buf[..n]) as usize
                })
                .sum::<usize>()
        };
        for fec in [false, true] {
            let mut enc = encoder(fec);
            // Negotiated but no loss reported yet: no FEC bits.
            assert_eq!(count(&mut enc, &mut buf), 0, "fec {fec}, no loss reported");
            // The peer reports 1 % loss: at least DEFAULT_LOSS_PERC from now on, even after a
            // clean report.
            enc.set_packet_loss_perc(1).unwrap();
            enc.set_packet_loss_perc(0).unwrap();
            let seen = count(&mut enc, &mut buf);
            if fec {
                assert!(seen >= 70, "FEC seen in only {seen} of 100 packets");
            } else {
                assert_eq!(seen, 0);
            }
        }
        assert!(!has_lbrr(&[]));
        assert!(!has_lbrr(&[0x03])); // code 3 without a count byte
        assert!(!has_lbrr(&[0xF8, 0xFF])); // CELT-only
    }

    #[test]
    fn framing_codes_locate_the_first_frame() {
        // Code 0: one frame.
        assert_eq!(first_frame(&[0x08, 1, 2, 3]), Some(&[1u8, 2, 3][..]));
        // Code 1: two equal frames.
        assert_eq!(first_frame(&[0x09, 1, 2, 3, 4]), Some(&[1u8, 2][..]));
        // Code 2: first length 1, then the rest.
        assert_eq!(first_frame(&[0x0A, 1, 7, 8, 9]), Some(&[7u8][..]));
        // Code 2 with a two-byte length (252 + 4·1 = 256) that overruns the packet.
        assert_eq!(first_frame(&[0x0A, 252, 1, 0]), None);
        // Code 3 CBR, 2 frames, 1 byte of padding: frames of 2 bytes.
        assert_eq!(
            first_frame(&[0x0B, 0x42, 1, 5, 6, 7, 8, 0]),
            Some(&[5u8, 6][..])
        );
        // Code 3 VBR, 2 frames, first of 1 byte.
        assert_eq!(first_frame(&[0x0B, 0x82, 1, 9, 4, 4]), Some(&[9u8][..]));
        // Code 3 VBR with one frame: no length is coded.
        assert_eq!(first_frame(&[0x0B, 0x81, 9, 4]), Some(&[9u8, 4][..]));
        // Code 3 with zero frames is invalid.
        assert_eq!(first_frame(&[0x0B, 0x00]), None);
        // LBRR bit positions: 20 ms SILK (config 1) has one VAD bit, then LBRR.
        assert!(has_lbrr(&[0x08, 0b0100_0000]));
        assert!(!has_lbrr(&[0x08, 0b1000_0000]));
        // 60 ms SILK (config 3): three VAD bits, then LBRR.
        assert!(has_lbrr(&[0x18, 0b0001_0000]));
        assert!(!has_lbrr(&[0x18, 0b1110_0000]));
    }

    #[test]
    fn every_ptime_round_trips() {
        let n = negotiated(Codec::Opus);
        let mut buf = [0u8; MAX_PAYLOAD];
        let mut pcm = [0i16; MAX_FRAME_SAMPLES48];
        for ptime in [10, 20, 40, 60] {
            let cfg = EncoderConfig {
                ptime_ms: Some(ptime),
                ..EncoderConfig::default()
            };
            let mut enc = make_encoder(&n, &cfg).unwrap();
            let mut dec = make_decoder(&n).unwrap();
            let samples = ptime as usize * 48;
            assert_eq!(enc.rtp_ts_per_frame(), samples as u32);
            let len = enc.encode(&speech_like(samples), &mut buf).unwrap();
            assert_eq!(dec.decode(&buf[..len], &mut pcm).unwrap(), samples);
            assert_eq!(dec.conceal(&mut pcm).unwrap(), samples);
        }
    }

    #[test]
    fn conceal_follows_last_frame_length() {
        let n = negotiated(Codec::Opus);
        let cfg = EncoderConfig {
            ptime_ms: Some(40),
            ..EncoderConfig::default()
        };
        let mut enc = make_encoder(&n, &cfg).unwrap();
        let mut dec = make_decoder(&n).unwrap();
        assert_eq!(dec.frame_samples48(), 960);
        let mut buf = [0u8; MAX_PAYLOAD];
        let mut pcm = [0i16; MAX_FRAME_SAMPLES48];
        let len = enc.encode(&tone(440.0, 8000.0, 0, 1920), &mut buf).unwrap();
        assert_eq!(dec.decode(&buf[..len], &mut pcm).unwrap(), 1920);
        assert_eq!(dec.conceal(&mut pcm).unwrap(), 1920);
        assert!(matches!(
            dec.conceal(&mut pcm[..100]),
            Err(CodecError::BufferTooSmall { .. })
        ));
        assert!(matches!(
            dec.decode(&buf[..len], &mut pcm[..960]),
            Err(CodecError::BufferTooSmall { .. })
        ));
        assert!(matches!(
            dec.decode(&[], &mut pcm),
            Err(CodecError::Malformed)
        ));
        // A TOC with code 3 and no count byte is invalid.
        assert!(dec.decode(&[0x0B], &mut pcm).is_err());
    }

    #[test]
    fn sdp_parameters_are_honoured() {
        let mut n = negotiated(Codec::Opus);
        n.opus_max_average_bitrate = Some(20_000);
        n.opus_max_playback_rate = Some(16_000);
        n.opus_stereo = true;
        n.opus_fec = true;
        let p = OpusParams::from_negotiated(&n, &EncoderConfig::default(), 20);
        assert_eq!(p.bitrate, 20_000);
        assert_eq!(p.max_bandwidth, Bandwidth::Wideband);
        assert!(p.fec);
        let p2 = OpusParams::from_negotiated(
            &n,
            &EncoderConfig {
                fec: false,
                ..Default::default()
            },
            20,
        );
        assert!(!p2.fec);

        let mut enc = OpusEncoder::new(&p).unwrap();
        enc.set_bitrate(64_000).unwrap();
        assert_eq!(
            enc.params().bitrate,
            20_000,
            "the peer's cap holds for later changes"
        );
        enc.set_bitrate(1000).unwrap();
        assert_eq!(enc.params().bitrate, MIN_BITRATE);
        assert!(enc.lookahead().unwrap() > 0);
        // Wideband at most: libopus reports the coded band.
        let mut buf = [0u8; MAX_PAYLOAD];
        for i in 0..10 {
            let len = enc
                .encode(&tone(440.0, 8000.0, i * 960, 960), &mut buf)
                .unwrap();
            let bw = ::opus::packet::get_bandwidth(&buf[..len]).unwrap();
            assert!(
                matches!(
                    bw,
                    Bandwidth::Narrowband | Bandwidth::Mediumband | Bandwidth::Wideband
                ),
                "{bw:?}"
            );
        }

        assert_eq!(bandwidth_for(8000), Bandwidth::Narrowband);
        assert_eq!(bandwidth_for(12000), Bandwidth::Mediumband);
        assert_eq!(bandwidth_for(24000), Bandwidth::Superwideband);
        assert_eq!(bandwidth_for(48000), Bandwidth::Fullband);
    }

    #[test]
    fn dtx_suppresses_silence() {
        let n = negotiated(Codec::Opus);
        let cfg = EncoderConfig {
            dtx: true,
            ..EncoderConfig::default()
        };
        let mut enc = make_encoder(&n, &cfg).unwrap();
        let mut buf = [0u8; MAX_PAYLOAD];
        let silence = [0i16; 960];
        let empty = (0..50)
            .filter(|_| enc.encode(&silence, &mut buf).unwrap() == 0)
            .count();
        assert!(empty > 30, "only {empty} of 50 silent frames suppressed");
        let n = enc.encode(&tone(440.0, 8000.0, 0, 960), &mut buf).unwrap();
        assert!(n > 2);
    }

    /// Whether `packet` is coded in CELT (RFC 6716 §3.1: TOC configurations 16–31).
    fn is_celt(packet: &[u8]) -> bool {
        packet.first().is_some_and(|toc| toc >> 3 >= 16)
    }

    /// The modes a fresh encoder with `signal` codes 3 s of our 440 Hz test tone (the tone
    /// source's amplitude) in: `true` for CELT.
    fn tone_modes(signal: OpusSignal) -> Vec<bool> {
        let cfg = EncoderConfig {
            signal,
            ..EncoderConfig::default()
        };
        let mut enc = make_encoder(&negotiated(Codec::Opus), &cfg).unwrap();
        let mut buf = [0u8; MAX_PAYLOAD];
        (0..150)
            .map(|i| {
                let pcm = tone(440.0, 16384.0, i * 960, 960);
                let n = enc.encode(&pcm, &mut buf).unwrap();
                is_celt(&buf[..n])
            })
            .collect()
    }

    #[test]
    fn a_music_hint_codes_a_tone_in_celt_from_its_first_frame() {
        // Left to its analysis, the encoder starts in hybrid (SILK) and moves to CELT once,
        // within the first second (18 frames here), for good.
        let auto = tone_modes(OpusSignal::Auto);
        let first = auto.iter().position(|&c| c).unwrap_or(auto.len());
        assert!(first > 0 && first < 50, "first CELT frame: {first}");
        assert!(auto[first..].iter().all(|&c| c));
        assert!(tone_modes(OpusSignal::Music).iter().all(|&c| c));
        assert!(tone_modes(OpusSignal::Voice).iter().all(|&c| !c));
    }

    #[test]
    fn every_configuration_sets_the_signal_hint_again() {
        let mut e = ::opus::Encoder::new(48_000, ::opus::Channels::Mono, ::opus::Application::Voip)
            .unwrap();
        let mut p =
            OpusParams::from_negotiated(&negotiated(Codec::Opus), &EncoderConfig::default(), 20);
        for (signal, want) in [
            (OpusSignal::Music, ::opus::Signal::Music),
            (OpusSignal::Auto, ::opus::Signal::Auto),
            (OpusSignal::Voice, ::opus::Signal::Voice),
        ] {
            p.signal = signal;
            p.apply(&mut e).unwrap();
            assert_eq!(e.get_signal().unwrap(), want);
        }
    }
}
