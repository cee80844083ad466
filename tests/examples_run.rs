//! The examples, run as tests (each example's source is included here as a module):
//! - `autoanswer` against the `wakeline call` binary on 127.0.0.1 for about two seconds: the
//!   call is answered, the bot hangs up, both sides finish cleanly and the recording exists
//!   and holds the caller's audio;
//! - `push_wake`: two pushed calls over 127.0.0.1 with the async API (answer before and after
//!   the INVITE);
//! - `push_wake_core`'s two in-memory runs on the sans-IO core.

#[allow(dead_code)]
#[path = "../examples/autoanswer.rs"]
mod autoanswer;

use std::process::{Command, Stdio};
use std::time::Duration;
use wakeline::media::audio::AudioSource;
use wakeline::CallOutcome;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoanswer_serves_a_wakeline_call() {
    let dir = tempfile::tempdir().unwrap();
    let options = autoanswer::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        hangup_after: Duration::from_millis(1500),
        max_calls: Some(1),
        dir: dir.path().to_path_buf(),
        source: AudioSource::Tone(440.0),
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let bot = tokio::spawn(autoanswer::serve(options, move |addr| {
        let _ = ready_tx.send(addr);
    }));
    let addr = ready_rx.await.unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_wakeline"))
        .args([
            "call",
            &format!("sip:bot@{addr};transport=tcp"),
            "--mic",
            "tone:1000",
            "--speaker",
            "null",
            // The bot hangs up first.
            "--duration",
            "20",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();

    let summaries = tokio::time::timeout(Duration::from_secs(20), bot).await;
    let waiter = tokio::task::spawn_blocking(move || child.wait());
    // The caller ends right after the bot's BYE; stop it by its PID if it does not.
    let status = match tokio::time::timeout(Duration::from_secs(10), waiter).await {
        Ok(done) => Some(done.unwrap().unwrap()),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            None
        }
    };

    let summaries = summaries
        .expect("the bot finished within 20 s")
        .unwrap()
        .unwrap();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    let s = &summaries[0];
    assert_eq!(s.outcome, CallOutcome::Answered, "{s:?}");
    assert_eq!(s.status, Some(200));
    let report = s.report.as_ref().expect("a media report");
    let stats = report.stats.as_ref().expect("media ran");
    assert!(stats.rtp_received > 25, "{stats:?}");
    assert!(stats.rtp_sent > 25, "{stats:?}");

    let recording = s.recording.as_ref().expect("a recording");
    assert_eq!(recording, &dir.path().join("call-1.wav"));
    let wav = hound::WavReader::open(recording).unwrap();
    assert_eq!(wav.spec().sample_rate, 48_000);
    // About 1.5 s of the caller's audio (at least half a second of it).
    assert!(wav.duration() > 24_000, "{} samples", wav.duration());
    let loud = wav
        .into_samples::<i16>()
        .filter_map(Result::ok)
        .any(|x| x.unsigned_abs() > 1000);
    assert!(loud, "the recording holds the caller's tone");

    let status = status.expect("wakeline call exited by itself");
    assert!(status.success(), "wakeline call: {status}");
}

#[allow(dead_code)]
#[path = "../examples/push_wake.rs"]
mod push_wake;

#[allow(dead_code)]
#[path = "../examples/push_wake_core.rs"]
mod push_wake_core;

/// The push-wake example over 127.0.0.1: both pushed calls connect with audio and end once on
/// each side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_wake_connects_pushed_calls() {
    push_wake::run().await.unwrap();
}

/// The sans-IO push-wake example's two runs (in memory, virtual clock): both orders connect,
/// one `Incoming` per call, one final response, the ledger closes.
#[test]
fn push_wake_core_connects_in_both_orders() {
    push_wake_core::answer_before_invite().unwrap();
    push_wake_core::answer_after_invite().unwrap();
}
