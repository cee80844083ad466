//! `--events FILE`: one JSON object per line for every application event.

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

/// Starts a line: `{"event":"<event>"` (the names are plain words: nothing to escape).
fn head(out: &mut Vec<u8>, event: &str) {
    out.extend_from_slice(b"{\"event\":\"");
    out.extend_from_slice(event.as_bytes());
    out.push(b'"');
}

/// Appends the members of `body` (which serializes as a JSON object) to the open object in
/// `out`, each after a comma.
fn members<T: Serialize + ?Sized>(out: &mut Vec<u8>, body: &T) -> serde_json::Result<()> {
    let open = out.len();
    serde_json::to_writer(&mut *out, body)?;
    if out.len() - open <= 2 {
        // `{}`: no members.
        out.truncate(open);
    } else {
        // `{"a":1}` becomes `,"a":1`.
        out[open] = b',';
        out.pop();
    }
    Ok(())
}

/// Ends a line: the time it was written, `,"ts":"..."}`.
fn tail(out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"ts\":\"");
    super::clock::push_now_ms(out);
    out.extend_from_slice(b"\"}");
}

/// Serializes one line to `out`: the event's name, the members of `body`, the time.
fn emit<T: Serialize + ?Sized>(out: &mut Vec<u8>, event: &str, body: &T) -> serde_json::Result<()> {
    head(out, event);
    members(out, body)?;
    tail(out);
    Ok(())
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

/// Writes the JSON form of an event (one object, no newline) to `out`. The events a call
/// makes are serialized straight from their fields; the rare ones go through a JSON value.
pub fn write_json(ev: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match ev {
        Event::Incoming {
            call_id,
            from,
            to,
            pushed,
            ..
        } => {
            #[derive(Serialize)]
            struct Incoming<'a> {
                call_id: &'a str,
                from: &'a str,
                to: &'a str,
                pushed: bool,
            }
            let body = Incoming {
                call_id,
                from,
                to,
                pushed: *pushed,
            };
            emit(out, "incoming", &body)
        }
        Event::State { call_id, state, .. } => {
            #[derive(Serialize)]
            struct State<'a> {
                call_id: &'a str,
                state: &'static str,
            }
            let body = State {
                call_id,
                state: state_name(*state),
            };
            emit(out, "state", &body)
        }
        Event::Media { call_id, media, .. } => {
            #[derive(Serialize)]
            struct Media<'a> {
                call_id: &'a str,
                codec: &'static str,
                payload_type: u8,
                remote_rtp: std::net::SocketAddr,
                srtp: Option<&'static str>,
            }
            let body = Media {
                call_id,
                codec: codec_name(media.codec),
                payload_type: media.payload_type,
                remote_rtp: media.remote_rtp,
                srtp: media.srtp.as_ref().map(|k| k.suite.report_name()),
            };
            emit(out, "media", &body)
        }
        Event::Ended {
            call_id,
            status,
            reason,
            outcome,
            ..
        } => {
            #[derive(Serialize)]
            struct Ended<'a> {
                call_id: &'a str,
                status: Option<u16>,
                reason: &'a str,
                outcome: &'static str,
            }
            let body = Ended {
                call_id,
                status: *status,
                reason,
                outcome: outcome_name(*outcome),
            };
            emit(out, "ended", &body)
        }
        Event::FlowUp { flow, remote } => {
            #[derive(Serialize)]
            struct FlowUp {
                flow: u64,
                remote: std::net::SocketAddr,
            }
            let body = FlowUp {
                flow: flow.0,
                remote: *remote,
            };
            emit(out, "flow_up", &body)
        }
        Event::FlowDown { flow, cause } => {
            #[derive(Serialize)]
            struct FlowDown<'a> {
                flow: u64,
                cause: &'a str,
            }
            let body = FlowDown {
                flow: flow.0,
                cause,
            };
            emit(out, "flow_down", &body)
        }
        Event::MediaStats {
            call_id, snapshot, ..
        } => {
            #[derive(Serialize)]
            struct Stats<'a> {
                call_id: &'a str,
                elapsed_s: f64,
                codec: Lower<'a>,
                rtp_sent: u64,
                rtp_received: u64,
                lost: i64,
                jitter_ms: f64,
                rtt_ms: Option<f64>,
                concealed_ms: f64,
                jitter_buffer_ms: f64,
                rtp_guard: GuardJson,
                input_level: f32,
                output_level: f32,
                input_peak: f32,
                output_peak: f32,
                muted: bool,
            }
            let s = &snapshot.stats;
            let body = Stats {
                call_id,
                elapsed_s: snapshot.elapsed.as_secs_f64(),
                codec: Lower(s.codec),
                rtp_sent: s.rtp_sent,
                rtp_received: s.rtp_received,
                lost: s.lost,
                jitter_ms: s.jitter_ms,
                rtt_ms: s.rtt_ms,
                concealed_ms: s.concealed_ms,
                jitter_buffer_ms: s.jitter_buffer_ms,
                rtp_guard: GuardJson::from(&s.rtp_guard),
                input_level: snapshot.input_level,
                output_level: snapshot.output_level,
                input_peak: snapshot.input_peak,
                output_peak: snapshot.output_peak,
                muted: snapshot.muted,
            };
            emit(out, "media_stats", &body)
        }
        Event::MediaReport {
            call_id, report, ..
        } => {
            #[derive(Serialize)]
            struct CallId<'a> {
                call_id: &'a str,
            }
            head(out, "media_report");
            members(out, &CallId { call_id })?;
            members(out, &ReportJson::from(&**report))?;
            tail(out);
            Ok(())
        }
        rare => {
            let (event, body) = rare_json(rare);
            emit(out, event, &body)
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
/// figures follow those only with `--expect-tone` (see its [`Serialize`]).
struct ReportJson<'a> {
    duration_s: f64,
    underruns: u64,
    overruns: u64,
    media_error: Option<&'a str>,
    srtp: Option<&'static str>,
    stats: Option<StatsJson<'a>>,
}

