//! `--events FILE`: one JSON object per line for every application event.

use super::members::{count, member, object, real, text, Line, Members, ValueMembers};
use serde::Serialize;
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
    /// The line being serialized (kept: its capacity is reused).
    line: Vec<u8>,
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
            line: Vec::new(),
        })
    }

    /// Writes one event.
    pub fn write(&mut self, ev: &Event) {
        if let Some(f) = &self.out {
            self.line.clear();
            if write_json(ev, &mut self.line).is_ok() {
                self.line.push(b'\n');
                f.push(&self.line);
            }
        }
    }
}

/// The wall clock as RFC 3339 with milliseconds (UTC).
pub fn now_rfc3339_ms() -> String {
    let mut out = Vec::with_capacity(24);
    super::clock::push_now_ms(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// A string serialized in ASCII lowercase (copied only when it has capitals).
struct Lower<'a>(&'a str);

impl Serialize for Lower<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.bytes().any(|b| b.is_ascii_uppercase()) {
            s.serialize_str(&self.0.to_ascii_lowercase())
        } else {
            s.serialize_str(self.0)
        }
    }
}

/// A codec's name in the `media` event: its `Debug` name in lowercase.
fn codec_name(c: wakeline::Codec) -> &'static str {
    match c {
        wakeline::Codec::Opus => "opus",
        wakeline::Codec::Pcmu => "pcmu",
        wakeline::Codec::Pcma => "pcma",
    }
}

/// Writes the JSON form of an event (one object, no newline) to `out`: `{"event":"<name>"`,
/// its fields, `"ts"` last. The events a call makes are written member by member
/// (`members.rs`); the rare ones go through a JSON value.
pub fn write_json(ev: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match ev {
        Event::Incoming {
            call_id,
            from,
            to,
            pushed,
            ..
        } => {
            let mut m = Line::start(out, "incoming");
            text!(m, "call_id", call_id);
            text!(m, "from", from);
            text!(m, "to", to);
            member!(m, "pushed", pushed);
            m.end()
        }
        Event::State { call_id, state, .. } => {
            let mut m = Line::start(out, "state");
            text!(m, "call_id", call_id);
            text!(m, "state", state_name(*state));
            m.end()
        }
        Event::Media { call_id, media, .. } => {
            let mut m = Line::start(out, "media");
            text!(m, "call_id", call_id);
            text!(m, "codec", codec_name(media.codec));
            member!(m, "payload_type", &media.payload_type);
            member!(m, "remote_rtp", &media.remote_rtp);
            member!(
                m,
                "srtp",
                &media.srtp.as_ref().map(|k| k.suite.report_name())
            );
            m.end()
        }
        Event::Ended {
            call_id,
            status,
            reason,
            outcome,
            ..
        } => {
            let mut m = Line::start(out, "ended");
            text!(m, "call_id", call_id);
            member!(m, "status", status);
            text!(m, "reason", reason);
            text!(m, "outcome", outcome_name(*outcome));
            m.end()
        }
        Event::FlowUp { flow, remote } => {
            let mut m = Line::start(out, "flow_up");
            count!(m, "flow", flow.0);
            member!(m, "remote", remote);
            m.end()
        }
        Event::FlowDown { flow, cause } => {
            let mut m = Line::start(out, "flow_down");
            count!(m, "flow", flow.0);
            text!(m, "cause", cause);
            m.end()
        }
        Event::MediaStats {
            call_id, snapshot, ..
        } => {
            let s = &snapshot.stats;
            let mut m = Line::start(out, "media_stats");
            text!(m, "call_id", call_id);
            real!(m, "elapsed_s", snapshot.elapsed.as_secs_f64());
            member!(m, "codec", &Lower(s.codec));
            count!(m, "rtp_sent", s.rtp_sent);
            count!(m, "rtp_received", s.rtp_received);
            member!(m, "lost", &s.lost);
            real!(m, "jitter_ms", s.jitter_ms);
            member!(m, "rtt_ms", &s.rtt_ms);
            real!(m, "concealed_ms", s.concealed_ms);
            real!(m, "jitter_buffer_ms", s.jitter_buffer_ms);
            object!(m, "rtp_guard", |m| guard_members(m, &s.rtp_guard));
            member!(m, "input_level", &snapshot.input_level);
            member!(m, "output_level", &snapshot.output_level);
            member!(m, "input_peak", &snapshot.input_peak);
            member!(m, "output_peak", &snapshot.output_peak);
            member!(m, "muted", &snapshot.muted);
            m.end()
        }
        Event::MediaReport {
            call_id, report, ..
        } => {
            let mut m = Line::start(out, "media_report");
            text!(m, "call_id", call_id);
            report_members(&mut m, report);
            m.end()
        }
        rare => {
            let (event, body) = rare_json(rare);
            let mut m = Line::start(out, event);
            m.splice(&body);
            m.end()
        }
    }
}

