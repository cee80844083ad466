//! The TOML configuration file (`--config FILE`, or `config.toml` in the per-OS config folder).
//! Command-line flags override what the file says.

use super::args::{AccountArgs, AnswerMode, MediaArgs};
use super::run::Fail;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wakeline::signaling::message::Uri;

/// The whole file. Unknown keys are errors.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[account]`
    #[serde(default)]
    pub account: AccountSection,
    /// `[transport]`
    #[serde(default)]
    pub transport: TransportSection,
    /// `[audio]`
    #[serde(default)]
    pub audio: AudioSection,
    /// `[codecs]`
    #[serde(default)]
    pub codecs: CodecsSection,
    /// `[answer]`
    #[serde(default)]
    pub answer: AnswerSection,
    /// `[media]`
    #[serde(default)]
    pub media: MediaSection,
    /// `[network]`
    #[serde(default)]
    pub network: NetworkSection,
    /// `[tls]`
    #[serde(default)]
    pub tls: super::tls::TlsSection,
}

/// `[network]`: addresses and name resolution.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// As `--media-ip`.
    pub media_ip: Option<String>,
    /// DNS servers (`ADDR[:PORT]`) instead of the system's, as `--dns`.
    pub dns: Option<Vec<String>>,
    /// As `--stun`.
    pub stun: Option<String>,
}

impl NetworkSection {
    /// The DNS servers, parsed (entries were checked when the file was read).
    pub fn dns_servers(&self) -> Vec<std::net::SocketAddr> {
        self.dns
            .iter()
            .flatten()
            .filter_map(|s| super::args::parse_dns_server(s).ok())
            .collect()
    }
}

/// `[media]`: RTP behaviour.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    /// As `--latching`: off, nat or always.
    pub latching: Option<String>,
    /// As `--srtp`: off, optional or mandatory.
    pub srtp: Option<String>,
}

/// `[account]`: the registrar and credentials.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountSection {
    /// Registrar URI.
    pub registrar: Option<String>,
    /// User name.
    pub user: Option<String>,
    /// Domain of the address of record.
    pub domain: Option<String>,
    /// Digest password (prefer `password_command`).
    pub password: Option<String>,
    /// A shell command whose first line of output is the password.
    pub password_command: Option<String>,
    /// Outbound proxy URI.
    pub proxy: Option<String>,
}

/// `[transport]`: the default SIP transport and keep-alive on the control flow.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransportSection {
    /// `udp` or `tcp` (as `--transport`) for URIs that name none; TCP when absent.
    pub default: Option<String>,
    /// Seconds between CRLF keep-alive pings (0 = off).
    pub keepalive_interval_s: Option<f64>,
    /// Seconds to wait for the pong before the flow counts as lost.
    pub pong_timeout_s: Option<f64>,
    /// Most connections peers may hold open to our listener.
    pub max_connections: Option<usize>,
    /// Seconds before an inbound connection that carries nothing is closed.
    pub idle_timeout_s: Option<f64>,
    /// Seconds a message may take to arrive once its first byte has.
    pub head_timeout_s: Option<f64>,
}

/// `[audio]`: devices.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AudioSection {
    /// As `--mic`.
    pub mic: Option<String>,
    /// As `--speaker`.
    pub speaker: Option<String>,
}

/// `[codecs]`: preference order.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CodecsSection {
    /// e.g. `["opus", "pcmu"]`.
    pub order: Option<Vec<String>>,
}

/// `[answer]`: what `listen` does with incoming calls.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnswerSection {
    /// auto, ring or reject:CODE (as `--answer`).
    pub policy: Option<String>,
    /// As `--answer-after`.
    pub after_s: Option<f64>,
}

/// What `wakeline config --example` prints.
pub const EXAMPLE: &str = r#"# wakeline configuration (TOML). Command-line flags override these values.
# Default location: see `wakeline config --path`; or pass --config FILE.

[account]
# registrar = "sip:sip.example.org:5060;transport=tcp"
# user = "alice"
# domain = "example.org"           # default: the registrar's host
# password = "secret"              # or, better, a command that prints it:
# password_command = "pass show sip/alice"
# proxy = "sip:proxy.example.org;transport=tcp"

