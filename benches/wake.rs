//! Wake and keep-alive measurements (issue 4), printed as plain numbers: an in-process
//! [`UserAgent`] against the small registrar of `tests/peers/registrar.rs`, on 127.0.0.1.
//!
//! - dark window: from the server dropping the registered flow to the UA being registered again
//!   (its `Registered` event), over 20 drops; also to the registrar's 200 on the new flow; over
//!   TCP, then over TLS (a rustls terminator in front of the registrar, certificates made by
//!   rcgen), where the reconnects resume the TLS session (the count of resumed handshakes is
//!   printed);
//! - bytes on the wire per keep-alive run (TCP payload counted by the registrar);
//! - CPU time per keep-alive run: the UA runs on its own current-thread runtime, whose thread's
//!   on-CPU time (`/proc/thread-self/schedstat`, ns) is read before and after many runs; the
//!   whole process (`/proc/self/stat` utime+stime, which also counts the registrar) is shown too.
//!
//! - idle wake-ups: how often the UA's thread wakes while registered and idle with background-like
//!   settings (voluntary context switches of that thread over a window).
//!
//! Run: `cargo bench --bench wake`.

#[path = "../tests/peers/registrar.rs"]
mod registrar;

use registrar::{Registrar, Rx};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wakeline::signaling::message::Uri;
use wakeline::{Account, Config, Event, UserAgent};

const LIMIT: Duration = Duration::from_secs(10);

/// A UA on its own thread with a current-thread runtime: all of its work (driver, flows, timers)
/// runs on that one thread, so that thread's CPU time is the UA's.
struct Ua {
    events: mpsc::Receiver<(Instant, Event)>,
    /// `/proc/PID/task/TID` of the UA's thread.
    task_dir: String,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Ua {
    fn start(reg: &Registrar, keepalive: Duration, pong_timeout: Duration, expires: u32) -> Ua {
        Ua::start_at(&reg.uri(), None, keepalive, pong_timeout, expires)
    }

    /// A UA registering at `registrar`, trusting the CA file `ca` for TLS.
    fn start_at(
        registrar: &str,
        ca: Option<std::path::PathBuf>,
        keepalive: Duration,
        pong_timeout: Duration,
        expires: u32,
    ) -> Ua {
        let config = Config {
            account: Some(Account {
                registrar: Uri::parse(registrar).expect("uri"),
                user: "u".into(),
                domain: "d".into(),
                password: None,
                auth_user: None,
                proxy: None,
            }),
            local_user: "u".into(),
            keepalive_interval: Some(keepalive),
            pong_timeout,
            register_expires: expires,
            instance_id: Some("urn:uuid:00000000-0000-4000-8000-0000000000b4".into()),
            // The dark window drops the flow 100 ms after each registration: by default that is
            // a flow dying young again and again, which backs off (RFC 5626 §4.5). Each drop
            // here stands for a single drop of a healthy flow, so a flow counts as healthy
            // 50 ms after its 2xx.
            flow_min_lifetime: Duration::from_millis(50),
            ..Config::default()
        };
        let (ev_tx, events) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let tls = wakeline::driver::TlsOptions {
                    ca,
                    ..Default::default()
                };
                let (ua, mut ev) = UserAgent::builder(config)
                    .tls(tls)
                    .start()
                    .await
                    .expect("start");
                ua.register().await.expect("register");
                let me = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
                ready_tx
                    .send(format!("/proc/{}", me.display()))
                    .expect("ready");
                tokio::spawn(async move {
                    while let Some(e) = ev.next().await {
                        if ev_tx.send((Instant::now(), e)).is_err() {
                            break;
                        }
                    }
                });
                let _ = stop_rx.await;
                let _ = tokio::time::timeout(Duration::from_secs(2), ua.shutdown()).await;
            });
        });
        let task_dir = ready_rx.recv().expect("UA started");
        Ua {
            events,
            task_dir,
            thread: Some(thread),
            stop: Some(stop),
        }
    }

    fn wait(&self, pred: impl Fn(&Event) -> bool) -> Instant {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("event in time");
            let (at, e) = self.events.recv_timeout(left).expect("event in time");
            if pred(&e) {
                return at;
            }
        }
    }

    /// Nanoseconds the UA's thread has been on a CPU.
    fn cpu_ns(&self) -> u64 {
        let text =
            std::fs::read_to_string(format!("{}/schedstat", self.task_dir)).expect("schedstat");
        text.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .expect("schedstat field")
    }
}

