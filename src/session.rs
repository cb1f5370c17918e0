//! Encrypted cookies: the login session and the short-lived login state.
//!
//! Both are AES-256-GCM sealed with keys derived by HKDF-SHA256 from
//! `authz.session.secret` (a list rotates keys: the first seals, all open).
//! The cookie's purpose is bound as associated data, so a login-state cookie
//! can never be replayed as a session, nor the other way round.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::secret::Secret;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// Version byte in front of every sealed value, so the format can change.
const VERSION: u8 = 1;

/// What a sealed value is for (its associated data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Session,
    LoginState,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Self::Session => b"ingress-authz session v1",
            Self::LoginState => b"ingress-authz login-state v1",
        }
    }
}

pub struct SessionKeys {
    ciphers: Vec<Aes256Gcm>,
    /// True when no secret was configured and a random one is in use.
    pub ephemeral: bool,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("keys", &self.ciphers.len())
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

fn derive(secret: &[u8]) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(Some(b"ingress-authz"), secret);
    let mut okm = zeroize::Zeroizing::new([0u8; 32]);
    hk.expand(b"session cookie aes-256-gcm", okm.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(*okm))
}

impl SessionKeys {
    pub fn from_secrets(secrets: &[Secret]) -> Self {
        if secrets.is_empty() {
            let mut random = zeroize::Zeroizing::new([0u8; 32]);
            rand::fill(random.as_mut());
            return Self {
                ciphers: vec![derive(random.as_ref())],
                ephemeral: true,
            };
        }
        Self {
            ciphers: secrets
                .iter()
                .map(|s| derive(s.expose().as_bytes()))
                .collect(),
            ephemeral: false,
        }
    }

    /// `base64url(version || nonce || ciphertext+tag)`.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let sealed = self.ciphers[0]
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose.aad(),
                },
            )
            .expect("AES-GCM encryption of a small message cannot fail");
        let mut out = Vec::with_capacity(1 + 12 + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// The plaintext, or None for anything tampered, foreign or malformed.
    pub fn open(&self, purpose: Purpose, sealed: &str) -> Option<Vec<u8>> {
        let raw = B64.decode(sealed.trim()).ok()?;
        if raw.len() < 1 + 12 + 16 || raw[0] != VERSION {
            return None;
        }
        let nonce: [u8; 12] = raw[1..13].try_into().ok()?;
        let payload = Payload {
            msg: &raw[13..],
            aad: purpose.aad(),
        };
        self.ciphers
            .iter()
            .find_map(|c| c.decrypt(&Nonce::from(nonce), Payload { ..payload }).ok())
    }

    pub fn seal_json<T: Serialize>(&self, purpose: Purpose, value: &T) -> String {
        let json = serde_json::to_vec(value).expect("plain structs serialise");
        self.seal(purpose, &json)
    }

    pub fn open_json<T: for<'de> Deserialize<'de>>(
        &self,
        purpose: Purpose,
        sealed: &str,
    ) -> Option<T> {
        serde_json::from_slice(&self.open(purpose, sealed)?).ok()
    }
}

/// What the session version that carries them calls policy attributes.
pub const ATTRIBUTES_VERSION: u8 = 1;

/// What policies need besides the profile, as the provider vouched for it
/// when it was read. A cookie sealed before these existed opens with
/// `version: 0` and nothing verified: policies that need them deny.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    #[serde(rename = "v", default)]
    pub version: u8,
    /// A verified email only.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The domain the provider vouches for.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// None: the provider told no groups.
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// The claims that the config's policies name.
    #[serde(
        rename = "cl",
        default,
        skip_serializing_if = "serde_json::Map::is_empty"
    )]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// When groups and claims were read (Unix seconds).
    #[serde(rename = "t", default)]
    pub read_at: u64,
    /// An access token that can read groups again (GitHub, GitLab).
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Secret>,
}

/// Who logged in, as the provider said (SPEC §7's mapping).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub id: String,
    pub username: String,
    pub email: String,
    pub nickname: String,
    pub avatar: String,
}

