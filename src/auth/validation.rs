//! The one place a `jsonwebtoken::Validation` is made: each authenticator
//! builds its own once (at build time, or once per discovered issuer) and
//! reuses it for every token.

use jsonwebtoken::{Algorithm, Validation};

/// What a token's claims are checked against.
#[derive(Clone, Copy, Debug)]
pub struct Checks<'a> {
    /// Accepted algorithms; with a JWKS each key narrows them to its own.
    pub algorithms: &'a [Algorithm],
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway: u64,
    /// The exact `iss`, if checked here.
    pub issuer: Option<&'a str>,
    /// Accepted `aud` values; empty: `aud` is not checked.
    pub audience: &'a [String],
    /// Claims that must be present (`exp`, `iss`, `aud`, `sub`).
    pub required: &'a [&'a str],
    /// Whether `nbf`, when present, is checked.
    pub not_before: bool,
}

/// The validation for `checks`. `exp`, when present, is always checked.
pub fn validation(checks: &Checks<'_>) -> Validation {
    let first = checks
        .algorithms
        .first()
        .copied()
        .unwrap_or(Algorithm::RS256);
    let mut v = Validation::new(first);
    if !checks.algorithms.is_empty() {
        v.algorithms = checks.algorithms.to_vec();
    }
    v.leeway = checks.leeway;
    v.validate_exp = true;
    v.validate_nbf = checks.not_before;
    if let Some(issuer) = checks.issuer {
        v.set_issuer(&[issuer]);
    }
    if checks.audience.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(checks.audience);
    }
    v.set_required_spec_claims(checks.required);
    v
}
