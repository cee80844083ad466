//! `--events FILE`: one JSON object per line for every application event.

use super::members::{key, Line, Members, ValueMembers};
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
            m.text(key!("call_id"), call_id);
            m.text(key!("from"), from);
            m.text(key!("to"), to);
            m.member(key!("pushed"), pushed);
            m.end()
        }
        Event::State { call_id, state, .. } => {
            let mut m = Line::start(out, "state");
            m.text(key!("call_id"), call_id);
            m.text(key!("state"), state_name(*state));
            m.end()
        }
        Event::Media { call_id, media, .. } => {
            let mut m = Line::start(out, "media");
            m.text(key!("call_id"), call_id);
            m.text(key!("codec"), codec_name(media.codec));
            m.member(key!("payload_type"), &media.payload_type);
            m.member(key!("remote_rtp"), &media.remote_rtp);
            m.member(
                key!("srtp"),
                &media.srtp.as_ref().map(|k| k.suite.report_name()),
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
            m.text(key!("call_id"), call_id);
            m.member(key!("status"), status);
            m.text(key!("reason"), reason);
            m.text(key!("outcome"), outcome_name(*outcome));
            m.end()
        }
        Event::FlowUp { flow, remote } => {
            let mut m = Line::start(out, "flow_up");
            m.count(key!("flow"), flow.0);
            m.member(key!("remote"), remote);
            m.end()
        }
        Event::FlowDown { flow, cause } => {
            let mut m = Line::start(out, "flow_down");
            m.count(key!("flow"), flow.0);
            m.text(key!("cause"), cause);
            m.end()
        }
        Event::MediaStats {
            call_id, snapshot, ..
        } => {
            let s = &snapshot.stats;
            let mut m = Line::start(out, "media_stats");
            m.text(key!("call_id"), call_id);
            m.real(key!("elapsed_s"), snapshot.elapsed.as_secs_f64());
            m.member(key!("codec"), &Lower(s.codec));
            m.count(key!("rtp_sent"), s.rtp_sent);
            m.count(key!("rtp_received"), s.rtp_received);
            m.member(key!("lost"), &s.lost);
            m.real(key!("jitter_ms"), s.jitter_ms);
            m.member(key!("rtt_ms"), &s.rtt_ms);
            m.real(key!("concealed_ms"), s.concealed_ms);
            m.real(key!("jitter_buffer_ms"), s.jitter_buffer_ms);
            m.object(key!("rtp_guard"), |m| guard_members(m, &s.rtp_guard));
            m.member(key!("input_level"), &snapshot.input_level);
            m.member(key!("output_level"), &snapshot.output_level);
            m.member(key!("input_peak"), &snapshot.input_peak);
            m.member(key!("output_peak"), &snapshot.output_peak);
            m.member(key!("muted"), &snapshot.muted);
            m.end()
        }
        Event::MediaReport {
            call_id, report, ..
        } => {
            let mut m = Line::start(out, "media_report");
            m.text(key!("call_id"), call_id);
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
    m.real(key!("duration_s"), round2(r.duration.as_secs_f64()));
    m.count(key!("underruns"), r.playback.underruns);
    m.count(key!("overruns"), r.capture.overruns);
    m.member(key!("media_error"), &r.error);
    m.member(key!("srtp"), &r.srtp.map(|s| s.report_name()));
    let Some(s) = &r.stats else {
        return;
    };
    m.member(key!("codec"), &Lower(s.codec));
    m.count(key!("rtp_sent"), s.rtp_sent);
    m.count(key!("rtp_received"), s.rtp_received);
    m.count(key!("bytes_sent"), s.bytes_sent);
    m.count(key!("bytes_received"), s.bytes_received);
    m.member(key!("lost"), &s.lost);
    m.real(key!("fraction_lost"), round2(s.fraction_lost));
    m.member(key!("remote_lost"), &s.remote_lost);
    m.real(key!("jitter_ms"), round2(s.jitter_ms));
    m.member(key!("rtt_ms"), &s.rtt_ms.map(round2));
    m.real(key!("concealed_ms"), round2(s.concealed_ms));
    m.count(key!("concealed_frames"), s.concealed_frames);
    m.count(key!("fec_recovered"), s.fec_recovered);
    m.count(key!("capture_dropped"), s.capture_dropped);
    m.count(key!("capture_underruns"), s.capture_underruns);
    m.real(key!("jitter_buffer_ms"), round2(s.jitter_buffer_ms));
    m.real(
        key!("jitter_buffer_mean_ms"),
        round2(s.jitter_buffer_mean_ms),
    );
    m.count(key!("late"), s.late);
    m.count(key!("duplicates"), s.duplicates);
    m.count(key!("dropped_foreign"), s.dropped_foreign);
    m.object(key!("rtp_guard"), |m| guard_members(m, &s.rtp_guard));
    m.count(key!("dtmf_sent"), s.dtmf_sent);
    m.count(key!("dtmf_received"), s.dtmf_received);
    m.member(key!("mos"), &s.mos.map(round2));
    if let Some(t) = &s.tone {
        // Whether the far end's known tone was heard (only with `--expect-tone`).
        m.member(key!("tone_hz"), &t.hz);
        m.member(key!("tone_fraction"), &round2(t.fraction()));
        m.member(
            key!("tone_heard"),
            &t.heard(wakeline::media::codec::PCM_RATE),
        );
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
    m.count(key!("foreign"), g.foreign);
    m.count(key!("malformed"), g.malformed);
    m.count(key!("unknown_pt"), g.unknown_pt);
    m.count(key!("duplicates"), g.duplicates);
    m.count(key!("too_late"), g.too_late);
    m.count(key!("flood"), g.flood);
    m.count(key!("probation"), g.probation);
    m.count(key!("ssrc_changes"), g.ssrc_changes);
    m.count(key!("latches"), g.latches);
    m.count(key!("srtp_auth_failed"), g.srtp_auth);
    m.count(key!("srtp_replayed"), g.srtp_replay);
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
