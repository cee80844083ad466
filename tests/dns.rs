//! RFC 3263 end to end (issue 8 §3): the real `wakeline register` binary finds a registrar
//! named by a domain through a real DNS server (dnsmasq on 127.0.0.1, a free port, records
//! given on its command line), fails over from a dead SRV target to a live one, and names
//! every dead target, or the DNS failure, when it cannot register.

mod peers;

use peers::kamailio::{Kamailio, PASSWORD};
use peers::registrar::Registrar;
use peers::{free_port, read_events, test_dir, wakeline, Proc};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);
const DOMAIN: &str = "example.test";

/// dnsmasq serving `records` (dnsmasq options) for `example.test` and nothing else
/// (`--local`: other names in the domain get NXDOMAIN, nothing is forwarded).
struct Dns {
    proc: Proc,
    port: u16,
}

impl Dns {
    fn start(dir: &Path, records: &[String]) -> Dns {
        Dns::start_in(None, dir, records)
    }

    /// In network namespace `ns` (its own 127.0.0.1), or here.
    fn start_in(ns: Option<&Netns>, dir: &Path, records: &[String]) -> Dns {
        let port = free_port();
        let mut cmd = in_ns(ns, "dnsmasq");
        cmd.args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--user=root",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--log-queries",
            "--log-facility=-",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--local=/{DOMAIN}/"))
        .args(records);
        let proc = Proc::spawn("dnsmasq", cmd, dir);
        // It logs "started" once its sockets are bound.
        let start = Instant::now();
        while !std::fs::read_to_string(&proc.stderr)
            .unwrap_or_default()
            .contains("started")
        {
            assert!(
                start.elapsed() < LIMIT,
                "dnsmasq did not start\n{}",
                proc.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Dns { proc, port }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many times dnsmasq was asked this question (`query[SRV] NAME`).
    fn asked(&self, what: &str) -> usize {
        let needle = format!("{what} from");
        std::fs::read_to_string(&self.proc.stderr)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }
}

/// An SRV record for `_sip._tcp.example.test` and an A record for its target.
fn srv_to(host: &str, port: u16, priority: u16) -> [String; 2] {
    srv_proto_to("tcp", host, port, priority)
}

/// An SRV record for `_sip._PROTO.example.test` and an A record for its target.
fn srv_proto_to(proto: &str, host: &str, port: u16, priority: u16) -> [String; 2] {
    [
        format!("--srv-host=_sip._{proto}.{DOMAIN},{host}.{DOMAIN},{port},{priority},1"),
        format!("--host-record={host}.{DOMAIN},127.0.0.1"),
    ]
}

/// `program`, run in network namespace `ns` when given.
fn in_ns(ns: Option<&Netns>, program: &str) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name, program]);
            c
        }
        None => Command::new(program),
    }
}

