//! `--events FILE`: one JSON object per line for every application event.

use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use wakeline::{CallOutcome, CallState, Event};

/// Appends events to a file, flushing each line (scripts tail it while we run).
pub struct EventLog {
    file: Option<File>,
}

impl EventLog {
    /// Opens (creating or appending) the file, or does nothing when `path` is `None`.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(OpenOptions::new().create(true).append(true).open(p)?),
            None => None,
        };
        Ok(EventLog { file })
    }

    /// Writes one event.
    pub fn write(&mut self, ev: &Event) {
        if let Some(f) = &mut self.file {
            let line = format!("{}\n", to_json(ev));
            if let Err(e) = f.write_all(line.as_bytes()) {
                tracing::warn!("--events: {e}");
            }
        }
    }
}

fn now_rfc3339_ms() -> String {
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
            call_id, from, to, ..
        } => json!({"event": "incoming", "call_id": call_id, "from": from, "to": to}),
        Event::State { call_id, state, .. } => {
            json!({"event": "state", "call_id": call_id, "state": state_name(*state)})
        }
        Event::Media { call_id, media, .. } => json!({
            "event": "media", "call_id": call_id, "codec": format!("{:?}", media.codec).to_lowercase(),
            "payload_type": media.payload_type, "remote_rtp": media.remote_rtp.to_string(),
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
        Event::Registered { expires } => json!({"event": "registered", "expires": expires}),
        Event::RegistrationFailed { status, reason } => {
            json!({"event": "registration_failed", "status": status, "reason": reason})
        }
        Event::Unregistered => json!({"event": "unregistered"}),
        Event::FlowUp { flow, remote } => {
            json!({"event": "flow_up", "flow": flow.0, "remote": remote.to_string()})
        }
        Event::FlowDown { flow } => json!({"event": "flow_down", "flow": flow.0}),
    };
    if let Some(obj) = v.as_object_mut() {
        obj.insert("ts".into(), Value::String(now_rfc3339_ms()));
    }
    v
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
        CallOutcome::Failed => "failed",
    }
}
