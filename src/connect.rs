//! `X-Connect-Token` / `X-Connect-Timestamp` (SPEC §8): the logged-in
//! identity, signed for upstreams. Tokens are cached per session until
//! shortly before they expire rather than signed on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::spec::ConnectSpec;
use crate::session::Identity;

pub const ISSUER: &str = "ingress-authz";
const CACHE_CAPACITY: usize = 10_000;

#[derive(Serialize)]
struct Claims<'a> {
    id: &'a str,
    username: &'a str,
    email: &'a str,
    nickname: &'a str,
    avatar: &'a str,
    iat: u64,
    exp: u64,
    iss: &'static str,
    sub: &'a str,
}

/// A signed token and when it was issued (Unix ms) and expires (Unix s).
#[derive(Clone, Debug)]
pub struct Signed {
    pub token: String,
    pub issued_ms: u64,
    expires: u64,
}

pub struct ConnectSigner {
    key: EncodingKey,
    algorithm: Algorithm,
    expires_in: u64,
    cache: Mutex<HashMap<[u8; 32], Signed>>,
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
    pub fn from_spec(spec: &ConnectSpec) -> Result<Option<Self>, String> {
        if !spec.enabled {
            return Ok(None);
        }
        let secret = spec
            .secret
            .as_ref()
            .ok_or("connect needs jwt.secret")?
            .expose()
            .as_bytes();
        let (key, algorithm) = match spec.algorithm.as_str() {
            "hs256" => (EncodingKey::from_secret(secret), Algorithm::HS256),
            "hs384" => (EncodingKey::from_secret(secret), Algorithm::HS384),
            "hs512" => (EncodingKey::from_secret(secret), Algorithm::HS512),
            "rs256" => (EncodingKey::from_rsa_pem(secret), Algorithm::RS256),
            "es256" => (EncodingKey::from_ec_pem(secret), Algorithm::ES256),
            "eddsa" => (EncodingKey::from_ed_pem(secret), Algorithm::EdDSA),
            other => return Err(format!("unknown connect algorithm {other}")),
        };
        let key = key.map_err(|e| format!("invalid connect key: {e}"))?;
        Ok(Some(ConnectSigner {
            key,
            algorithm,
            expires_in: spec.expires_in.as_secs().max(1),
            cache: Mutex::new(HashMap::new()),
        }))
    }

    /// The token for a session (identified by its cookie value), from the
    /// cache while it has more than a fifth of its life (at most 30 s) left.
    pub fn token_for(&self, session_cookie: &str, identity: &Identity, now: Duration) -> Signed {
        let key: [u8; 32] = Sha256::digest(session_cookie.as_bytes()).into();
        let now_s = now.as_secs();
        let margin = (self.expires_in / 5).min(30);
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = cache.get(&key)
                && s.expires > now_s + margin
            {
                return s.clone();
            }
        }
        let signed = self.sign(identity, now);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, s| s.expires > now_s + margin);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, signed.clone());
        signed
    }

    fn sign(&self, identity: &Identity, now: Duration) -> Signed {
        let iat = now.as_secs();
        let claims = Claims {
            id: &identity.id,
            username: &identity.username,
            email: &identity.email,
            nickname: &identity.nickname,
            avatar: &identity.avatar,
            iat,
            exp: iat + self.expires_in,
            iss: ISSUER,
            sub: &identity.id,
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.key)
            .expect("signing with a validated key cannot fail");
        Signed {
            token,
            issued_ms: now.as_millis() as u64,
            expires: iat + self.expires_in,
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
            algorithm: "hs256".into(),
            expires_in: Duration::from_secs(expires),
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn tokens_verify_and_are_cached_until_near_expiry() {
        let s = signer(300);
        let id = Identity {
            id: "42".into(),
            username: "octo".into(),
            ..Default::default()
        };
        let t0 = Duration::from_secs(1_000_000);
        let a = s.token_for("cookie-a", &id, t0);
        let b = s.token_for("cookie-a", &id, t0 + Duration::from_secs(100));
        assert_eq!(a.token, b.token, "cached");
        let c = s.token_for("cookie-a", &id, t0 + Duration::from_secs(290));
        assert_ne!(a.token, c.token, "re-signed near expiry");
        assert_ne!(
            a.token,
            s.token_for("cookie-b", &id, t0 + Duration::from_secs(1))
                .token
        );
        let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
        v.validate_exp = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &a.token,
            &jsonwebtoken::DecodingKey::from_secret(b"shared-secret").unwrap(),
            &v,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "42");
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["exp"], 1_000_300);
        assert_eq!(a.issued_ms, 1_000_000_000);
    }
}
