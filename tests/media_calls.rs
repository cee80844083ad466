//! Media interop: two `wakeline` processes on 127.0.0.1 call each other and carry real audio.
//!
//! The caller sends a 440 Hz tone, the listener a 1000 Hz tone; both record what they hear
//! (`--record`, 48 kHz mono WAV) and write a `--summary`. The recordings are analysed in 100 ms
//! blocks with a Goertzel filter (`peers::audio`): the other side's tone must dominate a set of
//! probe frequencies. One call goes through an in-test SIP proxy + UDP relay with seeded loss,
//! delay and reordering (`peers::relay`). Each test uses its own ports and folder, so the harness
//! runs them in parallel.

mod peers;
#[path = "peers/relay.rs"]
mod relay;

use peers::audio::{read_wav, tone_dominance, ToneReport, Wav};
use peers::{free_port, read_events, test_dir, wait_listening, wakeline, Proc};
use relay::{Impairment, MediaRelay, RelayStats};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the caller sends.
const CALLER_HZ: f64 = 440.0;
/// What the listener sends.
const LISTENER_HZ: f64 = 1000.0;
/// Frequencies that must stay well below the expected tone (besides the other side's tone).
const PROBES_HZ: [f64; 4] = [300.0, 700.0, 1500.0, 2500.0];
/// Generous limit for a process to finish: the machine is shared and loaded.
const LIMIT: Duration = Duration::from_secs(30);
/// 20 ms packets.
const PACKETS_PER_S: f64 = 50.0;
/// How often the stall watch wakes up.
const WATCH_PERIOD: Duration = Duration::from_millis(5);

/// One call between `wakeline call` and `wakeline listen`.
struct CallSpec<'a> {
    name: &'a str,
    duration_s: f64,
    caller_codecs: Option<&'a str>,
    dtmf: Option<&'a str>,
    impairment: Option<Impairment>,
}

impl<'a> CallSpec<'a> {
    fn new(name: &'a str, duration_s: f64) -> Self {
        CallSpec {
            name,
            duration_s,
            caller_codecs: None,
            dtmf: None,
            impairment: None,
        }
    }
}

/// Everything a finished call left behind.
struct CallResult {
    caller: Value,
    listener: Value,
    caller_wav: Wav,
    listener_wav: Wav,
    caller_events: Vec<Value>,
    listener_events: Vec<Value>,
    relay: Option<(RelayStats, SocketAddr, SocketAddr)>,
    /// Both processes' output, for failure messages.
    output: String,
    /// The latest that this test process's own 5 ms timer woke up while the call ran.
    max_stall: Duration,
}

/// Measures how late this process's own short sleeps wake up: evidence, independent of
/// wakeline, that the machine could not keep real time (a 2-core machine shared by builds).
struct StallWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Duration>,
}

impl StallWatch {
    fn start() -> StallWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                std::thread::sleep(WATCH_PERIOD);
                worst = worst.max(t.elapsed().saturating_sub(WATCH_PERIOD));
            }
            worst
        });
        StallWatch { stop, thread }
    }

    fn finish(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("stall watch")
    }
}

