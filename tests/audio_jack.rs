//! The cpal device path on a machine without a sound card.
//!
//! Recipe (see the project's audio-headless notes): a JACK dummy server
//! paces an ALSA `jack` PCM; ALSA's `file` plugin tees playback into
//! `OUT.raw` and feeds capture from `IN.raw`. ALSA reads its configuration
//! when first used, so the device part runs in a child process (this test
//! binary re-executed on the ignored `jack_child` test) with
//! `ALSA_CONFIG_PATH` and `JACK_DEFAULT_SERVER` set. The parent starts
//! `jackd` itself and kills it by PID at the end.
//!
//! Requires `jackd2` and `libasound2-plugins` (CI installs them); without
//! `jackd` the test fails with a message saying so.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wakeline::media::audio::tone::ToneGenerator;
use wakeline::media::audio::{start, AudioConfig, AudioSink, AudioSource};

const PLAY_HZ: f32 = 440.0;
const CAPTURE_HZ: f32 = 1000.0;
const RATE: u32 = 48_000;
/// Set by the parent so `jack_child` knows it runs as the device child.
const CHILD_ENV: &str = "WAKELINE_JACK_CHILD";

/// Fraction of the signal's power at `hz` (Goertzel), 0..=1.
fn purity(x: &[f32], rate: u32, hz: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(rate);
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - c * s1 * s2;
    let total: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    if total == 0.0 {
        0.0
    } else {
        2.0 * p / (x.len() as f64 * total)
    }
}

/// Stops the JACK server by its PID when the test ends, pass or fail.
///
/// SIGTERM first: a server killed with SIGKILL leaves its entry in JACK's
/// shared-memory server registry, which holds only a few servers, and
/// later runs then fail with "Too many servers already active".
struct Jackd(Child);

impl Drop for Jackd {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn asound_conf(dir: &Path) -> String {
    let out = dir.join("OUT.raw");
    let inp = dir.join("IN.raw");
    format!(
        r#"</usr/share/alsa/alsa.conf>
pcm.!default {{ type asym; playback.pcm "tee_play"; capture.pcm "cap" }}
pcm.play {{ type plug; slave.pcm "jackpcm" }}
pcm.tee_play {{ type file; slave.pcm "play"; file "{out}"; format "raw" }}
pcm.cap {{ type file; slave.pcm "play"; file "/dev/null"; infile "{inp}"; format "raw" }}
pcm.jackpcm {{ type jack
  playback_ports {{ 0 system:playback_1 }}
  capture_ports {{ 0 system:capture_1 }} }}
ctl.!default {{ type null }}
"#,
        out = out.display(),
        inp = inp.display()
    )
}

/// Wait for `child` at most `limit`; kill it (by PID) if it overruns.
fn wait_output(child: Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("waiting for the child failed"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("the device child process hung for {limit:?} and was killed");
        }
    }
}

#[test]
fn cpal_device_path_through_jack_dummy() {
    let dir = tempfile::tempdir().unwrap();
    // Capture input: 3 s of a 1 kHz tone, raw S16_LE mono 48 kHz.
    let mut gen = ToneGenerator::new(CAPTURE_HZ, RATE, 0.25);
    let mut tone = vec![0.0f32; 3 * RATE as usize];
    gen.fill(&mut tone);
    let raw: Vec<u8> = tone
        .iter()
        .flat_map(|&s| ((s * 32767.0) as i16).to_le_bytes())
        .collect();
    std::fs::write(dir.path().join("IN.raw"), raw).unwrap();
    let conf = dir.path().join("asound.conf");
    std::fs::File::create(&conf)
        .unwrap()
        .write_all(asound_conf(dir.path()).as_bytes())
        .unwrap();

    let name = format!("wakeline-test-{}", std::process::id());
    let log_path = dir.path().join("jackd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let jackd = Command::new("jackd")
        .args([
            "--no-realtime",
            "-n",
            &name,
            "-d",
            "dummy",
            "-r",
            "48000",
            "-p",
            "960",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn();
    let _jackd = match jackd {
        Ok(c) => Jackd(c),
        Err(e) => panic!(
            "cannot start jackd ({e}): this test needs the Debian packages \
             `jackd2 libasound2-plugins` (CI installs them)"
        ),
    };

    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "--exact",
            "jack_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ALSA_CONFIG_PATH", &conf)
        .env("JACK_DEFAULT_SERVER", &name)
        .env("JACK_NO_START_SERVER", "1")
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let jack_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        out.status.success(),
        "device child failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- jackd\n{jack_log}"
    );
    let result = stdout
        .lines()
        .find_map(|l| l.split_once("JACK_RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no result line from the child:\n{stdout}\n{stderr}"));
    eprintln!("device child: {result}");
    let field = |key: &str| -> String {
        result
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .unwrap_or_else(|| panic!("no {key} in {result}"))
            .to_owned()
    };

    // The tee'd playback holds the 440 Hz tone.
    let format = field("play_format");
    let channels: usize = field("play_channels").parse().unwrap();
    let bytes = std::fs::read(dir.path().join("OUT.raw")).unwrap();
    let samples: Vec<f32> = match format.as_str() {
        "i16" => bytes
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])))
            .collect(),
        "f32" => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        other => panic!("unexpected playback format {other}"),
    };
    let mono: Vec<f32> = samples.iter().step_by(channels.max(1)).copied().collect();
    let start = mono.iter().position(|&s| s != 0.0).unwrap_or(mono.len());
    let end = mono.iter().rposition(|&s| s != 0.0).map_or(0, |i| i + 1);
    assert!(
        end.saturating_sub(start) >= (RATE as usize * 8) / 10,
        "OUT.raw holds only {} non-silent frames of {}",
        end.saturating_sub(start),
        mono.len()
    );
    let p = purity(&mono[start..end], RATE, PLAY_HZ);
    // Judged by 100 ms blocks: a scheduling stall of the machine (the application side tops the
    // ring up every 5 ms) leaves a gap whose splatter spoils one or two blocks, not the tone.
    let blocks: Vec<f64> = mono[start..end]
        .chunks_exact(RATE as usize / 10)
        .map(|b| purity(b, RATE, PLAY_HZ))
        .collect();
    let pure = blocks.iter().filter(|&&b| b > 0.9).count();
    eprintln!(
        "OUT.raw: {} frames, 440 Hz purity {p:.3}, {pure} of {} blocks of 100 ms pure",
        end - start,
        blocks.len()
    );
    assert!(
        pure * 5 >= blocks.len() * 4 && p > 0.8,
        "OUT.raw 440 Hz purity {p:.3}, {pure} of {} blocks pure: {blocks:.3?}",
        blocks.len()
    );
    let p_other = purity(&mono[start..end], RATE, CAPTURE_HZ);
    assert!(p_other < 0.01, "OUT.raw has 1 kHz energy {p_other:.3}");
}

