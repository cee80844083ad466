//! HTTP digest for SIP (RFC 3261 §22, RFC 2617, RFC 7616 algorithms, RFC 8760 for SIP).
//!
//! [`Challenge::parse`] reads one `WWW-Authenticate` / `Proxy-Authenticate` value;
//! [`DigestClient`] keeps the per-realm state (nonce, nonce-count, cnonce) of one peer and
//! produces `Authorization` / `Proxy-Authorization` values. It is used by REGISTER and by
//! the INVITE state machine alike.
//!
//! Only `qop=auth` (or no qop, RFC 2069 style) is answered; a challenge that offers only
//! `auth-int` is treated as unusable.

use super::message::{HeaderName, Method, Response, Uri};
use md5::Md5;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;

/// A user name and password for digest authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The digest user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// Digest hash algorithm (RFC 7616 §3.3, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (the default when no algorithm is named).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    /// Parses an algorithm token, case-insensitively.
    pub fn from_token(token: &str) -> Option<Algorithm> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(token))
    }

    /// The token as written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// True for the `-sess` variants.
    pub fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Preference rank: higher is stronger (SHA-256 over MD5).
    fn strength(self) -> u8 {
        match self {
            Algorithm::Sha256 => 4,
            Algorithm::Sha256Sess => 3,
            Algorithm::Md5 => 2,
            Algorithm::Md5Sess => 1,
        }
    }

    /// Lowercase hex digest of `data`.
    pub fn hash_hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

/// Quality of protection (RFC 2617 §3.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// `auth`
    Auth,
    /// `auth-int` (body integrity; offered by some servers, never chosen by us).
    AuthInt,
}

/// One parsed digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed back unchanged.
    pub opaque: Option<String>,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// The offered `qop` values, in order (empty: RFC 2069 style).
    pub qop: Vec<Qop>,
    /// `stale=true`: the nonce expired but the credentials were fine.
    pub stale: bool,
}

/// Why a challenge could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The scheme is not `Digest`.
    #[error("not a Digest challenge")]
    NotDigest,
    /// A required parameter is missing.
    #[error("digest challenge lacks {0}")]
    Missing(&'static str),
    /// The algorithm is not one we implement.
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// Only `auth-int` (or unknown qop values) offered.
    #[error("no supported qop offered")]
    UnsupportedQop,
    /// The parameter list is malformed.
    #[error("malformed digest challenge: {0}")]
    Syntax(&'static str),
}

impl Challenge {
    /// Parses a `WWW-Authenticate` or `Proxy-Authenticate` value such as
    /// `Digest realm="example.com", nonce="abc", algorithm=SHA-256, qop="auth,auth-int"`.
    /// Names are case-insensitive, values may be quoted or tokens, unknown parameters are
    /// ignored. An unknown algorithm or a qop list without `auth` is an error.
    pub fn parse(header_value: &str) -> Result<Challenge, AuthError> {
        let value = header_value.trim();
        let (scheme, rest) = value
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthError::NotDigest);
        }
        let params = parse_params(rest)?;
        let find = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let realm = find("realm").ok_or(AuthError::Missing("realm"))?;
        let nonce = find("nonce").ok_or(AuthError::Missing("nonce"))?;
        let algorithm = match find("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::from_token(&a).ok_or(AuthError::UnsupportedAlgorithm(a))?,
        };
        let mut qop = Vec::new();
        if let Some(list) = find("qop") {
            for q in list.split(',').map(str::trim).filter(|q| !q.is_empty()) {
                if q.eq_ignore_ascii_case("auth") {
                    qop.push(Qop::Auth);
                } else if q.eq_ignore_ascii_case("auth-int") {
                    qop.push(Qop::AuthInt);
                }
            }
            if !qop.contains(&Qop::Auth) {
                return Err(AuthError::UnsupportedQop);
            }
        }
        let stale = find("stale").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        Ok(Challenge {
            realm,
            nonce,
            opaque: find("opaque"),
            algorithm,
            qop,
            stale,
        })
    }
}

