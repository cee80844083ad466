//! Tests of `events.rs`: the bytes of the lines a call writes, pinned.

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

/// The line of `ev` without its time stamp, which is checked by shape: the text up to
/// `,"ts":"` and the closing `"}`.
fn pinned(ev: &Event) -> String {
    let mut out = Vec::new();
    write_json(ev, &mut out).unwrap();
    let line = String::from_utf8(out).unwrap();
    let (body, ts) = line.rsplit_once(",\"ts\":\"").unwrap();
    let ts = ts.strip_suffix("\"}").unwrap();
    let shape: String = ts
        .chars()
        .map(|c| if c.is_ascii_digit() { '0' } else { c })
        .collect();
    assert_eq!(shape, "0000-00-00T00:00:00.000Z", "{line}");
    serde_json::from_str::<Value>(&line).unwrap();
    body.to_string()
}

const CALL_ID: &str = "1-31054@127.0.0.1";

fn call_stats() -> wakeline::media::pipeline::CallStats {
    wakeline::media::pipeline::CallStats {
        codec: "opus",
        rtp_sent: 7,
        rtp_received: 1,
        bytes_sent: 590,
        bytes_received: 111,
        lost: 0,
        fraction_lost: 0.0,
        jitter_ms: 0.0,
        rtt_ms: None,
        remote_reports: 0,
        concealed_frames: 0,
        concealed_ms: 0.0,
        fec_recovered: 0,
        jitter_buffer_ms: 3.4479279999999903,
        jitter_buffer_mean_ms: 3.4479279999999903,
        late: 0,
        duplicates: 0,
        dropped_foreign: 0,
        rtp_guard: Default::default(),
        remote_lost: 0,
        decode_errors: 0,
        encode_errors: 0,
        playback_overflow: 0,
        capture_underruns: 0,
        capture_dropped: 0,
        dtmf_sent: 0,
        dtmf_received: 0,
        mos: Some(4.3521),
        tone: None,
    }
}

const GUARD_ZERO: &str = r#""rtp_guard":{"foreign":0,"malformed":0,"unknown_pt":0,"duplicates":0,"too_late":0,"flood":0,"probation":0,"ssrc_changes":0,"latches":0,"srtp_auth_failed":0,"srtp_replayed":0}"#;

/// The six lines of a call, byte for byte as the lines a run wrote before (taken from
/// a real `--events` file, time stamps aside).
#[test]
fn the_lines_of_a_call_keep_their_bytes() {
    let call = wakeline::CallHandle::testing(1);
    let incoming = Event::Incoming {
        call,
        call_id: CALL_ID.into(),
        from: "\"sipp\" <sip:sipp@127.0.0.1:60983>;tag=31054SIPpTag001".into(),
        to: "<sip:load@127.0.0.1:58987>".into(),
        pushed: false,
    };
    assert_eq!(
        pinned(&incoming),
        r#"{"event":"incoming","call_id":"1-31054@127.0.0.1","from":"\"sipp\" <sip:sipp@127.0.0.1:60983>;tag=31054SIPpTag001","to":"<sip:load@127.0.0.1:58987>","pushed":false"#
    );
    let local: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let remote: std::net::SocketAddr = "127.0.0.1:57161".parse().unwrap();
    let media = Event::Media {
        call,
        call_id: CALL_ID.into(),
        media: wakeline::signaling::sdp::Negotiated {
            payload_type: 96,
            ..wakeline::signaling::sdp::Negotiated::sendrecv(wakeline::Codec::Opus, local, remote)
        },
    };
    assert_eq!(
        pinned(&media),
        r#"{"event":"media","call_id":"1-31054@127.0.0.1","codec":"opus","payload_type":96,"remote_rtp":"127.0.0.1:57161","srtp":null"#
    );
    let state = Event::State {
        call,
        call_id: CALL_ID.into(),
        state: CallState::Connected,
    };
    assert_eq!(
        pinned(&state),
        r#"{"event":"state","call_id":"1-31054@127.0.0.1","state":"connected""#
    );
    let stats = Event::MediaStats {
        call,
        call_id: CALL_ID.into(),
        snapshot: Box::new(wakeline::MediaSnapshot {
            stats: call_stats(),
            input_level: 0.35332686,
            output_level: 0.0,
            input_peak: 0.5,
            output_peak: 0.0,
            elapsed: Duration::from_nanos(241_817_895),
            muted: false,
        }),
    };
    assert_eq!(
        pinned(&stats),
        format!(
            r#"{{"event":"media_stats","call_id":"1-31054@127.0.0.1","elapsed_s":0.241817895,"codec":"opus","rtp_sent":7,"rtp_received":1,"lost":0,"jitter_ms":0.0,"rtt_ms":null,"concealed_ms":0.0,"jitter_buffer_ms":3.4479279999999903,{GUARD_ZERO},"input_level":0.35332686,"output_level":0.0,"input_peak":0.5,"output_peak":0.0,"muted":false"#
        )
    );
    let report = Event::MediaReport {
        call,
        call_id: CALL_ID.into(),
        report: Box::new(MediaReport {
            stats: Some(call_stats()),
            capture: Default::default(),
            playback: Default::default(),
            duration: Duration::from_millis(241),
            error: None,
            srtp: None,
        }),
    };
    assert_eq!(
        pinned(&report),
        format!(
            r#"{{"event":"media_report","call_id":"1-31054@127.0.0.1","duration_s":0.24,"underruns":0,"overruns":0,"media_error":null,"srtp":null,"codec":"opus","rtp_sent":7,"rtp_received":1,"bytes_sent":590,"bytes_received":111,"lost":0,"fraction_lost":0.0,"remote_lost":0,"jitter_ms":0.0,"rtt_ms":null,"concealed_ms":0.0,"concealed_frames":0,"fec_recovered":0,"capture_dropped":0,"capture_underruns":0,"jitter_buffer_ms":3.45,"jitter_buffer_mean_ms":3.45,"late":0,"duplicates":0,"dropped_foreign":0,{GUARD_ZERO},"dtmf_sent":0,"dtmf_received":0,"mos":4.35"#
        )
    );
    let ended = Event::Ended {
        call,
        call_id: CALL_ID.into(),
        status: Some(200),
        reason: "BYE".into(),
        outcome: CallOutcome::Answered,
    };
    assert_eq!(
        pinned(&ended),
        r#"{"event":"ended","call_id":"1-31054@127.0.0.1","status":200,"reason":"BYE","outcome":"answered""#
    );
}

