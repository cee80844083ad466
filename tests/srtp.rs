//! SRTP with SDES (issue 9 §2) between two `wakeline` processes on 127.0.0.1.
//!
//! Both sides run `--srtp mandatory --srtp-over-plain-sip` (there is no TLS yet) over PCMU:
//! the caller sends 440 Hz, the listener 1000 Hz, each records what it hears. The caller's
//! `--pcap` must hold SRTP as it went on the wire: every PCMU packet 10 bytes longer than
//! plain RTP (the HMAC-SHA1-80 tag) and a payload that no longer repeats every 8 bytes as a
//! 1000 Hz tone sampled at 8 kHz does in G.711. A second call has forged, replayed and garbage
//! packets sent into the listener's RTP port mid-call (the replayed ones copied from the live
//! pcap): they are counted in `rtp_guard` and the tones still go through. A mandatory side
//! refuses a plain offer, and an `off` side refuses an RTP/SAVP offer, with 488; `optional`
//! uses SRTP with an optional peer and plain RTP with an `off` one. baresip (`srtp.so`,
//! `mediaenc=srtp-mand`) calls and is called with SRTP.

mod peers;

use peers::audio::{assert_tone, read_wav, tone_dominance, write_tone};
use peers::baresip::{Baresip, BaresipConfig};
use peers::{free_port, read_events, scenario, sipp, test_dir, wait_listening, wakeline, Proc};
use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const CALLER_HZ: f64 = 440.0;
const LISTENER_HZ: f64 = 1000.0;
const LIMIT: Duration = Duration::from_secs(30);
const SECURE: [&str; 3] = ["--srtp", "mandatory", "--srtp-over-plain-sip"];
/// PCMU, 20 ms: 12 header + 160 payload, plus the 10-byte tag.
const SRTP_PCMU_LEN: usize = 182;

/// The calls here measure real-time audio on a shared machine: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn listen(d: &Path, port: u16, extra: &[&str]) -> Proc {
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--mic", &format!("tone:{LISTENER_HZ}"), "--speaker", "null"])
        .args(["--max-calls", "1", "--record"])
        .arg(d.join("b.wav"))
        .arg("--summary")
        .arg(d.join("b.json"))
        .arg("--events")
        .arg(d.join("b.ev"))
        .args(extra);
    let p = Proc::spawn("listener", cmd, d);
    wait_listening(port, LIMIT);
    p
}

fn call(d: &Path, port: u16, secs: f64, extra: &[&str]) -> Proc {
    call_uri(
        d,
        &format!("sip:tone@127.0.0.1:{port};transport=tcp"),
        secs,
        extra,
    )
}

fn call_uri(d: &Path, uri: &str, secs: f64, extra: &[&str]) -> Proc {
    let mut cmd = wakeline();
    cmd.arg("call")
        .arg(uri)
        .args(["--mic", &format!("tone:{CALLER_HZ}"), "--speaker", "null"])
        .args(["--codecs", "pcmu", "--duration", &secs.to_string()])
        .arg("--record")
        .arg(d.join("a.wav"))
        .arg("--summary")
        .arg(d.join("a.json"))
        .arg("--events")
        .arg(d.join("a.ev"))
        .arg("--pcap")
        .arg(d.join("a.pcap"))
        .args(extra);
    Proc::spawn("caller", cmd, d)
}

/// Waits for both to exit 0 and returns (caller summary, listener summary).
fn finish(d: &Path, mut caller: Proc, mut listener: Proc) -> (Value, Value) {
    let st = caller.wait(LIMIT);
    assert!(
        st.success(),
        "caller: {st}\n{}\n{}",
        caller.output(),
        listener.output()
    );
    let st = listener.wait(LIMIT);
    assert!(st.success(), "listener: {st}\n{}", listener.output());
    let a = serde_json::from_str(&std::fs::read_to_string(d.join("a.json")).expect("a.json"))
        .expect("caller summary");
    let b = read_events(&d.join("b.json"));
    assert_eq!(b.len(), 1, "one listener summary: {b:#?}");
    (a, b.into_iter().next().expect("one"))
}

