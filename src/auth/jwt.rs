//! JWT bearer tokens verified with a configured key. The accepted
//! algorithms follow from the key, never from the token's header.

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};

use std::sync::Arc;

use super::bearer::{CHALLENGE, CHALLENGE_INVALID};
use super::cache::VerifiedTokens;
use super::jwks::{Jwks, VerifyError};
use super::{AuthKind, AuthResult, Denial};
use crate::config::error::{Diagnostic, Loc};
use crate::config::spec::{JwtKeySpec, JwtSpec};
use crate::identity::{ClaimsReader, EmailRule, Identity};
use crate::request::RequestView;
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

/// The algorithms a key can verify: HMAC → HS*, RSA → RS*/PS*, an EC key →
/// the one ES* of its curve, Ed25519 → EdDSA.
fn key_from_spec(key: &JwtKeySpec) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    match key {
        JwtKeySpec::Secret(secret) => {
            if secret.expose().len() < 16 {
                tracing::warn!(
                    "a jwt HMAC secret is shorter than 16 bytes; use at least 32 random bytes"
                );
            }
            let key = DecodingKey::from_secret(secret.expose().as_bytes())
                .map_err(|e| format!("invalid secret: {e}"))?;
            Ok((key, AlgorithmFamily::Hmac.algorithms().to_vec()))
        }
        JwtKeySpec::PublicKeyPem(pem_text) => public_key(pem_text),
        // Handled by `Jwt::build_jwks`; never a static key.
        JwtKeySpec::JwksUrl(_) => Err("a JWKS URL is not a static key".into()),
    }
}

fn public_key(pem_text: &str) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    let der =
        pem::parse(pem_text.trim()).map_err(|e| format!("public_key is not valid PEM: {e}"))?;
    if der.tag() == "CERTIFICATE" || der.tag().contains("PRIVATE") {
        return Err(format!(
            "public_key must be a PEM public key (BEGIN PUBLIC KEY), found BEGIN {}",
            der.tag()
        ));
    }
    let bytes = pem_text.trim().as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return Ok((key, AlgorithmFamily::Rsa.algorithms().to_vec()));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
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
            Err("EC public_key must be on curve P-256 or P-384".into())
        };
    }
    Err("public_key is not an RSA, EC (P-256/P-384) or Ed25519 public key".into())
}

impl Jwt {
    pub fn build(spec: &JwtSpec, policy_claims: Arc<[String]>) -> Result<Self, Vec<Diagnostic>> {
        let err = |loc: &Loc, message: String| vec![Diagnostic::at(loc, message)];
        let Some((key_spec, key_loc)) = &spec.key else {
            return Err(err(&spec.loc, "jwt needs a key".into()));
        };
        if let JwtKeySpec::JwksUrl(url) = key_spec {
            return Self::build_jwks(spec, url, policy_claims);
        }
        let (key, supported) = key_from_spec(key_spec).map_err(|m| err(key_loc, m))?;
        let algorithms = match &spec.algorithms {
            None => supported,
            Some((names, loc)) => {
                let mut chosen = Vec::new();
                for name in names {
                    let alg: Algorithm = name
                        .to_ascii_uppercase()
                        .replace("EDDSA", "EdDSA")
                        .parse()
                        .map_err(|_| err(loc, format!("unknown JWT algorithm `{name}`")))?;
                    if !supported.contains(&alg) {
                        return Err(err(
                            loc,
                            format!(
                                "algorithm {alg:?} does not fit the configured key (it allows {supported:?})"
                            ),
                        ));
                    }
                    chosen.push(alg);
                }
                if chosen.is_empty() {
                    return Err(err(loc, "algorithms must not be empty".into()));
                }
                chosen
            }
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = spec.leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = Vec::new();
        // `require_exp: false` makes `exp` optional, never ignored when present.
        validation.validate_exp = true;
        if spec.require_exp {
            required.push("exp");
        }
        if let Some(issuer) = &spec.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if spec.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&spec.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            groups_claim: spec.groups_claim.clone(),
            policy_claims,
            keys: Keys::Static(key),
            validation,
            allowed: Vec::new(),
            verified: VerifiedTokens::default(),
        })
    }

    fn build_jwks(
        spec: &JwtSpec,
        url: &url::Url,
        policy_claims: Arc<[String]>,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut allowed = Vec::new();
        if let Some((names, loc)) = &spec.algorithms {
            for name in names {
                let alg: Algorithm = name
                    .to_ascii_uppercase()
                    .replace("EDDSA", "EdDSA")
                    .parse()
                    .map_err(|_| {
                        vec![Diagnostic::at(
                            loc,
                            format!("unknown JWT algorithm `{name}`"),
                        )]
                    })?;
                if alg.family() == AlgorithmFamily::Hmac {
                    return Err(vec![Diagnostic::at(
                        loc,
                        "HMAC algorithms cannot come from a published JWKS",
                    )]);
                }
                allowed.push(alg);
            }
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = spec.leeway.as_secs();
        validation.validate_nbf = true;
        // `require_exp: false` makes `exp` optional, never ignored when present.
        validation.validate_exp = true;
        let mut required = Vec::new();
        if spec.require_exp {
            required.push("exp");
        }
        if let Some(issuer) = &spec.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if spec.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&spec.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            groups_claim: spec.groups_claim.clone(),
            policy_claims,
            keys: Keys::Jwks(Arc::new(Jwks::new(url.clone()))),
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
                .map_err(|e| VerifyError::Invalid(e.kind_name())),
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

trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for jsonwebtoken::errors::Error {
    /// The error kind without any token content.
    fn kind_name(&self) -> String {
        let debug = format!("{:?}", self.kind());
        debug
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_string()
    }
}