/// A network namespace with loopback and a link to 198.51.100.0/24 (TEST-NET-2) on which
/// 198.51.100.2 swallows every packet: connecting to it times out. Deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "wl{}d{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Netns { name };
        ns.ip(&["netns", "add", &ns.name]);
        let n = ns.name.as_str();
        ns.ip(&["-n", n, "link", "set", "lo", "up"]);
        // A veth pair, both ends inside: what leaves v0 arrives at v1, which has no address
        // for it and drops it.
        ns.ip(&[
            "-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ]);
        ns.ip(&["-n", n, "addr", "add", "198.51.100.1/24", "dev", "v0"]);
        ns.ip(&["-n", n, "link", "set", "v0", "up"]);
        ns.ip(&["-n", n, "link", "set", "v1", "up"]);
        ns.ip(&[
            "-n",
            n,
            "neigh",
            "add",
            BLACKHOLE,
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "v0",
            "nud",
            "permanent",
        ]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// An address in the namespace that never answers.
const BLACKHOLE: &str = "198.51.100.2";

/// `wakeline register --registrar sip:example.test --dns DNS ...`, staying `for_secs`.
fn register(dir: &Path, dns: &str, for_secs: &str) -> (Proc, PathBuf) {
    register_in(None, dir, &["--dns", dns], for_secs)
}

/// `wakeline register` in `ns`; `how` names the DNS server (`--dns ADDR` or `--config FILE`).
fn register_in(ns: Option<&Netns>, dir: &Path, how: &[&str], for_secs: &str) -> (Proc, PathBuf) {
    let events = dir.join("events.jsonl");
    let mut cmd = in_ns(ns, env!("CARGO_BIN_EXE_wakeline"));
    cmd.env("RUST_LOG", "debug,wakeline::sip_trace=info");
    cmd.arg("register")
        .arg("--registrar")
        .arg(format!("sip:{DOMAIN}"))
        .args(["--user", "alice", "--for", for_secs])
        .args(how)
        .arg("--events")
        .arg(&events)
        .env("WAKELINE_STATE_DIR", dir);
    (Proc::spawn("wakeline", cmd, dir), events)
}

/// Polls the events file until `pick` finds `n` matching events; returns them.
fn wait_events(
    events: &Path,
    n: usize,
    limit: Duration,
    ua: &Proc,
    pick: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let found: Vec<Value> = read_events(events).into_iter().filter(&pick).collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            start.elapsed() < limit,
            "{n} matching events not seen within {limit:?}: {found:?}\n{}",
            ua.output()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is(name: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["event"] == name
}

/// A port on 127.0.0.1 where nothing listens: connecting is refused.
fn dead_port() -> u16 {
    free_port()
}

/// NAPTR -> SRV (dead target first by priority) -> A: the UA tries the dead target, moves to
/// the live one and registers there.
#[test]
fn fails_over_to_the_live_srv_target_and_registers() {
    let dir = test_dir("dns-failover");
    let registrar = Registrar::start();
    let dead = dead_port();
    let mut records = vec![format!(
        "--naptr-record={DOMAIN},10,10,S,SIP+D2T,,_sip._tcp.{DOMAIN}"
    )];
    records.extend(srv_to("dead", dead, 10));
    records.extend(srv_to("live", registrar.port(), 20));
    let dns = Dns::start(dir.path(), &records);

    let started = Instant::now();
    let (mut ua, events) = register(dir.path(), &dns.addr(), "0.3");
    wait_events(&events, 1, LIMIT, &ua, is("registered"));
    let took = started.elapsed();
    println!(
        "register -> registered through NAPTR/SRV failover: {} ms",
        took.as_millis()
    );
    let status = ua.wait(LIMIT);
    assert!(status.success(), "register failed\n{}", ua.output());
    assert!(
        registrar
            .wait_registered(0, None, Duration::from_secs(1))
            .is_some(),
        "the registrar saw no REGISTER"
    );
    let stderr = std::fs::read_to_string(&ua.stderr).unwrap_or_default();
    assert!(
        stderr.contains(&format!("127.0.0.1:{dead} connection refused")),
        "the dead target was not tried first\n{stderr}"
    );
    assert_eq!(dns.asked(&format!("query[NAPTR] {DOMAIN}")), 1);
    assert_eq!(dns.asked(&format!("query[SRV] _sip._tcp.{DOMAIN}")), 1);
}

/// Every SRV target is dead: `registration_failed` names each with its error, and the UA
/// retries, resolving afresh each time.
#[test]
fn all_dead_targets_are_named_and_retried() {
    let dir = test_dir("dns-all-dead");
    let d1 = dead_port();
    // Two different ports, or the two targets would be one.
    let d2 = std::iter::repeat_with(dead_port)
        .find(|p| *p != d1)
        .expect("a second port");
    let mut records = Vec::new();
    records.extend(srv_to("one", d1, 10));
    records.extend(srv_to("two", d2, 20));
    let dns = Dns::start(dir.path(), &records);
    // The DNS server from the configuration file this time.
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[network]\ndns = [\"{}\"]\n", dns.addr())).expect("config");
    let config = config.to_string_lossy().into_owned();
    let (ua, events) = register_in(None, dir.path(), &["--config", &config], "30");
    let failed = wait_events(&events, 2, LIMIT, &ua, is("registration_failed"));
    let want = format!(
        "connect {DOMAIN}: 127.0.0.1:{d1} connection refused; 127.0.0.1:{d2} connection refused"
    );
    for f in &failed {
        assert_eq!(f["status"], 0, "{f}");
        assert_eq!(f["reason"], want.as_str(), "{f}");
    }
    assert!(
        dns.asked(&format!("query[SRV] _sip._tcp.{DOMAIN}")) >= 2,
        "the retry did not resolve again\n{}",
        dns.proc.output()
    );
    assert!(
        read_events(&events)
            .iter()
            .all(|e| e["event"] != "registered"),
        "registered with no live target?"
    );
}

/// In a network namespace: the first SRV target swallows the SYN (the connect times out after
/// its 5 s bound), the second refuses; the failure names both, in order, with their errors.
#[test]
fn a_silent_target_times_out_and_the_next_is_tried() {
    let dir = test_dir("dns-blackhole");
    let ns = Netns::new();
    let dead = dead_port();
    let records = [
        format!("--srv-host=_sip._tcp.{DOMAIN},hole.{DOMAIN},5060,10,1"),
        format!("--host-record=hole.{DOMAIN},{BLACKHOLE}"),
        format!("--srv-host=_sip._tcp.{DOMAIN},dead.{DOMAIN},{dead},20,1"),
        format!("--host-record=dead.{DOMAIN},127.0.0.1"),
    ];
    let dns = Dns::start_in(Some(&ns), dir.path(), &records);
    let started = Instant::now();
    let (ua, events) = register_in(Some(&ns), dir.path(), &["--dns", &dns.addr()], "30");
    let failed = wait_events(&events, 1, LIMIT, &ua, is("registration_failed"));
    let took = started.elapsed();
    assert_eq!(
        failed[0]["reason"],
        format!(
            "connect {DOMAIN}: {BLACKHOLE}:5060 timed out; 127.0.0.1:{dead} connection refused"
        )
    );
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(12),
        "the connect bound is 5 s: {took:?}"
    );
}

/// DNS that has no records for the domain: the failure says so.
#[test]
fn no_records_is_a_dns_failure() {
    let dir = test_dir("dns-empty");
    let dns = Dns::start(dir.path(), &[]);
    let (mut ua, events) = register(dir.path(), &dns.addr(), "30");
    let failed = wait_events(&events, 1, LIMIT, &ua, is("registration_failed"));
    assert_eq!(failed[0]["reason"], format!("resolve {DOMAIN}: no records"));
    // `register` keeps retrying until its `--for` bound, then says why in one line.
    let status = ua.wait(Duration::from_secs(50));
    assert!(!status.success());
    let stderr = std::fs::read_to_string(&ua.stderr).unwrap_or_default();
    let want = format!("registration failed: resolve {DOMAIN}: no records (");
    assert!(
        stderr.lines().any(|l| l.starts_with(&want)),
        "want {want:?}\n{stderr}"
    );
}

/// A DNS server that never answers: the failure says DNS timed out, within the query bounds.
#[test]
fn silent_dns_times_out() {
    let dir = test_dir("dns-silent");
    // Bound and never read: queries go unanswered.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let addr = silent.local_addr().expect("addr").to_string();
    let started = Instant::now();
    let (ua, events) = register(dir.path(), &addr, "30");
    let failed = wait_events(
        &events,
        1,
        Duration::from_secs(40),
        &ua,
        is("registration_failed"),
    );
    assert_eq!(failed[0]["reason"], format!("resolve {DOMAIN}: timed out"));
    println!(
        "DNS timeout reported after {} ms",
        started.elapsed().as_millis()
    );
}

/// `wakeline call sip:tone@example.test`: the call target is found through SRV too, the dead
/// target is skipped, and the call carries audio both ways.
#[test]
fn call_by_domain_fails_over_with_audio_both_ways() {
    call_through_srv("dns-call", "127.0.0.1".parse().unwrap());
}

/// The same with the live target known only by an AAAA record (`::1`): IPv6 signaling.
#[test]
fn call_to_an_aaaa_only_target() {
    call_through_srv("dns-call6", "::1".parse().unwrap());
}

/// A listener on `live_ip`, the SRV records: a dead target (127.0.0.1), then the listener's
/// host (an A or AAAA record for `live_ip`); a call to the domain, tones both ways.
fn call_through_srv(tag: &str, live_ip: std::net::IpAddr) {
    let dir = test_dir(tag);
    let d = dir.path();
    let live = SocketAddr::new(live_ip, free_port());
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &live.to_string()])
        .args([
            "--mic",
            "tone:1000",
            "--speaker",
            "null",
            "--max-calls",
            "1",
        ])
        .arg("--record")
        .arg(d.join("b.wav"));
    let mut listener = Proc::spawn("listener", cmd, d);
    let start = Instant::now();
    while std::net::TcpStream::connect(live).is_err() {
        assert!(
            start.elapsed() < LIMIT,
            "listener not up\n{}",
            listener.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let dead = dead_port();
    let mut records = srv_to("dead", dead, 10).to_vec();
    records.push(format!(
        "--srv-host=_sip._tcp.{DOMAIN},live.{DOMAIN},{},20,1",
        live.port()
    ));
    records.push(format!("--host-record=live.{DOMAIN},{live_ip}"));
    let dns = Dns::start(d, &records);

    let mut cmd = wakeline();
    cmd.arg("call")
        .arg(format!("sip:tone@{DOMAIN}"))
        .args(["--dns", &dns.addr(), "--duration", "3"])
        .args(["--mic", "tone:440", "--speaker", "null", "--record"])
        .arg(d.join("a.wav"));
    let mut caller = Proc::spawn("caller", cmd, d);
    let status = caller.wait(LIMIT);
    assert!(
        status.success(),
        "call failed\n{}\n{}",
        caller.output(),
        listener.output()
    );
    let status = listener.wait(LIMIT);
    assert!(status.success(), "listener failed\n{}", listener.output());
    let stderr = std::fs::read_to_string(&caller.stderr).unwrap_or_default();
    assert!(
        stderr.contains(&format!("127.0.0.1:{dead} connection refused")),
        "the dead target was not tried first\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("remote={live}")) || stderr.contains(&live.to_string()),
        "not connected to {live}\n{stderr}"
    );
    peers::audio::assert_tone(&d.join("a.wav"), 1000.0, 440.0, 1.5);
    peers::audio::assert_tone(&d.join("b.wav"), 440.0, 1000.0, 1.5);
}

/// A call to a domain whose every target is dead fails with one line naming them.
#[test]
fn call_to_a_dead_domain_names_its_targets() {
    let dir = test_dir("dns-call-dead");
    let d = dir.path();
    let dead = dead_port();
    let dns = Dns::start(d, &srv_to("dead", dead, 10));
    let mut cmd = wakeline();
    cmd.arg("call").arg(format!("sip:tone@{DOMAIN}")).args([
        "--dns",
        &dns.addr(),
        "--mic",
        "silence",
        "--speaker",
        "null",
    ]);
    let mut caller = Proc::spawn("caller", cmd, d);
    let status = caller.wait(LIMIT);
    assert!(!status.success(), "{}", caller.output());
    let stderr = std::fs::read_to_string(&caller.stderr).unwrap_or_default();
    let want = format!("call failed: connect {DOMAIN}: 127.0.0.1:{dead} connection refused");
    assert!(stderr.lines().any(|l| l == want), "want {want:?}\n{stderr}");
}

/// Accepts TCP connections and reads everything, answering nothing (a registrar whose SIP
/// stack is wedged). Stops on drop.
struct MuteServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl MuteServer {
    fn start() -> MuteServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok((conn, _)) = listener.accept() {
                    held.push(conn);
                }
                for c in &mut held {
                    let _ = std::io::Read::read(c, &mut [0u8; 4096]);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        MuteServer { port, stop }
    }
}

impl Drop for MuteServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// RFC 3263 §4.3: the first target accepts the connection but never answers the REGISTER;
/// when the transaction times out (Timer F, 32 s) the UA fails over to the next target and
/// registers there.
#[test]
fn a_register_timeout_fails_over_to_the_next_target() {
    let dir = test_dir("dns-register-timeout");
    let mute = MuteServer::start();
    let registrar = Registrar::start();
    let mut records = srv_to("mute", mute.port, 10).to_vec();
    records.extend(srv_to("live", registrar.port(), 20));
    let dns = Dns::start(dir.path(), &records);
    let started = Instant::now();
    // `--for` bounds the whole run: the REGISTER timeout (32 s) and the failover fit in it.
    let (ua, events) = register(dir.path(), &dns.addr(), "36");
    registered_after_timeout(ua, &events, started, "", mute.port);
}

/// Waits for `registered` after a REGISTER timeout (Timer F) on 127.0.0.1:`mute_port`, prints
/// how long register -> registered took, and checks the UA said it failed over.
fn registered_after_timeout(
    mut ua: Proc,
    events: &Path,
    started: Instant,
    over: &str,
    mute_port: u16,
) {
    wait_events(events, 1, Duration::from_secs(45), &ua, is("registered"));
    println!(
        "register -> registered{over} after a REGISTER timeout on the first target: {} ms",
        started.elapsed().as_millis()
    );
    let status = ua.wait(LIMIT);
    assert!(status.success(), "register failed\n{}", ua.output());
    let stderr = std::fs::read_to_string(&ua.stderr).unwrap_or_default();
    assert!(
        stderr.contains(&format!(
            "REGISTER to 127.0.0.1:{mute_port} timed out: failing over"
        )),
        "{stderr}"
    );
}

/// dnsmasq: NAPTR `SIP+D2U` only -> `_sip._udp` SRV -> `kam.example.test` (127.0.0.1), `port`.
fn naptr_udp_to(dir: &Path, port: u16) -> Dns {
    let mut records = vec![format!(
        "--naptr-record={DOMAIN},10,10,S,SIP+D2U,,_sip._udp.{DOMAIN}"
    )];
    records.extend(srv_proto_to("udp", "kam", port, 10));
    Dns::start(dir, &records)
}

/// NAPTR decided UDP: NAPTR and `_sip._udp` SRV were each asked once, `_sip._tcp` never.
fn assert_naptr_chose_udp(dns: &Dns) {
    assert_eq!(dns.asked(&format!("query[NAPTR] {DOMAIN}")), 1);
    assert_eq!(dns.asked(&format!("query[SRV] _sip._udp.{DOMAIN}")), 1);
    assert_eq!(dns.asked(&format!("query[SRV] _sip._tcp.{DOMAIN}")), 0);
}

/// `wakeline register --transport udp` at `sip:example.test` with Kamailio's password.
fn register_udp(dir: &Path, dns: &Dns, for_secs: &str) -> (Proc, PathBuf) {
    let how = [
        "--dns",
        &dns.addr(),
        "--transport",
        "udp",
        "--password",
        PASSWORD,
    ];
    register_in(None, dir, &how, for_secs)
}

/// Over UDP (`--transport udp`, the URI names none): NAPTR `SIP+D2U` -> `_sip._udp` SRV -> A
/// finds Kamailio's UDP port, and the UA registers there.
#[test]
fn udp_registrar_found_by_naptr_and_srv() {
    let dir = test_dir("dns-udp");
    let kam = Kamailio::start(dir.path(), free_port());
    let dns = naptr_udp_to(dir.path(), kam.port);
    let started = Instant::now();
    let (mut ua, events) = register_udp(dir.path(), &dns, "0.3");
    wait_events(&events, 1, LIMIT, &ua, is("registered"));
    println!(
        "register -> registered over UDP through NAPTR/SRV: {} ms",
        started.elapsed().as_millis()
    );
    let status = ua.wait(LIMIT);
    assert!(status.success(), "register failed\n{}", ua.output());
    let stderr = std::fs::read_to_string(&ua.stderr).unwrap_or_default();
    // The core asked for a UDP flow, and it came up toward Kamailio's port.
    assert!(
        stderr.contains("transport=udp") && !stderr.contains("transport=tcp"),
        "not over UDP\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("remote: 127.0.0.1:{} }}", kam.port)),
        "{stderr}"
    );
    assert_naptr_chose_udp(&dns);
}