/// `hz` dominates at least 90% of the recording's 100 ms blocks after the first 300 ms.
fn hears(wav: &Path, hz: f64, other: f64) {
    let w = read_wav(wav);
    let r = tone_dominance(
        &w.samples,
        w.rate,
        hz,
        &[300.0, 700.0, 1500.0, 2500.0, other],
        100,
        300,
        10.0,
    );
    eprintln!("{}: {}", wav.display(), r.summary());
    assert!(
        r.blocks >= 5 && r.dominant_fraction() >= 0.9,
        "{}",
        r.summary()
    );
}

/// One UDP datagram of a raw-IPv4 pcap: (source port, destination port, payload).
type Datagram = (u16, u16, Vec<u8>);

/// The UDP datagrams of a `--pcap` file (LINKTYPE_RAW, IPv4 here); a torn last record (the
/// file is read while it is written) is ignored.
fn udp_datagrams(pcap: &[u8]) -> Vec<Datagram> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes([pcap[at + 8], pcap[at + 9], pcap[at + 10], pcap[at + 11]]);
        let (start, end) = (at + 16, at + 16 + len as usize);
        if end > pcap.len() {
            break;
        }
        let ip = &pcap[start..end];
        at = end;
        if ip.len() < 28 || ip[0] >> 4 != 4 || ip[9] != 17 {
            continue;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let udp = &ip[ihl..];
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        out.push((sport, dport, udp[8..].to_vec()));
    }
    out
}

/// PCMU RTP (version 2, payload type 0) among `datagrams`.
fn pcmu(datagrams: &[Datagram]) -> impl Iterator<Item = &Datagram> {
    datagrams
        .iter()
        .filter(|(_, _, p)| p.len() >= 12 && p[0] >> 6 == 2 && p[1] & 0x7f == 0)
}

/// The fraction of payload bytes equal to the byte 8 later (a 1000 Hz tone in 8 kHz G.711
/// repeats every 8 samples: plain RTP of it scored a median 0.86 here; ciphertext ~1/256).
fn period8(payload: &[u8]) -> f64 {
    let same = payload.windows(9).filter(|w| w[0] == w[8]).count();
    same as f64 / payload.len().saturating_sub(8).max(1) as f64
}

fn srtp_name(v: &Value) -> &str {
    v["srtp"].as_str().unwrap_or("null")
}

#[test]
fn mandatory_srtp_carries_tones_both_ways_encrypted_on_the_wire() {
    let _g = serial();
    let dir = test_dir("srtp-tones");
    let d = dir.path();
    let port = free_port();
    let listener = listen(d, port, &SECURE);
    let caller = call(d, port, 3.0, &SECURE);
    let (a, b) = finish(d, caller, listener);
    for (side, s) in [("caller", &a), ("listener", &b)] {
        assert_eq!(s["status"], 200, "{side}: {s:#}");
        assert_eq!(
            srtp_name(s),
            "sdes-aes-cm-128-hmac-sha1-80",
            "{side}: {s:#}"
        );
        assert!(
            s["rtp_received"].as_u64().unwrap_or(0) >= 100,
            "{side}: {s:#}"
        );
        assert_eq!(s["rtp_guard"]["srtp_auth_failed"], 0, "{side}: {s:#}");
    }
    let media = read_events(&d.join("a.ev"))
        .into_iter()
        .find(|e| e["event"] == "media")
        .expect("media event");
    assert_eq!(srtp_name(&media), "sdes-aes-cm-128-hmac-sha1-80");
    hears(&d.join("a.wav"), LISTENER_HZ, CALLER_HZ);
    hears(&d.join("b.wav"), CALLER_HZ, LISTENER_HZ);

    let pcap = std::fs::read(d.join("a.pcap")).expect("pcap");
    let dgrams = udp_datagrams(&pcap);
    let rtp: Vec<_> = pcmu(&dgrams).collect();
    assert!(rtp.len() >= 200, "both directions captured: {}", rtp.len());
    for (s, t, p) in &rtp {
        assert_eq!(
            p.len(),
            SRTP_PCMU_LEN,
            "{s}->{t}: SRTP length (tag present)"
        );
    }
    let heard: Vec<f64> = rtp.iter().map(|(_, _, p)| period8(&p[12..172])).collect();
    let worst = heard.iter().cloned().fold(0.0, f64::max);
    assert!(
        worst < 0.2,
        "a payload looks like plain G.711 of a tone: {worst}"
    );
    // SRTCP: RTCP in the capture is longer than its plain form by index + tag (14 bytes),
    // and its SDES CNAME is not readable.
    assert!(
        !pcap.windows(9).any(|w| w == b"@wakeline"),
        "CNAME in clear"
    );
}

