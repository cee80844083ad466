//! Starting and stopping real peers (sipp, the wakeline binary) on 127.0.0.1 for interop tests.
//! Every process is killed by its PID when its guard drops, even when a test fails.
#![allow(dead_code)]

pub mod audio;
pub mod baresip;
pub mod events;
pub mod inproc;
pub mod kamailio;
pub mod rawsip;

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed when dropped.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout/stderr captured into files under `dir`.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {name}: {e} (is it installed? .ci/run installs it)")
        });
        Proc {
            name: name.into(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// Waits up to `limit` for the process to exit; kills it and panics with its output after that.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        let child = self.child.as_mut().expect("process already waited for");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "{} did not exit within {limit:?}\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        self.wait(limit)
    }

    /// Both captured streams, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            self.name,
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free TCP port on 127.0.0.1 (also free for UDP at the time of asking).
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() && port < 60000 {
            return port;
        }
    }
}

/// Waits until something accepts TCP connections on the port.
pub fn wait_listening(port: u16, limit: Duration) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < limit,
            "nothing listens on port {port} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until something in the network namespace `netns` listens on TCP (or, with `udp`,
/// UDP) `port` on any address, asking `ss` inside it.
pub fn wait_listening_in(netns: &str, udp: bool, port: u16, limit: Duration) {
    let start = Instant::now();
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", netns, "ss"])
            .arg(if udp { "-Hlun" } else { "-Hltn" })
            .arg(format!("sport = :{port}"))
            .output();
        if out.is_ok_and(|o| o.status.success() && !o.stdout.is_empty()) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "nothing listens on port {port} in {netns} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `s` without terminal colour codes (`ESC [ ... letter`), as logs written to a file may
/// have them.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A fresh folder for one test's files.
pub fn test_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("wakeline-{name}-"))
        .tempdir()
        .expect("tempdir")
}

/// The wakeline binary built by cargo for this test run.
pub fn wakeline() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wakeline"));
    c.env("RUST_LOG", "debug,wakeline::sip_trace=info");
    c
}

/// A sipp command over TCP on 127.0.0.1 with its own local and media ports.
pub fn sipp(scenario: &Path, local_port: u16) -> Command {
    sipp_over("t1", scenario, local_port)
}

/// sipp with transport mode `mode` (`t1`: one TCP connection, `u1`: one UDP socket).
pub fn sipp_over(mode: &str, scenario: &Path, local_port: u16) -> Command {
    let mut c = Command::new("sipp");
    c.arg("-sf")
        .arg(scenario)
        .args(["-t", mode, "-i", "127.0.0.1", "-nostdin", "-p"])
        .arg(local_port.to_string())
        .arg("-mp")
        .arg(free_port().to_string())
        .args(["-timeout", "30s", "-timeout_error"]);
    c
}

/// The path of a scenario file under tests/sipp.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// Every JSON line of an `--events` file. A line counts once its newline is there: a file
/// read while the user agent writes to it can end in part of a line (a write that spans
/// pages reaches the page cache one page at a time).
pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
        .collect()
}

/// Polls the `--events` file of `proc` until an event matches `pick`; panics with `what` and
/// the process's output after `limit`.
pub fn wait_event(
    path: &Path,
    pick: impl Fn(&serde_json::Value) -> bool,
    limit: Duration,
    proc: &Proc,
    what: &str,
) {
    let start = Instant::now();
    while !read_events(path).iter().any(&pick) {
        assert!(start.elapsed() < limit, "{what}\n{}", proc.output());
        std::thread::sleep(Duration::from_millis(20));
    }
}
pub mod registrar;
