//! JSON Web Key Sets fetched from an issuer, cached. An unknown `kid`
//! triggers a refresh — single-flight and at most once per rate window —
//! and the last good keys keep verifying while the issuer is down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::providers::{HttpError, ProviderHttp, loggable};
use super::wire::Lenient;

/// At most one fetch per JWKS URL per window, however many unknown kids arrive.
pub const REFRESH_WINDOW: Duration = Duration::from_secs(10);
/// After a failed fetch, the next may come this soon (a JWKS that never
/// loaded must not wait out a whole window once its issuer is back).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Bound on kept keys: a hostile or broken JWKS cannot grow memory.
const MAX_KEYS: usize = 100;

/// A verification key and the one algorithm it verifies.
pub struct VerifyKey {
    key: DecodingKey,
    pub algorithm: Algorithm,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    /// Keys without a `kid` (usable only when the set has exactly one key).
    anonymous: Vec<Arc<VerifyKey>>,
}

pub struct Jwks {
    url: Url,
    keys: ArcSwap<KeySet>,
    /// Held while fetching (single flight).
    fetch: tokio::sync::Mutex<Attempts>,
}

#[derive(Default)]
struct Attempts {
    last_success: Option<Instant>,
    last_failure: Option<Instant>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// Why a token did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No key with the token's `kid` (yet): a refresh may help.
    #[error("no key for the token's kid")]
    UnknownKey,
    /// The key set has never loaded: the issuer is unavailable.
    #[error("the issuer's keys are not available")]
    NoKeys,
    /// Malformed, bad signature, or a failed claim check.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Why a JWKS fetch gave no keys.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The document has no `keys` list.
    #[error("JWKS has no `keys` array")]
    NoKeys,
    /// Every key was of a kind we never verify with (or none parsed).
    #[error("JWKS holds no usable signature key")]
    NoUsableKey,
}

/// A JWK Set document. A key that does not parse (an unknown type, an odd
/// field) is None: one odd key must not hide the rest.
#[derive(Deserialize, Default)]
#[serde(default)]
struct KeySetDocument {
    keys: Lenient<Vec<Lenient<Jwk>>>,
}

/// The algorithm a JWK verifies: its own `alg` when that is a signature
/// algorithm of its key type, else the type's default. Never the token's.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let from_alg = jwk.common.key_algorithm.and_then(|a| {
        Some(match a {
            KeyAlgorithm::RS256 => Algorithm::RS256,
            KeyAlgorithm::RS384 => Algorithm::RS384,
            KeyAlgorithm::RS512 => Algorithm::RS512,
            KeyAlgorithm::PS256 => Algorithm::PS256,
            KeyAlgorithm::PS384 => Algorithm::PS384,
            KeyAlgorithm::PS512 => Algorithm::PS512,
            KeyAlgorithm::ES256 => Algorithm::ES256,
            KeyAlgorithm::ES384 => Algorithm::ES384,
            KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            _ => return None,
        })
    });
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        // Ed25519 only, and its 32 bytes: jsonwebtoken takes the first 32
        // bytes of `x` at every verification and panics on fewer.
        AlgorithmParameters::OctetKeyPair(okp) => {
            use base64::Engine as _;
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&okp.x);
            (okp.curve == EllipticCurve::Ed25519 && x.is_ok_and(|x| x.len() == 32))
                .then_some(Algorithm::EdDSA)
        }
        // Symmetric keys in a published JWKS are never accepted.
        _ => None,
    }?;
    match from_alg {
        Some(a) if a.family() == by_type.family() => Some(a),
        Some(_) => None,
        None => Some(by_type),
    }
}

fn parse_set(doc: KeySetDocument) -> Result<KeySet, JwksError> {
    let keys = doc.keys.0.ok_or(JwksError::NoKeys)?;
    let mut set = KeySet::default();
    for jwk in keys.into_iter().take(MAX_KEYS).filter_map(|k| k.0) {
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            continue;
        }
        let (Some(algorithm), Ok(key)) = (algorithm_of(&jwk), DecodingKey::from_jwk(&jwk)) else {
            continue;
        };
        let key = Arc::new(VerifyKey { key, algorithm });
        match jwk.common.key_id {
            Some(kid) => {
                set.by_kid.insert(kid, key);
            }
            None => set.anonymous.push(key),
        }
    }
    if set.by_kid.is_empty() && set.anonymous.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(set)
}

