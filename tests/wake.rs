//! Wake, reconnect and keep-alive end to end (issue 4): the real `wakeline listen` binary (and the
//! library in-process for keep-alive) against the small registrar in `tests/peers/registrar.rs`
//! on 127.0.0.1.

mod peers;

use peers::inproc::InProcess;
use peers::registrar::{contact_param, Leg, Received, Registrar, Rx};
use peers::{free_port, read_events, test_dir, wakeline, Proc};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wakeline::driver::MediaOptions;
use wakeline::signaling::message::{HeaderName, Method};
use wakeline::{Config, Event};

const LIMIT: Duration = Duration::from_secs(10);

/// `wakeline listen` registered with `reg`, answering after 0.3 s of ringing.
fn start_listen(reg: &Registrar, dir: &std::path::Path) -> Proc {
    let mut cmd = wakeline();
    cmd.env("WAKELINE_STATE_DIR", dir)
        .args(["listen", "--bind", &format!("127.0.0.1:{}", free_port())])
        .args(["--registrar", &reg.uri(), "--user", "u", "--domain", "d"])
        .args(["--answer", "ring", "--answer-after", "0.3"])
        .args(["--mic", "silence", "--speaker", "null", "--sip-trace"])
        .arg("--events")
        .arg(dir.join("events.jsonl"));
    Proc::spawn("wakeline", cmd, dir)
}

/// The first REGISTER on a connection other than `not_on`, from log index `from`.
fn registered(reg: &Registrar, ua: &Proc, from: usize, not_on: Option<u64>) -> Received {
    reg.wait_registered(from, not_on, LIMIT)
        .unwrap_or_else(|| panic!("no REGISTER (not on {not_on:?})\n{}", ua.output()))
}

/// `(+sip.instance, reg-id)` of a REGISTER's Contact.
fn outbound_ids(r: &Received) -> (String, String) {
    let req = r.request(&Method::Register).expect("a REGISTER");
    let contact = req.headers.get(&HeaderName::Contact).expect("Contact");
    (
        contact_param(contact, "+sip.instance").expect("+sip.instance"),
        contact_param(contact, "reg-id").expect("reg-id"),
    )
}

/// Waits for the INVITE's 180 and 200 and sends the ACK. Returns the 180's arrival.
fn answered(leg: &mut Leg, ua: &Proc) -> Received {
    let ringing = leg
        .wait_response(Method::Invite, 180, LIMIT)
        .unwrap_or_else(|| panic!("no 180 for {}\n{}", leg.call_id, ua.output()));
    let ok = leg
        .wait_response(Method::Invite, 200, LIMIT)
        .unwrap_or_else(|| panic!("no 200 for {}\n{}", leg.call_id, ua.output()));
    let ok = ok.response().expect("a response").clone();
    assert!(!ok.body.is_empty(), "the 200 carries an SDP answer");
    leg.ack(&ok);
    ringing
}

/// BYE on the currently registered connection; asserts its 200.
fn hang_up(leg: &mut Leg, ua: &Proc) {
    leg.bye();
    assert!(
        leg.wait_response(Method::Bye, 200, LIMIT).is_some(),
        "no 200 to BYE for {}\n{}",
        leg.call_id,
        ua.output()
    );
}

/// A whole call: INVITE, 180, 200, ACK, a short talk, BYE, 200.
fn full_call(reg: &Registrar, ua: &Proc) -> String {
    let mut leg = reg.send_invite();
    answered(&mut leg, ua);
    let before = reg.rtp_packets();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        reg.rtp_packets() > before,
        "the UA sends RTP while the call is up"
    );
    hang_up(&mut leg, ua);
    leg.call_id.clone()
}

