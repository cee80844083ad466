//! Hostile RTP during a real call (issue 13, finding 1): two `wakeline` processes call each
//! other on 127.0.0.1 with tones while a stranger's UDP socket sends well-formed RTP (Opus's
//! payload type 111, one SSRC, consecutive sequence numbers, two packets per 20 ms) to the
//! listener's RTP port from another port — from the moment the listener binds that port, so
//! the stranger's packets arrive before the caller's (the race, which a latch-to-first
//! policy loses). The port is found in /proc (Linux), as the even port of the UDP pair the
//! listener holds.
//!
//! The listener must keep sending to the caller's SDP address (the caller receives what the
//! listener sent and hears its tone; the stranger receives nothing), must still play the
//! caller's audio, and must count the refused packets in its `--summary` (`rtp_guard.foreign`).
//! Run with the default policy (`nat`: the SDP address is reachable, so no latching at all),
//! with `--latching always` (a stranger that proves itself still may not replace a peer that
//! keeps talking), and with a garbage flood that includes the packets that crashed the RTP and
//! RTCP parsers. A last test forks one INVITE through Kamailio to two answering callees: the
//! caller must play only the kept dialog's media.

mod peers;

use peers::audio::{read_wav, tone_dominance};
use peers::kamailio::{Kamailio, PASSWORD};
use peers::{free_port, read_events, test_dir, wait_listening, wakeline, Proc};
use serde_json::Value;
use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CALLER_HZ: f64 = 440.0;
const LISTENER_HZ: f64 = 1000.0;
const LIMIT: Duration = Duration::from_secs(30);
const CALL_S: f64 = 3.0;
/// The calls here run one at a time: each measures real-time audio on a shared machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
/// The payload type wakeline gives Opus in its offer (the stranger cannot wait for the SDP).
const OPUS_PT: u8 = 111;

/// What the stranger did.
#[derive(Debug, Default)]
struct StrangerReport {
    /// RTP packets sent to the listener's port.
    sent: u64,
    /// Datagrams the listener sent back to the stranger (must stay 0).
    received: u64,
    /// Where it sent them.
    target: Option<SocketAddr>,
}

/// What the stranger sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A plausible RTP stream: two in-sequence packets of one SSRC per 20 ms.
    Stream,
    /// [`GARBAGE_PER_TICK`] datagrams per 20 ms: the two packets that crashed the `rtp` and
    /// `rtcp` crates' parsers (tests/fuzz.rs regressions), junk and version-1 packets, and
    /// in-sequence RTP.
    Garbage,
}

/// Datagrams per 20 ms in [`Mode::Garbage`] (5,000 a second).
const GARBAGE_PER_TICK: usize = 100;

/// The `Garbage` mix: datagram `k` of the flood.
fn garbage(k: usize, stream_pkt: &[u8]) -> Vec<u8> {
    match k % 5 {
        // RTP with an RFC 8285 element running past its extension (rtp 0.17 panicked).
        0 => vec![
            0x93, OPUS_PT, 0, 2, 0, 0, 7, 0x80, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 1, 0, 0, 0, 2, 0,
            0, 0, 3, 0xbe, 0xde, 0, 1, 0xbe, 0x10, 0xaa, 0, 0, 1, 2,
        ],
        // A short RTPFB in a compound (rtcp 0.17 panicked).
        1 => vec![
            0x80, 205, 0, 1, 0x11, 0x22, 0x33, 0x44, 0x81, 205, 0, 1, 0x11, 0x22, 0x33, 0x44,
        ],
        // Version-2-looking junk of varying length.
        2 => (0..(k % 97))
            .map(|i| if i == 0 { 0x80 } else { (i * 31 + k) as u8 })
            .collect(),
        // Version 1.
        3 => vec![0x40; 40],
        _ => stream_pkt.to_vec(),
    }
}

/// A thread that waits for the listener to bind its RTP port and then sends RTP there until
/// stopped.
struct Stranger {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<StrangerReport>,
}

impl Stranger {
    fn start(listener_pid: u32, mode: Mode) -> Stranger {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || run_stranger(listener_pid, mode, &flag));
        Stranger { stop, thread }
    }

    fn finish(self) -> StrangerReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("stranger thread")
    }
}

/// The listener's RTP address and the payload type, from the caller's `media` event.
fn media_target(events: &Path) -> Option<(SocketAddr, u8)> {
    let evs = std::fs::read_to_string(events).ok()?;
    let media = evs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "media")?;
    let addr = media["remote_rtp"].as_str()?.parse().ok()?;
    let pt = u8::try_from(media["payload_type"].as_u64()?).ok()?;
    Some((addr, pt))
}

