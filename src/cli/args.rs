//! The command-line contract testers script against (issue 2, item 11). Keep it stable.

use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use wakeline::media::codec::{EncoderConfig, OpusSignal};
use wakeline::AnswerPolicy;

/// wakeline: a SIP user agent (TCP control flow, RTP/UDP audio).
#[derive(Debug, Parser)]
#[command(name = "wakeline", version, about, long_about = None)]
pub struct Cli {
    /// Read settings from this TOML file (default: config.toml in the per-OS config folder,
    /// when it exists; see `wakeline config --path`). Flags override the file.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Accept calls: direct SIP over TCP on --bind, and (with an account) on the registered flow.
    #[command(after_help = LISTEN_HELP)]
    Listen(ListenArgs),
    /// Place one call; exit 0 when it was answered and then ended normally.
    #[command(after_help = CALL_HELP)]
    Call(CallArgs),
    /// Register, stay registered for --for seconds (or until Ctrl-C), un-register, exit.
    #[command(after_help = REGISTER_HELP)]
    Register(RegisterArgs),
    /// Load test: N calls at R calls/s, at most C at once, real media; each call judged.
    #[command(after_help = super::load::LOAD_HELP)]
    Load(super::load::LoadArgs),
    /// A real call between two user agents inside this process, on 127.0.0.1, no setup needed.
    Demo(DemoArgs),
    /// The configuration file: print a commented example, or where the default file lives.
    Config(ConfigArgs),
}

/// `wakeline config`
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Print a commented example configuration file.
    #[arg(long)]
    pub example: bool,
    /// Print the default configuration file's path.
    #[arg(long)]
    pub path: bool,
}

/// The exit statuses (`cli/exit.rs`), in every command's `--help`.
macro_rules! exit_table {
    () => {
        "Exit status: 0 success; 1 SIP failure (the status code is in the message and the \
         summary); 2 usage or configuration error; 3 network (refused, unreachable, timed out, \
         DNS, TLS, address in use); 4 authentication failed (a 401/407 we could not pass); \
         5 media (audio device or file); 130 interrupted (SIGINT, Ctrl-C); 143 terminated \
         (SIGTERM). The last line on stderr says the operation, the address and the cause."
    };
}

/// The event list, in `listen --help`.
macro_rules! events_help {
    () => {
        "\
--events FILE: one JSON object per line, each with `ts` (RFC 3339, ms) and `event`:
  incoming {call_id, from, to, pushed}   state {call_id, state: calling|proceeding|ringing|
  connected|held|resumed|terminating}   media {call_id, codec, payload_type, remote_rtp}
  media_stats {call_id, elapsed_s, codec, rtp_sent, rtp_received, lost, jitter_ms, rtt_ms,
  input_level, output_level, ...} (about 1/s)   dtmf {call_id, digit}
  media_report {call_id, ... as --summary}   ended {call_id, status (null: no final
  response sent or received), reason, outcome:
  answered|rejected|busy|missed|cancelled|auth_failed|failed}   registered {expires}
  registration_failed {status, reason, retry_in_s (null: no retry of its own)}   unregistered
  flow_up {flow, remote}   flow_down {flow, cause}
`--events -` writes them to stdout.
Every INVITE received produces exactly one `ended` event.
SIGINT/SIGTERM: hang up, un-register, exit. Logs: stderr, filtered by RUST_LOG."
    };
}

const CALL_HELP: &str = concat!(
    "Success (0) is a call answered and then ended normally (our BYE after --duration, or the \
     far end's BYE). A failure ends with one line on stderr, e.g. `call failed: 486 Busy Here` \
     or `call failed: connect 127.0.0.1:1: connection refused`. With --registrar the \
     registration must succeed first (a refused or unreachable registrar fails at once).\n\n",
    exit_table!(),
    "\n\n",
    "\
--events FILE: one JSON object per line, each with `ts` (RFC 3339, ms) and `event` \
(see `wakeline listen --help` for the list)."
);

const LISTEN_HELP: &str = concat!(
    "With --registrar, a failed registration attempt is logged and retried (each one is a \
     registration_failed event); direct calls on --bind are answered meanwhile. Ctrl-C or \
     SIGTERM hangs up, un-registers and exits 130 or 143; --max-calls exits 0.\n\n",
    exit_table!(),
    "\n\n",
    events_help!(),
);