/// The RTP statistics part of [`ReportJson`] (absent when media never ran).
struct StatsJson<'a> {
    codec: Lower<'a>,
    rtp_sent: u64,
    rtp_received: u64,
    bytes_sent: u64,
    bytes_received: u64,
    lost: i64,
    fraction_lost: f64,
    remote_lost: i64,
    jitter_ms: f64,
    rtt_ms: Option<f64>,
    concealed_ms: f64,
    concealed_frames: u64,
    fec_recovered: u64,
    capture_dropped: u64,
    capture_underruns: u64,
    jitter_buffer_ms: f64,
    jitter_buffer_mean_ms: f64,
    late: u64,
    duplicates: u64,
    dropped_foreign: u64,
    rtp_guard: GuardJson,
    dtmf_sent: u64,
    dtmf_received: u64,
    mos: Option<f64>,
    tone: Option<ToneJson>,
}

/// Whether the far end's known tone was heard (only with `--expect-tone`).
struct ToneJson {
    tone_hz: f32,
    tone_fraction: f64,
    tone_heard: bool,
}

/// One flat object: the figures of [`StatsJson`] and [`ToneJson`] are members of the report's
/// own object, not nested (written out here rather than with `#[serde(flatten)]`, which goes
/// through a map serializer at several times the cost).
impl Serialize for ReportJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let tone = self.stats.as_ref().and_then(|st| st.tone.as_ref());
        let len = 5 + self.stats.as_ref().map_or(0, |_| 24) + tone.map_or(0, |_| 3);
        let mut m = s.serialize_struct("ReportJson", len)?;
        m.serialize_field("duration_s", &self.duration_s)?;
        m.serialize_field("underruns", &self.underruns)?;
        m.serialize_field("overruns", &self.overruns)?;
        m.serialize_field("media_error", &self.media_error)?;
        m.serialize_field("srtp", &self.srtp)?;
        if let Some(st) = &self.stats {
            m.serialize_field("codec", &st.codec)?;
            m.serialize_field("rtp_sent", &st.rtp_sent)?;
            m.serialize_field("rtp_received", &st.rtp_received)?;
            m.serialize_field("bytes_sent", &st.bytes_sent)?;
            m.serialize_field("bytes_received", &st.bytes_received)?;
            m.serialize_field("lost", &st.lost)?;
            m.serialize_field("fraction_lost", &st.fraction_lost)?;
            m.serialize_field("remote_lost", &st.remote_lost)?;
            m.serialize_field("jitter_ms", &st.jitter_ms)?;
            m.serialize_field("rtt_ms", &st.rtt_ms)?;
            m.serialize_field("concealed_ms", &st.concealed_ms)?;
            m.serialize_field("concealed_frames", &st.concealed_frames)?;
            m.serialize_field("fec_recovered", &st.fec_recovered)?;
            m.serialize_field("capture_dropped", &st.capture_dropped)?;
            m.serialize_field("capture_underruns", &st.capture_underruns)?;
            m.serialize_field("jitter_buffer_ms", &st.jitter_buffer_ms)?;
            m.serialize_field("jitter_buffer_mean_ms", &st.jitter_buffer_mean_ms)?;
            m.serialize_field("late", &st.late)?;
            m.serialize_field("duplicates", &st.duplicates)?;
            m.serialize_field("dropped_foreign", &st.dropped_foreign)?;
            m.serialize_field("rtp_guard", &st.rtp_guard)?;
            m.serialize_field("dtmf_sent", &st.dtmf_sent)?;
            m.serialize_field("dtmf_received", &st.dtmf_received)?;
            m.serialize_field("mos", &st.mos)?;
        }
        if let Some(t) = tone {
            m.serialize_field("tone_hz", &t.tone_hz)?;
            m.serialize_field("tone_fraction", &t.tone_fraction)?;
            m.serialize_field("tone_heard", &t.tone_heard)?;
        }
        m.end()
    }
}