/// The session cookie's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "u")]
    pub identity: Identity,
    /// Provider and client_id this session is valid for.
    #[serde(rename = "p")]
    pub provider: String,
    #[serde(rename = "c")]
    pub client_id: String,
    /// Issued and expiry, Unix seconds.
    #[serde(rename = "i")]
    pub issued: u64,
    #[serde(rename = "e")]
    pub expires: u64,
    /// OpenID refresh token, when the provider gave one.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Secret>,
    /// When to refresh (Unix seconds; 0: never). Until `expires` at most.
    #[serde(rename = "n", default, skip_serializing_if = "is_zero")]
    pub renew_at: u64,
    /// Policy attributes (absent in cookies of older releases).
    #[serde(rename = "a", default)]
    pub attrs: Attributes,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The login-state cookie's content, one per login in flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    #[serde(rename = "s")]
    pub state: Secret,
    /// PKCE verifier, when the provider takes PKCE.
    #[serde(rename = "v")]
    pub verifier: Option<Secret>,
    /// OpenID Connect nonce, checked against the ID token.
    #[serde(rename = "n", default)]
    pub nonce: Option<Secret>,
    /// The route (`rules[0].paths[1]`) that asked for the login.
    #[serde(rename = "r")]
    pub route: String,
    /// Same-host relative URL to return to.
    #[serde(rename = "o")]
    pub original: String,
    /// The redirect_uri sent to the provider (the token request repeats it).
    #[serde(rename = "cb")]
    pub redirect_uri: String,
    #[serde(rename = "e")]
    pub expires: u64,
}