[transport]
# default = "tcp"                  # udp | tcp | tls, for URIs without ;transport= (as --transport)
# keepalive_interval_s = 30        # CRLF ping on the control flow (0 = off)
# pong_timeout_s = 10
# max_connections = 1024           # inbound connections held at once (listener)
# idle_timeout_s = 60              # close an inbound connection that carries nothing
# head_timeout_s = 10              # a message must arrive within this of its first byte

[audio]
# mic = "default"                  # default | DEVICE | FILE.wav | tone:HZ | silence
# speaker = "default"              # default | DEVICE | FILE.wav | null

[codecs]
# order = ["opus", "pcmu", "pcma"]

[answer]
# policy = "auto"                  # auto | ring | reject:CODE   (wakeline listen)
# after_s = 2.0                    # with policy = "ring"

[network]
# dns = ["127.0.0.1:5353"]         # DNS servers for SIP names (default: /etc/resolv.conf)
# media_ip = "192.0.2.10"          # RTP address to bind and announce (default: per call, the
#                                  # local address that reaches the peer)
# stun = "stun.example.net:3478"   # learn the NAT's public media address (as --stun)
[tls]
# ca = "/etc/wakeline/ca.pem"      # trust these CAs instead of the system's roots (as --ca)
# cert = "me.pem"                  # our certificate chain and key (as --tls-cert, --tls-key)
# key = "me.key"
[media]
# latching = "nat"                 # off | nat | always: follow an RTP source other than the SDP's
# srtp = "optional"                # off | optional | mandatory (SDES; see --help for plain SIP)
"#;

/// The default file: `<config dir>/config.toml` (e.g. `~/.config/wakeline/config.toml`).
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "wakeline", "wakeline")
        .map(|d| d.config_dir().join("config.toml"))
}

/// Loads `explicit` (must exist) or the default file (absent is fine: an empty config).
pub fn load(explicit: Option<&Path>) -> Result<FileConfig, Fail> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match default_path() {
            Some(p) if p.is_file() => p,
            _ => return Ok(FileConfig::default()),
        },
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Fail::usage(format!("{}: {e}", path.display())))?;
    parse(&text, &display_name(&path))
}

fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// Parses and checks the file's text; `name` prefixes every error.
pub fn parse(text: &str, name: &str) -> Result<FileConfig, Fail> {
    let cfg: FileConfig = toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        let place = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        Fail::usage(format!("{name}: {msg}{place}"))
    })?;
    check(&cfg, name)?;
    Ok(cfg)
}

fn uri_error(value: &str, e: &str) -> String {
    if e.starts_with("invalid URI") {
        e.to_string()
    } else {
        format!("invalid URI {value:?}: {e}")
    }
}