impl Jwks {
    pub fn new(url: Url) -> Self {
        Self {
            url,
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetch: tokio::sync::Mutex::new(Attempts::default()),
        }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    fn find(&self, kid: Option<&str>) -> Option<Arc<VerifyKey>> {
        let set = self.keys.load();
        match kid {
            Some(kid) => set.by_kid.get(kid).cloned(),
            None if set.by_kid.len() + set.anonymous.len() == 1 => {
                set.by_kid.values().chain(&set.anonymous).next().cloned()
            }
            None => None,
        }
    }

    /// Verifies `token` with the key its `kid` names; `template` carries the
    /// claim checks, its algorithms are replaced by the key's one.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        template: &Validation,
    ) -> Result<T, VerifyError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| VerifyError::Invalid(error_kind(&e)))?;
        let key = match self.find(header.kid.as_deref()) {
            Some(key) => key,
            None if self.is_empty() => return Err(VerifyError::NoKeys),
            None => return Err(VerifyError::UnknownKey),
        };
        let mut validation = template.clone();
        validation.algorithms = vec![key.algorithm];
        jsonwebtoken::decode::<T>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|e| VerifyError::Invalid(error_kind(&e)))
    }

    /// Replaces the keys with a JWK Set document's, as a fetch does with
    /// the body it read (public for the fuzz targets, which have no issuer
    /// to fetch from).
    pub fn load(&self, document: serde_json::Value) -> Result<(), JwksError> {
        let doc = KeySetDocument::deserialize(document).map_err(|_| JwksError::NoKeys)?;
        self.keys.store(Arc::new(parse_set(doc)?));
        Ok(())
    }

    fn is_empty(&self) -> bool {
        let set = self.keys.load();
        set.by_kid.is_empty() && set.anonymous.is_empty()
    }

    /// Fetches the set unless another caller is fetching (then waits for it),
    /// a fetch succeeded within [`REFRESH_WINDOW`], or one failed within
    /// `RETRY_AFTER_FAILURE`. A failed fetch keeps the keys there were.
    pub async fn refresh(&self, http: &ProviderHttp) -> Result<(), JwksError> {
        let mut attempts = self.fetch.lock().await;
        let recent = |t: Option<Instant>, window: Duration| t.is_some_and(|t| t.elapsed() < window);
        if recent(attempts.last_success, REFRESH_WINDOW)
            || recent(attempts.last_failure, RETRY_AFTER_FAILURE)
        {
            return Ok(());
        }
        let fetched = match http.get_json(&self.url).await {
            Ok(doc) => parse_set(doc),
            Err(e) => Err(e.into()),
        };
        match fetched {
            Ok(set) => {
                self.keys.store(Arc::new(set));
                attempts.last_success = Some(crate::clock::now());
                Ok(())
            }
            Err(e) => {
                attempts.last_failure = Some(crate::clock::now());
                // Logged here, the one place every fetch goes through
                // (discovery's, an unknown kid's, the background one's);
                // failures are at most one per RETRY_AFTER_FAILURE.
                tracing::warn!(url = %loggable(&self.url), error = %e, "JWKS fetch failed");
                Err(e)
            }
        }
    }
}

/// A jsonwebtoken error's kind, without any token content.
pub(super) fn error_kind(e: &jsonwebtoken::errors::Error) -> String {
    format!("{:?}", e.kind())
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_mismatched_keys_are_refused() {
        let oct: Jwk =
            serde_json::from_value(serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}))
                .unwrap();
        assert_eq!(algorithm_of(&oct), None);
        let parse_set = |v| parse_set(serde_json::from_value(v).unwrap());
        let doc = serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]});
        assert!(parse_set(doc).is_err());
        assert!(parse_set(serde_json::json!({})).is_err());
        assert!(parse_set(serde_json::json!({"keys": "x"})).is_err());
    }

    /// Found by the `tokens` fuzz target: jsonwebtoken panics verifying
    /// with an Ed25519 `x` of fewer than 32 bytes.
    #[test]
    fn okp_keys_must_be_ed25519_of_32_bytes() {
        use base64::Engine as _;
        let okp = |crv: &str, len: usize| -> Jwk {
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![9u8; len]);
            serde_json::from_value(serde_json::json!({"kty": "OKP", "crv": crv, "x": x})).unwrap()
        };
        assert_eq!(algorithm_of(&okp("Ed25519", 32)), Some(Algorithm::EdDSA));
        for (crv, len) in [
            ("Ed25519", 20),
            ("Ed25519", 31),
            ("Ed25519", 33),
            ("Ed448", 57),
        ] {
            assert_eq!(algorithm_of(&okp(crv, len)), None, "{crv} of {len} bytes");
        }
    }

    #[test]
    fn ec_keys_take_their_curve_algorithm() {
        let ec: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "e",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }))
        .unwrap();
        assert_eq!(algorithm_of(&ec), Some(Algorithm::ES256));
        let mut claimed = ec;
        claimed.common.key_algorithm = Some(KeyAlgorithm::RS256);
        assert_eq!(
            algorithm_of(&claimed),
            None,
            "an alg that does not fit the key type"
        );
    }
}