impl Ua {
    /// How often the UA's thread went to sleep and was woken again (voluntary context switches).
    fn wakeups(&self) -> u64 {
        let text = std::fs::read_to_string(format!("{}/status", self.task_dir)).expect("status");
        text.lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("voluntary_ctxt_switches")
    }
}

impl Drop for Ua {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// utime + stime of the whole process, in clock ticks (USER_HZ, 100 on Linux).
fn process_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after = stat.rsplit_once(')').map(|(_, r)| r).expect("stat format");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn dark_window(drops: usize) {
    let reg = Registrar::start();
    // Default keep-alive (30 s): nothing but the drops happens.
    let ua = Ua::start(&reg, Duration::from_secs(30), Duration::from_secs(10), 600);
    println!("dark window over {drops} server-side drops on loopback, TCP (goal: median < 1 s)");
    measure_dark_window(&reg, &ua, drops);
}

/// The dark window over TLS: the UA connects to `sips:` at a TLS terminator that forwards
/// each TLS connection to the registrar over its own TCP connection; a registrar-side drop
/// closes the TLS connection (close_notify, FIN).
fn dark_window_tls(drops: usize) {
    let reg = Registrar::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let term = tls_terminator::start(dir.path(), reg.port());
    let uri = format!("sips:127.0.0.1:{}", term.port);
    let ua = Ua::start_at(
        &uri,
        Some(term.ca.clone()),
        Duration::from_secs(30),
        Duration::from_secs(10),
        600,
    );
    println!("dark window over {drops} server-side drops on loopback, TLS (rustls, ring)");
    measure_dark_window(&reg, &ua, drops);
    let kinds = term.kinds();
    let resumed = kinds.iter().filter(|k| **k).count();
    println!(
        "  TLS handshakes               : {} ({} resumed; the first is a full one)",
        kinds.len(),
        resumed
    );
}

fn measure_dark_window(reg: &Registrar, ua: &Ua, drops: usize) {
    ua.wait(|e| matches!(e, Event::Registered { .. }));
    let mut to_event = Vec::new();
    let mut to_200 = Vec::new();
    for _ in 0..drops {
        std::thread::sleep(Duration::from_millis(100));
        let oks = reg.register_ok_times().len();
        let (old, dropped) = reg.drop_connection().expect("registered");
        let registered = ua.wait(|e| matches!(e, Event::Registered { .. }));
        to_event.push(registered - dropped);
        let ok = reg
            .register_ok_times()
            .into_iter()
            .skip(oks)
            .find(|(c, _)| *c != old)
            .expect("a 200 on a new connection");
        to_200.push(ok.1 - dropped);
    }
    to_event.sort();
    to_200.sort();
    println!(
        "  drop -> UA Registered event : median {:>10.3?}  p90 {:>10.3?}  worst {:>10.3?}",
        percentile(&to_event, 0.5),
        percentile(&to_event, 0.9),
        to_event[drops - 1]
    );
    println!(
        "  drop -> registrar's 200     : median {:>10.3?}  p90 {:>10.3?}  worst {:>10.3?}",
        percentile(&to_200, 0.5),
        percentile(&to_200, 0.9),
        to_200[drops - 1]
    );
}

fn keepalive_runs(runs_wanted: usize) {
    let interval = Duration::from_millis(20);
    let reg = Registrar::start();
    let ua = Ua::start(&reg, interval, Duration::from_secs(1), 600);
    ua.wait(|e| matches!(e, Event::Registered { .. }));
    let conn = reg.registered_conn().expect("registered");
    let mut ping_on = |r: &registrar::Received| r.conn == conn && matches!(r.what, Rx::Ping);
    let (mut at, _) = reg.wait_from(0, LIMIT, &mut ping_on).expect("first ping");
    let mut pings = 0usize;
    let b0 = reg.bytes(conn).expect("open");
    let cpu0 = ua.cpu_ns();
    let ticks0 = process_ticks();
    let t0 = Instant::now();
    for _ in 0..runs_wanted {
        let (i, _) = reg
            .wait_from(at + 1, LIMIT, &mut ping_on)
            .expect("pings keep coming");
        at = i;
        pings += 1;
    }
    let elapsed = t0.elapsed();
    let cpu1 = ua.cpu_ns();
    let ticks1 = process_ticks();
    let b1 = reg.bytes(conn).expect("still open");
    let runs = pings as f64;
    let flow_downs = ua
        .events
        .try_iter()
        .filter(|(_, e)| matches!(e, Event::FlowDown { .. }))
        .count();
    println!("keep-alive runs: {runs_wanted} CRLF ping/pong cycles every {interval:?} on one flow");
    println!(
        "  bytes on the wire per run   : {:.2} out (UA -> server), {:.2} in (goal 4 out, 2 in)",
        (b1.received - b0.received) as f64 / runs,
        (b1.sent - b0.sent) as f64 / runs
    );
    println!(
        "  UA thread CPU per run       : {:.1} us ({} ns total over {elapsed:.2?})",
        (cpu1 - cpu0) as f64 / runs / 1000.0,
        cpu1 - cpu0
    );
    println!(
        "  whole process CPU per run   : {:.1} us (utime+stime, 10 ms ticks, includes the registrar)",
        (ticks1 - ticks0) as f64 * 10_000.0 / runs
    );
    println!("  flow losses during the runs : {flow_downs}");
}

fn idle_wakeups(window: Duration) {
    let reg = Registrar::start();
    // Background-like settings: keep-alive every 600 s, registration for an hour.
    let ua = Ua::start(
        &reg,
        Duration::from_secs(600),
        Duration::from_secs(10),
        3600,
    );
    ua.wait(|e| matches!(e, Event::Registered { .. }));
    // Let the registration's own traffic settle.
    std::thread::sleep(Duration::from_millis(200));
    let w0 = ua.wakeups();
    let cpu0 = ua.cpu_ns();
    std::thread::sleep(window);
    let w1 = ua.wakeups();
    let cpu1 = ua.cpu_ns();
    println!("idle, registered (keep-alive 600 s, expires 3600 s) for {window:?}:");
    println!(
        "  UA thread wake-ups          : {} ({:.0} per hour if the rate held; keep-alive alone needs 6)",
        w1 - w0,
        (w1 - w0) as f64 * 3600.0 / window.as_secs_f64()
    );
    println!("  UA thread CPU               : {} ns", cpu1 - cpu0);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then a quick smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let (drops, runs) = if full { (20, 250) } else { (3, 10) };
    dark_window(drops);
    dark_window_tls(drops);
    keepalive_runs(runs);
    idle_wakeups(if full {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(1)
    });
}

/// A TLS terminator for the bench: accepts TLS (a fresh CA and a certificate for 127.0.0.1),
/// forwards the plaintext to the registrar, and notes whether each handshake resumed a session.
mod tls_terminator {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};
    use tokio_rustls::rustls;

