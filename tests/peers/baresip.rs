//! baresip (Debian package `baresip`, 1.0.0) headless on 127.0.0.1: a config folder per
//! instance (`-f DIR`), a WAV file as microphone (`aufile`), what it hears recorded by `sndfile`,
//! auto-answer, and the `ctrl_tcp` module to dial, hang up, quit and watch its call events.
#![allow(dead_code)]

use super::{free_port, wait_listening, Proc};
use serde_json::Value;
use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a baresip instance is set up.
pub struct BaresipConfig {
    /// The account line's address, e.g. `sip:bob@127.0.0.1`.
    pub aor: String,
    /// The digest password.
    pub password: String,
    /// Register through this proxy/registrar (`sip:127.0.0.1:P;transport=tcp`).
    pub outbound: Option<String>,
    /// `audio_codecs` of the account (e.g. `PCMU/8000/1`); `None`: every loaded codec.
    pub codecs: Option<String>,
    /// The WAV file it sends (its format must match the codec: 48 kHz stereo for Opus,
    /// 8 kHz mono for G.711).
    pub source: PathBuf,
    /// The account's `mediaenc` (`srtp`, `srtp-mand`, `dtls_srtp`); `None`: plain RTP.
    pub mediaenc: Option<String>,
}

/// Where a baresip runs: on 127.0.0.1 of the test's namespace ([`Place::local`]), or on a
/// host of a private network (`peers/netns.rs`).
pub struct Place<'a> {
    /// Its SIP and media address (`sip_listen`, `net_interface`).
    pub ip: IpAddr,
    /// Fixed SIP and ctrl_tcp ports (a namespace of its own has them all free); `None`: free
    /// ports of this namespace.
    pub ports: Option<(u16, u16)>,
    /// The command for a program name (wrapped in `ip netns exec` elsewhere).
    pub command: &'a dyn Fn(&str) -> Command,
    /// Waits until the ctrl_tcp port (on 127.0.0.1 where baresip runs) listens and connects.
    pub connect: &'a dyn Fn(u16) -> TcpStream,
}

impl Place<'_> {
    /// 127.0.0.1 in the test's own namespace.
    pub fn local() -> Place<'static> {
        Place {
            ip: Ipv4Addr::LOCALHOST.into(),
            ports: None,
            command: &|p| Command::new(p),
            connect: &|port| {
                wait_listening(port, Duration::from_secs(10));
                TcpStream::connect(("127.0.0.1", port)).expect("ctrl_tcp connect")
            },
        }
    }
}

/// A running baresip.
pub struct Baresip {
    /// Its SIP port (TCP and UDP; its TLS listener takes the next port).
    pub sip_port: u16,
    /// The folder where `sndfile` writes `dump-*-dec.wav` (heard) and `dump-*-enc.wav` (sent).
    pub rec_dir: PathBuf,
    proc: Proc,
    ctrl: TcpStream,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    token: u32,
}

/// A free port whose successor is free too (baresip's TLS listener takes SIP port + 1).
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

impl Baresip {
    /// Writes the config folder under `dir/<name>`, starts baresip and connects to its control
    /// port.
    pub fn start(dir: &Path, name: &str, cfg: &BaresipConfig) -> Baresip {
        Self::start_at(dir, name, cfg, &Place::local())
    }

    /// As [`Baresip::start`], at `place`.
    pub fn start_at(dir: &Path, name: &str, cfg: &BaresipConfig, place: &Place) -> Baresip {
        Self::start_with(dir, name, cfg, place, "")
    }

    /// As [`Baresip::start_at`], with `extra` lines appended to the config (e.g. TLS:
    /// `sip_certificate`, `sip_cafile`).
    pub fn start_with(
        dir: &Path,
        name: &str,
        cfg: &BaresipConfig,
        place: &Place,
        extra: &str,
    ) -> Baresip {
        let home = dir.join(name);
        let rec_dir = home.join("rec");
        std::fs::create_dir_all(&rec_dir).expect("baresip dirs");
        let (sip_port, ctrl_port) = place
            .ports
            .unwrap_or_else(|| (free_port_pair(), free_port()));
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/baresip.config"),
        )
        .expect("baresip config template");
        let config = template
            .replace(
                "@SIP_ADDR@",
                &SocketAddr::new(place.ip, sip_port).to_string(),
            )
            .replace("@NET_IF@", &place.ip.to_string())
            .replace("@SIP_PORT@", &sip_port.to_string())
            .replace("@CTRL_PORT@", &ctrl_port.to_string())
            .replace("@SOURCE@", &cfg.source.display().to_string())
            .replace("@REC_DIR@", &rec_dir.display().to_string());
        std::fs::write(home.join("config"), format!("{config}{extra}")).expect("write config");
        let mut account = format!("<{}>;auth_pass={};answermode=auto", cfg.aor, cfg.password);
        match &cfg.outbound {
            Some(o) => account.push_str(&format!(";outbound=\"{o}\";regint=600")),
            None => account.push_str(";regint=0"),
        }
        if let Some(c) = &cfg.codecs {
            account.push_str(&format!(";audio_codecs={c}"));
        }
        if let Some(m) = &cfg.mediaenc {
            account.push_str(&format!(";mediaenc={m}"));
        }
        std::fs::write(home.join("accounts"), format!("{account}\n")).expect("write accounts");