/// The device half, run only as a child of the test above.
#[test]
#[ignore = "run as a child process by cpal_device_path_through_jack_dummy"]
fn jack_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        // Run directly (e.g. `--include-ignored`): the parent test covers it.
        eprintln!("jack_child only runs as cpal_device_path_through_jack_dummy's child");
        return;
    }
    let config = AudioConfig::default();
    // jackd may still be starting: retry for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut streams = loop {
        match start(&AudioSource::Default, &AudioSink::Default, &config) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not ready yet: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!(
                "cannot open the JACK-backed ALSA devices: {e} \
                 (is libasound2-plugins installed, with its ALSA jack plugin?)"
            ),
        }
    };
    eprintln!(
        "capture: {:?}\nplayback: {:?}",
        streams.capture_info, streams.playback_info
    );
    assert_eq!(streams.playback_info.buffer_frames, Some(960));

    let mut gen = ToneGenerator::new(PLAY_HZ, RATE, 0.5);
    let mut one = [0.0f32; 1];
    let mut captured: Vec<f32> = Vec::with_capacity(4 * RATE as usize);
    let mut first: Option<(Instant, u64, u64)> = None;
    let run_for = Duration::from_millis(1200);
    let t0 = Instant::now();
    while t0.elapsed() < run_for + Duration::from_millis(500) {
        // The application side: keep the playback ring topped up with the
        // tone and drain the capture ring.
        while streams.playback.slots() > 0 {
            gen.fill(&mut one);
            let _ = streams.playback.push((one[0] * 32767.0) as i16);
        }
        while let Ok(s) = streams.capture.pop() {
            captured.push(f32::from(s));
        }
        let p = streams.playback_stats.snapshot();
        let c = streams.capture_stats.snapshot();
        match first {
            None if p.callbacks > 0 && c.callbacks > 0 => {
                first = Some((Instant::now(), p.frames, c.frames));
            }
            Some((t, _, _)) if t.elapsed() >= run_for => break,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (t, p0, c0) = first.expect("the device callbacks never ran");
    let secs = t.elapsed().as_secs_f64();
    let p = streams.playback_stats.snapshot();
    let c = streams.capture_stats.snapshot();
    let play_fps = (p.frames - p0) as f64 / secs;
    let cap_fps = (c.frames - c0) as f64 / secs;
    streams.handle.stop();

    let nonzero = captured
        .iter()
        .position(|&s| s != 0.0)
        .unwrap_or(captured.len());
    let cap = &captured[nonzero..];
    let cap_purity = purity(cap, RATE, CAPTURE_HZ);
    println!(
        "\nJACK_RESULT play_format={} play_channels={} play_rate={} play_fps={play_fps:.0} \
         cap_fps={cap_fps:.0} play_callbacks={} captured={} cap_purity={cap_purity:.3}",
        streams.playback_info.sample_format,
        streams.playback_info.channels,
        streams.playback_info.sample_rate,
        p.callbacks,
        cap.len(),
    );
    let rate = f64::from(RATE);
    assert!(
        (play_fps - rate).abs() < 0.2 * rate,
        "playback paced at {play_fps:.0} frames/s"
    );
    assert!(
        (cap_fps - rate).abs() < 0.2 * rate,
        "capture paced at {cap_fps:.0} frames/s"
    );
    assert!(
        cap.len() >= RATE as usize * 8 / 10,
        "captured only {} samples",
        cap.len()
    );
    assert!(cap_purity > 0.9, "captured 1 kHz purity {cap_purity:.3}");
}
