//! Calls between hosts on a private network (issue 8 §5): each host is a network namespace on
//! a bridge (`peers/netns.rs`), running the real `wakeline` binary (and Kamailio, rtpengine,
//! baresip). Nothing here is on loopback, so an SDP that announces `127.0.0.1` (or `0.0.0.0`)
//! carries no audio and fails the tone checks (the negative control below shows it does).
//! Needs root and iproute2 (the NAT cases also iptables and rtpengine); skips with a message
//! when not root or without `ip`. Run alone with `cargo test --test multihost`.
#![cfg(target_os = "linux")]

#[path = "peers/netns.rs"]
mod netns;
mod peers;

use netns::{Host, Net};
use peers::audio::{assert_tone, read_wav, tone_tally, write_tone};
use peers::baresip::{Baresip, BaresipConfig, Place};
use peers::kamailio::{Kamailio, PASSWORD};
use peers::{read_events, strip_ansi, test_dir, wait_listening_in, Proc};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tempfile::TempDir;

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
/// Kamailio's SIP port on its host.
const KAMAILIO_PORT: u16 = 5060;
/// baresip's SIP port on its host.
const BARESIP_SIP_PORT: u16 = 5060;
/// baresip's ctrl_tcp port (on the host's 127.0.0.1).
const BARESIP_CTRL_PORT: u16 = 4444;
/// rtpengine's ng control port (on its host's 127.0.0.1, as `tests/interop/kamailio.cfg` says).
const RTPENGINE_NG_PORT: u16 = 2223;

static SERIAL: Mutex<()> = Mutex::new(());

/// A network of `n` hosts, and the right to use it alone: the calls carry real-time audio
/// and are judged by it, so they run one at a time on a small shared machine.
fn network(n: usize) -> Option<(MutexGuard<'static, ()>, Net)> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    Some((serial, Net::create(n)?))
}

