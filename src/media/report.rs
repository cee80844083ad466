//! What one call's media did, handed to the application when the call ends.

use super::audio::rt::RtStatsSnapshot;
use super::pipeline::CallStats;
use std::time::Duration;

/// A call's media while it runs, sampled about once a second (live status, reports).
#[derive(Debug, Clone, PartialEq)]
pub struct MediaSnapshot {
    /// The counters so far.
    pub stats: CallStats,
    /// RMS level (0.0–1.0) of everything captured since the last snapshot (what we send,
    /// before mute).
    pub input_level: f32,
    /// RMS level (0.0–1.0) of everything played since the last snapshot (what the far end
    /// sent).
    pub output_level: f32,
    /// Peak level (0.0–1.0) captured since the last snapshot.
    pub input_peak: f32,
    /// Peak level (0.0–1.0) played since the last snapshot.
    pub output_peak: f32,
    /// Time since media started.
    pub elapsed: Duration,
    /// Whether our audio is muted.
    pub muted: bool,
}

/// A call's media report: network, jitter-buffer, codec and real-time audio counters.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaReport {
    /// RTP/RTCP, jitter buffer, codec and quality counters (`None` when media never ran).
    pub stats: Option<CallStats>,
    /// The capture side's real-time counters (overruns).
    pub capture: RtStatsSnapshot,
    /// The playback side's real-time counters (underruns).
    pub playback: RtStatsSnapshot,
    /// How long media ran.
    pub duration: Duration,
    /// Why media could not run, if it could not (e.g. no sound device).
    pub error: Option<String>,
}
