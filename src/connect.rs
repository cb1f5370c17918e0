//! `X-Connect-Token` / `X-Connect-Timestamp` (SPEC §8): the logged-in
//! identity, signed for upstreams. A token is kept with its opened session
//! ([`crate::auth::open_sessions`]) and reused while [`ConnectSigner::is_fresh`],
//! rather than signed on every request.

use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde::Serialize;

use crate::config::spec::ConnectSpec;
use crate::identity::TokenIdentity;
use crate::session::Session;

pub const ISSUER: &str = "ingress-authz";

/// What a connect token says about the user, and for whom (`aud`).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ConnectClaims<'a> {
    pub id: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    pub nickname: &'a str,
    pub avatar: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<&'a [String]>,
    /// The host the token is for, so one upstream cannot replay it to another.
    pub aud: &'a str,
}

impl<'a> ConnectClaims<'a> {
    pub fn of_session(session: &'a Session, aud: &'a str) -> Self {
        let p = &session.identity;
        ConnectClaims {
            id: &p.id,
            username: &p.username,
            email: &p.email,
            nickname: &p.nickname,
            avatar: &p.avatar,
            groups: session.attrs.groups.as_deref(),
            aud,
        }
    }

    /// oidc API mode: the identity from the token's claims.
    pub fn of_token(t: &'a TokenIdentity, aud: &'a str) -> Self {
        ConnectClaims {
            id: t.sub.as_deref().unwrap_or_default(),
            username: &t.username,
            email: t.email.as_deref().unwrap_or_default(),
            nickname: &t.name,
            avatar: &t.picture,
            groups: t.groups.as_deref(),
            aud,
        }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    #[serde(flatten)]
    user: &'a ConnectClaims<'a>,
    iat: u64,
    exp: u64,
    iss: &'static str,
    sub: &'a str,
}

/// A signed token and when it was issued (Unix ms) and expires (Unix s).
#[derive(Clone)]
pub struct Signed {
    pub token: String,
    pub issued_ms: u64,
    expires: u64,
    /// The `aud` it was signed for.
    pub audience: Box<str>,
}

/// The token is a credential upstreams trust: never printed.
impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed")
            .field("issued_ms", &self.issued_ms)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why connect headers cannot be signed with the configured key.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `connect.enabled` without `jwt.secret`.
    #[error("connect needs jwt.secret")]
    NoSecret,
    /// The secret is not a key of the algorithm's kind.
    #[error("invalid connect key: {0}")]
    Key(#[source] jsonwebtoken::errors::Error),
}

/// The signing key for `algorithm`: the secret itself for HS*, else a PEM
/// private key of the algorithm's kind (the config walk checks it with this).
pub fn signing_key(algorithm: Algorithm, secret: &[u8]) -> Result<EncodingKey, ConnectError> {
    match algorithm.family() {
        AlgorithmFamily::Hmac => EncodingKey::from_secret(secret),
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(secret),
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(secret),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(secret),
    }
    .map_err(ConnectError::Key)
}

pub struct ConnectSigner {
    key: EncodingKey,
    algorithm: Algorithm,
    expires_in: u64,
    /// `connect.jwt.audience`; None: the request's host.
    audience: Option<String>,
}

impl std::fmt::Debug for ConnectSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectSigner")
            .field("algorithm", &self.algorithm)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl ConnectSigner {
    /// None when connect is off. The key was validated at config load.
    pub fn from_spec(spec: &ConnectSpec) -> Result<Option<Self>, ConnectError> {
        if !spec.enabled {
            return Ok(None);
        }
        let secret = spec.secret.as_ref().ok_or(ConnectError::NoSecret)?;
        let algorithm = spec.algorithm;
        let key = signing_key(algorithm, secret.expose().as_bytes())?;
        Ok(Some(Self {
            key,
            algorithm,
            expires_in: spec.expires_in.as_secs().max(1),
            audience: spec.audience.clone(),
        }))
    }

    /// Whether a token can still be sent: more than a fifth of its life
    /// (at most 30 s) left, so it does not expire on its way upstream.
    pub fn is_fresh(&self, signed: &Signed, now: Duration) -> bool {
        let margin = (self.expires_in / 5).min(30);
        signed.expires > now.as_secs() + margin
    }

    /// The configured audience, or the request's host without its port.
    pub fn audience_for<'h>(&'h self, host: &'h str) -> std::borrow::Cow<'h, str> {
        match &self.audience {
            Some(a) => std::borrow::Cow::Borrowed(a),
            None => crate::matching::host::normalize_host(host),
        }
    }

    pub fn sign(&self, user: &ConnectClaims<'_>, now: Duration) -> Signed {
        let iat = now.as_secs();
        let claims = Claims {
            user,
            iat,
            exp: iat + self.expires_in,
            iss: ISSUER,
            sub: user.id,
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.key)
            .expect("signing with a validated key cannot fail");
        Signed {
            token,
            issued_ms: now.as_millis() as u64,
            expires: iat + self.expires_in,
            audience: user.aud.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn signer(expires: u64) -> ConnectSigner {
        ConnectSigner::from_spec(&ConnectSpec {
            loc: Default::default(),
            enabled: true,
            secret: Some(Secret::new("shared-secret".into())),
            algorithm: Algorithm::HS256,
            expires_in: Duration::from_secs(expires),
            audience: None,
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn tokens_verify_and_stay_fresh_until_near_expiry() {
        let s = signer(300);
        let groups = vec!["admins".to_string()];
        let id = ConnectClaims {
            id: "42",
            username: "octo",
            email: "",
            nickname: "",
            avatar: "",
            groups: Some(&groups),
            aud: "app.example.com",
        };
        let t0 = Duration::from_secs(1_000_000);
        let a = s.sign(&id, t0);
        assert!(s.is_fresh(&a, t0 + Duration::from_secs(100)));
        assert!(s.is_fresh(&a, t0 + Duration::from_secs(269)));
        assert!(
            !s.is_fresh(&a, t0 + Duration::from_secs(270)),
            "30 s margin"
        );
        let audience = ["app.example.com".to_string()];
        let mut v = crate::auth::validation::validation(&crate::auth::validation::Checks {
            algorithms: &[Algorithm::HS256],
            leeway: 0,
            issuer: None,
            audience: &audience,
            required: &[],
            not_before: false,
        });
        // The token was signed at a fixed time long past.
        v.validate_exp = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &a.token,
            &jsonwebtoken::DecodingKey::from_secret(b"shared-secret").unwrap(),
            &v,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "42");
        assert_eq!(claims["aud"], "app.example.com");
        assert_eq!(claims["groups"], serde_json::json!(["admins"]));
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["exp"], 1_000_300);
        assert_eq!(a.issued_ms, 1_000_000_000);
    }

    #[test]
    fn short_lived_tokens_keep_a_fifth_of_their_life() {
        let s = signer(10);
        let t0 = Duration::from_secs(1_000);
        let nobody = ConnectClaims {
            id: "",
            username: "",
            email: "",
            nickname: "",
            avatar: "",
            groups: None,
            aud: "h",
        };
        let a = s.sign(&nobody, t0);
        assert!(s.is_fresh(&a, t0 + Duration::from_secs(7)));
        assert!(!s.is_fresh(&a, t0 + Duration::from_secs(8)));
    }
}
