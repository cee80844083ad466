//! The binary as a tester meets it (issue 10, issue 13 §4): every failure ends with one line
//! that names the operation, the address and the cause; exit statuses a script can branch on;
//! input checked before anything is opened; every command bounded whatever the network does.

mod peers;

use peers::{free_port, read_events, scenario, sipp, test_dir, wait_listening, Proc};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Generous limit for a process to finish: the machine is shared and loaded.
const LIMIT: Duration = Duration::from_secs(30);

/// The binary with the default log filter, as a user runs it.
fn plain() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wakeline"));
    c.env_remove("RUST_LOG");
    c
}

/// `wakeline call sip:x@127.0.0.1:PORT` with no audio devices.
fn call_to(port: u16) -> Command {
    let mut c = plain();
    c.arg("call")
        .arg(format!("sip:x@127.0.0.1:{port};transport=tcp"))
        .args(["--mic", "silence", "--speaker", "null"]);
    c
}

fn stderr_of(p: &Proc) -> String {
    std::fs::read_to_string(&p.stderr).unwrap_or_default()
}

fn last_line(p: &Proc) -> String {
    stderr_of(p).lines().last().unwrap_or_default().to_string()
}

/// Runs `cmd` to its end within `limit`: (exit code, time taken, process for its output).
fn run(name: &str, cmd: Command, dir: &Path, limit: Duration) -> (Option<i32>, Duration, Proc) {
    let start = Instant::now();
    let mut p = Proc::spawn(name, cmd, dir);
    let status = p.wait(limit);
    (status.code(), start.elapsed(), p)
}

#[test]
fn a_refused_call_fails_at_once_with_the_cause_and_exit_3() {
    let dir = test_dir("refused");
    let port = free_port();
    let events = dir.path().join("ev.jsonl");
    let mut cmd = call_to(port);
    cmd.arg("--events").arg(&events);
    let (code, took, p) = run("call", cmd, dir.path(), LIMIT);
    assert_eq!(code, Some(3), "{}", p.output());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(
        last_line(&p),
        format!("call failed: connect 127.0.0.1:{port}: connection refused")
    );
    let ev = read_events(&events);
    let ended = ev.iter().find(|e| e["event"] == "ended").expect("ended");
    assert_eq!(
        ended["status"],
        serde_json::Value::Null,
        "no response: null"
    );
    assert_eq!(ended["outcome"], "failed");
    assert!(ended["reason"]
        .as_str()
        .is_some_and(|r| r.contains("connection refused")));
    let out = stderr_of(&p);
    assert!(
        !out.contains("\x1b["),
        "no ANSI codes when stderr is a file: {out}"
    );
}

#[test]
fn listen_on_a_port_in_use_names_bind_and_the_address() {
    let dir = test_dir("inuse");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let mut cmd = plain();
    cmd.args(["listen", "--bind", &addr.to_string()]).args([
        "--mic",
        "silence",
        "--speaker",
        "null",
    ]);
    let (code, _, p) = run("listen", cmd, dir.path(), LIMIT);
    assert_eq!(code, Some(3), "{}", p.output());
    assert_eq!(
        last_line(&p),
        format!("listen: bind {addr}: address already in use")
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2_before_anything_is_opened() {
    let dir = test_dir("input");
    let port = free_port();
    let uri = format!("sip:x@127.0.0.1:{port};transport=tcp");
    let cases: [(&[&str], &str); 5] = [
        (&["--dtmf", "12x"], "--dtmf 12x: 'x' is not a DTMF digit"),
        (
            &["--record", "/no/such/dir/x.wav"],
            "--record /no/such/dir/x.wav: cannot write there",
        ),
        (&["--codecs", "opus,g729"], "--codecs: unknown codec"),
        (&["--summary", "/no/such/dir/s.json"], "--summary /no/such"),
        (&["--registrar", "not a uri", "--user", "a"], "--registrar"),
    ];
    for (args, want) in cases {
        // No --mic/--speaker: a device probe would come first if the check came late.
        let mut cmd = plain();
        cmd.arg("call").arg(&uri).args(args);
        let (code, _, p) = run("call", cmd, dir.path(), LIMIT);
        let err = stderr_of(&p);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line only: {err}");
        assert!(err.starts_with(want), "{args:?}: {err}");
    }
    // A bad URI: exit 2 too.
    let mut cmd = plain();
    cmd.args(["call", "bob"]);
    let (code, _, p) = run("call", cmd, dir.path(), LIMIT);
    assert_eq!(code, Some(2), "{}", p.output());
}

#[test]
fn register_for_against_a_refusing_registrar_ends_in_time_with_each_attempt() {
    let dir = test_dir("regrefused");
    let port = free_port();
    let events = dir.path().join("ev.jsonl");
    let mut cmd = plain();
    cmd.args(["register", "--user", "alice", "--for", "3", "--registrar"])
        .arg(format!("sip:127.0.0.1:{port};transport=tcp"))
        .arg("--events")
        .arg(&events);
    let (code, took, p) = run("register", cmd, dir.path(), LIMIT);
    assert_eq!(code, Some(3), "{}", p.output());
    assert!(
        took < Duration::from_secs(6),
        "bounded by --for 3: {took:?}"
    );
    let last = last_line(&p);
    assert!(
        last.starts_with(&format!(
            "registration failed: connect 127.0.0.1:{port}: connection refused ("
        )),
        "{last}"
    );
    let failed: Vec<_> = read_events(&events)
        .into_iter()
        .filter(|e| e["event"] == "registration_failed")
        .collect();
    assert!(failed.len() >= 2, "each attempt is an event: {failed:?}");
    for f in &failed {
        assert_eq!(f["status"], 0);
        assert!(f["retry_in_s"].as_f64().is_some(), "{f}");
        assert!(f["reason"]
            .as_str()
            .is_some_and(|r| r.contains("connection refused")));
    }
    let warned = stderr_of(&p)
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("registration failed"))
        .count();
    assert!(warned >= 2, "a log line per attempt\n{}", p.output());
}

/// A registrar that accepts TCP and never answers, for `secs`: its port.
fn silent_registrar(secs: u64) -> u16 {
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in silent.incoming().take(4).flatten() {
            conns.push(c);
        }
        std::thread::sleep(Duration::from_secs(secs));
    });
    port
}

