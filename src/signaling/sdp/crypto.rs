//! SDES key exchange for SRTP (RFC 4568 `a=crypto`, RFC 3711 suites, RFC 7714 AES-GCM).
//!
//! A crypto line is `a=crypto:<tag> <suite> inline:<base64 key||salt>[|lifetime][|MKI:len]
//! [session params]`. We offer three suites, each with its own fresh key, and answer with
//! the first offered line we support, echoing its tag. Lines with an MKI, several keys or
//! session parameters are skipped (RFC 4568 §6.1: an answerer may ignore lines it cannot
//! use). The keys travel in the SDP body: the signaling must be TLS (the CLI warns otherwise).

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::parse::{Attribute, MediaDescription};

/// When to use SRTP (`--srtp`, `[media] srtp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// Never: plain `RTP/AVP`, no crypto lines; a `RTP/SAVP` offer is refused with 488.
    Off,
    /// Best effort: offer `RTP/AVP` with crypto lines, use SRTP when the answer has one;
    /// answer an offer with crypto lines with SRTP and a plain offer plainly.
    #[default]
    Optional,
    /// Always: offer `RTP/SAVP`; a plain answer or a plain offer is refused (488).
    Mandatory,
}

impl SrtpPolicy {
    /// The name used on the command line and in the config file.
    pub fn name(self) -> &'static str {
        match self {
            SrtpPolicy::Off => "off",
            SrtpPolicy::Optional => "optional",
            SrtpPolicy::Mandatory => "mandatory",
        }
    }
}

impl FromStr for SrtpPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [SrtpPolicy::Off, SrtpPolicy::Optional, SrtpPolicy::Mandatory]
            .into_iter()
            .find(|p| s.eq_ignore_ascii_case(p.name()))
            .ok_or_else(|| format!("unknown SRTP policy {s:?} (off, optional, mandatory)"))
    }
}

/// An SRTP crypto suite we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag (RFC 4568 §6.2.1).
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit tag.
    AesCm128HmacSha1_32,
    /// AES-128 GCM (RFC 7714 §14.2), 16-byte tag, 12-byte salt.
    AeadAes128Gcm,
}

/// The suites we offer, in our order of preference.
pub const OFFERED_SUITES: [SrtpSuite; 3] = [
    SrtpSuite::AesCm128HmacSha1_80,
    SrtpSuite::AeadAes128Gcm,
    SrtpSuite::AesCm128HmacSha1_32,
];

impl SrtpSuite {
    /// The RFC 4568 / RFC 7714 name in `a=crypto`.
    pub fn sdp_name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    /// The name in reports: `sdes-aes-cm-128-hmac-sha1-80` and so on.
    pub fn report_name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "sdes-aes-cm-128-hmac-sha1-80",
            SrtpSuite::AesCm128HmacSha1_32 => "sdes-aes-cm-128-hmac-sha1-32",
            SrtpSuite::AeadAes128Gcm => "sdes-aead-aes-128-gcm",
        }
    }

    /// Master key length in bytes (16 for all three).
    pub fn key_len(self) -> usize {
        16
    }

    /// Master salt length in bytes: 14 for AES-CM, 12 for GCM.
    pub fn salt_len(self) -> usize {
        match self {
            SrtpSuite::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    fn from_sdp_name(name: &str) -> Option<Self> {
        OFFERED_SUITES
            .into_iter()
            .find(|s| name.eq_ignore_ascii_case(s.sdp_name()))
    }
}

/// A master key followed by its master salt. Its `Debug` does not print the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey(pub Vec<u8>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({} bytes)", self.0.len())
    }
}

impl MasterKey {
    /// A fresh random key and salt for `suite` from the operating system's CSPRNG.
    pub fn random(suite: SrtpSuite) -> Self {
        let mut k = vec![0u8; suite.key_len() + suite.salt_len()];
        rand::Rng::fill(&mut rand::rng(), &mut k[..]);
        MasterKey(k)
    }

    /// The key part.
    pub fn key(&self) -> &[u8] {
        &self.0[..16.min(self.0.len())]
    }

    /// The salt part.
    pub fn salt(&self) -> &[u8] {
        &self.0[16.min(self.0.len())..]
    }
}

/// What SDES agreed: the suite, our key (we protect with it) and the peer's (we unprotect
/// with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    /// The suite.
    pub suite: SrtpSuite,
    /// Ours: protects what we send.
    pub local: MasterKey,
    /// The peer's: unprotects what we receive.
    pub remote: MasterKey,
}

/// One `a=crypto` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoLine {
    /// The tag (1-9 digits).
    pub tag: u32,
    /// The suite.
    pub suite: SrtpSuite,
    /// The inline key and salt.
    pub key: MasterKey,
}