const REGISTER_HELP: &str = concat!(
    "Success (0) is a registration and its un-registration. --for bounds the whole run: a \
     registrar that refuses, drops or never answers ends it after SECS with the last cause, \
     e.g. `registration failed: connect 127.0.0.1:1: connection refused (4 attempts in 5 s)`; \
     without --for the registration must succeed within 40 s. Each failed attempt is a \
     registration_failed event and a log line.\n\n",
    exit_table!(),
);

/// ACCOUNT: the registrar and credentials.
#[derive(Debug, Args, Clone)]
pub struct AccountArgs {
    /// Registrar URI, e.g. 'sip:127.0.0.1:5060;transport=tcp'.
    #[arg(long, value_name = "URI")]
    pub registrar: Option<String>,
    /// User name (address of record user part and digest user).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Domain of the address of record.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Digest password.
    #[arg(
        long,
        value_name = "PASS",
        env = "WAKELINE_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Outbound proxy URI (the control flow goes there instead of the registrar).
    #[arg(long, value_name = "URI")]
    pub proxy: Option<String>,
    /// DNS server for finding the registrar, proxy and call targets by name (RFC 3263:
    /// NAPTR, SRV, A/AAAA); repeat for more. Default: the system's (/etc/resolv.conf).
    #[arg(long = "dns", value_name = "ADDR[:PORT]", value_parser = parse_dns_server)]
    pub dns: Vec<SocketAddr>,
    /// SIP transport for target and registrar URIs that name none: udp, tcp or tls (default
    /// tcp, or `[transport] default`); a URI's ';transport=' wins, and `sips:` is always TLS.
    /// Without it, a URI naming a bare domain gets the transport its NAPTR/SRV records pick.
    #[arg(long, value_name = "udp|tcp|tls")]
    pub transport: Option<String>,
    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
}

/// Options every command has.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// Append one JSON object per line for every application event to FILE.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Print every SIP message sent and received (to stderr).
    #[arg(long)]
    pub sip_trace: bool,
}

/// Encoder flags of `call`, `listen` and `load`.
#[derive(Debug, Args, Clone, Default)]
pub struct EncoderArgs {
    /// Opus encoder complexity, 0 (least CPU) to 10 (best quality per bit). Default 7: the
    /// lowest at which libopus tells music and tones from speech and codes them in its cheaper
    /// CELT mode; 5 costs ≈ 14 % less CPU on speech and ≈ 3× more on tones.
    #[arg(long, value_name = "0-10", value_parser = clap::value_parser!(i32).range(0..=10))]
    pub opus_complexity: Option<i32>,
    /// What our audio is, for Opus: auto (its analysis decides), voice (speech coding, SILK or
    /// hybrid) or music (CELT, about a third of the CPU). Default: music for `--mic tone:HZ`,
    /// auto for anything else.
    #[arg(long, value_name = "auto|voice|music", value_parser = parse_opus_signal)]
    pub opus_signal: Option<OpusSignal>,
}

fn parse_opus_signal(s: &str) -> Result<OpusSignal, String> {
    match s {
        "auto" => Ok(OpusSignal::Auto),
        "voice" => Ok(OpusSignal::Voice),
        "music" => Ok(OpusSignal::Music),
        _ => Err(format!("{s:?}: expected auto, voice or music")),
    }
}

impl EncoderArgs {
    /// The encoder settings asked for, the library's defaults otherwise.
    pub fn config(&self) -> EncoderConfig {
        let default = EncoderConfig::default();
        EncoderConfig {
            complexity: self.opus_complexity.unwrap_or(default.complexity),
            signal: self.opus_signal.unwrap_or(default.signal),
            ..default
        }
    }
}