impl<'a> From<&'a MediaReport> for ReportJson<'a> {
    fn from(r: &'a MediaReport) -> Self {
        ReportJson {
            duration_s: round2(r.duration.as_secs_f64()),
            underruns: r.playback.underruns,
            overruns: r.capture.overruns,
            media_error: r.error.as_deref(),
            srtp: r.srtp.map(|s| s.report_name()),
            stats: r.stats.as_ref().map(|s| StatsJson {
                codec: Lower(s.codec),
                rtp_sent: s.rtp_sent,
                rtp_received: s.rtp_received,
                bytes_sent: s.bytes_sent,
                bytes_received: s.bytes_received,
                lost: s.lost,
                fraction_lost: round2(s.fraction_lost),
                remote_lost: s.remote_lost,
                jitter_ms: round2(s.jitter_ms),
                rtt_ms: s.rtt_ms.map(round2),
                concealed_ms: round2(s.concealed_ms),
                concealed_frames: s.concealed_frames,
                fec_recovered: s.fec_recovered,
                capture_dropped: s.capture_dropped,
                capture_underruns: s.capture_underruns,
                jitter_buffer_ms: round2(s.jitter_buffer_ms),
                jitter_buffer_mean_ms: round2(s.jitter_buffer_mean_ms),
                late: s.late,
                duplicates: s.duplicates,
                dropped_foreign: s.dropped_foreign,
                rtp_guard: GuardJson::from(&s.rtp_guard),
                dtmf_sent: s.dtmf_sent,
                dtmf_received: s.dtmf_received,
                mos: s.mos.map(round2),
                tone: s.tone.as_ref().map(|t| ToneJson {
                    tone_hz: t.hz,
                    tone_fraction: round2(t.fraction()),
                    tone_heard: t.heard(wakeline::media::codec::PCM_RATE),
                }),
            }),
        }
    }
}

/// The quality numbers of a call's media as a JSON value (for the `--summary` file).
pub fn report_json(r: &MediaReport) -> Value {
    serde_json::to_value(ReportJson::from(r)).unwrap_or(Value::Null)
}

/// The RTP source guard's counters, as JSON.
#[derive(Serialize)]
struct GuardJson {
    foreign: u64,
    malformed: u64,
    unknown_pt: u64,
    duplicates: u64,
    too_late: u64,
    flood: u64,
    probation: u64,
    ssrc_changes: u64,
    latches: u64,
    srtp_auth_failed: u64,
    srtp_replayed: u64,
}

impl From<&wakeline::media::session::RtpGuard> for GuardJson {
    fn from(g: &wakeline::media::session::RtpGuard) -> Self {
        GuardJson {
            foreign: g.foreign,
            malformed: g.malformed,
            unknown_pt: g.unknown_pt,
            duplicates: g.duplicates,
            too_late: g.too_late,
            flood: g.flood,
            probation: g.probation,
            ssrc_changes: g.ssrc_changes,
            latches: g.latches,
            srtp_auth_failed: g.srtp_auth,
            srtp_replayed: g.srtp_replay,
        }
    }
}

/// A call's final status for a log line: `200`, or `-` when there was none.
pub fn status_text(status: Option<u16>) -> String {
    status.map_or_else(|| "-".to_string(), |s| s.to_string())
}

/// A call's final status for a log line as [`status_text`] writes it, without the `String`.
pub struct StatusShown(pub Option<u16>);

impl std::fmt::Display for StatusShown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(s) => write!(f, "{s}"),
            None => f.write_str("-"),
        }
    }
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
