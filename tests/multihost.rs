//! Calls between hosts on a private network (issue 8 §5): each host is a network namespace on
//! a bridge (`peers/netns.rs`), running the real `wakeline` binary (and Kamailio, baresip).
//! Nothing here is on loopback, so an SDP that announces `127.0.0.1` (or `0.0.0.0`) carries no
//! audio and fails the tone checks. Needs root and iproute2; skips with a message otherwise.
//! Run alone with `cargo test --test multihost`.

#[path = "peers/netns.rs"]
mod netns;
mod peers;

use netns::{Host, Net};
use peers::audio::{assert_tone, write_tone};
use peers::baresip::{Baresip, BaresipConfig, Place};
use peers::kamailio::{Kamailio, PASSWORD};
use peers::{read_events, test_dir, Proc};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What the calling side sends.
const CALLER_HZ: f64 = 440.0;
/// What the answering side sends.
const ANSWER_HZ: f64 = 1000.0;
/// Seconds of the other side's tone each recording must hold.
const MIN_TONE_SECS: f64 = 1.5;
/// How long calls last once answered.
const TALK_S: f64 = 3.0;
/// Generous limit for a process to finish on a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(40);
/// The SIP port of listeners; every host has its own port space.
const SIP_PORT: u16 = 5070;

/// `addr:port` as a URI host part (`[v6]:port`).
fn hostport(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// The `wakeline` binary run inside `host`, logging SIP to stderr.
fn wakeline_in(host: &Host) -> Command {
    let mut c = host.command(env!("CARGO_BIN_EXE_wakeline"));
    c.env("RUST_LOG", "debug,wakeline::sip_trace=info");
    c
}

/// One wakeline's files: recording and events.
struct Side {
    record: PathBuf,
    events: PathBuf,
}

impl Side {
    fn new(dir: &Path, name: &str) -> Side {
        Side {
            record: dir.join(format!("{name}.wav")),
            events: dir.join(format!("{name}.ev")),
        }
    }

    /// `--mic tone:HZ --speaker null --record .. --events ..`.
    fn args(&self, hz: f64) -> Vec<String> {
        vec![
            "--mic".into(),
            format!("tone:{hz}"),
            "--speaker".into(),
            "null".into(),
            "--record".into(),
            self.record.display().to_string(),
            "--events".into(),
            self.events.display().to_string(),
            "--sip-trace".into(),
        ]
    }

    fn events(&self) -> Vec<Value> {
        read_events(&self.events)
    }
}

/// The `remote_rtp` of the `media` events: where this side sent its RTP.
fn remote_rtp(events: &[Value]) -> Vec<SocketAddr> {
    events
        .iter()
        .filter(|e| e["event"] == "media")
        .filter_map(|e| e["remote_rtp"].as_str()?.parse().ok())
        .collect()
}

/// The log without terminal colour codes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every `media` event of `side` sent RTP to `ip`, and there was one.
fn assert_rtp_to(who: &str, side: &Side, ip: IpAddr) {
    let to = remote_rtp(&side.events());
    assert!(
        !to.is_empty() && to.iter().all(|r| r.ip() == ip),
        "{who} sent RTP to {to:?}, not to {ip}"
    );
}

/// Every SDP `c=` and `o=` address and every Contact that a wakeline sent (its stderr
/// `--sip-trace`): each must be `ip`, never loopback or unspecified.
fn assert_sent_addresses(ua: &Proc, ip: IpAddr) {
    let log = strip_ansi(&std::fs::read_to_string(&ua.stderr).unwrap_or_default());
    let net = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let want_sdp = format!("IN {net} {ip}");
    let mut sdp_lines = 0;
    for line in log.lines() {
        let line = line.trim();
        if line.starts_with("c=") || line.starts_with("o=") {
            sdp_lines += 1;
            // Both sides' SDP is in the trace (sent and received): ours or the peer's address.
            let addr: Option<IpAddr> = line.rsplit(' ').next().and_then(|a| a.parse().ok());
            assert!(
                addr.is_some_and(|a| !a.is_loopback() && !a.is_unspecified()),
                "{}: loopback or unspecified address in SDP: {line}",
                ua.name
            );
        }
        if line.starts_with("Contact:") && line.contains("wakeline@") {
            assert!(
                !line.contains("0.0.0.0") && !line.contains("[::]") && !line.contains("127.0.0.1"),
                "{}: {line}",
                ua.name
            );
        }
    }
    assert!(sdp_lines >= 4, "{}: no SDP in the trace", ua.name);
    assert!(
        log.contains(&want_sdp),
        "{}: never announced {want_sdp}\n{}",
        ua.name,
        ua.output()
    );
}

/// The call ended after an answer, with 200, exactly once.
fn assert_answered(who: &str, events: &[Value]) {
    let ended: Vec<&Value> = events.iter().filter(|e| e["event"] == "ended").collect();
    assert_eq!(ended.len(), 1, "{who}: {events:#?}");
    assert_eq!(ended[0]["outcome"], "answered", "{who}: {events:#?}");
}

/// (a)/(b): `wakeline listen --bind 0.0.0.0:P` (or `[::]:P`) on host A answers
/// `wakeline call sip:x@A:P` from host B (no `--bind`): tones both ways, and every address in
/// SDP and Contact is a host address.
fn direct_call(v6: bool) {
    let Some(net) = Net::create(2) else { return };
    let (a, b) = (net.host(0), net.host(1));
    let dir = test_dir(if v6 { "mh-direct6" } else { "mh-direct4" });
    let d = dir.path();
    let (la, cb) = (Side::new(d, "listener"), Side::new(d, "caller"));
    let wildcard = if v6 { "[::]" } else { "0.0.0.0" };
    let mut cmd = wakeline_in(a);
    cmd.args(["listen", "--bind", &format!("{wildcard}:{SIP_PORT}")])
        .args(["--answer", "auto", "--max-calls", "1"])
        .args(la.args(ANSWER_HZ));
    let mut listener = Proc::spawn("listener", cmd, d);
    a.wait_tcp(SocketAddr::new(a.addr(v6), SIP_PORT), LIMIT);

    let target = format!("sip:tone@{};transport=tcp", hostport(a.addr(v6), SIP_PORT));
    let mut cmd = wakeline_in(b);
    cmd.args(["call", &target, "--duration", &TALK_S.to_string()])
        .args(cb.args(CALLER_HZ));
    let mut caller = Proc::spawn("caller", cmd, d);
    let status = caller.wait(LIMIT);
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

    assert_answered("caller", &cb.events());
    assert_answered("listener", &la.events());
    // Each side sent its RTP to the other host, at the address its SDP announced.
    assert_rtp_to("caller", &cb, a.addr(v6));
    assert_rtp_to("listener", &la, b.addr(v6));
    assert_sent_addresses(&listener, a.addr(v6));
    assert_sent_addresses(&caller, b.addr(v6));
    let heard = assert_tone(&cb.record, ANSWER_HZ, CALLER_HZ, MIN_TONE_SECS);
    eprintln!("caller heard {ANSWER_HZ} Hz: {heard:?}");
    let heard = assert_tone(&la.record, CALLER_HZ, ANSWER_HZ, MIN_TONE_SECS);
    eprintln!("listener heard {CALLER_HZ} Hz: {heard:?}");
}

/// (a) Two hosts over IPv4.
#[test]
fn direct_call_between_two_hosts_ipv4() {
    direct_call(false);
}

/// (b) Two hosts over IPv6.
#[test]
fn direct_call_between_two_hosts_ipv6() {
    direct_call(true);
}

/// Waits until `side`'s events file has an event of `kind`.
fn wait_event(side: &Side, ua: &Proc, kind: &str, limit: Duration) {
    let start = Instant::now();
    while !side.events().iter().any(|e| e["event"] == kind) {
        assert!(
            start.elapsed() < limit,
            "{}: no {kind} within {limit:?}\n{}",
            ua.name,
            ua.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--registrar sip:K:5060;transport=tcp --user USER --password ..` for Kamailio at `kam`.
fn account(kam: &Kamailio, user: &str) -> Vec<String> {
    vec![
        "--registrar".into(),
        format!("sip:{};transport=tcp", hostport(kam.ip, kam.port)),
        "--user".into(),
        user.into(),
        "--password".into(),
        PASSWORD.into(),
    ]
}

/// (c) Through Kamailio on a third host: alice (`listen --bind 0.0.0.0:P`, registered) on host
/// A is called by bob (`call`, registered) on host B through Kamailio on host K. Both calls
/// ride the control flows; each side announces its own host address and hears the other.
#[test]
fn call_through_kamailio_on_a_third_host() {
    let Some(net) = Net::create(3) else { return };
    let (k, a, b) = (net.host(0), net.host(1), net.host(2));
    let dir = test_dir("mh-kamailio");
    let d = dir.path();
    let kam = Kamailio::start_in(d, k.addr(false), 5060, Some(&k.ns), &[]);
    let (la, cb) = (Side::new(d, "alice"), Side::new(d, "bob"));
    let mut cmd = wakeline_in(a);
    cmd.args(["listen", "--bind", &format!("0.0.0.0:{SIP_PORT}")])
        .args(account(&kam, "alice"))
        .args(["--answer", "auto", "--max-calls", "1"])
        .args(la.args(ANSWER_HZ));
    let mut alice = Proc::spawn("alice", cmd, d);
    wait_event(&la, &alice, "registered", LIMIT);

    let target = format!("sip:alice@{};transport=tcp", kam.ip);
    let mut cmd = wakeline_in(b);
    cmd.args(["call", &target, "--duration", &TALK_S.to_string()])
        .args(account(&kam, "bob"))
        .args(cb.args(CALLER_HZ));
    let mut bob = Proc::spawn("bob", cmd, d);
    let status = bob.wait(LIMIT);
    assert!(
        status.success(),
        "bob: {status}\n{}\n{}\n{}",
        bob.output(),
        alice.output(),
        kam.log()
    );
    let status = alice.wait(LIMIT);
    assert!(status.success(), "alice: {status}\n{}", alice.output());

    assert_answered("bob", &cb.events());
    assert_answered("alice", &la.events());
    // No media anchor in Kamailio: RTP goes host to host.
    assert_rtp_to("bob", &cb, a.addr(false));
    assert_rtp_to("alice", &la, b.addr(false));
    assert_sent_addresses(&alice, a.addr(false));
    assert_sent_addresses(&bob, b.addr(false));
    let heard = assert_tone(&cb.record, ANSWER_HZ, CALLER_HZ, MIN_TONE_SECS);
    eprintln!("bob heard {ANSWER_HZ} Hz: {heard:?}");
    let heard = assert_tone(&la.record, CALLER_HZ, ANSWER_HZ, MIN_TONE_SECS);
    eprintln!("alice heard {CALLER_HZ} Hz: {heard:?}");
    drop(kam);
}

/// baresip's SIP port on its host.
const BARESIP_SIP_PORT: u16 = 5060;
/// baresip's ctrl_tcp port (on the host's 127.0.0.1).
const BARESIP_CTRL_PORT: u16 = 4444;

/// baresip (bob, no registrar) on `host`, sending `hz` from a 48 kHz stereo WAV (Opus).
fn start_baresip(dir: &Path, host: &Host, hz: f64) -> Baresip {
    let source = dir.join("bob-mic.wav");
    write_tone(&source, 48_000, 2, hz, 30.0);
    let cfg = BaresipConfig {
        aor: format!("sip:bob@{}", host.v4),
        password: PASSWORD.into(),
        outbound: None,
        codecs: None,
        source,
    };
    let command = |program: &str| host.command(program);
    let connect = |port: u16| {
        host.run(move || {
            let start = Instant::now();
            loop {
                match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(s) => return s,
                    Err(e) => assert!(start.elapsed() < LIMIT, "baresip's ctrl_tcp on {port}: {e}"),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let place = Place {
        ip: host.addr(false),
        ports: Some((BARESIP_SIP_PORT, BARESIP_CTRL_PORT)),
        command: &command,
        connect: &connect,
    };
    Baresip::start_at(dir, "baresip", &cfg, &place)
}

/// baresip heard `hz`, wakeline's recording holds `other`.
fn assert_baresip_audio(bob: &Baresip, wl: &Side, bob_hz: f64, wl_hz: f64) {
    let heard = assert_tone(&wl.record, bob_hz, wl_hz, MIN_TONE_SECS);
    eprintln!("wakeline heard {bob_hz} Hz: {heard:?}");
    let heard = assert_tone(&bob.heard(), wl_hz, bob_hz, MIN_TONE_SECS);
    eprintln!("baresip heard {wl_hz} Hz: {heard:?}");
}

/// (d) baresip on host B dials `wakeline listen --bind 0.0.0.0:P` on host A directly; audio
/// both ways; wakeline's answer announces host A.
#[test]
fn baresip_on_another_host_calls_wakeline() {
    let Some(net) = Net::create(2) else { return };
    let (a, b) = (net.host(0), net.host(1));
    let dir = test_dir("mh-bs-to-wl");
    let d = dir.path();
    let wl = Side::new(d, "wakeline");
    let mut cmd = wakeline_in(a);
    cmd.args(["listen", "--bind", &format!("0.0.0.0:{SIP_PORT}")])
        .args(["--answer", "auto", "--max-calls", "1"])
        .args(wl.args(CALLER_HZ));
    let mut ua = Proc::spawn("wakeline", cmd, d);
    a.wait_tcp(SocketAddr::new(a.addr(false), SIP_PORT), LIMIT);
    let mut bob = start_baresip(d, b, ANSWER_HZ);
    let target = format!(
        "sip:alice@{};transport=tcp",
        hostport(a.addr(false), SIP_PORT)
    );
    let r = bob.command("dial", &target);
    assert_eq!(r["ok"], true, "dial: {r}");
    bob.wait_event("CALL_ESTABLISHED", LIMIT);
    std::thread::sleep(Duration::from_secs_f64(TALK_S));
    let r = bob.command("hangup", "");
    assert_eq!(r["ok"], true, "hangup: {r}");
    bob.wait_event("CALL_CLOSED", LIMIT);
    let status = ua.wait(LIMIT);
    assert!(
        status.success(),
        "wakeline: {status}\n{}\n{}",
        ua.output(),
        bob.output()
    );
    bob.quit();
    assert_answered("wakeline", &wl.events());
    assert_rtp_to("wakeline", &wl, b.addr(false));
    assert_sent_addresses(&ua, a.addr(false));
    assert_baresip_audio(&bob, &wl, ANSWER_HZ, CALLER_HZ);
}

/// (d) `wakeline call` on host A (no `--bind`) reaches baresip on host B, which answers;
/// audio both ways; wakeline's offer announces host A.
#[test]
fn wakeline_calls_baresip_on_another_host() {
    let Some(net) = Net::create(2) else { return };
    let (a, b) = (net.host(0), net.host(1));
    let dir = test_dir("mh-wl-to-bs");
    let d = dir.path();
    let mut bob = start_baresip(d, b, ANSWER_HZ);
    let wl = Side::new(d, "wakeline");
    let target = format!(
        "sip:bob@{};transport=tcp",
        hostport(b.addr(false), BARESIP_SIP_PORT)
    );
    let mut cmd = wakeline_in(a);
    cmd.args(["call", &target, "--duration", &TALK_S.to_string()])
        .args(wl.args(CALLER_HZ));
    let mut ua = Proc::spawn("wakeline", cmd, d);
    let status = ua.wait(LIMIT);
    assert!(
        status.success(),
        "wakeline: {status}\n{}\n{}",
        ua.output(),
        bob.output()
    );
    bob.wait_event("CALL_CLOSED", LIMIT);
    bob.quit();
    assert_answered("wakeline", &wl.events());
    assert_rtp_to("wakeline", &wl, b.addr(false));
    assert_sent_addresses(&ua, a.addr(false));
    assert_baresip_audio(&bob, &wl, ANSWER_HZ, CALLER_HZ);
}

/// The negative control: a listener forced to announce loopback (`--media-ip 127.0.0.1`) to
/// a caller on another host logs a warning naming both addresses, and the caller hears
/// nothing — the tone checks above do tell a wrong media address.
#[test]
fn loopback_media_toward_another_host_warns_and_carries_no_audio() {
    let Some(net) = Net::create(2) else { return };
    let (a, b) = (net.host(0), net.host(1));
    let dir = test_dir("mh-loopback");
    let d = dir.path();
    let (la, cb) = (Side::new(d, "listener"), Side::new(d, "caller"));
    let mut cmd = wakeline_in(a);
    cmd.args(["listen", "--bind", &format!("0.0.0.0:{SIP_PORT}")])
        .args([
            "--answer",
            "auto",
            "--max-calls",
            "1",
            "--media-ip",
            "127.0.0.1",
        ])
        .args(la.args(ANSWER_HZ));
    let mut listener = Proc::spawn("listener", cmd, d);
    a.wait_tcp(SocketAddr::new(a.addr(false), SIP_PORT), LIMIT);
    let target = format!(
        "sip:tone@{};transport=tcp",
        hostport(a.addr(false), SIP_PORT)
    );
    let mut cmd = wakeline_in(b);
    cmd.args(["call", &target, "--duration", "2"])
        .args(cb.args(CALLER_HZ));
    let mut caller = Proc::spawn("caller", cmd, d);
    // Signaling still works: the call is answered and ends normally.
    assert!(caller.wait(LIMIT).success(), "{}", caller.output());
    assert!(listener.wait(LIMIT).success(), "{}", listener.output());
    let log = strip_ansi(&std::fs::read_to_string(&listener.stderr).unwrap_or_default());
    let warning = format!(
        "announcing loopback media address 127.0.0.1 to a peer at {}",
        b.addr(false)
    );
    assert!(log.contains(&warning), "no warning\n{}", listener.output());
    let heard = peers::audio::tone_tally(&peers::audio::read_wav(&cb.record), ANSWER_HZ, CALLER_HZ);
    assert_eq!(heard.tone, 0, "the caller heard the listener: {heard:?}");
}

/// Waits until something in `host` listens on UDP `port` (asks `ss` there).
fn wait_udp(host: &Host, port: u16) {
    let start = Instant::now();
    loop {
        let out = host
            .command("ss")
            .arg("-Hlun")
            .arg(format!("sport = :{port}"))
            .output();
        if out.is_ok_and(|o| o.status.success() && !o.stdout.is_empty()) {
            return;
        }
        assert!(
            start.elapsed() < LIMIT,
            "nothing on UDP {port} in {}",
            host.ns
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// rtpengine (userspace) on `host`: media on the host's address, the ng control protocol on
/// its 127.0.0.1:2223 for Kamailio; debug log (it says when it learns a peer's address).
fn start_rtpengine(dir: &Path, host: &Host) -> Proc {
    let mut cmd = host.command("rtpengine");
    cmd.args([
        "--config-file=none",
        "--foreground",
        "--log-stderr",
        "--table=-1",
        "--log-level=7",
    ])
    .arg(format!("--interface={}", host.v4))
    .args([
        "--listen-ng=127.0.0.1:2223",
        "--port-min=30000",
        "--port-max=30999",
    ])
    .arg(format!("--pidfile={}", dir.join("rtpengine.pid").display()));
    let p = Proc::spawn("rtpengine", cmd, dir);
    wait_udp(host, 2223);
    p
}

/// (6) NAT: alice on a private network behind a masquerading router registers over TCP to
/// Kamailio (with rtpengine anchoring media) on the public network, where bob is. `nated_calls`:
/// alice calls bob, else bob calls alice. Audio both ways proves symmetric RTP: rtpengine
/// sends alice's audio to the NAT mapping her own RTP packets opened, which leads back only
/// to the socket she sends from.
fn call_across_nat(nated_calls: bool) {
    let Some(mut net) = Net::create(2) else {
        return;
    };
    let (router, private) = net.add_nat(1);
    let (k, b, a) = (net.host(0), net.host(1), &private[0]);
    let dir = test_dir(if nated_calls {
        "mh-nat-out"
    } else {
        "mh-nat-in"
    });
    let d = dir.path();
    let rtpengine = start_rtpengine(d, k);
    let kam = Kamailio::start_in(d, k.addr(false), 5060, Some(&k.ns), &["WITH_RTPENGINE"]);
    let (alice_side, bob_side) = (Side::new(d, "alice"), Side::new(d, "bob"));
    // The callee listens (registered), the caller calls once registered.
    let (callee_host, callee_side, callee_user, caller_host, caller_side, caller_user) =
        if nated_calls {
            (b, &bob_side, "bob", a, &alice_side, "alice")
        } else {
            (a, &alice_side, "alice", b, &bob_side, "bob")
        };
    let mut cmd = wakeline_in(callee_host);
    cmd.args(["listen", "--bind", &format!("0.0.0.0:{SIP_PORT}")])
        .args(account(&kam, callee_user))
        .args(["--answer", "auto", "--max-calls", "1"])
        .args(callee_side.args(ANSWER_HZ));
    let mut callee = Proc::spawn("callee", cmd, d);
    wait_event(callee_side, &callee, "registered", LIMIT);
    let target = format!("sip:{callee_user}@{};transport=tcp", kam.ip);
    let mut cmd = wakeline_in(caller_host);
    cmd.args(["call", &target, "--duration", &TALK_S.to_string()])
        .args(account(&kam, caller_user))
        .args(caller_side.args(CALLER_HZ));
    let mut caller = Proc::spawn("caller", cmd, d);
    let status = caller.wait(LIMIT);
    assert!(
        status.success(),
        "caller: {status}\n{}\n{}\n{}",
        caller.output(),
        callee.output(),
        kam.log()
    );
    assert!(callee.wait(LIMIT).success(), "{}", callee.output());
    assert_answered("caller", &caller_side.events());
    assert_answered("callee", &callee_side.events());
    // Both send to the anchor; each announced its own address (alice: her private one).
    assert_rtp_to("caller", caller_side, k.addr(false));
    assert_rtp_to("callee", callee_side, k.addr(false));
    assert_sent_addresses(&callee, callee_host.addr(false));
    assert_sent_addresses(&caller, caller_host.addr(false));
    let heard = assert_tone(&caller_side.record, ANSWER_HZ, CALLER_HZ, MIN_TONE_SECS);
    eprintln!("caller heard {ANSWER_HZ} Hz: {heard:?}");
    let heard = assert_tone(&callee_side.record, CALLER_HZ, ANSWER_HZ, MIN_TONE_SECS);
    eprintln!("callee heard {CALLER_HZ} Hz: {heard:?}");
    // rtpengine saw alice's RTP come from the router, not from the address in her SDP, and
    // moved its peer to there (debug log): the NAT really was in the path.
    let log = rtpengine.output();
    let learned = log.lines().any(|l| {
        l.contains(&format!("Peer address changed from {}:", a.v4))
            && l.contains(&format!(" to {}:", router.v4))
    });
    assert!(
        learned,
        "rtpengine never learned alice's NAT mapping\n{log}"
    );
    drop(kam);
}

/// (6) A public wakeline calls one behind NAT through Kamailio + rtpengine.
#[test]
fn call_into_nat_through_kamailio_and_rtpengine() {
    call_across_nat(false);
}

/// (6) A wakeline behind NAT calls a public one through Kamailio + rtpengine.
#[test]
fn call_out_of_nat_through_kamailio_and_rtpengine() {
    call_across_nat(true);
}