#[test]
fn register_for_against_a_silent_registrar_ends_in_time() {
    let dir = test_dir("regsilent");
    let port = silent_registrar(8);
    let mut cmd = plain();
    cmd.args(["register", "--user", "alice", "--for", "3", "--registrar"])
        .arg(format!("sip:127.0.0.1:{port};transport=tcp"));
    let (code, took, p) = run("register", cmd, dir.path(), LIMIT);
    assert_eq!(code, Some(3), "{}", p.output());
    assert!(
        took < Duration::from_secs(7),
        "bounded by --for 3: {took:?}"
    );
    assert_eq!(
        last_line(&p),
        "registration failed: no answer from the registrar within 3 s"
    );
}

/// `call` through a registrar that never answers ends when the REGISTER times out (64·T1).
#[test]
fn a_call_through_a_silent_registrar_ends_when_register_times_out() {
    let dir = test_dir("callsilent");
    let port = silent_registrar(40);
    let mut cmd = plain();
    cmd.args(["call", "sip:bob@127.0.0.1:9;transport=tcp"])
        .args(["--mic", "silence", "--speaker", "null", "--user", "alice"])
        .arg("--registrar")
        .arg(format!("sip:127.0.0.1:{port};transport=tcp"));
    let (code, took, p) = run("call", cmd, dir.path(), Duration::from_secs(60));
    assert_eq!(code, Some(3), "{}", p.output());
    assert!(took < Duration::from_secs(40), "took {took:?}");
    assert_eq!(
        last_line(&p),
        format!(
            "call: registration failed: REGISTER to sip:127.0.0.1:{port};transport=tcp: timeout"
        )
    );
}

#[test]
fn a_call_through_an_unreachable_registrar_ends_with_the_cause() {
    let dir = test_dir("unreach");
    // TEST-NET-1: only a connect target; it drops the SYN or has no route.
    let mut cmd = plain();
    cmd.args(["call", "sip:bob@192.0.2.1;transport=tcp"])
        .args(["--mic", "silence", "--speaker", "null"])
        .args([
            "--user",
            "alice",
            "--registrar",
            "sip:192.0.2.1:5060;transport=tcp",
        ]);
    let (code, took, p) = run("call", cmd, dir.path(), LIMIT);
    assert_eq!(code, Some(3), "{}", p.output());
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let last = last_line(&p);
    assert!(
        last.starts_with("call: registration failed: connect 192.0.2.1:5060: "),
        "{last}"
    );
}

#[test]
fn a_407_we_cannot_pass_is_auth_failed_and_exit_4() {
    let dir = test_dir("auth");
    let sipp_port = free_port();
    let mut cmd = sipp(&scenario("uas_407.xml"), sipp_port);
    cmd.args(["-m", "1"]);
    let mut uas = Proc::spawn("sipp", cmd, dir.path());
    wait_listening(sipp_port, LIMIT);
    let summary = dir.path().join("s.json");
    let mut cmd = plain();
    cmd.arg("call")
        .arg(format!("sip:service@127.0.0.1:{sipp_port};transport=tcp"))
        .args(["--mic", "silence", "--speaker", "null", "--summary"])
        .arg(&summary);
    let (code, _, p) = run("call", cmd, dir.path(), LIMIT);
    assert_eq!(code, Some(4), "{}\n{}", p.output(), uas.output());
    assert_eq!(
        last_line(&p),
        "call failed: 407 Proxy Authentication Required"
    );
    let s = read_events(&summary);
    assert_eq!(s[0]["outcome"], "auth_failed", "{s:?}");
    assert_eq!(s[0]["status"], 407);
    uas.wait(LIMIT);
}