/// Waits until the events file shows `incoming` and `ended` for `call_id`; returns the ended ones.
fn ended_events(dir: &std::path::Path, call_id: &str, ua: &Proc) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let events = read_events(&dir.join("events.jsonl"));
        let of_call = |kind: &str| -> Vec<serde_json::Value> {
            events
                .iter()
                .filter(|e| e["event"] == kind && e["call_id"] == call_id)
                .cloned()
                .collect()
        };
        let ended = of_call("ended");
        if !ended.is_empty() {
            assert_eq!(of_call("incoming").len(), 1, "one incoming for {call_id}");
            // Give a duplicate a moment to show up before judging.
            std::thread::sleep(Duration::from_millis(100));
            let again = read_events(&dir.join("events.jsonl"));
            return again
                .into_iter()
                .filter(|e| e["event"] == "ended" && e["call_id"] == call_id)
                .collect();
        }
        assert!(
            start.elapsed() < LIMIT,
            "no ended event for {call_id}\n{events:#?}\n{}",
            ua.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGCONT to `pid` the moment a line is written to its stdin: a shell started in advance,
/// so that the instant we take is within tens of microseconds of the signal.
struct Continuer(std::process::Child);

impl Continuer {
    fn new(pid: u32) -> Continuer {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("read _; kill -CONT {pid}"))
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh");
        Continuer(child)
    }

    /// Fires; returns the instant just before the write.
    fn fire(mut self) -> Instant {
        let mut stdin = self.0.stdin.take().expect("stdin");
        let at = Instant::now();
        stdin.write_all(b"go\n").expect("write to sh");
        drop(stdin);
        assert!(self.0.wait().expect("sh").success(), "kill -CONT failed");
        at
    }
}

fn signal(sig: &str, pid: u32) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// SIGSTOP the registered UA, deliver an INVITE on its flow, SIGCONT 2 s later: 180 comes right
/// after the wake (100 Trying only if the UA took longer than its Trying time to ring, and then
/// before the 180), the call completes, and the events file has it. Prints wake-to-180.
#[test]
fn sigstop_invite_sigcont_completes_the_call() {
    let dir = test_dir("wake-sigstop");
    let reg = Registrar::start();
    let mut ua = start_listen(&reg, dir.path());
    registered(&reg, &ua, 0, None);
    let pid = ua.pid().expect("running");

    let mut wake_to_180 = Vec::new();
    for run in 0..3 {
        signal("STOP", pid);
        let continuer = Continuer::new(pid);
        let mut leg = reg.send_invite();
        // Nothing may come back while the UA is stopped.
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            leg.wait_response(Method::Invite, 100, Duration::ZERO)
                .is_none(),
            "a stopped UA answered"
        );
        let woke = continuer.fire();
        let ringing = answered(&mut leg, &ua);
        assert!(ringing.at > woke, "180 came after SIGCONT");
        if let Some(trying) = leg.wait_response(Method::Invite, 100, Duration::ZERO) {
            assert!(
                trying.at > woke && trying.at <= ringing.at,
                "100 after the wake, before 180"
            );
        }
        wake_to_180.push(ringing.at - woke);
        std::thread::sleep(Duration::from_millis(100));
        hang_up(&mut leg, &ua);
        let ended = ended_events(dir.path(), &leg.call_id, &ua);
        assert_eq!(ended.len(), 1, "run {run}: one ended event: {ended:?}");
        assert_eq!(ended[0]["status"], 200, "run {run}: answered: {ended:?}");
    }
    eprintln!(
        "after SIGCONT: wake-to-180 median {:?} (all {wake_to_180:?})",
        median(wake_to_180.clone())
    );
    // The goal is 5 ms; a loaded CI machine running a debug build gets slack.
    assert!(median(wake_to_180) < Duration::from_millis(500));
    ua.terminate(LIMIT);
}

