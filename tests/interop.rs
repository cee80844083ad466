//! Interop with real third-party peers on 127.0.0.1: Kamailio 5.6 as registrar and proxy
//! (`tests/interop/kamailio.cfg`) and baresip 1.0 as the far-end phone
//! (`tests/interop/baresip.config`). wakeline is alice, baresip is bob, both register with
//! digest. Every process is stopped by its PID. The tests run one at a time (they measure real
//! audio in real time on a shared machine).

mod peers;

use peers::audio::{assert_tone, write_tone};
use peers::baresip::{Baresip, BaresipConfig};
use peers::kamailio::{Kamailio, PASSWORD};
use peers::{free_port, read_events, strip_ansi, test_dir, wakeline, Proc};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// wakeline's tone (`--mic tone:440`).
const WAKELINE_HZ: f64 = 440.0;
/// baresip's tone (its WAV source).
const BARESIP_HZ: f64 = 1000.0;
/// How long a call carries audio before it is hung up.
const TALK: Duration = Duration::from_secs(4);
/// Seconds of clean tone each side must have heard.
const MIN_TONE_SECS: f64 = 2.0;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn registrar(port: u16) -> String {
    format!("sip:127.0.0.1:{port};transport=tcp")
}

/// The account flags for alice at this Kamailio.
fn alice(port: u16) -> Vec<String> {
    [
        "--registrar",
        &registrar(port),
        "--user",
        "alice",
        "--domain",
        "127.0.0.1",
        "--password",
        PASSWORD,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The files of one wakeline run.
struct WakelineFiles {
    events: PathBuf,
    record: PathBuf,
    summary: PathBuf,
}

impl WakelineFiles {
    fn new(dir: &Path) -> Self {
        WakelineFiles {
            events: dir.join("events.jsonl"),
            record: dir.join("wakeline-heard.wav"),
            summary: dir.join("summary.json"),
        }
    }

    fn media_args(&self) -> Vec<String> {
        let mut v: Vec<String> = ["--mic", "tone:440", "--speaker", "null", "--sip-trace"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (flag, path) in [
            ("--record", &self.record),
            ("--summary", &self.summary),
            ("--events", &self.events),
        ] {
            v.push(flag.into());
            v.push(path.display().to_string());
        }
        v
    }

    fn summary(&self) -> Value {
        // `listen` writes one object per line, `call` one pretty-printed object: take the first.
        let text = std::fs::read_to_string(&self.summary).expect("summary file");
        let mut values = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
        values
            .next()
            .expect("a summary object")
            .expect("summary JSON")
    }
}

/// Waits until the events file satisfies `done`.
fn wait_events(path: &Path, limit: Duration, what: &str, done: impl Fn(&[Value]) -> bool) {
    let start = Instant::now();
    loop {
        let events = read_events(path);
        if done(&events) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "no {what} within {limit:?}: {events:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["event"] == kind).count()
}

/// The bob side of every scenario: a WAV of the right format for the codec, registered at
/// Kamailio over TCP.
fn start_bob(dir: &Path, kam: &Kamailio, codecs: Option<&str>) -> Baresip {
    let source = dir.join("bob-mic.wav");
    match codecs {
        Some(c) if c.starts_with("PCM") => write_tone(&source, 8000, 1, BARESIP_HZ, 30.0),
        _ => write_tone(&source, 48000, 2, BARESIP_HZ, 30.0),
    }
    let mut bob = Baresip::start(
        dir,
        "baresip",
        &BaresipConfig {
            aor: "sip:bob@127.0.0.1".into(),
            password: PASSWORD.into(),
            outbound: Some(registrar(kam.port)),
            codecs: codecs.map(str::to_string),
            source,
            mediaenc: None,
        },
    );
    bob.wait_registered(Duration::from_secs(10));
    bob
}

/// `wakeline listen` as alice at Kamailio, answering at once, one call; waits for `registered`.
fn start_alice_listen(dir: &Path, kam: &Kamailio, files: &WakelineFiles) -> (Proc, u16) {
    let listen_port = free_port();
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{listen_port}")])
        .args(alice(kam.port))
        .args(["--answer", "auto", "--max-calls", "1"])
        .args(files.media_args());
    let ua = Proc::spawn("wakeline", cmd, dir);
    wait_events(&files.events, Duration::from_secs(10), "registered", |e| {
        count(e, "registered") >= 1
    });
    (ua, listen_port)
}

/// One SIP message as `--sip-trace` printed it.
#[derive(Debug)]
struct Traced {
    send: bool,
    flow: u64,
    first_line: String,
    /// The header lines (up to the blank line).
    headers: Vec<String>,
}

/// Every message of wakeline's `--sip-trace` (stderr): direction, flow id, first line.
fn sip_trace(stderr: &Path) -> Vec<Traced> {
    let text = strip_ansi(&std::fs::read_to_string(stderr).unwrap_or_default());
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(head) = line.strip_suffix(':') else {
            continue;
        };
        let mut words = head.split_whitespace().rev();
        let (Some(flow), Some("flow"), Some(dir)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let (Ok(flow), true) = (flow.parse(), dir == "send" || dir == "recv") else {
            continue;
        };
        out.push(Traced {
            send: dir == "send",
            flow,
            first_line: lines.get(i + 1).unwrap_or(&"").to_string(),
            headers: lines[i + 1..]
                .iter()
                .skip(1)
                .take_while(|l| !l.trim().is_empty())
                .map(|l| l.to_string())
                .collect(),
        });
    }
    out
}

/// Every INVITE reached wakeline on the TCP connection it had last registered on (the control
/// flow), and nothing connected to its own listener.
fn assert_invite_on_control_flow(ua: &Proc) {
    let mut register_flow = None;
    let mut invites = 0;
    for t in sip_trace(&ua.stderr) {
        if t.send && t.first_line.starts_with("REGISTER ") {
            register_flow = Some(t.flow);
        }
        if !t.send && t.first_line.starts_with("INVITE ") {
            invites += 1;
            assert_eq!(
                Some(t.flow),
                register_flow,
                "INVITE off the control flow: {t:?}\n{}",
                ua.output()
            );
        }
    }
    assert!(invites > 0, "no INVITE received\n{}", ua.output());
    let log = strip_ansi(&std::fs::read_to_string(&ua.stderr).unwrap_or_default());
    assert!(
        !log.lines().any(|l| l.contains(" accepted")),
        "Kamailio opened a new connection to wakeline's listener"
    );
}

/// RFC 3261 12.1.1: wakeline's 2xx to an INVITE carries the INVITE's Record-Route (else the
/// caller's ACK and BYE bypass Kamailio).
fn assert_record_route_echoed(ua: &Proc) {
    let trace = sip_trace(&ua.stderr);
    let has_rr = |t: &Traced| t.headers.iter().any(|h| h.starts_with("Record-Route:"));
    let invite_rr = trace
        .iter()
        .any(|t| !t.send && t.first_line.starts_with("INVITE ") && has_rr(t));
    assert!(invite_rr, "Kamailio did not record-route the INVITE");
    let ok = trace
        .iter()
        .find(|t| {
            t.send
                && t.first_line.starts_with("SIP/2.0 200")
                && t.headers.iter().any(|h| h.ends_with(" INVITE"))
        })
        .unwrap_or_else(|| panic!("no 200 OK to the INVITE\n{}", ua.output()));
    assert!(
        has_rr(ok),
        "wakeline's 200 OK to the INVITE lacks the Record-Route: {:#?}",
        ok.headers
    );
}

/// The call ended after an answer, with 200, exactly once.
fn assert_answered(events: &[Value]) {
    let ended: Vec<&Value> = events.iter().filter(|e| e["event"] == "ended").collect();
    assert_eq!(ended.len(), 1, "{events:#?}");
    assert_eq!(ended[0]["status"], 200, "{events:#?}");
    assert_eq!(ended[0]["outcome"], "answered", "{events:#?}");
}

/// Two-way audio: baresip's tone in wakeline's recording and wakeline's in baresip's.
fn assert_audio_both_ways(files: &WakelineFiles, bob: &Baresip) {
    let heard = assert_tone(&files.record, BARESIP_HZ, WAKELINE_HZ, MIN_TONE_SECS);
    eprintln!("wakeline heard {BARESIP_HZ} Hz: {heard:?}");
    let heard = assert_tone(&bob.heard(), WAKELINE_HZ, BARESIP_HZ, MIN_TONE_SECS);
    eprintln!("baresip heard {WAKELINE_HZ} Hz: {heard:?}");
}

/// bob dials alice, talks for [`TALK`], hangs up; wakeline (`--max-calls 1`) then exits 0.
fn bob_calls_alice(bob: &mut Baresip, ua: &mut Proc) {
    let r = bob.command("dial", "sip:alice@127.0.0.1");
    assert_eq!(r["ok"], true, "dial: {r}");
    bob.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    assert_record_route_echoed(ua);
    std::thread::sleep(TALK);
    let r = bob.command("hangup", "");
    assert_eq!(r["ok"], true, "hangup: {r}");
    bob.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let status = ua.wait(Duration::from_secs(10));
    assert!(
        status.success(),
        "wakeline listen failed\n{}\n{}",
        ua.output(),
        bob.output()
    );
}

fn baresip_calls_wakeline(name: &str, codecs: Option<&str>, want_codec: &str) {
    let _serial = serial();
    let dir = test_dir(name);
    let kam = Kamailio::start(dir.path(), free_port());
    let files = WakelineFiles::new(dir.path());
    let (mut ua, _) = start_alice_listen(dir.path(), &kam, &files);
    let mut bob = start_bob(dir.path(), &kam, codecs);
    bob_calls_alice(&mut bob, &mut ua);
    bob.quit();

    let events = read_events(&files.events);
    assert_eq!(count(&events, "incoming"), 1, "{events:#?}");
    assert_answered(&events);
    assert_invite_on_control_flow(&ua);
    let summary = files.summary();
    assert_eq!(summary["codec"], want_codec, "{summary}");
    assert_audio_both_ways(&files, &bob);
    drop(kam);
}

/// baresip calls alice through Kamailio; the INVITE comes over wakeline's registration
/// connection; Opus with 1 kHz / 440 Hz both ways.
#[test]
fn baresip_calls_wakeline_through_kamailio_with_opus() {
    baresip_calls_wakeline("bs-to-wl", None, "opus");
}

/// baresip offers PCMU only: wakeline answers PCMU and the audio still flows both ways.
#[test]
fn baresip_limited_to_pcmu_falls_back_to_pcmu() {
    baresip_calls_wakeline("pcmu", Some("PCMU/8000/1"), "pcmu");
}

/// `wakeline call sip:bob@127.0.0.1` as registered alice: through Kamailio to baresip, which
/// answers; wakeline hangs up after `--duration`.
#[test]
fn wakeline_calls_baresip_through_kamailio_with_opus() {
    let _serial = serial();
    let dir = test_dir("wl-to-bs");
    let kam = Kamailio::start(dir.path(), free_port());
    let mut bob = start_bob(dir.path(), &kam, None);
    let files = WakelineFiles::new(dir.path());
    let mut cmd = wakeline();
    cmd.args(["call", "sip:bob@127.0.0.1;transport=tcp"])
        .args(alice(kam.port))
        .args(["--duration", &TALK.as_secs_f64().to_string()])
        .args(files.media_args());
    let mut ua = Proc::spawn("wakeline", cmd, dir.path());
    let status = ua.wait(Duration::from_secs(25));
    assert!(
        status.success(),
        "wakeline call failed\n{}\n{}\n{}",
        ua.output(),
        bob.output(),
        kam.log()
    );
    bob.wait_event("CALL_CLOSED", Duration::from_secs(10));
    bob.quit();

    let events = read_events(&files.events);
    assert_eq!(count(&events, "registered"), 1, "{events:#?}");
    assert_answered(&events);
    assert!(
        bob.messages()
            .iter()
            .any(|m| m["type"] == "CALL_INCOMING" || m["type"] == "CALL_ESTABLISHED"),
        "{:#?}",
        bob.messages()
    );
    assert_eq!(files.summary()["codec"], "opus");
    assert_audio_both_ways(&files, &bob);
}

/// Kamailio restarts while alice is registered: wakeline notices the dropped connection,
/// re-registers on its own, and the next call from baresip is answered.
#[test]
fn wakeline_reregisters_after_kamailio_restart() {
    let _serial = serial();
    let dir = test_dir("restart");
    let mut kam = Kamailio::start(dir.path(), free_port());
    let files = WakelineFiles::new(dir.path());
    let (mut ua, _) = start_alice_listen(dir.path(), &kam, &files);
    kam.restart();
    wait_events(
        &files.events,
        Duration::from_secs(15),
        "second registered",
        |e| count(e, "registered") >= 2,
    );
    let events = read_events(&files.events);
    let first_down = events.iter().position(|e| e["event"] == "flow_down");
    let second_reg = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "registered")
        .nth(1)
        .map(|(i, _)| i);
    assert!(
        matches!((first_down, second_reg), (Some(d), Some(r)) if d < r),
        "flow_down before the second registered: {events:#?}"
    );

    let mut bob = start_bob(dir.path(), &kam, None);
    bob_calls_alice(&mut bob, &mut ua);
    bob.quit();
    let events = read_events(&files.events);
    assert_answered(&events);
    assert_invite_on_control_flow(&ua);
}

/// Captures `wakeline::sip_trace` messages of an in-process user agent.
#[derive(Clone, Default)]
struct TraceCapture(Arc<Mutex<Vec<String>>>);

struct MessageVisitor<'a>(&'a mut String);

impl tracing::field::Visit for MessageVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TraceCapture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() == "wakeline::sip_trace" {
            let mut text = String::new();
            event.record(&mut MessageVisitor(&mut text));
            self.0.lock().unwrap().push(text);
        }
    }
}