/// The figures a call does not always have: SRTP, a media error, the tone, a capitalised
/// codec name, RTT, no final status, text that needs escaping.
#[test]
fn the_optional_figures_keep_their_bytes() {
    let call = wakeline::CallHandle::testing(2);
    let mut stats = call_stats();
    stats.codec = "PCMU";
    stats.rtt_ms = Some(12.345);
    stats.mos = None;
    stats.rtp_guard.foreign = 3;
    stats.tone = Some(wakeline::media::tone_detect::ToneStats {
        hz: 440.0,
        frames: 100,
        tone_frames: 50,
        samples: 16_000,
        tone_samples: 8_000,
    });
    let report = MediaReport {
        stats: Some(stats),
        capture: Default::default(),
        playback: Default::default(),
        duration: Duration::from_millis(5_005),
        error: Some("no \"device\"\n".into()),
        srtp: Some(wakeline::signaling::sdp::SrtpSuite::AesCm128HmacSha1_80),
    };
    let ev = Event::MediaReport {
        call,
        call_id: "a\\b".into(),
        report: Box::new(report.clone()),
    };
    let tone = report_json(&report);
    let (fraction, heard) = (&tone["tone_fraction"], &tone["tone_heard"]);
    assert_eq!(
        pinned(&ev),
        format!(
            r#"{{"event":"media_report","call_id":"a\\b","duration_s":5.01,"underruns":0,"overruns":0,"media_error":"no \"device\"\n","srtp":"sdes-aes-cm-128-hmac-sha1-80","codec":"pcmu","rtp_sent":7,"rtp_received":1,"bytes_sent":590,"bytes_received":111,"lost":0,"fraction_lost":0.0,"remote_lost":0,"jitter_ms":0.0,"rtt_ms":12.35,"concealed_ms":0.0,"concealed_frames":0,"fec_recovered":0,"capture_dropped":0,"capture_underruns":0,"jitter_buffer_ms":3.45,"jitter_buffer_mean_ms":3.45,"late":0,"duplicates":0,"dropped_foreign":0,"rtp_guard":{{"foreign":3,"malformed":0,"unknown_pt":0,"duplicates":0,"too_late":0,"flood":0,"probation":0,"ssrc_changes":0,"latches":0,"srtp_auth_failed":0,"srtp_replayed":0}},"dtmf_sent":0,"dtmf_received":0,"mos":null,"tone_hz":440.0,"tone_fraction":{fraction},"tone_heard":{heard}"#
        )
    );
    let ended = Event::Ended {
        call,
        call_id: "x".into(),
        status: None,
        reason: "timeout".into(),
        outcome: CallOutcome::Missed,
    };
    assert_eq!(
        pinned(&ended),
        r#"{"event":"ended","call_id":"x","status":null,"reason":"timeout","outcome":"missed""#
    );
    let pcma = Event::Media {
        call,
        call_id: "x".into(),
        media: wakeline::signaling::sdp::Negotiated::sendrecv(
            wakeline::Codec::Pcma,
            "[::1]:4000".parse().unwrap(),
            "[::1]:5000".parse().unwrap(),
        ),
    };
    assert_eq!(
        pinned(&pcma),
        r#"{"event":"media","call_id":"x","codec":"pcma","payload_type":8,"remote_rtp":"[::1]:5000","srtp":null"#
    );
    let flow = Event::FlowUp {
        flow: wakeline::FlowId(3),
        remote: "127.0.0.1:60983".parse().unwrap(),
    };
    assert_eq!(
        pinned(&flow),
        r#"{"event":"flow_up","flow":3,"remote":"127.0.0.1:60983""#
    );
    assert_eq!(pinned(&Event::Unregistered), r#"{"event":"unregistered""#);
}

#[test]
fn codec_names_are_their_debug_names_in_lowercase() {
    for c in [
        wakeline::Codec::Opus,
        wakeline::Codec::Pcmu,
        wakeline::Codec::Pcma,
    ] {
        assert_eq!(codec_name(c), format!("{c:?}").to_lowercase());
    }
}

#[test]
fn the_report_value_has_the_tone_only_when_measured() {
    let mut stats = call_stats();
    let mut report = MediaReport {
        stats: Some(stats),
        capture: Default::default(),
        playback: Default::default(),
        duration: Duration::from_millis(1000),
        error: None,
        srtp: None,
    };
    let v = report_json(&report);
    assert_eq!(v["codec"], "opus");
    assert_eq!(v["mos"], 4.35);
    assert!(v.get("tone_hz").is_none(), "{v}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(29));
    stats.tone = Some(wakeline::media::tone_detect::ToneStats {
        hz: 440.0,
        ..Default::default()
    });
    report.stats = Some(stats);
    let v = report_json(&report);
    assert_eq!(v["tone_hz"], 440.0);
    assert_eq!(v.as_object().map(|o| o.len()), Some(32));
}
