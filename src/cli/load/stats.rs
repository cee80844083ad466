//! `wakeline load`'s numbers: one [`CallResult`] per call placed, and the [`Summary`] over all
//! of them (percentiles, failures by status, audio in each direction) with its JSON form.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// How we know the far end got our audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentBy {
    /// Its RTCP carried a report block on our stream (a source it received from).
    Rtcp,
    /// It echoes (`--echo`): our own tone came back.
    Echo,
    /// The answering `wakeline listen`'s `--summary` line for the call (`--peer-summary`).
    Peer,
}

impl SentBy {
    /// The name in the summary (`audio_sent_by`).
    pub fn name(self) -> &'static str {
        match self {
            SentBy::Rtcp => "rtcp",
            SentBy::Echo => "echo",
            SentBy::Peer => "peer_summary",
        }
    }
}

/// What became of one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallResult {
    /// Answered (2xx) and ended normally.
    pub answered: bool,
    /// Why it failed: the SIP status code (`"486"`) or the cause (`"timeout"`); `None` when
    /// answered.
    pub failure: Option<String>,
    /// INVITE → first 180/183, ms.
    pub ringing_ms: Option<f64>,
    /// INVITE → 200, ms.
    pub setup_ms: Option<f64>,
    /// Loss of the far end's packets, percent.
    pub loss_percent: Option<f64>,
    /// Interarrival jitter of the far end's stream, ms.
    pub jitter_ms: Option<f64>,
    /// Estimated MOS (`None`: no audio packet received).
    pub mos: Option<f64>,
    /// The far end's audio was there (tone heard, or RTP with a level above silence).
    pub audio_received: bool,
    /// Our audio reached the far end, and how we know (`None`: not shown).
    pub audio_sent: Option<SentBy>,
}

impl CallResult {
    /// Answered with audio both ways.
    pub fn ok(&self) -> bool {
        self.answered && self.audio_received && self.audio_sent.is_some()
    }
}

/// Nearest-rank percentile `p` (0–100] of sorted `v`.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The values of `v`, sorted (NaN-free input).
pub fn sorted(v: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// p50/p90/p99/max of a set of times.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    /// How many values.
    pub n: usize,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Percentiles {
    /// Over `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let s = sorted(values);
        Percentiles {
            n: s.len(),
            p50: percentile(&s, 50.0),
            p90: percentile(&s, 90.0),
            p99: percentile(&s, 99.0),
            max: s.last().copied(),
        }
    }

    fn json(&self) -> Value {
        json!({"p50": r2(self.p50), "p90": r2(self.p90), "p99": r2(self.p99), "max": r2(self.max)})
    }
}

/// min/mean/p50/max of a per-call quantity.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spread {
    /// How many calls had a value.
    pub n: usize,
    /// Smallest.
    pub min: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Spread {
    /// Over `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let s = sorted(values);
        Spread {
            n: s.len(),
            min: s.first().copied(),
            mean: (!s.is_empty()).then(|| s.iter().sum::<f64>() / s.len() as f64),
            p50: percentile(&s, 50.0),
            max: s.last().copied(),
        }
    }

    fn json(&self) -> Value {
        json!({"min": r2(self.min), "mean": r2(self.mean), "p50": r2(self.p50), "max": r2(self.max)})
    }
}

fn r2(x: Option<f64>) -> Option<f64> {
    x.map(|x| (x * 100.0).round() / 100.0)
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Calls placed.
    pub attempted: usize,
    /// Calls answered.
    pub answered: usize,
    /// Failed calls by status code or cause.
    pub failed: BTreeMap<String, usize>,
    /// INVITE → 180.
    pub ringing_ms: Percentiles,
    /// INVITE → 200.
    pub setup_ms: Percentiles,
    /// Per-call loss, percent.
    pub loss_percent: Spread,
    /// Per-call jitter, ms.
    pub jitter_ms: Spread,
    /// Per-call MOS.
    pub mos: Spread,
    /// Answered calls whose far-end audio was there.
    pub audio_received: usize,
    /// Answered calls whose audio reached the far end.
    pub audio_sent: usize,
    /// How `audio_sent` was shown, by kind.
    pub audio_sent_by: BTreeMap<&'static str, usize>,
    /// Answered calls with audio both ways.
    pub audio_both_ways: usize,
    /// The most calls up at once.
    pub max_up: usize,
    /// Wall time of the run, s.
    pub elapsed_s: f64,
}

impl Summary {
    /// Over every call's result.
    pub fn of(results: &[CallResult]) -> Self {
        let mut s = Summary {
            attempted: results.len(),
            ..Summary::default()
        };
        for r in results {
            if r.answered {
                s.answered += 1;
            }
            if let Some(f) = &r.failure {
                *s.failed.entry(f.clone()).or_default() += 1;
            }
            if r.answered && r.audio_received {
                s.audio_received += 1;
            }
            if let (true, Some(by)) = (r.answered, r.audio_sent) {
                s.audio_sent += 1;
                *s.audio_sent_by.entry(by.name()).or_default() += 1;
            }
            if r.ok() {
                s.audio_both_ways += 1;
            }
        }
        s.ringing_ms = Percentiles::of(results.iter().filter_map(|r| r.ringing_ms));
        s.setup_ms = Percentiles::of(results.iter().filter_map(|r| r.setup_ms));
        let answered = || results.iter().filter(|r| r.answered);
        s.loss_percent = Spread::of(answered().filter_map(|r| r.loss_percent));
        s.jitter_ms = Spread::of(answered().filter_map(|r| r.jitter_ms));
        s.mos = Spread::of(answered().filter_map(|r| r.mos));
        s
    }

