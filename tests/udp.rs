//! SIP over UDP (issue 8 §2) with real peers on 127.0.0.1: SIPp `-t u1` calling
//! `wakeline listen`, `wakeline call ...;transport=udp` to a SIPp UAS, a UDP registration at
//! Kamailio with a SIPp call through it, an INVITE retransmission absorbed, garbage datagrams
//! shrugged off, two wakelines with tones both ways over UDP signaling, and the call set-up
//! time over UDP next to TCP.

mod peers;

use peers::audio::assert_tone;
use peers::kamailio::{Kamailio, PASSWORD};
use peers::rawsip;
use peers::{free_port, read_events, scenario, test_dir, wait_listening, wakeline, Proc};
use serde_json::Value;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// sipp over UDP (`-t u1`: one socket for every call), on `local_port`.
fn sipp_udp(scenario: &Path, local_port: u16) -> Command {
    peers::sipp_over("u1", scenario, local_port)
}

/// Waits for `p` to exit; it must exit 0 (a failure shows `other`'s output too).
fn exit_0(p: &mut Proc, limit: Duration, other: &Proc) {
    let status = p.wait(limit);
    assert!(
        status.success(),
        "{} failed: {status}\n{}\n{}",
        p.name,
        p.output(),
        other.output()
    );
}

/// `listen` flags: ring, answer after 0.3 s, exit after `calls` calls.
fn ringing(calls: &str) -> [&str; 6] {
    [
        "--answer",
        "ring",
        "--answer-after",
        "0.3",
        "--max-calls",
        calls,
    ]
}

/// `incoming` incoming calls, and one call that ended 200.
fn assert_one_answered(events: &Path, incoming: usize) {
    let events = read_events(events);
    assert_eq!(count(&events, "incoming"), incoming, "{events:#?}");
    let ended = ended(&events);
    assert_eq!(ended.len(), 1, "{events:#?}");
    assert_eq!(ended[0].1, 200, "{events:#?}");
}