/// The listener's RTP address, from the caller's `media` event.
fn listener_rtp(events: &Path) -> Option<SocketAddr> {
    let evs = std::fs::read_to_string(events).ok()?;
    let media = evs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "media")?;
    media["remote_rtp"].as_str()?.parse().ok()
}

#[test]
fn forged_replayed_and_garbage_packets_are_counted_and_the_call_goes_on() {
    let _g = serial();
    let dir = test_dir("srtp-hostile");
    let d = dir.path();
    let port = free_port();
    let listener = listen(d, port, &SECURE);
    let caller = call(d, port, 4.0, &SECURE);
    let start = Instant::now();
    let target = loop {
        if let Some(t) = listener_rtp(&d.join("a.ev")) {
            break t;
        }
        assert!(start.elapsed() < LIMIT, "no media event");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let media run, then copy what the caller sent from its live capture.
    std::thread::sleep(Duration::from_millis(1500));
    let pcap = std::fs::read(d.join("a.pcap")).expect("pcap");
    let sent: Vec<Vec<u8>> = pcmu(&udp_datagrams(&pcap))
        .filter(|(_, t, _)| *t == target.port())
        .map(|(_, _, p)| p.clone())
        .collect();
    assert!(
        sent.len() >= 20,
        "caller's SRTP in the live pcap: {}",
        sent.len()
    );
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let (mut replays, mut forged, mut garbage) = (0, 0, 0);
    for p in sent.iter().rev().take(10) {
        sock.send_to(p, target).expect("send");
        replays += 1;
        let mut f = p.clone();
        let seq = u16::from_be_bytes([f[2], f[3]]).wrapping_add(300);
        f[2..4].copy_from_slice(&seq.to_be_bytes());
        f[40] ^= 0x5a;
        sock.send_to(&f, target).expect("send");
        forged += 1;
        let mut g = f.clone();
        for (i, b) in g.iter_mut().enumerate().skip(12) {
            *b = (i as u8).wrapping_mul(37);
        }
        sock.send_to(&g, target).expect("send");
        garbage += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let (a, b) = finish(d, caller, listener);
    let guard = &b["rtp_guard"];
    eprintln!(
        "listener rtp_guard: {guard}; sent {replays} replays, {forged} forged, {garbage} garbage"
    );
    assert_eq!(guard["srtp_replayed"], replays, "{b:#}");
    assert_eq!(guard["srtp_auth_failed"], forged + garbage, "{b:#}");
    assert_eq!(b["status"], 200);
    assert_eq!(a["status"], 200);
    hears(&d.join("b.wav"), CALLER_HZ, LISTENER_HZ);
    hears(&d.join("a.wav"), LISTENER_HZ, CALLER_HZ);
}

/// Runs a call that must be refused and returns the caller's `ended` status.
fn refused(name: &str, listener_args: &[&str], caller_args: &[&str]) -> u64 {
    let dir = test_dir(name);
    let d = dir.path();
    let port = free_port();
    let mut listener = listen(d, port, listener_args);
    let mut caller = call(d, port, 2.0, caller_args);
    let _ = caller.wait(LIMIT);
    let _ = listener.terminate(LIMIT);
    read_events(&d.join("a.ev"))
        .into_iter()
        .find(|e| e["event"] == "ended")
        .and_then(|e| e["status"].as_u64())
        .unwrap_or_else(|| panic!("no ended event\n{}", caller.output()))
}

#[test]
fn mandatory_refuses_a_plain_offer_and_off_refuses_savp() {
    let _g = serial();
    // A caller without SRTP (plain SIP, no flag: off) calls a mandatory listener.
    assert_eq!(refused("srtp-488-plain", &SECURE, &[]), 488);
    // A mandatory caller (RTP/SAVP) calls a listener with SRTP off.
    assert_eq!(refused("srtp-488-savp", &["--srtp", "off"], &SECURE), 488);
}

/// A mandatory caller gets a plain answer (sipp, `uas_plain_answer.xml`): it ACKs, hangs up at
/// once and fails, naming the SRTP policy.
#[test]
fn mandatory_caller_hangs_up_on_a_plain_answer() {
    let dir = test_dir("srtp-plain-answer");
    let d = dir.path();
    let sipp_port = free_port();
    let mut cmd = sipp(&scenario("uas_plain_answer.xml"), sipp_port);
    cmd.args(["-m", "1"]);
    let mut uas = Proc::spawn("sipp", cmd, d);
    wait_listening(sipp_port, LIMIT);
    let mut cmd = wakeline();
    cmd.arg("call")
        .arg(format!("sip:service@127.0.0.1:{sipp_port};transport=tcp"))
        .args(["--duration", "5", "--mic", "silence", "--speaker", "null"])
        .args(SECURE)
        .arg("--events")
        .arg(d.join("a.ev"));
    let mut ua = Proc::spawn("wakeline", cmd, d);
    let start = Instant::now();
    let st = ua.wait(LIMIT);
    assert!(!st.success(), "the call must fail\n{}", ua.output());
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "hung up at once, not after --duration"
    );
    assert!(
        ua.output().contains("SRTP"),
        "the reason names SRTP\n{}",
        ua.output()
    );
    let st = uas.wait(LIMIT);
    assert!(
        st.success(),
        "sipp saw the offer, the ACK and the BYE\n{}",
        uas.output()
    );
    let events = read_events(&d.join("a.ev"));
    assert!(!events.iter().any(|e| e["event"] == "media"), "{events:#?}");
}

/// `optional` (offer RTP/AVP with crypto lines) gets SRTP from an optional peer and plain
/// RTP from a peer with SRTP off; both calls carry audio.
#[test]
fn optional_uses_srtp_when_the_peer_does_and_plain_otherwise() {
    let _g = serial();
    let optional = ["--srtp", "optional", "--srtp-over-plain-sip"];
    for (name, listener_args, want) in [
        (
            "srtp-opt-opt",
            &optional[..],
            "sdes-aes-cm-128-hmac-sha1-80",
        ),
        ("srtp-opt-off", &["--srtp", "off"][..], "null"),
    ] {
        let dir = test_dir(name);
        let d = dir.path();
        let port = free_port();
        let listener = listen(d, port, listener_args);
        let caller = call(d, port, 2.0, &optional);
        let (a, b) = finish(d, caller, listener);
        for s in [&a, &b] {
            assert_eq!(s["status"], 200, "{name}: {s:#}");
            assert_eq!(srtp_name(s), want, "{name}: {s:#}");
        }
        hears(&d.join("a.wav"), LISTENER_HZ, CALLER_HZ);
        hears(&d.join("b.wav"), CALLER_HZ, LISTENER_HZ);
    }
}

#[test]
fn explicit_srtp_over_plain_sip_needs_the_flag() {
    let dir = test_dir("srtp-flag");
    let mut cmd = wakeline();
    cmd.args([
        "call",
        "sip:x@127.0.0.1:9;transport=tcp",
        "--srtp",
        "mandatory",
    ]);
    let mut p = Proc::spawn("caller", cmd, dir.path());
    let st = p.wait(LIMIT);
    assert!(!st.success());
    assert!(
        p.output().contains("--srtp-over-plain-sip"),
        "the error names the flag: {}",
        p.output()
    );
}

/// A baresip with `srtp.so` whose account says `;mediaenc=srtp-mand`, sending `hz` over PCMU.
fn secure_baresip(d: &Path, hz: f64) -> Baresip {
    let source = d.join("bob-mic.wav");
    write_tone(&source, 8000, 1, hz, 30.0);
    Baresip::start(
        d,
        "baresip",
        &BaresipConfig {
            aor: "sip:bob@127.0.0.1".into(),
            password: "unused".into(),
            outbound: None,
            codecs: Some("PCMU/8000/1".into()),
            source,
            mediaenc: Some("srtp-mand".into()),
        },
    )
}

/// Checks a wakeline side of a call with baresip: 200, SDES agreed, baresip's tone heard,
/// wakeline's tone heard by baresip, and only SRTP-sized PCMU in the capture (if any).
fn check_with_baresip(summary: &Value, wav: &Path, bob: &Baresip, pcap: Option<&Path>) {
    assert_eq!(summary["status"], 200, "{summary:#}");
    let suite = srtp_name(summary);
    assert!(suite.starts_with("sdes-"), "{summary:#}");
    assert_eq!(summary["rtp_guard"]["srtp_auth_failed"], 0, "{summary:#}");
    let heard = assert_tone(wav, LISTENER_HZ, CALLER_HZ, 2.0);
    eprintln!("wakeline heard baresip ({suite}): {heard:?}");
    let heard = assert_tone(&bob.heard(), CALLER_HZ, LISTENER_HZ, 2.0);
    eprintln!("baresip heard wakeline: {heard:?}");
    let Some(pcap) = pcap else { return };
    let pcap = std::fs::read(pcap).expect("pcap");
    let dgrams = udp_datagrams(&pcap);
    let rtp: Vec<_> = pcmu(&dgrams).collect();
    assert!(rtp.len() >= 200, "both directions captured: {}", rtp.len());
    let tag = match suite {
        "sdes-aes-cm-128-hmac-sha1-32" => 4,
        "sdes-aead-aes-128-gcm" => 16,
        _ => 10,
    };
    for (s, t, p) in &rtp {
        assert_eq!(p.len(), 172 + tag, "{s}->{t}: SRTP length");
    }
}

/// `wakeline call` to baresip (`srtp.so`, account `;mediaenc=srtp-mand`), PCMU, direct over
/// TCP: SDES agreed, each side hears the other's tone, and nothing plain is on the wire.
#[test]
fn wakeline_calls_baresip_with_srtp() {
    let _g = serial();
    let dir = test_dir("srtp-baresip");
    let d = dir.path();
    let mut bob = secure_baresip(d, LISTENER_HZ);
    let uri = format!("sip:bob@127.0.0.1:{};transport=tcp", bob.sip_port);
    let mut ua = call_uri(d, &uri, 4.0, &SECURE);
    let st = ua.wait(LIMIT);
    assert!(
        st.success(),
        "wakeline: {st}\n{}\n{}",
        ua.output(),
        bob.output()
    );
    bob.wait_event("CALL_CLOSED", Duration::from_secs(10));
    bob.quit();
    let a: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("a.json")).expect("a.json"))
            .expect("summary");
    check_with_baresip(&a, &d.join("a.wav"), &bob, Some(&d.join("a.pcap")));
}

