//! The call's statistics and quality estimate.

use super::*;

impl MediaPipeline {
    /// Statistics so far, with a MOS estimate.
    pub fn stats(&self) -> CallStats {
        let s = accumulate(self.prior, self.session.stats());
        let js = self.jitter.stats();
        let c = &self.counters;
        let frame_ms = self.period.as_secs_f64() * 1000.0;
        let mean = if c.delay_ticks > 0 {
            c.delay_sum_ms / c.delay_ticks as f64
        } else {
            js.delay_ms
        };
        let late = c.late + js.late;
        // Loss after recovery: packets lost or too late, minus those FEC rebuilt.
        let expected = s.packets_received as f64 + s.lost.max(0) as f64;
        let unrecovered = (s.lost.max(0) as f64 + late as f64 - c.fec_recovered as f64).max(0.0);
        let loss_percent = if expected > 0.0 {
            100.0 * unrecovered / expected
        } else {
            0.0
        };
        let codec = self.cfg.negotiated.codec;
        let imp = quality::impairment(codec, true);
        let network = s.rtt_ms.map_or(0.0, |r| r / 2.0);
        let delay = mean + frame_ms + imp.lookahead_ms + network;
        CallStats {
            codec: codec.encoding_name(),
            rtp_sent: s.packets_sent,
            rtp_received: s.packets_received,
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            lost: s.lost,
            fraction_lost: s.fraction_lost,
            jitter_ms: s.jitter_ms,
            rtt_ms: s.rtt_ms,
            remote_reports: s.remote_reports,
            concealed_frames: c.concealed,
            concealed_ms: c.concealed as f64 * frame_ms,
            fec_recovered: c.fec_recovered,
            jitter_buffer_ms: js.delay_ms,
            jitter_buffer_mean_ms: mean,
            late,
            duplicates: c.duplicates + js.duplicates,
            dropped_foreign: s.dropped_foreign,
            rtp_guard: s.guard,
            remote_lost: s.remote_lost,
            decode_errors: c.decode_errors,
            encode_errors: c.encode_errors,
            playback_overflow: c.playback_overflow,
            capture_underruns: c.capture_underruns,
            capture_dropped: c.capture_dropped,
            dtmf_sent: c.dtmf_sent,
            dtmf_received: c.dtmf_received,
            mos: (c.audio_received > 0)
                .then(|| quality::mos_from_r(quality::r_factor(imp, loss_percent, delay))),
            tone: self.tone.map(|t| t.stats()),
        }
    }
}
