//! RFC 3263 end to end (issue 8 §3): the real `wakeline register` binary finds a registrar
//! named by a domain through a real DNS server (dnsmasq on 127.0.0.1, a free port, records
//! given on its command line), fails over from a dead SRV target to a live one, and names
//! every dead target, or the DNS failure, when it cannot register.

mod peers;

use peers::registrar::Registrar;
use peers::{free_port, read_events, test_dir, wakeline, Proc};
use serde_json::Value;
use std::path::{Path, PathBuf};
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
        let port = free_port();
        let mut cmd = std::process::Command::new("dnsmasq");
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
    [
        format!("--srv-host=_sip._tcp.{DOMAIN},{host}.{DOMAIN},{port},{priority},1"),
        format!("--host-record={host}.{DOMAIN},127.0.0.1"),
    ]
}

/// `wakeline register --registrar sip:example.test --dns DNS ...`, staying `for_secs`.
fn register(dir: &Path, dns: &str, for_secs: &str) -> (Proc, PathBuf) {
    let events = dir.join("events.jsonl");
    let mut cmd = wakeline();
    cmd.arg("register")
        .arg("--registrar")
        .arg(format!("sip:{DOMAIN}"))
        .args(["--user", "alice", "--dns", dns, "--for", for_secs])
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
        stderr.contains(&format!("127.0.0.1:{dead} refused")),
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
    let (d1, d2) = (dead_port(), dead_port());
    let mut records = Vec::new();
    records.extend(srv_to("one", d1, 10));
    records.extend(srv_to("two", d2, 20));
    let dns = Dns::start(dir.path(), &records);

    let (ua, events) = register(dir.path(), &dns.addr(), "30");
    let failed = wait_events(&events, 2, LIMIT, &ua, is("registration_failed"));
    let want = format!("connect {DOMAIN}: 127.0.0.1:{d1} refused; 127.0.0.1:{d2} refused");
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

/// DNS that has no records for the domain: the failure says so.
#[test]
fn no_records_is_a_dns_failure() {
    let dir = test_dir("dns-empty");
    let dns = Dns::start(dir.path(), &[]);
    let (ua, events) = register(dir.path(), &dns.addr(), "30");
    let failed = wait_events(&events, 1, LIMIT, &ua, is("registration_failed"));
    assert_eq!(failed[0]["reason"], format!("resolve {DOMAIN}: no records"));
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
