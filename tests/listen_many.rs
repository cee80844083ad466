//! `wakeline listen` as the answering end of a load: `--max-concurrent N` answers N calls at
//! once, each with its own media, recording and summary line; `--duration` hangs them up.

mod peers;

use peers::{free_port, read_events, scenario, sipp, test_dir, wait_listening, wakeline, Proc};
use std::collections::HashSet;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// 24 calls at once from SIPp over one TCP connection, each held 2 s: none fails, each has
/// its own summary line (call_id, start, peer) and its own recording.
#[test]
fn listen_answers_24_concurrent_calls_from_sipp() {
    let dir = test_dir("many");
    let d = dir.path();
    let port = free_port();
    let calls = 24;
    let mut cmd = wakeline();
    cmd.env("RUST_LOG", "info");
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--mic", "tone:440", "--speaker", "null"])
        .args(["--max-concurrent", "30", "--max-calls", &calls.to_string()])
        .arg("--record")
        .arg(d.join("x.wav"))
        .arg("--summary")
        .arg(d.join("s.jsonl"));
    let mut ua = Proc::spawn("wakeline", cmd, d);
    wait_listening(port, LIMIT);

    let mut cmd = sipp(&scenario("uac_load.xml"), free_port());
    cmd.args(["-m", &calls.to_string(), "-l", &calls.to_string()])
        .args(["-r", "100", "-d", "2000"])
        .arg(format!("127.0.0.1:{port}"));
    let mut uac = Proc::spawn("sipp", cmd, d);
    let status = uac.wait(LIMIT);
    assert!(
        status.success(),
        "sipp saw failed calls: {status}\n{}\n{}",
        uac.output(),
        ua.output()
    );
    let status = ua.wait(LIMIT);
    assert!(status.success(), "{}", ua.output());

    let lines = read_events(&d.join("s.jsonl"));
    assert_eq!(lines.len(), calls, "one summary line per call: {lines:#?}");
    let ids: HashSet<&str> = lines.iter().filter_map(|l| l["call_id"].as_str()).collect();
    assert_eq!(ids.len(), calls, "distinct call_ids");
    for l in &lines {
        assert_eq!(l["status"], 200, "{l}");
        assert_eq!(l["outcome"], "answered", "{l}");
        assert!(
            l["peer"].as_str().is_some_and(|p| p.contains("sipp@")),
            "{l}"
        );
        assert!(l["start"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
        assert!(
            l["rtp_sent"].as_u64().is_some_and(|n| n > 25),
            "media ran: {l}"
        );
    }
    let wavs = std::fs::read_dir(d)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("x-") && n.ends_with(".wav")
        })
        .count();
    assert_eq!(wavs, calls, "one recording per call");
    assert!(!d.join("x.wav").exists(), "no shared recording");
}

/// `listen --duration 1`: wakeline hangs up each answered call after a second.
#[test]
fn listen_duration_hangs_up_answered_calls() {
    let dir = test_dir("lduration");
    let d = dir.path();
    let port = free_port();
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--mic", "silence", "--speaker", "null"])
        .args([
            "--duration",
            "1",
            "--max-calls",
            "2",
            "--max-concurrent",
            "2",
        ])
        .arg("--summary")
        .arg(d.join("s.jsonl"));
    let mut ua = Proc::spawn("wakeline", cmd, d);
    wait_listening(port, LIMIT);
    let mut cmd = sipp(&scenario("uac_wait_bye.xml"), free_port());
    cmd.args(["-m", "2", "-l", "2", "-r", "10"])
        .arg(format!("127.0.0.1:{port}"));
    let mut uac = Proc::spawn("sipp", cmd, d);
    let status = uac.wait(LIMIT);
    assert!(
        status.success(),
        "sipp did not get wakeline's BYE: {status}\n{}\n{}",
        uac.output(),
        ua.output()
    );
    let status = ua.wait(LIMIT);
    assert!(status.success(), "{}", ua.output());
    let lines = read_events(&d.join("s.jsonl"));
    assert_eq!(lines.len(), 2);
    for l in &lines {
        let secs = l["duration_s"].as_f64().unwrap_or_default();
        assert!((0.8..3.0).contains(&secs), "hung up after ~1 s: {l}");
    }
}
