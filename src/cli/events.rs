//! `--events FILE`: one JSON object per line for every application event.

use serde_json::{json, Value};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use wakeline::media::MediaReport;
use wakeline::{CallOutcome, CallState, Event};

/// Appends events to a file (or stdout for `-`). Lines written on the runtime's thread are
/// written when it goes idle (`out.rs`): scripts that tail the file see each one as soon as
/// the work that made it is done.
pub struct EventLog {
    out: Option<super::out::BatchedFile>,
}

impl EventLog {
    /// Opens (creating or appending) the file, stdout for `-`, or does nothing when `path` is
    /// `None`.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let out: Option<Box<dyn Write + Send>> = match path {
            Some(p) if p == Path::new("-") => Some(Box::new(std::io::stdout())),
            Some(p) => Some(Box::new(
                OpenOptions::new().create(true).append(true).open(p)?,
            )),
            None => None,
        };
        Ok(EventLog {
            out: out.map(|o| super::out::batched(o, "--events")),
        })
    }

    /// Writes one event.
    pub fn write(&mut self, ev: &Event) {
        if let Some(f) = &self.out {
            let mut line = to_json(ev).to_string();
            line.push('\n');
            f.push(line.as_bytes());
        }
    }
}

/// The wall clock as RFC 3339 with milliseconds (UTC).
pub fn now_rfc3339_ms() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default()
}

/// The JSON form of an event.
pub fn to_json(ev: &Event) -> Value {
    let mut v = match ev {
        Event::Incoming {
            call_id,
            from,
            to,
            pushed,
            ..
        } => {
            json!({"event": "incoming", "call_id": call_id, "from": from, "to": to, "pushed": pushed})
        }
        Event::State { call_id, state, .. } => {
            json!({"event": "state", "call_id": call_id, "state": state_name(*state)})
        }
        Event::Media { call_id, media, .. } => json!({
            "event": "media", "call_id": call_id, "codec": format!("{:?}", media.codec).to_lowercase(),
            "payload_type": media.payload_type, "remote_rtp": media.remote_rtp.to_string(),
            "srtp": media.srtp.as_ref().map(|k| k.suite.report_name()),
        }),
        Event::Ended {
            call_id,
            status,
            reason,
            outcome,
            ..
        } => json!({
            "event": "ended", "call_id": call_id, "status": status, "reason": reason,
            "outcome": outcome_name(*outcome),
        }),
        Event::Registered {
            expires,
            public_addr,
        } => match public_addr {
            Some(a) => {
                json!({"event": "registered", "expires": expires, "public_addr": a.to_string()})
            }
            None => json!({"event": "registered", "expires": expires}),
        },
        Event::RegistrationFailed {
            status,
            reason,
            retry_in,
        } => json!({
            "event": "registration_failed", "status": status, "reason": reason,
            "retry_in_s": retry_in.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0),
        }),
        Event::Unregistered => json!({"event": "unregistered"}),
        Event::FlowUp { flow, remote } => {
            json!({"event": "flow_up", "flow": flow.0, "remote": remote.to_string()})
        }
        Event::FlowDown { flow, cause } => {
            json!({"event": "flow_down", "flow": flow.0, "cause": cause})
        }
        Event::Dtmf { call_id, digit, .. } => {
            json!({"event": "dtmf", "call_id": call_id, "digit": digit.to_string()})
        }
        Event::MediaStats {
            call_id, snapshot, ..
        } => {
            let s = &snapshot.stats;
            json!({
                "event": "media_stats", "call_id": call_id,
                "elapsed_s": snapshot.elapsed.as_secs_f64(),
                "codec": s.codec.to_ascii_lowercase(),
                "rtp_sent": s.rtp_sent, "rtp_received": s.rtp_received, "lost": s.lost,
                "jitter_ms": s.jitter_ms, "rtt_ms": s.rtt_ms, "concealed_ms": s.concealed_ms,
                "jitter_buffer_ms": s.jitter_buffer_ms, "rtp_guard": guard_json(&s.rtp_guard),
                "input_level": snapshot.input_level, "output_level": snapshot.output_level,
                "input_peak": snapshot.input_peak, "output_peak": snapshot.output_peak,
                "muted": snapshot.muted,
            })
        }
        Event::MediaReport {
            call_id, report, ..
        } => {
            let mut v = report_json(report);
            if let Some(o) = v.as_object_mut() {
                o.insert("event".into(), json!("media_report"));
                o.insert("call_id".into(), json!(call_id));
            }
            v
        }
        other => json!({"event": "other", "debug": format!("{other:?}")}),
    };
    if let Some(obj) = v.as_object_mut() {
        obj.insert("ts".into(), Value::String(now_rfc3339_ms()));
    }
    v
}