/// The server drops the registered connection while idle: the UA reconnects at once and
/// re-registers on a new connection with the same `+sip.instance` and `reg-id`; the next call is
/// answered.
#[test]
fn idle_flow_drop_reregisters_and_next_call_is_answered() {
    let dir = test_dir("wake-idle-drop");
    let reg = Registrar::start();
    let mut ua = start_listen(&reg, dir.path());
    let first = registered(&reg, &ua, 0, None);
    std::thread::sleep(Duration::from_millis(300));

    let from = reg.log_len();
    let (old, dropped_at) = reg.drop_connection().expect("a registered connection");
    assert_eq!(old, first.conn);
    let again = registered(&reg, &ua, from, Some(old));
    assert_ne!(again.conn, old, "a new connection");
    assert_eq!(outbound_ids(&first), outbound_ids(&again));
    let dark = again.at - dropped_at;
    eprintln!("idle drop: REGISTER on the new flow {dark:?} after the drop");
    assert!(dark < Duration::from_secs(2), "reconnect took {dark:?}");

    // Wait for the 200 to have been written before calling.
    std::thread::sleep(Duration::from_millis(100));
    let call = full_call(&reg, &ua);
    let ended = ended_events(dir.path(), &call, &ua);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["status"], 200);
    ua.terminate(LIMIT);
}

/// The server dies in the middle of the first two registrations (the connection closes instead
/// of a 200): the UA retries on new connections, registers on the third, and takes a call.
#[test]
fn flow_drop_during_a_register_transaction_is_retried() {
    let dir = test_dir("wake-register-drop");
    let reg = Registrar::start();
    reg.drop_next_registers(2);
    let mut ua = start_listen(&reg, dir.path());
    let first = registered(&reg, &ua, 0, None);
    let second = registered(&reg, &ua, 0, Some(first.conn));
    let third = reg
        .wait_from(0, LIMIT, &mut |r| {
            r.request(&Method::Register).is_some() && r.conn != first.conn && r.conn != second.conn
        })
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("no third REGISTER\n{}", ua.output()));
    assert_eq!(outbound_ids(&first), outbound_ids(&third));
    assert_eq!(
        reg.registered_conn(),
        Some(third.conn),
        "answered this time"
    );
    eprintln!(
        "REGISTER retries after drops: +{:?}, +{:?}",
        second.at - first.at,
        third.at - second.at
    );
    std::thread::sleep(Duration::from_millis(100));
    let call = full_call(&reg, &ua);
    assert_eq!(ended_events(dir.path(), &call, &ua).len(), 1);
    ua.terminate(LIMIT);
}

/// The server goes away (listener and connections) for a second and comes back on the same port:
/// the UA's retries find it and it registers again.
#[test]
fn server_restart_is_rejoined() {
    let dir = test_dir("wake-restart");
    let mut reg = Registrar::start();
    let mut ua = start_listen(&reg, dir.path());
    let first = registered(&reg, &ua, 0, None);
    reg.stop();
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let from = reg.log_len();
    reg.restart();
    let again = registered(&reg, &ua, from, Some(first.conn));
    eprintln!(
        "server restart: registered again {:?} after the stop",
        again.at - stopped
    );
    assert_eq!(outbound_ids(&first), outbound_ids(&again));
    std::thread::sleep(Duration::from_millis(100));
    let call = full_call(&reg, &ua);
    assert_eq!(ended_events(dir.path(), &call, &ua).len(), 1);
    ua.terminate(LIMIT);
}

/// Drop during an answered call, the part that holds on the base code: the UA re-registers, the
/// dropped call ends exactly once (whatever its fate), and the next call is answered.
#[test]
fn flow_drop_during_a_call_reregisters_and_next_call_is_answered() {
    let dir = test_dir("wake-call-drop");
    let reg = Registrar::start();
    let mut ua = start_listen(&reg, dir.path());
    let first = registered(&reg, &ua, 0, None);
    let mut leg = reg.send_invite();
    answered(&mut leg, &ua);
    std::thread::sleep(Duration::from_millis(300));

    let from = reg.log_len();
    let (old, _) = reg.drop_connection().expect("registered");
    let again = registered(&reg, &ua, from, Some(old));
    assert_eq!(outbound_ids(&first), outbound_ids(&again));
    std::thread::sleep(Duration::from_millis(100));
    // Whatever happened to the first call, the BYE gets a final answer (200, or 481 when the call
    // did not survive the flow) and the call ended exactly once.
    leg.bye();
    let bye_answer = reg.wait_for(LIMIT, |r| {
        r.response().is_some_and(|resp| {
            resp.headers.call_id() == Some(leg.call_id.as_str())
                && resp.headers.cseq().is_some_and(|c| c.method == Method::Bye)
        })
    });
    assert!(bye_answer.is_some(), "BYE unanswered\n{}", ua.output());
    assert_eq!(ended_events(dir.path(), &leg.call_id, &ua).len(), 1);

    let call = full_call(&reg, &ua);
    let ended = ended_events(dir.path(), &call, &ua);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["status"], 200);
    ua.terminate(LIMIT);
}

