//! Making JWTs for inputs: HS256 with the fixture's secret (or another),
//! from header and claims the fuzzer chose. Only for building inputs: the
//! reference verifies tokens with code of its own.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde_json::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `base64url(header).base64url(claims).base64url(HMAC-SHA256)`.
pub fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signature = hmac_sha256(secret, signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(signature))
}

pub fn hmac_sha256(secret: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// A valid token of the fixture's jwt routes, with these groups.
pub fn fixture_jwt(sub: &str, groups: Option<&[&str]>, exp: u64) -> String {
    let mut claims = serde_json::json!({
        "iss": crate::fixture::JWT_ISSUER,
        "aud": crate::fixture::JWT_AUDIENCE,
        "sub": sub,
        "exp": exp,
        "iat": 1_700_000_000u64,
    });
    if let Some(g) = groups {
        claims["groups"] = serde_json::json!(g);
    }
    hs256(
        &serde_json::json!({"alg": "HS256", "typ": "JWT"}),
        &claims,
        crate::fixture::JWT_SECRET,
    )
}

/// The fixture's ready-made tokens: one in group admins, one in none.
pub fn fixture_jwts() -> [String; 2] {
    let far = crate::fixture::FAR_FUTURE;
    [
        fixture_jwt("fuzz-admin", Some(&["admins", "staff"]), far),
        fixture_jwt("fuzz-user", None, far),
    ]
}
