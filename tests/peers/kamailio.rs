//! Kamailio (Debian package `kamailio`) as registrar and proxy on 127.0.0.1, started per test
//! from `tests/interop/kamailio.cfg` in a private folder, stopped by PID (its own and its
//! children's).
#![allow(dead_code)]

use super::{wait_listening, wait_listening_in, Proc};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The password of every user in `tests/interop/kamailio.cfg`.
pub const PASSWORD: &str = "secret";

/// A running Kamailio listening on UDP and TCP `ip:port` (127.0.0.1 unless started with
/// [`Kamailio::start_in`]).
pub struct Kamailio {
    /// The SIP port (UDP and TCP).
    pub port: u16,
    /// The listen address.
    pub ip: IpAddr,
    /// The network namespace it runs in (`ip netns exec`), if not the test's own.
    netns: Option<String>,
    /// Config defines (`-A NAME`), e.g. `WITH_RTPENGINE`.
    defines: Vec<String>,
    /// A TLS listener: its port and the tls module's config file (`WITH_TLS`).
    tls: Option<(u16, PathBuf)>,
    dir: PathBuf,
    proc: Option<Proc>,
    starts: u32,
}

impl Kamailio {
    /// Starts Kamailio on `port` with its runtime files under `dir/kamailio`, and waits until it
    /// accepts TCP connections.
    pub fn start(dir: &Path, port: u16) -> Kamailio {
        Self::start_in(dir, Ipv4Addr::LOCALHOST.into(), port, None, &[])
    }

    /// Starts Kamailio on `ip:port` inside the network namespace `netns` (or this one), with
    /// the config's `#!ifdef` `defines`, and waits until it listens on TCP.
    pub fn start_in(
        dir: &Path,
        ip: IpAddr,
        port: u16,
        netns: Option<&str>,
        defines: &[&str],
    ) -> Kamailio {
        let mut k = Kamailio {
            port,
            ip,
            netns: netns.map(str::to_string),
            defines: defines.iter().map(|d| d.to_string()).collect(),
            tls: None,
            dir: dir.join("kamailio"),
            proc: None,
            starts: 0,
        };
        k.launch();
        k
    }

    /// Starts Kamailio on 127.0.0.1 `port` (UDP, TCP) and `tls_port` (TLS, its tls module set
    /// up by `tls_cfg`, e.g. from [`tls_cfg`]), and waits until both listen.
    pub fn start_tls(dir: &Path, port: u16, tls_port: u16, tls_cfg: &Path) -> Kamailio {
        let mut k = Kamailio {
            port,
            ip: Ipv4Addr::LOCALHOST.into(),
            netns: None,
            defines: Vec::new(),
            tls: Some((tls_port, tls_cfg.to_path_buf())),
            dir: dir.join("kamailio"),
            proc: None,
            starts: 0,
        };
        k.launch();
        wait_listening(tls_port, Duration::from_secs(10));
        k
    }

    fn launch(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("kamailio dir");
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/kamailio.cfg");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "kamailio"]);
                c
            }
            None => Command::new("kamailio"),
        };
        let listen = SocketAddr::new(self.ip, self.port);
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-E", "-DD", "-m", "32", "-M", "4"])
            .arg("-l")
            .arg(format!("tcp:{listen}"))
            .arg("-l")
            .arg(format!("udp:{listen}"))
            .arg("-P")
            .arg(self.dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(&self.dir)
            .arg("-w")
            .arg(&self.dir);
        for d in &self.defines {
            cmd.arg("-A").arg(d);
        }
        if let Some((port, cfg)) = &self.tls {
            cmd.arg("-l")
                .arg(format!("tls:{}", SocketAddr::new(self.ip, *port)))
                .args(["-A", "WITH_TLS", "-A"])
                .arg(format!("TLS_CFG=\"{}\"", cfg.display()));
        }
        self.starts += 1;
        let name = format!("kamailio{}", self.starts);
        self.proc = Some(Proc::spawn(&name, cmd, &self.dir));
        match &self.netns {
            Some(ns) => wait_listening_in(ns, false, self.port, Duration::from_secs(10)),
            None => wait_listening(self.port, Duration::from_secs(10)),
        }
    }

    /// Stops Kamailio (every TCP connection drops) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stops Kamailio: SIGTERM to the main process (it stops its children), then SIGKILL to
    /// anything of it still alive, each by PID.
    pub fn stop(&mut self) {
        let Some(mut p) = self.proc.take() else {
            return;
        };
        let Some(main) = p.pid() else {
            return;
        };
        let children = children_of(main);
        if std::thread::panicking() {
            drop(p); // SIGKILL to the main process; its children are killed below
        } else {
            let _ = p.terminate(Duration::from_secs(5));
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for pid in children {
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }

    /// Kamailio's log (stderr with `-E`) of every start so far.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.join(format!("kamailio{i}.err")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a tls module config (server side: `cert`, `key`, trusting `ca`; no client
/// certificate asked) at `path`.
pub fn tls_cfg(path: &Path, cert: &Path, key: &Path, ca: &Path) {
    let text = format!(
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
         certificate = {}\nprivate_key = {}\nca_list = {}\n\n\
         [client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n",
        cert.display(),
        key.display(),
        ca.display()
    );
    std::fs::write(path, text).expect("write tls.cfg");
}

/// The PIDs whose parent is `parent` (from /proc).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
                    let rest = s.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}