/// Over UDP with no UDP records (only `_sip._tcp`): the failure names the DNS cause.
#[test]
fn udp_without_udp_records_is_a_dns_failure() {
    let dir = test_dir("dns-udp-none");
    let dns = Dns::start(dir.path(), &srv_to("tcp", 5060, 10));
    let (ua, events) = register_udp(dir.path(), &dns, "30");
    let failed = wait_events(&events, 1, LIMIT, &ua, is("registration_failed"));
    assert_eq!(failed[0]["reason"], format!("resolve {DOMAIN}: no records"));
    assert!(dns.asked(&format!("query[SRV] _sip._udp.{DOMAIN}")) >= 1);
}

/// RFC 3263 §4.3 over UDP: the first `_sip._udp` target swallows every datagram; the REGISTER
/// times out (Timer F, 32 s), the UA puts that target last, resolves again and registers at
/// Kamailio, the second target.
#[test]
fn udp_register_timeout_fails_over_to_the_next_target() {
    let dir = test_dir("dns-udp-timeout");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let silent_port = silent.local_addr().expect("addr").port();
    let kam = Kamailio::start(dir.path(), free_port());
    let mut records = srv_proto_to("udp", "mute", silent_port, 10).to_vec();
    records.extend(srv_proto_to("udp", "kam", kam.port, 20));
    let dns = Dns::start(dir.path(), &records);
    let started = Instant::now();
    let (ua, events) = register_udp(dir.path(), &dns, "38");
    registered_after_timeout(ua, &events, started, " over UDP", silent_port);
    assert!(dns.asked(&format!("query[SRV] _sip._udp.{DOMAIN}")) >= 2);
    drop(silent);
}