impl CryptoLine {
    /// Reads an `a=crypto` value; `None` for a line we cannot use (unknown suite, bad key,
    /// MKI, several keys, session parameters).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split_ascii_whitespace();
        let tag: u32 = parts.next()?.parse().ok().filter(|t| *t <= 999_999_999)?;
        let suite = SrtpSuite::from_sdp_name(parts.next()?)?;
        let key_params = parts.next()?;
        if parts.next().is_some() || key_params.contains(';') {
            return None;
        }
        let inline = key_params
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("inline:"))
            .map(|_| &key_params[7..])?;
        let mut fields = inline.split('|');
        let b64 = fields.next()?;
        // An optional lifetime is fine; an MKI field (`n:len`) is not.
        for f in fields {
            if f.contains(':') {
                return None;
            }
        }
        let key = STANDARD.decode(b64).ok()?;
        (key.len() == suite.key_len() + suite.salt_len()).then_some(CryptoLine {
            tag,
            suite,
            key: MasterKey(key),
        })
    }

    /// The attribute to write.
    pub fn attribute(&self) -> Attribute {
        Attribute::value(
            "crypto",
            format!(
                "{} {} inline:{}",
                self.tag,
                self.suite.sdp_name(),
                STANDARD.encode(&self.key.0)
            ),
        )
    }
}

/// The usable crypto lines of an m-line, in its order.
pub fn crypto_lines(m: &MediaDescription) -> Vec<CryptoLine> {
    m.attributes
        .iter()
        .filter(|a| a.name.eq_ignore_ascii_case("crypto"))
        .filter_map(|a| a.value.as_deref().and_then(CryptoLine::parse))
        .collect()
}

/// True for the secure profiles `RTP/SAVP` and `RTP/SAVPF`.
pub fn is_secure_profile(protocol: &str) -> bool {
    protocol.eq_ignore_ascii_case("RTP/SAVP") || protocol.eq_ignore_ascii_case("RTP/SAVPF")
}

/// Our keys for one call: one per suite, drawn on first use and kept for the call, so a
/// re-offer keeps the stream that is running (RFC 4568 §7.1.4 lets an offerer keep its key).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalKeys {
    keys: Vec<(SrtpSuite, MasterKey)>,
}

impl LocalKeys {
    /// Our key for `suite` (drawn now if it is the first time).
    pub fn for_suite(&mut self, suite: SrtpSuite) -> MasterKey {
        if let Some((_, k)) = self.keys.iter().find(|(s, _)| *s == suite) {
            return k.clone();
        }
        let k = MasterKey::random(suite);
        self.keys.push((suite, k.clone()));
        k
    }

    /// The crypto lines of an offer: tags 1, 2, 3 in [`OFFERED_SUITES`] order.
    pub fn offer_lines(&mut self) -> Vec<Attribute> {
        OFFERED_SUITES
            .into_iter()
            .zip(1..)
            .map(|(suite, tag)| {
                let key = self.for_suite(suite);
                CryptoLine { tag, suite, key }.attribute()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY80: &str = "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn parses_rfc4568_example_and_prints_it_back() {
        let c = CryptoLine::parse(KEY80).unwrap();
        assert_eq!((c.tag, c.suite), (1, SrtpSuite::AesCm128HmacSha1_80));
        assert_eq!(c.key.0.len(), 30);
        assert_eq!(c.attribute().value.as_deref(), Some(KEY80));
        assert_eq!(c.key.key().len(), 16);
        assert_eq!(c.key.salt().len(), 14);
        // A lifetime is accepted.
        let with_life = format!("{KEY80}|2^20");
        assert!(CryptoLine::parse(&with_life).is_some());
    }

    #[test]
    fn unusable_lines_are_skipped() {
        for bad in [
            "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
            "1 AES_256_CM_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
            "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=",
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!",
            "x AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
            "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz UNENCRYPTED_SRTP",
            "1 AES_CM_128_HMAC_SHA1_80 key:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
            "1 AEAD_AES_128_GCM inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
            "",
        ] {
            assert_eq!(CryptoLine::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_are_fresh_per_call_and_kept_within_it() {
        let mut a = LocalKeys::default();
        let mut b = LocalKeys::default();
        let a1 = a.offer_lines();
        assert_eq!(a1.len(), 3);
        assert_eq!(a.offer_lines(), a1, "a re-offer keeps the call's keys");
        assert_ne!(b.offer_lines(), a1, "another call draws new keys");
        let gcm = a.for_suite(SrtpSuite::AeadAes128Gcm);
        assert_eq!(gcm.0.len(), 28);
        assert_eq!(format!("{gcm:?}"), "MasterKey(28 bytes)");
    }

    #[test]
    fn policy_names() {
        for p in [SrtpPolicy::Off, SrtpPolicy::Optional, SrtpPolicy::Mandatory] {
            assert_eq!(p.name().parse::<SrtpPolicy>(), Ok(p));
        }
        assert!("maybe".parse::<SrtpPolicy>().is_err());
    }
}