/// Waits until some process holds UDP `port` on 127.0.0.1 (our own bind then fails).
fn wait_udp_bound(port: u16, limit: Duration) {
    let start = Instant::now();
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(start.elapsed() < limit, "nothing bound UDP port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Status of every `ended` event, per Call-ID.
fn ended(events: &[Value]) -> Vec<(String, i64)> {
    events
        .iter()
        .filter(|e| e["event"] == "ended")
        .map(|e| {
            (
                e["call_id"].as_str().unwrap_or_default().to_string(),
                e["status"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["event"] == kind).count()
}

/// `wakeline listen` on a fresh port with these extra arguments, `--events` in `dir`.
fn listen(dir: &Path, extra: &[&str]) -> (Proc, u16, PathBuf) {
    let port = free_port();
    let events = dir.join("listen.jsonl");
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(extra)
        .arg("--events")
        .arg(&events)
        .arg("--sip-trace");
    let ua = Proc::spawn("wakeline", cmd, dir);
    wait_listening(port, LIMIT);
    (ua, port, events)
}

fn stderr_of(p: &Proc) -> String {
    std::fs::read_to_string(&p.stderr).unwrap_or_default()
}

/// Garbage datagrams first (not SIP, truncated SIP, near 64 KiB of junk, a keep-alive); then
/// sipp places four calls over one UDP socket, the second CANCELled while it rings. Every
/// INVITE ends in exactly one `ended`, and wakeline exits 0.
#[test]
fn sipp_uac_calls_wakeline_listen_over_udp_and_garbage_does_not_hurt() {
    let dir = test_dir("udp-uac");
    let (mut ua, port, events) = listen(dir.path(), &ringing("4"));
    let junk = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let truncated = "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKt\r\nContent-Length: 500\r\n\r\nshort";
    for d in [
        b"\x16\x03\x01\x00\xa5 not sip".to_vec(),
        truncated.as_bytes().to_vec(),
        vec![b'x'; 60_000],
        b"\r\n\r\n".to_vec(),
    ] {
        junk.send_to(&d, ("127.0.0.1", port)).expect("send junk");
    }

    let mut cmd = sipp_udp(&scenario("uac_calls.xml"), free_port());
    cmd.args(["-m", "4", "-l", "1", "-r", "2"])
        .arg(format!("127.0.0.1:{port}"));
    let mut uac = Proc::spawn("sipp", cmd, dir.path());
    exit_0(&mut uac, LIMIT, &ua);
    exit_0(&mut ua, LIMIT, &uac);

    let events = read_events(&events);
    assert_eq!(count(&events, "incoming"), 4, "{events:#?}");
    let ended = ended(&events);
    let mut ids: Vec<&String> = ended.iter().map(|(id, _)| id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "one ended per call: {ended:?}");
    let mut statuses: Vec<i64> = ended.iter().map(|(_, s)| *s).collect();
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 200, 487]);
    // The junk got no answer.
    junk.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    assert!(junk.recv_from(&mut buf).is_err(), "junk was answered");
}

/// A raw UDP client sends its INVITE three times back to back (same branch) to a ringing
/// wakeline, and once more after the 200 (a late retransmission): one call, one `ended`.
#[test]
fn retransmitted_invite_is_absorbed() {
    let dir = test_dir("udp-retrans");
    let (mut ua, port, events) = listen(dir.path(), &ringing("1"));
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut udp = rawsip::Wire::udp(target);
    udp.call(target, 1, 3);
    let status = ua.wait(Duration::from_secs(20));
    assert!(status.success(), "wakeline listen failed\n{}", ua.output());

    let trace = stderr_of(&ua);
    let invites = trace
        .lines()
        .filter(|l| l.starts_with("INVITE sip:wl@"))
        .count();
    assert_eq!(invites, 4, "wakeline saw every copy\n{trace}");
    assert_one_answered(&events, 1);
}

/// `wakeline call sip:..;transport=udp` to a sipp UAS over UDP: Via and Contact say UDP, the
/// call connects and wakeline exits 0 after its BYE.
#[test]
fn wakeline_call_to_sipp_uas_over_udp() {
    let dir = test_dir("udp-uas");
    let sipp_port = free_port();
    let mut cmd = sipp_udp(&scenario("uas_answer.xml"), sipp_port);
    cmd.args(["-m", "1"]);
    let mut uas = Proc::spawn("sipp", cmd, dir.path());
    wait_udp_bound(sipp_port, LIMIT);

    let events = dir.path().join("events.jsonl");
    let mut cmd = wakeline();
    cmd.arg("call")
        .arg(format!("sip:service@127.0.0.1:{sipp_port};transport=udp"))
        .args(["--duration", "0.5", "--sip-trace", "--events"])
        .arg(&events)
        .arg("--pcap")
        .arg(dir.path().join("call.pcap"));
    let mut ua = Proc::spawn("wakeline", cmd, dir.path());
    exit_0(&mut ua, LIMIT, &uas);
    exit_0(&mut uas, LIMIT, &ua);
    let trace = stderr_of(&ua);
    assert!(trace.contains("Via: SIP/2.0/UDP 127.0.0.1:"), "{trace}");
    assert!(trace.contains(";transport=udp>"), "{trace}");
    // The capture has the datagrams both ways.
    let pcap = std::fs::read(dir.path().join("call.pcap")).expect("pcap");
    let has = |needle: &[u8]| pcap.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"INVITE sip:service@") && has(b"SIP/2.0 200 OK"));
    let events = read_events(&events);
    assert!(events
        .iter()
        .any(|e| e["event"] == "state" && e["state"] == "connected"));
    assert_eq!(ended(&events).len(), 1);
    assert_eq!(ended(&events)[0].1, 200);
}

/// `wakeline listen` with `[transport] default = "udp"` registers at Kamailio over UDP (the
/// registrar URI names no transport) and sends CRLFCRLF keep-alives every 0.5 s, which Kamailio
/// takes silently over UDP: the binding is not declared dead for want of a pong. sipp then
/// calls alice through Kamailio over UDP and wakeline answers.
#[test]
fn kamailio_udp_registration_and_a_sipp_call_through_it() {
    let dir = test_dir("udp-kam");
    let kam = Kamailio::start(dir.path(), free_port());
    let registrar = format!("sip:127.0.0.1:{}", kam.port);
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[transport]\ndefault = \"udp\"\nkeepalive_interval_s = 0.5\npong_timeout_s = 0.3\n",
    )
    .expect("config");
    let (mut ua, _port, events) = listen(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap_or_default(),
            "--registrar",
            &registrar,
            "--user",
            "alice",
            "--domain",
            "127.0.0.1",
            "--password",
            PASSWORD,
            "--answer",
            "auto",
            "--max-calls",
            "1",
        ],
    );
    let start = Instant::now();
    while count(&read_events(&events), "registered") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not registered\n{}",
            ua.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let trace = stderr_of(&ua);
    let register = trace
        .split("REGISTER sip:")
        .nth(1)
        .expect("a REGISTER in the trace");
    assert!(
        register.contains("Via: SIP/2.0/UDP 127.0.0.1:"),
        "{register}"
    );
    assert!(register.contains(";transport=udp"), "{register}");
    // Keep-alives go out; none is answered over UDP; the binding stays.
    std::thread::sleep(Duration::from_secs(2));
    let trace = stderr_of(&ua);
    let pings = trace.matches("send flow").count();
    assert!(!trace.contains("control flow is dead"), "{trace}");
    assert_eq!(count(&read_events(&events), "registered"), 1, "{trace}");
    assert_eq!(
        trace.matches("REGISTER sip:").count(),
        2,
        "challenge + credentials only"
    );
    assert!(
        pings >= 2 + 2,
        "keep-alives were sent: {pings} sends\n{trace}"
    );

    let mut cmd = sipp_udp(&scenario("udp_uac.xml"), free_port());
    cmd.args(["-m", "1", "-s", "alice"])
        .arg(format!("127.0.0.1:{}", kam.port));
    let mut uac = Proc::spawn("sipp", cmd, dir.path());
    exit_0(&mut uac, LIMIT, &ua);
    exit_0(&mut ua, LIMIT, &uac);
    assert_one_answered(&events, 1);
    drop(kam);
}