/// Audio and media options of `call` and `listen`.
#[derive(Debug, Args, Clone, Default)]
pub struct MediaArgs {
    /// Our audio: default|DEVICE|FILE.wav|tone:HZ|silence. Without the flag the default input
    /// device is used, or silence (said in one line) when there is none; an explicit `default`
    /// fails when there is no sound device.
    #[arg(long, value_name = "SOURCE")]
    pub mic: Option<String>,
    /// The far end's audio: default|DEVICE|FILE.wav|null. Without the flag: the default output
    /// device, or null when there is none.
    #[arg(long, value_name = "SINK")]
    pub speaker: Option<String>,
    /// Also write what the far end sent, decoded, to this WAV file (48 kHz mono 16-bit).
    #[arg(long, value_name = "FILE.wav")]
    pub record: Option<PathBuf>,
    /// Codec preference order; also restricts what we offer and accept.
    #[arg(long, value_name = "LIST", default_value = "opus,pcmu,pcma")]
    pub codecs: String,
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Print the audio devices and exit.
    #[arg(long)]
    pub list_devices: bool,
    /// Look for a tone at HZ in the far end's audio: the summary says `tone_heard` (in at
    /// least half of what was played) and `tone_fraction`.
    #[arg(long, value_name = "HZ")]
    pub expect_tone: Option<f32>,
    /// Write a JSON quality summary when a call ends (`listen`: one JSON object per line per call).
    #[arg(long, value_name = "FILE.json")]
    pub summary: Option<PathBuf>,
    /// Draw the call's quality over time (jitter, loss, concealment, jitter-buffer delay,
    /// audio levels) to an SVG file, or an HTML page when FILE ends in .html. `listen` writes
    /// one file per call: FILE-1.svg, FILE-2.svg, ...
    #[arg(long, value_name = "FILE.svg")]
    pub report: Option<PathBuf>,
    /// Write the SIP (as TCP segments) and RTP/RTCP (as UDP datagrams) of this run to a pcap
    /// file that Wireshark, tshark and sngrep open. SRTP/SRTCP is written as it went on the
    /// wire (encrypted); the SDES keys are in the SIP of the same file.
    #[arg(long, value_name = "FILE.pcap")]
    pub pcap: Option<PathBuf>,
    /// Bind RTP/RTCP to this address and announce it in SDP (multi-homed hosts). Default: per
    /// call, the local address that reaches the peer (the SIP flow's, or the routed one).
    #[arg(long, value_name = "ADDR", value_parser = parse_media_ip)]
    pub media_ip: Option<IpAddr>,
    /// Behind NAT with no media anchor: ask this STUN server (RFC 8489; HOST[:PORT], port 3478
    /// by default) for each call's public RTP address and announce that in SDP. No answer
    /// within 1.5 s: the local address, with a warning.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub stun: Option<String>,
    /// When media may follow a source other than the peer's SDP address: off, nat (only when
    /// that address is private/unreachable from here; the default) or always. A new source must
    /// first send 5 packets in sequence, and the current one must have been silent for 2 s.
    #[arg(long, value_name = "off|nat|always", value_parser = parse_latching)]
    pub latching: Option<wakeline::media::session::Latching>,
    /// SRTP with SDES keys (RFC 4568): off; optional (offer RTP/AVP with keys, use SRTP when
    /// the peer answers with a key); mandatory (offer RTP/SAVP, refuse a plain peer with 488).
    /// Default (and `[media] srtp`): mandatory when the signaling is TLS, optional otherwise.
    /// SDES keys are readable in plain SIP: over UDP/TCP, SRTP requires --srtp-over-plain-sip;
    /// without it the default is off and an explicit optional/mandatory is an error. --pcap
    /// keeps SRTP/SRTCP as sent (encrypted).
    #[arg(long, value_name = "off|optional|mandatory", value_parser = parse_srtp)]
    pub srtp: Option<wakeline::signaling::sdp::SrtpPolicy>,
    /// Send SDES keys over SIP that is not TLS (anyone on the path can read them and the
    /// audio); warns once.
    #[arg(long)]
    pub srtp_over_plain_sip: bool,
}

/// Parses `--srtp`.
pub fn parse_srtp(s: &str) -> Result<wakeline::signaling::sdp::SrtpPolicy, String> {
    s.parse()
}

/// Parses `--latching`.
pub fn parse_latching(s: &str) -> Result<wakeline::media::session::Latching, String> {
    s.parse()
}

