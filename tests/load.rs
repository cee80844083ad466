//! `wakeline load` against real answering peers started here: `wakeline listen`, a SIPp UAS
//! that echoes RTP, baresip auto-answering with a tone, and a listener that rejects. Each run
//! is judged by its exit status and its `--summary` JSON.

mod peers;

use peers::audio::write_tone;
use peers::baresip::{Baresip, BaresipConfig};
use peers::{free_port, scenario, sipp, test_dir, wait_listening, wakeline, Proc};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// One load at a time: parallel runs on a small machine starve each other's media and the MOS
/// they measure.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `wakeline load URI` with `extra` flags and `--summary`; returns the exit code, the
/// summary and the process (for its output).
fn load(dir: &Path, uri: &str, extra: &str) -> (Option<i32>, Value, Proc) {
    let summary = dir.join("load.json");
    let mut cmd = wakeline();
    cmd.env("RUST_LOG", "info");
    cmd.args(["load", uri])
        .args(extra.split_whitespace())
        .arg("--summary")
        .arg(&summary);
    let mut p = Proc::spawn("load", cmd, dir);
    let status = p.wait(LIMIT);
    let text = std::fs::read_to_string(&summary).unwrap_or_default();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("summary {text:?}: {e}\n{}", p.output()));
    (status.code(), v, p)
}

/// `wakeline listen` answering with a tone and looking for ours.
fn listener(dir: &Path, port: u16, answer: &str, summary: &Path) -> Proc {
    let mut cmd = wakeline();
    cmd.env("RUST_LOG", "info");
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--answer", answer, "--max-concurrent", "50"])
        .args([
            "--mic",
            "tone:660",
            "--speaker",
            "null",
            "--expect-tone",
            "440",
        ])
        .arg("--summary")
        .arg(summary);
    let p = Proc::spawn("listen", cmd, dir);
    wait_listening(port, LIMIT);
    p
}

/// A SIPp UAS answering PCMU (`uas_answer.xml`) with `extra` flags, and the URI to call it.
fn sipp_uas(dir: &Path, extra: &[&str]) -> (Proc, String) {
    let port = free_port();
    let mut cmd = sipp(&scenario("uas_answer.xml"), port);
    cmd.args(extra);
    let uas = Proc::spawn("sipp", cmd, dir);
    wait_listening(port, LIMIT);
    (uas, format!("sip:service@127.0.0.1:{port};transport=tcp"))
}

fn stderr(p: &Proc) -> String {
    std::fs::read_to_string(&p.stderr).unwrap_or_default()
}

/// 20 calls, 10 at once, 2 s each, to `wakeline listen`: all answered, audio both ways (ours
/// shown by the listener's summary, which heard our 440 Hz; theirs by its 660 Hz tone).
#[test]
fn load_against_wakeline_listen() {
    let _serial = serial();
    let dir = test_dir("load-listen");
    let d = dir.path();
    let port = free_port();
    let peer = d.join("peer.jsonl");
    let _listen = listener(d, port, "auto", &peer);
    let uri = format!("sip:load@127.0.0.1:{port};transport=tcp");
    let peer = peer.display().to_string();
    let svg = d.join("setup.svg").display().to_string();
    let (code, s, p) = load(
        d,
        &uri,
        &format!(
            "--rate 20 --calls 20 --concurrent 10 --duration 2 --mic tone:440 \
             --expect-tone 660 --peer-summary {peer} --report {svg}"
        ),
    );
    assert_eq!(code, Some(0), "{s}\n{}", p.output());
    assert_eq!(s["attempted"], 20, "{s}");
    assert_eq!(s["answered"], 20, "{s}");
    assert_eq!(s["audio_both_ways"], 20, "{s}");
    assert_eq!(s["audio_received"], 20, "{s}");
    assert_eq!(s["audio_sent"], 20, "{s}");
    assert_eq!(s["audio_sent_by"]["peer_summary"], 20, "{s}");
    assert_eq!(s["failed"], serde_json::json!({}), "{s}");
    assert!(s["max_concurrent"].as_u64().is_some_and(|n| n <= 10), "{s}");
    for k in ["p50", "p90", "p99", "max"] {
        assert!(s["setup_ms"][k].as_f64().is_some_and(|ms| ms > 0.0), "{s}");
    }
    assert!(s["mos"]["min"].as_f64().is_some_and(|m| m > 3.0), "{s}");
    let err = stderr(&p);
    assert!(
        err.lines()
            .any(|l| l.starts_with("load ") && l.contains("answered")),
        "a live line: {err}"
    );
    let out = std::fs::read_to_string(&p.stdout).unwrap_or_default();
    assert!(
        out.contains("audio both ways  20 of 20"),
        "the table: {out}"
    );
    let svg = std::fs::read_to_string(d.join("setup.svg")).unwrap_or_default();
    assert!(
        svg.contains("INVITE→200 (20 calls)"),
        "--report: {svg:.200}"
    );
}