fn check(cfg: &FileConfig, name: &str) -> Result<(), Fail> {
    let key = |k: &str, why: String| Fail::usage(format!("{name}: {k}: {why}"));
    let a = &cfg.account;
    if let Some(r) = &a.registrar {
        Uri::parse(r).map_err(|e| key("[account].registrar", uri_error(r, &e.to_string())))?;
    }
    if let Some(p) = &a.proxy {
        Uri::parse(p).map_err(|e| key("[account].proxy", uri_error(p, &e.to_string())))?;
    }
    if let Some(t) = &cfg.transport.default {
        t.parse::<wakeline::Transport>()
            .map_err(|e| key("[transport].default", e.to_string()))?;
    }
    if a.password.is_some() && a.password_command.is_some() {
        return Err(key(
            "[account].password_command",
            "give either password or password_command, not both".into(),
        ));
    }
    for (k, v) in [
        (
            "[transport].keepalive_interval_s",
            cfg.transport.keepalive_interval_s,
        ),
        ("[transport].pong_timeout_s", cfg.transport.pong_timeout_s),
        ("[transport].idle_timeout_s", cfg.transport.idle_timeout_s),
        ("[transport].head_timeout_s", cfg.transport.head_timeout_s),
        ("[answer].after_s", cfg.answer.after_s),
    ] {
        if let Some(v) = v {
            if !v.is_finite() || v < 0.0 {
                return Err(key(k, format!("must be a number of seconds >= 0, got {v}")));
            }
        }
    }
    if let Some(order) = &cfg.codecs.order {
        super::media::codecs(&order.join(",")).map_err(|e| {
            key(
                "[codecs].order",
                e.msg.trim_start_matches("--codecs: ").into(),
            )
        })?;
    }
    if let Some(ip) = &cfg.network.media_ip {
        super::args::parse_media_ip(ip).map_err(|e| key("[network].media_ip", e))?;
    }
    if let Some(l) = &cfg.media.latching {
        super::args::parse_latching(l).map_err(|e| key("[media].latching", e))?;
    }
    if let Some(p) = &cfg.media.srtp {
        super::args::parse_srtp(p).map_err(|e| key("[media].srtp", e))?;
    }
    if let Some(p) = &cfg.answer.policy {
        super::args::parse_answer(p).map_err(|e| key("[answer].policy", e))?;
    }
    for d in cfg.network.dns.iter().flatten() {
        super::args::parse_dns_server(d).map_err(|e| key("[network].dns", e))?;
    }
    for (k, v) in [
        ("[audio].mic", &cfg.audio.mic),
        ("[audio].speaker", &cfg.audio.speaker),
    ] {
        if let Some(v) = v {
            let ok = if k.ends_with("mic") {
                v.parse::<wakeline::media::audio::AudioSource>()
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                v.parse::<wakeline::media::audio::AudioSink>()
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            ok.map_err(|e| key(k, e))?;
        }
    }
    Ok(())
}

/// Runs `password_command` with `sh -c` and returns the first line of its output.
pub fn run_password_command(cmd: &str) -> Result<String, Fail> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Fail::usage(format!("[account].password_command: {e}")))?;
    if !out.status.success() {
        return Err(Fail::usage(format!(
            "[account].password_command: exited with {}",
            out.status
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").trim_end().to_string())
}

/// Fills the account flags the user left out from `[account]`.
pub fn merge_account(args: &mut AccountArgs, file: &AccountSection) -> Result<(), Fail> {
    fn fill(slot: &mut Option<String>, v: &Option<String>) {
        if slot.is_none() {
            slot.clone_from(v);
        }
    }
    fill(&mut args.registrar, &file.registrar);
    fill(&mut args.user, &file.user);
    fill(&mut args.domain, &file.domain);
    fill(&mut args.proxy, &file.proxy);
    fill(&mut args.password, &file.password);
    if args.password.is_none() {
        if let Some(cmd) = &file.password_command {
            args.password = Some(run_password_command(cmd)?);
        }
    }
    Ok(())
}

/// Fills `--mic`/`--speaker` from `[audio]`, `--media-ip` and `--stun` from `[network]`, `--latching` from
/// `[media]`, and `--codecs` from `[codecs]` unless the flag was given (`codecs_from_flag`).
pub fn merge_media(args: &mut MediaArgs, file: &FileConfig, codecs_from_flag: bool) {
    if args.mic.is_none() {
        args.mic.clone_from(&file.audio.mic);
    }
    if args.speaker.is_none() {
        args.speaker.clone_from(&file.audio.speaker);
    }
    if args.media_ip.is_none() {
        // Checked when the file was parsed.
        args.media_ip = file
            .network
            .media_ip
            .as_deref()
            .and_then(|ip| super::args::parse_media_ip(ip).ok());
    }
    if args.stun.is_none() {
        args.stun.clone_from(&file.network.stun);
    }
    if args.latching.is_none() {
        args.latching = file
            .media
            .latching
            .as_deref()
            .and_then(|l| super::args::parse_latching(l).ok());
    }
    if args.srtp.is_none() {
        args.srtp = file
            .media
            .srtp
            .as_deref()
            .and_then(|p| super::args::parse_srtp(p).ok());
    }
    if !codecs_from_flag {
        if let Some(order) = &file.codecs.order {
            args.codecs = order.join(",");
        }
    }
}

/// `[answer]` values where the flags were not given.
pub fn merge_answer(
    answer: &mut AnswerMode,
    after: &mut f64,
    file: &AnswerSection,
    answer_from_flag: bool,
    after_from_flag: bool,
) {
    if !answer_from_flag {
        if let Some(p) = file
            .policy
            .as_deref()
            .and_then(|p| super::args::parse_answer(p).ok())
        {
            *answer = p;
        }
    }
    if !after_from_flag {
        if let Some(a) = file.after_s {
            *after = a;
        }
    }
}

/// Applies `[transport]` to the library configuration.
pub fn apply_transport(config: &mut wakeline::Config, t: &TransportSection) {
    if let Some(d) = t.default.as_deref().and_then(|d| d.parse().ok()) {
        config.default_transport = d;
        config.transport_by_dns = false;
    }
    if let Some(k) = t.keepalive_interval_s {
        config.keepalive_interval = (k > 0.0).then(|| Duration::from_secs_f64(k));
    }
    if let Some(p) = t.pong_timeout_s {
        config.pong_timeout = Duration::from_secs_f64(p);
    }
}

/// The listener's limits: the defaults, overridden by the `[transport]` section if any.
pub fn listener_limits(t: Option<&TransportSection>) -> wakeline::driver::ListenerLimits {
    let mut limits = wakeline::driver::ListenerLimits::default();
    let Some(t) = t else {
        return limits;
    };
    if let Some(n) = t.max_connections {
        limits.max_connections = n.max(1);
    }
    if let Some(s) = t.idle_timeout_s {
        limits.idle_timeout = Duration::from_secs_f64(s);
    }
    if let Some(s) = t.head_timeout_s {
        limits.head_timeout = Duration::from_secs_f64(s);
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_and_is_all_comments() {
        let cfg = parse(EXAMPLE, "example").unwrap();
        assert_eq!(cfg, FileConfig::default());
        // Uncommented, the example is still valid.
        let uncommented: String = EXAMPLE
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|l| l.contains(" = "))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .replace("password = \"secret\"", "");
        let cfg = parse(&uncommented, "example").unwrap();
        assert_eq!(cfg.account.user.as_deref(), Some("alice"));
        assert_eq!(cfg.transport.keepalive_interval_s, Some(30.0));
        assert_eq!(cfg.codecs.order.as_ref().map(Vec::len), Some(3));
        assert_eq!(cfg.media.latching.as_deref(), Some("nat"));
    }

    #[test]
    fn media_latching_from_the_file_unless_flagged() {
        use wakeline::media::session::Latching;
        let cfg = parse("[media]\nlatching = \"always\"\n", "c.toml").unwrap();
        let mut media = media_args("opus");
        merge_media(&mut media, &cfg, false);
        assert_eq!(media.latching, Some(Latching::Always));
        media.latching = Some(Latching::Off);
        merge_media(&mut media, &cfg, false);
        assert_eq!(media.latching, Some(Latching::Off), "the flag wins");
        let e = parse("[media]\nlatching = \"sometimes\"\n", "c.toml").unwrap_err();
        assert!(
            e.msg.starts_with("c.toml: [media].latching: unknown"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn bad_registrar_names_the_key() {
        let e = parse("[account]\nregistrar = \"not a uri\"\n", "config.toml").unwrap_err();
        assert!(
            e.msg
                .starts_with("config.toml: [account].registrar: invalid URI"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = parse("[account]\nregistar = \"sip:x\"\n", "config.toml").unwrap_err();
        assert!(e.msg.contains("registar"), "{}", e.msg);
        assert!(e.msg.contains("line 2"), "{}", e.msg);
        let e = parse("[acount]\n", "c.toml").unwrap_err();
        assert!(e.msg.contains("acount"), "{}", e.msg);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse("[codecs]\norder = [\"g729\"]\n", "c").unwrap_err();
        assert!(e.msg.starts_with("c: [codecs].order:"), "{}", e.msg);
        let e = parse("[answer]\npolicy = \"sometimes\"\n", "c").unwrap_err();
        assert!(e.msg.starts_with("c: [answer].policy:"), "{}", e.msg);
        let e = parse("[transport]\npong_timeout_s = -1\n", "c").unwrap_err();
        assert!(
            e.msg.starts_with("c: [transport].pong_timeout_s:"),
            "{}",
            e.msg
        );
        let e = parse("[transport]\npong_timeout_s = \"ten\"\n", "c").unwrap_err();
        assert!(
            e.msg.contains("pong_timeout_s") || e.msg.contains("line 2"),
            "{}",
            e.msg
        );
    }

    /// Media flags as if only `--codecs` had been given.
    fn media_args(codecs: &str) -> MediaArgs {
        MediaArgs {
            codecs: codecs.into(),
            ..MediaArgs::default()
        }
    }

    #[test]
    fn network_dns_is_checked_and_parsed() {
        let cfg = parse("[network]\ndns = [\"127.0.0.1:5353\", \"::1\"]\n", "c").unwrap();
        assert_eq!(
            cfg.network.dns_servers(),
            vec![
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        let e = parse("[network]\ndns = [\"dns.example\"]\n", "c").unwrap_err();
        assert!(e.msg.contains("[network].dns"), "{}", e.msg);
    }

    #[test]
    fn flags_override_the_file() {
        let cfg = parse(
            "[account]\nregistrar = \"sip:reg.example.org\"\nuser = \"alice\"\npassword_command = \"printf 'pw1\\\\nignored'\"\n[codecs]\norder = [\"pcmu\"]\n[audio]\nmic = \"silence\"\n",
            "c",
        )
        .unwrap();
        let mut acct = AccountArgs {
            registrar: None,
            user: Some("bob".into()),
            domain: None,
            password: None,
            proxy: None,
            dns: Vec::new(),
            transport: None,
            tls: super::super::tls::TlsArgs::default(),
        };
        merge_account(&mut acct, &cfg.account).unwrap();
        assert_eq!(acct.user.as_deref(), Some("bob"));
        assert_eq!(acct.registrar.as_deref(), Some("sip:reg.example.org"));
        assert_eq!(acct.password.as_deref(), Some("pw1"));
        let mut media = media_args("opus,pcmu,pcma");
        media.speaker = Some("null".into());
        merge_media(&mut media, &cfg, true);
        assert_eq!(media.codecs, "opus,pcmu,pcma");
        merge_media(&mut media, &cfg, false);
        assert_eq!(media.codecs, "pcmu");
        assert_eq!(media.mic.as_deref(), Some("silence"));
        assert_eq!(media.speaker.as_deref(), Some("null"));
    }

    #[test]
    fn network_media_ip_is_checked_and_merged() {
        let e = parse("[network]\nmedia_ip = \"0.0.0.0\"\n", "c").unwrap_err();
        assert!(e.msg.starts_with("c: [network].media_ip:"), "{}", e.msg);
        let e = parse("[network]\nmedia_ip = \"host\"\n", "c").unwrap_err();
        assert!(e.msg.starts_with("c: [network].media_ip:"), "{}", e.msg);
        assert_eq!(
            crate::cli::args::parse_media_ip("[2001:db8::5]"),
            Ok("2001:db8::5".parse().unwrap())
        );
        let cfg = parse("[network]\nmedia_ip = \"2001:db8::5\"\n", "c").unwrap();
        let mut media = media_args("opus");
        merge_media(&mut media, &cfg, true);
        assert_eq!(media.media_ip, "2001:db8::5".parse().ok());
        // The flag wins over the file.
        media.media_ip = "192.0.2.4".parse().ok();
        merge_media(&mut media, &cfg, true);
        assert_eq!(media.media_ip, "192.0.2.4".parse().ok());
        let cfg = parse("[network]\nstun = \"stun.example.test\"\n", "c").unwrap();
        merge_media(&mut media, &cfg, true);
        assert_eq!(media.stun.as_deref(), Some("stun.example.test"));
    }

    #[test]
    fn transport_applies() {
        let mut c = wakeline::Config::default();
        apply_transport(
            &mut c,
            &TransportSection {
                default: Some("udp".into()),
                keepalive_interval_s: Some(0.0),
                pong_timeout_s: Some(3.0),
                ..TransportSection::default()
            },
        );
        assert_eq!(c.keepalive_interval, None);
        assert_eq!(c.pong_timeout, Duration::from_secs(3));
        assert_eq!(c.default_transport, wakeline::Transport::Udp);
        assert!(!c.transport_by_dns, "an explicit default beats DNS");
        let e = parse("[transport]\ndefault = \"sctp\"\n", "c.toml").unwrap_err();
        assert!(
            e.msg.contains("[transport].default") && e.msg.contains("unknown SIP transport"),
            "{}",
            e.msg
        );
        let tls = parse(
            "[transport]\ndefault = \"tls\"\n[tls]\nca = \"ca.pem\"\n",
            "c",
        )
        .unwrap();
        assert_eq!(tls.tls.ca, Some("ca.pem".into()));
    }

    #[test]
    fn listener_limits_from_transport() {
        let cfg = parse(
            "[transport]\nmax_connections = 0\nidle_timeout_s = 1.5\nhead_timeout_s = 2\n",
            "t",
        )
        .unwrap();
        let l = listener_limits(Some(&cfg.transport));
        assert_eq!(l.max_connections, 1, "at least one");
        assert_eq!(l.idle_timeout, Duration::from_millis(1500));
        assert_eq!(l.head_timeout, Duration::from_secs(2));
        assert_eq!(listener_limits(None), Default::default());
        assert!(parse("[transport]\nidle_timeout_s = -1\n", "t").is_err());
    }
}