/// Splits `name=value, name="quoted, value"` into pairs (quotes removed, `\x` unescaped).
fn parse_params(text: &str) -> Result<Vec<(String, String)>, AuthError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
        {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_ascii_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            // A parameter without a value: not valid in digest, skip it.
            if name.is_empty() {
                return Err(AuthError::Syntax("empty parameter name"));
            }
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(AuthError::Syntax("unterminated quoted string"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if name.is_empty() {
            return Err(AuthError::Syntax("empty parameter name"));
        }
        out.push((name, value));
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The inputs of one digest computation (RFC 7616 §3.4.1).
#[derive(Debug, Clone, Copy)]
pub struct DigestInput<'a> {
    /// Hash algorithm.
    pub algorithm: Algorithm,
    /// User name.
    pub username: &'a str,
    /// Realm.
    pub realm: &'a str,
    /// Password.
    pub password: &'a str,
    /// Server nonce.
    pub nonce: &'a str,
    /// Client nonce (used with qop and with `-sess`).
    pub cnonce: &'a str,
    /// Nonce count, written as 8 hex digits.
    pub nc: u32,
    /// `Some(Qop::Auth)` or `None` for RFC 2069 style.
    pub qop: Option<Qop>,
    /// Request method.
    pub method: &'a str,
    /// The digest-uri (the Request-URI for SIP).
    pub uri: &'a str,
}

/// Computes the `response` value. `auth-int` hashes an empty body.
pub fn digest_response(i: &DigestInput<'_>) -> String {
    let alg = i.algorithm;
    let mut ha1 = alg.hash_hex(&format!("{}:{}:{}", i.username, i.realm, i.password));
    if alg.is_session() {
        ha1 = alg.hash_hex(&format!("{ha1}:{}:{}", i.nonce, i.cnonce));
    }
    let ha2 = match i.qop {
        Some(Qop::AuthInt) => alg.hash_hex(&format!("{}:{}:{}", i.method, i.uri, alg.hash_hex(""))),
        _ => alg.hash_hex(&format!("{}:{}", i.method, i.uri)),
    };
    match i.qop {
        None => alg.hash_hex(&format!("{ha1}:{}:{ha2}", i.nonce)),
        Some(q) => {
            let q = if q == Qop::Auth { "auth" } else { "auth-int" };
            alg.hash_hex(&format!(
                "{ha1}:{}:{:08x}:{}:{q}:{ha2}",
                i.nonce, i.nc, i.cnonce
            ))
        }
    }
}

/// What the caller should do after a 401/407.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeOutcome {
    /// A new challenge: resend the request with [`DigestClient::authorize_all`].
    Retry,
    /// Our nonce went stale (credentials were fine): resend with the new nonce.
    Stale,
    /// Give up: wrong credentials (the same realm challenged us again right after we answered
    /// a fresh nonce), no usable challenge, or too many stale nonces in a row.
    Rejected,
}

/// Consecutive `stale=true` challenges tolerated for one realm before giving up.
const MAX_STALE_IN_A_ROW: u8 = 3;

#[derive(Debug, Clone)]
struct RealmState {
    header: HeaderName,
    challenge: Challenge,
    /// Nonce count of the last Authorization we produced for this nonce (0: none yet).
    nc: u32,
    cnonce: String,
    stale_in_a_row: u8,
}

/// Digest state for one peer: the current challenge per realm and its nonce count.
#[derive(Debug)]
pub struct DigestClient {
    realms: Vec<RealmState>,
    rng: StdRng,
}

impl Default for DigestClient {
    fn default() -> Self {
        Self::new()
    }
}

impl DigestClient {
    /// A client with no challenge yet, cnonces from the OS-seeded generator.
    pub fn new() -> Self {
        Self::with_seed(rand::rng().random())
    }

    /// A client whose cnonces come from a seeded generator (deterministic tests).
    pub fn with_seed(seed: u64) -> Self {
        DigestClient {
            realms: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// True once any challenge has been accepted.
    pub fn has_challenge(&self) -> bool {
        !self.realms.is_empty()
    }

    /// Forgets every challenge (e.g. new credentials).
    pub fn reset(&mut self) {
        self.realms.clear();
    }

    /// Takes the challenges of a 401 (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`).
    ///
    /// Per realm the strongest usable challenge wins (SHA-256 over MD5). A realm that
    /// challenges again, without `stale=true`, right after we answered a fresh nonce means the
    /// credentials are wrong: [`ChallengeOutcome::Rejected`], so callers do not loop.
    pub fn handle_challenge(&mut self, resp: &Response) -> ChallengeOutcome {
        let (challenge_header, auth_header) = match resp.status {
            401 => (HeaderName::WwwAuthenticate, HeaderName::Authorization),
            407 => (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            ),
            _ => return ChallengeOutcome::Rejected,
        };
        let mut best: Vec<Challenge> = Vec::new();
        for c in resp
            .headers
            .get_all(&challenge_header)
            .filter_map(|v| Challenge::parse(v).ok())
        {
            match best.iter_mut().find(|b| b.realm == c.realm) {
                Some(b) if c.algorithm.strength() > b.algorithm.strength() => *b = c,
                Some(_) => {}
                None => best.push(c),
            }
        }
        if best.is_empty() {
            return ChallengeOutcome::Rejected;
        }
        let mut all_stale = true;
        for c in best {
            let cnonce = self.new_cnonce();
            let existing = self
                .realms
                .iter_mut()
                .find(|r| r.header == auth_header && r.challenge.realm == c.realm);
            match existing {
                Some(r) => {
                    if c.stale {
                        r.stale_in_a_row += 1;
                        if r.stale_in_a_row > MAX_STALE_IN_A_ROW {
                            return ChallengeOutcome::Rejected;
                        }
                    } else {
                        // nc == 1: our last answer used a fresh nonce and was refused.
                        if r.nc == 1 {
                            return ChallengeOutcome::Rejected;
                        }
                        r.stale_in_a_row = 0;
                        all_stale = false;
                    }
                    r.challenge = c;
                    r.nc = 0;
                    r.cnonce = cnonce;
                }
                None => {
                    all_stale = false;
                    self.realms.push(RealmState {
                        header: auth_header.clone(),
                        challenge: c,
                        nc: 0,
                        cnonce,
                        stale_in_a_row: 0,
                    });
                }
            }
        }
        if all_stale {
            ChallengeOutcome::Stale
        } else {
            ChallengeOutcome::Retry
        }
    }

    /// The credentials header for the most recent challenge, incrementing its nonce count.
    pub fn authorize(
        &mut self,
        method: &Method,
        uri: &Uri,
        creds: &Credentials,
    ) -> Option<(HeaderName, String)> {
        let uri = uri.to_string();
        let r = self.realms.last_mut()?;
        Some(Self::answer(r, method, &uri, creds))
    }

    /// One credentials header per known realm (a proxy and a registrar may both have
    /// challenged), each incrementing its nonce count. Put all of them in the request.
    pub fn authorize_all(
        &mut self,
        method: &Method,
        uri: &Uri,
        creds: &Credentials,
    ) -> Vec<(HeaderName, String)> {
        let uri = uri.to_string();
        self.realms
            .iter_mut()
            .map(|r| Self::answer(r, method, &uri, creds))
            .collect()
    }

    fn answer(
        r: &mut RealmState,
        method: &Method,
        uri: &str,
        creds: &Credentials,
    ) -> (HeaderName, String) {
        r.nc = r.nc.saturating_add(1);
        if r.nc > 1 {
            // Reusing a nonce means an earlier answer went through: stale runs are over.
            r.stale_in_a_row = 0;
        }
        let c = &r.challenge;
        let qop = c.qop.contains(&Qop::Auth).then_some(Qop::Auth);
        let response = digest_response(&DigestInput {
            algorithm: c.algorithm,
            username: &creds.username,
            realm: &c.realm,
            password: &creds.password,
            nonce: &c.nonce,
            cnonce: &r.cnonce,
            nc: r.nc,
            qop,
            method: method.as_str(),
            uri,
        });
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
            quote(&creds.username),
            quote(&c.realm),
            quote(&c.nonce),
            quote(uri),
            response,
            c.algorithm.as_str()
        );
        if let Some(o) = &c.opaque {
            let _ = write!(v, ", opaque=\"{}\"", quote(o));
        }
        if qop.is_some() {
            let _ = write!(v, ", qop=auth, nc={:08x}, cnonce=\"{}\"", r.nc, r.cnonce);
        }
        (r.header.clone(), v)
    }

    fn new_cnonce(&mut self) -> String {
        let bytes: [u8; 12] = self.rng.random();
        hex(&bytes)
    }
}

/// Escapes `"` and `\` for a quoted-string.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::message::{Host, Params, Scheme};

    fn sip_uri(host: &str) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: None,
            password: None,
            host: Host::Domain(host.into()),
            port: None,
            params: Params::default(),
            headers: Vec::new(),
        }
    }

    fn challenge_response(status: u16, values: &[&str]) -> Response {
        let mut r = Response {
            status,
            reason: "Unauthorized".into(),
            headers: Default::default(),
            body: Vec::new(),
        };
        let name = if status == 407 {
            HeaderName::ProxyAuthenticate
        } else {
            HeaderName::WwwAuthenticate
        };
        for v in values {
            r.headers.push(name.clone(), *v);
        }
        r
    }

    fn param<'a>(header: &'a str, name: &str) -> Option<&'a str> {
        let start = header.find(&format!("{name}="))? + name.len() + 1;
        let rest = &header[start..];
        Some(match rest.strip_prefix('"') {
            Some(q) => &q[..q.find('"')?],
            None => rest.split(',').next()?.trim(),
        })
    }

    fn creds() -> Credentials {
        Credentials {
            username: "alice".into(),
            password: "secret".into(),
        }
    }

    #[test]
    fn rfc2617_md5_vector() {
        let r = digest_response(&DigestInput {
            algorithm: Algorithm::Md5,
            username: "Mufasa",
            realm: "testrealm@host.com",
            password: "Circle Of Life",
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            cnonce: "0a4f113b",
            nc: 1,
            qop: Some(Qop::Auth),
            method: "GET",
            uri: "/dir/index.html",
        });
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_vectors_sha256_and_md5() {
        let mut input = DigestInput {
            algorithm: Algorithm::Sha256,
            username: "Mufasa",
            realm: "http-auth@example.org",
            password: "Circle of Life",
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            nc: 1,
            qop: Some(Qop::Auth),
            method: "GET",
            uri: "/dir/index.html",
        };
        assert_eq!(
            digest_response(&input),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        input.algorithm = Algorithm::Md5;
        assert_eq!(digest_response(&input), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn rfc2069_style_without_qop() {
        let i = DigestInput {
            algorithm: Algorithm::Md5,
            username: "u",
            realm: "r",
            password: "p",
            nonce: "n",
            cnonce: "ignored",
            nc: 7,
            qop: None,
            method: "REGISTER",
            uri: "sip:example.com",
        };
        let ha1 = Algorithm::Md5.hash_hex("u:r:p");
        let ha2 = Algorithm::Md5.hash_hex("REGISTER:sip:example.com");
        assert_eq!(
            digest_response(&i),
            Algorithm::Md5.hash_hex(&format!("{ha1}:n:{ha2}"))
        );
    }

    #[test]
    fn parse_challenge_variants() {
        let c = Challenge::parse(
            "digest REALM=\"atlanta.com\",nonce=\"a\\\"b,c\" , Algorithm=sha-256, qop=\"auth,auth-int\", stale=TRUE, foo=bar, opaque=xyz",
        )
        .unwrap();
        assert_eq!(c.realm, "atlanta.com");
        assert_eq!(c.nonce, "a\"b,c");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.qop, vec![Qop::Auth, Qop::AuthInt]);
        assert!(c.stale);
        assert_eq!(c.opaque.as_deref(), Some("xyz"));

        let c = Challenge::parse("Digest realm=r, nonce=n").unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(c.qop.is_empty());
        assert!(!c.stale);
        assert_eq!(
            Challenge::parse("Digest realm=r, nonce=n, algorithm=MD5-sess")
                .unwrap()
                .algorithm,
            Algorithm::Md5Sess
        );
    }

    #[test]
    fn parse_challenge_errors() {
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(AuthError::NotDigest)
        );
        assert_eq!(
            Challenge::parse("Digest nonce=\"x\""),
            Err(AuthError::Missing("realm"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=r, nonce=n, qop=\"auth-int\""),
            Err(AuthError::UnsupportedQop)
        );
        assert!(matches!(
            Challenge::parse("Digest realm=r, nonce=n, algorithm=SHA-512-256"),
            Err(AuthError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            Challenge::parse("Digest realm=\"r, nonce=n"),
            Err(AuthError::Syntax(_))
        ));
    }

    #[test]
    fn prefers_sha256_over_md5() {
        let mut d = DigestClient::with_seed(1);
        let resp = challenge_response(
            401,
            &[
                "Digest realm=\"x\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"",
                "Digest realm=\"x\", nonce=\"n2\", algorithm=SHA-256, qop=\"auth\"",
            ],
        );
        assert_eq!(d.handle_challenge(&resp), ChallengeOutcome::Retry);
        let (name, v) = d
            .authorize(&Method::Register, &sip_uri("x"), &creds())
            .unwrap();
        assert_eq!(name, HeaderName::Authorization);
        assert_eq!(param(&v, "algorithm"), Some("SHA-256"));
        assert_eq!(param(&v, "nonce"), Some("n2"));
        assert_eq!(param(&v, "response").map(str::len), Some(64));
    }

    #[test]
    fn authorization_value_verifies_and_nc_increments() {
        let mut d = DigestClient::with_seed(2);
        let resp = challenge_response(
            407,
            &["Digest realm=\"p\", nonce=\"abc\", opaque=\"op\", qop=\"auth\""],
        );
        assert_eq!(d.handle_challenge(&resp), ChallengeOutcome::Retry);
        let uri = sip_uri("example.com");
        let (name, v1) = d.authorize(&Method::Register, &uri, &creds()).unwrap();
        assert_eq!(name, HeaderName::ProxyAuthorization);
        assert_eq!(param(&v1, "nc"), Some("00000001"));
        assert_eq!(param(&v1, "opaque"), Some("op"));
        assert_eq!(param(&v1, "uri"), Some("sip:example.com"));
        let cnonce = param(&v1, "cnonce").unwrap().to_string();
        let expected = digest_response(&DigestInput {
            algorithm: Algorithm::Md5,
            username: "alice",
            realm: "p",
            password: "secret",
            nonce: "abc",
            cnonce: &cnonce,
            nc: 1,
            qop: Some(Qop::Auth),
            method: "REGISTER",
            uri: "sip:example.com",
        });
        assert_eq!(param(&v1, "response"), Some(expected.as_str()));
        let (_, v2) = d.authorize(&Method::Register, &uri, &creds()).unwrap();
        assert_eq!(param(&v2, "nc"), Some("00000002"));
        assert_ne!(param(&v1, "response"), param(&v2, "response"));
    }

    #[test]
    fn no_qop_means_no_nc_or_cnonce() {
        let mut d = DigestClient::with_seed(3);
        d.handle_challenge(&challenge_response(401, &["Digest realm=r, nonce=n"]));
        let (_, v) = d
            .authorize(&Method::Invite, &sip_uri("b"), &creds())
            .unwrap();
        assert!(param(&v, "nc").is_none());
        assert!(param(&v, "cnonce").is_none());
        assert!(param(&v, "qop").is_none());
    }

    #[test]
    fn repeated_challenge_after_answer_is_rejected() {
        let mut d = DigestClient::with_seed(4);
        let ch = challenge_response(401, &["Digest realm=r, nonce=n1, qop=auth"]);
        assert_eq!(d.handle_challenge(&ch), ChallengeOutcome::Retry);
        d.authorize(&Method::Register, &sip_uri("r"), &creds());
        let again = challenge_response(401, &["Digest realm=r, nonce=n2, qop=auth"]);
        assert_eq!(d.handle_challenge(&again), ChallengeOutcome::Rejected);
    }

    #[test]
    fn stale_nonce_retries_with_new_nonce_and_resets_nc() {
        let mut d = DigestClient::with_seed(5);
        let uri = sip_uri("r");
        d.handle_challenge(&challenge_response(
            401,
            &["Digest realm=r, nonce=n1, qop=auth"],
        ));
        d.authorize(&Method::Register, &uri, &creds());
        let stale = challenge_response(401, &["Digest realm=r, nonce=n2, qop=auth, stale=true"]);
        assert_eq!(d.handle_challenge(&stale), ChallengeOutcome::Stale);
        let (_, v) = d.authorize(&Method::Register, &uri, &creds()).unwrap();
        assert_eq!(param(&v, "nonce"), Some("n2"));
        assert_eq!(param(&v, "nc"), Some("00000001"));
        // Endless stale nonces end too.
        let mut outcome = ChallengeOutcome::Stale;
        for _ in 0..5 {
            outcome = d.handle_challenge(&stale);
        }
        assert_eq!(outcome, ChallengeOutcome::Rejected);
    }

    #[test]
    fn new_nonce_after_reused_nonce_is_a_retry() {
        // Registration refresh: nonce reused (nc=2), then the server rotates it without stale.
        let mut d = DigestClient::with_seed(6);
        let uri = sip_uri("r");
        d.handle_challenge(&challenge_response(
            401,
            &["Digest realm=r, nonce=n1, qop=auth"],
        ));
        d.authorize(&Method::Register, &uri, &creds());
        d.authorize(&Method::Register, &uri, &creds());
        let fresh = challenge_response(401, &["Digest realm=r, nonce=n2, qop=auth"]);
        assert_eq!(d.handle_challenge(&fresh), ChallengeOutcome::Retry);
    }

    #[test]
    fn proxy_and_registrar_realms_both_answered() {
        let mut d = DigestClient::with_seed(7);
        d.handle_challenge(&challenge_response(407, &["Digest realm=proxy, nonce=a"]));
        d.handle_challenge(&challenge_response(401, &["Digest realm=reg, nonce=b"]));
        let all = d.authorize_all(&Method::Register, &sip_uri("x"), &creds());
        let names: Vec<_> = all.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(
            names,
            vec![HeaderName::ProxyAuthorization, HeaderName::Authorization]
        );
    }

    #[test]
    fn unusable_challenges_are_rejected() {
        let mut d = DigestClient::with_seed(8);
        let only_int = challenge_response(401, &["Digest realm=r, nonce=n, qop=\"auth-int\""]);
        assert_eq!(d.handle_challenge(&only_int), ChallengeOutcome::Rejected);
        let none = challenge_response(401, &[]);
        assert_eq!(d.handle_challenge(&none), ChallengeOutcome::Rejected);
        assert!(d
            .authorize(&Method::Register, &sip_uri("r"), &creds())
            .is_none());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = Challenge::parse(&s);
            let _ = Challenge::parse(&format!("Digest {s}"));
        }

        #[test]
        fn parsed_quoted_values_round_trip(realm in "[ -~]{0,40}", nonce in "[!-~]{1,40}") {
            let v = format!("Digest realm=\"{}\", nonce=\"{}\"", quote(&realm), quote(&nonce));
            let c = Challenge::parse(&v).unwrap();
            proptest::prop_assert_eq!(c.realm, realm);
            proptest::prop_assert_eq!(c.nonce, nonce);
        }
    }
}