fn run_call(spec: &CallSpec) -> CallResult {
    let watch = StallWatch::start();
    let dir = test_dir(spec.name);
    let d = dir.path();
    let port = free_port();
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--mic", &format!("tone:{LISTENER_HZ}"), "--speaker", "null"])
        .args(["--max-calls", "1", "--record"])
        .arg(d.join("b.wav"))
        .arg("--summary")
        .arg(d.join("b.json"))
        .arg("--events")
        .arg(d.join("b.ev"));
    let mut listener = Proc::spawn("listener", cmd, d);
    wait_listening(port, LIMIT);

    let relay = spec
        .impairment
        .map(|imp| MediaRelay::start(SocketAddr::from(([127, 0, 0, 1], port)), imp));
    let target_port = relay.as_ref().map_or(port, |r| r.sip_port);

    let mut cmd = wakeline();
    cmd.arg("call")
        .arg(format!("sip:tone@127.0.0.1:{target_port};transport=tcp"))
        .args(["--mic", &format!("tone:{CALLER_HZ}"), "--speaker", "null"])
        .args(["--duration", &spec.duration_s.to_string(), "--record"])
        .arg(d.join("a.wav"))
        .arg("--summary")
        .arg(d.join("a.json"))
        .arg("--events")
        .arg(d.join("a.ev"));
    if let Some(codecs) = spec.caller_codecs {
        cmd.args(["--codecs", codecs]);
    }
    if let Some(digits) = spec.dtmf {
        cmd.args(["--dtmf", digits]);
    }
    let mut caller = Proc::spawn("caller", cmd, d);
    let status = caller.wait(LIMIT);
    assert!(
        status.success(),
        "{}: caller failed: {status}\n{}\n{}",
        spec.name,
        caller.output(),
        listener.output()
    );
    let status = listener.wait(LIMIT);
    assert!(
        status.success(),
        "{}: listener failed: {status}\n{}",
        spec.name,
        listener.output()
    );
    let relay = relay.map(|r| {
        // Let the relay's queues drain before reading the counters.
        std::thread::sleep(Duration::from_millis(50));
        (r.stats(), r.socket_a, r.socket_b)
    });
    let output = format!("{}\n{}", caller.output(), listener.output());
    let max_stall = watch.finish();
    eprintln!(
        "{}: this process's timer was up to {max_stall:?} late",
        spec.name
    );

    let caller_summary: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("a.json")).expect("a.json"))
            .expect("caller summary is JSON");
    let lines = read_events(&d.join("b.json"));
    assert_eq!(
        lines.len(),
        1,
        "{}: one summary line per call: {lines:#?}\n{output}\n{:#?}",
        spec.name,
        read_events(&d.join("b.ev"))
    );
    CallResult {
        caller: caller_summary,
        listener: lines.into_iter().next().expect("one line"),
        caller_wav: read_wav(&d.join("a.wav")),
        listener_wav: read_wav(&d.join("b.wav")),
        caller_events: read_events(&d.join("a.ev")),
        listener_events: read_events(&d.join("b.ev")),
        relay,
        output,
        max_stall,
    }
}

/// Attempts per test: later ones only when the failed attempt shows that the machine could not
/// keep real time (see [`stalled`]).
const ATTEMPTS: u32 = 3;

/// Why a failed attempt may be retried: this process's own timer woke up 20 ms late or more, or
/// a wakeline sent two or more packets fewer than its call's duration asks for. The pipeline
/// skips (does not catch up) the 20 ms ticks that its task missed, so a stalled process
/// records less and its peer conceals the gap; that is the machine's load, not a codec or
/// protocol fault, on a 2-core machine shared with builds.
fn stalled(r: &CallResult) -> Option<String> {
    let mut why = Vec::new();
    if r.max_stall >= Duration::from_millis(20) {
        why.push(format!("test timer {:?} late", r.max_stall));
    }
    for (side, s) in [("caller", &r.caller), ("listener", &r.listener)] {
        let (Some(d), Some(sent)) = (s["duration_s"].as_f64(), s["rtp_sent"].as_f64()) else {
            continue;
        };
        let missed = PACKETS_PER_S * d - sent;
        if missed >= 2.0 {
            why.push(format!("{side} missed about {missed:.0} ticks"));
        }
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// Runs the call and `check`s it; a failed check is retried (up to [`ATTEMPTS`]) only when the
/// attempt shows a stall, and reported with the reason.
fn run_checked(spec: &CallSpec, check: impl Fn(&CallResult)) {
    for attempt in 1..=ATTEMPTS {
        let r = run_call(spec);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&r)));
        let Err(panic) = outcome else {
            return;
        };
        match stalled(&r) {
            Some(why) if attempt < ATTEMPTS => {
                eprintln!(
                    "{}: attempt {attempt} failed during a stall ({why}): retrying",
                    spec.name
                )
            }
            why => {
                eprintln!("{}: attempt {attempt} failed; stall: {why:?}", spec.name);
                std::panic::resume_unwind(panic);
            }
        }
    }
}

fn num(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("summary field {field} is not a number: {v:#}"))
}

/// `hz` must dominate the probes and the other side's tone in `min_fraction` of the 100 ms
/// blocks after the first 200 ms, with a power ratio of at least `min_ratio`.
fn check_tone(wav: &Wav, hz: f64, other_hz: f64, min_ratio: f64, min_fraction: f64) -> ToneReport {
    assert_eq!(wav.rate, 48_000, "recordings are 48 kHz");
    assert_eq!(wav.channels, 1, "recordings are mono");
    let mut probes = PROBES_HZ.to_vec();
    probes.push(other_hz);
    let report = tone_dominance(&wav.samples, wav.rate, hz, &probes, 100, 200, min_ratio);
    eprintln!("tone {}", report.summary());
    assert!(
        report.blocks >= 5,
        "recording too short: {}",
        report.summary()
    );
    assert!(
        report.dominant_fraction() >= min_fraction,
        "expected tone does not dominate: {} (per-block dB: {:?})",
        report.summary(),
        report.ratios_db
    );
    report
}