        let mut cmd = (place.command)("baresip");
        cmd.arg("-f").arg(&home).arg("-s");
        let proc = Proc::spawn(name, cmd, &home);
        let ctrl = (place.connect)(ctrl_port);
        let reader = ctrl.try_clone().expect("clone ctrl");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || read_netstrings(reader, tx));
        Baresip {
            sip_port,
            rec_dir,
            proc,
            ctrl,
            events,
            seen: Vec::new(),
            token: 0,
        }
    }

    /// Sends a command (`dial`, `hangup`, `quit`, ...) over ctrl_tcp and waits for its response.
    pub fn command(&mut self, command: &str, params: &str) -> Value {
        self.token += 1;
        let token = self.token.to_string();
        let body =
            serde_json::json!({"command": command, "params": params, "token": token}).to_string();
        let frame = format!("{}:{},", body.len(), body);
        self.ctrl
            .write_all(frame.as_bytes())
            .expect("ctrl_tcp write");
        let found = self.wait_for(Duration::from_secs(5), |v| {
            v["response"] == true && v["token"] == token.as_str()
        });
        found.unwrap_or_else(|| panic!("no response to {command}\n{}", self.output()))
    }

    /// Waits up to `limit` for an event (or response) that matches; every message read is kept.
    pub fn wait_for(&mut self, limit: Duration, want: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(v) = self.seen.iter().find(|v| want(v)) {
            return Some(v.clone());
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let v = self.events.recv_timeout(left).ok()?;
            self.seen.push(v.clone());
            if want(&v) {
                return Some(v);
            }
        }
    }

    /// Waits for a call event of this `type` (e.g. `CALL_ESTABLISHED`, `CALL_CLOSED`).
    pub fn wait_event(&mut self, kind: &str, limit: Duration) -> Value {
        let found = self.wait_for(limit, |v| v["event"] == true && v["type"] == kind);
        found.unwrap_or_else(|| panic!("baresip: no {kind} within {limit:?}\n{}", self.output()))
    }

    /// Waits until the registrar accepted the account (baresip prints `200 OK ... [1 binding]`;
    /// the `REGISTER_OK` event may come before the control connection is up).
    pub fn wait_registered(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let out = std::fs::read_to_string(&self.proc.stdout).unwrap_or_default();
            if out.contains("200 OK") && out.contains("binding]") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "baresip did not register within {limit:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every ctrl_tcp message read so far.
    pub fn messages(&self) -> &[Value] {
        &self.seen
    }

    /// Quits cleanly (so `sndfile` finishes its WAV headers) and waits for the exit.
    pub fn quit(&mut self) {
        let _ = self.command("quit", "");
        self.proc.wait(Duration::from_secs(10));
    }

    /// The decoded audio baresip heard in its (first) call.
    pub fn heard(&self) -> PathBuf {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.rec_dir)
            .expect("rec dir")
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        found.sort();
        found
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no -dec.wav in {}", self.rec_dir.display()))
    }

    /// Its stdout (with the `-s` SIP trace) and stderr, for failure messages.
    pub fn output(&self) -> String {
        self.proc.output()
    }
}

/// Reads `len:json,` netstrings until the connection closes.
fn read_netstrings(stream: TcpStream, tx: mpsc::Sender<Value>) {
    let mut r = BufReader::new(stream);
    loop {
        let mut len = String::new();
        let mut byte = [0u8; 1];
        loop {
            if r.read_exact(&mut byte).is_err() {
                return;
            }
            if byte[0] == b':' {
                break;
            }
            len.push(byte[0] as char);
        }
        let Ok(n) = len.trim().parse::<usize>() else {
            return;
        };
        let mut body = vec![0u8; n + 1];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        body.pop(); // the trailing ','
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            if tx.send(v).is_err() {
                return;
            }
        }
    }
}