/// A listener that rings for a long time, for the ring-timeout and interruption tests.
fn ringing_listener(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = plain();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--mic", "silence", "--speaker", "null"])
        .args(["--answer", "ring", "--answer-after", "20"]);
    let p = Proc::spawn("listener", cmd, dir);
    wait_listening(port, LIMIT);
    (p, port)
}

#[test]
fn ring_timeout_gives_up_with_cancel() {
    let dir = test_dir("ringto");
    let (_listener, port) = ringing_listener(dir.path());
    let summary = dir.path().join("s.json");
    let mut cmd = call_to(port);
    cmd.args(["--ring-timeout", "1"])
        .arg("--summary")
        .arg(&summary);
    let (code, took, p) = run("call", cmd, dir.path(), LIMIT);
    assert_eq!(code, Some(1), "{}", p.output());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(
        last_line(&p),
        "call failed: 487 no answer within 1 s (CANCEL sent)"
    );
    let s = read_events(&summary);
    assert_eq!(s[0]["outcome"], "cancelled", "{s:?}");
    assert_eq!(
        s[0]["peer"],
        format!("sip:x@127.0.0.1:{port};transport=tcp")
    );
    assert!(s[0]["call_id"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(s[0]["start"].as_str().is_some_and(|t| t.ends_with('Z')));
}

#[test]
fn ctrl_c_while_ringing_says_interrupted_and_exits_130() {
    let dir = test_dir("sigint");
    let (_listener, port) = ringing_listener(dir.path());
    let events = dir.path().join("ev.jsonl");
    let mut cmd = call_to(port);
    cmd.arg("--events").arg(&events);
    let mut p = Proc::spawn("call", cmd, dir.path());
    peers::wait_event(
        &events,
        |e| e["state"] == "ringing",
        LIMIT,
        &p,
        "never rang",
    );
    let pid = p.pid().expect("running").to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let status = p.wait(LIMIT);
    assert_eq!(status.code(), Some(130), "{}", p.output());
    assert_eq!(last_line(&p), "call interrupted");
    let ev = read_events(&events);
    let ended = ev.iter().find(|e| e["event"] == "ended").expect("ended");
    assert_eq!(ended["outcome"], "cancelled", "{ended}");
}

#[test]
fn events_dash_means_stdout() {
    let dir = test_dir("evstdout");
    let port = free_port();
    let mut cmd = call_to(port);
    cmd.args(["--events", "-"]);
    let (code, _, p) = run("call", cmd, dir.path(), LIMIT);
    assert_eq!(code, Some(3));
    let out = std::fs::read_to_string(&p.stdout).unwrap_or_default();
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(events.iter().any(|e| e["event"] == "ended"), "{out}");
    assert!(!dir.path().join("-").exists());
}

/// The media samples cover the whole call: the first within half a second of the start, the
/// last at its end (the report plots them all).
#[test]
fn media_stats_cover_the_whole_call() {
    let dir = test_dir("wholecall");
    let port = free_port();
    let mut cmd = plain();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args([
            "--mic",
            "tone:1000",
            "--speaker",
            "null",
            "--max-calls",
            "1",
        ]);
    let mut listener = Proc::spawn("listener", cmd, dir.path());
    wait_listening(port, LIMIT);
    let events = dir.path().join("ev.jsonl");
    let report = dir.path().join("r.svg");
    let mut cmd = plain();
    cmd.arg("call")
        .arg(format!("sip:x@127.0.0.1:{port};transport=tcp"))
        .args([
            "--mic",
            "tone:440",
            "--speaker",
            "null",
            "--duration",
            "2.2",
        ])
        .arg("--events")
        .arg(&events)
        .arg("--report")
        .arg(&report);
    let (code, _, p) = run("call", cmd, dir.path(), LIMIT);
    assert_eq!(code, Some(0), "{}", p.output());
    listener.wait(LIMIT);
    let ev = read_events(&events);
    let elapsed: Vec<f64> = ev
        .iter()
        .filter(|e| e["event"] == "media_stats")
        .filter_map(|e| e["elapsed_s"].as_f64())
        .collect();
    let media_report = ev
        .iter()
        .find(|e| e["event"] == "media_report")
        .expect("a media report");
    let report_s = media_report["duration_s"].as_f64().expect("duration_s");
    // The figures scripts/compare.sh and testers read from it.
    for key in [
        "concealed_frames",
        "capture_dropped",
        "capture_underruns",
        "rtp_received",
    ] {
        assert!(media_report[key].is_u64(), "{key} in {media_report}");
    }
    assert!(
        media_report["rtp_guard"]["foreign"].is_u64(),
        "{media_report}"
    );
    let named = media_report["call_id"].is_string() && media_report["ts"].is_string();
    assert!(named, "{media_report}");
    assert!(elapsed.first().is_some_and(|&t| t < 0.6), "{elapsed:?}");
    assert!(
        elapsed.last().is_some_and(|&t| t > report_s - 0.1),
        "{elapsed:?} vs {report_s}"
    );
    let svg = std::fs::read_to_string(&report).expect("the report");
    for row in ["codec", "packets", "jitter", "RTT", "concealment", "MOS"] {
        assert!(svg.contains(row), "summary row {row}");
    }
    // Both sides heard a tone: the level meter of the last sample is not silence.
    let last = ev
        .iter()
        .rfind(|e| e["event"] == "media_stats")
        .expect("media_stats");
    assert!(
        last["output_peak"].as_f64().is_some_and(|p| p > 0.05),
        "{last}"
    );
}

/// `wakeline listen` for one call (silence, no speaker) on a free port, writing its events to
/// `listener.jsonl` in `dir`: the process, its port and the events file.
fn one_call_listener(dir: &std::path::Path) -> (Proc, u16, std::path::PathBuf) {
    let port = free_port();
    let heard = dir.join("listener.jsonl");
    let mut cmd = plain();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--mic", "silence", "--speaker", "null", "--max-calls", "1"])
        .arg("--events")
        .arg(&heard);
    let listener = Proc::spawn("listener", cmd, dir);
    wait_listening(port, LIMIT);
    (listener, port, heard)
}

/// The digits of the `dtmf` events, in order.
fn digits_in(events: &[serde_json::Value]) -> String {
    events
        .iter()
        .filter(|e| e["event"] == "dtmf")
        .filter_map(|e| e["digit"].as_str())
        .collect()
}

/// `--dtmf` digits are on the wire before the BYE, even with a very short `--duration`.
#[test]
fn dtmf_digits_go_out_before_the_hangup() {
    let dir = test_dir("dtmfwait");
    let (mut listener, port, heard) = one_call_listener(dir.path());
    let mut cmd = call_to(port);
    cmd.args(["--dtmf", "1#9", "--duration", "0.1"]);
    let (code, _, p) = run("call", cmd, dir.path(), LIMIT);
    assert_eq!(code, Some(0), "{}", p.output());
    listener.wait(LIMIT);
    let ev = read_events(&heard);
    assert_eq!(digits_in(&ev), "1#9", "{}", listener.output());
}

/// DTMF as SIP INFO (application/dtmf-relay) from SIPp is a `dtmf` event like RFC 4733 digits.
#[test]
fn dtmf_in_sip_info_is_received() {
    let dir = test_dir("dtmfinfo");
    let (mut listener, port, heard) = one_call_listener(dir.path());
    let mut cmd = sipp(&scenario("uac_info_dtmf.xml"), free_port());
    cmd.args(["-m", "1"]).arg(format!("127.0.0.1:{port}"));
    let mut uac = Proc::spawn("sipp", cmd, dir.path());
    let status = uac.wait(LIMIT);
    assert!(status.success(), "{}\n{}", uac.output(), listener.output());
    listener.wait(LIMIT);
    let ev = read_events(&heard);
    assert_eq!(digits_in(&ev), "7", "{}", listener.output());
}

/// `--dtmf-mode info`: the digits go as SIP INFO and the listener hears them.
#[test]
fn dtmf_mode_info_sends_sip_info() {
    let dir = test_dir("dtmfmodeinfo");
    let (mut listener, port, heard) = one_call_listener(dir.path());
    let mut cmd = call_to(port);
    cmd.args(["--dtmf", "42", "--dtmf-mode", "info", "--duration", "0.1"]);
    let (code, _, p) = run("call", cmd, dir.path(), LIMIT);
    assert_eq!(code, Some(0), "{}", p.output());
    listener.wait(LIMIT);
    let ev = read_events(&heard);
    assert_eq!(digits_in(&ev), "42", "{}", listener.output());
    let report = ev
        .iter()
        .find(|e| e["event"] == "media_report")
        .expect("media report");
    assert_eq!(report["dtmf_received"], 0, "not as RTP events: {report}");
}
