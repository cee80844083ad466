//! What one call's media did, handed to the application when the call ends.

use super::audio::rt::RtStatsSnapshot;
use super::pipeline::CallStats;
use std::time::Duration;

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