/// The full issue-4 requirement: the call keeps going across the flow loss — a BYE over the NEW
/// connection gets 200 and the call ends answered, by that BYE.
#[test]
fn call_survives_a_flow_drop() {
    let dir = test_dir("wake-call-survives");
    let reg = Registrar::start();
    let mut ua = start_listen(&reg, dir.path());
    registered(&reg, &ua, 0, None);
    let mut leg = reg.send_invite();
    answered(&mut leg, &ua);
    std::thread::sleep(Duration::from_millis(300));

    let from = reg.log_len();
    let (old, _) = reg.drop_connection().expect("registered");
    let again = registered(&reg, &ua, from, Some(old));
    std::thread::sleep(Duration::from_millis(500));
    // Not ended by the drop.
    let events = read_events(&dir.path().join("events.jsonl"));
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "ended" && e["call_id"] == leg.call_id.as_str()),
        "the call ended on flow loss: {events:#?}"
    );
    // The media kept going across the loss.
    let before = reg.rtp_packets();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        reg.rtp_packets() > before + 5,
        "RTP flows after the reconnect"
    );
    hang_up(&mut leg, &ua);
    let ok = leg
        .wait_response(Method::Bye, 200, Duration::ZERO)
        .expect("200 to BYE");
    assert_eq!(ok.conn, again.conn, "the 200 came over the new connection");
    let ended = ended_events(dir.path(), &leg.call_id, &ua);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["status"], 200);

    let call = full_call(&reg, &ua);
    assert_eq!(ended_events(dir.path(), &call, &ua).len(), 1);
    ua.terminate(LIMIT);
}

/// An in-process UA with a short keep-alive interval.
fn in_process(reg: &Registrar, interval: Duration, pong_timeout: Duration) -> InProcess {
    let config = Config {
        keepalive_interval: Some(interval),
        pong_timeout,
        ..InProcess::config(reg)
    };
    InProcess::start(config, MediaOptions::default())
}

fn is_ping_on(conn: u64) -> impl FnMut(&Received) -> bool {
    move |r: &Received| r.conn == conn && matches!(r.what, Rx::Ping)
}

/// Pings come every interval and are answered: the flow stays up, one REGISTER only, and each
/// keep-alive run is 4 bytes from the UA and 2 bytes back.
#[test]
fn keepalive_pings_are_answered_and_cost_four_and_two_bytes() {
    let reg = Registrar::start();
    let ua = in_process(&reg, Duration::from_millis(200), Duration::from_millis(300));
    assert!(ua
        .wait(LIMIT, |e| matches!(e, Event::Registered { .. }))
        .is_some());
    let conn = reg.registered_conn().expect("registered");

    let (mut at, _) = reg
        .wait_from(0, LIMIT, &mut is_ping_on(conn))
        .expect("a first ping");
    let b0 = reg.bytes(conn).expect("open");
    let mut times = Vec::new();
    for _ in 0..5 {
        let (i, r) = reg
            .wait_from(at + 1, Duration::from_secs(2), &mut is_ping_on(conn))
            .expect("pings keep coming");
        times.push(r.at);
        at = i;
    }
    let b1 = reg.bytes(conn).expect("still open");
    assert_eq!(b1.received - b0.received, 5 * 4, "4 bytes per ping");
    assert_eq!(b1.sent - b0.sent, 5 * 2, "2 bytes per pong");
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap > Duration::from_millis(100) && gap < Duration::from_secs(1),
            "ping interval {gap:?}"
        );
    }
    let registers = reg
        .log()
        .iter()
        .filter(|r| r.request(&Method::Register).is_some())
        .count();
    assert_eq!(registers, 1, "answered pings: no re-registration");
    assert!(
        ua.wait(Duration::ZERO, |e| matches!(e, Event::FlowDown { .. }))
            .is_none(),
        "the flow stayed up"
    );
}