/// Checks what every answered call must show on one side: status, codec, packet rate, and the
/// recording's length against the summary and the requested duration.
fn check_side(side: &str, summary: &Value, wav: &Wav, codec: &str, duration_s: f64) {
    assert_eq!(summary["status"], 200, "{side}: {summary:#}");
    assert_eq!(summary["codec"], codec, "{side}: {summary:#}");
    let reported = num(summary, "duration_s");
    let recorded = wav.duration_s();
    assert!(
        (recorded - reported).abs() <= 0.05 * reported,
        "{side}: recording {recorded:.3} s vs summary duration {reported:.3} s"
    );
    assert!(
        (recorded - duration_s).abs() <= 0.05 * duration_s,
        "{side}: recording {recorded:.3} s vs call duration {duration_s:.3} s"
    );
    let sent = num(summary, "rtp_sent");
    let expected = PACKETS_PER_S * reported;
    assert!(
        (sent - expected).abs() <= 0.1 * expected,
        "{side}: rtp_sent {sent} for {reported} s (expected about {expected})"
    );
    eprintln!(
        "{side}: codec {codec}, {recorded:.3} s recorded, {reported} s reported, sent {sent}, \
         received {}, lost {}, jitter {} ms, concealed {} frames, fec {}, mos {}",
        summary["rtp_received"],
        summary["lost"],
        summary["jitter_ms"],
        summary["concealed_frames"],
        summary["fec_recovered"],
        summary["mos"]
    );
}

/// 1. Two-way tones over Opus on a clean loopback.
#[test]
fn two_way_tones_over_opus() {
    let spec = CallSpec::new("opus", 3.0);
    run_checked(&spec, |r| {
        check_side("caller", &r.caller, &r.caller_wav, "opus", spec.duration_s);
        check_side(
            "listener",
            &r.listener,
            &r.listener_wav,
            "opus",
            spec.duration_s,
        );
        // Each side hears the other's tone.
        check_tone(&r.caller_wav, LISTENER_HZ, CALLER_HZ, 10.0, 0.9);
        check_tone(&r.listener_wav, CALLER_HZ, LISTENER_HZ, 10.0, 0.9);
        // Nothing is lost on loopback: each side receives (almost) all that the other sent.
        for (rx, tx, side) in [
            (&r.caller, &r.listener, "caller"),
            (&r.listener, &r.caller, "listener"),
        ] {
            let received = num(rx, "rtp_received");
            let sent = num(tx, "rtp_sent");
            assert!(
                received >= 0.95 * sent && received <= sent,
                "{side}: received {received} of {sent}\n{}",
                r.output
            );
            assert_eq!(num(rx, "lost"), 0.0, "{side}: loss on loopback: {rx:#}");
            let per_s = received / num(rx, "duration_s");
            assert!(
                (per_s - PACKETS_PER_S).abs() <= 0.1 * PACKETS_PER_S,
                "{side}: received {per_s:.1} packets/s"
            );
        }
    });
}

