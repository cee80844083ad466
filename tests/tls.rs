//! SIP over TLS (issue 9 §1) with real processes on 127.0.0.1. Each test makes its own CA and
//! certificates with rcgen:
//! - two wakelines over TLS (`listen --tls-bind` + `call sips:...`), tones both ways; only TLS
//!   records on the wire, SIP text in `--pcap`, secrets in `SSLKEYLOGFILE`;
//! - a certificate for the wrong name, an expired one, and one from an unknown CA: each call
//!   fails with the named reason, and a recording proxy in the path sees no readable SIP;
//! - Kamailio with its TLS module as registrar: register over TLS, the flow is cut, wakeline
//!   reconnects over TLS and registers again;
//! - baresip over TLS calls wakeline through that Kamailio: the INVITE arrives on wakeline's
//!   registered TLS flow, tones both ways.

mod peers;

use peers::audio::assert_tone;
use peers::{free_port, read_events, test_dir, wait_listening, wakeline, Proc};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// A test CA: its certificate (PEM file) and what signs leaf certificates.
struct Ca {
    pem: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("wakeline test CA {name}"));
        let cert = params.self_signed(&key).expect("CA certificate");
        let pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, cert.pem()).expect("write CA");
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names` (DNS names or IP literals), valid now or, with `expired`,
    /// only in the past: (certificate file, key file).
    fn leaf(&self, dir: &Path, file: &str, names: &[&str], expired: bool) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        let now = time::OffsetDateTime::now_utc();
        if expired {
            params.not_before = now - time::Duration::days(30);
            params.not_after = now - time::Duration::days(1);
        } else {
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(30);
        }
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let (c, k) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write certificate");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }
}

/// A TCP proxy in front of `target` that records every byte the clients send and can cut
/// every connection it carries.
struct Recorder {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    fn start(target: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let port = listener.local_addr().expect("addr").port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, c, st) = (sent.clone(), conns.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                    c.lock().unwrap().extend([a, b]);
                }
                pipe(&client, &server, Some(s.clone()));
                pipe(&server, &client, None);
            }
        });
        Recorder {
            port,
            sent,
            conns,
            stop,
        }
    }

    /// Closes every connection carried so far (both ends see the flow die).
    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn sent(&self) -> Vec<u8> {
        self.sent.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` in a thread, recording into `record` when given.
