//! The records that configure a user agent, and their translation to wakeline's types.

use crate::error::WakelineError;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use wakeline::signaling::message::Uri;
use wakeline::{Account, AudioSession, AudioSink, AudioSource, Config, MediaOptions};

/// The SIP account to register with (omit it for direct calls only).
#[derive(Debug, Clone, uniffi::Record)]
pub struct AccountConfig {
    /// The registrar, e.g. `sip:example.com;transport=tcp`.
    pub registrar: String,
    /// The user part of our address of record.
    pub user: String,
    /// The domain of our address of record.
    pub domain: String,
    /// The digest password, if the registrar challenges.
    #[uniffi(default)]
    pub password: Option<String>,
    /// The digest user name when it differs from `user`.
    #[uniffi(default)]
    pub auth_user: Option<String>,
    /// An outbound proxy URI.
    #[uniffi(default)]
    pub proxy: Option<String>,
}

/// Where a call's audio comes from and goes to: every call's (in [`UaConfig`]), or one call's
/// (`UserAgent::call_with`, `Call::answer_with`).
#[derive(Debug, Clone, uniffi::Record)]
pub struct MediaConfig {
    /// `default`, a device name, `FILE.wav` (looped), `tone:HZ` or `silence`.
    #[uniffi(default = "default")]
    pub mic: String,
    /// `default`, a device name, `FILE.wav` or `null`.
    #[uniffi(default = "default")]
    pub speaker: String,
    /// Also write what the far end sent to this WAV file (48 kHz mono 16-bit).
    #[uniffi(default)]
    pub record: Option<String>,
    /// The app runs the call's audio session (CallKit): RTP flows from the answer on, but
    /// `mic` and `speaker` open only on `Call::audio_session_activated` and close on
    /// `audio_session_deactivated` (silence goes out meanwhile; what arrives is decoded,
    /// recorded if asked, and dropped).
    #[uniffi(default = false)]
    pub manual_audio_session: bool,
}

/// How to build a [`UserAgent`](crate::UserAgent).
#[derive(Debug, Clone, uniffi::Record)]
pub struct UaConfig {
    /// Accept direct SIP over TCP on this address (`127.0.0.1:0` picks a free port).
    #[uniffi(default)]
    pub listen: Option<String>,
    /// The IP address media (RTP) sockets bind to and SDP announces; without it wakeline's
    /// default (see `UserAgentBuilder::media_ip`).
    #[uniffi(default)]
    pub media_ip: Option<String>,
    /// The user part of our Contact and From when no account is set.
    #[uniffi(default = "wakeline")]
    pub local_user: String,
    /// The account to register with.
    #[uniffi(default)]
    pub account: Option<AccountConfig>,
    /// Audio for every call.
    #[uniffi(default)]
    pub media: MediaConfig,
}

fn uri(s: &str) -> Result<Uri, WakelineError> {
    Uri::parse(s).map_err(WakelineError::invalid)
}

impl AccountConfig {
    fn to_account(&self) -> Result<Account, WakelineError> {
        Ok(Account {
            registrar: uri(&self.registrar)?,
            user: self.user.clone(),
            domain: self.domain.clone(),
            password: self.password.clone(),
            auth_user: self.auth_user.clone(),
            proxy: self.proxy.as_deref().map(uri).transpose()?,
        })
    }
}

impl MediaConfig {
    pub(crate) fn to_options(&self) -> Result<MediaOptions, WakelineError> {
        let source: AudioSource = self.mic.parse().map_err(WakelineError::invalid)?;
        let sink: AudioSink = self.speaker.parse().map_err(WakelineError::invalid)?;
        Ok(MediaOptions {
            source,
            sink,
            record: self.record.as_ref().map(PathBuf::from),
            audio_session: match self.manual_audio_session {
                true => AudioSession::Manual,
                false => AudioSession::Automatic,
            },
            ..MediaOptions::default()
        })
    }
}

impl UaConfig {
    /// wakeline's configuration, the listen address and the media IP.
    pub(crate) fn to_parts(
        &self,
    ) -> Result<(Config, Option<SocketAddr>, Option<IpAddr>), WakelineError> {
        let config = Config {
            account: self.account.as_ref().map(|a| a.to_account()).transpose()?,
            local_user: self.local_user.clone(),
            ..Config::default()
        };
        let listen = match &self.listen {
            Some(s) => Some(
                s.parse()
                    .map_err(|e| WakelineError::invalid(format!("listen address {s:?}: {e}")))?,
            ),
            None => None,
        };
        let media_ip = match &self.media_ip {
            Some(s) => Some(
                s.parse()
                    .map_err(|e| WakelineError::invalid(format!("media IP {s:?}: {e}")))?,
            ),
            None => None,
        };
        Ok((config, listen, media_ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(mic: &str, speaker: &str) -> MediaConfig {
        MediaConfig {
            mic: mic.into(),
            speaker: speaker.into(),
            record: None,
            manual_audio_session: false,
        }
    }

    #[test]
    fn media_strings_parse_like_the_cli() {
        let o = media("tone:440", "null").to_options().unwrap();
        assert_eq!(o.source, AudioSource::Tone(440.0));
        assert_eq!(o.sink, AudioSink::Null);
        let o = media("silence", "out.wav").to_options().unwrap();
        assert_eq!(o.source, AudioSource::Silence);
        assert_eq!(o.sink, AudioSink::Wav("out.wav".into()));
        assert!(media("tone:abc", "null").to_options().is_err());
        assert_eq!(o.audio_session, AudioSession::Automatic);
        let manual = MediaConfig {
            manual_audio_session: true,
            ..media("tone:440", "null")
        };
        let o = manual.to_options().unwrap();
        assert_eq!(o.audio_session, AudioSession::Manual);
    }

    #[test]
    fn bad_addresses_are_argument_errors() {
        let mut c = UaConfig {
            listen: Some("nonsense".into()),
            media_ip: Some("127.0.0.1".into()),
            local_user: "u".into(),
            account: None,
            media: media("silence", "null"),
        };
        assert!(matches!(
            c.to_parts(),
            Err(WakelineError::InvalidArgument { .. })
        ));
        c.listen = Some("127.0.0.1:0".into());
        c.account = Some(AccountConfig {
            registrar: "not a uri".into(),
            user: "u".into(),
            domain: "example.com".into(),
            password: None,
            auth_user: None,
            proxy: None,
        });
        assert!(matches!(
            c.to_parts(),
            Err(WakelineError::InvalidArgument { .. })
        ));
        c.account = None;
        let (config, listen, ip) = c.to_parts().unwrap();
        assert_eq!(config.local_user, "u");
        assert_eq!(listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(ip, Some("127.0.0.1".parse::<IpAddr>().unwrap()));
        c.media_ip = Some("not an address".into());
        assert!(matches!(
            c.to_parts(),
            Err(WakelineError::InvalidArgument { .. })
        ));
    }
}