/// With a 1 s keep-alive interval and a 500 ms pong timeout, the control flow to Kamailio stays
/// up for 4 s: every CRLFCRLF ping gets Kamailio's CRLF pong (seen in the trace of the flow), and
/// no flow goes down (a missing pong would close the flow within 1.5 s).
#[test]
fn kamailio_answers_crlf_keepalive_pings() {
    let _serial = serial();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(keepalive_scenario());
}

/// The body of [`kamailio_answers_crlf_keepalive_pings`], on a current-thread runtime (so the
/// thread-local trace capture sees the driver's tasks).
async fn keepalive_scenario() {
    use tracing_subscriber::layer::SubscriberExt;
    use wakeline::signaling::message::Uri;
    use wakeline::{Account, Config, Event, UserAgent};

    let dir = test_dir("keepalive");
    let kam = Kamailio::start(dir.path(), free_port());
    let capture = TraceCapture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));

    let config = Config {
        account: Some(Account {
            registrar: Uri::parse(&registrar(kam.port)).unwrap(),
            user: "alice".into(),
            domain: "127.0.0.1".into(),
            password: Some(PASSWORD.into()),
            auth_user: None,
            proxy: None,
        }),
        keepalive_interval: Some(Duration::from_secs(1)),
        pong_timeout: Duration::from_millis(500),
        ..Config::default()
    };
    let (ua, mut events) = UserAgent::builder(config).start().await.unwrap();
    ua.register().await.unwrap();
    let mut control = None;
    let registered = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = events.next().await {
            match ev {
                Event::FlowUp { flow, .. } => control = Some(flow),
                Event::Registered { .. } => return true,
                other => panic!("unexpected before registration: {other:?}"),
            }
        }
        false
    })
    .await;
    assert_eq!(registered, Ok(true));
    let flow = control.expect("flow_up before registered").0;

    let watch = tokio::time::timeout(Duration::from_secs(4), async {
        while let Some(ev) = events.next().await {
            assert!(
                !matches!(
                    ev,
                    Event::FlowDown { .. } | Event::RegistrationFailed { .. }
                ),
                "the control flow failed: {ev:?}\n{}",
                kam.log()
            );
        }
    })
    .await;
    assert!(watch.is_err(), "the event stream ended early");

    let traced = capture.0.lock().unwrap().clone();
    let ping = format!("send flow {flow}:\n");
    let pong = format!("recv flow {flow}:\n");
    let pings = traced.iter().filter(|t| **t == ping).count();
    let pongs = traced.iter().filter(|t| **t == pong).count();
    assert!(pings >= 3, "pings: {pings}\n{traced:#?}");
    assert!(
        pongs + 1 >= pings && pongs >= 3,
        "{pings} pings, {pongs} pongs"
    );
    ua.shutdown().await.unwrap();
}