fn pipe(from: &TcpStream, to: &TcpStream, record: Option<Arc<Mutex<Vec<u8>>>>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(r) = &record {
                        r.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Whether `bytes` hold SIP in the clear.
fn readable_sip(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    ["SIP/2.0", "INVITE ", "REGISTER ", "Call-ID", "Via:"]
        .iter()
        .any(|w| text.contains(w))
}

/// `wakeline listen` with a TLS listener using `cert`; returns (process, TLS port, events file).
fn tls_listener(dir: &Path, cert: &(PathBuf, PathBuf), extra: &[&str]) -> (Proc, u16, PathBuf) {
    let (port, tls_port) = (free_port(), free_port());
    let events = dir.join("listen.jsonl");
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--tls-bind", &format!("127.0.0.1:{tls_port}")])
        .arg("--tls-cert")
        .arg(&cert.0)
        .arg("--tls-key")
        .arg(&cert.1)
        .args(extra)
        .arg("--events")
        .arg(&events)
        .arg("--sip-trace");
    let ua = Proc::spawn("listener", cmd, dir);
    wait_listening(tls_port, LIMIT);
    (ua, tls_port, events)
}

fn stderr_of(p: &Proc) -> String {
    std::fs::read_to_string(&p.stderr).unwrap_or_default()
}

/// wakeline calls wakeline over TLS (`sips:` to `listen --tls-bind`, the CA given with `--ca`);
/// both hear the other's tone; the messages say TLS in Via and Contact.
#[test]
fn two_wakelines_over_tls_hear_each_other() {
    let dir = test_dir("tls-tones");
    let d = dir.path();
    let ca = Ca::new(d, "good");
    let cert = ca.leaf(d, "server", &["127.0.0.1", "localhost"], false);
    let b_wav = d.join("b.wav");
    let (mut listener, port, events) = tls_listener(
        d,
        &cert,
        &[
            "--mic",
            "tone:1000",
            "--speaker",
            "null",
            "--max-calls",
            "1",
            "--record",
            b_wav.to_str().unwrap_or_default(),
        ],
    );
    let recorder = Recorder::start(SocketAddr::from(([127, 0, 0, 1], port)));
    let mut cmd = wakeline();
    cmd.arg("call")
        .arg(format!("sips:tone@127.0.0.1:{}", recorder.port))
        .arg("--ca")
        .arg(&ca.pem)
        .args(["--mic", "tone:440", "--speaker", "null", "--duration", "3"])
        .arg("--record")
        .arg(d.join("a.wav"))
        .arg("--pcap")
        .arg(d.join("caller.pcap"))
        .arg("--sip-trace")
        .env("SSLKEYLOGFILE", d.join("keys.log"));
    let mut caller = Proc::spawn("caller", cmd, d);
    let status = caller.wait(LIMIT);
    assert!(status.success(), "caller failed\n{}", caller.output());
    let status = listener.wait(Duration::from_secs(20));
    assert!(status.success(), "listener failed\n{}", listener.output());
    let trace = stderr_of(&caller);
    assert!(trace.contains("Via: SIP/2.0/TLS"), "{trace}");
    // A `sips:` request: both Contacts are `sips:` (RFC 5630), the callee's on its TLS port.
    assert!(trace.matches("Contact: <sips:").count() >= 2, "{trace}");
    assert!(
        trace.contains(&format!("Contact: <sips:wakeline@127.0.0.1:{port}>")),
        "{trace}"
    );
    let answered = stderr_of(&listener);
    assert!(
        answered.contains("INVITE sips:tone@127.0.0.1"),
        "{answered}"
    );
    let ev = read_events(&events);
    assert!(ev.iter().any(|e| e["event"] == "incoming"), "{ev:#?}");
    // What crossed the wire was TLS records, never SIP text; the key log has the secrets.
    let sent = recorder.sent();
    assert!(sent.len() > 1000 && sent[0] == 0x16, "{} bytes", sent.len());
    assert!(!readable_sip(&sent), "plaintext SIP on the wire");
    // `--pcap` holds the SIP as decrypted text.
    let pcap = std::fs::read(d.join("caller.pcap")).unwrap_or_default();
    assert!(readable_sip(&pcap), "no SIP text in the pcap");
    let keys = std::fs::read_to_string(d.join("keys.log")).unwrap_or_default();
    assert!(keys.contains("CLIENT_TRAFFIC_SECRET_0") || keys.contains("CLIENT_RANDOM"));
    let heard = assert_tone(&d.join("a.wav"), 1000.0, 440.0, 2.0);
    eprintln!("caller heard 1000 Hz: {heard:?}");
    let heard = assert_tone(&b_wav, 440.0, 1000.0, 2.0);
    eprintln!("listener heard 440 Hz: {heard:?}");
}

/// A wrong name, an expired certificate and an unknown CA: each call, and each registration,
/// fails with the reason in its one stderr line, and the client sent nothing readable as SIP.
#[test]
fn bad_certificates_are_refused_by_name_and_nothing_is_sent_in_plaintext() {
    let dir = test_dir("tls-bad");
    let d = dir.path();
    let ca = Ca::new(d, "trusted");
    let stranger = Ca::new(d, "stranger");
    let cases = [
        (
            "wrong-name",
            ca.leaf(d, "wrong", &["other.example.test"], false),
            "TLS: certificate not valid for name \"127.0.0.1\"",
        ),
        (
            "expired",
            ca.leaf(d, "expired", &["127.0.0.1"], true),
            "TLS: certificate expired",
        ),
        (
            "unknown-ca",
            stranger.leaf(d, "unknown", &["127.0.0.1"], false),
            "TLS: certificate signed by an unknown CA",
        ),
    ];
    for (name, cert, reason) in cases {
        let sub = d.join(name);
        std::fs::create_dir_all(&sub).expect("dir");
        let (mut listener, port, events) = tls_listener(&sub, &cert, &[]);
        let recorder = Recorder::start(SocketAddr::from(([127, 0, 0, 1], port)));
        let mut cmd = wakeline();
        cmd.arg("call")
            .arg(format!("sips:bob@127.0.0.1:{}", recorder.port))
            .arg("--ca")
            .arg(&ca.pem)
            .args(["--mic", "silence", "--speaker", "null", "--duration", "1"]);
        let mut caller = Proc::spawn("caller", cmd, &sub);
        let status = caller.wait(LIMIT);
        let out = stderr_of(&caller);
        assert!(!status.success(), "{name}: the call went through\n{out}");
        let expected = format!("127.0.0.1:{} {reason}", recorder.port);
        let failed = out
            .lines()
            .find(|l| l.starts_with("call failed"))
            .unwrap_or_default();
        assert!(
            failed.contains(&expected),
            "{name}: want {expected:?} in the failure line {failed:?}\n{out}"
        );
        // A registration to the same server fails the same way.
        let mut cmd = wakeline();
        cmd.arg("register")
            .args(["--registrar", &format!("sips:127.0.0.1:{}", recorder.port)])
            .args(["--user", "alice", "--password", "x", "--for", "1"])
            .arg("--ca")
            .arg(&ca.pem);
        let mut reg = Proc::spawn("register", cmd, &sub);
        let status = reg.wait(LIMIT);
        let out = stderr_of(&reg);
        assert!(!status.success(), "{name}: registered\n{out}");
        let failed = out
            .lines()
            .find(|l| l.starts_with("registration failed"))
            .unwrap_or_default();
        assert!(failed.contains(&expected), "{name}: {failed:?}\n{out}");
        let sent = recorder.sent();
        assert!(!sent.is_empty(), "{name}: no handshake at all");
        assert!(!readable_sip(&sent), "{name}: plaintext SIP on the wire");
        listener.terminate(Duration::from_secs(5));
        assert!(
            !read_events(&events)
                .iter()
                .any(|e| e["event"] == "incoming"),
            "{name}: the listener saw a call"
        );
        eprintln!("{name}: {failed}");
    }
}

/// Waits until the events file holds `n` events of `kind`; their `ts` values.
fn wait_for_events(path: &Path, kind: &str, n: usize, ua: &Proc) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let seen: Vec<String> = read_events(path)
            .iter()
            .filter(|e| e["event"] == kind)
            .map(|e| e["ts"].as_str().unwrap_or_default().to_string())
            .collect();
        if seen.len() >= n {
            return seen;
        }
        assert!(
            start.elapsed() < LIMIT,
            "{n} {kind} events not seen: {:#?}\n{}",
            read_events(path),
            ua.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh CA and Kamailio with TLS on a free port, its certificate for 127.0.0.1 from that CA.
fn kamailio_tls(d: &Path) -> (Ca, peers::kamailio::Kamailio, u16) {
    let ca = Ca::new(d, "kam");
    let (cert, key) = ca.leaf(d, "kamailio", &["127.0.0.1"], false);
    let cfg = d.join("tls.cfg");
    peers::kamailio::tls_cfg(&cfg, &cert, &key, &ca.pem);
    let tls_port = free_port();
    let kam = peers::kamailio::Kamailio::start_tls(d, free_port(), tls_port, &cfg);
    (ca, kam, tls_port)
}

/// Kamailio with its tls module as registrar: wakeline registers over TLS (`sips:`), the TLS
/// connection is cut in the middle, and wakeline connects again over TLS and registers again;
/// no SIP ever crosses in the clear. Kamailio sees REGISTERs over `tls`.
#[test]
fn kamailio_tls_registration_survives_a_flow_drop() {
    let dir = test_dir("tls-kamailio");
    let d = dir.path();
    let (ca, kam, tls_port) = kamailio_tls(d);
    let recorder = Recorder::start(SocketAddr::from(([127, 0, 0, 1], tls_port)));
    let events = d.join("register.jsonl");
    let mut cmd = wakeline();
    cmd.arg("register")
        .args(["--registrar", &format!("sips:127.0.0.1:{}", recorder.port)])
        .args(["--user", "alice", "--domain", "127.0.0.1"])
        .args(["--password", peers::kamailio::PASSWORD, "--for", "30"])
        .arg("--ca")
        .arg(&ca.pem)
        .arg("--events")
        .arg(&events)
        .arg("--sip-trace");
    let mut ua = Proc::spawn("register", cmd, d);
    wait_for_events(&events, "registered", 1, &ua);
    recorder.cut();
    wait_for_events(&events, "registered", 2, &ua);
    ua.terminate(Duration::from_secs(10));
    let trace = stderr_of(&ua);
    assert!(trace.contains("Via: SIP/2.0/TLS"), "{trace}");
    assert!(trace.contains("REGISTER sips:127.0.0.1"), "{trace}");
    let log = kam.log();
    assert!(
        log.matches("request REGISTER").count() >= 4 && log.contains("from tls:127.0.0.1"),
        "{log}"
    );
    let sent = recorder.sent();
    assert!(!readable_sip(&sent), "plaintext SIP on the wire");
    let ev = read_events(&events);
    assert!(
        ev.iter()
            .any(|e| e["event"] == "flow_down" || e["event"] == "registration_failed"),
        "the cut was not seen: {ev:#?}"
    );
    for e in ev.iter().filter(|e| e["event"] != "media_stats") {
        eprintln!("{e}");
    }
}

/// Kamailio with TLS as registrar; wakeline (`listen`) registers over TLS, baresip registers
/// over TLS too and calls alice: the INVITE reaches wakeline over its registered TLS flow, and
/// the audio flows both ways.
#[test]
fn baresip_calls_wakeline_over_the_registered_tls_flow() {
    use peers::audio::write_tone;
    use peers::baresip::{Baresip, BaresipConfig, Place};
    let dir = test_dir("tls-baresip");
    let d = dir.path();
    let (ca, kam, tls_port) = kamailio_tls(d);

    let events = d.join("alice.jsonl");
    let heard = d.join("alice-heard.wav");
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{}", free_port())])
        .args(["--registrar", &format!("sips:127.0.0.1:{tls_port}")])
        .args(["--user", "alice", "--domain", "127.0.0.1"])
        .args(["--password", peers::kamailio::PASSWORD])
        .arg("--ca")
        .arg(&ca.pem)
        .args(["--mic", "tone:440", "--speaker", "null", "--max-calls", "1"])
        .arg("--record")
        .arg(&heard)
        .arg("--events")
        .arg(&events)
        .arg("--sip-trace");
    let mut ua = Proc::spawn("alice", cmd, d);
    wait_for_events(&events, "registered", 1, &ua);

    // baresip: its own certificate (key and chain in one file), the CA, a TLS account.
    let (bcert, bkey) = ca.leaf(d, "baresip", &["127.0.0.1"], false);
    let both = d.join("baresip-cert.pem");
    let pem = format!(
        "{}{}",
        std::fs::read_to_string(&bkey).unwrap_or_default(),
        std::fs::read_to_string(&bcert).unwrap_or_default()
    );
    std::fs::write(&both, pem).expect("write baresip certificate");
    let source = d.join("bob-mic.wav");
    write_tone(&source, 48000, 2, 1000.0, 30.0);
    let extra = format!(
        "sip_certificate\t{}\nsip_cafile\t{}\n",
        both.display(),
        ca.pem.display()
    );
    let mut bob = Baresip::start_with(
        d,
        "baresip",
        &BaresipConfig {
            aor: "sip:bob@127.0.0.1;transport=tls".into(),
            password: peers::kamailio::PASSWORD.into(),
            outbound: Some(format!("sip:127.0.0.1:{tls_port};transport=tls")),
            codecs: None,
            source,
            // SDES keys over the TLS flow: wakeline's default policy there is mandatory SRTP.
            mediaenc: Some("srtp-mand".into()),
        },
        &Place::local(),
        &extra,
    );
    bob.wait_registered(Duration::from_secs(20));
    let r = bob.command("dial", "sip:alice@127.0.0.1;transport=tls");
    assert_eq!(r["ok"], true, "dial: {r}");
    bob.wait_event("CALL_ESTABLISHED", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(4));
    let r = bob.command("hangup", "");
    assert_eq!(r["ok"], true, "hangup: {r}");
    bob.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let status = ua.wait(Duration::from_secs(15));
    assert!(
        status.success(),
        "wakeline failed\n{}\n{}\n{}",
        ua.output(),
        bob.output(),
        kam.log()
    );
    bob.quit();
    let trace = stderr_of(&ua);
    // The INVITE came in on the control flow (flow 1, the TLS registration).
    let invite = trace
        .split("recv flow ")
        .find(|m| m.contains("INVITE sip"))
        .unwrap_or_default();
    assert!(
        invite.starts_with("1:"),
        "INVITE not on the control flow:\n{trace}"
    );
    let log = kam.log();
    assert!(
        log.lines()
            .any(|l| l.contains("request INVITE") && l.contains("from tls:")),
        "baresip's INVITE did not come over TLS:\n{log}"
    );
    let ev = read_events(&events);
    assert_eq!(
        ev.iter().filter(|e| e["event"] == "incoming").count(),
        1,
        "{ev:#?}"
    );
    let heard = assert_tone(&heard, 1000.0, 440.0, 2.0);
    eprintln!("wakeline heard 1000 Hz: {heard:?}");
    let bob_heard = assert_tone(&bob.heard(), 440.0, 1000.0, 2.0);
    eprintln!("baresip heard 440 Hz: {bob_heard:?}");
}