/// `addr:port` as a URI host part (`[v6]:port`).
fn hostport(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// One `wakeline` process on a host, with its tone, recording and events file.
struct Ua {
    host: Host,
    proc: Proc,
    /// The tone it sends.
    hz: f64,
    record: PathBuf,
    events: PathBuf,
}

impl Ua {
    /// Starts `wakeline ARGS` on `host`, sending a tone of `hz`, recording what it hears and
    /// logging events and SIP (`--sip-trace`) into `dir`.
    fn start(host: &Host, dir: &Path, name: &str, hz: f64, args: &[String]) -> Ua {
        let (record, events) = (
            dir.join(format!("{name}.wav")),
            dir.join(format!("{name}.ev")),
        );
        let mut cmd = host.command(env!("CARGO_BIN_EXE_wakeline"));
        cmd.env("RUST_LOG", "debug,wakeline::sip_trace=info")
            .args(args)
            .args([
                "--mic",
                &format!("tone:{hz}"),
                "--speaker",
                "null",
                "--sip-trace",
            ])
            .arg("--record")
            .arg(&record)
            .arg("--events")
            .arg(&events);
        Ua {
            host: host.clone(),
            proc: Proc::spawn(name, cmd, dir),
            hz,
            record,
            events,
        }
    }

    /// `listen --bind BIND:5070 --answer auto --max-calls 1 EXTRA`; returns once it listens,
    /// or (with an account in `extra`) once it is registered.
    fn listen(host: &Host, dir: &Path, name: &str, bind: &str, extra: &[String]) -> Ua {
        let mut args: Vec<String> = ["listen", "--bind", &format!("{bind}:{SIP_PORT}")]
            .into_iter()
            .chain(["--answer", "auto", "--max-calls", "1"])
            .map(String::from)
            .collect();
        args.extend_from_slice(extra);
        let ua = Ua::start(host, dir, name, ANSWER_HZ, &args);
        if extra.iter().any(|a| a == "--registrar") {
            ua.wait_event("registered");
        } else {
            wait_listening_in(&host.ns, false, SIP_PORT, LIMIT);
        }
        ua
    }

    /// `call TARGET --duration 3 EXTRA`.
    fn call(host: &Host, dir: &Path, name: &str, target: &str, extra: &[String]) -> Ua {
        let mut args: Vec<String> = ["call", target, "--duration", &TALK_S.to_string()]
            .into_iter()
            .map(String::from)
            .collect();
        args.extend_from_slice(extra);
        Ua::start(host, dir, name, CALLER_HZ, &args)
    }

    fn events(&self) -> Vec<Value> {
        read_events(&self.events)
    }

    /// Waits until the events file has an event of `kind`.
    fn wait_event(&self, kind: &str) {
        let start = Instant::now();
        while !self.events().iter().any(|e| e["event"] == kind) {
            assert!(
                start.elapsed() < LIMIT,
                "{}: no {kind} within {LIMIT:?}\n{}",
                self.proc.name,
                self.proc.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the exit, which must be 0; `more` (other logs) goes into the failure message.
    fn exits_ok(&mut self, more: &dyn Fn() -> String) {
        let status = self.proc.wait(LIMIT);
        assert!(
            status.success(),
            "{}: {status}\n{}\n{}",
            self.proc.name,
            self.proc.output(),
            more()
        );
    }

    /// The call ended after an answer, exactly once.
    fn assert_answered(&self) {
        let events = self.events();
        let ended: Vec<&Value> = events.iter().filter(|e| e["event"] == "ended").collect();
        assert_eq!(ended.len(), 1, "{}: {events:#?}", self.proc.name);
        assert_eq!(
            ended[0]["outcome"], "answered",
            "{}: {events:#?}",
            self.proc.name
        );
    }

    /// Every `media` event sent RTP to `ip` (`remote_rtp`), and there was one.
    fn assert_rtp_to(&self, ip: IpAddr) {
        let to: Vec<SocketAddr> = self
            .events()
            .iter()
            .filter(|e| e["event"] == "media")
            .filter_map(|e| e["remote_rtp"].as_str()?.parse().ok())
            .collect();
        assert!(
            !to.is_empty() && to.iter().all(|r| r.ip() == ip),
            "{} sent RTP to {to:?}, not to {ip}",
            self.proc.name
        );
    }

    /// Every SDP `o=`/`c=` line in its SIP trace (sent and received) holds an address that is
    /// neither loopback nor unspecified, its own SDP announced its host's address (of the
    /// family of `v6`), and no Contact of ours and no Via holds `0.0.0.0`, `[::]` or loopback.
    fn assert_sent_addresses(&self, v6: bool) {
        let ip = self.host.addr(v6);
        let name = &self.proc.name;
        let log = strip_ansi(&std::fs::read_to_string(&self.proc.stderr).unwrap_or_default());
        let mut sdp_lines = 0;
        for line in log.lines().map(str::trim) {
            if line.starts_with("c=") || line.starts_with("o=") {
                sdp_lines += 1;
                let addr: Option<IpAddr> = line.rsplit(' ').next().and_then(|a| a.parse().ok());
                assert!(
                    addr.is_some_and(|a| !a.is_loopback() && !a.is_unspecified()),
                    "{name}: loopback or unspecified address in SDP: {line}"
                );
            }
            if (line.starts_with("Contact:") && line.contains("wakeline@"))
                || line.starts_with("Via:")
            {
                assert!(
                    !["0.0.0.0", "[::]", "127.0.0.1", "[::1]", "::ffff:"]
                        .iter()
                        .any(|bad| line.contains(bad)),
                    "{name}: {line}"
                );
            }
        }
        assert!(sdp_lines >= 4, "{name}: no SDP in the trace");
        let net = if v6 { "IP6" } else { "IP4" };
        assert!(
            log.contains(&format!("IN {net} {ip}")),
            "{name}: never announced IN {net} {ip}\n{}",
            self.proc.output()
        );
    }

    /// Milliseconds from its first `state` event (`calling`) to `connected`: call set-up as
    /// the caller saw it (timestamps are `...THH:MM:SS.mmmZ`; calls here last seconds).
    fn setup_ms(&self) -> Option<f64> {
        let ms = |e: &Value| {
            let t = e["ts"].as_str()?.split('T').nth(1)?.trim_end_matches('Z');
            let mut parts = t.split(':').map(|p| p.parse::<f64>().ok());
            let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
            Some(((h * 60.0 + m) * 60.0 + s) * 1000.0)
        };
        let events = self.events();
        let states: Vec<&Value> = events.iter().filter(|e| e["event"] == "state").collect();
        let start = ms(states.first()?)?;
        let connected = ms(states.iter().find(|e| e["state"] == "connected")?)?;
        Some(connected - start)
    }

    /// Milliseconds from sending the first INVITE to receiving the first 200, from the SIP
    /// trace's timestamps (`...THH:MM:SS.ffffffZ  INFO send flow N:`, then the messages of
    /// that read or write, possibly several).
    fn invite_to_200_ms(&self) -> Option<f64> {
        let log = strip_ansi(&std::fs::read_to_string(&self.proc.stderr).unwrap_or_default());
        let at = |l: &str| -> Option<f64> {
            let t = l.split_whitespace().next()?.split('T').nth(1)?;
            let mut p = t.trim_end_matches('Z').split(':');
            let (h, m, s): (f64, f64, f64) = (
                p.next()?.parse().ok()?,
                p.next()?.parse().ok()?,
                p.next()?.parse().ok()?,
            );
            Some(((h * 60.0 + m) * 60.0 + s) * 1000.0)
        };
        let (mut head, mut sent) = (None, None);
        for line in log.lines() {
            if let Some(t) = at(line) {
                head = Some((t, line.contains(" recv flow ")));
            } else if let Some((t, recv)) = head {
                if !recv && sent.is_none() && line.starts_with("INVITE ") {
                    sent = Some(t);
                }
                if recv && line.starts_with("SIP/2.0 200") {
                    return Some(t - sent?);
                }
            }
        }
        None
    }

    /// Its recording holds `hz` (and not its own tone).
    fn assert_heard(&self, hz: f64) {
        let heard = assert_tone(&self.record, hz, self.hz, MIN_TONE_SECS);
        eprintln!("{} heard {hz} Hz: {heard:?}", self.proc.name);
    }
}

/// A finished call between two wakelines: both exit 0 after one answered call, each sent its
/// RTP to the address it was given (`caller_rtp`, `callee_rtp`: the other host, or the media
/// anchor), announced its own host's address, and heard the other's tone.
fn check_call(
    caller: &mut Ua,
    callee: &mut Ua,
    rtp: (IpAddr, IpAddr),
    v6: bool,
    more: &dyn Fn() -> String,
) {
    let callee_log = callee.proc.output();
    caller.exits_ok(&|| format!("{callee_log}\n{}", more()));
    callee.exits_ok(more);
    for (ua, to) in [(&*caller, rtp.0), (&*callee, rtp.1)] {
        ua.assert_answered();
        ua.assert_rtp_to(to);
        ua.assert_sent_addresses(v6);
    }
    caller.assert_heard(callee.hz);
    callee.assert_heard(caller.hz);
    if let Some(ms) = caller.invite_to_200_ms() {
        eprintln!(
            "{}: INVITE sent → 200 received {ms:.1} ms",
            caller.proc.name
        );
    }
    if let Some(ms) = caller.setup_ms() {
        eprintln!(
            "{}: call set-up (calling → connected) {ms:.0} ms",
            caller.proc.name
        );
    }
}

/// (a)/(b): `wakeline listen --bind WILDCARD:P` (`0.0.0.0` or `[::]`) on host A answers
/// `wakeline call sip:x@A:P` from host B (no `--bind`), over IPv6 if `v6`: tones both ways,
/// each side's RTP to the other host, and every address in SDP, Contact and Via a host address
/// (an IPv4 caller of a dual-stack `[::]` listener is not written `::ffff:a.b.c.d`). SIP goes
/// over `transport` (`tcp`, `udp`).
fn direct_call(wildcard: &str, v6: bool, transport: &str) {
    let Some((_serial, net)) = network(2) else {
        return;
    };
    let (a, b) = (net.host(0), net.host(1));
    let dir = test_dir(&format!("mh-direct{}-{transport}", if v6 { 6 } else { 4 }));
    let d = dir.path();
    let mut callee = Ua::listen(a, d, "listener", wildcard, &[]);
    let target = format!(
        "sip:tone@{};transport={transport}",
        hostport(a.addr(v6), SIP_PORT)
    );
    let mut caller = Ua::call(b, d, "caller", &target, &[]);
    check_call(
        &mut caller,
        &mut callee,
        (a.addr(v6), b.addr(v6)),
        v6,
        &String::new,
    );
}

/// (a) Two hosts over IPv4.
#[test]
fn direct_call_between_two_hosts_ipv4() {
    direct_call("0.0.0.0", false, "tcp");
}

/// (a) Two hosts over IPv4, SIP over UDP (RFC 3261 §18).
#[test]
fn direct_call_between_two_hosts_ipv4_udp() {
    direct_call("0.0.0.0", false, "udp");
}

/// (b) Two hosts over IPv6.
#[test]
fn direct_call_between_two_hosts_ipv6() {
    direct_call("[::]", true, "tcp");
}

/// (a) An IPv4 caller of a dual-stack `listen --bind [::]:P`.
#[test]
fn dual_stack_listener_answers_an_ipv4_caller() {
    direct_call("[::]", false, "tcp");
}

/// `--registrar sip:K:5060;transport=tcp --user USER --password ..` for Kamailio at `kam`.
fn account(kam: &Kamailio, user: &str) -> Vec<String> {
    account_over(kam, user, "tcp")
}

/// [`account`] with the registrar's `transport` parameter `transport`.
fn account_over(kam: &Kamailio, user: &str, transport: &str) -> Vec<String> {
    [
        "--registrar",
        &format!("sip:{};transport={transport}", hostport(kam.ip, kam.port)),
        "--user",
        user,
        "--password",
        PASSWORD,
    ]
    .map(String::from)
    .to_vec()
}

/// Registered alice (`listen --bind 0.0.0.0:P`) on `alice_host` and registered bob (`call`) on
/// `bob_host`, through Kamailio at `kam`; `alice_calls` picks who calls. Both calls ride the
/// control flows. `rtp`: where (caller, callee) must send RTP.
#[allow(clippy::too_many_arguments)]
fn registered_call(
    d: &Path,
    kam: &Kamailio,
    alice_host: &Host,
    bob_host: &Host,
    alice_calls: bool,
    rtp: (IpAddr, IpAddr),
    more: &dyn Fn() -> String,
) {
    let ((callee_host, callee), (caller_host, caller)) = if alice_calls {
        ((bob_host, "bob"), (alice_host, "alice"))
    } else {
        ((alice_host, "alice"), (bob_host, "bob"))
    };
    let mut callee_ua = Ua::listen(callee_host, d, callee, "0.0.0.0", &account(kam, callee));
    let target = format!("sip:{callee}@{};transport=tcp", hostport(kam.ip, kam.port));
    let mut caller_ua = Ua::call(caller_host, d, caller, &target, &account(kam, caller));
    check_call(&mut caller_ua, &mut callee_ua, rtp, kam.ip.is_ipv6(), more);
}

/// (c) Through Kamailio on a third host: bob on host B calls alice on host A through
/// Kamailio on host K; no media anchor, so RTP goes host to host.
#[test]
fn call_through_kamailio_on_a_third_host() {
    let Some((_serial, net)) = network(3) else {
        return;
    };
    let (k, a, b) = (net.host(0), net.host(1), net.host(2));
    let dir = test_dir("mh-kamailio");
    let d = dir.path();
    let kam = Kamailio::start_in(d, k.addr(false), KAMAILIO_PORT, Some(&k.ns), &[]);
    let rtp = (a.addr(false), b.addr(false));
    registered_call(d, &kam, a, b, false, rtp, &|| kam.log());
    drop(kam);
}

/// (c) The same over IPv6: Kamailio listens on its host's IPv6 address only.
#[test]
fn call_through_kamailio_on_a_third_host_ipv6() {
    let Some((_serial, net)) = network(3) else {
        return;
    };
    let (k, a, b) = (net.host(0), net.host(1), net.host(2));
    let dir = test_dir("mh-kamailio6");
    let d = dir.path();
    let kam = Kamailio::start_in(d, k.addr(true), KAMAILIO_PORT, Some(&k.ns), &[]);
    let rtp = (a.addr(true), b.addr(true));
    registered_call(d, &kam, a, b, false, rtp, &|| kam.log());
    drop(kam);
}

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
        mediaenc: None,
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

/// What every wakeline ↔ baresip call must show: wakeline exited 0 after an answered call,
/// sent its RTP to baresip's host, announced its own; each heard the other's tone.
fn check_baresip_call(ua: &mut Ua, bob: &mut Baresip, bob_host: &Host, bob_hz: f64) {
    ua.exits_ok(&|| bob.output());
    bob.wait_event("CALL_CLOSED", LIMIT);
    bob.quit();
    ua.assert_answered();
    ua.assert_rtp_to(bob_host.addr(false));
    ua.assert_sent_addresses(false);
    ua.assert_heard(bob_hz);
    let heard = assert_tone(&bob.heard(), ua.hz, bob_hz, MIN_TONE_SECS);
    eprintln!("baresip heard {} Hz: {heard:?}", ua.hz);
}

/// (d) baresip on host B dials `wakeline listen --bind 0.0.0.0:P` on host A directly.
#[test]
fn baresip_on_another_host_calls_wakeline() {
    let Some((_serial, net)) = network(2) else {
        return;
    };
    let (a, b) = (net.host(0), net.host(1));
    let dir = test_dir("mh-bs-to-wl");
    let d = dir.path();
    let mut ua = Ua::listen(a, d, "wakeline", "0.0.0.0", &[]);
    let mut bob = start_baresip(d, b, CALLER_HZ);
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
    check_baresip_call(&mut ua, &mut bob, b, CALLER_HZ);
}

/// (d) `wakeline call` on host A (no `--bind`) reaches baresip on host B, which answers.
#[test]
fn wakeline_calls_baresip_on_another_host() {
    let Some((_serial, net)) = network(2) else {
        return;
    };
    let (a, b) = (net.host(0), net.host(1));
    let dir = test_dir("mh-wl-to-bs");
    let d = dir.path();
    let mut bob = start_baresip(d, b, ANSWER_HZ);
    let target = format!(
        "sip:bob@{};transport=tcp",
        hostport(b.addr(false), BARESIP_SIP_PORT)
    );
    let mut ua = Ua::call(a, d, "wakeline", &target, &[]);
    check_baresip_call(&mut ua, &mut bob, b, ANSWER_HZ);
}

/// The negative control: a listener forced to announce loopback (`--media-ip 127.0.0.1`) to
/// a caller on another host logs a warning naming both addresses, and the caller hears
/// nothing — the tone checks above do tell a wrong media address.
#[test]
fn loopback_media_toward_another_host_warns_and_carries_no_audio() {
    let Some((_serial, net)) = network(2) else {
        return;
    };
    let (a, b) = (net.host(0), net.host(1));
    let dir = test_dir("mh-loopback");
    let d = dir.path();
    let forced = ["--media-ip", "127.0.0.1"].map(String::from);
    let mut callee = Ua::listen(a, d, "listener", "0.0.0.0", &forced);
    let target = format!(
        "sip:tone@{};transport=tcp",
        hostport(a.addr(false), SIP_PORT)
    );
    let mut caller = Ua::call(b, d, "caller", &target, &[]);
    // Signaling still works: the call is answered and ends normally.
    caller.exits_ok(&String::new);
    callee.exits_ok(&String::new);
    let log = strip_ansi(&std::fs::read_to_string(&callee.proc.stderr).unwrap_or_default());
    let warning = format!(
        "announcing loopback media address 127.0.0.1 to a peer at {}",
        b.addr(false)
    );
    assert!(
        log.contains(&warning),
        "no warning\n{}",
        callee.proc.output()
    );
    let heard = tone_tally(&read_wav(&caller.record), callee.hz, caller.hz);
    assert_eq!(heard.tone, 0, "the caller heard the listener: {heard:?}");
}

/// rtpengine (userspace) on `host`: media on the host's address, the ng control protocol on
/// its 127.0.0.1 for Kamailio; debug log (it says when it learns a peer's address).
fn start_rtpengine(dir: &Path, host: &Host) -> Proc {
    let mut cmd = host.command("rtpengine");
    cmd.args(["--config-file=none", "--foreground", "--log-stderr"])
        .args(["--table=-1", "--log-level=7"])
        .arg(format!("--interface={}", host.v4))
        .arg(format!("--listen-ng=127.0.0.1:{RTPENGINE_NG_PORT}"))
        .args(["--port-min=30000", "--port-max=30999"])
        .arg(format!("--pidfile={}", dir.join("rtpengine.pid").display()));
    let p = Proc::spawn("rtpengine", cmd, dir);
    wait_listening_in(&host.ns, true, RTPENGINE_NG_PORT, LIMIT);
    p
}

/// rtpengine and Kamailio (`WITH_RTPENGINE` and `defines`) on `host`, Kamailio on its IPv4.
fn anchored_kamailio(dir: &Path, host: &Host, defines: &[&str]) -> (Proc, Kamailio) {
    let rtpengine = start_rtpengine(dir, host);
    let mut all = vec!["WITH_RTPENGINE"];
    all.extend_from_slice(defines);
    let kam = Kamailio::start_in(dir, host.addr(false), KAMAILIO_PORT, Some(&host.ns), &all);
    (rtpengine, kam)
}

/// (6) NAT: alice on a private network behind a masquerading router registers over TCP to
/// Kamailio (with rtpengine anchoring media) on the public network, where bob is;
/// `alice_calls` picks the direction. Both send RTP to rtpengine. Audio both ways proves
/// symmetric RTP: rtpengine sends alice's audio to the NAT mapping her own RTP packets opened,
/// which leads back only to the socket she sends from.
fn call_across_nat(alice_calls: bool) {
    let Some((_serial, mut net)) = network(2) else {
        return;
    };
    let (router, private) = net.add_nat(1);
    let (k, b, a) = (net.host(0), net.host(1), &private[0]);
    let dir = test_dir(if alice_calls {
        "mh-nat-out"
    } else {
        "mh-nat-in"
    });
    let d = dir.path();
    let (rtpengine, kam) = anchored_kamailio(d, k, &[]);
    let anchor = k.addr(false);
    let more = || format!("{}\n{}", kam.log(), rtpengine.output());
    registered_call(d, &kam, a, b, alice_calls, (anchor, anchor), &more);
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

/// (6) NAT over UDP (RFC 3581 §9, client side): alice behind the masquerading router
/// registers over UDP to a Kamailio that keeps only her Contact (`CONTACT_ONLY`: no
/// fix_nated_register). Her first 2xx says (Via `received`/`rport`) that the registrar saw
/// the router's address; she re-registers with that Contact and says so (`public_addr` of
/// `registered`). Then bob on the public side calls her through Kamailio (rtpengine anchors
/// media): the INVITE reaches her only through the public Contact; audio both ways.
#[test]
fn udp_registration_behind_nat_learns_its_public_address_and_is_called() {
    let Some((_serial, mut net)) = network(2) else {
        return;
    };
    let (router, private) = net.add_nat(1);
    let (k, b, a) = (net.host(0), net.host(1), &private[0]);
    let dir = test_dir("mh-nat-udp");
    let d = dir.path();
    let (rtpengine, kam) = anchored_kamailio(d, k, &["CONTACT_ONLY"]);
    let more = || format!("{}\n{}", kam.log(), rtpengine.output());
    let mut alice = Ua::listen(
        a,
        d,
        "alice",
        "0.0.0.0",
        &account_over(&kam, "alice", "udp"),
    );
    let registered: Vec<Value> = alice
        .events()
        .into_iter()
        .filter(|e| e["event"] == "registered")
        .collect();
    let public: Option<SocketAddr> = registered
        .first()
        .and_then(|e| e["public_addr"].as_str()?.parse().ok());
    assert!(
        public.is_some_and(|p| p.ip() == router.v4),
        "alice did not learn the router's address {}: {registered:?}\n{}",
        router.v4,
        alice.proc.output()
    );
    let target = format!("sip:alice@{};transport=tcp", hostport(kam.ip, kam.port));
    let mut bob = Ua::call(b, d, "bob", &target, &account(&kam, "bob"));
    let anchor = k.addr(false);
    check_call(&mut bob, &mut alice, (anchor, anchor), false, &more);
    drop(kam);
}

/// The STUN port coturn listens on.
const STUN_PORT: u16 = 3478;

/// coturn as a bare STUN server (`--stun-only`, no TURN, no auth, no TLS) on `host`'s IPv4.
fn start_coturn(dir: &Path, host: &Host) -> Proc {
    let mut cmd = host.command("turnserver");
    cmd.args(["-n", "--stun-only", "--no-cli", "--no-tls", "--no-dtls"])
        .args(["--log-file", "stdout", "--simple-log"])
        .arg(format!("--listening-ip={}", host.v4))
        .arg(format!("--listening-port={STUN_PORT}"))
        .arg(format!(
            "--pidfile={}",
            dir.join("turnserver.pid").display()
        ));
    let p = Proc::spawn("coturn", cmd, dir);
    wait_listening_in(&host.ns, true, STUN_PORT, LIMIT);
    p
}

/// Alice behind the NAT router (which drops unsolicited UDP) calls a `listen --latching off`
/// on the public side directly; `stun`: with `--stun` naming coturn on another public host.
/// Both exit 0 after an answered call. Returns (alice, the listener, the router's address,
/// their folder); the network and coturn are gone by then (the checks read files).
fn call_out_of_nat_direct(tag: &str, stun: bool) -> Option<(Ua, Ua, IpAddr, TempDir)> {
    let (_serial, mut net) = network(2)?;
    let (router, private) = net.add_nat(1);
    router.drop_unsolicited_udp();
    let (s, b, a) = (net.host(0), net.host(1), &private[0]);
    let dir = test_dir(tag);
    let d = dir.path().to_path_buf();
    let coturn = start_coturn(&d, s);
    let no_latching = ["--latching", "off"].map(String::from);
    let mut callee = Ua::listen(b, &d, "listener", "0.0.0.0", &no_latching);
    let target = format!(
        "sip:tone@{};transport=tcp",
        hostport(b.addr(false), SIP_PORT)
    );
    let extra = match stun {
        true => vec!["--stun".to_string(), format!("{}:{STUN_PORT}", s.v4)],
        false => Vec::new(),
    };
    let mut caller = Ua::call(a, &d, "caller", &target, &extra);
    let callee_log = callee.proc.output();
    caller.exits_ok(&|| format!("{callee_log}\n{}", coturn.output()));
    callee.exits_ok(&|| coturn.output());
    caller.assert_answered();
    callee.assert_answered();
    Some((caller, callee, router.addr(false), dir))
}

/// Whether `ua`'s SIP trace has the SDP line `c=IN IP4 ip` exactly.
fn announced(ua: &Ua, ip: IpAddr) -> bool {
    let log = strip_ansi(&std::fs::read_to_string(&ua.proc.stderr).unwrap_or_default());
    let want = format!("c=IN IP4 {ip}");
    log.lines().any(|l| l.trim() == want)
}

/// (4) STUN (RFC 8489) with no media anchor: alice behind the NAT calls a wakeline on the
/// public side directly with `--stun`. Her SDP announces the router's address (the mapping
/// coturn reported), and audio flows both ways though the listener never follows a source:
/// its RTP goes to the SDP address, through the NAT mapping alice's own RTP keeps open.
#[test]
fn stun_behind_nat_announces_the_mapping_and_audio_flows_both_ways() {
    let Some((caller, callee, router, _dir)) = call_out_of_nat_direct("mh-stun", true) else {
        return;
    };
    assert!(announced(&caller, router), "{}", caller.proc.output());
    callee.assert_rtp_to(router);
    caller.assert_heard(callee.hz);
    callee.assert_heard(caller.hz);
}

/// The control: the same call without `--stun` announces alice's private address, which the
/// listener cannot reach, and she hears nothing (nor does it: without latching, her RTP comes
/// from the router, not from the address in her SDP).
#[test]
fn without_stun_the_private_address_is_announced_and_nothing_comes_back() {
    let Some((caller, callee, router, _dir)) = call_out_of_nat_direct("mh-nostun", false) else {
        return;
    };
    assert!(!announced(&caller, router), "{}", caller.proc.output());
    let heard = tone_tally(&read_wav(&caller.record), callee.hz, caller.hz);
    assert_eq!(heard.tone, 0, "alice heard the listener: {heard:?}");
    let heard = tone_tally(&read_wav(&callee.record), caller.hz, callee.hz);
    assert_eq!(heard.tone, 0, "the listener heard alice: {heard:?}");
}
