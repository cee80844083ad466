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
    rfc3339_ms(time::OffsetDateTime::now_utc())
}

/// `at` as RFC 3339 with milliseconds (UTC). The text up to the seconds is formatted once per
/// second and kept (per thread): every event line carries a time stamp.
fn rfc3339_ms(at: time::OffsetDateTime) -> String {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let second = at.unix_timestamp();
    SECOND.with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.0 != second {
            kept.1 = at.format(&fmt).unwrap_or_default();
            kept.0 = second;
        }
        format!("{}.{:03}Z", kept.1, at.millisecond())
    })
}

/// One line of the events file: the event's name, its own fields, and the time it was written.
#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    event: &'a str,
    #[serde(flatten)]
    body: T,
    ts: String,
}

/// Serializes one [`Line`] to `out`.
fn emit<T: Serialize>(
    out: &mut Vec<u8>,
    event: &str,
    body: T,
    ts: String,
) -> serde_json::Result<()> {
    serde_json::to_writer(out, &Line { event, body, ts })
}

/// Writes the JSON form of an event (one object, no newline) to `out`. The events a call
/// makes are serialized straight from their fields; the rare ones go through a JSON value.
pub fn write_json(ev: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let ts = now_rfc3339_ms();
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
            emit(out, "incoming", body, ts)
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
            emit(out, "state", body, ts)
        }
        Event::Media { call_id, media, .. } => {
            #[derive(Serialize)]
            struct Media<'a> {
                call_id: &'a str,
                codec: String,
                payload_type: u8,
                remote_rtp: std::net::SocketAddr,
                srtp: Option<&'static str>,
            }
            let body = Media {
                call_id,
                codec: format!("{:?}", media.codec).to_lowercase(),
                payload_type: media.payload_type,
                remote_rtp: media.remote_rtp,
                srtp: media.srtp.as_ref().map(|k| k.suite.report_name()),
            };
            emit(out, "media", body, ts)
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
            emit(out, "ended", body, ts)
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
            emit(out, "flow_up", body, ts)
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
            emit(out, "flow_down", body, ts)
        }
        Event::MediaStats {
            call_id, snapshot, ..
        } => {
            #[derive(Serialize)]
            struct Stats<'a> {
                call_id: &'a str,
                elapsed_s: f64,
                codec: String,
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
                codec: s.codec.to_ascii_lowercase(),
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
            emit(out, "media_stats", body, ts)
        }
        Event::MediaReport {
            call_id, report, ..
        } => {
            #[derive(Serialize)]
            struct Report<'a> {
                call_id: &'a str,
                #[serde(flatten)]
                report: ReportJson,
            }
            let body = Report {
                call_id,
                report: ReportJson::from(&**report),
            };
            emit(out, "media_report", body, ts)
        }
        rare => {
            let (event, body) = rare_json(rare);
            emit(out, event, body, ts)
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
/// event show them.
#[derive(Serialize)]
struct ReportJson {
    duration_s: f64,
    underruns: u64,
    overruns: u64,
    media_error: Option<String>,
    srtp: Option<&'static str>,
    #[serde(flatten)]
    stats: Option<StatsJson>,
}

/// The RTP statistics part of [`ReportJson`] (absent when media never ran).
#[derive(Serialize)]
struct StatsJson {
    codec: String,
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
    #[serde(flatten)]
    tone: Option<ToneJson>,
}

/// Whether the far end's known tone was heard (only with `--expect-tone`).
#[derive(Serialize)]
struct ToneJson {
    tone_hz: f32,
    tone_fraction: f64,
    tone_heard: bool,
}

impl From<&MediaReport> for ReportJson {
    fn from(r: &MediaReport) -> Self {
        ReportJson {
            duration_s: round2(r.duration.as_secs_f64()),
            underruns: r.playback.underruns,
            overruns: r.capture.overruns,
            media_error: r.error.clone(),
            srtp: r.srtp.map(|s| s.report_name()),
            stats: r.stats.as_ref().map(|s| StatsJson {
                codec: s.codec.to_ascii_lowercase(),
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
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(ev: &Event) -> Value {
        let mut out = Vec::new();
        write_json(ev, &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_frequent_event_carries_its_name_fields_and_time() {
        let v = line(&Event::FlowDown {
            flow: wakeline::FlowId(7),
            cause: "EOF".into(),
        });
        assert_eq!(v["event"], "flow_down");
        assert_eq!(v["flow"], 7);
        assert_eq!(v["cause"], "EOF");
        assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    }

    #[test]
    fn a_rare_event_goes_through_a_value_with_the_same_frame() {
        let v = line(&Event::Registered {
            expires: 600,
            public_addr: None,
        });
        assert_eq!(v["event"], "registered");
        assert_eq!(v["expires"], 600);
        assert!(v.get("public_addr").is_none());
        assert!(v["ts"].is_string());
    }

    #[test]
    fn a_report_without_media_has_no_rtp_figures() {
        let report = MediaReport {
            stats: None,
            capture: Default::default(),
            playback: Default::default(),
            duration: Duration::from_millis(1234),
            error: Some("media sockets: no".into()),
            srtp: None,
        };
        let v = report_json(&report);
        assert_eq!(v["duration_s"], 1.23);
        assert_eq!(v["media_error"], "media sockets: no");
        assert!(v["srtp"].is_null());
        assert!(
            v.get("rtp_sent").is_none() && v.get("tone_hz").is_none(),
            "{v}"
        );
    }

    #[test]
    fn time_stamps_keep_the_second_and_change_with_it() {
        let at = time::macros::datetime!(2026-12-07 03:04:05.678 UTC);
        assert_eq!(rfc3339_ms(at), "2026-12-07T03:04:05.678Z");
        let later = time::macros::datetime!(2026-12-07 03:04:05.9 UTC);
        assert_eq!(rfc3339_ms(later), "2026-12-07T03:04:05.900Z");
        let next = time::macros::datetime!(2026-12-07 03:04:06.001 UTC);
        assert_eq!(rfc3339_ms(next), "2026-12-07T03:04:06.001Z");
        let before = time::macros::datetime!(1999-12-31 23:59:59.999 UTC);
        assert_eq!(rfc3339_ms(before), "1999-12-31T23:59:59.999Z");
    }
}