    /// Every call answered with audio both ways.
    pub fn success(&self) -> bool {
        self.attempted > 0 && self.audio_both_ways == self.attempted
    }

    /// Why the run failed, in one line: how many calls and the causes, most frequent first
    /// (`None` when it did not).
    pub fn failure_line(&self) -> Option<String> {
        if self.success() {
            return None;
        }
        let bad = self.attempted - self.audio_both_ways;
        let mut why: Vec<(String, usize)> = self
            .failed
            .iter()
            .map(|(k, n)| (failure_name(k), *n))
            .collect();
        let no_received = self.answered - self.audio_received;
        let no_sent = self.answered - self.audio_sent;
        if no_received > 0 {
            why.push(("far-end audio missing".into(), no_received));
        }
        if no_sent > 0 {
            why.push(("our audio not shown to arrive".into(), no_sent));
        }
        why.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let causes: Vec<String> = why.iter().map(|(k, n)| format!("{n} × {k}")).collect();
        Some(format!(
            "load failed: {bad} of {} calls without answer and audio both ways: {}",
            self.attempted,
            if causes.is_empty() {
                "no calls placed".into()
            } else {
                causes.join(", ")
            }
        ))
    }

    /// The `--summary` object.
    pub fn json(&self) -> Value {
        let failed: Map<String, Value> = self
            .failed
            .iter()
            .map(|(k, n)| (k.clone(), json!(n)))
            .collect();
        json!({
            "attempted": self.attempted,
            "answered": self.answered,
            "failed": failed,
            "ringing_ms": self.ringing_ms.json(),
            "setup_ms": self.setup_ms.json(),
            "loss_percent": self.loss_percent.json(),
            "jitter_ms": self.jitter_ms.json(),
            "mos": self.mos.json(),
            "audio_sent": self.audio_sent,
            "audio_received": self.audio_received,
            "audio_both_ways": self.audio_both_ways,
            "audio_sent_by": self.audio_sent_by,
            "max_concurrent": self.max_up,
            "elapsed_s": (self.elapsed_s * 100.0).round() / 100.0,
        })
    }
}

/// A failure key as said in a sentence: `486` → `SIP 486`, causes as they are.
pub fn failure_name(key: &str) -> String {
    if key.parse::<u16>().is_ok() {
        format!("SIP {key}")
    } else {
        key.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_call(setup: f64, mos: f64) -> CallResult {
        CallResult {
            answered: true,
            setup_ms: Some(setup),
            ringing_ms: Some(setup / 2.0),
            mos: Some(mos),
            loss_percent: Some(0.0),
            jitter_ms: Some(1.0),
            audio_received: true,
            audio_sent: Some(SentBy::Rtcp),
            ..CallResult::default()
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v = sorted((1..=100).map(f64::from));
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 1.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        let p = Percentiles::of([3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((p.n, p.p50, p.max), (3, Some(2.0), Some(3.0)));
    }

    #[test]
    fn all_good_is_a_success() {
        let calls: Vec<CallResult> = (1..=10).map(|i| ok_call(f64::from(i), 4.2)).collect();
        let s = Summary::of(&calls);
        assert!(s.success());
        assert_eq!(s.failure_line(), None);
        let j = s.json();
        assert_eq!(j["attempted"], 10);
        assert_eq!(j["answered"], 10);
        assert_eq!(j["audio_both_ways"], 10);
        assert_eq!(j["setup_ms"]["p50"], 5.0);
        assert_eq!(j["setup_ms"]["max"], 10.0);
        assert_eq!(j["mos"]["min"], 4.2);
        assert_eq!(j["audio_sent_by"]["rtcp"], 10);
        assert_eq!(j["failed"], json!({}));
    }

    #[test]
    fn failures_are_counted_by_code_and_named_in_one_line() {
        let mut calls = vec![ok_call(2.0, 4.0)];
        for key in ["486", "486", "timeout"] {
            calls.push(CallResult {
                failure: Some(key.into()),
                ..CallResult::default()
            });
        }
        calls.push(CallResult {
            audio_received: false,
            ..ok_call(3.0, 1.0)
        });
        calls.push(CallResult {
            audio_sent: None,
            ..ok_call(3.0, 1.0)
        });
        let s = Summary::of(&calls);
        assert!(!s.success());
        assert_eq!(s.json()["failed"], json!({"486": 2, "timeout": 1}));
        assert_eq!((s.answered, s.audio_received, s.audio_sent), (3, 2, 2));
        assert_eq!(s.audio_both_ways, 1);
        assert_eq!(
            s.failure_line().unwrap(),
            "load failed: 5 of 6 calls without answer and audio both ways: 2 × SIP 486, \
             1 × far-end audio missing, 1 × our audio not shown to arrive, 1 × timeout"
        );
        assert!(!Summary::of(&[]).success());
    }
}