/// A SIPp UAS that answers PCMU and echoes RTP (`-rtp_echo`): the 440 Hz we send comes back,
/// which shows both directions (`--echo`).
#[test]
fn load_against_sipp_rtp_echo() {
    let _serial = serial();
    let dir = test_dir("load-sipp");
    let d = dir.path();
    let (mut uas, uri) = sipp_uas(d, &["-m", "6", "-rtp_echo"]);
    let (code, s, p) = load(
        d,
        &uri,
        "--rate 10 --calls 6 --concurrent 3 --duration 2 --mic tone:440 --echo",
    );
    assert_eq!(code, Some(0), "{s}\n{}\n{}", p.output(), uas.output());
    assert_eq!(s["answered"], 6, "{s}");
    assert_eq!(s["audio_both_ways"], 6, "{s}");
    assert_eq!(s["audio_sent_by"]["echo"], 6, "{s}");
    assert!(
        s["ringing_ms"]["max"].as_f64().is_some(),
        "sipp sends 180: {s}"
    );
    assert!(s["mos"]["min"].as_f64().is_some_and(|m| m > 3.0), "{s}");
    let status = uas.wait(LIMIT);
    assert!(status.success(), "{}", uas.output());
}

/// SIPp answering without echo: the calls are answered but no audio comes back, so the run
/// fails and says why.
#[test]
fn load_without_far_end_audio_fails() {
    let _serial = serial();
    let dir = test_dir("load-mute");
    let d = dir.path();
    let (_uas, uri) = sipp_uas(d, &["-m", "2"]);
    let (code, s, p) = load(
        d,
        &uri,
        "--rate 10 --calls 2 --concurrent 2 --duration 1 --echo",
    );
    assert_eq!(code, Some(1), "{s}\n{}", p.output());
    assert_eq!(s["answered"], 2, "{s}");
    assert_eq!(
        (s["audio_received"].as_u64(), s["audio_sent"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    let err = stderr(&p);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("load failed: 2 of 2 calls") && last.contains("far-end audio missing"),
        "{err}"
    );
}

/// baresip auto-answers with a 660 Hz tone (its aufile source, 48 kHz stereo for Opus); our
/// audio is shown by its RTCP reports on our stream. baresip (libre) reports every 5 s with
/// randomisation (0.5–1.5 ×), so its first report may come 7.5 s in: calls of 10 s.
#[test]
fn load_against_baresip() {
    let _serial = serial();
    let dir = test_dir("load-baresip");
    let d = dir.path();
    let tone = d.join("tone660.wav");
    write_tone(&tone, 48_000, 2, 660.0, 30.0);
    let cfg = BaresipConfig {
        aor: "sip:bob@127.0.0.1".into(),
        password: "x".into(),
        outbound: None,
        codecs: None,
        source: tone,
        mediaenc: None,
    };
    let mut bob = Baresip::start(d, "bob", &cfg);
    let uri = format!("sip:bob@127.0.0.1:{};transport=tcp", bob.sip_port);
    let (code, s, p) = load(
        d,
        &uri,
        "--rate 10 --calls 3 --concurrent 3 --duration 10 --mic tone:440 --expect-tone 660",
    );
    assert_eq!(code, Some(0), "{s}\n{}\n{}", p.output(), bob.output());
    assert_eq!(s["answered"], 3, "{s}");
    assert_eq!(s["audio_both_ways"], 3, "{s}");
    assert_eq!(s["audio_sent_by"]["rtcp"], 3, "{s}");
    bob.quit();
}

/// The listener rejects every call with 486: exit 1, `failed` counts them by code, and one
/// stderr line says how many failed and why.
#[test]
fn load_against_a_rejecting_listener_fails_by_code() {
    let _serial = serial();
    let dir = test_dir("load-reject");
    let d = dir.path();
    let port = free_port();
    let _listen = listener(d, port, "reject:486", &d.join("peer.jsonl"));
    let uri = format!("sip:load@127.0.0.1:{port};transport=tcp");
    let (code, s, p) = load(d, &uri, "--rate 20 --calls 5 --concurrent 5 --duration 1");
    assert_eq!(code, Some(1), "{s}\n{}", p.output());
    assert_eq!(s["attempted"], 5, "{s}");
    assert_eq!(s["answered"], 0, "{s}");
    assert_eq!(s["failed"], serde_json::json!({"486": 5}), "{s}");
    assert_eq!(s["audio_both_ways"], 0, "{s}");
    let err = stderr(&p);
    assert_eq!(
        err.lines().last(),
        Some("load failed: 5 of 5 calls without answer and audio both ways: 5 × SIP 486"),
        "{err}"
    );
}

/// The far end plays 660 Hz but we expect 1000 Hz: its RTP arrives, yet the audio does not
/// count as received (the detector tells one tone from another), so the run fails.
#[test]
fn load_with_the_wrong_tone_fails() {
    let _serial = serial();
    let dir = test_dir("load-tone");
    let d = dir.path();
    let port = free_port();
    let peer = d.join("peer.jsonl");
    let _listen = listener(d, port, "auto", &peer);
    let uri = format!("sip:load@127.0.0.1:{port};transport=tcp");
    let peer = peer.display().to_string();
    let (code, s, p) = load(
        d,
        &uri,
        &format!(
            "--rate 10 --calls 2 --concurrent 2 --duration 1 --mic tone:440 \
             --expect-tone 1000 --peer-summary {peer}"
        ),
    );
    assert_eq!(code, Some(1), "{s}\n{}", p.output());
    assert_eq!(s["answered"], 2, "{s}");
    assert_eq!(s["audio_received"], 0, "{s}");
    assert_eq!(s["audio_sent"], 2, "the listener heard our 440 Hz: {s}");
    assert!(s["mos"]["min"].as_f64().is_some(), "RTP did arrive: {s}");
}
