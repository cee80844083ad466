//! Issue 13 finding 5: a direct call outlives its TCP connection (RFC 3261 §18.2.2, §12.2).
//! A caller's connection to `wakeline listen` closes after the call is answered; its BYE on a
//! new connection ends the call with 200 (not 481), and the call ends answered by that BYE.

mod peers;

use peers::rawsip::Wire;
use peers::{free_port, read_events, test_dir, wait_listening, wakeline, Proc};
use std::net::SocketAddr;
use std::time::Duration;

#[test]
fn callers_bye_on_a_new_connection_ends_the_call_answered() {
    let dir = test_dir("conn-loss");
    let port = free_port();
    let events = dir.path().join("events.jsonl");
    let mut cmd = wakeline();
    cmd.args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--answer", "auto", "--max-calls", "1", "--sip-trace"])
        .arg("--events")
        .arg(&events);
    let mut ua = Proc::spawn("wakeline", cmd, dir.path());
    wait_listening(port, Duration::from_secs(30));
    let target = SocketAddr::from(([127, 0, 0, 1], port));

    let mut first = Wire::tcp(target);
    let (_, to) = first.answered(target, 1, 1);
    drop(first); // the caller's connection closes
    std::thread::sleep(Duration::from_millis(300));
    let mut second = Wire::tcp(target);
    let done = second.bye(target, 1, &to);
    assert!(done.starts_with("SIP/2.0 200"), "{done}\n{}", ua.output());

    let status = ua.wait(Duration::from_secs(20));
    assert!(status.success(), "wakeline listen failed\n{}", ua.output());
    let ended: Vec<_> = read_events(&events)
        .into_iter()
        .filter(|e| e["event"] == "ended")
        .collect();
    assert_eq!(ended.len(), 1, "{ended:#?}");
    assert_eq!(ended[0]["status"], 200);
    assert_eq!(ended[0]["outcome"], "answered");
    assert_eq!(
        ended[0]["reason"], "BYE",
        "ended by the BYE, not by the lost connection"
    );
}
