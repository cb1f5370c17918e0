//! What our sealed cookies carry: the login session (identity, policy
//! attributes, refresh token) and the short-lived login state, in shapes a
//! previous release still reads; and the same-host check of return URLs.
//!
//! Both are sealed by [`SessionKeys`] ([`keys`]): AES-256-GCM with the
//! cookie's purpose bound as associated data, so a login-state cookie can
//! never be replayed as a session, nor the other way round.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

pub mod keys;
pub use keys::{Purpose, SessionKeys};

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

/// The session cookie's content (or, with `session.store: redis`, the
/// stored record a ticket cookie opens).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// This session's random id: what a logout revokes on every replica.
    /// Empty in cookies of older releases (their logout revokes the user).
    #[serde(rename = "s", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The provider's session id (the ID token's `sid`): what an OpenID
    /// back-channel logout names.
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
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

/// A new session id: 128 random bits, base64url.
pub fn new_session_id() -> String {
    use base64::Engine as _;
    let mut id = [0u8; 16];
    rand::fill(&mut id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
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
    use super::keys::tests::keys;
    use super::*;

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
            id: new_session_id(),
            sid: Some("op-session".into()),
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
}