/// 2. The same call through a SIP proxy + UDP relay with 5% loss and 0–30 ms random delay
///    (reordering) both ways.
#[test]
fn tones_survive_loss_and_reordering_through_a_relay() {
    let mut spec = CallSpec::new("impaired", 4.0);
    spec.impairment = Some(Impairment {
        loss: 0.05,
        max_delay: Duration::from_millis(30),
        seed: 0x5eed_0003,
    });
    run_checked(&spec, |r| {
        let (stats, socket_a, socket_b) = r.relay.clone().expect("relay stats");
        eprintln!("relay: {stats:?}");
        check_side("caller", &r.caller, &r.caller_wav, "opus", spec.duration_s);
        check_side(
            "listener",
            &r.listener,
            &r.listener_wav,
            "opus",
            spec.duration_s,
        );

        // The relay really was in the media path: both UAs sent their media to its sockets.
        assert_eq!(
            stats.sdp_rewrites, 2,
            "offer and answer rewritten: {stats:?}"
        );
        let remote = |events: &[Value]| -> Option<SocketAddr> {
            let media = events.iter().find(|e| e["event"] == "media")?;
            media["remote_rtp"].as_str()?.parse().ok()
        };
        assert_eq!(
            remote(&r.caller_events),
            Some(socket_a),
            "{:#?}",
            r.caller_events
        );
        assert_eq!(
            remote(&r.listener_events),
            Some(socket_b),
            "{:#?}",
            r.listener_events
        );
        for (dir, d) in [("a->b", stats.a_to_b), ("b->a", stats.b_to_a)] {
            assert!(
                d.rtp_in >= 100,
                "{dir}: too few RTP packets through the relay: {d:?}"
            );
            assert!(
                d.rtp_dropped > 0,
                "{dir}: the seeded loss dropped nothing: {d:?}"
            );
            assert_eq!(d.unroutable, 0, "{dir}: {d:?}");
        }
        assert!(
            stats.a_to_b.rtp_reordered + stats.b_to_a.rtp_reordered > 0,
            "the random delay reordered nothing: {stats:?}"
        );

        // Tones still come through, a little less cleanly.
        check_tone(&r.caller_wav, LISTENER_HZ, CALLER_HZ, 10.0, 0.8);
        check_tone(&r.listener_wav, CALLER_HZ, LISTENER_HZ, 10.0, 0.8);

        // The summaries report the loss, and concealment or FEC covered it.
        let mut total_lost = 0.0;
        let mut total_expected = 0.0;
        for (side, rx, dropped) in [
            ("caller", &r.caller, stats.b_to_a.rtp_dropped),
            ("listener", &r.listener, stats.a_to_b.rtp_dropped),
        ] {
            let lost = num(rx, "lost");
            let received = num(rx, "rtp_received");
            let expected = lost + received;
            assert!(
                lost <= 0.12 * expected,
                "{side}: lost {lost} of {expected} (more than 12%)\n{rx:#}"
            );
            // Drops at the very end of the call cannot be seen as gaps by the receiver.
            assert!(
                lost <= dropped as f64 && lost + 3.0 >= dropped as f64,
                "{side}: summary says {lost} lost, the relay dropped {dropped}\n{rx:#}"
            );
            if lost > 0.0 {
                let covered = num(rx, "concealed_frames") + num(rx, "fec_recovered");
                assert!(
                    covered > 0.0,
                    "{side}: {lost} lost but no concealment or FEC: {rx:#}"
                );
            }
            total_lost += lost;
            total_expected += expected;
        }
        let fraction = total_lost / total_expected;
        eprintln!(
            "loss over both directions: {total_lost} / {total_expected} = {:.1}%",
            100.0 * fraction
        );
        assert!(total_lost > 0.0, "no side reports loss");
        assert!(
            (0.01..=0.12).contains(&fraction),
            "loss {:.1}% outside 1–12%",
            100.0 * fraction
        );
    });
}

/// 3. The caller offers only PCMU: the default listener falls back to it; tones both ways.
#[test]
fn pcmu_fallback_carries_tones_both_ways() {
    let mut spec = CallSpec::new("pcmu", 3.0);
    spec.caller_codecs = Some("pcmu");
    run_checked(&spec, |r| {
        check_side("caller", &r.caller, &r.caller_wav, "pcmu", spec.duration_s);
        check_side(
            "listener",
            &r.listener,
            &r.listener_wav,
            "pcmu",
            spec.duration_s,
        );
        check_tone(&r.caller_wav, LISTENER_HZ, CALLER_HZ, 10.0, 0.9);
        check_tone(&r.listener_wav, CALLER_HZ, LISTENER_HZ, 10.0, 0.9);
        let media = r
            .listener_events
            .iter()
            .find(|e| e["event"] == "media")
            .expect("listener media event");
        assert_eq!(media["payload_type"], 0, "PCMU is payload type 0: {media}");
    });
}

/// 4. DTMF digits sent by the caller arrive at the listener, all of them, in order.
#[test]
fn dtmf_digits_arrive_in_order() {
    let digits = "1234*#";
    let mut spec = CallSpec::new("dtmf", 3.0);
    spec.dtmf = Some(digits);
    run_checked(&spec, |r| {
        let received: Vec<&str> = r
            .listener_events
            .iter()
            .filter(|e| e["event"] == "dtmf")
            .map(|e| e["digit"].as_str().expect("dtmf event has a digit"))
            .collect();
        let expected: Vec<String> = digits.chars().map(String::from).collect();
        assert_eq!(
            received, expected,
            "listener events: {:#?}",
            r.listener_events
        );
        assert_eq!(num(&r.caller, "dtmf_sent"), 6.0, "{:#}", r.caller);
        assert_eq!(num(&r.listener, "dtmf_received"), 6.0, "{:#}", r.listener);
        // The caller hears no digits of its own.
        assert!(
            r.caller_events.iter().all(|e| e["event"] != "dtmf"),
            "{:#?}",
            r.caller_events
        );
    });
}