    pub struct Terminator {
        pub port: u16,
        pub ca: PathBuf,
        resumed: Arc<Mutex<Vec<bool>>>,
    }

    impl Terminator {
        /// Per handshake so far: whether it resumed.
        pub fn kinds(&self) -> Vec<bool> {
            self.resumed.lock().expect("lock").clone()
        }
    }

    pub fn start(dir: &Path, registrar_port: u16) -> Terminator {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).expect("write CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("certificate");
        let key_der =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)
            .expect("server config");
        config.ticketer = rustls::crypto::ring::Ticketer::new().expect("ticketer");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let resumed = Arc::new(Mutex::new(Vec::new()));
        let kinds = resumed.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((tcp, _)) = listener.accept().await {
                    let (acceptor, kinds) = (acceptor.clone(), kinds.clone());
                    // As the UA's control socket is: no Nagle delay on the small SIP writes.
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let resumed = tls.get_ref().1.handshake_kind()
                            == Some(rustls::HandshakeKind::Resumed);
                        kinds.lock().expect("lock").push(resumed);
                        let Ok(mut plain) =
                            tokio::net::TcpStream::connect(("127.0.0.1", registrar_port)).await
                        else {
                            return;
                        };
                        let _ = plain.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            });
        });
        Terminator { port, ca, resumed }
    }
}
