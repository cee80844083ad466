//! Configuration of the signaling core.

use super::message::Uri;
use super::sdp::{Codec, SrtpPolicy};
use super::transaction::TimerConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// A SIP account on a registrar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The registrar, e.g. `sip:127.0.0.1:5060;transport=tcp`. The control flow connects here
    /// unless [`Account::proxy`] is set.
    pub registrar: Uri,
    /// The user part of our address of record.
    pub user: String,
    /// The domain of our address of record.
    pub domain: String,
    /// The digest password.
    pub password: Option<String>,
    /// The digest user name, when it differs from `user`.
    pub auth_user: Option<String>,
    /// An outbound proxy: the control flow connects here, and every request is routed through it.
    pub proxy: Option<Uri>,
}

/// What to do with a new INVITE while a call is already ringing or up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyPolicy {
    /// Reject the new INVITE at once with this code (486 Busy Here by default).
    Reject(u16),
    /// Let the application see it as another incoming call (call waiting).
    Allow,
    /// Up to `calls` calls at once (ringing or up); an INVITE beyond them gets `code`.
    Limit {
        /// How many calls at once.
        calls: usize,
        /// The answer beyond them (486 Busy Here).
        code: u16,
    },
}

/// How the desktop binary answers incoming calls (the library leaves this to the application).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerPolicy {
    /// Answer at once.
    Auto,
    /// Send 180 Ringing, answer after a delay.
    Ring(Duration),
    /// Reject with this status code.
    Reject(u16),
}

/// RFC 8599 push notification parameters, carried as `pn-*` URI parameters of the Contact of
/// every REGISTER so the server (or its push proxy) can wake us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// `pn-provider`, e.g. `apns` or `fcm`.
    pub provider: String,
    /// `pn-prid`: the device token.
    pub prid: String,
    /// `pn-param`, e.g. `TEAMID.org.example.app.voip` for APNs (provider specific; optional).
    pub param: Option<String>,
}

/// Configuration of a [`super::core::SignalingCore`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The account to register with; `None` for a UA that only takes and makes direct calls.
    pub account: Option<Account>,
    /// Our user name for From and Contact when there is no account.
    pub local_user: String,
    /// Optional display name in From.
    pub display_name: Option<String>,
    /// The User-Agent / Server header value.
    pub user_agent: String,
    /// T1, T2, T4.
    pub timers: TimerConfig,
    /// Policy for a second INVITE while busy.
    pub busy_policy: BusyPolicy,
    /// An incoming call that the application neither answers nor rejects within this time is
    /// rejected with 480 and ends as missed.
    pub ring_timeout: Duration,
    /// Requested registration lifetime in seconds.
    pub register_expires: u32,
    /// Interval of RFC 5626 CRLF keep-alive pings on the control flow (`None`: off).
    pub keepalive_interval: Option<Duration>,
    /// How long to wait for the pong before the flow is declared dead.
    pub pong_timeout: Duration,
    /// First retry delay after a failed registration or lost flow (doubles, randomised).
    pub retry_base: Duration,
    /// Cap of the retry delay.
    pub retry_max: Duration,
    /// A control flow that closes sooner than this after its REGISTER 2xx counts as failed:
    /// the first is replaced at once, further ones in a row back off (RFC 5626 §4.5, 30 s
    /// doubling to 30 min).
    pub flow_min_lifetime: Duration,
    /// RFC 5626 `+sip.instance` value (`urn:uuid:...`); persisted by the caller.
    pub instance_id: Option<String>,
    /// RFC 5626 `reg-id`.
    pub reg_id: u32,
    /// Codec preference order for offers and answers.
    pub codecs: Vec<Codec>,
    /// Our listening address, announced in Contact on flows other than the control flow (so a
    /// peer can open a new connection to us). `None`: the flow's local address.
    pub listen: Option<SocketAddr>,
    /// Our TLS listening address, announced in Contact on TLS flows we open to peers.
    pub tls_listen: Option<SocketAddr>,
    /// Push notification parameters for the Contact (RFC 8599); `None`: no push.
    pub push: Option<PushConfig>,
    /// A call pre-created by [`super::core::SignalingCore::handle_push`] whose INVITE does not
    /// arrive within this time ends `Missed`.
    pub push_timeout: Duration,
    /// How long calls on a lost control flow wait for the next control flow: a ringing
    /// incoming call keeps ringing this long, and in-dialog requests queued meanwhile
    /// (BYE, re-INVITE) give up after this long (the call then ends `Failed`).
    pub flow_grace: Duration,
    /// The transport for targets and registrars whose URI names none (TCP unless told).
    pub default_transport: super::transport::Transport,
    /// Whether DNS picks the transport of a target or registrar named by a bare domain (no
    /// port, no `transport=`): NAPTR, else SRV per transport, decide between UDP and TCP
    /// (RFC 3263 §4.1), [`Config::default_transport`] first where DNS says nothing. `false`:
    /// [`Config::default_transport`] always (the CLI clears it for `--transport`).
    pub transport_by_dns: bool,
    /// SRTP (SDES) policy for offers and answers. `Off` by default: SDES keys travel in the
    /// SDP, so an application turns it on where the signaling is protected (or accepts that
    /// it is not).
    pub srtp: SrtpPolicy,
    /// SRTP policy for calls whose signaling is TLS (`None`: [`Config::srtp`] for those too).
    /// SDES keys are as safe as the signaling, so a UA may want `Mandatory` here and `Off` on
    /// plain UDP/TCP.
    pub srtp_tls: Option<SrtpPolicy>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            account: None,
            local_user: "wakeline".into(),
            display_name: None,
            user_agent: concat!("wakeline/", env!("CARGO_PKG_VERSION")).into(),
            timers: TimerConfig::default(),
            busy_policy: BusyPolicy::Reject(486),
            ring_timeout: Duration::from_secs(120),
            register_expires: 600,
            keepalive_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
            flow_min_lifetime: crate::signaling::registration::FLOW_MIN_LIFETIME,
            instance_id: None,
            reg_id: 1,
            codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
            listen: None,
            tls_listen: None,
            push: None,
            push_timeout: Duration::from_secs(10),
            flow_grace: Duration::from_secs(32),
            default_transport: Default::default(),
            transport_by_dns: true,
            srtp: SrtpPolicy::Off,
            srtp_tls: None,
        }
    }
}
