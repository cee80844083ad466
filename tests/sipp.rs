//! Interop with SIPp (Debian package `sip-tester`) over TCP on 127.0.0.1: the wakeline binary
//! against real sipp scenarios in `tests/sipp/`.

mod peers;

use peers::{free_port, read_events, scenario, sipp, test_dir, wait_listening, wakeline, Proc};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn ended_by_call(events: &[Value]) -> HashMap<String, Vec<i64>> {
    let mut ended: HashMap<String, Vec<i64>> = HashMap::new();
    for e in events.iter().filter(|e| e["event"] == "ended") {
        let id = e["call_id"]
            .as_str()
            .expect("ended has call_id")
            .to_string();
        ended
            .entry(id)
            .or_default()
            .push(e["status"].as_i64().expect("ended has status"));
    }
    ended
}

/// sipp places four calls on ONE TCP connection to `wakeline listen --answer ring`; the second
/// is CANCELled while it rings. Every INVITE ends in exactly one `ended` event.
#[test]
fn sipp_uac_calls_wakeline_listen_with_a_cancel() {
    let dir = test_dir("uac");
    let port = free_port();
    let events = dir.path().join("events.jsonl");
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args([
            "--answer",
            "ring",
            "--answer-after",
            "0.5",
            "--max-calls",
            "4",
        ])
        .arg("--events")
        .arg(&events)
        .arg("--sip-trace");
    let mut ua = Proc::spawn("wakeline", cmd, dir.path());
    wait_listening(port, LIMIT);

    let mut cmd = sipp(&scenario("uac_calls.xml"), free_port());
    cmd.args(["-m", "4", "-l", "1", "-r", "2"])
        .arg(format!("127.0.0.1:{port}"));
    let mut uac = Proc::spawn("sipp", cmd, dir.path());
    let status = uac.wait(LIMIT);
    assert!(
        status.success(),
        "sipp failed: {status}\n{}\n{}",
        uac.output(),
        ua.output()
    );

    let status = ua.wait(Duration::from_secs(20));
    assert!(status.success(), "wakeline listen failed\n{}", ua.output());

    let events = read_events(&events);
    let incoming: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "incoming")
        .map(|e| e["call_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(incoming.len(), 4, "four incoming calls: {events:#?}");
    let ended = ended_by_call(&events);
    for id in &incoming {
        assert_eq!(
            ended.get(*id).map(Vec::len),
            Some(1),
            "exactly one ended for {id}"
        );
    }
    let mut statuses: Vec<i64> = ended.values().flatten().copied().collect();
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 200, 487], "{events:#?}");
}

/// `wakeline call` against a sipp UAS that answers with PCMU: exits 0 after its own BYE.
#[test]
fn wakeline_call_to_sipp_uas() {
    let dir = test_dir("uas");
    let sipp_port = free_port();
    let mut cmd = sipp(&scenario("uas_answer.xml"), sipp_port);
    cmd.args(["-m", "1"]);
    let mut uas = Proc::spawn("sipp", cmd, dir.path());
    wait_listening(sipp_port, LIMIT);

    let events = dir.path().join("events.jsonl");
    let mut cmd = wakeline();
    cmd.arg("call")
        .arg(format!("sip:service@127.0.0.1:{sipp_port};transport=tcp"))
        .args(["--duration", "0.5", "--sip-trace", "--events"])
        .arg(&events);
    let mut ua = Proc::spawn("wakeline", cmd, dir.path());
    let status = ua.wait(LIMIT);
    assert!(
        status.success(),
        "wakeline call failed\n{}\n{}",
        ua.output(),
        uas.output()
    );
    let status = uas.wait(LIMIT);
    assert!(status.success(), "sipp uas failed\n{}", uas.output());

    let events = read_events(&events);
    let states: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "state")
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert!(states.contains(&"ringing"), "{states:?}");
    assert!(states.contains(&"connected"), "{states:?}");
    let media = events
        .iter()
        .find(|e| e["event"] == "media")
        .expect("a media event");
    assert_eq!(media["codec"], "pcmu", "sipp answered PCMU only");
    let ended = ended_by_call(&events);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended.values().next(), Some(&vec![200]));
}

/// `wakeline call` to a busy sipp: non-zero exit and the one-line reason.
#[test]
fn wakeline_call_to_busy_sipp_fails_with_reason() {
    let dir = test_dir("busy");
    let sipp_port = free_port();
    let mut cmd = sipp(&scenario("uas_busy.xml"), sipp_port);
    cmd.args(["-m", "1"]);
    let mut uas = Proc::spawn("sipp", cmd, dir.path());
    wait_listening(sipp_port, LIMIT);

    let mut cmd = wakeline();
    cmd.arg("call")
        .arg(format!("sip:service@127.0.0.1:{sipp_port};transport=tcp"));
    let mut ua = Proc::spawn("wakeline", cmd, dir.path());
    let status = ua.wait(LIMIT);
    assert_eq!(
        status.code(),
        Some(1),
        "a 486 fails the call with exit 1 (SIP failure)\n{}",
        ua.output()
    );
    let stderr = std::fs::read_to_string(&ua.stderr).unwrap_or_default();
    assert!(
        stderr.lines().any(|l| l == "call failed: 486 Busy Here"),
        "stderr: {stderr}"
    );
    let status = uas.wait(LIMIT);
    assert!(status.success(), "sipp uas failed\n{}", uas.output());
}