/// 5. `--mic default` on a machine with no sound card fails fast with one clear line.
#[test]
fn default_device_without_a_sound_card_fails_fast() {
    if Path::new("/proc/asound/cards").exists()
        && std::fs::read_to_string("/proc/asound/cards").is_ok_and(|c| !c.contains("no soundcards"))
    {
        eprintln!("this machine has a sound card: the no-sound-card test does not apply");
        return;
    }
    let dir = test_dir("nodevice");
    let d = dir.path();
    let port = free_port();
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--mic", "silence", "--speaker", "null"]);
    let _listener = Proc::spawn("listener", cmd, d);
    wait_listening(port, LIMIT);

    let mut cmd = wakeline();
    cmd.arg("call")
        .arg(format!("sip:x@127.0.0.1:{port};transport=tcp"))
        .args(["--mic", "default", "--duration", "20"])
        .env_remove("ALSA_CONFIG_PATH")
        .env_remove("JACK_DEFAULT_SERVER")
        .env("RUST_LOG", "warn");
    let start = Instant::now();
    let mut caller = Proc::spawn("caller", cmd, d);
    // Proc::wait panics if it is still running after the limit: it must never hang.
    let status = caller.wait(Duration::from_secs(5));
    let took = start.elapsed();
    assert!(
        !status.success(),
        "--mic default must fail here\n{}",
        caller.output()
    );
    let stderr = std::fs::read_to_string(&caller.stderr).expect("stderr");
    // libasound's own diagnostics ("ALSA lib ...") go to a buffer; ours is the one line.
    assert!(
        !stderr.contains("ALSA lib "),
        "alsa-lib's own lines stay quiet: {stderr}"
    );
    assert_eq!(status.code(), Some(5), "exit 5: media (device)");
    let ours: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    eprintln!("exit {status} after {took:?}: {ours:?}");
    assert_eq!(ours.len(), 1, "one line of our own on stderr: {stderr}");
    let line = ours[0].to_lowercase();
    assert!(
        line.contains("default") && line.contains("device"),
        "the line names the device: {}",
        ours[0]
    );
}

/// SIGTERM to `wakeline call` during a call hangs up cleanly: exit 143 (terminated, not a
/// failure of the call), `call interrupted` on stderr, and both summaries.
#[test]
fn sigterm_hangs_up_cleanly() {
    let dir = test_dir("sigterm");
    let d = dir.path();
    let port = free_port();
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--mic", "silence", "--speaker", "null", "--max-calls", "1"])
        .arg("--summary")
        .arg(d.join("b.json"));
    let mut listener = Proc::spawn("listener", cmd, d);
    wait_listening(port, LIMIT);
    let mut cmd = wakeline();
    cmd.arg("call")
        .arg(format!("sip:x@127.0.0.1:{port};transport=tcp"))
        .args(["--mic", "silence", "--speaker", "null", "--duration", "20"])
        .arg("--summary")
        .arg(d.join("a.json"))
        .arg("--events")
        .arg(d.join("a.ev"));
    let mut caller = Proc::spawn("caller", cmd, d);
    let connected = |e: &serde_json::Value| e["state"] == "connected";
    peers::wait_event(
        &d.join("a.ev"),
        connected,
        LIMIT,
        &caller,
        "never connected",
    );
    std::thread::sleep(Duration::from_millis(500));
    let status = caller.terminate(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(143),
        "caller after SIGTERM: {status}\n{}",
        caller.output()
    );
    let stderr = std::fs::read_to_string(&caller.stderr).unwrap_or_default();
    assert_eq!(stderr.lines().last(), Some("call interrupted"), "{stderr}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("a.json")).expect("a.json"))
            .expect("JSON");
    assert_eq!(summary["status"], 200, "{summary:#}");
    let status = listener.wait(LIMIT);
    assert!(status.success(), "{}", listener.output());
    assert_eq!(read_events(&d.join("b.json")).len(), 1, "listener summary");
}
