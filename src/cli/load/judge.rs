//! Was the audio there, each way, for one call? Decided from what this side saw (the tone
//! detector, levels, RTCP) and, when given, what the answering side wrote (`--peer-summary`).

use super::stats::SentBy;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use wakeline::media::tone_detect::ToneStats;

/// A played RMS level (0.0–1.0) above this (-60 dBFS) is not silence.
pub const MIN_LEVEL: f32 = 0.001;

/// The sample rate of the played audio the tone detector saw.
const PLAY_RATE: u32 = wakeline::media::codec::PCM_RATE;

/// What one call's media showed on our side.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// RTP packets we sent.
    pub rtp_sent: u64,
    /// RTP packets received from the far end.
    pub rtp_received: u64,
    /// The tone detector (with an expected tone).
    pub tone: Option<ToneStats>,
    /// The loudest played level of any one-second snapshot.
    pub max_level: f32,
    /// The far end sent an RTCP report block on our stream (it reports only sources it heard).
    pub rtcp_about_us: bool,
}

/// The rules of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    /// The far end echoes what it gets: our tone coming back shows it arrived.
    pub echo: bool,
}

/// The far end's audio was there: the expected tone was heard (when one is expected), or RTP
/// came with a level above silence.
pub fn received(seen: &Seen) -> bool {
    match &seen.tone {
        Some(t) => t.heard(PLAY_RATE),
        None => seen.rtp_received > 0 && seen.max_level >= MIN_LEVEL,
    }
}

/// Our audio reached the far end, and how that is known; `None` when nothing shows it or
/// the far end's summary says it did not hear it.
pub fn sent(seen: &Seen, rules: Rules, peer: Option<&PeerLine>) -> Option<SentBy> {
    if seen.rtp_sent == 0 {
        return None;
    }
    // The answering side's own word wins: it may have got RTP yet not heard our tone.
    if let Some(p) = peer {
        return p.heard().then_some(SentBy::Peer);
    }
    if rules.echo && received(seen) && seen.tone.is_some() {
        return Some(SentBy::Echo);
    }
    seen.rtcp_about_us.then_some(SentBy::Rtcp)
}

/// What the answering `wakeline listen` wrote about one call (its `--summary` line).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerLine {
    /// RTP packets it received.
    pub rtp_received: u64,
    /// Whether it heard its `--expect-tone` (`None`: it looked for none).
    pub tone_heard: Option<bool>,
}

impl PeerLine {
    /// It received our audio: our tone when it looked for one, else RTP.
    pub fn heard(&self) -> bool {
        self.rtp_received > 0 && self.tone_heard != Some(false)
    }
}

/// Reads a `listen --summary` file: Call-ID → its line. Unreadable lines are skipped.
pub fn read_peer_summary(path: &Path) -> HashMap<String, PeerLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let id = v["call_id"].as_str()?.to_string();
            let line = PeerLine {
                rtp_received: v["rtp_received"].as_u64().unwrap_or(0),
                tone_heard: v["tone_heard"].as_bool(),
            };
            Some((id, line))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(tone_frames: u64, frames: u64) -> ToneStats {
        ToneStats {
            hz: 440.0,
            frames,
            tone_frames,
            samples: frames * 960,
            tone_samples: tone_frames * 960,
        }
    }

    #[test]
    fn received_needs_the_tone_when_one_is_expected() {
        let loud = Seen {
            rtp_sent: 100,
            rtp_received: 100,
            max_level: 0.3,
            ..Seen::default()
        };
        assert!(received(&loud));
        assert!(!received(&Seen {
            max_level: 0.0,
            ..loud.clone()
        }));
        assert!(!received(&Seen {
            tone: Some(tone(10, 100)),
            ..loud.clone()
        }));
        assert!(received(&Seen {
            tone: Some(tone(90, 100)),
            ..loud
        }));
    }

    #[test]
    fn sent_needs_evidence_from_the_far_end() {
        let seen = Seen {
            rtp_sent: 100,
            rtp_received: 100,
            tone: Some(tone(95, 100)),
            max_level: 0.2,
            rtcp_about_us: false,
        };
        let rules = Rules::default();
        assert_eq!(
            sent(&seen, rules, None),
            None,
            "a tone of its own proves nothing"
        );
        assert_eq!(sent(&seen, Rules { echo: true }, None), Some(SentBy::Echo));
        let rtcp = Seen {
            rtcp_about_us: true,
            ..seen.clone()
        };
        assert_eq!(sent(&rtcp, rules, None), Some(SentBy::Rtcp));
        let heard = PeerLine {
            rtp_received: 50,
            tone_heard: Some(true),
        };
        assert_eq!(sent(&seen, rules, Some(&heard)), Some(SentBy::Peer));
        let deaf = PeerLine {
            tone_heard: Some(false),
            ..heard.clone()
        };
        assert_eq!(sent(&seen, rules, Some(&deaf)), None);
        assert_eq!(sent(&rtcp, rules, Some(&deaf)), None, "its word beats RTCP");
        let silent = Seen {
            rtp_sent: 0,
            ..rtcp
        };
        assert_eq!(sent(&silent, rules, Some(&heard)), None);
    }

    #[test]
    fn peer_summary_lines_by_call_id() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        std::fs::write(
            &p,
            "{\"call_id\":\"a\",\"rtp_received\":9,\"tone_heard\":true}\nnot json\n\
             {\"call_id\":\"b\",\"rtp_received\":0}\n",
        )
        .unwrap();
        let m = read_peer_summary(&p);
        assert_eq!(m.len(), 2);
        assert!(m["a"].heard());
        assert!(!m["b"].heard());
        assert!(read_peer_summary(&dir.path().join("none")).is_empty());
    }
}