/// Two wakeline processes, SIP over UDP: the caller sends 440 Hz, the listener 1000 Hz, and
/// each hears the other.
#[test]
fn two_wakelines_over_udp_hear_each_other() {
    let dir = test_dir("udp-tones");
    let d = dir.path();
    let (mut listener, port, _events) = listen(
        d,
        &[
            "--mic",
            "tone:1000",
            "--speaker",
            "null",
            "--max-calls",
            "1",
            "--record",
            d.join("b.wav").to_str().unwrap_or_default(),
        ],
    );
    let mut cmd = wakeline();
    cmd.arg("call")
        .arg(format!("sip:tone@127.0.0.1:{port}"))
        .args(["--transport", "udp"])
        .args(["--mic", "tone:440", "--speaker", "null", "--duration", "3"])
        .arg("--record")
        .arg(d.join("a.wav"))
        .arg("--sip-trace");
    let mut caller = Proc::spawn("caller", cmd, d);
    let status = caller.wait(LIMIT);
    assert!(status.success(), "caller failed\n{}", caller.output());
    let status = listener.wait(Duration::from_secs(20));
    assert!(status.success(), "listener failed\n{}", listener.output());
    assert!(stderr_of(&caller).contains("Via: SIP/2.0/UDP"));
    let heard = assert_tone(&d.join("a.wav"), 1000.0, 440.0, 2.0);
    eprintln!("caller heard 1000 Hz: {heard:?}");
    let heard = assert_tone(&d.join("b.wav"), 440.0, 1000.0, 2.0);
    eprintln!("listener heard 440 Hz: {heard:?}");
}

/// Median of some durations, in microseconds.
fn median_us(mut v: Vec<Duration>) -> u128 {
    v.sort();
    v.get(v.len() / 2).map_or(0, Duration::as_micros)
}

/// Call set-up time (INVITE sent → 200 received) against `wakeline listen --answer auto` on
/// loopback, 20 calls over UDP and 20 over one TCP connection, same machine, same run. The
/// numbers are printed (run with `--nocapture`); the test checks every call connects.
#[test]
fn call_setup_time_udp_vs_tcp() {
    const CALLS: usize = 20;
    let dir = test_dir("udp-setup");
    let (mut ua, port, events) = listen(
        dir.path(),
        &["--answer", "auto", "--max-calls", &(2 * CALLS).to_string()],
    );
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut udp = rawsip::Wire::udp(target);
    let mut tcp = rawsip::Wire::tcp(target);
    let (mut u, mut t) = (Vec::new(), Vec::new());
    // Interleaved, so both see the same machine load.
    for n in 0..CALLS {
        u.push(udp.call(target, 2 * n, 1));
        std::thread::sleep(Duration::from_millis(50));
        t.push(tcp.call(target, 2 * n + 1, 1));
        // Calls one at a time: set-up time, not a load test.
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(tcp);
    let status = ua.wait(Duration::from_secs(20));
    assert!(status.success(), "wakeline listen failed\n{}", ua.output());
    let events = read_events(&events);
    assert_eq!(ended(&events).len(), 2 * CALLS);
    let (mu, mt) = (median_us(u.clone()), median_us(t.clone()));
    let max = |v: &[Duration]| v.iter().max().map_or(0, Duration::as_micros);
    eprintln!(
        "call set-up (INVITE sent -> 200 received), {CALLS} calls each, loopback: \
         UDP median {mu} us (max {} us), TCP median {mt} us (max {} us)",
        max(&u),
        max(&t)
    );
    assert!(mu > 0 && mt > 0);
}
