//! JWT bearer tokens verified with a configured key. The accepted
//! algorithms follow from the key, never from the token's header.

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};

use std::sync::Arc;

use super::bearer::{CHALLENGE, CHALLENGE_INVALID};
use super::cache::VerifiedTokens;
use super::jwks::{Jwks, VerifyError, error_kind};
use super::validation::{Checks, validation};
use super::{AuthKind, AuthResult, Denial};
use crate::config::error::{Diagnostic, Loc};
use crate::config::spec::{JwtKeySpec, JwtSpec};
use crate::identity::{ClaimsReader, EmailRule, Identity};
use crate::request::RequestView;
use crate::secret::Secret;
use serde_json::Value;

/// Where verification keys come from.
enum Keys {
    /// A configured secret or PEM key.
    Static(DecodingKey),
    /// An issuer's JWKS (`jwt.jwks_url`); the algorithm comes from each JWK.
    Jwks(Arc<Jwks>),
}

pub struct Jwt {
    keys: Keys,
    groups_claim: String,
    /// Claim names the config's policies read.
    policy_claims: Arc<[String]>,
    validation: Validation,
    /// With a JWKS: the configured `algorithms`, if any (empty: any the JWKS keys fix).
    allowed: Vec<Algorithm>,
    verified: VerifiedTokens,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::Static(_) => "static".to_string(),
            Keys::Jwks(j) => format!("{j:?}"),
        };
        f.debug_struct("Jwt")
            .field("keys", &keys)
            .field("algorithms", &self.validation.algorithms)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

