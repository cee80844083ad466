//! The UniFFI bindings, used from Python for real: `scripts/bindings.sh --debug` builds the
//! `wakeline-ffi` library and generates the bindings (Swift and Kotlin too, so their generation
//! is checked here as well), then `examples/python/call.py` calls `wakeline listen` on 127.0.0.1
//! through them. Both sides play a different tone and record the other: each recording must
//! hold the other side's tone. A second call runs its audio session the CallKit way
//! (`call_with` a manual session, `audio_session_activated` later).

mod peers;

use peers::audio::{assert_tone, read_wav, tone_tally, Wav};
use peers::{free_port, test_dir, wait_listening, wakeline, Proc};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PYTHON_TONE: f64 = 440.0;
const LISTENER_TONE: f64 = 1000.0;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo (and so scripts/bindings.sh) puts its output.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
}

/// Runs scripts/bindings.sh once (a debug build) and returns the Python bindings' folder.
fn generate_bindings() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("scripts/bindings.sh"))
        .arg("--debug")
        .current_dir(repo())
        .output()
        .expect("run scripts/bindings.sh");
    assert!(
        out.status.success(),
        "scripts/bindings.sh failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let bindings = target_dir().join("bindings");
    for file in [
        "python/wakeline_ffi.py",
        "swift/wakeline_ffi.swift",
        "swift/wakeline_ffiFFI.h",
        "kotlin/uniffi/wakeline_ffi/wakeline_ffi.kt",
    ] {
        let path = bindings.join(file);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "{} is missing or empty", path.display());
    }
    bindings.join("python")
}

/// The bindings, generated once for every test here (the script replaces the folder).
fn bindings() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(generate_bindings)
}

/// What one `call.py` run to `wakeline listen` left: both recordings and the script's output.
struct Run {
    _dir: tempfile::TempDir,
    heard_by_listener: PathBuf,
    heard_by_python: PathBuf,
    output: String,
}

/// `examples/python/call.py` (plus `extra` arguments) calls `wakeline listen` on 127.0.0.1
/// for `secs` seconds of talk; both sides play their tone and record the other's.
fn python_calls_listen(name: &str, secs: &str, extra: &[&str]) -> Run {
    let python = bindings();
    let dir = test_dir(name);
    let port = free_port();
    let heard_by_listener = dir.path().join("listener.wav");
    let heard_by_python = dir.path().join("python.wav");

    let mut listen = wakeline();
    listen
        .args(["listen", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--answer", "auto", "--max-calls", "1", "--speaker", "null"])
        .arg("--mic")
        .arg(format!("tone:{LISTENER_TONE}"))
        .arg("--record")
        .arg(&heard_by_listener);
    let mut listener = Proc::spawn("listen", listen, dir.path());
    wait_listening(port, Duration::from_secs(10));

    let mut call = Command::new("python3");
    call.arg(repo().join("examples/python/call.py"))
        .arg(format!("sip:bob@127.0.0.1:{port};transport=tcp"))
        .args(["--duration", secs, "--timeout", "10"])
        .arg("--tone")
        .arg(PYTHON_TONE.to_string())
        .arg("--speaker")
        .arg(&heard_by_python)
        .args(extra)
        .env("WAKELINE_BINDINGS", python);
    let mut caller = Proc::spawn("call.py", call, dir.path());
    let status = caller.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "call.py exited with {status}\n{}\n{}",
        caller.output(),
        listener.output()
    );
    assert!(
        caller.output().contains("outcome=CallOutcome.ANSWERED"),
        "{}",
        caller.output()
    );
    let status = listener.wait(Duration::from_secs(10));
    assert!(status.success(), "{}", listener.output());
    Run {
        _dir: dir,
        heard_by_listener,
        heard_by_python,
        output: caller.output(),
    }
}

#[test]
fn python_calls_wakeline_listen_through_the_bindings() {
    let run = python_calls_listen("bindings-python", "2", &[]);
    // About 2 s of talk each way; allow for the first packets and the jitter buffer.
    assert_tone(&run.heard_by_listener, PYTHON_TONE, LISTENER_TONE, 1.0);
    assert_tone(&run.heard_by_python, LISTENER_TONE, PYTHON_TONE, 1.0);
}

/// The CallKit way through the bindings: `call_with` a manual audio session, activated 2 s
/// after the answer. The listener hears silence first (RTP flowing, no tone), then the tone.
#[test]
fn python_activates_the_audio_session_through_the_bindings() {
    let run = python_calls_listen("bindings-callkit", "4", &["--activate-after", "2"]);
    assert!(
        run.output.contains("audio session activated"),
        "{}",
        run.output
    );
    let wav = read_wav(&run.heard_by_listener);
    let before = Wav {
        samples: wav.samples[..wav.rate as usize].to_vec(),
        ..wav
    };
    let t = tone_tally(&before, PYTHON_TONE, LISTENER_TONE);
    assert_eq!(t.tone, 0, "the tone came before the activation: {t:?}");
    // About 2 s after the activation (the first second is silent whatever the load delays).
    assert_tone(&run.heard_by_listener, PYTHON_TONE, LISTENER_TONE, 1.0);
    // Python's speaker opened with the session too: it recorded the listener's tone from the
    // activation to the hang-up (about 2 s; a loaded machine shortens it), not the whole 4 s.
    let heard = assert_tone(&run.heard_by_python, LISTENER_TONE, PYTHON_TONE, 1.0);
    assert!(
        heard.blocks <= 30,
        "Python's speaker recorded before the activation: {heard:?}"
    );
}