/// The UDP ports `pid` holds on 127.0.0.1 (its fds' socket inodes, looked up in
/// /proc/net/udp).
fn udp_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    let inodes: HashSet<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (ip, port) = f.get(1)?.split_once(':')?;
            (ip == "0100007F" && inodes.contains(*f.get(9)?))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect()
}

/// The listener's RTP port: the even port of an RTP/RTCP pair it holds.
fn rtp_port(pid: u32) -> Option<u16> {
    let ports = udp_ports(pid);
    ports
        .iter()
        .copied()
        .find(|p| p % 2 == 0 && ports.contains(&(p + 1)))
}

fn run_stranger(listener_pid: u32, mode: Mode, stop: &AtomicBool) -> StrangerReport {
    let mut report = StrangerReport::default();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("stranger socket");
    sock.set_nonblocking(true).expect("nonblocking");
    let target = loop {
        if stop.load(Ordering::Relaxed) {
            return report;
        }
        if let Some(p) = rtp_port(listener_pid) {
            break SocketAddr::from(([127, 0, 0, 1], p));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    report.target = Some(target);
    let pt = OPUS_PT;
    let ssrc: u32 = 0x5eed_f00d;
    let mut seq: u16 = 1000;
    let mut ts: u32 = 777_000;
    let mut buf = [0u8; 1500];
    let per_tick = if mode == Mode::Garbage {
        GARBAGE_PER_TICK
    } else {
        2
    };
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        // Two packets per 20 ms: a plausible stream, twice over (or the garbage mix).
        for _ in 0..per_tick {
            let mut pkt = vec![0x80, pt & 0x7f];
            pkt.extend_from_slice(&seq.to_be_bytes());
            pkt.extend_from_slice(&ts.to_be_bytes());
            pkt.extend_from_slice(&ssrc.to_be_bytes());
            // A short Opus/G.711-sized payload of noise.
            pkt.extend((0..60u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
            if mode == Mode::Garbage {
                pkt = garbage(k, &pkt);
                k += 1;
            }
            if sock.send_to(&pkt, target).is_ok() {
                report.sent += 1;
            }
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(960);
        }
        while sock.recv_from(&mut buf).is_ok() {
            report.received += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    while sock.recv_from(&mut buf).is_ok() {
        report.received += 1;
    }
    report
}

struct Outcome {
    caller: Value,
    listener: Value,
    stranger: StrangerReport,
    /// The listener's RTP address and payload type, from the caller's `media` event.
    media: Option<(SocketAddr, u8)>,
    dir: tempfile::TempDir,
    output: String,
}

fn hijack_call(name: &str, listener_flags: &[&str], mode: Mode) -> Outcome {
    let _serial = serial();
    let dir = test_dir(name);
    let d = dir.path();
    let port = free_port();
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--mic", &format!("tone:{LISTENER_HZ}"), "--speaker", "null"])
        .args(["--max-calls", "1", "--record"])
        .arg(d.join("b.wav"))
        .arg("--summary")
        .arg(d.join("b.json"))
        .args(listener_flags);
    let mut listener = Proc::spawn("listener", cmd, d);
    wait_listening(port, LIMIT);
    let stranger = Stranger::start(listener.pid().expect("listener runs"), mode);
    let mut cmd = wakeline();
    cmd.arg("call")
        .arg(format!("sip:tone@127.0.0.1:{port};transport=tcp"))
        .args(["--mic", &format!("tone:{CALLER_HZ}"), "--speaker", "null"])
        .args(["--duration", &CALL_S.to_string(), "--record"])
        .arg(d.join("a.wav"))
        .arg("--summary")
        .arg(d.join("a.json"))
        .arg("--events")
        .arg(d.join("a.ev"));
    let mut caller = Proc::spawn("caller", cmd, d);
    let status = caller.wait(LIMIT);
    let stranger = stranger.finish();
    assert!(
        status.success(),
        "caller: {status}\n{}\n{}",
        caller.output(),
        listener.output()
    );
    let status = listener.wait(LIMIT);
    assert!(
        status.success(),
        "listener: {status}\n{}",
        listener.output()
    );
    let output = format!("{}\n{}", caller.output(), listener.output());
    let caller: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("a.json")).expect("a.json"))
            .expect("caller summary");
    let listener = read_events(&d.join("b.json"))
        .into_iter()
        .next()
        .expect("listener summary line");
    let media = media_target(&d.join("a.ev"));
    Outcome {
        caller,
        listener,
        stranger,
        media,
        dir,
        output,
    }
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_f64()
        .unwrap_or_else(|| panic!("summary field {path:?} is not a number: {v:#}"))
}

/// The fraction of 100 ms blocks (after 200 ms) where `hz` dominates.
fn tone_fraction(wav: &Path, hz: f64, other: f64) -> f64 {
    let w = read_wav(wav);
    let probes = [300.0, 700.0, 1500.0, 2500.0, other];
    let r = tone_dominance(&w.samples, w.rate, hz, &probes, 100, 200, 10.0);
    eprintln!("{}: {}", wav.display(), r.summary());
    r.dominant_fraction()
}

fn check(o: &Outcome, mode: Mode) {
    let (a, b, s) = (&o.caller, &o.listener, &o.stranger);
    eprintln!("stranger {s:?}\ncaller {a:#}\nlistener {b:#}");
    assert!(
        s.target.is_some(),
        "the stranger never saw the call\n{}",
        o.output
    );
    assert_eq!(
        o.media,
        s.target.map(|t| (t, OPUS_PT)),
        "the stranger aimed at the listener's negotiated RTP address and payload type"
    );
    assert!(s.sent >= 100, "stranger sent only {} packets", s.sent);
    assert!(
        mode != Mode::Garbage || s.sent >= 5_000,
        "stranger flooded only {} packets",
        s.sent
    );
    // The listener kept sending to the caller's SDP address: the caller got (almost) all of
    // it, the stranger none.
    assert_eq!(s.received, 0, "the listener sent media to the stranger");
    let (sent_b, got_a) = (num(b, &["rtp_sent"]), num(a, &["rtp_received"]));
    assert!(
        got_a >= 0.95 * sent_b && sent_b >= 100.0,
        "caller received {got_a} of the listener's {sent_b}"
    );
    // The caller's audio is still played at the listener, and refused packets are counted.
    let (sent_a, got_b) = (num(a, &["rtp_sent"]), num(b, &["rtp_received"]));
    assert!(
        got_b >= 0.95 * sent_a && got_b <= sent_a,
        "listener received {got_b} of the caller's {sent_a} (the stranger's count as received?)"
    );
    let foreign = num(b, &["rtp_guard", "foreign"]);
    let malformed = num(b, &["rtp_guard", "malformed"]);
    let refused = foreign + malformed + num(b, &["rtp_guard", "unknown_pt"]);
    assert!(foreign > 0.0 && refused <= s.sent as f64, "{b:#}");
    // Under the garbage flood the kernel may drop some datagrams before we read them.
    let share = if mode == Mode::Garbage { 0.5 } else { 0.8 };
    assert!(
        refused >= share * s.sent as f64,
        "most of the stranger's {} packets were refused and counted: {refused}",
        s.sent
    );
    assert!(mode != Mode::Garbage || malformed > 0.0, "{b:#}");
    assert_eq!(num(b, &["rtp_guard", "latches"]), 0.0);
    assert_eq!(num(b, &["dropped_foreign"]), foreign);
    let d = o.dir.path();
    let heard_b = tone_fraction(&d.join("b.wav"), CALLER_HZ, LISTENER_HZ);
    let heard_a = tone_fraction(&d.join("a.wav"), LISTENER_HZ, CALLER_HZ);
    assert!(heard_b >= 0.85, "listener hears the caller: {heard_b}");
    assert!(heard_a >= 0.85, "caller hears the listener: {heard_a}");
}

/// Default policy (`nat`): the caller's SDP address (127.0.0.1) is reachable, so nothing else
/// is ever accepted.
#[test]
fn stranger_cannot_hijack_default_policy() {
    let o = hijack_call("hijack-nat", &[], Mode::Stream);
    check(&o, Mode::Stream);
}

/// `--latching always`: the stranger's stream is in perfect sequence, but the caller never
/// falls silent, so the stranger never replaces it.
#[test]
fn stranger_cannot_hijack_a_talking_peer_with_latching_always() {
    let o = hijack_call("hijack-always", &["--latching", "always"], Mode::Stream);
    check(&o, Mode::Stream);
}

/// A flood of 5,000 datagrams a second from the stranger, including the two packets that
/// made the `rtp`/`rtcp` crates panic: the call goes on both ways, everything is counted.
#[test]
fn garbage_flood_during_a_call_is_counted_and_harmless() {
    let o = hijack_call("garbage", &[], Mode::Garbage);
    check(&o, Mode::Garbage);
}

/// A bad `--latching` value is refused with a message that names the flag, at once.
#[test]
fn latching_flag_is_validated() {
    let t = Instant::now();
    let out = wakeline()
        .args(["listen", "--latching", "sometimes"])
        .output()
        .expect("run wakeline");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("latching"), "{err}");
    assert!(t.elapsed() < LIMIT);
}

/// The second callee's tone in the fork test.
const OTHER_HZ: f64 = 2000.0;

/// `wakeline listen` registered as alice at `kam` with its own instance-id (state folder),
/// answering at once with a `hz` tone; waits until it is registered.
fn forked_alice(dir: &Path, name: &str, kam: &Kamailio, hz: f64) -> Proc {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("callee folder");
    let mut cmd = wakeline();
    cmd.env("WAKELINE_STATE_DIR", d.join("state"))
        .args(["listen", "--bind", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--registrar",
            &format!("sip:127.0.0.1:{};transport=tcp", kam.port),
        ])
        .args([
            "--user",
            "alice",
            "--domain",
            "127.0.0.1",
            "--password",
            PASSWORD,
        ])
        .args(["--mic", &format!("tone:{hz}"), "--speaker", "null"])
        .args(["--answer", "auto", "--max-calls", "1", "--record"])
        .arg(d.join("heard.wav"))
        .arg("--summary")
        .arg(d.join("summary.json"))
        .arg("--events")
        .arg(d.join("events.jsonl"));
    let p = Proc::spawn(name, cmd, &d);
    let registered = |e: &serde_json::Value| e["event"] == "registered";
    let what = format!("{name} did not register");
    peers::wait_event(&d.join("events.jsonl"), registered, LIMIT, &p, &what);
    p
}

/// A forked call (issue 13, finding 1): two `wakeline listen` register as alice at Kamailio,
/// which forks bob's INVITE to both; both answer. The caller keeps one dialog (ACK + BYE for
/// the other) and must hear only the kept callee's tone — the other fork's early RTP, from an
/// address its SDP did not name, is refused and counted — while the kept callee hears the
/// caller.
#[test]
fn forked_call_plays_only_the_kept_dialogs_media() {
    let _serial = serial();
    let dir = test_dir("fork");
    let d = dir.path();
    let kam = Kamailio::start(d, free_port());
    let mut one = forked_alice(d, "one", &kam, LISTENER_HZ);
    let mut two = forked_alice(d, "two", &kam, OTHER_HZ);
    let mut cmd = wakeline();
    cmd.args(["call", "sip:alice@127.0.0.1;transport=tcp"])
        .args([
            "--registrar",
            &format!("sip:127.0.0.1:{};transport=tcp", kam.port),
        ])
        .args([
            "--user",
            "bob",
            "--domain",
            "127.0.0.1",
            "--password",
            PASSWORD,
        ])
        .args(["--mic", &format!("tone:{CALLER_HZ}"), "--speaker", "null"])
        .args(["--duration", &CALL_S.to_string(), "--record"])
        .arg(d.join("a.wav"))
        .arg("--summary")
        .arg(d.join("a.json"));
    let mut caller = Proc::spawn("caller", cmd, d);
    let status = caller.wait(LIMIT);
    let all = |one: &Proc, two: &Proc| {
        format!(
            "{}\n{}\n{}\n{}",
            caller.output(),
            one.output(),
            two.output(),
            kam.log()
        )
    };
    assert!(status.success(), "caller: {status}\n{}", all(&one, &two));
    for p in [&mut one, &mut two] {
        let s = p.wait(LIMIT);
        assert!(s.success(), "{}: {s}\n{}", p.name, p.output());
    }
    let caller_sum: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("a.json")).expect("a.json"))
            .expect("caller summary");
    let sums: Vec<Value> = ["one", "two"]
        .iter()
        .map(|n| {
            read_events(&d.join(n).join("summary.json"))
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("{n}: no summary\n{}", all(&one, &two)))
        })
        .collect();
    eprintln!(
        "caller {caller_sum:#}\none {:#}\ntwo {:#}",
        sums[0], sums[1]
    );
    // The kept callee is the one whose call lasted; the other was answered and hung up at
    // once (or cancelled before it answered).
    let dur = |v: &Value| v["duration_s"].as_f64().unwrap_or(0.0);
    let (kept, kept_hz, other_hz) = if dur(&sums[0]) >= dur(&sums[1]) {
        ("one", LISTENER_HZ, OTHER_HZ)
    } else {
        ("two", OTHER_HZ, LISTENER_HZ)
    };
    let kept_sum = if kept == "one" { &sums[0] } else { &sums[1] };
    assert!(dur(kept_sum) >= CALL_S * 0.8, "{kept_sum:#}");
    let caller_hears = tone_fraction(&d.join("a.wav"), kept_hz, other_hz);
    let caller_hears_other = tone_fraction(&d.join("a.wav"), other_hz, kept_hz);
    let kept_hears = tone_fraction(&d.join(kept).join("heard.wav"), CALLER_HZ, kept_hz);
    assert!(
        caller_hears >= 0.85,
        "caller hears the kept callee: {caller_hears}"
    );
    assert!(
        caller_hears_other <= 0.05,
        "caller hears the dropped fork: {caller_hears_other}"
    );
    assert!(
        kept_hears >= 0.85,
        "kept callee hears the caller: {kept_hears}"
    );
    assert_eq!(num(&caller_sum, &["rtp_guard", "latches"]), 0.0);
    eprintln!(
        "fork: kept {kept}, the other fork's packets refused at the caller: {}",
        caller_sum["rtp_guard"]["foreign"]
    );
}