/// The quality numbers of a call's media, as the `--summary` file and the `media_report` event
/// show them.
pub fn report_json(r: &MediaReport) -> Value {
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let mut v = json!({
        "duration_s": round(r.duration.as_secs_f64()),
        "underruns": r.playback.underruns,
        "overruns": r.capture.overruns,
        "media_error": r.error,
        "srtp": r.srtp.map(|s| s.report_name()),
    });
    if let (Some(s), Some(o)) = (&r.stats, v.as_object_mut()) {
        let extra = json!({
            "codec": s.codec.to_ascii_lowercase(),
            "rtp_sent": s.rtp_sent,
            "rtp_received": s.rtp_received,
            "bytes_sent": s.bytes_sent,
            "bytes_received": s.bytes_received,
            "lost": s.lost,
            "fraction_lost": round(s.fraction_lost),
            "remote_lost": s.remote_lost,
            "jitter_ms": round(s.jitter_ms),
            "rtt_ms": s.rtt_ms.map(round),
            "concealed_ms": round(s.concealed_ms),
            "concealed_frames": s.concealed_frames,
            "fec_recovered": s.fec_recovered,
            "capture_dropped": s.capture_dropped,
            "capture_underruns": s.capture_underruns,
            "jitter_buffer_ms": round(s.jitter_buffer_ms),
            "jitter_buffer_mean_ms": round(s.jitter_buffer_mean_ms),
            "late": s.late,
            "duplicates": s.duplicates,
            "dropped_foreign": s.dropped_foreign,
            "rtp_guard": guard_json(&s.rtp_guard),
            "dtmf_sent": s.dtmf_sent,
            "dtmf_received": s.dtmf_received,
            "mos": s.mos.map(round),
        });
        if let Some(e) = extra.as_object() {
            o.extend(e.clone());
        }
        if let Some(t) = &s.tone {
            o.insert("tone_hz".into(), json!(t.hz));
            o.insert("tone_fraction".into(), json!(round(t.fraction())));
            o.insert(
                "tone_heard".into(),
                json!(t.heard(wakeline::media::codec::PCM_RATE)),
            );
        }
    }
    v
}

/// The RTP source guard's counters, as JSON.
fn guard_json(g: &wakeline::media::session::RtpGuard) -> Value {
    json!({
        "foreign": g.foreign,
        "malformed": g.malformed,
        "unknown_pt": g.unknown_pt,
        "duplicates": g.duplicates,
        "too_late": g.too_late,
        "flood": g.flood,
        "probation": g.probation,
        "ssrc_changes": g.ssrc_changes,
        "latches": g.latches,
        "srtp_auth_failed": g.srtp_auth,
        "srtp_replayed": g.srtp_replay,
    })
}

/// A call's final status for a log line: `200`, or `-` when there was none.
pub fn status_text(status: Option<u16>) -> String {
    status.map_or_else(|| "-".to_string(), |s| s.to_string())
}

/// Lowercase name of a call state.
pub fn state_name(s: CallState) -> &'static str {
    match s {
        CallState::Calling => "calling",
        CallState::Proceeding => "proceeding",
        CallState::Ringing => "ringing",
        CallState::Connected => "connected",
        CallState::Held => "held",
        CallState::Resumed => "resumed",
        CallState::Terminating => "terminating",
    }
}

/// Lowercase name of an outcome.
pub fn outcome_name(o: CallOutcome) -> &'static str {
    match o {
        CallOutcome::Answered => "answered",
        CallOutcome::Rejected => "rejected",
        CallOutcome::Busy => "busy",
        CallOutcome::Missed => "missed",
        CallOutcome::Cancelled => "cancelled",
        CallOutcome::AuthFailed => "auth_failed",
        _ => "failed",
    }
}