fn register_with_digest(algorithm: &str) {
    let dir = test_dir(&format!("reg-{algorithm}"));
    let (verify, jump, hexlen) = if algorithm == "MD5" {
        (
            r#"<verifyauth assign_to="authvalid" username="alice" password="s3cret" />"#,
            r#"<nop hide="true" test="authvalid" next="granted" />"#,
            "32",
        )
    } else {
        ("", r#"<nop hide="true" next="granted" />"#, "64")
    };
    let text = std::fs::read_to_string(scenario("registrar_digest.xml"))
        .expect("template")
        .replace("@ALGO@", algorithm)
        .replace("@HEXLEN@", hexlen)
        .replace("@VERIFY@", verify)
        .replace("@JUMP@", jump);
    let sf = dir.path().join("registrar.xml");
    std::fs::write(&sf, text).expect("write scenario");

    let port = free_port();
    let mut cmd = sipp(&sf, port);
    cmd.args(["-m", "1"]);
    let mut registrar = Proc::spawn("sipp", cmd, dir.path());
    wait_listening(port, LIMIT);

    let events = dir.path().join("events.jsonl");
    let mut cmd = wakeline();
    cmd.arg("register")
        .arg("--registrar")
        .arg(format!("sip:127.0.0.1:{port};transport=tcp"))
        .args([
            "--user",
            "alice",
            "--domain",
            "wakeline.test",
            "--for",
            "0.5",
        ])
        .args(["--sip-trace", "--events"])
        .arg(&events)
        .env("WAKELINE_PASSWORD", "s3cret")
        .env("WAKELINE_STATE_DIR", dir.path());
    let mut ua = Proc::spawn("wakeline", cmd, dir.path());
    let status = ua.wait(LIMIT);
    assert!(
        status.success(),
        "wakeline register failed\n{}\n{}",
        ua.output(),
        registrar.output()
    );
    let status = registrar.wait(LIMIT);
    assert!(
        status.success(),
        "sipp registrar failed\n{}\n{}",
        registrar.output(),
        ua.output()
    );

    let events = read_events(&events);
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(names.contains(&"registered"), "{names:?}");
    assert!(names.contains(&"unregistered"), "{names:?}");
    let instance =
        std::fs::read_to_string(dir.path().join("instance-id")).expect("instance-id persisted");
    assert!(instance.starts_with("urn:uuid:"), "{instance}");
}

/// REGISTER answered with a 401 MD5 challenge; sipp recomputes and checks our digest.
#[test]
fn register_with_md5_digest() {
    register_with_digest("MD5");
}

/// REGISTER answered with a 401 SHA-256 challenge (RFC 8760).
#[test]
fn register_with_sha256_digest() {
    register_with_digest("SHA-256");
}

/// OPTIONS → 200 with Allow; a request with a broken From and an INVITE with broken SDP each get
/// 400; the same TCP connection then still answers OPTIONS.
#[test]
fn options_and_malformed_requests_on_one_connection() {
    let dir = test_dir("options");
    let port = free_port();
    let events = dir.path().join("events.jsonl");
    let mut cmd = wakeline();
    cmd.args([
        "listen",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--sip-trace",
        "--events",
    ])
    .arg(&events);
    let mut ua = Proc::spawn("wakeline", cmd, dir.path());
    wait_listening(port, LIMIT);

    let mut cmd = sipp(&scenario("options_malformed.xml"), free_port());
    cmd.args(["-m", "1"]).arg(format!("127.0.0.1:{port}"));
    let mut uac = Proc::spawn("sipp", cmd, dir.path());
    let status = uac.wait(LIMIT);
    assert!(
        status.success(),
        "sipp failed\n{}\n{}",
        uac.output(),
        ua.output()
    );

    // Both bad INVITEs still produced exactly one `ended` each, with status 400.
    // SIGTERM ends `listen` cleanly with the documented status 143.
    let status = ua.terminate(Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(143),
        "wakeline listen did not exit cleanly\n{}",
        ua.output()
    );
    let events = read_events(&events);
    let statuses: Vec<i64> = ended_by_call(&events).into_values().flatten().collect();
    assert_eq!(statuses, vec![400, 400], "{events:#?}");
}