/// The name and fields of an event a call does not make (registration, DTMF, the rest).
fn rare_json(ev: &Event) -> (&'static str, Value) {
    match ev {
        Event::Registered {
            expires,
            public_addr,
        } => match public_addr {
            Some(a) => (
                "registered",
                json!({"expires": expires, "public_addr": a.to_string()}),
            ),
            None => ("registered", json!({"expires": expires})),
        },
        Event::RegistrationFailed {
            status,
            reason,
            retry_in,
        } => (
            "registration_failed",
            json!({
                "status": status, "reason": reason,
                "retry_in_s": retry_in.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0),
            }),
        ),
        Event::Unregistered => ("unregistered", json!({})),
        Event::Dtmf { call_id, digit, .. } => (
            "dtmf",
            json!({"call_id": call_id, "digit": digit.to_string()}),
        ),
        other => ("other", json!({"debug": format!("{other:?}")})),
    }
}

/// Two decimals, as the reports show them.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The quality numbers of a call's media, as the `--summary` file and the `media_report`
/// event show them: the RTP figures follow the first five only when media ran, and the tone
/// figures follow those only with `--expect-tone`.
fn report_members<M: Members>(m: &mut M, r: &MediaReport) {
    real!(m, "duration_s", round2(r.duration.as_secs_f64()));
    count!(m, "underruns", r.playback.underruns);
    count!(m, "overruns", r.capture.overruns);
    member!(m, "media_error", &r.error);
    member!(m, "srtp", &r.srtp.map(|s| s.report_name()));
    let Some(s) = &r.stats else {
        return;
    };
    member!(m, "codec", &Lower(s.codec));
    count!(m, "rtp_sent", s.rtp_sent);
    count!(m, "rtp_received", s.rtp_received);
    count!(m, "bytes_sent", s.bytes_sent);
    count!(m, "bytes_received", s.bytes_received);
    member!(m, "lost", &s.lost);
    real!(m, "fraction_lost", round2(s.fraction_lost));
    member!(m, "remote_lost", &s.remote_lost);
    real!(m, "jitter_ms", round2(s.jitter_ms));
    member!(m, "rtt_ms", &s.rtt_ms.map(round2));
    real!(m, "concealed_ms", round2(s.concealed_ms));
    count!(m, "concealed_frames", s.concealed_frames);
    count!(m, "fec_recovered", s.fec_recovered);
    count!(m, "capture_dropped", s.capture_dropped);
    count!(m, "capture_underruns", s.capture_underruns);
    real!(m, "jitter_buffer_ms", round2(s.jitter_buffer_ms));
    real!(m, "jitter_buffer_mean_ms", round2(s.jitter_buffer_mean_ms));
    count!(m, "late", s.late);
    count!(m, "duplicates", s.duplicates);
    count!(m, "dropped_foreign", s.dropped_foreign);
    object!(m, "rtp_guard", |m| guard_members(m, &s.rtp_guard));
    count!(m, "dtmf_sent", s.dtmf_sent);
    count!(m, "dtmf_received", s.dtmf_received);
    member!(m, "mos", &s.mos.map(round2));
    if let Some(t) = &s.tone {
        // Whether the far end's known tone was heard (only with `--expect-tone`).
        member!(m, "tone_hz", &t.hz);
        member!(m, "tone_fraction", &round2(t.fraction()));
        member!(m, "tone_heard", &t.heard(wakeline::media::codec::PCM_RATE));
    }
}

/// The quality numbers of a call's media as a JSON value (for the `--summary` file).
pub fn report_json(r: &MediaReport) -> Value {
    let mut m = ValueMembers::default();
    report_members(&mut m, r);
    Value::Object(m.0)
}

/// The RTP source guard's counters.
fn guard_members<M: Members>(m: &mut M, g: &wakeline::media::session::RtpGuard) {
    count!(m, "foreign", g.foreign);
    count!(m, "malformed", g.malformed);
    count!(m, "unknown_pt", g.unknown_pt);
    count!(m, "duplicates", g.duplicates);
    count!(m, "too_late", g.too_late);
    count!(m, "flood", g.flood);
    count!(m, "probation", g.probation);
    count!(m, "ssrc_changes", g.ssrc_changes);
    count!(m, "latches", g.latches);
    count!(m, "srtp_auth_failed", g.srtp_auth);
    count!(m, "srtp_replayed", g.srtp_replay);
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

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