/// Why a configured JWT key or its `algorithms` cannot be used.
#[derive(Debug, thiserror::Error)]
enum KeyError {
    #[error("invalid secret: {0}")]
    Secret(#[source] jsonwebtoken::errors::Error),
    #[error("public_key is not valid PEM: {0}")]
    Pem(#[source] pem::PemError),
    /// A certificate or a private key where a public key belongs.
    #[error("public_key must be a PEM public key (BEGIN PUBLIC KEY), found BEGIN {0}")]
    NotPublic(String),
    #[error("EC public_key must be on curve P-256 or P-384")]
    Curve,
    #[error("an Ed25519 public_key must be a SubjectPublicKeyInfo of 32 key bytes")]
    Ed25519,
    #[error("public_key is not an RSA, EC (P-256/P-384) or Ed25519 public key")]
    Unsupported,
    #[error("algorithm {alg:?} does not fit the configured key (it allows {supported:?})")]
    Misfit {
        alg: Algorithm,
        supported: Vec<Algorithm>,
    },
    #[error("algorithms must not be empty")]
    NoAlgorithms,
    #[error("HMAC algorithms cannot come from a published JWKS")]
    HmacFromJwks,
}

/// An HMAC secret verifies HS*.
fn secret_key(secret: &Secret) -> Result<(DecodingKey, Vec<Algorithm>), KeyError> {
    if secret.expose().len() < 16 {
        tracing::warn!("a jwt HMAC secret is shorter than 16 bytes; use at least 32 random bytes");
    }
    let key = DecodingKey::from_secret(secret.expose().as_bytes()).map_err(KeyError::Secret)?;
    Ok((key, AlgorithmFamily::Hmac.algorithms().to_vec()))
}

/// The algorithms a public key can verify: RSA → RS*/PS*, an EC key → the
/// one ES* of its curve, Ed25519 → EdDSA.
fn public_key(pem_text: &str) -> Result<(DecodingKey, Vec<Algorithm>), KeyError> {
    let der = pem::parse(pem_text.trim()).map_err(KeyError::Pem)?;
    if der.tag() == "CERTIFICATE" || der.tag().contains("PRIVATE") {
        return Err(KeyError::NotPublic(der.tag().to_string()));
    }
    let bytes = pem_text.trim().as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return Ok((key, AlgorithmFamily::Rsa.algorithms().to_vec()));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        // The one shape of an Ed25519 SubjectPublicKeyInfo: this prefix and
        // 32 key bytes. jsonwebtoken slices 32 bytes out of whatever the
        // BIT STRING holds at every verification, and panics on fewer.
        const ED25519_SPKI: &[u8] = &[
            0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        let spki = der.contents();
        if spki.len() != ED25519_SPKI.len() + 32 || !spki.starts_with(ED25519_SPKI) {
            return Err(KeyError::Ed25519);
        }
        return Ok((key, vec![Algorithm::EdDSA]));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        // The curve's OID sits in the SubjectPublicKeyInfo's parameters.
        const P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
        let has = |oid: &[u8]| der.contents().windows(oid.len()).any(|w| w == oid);
        return if has(P256) {
            Ok((key, vec![Algorithm::ES256]))
        } else if has(P384) {
            Ok((key, vec![Algorithm::ES384]))
        } else {
            Err(KeyError::Curve)
        };
    }
    Err(KeyError::Unsupported)
}

/// A static key's algorithms: the configured ones (each must fit the key),
/// or all the key supports.
fn static_algorithms(
    configured: Option<&[Algorithm]>,
    supported: Vec<Algorithm>,
) -> Result<Vec<Algorithm>, KeyError> {
    let Some(chosen) = configured else {
        return Ok(supported);
    };
    if let Some(&alg) = chosen.iter().find(|a| !supported.contains(a)) {
        return Err(KeyError::Misfit { alg, supported });
    }
    if chosen.is_empty() {
        return Err(KeyError::NoAlgorithms);
    }
    Ok(chosen.to_vec())
}

/// With a JWKS: the configured algorithms (never HMAC), empty for any the keys fix.
fn jwks_algorithms(configured: Option<&[Algorithm]>) -> Result<Vec<Algorithm>, KeyError> {
    let chosen = configured.unwrap_or_default();
    if chosen.iter().any(|a| a.family() == AlgorithmFamily::Hmac) {
        return Err(KeyError::HmacFromJwks);
    }
    Ok(chosen.to_vec())
}

/// A key error as the config diagnostic at `loc`.
fn at(loc: &Loc) -> impl FnOnce(KeyError) -> Vec<Diagnostic> + '_ {
    move |e| vec![Diagnostic::at(loc, e)]
}

impl Jwt {
    pub fn build(spec: &JwtSpec, policy_claims: Arc<[String]>) -> Result<Self, Vec<Diagnostic>> {
        let Some((key_spec, key_loc)) = &spec.key else {
            return Err(vec![Diagnostic::at(
                &spec.loc,
                crate::config::spec::JWT_NEEDS_KEY,
            )]);
        };
        let (configured, algorithms_loc) = match &spec.algorithms {
            Some((algs, loc)) => (Some(algs.as_slice()), loc),
            None => (None, &spec.loc),
        };
        let static_key = |found: Result<(DecodingKey, Vec<Algorithm>), KeyError>| {
            let (key, supported) = found.map_err(at(key_loc))?;
            let algorithms =
                static_algorithms(configured, supported).map_err(at(algorithms_loc))?;
            Ok::<_, Vec<Diagnostic>>((Keys::Static(key), algorithms, Vec::new()))
        };
        let (keys, algorithms, allowed) = match key_spec {
            JwtKeySpec::Secret(secret) => static_key(secret_key(secret))?,
            JwtKeySpec::PublicKeyPem(pem) => static_key(public_key(pem))?,
            JwtKeySpec::JwksUrl(url) => {
                let allowed = jwks_algorithms(configured).map_err(at(algorithms_loc))?;
                let jwks = Keys::Jwks(Arc::new(Jwks::new(url.clone())));
                (jwks, Vec::new(), allowed)
            }
        };
        // `require_exp: false` makes `exp` optional, never ignored when present.
        let mut required = Vec::new();
        if spec.require_exp {
            required.push("exp");
        }
        if spec.issuer.is_some() {
            required.push("iss");
        }
        if !spec.audience.is_empty() {
            required.push("aud");
        }
        let validation = validation(&Checks {
            algorithms: &algorithms,
            leeway: spec.leeway.as_secs(),
            issuer: spec.issuer.as_deref(),
            audience: &spec.audience,
            required: &required,
            not_before: true,
        });
        Ok(Self {
            groups_claim: spec.groups_claim.clone(),
            policy_claims,
            keys,
            validation,
            allowed,
            verified: VerifiedTokens::default(),
        })
    }