/// With pongs switched off the UA declares the flow dead within interval + pong timeout,
/// reconnects and re-registers on a new connection.
#[test]
fn missing_pong_is_detected_and_the_ua_reregisters() {
    let interval = Duration::from_millis(200);
    let pong_timeout = Duration::from_millis(300);
    let reg = Registrar::start();
    let ua = in_process(&reg, interval, pong_timeout);
    assert!(ua
        .wait(LIMIT, |e| matches!(e, Event::Registered { .. }))
        .is_some());
    let conn = reg.registered_conn().expect("registered");
    // (The UA may see the 200 before the registrar has logged the REGISTER: wait for it.)
    let first_register = reg
        .wait_for(LIMIT, |r| r.request(&Method::Register).is_some())
        .expect("REGISTER");

    let from = reg.log_len();
    reg.set_pongs(false);
    let off_at = Instant::now();
    let (_, ping) = reg
        .wait_from(from, LIMIT, &mut is_ping_on(conn))
        .expect("a ping after pongs went off");
    let (down_at, _) = ua
        .wait(LIMIT, |e| matches!(e, Event::FlowDown { .. }))
        .expect("the UA notices the dead flow");
    let detect = down_at - ping.at;
    eprintln!(
        "missing pong: flow declared dead {detect:?} after the unanswered ping, {:?} after pongs went off",
        down_at - off_at
    );
    assert!(
        detect >= pong_timeout - Duration::from_millis(20),
        "not before the pong timeout: {detect:?}"
    );
    assert!(
        down_at - off_at <= interval + pong_timeout + Duration::from_millis(500),
        "within interval + pong timeout: {:?}",
        down_at - off_at
    );
    assert!(
        reg.wait_for(LIMIT, |r| r.conn == conn && matches!(r.what, Rx::Closed))
            .is_some(),
        "the UA closed the dead connection"
    );

    reg.set_pongs(true);
    let again = reg
        .wait_registered(from, Some(conn), LIMIT)
        .expect("re-REGISTER on a new connection");
    assert_eq!(outbound_ids(&first_register), outbound_ids(&again));
    assert!(ua
        .wait(LIMIT, |e| matches!(e, Event::Registered { .. }))
        .is_some());
}

/// Restart after a crash (issue 4 item 6): the UA is killed with SIGKILL — no un-REGISTER, no
/// goodbye — and started again: it registers at once, as the same device (same `+sip.instance`
/// from the persisted state folder, same `reg-id`), and the next call is answered.
#[test]
fn restart_after_a_crash_registers_at_once_as_the_same_device() {
    let dir = test_dir("wake-crash");
    let reg = Registrar::start();
    let ua = start_listen(&reg, dir.path());
    let first = registered(&reg, &ua, 0, None);
    drop(ua); // the guard sends SIGKILL
    let from = reg.log_len();
    let started = std::time::Instant::now();
    let ua = start_listen(&reg, dir.path());
    let again = registered(&reg, &ua, from, Some(first.conn));
    assert_eq!(
        outbound_ids(&first),
        outbound_ids(&again),
        "same instance-id and reg-id"
    );
    let took = again.at - started;
    eprintln!("restart: REGISTER {took:?} after the process was started");
    assert!(
        took < Duration::from_secs(5),
        "registered {took:?} after start"
    );
    std::thread::sleep(Duration::from_millis(100));
    let call = full_call(&reg, &ua);
    let ended = ended_events(dir.path(), &call, &ua);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["status"], 200);
}