/// baresip (`srtp-mand`: it offers RTP/SAVP) calls `wakeline listen --srtp mandatory`.
#[test]
fn baresip_calls_wakeline_with_srtp() {
    let _g = serial();
    let dir = test_dir("srtp-baresip-in");
    let d = dir.path();
    let port = free_port();
    let mut ua = {
        let mut cmd = wakeline();
        cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
            .args(["--mic", &format!("tone:{CALLER_HZ}"), "--speaker", "null"])
            .args(["--max-calls", "1", "--record"])
            .arg(d.join("b.wav"))
            .arg("--summary")
            .arg(d.join("b.json"))
            .args(SECURE);
        Proc::spawn("listener", cmd, d)
    };
    wait_listening(port, LIMIT);
    let mut bob = secure_baresip(d, LISTENER_HZ);
    let r = bob.command("dial", &format!("sip:alice@127.0.0.1:{port};transport=tcp"));
    assert_eq!(r["ok"], true, "dial: {r}");
    bob.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(4));
    let r = bob.command("hangup", "");
    assert_eq!(r["ok"], true, "hangup: {r}");
    bob.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let st = ua.wait(LIMIT);
    assert!(
        st.success(),
        "wakeline: {st}\n{}\n{}",
        ua.output(),
        bob.output()
    );
    bob.quit();
    let b = read_events(&d.join("b.json"));
    assert_eq!(b.len(), 1, "{b:#?}");
    check_with_baresip(&b[0], &d.join("b.wav"), &bob, None);
}
