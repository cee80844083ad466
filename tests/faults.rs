//! Hostile peers and faults (issue 13): a registrar that closes every connection right after
//! its 200 gets no REGISTER storm (RFC 5626 §4.5), a listener that defends itself, and a
//! shutdown that ends within a fixed bound whatever the number of open connections.

mod peers;

use peers::registrar::Registrar;
use peers::{free_port, read_events, test_dir, wakeline, Proc};
use std::time::{Duration, Instant};
use wakeline::signaling::core::phonekit::{phone_config, Phone};
use wakeline::signaling::message::Method;

/// Virtual time: the server closes the flow the instant its 200 is written, for 60 s. The first
/// drop is replaced at once, the second waits 15–30 s, the third 30–60 s.
#[test]
fn close_after_200_in_virtual_time_sends_few_registers() {
    let mut counts = Vec::new();
    for seed in 0..50u32 {
        let t0 = Instant::now() + Duration::from_secs(u64::from(seed));
        let mut p = Phone::new(phone_config(), t0);
        let end = t0 + Duration::from_secs(60);
        while p.now < end {
            if p.server_registered {
                p.drop_flow();
            }
            let next = p.core.poll_timeout().unwrap_or(end).min(end);
            p.advance(next.saturating_duration_since(p.now));
        }
        assert!(
            p.registers <= 5,
            "{} REGISTERs in 60 s of virtual time",
            p.registers
        );
        counts.push(p.registers);
        // A flow that stays up past the minimum lifetime resets the count: its loss is
        // replaced at once again.
        p.advance(Duration::from_secs(3600));
        assert!(p.registered());
        p.advance(Duration::from_secs(11));
        let before = p.registers;
        p.drop_flow();
        p.advance(Duration::from_millis(60));
        assert_eq!(p.registers, before + 1, "a single drop is replaced at once");
    }
    counts.sort();
    println!(
        "REGISTERs in 60 s of virtual time against close-after-200: min {} median {} max {}",
        counts[0],
        counts[counts.len() / 2],
        counts[counts.len() - 1]
    );
}

/// The real binary against a registrar that closes the TCP connection right after each 200:
/// at most 10 REGISTERs in 8 s (it was ~300), and each failure says why and when it retries.
#[test]
fn close_after_200_registrar_gets_no_storm() {
    let dir = test_dir("storm");
    let reg = Registrar::start();
    reg.set_close_after_ok(true);
    let events = dir.path().join("events.jsonl");
    let mut cmd = wakeline();
    cmd.env("WAKELINE_STATE_DIR", dir.path())
        .args(["listen", "--bind", &format!("127.0.0.1:{}", free_port())])
        .args(["--registrar", &reg.uri(), "--user", "u", "--domain", "d"])
        .args(["--mic", "silence", "--speaker", "null"])
        .arg("--events")
        .arg(&events);
    let ua = Proc::spawn("wakeline", cmd, dir.path());
    let first = reg
        .wait_for(Duration::from_secs(10), |r| {
            r.request(&Method::Register).is_some()
        })
        .unwrap_or_else(|| panic!("no REGISTER\n{}", ua.output()));
    std::thread::sleep(Duration::from_secs(8).saturating_sub(first.at.elapsed()));
    let registers = reg
        .log()
        .iter()
        .filter(|r| r.request(&Method::Register).is_some())
        .count();
    println!("REGISTERs in 8 s against close-after-200: {registers}");
    assert!(
        (2..=10).contains(&registers),
        "{registers} REGISTERs in 8 s\n{}",
        ua.output()
    );
    let failed: Vec<String> = read_events(&events)
        .into_iter()
        .filter(|e| e["event"] == "registration_failed")
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    assert!(
        failed
            .iter()
            .any(|r| r.contains("after its 2xx") && r.contains("retry in")),
        "{failed:?}"
    );
    drop(ua);
}