/// `wakeline register --registrar sip:example.test` with Kamailio's password and no
/// `--transport`: DNS picks the transport. Registers, exits 0, and returns its stderr.
fn register_picked(dir: &Path, dns: &Dns) -> String {
    let how = ["--dns", &dns.addr(), "--password", PASSWORD, "--sip-trace"];
    let (mut ua, events) = register_in(None, dir, &how, "0.3");
    wait_events(&events, 1, LIMIT, &ua, is("registered"));
    let status = ua.wait(LIMIT);
    assert!(status.success(), "register failed\n{}", ua.output());
    std::fs::read_to_string(&ua.stderr).unwrap_or_default()
}

/// Whether the REGISTERs went over `via` (`UDP`, `TCP`): the SIP trace shows their Via and
/// Contact (and the responses echo the Via).
fn registered_over(stderr: &str, via: &str) -> bool {
    let contact = format!("transport={}", via.to_ascii_lowercase());
    let top = format!("Via: SIP/2.0/{via} ");
    stderr.lines().any(|l| l.starts_with(&top))
        && stderr
            .lines()
            .any(|l| l.starts_with("Contact:") && l.contains(&contact))
}

/// RFC 3263 §4.1 with no transport anywhere (URI, `--transport`, config): the NAPTR records
/// offer only `SIP+D2U`, so the UA registers at Kamailio over UDP, though Kamailio takes TCP on
/// the same port and TCP is our default.
#[test]
fn naptr_picks_udp_when_nothing_names_a_transport() {
    let dir = test_dir("dns-pick-udp");
    let kam = Kamailio::start(dir.path(), free_port());
    let dns = naptr_udp_to(dir.path(), kam.port);
    let stderr = register_picked(dir.path(), &dns);
    assert!(registered_over(&stderr, "UDP"), "not over UDP\n{stderr}");
    assert!(!registered_over(&stderr, "TCP"), "{stderr}");
    assert_naptr_chose_udp(&dns);
}

