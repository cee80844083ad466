//! Call quality estimate: a simplified ITU-T G.107 E-model, mapped to a MOS.
//!
//! The full E-model has some twenty parameters; for a VoIP leg with default values for
//! everything that is not measured (no echo, standard send/receive loudness, quiet room) it
//! reduces to
//!
//! ```text
//! R = 93.2 − Id − Ie,eff
//! Id      = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3)        (d: one-way mouth-to-ear delay, ms)
//! Ie,eff  = Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl)    (Ppl: packet loss, %)
//! ```
//!
//! `Id` is the usual linear fit of G.107's delay impairment (Cole & Rosenbluth, 2001), which
//! is close to the full formula when echo is well controlled. Losses are taken as random
//! (`BurstR = 1`); `Ie` and `Bpl` per codec come from G.113 Appendix I for G.711 and are our
//! choice for Opus (see [`impairment`]). The MOS is G.107's conversion from `R` (Annex B).
//! This is narrowband E-model arithmetic; a wideband codec scores at most the G.711 ceiling.

use crate::signaling::sdp::Codec;

/// R of a perfect narrowband connection with G.107 default parameters.
pub const R0: f64 = 93.2;

/// Codec impairment parameters for the E-model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Equipment impairment factor at zero loss.
    pub ie: f64,
    /// Packet-loss robustness factor.
    pub bpl: f64,
    /// Algorithmic delay of the codec (look-ahead), ms.
    pub lookahead_ms: f64,
}

/// `Ie`, `Bpl` and look-ahead of a codec.
///
/// - G.711 (PCMU/PCMA): `Ie` = 0; `Bpl` = 25.1 with packet-loss concealment (our decoder has
///   it), 4.3 without (G.113 Appendix I). No look-ahead.
/// - Opus (20–32 kb/s, SILK/hybrid voice mode): `Ie` = 2, `Bpl` = 25. Opus is not in G.113.
///   Listening tests (e.g. the 2011 HA/Google Opus tests and later P.863 studies) place
///   wideband Opus at these rates at or above G.711, so in narrowband E-model terms its
///   coding impairment is about nil; we take a conservative 2 since the pipeline's default
///   bitrate may be capped lower by the peer. Its built-in PLC is at least as good as G.711
///   Appendix I PLC, hence `Bpl` close to G.711-with-PLC's 25.1; in-band FEC is accounted for
///   by not counting FEC-recovered frames as lost rather than by a higher `Bpl`. Look-ahead
///   6.5 ms (312 samples at 48 kHz in VoIP mode).
pub fn impairment(codec: Codec, plc: bool) -> Impairment {
    match codec {
        Codec::Pcmu | Codec::Pcma => Impairment {
            ie: 0.0,
            bpl: if plc { 25.1 } else { 4.3 },
            lookahead_ms: 0.0,
        },
        Codec::Opus => Impairment {
            ie: 2.0,
            bpl: if plc { 25.0 } else { 10.0 },
            lookahead_ms: 6.5,
        },
    }
}

/// Delay impairment `Id` for a one-way delay of `delay_ms` (negative counts as 0).
pub fn delay_impairment(delay_ms: f64) -> f64 {
    let d = delay_ms.max(0.0);
    0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 }
}

/// Effective equipment impairment `Ie,eff` at `loss_percent` random packet loss (clamped to
/// 0–100).
pub fn effective_impairment(imp: Impairment, loss_percent: f64) -> f64 {
    let ppl = loss_percent.clamp(0.0, 100.0);
    imp.ie + (95.0 - imp.ie) * ppl / (ppl + imp.bpl)
}

/// The transmission rating factor `R`.
pub fn r_factor(imp: Impairment, loss_percent: f64, delay_ms: f64) -> f64 {
    R0 - delay_impairment(delay_ms) - effective_impairment(imp, loss_percent)
}

/// MOS (conversational quality, 1.0–4.5) from `R` (G.107 Annex B).
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6
    }
}

/// Estimated MOS of a call with `codec`, `loss_percent` packet loss after recovery and a
/// one-way mouth-to-ear delay of `delay_ms` (which should already include the codec's
/// look-ahead, see [`Impairment::lookahead_ms`]). Assumes the decoder conceals losses.
pub fn mos(codec: Codec, loss_percent: f64, delay_ms: f64) -> f64 {
    mos_from_r(r_factor(impairment(codec, true), loss_percent, delay_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_without_impairments_is_about_4_4() {
        let m = mos(Codec::Pcmu, 0.0, 0.0);
        assert!((m - 4.41).abs() < 0.01, "{m}");
        // A typical LAN call: 60 ms one way, no loss.
        let m = mos(Codec::Pcma, 0.0, 60.0);
        assert!(m > 4.3 && m < 4.41, "{m}");
    }

    #[test]
    fn mos_decreases_with_loss() {
        for codec in [Codec::Pcmu, Codec::Opus] {
            let mut prev = f64::INFINITY;
            for step in 0..=40 {
                let m = mos(codec, f64::from(step) * 0.5, 80.0);
                assert!(m < prev, "{codec:?} at {step}: {m} !< {prev}");
                prev = m;
            }
        }
        // Without PLC, G.711 degrades much faster.
        let with = mos_from_r(r_factor(impairment(Codec::Pcmu, true), 5.0, 50.0));
        let without = mos_from_r(r_factor(impairment(Codec::Pcmu, false), 5.0, 50.0));
        assert!(without < with - 0.8, "{without} vs {with}");
    }

    #[test]
    fn mos_decreases_with_delay_and_faster_past_177_ms() {
        let mut prev = f64::INFINITY;
        for step in 0..=60 {
            let m = mos(Codec::Opus, 1.0, f64::from(step) * 10.0);
            assert!(m < prev, "{step}: {m} !< {prev}");
            prev = m;
        }
        let slope_before = mos(Codec::Pcmu, 0.0, 100.0) - mos(Codec::Pcmu, 0.0, 150.0);
        let slope_after = mos(Codec::Pcmu, 0.0, 250.0) - mos(Codec::Pcmu, 0.0, 300.0);
        assert!(slope_after > 2.0 * slope_before);
    }

    #[test]
    fn mos_is_bounded() {
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
        let worst = mos(Codec::Pcmu, 100.0, 2000.0);
        assert!((1.0..1.1).contains(&worst), "{worst}");
        assert!(mos(Codec::Opus, 0.0, 0.0) <= mos(Codec::Pcmu, 0.0, 0.0));
    }
}