/// `wakeline listen`
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Where to accept direct SIP over TCP.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5070")]
    pub bind: SocketAddr,
    /// Also accept direct SIP over TLS here (needs --tls-cert and --tls-key).
    #[arg(long, value_name = "ADDR")]
    pub tls_bind: Option<SocketAddr>,
    #[command(flatten)]
    pub account: AccountArgs,
    /// auto (answer at once), ring (180, then answer after --answer-after), reject:CODE.
    #[arg(long, value_name = "POLICY", default_value = "auto", value_parser = parse_answer)]
    pub answer: AnswerMode,
    /// With --answer ring: seconds to ring before answering.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub answer_after: f64,
    /// Exit 0 after N calls have ended, whatever their outcome.
    #[arg(long, value_name = "N")]
    pub max_calls: Option<u64>,
    /// Answer up to N calls at once, each with its own media, recording (with N > 1,
    /// `--record X.wav` becomes X-<call number>.wav) and summary line; above N the answer is
    /// 486 Busy Here. Keys act on the newest call.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub max_concurrent: usize,
    /// Hang up each answered call after SECS.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub media: MediaArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `wakeline call`
#[derive(Debug, Args)]
pub struct CallArgs {
    /// Who to call, e.g. 'sip:bob@127.0.0.1:5080;transport=tcp'.
    #[arg(value_name = "URI", required_unless_present = "list_devices")]
    pub uri: Option<String>,
    /// Also accept SIP over TCP here (for in-dialog requests on new connections).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    #[command(flatten)]
    pub account: AccountArgs,
    /// Hang up this many seconds after the call is answered.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub duration: f64,
    /// Send these DTMF digits (0-9*#A-D, RFC 4733) once the call is answered.
    #[arg(long, value_name = "DIGITS")]
    pub dtmf: Option<String>,
    /// How --dtmf digits go: rfc4733 (RTP telephone-events) or info (SIP INFO,
    /// application/dtmf-relay).
    #[arg(long, value_name = "MODE", default_value = "rfc4733", value_parser = ["rfc4733", "info"])]
    pub dtmf_mode: String,
    /// Give up with CANCEL when the call is not answered within SECS (exit 1).
    #[arg(long, value_name = "SECS")]
    pub ring_timeout: Option<f64>,
    #[command(flatten)]
    pub media: MediaArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `wakeline register`
#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub account: AccountArgs,
    /// Stay registered this many seconds, then un-register and exit (default: until Ctrl-C).
    #[arg(long = "for", value_name = "SECS")]
    pub for_secs: Option<f64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `wakeline demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the demo call lasts once answered.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub duration: f64,
    /// Where the caller hears the callee: default|DEVICE|FILE.wav|null. Without the flag: the
    /// default output device, or null (said in one line) when there is no sound card.
    #[arg(long, value_name = "SINK")]
    pub speaker: Option<String>,
    /// The WAV file that receives what the caller heard (48 kHz mono).
    #[arg(long, value_name = "FILE.wav", default_value = "wakeline-demo.wav")]
    pub record: PathBuf,
    /// Bind both sides' RTP/RTCP to this address and announce it in SDP.
    #[arg(long, value_name = "ADDR", value_parser = parse_media_ip)]
    pub media_ip: Option<IpAddr>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Parses `--dns`: `ADDR:PORT`, `[V6]:PORT`, or an address alone (port 53).
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| {
            s.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("expected ADDR[:PORT] of a DNS server, got {s:?}"))
}

/// The parsed `--answer` value.
#[derive(Debug, Clone, Copy)]
pub struct AnswerMode(pub AnswerPolicy);

/// Parses `--answer` (auto, ring, reject:CODE).
pub fn parse_answer(s: &str) -> Result<AnswerMode, String> {
    match s {
        "auto" => Ok(AnswerMode(AnswerPolicy::Auto)),
        "ring" => Ok(AnswerMode(AnswerPolicy::Ring(std::time::Duration::ZERO))),
        other => match other.strip_prefix("reject:") {
            Some(code) => match code.parse::<u16>() {
                Ok(c) if (300..700).contains(&c) => Ok(AnswerMode(AnswerPolicy::Reject(c))),
                _ => Err(format!("reject code must be 300..=699, got {code:?}")),
            },
            None => Err(format!("expected auto, ring or reject:CODE, got {other:?}")),
        },
    }
}

/// Parses `--media-ip` / `[network] media_ip`: a unicast IPv4 or IPv6 address.
pub fn parse_media_ip(s: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("expected an IPv4 or IPv6 address, got {s:?}"))?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!(
            "{ip} cannot be announced in SDP: give the address peers send media to"
        ));
    }
    Ok(ip)
}