/// No NAPTR, only `_sip._tcp` SRV records (and Kamailio on UDP and TCP at that port): the SRV
/// lookups pick TCP; `_sip._udp` was asked and had nothing.
#[test]
fn tcp_srv_alone_picks_tcp() {
    let dir = test_dir("dns-pick-tcp");
    let kam = Kamailio::start(dir.path(), free_port());
    let dns = Dns::start(dir.path(), &srv_to("kam", kam.port, 10));
    let stderr = register_picked(dir.path(), &dns);
    assert!(registered_over(&stderr, "TCP"), "not over TCP\n{stderr}");
    assert!(!registered_over(&stderr, "UDP"), "{stderr}");
    assert_eq!(dns.asked(&format!("query[SRV] _sip._udp.{DOMAIN}")), 1);
}

/// RFC 3263 §4.3 over UDP without waiting for Timer F: the first `_sip._udp` target is a
/// closed port, which answers the REGISTER with ICMP port unreachable; the UA fails over at
/// once (IP_RECVERR on its SIP UDP socket) and registers at Kamailio, the second target.
#[test]
fn udp_port_unreachable_fails_over_before_timer_f() {
    let dir = test_dir("dns-udp-unreachable");
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let dead = closed.local_addr().expect("addr").port();
    drop(closed);
    let kam = Kamailio::start(dir.path(), free_port());
    let mut records = srv_proto_to("udp", "dead", dead, 10).to_vec();
    records.extend(srv_proto_to("udp", "kam", kam.port, 20));
    let dns = Dns::start(dir.path(), &records);
    let started = Instant::now();
    let (mut ua, events) = register_udp(dir.path(), &dns, "3");
    wait_events(&events, 1, LIMIT, &ua, is("registered"));
    let took = started.elapsed();
    println!(
        "register -> registered over UDP after ICMP port unreachable on the first target: {} ms",
        took.as_millis()
    );
    assert!(
        took < Duration::from_secs(3),
        "not before Timer F: {took:?}"
    );
    let status = ua.wait(LIMIT);
    assert!(status.success(), "register failed\n{}", ua.output());
    let stderr = std::fs::read_to_string(&ua.stderr).unwrap_or_default();
    let want = format!("REGISTER to 127.0.0.1:{dead} got ICMP port unreachable: failing over");
    assert!(stderr.contains(&want), "want {want:?}\n{stderr}");
}