    /// The JWKS this authenticator verifies with, if any.
    pub fn jwks(&self) -> Option<Arc<Jwks>> {
        match &self.keys {
            Keys::Jwks(j) => Some(j.clone()),
            Keys::Static(_) => None,
        }
    }

    pub fn authenticate(&self, req: &RequestView<'_>) -> AuthResult<'_> {
        let Some(token) = req.authorization("bearer") else {
            return AuthResult::Deny(Denial::missing(Some(CHALLENGE)));
        };
        let cache_key = VerifiedTokens::key(token);
        if let Some(who) = self.verified.get(&cache_key) {
            return AuthResult::Allow {
                identity: Identity::token(AuthKind::Jwt, who),
                upstream: Vec::new(),
            };
        }
        let verified = match &self.keys {
            Keys::Static(key) => jsonwebtoken::decode::<Value>(token, key, &self.validation)
                .map(|d| d.claims)
                .map_err(|e| VerifyError::Invalid(error_kind(&e))),
            Keys::Jwks(jwks) => {
                let alg_ok = self.allowed.is_empty()
                    || jsonwebtoken::decode_header(token)
                        .is_ok_and(|h| self.allowed.contains(&h.alg));
                if alg_ok {
                    jwks.verify::<Value>(token, &self.validation)
                } else {
                    Err(VerifyError::Invalid("algorithm not allowed".into()))
                }
            }
        };
        match verified {
            Ok(claims) => {
                let reader = ClaimsReader {
                    groups_claim: &self.groups_claim,
                    policy_claims: &self.policy_claims,
                    email: EmailRule::EmailVerified,
                };
                let who = Arc::new(reader.read(&claims));
                self.verified.insert(cache_key, who.exp, who.clone());
                AuthResult::Allow {
                    identity: Identity::token(AuthKind::Jwt, who),
                    upstream: Vec::new(),
                }
            }
            Err(VerifyError::NoKeys) => AuthResult::pending_keys(Denial::status(
                crate::decision::Status::ServiceUnavailable,
                crate::decision::Reason::IdpUnavailable,
            )),
            Err(VerifyError::UnknownKey) => AuthResult::pending_keys(Denial {
                reason: crate::decision::Reason::UnknownKey,
                ..Denial::invalid(Some(CHALLENGE_INVALID))
            }),
            Err(VerifyError::Invalid(e)) => {
                tracing::debug!(error = %e, "jwt rejected");
                AuthResult::Deny(Denial::invalid(Some(CHALLENGE_INVALID)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(der: Vec<u8>) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", der))
    }

    /// jsonwebtoken accepts an Ed25519 key of any length and panics at
    /// the first verification with fewer than 32 bytes: refused at load.
    #[test]
    fn an_ed25519_key_must_hold_32_bytes() {
        let good = include_str!("../../tests/fixtures/ed25519.pub");
        assert_eq!(public_key(good).unwrap().1, vec![Algorithm::EdDSA]);
        for len in [20u8, 31, 33] {
            let mut der = vec![0x30, 10 + len, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70];
            der.extend([0x03, len + 1, 0x00]);
            der.extend(std::iter::repeat_n(7, usize::from(len)));
            match public_key(&pem(der)) {
                Err(KeyError::Ed25519) => {}
                other => panic!("{len} bytes: {:?}", other.map(|(_, a)| a)),
            }
        }
    }
}