/// Keeps a return URL only if it stays on this host: a path starting with a
/// single `/`, no scheme, no `//` or `/\` (which browsers treat as another host).
pub fn same_host_path(url: &str) -> &str {
    let ok = url.starts_with('/')
        && !url.starts_with("//")
        && !url.starts_with("/\\")
        && !url.bytes().any(|b| b.is_ascii_control() || b == b'\\');
    if ok { url } else { "/" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secrets: &[&str]) -> SessionKeys {
        SessionKeys::from_secrets(
            &secrets
                .iter()
                .map(|s| Secret::new(s.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn seal_and_open_round_trip_bound_to_purpose() {
        let k = keys(&["0123456789abcdef0123456789abcdef"]);
        let sealed = k.seal(Purpose::Session, b"hello");
        assert_eq!(
            k.open(Purpose::Session, &sealed).as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(k.open(Purpose::LoginState, &sealed), None);
        assert_ne!(
            sealed,
            k.seal(Purpose::Session, b"hello"),
            "fresh nonce each time"
        );
    }

    #[test]
    fn tampered_foreign_and_garbage_values_do_not_open() {
        let k = keys(&["0123456789abcdef0123456789abcdef"]);
        let other = keys(&["another-secret-another-secret-xx"]);
        let sealed = k.seal(Purpose::Session, b"hello");
        assert_eq!(other.open(Purpose::Session, &sealed), None);
        let mut raw = B64.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(k.open(Purpose::Session, &B64.encode(&raw)), None);
        for garbage in ["", "x", "!!!!", &"A".repeat(100)] {
            assert_eq!(k.open(Purpose::Session, garbage), None);
        }
    }

    #[test]
    fn rotation_old_keys_still_open() {
        let old = keys(&["old-secret-old-secret-old-secret"]);
        let rotated = keys(&[
            "new-secret-new-secret-new-secret",
            "old-secret-old-secret-old-secret",
        ]);
        let sealed = old.seal(Purpose::Session, b"v");
        assert_eq!(
            rotated.open(Purpose::Session, &sealed).as_deref(),
            Some(&b"v"[..])
        );
        let fresh = rotated.seal(Purpose::Session, b"w");
        assert_eq!(
            old.open(Purpose::Session, &fresh),
            None,
            "new cookies use the first key"
        );
    }

    #[test]
    fn return_urls_stay_on_this_host() {
        for (input, want) in [
            ("/dashboard?tab=1", "/dashboard?tab=1"),
            ("/", "/"),
            ("//evil.com", "/"),
            ("/\\evil.com", "/"),
            ("https://evil.com", "/"),
            ("evil.com", "/"),
            ("/a\\b", "/"),
            ("/a\nb", "/"),
            ("", "/"),
        ] {
            assert_eq!(same_host_path(input), want, "{input}");
        }
    }

    /// The session and login-state shapes of the previous release, as it
    /// (de)serialised them: a rolling deploy runs both.
    mod previous_release {
        use serde::{Deserialize, Serialize};

        #[derive(Serialize, Deserialize)]
        pub(super) struct Identity {
            pub id: String,
            pub username: String,
            pub email: String,
            pub nickname: String,
            pub avatar: String,
        }

        #[derive(Serialize, Deserialize)]
        pub(super) struct Session {
            #[serde(rename = "u")]
            pub identity: Identity,
            #[serde(rename = "p")]
            pub provider: String,
            #[serde(rename = "c")]
            pub client_id: String,
            #[serde(rename = "i")]
            pub issued: u64,
            #[serde(rename = "e")]
            pub expires: u64,
            #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
            pub refresh: Option<String>,
            #[serde(rename = "n", default)]
            pub renew_at: u64,
        }

        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        pub(super) struct LoginState {
            #[serde(rename = "s")]
            pub state: String,
            #[serde(rename = "v")]
            pub verifier: Option<String>,
            #[serde(rename = "n", default)]
            pub nonce: Option<String>,
            #[serde(rename = "r")]
            pub route: String,
            #[serde(rename = "o")]
            pub original: String,
            #[serde(rename = "cb")]
            pub redirect_uri: String,
            #[serde(rename = "e")]
            pub expires: u64,
        }
    }

    #[test]
    fn a_previous_release_cookie_opens_with_nothing_verified() {
        let k = keys(&["0123456789abcdef0123456789abcdef"]);
        let old = previous_release::Session {
            identity: previous_release::Identity {
                id: "42".into(),
                username: "octocat".into(),
                email: "ceo@victim.example".into(),
                nickname: String::new(),
                avatar: String::new(),
            },
            provider: "github".into(),
            client_id: "cid".into(),
            issued: 1,
            expires: u64::MAX,
            refresh: None,
            renew_at: 0,
        };
        let sealed = k.seal_json(Purpose::Session, &old);
        let opened: Session = k.open_json(Purpose::Session, &sealed).expect("opens");
        assert_eq!(opened.identity.id, "42");
        assert_eq!(opened.attrs.version, 0, "marked as predating attributes");
        assert_eq!(opened.attrs.email, None, "its email is not verified");
        assert_eq!(opened.attrs.groups, None, "its groups are unknown");
    }

    #[test]
    fn the_previous_release_opens_new_cookies_and_login_states() {
        let k = keys(&["0123456789abcdef0123456789abcdef"]);
        let new = Session {
            identity: Identity {
                id: "42".into(),
                ..Default::default()
            },
            provider: "oidc:https://idp".into(),
            client_id: "cid".into(),
            issued: 1,
            expires: 2,
            refresh: Some("r".into()),
            renew_at: 2,
            attrs: Attributes {
                version: ATTRIBUTES_VERSION,
                email: Some("a@x.example".into()),
                groups: Some(vec!["admins".into()]),
                read_at: 1,
                ..Default::default()
            },
        };
        let sealed = k.seal_json(Purpose::Session, &new);
        let old: previous_release::Session = k
            .open_json(Purpose::Session, &sealed)
            .expect("an old replica opens it");
        assert_eq!(
            (old.identity.id.as_str(), old.refresh.as_deref()),
            ("42", Some("r"))
        );

        // Login state is unchanged: a login begun on either finishes on the other.
        let state = LoginState {
            state: "s".into(),
            verifier: Some("v".into()),
            nonce: Some("n".into()),
            route: "rules[0]".into(),
            original: "/x".into(),
            redirect_uri: "https://h/oauth2/callback".into(),
            expires: 9,
        };
        let sealed = k.seal_json(Purpose::LoginState, &state);
        let old: previous_release::LoginState = k
            .open_json(Purpose::LoginState, &sealed)
            .expect("old opens new");
        let back = k.seal_json(Purpose::LoginState, &old);
        assert_eq!(
            k.open_json::<LoginState>(Purpose::LoginState, &back),
            Some(state)
        );
    }

    proptest::proptest! {
        #[test]
        fn open_never_panics(s in "\\PC*") {
            let k = keys(&["0123456789abcdef0123456789abcdef"]);
            let _ = k.open(Purpose::Session, &s);
        }
    }
}
