//! A private multi-host network for tests: N "hosts" (Linux network namespaces), each with a
//! veth whose other end sits on a bridge inside a "switch" namespace of its own — nothing is
//! added to the root namespace. Host `i` has `198.51.100.(10+i)/24` (TEST-NET-2, RFC 5737) and
//! `2001:db8:51::(10+i)/64` (RFC 3849), plus `lo` up. Programs run inside a host with
//! `ip netns exec`; test code that must open sockets there (to wait for a listener, to drive a
//! peer's control port) runs on a thread moved into the namespace with setns(2).
//!
//! [`Net::add_nat`] adds a NAT router: a host with a second interface on a private bridge
//! (`203.0.113.0/24`, TEST-NET-3) that masquerades (iptables) what the private hosts behind it
//! send to the shared bridge.
//!
//! Names are unique per test run (`wl<pid>n<counter>...`) and every namespace is deleted when
//! the [`Net`] drops, also when the test fails. Without root or without `ip`, [`Net::create`]
//! says why and returns `None`: the test then skips.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NETS: AtomicU32 = AtomicU32::new(0);

/// One host: a network namespace with one interface (`eth0`) on the shared bridge.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name (for `ip netns exec`).
    pub ns: String,
    /// Its IPv4 address on the bridge.
    pub v4: Ipv4Addr,
    /// Its IPv6 address on the bridge.
    pub v6: Ipv6Addr,
}

/// The network; deleting it (drop) deletes every namespace, veth and the bridge.
pub struct Net {
    id: String,
    switch: String,
    /// The hosts, in creation order.
    pub hosts: Vec<Host>,
}

/// Runs `ip ARGS`, panicking with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why multi-host tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        return Some("not root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`ip` (iproute2) is not installed".into()),
    }
}

impl Net {
    /// Creates `n` hosts on one bridge, or `None` (with a line on stderr) when this machine
    /// cannot (not root, no `ip`).
    pub fn create(n: usize) -> Option<Net> {
        if let Some(why) = unavailable() {
            eprintln!("SKIPPED multi-host test: {why}");
            return None;
        }
        let id = format!(
            "wl{}n{}",
            std::process::id(),
            NETS.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{id}sw");
        let mut net = Net {
            id: id.clone(),
            switch: switch.clone(),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &switch,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for i in 0..n {
            let host = Host {
                ns: format!("{id}h{i}"),
                v4: Ipv4Addr::new(198, 51, 100, 10 + i as u8),
                v6: Ipv6Addr::new(0x2001, 0xdb8, 0x51, 0, 0, 0, 0, 10 + i as u16),
            };
            // Pushed first so that Drop deletes it even if a step below fails.
            net.hosts.push(host.clone());
            net.attach(&host, "br0", &format!("p{i}"), "eth0");
            host.address(&format!("{}/24", host.v4));
            host.address(&format!("{}/64", host.v6));
        }
        Some(net)
    }

    /// Host `i`.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Creates `host`'s namespace (lo up) unless it exists, and joins it to `bridge` in the
    /// switch namespace through a veth pair (`port` on the switch side, `ifname` in the host).
    fn attach(&self, host: &Host, bridge: &str, port: &str, ifname: &str) {
        if !std::path::Path::new(&format!("/run/netns/{}", host.ns)).exists() {
            ip(&["netns", "add", &host.ns]);
            ip(&["-n", &host.ns, "link", "set", "lo", "up"]);
        }
        let sw = self.switch.as_str();
        ip(&[
            "-n", sw, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns",
            &host.ns,
        ]);
        ip(&["-n", sw, "link", "set", port, "master", bridge]);
        ip(&["-n", sw, "link", "set", port, "up"]);
        ip(&["-n", &host.ns, "link", "set", ifname, "up"]);
    }

    /// Adds a NAT router on the shared bridge (`198.51.100.1`) and `n` hosts behind it on a
    /// private bridge (`203.0.113.(10+i)`, default route via the router's `203.0.113.1`). The
    /// router forwards and masquerades what leaves its public side (iptables `MASQUERADE`).
    /// Returns the router and the private hosts. Needs `iptables`.
    pub fn add_nat(&mut self, n: usize) -> (Host, Vec<Host>) {
        let sw = self.switch.clone();
        ip(&["-n", &sw, "link", "add", "br1", "type", "bridge"]);
        ip(&[
            "-n",
            &sw,
            "link",
            "set",
            "br1",
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        ip(&["-n", &sw, "link", "set", "br1", "up"]);
        let router = Host {
            ns: format!("{}r", self.id),
            v4: Ipv4Addr::new(198, 51, 100, 1),
            v6: Ipv6Addr::new(0x2001, 0xdb8, 0x51, 0, 0, 0, 0, 1),
        };
        self.hosts.push(router.clone());
        self.attach(&router, "br0", "pr", "eth0");
        router.address(&format!("{}/24", router.v4));
        router.address(&format!("{}/64", router.v6));
        self.attach(&router, "br1", "prp", "eth1");
        ip(&[
            "-n",
            &router.ns,
            "addr",
            "add",
            "203.0.113.1/24",
            "dev",
            "eth1",
        ]);
        router.sh("sysctl -qw net.ipv4.ip_forward=1");
        router.sh("iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE");
        let mut private = Vec::new();
        for i in 0..n {
            let host = Host {
                ns: format!("{}p{i}", self.id),
                v4: Ipv4Addr::new(203, 0, 113, 10 + i as u8),
                v6: Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 10 + i as u16),
            };
            self.hosts.push(host.clone());
            self.attach(&host, "br1", &format!("q{i}"), "eth0");
            host.address(&format!("{}/24", host.v4));
            ip(&[
                "-n",
                &host.ns,
                "route",
                "add",
                "default",
                "via",
                "203.0.113.1",
            ]);
            private.push(host);
        }
        (router, private)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for name in self
            .hosts
            .iter()
            .map(|h| h.ns.as_str())
            .chain([self.switch.as_str()])
        {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Host {
    /// Adds an address (`ADDR/PREFIX`) to `eth0`; IPv6 without duplicate address detection so
    /// it is usable at once.
    pub fn address(&self, cidr: &str) {
        let mut args = vec!["-n", &self.ns, "addr", "add", cidr, "dev", "eth0"];
        if cidr.contains(':') {
            args.push("nodad");
        }
        ip(&args);
    }

    /// Runs a shell command line inside this host, panicking with its stderr when it fails.
    pub fn sh(&self, line: &str) {
        let out = self
            .command("sh")
            .args(["-c", line])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            out.status.success(),
            "{line} in {}: {}",
            self.ns,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `program` to be run inside this host (`ip netns exec NS program`); add its arguments.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Runs `f` on a thread that lives in this host's network namespace: sockets it opens
    /// belong there (and keep working when handed back to other threads).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Waits until something in this host accepts TCP connections on `addr`.
    pub fn wait_tcp(&self, addr: SocketAddr, limit: Duration) {
        self.run(move || {
            let start = Instant::now();
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                assert!(
                    start.elapsed() < limit,
                    "nothing listens on {addr} after {limit:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    }

    /// On a NAT router: drops UDP from the public side that opens no known flow, as home
    /// routers do. Without it, a peer's RTP that reaches the router before the private host's
    /// first packet leaves a conntrack entry of its own, and the private host's flow is then
    /// mapped to another port than the one STUN reported (Linux masquerade avoids the clash).
    /// A dropped packet's entry is never confirmed, so the mapping stays the same.
    pub fn drop_unsolicited_udp(&self) {
        self.sh("iptables -A INPUT -i eth0 -p udp -m conntrack --ctstate NEW -j DROP");
    }

    /// Its IPv4 or IPv6 address.
    pub fn addr(&self, v6: bool) -> IpAddr {
        if v6 {
            self.v6.into()
        } else {
            self.v4.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two hosts reach each other over IPv4 and IPv6, and not the root namespace's loopback.
    #[test]
    fn hosts_reach_each_other() {
        let Some(net) = Net::create(2) else { return };
        let (a, b) = (net.host(0).clone(), net.host(1).clone());
        for v6 in [false, true] {
            let target = SocketAddr::new(b.addr(v6), 7000);
            let listener = b.run(move || std::net::TcpListener::bind(target).expect("bind"));
            let from = a.run(move || {
                let s =
                    TcpStream::connect_timeout(&target, Duration::from_secs(5)).expect("connect");
                s.local_addr().expect("local").ip()
            });
            assert_eq!(from, a.addr(v6));
            let (_, peer) = listener.accept().expect("accept");
            assert_eq!(peer.ip(), a.addr(v6));
        }
        let names: Vec<String> = net.hosts.iter().map(|h| h.ns.clone()).collect();
        assert_eq!(names.len(), 2);
        drop(net);
        let left = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["netns", "list"])
                .output()
                .expect("ip")
                .stdout,
        )
        .to_string();
        for n in names {
            assert!(!left.contains(&n), "{n} left behind: {left}");
        }
    }

    /// A host behind the NAT router reaches a public host, which sees the router's address.
    #[test]
    fn the_router_masquerades_private_hosts() {
        let Some(mut net) = Net::create(1) else {
            return;
        };
        let (router, private) = net.add_nat(1);
        let public = net.host(0).clone();
        let target = SocketAddr::new(public.addr(false), 7001);
        let listener = public.run(move || std::net::TcpListener::bind(target).expect("bind"));
        let from = private[0].run(move || {
            let s = TcpStream::connect_timeout(&target, Duration::from_secs(5)).expect("connect");
            s.local_addr().expect("local").ip()
        });
        assert_eq!(from, private[0].addr(false));
        let (_, peer) = listener.accept().expect("accept");
        assert_eq!(peer.ip(), router.addr(false), "not masqueraded");
    }
}
